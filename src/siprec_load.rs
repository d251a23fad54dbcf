//! `opptak loadgen --siprec`: N concurrent SIPREC sessions with real-time
//! RTP ([`opptak_siprec::loadgen`]) against a `siprec` role started in this
//! process on the configured bus (a fresh topic per run), or against an
//! external one (`--target`). See BENCHMARKS.md, "SIPREC: concurrent calls
//! per siprec core".
//!
//! CPU: the generator runs on a thread of its own; the siprec role's CPU is
//! the process's minus that thread's, over the time every call talks at
//! once. The kernel's loopback delivery of RTP (the receive path up to the
//! server's socket queue) runs in the sender's system calls, so it counts
//! as the generator's, as a NIC's receive work would not be the server
//! process's either.

use crate::app::Edges;
use anyhow::{bail, Result};
use opptak_siprec::config::Transport;
use opptak_siprec::loadgen::{self, Latency, LoadReport, Timeline, TimingBus};
use opptak_siprec::rtp::G711;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct SiprecLoadSpec {
    pub calls: usize,
    /// Audio per call.
    pub seconds: u64,
    pub transport: Transport,
    /// An external SRS; None: a `siprec` role in this process.
    pub target: Option<SocketAddr>,
    pub setup_per_s: u32,
    pub rtp_tasks: usize,
    /// The in-process role's first RTP port (it binds 2 per call and a margin).
    pub rtp_first_port: u16,
}

/// What the in-process role counted and the bus acknowledged.
#[derive(Clone, Debug, Default)]
pub struct ServerSide {
    pub received: u64,
    pub lost: u64,
    pub late: u64,
    pub duplicates: u64,
    /// To a port of no session, or from another source than the latched one.
    pub unknown: u64,
    /// Calls whose CallStarted, chunks covering every packet without a gap,
    /// and CallEnded the bus acknowledged.
    pub complete_calls: usize,
    pub chunks: u64,
    /// From a chunk's last packet's send to the bus's acknowledgement.
    pub last_packet: Latency,
    /// From its first packet's.
    pub first_packet: Latency,
}

#[derive(Clone, Debug, Default)]
pub struct SiprecLoadReport {
    pub generator: LoadReport,
    pub server: Option<ServerSide>,
    /// Datagrams the kernel dropped for full receive buffers (whole machine,
    /// /proc/net/snmp `RcvbufErrors`) during the run.
    pub kernel_drops: u64,
    /// 1-minute load average before the run.
    pub load_before: f64,
}

impl SiprecLoadReport {
    /// The siprec role's cores while every call talked.
    pub fn siprec_cores(&self) -> Option<f64> {
        let s = self.generator.steady?;
        self.server.as_ref()?;
        Some(((s.process_cpu_s - s.generator_cpu_s) / s.wall_s).max(0.0))
    }

    pub fn generator_cores(&self) -> Option<f64> {
        let s = self.generator.steady?;
        Some(s.generator_cpu_s / s.wall_s)
    }

    pub fn sustained(&self) -> bool {
        let g = &self.generator;
        let Some(s) = &self.server else {
            return false;
        };
        g.established == g.calls as u64
            && s.received == g.packets_sent
            && s.lost == 0
            && s.late == 0
            && s.complete_calls == g.calls
            && s.last_packet.p99_ms < 1000.0
            && g.max_tick_lag_ms < 500.0
    }
}

/// `RcvbufErrors` of `/proc/net/snmp`'s Udp line (0 when unreadable).
fn udp_rcvbuf_errors() -> u64 {
    let Ok(t) = std::fs::read_to_string("/proc/net/snmp") else {
        return 0;
    };
    let mut udp = t.lines().filter(|l| l.starts_with("Udp: "));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(f64::NAN)
}

pub async fn run(edges: &Edges, spec: &SiprecLoadSpec) -> Result<SiprecLoadReport> {
    let load_before = load_average();
    let drops0 = udp_rcvbuf_errors();
    let timeline = Arc::new(Timeline::default());
    let gen_spec = |target| loadgen::LoadSpec {
        calls: spec.calls,
        seconds: spec.seconds,
        target,
        transport: spec.transport,
        setup_per_s: spec.setup_per_s,
        codec: G711::Pcmu,
        rtp_tasks: spec.rtp_tasks,
    };
    if let Some(target) = spec.target {
        let generator = loadgen::run(gen_spec(target), timeline).await?;
        return Ok(SiprecLoadReport {
            generator,
            server: None,
            kernel_drops: udp_rcvbuf_errors().saturating_sub(drops0),
            load_before,
        });
    }
    // A fresh topic per run, deleted afterwards (as `opptak loadgen` does).
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let topic = format!("{}loadgen-{}.siprec", edges.config.bus.topic_prefix, &run_id[..8]);
    edges.bus.create_topic(&topic, edges.config.bus.partitions).await?;
    let mut config = edges.config.siprec.clone();
    config.listen = vec!["udp:127.0.0.1:0".into(), "tcp:127.0.0.1:0".into()];
    config.advertise = String::new();
    let last = spec.rtp_first_port as usize + 4 * spec.calls + 200;
    if last > 65_535 {
        bail!(
            "{} calls need 2 RTP ports each from {}: past 65535",
            spec.calls,
            spec.rtp_first_port
        );
    }
    config.rtp_ports = format!("{}-{last}", spec.rtp_first_port);
    config.max_sessions = spec.calls;
    let bus: Arc<dyn opptak_bus::Bus> = Arc::new(TimingBus::new(edges.bus.clone(), timeline.clone()));
    let server = opptak_siprec::server::start(&config, bus, &topic).await?;
    let target = server
        .sip_addr(spec.transport)
        .ok_or_else(|| anyhow::anyhow!("the siprec role has no listener for the transport"))?;
    let generator = loadgen::run(gen_spec(target), timeline.clone()).await;
    // The last chunks and CallEnded follow the BYEs' answers.
    let deadline = Instant::now() + Duration::from_secs(30);
    while generator.is_ok() && timeline.ended() < generator.as_ref().map_or(0, |g| g.established as usize) {
        if Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let c = server.counters.clone();
    server.stop().await;
    edges.bus.delete_topic(&topic).await?;
    let generator = generator?;
    let summary = timeline.summary();
    let complete_calls = summary
        .iter()
        .filter(|s| {
            s.started
                && s.ended
                && s.packets_per_stream > 0
                && s.gaps == 0
                && s.audio_ms == s.packets_per_stream * loadgen::PACKET_MS
        })
        .count();
    let (last_packet, first_packet) = timeline.latency();
    let ld = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    Ok(SiprecLoadReport {
        server: Some(ServerSide {
            received: ld(&c.rtp_received),
            lost: ld(&c.rtp_lost),
            late: ld(&c.rtp_late),
            duplicates: ld(&c.rtp_duplicates),
            unknown: ld(&c.rtp_unknown_session) + ld(&c.rtp_invalid),
            complete_calls,
            chunks: summary.iter().map(|s| s.chunks).sum(),
            last_packet,
            first_packet,
        }),
        generator,
        kernel_drops: udp_rcvbuf_errors().saturating_sub(drops0),
        load_before,
    })
}
