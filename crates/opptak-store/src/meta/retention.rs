//! Retention: the policy's decision for every artifact, the sweeper's due
//! list and the deletions it records (shredding a class's last key), legal
//! holds with their two-step release, authorities' extensions and
//! compliance officers' reclassifications.

use super::keys::shred_in_tx;
use super::model::{DeletionRow, ExtensionRow, HoldRow, ReclassRow, RetentionRow};
use super::{db, read, SqlStore, Tx};
use crate::StoreError;
use opptak_domain::model::CallId;

const RETENTION_SELECT: &str = "SELECT artifact_id, call_id, kind, class, tier, location, expires_at_us, held, rules, \
    decided_at_us, deleted_at_us FROM retention";

const HOLD_SELECT: &str = "SELECT hold_id, call_id, case_ref, reason, placed_by, placed_at_us, release_requested_by, \
    release_requested_at_us, released_by, released_at_us FROM holds";

pub(super) async fn upsert_retention(tx: &mut Tx<'_>, r: &RetentionRow) -> Result<(), StoreError> {
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

impl SqlStore {
    pub(super) async fn put_retention(&self, rows: &[RetentionRow]) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        for r in rows {
            upsert_retention(&mut tx, r).await?;
        }
        tx.commit().await.map_err(db)
    }

    pub(super) async fn retention_of(&self, call_id: &CallId) -> Result<Vec<RetentionRow>, StoreError> {
        sqlx::query_as(&format!("{RETENTION_SELECT} WHERE call_id = $1 ORDER BY artifact_id"))
            .bind(call_id.as_str())
            .fetch_all(&self.pool())
            .await
            .map_err(read("retention row"))
    }

    pub(super) async fn due(&self, now_us: i64, limit: u32) -> Result<Vec<RetentionRow>, StoreError> {
        sqlx::query_as(&format!(
            "{RETENTION_SELECT} WHERE deleted_at_us IS NULL AND held = 0 AND expires_at_us <= $1 \
             AND NOT EXISTS (SELECT 1 FROM holds h WHERE h.call_id = retention.call_id AND h.released_at_us IS NULL) \
             ORDER BY expires_at_us, artifact_id LIMIT $2"
        ))
        .bind(now_us)
        .bind(limit as i64)
        .fetch_all(&self.pool())
        .await
        .map_err(read("retention row"))
    }

    pub(super) async fn record_deletion(
        &self,
        row: &RetentionRow,
        at_us: i64,
    ) -> Result<Option<DeletionRow>, StoreError> {
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
        let live: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) AS n FROM retention WHERE call_id = $1 AND class = $2 AND deleted_at_us IS NULL",
        )
        .bind(row.call_id.as_str())
        .bind(row.class.as_str())
        .fetch_one(&mut *tx)
        .await
        .map_err(read("retention count"))?;
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
            if let Some(ev) =
                shred_in_tx(&mut tx, &call_id, &row.class, &reason, "retention-sweeper", at_us, true).await?
            {
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
        // The call's last artifact gone: its row keeps what the deletion
        // evidence needs (ids, times, desk, category), not whose call it was
        // nor which advisor took it (issue 16: both were kept for ever).
        let left: i64 =
            sqlx::query_scalar("SELECT COUNT(*) AS n FROM retention WHERE call_id = $1 AND deleted_at_us IS NULL")
                .bind(row.call_id.as_str())
                .fetch_one(&mut *tx)
                .await
                .map_err(read("retention count"))?;
        if left == 0 {
            // The KiNotice evidence goes with the recording it is kept with.
            sqlx::query(
                "UPDATE calls SET customer_ref = '', advisor_id = '', ki_notice_at_us = NULL, ki_notice_offset_us = NULL, \
                 ki_notice_method = NULL, ki_notice_announcement_id = NULL, ki_notice_by = NULL WHERE call_id = $1",
            )
            .bind(row.call_id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            // Who corrected the context goes too (the audit log keeps the change).
            sqlx::query("DELETE FROM call_contexts WHERE call_id = $1")
                .bind(row.call_id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        if d.key_shredded.is_some() {
            opptak_telemetry::metrics().key_operation(opptak_telemetry::KeyOp::Shred);
        }
        Ok(Some(d))
    }

    pub(super) async fn deletions(&self, call_id: Option<&CallId>) -> Result<Vec<DeletionRow>, StoreError> {
        sqlx::query_as(
            "SELECT artifact_id, call_id, kind, class, tier, rule, expired_at_us, deleted_at_us, key_shredded \
             FROM deletions WHERE $1 = '' OR call_id = $1 ORDER BY deleted_at_us, artifact_id",
        )
        .bind(call_id.map(|c| c.as_str()).unwrap_or(""))
        .fetch_all(&self.pool())
        .await
        .map_err(read("deletions row"))
    }

    pub(super) async fn place_hold(&self, h: &HoldRow) -> Result<(), StoreError> {
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
        .execute(&self.pool())
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn hold(&self, hold_id: &str) -> Result<HoldRow, StoreError> {
        sqlx::query_as(&format!("{HOLD_SELECT} WHERE hold_id = $1"))
            .bind(hold_id)
            .fetch_optional(&self.pool())
            .await
            .map_err(read("holds row"))?
            .ok_or_else(|| StoreError::NotFound(format!("hold {hold_id}")))
    }

    pub(super) async fn request_hold_release(
        &self,
        hold_id: &str,
        by: &str,
        at_us: i64,
    ) -> Result<HoldRow, StoreError> {
        let done = sqlx::query(
            "UPDATE holds SET release_requested_by = $1, release_requested_at_us = $2 \
             WHERE hold_id = $3 AND released_at_us IS NULL",
        )
        .bind(by)
        .bind(at_us)
        .bind(hold_id)
        .execute(&self.pool())
        .await
        .map_err(db)?
        .rows_affected();
        if done == 0 {
            return Err(StoreError::NotFound(format!("active hold {hold_id}")));
        }
        self.hold(hold_id).await
    }

    pub(super) async fn confirm_hold_release(
        &self,
        hold_id: &str,
        by: &str,
        at_us: i64,
    ) -> Result<HoldRow, StoreError> {
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
        .execute(&self.pool())
        .await
        .map_err(db)?;
        self.hold(hold_id).await
    }

    pub(super) async fn holds(&self, call_id: Option<&CallId>, active_only: bool) -> Result<Vec<HoldRow>, StoreError> {
        sqlx::query_as(&format!(
            "{HOLD_SELECT} WHERE ($1 = '' OR call_id = $1) AND ($2 = 0 OR released_at_us IS NULL) \
             ORDER BY placed_at_us, hold_id"
        ))
        .bind(call_id.map(|c| c.as_str()).unwrap_or(""))
        .bind(active_only as i64)
        .fetch_all(&self.pool())
        .await
        .map_err(read("holds row"))
    }

    pub(super) async fn set_extension(&self, e: &ExtensionRow) -> Result<(), StoreError> {
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
        .execute(&self.pool())
        .await
        .map_err(db)?;
        Ok(())
    }

    pub(super) async fn extension_of(&self, call_id: &CallId) -> Result<Option<ExtensionRow>, StoreError> {
        sqlx::query_as(
            "SELECT call_id, years, authority, case_ref, requested_by, at_us FROM extensions WHERE call_id = $1",
        )
        .bind(call_id.as_str())
        .fetch_optional(&self.pool())
        .await
        .map_err(read("extensions row"))
    }

    pub(super) async fn set_reclassification(&self, r: &ReclassRow) -> Result<(), StoreError> {
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
        .execute(&self.pool())
        .await
        .map_err(db)?;
        Ok(())
    }

    pub(super) async fn reclassification_of(&self, call_id: &CallId) -> Result<Option<ReclassRow>, StoreError> {
        sqlx::query_as(
            "SELECT call_id, service_category, by_officer, reason, at_us FROM reclassifications WHERE call_id = $1",
        )
        .bind(call_id.as_str())
        .fetch_optional(&self.pool())
        .await
        .map_err(read("reclassifications row"))
    }
}
