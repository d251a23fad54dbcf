//! The KI reporting index (R5) and QA sampling (R6), issue 6: rows only;
//! the sampling rule, sealing of notes, access rules and the report's
//! arithmetic live in `src/qa.rs`. Tables from migrations 0008 and 0013
//! (recognition failures, the queue's reason, screenings).
//!
//! Every reader leaves out calls whose customer opted out of KI
//! (`calls.ki_opt_out_at_us IS NOT NULL`), joined at read time: the index
//! row may be written before or after the opt-out, and either way the call
//! shows nowhere.
//!
//! Conversations (issue 17, migration 0019) are indexed in the same rows
//! from their redacted analysis copy, with their channel ([`PHONE`] for a
//! call): one dashboard, one QA queue. A conversation's rows are read and
//! shredded with its `chat-analysis-1y` key where a call's go with `ki`
//! ([`ANALYSIS_CLASS_SQL`]).

use crate::meta::{db, SqlStore};
use crate::StoreError;

/// The channel of a call in the index; conversations carry theirs
/// (`aino_chatbot`, `advisor_chat`, `secure_message`, `email`).
pub const PHONE: &str = "phone";

/// The key class an index row `k`'s analysed data lives under: a call's
/// `ki` key, a conversation's `chat-analysis-1y` key. The rows go with it.
pub const ANALYSIS_CLASS_SQL: &str = "CASE WHEN k.channel = 'phone' THEN 'ki' ELSE 'chat-analysis-1y' END";

/// The index row of one drafted KI call (no content).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KiCallRow {
    pub call_id: String,
    /// UTC day of the call's start, `YYYY-MM-DD`.
    pub day: String,
    pub desk: String,
    pub language: String,
    /// Taxonomy ids, primary first; never empty.
    pub topics: Vec<String>,
    pub advisor_id: String,
    pub drafted_at_us: i64,
    pub draft_words: u64,
    /// Speech recognition failed: no draft (topics `["none"]`, 0 words).
    pub recognition_failed: bool,
    /// [`PHONE`], or a conversation's channel. A conversation's
    /// `draft_words` are the words the bot wrote (0: nothing for QA).
    pub channel: String,
}

impl KiCallRow {
    /// The primary topic.
    pub fn topic(&self) -> &str {
        self.topics.first().map_or("", String::as_str)
    }
}

/// An index row with the advisor's outcome, as read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexedCall {
    pub row: KiCallRow,
    /// `approved` or `rejected`.
    pub decision: Option<String>,
    pub edit_distance: Option<u64>,
    pub decided_at_us: Option<i64>,
    pub sampled: bool,
}

/// What indexing a draft did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Indexed {
    /// False when the call was indexed before (a retried draft): nothing
    /// changed, `sampled` is the decision made then.
    pub new: bool,
    pub sampled: bool,
    /// In the QA queue by screening (flagged, whether sampled or not).
    pub screened: bool,
}

/// A draft's screening as stored: counts and the verdict in clear, the
/// terms and the model's detail sealed under the call's `ki` key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScreeningRow {
    pub at_us: i64,
    pub lexicon_version: u32,
    pub lexicon_hits: u64,
    /// `off`, `clear`, `flagged` or `unavailable`.
    pub model_verdict: String,
    pub prompt_version: String,
    /// A hit: the call goes to the QA queue.
    pub flagged: bool,
    pub key_id: String,
    pub detail_sealed: Vec<u8>,
}

/// One sampled call in the QA queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueRow {
    pub call_id: String,
    /// [`PHONE`], or the conversation's channel.
    pub channel: String,
    pub day: String,
    pub desk: String,
    pub language: String,
    pub topic: String,
    pub stratum: String,
    pub sampled_at_us: i64,
    /// When the call (or conversation) started and ended (`None`: still
    /// open, or its end not recorded).
    pub started_at_us: i64,
    pub ended_at_us: Option<i64>,
    /// Who scored it already, sorted.
    pub reviewers: Vec<String>,
    pub recognition_failed: bool,
    /// `sample` or `screening` (a hit the sample did not pick).
    pub reason: String,
    /// The call's screening when it was flagged: `(key_id, sealed detail)`.
    pub screening: Option<(String, Vec<u8>)>,
    /// Why QA should look, for people (filled by the QA service, which
    /// opens the screening; empty as read).
    pub reasons: Vec<String>,
}

/// An undecided draft in a review queue.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct OpenDraft {
    pub call_id: String,
    pub advisor_id: String,
    pub started_at_us: i64,
    pub ended_at_us: Option<i64>,
}

/// A QA review as stored (`note_sealed` under `key_id`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QaReviewRow {
    pub call_id: String,
    pub reviewer: String,
    pub at_us: i64,
    pub correctness: u8,
    pub relevance: u8,
    pub quality: u8,
    /// `""`, `discriminatory` or `unexpected`.
    pub flag: String,
    pub key_id: String,
    pub note_sealed: Vec<u8>,
}

/// A drafted call as the report counts it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportCallRow {
    pub call_id: String,
    /// [`PHONE`], or the conversation's channel.
    pub channel: String,
    pub topic: String,
    pub desk: String,
    pub language: String,
    pub recognition_failed: bool,
    pub draft_words: u64,
    /// Picked by the stratified sample (not by screening).
    pub sampled: bool,
    /// Flagged by screening.
    pub screened: bool,
    pub decision: Option<String>,
    pub edit_distance: Option<u64>,
}

/// A review's scores as the report counts them (no note).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportReviewRow {
    pub call_id: String,
    pub topic: String,
    pub correctness: u8,
    pub relevance: u8,
    pub quality: u8,
    pub flag: String,
}

/// One call (or conversation) and one of its topics, for the topic dashboard.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, sqlx::FromRow)]
pub struct TopicRow {
    pub day: String,
    pub desk: String,
    /// [`PHONE`], or the conversation's channel.
    pub channel: String,
    pub topic: String,
}

/// A stratum's counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StratumRow {
    pub stratum: String,
    pub seen: u64,
    pub sampled: u64,
}

pub struct SqlReporting {
    store: SqlStore,
}

/// The calls a reader may count: no KI opt-out.
const NOT_OPTED_OUT: &str = "JOIN calls c ON c.call_id = k.call_id AND c.ki_opt_out_at_us IS NULL";

fn score(col: &str, v: i64) -> Result<u8, StoreError> {
    u8::try_from(v)
        .ok()
        .filter(|s| (1..=5).contains(s))
        .ok_or_else(|| StoreError::Corrupt(format!("qa_reviews.{col} = {v}")))
}

fn count(col: &str, v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("{col} = {v}")))
}

fn opt_count(col: &str, v: Option<i64>) -> Result<Option<u64>, StoreError> {
    v.map(|v| count(col, v)).transpose()
}

// The rows as read: counts and scores are checked when they become the
// rows above (a negative count or a score out of 1..=5 is `Corrupt`).

/// A `ki_calls` row with its outcome and whether it is sampled.
#[derive(sqlx::FromRow)]
struct IndexedCallColumns {
    call_id: String,
    day: String,
    desk: String,
    language: String,
    topics: String,
    advisor_id: String,
    drafted_at_us: i64,
    draft_words: i64,
    recognition_failed: i64,
    decision: Option<String>,
    edit_distance: Option<i64>,
    decided_at_us: Option<i64>,
    sampled_id: Option<String>,
    channel: String,
}

impl TryFrom<IndexedCallColumns> for IndexedCall {
    type Error = StoreError;

    fn try_from(r: IndexedCallColumns) -> Result<Self, StoreError> {
        Ok(IndexedCall {
            row: KiCallRow {
                call_id: r.call_id,
                day: r.day,
                desk: r.desk,
                language: r.language,
                topics: r.topics.split(',').map(str::to_owned).collect(),
                advisor_id: r.advisor_id,
                drafted_at_us: r.drafted_at_us,
                draft_words: count("draft_words", r.draft_words)?,
                recognition_failed: r.recognition_failed != 0,
                channel: r.channel,
            },
            decision: r.decision,
            edit_distance: opt_count("edit_distance", r.edit_distance)?,
            decided_at_us: r.decided_at_us,
            sampled: r.sampled_id.is_some(),
        })
    }
}

/// One sampled call and one of its reviewers (none: `NULL`).
#[derive(sqlx::FromRow)]
struct QueueColumns {
    call_id: String,
    channel: String,
    day: String,
    desk: String,
    language: String,
    topic: String,
    stratum: String,
    sampled_at_us: i64,
    started_at_us: i64,
    ended_at_us: Option<i64>,
    reviewer: Option<String>,
    recognition_failed: i64,
    reason: String,
    screening_key_id: Option<String>,
    screening_sealed: Option<Vec<u8>>,
}

/// A review's three scores.
#[derive(sqlx::FromRow)]
struct ScoreColumns {
    correctness: i64,
    relevance: i64,
    quality: i64,
}

impl ScoreColumns {
    /// (correctness, relevance, quality), each in 1..=5.
    fn check(&self) -> Result<(u8, u8, u8), StoreError> {
        Ok((
            score("correctness", self.correctness)?,
            score("relevance", self.relevance)?,
            score("quality", self.quality)?,
        ))
    }
}

#[derive(sqlx::FromRow)]
struct QaReviewColumns {
    call_id: String,
    reviewer: String,
    at_us: i64,
    #[sqlx(flatten)]
    scores: ScoreColumns,
    flag: String,
    key_id: String,
    note_sealed: Vec<u8>,
}

impl TryFrom<QaReviewColumns> for QaReviewRow {
    type Error = StoreError;

    fn try_from(r: QaReviewColumns) -> Result<Self, StoreError> {
        let (correctness, relevance, quality) = r.scores.check()?;
        Ok(QaReviewRow {
            call_id: r.call_id,
            reviewer: r.reviewer,
            at_us: r.at_us,
            correctness,
            relevance,
            quality,
            flag: r.flag,
            key_id: r.key_id,
            note_sealed: r.note_sealed,
        })
    }
}

#[derive(sqlx::FromRow)]
struct ReportCallColumns {
    call_id: String,
    channel: String,
    topic: String,
    desk: String,
    language: String,
    recognition_failed: i64,
    draft_words: i64,
    decision: Option<String>,
    edit_distance: Option<i64>,
    sampled_id: Option<String>,
    screened: Option<i64>,
}

impl TryFrom<ReportCallColumns> for ReportCallRow {
    type Error = StoreError;

    fn try_from(r: ReportCallColumns) -> Result<Self, StoreError> {
        Ok(ReportCallRow {
            call_id: r.call_id,
            channel: r.channel,
            topic: r.topic,
            desk: r.desk,
            language: r.language,
            recognition_failed: r.recognition_failed != 0,
            draft_words: count("draft_words", r.draft_words)?,
            sampled: r.sampled_id.is_some(),
            screened: r.screened.unwrap_or(0) != 0,
            decision: r.decision,
            edit_distance: opt_count("edit_distance", r.edit_distance)?,
        })
    }
}

#[derive(sqlx::FromRow)]
struct ReportReviewColumns {
    call_id: String,
    topic: String,
    #[sqlx(flatten)]
    scores: ScoreColumns,
    flag: String,
}

impl TryFrom<ReportReviewColumns> for ReportReviewRow {
    type Error = StoreError;

    fn try_from(r: ReportReviewColumns) -> Result<Self, StoreError> {
        let (correctness, relevance, quality) = r.scores.check()?;
        Ok(ReportReviewRow {
            call_id: r.call_id,
            topic: r.topic,
            correctness,
            relevance,
            quality,
            flag: r.flag,
        })
    }
}

#[derive(sqlx::FromRow)]
struct ScreeningColumns {
    at_us: i64,
    lexicon_version: i64,
    lexicon_hits: i64,
    model_verdict: String,
    prompt_version: String,
    flagged: i64,
    key_id: String,
    detail_sealed: Vec<u8>,
}

#[derive(sqlx::FromRow)]
struct StratumColumns {
    stratum: String,
    seen: i64,
    sampled: i64,
}

impl TryFrom<StratumColumns> for StratumRow {
    type Error = StoreError;

    fn try_from(r: StratumColumns) -> Result<Self, StoreError> {
        Ok(StratumRow {
            stratum: r.stratum,
            seen: count("seen", r.seen)?,
            sampled: count("sampled", r.sampled)?,
        })
    }
}

/// Rows read as `C`, each turned into an `R`.
fn convert<C, R: TryFrom<C, Error = StoreError>>(rows: Vec<C>) -> Result<Vec<R>, StoreError> {
    rows.into_iter().map(R::try_from).collect()
}

impl SqlReporting {
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Ok(Self {
            store: SqlStore::open(url).await?,
        })
    }

    /// Indexes a drafted call and makes its sampling decision, in one write
    /// transaction: the call gets the next number `n` (0-based) of its
    /// `stratum`, and `sample(n)` says whether it is sampled. The stratum's
    /// row is locked from the increment to the commit, so concurrent
    /// writers — in this process or others, PostgreSQL or SQLite (`BEGIN
    /// IMMEDIATE`) — number a stratum's calls without gaps or repeats.
    /// Idempotent: a call indexed before keeps its row and its decision, and
    /// `sample` is not asked. The draft's `screening`, if any, is stored in
    /// the same transaction, and a flagged call the sample did not pick is
    /// queued with the reason `screening`. Without a `stratum` the row is
    /// indexed for the dashboard only (a conversation the bot took no part
    /// in: no KI output for QA), and neither `sample` nor `screening` is used.
    pub async fn index_draft(
        &self,
        row: &KiCallRow,
        stratum: Option<&str>,
        at_us: i64,
        sample: impl FnOnce(u64) -> bool + Send,
        screening: Option<&ScreeningRow>,
    ) -> Result<Indexed, StoreError> {
        if row.topics.is_empty() || row.topics.iter().any(|t| t.is_empty() || t.contains(',')) {
            return Err(StoreError::Corrupt(format!(
                "topics of {}: {:?} (non-empty ids without commas expected)",
                row.call_id, row.topics
            )));
        }
        let mut tx = self.store.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO ki_calls (call_id, day, desk, language, topic, topics, advisor_id, drafted_at_us, \
             draft_words, recognition_failed, channel, started_at_us) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, \
             $10, $11, (SELECT c.started_at_us FROM calls c WHERE c.call_id = $1)) \
             ON CONFLICT (call_id) DO NOTHING",
        )
        .bind(row.call_id.as_str())
        .bind(row.day.as_str())
        .bind(row.desk.as_str())
        .bind(row.language.as_str())
        .bind(row.topic())
        .bind(row.topics.join(","))
        .bind(row.advisor_id.as_str())
        .bind(row.drafted_at_us)
        .bind(row.draft_words as i64)
        .bind(i64::from(row.recognition_failed))
        .bind(row.channel.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected();
        if inserted == 0 {
            let reason: Option<String> = sqlx::query_scalar("SELECT reason FROM qa_samples WHERE call_id = $1")
                .bind(row.call_id.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
            let screened: Option<i64> = sqlx::query_scalar("SELECT flagged FROM qa_screenings WHERE call_id = $1")
                .bind(row.call_id.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
            tx.commit().await.map_err(db)?;
            return Ok(Indexed {
                new: false,
                sampled: reason.as_deref() == Some("sample"),
                screened: screened.unwrap_or(0) != 0,
            });
        }
        let mut seen_topics = std::collections::HashSet::new();
        for t in row.topics.iter().filter(|t| seen_topics.insert(t.as_str())) {
            sqlx::query(
                "INSERT INTO call_topics (call_id, topic, day, desk, channel) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (call_id, topic) DO NOTHING",
            )
            .bind(row.call_id.as_str())
            .bind(t.as_str())
            .bind(row.day.as_str())
            .bind(row.desk.as_str())
            .bind(row.channel.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        let Some(stratum) = stratum else {
            tx.commit().await.map_err(db)?;
            return Ok(Indexed {
                new: true,
                sampled: false,
                screened: false,
            });
        };
        sqlx::query(
            "INSERT INTO qa_strata (stratum, seen, sampled) VALUES ($1, 0, 0) ON CONFLICT (stratum) DO NOTHING",
        )
        .bind(stratum)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        // PostgreSQL (read committed) re-reads the row after waiting for its
        // lock, so `seen + 1` counts every committed call before this one.
        let seen: i64 = sqlx::query_scalar("UPDATE qa_strata SET seen = seen + 1 WHERE stratum = $1 RETURNING seen")
            .bind(stratum)
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
        let n = u64::try_from(seen - 1).map_err(|_| StoreError::Corrupt(format!("qa_strata.seen = {seen}")))?;
        let sampled = sample(n);
        if sampled {
            sqlx::query("UPDATE qa_strata SET sampled = sampled + 1 WHERE stratum = $1")
                .bind(stratum)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        let screened = screening.is_some_and(|s| s.flagged);
        if let Some(s) = screening {
            sqlx::query(
                "INSERT INTO qa_screenings (call_id, at_us, lexicon_version, lexicon_hits, model_verdict, \
                 prompt_version, flagged, key_id, detail_sealed) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(row.call_id.as_str())
            .bind(s.at_us)
            .bind(i64::from(s.lexicon_version))
            .bind(s.lexicon_hits as i64)
            .bind(s.model_verdict.as_str())
            .bind(s.prompt_version.as_str())
            .bind(i64::from(s.flagged))
            .bind(s.key_id.as_str())
            .bind(s.detail_sealed.clone())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        if sampled || screened {
            sqlx::query("INSERT INTO qa_samples (call_id, stratum, sampled_at_us, reason) VALUES ($1, $2, $3, $4)")
                .bind(row.call_id.as_str())
                .bind(stratum)
                .bind(at_us)
                .bind(if sampled { "sample" } else { "screening" })
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        Ok(Indexed {
            new: true,
            sampled,
            screened,
        })
    }

    /// Records the advisor's outcome of a call's draft (`approved` with its
    /// edit distance, or `rejected`). The first outcome stays; false when
    /// the call is not indexed or already has one.
    pub async fn set_outcome(
        &self,
        call_id: &str,
        decision: &str,
        edit_distance: Option<u64>,
        at_us: i64,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE ki_calls SET decision = $1, edit_distance = $2, decided_at_us = $3 \
             WHERE call_id = $4 AND decision IS NULL",
        )
        .bind(decision)
        .bind(edit_distance.map(|d| d as i64))
        .bind(at_us)
        .bind(call_id)
        .execute(&self.store.pool())
        .await
        .map_err(db)?;
        Ok(r.rows_affected() > 0)
    }

    /// Replaces an indexed call's topics with the ones its advisor approved
    /// (the dashboards count what the advisor approved, not the draft's
    /// guess). The QA stratum the call was sampled in stays. False when the
    /// call is not indexed (opted out, forgotten, or never drafted).
    pub async fn set_topics(&self, call_id: &str, topics: &[String]) -> Result<bool, StoreError> {
        if topics.is_empty() || topics.iter().any(|t| t.is_empty() || t.contains(',')) {
            return Err(StoreError::Corrupt(format!(
                "topics of {call_id}: {topics:?} (non-empty ids without commas expected)"
            )));
        }
        let mut tx = self.store.begin().await?;
        let row: Option<(String, String, String)> =
            sqlx::query_as("SELECT day, desk, channel FROM ki_calls WHERE call_id = $1")
                .bind(call_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
        let Some((day, desk, channel)) = row else {
            return Ok(false);
        };
        sqlx::query("UPDATE ki_calls SET topic = $1, topics = $2 WHERE call_id = $3")
            .bind(topics[0].as_str())
            .bind(topics.join(","))
            .bind(call_id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        sqlx::query("DELETE FROM call_topics WHERE call_id = $1")
            .bind(call_id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let mut seen = std::collections::HashSet::new();
        for t in topics.iter().filter(|t| seen.insert(t.as_str())) {
            sqlx::query("INSERT INTO call_topics (call_id, topic, day, desk, channel) VALUES ($1, $2, $3, $4, $5)")
                .bind(call_id)
                .bind(t.as_str())
                .bind(day.as_str())
                .bind(desk.as_str())
                .bind(channel.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        Ok(true)
    }

    /// A call's index row and outcome (`None` if not indexed or opted out).
    pub async fn call(&self, call_id: &str) -> Result<Option<IndexedCall>, StoreError> {
        let row: Option<IndexedCallColumns> = sqlx::query_as(&format!(
            "SELECT k.call_id, k.day, k.desk, k.language, k.topics, k.advisor_id, k.drafted_at_us, \
             k.draft_words, k.recognition_failed, k.decision, k.edit_distance, k.decided_at_us, \
             s.call_id AS sampled_id, k.channel \
             FROM ki_calls k {NOT_OPTED_OUT} LEFT JOIN qa_samples s ON s.call_id = k.call_id \
             WHERE k.call_id = $1"
        ))
        .bind(call_id)
        .fetch_optional(&self.store.pool())
        .await
        .map_err(db)?;
        row.map(IndexedCall::try_from).transpose()
    }

    /// Whether the call is in the QA sample (and not opted out).
    pub async fn is_sampled(&self, call_id: &str) -> Result<bool, StoreError> {
        Ok(sqlx::query(&format!(
            "SELECT k.call_id FROM qa_samples k {NOT_OPTED_OUT} WHERE k.call_id = $1"
        ))
        .bind(call_id)
        .fetch_optional(&self.store.pool())
        .await
        .map_err(db)?
        .is_some())
    }

    /// The QA queue: sampled calls and conversations, not opted out, whose
    /// `ki` (or `chat-analysis-1y`) key still exists (QA cannot read what is
    /// gone), oldest sample first, each with who scored it.
    pub async fn queue(&self) -> Result<Vec<QueueRow>, StoreError> {
        let rows: Vec<QueueColumns> = sqlx::query_as(&format!(
            "SELECT k.call_id, k.channel, k.day, k.desk, k.language, k.topic, s.stratum, s.sampled_at_us, \
             c.started_at_us, c.ended_at_us, r.reviewer, \
             k.recognition_failed, s.reason, q.key_id AS screening_key_id, q.detail_sealed AS screening_sealed \
             FROM qa_samples s JOIN ki_calls k ON k.call_id = s.call_id {NOT_OPTED_OUT} \
             LEFT JOIN qa_reviews r ON r.call_id = s.call_id \
             LEFT JOIN qa_screenings q ON q.call_id = s.call_id AND q.flagged = 1 \
             WHERE EXISTS (SELECT 1 FROM data_keys d WHERE d.call_id = s.call_id \
             AND d.class = {ANALYSIS_CLASS_SQL} AND d.destroyed_at_us IS NULL) \
             ORDER BY s.sampled_at_us, s.call_id, r.reviewer"
        ))
        .fetch_all(&self.store.pool())
        .await
        .map_err(db)?;
        let mut out: Vec<QueueRow> = Vec::new();
        for r in rows {
            if out.last().map(|q| &q.call_id) != Some(&r.call_id) {
                out.push(QueueRow {
                    call_id: r.call_id,
                    channel: r.channel,
                    day: r.day,
                    desk: r.desk,
                    language: r.language,
                    topic: r.topic,
                    stratum: r.stratum,
                    sampled_at_us: r.sampled_at_us,
                    started_at_us: r.started_at_us,
                    ended_at_us: r.ended_at_us,
                    reviewers: Vec::new(),
                    recognition_failed: r.recognition_failed != 0,
                    reason: r.reason,
                    screening: r.screening_key_id.zip(r.screening_sealed),
                    reasons: Vec::new(),
                });
            }
            if let (Some(q), Some(who)) = (out.last_mut(), r.reviewer) {
                q.reviewers.push(who);
            }
        }
        Ok(out)
    }

    /// The undecided drafts of `advisors`' calls that can still be read
    /// (no KI opt-out, `ki` key alive), oldest call first: the review
    /// queues, from the index instead of a scan of every call.
    pub async fn open_drafts(&self, advisors: &[String]) -> Result<Vec<OpenDraft>, StoreError> {
        if advisors.is_empty() {
            return Ok(Vec::new());
        }
        let binds: Vec<String> = (1..=advisors.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT k.call_id, k.advisor_id, c.started_at_us, c.ended_at_us \
             FROM ki_calls k {NOT_OPTED_OUT} \
             WHERE k.channel = 'phone' AND k.decision IS NULL AND k.recognition_failed = 0 AND k.advisor_id IN ({}) \
             AND EXISTS (SELECT 1 FROM data_keys d WHERE d.call_id = k.call_id AND d.class = 'ki' \
             AND d.destroyed_at_us IS NULL) \
             ORDER BY c.started_at_us, k.call_id",
            binds.join(", ")
        );
        let mut q = sqlx::query_as(&sql);
        for a in advisors {
            q = q.bind(a.as_str());
        }
        q.fetch_all(&self.store.pool()).await.map_err(db)
    }

    /// Forgets a call's reporting rows (a data subject's erasure): its
    /// reviews, sample, topics and index row. The stratum counters keep
    /// counting it (they hold no call ids).
    pub async fn forget(&self, call_id: &str) -> Result<(), StoreError> {
        let mut tx = self.store.begin().await?;
        for table in ["qa_reviews", "qa_samples", "qa_screenings", "call_topics", "ki_calls"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE call_id = $1"))
                .bind(call_id)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }

    /// Adds or replaces a reviewer's review of a sampled call. `NotFound`
    /// when the call is not sampled.
    pub async fn upsert_review(&self, v: &QaReviewRow) -> Result<(), StoreError> {
        let mut tx = self.store.begin().await?;
        if sqlx::query("SELECT call_id FROM qa_samples WHERE call_id = $1")
            .bind(v.call_id.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?
            .is_none()
        {
            return Err(StoreError::NotFound(format!("sampled call {}", v.call_id)));
        }
        sqlx::query(
            "INSERT INTO qa_reviews (call_id, reviewer, at_us, correctness, relevance, quality, flag, key_id, \
             note_sealed) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (call_id, reviewer) DO UPDATE \
             SET at_us = excluded.at_us, correctness = excluded.correctness, relevance = excluded.relevance, \
             quality = excluded.quality, flag = excluded.flag, key_id = excluded.key_id, \
             note_sealed = excluded.note_sealed",
        )
        .bind(v.call_id.as_str())
        .bind(v.reviewer.as_str())
        .bind(v.at_us)
        .bind(i64::from(v.correctness))
        .bind(i64::from(v.relevance))
        .bind(i64::from(v.quality))
        .bind(v.flag.as_str())
        .bind(v.key_id.as_str())
        .bind(v.note_sealed.clone())
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    /// A call's screening (none once opted out, or not screened).
    pub async fn screening(&self, call_id: &str) -> Result<Option<ScreeningRow>, StoreError> {
        let row: Option<ScreeningColumns> = sqlx::query_as(&format!(
            "SELECT k.at_us, k.lexicon_version, k.lexicon_hits, k.model_verdict, k.prompt_version, k.flagged, \
             k.key_id, k.detail_sealed FROM qa_screenings k {NOT_OPTED_OUT} WHERE k.call_id = $1"
        ))
        .bind(call_id)
        .fetch_optional(&self.store.pool())
        .await
        .map_err(db)?;
        row.map(|r| {
            Ok(ScreeningRow {
                at_us: r.at_us,
                lexicon_version: u32::try_from(r.lexicon_version)
                    .map_err(|_| StoreError::Corrupt(format!("lexicon_version = {}", r.lexicon_version)))?,
                lexicon_hits: count("lexicon_hits", r.lexicon_hits)?,
                model_verdict: r.model_verdict,
                prompt_version: r.prompt_version,
                flagged: r.flagged != 0,
                key_id: r.key_id,
                detail_sealed: r.detail_sealed,
            })
        })
        .transpose()
    }

    /// A call's reviews, by reviewer (none once opted out).
    pub async fn reviews(&self, call_id: &str) -> Result<Vec<QaReviewRow>, StoreError> {
        let rows: Vec<QaReviewColumns> = sqlx::query_as(&format!(
            "SELECT k.call_id, k.reviewer, k.at_us, k.correctness, k.relevance, k.quality, k.flag, k.key_id, \
             k.note_sealed FROM qa_reviews k {NOT_OPTED_OUT} WHERE k.call_id = $1 ORDER BY k.reviewer"
        ))
        .bind(call_id)
        .fetch_all(&self.store.pool())
        .await
        .map_err(db)?;
        convert(rows)
    }

    /// The drafted calls of the days `from_day..=to_day` (`YYYY-MM-DD`),
    /// and the conversations with the bot's answers (the others hold no KI
    /// output for QA).
    pub async fn report_calls(&self, from_day: &str, to_day: &str) -> Result<Vec<ReportCallRow>, StoreError> {
        let rows: Vec<ReportCallColumns> = sqlx::query_as(&format!(
            "SELECT k.call_id, k.channel, k.topic, k.desk, k.language, k.recognition_failed, k.draft_words, k.decision, \
             k.edit_distance, s.call_id AS sampled_id, q.flagged AS screened \
             FROM ki_calls k {NOT_OPTED_OUT} LEFT JOIN qa_samples s ON s.call_id = k.call_id AND s.reason = 'sample' \
             LEFT JOIN qa_screenings q ON q.call_id = k.call_id \
             WHERE k.day >= $1 AND k.day <= $2 AND (k.channel = 'phone' OR k.draft_words > 0) \
             ORDER BY k.topic, k.call_id"
        ))
        .bind(from_day)
        .bind(to_day)
        .fetch_all(&self.store.pool())
        .await
        .map_err(db)?;
        convert(rows)
    }

    /// The QA reviews of the calls of the days `from_day..=to_day`.
    pub async fn report_reviews(&self, from_day: &str, to_day: &str) -> Result<Vec<ReportReviewRow>, StoreError> {
        let rows: Vec<ReportReviewColumns> = sqlx::query_as(&format!(
            "SELECT k.call_id, k.topic, r.correctness, r.relevance, r.quality, r.flag \
             FROM qa_reviews r JOIN ki_calls k ON k.call_id = r.call_id {NOT_OPTED_OUT} \
             WHERE k.day >= $1 AND k.day <= $2 ORDER BY k.topic, k.call_id, r.reviewer"
        ))
        .bind(from_day)
        .bind(to_day)
        .fetch_all(&self.store.pool())
        .await
        .map_err(db)?;
        convert(rows)
    }

    /// One row per drafted call (or analysed conversation) and topic of the
    /// days `from_day..=to_day` (`YYYY-MM-DD`), ordered by day, desk,
    /// channel, topic: the topic dashboard's input. Those whose KI data is
    /// kept come from their own rows, older ones from the per-day aggregates
    /// their rows were added to when their `ki` (`chat-analysis-1y`) key
    /// expired (opted-out calls and objected conversations from neither).
    pub async fn topic_rows(&self, from_day: &str, to_day: &str) -> Result<Vec<TopicRow>, StoreError> {
        let mut rows: Vec<TopicRow> = sqlx::query_as(&format!(
            "SELECT k.day, k.desk, k.channel, k.topic FROM call_topics k {NOT_OPTED_OUT} \
             WHERE k.day >= $1 AND k.day <= $2"
        ))
        .bind(from_day)
        .bind(to_day)
        .fetch_all(&self.store.pool())
        .await
        .map_err(db)?;
        // Calls whose KI data is gone count from the per-day aggregates.
        let counted: Vec<(String, String, String, String, i64)> =
            sqlx::query_as("SELECT day, desk, channel, topic, calls FROM topic_counts WHERE day >= $1 AND day <= $2")
                .bind(from_day)
                .bind(to_day)
                .fetch_all(&self.store.pool())
                .await
                .map_err(db)?;
        for (day, desk, channel, topic, calls) in counted {
            for _ in 0..calls.max(0) {
                rows.push(TopicRow {
                    day: day.clone(),
                    desk: desk.clone(),
                    channel: channel.clone(),
                    topic: topic.clone(),
                });
            }
        }
        rows.sort();
        Ok(rows)
    }

    /// Every stratum's counters (every drafted call, opted out or not: they
    /// are the sampling's own bookkeeping), by stratum.
    pub async fn strata(&self) -> Result<Vec<StratumRow>, StoreError> {
        let rows: Vec<StratumColumns> = sqlx::query_as("SELECT stratum, seen, sampled FROM qa_strata ORDER BY stratum")
            .fetch_all(&self.store.pool())
            .await
            .map_err(db)?;
        convert(rows)
    }
}
