//! The audit log's storage (R3, R9): an append-only, hash-chained table.
//!
//! Entry `n` stores `hash_n = SHA-256("opptak-audit-v1\0" ‖ n ‖ at_us ‖
//! actor ‖ role ‖ action ‖ subject ‖ reason ‖ outcome ‖ hash_{n-1})` (numbers
//! big-endian, texts length-prefixed, `hash_0` all zeros), so editing,
//! deleting or reordering any entry breaks the chain from there on.
//! Checkpoints (signed by the caller, `src/audit.rs`) pin the hash of an
//! entry, so rewriting the whole chain after an edit is caught as well.
//! Appends are serialised by the sequence number's primary key: two
//! appenders that read the same tail race for one `seq`, and the loser
//! retries on the new tail.

use crate::meta::{db, Bigint, SqlStore};
use crate::StoreError;
use sha2::{Digest, Sha256};

/// What an entry records (never content: no audio, no transcript text).
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct AuditEvent {
    /// Who: a user id, a service role, or the OS user of a CLI.
    pub actor: String,
    /// In which role (advisor, team-lead, qa, compliance, auditor, admin, operator, system).
    pub role: String,
    /// What: `recording.read`, `transcript.read`, `draft.approve`, `user.create`, ...
    pub action: String,
    /// On what: `call:<id>`, `user:<id>`, `config`, ...
    pub subject: String,
    /// Why (the stated reason; empty where none is asked).
    pub reason: String,
    /// `allowed`, `refused` or `failed`.
    pub outcome: String,
}

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct AuditEntry {
    #[sqlx(try_from = "Bigint")]
    pub seq: u64,
    pub at_us: i64,
    #[sqlx(flatten)]
    pub event: AuditEvent,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredCheckpoint {
    #[sqlx(try_from = "Bigint")]
    pub seq: u64,
    pub hash: Vec<u8>,
    pub at_us: i64,
    pub key_id: String,
    pub signature: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct SigningKeyRow {
    pub key_id: String,
    pub kek_id: String,
    pub sealed: Vec<u8>,
    pub public_key: Vec<u8>,
    pub created_at_us: i64,
}

/// The hash of entry `seq` over its fields and the previous entry's hash.
pub fn entry_hash(seq: u64, at_us: i64, e: &AuditEvent, prev_hash: &[u8]) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(b"opptak-audit-v1\0");
    h.update(seq.to_be_bytes());
    h.update(at_us.to_be_bytes());
    for f in [&e.actor, &e.role, &e.action, &e.subject, &e.reason, &e.outcome] {
        h.update((f.len() as u32).to_be_bytes());
        h.update(f.as_bytes());
    }
    h.update(prev_hash);
    h.finalize().to_vec()
}

/// The message a checkpoint signs.
pub fn checkpoint_message(seq: u64, hash: &[u8], at_us: i64) -> Vec<u8> {
    let mut m = b"opptak-audit-checkpoint-v1\0".to_vec();
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(hash);
    m.extend_from_slice(&at_us.to_be_bytes());
    m
}

/// Which entries an auditor asks for; `None` (or empty) fields match all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Exactly this actor.
    pub actor: Option<String>,
    /// Exactly this action code.
    pub action: Option<String>,
    /// The subject as written (`call:demo-0003`), or a bare id that matches
    /// it under any of the subject kinds (`demo-0003` finds `call:demo-0003`,
    /// `user:demo-0003` and `conversation:demo-0003`).
    pub subject: Option<String>,
    /// Exactly this outcome.
    pub outcome: Option<String>,
    /// `at_us >= from_us`.
    pub from_us: Option<i64>,
    /// `at_us < to_us`.
    pub to_us: Option<i64>,
}

/// The kinds a bare subject id is looked up under.
pub const SUBJECT_KINDS: [&str; 3] = ["call", "conversation", "user"];

enum Arg {
    Text(String),
    Int(i64),
}

impl AuditFilter {
    /// The `WHERE` condition (`$1`…) and its arguments, equality only (so
    /// every filter can use its index, on either backend).
    fn condition(&self) -> (String, Vec<Arg>) {
        let mut conds = Vec::new();
        let mut args = Vec::new();
        let eq = |col: &str, v: &Option<String>, conds: &mut Vec<String>, args: &mut Vec<Arg>| {
            if let Some(v) = v.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
                args.push(Arg::Text(v.to_owned()));
                conds.push(format!("{col} = ${}", args.len()));
            }
        };
        eq("actor", &self.actor, &mut conds, &mut args);
        eq("action", &self.action, &mut conds, &mut args);
        eq("outcome", &self.outcome, &mut conds, &mut args);
        if let Some(s) = self.subject.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
            let mut one_of = Vec::new();
            let forms = std::iter::once(s.to_owned()).chain(
                (!s.contains(':'))
                    .then(|| SUBJECT_KINDS.iter().map(move |k| format!("{k}:{s}")))
                    .into_iter()
                    .flatten(),
            );
            for f in forms {
                args.push(Arg::Text(f));
                one_of.push(format!("${}", args.len()));
            }
            conds.push(format!("subject IN ({})", one_of.join(", ")));
        }
        if let Some(from) = self.from_us {
            args.push(Arg::Int(from));
            conds.push(format!("at_us >= ${}", args.len()));
        }
        if let Some(to) = self.to_us {
            args.push(Arg::Int(to));
            conds.push(format!("at_us < ${}", args.len()));
        }
        if conds.is_empty() {
            conds.push("1 = 1".into());
        }
        (conds.join(" AND "), args)
    }
}

pub const GENESIS: [u8; 32] = [0; 32];
const MAX_FIELD: usize = 1024;

/// The audit tables of a metadata database.
pub struct SqlAudit {
    store: SqlStore,
}

impl SqlAudit {
    /// Opens (and migrates) the database at `url` (`postgres://…`, `sqlite://…`).
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Ok(Self {
            store: SqlStore::open(url).await?,
        })
    }

    /// Refuses an event with a field longer than the log keeps.
    pub fn check(e: &AuditEvent) -> Result<(), StoreError> {
        for (name, f) in [
            ("actor", &e.actor),
            ("role", &e.role),
            ("action", &e.action),
            ("subject", &e.subject),
            ("reason", &e.reason),
            ("outcome", &e.outcome),
        ] {
            if f.len() > MAX_FIELD {
                return Err(StoreError::Config(format!(
                    "audit {name} longer than {MAX_FIELD} bytes"
                )));
            }
        }
        Ok(())
    }

    /// Appends one entry at `at_us`; returns it.
    pub async fn append(&self, e: &AuditEvent, at_us: i64) -> Result<AuditEntry, StoreError> {
        let mut v = self.append_batch(&[(e.clone(), at_us)]).await?;
        v.pop()
            .ok_or_else(|| StoreError::Corrupt("audit append returned nothing".into()))
    }

    /// Appends `events` in this order as consecutive entries, in one
    /// transaction (all or none); returns them.
    pub async fn append_batch(&self, events: &[(AuditEvent, i64)]) -> Result<Vec<AuditEntry>, StoreError> {
        for (e, _) in events {
            Self::check(e)?;
        }
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let mut last_err = None;
        for _ in 0..20 {
            let mut tx = self.store.begin().await?;
            // Appenders queue on one lock for the transaction (SQLite's
            // BEGIN IMMEDIATE is one already): under hundreds of concurrent
            // reads, racing for the next seq alone let an unlucky append lose
            // 20 times in a row (found by the wrk benchmark).
            if !self.store.sqlite {
                sqlx::query("SELECT pg_advisory_xact_lock(7243061)")
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
            }
            let tail: Option<(i64, Vec<u8>)> =
                sqlx::query_as("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db)?;
            let (mut seq, mut prev) = match tail {
                Some((seq, hash)) => (seq as u64 + 1, hash),
                None => (1, GENESIS.to_vec()),
            };
            let mut entries = Vec::with_capacity(events.len());
            let mut failed = None;
            for (e, at_us) in events {
                let hash = entry_hash(seq, *at_us, e, &prev);
                let inserted = sqlx::query(
                    "INSERT INTO audit_log (seq, at_us, actor, role, action, subject, reason, outcome, prev_hash, hash) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .bind(seq as i64)
                .bind(*at_us)
                .bind(e.actor.as_str())
                .bind(e.role.as_str())
                .bind(e.action.as_str())
                .bind(e.subject.as_str())
                .bind(e.reason.as_str())
                .bind(e.outcome.as_str())
                .bind(prev.clone())
                .bind(hash.clone())
                .execute(&mut *tx)
                .await;
                if let Err(err) = inserted {
                    failed = Some(err);
                    break;
                }
                entries.push(AuditEntry {
                    seq,
                    at_us: *at_us,
                    event: e.clone(),
                    prev_hash: std::mem::replace(&mut prev, hash.clone()),
                    hash,
                });
                seq += 1;
            }
            match failed {
                None => {
                    tx.commit().await.map_err(db)?;
                    return Ok(entries);
                }
                // Another appender took a seq (a writer without the lock, e.g. an
                // older version): go again on the new tail.
                Some(err) => {
                    let _ = tx.rollback().await;
                    last_err = Some(err);
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
            }
        }
        Err(db(last_err.unwrap_or(sqlx::Error::PoolClosed)))
    }

    /// Entries with `seq >= from`, in `seq` order, at most `limit`.
    pub async fn entries(&self, from: u64, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        sqlx::query_as(
            "SELECT seq, at_us, actor, role, action, subject, reason, outcome, prev_hash, hash FROM audit_log \
             WHERE seq >= $1 ORDER BY seq LIMIT $2",
        )
        .bind(from as i64)
        .bind(i64::from(limit))
        .fetch_all(&self.store.pool())
        .await
        .map_err(db)
    }

    /// The entries `filter` selects, newest first (by `seq`, the chain's
    /// order), skipping `offset`, at most `limit`. Each filter is an index
    /// ending in `seq` (migration 0021), so a page of a large log reads a
    /// page of an index.
    pub async fn search(&self, filter: &AuditFilter, offset: u64, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        let (sql, args) = Self::search_sql(filter);
        let mut q = sqlx::query_as(&sql);
        for a in &args {
            q = match a {
                Arg::Text(t) => q.bind(t.clone()),
                Arg::Int(i) => q.bind(*i),
            };
        }
        q.bind(i64::from(limit))
            .bind(offset.min(i64::MAX as u64) as i64)
            .fetch_all(&self.store.pool())
            .await
            .map_err(db)
    }

    /// The query of [`Self::search`]: its `LIMIT` and `OFFSET` are the last
    /// two parameters.
    fn search_sql(filter: &AuditFilter) -> (String, Vec<Arg>) {
        let (cond, args) = filter.condition();
        let n = args.len();
        let sql = format!(
            "SELECT seq, at_us, actor, role, action, subject, reason, outcome, prev_hash, hash FROM audit_log \
             WHERE {cond} ORDER BY seq DESC LIMIT ${} OFFSET ${}",
            n + 1,
            n + 2
        );
        (sql, args)
    }

    /// The database's plan for the first page of [`Self::search`] (one line
    /// per step): for the test that the filters use their indexes.
    #[doc(hidden)]
    pub async fn search_plan(&self, filter: &AuditFilter, limit: u32) -> Result<Vec<String>, StoreError> {
        use sqlx::Row;
        let (sql, args) = Self::search_sql(filter);
        let (explain, column) = if self.store.sqlite {
            ("EXPLAIN QUERY PLAN", "detail")
        } else {
            ("EXPLAIN", "QUERY PLAN")
        };
        let sql = format!("{explain} {sql}");
        let mut q = sqlx::query(&sql);
        for a in &args {
            q = match a {
                Arg::Text(t) => q.bind(t.clone()),
                Arg::Int(i) => q.bind(*i),
            };
        }
        let rows = q
            .bind(i64::from(limit))
            .bind(0i64)
            .fetch_all(&self.store.pool())
            .await
            .map_err(db)?;
        rows.iter()
            .map(|r| r.try_get::<String, _>(column).map_err(db))
            .collect()
    }

    /// How many entries `filter` selects.
    pub async fn count(&self, filter: &AuditFilter) -> Result<u64, StoreError> {
        let (cond, args) = filter.condition();
        if args.is_empty() {
            // The whole log: the chain numbers its entries 1, 2, … without
            // gaps (a gap is a deletion `Audit::verify` reports), so the
            // newest seq is the count, without counting millions of rows.
            let last: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) AS s FROM audit_log")
                .fetch_one(&self.store.pool())
                .await
                .map_err(db)?;
            return Ok(last.unwrap_or(0).max(0) as u64);
        }
        let sql = format!("SELECT COUNT(*) AS n FROM audit_log WHERE {cond}");
        let mut q = sqlx::query_scalar::<_, i64>(&sql);
        for a in &args {
            q = match a {
                Arg::Text(t) => q.bind(t.clone()),
                Arg::Int(i) => q.bind(*i),
            };
        }
        let n = q.fetch_one(&self.store.pool()).await.map_err(db)?;
        Ok(n.max(0) as u64)
    }

    /// The entries of one `action` on one `subject`, oldest first (a call's
    /// disclosures for the data-subject export).
    pub async fn about(&self, subject: &str, action: &str) -> Result<Vec<AuditEntry>, StoreError> {
        sqlx::query_as(
            "SELECT seq, at_us, actor, role, action, subject, reason, outcome, prev_hash, hash FROM audit_log \
             WHERE subject = $1 AND action = $2 ORDER BY seq",
        )
        .bind(subject)
        .bind(action)
        .fetch_all(&self.store.pool())
        .await
        .map_err(db)
    }

    /// The newest entry, if any.
    pub async fn tail(&self) -> Result<Option<AuditEntry>, StoreError> {
        let last: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) AS s FROM audit_log")
            .fetch_one(&self.store.pool())
            .await
            .map_err(db)?;
        let Some(last) = last else {
            return Ok(None);
        };
        Ok(self.entries(last as u64, 1).await?.into_iter().next())
    }

    pub async fn add_signing_key(&self, k: &SigningKeyRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_signing_keys (key_id, kek_id, sealed, public_key, created_at_us) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(k.key_id.as_str())
        .bind(k.kek_id.as_str())
        .bind(k.sealed.clone())
        .bind(k.public_key.clone())
        .bind(k.created_at_us)
        .execute(&self.store.pool())
        .await
        .map_err(db)?;
        Ok(())
    }

    /// Every signing key, oldest first.
    pub async fn signing_keys(&self) -> Result<Vec<SigningKeyRow>, StoreError> {
        sqlx::query_as(
            "SELECT key_id, kek_id, sealed, public_key, created_at_us FROM audit_signing_keys ORDER BY created_at_us, key_id",
        )
        .fetch_all(&self.store.pool())
        .await
        .map_err(db)
    }

    /// Stores a checkpoint (idempotent for the same seq).
    pub async fn add_checkpoint(&self, c: &StoredCheckpoint) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_checkpoints (seq, hash, at_us, key_id, signature) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (seq) DO NOTHING",
        )
        .bind(c.seq as i64)
        .bind(c.hash.clone())
        .bind(c.at_us)
        .bind(c.key_id.as_str())
        .bind(c.signature.clone())
        .execute(&self.store.pool())
        .await
        .map_err(db)?;
        Ok(())
    }

    /// Every checkpoint, by seq.
    pub async fn checkpoints(&self) -> Result<Vec<StoredCheckpoint>, StoreError> {
        sqlx::query_as("SELECT seq, hash, at_us, key_id, signature FROM audit_checkpoints ORDER BY seq")
            .fetch_all(&self.store.pool())
            .await
            .map_err(db)
    }
}
