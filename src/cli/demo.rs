//! `opptak demo`: the sample calls through the whole pipeline in one
//! process (the README's first quick-start command), optionally serving the
//! review UI afterwards.

use anyhow::Result;
use std::path::PathBuf;

/// Run the sample calls through the whole pipeline in one process (no servers needed).
#[derive(clap::Args)]
pub(crate) struct Args {
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
}

pub(crate) async fn run(args: Args) -> Result<()> {
    let filter = std::env::var("OPPTAK_LOG").unwrap_or_else(|_| "error".into());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .init();
    let samples = args.samples.unwrap_or_else(opptak::demo::default_samples_dir);
    opptak::demo::run(&args.data_dir, &samples, args.chunk_ms, args.serve.as_deref()).await
}
