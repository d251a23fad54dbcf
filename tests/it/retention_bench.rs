//! Sweeper throughput and policy recompute time over a large population in
//! PostgreSQL (BENCHMARKS.md). Not part of the test run; run by hand:
//!
//! ```sh
//! eval "$(deploy/local/services.sh env)"
//! OPPTAK_BENCH_CALLS=400000 OPPTAK_BENCH_DUE=50000 \
//!   cargo test --release --test it retention_bench:: -- --ignored --nocapture
//! ```
//!
//! The population is written with SQL (`generate_series`): every call has a
//! recording (24 h) and every second call an archive copy (5 y), each with
//! its own wrapped data key and retention row. `OPPTAK_BENCH_DUE` recordings
//! have expired when the sweeper runs. Objects are not written (locations are
//! empty): this measures the metadata work — selecting due rows, marking them,
//! evidence, shredding keys — which is what grows with the population.

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

    let clock = Arc::new(ManualClock::new(base + 24 * HOUR));
    let blobs = opptak_store::open_blob_store("memory://").unwrap();
    let clock_dyn: Arc<dyn Clock> = clock.clone();
    let policy = Arc::new(opptak_domain::retention::Policy::default_policy());
    let retention = Retention::new(meta.clone(), blobs, policy, clock_dyn);
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
    assert_eq!(n as i64, calls);
    println!(
        "recompute: {n} calls re-routed in {secs:.1} s: {:.0} calls/s",
        n as f64 / secs
    );
}
