//! `opptak hold`: legal holds (four-eyes release) and authority extensions.
//! Every change is made by a signed-in compliance officer: `--by` names a
//! local user of that role, whose password is read from standard input, so
//! the two officers of a release are two authenticated people, not two
//! names typed by one.

use anyhow::Result;
use clap::Subcommand;
use opptak::app::Edges;
use opptak::config::Config;
use opptak_domain::model::CallId;

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Place a legal hold on a call: nothing of it expires until released.
    Place {
        call_id: String,
        #[arg(long)]
        case: String,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        by: String,
    },
    /// Release a hold: the first officer asks, a second one confirms.
    /// `--by`: a compliance user; the password is read from standard input.
    Release {
        hold_id: String,
        #[arg(long)]
        by: String,
    },
    /// Holds in force (--all: released ones too).
    List {
        call_id: Option<String>,
        #[arg(long)]
        all: bool,
    },
    /// An authority's extension of the archive retention (MiFID: up to 7 years).
    Extend {
        call_id: String,
        #[arg(long)]
        years: u32,
        #[arg(long)]
        authority: String,
        #[arg(long)]
        case: String,
        #[arg(long)]
        by: String,
    },
}

/// The compliance officer `by`, signed in with the password on standard input.
async fn officer(edges: &Edges, by: &str, action: &str) -> Result<String> {
    super::signed_in(edges, by, opptak_review::identity::Role::Compliance, action).await
}

pub(crate) async fn run(config: Config, command: Command) -> Result<()> {
    let edges = Edges::open(config).await?;
    let r = edges.retention();
    match command {
        Command::Place {
            call_id,
            case,
            reason,
            by,
        } => {
            let id = CallId::parse(&call_id)?;
            let by = officer(&edges, &by, "hold.place").await?;
            let h = r.place_hold(&id, &case, &reason, &by).await?;
            println!(
                "hold {} placed on call {} (case {}, by {})",
                h.hold_id, h.call_id, h.case_ref, h.placed_by
            );
            Ok(())
        }
        Command::Release { hold_id, by } => {
            let by = officer(&edges, &by, "hold.release").await?;
            let h = r.release_hold(&hold_id, &by).await?;
            match (&h.released_by, &h.release_requested_by) {
                (Some(conf), Some(req)) => println!(
                    "hold {} released (asked by {req}, confirmed by {conf}); call {} follows its retention again",
                    h.hold_id, h.call_id
                ),
                _ => println!(
                    "release of hold {} requested by {by}; it stays in force until a second compliance officer confirms: opptak hold release {} --by <other officer>",
                    h.hold_id, h.hold_id
                ),
            }
            Ok(())
        }
        Command::List { call_id, all } => {
            let id = call_id.as_deref().map(CallId::parse).transpose()?;
            for h in edges.meta.holds(id.as_ref(), !all).await? {
                println!(
                    "{:<36} call {:<28} case {:<14} placed {} by {:<10} {}",
                    h.hold_id,
                    h.call_id,
                    h.case_ref,
                    super::format_time(h.placed_at_us),
                    h.placed_by,
                    match (&h.released_by, &h.release_requested_by) {
                        (Some(b), _) => format!("released by {b}"),
                        (None, Some(b)) => format!("release asked by {b}, awaiting a second officer"),
                        _ => "in force".into(),
                    }
                );
            }
            Ok(())
        }
        Command::Extend {
            call_id,
            years,
            authority,
            case,
            by,
        } => {
            let id = CallId::parse(&call_id)?;
            let by = officer(&edges, &by, "hold.extend").await?;
            let rows = r.extend(&id, years, &authority, &case, &by).await?;
            for row in rows.iter().filter(|r| r.kind == "archive-copy") {
                println!(
                    "{} of call {id} kept until {}",
                    row.kind,
                    super::format_time(row.expires_at_us)
                );
            }
            Ok(())
        }
    }
}
