//! The archive (WORM) contract suite against every backend: the filesystem
//! store (time from a `ManualClock`, so 5 years pass at once) and S3 Object
//! Lock when `OPPTAK_TEST_S3_ENDPOINT` is set (MinIO from
//! `deploy/local/services.sh`; required when `OPPTAK_REQUIRE_SERVICES=1`),
//! where the server's wall clock decides, so retention there is seconds.

use bytes::Bytes;
use opptak_domain::time::iso8601;
use opptak_domain::time::{Clock, ManualClock, SystemClock};
use opptak_store::s3::{S3ArchiveStore, S3Credentials};
use opptak_store::{open_archive_store, ArchiveStore, StoreError};
use std::sync::{Arc, Mutex};

fn suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

const SEC: i64 = 1_000_000;
const YEAR: i64 = 365 * 86_400 * SEC;

/// How a suite lets time pass: a manual clock jumps, the wall clock is waited for.
enum Time {
    Manual(Arc<ManualClock>),
    Wall,
}

impl Time {
    fn now_us(&self) -> i64 {
        match self {
            Time::Manual(c) => c.now_us(),
            Time::Wall => SystemClock.now_us(),
        }
    }

    /// Until `us` is past (S3 keeps whole seconds, so the next second too).
    async fn pass(&self, us: i64) {
        match self {
            Time::Manual(c) => c.set(us + 1),
            Time::Wall => {
                let target = (us / SEC + 1) * SEC + 300_000;
                let wait = target - SystemClock.now_us();
                if wait > 0 {
                    tokio::time::sleep(std::time::Duration::from_micros(wait as u64)).await;
                }
            }
        }
    }
}

fn retained(r: Result<(), StoreError>, path: &str, needle: &str) {
    match r {
        Err(StoreError::Retained(m)) => {
            assert!(
                m.contains(path) && m.contains(needle),
                "{m:?} should name {path} and {needle}"
            )
        }
        other => panic!("expected Retained for {path}, got {other:?}"),
    }
}

fn not_found<T: std::fmt::Debug>(r: Result<T, StoreError>) {
    assert!(
        matches!(r, Err(StoreError::NotFound(_))),
        "expected NotFound, got {r:?}"
    );
}

/// `step_us`: the retention given to new objects (5 years on a manual clock,
/// a few seconds on the wall clock; every check before `pass` must fit in it).
async fn archive_suite(store: Arc<dyn ArchiveStore>, time: &Time, prefix: &str, step_us: i64) {
    let a = format!("{prefix}/archive/call-1/arc-1.optk");
    let b = format!("{prefix}/archive/call-2/arc-1.optk");
    let data = Bytes::from((0..=255u8).cycle().take(100_000).collect::<Vec<_>>());
    let t0 = time.now_us();
    let until = t0 + step_us;

    // Round trip; retention reported (S3: whole seconds, never earlier).
    store.put_retained(&a, data.clone(), until).await.unwrap();
    store.put_retained(&b, Bytes::from_static(b"bee"), until).await.unwrap();
    let mut both = vec![a.clone(), b.clone()];
    both.sort();
    assert_eq!(
        store.list(&format!("{prefix}/archive/")).await.unwrap(),
        both,
        "list: objects, no sidecars"
    );
    assert_eq!(store.get(&a).await.unwrap(), data);
    assert_eq!(store.get_range(&a, 1000..1010).await.unwrap(), data.slice(1000..1010));
    assert_eq!(
        store.get_range(&a, 99_990..100_000).await.unwrap(),
        data.slice(99_990..)
    );
    assert!(
        store.get_range(&a, 99_990..100_001).await.is_err(),
        "a range past the end is an error"
    );
    let r = store.retention(&a).await.unwrap();
    assert!(
        r.retain_until_us >= until && r.retain_until_us < until + SEC,
        "retain-until {} for {}",
        iso8601(r.retain_until_us),
        iso8601(until)
    );
    assert!(!r.legal_hold);
    not_found(store.get(&format!("{prefix}/archive/none")).await);
    not_found(store.retention(&format!("{prefix}/archive/none")).await);
    not_found(store.delete(&format!("{prefix}/archive/none")).await);
    assert!(matches!(
        store
            .put_retained(&format!("{prefix}/x/../y"), data.clone(), until)
            .await,
        Err(StoreError::Config(_))
    ));
    assert!(
        store
            .put_retained(&format!("{prefix}/archive/past"), data.clone(), t0 - YEAR)
            .await
            .is_err(),
        "a retain-until in the past is refused"
    );

    // Never overwritten.
    retained(
        store
            .put_retained(&a, Bytes::from_static(b"other"), until + step_us)
            .await,
        &a,
        "never overwritten",
    );
    assert_eq!(store.get(&a).await.unwrap(), data);
    assert_eq!(store.retention(&a).await.unwrap(), r);

    // Not deleted before retain-until, and still readable afterwards (on S3
    // this is what tells a refused versioned DELETE from a delete marker).
    retained(store.delete(&a).await, &a, &iso8601(r.retain_until_us));
    assert_eq!(store.get(&a).await.unwrap(), data);
    assert_eq!(store.retention(&a).await.unwrap(), r);

    // Retention only grows.
    let later = r.retain_until_us + SEC;
    store.extend_retention(&a, later).await.unwrap();
    let r2 = store.retention(&a).await.unwrap();
    assert_eq!(r2.retain_until_us / SEC, later / SEC);
    store.extend_retention(&a, r2.retain_until_us).await.unwrap();
    retained(
        store.extend_retention(&a, until).await,
        &a,
        &iso8601(r2.retain_until_us),
    );
    assert_eq!(store.retention(&a).await.unwrap(), r2);

    // A legal hold outlasts retain-until; releasing it allows the delete.
    store.set_legal_hold(&a, true).await.unwrap();
    assert!(store.retention(&a).await.unwrap().legal_hold);
    time.pass(r2.retain_until_us).await;
    retained(store.delete(&a).await, &a, "legal hold");
    assert_eq!(store.get(&a).await.unwrap(), data);

    // Past retain-until without a hold: deleted, every version.
    store.delete(&b).await.unwrap();
    not_found(store.get(&b).await);
    store.set_legal_hold(&a, false).await.unwrap();
    assert!(!store.retention(&a).await.unwrap().legal_hold);
    store.delete(&a).await.unwrap();
    not_found(store.get(&a).await);
    not_found(store.get_range(&a, 0..1).await);
    not_found(store.retention(&a).await);
    not_found(store.delete(&a).await);
    not_found(store.extend_retention(&a, later + YEAR).await);
    not_found(store.set_legal_hold(&a, true).await);
}

#[tokio::test]
async fn file_archive_store() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_764_000_000_000_123));
    let store = open_archive_store(&format!("file://{}", dir.path().display()), clock.clone()).unwrap();
    archive_suite(store, &Time::Manual(clock), &suffix(), 5 * YEAR).await;
}

/// Collects every log line of the test process (refusals log from blocking threads).
#[derive(Clone, Default)]
struct LogBuf(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn file_archive_files_survive_reopen_and_refusals_are_logged() {
    use std::os::unix::fs::PermissionsExt;
    let logs = LogBuf::default();
    let writer = logs.clone();
    let _ = tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish(),
    );

    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let t0 = 1_764_000_000_000_000;
    let clock = Arc::new(ManualClock::new(t0));
    let store = open_archive_store(&url, clock.clone()).unwrap();
    let p = format!("{}/archive/c/arc.optk", suffix());
    store
        .put_retained(&p, Bytes::from_static(b"x"), t0 + 5 * YEAR)
        .await
        .unwrap();
    store.set_legal_hold(&p, true).await.unwrap();
    for f in [p.clone(), format!("{p}.lock.json")] {
        let mode = std::fs::metadata(dir.path().join(&f)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
    let side = std::fs::read_to_string(dir.path().join(format!("{p}.lock.json"))).unwrap();
    assert!(
        side.contains(&iso8601(t0 + 5 * YEAR)) && side.contains("\"legal_hold\": true"),
        "{side}"
    );
    let names: Vec<_> = std::fs::read_dir(dir.path().join(&p).parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "no temporary files left: {names:?}");

    // A new process (store) sees the same retention and still refuses.
    let clock2 = Arc::new(ManualClock::new(t0 + 6 * YEAR));
    let again = open_archive_store(&url, clock2.clone()).unwrap();
    assert!(again.describe().starts_with("file://"));
    let r = again.retention(&p).await.unwrap();
    assert_eq!((r.retain_until_us, r.legal_hold), (t0 + 5 * YEAR, true));
    retained(again.delete(&p).await, &p, "legal hold");
    retained(
        again.put_retained(&p, Bytes::from_static(b"y"), t0 + 9 * YEAR).await,
        &p,
        "never overwritten",
    );
    let logged = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let refusals: Vec<_> = logged
        .lines()
        .filter(|l| l.contains("WARN") && l.contains(&p))
        .collect();
    assert_eq!(refusals.len(), 2, "every refusal is logged: {logged}");
    assert!(
        refusals[0].contains("op=\"delete\"") && refusals[0].contains("legal_hold=true"),
        "{}",
        refusals[0]
    );

    again.set_legal_hold(&p, false).await.unwrap();
    again.delete(&p).await.unwrap();
    assert!(!dir.path().join(&p).exists() && !dir.path().join(format!("{p}.lock.json")).exists());
    assert!(
        !dir.path().join(&p).parent().unwrap().exists(),
        "empty directories are removed"
    );
}

#[test]
fn bad_urls_say_what_to_use() {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let e = open_archive_store("memory://", clock.clone())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("file://") && e.contains("s3://"), "{e}");
    let e = open_archive_store("file://relative", clock.clone())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("absolute"), "{e}");
    if std::env::var_os("OPPTAK_S3_ACCESS_KEY").is_none() {
        let e = open_archive_store("s3://bucket", clock).err().unwrap().to_string();
        assert!(e.contains("OPPTAK_S3_ACCESS_KEY"), "{e}");
    }
}

#[tokio::test]
async fn s3_archive_store() {
    let Ok(endpoint) = std::env::var("OPPTAK_TEST_S3_ENDPOINT") else {
        assert_ne!(
            std::env::var("OPPTAK_REQUIRE_SERVICES").as_deref(),
            Ok("1"),
            "OPPTAK_TEST_S3_ENDPOINT not set"
        );
        eprintln!("skipping: OPPTAK_TEST_S3_ENDPOINT not set");
        return;
    };
    let creds = S3Credentials::new(
        std::env::var("OPPTAK_TEST_S3_ACCESS_KEY").unwrap(),
        std::env::var("OPPTAK_TEST_S3_SECRET_KEY").unwrap(),
    );
    // One bucket for every run (a bucket holding locked objects cannot be
    // removed); each run writes under its own prefix.
    let url = format!("s3://opptak-archive-test?endpoint={endpoint}&region=us-east-1");
    let store = S3ArchiveStore::open(&url, creds).unwrap();
    store.create_bucket().await.unwrap();
    store.create_bucket().await.unwrap();
    assert!(store.describe().contains("COMPLIANCE"));
    let store = Arc::new(store);
    let prefix = format!("run-{}", suffix());
    tokio::join!(
        archive_suite(store.clone(), &Time::Wall, &prefix, 4 * SEC),
        versions_are_deleted(&store, &prefix)
    );
}

/// A refused delete leaves the one version and adds no delete marker; a
/// delete after retain-until leaves no version at all (a DELETE without
/// version id would only hide it behind a marker).
async fn versions_are_deleted(store: &S3ArchiveStore, prefix: &str) {
    let p = format!("{prefix}/versions/arc.optk");
    let until = SystemClock.now_us() + 2 * SEC;
    store.put_retained(&p, Bytes::from_static(b"v"), until).await.unwrap();
    retained(store.delete(&p).await, &p, "retained until");
    let v = store.versions_of(&p).await.unwrap();
    assert!(v.len() == 1 && !v[0].delete_marker, "{v:?}");
    Time::Wall.pass(until).await;
    store.delete(&p).await.unwrap();
    assert_eq!(store.versions_of(&p).await.unwrap(), vec![]);
}
