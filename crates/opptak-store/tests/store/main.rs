//! opptak-store's integration tests, one module per concern, in one test
//! binary so a change links once: `cargo test -p opptak-store --test store <module>::`.
#![allow(clippy::unwrap_used)]

mod archive;
mod audit;
mod contract;
mod reporting;

/// A fresh PostgreSQL database (`<name>_<random>`) on the server of
/// `OPPTAK_TEST_POSTGRES`, so migrations and data of earlier runs cannot
/// interfere; `None` (skip) when it is not set, a failure when
/// `OPPTAK_REQUIRE_SERVICES=1`.
pub(crate) async fn fresh_postgres(name: &str) -> Option<String> {
    let Ok(url) = std::env::var("OPPTAK_TEST_POSTGRES") else {
        assert_ne!(
            std::env::var("OPPTAK_REQUIRE_SERVICES").as_deref(),
            Ok("1"),
            "OPPTAK_TEST_POSTGRES not set"
        );
        eprintln!("skipping: OPPTAK_TEST_POSTGRES not set");
        return None;
    };
    use sqlx::Connection;
    let db = format!("{name}_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {db}"))
        .execute(&mut conn)
        .await
        .unwrap();
    Some(format!("{}/{db}", url.rsplit_once('/').unwrap().0))
}
