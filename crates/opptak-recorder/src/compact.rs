//! Compaction: a finished recording's spool segments (format v1, one per
//! flush, spread over many spool objects) are verified end to end and
//! rewritten as one format-v2 object with fixed-size segments, which serves
//! random access by time. The same pass writes the copies the call's
//! retention classes need, each under its own data key:
//!
//! - investment-advice calls: an archive copy under `archive-5y`;
//! - KI calls (KI enabled and the customer informed, no opt-out): a KI audio
//!   copy under `ki`.
//!
//! Crash-safe: objects are written first under fresh names, then recorded in
//! one transaction that succeeds only if nobody compacted the recording
//! first. A crash in between leaves unreferenced objects (no key material,
//! sealed under the call's keys) for the sweeper, and the recording is
//! compacted again later. Every retry draws a new salt and nonce prefix.

use crate::reader::{self, ReadError, Which};
use crate::{key_context, RecorderError};
use bytes::Bytes;
use opptak_crypto::stream::{self, StreamInfo};
use opptak_crypto::{DataKey, KeyProvider, WrappedKey};
use opptak_domain::model::{CallId, KeyClass};
use opptak_domain::retention::{ArtifactKind, Policy, Tier};
use opptak_domain::time::{Clock, SystemClock};
use opptak_retention::Retention;
use opptak_store::archive::ArchiveStore;
use opptak_store::meta::{ArtifactRow, Compacted, KeyRow, NewCopy, StoredKey, StoredObject};
use opptak_store::{BlobStore, MetadataStore, StoreError};
use std::sync::Arc;

/// Rewrites finished recordings into format v2 and writes their copies.
#[derive(Clone)]
pub struct Compactor {
    meta: Arc<dyn MetadataStore>,
    blobs: Arc<dyn BlobStore>,
    keys: Arc<dyn KeyProvider>,
    segment_size: u32,
    retention: Retention,
    archive: Option<Arc<dyn ArchiveStore>>,
}

/// What one compaction did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactOutcome {
    pub compacted: bool,
    pub copies: Vec<String>,
}

impl Compactor {
    pub fn new(
        meta: Arc<dyn MetadataStore>,
        blobs: Arc<dyn BlobStore>,
        keys: Arc<dyn KeyProvider>,
        segment_size: u32,
    ) -> Self {
        let retention = Retention::new(
            meta.clone(),
            blobs.clone(),
            Arc::new(Policy::default_policy()),
            Arc::new(SystemClock),
        );
        Self {
            meta,
            blobs,
            keys,
            segment_size,
            retention,
            archive: None,
        }
    }

    /// Writes archive-tier copies to the WORM archive (retain-until = their
    /// expiry) instead of the blob store, and keeps it in step when routing.
    pub fn with_archive(mut self, archive: Arc<dyn ArchiveStore>) -> Self {
        self.retention = self.retention.with_archive(archive.clone());
        self.archive = Some(archive);
        self
    }

    /// Decides copies and retention under `policy` and `clock` (default: the
    /// shipped policy and the system clock).
    pub fn with_policy(mut self, policy: Arc<Policy>, clock: Arc<dyn Clock>) -> Self {
        self.retention = Retention::new(self.meta.clone(), self.blobs.clone(), policy, clock);
        if let Some(a) = &self.archive {
            self.retention = self.retention.with_archive(a.clone());
        }
        self
    }

    /// The retention routing this compactor writes decisions with.
    pub fn retention(&self) -> &Retention {
        &self.retention
    }

    /// Compacts up to `limit` recordings finished at least `min_age` ago that
    /// are still only in the spool (left by a crash or another recorder);
    /// returns how many were compacted.
    pub async fn run_pending(&self, min_age: std::time::Duration, limit: u32) -> Result<usize, RecorderError> {
        let mut n = 0;
        let before = crate::now_us() - min_age.as_micros() as i64;
        for call_id in self.meta.to_compact(before, limit).await? {
            if self.compact(&call_id).await?.compacted {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Compacts one call's recording if it is finished and not compacted yet.
    pub async fn compact(&self, call_id: &CallId) -> Result<CompactOutcome, RecorderError> {
        let Some(rec) = self.meta.load_call(call_id).await? else {
            return Ok(CompactOutcome::default());
        };
        if !rec.complete || rec.object.is_some() || rec.key_destroyed_at_us.is_some() {
            return Ok(CompactOutcome::default());
        }
        // The whole recording, every spool segment verified.
        let wire =
            match reader::read_artifact_wire(&self.meta, &self.blobs, &self.keys, call_id, Which::Recording).await {
                Ok(w) => w.wire,
                // Shredded meanwhile: nothing to compact.
                Err(ReadError::KeyDestroyed { .. }) => return Ok(CompactOutcome::default()),
                Err(e) => return Err(RecorderError::Compaction(e.to_string())),
            };
        let at_us = self.retention.clock.now_us();
        let (_, facts) = self
            .retention
            .facts(call_id)
            .await
            .map_err(|e| RecorderError::Compaction(e.to_string()))?;
        let key = self.unwrap(
            call_id,
            &KeyRow {
                key: rec.key.clone(),
                destroyed_at_us: None,
            },
        )?;
        let rec_path = format!("{}/v2-{}.optk", rec.blob_prefix, short_id());
        let info = StreamInfo {
            kind: Which::Recording.artifact_kind(),
            key_id: rec.key.key_id.clone(),
            key_ref: ref_of(call_id, KeyClass::Audio24h),
            artifact_id: rec.recording_id.clone(),
        };
        let sealed = stream::seal(&key, &info, self.segment_size, &wire)?;
        let object = StoredObject {
            path: rec_path.clone(),
            bytes: sealed.len() as u64,
        };
        self.blobs.put(&rec_path, Bytes::from(sealed)).await?;
        let mut written = vec![rec_path];

        let mut copies = Vec::new();
        let mut arts = vec![artifact_row(
            &rec.recording_id,
            Which::Recording,
            rec.key.clone(),
            object.clone(),
        )];
        // The policy decides which copies exist: an archive copy for
        // investment advice, a KI copy for KI calls (none after an opt-out:
        // its retention would already have ended).
        let mut wanted = Vec::new();
        for (which, kind, prefix, dir) in [
            (Which::Archive, ArtifactKind::ArchiveCopy, "arc", "archive"),
            (Which::Ki, ArtifactKind::KiAudio, "kia", "ki"),
        ] {
            let d = self.retention.policy.decide(&facts, kind);
            if d.kept && !d.expired(at_us) {
                wanted.push((which, prefix, dir, d));
            }
        }
        for (which, prefix, dir, decision) in wanted {
            let class = which.class();
            let Some(key) = self.class_key(call_id, class, at_us).await? else {
                tracing::info!(call_id = %call_id, class = class.as_str(), "copy not written: its key was shredded");
                continue;
            };
            let artifact_id = format!("{prefix}-{}", uuid::Uuid::new_v4().simple());
            let info = StreamInfo {
                kind: which.artifact_kind(),
                key_id: key.id().to_owned(),
                key_ref: ref_of(call_id, class),
                artifact_id: artifact_id.clone(),
            };
            let sealed = stream::seal(&key, &info, self.segment_size, &wire)?;
            let path = format!("{dir}/{call_id}/{artifact_id}.optk");
            let bytes = sealed.len() as u64;
            match (&self.archive, decision.tier) {
                // WORM: kept at least until the decided expiry, held if the call is.
                (Some(archive), Tier::Archive) => {
                    archive
                        .put_retained(&path, Bytes::from(sealed), decision.expires_at_us)
                        .await?;
                    if decision.held {
                        archive.set_legal_hold(&path, true).await?;
                    }
                }
                _ => self.blobs.put(&path, Bytes::from(sealed)).await?,
            }
            written.push(path.clone());
            let object = StoredObject { path, bytes };
            arts.push(artifact_row(
                &artifact_id,
                which,
                StoredKey {
                    key_id: key.id().to_owned(),
                    class: class.as_str().to_owned(),
                    kek_id: String::new(),
                    sealed: Vec::new(),
                },
                object.clone(),
            ));
            copies.push(NewCopy {
                artifact_id,
                kind: which.store_kind().to_owned(),
                key_id: key.id().to_owned(),
                object,
            });
        }
        let retention = self.retention.rows(call_id, &facts, &arts);
        let done = Compacted {
            call_id: call_id.clone(),
            recording_id: rec.recording_id.clone(),
            object,
            copies,
            retention,
            at_us,
        };
        match self.meta.store_compacted(&done).await {
            Ok(()) => {
                let kinds: Vec<String> = done.copies.iter().map(|c| c.kind.clone()).collect();
                tracing::info!(call_id = %call_id, recording_id = %rec.recording_id, copies = ?kinds, "recording compacted");
                Ok(CompactOutcome {
                    compacted: true,
                    copies: kinds,
                })
            }
            Err(StoreError::Conflict(detail)) => {
                tracing::info!(call_id = %call_id, %detail, "compacted elsewhere; removing this attempt's objects");
                for p in written {
                    if let Err(e) = self.blobs.delete(&p).await {
                        tracing::warn!(path = %p, error = %e, "could not remove an unreferenced object");
                    }
                }
                Ok(CompactOutcome::default())
            }
            Err(e) => Err(e.into()),
        }
    }

    fn unwrap(&self, call_id: &CallId, row: &KeyRow) -> Result<DataKey, RecorderError> {
        let wrapped = WrappedKey {
            key_id: row.key.key_id.clone(),
            kek_id: row.key.kek_id.clone(),
            sealed: row.key.sealed.clone(),
        };
        Ok(self.keys.unwrap(&wrapped, &key_context(call_id, &row.key.class))?)
    }

    /// The call's key of `class`, created on first use; `None` once shredded.
    async fn class_key(&self, call_id: &CallId, class: KeyClass, at_us: i64) -> Result<Option<DataKey>, RecorderError> {
        let row = match self.meta.class_key(call_id, class.as_str()).await? {
            Some(row) => row,
            None => {
                let fresh = DataKey::generate();
                let w = self.keys.wrap(&fresh, &key_context(call_id, class.as_str()))?;
                let stored = StoredKey {
                    key_id: w.key_id,
                    class: class.as_str().to_owned(),
                    kek_id: w.kek_id,
                    sealed: w.sealed,
                };
                self.meta.create_key(call_id, &stored, at_us).await?
            }
        };
        if row.destroyed_at_us.is_some() {
            return Ok(None);
        }
        self.unwrap(call_id, &row).map(Some)
    }
}

/// An artifact as the retention routing sees it (only kind, key class and object matter).
fn artifact_row(id: &str, which: Which, key: StoredKey, object: StoredObject) -> ArtifactRow {
    ArtifactRow {
        artifact_id: id.to_owned(),
        call_id: String::new(),
        kind: which.store_kind().to_owned(),
        key: KeyRow {
            key,
            destroyed_at_us: None,
        },
        complete: true,
        object: Some(object),
    }
}

/// `<call id>/<class>`: the key reference a format-v2 header carries.
pub fn ref_of(call_id: &CallId, class: KeyClass) -> String {
    format!("{call_id}/{}", class.as_str())
}

fn short_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}
