//! Storage edges of opptak.
//!
//! - [`blob`]: the [`BlobStore`] trait over the object_store crate
//!   (`memory://`, `file:///path`; S3 arrives with the archive issue). Only
//!   sealed segments are ever written here.
//! - [`meta`]: the [`MetadataStore`] trait and its SQL implementation (sqlx
//!   `Any`: `postgres://` in production, `sqlite://` embedded), with
//!   migrations per backend under `migrations/`.
//! - [`archive`]: the [`ArchiveStore`] trait, WORM storage for records kept
//!   for years (`file:///path` enforced by opptak, [`s3`] with Object Lock in
//!   COMPLIANCE mode); see `docs/archive-store.md`.
//! - [`contract`]: the test suites every backend passes.

pub mod archive;
pub mod audit;
pub mod blob;
pub mod contract;
pub mod meta;
pub mod reporting;
pub mod review;
pub mod s3;
pub mod users;

pub use archive::{open_archive_store, ArchiveStore, FsArchiveStore, Retention};
pub use blob::{open_blob_store, BlobStore};
pub use meta::{open_metadata_store, MetadataStore};

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
