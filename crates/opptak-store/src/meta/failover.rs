//! PostgreSQL failover: the metadata store on a primary with standbys.
//!
//! A libpq multi-host URL names every server a session may go to and what
//! the one to use must be:
//! `postgres://opptak@db1:5432,db2:5432/opptak?target_session_attrs=read-write`.
//! sqlx parses neither the host list nor `target_session_attrs`, so opptak
//! does it here ([`targets`]): each host becomes a single-host URL of its
//! own. At open the hosts are probed and the first that is a writable
//! primary ([`Sessions`]) gets the store's pool. A watcher task
//! ([`watch`]) asks that server every second (and at once when a query
//! failed as a lost primary fails: [`note`]) whether it still is one; when
//! it is not, the hosts are probed again and the pool on the new primary
//! replaces the old one ([`PoolCell`]), which is closed: whatever waited on
//! it fails at once with [`StoreError::Unavailable`] and its caller retries
//! (a caller inside sqlx's connect retries is pointed at the new primary).
//! While no server takes writes the old pool is closed too, so queries fail
//! at once rather than after the pool's 30 s acquire timeout.
//!
//! What a failover may not lose is the primary's to keep: with
//! `synchronous_standby_names` (the local cluster's, `deploy/local`) a
//! commit returns only once a standby has flushed it, so every write opptak
//! saw succeed is on the standby that is promoted.
//!
//! A single-host URL without `target_session_attrs` opens one pool, as it
//! always did: no probe, no watcher.

use super::{redact, with_password_from_file};
use crate::StoreError;
use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

/// How often the watcher asks the current server whether it is still the primary.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// How long that question may take before the server counts as gone.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one probe (connect and ask) of one host may take: a host cut
/// off by the network answers nothing at all.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the store waits at open for a writable primary to appear.
const OPEN_WAIT: Duration = Duration::from_secs(30);

/// Woken when a query failed as a lost primary fails, so the watchers of
/// every store in the process look at once instead of within the second.
static FAILED: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// What `target_session_attrs` asks of the server (libpq's meaning).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sessions {
    /// Not in recovery, and not read-only by `default_transaction_read_only`.
    ReadWrite,
    /// Not in recovery.
    Primary,
}

impl Sessions {
    fn param(self) -> &'static str {
        match self {
            Sessions::ReadWrite => "read-write",
            Sessions::Primary => "primary",
        }
    }

    /// One row, one boolean: whether this server takes the store's writes.
    fn query(self) -> &'static str {
        match self {
            Sessions::ReadWrite => {
                "SELECT NOT pg_is_in_recovery() AND current_setting('transaction_read_only') = 'off'"
            }
            Sessions::Primary => "SELECT NOT pg_is_in_recovery()",
        }
    }
}

/// The servers of a multi-host URL.
#[derive(Debug)]
pub(crate) struct Targets {
    /// `host:port` of each, as written: for logs (no user, no password).
    pub(crate) names: Vec<String>,
    /// A single-host URL of each, with every parameter but
    /// `target_session_attrs` (its `password_file` is read at each connect).
    urls: Vec<String>,
    pub(crate) sessions: Sessions,
}

/// A PostgreSQL URL in three parts around its host list:
/// `postgres://user@`, `db1:5432,db2:5432`, `/opptak?sslmode=verify-full`.
/// `None` for any other URL. The host list ends at the first `/`, `?` or
/// `#` after the scheme; a password holding one of those must be
/// percent-encoded (as in any URL).
pub fn split_host_list(url: &str) -> Option<(&str, &str, &str)> {
    let scheme = ["postgres://", "postgresql://"]
        .into_iter()
        .find(|s| url.starts_with(s))?
        .len();
    let rest = &url[scheme..];
    let authority = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let hosts = rest[..authority].rfind('@').map_or(0, |at| at + 1);
    let (a, b) = (scheme + hosts, scheme + authority);
    Some((&url[..a], &url[a..b], &url[b..]))
}

/// The servers `url` names when it asks for failover (several hosts, or
/// `target_session_attrs`); `None` for a plain single-host URL (and for
/// anything not `postgres://`). Several hosts need `target_session_attrs`
/// `read-write` or `primary`: libpq's default (`any`) would take a standby
/// as readily, and every write of opptak would fail there.
pub(crate) fn targets(url: &str) -> Result<Option<Targets>, StoreError> {
    let Some((before, hosts, after)) = split_host_list(url) else {
        return Ok(None);
    };
    let bad = |why: String| StoreError::Config(format!("metadata url {}: {why}", redact(url)));
    let (path, query) = match after.split_once('?') {
        Some((p, q)) => (p, q),
        None => (after, ""),
    };
    let mut attrs = None;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("target_session_attrs", v)) => attrs = Some(v),
            _ => kept.push(pair),
        }
    }
    let list: Vec<&str> = hosts.split(',').collect();
    let sessions = match attrs {
        None if list.len() == 1 => return Ok(None),
        None => {
            return Err(bad(format!(
                "{} hosts and no target_session_attrs: add target_session_attrs=read-write (or primary) so \
                 that opptak writes to the primary",
                list.len()
            )))
        }
        Some("read-write") => Sessions::ReadWrite,
        Some("primary") => Sessions::Primary,
        Some(other) => {
            return Err(bad(format!(
                "target_session_attrs={other}: opptak writes its metadata, so only read-write or primary"
            )))
        }
    };
    let rest = if kept.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", kept.join("&"))
    };
    let mut names = Vec::with_capacity(list.len());
    let mut urls = Vec::with_capacity(list.len());
    for h in list {
        let (host, port) = host_port(h).map_err(|why| bad(format!("host {h:?}: {why}")))?;
        let name = format!("{host}:{port}");
        urls.push(format!("{before}{name}{rest}"));
        names.push(name);
    }
    Ok(Some(Targets { names, urls, sessions }))
}

/// `db1`, `db1:5433`, `[::1]:5433` → (host, port); 5432 when none is given.
fn host_port(h: &str) -> Result<(&str, u16), String> {
    let (host, port) = if let Some(v6) = h.strip_prefix('[') {
        let end = v6.find(']').ok_or("an IPv6 address without its closing ]")?;
        let port = &v6[end + 1..];
        let port = match port.strip_prefix(':') {
            Some(p) => Some(p),
            None if port.is_empty() => None,
            None => return Err("text after the IPv6 address".into()),
        };
        (&h[..end + 2], port)
    } else {
        match h.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (h, None),
        }
    };
    if host.is_empty() || host == "[]" {
        return Err("no host name (a unix socket directory goes in a single-host URL)".into());
    }
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .map_err(|_| format!("port {p:?} is not a port number"))?,
        None => 5432,
    };
    Ok((host, port))
}

/// The store's pool, replaced in one step when the primary moves. Readers
/// take a clone (`AnyPool` is an `Arc`) and never hold the lock across an
/// await.
pub(crate) struct PoolCell {
    current: RwLock<(AnyPool, usize)>,
}

impl PoolCell {
    pub(crate) fn new(pool: AnyPool, host: usize) -> Self {
        Self {
            current: RwLock::new((pool, host)),
        }
    }

    pub(crate) fn get(&self) -> AnyPool {
        self.current().0
    }

    fn current(&self) -> (AnyPool, usize) {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Puts `pool` (on host `host`) in place; returns the one it replaced.
    fn replace(&self, pool: AnyPool, host: usize) -> AnyPool {
        let mut g = match self.current.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        std::mem::replace(&mut *g, (pool, host)).0
    }
}

/// The pool settings of every PostgreSQL metadata store.
pub(crate) fn pg_pool_options() -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(30))
}

/// Whether a failed query says the server it went to is gone or no longer
/// the primary: the connection broke or was refused (class 08, I/O), the
/// server is shutting down or starting (57P01–57P03), or it is read-only
/// (25006: a standby, or a demoted primary).
pub(crate) fn lost_primary(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::WorkerCrashed | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(d) => d
            .code()
            .is_some_and(|c| c.starts_with("08") || matches!(c.as_ref(), "57P01" | "57P02" | "57P03" | "25006")),
        _ => false,
    }
}

/// Called with every failed query: the watchers look now if it may have
/// been a lost primary.
pub(crate) fn note(e: &sqlx::Error) {
    if lost_primary(e) {
        FAILED.notify_waiters();
    }
}

/// What one probe of one host found.
enum Probe {
    Writable,
    /// It answered, but takes no writes (a standby).
    NotWritable,
    /// It did not answer, or refused us; `config` when retrying will not
    /// help (authentication, TLS, no such database).
    Failed {
        why: String,
        config: bool,
    },
}

impl Targets {
    /// Connects to host `i`, asks, and disconnects.
    async fn probe(&self, i: usize) -> Probe {
        use sqlx::Connection;
        let url = match with_password_from_file(&self.urls[i]) {
            Ok(u) => u,
            Err(e) => {
                return Probe::Failed {
                    why: e.to_string(),
                    config: true,
                }
            }
        };
        let asked = tokio::time::timeout(PROBE_TIMEOUT, async {
            let mut conn = sqlx::PgConnection::connect(&url).await?;
            let writable: bool = sqlx::query_scalar(self.sessions.query()).fetch_one(&mut conn).await?;
            let _ = conn.close().await;
            Ok::<bool, sqlx::Error>(writable)
        })
        .await;
        match asked {
            Ok(Ok(true)) => Probe::Writable,
            Ok(Ok(false)) => Probe::NotWritable,
            Ok(Err(e)) => Probe::Failed {
                config: !lost_primary(&e)
                    && matches!(
                        e,
                        sqlx::Error::Tls(_) | sqlx::Error::Database(_) | sqlx::Error::Configuration(_)
                    ),
                why: e.to_string(),
            },
            Err(_) => Probe::Failed {
                why: format!("no answer within {PROBE_TIMEOUT:?}"),
                config: false,
            },
        }
    }

    /// Probes every host at once; the writable primary to use: `prefer`
    /// (the current one) if it still is one, else the first in the URL's
    /// order (libpq's choice). Otherwise what each host said.
    async fn find_primary(&self, prefer: Option<usize>) -> Result<usize, (String, bool)> {
        let found = futures::future::join_all((0..self.urls.len()).map(|i| self.probe(i))).await;
        let writable = |i: usize| matches!(found[i], Probe::Writable);
        if let Some(p) = prefer.filter(|&p| writable(p)) {
            return Ok(p);
        }
        if let Some(i) = (0..found.len()).find(|&i| writable(i)) {
            return Ok(i);
        }
        let config = found.iter().any(|p| matches!(p, Probe::Failed { config: true, .. }));
        let said = self
            .names
            .iter()
            .zip(&found)
            .map(|(name, p)| match p {
                Probe::Writable => format!("{name}: writable"),
                Probe::NotWritable => format!("{name}: not {}", self.sessions.param()),
                Probe::Failed { why, .. } => format!("{name}: {why}"),
            })
            .collect::<Vec<_>>()
            .join("; ");
        Err((said, config))
    }

    /// How to connect to host `i`, if its URL (and password file) reads.
    fn connect_options(&self, i: usize) -> Option<sqlx::any::AnyConnectOptions> {
        use std::str::FromStr;
        let url = with_password_from_file(&self.urls[i]).ok()?;
        sqlx::any::AnyConnectOptions::from_str(&url).ok()
    }

    /// A pool on host `i`.
    async fn pool_on(&self, i: usize) -> Result<AnyPool, sqlx::Error> {
        let url =
            with_password_from_file(&self.urls[i]).map_err(|e| sqlx::Error::Configuration(e.to_string().into()))?;
        pg_pool_options().connect(&url).await
    }

    /// The primary to open the store on, and a pool on it: waits up to
    /// [`OPEN_WAIT`] for one (a failover may be under way), unless a host
    /// refuses us for a reason waiting does not change.
    pub(crate) async fn open(&self) -> Result<(AnyPool, usize), StoreError> {
        let deadline = tokio::time::Instant::now() + OPEN_WAIT;
        loop {
            let why = match self.find_primary(None).await {
                Ok(i) => match self.pool_on(i).await {
                    Ok(pool) => return Ok((pool, i)),
                    Err(e) => (format!("{}: {e}", self.names[i]), false),
                },
                Err(why) => why,
            };
            match why {
                (why, true) => return Err(StoreError::Config(format!("connecting to the metadata store: {why}"))),
                (why, false) if tokio::time::Instant::now() >= deadline => {
                    return Err(StoreError::Unavailable(format!(
                        "no {} server among {} within {OPEN_WAIT:?} ({why})",
                        self.sessions.param(),
                        self.names.join(", ")
                    )))
                }
                _ => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }
}

/// Asks the pool's server whether it still takes the store's writes.
async fn still_primary(pool: &AnyPool, sessions: Sessions) -> bool {
    let asked = sqlx::query_scalar::<_, bool>(sessions.query()).fetch_one(pool);
    matches!(tokio::time::timeout(CHECK_TIMEOUT, asked).await, Ok(Ok(true)))
}

/// Starts the watcher of `cell` (see the module's documentation). It ends
/// when the store holding `cell` is dropped.
pub(crate) fn spawn_watcher(cell: &Arc<PoolCell>, targets: Targets) {
    tokio::spawn(watch(Arc::downgrade(cell), targets));
}

async fn watch(cell: Weak<PoolCell>, targets: Targets) {
    let hosts = targets.names.join(", ");
    // Since when no server has been the primary (logged once per outage).
    let mut lost: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(CHECK_EVERY) => {}
            _ = FAILED.notified() => {}
        }
        // Held for this round only: a store dropped meanwhile ends the watcher.
        let Some(cell) = cell.upgrade() else { return };
        let (pool, host) = cell.current();
        if !pool.is_closed() && still_primary(&pool, targets.sessions).await {
            continue;
        }
        let found = match targets.find_primary(Some(host)).await {
            // Its pool comes back by itself (sqlx reconnects).
            Ok(i) if i == host && !pool.is_closed() => continue,
            Ok(i) => targets.pool_on(i).await.map(|p| (i, p)).map_err(|e| e.to_string()),
            Err((why, _)) => Err(why),
        };
        match found {
            Ok((i, new)) => {
                // A caller that was already waiting for a connection of the
                // old pool is not woken by its close: sqlx retries a refused
                // connect until the acquire timeout (30 s), reading the
                // pool's connect options anew each time. Point those retries
                // at the new primary.
                if let Some(opts) = targets.connect_options(i) {
                    pool.set_connect_options(opts);
                }
                let old = cell.replace(new, i);
                // Whatever still waits on the old server fails now
                // (PoolClosed: Unavailable to its caller, who retries).
                tokio::spawn(async move { old.close().await });
                let down_s = lost.take().map_or(0.0, |t| t.elapsed().as_secs_f64());
                if i == host {
                    tracing::warn!(primary = %targets.names[i], down_s, "metadata store: the primary answers again");
                } else {
                    tracing::warn!(from = %targets.names[host], to = %targets.names[i], down_s,
                        "metadata store failed over to the new primary");
                }
            }
            Err(why) => {
                // No server takes writes, the current one included: its pool
                // is closed, so that queries fail at once (Unavailable, and
                // their callers back off) instead of each waiting out the
                // pool's acquire timeout on a server that is gone.
                if !pool.is_closed() {
                    tokio::spawn(async move { pool.close().await });
                }
                if lost.is_none() {
                    lost = Some(tokio::time::Instant::now());
                    tracing::warn!(current = %targets.names[host], %hosts, %why,
                        "metadata store: no {} server; queries fail until one is found (looking every second)",
                        targets.sessions.param());
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_host_list_is_split_out() {
        assert_eq!(
            split_host_list("postgres://u:p@h1:5432,h2:5433/db?x=1"),
            Some(("postgres://u:p@", "h1:5432,h2:5433", "/db?x=1"))
        );
        assert_eq!(
            split_host_list("postgresql://h1,[::1]:7/db"),
            Some(("postgresql://", "h1,[::1]:7", "/db"))
        );
        assert_eq!(
            split_host_list("postgres://h?sslmode=require"),
            Some(("postgres://", "h", "?sslmode=require"))
        );
        assert_eq!(split_host_list("sqlite:///tmp/x.db"), None);
    }

    #[test]
    fn a_multi_host_url_becomes_one_url_per_host() {
        let t = targets(
            "postgres://opptak@db1:5432,db2:5433,[fd00::7]/opptak?sslmode=verify-full&target_session_attrs=read-write\
             &password_file=%2Frun%2Fpw",
        )
        .unwrap()
        .unwrap();
        assert_eq!(t.sessions, Sessions::ReadWrite);
        assert_eq!(t.names, ["db1:5432", "db2:5433", "[fd00::7]:5432"]);
        assert_eq!(
            t.urls,
            [
                "postgres://opptak@db1:5432/opptak?sslmode=verify-full&password_file=%2Frun%2Fpw",
                "postgres://opptak@db2:5433/opptak?sslmode=verify-full&password_file=%2Frun%2Fpw",
                "postgres://opptak@[fd00::7]:5432/opptak?sslmode=verify-full&password_file=%2Frun%2Fpw",
            ]
        );
        let t = targets("postgresql://u@a,b/db?target_session_attrs=primary")
            .unwrap()
            .unwrap();
        assert_eq!(t.sessions, Sessions::Primary);
        assert_eq!(t.urls, ["postgresql://u@a:5432/db", "postgresql://u@b:5432/db"]);
        // One host asking for a primary is watched too.
        let t = targets("postgres://u@a:1/db?target_session_attrs=read-write")
            .unwrap()
            .unwrap();
        assert_eq!(t.urls, ["postgres://u@a:1/db"]);
    }

    #[test]
    fn a_single_host_url_stays_as_it_was() {
        for url in [
            "postgres://u:p@h:5432/db",
            "postgres://u@h/db?sslmode=verify-full&sslrootcert=/ca.pem",
            "postgresql://%2Fvar%2Frun%2Fpostgresql/db",
            "sqlite:///var/lib/opptak/opptak.db",
        ] {
            assert!(targets(url).unwrap().is_none(), "{url}");
        }
    }

    #[test]
    fn what_opptak_cannot_write_to_is_refused_with_why() {
        let cases = [
            ("postgres://u:secret@a,b/db", "add target_session_attrs=read-write"),
            (
                "postgres://u:secret@a,b/db?target_session_attrs=any",
                "target_session_attrs=any: opptak writes its metadata",
            ),
            (
                "postgres://u:secret@a,b/db?target_session_attrs=standby",
                "only read-write or primary",
            ),
            (
                "postgres://u:secret@a:x,b/db?target_session_attrs=primary",
                "\"x\" is not a port number",
            ),
            (
                "postgres://u:secret@a,,b/db?target_session_attrs=primary",
                "no host name",
            ),
            (
                "postgres://u:secret@[::1,b/db?target_session_attrs=primary",
                "closing ]",
            ),
        ];
        for (url, want) in cases {
            let e = targets(url).unwrap_err();
            let text = e.to_string();
            assert!(matches!(e, StoreError::Config(_)), "{url}: {e:?}");
            assert!(text.contains(want), "{url}: {text}");
            assert!(!text.contains("secret"), "{url}: {text}");
        }
    }

    #[test]
    fn passwords_of_multi_host_urls_are_redacted() {
        assert_eq!(
            redact("postgres://u:s3cr%40t@h1:5432,h2:5433/db?target_session_attrs=read-write"),
            "postgres://u:*****@h1:5432,h2:5433/db?target_session_attrs=read-write"
        );
    }

    #[test]
    fn each_host_gets_the_password_from_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "pa:ss@word\n").unwrap();
        let url = format!(
            "postgres://opptak@h1:5432,h2:5433/db?target_session_attrs=read-write&password_file={}",
            file.display()
        );
        let t = targets(&url).unwrap().unwrap();
        for (i, host) in ["h1:5432", "h2:5433"].iter().enumerate() {
            let got = with_password_from_file(&t.urls[i]).unwrap();
            assert_eq!(got, format!("postgres://opptak:pa%3Ass%40word@{host}/db"));
            assert!(!redact(&got).contains("ss%40word"), "{}", redact(&got));
        }
    }

    #[test]
    fn lost_primaries_are_told_from_other_failures() {
        let io = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(lost_primary(&io));
        assert!(lost_primary(&sqlx::Error::PoolTimedOut));
        assert!(!lost_primary(&sqlx::Error::RowNotFound));
        assert!(!lost_primary(&sqlx::Error::PoolClosed));
    }
}
