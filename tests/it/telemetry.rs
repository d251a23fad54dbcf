//! Telemetry of a running pipeline, over the real Kafka broker, PostgreSQL
//! and speech server, with the roles as `opptak run` child processes (so the
//! real endpoint wiring is what is scraped):
//!
//! - process A runs the recorder, transcriber, summarizer and review roles;
//!   the sample calls are played and a dead letter provoked, then its
//!   `/metrics` must hold every role's series with the values the input
//!   implies (each chunk accepted once, calls in flight back to 0, speech
//!   requests answered, a draft, an audited sign-in refusal, lag drained);
//! - process B runs the sweeper on a clock three days ahead, which deletes
//!   the expired recordings and shreds their keys;
//! - `/healthz` answers 200, `/readyz` 200 when ready, and 503 (with the
//!   reason) once the metadata database refuses connections, 200 again when
//!   it takes them back;
//! - JSON logs carry the call id of the span a line was logged in (the
//!   speech client's lines name no call themselves);
//! - `deploy/grafana/opptak.json` names only metrics that exist in these
//!   scrapes, charts every metric family, and `docs/metrics.md` documents
//!   every family.

use crate::common;

use common::speech_url;

use common::{publish_events, wait_for_recordings, Backend, Env};
use opptak_proto::v1;
use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::free_port;

/// An `opptak run` child process, killed when dropped (a failing assertion
/// must not leave it running).
struct Proc {
    child: Child,
    base: String,
    log: std::path::PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    fn spawn(env: &Env, roles: &str, extra: &[(&str, String)], log: std::path::PathBuf) -> Self {
        let port = free_port();
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_opptak"))
            .args(["run", "--roles", roles])
            .envs(env.vars.iter().cloned())
            .env("OPPTAK__TELEMETRY__LISTEN", format!("127.0.0.1:{port}"))
            .env("OPPTAK__LOG__FORMAT", "json")
            .env("OPPTAK_LOG", "info,opptak_ki=debug")
            .envs(extra.iter().map(|(k, v)| (k.to_string(), v.clone())))
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start opptak run");
        Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn get(&self, path: &str) -> Option<(u16, String)> {
        let r = reqwest::Client::new()
            .get(format!("{}{path}", self.base))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .ok()?;
        Some((r.status().as_u16(), r.text().await.unwrap_or_default()))
    }

    async fn scrape(&self) -> Scrape {
        let (status, text) = self.get("/metrics").await.expect("/metrics answers");
        assert_eq!(status, 200, "{text}");
        Scrape::parse(&text)
    }

    /// Polls `/readyz` until it answers `want`; returns the body.
    async fn wait_ready(&mut self, want: u16, secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut last = None;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("opptak run exited ({status}):\n{}", self.log_text());
            }
            last = self.get("/readyz").await;
            if let Some((s, body)) = &last {
                if *s == want {
                    return body.clone();
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!(
            "/readyz never answered {want} (last: {last:?}); log:\n{}",
            tail(&self.log_text())
        );
    }

    /// Waits for the process to exit on its own; returns its status.
    async fn wait_exit(&mut self, secs: u64) -> std::process::ExitStatus {
        let log = self.log.clone();
        common::wait_exit(&mut self.child, secs, || {
            tail(&std::fs::read_to_string(&log).unwrap_or_default())
        })
        .await
    }

    /// Polls `/metrics` until `ok` holds; returns that scrape.
    async fn wait_metrics(&self, what: &str, secs: u64, ok: impl Fn(&Scrape) -> bool) -> Scrape {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let s = self.scrape().await;
            if ok(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not within {secs} s; scrape:\n{}\nlog:\n{}",
                s.text,
                tail(&self.log_text())
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// One scrape: every sample by its series (`name{labels}` exactly as
/// exposed), and every metric family by its `# TYPE`.
struct Scrape {
    text: String,
    samples: BTreeMap<String, f64>,
    families: BTreeMap<String, String>,
}

impl Scrape {
    fn parse(text: &str) -> Self {
        let mut samples = BTreeMap::new();
        let mut families = BTreeMap::new();
        for line in text.lines() {
            if let Some(t) = line.strip_prefix("# TYPE ") {
                let (name, kind) = t.split_once(' ').unwrap();
                families.insert(name.to_owned(), kind.to_owned());
            } else if !line.starts_with('#') && !line.trim().is_empty() {
                let (series, value) = line.rsplit_once(' ').unwrap();
                samples.insert(series.to_owned(), value.parse().unwrap());
            }
        }
        Self {
            text: text.to_owned(),
            samples,
            families,
        }
    }

    fn get(&self, series: &str) -> f64 {
        self.samples.get(series).copied().unwrap_or(f64::NAN)
    }

    /// The sum over every series of `name` whose labels contain all `labels`.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|(series, _)| series.split('{').next() == Some(name))
            .filter(|(series, _)| labels.iter().all(|(k, v)| series.contains(&format!("{k}=\"{v}\""))))
            .map(|(_, v)| v)
            .sum()
    }

    /// Sample names (without labels).
    fn names(&self) -> BTreeSet<String> {
        self.samples
            .keys()
            .map(|s| s.split('{').next().unwrap().to_owned())
            .collect()
    }
}

/// A sign-in with a wrong password (refused, and audited as refused).
async fn failed_login(base: &str) {
    let (status, _) = common::web_sign_in(&reqwest::Client::new(), base, "nobody", "not the password").await;
    assert_eq!(status, 401);
}

/// Every `opptak_*` metric name in any string of the dashboard (queries,
/// template variables, texts).
fn dashboard_metric_names(v: &serde_json::Value, out: &mut BTreeSet<String>) {
    match v {
        serde_json::Value::String(s) => {
            let mut rest = s.as_str();
            while let Some(at) = rest.find("opptak_") {
                let name: String = rest[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                rest = &rest[at + name.len()..];
                out.insert(name);
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| dashboard_metric_names(v, out)),
        serde_json::Value::Object(o) => o.values().for_each(|v| dashboard_metric_names(v, out)),
        _ => {}
    }
}

/// Every `expr` of the dashboard's panels.
fn exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Array(a) => a.iter().for_each(|v| exprs(v, out)),
        serde_json::Value::Object(o) => {
            for (k, v) in o {
                match (k.as_str(), v) {
                    ("expr", serde_json::Value::String(e)) => out.push(e.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        _ => {}
    }
}

/// The family a sample name belongs to (`_bucket`, `_sum`, `_count` of histograms).
fn family_of(name: &str, families: &BTreeMap<String, String>) -> Option<String> {
    if families.contains_key(name) {
        return Some(name.to_owned());
    }
    ["_bucket", "_sum", "_count"]
        .iter()
        .filter_map(|s| name.strip_suffix(s))
        .find(|f| families.get(*f).map(String::as_str) == Some("histogram"))
        .map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_exposes_its_metrics_and_health() {
    let Some(kafka) = common::kafka() else { return };
    let Some(speech) = speech_url() else { return };
    let Some(postgres) = common::postgres_db("telemetry").await else {
        return;
    };
    let backend = Backend::Services {
        kafka,
        postgres: postgres.clone(),
    };
    let env = Env::new(&backend, "telemetry");
    let edges = env.edges().await;
    let samples = opptak::demo::samples(&opptak::demo::default_samples_dir()).unwrap();
    let web_port = free_port();

    // A: the recording and KI path, and the review service.
    let mut a = Proc::spawn(
        &env,
        "recorder,transcriber,summarizer,review",
        &[
            ("OPPTAK__KI__ASR_URL", speech.clone()),
            ("OPPTAK__KI__ASR_TIMEOUT_S", "120".into()),
            ("OPPTAK__WEB__LISTEN", format!("127.0.0.1:{web_port}")),
        ],
        env.dir.path().join("a.log"),
    );
    let (status, body) = a.get("/healthz").await.unwrap_or((0, String::new()));
    // Up before the edges are open, or ready already: both answer liveness.
    assert!(status == 0 || (status == 200 && body == "ok\n"), "{status} {body}");
    assert_eq!(a.wait_ready(200, 120).await, "ready\n");
    assert_eq!(a.get("/healthz").await, Some((200, "ok\n".to_string())));

    // The sample calls (one KI call drafted, one KI call opted out mid-call,
    // three without KI), and a chunk of a call that never started.
    let mut chunks = 0usize;
    let mut ki_drafted = Vec::new();
    for s in &samples {
        let events = s.call.events(100);
        chunks += events
            .iter()
            .filter(|e| matches!(e.event, Some(v1::telephony_event::Event::AudioChunk(_))))
            .count();
        if s.call.started.ki_enabled && s.call.started.customer_informed && s.call.opt_out_at_ms.is_none() {
            ki_drafted.push(s.call.call_id.clone());
        }
        publish_events(&edges, &events).await;
    }
    assert!(!ki_drafted.is_empty() && samples.len() >= 3);
    let ghost = v1::TelephonyEvent {
        call_id: "telemetry-ghost".into(),
        event: Some(v1::telephony_event::Event::AudioChunk(v1::AudioChunk {
            sequence: 0,
            payload: vec![0xD5; 800],
            duration: None,
            offset: None,
            sealed_payload: Vec::new(),
        })),
    };
    publish_events(&edges, &[ghost]).await;
    wait_for_recordings(&edges, samples.len(), 120).await;
    failed_login(&format!("http://127.0.0.1:{web_port}")).await;

    let recorder_group = env.config.recorder.group.clone();
    let telephony = env.config.recorder_config().topics.telephony;
    let drafts = ki_drafted.len() as f64;
    let a_metrics = a
        .wait_metrics("drafts stored, calls closed, lag drained", 300, |s| {
            s.get("opptak_drafts_stored_total") >= drafts
                && s.get("opptak_calls_in_flight") == 0.0
                && s.get("opptak_live_calls_in_flight") == 0.0
                && s.sum("opptak_consumer_lag", &[("group", &recorder_group)]) == 0.0
                && s.samples
                    .keys()
                    .any(|k| k.starts_with("opptak_consumer_lag{") && k.contains(&recorder_group))
        })
        .await;
    let m = &a_metrics;
    for role in ["recorder", "transcriber", "summarizer", "review"] {
        assert_eq!(m.get(&format!("opptak_role_up{{role=\"{role}\"}}")), 1.0, "{role}");
    }
    // Every chunk accepted exactly once, and each one's latency observed.
    assert_eq!(m.get(r#"opptak_chunks_total{outcome="accepted"}"#), chunks as f64);
    assert_eq!(m.sum("opptak_chunks_total", &[("outcome", "duplicate")]), 0.0);
    assert_eq!(m.get(r#"opptak_chunks_total{outcome="dead_letter"}"#), 1.0);
    assert_eq!(m.get(r#"opptak_dead_letters_total{reason="UNKNOWN_CALL"}"#), 1.0);
    assert_eq!(m.get("opptak_end_to_end_latency_seconds_count"), chunks as f64);
    let e2e_sum = m.get("opptak_end_to_end_latency_seconds_sum");
    assert!(e2e_sum > 0.0 && e2e_sum / (chunks as f64) < 60.0, "{e2e_sum}");
    assert!(m.get("opptak_flush_seconds_count") > 0.0);
    assert!(m.get("opptak_recordings_stored_total") >= samples.len() as f64);
    // Consumer lag of every group of the process, on the topics they read.
    for group in [
        &env.config.ki.live_group,
        &env.config.ki.transcriber_group,
        &recorder_group,
    ] {
        assert!(
            m.samples
                .keys()
                .any(|k| k.starts_with("opptak_consumer_lag{") && k.contains(group.as_str())),
            "no lag of {group}:\n{}",
            m.text
        );
    }
    assert!(m
        .samples
        .keys()
        .any(|k| k.starts_with("opptak_consumer_lag{") && k.contains(&format!("topic=\"{telephony}\""))));
    // The KI path: speech requests answered, transcripts and drafts stored.
    assert!(
        m.get(r#"opptak_asr_request_seconds_count{outcome="ok"}"#) > 0.0,
        "{}",
        m.text
    );
    assert!(m.get(r#"opptak_asr_request_seconds_sum{outcome="ok"}"#) > 0.0);
    assert!(m.get("opptak_transcripts_stored_total") >= drafts);
    assert!(m.get(r#"opptak_llm_request_seconds_count{backend="embedded",outcome="ok"}"#) >= drafts);
    // Keys: every call's key wrapped, the KI path unwrapped, the opt-out shredded.
    assert!(m.get(r#"opptak_key_operations_total{op="wrap"}"#) >= samples.len() as f64);
    assert!(m.get(r#"opptak_key_operations_total{op="unwrap"}"#) > 0.0);
    assert!(m.get(r#"opptak_key_operations_total{op="shred"}"#) >= 1.0);
    // The refused sign-in.
    assert!(m.get("opptak_audit_appends_total") >= 1.0);

    // The speech client's lines carry the call id of the live worker's span.
    let log = a.log_text();
    let in_span = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|j| j["fields"]["message"] == "utterance transcribed")
        .filter_map(|j| j["span"]["call_id"].as_str().map(str::to_owned))
        .collect::<BTreeSet<_>>();
    assert!(
        ki_drafted.iter().all(|id| in_span.contains(id)),
        "call ids in the spans of the speech client's lines: {in_span:?}"
    );

    // B: the sweeper, three days ahead: the 24-hour recordings have expired.
    let three_days_on = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros()
        + 3 * 86_400 * 1_000_000) as i64;
    // Beside it the messages role (issue 17), with a conversation to keep.
    let chat_keyring = env.dir.path().join("chat-keyring.json");
    let shared = opptak_crypto::LocalKeyring::open_or_create(&chat_keyring).unwrap();
    let mut b = Proc::spawn(
        &env,
        "sweeper,messages",
        &[
            ("OPPTAK_NOW_US", three_days_on.to_string()),
            ("OPPTAK__RETENTION__SWEEP_INTERVAL_S", "1".into()),
            ("OPPTAK__KEYS__TELEPHONY_KEYRING", chat_keyring.display().to_string()),
            ("OPPTAK__MESSAGES__GROUP", common::unique("messages")),
        ],
        env.dir.path().join("b.log"),
    );
    assert_eq!(b.wait_ready(200, 60).await, "ready\n");
    let mut chat = opptak::chat::ChatConversation::new(&common::unique("telemetry-chat"), &shared).unwrap();
    let events = [
        chat.started(
            three_days_on,
            opptak_domain::model::Channel::AinoChatbot,
            "cust-telemetry",
            None,
            "",
            opptak_domain::model::Desk::Unspecified,
            opptak_domain::model::ServiceCategory::General,
        )
        .unwrap(),
        chat.say(opptak::chat::Say {
            at_us: three_days_on,
            sender: opptak_domain::model::Sender::Customer,
            sender_id: "",
            text: "Hei",
        })
        .unwrap(),
        chat.ended(three_days_on + 1_000_000),
    ];
    let messages_topic = env.config.messages_config().topic;
    for e in &events {
        let (k, v) = opptak::chat::encode(e);
        edges.bus.publish(&messages_topic, &k, &v).await.unwrap();
    }
    let b_metrics = b
        .wait_metrics("expired recordings swept, the conversation written", 120, |s| {
            s.get(r#"opptak_sweeper_deletions_total{kind="recording"}"#) >= samples.len() as f64
                && s.get(r#"opptak_conversation_events_total{outcome="written"}"#) >= 1.0
        })
        .await;
    assert_eq!(
        b_metrics.get(r#"opptak_conversation_events_total{outcome="message"}"#),
        1.0
    );
    assert_eq!(b_metrics.get(r#"opptak_role_up{role="messages"}"#), 1.0);
    assert_eq!(b_metrics.get(r#"opptak_role_up{role="sweeper"}"#), 1.0);
    assert!(b_metrics.get(r#"opptak_key_operations_total{op="shred"}"#) >= 1.0);
    assert_eq!(b_metrics.sum("opptak_role_up", &[("role", "recorder")]), 0.0);

    // The metadata database refuses connections: not ready (and why), alive.
    let db = postgres.rsplit('/').next().unwrap().to_owned();
    let admin = sqlx::PgPool::connect(&std::env::var("OPPTAK_TEST_POSTGRES").unwrap())
        .await
        .unwrap();
    sqlx::query(&format!("ALTER DATABASE {db} ALLOW_CONNECTIONS false"))
        .execute(&admin)
        .await
        .unwrap();
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
        .bind(&db)
        .execute(&admin)
        .await
        .unwrap();
    let why = b.wait_ready(503, 60).await;
    assert!(why.starts_with("metadata store"), "{why}");
    assert_eq!(b.get("/healthz").await, Some((200, "ok\n".to_string())));
    // The recorder's next flush fails; it waits a minute for the store to
    // answer again (a failover takes seconds), then its role ends, and with
    // it the process, non-zero, naming the role (a supervisor restarts it).
    let status = a.wait_exit(120).await;
    assert!(!status.success(), "{status}");
    let log = a.log_text();
    let ended = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|j| j["fields"]["message"] == "role ended on its own: stopping this process so it restarts")
        .unwrap_or_else(|| panic!("no role-ended line:\n{}", tail(&log)));
    assert_eq!(ended["level"], "ERROR");
    assert!(
        ["recorder", "transcriber", "summarizer", "review"].contains(&ended["fields"]["role"].as_str().unwrap_or("")),
        "{ended}"
    );
    // Connections allowed again: the sweeper, which retries, is ready again,
    // and the restarted process too.
    sqlx::query(&format!("ALTER DATABASE {db} ALLOW_CONNECTIONS true"))
        .execute(&admin)
        .await
        .unwrap();
    assert_eq!(b.wait_ready(200, 60).await, "ready\n");
    let mut a = Proc::spawn(
        &env,
        "recorder,transcriber,summarizer,review",
        &[
            ("OPPTAK__KI__ASR_URL", speech.clone()),
            ("OPPTAK__WEB__LISTEN", format!("127.0.0.1:{}", free_port())),
        ],
        env.dir.path().join("a2.log"),
    );
    assert_eq!(a.wait_ready(200, 120).await, "ready\n");

    // The dashboard names only metrics these processes expose, charts every
    // family, and every family is documented.
    let dashboard: serde_json::Value =
        serde_json::from_str(include_str!("../../deploy/grafana/opptak.json")).expect("dashboard JSON");
    let mut names = BTreeSet::new();
    dashboard_metric_names(&dashboard, &mut names);
    let mut queries = Vec::new();
    exprs(&dashboard, &mut queries);
    assert!(queries.len() >= 15, "{queries:?}");
    for q in &queries {
        assert!(q.contains("opptak_"), "a query charting no opptak metric: {q}");
    }
    let mut ids = BTreeSet::new();
    for p in dashboard["panels"].as_array().unwrap() {
        assert!(ids.insert(p["id"].as_u64().unwrap()), "panel id {} twice", p["id"]);
        let g = &p["gridPos"];
        assert!(g["x"].as_u64().unwrap() + g["w"].as_u64().unwrap() <= 24, "{p}");
    }
    let mut exposed = a_metrics.names();
    exposed.extend(b_metrics.names());
    let unknown: Vec<&String> = names.iter().filter(|n| !exposed.contains(*n)).collect();
    assert!(
        unknown.is_empty(),
        "the dashboard names metrics no process exposes: {unknown:?}"
    );
    let mut families = a_metrics.families.clone();
    families.extend(b_metrics.families.clone());
    let charted: BTreeSet<String> = names.iter().filter_map(|n| family_of(n, &families)).collect();
    let docs = include_str!("../../docs/metrics.md");
    for family in families.keys() {
        assert!(charted.contains(family), "no panel charts {family}");
        assert!(
            docs.contains(&format!("`{family}`")),
            "docs/metrics.md does not document {family}"
        );
    }
}

/// Issue 16, section 8: a KI role that ends on its own (here its input topic
/// is deleted under it) is restarted alone, and the recorder beside it goes
/// on recording. On the old main the whole process exited, recorder
/// included, whenever a KI role ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_ki_role_is_restarted_and_the_recorder_goes_on() {
    let Some(kafka) = common::kafka() else { return };
    let Some(postgres) = common::postgres_db("ki_isolation").await else {
        return;
    };
    let env = Env::new(&Backend::Services { kafka, postgres }, "ki_isolation");
    let edges = env.edges().await;
    let mut p = Proc::spawn(&env, "recorder,summarizer", &[], env.dir.path().join("p.log"));
    assert_eq!(p.wait_ready(200, 120).await, "ready\n");
    edges
        .bus
        .delete_topic(&opptak::app::transcripts_topic(&edges.config))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !p.log_text().contains("KI role ended on its own: restarting it") {
        if let Some(status) = p.child.try_wait().unwrap() {
            panic!("opptak run exited ({status}):\n{}", tail(&p.log_text()));
        }
        assert!(
            Instant::now() < deadline,
            "the summarizer never ended:\n{}",
            tail(&p.log_text())
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    p.wait_metrics("the summarizer up again beside the recorder", 120, |s| {
        s.get(r#"opptak_role_up{role="summarizer"}"#) == 1.0 && s.get(r#"opptak_role_up{role="recorder"}"#) == 1.0
    })
    .await;
    // The recorder records a call that starts after the failure.
    let call = common::mixed_calls(&common::unique("after"), 1).remove(0);
    publish_events(&edges, &call.events(100)).await;
    wait_for_recordings(&edges, 1, 90).await;
    common::verify_calls(&edges, std::slice::from_ref(&call)).await;
    assert!(p.child.try_wait().unwrap().is_none(), "the process is still running");
}
