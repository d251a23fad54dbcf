//! The call search of compliance and QA (issue 18), the queues of open
//! drafts (filtered, sorted and paged in SQL), and what the web service
//! keeps per session: saved searches (the filters, customer reference
//! included, behind an id) and the reasons stated for reading a call or
//! conversation.
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

/// A search as submitted: the filters (serialized by the web service) and
/// how many calls matched then (at most [`COUNT_CAP`], `capped` past it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavedSearch {
    pub filters: String,
    pub total: u64,
    pub capped: bool,
    pub created_at_us: i64,
}

/// A reason stated for reading a subject in one session.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct ReadReason {
    pub category: String,
    pub case_ref: String,
    pub text: String,
    pub stated_at_us: i64,
}

/// How a queue is ordered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum QueueSort {
    /// By how long the draft has waited since the call ended.
    #[default]
    Waited,
    Started,
    Length,
}

/// Which open drafts: those of some advisors, narrowed by the filters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueQuery {
    pub advisors: Vec<String>,
    /// Only drafts of calls that ended before this (escalated ones).
    pub ended_before_us: Option<i64>,
    pub desk: Option<String>,
    /// Drafts with this topic among theirs.
    pub topic: Option<String>,
    /// Call ids starting with this.
    pub call_prefix: Option<String>,
    pub sort: QueueSort,
    /// Largest first (longest wait, newest start, longest call).
    pub descending: bool,
    pub offset: u64,
    pub limit: u32,
}

/// One open draft: facts, no content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuedDraft {
    pub call_id: String,
    pub advisor_id: String,
    pub desk: String,
    /// Taxonomy ids, primary first.
    pub topics: Vec<String>,
    pub started_at_us: i64,
    pub ended_at_us: Option<i64>,
    pub frames: u64,
    pub sample_rate_hz: u32,
}

#[derive(sqlx::FromRow)]
struct QueuedRow {
    call_id: String,
    advisor_id: String,
    desk: String,
    topics: String,
    started_at_us: i64,
    ended_at_us: Option<i64>,
    frames: i64,
    sample_rate_hz: i64,
}

/// The `FROM … WHERE …` of a call search, its bind values, and the table
/// (`c` or `k`) whose `started_at_us` and `call_id` order it.
///
/// A search by review status (waiting, approved, rejected) only finds
/// drafted calls: it walks `ki_calls` (its own start time, migration 0022)
/// newest first and reads the call of each draft. Any other search walks
/// `calls` and looks up the draft of each call found, if it has one. Both
/// walks stop at the page's end, whatever the number of matches.
fn call_filters(q: &CallQuery) -> (String, Vec<Bind>, &'static str) {
    let by_draft = matches!(
        q.status,
        Some(CallStatus::Waiting | CallStatus::Approved | CallStatus::Rejected)
    );
    let t = if by_draft { "k" } else { "c" };
    let mut conds = vec!["c.medium = 'call'".to_owned()];
    let mut binds = Vec::new();
    let mut bind = |conds: &mut Vec<String>, sql: &str, v: Bind| {
        binds.push(v);
        conds.push(sql.replace('?', &format!("${}", binds.len())));
    };
    if let Some(v) = q.from_us {
        bind(&mut conds, &format!("{t}.started_at_us >= ?"), Bind::Int(v));
    }
    if let Some(v) = q.until_us {
        bind(&mut conds, &format!("{t}.started_at_us < ?"), Bind::Int(v));
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
    let join = if by_draft {
        "ki_calls k JOIN calls c ON c.call_id = k.call_id"
    } else {
        "calls c LEFT JOIN ki_calls k ON k.call_id = c.call_id"
    };
    let from = format!("FROM {join} WHERE {}", conds.join(" AND "));
    (from, binds, t)
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

    /// The calls (not conversations) matching `q`: one page of them in
    /// start order ([`SqlSearch::page_of_calls`]) and their count
    /// ([`SqlSearch::count_calls`]).
    pub async fn calls(&self, q: &CallQuery) -> Result<Found, StoreError> {
        let calls = self.page_of_calls(q).await?;
        let (total, capped) = self.count_calls(q).await?;
        Ok(Found { calls, total, capped })
    }

    /// How many calls match `q` (paging aside), at most [`COUNT_CAP`]; true
    /// when there are more. The one part of a search whose cost grows with
    /// the matches: the web service counts once, when the search is
    /// submitted, and keeps the count with the saved search.
    pub async fn count_calls(&self, q: &CallQuery) -> Result<(u64, bool), StoreError> {
        let (from, mut binds, _) = call_filters(q);
        let sql = format!(
            "SELECT COUNT(*) FROM (SELECT 1 AS one {from} LIMIT ${}) t",
            binds.len() + 1
        );
        binds.push(Bind::Int((COUNT_CAP + 1) as i64));
        let counted = self.count(&sql, &binds).await?;
        Ok((counted.min(COUNT_CAP), counted > COUNT_CAP))
    }

    /// One page of the calls matching `q`, in start order: an index walk
    /// that stops at the page's end.
    pub async fn page_of_calls(&self, q: &CallQuery) -> Result<Vec<FoundCall>, StoreError> {
        let (from, binds, t) = call_filters(q);
        let dir = if q.oldest_first { "ASC" } else { "DESC" };
        let n = binds.len();
        let page_sql = format!(
            "SELECT c.call_id, c.started_at_us, c.advisor_id, c.desk, c.service_category, c.frames, \
             c.sample_rate_hz, {STATUS_SQL} AS status {from} \
             ORDER BY {t}.started_at_us {dir}, {t}.call_id {dir} LIMIT ${} OFFSET ${}",
            n + 1,
            n + 2
        );
        let rows: Vec<FoundRow> = self
            .page(&page_sql, &binds, i64::from(q.limit), q.offset as i64)
            .await?;
        rows.into_iter()
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
            .collect::<Result<Vec<_>, StoreError>>()
    }

    /// Open drafts (drafted, undecided, KI data kept, customer not opted
    /// out) of `q.advisors`: one page and the count of all.
    pub async fn open_drafts(&self, q: &QueueQuery) -> Result<(Vec<QueuedDraft>, u64), StoreError> {
        if q.advisors.is_empty() {
            return Ok((Vec::new(), 0));
        }
        let mut binds: Vec<Bind> = q.advisors.iter().map(|a| Bind::Text(a.clone())).collect();
        let advisors: Vec<String> = (1..=binds.len()).map(|i| format!("${i}")).collect();
        let mut conds = vec![
            "k.channel = 'phone' AND k.decision IS NULL AND k.recognition_failed = 0".to_owned(),
            format!("k.advisor_id IN ({})", advisors.join(", ")),
            "EXISTS (SELECT 1 FROM data_keys d WHERE d.call_id = k.call_id AND d.class = 'ki' \
             AND d.destroyed_at_us IS NULL)"
                .to_owned(),
        ];
        let mut bind = |conds: &mut Vec<String>, sql: &str, v: Bind| {
            binds.push(v);
            conds.push(sql.replace('?', &format!("${}", binds.len())));
        };
        if let Some(t) = q.ended_before_us {
            bind(&mut conds, "COALESCE(c.ended_at_us, c.started_at_us) < ?", Bind::Int(t));
        }
        if let Some(d) = &q.desk {
            bind(&mut conds, "k.desk = ?", Bind::Text(d.clone()));
        }
        if let Some(t) = &q.topic {
            bind(
                &mut conds,
                "EXISTS (SELECT 1 FROM call_topics t WHERE t.call_id = k.call_id AND t.topic = ?)",
                Bind::Text(t.clone()),
            );
        }
        if let Some(p) = &q.call_prefix {
            let escaped = p.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
            bind(
                &mut conds,
                "k.call_id LIKE ? ESCAPE '\\'",
                Bind::Text(format!("{escaped}%")),
            );
        }
        let from = format!(
            "FROM ki_calls k JOIN calls c ON c.call_id = k.call_id AND c.ki_opt_out_at_us IS NULL WHERE {}",
            conds.join(" AND ")
        );
        let dir = if q.descending { "DESC" } else { "ASC" };
        // Waited longest = ended earliest.
        let order = match q.sort {
            QueueSort::Waited => format!(
                "COALESCE(c.ended_at_us, c.started_at_us) {}",
                if q.descending { "ASC" } else { "DESC" }
            ),
            QueueSort::Started => format!("c.started_at_us {dir}"),
            QueueSort::Length => format!("c.frames * 1000 / NULLIF(c.sample_rate_hz, 0) {dir}"),
        };
        let n = binds.len();
        let page_sql = format!(
            "SELECT k.call_id, k.advisor_id, k.desk, k.topics, c.started_at_us, c.ended_at_us, c.frames, \
             c.sample_rate_hz {from} ORDER BY {order}, k.call_id LIMIT ${} OFFSET ${}",
            n + 1,
            n + 2
        );
        let count_sql = format!("SELECT COUNT(*) {from}");
        let rows: Vec<QueuedRow> = self
            .page(&page_sql, &binds, i64::from(q.limit), q.offset as i64)
            .await?;
        let total = self.count(&count_sql, &binds).await?;
        let drafts = rows
            .into_iter()
            .map(|r| QueuedDraft {
                call_id: r.call_id,
                advisor_id: r.advisor_id,
                desk: r.desk,
                topics: r
                    .topics
                    .split(',')
                    .filter(|t| !t.is_empty())
                    .map(str::to_owned)
                    .collect(),
                started_at_us: r.started_at_us,
                ended_at_us: r.ended_at_us,
                frames: r.frames.max(0) as u64,
                sample_rate_hz: r.sample_rate_hz.clamp(0, i64::from(u32::MAX)) as u32,
            })
            .collect();
        Ok((drafts, total))
    }

    /// The rows of `sql` with `binds`, then the limit and offset.
    async fn page<R>(&self, sql: &str, binds: &[Bind], limit: i64, offset: i64) -> Result<Vec<R>, StoreError>
    where
        R: for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow> + Send + Unpin,
    {
        let mut q = sqlx::query_as::<_, R>(sql);
        for b in binds {
            q = match b {
                Bind::Int(v) => q.bind(*v),
                Bind::Text(v) => q.bind(v.clone()),
            };
        }
        q.bind(limit)
            .bind(offset)
            .fetch_all(&self.store.pool())
            .await
            .map_err(db)
    }

    /// The one count `sql` gives with `binds`.
    async fn count(&self, sql: &str, binds: &[Bind]) -> Result<u64, StoreError> {
        let mut q = sqlx::query_as::<_, (i64,)>(sql);
        for b in binds {
            q = match b {
                Bind::Int(v) => q.bind(*v),
                Bind::Text(v) => q.bind(v.clone()),
            };
        }
        let (n,) = q.fetch_one(&self.store.pool()).await.map_err(db)?;
        Ok(n.max(0) as u64)
    }

    /// Keeps a search for a session: its filters (serialized by the
    /// caller) and its count when it was submitted.
    pub async fn save_search(&self, search_id: &str, session_sha256: &str, s: &SavedSearch) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO saved_searches (search_id, session_sha256, filters, total, capped, created_at_us) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(search_id)
        .bind(session_sha256)
        .bind(s.filters.as_str())
        .bind(s.total as i64)
        .bind(i64::from(s.capped))
        .bind(s.created_at_us)
        .execute(&self.store.pool())
        .await
        .map_err(db)?;
        Ok(())
    }

    /// A saved search, only for the session that saved it.
    pub async fn saved_search(&self, search_id: &str, session_sha256: &str) -> Result<Option<SavedSearch>, StoreError> {
        let row: Option<(String, i64, i64, i64)> = sqlx::query_as(
            "SELECT filters, total, capped, created_at_us FROM saved_searches \
             WHERE search_id = $1 AND session_sha256 = $2",
        )
        .bind(search_id)
        .bind(session_sha256)
        .fetch_optional(&self.store.pool())
        .await
        .map_err(db)?;
        Ok(row.map(|(filters, total, capped, created_at_us)| SavedSearch {
            filters,
            total: total.max(0) as u64,
            capped: capped != 0,
            created_at_us,
        }))
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
        .execute(&self.store.pool())
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
        .fetch_optional(&self.store.pool())
        .await
        .map_err(db)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    //! The queries on SQLite (the HTTP tests run them on PostgreSQL).
    use super::*;

    async fn store() -> (tempfile::TempDir, SqlSearch) {
        let dir = tempfile::tempdir().unwrap();
        let s = SqlSearch::open(&format!("sqlite://{}/t.db", dir.path().display()))
            .await
            .unwrap();
        (dir, s)
    }

    async fn exec(s: &SqlSearch, sql: &str) {
        sqlx::query(sql).execute(&s.store.pool()).await.unwrap();
    }

    /// A call `id` of `advisor` at `desk`, started at `at`, `secs` long;
    /// `ki`: `off`, `none`, or a decision (`open`, `approved`, `rejected`)
    /// with `topic`.
    #[allow(clippy::too_many_arguments)]
    async fn call(s: &SqlSearch, id: &str, at: i64, advisor: &str, desk: &str, customer: &str, secs: i64, ki: &str) {
        exec(
            s,
            &format!(
                "INSERT INTO calls (call_id, started_at_us, direction, customer_ref, advisor_id, desk, \
                 service_category, ki_enabled, customer_informed, codec, sample_rate_hz, channel_roles, state, \
                 frames, ended_at_us, created_at_us, updated_at_us) VALUES ('{id}', {at}, 'inbound', '{customer}', \
                 '{advisor}', '{desk}', 'loan', {}, 1, 'l16', 8000, 'agent,customer', 'ended', {}, {}, {at}, {at})",
                i64::from(ki != "off"),
                secs * 8000,
                at + secs * 1_000_000
            ),
        )
        .await;
        if ki == "off" || ki == "none" {
            return;
        }
        let decision = if ki == "open" {
            "NULL".to_owned()
        } else {
            format!("'{ki}'")
        };
        exec(
            s,
            &format!(
                "INSERT INTO ki_calls (call_id, day, desk, language, topic, topics, advisor_id, drafted_at_us, \
                 draft_words, decision, started_at_us) VALUES ('{id}', 'd', '{desk}', 'nb', 'loan', 'loan,savings', \
                 '{advisor}', {at}, 10, {decision}, {at})"
            ),
        )
        .await;
        exec(
            s,
            &format!(
                "INSERT INTO call_topics (call_id, topic, day, desk) VALUES ('{id}', 'loan', 'd', '{desk}'), \
                 ('{id}', 'savings', 'd', '{desk}')"
            ),
        )
        .await;
        exec(
            s,
            &format!(
                "INSERT INTO data_keys (key_id, call_id, class, kek_id, sealed, created_at_us) \
                 VALUES ('{id}-ki', '{id}', 'ki', 'k', X'00', {at})"
            ),
        )
        .await;
    }

    #[tokio::test]
    async fn search_filters_sorts_and_counts() {
        let (_dir, s) = store().await;
        call(&s, "c_1", 100, "anne", "markets", "k1", 60, "open").await;
        call(&s, "c_2", 200, "anne", "markets", "k2", 30, "approved").await;
        call(&s, "c_3", 300, "bo", "corporate", "k1", 90, "rejected").await;
        call(&s, "c_4", 400, "bo", "markets", "k1", 10, "off").await;
        call(&s, "cx4", 500, "anne", "corporate", "k3", 20, "none").await;
        let ids = |f: &Found| f.calls.iter().map(|c| c.call_id.clone()).collect::<Vec<_>>();
        let q = |f: fn(&mut CallQuery)| {
            let mut q = CallQuery {
                limit: 10,
                ..CallQuery::default()
            };
            f(&mut q);
            q
        };
        let all = s.calls(&q(|_| {})).await.unwrap();
        assert_eq!(ids(&all), ["cx4", "c_4", "c_3", "c_2", "c_1"]);
        assert_eq!((all.total, all.capped), (5, false));
        let statuses: Vec<CallStatus> = all.calls.iter().map(|c| c.status).collect();
        use CallStatus::*;
        assert_eq!(statuses, [NoKi, KiOff, Rejected, Approved, Waiting]);
        for (status, want) in [
            (Waiting, "c_1"),
            (Approved, "c_2"),
            (Rejected, "c_3"),
            (KiOff, "c_4"),
            (NoKi, "cx4"),
        ] {
            let mut query = q(|_| {});
            query.status = Some(status);
            assert_eq!(ids(&s.calls(&query).await.unwrap()), [want], "{status:?}");
        }
        let found = s
            .calls(&q(|q| {
                q.customer_ref = Some("k1".into());
                q.desk = Some("markets".into());
                q.oldest_first = true;
            }))
            .await
            .unwrap();
        assert_eq!(ids(&found), ["c_1", "c_4"]);
        let found = s
            .calls(&q(|q| {
                q.from_us = Some(200);
                q.until_us = Some(400);
                q.limit = 1;
                q.offset = 1;
            }))
            .await
            .unwrap();
        assert_eq!((ids(&found), found.total), (vec!["c_2".to_owned()], 2));
        assert_eq!(found.calls[0].frames, 30 * 8000);

        // A search by review status walks the drafts (`ki_calls`): the
        // same filters, order and paging apply.
        call(&s, "c_5", 600, "bo", "markets", "k4", 40, "open").await;
        call(&s, "c_6", 700, "anne", "corporate", "k4", 40, "open").await;
        call(&s, "c_7", 800, "anne", "markets", "k5", 40, "open").await;
        let waiting = |f: fn(&mut CallQuery)| {
            let mut query = q(f);
            query.status = Some(Waiting);
            query
        };
        let found = s.calls(&waiting(|_| {})).await.unwrap();
        assert_eq!(
            (ids(&found), found.total),
            (
                vec!["c_7", "c_6", "c_5", "c_1"]
                    .into_iter()
                    .map(String::from)
                    .collect::<Vec<_>>(),
                4
            )
        );
        let found = s
            .calls(&waiting(|q| {
                q.desk = Some("markets".into());
                q.from_us = Some(100);
                q.until_us = Some(800);
                q.oldest_first = true;
            }))
            .await
            .unwrap();
        assert_eq!(ids(&found), ["c_1", "c_5"]);
        let found = s
            .calls(&waiting(|q| {
                q.limit = 2;
                q.offset = 2;
            }))
            .await
            .unwrap();
        assert_eq!(
            (ids(&found), found.total),
            (vec!["c_5".to_owned(), "c_1".to_owned()], 4)
        );
        assert!(found.calls.iter().all(|c| c.status == Waiting));
        assert_eq!(found.calls[0].started_at_us, 600);
    }

    #[tokio::test]
    async fn queues_filter_sort_and_escape_the_call_prefix() {
        let (_dir, s) = store().await;
        call(&s, "c_1", 100, "anne", "markets", "k1", 60, "open").await;
        call(&s, "c_2", 200, "anne", "corporate", "k1", 30, "open").await;
        call(&s, "cx3", 300, "anne", "markets", "k1", 90, "open").await;
        call(&s, "c_4", 400, "anne", "markets", "k1", 10, "approved").await;
        call(&s, "c_5", 500, "bo", "markets", "k1", 10, "open").await;
        let run = |q: QueueQuery| {
            let s = &s;
            async move {
                let (d, n) = s.open_drafts(&q).await.unwrap();
                (d.into_iter().map(|d| d.call_id).collect::<Vec<_>>(), n)
            }
        };
        let base = QueueQuery {
            advisors: vec!["anne".into()],
            descending: true,
            limit: 10,
            ..QueueQuery::default()
        };
        // Longest waiting first: c_2 ended first (a shorter call).
        assert_eq!(
            run(base.clone()).await,
            (vec!["c_2".into(), "c_1".into(), "cx3".into()], 3)
        );
        let q = QueueQuery {
            sort: QueueSort::Length,
            descending: false,
            ..base.clone()
        };
        assert_eq!(run(q).await.0, ["c_2", "c_1", "cx3"]);
        let q = QueueQuery {
            call_prefix: Some("c_".into()),
            ..base.clone()
        };
        assert_eq!(run(q).await.0, ["c_2", "c_1"], "the underscore is no wildcard");
        let q = QueueQuery {
            desk: Some("markets".into()),
            topic: Some("savings".into()),
            ended_before_us: Some(300 + 90_000_000),
            ..base.clone()
        };
        assert_eq!(run(q).await.0, ["c_1"]);
        let q = QueueQuery {
            limit: 1,
            offset: 1,
            ..base
        };
        assert_eq!(run(q).await, (vec!["c_1".into()], 3));
    }

    #[tokio::test]
    async fn reasons_and_searches_belong_to_their_session() {
        let (_dir, s) = store().await;
        exec(
            &s,
            "INSERT INTO users (user_id, display_name, role, team, password_hash, created_at_us) \
             VALUES ('cato', 'Cato', 'compliance', 'c', 'x', 0)",
        )
        .await;
        for t in ["s1", "s2"] {
            exec(
                &s,
                &format!(
                    "INSERT INTO sessions (token_sha256, user_id, created_at_us, expires_at_us) VALUES ('{t}', 'cato', 0, 9)"
                ),
            )
            .await;
        }
        let r = ReadReason {
            category: "complaint".into(),
            case_ref: "K-1".into(),
            text: "the customer complains".into(),
            stated_at_us: 5,
        };
        s.keep_reason("s1", "call:a", &r).await.unwrap();
        assert_eq!(s.reason("s1", "call:a").await.unwrap(), Some(r.clone()));
        assert_eq!(s.reason("s2", "call:a").await.unwrap(), None);
        assert_eq!(s.reason("s1", "call:b").await.unwrap(), None);
        let again = ReadReason {
            text: "a second look".into(),
            ..r
        };
        s.keep_reason("s1", "call:a", &again).await.unwrap();
        assert_eq!(s.reason("s1", "call:a").await.unwrap(), Some(again));
        let saved = SavedSearch {
            filters: "{}".into(),
            total: 12,
            capped: true,
            created_at_us: 1,
        };
        s.save_search("q1", "s1", &saved).await.unwrap();
        assert_eq!(s.saved_search("q1", "s1").await.unwrap(), Some(saved));
        assert_eq!(s.saved_search("q1", "s2").await.unwrap(), None);
        // Both go with the session.
        exec(&s, "DELETE FROM sessions WHERE token_sha256 = 's1'").await;
        assert_eq!(s.reason("s1", "call:a").await.unwrap(), None);
        assert_eq!(s.saved_search("q1", "s1").await.unwrap(), None);
    }
}
