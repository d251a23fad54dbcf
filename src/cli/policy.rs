//! `opptak policy`: check a policy file, show the policy in force, explain a
//! call or a conversation.

use anyhow::{Context, Result};
use clap::Subcommand;
use opptak::app::Edges;
use opptak::config::Config;
use opptak_domain::model::CallId;
use std::path::PathBuf;

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Validate a policy file: every artifact and case covered exactly once.
    Check { file: PathBuf },
    /// Print the policy in force (retention.policy, or the shipped default).
    Show,
    /// The decision for every artifact of a call, or every copy of a
    /// conversation: class, expiry, tier, and the rules that decided.
    Explain { call_id: String },
}

pub(crate) async fn run(config: Config, command: Command) -> Result<()> {
    match command {
        Command::Check { file } => {
            let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let p = opptak_domain::retention::Policy::parse(&text).with_context(|| file.display().to_string())?;
            println!(
                "{}: valid — {} rules cover every artifact kind and case exactly once; extensions up to {}",
                file.display(),
                p.rules.len(),
                p.extension.max
            );
            Ok(())
        }
        Command::Show => {
            let path = config.retention.policy.trim();
            if path.is_empty() {
                print!("{}", opptak_domain::retention::DEFAULT_POLICY);
            } else {
                print!(
                    "{}",
                    std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?
                );
            }
            Ok(())
        }
        Command::Explain { call_id } => {
            let edges = Edges::open(config).await?;
            let id = CallId::parse(&call_id)?;
            let r = edges.retention();
            let (facts, written) = r.any_facts(&id).await?;
            let stored = edges.meta.retention_of(&id).await?;
            let decisions = r.explain(&id).await?;
            let what = if facts.conversation.is_some() {
                "conversation"
            } else {
                "call"
            };
            println!("{what} {id}");
            match edges.meta.load_conversation(&id).await? {
                Some(c) => println!(
                    "channel: {}, {}, {}{}",
                    c.facts.channel,
                    if c.facts.logged_in() { "logged in" } else { "anonymous" },
                    if c.facts.with_advisor() {
                        format!("advisor {}", c.facts.advisor_id)
                    } else {
                        "no advisor".into()
                    },
                    if written {
                        String::new()
                    } else {
                        "; still open: its copies are written when it ends".into()
                    }
                ),
                None => println!("ki notice: {}", r.facts(&id).await?.0.facts.ki_notice_summary()),
            }
            print!("{}", opptak_domain::retention::render_explanation(&facts, &decisions));
            // The policy's decisions say what should exist; say plainly where
            // an artifact it keeps was never written, or no longer is.
            for d in decisions
                .iter()
                .filter(|d| d.kept && (written || facts.conversation.is_none()))
            {
                let kind = d.kind.as_str();
                if !stored.iter().any(|s| s.kind == kind && s.deleted_at_us.is_none()) {
                    println!("  note: the policy keeps {kind}, but the {what} has none stored");
                }
            }
            println!("\nstored:");
            for s in &stored {
                println!(
                    "  {:<40} {:<15} {}",
                    s.artifact_id,
                    s.kind,
                    match s.deleted_at_us {
                        Some(t) => format!("deleted {}", super::format_time(t)),
                        None if s.held => "held".into(),
                        None => format!("expires {}", super::format_time(s.expires_at_us)),
                    }
                );
            }
            Ok(())
        }
    }
}
