//! opptak's integration tests, one module per capability, in one test
//! binary so a change links once. They talk to real services started by
//! `deploy/local/test.sh` (Kafka, PostgreSQL, the speech server, Chromium,
//! the OIDC issuer, Jaeger); `OPPTAK_REQUIRE_SERVICES=1` makes a missing
//! service fail a test instead of skipping it. Run one module with
//! `cargo test --test it <module>::` (e.g. `cargo test --test it fault::`).
#![allow(clippy::unwrap_used)]

mod common;

mod amend;
mod architecture;
mod audit;
mod browser;
mod browser_qa;
mod browser_search;
mod browser_shell;
mod call_context;
mod call_page;
mod cli;
mod cluster;
mod conversation_ki;
mod conversations;
mod conversations_web;
mod crash_recovery;
mod disclose;
mod docs;
mod fault;
mod garbage_input;
mod identity;
mod key_rotation;
mod ki_bench;
mod ki_notice;
mod ki_overload;
mod ki_pipeline;
mod ki_show;
mod oidc;
mod otel;
mod pg_failover;
mod producer_example;
mod qa;
mod recording_path;
mod retention;
mod retention_bench;
mod run_config;
mod security;
mod shredding;
mod siprec;
mod siprec_wire;
mod subject;
mod subject_conversations;
mod telemetry;
mod telephony_sealed;
mod transcription;
mod web;
mod web_admin;
mod web_bench;
mod web_language;
mod web_qa;
mod web_search;
mod web_search_bench;
