//! KI backends behind traits, each over the OpenAI-compatible HTTP API that
//! on-prem deployments speak, and the KI roles that use them. One line per
//! module:
//!
//! - [`asr`]: speech recognition, `/v1/audio/transcriptions` (`config.rs`, `client.rs`, `breaker.rs`).
//! - [`llm`]: draft summaries, embedded or `/v1/chat/completions` (`client.rs`, `schema.rs`).
//! - `http`: one request of either client: bounded answer, `Retry-After`, transient or not, server message.
//! - `retry`: the one retry loop: exponential backoff, jitter, `Retry-After`, counted and uncounted failures.
//! - `error`: [`transcribe::TranscribeError`], the roles' error, and which of its kinds a retry can help.
//! - [`transcribe`]: a finished KI call's audio → transcript, sealed, stored, published; the transcriber role.
//! - [`screen`]: every draft screened for discriminatory or unforeseen content: lexicon, then the model's second opinion.
//! - [`summarize`]: redacted transcript → draft and topics, sealed, stored, published; the summarizer role.
//! - `role`: the loop both batch roles run: subscribe, poll, settle each call with backoff, acknowledge.
//! - `listener`: what both batch roles tell the reporting index and QA of each call.
//! - [`live`]: KI calls transcribed while they run, from the telephony topic, stopped by an opt-out.
//! - [`live_calls`]: the calls being transcribed live, which the batch transcriber waits for.
//! - `notice`: the live path's gate that lets no audio from before the customer's KI notice through.
//! - `live_queue`: live utterances waiting for a recognizer slot, ended calls served first.
//! - `eval` (tests and the `eval` feature only): word error rate against known scripts.

pub mod asr;
mod error;
#[cfg(any(test, feature = "eval"))]
pub mod eval;
mod http;
mod listener;
pub mod live;
pub mod live_calls;
mod live_queue;
pub mod llm;
mod notice;
mod retry;
mod role;
pub mod screen;
pub mod summarize;
pub mod transcribe;

use opptak_crypto::DataKey;
use opptak_retention::Retention;
use opptak_vault::{Sealing, Vault};

/// Stores a KI artifact of a call (transcript, draft) the one way both KI
/// roles do: sealed as JSON under the call's `ki` key at
/// `ki/<call>/<artifact>.optk`, recorded as `store_kind`, then routed to
/// its retention (30 days, gone with an opt-out). Returns the sealed bytes,
/// which the role publishes.
pub(crate) async fn store_ki_artifact<T: serde::Serialize + ?Sized>(
    vault: &Vault,
    retention: &Retention,
    what: Sealing<'_>,
    key: &DataKey,
    store_kind: &str,
    value: &T,
) -> Result<Vec<u8>, error::TranscribeError> {
    let body = serde_json::to_vec(value).map_err(|e| opptak_vault::VaultError::Json {
        call_id: what.call_id.to_string(),
        what: "KI artifact",
        detail: e.to_string(),
    })?;
    let path = format!("ki/{}/{}.optk", what.call_id, what.artifact_id);
    let (_, sealed) = vault.store_artifact(what, key, store_kind, path, &body).await?;
    retention.route(what.call_id).await?;
    Ok(sealed)
}
