//! Trace export (issue 7, `crates/opptak-telemetry/src/otlp.rs`) into a real OpenTelemetry receiver:
//! Jaeger v2 (built on the OpenTelemetry Collector) with in-memory storage,
//! taking OTLP/HTTP and answering its query API.
//!
//! - spans made in this process through the exporter arrive with their
//!   structure: a child shares its parent's trace id and names it, fields
//!   keep their types (unsigned integers excepted: strings), durations are
//!   positive;
//! - a real `opptak run --roles recorder` (Kafka, PostgreSQL) exports the
//!   `compact` span of the call it recorded, tagged with the call's id;
//! - spans still queued at an orderly stop (SIGTERM) are flushed before the
//!   process exits;
//! - with nothing listening at the endpoint the recorder still stores the
//!   call, and logs that the export failed.
//!
//! Jaeger is built once from its Go module by `deploy/local/jaeger.sh` under
//! `$OPPTAK_TOOLS_DIR`. Without go the tests skip, unless
//! `OPPTAK_REQUIRE_SERVICES=1`, where they fail.

use crate::common;

use common::{publish_events, wait_for_recordings, Backend, Env};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, skip};

/// The jaeger binary, built once (per test binary, the script once per machine).
async fn jaeger_bin() -> Option<PathBuf> {
    static BIN: tokio::sync::OnceCell<Option<PathBuf>> = tokio::sync::OnceCell::const_new();
    BIN.get_or_init(|| async {
        // The script needs go only for the first build.
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/local/jaeger.sh");
        let out = tokio::process::Command::new(script)
            .stderr(Stdio::inherit())
            .output()
            .await
            .unwrap();
        if !out.status.success() {
            let go = tokio::process::Command::new("go").arg("version").output().await;
            if !go.is_ok_and(|o| o.status.success()) {
                return skip("go is not installed (jaeger is built from its Go module)");
            }
            return skip("deploy/local/jaeger.sh failed");
        }
        let path = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
        assert!(path.is_file(), "{} is not a file", path.display());
        Some(path)
    })
    .await
    .clone()
}

/// A running Jaeger on free ports; killed on drop.
struct Jaeger {
    _child: tokio::process::Child,
    otlp: String,
    query: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Jaeger {
    async fn start() -> Option<Jaeger> {
        let bin = jaeger_bin().await?;
        let dir = tempfile::tempdir().unwrap();
        let (otlp, query, grpc) = (free_port(), free_port(), free_port());
        // The built-in all-in-one configuration, cut to what the test needs
        // and on ports of its own (parallel runs do not collide).
        let config = format!(
            r#"
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
extensions:
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: 127.0.0.1:{query}
    grpc:
      endpoint: 127.0.0.1:{grpc}
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 10000
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{otlp}
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
"#
        );
        let file = dir.path().join("jaeger.yaml");
        std::fs::write(&file, config).unwrap();
        let log = dir.path().join("jaeger.log");
        let child = tokio::process::Command::new(bin)
            .arg("--config")
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let j = Jaeger {
            _child: child,
            otlp: format!("http://127.0.0.1:{otlp}"),
            query: format!("http://127.0.0.1:{query}"),
            log,
            _dir: dir,
        };
        // Ready when both the query API and the OTLP receiver answer.
        let deadline = Instant::now() + Duration::from_secs(60);
        let http = reqwest::Client::new();
        loop {
            let q = http.get(format!("{}/api/services", j.query)).send().await;
            let r = http
                .post(format!("{}/v1/traces", j.otlp))
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await;
            if q.is_ok_and(|r| r.status().is_success()) && r.is_ok_and(|r| r.status().is_success()) {
                return Some(j);
            }
            assert!(
                Instant::now() < deadline,
                "jaeger did not start within 60 s:\n{}",
                j.log_text()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls the query API until a trace of service `opptak` has a span
    /// tagged `call_id` = `call_id`; returns that trace.
    async fn trace_of_call(&self, call_id: &str, secs: u64) -> Value {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let r: Value = http
                .get(format!("{}/api/traces", self.query))
                .query(&[("service", "opptak"), ("limit", "1000"), ("lookback", "1h")])
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let found =
                r["data"].as_array().into_iter().flatten().find(|t| {
                    t["spans"].as_array().unwrap().iter().any(|s| {
                        tag(s, "call_id").and_then(|v| v.as_str().map(str::to_owned)).as_deref() == Some(call_id)
                    })
                });
            if let Some(t) = found {
                return t.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no trace with call_id {call_id} within {secs} s; last answer: {r}\njaeger log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

/// The value of a span's (or process's) tag `key`.
fn tag(span: &Value, key: &str) -> Option<Value> {
    span["tags"]
        .as_array()?
        .iter()
        .find(|t| t["key"] == key)
        .map(|t| t["value"].clone())
}

fn tag_type(span: &Value, key: &str) -> Option<String> {
    span["tags"]
        .as_array()?
        .iter()
        .find(|t| t["key"] == key)
        .and_then(|t| t["type"].as_str().map(str::to_owned))
}

fn span_named<'a>(trace: &'a Value, name: &str) -> &'a Value {
    trace["spans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["operationName"] == name)
        .unwrap_or_else(|| panic!("no span {name} in {trace}"))
}

/// Spans made here through the exporter arrive whole: ids, parent, types.
#[tokio::test(flavor = "current_thread")]
async fn nested_spans_arrive_with_their_structure() {
    let Some(jaeger) = Jaeger::start().await else { return };
    let call_id = common::unique("otel-nested");
    let (layer, handle) = opptak_telemetry::otlp::start(opptak_telemetry::otlp::OtlpConfig {
        endpoint: jaeger.otlp.clone(),
        instance_id: "test-instance".into(),
        roles: "test".into(),
        interval: Duration::from_millis(200),
    });
    use tracing_subscriber::layer::SubscriberExt;
    {
        // Current-thread runtime: every span below is made on this thread.
        let _g = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
        let root = tracing::info_span!("call", call_id = %call_id);
        let _r = root.enter();
        {
            let child = tracing::info_span!("segment", frames = 160i64, bytes = 4096u64, stereo = true, share = 0.5);
            let _c = child.enter();
            std::thread::sleep(Duration::from_millis(3));
            tracing::warn!(attempt = 2, "segment retried");
        }
        std::thread::sleep(Duration::from_millis(3));
    }
    handle.shutdown(Duration::from_secs(30)).await;
    assert_eq!(handle.counts(), (2, 0), "exported, dropped");

    let trace = jaeger.trace_of_call(&call_id, 60).await;
    let root = span_named(&trace, "call");
    let child = span_named(&trace, "segment");
    assert_eq!(root["traceID"], child["traceID"]);
    assert_eq!(root["traceID"].as_str().unwrap().len(), 32, "{root}");
    assert_eq!(root["references"].as_array().map_or(0, Vec::len), 0, "{root}");
    let refs = child["references"].as_array().unwrap();
    assert_eq!(refs.len(), 1, "{child}");
    assert_eq!(refs[0]["refType"], "CHILD_OF");
    assert_eq!(refs[0]["spanID"], root["spanID"]);
    assert_eq!(refs[0]["traceID"], root["traceID"]);
    for s in [root, child] {
        assert!(s["duration"].as_u64().unwrap() > 0, "{s}");
    }
    // The child ran inside the root.
    assert!(child["startTime"].as_u64().unwrap() >= root["startTime"].as_u64().unwrap());
    assert!(child["duration"].as_u64().unwrap() <= root["duration"].as_u64().unwrap());
    assert_eq!(tag(child, "frames"), Some(serde_json::json!(160)));
    assert_eq!(tag_type(child, "frames").as_deref(), Some("int64"));
    // tracing-opentelemetry maps no unsigned type (docs/metrics.md says so).
    assert_eq!(tag(child, "bytes"), Some(serde_json::json!("4096")));
    assert_eq!(tag_type(child, "bytes").as_deref(), Some("string"));
    assert_eq!(tag(child, "stereo"), Some(serde_json::json!(true)));
    assert_eq!(tag_type(child, "stereo").as_deref(), Some("bool"));
    assert_eq!(tag(child, "share"), Some(serde_json::json!(0.5)));
    assert_eq!(tag_type(child, "share").as_deref(), Some("float64"));
    // The warning inside the child, as a span event (Jaeger: a log).
    let logs = child["logs"].to_string();
    assert!(logs.contains("segment retried") && logs.contains("attempt"), "{child}");
    let process = &trace["processes"][child["processID"].as_str().unwrap()];
    assert_eq!(process["serviceName"], "opptak");
    assert_eq!(
        tag(process, "service.instance.id"),
        Some(Value::String("test-instance".into()))
    );
}

/// An `opptak run` child process, killed when dropped.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    fn recorder(env: &Env, otlp_endpoint: &str) -> Proc {
        Self::recorder_every(env, otlp_endpoint, 200)
    }

    fn recorder_every(env: &Env, otlp_endpoint: &str, interval_ms: u64) -> Proc {
        let log = env.dir.path().join("recorder.log");
        let child = Command::new(env!("CARGO_BIN_EXE_opptak"))
            .args(["run", "--roles", "recorder"])
            .envs(env.vars.iter().cloned())
            .env("OPPTAK__TELEMETRY__LISTEN", "")
            .env("OPPTAK__TELEMETRY__OTLP_ENDPOINT", otlp_endpoint)
            .env("OPPTAK__TELEMETRY__OTLP_INTERVAL_MS", interval_ms.to_string())
            .env("OPPTAK__LOG__FORMAT", "json")
            .env_remove("OPPTAK_LOG")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start opptak run");
        Proc { child, log }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM (the orderly stop), then waits for the exit; returns its status.
    async fn terminate(&mut self, secs: u64) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let log = self.log.clone();
        common::wait_exit(&mut self.child, secs, || {
            std::fs::read_to_string(&log).unwrap_or_default()
        })
        .await
    }

    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("opptak run exited ({status}):\n{}", self.log_text());
        }
    }
}

/// Kafka, PostgreSQL and a topic prefix of the test's own, or None (skip).
async fn services(name: &str) -> Option<Env> {
    let kafka = common::kafka()?;
    let postgres = common::postgres_db(name).await?;
    Some(Env::new(&Backend::Services { kafka, postgres }, name))
}

/// Plays one synthetic call; waits until the recorder stored it.
async fn record_one_call(env: &Env, proc: &mut Proc, call_id: &str) {
    let edges = env.edges().await;
    let call = opptak::sim::SimCall::synthetic(call_id, opptak_domain::model::Codec::Pcmu, 2, 1.5, 7);
    publish_events(&edges, &call.events(100)).await;
    let stored = wait_for_recordings(&edges, 1, 120).await;
    assert!(stored.contains_key(call_id), "{stored:?}");
    proc.assert_running();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recorder_exports_the_spans_of_a_call() {
    let Some(jaeger) = Jaeger::start().await else { return };
    let Some(env) = services("otel_export").await else {
        return;
    };
    let mut proc = Proc::recorder(&env, &jaeger.otlp);
    let call_id = common::unique("otel-call");
    record_one_call(&env, &mut proc, &call_id).await;

    let trace = jaeger.trace_of_call(&call_id, 90).await;
    let compact = span_named(&trace, "compact");
    assert_eq!(tag(compact, "call_id"), Some(Value::String(call_id.clone())));
    assert_eq!(compact["traceID"].as_str().unwrap().len(), 32, "{compact}");
    assert!(compact["duration"].as_u64().unwrap() > 0, "{compact}");
    assert_eq!(tag(compact, "target"), Some(Value::String("opptak_recorder".into())));
    // Every span of the trace shares its trace id, and each parent it names is in it.
    let spans = trace["spans"].as_array().unwrap();
    for s in spans {
        assert_eq!(s["traceID"], compact["traceID"], "{s}");
        for r in s["references"].as_array().into_iter().flatten() {
            assert!(
                spans.iter().any(|p| p["spanID"] == r["spanID"]),
                "parent of {s} missing"
            );
        }
    }
    // The compaction's own log line, as a span event.
    assert!(compact["logs"].to_string().contains("recording compacted"), "{compact}");
    let process = &trace["processes"][compact["processID"].as_str().unwrap()];
    assert_eq!(process["serviceName"], "opptak");
    assert_eq!(tag(process, "opptak.roles"), Some(Value::String("recorder".into())));
    proc.assert_running();
}

/// Spans still queued when the process stops are sent before it exits: with
/// a minute between batches only the shutdown flush can have sent them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orderly_stop_flushes_the_queued_spans() {
    let Some(jaeger) = Jaeger::start().await else { return };
    let Some(env) = services("otel_flush").await else {
        return;
    };
    let mut proc = Proc::recorder_every(&env, &jaeger.otlp, 60_000);
    let call_id = common::unique("otel-flush");
    record_one_call(&env, &mut proc, &call_id).await;
    let status = proc.terminate(60).await;
    assert!(status.success(), "{status}:\n{}", proc.log_text());
    let trace = jaeger.trace_of_call(&call_id, 30).await;
    let compact = span_named(&trace, "compact");
    assert_eq!(tag(compact, "call_id"), Some(Value::String(call_id.clone())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_collector_does_not_stop_the_recorder() {
    // Jaeger is not needed here, but the test belongs to the same gate.
    if jaeger_bin().await.is_none() {
        return;
    }
    let Some(env) = services("otel_dead").await else { return };
    let dead = format!("http://127.0.0.1:{}", free_port());
    let mut proc = Proc::recorder(&env, &dead);
    let call_id = common::unique("otel-dead");
    record_one_call(&env, &mut proc, &call_id).await;

    // The compact span is queued after the call is stored; its export fails.
    let deadline = Instant::now() + Duration::from_secs(60);
    let warning = loop {
        let text = proc.log_text();
        if let Some(line) = text.lines().find(|l| l.contains("trace export failed")) {
            break line.to_owned();
        }
        proc.assert_running();
        assert!(Instant::now() < deadline, "no export warning within 60 s; log:\n{text}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let first_warning = Instant::now();
    let line: Value = serde_json::from_str(&warning).unwrap();
    assert_eq!(line["level"], "WARN", "{line}");
    assert_eq!(line["fields"]["url"], format!("{dead}/v1/traces"), "{line}");
    // A second call after the failure is recorded too.
    let second = common::unique("otel-dead2");
    let edges = env.edges().await;
    let call = opptak::sim::SimCall::synthetic(&second, opptak_domain::model::Codec::Pcma, 1, 1.0, 8);
    publish_events(&edges, &call.events(100)).await;
    let stored = wait_for_recordings(&edges, 2, 120).await;
    assert!(stored.contains_key(&second), "{stored:?}");
    proc.assert_running();
    // Later batches fail too, but the warning comes once a minute at most.
    let warnings = proc.log_text().matches("trace export failed").count() as u64;
    assert!(
        warnings <= 1 + first_warning.elapsed().as_secs() / 60,
        "{warnings} warnings:\n{}",
        proc.log_text()
    );
}
