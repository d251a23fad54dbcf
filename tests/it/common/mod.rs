//! Shared test harness: real services from `deploy/local/services.sh`, a
//! fresh database and topic prefix per test, and a plaintext scanner.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

pub mod chat;
pub mod webdriver;

use opptak::app::Edges;
use opptak::config::Config;
use opptak::sim;
use opptak::sim::SimCall;
use opptak_bus::Outgoing;
use opptak_domain::model::CallId;
use opptak_domain::model::Codec;
use opptak_proto::v1;
use opptak_proto::Message;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub fn unique(name: &str) -> String {
    format!("{name}_{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// `OPPTAK_REQUIRE_SERVICES=1`: a missing service fails the test instead of skipping it.
pub fn required() -> bool {
    std::env::var("OPPTAK_REQUIRE_SERVICES").as_deref() == Ok("1")
}

/// Skips (None) with `why`, or panics when services are required.
pub fn skip<T>(why: &str) -> Option<T> {
    if required() {
        panic!("{why} but OPPTAK_REQUIRE_SERVICES=1");
    }
    eprintln!("skipping: {why}");
    None
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// The review service (`opptak_review::web::router`) on a free local port.
pub struct WebService {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl WebService {
    pub async fn start(edges: &Edges) -> Self {
        let router = opptak_review::web::router(&edges.review(), false).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(opptak_review::web::serve(listener, router, async {
            let _ = stopped.await;
        }));
        Self { base, stop, task }
    }

    /// Stops it and checks it stopped without an error.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }
}

/// Waits up to `secs` for `child` to exit; returns its status, or panics
/// with `log()` (the process's log) when it is still running.
pub async fn wait_exit(
    child: &mut std::process::Child,
    secs: u64,
    log: impl Fn() -> String,
) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still running after {secs} s; log:\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Kafka bootstrap servers, or None (skip) when not configured and not required.
pub fn kafka() -> Option<String> {
    match std::env::var("OPPTAK_TEST_KAFKA") {
        Ok(v) => Some(v),
        Err(_) if required() => panic!("OPPTAK_TEST_KAFKA not set but OPPTAK_REQUIRE_SERVICES=1"),
        Err(_) => {
            eprintln!("skipping: OPPTAK_TEST_KAFKA not set (run deploy/local/services.sh start)");
            None
        }
    }
}

/// A fresh PostgreSQL database for this test, or None when not configured.
pub async fn postgres_db(name: &str) -> Option<String> {
    let base = match std::env::var("OPPTAK_TEST_POSTGRES") {
        Ok(v) => v,
        Err(_) if required() => panic!("OPPTAK_TEST_POSTGRES not set but OPPTAK_REQUIRE_SERVICES=1"),
        Err(_) => {
            eprintln!("skipping: OPPTAK_TEST_POSTGRES not set");
            return None;
        }
    };
    use sqlx::Connection;
    let db = unique(name).to_lowercase();
    let mut conn = sqlx::PgConnection::connect(&base).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {db}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let (prefix, _) = base.rsplit_once('/').unwrap();
    Some(format!("{prefix}/{db}"))
}

pub enum Backend {
    /// memory:// bus, SQLite, local files: the embedded mode.
    Embedded,
    /// Kafka + PostgreSQL + local files.
    Services { kafka: String, postgres: String },
}

pub struct Env {
    pub dir: tempfile::TempDir,
    pub config: Config,
    pub vars: Vec<(String, String)>,
}

impl Env {
    pub fn new(backend: &Backend, name: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        let (bus, meta) = match backend {
            Backend::Embedded => ("memory://".to_string(), format!("sqlite://{d}/opptak.db")),
            Backend::Services { kafka, postgres } => (format!("kafka://{kafka}"), postgres.clone()),
        };
        let vars = vec![
            ("OPPTAK__BUS__URL".to_string(), bus),
            ("OPPTAK__BUS__PARTITIONS".to_string(), "4".to_string()),
            ("OPPTAK__BUS__TOPIC_PREFIX".to_string(), format!("{}.", unique(name))),
            ("OPPTAK__STORAGE__BLOBS".to_string(), format!("file://{d}/blobs")),
            ("OPPTAK__STORAGE__METADATA".to_string(), meta),
            ("OPPTAK__STORAGE__ARCHIVE".to_string(), format!("file://{d}/archive")),
            ("OPPTAK__KEYS__KEYRING".to_string(), format!("{d}/keyring.json")),
            ("OPPTAK__RECORDER__GROUP".to_string(), unique("recorder")),
            ("OPPTAK__KI__TRANSCRIBER_GROUP".to_string(), unique("transcriber")),
            ("OPPTAK__KI__LIVE_GROUP".to_string(), unique("live")),
            ("OPPTAK__KI__SUMMARIZER_GROUP".to_string(), unique("summarizer")),
            ("OPPTAK__RECORDER__FLUSH_INTERVAL_MS".to_string(), "100".to_string()),
            ("OPPTAK__RECORDER__REORDER_WINDOW".to_string(), "16".to_string()),
        ];
        let config = Config::load_from(None, &vars).unwrap();
        Self { dir, config, vars }
    }

    pub async fn edges(&self) -> Edges {
        let e = Edges::open(self.config.clone()).await.unwrap();
        e.create_topics().await.unwrap();
        e
    }

    pub fn blob_dir(&self) -> PathBuf {
        self.dir.path().join("blobs")
    }
}

/// A varied set of calls: all three codecs, mono and stereo, 1–4 s.
pub fn mixed_calls(prefix: &str, n: usize) -> Vec<SimCall> {
    (0..n)
        .map(|i| {
            let codec = [Codec::Pcmu, Codec::Pcma, Codec::L16][i % 3];
            let channels = if i % 5 == 4 { 1 } else { 2 };
            let secs = 1.0 + (i % 4) as f64 + 0.37;
            let mut c = SimCall::synthetic(&format!("{prefix}-{i:03}"), codec, channels, secs, 1000 + i as u64);
            c.started.desk = (i % 4) as i32 + 1;
            c.started.service_category = (i % 6) as i32 + 1;
            c.started.advisor_id = format!("adv-{}", i % 7);
            c.started.ki_enabled = i % 2 == 0;
            c.started.customer_informed = i % 4 == 0;
            c
        })
        .collect()
}

/// 16-byte probes from the source audio (wire bytes and decoded PCM).
pub fn probes(calls: &[SimCall], per_call: usize) -> HashSet<[u8; 16]> {
    let mut out = HashSet::new();
    for c in calls {
        for data in [c.wire.clone(), c.expected_pcm()] {
            let step = (data.len() / per_call).max(1);
            for at in (0..data.len().saturating_sub(16)).step_by(step) {
                let p: [u8; 16] = data[at..at + 16].try_into().unwrap();
                // Skip low-entropy probes (near-silence) that could match anything.
                if p.iter().collect::<HashSet<_>>().len() >= 8 {
                    out.insert(p);
                }
            }
        }
    }
    out
}

/// Finds any probe in `haystack`, at any alignment.
pub fn find_probe(haystack: &[u8], probes: &HashSet<[u8; 16]>) -> Option<usize> {
    let firsts: HashSet<u64> = probes
        .iter()
        .map(|p| u64::from_le_bytes(p[..8].try_into().unwrap()))
        .collect();
    if haystack.len() < 16 {
        return None;
    }
    (0..=haystack.len() - 16).find(|&i| {
        let head = u64::from_le_bytes(haystack[i..i + 8].try_into().unwrap());
        firsts.contains(&head) && probes.contains(&<[u8; 16]>::try_from(&haystack[i..i + 16]).unwrap())
    })
}

/// Every file under `dir` that contains a probe.
pub fn scan_dir(dir: &Path, probes: &HashSet<[u8; 16]>) -> Vec<(PathBuf, usize)> {
    scan_dir_since(dir, probes, std::time::SystemTime::UNIX_EPOCH)
}

/// Like [`scan_dir`], for files modified at or after `since` (a test's own
/// writes in a shared directory such as PostgreSQL's WAL).
pub fn scan_dir_since(dir: &Path, probes: &HashSet<[u8; 16]>, since: std::time::SystemTime) -> Vec<(PathBuf, usize)> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            let modified = e
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(std::time::SystemTime::now());
            if p.is_dir() {
                stack.push(p);
            } else if modified < since {
                continue;
            } else if let Ok(bytes) = std::fs::read(&p) {
                if let Some(at) = find_probe(&bytes, probes) {
                    hits.push((p, at));
                }
            }
        }
    }
    hits
}

/// Publishes the calls' events interleaved at random across calls, each call's
/// own events shuffled within the window and partly duplicated.
pub async fn play_interleaved(edges: &Edges, calls: &[SimCall], seed: u64) {
    let topic = edges.config.recorder_config().topics.telephony;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut streams: Vec<std::collections::VecDeque<v1::TelephonyEvent>> = calls
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let chunk_ms = if i % 4 == 3 { 20 } else { 100 };
            let mut evs = c.events(chunk_ms);
            sim::shuffle_and_duplicate(&mut evs, 6, 0.15, seed + i as u64);
            evs.into()
        })
        .collect();
    let mut batch = Vec::new();
    while streams.iter().any(|s| !s.is_empty()) {
        let live: Vec<usize> = (0..streams.len()).filter(|&i| !streams[i].is_empty()).collect();
        let i = live[rng.gen_range(0..live.len())];
        let ev = streams[i].pop_front().unwrap();
        let (key, payload) = sim::encode(&ev);
        batch.push(Outgoing {
            topic: topic.clone(),
            key,
            payload,
        });
        if batch.len() == 500 {
            edges.bus.publish_all(std::mem::take(&mut batch)).await.unwrap();
        }
    }
    edges.bus.publish_all(batch).await.unwrap();
}

pub async fn wait_for_recordings(edges: &Edges, n: usize, secs: u64) -> BTreeMap<String, v1::RecordingStored> {
    let topic = edges.config.recorder_config().topics.recordings;
    let mut sub = edges.bus.subscribe(&unique("watch"), &[topic]).await.unwrap();
    let mut got = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while got.len() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {n} recordings stored",
            got.len()
        );
        for r in sub.poll(1000, Duration::from_millis(300)).await.unwrap() {
            let ev = v1::RecordingStored::decode(r.payload.as_ref()).unwrap();
            got.insert(ev.call_id.clone(), ev);
        }
    }
    got
}

/// Whether call `id` has an artifact of `kind` (`transcript`, `draft`, ...).
pub async fn has_artifact(edges: &Edges, id: &CallId, kind: &str) -> bool {
    edges.meta.artifacts(id).await.unwrap().iter().any(|a| a.kind == kind)
}

/// Waits up to `secs` for the summarizer's draft of call `cid`.
pub async fn wait_for_draft(edges: &Edges, cid: &CallId, secs: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !has_artifact(edges, cid, "draft").await {
        assert!(tokio::time::Instant::now() < deadline, "no draft");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every call decrypts to exactly its source audio and its metadata matches.
pub async fn verify_calls(edges: &Edges, calls: &[SimCall]) {
    for c in calls {
        let id = CallId::parse(&c.call_id).unwrap();
        let rec = edges
            .vault()
            .read_recording(&id)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", c.call_id));
        assert!(rec.complete, "{} not complete", c.call_id);
        assert_eq!(rec.frames as usize, c.frames(), "{} frames", c.call_id);
        assert!(
            rec.pcm == c.expected_pcm(),
            "{}: audio differs from the source",
            c.call_id
        );
        assert!(rec.gaps.is_empty(), "{}: unexpected gaps {:?}", c.call_id, rec.gaps);
        let f = &rec.facts;
        assert_eq!(f.format, c.format, "{}", c.call_id);
        assert_eq!(f.advisor_id, c.started.advisor_id);
        assert_eq!(f.customer_ref, c.started.customer_ref);
        assert_eq!(f.ki_enabled, c.started.ki_enabled);
        assert_eq!(f.customer_informed, c.started.customer_informed);
        assert_eq!(
            f.started_at_us,
            opptak_proto::convert::micros(c.started.started_at.as_ref().unwrap())
        );
        assert_eq!(
            opptak::sim::codec_to_proto(f.format.codec()) as i32,
            c.started.audio_format.as_ref().unwrap().codec
        );
        assert_eq!(desk_code(f.desk), c.started.desk, "{} desk", c.call_id);
        assert_eq!(
            category_code(f.service_category),
            c.started.service_category,
            "{} category",
            c.call_id
        );
    }
}

/// After the recorder stopped (compaction done): every recording is a
/// format-v2 object, archived calls (investment advice, advisory desks) have an archive copy and KI calls
/// (informed, no opt-out) a KI copy, each sample-identical to the source and
/// under its own class's key; other calls have no copies.
pub async fn verify_copies(edges: &Edges, calls: &[SimCall]) {
    use opptak_vault::Which;
    for c in calls {
        let id = CallId::parse(&c.call_id).unwrap();
        let arts = edges.meta.artifacts(&id).await.unwrap();
        let rec = arts.iter().find(|a| a.kind == "recording").unwrap();
        assert!(rec.object.is_some(), "{}: recording not compacted", c.call_id);
        // The shipped policy archives investment advice and every call at an
        // advisory desk (Markets 2, Private Banking 3).
        let investment = c.started.service_category == 1 || matches!(c.started.desk, 2 | 3);
        let ki = c.started.ki_enabled && c.started.customer_informed;
        for (which, wanted) in [(Which::Archive, investment), (Which::Ki, ki)] {
            let art = arts.iter().find(|a| a.kind == which.store_kind());
            assert_eq!(art.is_some(), wanted, "{}: {which:?} copy", c.call_id);
            if let Some(art) = art {
                assert_eq!(art.key.key.class, which.class().as_str());
                assert_ne!(art.key.key.key_id, rec.key.key.key_id, "own key per class");
                let copy = edges
                    .vault()
                    .read_artifact(&id, which)
                    .await
                    .unwrap_or_else(|e| panic!("{}: {which:?}: {e}", c.call_id));
                assert!(copy.pcm == c.expected_pcm(), "{}: {which:?} copy differs", c.call_id);
            }
        }
    }
}

fn desk_code(d: opptak_domain::Desk) -> i32 {
    use opptak_domain::Desk::*;
    match d {
        Unspecified => 0,
        CustomerCenter => 1,
        Markets => 2,
        PrivateBanking => 3,
        Corporate => 4,
    }
}

fn category_code(c: opptak_domain::ServiceCategory) -> i32 {
    use opptak_domain::ServiceCategory::*;
    match c {
        Unspecified => 0,
        InvestmentAdvice => 1,
        Loan => 2,
        Savings => 3,
        Insurance => 4,
        Payments => 5,
        General => 6,
    }
}

/// Publishes each call's events as the telephony system would while the calls
/// run: step by step across all calls, pausing `pace` between steps.
pub fn spawn_paced_publisher(
    edges: &Edges,
    calls: &[opptak::sim::SimCall],
    pace: Duration,
) -> tokio::task::JoinHandle<()> {
    let bus = edges.bus.clone();
    let topic = edges.config.recorder_config().topics.telephony;
    let streams: Vec<_> = calls.iter().map(|c| c.events(100)).collect();
    tokio::spawn(async move {
        let longest = streams.iter().map(Vec::len).max().unwrap_or(0);
        for step in 0..longest {
            let batch: Vec<Outgoing> = streams
                .iter()
                .filter_map(|s| s.get(step))
                .map(|e| {
                    let (key, payload) = sim::encode(e);
                    Outgoing {
                        topic: topic.clone(),
                        key,
                        payload,
                    }
                })
                .collect();
            bus.publish_all(batch).await.unwrap();
            tokio::time::sleep(pace).await;
        }
    })
}

/// Runs the live transcriber role `live` over the telephony topic in a
/// group of its own until the sender says stop.
pub fn spawn_live_role(
    edges: &Edges,
    live: &std::sync::Arc<opptak_ki::live::Live>,
) -> (
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<Result<opptak_ki::live::LiveStats, opptak_ki::transcribe::TranscribeError>>,
) {
    let (stop, rx) = tokio::sync::watch::channel(false);
    let topic = edges.config.recorder_config().topics.telephony;
    let (live, group) = (live.clone(), unique("live"));
    let role = tokio::spawn(async move { opptak_ki::live::run_role(live, &group, &topic, rx).await });
    (stop, role)
}

/// Publishes one call's events in order.
pub async fn publish_events(edges: &Edges, events: &[v1::TelephonyEvent]) {
    let topic = edges.config.recorder_config().topics.telephony;
    for e in events {
        let (k, v) = sim::encode(e);
        edges.bus.publish(&topic, &k, &v).await.unwrap();
    }
}

/// The speech server of `services.sh start-speech`, or None (skip) when not
/// configured and not required.
pub fn speech_url() -> Option<String> {
    match std::env::var("OPPTAK_TEST_SPEECH_URL") {
        Ok(u) => Some(u),
        Err(_) => {
            assert!(
                !required(),
                "OPPTAK_TEST_SPEECH_URL not set but OPPTAK_REQUIRE_SERVICES=1"
            );
            eprintln!("skipping: no speech server");
            None
        }
    }
}

/// The language model of `services.sh start-llm` as `(url, model)`, or
/// None (skip) when not configured and not required.
pub fn llm() -> Option<(String, String)> {
    match std::env::var("OPPTAK_TEST_LLM_URL") {
        Ok(u) => {
            let model = std::env::var("OPPTAK_TEST_LLM_MODEL").unwrap_or_else(|_| "smollm2-135m-instruct".into());
            Some((u, model))
        }
        Err(_) => {
            assert!(!required(), "OPPTAK_TEST_LLM_URL not set but OPPTAK_REQUIRE_SERVICES=1");
            eprintln!("skipping: no language model server");
            None
        }
    }
}

/// Posts the sign-in form of the review service at `base` as a browser
/// does: fetches the form (its double-submit cookie and hidden field), then
/// posts it with them. The response, for what a test reads of it.
pub async fn post_sign_in(http: &reqwest::Client, base: &str, user: &str, password: &str) -> reqwest::Response {
    let page = http.get(format!("{base}/login")).send().await.unwrap();
    let nonce = page.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let csrf = csrf_in(&page.text().await.unwrap());
    http.post(format!("{base}/login"))
        .header("cookie", nonce)
        .form(&[("user", user), ("password", password), ("csrf", &csrf)])
        .send()
        .await
        .unwrap()
}

/// Signs in to the review service at `base` through its form
/// ([`post_sign_in`]). Returns the response status and the
/// `opptak_session=...` cookie, if one was set (checked to be `HttpOnly`
/// and `SameSite=Strict`).
pub async fn web_sign_in(
    http: &reqwest::Client,
    base: &str,
    user: &str,
    password: &str,
) -> (reqwest::StatusCode, Option<String>) {
    let r = post_sign_in(http, base, user, password).await;
    let full = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("opptak_session=") && !c.starts_with("opptak_session=;"))
        .map(str::to_owned);
    if let Some(full) = &full {
        assert!(full.contains("HttpOnly") && full.contains("SameSite=Strict"), "{full}");
    }
    let session = full.map(|c| c.split(';').next().unwrap_or_default().to_owned());
    (r.status(), session)
}

/// Signs `user` in ([`web_sign_in`]), which must succeed (303); returns
/// the `opptak_session=...` cookie.
pub async fn web_session(http: &reqwest::Client, base: &str, user: &str, password: &str) -> String {
    let (status, session) = web_sign_in(http, base, user, password).await;
    assert_eq!(status, 303, "{user} signs in");
    session.unwrap()
}

/// The value of the first `csrf` field of a page (every signed-in page has
/// one, in the sign-out form; all forms of a session carry the same token).
pub fn csrf_in(page: &str) -> String {
    csrf_field(page).unwrap_or_else(|| panic!("no csrf field in {page}"))
}

/// The value of the first `csrf` field of a page, if it has one.
pub fn csrf_field(page: &str) -> Option<String> {
    page.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|v| v.split('"').next())
        .map(str::to_owned)
}

/// Config variables for the PKCS#11 provider on the SoftHSM2 token of
/// `deploy/local/services.sh`, under a KEK label prefix of this test's own;
/// `None` (the test skips) without a token, refused under OPPTAK_REQUIRE_SERVICES.
pub fn softhsm_vars(name: &str) -> Option<Vec<(String, String)>> {
    let get = |k: &str| std::env::var(k).ok();
    let (Some(module), Some(token), Some(pin)) = (
        get("OPPTAK_TEST_PKCS11_MODULE"),
        get("OPPTAK_TEST_PKCS11_TOKEN"),
        get("OPPTAK_TEST_PKCS11_PIN"),
    ) else {
        assert_ne!(
            get("OPPTAK_REQUIRE_SERVICES").as_deref(),
            Some("1"),
            "OPPTAK_TEST_PKCS11_* not set"
        );
        eprintln!("skipping: no SoftHSM2 token configured");
        return None;
    };
    Some(vec![
        ("OPPTAK__KEYS__PROVIDER".to_string(), "pkcs11".to_string()),
        ("OPPTAK__KEYS__PKCS11_MODULE".to_string(), module),
        ("OPPTAK__KEYS__PKCS11_TOKEN".to_string(), token),
        ("OPPTAK__KEYS__PKCS11_PIN".to_string(), pin),
        ("OPPTAK__KEYS__PKCS11_PREFIX".to_string(), format!("{}-", unique(name))),
    ])
}

/// Test setup's way to add a local user: `add_user` and, when its role reads
/// call content, the approval of a second admin (issue 15, finding 5:
/// granting content takes two administrators).
#[allow(async_fn_in_trait)]
pub trait AddApproved {
    async fn add_approved(
        &self,
        by: &str,
        user: &str,
        name: &str,
        role: opptak_review::identity::Role,
        team: &str,
        password: &str,
    ) -> anyhow::Result<opptak_review::identity::User>;
}

impl AddApproved for opptak_review::identity::Identity {
    async fn add_approved(
        &self,
        by: &str,
        user: &str,
        name: &str,
        role: opptak_review::identity::Role,
        team: &str,
        password: &str,
    ) -> anyhow::Result<opptak_review::identity::User> {
        let u = self.add_user(by, user, name, role, team, password).await?;
        if role.reads_content() {
            self.approve_user(&format!("{by}-2"), user).await?;
        }
        Ok(u)
    }
}

/// A speech recognizer that hears one fixed sentence in every utterance, at
/// once: for tests about when audio may reach recognition, or what happens
/// to a transcript, not what a model hears (the real model's tests use the
/// speech server).
pub struct FixedAsr(pub &'static str);

#[async_trait::async_trait]
impl opptak_ki::asr::SpeechRecognizer for FixedAsr {
    async fn transcribe(
        &self,
        u: &opptak_ki::asr::Utterance,
    ) -> Result<opptak_ki::asr::Transcript, opptak_ki::asr::AsrError> {
        let secs = u.pcm16.len() as f32 / 2.0 / u.sample_rate_hz as f32;
        Ok(opptak_ki::asr::Transcript {
            text: self.0.into(),
            segments: vec![opptak_ki::asr::Segment {
                start_s: 0.0,
                end_s: secs,
                text: self.0.into(),
            }],
        })
    }
    fn describe(&self) -> String {
        "fixed test recognizer".into()
    }
}

/// `text` spoken by espeak-ng (`voice`, `wpm` words a minute), as mono
/// PCM16 at `rate_hz`, resampled by sox. Files go to `dir`.
pub fn espeak(dir: &std::path::Path, text: &str, voice: &str, wpm: u32, rate_hz: u32) -> Vec<i16> {
    let wav = dir.join(format!("{}.wav", unique("say")));
    let raw = wav.with_extension("raw");
    let ok = std::process::Command::new("espeak-ng")
        .args(["-v", voice, "-s", &wpm.to_string(), "-w"])
        .arg(&wav)
        .arg(text)
        .status()
        .expect("espeak-ng (Debian package espeak-ng)")
        .success();
    assert!(ok, "espeak-ng failed");
    let ok = std::process::Command::new("sox")
        .args(["-R", "-D", "-V1"])
        .arg(&wav)
        .args([
            "-r",
            &rate_hz.to_string(),
            "-c",
            "1",
            "-b",
            "16",
            "-e",
            "signed-integer",
            "-t",
            "raw",
        ])
        .arg(&raw)
        .status()
        .expect("sox (Debian package sox)")
        .success();
    assert!(ok, "sox failed");
    std::fs::read(&raw)
        .unwrap()
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}
