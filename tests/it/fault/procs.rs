//! The opptak processes under test and their supervisor.
//!
//! Each process is `opptak --config FILE run --roles ROLES`, a real child
//! process with its log (stderr) appended to one file per slot across
//! restarts. The supervisor plays the orchestrator: whatever exits on its
//! own (a fenced recorder, a role that gave up) is started again after a
//! short back-off and counted; a slot restarted too often is a crash loop.

use super::hosts::Hosts;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One supervised slot: `recorder-0`, `transcriber-1`, ...
pub struct Proc {
    pub name: String,
    pub roles: String,
    pub log: PathBuf,
    child: Option<Child>,
    /// Starts, including the first.
    pub starts: u32,
    /// SIGKILLs sent by the fault schedule.
    pub killed: u32,
    /// Exits nobody asked for: (when, status).
    pub exits: Vec<(Duration, String)>,
    restart_at: Option<Instant>,
}

/// Extra environment for one start of a slot (by its name).
pub type EnvFor = Box<dyn Fn(&str) -> Vec<(String, String)> + Send>;

/// How the processes are started (shared by every slot).
pub struct Launcher {
    pub config: PathBuf,
    /// Extra environment per start (e.g. a telemetry port).
    pub env: EnvFor,
    pub started: Instant,
    /// On hosts, each slot runs on the host of its name.
    pub hosts: Option<Arc<Hosts>>,
}

impl Launcher {
    fn spawn(&self, p: &mut Proc) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p.log)
            .expect("process log");
        use std::io::Write;
        let mut header = log.try_clone().expect("process log");
        let _ = writeln!(
            header,
            "===== fault suite: start {} of {} at {:.1} s =====",
            p.starts + 1,
            p.name,
            self.started.elapsed().as_secs_f64()
        );
        // `OPPTAK_FAULT_BIN` runs another build (a release binary, or a
        // deliberately broken one to see the suite fail).
        let bin = std::env::var("OPPTAK_FAULT_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_opptak").into());
        let mut cmd = match &self.hosts {
            Some(h) => h.command(&p.name, bin),
            None => Command::new(bin),
        };
        // The config file is the whole configuration: no OPPTAK__ override
        // from the environment the test runs in.
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("OPPTAK__")) {
            cmd.env_remove(k);
        }
        cmd.arg("--config")
            .arg(&self.config)
            .args(["run", "--roles", &p.roles])
            .envs((self.env)(&p.name))
            .env(
                "OPPTAK_LOG",
                std::env::var("OPPTAK_FAULT_LOG")
                    .unwrap_or_else(|_| "warn,opptak=info,opptak_recorder=info,opptak_ki=info,opptak_bus=info".into()),
            )
            // Plain text logs, to read and grep.
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        p.child = Some(cmd.spawn().expect("starting opptak run"));
        p.starts += 1;
    }
}

impl Proc {
    pub fn new(name: &str, roles: &str, dir: &Path) -> Self {
        Self {
            name: name.to_owned(),
            roles: roles.to_owned(),
            log: dir.join(format!("{name}.log")),
            child: None,
            starts: 0,
            killed: 0,
            exits: Vec::new(),
            restart_at: None,
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_recorder(&self) -> bool {
        self.roles.contains("recorder")
    }
}

pub struct Supervisor {
    pub launcher: Launcher,
    pub procs: Vec<Proc>,
}

/// Restarts of one slot (besides the fault schedule's kills) that make a crash loop.
pub const CRASH_LOOP: usize = 15;

impl Supervisor {
    pub fn start_all(&mut self) {
        for p in &mut self.procs {
            self.launcher.spawn(p);
        }
    }

    /// Restarts whatever exited on its own (after 1 s, as an orchestrator
    /// would back off); returns an error on a crash loop.
    pub fn tick(&mut self) -> Result<(), String> {
        let now = Instant::now();
        for p in &mut self.procs {
            if let Some(c) = p.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    p.child = None;
                    p.exits.push((self.launcher.started.elapsed(), status.to_string()));
                    eprintln!(
                        "[fault] {:>6.1}s {} exited on its own ({status}); restarting (log: {})",
                        self.launcher.started.elapsed().as_secs_f64(),
                        p.name,
                        p.log.display()
                    );
                    p.restart_at = Some(now + Duration::from_secs(1));
                    if p.exits.len() > CRASH_LOOP {
                        return Err(format!("{} is in a crash loop: {:?}", p.name, p.exits));
                    }
                }
            }
            if p.child.is_none() && p.restart_at.is_some_and(|t| now >= t) {
                p.restart_at = None;
                self.launcher.spawn(p);
            }
        }
        Ok(())
    }

    /// SIGKILL (no shutdown at all); [`Supervisor::tick`] starts it again
    /// after `restart_after` (an orchestrator's back-off: at once, or after
    /// the group has handed its partitions to the others).
    pub fn kill(&mut self, i: usize, restart_after: Duration) -> Option<u32> {
        let p = &mut self.procs[i];
        let pid = p.pid();
        if let Some(mut c) = p.child.take() {
            c.kill().expect("SIGKILL"); // std's kill is SIGKILL on Unix
            let _ = c.wait();
        }
        p.killed += 1;
        p.restart_at = Some(Instant::now() + restart_after);
        pid
    }

    /// SIGTERM to every process (a clean shutdown: flush, commit, leave the
    /// group), waiting up to `limit`; returns each slot's exit status.
    pub fn stop_all(&mut self, limit: Duration) -> Vec<(String, Option<ExitStatus>)> {
        for p in &self.procs {
            if let Some(pid) = p.pid() {
                let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
            }
        }
        let deadline = Instant::now() + limit;
        let mut out = Vec::new();
        for p in &mut self.procs {
            let Some(mut c) = p.child.take() else {
                out.push((p.name.clone(), None));
                continue;
            };
            let status = loop {
                match c.try_wait() {
                    Ok(Some(s)) => break Some(s),
                    _ if Instant::now() > deadline => {
                        let _ = c.kill();
                        let _ = c.wait();
                        break None;
                    }
                    _ => std::thread::sleep(Duration::from_millis(100)),
                }
            };
            out.push((p.name.clone(), status));
        }
        out
    }

    pub fn logs(&self) -> String {
        self.procs
            .iter()
            .map(|p| format!("  {}: {}", p.name, p.log.display()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        for p in &mut self.procs {
            if let Some(mut c) = p.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// What a tool run to its end printed on stdout (trimmed), or, when it
/// failed, `what` with everything it printed.
pub fn succeeded(what: &str, out: std::io::Result<std::process::Output>) -> Result<String, String> {
    let out = out.map_err(|e| format!("{what}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// A log file opened for appending, twice: a child's stdout and stderr.
pub fn log_pair(path: &Path) -> Result<(std::fs::File, std::fs::File), String> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let err = log.try_clone().map_err(|e| e.to_string())?;
    Ok((log, err))
}

/// Sends `signal` to the process group `pid` leads (a server started with
/// `process_group(0)`: its workers go with it, as in a crash of its host).
pub fn kill_group(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{signal}"), "--", &format!("-{pid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}
