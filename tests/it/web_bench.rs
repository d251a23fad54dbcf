//! The review service under load (issue 6, BENCHMARKS.md): wrk against the
//! running service with 200 advisors signed in at once, for the queue
//! listing and for audio streaming, and the cost of the audit log as the
//! ratio of throughput with and without the audit appends of content reads.
//! Not part of the test run; run by hand:
//!
//! ```sh
//! deploy/local/services.sh start && deploy/local/services.sh start-speech
//! eval "$(deploy/local/services.sh env)"
//! cargo test --release --test it web_bench:: -- --ignored --nocapture
//! ```
//!
//! Knobs: `OPPTAK_BENCH_SECONDS` (each wrk run, default 15),
//! `OPPTAK_BENCH_ROUNDS` (default 2). Without `OPPTAK_TEST_SPEECH_URL` the
//! drafts are seeded with a fixed-line recognizer (the benchmark measures
//! the web service, not speech recognition).
//!
//! **Seeding** (production-like: Kafka, PostgreSQL, file blobs): 200 advisors,
//! each with one KI call of their own (the first 5.4 s of sample call
//! `demo-0003`, advisor id rewritten), recorded, compacted, transcribed and
//! drafted by the real pipeline; all 200 sign in through the login form over
//! HTTP.
//!
//! **Measuring**: two routers over the same data, one as in production and
//! one with `audit_reads: false` (skips only the audit appends of allowed
//! content reads). `wrk -c200 -t2 --latency` with `benches/wrk/sessions.lua`,
//! each request carrying an advisor's own session cookie, for `/queue`
//! (HTML), `/api/v1/queue` (JSON) and `/calls/{id}/audio` with 64 KiB
//! ranges (half from the start, half from random offsets). Each round runs
//! every endpoint against both routers back to back, alternating which goes
//! first, so drift hits both. The queue endpoints do not audit: their on/off
//! ratio is the noise floor. Every response must be the expected 200/206
//! (wrk counts statuses above 399; the script counts any non-200 page, since
//! a lost session would be a 303); the audit log must grow by at least one
//! entry per audio response with the audit on and not at all with it off,
//! and its hash chain must verify at the end.

use crate::common;
use common::AddApproved;

use common::{Backend, Env};
use opptak::app::{RunningKi, RunningRecorder};
use opptak_domain::model::CallId;
use opptak_ki::asr::{AsrConfig, AsrError, HttpAsr, SpeechRecognizer, Transcript, Utterance};
use opptak_review::identity::{Identity, Role};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ADVISORS: usize = 200;
const PW: &str = "correct horse battery staple";
/// The sample call's first two lines (agent, then customer): a few seconds.
const CALL_MS: usize = 5_400;
const CONNECTIONS: usize = 200;
const THREADS: usize = 2;

/// Hears one fixed line in every utterance: seeds drafts when no speech
/// server is configured (the web service's cost does not depend on what
/// the transcript says).
struct FixedLine;

#[async_trait::async_trait]
impl SpeechRecognizer for FixedLine {
    async fn transcribe(&self, u: &Utterance) -> Result<Transcript, AsrError> {
        let secs = u.pcm16.len() as f32 / 2.0 / u.sample_rate_hz as f32;
        let text = "I would like to start a monthly fund savings plan.";
        Ok(Transcript {
            text: text.into(),
            segments: vec![opptak_ki::asr::Segment {
                start_s: 0.0,
                end_s: secs,
                text: text.into(),
            }],
        })
    }
    fn describe(&self) -> String {
        "fixed-line test recognizer".into()
    }
}

/// What one wrk run reported.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct WrkRun {
    pub(crate) requests: u64,
    pub(crate) rps: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    /// Statuses above 399, as wrk counts them.
    pub(crate) non_2xx: u64,
    /// Connect, read, write errors and timeouts.
    pub(crate) socket_errors: u64,
    /// Pages answered with anything but 200 (the script's own count).
    pub(crate) unexpected: u64,
}

/// A wrk duration (`812.00us`, `1.23ms`, `2.05s`, `1.00m`) in milliseconds.
fn wrk_ms(v: &str) -> Option<f64> {
    let split = v.find(|c: char| c.is_ascii_alphabetic())?;
    let (n, unit) = v.split_at(split);
    let n: f64 = n.parse().ok()?;
    Some(match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        "m" => n * 60_000.0,
        "h" => n * 3_600_000.0,
        _ => return None,
    })
}

/// Parses wrk 4's report (with `--latency`) and the `opptak-wrk:` line of
/// `benches/wrk/sessions.lua`.
fn parse_wrk(out: &str) -> Result<WrkRun, String> {
    let field = |line: &str, key: &str| -> Option<u64> {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
    };
    let (mut rps, mut p50, mut p99, mut script) = (None, None, None, None);
    let (mut non_2xx, mut socket_errors) = (0, 0);
    for line in out.lines() {
        let t = line.trim();
        if let Some(v) = t.strip_prefix("Requests/sec:") {
            rps = v.trim().parse::<f64>().ok();
        } else if let Some(v) = t.strip_prefix("50%") {
            p50 = wrk_ms(v.trim());
        } else if let Some(v) = t.strip_prefix("99%") {
            p99 = wrk_ms(v.trim());
        } else if let Some(v) = t.strip_prefix("Non-2xx or 3xx responses:") {
            non_2xx = v.trim().parse().map_err(|_| format!("bad line {t:?}"))?;
        } else if let Some(v) = t.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 12"
            for part in v.split(',') {
                let n = part.split_whitespace().nth(1).and_then(|n| n.parse::<u64>().ok());
                socket_errors += n.ok_or_else(|| format!("bad line {t:?}"))?;
            }
        } else if t.starts_with("opptak-wrk:") {
            script = Some((field(t, "requests"), field(t, "unexpected_status")));
        }
    }
    let missing = |what: &str| format!("no {what} in the wrk output:\n{out}");
    let (requests, unexpected) = script.ok_or_else(|| missing("opptak-wrk line"))?;
    Ok(WrkRun {
        requests: requests.ok_or_else(|| missing("requests"))?,
        rps: rps.ok_or_else(|| missing("Requests/sec"))?,
        p50_ms: p50.ok_or_else(|| missing("50% latency"))?,
        p99_ms: p99.ok_or_else(|| missing("99% latency"))?,
        non_2xx,
        socket_errors,
        unexpected: unexpected.ok_or_else(|| missing("unexpected_status"))?,
    })
}

#[test]
fn parses_wrk_reports() {
    let out = "Running 2s test @ http://127.0.0.1:18777
  2 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.70ms    2.21ms  15.20ms   83.25%
    Req/Sec   819.62    131.71     1.31k    90.00%
  Latency Distribution
     50%  812.00us
     75%    3.85ms
     90%    5.72ms
     99%    1.02s
  3268 requests in 2.00s, 1.11MB read
  Socket errors: connect 0, read 2, write 0, timeout 5
  Non-2xx or 3xx responses: 1635
Requests/sec:   1631.21
Transfer/sec:    566.46KB
opptak-wrk: requests=3268 unexpected_status=7 p50_us=812 p99_us=1020000 max_us=1500000
";
    assert_eq!(
        parse_wrk(out).unwrap(),
        WrkRun {
            requests: 3268,
            rps: 1631.21,
            p50_ms: 0.812,
            p99_ms: 1020.0,
            non_2xx: 1635,
            socket_errors: 7,
            unexpected: 7,
        }
    );
    let clean = out
        .lines()
        .filter(|l| !l.contains("errors") && !l.contains("Non-2xx"))
        .collect::<Vec<_>>()
        .join("\n");
    let r = parse_wrk(&clean).unwrap();
    assert_eq!((r.non_2xx, r.socket_errors), (0, 0));
    assert!(parse_wrk(&out.replace("Requests/sec", "Req/s")).is_err());
    assert!(parse_wrk(&out.replace("opptak-wrk:", "other:")).is_err());
}

/// `nproc`, the CPU model, memory, the date and wrk's version.
pub(crate) fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split_once(':')
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines().find_map(|l| {
                l.strip_prefix("MemTotal:")?
                    .trim()
                    .strip_suffix("kB")?
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
        })
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    let run = |cmd: &str, args: &[&str]| {
        std::process::Command::new(cmd)
            .args(args)
            .output()
            .map(|o| {
                let mut s = String::from_utf8_lossy(&o.stdout).into_owned();
                s.push_str(&String::from_utf8_lossy(&o.stderr));
                s.lines().next().unwrap_or("").trim().to_owned()
            })
            .unwrap_or_default()
    };
    format!(
        "nproc {}, {model}, {mem_gib:.0} GiB; {}; {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        run("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        run("wrk", &["-v"]),
    )
}

/// `/proc/loadavg`'s three load averages.
pub(crate) fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// CPU time so far, in clock ticks (1/100 s), split by who used it.
#[derive(Clone, Copy)]
pub(crate) struct Cpu {
    /// This process: the service (during a wrk run nothing else runs in it).
    service: u64,
    /// Its reaped children: the wrk runs.
    wrk: u64,
    /// PostgreSQL: every `postgres` process alive now and its reaped children.
    postgres: u64,
    /// The machine, all cores: busy time, and all time.
    busy: u64,
    total: u64,
}

/// utime + stime (and cutime + cstime) of `/proc/<pid>/stat`.
fn proc_ticks(pid: &str) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f: Vec<u64> = stat[stat.rfind(')')? + 2..]
        .split(' ')
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    // Fields 14-17 of proc(5) are 11-14 after the state.
    Some((f[11] + f[12], f[13] + f[14]))
}

impl Cpu {
    pub(crate) fn now() -> Cpu {
        let (service, wrk) = proc_ticks("self").unwrap();
        let postgres = std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|pid| pid.bytes().all(|b| b.is_ascii_digit()))
            .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "postgres"))
            .filter_map(|pid| proc_ticks(&pid))
            // Backends that exited (a client dropped mid-query closes its
            // connection) are in the postmaster's children's time.
            .map(|(own, children)| own + children)
            .sum();
        let stat = std::fs::read_to_string("/proc/stat").unwrap();
        let v: Vec<u64> = stat
            .lines()
            .next()
            .unwrap()
            .split_whitespace()
            .skip(1)
            .filter_map(|n| n.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal (guest time is
        // already in user). Interrupts count as busy: loopback traffic is
        // handled in softirqs, charged partly to the processes, partly not.
        Cpu {
            service,
            wrk,
            postgres,
            busy: v[..3].iter().sum::<u64>() + v[5] + v[6],
            total: v[..8].iter().sum(),
        }
    }

    /// What happened between `self` and `later`: per request, the service's
    /// and PostgreSQL's CPU µs; and the cores everything else kept busy
    /// (other engineers' builds, Kafka, kernel work not charged to a
    /// process, ...), which should be near 0.
    pub(crate) fn per_request(self, later: Cpu, requests: u64) -> (f64, f64, f64) {
        let per = |a: u64, b: u64| (b.saturating_sub(a)) as f64 * 10_000.0 / requests.max(1) as f64;
        let ours =
            (later.service - self.service) + (later.wrk - self.wrk) + later.postgres.saturating_sub(self.postgres);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let others = ((later.busy - self.busy) as f64 - ours as f64) / (later.total - self.total).max(1) as f64;
        (
            per(self.service, later.service),
            per(self.postgres, later.postgres),
            others * cores,
        )
    }
}

/// Runs wrk against `base` with the sessions of `file` (see
/// benches/wrk/sessions.lua) and parses its report.
pub(crate) async fn wrk(base: &str, file: &Path, mode: &str, seconds: u64) -> (WrkRun, String) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/wrk/sessions.lua");
    let out = tokio::process::Command::new("wrk")
        .args([
            format!("-c{CONNECTIONS}"),
            format!("-t{THREADS}"),
            format!("-d{seconds}s"),
            "--timeout".into(),
            "10s".into(),
            "--latency".into(),
            "-s".into(),
            script.into(),
            base.into(),
            "--".into(),
            file.display().to_string(),
            mode.into(),
            THREADS.to_string(),
        ])
        .output()
        .await
        .expect("wrk (Debian package wrk; deploy/local/services.sh installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "wrk failed:\n{text}");
    (parse_wrk(&text).unwrap(), text)
}

struct Advisor {
    user: String,
    cookie: String,
    call: String,
}

/// The newest audit entry's sequence number (0 when empty).
async fn audit_tail(audit: &opptak_store::audit::SqlAudit) -> u64 {
    audit.tail().await.unwrap().map_or(0, |e| e.seq)
}

#[derive(Clone, Copy, PartialEq)]
enum Endpoint {
    QueueHtml,
    QueueJson,
    Audio,
}

impl Endpoint {
    fn name(self) -> &'static str {
        match self {
            Endpoint::QueueHtml => "`GET /queue` (HTML)",
            Endpoint::QueueJson => "`GET /api/v1/queue` (JSON)",
            Endpoint::Audio => "`GET /calls/{id}/audio`, 64 KiB ranges",
        }
    }
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: minutes, needs wrk, Kafka and PostgreSQL; run by hand (see the file's header)"]
async fn review_service_with_200_advisors_under_wrk() {
    let seconds: u64 = std::env::var("OPPTAK_BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15);
    let rounds: usize = std::env::var("OPPTAK_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    // The service's own errors (a failed request logs why), on stderr.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
        .with_writer(std::io::stderr)
        .try_init();
    let t_all = Instant::now();
    println!("machine: {}; load {}", machine(), load());
    let kafka = common::kafka().expect("Kafka (deploy/local/services.sh start; eval its env)");
    let postgres = common::postgres_db("web_bench")
        .await
        .expect("PostgreSQL (deploy/local/services.sh start; eval its env)");
    let env = Env::new(&Backend::Services { kafka, postgres }, "web_bench");
    let edges = env.edges().await;

    // Advisors.
    let t0 = Instant::now();
    // One at a time: each add_user opens its own audit-log connection pool
    // (Identity::audit), so hundreds at once exhaust PostgreSQL.
    let identity = Identity::open(&edges.review()).await.unwrap();
    for i in 0..ADVISORS {
        let user = format!("adv-{i:03}");
        let team = format!("team-{:02}", i / 20);
        identity
            .add_approved("setup", &user, &format!("Advisor {i:03}"), Role::Advisor, &team, PW)
            .await
            .unwrap();
    }
    println!("{ADVISORS} advisors created in {:.1} s", t0.elapsed().as_secs_f64());

    // One KI call each, through the real pipeline.
    let sample = opptak::demo::samples(&opptak::demo::default_samples_dir())
        .unwrap()
        .into_iter()
        .find(|s| s.call.call_id == "demo-0003")
        .unwrap();
    assert!(sample.call.started.ki_enabled && sample.call.started.customer_informed);
    let frames = sample.call.format.sample_rate_hz() as usize * CALL_MS / 1000;
    let calls: Vec<_> = (0..ADVISORS)
        .map(|i| {
            let mut c = sample.call.clone();
            c.call_id = format!("wb-{i:03}");
            c.started.advisor_id = format!("adv-{i:03}");
            c.wire.truncate(frames * c.format.wire_frame_bytes());
            c
        })
        .collect();
    let wav_bytes = 44 + (frames * usize::from(sample.call.format.channels()) * 2) as u64;
    let asr: Arc<dyn SpeechRecognizer> = match std::env::var("OPPTAK_TEST_SPEECH_URL") {
        Ok(url) => {
            let mut cfg = AsrConfig::new(url, "tiny.en");
            cfg.timeout = Duration::from_secs(120);
            Arc::new(HttpAsr::new(cfg).unwrap())
        }
        Err(_) => Arc::new(FixedLine),
    };
    println!("seeding drafts with {}", asr.describe());
    let t0 = Instant::now();
    let recorder = RunningRecorder::spawn(edges.recorder());
    let ki = RunningKi::spawn(&edges, true, true, Some(asr)).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await; // consumers joined
    common::play_interleaved(&edges, &calls, 6).await;
    let mut pending: Vec<CallId> = calls.iter().map(|c| CallId::parse(&c.call_id).unwrap()).collect();
    let deadline = Instant::now() + Duration::from_secs(1800);
    let mut shown = Instant::now();
    while !pending.is_empty() {
        let mut left = Vec::new();
        for id in pending {
            let compacted = edges
                .meta
                .load_call(&id)
                .await
                .unwrap()
                .is_some_and(|c| c.object.is_some());
            let drafted = compacted
                && edges
                    .meta
                    .artifacts(&id)
                    .await
                    .unwrap()
                    .iter()
                    .any(|a| a.kind == "draft");
            if !drafted {
                left.push(id);
            }
        }
        pending = left;
        assert!(
            Instant::now() < deadline,
            "{} calls still without a compacted recording and a draft",
            pending.len()
        );
        if shown.elapsed() > Duration::from_secs(15) {
            println!(
                "  {} of {ADVISORS} drafted after {:.0} s",
                ADVISORS - pending.len(),
                t0.elapsed().as_secs_f64()
            );
            shown = Instant::now();
        }
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    ki.stop().await;
    recorder.stop().await.unwrap();
    let seed_s = t0.elapsed().as_secs_f64();
    println!("{ADVISORS} calls recorded, compacted, transcribed and drafted in {seed_s:.0} s");

    // The service twice over the same data: as in production, and without
    // the audit appends of content reads.
    let mut servers = Vec::new();
    let mut bases = Vec::new();
    for audit_reads in [true, false] {
        let router = opptak_review::web::router_with(
            &edges.review(),
            opptak_review::web::Options {
                secure_cookies: false,
                audit_reads,
            },
        )
        .await
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        bases.push(format!("http://{}", listener.local_addr().unwrap()));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(opptak_review::web::serve(listener, router, async {
            let _ = stopped.await;
        }));
        servers.push((stop, task));
    }
    let (on, off) = (bases[0].clone(), bases[1].clone());
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // Everyone signs in over HTTP.
    let t0 = Instant::now();
    let mut advisors = Vec::new();
    for (i, c) in calls.iter().enumerate() {
        let user = format!("adv-{i:03}");
        let cookie = common::web_session(&http, &on, &user, PW).await;
        advisors.push(Advisor {
            user,
            cookie,
            call: c.call_id.clone(),
        });
    }
    println!("{ADVISORS} sign-ins over HTTP in {:.1} s", t0.elapsed().as_secs_f64());

    // What wrk will ask for answers right, on both routers: each advisor's
    // queue lists exactly their call, their audio ranges come back.
    let audit = opptak_store::audit::SqlAudit::open(&edges.config.storage.metadata)
        .await
        .unwrap();
    for base in [&on, &off] {
        let before = audit_tail(&audit).await;
        for a in &advisors {
            let get = |path: String| http.get(format!("{base}{path}")).header("cookie", &a.cookie);
            let r = get("/queue".into()).send().await.unwrap();
            assert_eq!(r.status(), 200, "{}", a.user);
            let body = r.text().await.unwrap();
            assert_eq!(body.matches("href=\"/calls/").count(), 1, "{}: {body}", a.user);
            assert!(body.contains(&format!("href=\"/calls/{}\"", a.call)), "{}", a.user);
            let r = get("/api/v1/queue".into()).send().await.unwrap();
            assert_eq!(r.status(), 200, "{}", a.user);
            let items: serde_json::Value = r.json().await.unwrap();
            assert_eq!(items.as_array().map(Vec::len), Some(1), "{}: {items}", a.user);
            assert_eq!(items[0]["call_id"], a.call.as_str());
            let r = get(format!("/calls/{}/audio", a.call))
                .header("range", "bytes=0-65535")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 206, "{}", a.user);
            assert_eq!(
                r.headers().get("content-range").unwrap(),
                format!("bytes 0-65535/{wav_bytes}").as_str()
            );
            let body = r.bytes().await.unwrap();
            assert_eq!((body.len(), &body[..4]), (65_536, b"RIFF".as_slice()));
        }
        let grew = audit_tail(&audit).await - before;
        let want = if base == &on { ADVISORS as u64 } else { 0 };
        assert_eq!(grew, want, "audit entries written by {base}");
    }

    // The sessions files wrk reads.
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, line: &dyn Fn(&Advisor) -> String| -> PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, advisors.iter().map(|a| line(a) + "\n").collect::<String>()).unwrap();
        p
    };
    let html = write("queue.tsv", &|a| format!("{}\t/queue\t0", a.cookie));
    let json = write("api-queue.tsv", &|a| format!("{}\t/api/v1/queue\t0", a.cookie));
    let audio = write("audio.tsv", &|a| {
        format!("{}\t/calls/{}/audio\t{wav_bytes}", a.cookie, a.call)
    });
    let file_of = |e: Endpoint| match e {
        Endpoint::QueueHtml => (&html, "page"),
        Endpoint::QueueJson => (&json, "page"),
        Endpoint::Audio => (&audio, "range"),
    };

    // Warm-up (connection pools, caches), not counted.
    for e in [Endpoint::QueueHtml, Endpoint::Audio] {
        let (file, mode) = file_of(e);
        for base in [&on, &off] {
            wrk(base, file, mode, 3).await;
        }
    }

    let t0 = Instant::now();
    let endpoints = [Endpoint::QueueHtml, Endpoint::QueueJson, Endpoint::Audio];
    // results[endpoint][audit on = 0, off = 1] = runs
    let mut results: Vec<[Vec<WrkRun>; 2]> = endpoints.iter().map(|_| [Vec::new(), Vec::new()]).collect();
    let mut log = String::from(
        "| round | endpoint | audit | requests | req/s | p50 ms | p99 ms | service CPU µs/req | PostgreSQL CPU µs/req | other load (cores) |\n\
         |---:|---|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    println!("load before measuring: {}", load());
    for round in 0..rounds {
        let order: [usize; 2] = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for (ei, &e) in endpoints.iter().enumerate() {
            for &side in &order {
                let (file, mode) = file_of(e);
                let base = if side == 0 { &on } else { &off };
                let before = audit_tail(&audit).await;
                let c0 = Cpu::now();
                let (run, text) = wrk(base, file, mode, seconds).await;
                // Let requests still in flight when wrk stopped finish, and
                // PostgreSQL reap the backends whose queries they abandoned.
                tokio::time::sleep(Duration::from_secs(1)).await;
                let (service_us, postgres_us, others) = c0.per_request(Cpu::now(), run.requests);
                let grew = audit_tail(&audit).await - before;
                assert!(
                    run.non_2xx == 0 && run.unexpected == 0 && run.socket_errors == 0,
                    "{} (audit {}): failed requests\n{text}",
                    e.name(),
                    if side == 0 { "on" } else { "off" }
                );
                if e == Endpoint::Audio && side == 0 {
                    assert!(
                        grew >= run.requests && grew <= run.requests + 2 * CONNECTIONS as u64,
                        "{grew} audit entries for {} audio responses",
                        run.requests
                    );
                } else {
                    assert_eq!(grew, 0, "{}: no audit entries expected", e.name());
                }
                let row = format!(
                    "| {round} | {} | {} | {} | {:.0} | {:.1} | {:.1} | {service_us:.0} | {postgres_us:.0} | {others:.2} |",
                    e.name(),
                    if side == 0 { "on" } else { "off" },
                    run.requests,
                    run.rps,
                    run.p50_ms,
                    run.p99_ms,
                );
                println!("{row}");
                writeln!(log, "{row}").unwrap();
                results[ei][side].push(run);
            }
        }
    }
    let bench_s = t0.elapsed().as_secs_f64();

    // The chain survived the concurrent appends.
    let t0 = Instant::now();
    let report = edges.audit().await.unwrap().verify(None).await.unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    println!(
        "audit chain verified: {} entries, {} checkpoints, in {:.1} s",
        report.entries,
        report.checkpoints,
        t0.elapsed().as_secs_f64()
    );

    let mut table = String::from(
        "| endpoint | audit on: req/s | p50 ms | p99 ms | audit off: req/s | p50 ms | p99 ms | on/off (mean of rounds) |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for (ei, &e) in endpoints.iter().enumerate() {
        let [r_on, r_off] = &results[ei];
        let m = |runs: &[WrkRun], f: fn(&WrkRun) -> f64| mean(&runs.iter().map(f).collect::<Vec<_>>());
        let ratios: Vec<f64> = r_on.iter().zip(r_off).map(|(a, b)| a.rps / b.rps).collect();
        writeln!(
            table,
            "| {} | {:.0} | {:.1} | {:.1} | {:.0} | {:.1} | {:.1} | **{:.2}** ({}) |",
            e.name(),
            m(r_on, |r| r.rps),
            m(r_on, |r| r.p50_ms),
            m(r_on, |r| r.p99_ms),
            m(r_off, |r| r.rps),
            m(r_off, |r| r.p50_ms),
            m(r_off, |r| r.p99_ms),
            mean(&ratios),
            ratios.iter().map(|r| format!("{r:.2}")).collect::<Vec<_>>().join(", "),
        )
        .unwrap();
    }
    println!("\nper run:\n\n{log}");
    println!("means over {rounds} rounds of {seconds} s, {CONNECTIONS} connections, {THREADS} wrk threads:\n\n{table}");
    println!(
        "seeding {seed_s:.0} s, measuring {bench_s:.0} s, whole test {:.0} s",
        t_all.elapsed().as_secs_f64()
    );

    for (stop, task) in servers {
        let _ = stop.send(());
        task.await.unwrap().unwrap();
    }
}
