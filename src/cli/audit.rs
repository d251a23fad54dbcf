//! `opptak audit`: verify, checkpoint and list the tamper-evident audit log.

use anyhow::Result;
use clap::Subcommand;
use opptak::app::Edges;
use opptak::config::Config;

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Walk the whole chain and every signed checkpoint; exits 1 and names
    /// every entry edited, deleted or reordered.
    Verify {
        /// The checkpoint signer's public key (hex), kept outside the database.
        #[arg(long)]
        public_key: Option<String>,
    },
    /// Sign a checkpoint over the newest entry now.
    Checkpoint,
    /// Print entries (no content is ever in them).
    List {
        #[arg(long, default_value_t = 1)]
        from: u64,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

pub(crate) async fn run(config: Config, command: Command) -> Result<()> {
    let edges = Edges::open(config).await?;
    let audit = edges.audit().await?;
    let utc = |us: i64| {
        let (d, t) = (opptak_domain::time::utc_day(us), opptak_domain::time::utc_time(us));
        format!("{d} {t}")
    };
    match command {
        Command::Verify { public_key } => {
            let r = audit.verify(public_key.as_deref()).await?;
            println!("{} entries, {} signed checkpoints", r.entries, r.checkpoints);
            for s in &r.signers {
                println!("checkpoint signer (public key, pin it with --public-key): {s}");
            }
            if let Some((seq, hash)) = &r.newest_checkpoint {
                println!("newest good checkpoint: entry {seq}, hash {hash}");
            }
            if r.ok() {
                println!("audit log intact");
                Ok(())
            } else {
                for p in &r.problems {
                    println!("TAMPERED: {p}");
                }
                std::process::exit(1);
            }
        }
        Command::Checkpoint => {
            match audit.checkpoint().await? {
                Some(c) => println!("checkpoint signed at entry {}", c.seq),
                None => println!("the audit log is empty"),
            }
            Ok(())
        }
        Command::List { from, limit } => {
            for e in audit.entries(from, limit).await? {
                let v = &e.event;
                println!(
                    "{:>8} {}  {:<16} {:<11} {:<20} {:<24} {:<8} {}",
                    e.seq,
                    utc(e.at_us),
                    v.actor,
                    v.role,
                    v.action,
                    v.subject,
                    v.outcome,
                    v.reason
                );
            }
            Ok(())
        }
    }
}
