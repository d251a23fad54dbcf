//! SIPREC Session Recording Server (RFC 7866, metadata RFC 7865): an SBC or
//! contact-center platform forks each call to opptak over SIP and RTP, and
//! this crate turns each recording session into the telephony contract's
//! `CallStarted` / `AudioChunk` / `CallEnded` events on the bus, so the
//! recorder and everything after it stay as they are.
//!
//! Layout. Sans-IO (no sockets, no runtime; unit- and property-tested):
//! - [`sip`]: SIP message parse/serialize, Content-Length framing,
//!   `multipart/mixed` bodies;
//! - [`sdp`]: the offer's audio streams and the `a=recvonly` answer;
//! - [`metadata`]: `application/rs-metadata+xml` -> agent and customer streams;
//! - [`rtp`]: RTP headers, the codecs (G.711, L16), RFC 4733
//!   telephone-events (never the key);
//! - [`jitter`]: per-stream reordering, duplicates, loss;
//! - [`session`]: one session's timeline -> chunks with offsets and gaps;
//! - [`config`]: `[siprec]` and the desk/service/KI mapping.
//!
//! IO: [`server`] (tokio) runs SIP over UDP, TCP and TLS (rustls) and the RTP
//! port pool (read by `rtp_rx`'s epoll threads),
//! and publishes through [`opptak_bus::Bus`]. Start it with
//! [`server::start`]. [`loadgen`] is its load generator: simulated SRCs
//! (INVITE, real-time RTP, BYE) and the packet-to-bus latency.
//!
//! Why our own SIP parser: on crates.io, `rsip` (0.4, last released 2022)
//! pulls old `nom` 7, `sha2`/`md-5` 0.9 and `uuid` 0.8 beside the
//! workspace's newer ones, and `ezk-sip-types` (maintained) pulls `nom` 7,
//! `anyhow`, `lazy_static` and its own string crates; neither parses
//! `multipart/mixed` bodies, which SIPREC needs. A recording server reads
//! only a handful of headers, so a small strict parser (`sip`, bounded to
//! 64 KiB) is less code to trust than either dependency tree. The XML of
//! the metadata is read with `quick-xml` (its one dependency, `memchr`, is
//! already in the tree). Design notes: `docs/design/siprec.md`.

pub mod config;
pub mod jitter;
pub mod loadgen;
pub mod metadata;
pub mod rtp;
mod rtp_rx;
pub mod sdp;
pub mod server;
pub mod session;
pub mod sip;
