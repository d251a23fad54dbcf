//! Kafka through rdkafka.
//!
//! Producer: idempotent (`enable.idempotence=true` forces acks=all and bounded
//! in-flight requests), murmur2 partitioner so keys land where Java clients put
//! them. Consumer: a consumer group with `enable.auto.offset.store=false`;
//! offsets are stored only through [`Subscription::commit`], after the caller's
//! effect is durable, and auto-committed from there (rust-rdkafka
//! `examples/at_least_once.rs`).

use crate::{Bus, BusError, Outgoing, Position, Record, Subscription};
use async_trait::async_trait;
use bytes::Bytes;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often librdkafka reports a consumer's statistics (the consumer lag).
const STATS_INTERVAL_MS: &str = "5000";

#[derive(Clone, Debug)]
pub struct KafkaOptions {
    /// Replication factor for topics opptak creates (3 in production).
    pub replication: i32,
    /// How long a publish may wait for the broker before failing.
    pub publish_timeout: Duration,
    /// Extra librdkafka settings (e.g. security.protocol, sasl.*), applied last.
    pub extra: Vec<(String, String)>,
    /// A consumer whose group stays unjoined this long fails its poll with
    /// [`BusError::Stuck`]: librdkafka does not always rejoin after its group
    /// coordinator restarts, and a role that waits for ever reads nothing.
    pub group_stuck_after: Duration,
}

impl Default for KafkaOptions {
    fn default() -> Self {
        Self {
            replication: 1,
            publish_timeout: Duration::from_secs(30),
            extra: Vec::new(),
            group_stuck_after: Duration::from_secs(120),
        }
    }
}

pub struct KafkaBus {
    brokers: String,
    options: KafkaOptions,
    producer: FutureProducer,
    admin: AdminClient<DefaultClientContext>,
}

fn unavailable(e: KafkaError) -> BusError {
    match e.rdkafka_error_code() {
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::UnknownTopicOrPartition
            | RDKafkaErrorCode::UnknownTopic
            | RDKafkaErrorCode::InvalidMessage
            | RDKafkaErrorCode::TopicAuthorizationFailed,
        ) => BusError::Rejected(e.to_string()),
        _ => BusError::Unavailable(e.to_string()),
    }
}

impl KafkaBus {
    pub fn new(brokers: &str, options: KafkaOptions) -> Result<Self, BusError> {
        let mut pc = Self::base_config(brokers, &options);
        pc.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("partitioner", "murmur2_random")
            .set("linger.ms", "5")
            .set("message.timeout.ms", options.publish_timeout.as_millis().to_string());
        Self::apply_extra(&mut pc, &options);
        let producer: FutureProducer = pc
            .create()
            .map_err(|e| BusError::Config(format!("kafka producer: {e}")))?;
        let admin: AdminClient<DefaultClientContext> = Self::base_config(brokers, &options)
            .create()
            .map_err(|e| BusError::Config(format!("kafka admin: {e}")))?;
        Ok(Self {
            brokers: brokers.to_owned(),
            options,
            producer,
            admin,
        })
    }

    fn base_config(brokers: &str, options: &KafkaOptions) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", brokers);
        Self::apply_extra(&mut c, options);
        c
    }

    fn apply_extra(c: &mut ClientConfig, options: &KafkaOptions) {
        for (k, v) in &options.extra {
            c.set(k, v);
        }
    }

    fn send(&self, topic: &str, key: &[u8], payload: &[u8]) -> Result<rdkafka::producer::DeliveryFuture, BusError> {
        let mut record = FutureRecord::to(topic).key(key).payload(payload);
        // send_result queues without waiting; QueueFull means librdkafka's own
        // buffer is full: let it drain and retry, anything else is an error.
        loop {
            match self.producer.send_result(record) {
                Ok(f) => return Ok(f),
                Err((e, r)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                    self.producer.poll(Duration::from_millis(10));
                    record = r;
                }
                Err((e, _)) => return Err(unavailable(e)),
            }
        }
    }
}

async fn await_delivery(f: rdkafka::producer::DeliveryFuture) -> Result<(i32, i64), BusError> {
    match f.await {
        Ok(Ok(d)) => Ok((d.partition, d.offset)),
        Ok(Err((e, _))) => Err(unavailable(e)),
        Err(_) => Err(BusError::Unavailable("producer dropped the delivery".into())),
    }
}

#[async_trait]
impl Bus for KafkaBus {
    async fn create_topic(&self, name: &str, partitions: i32) -> Result<(), BusError> {
        let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(self.options.replication));
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let results = self.admin.create_topics([&topic], &opts).await.map_err(unavailable)?;
        for r in results {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((t, code)) => return Err(BusError::Config(format!("create topic {t}: {code}"))),
            }
        }
        // Metadata propagates asynchronously; wait until the topic is visible.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let md = self
                .producer
                .client()
                .fetch_metadata(Some(name), Duration::from_secs(5))
                .map_err(unavailable)?;
            if md
                .topics()
                .iter()
                .any(|t| t.name() == name && t.error().is_none() && !t.partitions().is_empty())
            {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                return Err(BusError::Unavailable(format!(
                    "topic {name} not visible after creation"
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn delete_topic(&self, name: &str) -> Result<(), BusError> {
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        for r in self.admin.delete_topics(&[name], &opts).await.map_err(unavailable)? {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
                Err((t, code)) => return Err(BusError::Config(format!("delete topic {t}: {code}"))),
            }
        }
        Ok(())
    }

    async fn publish(&self, topic: &str, key: &[u8], payload: &[u8]) -> Result<(i32, i64), BusError> {
        await_delivery(self.send(topic, key, payload)?).await
    }

    async fn publish_all(&self, messages: Vec<Outgoing>) -> Result<(), BusError> {
        let mut first_err = None;
        let mut futures = Vec::with_capacity(messages.len());
        for m in &messages {
            match self.send(&m.topic, &m.key, &m.payload) {
                Ok(f) => futures.push(f),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        for f in futures {
            if let Err(e) = await_delivery(f).await {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    async fn subscribe(&self, group: &str, topics: &[String]) -> Result<Box<dyn Subscription>, BusError> {
        let mut c = Self::base_config(&self.brokers, &self.options);
        c.set("group.id", group)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("statistics.interval.ms", STATS_INTERVAL_MS);
        Self::apply_extra(&mut c, &self.options);
        let context = LagContext {
            group: group.to_owned(),
            reported: Mutex::new(HashSet::new()),
            unjoined: Arc::new(Mutex::new(None)),
        };
        let unjoined = context.unjoined.clone();
        let consumer: StreamConsumer<LagContext> = c
            .create_with_context(context)
            .map_err(|e| BusError::Config(format!("kafka consumer: {e}")))?;
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&names).map_err(unavailable)?;
        Ok(Box::new(KafkaSubscription {
            consumer: Some(consumer),
            group: group.to_owned(),
            unjoined,
            stuck_after: self.options.group_stuck_after,
            last_poll: None,
        }))
    }

    async fn end_offsets(&self, topic: &str) -> Result<Vec<(i32, i64)>, BusError> {
        let c: BaseConsumer = Self::base_config(&self.brokers, &self.options)
            .create()
            .map_err(|e| BusError::Config(format!("kafka consumer: {e}")))?;
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || {
            let md = c
                .fetch_metadata(Some(&topic), Duration::from_secs(10))
                .map_err(unavailable)?;
            let parts: Vec<i32> = md
                .topics()
                .iter()
                .filter(|t| t.name() == topic)
                .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                .collect();
            let mut out = Vec::new();
            for p in parts {
                let (_, high) = c
                    .fetch_watermarks(&topic, p, Duration::from_secs(10))
                    .map_err(unavailable)?;
                out.push((p, high));
            }
            out.sort();
            Ok(out)
        })
        .await
        .map_err(|e| BusError::Unavailable(e.to_string()))?
    }

    async fn ping(&self, topic: &str, timeout: Duration) -> Result<(), BusError> {
        // The producer's client is connected already: a metadata request
        // for one topic is the cheapest question a broker answers.
        let client = self.producer.clone();
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || {
            client
                .client()
                .fetch_metadata(Some(&topic), timeout)
                .map(|_| ())
                .map_err(unavailable)
        })
        .await
        .map_err(|e| BusError::Unavailable(e.to_string()))?
    }
}

fn is_transient(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::BrokerTransportFailure
            | RDKafkaErrorCode::AllBrokersDown
            | RDKafkaErrorCode::NotLeaderForPartition
            | RDKafkaErrorCode::LeaderNotAvailable
            | RDKafkaErrorCode::RequestTimedOut
            | RDKafkaErrorCode::NetworkException
            | RDKafkaErrorCode::CoordinatorNotAvailable
            | RDKafkaErrorCode::NotCoordinator
            | RDKafkaErrorCode::OperationTimedOut
    )
}

/// Reports the consumer lag of every partition the group owns here
/// (`opptak_consumer_lag`) from librdkafka's statistics, which the consumer
/// emits every [`STATS_INTERVAL_MS`] while it is polled: no extra requests
/// to the broker.
struct LagContext {
    group: String,
    /// Partitions with a lag reported, so revoked ones are removed.
    reported: Mutex<HashSet<(String, i32)>>,
    /// Since when, and in which states, the statistics last showed the
    /// consumer outside its group (anything but state `up`, join-state
    /// `steady`); `None` while it is in.
    unjoined: Arc<Mutex<Option<(tokio::time::Instant, String)>>>,
}

impl ClientContext for LagContext {
    fn stats(&self, stats: rdkafka::Statistics) {
        if let Some(g) = &stats.cgrp {
            let mut unjoined = self.unjoined.lock().unwrap_or_else(|e| e.into_inner());
            if g.state == "up" && g.join_state == "steady" {
                *unjoined = None;
            } else {
                let what = format!("state {}, join-state {}", g.state, g.join_state);
                let since = unjoined.take().map_or_else(tokio::time::Instant::now, |(t, _)| t);
                *unjoined = Some((since, what));
            }
        }
        let m = opptak_telemetry::metrics();
        let mut now = HashSet::new();
        for (topic, t) in &stats.topics {
            for p in t.partitions.values() {
                // -1 is librdkafka's internal "unassigned" partition.
                if p.partition < 0 || !p.desired {
                    continue;
                }
                // consumer_lag is -1 until the group has committed; then
                // everything from the low watermark is still to be read.
                let lag = if p.consumer_lag >= 0 {
                    p.consumer_lag
                } else if p.hi_offset >= 0 && p.lo_offset >= 0 {
                    p.hi_offset - p.lo_offset
                } else {
                    continue;
                };
                m.set_consumer_lag(&self.group, topic, p.partition, lag);
                now.insert((topic.clone(), p.partition));
            }
        }
        let mut reported = self.reported.lock().unwrap_or_else(|e| e.into_inner());
        for (topic, partition) in reported.difference(&now) {
            m.remove_consumer_lag(&self.group, topic, *partition);
        }
        *reported = now;
    }
}

impl ConsumerContext for LagContext {}

struct KafkaSubscription {
    /// `None` only while dropping.
    consumer: Option<StreamConsumer<LagContext>>,
    group: String,
    unjoined: Arc<Mutex<Option<(tokio::time::Instant, String)>>>,
    stuck_after: Duration,
    /// When the role last polled: a rebalance waits for the next poll, so
    /// time the role spent elsewhere does not count towards `stuck_after`.
    last_poll: Option<tokio::time::Instant>,
}

/// Polls further apart than this restart the stuck clock: the role was busy
/// (a batch transcriber works through its records between polls, and its
/// group's rebalance waits for it: join-state `wait-assign-call`), not
/// librdkafka stuck.
const POLL_GAP: Duration = Duration::from_secs(10);

/// How long dropping a subscription waits for its consumer to leave the group.
const CLOSE_LIMIT: Duration = Duration::from_secs(10);

impl Drop for KafkaSubscription {
    /// Closing a consumer leaves its group, which waits for the group
    /// coordinator; one that cannot be reached blocks the close for minutes
    /// (seen in the fault suite after a broker restart) and, on a tokio
    /// worker, the process's orderly stop with it. The close runs on a
    /// thread of its own; after [`CLOSE_LIMIT`] it is left to finish there
    /// (or end with the process: the group then expires the member by its
    /// session timeout, as after a crash; the offsets were committed).
    fn drop(&mut self) {
        let Some(consumer) = self.consumer.take() else { return };
        let (done, closed) = std::sync::mpsc::channel::<()>();
        let spawned = std::thread::Builder::new().name("kafka-close".into()).spawn(move || {
            drop(consumer);
            let _ = done.send(());
        });
        if spawned.is_ok() && closed.recv_timeout(CLOSE_LIMIT).is_err() {
            tracing::warn!(group = %self.group, "kafka consumer did not leave its group within {CLOSE_LIMIT:?}; going on without it");
        }
    }
}

impl KafkaSubscription {
    fn consumer(&self) -> &StreamConsumer<LagContext> {
        self.consumer.as_ref().expect("consumer present until drop")
    }

    /// [`BusError::Stuck`] once the consumer has been outside its group
    /// for longer than `stuck_after` while polled (seen in the fault suite: after a
    /// broker restart one consumer of three timed out its session, and its
    /// requests to the coordinator stayed queued for minutes).
    fn check_group(&self) -> Result<(), BusError> {
        let unjoined = self.unjoined.lock().unwrap_or_else(|e| e.into_inner());
        match &*unjoined {
            Some((since, what)) if since.elapsed() >= self.stuck_after => Err(BusError::Stuck(format!(
                "consumer group {} not joined for {} s ({what})",
                self.group,
                since.elapsed().as_secs()
            ))),
            _ => Ok(()),
        }
    }
}

#[async_trait]
impl Subscription for KafkaSubscription {
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Record>, BusError> {
        let now = tokio::time::Instant::now();
        if self.last_poll.is_some_and(|t| now - t > POLL_GAP) {
            let mut unjoined = self.unjoined.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((since, _)) = unjoined.as_mut() {
                *since = now;
            }
        }
        self.last_poll = Some(now);
        self.check_group()?;
        let deadline = tokio::time::Instant::now() + wait;
        let mut out = Vec::new();
        while out.len() < max {
            // After the first record, take only what is already buffered.
            // Wait for the first record up to the deadline; after that take only
            // what arrives without a pause, and never past the deadline.
            let until = if out.is_empty() {
                deadline
            } else {
                deadline.min(tokio::time::Instant::now() + Duration::from_millis(2))
            };
            match tokio::time::timeout_at(until, self.consumer().recv()).await {
                Err(_) => break,
                Ok(Err(e)) => {
                    // librdkafka reconnects by itself (broker restarts, leader
                    // moves); report and let the caller poll again.
                    tracing::warn!(error = %e, "kafka consume error");
                    if out.is_empty() && !e.rdkafka_error_code().is_some_and(is_transient) {
                        return Err(unavailable(e));
                    }
                    break;
                }
                Ok(Ok(m)) => out.push(Record {
                    topic: m.topic().to_owned(),
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(Bytes::copy_from_slice),
                    payload: m.payload().map(Bytes::copy_from_slice).unwrap_or_default(),
                    timestamp_ms: m.timestamp().to_millis(),
                }),
            }
        }
        Ok(out)
    }

    fn commit(&mut self, positions: &[Position]) -> Result<(), BusError> {
        if positions.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for p in positions {
            tpl.add_partition_offset(&p.topic, p.partition, Offset::Offset(p.next_offset))
                .map_err(unavailable)?;
        }
        self.consumer()
            .store_offsets(&tpl)
            .map_err(|e| match e.rdkafka_error_code() {
                Some(RDKafkaErrorCode::State) | Some(RDKafkaErrorCode::UnknownPartition) => {
                    BusError::NotAssigned(e.to_string())
                }
                _ => unavailable(e),
            })
    }

    fn assigned(&self) -> Result<Option<Vec<(String, i32)>>, BusError> {
        let tpl = self.consumer().assignment().map_err(unavailable)?;
        Ok(Some(
            tpl.elements()
                .iter()
                .map(|e| (e.topic().to_owned(), e.partition()))
                .collect(),
        ))
    }

    async fn flush_commits(&mut self) -> Result<(), BusError> {
        match self.consumer().commit_consumer_state(CommitMode::Sync) {
            Ok(()) => Ok(()),
            // Nothing stored since the last commit.
            Err(e) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::NoOffset) => Ok(()),
            Err(e) => Err(unavailable(e)),
        }
    }
}
