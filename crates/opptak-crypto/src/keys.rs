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
        let id = format!("dk-{}", hex::encode(id));
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

    /// The same secret under another id (a key received from outside gets
    /// an id of opptak's own before it is stored).
    pub fn renamed(&self, id: String) -> Self {
        Self::from_parts(id, *self.secret())
    }

    pub(crate) fn secret(&self) -> &[u8; 32] {
        self.secret.expose()
    }
}

/// Managing KEKs: `opptak keys rotate|retire|status` and the sweeper's
/// period KEKs, for every provider.
pub trait KeyAdmin: KeyProvider {
    /// Creates a new KEK and makes it active; returns its id.
    fn rotate_kek(&self) -> Result<String, CryptoError>;
    /// Creates the KEK named `id` (not active) unless it exists; returns
    /// whether it was created. Refused for an id that was destroyed.
    fn create_kek(&self, id: &str) -> Result<bool, CryptoError>;
    /// Destroys the KEK `id` at once (not the active one), leaving a
    /// tombstone where the provider can keep one. The caller makes sure no
    /// live data key is wrapped under it. Destroying a missing KEK is not an
    /// error.
    fn destroy_kek(&self, id: &str) -> Result<(), CryptoError>;
    /// Removes a KEK that is not active and stopped being active at least
    /// `grace` ago (so every running process has switched). The caller checks
    /// that no data key references it.
    fn retire_kek(&self, id: &str, grace: std::time::Duration) -> Result<(), CryptoError>;
    fn list_keks(&self) -> Result<Vec<KekInfo>, CryptoError>;
    /// Where the KEKs live, for messages (no secrets).
    fn describe(&self) -> String;
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
    fn active_kek_id(&self) -> String;
    /// Wraps under the active KEK.
    fn wrap(&self, key: &DataKey, context: &[u8]) -> Result<WrappedKey, CryptoError>;
    /// Wraps under the KEK named `kek_id`; `None` when the provider has no
    /// such KEK (not created yet, or destroyed).
    fn wrap_under(&self, kek_id: &str, key: &DataKey, context: &[u8]) -> Result<Option<WrappedKey>, CryptoError>;
    fn unwrap(&self, wrapped: &WrappedKey, context: &[u8]) -> Result<DataKey, CryptoError>;
}

pub(crate) fn wrap_aad(key_id: &str, kek_id: &str, context: &[u8]) -> Vec<u8> {
    let mut aad = b"opptak-dek-v1\0".to_vec();
    for part in [key_id.as_bytes(), kek_id.as_bytes(), context] {
        aad.extend_from_slice(&(part.len() as u32).to_be_bytes());
        aad.extend_from_slice(part);
    }
    aad
}

/// Seals a data key under `kek_id` in the layout every provider shares:
/// nonce (12) ‖ ciphertext (32) ‖ tag (16), associated data from [`wrap_aad`].
/// `encrypt(nonce, aad, plaintext)` is the provider's AES-256-GCM.
pub(crate) fn seal_data_key(
    key: &DataKey,
    kek_id: String,
    context: &[u8],
    encrypt: impl FnOnce(&mut [u8; 12], &[u8], &[u8]) -> Result<Vec<u8>, CryptoError>,
) -> Result<WrappedKey, CryptoError> {
    let mut nonce = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let aad = wrap_aad(key.id(), &kek_id, context);
    let mut sealed = nonce.to_vec();
    sealed.extend_from_slice(&encrypt(&mut nonce, &aad, key.secret())?);
    opptak_telemetry::metrics().key_operation(opptak_telemetry::KeyOp::Wrap);
    Ok(WrappedKey {
        key_id: key.id().to_owned(),
        kek_id,
        sealed,
    })
}

/// Opens what [`seal_data_key`] sealed; `decrypt(nonce, aad, ciphertext)` is
/// the provider's AES-256-GCM.
pub(crate) fn open_data_key(
    wrapped: &WrappedKey,
    context: &[u8],
    decrypt: impl FnOnce(&mut [u8; 12], &[u8], &[u8]) -> Result<zeroize::Zeroizing<Vec<u8>>, CryptoError>,
) -> Result<DataKey, CryptoError> {
    if wrapped.sealed.len() != 12 + 32 + 16 {
        return Err(CryptoError::Authentication);
    }
    let aad = wrap_aad(&wrapped.key_id, &wrapped.kek_id, context);
    let mut nonce = [0u8; 12];
    nonce.copy_from_slice(&wrapped.sealed[..12]);
    let pt = decrypt(&mut nonce, &aad, &wrapped.sealed[12..])?;
    let k: [u8; 32] = pt.as_slice().try_into().map_err(|_| CryptoError::Authentication)?;
    opptak_telemetry::metrics().key_operation(opptak_telemetry::KeyOp::Unwrap);
    Ok(DataKey::from_parts(wrapped.key_id.clone(), k))
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyringFile {
    version: u32,
    active: String,
    keks: Vec<KekEntry>,
    /// KEKs destroyed on purpose: ids and Unix seconds, never key material.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    destroyed: Vec<Tombstone>,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Tombstone {
    id: String,
    at: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KekEntry {
    id: String,
    created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    deactivated_at: Option<u64>,
    key: String,
}

/// Why [`LocalKeyring::write`] did not write.
enum KeyringWrite {
    /// Creating: another writer created the keyring first.
    Exists,
    Failed(CryptoError),
}

impl From<KeyringWrite> for CryptoError {
    fn from(w: KeyringWrite) -> Self {
        match w {
            KeyringWrite::Exists => CryptoError::Keyring("the keyring appeared meanwhile".into()),
            KeyringWrite::Failed(e) => e,
        }
    }
}

/// KEKs in a local JSON file, mode 0600. Created on first use; refused when
/// anyone but the owner can read it. `opptak keys rotate|retire` change the
/// file; running processes reload it when it changes (checked before every
/// wrap and unwrap: one `stat`).
pub struct LocalKeyring {
    path: PathBuf,
    state: std::sync::RwLock<Loaded>,
}

struct Loaded {
    active: String,
    keks: Vec<KekSlot>,
    destroyed: Vec<Tombstone>,
    modified: Option<std::time::SystemTime>,
}

struct KekSlot {
    id: String,
    created_at: String,
    deactivated_at: Option<u64>,
    key: Sensitive<[u8; 32]>,
}

/// What `opptak keys status` shows of a KEK (never the key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KekInfo {
    pub id: String,
    pub created_at: String,
    pub active: bool,
    /// Unix seconds when it stopped being the active KEK.
    pub deactivated_at: Option<u64>,
}

impl std::fmt::Debug for LocalKeyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalKeyring")
            .field("path", &self.path)
            .field("active", &self.active_kek_id())
            .finish()
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn new_kek_id() -> String {
    let mut idb = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut idb);
    format!("kek-{}", hex::encode(idb))
}

fn new_kek() -> Sensitive<[u8; 32]> {
    let mut k = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut k);
    let s = Sensitive::new(k);
    k.zeroize();
    s
}

use zeroize::Zeroize;

impl LocalKeyring {
    /// Opens the keyring at `path`, creating it with a fresh KEK if absent.
    pub fn open_or_create(path: &Path) -> Result<Self, CryptoError> {
        if !path.exists() {
            let id = new_kek_id();
            let loaded = Loaded {
                active: id.clone(),
                keks: vec![KekSlot {
                    id,
                    created_at: unix_now().to_string(),
                    deactivated_at: None,
                    key: new_kek(),
                }],
                destroyed: Vec::new(),
                modified: None,
            };
            // Several processes may start on a fresh keyring at once: one
            // creates it, the others open that one (never a second KEK).
            match Self::write(path, &loaded, true) {
                Ok(()) | Err(KeyringWrite::Exists) => {}
                Err(KeyringWrite::Failed(e)) => return Err(e),
            }
        }
        Self::open(path)
    }

    /// Opens an existing keyring; fails when it is missing.
    pub fn open(path: &Path) -> Result<Self, CryptoError> {
        let loaded = Self::load(path)?;
        Ok(Self {
            path: path.to_owned(),
            state: std::sync::RwLock::new(loaded),
        })
    }

    fn load(path: &Path) -> Result<Loaded, CryptoError> {
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
        let raw = zeroize::Zeroizing::new(std::fs::read(path).map_err(io)?);
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
            keks.push(KekSlot {
                id: e.id,
                created_at: e.created_at,
                deactivated_at: e.deactivated_at,
                key: Sensitive::new(key),
            });
        }
        if !keks.iter().any(|k| k.id == file.active) {
            return Err(CryptoError::Keyring(format!(
                "active kek {} not in the keyring",
                file.active
            )));
        }
        Ok(Loaded {
            active: file.active,
            keks,
            destroyed: file.destroyed,
            modified: meta.modified().ok(),
        })
    }

    /// Writes the keyring atomically (temporary file, fsync, rename), mode 0600.
    /// Writes the keyring through a temporary file of this writer's own
    /// (racing writers never share one).
    /// With `create_new` the file is linked into place only if `path` does
    /// not exist (atomic: of racing creators exactly one wins, the others get
    /// [`KeyringWrite::Exists`]); otherwise it replaces `path` by a rename.
    fn write(path: &Path, loaded: &Loaded, create_new: bool) -> Result<(), KeyringWrite> {
        use std::io::Write;
        let io = |e: std::io::Error| KeyringWrite::Failed(CryptoError::Keyring(format!("{}: {e}", path.display())));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let file = KeyringFile {
            version: 1,
            active: loaded.active.clone(),
            keks: loaded
                .keks
                .iter()
                .map(|k| KekEntry {
                    id: k.id.clone(),
                    created_at: k.created_at.clone(),
                    deactivated_at: k.deactivated_at,
                    key: B64.encode(k.key.expose()),
                })
                .collect(),
            destroyed: loaded.destroyed.clone(),
        };
        let json = zeroize::Zeroizing::new(
            serde_json::to_vec_pretty(&file).map_err(|e| KeyringWrite::Failed(CryptoError::Keyring(e.to_string())))?,
        );
        for e in file.keks {
            let mut k = e.key;
            k.zeroize();
        }
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".{}-{:016x}.tmp", std::process::id(), rand::random::<u64>()));
        let tmp = std::path::PathBuf::from(tmp);
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let written = (|| {
            let mut f = opts.open(&tmp)?;
            f.write_all(&json)?;
            f.sync_all()?;
            if create_new {
                std::fs::hard_link(&tmp, path)
            } else {
                std::fs::rename(&tmp, path)
            }
        })();
        let _ = std::fs::remove_file(&tmp);
        match written {
            Ok(()) => {
                // The new name is durable only once its directory is.
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
                }
                Ok(())
            }
            Err(e) if create_new && e.kind() == std::io::ErrorKind::AlreadyExists => Err(KeyringWrite::Exists),
            Err(e) => Err(io(e)),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Loaded> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Re-reads the file if it changed since it was loaded.
    pub fn reload_if_changed(&self) -> Result<(), CryptoError> {
        let now = std::fs::metadata(&self.path).ok().and_then(|m| m.modified().ok());
        if now.is_some() && now != self.read().modified {
            let fresh = Self::load(&self.path)?;
            *self.state.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn list(&self) -> Vec<KekInfo> {
        let st = self.read();
        st.keks
            .iter()
            .map(|k| KekInfo {
                id: k.id.clone(),
                created_at: k.created_at.clone(),
                active: k.id == st.active,
                deactivated_at: k.deactivated_at,
            })
            .collect()
    }

    /// Changes the keyring under an exclusive lock on `<path>.lock`, starting
    /// from the file as it is on disk now (another process may have changed
    /// it), then writes it atomically if `f` says it changed something. Two
    /// writers — the sweeper creating a period KEK, an operator rotating —
    /// never lose each other's KEKs.
    fn modify<R>(&self, f: impl FnOnce(&mut Loaded) -> Result<(R, bool), CryptoError>) -> Result<R, CryptoError> {
        let io = |e: std::io::Error| CryptoError::Keyring(format!("{}: {e}", self.path.display()));
        let mut lock_path = self.path.as_os_str().to_owned();
        lock_path.push(".lock");
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let lock = opts.open(&lock_path).map_err(io)?;
        lock.lock().map_err(io)?;
        let mut fresh = Self::load(&self.path)?;
        let (out, changed) = f(&mut fresh)?;
        if changed {
            Self::write(&self.path, &fresh, false)?;
            fresh.modified = std::fs::metadata(&self.path).ok().and_then(|m| m.modified().ok());
        }
        *self.state.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        drop(lock);
        Ok(out)
    }

    /// Adds a new KEK and makes it the active one; the old stays to unwrap
    /// until every data key is re-wrapped and it is retired. Returns its id.
    pub fn rotate(&self) -> Result<String, CryptoError> {
        self.modify(|st| {
            let id = new_kek_id();
            let now = unix_now();
            let old = st.active.clone();
            for k in st.keks.iter_mut().filter(|k| k.id == old) {
                k.deactivated_at = Some(now);
            }
            st.keks.push(KekSlot {
                id: id.clone(),
                created_at: now.to_string(),
                deactivated_at: None,
                key: new_kek(),
            });
            st.active = id.clone();
            Ok((id, true))
        })
    }

    /// Removes a KEK. Refused for the active KEK and for one deactivated less
    /// than `grace` ago (a process that has not reloaded yet may still wrap
    /// with it). The caller checks that no data key references it.
    pub fn retire(&self, id: &str, grace: std::time::Duration) -> Result<(), CryptoError> {
        let path = self.path.display().to_string();
        self.modify(|st| {
            if st.active == id {
                return Err(CryptoError::Keyring(format!("{id} is the active kek; rotate first")));
            }
            let Some(k) = st.keks.iter().find(|k| k.id == id) else {
                return Err(CryptoError::Keyring(format!("{id} is not in {path}")));
            };
            let since = k.deactivated_at.map(|d| unix_now().saturating_sub(d)).unwrap_or(0);
            if since < grace.as_secs() {
                return Err(CryptoError::Keyring(format!(
                    "{id} stopped being active {since} s ago; wait {} s so every process has reloaded the keyring",
                    grace.as_secs() - since
                )));
            }
            st.keks.retain(|k| k.id != id);
            Ok(((), true))
        })
    }

    /// Adds the (inactive) KEK `id` unless it is there; see [`KeyAdmin::create_kek`].
    pub fn create(&self, id: &str) -> Result<bool, CryptoError> {
        self.reload_if_changed()?;
        if self.read().keks.iter().any(|k| k.id == id) {
            return Ok(false);
        }
        self.modify(|st| {
            if let Some(t) = st.destroyed.iter().find(|t| t.id == id) {
                return Err(CryptoError::KekDestroyed(format!(
                    "kek {id} was destroyed at {} (Unix seconds) and cannot be made again",
                    t.at
                )));
            }
            if st.keks.iter().any(|k| k.id == id) {
                return Ok((false, false));
            }
            st.keks.push(KekSlot {
                id: id.to_owned(),
                created_at: unix_now().to_string(),
                deactivated_at: None,
                key: new_kek(),
            });
            Ok((true, true))
        })
    }

    /// Removes the KEK `id` and leaves a tombstone (its id and the time);
    /// see [`KeyAdmin::destroy_kek`].
    pub fn destroy(&self, id: &str) -> Result<(), CryptoError> {
        self.modify(|st| {
            if st.active == id {
                return Err(CryptoError::Keyring(format!(
                    "{id} is the active kek; it is never destroyed"
                )));
            }
            let had = st.keks.len();
            st.keks.retain(|k| k.id != id);
            let removed = st.keks.len() != had;
            if removed && !st.destroyed.iter().any(|t| t.id == id) {
                st.destroyed.push(Tombstone {
                    id: id.to_owned(),
                    at: unix_now(),
                });
            }
            Ok(((), removed))
        })
    }

    /// The KEKs this keyring destroyed, with Unix seconds.
    pub fn destroyed(&self) -> Vec<(String, u64)> {
        self.read().destroyed.iter().map(|t| (t.id.clone(), t.at)).collect()
    }

    fn with_kek<R>(&self, id: &str, f: impl FnOnce(&[u8; 32]) -> R) -> Result<R, CryptoError> {
        let st = self.read();
        if let Some(k) = st.keks.iter().find(|k| k.id == id) {
            return Ok(f(k.key.expose()));
        }
        Err(match st.destroyed.iter().find(|t| t.id == id) {
            Some(t) => CryptoError::KekDestroyed(format!(
                "kek {id} was destroyed at {} (Unix seconds), once every data key it wrapped had expired",
                t.at
            )),
            None => CryptoError::KeyUnavailable(format!("kek {id} is not in {}", self.path.display())),
        })
    }

    fn seal_under(&self, kek_id: &str, key: &DataKey, context: &[u8]) -> Result<WrappedKey, CryptoError> {
        seal_data_key(key, kek_id.to_owned(), context, |nonce, aad, msg| {
            self.with_kek(kek_id, |kek| {
                let cipher = Aes256Gcm::new_from_slice(kek).map_err(|_| CryptoError::Authentication)?;
                cipher
                    .encrypt(Nonce::from_slice(nonce), Payload { msg, aad })
                    .map_err(|_| CryptoError::Authentication)
            })?
        })
    }
}

impl KeyAdmin for LocalKeyring {
    fn rotate_kek(&self) -> Result<String, CryptoError> {
        self.rotate()
    }
    fn create_kek(&self, id: &str) -> Result<bool, CryptoError> {
        self.create(id)
    }
    fn destroy_kek(&self, id: &str) -> Result<(), CryptoError> {
        self.destroy(id)
    }
    fn retire_kek(&self, id: &str, grace: std::time::Duration) -> Result<(), CryptoError> {
        self.retire(id, grace)
    }
    fn list_keks(&self) -> Result<Vec<KekInfo>, CryptoError> {
        self.reload_if_changed()?;
        Ok(self.list())
    }
    fn describe(&self) -> String {
        format!("keyring file {}", self.path.display())
    }
}

impl KeyProvider for LocalKeyring {
    fn active_kek_id(&self) -> String {
        self.read().active.clone()
    }

    fn wrap(&self, key: &DataKey, context: &[u8]) -> Result<WrappedKey, CryptoError> {
        self.reload_if_changed()?;
        let active = self.active_kek_id();
        self.seal_under(&active, key, context)
    }

    fn wrap_under(&self, kek_id: &str, key: &DataKey, context: &[u8]) -> Result<Option<WrappedKey>, CryptoError> {
        self.reload_if_changed()?;
        if !self.read().keks.iter().any(|k| k.id == kek_id) {
            return Ok(None);
        }
        self.seal_under(kek_id, key, context).map(Some)
    }

    fn unwrap(&self, wrapped: &WrappedKey, context: &[u8]) -> Result<DataKey, CryptoError> {
        // Rotations and retirements by another process take effect here too.
        self.reload_if_changed()?;
        open_data_key(wrapped, context, |nonce, aad, msg| {
            self.with_kek(&wrapped.kek_id, |kek| {
                let cipher = Aes256Gcm::new_from_slice(kek).map_err(|_| CryptoError::Authentication)?;
                cipher
                    .decrypt(Nonce::from_slice(nonce), Payload { msg, aad })
                    .map(zeroize::Zeroizing::new)
                    .map_err(|_| CryptoError::Authentication)
            })?
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn processes_starting_on_a_fresh_keyring_all_get_the_same_kek() {
        // Several recorders started at once on a fresh keyring: before the fix
        // each could write its own KEK over the others' (their data keys then
        // opened nowhere).
        for round in 0..30 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("keyring.json");
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
            let rings: Vec<LocalKeyring> = (0..8)
                .map(|_| {
                    let (p, b) = (path.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        b.wait();
                        LocalKeyring::open_or_create(&p)
                    })
                })
                .collect::<Vec<_>>()
                .into_iter()
                .map(|t| t.join().unwrap().unwrap())
                .collect();
            let on_disk = LocalKeyring::open(&path).unwrap();
            for (i, ring) in rings.iter().enumerate() {
                assert_eq!(
                    ring.active_kek_id(),
                    on_disk.active_kek_id(),
                    "round {round}, opener {i}"
                );
                let dk = DataKey::generate();
                let w = ring.wrap(&dk, b"call/audio-24h").unwrap();
                assert_eq!(on_disk.unwrap(&w, b"call/audio-24h").unwrap().secret(), dk.secret());
            }
            let names: Vec<String> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            assert_eq!(names, ["keyring.json"], "round {round}: temporary files left");
        }
    }

    #[test]
    fn named_keks_are_created_once_by_racing_writers_and_destroyed_for_good() {
        // Before the lock, two processes changing the keyring at once could
        // each rename their own copy over the other's: a KEK one of them had
        // already wrapped under vanished.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keyring.json");
        LocalKeyring::open_or_create(&path).unwrap();
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(6));
        let wrapped: Vec<(String, WrappedKey, DataKey)> = (0..6)
            .map(|i| {
                let (p, b) = (path.clone(), barrier.clone());
                std::thread::spawn(move || {
                    let ring = LocalKeyring::open(&p).unwrap();
                    b.wait();
                    // Every writer makes a KEK of its own and one they share.
                    let own = format!("kek-ki-2026120{i}");
                    ring.create(&own).unwrap();
                    ring.create("kek-ki-20261231").unwrap();
                    let dk = DataKey::generate();
                    let w = ring.wrap_under(&own, &dk, b"c/ki").unwrap().unwrap();
                    (own, w, dk)
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        let ring = LocalKeyring::open(&path).unwrap();
        for (own, w, dk) in &wrapped {
            assert_eq!(&w.kek_id, own);
            assert_eq!(ring.unwrap(w, b"c/ki").unwrap().secret(), dk.secret(), "{own} lost");
        }
        assert_eq!(ring.list().iter().filter(|k| k.id == "kek-ki-20261231").count(), 1);
        assert!(ring
            .wrap_under("kek-ki-19990101", &DataKey::generate(), b"c/ki")
            .unwrap()
            .is_none());

        let (own, w, _) = &wrapped[0];
        ring.destroy(own).unwrap();
        ring.destroy(own).unwrap();
        let e = LocalKeyring::open(&path).unwrap().unwrap(w, b"c/ki").unwrap_err();
        assert!(matches!(e, CryptoError::KekDestroyed(_)), "{e}");
        assert!(ring.wrap_under(own, &DataKey::generate(), b"c/ki").unwrap().is_none());
        assert!(matches!(ring.create(own), Err(CryptoError::KekDestroyed(_))));
        assert!(ring.destroy(&ring.active_kek_id()).is_err(), "the active kek stays");
        let raw = std::fs::read_to_string(&path).unwrap();
        assert!(raw.contains(own.as_str()), "a tombstone names it");
        assert_eq!(ring.destroyed().len(), 1);
    }

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

    #[test]
    fn rotation_keeps_old_keys_readable_and_retire_is_guarded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.json");
        let ring = LocalKeyring::open_or_create(&path).unwrap();
        let old = ring.active_kek_id();
        let w_old = ring.wrap(&DataKey::generate(), b"c").unwrap();
        // Another process (a second handle) rotates; this one picks it up.
        let other = LocalKeyring::open(&path).unwrap();
        let new = other.rotate().unwrap();
        assert_ne!(old, new);
        std::thread::sleep(std::time::Duration::from_millis(20));
        let w_new = ring.wrap(&DataKey::generate(), b"c").unwrap();
        assert_eq!(w_new.kek_id, new, "wrap reloads the rotated keyring");
        assert!(ring.unwrap(&w_old, b"c").is_ok());
        assert!(other.retire(&new, std::time::Duration::ZERO).is_err(), "active kek");
        let e = other
            .retire(&old, std::time::Duration::from_secs(600))
            .unwrap_err()
            .to_string();
        assert!(e.contains("wait"), "{e}");
        other.retire(&old, std::time::Duration::ZERO).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(matches!(ring.unwrap(&w_old, b"c"), Err(CryptoError::KeyUnavailable(_))));
        assert!(ring.unwrap(&w_new, b"c").is_ok());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(ring.list().len(), 1);
    }
}
