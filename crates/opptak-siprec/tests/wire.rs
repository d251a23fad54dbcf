//! The SIPREC server over real sockets: SIPREC INVITEs (multipart SDP +
//! rs-metadata, built as the load generator builds them) and RTP over UDP (and SIP over TCP) to a running
//! server publishing to the in-process bus; the events it publishes are
//! checked byte for byte. The PJSIP end-to-end tests with Kafka and
//! PostgreSQL are in `tests/it/siprec.rs`.

#![allow(clippy::unwrap_used)]

use async_trait::async_trait;
use opptak_bus::memory::MemoryBus;
use opptak_bus::{Bus, BusError, Outgoing, Subscription, TopicInfo, TopicSpec};
use opptak_domain::retention::Policy;
use opptak_proto::v1::{self, telephony_event::Event};
use opptak_proto::Message as _;
use opptak_siprec::config::{SiprecConfig, Transport};
use opptak_siprec::loadgen::{self, SrcDialog};
use opptak_siprec::server::{self, ServerHandle};
use opptak_siprec::sip::{self, Message, StartLine};
use opptak_siprec::{rtp, sdp};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

const TOPIC: &str = "opptak.telephony.v1";
const WAIT: Duration = Duration::from_secs(10);

/// A distinct RTP port range per test (tests run in parallel).
fn rtp_range() -> String {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let base = 30_000 + (std::process::id() % 500) as u16 * 40 + n * 8;
    format!("{base}-{}", base + 7)
}

fn config(max_sessions: usize) -> SiprecConfig {
    config_with(max_sessions, 30)
}

fn config_with(max_sessions: usize, rtp_timeout_s: u64) -> SiprecConfig {
    let text = format!(
        r#"listen = ["udp:127.0.0.1:0", "tcp:127.0.0.1:0"]
advertise = ""
rtp_ports = "{}"
chunk_ms = 20
jitter_depth = 4
max_sessions = {max_sessions}
rtp_timeout_s = {rtp_timeout_s}
agent_aor = []
[default]
desk = "customer_center"
service_category = "general"
ki_enabled = false
customer_informed = false
[[mapping]]
called = "4001"
desk = "markets"
service_category = "investment_advice"
ki_enabled = true
customer_informed = true
"#,
        rtp_range()
    );
    toml::from_str(&text).unwrap()
}

async fn start(max_sessions: usize, bus: Arc<dyn Bus>) -> ServerHandle {
    start_with(config(max_sessions), bus).await
}

async fn start_with(config: SiprecConfig, bus: Arc<dyn Bus>) -> ServerHandle {
    bus.create_topic(TOPIC, 1).await.unwrap();
    server::start(&config, bus, TOPIC, Arc::new(Policy::default_policy()))
        .await
        .unwrap()
}

/// The SBC's metadata: the customer sends label 1, the agent (4001) label 2.
fn metadata() -> String {
    loadgen::metadata(
        "U2Vzc2lvbjE=",
        "sip:+4791234567@carrier.example",
        "sip:4001@bank.example",
        Some("00001234"),
    )
}

fn offer_sdp(payloads: &str, rtpmap: &str) -> String {
    loadgen::offer_sdp(1, IpAddr::V4(Ipv4Addr::LOCALHOST), payloads, rtpmap)
}

fn good_sdp() -> String {
    offer_sdp("0 101", "a=rtpmap:101 telephone-event/8000\r\n")
}

/// The test SRC's dialog `call_id` over `transport` (`UDP` or `TCP`).
fn dialog(call_id: &str, transport: &str) -> SrcDialog {
    SrcDialog {
        srs_uri: "sip:srs@127.0.0.1".into(),
        via: format!("SIP/2.0/{transport} 127.0.0.1:5099"),
        branch: call_id.into(),
        from: "<sip:src@127.0.0.1>;tag=src1".into(),
        call_id: call_id.into(),
        contact: "sip:src@127.0.0.1:5099".into(),
    }
}

fn request(
    method: &str,
    call_id: &str,
    cseq: u32,
    to_tag: Option<&str>,
    transport: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Vec<u8> {
    dialog(call_id, transport).request(method, cseq, to_tag, content_type.map(|ct| (ct, body)))
}

fn siprec_invite(call_id: &str, transport: &str, sdp: &str, metadata: &str) -> Vec<u8> {
    dialog(call_id, transport).invite(sdp, metadata)
}

/// A SIP client over UDP.
struct Udp {
    sock: UdpSocket,
    server: SocketAddr,
}

impl Udp {
    async fn new(server: SocketAddr) -> Self {
        Self {
            sock: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
            server,
        }
    }

    async fn send(&self, bytes: &[u8]) {
        self.sock.send_to(bytes, self.server).await.unwrap();
    }

    /// The next final response (1xx skipped).
    async fn final_response(&self) -> Message {
        let mut buf = vec![0u8; 65_536];
        loop {
            let (n, _) = tokio::time::timeout(WAIT, self.sock.recv_from(&mut buf))
                .await
                .expect("a SIP response")
                .unwrap();
            let (m, _) = Message::parse(&buf[..n], false).unwrap();
            if let StartLine::Response { code, .. } = m.start {
                if code >= 200 {
                    return m;
                }
            }
        }
    }

    /// The SRC hangs up: a BYE in the dialog, answered 200.
    async fn bye(&self, call_id: &str, cseq: u32, to_tag: &str) {
        self.send(&request("BYE", call_id, cseq, Some(to_tag), "UDP", None, b""))
            .await;
        assert_eq!(code(&self.final_response().await), 200);
    }
}

fn code(m: &Message) -> u16 {
    match m.start {
        StartLine::Response { code, .. } => code,
        _ => panic!("not a response"),
    }
}

/// The answer's RTP ports by label.
fn answer_ports(m: &Message) -> (u16, u16) {
    let body = std::str::from_utf8(&m.body).unwrap();
    let a = sdp::parse_offer(body).unwrap();
    assert!(a.streams.iter().all(|s| s.codecs.len() == 1) && body.matches("a=recvonly").count() == 2);
    let [cust, agent] = loadgen::answer_destinations(m).unwrap();
    (cust.port(), agent.port())
}

async fn events_until_end(bus: &Arc<dyn Bus>, group: &str) -> Vec<v1::TelephonyEvent> {
    let mut sub: Box<dyn Subscription> = bus.subscribe(group, &[TOPIC.to_owned()]).await.unwrap();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        for r in sub.poll(100, Duration::from_millis(100)).await.unwrap() {
            let e = v1::TelephonyEvent::decode(r.payload.as_ref()).unwrap();
            assert_eq!(r.key.as_deref(), Some(e.call_id.as_bytes()), "key is the call id");
            let end = matches!(e.event, Some(Event::CallEnded(_)));
            out.push(e);
            if end {
                return out;
            }
        }
    }
    panic!("no CallEnded; got {out:?}");
}

/// 160 bytes of distinct µ-law audio for packet `k` of a stream.
fn audio(stream: u8, k: u16) -> Vec<u8> {
    (0..160u16)
        .map(|i| (stream as u16 * 61 + k * 13 + i * 7) as u8 | 0x01)
        .collect()
}

#[tokio::test]
async fn a_siprec_call_becomes_the_contracts_events_exactly() {
    let bus: Arc<dyn Bus> = Arc::new(MemoryBus::new());
    let srv = start(4, bus.clone()).await;
    let sip_addr = srv.sip_addr(Transport::Udp).unwrap();
    let c = Udp::new(sip_addr).await;
    // With session timers, as SBCs send them: tolerated and echoed.
    let invite = String::from_utf8(siprec_invite("call-a", "UDP", &good_sdp(), &metadata()))
        .unwrap()
        .replace(
            "Require: siprec\r\n",
            "Require: siprec, timer\r\nSession-Expires: 1800;refresher=uas\r\n",
        );
    c.send(invite.as_bytes()).await;
    let ok = c.final_response().await;
    assert_eq!(code(&ok), 200, "{ok:?}");
    assert_eq!(ok.header("Session-Expires"), Some("1800;refresher=uac"));
    assert_eq!(ok.header("Require"), Some("timer"));
    // The Contact names the listener's port: the SBC sends BYE and
    // re-INVITEs there, not to 5060.
    let contact = ok.header("Contact").unwrap();
    assert!(
        contact.contains(&format!(":{}>", sip_addr.port())) && contact.contains("+sip.srs"),
        "{contact}"
    );
    let to_tag = ok.tag("To").unwrap().to_owned();
    let (cust_port, agent_port) = answer_ports(&ok);
    c.send(&request("ACK", "call-a", 1, Some(&to_tag), "UDP", None, b""))
        .await;

    // Two SRC media sockets, one per stream (symmetric RTP latches onto each).
    let agent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let cust = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let to_agent = SocketAddr::new(sip_addr.ip(), agent_port);
    let to_cust = SocketAddr::new(sip_addr.ip(), cust_port);
    const N: u16 = 24;
    const LOST: u16 = 5; // lost on both streams: a gap
    const CUST_ONLY_LOST: u16 = 14; // lost on the customer's stream only: silence there
    let (a_ssrc, c_ssrc) = (0x1111_0000u32, 0x2222_0000u32);
    let a_seq0 = 65_530u16; // the agent's numbering wraps during the call
                            // The customer's packets in a reordered, duplicated order.
    let mut cust_order: Vec<u16> = (0..N).collect();
    cust_order.swap(8, 9);
    cust_order.swap(16, 18);
    cust_order.insert(12, 10);
    let mut ci = 0;
    for k in 0..N {
        if k != LOST {
            let p = rtp::build(
                0,
                a_seq0.wrapping_add(k),
                1000 + k as u32 * 160,
                a_ssrc,
                k == 0,
                &audio(1, k),
            );
            agent.send_to(&p, to_agent).await.unwrap();
        }
        // Keep the customer's sends in step with the agent's.
        while ci < cust_order.len() && (cust_order[ci] <= k || ci <= k as usize) {
            let j = cust_order[ci];
            ci += 1;
            if j == LOST || j == CUST_ONLY_LOST {
                continue;
            }
            let p = rtp::build(0, 7 + j, 90_000 + j as u32 * 160, c_ssrc, j == 0, &audio(2, j));
            cust.send_to(&p, to_cust).await.unwrap();
        }
        if k == 20 {
            // The customer keys a digit: three telephone-event packets
            // (the end one repeated) with their own sequence numbers after
            // the audio's, sent as PJSIP does between audio packets.
            for (n, end) in [(0u16, false), (1, true), (2, true)] {
                let p = rtp::build(
                    101,
                    7 + N + n,
                    90_000 + 20 * 160,
                    c_ssrc,
                    n == 0,
                    &[5, if end { 0x8A } else { 0x0A }, 0, 160],
                );
                cust.send_to(&p, to_cust).await.unwrap();
            }
        }
        tokio::time::sleep(Duration::from_millis(4)).await;
    }
    while ci < cust_order.len() {
        let j = cust_order[ci];
        ci += 1;
        if j != LOST && j != CUST_ONLY_LOST {
            let p = rtp::build(0, 7 + j, 90_000 + j as u32 * 160, c_ssrc, false, &audio(2, j));
            cust.send_to(&p, to_cust).await.unwrap();
        }
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    c.bye("call-a", 2, &to_tag).await;

    let events = events_until_end(&bus, "t1").await;
    let Some(Event::CallStarted(started)) = &events[0].event else {
        panic!("first is CallStarted: {events:?}")
    };
    let format = started.audio_format.clone().unwrap();
    assert_eq!(
        (format.codec, format.sample_rate_hz, format.channels),
        (v1::Codec::Pcmu as i32, 8000, 2)
    );
    assert_eq!(
        format.channel_roles,
        vec![v1::ChannelRole::Agent as i32, v1::ChannelRole::Customer as i32]
    );
    assert_eq!(started.advisor_id, "4001");
    assert_eq!(started.direction, v1::Direction::Inbound as i32);
    // The mapping by called number (the agent's 4001) decided the context.
    assert_eq!(
        (started.desk, started.service_category, started.ki_enabled),
        (
            v1::Desk::Markets as i32,
            v1::ServiceCategory::InvestmentAdvice as i32,
            true
        )
    );
    let call_id = events[0].call_id.clone();
    assert!(call_id.starts_with("siprec-") && events.iter().all(|e| e.call_id == call_id));

    let chunks: Vec<&v1::AudioChunk> = events
        .iter()
        .filter_map(|e| match &e.event {
            Some(Event::AudioChunk(c)) => Some(c),
            _ => None,
        })
        .collect();
    let want: Vec<(u64, i32, Vec<u8>)> = (0..N)
        .filter(|k| *k != LOST)
        .map(|k| {
            let cust = if k == CUST_ONLY_LOST {
                vec![0xFF; 160]
            } else {
                audio(2, k)
            };
            let frames: Vec<u8> = audio(1, k).iter().zip(&cust).flat_map(|(a, c)| [*a, *c]).collect();
            (k as u64, k as i32 * 20_000_000, frames)
        })
        .collect();
    let got: Vec<(u64, i32, Vec<u8>)> = chunks
        .iter()
        .map(|c| {
            let o = c.offset.unwrap();
            (
                c.sequence,
                o.seconds as i32 * 1_000_000_000 + o.nanos,
                c.payload.to_vec(),
            )
        })
        .collect();
    assert_eq!(
        got.len(),
        want.len(),
        "sequences {:?}",
        got.iter().map(|g| g.0).collect::<Vec<_>>()
    );
    for (g, w) in got.iter().zip(&want) {
        assert_eq!((g.0, g.1), (w.0, w.1), "sequence and offset");
        assert_eq!(g.2, w.2, "audio of chunk {}", g.0);
    }
    let Some(Event::CallEnded(end)) = &events.last().unwrap().event else {
        unreachable!()
    };
    assert_eq!((end.last_sequence, end.no_audio), (N as u64 - 1, false));
    // The key pressed (5) never reaches an event: every chunk's audio is
    // exactly the sent audio (checked above), and the tone was counted.
    assert_eq!(srv.counters.tone_events.load(Ordering::Relaxed), 1);
    srv.stop().await;
}

/// A bus whose publishes wait until the test opens the gate: the window in
/// which an INVITE is not yet answered.
struct GatedBus {
    inner: MemoryBus,
    gate: tokio::sync::Semaphore,
}

#[async_trait]
impl Bus for GatedBus {
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
        let _permit = self
            .gate
            .acquire()
            .await
            .map_err(|e| BusError::Unavailable(e.to_string()))?;
        self.inner.publish(topic, key, payload).await
    }
    async fn publish_all(&self, messages: Vec<Outgoing>) -> Result<(), BusError> {
        let _permit = self
            .gate
            .acquire()
            .await
            .map_err(|e| BusError::Unavailable(e.to_string()))?;
        self.inner.publish_all(messages).await
    }
    async fn subscribe(&self, group: &str, topics: &[String]) -> Result<Box<dyn Subscription>, BusError> {
        self.inner.subscribe(group, topics).await
    }
    async fn end_offsets(&self, topic: &str) -> Result<Vec<(i32, i64)>, BusError> {
        self.inner.end_offsets(topic).await
    }
}

#[tokio::test]
async fn cancel_before_the_answer_gets_487_and_ends_the_call_without_audio() {
    let gated = Arc::new(GatedBus {
        inner: MemoryBus::new(),
        gate: tokio::sync::Semaphore::new(0),
    });
    let bus: Arc<dyn Bus> = gated.clone();
    let srv = start(4, bus.clone()).await;
    let c = Udp::new(srv.sip_addr(Transport::Udp).unwrap()).await;
    c.send(&siprec_invite("call-c", "UDP", &good_sdp(), &metadata())).await;
    // 100 Trying arrives; the 200 waits for the bus.
    let mut buf = vec![0u8; 65_536];
    let (n, _) = tokio::time::timeout(WAIT, c.sock.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(
        Message::parse(&buf[..n], false).unwrap().0.start,
        StartLine::Response { code: 100, .. }
    ));
    c.send(&request("CANCEL", "call-c", 1, None, "UDP", None, b"")).await;
    let mut codes = vec![code(&c.final_response().await), code(&c.final_response().await)];
    codes.sort();
    assert_eq!(codes, vec![200, 487]);
    gated.gate.add_permits(1000);
    let events = events_until_end(&bus, "t2").await;
    assert_eq!(events.len(), 2);
    assert!(matches!(&events[1].event, Some(Event::CallEnded(e)) if e.no_audio));
    srv.stop().await;
}

async fn tcp_exchange(addr: SocketAddr, bytes: &[u8]) -> Message {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(WAIT, s.read(&mut chunk)).await.unwrap().unwrap();
        assert!(n > 0, "connection closed without a final response");
        buf.extend_from_slice(&chunk[..n]);
        while let Ok((m, used)) = Message::parse(&buf, true) {
            buf.drain(..used);
            if code(&m) >= 200 {
                return m;
            }
        }
    }
}

/// A test PKI made with the openssl CLI in a temporary directory: a CA,
/// the server's certificate for 127.0.0.1, a client (SBC) certificate of
/// that CA, and one of another CA.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let run = |args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .expect("the openssl command");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
        for ca in ["ca", "other-ca"] {
            let (key, pem, subj) = (
                format!("{ca}.key"),
                format!("{ca}.pem"),
                format!("/CN=opptak test {ca}"),
            );
            let mut args = vec!["req", "-x509"];
            args.extend(ec);
            args.extend(["-keyout", &key, "-out", &pem, "-days", "2", "-subj", &subj]);
            args.extend(["-addext", "basicConstraints=critical,CA:TRUE"]);
            args.extend(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
            run(&args);
        }
        for (name, ca, ext) in [
            (
                "server",
                "ca",
                "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
            ),
            (
                "client",
                "ca",
                "subjectAltName=DNS:sbc.test\nextendedKeyUsage=clientAuth\n",
            ),
            (
                "stranger",
                "other-ca",
                "subjectAltName=DNS:sbc.test\nextendedKeyUsage=clientAuth\n",
            ),
        ] {
            std::fs::write(
                dir.path().join(format!("{name}.ext")),
                format!("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n{ext}"),
            )
            .unwrap();
            let (key, csr, pem, extf) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.pem"),
                format!("{name}.ext"),
            );
            let (ca_pem, ca_key, subj) = (format!("{ca}.pem"), format!("{ca}.key"), format!("/CN={name}"));
            let mut args = vec!["req"];
            args.extend(ec);
            args.extend(["-keyout", &key, "-out", &csr, "-subj", &subj]);
            run(&args);
            run(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca_pem,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "2",
                "-extfile",
                &extf,
            ]);
        }
        Self { dir }
    }

    fn path(&self, file: &str) -> String {
        self.dir.path().join(file).display().to_string()
    }

    fn certs(&self, file: &str) -> Vec<rustls::pki_types::CertificateDer<'static>> {
        use rustls::pki_types::pem::PemObject;
        rustls::pki_types::CertificateDer::pem_file_iter(self.path(file))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    /// A TLS client trusting the test CA, with `name`'s certificate if given.
    async fn connect(
        &self,
        addr: SocketAddr,
        client_cert: Option<&str>,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for c in self.certs("ca.pem") {
            roots.add(c).unwrap();
        }
        let b = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let config = match client_cert {
            None => b.with_no_client_auth(),
            Some(name) => b
                .with_client_auth_cert(
                    self.certs(&format!("{name}.pem")),
                    rustls::pki_types::PrivateKeyDer::from_pem_file(self.path(&format!("{name}.key"))).unwrap(),
                )
                .unwrap(),
        };
        let tcp = TcpStream::connect(addr).await?;
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(addr.ip().into(), tcp)
            .await
    }
}

/// The server's config with a `tls:` listener beside UDP (RTP's and the
/// SBC's other leg), mutual TLS when `ca`.
fn tls_config(pki: &Pki, ca: bool) -> SiprecConfig {
    let mut c = config(4);
    c.listen = vec!["udp:127.0.0.1:0".into(), "tls:127.0.0.1:0".into()];
    c.tls.cert_file = pki.path("server.pem");
    c.tls.key_file = pki.path("server.key");
    if ca {
        c.tls.ca_file = pki.path("ca.pem");
    }
    c
}

/// SIP over one stream (TLS here), Content-Length framed.
struct SipStream<S> {
    s: S,
    buf: Vec<u8>,
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> SipStream<S> {
    async fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).await.unwrap();
        self.s.flush().await.unwrap();
    }

    async fn final_response(&mut self) -> Message {
        let mut chunk = [0u8; 4096];
        loop {
            while let Ok((m, used)) = Message::parse(&self.buf, true) {
                self.buf.drain(..used);
                if code(&m) >= 200 {
                    return m;
                }
            }
            let n = tokio::time::timeout(WAIT, self.s.read(&mut chunk))
                .await
                .expect("a SIP response")
                .unwrap();
            assert!(n > 0, "connection closed without a final response");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// `request` to a `sips:` URI, sent over TLS.
fn sips(mut bytes: Vec<u8>) -> Vec<u8> {
    let at = bytes.iter().position(|b| *b == b' ').unwrap() + 1;
    bytes.splice(at..at + 3, b"sips".iter().copied());
    bytes
}

#[tokio::test]
async fn a_siprec_call_over_mutual_tls_is_recorded_and_clients_without_a_valid_certificate_are_refused() {
    let pki = Pki::new();
    let bus: Arc<dyn Bus> = Arc::new(MemoryBus::new());
    let srv = start_with(tls_config(&pki, true), bus.clone()).await;
    let tls_addr = srv.sip_addr(Transport::Tls).unwrap();
    let udp_addr = srv.sip_addr(Transport::Udp).unwrap();

    // Mutual TLS: no client certificate, or one of another CA, gets no SIP.
    for (n, cert) in [(1, None), (2, Some("stranger"))] {
        let options = request("OPTIONS", &format!("refused-{n}"), 1, None, "TLS", None, b"");
        let answered = match pki.connect(tls_addr, cert).await {
            // TLS 1.3: the client's handshake ends before the server
            // checked its certificate; the refusal comes as an alert.
            Ok(mut s) => {
                let mut buf = [0u8; 512];
                match s.write_all(&options).await {
                    Ok(()) => matches!(tokio::time::timeout(WAIT, s.read(&mut buf)).await.unwrap(), Ok(n) if n > 0),
                    Err(_) => false,
                }
            }
            Err(_) => false,
        };
        assert!(!answered, "a client with {cert:?} got an answer");
        let deadline = tokio::time::Instant::now() + WAIT;
        while srv.counters.tls_refused.load(Ordering::Relaxed) < n {
            assert!(tokio::time::Instant::now() < deadline, "refusal {n} not counted");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    let mut c = SipStream {
        s: pki.connect(tls_addr, Some("client")).await.unwrap(),
        buf: Vec::new(),
    };
    // To a sips: URI: the Contact is a sips: URI of the TLS listener.
    c.send(&sips(siprec_invite("call-tls", "TLS", &good_sdp(), &metadata())))
        .await;
    let ok = c.final_response().await;
    assert_eq!(code(&ok), 200, "{ok:?}");
    assert_eq!(
        ok.header("Contact"),
        Some(format!("<sips:srs@127.0.0.1:{}>;+sip.srs", tls_addr.port()).as_str())
    );
    assert!(ok.header("Via").unwrap().starts_with("SIP/2.0/TLS "));
    let tag = ok.tag("To").unwrap().to_owned();
    c.send(&sips(request("ACK", "call-tls", 1, Some(&tag), "TLS", None, b"")))
        .await;
    let (cust_port, agent_port) = answer_ports(&ok);
    let (to_agent, to_cust) = (
        SocketAddr::new(udp_addr.ip(), agent_port),
        SocketAddr::new(udp_addr.ip(), cust_port),
    );
    let agent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let cust = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for k in 0..6 {
        send_pair(&agent, &cust, to_agent, to_cust, k).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    c.send(&sips(request("BYE", "call-tls", 2, Some(&tag), "TLS", None, b"")))
        .await;
    assert_eq!(code(&c.final_response().await), 200);
    let events = events_until_end(&bus, "tls").await;
    let Some(Event::CallStarted(started)) = &events[0].event else {
        panic!("{events:?}")
    };
    assert_eq!(started.audio_format.as_ref().unwrap().codec, v1::Codec::Pcmu as i32);
    assert_eq!(
        chunks_of(&events),
        (0..6u16)
            .map(|k| (k as u64, k as u64 * 160, stereo(k)))
            .collect::<Vec<_>>()
    );

    // To a sip: URI over TLS: the Contact says transport=tls.
    c.send(&siprec_invite("call-tls-2", "TLS", &good_sdp(), &metadata()))
        .await;
    let ok = c.final_response().await;
    assert_eq!(code(&ok), 200, "{ok:?}");
    assert_eq!(
        ok.header("Contact"),
        Some(format!("<sip:srs@127.0.0.1:{};transport=tls>;+sip.srs", tls_addr.port()).as_str())
    );
    srv.stop().await;
}

#[tokio::test]
async fn tls_files_that_do_not_fit_are_refused_at_start_naming_the_key_not_its_contents() {
    let pki = Pki::new();
    let start_err = |c: SiprecConfig| async move {
        match server::start(
            &c,
            Arc::new(MemoryBus::new()),
            TOPIC,
            Arc::new(Policy::default_policy()),
        )
        .await
        {
            Ok(_) => panic!("started"),
            Err(e) => e.to_string(),
        }
    };
    let secret = std::fs::read_to_string(pki.path("server.key")).unwrap();
    let secret_line = secret.lines().nth(1).unwrap().to_owned();
    let mut c = tls_config(&pki, false);
    c.tls.key_file = pki.path("server.pem");
    let e = start_err(c).await;
    assert!(
        e.contains("siprec.tls.key_file") && e.contains("no unencrypted private key"),
        "{e}"
    );
    let mut c = tls_config(&pki, false);
    c.tls.key_file = pki.path("client.key");
    let e = start_err(c).await;
    assert!(e.contains("siprec.tls.cert_file") && e.contains("key_file"), "{e}");
    let mut c = tls_config(&pki, true);
    c.tls.ca_file = pki.path("server.key");
    let e = start_err(c).await;
    assert!(e.contains("siprec.tls.ca_file") && e.contains("no CERTIFICATE"), "{e}");
    let mut c = tls_config(&pki, false);
    c.tls.cert_file = pki.path("server.key");
    let e = start_err(c).await;
    assert!(e.contains("siprec.tls.cert_file"), "{e}");
    assert!(!e.contains(&secret_line), "the key's contents in an error");
}

#[tokio::test]
async fn l16_wideband_is_chosen_and_recorded_sample_identical_as_the_contracts_little_endian() {
    let bus: Arc<dyn Bus> = Arc::new(MemoryBus::new());
    let srv = start(4, bus.clone()).await;
    let sip_addr = srv.sip_addr(Transport::Udp).unwrap();
    let c = Udp::new(sip_addr).await;
    // Every stream offers PCMU, L16/8000 and L16/16000: wideband is chosen.
    let sdp = offer_sdp(
        "0 97 96 101",
        "a=rtpmap:96 L16/16000\r\na=rtpmap:97 L16/8000\r\na=rtpmap:101 telephone-event/8000\r\n",
    );
    c.send(&siprec_invite("call-l16", "UDP", &sdp, &metadata())).await;
    let ok = c.final_response().await;
    assert_eq!(code(&ok), 200, "{ok:?}");
    let answer = std::str::from_utf8(&ok.body).unwrap();
    assert!(
        answer.contains("RTP/AVP 96\r\na=rtpmap:96 L16/16000\r\n") && !answer.contains("telephone-event"),
        "{answer}"
    );
    let tag = ok.tag("To").unwrap().to_owned();
    c.send(&request("ACK", "call-l16", 1, Some(&tag), "UDP", None, b""))
        .await;
    let (cust_port, agent_port) = answer_ports(&ok);
    let agent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let cust = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // 20 ms at 16 kHz: 320 samples, every value and both bytes varied.
    let samples = |t: i32, k: u16| -> Vec<i16> {
        (0..320)
            .map(|j| (t * 7919 + k as i32 * 131 + j * 37) as u16 as i16)
            .collect()
    };
    const N: u16 = 8;
    for k in 0..N {
        for (sock, port, t, ssrc) in [(&agent, agent_port, 1, 11), (&cust, cust_port, 2, 22)] {
            let be: Vec<u8> = samples(t, k).iter().flat_map(|x| x.to_be_bytes()).collect();
            let p = rtp::build(96, 300 + k, 7 + 320 * k as u32, ssrc, k == 0, &be);
            sock.send_to(&p, SocketAddr::new(sip_addr.ip(), port)).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    c.bye("call-l16", 2, &tag).await;

    let events = events_until_end(&bus, "l16").await;
    let Some(Event::CallStarted(started)) = &events[0].event else {
        panic!("{events:?}")
    };
    let f = started.audio_format.clone().unwrap();
    assert_eq!(
        (f.codec, f.sample_rate_hz, f.channels),
        (v1::Codec::L16 as i32, 16000, 2)
    );
    let got: Vec<(u64, i64, Vec<u8>)> = events
        .iter()
        .filter_map(|e| match &e.event {
            Some(Event::AudioChunk(c)) => {
                let o = c.offset.unwrap();
                Some((
                    c.sequence,
                    o.seconds * 1_000_000 + o.nanos as i64 / 1000,
                    c.payload.to_vec(),
                ))
            }
            _ => None,
        })
        .collect();
    let want: Vec<(u64, i64, Vec<u8>)> = (0..N)
        .map(|k| {
            let frames: Vec<u8> = samples(1, k)
                .into_iter()
                .zip(samples(2, k))
                .flat_map(|(a, c)| [a.to_le_bytes(), c.to_le_bytes()].concat())
                .collect();
            (k as u64, k as i64 * 20_000, frames)
        })
        .collect();
    assert_eq!(got, want, "every sample as sent, little-endian, agent first");
    srv.stop().await;
}

#[tokio::test]
async fn bad_input_gets_its_sip_error_and_the_server_keeps_serving() {
    let bus: Arc<dyn Bus> = Arc::new(MemoryBus::new());
    let srv = start(1, bus.clone()).await;
    let udp = srv.sip_addr(Transport::Udp).unwrap();
    let tcp = srv.sip_addr(Transport::Tcp).unwrap();
    let c = Udp::new(udp).await;

    // 415: a body it cannot read.
    c.send(&request(
        "INVITE",
        "bad-1",
        1,
        None,
        "UDP",
        Some("text/plain"),
        b"hello",
    ))
    .await;
    let r = c.final_response().await;
    assert_eq!(code(&r), 415);
    assert!(r.header("Accept").unwrap().contains("multipart/mixed"));

    // 488: no usable codec (G.729 only).
    c.send(&siprec_invite("bad-2", "UDP", &offer_sdp("18", ""), &metadata()))
        .await;
    assert_eq!(code(&c.final_response().await), 488);

    // 400 with a reason: malformed metadata XML, and metadata naming no sender.
    c.send(&siprec_invite(
        "bad-3",
        "UDP",
        &good_sdp(),
        "<recording><participant participant_id='x'></recording>",
    ))
    .await;
    let r = c.final_response().await;
    assert_eq!(code(&r), 400);
    assert!(r.header("Warning").unwrap().contains("metadata"), "{r:?}");
    let one_sided = metadata().replace("<send>s-agent</send>", "");
    c.send(&siprec_invite("bad-4", "UDP", &good_sdp(), &one_sided)).await;
    let r = c.final_response().await;
    assert_eq!(code(&r), 400);
    assert!(r.header("Warning").unwrap().contains("participants"), "{r:?}");

    // 400: a malformed multipart body (no closing delimiter).
    let (ct, mut body) = sip::build_multipart(
        "b42",
        &[
            ("application/sdp", good_sdp().as_bytes()),
            ("application/rs-metadata+xml", metadata().as_bytes()),
        ],
    );
    body.truncate(body.len() - "--b42--\r\n".len());
    c.send(&request("INVITE", "bad-5", 1, None, "UDP", Some(&ct), &body))
        .await;
    assert_eq!(code(&c.final_response().await), 400);

    // 400: a truncated message (body shorter than its Content-Length).
    let inv = siprec_invite("bad-6", "UDP", &good_sdp(), &metadata());
    c.send(&inv[..inv.len() - 40]).await;
    assert_eq!(code(&c.final_response().await), 400);

    // Over TCP a message may arrive in pieces; one over 64 KiB gets 513
    // and the connection is closed (its framing cannot be trusted).
    let options = request("OPTIONS", "opt-0", 1, None, "TCP", None, b"");
    let mut s = TcpStream::connect(tcp).await.unwrap();
    s.write_all(&options[..40]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    s.write_all(&options[40..]).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(WAIT, s.read(&mut buf)).await.unwrap().unwrap();
    assert_eq!(code(&Message::parse(&buf[..n], true).unwrap().0), 200);
    let big = request(
        "INVITE",
        "big-1",
        1,
        None,
        "TCP",
        Some("application/sdp"),
        &vec![b'x'; 70_000],
    );
    // The head alone says it: no unread body is left to reset the connection.
    let head_end = big.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    s.write_all(&big[..head_end]).await.unwrap();
    let mut got = Vec::new();
    loop {
        let n = tokio::time::timeout(WAIT, s.read(&mut buf)).await.unwrap().unwrap();
        if n == 0 {
            break; // closed by the server
        }
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(code(&Message::parse(&got, true).unwrap().0), 513);

    // OPTIONS over TCP: 200.
    let r = tcp_exchange(tcp, &request("OPTIONS", "opt-1", 1, None, "TCP", None, b"")).await;
    assert_eq!(code(&r), 200);
    assert!(r.header("Allow").unwrap().contains("INVITE"));

    // A good call over TCP takes the one session slot; the next gets 503.
    let ok = tcp_exchange(tcp, &siprec_invite("good-1", "TCP", &good_sdp(), &metadata())).await;
    assert_eq!(code(&ok), 200);
    c.send(&siprec_invite("busy-1", "UDP", &good_sdp(), &metadata())).await;
    let r = c.final_response().await;
    assert_eq!(code(&r), 503);
    assert!(r.header("Retry-After").is_some());

    // RTP to a pool port no session owns: counted and dropped.
    let (cust_port, agent_port) = answer_ports(&ok);
    let free_port = srv
        .rtp_ports
        .iter()
        .copied()
        .find(|p| *p != cust_port && *p != agent_port);
    let stray = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let before = srv.counters.rtp_unknown_session.load(Ordering::Relaxed);
    if let Some(p) = free_port {
        stray
            .send_to(
                &rtp::build(0, 1, 1, 1, false, &[0xFF; 160]),
                SocketAddr::new(udp.ip(), p),
            )
            .await
            .unwrap();
    }
    // A second source to a latched session port is not that stream either.
    let src = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let to_agent = SocketAddr::new(udp.ip(), agent_port);
    src.send_to(&rtp::build(0, 1, 160, 9, false, &audio(1, 0)), to_agent)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    stray
        .send_to(&rtp::build(0, 2, 320, 9, false, &audio(1, 1)), to_agent)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    let want = before + 1 + u64::from(free_port.is_some());
    while srv.counters.rtp_unknown_session.load(Ordering::Relaxed) < want {
        assert!(tokio::time::Instant::now() < deadline, "stray RTP was not counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Garbage to a session port: counted as invalid.
    src.send_to(b"not rtp", to_agent).await.unwrap();
    while srv.counters.rtp_invalid.load(Ordering::Relaxed) < 1 {
        assert!(tokio::time::Instant::now() < deadline, "invalid RTP was not counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    srv.stop().await;
    // Stopping ended the open session: its events end with CallEnded.
    let events = events_until_end(&bus, "t3").await;
    assert!(matches!(events[0].event, Some(Event::CallStarted(_))));
}

fn chunks_of(events: &[v1::TelephonyEvent]) -> Vec<(u64, u64, Vec<u8>)> {
    events
        .iter()
        .filter_map(|e| match &e.event {
            Some(Event::AudioChunk(c)) => {
                let o = c.offset.unwrap();
                let frames = (o.seconds as u64 * 1_000_000_000 + o.nanos as u64) / 125_000;
                Some((c.sequence, frames, c.payload.to_vec()))
            }
            _ => None,
        })
        .collect()
}

fn stereo(k: u16) -> Vec<u8> {
    audio(1, k)
        .iter()
        .zip(&audio(2, k))
        .flat_map(|(a, c)| [*a, *c])
        .collect()
}

/// Sends packet `k` of both streams (PCMU, 20 ms).
async fn send_pair(agent: &UdpSocket, cust: &UdpSocket, to_agent: SocketAddr, to_cust: SocketAddr, k: u16) {
    send_pair_now(agent, cust, to_agent, to_cust, k).await;
    tokio::time::sleep(Duration::from_millis(2)).await;
}

/// [`send_pair`] without the pause after it.
async fn send_pair_now(agent: &UdpSocket, cust: &UdpSocket, to_agent: SocketAddr, to_cust: SocketAddr, k: u16) {
    agent
        .send_to(
            &rtp::build(0, 100 + k, k as u32 * 160, 1, false, &audio(1, k)),
            to_agent,
        )
        .await
        .unwrap();
    cust.send_to(
        &rtp::build(0, 200 + k, 5 + k as u32 * 160, 2, false, &audio(2, k)),
        to_cust,
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn re_invite_pause_is_a_gap_codec_change_is_refused_and_metadata_updates() {
    let bus: Arc<dyn Bus> = Arc::new(MemoryBus::new());
    // An RTP timeout shorter than the pause: a paused session does not time out.
    let srv = start_with(config_with(4, 1), bus.clone()).await;
    let sip_addr = srv.sip_addr(Transport::Udp).unwrap();
    let c = Udp::new(sip_addr).await;
    c.send(&siprec_invite("call-p", "UDP", &good_sdp(), &metadata())).await;
    let ok = c.final_response().await;
    assert_eq!(code(&ok), 200);
    let tag = ok.tag("To").unwrap().to_owned();
    c.send(&request("ACK", "call-p", 1, Some(&tag), "UDP", None, b"")).await;
    let (cust_port, agent_port) = answer_ports(&ok);
    let (to_agent, to_cust) = (
        SocketAddr::new(sip_addr.ip(), agent_port),
        SocketAddr::new(sip_addr.ip(), cust_port),
    );
    let agent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let cust = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for k in 0..5 {
        send_pair(&agent, &cust, to_agent, to_cust, k).await;
    }
    // Pause: both streams a=inactive. The answer says inactive too.
    let paused = good_sdp().replace("a=sendonly", "a=inactive");
    let (ct, body) = sip::build_multipart("p1", &[("application/sdp", paused.as_bytes())]);
    c.send(&request("INVITE", "call-p", 2, Some(&tag), "UDP", Some(&ct), &body))
        .await;
    let r = c.final_response().await;
    assert_eq!(code(&r), 200);
    let answer = std::str::from_utf8(&r.body).unwrap();
    assert_eq!(answer.matches("a=inactive").count(), 2, "{answer}");
    assert!(
        answer.contains(&format!("m=audio {agent_port} ")),
        "the same ports: {answer}"
    );
    c.send(&request("ACK", "call-p", 2, Some(&tag), "UDP", None, b"")).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // A codec change is refused (the session goes on).
    c.send(&request(
        "INVITE",
        "call-p",
        3,
        Some(&tag),
        "UDP",
        Some("application/sdp"),
        offer_sdp("8", "").as_bytes(),
    ))
    .await;
    assert_eq!(code(&c.final_response().await), 488);
    // Resume, with the timestamps standing where they paused.
    c.send(&request(
        "INVITE",
        "call-p",
        4,
        Some(&tag),
        "UDP",
        Some("application/sdp"),
        good_sdp().as_bytes(),
    ))
    .await;
    let r = c.final_response().await;
    assert_eq!(code(&r), 200);
    assert_eq!(std::str::from_utf8(&r.body).unwrap().matches("a=recvonly").count(), 2);
    c.send(&request("ACK", "call-p", 4, Some(&tag), "UDP", None, b"")).await;
    for k in 5..10 {
        send_pair(&agent, &cust, to_agent, to_cust, k).await;
    }
    // New metadata by UPDATE is taken; malformed metadata is a 400.
    let updated = metadata().replace("00001234", "00005678");
    c.send(&request(
        "UPDATE",
        "call-p",
        5,
        Some(&tag),
        "UDP",
        Some("application/rs-metadata+xml"),
        updated.as_bytes(),
    ))
    .await;
    assert_eq!(code(&c.final_response().await), 200);
    c.send(&request(
        "UPDATE",
        "call-p",
        6,
        Some(&tag),
        "UDP",
        Some("application/rs-metadata+xml"),
        b"<recording><oops></recording>",
    ))
    .await;
    assert_eq!(code(&c.final_response().await), 400);
    tokio::time::sleep(Duration::from_millis(50)).await;
    c.bye("call-p", 7, &tag).await;

    let got = chunks_of(&events_until_end(&bus, "t4").await);
    let seqs: Vec<u64> = got.iter().map(|g| g.0).collect();
    assert_eq!(
        seqs,
        vec![0, 1, 2, 3, 4, 6, 7, 8, 9, 10],
        "the pause skips one sequence number"
    );
    for (i, g) in got.iter().enumerate() {
        let k = i as u16;
        assert_eq!(g.2, stereo(k), "chunk {i}");
        if i < 5 {
            assert_eq!(g.1, k as u64 * 160);
        }
    }
    // Packet 5 arrived at least the 1.5 s slept after packet 4 began (frame
    // 640): it is placed there, so the gap is at least that minus a packet.
    assert!(got[5].1 >= 4 * 160 + 12_000, "gap too short: offset {}", got[5].1);
    for w in got[5..].windows(2) {
        assert_eq!(w[1].1, w[0].1 + 160);
    }
    srv.stop().await;
}

#[tokio::test]
async fn an_src_that_vanishes_is_ended_by_rtp_inactivity_and_an_unacked_200_is_repeated() {
    let bus: Arc<dyn Bus> = Arc::new(MemoryBus::new());
    let srv = start_with(config_with(4, 1), bus.clone()).await;
    let sip_addr = srv.sip_addr(Transport::Udp).unwrap();
    let c = Udp::new(sip_addr).await;
    c.send(&siprec_invite("call-v", "UDP", &good_sdp(), &metadata())).await;
    let ok = c.final_response().await;
    assert_eq!(code(&ok), 200);
    // No ACK: the 200 comes again (RFC 3261 13.3.1.4).
    let again = c.final_response().await;
    assert_eq!((code(&again), again.tag("To")), (200, ok.tag("To")));
    let (cust_port, agent_port) = answer_ports(&ok);
    let agent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let cust = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for k in 0..3 {
        send_pair(
            &agent,
            &cust,
            SocketAddr::new(sip_addr.ip(), agent_port),
            SocketAddr::new(sip_addr.ip(), cust_port),
            k,
        )
        .await;
    }
    // Then nothing: no BYE, no RTP.
    let events = events_until_end(&bus, "t5").await;
    let Some(Event::CallEnded(end)) = &events.last().unwrap().event else {
        unreachable!()
    };
    assert_eq!(end.reason, v1::EndReason::Error as i32);
    assert_eq!(end.last_sequence, 2);
    let got = chunks_of(&events);
    assert_eq!(
        got.iter().map(|g| g.2.clone()).collect::<Vec<_>>(),
        (0..3).map(stereo).collect::<Vec<_>>()
    );
    assert_eq!(srv.counters.sessions_ended.load(Ordering::Relaxed), 1);
    // The SRS ends the dialog itself: a BYE to the SRC's Contact.
    let mut buf = vec![0u8; 65_536];
    let bye = loop {
        let (n, _) = tokio::time::timeout(WAIT, c.sock.recv_from(&mut buf))
            .await
            .expect("a BYE")
            .unwrap();
        let (m, _) = Message::parse(&buf[..n], false).unwrap();
        if m.method() == Some("BYE") {
            break m;
        }
    };
    assert_eq!(
        bye.start,
        StartLine::Request {
            method: "BYE".into(),
            uri: "sip:src@127.0.0.1:5099".into()
        }
    );
    assert_eq!(
        (bye.call_id(), bye.tag("To"), bye.tag("From")),
        (Some("call-v"), Some("src1"), ok.tag("To"))
    );
    srv.stop().await;
}

/// Issue 19: a metadata update that names a new agent (a transfer) maps the
/// call again; what changed goes out as one `CallContext` by `siprec`, after
/// the audio so far and before the end, valid under the contract. The same
/// metadata again sends nothing.
#[tokio::test]
async fn a_metadata_update_with_a_new_agent_publishes_a_call_context() {
    let bus: Arc<dyn Bus> = Arc::new(MemoryBus::new());
    let srv = start(4, bus.clone()).await;
    let sip_addr = srv.sip_addr(Transport::Udp).unwrap();
    let c = Udp::new(sip_addr).await;
    // Agent 5001: no mapping entry, the default context (customer center, general).
    let first = metadata().replace("sip:4001@bank.example", "sip:5001@bank.example");
    c.send(&siprec_invite("call-t", "UDP", &good_sdp(), &first)).await;
    let ok = c.final_response().await;
    assert_eq!(code(&ok), 200);
    let tag = ok.tag("To").unwrap().to_owned();
    c.send(&request("ACK", "call-t", 1, Some(&tag), "UDP", None, b"")).await;
    let (cust_port, agent_port) = answer_ports(&ok);
    let (to_agent, to_cust) = (
        SocketAddr::new(sip_addr.ip(), agent_port),
        SocketAddr::new(sip_addr.ip(), cust_port),
    );
    let agent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let cust = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for k in 0..5 {
        send_pair(&agent, &cust, to_agent, to_cust, k).await;
    }
    // Transferred to agent 4001, whose number maps to Markets, investment advice.
    for cseq in [2, 3] {
        c.send(&request(
            "UPDATE",
            "call-t",
            cseq,
            Some(&tag),
            "UDP",
            Some("application/rs-metadata+xml"),
            metadata().as_bytes(),
        ))
        .await;
        assert_eq!(code(&c.final_response().await), 200);
    }
    for k in 5..8 {
        send_pair(&agent, &cust, to_agent, to_cust, k).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    c.bye("call-t", 4, &tag).await;

    let events = events_until_end(&bus, "t-cti").await;
    let Some(Event::CallStarted(s)) = &events[0].event else {
        panic!("{events:?}")
    };
    assert_eq!(
        (s.advisor_id.as_str(), s.desk, s.service_category),
        (
            "5001",
            v1::Desk::CustomerCenter as i32,
            v1::ServiceCategory::General as i32
        )
    );
    let contexts: Vec<(usize, &v1::CallContext)> = events
        .iter()
        .enumerate()
        .filter_map(|(i, e)| match &e.event {
            Some(Event::CallContext(c)) => Some((i, c)),
            _ => None,
        })
        .collect();
    assert_eq!(contexts.len(), 1, "one change, one event: {events:?}");
    let (at, ctx) = contexts[0];
    assert_eq!(events[at].call_id, events[0].call_id);
    assert_eq!(ctx.by, "siprec");
    assert_eq!(ctx.advisor_id.as_deref(), Some("4001"));
    assert_eq!(ctx.desk, Some(v1::Desk::Markets as i32));
    assert_eq!(ctx.service_category, Some(v1::ServiceCategory::InvestmentAdvice as i32));
    assert_eq!(ctx.customer_ref, None, "SIPREC metadata names no customer reference");
    assert!(ctx.at.is_some() && ctx.reason.contains("4001"), "{ctx:?}");
    opptak_proto::convert::call_context(ctx, 0).expect("valid under the contract");
    // After the audio before the transfer, before the end.
    assert!(events[..at]
        .iter()
        .any(|e| matches!(e.event, Some(Event::AudioChunk(_)))));
    assert!(matches!(events.last().unwrap().event, Some(Event::CallEnded(_))));
    assert_eq!(chunks_of(&events).len(), 8, "the audio is unaffected");
    srv.stop().await;
}

/// The soak's finding: a BYE overtook the last RTP of a call. Here the SRC
/// sends a burst of packets (as an SBC flushing its buffer does) and the BYE
/// right behind it: the burst waits in the ports' kernel buffers while the
/// BYE is answered, and the session must not end before every packet that
/// arrived before the BYE was read. Each packet counts: the recording is
/// the whole burst.
#[tokio::test]
async fn a_bye_right_behind_a_burst_of_rtp_ends_the_call_with_the_whole_burst() {
    let bus: Arc<dyn Bus> = Arc::new(MemoryBus::new());
    let srv = start(4, bus.clone()).await;
    let sip_addr = srv.sip_addr(Transport::Udp).unwrap();
    let c = Udp::new(sip_addr).await;
    c.send(&siprec_invite("call-burst", "UDP", &good_sdp(), &metadata()))
        .await;
    let ok = c.final_response().await;
    assert_eq!(code(&ok), 200);
    let to_tag = ok.tag("To").unwrap().to_owned();
    c.send(&request("ACK", "call-burst", 1, Some(&to_tag), "UDP", None, b""))
        .await;
    let (cust_port, agent_port) = answer_ports(&ok);
    let agent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let cust = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (to_agent, to_cust) = (
        SocketAddr::new(sip_addr.ip(), agent_port),
        SocketAddr::new(sip_addr.ip(), cust_port),
    );
    // The first pair latches both streams and starts the call's clock.
    send_pair(&agent, &cust, to_agent, to_cust, 0).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    // 2.4 s of audio at once: more than reading one packet per port every
    // 2 ms drains within the BYE's 100 ms grace.
    const N: u16 = 120;
    for k in 1..N {
        send_pair_now(&agent, &cust, to_agent, to_cust, k).await;
    }
    c.bye("call-burst", 2, &to_tag).await;
    let events = events_until_end(&bus, "t-burst").await;
    let got = chunks_of(&events);
    assert_eq!(got.len(), N as usize, "one chunk per packet pair of the burst");
    assert_eq!(
        got.iter().map(|g| g.2.clone()).collect::<Vec<_>>(),
        (0..N).map(stereo).collect::<Vec<_>>()
    );
    assert_eq!(srv.counters.rtp_received.load(Ordering::Relaxed), 2 * N as u64);
    srv.stop().await;
}
