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

pub mod asr;
pub mod llm;
pub mod transcribe;
