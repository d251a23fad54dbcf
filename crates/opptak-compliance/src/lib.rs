//! Compliance operations on what opptak keeps: disclosure packages for
//! public authorities and Finansklagenemnda (R10, [`disclose`]) and
//! data-subject requests — access and portability exports, erasure of what
//! the law lets go, with a report of what stays and why (R11, [`subject`]).
//!
//! Both read through the call vault, decide by the retention policy, and are
//! audited before anything is decrypted. They take only the edges they use
//! ([`ComplianceEdges`]); the composition root (`src/app.rs`) builds them.
//! Formats: `docs/disclosure-and-subject-requests.md`.

pub mod disclose;
pub mod subject;

use opptak_crypto::KeyProvider;
use opptak_domain::retention::Policy;
use opptak_domain::time::Clock;
use opptak_store::archive::ArchiveStore;
use opptak_store::{BlobStore, MetadataStore};
use std::sync::Arc;

/// What disclosure and data-subject requests use of the outside world.
#[derive(Clone)]
pub struct ComplianceEdges {
    pub meta: Arc<dyn MetadataStore>,
    /// Hot and archive objects alike.
    pub blobs: Arc<dyn BlobStore>,
    pub keys: Arc<dyn KeyProvider>,
    pub clock: Arc<dyn Clock>,
    pub policy: Arc<Policy>,
    pub archive: Arc<dyn ArchiveStore>,
    /// The metadata database (reporting rows to erase, the audit log).
    pub metadata_url: String,
}

impl ComplianceEdges {
    /// The call vault over these edges.
    pub fn vault(&self) -> opptak_vault::Vault {
        opptak_vault::Vault::new(
            self.meta.clone(),
            self.blobs.clone(),
            self.keys.clone(),
            self.clock.clone(),
        )
    }

    /// Retention routing, holds and deletions over these edges.
    pub fn retention(&self) -> opptak_retention::Retention {
        opptak_retention::Retention::new(
            self.meta.clone(),
            self.blobs.clone(),
            self.policy.clone(),
            self.clock.clone(),
        )
        .with_archive(self.archive.clone())
    }

    /// The audit log in the metadata database.
    pub async fn audit(&self) -> anyhow::Result<opptak_audit::Audit> {
        opptak_audit::Audit::open(&self.metadata_url, self.keys.clone(), self.clock.clone()).await
    }
}
