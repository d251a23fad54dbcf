//! The tamper-evident audit log (R3, R9): every read of
//! personal data, every decision and every admin action is appended to a
//! hash chain (`opptak_store::audit`), and every `checkpoint_every` entries
//! the tail's hash is signed with an Ed25519 key whose seed is wrapped under
//! the KEK (`opptak_crypto::signing`). [`Audit::verify`] walks the chain and
//! the checkpoints and names every entry edited, deleted or reordered, and a
//! chain rewritten after the last good checkpoint. Entries hold no audio or
//! transcript content.
//!
//! What it cannot see: entries appended after the newest checkpoint and then
//! removed from the end leave a shorter but consistent chain. Checkpoints
//! every few entries (and `opptak audit checkpoint` before an export of the
//! log) keep that window small; `opptak audit verify` prints the newest
//! checkpoint so it can be compared with a copy kept elsewhere.

use opptak_crypto::{signing, CryptoError, DataKey, KeyProvider};
use opptak_domain::time::Clock;
use opptak_store::audit::{
    checkpoint_message, entry_hash, AuditEvent, SigningKeyRow, SqlAudit, StoredCheckpoint, GENESIS,
};
use opptak_store::StoreError;
use std::collections::BTreeMap;
use std::sync::Arc;

pub use opptak_store::audit::AuditEvent as Event;

/// Why the audit log could not record, sign or read.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The database refused, or the event itself is invalid (`SqlAudit::check`).
    #[error("audit log: {0}")]
    Store(#[from] StoreError),
    /// The signing key could not be wrapped or opened under the KEK.
    #[error("audit signing key: {0}")]
    Key(#[from] CryptoError),
    /// The group-commit task is gone (the process is shutting down).
    #[error("the audit appender stopped")]
    Stopped,
    /// The batch this event was appended in failed.
    #[error("audit append failed: {0}")]
    Append(String),
    /// A signing key was stored but none could be read back.
    #[error("no audit signing key after storing one")]
    NoSigningKey,
}

type Result<T, E = AuditError> = std::result::Result<T, E>;

/// How often a checkpoint is signed, by default (entries).
pub const CHECKPOINT_EVERY: u64 = 100;

pub struct Audit {
    store: Arc<SqlAudit>,
    keys: Arc<dyn KeyProvider>,
    clock: Arc<dyn Clock>,
    pub checkpoint_every: u64,
    /// The process's appender for this log ([`group_commit`]).
    appender: tokio::sync::mpsc::Sender<Pending>,
    /// The signing key, once loaded or made (one at a time: checkpoints of
    /// one group commit run at once and must not each make a key).
    signer: tokio::sync::Mutex<Option<(SigningKeyRow, DataKey)>>,
}

/// An event waiting for the appender, and who waits for its entry.
type Pending = (
    AuditEvent,
    i64,
    tokio::sync::oneshot::Sender<Result<opptak_store::audit::AuditEntry, String>>,
);

/// Events one transaction appends at most.
const MAX_GROUP: usize = 256;

/// Group commit: one task per open log appends every event queued meanwhile
/// in one transaction (one turn of the cross-process lock, one commit)
/// instead of one transaction per event. Under 200 concurrent audited reads
/// the per-event appends queued on the lock one by one (p99 ~0.5 s in the
/// wrk benchmark). Each waiter gets its own entry, or the batch's error. The
/// task ends when the log is dropped, after what was queued.
async fn group_commit(store: Arc<SqlAudit>, mut queue: tokio::sync::mpsc::Receiver<Pending>) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while queue.recv_many(&mut group, MAX_GROUP).await > 0 {
        let events: Vec<(AuditEvent, i64)> = group.iter().map(|(e, at, _)| (e.clone(), *at)).collect();
        match store.append_batch(&events).await {
            Ok(entries) => {
                for ((_, _, reply), entry) in group.drain(..).zip(entries) {
                    let _ = reply.send(Ok(entry));
                }
            }
            Err(e) => {
                let why = e.to_string();
                for (_, _, reply) in group.drain(..) {
                    let _ = reply.send(Err(why.clone()));
                }
            }
        }
    }
}

/// What [`Audit::verify`] found.
#[derive(Debug, Default)]
pub struct VerifyReport {
    pub entries: u64,
    pub checkpoints: usize,
    /// The newest valid checkpoint: `(seq, hash hex)`.
    pub newest_checkpoint: Option<(u64, String)>,
    /// Every problem, with the entry it concerns.
    pub problems: Vec<String>,
    /// The same problems as data, in the same order (for a page that names
    /// them in its own language).
    pub findings: Vec<Finding>,
    /// Public keys that signed checkpoints (hex).
    pub signers: Vec<String>,
}

/// One problem [`Audit::verify`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finding {
    /// A signing key that is not the pinned one.
    KeyNotPinned { key_id: String },
    /// A signing key whose stored public key is not its wrapped key's.
    KeyReplaced { key_id: String },
    /// A signing key whose wrapped seed does not open under the KEK.
    KeyUnopenable { key_id: String },
    /// A checkpoint whose signature does not verify.
    CheckpointForged { seq: u64 },
    /// Entries `from..=to` are missing.
    Deleted { from: u64, to: u64 },
    /// An entry that does not follow the one before.
    Reordered { seq: u64 },
    /// An entry whose contents do not match its hash.
    Altered { seq: u64 },
    /// An entry that differs from its signed checkpoint.
    Rewritten { seq: u64 },
    /// An entry a signed checkpoint covers is missing (deleted from the end).
    DeletedFromEnd { seq: u64 },
}

impl VerifyReport {
    fn found(&mut self, text: String, finding: Finding) {
        self.problems.push(text);
        self.findings.push(finding);
    }

    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// The class the audit signing key is stored under (it is no call's key).
const SIGNING_KEY_CLASS: &str = "audit-signing";

fn context(key_id: &str) -> Vec<u8> {
    format!("audit-signing/{key_id}").into_bytes()
}

impl Audit {
    pub async fn open(metadata_url: &str, keys: Arc<dyn KeyProvider>, clock: Arc<dyn Clock>) -> Result<Self> {
        let store = Arc::new(SqlAudit::open(metadata_url).await?);
        let (appender, queue) = tokio::sync::mpsc::channel(4 * MAX_GROUP);
        tokio::spawn(group_commit(store.clone(), queue));
        Ok(Self {
            store,
            keys,
            clock,
            checkpoint_every: CHECKPOINT_EVERY,
            appender,
            signer: tokio::sync::Mutex::new(None),
        })
    }

    /// Appends one allowed read or decision by `actor` (a shortcut for the
    /// library's own operations: disclosures, data-subject requests).
    pub async fn record_allowed(
        &self,
        actor: &str,
        role: &str,
        action: &str,
        subject: &str,
        reason: &str,
    ) -> Result<u64> {
        self.record(&AuditEvent {
            actor: actor.to_owned(),
            role: role.to_owned(),
            action: action.to_owned(),
            subject: subject.to_owned(),
            reason: reason.to_owned(),
            outcome: "allowed".into(),
        })
        .await
    }

    /// Appends `e`; signs a checkpoint every `checkpoint_every` entries.
    pub async fn record(&self, e: &AuditEvent) -> Result<u64> {
        // A bad event is refused alone, never inside someone else's group.
        SqlAudit::check(e)?;
        let (reply, entry) = tokio::sync::oneshot::channel();
        self.appender
            .send((e.clone(), self.clock.now_us(), reply))
            .await
            .map_err(|_| AuditError::Stopped)?;
        let entry = entry
            .await
            .map_err(|_| AuditError::Stopped)?
            .map_err(AuditError::Append)?;
        opptak_telemetry::metrics().audit_appends.inc();
        if self.checkpoint_every > 0 && entry.seq % self.checkpoint_every == 0 {
            self.checkpoint().await?;
        }
        Ok(entry.seq)
    }

    /// Signs the current tail (nothing when the log is empty).
    pub async fn checkpoint(&self) -> Result<Option<StoredCheckpoint>> {
        let Some(tail) = self.store.tail().await? else {
            return Ok(None);
        };
        let (row, key) = self.signing_key().await?;
        let at_us = self.clock.now_us();
        let signature = signing::sign(&key, &checkpoint_message(tail.seq, &tail.hash, at_us)).to_vec();
        let c = StoredCheckpoint {
            seq: tail.seq,
            hash: tail.hash,
            at_us,
            key_id: row.key_id,
            signature,
        };
        self.store.add_checkpoint(&c).await?;
        Ok(Some(c))
    }

    /// The log's signing key: the first one stored, made on first use (seed
    /// wrapped under the KEK). Processes racing to make it each store one,
    /// then all sign with the first stored.
    async fn signing_key(&self) -> Result<(SigningKeyRow, DataKey)> {
        let mut cached = self.signer.lock().await;
        if let Some((row, key)) = cached.as_ref() {
            return Ok((row.clone(), key.clone()));
        }
        if self.store.signing_keys().await?.is_empty() {
            let key = DataKey::generate();
            let w = opptak_vault::wrap_key(
                self.keys.as_ref(),
                &key,
                SIGNING_KEY_CLASS,
                &context(key.id()),
                self.clock.now_us(),
            )?;
            self.store
                .add_signing_key(&SigningKeyRow {
                    key_id: w.key_id,
                    kek_id: w.kek_id,
                    sealed: w.sealed,
                    public_key: signing::public_key(&key).to_vec(),
                    created_at_us: self.clock.now_us(),
                })
                .await?;
        }
        let row = self
            .store
            .signing_keys()
            .await?
            .into_iter()
            .next()
            .ok_or(AuditError::NoSigningKey)?;
        let key = self.open_key(&row)?;
        *cached = Some((row.clone(), key.clone()));
        Ok((row, key))
    }

    fn open_key(&self, row: &SigningKeyRow) -> Result<DataKey> {
        // Bound to its own context (`context`), not to a call's.
        let stored = opptak_store::meta::StoredKey {
            key_id: row.key_id.clone(),
            class: SIGNING_KEY_CLASS.into(),
            kek_id: row.kek_id.clone(),
            sealed: row.sealed.clone(),
        };
        Ok(opptak_vault::unwrap_key(
            self.keys.as_ref(),
            &stored,
            &context(&row.key_id),
        )?)
    }

    /// Entries in order, from `from`, at most `limit` (for auditors).
    pub async fn entries(&self, from: u64, limit: u32) -> Result<Vec<opptak_store::audit::AuditEntry>> {
        Ok(self.store.entries(from, limit).await?)
    }

    /// The entries `filter` selects, newest first: a page of the auditor's view.
    pub async fn search(
        &self,
        filter: &opptak_store::audit::AuditFilter,
        offset: u64,
        limit: u32,
    ) -> Result<Vec<opptak_store::audit::AuditEntry>> {
        Ok(self.store.search(filter, offset, limit).await?)
    }

    /// How many entries `filter` selects.
    pub async fn count(&self, filter: &opptak_store::audit::AuditFilter) -> Result<u64> {
        Ok(self.store.count(filter).await?)
    }

    /// Walks the whole chain and every checkpoint. `pinned`: a public key
    /// (hex) kept outside the database that every checkpoint must be signed with.
    pub async fn verify(&self, pinned: Option<&str>) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        // Signing keys: each must open under the KEK and match its public key,
        // so a key swapped in by someone with only database access is caught.
        let mut publics: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        for row in self.store.signing_keys().await? {
            match self.open_key(&row) {
                Ok(k) if signing::public_key(&k).as_slice() == row.public_key.as_slice() => {
                    if let Some(p) = pinned {
                        if !p.eq_ignore_ascii_case(&hex::encode(&row.public_key)) {
                            report.found(
                                format!(
                                    "signing key {}: public key {} is not the pinned one",
                                    row.key_id,
                                    hex::encode(&row.public_key)
                                ),
                                Finding::KeyNotPinned {
                                    key_id: row.key_id.clone(),
                                },
                            );
                            continue;
                        }
                    }
                    report.signers.push(hex::encode(&row.public_key));
                    publics.insert(row.key_id.clone(), row.public_key.clone());
                }
                Ok(_) => report.found(
                    format!(
                        "signing key {}: the stored public key is not the wrapped key's (replaced)",
                        row.key_id
                    ),
                    Finding::KeyReplaced {
                        key_id: row.key_id.clone(),
                    },
                ),
                Err(e) => report.found(
                    format!(
                        "signing key {}: its wrapped seed does not open under the KEK ({e})",
                        row.key_id
                    ),
                    Finding::KeyUnopenable {
                        key_id: row.key_id.clone(),
                    },
                ),
            }
        }
        let checkpoints = self.store.checkpoints().await?;
        report.checkpoints = checkpoints.len();
        let mut pinned_hashes: BTreeMap<u64, &StoredCheckpoint> = BTreeMap::new();
        for c in &checkpoints {
            let signed = publics
                .get(&c.key_id)
                .is_some_and(|pk| signing::verify(pk, &checkpoint_message(c.seq, &c.hash, c.at_us), &c.signature));
            if signed {
                pinned_hashes.insert(c.seq, c);
            } else {
                report.found(
                    format!(
                        "checkpoint at entry {}: signature invalid (forged or altered checkpoint)",
                        c.seq
                    ),
                    Finding::CheckpointForged { seq: c.seq },
                );
            }
        }
        // The chain.
        let (mut expected, mut prev) = (1u64, GENESIS.to_vec());
        let mut seen: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
        loop {
            let page = self.store.entries(expected.max(1), 10_000).await?;
            if page.is_empty() {
                break;
            }
            let last = page.last().map(|e| e.seq).unwrap_or(expected);
            for e in page {
                report.entries += 1;
                if e.seq != expected {
                    let text = if e.seq == expected + 1 {
                        format!("entry {expected}: missing (deleted)")
                    } else {
                        format!("entries {expected} to {}: missing (deleted)", e.seq - 1)
                    };
                    report.found(
                        text,
                        Finding::Deleted {
                            from: expected,
                            to: e.seq.saturating_sub(1),
                        },
                    );
                } else if e.prev_hash != prev {
                    report.found(
                        format!(
                            "entry {}: does not follow entry {} (reordered, or an entry before it was replaced)",
                            e.seq,
                            e.seq.saturating_sub(1)
                        ),
                        Finding::Reordered { seq: e.seq },
                    );
                }
                if entry_hash(e.seq, e.at_us, &e.event, &e.prev_hash) != e.hash {
                    report.found(
                        format!("entry {}: altered (its contents do not match its hash)", e.seq),
                        Finding::Altered { seq: e.seq },
                    );
                }
                if pinned_hashes.contains_key(&e.seq) {
                    seen.insert(e.seq, e.hash.clone());
                }
                prev = e.hash;
                expected = e.seq + 1;
            }
            expected = last + 1;
        }
        for (seq, c) in &pinned_hashes {
            match seen.get(seq) {
                Some(h) if *h == c.hash => {
                    report.newest_checkpoint = Some((*seq, hex::encode(h)));
                }
                Some(_) => report.found(
                    format!("entry {seq}: differs from its signed checkpoint (the chain was rewritten)"),
                    Finding::Rewritten { seq: *seq },
                ),
                None => report.found(
                    format!("entry {seq}: missing, but a signed checkpoint covers it (entries deleted from the end)"),
                    Finding::DeletedFromEnd { seq: *seq },
                ),
            }
        }
        Ok(report)
    }
}

/// The OS user running a CLI command (the actor of its audit entries).
pub fn os_user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown-os-user".into())
}
