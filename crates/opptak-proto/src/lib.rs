//! The wire contract of opptak, generated from `proto/opptak/v1` by prost.
//!
//! - [`v1::TelephonyEvent`]: the one message type on the telephony input topic.
//! - [`v1::RecordingStored`], [`v1::DeadLetter`]: what opptak publishes.
//!
//! Conversion into domain types (and validation) lives in the recorder's edge,
//! not here: this crate is only the generated code.
#![allow(unreachable_pub, clippy::all)]

pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/opptak.v1.rs"));
}

pub use prost::Message;
pub use prost_types::{Duration, Timestamp};
