//! opptak-store's integration tests, one module per concern, in one test
//! binary so a change links once: `cargo test -p opptak-store --test store <module>::`.
#![allow(clippy::unwrap_used)]

mod archive;
mod contract;
