//! The suite's Kafka and the faults done to it.
//!
//! By default the suite runs a **private** single-node broker (KRaft, the
//! same jars and `server.properties` template `deploy/local/services.sh`
//! uses) on free ports with its data under the test's temp dir. Restarting
//! it mid-run (SIGTERM, wait, start again on the same data: what
//! `services.sh restart-kafka` does) then disturbs no other test and no other
//! engineer's test run against the shared broker. `OPPTAK_FAULT_BROKER=shared`
//! uses the shared broker of `services.sh` instead and restarts it with
//! `services.sh restart-kafka` — only where nothing else uses it.
//!
//! With three brokers (`OPPTAK_FAULT_BROKERS=3`, and the cluster test) the
//! private Kafka is a cluster like `services.sh cluster`'s: three combined
//! KRaft nodes in one quorum (`server-cluster.properties.in`: replication 3,
//! `min.insync.replicas` 2), and the broker fault is [`PrivateBroker::leader_kills`].
//!
//! On hosts (the network scenarios, `hosts.rs`) each node runs in its own
//! network namespace, `kafka-1` ... `kafka-3`, listening and advertised on
//! that host's address: every client and every other node reaches it across
//! the bridge, so a partition or a delay of its link is seen by all of them.

use super::hosts::Hosts;
use crate::common::free_port;
use rdkafka::admin::{AdminClient, AdminOptions, ConfigSource, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

pub enum Broker {
    Private(PrivateBroker),
    /// The broker of `deploy/local/services.sh` (its bootstrap address).
    Shared(String),
}

impl Broker {
    /// The broker `OPPTAK_FAULT_BROKER` asks for (`private`, the default, or
    /// `shared`), with `nodes` brokers (1 or 3; private only for 3).
    pub fn from_env(dir: &Path, nodes: usize) -> Result<Self, String> {
        match std::env::var("OPPTAK_FAULT_BROKER").as_deref() {
            Ok("shared") if nodes == 1 => {
                let b = std::env::var("OPPTAK_TEST_KAFKA")
                    .map_err(|_| "OPPTAK_FAULT_BROKER=shared needs OPPTAK_TEST_KAFKA".to_string())?;
                Ok(Broker::Shared(b))
            }
            Ok("shared") => Err(format!(
                "OPPTAK_FAULT_BROKER=shared runs on one broker, not {nodes}: the cluster is always private"
            )),
            Ok("private") | Err(_) => Ok(Broker::Private(PrivateBroker::start(dir, nodes)?)),
            Ok(other) => Err(format!("OPPTAK_FAULT_BROKER={other}: expected private or shared")),
        }
    }

    pub fn bootstrap(&self) -> String {
        match self {
            Broker::Private(b) => b.bootstrap(),
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

    /// The private nodes' logs.
    pub fn logs(&self) -> Vec<&Path> {
        match self {
            Broker::Private(b) => b.nodes.iter().map(|n| n.log.as_path()).collect(),
            Broker::Shared(_) => Vec::new(),
        }
    }
}

/// One KRaft node (controller and broker in one process).
pub struct Node {
    pub id: i32,
    /// Where it listens: 127.0.0.1, or its host's address.
    pub host: String,
    /// Its host's network namespace, on hosts.
    pub netns: Option<String>,
    pub port: u16,
    conf: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
}

/// This test's own Kafka: one node, or three in one quorum.
pub struct PrivateBroker {
    java: PathBuf,
    lib: PathBuf,
    log4j: PathBuf,
    pub nodes: Vec<Node>,
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
    /// Formats and starts `count` nodes (1: the single broker's template
    /// and a quorum of one; 3: the cluster's), returning once all are ready.
    pub fn start(dir: &Path, count: usize) -> Result<Self, String> {
        Self::start_on(dir, count, None)
    }

    /// The host (name) of node `id` on hosts.
    pub fn host_name(id: i32) -> String {
        format!("kafka-{id}")
    }

    /// [`PrivateBroker::start`], on `hosts` when given: node N on host
    /// `kafka-N` (its address, ports 9092 and 9093).
    pub fn start_on(dir: &Path, count: usize, hosts: Option<&Hosts>) -> Result<Self, String> {
        if count != 1 && count != 3 {
            return Err(format!("{count} brokers: the suite runs 1 or 3"));
        }
        let lib = kafka_lib()?;
        let here = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/local/kafka");
        let template = if count == 1 {
            "server.properties.in"
        } else {
            "server-cluster.properties.in"
        };
        let template = std::fs::read_to_string(format!("{here}/{template}")).map_err(|e| e.to_string())?;
        let tools_log4j = format!("{here}/tools-log4j2.properties");
        let classpath = format!("{}/*", lib.display());
        let tool = |args: &[&str]| -> Result<String, String> {
            let out = Command::new(java())
                .args(["-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"])
                .arg(format!("-Dlog4j2.configurationFile={tools_log4j}"))
                .args(["-cp", &classpath, "kafka.tools.StorageTool"])
                .args(args)
                .output();
            super::procs::succeeded(&format!("StorageTool {args:?}"), out)
        };
        // (host, broker port, controller port, namespace) per node.
        let places: Vec<(String, u16, u16, Option<String>)> = (1..=count as i32)
            .map(|id| match hosts {
                Some(h) => {
                    let name = Self::host_name(id);
                    (h.addr(&name).to_owned(), 9092, 9093, Some(h.netns(&name)))
                }
                None => ("127.0.0.1".to_owned(), free_port(), free_port(), None),
            })
            .collect();
        let voters = (1..)
            .zip(&places)
            .map(|(id, (host, _, controller, _))| format!("{id}@{host}:{controller}"))
            .collect::<Vec<_>>()
            .join(",");
        let cluster = tool(&["random-uuid"])?;
        let mut nodes = Vec::new();
        for (id, (host, port, controller, netns)) in (1..).zip(places) {
            let root = if count == 1 {
                dir.join("kafka")
            } else {
                dir.join(format!("kafka-{id}"))
            };
            let data = root.join("data");
            std::fs::create_dir_all(&data).map_err(|e| e.to_string())?;
            let conf = root.join("server.properties");
            let text = template
                .replace("@HOST@", &host)
                .replace("@KAFKA_PORT@", &port.to_string())
                .replace("@CONTROLLER_PORT@", &controller.to_string())
                .replace("@DATA_DIR@", &data.display().to_string())
                .replace("@NODE_ID@", &id.to_string())
                .replace("@VOTERS@", &voters);
            std::fs::write(&conf, text).map_err(|e| e.to_string())?;
            let conf_arg = conf.display().to_string();
            let mut args: Vec<&str> = vec!["format", "-t", &cluster, "-c", &conf_arg];
            if count == 1 {
                args.push("--standalone");
            }
            tool(&args)?;
            nodes.push(Node {
                id,
                host,
                netns,
                port,
                conf,
                log: root.join("broker.log"),
                child: None,
            });
        }
        let mut b = Self {
            java: java(),
            lib,
            log4j: PathBuf::from(format!("{here}/log4j2.properties")),
            nodes,
        };
        // Together: a node of three is not ready before two voters are up.
        let before: Vec<usize> = b.nodes.iter().map(starts_logged).collect();
        for i in 0..b.nodes.len() {
            b.launch(i)?;
        }
        for (i, before) in before.into_iter().enumerate() {
            b.wait_ready(i, before, Duration::from_secs(120))?;
        }
        Ok(b)
    }

    pub fn bootstrap(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("{}:{}", n.host, n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn index(&self, id: i32) -> Result<usize, String> {
        self.nodes
            .iter()
            .position(|n| n.id == id)
            .ok_or_else(|| format!("no broker {id} in this cluster"))
    }

    fn launch(&mut self, i: usize) -> Result<(), String> {
        let node = &self.nodes[i];
        let (log, err) = super::procs::log_pair(&node.log)?;
        let mut cmd = match &node.netns {
            Some(ns) => {
                // `ip netns exec` execs java: the child's pid is the broker's.
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&self.java);
                c
            }
            None => Command::new(&self.java),
        };
        let child = cmd
            .args([
                "-Xms512m",
                "-Xmx512m",
                "-XX:+UseG1GC",
                "-XX:MaxGCPauseMillis=20",
                "-Djava.awt.headless=true",
            ])
            .arg(format!("-Dlog4j2.configurationFile={}", self.log4j.display()))
            .args(["-cp", &format!("{}/*", self.lib.display()), "kafka.Kafka"])
            .arg(&node.conf)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("starting broker {}: {e}", node.id))?;
        self.nodes[i].child = Some(child);
        Ok(())
    }

    /// Ready once this run of the node logged its start (one more start
    /// line than `before`) and its port answers.
    fn wait_ready(&mut self, i: usize, before: usize, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        let node = &mut self.nodes[i];
        loop {
            if starts_logged(node) > before && std::net::TcpStream::connect((node.host.as_str(), node.port)).is_ok() {
                return Ok(());
            }
            if let Some(c) = node.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    return Err(format!(
                        "broker {} exited at start ({status}); log: {}",
                        node.id,
                        node.log.display()
                    ));
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "broker {} is not ready after {limit:?}; log: {}",
                    node.id,
                    node.log.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Starts node `i` on its data and waits until it is ready.
    fn start_node(&mut self, i: usize) -> Result<(), String> {
        let before = starts_logged(&self.nodes[i]);
        self.launch(i)?;
        self.wait_ready(i, before, Duration::from_secs(120))
    }

    /// SIGTERM (a controlled shutdown), up to 30 s, then SIGKILL.
    fn stop(&mut self) {
        let children: Vec<Child> = self.nodes.iter_mut().filter_map(|n| n.child.take()).collect();
        for c in &children {
            let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        for mut c in children {
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            if !matches!(c.try_wait(), Ok(Some(_))) {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }

    /// SIGKILL of node `i` (no shutdown at all); its pid.
    fn kill(&mut self, i: usize) -> Option<u32> {
        let mut c = self.nodes[i].child.take()?;
        let pid = c.id();
        c.kill().ok()?; // std's kill is SIGKILL on Unix
        let _ = c.wait();
        Some(pid)
    }

    /// Stops every node, keeps them down for `down` more, starts them again.
    pub fn restart(&mut self, down: Duration) -> Result<Duration, String> {
        let t = Instant::now();
        self.stop();
        std::thread::sleep(down);
        let before: Vec<usize> = self.nodes.iter().map(starts_logged).collect();
        for i in 0..self.nodes.len() {
            self.launch(i)?;
        }
        for (i, before) in before.into_iter().enumerate() {
            self.wait_ready(i, before, Duration::from_secs(120))?;
        }
        Ok(t.elapsed())
    }

    /// The cluster's broker fault: SIGKILL the leader of the busiest
    /// partition of `topic` (the highest end offset), start it again after
    /// `downs[0]` and wait until it is back in the in-sync replicas of every
    /// partition; then the same for a second broker — the partition's leader
    /// by then (another broker took over) — kept down `downs[1]`. Each step
    /// goes to `note` as it happens.
    pub fn leader_kills(&mut self, topic: &str, downs: [Duration; 2], note: &Sender<String>) -> Result<(), String> {
        let bootstrap = self.bootstrap();
        let admin = admin(&bootstrap)?;
        let (partition, first) = busiest_partition(&bootstrap, topic)?;
        let mut killed = Vec::new();
        for (round, down) in downs.into_iter().enumerate() {
            let victim = if round == 0 {
                first
            } else {
                let leader = leader_of(&admin, topic, partition)?;
                if killed.contains(&leader) {
                    // The returned broker leads again: any other one.
                    self.nodes
                        .iter()
                        .map(|n| n.id)
                        .find(|id| !killed.contains(id))
                        .unwrap_or(leader)
                } else {
                    leader
                }
            };
            let i = self.index(victim)?;
            let t = Instant::now();
            let pid = self.kill(i).ok_or_else(|| format!("broker {victim} was not running"))?;
            let _ = note.send(format!(
                "SIGKILL broker {victim} (pid {pid}, {} of {topic} partition {partition}), restarted after {:.1} s",
                if round == 0 { "leader" } else { "now the leader" },
                down.as_secs_f64()
            ));
            killed.push(victim);
            std::thread::sleep(down);
            self.start_node(i)?;
            let ready = t.elapsed();
            let in_sync = wait_in_sync(&admin, victim, Duration::from_secs(180))?;
            let _ = note.send(format!(
                "broker {victim} back: ready {:.1} s after its kill, in every in-sync replica set {:.1} s later",
                ready.as_secs_f64(),
                in_sync.as_secs_f64()
            ));
        }
        Ok(())
    }
}

impl PrivateBroker {
    /// The network scenario on hosts: the leader of the busiest partition of
    /// `topic` cut off from every other host (its link down) for `cut`, then
    /// healed; returns once it is back in the in-sync replicas of every
    /// partition it holds. Each step goes to `note` as it happens.
    pub fn partition_leader(
        &self,
        hosts: &Hosts,
        topic: &str,
        cut: Duration,
        note: &Sender<String>,
    ) -> Result<(), String> {
        let bootstrap = self.bootstrap();
        let admin = admin(&bootstrap)?;
        let (partition, victim) = busiest_partition(&bootstrap, topic)?;
        let host = Self::host_name(victim);
        let t = Instant::now();
        hosts.partition(&host)?;
        let _ = note.send(format!(
            "broker {victim} ({host}, leader of {topic} partition {partition}) cut off for {:.0} s",
            cut.as_secs_f64()
        ));
        // Who leads meanwhile, as the other brokers tell it.
        let deadline = t + cut;
        while Instant::now() < deadline {
            match leader_of(&admin, topic, partition) {
                Ok(l) if l != victim => {
                    let _ = note.send(format!(
                        "{topic} partition {partition} led by broker {l} {:.1} s after the cut",
                        t.elapsed().as_secs_f64()
                    ));
                    break;
                }
                _ => std::thread::sleep(Duration::from_millis(500)),
            }
        }
        std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
        hosts.heal(&host)?;
        let in_sync = wait_in_sync(&admin, victim, Duration::from_secs(180))?;
        let _ = note.send(format!(
            "broker {victim} healed after {:.1} s, back in every in-sync replica set {:.1} s later",
            cut.as_secs_f64(),
            in_sync.as_secs_f64()
        ));
        Ok(())
    }
}

fn starts_logged(node: &Node) -> usize {
    std::fs::read_to_string(&node.log)
        .map(|t| t.matches("Kafka Server started").count())
        .unwrap_or(0)
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An admin client of the cluster (metadata, watermarks, topic configs).
pub fn admin(bootstrap: &str) -> Result<AdminClient<DefaultClientContext>, String> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("allow.auto.create.topics", "false")
        .create()
        .map_err(|e| format!("kafka admin client: {e}"))
}

const ASK: Duration = Duration::from_secs(10);

/// The partition of `topic` with the highest end offset, and its leader.
fn busiest_partition(bootstrap: &str, topic: &str) -> Result<(i32, i32), String> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    // A consumer's handle (no group): what asks for end offsets elsewhere too.
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .map_err(|e| format!("kafka consumer: {e}"))?;
    let md = c
        .fetch_metadata(Some(topic), ASK)
        .map_err(|e| format!("metadata of {topic}: {e}"))?;
    let t = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .ok_or_else(|| format!("no topic {topic} in the metadata"))?;
    let mut best: Option<(i64, i32, i32)> = None;
    for p in t.partitions() {
        let (_, high) = c
            .fetch_watermarks(topic, p.id(), ASK)
            .map_err(|e| format!("end offset of {topic}/{}: {e}", p.id()))?;
        if best.is_none_or(|(h, _, _)| high > h) {
            best = Some((high, p.id(), p.leader()));
        }
    }
    let (_, partition, leader) = best.ok_or_else(|| format!("{topic} has no partitions"))?;
    if leader < 0 {
        return Err(format!("{topic}/{partition} has no leader"));
    }
    Ok((partition, leader))
}

fn leader_of(admin: &AdminClient<DefaultClientContext>, topic: &str, partition: i32) -> Result<i32, String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let md = admin
            .inner()
            .fetch_metadata(Some(topic), ASK)
            .map_err(|e| format!("metadata of {topic}: {e}"))?;
        let leader = md
            .topics()
            .iter()
            .filter(|t| t.name() == topic)
            .flat_map(|t| t.partitions())
            .find(|p| p.id() == partition)
            .map_or(-1, |p| p.leader());
        if leader >= 0 {
            return Ok(leader);
        }
        if Instant::now() > deadline {
            return Err(format!("{topic}/{partition} without a leader for a minute"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until broker `id` is in the in-sync replicas of every partition it
/// holds, of every topic (the run's and `__consumer_offsets`); how long.
fn wait_in_sync(admin: &AdminClient<DefaultClientContext>, id: i32, limit: Duration) -> Result<Duration, String> {
    let t = Instant::now();
    loop {
        let behind: Vec<String> = match admin.inner().fetch_metadata(None, ASK) {
            Ok(md) => md
                .topics()
                .iter()
                .flat_map(|t| {
                    t.partitions()
                        .iter()
                        .filter(|p| p.replicas().contains(&id) && !p.isr().contains(&id))
                        .map(move |p| format!("{}/{}", t.name(), p.id()))
                })
                .collect(),
            Err(e) => vec![format!("no metadata: {e}")],
        };
        if behind.is_empty() {
            return Ok(t.elapsed());
        }
        if t.elapsed() > limit {
            return Err(format!(
                "broker {id} not back in sync after {limit:?}: {} partitions behind, e.g. {:?}",
                behind.len(),
                &behind[..behind.len().min(5)]
            ));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// How `topic` is replicated: the fewest and most replicas of any of its
/// partitions, and its `min.insync.replicas` if set on the topic itself
/// (not inherited from the broker).
pub async fn replication_of(
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
) -> Result<(usize, usize, Option<String>), String> {
    // A topic just created reaches every broker's metadata a moment later.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (min, max) = loop {
        let md = admin
            .inner()
            .fetch_metadata(Some(topic), ASK)
            .map_err(|e| format!("metadata of {topic}: {e}"))?;
        let counts: Vec<usize> = md
            .topics()
            .iter()
            .filter(|t| t.name() == topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.replicas().len()))
            .collect();
        if let (Some(&min), Some(&max)) = (counts.iter().min(), counts.iter().max()) {
            break (min, max);
        }
        if Instant::now() > deadline {
            return Err(format!("no partitions of {topic} in the metadata after 30 s"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let opts = AdminOptions::new().request_timeout(Some(ASK));
    let configs = admin
        .describe_configs([&ResourceSpecifier::Topic(topic)], &opts)
        .await
        .map_err(|e| format!("configs of {topic}: {e}"))?;
    let resource = configs
        .into_iter()
        .next()
        .ok_or_else(|| format!("no configs of {topic}"))?
        .map_err(|code| format!("configs of {topic}: {code}"))?;
    let min_isr = resource
        .get("min.insync.replicas")
        .filter(|e| e.source == ConfigSource::DynamicTopic)
        .and_then(|e| e.value.clone());
    Ok((min, max, min_isr))
}
