//! opptak-crypto's integration tests, one module per concern, in one test
//! binary so a change links once: `cargo test -p opptak-crypto --test crypto <module>::`.
#![allow(clippy::unwrap_used)]

mod garbage;
mod mutations;
mod pkcs11;
