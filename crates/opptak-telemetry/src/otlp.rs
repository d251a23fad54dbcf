//! Optional trace export: the `tracing` spans of `opptak run` (the `compact`,
//! `transcribe`, `summarize` and `live_call` spans, each with its `call_id`)
//! sent to an OpenTelemetry collector over OTLP/HTTP with the JSON encoding
//! (`POST {telemetry.otlp_endpoint}/v1/traces`).
//!
//! Hand-written instead of the `opentelemetry-*` crates: the protocol's JSON
//! form is a few dozen lines of `serde_json`, and it keeps tonic, prost-for-OTel
//! and a second HTTP stack out of the build.
//!
//! Layout:
//! - [`OtlpLayer`], a `tracing_subscriber::Layer`: gives every span a trace id
//!   (random for a root span, the parent's for a child) and a span id, keeps
//!   its fields and the events logged in it, and on close hands the finished
//!   span to a bounded channel. It never waits: when the channel is full the
//!   span is dropped and counted, so a slow or dead collector costs a role
//!   nothing.
//! - the exporter, a tokio task: batches spans (up to [`MAX_BATCH`] or every
//!   `interval`) and POSTs them with a timeout. A failed batch is tried once
//!   more with the next one, then dropped (no unbounded buffering); failures
//!   are logged at most once a minute.
//! - [`OtlpHandle::shutdown`] flushes what is queued, with a deadline.
//!
//! Only span fields and log-event fields are exported: call ids, counts,
//! kinds, error texts. No role puts transcript, audio or summary text in
//! either (docs/metrics.md, "Traces (OpenTelemetry)").

use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// Spans in one POST at most.
pub const MAX_BATCH: usize = 512;
/// Finished spans waiting for the exporter at most; more are dropped.
pub const QUEUE: usize = 4096;
/// Events kept per span at most (the first ones; more are counted only).
const MAX_EVENTS: usize = 32;
/// A POST that takes longer is abandoned (and counts as failed).
const POST_TIMEOUT: Duration = Duration::from_secs(10);
/// Export failures are logged at most this often.
const WARN_EVERY: Duration = Duration::from_secs(60);
/// The instrumentation scope named in every export.
const SCOPE: &str = "opptak";

/// Where and how to export.
#[derive(Clone, Debug)]
pub struct OtlpConfig {
    /// The collector's OTLP/HTTP base URL, e.g. `http://otel-collector:4318`.
    pub endpoint: String,
    /// `service.instance.id`: tells processes of one deployment apart.
    pub instance_id: String,
    /// `opptak.roles`: the roles this process runs, comma-separated.
    pub roles: String,
    /// A partial batch is sent after this long.
    pub interval: Duration,
}

impl OtlpConfig {
    /// The URL spans are POSTed to.
    pub fn traces_url(&self) -> String {
        format!("{}/v1/traces", self.endpoint.trim_end_matches('/'))
    }
}

/// Counts of the exporter, shared by the layer, the task and the handle.
#[derive(Debug, Default)]
pub struct Counts {
    /// Spans the collector accepted.
    pub exported: AtomicU64,
    /// Spans lost: queue full, or their batch failed twice.
    pub dropped: AtomicU64,
}

/// A span as exported (ids, times, attributes, events).
#[derive(Clone, Debug, PartialEq)]
pub struct SpanRecord {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent_span_id: Option<[u8; 8]>,
    pub name: &'static str,
    pub target: &'static str,
    pub start: SystemTime,
    pub end: SystemTime,
    pub attributes: Vec<(String, AttrValue)>,
    pub events: Vec<EventRecord>,
    /// Events beyond [`MAX_EVENTS`], not kept.
    pub dropped_events: u32,
    /// An ERROR event was logged in the span.
    pub error: Option<String>,
}

/// A log event inside a span, exported as a span event.
#[derive(Clone, Debug, PartialEq)]
pub struct EventRecord {
    pub time: SystemTime,
    /// The log message.
    pub name: String,
    pub level: Level,
    pub attributes: Vec<(String, AttrValue)>,
}

/// An attribute value (OTLP `AnyValue`).
#[derive(Clone, Debug, PartialEq)]
pub enum AttrValue {
    Str(String),
    Int(i64),
    Bool(bool),
    Double(f64),
}

impl AttrValue {
    fn to_json(&self) -> Value {
        match self {
            AttrValue::Str(s) => json!({ "stringValue": s }),
            // int64 is a string in the protobuf JSON mapping.
            AttrValue::Int(i) => json!({ "intValue": i.to_string() }),
            AttrValue::Bool(b) => json!({ "boolValue": b }),
            AttrValue::Double(d) if d.is_finite() => json!({ "doubleValue": d }),
            // JSON has no NaN or infinity; the mapping spells them as strings.
            AttrValue::Double(d) => json!({ "doubleValue": d.to_string() }),
        }
    }
}

fn nanos(t: SystemTime) -> String {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos().to_string()
}

fn attributes_json(attrs: &[(String, AttrValue)]) -> Value {
    Value::Array(
        attrs
            .iter()
            .map(|(k, v)| json!({ "key": k, "value": v.to_json() }))
            .collect(),
    )
}

impl SpanRecord {
    /// The span in the OTLP protobuf-JSON mapping.
    pub fn to_json(&self) -> Value {
        let mut attrs = self.attributes.clone();
        attrs.push(("code.namespace".into(), AttrValue::Str(self.target.into())));
        let mut span = json!({
            "traceId": hex::encode(self.trace_id),
            "spanId": hex::encode(self.span_id),
            "name": self.name,
            "kind": 1, // SPAN_KIND_INTERNAL
            "startTimeUnixNano": nanos(self.start),
            "endTimeUnixNano": nanos(self.end),
            "attributes": attributes_json(&attrs),
            "events": self.events.iter().map(|e| {
                let mut a = e.attributes.clone();
                a.push(("level".into(), AttrValue::Str(e.level.as_str().to_ascii_lowercase())));
                json!({
                    "timeUnixNano": nanos(e.time),
                    "name": e.name,
                    "attributes": attributes_json(&a),
                })
            }).collect::<Vec<_>>(),
            "droppedEventsCount": self.dropped_events,
            "status": match &self.error {
                None => json!({}),
                Some(m) => json!({ "code": 2, "message": m }), // STATUS_CODE_ERROR
            },
        });
        if let Some(p) = self.parent_span_id {
            span["parentSpanId"] = Value::String(hex::encode(p));
        }
        span
    }
}

/// One `ExportTraceServiceRequest` body for `spans`.
pub fn request_json(resource: &[(String, AttrValue)], spans: &[SpanRecord]) -> Value {
    json!({
        "resourceSpans": [{
            "resource": { "attributes": attributes_json(resource) },
            "scopeSpans": [{
                "scope": { "name": SCOPE, "version": env!("CARGO_PKG_VERSION") },
                "spans": spans.iter().map(SpanRecord::to_json).collect::<Vec<_>>(),
            }],
        }],
    })
}

/// The resource attributes of this process.
pub fn resource(cfg: &OtlpConfig) -> Vec<(String, AttrValue)> {
    vec![
        ("service.name".into(), AttrValue::Str("opptak".into())),
        (
            "service.version".into(),
            AttrValue::Str(env!("CARGO_PKG_VERSION").into()),
        ),
        ("service.instance.id".into(), AttrValue::Str(cfg.instance_id.clone())),
        ("opptak.roles".into(), AttrValue::Str(cfg.roles.clone())),
    ]
}

/// Fields of a span or an event, as attributes (`message` apart).
#[derive(Default)]
struct Fields {
    attrs: Vec<(String, AttrValue)>,
    message: Option<String>,
}

impl Fields {
    fn set(&mut self, field: &Field, v: AttrValue) {
        if field.name() == "message" {
            if let AttrValue::Str(s) = v {
                self.message = Some(s);
                return;
            }
        }
        // A re-recorded field replaces its value.
        match self.attrs.iter_mut().find(|(k, _)| k == field.name()) {
            Some(slot) => slot.1 = v,
            None => self.attrs.push((field.name().to_owned(), v)),
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.set(field, AttrValue::Str(value.to_owned()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.set(field, AttrValue::Int(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.set(
            field,
            i64::try_from(value).map_or_else(|_| AttrValue::Str(value.to_string()), AttrValue::Int),
        );
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.set(field, AttrValue::Bool(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.set(field, AttrValue::Double(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.set(field, AttrValue::Str(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.set(field, AttrValue::Str(format!("{value:?}")));
    }
}

/// What the layer keeps in a live span's extensions.
struct Live {
    record: SpanRecord,
}

/// The `tracing_subscriber::Layer` that exports spans. Build it with [`start`].
pub struct OtlpLayer {
    tx: mpsc::Sender<Msg>,
    counts: Arc<Counts>,
}

enum Msg {
    Span(Box<SpanRecord>),
    Flush(oneshot::Sender<()>),
}

fn random_nonzero<const N: usize>() -> [u8; N] {
    loop {
        let b: [u8; N] = std::array::from_fn(|_| rand::random());
        if b.iter().any(|&x| x != 0) {
            return b;
        }
    }
}

impl<S> Layer<S> for OtlpLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let parent = span.parent().and_then(|p| {
            p.extensions()
                .get::<Live>()
                .map(|l| (l.record.trace_id, l.record.span_id))
        });
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        let meta = span.metadata();
        let record = SpanRecord {
            trace_id: parent.map_or_else(random_nonzero::<16>, |p| p.0),
            span_id: random_nonzero::<8>(),
            parent_span_id: parent.map(|p| p.1),
            name: meta.name(),
            target: meta.target(),
            start: SystemTime::now(),
            end: UNIX_EPOCH,
            attributes: fields.attrs,
            events: Vec::new(),
            dropped_events: 0,
            error: None,
        };
        span.extensions_mut().insert(Live { record });
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut ext = span.extensions_mut();
        let Some(live) = ext.get_mut::<Live>() else { return };
        let mut fields = Fields {
            attrs: std::mem::take(&mut live.record.attributes),
            message: None,
        };
        values.record(&mut fields);
        live.record.attributes = fields.attrs;
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.event_span(event) else { return };
        let mut ext = span.extensions_mut();
        let Some(live) = ext.get_mut::<Live>() else { return };
        let mut fields = Fields::default();
        event.record(&mut fields);
        let meta = event.metadata();
        let name = fields.message.unwrap_or_else(|| meta.name().to_owned());
        if *meta.level() == Level::ERROR && live.record.error.is_none() {
            live.record.error = Some(name.clone());
        }
        if live.record.events.len() >= MAX_EVENTS {
            live.record.dropped_events += 1;
            return;
        }
        live.record.events.push(EventRecord {
            time: SystemTime::now(),
            name,
            level: *meta.level(),
            attributes: fields.attrs,
        });
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(Live { mut record }) = span.extensions_mut().remove::<Live>() else {
            return;
        };
        record.end = SystemTime::now();
        // try_send: a full queue (collector slow or down) drops, never waits.
        if self.tx.try_send(Msg::Span(Box::new(record))).is_err() {
            self.counts.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Flushes the exporter on shutdown; its counts.
#[derive(Clone)]
pub struct OtlpHandle {
    tx: mpsc::Sender<Msg>,
    counts: Arc<Counts>,
}

impl OtlpHandle {
    /// Spans exported so far and spans dropped so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.counts.exported.load(Ordering::Relaxed),
            self.counts.dropped.load(Ordering::Relaxed),
        )
    }

    /// Sends every span closed so far, waiting at most `deadline` (a dead
    /// collector must not hold up the process's exit).
    pub async fn shutdown(&self, deadline: Duration) {
        let flush = async {
            let (ack, done) = oneshot::channel();
            if self.tx.send(Msg::Flush(ack)).await.is_ok() {
                let _ = done.await;
            }
        };
        if tokio::time::timeout(deadline, flush).await.is_err() {
            tracing::warn!(
                deadline_ms = deadline.as_millis() as u64,
                "trace export: not flushed before the deadline; queued spans are lost"
            );
        }
    }
}

/// The layer and its handle; spawns the exporter task on the current tokio
/// runtime (call from within one).
pub fn start(cfg: OtlpConfig) -> (OtlpLayer, OtlpHandle) {
    let (tx, rx) = mpsc::channel(QUEUE);
    let counts = Arc::new(Counts::default());
    let http = reqwest::Client::builder()
        .timeout(POST_TIMEOUT)
        .build()
        .unwrap_or_else(|_| reqwest::Client::new());
    let exporter = Exporter {
        http,
        url: cfg.traces_url(),
        resource: resource(&cfg),
        counts: counts.clone(),
        last_warning: None,
        failures_since_warning: 0,
    };
    tokio::spawn(exporter.run(rx, cfg.interval));
    (
        OtlpLayer {
            tx: tx.clone(),
            counts: counts.clone(),
        },
        OtlpHandle { tx, counts },
    )
}

struct Exporter {
    http: reqwest::Client,
    url: String,
    resource: Vec<(String, AttrValue)>,
    counts: Arc<Counts>,
    last_warning: Option<Instant>,
    failures_since_warning: u64,
}

impl Exporter {
    async fn run(mut self, mut rx: mpsc::Receiver<Msg>, interval: Duration) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut batch: Vec<SpanRecord> = Vec::new();
        // Spans of a failed POST, tried once more with the next batch.
        let mut retry: Vec<SpanRecord> = Vec::new();
        loop {
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(Msg::Span(s)) => {
                        batch.push(*s);
                        if batch.len() >= MAX_BATCH {
                            self.send(&mut batch, &mut retry).await;
                        }
                    }
                    Some(Msg::Flush(ack)) => {
                        while !batch.is_empty() || !retry.is_empty() {
                            let before = batch.len() + retry.len();
                            self.send(&mut batch, &mut retry).await;
                            if batch.len() + retry.len() >= before {
                                break; // failing: what is left would fail again
                            }
                        }
                        let _ = ack.send(());
                    }
                    None => return,
                },
                _ = tick.tick() => {
                    if !batch.is_empty() || !retry.is_empty() {
                        self.send(&mut batch, &mut retry).await;
                    }
                }
            }
        }
    }

    /// POSTs `retry` and up to a batch of `batch`. On failure the new spans
    /// go to `retry` and the retried ones are dropped.
    async fn send(&mut self, batch: &mut Vec<SpanRecord>, retry: &mut Vec<SpanRecord>) {
        let take = batch.len().min(MAX_BATCH);
        let fresh: Vec<SpanRecord> = batch.drain(..take).collect();
        let old = std::mem::take(retry);
        let mut spans = old;
        let retried = spans.len();
        spans.extend(fresh);
        let body = request_json(&self.resource, &spans);
        let result = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await;
        let error = match result {
            Ok(r) if r.status().is_success() => None,
            Ok(r) => Some(format!("HTTP {}", r.status())),
            Err(e) => Some(e.to_string()),
        };
        match error {
            None => {
                self.counts.exported.fetch_add(spans.len() as u64, Ordering::Relaxed);
            }
            Some(error) => {
                self.counts.dropped.fetch_add(retried as u64, Ordering::Relaxed);
                *retry = spans.split_off(retried);
                self.failures_since_warning += 1;
                if self.last_warning.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
                    tracing::warn!(
                        url = %self.url,
                        %error,
                        failures = self.failures_since_warning,
                        dropped_total = self.counts.dropped.load(Ordering::Relaxed),
                        "trace export failed; spans are dropped until the collector answers (next warning in a minute at the earliest)"
                    );
                    self.last_warning = Some(Instant::now());
                    self.failures_since_warning = 0;
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    fn sample() -> SpanRecord {
        SpanRecord {
            trace_id: [0xab; 16],
            span_id: [0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08],
            parent_span_id: Some([0x0f; 8]),
            name: "compact",
            target: "opptak_recorder",
            start: UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789),
            end: UNIX_EPOCH + Duration::from_nanos(1_700_000_001_000_000_000),
            attributes: vec![
                ("call_id".into(), AttrValue::Str("c-1".into())),
                ("frames".into(), AttrValue::Int(9_007_199_254_740_993)),
                ("ki".into(), AttrValue::Bool(true)),
                ("share".into(), AttrValue::Double(0.25)),
                ("odd".into(), AttrValue::Double(f64::NAN)),
            ],
            events: vec![EventRecord {
                time: UNIX_EPOCH + Duration::from_nanos(1_700_000_000_500_000_000),
                name: "compaction failed".into(),
                level: Level::WARN,
                attributes: vec![("error".into(), AttrValue::Str("boom".into()))],
            }],
            dropped_events: 0,
            error: None,
        }
    }

    #[test]
    fn a_span_encodes_per_the_protobuf_json_mapping() {
        let cfg = OtlpConfig {
            endpoint: "http://collector:4318/".into(),
            instance_id: "i-1".into(),
            roles: "recorder".into(),
            interval: Duration::from_secs(2),
        };
        assert_eq!(cfg.traces_url(), "http://collector:4318/v1/traces");
        let body = request_json(&resource(&cfg), &[sample()]);
        let rs = &body["resourceSpans"][0];
        let res = rs["resource"]["attributes"].as_array().unwrap();
        let attr = |list: &[Value], k: &str| list.iter().find(|a| a["key"] == k).unwrap()["value"].clone();
        assert_eq!(attr(res, "service.name"), json!({"stringValue": "opptak"}));
        assert_eq!(attr(res, "service.instance.id"), json!({"stringValue": "i-1"}));
        assert_eq!(attr(res, "opptak.roles"), json!({"stringValue": "recorder"}));
        assert_eq!(rs["scopeSpans"][0]["scope"]["name"], "opptak");
        let span = &rs["scopeSpans"][0]["spans"][0];
        assert_eq!(span["traceId"], "abababababababababababababababab");
        assert_eq!(span["traceId"].as_str().unwrap().len(), 32);
        assert_eq!(span["spanId"], "0102030405060708");
        assert_eq!(span["parentSpanId"], "0f0f0f0f0f0f0f0f");
        assert_eq!(span["name"], "compact");
        assert_eq!(span["kind"], 1);
        // Nanoseconds past 2^53: strings, exact.
        assert_eq!(span["startTimeUnixNano"], "1700000000123456789");
        assert_eq!(span["endTimeUnixNano"], "1700000001000000000");
        let a = span["attributes"].as_array().unwrap();
        assert_eq!(attr(a, "call_id"), json!({"stringValue": "c-1"}));
        assert_eq!(attr(a, "frames"), json!({"intValue": "9007199254740993"}));
        assert_eq!(attr(a, "ki"), json!({"boolValue": true}));
        assert_eq!(attr(a, "share"), json!({"doubleValue": 0.25}));
        assert_eq!(attr(a, "odd"), json!({"doubleValue": "NaN"}));
        assert_eq!(attr(a, "code.namespace"), json!({"stringValue": "opptak_recorder"}));
        let ev = &span["events"][0];
        assert_eq!(ev["name"], "compaction failed");
        assert_eq!(ev["timeUnixNano"], "1700000000500000000");
        let ea = ev["attributes"].as_array().unwrap();
        assert_eq!(attr(ea, "error"), json!({"stringValue": "boom"}));
        assert_eq!(attr(ea, "level"), json!({"stringValue": "warn"}));
        assert_eq!(span["status"], json!({}));
    }

    #[test]
    fn a_root_span_encodes_without_parent_and_errors_set_the_status() {
        let mut s = sample();
        s.parent_span_id = None;
        s.error = Some("stored nothing".into());
        let j = s.to_json();
        assert!(j.get("parentSpanId").is_none());
        assert_eq!(j["status"], json!({"code": 2, "message": "stored nothing"}));
    }

    /// The layer under a real registry: ids, inheritance, fields, events.
    #[tokio::test]
    async fn children_inherit_the_trace_id_and_fields_become_attributes() {
        let (tx, mut rx) = mpsc::channel(16);
        let layer = OtlpLayer {
            tx,
            counts: Arc::default(),
        };
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            let root = tracing::info_span!("transcribe", call_id = "c-7", utterances = tracing::field::Empty);
            let _g = root.enter();
            {
                let child = tracing::info_span!("segment", n = 3u64, ok = true);
                let _c = child.enter();
                tracing::warn!(attempt = 2, "speech server slow");
                tracing::error!("gave up");
            }
            root.record("utterances", 12);
            drop(_g);
            drop(root);
            let other = tracing::info_span!("summarize", call_id = "c-8");
            drop(other);
        });
        let mut got = Vec::new();
        while let Ok(Msg::Span(s)) = rx.try_recv() {
            got.push(*s);
        }
        assert_eq!(got.len(), 3);
        let (child, root, other) = (&got[0], &got[1], &got[2]);
        assert_eq!(
            (child.name, root.name, other.name),
            ("segment", "transcribe", "summarize")
        );
        assert_eq!(child.trace_id, root.trace_id);
        assert_ne!(root.trace_id, other.trace_id);
        assert_eq!(child.parent_span_id, Some(root.span_id));
        assert_eq!(root.parent_span_id, None);
        assert_ne!(child.span_id, root.span_id);
        assert!(root.end >= child.end && child.end >= child.start);
        assert_eq!(
            root.attributes,
            vec![
                ("call_id".to_string(), AttrValue::Str("c-7".into())),
                ("utterances".to_string(), AttrValue::Int(12)),
            ]
        );
        assert_eq!(
            child.attributes,
            vec![
                ("n".to_string(), AttrValue::Int(3)),
                ("ok".to_string(), AttrValue::Bool(true)),
            ]
        );
        assert_eq!(child.events.len(), 2);
        assert_eq!(child.events[0].name, "speech server slow");
        assert_eq!(
            child.events[0].attributes,
            vec![("attempt".to_string(), AttrValue::Int(2))]
        );
        assert_eq!(child.error.as_deref(), Some("gave up"));
        assert_eq!(root.error, None);
    }

    /// A full queue drops and counts instead of waiting.
    #[test]
    fn a_full_queue_drops_and_counts() {
        let (tx, _rx) = mpsc::channel(1);
        let counts = Arc::new(Counts::default());
        let layer = OtlpLayer {
            tx,
            counts: counts.clone(),
        };
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
            for _ in 0..5 {
                drop(tracing::info_span!("s"));
            }
        });
        assert_eq!(counts.dropped.load(Ordering::Relaxed), 4);
    }
}
