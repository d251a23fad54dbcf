//! Issue 16, section 8: KI under overload.
//!
//! - A batch KI role whose work is held longer than its consumer's
//!   `max.poll.interval.ms` stays in its group (it polls with its input
//!   paused while it waits) and goes on with the next record: nothing lost,
//!   nothing twice.
//! - The live path sends the queued utterances of a call that has ended to
//!   speech recognition before those of calls still in progress.

use crate::common;

use common::webdriver::wait_until;
use common::{has_artifact, wait_for_recordings, Backend, Env};
use opptak::app::RunningRecorder;
use opptak::sim::SimCall;
use opptak_domain::model::{CallId, Codec};
use opptak_ki::asr::{AsrError, SpeechRecognizer, Transcript, Utterance};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A recognizer that notes every request (the first sample of its audio)
/// and answers it only once a turn is given ([`Turnstile::turn`]), or at
/// once after [`Turnstile::open`].
struct Turnstile {
    turns: tokio::sync::Semaphore,
    log: Mutex<Vec<Vec<u8>>>,
}

impl Turnstile {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            turns: tokio::sync::Semaphore::new(0),
            log: Mutex::default(),
        })
    }

    /// The audio of every request so far, in the order they reached it.
    fn log(&self) -> Vec<Vec<u8>> {
        self.log.lock().unwrap().clone()
    }

    /// Lets one held request answer.
    fn turn(&self) {
        self.turns.add_permits(1);
    }

    /// Lets every request answer from now on.
    fn open(&self) {
        self.turns.add_permits(tokio::sync::Semaphore::MAX_PERMITS / 2);
    }
}

#[async_trait::async_trait]
impl SpeechRecognizer for Turnstile {
    async fn transcribe(&self, u: &Utterance) -> Result<Transcript, AsrError> {
        self.log.lock().unwrap().push(u.pcm16.clone());
        if let Ok(turn) = self.turns.acquire().await {
            turn.forget();
        }
        common::FixedAsr("the customer asks about a mortgage")
            .transcribe(u)
            .await
    }
    fn describe(&self) -> String {
        "turnstile test recognizer".into()
    }
}

fn ki_call(mut c: SimCall) -> SimCall {
    c.started.ki_enabled = true;
    c.started.customer_informed = true;
    c
}

/// On the old main the batch transcriber did not poll while it waited for
/// a call's speech requests: past `max.poll.interval.ms` librdkafka put it
/// out of its group, its next poll failed and the role ended (in
/// production: the whole process, recorder included). Here its consumer
/// has a 10 s interval and the recognizer holds the first request 16 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_role_held_past_its_poll_interval_stays_in_its_group() {
    let Some(kafka) = common::kafka() else { return };
    let Some(postgres) = common::postgres_db("ki_held").await else {
        return;
    };
    let env = Env::new(
        &Backend::Services {
            kafka: kafka.clone(),
            postgres,
        },
        "ki_held",
    );
    let edges = env.edges().await;
    edges.ensure_topics(&["transcriber"]).await.unwrap();
    let calls: Vec<SimCall> = common::mixed_calls(&common::unique("held"), 3)
        .into_iter()
        .map(ki_call)
        .collect();
    let ids: Vec<CallId> = calls.iter().map(|c| CallId::parse(&c.call_id).unwrap()).collect();
    let recorder = RunningRecorder::spawn(edges.recorder());
    for c in &calls[..2] {
        common::publish_events(&edges, &c.events(100)).await;
    }
    wait_for_recordings(&edges, 2, 60).await;

    // The transcriber's consumer: put out of its group after 10 s without a poll.
    let options = opptak_bus::kafka::KafkaOptions {
        extra: vec![
            ("max.poll.interval.ms".into(), "10000".into()),
            ("session.timeout.ms".into(), "6000".into()),
        ],
        ..Default::default()
    };
    let bus: Arc<dyn opptak_bus::Bus> = Arc::new(opptak_bus::kafka::KafkaBus::new(&kafka, options).unwrap());
    let asr = Turnstile::new();
    let base = opptak::app::transcriber_with(&edges, Some(asr.clone())).unwrap();
    let t = Arc::new(opptak_ki::transcribe::Transcriber {
        vault: edges.vault(),
        bus,
        asr: asr.clone(),
        retention: edges.retention(),
        topic: base.topic.clone(),
        vad: base.vad,
        language: base.language.clone(),
        listener: None,
    });
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let topic = edges.config.recorder_config().topics.recordings;
    let role = tokio::spawn(async move {
        opptak_ki::transcribe::run_role(t, &common::unique("transcriber"), &topic, None, shutdown).await
    });
    wait_until("the first speech request", Duration::from_secs(60), || async {
        (!asr.log().is_empty()).then_some(())
    })
    .await;
    // Held: longer than the poll interval, and the time librdkafka takes to notice.
    tokio::time::sleep(Duration::from_secs(16)).await;
    assert!(
        !role.is_finished(),
        "the role ended while its work was held: {:?}",
        role.await
    );
    asr.open();
    for id in &ids[..2] {
        wait_until("the held calls transcribed", Duration::from_secs(60), || async {
            has_artifact(&edges, id, "transcript").await.then_some(())
        })
        .await;
    }
    // Still in its group: a recording stored after the hold is transcribed too.
    common::publish_events(&edges, &calls[2].events(100)).await;
    // Generous: under the full suite's load a rejoin after a missed
    // heartbeat (session.timeout.ms is 6 s here) can take tens of seconds.
    wait_until("the next call transcribed", Duration::from_secs(180), || async {
        (has_artifact(&edges, &ids[2], "transcript").await || role.is_finished()).then_some(())
    })
    .await;
    assert!(!role.is_finished(), "the role ended: {:?}", role.await);
    let _ = stop.send(true);
    role.await.unwrap().unwrap();
    recorder.stop().await.unwrap();
    // Each utterance of each call reached the recognizer once.
    let log = asr.log();
    let distinct: std::collections::HashSet<&Vec<u8>> = log.iter().collect();
    assert_eq!(distinct.len(), log.len(), "an utterance was sent twice");
}

/// A stereo L16 call of `seconds` whose every sample is even (`odd`
/// false) or odd: the recognizer tells the two calls' utterances apart by
/// their first sample. Between turns it is silent, so the voice activity
/// detector cuts an utterance per turn while the call runs.
fn marked_call(id: &str, seconds: f64, seed: u64, odd: bool) -> SimCall {
    let c = SimCall::synthetic(id, Codec::L16, 2, seconds, seed);
    let pcm: Vec<i16> = c
        .expected_pcm()
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .map(|s| if s.unsigned_abs() < 1000 { 0 } else { s })
        .map(|s| if odd { s | 1 } else { s & !1 })
        .collect();
    ki_call(SimCall::new(
        id,
        c.format.clone(),
        opptak::sim::encode_pcm(Codec::L16, &pcm),
    ))
}

fn is_odd(pcm16: &[u8]) -> bool {
    pcm16.first().is_some_and(|b| b & 1 == 1)
}

/// With one recognizer slot, call A (in progress) has utterances queued
/// before call B plays to its end. Each slot freed goes to B's utterances
/// until none is left, then to A's: B's transcript is stored while A still
/// runs. On the old main every utterance went to the recognizer in the
/// order it was cut, so A's queued utterances went first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_utterances_of_an_ended_call_are_recognized_first() {
    let env = Env::new(&Backend::Embedded, "ended_first");
    let edges = env.edges().await;
    edges.ensure_topics(&["transcriber"]).await.unwrap();
    let asr = Turnstile::new();
    let t = opptak::app::transcriber_with(&edges, Some(asr.clone())).unwrap();
    let live = Arc::new(opptak_ki::live::Live::new(t, None).with_slots(1, true));
    let (stop, role) = common::spawn_live_role(&edges, &live);
    let recorder = RunningRecorder::spawn(edges.recorder());
    let prefix = common::unique("order");
    let a = marked_call(&format!("{prefix}-a"), 9.37, 11, false);
    let b = marked_call(&format!("{prefix}-b"), 4.37, 12, true);
    let (a_id, b_id) = (CallId::parse(&a.call_id).unwrap(), CallId::parse(&b.call_id).unwrap());
    let waiting_of = |id: &CallId| live.waiting().iter().filter(|(c, _)| c == id).count();

    // A runs: its first utterance holds the slot, more of its wait.
    let mut a_events = a.events(100);
    let a_end = a_events.pop().unwrap();
    common::publish_events(&edges, &a_events).await;
    wait_until("utterances of A waiting", Duration::from_secs(60), || async {
        (asr.log().len() == 1 && waiting_of(&a_id) >= 1).then_some(())
    })
    .await;
    // B plays to its end; all its utterances wait, behind A's.
    common::publish_events(&edges, &b.events(100)).await;
    wait_until("B ended with utterances waiting", Duration::from_secs(60), || async {
        live.waiting()
            .iter()
            .any(|(c, ended)| *c == b_id && *ended)
            .then_some(())
    })
    .await;
    let b_queued = waiting_of(&b_id);
    // The recorder has the calls (their KI keys hang off their rows).
    for id in [&a_id, &b_id] {
        wait_until("the call recorded", Duration::from_secs(60), || async {
            edges.meta.load_call(id).await.unwrap().map(|_| ())
        })
        .await;
    }

    // One slot at a time, until nothing waits and the last answer is in.
    while !live.waiting().is_empty() {
        let sent = asr.log().len();
        asr.turn();
        wait_until("the next request", Duration::from_secs(60), || async {
            (asr.log().len() > sent).then_some(())
        })
        .await;
    }
    asr.turn();
    let log = asr.log();
    let order: String = log.iter().map(|u| if is_odd(u) { 'B' } else { 'A' }).collect();
    assert_eq!(
        order,
        format!("A{}{}", "B".repeat(b_queued), "A".repeat(log.len() - 1 - b_queued)),
        "the order requests reached the recognizer in; {:?}",
        live.stats().ends
    );
    assert!(log.len() > 1 + b_queued, "no utterance of A waited: {order}");
    wait_until("B's transcript", Duration::from_secs(60), || async {
        has_artifact(&edges, &b_id, "transcript").await.then_some(())
    })
    .await;
    assert!(!has_artifact(&edges, &a_id, "transcript").await, "A has not ended");

    // A ends; its transcript follows.
    asr.open();
    common::publish_events(&edges, &[a_end]).await;
    wait_until("A's transcript", Duration::from_secs(60), || async {
        has_artifact(&edges, &a_id, "transcript").await.then_some(())
    })
    .await;
    wait_for_recordings(&edges, 2, 60).await;
    let _ = stop.send(true);
    role.await.unwrap().unwrap();
    recorder.stop().await.unwrap();
}
