//! The `opptak` binary's library: the composition root. Typed
//! configuration ([`config`]), the wiring from it to every edge and role
//! ([`app`]: the one place that knows all of them), the topics and their
//! retention ([`topics`]), the embedded demo, the load generator, the
//! telephony simulator, the chat simulator ([`chat`]) and the telemetry
//! endpoint. The
//! pipeline, the review service and the compliance operations live in
//! `crates/`; the commands are the binary's `src/cli/`.

pub mod app;
pub mod chat;
pub mod config;
pub mod demo;
pub mod demo_conversations;
pub mod loadgen;
pub mod sim;
pub mod siprec_load;
pub mod telemetry;
pub mod topics;
