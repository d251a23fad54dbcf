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
