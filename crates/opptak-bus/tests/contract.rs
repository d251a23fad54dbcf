//! The bus contract, against the embedded bus and a real Kafka broker.
//!
//! Kafka tests need `OPPTAK_TEST_KAFKA=host:port` (set by
//! `deploy/local/services.sh env`); without it they are skipped, unless
//! `OPPTAK_REQUIRE_SERVICES=1` (the project's test command) makes that a failure.
#![allow(clippy::unwrap_used)]

use opptak_bus::{contract, Bus};
use std::sync::Arc;

fn prefix(name: &str) -> String {
    format!("test-{name}-{}", uuid::Uuid::new_v4().simple())
}

fn memory() -> Arc<dyn Bus> {
    Arc::new(opptak_bus::memory::MemoryBus::new())
}

fn kafka() -> Option<Arc<dyn Bus>> {
    match std::env::var("OPPTAK_TEST_KAFKA") {
        Ok(b) => {
            // A short publish timeout: a send to a missing topic fails after it.
            let opts = opptak_bus::kafka::KafkaOptions {
                publish_timeout: std::time::Duration::from_secs(5),
                ..Default::default()
            };
            Some(Arc::new(opptak_bus::kafka::KafkaBus::new(&b, opts).expect("kafka bus")))
        }
        Err(_) if std::env::var("OPPTAK_REQUIRE_SERVICES").as_deref() == Ok("1") => {
            panic!("OPPTAK_TEST_KAFKA is not set but OPPTAK_REQUIRE_SERVICES=1")
        }
        Err(_) => {
            eprintln!("skipping kafka contract: OPPTAK_TEST_KAFKA not set");
            None
        }
    }
}

macro_rules! contract_tests {
    ($($name:ident),*) => {
        mod memory_bus {
            $(#[tokio::test] async fn $name() { super::contract::$name(super::memory(), &super::prefix(stringify!($name))).await })*
        }
        mod kafka_bus {
            $(#[tokio::test(flavor = "multi_thread")] async fn $name() {
                if let Some(bus) = super::kafka() { super::contract::$name(bus, &super::prefix(stringify!($name))).await }
            })*
        }
    };
}

contract_tests!(
    order_and_partitioning,
    resume_from_committed,
    unknown_topic_is_an_error,
    empty_poll_returns
);
