//! `opptak loadgen`: N concurrent real-time calls through the bus into an
//! in-process recorder (or, with --external-recorders, into recorders that
//! run as their own processes), or with --conversations N whole
//! conversations through an in-process messages role, printed as a Markdown
//! table for BENCHMARKS.md.

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
    /// Instead of calls: produce this many whole conversations to the
    /// messages topic, then run the messages role on them until every one is
    /// written; several comma-separated values run one after another.
    #[arg(long, value_delimiter = ',', conflicts_with_all = ["calls", "seconds", "chunk_ms", "baseline", "external_recorders"])]
    conversations: Vec<usize>,
    /// Chat messages in each conversation (with --conversations).
    #[arg(long, default_value_t = 10, requires = "conversations")]
    messages_per_conversation: usize,
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
    } = args;
    let edges = Edges::open(config).await?;
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
    fn conversations_mode_takes_sizes_and_messages_and_refuses_call_options() {
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
        // Without --conversations it is the calls load, as before.
        let c = Cli::try_parse_from(["loadgen", "--calls", "10,20"]).unwrap();
        assert!(c.args.conversations.is_empty());
        assert_eq!(c.args.calls, vec![10, 20]);
    }
}
