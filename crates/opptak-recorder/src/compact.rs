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

use crate::RecorderError;
use bytes::Bytes;
use opptak_crypto::stream;
use opptak_domain::model::{CallFacts, CallId, ContextChange, KeyClass};
use opptak_domain::retention::{ArtifactKind, Policy, Tier};
use opptak_retention::Retention;
use opptak_store::archive::ArchiveStore;
use opptak_store::meta::{ArtifactRow, Compacted, ContextRow, KeyRow, NewCopy, StoredKey, StoredObject};
use opptak_store::{BlobStore, MetadataStore, StoreError};
use opptak_vault::{artifact_info, Vault, VaultError, Which};
use std::sync::Arc;

/// Rewrites finished recordings into format v2 and writes their copies.
#[derive(Clone)]
pub struct Compactor {
    vault: Vault,
    meta: Arc<dyn MetadataStore>,
    blobs: Arc<dyn BlobStore>,
    segment_size: u32,
    retention: Retention,
    archive: Option<Arc<dyn ArchiveStore>>,
    /// Where reclassifications are journaled (the audit log).
    journal: Option<Arc<dyn opptak_retention::Journal>>,
}

/// How long after a call's end a `CallContext` is accepted: the recording's
/// 24 hours, as a `Reclassification` (an archive copy the new context needs
/// can only be made from the recording while it is kept).
pub const CONTEXT_WINDOW_US: i64 = 24 * 3_600_000_000;

/// What a `CallContext` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContextOutcome {
    /// Applied: the call's facts now, what changed, whether an archive copy was written.
    Applied {
        facts: Box<CallFacts>,
        changes: Vec<String>,
        archived: bool,
    },
    /// The call's context already was this one.
    Unchanged,
    /// The same event was applied before (a redelivery or a resend).
    Duplicate,
}

/// What one compaction did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactOutcome {
    pub compacted: bool,
    pub copies: Vec<String>,
}

impl Compactor {
    /// Compacts through `vault` into format-v2 objects of `segment_size`
    /// plaintext bytes a segment, deciding copies and expiries under the
    /// shipped policy on the vault's clock.
    pub fn new(vault: Vault, segment_size: u32) -> Self {
        let (meta, blobs) = (vault.meta().clone(), vault.blobs().clone());
        let retention = Retention::new(
            meta.clone(),
            blobs.clone(),
            Arc::new(Policy::default_policy()),
            vault.clock().clone(),
        );
        Self {
            vault,
            meta,
            blobs,
            segment_size,
            retention,
            archive: None,
            journal: None,
        }
    }

    /// Journals reclassifications (and every other retention change this
    /// compactor's routing makes) in `journal`, before making them.
    pub fn with_journal(mut self, journal: Option<Arc<dyn opptak_retention::Journal>>) -> Self {
        if let Some(j) = &journal {
            self.retention = self.retention.with_journal(j.clone());
        }
        self.journal = journal;
        self
    }

    /// Writes archive-tier copies to the WORM archive (retain-until = their
    /// expiry) instead of the blob store, and keeps it in step when routing.
    pub fn with_archive(mut self, archive: Arc<dyn ArchiveStore>) -> Self {
        self.retention = self.retention.with_archive(archive.clone());
        self.archive = Some(archive);
        self
    }

    /// Decides copies and retention under `policy` (default: the shipped policy).
    pub fn with_policy(mut self, policy: Arc<Policy>) -> Self {
        self.retention = Retention::new(
            self.meta.clone(),
            self.blobs.clone(),
            policy,
            self.vault.clock().clone(),
        );
        if let Some(a) = &self.archive {
            self.retention = self.retention.with_archive(a.clone());
        }
        if let Some(j) = &self.journal {
            self.retention = self.retention.with_journal(j.clone());
        }
        self
    }

    /// Reclassifies a call to `category` (by the telephony system, the CLI or
    /// a compliance officer in the review service), journaled first. When the
    /// policy then wants an archive copy the call does not have, the copy is
    /// written from the recording; the reclassification is refused, with
    /// why and nothing changed, when the recording can no longer be read
    /// (past its 24 hours, or shredded), so the policy never claims an
    /// archive copy that does not exist. A call not compacted yet gets the
    /// copy at its compaction. Returns the re-routed rows and whether an
    /// archive copy was written.
    pub async fn reclassify(
        &self,
        call_id: &CallId,
        category: opptak_domain::ServiceCategory,
        reason: &str,
        by: &str,
    ) -> Result<(Vec<opptak_store::meta::RetentionRow>, bool), RecorderError> {
        let err = |e: opptak_retention::RetentionError| RecorderError::Compaction(e.to_string());
        if reason.trim().is_empty() {
            return Err(RecorderError::Refused(format!(
                "reclassifying call {call_id} needs a reason"
            )));
        }
        let (rec, mut facts) = self.retention.facts(call_id).await.map_err(err)?;
        facts.reclassified = Some((category, by.to_owned()));
        let wants = self.retention.policy.decide(&facts, ArtifactKind::ArchiveCopy);
        let archive_kind = Which::Archive.store_kind();
        let has = self
            .meta
            .artifacts(call_id)
            .await?
            .iter()
            .any(|a| a.kind == archive_kind);
        if wants.kept && !has && rec.complete {
            if let Some(at) = rec.key_destroyed_at_us {
                return Err(RecorderError::Refused(format!(
                    "reclassifying call {call_id} as {category} requires an archive copy ({}), but its \
                     recording was deleted at {} — an archive copy can only be made while the recording is kept \
                     (24 hours after the call). Nothing was changed.",
                    wants.chain.last().cloned().unwrap_or_default(),
                    opptak_domain::time::utc_time(at)
                )));
            }
        }
        let rows = self
            .retention
            .reclassify(call_id, category, reason, by)
            .await
            .map_err(err)?;
        let archived = self.add_missing_archive_copy(call_id).await?;
        Ok((rows, archived))
    }

    /// Applies a CTI system's `CallContext` to a call (`digest`: the event's
    /// SHA-256, which makes a redelivery a no-op): journaled first as
    /// `call.context` (before -> after, by, reason), then the call's desk,
    /// advisor and customer set, the call routed again (the desk decides the
    /// archive copy of advisory desks) and an archive copy written from the
    /// recording if the new facts need one; a new service category is a
    /// [`Self::reclassify`], with its rules. Refused, with why and nothing
    /// changed: an unknown call, one that ended more than
    /// [`CONTEXT_WINDOW_US`] ago or whose recording was shredded, a change
    /// the policy cannot honour.
    pub async fn apply_context(
        &self,
        call_id: &CallId,
        change: &ContextChange,
        digest: &str,
    ) -> Result<ContextOutcome, RecorderError> {
        let refused = |why: String| Err(RecorderError::Refused(why));
        let Some(rec) = self.meta.load_call(call_id).await? else {
            return refused(format!("CallContext for call {call_id}, which never started"));
        };
        if self
            .meta
            .call_contexts(call_id)
            .await?
            .iter()
            .any(|r| r.digest == digest)
        {
            // Applied before; the routing after it may not have been (a crash).
            if rec.key_destroyed_at_us.is_none() {
                if let Err(e) = self.reroute_with_context(call_id).await {
                    tracing::warn!(call_id = %call_id, error = %e, "routing after a redelivered call context failed");
                }
            }
            return Ok(ContextOutcome::Duplicate);
        }
        let now_us = self.vault.clock().now_us();
        if let Some(end) = &rec.end {
            if now_us - end.ended_at_us > CONTEXT_WINDOW_US {
                return refused(format!(
                    "CallContext for call {call_id}, which ended at {}: a context is accepted up to 24 hours \
                     after the end (while the recording is kept); nothing was changed",
                    opptak_domain::time::utc_time(end.ended_at_us)
                ));
            }
        }
        if let Some(at) = rec.key_destroyed_at_us {
            return refused(format!(
                "CallContext for call {call_id}, whose recording was deleted at {}; nothing was changed",
                opptak_domain::time::utc_time(at)
            ));
        }
        let (after, mut changes) = change.apply(&rec.facts);
        let current = self
            .meta
            .reclassification_of(call_id)
            .await?
            .and_then(|r| opptak_domain::ServiceCategory::parse(&r.service_category))
            .unwrap_or(rec.facts.service_category);
        let category = change.service_category.filter(|c| *c != current);
        if let Some(c) = category {
            changes.push(format!("service_category {current} -> {c}"));
        }
        if changes.is_empty() {
            return Ok(ContextOutcome::Unchanged);
        }
        let reason = if change.reason.trim().is_empty() {
            changes.join("; ")
        } else {
            format!("{}: {}", changes.join("; "), change.reason)
        };
        let journal = self
            .journal
            .as_ref()
            .ok_or_else(|| RecorderError::Refused("call.context is refused: no audit log to record it in".into()))?;
        journal
            .record(&change.by, "call.context", &format!("call:{call_id}"), &reason)
            .await
            .map_err(|e| RecorderError::Compaction(format!("call.context: the audit log failed: {e}")))?;
        // Every step is idempotent and the digest is stored last but one: a
        // crash in between replays the event (journaled twice at worst).
        let mut archived = match category {
            Some(c) => self.reclassify(call_id, c, &change.reason, &change.by).await?.1,
            None => false,
        };
        let row = ContextRow {
            call_id: call_id.to_string(),
            digest: digest.to_owned(),
            by_actor: change.by.clone(),
            at_us: change.at_us,
            received_at_us: now_us,
        };
        if !self.meta.apply_call_context(&row, &after).await? {
            return Ok(ContextOutcome::Duplicate);
        }
        archived |= self.reroute_with_context(call_id).await?;
        Ok(ContextOutcome::Applied {
            facts: Box::new(after),
            changes,
            archived,
        })
    }

    /// Routes a call again after its desk changed, and writes the archive
    /// copy the new desk needs (advisory desks keep one): whether it did.
    async fn reroute_with_context(&self, call_id: &CallId) -> Result<bool, RecorderError> {
        self.retention
            .route(call_id)
            .await
            .map_err(|e| RecorderError::Compaction(e.to_string()))?;
        self.add_missing_archive_copy(call_id).await
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
        let before = self.vault.clock().now_us() - min_age.as_micros() as i64;
        for call_id in self.meta.to_compact(before, limit).await? {
            if self.compact(&call_id).await?.compacted {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Seals `wire` as a copy of the call under its class key and writes it
    /// (archive-tier copies to the WORM archive, retained until the decided
    /// expiry and held if the call is). `None` when the class key was shredded.
    async fn write_copy(
        &self,
        call_id: &CallId,
        which: Which,
        prefix: &str,
        dir: &str,
        decision: &opptak_domain::retention::Decision,
        wire: &[u8],
    ) -> Result<Option<(String, String, StoredObject)>, RecorderError> {
        let class = which.class();
        let Some(key) = self.vault.key_or_create(call_id, class).await? else {
            tracing::info!(call_id = %call_id, class = class.as_str(), "copy not written: its key was shredded");
            return Ok(None);
        };
        let artifact_id = format!("{prefix}-{}", uuid::Uuid::new_v4().simple());
        let info = artifact_info(call_id, class.as_str(), key.id(), which.artifact_kind(), &artifact_id);
        let sealed = stream::seal(&key, &info, self.segment_size, wire)?;
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
        Ok(Some((artifact_id, key.id().to_owned(), StoredObject { path, bytes })))
    }

    /// After a fact change (a reclassification to investment advice) that
    /// makes the policy keep an archive copy of a compacted call that has
    /// none: writes it from the recording and routes the call again. `false`
    /// when nothing is missing (or the call is not compacted yet: compaction
    /// decides with the new facts). An error says why it cannot be made: the
    /// recording is no longer readable (past its 24 hours, or shredded).
    pub async fn add_missing_archive_copy(&self, call_id: &CallId) -> Result<bool, RecorderError> {
        let Some(rec) = self.meta.load_call(call_id).await? else {
            return Err(RecorderError::Compaction(format!("no call {call_id}")));
        };
        if !rec.complete || rec.object.is_none() {
            return Ok(false);
        }
        let at_us = self.retention.clock.now_us();
        let (_, facts) = self
            .retention
            .facts(call_id)
            .await
            .map_err(|e| RecorderError::Compaction(e.to_string()))?;
        let decision = self.retention.policy.decide(&facts, ArtifactKind::ArchiveCopy);
        if !decision.kept || decision.expired(at_us) {
            return Ok(false);
        }
        let archive_kind = Which::Archive.store_kind();
        if self
            .meta
            .artifacts(call_id)
            .await?
            .iter()
            .any(|a| a.kind == archive_kind)
        {
            return Ok(false);
        }
        let wire = self
            .vault
            .read_artifact_wire(call_id, Which::Recording)
            .await
            .map_err(|e| {
                RecorderError::Compaction(format!(
                    "call {call_id} cannot be archived: its recording can no longer be read ({e}); \
                     an archive copy is made from the recording while it is kept (24 hours after the call)"
                ))
            })?
            .wire;
        let Some((artifact_id, key_id, object)) = self
            .write_copy(call_id, Which::Archive, "arc", "archive", &decision, &wire)
            .await?
        else {
            return Err(RecorderError::Compaction(format!(
                "call {call_id} cannot be archived: its archive-5y key was shredded"
            )));
        };
        self.meta
            .add_artifact(call_id, &artifact_id, archive_kind, &key_id, &object, at_us)
            .await?;
        self.retention
            .route(call_id)
            .await
            .map_err(|e| RecorderError::Compaction(e.to_string()))?;
        tracing::info!(call_id = %call_id, artifact = %artifact_id, "archive copy written after a reclassification");
        Ok(true)
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
        let wire = match self.vault.read_artifact_wire(call_id, Which::Recording).await {
            Ok(w) => w.wire,
            // Shredded meanwhile: nothing to compact.
            Err(VaultError::KeyDestroyed { .. }) => return Ok(CompactOutcome::default()),
            Err(e) => return Err(RecorderError::Compaction(e.to_string())),
        };
        let at_us = self.retention.clock.now_us();
        let (_, facts) = self
            .retention
            .facts(call_id)
            .await
            .map_err(|e| RecorderError::Compaction(e.to_string()))?;
        let key = self.vault.open_key(call_id.as_str(), &rec.key)?;
        let rec_path = format!("{}/v2-{}.optk", rec.blob_prefix, short_id());
        let info = artifact_info(
            call_id,
            KeyClass::Audio24h.as_str(),
            &rec.key.key_id,
            Which::Recording.artifact_kind(),
            &rec.recording_id,
        );
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
            // The KI copy holds nothing from before the customer was told KI
            // is used (issue 16, section 6): silence there, times stay true.
            let ki_wire;
            let src: &[u8] = if which == Which::Ki {
                let mut w = wire.clone();
                let from = rec.facts.ki_from_frame().unwrap_or(u64::MAX);
                rec.facts.format.silence_head(&mut w, from);
                ki_wire = w;
                &ki_wire
            } else {
                &wire
            };
            let Some((artifact_id, key_id, object)) =
                self.write_copy(call_id, which, prefix, dir, &decision, src).await?
            else {
                continue;
            };
            written.push(object.path.clone());
            arts.push(artifact_row(
                &artifact_id,
                which,
                StoredKey {
                    key_id: key_id.clone(),
                    class: which.class().as_str().to_owned(),
                    kek_id: String::new(),
                    sealed: Vec::new(),
                },
                object.clone(),
            ));
            copies.push(NewCopy {
                artifact_id,
                kind: which.store_kind().to_owned(),
                key_id,
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

fn short_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}
