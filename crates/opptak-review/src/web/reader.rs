//! The call page's read outside HTTP, for `opptak ki show`: the same
//! decision ([`App::decide`]), the same audit entry (`transcript.read` on
//! `call:<id>`, allowed with its reason or refused) and the same content as
//! `GET /calls/{id}` and `GET /api/v1/calls/{id}`. A role the reason form
//! asks (compliance) states the form's three fields, checked as the form
//! checks them; a reason that fails its checks is audited as `read.reason`
//! `failed`, as the form's is.

use super::{reason, App, Lang, Options};
use crate::identity::User;
use crate::ReviewEdges;
use anyhow::Result;
use axum::http::StatusCode;
use opptak_domain::model::CallId;
use opptak_domain::summary::Draft;
use opptak_ki::transcribe::TranscriptSegment;
use opptak_store::meta::CallRecord;

/// The reason form's fields, as typed on the command line.
#[derive(Clone, Debug, Default)]
pub struct StatedReason {
    /// A category code of the form's fixed list (`complaint`,
    /// `authority_request`, `subject_access`, `finansklagenemnda`,
    /// `legal_claim`, `internal_control`, `quality_control`).
    pub category: String,
    /// The case number (required except for the bank's own controls).
    pub case_ref: String,
    /// Why, in at least [`crate::review::MIN_REASON_CHARS`] characters.
    pub text: String,
}

/// A call's KI content as the call page shows it.
pub struct CallContent {
    pub call: CallRecord,
    /// The reason the audit log keeps for this read.
    pub reason: String,
    /// `None`: no transcript (yet), or its KI data is gone.
    pub transcript: Option<Vec<TranscriptSegment>>,
    /// `None`: no draft (yet), or its KI data is gone.
    pub draft: Option<Draft>,
    /// Edits, the approval or rejection, amendments.
    pub versions: Vec<crate::review::Version>,
    /// The approved summary's record (5 years), once approved.
    pub approved: Option<serde_json::Value>,
}

/// Why a read was refused (audited before this is returned).
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The role may not read the call, or the call is unknown.
    #[error("refused: {0}")]
    Refused(String),
    /// The stated reason fails the form's checks.
    #[error("the reason is not complete: {0}")]
    Reason(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// Reads calls for signed-in users, as the review service does.
pub struct CallReader {
    app: App,
}

impl CallReader {
    pub async fn open(edges: &ReviewEdges) -> Result<Self> {
        let options = Options {
            secure_cookies: true,
            audit_reads: true,
        };
        Ok(CallReader {
            app: App::open(edges, options).await?,
        })
    }

    /// `call_id`'s content for `user`: decided and audited before anything
    /// is decrypted, refusals included.
    pub async fn read(
        &self,
        user: &User,
        call_id: &CallId,
        stated: Option<&StatedReason>,
    ) -> std::result::Result<CallContent, ReadError> {
        let app = &self.app;
        let subject = format!("call:{call_id}");
        let action = "transcript.read";
        let call = app
            .edges
            .vault
            .meta()
            .load_call(call_id)
            .await
            .map_err(anyhow::Error::from)?;
        // Only the roles the form asks state a reason; the others' reason
        // is their relation to the call ("review", "qa sample", ...).
        let asked = call.is_some() && reason::asks(user.role, &subject);
        let reason = match stated.filter(|_| asked) {
            Some(r) => match reason::check_stated(&r.category, &r.case_ref, &r.text) {
                Ok(text) => Some(text),
                Err(problems) => {
                    let typed: String = r.text.trim().chars().take(500).collect();
                    app.audit(user, "read.reason", &subject, &typed, "failed").await?;
                    return Err(ReadError::Reason(problems));
                }
            },
            None => None,
        };
        let decision = app.decide(user, call.as_ref(), reason.as_deref()).await?;
        let refusal = decision.as_ref().err().copied();
        // Audited by the pages' own step; its error page is not for a terminal.
        let reason = match app.settle(Lang::En, user, (action, &subject), decision, "").await {
            Ok(reason) => reason,
            Err(r) if r.status().is_server_error() => {
                return Err(ReadError::Other(anyhow::anyhow!(
                    "writing the audit entry failed: nothing was read"
                )))
            }
            Err(_) => {
                return Err(ReadError::Refused(match refusal {
                    Some((StatusCode::BAD_REQUEST, _)) => {
                        "state why you read it: --category, --case (unless the category has none) and --reason".into()
                    }
                    Some((_, msg)) => msg.en.trim_end_matches('.').to_owned(),
                    None => "refused".into(),
                }))
            }
        };
        let Some(call) = call else {
            return Err(ReadError::Refused("unknown call".into()));
        };
        let vault = &app.edges.vault;
        Ok(CallContent {
            reason,
            transcript: opptak_ki::transcribe::read_transcript(vault, call_id).await.ok(),
            draft: opptak_ki::summarize::read_draft(vault, call_id).await.ok(),
            versions: app.review.versions(call_id).await?,
            approved: crate::review::read_approved(&app.edges, call_id).await.ok(),
            call,
        })
    }
}
