//! The SIPREC load generator against a running server on the in-process
//! bus, over UDP and TCP: every session established and ended, every packet
//! sent taken in by the server, none lost or late, and every call's audio
//! on the bus whole (its chunks cover every packet, without a gap).
//! With churn, calls turn over in every slot and every one of them is
//! complete. Correctness only: no timing is asserted.

#![allow(clippy::unwrap_used)]

use opptak_bus::memory::MemoryBus;
use opptak_bus::Bus;
use opptak_domain::retention::Policy;
use opptak_siprec::config::{SiprecConfig, Transport};
use opptak_siprec::loadgen::{self, Churn, LoadSpec, Timeline, TimingBus};
use opptak_siprec::rtp::G711;
use opptak_siprec::server;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOPIC: &str = "opptak.telephony.v1";

fn config(rtp_base: u16, calls: usize) -> SiprecConfig {
    // Twice the ports needed: a port someone else holds is skipped.
    let base = rtp_base + (std::process::id() % 20) as u16 * 200;
    let text = format!(
        r#"listen = ["udp:127.0.0.1:0", "tcp:127.0.0.1:0"]
advertise = ""
rtp_ports = "{base}-{}"
chunk_ms = 100
jitter_depth = 10
max_sessions = {calls}
rtp_timeout_s = 30
agent_aor = []
[default]
desk = "customer_center"
service_category = "general"
ki_enabled = false
customer_informed = false
"#,
        base + 8 * calls as u16 + 3
    );
    toml::from_str(&text).unwrap()
}

async fn load(transport: Transport, calls: usize, seconds: u64, rtp_base: u16, codec: G711) {
    let timeline = Arc::new(Timeline::default());
    let bus: Arc<dyn Bus> = Arc::new(TimingBus::new(Arc::new(MemoryBus::new()), timeline.clone()));
    bus.create_topic(TOPIC, 4).await.unwrap();
    let srv = server::start(
        &config(rtp_base, calls),
        bus.clone(),
        TOPIC,
        Arc::new(Policy::default_policy()),
    )
    .await
    .unwrap();
    let spec = LoadSpec {
        calls,
        seconds,
        target: srv.sip_addr(transport).unwrap(),
        transport,
        setup_per_s: 200,
        codec,
        rtp_tasks: 3,
        churn: None,
    };
    let r = loadgen::run(spec, timeline.clone()).await.unwrap();
    assert_eq!(r.established, calls as u64, "{r:?}");
    assert!(r.failed.is_empty(), "{r:?}");
    assert_eq!(r.ended, calls as u64, "{r:?}");
    let per_stream = seconds * 1000 / loadgen::PACKET_MS;
    assert_eq!(r.packets_sent, calls as u64 * 2 * per_stream, "{r:?}");
    assert_eq!(r.send_errors, 0);
    assert!(r.cpu_s >= 0.0 && r.media_s > 0.0);

    // Every BYE is answered after its CallEnded is queued: wait for the acks.
    let deadline = Instant::now() + Duration::from_secs(20);
    while timeline.ended() < calls && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let c = &srv.counters;
    assert_eq!(c.sessions_started.load(Ordering::Relaxed), calls as u64);
    assert_eq!(c.sessions_ended.load(Ordering::Relaxed), calls as u64);
    assert_eq!(c.rtp_received.load(Ordering::Relaxed), r.packets_sent);
    assert_eq!(c.rtp_lost.load(Ordering::Relaxed), 0);
    assert_eq!(c.rtp_late.load(Ordering::Relaxed), 0);
    assert_eq!(c.rtp_duplicates.load(Ordering::Relaxed), 0);
    assert_eq!(c.rtp_unknown_session.load(Ordering::Relaxed), 0);
    let summary = timeline.summary();
    assert_eq!(summary.len(), calls);
    let mut chunks = 0;
    for s in &summary {
        assert!(s.started && s.ended, "{s:?}");
        assert_eq!(s.packets_per_stream, per_stream, "{s:?}");
        assert_eq!(s.audio_ms, per_stream * loadgen::PACKET_MS, "{s:?}");
        assert_eq!(s.gaps, 0, "{s:?}");
        chunks += s.chunks;
    }
    assert_eq!(timeline.foreign_events(), 0);
    // One latency per chunk, from its first packet no less than from its last.
    let (last, first) = timeline.latency();
    assert_eq!((last.samples as u64, first.samples as u64), (chunks, chunks));
    assert!(first.p50_ms >= last.p50_ms && last.p50_ms >= 0.0);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_turns_calls_over_and_every_call_is_complete() {
    let (slots, seconds) = (4, 16);
    let timeline = Arc::new(Timeline::default());
    let bus: Arc<dyn Bus> = Arc::new(TimingBus::new(Arc::new(MemoryBus::new()), timeline.clone()));
    bus.create_topic(TOPIC, 4).await.unwrap();
    // Room for a slot's next session while the role ends its last one.
    let srv = server::start(
        &config(23_000, slots * 2),
        bus.clone(),
        TOPIC,
        Arc::new(Policy::default_policy()),
    )
    .await
    .unwrap();
    let churn = Churn {
        min_s: 1,
        max_s: 4,
        seed: 19,
    };
    let spec = LoadSpec {
        calls: slots,
        seconds,
        target: srv.sip_addr(Transport::Udp).unwrap(),
        transport: Transport::Udp,
        setup_per_s: 200,
        codec: G711::Pcmu,
        rtp_tasks: 2,
        churn: Some(churn),
    };
    let r = loadgen::run(spec, timeline.clone()).await.unwrap();
    assert!(r.failed.is_empty() && r.send_errors == 0, "{r:?}");
    // Calls of at most 4 s over 16 s: every slot played several.
    assert!(r.invites >= 3 * slots as u64, "no turnover: {r:?}");
    assert_eq!((r.established, r.ended), (r.invites, r.invites), "{r:?}");

    let calls = r.established as usize;
    let deadline = Instant::now() + Duration::from_secs(20);
    while timeline.ended() < calls && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let c = &srv.counters;
    assert_eq!(c.sessions_started.load(Ordering::Relaxed), r.established);
    assert_eq!(c.sessions_ended.load(Ordering::Relaxed), r.established);
    assert_eq!(
        c.rtp_slots_in_use.load(Ordering::Relaxed),
        0,
        "every RTP port back in the pool"
    );
    assert_eq!(c.rtp_received.load(Ordering::Relaxed), r.packets_sent);
    assert_eq!(c.rtp_lost.load(Ordering::Relaxed), 0);
    assert_eq!(c.rtp_unknown_session.load(Ordering::Relaxed), 0);
    // Every call (not one wave) whole on the bus: complete calls are folded
    // away at their CallEnded, so nothing is left in the timeline.
    assert_eq!(timeline.complete_calls(), calls);
    assert_eq!(timeline.incomplete(), Vec::new());
    assert!(timeline.summary().is_empty());
    assert_eq!(timeline.foreign_events(), 0);
    let (last, first) = timeline.latency();
    assert_eq!(last.samples, first.samples);
    assert!(last.samples as u64 >= r.established);
    srv.stop().await;
}

#[test]
fn churn_lengths_are_the_seeds_and_within_bounds() {
    let c = Churn {
        min_s: 20,
        max_s: 120,
        seed: 42,
    };
    let lengths: Vec<u64> = (0..500).map(|i| c.packets(i, 3)).collect();
    assert!(lengths.iter().all(|p| (1000..=6000).contains(p)));
    assert_eq!(lengths, (0..500).map(|i| c.packets(i, 3)).collect::<Vec<_>>());
    assert_ne!(
        lengths,
        (0..500)
            .map(|i| Churn { seed: 43, ..c }.packets(i, 3))
            .collect::<Vec<_>>()
    );
    assert_ne!(c.packets(0, 0), c.packets(0, 1));
    assert_eq!(Churn::parse_seconds("20-120"), Ok((20, 120)));
    assert_eq!(Churn::parse_seconds("5"), Ok((5, 5)));
    for bad in ["0-5", "9-3", "a-b", ""] {
        assert!(Churn::parse_seconds(bad).is_err(), "{bad}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_load_every_session_and_packet_accounted_for() {
    load(Transport::Udp, 24, 3, 21_000, G711::Pcmu).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_load_every_session_and_packet_accounted_for() {
    load(Transport::Tcp, 8, 2, 25_000, G711::Pcma).await;
}
