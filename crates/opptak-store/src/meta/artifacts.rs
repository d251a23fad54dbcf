//! Artifacts of calls: the recording and its copies under other retention
//! classes, the format-v2 objects they are compacted into, further
//! artifacts (transcripts, drafts), and which spool objects segments still
//! point to.

use super::calls::parse_call_ids;
use super::model::{ArtifactRow, Compacted, KeyRow, StoredObject};
use super::retention::upsert_retention;
use super::{db, read, Flag, SqlStore, ROWS_PER_STATEMENT};
use crate::StoreError;
use opptak_domain::model::CallId;
use std::collections::HashSet;

/// A recording's format-v2 object columns: both set once it was compacted.
#[derive(sqlx::FromRow)]
pub(super) struct ObjectColumns {
    object_path: Option<String>,
    object_bytes: Option<i64>,
}

impl ObjectColumns {
    pub(super) fn into_object(self) -> Option<StoredObject> {
        match (self.object_path, self.object_bytes) {
            (Some(path), Some(bytes)) => Some(StoredObject {
                path,
                bytes: bytes as u64,
            }),
            _ => None,
        }
    }
}

/// A `recordings` row with its data key.
#[derive(sqlx::FromRow)]
struct ArtifactColumns {
    recording_id: String,
    call_id: String,
    kind: String,
    #[sqlx(flatten)]
    key: KeyRow,
    #[sqlx(try_from = "Flag")]
    complete: bool,
    #[sqlx(flatten)]
    object: ObjectColumns,
}

impl From<ArtifactColumns> for ArtifactRow {
    fn from(a: ArtifactColumns) -> Self {
        ArtifactRow {
            artifact_id: a.recording_id,
            call_id: a.call_id,
            kind: a.kind,
            key: a.key,
            complete: a.complete,
            object: a.object.into_object(),
        }
    }
}

impl SqlStore {
    pub(super) async fn artifacts(&self, call_id: &CallId) -> Result<Vec<ArtifactRow>, StoreError> {
        let rows: Vec<ArtifactColumns> = sqlx::query_as(
            "SELECT r.recording_id, r.call_id, r.kind, r.complete, r.object_path, r.object_bytes, \
             k.key_id, k.class, k.kek_id, k.sealed, k.destroyed_at_us \
             FROM recordings r JOIN data_keys k ON k.key_id = r.key_id WHERE r.call_id = $1 \
             ORDER BY r.created_at_us, r.recording_id",
        )
        .bind(call_id.as_str())
        .fetch_all(&self.pool())
        .await
        .map_err(read("recordings row"))?;
        Ok(rows.into_iter().map(ArtifactRow::from).collect())
    }

    pub(super) async fn to_compact(&self, completed_before_us: i64, limit: u32) -> Result<Vec<CallId>, StoreError> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT r.call_id FROM recordings r JOIN data_keys k ON k.key_id = r.key_id \
             WHERE r.kind = 'recording' AND r.complete = 1 AND r.object_path IS NULL \
             AND k.destroyed_at_us IS NULL AND r.completed_at_us < $1 ORDER BY r.completed_at_us LIMIT $2",
        )
        .bind(completed_before_us)
        .bind(limit as i64)
        .fetch_all(&self.pool())
        .await
        .map_err(read("recordings row"))?;
        parse_call_ids(&ids, "recordings")
    }

    pub(super) async fn store_compacted(&self, c: &Compacted) -> Result<(), StoreError> {
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

    pub(super) async fn add_artifact(
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
        .execute(&self.pool())
        .await
        .map_err(db)?;
        Ok(())
    }

    /// Replaces the call's artifact of `kind` with a new object under a new
    /// id (an amended approved summary): the artifact row and its retention
    /// row move to the new id and object in one transaction, so the
    /// retention clock, hold and rules stay as they were. Returns the old
    /// object's path for the caller to delete; `NotFound` when the call has
    /// no artifact of that kind, `Conflict` when it changed meanwhile.
    pub(super) async fn replace_artifact(
        &self,
        call_id: &CallId,
        kind: &str,
        old_id: &str,
        new_id: &str,
        object: &StoredObject,
        at_us: i64,
    ) -> Result<Option<String>, StoreError> {
        let mut tx = self.begin().await?;
        let old: Option<Option<String>> =
            sqlx::query_scalar("SELECT object_path FROM recordings WHERE call_id = $1 AND kind = $2")
                .bind(call_id.as_str())
                .bind(kind)
                .fetch_optional(&mut *tx)
                .await
                .map_err(read("recordings"))?;
        let Some(old_path) = old else {
            return Err(StoreError::NotFound(format!("{kind} of call {call_id}")));
        };
        let n = sqlx::query(
            "UPDATE recordings SET recording_id = $1, object_path = $2, blob_prefix = $2, object_bytes = $3, \
             completed_at_us = $4, compacted_at_us = $4 WHERE call_id = $5 AND kind = $6 AND recording_id = $7",
        )
        .bind(new_id)
        .bind(object.path.as_str())
        .bind(object.bytes as i64)
        .bind(at_us)
        .bind(call_id.as_str())
        .bind(kind)
        .bind(old_id)
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected();
        if n == 0 {
            return Err(StoreError::Conflict(format!(
                "the {kind} of call {call_id} changed meanwhile"
            )));
        }
        sqlx::query("UPDATE retention SET artifact_id = $1, location = $2 WHERE artifact_id = $3")
            .bind(new_id)
            .bind(object.path.as_str())
            .bind(old_id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(old_path)
    }

    pub(super) async fn spool_referenced(&self, paths: &[String]) -> Result<HashSet<String>, StoreError> {
        let mut out = HashSet::new();
        for chunk in paths.chunks(ROWS_PER_STATEMENT) {
            let list = (1..=chunk.len())
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!("SELECT DISTINCT blob_path FROM segments WHERE blob_path IN ({list})");
            let mut q = sqlx::query_scalar(&sql);
            for p in chunk {
                q = q.bind(p.as_str());
            }
            out.extend(q.fetch_all(&self.pool()).await.map_err(read("segments"))?);
        }
        Ok(out)
    }
}
