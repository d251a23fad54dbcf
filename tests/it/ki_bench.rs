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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: minutes; run by hand (see the file's header)"]
async fn pipeline_transcription_throughput_against_direct_calls() {
    let url = std::env::var("OPPTAK_TEST_SPEECH_URL").expect("a speech server (deploy/local/services.sh)");
    let rounds: usize = std::env::var("OPPTAK_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
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
