//! The call search under load (issue 18, BENCHMARKS.md): wrk with 200
//! compliance officers signed in at once, each paging through a search of
//! its own over 100,000 calls in PostgreSQL. Each search was audited
//! (`calls.search`) when it was submitted, like in production; its pages
//! append nothing. Not part of the test run; run by hand:
//!
//! ```sh
//! deploy/local/services.sh start && eval "$(deploy/local/services.sh env)"
//! cargo test --release --test it web_search_bench:: -- --ignored --nocapture
//! ```
//!
//! Knobs: `OPPTAK_BENCH_SECONDS` (the wrk run, default 30),
//! `OPPTAK_BENCH_CALLS` (default 100,000).
//!
//! **Seeding**: the calls go in through the metadata store's own writes
//! ([`crate::web_search::seed`]): one every 5 minutes back from 7 December
//! 2026 (a year), 200 advisors, 2 desks, 3 services, 20,000 customers; one in
//! ten drafted by KI (index row, QA sample, decision), the rest without KI or
//! without a draft. 200 compliance officers sign in through the form, and
//! each submits one search through the form (POST, 303 to `/search?id=…`):
//! in turn no filter, a customer reference, an advisor in one month, a desk
//! with drafts waiting, a service in one week; every third asks for page 2.
//!
//! **Measuring**: `wrk -c200 -t2 --latency` with `benches/wrk/sessions.lua`
//! (mode `page`): each request carries one officer's session and asks for
//! that officer's results. Every response must be 200, and the audit log
//! must not grow (the pages of a submitted search are not new searches).
//! Then each kind of search on its own, one request at a time: what a page
//! of it costs without queueing (printed, never asserted).

use crate::common;
use crate::web_bench::{load, machine, wrk, Cpu};
use crate::web_search::{audit_len, seed, Ki, Seed, T0};
use common::AddApproved;
use common::{Backend, Env};
use opptak_domain::model::{Desk, ServiceCategory};
use opptak_review::identity::{Identity, Role};
use std::fmt::Write as _;
use std::time::Instant;

const PW: &str = "correct horse battery staple";
const OFFICERS: usize = 200;
const MINUTE: i64 = 60_000_000;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// `n` calls, one every 5 minutes back from [`T0`].
fn year_of_calls(n: usize, topics: &[String]) -> Vec<Seed> {
    let desks = [Desk::Markets, Desk::CustomerCenter];
    let services = [
        ServiceCategory::Savings,
        ServiceCategory::Loan,
        ServiceCategory::InvestmentAdvice,
    ];
    (0..n)
        .map(|i| Seed {
            call_id: format!("bench-{i:07}"),
            started_at_us: T0 - i as i64 * 5 * MINUTE,
            advisor: format!("adv-{:03}", i % 200),
            desk: desks[(i / 7) % 2],
            service: services[i % 3],
            customer: format!("kunde-{:05}", (i * 7919) % 20_000),
            seconds: 60 + (i as u64 * 37) % 1200,
            ki: match i % 10 {
                0 => Ki::Drafted {
                    decision: match i % 30 {
                        0 => None,
                        10 => Some("approved"),
                        _ => Some("rejected"),
                    },
                    sampled: i % 50 == 0,
                },
                1..=5 => Ki::Off,
                _ => Ki::NoDraft,
            },
            topic: topics[i % topics.len()].clone(),
        })
        .collect()
}

fn oslo_date(us: i64) -> String {
    let (y, m, d, ..) = opptak_domain::time::oslo_civil(us);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The kinds of search the officers submit, by `i % 5` ([`filters`]).
const KINDS: [&str; 5] = [
    "no filter",
    "customer reference",
    "advisor in one month",
    "desk, drafts waiting",
    "service in one week",
];

/// The search officer `i` submits.
fn filters(i: usize) -> Vec<(&'static str, String)> {
    let day = |days_back: i64| oslo_date(T0 - days_back * 1440 * MINUTE);
    match i % 5 {
        0 => Vec::new(),
        1 => vec![("customer", format!("kunde-{:05}", (i * 7919 * 13) % 20_000))],
        2 => vec![
            ("advisor", format!("adv-{:03}", i % 200)),
            ("from", day(60 + i as i64 % 200)),
            ("to", day(30 + i as i64 % 200)),
        ],
        3 => vec![
            (
                "desk",
                if i.is_multiple_of(2) {
                    "markets"
                } else {
                    "customer_center"
                }
                .into(),
            ),
            ("status", "waiting".into()),
        ],
        _ => vec![
            ("service", "loan".into()),
            ("from", day(7 + i as i64 % 300)),
            ("to", day(i as i64 % 300)),
        ],
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark: minutes, needs wrk, Kafka and PostgreSQL; run by hand (see the file's header)"]
async fn call_search_with_200_compliance_officers_under_wrk() {
    let (Some(kafka), Some(postgres)) = (common::kafka(), common::postgres_db("srchbench").await) else {
        return;
    };
    let n = env_u64("OPPTAK_BENCH_CALLS", 100_000) as usize;
    let seconds = env_u64("OPPTAK_BENCH_SECONDS", 30);
    let env = Env::new(&Backend::Services { kafka, postgres }, "srchbench");
    let edges = env.edges().await;
    let taxonomy = opptak_domain::summary::Taxonomy::default_taxonomy();
    let topics: Vec<String> = taxonomy.ids().take(5).map(str::to_owned).collect();

    let started = Instant::now();
    let calls = year_of_calls(n, &topics);
    seed(&edges, &calls, 1000).await;
    println!("seeded {n} calls in {:.0} s", started.elapsed().as_secs_f64());

    let id = Identity::open(&edges.review()).await.unwrap();
    for a in 0..200 {
        let user = format!("adv-{a:03}");
        id.add_approved("setup", &user, &user, Role::Advisor, "team", PW)
            .await
            .unwrap();
    }
    let officers: Vec<String> = (0..OFFICERS).map(|i| format!("co-{i:03}")).collect();
    for o in &officers {
        id.add_approved("setup", o, o, Role::Compliance, "compliance", PW)
            .await
            .unwrap();
    }

    let server = common::WebService::start(&edges).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let base = server.base.clone();
    let mut lines = String::new();
    let mut hits = Vec::new();
    let mut asked = Vec::new();
    for (i, o) in officers.iter().enumerate() {
        let cookie = common::web_session(&http, &base, o, PW).await;
        let form = http
            .get(format!("{base}/search"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let csrf = common::csrf_in(&form);
        let mut fields = vec![("csrf", csrf)];
        fields.extend(filters(i));
        let r = http
            .post(format!("{base}/search"))
            .header("cookie", &cookie)
            .form(&fields)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303, "{fields:?}");
        let mut path = r.headers()["location"].to_str().unwrap().to_owned();
        if i % 3 == 0 {
            path.push_str("&page=2");
        }
        // What wrk will ask for answers right.
        let r = http
            .get(format!("{base}{path}"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let page = r.text().await.unwrap();
        hits.push(page.matches("href=\"/calls/").count());
        writeln!(lines, "{cookie}\t{path}\t0").unwrap();
        asked.push((i % 5, cookie, path));
    }
    println!(
        "200 searches, results on the page: min {}, max {}, mean {:.1}",
        hits.iter().min().unwrap(),
        hits.iter().max().unwrap(),
        hits.iter().sum::<usize>() as f64 / hits.len() as f64
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sessions.tsv");
    std::fs::write(&file, lines).unwrap();

    // Warm-up, then the measured run.
    wrk(&base, &file, "page", 3).await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let before_load = load();
    let audit_before = audit_len(&edges).await;
    let cpu = Cpu::now();
    let (run, text) = wrk(&base, &file, "page", seconds).await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let (service_us, pg_us, others) = cpu.per_request(Cpu::now(), run.requests);
    let audited = audit_len(&edges).await - audit_before;
    println!("{text}");
    println!("machine: {}; load before: {before_load}", machine());
    println!(
        "GET /search?id=… over {n} calls, {OFFICERS} sessions, {seconds} s: {:.0} req/s, p50 {:.1} ms, p99 {:.1} ms; \
         {service_us:.0} µs service CPU and {pg_us:.0} µs PostgreSQL CPU per request; other load {others:.2} cores; \
         {audited} audit entries for {} requests",
        run.rps, run.p50_ms, run.p99_ms, run.requests
    );
    assert_eq!(
        (run.unexpected, run.non_2xx, run.socket_errors),
        (0, 0, 0),
        "every response a 200"
    );
    assert_eq!(audited, 0, "paging a submitted search appends nothing to the audit log");

    // Each kind of search on its own, one request at a time (no queueing):
    // what a page of it costs end to end.
    println!("one request at a time, 160 per kind of search (4 rounds of its 40 sessions, after one unmeasured):");
    for (kind, name) in KINDS.iter().enumerate() {
        let mut ms = Vec::new();
        for round in 0..5 {
            for (_, cookie, path) in asked.iter().filter(|(k, ..)| *k == kind) {
                let t = Instant::now();
                let r = http
                    .get(format!("{base}{path}"))
                    .header("cookie", cookie)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200, "{path}");
                r.bytes().await.unwrap();
                if round > 0 {
                    ms.push(t.elapsed().as_secs_f64() * 1000.0);
                }
            }
        }
        ms.sort_by(f64::total_cmp);
        let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
        println!(
            "  {name}: p50 {:.2} ms, p99 {:.2} ms ({} requests)",
            at(0.5),
            at(0.99),
            ms.len()
        );
    }
    server.stop().await;
}
