//! Review versions of a call's summary (issue 6): rows only; sealing and
//! rules live in `src/review.rs`.

use crate::meta::{db, Bigint, SqlStore};
use crate::StoreError;

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct VersionRow {
    pub call_id: String,
    #[sqlx(try_from = "Bigint")]
    pub version: u64,
    /// `edit`, `approved` or `rejected`.
    pub kind: String,
    pub author: String,
    pub at_us: i64,
    pub key_id: String,
    /// Format v2 under the key `key_id`.
    pub sealed: Vec<u8>,
}

pub struct SqlReview {
    store: SqlStore,
}

impl SqlReview {
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Ok(Self {
            store: SqlStore::open(url).await?,
        })
    }

    /// Adds a version; `Conflict` when that version number is taken (another
    /// decision came first).
    pub async fn add(&self, v: &VersionRow) -> Result<(), StoreError> {
        let r = sqlx::query(
            "INSERT INTO review_versions (call_id, version, kind, author, at_us, key_id, sealed) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (call_id, version) DO NOTHING",
        )
        .bind(v.call_id.as_str())
        .bind(v.version as i64)
        .bind(v.kind.as_str())
        .bind(v.author.as_str())
        .bind(v.at_us)
        .bind(v.key_id.as_str())
        .bind(v.sealed.clone())
        .execute(&self.store.pool())
        .await
        .map_err(db)?;
        if r.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "version {} of {} exists",
                v.version, v.call_id
            )));
        }
        Ok(())
    }

    /// A call's versions, oldest first.
    /// Takes back a version whose decision could not be completed (an
    /// approval whose record failed): the draft is open again.
    pub async fn remove(&self, call_id: &str, version: u64) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM review_versions WHERE call_id = $1 AND version = $2")
            .bind(call_id)
            .bind(version as i64)
            .execute(&self.store.pool())
            .await
            .map_err(db)?;
        Ok(())
    }

    pub async fn versions(&self, call_id: &str) -> Result<Vec<VersionRow>, StoreError> {
        sqlx::query_as(
            "SELECT call_id, version, kind, author, at_us, key_id, sealed FROM review_versions \
             WHERE call_id = $1 ORDER BY version",
        )
        .bind(call_id)
        .fetch_all(&self.store.pool())
        .await
        .map_err(db)
    }
}
