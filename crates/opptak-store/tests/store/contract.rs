//! Storage contract suites against every backend: blob stores (memory, local
//! files, and S3 when `OPPTAK_TEST_S3_ENDPOINT` is set) and metadata stores
//! (SQLite, and PostgreSQL when `OPPTAK_TEST_POSTGRES` is set). With
//! `OPPTAK_REQUIRE_SERVICES=1` a missing service fails instead of skipping.

use bytes::Bytes;
use opptak_store::contract::{blob_store_suite, metadata_store_suite};
use opptak_store::s3::{S3ArchiveStore, S3BlobStore, S3Credentials};
use opptak_store::{open_blob_store, open_metadata_store, ArchiveStore, BlobStore, StoreError};
use std::sync::Arc;

fn suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[tokio::test]
async fn memory_blob_store() {
    blob_store_suite(open_blob_store("memory://").unwrap(), &suffix()).await;
}

#[tokio::test]
async fn file_blob_store() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    blob_store_suite(open_blob_store(&url).unwrap(), &suffix()).await;
}

#[tokio::test]
async fn sqlite_metadata_store() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/meta.db", dir.path().display());
    metadata_store_suite(open_metadata_store(&url).await.unwrap(), &suffix()).await;
}

#[tokio::test]
async fn postgres_metadata_store() {
    let Some(url) = crate::fresh_postgres("store").await else {
        return;
    };
    metadata_store_suite(open_metadata_store(&url).await.unwrap(), &suffix()).await;
}

#[test]
fn bad_urls_say_what_to_use() {
    let e = open_blob_store("s4://x").err().unwrap().to_string();
    assert!(e.contains("memory://"), "{e}");
    assert!(e.contains("s3://"), "{e}");
    let e = open_blob_store("file://relative").err().unwrap().to_string();
    assert!(e.contains("absolute"), "{e}");
    if std::env::var_os("OPPTAK_S3_ACCESS_KEY").is_none() {
        let e = open_blob_store("s3://hot").err().unwrap().to_string();
        assert!(e.contains("OPPTAK_S3_ACCESS_KEY"), "{e}");
    }
}

/// MinIO's endpoint and credentials from `deploy/local/services.sh env`.
fn minio() -> Option<(String, S3Credentials)> {
    let Ok(endpoint) = std::env::var("OPPTAK_TEST_S3_ENDPOINT") else {
        assert_ne!(
            std::env::var("OPPTAK_REQUIRE_SERVICES").as_deref(),
            Ok("1"),
            "OPPTAK_TEST_S3_ENDPOINT not set"
        );
        eprintln!("skipping: OPPTAK_TEST_S3_ENDPOINT not set");
        return None;
    };
    let creds = S3Credentials::new(
        std::env::var("OPPTAK_TEST_S3_ACCESS_KEY").unwrap(),
        std::env::var("OPPTAK_TEST_S3_SECRET_KEY").unwrap(),
    );
    Some((endpoint, creds))
}

/// The hot-store bucket of the tests: unversioned, one for every run, each
/// run under its own prefix.
const HOT_BUCKET: &str = "opptak-hot-test";

#[tokio::test]
async fn s3_blob_store() {
    let Some((endpoint, creds)) = minio() else {
        return;
    };
    let url = |prefix: &str| format!("s3://{HOT_BUCKET}/{prefix}?endpoint={endpoint}&region=us-east-1");
    let run = format!("run-{}", suffix());
    let store = S3BlobStore::open(&url(&run), creds.clone()).unwrap();
    store.create_bucket().await.unwrap();
    store.create_bucket().await.unwrap();
    assert!(store
        .describe()
        .starts_with(&format!("s3://{HOT_BUCKET}/{run}/ at http")));
    let store = Arc::new(store);
    blob_store_suite(store.clone(), &suffix()).await;

    // Two stores in one bucket under different prefixes see nothing of each other.
    let other = S3BlobStore::open(&url(&format!("{run}-other")), creds).unwrap();
    store.put("iso/x", Bytes::from_static(b"mine")).await.unwrap();
    other.put("iso/y", Bytes::from_static(b"theirs")).await.unwrap();
    assert_eq!(store.list("").await.unwrap(), vec!["iso/x".to_owned()]);
    assert_eq!(other.list("iso").await.unwrap(), vec!["iso/y".to_owned()]);
    assert!(matches!(other.get("iso/x").await, Err(StoreError::NotFound(_))));
    store.delete("iso/x").await.unwrap();
    other.delete("iso/y").await.unwrap();
    assert!(store.list("").await.unwrap().is_empty() && other.list("").await.unwrap().is_empty());
}

/// A bucket with versioning (here: made with Object Lock, which enables it)
/// is refused before anything is written: a delete there would only hide
/// the object behind a delete marker.
#[tokio::test]
async fn s3_blob_store_refuses_a_versioned_bucket() {
    let Some((endpoint, creds)) = minio() else {
        return;
    };
    let url = |prefix: &str| format!("s3://opptak-hot-versioned-test/{prefix}?endpoint={endpoint}&region=us-east-1");
    let prefix = format!("run-{}", suffix());
    let archive = S3ArchiveStore::open(&url(&prefix), creds.clone()).unwrap();
    archive.create_bucket().await.unwrap();
    let hot = S3BlobStore::open(&url(&prefix), creds).unwrap();
    for r in [
        hot.verify().await,
        hot.put("spool/x", Bytes::from_static(b"x")).await,
        hot.delete("spool/x").await,
        hot.create_bucket().await,
    ] {
        match r {
            Err(StoreError::Config(e)) => assert!(
                e.contains("opptak-hot-versioned-test")
                    && e.contains("versioning Enabled")
                    && e.contains("noncurrent")
                    && e.contains("docs/blob-store.md"),
                "{e}"
            ),
            other => panic!("a versioned bucket must be refused: {other:?}"),
        }
    }
    assert!(archive.list("").await.unwrap().is_empty(), "nothing was written");
}

/// 403 is a configuration error naming the bucket and the operation, never
/// the secret; a missing bucket says so; no answer at all is Unavailable
/// (the recorder retries it).
#[tokio::test]
async fn s3_blob_store_errors_say_what_to_do() {
    let secret = "wrong-secret-4711";
    let wrong = S3Credentials::new("opptak-test", secret);
    // Nothing listens on port 1.
    let down = S3BlobStore::open("s3://hot?endpoint=http://127.0.0.1:1", wrong.clone()).unwrap();
    for r in [down.verify().await, down.get("a").await.map(|_| ())] {
        assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
    }
    let Some((endpoint, creds)) = minio() else {
        return;
    };
    let bad = S3BlobStore::open(&format!("s3://{HOT_BUCKET}?endpoint={endpoint}"), wrong).unwrap();
    match bad.put("spool/x", Bytes::from_static(b"x")).await {
        Err(StoreError::Config(e)) => assert!(
            e.contains(HOT_BUCKET)
                && e.contains("refused")
                && e.contains("OPPTAK_S3_SECRET_KEY")
                && !e.contains(secret),
            "{e}"
        ),
        other => panic!("wrong credentials: {other:?}"),
    }
    let missing = format!("opptak-missing-{}", &suffix()[..8]);
    let none = S3BlobStore::open(&format!("s3://{missing}?endpoint={endpoint}"), creds).unwrap();
    match none.get("x").await {
        Err(StoreError::Config(e)) => assert!(e.contains(&missing) && e.contains("does not exist"), "{e}"),
        other => panic!("missing bucket: {other:?}"),
    }
}
