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
use std::collections::{BTreeMap, HashMap};
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
}

/// What the generator did and saw.
#[derive(Clone, Debug, Default)]
pub struct LoadReport {
    pub calls: usize,
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
    /// last packet, when all calls talk at once (None when no such time).
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
}

#[derive(Clone, Copy)]
struct CpuMark {
    at: Instant,
    process: f64,
    thread: f64,
}

impl CpuMark {
    fn now() -> Self {
        Self {
            at: Instant::now(),
            process: cpu_seconds("/proc/self/stat"),
            thread: thread_cpu_seconds(),
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

#[derive(Default)]
struct TimelineInner {
    calls: HashMap<String, CallTrack>,
    ticks: Vec<Vec<Instant>>,
    last_packet_ms: Vec<f32>,
    first_packet_ms: Vec<f32>,
    other_events: u64,
}

/// Send times of the generator's ticks and what the bus acknowledged: the
/// meeting point of [`run`] and [`TimingBus`].
#[derive(Default)]
pub struct Timeline {
    inner: Mutex<TimelineInner>,
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

/// Latency quantiles in milliseconds.
#[derive(Clone, Copy, Debug, Default)]
pub struct Latency {
    pub samples: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    fn of(v: &[f32]) -> Latency {
        let mut v = v.to_vec();
        v.sort_by(|a, b| a.total_cmp(b));
        let q = |p: f64| {
            v.get(((v.len().max(1) - 1) as f64 * p) as usize)
                .map_or(f64::NAN, |x| *x as f64)
        };
        Latency {
            samples: v.len(),
            p50_ms: q(0.5),
            p99_ms: q(0.99),
            max_ms: v.last().map_or(f64::NAN, |x| *x as f64),
        }
    }
}

impl Timeline {
    fn lock(&self) -> std::sync::MutexGuard<'_, TimelineInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Latency from each chunk's last packet's send to its acknowledgement,
    /// and from its first packet's.
    pub fn latency(&self) -> (Latency, Latency) {
        let t = self.lock();
        (Latency::of(&t.last_packet_ms), Latency::of(&t.first_packet_ms))
    }

    /// Every call the generator set up, by recording call id.
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
        self.lock().calls.values().filter(|c| c.ended).count()
    }

    /// Events of calls the generator did not set up (should be none).
    pub fn foreign_events(&self) -> u64 {
        self.lock().other_events
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
                Some(Event::CallEnded(_)) => c.ended = true,
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
                    let sent = |i: u64| ticks.get(tick0 + i as usize).map(|s| at.duration_since(*s));
                    let first = off / PACKET_MS;
                    let last = ((off + dur) / PACKET_MS).max(first + 1) - 1;
                    if let (Some(f), Some(l)) = (sent(first), sent(last)) {
                        t.first_packet_ms.push(f.as_secs_f32() * 1000.0);
                        t.last_packet_ms.push(l.as_secs_f32() * 1000.0);
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
        let m = Outgoing {
            topic: topic.to_owned(),
            key: Bytes::copy_from_slice(key),
            payload: Bytes::copy_from_slice(payload),
        };
        self.timeline.acknowledged(std::slice::from_ref(&m), Instant::now());
        Ok(r)
    }
    async fn publish_all(&self, messages: Vec<Outgoing>) -> Result<(), BusError> {
        // Cheap clones (Bytes): the inner bus takes the vector.
        self.inner.publish_all(messages.clone()).await?;
        self.timeline.acknowledged(&messages, Instant::now());
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

/// Runs the load on a thread of its own and returns what it did. The
/// calls' recording ids are entered in `timeline` before their INVITEs.
pub async fn run(spec: LoadSpec, timeline: Arc<Timeline>) -> Result<LoadReport, LoadError> {
    if spec.calls == 0 || spec.seconds == 0 || spec.setup_per_s == 0 || spec.rtp_tasks == 0 {
        return Err(LoadError::Spec(
            "calls, seconds, setup rate and RTP tasks must be positive".into(),
        ));
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

/// The SIP Call-ID and the rs-metadata session id of call `i` of run `run`.
fn ids(run: &str, i: usize) -> (String, String) {
    (format!("lg-{run}-{i:06}@loadgen"), format!("bGc{run}{i:06}"))
}

/// One simulated SRC's requests.
struct Src<'a> {
    run: &'a str,
    via: String,
    contact: String,
    target: SocketAddr,
}

impl Src<'_> {
    fn request(
        &self,
        method: &str,
        i: usize,
        cseq: u32,
        to_tag: Option<&str>,
        body: Option<(String, Vec<u8>)>,
    ) -> Vec<u8> {
        let (call_id, _) = ids(self.run, i);
        let uri = format!("sip:srs@{}", self.target);
        let to = match to_tag {
            Some(t) => format!("<{uri}>;tag={t}"),
            None => format!("<{uri}>"),
        };
        let mut headers = vec![
            (
                "Via".to_owned(),
                format!("{};branch=z9hG4bK{i:x}x{cseq}{method}", self.via),
            ),
            ("Max-Forwards".to_owned(), "70".to_owned()),
            ("From".to_owned(), format!("<sip:src@loadgen>;tag=src{i:x}")),
            ("To".to_owned(), to),
            ("Call-ID".to_owned(), call_id),
            ("CSeq".to_owned(), format!("{cseq} {method}")),
            ("Contact".to_owned(), format!("<{}>;+sip.src", self.contact)),
        ];
        let body = match body {
            Some((ct, b)) => {
                headers.push(("Require".to_owned(), "siprec".to_owned()));
                headers.push(("Content-Type".to_owned(), ct));
                Bytes::from(b)
            }
            None => Bytes::new(),
        };
        Message {
            start: StartLine::Request {
                method: method.to_owned(),
                uri,
            },
            headers,
            body,
        }
        .to_bytes()
    }

    fn invite(&self, i: usize, codec: G711) -> Vec<u8> {
        let (_, session) = ids(self.run, i);
        let pt = codec.static_pt();
        let ip = local_ip(self.target);
        let ip = if ip.is_unspecified() { self.target.ip() } else { ip };
        let family = if ip.is_ipv4() { "IP4" } else { "IP6" };
        let sdp = format!(
            "v=0\r\no=loadgen {i} 1 IN {family} {ip}\r\ns=-\r\nc=IN {family} {ip}\r\nt=0 0\r\n\
m=audio 9 RTP/AVP {pt}\r\na=label:1\r\na=sendonly\r\n\
m=audio 9 RTP/AVP {pt}\r\na=label:2\r\na=sendonly\r\n"
        );
        let metadata = format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<recording xmlns='urn:ietf:params:xml:ns:recording:1'>
  <datamode>complete</datamode>
  <session session_id="{session}"></session>
  <participant participant_id="c"><nameID aor="sip:+4790{i:06}@carrier.example"/></participant>
  <participant participant_id="a"><nameID aor="sip:{:04}@bank.example"/></participant>
  <stream stream_id="sc" session_id="{session}"><label>1</label></stream>
  <stream stream_id="sa" session_id="{session}"><label>2</label></stream>
  <participantstreamassoc participant_id="c"><send>sc</send><recv>sa</recv></participantstreamassoc>
  <participantstreamassoc participant_id="a"><send>sa</send><recv>sc</recv></participantstreamassoc>
</recording>"#,
            4000 + i % 1000
        );
        let (ct, body) = sip::build_multipart(
            "loadgen-boundary",
            &[
                ("application/sdp", sdp.as_bytes()),
                ("application/rs-metadata+xml", metadata.as_bytes()),
            ],
        );
        self.request("INVITE", i, 1, None, Some((ct, body)))
    }
}

/// The answer's RTP destinations for label 1 (customer) and 2 (agent).
fn answer_destinations(m: &Message) -> Option<[SocketAddr; 2]> {
    let a = sdp::parse_offer(std::str::from_utf8(&m.body).ok()?).ok()?;
    let dst = |l: &str| {
        let s = a.streams.iter().find(|s| s.label.as_deref() == Some(l))?;
        Some(SocketAddr::new(s.remote_addr.parse().ok()?, s.remote_port))
    };
    Some([dst("1")?, dst("2")?])
}

fn status(m: &Message) -> Option<u16> {
    match m.start {
        StartLine::Response { code, .. } => Some(code),
        StartLine::Request { .. } => None,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Inviting,
    Talking,
    Ending,
    Over,
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
        t.ticks = vec![Vec::new(); spec.rtp_tasks];
        for i in 0..spec.calls {
            let (call_id, session) = ids(&run, i);
            t.calls.insert(
                session::call_id(&call_id, Some(&session)),
                CallTrack {
                    task: i % spec.rtp_tasks,
                    ..CallTrack::default()
                },
            );
        }
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
            run.clone(),
        ));
    }
    drop(done_tx);

    let mut report = LoadReport {
        calls: spec.calls,
        ..LoadReport::default()
    };
    let mut phase = vec![Phase::Inviting; spec.calls];
    let mut tags: Vec<Option<String>> = vec![None; spec.calls];
    let mut pending: HashMap<usize, Pending> = HashMap::new();
    let by_call_id: HashMap<String, usize> = (0..spec.calls).map(|i| (ids(&run, i).0, i)).collect();
    let packets = spec.seconds * 1000 / PACKET_MS;
    let started = Instant::now();
    let setup_gap = Duration::from_secs(1) / spec.setup_per_s;
    let mut next_invite = 0usize;
    let mut open = spec.calls;
    let mut tasks_left = spec.rtp_tasks;
    let (mut all_up, mut first_done): (Option<CpuMark>, Option<CpuMark>) = (None, None);
    let mut first_rtp: Option<Instant> = None;
    let mut last_rtp: Option<Instant> = None;
    let mut timer = tokio::time::interval(Duration::from_millis(setup_gap.as_millis().clamp(1, 50) as u64));
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let udp = spec.transport == Transport::Udp;
    while open > 0 || tasks_left > 0 {
        tokio::select! {
            m = msg_rx.recv() => {
                let Some(m) = m else { break };
                let (Some(code), Some(i)) = (status(&m), m.call_id().and_then(|c| by_call_id.get(c)).copied()) else {
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
                match (method.as_str(), phase[i]) {
                    ("INVITE", Phase::Inviting) => {
                        pending.remove(&i);
                        if code == 200 {
                            let Some(dst) = answer_destinations(&m) else {
                                *report.failed.entry(code).or_default() += 1;
                                phase[i] = Phase::Over;
                                open -= 1;
                                continue;
                            };
                            tags[i] = m.tag("To").map(str::to_owned);
                            out.send(&src.request("ACK", i, 1, tags[i].as_deref(), None)).await?;
                            report.established += 1;
                            phase[i] = Phase::Talking;
                            let media = Media {
                                index: i,
                                // Label 2 is the agent's stream, 1 the customer's.
                                dst,
                                ssrc: [0x1000_0000 + i as u32 * 2, 0x1000_0001 + i as u32 * 2],
                                packets,
                                sent: 0,
                            };
                            let _ = media_tx[i % spec.rtp_tasks].send(media);
                        } else {
                            *report.failed.entry(code).or_default() += 1;
                            if udp {
                                // Non-2xx final responses are acknowledged in the transaction.
                                out.send(&src.request("ACK", i, 1, m.tag("To"), None)).await?;
                            }
                            phase[i] = Phase::Over;
                            open -= 1;
                        }
                    }
                    ("INVITE", _) if code == 200 => {
                        // The 200 again: our ACK was lost.
                        out.send(&src.request("ACK", i, 1, tags[i].as_deref(), None)).await?;
                    }
                    ("BYE", Phase::Ending) => {
                        pending.remove(&i);
                        if code == 200 {
                            report.ended += 1;
                        }
                        phase[i] = Phase::Over;
                        open -= 1;
                    }
                    _ => {}
                }
            }
            d = done_rx.recv() => {
                match d {
                    Some(Done::Call(i)) => {
                        if first_done.is_none() {
                            first_done = Some(CpuMark::now());
                        }
                        let wire = src.request("BYE", i, 2, tags[i].as_deref(), None);
                        out.send(&wire).await?;
                        phase[i] = Phase::Ending;
                        let now = Instant::now();
                        pending.insert(i, Pending {
                            wire,
                            next: now + Duration::from_millis(500),
                            interval: Duration::from_millis(500),
                            deadline: now + Duration::from_secs(TRANSACTION_S),
                        });
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
                // New INVITEs at the setup rate.
                let due = (now.duration_since(started).as_secs_f64() / setup_gap.as_secs_f64().max(1e-9)) as usize + 1;
                while next_invite < spec.calls && next_invite < due {
                    let i = next_invite;
                    let wire = src.invite(i, spec.codec);
                    out.send(&wire).await?;
                    pending.insert(i, Pending {
                        wire,
                        next: now + Duration::from_millis(500),
                        interval: Duration::from_millis(500),
                        deadline: now + Duration::from_secs(TRANSACTION_S),
                    });
                    next_invite += 1;
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
                    if phase[i] == Phase::Inviting {
                        *report.failed.entry(0).or_default() += 1;
                    }
                    phase[i] = Phase::Over;
                    open -= 1;
                }
                if open == 0 {
                    // No call left to talk: let the RTP tasks finish.
                    media_tx.clear();
                } else if all_up.is_none() && next_invite == spec.calls && phase.iter().all(|p| *p != Phase::Inviting) {
                    // Every call is set up or failed: tasks may end when their calls do.
                    media_tx.clear();
                    all_up = Some(CpuMark::now());
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
#[allow(clippy::too_many_arguments)]
async fn rtp_task(
    task: usize,
    sock: UdpSocket,
    start: Instant,
    mut rx: mpsc::UnboundedReceiver<Media>,
    done: mpsc::UnboundedSender<Done>,
    timeline: Arc<Timeline>,
    codec: G711,
    run: String,
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
                    let (call_id, session) = ids(&run, m.index);
                    if let Some(c) = timeline
                        .lock()
                        .calls
                        .get_mut(&session::call_id(&call_id, Some(&session)))
                    {
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
