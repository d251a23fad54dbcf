//! A KEK provider backed by an HSM through PKCS#11 (the cryptoki crate).
//!
//! The KEKs are AES-256 secret-key objects on the token — sensitive, not
//! extractable — labelled `<prefix><kek id>`; wrapping and unwrapping data keys
//! is AES-256-GCM inside the HSM, with the same sealed layout and associated
//! data as the local keyring (nonce ‖ ciphertext ‖ tag). Which KEK is active is
//! a private data object `<prefix>active` on the token. Tested against SoftHSM2
//! (`deploy/local/services.sh` initialises a token).

use crate::keys::{open_data_key, seal_data_key, KekInfo, KeyAdmin};
use crate::{CryptoError, DataKey, KeyProvider, WrappedKey};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use rand::RngCore;
use std::sync::Mutex;

pub struct Pkcs11Keyring {
    session: Mutex<Session>,
    prefix: String,
    token: String,
    _ctx: Pkcs11,
}

impl std::fmt::Debug for Pkcs11Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Keyring")
            .field("token", &self.token)
            .field("prefix", &self.prefix)
            .finish()
    }
}

fn hsm(e: impl std::fmt::Display) -> CryptoError {
    CryptoError::Keyring(format!("pkcs11: {e}"))
}

/// One initialised context per module and process: PKCS#11 allows a single
/// C_Initialize per library, and dropping the last handle finalises it.
fn context(module: &std::path::Path) -> Result<Pkcs11, CryptoError> {
    static CONTEXTS: std::sync::OnceLock<Mutex<Vec<(std::path::PathBuf, Pkcs11)>>> = std::sync::OnceLock::new();
    let mut all = CONTEXTS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some((_, ctx)) = all.iter().find(|(p, _)| p == module) {
        return Ok(ctx.clone());
    }
    let ctx = Pkcs11::new(module).map_err(|e| hsm(format!("loading {}: {e}", module.display())))?;
    ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .map_err(hsm)?;
    all.push((module.to_owned(), ctx.clone()));
    Ok(ctx)
}

impl Pkcs11Keyring {
    /// Opens the token labelled `token` through `module`, logs in with `pin`,
    /// and creates a first KEK if none exists under `prefix`.
    pub fn open(module: &std::path::Path, token: &str, pin: &str, prefix: &str) -> Result<Self, CryptoError> {
        let ctx = context(module)?;
        let slot = ctx
            .get_slots_with_token()
            .map_err(hsm)?
            .into_iter()
            .find(|s| {
                ctx.get_token_info(*s)
                    .map(|t| t.label().trim() == token)
                    .unwrap_or(false)
            })
            .ok_or_else(|| hsm(format!("no token labelled {token:?}")))?;
        let session = ctx.open_rw_session(slot).map_err(hsm)?;
        // Login is per application: a second session of this process is
        // already logged in.
        match session.login(UserType::User, Some(&AuthPin::from(pin.to_owned()))) {
            Ok(()) | Err(cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::UserAlreadyLoggedIn, _)) => {}
            Err(e) => return Err(hsm(e)),
        }
        let ring = Self {
            session: Mutex::new(session),
            prefix: prefix.to_owned(),
            token: token.to_owned(),
            _ctx: ctx,
        };
        if ring.pointers()?.is_empty() {
            ring.rotate()?;
        }
        Ok(ring)
    }

    fn session(&self) -> std::sync::MutexGuard<'_, Session> {
        self.session.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn active_label(&self) -> Vec<u8> {
        format!("{}active", self.prefix).into_bytes()
    }

    /// The active-KEK pointers on the token with their values, `seq:kek-id`.
    fn pointers(&self) -> Result<Vec<(ObjectHandle, String)>, CryptoError> {
        let s = self.session();
        let found = s
            .find_objects(&[
                Attribute::Class(ObjectClass::DATA),
                Attribute::Label(self.active_label()),
            ])
            .map_err(hsm)?;
        let mut out = Vec::new();
        for h in found {
            for a in s.get_attributes(h, &[AttributeType::Value]).map_err(hsm)? {
                if let Attribute::Value(v) = a {
                    out.push((h, String::from_utf8_lossy(&v).to_string()));
                }
            }
        }
        Ok(out)
    }

    fn kek_handle(&self, id: &str) -> Result<ObjectHandle, CryptoError> {
        let s = self.session();
        let found = s
            .find_objects(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::Label(format!("{}{id}", self.prefix).into_bytes()),
            ])
            .map_err(hsm)?;
        found
            .into_iter()
            .next()
            .ok_or_else(|| CryptoError::KeyUnavailable(format!("kek {id} is not on token {}", self.token)))
    }

    /// Generates the AES-256 KEK `id` inside the HSM: sensitive, not extractable.
    fn generate(&self, id: &str) -> Result<(), CryptoError> {
        let s = self.session();
        s.generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::ValueLen(32u64.into()),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Encrypt(true),
                Attribute::Decrypt(true),
                Attribute::Label(format!("{}{id}", self.prefix).into_bytes()),
                Attribute::Id(id.as_bytes().to_vec()),
            ],
        )
        .map_err(hsm)?;
        Ok(())
    }

    /// Creates the KEK `id` unless the token has it; see [`KeyAdmin::create_kek`].
    /// Period KEKs are made by one process (the sweeper) ahead of their
    /// period: two processes generating the same label would each use their own.
    pub fn create(&self, id: &str) -> Result<bool, CryptoError> {
        match self.kek_handle(id) {
            Ok(_) => Ok(false),
            Err(CryptoError::KeyUnavailable(_)) => self.generate(id).map(|()| true),
            Err(e) => Err(e),
        }
    }

    /// Destroys the KEK `id` inside the HSM; see [`KeyAdmin::destroy_kek`].
    pub fn destroy(&self, id: &str) -> Result<(), CryptoError> {
        if self.active_kek_id() == id {
            return Err(CryptoError::Keyring(format!(
                "{id} is the active kek; it is never destroyed"
            )));
        }
        match self.kek_handle(id) {
            Ok(h) => self.session().destroy_object(h).map_err(hsm),
            Err(CryptoError::KeyUnavailable(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Generates a new KEK inside the HSM and makes it active. Returns its id.
    pub fn rotate(&self) -> Result<String, CryptoError> {
        let mut idb = [0u8; 8];
        rand::rngs::OsRng.fill_bytes(&mut idb);
        let id = format!("kek-{}", hex::encode(idb));
        self.generate(&id)?;
        // Data objects cannot be modified: write a newer pointer, then remove
        // the older ones. Readers take the newest, so the switch is atomic.
        let older = self.pointers()?;
        let seq = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        self.session()
            .create_object(&[
                Attribute::Class(ObjectClass::DATA),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Label(self.active_label()),
                Attribute::Value(format!("{seq:040}:{id}").into_bytes()),
            ])
            .map_err(hsm)?;
        for (h, _) in older {
            self.session().destroy_object(h).map_err(hsm)?;
        }
        Ok(id)
    }

    /// Destroys a KEK in the HSM: not the active one, and not within `grace`
    /// of the last rotation. The caller checks that no data key references it.
    pub fn retire(&self, id: &str, grace: std::time::Duration) -> Result<(), CryptoError> {
        if self.active_kek_id() == id {
            return Err(CryptoError::Keyring(format!("{id} is the active kek; rotate first")));
        }
        let newest = self.pointers()?.into_iter().map(|(_, v)| v).max().unwrap_or_default();
        let rotated_ns: u128 = newest.split(':').next().and_then(|n| n.parse().ok()).unwrap_or(0);
        let now_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let since = ((now_ns.saturating_sub(rotated_ns)) / 1_000_000_000) as u64;
        if since < grace.as_secs() {
            return Err(CryptoError::Keyring(format!(
                "the last rotation was {since} s ago; wait {} s so every process uses the new kek",
                grace.as_secs() - since
            )));
        }
        let h = self.kek_handle(id)?;
        self.session().destroy_object(h).map_err(hsm)
    }

    /// The KEKs under this prefix on the token.
    pub fn list(&self) -> Result<Vec<KekInfo>, CryptoError> {
        let active = self.active_kek_id();
        let s = self.session();
        let handles = s
            .find_objects(&[Attribute::Class(ObjectClass::SECRET_KEY)])
            .map_err(hsm)?;
        let mut out = Vec::new();
        for h in handles {
            // Another process (or session) may destroy a key between the
            // search and this read: it is no longer there to list.
            let attrs = match s.get_attributes(h, &[AttributeType::Label]) {
                Err(cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::ObjectHandleInvalid, _)) => continue,
                other => other.map_err(hsm)?,
            };
            for a in attrs {
                if let Attribute::Label(l) = a {
                    let label = String::from_utf8_lossy(&l).to_string();
                    if let Some(id) = label.strip_prefix(&self.prefix).filter(|id| id.starts_with("kek-")) {
                        out.push(KekInfo {
                            id: id.to_owned(),
                            created_at: String::new(),
                            active: id == active,
                            deactivated_at: None,
                        });
                    }
                }
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    fn gcm(
        &self,
        kek_id: &str,
        encrypt: bool,
        nonce: &mut [u8; 12],
        aad: &[u8],
        data: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let h = self.kek_handle(kek_id)?;
        let params = GcmParams::new(nonce, aad, 128u64.into()).map_err(hsm)?;
        let mech = Mechanism::AesGcm(params);
        let s = self.session();
        if encrypt {
            s.encrypt(&mech, h, data).map_err(hsm)
        } else {
            s.decrypt(&mech, h, data).map_err(|_| CryptoError::Authentication)
        }
    }
}

impl KeyAdmin for Pkcs11Keyring {
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
        self.list()
    }
    fn describe(&self) -> String {
        format!("PKCS#11 token {} (prefix {})", self.token, self.prefix)
    }
}

impl KeyProvider for Pkcs11Keyring {
    fn active_kek_id(&self) -> String {
        let newest = self
            .pointers()
            .unwrap_or_default()
            .into_iter()
            .map(|(_, v)| v)
            .max()
            .unwrap_or_default();
        newest.split_once(':').map(|(_, id)| id.to_owned()).unwrap_or_default()
    }

    fn wrap(&self, key: &DataKey, context: &[u8]) -> Result<WrappedKey, CryptoError> {
        let active = self.active_kek_id();
        if active.is_empty() {
            return Err(CryptoError::KeyUnavailable(format!(
                "no active kek on token {}",
                self.token
            )));
        }
        seal_data_key(key, active.clone(), context, |nonce, aad, msg| {
            self.gcm(&active, true, nonce, aad, msg)
        })
    }

    fn wrap_under(&self, kek_id: &str, key: &DataKey, context: &[u8]) -> Result<Option<WrappedKey>, CryptoError> {
        match self.kek_handle(kek_id) {
            Ok(_) => {}
            Err(CryptoError::KeyUnavailable(_)) => return Ok(None),
            Err(e) => return Err(e),
        }
        seal_data_key(key, kek_id.to_owned(), context, |nonce, aad, msg| {
            self.gcm(kek_id, true, nonce, aad, msg)
        })
        .map(Some)
    }

    fn unwrap(&self, wrapped: &WrappedKey, context: &[u8]) -> Result<DataKey, CryptoError> {
        open_data_key(wrapped, context, |nonce, aad, msg| {
            self.gcm(&wrapped.kek_id, false, nonce, aad, msg)
                .map(zeroize::Zeroizing::new)
        })
    }
}
