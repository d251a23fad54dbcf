//! The calls the suite plays and the telephony side that plays them.
//!
//! Audio: the five sample calls (`samples/`, synthesised speech, so the
//! transcriber has words to find), looped to the wanted length and encoded
//! per call in one of the three codecs, stereo or mono. Every 100 ms chunk
//! starts with a **watermark**: its call number and sequence number written
//! as twelve near-silent codes (amplitude below 0.1% of full scale, inaudible
//! and harmless to speech recognition). A stored recording can then be taken
//! apart chunk by chunk: which chunk sits where, which is missing, which is
//! there twice — not only whether the whole differs.
//!
//! The telephony side (one task per call) sends each call's events in order,
//! one at a time, at the call's real-time pace (or `pace` times faster), and
//! notes every chunk the broker acknowledged (the idempotent producer's
//! delivery report: acks=all). A publish that fails (the broker is down
//! longer than the delivery timeout) is indeterminate — it may or may not be
//! in the log — and is sent again until acknowledged, as a telephony system
//! that wants its calls recorded would; the recorder drops what arrives twice
//! by sequence number.

use opptak::sim::{self, SimCall};
use opptak_bus::Bus;
use opptak_domain::model::{AudioFormat, ChannelRole, Codec};
use opptak_proto::v1::telephony_event::Event;
use rand::{Rng, SeedableRng};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Milliseconds of audio per chunk.
pub const CHUNK_MS: u32 = 100;
const RATE: usize = 8000;
/// Frames per chunk.
pub const CHUNK_FRAMES: usize = RATE * CHUNK_MS as usize / 1000;
/// Codes per watermark: 4 nibbles of the call number, 8 of the sequence.
const TAG_UNITS: usize = 12;

/// One call of the plan.
pub struct Planned {
    pub sim: SimCall,
    /// Chunks of audio (every one `CHUNK_FRAMES` long).
    pub chunks: usize,
    /// KI requested and the customer informed (`CallFacts::ki_active`).
    pub ki: bool,
    /// A `KiOptOut` in the middle of the call.
    pub opt_out: bool,
    /// Investment advice: an archive copy is due.
    pub investment: bool,
    /// When the call starts, from the start of the run.
    pub start: Duration,
}

impl Planned {
    pub fn call_id(&self) -> &str {
        &self.sim.call_id
    }

    /// Wire bytes of one watermark at the start of a chunk.
    pub fn tag_bytes(&self) -> usize {
        TAG_UNITS * unit_bytes(&self.sim.format)
    }

    /// The chunk's wire bytes as sent.
    pub fn chunk(&self, seq: usize) -> &[u8] {
        let n = CHUNK_FRAMES * self.sim.format.wire_frame_bytes();
        &self.sim.wire[seq * n..(seq + 1) * n]
    }
}

/// Bytes of one watermark code: a G.711 byte or an L16 sample.
fn unit_bytes(format: &AudioFormat) -> usize {
    match format.codec() {
        Codec::L16 => 2,
        _ => 1,
    }
}

/// Sixteen wire codes (one per nibble) that decode to distinct values of the
/// smallest amplitude the codec has.
fn quiet_codes(codec: Codec) -> Vec<Vec<u8>> {
    if codec == Codec::L16 {
        return (0..16i16).map(|n| (n - 8).to_le_bytes().to_vec()).collect();
    }
    let mono = AudioFormat::new(codec, RATE as u32, vec![ChannelRole::Mixed]).expect("mono format");
    let all: Vec<u8> = (0..=255u8).collect();
    let pcm = mono.decode(&all).expect("every G.711 byte decodes");
    let mut by_level: Vec<(i16, u8)> = pcm
        .chunks_exact(2)
        .zip(all)
        .map(|(b, code)| (i16::from_le_bytes([b[0], b[1]]), code))
        .collect();
    by_level.sort_by_key(|(v, code)| (v.unsigned_abs(), *v, *code));
    by_level.dedup_by_key(|(v, _)| *v);
    by_level.into_iter().take(16).map(|(_, code)| vec![code]).collect()
}

/// Writes the call number and sequence into the first codes of every chunk.
fn watermark(index: usize, format: &AudioFormat, wire: &mut [u8]) {
    let codes = quiet_codes(format.codec());
    let chunk_bytes = CHUNK_FRAMES * format.wire_frame_bytes();
    let unit = unit_bytes(format);
    for (seq, chunk) in wire.chunks_mut(chunk_bytes).enumerate() {
        let tag = ((index as u64 & 0xffff) << 32) | (seq as u64 & 0xffff_ffff);
        for u in 0..TAG_UNITS {
            let nibble = ((tag >> (4 * (TAG_UNITS - 1 - u))) & 0xf) as usize;
            chunk[u * unit..(u + 1) * unit].copy_from_slice(&codes[nibble]);
        }
    }
}

/// The suite's calls: `n` calls of `seconds` each, all starting within the
/// first two seconds (they run concurrently). A third are KI calls (a
/// quarter of those opt out mid-call), one in six asks for KI without the
/// customer informed (KI must not run), the rest have no KI; a sixth are
/// investment advice (archive copy).
pub fn plan(prefix: &str, n: usize, seconds: f64, seed: u64) -> Vec<Planned> {
    let samples = opptak::demo::samples(&opptak::demo::default_samples_dir()).expect("samples/calls.toml");
    let sources: Vec<(Vec<i16>, Vec<ChannelRole>)> = samples
        .iter()
        .map(|s| {
            assert_eq!(s.call.format.sample_rate_hz() as usize, RATE);
            let pcm = s.call.expected_pcm();
            let pcm = pcm.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
            (pcm, s.call.format.channel_roles().to_vec())
        })
        .collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let chunks = ((seconds * 1000.0) as usize / CHUNK_MS as usize).max(2);
    (0..n)
        .map(|i| {
            let (pcm, roles) = &sources[i % sources.len()];
            let channels = roles.len();
            let mono = i % 7 == 6;
            // Looped to length, whole chunks, from a different place per call.
            let src_frames = pcm.len() / channels;
            let skip = rng.gen_range(0..src_frames);
            let frames = chunks * CHUNK_FRAMES;
            let mut out = Vec::with_capacity(frames * if mono { 1 } else { channels });
            for f in 0..frames {
                let at = ((skip + f) % src_frames) * channels;
                if mono {
                    let sum: i32 = pcm[at..at + channels].iter().map(|&s| i32::from(s)).sum();
                    out.push((sum / channels as i32) as i16);
                } else {
                    out.extend_from_slice(&pcm[at..at + channels]);
                }
            }
            let codec = [Codec::Pcmu, Codec::Pcma, Codec::L16][(i / 2) % 3];
            let roles = if mono { vec![ChannelRole::Mixed] } else { roles.clone() };
            let format = AudioFormat::new(codec, RATE as u32, roles).expect("format");
            let mut wire = sim::encode_pcm(codec, &out);
            watermark(i, &format, &mut wire);
            let mut sim = SimCall::new(&format!("{prefix}-{i:04}"), format, wire);
            let ki = i % 6 == 0 || i % 6 == 3;
            let opt_out = i % 12 == 3;
            let category = (i / 2) % 6 + 1;
            sim.started.desk = (i % 4) as i32 + 1;
            sim.started.service_category = category as i32;
            sim.started.advisor_id = format!("adv-{}", i % 7);
            sim.started.ki_enabled = ki || i % 6 == 1;
            sim.started.customer_informed = ki;
            if opt_out {
                let ms = seconds * 1000.0;
                sim.opt_out_at_ms = Some(rng.gen_range(ms * 0.25..ms * 0.75) as u64);
            }
            Planned {
                sim,
                chunks,
                ki,
                opt_out,
                investment: category == 1,
                start: Duration::from_millis(rng.gen_range(0..2000)),
            }
        })
        .collect()
}

/// What the telephony side sent of one call and what the broker acknowledged.
#[derive(Clone, Debug, Default)]
pub struct Sent {
    /// Per chunk: (partition, offset) of the acknowledged publish.
    pub acked: Vec<Option<(i32, i64)>>,
    /// Per chunk: publishes that failed (indeterminate: maybe in the log).
    pub failed: Vec<u32>,
    /// Failed publishes of CallStarted / KiOptOut / CallEnded.
    pub control_failed: u32,
    /// Every event of the call acknowledged, CallEnded last.
    pub finished: bool,
}

/// The running telephony side.
pub struct Telephony {
    pub acked: Arc<AtomicUsize>,
    pub total: usize,
    tasks: Vec<tokio::task::JoinHandle<Sent>>,
}

impl Telephony {
    /// Starts every call (each at its `start`, `pace` times real time).
    pub fn start(bus: Arc<dyn Bus>, topic: String, calls: &[Planned], pace: f64, give_up: Duration) -> Self {
        let acked = Arc::new(AtomicUsize::new(0));
        let total = calls.iter().map(|c| c.chunks).sum();
        let t0 = tokio::time::Instant::now();
        let tasks = calls
            .iter()
            .map(|c| {
                let events = c.sim.events(CHUNK_MS);
                let (bus, topic, acked) = (bus.clone(), topic.clone(), acked.clone());
                let start = t0 + c.start;
                let chunks = c.chunks;
                let step = Duration::from_secs_f64(f64::from(CHUNK_MS) / 1000.0 / pace);
                tokio::spawn(async move {
                    let mut sent = Sent {
                        acked: vec![None; chunks],
                        failed: vec![0; chunks],
                        ..Default::default()
                    };
                    let deadline = Instant::now() + give_up;
                    for ev in &events {
                        let seq = match &ev.event {
                            Some(Event::AudioChunk(a)) => Some(a.sequence as usize),
                            _ => None,
                        };
                        match (&ev.event, seq) {
                            (_, Some(s)) => tokio::time::sleep_until(start + step * s as u32).await,
                            (Some(Event::CallEnded(_)), _) => {
                                tokio::time::sleep_until(start + step * chunks as u32).await
                            }
                            _ => {}
                        }
                        let (key, payload) = sim::encode(ev);
                        loop {
                            match bus.publish(&topic, &key, &payload).await {
                                Ok(at) => {
                                    if let Some(s) = seq {
                                        sent.acked[s] = Some(at);
                                        acked.fetch_add(1, Ordering::Relaxed);
                                    }
                                    break;
                                }
                                Err(e) => {
                                    match seq {
                                        Some(s) => sent.failed[s] += 1,
                                        None => sent.control_failed += 1,
                                    }
                                    if Instant::now() > deadline {
                                        eprintln!("[fault] telephony gives up on {}: {e}", ev.call_id);
                                        return sent;
                                    }
                                    tokio::time::sleep(Duration::from_millis(250)).await;
                                }
                            }
                        }
                    }
                    sent.finished = true;
                    sent
                })
            })
            .collect();
        Self { acked, total, tasks }
    }

    /// Acknowledged chunks / all chunks.
    pub fn progress(&self) -> f64 {
        self.acked.load(Ordering::Relaxed) as f64 / self.total.max(1) as f64
    }

    pub fn is_finished(&self) -> bool {
        self.tasks.iter().all(|t| t.is_finished())
    }

    /// What was sent, per call (in plan order).
    pub async fn join(self) -> Vec<Sent> {
        let mut out = Vec::with_capacity(self.tasks.len());
        for t in self.tasks {
            out.push(t.await.expect("telephony task"));
        }
        out
    }
}
