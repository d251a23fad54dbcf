//! Pure domain of opptak: no IO, no async, no vendor types.
//!
//! - [`model`]: calls, audio formats, the routing facts later issues decide on.
//! - [`g711`]: the ITU-T G.711 µ-law / A-law codec (hound cannot read G.711).
//! - [`reassembly`]: turning duplicated, reordered, lossy chunks into one
//!   gap-aware timeline per call.
//! - [`redact`]: PII redaction of transcript text before it reaches a language model.
//! - [`retention`]: the retention policy engine (which class keeps an
//!   artifact, until when, and why).
//! - [`vad`]: energy-based voice activity detection, cutting a channel into utterances.
//! - [`screening`]: the lexicon drafts are screened against for
//!   discriminatory or unforeseen content (R6).
//! - [`summary`]: draft summaries and topic tags: the topic taxonomy, the
//!   embedded extractive summarizer and classifier, prompts and JSON schema.
//! - [`time`]: UTC days, ISO weeks and ISO 8601 times without a time-zone
//!   database (the one place dates are read and written), and the injected
//!   [`time::Clock`].
//!
//! The IO crates (bus, store, recorder) call into this crate; it calls nothing.

pub mod conversation;
pub mod g711;
pub mod model;
pub mod reassembly;
pub mod redact;
pub mod retention;
pub mod screening;
pub mod summary;
pub mod time;
pub mod vad;

pub use model::{AudioFormat, CallFacts, CallId, ChannelRole, Codec, Desk, Direction, KeyClass, ServiceCategory};
