//! The error of the KI roles (the transcriber, live and batch, and the
//! summarizer), and which of its kinds a retry can help
//! ([`TranscribeError::is_transient`]). Public as
//! `opptak_ki::transcribe::TranscribeError`; its own module so that the
//! shared role loop and the roles need not import each other for it.

use crate::llm::LlmError;
use opptak_domain::model::DecodeError;
use opptak_retention::RetentionError;
use opptak_store::StoreError;
use opptak_vault::VaultError;

/// Why a KI role could not do a call's work.
#[derive(Debug, thiserror::Error)]
pub enum TranscribeError {
    #[error("no call {0}")]
    UnknownCall(String),
    #[error("reading the audio: {0}")]
    Vault(#[from] VaultError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("bus: {0}")]
    Bus(#[from] opptak_bus::BusError),
    #[error("retention: {0}")]
    Retention(#[from] RetentionError),
    /// The stored audio does not decode in its declared format.
    #[error("decoding the audio of {call_id}: {source}")]
    Audio { call_id: String, source: DecodeError },
    /// The embedded drafter failed (it runs locally, so this is a bug).
    #[error("embedded draft of {call_id}: {source}")]
    Draft { call_id: String, source: LlmError },
    /// The summarizer's `DraftListener` failed (its error is its own, hence
    /// text).
    #[error("draft listener: {0}")]
    Listener(String),
}

impl TranscribeError {
    /// Whether the same attempt can succeed later (a store, bus or KEK
    /// provider that was unreachable, a draft listener that failed: its
    /// contract is to be told again), as opposed to a verdict about the
    /// call or its data that a retry does not change. The roles retry the
    /// first kind and settle the call at once on the second.
    pub fn is_transient(&self) -> bool {
        match self {
            TranscribeError::Vault(e) => e.is_transient(),
            TranscribeError::Store(e) | TranscribeError::Retention(RetentionError::Store(e)) => {
                matches!(e, StoreError::Unavailable(_))
            }
            TranscribeError::Bus(_) | TranscribeError::Listener(_) => true,
            TranscribeError::UnknownCall(_)
            | TranscribeError::Retention(_)
            | TranscribeError::Audio { .. }
            | TranscribeError::Draft { .. } => false,
        }
    }
}
