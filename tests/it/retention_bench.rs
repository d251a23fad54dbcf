//! Sweeper throughput and policy recompute time over a large population in
//! PostgreSQL (BENCHMARKS.md). Not part of the test run; run by hand:
//!
//! ```sh
//! eval "$(deploy/local/services.sh env)"
//! OPPTAK_BENCH_CALLS=400000 OPPTAK_BENCH_CONVERSATIONS=1000000 OPPTAK_BENCH_DUE=50000 \
//!   cargo test --release --test it retention_bench:: -- --ignored --nocapture --test-threads 1
//! ```
//!
//! The population is written with SQL (`generate_series`): every call has a
//! recording (24 h) and every second call an archive copy (5 y), each with
//! its own wrapped data key and retention row. `OPPTAK_BENCH_DUE` recordings
//! have expired when the sweeper runs. Objects are not written (locations are
//! empty): this measures the metadata work — selecting due rows, marking them,
//! evidence, shredding keys — which is what grows with the population.
//!
//! The second benchmark does the same over conversations (issue 17): every
//! conversation an analysis copy (1 y), the logged-in two thirds a customer
//! copy (3 y), the advisor chats (a third) an advisor copy (5 y);
//! `OPPTAK_BENCH_DUE` analysis copies have expired. Each drops its database
//! at the end (they are gigabytes).

use crate::common;

use opptak_domain::time::{Clock, ManualClock};
use opptak_retention::Retention;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

const HOUR: i64 = 3_600_000_000;

fn env_num(name: &str, default: i64) -> i64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: minutes; run by hand (see the file's header)"]
async fn sweeper_and_recompute_over_a_large_population() {
    let calls = env_num("OPPTAK_BENCH_CALLS", 400_000);
    let due = env_num("OPPTAK_BENCH_DUE", 50_000).min(calls);
    let url = common::postgres_db("bench_retention")
        .await
        .expect("PostgreSQL (deploy/local/services.sh)");
    let meta = opptak_store::open_metadata_store(&url).await.unwrap();
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let base: i64 = 1_795_824_000_000_000;
    let t = Instant::now();
    // Calls ending 10 ms apart: the first `due` of them have recordings
    // older than 24 h when the clock reads base + 24 h.
    let sql = [
        format!(
            "INSERT INTO calls (call_id, started_at_us, direction, customer_ref, advisor_id, desk, service_category, \
             ki_enabled, customer_informed, codec, sample_rate_hz, channel_roles, state, frames, ended_at_us, end_reason, \
             created_at_us, updated_at_us) \
             SELECT 'b-' || lpad(g::text, 8, '0'), {base} - g * 10000 - 60000000, 'inbound', 'cust-' || (g % 50000), \
             'adv-1', 'customer_center', CASE WHEN g % 2 = 0 THEN 'investment_advice' ELSE 'general' END, 0, 0, \
             'pcmu', 8000, 'mixed', 'complete', 8000, {base} + (g - {due}) * 10000, 'hangup_customer', \
             {base}, {base} FROM generate_series(1::bigint, {calls}) g"
        ),
        format!(
            "INSERT INTO data_keys (key_id, call_id, class, kek_id, sealed, created_at_us) \
             SELECT 'dk-r-' || g, 'b-' || lpad(g::text, 8, '0'), 'audio-24h', 'kek-bench', '\\x00'::bytea, {base} \
             FROM generate_series(1::bigint, {calls}) g \
             UNION ALL SELECT 'dk-a-' || g, 'b-' || lpad(g::text, 8, '0'), 'archive-5y', 'kek-bench', '\\x00'::bytea, {base} \
             FROM generate_series(2::bigint, {calls}, 2) g"
        ),
        format!(
            "INSERT INTO recordings (recording_id, call_id, kind, key_id, blob_prefix, segments, complete, created_at_us) \
             SELECT 'rec-' || g, 'b-' || lpad(g::text, 8, '0'), 'recording', 'dk-r-' || g, '', 1, 1, {base} \
             FROM generate_series(1::bigint, {calls}) g \
             UNION ALL SELECT 'arc-' || g, 'b-' || lpad(g::text, 8, '0'), 'archive-copy', 'dk-a-' || g, '', 0, 1, {base} \
             FROM generate_series(2::bigint, {calls}, 2) g"
        ),
        format!(
            "INSERT INTO retention (artifact_id, call_id, kind, class, tier, location, expires_at_us, held, rules, decided_at_us) \
             SELECT 'rec-' || g, 'b-' || lpad(g::text, 8, '0'), 'recording', 'audio-24h', 'hot', '', \
             {base} + (g - {due}) * 10000 + {day}, 0, 'audio-24h (bench)', {base} FROM generate_series(1::bigint, {calls}) g \
             UNION ALL SELECT 'arc-' || g, 'b-' || lpad(g::text, 8, '0'), 'archive-copy', 'archive-5y', 'archive', '', \
             {base} + 5 * 365 * {day}, 0, 'investment-archive-5y (bench)', {base} FROM generate_series(2::bigint, {calls}, 2) g",
            day = 24 * HOUR
        ),
        "ANALYZE".to_string(),
    ];
    for s in &sql {
        if let Err(e) = sqlx::query(s).execute(&pool).await {
            panic!("{e}: {s}");
        }
    }
    let rows: i64 = sqlx::query_scalar(
        "SELECT (SELECT COUNT(*) FROM calls) + (SELECT COUNT(*) FROM data_keys) + (SELECT COUNT(*) FROM recordings) \
         + (SELECT COUNT(*) FROM retention)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    println!(
        "population: {calls} calls, {} artifacts, {rows} metadata rows, written in {:.1} s",
        calls + calls / 2,
        t.elapsed().as_secs_f64()
    );

    sweep_and_recompute(meta, base + 24 * HOUR, due, calls, "calls").await;
    pool.close().await;
    drop_database(&url).await;
}

/// Sweeps at `now_us` (asserting `due` artifacts deleted and as many keys
/// shredded), then re-routes every call or conversation (asserting
/// `population`), printing the rates.
async fn sweep_and_recompute(
    meta: Arc<dyn opptak_store::MetadataStore>,
    now_us: i64,
    due: i64,
    population: i64,
    what: &str,
) {
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(now_us));
    let blobs = opptak_store::open_blob_store("memory://").unwrap();
    let policy = Arc::new(opptak_domain::retention::Policy::default_policy());
    let retention = Retention::new(meta, blobs, policy, clock);
    let t = Instant::now();
    let report = retention.sweep(500, &AtomicBool::new(false), |_| {}).await.unwrap();
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(report.deleted as i64, due);
    assert_eq!(report.keys_shredded as i64, due);
    println!(
        "sweep: {} artifacts deleted and {} keys shredded in {secs:.1} s: {:.0} artifacts/s, {:.0} keys/s",
        report.deleted,
        report.keys_shredded,
        report.deleted as f64 / secs,
        report.keys_shredded as f64 / secs
    );

    let t = Instant::now();
    let (n, _) = retention
        .recompute_all("", &AtomicBool::new(false), |_, _| {})
        .await
        .unwrap();
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(n as i64, population);
    println!(
        "recompute: {n} {what} re-routed in {secs:.1} s: {:.0} {what}/s",
        n as f64 / secs
    );
}

/// Drops a benchmark's database (PostgreSQL keeps gigabytes otherwise),
/// once the store's pool has let its connections go (`WITH (FORCE)` would
/// also have to end autovacuum, which the test role may not).
async fn drop_database(url: &str) {
    use sqlx::Connection;
    let base = std::env::var("OPPTAK_TEST_POSTGRES").unwrap();
    let (_, db) = url.rsplit_once('/').unwrap();
    let mut conn = sqlx::PgConnection::connect(&base).await.unwrap();
    for attempt in 1.. {
        match sqlx::query(&format!("DROP DATABASE {db}")).execute(&mut conn).await {
            Ok(_) => return,
            Err(e) if attempt < 20 => {
                eprintln!("dropping {db}: {e}; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            Err(e) => panic!("dropping {db}: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: many minutes; run by hand (see the file's header)"]
async fn sweeper_and_recompute_over_a_million_conversations() {
    let convs = env_num("OPPTAK_BENCH_CONVERSATIONS", 1_000_000);
    let due = env_num("OPPTAK_BENCH_DUE", 50_000).min(convs);
    let url = common::postgres_db("bench_conversations")
        .await
        .expect("PostgreSQL (deploy/local/services.sh)");
    let meta = opptak_store::open_metadata_store(&url).await.unwrap();
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let base: i64 = 1_795_824_000_000_000;
    let day = 24 * HOUR;
    let year = 365 * day;
    let t = Instant::now();
    // Conversations ending 10 ms apart: the first `due` of them have analysis
    // copies older than a year when the clock reads base + 365 days. By
    // g % 3: 0 anonymous with Aino, 1 logged in with Aino, 2 an advisor chat.
    let id = "'v-' || lpad(g::text, 8, '0')";
    let ended = format!("{base} + (g - {due}) * 10000");
    let all = format!("FROM generate_series(1::bigint, {convs}) g");
    let logged_in = format!("{all} WHERE g % 3 <> 0");
    let advisor = format!("{all} WHERE g % 3 = 2");
    let sql = [
        format!(
            "INSERT INTO calls (call_id, started_at_us, direction, customer_ref, advisor_id, desk, service_category, \
             ki_enabled, customer_informed, codec, sample_rate_hz, channel_roles, state, ended_at_us, end_reason, \
             last_sequence, created_at_us, updated_at_us, medium) \
             SELECT {id}, {ended} - 600000000, 'inbound', \
             CASE WHEN g % 3 = 0 THEN '' ELSE 'cust-' || (g % 50000) END, \
             CASE WHEN g % 3 = 2 THEN 'adv-' || (g % 50) ELSE '' END, \
             CASE WHEN g % 3 = 2 THEN 'customer_center' ELSE 'unspecified' END, \
             CASE WHEN g % 3 = 2 THEN 'savings' ELSE 'general' END, \
             0, 0, 'text', 0, '', 'ended', {ended}, 'closed_by_customer', 10, {base}, {base}, 'conversation' {all}"
        ),
        format!(
            "INSERT INTO conversations (call_id, channel, sealed_origin, handover_at_us, messages, last_event_at_us, \
             written_at_us) \
             SELECT {id}, CASE WHEN g % 3 = 2 THEN 'advisor_chat' ELSE 'aino_chatbot' END, NULL, NULL, 10, \
             {ended}, {ended} + 1000000 {all}"
        ),
        format!(
            "INSERT INTO data_keys (key_id, call_id, class, kek_id, sealed, created_at_us) \
             SELECT 'dk-ca-' || g, {id}, 'chat-analysis-1y', 'kek-bench', '\\x00'::bytea, {base} {all} \
             UNION ALL SELECT 'dk-cc-' || g, {id}, 'chat-customer-3y', 'kek-bench', '\\x00'::bytea, {base} {logged_in} \
             UNION ALL SELECT 'dk-cv-' || g, {id}, 'chat-advisor-5y', 'kek-bench', '\\x00'::bytea, {base} {advisor}"
        ),
        format!(
            "INSERT INTO recordings (recording_id, call_id, kind, key_id, blob_prefix, segments, complete, created_at_us) \
             SELECT 'ca-' || g, {id}, 'chat-analysis', 'dk-ca-' || g, '', 0, 1, {base} {all} \
             UNION ALL SELECT 'cc-' || g, {id}, 'chat-customer', 'dk-cc-' || g, '', 0, 1, {base} {logged_in} \
             UNION ALL SELECT 'cv-' || g, {id}, 'chat-advisor', 'dk-cv-' || g, '', 0, 1, {base} {advisor}"
        ),
        format!(
            "INSERT INTO retention (artifact_id, call_id, kind, class, tier, location, expires_at_us, held, rules, \
             decided_at_us) \
             SELECT 'ca-' || g, {id}, 'chat-analysis', 'chat-analysis-1y', 'hot', '', {ended} + {year}, 0, \
             'chat-analysis-1y (bench)', {base} {all} \
             UNION ALL SELECT 'cc-' || g, {id}, 'chat-customer', 'chat-customer-3y', 'hot', '', {ended} + 3 * {year}, 0, \
             'chat-customer-3y (bench)', {base} {logged_in} \
             UNION ALL SELECT 'cv-' || g, {id}, 'chat-advisor', 'chat-advisor-5y', 'hot', '', {ended} + 5 * {year}, 0, \
             'chat-advisor-5y (bench)', {base} {advisor}"
        ),
        "ANALYZE".to_string(),
    ];
    for s in &sql {
        if let Err(e) = sqlx::query(s).execute(&pool).await {
            panic!("{e}: {s}");
        }
    }
    let (artifacts, rows): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM recordings), (SELECT COUNT(*) FROM calls) + (SELECT COUNT(*) FROM conversations) \
         + (SELECT COUNT(*) FROM data_keys) + (SELECT COUNT(*) FROM recordings) + (SELECT COUNT(*) FROM retention)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(artifacts, convs + (convs - convs / 3) + (convs + 1) / 3);
    println!(
        "population: {convs} conversations, {artifacts} artifacts, {rows} metadata rows, written in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // Conversations are facts the policy reads like calls.
    let blobs = opptak_store::open_blob_store("memory://").unwrap();
    let policy = Arc::new(opptak_domain::retention::Policy::default_policy());
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(base + year));
    let (record, _) = Retention::new(meta.clone(), blobs, policy, clock)
        .conversation_facts(&opptak_domain::model::CallId::parse("v-00000002").unwrap())
        .await
        .unwrap();
    assert!(record.facts.logged_in() && record.facts.with_advisor() && record.written_at_us.is_some());
    sweep_and_recompute(meta, base + year, due, convs, "conversations").await;
    // The analysis keys of the expired copies are gone, and every live
    // copy's row was re-routed by the policy.
    let shredded: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM data_keys WHERE class = 'chat-analysis-1y' AND destroyed_at_us IS NOT NULL",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(shredded, due);
    let bench_rules: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM retention WHERE deleted_at_us IS NULL AND rules LIKE '%(bench)'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(bench_rules, 0);
    pool.close().await;
    drop_database(&url).await;
}
