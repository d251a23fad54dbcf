//! The advisor's decisions on a draft (R4; issue 6 item 2): edits, approval
//! and rejection, every version kept with its author and time. The texts are
//! sealed under the call's `ki` key (they are KI data, 30 days); the approved
//! summary also becomes the customer-service record — an `approved-summary`
//! artifact under the `record-5y` key, routed to its 5-year retention — and
//! a `SummaryApproved` event on `opptak.summaries.v1` for the contact history.
//! The advisor chooses the topics with the text (the draft's are a proposal).
//! Once approved or rejected a draft is closed; an approved summary can still
//! be amended (rectification, issue 16 section 5): a new version with a
//! reason, by the call's advisor or compliance, sealed under the record key;
//! the record is replaced by one that carries the earlier texts as history,
//! its 5-year clock unchanged, and announced again.

use crate::identity::{Role, User};
use crate::ReviewEdges;
use anyhow::{Context, Result};
use opptak_crypto::segment::ArtifactKind;
use opptak_domain::model::{CallId, KeyClass};
use opptak_domain::summary::Taxonomy;
use opptak_proto::Message;
use opptak_store::reporting::SqlReporting;
use opptak_store::review::{SqlReview, VersionRow};
use opptak_vault::{ReviewKeys, Sealing};

/// What the advisor decides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Save an edited summary (the draft stays open).
    Edit(String),
    /// Approve this summary as the record.
    Approve(String),
    /// Reject the draft, with the reason.
    Reject(String),
}

impl Decision {
    fn kind(&self) -> &'static str {
        match self {
            Decision::Edit(_) => "edit",
            Decision::Approve(_) => "approved",
            Decision::Reject(_) => "rejected",
        }
    }
}

/// Why a decision or an amendment was not recorded: one kind per thing the
/// reviewer can be told (the pages map each to a message of their own); the
/// rest is [`ReviewError::Other`], a fault of the service.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("no such call")]
    UnknownCall,
    #[error("only the call's advisor decides on its draft")]
    NotYourDraft,
    #[error("only the call's advisor or compliance amends its approved summary")]
    NotYourSummary,
    /// KI not run, opted out, expired, or not drafted yet.
    #[error("the call has no draft to review (KI not run, opted out, expired, or not drafted yet)")]
    NoDraft,
    #[error("a rejection needs a reason")]
    NoRejectionReason,
    #[error("the summary is empty")]
    EmptySummary,
    #[error("the text is longer than 20,000 bytes")]
    TooLong,
    #[error("topics: {0}")]
    Topics(String),
    /// Approved or rejected already (`kind` by `by`).
    #[error("the draft is closed: {kind} by {by}")]
    Closed { kind: String, by: String },
    /// Another decision or amendment was written first.
    #[error("another decision on this draft came first; reload")]
    Conflict,
    #[error("the call's KI data is gone (opted out or expired)")]
    KiGone,
    #[error("an amendment needs a reason of at least {MIN_REASON_CHARS} characters")]
    ShortReason,
    #[error("the call has no approved summary to amend")]
    NotApproved,
    #[error("the amendment changes nothing")]
    NoChange,
    /// The record key or the approved summary is gone.
    #[error("the approved summary of this call is gone; nothing to amend")]
    RecordGone,
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl From<opptak_vault::VaultError> for ReviewError {
    fn from(e: opptak_vault::VaultError) -> Self {
        ReviewError::Other(e.into())
    }
}

impl From<opptak_store::StoreError> for ReviewError {
    fn from(e: opptak_store::StoreError) -> Self {
        ReviewError::Other(e.into())
    }
}

/// A version's sealed body (shared with disclosure, which reads versions too).
use opptak_vault::ReviewText as Sealed;

/// The shortest reason an amendment accepts: a word such as "test" is not a
/// reason a compliance review can follow.
pub const MIN_REASON_CHARS: usize = 10;

/// One version as a reviewer sees it (`text` is `None` once its key is gone:
/// the KI key for edits and the approval, the record key for amendments).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    pub version: u64,
    /// `edit`, `approved`, `rejected` or `amended`.
    pub kind: String,
    pub author: String,
    pub at_us: i64,
    pub text: Option<String>,
    /// The topics chosen with this version (`None`: the draft's, or unread).
    pub topics: Option<Vec<String>>,
    /// Why an amendment was made.
    pub reason: Option<String>,
}

pub struct Review {
    edges: ReviewEdges,
    store: SqlReview,
    /// Outcomes for the QA report (decision, edit distance).
    qa: crate::qa::Qa,
    /// The approved topics replace the draft's in the dashboards' rows.
    reporting: SqlReporting,
    taxonomy: Taxonomy,
}

pub fn summaries_topic(edges: &ReviewEdges) -> String {
    format!("{}opptak.summaries.v1", edges.config.topic_prefix)
}

impl Review {
    pub async fn open(edges: &ReviewEdges) -> Result<Self> {
        edges
            .bus
            .create_topic(&summaries_topic(edges), edges.config.partitions)
            .await?;
        Ok(Self {
            edges: edges.clone(),
            store: SqlReview::open(&edges.config.metadata_url).await?,
            qa: crate::qa::Qa::open(edges).await?,
            reporting: SqlReporting::open(&edges.config.metadata_url).await?,
            taxonomy: Taxonomy::default_taxonomy(),
        })
    }

    /// The taxonomy an advisor picks topics from.
    pub fn taxonomy(&self) -> &Taxonomy {
        &self.taxonomy
    }

    /// The versions of a call's summary, oldest first.
    pub async fn versions(&self, call_id: &CallId) -> Result<Vec<Version>> {
        let keys = self.edges.vault.review_keys(call_id).await?;
        let rows = self.store.versions(call_id.as_str()).await?;
        Ok(rows.iter().map(|row| version_of(call_id, row, &keys)).collect())
    }

    /// Records `decision` by `user` (the call's advisor) on the call's
    /// draft, with the draft's topics (or those of the last saved edit).
    pub async fn decide(&self, user: &User, call_id: &CallId, decision: Decision) -> Result<Version, ReviewError> {
        self.decide_with_topics(user, call_id, decision, None).await
    }

    /// Records `decision` by `user` (the call's advisor) on the call's
    /// draft; `topics`, when given, are the advisor's choice from the
    /// taxonomy (saved with an edit, recorded with an approval).
    pub async fn decide_with_topics(
        &self,
        user: &User,
        call_id: &CallId,
        decision: Decision,
        topics: Option<Vec<String>>,
    ) -> Result<Version, ReviewError> {
        let rec = self
            .edges
            .vault
            .meta()
            .load_call(call_id)
            .await?
            .ok_or(ReviewError::UnknownCall)?;
        if user.role != Role::Advisor || rec.facts.advisor_id != user.user_id {
            return Err(ReviewError::NotYourDraft);
        }
        if opptak_ki::summarize::ki_state(self.edges.vault.meta(), call_id)
            .await
            .map_err(anyhow::Error::from)?
            != opptak_ki::summarize::KiState::Drafted
        {
            return Err(ReviewError::NoDraft);
        }
        let text = match &decision {
            Decision::Edit(t) | Decision::Approve(t) | Decision::Reject(t) => t.trim().to_owned(),
        };
        if text.is_empty() {
            return Err(match decision {
                Decision::Reject(_) => ReviewError::NoRejectionReason,
                _ => ReviewError::EmptySummary,
            });
        }
        check_text(&text)?;
        let topics = match (&decision, topics) {
            (Decision::Reject(_), _) | (_, None) => None,
            (_, Some(t)) => Some(self.check_topics(t)?),
        };
        let existing = self.store.versions(call_id.as_str()).await?;
        if let Some(closed) = existing.iter().find(|v| v.kind != "edit") {
            return Err(ReviewError::Closed {
                kind: closed.kind.clone(),
                by: closed.author.clone(),
            });
        }
        let version = existing.last().map_or(1, |v| v.version + 1);
        let ki = self
            .edges
            .vault
            .key(call_id, KeyClass::Ki.as_str())
            .await?
            .ok_or(ReviewError::KiGone)?;
        // An approval without topics takes those of the last saved edit.
        let topics = match (&decision, topics) {
            (Decision::Approve(_), None) => self.versions(call_id).await?.into_iter().rev().find_map(|v| v.topics),
            (_, t) => t,
        };
        let at_us = self.edges.vault.clock().now_us();
        let body = Sealed {
            text: text.clone(),
            topics: topics.clone(),
            reason: None,
        };
        let sealed = version_sealing(call_id, &format!("review/{version}")).seal_json(&ki, &body)?;
        self.store
            .add(&VersionRow {
                call_id: call_id.to_string(),
                version,
                kind: decision.kind().into(),
                author: user.actor(),
                at_us,
                key_id: ki.id().to_owned(),
                sealed,
            })
            .await
            .map_err(|e| match e {
                opptak_store::StoreError::Conflict(_) => ReviewError::Conflict,
                e => e.into(),
            })?;
        match &decision {
            Decision::Approve(_) => {
                // The version (written first: it is what stops a second
                // decision) and the record go together: if the record cannot
                // be written, the version is taken back and the draft stays
                // open, never closed without its record.
                let draft = match self.approve(user, call_id, &text, topics.clone(), version, at_us).await {
                    Ok(d) => d,
                    Err(e) => {
                        self.store.remove(call_id.as_str(), version).await?;
                        return Err(e
                            .context("the approval could not be recorded; the draft stays open")
                            .into());
                    }
                };
                let outcome = crate::qa::DraftOutcome::Approved {
                    draft: &draft,
                    approved: &text,
                };
                self.qa.on_decision(call_id, outcome, at_us).await?;
            }
            Decision::Reject(_) => {
                self.qa
                    .on_decision(call_id, crate::qa::DraftOutcome::Rejected, at_us)
                    .await?
            }
            Decision::Edit(_) => {}
        }
        Ok(Version {
            version,
            kind: decision.kind().into(),
            author: user.actor(),
            at_us,
            text: Some(text),
            topics,
            reason: None,
        })
    }

    /// Amends the approved summary of a call (rectification): `text` and,
    /// when given, `topics` replace the record's, for `reason`. The call's
    /// advisor or a compliance officer may amend; the amendment is a new
    /// version sealed under the record key (it outlives the KI data), the
    /// record is replaced by one carrying the earlier texts as `history`
    /// (its retention clock, counted from the call's end, unchanged), and a
    /// `SummaryApproved` naming the summary it amends is published.
    pub async fn amend(
        &self,
        user: &User,
        call_id: &CallId,
        text: &str,
        topics: Option<Vec<String>>,
        reason: &str,
    ) -> Result<Version, ReviewError> {
        let e = &self.edges;
        let rec = e
            .vault
            .meta()
            .load_call(call_id)
            .await?
            .ok_or(ReviewError::UnknownCall)?;
        let own = user.role == Role::Advisor && rec.facts.advisor_id == user.user_id;
        if !own && user.role != Role::Compliance {
            return Err(ReviewError::NotYourSummary);
        }
        let reason = reason.trim();
        if reason.chars().count() < MIN_REASON_CHARS {
            return Err(ReviewError::ShortReason);
        }
        let text = text.trim();
        if text.is_empty() {
            return Err(ReviewError::EmptySummary);
        }
        check_text(text)?;
        check_text(reason)?;
        let topics = topics.map(|t| self.check_topics(t)).transpose()?;
        let existing = self.store.versions(call_id.as_str()).await?;
        if !existing.iter().any(|v| v.kind == "approved") {
            return Err(ReviewError::NotApproved);
        }
        let kind = ArtifactKind::ApprovedSummary;
        let old = e.vault.artifact(call_id, "approved-summary").await.map_err(|err| {
            tracing::warn!(%call_id, error = %err, "no approved summary to amend");
            ReviewError::RecordGone
        })?;
        let record: serde_json::Value = e
            .vault
            .read_json(call_id, "approved-summary", kind)
            .await
            .context("reading the approved summary")?;
        let old_topics: Vec<String> = serde_json::from_value(record["topics"].clone()).unwrap_or_default();
        let new_topics = topics.clone().unwrap_or_else(|| old_topics.clone());
        if record["summary"].as_str() == Some(text) && new_topics == old_topics {
            return Err(ReviewError::NoChange);
        }
        let key = e
            .vault
            .key(call_id, KeyClass::Record5y.as_str())
            .await?
            .ok_or(ReviewError::RecordGone)?;
        let version = existing.last().map_or(1, |v| v.version + 1);
        let at_us = e.vault.clock().now_us();
        let body = Sealed {
            text: text.to_owned(),
            topics: topics.clone(),
            reason: Some(reason.to_owned()),
        };
        let sealed = Sealing::amendment_version(call_id, &format!("review/{version}")).seal_json(&key, &body)?;
        self.store
            .add(&VersionRow {
                call_id: call_id.to_string(),
                version,
                kind: "amended".into(),
                author: user.actor(),
                at_us,
                key_id: key.id().to_owned(),
                sealed,
            })
            .await
            .map_err(|e| match e {
                opptak_store::StoreError::Conflict(_) => ReviewError::Conflict,
                e => e.into(),
            })?;
        let mut history = record["history"].as_array().cloned().unwrap_or_default();
        history.push(serde_json::json!({
            "version": record["version"],
            "summary": record["summary"],
            "topics": record["topics"],
            "by": record.get("amended_by").unwrap_or(&record["approved_by"]),
            "at_us": record.get("amended_at_us").unwrap_or(&record["approved_at_us"]),
            "reason": record.get("amendment_reason"),
        }));
        let new = serde_json::json!({
            "summary": text,
            "topics": new_topics,
            "approved_by": record["approved_by"],
            "approved_at_us": record["approved_at_us"],
            "version": version,
            "amended_by": user.user_id,
            "amended_at_us": at_us,
            "amendment_reason": reason,
            "history": history,
        });
        let recorded = self
            .write_record(
                call_id,
                &key,
                &serde_json::to_vec(&new).map_err(anyhow::Error::from)?,
                Some(&old.artifact_id),
            )
            .await;
        if let Err(err) = recorded {
            self.store.remove(call_id.as_str(), version).await?;
            return Err(err
                .context("the amendment could not be recorded; the approved summary is unchanged")
                .into());
        }
        if new_topics != old_topics {
            self.reporting.set_topics(call_id.as_str(), &new_topics).await?;
        }
        Ok(Version {
            version,
            kind: "amended".into(),
            author: user.actor(),
            at_us,
            text: Some(text.to_owned()),
            topics,
            reason: Some(reason.to_owned()),
        })
    }

    fn check_topics(&self, topics: Vec<String>) -> Result<Vec<String>, ReviewError> {
        let topics: Vec<String> = topics.into_iter().map(|t| t.trim().to_owned()).collect();
        self.taxonomy
            .check_topics(&topics)
            .map_err(|e| ReviewError::Topics(e.to_string()))?;
        Ok(topics)
    }

    /// The customer-service record: sealed under record-5y, stored, routed,
    /// announced. Returns the draft's summary (for the edit distance).
    async fn approve(
        &self,
        user: &User,
        call_id: &CallId,
        text: &str,
        topics: Option<Vec<String>>,
        version: u64,
        at_us: i64,
    ) -> Result<String> {
        let e = &self.edges;
        let draft = opptak_ki::summarize::read_draft(&e.vault, call_id).await?;
        let key = e
            .vault
            .key_or_create(call_id, KeyClass::Record5y)
            .await?
            .context("the record key of this call was shredded")?;
        let chosen = topics.as_ref().is_some_and(|t| *t != draft.topics);
        let topics = topics.unwrap_or_else(|| draft.topics.clone());
        let body = serde_json::to_vec(&serde_json::json!({
            "summary": text,
            "topics": topics,
            "approved_by": user.user_id,
            "approved_at_us": at_us,
            "version": version,
        }))?;
        self.write_record(call_id, &key, &body, None).await?;
        if chosen {
            self.reporting.set_topics(call_id.as_str(), &topics).await?;
        }
        Ok(draft.summary)
    }

    /// Seals `body` as the call's approved summary (replacing the artifact
    /// `replaces`, for an amendment), routes it and announces it.
    async fn write_record(
        &self,
        call_id: &CallId,
        key: &opptak_crypto::DataKey,
        body: &[u8],
        replaces: Option<&str>,
    ) -> Result<()> {
        let e = &self.edges;
        let id = format!("as-{}", uuid::Uuid::new_v4().simple());
        let what = Sealing {
            call_id,
            class: KeyClass::Record5y.as_str(),
            kind: ArtifactKind::ApprovedSummary,
            artifact_id: &id,
        };
        let path = format!("record/{call_id}/{id}.optk");
        let (_, sealed) = match replaces {
            None => {
                e.vault
                    .store_artifact(what, key, "approved-summary", path, body)
                    .await?
            }
            Some(old) => {
                e.vault
                    .replace_artifact(what, key, "approved-summary", old, path, body)
                    .await?
            }
        };
        e.retention.route(call_id).await?;
        let msg = opptak_proto::v1::SummaryApproved {
            call_id: call_id.to_string(),
            summary_id: id,
            sealed,
            amends_summary_id: replaces.unwrap_or_default().to_owned(),
        };
        e.bus
            .publish(&summaries_topic(e), call_id.as_str().as_bytes(), &msg.encode_to_vec())
            .await?;
        Ok(())
    }
}

/// A version row as a reviewer sees it, opened with whichever of the call's
/// review keys it was sealed under.
fn version_of(call_id: &CallId, row: &VersionRow, keys: &ReviewKeys) -> Version {
    let body = Sealed::open(call_id, row.version, &row.key_id, &row.sealed, keys);
    Version {
        version: row.version,
        kind: row.kind.clone(),
        author: row.author.clone(),
        at_us: row.at_us,
        text: body.as_ref().map(|b| b.text.clone()),
        topics: body.as_ref().and_then(|b| b.topics.clone()),
        reason: body.and_then(|b| b.reason),
    }
}

fn check_text(text: &str) -> Result<(), ReviewError> {
    if text.len() > 20_000 {
        return Err(ReviewError::TooLong);
    }
    Ok(())
}

/// What a version of the advisor's text is sealed as (under the `ki` key).
fn version_sealing<'a>(call_id: &'a CallId, artifact_id: &'a str) -> Sealing<'a> {
    Sealing::review_version(call_id, artifact_id)
}

/// Reads the approved summary of a call (the record; `record-5y` key).
pub async fn read_approved(edges: &ReviewEdges, call_id: &CallId) -> Result<serde_json::Value> {
    Ok(edges
        .vault
        .read_json(call_id, "approved-summary", ArtifactKind::ApprovedSummary)
        .await?)
}

/// One piece of a word diff.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Diff {
    Same(String),
    Removed(String),
    Added(String),
}

/// The word-level difference from `old` to `new` (longest common
/// subsequence); texts over 3,000 words each are shown as replaced whole.
pub fn word_diff(old: &str, new: &str) -> Vec<Diff> {
    let a: Vec<&str> = old.split_whitespace().collect();
    let b: Vec<&str> = new.split_whitespace().collect();
    if a.len() > 3_000 || b.len() > 3_000 {
        return vec![Diff::Removed(a.join(" ")), Diff::Added(b.join(" "))];
    }
    // lcs[i][j]: the LCS length of a[i..] and b[j..].
    let mut lcs = vec![vec![0u16; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut out: Vec<Diff> = Vec::new();
    let push = |out: &mut Vec<Diff>, d: Diff| match (out.last_mut(), d) {
        (Some(Diff::Same(s)), Diff::Same(w))
        | (Some(Diff::Removed(s)), Diff::Removed(w))
        | (Some(Diff::Added(s)), Diff::Added(w)) => {
            s.push(' ');
            s.push_str(&w);
        }
        (_, d) => out.push(d),
    };
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            push(&mut out, Diff::Same(a[i].into()));
            i += 1;
            j += 1;
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            push(&mut out, Diff::Added(b[j].into()));
            j += 1;
        } else {
            push(&mut out, Diff::Removed(a[i].into()));
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_diffs_keep_what_stayed_and_mark_the_rest() {
        assert_eq!(
            word_diff("the customer wants a loan", "the customer wants to move a mortgage"),
            vec![
                Diff::Same("the customer wants".into()),
                Diff::Added("to move".into()),
                Diff::Same("a".into()),
                Diff::Added("mortgage".into()),
                Diff::Removed("loan".into()),
            ]
        );
        assert_eq!(
            word_diff("same words", "same  words"),
            vec![Diff::Same("same words".into())]
        );
        assert_eq!(word_diff("", "new"), vec![Diff::Added("new".into())]);
        assert_eq!(word_diff("old", ""), vec![Diff::Removed("old".into())]);
    }
}
