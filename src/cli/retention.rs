//! `opptak retention`: sweep, recompute, status, reclassification and deletion evidence.

use anyhow::{Context, Result};
use clap::Subcommand;
use opptak::app::Edges;
use opptak::config::Config;
use opptak_domain::model::CallId;

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Delete every expired artifact now (batches; Ctrl-C stops cleanly, run again to resume).
    Sweep {
        #[arg(long)]
        batch: Option<u32>,
    },
    /// Recompute every call's retention (after a policy change). Resumable with --after.
    Recompute {
        /// Resume after this call id (printed when interrupted).
        #[arg(long, default_value = "")]
        after: String,
    },
    /// A call's artifacts with their retention, and what was deleted.
    Status { call_id: String },
    /// A compliance officer's reclassification of a call's service category.
    /// `--by`: a compliance user; the password is read from standard input.
    Reclassify {
        call_id: String,
        #[arg(long)]
        category: String,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        by: String,
    },
    /// Deletion evidence (what, which rule, when, which key was shredded).
    Deletions { call_id: Option<String> },
}

pub(crate) async fn run(config: Config, command: Command) -> Result<()> {
    let edges = Edges::open(config).await?;
    let r = edges.retention();
    match command {
        Command::Sweep { batch } => {
            let stop = super::interrupt_flag();
            let batch = batch.unwrap_or(edges.config.retention.sweep_batch);
            let report = r
                .sweep(batch, &stop, |p| {
                    super::progress_line(&format!(
                        "swept: {} artifacts deleted, {} keys shredded",
                        p.deleted, p.keys_shredded
                    ))
                })
                .await?;
            super::progress_line("");
            println!(
                "{} expired artifacts deleted, {} keys shredded, {} refused by the archive (rescheduled), {} spool objects removed{}",
                report.deleted,
                report.keys_shredded,
                report.refused,
                report.spool_objects_deleted,
                if report.interrupted { "; interrupted: run again to resume" } else { "" }
            );
            Ok(())
        }
        Command::Recompute { after } => {
            let stop = super::interrupt_flag();
            let (n, last) = r
                .recompute_all(&after, &stop, |n, id| {
                    super::progress_line(&format!("recomputed {n} calls (at {id})"))
                })
                .await?;
            super::progress_line("");
            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                println!("interrupted after {n} calls; resume with: opptak retention recompute --after {last}");
            } else {
                println!("retention recomputed for {n} calls");
            }
            Ok(())
        }
        Command::Status { call_id } => {
            let id = CallId::parse(&call_id)?;
            for row in edges.meta.retention_of(&id).await? {
                println!(
                    "{:<40} {:<15} {:<10} {:<7} {}",
                    row.artifact_id,
                    row.kind,
                    row.class,
                    row.tier,
                    match (row.deleted_at_us, row.held) {
                        (Some(t), _) => format!("deleted {}", super::format_time(t)),
                        (None, true) => "held".into(),
                        (None, false) => format!("expires {}", super::format_time(row.expires_at_us)),
                    }
                );
            }
            Ok(())
        }
        Command::Reclassify {
            call_id,
            category,
            reason,
            by,
        } => {
            let id = CallId::parse(&call_id)?;
            let c = opptak_domain::ServiceCategory::parse(&category)
                .with_context(|| format!("--category {category:?}: e.g. investment_advice, loan, savings, general"))?;
            let by = super::signed_in(
                &edges,
                &by,
                opptak_review::identity::Role::Compliance,
                "retention.reclassify",
            )
            .await?;
            let (rows, archived) = opptak::app::reclassify(&edges, &id, c, &reason, &by).await?;
            println!("call {id} reclassified as {c}; {} artifact(s) re-routed", rows.len());
            if archived {
                println!("archive copy written from the recording (the new category requires one)");
            }
            Ok(())
        }
        Command::Deletions { call_id } => {
            let id = call_id.as_deref().map(CallId::parse).transpose()?;
            for d in edges.meta.deletions(id.as_ref()).await? {
                println!(
                    "{} {:<40} {:<15} {:<10} rule {:<24} expired {} key shredded: {}",
                    super::format_time(d.deleted_at_us),
                    d.artifact_id,
                    d.kind,
                    d.class,
                    d.rule.split(' ').next().unwrap_or_default(),
                    super::format_time(d.expired_at_us),
                    d.key_shredded.as_deref().unwrap_or("no (class still in use)")
                );
            }
            Ok(())
        }
    }
}
