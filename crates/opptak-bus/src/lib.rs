//! The event bus: one trait, two real implementations.
//!
//! - [`kafka::KafkaBus`] (`kafka://host:port,...`): rdkafka with an idempotent
//!   producer (acks=all) and consumer groups; offsets are stored only when the
//!   caller says the effect is durable ([`Subscription::commit`]).
//! - [`memory::MemoryBus`] (`memory://`): partitioned in-process logs with
//!   committed group offsets, for the embedded single-process mode.
//!
//! Vendor types never leave this crate: consumers see [`Record`]s.
//! [`contract`] holds the test suite both implementations must pass;
//! [`security`] how a Kafka bus encrypts and authenticates (TLS, mutual
//! TLS, SASL/SCRAM).

pub mod contract;
pub mod kafka;
pub mod memory;
pub mod security;

use async_trait::async_trait;
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;

/// One message read from a topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Bytes>,
    pub payload: Bytes,
    /// When the producer wrote it (ms since the epoch; Kafka's CreateTime),
    /// if the bus knows: the start of the end-to-end latency.
    pub timestamp_ms: Option<i64>,
}

impl Record {
    /// The position just after this record: committing it marks the record done.
    pub fn next_position(&self) -> Position {
        Position {
            topic: self.topic.clone(),
            partition: self.partition,
            next_offset: self.offset + 1,
        }
    }
}

/// A consumer position: every offset below `next_offset` is processed.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Position {
    pub topic: String,
    pub partition: i32,
    pub next_offset: i64,
}

/// A topic as opptak wants it: its partitions and the retention it sets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    /// How long the bus keeps records (Kafka's `retention.ms`); `None`: the
    /// bus's default.
    pub retention_ms: Option<i64>,
    /// How often a new log segment starts (Kafka's `segment.ms`). Kafka
    /// deletes whole segments only, so a record can outlive `retention_ms`
    /// by up to one segment; `None`: the bus's default (7 days on Kafka).
    pub segment_ms: Option<i64>,
}

impl TopicSpec {
    /// A topic with the bus's default retention.
    pub fn new(name: &str, partitions: i32) -> Self {
        Self {
            name: name.to_owned(),
            partitions,
            retention_ms: None,
            segment_ms: None,
        }
    }
}

/// A topic as the bus has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicInfo {
    pub partitions: i32,
    /// The effective `retention.ms` (the broker's default when the topic
    /// sets none); `None` where the bus has no such setting.
    pub retention_ms: Option<i64>,
    /// The effective `segment.ms`, likewise.
    pub segment_ms: Option<i64>,
}

/// A message to publish.
#[derive(Clone, Debug)]
pub struct Outgoing {
    pub topic: String,
    pub key: Bytes,
    pub payload: Bytes,
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The broker cannot be reached or timed out; retrying may succeed.
    #[error("bus unavailable: {0}")]
    Unavailable(String),
    /// The broker refused the message (too large, unknown topic, ...).
    #[error("bus refused the message: {0}")]
    Rejected(String),
    /// A commit for a partition this consumer no longer owns (after a rebalance).
    #[error("partition no longer assigned: {0}")]
    NotAssigned(String),
    #[error("bus configuration: {0}")]
    Config(String),
    /// The broker did not accept who we are: a wrong SASL password or
    /// user, a client certificate it does not trust or did not get, a
    /// broker certificate we do not trust. Not retryable.
    #[error("bus authentication failed: {0}")]
    Authentication(String),
    /// The broker knows who we are and its ACLs forbid the operation (a
    /// topic, a consumer group or the cluster). Not retryable.
    #[error("bus access denied by the broker's ACLs: {0}")]
    Denied(String),
    /// The consumer stayed outside its group past its limit; the role
    /// should end (its process restarts with a fresh consumer).
    #[error("bus consumer stuck: {0}; ending the role so its process restarts with a fresh consumer")]
    Stuck(String),
}

impl BusError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, BusError::Unavailable(_))
    }
}

#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Creates the topic if it does not exist, with the bus's default retention.
    async fn create_topic(&self, name: &str, partitions: i32) -> Result<(), BusError> {
        self.create_topic_with(&TopicSpec::new(name, partitions)).await
    }

    /// Creates the topic as `spec` says if it does not exist; an existing
    /// topic is left as it is (`describe_topic` shows how it differs). A
    /// principal that may not create topics succeeds when the topic exists.
    async fn create_topic_with(&self, spec: &TopicSpec) -> Result<(), BusError>;

    /// The topic's partitions and retention, or `None` when it does not exist.
    async fn describe_topic(&self, name: &str) -> Result<Option<TopicInfo>, BusError>;

    /// Deletes a topic and everything in it (load tests, test clean-up).
    async fn delete_topic(&self, name: &str) -> Result<(), BusError>;

    /// Publishes and waits until the bus has made it durable. Returns (partition, offset).
    async fn publish(&self, topic: &str, key: &[u8], payload: &[u8]) -> Result<(i32, i64), BusError>;

    /// Publishes all messages, concurrently where the bus allows, and waits for all.
    /// Order holds per topic and key.
    async fn publish_all(&self, messages: Vec<Outgoing>) -> Result<(), BusError> {
        for m in messages {
            self.publish(&m.topic, &m.key, &m.payload).await?;
        }
        Ok(())
    }

    /// Joins `group` and consumes `topics` from the group's committed positions
    /// (the earliest offset for a new group).
    async fn subscribe(&self, group: &str, topics: &[String]) -> Result<Box<dyn Subscription>, BusError>;

    /// Number of messages in a partition (end offset), for tests and lag.
    async fn end_offsets(&self, topic: &str) -> Result<Vec<(i32, i64)>, BusError>;

    /// Whether the bus answers, for readiness probes: one metadata request
    /// for `topic`, bounded by `timeout`. The embedded bus always answers.
    async fn ping(&self, _topic: &str, _timeout: Duration) -> Result<(), BusError> {
        Ok(())
    }
}

#[async_trait]
pub trait Subscription: Send {
    /// Waits up to `wait` and returns at most `max` records (possibly none).
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Record>, BusError>;

    /// Records that everything before each position is durably processed.
    fn commit(&mut self, positions: &[Position]) -> Result<(), BusError>;

    /// The partitions this member owns now, or None when it owns everything
    /// (the embedded bus). Changes after a consumer-group rebalance.
    fn assigned(&self) -> Result<Option<Vec<(String, i32)>>, BusError>;

    /// Writes stored positions to the bus now (shutdown); otherwise they are
    /// written periodically.
    async fn flush_commits(&mut self) -> Result<(), BusError>;

    /// Stops fetching from the partitions this member owns, for a role that
    /// must wait (for a slot, another call) before it can take more: it goes
    /// on calling [`Subscription::poll`], which keeps it in its group (a
    /// Kafka consumer that does not poll within `max.poll.interval.ms` is
    /// put out of it) and returns no records of a paused partition. Records
    /// already returned stay returned: after [`Subscription::resume`] the
    /// next record of a partition is the one after the last returned. A
    /// partition assigned while paused (a rebalance) may deliver records.
    fn pause(&mut self) -> Result<(), BusError>;

    /// Fetches again from every partition this member owns.
    fn resume(&mut self) -> Result<(), BusError>;
}

/// Opens the bus named by a URL: `memory://` or `kafka://host:port[,host:port]`.
pub fn open(url: &str) -> Result<Arc<dyn Bus>, BusError> {
    if url == "memory://" || url == "memory:" {
        return Ok(Arc::new(memory::MemoryBus::new()));
    }
    if let Some(brokers) = url.strip_prefix("kafka://") {
        let brokers = brokers.trim_end_matches('/');
        if brokers.is_empty() {
            return Err(BusError::Config(
                "kafka:// needs at least one broker, e.g. kafka://127.0.0.1:9092".into(),
            ));
        }
        return Ok(Arc::new(kafka::KafkaBus::new(brokers, kafka::KafkaOptions::default())?));
    }
    Err(BusError::Config(format!(
        "unsupported bus url {url:?}: use memory:// or kafka://host:port"
    )))
}

/// Stable partition for a key: murmur2 as Java clients compute it, so the
/// telephony system's Java producer and opptak agree.
pub fn partition_for(key: &[u8], partitions: i32) -> i32 {
    ((murmur2(key) & 0x7fff_ffff) % partitions as u32) as i32
}

fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    const SEED: u32 = 0x9747_b28c;
    let len = data.len();
    let mut h = SEED ^ len as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= (rest[2] as u32) << 16;
    }
    if rest.len() >= 2 {
        h ^= (rest[1] as u32) << 8;
    }
    if !rest.is_empty() {
        h ^= rest[0] as u32;
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    #[test]
    fn murmur2_matches_kafka_java_client() {
        // Values from Kafka's UtilsTest.testMurmur2.
        assert_eq!(super::murmur2(b"21") as i32, -973932308);
        assert_eq!(super::murmur2(b"foobar") as i32, -790332482);
        assert_eq!(super::murmur2(b"a-little-bit-long-string") as i32, -985981536);
        assert_eq!(super::murmur2(b"a-little-bit-longer-string") as i32, -1486304829);
        assert_eq!(
            super::murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") as i32,
            -58897971
        );
        assert_eq!(super::murmur2(b"abc") as i32, 479470107);
    }
}
