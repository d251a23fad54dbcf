//! opptak-ki's integration tests, one module per concern, in one test
//! binary so a change links once: `cargo test -p opptak-ki --test ki <module>::`.
#![allow(clippy::unwrap_used)]

mod asr;
mod llm;
