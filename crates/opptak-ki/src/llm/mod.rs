//! Draft summaries behind the [`DraftWriter`] trait (R5, issue 5 item 5):
//!
//! - [`EmbeddedDrafts`]: no model, the extractive summarizer and phrase
//!   classifier of [`opptak_domain::summary`]; the default.
//! - [`ChatDrafts`]: any server speaking the OpenAI-compatible
//!   `POST /v1/chat/completions` (vLLM, Ollama, llama.cpp and
//!   llama-cpp-python servers, Azure OpenAI), asked for JSON constrained by
//!   the draft schema, at temperature 0. Transport failures (timeouts,
//!   connection errors, HTTP 408/429/5xx) are retried with exponential
//!   backoff; answers that fail the schema or name a topic outside the
//!   taxonomy are retried with a correction, then reported as
//!   [`LlmError::Invalid`].
//!
//! [`draft_writer`] picks the backend from a URL (`embedded://` or
//! `http(s)://...`).
//!
//! The transcript must already be PII-redacted (the pipeline asserts it);
//! this module never logs transcript text, model answers or the API key.
//!
//! Layout: this file holds the request, the error, the trait, the embedded
//! backend and the choice by URL; `client` the chat backend (its retry loop
//! is `crate::retry`, its request plumbing `crate::http`); `schema` the
//! draft schema and the checks a model's answer must pass.

mod client;
mod schema;

pub use client::{ApiKey, ChatConfig, ChatDrafts, ResponseFormat};
pub use schema::{draft_schema, validate_json};

use async_trait::async_trait;
use opptak_domain::summary::{self, Draft, Segment, Speaker, Taxonomy};
use std::sync::Arc;
use std::time::Instant;

/// A call's redacted transcript, to be drafted.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DraftRequest {
    /// The call's language (`nb`, `en`, `nb-NO`, ...); unknown or empty: guessed.
    pub language: String,
    /// `(speaker, start_s, text)`, speaker `agent` or `customer`.
    pub segments: Vec<(String, f32, String)>,
}

impl DraftRequest {
    fn to_segments(&self) -> Result<Vec<Segment>, LlmError> {
        self.segments
            .iter()
            .map(|(speaker, start_s, text)| {
                let speaker = Speaker::parse(speaker).ok_or_else(|| {
                    LlmError::Rejected(format!(
                        "unknown speaker {:?} (agent or customer)",
                        truncate(speaker, 20)
                    ))
                })?;
                Ok(Segment::new(speaker, *start_s, text.clone()))
            })
            .collect()
    }
}

/// Why no draft was written. [`LlmError::is_transient`] tells the caller
/// whether to keep the call pending and try again later.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LlmError {
    /// Every attempt ran out of time.
    #[error("language model timed out")]
    Timeout,
    /// The server could not be reached or kept failing (HTTP 5xx, 429).
    #[error("language model unavailable: {0}")]
    Unavailable(String),
    /// The model kept answering with something that is not a valid draft.
    #[error("language model answer invalid: {0}")]
    Invalid(String),
    /// The request itself was refused (HTTP 4xx, bad configuration, bad input):
    /// sending it again will not help.
    #[error("language model rejected the request: {0}")]
    Rejected(String),
}

impl LlmError {
    /// Whether the same request may succeed later (keep the call pending)
    /// rather than never (fall back to the embedded draft or dead-letter).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Timeout | Self::Unavailable(_))
    }
}

/// Writes a draft summary with topics for one call.
#[async_trait]
pub trait DraftWriter: Send + Sync + 'static {
    async fn draft(&self, req: &DraftRequest) -> Result<Draft, LlmError>;
    /// What writes the drafts, for logs and the demo (never holds secrets).
    fn describe(&self) -> String;
}

/// Picks the backend from a URL: `embedded://` (or empty) for
/// [`EmbeddedDrafts`], `http://` or `https://` for [`ChatDrafts`] with the
/// given model and [`ChatConfig`] defaults.
pub fn draft_writer(
    url: &str,
    model: &str,
    api_key: Option<ApiKey>,
    taxonomy: Arc<Taxonomy>,
) -> Result<Arc<dyn DraftWriter>, LlmError> {
    let url = url.trim();
    if url.is_empty() || url.starts_with("embedded:") {
        return Ok(Arc::new(EmbeddedDrafts::new(taxonomy)));
    }
    if url.starts_with("http://") || url.starts_with("https://") {
        let mut config = ChatConfig::new(url, model);
        config.api_key = api_key;
        return Ok(Arc::new(ChatDrafts::new(config, taxonomy)?));
    }
    Err(LlmError::Rejected(format!(
        "unsupported language model url scheme in {:?} (embedded://, http://, https://)",
        truncate(url.split("://").next().unwrap_or(url), 20)
    )))
}

// --------------------------------------------------------------- embedded ---

/// The default draft writer: no model, no network.
#[derive(Clone, Debug)]
pub struct EmbeddedDrafts {
    taxonomy: Arc<Taxonomy>,
}

impl EmbeddedDrafts {
    pub fn new(taxonomy: Arc<Taxonomy>) -> Self {
        Self { taxonomy }
    }
}

impl Default for EmbeddedDrafts {
    fn default() -> Self {
        Self::new(Arc::new(Taxonomy::default_taxonomy()))
    }
}

#[async_trait]
impl DraftWriter for EmbeddedDrafts {
    async fn draft(&self, req: &DraftRequest) -> Result<Draft, LlmError> {
        let started = Instant::now();
        let segments = req.to_segments();
        let outcome = match &segments {
            Ok(_) => opptak_telemetry::RequestOutcome::Ok,
            Err(_) => opptak_telemetry::RequestOutcome::Rejected,
        };
        let draft = segments.map(|s| summary::embedded_draft(&self.taxonomy, &req.language, &s));
        opptak_telemetry::metrics().llm_request("embedded", outcome, started.elapsed());
        draft
    }

    fn describe(&self) -> String {
        format!(
            "embedded ({}, taxonomy v{})",
            summary::EMBEDDED_SOURCE,
            self.taxonomy.version()
        )
    }
}

/// At most `max_chars` characters of `s`, cut without a mark (model text
/// and names quoted in errors).
fn truncate(s: &str, max_chars: usize) -> String {
    s.chars().take(max_chars).collect()
}
