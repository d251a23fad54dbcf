//! Issue 19, section 4: the reference producer for telephony teams
//! (`examples/python-producer/play_call.py`, confluent-kafka, classes
//! generated from `proto/`) kept working against the real broker. It plays
//! WAV files as calls to the recorder: each stored recording is
//! sample-identical to the file's G.711 (or L16) encoding, the call's facts
//! are what it sent (desk, service, KI notice and opt-out, channel roles),
//! the ending is clean (no gap, `last_sequence` the last chunk), and every
//! message is keyed by the call id on the partition a Java producer picks.
//! A message too large for the contract or the topic is refused before
//! anything is produced. The producer runs in the venv `services.sh`
//! installs (`OPPTAK_TEST_PRODUCER_PYTHON`).

use crate::common;

use common::{wait_for_recordings, Backend, Env};
use opptak::app::RunningRecorder;
use opptak_domain::model::{AudioFormat, CallId, ChannelRole, Codec, KiNoticeMethod};
use opptak_domain::{Desk, ServiceCategory};
use opptak_proto::v1::{self, telephony_event::Event};
use opptak_proto::Message;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

const PARTITIONS: i32 = 4;

/// The example's Python and the real services, or None (skip).
async fn setup(name: &str) -> Option<(String, Backend)> {
    let python = match std::env::var("OPPTAK_TEST_PRODUCER_PYTHON") {
        Ok(p) => p,
        Err(_) => return common::skip("OPPTAK_TEST_PRODUCER_PYTHON not set (run deploy/local/services.sh start)"),
    };
    let kafka = common::kafka()?;
    let postgres = common::postgres_db(name).await?;
    Some((python, Backend::Services { kafka, postgres }))
}

/// Runs `play_call.py` against `env`'s broker with `args`.
fn play(python: &str, env: &Env, args: &[&str]) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/python-producer/play_call.py");
    let kafka = env.config.bus.url.trim_start_matches("kafka://").to_owned();
    std::process::Command::new(python)
        .arg(script)
        .args([
            "--bootstrap-servers",
            &kafka,
            "--topic-prefix",
            &env.config.bus.topic_prefix,
        ])
        .args(args)
        .output()
        .unwrap()
}

/// The JSON line a successful run prints.
fn summary(out: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "play_call.py failed ({}): {stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap()
}

/// `text` spoken by espeak-ng, as 8 kHz mono PCM16.
fn speech(dir: &Path, text: &str) -> Vec<i16> {
    common::espeak(dir, text, "en-us+m3", 160, 8000)
}

/// Writes interleaved 8 kHz PCM16 `samples` as a WAV file.
fn write_wav(path: &Path, channels: u16, samples: &[i16]) -> PathBuf {
    let spec = hound::WavSpec {
        channels,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for &s in samples {
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();
    path.to_path_buf()
}

/// Two speakers, one per channel, taking turns: interleaved stereo.
fn dialogue(dir: &Path) -> Vec<i16> {
    let first = speech(dir, "Markets desk, good morning. How can I help you today?");
    let second = speech(dir, "I would like to buy some shares in a Norwegian index fund.");
    let pause = 1600; // 200 ms
    let frames = first.len() + pause + second.len() + pause;
    let mut out = Vec::with_capacity(frames * 2);
    for f in 0..frames {
        let a = first.get(f).copied().unwrap_or(0);
        let b = f
            .checked_sub(first.len() + pause)
            .and_then(|i| second.get(i))
            .copied()
            .unwrap_or(0);
        out.extend([a, b]);
    }
    out
}

/// What the recorder stores for `pcm` sent as `codec`: the G.711 reference
/// encoding decoded back, or the samples themselves for L16.
fn expected_pcm(format: &AudioFormat, pcm: &[i16]) -> Vec<u8> {
    format.decode(&opptak::sim::encode_pcm(format.codec(), pcm)).unwrap()
}

/// Every message on the input topic for `call_id`, in order, with its partition.
async fn input_messages(edges: &opptak::app::Edges, call_id: &str, n: usize) -> Vec<(i32, v1::TelephonyEvent)> {
    let topic = edges.config.recorder_config().topics.telephony;
    let mut sub = edges.bus.subscribe(&common::unique("watch"), &[topic]).await.unwrap();
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while got.len() < n {
        assert!(tokio::time::Instant::now() < deadline, "{} of {n} messages", got.len());
        for r in sub.poll(1000, Duration::from_millis(300)).await.unwrap() {
            if r.key.as_deref() == Some(call_id.as_bytes()) {
                got.push((r.partition, v1::TelephonyEvent::decode(r.payload.as_ref()).unwrap()));
            }
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_producer_plays_wav_files_as_calls_recorded_sample_identical() {
    let Some((python, backend)) = setup("producer_example").await else {
        return;
    };
    let env = Env::new(&backend, "producer_example");
    let edges = env.edges().await;
    let recorder = RunningRecorder::spawn(edges.recorder());
    let dir = env.dir.path();
    let prefix = common::unique("py");

    // 1. A stereo dialogue as µ-law, customer on the first channel: told
    //    about KI by the advisor at 0.5 s, refusing it at 1.5 s.
    let stereo = dialogue(dir);
    let stereo_wav = write_wav(&dir.join("dialogue.wav"), 2, &stereo);
    let first = format!("{prefix}-stereo");
    let a = summary(&play(
        &python,
        &env,
        &[
            stereo_wav.to_str().unwrap(),
            "--call-id",
            &first,
            "--codec",
            "pcmu",
            "--channel-roles",
            "customer,agent",
            "--desk",
            "markets",
            "--service",
            "investment_advice",
            "--advisor-id",
            "adv-4711",
            "--customer-ref",
            "cust-c3a9",
            "--ki-notice-ms",
            "500",
            "--ki-notice-method",
            "advisor",
            "--opt-out-ms",
            "1500",
            "--end-reason",
            "hangup_agent",
        ],
    ));
    // 2. Mono as L16 in 30 ms chunks (the last one shorter), paced as a live
    //    call, told by the IVR before the call connected.
    let mono: Vec<i16> = speech(dir, "Thank you for calling. This call is recorded.");
    let mono_wav = write_wav(&dir.join("mono.wav"), 1, &mono);
    let second = format!("{prefix}-mono");
    let b = summary(&play(
        &python,
        &env,
        &[
            mono_wav.to_str().unwrap(),
            "--call-id",
            &second,
            "--codec",
            "l16",
            "--chunk-ms",
            "30",
            "--desk",
            "private_banking",
            "--service",
            "savings",
            "--customer-informed",
            "--realtime",
            "--announcement-id",
            "ivr-ki-2026",
        ],
    ));
    // 3. A sample call already A-law, sent as it is in 20 ms chunks.
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/calls/demo-0001.wav");
    let third = format!("{prefix}-sample");
    let c = summary(&play(
        &python,
        &env,
        &[
            sample.to_str().unwrap(),
            "--call-id",
            &third,
            "--chunk-ms",
            "20",
            "--no-ki",
        ],
    ));

    let stored = wait_for_recordings(&edges, 3, 120).await;
    recorder.stop().await.unwrap();

    use ChannelRole::*;
    let sample_audio = opptak::sim::read_wav(&std::fs::read(&sample).unwrap()).unwrap();
    let cases = [
        (
            &first,
            &a,
            AudioFormat::new(Codec::Pcmu, 8000, vec![Customer, Agent]).unwrap(),
            expected_pcm(
                &AudioFormat::new(Codec::Pcmu, 8000, vec![Customer, Agent]).unwrap(),
                &stereo,
            ),
            100,
        ),
        (
            &second,
            &b,
            AudioFormat::new(Codec::L16, 8000, vec![Mixed]).unwrap(),
            mono.iter().flat_map(|s| s.to_le_bytes()).collect(),
            30,
        ),
        (
            &third,
            &c,
            AudioFormat::new(Codec::Pcma, 8000, vec![Agent, Customer]).unwrap(),
            AudioFormat::new(Codec::Pcma, 8000, vec![Agent, Customer])
                .unwrap()
                .decode(&sample_audio.data)
                .unwrap(),
            20,
        ),
    ];
    for (call_id, said, format, pcm, chunk_ms) in &cases {
        let id = CallId::parse(call_id).unwrap();
        let rec = edges.vault().read_recording(&id).await.unwrap();
        assert!(rec.complete, "{call_id}: not complete");
        assert!(rec.gaps.is_empty(), "{call_id}: gaps {:?}", rec.gaps);
        assert_eq!(rec.facts.format, *format, "{call_id}: audio format and channel roles");
        assert_eq!(rec.pcm.len(), pcm.len(), "{call_id}: length");
        assert!(
            rec.pcm == *pcm,
            "{call_id}: the recording differs from the file's encoding"
        );
        let frames = (pcm.len() / 2 / format.channels() as usize) as u64;
        assert_eq!(rec.frames, frames, "{call_id}");
        assert_eq!(said["frames"], frames, "{call_id}");

        // The clean ending: CallEnded names the last chunk, the recording has no gap.
        let chunks = frames.div_ceil(u64::from(format.sample_rate_hz()) * chunk_ms / 1000);
        assert_eq!(said["chunks"], chunks, "{call_id}");
        let end = rec.record.end.as_ref().unwrap();
        assert_eq!(end.last_sequence, Some(chunks - 1), "{call_id}");
        let out = &stored[call_id.as_str()];
        assert!(out.gaps.is_empty() && out.duplicate_chunks == 0, "{out:?}");
        assert_eq!(out.frames, frames);

        // On the wire: every message keyed by the call id, on the partition
        // Java's murmur2 picks, in the contract's order.
        let n = said["messages"].as_u64().unwrap() as usize;
        let msgs = input_messages(&edges, call_id, n).await;
        let want = opptak_bus::partition_for(call_id.as_bytes(), PARTITIONS);
        assert!(
            msgs.iter().all(|(p, _)| *p == want),
            "{call_id}: not all on partition {want}"
        );
        assert!(msgs.iter().all(|(_, e)| e.call_id == **call_id));
        assert!(matches!(msgs[0].1.event, Some(Event::CallStarted(_))));
        let Some(Event::CallEnded(ended)) = &msgs[n - 1].1.event else {
            panic!("{call_id}: the last message is not CallEnded")
        };
        assert_eq!(ended.last_sequence, chunks - 1);
        let sequences: Vec<u64> = msgs
            .iter()
            .filter_map(|(_, e)| match &e.event {
                Some(Event::AudioChunk(c)) => Some(c.sequence),
                _ => None,
            })
            .collect();
        assert_eq!(sequences, (0..chunks).collect::<Vec<_>>(), "{call_id}");
        for (_, e) in &msgs {
            if let Some(Event::AudioChunk(c)) = &e.event {
                let offset = c.offset.as_ref().unwrap();
                let at_us = offset.seconds as u64 * 1_000_000 + offset.nanos as u64 / 1000;
                assert_eq!(
                    at_us,
                    c.sequence * chunk_ms * 1000,
                    "{call_id}: offset of chunk {}",
                    c.sequence
                );
            }
        }
    }

    // The facts each call was started with, and its KI events.
    let rec = edges
        .vault()
        .read_recording(&CallId::parse(&first).unwrap())
        .await
        .unwrap();
    let f = &rec.facts;
    assert_eq!(
        (f.desk, f.service_category),
        (Desk::Markets, ServiceCategory::InvestmentAdvice)
    );
    assert_eq!(
        (f.advisor_id.as_str(), f.customer_ref.as_str()),
        ("adv-4711", "cust-c3a9")
    );
    assert!(f.ki_enabled && !f.customer_informed);
    let notice = f.ki_notice.as_ref().unwrap();
    assert_eq!(
        (notice.offset_us, notice.method, notice.by.as_str()),
        (500_000, KiNoticeMethod::Advisor, "adv-4711")
    );
    assert_eq!(
        notice.at_us - f.started_at_us,
        500_000,
        "the notice's time on the call's clock"
    );
    let opt_out = rec.record.opt_out.as_ref().unwrap();
    assert_eq!(
        (opt_out.offset_us, opt_out.requested_by.as_str()),
        (1_500_000, "adv-4711")
    );
    assert_eq!(rec.record.end.as_ref().unwrap().reason, "hangup_agent");

    let rec = edges
        .vault()
        .read_recording(&CallId::parse(&second).unwrap())
        .await
        .unwrap();
    let f = &rec.facts;
    assert_eq!(
        (f.desk, f.service_category),
        (Desk::PrivateBanking, ServiceCategory::Savings)
    );
    assert!(f.ki_enabled && f.customer_informed);
    let notice = f.ki_notice.as_ref().unwrap();
    assert_eq!(
        (notice.offset_us, notice.method, notice.announcement_id.as_str()),
        (0, KiNoticeMethod::IvrAnnouncement, "ivr-ki-2026")
    );
    assert!(rec.record.opt_out.is_none());

    let rec = edges
        .vault()
        .read_recording(&CallId::parse(&third).unwrap())
        .await
        .unwrap();
    assert!(!rec.facts.ki_enabled);
    assert_eq!(rec.facts.desk, Desk::CustomerCenter);
}

/// A message the broker (or the recorder) would never take is refused
/// before the first message of the call is produced: exit code 3, one clear
/// line, nothing on the topic. A missing topic (a wrong prefix) is exit 5.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_producer_refuses_a_message_too_large_before_producing() {
    let Some((python, backend)) = setup("producer_too_large").await else {
        return;
    };
    let env = Env::new(&backend, "producer_too_large");
    let edges = env.edges().await;
    let topic = edges.config.recorder_config().topics.telephony;
    let dir = env.dir.path();
    let wav = write_wav(&dir.join("hello.wav"), 2, &dialogue(dir));
    let wav = wav.to_str().unwrap();
    let total = |offsets: Vec<(i32, i64)>| offsets.iter().map(|(_, o)| o).sum::<i64>();

    // Over the contract's 256 KiB chunk: 9 s of stereo L16 is 288,000 bytes.
    let out = play(&python, &env, &[wav, "--codec", "l16", "--chunk-ms", "9000"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("262,144") && stderr.contains("nothing was sent"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert_eq!(total(edges.bus.end_offsets(&topic).await.unwrap()), 0);

    // Over the topic's max.message.bytes, here set to 4,096 bytes: 300 ms of
    // stereo µ-law is 4,800 bytes.
    let tight_prefix = format!("{}tight.", env.config.bus.topic_prefix);
    let tight = format!("{tight_prefix}opptak.telephony.v1");
    create_topic(&env, &tight, "4096").await;
    let args = |chunk_ms: &'static str| {
        vec![
            wav.to_owned(),
            "--codec".into(),
            "pcmu".into(),
            "--chunk-ms".into(),
            chunk_ms.into(),
            "--topic-prefix".into(),
            tight_prefix.clone(),
        ]
    };
    let run = |a: Vec<String>| play(&python, &env, &a.iter().map(String::as_str).collect::<Vec<_>>());
    let out = run(args("300"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("max.message.bytes") && stderr.contains("4,096") && stderr.contains("nothing was sent"),
        "{stderr}"
    );
    assert_eq!(total(edges.bus.end_offsets(&tight).await.unwrap()), 0, "nothing sent");
    // Told a wrong limit, it produces; the broker refuses the first chunk
    // and the producer gives up at once (exit 4): resending cannot help.
    let mut lied = args("300");
    lied.extend(["--max-message-bytes".into(), "100000".into()]);
    let out = run(lied);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("not delivered") && stderr.contains("too large"),
        "{stderr}"
    );
    assert!(!stderr.contains("resending"), "{stderr}");
    let started = total(edges.bus.end_offsets(&tight).await.unwrap());
    assert_eq!(started, 1, "only CallStarted went out");
    // 200 ms chunks (3,200 bytes) fit: the same topic takes the whole call.
    let ok = summary(&run(args("200")));
    assert_eq!(
        total(edges.bus.end_offsets(&tight).await.unwrap()),
        started + ok["messages"].as_i64().unwrap()
    );

    // A prefix without its separator names a topic that does not exist.
    let bare = env.config.bus.topic_prefix.trim_end_matches('.').to_owned();
    let out = play(&python, &env, &[wav, "--topic-prefix", &bare]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(stderr.contains(&format!("{bare}opptak.telephony.v1")) && stderr.contains("--topic-prefix"));
}

/// A topic with one partition and the given max.message.bytes.
async fn create_topic(env: &Env, name: &str, max_message_bytes: &str) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let kafka = env.config.bus.url.trim_start_matches("kafka://");
    let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka)
        .create()
        .unwrap();
    let topic = NewTopic::new(name, 1, TopicReplication::Fixed(1)).set("max.message.bytes", max_message_bytes);
    for r in admin.create_topics([&topic], &AdminOptions::new()).await.unwrap() {
        r.unwrap();
    }
}

/// The example's README documents exactly the options the script takes.
#[test]
fn the_producer_readme_names_every_option_of_the_script() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/python-producer");
    let script = std::fs::read_to_string(dir.join("play_call.py")).unwrap();
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    let options = |text: &str, start: &str| -> std::collections::BTreeSet<String> {
        text.lines()
            .filter_map(|l| l.trim_start().strip_prefix(start))
            .filter_map(|rest| rest.split(['"', '`', ' ']).next())
            .filter(|o| o.starts_with('-'))
            .map(str::to_owned)
            .collect()
    };
    let taken = options(&script, "p.add_argument(\"");
    let documented = options(&readme, "| `");
    assert!(taken.len() >= 25, "{taken:?}");
    assert_eq!(taken, documented, "play_call.py's options vs README.md's table");
}
