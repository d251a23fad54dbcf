//! The call search of compliance and QA (issue 18) and what it keeps per
//! web session: saved searches (the filters, customer reference included,
//! behind an id) and the reasons stated for reading a call or conversation.
//! Rows only; who may search and read lives in `opptak-review`'s web layer.
//! Tables and indexes from migration 0020.

use crate::meta::{db, SqlStore};
use crate::StoreError;

/// The most results a search counts: past it the page says "more than".
/// Keeps every search's cost bounded, whatever its filters.
pub const COUNT_CAP: u64 = 10_000;

/// The review status of a call, as the search filters and shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CallStatus {
    /// A draft waits for the advisor's decision.
    Waiting,
    Approved,
    Rejected,
    /// KI is off for the call: not enabled, or the customer reserved
    /// themselves against it.
    KiOff,
    /// KI was on but there is no draft: not made yet, speech recognition
    /// failed, or the KI data is deleted.
    NoKi,
}

impl CallStatus {
    pub const ALL: [CallStatus; 5] = [
        CallStatus::Waiting,
        CallStatus::Approved,
        CallStatus::Rejected,
        CallStatus::KiOff,
        CallStatus::NoKi,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CallStatus::Waiting => "waiting",
            CallStatus::Approved => "approved",
            CallStatus::Rejected => "rejected",
            CallStatus::KiOff => "ki_off",
            CallStatus::NoKi => "no_ki",
        }
    }

    pub fn parse(s: &str) -> Option<CallStatus> {
        CallStatus::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// The condition on `calls c LEFT JOIN ki_calls k` that selects it.
    fn condition(self) -> &'static str {
        match self {
            CallStatus::KiOff => "(c.ki_enabled = 0 OR c.ki_opt_out_at_us IS NOT NULL)",
            CallStatus::NoKi => {
                "(c.ki_enabled <> 0 AND c.ki_opt_out_at_us IS NULL AND (k.call_id IS NULL OR k.recognition_failed <> 0))"
            }
            CallStatus::Waiting => {
                "(c.ki_enabled <> 0 AND c.ki_opt_out_at_us IS NULL AND k.recognition_failed = 0 AND k.decision IS NULL)"
            }
            CallStatus::Approved => "(c.ki_opt_out_at_us IS NULL AND k.decision = 'approved')",
            CallStatus::Rejected => "(c.ki_opt_out_at_us IS NULL AND k.decision = 'rejected')",
        }
    }
}

/// The status of a found row, as SQL (the inverse of [`CallStatus::condition`]).
const STATUS_SQL: &str = "CASE \
    WHEN c.ki_enabled = 0 OR c.ki_opt_out_at_us IS NOT NULL THEN 'ki_off' \
    WHEN k.call_id IS NULL OR k.recognition_failed <> 0 THEN 'no_ki' \
    WHEN k.decision = 'approved' THEN 'approved' \
    WHEN k.decision = 'rejected' THEN 'rejected' \
    ELSE 'waiting' END";

/// What to look for; every filter is optional and they all apply.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallQuery {
    /// Started at or after (µs since the epoch).
    pub from_us: Option<i64>,
    /// Started before.
    pub until_us: Option<i64>,
    pub advisor_id: Option<String>,
    pub desk: Option<String>,
    pub service_category: Option<String>,
    pub customer_ref: Option<String>,
    pub call_id: Option<String>,
    pub status: Option<CallStatus>,
    /// Only calls in the QA sample (the QA reviewer's search).
    pub sampled_only: bool,
    /// Oldest first instead of newest first.
    pub oldest_first: bool,
    pub offset: u64,
    pub limit: u32,
}

/// One call found: facts only, no content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoundCall {
    pub call_id: String,
    pub started_at_us: i64,
    pub advisor_id: String,
    pub desk: String,
    pub service_category: String,
    /// The recorded length.
    pub frames: u64,
    pub sample_rate_hz: u32,
    pub status: CallStatus,
}

#[derive(sqlx::FromRow)]
struct FoundRow {
    call_id: String,
    started_at_us: i64,
    advisor_id: String,
    desk: String,
    service_category: String,
    frames: i64,
    sample_rate_hz: i64,
    status: String,
}

/// A page of results and how many there are in all (at most
/// [`COUNT_CAP`]; `capped` when there are more).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    pub calls: Vec<FoundCall>,
    pub total: u64,
    pub capped: bool,
}

/// A reason stated for reading a subject in one session.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct ReadReason {
    pub category: String,
    pub case_ref: String,
    pub text: String,
    pub stated_at_us: i64,
}

pub struct SqlSearch {
    store: SqlStore,
}

enum Bind {
    Int(i64),
    Text(String),
}

impl SqlSearch {
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Ok(Self {
            store: SqlStore::open(url).await?,
        })
    }

    /// The calls (not conversations) matching `q`, one page of them in
    /// start order, and their count. Two queries: the page, and a count
    /// that stops at [`COUNT_CAP`].
    pub async fn calls(&self, q: &CallQuery) -> Result<Found, StoreError> {
        let mut conds = vec!["c.medium = 'call'".to_owned()];
        let mut binds = Vec::new();
        let mut bind = |conds: &mut Vec<String>, sql: &str, v: Bind| {
            binds.push(v);
            conds.push(sql.replace('?', &format!("${}", binds.len())));
        };
        if let Some(v) = q.from_us {
            bind(&mut conds, "c.started_at_us >= ?", Bind::Int(v));
        }
        if let Some(v) = q.until_us {
            bind(&mut conds, "c.started_at_us < ?", Bind::Int(v));
        }
        for (col, v) in [
            ("c.advisor_id", &q.advisor_id),
            ("c.desk", &q.desk),
            ("c.service_category", &q.service_category),
            ("c.customer_ref", &q.customer_ref),
            ("c.call_id", &q.call_id),
        ] {
            if let Some(v) = v {
                bind(&mut conds, &format!("{col} = ?"), Bind::Text(v.clone()));
            }
        }
        if let Some(s) = q.status {
            conds.push(s.condition().to_owned());
        }
        if q.sampled_only {
            conds.push("EXISTS (SELECT 1 FROM qa_samples s WHERE s.call_id = c.call_id)".to_owned());
        }
        let from = format!(
            "FROM calls c LEFT JOIN ki_calls k ON k.call_id = c.call_id WHERE {}",
            conds.join(" AND ")
        );
        let dir = if q.oldest_first { "ASC" } else { "DESC" };
        let n = binds.len();
        let page_sql = format!(
            "SELECT c.call_id, c.started_at_us, c.advisor_id, c.desk, c.service_category, c.frames, \
             c.sample_rate_hz, {STATUS_SQL} AS status {from} \
             ORDER BY c.started_at_us {dir}, c.call_id {dir} LIMIT ${} OFFSET ${}",
            n + 1,
            n + 2
        );
        let count_sql = format!("SELECT COUNT(*) FROM (SELECT 1 AS one {from} LIMIT ${}) t", n + 1);
        let mut page = sqlx::query_as::<_, FoundRow>(&page_sql);
        let mut count = sqlx::query_as::<_, (i64,)>(&count_sql);
        for b in &binds {
            (page, count) = match b {
                Bind::Int(v) => (page.bind(*v), count.bind(*v)),
                Bind::Text(v) => (page.bind(v.clone()), count.bind(v.clone())),
            };
        }
        let rows = page
            .bind(i64::from(q.limit))
            .bind(q.offset as i64)
            .fetch_all(&self.store.pool)
            .await
            .map_err(db)?;
        let (counted,) = count
            .bind((COUNT_CAP + 1) as i64)
            .fetch_one(&self.store.pool)
            .await
            .map_err(db)?;
        let counted = counted.max(0) as u64;
        let calls = rows
            .into_iter()
            .map(|r| {
                Ok(FoundCall {
                    status: CallStatus::parse(&r.status)
                        .ok_or_else(|| StoreError::Corrupt(format!("call status {}", r.status)))?,
                    call_id: r.call_id,
                    started_at_us: r.started_at_us,
                    advisor_id: r.advisor_id,
                    desk: r.desk,
                    service_category: r.service_category,
                    frames: r.frames.max(0) as u64,
                    sample_rate_hz: r.sample_rate_hz.clamp(0, i64::from(u32::MAX)) as u32,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Found {
            calls,
            total: counted.min(COUNT_CAP),
            capped: counted > COUNT_CAP,
        })
    }

    /// Keeps a search's filters (serialized by the caller) for a session.
    pub async fn save_search(
        &self,
        search_id: &str,
        session_sha256: &str,
        filters: &str,
        at_us: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO saved_searches (search_id, session_sha256, filters, created_at_us) VALUES ($1, $2, $3, $4)",
        )
        .bind(search_id)
        .bind(session_sha256)
        .bind(filters)
        .bind(at_us)
        .execute(&self.store.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    /// A saved search's filters, only for the session that saved it.
    pub async fn saved_search(&self, search_id: &str, session_sha256: &str) -> Result<Option<String>, StoreError> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT filters FROM saved_searches WHERE search_id = $1 AND session_sha256 = $2")
                .bind(search_id)
                .bind(session_sha256)
                .fetch_optional(&self.store.pool)
                .await
                .map_err(db)?;
        Ok(row.map(|(f,)| f))
    }

    /// Keeps (or replaces) the reason stated in a session for a subject.
    pub async fn keep_reason(&self, session_sha256: &str, subject: &str, r: &ReadReason) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO read_reasons (session_sha256, subject, category, case_ref, text, stated_at_us) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (session_sha256, subject) DO UPDATE SET \
             category = excluded.category, case_ref = excluded.case_ref, text = excluded.text, \
             stated_at_us = excluded.stated_at_us",
        )
        .bind(session_sha256)
        .bind(subject)
        .bind(r.category.as_str())
        .bind(r.case_ref.as_str())
        .bind(r.text.as_str())
        .bind(r.stated_at_us)
        .execute(&self.store.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    /// The reason stated in a session for a subject, if any.
    pub async fn reason(&self, session_sha256: &str, subject: &str) -> Result<Option<ReadReason>, StoreError> {
        sqlx::query_as(
            "SELECT category, case_ref, text, stated_at_us FROM read_reasons \
             WHERE session_sha256 = $1 AND subject = $2",
        )
        .bind(session_sha256)
        .bind(subject)
        .fetch_optional(&self.store.pool)
        .await
        .map_err(db)
    }
}
