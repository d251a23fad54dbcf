//! Speech recognition behind the [`SpeechRecognizer`] trait (issue 5 item 1).
//!
//! [`HttpAsr`] speaks the OpenAI-compatible `POST /v1/audio/transcriptions`
//! (multipart: `file`, `model`, `language`, `response_format`) that
//! faster-whisper servers, whisper.cpp's server, vLLM and NB-Whisper
//! deployments answer; `deploy/speech/server.py` is the local one
//! (docs/speech-server.md). One request carries one utterance of one channel
//! as an in-memory WAV (44-byte header + PCM16 mono).
//!
//! Around each request:
//! - a per-attempt **timeout** (connect to last byte of the answer);
//! - **retries** with exponential backoff and jitter on [`AsrError::Timeout`]
//!   and [`AsrError::Unavailable`] (connection errors, HTTP 408/429/5xx,
//!   honouring `Retry-After`), never on [`AsrError::Rejected`] (4xx: bad
//!   audio, wrong key, unsupported language) nor [`AsrError::Invalid`];
//! - bounded **concurrency** (a semaphore; a permit is held only while a
//!   request is in flight, not while backing off);
//! - a **circuit breaker**: after `breaker_failures` consecutive failed
//!   attempts (timeouts, unavailable, invalid answers) every call fails fast
//!   with [`AsrError::CircuitOpen`] for `breaker_cooldown`; then one trial
//!   request goes through (half-open): success closes the breaker, failure
//!   opens it for another cooldown. A 4xx answer proves the server alive and
//!   counts as success for the breaker.
//!
//! Answers are asked for as `verbose_json` (segments with times); a server
//! that refuses that format is asked for `json` from then on, and an answer
//! without segments becomes one segment spanning the utterance. Segment times
//! are clamped to the utterance and sorted.
//!
//! Transcripts are customer data: nothing here logs transcript text, server
//! answers or the API key; errors carry sizes, statuses and the server's own
//! error message (bounded), never the body.
//!
//! Layout: this file holds the types and the trait; `config` the settings,
//! `client` the HTTP client (its retry loop is `crate::retry`, its request
//! plumbing `crate::http`), `breaker` the circuit breaker. The word error
//! rate that measures transcripts is `crate::eval` (tests and the `eval`
//! feature), re-exported here under its old names.

mod breaker;
mod client;
mod config;

#[cfg(any(test, feature = "eval"))]
pub use crate::eval::{normalize_words, word_error_rate, word_errors};
pub use breaker::BreakerState;
pub use client::HttpAsr;
pub use config::AsrConfig;

use async_trait::async_trait;
use std::fmt;
use std::time::Duration;

/// One utterance of one channel: PCM16 little-endian mono at `sample_rate_hz`.
#[derive(Clone, PartialEq, Eq)]
pub struct Utterance {
    pub pcm16: Vec<u8>,
    pub sample_rate_hz: u32,
    /// ISO 639-1 (`en`, `no`, `nb`, `nn`); `None` lets the server decide.
    pub language: Option<String>,
}

impl Utterance {
    pub fn new(pcm16: Vec<u8>, sample_rate_hz: u32) -> Self {
        Self {
            pcm16,
            sample_rate_hz,
            language: None,
        }
    }

    pub fn with_language(mut self, language: impl Into<String>) -> Self {
        self.language = Some(language.into());
        self
    }

    /// Length in seconds (0 for a zero rate).
    pub fn duration_s(&self) -> f32 {
        if self.sample_rate_hz == 0 {
            return 0.0;
        }
        (self.pcm16.len() / 2) as f32 / self.sample_rate_hz as f32
    }

    /// The utterance as a WAV file: 44-byte header + the samples.
    pub fn to_wav(&self) -> Vec<u8> {
        wav_pcm16_mono(&self.pcm16, self.sample_rate_hz)
    }
}

impl fmt::Debug for Utterance {
    // Audio is customer data and large: sizes only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Utterance")
            .field("bytes", &self.pcm16.len())
            .field("sample_rate_hz", &self.sample_rate_hz)
            .field("language", &self.language)
            .finish()
    }
}

/// A canonical 44-byte-header WAV (RIFF, PCM format 1, mono, 16 bits).
pub fn wav_pcm16_mono(pcm16: &[u8], sample_rate_hz: u32) -> Vec<u8> {
    let data_len = u32::try_from(pcm16.len()).unwrap_or(u32::MAX - 36);
    let mut wav = Vec::with_capacity(44 + pcm16.len());
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data_len).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes()); // fmt chunk size
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&1u16.to_le_bytes()); // channels
    wav.extend_from_slice(&sample_rate_hz.to_le_bytes());
    wav.extend_from_slice(&(sample_rate_hz.saturating_mul(2)).to_le_bytes()); // byte rate
    wav.extend_from_slice(&2u16.to_le_bytes()); // block align
    wav.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&data_len.to_le_bytes());
    wav.extend_from_slice(pcm16);
    wav
}

/// What was said in one utterance.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Transcript {
    pub text: String,
    /// In order, times relative to the utterance's start, within its length.
    /// Never empty when `text` is not.
    pub segments: Vec<Segment>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Segment {
    pub start_s: f32,
    pub end_s: f32,
    pub text: String,
}

/// Why an utterance has no transcript. [`AsrError::is_transient`] tells the
/// transcriber whether to keep the call transcription-pending.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AsrError {
    /// Every attempt ran out of time.
    #[error("speech recognition timed out")]
    Timeout,
    /// The server could not be reached or kept failing (connection errors,
    /// HTTP 408/429/5xx).
    #[error("speech recognition unavailable: {0}")]
    Unavailable(String),
    /// The breaker is open after repeated failures: no request was sent.
    #[error("speech recognition circuit open, retry after {} ms", retry_after.as_millis())]
    CircuitOpen { retry_after: Duration },
    /// The request was refused (HTTP 4xx: bad audio, key, language) or the
    /// utterance is unusable: sending it again will not help.
    #[error("speech recognition rejected the request: {0}")]
    Rejected(String),
    /// The server answered something that is no transcription.
    #[error("speech recognition answer invalid: {0}")]
    Invalid(String),
}

impl AsrError {
    /// Whether the same utterance may be transcribed later (keep the call
    /// pending) rather than never. Only a rejection is final: an invalid
    /// answer is a server fault that an operator can fix.
    pub fn is_transient(&self) -> bool {
        !matches!(self, Self::Rejected(_))
    }
}

/// Turns one utterance into text.
#[async_trait]
pub trait SpeechRecognizer: Send + Sync + 'static {
    async fn transcribe(&self, u: &Utterance) -> Result<Transcript, AsrError>;
    /// What transcribes, for logs and the demo (never holds secrets).
    fn describe(&self) -> String;
    /// How many requests it runs at once, when it bounds them: the live
    /// path queues its utterances for as many slots (`None`: the default
    /// of [`AsrConfig::max_concurrency`]).
    fn max_concurrency(&self) -> Option<usize> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wav_header_is_the_canonical_44_bytes() {
        let wav = wav_pcm16_mono(&[1, 0, 2, 0, 3, 0], 8000);
        assert_eq!(wav.len(), 44 + 6);
        assert_eq!(&wav[0..4], b"RIFF");
        assert_eq!(u32::from_le_bytes([wav[4], wav[5], wav[6], wav[7]]), 36 + 6);
        assert_eq!(&wav[8..16], b"WAVEfmt ");
        assert_eq!(u16::from_le_bytes([wav[20], wav[21]]), 1, "PCM");
        assert_eq!(u16::from_le_bytes([wav[22], wav[23]]), 1, "mono");
        assert_eq!(u32::from_le_bytes([wav[24], wav[25], wav[26], wav[27]]), 8000);
        assert_eq!(
            u32::from_le_bytes([wav[28], wav[29], wav[30], wav[31]]),
            16000,
            "byte rate"
        );
        assert_eq!(u16::from_le_bytes([wav[32], wav[33]]), 2, "block align");
        assert_eq!(u16::from_le_bytes([wav[34], wav[35]]), 16, "bits");
        assert_eq!(&wav[36..40], b"data");
        assert_eq!(u32::from_le_bytes([wav[40], wav[41], wav[42], wav[43]]), 6);
        assert_eq!(&wav[44..], &[1, 0, 2, 0, 3, 0]);
    }
}
