//! `opptak`: call recording and KI summarization pipeline. This file only
//! parses the command line and dispatches; each command lives in its own
//! module under `src/cli/`.

mod cli;

/// glibc's malloc cost a quarter of the siprec core's CPU at 1,000 calls
/// (`perf`: 1.6 KiB chunk buffers miss its per-thread cache and are freed
/// on other threads); mimalloc's per-thread free lists do not.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::Result;
use clap::{Parser, Subcommand};
use opptak::config::Config;
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
    Demo(cli::demo::Args),
    /// Run pipeline roles until SIGINT/SIGTERM (production).
    Run(cli::run::Args),
    /// Stored recordings.
    Recordings {
        #[command(subcommand)]
        command: cli::recordings::Command,
    },
    /// Play N concurrent real-time calls through the bus into an in-process recorder.
    Loadgen(cli::loadgen::Args),
    /// Dead letters on the bus: list them; with --out, decrypt each original value to a file.
    Deadletters(cli::deadletters::Args),
    /// Local users of the embedded mode (Argon2id passwords, one role each; admin actions audited).
    Users {
        #[command(subcommand)]
        command: cli::users::Command,
    },
    /// The tamper-evident audit log: verify the chain and its signed checkpoints, list, checkpoint.
    Audit {
        #[command(subcommand)]
        command: cli::audit::Command,
    },
    /// Where KI calls stand: transcription-pending, draft-pending, drafted, opted out.
    Ki(cli::ki::Args),
    /// Key-encryption keys: status, rotation (re-wraps every data key), retirement.
    Keys {
        #[command(subcommand)]
        command: cli::keys::Command,
    },
    /// The retention policy: check a file, show the default, explain a call.
    Policy {
        #[command(subcommand)]
        command: cli::policy::Command,
    },
    /// Retention: sweep what expired, recompute after a policy change, show a call's retention and deletions.
    Retention {
        #[command(subcommand)]
        command: cli::retention::Command,
    },
    /// Legal holds and authority extensions (compliance officers).
    Hold {
        #[command(subcommand)]
        command: cli::hold::Command,
    },
    /// Disclosure package for an authority or Finansklagenemnda (R10): the
    /// call's recording, facts and retention history, encrypted to the
    /// recipient's age key.
    Disclose(cli::disclose::Args),
    /// Data-subject requests (R11): export everything held about a customer, or erase what the law lets go.
    Subject {
        #[command(subcommand)]
        command: cli::subject::Command,
    },
    /// The pipeline's topics: create them with the policy's retention, or check the broker's for drift.
    Topics {
        #[command(subcommand)]
        command: cli::topics::Command,
    },
    /// Print the effective configuration as TOML (defaults, file and environment merged; secrets as *****).
    Config,
}

fn main() -> std::process::ExitCode {
    // Blob writes to local files run on tokio's blocking pool; left unbounded
    // (512 threads) a flush of thousands of segments spawns a hundred threads
    // that spend their time in the scheduler (measured: 13 s of system CPU in
    // 10 s at 1,000 calls). A few threads write as fast.
    let done = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(8)
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(async_main()));
    // A command's error is one line (its causes joined by ": "), never a
    // debug dump with a backtrace, whatever RUST_BACKTRACE says.
    match done {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", cli::one_line(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

async fn async_main() -> Result<()> {
    let parsed = Cli::parse();
    let path = parsed.config.as_deref();
    // Every command but the demo reads the configuration and logs as it says.
    let setup = || -> Result<Config> {
        let config = Config::load(path)?;
        cli::init_logging(config.log.format == "json");
        Ok(config)
    };
    match parsed.command {
        Command::Demo(args) => cli::demo::run(args).await,
        // Its logging may also export traces (telemetry.otlp_endpoint).
        Command::Run(args) => cli::run::run(Config::load(path)?, args).await,
        Command::Config => {
            print!("{}", Config::load(path)?.to_masked_toml()?);
            Ok(())
        }
        Command::Recordings { command } => cli::recordings::run(setup()?, command).await,
        Command::Loadgen(args) => cli::loadgen::run(setup()?, args).await,
        Command::Deadletters(args) => cli::deadletters::run(setup()?, args).await,
        Command::Users { command } => cli::users::run(setup()?, command).await,
        Command::Audit { command } => cli::audit::run(setup()?, command).await,
        Command::Ki(args) => cli::ki::run(setup()?, args).await,
        Command::Keys { command } => cli::keys::run(setup()?, command).await,
        Command::Policy { command } => cli::policy::run(setup()?, command).await,
        Command::Retention { command } => cli::retention::run(setup()?, command).await,
        Command::Hold { command } => cli::hold::run(setup()?, command).await,
        Command::Disclose(args) => cli::disclose::run(setup()?, args).await,
        Command::Subject { command } => cli::subject::run(setup()?, command).await,
        Command::Topics { command } => cli::topics::run(setup()?, command).await,
    }
}
