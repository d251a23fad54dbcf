//! `opptak`: call recording and KI summarization pipeline.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use opptak::app::{Edges, RunningRecorder};
use opptak::config::Config;
use opptak_domain::model::CallId;
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "opptak", version, about = "Call recording and KI summarization pipeline")]
struct Cli {
    /// Configuration file (TOML); OPPTAK__SECTION__KEY environment variables override it.
    #[arg(long, global = true, env = "OPPTAK_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the sample calls through the whole pipeline in one process (no servers needed).
    Demo {
        /// Where the demo keeps its data (cleared on every run).
        #[arg(long, default_value = ".opptak/demo")]
        data_dir: PathBuf,
        /// Directory holding calls.toml and the sample audio.
        #[arg(long)]
        samples: Option<PathBuf>,
        /// Chunk length the simulated telephony system sends.
        #[arg(long, default_value_t = 100)]
        chunk_ms: u32,
        /// Afterwards, serve the review web UI on this address (a user per
        /// role, random passwords printed) until Ctrl-C.
        #[arg(long, num_args = 0..=1, default_missing_value = "127.0.0.1:8080")]
        serve: Option<String>,
    },
    /// Run pipeline roles until SIGINT/SIGTERM (production).
    Run {
        /// Roles to run in this process.
        #[arg(long, value_delimiter = ',', default_value = "recorder")]
        roles: Vec<Role>,
    },
    /// Stored recordings.
    Recordings {
        #[command(subcommand)]
        command: RecordingsCommand,
    },
    /// Play N concurrent real-time calls through the bus into an in-process recorder.
    Loadgen {
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
    },
    /// Dead letters on the bus: list them; with --out, decrypt each original value to a file.
    Deadletters {
        /// Directory for the decrypted originals (`<partition>-<offset>.bin`, mode 0600).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Stop after this many dead letters.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// Local users of the embedded mode (Argon2id passwords, one role each; admin actions audited).
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// The tamper-evident audit log: verify the chain and its signed checkpoints, list, checkpoint.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Where KI calls stand: transcription-pending, draft-pending, drafted, opted out.
    Ki {
        /// One call (default: the most recent calls).
        call_id: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Only calls still waiting for a transcript or a draft.
        #[arg(long)]
        pending: bool,
    },
    /// Key-encryption keys: status, rotation (re-wraps every data key), retirement.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// The retention policy: check a file, show the default, explain a call.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Retention: sweep what expired, recompute after a policy change, show a call's retention and deletions.
    Retention {
        #[command(subcommand)]
        command: RetentionCommand,
    },
    /// Legal holds and authority extensions (compliance officers).
    Hold {
        #[command(subcommand)]
        command: HoldCommand,
    },
    /// Disclosure package for an authority or Finansklagenemnda (R10): the
    /// call's recording, facts and retention history, encrypted to the
    /// recipient's age key.
    Disclose {
        call_id: String,
        /// The receiving authority or board (e.g. "Finansklagenemnda").
        #[arg(long = "to")]
        to: String,
        /// The recipient's age X25519 public key (age1…).
        #[arg(long)]
        recipient_key: String,
        /// The case reference.
        #[arg(long)]
        case: String,
        /// Who discloses (kept with the disclosure).
        #[arg(long)]
        by: String,
        /// Why (the legal order, the complaint case, ...).
        #[arg(long)]
        reason: String,
        /// The package to write (mode 0600; never overwritten).
        #[arg(long)]
        out: PathBuf,
    },
    /// Data-subject requests (R11): export everything held about a customer, or erase what the law lets go.
    Subject {
        #[command(subcommand)]
        command: SubjectCommand,
    },
    /// Print the effective configuration (secrets are not part of it).
    Config,
}

#[derive(Subcommand)]
enum SubjectCommand {
    /// Everything held about a customer: per call its metadata and every
    /// readable audio artifact as WAV, plus index.json with SHA-256s.
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
    /// calls) and report what stays and under which legal basis.
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
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Validate a policy file: every artifact and case covered exactly once.
    Check { file: PathBuf },
    /// Print the policy in force (retention.policy, or the shipped default).
    Show,
    /// The decision for every artifact of a call: class, expiry, tier, and the rules that decided.
    Explain { call_id: String },
}

#[derive(Subcommand)]
enum RetentionCommand {
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

#[derive(Subcommand)]
enum HoldCommand {
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

#[derive(Subcommand)]
enum KeysCommand {
    /// KEKs in the keyring and how many data keys each wraps, per retention class.
    Status,
    /// Make a new KEK active and re-wrap every data key under it (audio untouched).
    Rotate,
    /// Crypto-shred one retention class of a call: its data key is destroyed,
    /// every artifact under it becomes unreadable, evidence is kept.
    Shred {
        call_id: String,
        #[arg(long, default_value = "audio-24h")]
        class: String,
        /// Why (retention expiry, erasure request reference, ...); kept as evidence.
        #[arg(long)]
        reason: String,
        /// Who asked (kept as evidence).
        #[arg(long, default_value = "operator")]
        by: String,
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Role {
    Recorder,
    /// Deletes expired artifacts and shreds their keys every retention.sweep_interval_s.
    Sweeper,
    /// Transcribes KI calls while they run and every finished KI call left
    /// without a transcript (needs ki.asr_url).
    Transcriber,
    /// Drafts a summary with topics of every transcribed KI call (ki.llm_url).
    Summarizer,
    /// The review service on web.listen: sign-in, queues, draft pages.
    Review,
}

impl Role {
    /// The `role` label of `opptak_role_up`.
    fn name(self) -> &'static str {
        match self {
            Role::Recorder => "recorder",
            Role::Sweeper => "sweeper",
            Role::Transcriber => "transcriber",
            Role::Summarizer => "summarizer",
            Role::Review => "review",
        }
    }
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Add a user; the password is read from standard input (never an argument).
    Add {
        user_id: String,
        #[arg(long)]
        name: String,
        /// advisor, team-lead, qa, compliance, auditor or admin.
        #[arg(long)]
        role: String,
        #[arg(long, default_value = "")]
        team: String,
        /// The admin doing it (audited; default: the OS user).
        #[arg(long)]
        by: Option<String>,
    },
    /// Users, their roles and whether they are active (no hashes).
    List,
    /// Disable a user and end their sessions.
    Disable {
        user_id: String,
        #[arg(long)]
        by: Option<String>,
    },
    /// Set a new password, read from standard input.
    Passwd {
        user_id: String,
        #[arg(long)]
        by: Option<String>,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
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

#[derive(Subcommand)]
enum RecordingsCommand {
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

fn init_logging(json: bool) {
    init_tracing(json, None);
}

/// Logs to stderr (text or JSON, filtered by `OPPTAK_LOG`) and, with `otlp`,
/// exports spans to an OpenTelemetry collector (`opptak::otlp`). The export
/// has its own filter, not `OPPTAK_LOG`: every INFO-or-above span and event of
/// opptak's crates, so a quiet log level still yields traces. Returns the
/// exporter's handle, to flush it before the process exits.
fn init_tracing(json: bool, otlp: Option<opptak::otlp::OtlpConfig>) -> Option<opptak::otlp::OtlpHandle> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{EnvFilter, Layer};
    let filter = EnvFilter::try_from_env("OPPTAK_LOG")
        .unwrap_or_else(|_| EnvFilter::new("warn,opptak=info,opptak_recorder=info"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = if json { fmt.json().boxed() } else { fmt.boxed() };
    let (export, handle) = match otlp {
        Some(cfg) => {
            let (layer, handle) = opptak::otlp::start(cfg);
            let ours = tracing_subscriber::filter::filter_fn(|m| {
                m.target().starts_with("opptak") && *m.level() <= tracing::Level::INFO
            })
            .with_max_level_hint(tracing::Level::INFO);
            (Some(layer.with_filter(ours)), Some(handle))
        }
        None => (None, None),
    };
    tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(export)
        .init();
    handle
}

fn main() -> Result<()> {
    // Blob writes to local files run on tokio's blocking pool; left unbounded
    // (512 threads) a flush of thousands of segments spawns a hundred threads
    // that spend their time in the scheduler (measured: 13 s of system CPU in
    // 10 s at 1,000 calls). A few threads write as fast.
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(8)
        .build()?
        .block_on(async_main())
}

async fn async_main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo {
            data_dir,
            samples,
            chunk_ms,
            serve,
        } => {
            let filter = std::env::var("OPPTAK_LOG").unwrap_or_else(|_| "error".into());
            tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_writer(std::io::stderr)
                .init();
            let samples = samples.unwrap_or_else(opptak::demo::default_samples_dir);
            opptak::demo::run(&data_dir, &samples, chunk_ms, serve.as_deref()).await
        }
        Command::Run { roles } => {
            let config = Config::load(cli.config.as_deref())?;
            let otlp = (!config.telemetry.otlp_endpoint.trim().is_empty()).then(|| opptak::otlp::OtlpConfig {
                endpoint: config.telemetry.otlp_endpoint.trim().to_owned(),
                instance_id: uuid::Uuid::new_v4().to_string(),
                roles: roles.iter().map(|r| r.name()).collect::<Vec<_>>().join(","),
                interval: std::time::Duration::from_millis(config.telemetry.otlp_interval_ms),
            });
            let export = init_tracing(config.log.format == "json", otlp);
            let result = run(config, roles).await;
            if let Some(export) = export {
                // The spans of the last calls; bounded so a dead collector cannot hold the exit.
                export.shutdown(std::time::Duration::from_secs(5)).await;
            }
            result
        }
        Command::Recordings { command } => {
            let config = Config::load(cli.config.as_deref())?;
            init_logging(config.log.format == "json");
            recordings(config, command).await
        }
        Command::Loadgen {
            calls,
            seconds,
            chunk_ms,
            dump,
            baseline,
            external_recorders,
        } => {
            let config = Config::load(cli.config.as_deref())?;
            init_logging(config.log.format == "json");
            let edges = Edges::open(config).await?;
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
        Command::Deadletters { out, limit } => {
            let config = Config::load(cli.config.as_deref())?;
            init_logging(config.log.format == "json");
            deadletters(config, out, limit).await
        }
        Command::Users { command } => {
            let config = Config::load(cli.config.as_deref())?;
            init_logging(config.log.format == "json");
            users_command(config, command).await
        }
        Command::Audit { command } => {
            let config = Config::load(cli.config.as_deref())?;
            init_logging(config.log.format == "json");
            audit_command(config, command).await
        }
        Command::Ki {
            call_id,
            limit,
            pending,
        } => {
            let config = Config::load(cli.config.as_deref())?;
            init_logging(config.log.format == "json");
            ki_status(config, call_id, limit, pending).await
        }
        Command::Keys { command } => {
            let config = Config::load(cli.config.as_deref())?;
            init_logging(config.log.format == "json");
            keys(config, command).await
        }
        Command::Policy { command } => {
            let config = Config::load(cli.config.as_deref())?;
            init_logging(config.log.format == "json");
            policy(config, command).await
        }
        Command::Retention { command } => {
            let config = Config::load(cli.config.as_deref())?;
            init_logging(config.log.format == "json");
            retention(config, command).await
        }
        Command::Hold { command } => {
            let config = Config::load(cli.config.as_deref())?;
            init_logging(config.log.format == "json");
            hold(config, command).await
        }
        Command::Disclose {
            call_id,
            to,
            recipient_key,
            case,
            by,
            reason,
            out,
        } => {
            let config = Config::load(cli.config.as_deref())?;
            init_logging(config.log.format == "json");
            let req = opptak::disclose::Request {
                call_id: CallId::parse(&call_id)?,
                recipient: to,
                recipient_key,
                case_ref: case,
                disclosed_by: by,
                reason,
            };
            disclose(config, req, out).await
        }
        Command::Subject { command } => {
            let config = Config::load(cli.config.as_deref())?;
            init_logging(config.log.format == "json");
            subject(config, command).await
        }
        Command::Config => {
            let config = Config::load(cli.config.as_deref())?;
            println!("{config:#?}");
            Ok(())
        }
    }
}

fn password_from_stdin() -> Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

async fn users_command(config: Config, command: UsersCommand) -> Result<()> {
    use opptak::identity::{Identity, Role};
    let edges = Edges::open(config).await?;
    let id = Identity::open(&edges).await?;
    let by = |b: Option<String>| b.unwrap_or_else(opptak::audit::os_user);
    match command {
        UsersCommand::Add {
            user_id,
            name,
            role,
            team,
            by: b,
        } => {
            let role = Role::parse(&role)?;
            let password = password_from_stdin()?;
            let u = id.add_user(&by(b), &user_id, &name, role, &team, &password).await?;
            println!("added {} ({}, team {:?})", u.user_id, u.role.as_str(), u.team);
        }
        UsersCommand::List => {
            println!("{:<24} {:<11} {:<16} {:<8} name", "user", "role", "team", "state");
            for (u, active) in id.users().await? {
                println!(
                    "{:<24} {:<11} {:<16} {:<8} {}",
                    u.user_id,
                    u.role.as_str(),
                    u.team,
                    if active { "active" } else { "disabled" },
                    u.display_name
                );
            }
        }
        UsersCommand::Disable { user_id, by: b } => {
            id.disable(&by(b), &user_id).await?;
            println!("disabled {user_id}; their sessions ended");
        }
        UsersCommand::Passwd { user_id, by: b } => {
            let password = password_from_stdin()?;
            id.set_password(&by(b), &user_id, &password).await?;
            println!("password of {user_id} changed");
        }
    }
    Ok(())
}

async fn audit_command(config: Config, command: AuditCommand) -> Result<()> {
    let edges = Edges::open(config).await?;
    let audit = edges.audit().await?;
    let utc = |us: i64| {
        let (d, t) = (opptak_domain::time::utc_day(us), opptak_domain::time::utc_time(us));
        format!("{d} {t}")
    };
    match command {
        AuditCommand::Verify { public_key } => {
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
        AuditCommand::Checkpoint => {
            match audit.checkpoint().await? {
                Some(c) => println!("checkpoint signed at entry {}", c.seq),
                None => println!("the audit log is empty"),
            }
            Ok(())
        }
        AuditCommand::List { from, limit } => {
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

async fn ki_status(config: Config, call_id: Option<String>, limit: u32, pending: bool) -> Result<()> {
    use opptak_ki::summarize::{ki_state, KiState};
    let edges = Edges::open(config).await?;
    let ids: Vec<CallId> = match call_id {
        Some(id) => vec![CallId::parse(&id)?],
        None => edges
            .meta
            .list_calls(limit)
            .await?
            .into_iter()
            .filter(|r| r.facts.ki_active())
            .map(|r| r.facts.call_id)
            .collect(),
    };
    println!("{:<36} state", "call");
    for id in ids {
        let state = ki_state(&edges.meta, &id).await?;
        if pending && !matches!(state, KiState::TranscriptionPending | KiState::DraftPending) {
            continue;
        }
        let detail = match &state {
            KiState::OptedOut { by, shredded } => format!(
                " (by {by}; ki key {})",
                if *shredded { "shredded" } else { "not yet shredded" }
            ),
            KiState::TranscriptionPending => {
                " (the transcriber role finishes it when the speech server answers)".into()
            }
            KiState::DraftPending => " (the summarizer role finishes it when the model answers)".into(),
            _ => String::new(),
        };
        println!("{:<36} {}{detail}", id.to_string(), state.as_str());
    }
    Ok(())
}

async fn run(config: Config, roles: Vec<Role>) -> Result<()> {
    // Up before the edges open: probes see a live process that is starting.
    let health = opptak::telemetry::Health::new();
    let telemetry = opptak::telemetry::start(&config.telemetry.listen, health.clone()).await;
    let edges = Edges::open(config).await?;
    edges.create_topics().await?;
    health.edges_open(&edges);
    let mut role_names: Vec<&'static str> = roles.iter().map(|r| r.name()).collect();
    role_names.sort_unstable();
    role_names.dedup();
    let mut running = Vec::new();
    let mut sweepers = Vec::new();
    let (mut transcribe, mut summarize) = (false, false);
    let mut web_servers = Vec::new();
    for role in roles {
        match role {
            Role::Recorder => running.push(RunningRecorder::spawn(edges.recorder())),
            Role::Sweeper => sweepers.push(opptak::app::RunningSweeper::spawn(&edges)),
            Role::Transcriber => transcribe = true,
            Role::Summarizer => summarize = true,
            Role::Review => {
                let listen = edges.config.web.listen.clone();
                let listener = tokio::net::TcpListener::bind(&listen)
                    .await
                    .with_context(|| format!("web.listen {listen}"))?;
                let router = opptak::web::router(&edges, edges.config.web.secure_cookies).await?;
                let (tx, rx) = tokio::sync::oneshot::channel::<()>();
                tracing::info!(%listen, "review service listening");
                let up = opptak_telemetry::metrics().role_up("review");
                web_servers.push((
                    tx,
                    tokio::spawn(async move {
                        let _up = up;
                        opptak::web::serve(listener, router, async {
                            let _ = rx.await;
                        })
                        .await
                    }),
                ));
            }
        }
    }
    let ki = if transcribe || summarize {
        Some(opptak::app::RunningKi::spawn(&edges, transcribe, summarize, None).await?)
    } else {
        None
    };
    health.roles_started(role_names.clone());
    tracing::info!(bus = %edges.config.bus.url, blobs = %edges.blobs.describe(), metadata = %edges.meta.describe(), "opptak running");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    // A role whose task ended on its own (its bus or store failed past its
    // retries) would leave a live process doing nothing: the process stops
    // the other roles and exits non-zero, so its supervisor (Kubernetes,
    // systemd) restarts it clean. Its uncommitted input is read again.
    let failed = tokio::select! {
        _ = tokio::signal::ctrl_c() => None,
        _ = term.recv() => None,
        role = first_role_down(&role_names) => Some(role),
    };
    match failed {
        Some(role) => tracing::error!(role, "role ended on its own: stopping this process so it restarts"),
        None => tracing::info!("shutting down"),
    }
    for s in sweepers {
        s.stop().await;
    }
    for (stop, task) in web_servers {
        let _ = stop.send(());
        match task.await {
            Ok(Ok(())) => tracing::info!("review service stopped"),
            Ok(Err(e)) => tracing::warn!(error = %e, "review service stopped with an error"),
            Err(e) => tracing::warn!(error = %e, "review service task failed"),
        }
    }
    if let Some(ki) = ki {
        ki.stop().await;
    }
    let mut recorder_error = None;
    for r in running {
        if let Err(e) = r.stop().await {
            tracing::error!(error = %format!("{e:#}"), "recorder stopped with an error");
            recorder_error = Some(e);
        }
    }
    if let Some(t) = telemetry {
        t.stop().await;
    }
    match failed {
        Some(role) => Err(anyhow::anyhow!(
            "the {role} role ended on its own (its error is logged above); exiting so the supervisor restarts \
             the process"
        )),
        None => recorder_error.map_or(Ok(()), Err),
    }
}

/// Resolves with the first of `roles` whose `opptak_role_up` fell to 0.
async fn first_role_down(roles: &[&'static str]) -> &'static str {
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
    loop {
        tick.tick().await;
        if let Some(r) = roles
            .iter()
            .find(|r| opptak_telemetry::metrics().roles_running(&[**r]).is_err())
        {
            return r;
        }
    }
}

/// Stops a long command cleanly on Ctrl-C: the flag is checked between items.
fn interrupt_flag() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let f = flag.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\ninterrupted: finishing the current item");
            f.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    });
    flag
}

/// Progress on a terminal only (a log file gets the summary).
fn progress_line(text: &str) {
    use std::io::IsTerminal;
    if std::io::stderr().is_terminal() {
        eprint!("\r{text}\x1b[K");
    }
}

async fn policy(config: Config, command: PolicyCommand) -> Result<()> {
    match command {
        PolicyCommand::Check { file } => {
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
        PolicyCommand::Show => {
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
        PolicyCommand::Explain { call_id } => {
            let edges = Edges::open(config).await?;
            let id = CallId::parse(&call_id)?;
            let r = edges.retention();
            let (_, facts) = r.facts(&id).await?;
            let stored = edges.meta.retention_of(&id).await?;
            let decisions = edges.policy.explain(&facts);
            println!("call {id}");
            print!("{}", opptak_domain::retention::render_explanation(&facts, &decisions));
            println!("\nstored:");
            for s in &stored {
                println!(
                    "  {:<40} {:<15} {}",
                    s.artifact_id,
                    s.kind,
                    match s.deleted_at_us {
                        Some(t) => format!("deleted {}", format_time(t)),
                        None if s.held => "held".into(),
                        None => format!("expires {}", format_time(s.expires_at_us)),
                    }
                );
            }
            Ok(())
        }
    }
}

async fn retention(config: Config, command: RetentionCommand) -> Result<()> {
    let edges = Edges::open(config).await?;
    let r = edges.retention();
    match command {
        RetentionCommand::Sweep { batch } => {
            let stop = interrupt_flag();
            let batch = batch.unwrap_or(edges.config.retention.sweep_batch);
            let report = r
                .sweep(batch, &stop, |p| {
                    progress_line(&format!(
                        "swept: {} artifacts deleted, {} keys shredded",
                        p.deleted, p.keys_shredded
                    ))
                })
                .await?;
            progress_line("");
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
        RetentionCommand::Recompute { after } => {
            let stop = interrupt_flag();
            let (n, last) = r
                .recompute_all(&after, &stop, |n, id| {
                    progress_line(&format!("recomputed {n} calls (at {id})"))
                })
                .await?;
            progress_line("");
            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                println!("interrupted after {n} calls; resume with: opptak retention recompute --after {last}");
            } else {
                println!("retention recomputed for {n} calls");
            }
            Ok(())
        }
        RetentionCommand::Status { call_id } => {
            let id = CallId::parse(&call_id)?;
            for row in edges.meta.retention_of(&id).await? {
                println!(
                    "{:<40} {:<15} {:<10} {:<7} {}",
                    row.artifact_id,
                    row.kind,
                    row.class,
                    row.tier,
                    match (row.deleted_at_us, row.held) {
                        (Some(t), _) => format!("deleted {}", format_time(t)),
                        (None, true) => "held".into(),
                        (None, false) => format!("expires {}", format_time(row.expires_at_us)),
                    }
                );
            }
            Ok(())
        }
        RetentionCommand::Reclassify {
            call_id,
            category,
            reason,
            by,
        } => {
            let id = CallId::parse(&call_id)?;
            let c = opptak_domain::ServiceCategory::parse(&category)
                .with_context(|| format!("--category {category:?}: e.g. investment_advice, loan, savings, general"))?;
            let rows = r.reclassify(&id, c, &reason, &by).await?;
            println!("call {id} reclassified as {c}; {} artifact(s) re-routed", rows.len());
            Ok(())
        }
        RetentionCommand::Deletions { call_id } => {
            let id = call_id.as_deref().map(CallId::parse).transpose()?;
            for d in edges.meta.deletions(id.as_ref()).await? {
                println!(
                    "{} {:<40} {:<15} {:<10} rule {:<24} expired {} key shredded: {}",
                    format_time(d.deleted_at_us),
                    d.artifact_id,
                    d.kind,
                    d.class,
                    d.rule.split(' ').next().unwrap_or_default(),
                    format_time(d.expired_at_us),
                    d.key_shredded.as_deref().unwrap_or("no (class still in use)")
                );
            }
            Ok(())
        }
    }
}

async fn hold(config: Config, command: HoldCommand) -> Result<()> {
    let edges = Edges::open(config).await?;
    let r = edges.retention();
    match command {
        HoldCommand::Place {
            call_id,
            case,
            reason,
            by,
        } => {
            let h = r.place_hold(&CallId::parse(&call_id)?, &case, &reason, &by).await?;
            println!(
                "hold {} placed on call {} (case {}, by {})",
                h.hold_id, h.call_id, h.case_ref, h.placed_by
            );
            Ok(())
        }
        HoldCommand::Release { hold_id, by } => {
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
        HoldCommand::List { call_id, all } => {
            let id = call_id.as_deref().map(CallId::parse).transpose()?;
            for h in edges.meta.holds(id.as_ref(), !all).await? {
                println!(
                    "{:<36} call {:<28} case {:<14} placed {} by {:<10} {}",
                    h.hold_id,
                    h.call_id,
                    h.case_ref,
                    format_time(h.placed_at_us),
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
        HoldCommand::Extend {
            call_id,
            years,
            authority,
            case,
            by,
        } => {
            let id = CallId::parse(&call_id)?;
            let rows = r.extend(&id, years, &authority, &case, &by).await?;
            for row in rows.iter().filter(|r| r.kind == "archive-copy") {
                println!(
                    "{} of call {id} kept until {}",
                    row.kind,
                    format_time(row.expires_at_us)
                );
            }
            Ok(())
        }
    }
}

async fn recordings(config: Config, command: RecordingsCommand) -> Result<()> {
    let meta = opptak_store::open_metadata_store(&config.storage.metadata).await?;
    match command {
        RecordingsCommand::List { limit } => {
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
                let started = format_time(c.facts.started_at_us);
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
        RecordingsCommand::Export {
            call_id,
            out,
            copy,
            from,
            seconds,
            reason,
            actor,
        } => {
            use opptak_recorder::reader::{self, Which};
            let id = CallId::parse(&call_id)?;
            let which =
                Which::parse(&copy).with_context(|| format!("--copy {copy:?}: expected recording, archive or ki"))?;
            if reason.trim().is_empty() {
                bail!("--reason: say why you listen to this call (kept in the audit log)");
            }
            let keys: std::sync::Arc<dyn opptak_crypto::KeyProvider> = opptak::app::open_key_admin(&config, false)?;
            // Audited before anything is decrypted (R3, R9).
            let audit =
                opptak::audit::Audit::open(&config.storage.metadata, keys.clone(), opptak::app::clock_from_env()?)
                    .await?;
            audit
                .record(&opptak::audit::Event {
                    actor: actor.unwrap_or_else(opptak::audit::os_user),
                    role: "operator".into(),
                    action: format!("{}.export", which.store_kind()),
                    subject: format!("call:{id}"),
                    reason: reason.trim().to_owned(),
                    outcome: "allowed".into(),
                })
                .await?;
            // Hot objects and the WORM archive (archive copies) alike.
            let clock = opptak::app::clock_from_env()?;
            let archive = opptak_store::archive::open_archive_store(&config.storage.archive, clock)?;
            let blobs: std::sync::Arc<dyn opptak_store::BlobStore> =
                std::sync::Arc::new(opptak_retention::tiered::TieredBlobs::new(
                    opptak_store::open_blob_store(&config.storage.blobs)?,
                    archive,
                ));
            if let Some(from) = from {
                if !(from >= 0.0 && seconds > 0.0 && from.is_finite() && seconds.is_finite()) {
                    bail!("--from must be >= 0 and --seconds > 0");
                }
                let w = reader::read_window(
                    &meta,
                    &blobs,
                    &keys,
                    &id,
                    which,
                    std::time::Duration::from_secs_f64(from),
                    std::time::Duration::from_secs_f64(seconds),
                )
                .await?;
                let mut f = std::io::BufWriter::new(
                    std::fs::File::create(&out).with_context(|| format!("creating {}", out.display()))?,
                );
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
            let rec = reader::read_artifact(&meta, &blobs, &keys, &id, which).await?;
            let mut f = std::io::BufWriter::new(
                std::fs::File::create(&out).with_context(|| format!("creating {}", out.display()))?,
            );
            opptak_recorder::reader::write_wav(&rec, &mut f)?;
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

async fn deadletters(config: Config, out: Option<PathBuf>, limit: usize) -> Result<()> {
    use opptak_proto::Message;
    if config.bus.url.starts_with("memory://") {
        bail!("bus.url is memory://: the embedded bus keeps no messages between processes (`opptak demo` lists its own dead letters); point bus.url at Kafka");
    }
    let edges = Edges::open(config).await?;
    let topic = edges.config.recorder_config().topics.deadletter;
    // A throwaway group that commits nothing: read the topic from its start.
    let group = format!("opptak-deadletters-{}", std::process::id());
    let mut sub = edges.bus.subscribe(&group, std::slice::from_ref(&topic)).await?;
    if let Some(dir) = &out {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
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
            if let Some(dir) = &out {
                match opptak_recorder::reader::open_dead_letter(&edges.meta, &edges.keys, &dl).await {
                    Ok(original) => {
                        let path = dir.join(format!("{}-{}.bin", dl.source_partition, dl.source_offset));
                        write_private(&path, &original)?;
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

/// Writes a file only the owner can read (it may hold audio).
fn write_private(path: &std::path::Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(data)?;
    Ok(())
}

async fn keys(config: Config, command: KeysCommand) -> Result<()> {
    let open_admin = || opptak::app::open_key_admin(&config, false);
    let meta = opptak_store::open_metadata_store(&config.storage.metadata).await?;
    match command {
        KeysCommand::Status => {
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
        KeysCommand::Rotate => {
            let admin = open_admin()?;
            let (new, total) = opptak::app::rotate_and_rewrap(admin.as_ref(), meta.as_ref()).await?;
            println!("new active kek {new}; {total} data keys re-wrapped; audio untouched");
            println!("retire the old kek after the grace period: opptak keys retire <kek-id>");
            Ok(())
        }
        KeysCommand::Shred {
            call_id,
            class,
            reason,
            by,
        } => {
            let id = CallId::parse(&call_id)?;
            if reason.trim().is_empty() {
                bail!("--reason must say why (it is kept as evidence)");
            }
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_micros() as i64;
            if opptak_domain::KeyClass::parse(&class).is_none() {
                bail!("--class {class:?}: expected one of audio-24h, archive-5y, ki, record-5y");
            }
            let ev = meta.shred_key(&id, &class, &reason, &by, now).await?;
            tracing::info!(call_id = %id, %class, key_id = %ev.key_id, "data key shredded");
            println!(
                "shredded {} key {} of call {} at {} ({}; by {})",
                ev.class,
                ev.key_id,
                ev.call_id,
                format_time(ev.shredded_at_us),
                ev.reason,
                ev.requested_by
            );
            Ok(())
        }
        KeysCommand::TelephonyInit { out } => {
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
        KeysCommand::Shreddings { call_id } => {
            let id = call_id.as_deref().map(CallId::parse).transpose()?;
            for ev in meta.shreddings(id.as_ref()).await? {
                println!(
                    "{}  {:<28} {:<10} {:<28} kek {:<22} by {:<12} {}",
                    format_time(ev.shredded_at_us),
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
        KeysCommand::Retire { kek_id, grace_minutes } => {
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

/// Edges for a command that reads recordings: the keyring must exist already
/// (a reader never invents a key-encryption key).
async fn reader_edges(config: Config) -> Result<Edges> {
    let keys = opptak::app::open_key_admin(&config, false)?;
    let mut edges = Edges::open(config).await?;
    edges.keys = keys;
    Ok(edges)
}

async fn disclose(config: Config, req: opptak::disclose::Request, out: PathBuf) -> Result<()> {
    opptak::disclose::validate(&req)?;
    if out.exists() {
        bail!(
            "{} exists: refusing to overwrite it; choose another --out",
            out.display()
        );
    }
    let edges = reader_edges(config).await?;
    let pkg = opptak::disclose::disclose(&edges, &req, &out, &mut |s| progress_line(s)).await?;
    progress_line("");
    print!("{}", opptak::disclose::receipt(&pkg, &req, &out));
    Ok(())
}

async fn subject(config: Config, command: SubjectCommand) -> Result<()> {
    let edges = reader_edges(config).await?;
    match command {
        SubjectCommand::Export { customer_ref, out, by } => {
            let by = by.unwrap_or_else(opptak::audit::os_user);
            let r = opptak::subject::export(&edges, &by, &customer_ref, &out, &mut |s| progress_line(s)).await?;
            progress_line("");
            for c in &r.calls {
                for f in &c.files {
                    println!("{:<60} {:>10} bytes  sha256 {}", f.name, f.bytes, f.sha256);
                }
                for (kind, why) in &c.unreadable {
                    println!("{}/{kind}: not exported: {why}", c.call_id);
                }
            }
            println!(
                "exported {} call(s) of customer {} to {}; index.json sha256 {}",
                r.calls.len(),
                r.customer_ref,
                r.dir.display(),
                r.index.sha256
            );
            Ok(())
        }
        SubjectCommand::Erase {
            customer_ref,
            by,
            reason,
            dry_run,
        } => {
            let req = opptak::subject::EraseRequest {
                customer_ref,
                by,
                reason,
                dry_run,
            };
            let report = opptak::subject::erase(&edges, &req, &mut |s| progress_line(s)).await?;
            progress_line("");
            print!("{}", report.render());
            Ok(())
        }
    }
}

fn format_time(us: i64) -> String {
    opptak_domain::time::utc_time(us)
}
