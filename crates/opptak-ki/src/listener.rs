//! What the summarizer and the batch transcriber tell the reporting index
//! and QA sampling (`opptak-review`'s `qa.rs`): a stored draft, or a call
//! whose speech recognition failed. Its own module so that `transcribe`
//! and `summarize` both use it without importing each other.

use crate::screen::Screening;
use opptak_domain::model::CallFacts;
use opptak_domain::summary::Draft;

/// A stored draft as the listener is told of it.
#[derive(Clone, Debug, PartialEq)]
pub struct Drafted<'a> {
    pub draft: &'a Draft,
    /// The language detected from the transcript's words
    /// ([`opptak_domain::summary::detect_language`]), whatever the
    /// deployment's `ki.language`; `und` when undetermined.
    pub language: String,
    /// The transcript holds no recognised text (every utterance refused or
    /// empty): the draft was written from nothing.
    pub recognition_failed: bool,
    /// The draft's screening; `None` when not screened.
    pub screening: Option<Screening>,
}

/// Told of every stored draft before the call's transcript record is
/// acknowledged, and of every call whose speech recognition failed: the
/// reporting index and QA sampling (`src/qa.rs`) hook in here. An error
/// leaves the call to be retried like a store error, and a retry finding
/// the draft already stored reads it back and tells the listener again, so
/// a listener must be idempotent per call.
#[async_trait::async_trait]
pub trait DraftListener: Send + Sync + 'static {
    async fn drafted(&self, facts: &CallFacts, drafted: &Drafted<'_>) -> Result<(), String>;

    /// The call's speech recognition failed (`why`, no content): no
    /// transcript, no draft. QA samples such calls too, to listen to them.
    async fn recognition_failed(&self, facts: &CallFacts, why: &str) -> Result<(), String> {
        let _ = (facts, why);
        Ok(())
    }
}
