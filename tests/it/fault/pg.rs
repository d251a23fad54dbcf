//! A PostgreSQL primary and its synchronous streaming standby of the
//! test's own, for the failover tests (`tests/it/pg_failover.rs`, the fault
//! suite's PostgreSQL scenario): killing the primary disturbs nobody else's
//! database (not the shared `services.sh` ones, not the local cluster's
//! pair on 55442/55443).
//!
//! Set up as `deploy/local/services.sh cluster` sets up its pair, from the
//! same files: `initdb`, the configuration `postgres/opptak-cluster.conf.in`
//! (synchronous replication: the primary's commits wait for the standby's
//! flush), `pg_hba-cluster.conf`, and a standby cloned with
//! `pg_basebackup -R`; on free ports, with its data under the test's
//! directory. The server binaries are found as `services.sh` finds them:
//! `OPPTAK_PG_BINDIR`, the newest `/usr/lib/postgresql/*/bin`, or
//! `pg_ctl` on the PATH. As root, the servers run as the `postgres` user
//! (or `opptak-pg`, which `services.sh` creates where there is none):
//! PostgreSQL refuses to run as root.
//!
//! Each server runs in a process group of its own, so a SIGKILL of the
//! group takes the postmaster and every backend at once, as a crash of its
//! host would.

use crate::common::free_port;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The database and role opptak uses on the pair.
pub const DB: &str = "opptak";

/// One server of the pair.
pub struct PgNode {
    pub name: &'static str,
    pub port: u16,
    dir: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
}

impl PgNode {
    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// A URL to this server alone, as the superuser (set-up, checks).
    pub fn admin_url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }
}

pub struct PgPair {
    bin: PathBuf,
    /// The user the servers run as (uid, gid), when this test runs as root.
    user: Option<(u32, u32)>,
    pub primary: PgNode,
    pub standby: PgNode,
}

/// The directory holding `initdb`, `postgres` and `pg_basebackup`
/// (`deploy/local/services.sh`'s `pg_bindir`).
fn bindir() -> Result<PathBuf, String> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Ok(d) = std::env::var("OPPTAK_PG_BINDIR") {
        candidates.push(d.into());
    }
    let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            Some((v, e.path().join("bin")))
        })
        .collect();
    debian.sort_by_key(|d| std::cmp::Reverse(d.0));
    candidates.extend(debian.into_iter().map(|(_, p)| p));
    if let Ok(path) = std::env::var("PATH") {
        for d in std::env::split_paths(&path) {
            if let Ok(real) = std::fs::canonicalize(d.join("pg_ctl")) {
                if let Some(parent) = real.parent() {
                    candidates.push(parent.to_owned());
                }
            }
        }
    }
    candidates
        .into_iter()
        .find(|d| {
            ["initdb", "postgres", "pg_basebackup"]
                .iter()
                .all(|b| d.join(b).is_file())
        })
        .ok_or_else(|| {
            "no PostgreSQL server binaries (initdb, postgres, pg_basebackup) found: \
             run deploy/local/services.sh install or set OPPTAK_PG_BINDIR"
                .to_string()
        })
}

fn id(args: &[&str]) -> Result<u32, String> {
    let out = Command::new("id").args(args).output().map_err(|e| format!("id: {e}"))?;
    if !out.status.success() {
        return Err(format!("id {args:?}: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|e| format!("id {args:?}: {e}"))
}

/// As root: the (uid, gid) of the user PostgreSQL runs as.
fn server_user() -> Result<Option<(u32, u32)>, String> {
    if id(&["-u"])? != 0 {
        return Ok(None);
    }
    for name in ["postgres", "opptak-pg"] {
        if let (Ok(uid), Ok(gid)) = (id(&["-u", name]), id(&["-g", name])) {
            return Ok(Some((uid, gid)));
        }
    }
    Err(
        "running as root and there is no postgres (or opptak-pg) user to run PostgreSQL as: \
         run deploy/local/services.sh start once"
            .into(),
    )
}

const HERE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/local/postgres");

impl PgPair {
    /// Whether the binaries are here (else why not), without starting anything.
    pub fn available() -> Result<(), String> {
        bindir()?;
        server_user()?;
        Ok(())
    }

    /// Creates and starts the pair under `dir/pg` (`dir` must be reachable
    /// by the server user): the primary with the role and database
    /// [`DB`], then the standby, streaming and synchronous.
    pub fn start(dir: &Path) -> Result<Self, String> {
        let bin = bindir()?;
        let user = server_user()?;
        let root = dir.join("pg");
        let mut pair = Self {
            bin,
            user,
            primary: PgNode {
                name: "primary",
                port: free_port(),
                dir: root.join("primary"),
                log: root.join("primary.log"),
                child: None,
            },
            standby: PgNode {
                name: "standby",
                port: free_port(),
                dir: root.join("standby"),
                log: root.join("standby.log"),
                child: None,
            },
        };
        for d in [&root, &pair.primary.dir, &pair.standby.dir] {
            pair.own_dir(d)?;
        }
        let data = pair.primary.data();
        pair.run(
            "initdb",
            &[
                "-D",
                &data.display().to_string(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
            ],
        )?;
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .map_err(|e| e.to_string())?;
        use std::io::Write;
        writeln!(conf, "\ninclude_if_exists = 'opptak.conf'").map_err(|e| e.to_string())?;
        pair.configure(true)?;
        pair.launch(true)?;
        pair.wait_ready(true)?;
        // The role and database, committed locally: there is no standby to
        // wait for yet.
        pair.psql_primary(&[
            "SET synchronous_commit = local",
            &format!("CREATE ROLE {DB} LOGIN"),
            &format!("CREATE DATABASE {DB} OWNER {DB}"),
        ])?;
        let sdata = pair.standby.data();
        pair.run(
            "pg_basebackup",
            &[
                "-D",
                &sdata.display().to_string(),
                "-h",
                "127.0.0.1",
                "-p",
                &pair.primary.port.to_string(),
                "-U",
                "postgres",
                "-X",
                "stream",
                "-R",
                "-c",
                "fast",
            ],
        )?;
        pair.configure(false)?;
        pair.launch(false)?;
        pair.wait_ready(false)?;
        pair.wait_synchronous()?;
        Ok(pair)
    }

    /// The URL opptak is given: both servers, the writable one wanted.
    pub fn url(&self) -> String {
        format!(
            "postgres://{DB}@127.0.0.1:{},127.0.0.1:{}/{DB}?target_session_attrs=read-write",
            self.primary.port, self.standby.port
        )
    }

    fn node(&self, primary: bool) -> &PgNode {
        if primary {
            &self.primary
        } else {
            &self.standby
        }
    }

    fn node_mut(&mut self, primary: bool) -> &mut PgNode {
        if primary {
            &mut self.primary
        } else {
            &mut self.standby
        }
    }

    /// `d` created, owned by the server user, private to it.
    fn own_dir(&self, d: &Path) -> Result<(), String> {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
        if let Some((uid, gid)) = self.user {
            std::os::unix::fs::chown(d, Some(uid), Some(gid)).map_err(|e| format!("chown {}: {e}", d.display()))?;
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).map_err(|e| e.to_string())
    }

    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(self.bin.join(program));
        if let Some((uid, gid)) = self.user {
            c.uid(uid).gid(gid);
        }
        c
    }

    /// Runs one of the PostgreSQL tools to its end.
    fn run(&self, program: &str, args: &[&str]) -> Result<(), String> {
        let out = self.command(program).args(args).stdin(Stdio::null()).output();
        super::procs::succeeded(&format!("{program} {args:?}"), out).map(drop)
    }

    /// The node's `opptak.conf` (the local cluster's template: its port, its
    /// socket directory, and on the primary the synchronous standby) and
    /// `pg_hba.conf`.
    fn configure(&self, primary: bool) -> Result<(), String> {
        let node = self.node(primary);
        let template = std::fs::read_to_string(format!("{HERE}/opptak-cluster.conf.in")).map_err(|e| e.to_string())?;
        let text = template
            .replace("@PG_PORT@", &node.port.to_string())
            .replace("@SOCKET_DIR@", &node.dir.display().to_string())
            .replace("@SYNC_STANDBYS@", if primary { "*" } else { "" });
        let data = node.data();
        std::fs::write(data.join("opptak.conf"), text).map_err(|e| e.to_string())?;
        std::fs::copy(format!("{HERE}/pg_hba-cluster.conf"), data.join("pg_hba.conf")).map_err(|e| e.to_string())?;
        if let Some((uid, gid)) = self.user {
            for f in ["opptak.conf", "pg_hba.conf"] {
                std::os::unix::fs::chown(data.join(f), Some(uid), Some(gid)).map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }

    /// Starts the node's postmaster as a child in a process group of its own.
    fn launch(&mut self, primary: bool) -> Result<(), String> {
        let node = self.node(primary);
        let (log, err) = super::procs::log_pair(&node.log)?;
        let child = self
            .command("postgres")
            .arg("-D")
            .arg(node.data())
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("starting the {}: {e}", node.name))?;
        self.node_mut(primary).child = Some(child);
        Ok(())
    }

    /// Until the node takes connections (a standby: in hot standby).
    fn wait_ready(&mut self, primary: bool) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let node = self.node_mut(primary);
            if let Some(c) = node.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    return Err(format!(
                        "the {} exited at start ({status}); log: {}",
                        node.name,
                        node.log.display()
                    ));
                }
            }
            let port = node.port;
            if self.query(port, "postgres", "SELECT 1").is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("the {} is not ready after 120 s", self.node(primary).name));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Runs `sql` (statements separated by `;` and a newline) on one
    /// connection as the superuser; the first column of each row, as text.
    /// On a runtime of its own: the callers are blocking.
    fn query(&self, port: u16, db: &str, sql: &str) -> Result<Vec<String>, String> {
        let (db, sql) = (db.to_owned(), sql.to_owned());
        block_on(async move {
            use sqlx::{Connection, Row};
            let url = format!("postgres://postgres@127.0.0.1:{port}/{db}");
            let mut c = sqlx::PgConnection::connect(&url).await.map_err(|e| e.to_string())?;
            let mut out = Vec::new();
            for s in sql.split(";\n") {
                let rows = sqlx::query(s)
                    .fetch_all(&mut c)
                    .await
                    .map_err(|e| format!("{s}: {e}"))?;
                for r in rows {
                    out.push(
                        r.try_get::<String, _>(0)
                            .unwrap_or_else(|_| r.try_get::<bool, _>(0).map(|b| b.to_string()).unwrap_or_default()),
                    );
                }
            }
            let _ = c.close().await;
            Ok(out)
        })
    }

    fn psql_primary(&self, statements: &[&str]) -> Result<(), String> {
        self.query(self.primary.port, "postgres", &statements.join(";\n"))
            .map(drop)
    }

    /// Until the primary names the standby its synchronous one.
    fn wait_synchronous(&self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let states = self.query(
                self.primary.port,
                "postgres",
                "SELECT sync_state::text FROM pg_stat_replication WHERE state = 'streaming'",
            )?;
            if states == ["sync"] {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("the standby is not synchronous after 60 s: {states:?}"));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// SIGKILL to the primary's process group (postmaster and backends:
    /// its host crashed); returns the postmaster's pid.
    pub fn kill_primary(&mut self) -> Result<u32, String> {
        let mut child = self.primary.child.take().ok_or("the primary is not running")?;
        let pid = child.id();
        super::procs::kill_group(pid, "KILL");
        let _ = child.wait();
        Ok(pid)
    }

    /// Promotes the standby and waits until it takes writes.
    pub async fn promote_standby(&self) -> Result<(), String> {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&self.standby.admin_url("postgres"))
            .await
            .map_err(|e| e.to_string())?;
        let done: bool = sqlx::query_scalar("SELECT pg_promote(true, 60)")
            .fetch_one(&mut c)
            .await
            .map_err(|e| format!("pg_promote: {e}"))?;
        if !done {
            return Err("pg_promote did not finish within 60 s".into());
        }
        let _ = c.close().await;
        Ok(())
    }

    /// Whether the server on `port` is in recovery (a standby).
    pub async fn in_recovery(port: u16) -> Result<bool, String> {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&format!("postgres://postgres@127.0.0.1:{port}/postgres"))
            .await
            .map_err(|e| e.to_string())?;
        sqlx::query_scalar("SELECT pg_is_in_recovery()")
            .fetch_one(&mut c)
            .await
            .map_err(|e| e.to_string())
    }

    pub fn logs(&self) -> [&Path; 2] {
        [self.primary.log.as_path(), self.standby.log.as_path()]
    }
}

/// Runs `f` to its end on a current-thread runtime of its own, on a thread
/// of its own (the caller may be inside another runtime).
fn block_on<T: Send + 'static>(f: impl std::future::Future<Output = T> + Send + 'static) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
            .block_on(f)
    })
    .join()
    .expect("the query thread")
}

impl Drop for PgPair {
    /// An immediate shutdown (SIGQUIT) of what still runs: nothing here
    /// needs to outlive the test.
    fn drop(&mut self) {
        for node in [&mut self.primary, &mut self.standby] {
            if let Some(mut c) = node.child.take() {
                super::procs::kill_group(c.id(), "QUIT");
                let deadline = Instant::now() + Duration::from_secs(10);
                while Instant::now() < deadline && !matches!(c.try_wait(), Ok(Some(_))) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                if !matches!(c.try_wait(), Ok(Some(_))) {
                    super::procs::kill_group(c.id(), "KILL");
                    let _ = c.wait();
                }
            }
        }
    }
}
