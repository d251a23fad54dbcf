//! Compliance operations on what opptak keeps: disclosure packages for
//! public authorities and Finansklagenemnda (R10, [`disclose`]) and
//! data-subject requests — access and portability exports, erasure of what
//! the law lets go, with a report of what stays and why (R11, [`subject`]),
//! for calls and conversations (chat, secure messages, e-mail) alike.
//!
//! Both read through the call vault, decide by the retention policy, and are
//! audited before anything is decrypted. They take only the edges they use
//! ([`ComplianceEdges`]); the composition root (`src/app.rs`) builds them.
//! Formats: `docs/disclosure-and-subject-requests.md`.

pub mod disclose;
pub mod subject;

use opptak_retention::Retention;
use opptak_vault::Vault;

/// What disclosure and data-subject requests use of the outside world.
#[derive(Clone)]
pub struct ComplianceEdges {
    /// Calls, keys and sealed artifacts, hot and archive objects alike, on
    /// the deployment's clock.
    pub vault: Vault,
    /// Retention routing, holds and deletions under the deployment's policy,
    /// with the WORM archive.
    pub retention: Retention,
    /// The metadata database (reporting rows to erase, the audit log).
    pub metadata_url: String,
}

impl ComplianceEdges {
    /// The audit log in the metadata database.
    pub async fn audit(&self) -> Result<opptak_audit::Audit, opptak_audit::AuditError> {
        opptak_audit::Audit::open(
            &self.metadata_url,
            self.vault.keys().clone(),
            self.vault.clock().clone(),
        )
        .await
    }
}
