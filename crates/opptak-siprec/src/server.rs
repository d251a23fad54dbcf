//! The SIPREC server's IO: SIP over UDP, TCP and TLS, the RTP port pool, the
//! publisher. One core task owns every session (no locks on the packet
//! path); SIP socket tasks and the RTP receive threads (`rtp_rx`) feed it,
//! a publisher task writes its events to the bus in order.
//!
//! Memory is bounded when the bus falls behind: past [`BACKLOG_EVENTS`]
//! events not yet published, the core takes no RTP (the receive threads
//! block, the kernel drops what the sockets cannot hold) and refuses new
//! sessions with 503.
//!
//! The INVITE's 200 OK is sent once the session's `CallStarted` is durable
//! on the bus: a session the bus cannot take is refused (503), and a
//! CANCEL that arrives before then gets the INVITE a 487.

use crate::config::{SiprecConfig, Transport, Validated};
use crate::metadata::{self, Metadata, Sides};
use crate::rtp;
use crate::rtp_rx::{self, Batch, Receivers, Spares};
use crate::sdp::{self, Offer};
use crate::session::{self, Notice, Recording, Side};
use crate::sip::{self, Message, SipError, StartLine};
use bytes::Bytes;
use opptak_bus::{Bus, Outgoing};
use opptak_domain::model::{Desk, ServiceCategory};
use opptak_domain::retention::Policy;
use opptak_proto::v1;
use opptak_proto::Message as _;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("siprec config: {0}")]
    Config(String),
    #[error("siprec cannot bind {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
}

/// Counts of this server (the process-wide metrics have them too).
#[derive(Debug, Default)]
pub struct Counters {
    pub sessions_started: AtomicU64,
    pub sessions_ended: AtomicU64,
    pub rtp_unknown_session: AtomicU64,
    pub rtp_invalid: AtomicU64,
    pub sip_unreadable: AtomicU64,
    pub tone_events: AtomicU64,
    /// RTP packets of a session's streams taken in.
    pub rtp_received: AtomicU64,
    /// Of them, per ended session: lost (a gap the jitter buffer gave up
    /// on), late (after their place was written) and duplicates.
    pub rtp_lost: AtomicU64,
    pub rtp_late: AtomicU64,
    pub rtp_duplicates: AtomicU64,
    /// RTP ports of the pool owned by a session now (a gauge).
    pub rtp_slots_in_use: AtomicU64,
    /// TLS connections refused in the handshake (no or a bad client
    /// certificate under mutual TLS, not TLS at all, too slow).
    pub tls_refused: AtomicU64,
}

/// A running server: its SIP addresses, counters, and how to stop it.
pub struct ServerHandle {
    pub sip: Vec<(Transport, SocketAddr)>,
    /// The RTP ports bound (the even ports of `siprec.rtp_ports`).
    pub rtp_ports: Vec<u16>,
    pub counters: Arc<Counters>,
    core_tx: mpsc::UnboundedSender<Input>,
    core: JoinHandle<()>,
    tasks: Vec<JoinHandle<()>>,
    _receivers: Receivers,
}

impl ServerHandle {
    pub fn sip_addr(&self, transport: Transport) -> Option<SocketAddr> {
        self.sip.iter().find(|(t, _)| *t == transport).map(|(_, a)| *a)
    }

    /// Ends every session (CallEnded published), then stops listening.
    pub async fn stop(self) {
        let (tx, rx) = oneshot::channel();
        if self.core_tx.send(Input::Stop(tx)).is_ok() {
            let _ = rx.await;
        }
        for t in &self.tasks {
            t.abort();
        }
        self.core.abort();
    }

    /// Resolves if the server ends on its own (it should not).
    pub async fn wait(&mut self) {
        let _ = (&mut self.core).await;
    }
}

#[derive(Clone)]
enum Reply {
    Udp(Arc<UdpSocket>, SocketAddr),
    Tcp(mpsc::UnboundedSender<Vec<u8>>),
    /// `sips`: the request was to a `sips:` URI, so our Contact is one too
    /// (RFC 5630 3.1.3); else `sip:` with `transport=tls`.
    Tls {
        tx: mpsc::UnboundedSender<Vec<u8>>,
        sips: bool,
    },
}

impl Reply {
    fn send(&self, bytes: Vec<u8>) {
        match self {
            Reply::Udp(s, to) => {
                if let Err(e) = s.try_send_to(&bytes, *to) {
                    tracing::warn!(error = %e, to = %to, "siprec sip send failed");
                }
            }
            Reply::Tcp(tx) | Reply::Tls { tx, .. } => {
                let _ = tx.send(bytes);
            }
        }
    }

    fn transport(&self) -> &'static str {
        match self {
            Reply::Udp(..) => "UDP",
            Reply::Tcp(_) => "TCP",
            Reply::Tls { .. } => "TLS",
        }
    }
}

enum Input {
    Sip {
        msg: Message,
        reply: Reply,
    },
    /// A message refused before its body was read; `head` when its headers
    /// could be read, so a response can be sent.
    Unreadable {
        head: Option<Message>,
        too_large: bool,
        reply: Reply,
    },
    Published {
        sip_call_id: String,
        ok: bool,
    },
    Tick,
    Stop(oneshot::Sender<()>),
}

struct PublishJob {
    events: Vec<v1::TelephonyEvent>,
    /// Tell the core when these are durable (the CallStarted of a session).
    notify: Option<String>,
    done: Option<oneshot::Sender<()>>,
}

/// Binds the listeners and the RTP pool and starts serving. `topic` is the
/// telephony topic's full name; `policy` the retention policy in force (a
/// transfer never takes a call out of a context it archives).
pub async fn start(
    config: &SiprecConfig,
    bus: Arc<dyn Bus>,
    topic: &str,
    policy: Arc<Policy>,
) -> Result<ServerHandle, ServerError> {
    let v: Validated = config.validate().map_err(ServerError::Config)?;
    let (core_tx, core_rx) = mpsc::unbounded_channel();
    let counters = Arc::new(Counters::default());
    let mut tasks = Vec::new();
    let mut sip_addrs = Vec::new();
    // The certificate is read before anything is bound: a bad file stops
    // the start with nothing left listening.
    let acceptor = if v.listen.iter().any(|(t, _)| *t == Transport::Tls) {
        Some(tls_acceptor(&config.tls)?)
    } else {
        None
    };
    for (t, addr) in &v.listen {
        match t {
            Transport::Udp => {
                let s = UdpSocket::bind(addr).await.map_err(|source| ServerError::Bind {
                    addr: addr.to_string(),
                    source,
                })?;
                let s = Arc::new(s);
                sip_addrs.push((
                    Transport::Udp,
                    s.local_addr().map_err(|source| ServerError::Bind {
                        addr: addr.to_string(),
                        source,
                    })?,
                ));
                tasks.push(tokio::spawn(udp_sip(s, core_tx.clone())));
            }
            Transport::Tcp => {
                let l = TcpListener::bind(addr).await.map_err(|source| ServerError::Bind {
                    addr: addr.to_string(),
                    source,
                })?;
                sip_addrs.push((
                    Transport::Tcp,
                    l.local_addr().map_err(|source| ServerError::Bind {
                        addr: addr.to_string(),
                        source,
                    })?,
                ));
                tasks.push(tokio::spawn(tcp_sip(l, core_tx.clone())));
            }
            Transport::Tls => {
                let Some(acceptor) = acceptor.clone() else { continue };
                let l = TcpListener::bind(addr).await.map_err(|source| ServerError::Bind {
                    addr: addr.to_string(),
                    source,
                })?;
                sip_addrs.push((
                    Transport::Tls,
                    l.local_addr().map_err(|source| ServerError::Bind {
                        addr: addr.to_string(),
                        source,
                    })?,
                ));
                tasks.push(tokio::spawn(tls_sip(l, acceptor, core_tx.clone(), counters.clone())));
            }
        }
    }
    let first_ip = sip_addrs[0].1.ip();
    let advertise: IpAddr = if config.advertise.is_empty() {
        if first_ip.is_unspecified() {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            first_ip
        }
    } else {
        config
            .advertise
            .parse()
            .map_err(|_| ServerError::Config("siprec.advertise".into()))?
    };
    // RTP on even ports (RTCP's odd neighbours are left alone).
    let mut slots = Vec::new();
    let mut sockets = Vec::new();
    let mut port = v.rtp_first + (v.rtp_first % 2);
    while port <= v.rtp_last {
        let addr = SocketAddr::new(first_ip, port);
        match std::net::UdpSocket::bind(addr) {
            Ok(s) => {
                sockets.push((slots.len(), s));
                slots.push(Slot {
                    port,
                    owner: None,
                    session: 0,
                    latched: None,
                });
            }
            Err(e) => tracing::warn!(port, error = %e, "siprec rtp port not bound, skipped"),
        }
        match port.checked_add(2) {
            Some(p) => port = p,
            None => break,
        }
    }
    if slots.len() < 2 {
        return Err(ServerError::Config(format!(
            "siprec.rtp_ports {}: fewer than two ports could be bound",
            config.rtp_ports
        )));
    }
    let threads = config.rtp_threads.max(1);
    let (rtp_tx, rtp_rx) = mpsc::channel(rtp_rx::QUEUE * threads);
    let draining: Arc<[AtomicBool]> = slots.iter().map(|_| AtomicBool::new(false)).collect();
    let spares = Spares::default();
    let receivers = Receivers::start(sockets, threads, rtp_tx, draining.clone(), spares.clone()).map_err(|source| {
        ServerError::Bind {
            addr: format!("rtp receive threads for {}", config.rtp_ports),
            source,
        }
    })?;
    let passes = vec![Instant::now(); receivers.len()];
    let (pub_tx, pub_rx) = mpsc::unbounded_channel();
    let backlog = Arc::new(AtomicUsize::new(0));
    tasks.push(tokio::spawn(publisher(
        bus,
        topic.to_owned(),
        pub_rx,
        core_tx.clone(),
        backlog.clone(),
    )));
    let tick_tx = core_tx.clone();
    tasks.push(tokio::spawn(async move {
        let mut iv = tokio::time::interval(Duration::from_millis(50));
        loop {
            iv.tick().await;
            if tick_tx.send(Input::Tick).is_err() {
                return;
            }
        }
    }));
    tracing::info!(sip = ?sip_addrs, rtp_ports = slots.len(), advertise = %advertise, "siprec listening");
    let rtp_ports = slots.iter().map(|s| s.port).collect();
    let core = Core {
        config: config.clone(),
        advertise,
        sessions: Sessions::default(),
        slots,
        free: Vec::new(),
        pub_tx,
        backlog,
        counters: counters.clone(),
        clock: Instant::now(),
        tag_counter: 0,
        tcp_port: sip_addrs
            .iter()
            .find(|(t, _)| *t == Transport::Tcp)
            .map_or(5060, |(_, a)| a.port()),
        received_unreported: 0,
        backlogged_until_us: 0,
        draining,
        passes,
        spares,
        policy,
        tls_port: sip_addrs
            .iter()
            .find(|(t, _)| *t == Transport::Tls)
            .map_or(5061, |(_, a)| a.port()),
        udp_port: sip_addrs
            .iter()
            .find(|(t, _)| *t == Transport::Udp)
            .map_or(5060, |(_, a)| a.port()),
    };
    let up = opptak_telemetry::metrics().role_up("siprec");
    let core = tokio::spawn(core.run(core_rx, rtp_rx, up));
    Ok(ServerHandle {
        sip: sip_addrs,
        rtp_ports,
        counters,
        core_tx,
        core,
        tasks,
        _receivers: receivers,
    })
}

async fn udp_sip(s: Arc<UdpSocket>, tx: mpsc::UnboundedSender<Input>) {
    let mut buf = vec![0u8; 65_536];
    loop {
        let (n, from) = match s.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                // ICMP errors of earlier sends surface here on some systems.
                tracing::debug!(error = %e, "siprec udp receive");
                continue;
            }
        };
        let data = &buf[..n];
        if data.iter().all(|b| b.is_ascii_whitespace()) {
            continue; // keep-alive
        }
        let reply = Reply::Udp(s.clone(), from);
        let input = match Message::parse(data, false) {
            Ok((msg, _)) => Input::Sip { msg, reply },
            Err(e) => Input::Unreadable {
                head: Message::parse_head_only(data),
                too_large: e == SipError::TooLarge,
                reply,
            },
        };
        if tx.send(input).is_err() {
            return;
        }
    }
}

async fn tcp_sip(l: TcpListener, tx: mpsc::UnboundedSender<Input>) {
    loop {
        let Ok((stream, _)) = l.accept().await else { continue };
        tokio::spawn(tcp_conn(stream, tx.clone(), Transport::Tcp));
    }
}

/// A TLS handshake that takes longer is given up (a client that connects
/// and says nothing holds no task for long).
const TLS_HANDSHAKE: Duration = Duration::from_secs(10);

async fn tls_sip(l: TcpListener, acceptor: TlsAcceptor, tx: mpsc::UnboundedSender<Input>, counters: Arc<Counters>) {
    loop {
        let Ok((stream, peer)) = l.accept().await else { continue };
        let (acceptor, tx, counters) = (acceptor.clone(), tx.clone(), counters.clone());
        tokio::spawn(async move {
            let why = match tokio::time::timeout(TLS_HANDSHAKE, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => return tcp_conn(tls, tx, Transport::Tls).await,
                Ok(Err(e)) => e.to_string(),
                Err(_) => "handshake timed out".to_owned(),
            };
            counters.tls_refused.fetch_add(1, Ordering::Relaxed);
            tracing::info!(peer = %peer, reason = %why, "siprec tls connection refused");
        });
    }
}

/// The TLS server config of `tls:` listeners from `[siprec.tls]`. Errors
/// name the key and its file, never what is in the file.
fn tls_acceptor(t: &crate::config::Tls) -> Result<TlsAcceptor, ServerError> {
    use rustls::pki_types::pem::{self, PemObject};
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |key: &str, path: &str, why: String| ServerError::Config(format!("siprec.tls.{key} {path:?}: {why}"));
    // The PEM error's text may quote a line of the file: for the key, only its kind.
    let pem_why = |e: pem::Error| match e {
        pem::Error::NoItemsFound => "no such PEM item in it".to_owned(),
        pem::Error::Io(e) => e.to_string(),
        _ => "not readable PEM".to_owned(),
    };
    let certs = |key: &str, path: &str| -> Result<Vec<CertificateDer<'static>>, ServerError> {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| bad(key, path, pem_why(e)))?;
        if certs.is_empty() {
            return Err(bad(key, path, "no CERTIFICATE in it".into()));
        }
        Ok(certs)
    };
    let chain = certs("cert_file", &t.cert_file)?;
    let key = PrivateKeyDer::from_pem_file(&t.key_file).map_err(|e| {
        let why = match e {
            pem::Error::NoItemsFound => "no unencrypted private key (PKCS#8, PKCS#1 or SEC1 PEM) in it".to_owned(),
            e => pem_why(e),
        };
        bad("key_file", &t.key_file, why)
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ServerError::Config(format!("siprec.tls: {e}")))?;
    let builder = if t.ca_file.trim().is_empty() {
        builder.with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        for c in certs("ca_file", &t.ca_file)? {
            roots
                .add(c)
                .map_err(|e| bad("ca_file", &t.ca_file, format!("not a CA certificate: {e}")))?;
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| bad("ca_file", &t.ca_file, e.to_string()))?;
        builder.with_client_cert_verifier(verifier)
    };
    let config = builder.with_single_cert(chain, key).map_err(|e| {
        ServerError::Config(format!(
            "siprec.tls.cert_file {:?} with key_file {:?}: {e}",
            t.cert_file, t.key_file
        ))
    })?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// One SIP connection, TCP or TLS: Content-Length framing both ways.
async fn tcp_conn<S>(stream: S, tx: mpsc::UnboundedSender<Input>, transport: Transport)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let writer = tokio::spawn(async move {
        while let Some(b) = out_rx.recv().await {
            // flush: TLS records are written out, not held.
            if wr.write_all(&b).await.is_err() || wr.flush().await.is_err() {
                return;
            }
        }
        // TLS: close_notify; TCP: FIN.
        let _ = wr.shutdown().await;
    });
    let reply_for = |msg: Option<&Message>| {
        match transport {
        Transport::Tls => Reply::Tls {
            tx: out_tx.clone(),
            sips: msg.is_some_and(|m| {
                matches!(&m.start, StartLine::Request { uri, .. } if uri.get(..5).is_some_and(|s| s.eq_ignore_ascii_case("sips:")))
            }),
        },
        _ => Reply::Tcp(out_tx.clone()),
    }
    };
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut chunk = vec![0u8; 16_384];
    'conn: loop {
        let n = match rd.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        loop {
            // CRLF keep-alives between messages (RFC 5626).
            let lead = buf.iter().take_while(|b| **b == b'\r' || **b == b'\n').count();
            buf.drain(..lead);
            if buf.is_empty() {
                break;
            }
            match Message::parse(&buf, true) {
                Ok((msg, used)) => {
                    buf.drain(..used);
                    let reply = reply_for(Some(&msg));
                    if tx.send(Input::Sip { msg, reply }).is_err() {
                        break 'conn;
                    }
                }
                Err(SipError::Incomplete) => break,
                Err(e) => {
                    // The framing is lost: answer if the head can be read, then close.
                    let head = Message::parse_head_only(&buf);
                    let _ = tx.send(Input::Unreadable {
                        reply: reply_for(head.as_ref()),
                        head,
                        too_large: e == SipError::TooLarge,
                    });
                    break 'conn;
                }
            }
        }
    }
    drop(out_tx);
    // Let queued responses go out before the socket closes.
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
}

async fn publisher(
    bus: Arc<dyn Bus>,
    topic: String,
    mut rx: mpsc::UnboundedReceiver<PublishJob>,
    core: mpsc::UnboundedSender<Input>,
    backlog: Arc<AtomicUsize>,
) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        while let Ok(j) = rx.try_recv() {
            jobs.push(j);
        }
        let messages: Vec<Outgoing> = jobs
            .iter()
            .flat_map(|j| j.events.iter())
            .map(|e| Outgoing {
                topic: topic.clone(),
                key: Bytes::from(e.call_id.clone().into_bytes()),
                payload: Bytes::from(e.encode_to_vec()),
            })
            .collect();
        let mut ok = true;
        if !messages.is_empty() {
            let mut delay = Duration::from_millis(100);
            loop {
                match bus.publish_all(messages.clone()).await {
                    Ok(()) => break,
                    Err(e) if e.is_retryable() && delay < Duration::from_secs(30) => {
                        tracing::warn!(error = %e, "siprec publish failed, retrying");
                        tokio::time::sleep(delay).await;
                        delay *= 2;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, events = messages.len(), "siprec publish failed, events lost");
                        ok = false;
                        break;
                    }
                }
            }
        }
        backlog.fetch_sub(messages.len(), Ordering::Relaxed);
        for j in jobs {
            if let Some(id) = j.notify {
                let _ = core.send(Input::Published { sip_call_id: id, ok });
            }
            if let Some(d) = j.done {
                let _ = d.send(());
            }
        }
    }
}

/// The open sessions by SIP Call-ID, each at a fixed index while it
/// lives (the RTP path's way in; SIP looks up by Call-ID, with SipHash
/// because the Call-ID is the peer's choice).
#[derive(Default)]
struct Sessions {
    index: HashMap<String, usize>,
    slab: Vec<Option<Sess>>,
    vacant: Vec<usize>,
}

impl Sessions {
    /// Adds or replaces the session of `call_id`; returns its index.
    fn insert(&mut self, call_id: String, s: Sess) -> usize {
        if let Some(&i) = self.index.get(&call_id) {
            self.slab[i] = Some(s);
            return i;
        }
        let i = match self.vacant.pop() {
            Some(i) => {
                self.slab[i] = Some(s);
                i
            }
            None => {
                self.slab.push(Some(s));
                self.slab.len() - 1
            }
        };
        self.index.insert(call_id, i);
        i
    }

    fn remove(&mut self, call_id: &str) -> Option<Sess> {
        let i = self.index.remove(call_id)?;
        self.vacant.push(i);
        self.slab[i].take()
    }

    fn get(&self, call_id: &str) -> Option<&Sess> {
        self.index.get(call_id).and_then(|&i| self.slab[i].as_ref())
    }

    fn get_mut(&mut self, call_id: &str) -> Option<&mut Sess> {
        let i = *self.index.get(call_id)?;
        self.slab[i].as_mut()
    }

    fn at_mut(&mut self, index: usize) -> Option<&mut Sess> {
        self.slab.get_mut(index).and_then(Option::as_mut)
    }

    fn contains_key(&self, call_id: &str) -> bool {
        self.index.contains_key(call_id)
    }

    fn keys(&self) -> impl Iterator<Item = &String> {
        self.index.keys()
    }

    fn len(&self) -> usize {
        self.index.len()
    }
}

impl std::ops::Index<&str> for Sessions {
    type Output = Sess;

    fn index(&self, call_id: &str) -> &Sess {
        self.get(call_id).expect("a session checked to exist")
    }
}

struct Slot {
    port: u16,
    /// (SIP Call-ID, side) using it.
    owner: Option<(Arc<str>, Side)>,
    /// The owner's place in [`Sessions`]: a packet finds its session
    /// without hashing the Call-ID.
    session: usize,
    /// Symmetric RTP: the first source address of the session's stream.
    latched: Option<SocketAddr>,
}

enum State {
    /// CallStarted is on its way to the bus; the 200 waits for it.
    Starting {
        invite: Box<Message>,
        reply: Reply,
        answer: String,
    },
    /// 200 sent, no ACK yet: retransmitted over UDP.
    Answered {
        wire: Vec<u8>,
        reply: Reply,
        next_us: u64,
        interval_us: u64,
        /// Given up at (RFC 3261 Timer H, 64*T1 = 32 s).
        until_us: u64,
    },
    Confirmed,
}

struct Sess {
    state: State,
    local_tag: String,
    rec: Recording,
    slots: [usize; 2],
    labels: [String; 2],
    sdp_version: u64,
    /// The last response to an INVITE, to repeat to its retransmissions.
    last_invite: Option<(u32, Vec<u8>)>,
    /// Every recorded stream is inactive (a pause by re-INVITE): the RTP
    /// timeout does not run.
    paused: bool,
    /// When RTP was last expected to start: the session's start or the end
    /// of its last pause.
    active_since_us: u64,
    session_expires: Option<String>,
    /// Where and how a BYE of ours goes (RFC 3261 12.2.1.1).
    bye: ByeTarget,
    /// The SRC's BYE was answered then: the session ends on the first tick
    /// after `ending_at_us` at which the core has caught up with it.
    bye_at: Option<Instant>,
    ending_at_us: Option<u64>,
}

struct ByeTarget {
    /// The SRC's Contact URI (its From URI without one).
    uri: String,
    /// Our side: the INVITE's To with our tag.
    from: String,
    /// The SRC's side: the INVITE's From.
    to: String,
    reply: Reply,
}

struct Core {
    config: SiprecConfig,
    advertise: IpAddr,
    sessions: Sessions,
    slots: Vec<Slot>,
    free: Vec<usize>,
    pub_tx: mpsc::UnboundedSender<PublishJob>,
    /// Events sent to the publisher and not yet published.
    backlog: Arc<AtomicUsize>,
    counters: Arc<Counters>,
    clock: Instant,
    tag_counter: u64,
    /// The TCP and TLS listeners' ports, for the Via of our own requests
    /// and the Contact.
    tcp_port: u16,
    tls_port: u16,
    /// RTP packets received since the last tick, not yet in the metric.
    received_unreported: u64,
    /// The last tick at which the core was backlogged (took no RTP).
    backlogged_until_us: u64,
    /// Per RTP slot, shared with the receive threads: read it until empty.
    draining: Arc<[AtomicBool]>,
    /// Per receive thread, when the wake of its latest batch began.
    passes: Vec<Instant>,
    /// Where handled batches go back to the receive threads.
    spares: Spares,
    /// The retention policy in force: which contexts are archived.
    policy: Arc<Policy>,
    /// The UDP listener's port: the Contact of a dialog names the port and
    /// transport it came in on, or the SBC sends BYE and re-INVITE to 5060.
    udp_port: u16,
}

/// Events waiting for the bus past which the core takes no RTP and no new
/// session (about 5 s of 1,000 calls at 100 ms chunks; ~1.7 KB each).
pub const BACKLOG_EVENTS: usize = 50_000;

/// How long a session outlives the SRC's BYE at least, for RTP the network
/// delivers after it (see the BYE handler).
const BYE_GRACE_US: u64 = 100_000;

/// How long a session outlives the BYE at most while the core is not
/// backlogged, should a receive thread have stopped.
const BYE_LIMIT_US: u64 = 10_000_000;

const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE";
const ACCEPT: &str = "application/sdp, application/rs-metadata+xml, multipart/mixed";
const SUPPORTED: &[&str] = &["siprec", "timer"];

/// Why an offer was refused: status code and the Warning text.
struct Refusal(u16, String);

struct Parsed {
    offer: Option<Offer>,
    metadata: Option<Metadata>,
}

impl Core {
    async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<Input>,
        mut rtp: mpsc::Receiver<Batch>,
        up: opptak_telemetry::RoleUp,
    ) {
        // `opptak_role_up{role="siprec"}` is 1 until this task ends.
        let _up = up;
        self.free = (0..self.slots.len()).rev().collect();
        let mut rtp_open = true;
        loop {
            let input = tokio::select! {
                // SIP and the publisher's notices first: they are few, and
                // a BYE or an ACK must not wait behind a queue of audio.
                biased;
                input = rx.recv() => input,
                batch = rtp.recv(), if rtp_open && !self.backlogged() => {
                    match batch {
                        Some(b) => {
                            self.rtp_batch(&b);
                            self.spares.give(b);
                        }
                        None => rtp_open = false,
                    }
                    continue;
                }
            };
            let Some(input) = input else { return };
            match input {
                Input::Sip { msg, reply } => self.sip(msg, reply),
                Input::Unreadable { head, too_large, reply } => self.unreadable(head, too_large, reply),
                Input::Published { sip_call_id, ok } => self.published(&sip_call_id, ok),
                Input::Tick => self.tick(),
                Input::Stop(done) => {
                    opptak_telemetry::metrics()
                        .siprec_packets("received", std::mem::take(&mut self.received_unreported));
                    let ids: Vec<String> = self.sessions.keys().cloned().collect();
                    for id in ids {
                        self.send_bye(&id);
                        self.end(&id, v1::EndReason::Unspecified);
                    }
                    self.publish(PublishJob {
                        events: Vec::new(),
                        notify: None,
                        done: Some(done),
                    });
                    return;
                }
            }
        }
    }

    fn now_us(&self) -> u64 {
        self.clock.elapsed().as_micros() as u64
    }

    fn respond(
        &self,
        reply: &Reply,
        req: &Message,
        code: u16,
        to_tag: Option<&str>,
        extra: &[(&str, String)],
        body: Option<(&str, Bytes)>,
    ) -> Vec<u8> {
        let wire = req.response(code, to_tag, extra, body).to_bytes();
        reply.send(wire.clone());
        opptak_telemetry::metrics().siprec_sip_response(code);
        wire
    }

    fn warning(&self, text: &str) -> (&'static str, String) {
        let clean: String = text
            .chars()
            .filter(|c| *c != '"' && !c.is_control())
            .take(200)
            .collect();
        ("Warning", format!("399 {} \"{clean}\"", self.advertise))
    }

    fn unreadable(&self, head: Option<Message>, too_large: bool, reply: Reply) {
        self.counters.sip_unreadable.fetch_add(1, Ordering::Relaxed);
        let Some(req) = head.filter(|m| {
            m.method().is_some() && m.method() != Some("ACK") && m.call_id().is_some() && m.cseq().is_some()
        }) else {
            tracing::info!(transport = reply.transport(), "siprec unreadable sip message dropped");
            return;
        };
        let (code, why) = if too_large {
            (513, "message larger than 64 KiB")
        } else {
            (400, "malformed message")
        };
        self.respond(&reply, &req, code, None, &[self.warning(why)], None);
    }

    fn sip(&mut self, msg: Message, reply: Reply) {
        let StartLine::Request { method, .. } = &msg.start else {
            return; // responses (to our BYE, say) need nothing
        };
        let method = method.clone();
        let (Some(call_id), Some((cseq, cseq_method))) = (msg.call_id().map(str::to_owned), msg.cseq()) else {
            if method != "ACK" {
                self.unreadable(Some(msg.clone()), false, reply);
            }
            return;
        };
        if cseq_method != method
            || msg.header("Via").is_none()
            || msg.header("From").is_none()
            || msg.header("To").is_none()
        {
            if method != "ACK" {
                self.respond(
                    &reply,
                    &msg,
                    400,
                    None,
                    &[self.warning("missing or inconsistent Via, From, To or CSeq")],
                    None,
                );
            }
            return;
        }
        match method.as_str() {
            "OPTIONS" => {
                let extra = [
                    ("Allow", ALLOW.to_owned()),
                    ("Accept", ACCEPT.to_owned()),
                    ("Supported", "siprec, timer".to_owned()),
                ];
                let tag = self.sessions.get(&call_id).map(|s| s.local_tag.clone());
                self.respond(&reply, &msg, 200, Some(tag.as_deref().unwrap_or("opt")), &extra, None);
            }
            "INVITE" if msg.tag("To").is_none() => {
                if let Some(s) = self.sessions.get(&call_id) {
                    // A retransmission: repeat the answer (or wait for it).
                    if let Some((c, wire)) = &s.last_invite {
                        if *c == cseq {
                            reply.send(wire.clone());
                        }
                    }
                    return;
                }
                self.invite(call_id, msg, reply);
            }
            "INVITE" | "UPDATE" => self.reoffer(&call_id, msg, reply, cseq),
            "ACK" => {
                if let Some(s) = self.sessions.get_mut(&call_id) {
                    if matches!(s.state, State::Answered { .. }) {
                        s.state = State::Confirmed;
                    }
                }
            }
            "BYE" => {
                if self.sessions.contains_key(&call_id) {
                    let tag = self.sessions.get(&call_id).map(|s| s.local_tag.clone());
                    self.respond(&reply, &msg, 200, tag.as_deref(), &[], None);
                    // RTP sent before the BYE may still wait in its ports'
                    // kernel buffers or in batches on their way here: the
                    // receive threads drain the ports, and the session ends
                    // once every thread has handed over a batch read after
                    // this instant (and BYE_GRACE_US has passed, for RTP
                    // the network delivers late).
                    let end_at = self.now_us() + BYE_GRACE_US;
                    if let Some(s) = self.sessions.get_mut(&call_id) {
                        if s.bye_at.is_none() {
                            for slot in s.slots {
                                self.draining[slot].store(true, Ordering::SeqCst);
                            }
                            s.rec.closing();
                            s.bye_at = Some(Instant::now());
                            s.ending_at_us = Some(end_at);
                        }
                    }
                } else {
                    self.respond(&reply, &msg, 481, None, &[], None);
                }
            }
            "CANCEL" => self.cancel(&call_id, msg, reply),
            _ => {
                let known = self.sessions.contains_key(&call_id) || msg.tag("To").is_none();
                if known {
                    self.respond(&reply, &msg, 405, None, &[("Allow", ALLOW.to_owned())], None);
                } else {
                    self.respond(&reply, &msg, 481, None, &[], None);
                }
            }
        }
    }

    /// Reads an INVITE/UPDATE body: SDP and metadata, alone or in multipart/mixed.
    fn read_body(msg: &Message) -> Result<Parsed, Refusal> {
        if msg.body.is_empty() {
            return Ok(Parsed {
                offer: None,
                metadata: None,
            });
        }
        if msg
            .header("Content-Encoding")
            .is_some_and(|e| !e.eq_ignore_ascii_case("identity"))
        {
            return Err(Refusal(415, "content encoding not supported".into()));
        }
        let ct = msg.header("Content-Type").unwrap_or("");
        let parts: Vec<(String, Bytes)> = match sip::media_type(ct).as_str() {
            "multipart/mixed" => sip::multipart(ct, &msg.body)
                .map_err(|e| Refusal(400, e.to_string()))?
                .into_iter()
                .map(|p| (p.content_type, p.body))
                .collect(),
            "application/sdp" | "application/rs-metadata+xml" => vec![(sip::media_type(ct), msg.body.clone())],
            other => return Err(Refusal(415, format!("body type {other:?} not supported"))),
        };
        let mut parsed = Parsed {
            offer: None,
            metadata: None,
        };
        for (ct, body) in parts {
            match ct.as_str() {
                "application/sdp" => {
                    let text = std::str::from_utf8(&body).map_err(|_| Refusal(400, "SDP is not UTF-8".into()))?;
                    parsed.offer = Some(sdp::parse_offer(text).map_err(|e| match e {
                        sdp::SdpError::Malformed(_) => Refusal(400, e.to_string()),
                        _ => Refusal(488, e.to_string()),
                    })?);
                }
                "application/rs-metadata+xml" => {
                    parsed.metadata = Some(metadata::parse(&body).map_err(|e| Refusal(400, e.to_string()))?);
                }
                _ => {}
            }
        }
        Ok(parsed)
    }

    fn unsupported_require(msg: &Message) -> Option<String> {
        let bad: Vec<String> = msg
            .headers_named("Require")
            .flat_map(|v| v.split(','))
            .map(|t| t.trim().to_ascii_lowercase())
            .filter(|t| !t.is_empty() && !SUPPORTED.contains(&t.as_str()))
            .collect();
        (!bad.is_empty()).then(|| bad.join(", "))
    }

    fn refuse(&self, reply: &Reply, msg: &Message, r: Refusal) {
        tracing::info!(code = r.0, reason = %r.1, "siprec request refused");
        let mut extra = vec![self.warning(&r.1)];
        if r.0 == 415 {
            extra.push(("Accept", ACCEPT.to_owned()));
        }
        if r.0 == 400 {
            extra.push(("Reason", format!("SIP;cause=400;text=\"{}\"", r.1.replace('"', ""))));
        }
        self.respond(reply, msg, r.0, Some("refused"), &extra, None);
    }

    fn invite(&mut self, call_id: String, msg: Message, reply: Reply) {
        if self.sessions.len() >= self.config.max_sessions || self.free.len() < 2 || self.backlogged() {
            let why = if self.backlogged() {
                "the bus is behind"
            } else {
                "at capacity"
            };
            let extra = [("Retry-After", "5".to_owned()), self.warning(why)];
            self.respond(&reply, &msg, 503, Some("busy"), &extra, None);
            return;
        }
        if let Some(bad) = Self::unsupported_require(&msg) {
            self.respond(&reply, &msg, 420, Some("refused"), &[("Unsupported", bad)], None);
            return;
        }
        let parsed = match Self::read_body(&msg) {
            Ok(p) => p,
            Err(r) => return self.refuse(&reply, &msg, r),
        };
        let Some(offer) = parsed.offer else {
            return self.refuse(&reply, &msg, Refusal(415, "a SIPREC INVITE needs an SDP offer".into()));
        };
        let Some(md) = parsed.metadata else {
            return self.refuse(&reply, &msg, Refusal(400, "a SIPREC INVITE needs rs-metadata".into()));
        };
        let sides = match md.sides(|aor| self.config.is_agent(aor)) {
            Ok(s) => s,
            Err(e) => return self.refuse(&reply, &msg, Refusal(400, e.to_string())),
        };
        let codec = match offer.choose_codec() {
            Ok(c) => c,
            Err(e) => return self.refuse(&reply, &msg, Refusal(488, e.to_string())),
        };
        let labels = [sides.agent_label.clone(), sides.customer_label.clone()];
        let Some(idx) = Self::stream_indexes(&offer, &labels) else {
            return self.refuse(
                &reply,
                &msg,
                Refusal(400, "metadata stream labels are not in the SDP".into()),
            );
        };
        let local_tag = self.new_tag();
        self.respond(&reply, &msg, 100, None, &[], None);
        let slots = [self.free.pop().unwrap_or(0), self.free.pop().unwrap_or(0)];
        self.count_slots_in_use();
        let owner: Arc<str> = Arc::from(call_id.as_str());
        for (side, slot) in [(Side::Agent, slots[0]), (Side::Customer, slots[1])] {
            self.slots[slot].owner = Some((Arc::clone(&owner), side));
            self.slots[slot].latched = None;
        }
        let rec_call_id = session::call_id(&call_id, md.session_id.as_deref());
        let started = self.call_started(&md, &sides, codec);
        let mut rec = Recording::new(
            rec_call_id.clone(),
            codec,
            self.config.chunk_ms,
            self.config.jitter_depth,
            started,
        );
        for (side, i) in [(Side::Agent, idx[0]), (Side::Customer, idx[1])] {
            let s = &offer.streams[i];
            rec.set_payload_types(side, s.payload_types(codec), s.telephone_event(codec.rate()));
        }
        let answer = self.answer(&offer, &labels, &slots, codec, 1);
        tracing::info!(
            call_id = %rec_call_id,
            sip_call_id = %call_id,
            srs_session = md.session_id.as_deref().unwrap_or(""),
            ucid = md.extension("ucid").unwrap_or(""),
            codec = codec.name(),
            transport = reply.transport(),
            "siprec session starting"
        );
        let events = rec.take_events();
        let session_expires = msg.header("Session-Expires").map(str::to_owned);
        let contact = msg.header("Contact").or(msg.header("From")).unwrap_or("");
        let bye = ByeTarget {
            uri: contact
                .split_once('<')
                .and_then(|(_, r)| r.split_once('>'))
                .map_or_else(|| contact.split(';').next().unwrap_or("").trim(), |(u, _)| u)
                .to_owned(),
            from: format!("{};tag={local_tag}", msg.header("To").unwrap_or("")),
            to: msg.header("From").unwrap_or("").to_owned(),
            reply: reply.clone(),
        };
        let index = self.sessions.insert(
            call_id.clone(),
            Sess {
                state: State::Starting {
                    invite: Box::new(msg),
                    reply,
                    answer,
                },
                local_tag,
                rec,
                slots,
                labels,
                sdp_version: 1,
                last_invite: None,
                paused: false,
                active_since_us: self.now_us(),
                session_expires,
                bye,
                bye_at: None,
                ending_at_us: None,
            },
        );
        for slot in slots {
            self.slots[slot].session = index;
        }
        self.counters.sessions_started.fetch_add(1, Ordering::Relaxed);
        opptak_telemetry::metrics().siprec_sessions.inc();
        self.publish(PublishJob {
            events,
            notify: Some(call_id),
            done: None,
        });
    }

    fn count_slots_in_use(&self) {
        let used = self.slots.len() - self.free.len();
        self.counters.rtp_slots_in_use.store(used as u64, Ordering::Relaxed);
    }

    fn new_tag(&mut self) -> String {
        self.tag_counter += 1;
        format!(
            "srs{:x}{:x}",
            self.clock.elapsed().as_nanos() as u64 & 0xFFFF_FFFF,
            self.tag_counter
        )
    }

    /// Indexes into `offer.streams` of the agent's and customer's labels.
    fn stream_indexes(offer: &Offer, labels: &[String; 2]) -> Option<[usize; 2]> {
        let find = |l: &str| offer.streams.iter().position(|s| s.label.as_deref() == Some(l));
        Some([find(&labels[0])?, find(&labels[1])?])
    }

    fn answer(
        &self,
        offer: &Offer,
        labels: &[String; 2],
        slots: &[usize; 2],
        codec: rtp::Codec,
        version: u64,
    ) -> String {
        let ports: Vec<u16> = offer
            .streams
            .iter()
            .map(|s| match s.label.as_deref() {
                Some(l) if l == labels[0] => self.slots[slots[0]].port,
                Some(l) if l == labels[1] => self.slots[slots[1]].port,
                _ => 0,
            })
            .collect();
        sdp::build_answer(offer, codec, &self.advertise.to_string(), &ports, version)
    }

    fn call_started(&self, md: &Metadata, sides: &Sides, codec: rtp::Codec) -> v1::CallStarted {
        let ctx = self.config.context(md, sides);
        let advisor: String = crate::config::user_part(&sides.agent_aor).chars().take(256).collect();
        v1::CallStarted {
            started_at: Some(now_timestamp()),
            direction: if sides.agent_called {
                v1::Direction::Inbound
            } else {
                v1::Direction::Outbound
            } as i32,
            // The customer's number is personal data and no reference.
            customer_ref: String::new(),
            advisor_id: advisor,
            desk: desk(ctx.desk) as i32,
            service_category: service(ctx.service_category) as i32,
            ki_enabled: ctx.ki_enabled,
            customer_informed: ctx.customer_informed,
            audio_format: Some(v1::AudioFormat {
                codec: match codec {
                    rtp::Codec::Pcmu => v1::Codec::Pcmu,
                    rtp::Codec::Pcma => v1::Codec::Pcma,
                    rtp::Codec::L16 { .. } => v1::Codec::L16,
                } as i32,
                sample_rate_hz: codec.rate(),
                channels: 2,
                channel_roles: vec![v1::ChannelRole::Agent as i32, v1::ChannelRole::Customer as i32],
            }),
            telephony_key: None,
            ki_consent_renewed: false,
        }
    }

    /// The Contact names the transport and port the request came in on,
    /// or the SBC sends BYE and re-INVITEs to 5060 over UDP.
    fn ok_headers(&self, s: &Sess, reply: &Reply) -> Vec<(&'static str, String)> {
        let h = host(self.advertise);
        let contact = match reply {
            Reply::Udp(..) => format!("<sip:srs@{h}:{}>;+sip.srs", self.udp_port),
            Reply::Tcp(_) => format!("<sip:srs@{h}:{};transport=tcp>;+sip.srs", self.tcp_port),
            Reply::Tls { sips: true, .. } => format!("<sips:srs@{h}:{}>;+sip.srs", self.tls_port),
            Reply::Tls { sips: false, .. } => format!("<sip:srs@{h}:{};transport=tls>;+sip.srs", self.tls_port),
        };
        let mut extra = vec![
            ("Contact", contact),
            ("Allow", ALLOW.to_owned()),
            ("Supported", "siprec, timer".to_owned()),
        ];
        if let Some(se) = &s.session_expires {
            let secs = se.split(';').next().unwrap_or("1800").trim().to_owned();
            extra.push(("Session-Expires", format!("{secs};refresher=uac")));
            extra.push(("Require", "timer".to_owned()));
        }
        extra
    }

    fn published(&mut self, call_id: &str, ok: bool) {
        let now = self.now_us();
        let Some(s) = self.sessions.get_mut(call_id) else {
            return;
        };
        let State::Starting { invite, reply, answer } = std::mem::replace(&mut s.state, State::Confirmed) else {
            return;
        };
        if !ok {
            let extra = [("Retry-After", "5".to_owned())];
            let wire = invite.response(503, Some(&s.local_tag), &extra, None).to_bytes();
            reply.send(wire);
            opptak_telemetry::metrics().siprec_sip_response(503);
            self.drop_session(call_id);
            return;
        }
        let s = &self.sessions[call_id];
        let extra = self.ok_headers(s, &reply);
        let wire = invite
            .response(
                200,
                Some(&s.local_tag),
                &extra,
                Some(("application/sdp", Bytes::from(answer))),
            )
            .to_bytes();
        reply.send(wire.clone());
        opptak_telemetry::metrics().siprec_sip_response(200);
        let cseq = invite.cseq().map(|c| c.0).unwrap_or(0);
        let Some(s) = self.sessions.get_mut(call_id) else {
            return;
        };
        s.last_invite = Some((cseq, wire.clone()));
        s.state = match reply {
            Reply::Udp(..) => State::Answered {
                wire,
                reply,
                next_us: now + 500_000,
                interval_us: 500_000,
                until_us: now + 32_000_000,
            },
            Reply::Tcp(_) | Reply::Tls { .. } => State::Confirmed,
        };
    }

    fn cancel(&mut self, call_id: &str, msg: Message, reply: Reply) {
        let Some(s) = self.sessions.get(call_id) else {
            self.respond(&reply, &msg, 481, None, &[], None);
            return;
        };
        self.respond(&reply, &msg, 200, Some(&s.local_tag.clone()), &[], None);
        if let State::Starting {
            invite,
            reply: inv_reply,
            ..
        } = &s.state
        {
            let (invite, inv_reply, tag) = (invite.clone(), inv_reply.clone(), s.local_tag.clone());
            self.respond(&inv_reply, &invite, 487, Some(&tag), &[], None);
            tracing::info!(sip_call_id = %call_id, "siprec session cancelled before answer");
            // Its CallStarted is (being) published: end it as a call without audio.
            self.end(call_id, v1::EndReason::Unspecified);
        }
        // After the answer, CANCEL changes nothing (RFC 3261 9.2); BYE ends it.
    }

    /// The context a metadata update maps to (the mapping of `CallStarted`
    /// on the new agent and extension data). KI stays as decided at the
    /// start: a CallContext cannot turn it on or off.
    fn metadata_context(&self, md: &Metadata, sides: &Sides) -> session::Context {
        let ctx = self.config.context(md, sides);
        session::Context {
            advisor_id: crate::config::user_part(&sides.agent_aor).chars().take(256).collect(),
            desk: desk(ctx.desk),
            service_category: service(ctx.service_category),
        }
    }

    fn reoffer(&mut self, call_id: &str, msg: Message, reply: Reply, cseq: u32) {
        let Some(s) = self.sessions.get(call_id) else {
            self.respond(&reply, &msg, 481, None, &[], None);
            return;
        };
        if msg.method() == Some("INVITE") {
            if let Some((c, wire)) = &s.last_invite {
                if *c == cseq {
                    reply.send(wire.clone());
                    return;
                }
            }
        }
        if matches!(s.state, State::Starting { .. }) {
            self.respond(&reply, &msg, 491, None, &[], None);
            return;
        }
        let parsed = match Self::read_body(&msg) {
            Ok(p) => p,
            Err(r) => return self.refuse(&reply, &msg, r),
        };
        let s = &self.sessions[call_id];
        let codec = s.rec.codec();
        let mut context = None;
        if let Some(md) = &parsed.metadata {
            // Channel roles stay as the call started; a new agent, desk or
            // service (a transfer) is sent as a CallContext once answered.
            let sides = match md.sides(|aor| self.config.is_agent(aor)) {
                Ok(sides) => sides,
                Err(e) => return self.refuse(&reply, &msg, Refusal(400, e.to_string())),
            };
            tracing::info!(call_id = %s.rec.call_id(), ucid = md.extension("ucid").unwrap_or(""), "siprec metadata updated");
            context = Some(self.metadata_context(md, &sides));
        }
        let answer = match &parsed.offer {
            Some(offer) => {
                let Some(idx) = Self::stream_indexes(offer, &s.labels) else {
                    return self.refuse(
                        &reply,
                        &msg,
                        Refusal(488, "the recorded stream labels are missing from the new offer".into()),
                    );
                };
                // A codec change mid-call is refused: both channels of a chunk share one codec.
                for i in idx {
                    if !offer.streams[i].codecs.iter().any(|(_, c)| *c == codec)
                        && offer.streams[i].direction != sdp::Direction::Inactive
                    {
                        return self.refuse(
                            &reply,
                            &msg,
                            Refusal(
                                488,
                                format!(
                                    "the session's codec {} is not offered; a codec change is refused",
                                    codec.name()
                                ),
                            ),
                        );
                    }
                }
                let (labels, slots, version) = (s.labels.clone(), s.slots, s.sdp_version + 1);
                let answer = self.answer(offer, &labels, &slots, codec, version);
                let now = self.now_us();
                let s = self.sessions.get_mut(call_id).expect("checked above");
                s.sdp_version = version;
                let paused = idx.iter().all(|i| {
                    matches!(
                        offer.streams[*i].direction,
                        sdp::Direction::Inactive | sdp::Direction::RecvOnly
                    )
                });
                if s.paused && !paused {
                    s.active_since_us = now;
                }
                s.paused = paused;
                for (side, i) in [(Side::Agent, idx[0]), (Side::Customer, idx[1])] {
                    let st = &offer.streams[i];
                    let pts = st.payload_types(codec);
                    if !pts.is_empty() {
                        s.rec.set_payload_types(side, pts, st.telephone_event(codec.rate()));
                    }
                }
                Some(answer)
            }
            None => None,
        };
        let s = &self.sessions[call_id];
        let extra = self.ok_headers(s, &reply);
        let tag = s.local_tag.clone();
        let wire = self.respond(
            &reply,
            &msg,
            200,
            Some(&tag),
            &extra,
            answer.map(|a| ("application/sdp", Bytes::from(a))),
        );
        if let Some(ctx) = context {
            let s = self.sessions.get_mut(call_id).expect("checked above");
            let reason = format!("siprec metadata update (agent {})", ctx.advisor_id);
            if s.rec
                .update_context(ctx, &self.policy, "siprec", &reason, now_timestamp())
            {
                tracing::info!(call_id = %s.rec.call_id(), "siprec call context changed: CallContext sent");
                self.drain(call_id);
            }
        }
        if msg.method() == Some("INVITE") {
            let now = self.now_us();
            let s = self.sessions.get_mut(call_id).expect("checked above");
            s.last_invite = Some((cseq, wire.clone()));
            if let Reply::Udp(..) = reply {
                s.state = State::Answered {
                    wire,
                    reply,
                    next_us: now + 500_000,
                    interval_us: 500_000,
                    until_us: now + 32_000_000,
                };
            }
        }
    }

    fn backlogged(&self) -> bool {
        self.backlog.load(Ordering::Relaxed) >= BACKLOG_EVENTS
    }

    fn publish(&mut self, job: PublishJob) {
        self.backlog.fetch_add(job.events.len(), Ordering::Relaxed);
        let _ = self.pub_tx.send(job);
    }

    fn rtp_batch(&mut self, b: &Batch) {
        self.passes[b.thread] = b.began;
        for r in &b.packets {
            self.rtp(r.slot, b.payload(r), r.from, r.at);
        }
    }

    fn rtp(&mut self, slot: usize, data: &[u8], from: SocketAddr, at: Instant) {
        let m = opptak_telemetry::metrics();
        if self.slots[slot].owner.is_none() {
            self.counters.rtp_unknown_session.fetch_add(1, Ordering::Relaxed);
            m.siprec_packets("unknown_session", 1);
            return;
        }
        let packet = match rtp::parse(data) {
            Ok(p) => p,
            Err(_) => {
                self.counters.rtp_invalid.fetch_add(1, Ordering::Relaxed);
                m.siprec_packets("invalid", 1);
                return;
            }
        };
        // Symmetric RTP: latch onto the first source; others are not this stream.
        match self.slots[slot].latched {
            None => self.slots[slot].latched = Some(from),
            Some(a) if a != from => {
                self.counters.rtp_unknown_session.fetch_add(1, Ordering::Relaxed);
                m.siprec_packets("unknown_session", 1);
                return;
            }
            Some(_) => {}
        }
        let now = at.saturating_duration_since(self.clock).as_micros() as u64;
        let Some((call_id, side)) = &self.slots[slot].owner else {
            return;
        };
        let Some(s) = self.sessions.at_mut(self.slots[slot].session) else {
            return;
        };
        // Added to the metric on each tick: a labelled lookup per packet costs.
        self.received_unreported += 1;
        self.counters.rtp_received.fetch_add(1, Ordering::Relaxed);
        s.rec.packet(*side, &packet, now);
        // Most packets complete no chunk: no second lookup for them.
        if s.rec.has_output() {
            let call_id = Arc::clone(call_id);
            self.drain(&call_id);
        }
    }

    /// Publishes a session's new events and handles its notices.
    fn drain(&mut self, call_id: &str) {
        let Some(s) = self.sessions.get_mut(call_id) else {
            return;
        };
        let events = s.rec.take_events();
        let notices = s.rec.take_notices();
        let rec_id = if notices.is_empty() {
            String::new()
        } else {
            s.rec.call_id().to_owned()
        };
        for n in notices {
            match n {
                Notice::Tone { side, offset_ms } => {
                    self.counters.tone_events.fetch_add(1, Ordering::Relaxed);
                    opptak_telemetry::metrics().siprec_tone_events.inc();
                    tracing::info!(call_id = %rec_id, side = side.as_str(), offset_ms, "siprec telephone-event");
                }
                Notice::UnknownPayload { .. } => opptak_telemetry::metrics().siprec_packets("unknown_payload", 1),
                Notice::Concealed { .. } => {}
            }
        }
        if !events.is_empty() {
            self.publish(PublishJob {
                events,
                notify: None,
                done: None,
            });
        }
    }

    fn tick(&mut self) {
        opptak_telemetry::metrics().siprec_packets("received", std::mem::take(&mut self.received_unreported));
        let now = self.now_us();
        let timeout = self.config.rtp_timeout_s * 1_000_000;
        let backlogged = self.backlogged();
        if backlogged {
            self.backlogged_until_us = now;
        }
        let ids: Vec<String> = self.sessions.keys().cloned().collect();
        for id in ids {
            let Some(s) = self.sessions.get_mut(&id) else { continue };
            if let State::Answered {
                wire,
                reply,
                next_us,
                interval_us,
                until_us,
            } = &mut s.state
            {
                if now >= *until_us {
                    // No ACK: stop repeating; RTP (or its absence) decides the rest.
                    s.state = State::Confirmed;
                } else if now >= *next_us {
                    reply.send(wire.clone());
                    *interval_us = (*interval_us * 2).min(4_000_000);
                    *next_us = now + *interval_us;
                }
            }
            if let (Some(bye_at), Some(end_at)) = (s.bye_at, s.ending_at_us) {
                let caught_up = self.passes.iter().all(|p| *p > bye_at);
                let limit = end_at.max(self.backlogged_until_us) + BYE_LIMIT_US;
                if now >= end_at && (caught_up || now >= limit) {
                    if !caught_up {
                        tracing::warn!(sip_call_id = %id, "siprec session ended without every rtp receive thread caught up with its bye");
                    }
                    self.end(&id, v1::EndReason::Unspecified);
                    continue;
                }
            }
            s.rec.tick(now);
            let last = s
                .rec
                .last_arrival_us()
                .max(s.active_since_us)
                .max(self.backlogged_until_us);
            let waiting = matches!(s.state, State::Starting { .. }) || s.paused || s.ending_at_us.is_some();
            self.drain(&id);
            // While backlogged the core reads no RTP: silence it did not read
            // is not the SRC's.
            if !waiting && !backlogged && now.saturating_sub(last) > timeout {
                tracing::info!(sip_call_id = %id, "siprec session ended: no RTP for siprec.rtp_timeout_s");
                self.send_bye(&id);
                self.end(&id, v1::EndReason::Error);
            }
        }
    }

    /// Ends the SRC's dialog from our side (RTP timeout, shutdown).
    fn send_bye(&mut self, call_id: &str) {
        let Some(s) = self.sessions.get(call_id) else { return };
        if matches!(s.state, State::Starting { .. }) || s.bye.uri.is_empty() {
            return;
        }
        let (transport, port) = match &s.bye.reply {
            Reply::Udp(sock, _) => ("UDP", sock.local_addr().map(|a| a.port()).unwrap_or(5060)),
            Reply::Tcp(_) => ("TCP", self.tcp_port),
            Reply::Tls { .. } => ("TLS", self.tls_port),
        };
        self.tag_counter += 1;
        let bye = Message {
            start: StartLine::Request {
                method: "BYE".into(),
                uri: s.bye.uri.clone(),
            },
            headers: vec![
                (
                    "Via".into(),
                    format!(
                        "SIP/2.0/{transport} {}:{port};branch=z9hG4bKsrs{:x};rport",
                        host(self.advertise),
                        self.tag_counter
                    ),
                ),
                ("Max-Forwards".into(), "70".into()),
                ("From".into(), s.bye.from.clone()),
                ("To".into(), s.bye.to.clone()),
                ("Call-ID".into(), call_id.to_owned()),
                ("CSeq".into(), "1 BYE".into()),
            ],
            body: Bytes::new(),
        };
        s.bye.reply.send(bye.to_bytes());
    }

    fn end(&mut self, call_id: &str, reason: v1::EndReason) {
        let Some(s) = self.sessions.get_mut(call_id) else {
            return;
        };
        s.rec.end(reason, now_timestamp());
        self.drain(call_id);
        self.drop_session(call_id);
    }

    fn drop_session(&mut self, call_id: &str) {
        let Some(s) = self.sessions.remove(call_id) else { return };
        let m = opptak_telemetry::metrics();
        for side in [Side::Agent, Side::Customer] {
            let st = s.rec.stats(side);
            m.siprec_packets("lost", st.lost);
            m.siprec_packets("late", st.late);
            m.siprec_packets("duplicate", st.duplicates);
            self.counters.rtp_lost.fetch_add(st.lost, Ordering::Relaxed);
            self.counters.rtp_late.fetch_add(st.late, Ordering::Relaxed);
            self.counters.rtp_duplicates.fetch_add(st.duplicates, Ordering::Relaxed);
            if st.received > 1 {
                m.siprec_jitter.observe(st.jitter_ms / 1000.0);
            }
        }
        for slot in s.slots {
            self.slots[slot].owner = None;
            self.slots[slot].latched = None;
            self.draining[slot].store(false, Ordering::SeqCst);
            self.free.insert(0, slot);
        }
        self.count_slots_in_use();
        m.siprec_sessions.dec();
        self.counters.sessions_ended.fetch_add(1, Ordering::Relaxed);
        tracing::info!(call_id = %s.rec.call_id(), sip_call_id = %call_id, "siprec session ended");
    }
}

fn host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V6(v6) => format!("[{v6}]"),
        IpAddr::V4(v4) => v4.to_string(),
    }
}

fn now_timestamp() -> opptak_proto::Timestamp {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    opptak_proto::Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

fn desk(d: Desk) -> v1::Desk {
    match d {
        Desk::Unspecified => v1::Desk::Unspecified,
        Desk::CustomerCenter => v1::Desk::CustomerCenter,
        Desk::Markets => v1::Desk::Markets,
        Desk::PrivateBanking => v1::Desk::PrivateBanking,
        Desk::Corporate => v1::Desk::Corporate,
    }
}

fn service(s: ServiceCategory) -> v1::ServiceCategory {
    match s {
        ServiceCategory::Unspecified => v1::ServiceCategory::Unspecified,
        ServiceCategory::InvestmentAdvice => v1::ServiceCategory::InvestmentAdvice,
        ServiceCategory::Loan => v1::ServiceCategory::Loan,
        ServiceCategory::Savings => v1::ServiceCategory::Savings,
        ServiceCategory::Insurance => v1::ServiceCategory::Insurance,
        ServiceCategory::Payments => v1::ServiceCategory::Payments,
        ServiceCategory::General => v1::ServiceCategory::General,
    }
}
