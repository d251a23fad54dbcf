//! The contract every [`Bus`] implementation passes. Run from
//! `tests/contract.rs` against the memory bus and a real Kafka broker.
//!
//! Each check takes a unique `prefix` for its topic and group names so runs do
//! not see each other.
#![allow(clippy::unwrap_used)]

use crate::{partition_for, Bus, Outgoing, Position, Record, TopicSpec};
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

async fn drain(sub: &mut Box<dyn crate::Subscription>, want: usize) -> Vec<Record> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while got.len() < want && tokio::time::Instant::now() < deadline {
        got.extend(sub.poll(want - got.len(), Duration::from_millis(500)).await.unwrap());
    }
    got
}

/// Records keyed alike keep their order, land on the partition Kafka's Java
/// client would choose, and carry their bytes unchanged.
pub async fn order_and_partitioning(bus: Arc<dyn Bus>, prefix: &str) {
    let topic = format!("{prefix}-order");
    bus.create_topic(&topic, 4).await.unwrap();
    bus.create_topic(&topic, 4).await.unwrap(); // idempotent
    let mut out = Vec::new();
    for i in 0..200u32 {
        let key = format!("call-{}", i % 7);
        out.push(Outgoing {
            topic: topic.clone(),
            key: Bytes::from(key),
            payload: Bytes::from(i.to_be_bytes().to_vec()),
        });
    }
    bus.publish_all(out).await.unwrap();
    let (p, _) = bus.publish(&topic, b"call-x", &[0xff; 1000]).await.unwrap();
    assert_eq!(p, partition_for(b"call-x", 4));

    let mut sub = bus
        .subscribe(&format!("{prefix}-g"), std::slice::from_ref(&topic))
        .await
        .unwrap();
    let got = drain(&mut sub, 201).await;
    assert_eq!(got.len(), 201);
    let mut last: HashMap<Bytes, u32> = HashMap::new();
    for r in &got {
        let key = r.key.clone().unwrap();
        assert_eq!(r.partition, partition_for(&key, 4), "partition of {key:?}");
        if key.as_ref() == b"call-x" {
            assert_eq!(r.payload.as_ref(), &[0xff; 1000]);
            continue;
        }
        let v = u32::from_be_bytes(r.payload.as_ref().try_into().unwrap());
        if let Some(prev) = last.insert(key.clone(), v) {
            assert!(v > prev, "order broken for {key:?}: {prev} then {v}");
        }
    }
    let ends: i64 = bus.end_offsets(&topic).await.unwrap().iter().map(|(_, e)| e).sum();
    assert_eq!(ends, 201);
    bus.delete_topic(&topic).await.unwrap();
    bus.delete_topic(&topic).await.unwrap(); // idempotent
}

/// A new member of a group starts at the committed positions: committed
/// records are not delivered again, uncommitted ones are.
pub async fn resume_from_committed(bus: Arc<dyn Bus>, prefix: &str) {
    let topic = format!("{prefix}-resume");
    let group = format!("{prefix}-g");
    bus.create_topic(&topic, 1).await.unwrap();
    for i in 0..10u8 {
        bus.publish(&topic, b"k", &[i]).await.unwrap();
    }
    {
        let mut sub = bus.subscribe(&group, std::slice::from_ref(&topic)).await.unwrap();
        let got = drain(&mut sub, 10).await;
        assert_eq!(got.len(), 10);
        // Only the first 4 are done.
        sub.commit(&[Position {
            topic: topic.clone(),
            partition: 0,
            next_offset: got[3].offset + 1,
        }])
        .unwrap();
        sub.flush_commits().await.unwrap();
    }
    let mut sub = bus.subscribe(&group, std::slice::from_ref(&topic)).await.unwrap();
    let got = drain(&mut sub, 6).await;
    let values: Vec<u8> = got.iter().map(|r| r.payload[0]).collect();
    assert_eq!(values, [4, 5, 6, 7, 8, 9]);
    // Another group is independent and sees everything.
    let mut other = bus
        .subscribe(&format!("{prefix}-other"), std::slice::from_ref(&topic))
        .await
        .unwrap();
    assert_eq!(drain(&mut other, 10).await.len(), 10);
}

/// Publishing to a topic that does not exist fails instead of vanishing.
pub async fn unknown_topic_is_an_error(bus: Arc<dyn Bus>, prefix: &str) {
    let r = tokio::time::timeout(
        Duration::from_secs(60),
        bus.publish(&format!("{prefix}-missing"), b"k", b"v"),
    )
    .await
    .expect("publish to a missing topic must fail, not hang");
    assert!(r.is_err());
}

/// An empty poll returns after its wait instead of blocking.
pub async fn empty_poll_returns(bus: Arc<dyn Bus>, prefix: &str) {
    let topic = format!("{prefix}-empty");
    bus.create_topic(&topic, 2).await.unwrap();
    let mut sub = bus.subscribe(&format!("{prefix}-g"), &[topic]).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(30), sub.poll(10, Duration::from_millis(300)))
        .await
        .expect("poll must honour its wait");
    assert!(got.unwrap().is_empty());
}

/// A topic keeps the partitions and retention it was created with; creating
/// it again with other settings changes nothing (drift is for an operator
/// to see, not for a role to fix), and a missing topic is `None`.
pub async fn topic_settings(bus: Arc<dyn Bus>, prefix: &str) {
    let name = format!("{prefix}-spec");
    assert_eq!(bus.describe_topic(&name).await.unwrap(), None);
    let spec = TopicSpec {
        retention_ms: Some(86_400_000),
        segment_ms: Some(3_600_000),
        ..TopicSpec::new(&name, 3)
    };
    bus.create_topic_with(&spec).await.unwrap();
    let again = TopicSpec {
        retention_ms: Some(1_000),
        ..TopicSpec::new(&name, 5)
    };
    bus.create_topic_with(&again).await.unwrap();
    let info = bus.describe_topic(&name).await.unwrap().unwrap();
    assert_eq!(
        (info.partitions, info.retention_ms, info.segment_ms),
        (3, Some(86_400_000), Some(3_600_000))
    );
    bus.delete_topic(&name).await.unwrap();
}

/// A paused subscription returns nothing while it is polled, whatever is
/// published meanwhile; once resumed it goes on from the record after the
/// last it returned: nothing lost, nothing twice.
pub async fn pause_and_resume(bus: Arc<dyn Bus>, prefix: &str) {
    let topic = format!("{prefix}-pause");
    bus.create_topic(&topic, 2).await.unwrap();
    let publish = |range: std::ops::Range<u8>| {
        let (bus, topic) = (bus.clone(), topic.clone());
        async move {
            for i in range {
                bus.publish(&topic, &[b'k', i % 2], &[i]).await.unwrap();
            }
        }
    };
    publish(0..10).await;
    let mut sub = bus
        .subscribe(&format!("{prefix}-g"), std::slice::from_ref(&topic))
        .await
        .unwrap();
    let mut got = drain(&mut sub, 4).await;
    assert_eq!(got.len(), 4);
    sub.pause().unwrap();
    publish(10..20).await;
    for _ in 0..4 {
        let polled = sub.poll(100, Duration::from_millis(250)).await.unwrap();
        assert!(polled.is_empty(), "a paused subscription returned {polled:?}");
    }
    sub.resume().unwrap();
    got.extend(drain(&mut sub, 16).await);
    let mut values: Vec<u8> = got.iter().map(|r| r.payload[0]).collect();
    values.sort_unstable();
    assert_eq!(values, (0..20).collect::<Vec<u8>>(), "each record once");
    bus.delete_topic(&topic).await.unwrap();
}
