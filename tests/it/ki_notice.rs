//! Issue 16, section 6: "Kunden får beskjed når KI benyttes". A KI call
//! whose customer is told only during the call (a `KiNotice`, here the IVR's
//! announcement) is spoken to before the notice ("purple elephants dance on
//! Thursday morning") and after it. With the real speech model
//! (faster-whisper, deploy/speech/server.py), on the live path and on the
//! batch path, the transcript holds what was said after the notice and
//! nothing said before it; the notice is the call's evidence (its metadata,
//! the disclosure package's manifest); a notice that comes before its call's
//! start is kept for the call, one after its end is dead-lettered. On the old
//! main there was no such event: KI heard the call from its first second or,
//! without `customer_informed`, not at all.

use crate::common;
use crate::ki_pipeline::{asr, wait_until};

use common::{has_artifact, speech_url, wait_for_recordings, Backend, Env};
use opptak::app::{Edges, RunningKi, RunningRecorder};
use opptak::sim::SimCall;
use opptak_domain::model::{AudioFormat, CallId, ChannelRole, Codec, KiNoticeMethod};
use opptak_ki::live::LiveEnd;
use opptak_ki::transcribe::{read_transcript, Outcome};
use opptak_proto::v1::telephony_event::Event;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const RATE: u32 = 16_000;
const BEFORE: &str = "Purple elephants dance on Thursday morning.";
const SECRET: [&str; 3] = ["purple", "elephant", "thursday"];
const AFTER: &str = "I would like to open a savings account for my daughter.";

/// `text` spoken by espeak-ng, as 16 kHz mono PCM16.
fn speech(dir: &Path, text: &str) -> Vec<i16> {
    common::espeak(dir, text, "en-us+m3", 150, RATE)
}

/// A KI call without `customer_informed`: 0.3 s of silence, the words
/// before the notice, 1.2 s of silence with the notice complete 0.4 s into
/// it, the words after. Returns the call and the notice's offset (ms).
fn told_mid_call(dir: &Path, call_id: &str) -> (SimCall, u64) {
    let ms = |n: u64| vec![0i16; (n * u64::from(RATE) / 1000) as usize];
    let mut pcm = ms(300);
    pcm.extend(speech(dir, BEFORE));
    let notice_ms = pcm.len() as u64 * 1000 / u64::from(RATE) + 400;
    pcm.extend(ms(1200));
    pcm.extend(speech(dir, AFTER));
    pcm.extend(ms(500));
    let format = AudioFormat::new(Codec::L16, RATE, vec![ChannelRole::Mixed]).unwrap();
    let mut call = SimCall::new(call_id, format, opptak::sim::encode_pcm(Codec::L16, &pcm));
    call.started.ki_enabled = true;
    call.started.customer_informed = false;
    call.ki_notice_at_ms = Some(notice_ms);
    (call, notice_ms)
}

/// The transcript's text, checked: nothing from before the notice (in words
/// or in time), the words after it there.
async fn assert_heard_from_notice(edges: &Edges, id: &CallId, notice_ms: u64) {
    let segs = read_transcript(&edges.vault(), id).await.unwrap();
    let text = segs.iter().map(|s| s.text.to_lowercase()).collect::<Vec<_>>().join(" ");
    for w in SECRET {
        assert!(!text.contains(w), "{id}: {w:?} was said before the notice: {text:?}");
    }
    assert!(
        text.contains("saving"),
        "{id}: the words after the notice are missing: {text:?}"
    );
    for s in &segs {
        assert!(
            s.start_s * 1000.0 >= notice_ms as f32 - 1.0,
            "{id}: {s:?} starts before the notice"
        );
    }
}

/// The live path: one call told mid-call, one whose notice came before its
/// `CallStarted` (producers race: kept for the call, not dead-lettered), and
/// a notice after a call's end (dead-lettered, `AFTER_END`). Both calls are
/// transcribed live from the notice on; the KI audio copy is silent before
/// it, the recording whole; the notice is in the call's metadata and in the
/// disclosure package.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speech_before_the_ki_notice_never_reaches_live_speech_recognition() {
    let Some(url) = speech_url() else { return };
    let env = Env::new(&Backend::Embedded, "ki_notice_live");
    let edges = env.edges().await;
    let recorder = RunningRecorder::spawn(edges.recorder());
    let ki = RunningKi::spawn(&edges, true, false, Some(asr(&url))).await.unwrap();
    let live = ki.live.clone().unwrap();
    let prefix = common::unique("told");
    let (mid, notice_ms) = told_mid_call(env.dir.path(), &format!("{prefix}-mid"));
    let (mut early, _) = told_mid_call(env.dir.path(), &format!("{prefix}-early"));
    let ids: Vec<CallId> = [&mid, &early]
        .iter()
        .map(|c| CallId::parse(&c.call_id).unwrap())
        .collect();

    common::publish_events(&edges, &mid.events(100)).await;
    // The notice first, then the call (its offset is the same).
    let notice = early.ki_notice(notice_ms);
    early.ki_notice_at_ms = None;
    let mut events = early.events(100);
    assert!(matches!(events[0].event, Some(Event::CallStarted(_))));
    events.insert(0, notice);
    common::publish_events(&edges, &events).await;
    wait_for_recordings(&edges, 2, 60).await;
    for id in &ids {
        wait_until(&format!("the transcript of {id}"), 300, || {
            has_artifact(&edges, id, "transcript")
        })
        .await;
        wait_until(&format!("the KI copy of {id}"), 60, || {
            has_artifact(&edges, id, "ki-audio")
        })
        .await;
    }
    // After the end: refused.
    common::publish_events(&edges, &[mid.ki_notice(notice_ms)]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let ends = live.stats().ends;
    ki.stop().await;
    let stats = recorder.stop().await.unwrap();
    assert_eq!(stats.dead_letters, 1, "only the notice after the end is refused");

    let notice_frame = notice_ms * u64::from(RATE) / 1000;
    for (id, call) in ids.iter().zip([&mid, &early]) {
        assert!(
            ends.iter()
                .any(|(c, e)| c == id.as_str() && matches!(e, LiveEnd::Stored { .. })),
            "{id} not transcribed live: {ends:?}"
        );
        assert_heard_from_notice(&edges, id, notice_ms).await;
        let rec = edges.meta.load_call(id).await.unwrap().unwrap();
        let n = rec.facts.ki_notice.clone().expect("the notice is the call's");
        assert_eq!(
            (n.offset_us, n.method),
            (notice_ms * 1000, KiNoticeMethod::IvrAnnouncement)
        );
        assert_eq!(n.announcement_id, "ivr-ki-notice-1");
        assert!(
            edges.meta.early_ki_notice(id).await.unwrap().is_none(),
            "the early notice is applied"
        );
        // The KI copy holds nothing from before the notice; the recording is whole.
        let ki_copy = edges.vault().read_artifact(id, opptak_vault::Which::Ki).await.unwrap();
        let head = &ki_copy.pcm[..(notice_frame as usize * 2)];
        assert!(
            head.iter().all(|b| *b == 0),
            "{id}: the KI copy holds audio from before the notice"
        );
        assert_eq!(ki_copy.pcm.len(), call.expected_pcm().len());
        let whole = edges.vault().read_recording(id).await.unwrap();
        assert!(whole.pcm == call.expected_pcm(), "{id}: the recording is not whole");
    }

    // The evidence goes out with the call: metadata and the package's manifest.
    let identity = age::x25519::Identity::generate();
    let req = opptak_compliance::disclose::Request {
        call_id: ids[0].clone(),
        recipient: "Finansklagenemnda".into(),
        recipient_key: identity.to_public().to_string(),
        case_ref: "FKN-2026-0311".into(),
        disclosed_by: "co-anne".into(),
        reason: "complaint: the customer says KI was not announced".into(),
    };
    let pkg = opptak_compliance::disclose::build(&edges.compliance(), &req, &mut |_| {})
        .await
        .unwrap();
    let plain = age::decrypt(&identity, &pkg.encrypted).unwrap();
    let mut files = std::collections::BTreeMap::new();
    for e in tar::Archive::new(plain.as_slice()).entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().display().to_string();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        files.insert(name, data);
    }
    let manifest: serde_json::Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    let metadata: serde_json::Value = serde_json::from_slice(&files["metadata.json"]).unwrap();
    // And to the customer, in the data-subject export.
    let out = env.dir.path().join("export");
    opptak_compliance::subject::export(
        &edges.compliance(),
        "co-anne",
        &mid.started.customer_ref,
        &out,
        &mut |_| {},
    )
    .await
    .unwrap();
    let exported: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join(ids[0].as_str()).join("metadata.json")).unwrap()).unwrap();
    for notice in [
        &manifest["ki_notice"],
        &metadata["call"]["ki_notice"],
        &exported["call"]["ki_notice"],
    ] {
        assert_eq!(notice["method"], "ivr_announcement", "{notice:#}");
        assert_eq!(notice["announcement_id"], "ivr-ki-notice-1");
        assert_eq!(notice["from_audio_second"].as_f64().unwrap(), notice_ms as f64 / 1000.0);
        assert!(
            notice["summary"].as_str().unwrap().contains("ivr announcement"),
            "{notice:#}"
        );
    }
}

/// The batch path, from the stored recording (no KI copy: compaction off):
/// the transcript starts at the notice. A KI call neither informed at its
/// start nor told during it gets no KI at all, as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speech_before_the_ki_notice_never_reaches_batch_speech_recognition() {
    let Some(url) = speech_url() else { return };
    let env = Env::new(&Backend::Embedded, "ki_notice_batch");
    let edges = env.edges().await;
    let mut cfg = edges.config.recorder_config();
    cfg.compact = false;
    let recorder = RunningRecorder::spawn(
        opptak_recorder::Recorder::new(edges.bus.clone(), edges.vault(), cfg).with_policy(edges.policy.clone()),
    );
    let prefix = common::unique("batch");
    let (told, notice_ms) = told_mid_call(env.dir.path(), &format!("{prefix}-told"));
    let (mut never, _) = told_mid_call(env.dir.path(), &format!("{prefix}-never"));
    never.ki_notice_at_ms = None;
    for c in [&told, &never] {
        common::publish_events(&edges, &c.events(100)).await;
    }
    wait_for_recordings(&edges, 2, 60).await;
    let stats = recorder.stop().await.unwrap();
    assert_eq!(stats.dead_letters, 0);

    edges.ensure_topics(&["transcriber"]).await.unwrap();
    let t = opptak::app::transcriber_with(&edges, Some(asr(&url))).unwrap();
    let id = CallId::parse(&told.call_id).unwrap();
    assert!(
        !has_artifact(&edges, &id, "ki-audio").await,
        "read from the recording itself"
    );
    assert!(matches!(t.transcribe_call(&id).await.unwrap(), Outcome::Done { .. }));
    assert_heard_from_notice(&edges, &id, notice_ms).await;

    let never = CallId::parse(&never.call_id).unwrap();
    assert_eq!(t.transcribe_call(&never).await.unwrap(), Outcome::NotKi);
    assert!(edges.meta.class_key(&never, "ki").await.unwrap().is_none());
    let rec = edges.meta.load_call(&never).await.unwrap().unwrap();
    assert!(rec.facts.ki_notice.is_none() && !rec.facts.ki_active());
}

/// The notice is kept with the recording: while any recording or copy of
/// the call is kept (here the 30-day KI copy after the 24-hour recording
/// went), and no longer once the last is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ki_notice_goes_when_the_recording_goes() {
    use opptak_domain::time::{Clock, ManualClock};
    use std::sync::atomic::AtomicBool;
    const SEC: i64 = 1_000_000;
    const DAY: i64 = 86_400 * SEC;
    let base = (opptak_domain::time::SystemClock.now_us() / SEC) * SEC;
    let env = Env::new(&Backend::Embedded, "ki_notice_retention");
    let clock = Arc::new(ManualClock::new(base + 20 * SEC));
    let clock_dyn: Arc<dyn Clock> = clock.clone();
    let edges = env.edges().await.with_clock(clock_dyn).unwrap();
    let recorder = RunningRecorder::spawn(edges.recorder());
    let mut call = SimCall::synthetic(&common::unique("told-kept"), Codec::Pcma, 2, 1.0, 5);
    call.started.ki_enabled = true;
    call.ki_notice_at_ms = Some(400);
    common::publish_events(&edges, &call.events(100)).await;
    wait_for_recordings(&edges, 1, 60).await;
    let id = CallId::parse(&call.call_id).unwrap();
    wait_until("the KI copy", 60, || has_artifact(&edges, &id, "ki-audio")).await;
    recorder.stop().await.unwrap();
    let notice = |edges: &Edges| {
        let (edges, id) = (edges.meta.clone(), id.clone());
        async move { edges.load_call(&id).await.unwrap().unwrap().facts.ki_notice }
    };
    assert_eq!(notice(&edges).await.unwrap().offset_us, 400_000);

    let sweep = |at: i64| {
        clock.set(at);
        let r = edges.retention();
        async move { r.sweep(500, &AtomicBool::new(false), |_| {}).await.unwrap() }
    };
    // +2 days: the recording is gone, the KI copy (30 days) and the notice stay.
    assert_eq!(sweep(base + 2 * DAY).await.deleted, 1);
    assert!(
        notice(&edges).await.is_some(),
        "the notice went before the KI copy it explains"
    );
    // +31 days: the last copy is gone, and the notice with it.
    assert_eq!(sweep(base + 31 * DAY).await.deleted, 1);
    let rec = edges.meta.load_call(&id).await.unwrap().unwrap();
    assert!(rec.facts.ki_notice.is_none(), "the notice outlived the recording");
    assert_eq!(rec.facts.customer_ref, "");
}
