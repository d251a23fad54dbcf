//! `opptak deadletters`: list the dead-letter topic; with --out, decrypt each
//! original (audited, with a reason, like `recordings export`: an original
//! may hold a call's audio).

use anyhow::{bail, Context, Result};
use opptak::app::Edges;
use opptak::config::Config;
use std::path::PathBuf;

/// Dead letters on the bus: list them; with --out, decrypt each original value to a file.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// Directory for the decrypted originals (`<partition>-<offset>.bin`, mode 0600).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Stop after this many dead letters.
    #[arg(long, default_value_t = 1000)]
    limit: usize,
    /// With --out: why you decrypt them (required; kept in the audit log with
    /// your name, one entry per original, before it is decrypted).
    #[arg(long)]
    reason: Option<String>,
    /// Who is asking (default: the OS user).
    #[arg(long)]
    actor: Option<String>,
}

pub(crate) async fn run(config: Config, args: Args) -> Result<()> {
    use opptak_proto::Message;
    let Args {
        out,
        limit,
        reason,
        actor,
    } = args;
    let why = reason.map(|r| r.trim().to_owned()).unwrap_or_default();
    if out.is_some() && why.is_empty() {
        bail!("--reason: say why you decrypt the dead letters (kept in the audit log)");
    }
    if config.bus.url.starts_with("memory://") {
        bail!("bus.url is memory://: the embedded bus keeps no messages between processes (`opptak demo` lists its own dead letters); point bus.url at Kafka");
    }
    let edges = Edges::open(config).await?;
    let audit = match out {
        Some(_) => Some(edges.audit().await?),
        None => None,
    };
    let actor = actor.unwrap_or_else(opptak_audit::os_user);
    let topic = edges.config.recorder_config().topics.deadletter;
    // A throwaway group that commits nothing: read the topic from its start.
    let group = format!("{}-{}", opptak::topics::DEADLETTERS_GROUP, std::process::id());
    let mut sub = edges.bus.subscribe(&group, std::slice::from_ref(&topic)).await?;
    if let Some(dir) = &out {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut seen = 0usize;
    let mut idle = 0;
    while seen < limit && idle < 3 {
        let batch = sub.poll(limit - seen, std::time::Duration::from_secs(1)).await?;
        if batch.is_empty() {
            idle += 1;
            continue;
        }
        idle = 0;
        for r in batch {
            seen += 1;
            let dl = match opptak_proto::v1::DeadLetter::decode(r.payload.as_ref()) {
                Ok(dl) => dl,
                Err(e) => {
                    println!("{}/{}: not a DeadLetter: {e}", r.partition, r.offset);
                    continue;
                }
            };
            let reason = opptak_proto::v1::DeadLetterReason::try_from(dl.reason)
                .map(|r| r.as_str_name().trim_start_matches("DEAD_LETTER_REASON_").to_owned())
                .unwrap_or_else(|_| dl.reason.to_string());
            let mut line = format!(
                "{:<18} call {:<28} from {}/{}@{} ({} bytes, sha256 {:.16}…): {}",
                reason,
                if dl.call_id.is_empty() { "-" } else { &dl.call_id },
                dl.source_topic,
                dl.source_partition,
                dl.source_offset,
                dl.original_bytes,
                dl.original_sha256,
                dl.detail
            );
            if let (Some(dir), Some(audit)) = (&out, &audit) {
                // Audited before anything is decrypted (R3, R9).
                let subject = if dl.call_id.is_empty() {
                    format!("deadletter:{}/{}", dl.source_partition, dl.source_offset)
                } else {
                    format!("call:{}", dl.call_id)
                };
                audit
                    .record(&opptak_audit::Event {
                        actor: actor.clone(),
                        role: "operator".into(),
                        action: "deadletter.export".into(),
                        subject,
                        reason: why.clone(),
                        outcome: "allowed".into(),
                    })
                    .await?;
                match edges.vault().open_dead_letter(&dl).await {
                    Ok(original) => {
                        let path = dir.join(format!("{}-{}.bin", dl.source_partition, dl.source_offset));
                        super::write_private(&path, &original)?;
                        tracing::info!(call_id = %dl.call_id, partition = dl.source_partition, offset = dl.source_offset, "dead-letter original decrypted");
                        line.push_str(&format!(" → {}", path.display()));
                    }
                    Err(e) => line.push_str(&format!(" → not decrypted: {e}")),
                }
            }
            println!("{line}");
        }
    }
    eprintln!("{seen} dead letter(s) on {topic}");
    Ok(())
}
