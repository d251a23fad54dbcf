//! `opptak loadgen`: N concurrent simulated telephony calls at real-time
//! pacing, through the configured bus into an in-process recorder, reporting
//! chunk-to-durable latency and CPU use. See BENCHMARKS.md.

use crate::app::{Edges, RunningRecorder};
use crate::sim::{self, SimCall};
use anyhow::{bail, Result};
use opptak_domain::model::Codec;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct LoadSpec {
    pub calls: usize,
    pub seconds: u64,
    pub chunk_ms: u64,
    /// Write every produced chunk message to this file for the kcat baseline:
    /// `key`, [`DUMP_KEY_DELIMITER`], `value`, [`DUMP_DELIMITER`] per record.
    pub dump: Option<std::path::PathBuf>,
    /// Run without the recorder: the load generator's own cost, subtracted
    /// to give the recorder's CPU per call.
    pub producer_only: bool,
    /// Produce only, into the configured topics (`bus.topic_prefix`), for
    /// recorders running as separate `opptak run --roles recorder` processes
    /// (benches/scale.sh). The topics are created if missing and kept after
    /// the run; durability is then measured from those processes' metrics.
    /// Implies `producer_only`.
    pub external_recorders: bool,
}

/// Separates key and value in a dump file (`kcat -K`).
pub const DUMP_KEY_DELIMITER: &[u8] = b"\x1f";
/// Ends a record in a dump file (`kcat -D`); long enough not to occur in audio.
pub const DUMP_DELIMITER: &[u8] = b"\x1e\xfe\x1d\xfd\x1c\xfc\x1b\xfb";

#[derive(Clone, Debug, Default)]
pub struct LoadReport {
    pub calls: usize,
    pub chunk_ms: u64,
    pub wall_s: f64,
    pub chunks_sent: u64,
    pub chunks_durable: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub cpu_s: f64,
    pub send_lag_ms: f64,
}

impl LoadReport {
    pub fn cores_used(&self) -> f64 {
        self.cpu_s / self.wall_s
    }
    pub fn calls_per_core(&self) -> f64 {
        self.calls as f64 / self.cores_used().max(1e-9)
    }
    pub fn sustained(&self) -> bool {
        self.p99_ms < 1000.0 && self.chunks_durable == self.chunks_sent && self.send_lag_ms < 500.0
    }
}

/// User + system CPU seconds of this process (Linux /proc).
pub fn process_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) start after ')'.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the full line: 11 and 12 here.
    (ticks(11) + ticks(12)) / 100.0
}

/// Send times of chunks not yet durable, and the latencies of those that are.
#[derive(Default)]
struct Tracker {
    waiting: HashMap<i32, BTreeMap<i64, Instant>>,
    durable_upto: HashMap<i32, i64>,
    latencies_ms: Vec<f64>,
}

impl Tracker {
    fn sent(&mut self, partition: i32, offset: i64, at: Instant) {
        // The recorder may make it durable before the delivery report arrives.
        if self.durable_upto.get(&partition).is_some_and(|&d| offset < d) {
            self.latencies_ms.push(at.elapsed().as_secs_f64() * 1000.0);
        } else {
            self.waiting.entry(partition).or_default().insert(offset, at);
        }
    }

    fn durable(&mut self, partition: i32, next_offset: i64) {
        self.durable_upto.insert(partition, next_offset);
        let now = Instant::now();
        if let Some(m) = self.waiting.get_mut(&partition) {
            let rest = m.split_off(&next_offset);
            for (_, t) in std::mem::replace(m, rest) {
                self.latencies_ms.push(now.duration_since(t).as_secs_f64() * 1000.0);
            }
        }
    }
}

pub async fn run(edges: &Edges, spec: &LoadSpec) -> Result<LoadReport> {
    if spec.calls == 0 || spec.chunk_ms == 0 || spec.seconds == 0 {
        bail!("calls, seconds and chunk-ms must be positive");
    }
    // Fresh topics and group per run, so one run's backlog never skews the next.
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let mut rc = edges.config.recorder_config();
    if !spec.external_recorders {
        rc.topics = opptak_recorder::Topics::with_prefix(&format!(
            "{}loadgen-{}.",
            edges.config.bus.topic_prefix,
            &run_id[..8]
        ));
        rc.group = format!("{}-{}", rc.group, &run_id[..8]);
    }
    rc.topics
        .create(edges.bus.as_ref(), edges.config.bus.partitions)
        .await?;
    let topic = rc.topics.telephony.clone();
    let rc_topics = rc.topics.clone();
    let recorder = opptak_recorder::Recorder::new(edges.bus.clone(), edges.vault(), rc);
    let mut durable_rx = recorder.durable_positions();
    let running = if spec.producer_only || spec.external_recorders {
        None
    } else {
        Some(RunningRecorder::spawn(recorder))
    };

    // A pool of distinct 10-second stereo G.711 calls, looped for each call.
    let pool: Vec<SimCall> = (0..8)
        .map(|i| SimCall::synthetic("pool", if i % 2 == 0 { Codec::Pcmu } else { Codec::Pcma }, 2, 10.0, i))
        .collect();
    let calls: Vec<(String, &SimCall)> = (0..spec.calls)
        .map(|i| (format!("load-{}-{i:05}", &run_id[..8]), &pool[i % pool.len()]))
        .collect();
    let chunks_per_call = spec.seconds * 1000 / spec.chunk_ms;

    let track: Arc<Mutex<Tracker>> = Arc::default();
    let watcher = {
        let track = track.clone();
        let topic = topic.clone();
        tokio::spawn(async move {
            while durable_rx.changed().await.is_ok() {
                let positions = durable_rx.borrow_and_update().clone();
                let mut t = track.lock().unwrap_or_else(|e| e.into_inner());
                for p in positions.iter().filter(|p| p.topic == topic) {
                    t.durable(p.partition, p.next_offset);
                }
            }
        })
    };

    let mut dump = match &spec.dump {
        Some(p) => Some(std::io::BufWriter::new(std::fs::File::create(p)?)),
        None => None,
    };
    let cpu0 = process_cpu_seconds();
    let t0 = Instant::now();
    let tick = Duration::from_millis(spec.chunk_ms);
    // Calls are spread over 10 slots per chunk interval, as real calls do not
    // start in lockstep.
    let slots = 10u64;
    let mut chunks_sent = 0u64;
    let mut max_lag = Duration::ZERO;
    let mut pending = Vec::new();
    // Start events.
    let starts: Vec<_> = calls
        .iter()
        .map(|(id, c)| {
            let mut c = (*c).clone();
            c.call_id = id.clone();
            let ev = &c.events(spec.chunk_ms as u32)[0];
            let (k, v) = sim::encode(ev);
            opptak_bus::Outgoing {
                topic: topic.clone(),
                key: k,
                payload: v,
            }
        })
        .collect();
    edges.bus.publish_all(starts).await?;
    let fb = 2usize; // stereo G.711: 2 bytes per frame
    let chunk_bytes = (8000 * spec.chunk_ms as usize / 1000) * fb;
    for step in 0..chunks_per_call * slots {
        let due = t0 + tick * (step / slots) as u32 + tick / slots as u32 * (step % slots) as u32;
        let now = Instant::now();
        if due > now {
            tokio::time::sleep_until(due.into()).await;
        } else {
            max_lag = max_lag.max(now - due);
        }
        let seq = step / slots;
        let slot = step % slots;
        let mut futs = Vec::new();
        for (i, (id, c)) in calls.iter().enumerate() {
            if i as u64 % slots != slot {
                continue;
            }
            let start = (seq as usize * chunk_bytes) % (c.wire.len() - chunk_bytes);
            let ev = opptak_proto::v1::TelephonyEvent {
                call_id: id.clone(),
                event: Some(opptak_proto::v1::telephony_event::Event::AudioChunk(
                    opptak_proto::v1::AudioChunk {
                        sequence: seq,
                        payload: c.wire[start..start + chunk_bytes].to_vec(),
                        duration: Some(sim::duration_ms(spec.chunk_ms)),
                        offset: Some(sim::duration_ms(seq * spec.chunk_ms)),
                        sealed_payload: Vec::new(),
                    },
                )),
            };
            let (k, v) = sim::encode(&ev);
            if let Some(d) = dump.as_mut() {
                d.write_all(&k)?;
                d.write_all(DUMP_KEY_DELIMITER)?;
                d.write_all(&v)?;
                d.write_all(DUMP_DELIMITER)?;
            }
            let bus = edges.bus.clone();
            let topic = topic.clone();
            let track = track.clone();
            futs.push(async move {
                let t = Instant::now();
                let (p, o) = bus.publish(&topic, &k, &v).await?;
                track.lock().unwrap_or_else(|e| e.into_inner()).sent(p, o, t);
                Ok::<_, opptak_bus::BusError>(())
            });
            chunks_sent += 1;
        }
        pending.push(tokio::spawn(futures::future::try_join_all(futs)));
        pending.retain(|h| !h.is_finished());
    }
    for h in pending {
        h.await??;
    }
    if let Some(mut d) = dump.take() {
        d.flush()?;
    }
    // Let the recorder catch up, then stop.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n = track.lock().unwrap_or_else(|e| e.into_inner()).latencies_ms.len() as u64;
        if spec.producer_only || spec.external_recorders || n >= chunks_sent || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let wall_s = t0.elapsed().as_secs_f64();
    let cpu_s = process_cpu_seconds() - cpu0;
    if let Some(r) = running {
        r.stop().await?;
    }
    // Load runs write gigabytes; leave nothing behind in the broker (the
    // external recorders' topics belong to their caller, which drops them).
    if !spec.external_recorders {
        for t in [&rc_topics.telephony, &rc_topics.recordings, &rc_topics.deadletter] {
            edges.bus.delete_topic(t).await?;
        }
    }
    watcher.abort();
    let mut lat = track.lock().unwrap_or_else(|e| e.into_inner()).latencies_ms.clone();
    lat.sort_by(|a, b| a.total_cmp(b));
    let q = |p: f64| {
        if lat.is_empty() {
            f64::NAN
        } else {
            lat[((lat.len() - 1) as f64 * p) as usize]
        }
    };
    Ok(LoadReport {
        calls: spec.calls,
        chunk_ms: spec.chunk_ms,
        wall_s,
        chunks_sent,
        chunks_durable: lat.len() as u64,
        p50_ms: q(0.50),
        p99_ms: q(0.99),
        max_ms: lat.last().copied().unwrap_or(f64::NAN),
        cpu_s,
        send_lag_ms: max_lag.as_secs_f64() * 1000.0,
    })
}
