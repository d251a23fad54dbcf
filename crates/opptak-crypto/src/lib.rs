//! Encryption at rest for opptak.
//!
//! - [`segment`]: format v1, the small self-describing segments the recorder
//!   spools every flush (`docs/encryption-format.md`).
//! - [`stream`]: format v2, one object per finished artifact with fixed-size
//!   segments and random access (recordings after compaction, copies, and
//!   every payload opptak publishes).
//! - [`keys`]: data keys, wrapped by a key-encryption key from a
//!   [`KeyProvider`] (a local keyring file in the embedded mode).
//! - [`pkcs11`]: the KEK held in an HSM through PKCS#11 (tested with SoftHSM2).
//! - [`Sensitive`]: secrets that never print and are zeroized on drop.

pub mod chunk;
pub mod keys;
pub mod pkcs11;
pub mod segment;
mod sensitive;
pub mod signing;
pub mod stream;

pub use keys::{DataKey, KekInfo, KeyAdmin, KeyProvider, LocalKeyring, WrappedKey};
pub use pkcs11::Pkcs11Keyring;
pub use sensitive::Sensitive;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("ciphertext failed authentication (tampered, truncated or wrong key)")]
    Authentication,
    #[error("ciphertext truncated")]
    Truncated,
    #[error("malformed ciphertext: {0}")]
    Format(String),
    #[error("segment does not belong here: {0}")]
    Misplaced(String),
    #[error("segment stream is broken: {0}")]
    Stream(String),
    #[error("key unavailable: {0}")]
    KeyUnavailable(String),
    /// The KEK was destroyed on purpose (a period KEK whose data keys had
    /// all expired): nothing it wrapped can be unwrapped again, anywhere.
    #[error("key destroyed: {0}")]
    KekDestroyed(String),
    #[error("keyring: {0}")]
    Keyring(String),
}
