//! opptak-domain's integration tests, one module per concern, in one test
//! binary so a change links once: `cargo test -p opptak-domain --test domain <module>::`.
#![allow(clippy::unwrap_used)]

mod g711_tables;
mod policy_golden;
mod reassembly_props;
mod redaction;
mod summary;
