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
    let Ok(url) = std::env::var("OPPTAK_TEST_POSTGRES") else {
        assert_ne!(
            std::env::var("OPPTAK_REQUIRE_SERVICES").as_deref(),
            Ok("1"),
            "OPPTAK_TEST_POSTGRES not set"
        );
        eprintln!("skipping: OPPTAK_TEST_POSTGRES not set");
        return;
    };
    // A fresh database per run: migrations and data of earlier runs cannot interfere.
    use sqlx::Connection;
    let db = format!("store_{}", suffix());
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {db}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let url = format!("{}/{db}", url.rsplit_once('/').unwrap().0);
    metadata_store_suite(open_metadata_store(&url).await.unwrap(), &suffix()).await;
    drop(conn);
}

#[test]
fn bad_urls_say_what_to_use() {
    let e = open_blob_store("s4://x").err().unwrap().to_string();
    assert!(e.contains("memory://"), "{e}");
    let e = open_blob_store("file://relative").err().unwrap().to_string();
    assert!(e.contains("absolute"), "{e}");
}
