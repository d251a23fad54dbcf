//! The KI path end to end over the real Kafka broker, PostgreSQL and the real
//! speech model (faster-whisper, Whisper tiny.en; deploy/speech/server.py):
//!
//! - the 20-call espeak-ng corpus (tests/ki_corpus/generate.sh) transcribed
//!   live while the calls play, within 15% word error rate of the scripts, a
//!   draft with taxonomy topics for every KI call and nothing for any other;
//! - KI opt-out before KI started, during a speech request, after the end
//!   before the summary, and after the draft: zero readable KI artifacts in
//!   the blob store, the database and Kafka, and the recording intact;
//! - a draft through the real SmolLM2 server on a redacted transcript.

use crate::common;

use common::{has_artifact, speech_url};

use common::{wait_for_recordings, Backend, Env};
use opptak::app::{Edges, RunningKi, RunningRecorder};
use opptak::demo::Sample;
use opptak_domain::model::CallId;
use opptak_domain::summary::Taxonomy;
use opptak_ki::asr::{AsrConfig, AsrError, HttpAsr, SpeechRecognizer, Transcript, Utterance};
use opptak_ki::live::LiveEnd;
use opptak_ki::summarize::read_draft;
use opptak_ki::transcribe::read_transcript;
use opptak_proto::Message;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

async fn services(name: &str) -> Option<Backend> {
    let kafka = common::kafka()?;
    let postgres = common::postgres_db(name).await?;
    Some(Backend::Services { kafka, postgres })
}

pub(crate) fn asr(url: &str) -> Arc<dyn SpeechRecognizer> {
    let mut cfg = AsrConfig::new(url, "tiny.en");
    cfg.timeout = Duration::from_secs(120);
    cfg.retries = 2;
    cfg.backoff = Duration::from_millis(200);
    Arc::new(HttpAsr::new(cfg).unwrap())
}

/// Generates the corpus (WAVs are made at test time, not committed).
fn corpus(dir: &Path) -> Vec<Sample> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ki_corpus/generate.sh");
    let out = std::process::Command::new("bash")
        .arg(script)
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "generate.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    opptak::demo::samples(dir).unwrap()
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_owned).collect()
}

/// Word errors and reference words of one call's transcript, per speaker.
fn errors(sample: &Sample, segs: &[opptak_ki::transcribe::TranscriptSegment]) -> (usize, usize) {
    let (mut e, mut n) = (0, 0);
    for who in ["agent", "customer"] {
        let want: Vec<String> = sample
            .script
            .iter()
            .filter_map(|l| l.strip_prefix(&format!("{who}: ")))
            .flat_map(words)
            .collect();
        let heard: Vec<&str> = segs
            .iter()
            .filter(|g| g.speaker == who)
            .map(|g| g.text.as_str())
            .collect();
        let (de, dn) = opptak_ki::asr::word_errors(&want.join(" "), &heard.join(" "));
        if de * 5 > dn {
            println!("  {who} said: {}\n  {who} heard: {}", want.join(" "), heard.join(" | "));
        }
        e += de;
        n += dn;
    }
    (e, n)
}

pub(crate) async fn wait_until<F, Fut>(what: &str, secs: u64, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !f().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every record of `topic` (from the start), decoded by the caller.
async fn all_records(edges: &Edges, topic: &str) -> Vec<opptak_bus::Record> {
    let mut sub = edges
        .bus
        .subscribe(&common::unique("scan"), &[topic.to_owned()])
        .await
        .unwrap();
    let end: i64 = edges
        .bus
        .end_offsets(topic)
        .await
        .unwrap()
        .iter()
        .map(|(_, o)| *o)
        .sum();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while (out.len() as i64) < end && tokio::time::Instant::now() < deadline {
        out.extend(sub.poll(1000, Duration::from_millis(500)).await.unwrap());
    }
    assert_eq!(out.len() as i64, end, "could not read all of {topic}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corpus_is_transcribed_live_drafted_and_tagged_over_kafka() {
    let Some(url) = speech_url() else { return };
    let Some(backend) = services("ki_corpus").await else {
        return;
    };
    let env = Env::new(&backend, "ki_corpus");
    let edges = env.edges().await;
    let samples = corpus(&env.dir.path().join("corpus"));
    assert_eq!(samples.len(), 20);
    let ki_calls: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.call.started.ki_enabled && s.call.started.customer_informed)
        .collect();
    assert!(ki_calls.len() >= 10 && ki_calls.len() < samples.len());

    let recorder = RunningRecorder::spawn(edges.recorder());
    let ki = RunningKi::spawn(&edges, true, true, Some(asr(&url))).await.unwrap();
    // The calls play concurrently, five times faster than real time.
    let calls: Vec<_> = samples.iter().map(|s| s.call.clone()).collect();
    common::spawn_paced_publisher(&edges, &calls, Duration::from_millis(20))
        .await
        .unwrap();
    wait_for_recordings(&edges, samples.len(), 180).await;
    for s in &ki_calls {
        let id = CallId::parse(&s.call.call_id).unwrap();
        wait_until(&format!("the draft of {id}"), 600, || {
            has_artifact(&edges, &id, "draft")
        })
        .await;
    }
    let live = ki.live.as_ref().unwrap().stats();
    ki.stop().await;
    recorder.stop().await.unwrap();

    // The KI backlog is visible (issue 16, section 8: consumer lag stayed
    // near 0 while utterances waited a minute): every utterance's wait for a
    // speech slot and every call's end-to-draft time are measured.
    let text = opptak_telemetry::metrics().render();
    let count = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0.0)
    };
    assert!(
        count("opptak_asr_queue_wait_seconds_count ") >= live.utterances_sent as f64,
        "{text}"
    );
    assert!(count("opptak_call_end_to_draft_seconds_count ") >= 1.0, "{text}");
    assert!(text.contains("opptak_asr_queue_depth ") && text.contains("opptak_asr_queue_oldest_seconds "));

    // Every KI call was transcribed while it played, none by the batch path.
    let stored_live = live
        .ends
        .iter()
        .filter(|(_, e)| matches!(e, LiveEnd::Stored { .. }))
        .count();
    assert_eq!(stored_live, ki_calls.len(), "{:?}", live.ends);

    let taxonomy = Taxonomy::default_taxonomy();
    let qa = opptak_review::qa::Qa::open(&edges.review()).await.unwrap();
    let (mut errs, mut total, mut topic_hits) = (0usize, 0usize, 0usize);
    for s in &samples {
        let id = CallId::parse(&s.call.call_id).unwrap();
        let ki = s.call.started.ki_enabled && s.call.started.customer_informed;
        if !ki {
            // Nothing KI: no key, no transcript, no draft.
            assert!(edges.meta.class_key(&id, "ki").await.unwrap().is_none(), "{id}");
            for kind in ["ki-audio", "transcript", "draft"] {
                assert!(!has_artifact(&edges, &id, kind).await, "{id} has a {kind}");
            }
            continue;
        }
        let segs = read_transcript(&edges.vault(), &id).await.unwrap();
        assert!(segs.windows(2).all(|w| w[0].start_s <= w[1].start_s));
        let (e, n) = errors(s, &segs);
        println!("{id}: {e}/{n} word errors");
        errs += e;
        total += n;
        let d = read_draft(&edges.vault(), &id).await.unwrap();
        assert!(!d.summary.is_empty() && !d.topics.is_empty(), "{id}: {d:?}");
        // Every drafted KI call has its reporting index row (issue 6, R5/R6).
        let indexed = qa.call(&id).await.unwrap();
        assert_eq!(
            indexed.map(|c| c.row.topics),
            Some(d.topics.clone()),
            "{id}: no ki_calls row"
        );
        assert!(
            d.topics.iter().all(|t| taxonomy.get(t).is_some()),
            "{id}: {:?}",
            d.topics
        );
        if d.topics.iter().any(|t| s.topics.contains(t)) {
            topic_hits += 1;
        }
        // R13: the draft never repeats an identifier the transcript had.
        assert!(
            opptak_domain::redact::redact(&d.summary).findings.is_empty(),
            "{id}: {}",
            d.summary
        );
    }
    let wer = errs as f64 / total as f64;
    println!(
        "corpus: word error rate {wer:.3} over {total} words; drafts naming an expected topic: {topic_hits}/{}",
        ki_calls.len()
    );
    assert!(wer <= 0.15, "word error rate {wer:.3}");

    // On Kafka: a closed transcript and one draft per KI call, all sealed.
    let t_records = all_records(&edges, &opptak::app::transcripts_topic(&edges.config)).await;
    let closed: std::collections::BTreeSet<String> = t_records
        .iter()
        .map(|r| opptak_proto::v1::TranscriptSegment::decode(r.payload.as_ref()).unwrap())
        .filter(|m| m.last)
        .map(|m| m.call_id)
        .collect();
    assert_eq!(closed.len(), ki_calls.len());
    let d_records = all_records(&edges, &opptak::app::drafts_topic(&edges.config)).await;
    assert_eq!(d_records.len(), ki_calls.len());
    for r in &d_records {
        let m = opptak_proto::v1::DraftWritten::decode(r.payload.as_ref()).unwrap();
        let id = CallId::parse(&m.call_id).unwrap();
        let row = edges.meta.class_key(&id, "ki").await.unwrap().unwrap();
        let key = edges.vault().open_row(&id, &row).unwrap();
        let d = opptak_ki::summarize::open_draft_message(&key, &m).unwrap();
        assert_eq!(d, read_draft(&edges.vault(), &id).await.unwrap());
        let needle = d.summary.as_bytes();
        assert!(!r
            .payload
            .windows(needle.len().min(24))
            .any(|w| w == &needle[..needle.len().min(24)]));
    }
}

/// In front of the real recognizer: counts requests, and can hold them
/// (after the real answer came) until released, noting requests whose
/// future was dropped before they returned (cancelled).
struct Gate {
    real: Arc<dyn SpeechRecognizer>,
    hold: AtomicBool,
    started: AtomicU64,
    returned: AtomicU64,
    cancelled: Arc<AtomicU64>,
    release: tokio::sync::Notify,
}

struct DropGuard(Arc<AtomicU64>, bool);
impl Drop for DropGuard {
    fn drop(&mut self) {
        if !self.1 {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl Gate {
    /// In front of `real`, holding every answer while `hold` is set.
    fn new(real: Arc<dyn SpeechRecognizer>, hold: bool) -> Arc<Self> {
        Arc::new(Self {
            real,
            hold: hold.into(),
            started: 0.into(),
            returned: 0.into(),
            cancelled: Arc::default(),
            release: tokio::sync::Notify::new(),
        })
    }
}

#[async_trait::async_trait]
impl SpeechRecognizer for Gate {
    async fn transcribe(&self, u: &Utterance) -> Result<Transcript, AsrError> {
        self.started.fetch_add(1, Ordering::SeqCst);
        let mut guard = DropGuard(self.cancelled.clone(), false);
        let out = self.real.transcribe(u).await;
        if self.hold.load(Ordering::SeqCst) {
            self.release.notified().await;
        }
        guard.1 = true;
        self.returned.fetch_add(1, Ordering::SeqCst);
        out
    }
    fn describe(&self) -> String {
        format!("gate in front of {}", self.real.describe())
    }
}

/// Zero readable KI artifacts of `id` anywhere, and its recording intact.
async fn assert_ki_gone(env: &Env, edges: &Edges, sample: &Sample, secret_words: &[&str]) {
    let id = CallId::parse(&sample.call.call_id).unwrap();
    // Database: the ki key is destroyed (or was never made), with evidence.
    let key = edges.meta.class_key(&id, "ki").await.unwrap();
    assert!(
        key.as_ref().is_none_or(|k| k.destroyed_at_us.is_some()),
        "{id}: ki key alive"
    );
    if key.is_some() {
        let ev = edges.meta.shreddings(Some(&id)).await.unwrap();
        assert!(
            ev.iter().any(|e| e.class == "ki" && e.reason.contains("opt-out")),
            "{id}: {ev:?}"
        );
    }
    for a in edges.meta.artifacts(&id).await.unwrap() {
        if a.key.key.class == "ki" {
            assert!(a.key.destroyed_at_us.is_some(), "{id}: {} readable", a.kind);
        }
    }
    assert!(read_transcript(&edges.vault(), &id).await.is_err());
    assert!(read_draft(&edges.vault(), &id).await.is_err());
    // Blob store: every object under ki/<call>/ fails to open.
    let dir = env.blob_dir().join("ki").join(id.as_str());
    if let Ok(rd) = std::fs::read_dir(&dir) {
        for f in rd {
            let bytes = std::fs::read(f.unwrap().path()).unwrap();
            assert!(
                edges.vault().open_any_object(&bytes).await.is_err(),
                "{id}: a KI object opens"
            );
        }
    }
    // Kafka: every transcript segment and draft of the call is sealed under the dead key.
    for topic in [
        opptak::app::transcripts_topic(&edges.config),
        opptak::app::drafts_topic(&edges.config),
    ] {
        for r in all_records(edges, &topic).await {
            if r.key.as_deref() != Some(id.as_str().as_bytes()) {
                continue;
            }
            for w in secret_words {
                let w = w.as_bytes();
                assert!(
                    !r.payload.windows(w.len()).any(|x| x.eq_ignore_ascii_case(w)),
                    "{id}: plaintext on {topic}"
                );
            }
            if let Ok(m) = opptak_proto::v1::TranscriptSegment::decode(r.payload.as_ref()) {
                if !m.sealed.is_empty() {
                    let info = opptak_crypto::stream::peek(&m.sealed).unwrap();
                    assert_eq!(info.key_ref, format!("{id}/ki"));
                }
            }
        }
    }
    // The recording goes on, whole.
    let rec = edges.vault().read_recording(&id).await.unwrap();
    assert_eq!(rec.pcm, sample.call.expected_pcm(), "{id}: recording not intact");
    assert!(rec.record.opt_out.is_some());
}

async fn play(edges: &Edges, events: &[opptak_proto::v1::TelephonyEvent]) {
    common::publish_events(edges, events).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_opt_out_leaves_no_readable_ki_artifact() {
    let Some(url) = speech_url() else { return };
    let Some(backend) = services("ki_optout").await else {
        return;
    };
    use opptak_proto::v1::telephony_event::Event;
    let env = Env::new(&backend, "ki_optout");
    let edges = env.edges().await;
    let mut samples = corpus(&env.dir.path().join("corpus"));
    samples.retain(|s| s.call.started.ki_enabled && s.call.started.customer_informed);
    samples.truncate(4);
    let gate = Gate::new(asr(&url), false);
    let recorder = RunningRecorder::spawn(edges.recorder());
    let ki = RunningKi::spawn(&edges, true, false, Some(gate.clone())).await.unwrap();
    let live = ki.live.clone().unwrap();
    let secret = |s: &Sample| -> Vec<String> {
        s.script
            .iter()
            .flat_map(|l| words(l.split_once(": ").unwrap().1))
            .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()).to_owned())
            .filter(|w| w.len() >= 7)
            .collect()
    };
    let opt_out = |s: &Sample, at_ms: u64| {
        let mut c = s.call.clone();
        c.opt_out_at_ms = Some(at_ms);
        c.events(100)
    };

    // 1. Before KI started: the opt-out comes before any audio.
    let s1 = &samples[0];
    let before = gate.started.load(Ordering::SeqCst);
    let evs = opt_out(s1, 0);
    let pos = evs
        .iter()
        .position(|e| matches!(e.event, Some(Event::KiOptOut(_))))
        .unwrap();
    let mut evs1 = evs.clone();
    let o = evs1.remove(pos);
    evs1.insert(1, o);
    play(&edges, &evs1).await;
    wait_for_recordings(&edges, 1, 120).await;
    let id1 = CallId::parse(&s1.call.call_id).unwrap();
    wait_until("the live worker of call 1", 60, || async { !live.calls.contains(&id1) }).await;
    assert_eq!(
        gate.started.load(Ordering::SeqCst),
        before,
        "audio reached the recognizer after an opt-out"
    );

    // 2. During a speech request: held in flight, the opt-out arrives.
    let s2 = &samples[1];
    let id2 = CallId::parse(&s2.call.call_id).unwrap();
    gate.hold.store(true, Ordering::SeqCst);
    let before = gate.started.load(Ordering::SeqCst);
    let evs = s2.call.events(100);
    let (head, tail) = evs.split_at(evs.len() - 1); // all audio, not the end
    play(&edges, head).await;
    wait_until("a request in flight", 120, || async {
        gate.started.load(Ordering::SeqCst) > before
    })
    .await;
    let o = late_opt_out(&s2.call.call_id);
    play(&edges, &[o]).await;
    play(&edges, tail).await;
    wait_until("the live worker of call 2", 120, || async {
        !live.calls.contains(&id2)
    })
    .await;
    assert!(live.stats().ends.contains(&(id2.to_string(), LiveEnd::OptedOut)));
    assert!(live.stats().requests_cancelled >= 1);
    assert!(
        gate.cancelled.load(Ordering::SeqCst) >= 1,
        "the request in flight was not cancelled"
    );
    gate.hold.store(false, Ordering::SeqCst);
    gate.release.notify_waiters();
    wait_for_recordings(&edges, 2, 120).await;

    // 3. After the end, before the summary (no summarizer runs yet).
    let s3 = &samples[2];
    let id3 = CallId::parse(&s3.call.call_id).unwrap();
    play(&edges, &s3.call.events(100)).await;
    wait_until("the transcript of call 3", 300, || {
        has_artifact(&edges, &id3, "transcript")
    })
    .await;
    play(&edges, &[late_opt_out(&s3.call.call_id)]).await;
    wait_until("the opt-out of call 3", 60, || async {
        edges
            .meta
            .class_key(&id3, "ki")
            .await
            .unwrap()
            .unwrap()
            .destroyed_at_us
            .is_some()
    })
    .await;

    // 4. After the draft: the summarizer runs now (call 3 gets none).
    let summarizer = RunningKi::spawn(&edges, false, true, None).await.unwrap();
    let s4 = &samples[3];
    let id4 = CallId::parse(&s4.call.call_id).unwrap();
    play(&edges, &s4.call.events(100)).await;
    wait_until("the draft of call 4", 300, || has_artifact(&edges, &id4, "draft")).await;
    assert!(read_draft(&edges.vault(), &id4).await.is_ok());
    play(&edges, &[late_opt_out(&s4.call.call_id)]).await;
    wait_until("the opt-out of call 4", 60, || async {
        edges
            .meta
            .class_key(&id4, "ki")
            .await
            .unwrap()
            .unwrap()
            .destroyed_at_us
            .is_some()
    })
    .await;
    wait_for_recordings(&edges, 4, 120).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    summarizer.stop().await;
    ki.stop().await;
    recorder.stop().await.unwrap();
    assert!(
        !has_artifact(&edges, &id3, "draft").await,
        "call 3 was drafted after its opt-out"
    );

    for s in &samples {
        let words = secret(s);
        let refs: Vec<&str> = words.iter().map(String::as_str).collect();
        assert_ki_gone(&env, &edges, s, &refs).await;
    }
}

fn late_opt_out(call_id: &str) -> opptak_proto::v1::TelephonyEvent {
    opptak_proto::v1::TelephonyEvent {
        call_id: call_id.into(),
        event: Some(opptak_proto::v1::telephony_event::Event::KiOptOut(
            opptak_proto::v1::KiOptOut {
                requested_by: "cust-self-service".into(),
                ..Default::default()
            },
        )),
    }
}

/// Passes drafts on to the real writer, keeping every request it saw.
struct Spy {
    real: Arc<dyn opptak_ki::llm::DraftWriter>,
    seen: std::sync::Mutex<Vec<opptak_ki::llm::DraftRequest>>,
}

#[async_trait::async_trait]
impl opptak_ki::llm::DraftWriter for Spy {
    async fn draft(
        &self,
        req: &opptak_ki::llm::DraftRequest,
    ) -> Result<opptak_domain::summary::Draft, opptak_ki::llm::LlmError> {
        self.seen.lock().unwrap().push(req.clone());
        self.real.draft(req).await
    }
    fn describe(&self) -> String {
        self.real.describe()
    }
}

/// A KI call whose customer says a phone number and an e-mail address, drafted
/// by SmolLM2-135M-Instruct (llama-cpp-python server): only redacted text is
/// sent, and the stored draft is the model's, valid against the schema, with
/// topics from the taxonomy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_language_model_drafts_from_the_redacted_transcript() {
    let Some(url) = speech_url() else { return };
    let Ok(llm_url) = std::env::var("OPPTAK_TEST_LLM_URL") else {
        assert_ne!(
            std::env::var("OPPTAK_REQUIRE_SERVICES").as_deref(),
            Ok("1"),
            "OPPTAK_TEST_LLM_URL not set"
        );
        eprintln!("skipping: no language model server");
        return;
    };
    let model = std::env::var("OPPTAK_TEST_LLM_MODEL").unwrap_or_else(|_| "smollm2-135m-instruct".into());
    let env = Env::new(&Backend::Embedded, "ki_llm");
    let edges = env.edges().await;
    let mut samples = corpus(&env.dir.path().join("corpus"));
    // The calls where the customer gives a phone number or an e-mail address.
    samples.retain(|s| {
        s.call.started.ki_enabled
            && s.call.started.customer_informed
            && s.script
                .iter()
                .any(|l| l.contains(" dot com") || l.contains("nine one two"))
    });
    samples.truncate(1);
    assert!(!samples.is_empty());
    let recorder = RunningRecorder::spawn(edges.recorder());
    let ki = RunningKi::spawn(&edges, true, false, Some(asr(&url))).await.unwrap();
    for s in &samples {
        play(&edges, &s.call.events(100)).await;
    }
    for s in &samples {
        let id = CallId::parse(&s.call.call_id).unwrap();
        wait_until("the transcript", 300, || has_artifact(&edges, &id, "transcript")).await;
    }
    ki.stop().await;
    recorder.stop().await.unwrap();

    let taxonomy = Arc::new(Taxonomy::default_taxonomy());
    let mut cfg = opptak_ki::llm::ChatConfig::new(llm_url, model.clone());
    cfg.timeout = Duration::from_secs(60);
    cfg.max_tokens = 768;
    cfg.max_attempts = 2;
    let spy = Arc::new(Spy {
        real: Arc::new(opptak_ki::llm::ChatDrafts::new(cfg, taxonomy.clone()).unwrap()),
        seen: Default::default(),
    });
    let mut summarizer = opptak::app::summarizer(&edges).await.unwrap();
    Arc::get_mut(&mut summarizer).unwrap().writer = spy.clone();
    let schema = opptak_ki::llm::draft_schema(&taxonomy).unwrap();
    let (mut pii_in_transcripts, mut by_model) = (0, 0);
    for s in &samples {
        let id = CallId::parse(&s.call.call_id).unwrap();
        let segs = read_transcript(&edges.vault(), &id).await.unwrap();
        pii_in_transcripts += segs
            .iter()
            .map(|g| opptak_domain::redact::redact(&g.text).findings.len())
            .sum::<usize>();
        let out = summarizer.summarize_call(&id).await.unwrap();
        let opptak_ki::summarize::SummaryOutcome::Done { draft, .. } = out else {
            panic!("{id}: {out:?}")
        };
        // Test data only: printing the draft is fine here.
        println!("{id}: {draft:?}");
        let stored = read_draft(&edges.vault(), &id).await.unwrap();
        assert_eq!(stored, draft);
        assert!(stored.topics.iter().all(|t| taxonomy.get(t).is_some()));
        if stored.source == model {
            by_model += 1;
            let answer = serde_json::json!({
                "summary": stored.summary,
                "topics": stored.topics,
                "customer_requests": stored.customer_requests,
                "follow_ups": stored.follow_ups,
            });
            opptak_ki::llm::validate_json(&schema, &answer).unwrap();
        }
    }
    assert!(by_model > 0, "no draft was the model's");
    // The model got the calls, and never an identifier.
    let seen = spy.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), samples.len());
    assert!(pii_in_transcripts > 0, "the transcripts held no identifier to redact");
    for req in &seen {
        for (speaker, _, text) in &req.segments {
            let channel = opptak_domain::redact::Channel::from_speaker(speaker);
            assert!(
                opptak_domain::redact::redact_from(text, channel).findings.is_empty(),
                "{text}"
            );
        }
    }
    assert!(
        seen.iter()
            .flat_map(|r| &r.segments)
            .any(|(_, _, t)| t.contains("[PHONE]") || t.contains("[EMAIL]")),
        "nothing was redacted"
    );
}

/// A speech server of this test's own (the same server.py and model as
/// services.sh starts), on a free port, that can be stopped and started.
struct OwnSpeechServer {
    python: String,
    port: u16,
    child: Option<std::process::Child>,
}

impl OwnSpeechServer {
    fn new(python: String) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Self {
            python,
            port,
            child: None,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn start(&mut self) {
        let server = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/speech/server.py");
        let child = std::process::Command::new(&self.python)
            .arg(server)
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .env("HF_HUB_OFFLINE", "1")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let health = format!("127.0.0.1:{}", self.port);
        wait_until("the speech server", 120, || {
            let health = health.clone();
            async move { tokio::net::TcpStream::connect(health).await.is_ok() }
        })
        .await;
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for OwnSpeechServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The speech server is stopped mid-run: the calls in flight go pending
/// (live abandons them, the batch path waits without acknowledging), and
/// when the server is back every KI call gets its transcript and draft.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speech_server_stopped_mid_run_loses_no_call() {
    let Some(_) = speech_url() else { return };
    let Ok(python) = std::env::var("OPPTAK_TEST_SPEECH_PYTHON") else {
        assert_ne!(
            std::env::var("OPPTAK_REQUIRE_SERVICES").as_deref(),
            Ok("1"),
            "OPPTAK_TEST_SPEECH_PYTHON not set"
        );
        return;
    };
    let Some(backend) = services("ki_outage").await else {
        return;
    };
    let env = Env::new(&backend, "ki_outage");
    let edges = env.edges().await;
    let mut samples = corpus(&env.dir.path().join("corpus"));
    samples.retain(|s| s.call.started.ki_enabled && s.call.started.customer_informed);
    samples.truncate(6);
    let mut server = OwnSpeechServer::new(python);
    server.start().await;
    let mut cfg = AsrConfig::new(server.url(), "tiny.en");
    cfg.timeout = Duration::from_secs(60);
    cfg.retries = 1;
    cfg.backoff = Duration::from_millis(100);
    cfg.breaker_failures = 2;
    cfg.breaker_cooldown = Duration::from_secs(2);
    let recorder = RunningRecorder::spawn(edges.recorder());
    let ki = RunningKi::spawn(&edges, true, true, Some(Arc::new(HttpAsr::new(cfg).unwrap())))
        .await
        .unwrap();
    let live = ki.live.clone().unwrap();
    // The first calls play; the server dies once the first transcript is stored.
    let first = CallId::parse(&samples[0].call.call_id).unwrap();
    play(&edges, &samples[0].call.events(100)).await;
    wait_until("the first transcript", 300, || {
        has_artifact(&edges, &first, "transcript")
    })
    .await;
    server.stop();
    for s in &samples[1..] {
        play(&edges, &s.call.events(100)).await;
    }
    wait_for_recordings(&edges, samples.len(), 120).await;
    // Down for a while: the other calls stay pending, nothing of them stored.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut pending = 0;
    for s in &samples[1..] {
        let id = CallId::parse(&s.call.call_id).unwrap();
        if !has_artifact(&edges, &id, "transcript").await {
            pending += 1;
        }
    }
    assert_eq!(pending, samples.len() - 1, "transcripts appeared with the server down");
    assert!(
        live.stats()
            .ends
            .iter()
            .any(|(_, e)| matches!(e, LiveEnd::Abandoned(_))),
        "{:?}",
        live.stats().ends
    );
    // Back: every call completes, with its draft.
    server.start().await;
    for s in &samples {
        let id = CallId::parse(&s.call.call_id).unwrap();
        wait_until(&format!("the draft of {id}"), 600, || {
            has_artifact(&edges, &id, "draft")
        })
        .await;
        let segs = read_transcript(&edges.vault(), &id).await.unwrap();
        let (e, n) = errors(s, &segs);
        assert!(e * 3 < n, "{id}: {e}/{n} word errors");
    }
    ki.stop().await;
    recorder.stop().await.unwrap();
}

/// R11 for KI text: a customer's export holds the transcript and the draft of
/// their KI call; an erasure shreds them (KI artifacts are not exempt), and a
/// later export names them unreadable instead — or, when nothing of the call
/// is left, holds nothing of it (its row no longer names the customer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subject_export_and_erasure_cover_transcripts_and_drafts() {
    let Some(url) = speech_url() else { return };
    let env = Env::new(&Backend::Embedded, "ki_subject");
    let edges = env.edges().await;
    let mut samples = corpus(&env.dir.path().join("corpus"));
    samples.retain(|s| s.call.started.ki_enabled && s.call.started.customer_informed);
    samples.truncate(1);
    let s = &samples[0];
    let customer = s.call.started.customer_ref.clone();
    let id = CallId::parse(&s.call.call_id).unwrap();
    let recorder = RunningRecorder::spawn(edges.recorder());
    let ki = RunningKi::spawn(&edges, true, true, Some(asr(&url))).await.unwrap();
    play(&edges, &s.call.events(100)).await;
    wait_until("the draft", 300, || has_artifact(&edges, &id, "draft")).await;
    ki.stop().await;
    recorder.stop().await.unwrap();
    let qa = opptak_review::qa::Qa::open(&edges.review()).await.unwrap();
    assert!(qa.call(&id).await.unwrap().is_some(), "indexed for reporting and QA");

    let out = env.dir.path().join("export");
    let report = opptak_compliance::subject::export(&edges.compliance(), "co-anne", &customer, &out, &mut |_| {})
        .await
        .unwrap();
    let call = report.calls.iter().find(|c| c.call_id == id).unwrap();
    let names: Vec<&str> = call.files.iter().map(|f| f.name.as_str()).collect();
    assert!(names.contains(&format!("{id}/transcript.json").as_str()), "{names:?}");
    assert!(names.contains(&format!("{id}/draft.json").as_str()), "{names:?}");
    let exported: Vec<opptak_ki::transcribe::TranscriptSegment> =
        serde_json::from_slice(&std::fs::read(out.join(id.as_str()).join("transcript.json")).unwrap()).unwrap();
    assert_eq!(exported, read_transcript(&edges.vault(), &id).await.unwrap());

    let erased = opptak_compliance::subject::erase(
        &edges.compliance(),
        &opptak_compliance::subject::EraseRequest {
            customer_ref: customer.clone(),
            by: "co-anne".into(),
            reason: "erasure request DSR-2026-0043".into(),
            dry_run: false,
        },
        &mut |_| {},
    )
    .await
    .unwrap();
    println!("{}", erased.render());
    assert!(read_transcript(&edges.vault(), &id).await.is_err());
    assert!(read_draft(&edges.vault(), &id).await.is_err());
    // The content-free reporting rows go with the KI data: no topic, sample
    // or score links the customer's call any longer.
    assert!(qa.call(&id).await.unwrap().is_none());
    assert!(!qa.is_sampled(&id).await.unwrap());
    let started = edges.meta.load_call(&id).await.unwrap().unwrap().facts.started_at_us;
    let day = opptak_domain::time::utc_day(started);
    assert!(qa.topic_rows(&day, &day).await.unwrap().is_empty());
    let again = opptak_compliance::subject::export(
        &edges.compliance(),
        "co-anne",
        &customer,
        &env.dir.path().join("again"),
        &mut |_| {},
    )
    .await
    .unwrap();
    match again.calls.iter().find(|c| c.call_id == id) {
        // Nothing of the call is left: its row no longer names the customer
        // (issue 16, section 4), so a later export holds nothing of it.
        None => {
            let row = edges.meta.load_call(&id).await.unwrap().unwrap();
            assert_eq!(row.facts.customer_ref, "", "{}", erased.render());
        }
        // Its audio is still kept (an archived call): the KI text is named unreadable.
        Some(call) => {
            assert!(call
                .files
                .iter()
                .all(|f| !f.name.ends_with("transcript.json") && !f.name.ends_with("draft.json")));
            let gone: Vec<&str> = call.unreadable.iter().map(|(k, _)| k.as_str()).collect();
            assert!(gone.contains(&"transcript") && gone.contains(&"draft"), "{gone:?}");
        }
    }
}

/// Issue 16, section 8: opt-outs that race the call's own events.
/// 1. After `CallEnded`, while the call's speech requests are still queued or
///    in flight: the live worker stops them and purges (on the old main it had
///    forgotten the call at its end, so the queued audio still went to the
///    recognizer and the transcript was stored).
/// 2. Before `CallStarted` (separate producers): the opt-out is kept for the
///    call and applied from its first second — nothing reaches the recognizer,
///    and no KI artifact exists (on the old main it was dead-lettered as
///    `UNKNOWN_CALL` and KI ran on the whole call).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opt_outs_after_the_end_or_before_the_start_are_not_lost() {
    use opptak_proto::v1::telephony_event::Event;
    let env = Env::new(&Backend::Embedded, "optout_race");
    let edges = env.edges().await;
    let gate = Gate::new(Arc::new(common::FixedAsr("the customer asks about a fund")), true);
    let recorder = RunningRecorder::spawn(edges.recorder());
    let ki = RunningKi::spawn(&edges, true, false, Some(gate.clone())).await.unwrap();
    let live = ki.live.clone().unwrap();
    let mut calls = common::mixed_calls(&common::unique("race"), 2);
    for c in calls.iter_mut() {
        c.started.ki_enabled = true;
        c.started.customer_informed = true;
    }

    // 1. The whole call, its end included, with the recognizer holding every request.
    let a = CallId::parse(&calls[0].call_id).unwrap();
    play(&edges, &calls[0].events(100)).await;
    wait_until("a request in flight", 60, || async {
        gate.started.load(Ordering::SeqCst) > 0
    })
    .await;
    wait_for_recordings(&edges, 1, 60).await;
    play(&edges, &[late_opt_out(a.as_str())]).await;
    wait_until("the live worker to stop at the opt-out", 60, || async {
        !live.calls.contains(&a)
    })
    .await;
    assert!(
        live.stats().ends.contains(&(a.to_string(), LiveEnd::OptedOut)),
        "{:?}",
        live.stats().ends
    );
    assert!(
        gate.cancelled.load(Ordering::SeqCst) >= 1,
        "the held request was not cancelled"
    );
    assert!(
        !has_artifact(&edges, &a, "transcript").await,
        "a transcript was stored after the opt-out"
    );
    let sent_for_a = gate.started.load(Ordering::SeqCst);

    // 2. The opt-out first, then the call.
    gate.hold.store(false, Ordering::SeqCst);
    gate.release.notify_waiters();
    let b = CallId::parse(&calls[1].call_id).unwrap();
    let mut events = calls[1].events(100);
    assert!(matches!(events[0].event, Some(Event::CallStarted(_))));
    events.insert(0, late_opt_out(b.as_str()));
    play(&edges, &events).await;
    wait_for_recordings(&edges, 2, 60).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    ki.stop().await;
    let stats = recorder.stop().await.unwrap();
    assert_eq!(stats.dead_letters, 0, "the early opt-out is kept, not dead-lettered");
    assert_eq!(
        gate.started.load(Ordering::SeqCst),
        sent_for_a,
        "audio of call b reached the recognizer"
    );
    let rec = edges.meta.load_call(&b).await.unwrap().unwrap();
    let o = rec.opt_out.expect("the early opt-out is the call's");
    assert_eq!((o.requested_by.as_str(), o.offset_us), ("cust-self-service", 0));
    let ki_key = edges.meta.class_key(&b, "ki").await.unwrap().unwrap();
    assert!(ki_key.destroyed_at_us.is_some(), "the ki key is shredded");
    assert!(matches!(
        edges.vault().read_artifact(&b, opptak_vault::Which::Ki).await,
        Err(opptak_vault::VaultError::NoArtifact { .. } | opptak_vault::VaultError::KeyDestroyed { .. })
    ));
    // Recorded whole all the same.
    let whole = edges.vault().read_recording(&b).await.unwrap();
    assert!(whole.pcm == calls[1].expected_pcm());
    common::verify_calls(&edges, &calls).await;
}

/// Issue 16, section 5: a customer's objection to KI is recorded per
/// customer. The KI data of their earlier calls is shredded at once; a later
/// call starts with KI off from its first second (no audio reaches speech
/// recognition), unless the advisor records new consent in the call (on the
/// old main there was no such record: only a per-call opt-out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customers_objection_keeps_ki_off_until_new_consent() {
    let env = Env::new(&Backend::Embedded, "objection");
    let edges = env.edges().await;
    let gate = Gate::new(Arc::new(common::FixedAsr("the customer asks about a loan")), false);
    let recorder = RunningRecorder::spawn(edges.recorder());
    let ki = RunningKi::spawn(&edges, true, false, Some(gate.clone())).await.unwrap();
    let mut calls = common::mixed_calls(&common::unique("obj"), 3);
    let customer = format!("cust-{}", common::unique("objecting"));
    for c in calls.iter_mut() {
        c.started.ki_enabled = true;
        c.started.customer_informed = true;
        c.started.customer_ref = customer.clone();
    }
    calls[2].started.ki_consent_renewed = true;
    let ids: Vec<CallId> = calls.iter().map(|c| CallId::parse(&c.call_id).unwrap()).collect();

    play(&edges, &calls[0].events(100)).await;
    wait_until("the transcript of the first call", 60, || {
        has_artifact(&edges, &ids[0], "transcript")
    })
    .await;
    let shredded = opptak_compliance::subject::object(&edges.compliance(), &customer, "ki", "co-anne", "DSR-2026-7")
        .await
        .unwrap();
    assert_eq!(shredded.calls, 1);
    assert_eq!(
        shredded.conversations, 0,
        "an objection to KI leaves conversations alone"
    );
    let key = edges.meta.class_key(&ids[0], "ki").await.unwrap().unwrap();
    assert!(key.destroyed_at_us.is_some(), "the earlier call's KI data is shredded");

    // A later call without new consent: KI off from the first second.
    let before = gate.started.load(Ordering::SeqCst);
    play(&edges, &calls[1].events(100)).await;
    wait_for_recordings(&edges, 2, 60).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        gate.started.load(Ordering::SeqCst),
        before,
        "audio of the objecting customer reached KI"
    );
    let rec = edges.meta.load_call(&ids[1]).await.unwrap().unwrap();
    let o = rec.opt_out.expect("the objection is the call's opt-out");
    assert!(o.requested_by.contains("objection") && o.offset_us == 0, "{o:?}");
    assert!(!has_artifact(&edges, &ids[1], "transcript").await);

    // New consent recorded by the advisor in the call: KI runs.
    play(&edges, &calls[2].events(100)).await;
    wait_until("the transcript of the consenting call", 60, || {
        has_artifact(&edges, &ids[2], "transcript")
    })
    .await;
    ki.stop().await;
    recorder.stop().await.unwrap();
    common::verify_calls(&edges, &calls).await;
    let log = edges.audit().await.unwrap().entries(1, 100).await.unwrap();
    assert!(log
        .iter()
        .any(|e| e.event.action == "subject.object" && e.event.subject == format!("customer:{customer}")));
}

/// Issue 16, section 8: the live queue is bounded. When speech recognition
/// cannot keep up and a call would queue more utterances than the bound, the
/// live path hands the call to the batch path whole instead of growing
/// without bound (on the old main memory grew 67 → 209 MB with the backlog),
/// and the batch path transcribes it from its recording.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_live_queue_hands_the_call_to_the_batch_path() {
    let env = Env::new(&Backend::Embedded, "live_bound");
    let edges = env.edges().await;
    let gate = Gate::new(Arc::new(common::FixedAsr("the client agrees a savings plan")), true);
    edges.ensure_topics(&["transcriber"]).await.unwrap();
    let t = opptak::app::transcriber_with(&edges, Some(gate.clone())).unwrap();
    let mut live = opptak_ki::live::Live::new(t.clone(), None);
    live.queue_max = 1;
    let live = Arc::new(live);
    let (stop, rx) = tokio::sync::watch::channel(false);
    let topic = edges.config.recorder_config().topics.telephony;
    let role = {
        let (live, group) = (live.clone(), common::unique("live"));
        tokio::spawn(async move { opptak_ki::live::run_role(live, &group, &topic, rx).await })
    };
    let recorder = RunningRecorder::spawn(edges.recorder());
    let sample = opptak::demo::samples(&opptak::demo::default_samples_dir())
        .unwrap()
        .into_iter()
        .find(|s| s.call.call_id == "demo-0003")
        .unwrap();
    let id = CallId::parse(&sample.call.call_id).unwrap();
    play(&edges, &sample.call.events(100)).await;
    wait_until("the call handed to the batch path", 60, || async {
        live.stats().ends.iter().any(|(c, _)| *c == id.to_string())
    })
    .await;
    let ends = live.stats().ends;
    assert!(
        ends.iter()
            .any(|(c, e)| *c == id.to_string()
                && matches!(e, LiveEnd::Abandoned(why) if why.contains("live queue is full"))),
        "{ends:?}"
    );
    assert!(
        gate.started.load(Ordering::SeqCst) <= 1,
        "never more in the queue than its bound"
    );
    assert_eq!(live.stats().utterances_sent, 1);
    gate.hold.store(false, Ordering::SeqCst);
    gate.release.notify_waiters();
    wait_for_recordings(&edges, 1, 60).await;
    let _ = stop.send(true);
    role.await.unwrap().unwrap();
    recorder.stop().await.unwrap();
    assert!(matches!(
        t.transcribe_call(&id).await.unwrap(),
        opptak_ki::transcribe::Outcome::Done { .. }
    ));
    assert!(has_artifact(&edges, &id, "transcript").await);
}
