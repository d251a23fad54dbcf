//! Optional trace export: the `tracing` spans of `opptak run` (the `compact`,
//! `transcribe`, `summarize` and `live_call` spans, each with its `call_id`)
//! sent to an OpenTelemetry collector over OTLP/HTTP with the protobuf
//! encoding (`POST {telemetry.otlp_endpoint}/v1/traces`).
//!
//! Built on the OpenTelemetry crates, no gRPC:
//! - [`OtlpLayer`] is `tracing-opentelemetry`'s layer: every span becomes an
//!   OpenTelemetry span (a root span gets a random trace id, a child its
//!   parent's), its fields become attributes and the log events inside it
//!   span events (an ERROR event sets the status to error).
//! - finished spans go to the SDK's `BatchSpanProcessor` (its own thread,
//!   batches of [`MAX_BATCH`] or every `interval`), behind a bound of
//!   [`QUEUE`] spans waiting or in flight: past it a span is dropped and
//!   counted, never waited for, so a slow or dead collector costs a role
//!   nothing.
//! - `opentelemetry-otlp` encodes each batch and POSTs it with the
//!   workspace's reqwest client (10 s timeout). The POST runs as a task on the
//!   tokio runtime [`start`] was called on (the SDK's thread waits for it). A
//!   failed batch is dropped and counted (no retry, no unbounded buffering);
//!   failures are logged at most once a minute.
//! - [`OtlpHandle::shutdown`] flushes what is queued, with a deadline.
//!
//! Only span fields and log-event fields are exported: call ids, counts,
//! kinds, error texts. No role puts transcript, audio or summary text in
//! either (docs/metrics.md, "Traces (OpenTelemetry)").

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{Context, InstrumentationScope, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracer, SdkTracerProvider, Span, SpanData, SpanExporter, SpanProcessor,
};
use opentelemetry_sdk::Resource;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tracing::Subscriber;
use tracing_subscriber::registry::LookupSpan;

/// Spans in one POST at most.
pub const MAX_BATCH: usize = 512;
/// Finished spans waiting for the exporter or in flight at most; more are dropped.
pub const QUEUE: usize = 4096;
/// Events kept per span at most (the first ones; more are counted only).
const MAX_EVENTS: u32 = 32;
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

/// The resource attributes of this process (beside the SDK's own
/// `telemetry.sdk.*` and any `OTEL_RESOURCE_ATTRIBUTES`).
pub fn resource(cfg: &OtlpConfig) -> Resource {
    Resource::builder()
        .with_service_name("opptak")
        .with_attributes([
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            KeyValue::new("service.instance.id", cfg.instance_id.clone()),
            KeyValue::new("opptak.roles", cfg.roles.clone()),
        ])
        .build()
}

/// The `tracing_subscriber::Layer` that exports spans. Build it with [`start`].
pub type OtlpLayer<S> = tracing_opentelemetry::OpenTelemetryLayer<S, SdkTracer>;

/// Counts shared by the queue bound, the exporter and the handle.
#[derive(Debug, Default)]
struct Counts {
    /// Spans the collector accepted.
    exported: AtomicU64,
    /// Spans lost: the queue was full, or their batch failed.
    dropped: AtomicU64,
    /// Spans handed to the batch processor and not yet exported or failed.
    pending: AtomicUsize,
}

impl Counts {
    /// Takes a place in the queue, or counts the span as dropped.
    fn admit(&self, queue: usize) -> bool {
        if self.pending.fetch_add(1, Ordering::AcqRel) < queue {
            return true;
        }
        self.pending.fetch_sub(1, Ordering::AcqRel);
        self.dropped.fetch_add(1, Ordering::Relaxed);
        false
    }

    /// A batch of `n` spans left the queue, sent or failed.
    fn settle(&self, n: usize, sent: bool) {
        self.pending.fetch_sub(n, Ordering::AcqRel);
        let counter = if sent { &self.exported } else { &self.dropped };
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// The SDK's batch processor behind the [`QUEUE`] bound. The SDK drops on a
/// full queue too, but without a count anyone can read; this bound is the
/// same size and counts what it refuses, so the SDK's never overflows.
#[derive(Debug)]
struct Bounded {
    batch: BatchSpanProcessor,
    counts: Arc<Counts>,
    queue: usize,
}

impl SpanProcessor for Bounded {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.batch.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if self.counts.admit(self.queue) {
            self.batch.on_end(span);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.batch.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.batch.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.batch.set_resource(resource);
    }
}

/// When the last export failure was logged, and failures since.
#[derive(Debug, Default)]
struct Warned {
    last: Option<Instant>,
    failures: u64,
}

/// The OTLP exporter, run on the tokio runtime and counted. The SDK's batch
/// thread awaits each export outside any runtime, where reqwest cannot run;
/// the POST is spawned onto the runtime instead (a runtime that has shut
/// down fails the batch rather than panicking).
#[derive(Debug)]
struct Counted<E> {
    inner: Arc<tokio::sync::RwLock<E>>,
    runtime: tokio::runtime::Handle,
    url: String,
    counts: Arc<Counts>,
    warned: Mutex<Warned>,
}

impl<E: SpanExporter + 'static> SpanExporter for Counted<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len();
        let inner = self.inner.clone();
        let task = self
            .runtime
            .spawn(async move { inner.read().await.export(batch).await });
        let result = match task.await {
            Ok(result) => result,
            Err(e) => Err(OTelSdkError::InternalFailure(format!("export task: {e}"))),
        };
        self.counts.settle(n, result.is_ok());
        if let Err(error) = &result {
            self.failed(error);
        }
        result
    }

    fn shutdown(&mut self) -> OTelSdkResult {
        match self.inner.try_write() {
            Ok(mut inner) => inner.shutdown(),
            Err(_) => Ok(()),
        }
    }

    fn set_resource(&mut self, resource: &Resource) {
        // Called by the batch thread between exports: never contended.
        if let Ok(mut inner) = self.inner.try_write() {
            inner.set_resource(resource);
        }
    }
}

impl<E> Counted<E> {
    fn failed(&self, error: &OTelSdkError) {
        let mut warned = self.warned.lock().unwrap_or_else(PoisonError::into_inner);
        warned.failures += 1;
        if warned.last.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
            tracing::warn!(
                url = %self.url,
                %error,
                failures = warned.failures,
                dropped_total = self.counts.dropped.load(Ordering::Relaxed),
                "trace export failed; spans are dropped until the collector answers (next warning in a minute at the earliest)"
            );
            warned.last = Some(Instant::now());
            warned.failures = 0;
        }
    }
}

/// Flushes the exporter on shutdown; its counts.
#[derive(Clone, Debug)]
pub struct OtlpHandle {
    provider: SdkTracerProvider,
    counts: Arc<Counts>,
}

impl OtlpHandle {
    /// Spans exported so far and spans dropped so far (refused by the full
    /// queue, or in a batch that failed). Spans still queued are in neither.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.counts.exported.load(Ordering::Relaxed),
            self.counts.dropped.load(Ordering::Relaxed),
        )
    }

    /// Sends every span closed so far and stops the export, waiting at most
    /// `deadline` (a dead collector must not hold up the process's exit).
    /// Without it, dropping the last handle and layer shuts the export down
    /// all the same, but blocking the dropping thread (5 s at most).
    pub async fn shutdown(&self, deadline: Duration) {
        // The SDK's shutdown blocks; the export it waits for runs on this
        // runtime, which must stay free (a current-thread runtime too).
        let provider = self.provider.clone();
        let flush = tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(deadline));
        let error = match tokio::time::timeout(deadline, flush).await {
            Ok(Ok(Ok(()) | Err(OTelSdkError::AlreadyShutdown))) => return,
            Ok(Ok(Err(e))) => e.to_string(),
            Ok(Err(e)) => e.to_string(),
            Err(_) => OTelSdkError::Timeout(deadline).to_string(),
        };
        tracing::warn!(
            deadline_ms = deadline.as_millis() as u64,
            %error,
            "trace export: the flush at shutdown failed or missed its deadline; queued spans are lost"
        );
    }
}

/// The layer and its handle. Call from within a tokio runtime: the POSTs run
/// on it.
pub fn start<S>(cfg: OtlpConfig) -> (OtlpLayer<S>, OtlpHandle)
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let http = reqwest::Client::builder()
        .timeout(POST_TIMEOUT)
        .build()
        .unwrap_or_else(|_| reqwest::Client::new());
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(http)
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(cfg.traces_url())
        .build();
    let exporter = exporter
        .inspect_err(|error| {
            // Only the OTEL_EXPORTER_OTLP_* variables can get here (the
            // endpoint is checked with the configuration).
            tracing::error!(url = %cfg.traces_url(), %error, "trace export disabled");
        })
        .ok();
    pipeline(&cfg, exporter, QUEUE)
}

/// The provider with `exporter` behind the batch processor and a bound of
/// `queue` spans, and the layer feeding it.
fn pipeline<S, E>(cfg: &OtlpConfig, exporter: Option<E>, queue: usize) -> (OtlpLayer<S>, OtlpHandle)
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    E: SpanExporter + 'static,
{
    let counts = Arc::new(Counts::default());
    let mut provider = SdkTracerProvider::builder()
        .with_resource(resource(cfg))
        .with_max_events_per_span(MAX_EVENTS);
    if let Some(exporter) = exporter {
        let counted = Counted {
            inner: Arc::new(tokio::sync::RwLock::new(exporter)),
            runtime: tokio::runtime::Handle::current(),
            url: cfg.traces_url(),
            counts: counts.clone(),
            warned: Mutex::default(),
        };
        // Set explicitly: the OTEL_BSP_* variables would change the bound.
        let config = BatchConfigBuilder::default()
            .with_max_queue_size(queue)
            .with_max_export_batch_size(MAX_BATCH.min(queue))
            .with_scheduled_delay(cfg.interval)
            .build();
        provider = provider.with_span_processor(Bounded {
            batch: BatchSpanProcessor::builder(counted).with_batch_config(config).build(),
            counts: counts.clone(),
            queue,
        });
    }
    let provider = provider.build();
    let scope = InstrumentationScope::builder(SCOPE)
        .with_version(env!("CARGO_PKG_VERSION"))
        .build();
    let layer = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer_with_scope(scope))
        .with_threads(false);
    (layer, OtlpHandle { provider, counts })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanId, Status};
    use opentelemetry::Value;
    use tracing_subscriber::layer::SubscriberExt;

    /// Keeps what it is sent; waits for `gate` first, or fails, if told to.
    #[derive(Clone, Debug, Default)]
    struct Collect {
        spans: Arc<Mutex<Vec<SpanData>>>,
        resource: Arc<Mutex<Option<Resource>>>,
        gate: Option<Arc<tokio::sync::Semaphore>>,
        fail: bool,
    }

    impl SpanExporter for Collect {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            if let Some(gate) = &self.gate {
                let _ = gate.acquire().await;
            }
            if self.fail {
                return Err(OTelSdkError::InternalFailure("refused".into()));
            }
            self.spans.lock().unwrap().extend(batch);
            Ok(())
        }

        fn set_resource(&mut self, resource: &Resource) {
            *self.resource.lock().unwrap() = Some(resource.clone());
        }
    }

    fn cfg() -> OtlpConfig {
        OtlpConfig {
            endpoint: "http://collector:4318/".into(),
            instance_id: "i-1".into(),
            roles: "recorder".into(),
            interval: Duration::from_millis(50),
        }
    }

    fn attr(attrs: &[KeyValue], key: &str) -> Option<Value> {
        attrs
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.clone())
    }

    /// The layer under a real registry, through the batch processor: ids,
    /// inheritance, fields, events, status, resource. On a current-thread
    /// runtime: the export it waits for at shutdown runs on that thread.
    #[tokio::test(flavor = "current_thread")]
    async fn spans_arrive_with_ids_fields_events_and_the_resource() {
        let collect = Collect::default();
        let (layer, handle) = pipeline(&cfg(), Some(collect.clone()), QUEUE);
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
            let root = tracing::info_span!("transcribe", call_id = "c-7", utterances = tracing::field::Empty);
            let _g = root.enter();
            {
                let child = tracing::info_span!("segment", n = 3i64, ok = true, share = 0.5);
                let _c = child.enter();
                tracing::warn!(attempt = 2, "speech server slow");
                tracing::error!("gave up");
                for i in 0..40 {
                    tracing::info!(i, "chunk");
                }
            }
            root.record("utterances", 12);
            drop(_g);
            drop(root);
            drop(tracing::info_span!("summarize", call_id = "c-8"));
        });
        handle.shutdown(Duration::from_secs(10)).await;
        assert_eq!(handle.counts(), (3, 0));

        let spans = collect.spans.lock().unwrap().clone();
        let named = |n: &str| spans.iter().find(|s| s.name == n).unwrap();
        let (root, child, other) = (named("transcribe"), named("segment"), named("summarize"));
        let id = |s: &SpanData| s.span_context.trace_id();
        assert_eq!(id(child), id(root));
        assert_ne!(id(other), id(root));
        assert_eq!(child.parent_span_id, root.span_context.span_id());
        assert_eq!(root.parent_span_id, SpanId::INVALID);
        assert!(root.end_time >= child.end_time && child.end_time >= child.start_time);
        assert_eq!(root.instrumentation_scope.name(), "opptak");
        assert_eq!(attr(&root.attributes, "call_id"), Some("c-7".into()));
        assert_eq!(attr(&root.attributes, "utterances"), Some(12i64.into()));
        assert_eq!(attr(&root.attributes, "target"), Some(module_path!().into()));
        assert_eq!(attr(&child.attributes, "n"), Some(3i64.into()));
        assert_eq!(attr(&child.attributes, "ok"), Some(true.into()));
        assert_eq!(attr(&child.attributes, "share"), Some(0.5.into()));
        // The first 32 events are kept, the rest counted.
        assert_eq!(child.events.len(), 32);
        assert_eq!(child.events.dropped_count, 42 - 32);
        let warn = &child.events[0];
        assert_eq!(warn.name, "speech server slow");
        assert_eq!(attr(&warn.attributes, "attempt"), Some(2i64.into()));
        assert_eq!(attr(&warn.attributes, "level"), Some("WARN".into()));
        assert_eq!(child.events[1].name, "gave up");
        assert!(matches!(child.status, Status::Error { .. }), "{:?}", child.status);
        assert_eq!(root.status, Status::Unset);

        let resource = collect.resource.lock().unwrap().clone().unwrap();
        let res = |k: &'static str| resource.get(&opentelemetry::Key::from_static_str(k));
        assert_eq!(res("service.name"), Some("opptak".into()));
        assert_eq!(res("service.instance.id"), Some("i-1".into()));
        assert_eq!(res("opptak.roles"), Some("recorder".into()));
        assert_eq!(cfg().traces_url(), "http://collector:4318/v1/traces");
    }

    /// A full queue drops and counts instead of waiting; a failed batch
    /// counts as dropped.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_and_a_failed_batch_drop_and_count() {
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let collect = Collect {
            gate: Some(gate.clone()),
            ..Collect::default()
        };
        let (layer, handle) = pipeline(&cfg(), Some(collect.clone()), 4);
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
            // The export of the first four waits at the gate: the rest find
            // the queue full.
            for _ in 0..10 {
                drop(tracing::info_span!("s"));
            }
        });
        assert_eq!(handle.counts(), (0, 6));
        gate.add_permits(100);
        handle.shutdown(Duration::from_secs(10)).await;
        assert_eq!(handle.counts(), (4, 6));

        let failing = Collect {
            fail: true,
            ..Collect::default()
        };
        let (layer, handle) = pipeline(&cfg(), Some(failing), QUEUE);
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
            for _ in 0..3 {
                drop(tracing::info_span!("s"));
            }
        });
        handle.shutdown(Duration::from_secs(10)).await;
        assert_eq!(handle.counts(), (0, 3));
    }
}
