//! The metadata store: calls, wrapped data keys, recordings, segments, gaps.
//!
//! One SQL implementation over sqlx's `Any` driver serves PostgreSQL and
//! SQLite: the DML is portable (`$n` placeholders, `ON CONFLICT`), only the
//! DDL differs (`migrations/postgres`, `migrations/sqlite`).

use crate::StoreError;
use async_trait::async_trait;
use opptak_domain::model::{AudioFormat, CallFacts, CallId, ChannelRole, Codec, Desk, Direction, ServiceCategory};
use opptak_domain::reassembly::Progress;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};
use std::sync::Arc;

/// A data key as stored: sealed under a KEK.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredKey {
    pub key_id: String,
    pub class: String,
    pub kek_id: String,
    pub sealed: Vec<u8>,
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
    pub updated_at_us: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentRow {
    pub recording_id: String,
    pub idx: u64,
    /// The spool object holding the sealed segment, and where in it.
    pub blob_path: String,
    pub blob_offset: u64,
    pub first_frame: u64,
    pub frames: u64,
    pub sealed_bytes: u64,
    pub final_segment: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GapRow {
    pub recording_id: String,
    pub first_missing: u64,
    pub missing: u64,
    pub at_frame: u64,
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
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRow {
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
#[derive(Clone, Debug, PartialEq, Eq)]
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
    pub held: bool,
    /// The rule chain that decided, one per line.
    pub rules: String,
    pub decided_at_us: i64,
    pub deleted_at_us: Option<i64>,
}

/// A legal hold on a call.
#[derive(Clone, Debug, PartialEq, Eq)]
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
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtensionRow {
    pub call_id: String,
    pub years: u32,
    pub authority: String,
    pub case_ref: String,
    pub requested_by: String,
    pub at_us: i64,
}

/// A compliance officer's reclassification of a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReclassRow {
    pub call_id: String,
    pub service_category: String,
    pub by_officer: String,
    pub reason: String,
    pub at_us: i64,
}

/// The evidence one deletion by the sweeper leaves (no personal data).
#[derive(Clone, Debug, PartialEq, Eq)]
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
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShredEvidence {
    pub key_id: String,
    pub call_id: String,
    pub class: String,
    pub kek_id: String,
    pub shredded_at_us: i64,
    pub reason: String,
    pub requested_by: String,
}

#[async_trait]
pub trait MetadataStore: Send + Sync + 'static {
    /// Applies a flush in one transaction.
    async fn apply(&self, flush: &Flush) -> Result<(), StoreError>;
    async fn load_call(&self, call_id: &CallId) -> Result<Option<CallRecord>, StoreError>;
    /// Most recent calls first.
    async fn list_calls(&self, limit: u32) -> Result<Vec<CallRecord>, StoreError>;
    async fn segments(&self, recording_id: &str) -> Result<Vec<SegmentRow>, StoreError>;
    async fn gaps(&self, recording_id: &str) -> Result<Vec<GapRow>, StoreError>;
    /// Live (not destroyed) data keys per KEK and class: `(kek_id, class, count)`.
    async fn key_counts(&self) -> Result<Vec<(String, String, u64)>, StoreError>;
    /// Up to `limit` live data keys not wrapped by `kek_id`, with their call id.
    async fn keys_not_under(&self, kek_id: &str, limit: u32) -> Result<Vec<(String, StoredKey)>, StoreError>;
    /// Replaces wrapped keys, each only if it is still wrapped by the KEK the
    /// caller read (`old_kek_id`); returns how many were replaced.
    async fn rewrap(&self, keys: &[(String, StoredKey)]) -> Result<u64, StoreError>;
    /// Crypto-shreds the data key of a call's retention class: the wrapped key
    /// is overwritten with nothing and marked destroyed, and an evidence record
    /// is written, in one transaction. NotFound when there is no live key.
    async fn shred_key(
        &self,
        call_id: &CallId,
        class: &str,
        reason: &str,
        requested_by: &str,
        at_us: i64,
    ) -> Result<ShredEvidence, StoreError>;
    /// Shredding evidence, oldest first (of one call, or all).
    async fn shreddings(&self, call_id: Option<&CallId>) -> Result<Vec<ShredEvidence>, StoreError>;
    /// Shreddings at or after `since_us`, oldest first (running processes
    /// poll this to drop cached keys).
    async fn shreddings_since(&self, since_us: i64) -> Result<Vec<ShredEvidence>, StoreError>;
    /// Every artifact of a call with its key.
    async fn artifacts(&self, call_id: &CallId) -> Result<Vec<ArtifactRow>, StoreError>;
    /// The data key of one retention class of a call, live or destroyed.
    async fn class_key(&self, call_id: &CallId, class: &str) -> Result<Option<KeyRow>, StoreError>;
    /// Stores `key` as the call's key of its class unless one exists; returns
    /// the one that is stored (the first writer wins a race).
    async fn create_key(&self, call_id: &CallId, key: &StoredKey, at_us: i64) -> Result<KeyRow, StoreError>;
    /// Any data key by id, with its owner (a call id, or `deadletters-<day>`).
    async fn key_by_id(&self, key_id: &str) -> Result<Option<(String, KeyRow)>, StoreError>;
    /// The dead-letter key of a day (`YYYY-MM-DD`), created from `key` if missing.
    async fn deadletter_key(&self, day: &str, key: &StoredKey, at_us: i64) -> Result<KeyRow, StoreError>;
    /// Recordings finished before `completed_before_us` and not yet compacted
    /// into a format-v2 object (whose key is live), oldest first.
    async fn to_compact(&self, completed_before_us: i64, limit: u32) -> Result<Vec<CallId>, StoreError>;
    /// Calls with no end stored whose last input was stored before
    /// `updated_before_us` (and whose recording key is live), with that time,
    /// oldest first: the telephony system never sent their CallEnded.
    async fn idle_calls(&self, updated_before_us: i64, limit: u32) -> Result<Vec<(CallId, i64)>, StoreError>;
    /// Records a compaction and its copies in one transaction; Conflict if the
    /// recording was compacted meanwhile (the caller deletes its objects).
    /// The recording's spool segment rows are dropped (the object replaces
    /// them), and the retention rows of the artifacts are written.
    async fn store_compacted(&self, c: &Compacted) -> Result<(), StoreError>;
    /// Records a further artifact of a finished call (a transcript, a draft):
    /// one object under the key `key_id`.
    async fn add_artifact(
        &self,
        call_id: &CallId,
        artifact_id: &str,
        kind: &str,
        key_id: &str,
        object: &StoredObject,
        at_us: i64,
    ) -> Result<(), StoreError>;
    /// Which of these spool objects still hold segments some row points to.
    async fn spool_referenced(&self, paths: &[String]) -> Result<std::collections::HashSet<String>, StoreError>;

    /// Writes retention decisions (an artifact already deleted keeps its row).
    async fn put_retention(&self, rows: &[RetentionRow]) -> Result<(), StoreError>;
    async fn retention_of(&self, call_id: &CallId) -> Result<Vec<RetentionRow>, StoreError>;
    /// Live artifacts whose retention ended at or before `now_us`, not held,
    /// oldest first.
    async fn due(&self, now_us: i64, limit: u32) -> Result<Vec<RetentionRow>, StoreError>;
    /// After the sweeper deleted an artifact's object: marks it deleted and
    /// writes the evidence, and — when it was the call's last live artifact of
    /// its class — shreds the class's key (with its own evidence), in one
    /// transaction. Idempotent: `None` if it was already recorded.
    async fn record_deletion(&self, row: &RetentionRow, at_us: i64) -> Result<Option<DeletionRow>, StoreError>;
    async fn deletions(&self, call_id: Option<&CallId>) -> Result<Vec<DeletionRow>, StoreError>;
    /// Call ids after `after` (exclusive), in order: for recomputing all.
    async fn call_ids(&self, after: &str, limit: u32) -> Result<Vec<CallId>, StoreError>;

    async fn place_hold(&self, hold: &HoldRow) -> Result<(), StoreError>;
    /// First step of a release: recorded, the hold stays in force.
    async fn request_hold_release(&self, hold_id: &str, by: &str, at_us: i64) -> Result<HoldRow, StoreError>;
    /// Second step: another officer than the requester confirms; the hold ends.
    async fn confirm_hold_release(&self, hold_id: &str, by: &str, at_us: i64) -> Result<HoldRow, StoreError>;
    /// Holds of one call or all, active only or all, oldest first.
    async fn holds(&self, call_id: Option<&CallId>, active_only: bool) -> Result<Vec<HoldRow>, StoreError>;
    async fn set_extension(&self, ext: &ExtensionRow) -> Result<(), StoreError>;
    async fn extension_of(&self, call_id: &CallId) -> Result<Option<ExtensionRow>, StoreError>;
    async fn set_reclassification(&self, r: &ReclassRow) -> Result<(), StoreError>;
    async fn reclassification_of(&self, call_id: &CallId) -> Result<Option<ReclassRow>, StoreError>;
    fn describe(&self) -> String;
    /// One trivial query, for readiness probes: whether the store answers.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Every call of one (pseudonymous) customer, oldest first: for
    /// data-subject requests (R11).
    async fn calls_of_customer(&self, customer_ref: &str) -> Result<Vec<CallId>, StoreError>;
}

/// Rows per multi-row statement: 500 × 12 parameters stays far below
/// PostgreSQL's 65,535 and SQLite's 32,766 bind-parameter limits.
const ROWS_PER_STATEMENT: usize = 500;

/// `($1, $2), ($3, $4)` for `rows` rows of `cols` columns.
fn placeholders(rows: usize, cols: usize) -> String {
    let mut out = String::with_capacity(rows * cols * 5);
    for r in 0..rows {
        if r > 0 {
            out.push_str(", ");
        }
        out.push('(');
        for c in 0..cols {
            if c > 0 {
                out.push_str(", ");
            }
            out.push('$');
            out.push_str(&(r * cols + c + 1).to_string());
        }
        out.push(')');
    }
    out
}

pub struct SqlStore {
    pub(crate) pool: AnyPool,
    description: String,
    pub(crate) sqlite: bool,
}

pub(crate) fn db(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::Configuration(c) => StoreError::Config(c.to_string()),
        other => StoreError::Unavailable(other.to_string()),
    }
}

/// Opens (and migrates) the metadata store named by a URL:
/// `postgres://user@host:port/db` or `sqlite:///absolute/file.db`.
pub async fn open_metadata_store(url: &str) -> Result<Arc<dyn MetadataStore>, StoreError> {
    Ok(Arc::new(SqlStore::open(url).await?))
}

impl SqlStore {
    /// A write transaction. SQLite's deferred `BEGIN` fails with
    /// SQLITE_BUSY_SNAPSHOT (517, which no busy timeout waits out) when a
    /// transaction that read first writes after another connection
    /// committed; `BEGIN IMMEDIATE` takes the write lock up front and waits
    /// for it instead (busy_timeout).
    pub(crate) async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
        if self.sqlite {
            self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(db)
        } else {
            self.pool.begin().await.map_err(db)
        }
    }

    pub async fn open(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let (pool, description) = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = AnyPoolOptions::new()
                .max_connections(8)
                .acquire_timeout(std::time::Duration::from_secs(30))
                .connect(&with_password_from_file(url)?)
                .await
                .map_err(|e| match e {
                    // TLS and authentication refusals are not worth retrying.
                    sqlx::Error::Tls(_) | sqlx::Error::Database(_) | sqlx::Error::Configuration(_) => {
                        StoreError::Config(format!("connecting to {}: {e}", redact(url)))
                    }
                    e => db(e),
                })?;
            sqlx::migrate!("./migrations/postgres")
                .run(&pool)
                .await
                .map_err(|e| StoreError::Config(format!("migrations: {e}")))?;
            (pool, redact(url))
        } else if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(StoreError::Config(
                    "sqlite:// needs a file path, e.g. sqlite:///var/lib/opptak/opptak.db".into(),
                ));
            }
            if let Some(dir) = std::path::Path::new(path).parent() {
                std::fs::create_dir_all(dir).map_err(|e| StoreError::Config(format!("{}: {e}", dir.display())))?;
            }
            let pool = AnyPoolOptions::new()
                .max_connections(4)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        use sqlx::Executor;
                        conn.execute("PRAGMA journal_mode=WAL").await?;
                        conn.execute("PRAGMA synchronous=NORMAL").await?;
                        conn.execute("PRAGMA busy_timeout=30000").await?;
                        conn.execute("PRAGMA foreign_keys=ON").await?;
                        Ok(())
                    })
                })
                .connect(&format!("sqlite://{path}?mode=rwc"))
                .await
                .map_err(db)?;
            sqlx::migrate!("./migrations/sqlite")
                .run(&pool)
                .await
                .map_err(|e| StoreError::Config(format!("migrations: {e}")))?;
            (pool, url.to_owned())
        } else {
            return Err(StoreError::Config(format!(
                "unsupported metadata url {:?}: use postgres://... or sqlite:///path",
                redact(url)
            )));
        };
        let sqlite = url.starts_with("sqlite://");
        Ok(Self {
            pool,
            description,
            sqlite,
        })
    }

    async fn hold(&self, hold_id: &str) -> Result<HoldRow, StoreError> {
        let row = sqlx::query(&format!("{HOLD_SELECT} WHERE hold_id = $1"))
            .bind(hold_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .ok_or_else(|| StoreError::NotFound(format!("hold {hold_id}")))?;
        hold_row(&row)
    }

    fn call_from_row(r: &AnyRow) -> Result<CallRecord, StoreError> {
        let bad = |what: &str| StoreError::Corrupt(format!("calls.{what}"));
        let text = |c: &str| r.try_get::<String, _>(c).map_err(|_| bad(c));
        let int = |c: &str| r.try_get::<i64, _>(c).map_err(|_| bad(c));
        let opt_int = |c: &str| r.try_get::<Option<i64>, _>(c).map_err(|_| bad(c));
        let flag = |c: &str| r.try_get::<i64, _>(c).map(|v| v != 0).map_err(|_| bad(c));
        let call_id = CallId::parse(&text("call_id")?).map_err(|_| bad("call_id"))?;
        let codec = Codec::parse(&text("codec")?).ok_or_else(|| bad("codec"))?;
        let roles = text("channel_roles")?
            .split(',')
            .map(|s| ChannelRole::parse(s).ok_or_else(|| bad("channel_roles")))
            .collect::<Result<Vec<_>, _>>()?;
        let format = AudioFormat::new(codec, int("sample_rate_hz")? as u32, roles).map_err(|_| bad("format"))?;
        let facts = CallFacts {
            call_id,
            started_at_us: int("started_at_us")?,
            direction: Direction::parse(&text("direction")?).ok_or_else(|| bad("direction"))?,
            customer_ref: text("customer_ref")?,
            advisor_id: text("advisor_id")?,
            desk: Desk::parse(&text("desk")?).ok_or_else(|| bad("desk"))?,
            service_category: ServiceCategory::parse(&text("service_category")?)
                .ok_or_else(|| bad("service_category"))?,
            ki_enabled: flag("ki_enabled")?,
            customer_informed: flag("customer_informed")?,
            format,
        };
        let end = match opt_int("ended_at_us")? {
            Some(ended_at_us) => Some(CallEnd {
                ended_at_us,
                reason: r
                    .try_get::<Option<String>, _>("end_reason")
                    .map_err(|_| bad("end_reason"))?
                    .unwrap_or_default(),
                last_sequence: opt_int("last_sequence")?.map(|v| v as u64),
            }),
            None => None,
        };
        let opt_out = match opt_int("ki_opt_out_at_us")? {
            Some(at_us) => Some(OptOut {
                at_us,
                requested_by: r
                    .try_get::<Option<String>, _>("ki_opt_out_by")
                    .map_err(|_| bad("ki_opt_out_by"))?
                    .unwrap_or_default(),
                offset_us: opt_int("ki_opt_out_offset_us")?.unwrap_or(0) as u64,
            }),
            None => None,
        };
        Ok(CallRecord {
            facts,
            key: StoredKey {
                key_id: text("key_id")?,
                class: text("class")?,
                kek_id: text("kek_id")?,
                sealed: r.try_get::<Vec<u8>, _>("sealed").map_err(|_| bad("sealed"))?,
            },
            recording_id: text("recording_id")?,
            blob_prefix: text("blob_prefix")?,
            segments: int("segments")? as u64,
            complete: flag("complete")?,
            progress: Progress {
                next_sequence: int("next_sequence")? as u64,
                frames: int("frames")? as u64,
                gaps: Vec::new(),
                last_chunk_frames: int("last_chunk_frames")? as u64,
                ended: end.is_some(),
            },
            duplicate_chunks: int("duplicate_chunks")? as u64,
            end,
            opt_out,
            created_at_us: int("created_at_us")?,
            updated_at_us: int("updated_at_us")?,
            key_destroyed_at_us: opt_int("key_destroyed_at_us")?,
            object: object_from_row(r)?,
        })
    }
}

fn object_from_row(r: &AnyRow) -> Result<Option<StoredObject>, StoreError> {
    let bad = |_| StoreError::Corrupt("recordings.object".into());
    let path = r.try_get::<Option<String>, _>("object_path").map_err(bad)?;
    let bytes = r.try_get::<Option<i64>, _>("object_bytes").map_err(bad)?;
    Ok(match (path, bytes) {
        (Some(path), Some(bytes)) => Some(StoredObject {
            path,
            bytes: bytes as u64,
        }),
        _ => None,
    })
}

/// The `call_id` column of each row, parsed.
fn call_ids_of(rows: &[AnyRow], table: &str) -> Result<Vec<CallId>, StoreError> {
    rows.iter()
        .map(|r| {
            let id: String = r
                .try_get("call_id")
                .map_err(|_| StoreError::Corrupt(format!("{table} row")))?;
            CallId::parse(&id).map_err(|_| StoreError::Corrupt(format!("{table}.call_id")))
        })
        .collect()
}

fn key_row(r: &AnyRow, table: &str) -> Result<KeyRow, StoreError> {
    let bad = |_| StoreError::Corrupt(format!("{table} row"));
    Ok(KeyRow {
        key: StoredKey {
            key_id: r.try_get("key_id").map_err(bad)?,
            class: r.try_get("class").map_err(bad)?,
            kek_id: r.try_get("kek_id").map_err(bad)?,
            sealed: r.try_get("sealed").map_err(bad)?,
        },
        destroyed_at_us: r.try_get("destroyed_at_us").map_err(bad)?,
    })
}

type Tx<'a> = sqlx::Transaction<'a, sqlx::Any>;

/// Shreds a call's live key of `class` inside a transaction: the wrapped key
/// overwritten with nothing and marked destroyed, the evidence written.
/// `None` if there is no live key of that class.
async fn shred_in_tx(
    tx: &mut Tx<'_>,
    call_id: &CallId,
    class: &str,
    reason: &str,
    requested_by: &str,
    at_us: i64,
) -> Result<Option<ShredEvidence>, StoreError> {
    let row = sqlx::query(
        "SELECT key_id, kek_id FROM data_keys WHERE call_id = $1 AND class = $2 AND destroyed_at_us IS NULL",
    )
    .bind(call_id.as_str())
    .bind(class)
    .fetch_optional(&mut **tx)
    .await
    .map_err(db)?;
    let Some(row) = row else { return Ok(None) };
    let bad = |_| StoreError::Corrupt("data_keys row".into());
    let ev = ShredEvidence {
        key_id: row.try_get("key_id").map_err(bad)?,
        call_id: call_id.to_string(),
        class: class.to_owned(),
        kek_id: row.try_get("kek_id").map_err(bad)?,
        shredded_at_us: at_us,
        reason: reason.to_owned(),
        requested_by: requested_by.to_owned(),
    };
    // Guarded: of two shreddings racing (a KI opt-out seen by the recorder
    // and the transcriber at once), the second waits for the first's row
    // lock, then matches nothing and reports the key gone.
    let updated = sqlx::query(
        "UPDATE data_keys SET sealed = $1, destroyed_at_us = $2 WHERE key_id = $3 AND destroyed_at_us IS NULL",
    )
    .bind(Vec::<u8>::new())
    .bind(at_us)
    .bind(ev.key_id.as_str())
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    if updated.rows_affected() == 0 {
        return Ok(None);
    }
    sqlx::query(
        "INSERT INTO key_shreddings (key_id, call_id, class, kek_id, shredded_at_us, reason, requested_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(ev.key_id.as_str())
    .bind(ev.call_id.as_str())
    .bind(ev.class.as_str())
    .bind(ev.kek_id.as_str())
    .bind(ev.shredded_at_us)
    .bind(ev.reason.as_str())
    .bind(ev.requested_by.as_str())
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    Ok(Some(ev))
}

const RETENTION_SELECT: &str = "SELECT artifact_id, call_id, kind, class, tier, location, expires_at_us, held, rules, \
    decided_at_us, deleted_at_us FROM retention";

async fn upsert_retention(tx: &mut Tx<'_>, r: &RetentionRow) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO retention (artifact_id, call_id, kind, class, tier, location, expires_at_us, held, rules, \
         decided_at_us) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (artifact_id) DO UPDATE SET \
         kind = excluded.kind, class = excluded.class, tier = excluded.tier, location = excluded.location, \
         expires_at_us = excluded.expires_at_us, held = excluded.held, rules = excluded.rules, \
         decided_at_us = excluded.decided_at_us WHERE retention.deleted_at_us IS NULL",
    )
    .bind(r.artifact_id.as_str())
    .bind(r.call_id.as_str())
    .bind(r.kind.as_str())
    .bind(r.class.as_str())
    .bind(r.tier.as_str())
    .bind(r.location.as_str())
    .bind(r.expires_at_us)
    .bind(r.held as i64)
    .bind(r.rules.as_str())
    .bind(r.decided_at_us)
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    Ok(())
}

fn retention_row(r: &AnyRow) -> Result<RetentionRow, StoreError> {
    let bad = |_| StoreError::Corrupt("retention row".into());
    Ok(RetentionRow {
        artifact_id: r.try_get("artifact_id").map_err(bad)?,
        call_id: r.try_get("call_id").map_err(bad)?,
        kind: r.try_get("kind").map_err(bad)?,
        class: r.try_get("class").map_err(bad)?,
        tier: r.try_get("tier").map_err(bad)?,
        location: r.try_get("location").map_err(bad)?,
        expires_at_us: r.try_get("expires_at_us").map_err(bad)?,
        held: r.try_get::<i64, _>("held").map_err(bad)? != 0,
        rules: r.try_get("rules").map_err(bad)?,
        decided_at_us: r.try_get("decided_at_us").map_err(bad)?,
        deleted_at_us: r.try_get("deleted_at_us").map_err(bad)?,
    })
}

const HOLD_SELECT: &str = "SELECT hold_id, call_id, case_ref, reason, placed_by, placed_at_us, release_requested_by, \
    release_requested_at_us, released_by, released_at_us FROM holds";

fn hold_row(r: &AnyRow) -> Result<HoldRow, StoreError> {
    let bad = |_| StoreError::Corrupt("holds row".into());
    Ok(HoldRow {
        hold_id: r.try_get("hold_id").map_err(bad)?,
        call_id: r.try_get("call_id").map_err(bad)?,
        case_ref: r.try_get("case_ref").map_err(bad)?,
        reason: r.try_get("reason").map_err(bad)?,
        placed_by: r.try_get("placed_by").map_err(bad)?,
        placed_at_us: r.try_get("placed_at_us").map_err(bad)?,
        release_requested_by: r.try_get("release_requested_by").map_err(bad)?,
        release_requested_at_us: r.try_get("release_requested_at_us").map_err(bad)?,
        released_by: r.try_get("released_by").map_err(bad)?,
        released_at_us: r.try_get("released_at_us").map_err(bad)?,
    })
}

fn evidence_row(r: &AnyRow) -> Result<ShredEvidence, StoreError> {
    let bad = |_| StoreError::Corrupt("key_shreddings row".into());
    Ok(ShredEvidence {
        key_id: r.try_get("key_id").map_err(bad)?,
        call_id: r.try_get("call_id").map_err(bad)?,
        class: r.try_get("class").map_err(bad)?,
        kek_id: r.try_get("kek_id").map_err(bad)?,
        shredded_at_us: r.try_get("shredded_at_us").map_err(bad)?,
        reason: r.try_get("reason").map_err(bad)?,
        requested_by: r.try_get("requested_by").map_err(bad)?,
    })
}

/// opptak's own parameter of a `postgres://` URL: the password is read from
/// this file (`storage.metadata_password_file`), so it appears in no URL,
/// configuration or log. Without it and without a password in the URL,
/// the driver reads `PGPASSWORD`.
pub const PASSWORD_FILE_PARAM: &str = "password_file";

/// `url` with the password from its [`PASSWORD_FILE_PARAM`] file in place of
/// the parameter. The result holds the password: it goes to the driver only.
fn with_password_from_file(url: &str) -> Result<String, StoreError> {
    let bad = |why: String| StoreError::Config(format!("metadata url {}: {why}", redact(url)));
    let mut u = reqwest::Url::parse(url).map_err(|e| bad(e.to_string()))?;
    let mut file = None;
    let kept: Vec<(String, String)> = u
        .query_pairs()
        .filter_map(|(k, v)| {
            if k == PASSWORD_FILE_PARAM {
                file = Some(v.into_owned());
                None
            } else {
                Some((k.into_owned(), v.into_owned()))
            }
        })
        .collect();
    let Some(file) = file else { return Ok(url.to_owned()) };
    if u.password().is_some() {
        return Err(bad(format!(
            "a password in the URL and in {PASSWORD_FILE_PARAM}: give one"
        )));
    }
    let text = std::fs::read_to_string(&file).map_err(|e| bad(format!("reading the password file {file}: {e}")))?;
    let password = text.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        return Err(bad(format!("the password file {file} is empty")));
    }
    u.set_query(None);
    if !kept.is_empty() {
        u.query_pairs_mut().extend_pairs(kept);
    }
    u.set_password(Some(password))
        .map_err(|()| bad("this URL cannot carry a password".into()))?;
    Ok(u.to_string())
}

/// Hides a password in a database URL.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:*****{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

const CALL_SELECT: &str = "SELECT c.call_id, c.started_at_us, c.direction, c.customer_ref, c.advisor_id, c.desk, \
    c.service_category, c.ki_enabled, c.customer_informed, c.codec, c.sample_rate_hz, c.channel_roles, \
    c.next_sequence, c.frames, c.last_chunk_frames, c.duplicate_chunks, c.ended_at_us, c.end_reason, \
    c.last_sequence, c.ki_opt_out_at_us, c.ki_opt_out_by, c.ki_opt_out_offset_us, c.created_at_us, c.updated_at_us, \
    k.key_id, k.class, k.kek_id, k.sealed, k.destroyed_at_us AS key_destroyed_at_us, r.recording_id, r.blob_prefix, r.segments, r.complete, \
    r.object_path, r.object_bytes \
    FROM calls c JOIN recordings r ON r.call_id = c.call_id AND r.kind = 'recording' \
    JOIN data_keys k ON k.key_id = r.key_id";

#[async_trait]
impl MetadataStore for SqlStore {
    async fn apply(&self, f: &Flush) -> Result<(), StoreError> {
        if f.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        for rows in f.new_calls.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO calls (call_id, started_at_us, direction, customer_ref, advisor_id, desk, \
                 service_category, ki_enabled, customer_informed, codec, sample_rate_hz, channel_roles, state, \
                 created_at_us, updated_at_us) VALUES {} ON CONFLICT (call_id) DO NOTHING",
                placeholders(rows.len(), 15)
            );
            let mut q = sqlx::query(&sql);
            for c in rows {
                let roles: Vec<&str> = c.facts.format.channel_roles().iter().map(|r| r.as_str()).collect();
                q = q
                    .bind(c.facts.call_id.as_str())
                    .bind(c.facts.started_at_us)
                    .bind(c.facts.direction.as_str())
                    .bind(c.facts.customer_ref.as_str())
                    .bind(c.facts.advisor_id.as_str())
                    .bind(c.facts.desk.as_str())
                    .bind(c.facts.service_category.as_str())
                    .bind(c.facts.ki_enabled as i64)
                    .bind(c.facts.customer_informed as i64)
                    .bind(c.facts.format.codec().as_str())
                    .bind(c.facts.format.sample_rate_hz() as i64)
                    .bind(roles.join(","))
                    .bind("recording")
                    .bind(c.created_at_us)
                    .bind(c.created_at_us);
            }
            q.execute(&mut *tx).await.map_err(db)?;
            let sql = format!(
                "INSERT INTO data_keys (key_id, call_id, class, kek_id, sealed, created_at_us) VALUES {} \
                 ON CONFLICT (key_id) DO NOTHING",
                placeholders(rows.len(), 6)
            );
            let mut q = sqlx::query(&sql);
            for c in rows {
                q = q
                    .bind(c.key.key_id.as_str())
                    .bind(c.facts.call_id.as_str())
                    .bind(c.key.class.as_str())
                    .bind(c.key.kek_id.as_str())
                    .bind(c.key.sealed.clone())
                    .bind(c.created_at_us);
            }
            q.execute(&mut *tx).await.map_err(db)?;
            for c in rows {
                for k in &c.extra_keys {
                    sqlx::query(
                        "INSERT INTO data_keys (key_id, call_id, class, kek_id, sealed, created_at_us) \
                         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (key_id) DO NOTHING",
                    )
                    .bind(k.key_id.as_str())
                    .bind(c.facts.call_id.as_str())
                    .bind(k.class.as_str())
                    .bind(k.kek_id.as_str())
                    .bind(k.sealed.clone())
                    .bind(c.created_at_us)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                }
            }
            let sql = format!(
                "INSERT INTO recordings (recording_id, call_id, kind, key_id, blob_prefix, created_at_us) VALUES {} \
                 ON CONFLICT (recording_id) DO NOTHING",
                placeholders(rows.len(), 6)
            );
            let mut q = sqlx::query(&sql);
            for c in rows {
                q = q
                    .bind(c.recording_id.as_str())
                    .bind(c.facts.call_id.as_str())
                    .bind("recording")
                    .bind(c.key.key_id.as_str())
                    .bind(c.blob_prefix.as_str())
                    .bind(c.created_at_us);
            }
            q.execute(&mut *tx).await.map_err(db)?;
        }
        // Guarded updates first: a fenced writer fails before it writes anything.
        for rows in f.updates.chunks(ROWS_PER_STATEMENT) {
            // A CTE with a column list: portable between PostgreSQL and SQLite
            // (SQLite's VALUES cannot be aliased with column names otherwise).
            let sql = format!(
                "WITH v (call_id, next_sequence, frames, last_chunk_frames, duplicate_chunks, state, ended_at_us, \
                 end_reason, last_sequence, ki_opt_out_at_us, ki_opt_out_by, ki_opt_out_offset_us, updated_at_us) \
                 AS (VALUES {}) \
                 UPDATE calls SET next_sequence = v.next_sequence, frames = v.frames, \
                 last_chunk_frames = v.last_chunk_frames, duplicate_chunks = v.duplicate_chunks, state = v.state, \
                 ended_at_us = v.ended_at_us, end_reason = v.end_reason, last_sequence = v.last_sequence, \
                 ki_opt_out_at_us = v.ki_opt_out_at_us, ki_opt_out_by = v.ki_opt_out_by, \
                 ki_opt_out_offset_us = v.ki_opt_out_offset_us, updated_at_us = v.updated_at_us \
                 FROM v WHERE calls.call_id = v.call_id",
                placeholders(rows.len(), 13)
            );
            let mut q = sqlx::query(&sql);
            for u in rows {
                q = q
                    .bind(u.call_id.as_str())
                    .bind(u.next_sequence as i64)
                    .bind(u.frames as i64)
                    .bind(u.last_chunk_frames as i64)
                    .bind(u.duplicate_chunks as i64)
                    .bind(if u.complete { "complete" } else { "recording" })
                    .bind(u.end.as_ref().map(|e| e.ended_at_us))
                    .bind(u.end.as_ref().map(|e| e.reason.clone()))
                    .bind(u.end.as_ref().and_then(|e| e.last_sequence).map(|v| v as i64))
                    .bind(u.opt_out.as_ref().map(|o| o.at_us))
                    .bind(u.opt_out.as_ref().map(|o| o.requested_by.clone()))
                    .bind(u.opt_out.as_ref().map(|o| o.offset_us as i64))
                    .bind(u.updated_at_us);
            }
            q.execute(&mut *tx).await.map_err(db)?;
            let sql = format!(
                "WITH v (recording_id, segments, prev_segments, complete, completed_at_us) AS (VALUES {}) \
                 UPDATE recordings SET segments = v.segments, complete = v.complete, completed_at_us = v.completed_at_us \
                 FROM v WHERE recordings.recording_id = v.recording_id AND recordings.segments = v.prev_segments \
                 AND NOT EXISTS (SELECT 1 FROM data_keys k WHERE k.key_id = recordings.key_id \
                 AND k.destroyed_at_us IS NOT NULL)",
                placeholders(rows.len(), 5)
            );
            let mut q = sqlx::query(&sql);
            for u in rows {
                q = q
                    .bind(u.recording_id.as_str())
                    .bind(u.segments as i64)
                    .bind(u.prev_segments as i64)
                    .bind(u.complete as i64)
                    .bind(if u.complete { Some(u.updated_at_us) } else { None });
            }
            let done = q.execute(&mut *tx).await.map_err(db)?.rows_affected();
            if done != rows.len() as u64 {
                // Dropping the transaction rolls everything back.
                return Err(StoreError::Conflict(format!(
                    "{} of {} recordings were changed by another writer or had their key shredded",
                    rows.len() as u64 - done,
                    rows.len()
                )));
            }
        }
        // Multi-row statements: a flush of 2,000 calls is a handful of round
        // trips, not 6,000 (measured: 200 ms → see BENCHMARKS.md).
        for rows in f.segments.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO segments (recording_id, idx, blob_path, blob_offset, first_frame, frames, sealed_bytes, \
                 final_segment) VALUES {} ON CONFLICT (recording_id, idx) DO UPDATE SET \
                 blob_path = excluded.blob_path, blob_offset = excluded.blob_offset, first_frame = excluded.first_frame, \
                 frames = excluded.frames, \
                 sealed_bytes = excluded.sealed_bytes, final_segment = excluded.final_segment",
                placeholders(rows.len(), 8)
            );
            let mut q = sqlx::query(&sql);
            for s in rows {
                q = q
                    .bind(s.recording_id.as_str())
                    .bind(s.idx as i64)
                    .bind(s.blob_path.as_str())
                    .bind(s.blob_offset as i64)
                    .bind(s.first_frame as i64)
                    .bind(s.frames as i64)
                    .bind(s.sealed_bytes as i64)
                    .bind(s.final_segment as i64);
            }
            q.execute(&mut *tx).await.map_err(db)?;
        }
        for rows in f.gaps.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO gaps (recording_id, first_missing, missing, at_frame, frames) VALUES {} \
                 ON CONFLICT (recording_id, first_missing) DO NOTHING",
                placeholders(rows.len(), 5)
            );
            let mut q = sqlx::query(&sql);
            for g in rows {
                q = q
                    .bind(g.recording_id.as_str())
                    .bind(g.first_missing as i64)
                    .bind(g.missing as i64)
                    .bind(g.at_frame as i64)
                    .bind(g.frames as i64);
            }
            q.execute(&mut *tx).await.map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }

    async fn load_call(&self, call_id: &CallId) -> Result<Option<CallRecord>, StoreError> {
        let row = sqlx::query(&format!("{CALL_SELECT} WHERE c.call_id = $1"))
            .bind(call_id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        let Some(row) = row else { return Ok(None) };
        let mut rec = Self::call_from_row(&row)?;
        rec.progress.gaps = self
            .gaps(&rec.recording_id)
            .await?
            .into_iter()
            .map(|g| (g.first_missing, g.missing))
            .collect();
        Ok(Some(rec))
    }

    async fn list_calls(&self, limit: u32) -> Result<Vec<CallRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "{CALL_SELECT} ORDER BY c.started_at_us DESC, c.call_id LIMIT $1"
        ))
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(Self::call_from_row).collect()
    }

    async fn segments(&self, recording_id: &str) -> Result<Vec<SegmentRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT recording_id, idx, blob_path, blob_offset, first_frame, frames, sealed_bytes, final_segment \
             FROM segments WHERE recording_id = $1 ORDER BY idx",
        )
        .bind(recording_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                let bad = |_| StoreError::Corrupt("segments row".into());
                Ok(SegmentRow {
                    recording_id: r.try_get("recording_id").map_err(bad)?,
                    idx: r.try_get::<i64, _>("idx").map_err(bad)? as u64,
                    blob_path: r.try_get("blob_path").map_err(bad)?,
                    blob_offset: r.try_get::<i64, _>("blob_offset").map_err(bad)? as u64,
                    first_frame: r.try_get::<i64, _>("first_frame").map_err(bad)? as u64,
                    frames: r.try_get::<i64, _>("frames").map_err(bad)? as u64,
                    sealed_bytes: r.try_get::<i64, _>("sealed_bytes").map_err(bad)? as u64,
                    final_segment: r.try_get::<i64, _>("final_segment").map_err(bad)? != 0,
                })
            })
            .collect()
    }

    async fn gaps(&self, recording_id: &str) -> Result<Vec<GapRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT recording_id, first_missing, missing, at_frame, frames FROM gaps \
             WHERE recording_id = $1 ORDER BY first_missing",
        )
        .bind(recording_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                let bad = |_| StoreError::Corrupt("gaps row".into());
                Ok(GapRow {
                    recording_id: r.try_get("recording_id").map_err(bad)?,
                    first_missing: r.try_get::<i64, _>("first_missing").map_err(bad)? as u64,
                    missing: r.try_get::<i64, _>("missing").map_err(bad)? as u64,
                    at_frame: r.try_get::<i64, _>("at_frame").map_err(bad)? as u64,
                    frames: r.try_get::<i64, _>("frames").map_err(bad)? as u64,
                })
            })
            .collect()
    }

    async fn key_counts(&self) -> Result<Vec<(String, String, u64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT kek_id, class, COUNT(*) AS n FROM (SELECT kek_id, class FROM data_keys \
             WHERE destroyed_at_us IS NULL UNION ALL SELECT kek_id, 'deadletters' AS class FROM deadletter_keys \
             WHERE destroyed_at_us IS NULL) live GROUP BY kek_id, class ORDER BY kek_id, class",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                let bad = |_| StoreError::Corrupt("data_keys count".into());
                Ok((
                    r.try_get::<String, _>("kek_id").map_err(bad)?,
                    r.try_get::<String, _>("class").map_err(bad)?,
                    r.try_get::<i64, _>("n").map_err(bad)? as u64,
                ))
            })
            .collect()
    }

    async fn keys_not_under(&self, kek_id: &str, limit: u32) -> Result<Vec<(String, StoredKey)>, StoreError> {
        let rows = sqlx::query(
            "SELECT owner AS call_id, key_id, class, kek_id, sealed FROM (\
             SELECT call_id AS owner, key_id, class, kek_id, sealed FROM data_keys \
             WHERE kek_id <> $1 AND destroyed_at_us IS NULL \
             UNION ALL SELECT 'deadletters-' || day AS owner, key_id, class, kek_id, sealed FROM deadletter_keys \
             WHERE kek_id <> $1 AND destroyed_at_us IS NULL) live ORDER BY key_id LIMIT $2",
        )
        .bind(kek_id)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                let bad = |_| StoreError::Corrupt("data_keys row".into());
                Ok((
                    r.try_get::<String, _>("call_id").map_err(bad)?,
                    StoredKey {
                        key_id: r.try_get("key_id").map_err(bad)?,
                        class: r.try_get("class").map_err(bad)?,
                        kek_id: r.try_get("kek_id").map_err(bad)?,
                        sealed: r.try_get("sealed").map_err(bad)?,
                    },
                ))
            })
            .collect()
    }

    async fn rewrap(&self, keys: &[(String, StoredKey)]) -> Result<u64, StoreError> {
        let mut tx = self.begin().await?;
        let mut done = 0;
        for (old_kek_id, k) in keys {
            for table in ["data_keys", "deadletter_keys"] {
                done += sqlx::query(&format!(
                    "UPDATE {table} SET kek_id = $1, sealed = $2 WHERE key_id = $3 AND kek_id = $4 \
                     AND destroyed_at_us IS NULL"
                ))
                .bind(k.kek_id.as_str())
                .bind(k.sealed.clone())
                .bind(k.key_id.as_str())
                .bind(old_kek_id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db)?
                .rows_affected();
            }
        }
        tx.commit().await.map_err(db)?;
        Ok(done)
    }

    async fn shred_key(
        &self,
        call_id: &CallId,
        class: &str,
        reason: &str,
        requested_by: &str,
        at_us: i64,
    ) -> Result<ShredEvidence, StoreError> {
        let mut tx = self.begin().await?;
        let ev = shred_in_tx(&mut tx, call_id, class, reason, requested_by, at_us)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("live {class} key of call {call_id}")))?;
        tx.commit().await.map_err(db)?;
        opptak_telemetry::metrics().key_operation(opptak_telemetry::KeyOp::Shred);
        Ok(ev)
    }

    async fn shreddings(&self, call_id: Option<&CallId>) -> Result<Vec<ShredEvidence>, StoreError> {
        let rows = sqlx::query(
            "SELECT key_id, call_id, class, kek_id, shredded_at_us, reason, requested_by FROM key_shreddings \
             WHERE $1 = '' OR call_id = $1 ORDER BY shredded_at_us, key_id",
        )
        .bind(call_id.map(|c| c.as_str()).unwrap_or(""))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(evidence_row).collect()
    }

    async fn shreddings_since(&self, since_us: i64) -> Result<Vec<ShredEvidence>, StoreError> {
        let rows = sqlx::query(
            "SELECT key_id, call_id, class, kek_id, shredded_at_us, reason, requested_by FROM key_shreddings \
             WHERE shredded_at_us >= $1 ORDER BY shredded_at_us, key_id",
        )
        .bind(since_us)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(evidence_row).collect()
    }

    async fn artifacts(&self, call_id: &CallId) -> Result<Vec<ArtifactRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT r.recording_id, r.call_id, r.kind, r.complete, r.object_path, r.object_bytes, \
             k.key_id, k.class, k.kek_id, k.sealed, k.destroyed_at_us \
             FROM recordings r JOIN data_keys k ON k.key_id = r.key_id WHERE r.call_id = $1 \
             ORDER BY r.created_at_us, r.recording_id",
        )
        .bind(call_id.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                let bad = |_| StoreError::Corrupt("recordings row".into());
                Ok(ArtifactRow {
                    artifact_id: r.try_get("recording_id").map_err(bad)?,
                    call_id: r.try_get("call_id").map_err(bad)?,
                    kind: r.try_get("kind").map_err(bad)?,
                    key: key_row(r, "data_keys")?,
                    complete: r.try_get::<i64, _>("complete").map_err(bad)? != 0,
                    object: object_from_row(r)?,
                })
            })
            .collect()
    }

    async fn class_key(&self, call_id: &CallId, class: &str) -> Result<Option<KeyRow>, StoreError> {
        let row = sqlx::query(
            "SELECT key_id, class, kek_id, sealed, destroyed_at_us FROM data_keys WHERE call_id = $1 AND class = $2",
        )
        .bind(call_id.as_str())
        .bind(class)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.as_ref().map(|r| key_row(r, "data_keys")).transpose()
    }

    async fn create_key(&self, call_id: &CallId, key: &StoredKey, at_us: i64) -> Result<KeyRow, StoreError> {
        sqlx::query(
            "INSERT INTO data_keys (key_id, call_id, class, kek_id, sealed, created_at_us) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (call_id, class) DO NOTHING",
        )
        .bind(key.key_id.as_str())
        .bind(call_id.as_str())
        .bind(key.class.as_str())
        .bind(key.kek_id.as_str())
        .bind(key.sealed.clone())
        .bind(at_us)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        self.class_key(call_id, &key.class)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("{} key of call {call_id} vanished", key.class)))
    }

    async fn key_by_id(&self, key_id: &str) -> Result<Option<(String, KeyRow)>, StoreError> {
        let row = sqlx::query(
            "SELECT call_id AS owner, key_id, class, kek_id, sealed, destroyed_at_us FROM data_keys WHERE key_id = $1 \
             UNION ALL SELECT 'deadletters-' || day AS owner, key_id, class, kek_id, sealed, destroyed_at_us \
             FROM deadletter_keys WHERE key_id = $1",
        )
        .bind(key_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        match row {
            Some(r) => Ok(Some((
                r.try_get("owner")
                    .map_err(|_| StoreError::Corrupt("key owner".into()))?,
                key_row(&r, "data_keys")?,
            ))),
            None => Ok(None),
        }
    }

    async fn deadletter_key(&self, day: &str, key: &StoredKey, at_us: i64) -> Result<KeyRow, StoreError> {
        sqlx::query(
            "INSERT INTO deadletter_keys (day, key_id, class, kek_id, sealed, created_at_us) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (day) DO NOTHING",
        )
        .bind(day)
        .bind(key.key_id.as_str())
        .bind(key.class.as_str())
        .bind(key.kek_id.as_str())
        .bind(key.sealed.clone())
        .bind(at_us)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        let row =
            sqlx::query("SELECT key_id, class, kek_id, sealed, destroyed_at_us FROM deadletter_keys WHERE day = $1")
                .bind(day)
                .fetch_one(&self.pool)
                .await
                .map_err(db)?;
        key_row(&row, "deadletter_keys")
    }

    async fn to_compact(&self, completed_before_us: i64, limit: u32) -> Result<Vec<CallId>, StoreError> {
        let rows = sqlx::query(
            "SELECT r.call_id FROM recordings r JOIN data_keys k ON k.key_id = r.key_id \
             WHERE r.kind = 'recording' AND r.complete = 1 AND r.object_path IS NULL \
             AND k.destroyed_at_us IS NULL AND r.completed_at_us < $1 ORDER BY r.completed_at_us LIMIT $2",
        )
        .bind(completed_before_us)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        call_ids_of(&rows, "recordings")
    }

    async fn idle_calls(&self, updated_before_us: i64, limit: u32) -> Result<Vec<(CallId, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT c.call_id, c.updated_at_us FROM calls c \
             JOIN recordings r ON r.call_id = c.call_id AND r.kind = 'recording' \
             JOIN data_keys k ON k.key_id = r.key_id \
             WHERE c.ended_at_us IS NULL AND c.updated_at_us < $1 AND r.complete = 0 \
             AND k.destroyed_at_us IS NULL ORDER BY c.updated_at_us LIMIT $2",
        )
        .bind(updated_before_us)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let ids = call_ids_of(&rows, "calls")?;
        let mut out = Vec::with_capacity(ids.len());
        for (id, r) in ids.into_iter().zip(&rows) {
            let at: i64 = r
                .try_get("updated_at_us")
                .map_err(|_| StoreError::Corrupt("calls.updated_at_us".into()))?;
            out.push((id, at));
        }
        Ok(out)
    }

    async fn store_compacted(&self, c: &Compacted) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE recordings SET object_path = $1, object_bytes = $2, compacted_at_us = $3 \
             WHERE recording_id = $4 AND object_path IS NULL AND complete = 1",
        )
        .bind(c.object.path.as_str())
        .bind(c.object.bytes as i64)
        .bind(c.at_us)
        .bind(c.recording_id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected();
        if done != 1 {
            return Err(StoreError::Conflict(format!(
                "recording {} was compacted by another writer (or is not complete)",
                c.recording_id
            )));
        }
        for copy in &c.copies {
            sqlx::query(
                "INSERT INTO recordings (recording_id, call_id, kind, key_id, blob_prefix, segments, complete, \
                 created_at_us, completed_at_us, object_path, object_bytes, compacted_at_us) \
                 VALUES ($1, $2, $3, $4, $5, 0, 1, $6, $6, $7, $8, $6)",
            )
            .bind(copy.artifact_id.as_str())
            .bind(c.call_id.as_str())
            .bind(copy.kind.as_str())
            .bind(copy.key_id.as_str())
            .bind(copy.object.path.as_str())
            .bind(c.at_us)
            .bind(copy.object.path.as_str())
            .bind(copy.object.bytes as i64)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        sqlx::query("DELETE FROM segments WHERE recording_id = $1")
            .bind(c.recording_id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        for r in &c.retention {
            upsert_retention(&mut tx, r).await?;
        }
        tx.commit().await.map_err(db)
    }

    async fn add_artifact(
        &self,
        call_id: &CallId,
        artifact_id: &str,
        kind: &str,
        key_id: &str,
        object: &StoredObject,
        at_us: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO recordings (recording_id, call_id, kind, key_id, blob_prefix, segments, complete, \
             created_at_us, completed_at_us, object_path, object_bytes, compacted_at_us) \
             VALUES ($1, $2, $3, $4, $5, 0, 1, $6, $6, $5, $7, $6) ON CONFLICT (call_id, kind) DO NOTHING",
        )
        .bind(artifact_id)
        .bind(call_id.as_str())
        .bind(kind)
        .bind(key_id)
        .bind(object.path.as_str())
        .bind(at_us)
        .bind(object.bytes as i64)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn spool_referenced(&self, paths: &[String]) -> Result<std::collections::HashSet<String>, StoreError> {
        let mut out = std::collections::HashSet::new();
        for chunk in paths.chunks(ROWS_PER_STATEMENT) {
            let list = (1..=chunk.len())
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!("SELECT DISTINCT blob_path FROM segments WHERE blob_path IN ({list})");
            let mut q = sqlx::query(&sql);
            for p in chunk {
                q = q.bind(p.as_str());
            }
            for r in q.fetch_all(&self.pool).await.map_err(db)? {
                out.insert(
                    r.try_get::<String, _>("blob_path")
                        .map_err(|_| StoreError::Corrupt("segments".into()))?,
                );
            }
        }
        Ok(out)
    }

    async fn put_retention(&self, rows: &[RetentionRow]) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        for r in rows {
            upsert_retention(&mut tx, r).await?;
        }
        tx.commit().await.map_err(db)
    }

    async fn retention_of(&self, call_id: &CallId) -> Result<Vec<RetentionRow>, StoreError> {
        let rows = sqlx::query(&format!("{RETENTION_SELECT} WHERE call_id = $1 ORDER BY artifact_id"))
            .bind(call_id.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(retention_row).collect()
    }

    async fn due(&self, now_us: i64, limit: u32) -> Result<Vec<RetentionRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "{RETENTION_SELECT} WHERE deleted_at_us IS NULL AND held = 0 AND expires_at_us <= $1 \
             AND NOT EXISTS (SELECT 1 FROM holds h WHERE h.call_id = retention.call_id AND h.released_at_us IS NULL) \
             ORDER BY expires_at_us, artifact_id LIMIT $2"
        ))
        .bind(now_us)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(retention_row).collect()
    }

    async fn record_deletion(&self, row: &RetentionRow, at_us: i64) -> Result<Option<DeletionRow>, StoreError> {
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE retention SET deleted_at_us = $1 WHERE artifact_id = $2 AND deleted_at_us IS NULL \
             AND NOT EXISTS (SELECT 1 FROM holds h WHERE h.call_id = retention.call_id AND h.released_at_us IS NULL)",
        )
        .bind(at_us)
        .bind(row.artifact_id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected();
        if done == 0 {
            return Ok(None);
        }
        let live: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM retention WHERE call_id = $1 AND class = $2 AND deleted_at_us IS NULL",
        )
        .bind(row.call_id.as_str())
        .bind(row.class.as_str())
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?
        .try_get("n")
        .map_err(|_| StoreError::Corrupt("retention count".into()))?;
        if row.kind == "recording" {
            // Spool segments of a recording never compacted: their rows go, the
            // spool collector then removes the objects.
            sqlx::query("DELETE FROM segments WHERE recording_id = $1")
                .bind(row.artifact_id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        let rule = row.rules.lines().next().unwrap_or_default().to_owned();
        let mut key_shredded = None;
        if live == 0 {
            let call_id = CallId::parse(&row.call_id).map_err(|_| StoreError::Corrupt("retention.call_id".into()))?;
            let reason = format!("retention expired: {rule}");
            if let Some(ev) = shred_in_tx(&mut tx, &call_id, &row.class, &reason, "retention-sweeper", at_us).await? {
                key_shredded = Some(ev.key_id);
            }
        }
        let d = DeletionRow {
            artifact_id: row.artifact_id.clone(),
            call_id: row.call_id.clone(),
            kind: row.kind.clone(),
            class: row.class.clone(),
            tier: row.tier.clone(),
            rule,
            expired_at_us: row.expires_at_us,
            deleted_at_us: at_us,
            key_shredded,
        };
        sqlx::query(
            "INSERT INTO deletions (artifact_id, call_id, kind, class, tier, rule, expired_at_us, deleted_at_us, \
             key_shredded) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (artifact_id) DO NOTHING",
        )
        .bind(d.artifact_id.as_str())
        .bind(d.call_id.as_str())
        .bind(d.kind.as_str())
        .bind(d.class.as_str())
        .bind(d.tier.as_str())
        .bind(d.rule.as_str())
        .bind(d.expired_at_us)
        .bind(d.deleted_at_us)
        .bind(d.key_shredded.clone())
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        if d.key_shredded.is_some() {
            opptak_telemetry::metrics().key_operation(opptak_telemetry::KeyOp::Shred);
        }
        Ok(Some(d))
    }

    async fn deletions(&self, call_id: Option<&CallId>) -> Result<Vec<DeletionRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT artifact_id, call_id, kind, class, tier, rule, expired_at_us, deleted_at_us, key_shredded \
             FROM deletions WHERE $1 = '' OR call_id = $1 ORDER BY deleted_at_us, artifact_id",
        )
        .bind(call_id.map(|c| c.as_str()).unwrap_or(""))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                let bad = |_| StoreError::Corrupt("deletions row".into());
                Ok(DeletionRow {
                    artifact_id: r.try_get("artifact_id").map_err(bad)?,
                    call_id: r.try_get("call_id").map_err(bad)?,
                    kind: r.try_get("kind").map_err(bad)?,
                    class: r.try_get("class").map_err(bad)?,
                    tier: r.try_get("tier").map_err(bad)?,
                    rule: r.try_get("rule").map_err(bad)?,
                    expired_at_us: r.try_get("expired_at_us").map_err(bad)?,
                    deleted_at_us: r.try_get("deleted_at_us").map_err(bad)?,
                    key_shredded: r.try_get("key_shredded").map_err(bad)?,
                })
            })
            .collect()
    }

    async fn call_ids(&self, after: &str, limit: u32) -> Result<Vec<CallId>, StoreError> {
        let rows = sqlx::query("SELECT call_id FROM calls WHERE call_id > $1 ORDER BY call_id LIMIT $2")
            .bind(after)
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        call_ids_of(&rows, "calls")
    }

    async fn place_hold(&self, h: &HoldRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO holds (hold_id, call_id, case_ref, reason, placed_by, placed_at_us) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(h.hold_id.as_str())
        .bind(h.call_id.as_str())
        .bind(h.case_ref.as_str())
        .bind(h.reason.as_str())
        .bind(h.placed_by.as_str())
        .bind(h.placed_at_us)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn request_hold_release(&self, hold_id: &str, by: &str, at_us: i64) -> Result<HoldRow, StoreError> {
        let done = sqlx::query(
            "UPDATE holds SET release_requested_by = $1, release_requested_at_us = $2 \
             WHERE hold_id = $3 AND released_at_us IS NULL",
        )
        .bind(by)
        .bind(at_us)
        .bind(hold_id)
        .execute(&self.pool)
        .await
        .map_err(db)?
        .rows_affected();
        if done == 0 {
            return Err(StoreError::NotFound(format!("active hold {hold_id}")));
        }
        self.hold(hold_id).await
    }

    async fn confirm_hold_release(&self, hold_id: &str, by: &str, at_us: i64) -> Result<HoldRow, StoreError> {
        let h = self.hold(hold_id).await?;
        if h.released_at_us.is_some() {
            return Err(StoreError::Conflict(format!("hold {hold_id} is already released")));
        }
        match h.release_requested_by.as_deref() {
            None => {
                return Err(StoreError::Conflict(format!(
                    "hold {hold_id}: nobody asked for its release yet (first: opptak hold release {hold_id} --by <officer>)"
                )))
            }
            Some(req) if req == by => {
                return Err(StoreError::Conflict(format!(
                    "hold {hold_id}: {by} asked for the release; a second compliance officer must confirm it"
                )))
            }
            Some(_) => {}
        }
        sqlx::query(
            "UPDATE holds SET released_by = $1, released_at_us = $2 WHERE hold_id = $3 AND released_at_us IS NULL",
        )
        .bind(by)
        .bind(at_us)
        .bind(hold_id)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        self.hold(hold_id).await
    }

    async fn holds(&self, call_id: Option<&CallId>, active_only: bool) -> Result<Vec<HoldRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "{HOLD_SELECT} WHERE ($1 = '' OR call_id = $1) AND ($2 = 0 OR released_at_us IS NULL) \
             ORDER BY placed_at_us, hold_id"
        ))
        .bind(call_id.map(|c| c.as_str()).unwrap_or(""))
        .bind(active_only as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(hold_row).collect()
    }

    async fn set_extension(&self, e: &ExtensionRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO extensions (call_id, years, authority, case_ref, requested_by, at_us) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (call_id) DO UPDATE SET years = excluded.years, \
             authority = excluded.authority, case_ref = excluded.case_ref, requested_by = excluded.requested_by, \
             at_us = excluded.at_us",
        )
        .bind(e.call_id.as_str())
        .bind(e.years as i64)
        .bind(e.authority.as_str())
        .bind(e.case_ref.as_str())
        .bind(e.requested_by.as_str())
        .bind(e.at_us)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn extension_of(&self, call_id: &CallId) -> Result<Option<ExtensionRow>, StoreError> {
        let row = sqlx::query(
            "SELECT call_id, years, authority, case_ref, requested_by, at_us FROM extensions WHERE call_id = $1",
        )
        .bind(call_id.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.map(|r| {
            let bad = |_| StoreError::Corrupt("extensions row".into());
            Ok(ExtensionRow {
                call_id: r.try_get("call_id").map_err(bad)?,
                years: r.try_get::<i64, _>("years").map_err(bad)? as u32,
                authority: r.try_get("authority").map_err(bad)?,
                case_ref: r.try_get("case_ref").map_err(bad)?,
                requested_by: r.try_get("requested_by").map_err(bad)?,
                at_us: r.try_get("at_us").map_err(bad)?,
            })
        })
        .transpose()
    }

    async fn set_reclassification(&self, r: &ReclassRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO reclassifications (call_id, service_category, by_officer, reason, at_us) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (call_id) DO UPDATE SET \
             service_category = excluded.service_category, by_officer = excluded.by_officer, \
             reason = excluded.reason, at_us = excluded.at_us",
        )
        .bind(r.call_id.as_str())
        .bind(r.service_category.as_str())
        .bind(r.by_officer.as_str())
        .bind(r.reason.as_str())
        .bind(r.at_us)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn reclassification_of(&self, call_id: &CallId) -> Result<Option<ReclassRow>, StoreError> {
        let row = sqlx::query(
            "SELECT call_id, service_category, by_officer, reason, at_us FROM reclassifications WHERE call_id = $1",
        )
        .bind(call_id.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.map(|r| {
            let bad = |_| StoreError::Corrupt("reclassifications row".into());
            Ok(ReclassRow {
                call_id: r.try_get("call_id").map_err(bad)?,
                service_category: r.try_get("service_category").map_err(bad)?,
                by_officer: r.try_get("by_officer").map_err(bad)?,
                reason: r.try_get("reason").map_err(bad)?,
                at_us: r.try_get("at_us").map_err(bad)?,
            })
        })
        .transpose()
    }

    fn describe(&self) -> String {
        self.description.clone()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(db)?;
        Ok(())
    }

    async fn calls_of_customer(&self, customer_ref: &str) -> Result<Vec<CallId>, StoreError> {
        let rows = sqlx::query("SELECT call_id FROM calls WHERE customer_ref = $1 ORDER BY started_at_us, call_id")
            .bind(customer_ref)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        call_ids_of(&rows, "calls")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            super::redact("postgres://u:secret@h:5432/db"),
            "postgres://u:*****@h:5432/db"
        );
        assert_eq!(super::redact("postgres://u@h/db"), "postgres://u@h/db");
    }

    #[test]
    fn the_password_comes_from_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3cr@t/:?\n").unwrap();
        let url = format!(
            "postgres://u@h:5432/db?sslmode=verify-full&password_file={}&sslrootcert=/ca.pem",
            file.display()
        );
        let got = super::with_password_from_file(&url).unwrap();
        assert_eq!(
            got,
            "postgres://u:s3cr%40t%2F%3A%3F@h:5432/db?sslmode=verify-full&sslrootcert=%2Fca.pem"
        );
        assert!(!super::redact(&got).contains("s3cr"));
        let plain = "postgres://u@h/db?sslmode=disable";
        assert_eq!(super::with_password_from_file(plain).unwrap(), plain);
        let both = format!("postgres://u:inline@h/db?password_file={}", file.display());
        let e = super::with_password_from_file(&both).unwrap_err().to_string();
        assert!(e.contains("give one") && !e.contains("inline"), "{e}");
        let missing = "postgres://u@h/db?password_file=/nonexistent/pw";
        let e = super::with_password_from_file(missing).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/pw"), "{e}");
    }
}
