//! Audio chunks the telephony system encrypts itself, so the input topic never
//! holds plaintext audio either.
//!
//! The telephony system draws a data key per call, wraps it under a KEK it
//! shares with opptak (the wrapped-key layout of [`crate::keys`], context
//! `"<call id>/telephony"`), sends the wrapped key in `CallStarted`, and seals
//! each chunk's payload:
//!
//! ```text
//! sealed_payload = nonce (12, random) ‖ AES-256-GCM ciphertext ‖ tag (16)
//! associated data = "opptak-chunk-v1\0" ‖ u32 BE len ‖ call id ‖ u64 BE sequence
//! ```
//!
//! The associated data binds a chunk to its call and sequence number, so a
//! chunk replayed into another call or position fails to open.
//!
//! Chat systems seal message texts the same way ([`Domain::Message`]: key
//! context `"<conversation id>/messages"`, associated data starting
//! `"opptak-message-v1\0"`), so the messages topic holds no readable text. See
//! `docs/telephony-contract.md`.

use crate::{CryptoError, DataKey};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;

/// Key context of a call's telephony data key.
pub fn key_context(call_id: &str) -> Vec<u8> {
    format!("{call_id}/telephony").into_bytes()
}

/// What a sealed payload is: its associated data starts with the domain, so
/// an audio chunk never opens as a message or the other way round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Domain {
    /// `AudioChunk.sealed_payload` (telephony topic).
    Chunk,
    /// `ChatMessage.sealed_text` and `ConversationStarted.sealed_ip_address`
    /// (messages topic; the IP address is sequence 0).
    Message,
}

/// Key context of a conversation's data key sent by a chat system.
pub fn message_key_context(conversation_id: &str) -> Vec<u8> {
    format!("{conversation_id}/messages").into_bytes()
}

fn aad_in(domain: Domain, call_id: &str, sequence: u64) -> Vec<u8> {
    let mut a = match domain {
        Domain::Chunk => b"opptak-chunk-v1\0".to_vec(),
        Domain::Message => b"opptak-message-v1\0".to_vec(),
    };
    a.extend_from_slice(&(call_id.len() as u32).to_be_bytes());
    a.extend_from_slice(call_id.as_bytes());
    a.extend_from_slice(&sequence.to_be_bytes());
    a
}

/// Seals a chunk payload (what the telephony side does).
pub fn seal(key: &DataKey, call_id: &str, sequence: u64, payload: &[u8]) -> Result<Vec<u8>, CryptoError> {
    seal_in(Domain::Chunk, key, call_id, sequence, payload)
}

/// Opens a sealed chunk payload; fails closed on any change, another call or
/// another sequence number.
pub fn open(key: &DataKey, call_id: &str, sequence: u64, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
    open_in(Domain::Chunk, key, call_id, sequence, sealed)
}

/// Seals `payload` of `domain` for `owner` (a call or conversation) at `sequence`.
pub fn seal_in(
    domain: Domain,
    key: &DataKey,
    owner: &str,
    sequence: u64,
    payload: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let aad = aad_in(domain, owner, sequence);
    let mut nonce = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let cipher = Aes256Gcm::new_from_slice(key.secret()).map_err(|_| CryptoError::Authentication)?;
    let ct = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: payload,
                aad: &aad,
            },
        )
        .map_err(|_| CryptoError::Authentication)?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Opens what [`seal_in`] sealed; fails closed on any change, another
/// domain, owner or sequence number.
pub fn open_in(
    domain: Domain,
    key: &DataKey,
    owner: &str,
    sequence: u64,
    sealed: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    if sealed.len() < 12 + 16 {
        return Err(CryptoError::Truncated);
    }
    let cipher = Aes256Gcm::new_from_slice(key.secret()).map_err(|_| CryptoError::Authentication)?;
    let (nonce, ct) = sealed.split_at(12);
    cipher
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ct,
                aad: &aad_in(domain, owner, sequence),
            },
        )
        .map_err(|_| CryptoError::Authentication)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_bound_to_call_and_sequence() {
        let key = DataKey::generate();
        let sealed = seal(&key, "call-1", 7, b"audio bytes").unwrap();
        assert_eq!(open(&key, "call-1", 7, &sealed).unwrap(), b"audio bytes");
        assert!(open(&key, "call-1", 8, &sealed).is_err());
        assert!(open(&key, "call-2", 7, &sealed).is_err());
        assert!(open(&DataKey::generate(), "call-1", 7, &sealed).is_err());
        for i in 0..sealed.len() {
            let mut m = sealed.clone();
            m[i] ^= 0x40;
            assert!(open(&key, "call-1", 7, &m).is_err(), "flip at {i}");
            assert!(open(&key, "call-1", 7, &sealed[..i]).is_err(), "cut at {i}");
        }
    }

    #[test]
    fn a_chunk_never_opens_as_a_message() {
        let key = DataKey::generate();
        let sealed = seal_in(Domain::Message, &key, "conv-1", 3, b"hei").unwrap();
        assert_eq!(open_in(Domain::Message, &key, "conv-1", 3, &sealed).unwrap(), b"hei");
        assert!(open(&key, "conv-1", 3, &sealed).is_err());
        assert!(open_in(Domain::Message, &key, "conv-1", 4, &sealed).is_err());
    }
}
