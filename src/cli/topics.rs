//! `opptak topics`: create the pipeline's topics with the policy's retention,
//! or check that the broker's topics still match it (missing topics, other
//! partition counts, a retention the policy does not give).

use anyhow::{bail, Result};
use clap::Subcommand;
use opptak::app::Edges;
use opptak::config::Config;
use opptak::topics;

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Create every missing topic with its partitions and retention (run it as
    /// a principal allowed to create topics; existing topics are left as they are).
    Create,
    /// Report each topic that is missing or differs from what opptak would
    /// create: partitions, retention.ms, segment.ms. Exits non-zero on drift.
    Check,
}

pub(crate) async fn run(config: Config, command: Command) -> Result<()> {
    let edges = Edges::open(config).await?;
    let specs = topics::specs(&edges.config, &edges.policy);
    match command {
        Command::Create => {
            topics::ensure(edges.bus.as_ref(), &specs).await?;
            for s in &specs {
                println!("{}: {}", s.name, describe(s));
            }
            Ok(())
        }
        Command::Check => {
            let report = topics::check(edges.bus.as_ref(), &specs).await?;
            let mut drifted = 0;
            for (spec, drift) in &report {
                if drift.is_empty() {
                    println!("ok     {}: {}", spec.name, describe(spec));
                } else {
                    drifted += 1;
                    let what: Vec<String> = drift.iter().map(ToString::to_string).collect();
                    println!("DRIFT  {}: {}", spec.name, what.join("; "));
                }
            }
            if drifted > 0 {
                bail!(
                    "{drifted} of {} topics drifted from the retention policy and bus settings \
                     (missing topics: `opptak topics create`; others: kafka-configs --alter)",
                    report.len()
                );
            }
            Ok(())
        }
    }
}

fn describe(s: &opptak_bus::TopicSpec) -> String {
    let ms = |v: Option<i64>| v.map_or("broker default".to_string(), topics::human);
    format!(
        "{} partitions, retention {}, segments of at most {}",
        s.partitions,
        ms(s.retention_ms),
        ms(s.segment_ms)
    )
}
