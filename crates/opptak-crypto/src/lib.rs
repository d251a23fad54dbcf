//! Encryption at rest for opptak.
//!
//! - [`segment`]: the versioned segmented AES-256-GCM format every stored
//!   artifact uses (`docs/encryption-format.md`).
//! - [`keys`]: data keys, wrapped by a key-encryption key from a
//!   [`KeyProvider`] (a local keyring file in the embedded mode).
//! - [`Sensitive`]: secrets that never print and are zeroized on drop.

pub mod keys;
pub mod segment;
mod sensitive;

pub use keys::{DataKey, KeyProvider, LocalKeyring, WrappedKey};
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
    #[error("keyring: {0}")]
    Keyring(String),
}
