//! The advisor's decisions on a draft (R4; issue 6 item 2): edits, approval
//! and rejection, every version kept with its author and time. The texts are
//! sealed under the call's `ki` key (they are KI data, 30 days); the approved
//! summary also becomes the customer-service record — an `approved-summary`
//! artifact under the `record-5y` key, routed to its 5-year retention — and
//! a `SummaryApproved` event on `opptak.summaries.v1` for the contact history.
//! Once approved or rejected a draft is closed.

use crate::identity::{Role, User};
use crate::ReviewEdges;
use anyhow::{bail, Context, Result};
use opptak_crypto::segment::ArtifactKind;
use opptak_domain::model::{CallId, KeyClass};
use opptak_proto::Message;
use opptak_store::review::{SqlReview, VersionRow};
use opptak_vault::Sealing;

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

/// A version's sealed body (shared with disclosure, which reads versions too).
use opptak_vault::ReviewText as Sealed;

/// One version as a reviewer sees it (`text` is `None` once the KI key is gone).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    pub version: u64,
    pub kind: String,
    pub author: String,
    pub at_us: i64,
    pub text: Option<String>,
}

pub struct Review {
    edges: ReviewEdges,
    store: SqlReview,
    /// Outcomes for the QA report (decision, edit distance).
    qa: crate::qa::Qa,
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
        })
    }

    /// The versions of a call's summary, oldest first.
    pub async fn versions(&self, call_id: &CallId) -> Result<Vec<Version>> {
        let key = self
            .edges
            .vault
            .key(call_id, KeyClass::Ki.as_str())
            .await
            .ok()
            .flatten();
        let mut out = Vec::new();
        for row in self.store.versions(call_id.as_str()).await? {
            let text = key
                .as_ref()
                .filter(|k| k.id() == row.key_id)
                .and_then(|k| {
                    version_sealing(call_id, &format!("review/{}", row.version))
                        .open_json::<Sealed>(k, &row.sealed)
                        .ok()
                })
                .map(|s| s.text);
            out.push(Version {
                version: row.version,
                kind: row.kind,
                author: row.author,
                at_us: row.at_us,
                text,
            });
        }
        Ok(out)
    }

    /// Records `decision` by `user` (the call's advisor) on the call's draft.
    pub async fn decide(&self, user: &User, call_id: &CallId, decision: Decision) -> Result<Version> {
        let rec = self
            .edges
            .vault
            .meta()
            .load_call(call_id)
            .await?
            .context("no such call")?;
        if user.role != Role::Advisor || rec.facts.advisor_id != user.user_id {
            bail!("only the call's advisor decides on its draft");
        }
        if opptak_ki::summarize::ki_state(self.edges.vault.meta(), call_id).await?
            != opptak_ki::summarize::KiState::Drafted
        {
            bail!("the call has no draft to review (KI not run, opted out, expired, or not drafted yet)");
        }
        let text = match &decision {
            Decision::Edit(t) | Decision::Approve(t) | Decision::Reject(t) => t.trim().to_owned(),
        };
        if text.is_empty() {
            bail!(match decision {
                Decision::Reject(_) => "a rejection needs a reason",
                _ => "the summary is empty",
            });
        }
        if text.len() > 20_000 {
            bail!("the text is longer than 20,000 bytes");
        }
        let existing = self.store.versions(call_id.as_str()).await?;
        if let Some(closed) = existing.iter().find(|v| v.kind != "edit") {
            bail!("the draft is closed: {} by {}", closed.kind, closed.author);
        }
        let version = existing.last().map_or(1, |v| v.version + 1);
        let ki = self
            .edges
            .vault
            .key(call_id, KeyClass::Ki.as_str())
            .await?
            .context("the call's KI data is gone (opted out or expired)")?;
        let at_us = self.edges.vault.clock().now_us();
        let sealed =
            version_sealing(call_id, &format!("review/{version}")).seal_json(&ki, &Sealed { text: text.clone() })?;
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
            .context("another decision on this draft came first; reload")?;
        match &decision {
            Decision::Approve(_) => {
                // The version (written first: it is what stops a second
                // decision) and the record go together: if the record cannot
                // be written, the version is taken back and the draft stays
                // open, never closed without its record.
                let draft = match self.approve(user, call_id, &text, at_us).await {
                    Ok(d) => d,
                    Err(e) => {
                        self.store.remove(call_id.as_str(), version).await?;
                        return Err(e.context("the approval could not be recorded; the draft stays open"));
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
        })
    }

    /// The customer-service record: sealed under record-5y, stored, routed,
    /// announced. Returns the draft's summary (for the edit distance).
    async fn approve(&self, user: &User, call_id: &CallId, text: &str, at_us: i64) -> Result<String> {
        let e = &self.edges;
        let draft = opptak_ki::summarize::read_draft(&e.vault, call_id).await?;
        let key = e
            .vault
            .key_or_create(call_id, KeyClass::Record5y)
            .await?
            .context("the record key of this call was shredded")?;
        let id = format!("as-{}", uuid::Uuid::new_v4().simple());
        let body = serde_json::to_vec(&serde_json::json!({
            "summary": text,
            "topics": draft.topics,
            "approved_by": user.user_id,
            "approved_at_us": at_us,
        }))?;
        let what = Sealing {
            call_id,
            class: KeyClass::Record5y.as_str(),
            kind: ArtifactKind::ApprovedSummary,
            artifact_id: &id,
        };
        let path = format!("record/{call_id}/{id}.optk");
        let (_, sealed) = e
            .vault
            .store_artifact(what, &key, "approved-summary", path, &body)
            .await?;
        e.retention.route(call_id).await?;
        let msg = opptak_proto::v1::SummaryApproved {
            call_id: call_id.to_string(),
            summary_id: id,
            sealed,
        };
        e.bus
            .publish(&summaries_topic(e), call_id.as_str().as_bytes(), &msg.encode_to_vec())
            .await?;
        Ok(draft.summary)
    }
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
