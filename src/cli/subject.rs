//! `opptak subject`: data-subject requests (R11): export and erasure.

use anyhow::Result;
use clap::Subcommand;
use opptak::config::Config;
use std::path::PathBuf;

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Everything held about a customer: per call its metadata and every
    /// readable audio artifact as WAV, per conversation its metadata and
    /// every readable copy (JSON and text), plus index.json with SHA-256s.
    Export {
        customer_ref: String,
        /// A new (or empty) directory; created 0700, files 0600.
        #[arg(long)]
        out: PathBuf,
        /// The officer handling the request (audited; default: the OS user).
        #[arg(long)]
        by: Option<String>,
    },
    /// Erase what the law lets go (KI artifacts, recordings of non-investment
    /// calls, conversations' analysis and online-bank copies) and report what
    /// stays, under which legal basis and until when.
    Erase {
        customer_ref: String,
        /// The officer handling the request (kept as evidence).
        #[arg(long)]
        by: String,
        /// The request's reference or reason (kept as evidence).
        #[arg(long)]
        reason: String,
        /// Print the report and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Record a customer's objection to KI processing (`--to ki`) or to
    /// analysis: later calls start with KI off unless the advisor records new
    /// consent in the call, and the KI data of earlier calls is shredded now;
    /// `--to analysis` also shreds the analysis copies of the customer's
    /// conversations.
    /// `--by`: a compliance user; the password is read from standard input.
    Object {
        customer_ref: String,
        #[arg(long, default_value = "ki")]
        to: String,
        #[arg(long)]
        by: String,
        #[arg(long)]
        reason: String,
    },
}

pub(crate) async fn run(config: Config, command: Command) -> Result<()> {
    let edges = super::reader_edges(config).await?;
    match command {
        Command::Object {
            customer_ref,
            to,
            by,
            reason,
        } => {
            let by = super::signed_in(&edges, &by, opptak_review::identity::Role::Compliance, "subject.object").await?;
            let n = opptak_compliance::subject::object(&edges.compliance(), &customer_ref, &to, &by, &reason).await?;
            println!(
                "objection to {to} of customer {customer_ref} recorded by {by}; KI data of {} earlier call(s) \
                 shredded; later calls start without KI unless the advisor records new consent",
                n.calls
            );
            if to == "analysis" {
                println!(
                    "analysis copies of {} conversation(s) shredded; later conversations get none; the advisor \
                     record, the customer's online-bank copy and the securities archive keep their own rules",
                    n.conversations
                );
            }
            Ok(())
        }
        Command::Export { customer_ref, out, by } => {
            let by = by.unwrap_or_else(opptak_audit::os_user);
            let r = opptak_compliance::subject::export(&edges.compliance(), &by, &customer_ref, &out, &mut |s| {
                super::progress_line(s)
            })
            .await?;
            super::progress_line("");
            for c in r.calls.iter().chain(&r.conversations) {
                for f in &c.files {
                    println!("{:<60} {:>10} bytes  sha256 {}", f.name, f.bytes, f.sha256);
                }
                for (kind, why) in &c.unreadable {
                    println!("{}/{kind}: not exported: {why}", c.call_id);
                }
            }
            println!(
                "exported {} call(s) and {} conversation(s) of customer {} to {}; index.json sha256 {}",
                r.calls.len(),
                r.conversations.len(),
                r.customer_ref,
                r.dir.display(),
                r.index.sha256
            );
            Ok(())
        }
        Command::Erase {
            customer_ref,
            by,
            reason,
            dry_run,
        } => {
            let req = opptak_compliance::subject::EraseRequest {
                customer_ref,
                by,
                reason,
                dry_run,
            };
            let report =
                opptak_compliance::subject::erase(&edges.compliance(), &req, &mut |s| super::progress_line(s)).await?;
            super::progress_line("");
            print!("{}", report.render());
            Ok(())
        }
    }
}
