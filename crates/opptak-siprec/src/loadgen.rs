//! A SIPREC load generator (`opptak loadgen --siprec`): N simulated
//! Session Recording Clients, each a SIPREC INVITE (multipart SDP +
//! rs-metadata, two `a=sendonly` G.711 streams), ACK, real-time RTP at
//! 20 ms packetization on both streams (100 packets/s per call), then BYE.
//!
//! The generator runs on a thread of its own (a current-thread runtime), so
//! its CPU is that thread's and the rest of the process's CPU is the
//! server's (see [`thread_cpu_seconds`]). RTP is paced by a few timer tasks,
//! each owning a share of the calls and one socket, not a task per stream:
//! on each 20 ms tick a task sends one packet on every stream it owns and
//! writes the tick's start time to the [`Timeline`].
//!
//! Packet-to-bus latency: [`TimingBus`] wraps the server's bus; when a
//! publish returns (the bus acknowledged it durable: Kafka's idempotent
//! producer with acks=all), each `AudioChunk` in it is matched to the ticks
//! that sent its packets. A chunk's `offset` is its place on the session's
//! timeline, whose frame 0 is the first packet (both streams start on the
//! same tick), so its packets are the call's packets `offset / 20 ms` up to
//! `(offset + duration) / 20 ms`. The latency of the chunk's last packet is
//! what the server adds (reordering wait, batching, the bus); that of its
//! first packet adds the chunk's own length. Tick start times are taken
//! before the tick's sends, so both are slight over-estimates.
//!
//! Churn ([`Churn`], the soak): each of the N call slots plays one call
//! after another, each of a seeded random length, with a new Call-ID and
//! session id, until the run's end, so about N calls are always up and
//! thousands start and end. Memory then stays per slot, not per call: a
//! call the bus has whole (see [`CallSummary::complete`]) is folded into a
//! count when its `CallEnded` is acknowledged, latencies go into a fixed
//! histogram and tick times into a ring of the last [`TICK_WINDOW_S`].
//!
//! The SIPREC messages are built by public functions ([`SrcDialog`],
//! [`offer_sdp`], [`metadata`], [`answer_destinations`]) that the crate's
//! wire tests use too.

use crate::config::Transport;
use crate::rtp::{self, G711};
use crate::sdp;
use crate::session;
use crate::sip::{self, Message, SipError, StartLine};
use async_trait::async_trait;
use bytes::Bytes;
use opptak_bus::{Bus, BusError, Outgoing, Subscription, TopicInfo, TopicSpec};
use opptak_proto::v1::{self, telephony_event::Event};
use opptak_proto::Message as _;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;

/// RTP packetization: 20 ms, 160 G.711 samples.
pub const PACKET_MS: u64 = 20;
const SAMPLES: u32 = 160;
/// A request without a final response this long fails (RFC 3261 Timer B).
const TRANSACTION_S: u64 = 32;

#[derive(Clone, Debug)]
pub struct LoadSpec {
    /// Concurrent calls.
    pub calls: usize,
    /// Audio per call; each stream sends `seconds * 50` packets.
    pub seconds: u64,
    /// The SRS's SIP address and transport.
    pub target: SocketAddr,
    pub transport: Transport,
    /// INVITEs per second while the calls are set up.
    pub setup_per_s: u32,
    pub codec: G711,
    /// RTP timer tasks (each with its own socket).
    pub rtp_tasks: usize,
    /// Calls one after another in each slot for `seconds`; None: one call
    /// of `seconds` per slot.
    pub churn: Option<Churn>,
}

/// The shortest call churn plays (and the least time before the run's end
/// a slot starts another).
pub const MIN_CALL_S: u64 = 1;

/// Churn: each call slot plays calls of random length one after another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Churn {
    /// Call length bounds in seconds, both included.
    pub min_s: u64,
    pub max_s: u64,
    /// Call `g` of slot `i` has the same length in every run with this seed.
    pub seed: u64,
}

impl Churn {
    /// Packets per stream of call `generation` of slot `slot`.
    pub fn packets(&self, slot: usize, generation: u32) -> u64 {
        let h = splitmix64(self.seed ^ ((slot as u64) << 32) ^ u64::from(generation));
        let span_ms = self.max_s.saturating_sub(self.min_s) * 1000;
        let ms = self.min_s * 1000 + h % (span_ms + 1);
        (ms / PACKET_MS).max(1)
    }

    /// `MIN-MAX` seconds, e.g. `20-120`.
    pub fn parse_seconds(text: &str) -> Result<(u64, u64), String> {
        let (a, b) = text.split_once('-').unwrap_or((text, text));
        let p = |v: &str| {
            v.trim()
                .parse::<u64>()
                .map_err(|e| format!("call seconds {text:?}: {e}"))
        };
        let (min, max) = (p(a)?, p(b)?);
        if min < MIN_CALL_S || max < min {
            return Err(format!(
                "call seconds {text:?}: expected MIN-MAX with {MIN_CALL_S} <= MIN <= MAX"
            ));
        }
        Ok((min, max))
    }
}

/// A seed from the clock, for runs not given one.
pub fn random_seed() -> u64 {
    splitmix64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id()) << 40,
    )
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// What the generator did and saw.
#[derive(Clone, Debug, Default)]
pub struct LoadReport {
    pub calls: usize,
    /// INVITEs sent: one per call (with churn, thousands over N slots).
    pub invites: u64,
    /// INVITEs answered 200.
    pub established: u64,
    /// Refused or unanswered INVITEs by final status (0: no response).
    pub failed: BTreeMap<u16, u64>,
    /// BYEs answered 200.
    pub ended: u64,
    pub packets_sent: u64,
    pub send_errors: u64,
    /// From the first INVITE to the last BYE's answer.
    pub wall_s: f64,
    /// From the first RTP packet to the last.
    pub media_s: f64,
    /// The generator thread's CPU seconds over `wall_s`.
    pub cpu_s: f64,
    /// How late a tick started at worst (pacing the generator could not keep).
    pub max_tick_lag_ms: f64,
    /// The longest tick (its sends).
    pub max_tick_ms: f64,
    /// Every call up: from the last INVITE's answer to the first call's
    /// last packet (with churn: to the first slot that starts no further
    /// call), when all calls talk at once (None when no such time).
    pub steady: Option<Steady>,
}

/// CPU over the time every call talks.
#[derive(Clone, Copy, Debug, Default)]
pub struct Steady {
    pub wall_s: f64,
    /// The whole process's CPU seconds.
    pub process_cpu_s: f64,
    /// The generator thread's.
    pub generator_cpu_s: f64,
    /// [`TimingBus`]'s bookkeeping's ([`Timeline::timing_cpu_s`]).
    pub timing_cpu_s: f64,
}

#[derive(Clone, Copy)]
struct CpuMark {
    at: Instant,
    process: f64,
    thread: f64,
    timing: f64,
}

impl CpuMark {
    fn now(timeline: &Timeline) -> Self {
        Self {
            at: Instant::now(),
            process: cpu_seconds("/proc/self/stat"),
            thread: thread_cpu_seconds(),
            timing: timeline.timing_cpu_s(),
        }
    }
}

impl LoadReport {
    pub fn packets_per_s(&self) -> f64 {
        self.packets_sent as f64 / self.media_s.max(1e-9)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("siprec loadgen: {0}")]
    Io(#[from] std::io::Error),
    #[error("siprec loadgen: {0}")]
    Spec(String),
}

/// Per call: where its packets' send times are and what the bus took of it.
#[derive(Debug, Default)]
struct CallTrack {
    task: usize,
    tick0: Option<usize>,
    packets: u64,
    started: bool,
    ended: bool,
    chunks: u64,
    /// Milliseconds of audio in its chunks, and where the next should start.
    audio_ms: u64,
    next_ms: u64,
    /// Chunks that did not start where the previous one ended.
    gaps: u64,
}

impl CallTrack {
    fn complete(&self) -> bool {
        self.started && self.ended && self.packets > 0 && self.gaps == 0 && self.audio_ms == self.packets * PACKET_MS
    }
}

/// How long tick times are kept: a chunk acknowledged later than this
/// after its packets were sent is counted at this age (a lower bound).
pub const TICK_WINDOW_S: u64 = 120;
const TICK_WINDOW: usize = (TICK_WINDOW_S * 1000 / PACKET_MS) as usize;

/// One RTP task's tick start times: tick `base` is `at[0]`.
#[derive(Clone, Default)]
struct Ticks {
    base: usize,
    at: VecDeque<Instant>,
}

impl Ticks {
    fn push(&mut self, at: Instant) {
        if self.at.len() == TICK_WINDOW {
            self.at.pop_front();
            self.base += 1;
        }
        self.at.push_back(at);
    }

    /// Tick `k`'s time, or the oldest kept for a tick gone from the window.
    fn get(&self, k: usize) -> Option<Instant> {
        if k < self.base {
            return self.at.front().copied();
        }
        self.at.get(k - self.base).copied()
    }
}

/// Latencies in a fixed log-linear histogram (128 buckets per power of
/// two of microseconds: under 0.4 % error), so a soak's millions of chunks
/// take no more memory than a short run's.
#[derive(Clone)]
struct Histogram {
    counts: Vec<u64>,
    n: usize,
    max_us: u64,
}

const SUB_BUCKETS: u64 = 128;

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: vec![0; (64 - 6) * SUB_BUCKETS as usize],
            n: 0,
            max_us: 0,
        }
    }
}

impl Histogram {
    fn bucket(us: u64) -> usize {
        if us < SUB_BUCKETS {
            return us as usize;
        }
        let e = 63 - u64::from(us.leading_zeros());
        ((e - 6) * SUB_BUCKETS + (us >> (e - 7)) - SUB_BUCKETS) as usize
    }

    /// The middle of bucket `b`, in microseconds.
    fn value(b: usize) -> f64 {
        let b = b as u64;
        if b < SUB_BUCKETS {
            return b as f64;
        }
        let shift = b / SUB_BUCKETS - 1;
        let low = (SUB_BUCKETS + b % SUB_BUCKETS) << shift;
        low as f64 + ((1u64 << shift) as f64 - 1.0) / 2.0
    }

    fn add(&mut self, d: Duration) {
        let us = d.as_micros().min(u128::from(u64::MAX)) as u64;
        self.counts[Self::bucket(us)] += 1;
        self.n += 1;
        self.max_us = self.max_us.max(us);
    }

    /// The value at rank `(n - 1) * p` of the sorted samples, in ms.
    fn quantile_ms(&self, p: f64) -> f64 {
        if self.n == 0 {
            return f64::NAN;
        }
        let rank = ((self.n - 1) as f64 * p) as u64;
        let mut seen = 0u64;
        for (b, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen > rank {
                return Self::value(b).min(self.max_us as f64) / 1000.0;
            }
        }
        self.max_us as f64 / 1000.0
    }

    fn latency(&self) -> Latency {
        Latency {
            samples: self.n,
            p50_ms: self.quantile_ms(0.5),
            p99_ms: self.quantile_ms(0.99),
            max_ms: if self.n == 0 {
                f64::NAN
            } else {
                self.max_us as f64 / 1000.0
            },
        }
    }
}

#[derive(Default)]
struct TimelineInner {
    calls: HashMap<String, CallTrack>,
    ticks: Vec<Ticks>,
    last_packet: Histogram,
    first_packet: Histogram,
    other_events: u64,
    /// Churn: a complete call is counted here and forgotten at its CallEnded.
    fold: bool,
    folded: usize,
    folded_chunks: u64,
}

/// Send times of the generator's ticks and what the bus acknowledged: the
/// meeting point of [`run`] and [`TimingBus`].
#[derive(Default)]
pub struct Timeline {
    inner: Mutex<TimelineInner>,
    /// CPU nanoseconds [`TimingBus`] spent on the bookkeeping above (copying
    /// and decoding what the bus acknowledged): the measurement's cost, in
    /// the role's threads but not the role's.
    timing_ns: std::sync::atomic::AtomicU64,
}

/// Per call, what reached the bus (from [`Timeline::summary`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallSummary {
    pub call_id: String,
    pub packets_per_stream: u64,
    pub started: bool,
    pub ended: bool,
    pub chunks: u64,
    pub audio_ms: u64,
    pub gaps: u64,
}

impl CallSummary {
    /// The bus acknowledged its CallStarted, CallEnded, and chunks covering
    /// every packet sent without a gap.
    pub fn complete(&self) -> bool {
        self.started
            && self.ended
            && self.packets_per_stream > 0
            && self.gaps == 0
            && self.audio_ms == self.packets_per_stream * PACKET_MS
    }
}

/// Latency quantiles in milliseconds.
#[derive(Clone, Copy, Debug, Default)]
pub struct Latency {
    pub samples: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Timeline {
    fn lock(&self) -> std::sync::MutexGuard<'_, TimelineInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// CPU seconds spent by [`TimingBus`] on its bookkeeping so far.
    pub fn timing_cpu_s(&self) -> f64 {
        self.timing_ns.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1e9
    }

    fn timed<T>(&self, f: impl FnOnce() -> T) -> T {
        let t0 = thread_cpu_ns();
        let out = f();
        self.timing_ns
            .fetch_add(thread_cpu_ns().saturating_sub(t0), std::sync::atomic::Ordering::Relaxed);
        out
    }

    /// Latency from each chunk's last packet's send to its acknowledgement,
    /// and from its first packet's.
    pub fn latency(&self) -> (Latency, Latency) {
        let t = self.lock();
        (t.last_packet.latency(), t.first_packet.latency())
    }

    /// Every call the generator set up and has not folded (with churn:
    /// those not complete, or not yet ended), by recording call id.
    pub fn summary(&self) -> Vec<CallSummary> {
        let t = self.lock();
        let mut out: Vec<CallSummary> = t
            .calls
            .iter()
            .map(|(id, c)| CallSummary {
                call_id: id.clone(),
                packets_per_stream: c.packets,
                started: c.started,
                ended: c.ended,
                chunks: c.chunks,
                audio_ms: c.audio_ms,
                gaps: c.gaps,
            })
            .collect();
        out.sort_by(|a, b| a.call_id.cmp(&b.call_id));
        out
    }

    /// Calls whose `CallEnded` the bus acknowledged.
    pub fn ended(&self) -> usize {
        let t = self.lock();
        t.folded + t.calls.values().filter(|c| c.ended).count()
    }

    /// Calls the bus has whole ([`CallSummary::complete`]), folded or not.
    pub fn complete_calls(&self) -> usize {
        let t = self.lock();
        t.folded + t.calls.values().filter(|c| c.complete()).count()
    }

    /// Chunks of the calls folded away.
    pub fn folded_chunks(&self) -> u64 {
        self.lock().folded_chunks
    }

    /// Calls the generator set up that the bus does not have whole (yet).
    pub fn incomplete(&self) -> Vec<CallSummary> {
        self.summary().into_iter().filter(|s| !s.complete()).collect()
    }

    /// Events of calls the generator did not set up, or of a folded call
    /// after its CallEnded (should be none).
    pub fn foreign_events(&self) -> u64 {
        self.lock().other_events
    }

    /// A call about to be invited, its RTP sent by task `task`.
    fn register(&self, rec_id: String, task: usize) {
        self.lock().calls.insert(
            rec_id,
            CallTrack {
                task,
                ..CallTrack::default()
            },
        );
    }

    fn acknowledged(&self, messages: &[Outgoing], at: Instant) {
        let mut t = self.lock();
        let t = &mut *t;
        for m in messages {
            let Ok(ev) = v1::TelephonyEvent::decode(m.payload.as_ref()) else {
                continue;
            };
            let Some(c) = t.calls.get_mut(&ev.call_id) else {
                t.other_events += 1;
                continue;
            };
            match ev.event {
                Some(Event::CallStarted(_)) => c.started = true,
                Some(Event::CallEnded(_)) => {
                    c.ended = true;
                    // The role publishes in order: no chunk of it follows.
                    if t.fold && c.complete() {
                        t.folded_chunks += c.chunks;
                        t.calls.remove(&ev.call_id);
                        t.folded += 1;
                    }
                }
                Some(Event::AudioChunk(a)) => {
                    let ms = |d: Option<opptak_proto::Duration>| {
                        d.map_or(0, |d| {
                            d.seconds.max(0) as u64 * 1000 + d.nanos.max(0) as u64 / 1_000_000
                        })
                    };
                    let (off, dur) = (ms(a.offset), ms(a.duration));
                    c.chunks += 1;
                    c.audio_ms += dur;
                    if off != c.next_ms {
                        c.gaps += 1;
                    }
                    c.next_ms = off + dur;
                    let (Some(tick0), Some(ticks)) = (c.tick0, t.ticks.get(c.task)) else {
                        continue;
                    };
                    let sent = |i: u64| ticks.get(tick0 + i as usize).map(|s| at.duration_since(s));
                    let first = off / PACKET_MS;
                    let last = ((off + dur) / PACKET_MS).max(first + 1) - 1;
                    if let (Some(f), Some(l)) = (sent(first), sent(last)) {
                        t.first_packet.add(f);
                        t.last_packet.add(l);
                    }
                }
                _ => {}
            }
        }
    }
}

/// A [`Bus`] that tells a [`Timeline`] when each publish is acknowledged.
pub struct TimingBus {
    inner: Arc<dyn Bus>,
    timeline: Arc<Timeline>,
}

impl TimingBus {
    pub fn new(inner: Arc<dyn Bus>, timeline: Arc<Timeline>) -> Self {
        Self { inner, timeline }
    }
}

#[async_trait]
impl Bus for TimingBus {
    async fn create_topic_with(&self, spec: &TopicSpec) -> Result<(), BusError> {
        self.inner.create_topic_with(spec).await
    }
    async fn describe_topic(&self, name: &str) -> Result<Option<TopicInfo>, BusError> {
        self.inner.describe_topic(name).await
    }
    async fn delete_topic(&self, name: &str) -> Result<(), BusError> {
        self.inner.delete_topic(name).await
    }
    async fn publish(&self, topic: &str, key: &[u8], payload: &[u8]) -> Result<(i32, i64), BusError> {
        let r = self.inner.publish(topic, key, payload).await?;
        let at = Instant::now();
        self.timeline.timed(|| {
            let m = Outgoing {
                topic: topic.to_owned(),
                key: Bytes::copy_from_slice(key),
                payload: Bytes::copy_from_slice(payload),
            };
            self.timeline.acknowledged(std::slice::from_ref(&m), at);
        });
        Ok(r)
    }
    async fn publish_all(&self, messages: Vec<Outgoing>) -> Result<(), BusError> {
        // Cheap clones (Bytes): the inner bus takes the vector.
        let copy = self.timeline.timed(|| messages.clone());
        self.inner.publish_all(copy).await?;
        let at = Instant::now();
        self.timeline.timed(|| self.timeline.acknowledged(&messages, at));
        self.timeline.timed(|| drop(messages));
        Ok(())
    }
    async fn subscribe(&self, group: &str, topics: &[String]) -> Result<Box<dyn Subscription>, BusError> {
        self.inner.subscribe(group, topics).await
    }
    async fn end_offsets(&self, topic: &str) -> Result<Vec<(i32, i64)>, BusError> {
        self.inner.end_offsets(topic).await
    }
    async fn ping(&self, topic: &str, timeout: Duration) -> Result<(), BusError> {
        self.inner.ping(topic, timeout).await
    }
}

/// CPU nanoseconds of the calling thread (`CLOCK_THREAD_CPUTIME_ID`: exact,
/// where `/proc` counts 10 ms ticks).
fn thread_cpu_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    (t.tv_sec.max(0) as u64) * 1_000_000_000 + t.tv_nsec.max(0) as u64
}

/// User + system CPU seconds of the calling thread (Linux
/// `/proc/thread-self/stat`; 0 elsewhere).
pub fn thread_cpu_seconds() -> f64 {
    cpu_seconds("/proc/thread-self/stat")
}

/// User + system CPU seconds from a Linux `stat` file of a process
/// (`/proc/self/stat`) or thread; 0 when it cannot be read.
pub fn cpu_seconds(stat_path: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(stat_path) else {
        return 0.0;
    };
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line: 11 and 12 after ')'.
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// Runs the load on a thread of its own and returns what it did. Each
/// call's recording id is entered in `timeline` before its INVITE.
pub async fn run(spec: LoadSpec, timeline: Arc<Timeline>) -> Result<LoadReport, LoadError> {
    if spec.calls == 0 || spec.seconds == 0 || spec.setup_per_s == 0 || spec.rtp_tasks == 0 {
        return Err(LoadError::Spec(
            "calls, seconds, setup rate and RTP tasks must be positive".into(),
        ));
    }
    if let Some(c) = spec.churn {
        if c.min_s < MIN_CALL_S || c.max_s < c.min_s {
            return Err(LoadError::Spec(format!(
                "churn call seconds {}-{}: expected {MIN_CALL_S} <= MIN <= MAX",
                c.min_s, c.max_s
            )));
        }
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("siprec-loadgen".into())
        .spawn(move || {
            let r = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(LoadError::from)
                .and_then(|rt| {
                    let cpu0 = thread_cpu_seconds();
                    let mut r = rt.block_on(generate(spec, timeline))?;
                    r.cpu_s = thread_cpu_seconds() - cpu0;
                    Ok(r)
                });
            let _ = tx.send(r);
        })?;
    rx.await
        .map_err(|_| LoadError::Spec("the generator thread ended without a report".into()))?
}

/// A call as the RTP tasks see it.
struct Media {
    index: usize,
    rec_id: String,
    dst: [SocketAddr; 2],
    ssrc: [u32; 2],
    packets: u64,
    sent: u64,
}

/// What the RTP tasks tell the SIP side.
enum Done {
    Call(usize),
    Task {
        packets: u64,
        errors: u64,
        lag: Duration,
        longest: Duration,
        first: Option<Instant>,
        last: Option<Instant>,
    },
}

/// An outstanding client transaction (INVITE or BYE) of call `index`.
struct Pending {
    wire: Vec<u8>,
    next: Instant,
    interval: Duration,
    deadline: Instant,
}

impl Pending {
    fn new(wire: Vec<u8>, now: Instant) -> Self {
        Self {
            wire,
            next: now + Duration::from_millis(500),
            interval: Duration::from_millis(500),
            deadline: now + Duration::from_secs(TRANSACTION_S),
        }
    }
}

enum SipOut {
    Udp(Arc<UdpSocket>, SocketAddr),
    Tcp(tokio::net::tcp::OwnedWriteHalf),
}

impl SipOut {
    async fn send(&mut self, wire: &[u8]) -> std::io::Result<()> {
        match self {
            SipOut::Udp(s, to) => s.send_to(wire, *to).await.map(|_| ()),
            SipOut::Tcp(w) => w.write_all(wire).await,
        }
    }
}

fn local_ip(target: SocketAddr) -> IpAddr {
    match target.ip() {
        IpAddr::V4(v) if v.is_loopback() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(v) if v.is_loopback() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
    }
}

/// The SIP Call-ID and the rs-metadata session id of call `generation` of
/// slot `i` of run `run`.
fn ids(run: &str, i: usize, generation: u32) -> (String, String) {
    if generation == 0 {
        (format!("lg-{run}-{i:06}@loadgen"), format!("bGc{run}{i:06}"))
    } else {
        (
            format!("lg-{run}-{i:06}-{generation}@loadgen"),
            format!("bGc{run}{i:06}g{generation}"),
        )
    }
}

/// One SRC dialog's requests, as [`run`] sends them (and the crate's wire
/// tests): SIP built with [`Message::to_bytes`], so `Content-Length` is
/// always right.
#[derive(Clone, Debug)]
pub struct SrcDialog {
    /// The SRS's URI: the Request-URI and the To.
    pub srs_uri: String,
    /// The Via's protocol and sent-by, e.g. `SIP/2.0/UDP 127.0.0.1:5099`.
    pub via: String,
    /// Makes the dialog's Via branches unique (with the CSeq and method).
    pub branch: String,
    /// The From header, with the SRC's tag.
    pub from: String,
    pub call_id: String,
    /// The Contact's URI.
    pub contact: String,
}

/// The multipart boundary of [`SrcDialog::invite`].
pub const BOUNDARY: &str = "siprec-src-boundary-42";

impl SrcDialog {
    /// A request in the dialog; one with a body (`(content type, bytes)`)
    /// carries `Require: siprec`.
    pub fn request(&self, method: &str, cseq: u32, to_tag: Option<&str>, body: Option<(&str, &[u8])>) -> Vec<u8> {
        let to = match to_tag {
            Some(t) => format!("<{}>;tag={t}", self.srs_uri),
            None => format!("<{}>", self.srs_uri),
        };
        let mut headers = vec![
            (
                "Via".to_owned(),
                format!("{};branch=z9hG4bK{}x{cseq}{method}", self.via, self.branch),
            ),
            ("Max-Forwards".to_owned(), "70".to_owned()),
            ("From".to_owned(), self.from.clone()),
            ("To".to_owned(), to),
            ("Call-ID".to_owned(), self.call_id.clone()),
            ("CSeq".to_owned(), format!("{cseq} {method}")),
            ("Contact".to_owned(), format!("<{}>;+sip.src", self.contact)),
        ];
        let body = match body {
            Some((ct, b)) => {
                headers.push(("Require".to_owned(), "siprec".to_owned()));
                headers.push(("Content-Type".to_owned(), ct.to_owned()));
                Bytes::copy_from_slice(b)
            }
            None => Bytes::new(),
        };
        Message {
            start: StartLine::Request {
                method: method.to_owned(),
                uri: self.srs_uri.clone(),
            },
            headers,
            body,
        }
        .to_bytes()
    }

    /// The SIPREC INVITE (CSeq 1): `multipart/mixed` of the SDP offer and
    /// the rs-metadata.
    pub fn invite(&self, sdp: &str, metadata: &str) -> Vec<u8> {
        let (ct, body) = sip::build_multipart(
            BOUNDARY,
            &[
                ("application/sdp", sdp.as_bytes()),
                ("application/rs-metadata+xml", metadata.as_bytes()),
            ],
        );
        self.request("INVITE", 1, None, Some((&ct, &body)))
    }
}

/// An SRC's SDP offer: two `a=sendonly` audio streams from `ip`, labels 1
/// (the customer's in [`metadata`]) and 2 (the agent's), each offering
/// `payloads` (e.g. `0 101`) followed by `attributes` lines (e.g.
/// `a=rtpmap:101 telephone-event/8000\r\n`).
pub fn offer_sdp(session: u64, ip: IpAddr, payloads: &str, attributes: &str) -> String {
    let family = if ip.is_ipv4() { "IP4" } else { "IP6" };
    format!(
        "v=0\r\no=src {session} 1 IN {family} {ip}\r\ns=-\r\nc=IN {family} {ip}\r\nt=0 0\r\n\
m=audio 9 RTP/AVP {payloads}\r\n{attributes}a=label:1\r\na=sendonly\r\n\
m=audio 9 RTP/AVP {payloads}\r\n{attributes}a=label:2\r\na=sendonly\r\n"
    )
}

/// RFC 7865 recording metadata for [`offer_sdp`]'s streams: participant
/// `cust` sends stream `s-cust` (label 1), `agent` sends `s-agent` (label
/// 2); `ucid`, when given, is the session's extension data.
pub fn metadata(session_id: &str, customer_aor: &str, agent_aor: &str, ucid: Option<&str>) -> String {
    let ext = ucid.map_or(String::new(), |u| {
        format!("<extensiondata><ucid>{u}</ucid></extensiondata>")
    });
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<recording xmlns='urn:ietf:params:xml:ns:recording:1'>
  <datamode>complete</datamode>
  <session session_id="{session_id}">{ext}</session>
  <participant participant_id="cust"><nameID aor="{customer_aor}"/></participant>
  <participant participant_id="agent"><nameID aor="{agent_aor}"/></participant>
  <stream stream_id="s-cust" session_id="{session_id}"><label>1</label></stream>
  <stream stream_id="s-agent" session_id="{session_id}"><label>2</label></stream>
  <participantstreamassoc participant_id="cust"><send>s-cust</send><recv>s-agent</recv></participantstreamassoc>
  <participantstreamassoc participant_id="agent"><send>s-agent</send><recv>s-cust</recv></participantstreamassoc>
</recording>"#
    )
}

/// The SRS's answer's RTP destinations for label 1 (the customer's stream)
/// and 2 (the agent's).
pub fn answer_destinations(m: &Message) -> Option<[SocketAddr; 2]> {
    let a = sdp::parse_offer(std::str::from_utf8(&m.body).ok()?).ok()?;
    let dst = |l: &str| {
        let s = a.streams.iter().find(|s| s.label.as_deref() == Some(l))?;
        Some(SocketAddr::new(s.remote_addr.parse().ok()?, s.remote_port))
    };
    Some([dst("1")?, dst("2")?])
}

/// The generator's simulated SRCs.
struct Src<'a> {
    run: &'a str,
    via: String,
    contact: String,
    target: SocketAddr,
}

impl Src<'_> {
    fn dialog(&self, i: usize, generation: u32) -> SrcDialog {
        let (call_id, _) = ids(self.run, i, generation);
        SrcDialog {
            srs_uri: format!("sip:srs@{}", self.target),
            via: self.via.clone(),
            branch: format!("{i:x}g{generation:x}"),
            from: format!("<sip:src@loadgen>;tag=src{i:x}g{generation:x}"),
            call_id,
            contact: self.contact.clone(),
        }
    }

    fn invite(&self, i: usize, generation: u32, codec: G711) -> Vec<u8> {
        let (_, session) = ids(self.run, i, generation);
        let ip = local_ip(self.target);
        let ip = if ip.is_unspecified() { self.target.ip() } else { ip };
        let sdp = offer_sdp(i as u64, ip, &codec.static_pt().to_string(), "");
        let md = metadata(
            &session,
            &format!("sip:+4790{i:06}@carrier.example"),
            &format!("sip:{:04}@bank.example", 4000 + i % 1000),
            None,
        );
        self.dialog(i, generation).invite(&sdp, &md)
    }
}

fn status(m: &Message) -> Option<u16> {
    match m.start {
        StartLine::Response { code, .. } => Some(code),
        StartLine::Request { .. } => None,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for its INVITE's turn at the setup rate.
    Queued,
    Inviting,
    Talking,
    Ending,
    Over,
}

/// A call slot: the call it plays now.
struct Slot {
    phase: Phase,
    generation: u32,
    tag: Option<String>,
}

/// The call slots and the INVITE queue.
struct Slots {
    slots: Vec<Slot>,
    ready: VecDeque<usize>,
    /// SIP Call-ID of each slot's current call.
    by_call_id: HashMap<String, usize>,
    /// Slots not over.
    open: usize,
}

impl Slots {
    /// Slot `i`'s call is over; with `again`, the slot queues its next call.
    fn finish(&mut self, i: usize, run: &str, again: bool) {
        let s = &mut self.slots[i];
        self.by_call_id.remove(&ids(run, i, s.generation).0);
        s.tag = None;
        if again {
            s.generation += 1;
            s.phase = Phase::Queued;
            self.ready.push_back(i);
        } else {
            s.phase = Phase::Over;
            self.open -= 1;
        }
    }
}

async fn generate(spec: LoadSpec, timeline: Arc<Timeline>) -> Result<LoadReport, LoadError> {
    let run = format!("{:08x}", (std::process::id() as u64) << 16 ^ u64::from(rand_seed()));
    let bind = SocketAddr::new(local_ip(spec.target), 0);
    let (msg_tx, mut msg_rx) = mpsc::unbounded_channel::<Message>();
    let (mut out, local) = match spec.transport {
        Transport::Udp => {
            let s = Arc::new(UdpSocket::bind(bind).await?);
            let local = s.local_addr()?;
            let r = s.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65_536];
                while let Ok((n, _)) = r.recv_from(&mut buf).await {
                    if let Ok((m, _)) = Message::parse(&buf[..n], false) {
                        if msg_tx.send(m).is_err() {
                            return;
                        }
                    }
                }
            });
            (SipOut::Udp(s, spec.target), local)
        }
        Transport::Tcp => {
            let s = TcpStream::connect(spec.target).await?;
            s.set_nodelay(true)?;
            let local = s.local_addr()?;
            let (mut r, w) = s.into_split();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = vec![0u8; 65_536];
                loop {
                    let n = match r.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    buf.extend_from_slice(&chunk[..n]);
                    loop {
                        match Message::parse(&buf, true) {
                            Ok((m, used)) => {
                                buf.drain(..used);
                                if msg_tx.send(m).is_err() {
                                    return;
                                }
                            }
                            Err(SipError::Incomplete) => break,
                            Err(_) => return,
                        }
                    }
                }
            });
            (SipOut::Tcp(w), local)
        }
        // TLS costs the handshake, not the packet path this measures.
        Transport::Tls => return Err(LoadError::Spec("SIP over UDP or TCP only, not TLS".into())),
    };
    let tname = match spec.transport {
        Transport::Udp => "UDP",
        Transport::Tcp | Transport::Tls => "TCP",
    };
    let src = Src {
        run: &run,
        via: format!("SIP/2.0/{tname} {local}"),
        contact: format!("sip:src@{local}"),
        target: spec.target,
    };

    // RTP timer tasks, their phases spread over the 20 ms period.
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
    let t0 = Instant::now() + Duration::from_millis(50);
    let mut media_tx = Vec::new();
    {
        let mut t = timeline.lock();
        t.ticks = vec![Ticks::default(); spec.rtp_tasks];
        t.fold = spec.churn.is_some();
    }
    for task in 0..spec.rtp_tasks {
        let (tx, rx) = mpsc::unbounded_channel::<Media>();
        media_tx.push(tx);
        let sock = UdpSocket::bind(bind).await?;
        let phase = Duration::from_micros(PACKET_MS * 1000 * task as u64 / spec.rtp_tasks as u64);
        tokio::spawn(rtp_task(
            task,
            sock,
            t0 + phase,
            rx,
            done_tx.clone(),
            timeline.clone(),
            spec.codec,
        ));
    }
    drop(done_tx);

    let mut report = LoadReport {
        calls: spec.calls,
        ..LoadReport::default()
    };
    let mut s = Slots {
        slots: (0..spec.calls)
            .map(|_| Slot {
                phase: Phase::Queued,
                generation: 0,
                tag: None,
            })
            .collect(),
        ready: (0..spec.calls).collect(),
        by_call_id: HashMap::new(),
        open: spec.calls,
    };
    let mut pending: HashMap<usize, Pending> = HashMap::new();
    let packets = spec.seconds * 1000 / PACKET_MS;
    let started = Instant::now();
    // With churn, no call starts this close to the end, and none outlasts it.
    let end = started + Duration::from_secs(spec.seconds);
    let setup_gap = Duration::from_secs(1) / spec.setup_per_s;
    let mut next_invite_at = started;
    // Slots whose first call has not had its INVITE's final answer.
    let mut first_wave = spec.calls;
    let mut tasks_left = spec.rtp_tasks;
    let (mut all_up, mut first_done): (Option<CpuMark>, Option<CpuMark>) = (None, None);
    let mut first_rtp: Option<Instant> = None;
    let mut last_rtp: Option<Instant> = None;
    let mut timer = tokio::time::interval(Duration::from_millis(setup_gap.as_millis().clamp(1, 50) as u64));
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let udp = spec.transport == Transport::Udp;
    // Churn: whether a slot whose call is over starts another now.
    let again = |now: Instant| spec.churn.is_some() && now + Duration::from_secs(MIN_CALL_S) < end;
    while s.open > 0 || tasks_left > 0 {
        tokio::select! {
            m = msg_rx.recv() => {
                let Some(m) = m else { break };
                let (Some(code), Some(i)) = (status(&m), m.call_id().and_then(|c| s.by_call_id.get(c)).copied()) else {
                    continue;
                };
                let method = m.cseq().map(|(_, meth)| meth.to_owned()).unwrap_or_default();
                if code < 200 {
                    // Provisional: the server has it; stop retransmitting (RFC 3261 17.1.1.2).
                    if let Some(p) = pending.get_mut(&i) {
                        p.next = p.deadline;
                    }
                    continue;
                }
                let generation = s.slots[i].generation;
                match (method.as_str(), s.slots[i].phase) {
                    ("INVITE", Phase::Inviting) => {
                        pending.remove(&i);
                        if generation == 0 {
                            first_wave -= 1;
                        }
                        let dst = if code == 200 { answer_destinations(&m) } else { None };
                        let Some(dst) = dst else {
                            *report.failed.entry(code).or_default() += 1;
                            if code != 200 && udp {
                                // Non-2xx final responses are acknowledged in the transaction.
                                out.send(&src.dialog(i, generation).request("ACK", 1, m.tag("To"), None)).await?;
                            }
                            s.finish(i, &run, again(Instant::now()));
                            continue;
                        };
                        s.slots[i].tag = m.tag("To").map(str::to_owned);
                        out.send(&src.dialog(i, generation).request("ACK", 1, s.slots[i].tag.as_deref(), None)).await?;
                        report.established += 1;
                        s.slots[i].phase = Phase::Talking;
                        let packets = match spec.churn {
                            // Clipped to the run's end.
                            Some(c) => c
                                .packets(i, generation)
                                .min(end.saturating_duration_since(Instant::now()).as_millis() as u64 / PACKET_MS)
                                .max(1),
                            None => packets,
                        };
                        let (call_id, session) = ids(&run, i, generation);
                        let media = Media {
                            index: i,
                            rec_id: session::call_id(&call_id, Some(&session)),
                            // Label 2 is the agent's stream, 1 the customer's.
                            dst,
                            ssrc: [0x1000_0000 + i as u32 * 2, 0x1000_0001 + i as u32 * 2],
                            packets,
                            sent: 0,
                        };
                        let _ = media_tx[i % spec.rtp_tasks].send(media);
                    }
                    ("INVITE", _) if code == 200 => {
                        // The 200 again: our ACK was lost.
                        out.send(&src.dialog(i, generation).request("ACK", 1, s.slots[i].tag.as_deref(), None)).await?;
                    }
                    ("BYE", Phase::Ending) => {
                        pending.remove(&i);
                        if code == 200 {
                            report.ended += 1;
                        }
                        let now = Instant::now();
                        let again = again(now);
                        if !again && spec.churn.is_some() && first_done.is_none() {
                            first_done = Some(CpuMark::now(&timeline));
                        }
                        s.finish(i, &run, again);
                    }
                    _ => {}
                }
            }
            d = done_rx.recv() => {
                match d {
                    Some(Done::Call(i)) => {
                        if spec.churn.is_none() && first_done.is_none() {
                            first_done = Some(CpuMark::now(&timeline));
                        }
                        let wire = src.dialog(i, s.slots[i].generation).request("BYE", 2, s.slots[i].tag.as_deref(), None);
                        out.send(&wire).await?;
                        s.slots[i].phase = Phase::Ending;
                        pending.insert(i, Pending::new(wire, Instant::now()));
                    }
                    Some(Done::Task { packets, errors, lag, longest, first, last }) => {
                        tasks_left -= 1;
                        report.packets_sent += packets;
                        report.send_errors += errors;
                        report.max_tick_lag_ms = report.max_tick_lag_ms.max(lag.as_secs_f64() * 1000.0);
                        report.max_tick_ms = report.max_tick_ms.max(longest.as_secs_f64() * 1000.0);
                        first_rtp = match (first_rtp, first) { (Some(a), Some(b)) => Some(a.min(b)), (a, b) => a.or(b) };
                        last_rtp = match (last_rtp, last) { (Some(a), Some(b)) => Some(a.max(b)), (a, b) => a.or(b) };
                    }
                    None => tasks_left = 0,
                }
            }
            _ = timer.tick() => {
                let now = Instant::now();
                // New INVITEs at the setup rate; no credit saved while none waits.
                while now >= next_invite_at {
                    let Some(i) = s.ready.pop_front() else {
                        next_invite_at = now;
                        break;
                    };
                    let generation = s.slots[i].generation;
                    let (call_id, session) = ids(&run, i, generation);
                    timeline.register(session::call_id(&call_id, Some(&session)), i % spec.rtp_tasks);
                    s.by_call_id.insert(call_id, i);
                    s.slots[i].phase = Phase::Inviting;
                    let wire = src.invite(i, generation, spec.codec);
                    out.send(&wire).await?;
                    report.invites += 1;
                    pending.insert(i, Pending::new(wire, now));
                    next_invite_at += setup_gap;
                }
                // Retransmissions over UDP (RFC 3261 Timers A and E) and timeouts.
                let mut expired = Vec::new();
                for (i, p) in pending.iter_mut() {
                    if now >= p.deadline {
                        expired.push(*i);
                    } else if udp && now >= p.next {
                        out.send(&p.wire).await?;
                        p.interval = (p.interval * 2).min(Duration::from_secs(4));
                        p.next = now + p.interval;
                    }
                }
                for i in expired {
                    pending.remove(&i);
                    if s.slots[i].phase == Phase::Inviting {
                        *report.failed.entry(0).or_default() += 1;
                        if s.slots[i].generation == 0 {
                            first_wave -= 1;
                        }
                    }
                    s.finish(i, &run, again(now));
                }
                if s.open == 0 {
                    // No call left to talk: let the RTP tasks finish.
                    media_tx.clear();
                } else if all_up.is_none() && first_wave == 0 {
                    // Every first call is set up or failed. Without churn no
                    // call follows: tasks may end when their calls do.
                    if spec.churn.is_none() {
                        media_tx.clear();
                    }
                    all_up = Some(CpuMark::now(&timeline));
                }
            }
        }
    }
    report.wall_s = started.elapsed().as_secs_f64();
    report.steady = match (all_up, first_done) {
        (Some(a), Some(b)) if b.at > a.at => Some(Steady {
            wall_s: b.at.duration_since(a.at).as_secs_f64(),
            process_cpu_s: b.process - a.process,
            generator_cpu_s: b.thread - a.thread,
            timing_cpu_s: b.timing - a.timing,
        }),
        _ => None,
    };
    report.media_s = match (first_rtp, last_rtp) {
        (Some(a), Some(b)) => b.duration_since(a).as_secs_f64() + PACKET_MS as f64 / 1000.0,
        _ => 0.0,
    };
    Ok(report)
}

fn rand_seed() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
}

/// One RTP timer task: every 20 ms from `start`, a packet on each stream
/// of each call it owns; a call's last packet sent, it tells the SIP side.
async fn rtp_task(
    task: usize,
    sock: UdpSocket,
    start: Instant,
    mut rx: mpsc::UnboundedReceiver<Media>,
    done: mpsc::UnboundedSender<Done>,
    timeline: Arc<Timeline>,
    codec: G711,
) {
    // Audio: any byte is a G.711 sample; a fixed pseudo-random second of it.
    let mut x = 0x2545_f491u32 ^ task as u32;
    let audio: Vec<u8> = (0..8000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect();
    let pt = codec.static_pt();
    let mut calls: Vec<Media> = Vec::new();
    let mut open = true;
    let (mut packets, mut errors) = (0u64, 0u64);
    let (mut lag, mut longest) = (Duration::ZERO, Duration::ZERO);
    let (mut first, mut last) = (None, None);
    let mut k = 0usize;
    let period = Duration::from_millis(PACKET_MS);
    loop {
        let due = start + period * k as u32;
        let now = Instant::now();
        if due > now {
            tokio::time::sleep_until(due.into()).await;
        } else {
            lag = lag.max(now - due);
        }
        while open {
            match rx.try_recv() {
                Ok(m) => {
                    if let Some(c) = timeline.lock().calls.get_mut(&m.rec_id) {
                        c.tick0 = Some(k);
                        c.packets = m.packets;
                    }
                    calls.push(m);
                }
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => open = false,
            }
        }
        if !open && calls.is_empty() {
            break;
        }
        let at = Instant::now();
        timeline.lock().ticks[task].push(at);
        for c in &mut calls {
            let n = c.sent;
            let off = (n as usize * SAMPLES as usize + c.index * 400) % (audio.len() - SAMPLES as usize);
            for s in 0..2 {
                let b = rtp::build(
                    pt,
                    n as u16,
                    (n as u32).wrapping_mul(SAMPLES),
                    c.ssrc[s],
                    n == 0,
                    &audio[off..off + SAMPLES as usize],
                );
                match sock.send_to(&b, c.dst[s]).await {
                    Ok(_) => packets += 1,
                    Err(_) => errors += 1,
                }
            }
            c.sent += 1;
        }
        if !calls.is_empty() {
            first.get_or_insert(at);
            last = Some(at);
        }
        longest = longest.max(at.elapsed());
        calls.retain(|c| {
            let over = c.sent >= c.packets;
            if over {
                let _ = done.send(Done::Call(c.index));
            }
            !over
        });
        k += 1;
    }
    let _ = done.send(Done::Task {
        packets,
        errors,
        lag,
        longest,
        first,
        last,
    });
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_are_within_half_a_percent_of_the_exact_ones() {
        let mut x = 0x9E37_79B9u64;
        let mut exact = Vec::new();
        let mut h = Histogram::default();
        for _ in 0..20_000 {
            x = splitmix64(x);
            // Microseconds from 0 to about 30 s, most of them small.
            let us = (x % 30_000_000) >> (x % 13);
            exact.push(us);
            h.add(Duration::from_micros(us));
        }
        exact.sort_unstable();
        for p in [0.0, 0.5, 0.9, 0.99, 1.0] {
            let want = exact[((exact.len() - 1) as f64 * p) as usize] as f64 / 1000.0;
            let got = h.quantile_ms(p);
            assert!(
                (got - want).abs() <= want * 0.005 + 0.001,
                "p{p}: {got} ms, exact {want} ms"
            );
        }
        let l = h.latency();
        assert_eq!((l.samples, l.max_ms), (20_000, *exact.last().unwrap() as f64 / 1000.0));
        assert!(Histogram::default().latency().p99_ms.is_nan());
    }

    #[test]
    fn tick_ring_keeps_its_window_and_answers_older_ticks_with_its_oldest() {
        let t0 = Instant::now();
        let mut r = Ticks::default();
        for k in 0..TICK_WINDOW + 10 {
            r.push(t0 + Duration::from_millis(k as u64 * PACKET_MS));
        }
        assert_eq!(r.at.len(), TICK_WINDOW);
        assert_eq!(
            r.get(TICK_WINDOW + 9),
            Some(t0 + Duration::from_millis((TICK_WINDOW as u64 + 9) * PACKET_MS))
        );
        assert_eq!(r.get(3), Some(t0 + Duration::from_millis(10 * PACKET_MS)));
        assert_eq!(r.get(TICK_WINDOW + 10), None);
    }
}
