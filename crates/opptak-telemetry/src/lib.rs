//! Process-wide metrics of every opptak role, in the Prometheus text format.
//!
//! One registry per process, reached through [`metrics()`], so any crate can
//! count without plumbing a handle through its constructors: the recorder
//! counts chunks, the bus sets consumer lag, the keyring counts key
//! operations. The binary serves [`Metrics::render`] on `GET /metrics`
//! (`telemetry.listen`). Every metric, its type, labels and meaning is listed
//! in `docs/metrics.md`; `deploy/grafana/opptak.json` charts them, and
//! `tests/it/telemetry.rs` checks that every metric the dashboard names exists
//! in a real scrape.
//!
//! Labels are typed here ([`ChunkOutcome`], [`RequestOutcome`], [`KeyOp`]) or
//! bounded by their source (dead-letter reasons are a protobuf enum, artifact
//! kinds a fixed set, consumer-lag partitions those a group owns): no call
//! id or other unbounded value ever becomes a label.
//!
//! No IO and no async runtime: counting is an atomic add (histograms take a
//! short lock), cheap enough for the recorder's per-chunk path.
//!
//! With the `otlp` feature (the binary turns it on), [`otlp`] is a `tracing`
//! layer exporting spans to an OpenTelemetry collector over OTLP/HTTP.

#[cfg(feature = "otlp")]
pub mod otlp;

use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::OnceLock;
use std::time::Duration;

/// The Content-Type of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Buckets of the end-to-end and flush latencies (seconds): the recorder
/// flushes every 250 ms by default, so most chunks land between 0.1 and 0.5 s.
const LATENCY_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// Buckets of speech and language model requests (seconds): an utterance
/// takes from tenths of a second to tens on CPU; a draft up to minutes.
const MODEL_BUCKETS: [f64; 12] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0];
/// From a call's end to its draft: seconds to tens of minutes under a backlog.
const DRAFT_BUCKETS: [f64; 12] = [
    1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 3600.0,
];

type Labels1 = [(&'static str, &'static str); 1];
type Labels2 = [(&'static str, &'static str); 2];
type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// What the recorder did with one audio chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkOutcome {
    /// New audio, placed on the call's timeline.
    Accepted,
    /// A sequence number already stored (a replay or a resend): dropped.
    Duplicate,
    /// Refused and sent to the dead-letter topic.
    DeadLetter,
}

impl ChunkOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            ChunkOutcome::Accepted => "accepted",
            ChunkOutcome::Duplicate => "duplicate",
            ChunkOutcome::DeadLetter => "dead_letter",
        }
    }
}

/// How one request to a model server (speech recognizer, language model) ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestOutcome {
    /// A usable answer.
    Ok,
    /// The server refused this input (4xx other than rate limits): not retried.
    Rejected,
    /// No answer in time.
    Timeout,
    /// An answer that does not validate (a draft outside the schema or taxonomy).
    Invalid,
    /// Transport errors, 5xx, rate limits: retried.
    Error,
}

impl RequestOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestOutcome::Ok => "ok",
            RequestOutcome::Rejected => "rejected",
            RequestOutcome::Timeout => "timeout",
            RequestOutcome::Invalid => "invalid",
            RequestOutcome::Error => "error",
        }
    }
}

/// Data-key operations (envelope encryption and crypto-shredding).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyOp {
    /// A data key sealed under a KEK.
    Wrap,
    /// A wrapped data key opened with its KEK.
    Unwrap,
    /// A data key destroyed, with evidence (crypto-shredding).
    Shred,
}

impl KeyOp {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyOp::Wrap => "wrap",
            KeyOp::Unwrap => "unwrap",
            KeyOp::Shred => "shred",
        }
    }
}

/// Every metric of the process. Get it with [`metrics()`].
pub struct Metrics {
    registry: Registry,
    /// Calls the recorders of this process hold open (started, not yet stored as finished).
    pub calls_in_flight: Gauge,
    /// KI calls being transcribed live in this process.
    pub live_calls_in_flight: Gauge,
    /// From a chunk's producer timestamp on the bus to the flush that made its audio durable.
    pub end_to_end_latency: Histogram,
    /// Duration of one recorder flush (seal, blob write, metadata transaction, events).
    pub flush_duration: Histogram,
    /// Recordings finished and announced on `opptak.recordings.v1`.
    pub recordings_stored: Counter,
    /// Calls the sweeper ended because no input and no CallEnded came.
    pub idle_calls_ended: Counter,
    /// Transcripts stored (live or batch).
    pub transcripts_stored: Counter,
    /// Drafts stored for review.
    pub drafts_stored: Counter,
    /// Entries appended to the hash-chained audit log.
    pub audit_appends: Counter,
    /// From a call's end to its draft stored for review.
    pub call_end_to_draft: Histogram,
    /// Utterances waiting for a speech-recognizer slot, and since when.
    asr_queue: std::sync::Mutex<std::collections::BTreeMap<u64, std::time::Instant>>,
    asr_queue_depth: Gauge,
    asr_queue_oldest: Gauge<f64, std::sync::atomic::AtomicU64>,
    asr_queue_wait: Histogram,
    role_up: Family<Labels1, Gauge>,
    chunks: Family<Labels1, Counter>,
    conversations: Family<Labels1, Counter>,
    dead_letters: Family<Labels1, Counter>,
    consumer_lag: Family<[(&'static str, String); 3], Gauge>,
    asr_requests: HistogramFamily<Labels1>,
    llm_requests: HistogramFamily<Labels2>,
    sweeper_deletions: Family<Labels1, Counter>,
    key_operations: Family<Labels1, Counter>,
    /// SIPREC recording sessions open in this process.
    pub siprec_sessions: Gauge,
    /// Interarrival jitter of each SIPREC stream at its session's end (seconds).
    pub siprec_jitter: Histogram,
    /// Telephone-events (DTMF) seen on SIPREC streams: counted, never the key.
    pub siprec_tone_events: Counter,
    siprec_packets: Family<Labels1, Counter>,
    siprec_sip_responses: Family<Labels1, Counter>,
}

/// Buckets of RTP interarrival jitter (seconds).
const JITTER_BUCKETS: [f64; 10] = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.5];

/// What happened to an RTP packet of the SIPREC role.
const SIPREC_PACKET_OUTCOMES: [&str; 7] = [
    "received",
    "lost",
    "late",
    "duplicate",
    "unknown_session",
    "invalid",
    "unknown_payload",
];

/// SIP status codes the SIPREC role sends, as labels (others: `other`).
const SIP_CODES: [(u16, &str); 14] = [
    (100, "100"),
    (200, "200"),
    (400, "400"),
    (405, "405"),
    (415, "415"),
    (420, "420"),
    (481, "481"),
    (487, "487"),
    (488, "488"),
    (491, "491"),
    (500, "500"),
    (503, "503"),
    (513, "513"),
    (603, "603"),
];

/// An utterance waiting for the speech recognizer ([`Metrics::asr_waiting`]).
pub struct AsrWaiting {
    metrics: &'static Metrics,
    id: u64,
    since: std::time::Instant,
}

impl Drop for AsrWaiting {
    fn drop(&mut self) {
        if let Ok(mut q) = self.metrics.asr_queue.lock() {
            q.remove(&self.id);
        }
        self.metrics.asr_queue_depth.dec();
        self.metrics.asr_queue_wait.observe(self.since.elapsed().as_secs_f64());
    }
}

/// The process-wide metrics, created on first use.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

fn model_histogram() -> Histogram {
    Histogram::new(MODEL_BUCKETS)
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::default();
        let m = Self {
            calls_in_flight: Gauge::default(),
            live_calls_in_flight: Gauge::default(),
            end_to_end_latency: Histogram::new(LATENCY_BUCKETS),
            flush_duration: Histogram::new(LATENCY_BUCKETS),
            recordings_stored: Counter::default(),
            idle_calls_ended: Counter::default(),
            transcripts_stored: Counter::default(),
            drafts_stored: Counter::default(),
            audit_appends: Counter::default(),
            call_end_to_draft: Histogram::new(DRAFT_BUCKETS),
            asr_queue: Default::default(),
            asr_queue_depth: Gauge::default(),
            asr_queue_oldest: Gauge::default(),
            asr_queue_wait: Histogram::new(MODEL_BUCKETS),
            role_up: Family::default(),
            chunks: Family::default(),
            conversations: Family::default(),
            dead_letters: Family::default(),
            consumer_lag: Family::default(),
            asr_requests: Family::new_with_constructor(model_histogram),
            llm_requests: Family::new_with_constructor(model_histogram),
            sweeper_deletions: Family::default(),
            key_operations: Family::default(),
            siprec_sessions: Gauge::default(),
            siprec_jitter: Histogram::new(JITTER_BUCKETS),
            siprec_tone_events: Counter::default(),
            siprec_packets: Family::default(),
            siprec_sip_responses: Family::default(),
            registry: Registry::default(),
        };
        // Counters get `_total` appended by the encoder.
        let info = Family::<Labels1, Gauge>::default();
        info.get_or_create(&[("version", env!("CARGO_PKG_VERSION"))]).set(1);
        registry.register(
            "opptak_build_info",
            "The opptak version this process runs (always 1)",
            info,
        );
        registry.register(
            "opptak_role_up",
            "1 while a role runs in this process, 0 once its task ended",
            m.role_up.clone(),
        );
        registry.register(
            "opptak_calls_in_flight",
            "Calls the recorders of this process hold open",
            m.calls_in_flight.clone(),
        );
        registry.register(
            "opptak_live_calls_in_flight",
            "KI calls being transcribed live in this process",
            m.live_calls_in_flight.clone(),
        );
        registry.register(
            "opptak_chunks",
            "Audio chunks handled by the recorder, by outcome",
            m.chunks.clone(),
        );
        registry.register(
            "opptak_conversation_events",
            "Conversation events handled by the messages role, by outcome",
            m.conversations.clone(),
        );
        registry.register(
            "opptak_dead_letters",
            "Inputs refused to the dead-letter topic, by reason",
            m.dead_letters.clone(),
        );
        registry.register(
            "opptak_consumer_lag",
            "Messages behind the end of the partition (committed offset), per consumer group",
            m.consumer_lag.clone(),
        );
        registry.register(
            "opptak_end_to_end_latency_seconds",
            "From a chunk's producer timestamp to the flush that made its audio durable",
            m.end_to_end_latency.clone(),
        );
        registry.register(
            "opptak_flush_seconds",
            "Duration of one recorder flush",
            m.flush_duration.clone(),
        );
        registry.register(
            "opptak_recordings_stored",
            "Recordings finished and announced",
            m.recordings_stored.clone(),
        );
        registry.register(
            "opptak_idle_calls_ended",
            "Calls the sweeper ended after recorder.idle_timeout_s without input or CallEnded",
            m.idle_calls_ended.clone(),
        );
        registry.register(
            "opptak_asr_request_seconds",
            "Requests to the speech recognizer, by outcome (each attempt)",
            m.asr_requests.clone(),
        );
        registry.register(
            "opptak_llm_request_seconds",
            "Draft requests, by backend (model server or embedded drafter) and outcome (each attempt)",
            m.llm_requests.clone(),
        );
        registry.register(
            "opptak_transcripts_stored",
            "Transcripts stored",
            m.transcripts_stored.clone(),
        );
        registry.register(
            "opptak_drafts_stored",
            "Drafts stored for review",
            m.drafts_stored.clone(),
        );
        registry.register(
            "opptak_sweeper_deletions",
            "Objects deleted by the retention sweeper, by artifact kind (spool: unreferenced spool objects)",
            m.sweeper_deletions.clone(),
        );
        registry.register(
            "opptak_key_operations",
            "Data-key operations: wrap, unwrap, shred",
            m.key_operations.clone(),
        );
        registry.register(
            "opptak_audit_appends",
            "Entries appended to the audit log",
            m.audit_appends.clone(),
        );
        registry.register(
            "opptak_asr_queue_depth",
            "Utterances waiting for a speech-recognizer slot (the KI backlog)",
            m.asr_queue_depth.clone(),
        );
        registry.register(
            "opptak_asr_queue_oldest_seconds",
            "How long the oldest utterance waiting for the speech recognizer has waited",
            m.asr_queue_oldest.clone(),
        );
        registry.register(
            "opptak_asr_queue_wait_seconds",
            "Time an utterance waited for a speech-recognizer slot before its request",
            m.asr_queue_wait.clone(),
        );
        registry.register(
            "opptak_call_end_to_draft_seconds",
            "From a call's end to its draft stored for review (what the advisor waits)",
            m.call_end_to_draft.clone(),
        );
        // Every outcome and code at 0 from the start: a series that appears
        // only with its first event hides the rate of the first ones.
        for outcome in SIPREC_PACKET_OUTCOMES {
            let _ = m.siprec_packets.get_or_create(&[("outcome", outcome)]);
        }
        for (_, code) in SIP_CODES {
            let _ = m.siprec_sip_responses.get_or_create(&[("code", code)]);
        }
        registry.register(
            "opptak_siprec_sessions",
            "SIPREC recording sessions open in this process",
            m.siprec_sessions.clone(),
        );
        registry.register(
            "opptak_siprec_rtp_packets",
            "RTP packets of the SIPREC role, by outcome (received, lost, late, duplicate, unknown_session, invalid, unknown_payload)",
            m.siprec_packets.clone(),
        );
        registry.register(
            "opptak_siprec_jitter_seconds",
            "Interarrival jitter (RFC 3550) of each SIPREC stream at its session's end",
            m.siprec_jitter.clone(),
        );
        registry.register(
            "opptak_siprec_tone_events",
            "Telephone-events (DTMF) on SIPREC streams; the key is never read",
            m.siprec_tone_events.clone(),
        );
        registry.register(
            "opptak_siprec_sip_responses",
            "SIP responses the SIPREC role sent, by status code",
            m.siprec_sip_responses.clone(),
        );
        Self { registry, ..m }
    }

    /// Everything in the Prometheus text format (version 0.0.4).
    pub fn render(&self) -> String {
        let oldest = self
            .asr_queue
            .lock()
            .map(|q| q.values().next().map(|t| t.elapsed().as_secs_f64()).unwrap_or(0.0))
            .unwrap_or(0.0);
        self.asr_queue_oldest.set(oldest);
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_text::encode(&mut out, &self.registry);
        out
    }

    /// An utterance starts waiting for a speech-recognizer slot; it stops
    /// waiting when the ticket is dropped (its request starts, or it is
    /// cancelled), which records the wait.
    pub fn asr_waiting(&'static self) -> AsrWaiting {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let since = std::time::Instant::now();
        if let Ok(mut q) = self.asr_queue.lock() {
            q.insert(id, since);
        }
        self.asr_queue_depth.inc();
        AsrWaiting {
            metrics: self,
            id,
            since,
        }
    }

    /// Marks `role` running until the guard is dropped (put the guard inside
    /// the role's task: a task that ends, however, turns it to 0).
    pub fn role_up(&'static self, role: &'static str) -> RoleUp {
        self.role_up.get_or_create(&[("role", role)]).set(1);
        RoleUp { metrics: self, role }
    }

    /// Whether every role in `roles` is running (readiness).
    pub fn roles_running(&self, roles: &[&'static str]) -> Result<(), String> {
        for r in roles {
            let up = self.role_up.get(&[("role", r)]).map(|g| g.get()).unwrap_or(0);
            if up != 1 {
                return Err(format!("role {r} is not running"));
            }
        }
        Ok(())
    }

    pub fn chunk(&self, outcome: ChunkOutcome) {
        self.chunks.get_or_create(&[("outcome", outcome.as_str())]).inc();
    }

    /// What the messages role did: `started`, `message`, `duplicate`,
    /// `written` (a conversation's copies), `idle_ended`, `objection`.
    pub fn conversation_event(&self, outcome: &'static str) {
        self.conversations.get_or_create(&[("outcome", outcome)]).inc();
    }

    /// A refused input; `reason` is the dead-letter reason without its
    /// prefix (`UNKNOWN_CALL`, `LATE_CHUNK`, ...).
    pub fn dead_letter(&self, reason: &'static str) {
        self.dead_letters.get_or_create(&[("reason", reason)]).inc();
    }

    /// The lag of one partition a consumer group owns in this process.
    pub fn set_consumer_lag(&self, group: &str, topic: &str, partition: i32, lag: i64) {
        self.consumer_lag
            .get_or_create(&lag_labels(group, topic, partition))
            .set(lag);
    }

    /// Forgets a partition the group no longer owns here (after a rebalance),
    /// so a stale lag is not reported twice.
    pub fn remove_consumer_lag(&self, group: &str, topic: &str, partition: i32) {
        self.consumer_lag.remove(&lag_labels(group, topic, partition));
    }

    /// One request to the speech recognizer.
    pub fn asr_request(&self, outcome: RequestOutcome, elapsed: Duration) {
        self.asr_requests
            .get_or_create(&[("outcome", outcome.as_str())])
            .observe(elapsed.as_secs_f64());
    }

    /// One draft request; `backend` is `model` (a chat-completions server) or
    /// `embedded` (the built-in drafter).
    pub fn llm_request(&self, backend: &'static str, outcome: RequestOutcome, elapsed: Duration) {
        self.llm_requests
            .get_or_create(&[("backend", backend), ("outcome", outcome.as_str())])
            .observe(elapsed.as_secs_f64());
    }

    /// `n` objects of artifact `kind` deleted by the sweeper.
    pub fn sweeper_deleted(&self, kind: &str, n: u64) {
        self.sweeper_deletions
            .get_or_create(&[("kind", artifact_kind(kind))])
            .inc_by(n);
    }

    pub fn key_operation(&self, op: KeyOp) {
        self.key_operations.get_or_create(&[("op", op.as_str())]).inc();
    }

    /// `n` RTP packets of the SIPREC role with this outcome (a fixed set).
    pub fn siprec_packets(&self, outcome: &'static str, n: u64) {
        if n > 0 {
            self.siprec_packets.get_or_create(&[("outcome", outcome)]).inc_by(n);
        }
    }

    /// One SIP response sent by the SIPREC role.
    pub fn siprec_sip_response(&self, code: u16) {
        let label = SIP_CODES.iter().find(|(c, _)| *c == code).map_or("other", |(_, l)| l);
        self.siprec_sip_responses.get_or_create(&[("code", label)]).inc();
    }
}

fn lag_labels(group: &str, topic: &str, partition: i32) -> [(&'static str, String); 3] {
    [
        ("group", group.to_owned()),
        ("topic", topic.to_owned()),
        ("partition", partition.to_string()),
    ]
}

/// Artifact kinds as labels: the known ones, anything else as `other` (a
/// label must never grow without bound).
fn artifact_kind(kind: &str) -> &'static str {
    const KNOWN: [&str; 8] = [
        "recording",
        "archive-copy",
        "ki-audio",
        "transcript",
        "draft",
        "topic-tags",
        "approved-summary",
        "spool",
    ];
    KNOWN.iter().find(|k| **k == kind).copied().unwrap_or("other")
}

/// Keeps `opptak_role_up{role}` at 1 while alive.
pub struct RoleUp {
    metrics: &'static Metrics,
    role: &'static str,
}

impl Drop for RoleUp {
    fn drop(&mut self) {
        self.metrics.role_up.get_or_create(&[("role", self.role)]).set(0);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The sample line of `name` with exactly these labels, parsed.
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
            .map(|v| v.trim().parse().unwrap())
    }

    fn value(text: &str, series: &str) -> f64 {
        sample(text, series).unwrap_or_else(|| panic!("no {series} in\n{text}"))
    }

    #[test]
    fn siprec_series_exist_from_the_start_and_codes_are_bounded() {
        let m = metrics();
        let text = m.render();
        assert!(sample(&text, r#"opptak_siprec_rtp_packets_total{outcome="unknown_session"}"#).is_some());
        assert!(sample(&text, r#"opptak_siprec_sip_responses_total{code="488"}"#).is_some());
        m.siprec_sip_response(503);
        m.siprec_sip_response(299);
        m.siprec_packets("lost", 3);
        let text = m.render();
        assert!(value(&text, r#"opptak_siprec_sip_responses_total{code="503"}"#) >= 1.0);
        assert!(value(&text, r#"opptak_siprec_sip_responses_total{code="other"}"#) >= 1.0);
        assert!(value(&text, r#"opptak_siprec_rtp_packets_total{outcome="lost"}"#) >= 3.0);
        assert!(sample(&text, "opptak_siprec_sessions").is_some());
    }

    #[test]
    fn counts_render_in_the_prometheus_text_format() {
        let m = metrics();
        m.chunk(ChunkOutcome::Accepted);
        m.chunk(ChunkOutcome::Accepted);
        m.chunk(ChunkOutcome::DeadLetter);
        m.dead_letter("UNKNOWN_CALL");
        m.key_operation(KeyOp::Shred);
        m.asr_request(RequestOutcome::Ok, Duration::from_millis(700));
        m.llm_request("embedded", RequestOutcome::Ok, Duration::from_millis(3));
        m.end_to_end_latency.observe(0.3);
        m.sweeper_deleted("ki-audio", 2);
        m.sweeper_deleted("something-new", 1);
        let text = m.render();
        assert!(value(&text, r#"opptak_chunks_total{outcome="accepted"}"#) >= 2.0);
        assert!(value(&text, r#"opptak_chunks_total{outcome="dead_letter"}"#) >= 1.0);
        assert!(value(&text, r#"opptak_dead_letters_total{reason="UNKNOWN_CALL"}"#) >= 1.0);
        assert!(value(&text, r#"opptak_key_operations_total{op="shred"}"#) >= 1.0);
        assert!(value(&text, r#"opptak_asr_request_seconds_bucket{outcome="ok",le="1"}"#) >= 1.0);
        assert!(value(&text, r#"opptak_asr_request_seconds_count{outcome="ok"}"#) >= 1.0);
        assert!(
            value(
                &text,
                r#"opptak_llm_request_seconds_count{backend="embedded",outcome="ok"}"#
            ) >= 1.0
        );
        assert!(value(&text, r#"opptak_end_to_end_latency_seconds_bucket{le="0.5"}"#) >= 1.0);
        assert!(value(&text, r#"opptak_sweeper_deletions_total{kind="ki-audio"}"#) >= 2.0);
        assert!(value(&text, r#"opptak_sweeper_deletions_total{kind="other"}"#) >= 1.0);
        assert!(text.contains("# TYPE opptak_end_to_end_latency_seconds histogram"));
        assert!(text.contains("# TYPE opptak_calls_in_flight gauge"));
        assert!(text.contains(&format!(
            "opptak_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )));
    }

    #[test]
    fn role_up_follows_the_guard() {
        let m = metrics();
        assert!(m.roles_running(&["unit-test-role"]).is_err());
        let guard = m.role_up("unit-test-role");
        assert_eq!(m.roles_running(&["unit-test-role"]), Ok(()));
        assert_eq!(
            sample(&m.render(), r#"opptak_role_up{role="unit-test-role"}"#),
            Some(1.0)
        );
        drop(guard);
        assert_eq!(
            m.roles_running(&["unit-test-role"]),
            Err("role unit-test-role is not running".into())
        );
        assert_eq!(
            sample(&m.render(), r#"opptak_role_up{role="unit-test-role"}"#),
            Some(0.0)
        );
    }

    #[test]
    fn a_revoked_partition_leaves_the_lag_gauge() {
        let m = metrics();
        m.set_consumer_lag("g-unit", "t", 3, 42);
        let series = r#"opptak_consumer_lag{group="g-unit",topic="t",partition="3"}"#;
        assert_eq!(sample(&m.render(), series), Some(42.0));
        m.remove_consumer_lag("g-unit", "t", 3);
        assert_eq!(sample(&m.render(), series), None);
    }
}
