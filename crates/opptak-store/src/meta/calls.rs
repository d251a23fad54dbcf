//! Calls and their recordings' spool state: the flush that makes a
//! recorder's calls, segments, gaps, call updates (ends, KI opt-outs)
//! durable, and the reads of calls, segments and gaps.

use super::model::{
    CallEnd, CallRecord, CallUpdate, ContextRow, Flush, GapRow, NewCall, Objection, OptOut, SegmentRow, StoredKey,
};
use super::{artifacts::ObjectColumns, db, placeholders, read, Bigint, Flag, SqlStore, Tx, ROWS_PER_STATEMENT};
use crate::StoreError;
use opptak_domain::model::{
    AudioFormat, CallFacts, CallId, ChannelRole, Codec, Desk, Direction, KiNotice, KiNoticeMethod, ServiceCategory,
};
use opptak_domain::reassembly::Progress;

const CALL_SELECT: &str = "SELECT c.call_id, c.started_at_us, c.direction, c.customer_ref, c.advisor_id, c.desk, \
    c.service_category, c.ki_enabled, c.customer_informed, c.codec, c.sample_rate_hz, c.channel_roles, \
    c.next_sequence, c.frames, c.last_chunk_frames, c.duplicate_chunks, c.ended_at_us, c.end_reason, \
    c.last_sequence, c.ki_opt_out_at_us, c.ki_opt_out_by, c.ki_opt_out_offset_us, c.created_at_us, c.updated_at_us, \
    c.ki_notice_at_us, c.ki_notice_offset_us, c.ki_notice_method, c.ki_notice_announcement_id, c.ki_notice_by, \
    k.key_id, k.class, k.kek_id, k.sealed, k.destroyed_at_us AS key_destroyed_at_us, r.recording_id, r.blob_prefix, r.segments, r.complete, \
    r.object_path, r.object_bytes \
    FROM calls c JOIN recordings r ON r.call_id = c.call_id AND r.kind = 'recording' \
    JOIN data_keys k ON k.key_id = r.key_id";

/// A row of [`CALL_SELECT`]: a call with its recording and the recording's key.
#[derive(sqlx::FromRow)]
struct CallColumns {
    call_id: String,
    started_at_us: i64,
    direction: String,
    customer_ref: String,
    advisor_id: String,
    desk: String,
    service_category: String,
    #[sqlx(try_from = "Flag")]
    ki_enabled: bool,
    #[sqlx(try_from = "Flag")]
    customer_informed: bool,
    codec: String,
    #[sqlx(try_from = "Bigint")]
    sample_rate_hz: u32,
    channel_roles: String,
    #[sqlx(try_from = "Bigint")]
    next_sequence: u64,
    #[sqlx(try_from = "Bigint")]
    frames: u64,
    #[sqlx(try_from = "Bigint")]
    last_chunk_frames: u64,
    #[sqlx(try_from = "Bigint")]
    duplicate_chunks: u64,
    ended_at_us: Option<i64>,
    end_reason: Option<String>,
    last_sequence: Option<i64>,
    ki_opt_out_at_us: Option<i64>,
    ki_opt_out_by: Option<String>,
    ki_opt_out_offset_us: Option<i64>,
    #[sqlx(flatten)]
    notice: NoticeColumns,
    created_at_us: i64,
    updated_at_us: i64,
    #[sqlx(flatten)]
    key: StoredKey,
    key_destroyed_at_us: Option<i64>,
    recording_id: String,
    blob_prefix: String,
    #[sqlx(try_from = "Bigint")]
    segments: u64,
    #[sqlx(try_from = "Flag")]
    complete: bool,
    #[sqlx(flatten)]
    object: ObjectColumns,
}

/// The `KiNotice` evidence on a call's row (migration 0014).
#[derive(sqlx::FromRow)]
struct NoticeColumns {
    ki_notice_at_us: Option<i64>,
    ki_notice_offset_us: Option<i64>,
    ki_notice_method: Option<String>,
    ki_notice_announcement_id: Option<String>,
    ki_notice_by: Option<String>,
}

impl NoticeColumns {
    fn into_notice(self) -> Result<Option<KiNotice>, StoreError> {
        let Some(at_us) = self.ki_notice_at_us else {
            return Ok(None);
        };
        let method = self.ki_notice_method.unwrap_or_default();
        Ok(Some(KiNotice {
            at_us,
            offset_us: self.ki_notice_offset_us.unwrap_or(0).max(0) as u64,
            method: KiNoticeMethod::parse(&method)
                .ok_or_else(|| StoreError::Corrupt("calls.ki_notice_method".into()))?,
            announcement_id: self.ki_notice_announcement_id.unwrap_or_default(),
            by: self.ki_notice_by.unwrap_or_default(),
        }))
    }
}

impl TryFrom<CallColumns> for CallRecord {
    type Error = StoreError;

    /// The call's facts parsed; its progress without gaps (a table of their own).
    fn try_from(c: CallColumns) -> Result<Self, StoreError> {
        let bad = |what: &str| StoreError::Corrupt(format!("calls.{what}"));
        let call_id = CallId::parse(&c.call_id).map_err(|_| bad("call_id"))?;
        let codec = Codec::parse(&c.codec).ok_or_else(|| bad("codec"))?;
        let roles = c
            .channel_roles
            .split(',')
            .map(|s| ChannelRole::parse(s).ok_or_else(|| bad("channel_roles")))
            .collect::<Result<Vec<_>, _>>()?;
        let format = AudioFormat::stored(codec, c.sample_rate_hz, roles).map_err(|_| bad("format"))?;
        let facts = CallFacts {
            call_id,
            started_at_us: c.started_at_us,
            direction: Direction::parse(&c.direction).ok_or_else(|| bad("direction"))?,
            customer_ref: c.customer_ref,
            advisor_id: c.advisor_id,
            desk: Desk::parse(&c.desk).ok_or_else(|| bad("desk"))?,
            service_category: ServiceCategory::parse(&c.service_category).ok_or_else(|| bad("service_category"))?,
            ki_enabled: c.ki_enabled,
            customer_informed: c.customer_informed,
            format,
            ki_notice: c.notice.into_notice()?,
        };
        let end = c.ended_at_us.map(|ended_at_us| CallEnd {
            ended_at_us,
            reason: c.end_reason.unwrap_or_default(),
            last_sequence: c.last_sequence.map(|v| v as u64),
        });
        let opt_out = c.ki_opt_out_at_us.map(|at_us| OptOut {
            at_us,
            requested_by: c.ki_opt_out_by.unwrap_or_default(),
            offset_us: c.ki_opt_out_offset_us.unwrap_or(0) as u64,
        });
        Ok(CallRecord {
            facts,
            key: c.key,
            recording_id: c.recording_id,
            blob_prefix: c.blob_prefix,
            segments: c.segments,
            complete: c.complete,
            progress: Progress {
                next_sequence: c.next_sequence,
                frames: c.frames,
                gaps: Vec::new(),
                last_chunk_frames: c.last_chunk_frames,
                ended: end.is_some(),
            },
            duplicate_chunks: c.duplicate_chunks,
            end,
            opt_out,
            created_at_us: c.created_at_us,
            updated_at_us: c.updated_at_us,
            key_destroyed_at_us: c.key_destroyed_at_us,
            object: c.object.into_object(),
        })
    }
}

/// Call ids as stored in `table`, parsed.
pub(super) fn parse_call_ids(ids: &[String], table: &str) -> Result<Vec<CallId>, StoreError> {
    ids.iter()
        .map(|id| CallId::parse(id).map_err(|_| StoreError::Corrupt(format!("{table}.call_id"))))
        .collect()
}

impl SqlStore {
    pub(super) async fn apply(&self, f: &Flush) -> Result<(), StoreError> {
        if f.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        for rows in f.new_calls.chunks(ROWS_PER_STATEMENT) {
            insert_calls(&mut tx, rows).await?;
        }
        // An early KiNotice applied to its call now lives on the call's row.
        for c in f.new_calls.iter().filter(|c| c.facts.ki_notice.is_some()) {
            sqlx::query("DELETE FROM early_ki_notices WHERE call_id = $1")
                .bind(c.facts.call_id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        // Guarded updates first: a fenced writer fails before it writes anything.
        for rows in f.updates.chunks(ROWS_PER_STATEMENT) {
            update_calls(&mut tx, rows).await?;
        }
        // Multi-row statements: a flush of 2,000 calls is a handful of round
        // trips, not 6,000 (measured: 200 ms → see BENCHMARKS.md).
        for rows in f.segments.chunks(ROWS_PER_STATEMENT) {
            insert_segments(&mut tx, rows).await?;
        }
        for rows in f.gaps.chunks(ROWS_PER_STATEMENT) {
            insert_gaps(&mut tx, rows).await?;
        }
        tx.commit().await.map_err(db)
    }

    pub(super) async fn load_call(&self, call_id: &CallId) -> Result<Option<CallRecord>, StoreError> {
        let row: Option<CallColumns> = sqlx::query_as(&format!("{CALL_SELECT} WHERE c.call_id = $1"))
            .bind(call_id.as_str())
            .fetch_optional(&self.pool())
            .await
            .map_err(read("calls row"))?;
        let Some(row) = row else { return Ok(None) };
        let mut rec = CallRecord::try_from(row)?;
        rec.progress.gaps = self
            .gaps(&rec.recording_id)
            .await?
            .into_iter()
            .map(|g| (g.first_missing, g.missing))
            .collect();
        Ok(Some(rec))
    }

    pub(super) async fn list_calls(&self, limit: u32) -> Result<Vec<CallRecord>, StoreError> {
        let rows: Vec<CallColumns> = sqlx::query_as(&format!(
            "{CALL_SELECT} ORDER BY c.started_at_us DESC, c.call_id LIMIT $1"
        ))
        .bind(limit as i64)
        .fetch_all(&self.pool())
        .await
        .map_err(read("calls row"))?;
        rows.into_iter().map(CallRecord::try_from).collect()
    }

    pub(super) async fn segments(&self, recording_id: &str) -> Result<Vec<SegmentRow>, StoreError> {
        sqlx::query_as(
            "SELECT recording_id, idx, blob_path, blob_offset, first_frame, frames, sealed_bytes, final_segment \
             FROM segments WHERE recording_id = $1 ORDER BY idx",
        )
        .bind(recording_id)
        .fetch_all(&self.pool())
        .await
        .map_err(read("segments row"))
    }

    pub(super) async fn gaps(&self, recording_id: &str) -> Result<Vec<GapRow>, StoreError> {
        sqlx::query_as(
            "SELECT recording_id, first_missing, missing, at_frame, frames FROM gaps \
             WHERE recording_id = $1 ORDER BY first_missing",
        )
        .bind(recording_id)
        .fetch_all(&self.pool())
        .await
        .map_err(read("gaps row"))
    }

    pub(super) async fn idle_calls(
        &self,
        updated_before_us: i64,
        limit: u32,
    ) -> Result<Vec<(CallId, i64)>, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT c.call_id, c.updated_at_us FROM calls c \
             JOIN recordings r ON r.call_id = c.call_id AND r.kind = 'recording' \
             JOIN data_keys k ON k.key_id = r.key_id \
             WHERE c.ended_at_us IS NULL AND c.updated_at_us < $1 AND r.complete = 0 \
             AND k.destroyed_at_us IS NULL ORDER BY c.updated_at_us LIMIT $2",
        )
        .bind(updated_before_us)
        .bind(limit as i64)
        .fetch_all(&self.pool())
        .await
        .map_err(read("calls row"))?;
        let (ids, times): (Vec<String>, Vec<i64>) = rows.into_iter().unzip();
        Ok(parse_call_ids(&ids, "calls")?.into_iter().zip(times).collect())
    }

    pub(super) async fn call_ids(&self, after: &str, limit: u32) -> Result<Vec<CallId>, StoreError> {
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT call_id FROM calls WHERE call_id > $1 ORDER BY call_id LIMIT $2")
                .bind(after)
                .bind(limit as i64)
                .fetch_all(&self.pool())
                .await
                .map_err(read("calls row"))?;
        parse_call_ids(&ids, "calls")
    }

    pub(super) async fn calls_of_customer(&self, customer_ref: &str) -> Result<Vec<CallId>, StoreError> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT call_id FROM calls WHERE customer_ref = $1 AND medium = 'call' ORDER BY started_at_us, call_id",
        )
        .bind(customer_ref)
        .fetch_all(&self.pool())
        .await
        .map_err(read("calls row"))?;
        parse_call_ids(&ids, "calls")
    }
}

/// New calls, with their data keys and recordings.
async fn insert_calls(tx: &mut Tx<'_>, rows: &[NewCall]) -> Result<(), StoreError> {
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
    q.execute(&mut **tx).await.map_err(db)?;
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
    q.execute(&mut **tx).await.map_err(db)?;
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
            .execute(&mut **tx)
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
    q.execute(&mut **tx).await.map_err(db)?;
    Ok(())
}

/// Call updates; `Conflict` (and nothing written) when a recording was
/// changed by another writer or had its key shredded.
async fn update_calls(tx: &mut Tx<'_>, rows: &[CallUpdate]) -> Result<(), StoreError> {
    // A CTE with a column list: portable between PostgreSQL and SQLite
    // (SQLite's VALUES cannot be aliased with column names otherwise).
    let sql = format!(
        "WITH v (call_id, next_sequence, frames, last_chunk_frames, duplicate_chunks, state, ended_at_us, \
         end_reason, last_sequence, ki_opt_out_at_us, ki_opt_out_by, ki_opt_out_offset_us, updated_at_us, \
         ki_notice_at_us, ki_notice_offset_us, ki_notice_method, ki_notice_announcement_id, ki_notice_by) \
         AS (VALUES {}) \
         UPDATE calls SET next_sequence = v.next_sequence, frames = v.frames, \
         last_chunk_frames = v.last_chunk_frames, duplicate_chunks = v.duplicate_chunks, state = v.state, \
         ended_at_us = v.ended_at_us, end_reason = v.end_reason, last_sequence = v.last_sequence, \
         ki_opt_out_at_us = v.ki_opt_out_at_us, ki_opt_out_by = v.ki_opt_out_by, \
         ki_opt_out_offset_us = v.ki_opt_out_offset_us, updated_at_us = v.updated_at_us, \
         ki_notice_at_us = v.ki_notice_at_us, ki_notice_offset_us = v.ki_notice_offset_us, \
         ki_notice_method = v.ki_notice_method, ki_notice_announcement_id = v.ki_notice_announcement_id, \
         ki_notice_by = v.ki_notice_by \
         FROM v WHERE calls.call_id = v.call_id",
        placeholders(rows.len(), 18)
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
            .bind(u.updated_at_us)
            .bind(u.ki_notice.as_ref().map(|n| n.at_us))
            .bind(u.ki_notice.as_ref().map(|n| n.offset_us as i64))
            .bind(u.ki_notice.as_ref().map(|n| n.method.as_str().to_owned()))
            .bind(u.ki_notice.as_ref().map(|n| n.announcement_id.clone()))
            .bind(u.ki_notice.as_ref().map(|n| n.by.clone()));
    }
    q.execute(&mut **tx).await.map_err(db)?;
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
    let done = q.execute(&mut **tx).await.map_err(db)?.rows_affected();
    if done != rows.len() as u64 {
        // Dropping the transaction rolls everything back.
        return Err(StoreError::Conflict(format!(
            "{} of {} recordings were changed by another writer or had their key shredded",
            rows.len() as u64 - done,
            rows.len()
        )));
    }
    Ok(())
}

async fn insert_segments(tx: &mut Tx<'_>, rows: &[SegmentRow]) -> Result<(), StoreError> {
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
    q.execute(&mut **tx).await.map_err(db)?;
    Ok(())
}

async fn insert_gaps(tx: &mut Tx<'_>, rows: &[GapRow]) -> Result<(), StoreError> {
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
    q.execute(&mut **tx).await.map_err(db)?;
    Ok(())
}

/// A CTI system's `CallContext` (issue 19).
impl SqlStore {
    pub(super) async fn apply_call_context(&self, row: &ContextRow, after: &CallFacts) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let fresh = sqlx::query(
            "INSERT INTO call_contexts (call_id, digest, by_actor, at_us, received_at_us) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (call_id, digest) DO NOTHING",
        )
        .bind(row.call_id.as_str())
        .bind(row.digest.as_str())
        .bind(row.by_actor.as_str())
        .bind(row.at_us)
        .bind(row.received_at_us)
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected()
            == 1;
        if !fresh {
            return Ok(false);
        }
        sqlx::query("UPDATE calls SET desk = $1, advisor_id = $2, customer_ref = $3 WHERE call_id = $4")
            .bind(after.desk.as_str())
            .bind(after.advisor_id.as_str())
            .bind(after.customer_ref.as_str())
            .bind(row.call_id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(true)
    }

    pub(super) async fn call_contexts(&self, call_id: &CallId) -> Result<Vec<ContextRow>, StoreError> {
        sqlx::query_as(
            "SELECT call_id, digest, by_actor, at_us, received_at_us FROM call_contexts \
             WHERE call_id = $1 ORDER BY received_at_us, digest",
        )
        .bind(call_id.as_str())
        .fetch_all(&self.pool())
        .await
        .map_err(read("call_contexts row"))
    }
}

/// KI opt-outs that came before their call started (issue 16, section 8).
impl SqlStore {
    pub(super) async fn keep_early_opt_out(
        &self,
        call_id: &CallId,
        o: &OptOut,
        received_at_us: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO early_opt_outs (call_id, at_us, requested_by, received_at_us) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (call_id) DO NOTHING",
        )
        .bind(call_id.as_str())
        .bind(o.at_us)
        .bind(o.requested_by.as_str())
        .bind(received_at_us)
        .execute(&self.pool())
        .await
        .map_err(db)?;
        Ok(())
    }

    pub(super) async fn early_opt_out(&self, call_id: &CallId) -> Result<Option<OptOut>, StoreError> {
        let row: Option<(i64, String)> =
            sqlx::query_as("SELECT at_us, requested_by FROM early_opt_outs WHERE call_id = $1")
                .bind(call_id.as_str())
                .fetch_optional(&self.pool())
                .await
                .map_err(read("early_opt_outs row"))?;
        Ok(row.map(|(at_us, requested_by)| OptOut {
            at_us,
            requested_by,
            offset_us: 0,
        }))
    }

    pub(super) async fn keep_early_ki_notice(
        &self,
        call_id: &CallId,
        n: &KiNotice,
        received_at_us: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO early_ki_notices (call_id, at_us, offset_us, method, announcement_id, by_advisor, \
             received_at_us) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (call_id) DO NOTHING",
        )
        .bind(call_id.as_str())
        .bind(n.at_us)
        .bind(n.offset_us as i64)
        .bind(n.method.as_str())
        .bind(n.announcement_id.as_str())
        .bind(n.by.as_str())
        .bind(received_at_us)
        .execute(&self.pool())
        .await
        .map_err(db)?;
        Ok(())
    }

    pub(super) async fn early_ki_notice(&self, call_id: &CallId) -> Result<Option<KiNotice>, StoreError> {
        let row: Option<NoticeColumns> = sqlx::query_as(
            "SELECT at_us AS ki_notice_at_us, offset_us AS ki_notice_offset_us, method AS ki_notice_method, \
             announcement_id AS ki_notice_announcement_id, by_advisor AS ki_notice_by \
             FROM early_ki_notices WHERE call_id = $1",
        )
        .bind(call_id.as_str())
        .fetch_optional(&self.pool())
        .await
        .map_err(read("early_ki_notices row"))?;
        match row {
            Some(r) => r.into_notice(),
            None => Ok(None),
        }
    }

    pub(super) async fn record_objection(&self, o: &Objection) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO customer_objections (customer_ref, kind, at_us, recorded_by, reason) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (customer_ref, kind) DO NOTHING",
        )
        .bind(o.customer_ref.as_str())
        .bind(o.kind.as_str())
        .bind(o.at_us)
        .bind(o.recorded_by.as_str())
        .bind(o.reason.as_str())
        .execute(&self.pool())
        .await
        .map_err(db)?;
        Ok(())
    }

    pub(super) async fn objections(&self, customer_ref: &str) -> Result<Vec<Objection>, StoreError> {
        sqlx::query_as(
            "SELECT customer_ref, kind, at_us, recorded_by, reason FROM customer_objections \
             WHERE customer_ref = $1 ORDER BY kind",
        )
        .bind(customer_ref)
        .fetch_all(&self.pool())
        .await
        .map_err(read("customer_objections row"))
    }
}
