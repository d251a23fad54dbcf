//! Wrapped data keys: per call and retention class, the dead-letter key of
//! a day, crypto-shredding with its evidence, and what KEK rotation needs
//! (counts per KEK, keys not yet under a KEK, rewrapping).

use super::model::{KeyRow, KeyUnder, ShredEvidence, StoredKey};
use super::{db, read, SqlStore, Tx};
use crate::StoreError;
use opptak_domain::model::{CallId, KeyClass};

/// A key with its owner: a call id, or `deadletters-<day>`.
#[derive(sqlx::FromRow)]
struct Owned<K> {
    owner: String,
    #[sqlx(flatten)]
    key: K,
}

impl<K> From<Owned<K>> for (String, K) {
    fn from(o: Owned<K>) -> Self {
        (o.owner, o.key)
    }
}

/// A row with its creation time.
#[derive(sqlx::FromRow)]
struct Created<K> {
    #[sqlx(flatten)]
    key: K,
    created_at_us: i64,
}

const EVIDENCE_SELECT: &str =
    "SELECT key_id, call_id, class, kek_id, shredded_at_us, reason, requested_by FROM key_shreddings";

impl SqlStore {
    pub(super) async fn key_counts(&self) -> Result<Vec<(String, String, u64)>, StoreError> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT kek_id, class, COUNT(*) AS n FROM (SELECT kek_id, class FROM data_keys \
             WHERE destroyed_at_us IS NULL UNION ALL SELECT kek_id, 'deadletters' AS class FROM deadletter_keys \
             WHERE destroyed_at_us IS NULL) live GROUP BY kek_id, class ORDER BY kek_id, class",
        )
        .fetch_all(&self.pool())
        .await
        .map_err(read("data_keys count"))?;
        Ok(rows.into_iter().map(|(kek, class, n)| (kek, class, n as u64)).collect())
    }

    pub(super) async fn keys_under(&self, kek_id: &str, limit: u32) -> Result<Vec<KeyUnder>, StoreError> {
        let rows: Vec<Owned<Created<StoredKey>>> = sqlx::query_as(
            "SELECT owner, key_id, class, kek_id, sealed, created_at_us FROM (\
             SELECT call_id AS owner, key_id, class, kek_id, sealed, created_at_us FROM data_keys \
             WHERE kek_id = $1 AND destroyed_at_us IS NULL \
             UNION ALL SELECT 'deadletters-' || day AS owner, key_id, class, kek_id, sealed, created_at_us \
             FROM deadletter_keys WHERE kek_id = $1 AND destroyed_at_us IS NULL) live ORDER BY key_id LIMIT $2",
        )
        .bind(kek_id)
        .bind(limit as i64)
        .fetch_all(&self.pool())
        .await
        .map_err(read("data_keys row"))?;
        Ok(rows
            .into_iter()
            .map(|o| KeyUnder {
                owner: o.owner,
                key: o.key.key,
                created_at_us: o.key.created_at_us,
            })
            .collect())
    }

    pub(super) async fn rewrap(&self, keys: &[(String, StoredKey)]) -> Result<u64, StoreError> {
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

    pub(super) async fn shred_key(
        &self,
        call_id: &CallId,
        class: &str,
        reason: &str,
        requested_by: &str,
        at_us: i64,
    ) -> Result<ShredEvidence, StoreError> {
        let mut tx = self.begin().await?;
        let ev = shred_in_tx(&mut tx, call_id, class, reason, requested_by, at_us, false)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("live {class} key of call {call_id}")))?;
        tx.commit().await.map_err(db)?;
        opptak_telemetry::metrics().key_operation(opptak_telemetry::KeyOp::Shred);
        Ok(ev)
    }

    pub(super) async fn scrub_shredded(&self) -> Result<(), StoreError> {
        if self.sqlite {
            // The old page images stay in the WAL until it is checkpointed and
            // truncated. A reader in the middle of a transaction can keep the
            // checkpoint from finishing (`busy`): then the next scrub finishes it.
            let (busy, _, _): (i32, i32, i32) = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
                .fetch_one(&self.pool())
                .await
                .map_err(db)?;
            if busy != 0 {
                tracing::warn!("WAL checkpoint after a shredding was blocked by a reader; the next one completes it");
            }
        } else {
            sqlx::query("VACUUM data_keys")
                .execute(&self.pool())
                .await
                .map_err(db)?;
        }
        Ok(())
    }

    pub(super) async fn shreddings(&self, call_id: Option<&CallId>) -> Result<Vec<ShredEvidence>, StoreError> {
        sqlx::query_as(&format!(
            "{EVIDENCE_SELECT} WHERE $1 = '' OR call_id = $1 ORDER BY shredded_at_us, key_id"
        ))
        .bind(call_id.map(|c| c.as_str()).unwrap_or(""))
        .fetch_all(&self.pool())
        .await
        .map_err(read("key_shreddings row"))
    }

    pub(super) async fn shreddings_since(&self, since_us: i64) -> Result<Vec<ShredEvidence>, StoreError> {
        sqlx::query_as(&format!(
            "{EVIDENCE_SELECT} WHERE shredded_at_us >= $1 ORDER BY shredded_at_us, key_id"
        ))
        .bind(since_us)
        .fetch_all(&self.pool())
        .await
        .map_err(read("key_shreddings row"))
    }

    pub(super) async fn class_key(&self, call_id: &CallId, class: &str) -> Result<Option<KeyRow>, StoreError> {
        sqlx::query_as(
            "SELECT key_id, class, kek_id, sealed, destroyed_at_us FROM data_keys WHERE call_id = $1 AND class = $2",
        )
        .bind(call_id.as_str())
        .bind(class)
        .fetch_optional(&self.pool())
        .await
        .map_err(read("data_keys row"))
    }

    pub(super) async fn create_key(&self, call_id: &CallId, key: &StoredKey, at_us: i64) -> Result<KeyRow, StoreError> {
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
        .execute(&self.pool())
        .await
        .map_err(db)?;
        self.class_key(call_id, &key.class)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("{} key of call {call_id} vanished", key.class)))
    }

    pub(super) async fn key_by_id(&self, key_id: &str) -> Result<Option<(String, KeyRow)>, StoreError> {
        let row: Option<Owned<KeyRow>> = sqlx::query_as(
            "SELECT call_id AS owner, key_id, class, kek_id, sealed, destroyed_at_us FROM data_keys WHERE key_id = $1 \
             UNION ALL SELECT 'deadletters-' || day AS owner, key_id, class, kek_id, sealed, destroyed_at_us \
             FROM deadletter_keys WHERE key_id = $1",
        )
        .bind(key_id)
        .fetch_optional(&self.pool())
        .await
        .map_err(read("data_keys row"))?;
        Ok(row.map(Into::into))
    }

    pub(super) async fn deadletter_key(&self, day: &str, key: &StoredKey, at_us: i64) -> Result<KeyRow, StoreError> {
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
        .execute(&self.pool())
        .await
        .map_err(db)?;
        sqlx::query_as("SELECT key_id, class, kek_id, sealed, destroyed_at_us FROM deadletter_keys WHERE day = $1")
            .bind(day)
            .fetch_one(&self.pool())
            .await
            .map_err(read("deadletter_keys row"))
    }
}

/// Shreds a call's live key of `class` inside a transaction: the wrapped key
/// overwritten with nothing and marked destroyed, the evidence written.
/// `None` if there is no live key of that class. The `ki` key takes the
/// call's per-call reporting rows with it (`chat-analysis-1y` a conversation's); `expired` (the retention sweep,
/// not an opt-out, erasure or manual shred) first adds the call to the
/// dashboard's per-day counts.
pub(super) async fn shred_in_tx(
    tx: &mut Tx<'_>,
    call_id: &CallId,
    class: &str,
    reason: &str,
    requested_by: &str,
    at_us: i64,
    expired: bool,
) -> Result<Option<ShredEvidence>, StoreError> {
    let row: Option<(String, String)> = sqlx::query_as(
        "SELECT key_id, kek_id FROM data_keys WHERE call_id = $1 AND class = $2 AND destroyed_at_us IS NULL",
    )
    .bind(call_id.as_str())
    .bind(class)
    .fetch_optional(&mut **tx)
    .await
    .map_err(read("data_keys row"))?;
    let Some((key_id, kek_id)) = row else { return Ok(None) };
    let ev = ShredEvidence {
        key_id,
        call_id: call_id.to_string(),
        class: class.to_owned(),
        kek_id,
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
    if class == KeyClass::Ki.as_str() || class == KeyClass::ChatAnalysis1y.as_str() {
        forget_ki_rows(tx, call_id, expired).await?;
    }
    Ok(Some(ev))
}

/// The call's per-call reporting rows are KI data: they go with its `ki` key
/// (expiry, opt-out, erasure), in the shredding's transaction; a
/// conversation's with its `chat-analysis-1y` key (expiry, the customer's
/// objection, erasure). One whose KI data `expired` (and that did not opt
/// out) stays counted in the dashboard's per-day aggregates
/// (`topic_counts`), which name no call.
async fn forget_ki_rows(tx: &mut Tx<'_>, call_id: &CallId, expired: bool) -> Result<(), StoreError> {
    if expired {
        sqlx::query(
            "INSERT INTO topic_counts (day, desk, channel, topic, calls) \
         SELECT t.day, t.desk, t.channel, t.topic, 1 FROM call_topics t \
         JOIN calls c ON c.call_id = t.call_id AND c.ki_opt_out_at_us IS NULL WHERE t.call_id = $1 \
         ON CONFLICT (day, desk, channel, topic) DO UPDATE SET calls = topic_counts.calls + excluded.calls",
        )
        .bind(call_id.as_str())
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    }
    for table in ["qa_screenings", "qa_reviews", "qa_samples", "call_topics", "ki_calls"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE call_id = $1"))
            .bind(call_id.as_str())
            .execute(&mut **tx)
            .await
            .map_err(db)?;
    }
    Ok(())
}
