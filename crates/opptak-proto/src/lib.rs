//! The wire contract of opptak, generated from `proto/opptak/v1` by prost.
//!
//! - [`v1::TelephonyEvent`]: the one message type on the telephony input topic.
//! - [`v1::RecordingStored`], [`v1::DeadLetter`]: what opptak publishes.
//!
//! - [`convert`]: the edge between the wire and the domain — protobuf in,
//!   validated domain values out, or the dead-letter reason that says why
//!   not (the recorder and the live transcriber both read the telephony
//!   topic through it).

pub mod convert;

#[allow(unreachable_pub, clippy::all)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/opptak.v1.rs"));
}

pub use prost::Message;
pub use prost_types::{Duration, Timestamp};
