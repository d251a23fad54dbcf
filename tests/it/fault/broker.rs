//! The suite's Kafka broker and how it is restarted.
//!
//! By default the suite runs a **private** single-node broker (KRaft, the
//! same jars and `server.properties` template `deploy/local/services.sh`
//! uses) on free ports with its data under the test's temp dir. Restarting
//! it mid-run (SIGTERM, wait, start again on the same data: what
//! `services.sh restart-kafka` does) then disturbs no other test and no other
//! engineer's test run against the shared broker. `OPPTAK_FAULT_BROKER=shared`
//! uses the shared broker of `services.sh` instead and restarts it with
//! `services.sh restart-kafka` — only where nothing else uses it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub enum Broker {
    Private(PrivateBroker),
    /// The broker of `deploy/local/services.sh` (its bootstrap address).
    Shared(String),
}

impl Broker {
    /// The broker `OPPTAK_FAULT_BROKER` asks for (`private`, the default, or `shared`).
    pub fn from_env(dir: &Path) -> Result<Self, String> {
        match std::env::var("OPPTAK_FAULT_BROKER").as_deref() {
            Ok("shared") => {
                let b = std::env::var("OPPTAK_TEST_KAFKA")
                    .map_err(|_| "OPPTAK_FAULT_BROKER=shared needs OPPTAK_TEST_KAFKA".to_string())?;
                Ok(Broker::Shared(b))
            }
            Ok("private") | Err(_) => Ok(Broker::Private(PrivateBroker::start(dir)?)),
            Ok(other) => Err(format!("OPPTAK_FAULT_BROKER={other}: expected private or shared")),
        }
    }

    pub fn bootstrap(&self) -> String {
        match self {
            Broker::Private(b) => format!("127.0.0.1:{}", b.port),
            Broker::Shared(b) => b.clone(),
        }
    }

    /// Stops the broker cleanly and starts it again on the same data, after
    /// `down` (private broker only); returns how long it was unreachable.
    pub fn restart(&mut self, down: Duration) -> Result<Duration, String> {
        match self {
            Broker::Private(b) => b.restart(down),
            Broker::Shared(_) => {
                let t = Instant::now();
                let script = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/local/services.sh");
                let out = Command::new("bash")
                    .arg(script)
                    .arg("restart-kafka")
                    .output()
                    .map_err(|e| format!("services.sh restart-kafka: {e}"))?;
                if !out.status.success() {
                    return Err(format!(
                        "services.sh restart-kafka failed: {}",
                        String::from_utf8_lossy(&out.stderr)
                    ));
                }
                Ok(t.elapsed())
            }
        }
    }

    pub fn log(&self) -> Option<&Path> {
        match self {
            Broker::Private(b) => Some(&b.log),
            Broker::Shared(_) => None,
        }
    }
}

/// A single-node KRaft broker of this test's own.
pub struct PrivateBroker {
    java: PathBuf,
    lib: PathBuf,
    conf: PathBuf,
    log4j: PathBuf,
    pub log: PathBuf,
    pub port: u16,
    child: Option<Child>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free local port")
}

/// The broker jars `services.sh install` resolved: next to the shared
/// broker's data dir, or under `OPPTAK_SERVICES_DIR` / `~/.cache/opptak-services`.
fn kafka_lib() -> Result<PathBuf, String> {
    let mut candidates = Vec::new();
    if let Ok(data) = std::env::var("OPPTAK_TEST_KAFKA_DATA") {
        if let Some(parent) = Path::new(&data).parent() {
            candidates.push(parent.join("lib"));
        }
    }
    if let Ok(dir) = std::env::var("OPPTAK_SERVICES_DIR") {
        candidates.push(Path::new(&dir).join("kafka/lib"));
    }
    if let Ok(home) = std::env::var("HOME") {
        candidates.push(Path::new(&home).join(".cache/opptak-services/kafka/lib"));
    }
    candidates
        .into_iter()
        .find(|d| {
            std::fs::read_dir(d).is_ok_and(|rd| {
                rd.flatten()
                    .any(|e| e.file_name().to_string_lossy().starts_with("kafka_2.13-"))
            })
        })
        .ok_or_else(|| "no Kafka jars found: run deploy/local/services.sh install".to_string())
}

fn java() -> PathBuf {
    match std::env::var("JAVA_HOME") {
        Ok(h) if Path::new(&h).join("bin/java").exists() => Path::new(&h).join("bin/java"),
        _ => PathBuf::from("java"),
    }
}

impl PrivateBroker {
    pub fn start(dir: &Path) -> Result<Self, String> {
        let lib = kafka_lib()?;
        let root = dir.join("kafka");
        let data = root.join("data");
        std::fs::create_dir_all(&data).map_err(|e| e.to_string())?;
        let port = free_port();
        let controller = free_port();
        let here = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/local/kafka");
        let template = std::fs::read_to_string(format!("{here}/server.properties.in")).map_err(|e| e.to_string())?;
        let conf = root.join("server.properties");
        let text = template
            .replace("@KAFKA_PORT@", &port.to_string())
            .replace("@CONTROLLER_PORT@", &controller.to_string())
            .replace("@DATA_DIR@", &data.display().to_string());
        std::fs::write(&conf, text).map_err(|e| e.to_string())?;
        let log4j = PathBuf::from(format!("{here}/log4j2.properties"));
        let tools_log4j = format!("{here}/tools-log4j2.properties");
        let classpath = format!("{}/*", lib.display());
        let tool = |args: &[&str]| -> Result<String, String> {
            let out = Command::new(java())
                .args(["-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"])
                .arg(format!("-Dlog4j2.configurationFile={tools_log4j}"))
                .args(["-cp", &classpath, "kafka.tools.StorageTool"])
                .args(args)
                .output()
                .map_err(|e| format!("java: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "StorageTool {args:?}: {}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        };
        let cluster = tool(&["random-uuid"])?;
        tool(&[
            "format",
            "-t",
            &cluster,
            "-c",
            &conf.display().to_string(),
            "--standalone",
        ])?;
        let mut b = Self {
            java: java(),
            lib,
            conf,
            log4j,
            log: root.join("broker.log"),
            port,
            child: None,
        };
        b.launch()?;
        Ok(b)
    }

    fn starts_logged(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .map(|t| t.matches("Kafka Server started").count())
            .unwrap_or(0)
    }

    fn launch(&mut self) -> Result<(), String> {
        let before = self.starts_logged();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| e.to_string())?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(&self.java)
            .args([
                "-Xms512m",
                "-Xmx512m",
                "-XX:+UseG1GC",
                "-XX:MaxGCPauseMillis=20",
                "-Djava.awt.headless=true",
            ])
            .arg(format!("-Dlog4j2.configurationFile={}", self.log4j.display()))
            .args(["-cp", &format!("{}/*", self.lib.display()), "kafka.Kafka"])
            .arg(&self.conf)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("starting the broker: {e}"))?;
        self.child = Some(child);
        self.wait_ready(before, Duration::from_secs(120))
    }

    /// Ready once this run of the broker logged its start (one more start
    /// line than `before`) and the port answers.
    fn wait_ready(&mut self, before: usize, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        loop {
            if self.starts_logged() > before && std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    return Err(format!(
                        "the broker exited at start ({status}); log: {}",
                        self.log.display()
                    ));
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the broker is not ready after {limit:?}; log: {}",
                    self.log.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// SIGTERM (a controlled shutdown), up to 30 s, then SIGKILL.
    fn stop(&mut self) {
        let Some(mut c) = self.child.take() else { return };
        let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = c.kill();
        let _ = c.wait();
    }

    /// Stops the broker, keeps it down for `down` more, starts it again.
    pub fn restart(&mut self, down: Duration) -> Result<Duration, String> {
        let t = Instant::now();
        self.stop();
        std::thread::sleep(down);
        self.launch()?;
        Ok(t.elapsed())
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        self.stop();
    }
}
