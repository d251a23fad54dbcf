//! KI backends behind traits, each over the OpenAI-compatible HTTP API that
//! on-prem deployments speak:
//!
//! - [`asr`]: speech recognition (`/v1/audio/transcriptions`: faster-whisper
//!   servers, whisper.cpp, vLLM, NB-Whisper), with timeouts, retries with
//!   backoff, bounded concurrency and a circuit breaker.
//! - [`llm`]: language models (`/v1/chat/completions`: vLLM, Ollama,
//!   llama.cpp server, Azure OpenAI) with JSON-schema constrained output.
//! - [`transcribe`]: transcribing a finished KI call from its stored audio
//!   (voice activity per channel → recognizer → transcript sealed under the
//!   call's `ki` key, stored, routed to its retention, published sealed).
//! - [`live`]: transcribing KI calls while they run, from the telephony
//!   topic, stopping the moment the customer opts out.
//! - [`summarize`]: redacted transcript → draft summary and taxonomy topics,
//!   sealed under the `ki` key, for the advisor's review.

pub mod asr;
pub mod live;
pub mod llm;
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
) -> Result<Vec<u8>, transcribe::TranscribeError> {
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
