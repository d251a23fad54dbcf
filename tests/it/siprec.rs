//! Issue 19: the `siprec` role against a real SIP stack. PJSIP (PyPI
//! `pjsua2-python`, driven by tests/siprec/src_client.py) is the Session
//! Recording Client; the role runs in-process against the real Kafka broker
//! and PostgreSQL, with the recorder, and the tests read what the vault
//! stored (the wire codes, `Vault::read_artifact_wire`).
//!
//! Audio: each WAV is espeak-ng speech at 8 kHz, companded once through the
//! call's codec (every sample a G.711 reconstruction level: PJSIP's A-law
//! encoder rounds boundary samples differently from ITU G.191, see
//! tests/siprec/selftest.py), so the reference encoding is unambiguous:
//! `opptak_domain::g711` of the file. A channel of the stored wire audio must
//! equal it byte for byte once aligned on the first packet, with nothing but
//! codec silence around it.
//!
//! Calls straight to the role test SIP as an SBC speaks it (in-dialog
//! requests go to the role's Contact). Calls through tests/siprec/rtp_proxy.py
//! (SIP-aware, it relays the media) test loss, reordering and duplication
//! with exact expectations: its log says which packet (sequence number, RTP
//! timestamp) it dropped, duplicated or held back, so each stored channel is
//! rebuilt from the log and compared whole, and the recording's gaps must be
//! exactly the stretches neither stream covered.
//!
//! The tests skip without `OPPTAK_TEST_PJSUA2_PYTHON` (exported by
//! `deploy/local/services.sh env` once it installed pjsua2), unless
//! `OPPTAK_REQUIRE_SERVICES=1`.

use crate::common;
use common::{Backend, Env};
use opptak::app::RunningRecorder;
use opptak_domain::g711;
use opptak_domain::model::{CallId, ChannelRole, Codec};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

const AGENT_TEXT: &str = "Good morning, you are speaking with Kari at the bank. How can I help you today?";
const CUSTOMER_TEXT: &str = "Hello, I would like to move my savings into a fixed rate account, please.";

/// The SIPREC test peer's Python, or None (skip).
fn peer_python() -> Option<PathBuf> {
    match std::env::var("OPPTAK_TEST_PJSUA2_PYTHON") {
        Ok(p) => Some(PathBuf::from(p)),
        Err(_) => common::skip("OPPTAK_TEST_PJSUA2_PYTHON not set (deploy/local/services.sh install)"),
    }
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/siprec").join(name)
}

/// The client and the proxy against a minimal SRS on plain sockets
/// (tests/siprec/selftest.py): the INVITE's multipart body (SDP with labels,
/// RFC 7865 metadata), RTP with PT 0 and 8 whose payload is the G.711
/// encoding of each WAV, every scenario, and the proxy's log matching what
/// arrived. Independent of the role: a failure here is the peer's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pjsip_test_peer_passes_its_self_test() {
    let Some(python) = peer_python() else { return };
    let out = tokio::time::timeout(
        Duration::from_secs(300),
        tokio::process::Command::new(python)
            .arg(script("selftest.py"))
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("selftest.py still running after 300 s")
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim_end().ends_with("ok"),
        "selftest.py failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum G711 {
    Pcmu,
    Pcma,
}

impl G711 {
    fn name(self) -> &'static str {
        match self {
            G711::Pcmu => "PCMU",
            G711::Pcma => "PCMA",
        }
    }
    fn encode(self, s: i16) -> u8 {
        match self {
            G711::Pcmu => g711::ulaw_encode(s),
            G711::Pcma => g711::alaw_encode(s),
        }
    }
    fn decode(self, c: u8) -> i16 {
        match self {
            G711::Pcmu => g711::ulaw_decode(c),
            G711::Pcma => g711::alaw_decode(c),
        }
    }
    /// The code of digital silence (what PJSIP sends for a zero sample).
    fn silence(self) -> u8 {
        self.encode(0)
    }
    fn codec(self) -> Codec {
        match self {
            G711::Pcmu => Codec::Pcmu,
            G711::Pcma => Codec::Pcma,
        }
    }
}

/// One test WAV: its path and its reference encoding.
struct Wav {
    path: PathBuf,
    reference: Vec<u8>,
}

/// `text` spoken by espeak-ng, 8 kHz mono, companded through `codec`.
fn speech(dir: &Path, name: &str, text: &str, voice: &str, codec: G711) -> Wav {
    let reference: Vec<u8> = common::espeak(dir, text, voice, 165, 8000)
        .into_iter()
        .map(|x| codec.encode(x))
        .collect();
    let path = dir.join(format!("{name}-{}.wav", codec.name()));
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&path, spec).unwrap();
    for &c in &reference {
        w.write_sample(codec.decode(c)).unwrap();
    }
    w.finalize().unwrap();
    Wav { path, reference }
}

/// Runs the client; returns its JSON line.
async fn run_client(python: PathBuf, args: Vec<String>) -> Value {
    let out = tokio::time::timeout(
        Duration::from_secs(90),
        tokio::process::Command::new(python)
            .arg(script("src_client.py"))
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("src_client.py still running after 90 s")
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().rev().find(|l| l.starts_with('{')).unwrap_or_else(|| {
        panic!(
            "src_client.py printed no JSON ({}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    });
    serde_json::from_str(line).unwrap()
}

/// The client's arguments for one call.
fn client_args(target: &str, transport: &str, agent: &Wav, customer: &Wav, codec: &str, scenario: &str) -> Vec<String> {
    [
        "--target",
        target,
        "--transport",
        transport,
        "--agent-wav",
        &agent.path.display().to_string(),
        "--customer-wav",
        &customer.path.display().to_string(),
        "--codec",
        codec,
        "--scenario",
        scenario,
        "--timeout",
        "40",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// One channel of interleaved stereo G.711.
fn channel(wire: &[u8], ch: usize) -> Vec<u8> {
    wire.chunks_exact(2).map(|f| f[ch]).collect()
}

/// Where `reference` starts in `stored`: the first non-silent code of each,
/// lined up.
fn alignment(stored: &[u8], reference: &[u8], silence: u8) -> Result<usize, String> {
    let r0 = reference
        .iter()
        .position(|&c| c != silence)
        .ok_or("a silent reference")?;
    let s0 = stored
        .iter()
        .position(|&c| c != silence)
        .ok_or("the stored channel is silent")?;
    if s0 < r0 {
        return Err(format!("stored audio starts {s0} before the reference's {r0}"));
    }
    Ok(s0 - r0)
}

/// Whether `stored` is `reference` at its alignment, silence around it:
/// the alignment, or what differs.
fn identical(stored: &[u8], reference: &[u8], silence: u8) -> Result<usize, String> {
    let at = alignment(stored, reference, silence)?;
    let mut expected = vec![silence; at];
    expected.extend_from_slice(reference);
    let n = expected.len().min(stored.len());
    if let Some(i) = (0..n).find(|&i| stored[i] != expected[i]) {
        return Err(format!("differs from the reference at sample {i} (aligned at {at})"));
    }
    if stored.len() + 160 < expected.len() {
        return Err(format!("{} samples stored, {} expected", stored.len(), expected.len()));
    }
    if !stored[n..].iter().all(|&c| c == silence) {
        return Err("audio after the reference's end".into());
    }
    Ok(at)
}

/// `stored` is `reference` at its alignment, silence around it.
fn assert_identical(what: &str, stored: &[u8], reference: &[u8], silence: u8) -> usize {
    identical(stored, reference, silence).unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// Runs of `silence` at least a packet long in `stored[from..to]`, as
/// (start, length): what a failed pause check shows.
fn silent_runs(stored: &[u8], from: usize, to: usize, silence: u8) -> Vec<(usize, usize)> {
    let to = to.min(stored.len());
    let mut runs = Vec::new();
    let mut i = from;
    while i < to {
        let len = stored[i..to].iter().take_while(|&&c| c == silence).count();
        if len >= 160 {
            runs.push((i, len));
        }
        i += len.max(1);
    }
    runs
}

/// One channel of a call paused once: the gap `[at, at + frames)` holds
/// silence and, without it, the channel is `reference`, except that the
/// channel's own pause may start up to [`PAUSE_SKEW`] frames before the gap
/// or end after it. Both streams' players are stopped (and restarted) by
/// two calls between ticks of PJSIP's media clock, so one stream may send
/// its last packet before the pause (or its first after) a packet before
/// the other; the role records each stream as sent, and the gap is only
/// where neither had audio. Returns the channel's extra silence in frames.
fn assert_paused_channel(what: &str, stored: &[u8], at: usize, frames: usize, reference: &[u8], silence: u8) -> usize {
    assert!(
        stored[at..at + frames].iter().all(|&c| c == silence),
        "{what}: the gap holds silence"
    );
    let joined = [&stored[..at], &stored[at + frames..]].concat();
    let first = match identical(&joined, reference, silence) {
        Ok(_) => return 0,
        Err(e) => e,
    };
    // The channel's pause is a silent run around `at` in `joined`: try each
    // place and length (whole packets) it could have.
    for extra in (160..=PAUSE_SKEW).step_by(160) {
        for s in at.saturating_sub(extra)..=at.min(joined.len().saturating_sub(extra)) {
            if joined[s..s + extra].iter().all(|&c| c == silence) {
                let rest = [&joined[..s], &joined[s + extra..]].concat();
                if identical(&rest, reference, silence).is_ok() {
                    return extra;
                }
            }
        }
    }
    panic!(
        "{what}: {first}; not explained by up to {PAUSE_SKEW} frames of this channel's own pause \
         next to the gap at {at} (+{frames}); silent runs near it: {:?}",
        silent_runs(stored, at.saturating_sub(4000), at + frames + 4000, silence)
    );
}

/// How far one stream's pause may reach past the gap: a packet at each end.
const PAUSE_SKEW: usize = 2 * 160;

/// The pause check itself (no services): a stream that stopped a packet
/// before the gap and restarted a packet after it passes; a channel that
/// lost a packet of audio there, or had one swapped, does not.
#[test]
fn the_pause_check_allows_a_packet_of_skew_and_no_lost_audio() {
    let silence = 0xd5;
    let reference: Vec<u8> = (0..4000u32).map(|i| (i % 200) as u8 + 1).collect();
    let (p, at, frames) = (1600usize, 1600usize, 800usize);
    let build = |before: usize, after: usize, r: &[u8]| -> Vec<u8> {
        let mut v = r[..p - before].to_vec();
        v.extend(std::iter::repeat_n(silence, before + frames + after));
        v.extend_from_slice(&r[p - before..]);
        v
    };
    assert_eq!(
        assert_paused_channel("exact", &build(0, 0, &reference), at, frames, &reference, silence),
        0
    );
    // This channel stopped a packet before the gap and resumed a packet after.
    let skewed = build(160, 160, &reference);
    assert_eq!(
        assert_paused_channel("skewed", &skewed, at, frames, &reference, silence),
        320
    );
    let too_far = build(320, 160, &reference);
    let r = std::panic::catch_unwind(|| assert_paused_channel("too far", &too_far, at, frames, &reference, silence));
    assert!(r.is_err(), "more than a packet at each end is not skew");
    let lost: Vec<u8> = [&reference[..p - 160], &vec![silence; 160 + frames][..], &reference[p..]].concat();
    let r = std::panic::catch_unwind(|| assert_paused_channel("lost", &lost, at, frames, &reference, silence));
    assert!(r.is_err(), "a lost packet of audio is not a pause");
    let mut swapped = build(0, 0, &reference);
    swapped.swap(100, 101);
    let r = std::panic::catch_unwind(|| assert_paused_channel("swapped", &swapped, at, frames, &reference, silence));
    assert!(r.is_err(), "changed audio is not a pause");
}

/// Everything of one test: the environment, the recorder, the `siprec` role.
struct Rig {
    env: Env,
    edges: opptak::app::Edges,
    recorder: Option<RunningRecorder>,
    srs: Srs,
    python: PathBuf,
    seen: BTreeMap<String, opptak_proto::v1::RecordingStored>,
}

impl Rig {
    async fn new(name: &str, extra: &[(&str, &str)]) -> Option<Self> {
        Self::with_srs(name, extra, SrsOptions::default()).await
    }

    async fn with_srs(name: &str, extra: &[(&str, &str)], options: SrsOptions) -> Option<Self> {
        let python = peer_python()?;
        let kafka = common::kafka()?;
        let postgres = common::postgres_db(name).await?;
        let mut env = Env::new(&Backend::Services { kafka, postgres }, name);
        for (k, v) in extra {
            env.vars.push((k.to_string(), v.to_string()));
        }
        env.config = opptak::config::Config::load_from(None, &env.vars).unwrap();
        let edges = env.edges().await;
        let recorder = Some(RunningRecorder::spawn(edges.recorder()));
        let srs = Srs::start(&edges, &options).await;
        Some(Self {
            env,
            edges,
            recorder,
            srs,
            python,
            seen: BTreeMap::new(),
        })
    }

    fn udp(&self) -> String {
        format!("sip:srs@{}", self.srs.udp)
    }

    fn tcp(&self) -> String {
        format!("sip:srs@{}", self.srs.tcp)
    }

    async fn client(&self, args: Vec<String>) -> Value {
        run_client(self.python.clone(), args).await
    }

    /// The next recording stored (one call at a time).
    async fn next_recording(&mut self) -> (CallId, opptak_vault::WireArtifact, Vec<opptak_store::meta::GapRow>) {
        let all = common::wait_for_recordings(&self.edges, self.seen.len() + 1, 60).await;
        let (id, stored) = all
            .into_iter()
            .find(|(id, _)| !self.seen.contains_key(id))
            .expect("a new recording");
        self.seen.insert(id.clone(), stored);
        let cid = CallId::parse(&id).unwrap();
        let wire = self
            .edges
            .vault()
            .read_artifact_wire(&cid, opptak_vault::Which::Recording)
            .await
            .unwrap();
        let gaps = self.edges.meta.gaps(&wire.record.recording_id).await.unwrap();
        (cid, wire, gaps)
    }

    async fn stop(mut self) {
        self.srs.stop().await;
        if let Some(r) = self.recorder.take() {
            r.stop().await.unwrap();
        }
        drop(self.env);
    }
}

/// Checks one stored call against its two WAVs: roles, codec, audio.
fn assert_call(wire: &opptak_vault::WireArtifact, codec: G711, agent: &Wav, customer: &Wav) {
    let f = &wire.record.facts;
    assert_eq!(f.format.codec(), codec.codec());
    assert_eq!(f.format.sample_rate_hz(), 8000);
    assert_eq!(f.format.channel_roles(), &[ChannelRole::Agent, ChannelRole::Customer]);
    let s = codec.silence();
    let a = assert_identical("agent channel", &channel(&wire.wire, 0), &agent.reference, s);
    let c = assert_identical("customer channel", &channel(&wire.wire, 1), &customer.reference, s);
    // Both streams were started by the same tick of PJSIP's clock.
    assert!(a.abs_diff(c) <= 160, "channels {a} and {c} apart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pcmu_then_pcma_calls_are_sample_identical_with_roles_from_the_metadata() {
    let Some(mut rig) = Rig::new("siprec_basic", &[]).await else {
        return;
    };
    let dir = rig.env.dir.path().to_path_buf();
    for (codec, transport, customer_first) in [(G711::Pcmu, "udp", false), (G711::Pcma, "tcp", true)] {
        let agent = speech(&dir, "agent", AGENT_TEXT, "en-us+f3", codec);
        let customer = speech(&dir, "customer", CUSTOMER_TEXT, "en-gb+m3", codec);
        let target = if transport == "udp" { rig.udp() } else { rig.tcp() };
        let mut args = client_args(&target, transport, &agent, &customer, codec.name(), "basic");
        if customer_first {
            // The customer's stream is the first m-line: only the metadata
            // (participantstreamassoc) says which stream is whose.
            args.push("--customer-first".into());
        }
        let out = rig.client(args).await;
        assert_eq!(out["final_status"], 200, "{out}");
        let (_, wire, gaps) = rig.next_recording().await;
        assert!(wire.record.complete, "{codec:?}: ended and complete");
        let end = wire.record.end.as_ref().expect("ended");
        assert_ne!(
            end.reason, "error",
            "{codec:?}: ended by the BYE (PJSIP sends it to the role's Contact), not by RTP inactivity"
        );
        assert!(gaps.is_empty(), "{codec:?}: gaps {gaps:?}");
        assert_call(&wire, codec, &agent, &customer);
    }
    rig.stop().await;
}

/// The local test PKI (`OPPTAK_TEST_TLS_DIR`: ca.pem, server.*, client.*),
/// or None (skip).
fn tls_dir() -> Option<PathBuf> {
    match std::env::var("OPPTAK_TEST_TLS_DIR") {
        Ok(d) => Some(PathBuf::from(d)),
        Err(_) => common::skip("OPPTAK_TEST_TLS_DIR not set (deploy/local/services.sh)"),
    }
}

/// PJSIP's TLS transport (the wheel has one) to the role's `tls:` listener
/// under mutual TLS: PJSIP checks the role's certificate against the test
/// CA and presents its client certificate; the call, to a `sips:` URI, is
/// stored sample-identical and ended by PJSIP's BYE over the same TLS
/// connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pjsip_call_over_mutual_tls_is_sample_identical() {
    let Some(tls) = tls_dir() else { return };
    let options = SrsOptions {
        tls_dir: Some(tls.clone()),
        ..SrsOptions::default()
    };
    let Some(mut rig) = Rig::with_srs("siprec_tls", &[], options).await else {
        return;
    };
    let dir = rig.env.dir.path().to_path_buf();
    let codec = G711::Pcmu;
    let agent = speech(&dir, "agent", AGENT_TEXT, "en-us+f3", codec);
    let customer = speech(&dir, "customer", CUSTOMER_TEXT, "en-gb+m3", codec);
    let target = format!("sips:srs@{}", rig.srs.tls.expect("a tls listener"));
    let mut args = client_args(&target, "tls", &agent, &customer, codec.name(), "basic");
    for (flag, file) in [
        ("--tls-ca", "ca.pem"),
        ("--tls-cert", "client.pem"),
        ("--tls-key", "client.key"),
    ] {
        args.push(flag.into());
        args.push(tls.join(file).display().to_string());
    }
    let out = rig.client(args).await;
    assert_eq!(out["final_status"], 200, "{out}");
    let (_, wire, gaps) = rig.next_recording().await;
    assert!(wire.record.complete, "ended and complete");
    assert_ne!(
        wire.record.end.as_ref().expect("ended").reason,
        "error",
        "ended by PJSIP's BYE over TLS, not by RTP inactivity"
    );
    assert!(gaps.is_empty(), "gaps {gaps:?}");
    assert_call(&wire, codec, &agent, &customer);
    assert_eq!(
        rig.srs
            .handle
            .counters
            .tls_refused
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    rig.stop().await;
}

/// At `siprec.max_sessions` a real SRC is refused with 503 and Retry-After
/// (it may try again, or fork to another recorder); once the call that
/// filled the role ends, the next call is taken and recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_capacity_a_pjsip_src_gets_503_with_retry_after_and_a_later_call_succeeds() {
    use std::sync::atomic::Ordering;
    let options = SrsOptions {
        max_sessions: 1,
        ..SrsOptions::default()
    };
    let Some(mut rig) = Rig::with_srs("siprec_capacity", &[], options).await else {
        return;
    };
    let dir = rig.env.dir.path().to_path_buf();
    let codec = G711::Pcmu;
    let agent = speech(&dir, "agent", AGENT_TEXT, "en-us+f3", codec);
    let customer = speech(&dir, "customer", CUSTOMER_TEXT, "en-gb+m3", codec);
    let args = client_args(&rig.udp(), "udp", &agent, &customer, codec.name(), "basic");
    let counters = rig.srs.handle.counters.clone();
    // The first call holds the role's one session while its files play and
    // 15 s after (silence), so a loaded machine starting the second
    // client's Python and PJSIP slowly still finds it up.
    let mut holding = args.clone();
    holding.extend(["--tail-ms".to_owned(), "15000".to_owned()]);
    let first = tokio::spawn(run_client(rig.python.clone(), holding));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while counters.sessions_started.load(Ordering::Relaxed) < 1 {
        assert!(tokio::time::Instant::now() < deadline, "the first call never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refused = rig.client(args.clone()).await;
    assert_eq!(refused["final_status"], 503, "{refused}");
    assert_eq!(refused["retry_after"], "5", "{refused}");
    assert!(refused["answered_unix_ms"].is_null(), "{refused}");
    let out = first.await.unwrap();
    assert_eq!(out["final_status"], 200, "{out}");
    let (_, wire, _) = rig.next_recording().await;
    assert_call(&wire, codec, &agent, &customer);
    // Once the first session ended (its BYE's grace passed), a call is taken.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while counters.sessions_ended.load(Ordering::Relaxed) < 1 {
        assert!(tokio::time::Instant::now() < deadline, "the first call never ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let later = rig.client(args).await;
    assert_eq!(later["final_status"], 200, "{later}");
    let (_, wire, gaps) = rig.next_recording().await;
    assert!(gaps.is_empty(), "gaps {gaps:?}");
    assert_call(&wire, codec, &agent, &customer);
    assert_eq!(
        counters.sessions_started.load(Ordering::Relaxed),
        2,
        "the refused call was no session"
    );
    rig.stop().await;
}

/// The impairment proxy (tests/siprec/rtp_proxy.py) in front of the role's
/// UDP listener.
struct Proxy {
    child: tokio::process::Child,
    sip: String,
    log: PathBuf,
}

impl Proxy {
    async fn start(rig: &Rig, name: &str, schedule: &[&str]) -> Self {
        use tokio::io::AsyncBufReadExt;
        let log = rig.env.dir.path().join(format!("{name}-proxy.json"));
        let mut child = tokio::process::Command::new(&rig.python)
            .arg(script("rtp_proxy.py"))
            .args(["--server", &rig.srs.udp.to_string(), "--idle-exit-ms", "1500", "--log"])
            .arg(&log)
            .args(schedule)
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("rtp_proxy.py did not start")
            .unwrap()
            .unwrap();
        let v: Value = serde_json::from_str(&first).unwrap();
        let sip = format!("sip:srs@{}", v["sip"].as_str().unwrap());
        Self { child, sip, log }
    }

    /// Waits for the proxy to exit (idle) and returns its log.
    async fn finish(mut self) -> Value {
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("rtp_proxy.py still running")
            .unwrap();
        assert!(status.success(), "rtp_proxy.py: {status}");
        serde_json::from_slice(&std::fs::read(&self.log).unwrap()).unwrap()
    }
}

/// What one stream's channel must hold, from the proxy's log: the k-th
/// audio packet (sequence order) carries frames k*160.. of the reference (then
/// silence: PJSIP sends silence once the file ended) at its RTP timestamp
/// after the stream's first; a dropped packet leaves silence. Returns the
/// channel and which frames were received.
fn expected_from_log(stream: &Value, reference: &[u8], codec: G711) -> (Vec<u8>, Vec<bool>) {
    let pt = if codec == G711::Pcmu { 0 } else { 8 };
    let mut packets: BTreeMap<u16, (u32, bool)> = BTreeMap::new();
    let mut first_seq = None;
    for p in stream["packets"].as_array().unwrap() {
        if p["pt"] != pt {
            continue;
        }
        let seq = p["seq"].as_u64().unwrap() as u16;
        let s0 = *first_seq.get_or_insert(seq);
        let dropped = p["action"] == "drop";
        packets
            .entry(seq.wrapping_sub(s0))
            .or_insert((p["ts"].as_u64().unwrap() as u32, dropped));
    }
    let ts0 = packets.values().next().expect("audio packets").0;
    let mut out = Vec::new();
    let mut received = Vec::new();
    for (k, (ts, dropped)) in packets.values().enumerate() {
        let pos = ts.wrapping_sub(ts0) as usize;
        if out.len() < pos + 160 {
            out.resize(pos + 160, codec.silence());
            received.resize(pos + 160, false);
        }
        if !dropped {
            for i in 0..160 {
                out[pos + i] = reference.get(k * 160 + i).copied().unwrap_or(codec.silence());
                received[pos + i] = true;
            }
        }
    }
    (out, received)
}

/// Compares a stored channel with the expected one, placed where the stored
/// audio starts (the session's first packet is frame 0; a stream whose first
/// packet came a tick later starts a packet later). Up to `tail_slack`
/// frames at the end may be missing (packets that arrived after the BYE).
/// Returns where the channel starts and how much of `expected` it holds.
fn assert_channel(what: &str, stored: &[u8], expected: &[u8], silence: u8, tail_slack: usize) -> (usize, usize) {
    let at = |i: usize| stored.get(i).copied().unwrap_or(silence);
    // The first difference with the channel starting at `base`, if any.
    let diff = |base: usize| {
        (0..base)
            .find(|&i| at(i) != silence)
            .or_else(|| {
                (0..expected.len())
                    .map(|i| base + i)
                    .find(|&i| at(i) != expected[i - base])
            })
            .or_else(|| (base + expected.len()..stored.len()).find(|&i| at(i) != silence))
    };
    for base in (0..=8 * 160).step_by(160) {
        match diff(base) {
            None => return (base, expected.len()),
            // A shortened end: what is stored stops early, silence after.
            Some(d)
                if d >= base + expected.len().saturating_sub(tail_slack)
                    && d < base + expected.len()
                    && (d..stored.len()).all(|i| at(i) == silence) =>
            {
                return (base, d - base);
            }
            Some(_) => {}
        }
    }
    let d = diff(0).unwrap_or(0);
    let window = |v: &[u8], i: usize| v[i.saturating_sub(8).min(v.len())..(i + 24).min(v.len())].to_vec();
    let probe = &expected[(d + 8).min(expected.len())..(d + 168).min(expected.len())];
    let found = stored.windows(probe.len().max(1)).position(|w| w == probe);
    panic!(
        "{what}: stored audio differs from what was sent (first difference at {d}, {} stored, {} expected; \
         the expected frame after it is at {found:?} in the stored)\nstored   {:?}\nexpected {:?}",
        stored.len(),
        expected.len(),
        window(stored, d),
        window(expected, d),
    )
}

/// The frames no stream received, as (start, length) runs: where the
/// recording must have its gaps.
fn uncovered(a: &[bool], base_a: usize, b: &[bool], base_b: usize) -> Vec<(u64, u64)> {
    let end = (base_a + a.len()).max(base_b + b.len());
    let start = base_a.min(base_b);
    let covered = |v: &[bool], base: usize, i: usize| i >= base && v.get(i - base).copied().unwrap_or(false);
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for i in start..end {
        if covered(a, base_a, i) || covered(b, base_b, i) {
            continue;
        }
        match runs.last_mut() {
            Some((s, n)) if *s + *n == i as u64 => *n += 1,
            _ => runs.push((i as u64, 1)),
        }
    }
    runs
}

/// One call through the proxy: the stored channels are exactly what the
/// proxy let through, and the recording's gaps are exactly the stretches
/// neither stream covered.
async fn call_through_proxy(
    rig: &mut Rig,
    name: &str,
    schedule: &[&str],
    scenario: &str,
    extra: &[&str],
    codec: G711,
    tail_slack: usize,
) -> (
    Value,
    Value,
    opptak_vault::WireArtifact,
    Vec<opptak_store::meta::GapRow>,
) {
    let dir = rig.env.dir.path().to_path_buf();
    let agent = speech(&dir, &format!("{name}-agent"), AGENT_TEXT, "en-us+f3", codec);
    let customer = speech(&dir, &format!("{name}-customer"), CUSTOMER_TEXT, "en-gb+m3", codec);
    let proxy = Proxy::start(rig, name, schedule).await;
    let mut args = client_args(&proxy.sip, "udp", &agent, &customer, codec.name(), scenario);
    args.extend(extra.iter().map(|s| s.to_string()));
    let out = rig.client(args).await;
    let log = proxy.finish().await;
    let (_, wire, gaps) = rig.next_recording().await;
    assert_eq!(
        wire.record.facts.format.channel_roles(),
        &[ChannelRole::Agent, ChannelRole::Customer]
    );
    let streams = log["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 2, "{log}");
    let mut placed = Vec::new();
    for (i, (role, wav)) in [("agent", &agent), ("customer", &customer)].into_iter().enumerate() {
        // The client's JSON says which m-line carried which role.
        let m = out["streams"]
            .as_array()
            .unwrap()
            .iter()
            .position(|s| s["role"] == role)
            .unwrap();
        let (expected, received) = expected_from_log(&streams[m], &wav.reference, codec);
        let stored = channel(&wire.wire, i);
        // For a failure's message: where the stream's timestamps jump.
        let mut jumps = Vec::new();
        let mut last: Option<(u64, u64)> = None;
        for p in streams[m]["packets"].as_array().unwrap() {
            let (seq, ts) = (p["seq"].as_u64().unwrap_or(0), p["ts"].as_u64().unwrap_or(0));
            if let Some((s0, t0)) = last {
                if ts != t0 + 160 || seq != s0 + 1 {
                    jumps.push(format!("seq {s0}->{seq} ts {t0}->{ts} ({})", p["action"]));
                }
            }
            last = Some((seq, ts));
        }
        let (base, held) = assert_channel(
            &format!(
                "{name}: {role} (stream {m}: {} packets, jumps {jumps:?})",
                streams[m]["received"]
            ),
            &stored,
            &expected,
            codec.silence(),
            tail_slack,
        );
        placed.push((received[..held].to_vec(), base));
    }
    let want = uncovered(&placed[0].0, placed[0].1, &placed[1].0, placed[1].1);
    let got: Vec<(u64, u64)> = gaps.iter().map(|g| (g.at_frame, g.frames)).collect();
    assert_eq!(
        got, want,
        "{name}: the recording's gaps are where neither stream had audio"
    );
    (out, log, wire, gaps)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_reordered_and_duplicated_packets_through_the_impairment_proxy() {
    let Some(mut rig) = Rig::new("siprec_loss", &[]).await else {
        return;
    };
    // Stream 0 loses 3 packets alone, both lose packet 60 (a gap), stream 1
    // has one duplicated and two reordered packets, stream 0 one reordered
    // by two; plus a seeded random schedule on top.
    let schedule = [
        "--drop",
        "0:20,21,22,60",
        "--drop",
        "1:60",
        "--dup",
        "1:30",
        "--reorder",
        "1:40,70",
        "--reorder",
        "0:45+2",
        "--seed",
        "19",
        "--random-drop",
        "0.01",
        "--random-dup",
        "0.02",
        "--random-reorder",
        "0.01",
        "--random-span",
        "1000",
    ];
    let (_, log, _, gaps) = call_through_proxy(&mut rig, "loss", &schedule, "basic", &[], G711::Pcmu, 0).await;
    for s in log["streams"].as_array().unwrap() {
        assert!(!s["dropped"].as_array().unwrap().is_empty(), "{s}");
    }
    assert!(!gaps.is_empty(), "the packet both streams lost is a gap");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_by_reinvite_is_one_gap_and_the_rest_is_sample_identical() {
    let Some(mut rig) = Rig::new("siprec_pause", &[]).await else {
        return;
    };
    // Straight to the role (no Python in the media path, whose stalls on a
    // loaded machine would hold back a stream's last packet before the
    // pause): the recording has one gap, at least as long as the client
    // held the pause, holding silence; without it, each channel is the file.
    let dir = rig.env.dir.path().to_path_buf();
    let agent = speech(&dir, "agent", AGENT_TEXT, "en-us+f3", G711::Pcma);
    let customer = speech(&dir, "customer", CUSTOMER_TEXT, "en-gb+m3", G711::Pcma);
    let mut args = client_args(&rig.udp(), "udp", &agent, &customer, "PCMA", "pause-resume");
    args.extend(["--pause-at-ms", "1200", "--pause-ms", "800"].map(String::from));
    let out = rig.client(args).await;
    assert_eq!(
        out["reinvite_statuses"],
        serde_json::json!([200, 200]),
        "both re-INVITEs answered (PJSIP sends them to the role's Contact): {out}"
    );
    let (_, wire, gaps) = rig.next_recording().await;
    assert_eq!(gaps.len(), 1, "one gap for the pause: {gaps:?}");
    let (at, frames) = (gaps[0].at_frame as usize, gaps[0].frames as usize);
    assert!(frames >= 8 * 800 - 160, "the gap is as long as the pause: {gaps:?}");
    let silence = G711::Pcma.silence();
    for (ch, wav) in [(0, &agent), (1, &customer)] {
        let stored = channel(&wire.wire, ch);
        let extra = assert_paused_channel(
            &format!("pause: channel {ch}"),
            &stored,
            at,
            frames,
            &wav.reference,
            silence,
        );
        eprintln!("pause: channel {ch}: {extra} frames of its own pause beside the gap");
    }
    rig.stop().await;
}

/// New metadata mid-call (a re-INVITE, or an UPDATE, each with the SDP and
/// the new metadata, through the proxy): answered 200, the call goes on and
/// its recording is whole (roles stay as the call started: `CallStarted`
/// cannot change).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metadata_update_by_reinvite_or_update_keeps_the_call_whole() {
    let Some(mut rig) = Rig::new("siprec_update", &[]).await else {
        return;
    };
    for method in ["reinvite", "update"] {
        let (out, _, _, gaps) = call_through_proxy(
            &mut rig,
            &format!("update-{method}"),
            &[],
            "metadata-update",
            &["--update-method", method, "--update-at-ms", "1000"],
            G711::Pcmu,
            0,
        )
        .await;
        assert_eq!(out["reinvite_statuses"], serde_json::json!([200]), "{method}: {out}");
        assert!(gaps.is_empty(), "{method}: {gaps:?}");
    }
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bye_mid_burst_and_a_vanished_src_end_the_call_with_what_was_sent() {
    let Some(mut rig) = Rig::new("siprec_end", &[]).await else {
        return;
    };
    // PJSIP's media clock may send a packet or two while the BYE is on its
    // way; the role ends the session at the BYE.
    for (scenario, arg, slack) in [
        ("bye-mid-burst", "--bye-at-ms", 320),
        ("vanish-without-bye", "--vanish-at-ms", 0),
    ] {
        let (out, log, wire, _) =
            call_through_proxy(&mut rig, scenario, &[], scenario, &[arg, "1500"], G711::Pcmu, slack).await;
        // The files last longer than 1.5 s: the call ended mid-file, and the
        // recording holds exactly the packets sent (call_through_proxy).
        let sent = log["streams"][0]["received"].as_u64().unwrap();
        assert!(sent < (wire.wire.len() as u64 / 2) / 160 + 2, "{scenario}: {out}");
        assert!(wire.record.complete, "{scenario}: the call ended");
        let end = wire.record.end.as_ref().expect("ended");
        // RTP inactivity ends a session with reason ERROR (siprec.rtp_timeout_s).
        if scenario == "vanish-without-bye" {
            assert!(!out["events"].as_array().unwrap().iter().any(|e| e["event"] == "bye"));
            assert_eq!(end.reason, "error", "ended by RTP inactivity");
        } else {
            assert_ne!(end.reason, "error", "ended by the BYE");
        }
    }
    rig.stop().await;
}

/// The DTMF the client keys: long enough that finding it by chance in
/// encrypted data is out of the question.
const DIGITS: &str = "4929123456781234";

/// Where `needle` occurs under `dir` (files changed since `since`).
fn grep_dir(dir: &Path, needle: &[u8], since: std::time::SystemTime) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if e
                .metadata()
                .and_then(|m| m.modified())
                .map(|m| m >= since)
                .unwrap_or(true)
            {
                if let Ok(bytes) = std::fs::read(&p) {
                    if bytes.windows(needle.len()).any(|w| w == needle) {
                        hits.push(p);
                    }
                }
            }
        }
    }
    hits
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dtmf_during_the_call_is_never_stored_as_digits() {
    let Some(mut rig) = Rig::new("siprec_dtmf", &[]).await else {
        return;
    };
    let started = std::time::SystemTime::now();
    let dir = rig.env.dir.path().to_path_buf();
    let agent = speech(&dir, "agent", AGENT_TEXT, "en-us+f3", G711::Pcmu);
    let customer = speech(&dir, "customer", CUSTOMER_TEXT, "en-gb+m3", G711::Pcmu);
    // The digits go on the first m-line: make it the customer's, as when a
    // customer keys a card number.
    let mut args = client_args(&rig.udp(), "udp", &agent, &customer, "PCMU", "dtmf");
    args.extend(["--customer-first", "--dtmf-digits", DIGITS, "--dtmf-at-ms", "300"].map(String::from));
    let out = rig.client(args).await;
    assert_eq!(out["final_status"], 200, "{out}");
    assert!(
        out["events"].as_array().unwrap().iter().any(|e| e["event"] == "dtmf"),
        "{out}"
    );
    let (_, wire, _) = rig.next_recording().await;
    assert!(wire.record.complete);
    // The recorder flushed and the role published everything: stop both so
    // every file is written before the scan.
    let prefix = rig
        .env
        .vars
        .iter()
        .find(|(k, _)| k == "OPPTAK__BUS__TOPIC_PREFIX")
        .unwrap()
        .1
        .clone();
    let meta = rig
        .env
        .vars
        .iter()
        .find(|(k, _)| k == "OPPTAK__STORAGE__METADATA")
        .unwrap()
        .1
        .clone();
    let probe: Vec<u8> = wire
        .wire
        .windows(32)
        .find(|w| w.iter().collect::<std::collections::HashSet<_>>().len() >= 16)
        .expect("audio in the recording")
        .to_vec();
    // The role saw the key presses (counted, with their time only).
    let tones = rig
        .srs
        .handle
        .counters
        .tone_events
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(tones >= DIGITS.len() as u64, "{tones} telephone-events counted");
    let env_dir = rig.env.dir.path().to_path_buf();
    let Rig { env, srs, recorder, .. } = rig;
    srs.stop().await;
    recorder.unwrap().stop().await.unwrap();

    let needles: Vec<Vec<u8>> = [
        DIGITS.to_string(),
        DIGITS.chars().map(String::from).collect::<Vec<_>>().join(","),
    ]
    .into_iter()
    .map(String::into_bytes)
    .collect();
    // Blobs, archive, keyring: everything under the test's directory.
    for n in &needles {
        let hits = grep_dir(&env_dir, n, started);
        assert!(hits.is_empty(), "DTMF digits in files: {hits:?}");
    }
    // The database, every table as text.
    let pool = sqlx::PgPool::connect(&meta).await.unwrap();
    let tables: Vec<(String,)> =
        sqlx::query_as("SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert!(tables.len() > 5, "tables: {tables:?}");
    for (t,) in tables {
        let rows: Vec<(String,)> = sqlx::query_as(&format!("SELECT CAST(t.* AS TEXT) FROM \"{t}\" t"))
            .fetch_all(&pool)
            .await
            .unwrap();
        for (row,) in rows {
            for n in &needles {
                assert!(
                    !row.as_bytes().windows(n.len()).any(|w| w == n),
                    "DTMF digits in table {t}"
                );
            }
        }
    }
    // Kafka: every log dir of this test's topics, the telephony topic the
    // role wrote included. A positive control: that topic does hold the
    // plaintext audio, so the scan reads what is there.
    if let Ok(kafka_data) = std::env::var("OPPTAK_TEST_KAFKA_DATA") {
        let dirs: Vec<PathBuf> = std::fs::read_dir(&kafka_data)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .map(|e| e.path())
            .collect();
        assert!(!dirs.is_empty(), "no Kafka log dirs for {prefix}");
        let mut audio_seen = false;
        for d in &dirs {
            for n in &needles {
                let hits = grep_dir(d, n, started);
                assert!(hits.is_empty(), "DTMF digits in Kafka logs: {hits:?}");
            }
            audio_seen |= !grep_dir(d, &probe, started).is_empty();
        }
        assert!(audio_seen, "the scan finds the call's audio on the telephony topic");
    } else {
        assert!(!common::required(), "OPPTAK_TEST_KAFKA_DATA not set");
    }
    drop(env);
}

/// A SIP request as an SBC would send it, with `body` under `content_type`.
fn raw_request(method: &str, to: &std::net::SocketAddr, transport: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let branch = uuid::Uuid::new_v4().simple().to_string();
    let call_id = uuid::Uuid::new_v4().simple().to_string();
    let mut head = format!(
        "{method} sip:srs@{to} SIP/2.0\r\n\
         Via: SIP/2.0/{} 127.0.0.1:5999;branch=z9hG4bK{branch};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:src@127.0.0.1:5999>;tag=t{branch}\r\n\
         To: <sip:srs@{to}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 {method}\r\n\
         Contact: <sip:src@127.0.0.1:5999>;+sip.src\r\n\
         Require: siprec\r\n",
        transport.to_uppercase()
    );
    if !content_type.is_empty() {
        head.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    out
}

/// The status code of the first final response to `request` over UDP
/// (None: no answer within two seconds).
async fn udp_status(to: &std::net::SocketAddr, request: &[u8]) -> Option<u16> {
    udp_response(to, request).await.map(|(code, _)| code)
}

/// The first final response to `request` over UDP: its code and text.
async fn udp_response(to: &std::net::SocketAddr, request: &[u8]) -> Option<(u16, String)> {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(request, to).await.unwrap();
    let mut buf = vec![0u8; 65536];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    loop {
        let n = tokio::time::timeout_at(deadline, sock.recv(&mut buf))
            .await
            .ok()?
            .unwrap();
        let code = status_of(&buf[..n]);
        if code >= 200 {
            return Some((code, String::from_utf8_lossy(&buf[..n]).into_owned()));
        }
    }
}

fn status_of(msg: &[u8]) -> u16 {
    let line = msg.split(|&b| b == b'\r').next().unwrap_or_default();
    let text = String::from_utf8_lossy(line);
    assert!(text.starts_with("SIP/2.0 "), "not a response: {text}");
    text[8..11].parse().unwrap()
}

/// An SDP offer of two labelled audio streams with payload types `pts`.
fn offer(pts: &str) -> String {
    format!(
        "v=0\r\no=src 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio 6000 RTP/AVP {pts}\r\na=label:1\r\na=sendonly\r\n\
         m=audio 6002 RTP/AVP {pts}\r\na=label:2\r\na=sendonly\r\n"
    )
}

fn multipart(boundary: &str, sdp: &str, metadata: &str) -> Vec<u8> {
    format!(
        "--{boundary}\r\nContent-Type: application/sdp\r\n\r\n{sdp}\r\n\
         --{boundary}\r\nContent-Type: application/rs-metadata+xml\r\nContent-Disposition: recording-session\r\n\r\n\
         {metadata}\r\n--{boundary}--\r\n"
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_its_sip_error_and_the_role_keeps_serving() {
    let Some(mut rig) = Rig::new("siprec_bad", &[]).await else {
        return;
    };
    let udp = rig.srs.udp;
    // Valid RFC 7865 metadata: each raw request has one thing wrong.
    let good_meta = r#"<?xml version="1.0" encoding="UTF-8"?>
<recording xmlns="urn:ietf:params:xml:ns:recording:1">
  <datamode>complete</datamode>
  <session session_id="c2Vzc2lvbi0x"/>
  <participant participant_id="p1"><nameID aor="sip:agent-7@bank.example"/></participant>
  <participant participant_id="p2"><nameID aor="sip:+4791234567@pstn.example"/></participant>
  <stream stream_id="s1" session_id="c2Vzc2lvbi0x"><label>1</label></stream>
  <stream stream_id="s2" session_id="c2Vzc2lvbi0x"><label>2</label></stream>
  <participantstreamassoc participant_id="p1"><send>s1</send><recv>s2</recv></participantstreamassoc>
  <participantstreamassoc participant_id="p2"><send>s2</send><recv>s1</recv></participantstreamassoc>
</recording>"#;

    // SBCs ping recorders with OPTIONS.
    let req = raw_request("OPTIONS", &udp, "udp", "", b"");
    assert_eq!(udp_status(&udp, &req).await, Some(200), "OPTIONS");
    // A datagram shorter than its Content-Length (RFC 3261 18.3: 400).
    let mut truncated = raw_request(
        "INVITE",
        &udp,
        "udp",
        "multipart/mixed;boundary=b1",
        &multipart("b1", &offer("0"), good_meta),
    );
    truncated.truncate(truncated.len() - 100);
    assert_eq!(udp_status(&udp, &truncated).await, Some(400), "truncated");
    // Multipart without its boundary, and a body type a recorder cannot read.
    let req = raw_request(
        "INVITE",
        &udp,
        "udp",
        "multipart/mixed",
        &multipart("b2", &offer("0"), good_meta),
    );
    assert_eq!(udp_status(&udp, &req).await, Some(400), "multipart without a boundary");
    let req = raw_request(
        "INVITE",
        &udp,
        "udp",
        "multipart/mixed;boundary=b3",
        b"--b3\r\nContent-Type: application/sdp\r\n\r\nv=0",
    );
    assert_eq!(udp_status(&udp, &req).await, Some(400), "multipart never closed");
    // Malformed metadata XML: 400 with the reason in a Warning.
    let req = raw_request(
        "INVITE",
        &udp,
        "udp",
        "multipart/mixed;boundary=b5",
        &multipart("b5", &offer("0"), &good_meta.replace("</participant>", "")),
    );
    let (code, text) = udp_response(&udp, &req).await.expect("an answer");
    assert_eq!(code, 400, "malformed XML: {text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("Warning: 399 ") && l.contains("metadata")),
        "the reason in a Warning: {text}"
    );
    let req = raw_request("INVITE", &udp, "udp", "application/pdf", b"%PDF-1.4");
    assert_eq!(udp_status(&udp, &req).await, Some(415), "an unreadable body");
    // No usable codec (G.729 and GSM only).
    let req = raw_request(
        "INVITE",
        &udp,
        "udp",
        "multipart/mixed;boundary=b4",
        &multipart("b4", &offer("18 3"), good_meta),
    );
    assert_eq!(udp_status(&udp, &req).await, Some(488), "no acceptable codec");
    // Oversized over TCP: more than 64 KiB is refused, the connection closed.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let big = vec![b'a'; 70 * 1024];
        let req = raw_request("INVITE", &rig.srs.tcp, "tcp", "application/sdp", &big);
        let mut s = tokio::net::TcpStream::connect(rig.srs.tcp).await.unwrap();
        let _ = s.write_all(&req).await;
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("an answer or a close")
            .unwrap_or(0);
        assert!(n > 0, "oversized: closed without a response");
        assert_eq!(status_of(&buf[..n]), 513, "oversized");
    }
    // RTP to a port of no session: counted and dropped.
    let junk = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut rtp = vec![0x80, 0x00, 0x00, 0x01, 0, 0, 0, 160, 1, 2, 3, 4];
    rtp.extend_from_slice(&[0xFF; 160]);
    for &port in &rig.srs.handle.rtp_ports[..4] {
        junk.send_to(&rtp, ("127.0.0.1", port)).await.unwrap();
    }

    // The real client: malformed XML in the metadata gets 400, then a good
    // call is still recorded sample-identical.
    let dir = rig.env.dir.path().to_path_buf();
    let agent = speech(&dir, "agent", AGENT_TEXT, "en-us+f3", G711::Pcmu);
    let customer = speech(&dir, "customer", CUSTOMER_TEXT, "en-gb+m3", G711::Pcmu);
    let bad_xml = dir.join("bad.xml");
    std::fs::write(
        &bad_xml,
        "<recording xmlns='urn:ietf:params:xml:ns:recording:1'><participant>",
    )
    .unwrap();
    let mut args = client_args(&rig.udp(), "udp", &agent, &customer, "PCMU", "basic");
    args.extend(["--metadata-file".to_string(), bad_xml.display().to_string()]);
    let out = rig.client(args).await;
    assert_eq!(out["final_status"], 400, "malformed XML: {out}");
    let out = rig
        .client(client_args(&rig.udp(), "udp", &agent, &customer, "GSM", "basic"))
        .await;
    assert_eq!(out["final_status"], 488, "PJSIP offering GSM only: {out}");

    let out = rig
        .client(client_args(&rig.udp(), "udp", &agent, &customer, "PCMU", "basic"))
        .await;
    assert_eq!(out["final_status"], 200, "{out}");
    let (_, wire, _) = rig.next_recording().await;
    assert_call(&wire, G711::Pcmu, &agent, &customer);
    let counters = &rig.srs.handle.counters;
    let stray = counters.rtp_unknown_session.load(std::sync::atomic::Ordering::Relaxed);
    assert!(stray >= 4, "RTP to ports of no session counted: {stray}");
    rig.stop().await;
}

/// How a test's `siprec` role differs from the usual one.
struct SrsOptions {
    max_sessions: usize,
    /// A `tls:` listener too, with the local test PKI's server certificate
    /// (`OPPTAK_TEST_TLS_DIR`, deploy/local/services.sh) and mutual TLS
    /// against its CA.
    tls_dir: Option<PathBuf>,
}

impl Default for SrsOptions {
    fn default() -> Self {
        Self {
            max_sessions: 20,
            tls_dir: None,
        }
    }
}

/// The `siprec` role in-process: SIP on UDP and TCP (and TLS if asked;
/// ports chosen by the OS), RTP on a range of its own, publishing to the
/// test's telephony topic.
struct Srs {
    udp: std::net::SocketAddr,
    tcp: std::net::SocketAddr,
    tls: Option<std::net::SocketAddr>,
    handle: opptak_siprec::server::ServerHandle,
}

impl Srs {
    async fn start(edges: &opptak::app::Edges, options: &SrsOptions) -> Self {
        use opptak_siprec::config::{SiprecConfig, Transport};
        use rand::Rng;
        // Ports another test holds are skipped by the server.
        let first = rand::thread_rng().gen_range(10_000u16..29_000) * 2;
        let (tls_listener, tls) = match &options.tls_dir {
            Some(d) => (
                r#", "tls:127.0.0.1:0""#.to_owned(),
                format!(
                    "[tls]\ncert_file = {:?}\nkey_file = {:?}\nca_file = {:?}\n",
                    d.join("server.pem"),
                    d.join("server.key"),
                    d.join("ca.pem")
                ),
            ),
            None => (String::new(), String::new()),
        };
        let text = format!(
            r#"listen = ["udp:127.0.0.1:0", "tcp:127.0.0.1:0"{tls_listener}]
advertise = ""
rtp_ports = "{first}-{}"
chunk_ms = 100
jitter_depth = 10
max_sessions = {}
rtp_timeout_s = 2
agent_aor = ["sip:agent-*@bank.example"]
[default]
desk = "customer_center"
service_category = "savings"
ki_enabled = false
customer_informed = false
{tls}"#,
            first + 40,
            options.max_sessions
        );
        let config: SiprecConfig = toml::from_str(&text).unwrap();
        let topic = edges.config.recorder_config().topics.telephony;
        let handle = opptak_siprec::server::start(&config, edges.bus.clone(), &topic, edges.policy.clone())
            .await
            .unwrap();
        Self {
            udp: handle.sip_addr(Transport::Udp).unwrap(),
            tcp: handle.sip_addr(Transport::Tcp).unwrap(),
            tls: handle.sip_addr(Transport::Tls),
            handle,
        }
    }

    async fn stop(self) {
        self.handle.stop().await;
    }
}

/// The telephony events the role published for `call_id`, once its
/// `CallEnded` is there.
async fn published(rig: &Rig, call_id: &str) -> Vec<opptak_proto::v1::telephony_event::Event> {
    use opptak_proto::Message;
    let topic = rig.edges.config.recorder_config().topics.telephony;
    let mut sub = rig
        .edges
        .bus
        .subscribe(&common::unique("watch"), &[topic])
        .await
        .unwrap();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no CallEnded for {call_id}: {events:?}"
        );
        for r in sub.poll(1000, Duration::from_millis(300)).await.unwrap() {
            let ev = opptak_proto::v1::TelephonyEvent::decode(r.payload.as_ref()).unwrap();
            if ev.call_id == call_id {
                events.push(ev.event.unwrap());
            }
        }
        if events
            .iter()
            .any(|e| matches!(e, opptak_proto::v1::telephony_event::Event::CallEnded(_)))
        {
            return events;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_before_the_answer_gets_487_and_ends_the_started_call() {
    use opptak_proto::v1::telephony_event::Event;
    let Some(rig) = Rig::new("siprec_cancel", &[]).await else {
        return;
    };
    let dir = rig.env.dir.path().to_path_buf();
    let agent = speech(&dir, "agent", AGENT_TEXT, "en-us+f3", G711::Pcmu);
    let customer = speech(&dir, "customer", CUSTOMER_TEXT, "en-gb+m3", G711::Pcmu);
    // The client CANCELs on the 100 Trying; the role answers only once the
    // session's CallStarted is durable on Kafka, so the CANCEL comes first.
    let out = rig
        .client(client_args(
            &rig.udp(),
            "udp",
            &agent,
            &customer,
            "PCMU",
            "cancel-before-answer",
        ))
        .await;
    let events: Vec<&str> = out["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["event"].as_str())
        .collect();
    assert!(events.contains(&"cancel"), "{out}");
    assert_eq!(out["final_status"], 487, "{out}");
    assert_eq!(out["answered_before_cancel"], false, "{out}");
    let call_id = opptak_siprec::session::call_id(
        out["call_id"].as_str().unwrap(),
        Some(out["session_id"].as_str().unwrap()),
    );
    let evs = published(&rig, &call_id).await;
    assert_eq!(evs.len(), 2, "{evs:?}");
    assert!(matches!(evs[0], Event::CallStarted(_)), "{evs:?}");
    let Event::CallEnded(end) = &evs[1] else {
        panic!("{evs:?}")
    };
    assert!(end.no_audio, "a cancelled session has no audio: {end:?}");
    rig.stop().await;
}
