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
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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
    /// Calls starting and ending continuously, with the resource samples.
    pub soak: Option<SoakSpec>,
}

#[derive(Clone, Debug)]
pub struct SoakSpec {
    pub churn: loadgen::Churn,
    pub sample_every: Duration,
    /// Samples before this are not held against the bounds: the pools,
    /// buffers and allocator arenas fill during the first turnover.
    pub warmup_s: u64,
    pub max_rss_growth_mib: f64,
    pub max_fd_growth: u64,
    /// Each sample is appended to this CSV file as it is taken.
    pub csv: Option<std::path::PathBuf>,
}

impl SoakSpec {
    /// The first full turnover: every first call set up, and the longest
    /// possible first call over, plus 10 s.
    pub fn default_warmup_s(calls: usize, setup_per_s: u32, churn: &loadgen::Churn) -> u64 {
        (calls as u64).div_ceil(u64::from(setup_per_s.max(1))) + churn.max_s + 10
    }
}

/// One resource sample of the process.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    /// Since the run's start.
    pub at_s: f64,
    pub rss_kib: u64,
    /// Peak RSS so far (VmHWM).
    pub hwm_kib: u64,
    pub fds: u64,
    /// The role's sessions (started minus ended).
    pub active_sessions: u64,
    pub rtp_slots_in_use: u64,
    pub sessions_started: u64,
    pub sessions_ended: u64,
    /// Calls the bus has whole so far.
    pub complete_calls: u64,
}

impl Sample {
    pub const CSV_HEADER: &'static str =
        "at_s,rss_kib,hwm_kib,fds,active_sessions,rtp_slots_in_use,sessions_started,sessions_ended,complete_calls";

    /// To the CSV file, and a progress line to stderr (a soak is long).
    fn record(&self, csv: Option<&mut std::fs::File>) {
        if let Some(f) = csv {
            if let Err(e) = writeln!(f, "{}", self.csv()) {
                tracing::warn!(error = %e, "soak sample not written");
            }
        }
        eprintln!(
            "soak {:.0} s: RSS {:.1} MiB, {} fds, {} sessions, {} calls complete",
            self.at_s,
            self.rss_kib as f64 / 1024.0,
            self.fds,
            self.active_sessions,
            self.complete_calls
        );
    }

    pub fn csv(&self) -> String {
        format!(
            "{:.1},{},{},{},{},{},{},{},{}",
            self.at_s,
            self.rss_kib,
            self.hwm_kib,
            self.fds,
            self.active_sessions,
            self.rtp_slots_in_use,
            self.sessions_started,
            self.sessions_ended,
            self.complete_calls
        )
    }
}

/// `VmRSS` and `VmHWM` of `/proc/self/status`, KiB (0 when unreadable).
fn memory_kib() -> (u64, u64) {
    let t = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        t.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Open file descriptors: `/proc/self/fd`'s entries but the one reading it.
fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count().saturating_sub(1) as u64)
}

/// What the soak measured, and its verdict.
#[derive(Clone, Debug, Default)]
pub struct Soak {
    pub spec: Option<SoakSpec>,
    pub samples: Vec<Sample>,
    /// The first sample at or after the warm-up.
    pub baseline: Option<Sample>,
    /// Largest RSS after the baseline minus the baseline's, MiB.
    pub rss_growth_mib: f64,
    /// RSS trend after the baseline (least squares), MiB per hour.
    pub rss_slope_mib_per_h: f64,
    pub fd_growth: i64,
    pub max_hwm_kib: u64,
    /// Calls set up (established) whose recording the bus does not have whole.
    pub incomplete_calls: usize,
    pub incomplete_examples: Vec<loadgen::CallSummary>,
    /// Events of no call of the run, or after a call's CallEnded.
    pub foreign_events: u64,
}

impl Soak {
    pub fn memory_ok(&self) -> bool {
        let Some(spec) = &self.spec else { return false };
        self.baseline.is_some() && self.rss_growth_mib <= spec.max_rss_growth_mib
    }

    pub fn fds_ok(&self) -> bool {
        let Some(spec) = &self.spec else { return false };
        self.baseline.is_some() && self.fd_growth <= spec.max_fd_growth as i64
    }

    fn judge(&mut self) {
        let Some(spec) = &self.spec else { return };
        self.max_hwm_kib = self.samples.iter().map(|s| s.hwm_kib).max().unwrap_or(0);
        let Some(base) = self.samples.iter().find(|s| s.at_s >= spec.warmup_s as f64).copied() else {
            return;
        };
        self.baseline = Some(base);
        let after: Vec<&Sample> = self.samples.iter().filter(|s| s.at_s >= base.at_s).collect();
        let max_rss = after.iter().map(|s| s.rss_kib).max().unwrap_or(base.rss_kib);
        let max_fds = after.iter().map(|s| s.fds).max().unwrap_or(base.fds);
        self.rss_growth_mib = (max_rss as f64 - base.rss_kib as f64) / 1024.0;
        self.fd_growth = max_fds as i64 - base.fds as i64;
        let n = after.len() as f64;
        if after.len() >= 2 {
            let mx = after.iter().map(|s| s.at_s).sum::<f64>() / n;
            let my = after.iter().map(|s| s.rss_kib as f64).sum::<f64>() / n;
            let sxy: f64 = after.iter().map(|s| (s.at_s - mx) * (s.rss_kib as f64 - my)).sum();
            let sxx: f64 = after.iter().map(|s| (s.at_s - mx).powi(2)).sum();
            if sxx > 0.0 {
                self.rss_slope_mib_per_h = sxy / sxx * 3600.0 / 1024.0;
            }
        }
    }
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

/// The role's live counts, for the sampler.
struct Live {
    counters: Arc<opptak_siprec::server::Counters>,
    timeline: Arc<Timeline>,
}

impl Live {
    fn sample(&self, started: Instant) -> Sample {
        let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let c = &self.counters;
        let (rss_kib, hwm_kib) = memory_kib();
        let (sessions_started, sessions_ended) = (ld(&c.sessions_started), ld(&c.sessions_ended));
        Sample {
            at_s: started.elapsed().as_secs_f64(),
            rss_kib,
            hwm_kib,
            fds: open_fds(),
            active_sessions: sessions_started.saturating_sub(sessions_ended),
            rtp_slots_in_use: ld(&c.rtp_slots_in_use),
            sessions_started,
            sessions_ended,
            complete_calls: self.timeline.complete_calls() as u64,
        }
    }
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
    /// With `--churn`.
    pub soak: Option<Soak>,
}

impl SiprecLoadReport {
    /// The siprec role's cores while every call talked: the process's CPU
    /// but the generator thread's and the latency bookkeeping's.
    pub fn siprec_cores(&self) -> Option<f64> {
        let s = self.generator.steady?;
        self.server.as_ref()?;
        Some(((s.process_cpu_s - s.generator_cpu_s - s.timing_cpu_s) / s.wall_s).max(0.0))
    }

    /// The latency bookkeeping's cores ([`Timeline::timing_cpu_s`]).
    pub fn timing_cores(&self) -> Option<f64> {
        let s = self.generator.steady?;
        Some(s.timing_cpu_s / s.wall_s)
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
        g.established == g.invites
            && g.invites >= g.calls as u64
            && s.received == g.packets_sent
            && s.lost == 0
            && s.late == 0
            && s.complete_calls as u64 == g.established
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
        churn: spec.soak.as_ref().map(|s| s.churn),
    };
    if let Some(target) = spec.target {
        if spec.soak.is_some() {
            bail!("the soak measures the role in this process: no --target");
        }
        let generator = loadgen::run(gen_spec(target), timeline).await?;
        return Ok(SiprecLoadReport {
            generator,
            server: None,
            kernel_drops: udp_rcvbuf_errors().saturating_sub(drops0),
            load_before,
            soak: None,
        });
    }
    let mut csv = match spec.soak.as_ref().and_then(|s| s.csv.as_ref()) {
        Some(path) => {
            let mut f = std::fs::File::create(path)
                .map_err(|e| anyhow::anyhow!("soak samples file {}: {e}", path.display()))?;
            writeln!(f, "{}", Sample::CSV_HEADER)?;
            Some(f)
        }
        None => None,
    };
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
    // With churn a slot's next call is invited as soon as its BYE is
    // answered, while the role still holds the old session for a moment:
    // room for that overlap (the port range has 50 pairs to spare).
    config.max_sessions = if spec.soak.is_some() {
        spec.calls + 50
    } else {
        spec.calls
    };
    let bus: Arc<dyn opptak_bus::Bus> = Arc::new(TimingBus::new(edges.bus.clone(), timeline.clone()));
    let server = opptak_siprec::server::start(&config, bus, &topic, edges.policy.clone()).await?;
    let target = server
        .sip_addr(spec.transport)
        .ok_or_else(|| anyhow::anyhow!("the siprec role has no listener for the transport"))?;
    if spec.soak.is_some() && edges.config.bus.url.starts_with("memory") {
        tracing::warn!("the memory bus keeps every event: the soak's memory grows with the audio, run it on kafka");
    }
    let samples = Arc::new(Mutex::new(Vec::new()));
    let run_started = Instant::now();
    let sampler = spec.soak.as_ref().map(|soak| {
        let live = Live {
            counters: server.counters.clone(),
            timeline: timeline.clone(),
        };
        let samples = samples.clone();
        let every = soak.sample_every;
        let mut csv = csv.as_ref().and_then(|f| f.try_clone().ok());
        tokio::spawn(async move {
            let mut iv = tokio::time::interval(every);
            loop {
                iv.tick().await;
                let s = live.sample(run_started);
                s.record(csv.as_mut());
                samples.lock().unwrap_or_else(|e| e.into_inner()).push(s);
            }
        })
    });
    let generator = loadgen::run(gen_spec(target), timeline.clone()).await;
    if let Some(t) = sampler {
        t.abort();
    }
    // The last chunks and CallEnded follow the BYEs' answers.
    let deadline = Instant::now() + Duration::from_secs(30);
    while generator.is_ok() && timeline.ended() < generator.as_ref().map_or(0, |g| g.established as usize) {
        if Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if spec.soak.is_some() {
        // The last sample: every call ended, the role still running.
        let live = Live {
            counters: server.counters.clone(),
            timeline: timeline.clone(),
        };
        let s = live.sample(run_started);
        s.record(csv.as_mut());
        samples.lock().unwrap_or_else(|e| e.into_inner()).push(s);
    }
    let c = server.counters.clone();
    server.stop().await;
    edges.bus.delete_topic(&topic).await?;
    let generator = generator?;
    let summary = timeline.summary();
    let complete_calls = timeline.complete_calls();
    let (last_packet, first_packet) = timeline.latency();
    let soak = spec.soak.as_ref().map(|soak| {
        let incomplete: Vec<loadgen::CallSummary> = summary.iter().filter(|s| !s.complete()).cloned().collect();
        let mut r = Soak {
            spec: Some(soak.clone()),
            samples: std::mem::take(&mut *samples.lock().unwrap_or_else(|e| e.into_inner())),
            incomplete_calls: (generator.established as usize).saturating_sub(complete_calls),
            incomplete_examples: incomplete.into_iter().take(5).collect(),
            foreign_events: timeline.foreign_events(),
            ..Soak::default()
        };
        r.judge();
        r
    });
    let ld = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    Ok(SiprecLoadReport {
        server: Some(ServerSide {
            received: ld(&c.rtp_received),
            lost: ld(&c.rtp_lost),
            late: ld(&c.rtp_late),
            duplicates: ld(&c.rtp_duplicates),
            unknown: ld(&c.rtp_unknown_session) + ld(&c.rtp_invalid),
            complete_calls,
            chunks: summary.iter().map(|s| s.chunks).sum::<u64>() + timeline.folded_chunks(),
            last_packet,
            first_packet,
        }),
        generator,
        kernel_drops: udp_rcvbuf_errors().saturating_sub(drops0),
        load_before,
        soak,
    })
}
