//! The call vault: the one place that knows a call's data keys and its
//! sealed artifacts. Every role that seals or opens personal data goes
//! through it — the recorder, compaction, the KI roles, the review service,
//! disclosure and data-subject requests — so "which key, under which
//! context, with which associated data" is written once.
//!
//! Layout:
//! - [`Vault`] (this file): a call's data key per retention class
//!   ([`KeyClass`]): get, get-or-create, shred, and R12's [`Vault::purge_ki`];
//!   sealing and opening an artifact (bytes or JSON) with the format-v2
//!   header that binds it to its call, class, kind and id; storing one
//!   (seal → blob → artifact row) and reading it back.
//! - [`reader`]: reading audio back: a whole recording or copy verified end
//!   to end, or a window by random access (`read_window`, `read_frames`);
//!   dead-letter originals; WAV out.
//!
//! Keys are only ever stored wrapped under a KEK of the [`KeyProvider`];
//! the wrap is bound to `<owner>/<class>` ([`key_context`]), so a wrapped key
//! moved to another call or class does not open. A shredded key is a row
//! with `destroyed_at_us` set: it is never unwrapped again (opening anything
//! under it is [`VaultError::KeyDestroyed`]), and it stands in the way of a
//! new key of the same class (the store keeps the first key of a class).

pub mod kek;
pub mod reader;

pub use reader::{Recording, Which, Window, WireArtifact};

use bytes::Bytes;
use opptak_crypto::segment::ArtifactKind;
use opptak_crypto::stream::{self, StreamInfo, DEFAULT_SEGMENT_SIZE};
use opptak_crypto::{CryptoError, DataKey, KeyProvider, WrappedKey};
use opptak_domain::model::{CallId, KeyClass};
use opptak_domain::time::Clock;
use opptak_store::meta::{ArtifactRow, KeyRow, ShredEvidence, StoredKey, StoredObject};
use opptak_store::{BlobStore, MetadataStore, StoreError};
use std::sync::Arc;

/// What can go wrong reading or sealing through the vault.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("no recording for call {0}")]
    UnknownCall(String),
    #[error("call {call_id} has no {kind} (not written yet, or not kept for this call)")]
    NoArtifact { call_id: String, kind: &'static str },
    #[error("cannot decrypt: {0}")]
    Key(CryptoError),
    #[error("key destroyed: the {class} data key of call {call_id} was crypto-shredded (at {at_us} µs since the epoch); nothing of that class can ever be decrypted again")]
    KeyDestroyed { call_id: String, class: String, at_us: i64 },
    #[error("recording {recording_id} failed verification: {source}")]
    Segment { recording_id: String, source: CryptoError },
    #[error("recording {recording_id} is inconsistent: {detail}")]
    Integrity { recording_id: String, detail: String },
    #[error("{what} of call {call_id} is not valid JSON: {detail}")]
    Json {
        call_id: String,
        what: &'static str,
        detail: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl VaultError {
    /// Whether trying again later can help (the store or the KEK provider
    /// was unreachable), as opposed to a verdict about the data (shredded,
    /// tampered, missing) that no retry changes.
    pub fn is_transient(&self) -> bool {
        match self {
            VaultError::Store(e) => matches!(e, StoreError::Unavailable(_)),
            // A KEK destroyed on purpose (`CryptoError::KekDestroyed`) is final.
            VaultError::Key(CryptoError::KeyUnavailable(_)) => true,
            _ => false,
        }
    }
}

/// What a key's wrap is bound to: `<owner>/<class>`, the owner being a call
/// id (or `deadletters-<day>` for the dead-letter key of a day).
pub fn key_context(owner: &str, class: &str) -> Vec<u8> {
    key_ref(owner, class).into_bytes()
}

/// `<owner>/<class>`: the key reference a format-v2 header carries (and the
/// context its key's wrap is bound to).
pub fn key_ref(owner: &str, class: &str) -> String {
    format!("{owner}/{class}")
}

/// A stored key as the KEK provider sees it.
fn wrapped(key: &StoredKey) -> WrappedKey {
    WrappedKey {
        key_id: key.key_id.clone(),
        kek_id: key.kek_id.clone(),
        sealed: key.sealed.clone(),
    }
}

/// Wraps `key` of `class`, made at `at_us`, bound to `context`: under the
/// KEK of its class and period ([`kek`]), or the provider's active KEK for a
/// class without period KEKs or before the period's KEK exists.
pub fn wrap_key<K: KeyProvider + ?Sized>(
    keys: &K,
    key: &DataKey,
    class: &str,
    context: &[u8],
    at_us: i64,
) -> Result<StoredKey, CryptoError> {
    let w = kek::wrap_for_period(keys, key, class, context, at_us)?;
    Ok(StoredKey {
        key_id: w.key_id,
        class: class.to_owned(),
        kek_id: w.kek_id,
        sealed: w.sealed,
    })
}

/// Unwraps a stored key bound to `context` (keys that are not a call's:
/// the audit log's signing key; re-wrapping at KEK rotation).
pub fn unwrap_key<K: KeyProvider + ?Sized>(keys: &K, key: &StoredKey, context: &[u8]) -> Result<DataKey, CryptoError> {
    keys.unwrap(&wrapped(key), context)
}

/// Opens the chunk key a sealing telephony system sent in `CallStarted`,
/// under a KEK shared with it (`keys.telephony_keyring`).
pub fn open_telephony_key(
    shared: &dyn KeyProvider,
    call_id: &CallId,
    tk: &opptak_proto::v1::TelephonyKey,
) -> Result<DataKey, CryptoError> {
    let w = WrappedKey {
        key_id: tk.key_id.clone(),
        kek_id: tk.kek_id.clone(),
        sealed: tk.wrapped.clone(),
    };
    shared.unwrap(&w, &opptak_crypto::chunk::key_context(call_id.as_str()))
}

/// Opens the data key a chat system sent in `ConversationStarted`
/// (`message_key`), under a KEK shared with it (`keys.telephony_keyring`),
/// context `"<conversation id>/messages"`.
pub fn open_message_key(
    shared: &dyn KeyProvider,
    conversation_id: &CallId,
    k: &opptak_proto::v1::TelephonyKey,
) -> Result<DataKey, CryptoError> {
    let w = WrappedKey {
        key_id: k.key_id.clone(),
        kek_id: k.kek_id.clone(),
        sealed: k.wrapped.clone(),
    };
    shared.unwrap(&w, &opptak_crypto::chunk::message_key_context(conversation_id.as_str()))
}

/// The format-v2 header an artifact of `call_id` sealed under `key` must
/// declare: its kind, the key, `<call>/<class>` and its id. Opening checks
/// all of it, so an object moved to another call, class or id fails closed.
pub fn artifact_info(call_id: &CallId, class: &str, key_id: &str, kind: ArtifactKind, artifact_id: &str) -> StreamInfo {
    StreamInfo {
        kind,
        key_id: key_id.to_owned(),
        key_ref: key_ref(call_id.as_str(), class),
        artifact_id: artifact_id.to_owned(),
    }
}

/// One artifact of a call to seal or open: its key class, kind and id.
#[derive(Clone, Copy, Debug)]
pub struct Sealing<'a> {
    pub call_id: &'a CallId,
    /// The key's retention class (`KeyClass::as_str`).
    pub class: &'a str,
    pub kind: ArtifactKind,
    pub artifact_id: &'a str,
}

impl<'a> Sealing<'a> {
    /// A version of the advisor's text in the review (`review/<n>`): under
    /// the `ki` key, as a draft. Sealed by the review service, opened by it
    /// and by disclosure.
    pub fn review_version(call_id: &'a CallId, artifact_id: &'a str) -> Self {
        Sealing {
            call_id,
            class: KeyClass::Ki.as_str(),
            kind: ArtifactKind::Draft,
            artifact_id,
        }
    }
}

impl<'a> Sealing<'a> {
    /// A version of the review that amends an approved summary, sealed under
    /// the `record-5y` key: the amendment is part of the 5-year record and
    /// outlives the call's KI data.
    pub fn amendment_version(call_id: &'a CallId, artifact_id: &'a str) -> Self {
        Sealing {
            call_id,
            class: KeyClass::Record5y.as_str(),
            kind: ArtifactKind::ApprovedSummary,
            artifact_id,
        }
    }
}

/// The keys a call's review versions may be sealed under: its `ki` key
/// (edits, approval, rejection) and its `record-5y` key (amendments), those
/// that still exist. See [`ReviewText::open`].
pub struct ReviewKeys {
    ki: Option<DataKey>,
    record: Option<DataKey>,
}

impl Vault {
    /// The call's live review keys (none is an error: a shredded or never
    /// made key leaves those versions unreadable).
    pub async fn review_keys(&self, call_id: &CallId) -> Result<ReviewKeys, VaultError> {
        let ki = self.key(call_id, KeyClass::Ki.as_str()).await?;
        let record = self.key(call_id, KeyClass::Record5y.as_str()).await?;
        Ok(ReviewKeys { ki, record })
    }
}

impl ReviewText {
    /// Opens version `version` of a call's review, sealed under the key
    /// `key_id`; `None` once that key is gone (or the bytes do not open).
    pub fn open(call_id: &CallId, version: u64, key_id: &str, sealed: &[u8], keys: &ReviewKeys) -> Option<Self> {
        let artifact = format!("review/{version}");
        if let Some(k) = keys.ki.as_ref().filter(|k| k.id() == key_id) {
            return Sealing::review_version(call_id, &artifact).open_json(k, sealed).ok();
        }
        let k = keys.record.as_ref().filter(|k| k.id() == key_id)?;
        Sealing::amendment_version(call_id, &artifact).open_json(k, sealed).ok()
    }

    /// Whether the call's KI key is among `keys` (version texts sealed under
    /// it are readable).
    pub fn ki_readable(keys: &ReviewKeys) -> bool {
        keys.ki.is_some()
    }
}

/// The sealed body of a review version: `{"text": …}`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReviewText {
    /// The summary text (edits, approval, amendment) or the rejection's reason.
    pub text: String,
    /// The topics the advisor chose with this version (absent: the draft's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topics: Option<Vec<String>>,
    /// Why an approved summary was amended (amendments only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Sealing<'_> {
    fn info(&self, key: &DataKey) -> StreamInfo {
        artifact_info(self.call_id, self.class, key.id(), self.kind, self.artifact_id)
    }

    /// Seals `body` (format v2, 64 KiB segments).
    pub fn seal(&self, key: &DataKey, body: &[u8]) -> Result<Vec<u8>, VaultError> {
        stream::seal(key, &self.info(key), DEFAULT_SEGMENT_SIZE, body).map_err(VaultError::Key)
    }

    /// Seals `value` as JSON.
    pub fn seal_json<T: serde::Serialize>(&self, key: &DataKey, value: &T) -> Result<Vec<u8>, VaultError> {
        let json = serde_json::to_vec(value).map_err(|e| self.json_error(e))?;
        self.seal(key, &json)
    }

    /// Opens what [`Sealing::seal`] sealed; any other header, key or a
    /// changed byte fails.
    pub fn open(&self, key: &DataKey, sealed: &[u8]) -> Result<Vec<u8>, VaultError> {
        stream::open(key, sealed, &self.info(key)).map_err(|source| VaultError::Segment {
            recording_id: self.artifact_id.to_owned(),
            source,
        })
    }

    /// Opens what [`Sealing::seal_json`] sealed.
    pub fn open_json<T: serde::de::DeserializeOwned>(&self, key: &DataKey, sealed: &[u8]) -> Result<T, VaultError> {
        serde_json::from_slice(&self.open(key, sealed)?).map_err(|e| self.json_error(e))
    }

    fn what(&self) -> &'static str {
        match self.kind {
            ArtifactKind::Transcript => "transcript",
            ArtifactKind::Draft => "draft",
            ArtifactKind::ApprovedSummary => "approved summary",
            ArtifactKind::TopicTags => "topic tags",
            _ => "artifact",
        }
    }

    fn json_error(&self, e: serde_json::Error) -> VaultError {
        VaultError::Json {
            call_id: self.call_id.to_string(),
            what: self.what(),
            detail: e.to_string(),
        }
    }
}

/// A call's keys and sealed artifacts over the metadata store, the blob
/// store and the KEK provider.
#[derive(Clone)]
pub struct Vault {
    meta: Arc<dyn MetadataStore>,
    blobs: Arc<dyn BlobStore>,
    keys: Arc<dyn KeyProvider>,
    clock: Arc<dyn Clock>,
}

impl Vault {
    pub fn new(
        meta: Arc<dyn MetadataStore>,
        blobs: Arc<dyn BlobStore>,
        keys: Arc<dyn KeyProvider>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            meta,
            blobs,
            keys,
            clock,
        }
    }

    pub fn meta(&self) -> &Arc<dyn MetadataStore> {
        &self.meta
    }

    pub fn blobs(&self) -> &Arc<dyn BlobStore> {
        &self.blobs
    }

    /// Whether both stores answer now: the metadata store a trivial query,
    /// the blob store a listing of a prefix nothing is stored under (a round
    /// trip to S3; `BlobStore::verify` asks only once). For roles waiting
    /// out an outage (a PostgreSQL failover, an object store restarting).
    pub async fn stores_answer(&self) -> Result<(), StoreError> {
        self.meta.ping().await?;
        self.blobs.list("opptak-probe/").await.map(drop)
    }

    pub fn keys(&self) -> &Arc<dyn KeyProvider> {
        &self.keys
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// A fresh data key for `owner`'s `class`, wrapped and not yet stored:
    /// the recorder stores it in the transaction that stores the call.
    pub fn new_key(&self, owner: &str, class: &str) -> Result<(DataKey, StoredKey), VaultError> {
        let key = DataKey::generate();
        let stored = wrap_key(
            self.keys.as_ref(),
            &key,
            class,
            &key_context(owner, class),
            self.clock.now_us(),
        )
        .map_err(VaultError::Key)?;
        Ok((key, stored))
    }

    /// Unwraps a stored key of `owner` (a call id, or the dead-letter owner of a day).
    pub fn open_key(&self, owner: &str, key: &StoredKey) -> Result<DataKey, VaultError> {
        unwrap_key(self.keys.as_ref(), key, &key_context(owner, &key.class)).map_err(VaultError::Key)
    }

    /// Unwraps a call's key row; a shredded one is [`VaultError::KeyDestroyed`].
    pub fn open_row(&self, call_id: &CallId, row: &KeyRow) -> Result<DataKey, VaultError> {
        if let Some(at_us) = row.destroyed_at_us {
            return Err(VaultError::KeyDestroyed {
                call_id: call_id.to_string(),
                class: row.key.class.clone(),
                at_us,
            });
        }
        self.open_key(call_id.as_str(), &row.key)
    }

    /// The call's live key of `class`; `None` if it was never made or is shredded.
    pub async fn key(&self, call_id: &CallId, class: &str) -> Result<Option<DataKey>, VaultError> {
        match self.meta.class_key(call_id, class).await? {
            Some(row) if row.destroyed_at_us.is_none() => self.open_row(call_id, &row).map(Some),
            _ => Ok(None),
        }
    }

    /// The call's key of `class`, made on first use; `None` once shredded
    /// (a shredded class never gets a new key). Two processes racing to make
    /// it both get the one the store kept.
    pub async fn key_or_create(&self, call_id: &CallId, class: KeyClass) -> Result<Option<DataKey>, VaultError> {
        let row = self.row_or_create(call_id, class.as_str()).await?;
        if row.destroyed_at_us.is_some() {
            return Ok(None);
        }
        self.open_row(call_id, &row).map(Some)
    }

    async fn row_or_create(&self, call_id: &CallId, class: &str) -> Result<KeyRow, VaultError> {
        if let Some(row) = self.meta.class_key(call_id, class).await? {
            return Ok(row);
        }
        let (_, stored) = self.new_key(call_id.as_str(), class)?;
        Ok(self.meta.create_key(call_id, &stored, self.clock.now_us()).await?)
    }

    /// Stores `key` (a data key a producer sent, e.g. a chat system's) as the
    /// call's key of `class`, wrapped under a KEK of ours; returns the key the
    /// store keeps (the first one stored, if two race). `None` once shredded.
    pub async fn adopt_key(
        &self,
        call_id: &CallId,
        class: KeyClass,
        key: &DataKey,
    ) -> Result<Option<DataKey>, VaultError> {
        let row = match self.meta.class_key(call_id, class.as_str()).await? {
            Some(row) => row,
            None => {
                let stored = wrap_key(
                    self.keys.as_ref(),
                    key,
                    class.as_str(),
                    &key_context(call_id.as_str(), class.as_str()),
                    self.clock.now_us(),
                )
                .map_err(VaultError::Key)?;
                self.meta.create_key(call_id, &stored, self.clock.now_us()).await?
            }
        };
        if row.destroyed_at_us.is_some() {
            return Ok(None);
        }
        self.open_row(call_id, &row).map(Some)
    }

    /// The dead-letter key of `day` (UTC) for originals that name no known
    /// call, made on first use; returns it with its owner/class reference.
    pub async fn deadletter_key(&self, day: &str) -> Result<(DataKey, String), VaultError> {
        let owner = format!("deadletters-{day}");
        let class = KeyClass::Audio24h.as_str();
        let (_, stored) = self.new_key(&owner, class)?;
        let row = self.meta.deadletter_key(day, &stored, self.clock.now_us()).await?;
        let key = self.open_key(&owner, &row.key)?;
        Ok((key, key_ref(&owner, class)))
    }

    /// Crypto-shreds the call's key of `class`: the wrapped key is
    /// overwritten and marked destroyed, with evidence (never a key), in one
    /// transaction; every artifact under it is unreadable from then on.
    pub async fn shred(
        &self,
        call_id: &CallId,
        class: &str,
        reason: &str,
        requested_by: &str,
    ) -> Result<ShredEvidence, VaultError> {
        let ev = self
            .meta
            .shred_key(call_id, class, reason, requested_by, self.clock.now_us())
            .await?;
        self.meta.scrub_shredded().await?;
        Ok(ev)
    }

    /// R12: makes every KI artifact of a call unreadable, everywhere, by
    /// shredding its `ki` data key (transcript segments on Kafka, stored
    /// transcripts and drafts, the KI audio copy). When no KI key exists yet,
    /// one is created and shredded at once: the destroyed row then stands in
    /// the way of any later attempt to create one, so nothing of the call can
    /// be sealed for KI afterwards. Idempotent. Returns whether this call
    /// shredded the key.
    pub async fn purge_ki(&self, call_id: &CallId, requested_by: &str, at_us: i64) -> Result<bool, VaultError> {
        let class = KeyClass::Ki.as_str();
        if self.meta.load_call(call_id).await?.is_none() {
            // Not stored yet (an opt-out right after the start): the recorder,
            // which owns the call's rows and sees the same opt-out, purges it
            // once the call is stored. Nothing of the call is sealed for KI
            // before then: its ki key cannot exist without the call's row.
            tracing::info!(call_id = %call_id, "KI opt-out before the call is stored: the recorder applies it");
            return Ok(false);
        }
        let reason = format!("KI opt-out requested by {requested_by}");
        self.purge_class(call_id, class, &reason, requested_by, at_us).await
    }

    /// Makes every artifact of a call's (or conversation's) `class`
    /// unreadable everywhere by shredding its key, and deletes their objects
    /// (R12's KI purge; a customer's objection to the analysis of their
    /// conversations). When no key exists yet, one is created and shredded at
    /// once, so nothing of that class can be sealed afterwards. Idempotent.
    /// Returns whether this call shredded the key.
    pub async fn purge_class(
        &self,
        call_id: &CallId,
        class: &str,
        reason: &str,
        requested_by: &str,
        at_us: i64,
    ) -> Result<bool, VaultError> {
        let row = self.row_or_create(call_id, class).await?;
        let shredded = if row.destroyed_at_us.is_some() {
            false
        } else {
            match self.meta.shred_key(call_id, class, reason, requested_by, at_us).await {
                Ok(_) => {
                    tracing::info!(call_id = %call_id, class, reason, "class key shredded: every artifact of the class unreadable");
                    self.meta.scrub_shredded().await?;
                    true
                }
                // Shredded by another process meanwhile.
                Err(StoreError::NotFound(_)) => false,
                Err(e) => match self.meta.class_key(call_id, class).await {
                    Ok(Some(k)) if k.destroyed_at_us.is_some() => false,
                    _ => return Err(e.into()),
                },
            }
        };
        // Unreadable is not enough: the objects go too (also when another
        // process shredded the key and stopped before deleting them).
        for a in self.meta.artifacts(call_id).await? {
            let Some(object) = a.object.filter(|_| a.key.key.class == class) else {
                continue;
            };
            match self.blobs.delete(&object.path).await {
                Ok(()) | Err(StoreError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(shredded)
    }

    /// Seals `body` as an artifact of the call under `key`, writes it to the
    /// blob store at `path` and records it (kind `store_kind`) in the
    /// metadata store. Routing its retention is the caller's next step.
    /// Returns the stored object and the sealed bytes (for publishing).
    pub async fn store_artifact(
        &self,
        what: Sealing<'_>,
        key: &DataKey,
        store_kind: &str,
        path: String,
        body: &[u8],
    ) -> Result<(StoredObject, Vec<u8>), VaultError> {
        let (object, sealed) = self.seal_and_put(&what, key, path, body).await?;
        self.meta
            .add_artifact(
                what.call_id,
                what.artifact_id,
                store_kind,
                key.id(),
                &object,
                self.clock.now_us(),
            )
            .await?;
        Ok((object, sealed))
    }

    /// Seals `body` as `what` under `key` and writes it to `path`.
    async fn seal_and_put(
        &self,
        what: &Sealing<'_>,
        key: &DataKey,
        path: String,
        body: &[u8],
    ) -> Result<(StoredObject, Vec<u8>), VaultError> {
        let sealed = what.seal(key, body)?;
        self.blobs.put(&path, Bytes::from(sealed.clone())).await?;
        let object = StoredObject {
            path,
            bytes: sealed.len() as u64,
        };
        Ok((object, sealed))
    }

    /// Seals `body` as a new object that replaces the call's artifact of
    /// `store_kind` whose id is `old_id` (an amendment): the new object is
    /// written first, the rows move to it (the retention clock, hold and
    /// rules stay), then the old object is deleted. A crash between leaves
    /// an orphan object under the call's key, never a row without its object.
    pub async fn replace_artifact(
        &self,
        what: Sealing<'_>,
        key: &DataKey,
        store_kind: &str,
        old_id: &str,
        path: String,
        body: &[u8],
    ) -> Result<(StoredObject, Vec<u8>), VaultError> {
        let (object, sealed) = self.seal_and_put(&what, key, path, body).await?;
        let replaced = self
            .meta
            .replace_artifact(
                what.call_id,
                store_kind,
                old_id,
                what.artifact_id,
                &object,
                self.clock.now_us(),
            )
            .await;
        match replaced {
            Ok(Some(old)) if old != object.path => self.blobs.delete(&old).await?,
            Ok(_) => {}
            Err(e) => {
                // Not recorded: the new object is nobody's.
                let _ = self.blobs.delete(&object.path).await;
                return Err(e.into());
            }
        }
        Ok((object, sealed))
    }

    /// The (first) stored artifact of `store_kind` of a call.
    pub async fn artifact(&self, call_id: &CallId, store_kind: &'static str) -> Result<ArtifactRow, VaultError> {
        self.meta
            .artifacts(call_id)
            .await?
            .into_iter()
            .find(|a| a.kind == store_kind)
            .ok_or_else(|| VaultError::NoArtifact {
                call_id: call_id.to_string(),
                kind: store_kind,
            })
    }

    /// Reads and opens the (first) artifact of `store_kind` of a call, a
    /// single sealed object (transcript, draft, approved summary).
    pub async fn read_object(
        &self,
        call_id: &CallId,
        store_kind: &'static str,
        kind: ArtifactKind,
    ) -> Result<Vec<u8>, VaultError> {
        let art = self.artifact(call_id, store_kind).await?;
        let key = self.open_row(call_id, &art.key)?;
        let obj = art.object.as_ref().ok_or_else(|| VaultError::Integrity {
            recording_id: art.artifact_id.clone(),
            detail: format!("{store_kind} without an object"),
        })?;
        let bytes = self.blobs.get(&obj.path).await?;
        Sealing {
            call_id,
            class: &art.key.key.class,
            kind,
            artifact_id: &art.artifact_id,
        }
        .open(&key, &bytes)
    }

    /// [`Vault::read_object`] as JSON.
    pub async fn read_json<T: serde::de::DeserializeOwned>(
        &self,
        call_id: &CallId,
        store_kind: &'static str,
        kind: ArtifactKind,
    ) -> Result<T, VaultError> {
        let bytes = self.read_object(call_id, store_kind, kind).await?;
        serde_json::from_slice(&bytes).map_err(|e| VaultError::Json {
            call_id: call_id.to_string(),
            what: store_kind,
            detail: e.to_string(),
        })
    }
}
