//! `opptak loadgen`: N concurrent real-time calls through the bus into an
//! in-process recorder (or, with --external-recorders, into recorders that
//! run as their own processes), printed as a Markdown table for BENCHMARKS.md.

use anyhow::Result;
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
}

pub(crate) async fn run(config: Config, args: Args) -> Result<()> {
    let Args {
        calls,
        seconds,
        chunk_ms,
        dump,
        baseline,
        external_recorders,
    } = args;
    let edges = Edges::open(config).await?;
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
    println!("| calls | chunk ms | chunks sent | durable | p50 ms | p99 ms | max ms | process cores | generator-only cores | recorder cores | calls per recorder core | sustained |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for n in calls {
        let spec = opptak::loadgen::LoadSpec {
            calls: n,
            seconds,
            chunk_ms,
            dump: dump.clone(),
            producer_only: false,
            external_recorders: false,
        };
        let r = opptak::loadgen::run(&edges, &spec).await?;
        let gen = if baseline {
            let spec = opptak::loadgen::LoadSpec {
                dump: None,
                producer_only: true,
                ..spec
            };
            Some(opptak::loadgen::run(&edges, &spec).await?.cores_used())
        } else {
            None
        };
        let rec = gen.map(|g| (r.cores_used() - g).max(1e-6));
        let fmt = |v: Option<f64>, p: usize| v.map_or("-".to_string(), |v| format!("{v:.p$}"));
        println!(
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
        );
    }
    Ok(())
}
