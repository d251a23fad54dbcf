//! PostgreSQL failover (issue 20): the metadata store opened with a
//! multi-host URL (`target_session_attrs=read-write`) on a primary and its
//! synchronous standby of this test's own (`tests/it/fault/pg.rs`) keeps
//! writing while the primary is SIGKILLed and the standby promoted: it
//! finds the new primary by itself, and every write it acknowledged before
//! the kill is there. The fault suite's `postgres_failover_loses_and_duplicates_nothing`
//! does the same under the whole pipeline's load.
//!
//! Needs the PostgreSQL server binaries (`deploy/local/services.sh
//! install`); skipped without them unless `OPPTAK_REQUIRE_SERVICES=1`.

use crate::common;
use crate::fault::pg::{PgPair, DB};
use opptak_domain::model::CallId;
use opptak_store::meta::OptOut;
use opptak_store::{MetadataStore, StoreError};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The pair under a directory of its own that the server user can reach,
/// or `None` (skipped) without the binaries.
async fn private_pair(dir: &std::path::Path) -> Option<PgPair> {
    if let Err(why) = PgPair::available() {
        return common::skip(&why);
    }
    let d = dir.to_owned();
    let pair = tokio::task::spawn_blocking(move || PgPair::start(&d))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("the private PostgreSQL pair: {e}"));
    Some(pair)
}

/// A temporary directory every user may pass through (PostgreSQL runs as
/// its own user below it).
fn reachable_tempdir(prefix: &str) -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new().prefix(prefix).tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// Waits until `done`, failing the test after `limit` (a bound, not a measure).
async fn until(what: &str, limit: Duration, done: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "not {what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_follows_the_promoted_standby_and_keeps_every_acknowledged_write() {
    let dir = reachable_tempdir("opptak-pgfail");
    let Some(mut pair) = private_pair(dir.path()).await else {
        return;
    };
    let (p, s) = (pair.primary.port, pair.standby.port);
    // The standby listed first: the store still opens on the primary.
    let url = format!("postgres://{DB}@127.0.0.1:{s},127.0.0.1:{p}/{DB}?target_session_attrs=read-write");
    let store: Arc<dyn MetadataStore> = opptak_store::open_metadata_store(&url).await.unwrap();

    // One writer, each write once acknowledged never again: an opt-out kept
    // per call id. A write that fails (the primary gone) is tried again.
    let acked: Arc<Mutex<Vec<CallId>>> = Arc::default();
    let failed = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let prefix = common::unique("pgfail");
    let writer = {
        let (store, acked, failed, stop) = (store.clone(), acked.clone(), failed.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let id = CallId::parse(&format!("{prefix}-{n}")).unwrap();
                let o = OptOut {
                    at_us: n as i64,
                    requested_by: "the failover test".into(),
                    offset_us: 0,
                };
                match store.keep_early_opt_out(&id, &o, n as i64).await {
                    Ok(()) => {
                        acked.lock().unwrap().push(id);
                        n += 1;
                    }
                    Err(StoreError::Unavailable(_)) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(e) => panic!("{id}: {e}"),
                }
            }
        })
    };
    let count = || acked.lock().unwrap().len();
    until("100 writes acknowledged", Duration::from_secs(60), || count() >= 100).await;

    let pid = pair.kill_primary().unwrap();
    let at_kill = count();
    eprintln!("[pg-failover] primary (pid {pid}) SIGKILLed after {at_kill} writes");
    // Writes fail while there is no primary (the standby takes none).
    until("a write failing after the kill", Duration::from_secs(60), || {
        failed.load(Ordering::Relaxed) > 0
    })
    .await;
    let t = Instant::now();
    pair.promote_standby().await.unwrap();
    eprintln!("[pg-failover] standby promoted");
    until("100 more writes acknowledged", Duration::from_secs(120), || {
        count() >= at_kill + 100
    })
    .await;
    eprintln!(
        "[pg-failover] writing again {:.1} s after the promotion; {} writes failed meanwhile",
        t.elapsed().as_secs_f64(),
        failed.load(Ordering::Relaxed)
    );
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();

    // Every acknowledged write is on the new primary: through the store,
    // and on the promoted standby read directly.
    let acked = acked.lock().unwrap().clone();
    for id in &acked {
        assert!(
            store.early_opt_out(id).await.unwrap().is_some(),
            "{id}: acknowledged, not on the new primary"
        );
    }
    assert!(!PgPair::in_recovery(s).await.unwrap(), "the standby was promoted");
    let direct: i64 = {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&pair.standby.admin_url(DB)).await.unwrap();
        sqlx::query_scalar("SELECT count(*) FROM early_opt_outs WHERE requested_by = 'the failover test'")
            .fetch_one(&mut c)
            .await
            .unwrap()
    };
    assert!(
        direct as usize >= acked.len(),
        "{direct} rows, {} acknowledged",
        acked.len()
    );

    // A store opened now, with the dead primary listed first, opens on the
    // new one.
    let again = opptak_store::open_metadata_store(&pair.url()).await.unwrap();
    assert!(again.early_opt_out(&acked[0]).await.unwrap().is_some());
    again
        .keep_early_opt_out(
            &CallId::parse("pgfail-after").unwrap(),
            &OptOut {
                at_us: 0,
                requested_by: "the failover test".into(),
                offset_us: 0,
            },
            0,
        )
        .await
        .unwrap();
}
