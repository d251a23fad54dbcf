//! Storage contract suites against every backend: blob stores (memory, local
//! files) and metadata stores (SQLite, and PostgreSQL when
//! `OPPTAK_TEST_POSTGRES` is set; required when `OPPTAK_REQUIRE_SERVICES=1`).

use opptak_store::contract::{blob_store_suite, metadata_store_suite};
use opptak_store::{open_blob_store, open_metadata_store};

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
    let e = open_blob_store("file://relative").err().unwrap().to_string();
    assert!(e.contains("absolute"), "{e}");
}
