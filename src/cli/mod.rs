//! The `opptak` commands, one module each (as quickwit-cli does): every
//! module holds its clap arguments and the function that carries it out;
//! `main.rs` only parses and dispatches. The helpers here are shared by
//! several commands (logging, Ctrl-C, progress lines, private files).

pub(crate) mod audit;
pub(crate) mod deadletters;
pub(crate) mod demo;
pub(crate) mod disclose;
pub(crate) mod hold;
pub(crate) mod keys;
pub(crate) mod ki;
pub(crate) mod loadgen;
pub(crate) mod policy;
pub(crate) mod recordings;
pub(crate) mod retention;
pub(crate) mod run;
pub(crate) mod subject;
pub(crate) mod topics;
pub(crate) mod users;

use anyhow::{Context, Result};
use opptak::app::Edges;
use opptak::config::Config;

/// An error as one line: each cause in turn, joined by ": ", a cause's
/// own line breaks (a TOML parse error's excerpt) folded into spaces.
pub(crate) fn one_line(e: &anyhow::Error) -> String {
    e.chain()
        .map(|cause| cause.to_string().split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|c| !c.is_empty())
        .collect::<Vec<_>>()
        .join(": ")
}

pub(crate) fn init_logging(json: bool) {
    init_tracing(json, None);
}

/// Logs to stderr (text or JSON, filtered by `OPPTAK_LOG`) and, with `otlp`,
/// exports spans to an OpenTelemetry collector (`opptak_telemetry::otlp`). The export
/// has its own filter, not `OPPTAK_LOG`: every INFO-or-above span and event of
/// opptak's crates, so a quiet log level still yields traces. Returns the
/// exporter's handle, to flush it before the process exits.
pub(crate) fn init_tracing(
    json: bool,
    otlp: Option<opptak_telemetry::otlp::OtlpConfig>,
) -> Option<opptak_telemetry::otlp::OtlpHandle> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{EnvFilter, Layer};
    let filter = EnvFilter::try_from_env("OPPTAK_LOG")
        .unwrap_or_else(|_| EnvFilter::new("warn,opptak=info,opptak_recorder=info"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = if json { fmt.json().boxed() } else { fmt.boxed() };
    let (export, handle) = match otlp {
        Some(cfg) => {
            let (layer, handle) = opptak_telemetry::otlp::start(cfg);
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

/// The local user `by` of `role`, signed in with the next line of standard
/// input as the password: the actor of a command that must name an
/// authenticated person (holds, reclassifications, emergency shredding).
pub(crate) async fn signed_in(
    edges: &opptak::app::Edges,
    by: &str,
    role: opptak_review::identity::Role,
    action: &str,
) -> Result<String> {
    let password = password_from_stdin()?;
    let id = opptak_review::identity::Identity::open(&edges.review()).await?;
    Ok(id.authenticate(by, &password, role, action).await?.actor())
}

pub(crate) fn password_from_stdin() -> Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

/// Stops a long command cleanly on Ctrl-C: the flag is checked between items.
pub(crate) fn interrupt_flag() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
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
pub(crate) fn progress_line(text: &str) {
    use std::io::IsTerminal;
    if std::io::stderr().is_terminal() {
        eprint!("\r{text}\x1b[K");
    }
}

/// Writes a file only the owner can read (it may hold audio).
pub(crate) fn write_private(path: &std::path::Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    create_private(path)?.write_all(data)?;
    Ok(())
}

/// Opens `path` for writing (created or truncated) so only the owner can
/// read it (0600, also when it existed with wider rights), and never through
/// a symbolic link: exports hold audio and dead letters in clear, and a link
/// planted at the path must not redirect them.
pub(crate) fn create_private(path: &std::path::Path) -> Result<std::fs::File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => anyhow::anyhow!(
                "{} is a symbolic link: refusing to write through it; choose another --out",
                path.display()
            ),
            _ => anyhow::Error::new(e).context(format!("creating {}", path.display())),
        })?;
    let meta = f.metadata()?;
    // Regular files only: `--out /dev/null` must stay as it is.
    if meta.is_file() && meta.permissions().mode() & 0o077 != 0 {
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(f)
}

/// Edges for a command that reads recordings: the keyring must exist already
/// (a reader never invents a key-encryption key).
pub(crate) async fn reader_edges(config: Config) -> Result<Edges> {
    let keys = opptak::app::open_key_admin(&config, false)?;
    let mut edges = Edges::open(config).await?;
    edges.keys = keys;
    Ok(edges)
}

pub(crate) fn format_time(us: i64) -> String {
    opptak_domain::time::utc_time(us)
}
