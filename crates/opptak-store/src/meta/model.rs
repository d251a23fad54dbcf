//! The row and value types of the metadata store: what the
//! [`MetadataStore`](super::MetadataStore) methods take and return. Those
//! whose columns map one to one derive `sqlx::FromRow`; the others are put
//! together from private column structs in the module of their concern.

use super::{Bigint, Flag};
use opptak_domain::model::{CallFacts, CallId, KiNotice};
use opptak_domain::reassembly::Progress;

/// A data key as stored: sealed under a KEK.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredKey {
    pub key_id: String,
    pub class: String,
    pub kek_id: String,
    pub sealed: Vec<u8>,
}

/// A customer's objection to KI processing (`ki`) or to analysis
/// (`analysis`), per pseudonymous customer reference.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct Objection {
    pub customer_ref: String,
    pub kind: String,
    pub at_us: i64,
    pub recorded_by: String,
    pub reason: String,
}

/// A live data key with its owner (a call id, or `deadletters-<day>`) and
/// when it was made: what moving keys between KEKs needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyUnder {
    pub owner: String,
    pub key: StoredKey,
    pub created_at_us: i64,
}

#[derive(Clone, Debug)]
pub struct NewCall {
    pub facts: CallFacts,
    pub key: StoredKey,
    /// Further data keys of the call known at its start (the telephony
    /// system's chunk key, re-wrapped under opptak's KEK).
    pub extra_keys: Vec<StoredKey>,
    pub recording_id: String,
    pub blob_prefix: String,
    pub created_at_us: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallEnd {
    pub ended_at_us: i64,
    pub reason: String,
    pub last_sequence: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OptOut {
    /// Wall-clock time of the request.
    pub at_us: i64,
    pub requested_by: String,
    /// Position on the call's audio timeline from which no audio may reach KI.
    pub offset_us: u64,
}

/// The mutable state of a call after a flush.
#[derive(Clone, Debug)]
pub struct CallUpdate {
    pub call_id: CallId,
    pub recording_id: String,
    pub next_sequence: u64,
    pub frames: u64,
    pub last_chunk_frames: u64,
    pub duplicate_chunks: u64,
    pub segments: u64,
    /// The segment count this writer last saw stored: the write applies only
    /// if the store still says so (fences a recorder whose calls moved away).
    pub prev_segments: u64,
    pub complete: bool,
    pub end: Option<CallEnd>,
    pub opt_out: Option<OptOut>,
    /// The call's `KiNotice` evidence (issue 16, section 6).
    pub ki_notice: Option<KiNotice>,
    pub updated_at_us: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct SegmentRow {
    pub recording_id: String,
    #[sqlx(try_from = "Bigint")]
    pub idx: u64,
    /// The spool object holding the sealed segment, and where in it.
    pub blob_path: String,
    #[sqlx(try_from = "Bigint")]
    pub blob_offset: u64,
    #[sqlx(try_from = "Bigint")]
    pub first_frame: u64,
    #[sqlx(try_from = "Bigint")]
    pub frames: u64,
    #[sqlx(try_from = "Bigint")]
    pub sealed_bytes: u64,
    #[sqlx(try_from = "Flag")]
    pub final_segment: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct GapRow {
    pub recording_id: String,
    #[sqlx(try_from = "Bigint")]
    pub first_missing: u64,
    #[sqlx(try_from = "Bigint")]
    pub missing: u64,
    #[sqlx(try_from = "Bigint")]
    pub at_frame: u64,
    #[sqlx(try_from = "Bigint")]
    pub frames: u64,
}

/// Everything one recorder flush makes durable, applied atomically.
#[derive(Clone, Debug, Default)]
pub struct Flush {
    pub new_calls: Vec<NewCall>,
    pub segments: Vec<SegmentRow>,
    pub gaps: Vec<GapRow>,
    pub updates: Vec<CallUpdate>,
}

impl Flush {
    pub fn is_empty(&self) -> bool {
        self.new_calls.is_empty() && self.segments.is_empty() && self.gaps.is_empty() && self.updates.is_empty()
    }
}

/// A call as stored, with its recording.
#[derive(Clone, Debug)]
pub struct CallRecord {
    pub facts: CallFacts,
    pub key: StoredKey,
    pub recording_id: String,
    pub blob_prefix: String,
    pub segments: u64,
    pub complete: bool,
    pub progress: Progress,
    pub duplicate_chunks: u64,
    pub end: Option<CallEnd>,
    pub opt_out: Option<OptOut>,
    pub created_at_us: i64,
    pub updated_at_us: i64,
    /// Set when the recording's data key was crypto-shredded.
    pub key_destroyed_at_us: Option<i64>,
    /// The format-v2 object once the finished recording was compacted.
    pub object: Option<StoredObject>,
}

/// A data key row: live, or destroyed (then `sealed` is empty).
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct KeyRow {
    #[sqlx(flatten)]
    pub key: StoredKey,
    pub destroyed_at_us: Option<i64>,
}

/// A stored artifact of a call: the recording itself (kind `recording`) or a
/// copy under another retention class (`archive-copy`, `ki-audio`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArtifactRow {
    pub artifact_id: String,
    pub call_id: String,
    pub kind: String,
    pub key: KeyRow,
    pub complete: bool,
    /// The format-v2 object, once written (`None`: only spool segments yet).
    pub object: Option<StoredObject>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredObject {
    pub path: String,
    pub bytes: u64,
}

/// A copy of a recording under another retention class, written with the compaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewCopy {
    pub artifact_id: String,
    pub kind: String,
    pub key_id: String,
    pub object: StoredObject,
}

/// A finished recording compacted into one format-v2 object, with its copies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compacted {
    pub call_id: CallId,
    pub recording_id: String,
    pub object: StoredObject,
    pub copies: Vec<NewCopy>,
    /// Retention of the recording and each copy, decided at the call's end.
    pub retention: Vec<RetentionRow>,
    pub at_us: i64,
}

/// The retention decided for one stored artifact.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct RetentionRow {
    pub artifact_id: String,
    pub call_id: String,
    /// The policy's artifact kind (`recording`, `archive-copy`, `ki-audio`, ...).
    pub kind: String,
    pub class: String,
    /// `hot` (blob store) or `archive` (WORM archive store).
    pub tier: String,
    /// The object in its tier's store; empty when there is none.
    pub location: String,
    pub expires_at_us: i64,
    #[sqlx(try_from = "Flag")]
    pub held: bool,
    /// The rule chain that decided, one per line.
    pub rules: String,
    pub decided_at_us: i64,
    pub deleted_at_us: Option<i64>,
}

/// A legal hold on a call.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct HoldRow {
    pub hold_id: String,
    pub call_id: String,
    pub case_ref: String,
    pub reason: String,
    pub placed_by: String,
    pub placed_at_us: i64,
    pub release_requested_by: Option<String>,
    pub release_requested_at_us: Option<i64>,
    pub released_by: Option<String>,
    pub released_at_us: Option<i64>,
}

/// An authority's extension of a call's retention.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct ExtensionRow {
    pub call_id: String,
    #[sqlx(try_from = "Bigint")]
    pub years: u32,
    pub authority: String,
    pub case_ref: String,
    pub requested_by: String,
    pub at_us: i64,
}

/// A `CallContext` event applied to a call (migration 0023): its digest
/// makes a redelivery a no-op.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct ContextRow {
    pub call_id: String,
    /// SHA-256 (hex) of the event's encoding.
    pub digest: String,
    pub by_actor: String,
    pub at_us: i64,
    pub received_at_us: i64,
}

/// A compliance officer's reclassification of a call.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct ReclassRow {
    pub call_id: String,
    pub service_category: String,
    pub by_officer: String,
    pub reason: String,
    pub at_us: i64,
}

/// The evidence one deletion by the sweeper leaves (no personal data).
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct DeletionRow {
    pub artifact_id: String,
    pub call_id: String,
    pub kind: String,
    pub class: String,
    pub tier: String,
    pub rule: String,
    pub expired_at_us: i64,
    pub deleted_at_us: i64,
    pub key_shredded: Option<String>,
}

/// The record a crypto-shredding leaves (never the key).
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct ShredEvidence {
    pub key_id: String,
    pub call_id: String,
    pub class: String,
    pub kek_id: String,
    pub shredded_at_us: i64,
    pub reason: String,
    pub requested_by: String,
}
