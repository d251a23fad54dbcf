//! The review service and the libraries behind it: where the bank's staff
//! work with what opptak keeps (R3, R4, R5, R6, R9).
//!
//! Layout:
//! - [`web`]: the HTTP service (axum + maud, no JavaScript, nb/en): sign-in,
//!   sessions, CSRF, the role check, the pages and the JSON API with its
//!   OpenAPI document.
//! - [`review`]: the advisor's decisions on a draft (versions, approval into
//!   the 5-year customer-service record, rejection).
//! - [`qa`]: QA sampling per stratum, assessments, the QA report (R6).
//! - [`dashboard`]: the topic dashboard's counts with small-count
//!   suppression (R5).
//! - [`identity`]: local users and sessions (Argon2id); [`oidc`]: bearer
//!   tokens from the bank's identity provider.
//! - [`config`]: the `[web]`, `[oidc]` and `[qa]` configuration sections;
//!   [`csv`]: the CSV writer of the downloads (formula defusing).
//!
//! It takes only the edges it uses ([`ReviewEdges`]); the composition root
//! (`src/app.rs`) builds them. Every read of content and every decision is
//! audited through `opptak_audit`.

pub mod config;
pub mod csv;
pub mod dashboard;
pub mod identity;
pub mod oidc;
pub mod qa;
pub mod review;
pub mod web;

use opptak_bus::Bus;
use opptak_retention::Retention;
use opptak_vault::Vault;
use std::sync::Arc;

/// The review service's settings, from the binary's configuration.
#[derive(Clone, Debug)]
pub struct ReviewConfig {
    pub web: config::WebSection,
    pub oidc: Option<config::OidcSection>,
    pub qa: config::QaSection,
    /// The metadata database (the review, reporting and audit tables live there).
    pub metadata_url: String,
    /// The deployment's topic prefix (`bus.topic_prefix`).
    pub topic_prefix: String,
    /// Partitions of topics the service creates (`opptak.summaries.v1`).
    pub partitions: i32,
}

/// What the review service uses of the outside world.
#[derive(Clone)]
pub struct ReviewEdges {
    pub bus: Arc<dyn Bus>,
    /// Calls, keys and sealed artifacts, hot and archive objects alike
    /// (approved summaries, drafts, audio), on the deployment's clock.
    pub vault: Vault,
    /// Retention routing under the deployment's policy (an approved
    /// summary's 5-year record), with the WORM archive.
    pub retention: Retention,
    pub config: ReviewConfig,
    /// Reclassifies a call's service category for a compliance officer (the
    /// binary wires in the recorder's compactor, which writes the archive
    /// copy a new category needs); `None`: not offered.
    pub reclassifier: Option<Arc<dyn Reclassifier>>,
}

/// A call's service category changed, with what it takes (see
/// `opptak_recorder::compact::Compactor::reclassify`): journaled, and the
/// archive copy the new category needs written from the recording, or the
/// change refused with why when the recording is gone.
#[async_trait::async_trait]
pub trait Reclassifier: Send + Sync {
    /// Returns whether an archive copy was written.
    async fn reclassify(
        &self,
        call_id: &opptak_domain::model::CallId,
        category: opptak_domain::model::ServiceCategory,
        reason: &str,
        by: &str,
    ) -> anyhow::Result<bool>;
}

impl ReviewEdges {
    /// The audit log in the metadata database.
    pub async fn audit(&self) -> Result<opptak_audit::Audit, opptak_audit::AuditError> {
        opptak_audit::Audit::open(
            &self.config.metadata_url,
            self.vault.keys().clone(),
            self.vault.clock().clone(),
        )
        .await
    }
}
