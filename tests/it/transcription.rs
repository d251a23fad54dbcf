//! Transcribing KI calls with the real speech model (faster-whisper, Whisper
//! tiny.en, served by deploy/speech/server.py, started by services.sh) on the
//! espeak-ng sample calls: transcripts close to the scripts (word error rate),
//! stored and published only sealed under the call's `ki` key; non-KI calls
//! untouched; an opted-out call never sent and its `ki` key shredded; a
//! recognizer that is down leaves calls pending, and they complete when it
//! is back — none lost.

use crate::common;

use common::{wait_for_recordings, Backend, Env};
use opptak::app::{Edges, RunningRecorder};
use opptak_domain::model::CallId;
use opptak_ki::asr::{AsrConfig, HttpAsr, SpeechRecognizer};
use opptak_ki::transcribe::{read_transcript, Outcome, Transcriber};
use std::sync::Arc;
use std::time::Duration;

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_owned).collect()
}

fn asr(url: &str) -> Arc<dyn SpeechRecognizer> {
    let mut cfg = AsrConfig::new(url, "tiny.en");
    cfg.timeout = Duration::from_secs(60);
    cfg.retries = 1;
    cfg.backoff = Duration::from_millis(100);
    cfg.breaker_failures = 3;
    cfg.breaker_cooldown = Duration::from_secs(1);
    Arc::new(HttpAsr::new(cfg).unwrap())
}

fn transcriber(edges: &Edges, asr: Arc<dyn SpeechRecognizer>) -> Transcriber {
    Transcriber {
        vault: edges.vault(),
        bus: edges.bus.clone(),
        asr,
        retention: edges.retention(),
        topic: format!("{}opptak.transcripts.v1", edges.config.bus.topic_prefix),
        vad: match std::env::var("OPPTAK_TEST_VAD_WHOLE") {
            Ok(_) => opptak_domain::vad::VadConfig {
                hangover_ms: 60_000,
                max_utterance_ms: 120_000,
                ..Default::default()
            },
            Err(_) => Default::default(),
        },
        language: Some("en".into()),
        listener: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_calls_are_transcribed_close_to_their_scripts() {
    let Some(url) = common::speech_url() else { return };
    let env = Env::new(&Backend::Embedded, "asr");
    let edges = env.edges().await;
    edges
        .bus
        .create_topic(&format!("{}opptak.transcripts.v1", edges.config.bus.topic_prefix), 4)
        .await
        .unwrap();
    let recorder = RunningRecorder::spawn(edges.recorder());
    let mut samples = opptak::demo::samples(&opptak::demo::default_samples_dir()).unwrap();
    // Every sample a KI call, except the last (not informed) and one that opts out.
    for (i, s) in samples.iter_mut().enumerate() {
        s.call.started.ki_enabled = true;
        s.call.started.customer_informed = i + 1 != 5;
        s.call.opt_out_at_ms = if i == 3 { Some(4_000) } else { None };
    }
    for s in &samples {
        common::publish_events(&edges, &s.call.events(100)).await;
    }
    wait_for_recordings(&edges, samples.len(), 120).await;
    recorder.stop().await.unwrap();

    // The recognizer is down: the KI calls stay pending, nothing stored.
    let down = transcriber(&edges, asr("http://127.0.0.1:9"));
    let first = CallId::parse(&samples[0].call.call_id).unwrap();
    assert!(matches!(
        down.transcribe_call(&first).await.unwrap(),
        Outcome::Pending(_)
    ));
    assert!(read_transcript(&edges.vault(), &first).await.is_err());

    // Back up: every call completes.
    let t = transcriber(&edges, asr(&url));
    let (mut errors, mut total) = (0usize, 0usize);
    for (i, s) in samples.iter().enumerate() {
        let id = CallId::parse(&s.call.call_id).unwrap();
        let outcome = t.transcribe_call(&id).await.unwrap();
        match i {
            3 => {
                assert_eq!(outcome, Outcome::OptedOut);
                let key = edges.meta.class_key(&id, "ki").await.unwrap();
                assert!(key.is_none() || key.unwrap().destroyed_at_us.is_some());
                continue;
            }
            4 => {
                assert_eq!(outcome, Outcome::NotKi);
                continue;
            }
            _ => assert!(matches!(outcome, Outcome::Done { .. }), "{outcome:?}"),
        }
        assert_eq!(t.transcribe_call(&id).await.unwrap(), Outcome::AlreadyDone);
        let segs = read_transcript(&edges.vault(), &id).await.unwrap();
        // Speakers are the channels: the agent's words on the agent channel.
        let said = |who: &str| -> Vec<String> {
            s.script
                .iter()
                .filter_map(|l| l.strip_prefix(&format!("{who}: ")))
                .flat_map(words)
                .collect()
        };
        for who in ["agent", "customer"] {
            let heard: String = segs
                .iter()
                .filter(|g| g.speaker == who)
                .map(|g| g.text.as_str())
                .collect::<Vec<_>>()
                .join(" ");
            let want = said(who).join(" ");
            let (e, n) = opptak_ki::asr::word_errors(&want, &heard);
            errors += e;
            total += n;
        }
        assert!(segs.windows(2).all(|w| w[0].start_s <= w[1].start_s));
    }
    let wer = errors as f64 / total as f64;
    println!("word error rate over {total} words: {wer:.3}");
    // Whisper tiny.en on these 8 kHz G.711 espeak-ng samples measures about
    // 0.4 here, whole channel or cut by the VAD alike (numbers normalised):
    // the limit is the narrowband audio, not the cutting (the 16 kHz corpus of
    // tests/ki_corpus meets 0.15; docs/design/ki-path.md, "Measured").
    assert!(wer <= 0.5, "word error rate {wer:.3}");
}

/// The real recognizer, and on its first utterance the customer opts out of
/// KI: the opt-out is published and stored before the utterance is answered.
struct OptsOutMidway {
    real: Arc<dyn SpeechRecognizer>,
    edges: Edges,
    call: CallId,
    calls: std::sync::atomic::AtomicU64,
}

#[async_trait::async_trait]
impl SpeechRecognizer for OptsOutMidway {
    async fn transcribe(
        &self,
        u: &opptak_ki::asr::Utterance,
    ) -> Result<opptak_ki::asr::Transcript, opptak_ki::asr::AsrError> {
        use std::sync::atomic::Ordering;
        if self.calls.fetch_add(1, Ordering::SeqCst) == 0 {
            let opt_out = opptak_proto::v1::TelephonyEvent {
                call_id: self.call.to_string(),
                event: Some(opptak_proto::v1::telephony_event::Event::KiOptOut(
                    opptak_proto::v1::KiOptOut {
                        requested_by: "customer".into(),
                        at: None,
                        offset: None,
                    },
                )),
            };
            common::publish_events(&self.edges, &[opt_out]).await;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            while self
                .edges
                .meta
                .load_call(&self.call)
                .await
                .unwrap()
                .unwrap()
                .opt_out
                .is_none()
            {
                assert!(tokio::time::Instant::now() < deadline, "opt-out never stored");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        self.real.transcribe(u).await
    }
    fn describe(&self) -> String {
        format!("opt-out midway in front of {}", self.real.describe())
    }
}

/// A customer who opts out while the batch transcriber works on their call
/// (issue 15, finding 6): no further utterance reaches the recognizer,
/// nothing is stored, the call's KI key is shredded. The old main went on
/// through every utterance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opt_out_during_transcription_stops_it_at_the_next_utterance() {
    let Some(url) = common::speech_url() else { return };
    use std::sync::atomic::Ordering;
    let env = Env::new(&Backend::Embedded, "asr_optout");
    let edges = env.edges().await;
    let topic = format!("{}opptak.transcripts.v1", edges.config.bus.topic_prefix);
    edges.bus.create_topic(&topic, 4).await.unwrap();
    let recorder = RunningRecorder::spawn(edges.recorder());
    let mut sample = opptak::demo::samples(&opptak::demo::default_samples_dir())
        .unwrap()
        .remove(0);
    sample.call.started.ki_enabled = true;
    sample.call.started.customer_informed = true;
    sample.call.opt_out_at_ms = None;
    common::publish_events(&edges, &sample.call.events(100)).await;
    wait_for_recordings(&edges, 1, 120).await;
    let id = CallId::parse(&sample.call.call_id).unwrap();
    let asr = Arc::new(OptsOutMidway {
        real: asr(&url),
        edges: edges.clone(),
        call: id.clone(),
        calls: 0.into(),
    });
    let t = transcriber(&edges, asr.clone());
    assert_eq!(t.transcribe_call(&id).await.unwrap(), Outcome::OptedOut);
    recorder.stop().await.unwrap();
    assert_eq!(asr.calls.load(Ordering::SeqCst), 1, "one utterance, then no more");
    assert!(read_transcript(&edges.vault(), &id).await.is_err());
    assert!(!edges
        .meta
        .artifacts(&id)
        .await
        .unwrap()
        .iter()
        .any(|a| a.kind == "transcript"));
    let key = edges.meta.class_key(&id, "ki").await.unwrap();
    assert!(key.is_none() || key.unwrap().destroyed_at_us.is_some());
}

/// Stands in for a speech server that is down until `up` is set, then passes
/// every utterance to the real one.
struct Outage {
    real: Arc<dyn SpeechRecognizer>,
    up: std::sync::atomic::AtomicBool,
    refused: std::sync::atomic::AtomicU64,
}

#[async_trait::async_trait]
impl SpeechRecognizer for Outage {
    async fn transcribe(
        &self,
        u: &opptak_ki::asr::Utterance,
    ) -> Result<opptak_ki::asr::Transcript, opptak_ki::asr::AsrError> {
        use std::sync::atomic::Ordering;
        if !self.up.load(Ordering::SeqCst) {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return Err(opptak_ki::asr::AsrError::Unavailable("speech server stopped".into()));
        }
        self.real.transcribe(u).await
    }
    fn describe(&self) -> String {
        format!("outage in front of {}", self.real.describe())
    }
}

/// The transcriber role during a speech-server outage: the KI calls go
/// pending, nothing is stored or acknowledged, and when the server is back
/// every one of them is transcribed — none lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_transcriber_role_waits_out_an_outage() {
    let Some(url) = common::speech_url() else { return };
    use std::sync::atomic::Ordering;
    let env = Env::new(&Backend::Embedded, "asr_role");
    let edges = env.edges().await;
    let topic = format!("{}opptak.transcripts.v1", edges.config.bus.topic_prefix);
    edges.bus.create_topic(&topic, 4).await.unwrap();
    let outage = Arc::new(Outage {
        real: asr(&url),
        up: false.into(),
        refused: 0.into(),
    });
    let t = Arc::new(transcriber(&edges, outage.clone()));
    let (stop, rx) = tokio::sync::watch::channel(false);
    let recordings = edges.config.recorder_config().topics.recordings;
    let role = tokio::spawn({
        let t = t.clone();
        let group = common::unique("transcriber");
        async move { opptak_ki::transcribe::run_role(t, &group, &recordings, None, rx).await }
    });
    let recorder = RunningRecorder::spawn(edges.recorder());
    let mut samples = opptak::demo::samples(&opptak::demo::default_samples_dir()).unwrap();
    samples.truncate(3);
    for s in samples.iter_mut() {
        s.call.started.ki_enabled = true;
        s.call.started.customer_informed = true;
        s.call.opt_out_at_ms = None;
        common::publish_events(&edges, &s.call.events(100)).await;
    }
    wait_for_recordings(&edges, samples.len(), 120).await;
    // Down: the role keeps trying, nothing is stored.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while outage.refused.load(Ordering::SeqCst) < 2 {
        assert!(tokio::time::Instant::now() < deadline, "the role never tried");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for s in &samples {
        let id = CallId::parse(&s.call.call_id).unwrap();
        assert!(read_transcript(&edges.vault(), &id).await.is_err());
    }
    // Back: every call completes.
    outage.up.store(true, Ordering::SeqCst);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    for s in &samples {
        let id = CallId::parse(&s.call.call_id).unwrap();
        loop {
            if read_transcript(&edges.vault(), &id).await.is_ok() {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} never transcribed",
                s.call.call_id
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    stop.send(true).unwrap();
    assert_eq!(role.await.unwrap().unwrap(), samples.len() as u64);
    recorder.stop().await.unwrap();
}
