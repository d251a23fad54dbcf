//! Kafka through rdkafka.
//!
//! Producer: idempotent (`enable.idempotence=true` forces acks=all and bounded
//! in-flight requests), murmur2 partitioner so keys land where Java clients put
//! them. Consumer: a consumer group with `enable.auto.offset.store=false`;
//! offsets are stored only through [`Subscription::commit`], after the caller's
//! effect is durable, and auto-committed from there (rust-rdkafka
//! `examples/at_least_once.rs`).
//!
//! Security ([`KafkaSecurity`]): every client gets the same TLS and SASL
//! settings. librdkafka retries a connection the broker refused (wrong
//! password, untrusted certificate) for ever, so operations would only time
//! out; [`AuthFailures`] keeps what the broker said until a request
//! succeeds, and operations that fail meanwhile report
//! [`BusError::Authentication`] with it.
//! ACL refusals come back per request and map to [`BusError::Denied`].

use crate::security::KafkaSecurity;
use crate::{Bus, BusError, Outgoing, Position, Record, Subscription, TopicInfo, TopicSpec};
use async_trait::async_trait;
use bytes::Bytes;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often librdkafka reports a consumer's statistics (the consumer lag).
const STATS_INTERVAL_MS: &str = "5000";

#[derive(Clone)]
pub struct KafkaOptions {
    /// Replication factor for topics this bus creates; `None` (auto): three,
    /// or as many brokers as the cluster's metadata lists where fewer.
    pub replication: Option<i32>,
    /// `min.insync.replicas` for topics this bus creates; `None` (auto): a
    /// majority of the replicas (2 of 3) where there are three or more,
    /// else the broker's default.
    pub min_insync_replicas: Option<i32>,
    /// How long a publish may wait for the broker before failing.
    pub publish_timeout: Duration,
    /// TLS and SASL for every client of the bus.
    pub security: KafkaSecurity,
    /// Extra librdkafka settings, applied last (tests, tuning). Not for
    /// secrets: use [`KafkaOptions::security`].
    pub extra: Vec<(String, String)>,
    /// A consumer whose group stays unjoined this long fails its poll with
    /// [`BusError::Stuck`]: librdkafka does not always rejoin after its group
    /// coordinator restarts, and a role that waits for ever reads nothing.
    pub group_stuck_after: Duration,
}

impl std::fmt::Debug for KafkaOptions {
    /// The extra settings by name only: whatever someone passes there stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaOptions")
            .field("replication", &self.replication)
            .field("min_insync_replicas", &self.min_insync_replicas)
            .field("publish_timeout", &self.publish_timeout)
            .field("security", &self.security)
            .field("extra", &self.extra.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .field("group_stuck_after", &self.group_stuck_after)
            .finish()
    }
}

impl Default for KafkaOptions {
    fn default() -> Self {
        Self {
            replication: None,
            min_insync_replicas: None,
            publish_timeout: Duration::from_secs(30),
            security: KafkaSecurity::default(),
            extra: Vec::new(),
            group_stuck_after: Duration::from_secs(120),
        }
    }
}

pub struct KafkaBus {
    brokers: String,
    options: KafkaOptions,
    producer: FutureProducer<BusContext>,
    /// Shared with the blocking tasks that ask it for metadata.
    admin: Arc<AdminClient<BusContext>>,
    failures: AuthFailures,
}

/// Replicas per topic where the cluster has brokers enough: a broker can
/// be lost (or restarted) and every acknowledged write is still on two.
pub const AUTO_REPLICATION: i32 = 3;

/// The replication factor and `min.insync.replicas` (`None`: the broker's
/// default) of a topic created on a cluster whose metadata lists `brokers`
/// brokers. A replication above the broker count is refused here, with the
/// numbers, rather than by the broker's terse `INVALID_REPLICATION_FACTOR`.
pub fn topic_replication(
    replication: Option<i32>,
    min_insync: Option<i32>,
    brokers: usize,
) -> Result<(i32, Option<i32>), BusError> {
    let brokers = i32::try_from(brokers).unwrap_or(i32::MAX);
    if brokers == 0 {
        return Err(BusError::Unavailable("the cluster's metadata lists no brokers".into()));
    }
    let r = replication.unwrap_or(AUTO_REPLICATION.min(brokers));
    if r < 1 || r > brokers {
        return Err(BusError::Config(format!(
            "replication factor {r} for new topics, but the cluster's metadata lists {brokers} live broker{}: \
             a topic cannot have more replicas than brokers (set bus.replication to at most {brokers}, or \"auto\")",
            if brokers == 1 { "" } else { "s" }
        )));
    }
    let m = match min_insync {
        Some(m) if m < 1 || m > r => {
            return Err(BusError::Config(format!(
                "min.insync.replicas {m} for new topics with {r} replica{}: expected 1..={r} \
                 (more could never be in sync and every write would fail)",
                if r == 1 { "" } else { "s" }
            )))
        }
        Some(m) => Some(m),
        None => (r >= AUTO_REPLICATION).then_some(r / 2 + 1),
    };
    Ok((r, m))
}

/// An authentication or TLS failure is taken as the cause of errors for
/// this long after librdkafka last reported it (it reports each once, then
/// keeps retrying quietly).
const AUTH_FAILURE_FRESH: Duration = Duration::from_secs(120);

/// The last authentication or TLS failure any client of one bus reported.
#[derive(Clone, Default)]
struct AuthFailures(Arc<Mutex<Option<(Instant, String)>>>);

impl AuthFailures {
    fn note(&self, error: &KafkaError, reason: &str) {
        let code = error.rdkafka_error_code();
        if matches!(
            code,
            Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed | RDKafkaErrorCode::SSL)
        ) {
            self.keep(reason);
        } else {
            self.note_reason(reason);
        }
    }

    /// A connection failure whose reason is a refused TLS peer or SASL
    /// login: under TLS 1.3 a refused client certificate arrives as a
    /// transport error ("Receive failed: ... alert bad certificate"), so the
    /// text decides. Connections merely cut (a broker restarting) do not count.
    fn note_reason(&self, reason: &str) {
        const SIGNS: [&str; 7] = [
            "SSL handshake failed",
            "SASL authentication",
            "certificate verify failed",
            "alert bad certificate",
            "alert certificate",
            "alert unknown ca",
            "certificate required",
        ];
        if SIGNS.iter().any(|s| reason.contains(s)) {
            self.keep(reason);
        }
    }

    fn keep(&self, reason: &str) {
        let hint = if reason.contains("certificate verify failed") {
            " (the broker's certificate does not chain to the configured CA, or its name does not match the broker's address)"
        } else if reason.contains("alert bad certificate") || reason.contains("certificate required") {
            " (the broker refused this client's certificate, or got none where it requires one)"
        } else if reason.contains("SASL authentication") {
            " (a wrong user name or password, or no credentials for this SASL mechanism on the broker)"
        } else {
            ""
        };
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), format!("{reason}{hint}")));
    }

    /// A request succeeded: whatever was refused before is no longer the cause.
    fn clear(&self) {
        let mut last = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some() {
            *last = None;
        }
    }

    fn recent(&self) -> Option<String> {
        let last = self.0.lock().unwrap_or_else(|e| e.into_inner());
        last.as_ref()
            .filter(|(at, _)| at.elapsed() < AUTH_FAILURE_FRESH)
            .map(|(_, r)| r.clone())
    }

    /// `e` as a [`BusError`]: authorization refusals are [`BusError::Denied`],
    /// and while a connection is being refused, timeouts and transport
    /// errors are [`BusError::Authentication`] with the broker's reason.
    fn error(&self, e: KafkaError) -> BusError {
        match classify(e) {
            BusError::Unavailable(what) => match self.recent() {
                Some(reason) => BusError::Authentication(format!("{reason} (then: {what})")),
                None => BusError::Unavailable(what),
            },
            other => other,
        }
    }
}

/// The client context of every client a bus creates: reports librdkafka's
/// global errors to the log and keeps authentication failures.
struct BusContext {
    failures: AuthFailures,
}

impl ClientContext for BusContext {
    fn error(&self, error: KafkaError, reason: &str) {
        self.failures.note(&error, reason);
        tracing::error!(error = %error, reason, "kafka client error");
    }

    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        log_and_note(&self.failures, level, fac, message);
    }
}

/// librdkafka's log, as tracing events; its connection failures are also
/// kept when they are about TLS or SASL (not every one reaches `error`).
fn log_and_note(failures: &AuthFailures, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
    use rdkafka::config::RDKafkaLogLevel as L;
    match level {
        L::Emerg | L::Alert | L::Critical | L::Error => {
            failures.note_reason(message);
            tracing::error!(target: "librdkafka", fac, "{message}");
        }
        L::Warning => tracing::warn!(target: "librdkafka", fac, "{message}"),
        L::Notice | L::Info => tracing::info!(target: "librdkafka", fac, "{message}"),
        L::Debug => tracing::debug!(target: "librdkafka", fac, "{message}"),
    }
}

impl ConsumerContext for BusContext {}

fn classify(e: KafkaError) -> BusError {
    match e.rdkafka_error_code() {
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::UnknownTopicOrPartition
            | RDKafkaErrorCode::UnknownTopic
            | RDKafkaErrorCode::InvalidMessage,
        ) => BusError::Rejected(e.to_string()),
        Some(
            RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::GroupAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed
            | RDKafkaErrorCode::TransactionalIdAuthorizationFailed,
        ) => BusError::Denied(e.to_string()),
        Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed | RDKafkaErrorCode::SSL) => {
            BusError::Authentication(e.to_string())
        }
        _ => BusError::Unavailable(e.to_string()),
    }
}

impl KafkaBus {
    pub fn new(brokers: &str, options: KafkaOptions) -> Result<Self, BusError> {
        let failures = AuthFailures::default();
        let mut pc = Self::base_config(brokers, &options);
        pc.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("partitioner", "murmur2_random")
            .set("linger.ms", "5")
            .set("message.timeout.ms", options.publish_timeout.as_millis().to_string());
        Self::apply_extra(&mut pc, &options);
        let producer: FutureProducer<BusContext> = pc
            .create_with_context(BusContext {
                failures: failures.clone(),
            })
            .map_err(|e| BusError::Config(format!("kafka producer: {e}")))?;
        let mut ac = Self::base_config(brokers, &options);
        // Its metadata requests answer whether a topic exists; they must
        // not create it with the broker's defaults where the broker allows that.
        ac.set("allow.auto.create.topics", "false");
        Self::apply_extra(&mut ac, &options);
        let admin: AdminClient<BusContext> = ac
            .create_with_context(BusContext {
                failures: failures.clone(),
            })
            .map_err(|e| BusError::Config(format!("kafka admin: {e}")))?;
        Ok(Self {
            brokers: brokers.to_owned(),
            options,
            producer,
            admin: Arc::new(admin),
            failures,
        })
    }

    fn base_config(brokers: &str, options: &KafkaOptions) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", brokers);
        for (k, v) in options.security.settings() {
            c.set(k, v);
        }
        Self::apply_extra(&mut c, options);
        c
    }

    /// Whether `name` exists, asked through the admin client's metadata.
    /// Waits up to `limit` for an answer, but returns as soon as the broker
    /// has refused the connection ([`BusError::Authentication`]).
    async fn topic_partitions(&self, name: &str, limit: Duration) -> Result<Option<i32>, BusError> {
        let deadline = Instant::now() + limit;
        loop {
            let admin = self.admin.clone();
            let topic = name.to_owned();
            let answer = tokio::task::spawn_blocking(move || {
                admin
                    .inner()
                    .fetch_metadata(Some(&topic), Duration::from_secs(1))
                    .map(|md| {
                        md.topics()
                            .iter()
                            .find(|t| t.name() == topic)
                            .map(|t| (t.error(), t.partitions().len() as i32))
                    })
            })
            .await
            .map_err(|e| BusError::Unavailable(e.to_string()))?;
            if answer.is_ok() {
                self.failures.clear();
            }
            match answer {
                Ok(None) => return Ok(None),
                Ok(Some((None, n))) if n > 0 => return Ok(Some(n)),
                Ok(Some((Some(code), _))) => {
                    let code = RDKafkaErrorCode::from(code);
                    match code {
                        RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic => return Ok(None),
                        RDKafkaErrorCode::TopicAuthorizationFailed => {
                            return Err(BusError::Denied(format!(
                                "topic {name}: {code} (the principal may not even describe it)"
                            )))
                        }
                        // Leader elections and the like: ask again.
                        _ => {}
                    }
                }
                Ok(Some((None, _))) => {}
                Err(e) => {
                    let err = self.failures.error(e);
                    if matches!(err, BusError::Authentication(_)) || Instant::now() >= deadline {
                        return Err(err);
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(BusError::Unavailable(format!(
                    "topic {name}: no metadata within {limit:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// How many brokers the cluster's metadata lists (the live ones: a
    /// broker that is down is not in it). Asks about `topic` only, so the
    /// answer stays small on clusters with many topics.
    async fn broker_count(&self, topic: &str) -> Result<usize, BusError> {
        let admin = self.admin.clone();
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || {
            admin
                .inner()
                .fetch_metadata(Some(&topic), Duration::from_secs(10))
                .map(|md| md.brokers().len())
        })
        .await
        .map_err(|e| BusError::Unavailable(e.to_string()))?
        .map_err(|e| self.failures.error(e))
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
                Err((e, _)) => return Err(self.failures.error(e)),
            }
        }
    }
}

async fn await_delivery(f: rdkafka::producer::DeliveryFuture, failures: &AuthFailures) -> Result<(i32, i64), BusError> {
    match f.await {
        Ok(Ok(d)) => {
            failures.clear();
            Ok((d.partition, d.offset))
        }
        Ok(Err((e, _))) => Err(failures.error(e)),
        Err(_) => Err(BusError::Unavailable("producer dropped the delivery".into())),
    }
}

#[async_trait]
impl Bus for KafkaBus {
    async fn create_topic_with(&self, spec: &TopicSpec) -> Result<(), BusError> {
        let name = spec.name.as_str();
        // An existing topic is left alone, and asking first means roles
        // whose principals may not create topics start against topics an
        // administrator created (`opptak topics create`).
        if self.topic_partitions(name, Duration::from_secs(30)).await?.is_some() {
            return Ok(());
        }
        let brokers = self.broker_count(name).await?;
        let (replication, min_insync) =
            topic_replication(self.options.replication, self.options.min_insync_replicas, brokers)?;
        let mut topic = NewTopic::new(name, spec.partitions, TopicReplication::Fixed(replication));
        let (retention, segment, min_insync_text) = (
            spec.retention_ms.map(|v| v.to_string()),
            spec.segment_ms.map(|v| v.to_string()),
            min_insync.map(|v| v.to_string()),
        );
        if let Some(v) = &min_insync_text {
            topic = topic.set("min.insync.replicas", v);
        }
        if let Some(v) = &retention {
            topic = topic.set("retention.ms", v);
        }
        if let Some(v) = &segment {
            topic = topic.set("segment.ms", v);
        }
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let results = self
            .admin
            .create_topics([&topic], &opts)
            .await
            .map_err(|e| self.failures.error(e))?;
        for r in results {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((t, RDKafkaErrorCode::TopicAuthorizationFailed | RDKafkaErrorCode::ClusterAuthorizationFailed)) => {
                    return Err(BusError::Denied(format!(
                        "topic {t} does not exist and this principal may not create it: create it with \
                         `opptak topics create` as a principal that may"
                    )))
                }
                Err((t, code)) => return Err(BusError::Config(format!("create topic {t}: {code}"))),
            }
        }
        tracing::info!(topic = name, partitions = spec.partitions, replication, brokers, min_insync_replicas = ?min_insync, "topic created");
        // Metadata propagates asynchronously; wait until the topic is visible.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.topic_partitions(name, Duration::from_secs(5)).await?.is_some() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(BusError::Unavailable(format!(
                    "topic {name} not visible after creation"
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn describe_topic(&self, name: &str) -> Result<Option<TopicInfo>, BusError> {
        let Some(partitions) = self.topic_partitions(name, Duration::from_secs(30)).await? else {
            return Ok(None);
        };
        let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(30)));
        let results = self
            .admin
            .describe_configs([&ResourceSpecifier::Topic(name)], &opts)
            .await
            .map_err(|e| self.failures.error(e))?;
        let resource = results
            .into_iter()
            .next()
            .ok_or_else(|| BusError::Unavailable(format!("topic {name}: no configuration returned")))?
            .map_err(|code| match code {
                RDKafkaErrorCode::TopicAuthorizationFailed | RDKafkaErrorCode::ClusterAuthorizationFailed => {
                    BusError::Denied(format!("describing the configuration of topic {name}: {code}"))
                }
                code => BusError::Unavailable(format!("describing the configuration of topic {name}: {code}")),
            })?;
        let ms = |key: &str| {
            resource
                .get(key)
                .and_then(|e| e.value.as_deref())
                .and_then(|v| v.parse::<i64>().ok())
        };
        Ok(Some(TopicInfo {
            partitions,
            retention_ms: ms("retention.ms"),
            segment_ms: ms("segment.ms"),
        }))
    }

    async fn delete_topic(&self, name: &str) -> Result<(), BusError> {
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        for r in self
            .admin
            .delete_topics(&[name], &opts)
            .await
            .map_err(|e| self.failures.error(e))?
        {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
                Err((t, code)) => return Err(BusError::Config(format!("delete topic {t}: {code}"))),
            }
        }
        Ok(())
    }

    async fn publish(&self, topic: &str, key: &[u8], payload: &[u8]) -> Result<(i32, i64), BusError> {
        await_delivery(self.send(topic, key, payload)?, &self.failures).await
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
            if let Err(e) = await_delivery(f, &self.failures).await {
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
            failures: self.failures.clone(),
        };
        let unjoined = context.unjoined.clone();
        let consumer: StreamConsumer<LagContext> = c
            .create_with_context(context)
            .map_err(|e| BusError::Config(format!("kafka consumer: {e}")))?;
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&names).map_err(|e| self.failures.error(e))?;
        Ok(Box::new(KafkaSubscription {
            consumer: Some(consumer),
            group: group.to_owned(),
            failures: self.failures.clone(),
            unjoined,
            stuck_after: self.options.group_stuck_after,
            last_poll: None,
            paused: false,
        }))
    }

    async fn end_offsets(&self, topic: &str) -> Result<Vec<(i32, i64)>, BusError> {
        let c: BaseConsumer<BusContext> = Self::base_config(&self.brokers, &self.options)
            .create_with_context(BusContext {
                failures: self.failures.clone(),
            })
            .map_err(|e| BusError::Config(format!("kafka consumer: {e}")))?;
        let topic = topic.to_owned();
        let failures = self.failures.clone();
        tokio::task::spawn_blocking(move || {
            let unavailable = |e| failures.error(e);
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
        let failures = self.failures.clone();
        tokio::task::spawn_blocking(move || {
            client
                .client()
                .fetch_metadata(Some(&topic), timeout)
                .map(|_| ())
                .map_err(|e| failures.error(e))
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
    failures: AuthFailures,
}

impl ClientContext for LagContext {
    fn error(&self, error: KafkaError, reason: &str) {
        self.failures.note(&error, reason);
        tracing::error!(group = %self.group, error = %error, reason, "kafka consumer error");
    }

    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        log_and_note(&self.failures, level, fac, message);
    }

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
    failures: AuthFailures,
    unjoined: Arc<Mutex<Option<(tokio::time::Instant, String)>>>,
    stuck_after: Duration,
    /// When the role last polled: a rebalance waits for the next poll, so
    /// time the role spent elsewhere does not count towards `stuck_after`.
    last_poll: Option<tokio::time::Instant>,
    /// Between [`Subscription::pause`] and [`Subscription::resume`].
    paused: bool,
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

    /// Pauses every partition assigned now. librdkafka drops what it had
    /// fetched of them but not returned, and fetches again from the record
    /// after the last returned when they resume: nothing is lost or repeated.
    fn pause_assigned(&self) -> Result<(), BusError> {
        let assigned = self.consumer().assignment().map_err(classify)?;
        if assigned.count() > 0 {
            self.consumer().pause(&assigned).map_err(classify)?;
        }
        Ok(())
    }

    /// [`BusError::Stuck`] once the consumer has been outside its group
    /// for longer than `stuck_after` while polled (seen in the fault suite: after a
    /// broker restart one consumer of three timed out its session, and its
    /// requests to the coordinator stayed queued for minutes).
    fn check_group(&self) -> Result<(), BusError> {
        let unjoined = self.unjoined.lock().unwrap_or_else(|e| e.into_inner());
        match &*unjoined {
            Some((since, what)) if since.elapsed() >= self.stuck_after => {
                // A consumer whose connections are refused never joins: say why.
                let cause = self
                    .failures
                    .recent()
                    .map(|r| format!("; the broker refused the connection: {r}"))
                    .unwrap_or_default();
                Err(BusError::Stuck(format!(
                    "consumer group {} not joined for {} s ({what}){cause}",
                    self.group,
                    since.elapsed().as_secs()
                )))
            }
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
        if self.paused {
            // Partitions assigned since the pause (a rebalance) join it.
            self.pause_assigned()?;
        }
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
                        return Err(self.failures.error(e));
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
        if !out.is_empty() {
            self.failures.clear();
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
                .map_err(classify)?;
        }
        self.consumer()
            .store_offsets(&tpl)
            .map_err(|e| match e.rdkafka_error_code() {
                Some(RDKafkaErrorCode::State) | Some(RDKafkaErrorCode::UnknownPartition) => {
                    BusError::NotAssigned(e.to_string())
                }
                _ => classify(e),
            })
    }

    fn assigned(&self) -> Result<Option<Vec<(String, i32)>>, BusError> {
        let tpl = self.consumer().assignment().map_err(classify)?;
        Ok(Some(
            tpl.elements()
                .iter()
                .map(|e| (e.topic().to_owned(), e.partition()))
                .collect(),
        ))
    }

    fn pause(&mut self) -> Result<(), BusError> {
        self.paused = true;
        self.pause_assigned()
    }

    fn resume(&mut self) -> Result<(), BusError> {
        self.paused = false;
        let assigned = self.consumer().assignment().map_err(classify)?;
        if assigned.count() > 0 {
            self.consumer().resume(&assigned).map_err(classify)?;
        }
        Ok(())
    }

    async fn flush_commits(&mut self) -> Result<(), BusError> {
        match self.consumer().commit_consumer_state(CommitMode::Sync) {
            Ok(()) => Ok(()),
            // Nothing stored since the last commit.
            Err(e) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::NoOffset) => Ok(()),
            Err(e) => Err(self.failures.error(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_replication_is_three_or_every_broker() {
        assert_eq!(topic_replication(None, None, 1).ok(), Some((1, None)));
        assert_eq!(topic_replication(None, None, 2).ok(), Some((2, None)));
        assert_eq!(topic_replication(None, None, 3).ok(), Some((3, Some(2))));
        assert_eq!(topic_replication(None, None, 6).ok(), Some((3, Some(2))));
        assert!(matches!(
            topic_replication(None, None, 0),
            Err(BusError::Unavailable(_))
        ));
    }

    #[test]
    fn explicit_settings_win_within_the_broker_count() {
        assert_eq!(topic_replication(Some(1), None, 3).ok(), Some((1, None)));
        assert_eq!(topic_replication(Some(5), None, 5).ok(), Some((5, Some(3))));
        assert_eq!(topic_replication(Some(3), Some(3), 3).ok(), Some((3, Some(3))));
        assert_eq!(topic_replication(None, Some(1), 3).ok(), Some((3, Some(1))));
        assert_eq!(topic_replication(Some(2), Some(2), 3).ok(), Some((2, Some(2))));
    }

    #[test]
    fn more_replicas_than_brokers_is_refused_with_the_numbers() {
        let Err(BusError::Config(why)) = topic_replication(Some(3), None, 1) else {
            panic!("accepted 3 replicas on 1 broker")
        };
        assert!(
            why.contains("replication factor 3") && why.contains("1 live broker:"),
            "{why}"
        );
        let Err(BusError::Config(why)) = topic_replication(None, Some(4), 3) else {
            panic!("accepted min.insync.replicas 4 of 3")
        };
        assert!(why.contains("min.insync.replicas 4") && why.contains("1..=3"), "{why}");
    }
}
