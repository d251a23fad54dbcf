//! Ed25519 signatures for the audit log's checkpoints: the signing key's
//! 32-byte seed is a data key like any other — generated at random, stored
//! only wrapped under the KEK (so an HSM-held KEK protects it), unwrapped
//! for the moment of signing.

use crate::DataKey;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

/// The public key of the signing key whose seed is `key`.
pub fn public_key(key: &DataKey) -> [u8; 32] {
    SigningKey::from_bytes(key.secret()).verifying_key().to_bytes()
}

/// Signs `message` with the Ed25519 key whose seed is `key`.
pub fn sign(key: &DataKey, message: &[u8]) -> [u8; 64] {
    SigningKey::from_bytes(key.secret()).sign(message).to_bytes()
}

/// Whether `signature` is `public`'s Ed25519 signature of `message`
/// (strict verification: no malleable signatures, no weak keys).
pub fn verify(public: &[u8], message: &[u8], signature: &[u8]) -> bool {
    let (Ok(public), Ok(signature)) = (<[u8; 32]>::try_from(public), <[u8; 64]>::try_from(signature)) else {
        return false;
    };
    let Ok(key) = VerifyingKey::from_bytes(&public) else {
        return false;
    };
    key.verify_strict(message, &Signature::from_bytes(&signature)).is_ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_anything_changed_does_not() {
        let k = DataKey::generate();
        let pk = public_key(&k);
        let sig = sign(&k, b"checkpoint 42");
        assert!(verify(&pk, b"checkpoint 42", &sig));
        assert!(!verify(&pk, b"checkpoint 43", &sig));
        let mut bad = sig;
        bad[10] ^= 1;
        assert!(!verify(&pk, b"checkpoint 42", &bad));
        assert!(!verify(&public_key(&DataKey::generate()), b"checkpoint 42", &sig));
        assert!(!verify(&pk[..31], b"checkpoint 42", &sig));
    }

    /// RFC 8032 section 7.1, test 1: the seed gives the published key and signature.
    #[test]
    fn rfc8032_test_vector_1() {
        let hex = |s: &str| -> Vec<u8> {
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect()
        };
        let seed: [u8; 32] = hex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
            .try_into()
            .unwrap();
        let k = DataKey::from_parts("t".into(), seed);
        assert_eq!(
            public_key(&k).to_vec(),
            hex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
        );
        let sig = sign(&k, b"");
        assert_eq!(
            sig.to_vec(),
            hex("e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b")
        );
        assert!(verify(&public_key(&k), b"", &sig));
    }
}
