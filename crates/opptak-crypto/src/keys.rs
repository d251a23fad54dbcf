//! Envelope keys: data keys (one per recording) wrapped by a key-encryption
//! key (KEK) that a [`KeyProvider`] holds. Only wrapped data keys are stored.

use crate::{CryptoError, Sensitive};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A plaintext data key, in memory only.
#[derive(Clone)]
pub struct DataKey {
    id: String,
    secret: Sensitive<[u8; 32]>,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKey")
            .field("id", &self.id)
            .field("secret", &self.secret)
            .finish()
    }
}

impl DataKey {
    pub fn generate() -> Self {
        let mut k = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut k);
        let mut id = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut id);
        let id = format!("dk-{}", id.iter().map(|b| format!("{b:02x}")).collect::<String>());
        Self::from_parts(id, k)
    }

    pub fn from_parts(id: String, secret: [u8; 32]) -> Self {
        Self {
            id,
            secret: Sensitive::new(secret),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub(crate) fn secret(&self) -> &[u8; 32] {
        self.secret.expose()
    }
}

/// A data key sealed under a KEK. Safe to store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrappedKey {
    pub key_id: String,
    pub kek_id: String,
    /// nonce (12) ‖ ciphertext (32) ‖ tag (16).
    pub sealed: Vec<u8>,
}

/// Holds key-encryption keys. The local keyring file is the embedded default;
/// a PKCS#11 HSM provider is a later issue.
pub trait KeyProvider: Send + Sync + 'static {
    fn active_kek_id(&self) -> &str;
    fn wrap(&self, key: &DataKey, context: &[u8]) -> Result<WrappedKey, CryptoError>;
    fn unwrap(&self, wrapped: &WrappedKey, context: &[u8]) -> Result<DataKey, CryptoError>;
}

fn wrap_aad(key_id: &str, kek_id: &str, context: &[u8]) -> Vec<u8> {
    let mut aad = b"opptak-dek-v1\0".to_vec();
    for part in [key_id.as_bytes(), kek_id.as_bytes(), context] {
        aad.extend_from_slice(&(part.len() as u32).to_be_bytes());
        aad.extend_from_slice(part);
    }
    aad
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyringFile {
    version: u32,
    active: String,
    keks: Vec<KekEntry>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KekEntry {
    id: String,
    created_at: String,
    key: String,
}

/// KEKs in a local JSON file, mode 0600. Created on first use; refused when
/// anyone but the owner can read it.
pub struct LocalKeyring {
    path: PathBuf,
    active: String,
    keks: Vec<(String, Sensitive<[u8; 32]>)>,
}

impl std::fmt::Debug for LocalKeyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalKeyring")
            .field("path", &self.path)
            .field("active", &self.active)
            .finish()
    }
}

impl LocalKeyring {
    /// Opens the keyring at `path`, creating it with a fresh KEK if absent.
    pub fn open_or_create(path: &Path) -> Result<Self, CryptoError> {
        if !path.exists() {
            Self::create(path)?;
        }
        Self::open(path)
    }

    /// Opens an existing keyring; fails when it is missing.
    pub fn open(path: &Path) -> Result<Self, CryptoError> {
        let io = |e: std::io::Error| CryptoError::Keyring(format!("{}: {e}", path.display()));
        let meta = std::fs::metadata(path).map_err(io)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(CryptoError::Keyring(format!(
                    "{}: mode {mode:o} lets others read the key-encryption keys; chmod 600 it",
                    path.display()
                )));
            }
        }
        let _ = meta;
        let raw = std::fs::read(path).map_err(io)?;
        let file: KeyringFile = serde_json::from_slice(&raw)
            .map_err(|e| CryptoError::Keyring(format!("{}: not a keyring: {e}", path.display())))?;
        if file.version != 1 {
            return Err(CryptoError::Keyring(format!(
                "unsupported keyring version {}",
                file.version
            )));
        }
        let mut keks = Vec::new();
        for e in file.keks {
            let bytes = zeroize::Zeroizing::new(
                B64.decode(&e.key)
                    .map_err(|_| CryptoError::Keyring(format!("kek {} is not base64", e.id)))?,
            );
            let key: [u8; 32] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| CryptoError::Keyring(format!("kek {} is not 32 bytes", e.id)))?;
            keks.push((e.id, Sensitive::new(key)));
        }
        if !keks.iter().any(|(id, _)| *id == file.active) {
            return Err(CryptoError::Keyring(format!(
                "active kek {} not in the keyring",
                file.active
            )));
        }
        Ok(Self {
            path: path.to_owned(),
            active: file.active,
            keks,
        })
    }

    fn create(path: &Path) -> Result<(), CryptoError> {
        use std::io::Write;
        let io = |e: std::io::Error| CryptoError::Keyring(format!("{}: {e}", path.display()));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut k = zeroize::Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(k.as_mut());
        let mut idb = [0u8; 8];
        rand::rngs::OsRng.fill_bytes(&mut idb);
        let id = format!("kek-{}", idb.iter().map(|b| format!("{b:02x}")).collect::<String>());
        let file = KeyringFile {
            version: 1,
            active: id.clone(),
            keks: vec![KekEntry {
                id,
                created_at: format!("{:?}", std::time::SystemTime::now()),
                key: B64.encode(k.as_ref()),
            }],
        };
        let json =
            zeroize::Zeroizing::new(serde_json::to_vec_pretty(&file).map_err(|e| CryptoError::Keyring(e.to_string()))?);
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(path).map_err(io)?;
        f.write_all(&json).map_err(io)?;
        f.sync_all().map_err(io)?;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn kek(&self, id: &str) -> Result<&[u8; 32], CryptoError> {
        self.keks
            .iter()
            .find(|(k, _)| k == id)
            .map(|(_, s)| s.expose())
            .ok_or_else(|| CryptoError::KeyUnavailable(format!("kek {id} is not in {}", self.path.display())))
    }
}

impl KeyProvider for LocalKeyring {
    fn active_kek_id(&self) -> &str {
        &self.active
    }

    fn wrap(&self, key: &DataKey, context: &[u8]) -> Result<WrappedKey, CryptoError> {
        let kek = self.kek(&self.active)?;
        let cipher = Aes256Gcm::new_from_slice(kek).map_err(|_| CryptoError::Authentication)?;
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let aad = wrap_aad(key.id(), &self.active, context);
        let ct = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: key.secret(),
                    aad: &aad,
                },
            )
            .map_err(|_| CryptoError::Authentication)?;
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&ct);
        Ok(WrappedKey {
            key_id: key.id().to_owned(),
            kek_id: self.active.clone(),
            sealed,
        })
    }

    fn unwrap(&self, wrapped: &WrappedKey, context: &[u8]) -> Result<DataKey, CryptoError> {
        let kek = self.kek(&wrapped.kek_id)?;
        if wrapped.sealed.len() != 12 + 32 + 16 {
            return Err(CryptoError::Authentication);
        }
        let cipher = Aes256Gcm::new_from_slice(kek).map_err(|_| CryptoError::Authentication)?;
        let aad = wrap_aad(&wrapped.key_id, &wrapped.kek_id, context);
        let (nonce, ct) = wrapped.sealed.split_at(12);
        let pt = zeroize::Zeroizing::new(
            cipher
                .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: &aad })
                .map_err(|_| CryptoError::Authentication)?,
        );
        let mut k = [0u8; 32];
        k.copy_from_slice(&pt);
        Ok(DataKey::from_parts(wrapped.key_id.clone(), k))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn keyring_is_created_private_and_wraps_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/keyring.json");
        let ring = LocalKeyring::open_or_create(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let dk = DataKey::generate();
        let w = ring.wrap(&dk, b"call-1/audio-24h").unwrap();
        assert!(!w.sealed.windows(32).any(|s| s == dk.secret()));
        let back = LocalKeyring::open(&path)
            .unwrap()
            .unwrap(&w, b"call-1/audio-24h")
            .unwrap();
        assert_eq!(back.secret(), dk.secret());
        assert!(matches!(
            ring.unwrap(&w, b"call-2/audio-24h"),
            Err(CryptoError::Authentication)
        ));
        assert!(!format!("{ring:?} {dk:?}").contains(&B64.encode(dk.secret())));
    }

    #[test]
    fn a_readable_keyring_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keyring.json");
        LocalKeyring::open_or_create(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = LocalKeyring::open(&path).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
    }

    #[test]
    fn another_keyring_cannot_unwrap() {
        let dir = tempfile::tempdir().unwrap();
        let a = LocalKeyring::open_or_create(&dir.path().join("a.json")).unwrap();
        let b = LocalKeyring::open_or_create(&dir.path().join("b.json")).unwrap();
        let w = a.wrap(&DataKey::generate(), b"ctx").unwrap();
        assert!(matches!(b.unwrap(&w, b"ctx"), Err(CryptoError::KeyUnavailable(_))));
    }
}
