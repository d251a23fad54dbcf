//! `opptak loadgen`: N concurrent real-time calls through the bus into an
//! in-process recorder (or, with --external-recorders, into recorders that
//! run as their own processes), or with --conversations N whole
//! conversations through an in-process messages role, printed as a Markdown
//! table for BENCHMARKS.md.

use anyhow::{bail, Result};
use opptak::app::Edges;
use opptak::config::Config;
use std::path::PathBuf;

/// Play N concurrent real-time calls through the bus into an in-process recorder.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// Concurrent calls; several comma-separated values run one after another.
    #[arg(long, value_delimiter = ',', default_value = "100")]
    calls: Vec<usize>,
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    #[arg(long, default_value_t = 100)]
    chunk_ms: u64,
    /// Write the produced messages to a file (for the kcat baseline).
    #[arg(long)]
    dump: Option<PathBuf>,
    /// Also run each size without the recorder, to subtract the generator's own CPU.
    #[arg(long)]
    baseline: bool,
    /// Only produce, into the configured topics (`bus.topic_prefix`, kept
    /// afterwards), for recorders running as separate processes
    /// (benches/scale.sh); prints chunks sent, producer CPU and lag.
    #[arg(long, conflicts_with_all = ["baseline", "dump"])]
    external_recorders: bool,
    /// Instead of calls: produce this many whole conversations to the
    /// messages topic, then run the messages role on them until every one is
    /// written; several comma-separated values run one after another.
    #[arg(long, value_delimiter = ',', conflicts_with_all = ["calls", "seconds", "chunk_ms", "baseline", "external_recorders"])]
    conversations: Vec<usize>,
    /// Chat messages in each conversation (with --conversations).
    #[arg(long, default_value_t = 10, requires = "conversations")]
    messages_per_conversation: usize,
    /// Instead of Kafka producers: N concurrent SIPREC sessions (INVITE
    /// with SDP + rs-metadata, two G.711 RTP streams at 20 ms, BYE) against
    /// a siprec role in this process on the configured bus, or --target.
    #[arg(long, conflicts_with_all = ["conversations", "external_recorders", "dump", "baseline"])]
    siprec: bool,
    /// With --siprec: an external siprec role's SIP address, `udp:IP:PORT`
    /// or `tcp:IP:PORT` (the role's own counters are then not read).
    #[arg(long, requires = "siprec")]
    target: Option<String>,
    /// With --siprec and no --target: the SIP transport, udp or tcp.
    #[arg(long, requires = "siprec", conflicts_with = "target", default_value = "udp")]
    transport: String,
    /// With --siprec: INVITEs per second while the calls are set up.
    #[arg(long, requires = "siprec", default_value_t = 500)]
    setup_rate: u32,
    /// With --siprec: RTP timer tasks on the generator's thread.
    #[arg(long, requires = "siprec", default_value_t = 4)]
    rtp_tasks: usize,
    /// With --siprec: the in-process role's first RTP port.
    #[arg(long, requires = "siprec", default_value_t = 20_000)]
    rtp_first_port: u16,
    /// With --siprec: after each size, the Kafka-producer path (`opptak
    /// loadgen` without --siprec, with its generator-only run) at the same
    /// call count, as the baseline.
    #[arg(long, requires = "siprec")]
    producer_baseline: bool,
    /// With --siprec: the soak. Each of the --calls slots plays calls of a
    /// random length (--call-seconds) one after another for --seconds, each
    /// with a new Call-ID; the process's memory and file descriptors are
    /// sampled and judged against --max-rss-growth-mib and --max-fd-growth
    /// after the warm-up, and every call's recording checked complete.
    #[arg(long, requires = "siprec", conflicts_with_all = ["target", "producer_baseline"])]
    churn: bool,
    /// With --churn: call length, MIN-MAX seconds.
    #[arg(long, requires = "churn", default_value = "20-120")]
    call_seconds: String,
    /// With --churn: the seed of the call lengths (printed; random without).
    #[arg(long, requires = "churn")]
    seed: Option<u64>,
    /// With --churn: seconds between resource samples.
    #[arg(long, requires = "churn", default_value_t = 10)]
    sample_seconds: u64,
    /// With --churn: also write every sample to this CSV file.
    #[arg(long, requires = "churn")]
    samples_csv: Option<PathBuf>,
    /// With --churn: samples before this are not judged (default: the
    /// first full turnover: the setup of every slot's first call plus the
    /// longest call, plus 10 s).
    #[arg(long, requires = "churn")]
    warmup_seconds: Option<u64>,
    /// With --churn: the largest RSS growth over the first sample after the
    /// warm-up that passes, MiB.
    #[arg(long, requires = "churn", default_value_t = 64.0)]
    max_rss_growth_mib: f64,
    /// With --churn: the most open file descriptors over the first sample
    /// after the warm-up that passes (the role binds its whole RTP pool at
    /// start and opens nothing per call).
    #[arg(long, requires = "churn", default_value_t = 16)]
    max_fd_growth: u64,
}

/// The soak's options (`--churn`).
struct SoakArgs {
    call_seconds: (u64, u64),
    seed: u64,
    sample_seconds: u64,
    samples_csv: Option<PathBuf>,
    warmup_seconds: Option<u64>,
    max_rss_growth_mib: f64,
    max_fd_growth: u64,
}

pub(crate) async fn run(config: Config, args: Args) -> Result<()> {
    let Args {
        calls,
        seconds,
        chunk_ms,
        dump,
        baseline,
        external_recorders,
        conversations,
        messages_per_conversation,
        siprec,
        target,
        transport,
        setup_rate,
        rtp_tasks,
        rtp_first_port,
        producer_baseline,
        churn,
        call_seconds,
        seed,
        sample_seconds,
        samples_csv,
        warmup_seconds,
        max_rss_growth_mib,
        max_fd_growth,
    } = args;
    let edges = Edges::open(config).await?;
    if siprec {
        let (transport, target) = match &target {
            Some(t) => {
                let (tr, addr) = parse_target(t)?;
                (tr, Some(addr))
            }
            None => (parse_transport(&transport)?, None),
        };
        let spec = opptak::siprec_load::SiprecLoadSpec {
            calls: 0,
            seconds,
            transport,
            target,
            setup_per_s: setup_rate,
            rtp_tasks,
            rtp_first_port,
            soak: None,
        };
        let soak = if churn {
            if calls.len() != 1 {
                bail!("--churn runs one size: give --calls one number");
            }
            if sample_seconds == 0 {
                bail!("--sample-seconds must be positive");
            }
            Some(SoakArgs {
                call_seconds: opptak_siprec::loadgen::Churn::parse_seconds(&call_seconds)
                    .map_err(anyhow::Error::msg)?,
                seed: seed.unwrap_or_else(opptak_siprec::loadgen::random_seed),
                sample_seconds,
                samples_csv,
                warmup_seconds,
                max_rss_growth_mib,
                max_fd_growth,
            })
        } else {
            None
        };
        return run_siprec(&edges, calls, spec, chunk_ms, producer_baseline, soak).await;
    }
    if !conversations.is_empty() {
        return run_conversations(&edges, conversations, messages_per_conversation, dump).await;
    }
    if external_recorders {
        println!("| calls | chunk ms | chunks sent | wall s | generator cores | generator max lag ms |");
        println!("|---:|---:|---:|---:|---:|---:|");
        for n in calls {
            let spec = opptak::loadgen::LoadSpec {
                calls: n,
                seconds,
                chunk_ms,
                dump: None,
                producer_only: true,
                external_recorders: true,
            };
            let r = opptak::loadgen::run(&edges, &spec).await?;
            println!(
                "| {} | {} | {} | {:.1} | {:.2} | {:.0} |",
                r.calls,
                r.chunk_ms,
                r.chunks_sent,
                r.wall_s,
                r.cores_used(),
                r.send_lag_ms
            );
        }
        return Ok(());
    }
    println!("{PRODUCER_HEADER}");
    for n in calls {
        let spec = opptak::loadgen::LoadSpec {
            calls: n,
            seconds,
            chunk_ms,
            dump: dump.clone(),
            producer_only: false,
            external_recorders: false,
        };
        println!("{}", producer_row(&edges, spec, baseline).await?);
    }
    Ok(())
}

const PRODUCER_HEADER: &str = "| calls | chunk ms | chunks sent | durable | p50 ms | p99 ms | max ms | process cores | generator-only cores | recorder cores | calls per recorder core | sustained |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|";

/// One size of the Kafka-producer load (with `baseline`, and its
/// generator-only run), as a table row.
async fn producer_row(edges: &Edges, spec: opptak::loadgen::LoadSpec, baseline: bool) -> Result<String> {
    let n = spec.calls;
    let r = opptak::loadgen::run(edges, &spec).await?;
    let gen = if baseline {
        let spec = opptak::loadgen::LoadSpec {
            dump: None,
            producer_only: true,
            ..spec
        };
        Some(opptak::loadgen::run(edges, &spec).await?.cores_used())
    } else {
        None
    };
    // The recorder's own CPU is the difference of two runs; when the
    // generator-only run cost as much (a saturated machine, or noise), it
    // cannot be told apart: "-" rather than a quotient of nothing.
    let rec = gen.map(|g| r.cores_used() - g).filter(|c| *c >= 0.01);
    Ok(format!(
        "| {} | {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.2} | {} | {} | {} | {} |",
        r.calls,
        r.chunk_ms,
        r.chunks_sent,
        r.chunks_durable,
        r.p50_ms,
        r.p99_ms,
        r.max_ms,
        r.cores_used(),
        fmt(gen, 2),
        fmt(rec, 2),
        fmt(rec.map(|c| n as f64 / c), 0),
        if r.sustained() { "yes" } else { "no" }
    ))
}

fn fmt(v: Option<f64>, p: usize) -> String {
    v.map_or("-".to_string(), |v| format!("{v:.p$}"))
}

fn parse_transport(t: &str) -> Result<opptak_siprec::config::Transport> {
    match t {
        "udp" => Ok(opptak_siprec::config::Transport::Udp),
        "tcp" => Ok(opptak_siprec::config::Transport::Tcp),
        _ => bail!("transport {t:?}: expected udp or tcp"),
    }
}

/// `udp:IP:PORT` or `tcp:IP:PORT`.
fn parse_target(t: &str) -> Result<(opptak_siprec::config::Transport, std::net::SocketAddr)> {
    let Some((tr, addr)) = t.split_once(':') else {
        bail!("--target {t:?}: expected udp:IP:PORT or tcp:IP:PORT");
    };
    Ok((
        parse_transport(tr)?,
        addr.parse().map_err(|e| anyhow::anyhow!("--target {t:?}: {e}"))?,
    ))
}

/// `opptak loadgen --siprec`: one row per size (and with
/// `producer_baseline`, the Kafka-producer path's table after it).
async fn run_siprec(
    edges: &Edges,
    sizes: Vec<usize>,
    spec: opptak::siprec_load::SiprecLoadSpec,
    chunk_ms: u64,
    producer_baseline: bool,
    soak: Option<SoakArgs>,
) -> Result<()> {
    if let Some(s) = &soak {
        println!(
            "Soak: calls of {}-{} s one after another in each slot for {} s, seed {} (`--seed {}` repeats the lengths)\n",
            s.call_seconds.0, s.call_seconds.1, spec.seconds, s.seed, s.seed
        );
    }
    println!(
        "| calls | load avg before | established | failed | packets sent | packets/s | received | lost | late | kernel drops | complete calls | chunks | p50 ms last packet | p99 ms last packet | p99 ms first packet | generator cores | timing cores | siprec cores | siprec cores per 1,000 calls | calls per siprec core | max tick lag ms | sustained |"
    );
    println!(
        "|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    );
    let mut baselines = Vec::new();
    for n in sizes {
        let spec = opptak::siprec_load::SiprecLoadSpec {
            calls: n,
            soak: soak.as_ref().map(|s| {
                let churn = opptak_siprec::loadgen::Churn {
                    min_s: s.call_seconds.0,
                    max_s: s.call_seconds.1,
                    seed: s.seed,
                };
                opptak::siprec_load::SoakSpec {
                    churn,
                    sample_every: std::time::Duration::from_secs(s.sample_seconds),
                    warmup_s: s.warmup_seconds.unwrap_or_else(|| {
                        opptak::siprec_load::SoakSpec::default_warmup_s(n, spec.setup_per_s, &churn)
                    }),
                    max_rss_growth_mib: s.max_rss_growth_mib,
                    max_fd_growth: s.max_fd_growth,
                    csv: s.samples_csv.clone(),
                }
            }),
            ..spec.clone()
        };
        let r = opptak::siprec_load::run(edges, &spec).await?;
        let g = &r.generator;
        let failed = if g.failed.is_empty() {
            "0".to_string()
        } else {
            g.failed
                .iter()
                .map(|(code, k)| {
                    format!(
                        "{k}×{}",
                        if *code == 0 {
                            "none".to_string()
                        } else {
                            code.to_string()
                        }
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let s = r.server.clone().unwrap_or_default();
        let opt = |v: u64| if r.server.is_some() { v.to_string() } else { "-".into() };
        let ms = |v: f64| {
            if r.server.is_some() {
                format!("{v:.0}")
            } else {
                "-".into()
            }
        };
        let cores = r.siprec_cores();
        println!(
            "| {n} | {:.2} | {} | {failed} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} | {} |",
            r.load_before,
            g.established,
            g.packets_sent,
            g.packets_per_s(),
            opt(s.received),
            opt(s.lost),
            opt(s.late),
            r.kernel_drops,
            opt(s.complete_calls as u64),
            opt(s.chunks),
            ms(s.last_packet.p50_ms),
            ms(s.last_packet.p99_ms),
            ms(s.first_packet.p99_ms),
            fmt(r.generator_cores(), 2),
            fmt(r.timing_cores(), 3),
            fmt(cores, 2),
            fmt(cores.map(|c| c * 1000.0 / n as f64), 2),
            fmt(cores.map(|c| n as f64 / c.max(1e-6)), 0),
            g.max_tick_lag_ms,
            if r.sustained() { "yes" } else { "no" }
        );
        if let Some(soak) = &r.soak {
            print_soak(&r, soak);
        }
        if producer_baseline {
            let spec = opptak::loadgen::LoadSpec {
                calls: n,
                seconds: spec.seconds,
                chunk_ms,
                dump: None,
                producer_only: false,
                external_recorders: false,
            };
            baselines.push(producer_row(edges, spec, true).await?);
        }
    }
    if !baselines.is_empty() {
        println!("\nKafka-producer path (opptak loadgen --baseline) at the same call counts:\n");
        println!("{PRODUCER_HEADER}");
        for b in baselines {
            println!("{b}");
        }
    }
    Ok(())
}

/// The soak's turnover, samples (about 40 of them; every one is in the
/// CSV file) and verdict.
fn print_soak(r: &opptak::siprec_load::SiprecLoadReport, soak: &opptak::siprec_load::Soak) {
    let Some(spec) = &soak.spec else { return };
    let g = &r.generator;
    let mib = |k: u64| k as f64 / 1024.0;
    println!(
        "\nTurnover: {} calls invited over {} slots ({:.1} per slot), {} established, {} ended by BYE.\n",
        g.invites,
        g.calls,
        g.invites as f64 / g.calls.max(1) as f64,
        g.established,
        g.ended
    );
    println!("| s | RSS MiB | peak RSS MiB | open fds | active sessions | RTP ports in use | sessions started | sessions ended | calls complete |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let stride = soak.samples.len().div_ceil(40).max(1);
    let last = soak.samples.len().saturating_sub(1);
    for (i, s) in soak.samples.iter().enumerate() {
        let base = soak.baseline.is_some_and(|b| b.at_s == s.at_s);
        if i % stride != 0 && i != last && !base {
            continue;
        }
        println!(
            "| {:.0}{} | {:.1} | {:.1} | {} | {} | {} | {} | {} | {} |",
            s.at_s,
            if base { " (baseline)" } else { "" },
            mib(s.rss_kib),
            mib(s.hwm_kib),
            s.fds,
            s.active_sessions,
            s.rtp_slots_in_use,
            s.sessions_started,
            s.sessions_ended,
            s.complete_calls
        );
    }
    let ok = |b: bool| if b { "ok" } else { "FAILED" };
    println!("\nScope: one process: the siprec role, the generator thread (its state per slot, not per call) and the bus client.");
    match soak.baseline {
        Some(b) => {
            println!(
                "Memory: RSS {:.1} MiB at the baseline ({:.0} s, after the {} s warm-up), largest growth after it {:+.1} MiB (bound {:.0} MiB), trend {:+.1} MiB/h, peak RSS {:.1} MiB: {}",
                mib(b.rss_kib),
                b.at_s,
                spec.warmup_s,
                soak.rss_growth_mib,
                spec.max_rss_growth_mib,
                soak.rss_slope_mib_per_h,
                mib(soak.max_hwm_kib),
                ok(soak.memory_ok())
            );
            println!(
                "File descriptors: {} at the baseline, largest growth after it {:+} (bound {}): {}",
                b.fds,
                soak.fd_growth,
                spec.max_fd_growth,
                ok(soak.fds_ok())
            );
        }
        None => println!(
            "Memory and file descriptors: not judged, no sample after the {} s warm-up: FAILED",
            spec.warmup_s
        ),
    }
    let calls_ok = soak.incomplete_calls == 0 && soak.foreign_events == 0 && g.failed.is_empty() && g.established > 0;
    println!(
        "Recordings: {} of {} established calls complete on the bus, {} refused or unanswered INVITEs, {} stray events: {}",
        g.established as usize - soak.incomplete_calls.min(g.established as usize),
        g.established,
        g.failed.values().sum::<u64>(),
        soak.foreign_events,
        ok(calls_ok)
    );
    for c in &soak.incomplete_examples {
        println!("  incomplete: {c:?}");
    }
    let turnover = g.invites >= 2 * g.calls as u64;
    println!(
        "Verdict: {}",
        if soak.memory_ok() && soak.fds_ok() && calls_ok && turnover {
            "pass".to_string()
        } else if !turnover {
            "FAILED (fewer than two calls per slot: no turnover)".to_string()
        } else {
            "FAILED".to_string()
        }
    );
}

async fn run_conversations(
    edges: &Edges,
    sizes: Vec<usize>,
    messages_per_conversation: usize,
    dump: Option<PathBuf>,
) -> Result<()> {
    println!(
        "| conversations | messages | Kafka records | bytes | produce s | group join s | process s | messages/s | records/s | conversations/s | process CPU s | process cores | machine cores |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for n in sizes {
        let spec = opptak::loadgen::ConversationLoadSpec {
            conversations: n,
            messages_per_conversation,
            dump: dump.clone(),
        };
        let r = opptak::loadgen::run_conversations(edges, &spec).await?;
        println!(
            "| {} | {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.0} | {:.0} | {:.0} | {:.1} | {:.2} | {:.2} |",
            r.conversations,
            r.messages,
            r.events,
            r.bytes,
            r.produce_s,
            r.startup_s,
            r.process_s,
            r.messages_per_s(),
            r.events_per_s(),
            r.conversations_per_s(),
            r.cpu_s,
            r.cores(),
            r.machine_cores()
        );
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::Args;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    #[test]
    fn conversations_and_siprec_modes_take_their_options_and_refuse_others() {
        let c = Cli::try_parse_from([
            "loadgen",
            "--conversations",
            "2000,10000",
            "--messages-per-conversation",
            "12",
            "--dump",
            "/tmp/x.bin",
        ])
        .unwrap();
        assert_eq!(c.args.conversations, vec![2000, 10000]);
        assert_eq!(c.args.messages_per_conversation, 12);
        assert!(c.args.dump.is_some());
        let c = Cli::try_parse_from(["loadgen", "--conversations", "5"]).unwrap();
        assert_eq!(c.args.messages_per_conversation, 10);
        // Call options do not mix with conversations, and messages need them.
        for bad in [
            &["loadgen", "--conversations", "5", "--calls", "10"][..],
            &["loadgen", "--conversations", "5", "--seconds", "10"][..],
            &["loadgen", "--conversations", "5", "--baseline"][..],
            &["loadgen", "--messages-per-conversation", "5"][..],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?} accepted");
        }
        // SIPREC: sizes, a target or a transport, and the producer baseline.
        let c = Cli::try_parse_from([
            "loadgen",
            "--siprec",
            "--calls",
            "500,1000",
            "--transport",
            "tcp",
            "--producer-baseline",
        ])
        .unwrap();
        assert!(c.args.siprec && c.args.producer_baseline);
        assert_eq!(
            (c.args.calls.clone(), c.args.transport.as_str()),
            (vec![500, 1000], "tcp")
        );
        let c = Cli::try_parse_from(["loadgen", "--siprec", "--target", "udp:192.0.2.7:5060"]).unwrap();
        let (t, a) = super::parse_target(c.args.target.as_deref().unwrap()).unwrap();
        assert_eq!(
            (t, a.to_string().as_str()),
            (opptak_siprec::config::Transport::Udp, "192.0.2.7:5060")
        );
        assert!(super::parse_target("sctp:192.0.2.7:5060").is_err());
        for bad in [
            &["loadgen", "--target", "udp:127.0.0.1:5060"][..],
            &["loadgen", "--siprec", "--conversations", "5"][..],
            &["loadgen", "--siprec", "--baseline"][..],
            &[
                "loadgen",
                "--siprec",
                "--target",
                "udp:127.0.0.1:5060",
                "--transport",
                "tcp",
            ][..],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?} accepted");
        }
        // The soak: churn and its options, one size, not against a --target.
        let c = Cli::try_parse_from([
            "loadgen",
            "--siprec",
            "--calls",
            "500",
            "--seconds",
            "1800",
            "--churn",
            "--call-seconds",
            "30-90",
            "--seed",
            "7",
            "--samples-csv",
            "/tmp/s.csv",
            "--warmup-seconds",
            "300",
        ])
        .unwrap();
        assert!(c.args.churn && c.args.seed == Some(7) && c.args.warmup_seconds == Some(300));
        assert_eq!(
            (
                c.args.call_seconds.as_str(),
                c.args.sample_seconds,
                c.args.max_fd_growth
            ),
            ("30-90", 10, 16)
        );
        for bad in [
            &["loadgen", "--churn"][..],
            &["loadgen", "--siprec", "--seed", "7"][..],
            &["loadgen", "--siprec", "--call-seconds", "1-2"][..],
            &["loadgen", "--siprec", "--churn", "--target", "udp:127.0.0.1:5060"][..],
            &["loadgen", "--siprec", "--churn", "--producer-baseline"][..],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?} accepted");
        }
        // Without --conversations it is the calls load, as before.
        let c = Cli::try_parse_from(["loadgen", "--calls", "10,20"]).unwrap();
        assert!(c.args.conversations.is_empty());
        assert_eq!(c.args.calls, vec![10, 20]);
    }
}
