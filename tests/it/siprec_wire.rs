//! The `siprec` role as `opptak run --roles siprec` runs it, against the
//! real Kafka broker and PostgreSQL with the recorder: a hand-built SIPREC
//! call (multipart SDP + rs-metadata over UDP, A-law RTP with a packet pair
//! lost on both streams) is stored sample-identical to what was sent, with
//! the channel roles of the metadata and a gap of exactly the lost packets.
//! (The PJSIP end-to-end tests are `tests/it/siprec.rs`; the server's own
//! wire tests `crates/opptak-siprec/tests/wire.rs`.)

use crate::common;

use common::{wait_for_recordings, Backend, Env};
use opptak::app::RunningRecorder;
use opptak_domain::g711;
use opptak_domain::model::{AudioFormat, CallId, ChannelRole, Codec};
use opptak_siprec::sip::{self, Message, StartLine};
use opptak_siprec::{rtp, sdp};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;
use tokio::net::UdpSocket;

/// Kills the role's process when the test ends, passing or not.
struct Role(std::process::Child);

impl Drop for Role {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const METADATA: &str = r#"<recording xmlns='urn:ietf:params:xml:ns:recording:1'>
  <session session_id="d2lyZQ=="/>
  <participant participant_id="a"><nameID aor="sip:4711@bank.example"/></participant>
  <participant participant_id="b"><nameID aor="sip:+4799999999@carrier.example"/></participant>
  <stream stream_id="sa" session_id="d2lyZQ=="><label>agent-leg</label></stream>
  <stream stream_id="sb" session_id="d2lyZQ=="><label>customer-leg</label></stream>
  <participantstreamassoc participant_id="a"><send>sa</send></participantstreamassoc>
  <participantstreamassoc participant_id="b"><send>sb</send></participantstreamassoc>
</recording>"#;

fn sip_request(method: &str, cseq: u32, to_tag: Option<&str>, body: Option<(&str, &[u8])>) -> Vec<u8> {
    let to = to_tag.map_or(String::new(), |t| format!(";tag={t}"));
    let (ct, body) = body.map_or((String::new(), &b""[..]), |(c, b)| {
        (format!("Content-Type: {c}\r\n"), b)
    });
    let mut m = format!(
        "{method} sip:srs@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5098;branch=z9hG4bKw{cseq}\r\n\
From: <sip:sbc@127.0.0.1>;tag=sbc\r\nTo: <sip:srs@127.0.0.1>{to}\r\nCall-ID: wire-1@sbc\r\nCSeq: {cseq} {method}\r\n\
Contact: <sip:sbc@127.0.0.1:5098>\r\n{ct}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    m.extend_from_slice(body);
    m
}

async fn final_response(sock: &UdpSocket) -> Message {
    let mut buf = vec![0u8; 65_536];
    loop {
        let (n, _) = tokio::time::timeout(Duration::from_secs(30), sock.recv_from(&mut buf))
            .await
            .expect("the siprec role answers")
            .unwrap();
        let (m, _) = Message::parse(&buf[..n], false).unwrap();
        if matches!(m.start, StartLine::Response { code, .. } if code >= 200) {
            return m;
        }
    }
}

/// 20 ms of A-law tone for packet `k` of a stream.
fn packet_audio(stream: f64, k: u16) -> Vec<u8> {
    (0..160)
        .map(|i| {
            let t = (k as f64 * 160.0 + i as f64) / 8000.0;
            g711::alaw_encode(((t * 2.0 * std::f64::consts::PI * (300.0 + 200.0 * stream)).sin() * 9000.0) as i16)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_siprec_call_through_the_role_is_stored_sample_identical_with_its_gap() {
    let Some(kafka) = common::kafka() else { return };
    let Some(postgres) = common::postgres_db("siprec_wire").await else {
        return;
    };
    let env = Env::new(&Backend::Services { kafka, postgres }, "siprec-wire");
    let edges = env.edges().await;
    let recorder = RunningRecorder::spawn(edges.recorder());

    let sip_port = common::free_port();
    let rtp_first = common::free_port() & !1;
    let log = env.dir.path().join("siprec.log");
    let mut role = Role(
        Command::new(env!("CARGO_BIN_EXE_opptak"))
            .args(["run", "--roles", "siprec"])
            .envs(env.vars.iter().cloned())
            .env("OPPTAK__TELEMETRY__LISTEN", "")
            .env("OPPTAK__SIPREC__LISTEN", format!("udp:127.0.0.1:{sip_port}"))
            .env("OPPTAK__SIPREC__RTP_PORTS", format!("{rtp_first}-{}", rtp_first + 3))
            .env("OPPTAK__SIPREC__CHUNK_MS", "40")
            .env("OPPTAK__SIPREC__AGENT_AOR", "sip:47*@bank.example")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let server: SocketAddr = format!("127.0.0.1:{sip_port}").parse().unwrap();
    let sbc = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // The customer's stream first in the SDP: the metadata, not the order, decides.
    let offer = "v=0\r\no=sbc 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 31000 RTP/AVP 8\r\na=label:customer-leg\r\na=sendonly\r\n\
m=audio 31002 RTP/AVP 8\r\na=label:agent-leg\r\na=sendonly\r\n";
    let (ct, body) = sip::build_multipart(
        "w1",
        &[
            ("application/sdp", offer.as_bytes()),
            ("application/rs-metadata+xml", METADATA.as_bytes()),
        ],
    );
    // The role may still be starting: the INVITE is repeated as an SBC would.
    let ok = loop {
        assert!(
            role.0.try_wait().unwrap().is_none(),
            "the role exited: {}",
            std::fs::read_to_string(&log).unwrap()
        );
        sbc.send_to(&sip_request("INVITE", 1, None, Some((&ct, &body))), server)
            .await
            .unwrap();
        let mut buf = vec![0u8; 65_536];
        if let Ok(Ok((n, _))) = tokio::time::timeout(Duration::from_millis(500), sbc.recv_from(&mut buf)).await {
            let (m, _) = Message::parse(&buf[..n], false).unwrap();
            match m.start {
                StartLine::Response { code: 200, .. } => break m,
                StartLine::Response { code, .. } if code < 200 => break final_response(&sbc).await,
                _ => panic!("unexpected {m:?}"),
            }
        }
    };
    let tag = ok.tag("To").unwrap().to_owned();
    sbc.send_to(&sip_request("ACK", 1, Some(&tag), None), server)
        .await
        .unwrap();
    let answer = sdp::parse_offer(std::str::from_utf8(&ok.body).unwrap()).unwrap();
    let port = |label: &str| {
        let s = answer
            .streams
            .iter()
            .find(|s| s.label.as_deref() == Some(label))
            .unwrap();
        assert_eq!(s.codecs, vec![(8, rtp::Codec::Pcma)]);
        SocketAddr::new(server.ip(), s.remote_port)
    };
    let (to_agent, to_customer) = (port("agent-leg"), port("customer-leg"));

    let agent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let customer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    const N: u16 = 50;
    const LOST: u16 = 5;
    let mut want: Vec<i16> = Vec::new();
    for k in 0..N {
        let (a, c) = (packet_audio(0.0, k), packet_audio(1.0, k));
        if k == LOST {
            // The recorder fills a gap with the codec's silence.
            want.extend(std::iter::repeat_n(g711::alaw_decode(0xD5), 320));
        } else {
            agent
                .send_to(
                    &rtp::build(8, 40_000 + k, 77 + k as u32 * 160, 0xA, false, &a),
                    to_agent,
                )
                .await
                .unwrap();
            customer
                .send_to(&rtp::build(8, 9 + k, 5 + k as u32 * 160, 0xC, false, &c), to_customer)
                .await
                .unwrap();
            want.extend(
                a.iter()
                    .zip(&c)
                    .flat_map(|(x, y)| [g711::alaw_decode(*x), g711::alaw_decode(*y)]),
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    sbc.send_to(&sip_request("BYE", 2, Some(&tag), None), server)
        .await
        .unwrap();
    assert!(matches!(
        final_response(&sbc).await.start,
        StartLine::Response { code: 200, .. }
    ));

    let stored = wait_for_recordings(&edges, 1, 120).await;
    recorder.stop().await.unwrap();
    let (call_id, out) = stored.iter().next().unwrap();
    assert!(call_id.starts_with("siprec-"), "{call_id}");
    let rec = edges
        .vault()
        .read_recording(&CallId::parse(call_id).unwrap())
        .await
        .unwrap();
    assert!(rec.complete);
    assert_eq!(
        rec.facts.format,
        AudioFormat::new(Codec::Pcma, 8000, vec![ChannelRole::Agent, ChannelRole::Customer]).unwrap()
    );
    assert_eq!(rec.facts.advisor_id, "4711");
    let pcm: Vec<i16> = rec
        .pcm
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    assert_eq!(pcm.len(), want.len(), "frames");
    let first_diff = pcm.iter().zip(&want).position(|(a, b)| a != b);
    assert!(
        first_diff.is_none(),
        "the recording differs from the sent audio at sample {first_diff:?}: {:?} vs {:?}",
        &pcm[first_diff.unwrap_or(0)..][..8.min(pcm.len() - first_diff.unwrap_or(0))],
        &want[first_diff.unwrap_or(0)..][..8.min(want.len() - first_diff.unwrap_or(0))]
    );
    // One gap, exactly the lost pair: 20 ms at 100 ms.
    assert_eq!(rec.gaps.len(), 1, "{:?}", rec.gaps);
    assert_eq!((rec.gaps[0].at_frame, rec.gaps[0].frames), (LOST as u64 * 160, 160));
    assert_eq!(out.gaps.len(), 1);
}
