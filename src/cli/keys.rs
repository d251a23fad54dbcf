//! `opptak keys`: KEK status, rotation, retirement, crypto-shredding and its evidence, the telephony keyring.

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use opptak::config::Config;
use opptak_domain::model::CallId;
use std::path::PathBuf;

#[derive(Subcommand)]
pub(crate) enum Command {
    /// KEKs in the keyring and how many data keys each wraps, per retention class.
    Status,
    /// Make a new KEK active and re-wrap every data key under it (audio untouched).
    Rotate,
    /// Crypto-shred one retention class of a call: its data key is destroyed,
    /// every artifact under it becomes unreadable, evidence is kept (and the
    /// audit log says who ran it). Refused for what a legal hold or a legal
    /// obligation keeps, unless two compliance officers take `--emergency`.
    Shred {
        call_id: String,
        #[arg(long, default_value = "audio-24h")]
        class: String,
        /// Why (retention expiry, erasure request reference, ...); kept as evidence.
        #[arg(long)]
        reason: String,
        /// Who asked (kept as evidence; with --emergency, the first officer).
        #[arg(long, default_value = "operator")]
        by: String,
        /// Shred what the law keeps (a hold, a legal obligation): `--by` and
        /// `--second` are two different compliance users, whose passwords are
        /// read from standard input, one per line, in that order.
        #[arg(long, requires = "second")]
        emergency: bool,
        #[arg(long)]
        second: Option<String>,
    },
    /// Create the keyring of KEKs shared with the telephony system (for
    /// chunks it seals itself) at keys.telephony_keyring or --out.
    TelephonyInit {
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Shredding evidence (what, when, why, who; never a key).
    Shreddings { call_id: Option<String> },
    /// Remove a KEK that no data key references any more.
    Retire {
        kek_id: String,
        /// Minimum time since it stopped being active, so every running
        /// process has reloaded the keyring.
        #[arg(long, default_value_t = 10)]
        grace_minutes: u64,
    },
}

pub(crate) async fn run(config: Config, command: Command) -> Result<()> {
    let open_admin = || opptak::app::open_key_admin(&config, false);
    let meta = opptak_store::open_metadata_store(&config.metadata_url()).await?;
    match command {
        Command::Status => {
            let admin = open_admin()?;
            let counts = meta.key_counts().await?;
            println!("{}", admin.describe());
            let keks = admin.list_keks()?;
            for k in &keks {
                let per_class: Vec<String> = counts
                    .iter()
                    .filter(|(kek, _, _)| *kek == k.id)
                    .map(|(_, class, n)| format!("{class}: {n}"))
                    .collect();
                println!(
                    "{:<22} {:<8} created {:<12} data keys: {}",
                    k.id,
                    if k.active { "active" } else { "inactive" },
                    if k.created_at.is_empty() { "-" } else { &k.created_at },
                    if per_class.is_empty() {
                        "none".to_string()
                    } else {
                        per_class.join(", ")
                    }
                );
            }
            for (kek, class, n) in counts.iter().filter(|(kek, _, _)| !keks.iter().any(|k| k.id == *kek)) {
                println!("{kek:<22} MISSING  {n} {class} data keys cannot be unwrapped");
            }
            Ok(())
        }
        Command::Rotate => {
            let admin = open_admin()?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_micros() as i64;
            let (new, total) = opptak::app::rotate_and_rewrap(admin.as_ref(), meta.as_ref(), now).await?;
            println!("new active kek {new}; {total} data keys re-wrapped; audio untouched");
            println!("retire the old kek after the grace period: opptak keys retire <kek-id>");
            Ok(())
        }
        Command::Shred {
            call_id,
            class,
            reason,
            by,
            emergency,
            second,
        } => {
            let id = CallId::parse(&call_id)?;
            if reason.trim().is_empty() {
                bail!("--reason must say why (it is kept as evidence)");
            }
            if opptak_domain::KeyClass::parse(&class).is_none() {
                bail!("--class {class:?}: expected one of audio-24h, archive-5y, ki, record-5y");
            }
            let edges = opptak::app::Edges::open(config.clone()).await?;
            let audit = edges.audit().await?;
            let subject = format!("call:{id}/{class}");
            let protected = opptak_compliance::subject::protected(&edges.compliance(), &id, &class).await?;
            let (actor, requested_by) = match (&protected, emergency) {
                (Some(why), false) => {
                    audit
                        .record(&opptak_audit::Event {
                            actor: format!("os:{}", opptak_audit::os_user()),
                            role: "operator".into(),
                            action: "key.shred".into(),
                            subject,
                            reason: format!("refused: {why}"),
                            outcome: "refused".into(),
                        })
                        .await?;
                    bail!(
                        "refused: the {class} data of call {id} is kept by law — {why}. \
                         Only two compliance officers may destroy it: --emergency --by A --second B \
                         (their passwords on standard input, one per line)"
                    );
                }
                (_, true) => {
                    use opptak_review::identity::Role;
                    let second = second.as_deref().unwrap_or_default();
                    let first = super::signed_in(&edges, &by, Role::Compliance, "key.shred.emergency").await?;
                    let other = super::signed_in(&edges, second, Role::Compliance, "key.shred.emergency").await?;
                    if first == other {
                        bail!("--by and --second must be two different compliance officers");
                    }
                    let why = protected.clone().unwrap_or_else(|| "nothing protects it".into());
                    audit
                        .record_allowed(
                            &other,
                            "compliance",
                            "key.shred.emergency.confirm",
                            &subject,
                            &format!("{reason} (kept by: {why})"),
                        )
                        .await?;
                    (first.clone(), format!("{first} and {other} (emergency)"))
                }
                (None, false) => (format!("os:{}", opptak_audit::os_user()), by.clone()),
            };
            audit
                .record_allowed(
                    &actor,
                    if emergency { "compliance" } else { "operator" },
                    if emergency { "key.shred.emergency" } else { "key.shred" },
                    &subject,
                    &format!("{reason} (requested by {requested_by})"),
                )
                .await?;
            let ev = edges.vault().shred(&id, &class, &reason, &requested_by).await?;
            tracing::info!(call_id = %id, %class, key_id = %ev.key_id, "data key shredded");
            println!(
                "shredded {} key {} of call {} at {} ({}; by {})",
                ev.class,
                ev.key_id,
                ev.call_id,
                super::format_time(ev.shredded_at_us),
                ev.reason,
                ev.requested_by
            );
            Ok(())
        }
        Command::TelephonyInit { out } => {
            let path = out
                .or_else(|| {
                    let p = config.keys.telephony_keyring.trim();
                    (!p.is_empty()).then(|| PathBuf::from(p))
                })
                .context("say where: --out PATH, or set keys.telephony_keyring")?;
            if path.exists() {
                bail!(
                    "{} exists; a shared KEK is replaced only by agreement with the telephony side",
                    path.display()
                );
            }
            let ring = opptak_crypto::LocalKeyring::open_or_create(&path)?;
            let kek = opptak_crypto::KeyProvider::active_kek_id(&ring);
            println!(
                "created {} (mode 0600) with shared kek {kek}\n\
                 give the telephony system this KEK through the bank's key ceremony (or import it into its HSM),\n\
                 set keys.telephony_keyring = {:?} for opptak, and see docs/telephony-contract.md for the chunk format",
                path.display(),
                path.display().to_string()
            );
            Ok(())
        }
        Command::Shreddings { call_id } => {
            let id = call_id.as_deref().map(CallId::parse).transpose()?;
            for ev in meta.shreddings(id.as_ref()).await? {
                println!(
                    "{}  {:<28} {:<10} {:<28} kek {:<22} by {:<12} {}",
                    super::format_time(ev.shredded_at_us),
                    ev.call_id,
                    ev.class,
                    ev.key_id,
                    ev.kek_id,
                    ev.requested_by,
                    ev.reason
                );
            }
            Ok(())
        }
        Command::Retire { kek_id, grace_minutes } => {
            let refs: u64 = meta
                .key_counts()
                .await?
                .iter()
                .filter(|(k, _, _)| *k == kek_id)
                .map(|(_, _, n)| n)
                .sum();
            if refs > 0 {
                bail!("{kek_id} still wraps {refs} data keys; run `opptak keys rotate` first");
            }
            open_admin()?.retire_kek(&kek_id, std::time::Duration::from_secs(grace_minutes * 60))?;
            tracing::info!(%kek_id, "kek retired");
            println!("retired {kek_id}");
            Ok(())
        }
    }
}
