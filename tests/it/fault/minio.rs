//! A MinIO of the test's own for the fault suite's object-store scenario
//! (`minio_restart_loses_and_duplicates_nothing`): the hot store of every
//! process (`storage.blobs = s3://…`) on a server the run may kill without
//! disturbing anyone else's bucket (not the shared `services.sh` MinIO).
//!
//! The binary is the one `deploy/local/services.sh install` builds
//! (`$OPPTAK_SERVICES_DIR/minio/bin/minio`, or `OPPTAK_MINIO_BIN`), started
//! as `services.sh` starts its own (no console, no update checks), on a free
//! port with its data under the run's directory, in a process group of its
//! own so that a SIGKILL is a crash of its host. A restart keeps the data.

use super::procs::{kill_group, log_pair};
use crate::common::free_port;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The root credentials of the private server (a test's own, on loopback).
pub const USER: &str = "opptak-fault";
pub const PASSWORD: &str = "opptak-fault-secret";

pub struct PrivateMinio {
    bin: PathBuf,
    data: PathBuf,
    pub log: PathBuf,
    pub port: u16,
    child: Option<Child>,
}

/// The MinIO server binary, or why there is none.
fn binary() -> Result<PathBuf, String> {
    if let Ok(b) = std::env::var("OPPTAK_MINIO_BIN") {
        return Ok(b.into());
    }
    let services = std::env::var("OPPTAK_SERVICES_DIR")
        .map(PathBuf::from)
        .or_else(|_| std::env::var("HOME").map(|h| Path::new(&h).join(".cache/opptak-services")))
        .map_err(|_| "neither OPPTAK_SERVICES_DIR nor HOME is set".to_string())?;
    let bin = services.join("minio/bin/minio");
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!(
            "no MinIO server at {} (deploy/local/services.sh install builds it)",
            bin.display()
        ))
    }
}

impl PrivateMinio {
    /// Whether the server binary is there (the scenario is skipped, or
    /// failed under `OPPTAK_REQUIRE_SERVICES=1`, without it).
    pub fn available() -> Result<(), String> {
        binary().map(drop)
    }

    /// Starts a server with its data under `dir` and waits until it answers.
    pub fn start(dir: &Path) -> Result<Self, String> {
        let data = dir.join("minio-data");
        std::fs::create_dir_all(&data).map_err(|e| format!("{}: {e}", data.display()))?;
        let mut m = Self {
            bin: binary()?,
            data,
            log: dir.join("minio.log"),
            port: free_port(),
            child: None,
        };
        m.launch()?;
        m.wait_ready(Duration::from_secs(60))?;
        Ok(m)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again, on the same port and data); does not wait.
    pub fn launch(&mut self) -> Result<(), String> {
        let (log, err) = log_pair(&self.log)?;
        let child = Command::new(&self.bin)
            .args(["server", "--quiet", "--address", &format!("127.0.0.1:{}", self.port)])
            .arg(&self.data)
            .env("MINIO_ROOT_USER", USER)
            .env("MINIO_ROOT_PASSWORD", PASSWORD)
            .env("MINIO_BROWSER", "off")
            .env("MINIO_UPDATE", "off")
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", self.bin.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// Whether the server answers its liveness probe now.
    pub fn ready(&self) -> bool {
        let probe = || -> std::io::Result<bool> {
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.port));
            let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
            s.set_read_timeout(Some(Duration::from_secs(2)))?;
            s.write_all(b"GET /minio/health/live HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
            let mut head = [0u8; 12];
            s.read_exact(&mut head)?;
            Ok(head.starts_with(b"HTTP/1.") && &head[9..12] == b"200")
        };
        probe().unwrap_or(false)
    }

    /// Until the server answers, or `limit`.
    pub fn wait_ready(&mut self, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        while !self.ready() {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    return Err(format!("minio exited at start ({status}); log: {}", self.log.display()));
                }
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "minio not answering within {limit:?}; log: {}",
                    self.log.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// SIGKILLs the server (its whole process group); returns its pid.
    pub fn kill(&mut self) -> Result<u32, String> {
        let mut child = self.child.take().ok_or("minio is not running")?;
        let pid = child.id();
        kill_group(pid, "KILL");
        let _ = child.wait();
        Ok(pid)
    }
}

impl Drop for PrivateMinio {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}
