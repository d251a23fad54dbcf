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
    empty_poll_returns,
    topic_settings,
    pause_and_resume
);

/// A Kafka bus whose broker address answers nothing, whose consumers are
/// called stuck after 3 s outside their group.
fn unreachable_bus() -> opptak_bus::kafka::KafkaBus {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let opts = opptak_bus::kafka::KafkaOptions {
        group_stuck_after: std::time::Duration::from_secs(3),
        ..Default::default()
    };
    opptak_bus::kafka::KafkaBus::new(&format!("127.0.0.1:{port}"), opts).unwrap()
}

/// A consumer that cannot join its group (here: no broker answers at all)
/// fails its poll with `Stuck` once past its limit, so its role ends and
/// its process restarts, instead of reading nothing for ever; the stuck
/// consumer's close does not hang the drop.
#[tokio::test(flavor = "multi_thread")]
async fn a_consumer_outside_its_group_fails_its_poll() {
    let bus = unreachable_bus();
    let group = prefix("stuck");
    let mut sub = bus.subscribe(&group, &["nowhere".to_string()]).await.unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    let err = loop {
        match sub.poll(10, std::time::Duration::from_millis(500)).await {
            Err(e) => break e,
            Ok(r) => assert!(r.is_empty()),
        }
        assert!(tokio::time::Instant::now() < deadline, "never reported stuck");
    };
    let text = err.to_string();
    assert!(matches!(err, opptak_bus::BusError::Stuck(_)), "{text}");
    assert!(text.contains(&group) && text.contains("join-state"), "{text}");
    drop(sub);
}

/// A role that was busy between polls (its rebalance waited for it) is not
/// stuck: the clock starts again when it polls again.
#[tokio::test(flavor = "multi_thread")]
async fn time_between_polls_does_not_count_as_stuck() {
    let bus = unreachable_bus();
    let mut sub = bus.subscribe(&prefix("busy"), &["nowhere".to_string()]).await.unwrap();
    // Polled for 6.5 s: the first statistics (after 5 s) show it outside its
    // group, 1.5 s at most before it stops polling.
    let polled = tokio::time::Instant::now() + std::time::Duration::from_millis(6500);
    while tokio::time::Instant::now() < polled {
        sub.poll(10, std::time::Duration::from_millis(250)).await.unwrap();
    }
    // Busy for 12 s (outside its group all along, no broker): the next
    // poll is not called stuck, the ones 3 s of polling later are.
    tokio::time::sleep(std::time::Duration::from_secs(12)).await;
    sub.poll(10, std::time::Duration::from_millis(500)).await.unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if let Err(e) = sub.poll(10, std::time::Duration::from_millis(500)).await {
            assert!(matches!(e, opptak_bus::BusError::Stuck(_)), "{e}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never reported stuck");
    }
}

/// The control: a consumer in its group polls past the same kind of limit
/// without being called stuck.
#[tokio::test(flavor = "multi_thread")]
async fn a_consumer_in_its_group_is_not_stuck() {
    let Some(brokers) = std::env::var("OPPTAK_TEST_KAFKA").ok() else {
        assert_ne!(
            std::env::var("OPPTAK_REQUIRE_SERVICES").as_deref(),
            Ok("1"),
            "OPPTAK_TEST_KAFKA not set"
        );
        return;
    };
    let opts = opptak_bus::kafka::KafkaOptions {
        group_stuck_after: std::time::Duration::from_secs(10),
        ..Default::default()
    };
    let bus = opptak_bus::kafka::KafkaBus::new(&brokers, opts).unwrap();
    let topic = prefix("joined");
    bus.create_topic(&topic, 2).await.unwrap();
    let mut sub = bus.subscribe(&prefix("joined"), &[topic]).await.unwrap();
    let until = tokio::time::Instant::now() + std::time::Duration::from_secs(25);
    while tokio::time::Instant::now() < until {
        sub.poll(10, std::time::Duration::from_millis(500)).await.unwrap();
    }
    assert_eq!(sub.assigned().unwrap().map(|a| a.len()), Some(2));
}
