//! `opptak recordings`: list stored recordings, export one (audited, with a reason) as WAV.

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use opptak::config::Config;
use opptak_domain::model::CallId;
use std::path::PathBuf;

#[derive(Subcommand)]
pub(crate) enum Command {
    /// List recordings, newest first.
    List {
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Decrypt one call's recording (or its archive / KI copy) to a WAV file
    /// (needs the keyring). With --from, only that stretch is decrypted.
    Export {
        call_id: String,
        #[arg(long)]
        out: PathBuf,
        /// Which artifact: recording, archive (investment calls) or ki (KI calls).
        #[arg(long, default_value = "recording")]
        copy: String,
        /// Seek: start this many seconds into the call.
        #[arg(long)]
        from: Option<f64>,
        /// With --from: how many seconds to export.
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// Why you listen (required; kept in the audit log with your name).
        #[arg(long)]
        reason: String,
        /// Who is asking (default: the OS user).
        #[arg(long)]
        actor: Option<String>,
    },
}

pub(crate) async fn run(config: Config, command: Command) -> Result<()> {
    let meta = opptak_store::open_metadata_store(&config.metadata_url()).await?;
    match command {
        Command::List { limit } => {
            println!(
                "{:<28} {:<26} {:<16} {:<18} {:<5} {:>2} {:>8} {:>5} {:>4} {:<9} stored",
                "call", "started (UTC)", "desk", "service", "codec", "ch", "seconds", "segs", "gaps", "state"
            );
            for c in meta.list_calls(limit).await? {
                // What is kept: each artifact, its form, and whether its key is shredded.
                let stored: Vec<String> = meta
                    .artifacts(&c.facts.call_id)
                    .await?
                    .iter()
                    .map(|a| {
                        let form = if a.key.destroyed_at_us.is_some() {
                            "shredded"
                        } else if a.object.is_some() {
                            "v2"
                        } else {
                            "spool"
                        };
                        format!("{}:{form}", a.kind)
                    })
                    .collect();
                let secs = c.progress.frames as f64 / c.facts.format.sample_rate_hz() as f64;
                let started = super::format_time(c.facts.started_at_us);
                println!(
                    "{:<28} {:<26} {:<16} {:<18} {:<5} {:>2} {:>8.1} {:>5} {:>4} {:<9} {}",
                    c.facts.call_id.as_str(),
                    started,
                    c.facts.desk.as_str(),
                    c.facts.service_category.as_str(),
                    c.facts.format.codec().as_str(),
                    c.facts.format.channels(),
                    secs,
                    c.segments,
                    c.progress.gaps.len(),
                    if c.complete { "complete" } else { "recording" },
                    stored.join(" ")
                );
            }
            Ok(())
        }
        Command::Export {
            call_id,
            out,
            copy,
            from,
            seconds,
            reason,
            actor,
        } => {
            use opptak_vault::{reader, Which};
            let id = CallId::parse(&call_id)?;
            let which =
                Which::parse(&copy).with_context(|| format!("--copy {copy:?}: expected recording, archive or ki"))?;
            if reason.trim().is_empty() {
                bail!("--reason: say why you listen to this call (kept in the audit log)");
            }
            let keys: std::sync::Arc<dyn opptak_crypto::KeyProvider> = opptak::app::open_key_admin(&config, false)?;
            // Audited before anything is decrypted (R3, R9).
            let audit =
                opptak_audit::Audit::open(&config.metadata_url(), keys.clone(), opptak::app::clock_from_env()?).await?;
            audit
                .record(&opptak_audit::Event {
                    actor: actor.unwrap_or_else(opptak_audit::os_user),
                    role: "operator".into(),
                    action: format!("{}.export", which.store_kind()),
                    subject: format!("call:{id}"),
                    reason: reason.trim().to_owned(),
                    outcome: "allowed".into(),
                })
                .await?;
            // Hot objects and the WORM archive (archive copies) alike.
            let clock = opptak::app::clock_from_env()?;
            let archive = opptak_store::archive::open_archive_store(&config.storage.archive, clock.clone())?;
            let blobs: std::sync::Arc<dyn opptak_store::BlobStore> =
                std::sync::Arc::new(opptak_retention::tiered::TieredBlobs::new(
                    opptak_store::open_blob_store(&config.storage.blobs)?,
                    archive,
                ));
            let vault = opptak_vault::Vault::new(meta, blobs, keys, clock);
            if let Some(from) = from {
                if !(from >= 0.0 && seconds > 0.0 && from.is_finite() && seconds.is_finite()) {
                    bail!("--from must be >= 0 and --seconds > 0");
                }
                let w = vault
                    .read_window(
                        &id,
                        which,
                        std::time::Duration::from_secs_f64(from),
                        std::time::Duration::from_secs_f64(seconds),
                    )
                    .await?;
                let mut f = std::io::BufWriter::new(super::create_private(&out)?);
                reader::write_pcm_wav(&w.facts.format, &w.pcm, &mut f)?;
                tracing::info!(call_id = %id, copy = %copy, first_frame = w.first_frame, frames = w.frames, "window exported");
                eprintln!(
                    "wrote {} ({:.1} s from {:.1} s; {} segment(s) decrypted)",
                    out.display(),
                    w.frames as f64 / w.facts.format.sample_rate_hz() as f64,
                    w.first_frame as f64 / w.facts.format.sample_rate_hz() as f64,
                    w.segments_opened
                );
                return Ok(());
            }
            let rec = vault.read_artifact(&id, which).await?;
            let mut f = std::io::BufWriter::new(super::create_private(&out)?);
            reader::write_wav(&rec, &mut f)?;
            tracing::info!(call_id = %id, recording_id = %rec.recording_id, frames = rec.frames, "recording exported");
            eprintln!(
                "wrote {} ({} ch, {} Hz, {:.1} s, {} gaps{})",
                out.display(),
                rec.facts.format.channels(),
                rec.facts.format.sample_rate_hz(),
                rec.frames as f64 / rec.facts.format.sample_rate_hz() as f64,
                rec.gaps.len(),
                if rec.complete { "" } else { ", call still in progress" }
            );
            Ok(())
        }
    }
}
