//! Storage edges of opptak.
//!
//! - [`blob`]: the [`BlobStore`] trait, the hot store (`memory://`,
//!   `file:///path` over the object_store crate; `s3://` in an unversioned
//!   bucket, see `docs/blob-store.md`). Only sealed data is ever written here.
//! - [`meta`]: the [`MetadataStore`] trait and its SQL implementation (sqlx
//!   `Any`: `postgres://` in production, `sqlite://` embedded), with
//!   migrations per backend under `migrations/`. The two sets are the same
//!   statements; the one documented difference is the byte-string type
//!   (`BYTEA` on PostgreSQL, `BLOB` on SQLite), and a test fails when they
//!   drift apart in anything else.
//! - [`archive`]: the [`ArchiveStore`] trait, WORM storage for records kept
//!   for years (`file:///path` enforced by opptak, [`archive::s3`] with Object Lock in
//!   COMPLIANCE mode); see `docs/archive-store.md`.
//! - [`s3`]: both S3 stores and their credentials in one place; the client
//!   they share (SigV4, path-style requests, credentials from the
//!   environment) is `s3_client`.
//! - [`search`]: the call search of compliance and QA, saved searches and
//!   the reasons stated for reading, per web session.
//! - [`contract`]: the test suites every backend passes.

pub mod archive;
pub mod audit;
pub mod blob;
pub mod contract;
pub mod meta;
pub mod reporting;
pub mod review;
mod s3_client;
pub mod search;
pub mod users;

pub use archive::{open_archive_store, ArchiveStore, FsArchiveStore, Retention};
pub use blob::{open_blob_store, BlobStore};
pub use meta::{open_metadata_store, MetadataStore};

/// The S3 stores (archive with Object Lock, hot store without versioning)
/// and their credentials.
pub mod s3 {
    pub use crate::archive::s3::{ObjectVersion, S3ArchiveStore};
    pub use crate::blob::s3::S3BlobStore;
    pub use crate::s3_client::S3Credentials;
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found: {0}")]
    NotFound(String),
    /// Transient: connection lost, timeout. Retrying may succeed.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error("storage configuration: {0}")]
    Config(String),
    /// The stored data contradicts itself (a bug or tampering).
    #[error("inconsistent stored data: {0}")]
    Corrupt(String),
    /// Someone else changed the rows this write expected to own (another
    /// recorder took over the calls); nothing of the write was applied.
    #[error("write conflict: {0}")]
    Conflict(String),
    /// The archive refused an overwrite, an earlier retain-until or a delete
    /// before retain-until or under a legal hold (WORM). Not retryable.
    #[error("retained: {0}")]
    Retained(String),
}

#[cfg(test)]
mod migration_drift {
    //! The PostgreSQL and SQLite migrations must say the same thing: same
    //! files, same statements, up to the documented type differences.

    /// (PostgreSQL, SQLite) spellings that may differ.
    const TYPE_DIFFERENCES: &[(&str, &str)] = &[("BYTEA", "BLOB")];

    fn files(dialect: &str) -> Vec<(String, String)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join(dialect);
        let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| {
                let path = e.map(|e| e.path()).unwrap_or_default();
                let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
                (name, std::fs::read_to_string(&path).unwrap_or_default())
            })
            .collect();
        out.sort();
        out
    }

    /// The statements of a migration: comments dropped, whitespace folded,
    /// the dialect's own type names replaced by the PostgreSQL ones.
    fn statements(sql: &str, sqlite: bool) -> Vec<String> {
        let text: String = sql
            .lines()
            .map(|l| l.split("--").next().unwrap_or_default())
            .collect::<Vec<_>>()
            .join(" ");
        text.split(';')
            .map(|s| {
                let mut s = s.split_whitespace().collect::<Vec<_>>().join(" ");
                if sqlite {
                    for (pg, lite) in TYPE_DIFFERENCES {
                        s = s.replace(lite, pg);
                    }
                }
                s
            })
            .filter(|s| !s.is_empty())
            .collect()
    }

    #[test]
    fn postgres_and_sqlite_migrations_are_the_same_statements() {
        let (pg, lite) = (files("postgres"), files("sqlite"));
        let names = |v: &[(String, String)]| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        assert_eq!(names(&pg), names(&lite), "the same migration files on both backends");
        assert!(pg.len() >= 9, "{:?}", names(&pg));
        for ((name, p), (_, l)) in pg.iter().zip(&lite) {
            let (p, l) = (statements(p, false), statements(l, true));
            assert_eq!(p.len(), l.len(), "{name}: statement count differs");
            for (a, b) in p.iter().zip(&l) {
                assert_eq!(a, b, "{name}: the backends' migrations drifted apart");
            }
        }
    }

    #[test]
    fn the_comparison_sees_a_drift() {
        let pg = "CREATE TABLE t (a BYTEA NOT NULL, b BIGINT); -- note";
        assert_eq!(
            statements(pg, false),
            statements("CREATE TABLE t (a BLOB NOT NULL,\n b BIGINT);", true)
        );
        assert_ne!(
            statements(pg, false),
            statements("CREATE TABLE t (a BLOB NOT NULL, b INTEGER);", true)
        );
    }
}
