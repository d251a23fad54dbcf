//! The fault-tolerance suite (issue 7), in the spirit of Kafka's own
//! transaction system tests and Jepsen's checks: concurrent calls through 3
//! recorder processes and 2 transcriber processes (which also summarize) on
//! one broker, while a random opptak process is SIGKILLed three times (each
//! after at least 20% more of the audio was acknowledged) and the broker is
//! restarted once. At the end every acknowledged chunk is looked for in what
//! was stored: lost = duplicate = unseen = 0, per-call order preserved, every
//! KI call transcribed and drafted, every opt-out honoured. See
//! `tests/it/fault/check.rs` for the categories and docs/fault-tolerance.md for
//! the sizes, knobs and results.
//!
//! Real processes (`opptak --config FILE run --roles ...`), a real broker,
//! PostgreSQL and the speech server. The broker is this test's own
//! (`tests/it/fault/broker.rs`): restarting it disturbs no other test.
//!
//! Size: `OPPTAK_FAULT_CALLS` (default 36, the CI size) calls of
//! `OPPTAK_FAULT_SECONDS` (30) each, at `OPPTAK_FAULT_PACE` (1.0) times real
//! time; `OPPTAK_FAULT_SEED` replays a run's random choices. Full size:
//!
//! ```sh
//! OPPTAK_FAULT_CALLS=200 cargo test --release --test it fault::kills -- --nocapture
//! ```
//!
//! On three brokers (`OPPTAK_FAULT_BROKERS=3`, and the CI-sized
//! `leader_kills_on_three_brokers_lose_and_duplicate_nothing`: 12 calls of
//! 60 s) the Kafka is a private three-node cluster and the broker fault is
//! a SIGKILL of the leader of the telephony topic's busiest partition, then,
//! once it is back in sync, of a second broker; the process kills go on
//! meanwhile.
//!
//! `postgres_failover_loses_and_duplicates_nothing` (CI size 8 calls of
//! 40 s) keeps the metadata in a private PostgreSQL primary with a
//! synchronous standby (`tests/it/fault/pg.rs`), opened by every process
//! with the multi-host URL; mid-run the primary is SIGKILLed (its whole
//! process group: a host crash) and, `OPPTAK_FAULT_PG_DOWN_MS` later
//! (default 1–8 s at random), the standby promoted. No process is killed
//! and the broker stays up: every role must ride the failover out in its
//! process, so none may exit on its own.
//!
//! The network scenarios (issue 20) run on **hosts** (`tests/it/fault/hosts.rs`,
//! `deploy/local/hosts.sh`): the three brokers, the five opptak processes and
//! the telephony side each in its own network namespace, joined by a bridge,
//! the test process, PostgreSQL and the speech server in the root namespace.
//! Instead of the kills, one network fault (`Fault`) falls inside the calls,
//! lasting `OPPTAK_FAULT_NET_S`: the busiest partition's leader broker cut
//! off, then healed (`broker_partition_on_hosts_loses_and_duplicates_nothing`,
//! in CI at 25 s); 200 ms each way and 1% loss between every recorder and
//! every broker (`slow_links_on_hosts_lose_and_duplicate_nothing`, 120 s);
//! a whole recorder host cut off from everything
//! (`recorder_host_isolated_loses_and_duplicates_nothing`, 90 s). They need
//! root and `ip` (skipped otherwise, failed with `OPPTAK_REQUIRE_SERVICES=1`).

use crate::common;
#[allow(unreachable_pub)]
pub(crate) mod broker;
#[allow(unreachable_pub)]
mod check;
#[allow(unreachable_pub)]
mod hosts;
#[allow(unreachable_pub)]
mod minio;
#[allow(unreachable_pub)]
pub(crate) mod pg;
#[allow(unreachable_pub)]
mod procs;
#[allow(unreachable_pub)]
mod workload;

use broker::{Broker, PrivateBroker};
use check::{CallReport, Tally};
use opptak::app::Edges;
use opptak::config::Config;
use procs::{Launcher, Proc, Supervisor};
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use workload::Telephony;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v.parse().unwrap_or_else(|_| panic!("{name}={v}: not a valid value")),
        Err(_) => default,
    }
}

fn speech_url() -> Option<String> {
    match std::env::var("OPPTAK_TEST_SPEECH_URL") {
        Ok(u) => Some(u),
        Err(_) => {
            assert_ne!(
                std::env::var("OPPTAK_REQUIRE_SERVICES").as_deref(),
                Ok("1"),
                "OPPTAK_TEST_SPEECH_URL not set (deploy/local/services.sh start-speech)"
            );
            eprintln!("skipping: no speech server (deploy/local/services.sh start-speech)");
            None
        }
    }
}

use common::free_port;

/// The one configuration file every process reads.
fn write_config(dir: &Path, bootstrap: &str, prefix: &str, postgres: &str, speech: &str, blobs: &str) -> PathBuf {
    let d = dir.display();
    // On hosts the speech server is the bridge's address, not loopback: one
    // of the bank's own model servers (R13).
    let model_hosts = speech
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .filter(|h| *h != "127.0.0.1" && *h != "localhost")
        .unwrap_or_default();
    let text = format!(
        r#"# opptak configuration of one fault-suite run (tests/it/fault.rs)
[bus]
url = "kafka://{bootstrap}"
topic_prefix = "{prefix}."
partitions = 12

[storage]
blobs = "{blobs}"
metadata = "{postgres}"
archive = "file://{d}/archive"

[keys]
keyring = "{d}/keyring.json"

[recorder]
group = "{prefix}-recorder"
# A finished recording whose recorder was killed before compacting it is
# picked up by the sweep (30 s in production): sooner here, to drain faster.
compact_sweep_s = 5

[ki]
asr_url = "{speech}"
model_hosts = "{model_hosts}"
transcriber_group = "{prefix}-transcriber"
live_group = "{prefix}-live"
summarizer_group = "{prefix}-summarizer"
"#
    );
    let path = dir.join("opptak.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// One fault suite at a time: two at once on two cores would only measure
/// each other.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A fault done: when, at what progress, what, and how it went.
struct Done {
    at: Duration,
    progress: f64,
    what: String,
}

impl Done {
    /// `what` was done now, at `progress`: also logged as it happens.
    fn now(started: Instant, progress: f64, what: String) -> Self {
        let at = started.elapsed();
        eprintln!(
            "[fault] {:>6.1}s progress {:>5.1}%: {what}",
            at.as_secs_f64(),
            progress * 100.0
        );
        Done { at, progress, what }
    }
}

/// What the run does to the system while the calls play.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// Three SIGKILLs of opptak processes and a broker restart (one
    /// broker) or two leader kills (three).
    Kills,
    /// The metadata store's PostgreSQL primary SIGKILLed and its standby
    /// promoted; nothing else.
    PostgresFailover,
    /// The hot store (`storage.blobs`) on a private MinIO, SIGKILLed and
    /// started again on its data; nothing else.
    MinioRestart,
    /// On hosts: the leader broker of the telephony topic's busiest
    /// partition cut off from every host, then healed.
    BrokerPartition,
    /// On hosts: every packet between each recorder and each broker delayed
    /// (`OPPTAK_FAULT_DELAY_MS`, 200, each way) and lost
    /// (`OPPTAK_FAULT_LOSS_PCT`, 1%, each way).
    SlowLinks,
    /// On hosts: one recorder's host cut off from everything (brokers,
    /// PostgreSQL, the other hosts), its calls taken over by the other
    /// recorders, then back.
    RecorderIsolated,
}

impl Fault {
    fn on_hosts(self) -> bool {
        matches!(
            self,
            Fault::BrokerPartition | Fault::SlowLinks | Fault::RecorderIsolated
        )
    }

    /// How long the network fault lasts by default.
    fn default_secs(self) -> u64 {
        match self {
            Fault::Kills | Fault::PostgresFailover | Fault::MinioRestart => 0,
            Fault::BrokerPartition => 25,
            Fault::SlowLinks => 120,
            Fault::RecorderIsolated => 90,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kills_and_a_broker_restart_lose_and_duplicate_nothing() {
    suite(Fault::Kills, env_or("OPPTAK_FAULT_BROKERS", 1), 36, 30.0).await;
}

/// The cluster scenario at CI size (fewer, longer calls: the two broker
/// kills, each with its restart and catch-up, fall inside the calls).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_kills_on_three_brokers_lose_and_duplicate_nothing() {
    suite(Fault::Kills, 3, 12, 60.0).await;
}

/// Issue 20's "PostgreSQL primary killed and the standby promoted", at CI size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_failover_loses_and_duplicates_nothing() {
    suite(Fault::PostgresFailover, env_or("OPPTAK_FAULT_BROKERS", 1), 8, 40.0).await;
}

/// Issue 20's "MinIO restarted mid-run", at CI size: every object of every
/// process in the private MinIO's bucket, the server SIGKILLed and started
/// again on its data `OPPTAK_FAULT_MINIO_DOWN_MS` later (1–8 s at random).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minio_restart_loses_and_duplicates_nothing() {
    suite(Fault::MinioRestart, env_or("OPPTAK_FAULT_BROKERS", 1), 8, 40.0).await;
}

/// A network partition isolating the busiest partition's leader broker, at
/// CI size: 12 calls of 60 s, cut off for `OPPTAK_FAULT_NET_S` (25 s; the
/// issue's full size is 60 s with longer calls: docs/fault-tolerance.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_partition_on_hosts_loses_and_duplicates_nothing() {
    suite(Fault::BrokerPartition, 3, 12, 60.0).await;
}

/// 200 ms each way and 1% loss between the recorders and the brokers for
/// two minutes (`OPPTAK_FAULT_NET_S`), inside calls of three minutes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "network scenario of several minutes; run by hand (docs/fault-tolerance.md)"]
async fn slow_links_on_hosts_lose_and_duplicate_nothing() {
    suite(Fault::SlowLinks, 3, 24, 180.0).await;
}

/// A recorder host cut off from everything for 90 s (`OPPTAK_FAULT_NET_S`),
/// inside calls of two and a half minutes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "network scenario of several minutes; run by hand (docs/fault-tolerance.md)"]
async fn recorder_host_isolated_loses_and_duplicates_nothing() {
    suite(Fault::RecorderIsolated, 3, 24, 150.0).await;
}

/// One run: `fault`, `brokers` private brokers (1: a SIGTERM restart of
/// the broker; 3: the leader kills), `OPPTAK_FAULT_CALLS` calls (default
/// `calls`) of `OPPTAK_FAULT_SECONDS` (default `seconds`); on hosts for the
/// network faults, which replace the kills.
async fn suite(fault: Fault, brokers: usize, calls: usize, seconds: f64) {
    let pg_failover = fault == Fault::PostgresFailover;
    let minio_restart = fault == Fault::MinioRestart;
    let needs = match fault {
        Fault::PostgresFailover => pg::PgPair::available(),
        Fault::MinioRestart => minio::PrivateMinio::available(),
        _ => Ok(()),
    };
    if let Err(why) = needs {
        let _: Option<()> = common::skip(&why);
        return;
    }
    let Some(speech) = speech_url() else { return };
    if fault.on_hosts() {
        if let Some(why) = hosts::unavailable() {
            let _: Option<()> = common::skip(&why);
            return;
        }
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let shared_db = if pg_failover {
        None
    } else {
        let Some(db) = common::postgres_db("fault").await else {
            return;
        };
        Some(db)
    };
    let cluster = brokers > 1;
    let calls_n: usize = env_or("OPPTAK_FAULT_CALLS", calls);
    let seconds: f64 = env_or("OPPTAK_FAULT_SECONDS", seconds);
    let pace: f64 = env_or("OPPTAK_FAULT_PACE", 1.0);
    let seed: u64 = env_or("OPPTAK_FAULT_SEED", rand::random::<u64>() % 1_000_000);
    // Extra seconds the broker stays down at its restart: beyond the
    // producers' delivery timeout (30 s) publishes fail and are retried.
    let broker_down = Duration::from_secs(env_or("OPPTAK_FAULT_BROKER_DOWN_S", 0));
    let net_fault = Duration::from_secs(env_or("OPPTAK_FAULT_NET_S", fault.default_secs()));
    let started = Instant::now();
    let prefix = common::unique("fault");
    // Kept on failure (the logs), removed after a passing run.
    let dir = std::env::temp_dir().join(format!("opptak-{prefix}"));
    std::fs::create_dir_all(&dir).unwrap();
    eprintln!(
        "[fault] {calls_n} calls of {seconds} s at {pace}x real time, {brokers} broker(s), {fault:?}{}, seed {seed} \
         (OPPTAK_FAULT_SEED={seed} replays the choices); files in {}",
        if fault.on_hosts() {
            format!(" for {} s on hosts", net_fault.as_secs())
        } else if pg_failover {
            ", postgres primary and standby".to_string()
        } else if minio_restart {
            ", the hot store on a private minio".to_string()
        } else {
            String::new()
        },
        dir.display()
    );
    // The metadata store: a database of the shared PostgreSQL, or the
    // private pair whose primary the run kills.
    let mut pg_pair = None;
    let postgres = match &shared_db {
        Some(db) => db.clone(),
        None => {
            use std::os::unix::fs::PermissionsExt;
            // PostgreSQL runs as its own user below this directory.
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
            let pg_dir = dir.clone();
            let pair = tokio::task::spawn_blocking(move || pg::PgPair::start(&pg_dir))
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("postgres pair: {e}"));
            let url = pair.url();
            pg_pair = Some(pair);
            url
        }
    };

    // The hot store: files, or a bucket on the private MinIO the run restarts.
    let mut minio = None;
    let blobs = if minio_restart {
        let minio_dir = dir.clone();
        let m = tokio::task::spawn_blocking(move || minio::PrivateMinio::start(&minio_dir))
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("minio: {e}"));
        let url = format!("s3://opptak-fault/{prefix}?endpoint={}&region=us-east-1", m.endpoint());
        minio = Some(m);
        url
    } else {
        format!("file://{}/blobs", dir.display())
    };
    let s3_creds = || opptak_store::s3::S3Credentials::new(minio::USER.to_owned(), minio::PASSWORD.to_owned());

    // On hosts: every broker, process and the telephony side on its own;
    // PostgreSQL and the speech server reached through the bridge.
    let names: Vec<String> = (1..=brokers as i32)
        .map(PrivateBroker::host_name)
        .chain(PROCS.iter().map(|(n, _)| n.to_string()))
        .chain(["loadgen".to_string()])
        .collect();
    let hosts = if fault.on_hosts() {
        let names = names.clone();
        let h = tokio::task::spawn_blocking(move || {
            hosts::Hosts::up(&names.iter().map(String::as_str).collect::<Vec<_>>())
        })
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("hosts: {e}"));
        Some(Arc::new(h))
    } else {
        None
    };
    let (postgres_at, speech_at) = match &hosts {
        Some(h) => (
            h.reach(&postgres).unwrap_or_else(|e| panic!("{e}")),
            h.reach(&speech).unwrap_or_else(|e| panic!("{e}")),
        ),
        None => (postgres.clone(), speech.clone()),
    };

    let broker_dir = dir.clone();
    let broker_hosts = hosts.clone();
    let broker = tokio::task::spawn_blocking(move || match broker_hosts {
        Some(h) => PrivateBroker::start_on(&broker_dir, brokers, Some(h.as_ref())).map(Broker::Private),
        None => Broker::from_env(&broker_dir, brokers),
    })
    .await
    .unwrap()
    .unwrap_or_else(|e| panic!("broker: {e}"));
    let config_path = write_config(&dir, &broker.bootstrap(), &prefix, &postgres_at, &speech_at, &blobs);
    // Lent to the restart task while it runs.
    let mut broker = Some(broker);
    // Opened here first: migrations, topics and the keyring exist before
    // five processes race to create them.
    let config = Config::load_from(Some(&config_path), &[]).unwrap();
    let edges = if minio_restart {
        let hot = opptak_store::s3::S3BlobStore::open(&config.storage.blobs, s3_creds()).unwrap();
        hot.create_bucket().await.unwrap();
        Edges::open_with_hot(config.clone(), Arc::new(hot)).await.unwrap()
    } else {
        Edges::open(config.clone()).await.unwrap()
    };
    edges.create_topics().await.unwrap();
    let topic = config.recorder_config().topics.telephony;
    if cluster {
        // bus.replication and bus.min_insync_replicas are "auto": what
        // opptak created on three brokers has three replicas and needs two
        // in sync (set on the topic, not inherited from the broker).
        let admin = broker::admin(&broker.as_ref().unwrap().bootstrap()).unwrap();
        let policy = config.policy().unwrap();
        for spec in opptak::topics::specs_for_roles(&config, &policy, &["recorder"]) {
            let (least, most, min_isr) = broker::replication_of(&admin, &spec.name).await.unwrap();
            assert_eq!(
                (least, most, min_isr.as_deref()),
                (3, 3, Some("2")),
                "{}: replicas (fewest, most) and min.insync.replicas as opptak created it",
                spec.name
            );
        }
    }
    // Each process its own metrics port, where the telemetry section exists.
    let telemetry = Config::load_from(
        Some(&config_path),
        &[("OPPTAK__TELEMETRY__LISTEN".into(), "127.0.0.1:0".into())],
    )
    .is_ok();
    let mut sup = Supervisor {
        launcher: Launcher {
            config: config_path.clone(),
            env: Box::new(move |_| {
                let mut env = Vec::new();
                if telemetry {
                    env.push(("OPPTAK__TELEMETRY__LISTEN".into(), format!("127.0.0.1:{}", free_port())));
                }
                if minio_restart {
                    env.push(("OPPTAK_S3_ACCESS_KEY".into(), minio::USER.into()));
                    env.push(("OPPTAK_S3_SECRET_KEY".into(), minio::PASSWORD.into()));
                }
                env
            }),
            started,
            hosts: hosts.clone(),
        },
        procs: PROCS.iter().map(|(name, roles)| Proc::new(name, roles, &dir)).collect(),
    };
    sup.start_all();

    let calls = workload::plan(&prefix, calls_n, seconds, seed);
    // On hosts the telephony side's producer lives on its own host.
    let telephony_bus: Arc<dyn opptak_bus::Bus> = match &hosts {
        Some(h) => {
            let (bootstrap, opts) = (broker.as_ref().unwrap().bootstrap(), config.kafka_options().unwrap());
            let bus = h
                .within("loadgen", move || opptak_bus::kafka::KafkaBus::new(&bootstrap, opts))
                .and_then(|b| b.map_err(|e| e.to_string()))
                .unwrap_or_else(|e| panic!("the load generator's producer: {e}"));
            Arc::new(bus)
        }
        None => edges.bus.clone(),
    };
    let tel = Telephony::start(telephony_bus, topic.clone(), &calls, pace, Duration::from_secs(600));

    // The fault schedule: kills after 20–25% more progress each; the first
    // two hit one recorder and one transcriber (in random order), the third
    // any process — each time one of those that is running; the broker
    // restart falls between the first two kills.
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x5eed);
    let recorders: Vec<usize> = (0..sup.procs.len()).filter(|&i| sup.procs[i].is_recorder()).collect();
    let transcribers: Vec<usize> = (0..sup.procs.len()).filter(|&i| !sup.procs[i].is_recorder()).collect();
    let mut victims = vec![recorders, transcribers];
    if rng.gen_bool(0.5) {
        victims.swap(0, 1);
    }
    victims.push((0..sup.procs.len()).collect());
    // `OPPTAK_FAULT_VICTIMS=transcriber-1,recorder-0,recorder-2` names them instead.
    if let Ok(names) = std::env::var("OPPTAK_FAULT_VICTIMS") {
        victims = names
            .split(',')
            .map(|n| {
                vec![sup
                    .procs
                    .iter()
                    .position(|p| p.name == n.trim())
                    .unwrap_or_else(|| panic!("OPPTAK_FAULT_VICTIMS: no process {n}"))]
            })
            .collect();
    }
    if fault != Fault::Kills {
        // The one fault alone: what goes wrong is its doing.
        victims.clear();
    }
    let mut kills = victims.into_iter();
    let mut next_kill = 0.20 + rng.gen_range(0.0..0.05);
    // The PostgreSQL failover: the primary's kill at 30–40% of the audio,
    // the standby's promotion after an orchestrator's delay.
    let pg_at = 0.30 + rng.gen_range(0.0..0.10);
    let pg_down = match std::env::var("OPPTAK_FAULT_PG_DOWN_MS") {
        Ok(ms) => Duration::from_millis(ms.parse().expect("OPPTAK_FAULT_PG_DOWN_MS")),
        Err(_) => Duration::from_millis(rng.gen_range(1_000..8_000)),
    };
    // The MinIO restart: its kill at 30–40% of the audio, its start again
    // after a host's reboot, or an orchestrator's restart.
    let minio_at = 0.30 + rng.gen_range(0.0..0.10);
    let minio_down = match std::env::var("OPPTAK_FAULT_MINIO_DOWN_MS") {
        Ok(ms) => Duration::from_millis(ms.parse().expect("OPPTAK_FAULT_MINIO_DOWN_MS")),
        Err(_) => Duration::from_millis(rng.gen_range(1_000..8_000)),
    };
    let mut minio_killed: Option<Instant> = None;
    let mut minio_launched = false;
    let mut minio_back = false;
    let mut pg_killed: Option<Instant> = None;
    let mut pg_promoted = false;
    let mut broker_at: Option<f64> = None;
    let mut broker_done = false;
    let mut restart_task: Option<tokio::task::JoinHandle<(Broker, Result<Duration, String>)>> = None;
    // The cluster's broker kills, from the task doing them, as they happen.
    let (notes_tx, notes) = std::sync::mpsc::channel::<String>();
    if cluster && !pg_failover {
        // Early, so both kills and returns fall inside the calls.
        broker_at = Some(0.15 + rng.gen_range(0.0..0.05));
    }
    // The recorder whose host is cut off (a random one).
    let isolated = format!("recorder-{}", rng.gen_range(0..3));
    let mut pending_kill = kills.next();
    let mut faults: Vec<Done> = Vec::new();
    let mut failures: Vec<String> = Vec::new();

    let play_limit = Duration::from_secs_f64(seconds / pace) + Duration::from_secs(300);
    while !tel.is_finished() {
        if let Err(e) = sup.tick() {
            failures.push(e);
            break;
        }
        if started.elapsed() > play_limit {
            failures.push(format!("the telephony side did not finish within {play_limit:?}"));
            break;
        }
        let p = tel.progress();
        while let Ok(what) = notes.try_recv() {
            faults.push(Done::now(started, p, what));
        }
        if restart_task.as_ref().is_some_and(|t| t.is_finished()) {
            let (b, r) = restart_task.take().unwrap().await.unwrap();
            broker = Some(b);
            match r {
                Ok(down) => eprintln!(
                    "[fault] {:>6.1}s broker fault over after {:.1} s",
                    started.elapsed().as_secs_f64(),
                    down.as_secs_f64()
                ),
                Err(e) => {
                    failures.push(format!("broker restart: {e}"));
                    break;
                }
            }
        }
        if fault.on_hosts() && restart_task.is_none() && !broker_done && broker_at.is_some_and(|b| p >= b) {
            broker_done = true;
            let b = broker.take().unwrap();
            let (topic, tx, h) = (topic.clone(), notes_tx.clone(), hosts.clone().unwrap());
            let isolated = isolated.clone();
            restart_task = Some(tokio::task::spawn_blocking(move || {
                let t = Instant::now();
                let r = network_fault(fault, &b, &h, &topic, &isolated, net_fault, &tx);
                (b, r.map(|()| t.elapsed()))
            }));
        }
        if !fault.on_hosts() && cluster && restart_task.is_none() && !broker_done && broker_at.is_some_and(|b| p >= b) {
            broker_done = true;
            // An orchestrator's restart: at once or within seconds.
            let downs = [0, 1].map(|_| broker_down + Duration::from_millis(rng.gen_range(0..8_000)));
            let mut b = broker.take().unwrap();
            let (topic, tx) = (topic.clone(), notes_tx.clone());
            restart_task = Some(tokio::task::spawn_blocking(move || {
                let t = Instant::now();
                let r = match &mut b {
                    Broker::Private(c) => c.leader_kills(&topic, downs, &tx),
                    Broker::Shared(_) => Err("the leader kills need the private cluster".into()),
                };
                (b, r.map(|()| t.elapsed()))
            }));
        }
        if !cluster && restart_task.is_none() && !broker_done && broker_at.is_some_and(|b| p >= b) {
            broker_done = true;
            eprintln!(
                "[fault] {:>6.1}s progress {:>5.1}%: restarting the broker",
                started.elapsed().as_secs_f64(),
                p * 100.0
            );
            faults.push(Done {
                at: started.elapsed(),
                progress: p,
                what: format!(
                    "broker restarted (SIGTERM, same data{})",
                    if broker_down.is_zero() {
                        String::new()
                    } else {
                        format!(", kept down {} s more", broker_down.as_secs())
                    }
                ),
            });
            let mut b = broker.take().unwrap();
            restart_task = Some(tokio::task::spawn_blocking(move || {
                let r = b.restart(broker_down);
                (b, r)
            }));
        }
        if let Some(pair) = pg_pair.as_mut() {
            if pg_killed.is_none() && p >= pg_at {
                let pid = pair
                    .kill_primary()
                    .unwrap_or_else(|e| panic!("killing the postgres primary: {e}"));
                pg_killed = Some(Instant::now());
                let what = format!("SIGKILL postgres primary (pid {pid} and its backends)");
                faults.push(Done::now(started, p, what));
            }
            if !pg_promoted && pg_killed.is_some_and(|t| t.elapsed() >= pg_down) {
                pg_promoted = true;
                if let Err(e) = pair.promote_standby().await {
                    failures.push(format!("promoting the standby: {e}"));
                    break;
                }
                let what = format!(
                    "postgres standby promoted, {:.1} s after the kill",
                    pg_killed.map_or(0.0, |t| t.elapsed().as_secs_f64())
                );
                faults.push(Done::now(started, tel.progress(), what));
            }
        }
        if let Some(m) = minio.as_mut() {
            if minio_killed.is_none() && p >= minio_at {
                let pid = m.kill().unwrap_or_else(|e| panic!("killing minio: {e}"));
                minio_killed = Some(Instant::now());
                faults.push(Done::now(started, p, format!("SIGKILL minio (pid {pid})")));
            }
            if !minio_launched && minio_killed.is_some_and(|t| t.elapsed() >= minio_down) {
                minio_launched = true;
                if let Err(e) = m.launch() {
                    failures.push(format!("starting minio again: {e}"));
                    break;
                }
            }
            if minio_launched && !minio_back && m.ready() {
                minio_back = true;
                let what = format!(
                    "minio back on its data, answering {:.1} s after its kill",
                    minio_killed.map_or(0.0, |t| t.elapsed().as_secs_f64())
                );
                faults.push(Done::now(started, tel.progress(), what));
            }
        }
        let running: Vec<usize> = pending_kill
            .iter()
            .flatten()
            .copied()
            .filter(|&i| sup.procs[i].pid().is_some())
            .collect();
        // On the cluster the process kills go on while brokers are down.
        if (cluster || restart_task.is_none()) && p >= next_kill && !running.is_empty() {
            if let Some(victim) = pending_kill.take().map(|_| running[rng.gen_range(0..running.len())]) {
                // Restarted at once, or after the consumer groups moved its
                // partitions to the others (session timeout 10 s), so that its
                // return takes partitions away from live processes mid-call.
                let delay = Duration::from_millis(rng.gen_range(0..15_000));
                let delay = match std::env::var("OPPTAK_FAULT_RESTART_AFTER_MS") {
                    Ok(ms) => Duration::from_millis(ms.parse().unwrap()),
                    Err(_) => delay,
                };
                let pid = sup.kill(victim, delay);
                let what = format!(
                    "SIGKILL {} (pid {}), restarted after {:.1} s",
                    sup.procs[victim].name,
                    pid.unwrap_or(0),
                    delay.as_secs_f64()
                );
                faults.push(Done::now(started, p, what));
                if broker_at.is_none() {
                    broker_at = Some(p + rng.gen_range(0.07..0.13));
                }
                next_kill = p + 0.20 + rng.gen_range(0.0..0.05);
                pending_kill = kills.next();
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if let Some(t) = restart_task.take() {
        let (b, r) = t.await.unwrap();
        broker = Some(b);
        if let Err(e) = r {
            failures.push(format!("broker restart: {e}"));
        }
    }
    while let Ok(what) = notes.try_recv() {
        let p = tel.progress();
        faults.push(Done::now(started, p, what));
    }
    let played = started.elapsed();
    let sent = tel.join().await;
    eprintln!(
        "[fault] {:>6.1}s every call sent; draining",
        started.elapsed().as_secs_f64()
    );

    // Drain: every recording complete and compacted, every KI call drafted or
    // its KI refused; the supervisor keeps restarting what exits meanwhile.
    let drain_limit = Duration::from_secs(env_or("OPPTAK_FAULT_DRAIN_S", 240 + 3 * calls_n as u64));
    let drain_start = Instant::now();
    let mut unsettled: Vec<usize> = (0..calls.len()).collect();
    while !unsettled.is_empty() && failures.is_empty() {
        if let Err(e) = sup.tick() {
            failures.push(e);
            break;
        }
        let mut still = Vec::new();
        for &i in &unsettled {
            if !check::settled(&edges, &calls[i]).await {
                still.push(i);
            }
        }
        unsettled = still;
        if drain_start.elapsed() > drain_limit {
            failures.push(format!(
                "{} calls not settled {drain_limit:?} after the last was sent: {:?}",
                unsettled.len(),
                unsettled
                    .iter()
                    .take(10)
                    .map(|&i| calls[i].call_id())
                    .collect::<Vec<_>>()
            ));
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let drained = drain_start.elapsed();
    let exits = tokio::task::spawn_blocking(move || {
        let e = sup.stop_all(Duration::from_secs(60));
        (sup, e)
    })
    .await
    .unwrap();
    let (sup, exits) = exits;
    for (name, status) in &exits {
        if !status.is_some_and(|s| s.success()) {
            failures.push(format!("{name} did not stop cleanly on SIGTERM: {status:?}"));
        }
    }

    // The check.
    let mut total = Tally::default();
    let mut reports: Vec<CallReport> = Vec::with_capacity(calls.len());
    for (c, s) in calls.iter().zip(&sent) {
        let r = check::check_call(&edges, c, s).await;
        total += r.tally;
        reports.push(r);
    }
    let logs: String = sup
        .procs
        .iter()
        .map(|p| std::fs::read_to_string(&p.log).unwrap_or_default())
        .collect();
    let count = |needle: &str| logs.matches(needle).count();
    let panics = count("panicked at");
    if panics > 0 {
        failures.push(format!("{panics} panics in the process logs"));
    }
    // A KI role whose task ended with an error leaves its process running
    // without it (only the shutdown reports it): a silent loss of capacity.
    // The one error a role is meant to end on is the stuck-consumer guard's
    // (librdkafka sometimes never rejoins its group after a broker restart:
    // docs/design/pitfalls.md): its process exits and the supervisor starts
    // it again with a fresh consumer, so it counts only if no exit followed.
    let stuck = logs
        .lines()
        .filter(|l| l.contains("stopped with an error") && l.contains("bus consumer stuck"))
        .count();
    let exits_on_own: usize = sup.procs.iter().map(|p| p.exits.len()).sum();
    let role_errors = count("stopped with an error") + count("task failed") - stuck;
    if role_errors > 0 {
        failures.push(format!(
            "{role_errors} roles ended with an error (grep the logs for 'stopped with an error')"
        ));
    }
    if stuck > exits_on_own {
        failures.push(format!(
            "{stuck} roles ended on a stuck consumer, but only {exits_on_own} processes exited to restart"
        ));
    }
    let broker_kills = faults.iter().filter(|f| f.what.starts_with("SIGKILL broker")).count();
    let pg_kills = faults.iter().filter(|f| f.what.starts_with("SIGKILL postgres")).count();
    let kills_done = faults.iter().filter(|f| f.what.starts_with("SIGKILL")).count() - broker_kills - pg_kills;
    let net_done = faults
        .iter()
        .filter(|f| f.what.starts_with("network fault over"))
        .count();
    // Processes that exited on their own: in the store scenarios, riding
    // the outage out is the roles' own work, none may need its supervisor.
    let exited: Vec<String> = sup
        .procs
        .iter()
        .filter(|p| !p.exits.is_empty())
        .map(|p| format!("{}: {:?}", p.name, p.exits))
        .collect();
    match fault {
        Fault::Kills => {
            if kills_done < 3 || !broker_done || (cluster && broker_kills < 2) {
                failures.push(format!(
                    "the fault schedule did not run: {kills_done} kills, broker fault begun: {broker_done}, brokers killed: {broker_kills}"
                ));
            }
        }
        Fault::MinioRestart => {
            let minio_kills = faults.iter().filter(|f| f.what.starts_with("SIGKILL minio")).count();
            if minio_kills != 1 || !minio_back {
                failures.push(format!(
                    "the fault schedule did not run: minio killed: {minio_kills}, back: {minio_back}"
                ));
            }
            if !exited.is_empty() {
                failures.push(format!(
                    "processes exited on their own while minio restarted: {exited:?}"
                ));
            }
        }
        Fault::PostgresFailover => {
            if pg_kills != 1 || !pg_promoted {
                failures.push(format!(
                    "the fault schedule did not run: postgres primary killed: {pg_kills}, standby promoted: {pg_promoted}"
                ));
            }
            if !exited.is_empty() {
                failures.push(format!("processes exited on their own during the failover: {exited:?}"));
            }
            if count("metadata store failed over") == 0 {
                failures.push("no process logged 'metadata store failed over'".into());
            }
        }
        Fault::BrokerPartition | Fault::SlowLinks | Fault::RecorderIsolated => {
            if net_done != 1 {
                failures.push(format!(
                    "the network fault did not run to its end: begun {broker_done}, {:?}",
                    faults.iter().map(|f| &f.what).collect::<Vec<_>>()
                ));
            }
        }
    }

    // The report.
    let ki: Vec<&CallReport> = calls
        .iter()
        .zip(&reports)
        .filter(|(c, _)| c.ki && !c.opt_out)
        .map(|(_, r)| r)
        .collect();
    let opted: Vec<&CallReport> = calls
        .iter()
        .zip(&reports)
        .filter(|(c, _)| c.opt_out)
        .map(|(_, r)| r)
        .collect();
    let non_ki: Vec<&CallReport> = calls
        .iter()
        .zip(&reports)
        .filter(|(c, _)| !c.ki)
        .map(|(_, r)| r)
        .collect();
    let investment: Vec<&CallReport> = calls
        .iter()
        .zip(&reports)
        .filter(|(c, _)| c.investment)
        .map(|(_, r)| r)
        .collect();
    let n = |v: &[&CallReport], f: fn(&CallReport) -> bool| v.iter().filter(|r| f(r)).count();
    let all: Vec<&CallReport> = reports.iter().collect();
    let mut out = String::new();
    use std::fmt::Write;
    let _ = writeln!(
        out,
        "\n=== fault suite: {} calls x {seconds} s at {pace}x, 3 recorders, 2 transcribers, {brokers} broker{}, {}, seed {seed} ===",
        calls.len(),
        if cluster { "s" } else { "" },
        match fault {
            Fault::Kills => "process kills".to_string(),
            Fault::PostgresFailover => "postgres primary + sync standby".to_string(),
            Fault::MinioRestart => "hot store on a private minio, restarted".to_string(),
            f => format!("{f:?} for {} s, each on its own host", net_fault.as_secs()),
        }
    );
    for f in &faults {
        let _ = writeln!(
            out,
            "  {:>6.1} s  progress {:>5.1}%  {}",
            f.at.as_secs_f64(),
            f.progress * 100.0,
            f.what
        );
    }
    let _ = writeln!(
        out,
        "  sent in {:.1} s, drained in {:.1} s, total {:.1} s",
        played.as_secs_f64(),
        drained.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    let _ = writeln!(
        out,
        "\n  chunks  acked      ok  lost  duplicate  unseen  misplaced  recovered  indeterminate  unexpected-frames"
    );
    let _ = writeln!(
        out,
        "  {:>6}  {:>5}  {:>6}  {:>4}  {:>9}  {:>6}  {:>9}  {:>9}  {:>13}  {:>17}",
        total.chunks,
        total.acked,
        total.ok,
        total.lost,
        total.duplicate,
        total.unseen,
        total.misplaced,
        total.recovered,
        total.indeterminate,
        total.unexpected_frames
    );
    let _ = writeln!(
        out,
        "\n  recordings complete {}/{}, identical to the sent audio {}/{}, with gaps {}",
        n(&all, |r| r.complete),
        all.len(),
        n(&all, |r| r.identical),
        all.len(),
        n(&all, |r| r.gaps > 0)
    );
    let _ = writeln!(
        out,
        "  KI calls {}: transcript {}, draft {}, KI audio copy {}",
        ki.len(),
        n(&ki, |r| r.transcript),
        n(&ki, |r| r.draft),
        n(&ki, |r| r.ki_copy)
    );
    let _ = writeln!(
        out,
        "  opted out mid-call {}: honoured {} (ki key shredded with evidence, nothing KI readable)",
        opted.len(),
        n(&opted, |r| r.opt_out_honoured)
    );
    let _ = writeln!(
        out,
        "  without KI {}: nothing KI {}; investment advice {}: archive copy {}",
        non_ki.len(),
        n(&non_ki, |r| r.ki_clean),
        investment.len(),
        n(&investment, |r| r.archive_copy)
    );
    let _ = writeln!(out, "\n  process     starts  killed  exited-on-own");
    for p in &sup.procs {
        let _ = writeln!(
            out,
            "  {:<14} {:>4}  {:>6}  {:>13}",
            p.name,
            p.starts,
            p.killed,
            p.exits.len()
        );
    }
    let _ = writeln!(
        out,
        "  in the logs: {} write conflicts, {} 'call state dropped', {} live transcriptions abandoned, {} transcripts stored, {} drafts stored, {} roles stopped with an error ({} of them a stuck consumer, restarted)",
        count("write conflict"),
        count("call state dropped"),
        count("live transcription abandoned"),
        count("transcript stored"),
        count("draft stored for review"),
        count("stopped with an error"),
        stuck
    );
    if pg_failover {
        let _ = writeln!(
            out,
            "  metadata store: {} failovers logged (one per store of each process), {} recorder sessions started over, {} KI attempts waiting on the store",
            count("metadata store failed over"),
            count("starting over from the committed offsets"),
            count("the metadata store does not answer")
        );
    }
    for (c, r) in calls.iter().zip(&reports) {
        if !r.problems.is_empty() {
            let _ = writeln!(out, "  {}: {}", c.call_id(), r.problems.join("; "));
        }
    }
    eprintln!("{out}");

    let calls_wrong = reports.iter().filter(|r| !r.problems.is_empty()).count();
    let ok = failures.is_empty() && calls_wrong == 0 && total.lost == 0 && total.duplicate == 0 && total.unseen == 0;
    if !ok {
        eprintln!(
            "[fault] FAILED; files kept in {}\n  config: {}\n  broker logs: {:?}\n  postgres logs: {:?}\n  minio log: {:?}\n{}\n{}",
            dir.display(),
            config_path.display(),
            broker.as_ref().map(|b| b.logs()),
            pg_pair.as_ref().map(|p| p.logs()),
            minio.as_ref().map(|m| m.log.clone()),
            sup.logs(),
            hosts.as_ref().map(|h| h.status()).unwrap_or_default()
        );
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(
        (total.lost, total.duplicate, total.unseen, total.misplaced),
        (0, 0, 0, 0),
        "lost, duplicate, unseen, misplaced"
    );
    assert_eq!(total.unexpected_frames, 0, "stored audio that was never sent");
    assert_eq!(calls_wrong, 0, "calls with problems (listed above)");
    drop(sup);
    drop(broker);
    drop(edges);
    drop(pg_pair);
    drop(hosts);
    if std::env::var("OPPTAK_FAULT_KEEP").as_deref() != Ok("1") {
        let _ = std::fs::remove_dir_all(&dir);
        // One database per run would pile up otherwise.
        if let (Ok(base), Some((_, db))) = (
            std::env::var("OPPTAK_TEST_POSTGRES"),
            shared_db.as_deref().and_then(|u| u.rsplit_once('/')),
        ) {
            use sqlx::Connection;
            if let Ok(mut conn) = sqlx::PgConnection::connect(&base).await {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
                    .execute(&mut conn)
                    .await;
            }
        }
    }
}

/// The opptak processes: (name, roles). On hosts each name is a host.
const PROCS: [(&str, &str); 5] = [
    ("recorder-0", "recorder"),
    ("recorder-1", "recorder"),
    ("recorder-2", "recorder"),
    ("transcriber-0", "transcriber,summarizer"),
    ("transcriber-1", "transcriber,summarizer"),
];

/// The network fault of one run on hosts, from its start to its end; each
/// step goes to `note` as it happens, the last one "network fault over".
fn network_fault(
    fault: Fault,
    broker: &Broker,
    hosts: &hosts::Hosts,
    topic: &str,
    isolated: &str,
    lasting: Duration,
    note: &std::sync::mpsc::Sender<String>,
) -> Result<(), String> {
    let t = Instant::now();
    let _ = note.send(format!(
        "on hosts: the telephony side (loadgen) holds {} connections to the brokers, recorder-0 {}",
        hosts.connections_to("loadgen", 9092),
        hosts.connections_to("recorder-0", 9092)
    ));
    let brokers: Vec<String> = match broker {
        Broker::Private(b) => b.nodes.iter().map(|n| PrivateBroker::host_name(n.id)).collect(),
        Broker::Shared(_) => return Err("the network faults need the private brokers".into()),
    };
    match fault {
        Fault::Kills | Fault::PostgresFailover | Fault::MinioRestart => return Err("not a network fault".into()),
        Fault::BrokerPartition => {
            let Broker::Private(b) = broker else { unreachable!() };
            b.partition_leader(hosts, topic, lasting, note)?;
        }
        Fault::SlowLinks => {
            let delay: u32 = env_or("OPPTAK_FAULT_DELAY_MS", 200);
            let loss: f64 = env_or("OPPTAK_FAULT_LOSS_PCT", 1.0);
            let peers: Vec<&str> = brokers.iter().map(String::as_str).collect();
            let recorders: Vec<&str> = PROCS
                .iter()
                .map(|(n, _)| *n)
                .filter(|n| n.starts_with("recorder"))
                .collect();
            for r in &recorders {
                hosts.netem(r, delay, loss, &peers)?;
            }
            let _ = note.send(format!(
                "{delay} ms each way and {loss}% loss each way between {} and {} for {} s",
                recorders.join(","),
                peers.join(","),
                lasting.as_secs()
            ));
            std::thread::sleep(lasting);
            for r in &recorders {
                hosts.netem_off(r)?;
            }
        }
        Fault::RecorderIsolated => {
            hosts.partition(isolated)?;
            let _ = note.send(format!(
                "host {isolated} cut off from everything for {} s (process left running)",
                lasting.as_secs()
            ));
            std::thread::sleep(lasting);
            hosts.heal(isolated)?;
        }
    }
    let _ = note.send(format!("network fault over after {:.1} s", t.elapsed().as_secs_f64()));
    Ok(())
}

/// Regression test for what the suite found first: a live transcriber whose
/// telephony partitions moved to another member mid-call (a transcriber
/// restarted after the group had handed its partitions over, or one more
/// added) kept those calls open for ever — their ends go to the new owner,
/// which never saw them start — and the batch path of the same process
/// waited on them, so no call of its partitions was transcribed. Now the
/// calls of a partition that moves away go to the batch path at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_transcriber_gives_calls_of_moved_partitions_to_the_batch_path() {
    use opptak_domain::model::{AudioFormat, CallId, ChannelRole, Codec};
    use opptak_ki::live::{Live, LiveEnd};
    let Some(speech) = speech_url() else { return };
    let Some(kafka) = common::kafka() else { return };
    let Some(postgres) = common::postgres_db("fault_live").await else {
        return;
    };
    let env = common::Env::new(&common::Backend::Services { kafka, postgres }, "fault_live");
    let edges = env.edges().await;
    let topic = edges.config.recorder_config().topics.telephony;
    let partitions = edges.config.bus.partitions;
    // One KI call starting on each partition; silent audio, so no utterance
    // reaches the recognizer and the calls stay open until they end.
    let prefix = common::unique("moved");
    let format = AudioFormat::new(Codec::Pcmu, 8000, vec![ChannelRole::Agent, ChannelRole::Customer]).unwrap();
    let mut calls = Vec::new();
    for (n, p) in (0..).zip(0..partitions) {
        let id = (n..)
            .map(|k| format!("{prefix}-{k}"))
            .find(|id| opptak_bus::partition_for(id.as_bytes(), partitions) == p)
            .unwrap();
        let mut c = opptak::sim::SimCall::new(&id, format.clone(), vec![0xff; 16_000 * 3]);
        c.started.ki_enabled = true;
        c.started.customer_informed = true;
        calls.push((p, c));
    }
    for (_, c) in &calls {
        let evs = c.events(100);
        common::publish_events(&edges, &evs[..6]).await; // started, 5 chunks, no end
    }
    let asr = opptak_ki::asr::HttpAsr::new(opptak_ki::asr::AsrConfig::new(speech, "tiny.en")).unwrap();
    let t = opptak::app::transcriber_with(&edges, Some(std::sync::Arc::new(asr))).unwrap();
    let live = std::sync::Arc::new(Live::new(t, None));
    let group = edges.config.ki.live_group.clone();
    let (stop, rx) = tokio::sync::watch::channel(false);
    let task = {
        let (live, group, topic) = (live.clone(), group.clone(), topic.clone());
        tokio::spawn(async move { opptak_ki::live::run_role(live, &group, &topic, rx).await })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while live.calls.len() < calls.len() {
        assert!(Instant::now() < deadline, "the live transcriber did not take the calls");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A second member joins the group and takes some of the partitions.
    let mut other = edges.bus.subscribe(&group, &[topic]).await.unwrap();
    let taken: Vec<i32> = loop {
        assert!(Instant::now() < deadline + Duration::from_secs(60), "no rebalance");
        let _ = other.poll(100, Duration::from_millis(200)).await.unwrap();
        let mine = other.assigned().unwrap().unwrap_or_default();
        if !mine.is_empty() {
            break mine.into_iter().map(|(_, p)| p).collect();
        }
    };
    let moved: Vec<CallId> = calls
        .iter()
        .filter(|(p, _)| taken.contains(p))
        .map(|(_, c)| CallId::parse(&c.call_id).unwrap())
        .collect();
    assert!(!moved.is_empty() && moved.len() < calls.len(), "{taken:?}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while moved.iter().any(|id| live.calls.contains(id)) {
        assert!(
            Instant::now() < deadline,
            "calls of moved partitions {taken:?} still open in the first transcriber: {:?}",
            live.stats().ends
        );
        let _ = other.poll(100, Duration::from_millis(200)).await.unwrap();
    }
    let ends = live.stats().ends;
    for id in &moved {
        assert!(
            ends.iter()
                .any(|(c, e)| c == id.as_str()
                    && matches!(e, LiveEnd::Abandoned(why) if why.contains("partition moved"))),
            "{id}: {ends:?}"
        );
    }
    // The calls of the partitions it kept are still transcribed live.
    assert_eq!(live.calls.len(), calls.len() - moved.len());
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();
}
