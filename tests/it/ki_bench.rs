//! Transcription throughput through the pipeline against calling the same
//! speech server directly with the same audio, in the same run
//! (BENCHMARKS.md). Not part of the test run; run by hand:
//!
//! ```sh
//! deploy/local/services.sh start && eval "$(deploy/local/services.sh env)"
//! cargo test --release --test it ki_bench:: -- --ignored --nocapture
//! ```
//!
//! The 20-call corpus (tests/ki_corpus/generate.sh, 16 kHz), every call a KI
//! call. **Direct**: each channel cut by the same voice activity detector,
//! every utterance sent straight to the speech server through the same
//! client (same concurrency bound). **Pipeline**: the calls published at once
//! on Kafka, the recorder and the live transcriber (recorder, reassembly,
//! decoding, VAD, ASR, sealing, publishing, storing) until every transcript
//! is stored. Rounds alternate direct, pipeline, direct, pipeline, ... so
//! drift hits both. Throughput is audio seconds (call length) per wall
//! second; opptak's own CPU is this process's user+system time during the
//! pipeline rounds (the speech server and Kafka are other processes), per
//! audio hour.
//!
//! `call_end_to_draft_below_and_above_capacity` measures what an advisor
//! waits after hanging up, under a steady load of real-time calls below and
//! above what the speech model transcribes live, with the live queue serving
//! ended calls first or in arrival order (`OPPTAK_BENCH_RUNS`, default
//! `10:ended-first,40:ended-first,40:arrival`; `OPPTAK_BENCH_SECONDS` of
//! arrivals, default 60):
//!
//! ```sh
//! cargo test --release --test it ki_bench::call_end -- --ignored --nocapture
//! ```

use crate::common;

use common::{wait_for_recordings, Backend, Env};
use opptak::app::{RunningKi, RunningRecorder};
use opptak_domain::model::CallId;
use opptak_domain::vad::Vad;
use opptak_ki::asr::{AsrConfig, HttpAsr, SpeechRecognizer, Utterance};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// User + system CPU seconds of this process so far.
fn cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split(' ').collect();
    // Fields 14 and 15 (utime, stime) are 11 and 12 after the state field.
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
}

fn asr(url: &str) -> Arc<dyn SpeechRecognizer> {
    let mut cfg = AsrConfig::new(url, "tiny.en");
    cfg.timeout = Duration::from_secs(120);
    Arc::new(HttpAsr::new(cfg).unwrap())
}

/// The 20-call corpus (generated into a temporary directory), every call a KI call.
fn ki_corpus() -> Vec<opptak::demo::Sample> {
    let corpus_dir = tempfile::tempdir().unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ki_corpus/generate.sh");
    assert!(std::process::Command::new("bash")
        .arg(script)
        .arg(corpus_dir.path())
        .status()
        .unwrap()
        .success());
    let mut samples = opptak::demo::samples(corpus_dir.path()).unwrap();
    for s in samples.iter_mut() {
        s.call.started.ki_enabled = true;
        s.call.started.customer_informed = true;
    }
    samples
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: minutes; run by hand (see the file's header)"]
async fn pipeline_transcription_throughput_against_direct_calls() {
    let url = std::env::var("OPPTAK_TEST_SPEECH_URL").expect("a speech server (deploy/local/services.sh)");
    let rounds: usize = std::env::var("OPPTAK_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let samples = ki_corpus();
    let audio_s: f64 = samples
        .iter()
        .map(|s| {
            let f = &s.call.format;
            s.call.expected_pcm().len() as f64 / (2.0 * f.channels() as f64 * f.sample_rate_hz() as f64)
        })
        .sum();
    // The utterances the pipeline sends, cut the same way.
    let mut utterances = Vec::new();
    for s in &samples {
        let f = &s.call.format;
        let ch = f.channels() as usize;
        let pcm: Vec<i16> = s
            .call
            .expected_pcm()
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect();
        for c in 0..ch {
            let mono: Vec<i16> = pcm.iter().skip(c).step_by(ch).copied().collect();
            let mut vad = Vad::new(f.sample_rate_hz(), Default::default());
            let mut spans = vad.push(&mono);
            spans.extend(vad.finish());
            for sp in spans {
                utterances.push(Utterance {
                    pcm16: mono[sp.start as usize..(sp.end as usize).min(mono.len())]
                        .iter()
                        .flat_map(|x| x.to_le_bytes())
                        .collect(),
                    sample_rate_hz: f.sample_rate_hz(),
                    language: Some("en".into()),
                });
            }
        }
    }
    let kafka = common::kafka();
    let postgres = common::postgres_db("ki_bench").await;
    println!(
        "{} calls, {audio_s:.1} s of audio, {} utterances; bus {}",
        samples.len(),
        utterances.len(),
        if kafka.is_some() {
            "Kafka + PostgreSQL"
        } else {
            "embedded"
        }
    );
    let (mut direct, mut pipeline, mut cpu) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        // Direct.
        let client = asr(&url);
        let t0 = Instant::now();
        let mut set = tokio::task::JoinSet::new();
        for u in utterances.clone() {
            let c = client.clone();
            set.spawn(async move { c.transcribe(&u).await.map(|t| t.text.len()) });
        }
        while let Some(r) = set.join_next().await {
            r.unwrap().unwrap();
        }
        let d = audio_s / t0.elapsed().as_secs_f64();
        direct.push(d);

        // Pipeline.
        let backend = match (&kafka, &postgres) {
            (Some(k), Some(_)) => Backend::Services {
                kafka: k.clone(),
                postgres: common::postgres_db("ki_bench").await.unwrap(),
            },
            _ => Backend::Embedded,
        };
        let env = Env::new(&backend, "ki_bench");
        let edges = env.edges().await;
        let recorder = RunningRecorder::spawn(edges.recorder());
        let ki = RunningKi::spawn(&edges, true, false, Some(asr(&url))).await.unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await; // consumers joined
        let (c0, t0) = (cpu_s(), Instant::now());
        let calls: Vec<_> = samples.iter().map(|s| s.call.clone()).collect();
        common::play_interleaved(&edges, &calls, round as u64).await;
        for s in &samples {
            let id = CallId::parse(&s.call.call_id).unwrap();
            loop {
                if edges
                    .meta
                    .artifacts(&id)
                    .await
                    .unwrap()
                    .iter()
                    .any(|a| a.kind == "transcript")
                {
                    break;
                }
                assert!(t0.elapsed() < Duration::from_secs(900), "{id} never transcribed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let (wall, used) = (t0.elapsed().as_secs_f64(), cpu_s() - c0);
        wait_for_recordings(&edges, samples.len(), 60).await;
        ki.stop().await;
        recorder.stop().await.unwrap();
        pipeline.push(audio_s / wall);
        cpu.push(used / (audio_s / 3600.0));
        println!(
            "round {round}: direct {d:.1} audio s/s, pipeline {:.1} audio s/s (ratio {:.2}), opptak CPU {:.1} s per audio hour",
            audio_s / wall,
            audio_s / wall / d,
            used / (audio_s / 3600.0)
        );
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    println!(
        "mean: direct {:.1} audio s/s, pipeline {:.1} audio s/s, ratio {:.2}; opptak CPU {:.1} s per audio hour",
        mean(&direct),
        mean(&pipeline),
        mean(&pipeline) / mean(&direct),
        mean(&cpu)
    );
}

/// One call of the end-to-draft load: a corpus call under a fresh id, its
/// events, and how far it has been played.
struct Playing {
    id: String,
    events: Vec<opptak_proto::v1::TelephonyEvent>,
    next: usize,
}

/// Call end → draft (BENCHMARKS.md, "KI: call end to draft"): `load`
/// concurrent real-time KI calls (the corpus, played again under fresh ids,
/// 100 ms chunks, starts spread over one call length) for `seconds`, with
/// the recorder, the live and batch transcribers and the summarizer
/// (embedded drafter) in this process. Each call's latency is from the
/// moment its `CallEnded` is published to the moment its draft record
/// arrives on `opptak.drafts.v1`. Returns the latencies (s), the calls
/// left without a draft, and the audio played (s).
async fn end_to_draft_run(
    samples: &[opptak::demo::Sample],
    url: &str,
    load: usize,
    seconds: u64,
    ended_first: bool,
) -> (Vec<f64>, usize, f64) {
    use opptak_proto::v1::telephony_event::Event;
    use std::collections::HashMap;
    let backend = match (common::kafka(), common::postgres_db("ki_draft_bench").await) {
        (Some(kafka), Some(postgres)) => Backend::Services { kafka, postgres },
        _ => Backend::Embedded,
    };
    let env = Env::new(&backend, "ki_draft_bench");
    let edges = env.edges().await;
    edges.ensure_topics(&["transcriber", "summarizer"]).await.unwrap();
    let cfg = edges.config.clone();
    let recorder = RunningRecorder::spawn(edges.recorder());
    let asr = asr(url);
    let slots = asr.max_concurrency().unwrap_or(4);
    let t = opptak::app::transcriber_with(&edges, Some(asr)).unwrap();
    let live = Arc::new(opptak_ki::live::Live::new(t.clone(), None).with_slots(slots, ended_first));
    let (stop_live, live_role) = common::spawn_live_role(&edges, &live);
    let (stop, rx) = tokio::sync::watch::channel(false);
    let batch = {
        let (group, topic, calls, rx) = (
            cfg.ki.transcriber_group.clone(),
            cfg.recorder_config().topics.recordings,
            live.calls.clone(),
            rx.clone(),
        );
        tokio::spawn(async move { opptak_ki::transcribe::run_role(t, &group, &topic, Some(calls), rx).await })
    };
    let summarizer = {
        let s = opptak::app::summarizer(&edges).await.unwrap();
        let (group, topic) = (cfg.ki.summarizer_group.clone(), opptak::app::transcripts_topic(&cfg));
        tokio::spawn(async move { opptak_ki::summarize::run_role(s, &group, &topic, rx).await })
    };
    let mut drafts = edges
        .bus
        .subscribe(&common::unique("drafts"), &[opptak::app::drafts_topic(&cfg)])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await; // consumers joined

    let topic = cfg.recorder_config().topics.telephony;
    let run = common::unique("d");
    let mut ended: HashMap<String, Instant> = HashMap::new();
    let mut drafted: HashMap<String, f64> = HashMap::new();
    let mut playing: Vec<Option<Playing>> = (0..load).map(|_| None).collect();
    let mut started = vec![0usize; load];
    let mut audio_s = 0.0;
    let mean_call_s = 20.0;
    let t0 = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = t0.elapsed();
        let mut batch_out = Vec::new();
        let mut ending = Vec::new();
        for (slot, p) in playing.iter_mut().enumerate() {
            let due = Duration::from_secs_f64(mean_call_s * slot as f64 / load as f64);
            if p.is_none() && now >= due && now < Duration::from_secs(seconds) {
                let k = started[slot];
                started[slot] += 1;
                let mut call = samples[(slot + k * load) % samples.len()].call.clone();
                call.call_id = format!("{run}-{slot:03}-{k:03}");
                audio_s += call.frames() as f64 / f64::from(call.format.sample_rate_hz());
                *p = Some(Playing {
                    id: call.call_id.clone(),
                    events: call.events(100),
                    next: 0,
                });
            }
            let Some(c) = p else { continue };
            let mut e = c.events[c.next].clone();
            c.next += 1;
            let stamp = opptak::sim::now_timestamp();
            match e.event.as_mut() {
                Some(Event::CallStarted(s)) => s.started_at = Some(stamp),
                Some(Event::CallEnded(end)) => {
                    end.ended_at = Some(stamp);
                    ending.push(c.id.clone());
                }
                _ => {}
            }
            let (key, payload) = opptak::sim::encode(&e);
            batch_out.push(opptak_bus::Outgoing {
                topic: topic.clone(),
                key,
                payload,
            });
            if c.next == c.events.len() {
                *p = None;
            }
        }
        edges.bus.publish_all(batch_out).await.unwrap();
        let at = Instant::now();
        for id in ending {
            ended.insert(id, at);
        }
        for r in drafts.poll(1000, Duration::ZERO).await.unwrap() {
            let id = String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).into_owned();
            if let Some(end) = ended.get(&id) {
                drafted.entry(id).or_insert_with(|| end.elapsed().as_secs_f64());
            }
        }
        if now >= Duration::from_secs(seconds) && playing.iter().all(Option::is_none) {
            break;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    while drafted.len() < ended.len() && Instant::now() < deadline {
        for r in drafts.poll(1000, Duration::from_millis(200)).await.unwrap() {
            let id = String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).into_owned();
            if let Some(end) = ended.get(&id) {
                drafted.entry(id).or_insert_with(|| end.elapsed().as_secs_f64());
            }
        }
    }
    let _ = stop_live.send(true);
    let _ = stop.send(true);
    live_role.await.unwrap().unwrap();
    batch.await.unwrap().unwrap();
    summarizer.await.unwrap().unwrap();
    recorder.stop().await.unwrap();
    let missing = ended.len() - drafted.len();
    (drafted.into_values().collect(), missing, audio_s)
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: minutes; run by hand (BENCHMARKS.md)"]
async fn call_end_to_draft_below_and_above_capacity() {
    let url = std::env::var("OPPTAK_TEST_SPEECH_URL").expect("a speech server (deploy/local/services.sh)");
    let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_owned());
    let runs: Vec<(usize, bool)> = env("OPPTAK_BENCH_RUNS", "10:ended-first,40:ended-first,40:arrival")
        .split(',')
        .map(|r| {
            let (load, order) = r.split_once(':').unwrap();
            (load.parse().unwrap(), order == "ended-first")
        })
        .collect();
    let seconds: u64 = env("OPPTAK_BENCH_SECONDS", "60").parse().unwrap();
    let samples = ki_corpus();
    for (load, ended_first) in runs {
        let t0 = Instant::now();
        let (mut waits, missing, audio_s) = end_to_draft_run(&samples, &url, load, seconds, ended_first).await;
        waits.sort_by(f64::total_cmp);
        println!(
            "{load} calls, {}: {} drafts, {missing} missing; call end -> draft min {:.1} s, p50 {:.1} s, p95 {:.1} s, max {:.1} s (run {:.0} s, {audio_s:.0} s of audio)",
            if ended_first { "ended first" } else { "arrival order" },
            waits.len(),
            waits.first().copied().unwrap_or(f64::NAN),
            quantile(&waits, 0.5),
            quantile(&waits, 0.95),
            waits.last().copied().unwrap_or(f64::NAN),
            t0.elapsed().as_secs_f64()
        );
    }
}
