//! The metadata store: calls, wrapped data keys, recordings, segments, gaps,
//! retention.
//!
//! One SQL implementation over sqlx's `Any` driver serves PostgreSQL and
//! SQLite: the DML is portable (`$n` placeholders, `ON CONFLICT`), only the
//! DDL differs (`migrations/postgres`, `migrations/sqlite`).
//!
//! This module holds the [`MetadataStore`] trait, [`SqlStore`] (opening,
//! migrating, transactions) and the trait's implementation, which hands each
//! method to the module of its concern:
//!
//! - `model`: the row and value types of the trait;
//! - `calls`: calls, segments, gaps, flushes, opt-outs, call updates;
//! - `keys`: wrapped data keys, shredding, KEK rotation;
//! - `artifacts`: artifacts, format-v2 objects, copies, compaction;
//! - `retention`: retention rows, holds, extensions, reclassifications,
//!   deletions;
//! - `conversations`: chat, secure messages and e-mail (issue 17), each a
//!   `calls` row with medium `conversation`, and their open messages.
//!
//! Rows are mapped with `#[derive(sqlx::FromRow)]`. The Any driver decodes
//! integers only as they are stored (every integer column is `BIGINT`, read
//! as `i64`); [`Bigint`] and [`Flag`] turn such a column into an unsigned
//! field or a 0/1 flag (`#[sqlx(try_from = "Bigint")]`).

mod artifacts;
mod calls;
mod conversations;
mod failover;
mod keys;
mod model;
mod retention;

pub use conversations::{ConversationRecord, MessageOutcome, MessageRow};
pub use failover::split_host_list;
pub use model::{
    ArtifactRow, CallEnd, CallRecord, CallUpdate, Compacted, ContextRow, DeletionRow, ExtensionRow, Flush, GapRow,
    HoldRow, KeyRow, KeyUnder, NewCall, NewCopy, Objection, OptOut, ReclassRow, RetentionRow, SegmentRow,
    ShredEvidence, StoredKey, StoredObject,
};

use crate::StoreError;
use async_trait::async_trait;
use opptak_domain::model::CallId;
use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;
use std::collections::HashSet;
use std::sync::Arc;

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
    /// Up to `limit` live data keys wrapped by `kek_id`, with owner and creation time.
    async fn keys_under(&self, kek_id: &str, limit: u32) -> Result<Vec<KeyUnder>, StoreError>;
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
    /// Removes the copies of shredded keys the database itself still keeps.
    /// SQLite (which zeroes freed space: `secure_delete`) checkpoints its
    /// write-ahead log and truncates it to nothing; PostgreSQL vacuums
    /// `data_keys`, so dead row versions holding a wrapped key go. Copies
    /// outside the live database (PostgreSQL's WAL archive, backups) become
    /// unreadable only when the KEK that wrapped them is destroyed.
    async fn scrub_shredded(&self) -> Result<(), StoreError>;
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
    /// Replaces the call's artifact of `kind` (id `old_id`) with `object`
    /// under `new_id`, keeping its retention row (clock, hold, rules).
    /// Returns the old object's path, for the caller to delete.
    async fn replace_artifact(
        &self,
        call_id: &CallId,
        kind: &str,
        old_id: &str,
        new_id: &str,
        object: &StoredObject,
        at_us: i64,
    ) -> Result<Option<String>, StoreError>;
    /// Which of these spool objects still hold segments some row points to.
    async fn spool_referenced(&self, paths: &[String]) -> Result<HashSet<String>, StoreError>;

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
    /// Applies a `CallContext` once: records `row` and sets the call's desk,
    /// advisor and customer to those of `after`, in one transaction. `false`
    /// (nothing written) when an event of that digest was applied before.
    async fn apply_call_context(
        &self,
        row: &ContextRow,
        after: &opptak_domain::model::CallFacts,
    ) -> Result<bool, StoreError>;
    /// The `CallContext` events applied to a call, in the order received.
    async fn call_contexts(&self, call_id: &CallId) -> Result<Vec<ContextRow>, StoreError>;
    fn describe(&self) -> String;
    /// One trivial query, for readiness probes: whether the store answers.
    /// Keeps a KI opt-out that came before its call started (idempotent: the first one stays).
    async fn keep_early_opt_out(&self, call_id: &CallId, o: &OptOut, received_at_us: i64) -> Result<(), StoreError>;
    /// The opt-out kept for a call that had not started when it came.
    async fn early_opt_out(&self, call_id: &CallId) -> Result<Option<OptOut>, StoreError>;
    /// Keeps a KiNotice that came before its call started (idempotent: the
    /// first one stays); removed when the call is stored with it.
    async fn keep_early_ki_notice(
        &self,
        call_id: &CallId,
        n: &opptak_domain::model::KiNotice,
        received_at_us: i64,
    ) -> Result<(), StoreError>;
    /// The notice kept for a call that had not started when it came.
    async fn early_ki_notice(&self, call_id: &CallId) -> Result<Option<opptak_domain::model::KiNotice>, StoreError>;
    /// Records a customer's objection (`ki` or `analysis`); the first stays.
    async fn record_objection(&self, o: &Objection) -> Result<(), StoreError>;
    /// The customer's objections in force.
    async fn objections(&self, customer_ref: &str) -> Result<Vec<Objection>, StoreError>;
    async fn ping(&self) -> Result<(), StoreError>;
    /// Every call of one (pseudonymous) customer, oldest first: for
    /// data-subject requests (R11).
    async fn calls_of_customer(&self, customer_ref: &str) -> Result<Vec<CallId>, StoreError>;
    /// Stores a new conversation; `Some(existing)` when one of that id
    /// exists (a call of that id is a `Conflict`).
    async fn start_conversation(
        &self,
        facts: &opptak_domain::model::ConversationFacts,
        sealed_origin: Option<&[u8]>,
        at_us: i64,
    ) -> Result<Option<ConversationRecord>, StoreError>;
    async fn load_conversation(&self, id: &CallId) -> Result<Option<ConversationRecord>, StoreError>;
    /// Stores sealed messages of one open conversation, each once.
    async fn add_messages(
        &self,
        id: &CallId,
        messages: &[MessageRow],
        at_us: i64,
    ) -> Result<Vec<MessageOutcome>, StoreError>;
    async fn conversation_messages(&self, id: &CallId) -> Result<Vec<MessageRow>, StoreError>;
    async fn hand_over(
        &self,
        id: &CallId,
        advisor_id: &str,
        desk: Option<opptak_domain::model::Desk>,
        category: Option<opptak_domain::model::ServiceCategory>,
        at_us: i64,
    ) -> Result<(), StoreError>;
    /// Ends an open conversation; false when it had ended already.
    async fn end_conversation(
        &self,
        id: &CallId,
        ended_at_us: i64,
        reason: &str,
        last_sequence: u64,
    ) -> Result<bool, StoreError>;
    /// Its copies were written: its open messages and sealed origin are deleted.
    async fn conversation_written(&self, id: &CallId, at_us: i64) -> Result<(), StoreError>;
    async fn conversations_to_write(&self, limit: u32) -> Result<Vec<CallId>, StoreError>;
    async fn idle_conversations(&self, before_us: i64, limit: u32) -> Result<Vec<(CallId, i64)>, StoreError>;
    /// A customer's conversations started at or after `since_us`, oldest first.
    async fn conversations_of_customer(
        &self,
        customer_ref: &str,
        since_us: i64,
    ) -> Result<Vec<ConversationRecord>, StoreError>;
    /// Conversations started at or after `since_us`, newest first, at most
    /// `limit`: of one channel and one advisor when given (the review
    /// service's list).
    async fn recent_conversations(
        &self,
        since_us: i64,
        channel: Option<opptak_domain::model::Channel>,
        advisor_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ConversationRecord>, StoreError>;
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
    /// Replaced when a PostgreSQL primary fails over (`failover`).
    pool: Arc<failover::PoolCell>,
    description: String,
    pub(crate) sqlite: bool,
}

pub(crate) fn db(e: sqlx::Error) -> StoreError {
    failover::note(&e);
    match e {
        sqlx::Error::Configuration(c) => StoreError::Config(c.to_string()),
        other => StoreError::Unavailable(other.to_string()),
    }
}

/// For a query that reads rows of `what` (`"segments row"`): a row that does
/// not decode into its type (a column missing or of another type) is
/// `Corrupt`; any other error is [`db`]'s.
fn read(what: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
    move |e| match e {
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. } => StoreError::Corrupt(format!("{what}: {e}")),
        other => db(other),
    }
}

/// A `BIGINT` column of an unsigned field, for `#[sqlx(try_from = "Bigint")]`:
/// the field is written `as i64` and read back `as` its type, so every `u64`
/// round-trips.
#[derive(sqlx::Type)]
#[sqlx(transparent)]
pub(crate) struct Bigint(i64);

impl From<Bigint> for u64 {
    fn from(v: Bigint) -> Self {
        v.0 as u64
    }
}

impl From<Bigint> for u32 {
    fn from(v: Bigint) -> Self {
        v.0 as u32
    }
}

/// A flag stored as a `BIGINT` 0/1 (sqlx's Any driver cannot decode SQLite
/// booleans), for `#[sqlx(try_from = "Flag")]`: anything but 0 is true.
#[derive(sqlx::Type)]
#[sqlx(transparent)]
pub(crate) struct Flag(i64);

impl From<Flag> for bool {
    fn from(v: Flag) -> Self {
        v.0 != 0
    }
}

type Tx<'a> = sqlx::Transaction<'a, sqlx::Any>;

/// Opens (and migrates) the metadata store named by a URL:
/// `postgres://user@host:port/db` or `sqlite:///absolute/file.db`.
/// The SQLite database holds wrapped keys, audit and review rows: created
/// 0600 before SQLite opens it (its `-wal` and `-shm` files take the
/// database file's mode), narrowed to 0600 when it exists with wider rights,
/// and refused when the path is a symbolic link.
fn private_sqlite_files(path: &std::path::Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let config = |e: std::io::Error| StoreError::Config(format!("{}: {e}", path.display()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(config(e)),
    }
    for suffix in ["", "-wal", "-shm"] {
        let file = std::path::PathBuf::from(format!("{}{suffix}", path.display()));
        let Ok(meta) = std::fs::symlink_metadata(&file) else {
            continue;
        };
        if meta.file_type().is_symlink() {
            return Err(StoreError::Config(format!(
                "{} is a symbolic link: refusing to open the metadata database through it",
                file.display()
            )));
        }
        if meta.is_file() && meta.permissions().mode() & 0o077 != 0 {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).map_err(config)?;
        }
    }
    Ok(())
}

pub async fn open_metadata_store(url: &str) -> Result<Arc<dyn MetadataStore>, StoreError> {
    Ok(Arc::new(SqlStore::open(url).await?))
}

impl SqlStore {
    /// A write transaction. SQLite's deferred `BEGIN` fails with
    /// SQLITE_BUSY_SNAPSHOT (517, which no busy timeout waits out) when a
    /// transaction that read first writes after another connection
    /// committed; `BEGIN IMMEDIATE` takes the write lock up front and waits
    /// for it instead (busy_timeout).
    pub(crate) async fn begin(&self) -> Result<Tx<'static>, StoreError> {
        if self.sqlite {
            self.pool().begin_with("BEGIN IMMEDIATE").await.map_err(db)
        } else {
            self.pool().begin().await.map_err(db)
        }
    }

    /// The pool to query now: on PostgreSQL with failover, the current
    /// primary's (a cheap clone; take it anew for every query).
    pub(crate) fn pool(&self) -> AnyPool {
        self.pool.get()
    }

    pub async fn open(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let mut watch = None;
        let (pool, description) = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = match failover::targets(url)? {
                Some(targets) => {
                    let (pool, host) = targets.open().await?;
                    tracing::info!(primary = %targets.names[host], hosts = %targets.names.join(", "),
                        "metadata store on the primary; failover watched");
                    watch = Some((targets, host));
                    pool
                }
                None => failover::pg_pool_options()
                    .connect(&with_password_from_file(url)?)
                    .await
                    .map_err(|e| match e {
                        // TLS and authentication refusals are not worth retrying.
                        sqlx::Error::Tls(_) | sqlx::Error::Database(_) | sqlx::Error::Configuration(_) => {
                            StoreError::Config(format!("connecting to {}: {e}", redact(url)))
                        }
                        e => db(e),
                    })?,
            };
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
            private_sqlite_files(std::path::Path::new(path))?;
            let pool = AnyPoolOptions::new()
                .max_connections(4)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        use sqlx::Executor;
                        conn.execute("PRAGMA journal_mode=WAL").await?;
                        conn.execute("PRAGMA synchronous=NORMAL").await?;
                        conn.execute("PRAGMA busy_timeout=30000").await?;
                        conn.execute("PRAGMA foreign_keys=ON").await?;
                        // A shredded key's bytes are zeroed, not left in free pages.
                        conn.execute("PRAGMA secure_delete=ON").await?;
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
        let pool = Arc::new(failover::PoolCell::new(
            pool,
            watch.as_ref().map_or(0, |(_, host)| *host),
        ));
        if let Some((targets, _)) = watch {
            failover::spawn_watcher(&pool, targets);
        }
        Ok(Self {
            pool,
            description,
            sqlite,
        })
    }
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

/// Whether the store would open `url` as far as its text goes: a
/// PostgreSQL URL with several hosts needs `target_session_attrs`
/// `read-write` or `primary`, and a port number for each host that names
/// one (see `failover`). Nothing is connected to.
pub fn check_url(url: &str) -> Result<(), StoreError> {
    failover::targets(url).map(|_| ())
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

/// Each method is the inherent method of the same name in the module of its
/// concern (inherent methods take precedence over the trait's).
#[async_trait]
impl MetadataStore for SqlStore {
    async fn apply(&self, flush: &Flush) -> Result<(), StoreError> {
        self.apply(flush).await
    }

    async fn load_call(&self, call_id: &CallId) -> Result<Option<CallRecord>, StoreError> {
        self.load_call(call_id).await
    }

    async fn list_calls(&self, limit: u32) -> Result<Vec<CallRecord>, StoreError> {
        self.list_calls(limit).await
    }

    async fn segments(&self, recording_id: &str) -> Result<Vec<SegmentRow>, StoreError> {
        self.segments(recording_id).await
    }

    async fn gaps(&self, recording_id: &str) -> Result<Vec<GapRow>, StoreError> {
        self.gaps(recording_id).await
    }

    async fn key_counts(&self) -> Result<Vec<(String, String, u64)>, StoreError> {
        self.key_counts().await
    }

    async fn keys_under(&self, kek_id: &str, limit: u32) -> Result<Vec<KeyUnder>, StoreError> {
        self.keys_under(kek_id, limit).await
    }

    async fn rewrap(&self, keys: &[(String, StoredKey)]) -> Result<u64, StoreError> {
        self.rewrap(keys).await
    }

    async fn shred_key(
        &self,
        call_id: &CallId,
        class: &str,
        reason: &str,
        requested_by: &str,
        at_us: i64,
    ) -> Result<ShredEvidence, StoreError> {
        self.shred_key(call_id, class, reason, requested_by, at_us).await
    }

    async fn scrub_shredded(&self) -> Result<(), StoreError> {
        self.scrub_shredded().await
    }

    async fn shreddings(&self, call_id: Option<&CallId>) -> Result<Vec<ShredEvidence>, StoreError> {
        self.shreddings(call_id).await
    }

    async fn shreddings_since(&self, since_us: i64) -> Result<Vec<ShredEvidence>, StoreError> {
        self.shreddings_since(since_us).await
    }

    async fn artifacts(&self, call_id: &CallId) -> Result<Vec<ArtifactRow>, StoreError> {
        self.artifacts(call_id).await
    }

    async fn class_key(&self, call_id: &CallId, class: &str) -> Result<Option<KeyRow>, StoreError> {
        self.class_key(call_id, class).await
    }

    async fn create_key(&self, call_id: &CallId, key: &StoredKey, at_us: i64) -> Result<KeyRow, StoreError> {
        self.create_key(call_id, key, at_us).await
    }

    async fn key_by_id(&self, key_id: &str) -> Result<Option<(String, KeyRow)>, StoreError> {
        self.key_by_id(key_id).await
    }

    async fn deadletter_key(&self, day: &str, key: &StoredKey, at_us: i64) -> Result<KeyRow, StoreError> {
        self.deadletter_key(day, key, at_us).await
    }

    async fn to_compact(&self, completed_before_us: i64, limit: u32) -> Result<Vec<CallId>, StoreError> {
        self.to_compact(completed_before_us, limit).await
    }

    async fn idle_calls(&self, updated_before_us: i64, limit: u32) -> Result<Vec<(CallId, i64)>, StoreError> {
        self.idle_calls(updated_before_us, limit).await
    }

    async fn store_compacted(&self, c: &Compacted) -> Result<(), StoreError> {
        self.store_compacted(c).await
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
        self.add_artifact(call_id, artifact_id, kind, key_id, object, at_us)
            .await
    }

    async fn replace_artifact(
        &self,
        call_id: &CallId,
        kind: &str,
        old_id: &str,
        new_id: &str,
        object: &StoredObject,
        at_us: i64,
    ) -> Result<Option<String>, StoreError> {
        self.replace_artifact(call_id, kind, old_id, new_id, object, at_us)
            .await
    }

    async fn spool_referenced(&self, paths: &[String]) -> Result<HashSet<String>, StoreError> {
        self.spool_referenced(paths).await
    }

    async fn put_retention(&self, rows: &[RetentionRow]) -> Result<(), StoreError> {
        self.put_retention(rows).await
    }

    async fn retention_of(&self, call_id: &CallId) -> Result<Vec<RetentionRow>, StoreError> {
        self.retention_of(call_id).await
    }

    async fn due(&self, now_us: i64, limit: u32) -> Result<Vec<RetentionRow>, StoreError> {
        self.due(now_us, limit).await
    }

    async fn record_deletion(&self, row: &RetentionRow, at_us: i64) -> Result<Option<DeletionRow>, StoreError> {
        self.record_deletion(row, at_us).await
    }

    async fn deletions(&self, call_id: Option<&CallId>) -> Result<Vec<DeletionRow>, StoreError> {
        self.deletions(call_id).await
    }

    async fn call_ids(&self, after: &str, limit: u32) -> Result<Vec<CallId>, StoreError> {
        self.call_ids(after, limit).await
    }

    async fn place_hold(&self, hold: &HoldRow) -> Result<(), StoreError> {
        self.place_hold(hold).await
    }

    async fn request_hold_release(&self, hold_id: &str, by: &str, at_us: i64) -> Result<HoldRow, StoreError> {
        self.request_hold_release(hold_id, by, at_us).await
    }

    async fn confirm_hold_release(&self, hold_id: &str, by: &str, at_us: i64) -> Result<HoldRow, StoreError> {
        self.confirm_hold_release(hold_id, by, at_us).await
    }

    async fn holds(&self, call_id: Option<&CallId>, active_only: bool) -> Result<Vec<HoldRow>, StoreError> {
        self.holds(call_id, active_only).await
    }

    async fn set_extension(&self, ext: &ExtensionRow) -> Result<(), StoreError> {
        self.set_extension(ext).await
    }

    async fn extension_of(&self, call_id: &CallId) -> Result<Option<ExtensionRow>, StoreError> {
        self.extension_of(call_id).await
    }

    async fn set_reclassification(&self, r: &ReclassRow) -> Result<(), StoreError> {
        self.set_reclassification(r).await
    }

    async fn reclassification_of(&self, call_id: &CallId) -> Result<Option<ReclassRow>, StoreError> {
        self.reclassification_of(call_id).await
    }

    async fn apply_call_context(
        &self,
        row: &ContextRow,
        after: &opptak_domain::model::CallFacts,
    ) -> Result<bool, StoreError> {
        self.apply_call_context(row, after).await
    }

    async fn call_contexts(&self, call_id: &CallId) -> Result<Vec<ContextRow>, StoreError> {
        self.call_contexts(call_id).await
    }

    fn describe(&self) -> String {
        self.description.clone()
    }

    async fn keep_early_opt_out(&self, call_id: &CallId, o: &OptOut, received_at_us: i64) -> Result<(), StoreError> {
        self.keep_early_opt_out(call_id, o, received_at_us).await
    }

    async fn early_opt_out(&self, call_id: &CallId) -> Result<Option<OptOut>, StoreError> {
        self.early_opt_out(call_id).await
    }

    async fn keep_early_ki_notice(
        &self,
        call_id: &CallId,
        n: &opptak_domain::model::KiNotice,
        received_at_us: i64,
    ) -> Result<(), StoreError> {
        self.keep_early_ki_notice(call_id, n, received_at_us).await
    }

    async fn early_ki_notice(&self, call_id: &CallId) -> Result<Option<opptak_domain::model::KiNotice>, StoreError> {
        self.early_ki_notice(call_id).await
    }

    async fn record_objection(&self, o: &Objection) -> Result<(), StoreError> {
        self.record_objection(o).await
    }

    async fn objections(&self, customer_ref: &str) -> Result<Vec<Objection>, StoreError> {
        self.objections(customer_ref).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool())
            .await
            .map(drop)
            .map_err(db)
    }

    async fn calls_of_customer(&self, customer_ref: &str) -> Result<Vec<CallId>, StoreError> {
        self.calls_of_customer(customer_ref).await
    }
    async fn start_conversation(
        &self,
        facts: &opptak_domain::model::ConversationFacts,
        sealed_origin: Option<&[u8]>,
        at_us: i64,
    ) -> Result<Option<ConversationRecord>, StoreError> {
        self.start_conversation(facts, sealed_origin, at_us).await
    }
    async fn load_conversation(&self, id: &CallId) -> Result<Option<ConversationRecord>, StoreError> {
        self.load_conversation(id).await
    }
    async fn add_messages(
        &self,
        id: &CallId,
        messages: &[MessageRow],
        at_us: i64,
    ) -> Result<Vec<MessageOutcome>, StoreError> {
        self.add_messages(id, messages, at_us).await
    }
    async fn conversation_messages(&self, id: &CallId) -> Result<Vec<MessageRow>, StoreError> {
        self.conversation_messages(id).await
    }
    async fn hand_over(
        &self,
        id: &CallId,
        advisor_id: &str,
        desk: Option<opptak_domain::model::Desk>,
        category: Option<opptak_domain::model::ServiceCategory>,
        at_us: i64,
    ) -> Result<(), StoreError> {
        self.hand_over(id, advisor_id, desk, category, at_us).await
    }
    async fn end_conversation(
        &self,
        id: &CallId,
        ended_at_us: i64,
        reason: &str,
        last_sequence: u64,
    ) -> Result<bool, StoreError> {
        self.end_conversation(id, ended_at_us, reason, last_sequence).await
    }
    async fn conversation_written(&self, id: &CallId, at_us: i64) -> Result<(), StoreError> {
        self.conversation_written(id, at_us).await
    }
    async fn conversations_to_write(&self, limit: u32) -> Result<Vec<CallId>, StoreError> {
        self.conversations_to_write(limit).await
    }
    async fn idle_conversations(&self, before_us: i64, limit: u32) -> Result<Vec<(CallId, i64)>, StoreError> {
        self.idle_conversations(before_us, limit).await
    }
    async fn conversations_of_customer(
        &self,
        customer_ref: &str,
        since_us: i64,
    ) -> Result<Vec<ConversationRecord>, StoreError> {
        self.conversations_of_customer(customer_ref, since_us).await
    }
    async fn recent_conversations(
        &self,
        since_us: i64,
        channel: Option<opptak_domain::model::Channel>,
        advisor_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ConversationRecord>, StoreError> {
        self.recent_conversations(since_us, channel, advisor_id, limit).await
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
