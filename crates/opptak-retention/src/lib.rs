//! Retention (R8, R10, R11): every stored artifact of a call lives exactly as
//! long as the policy says, and the bank can show why.
//!
//! - [`Retention::route`]: the policy's decision for each artifact of a call
//!   (class, expiry, tier, rule chain), written to the `retention` table at
//!   call end and again on every fact change (opt-out, reclassification, hold,
//!   extension); archive objects get their retain-until and legal hold.
//! - [`Retention::sweep`]: deletes what expired, shreds each class's key once
//!   its last artifact is gone, and leaves evidence; crash-safe and idempotent.
//! - Legal holds, extensions and reclassifications: [`Retention::place_hold`] and friends.
//!
//! The clock is injected ([`opptak_domain::time::Clock`]), so tests travel in time.

use opptak_domain::model::{CallId, ServiceCategory};
use opptak_domain::retention::{
    ArtifactKind, ConversationRetention, Decision, ExtensionFact, Policy, RetentionFacts, Tier,
};
use opptak_domain::time::Clock;
pub mod tiered;

use opptak_domain::time::utc_time;
use opptak_store::archive::ArchiveStore;
use opptak_store::meta::{
    ArtifactRow, CallRecord, ConversationRecord, ExtensionRow, HoldRow, ReclassRow, RetentionRow,
};
use opptak_store::{BlobStore, MetadataStore, StoreError};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    #[error("no call {0}")]
    UnknownCall(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where retention's state changes are written **before** they are made:
/// the hash-chained audit log (the root crate wires it). Holds, their
/// release, extensions and reclassifications go through it; a change the
/// journal cannot record is not made.
#[async_trait::async_trait]
pub trait Journal: Send + Sync + 'static {
    /// `actor` did `action` (`hold.place`, `hold.release`, `retention.extend`,
    /// `retention.reclassify`) on `subject` (`call:<id>`, `hold:<id>`) because `reason`.
    async fn record(&self, actor: &str, action: &str, subject: &str, reason: &str) -> Result<(), String>;
}

/// Routing, sweeping and holds over the stores, under one policy and clock.
#[derive(Clone)]
pub struct Retention {
    pub meta: Arc<dyn MetadataStore>,
    pub blobs: Arc<dyn BlobStore>,
    pub policy: Arc<Policy>,
    pub clock: Arc<dyn Clock>,
    /// The WORM archive, kept in step with holds and extensions.
    pub archive: Option<Arc<dyn ArchiveStore>>,
    /// The audit log; without one, holds, extensions and reclassifications are refused.
    pub journal: Option<Arc<dyn Journal>>,
}

/// What one sweep did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub deleted: u64,
    pub keys_shredded: u64,
    /// Deletes the archive refused (retain-until not reached); rescheduled.
    pub refused: u64,
    pub spool_objects_deleted: u64,
    /// Stopped early on request (resume by sweeping again).
    pub interrupted: bool,
}

impl Retention {
    pub fn new(
        meta: Arc<dyn MetadataStore>,
        blobs: Arc<dyn BlobStore>,
        policy: Arc<Policy>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            meta,
            blobs,
            policy,
            clock,
            archive: None,
            journal: None,
        }
    }

    /// Records every hold, release, extension and reclassification in `journal` first.
    pub fn with_journal(mut self, journal: Arc<dyn Journal>) -> Self {
        self.journal = Some(journal);
        self
    }

    async fn record(&self, by: &str, action: &str, subject: &str, reason: &str) -> Result<(), RetentionError> {
        let journal = self
            .journal
            .as_ref()
            .ok_or_else(|| RetentionError::Invalid(format!("{action} is refused: no audit log to record it in")))?;
        journal
            .record(by, action, subject, reason)
            .await
            .map_err(|e| RetentionError::Invalid(format!("{action} is refused: the audit log failed: {e}")))
    }

    /// Keeps archive objects' legal holds and retain-until dates in step with
    /// the decisions, and reschedules deletes the archive refuses.
    pub fn with_archive(mut self, archive: Arc<dyn ArchiveStore>) -> Self {
        self.archive = Some(archive);
        self
    }

    /// The facts the policy decides on, from the metadata store.
    pub async fn facts(&self, call_id: &CallId) -> Result<(CallRecord, RetentionFacts), RetentionError> {
        let rec = self
            .meta
            .load_call(call_id)
            .await?
            .ok_or_else(|| RetentionError::UnknownCall(call_id.to_string()))?;
        let holds = self.meta.holds(Some(call_id), true).await?;
        let extension = self.meta.extension_of(call_id).await?;
        let reclass = self.meta.reclassification_of(call_id).await?;
        let facts = RetentionFacts {
            service_category: rec.facts.service_category,
            desk: rec.facts.desk,
            ki_active: rec.facts.ki_active(),
            ended_at_us: rec.end.as_ref().map_or(rec.facts.started_at_us, |e| e.ended_at_us),
            opt_out_at_us: rec.opt_out.as_ref().map(|o| o.at_us),
            reclassified: reclass.and_then(|r| ServiceCategory::parse(&r.service_category).map(|c| (c, r.by_officer))),
            holds: holds.into_iter().map(|h| h.hold_id).collect(),
            extension: extension.map(|e| ExtensionFact {
                years: e.years,
                authority: e.authority,
                case: e.case_ref,
            }),
            conversation: None,
        };
        Ok((rec, facts))
    }

    /// The facts the policy decides a conversation's copies on (issue 17):
    /// its channel, login, advisor and the customer's objection to analysis
    /// (`analysis` from `opptak subject object`, or `chat-analysis` from the
    /// chat system's `AnalysisObjection`), besides what calls have.
    pub async fn conversation_facts(
        &self,
        id: &CallId,
    ) -> Result<(ConversationRecord, RetentionFacts), RetentionError> {
        let rec = self
            .meta
            .load_conversation(id)
            .await?
            .ok_or_else(|| RetentionError::UnknownCall(id.to_string()))?;
        let objected_at_us = if rec.facts.logged_in() {
            self.meta
                .objections(&rec.facts.customer_ref)
                .await?
                .into_iter()
                .filter(|o| o.kind == "analysis" || o.kind == "chat-analysis")
                .map(|o| o.at_us)
                .min()
        } else {
            None
        };
        let holds = self.meta.holds(Some(id), true).await?;
        let extension = self.meta.extension_of(id).await?;
        let reclass = self.meta.reclassification_of(id).await?;
        let facts = RetentionFacts {
            service_category: rec.facts.service_category,
            desk: rec.facts.desk,
            ki_active: false,
            ended_at_us: rec.ended_at_us.unwrap_or(rec.facts.started_at_us),
            opt_out_at_us: None,
            reclassified: reclass.and_then(|r| ServiceCategory::parse(&r.service_category).map(|c| (c, r.by_officer))),
            holds: holds.into_iter().map(|h| h.hold_id).collect(),
            extension: extension.map(|e| ExtensionFact {
                years: e.years,
                authority: e.authority,
                case: e.case_ref,
            }),
            conversation: Some(ConversationRetention {
                channel: rec.facts.channel,
                logged_in: rec.facts.logged_in(),
                advisor: rec.facts.with_advisor(),
                objected_at_us,
            }),
        };
        Ok((rec, facts))
    }

    /// The facts of a call or a conversation, and whether its artifacts are
    /// all written (a compacted recording, a written conversation).
    pub async fn any_facts(&self, id: &CallId) -> Result<(RetentionFacts, bool), RetentionError> {
        match self.facts(id).await {
            Ok((rec, facts)) => Ok((facts, rec.complete)),
            Err(RetentionError::UnknownCall(_)) => {
                let (rec, facts) = self.conversation_facts(id).await?;
                Ok((facts, rec.written_at_us.is_some()))
            }
            Err(e) => Err(e),
        }
    }

    /// The decision for every artifact kind of a call or conversation
    /// (`opptak policy explain`).
    pub async fn explain(&self, call_id: &CallId) -> Result<Vec<Decision>, RetentionError> {
        let (facts, _) = self.any_facts(call_id).await?;
        Ok(self.policy.explain(&facts))
    }

    /// Retention rows for the given stored artifacts of a call.
    pub fn rows(&self, call_id: &CallId, facts: &RetentionFacts, artifacts: &[ArtifactRow]) -> Vec<RetentionRow> {
        let now = self.clock.now_us();
        artifacts
            .iter()
            .filter_map(|a| {
                let kind = ArtifactKind::parse(&a.kind)?;
                let d = self.policy.decide(facts, kind);
                let tier = if d.kept { d.tier } else { tier_of(kind) };
                Some(RetentionRow {
                    artifact_id: a.artifact_id.clone(),
                    call_id: call_id.to_string(),
                    kind: kind.as_str().to_owned(),
                    // The artifact's own key decides what a deletion shreds.
                    class: a.key.key.class.clone(),
                    tier: tier.as_str().to_owned(),
                    location: a.object.as_ref().map(|o| o.path.clone()).unwrap_or_default(),
                    expires_at_us: d.expires_at_us,
                    held: d.held,
                    rules: d.chain.join("\n"),
                    decided_at_us: now,
                    deleted_at_us: None,
                })
            })
            .collect()
    }

    /// Recomputes and stores the retention of every stored artifact of a call
    /// (at call end, and after every fact change).
    pub async fn route(&self, call_id: &CallId) -> Result<Vec<RetentionRow>, RetentionError> {
        let (facts, complete) = self.any_facts(call_id).await?;
        if !complete {
            // Routed when the recording is finished (compaction) or the
            // conversation written; holds and other facts placed meanwhile
            // are read then.
            return Ok(Vec::new());
        }
        let artifacts = self.meta.artifacts(call_id).await?;
        let mut rows = self.rows(call_id, &facts, &artifacts);
        self.sync_archive(&mut rows).await?;
        self.meta.put_retention(&rows).await?;
        Ok(rows)
    }

    /// Archive objects follow the decisions: a legal hold while the call is
    /// held, retain-until moved out by an extension. WORM never shortens: a
    /// decision earlier than the archive's retain-until waits for it.
    async fn sync_archive(&self, rows: &mut [RetentionRow]) -> Result<(), RetentionError> {
        let Some(archive) = &self.archive else { return Ok(()) };
        for row in rows
            .iter_mut()
            .filter(|r| r.tier == Tier::Archive.as_str() && !r.location.is_empty())
        {
            if !row.location.starts_with(tiered::ARCHIVE_PREFIX) {
                continue;
            }
            let state = match archive.retention(&row.location).await {
                Ok(s) => s,
                Err(StoreError::NotFound(_)) => continue,
                Err(e) => return Err(e.into()),
            };
            if state.legal_hold != row.held {
                archive.set_legal_hold(&row.location, row.held).await?;
            }
            if row.expires_at_us > state.retain_until_us {
                archive.extend_retention(&row.location, row.expires_at_us).await?;
            } else if row.expires_at_us < state.retain_until_us && !row.held {
                row.expires_at_us = state.retain_until_us;
                row.rules.push_str(&format!(
                    "\nthe archive keeps it until {} (WORM retain-until cannot be shortened)",
                    utc_time(state.retain_until_us)
                ));
            }
        }
        Ok(())
    }

    /// Re-routes every call, in call-id order from `after` (exclusive), e.g.
    /// after a policy change: pages of 500 calls, 8 at a time. Resumable:
    /// returns how many were done and the last call id of the last whole
    /// page, and stops after the current page when `stop` is set.
    /// `progress` sees the running count and position.
    pub async fn recompute_all(
        &self,
        after: &str,
        stop: &AtomicBool,
        mut progress: impl FnMut(u64, &str),
    ) -> Result<(u64, String), RetentionError> {
        use futures::stream::{self, StreamExt, TryStreamExt};
        let mut last = after.to_owned();
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let ids = self.meta.call_ids(&last, 500).await?;
            let Some(page_last) = ids.last().map(|id| id.to_string()) else {
                break;
            };
            let done = ids.len() as u64;
            stream::iter(ids.into_iter().map(|id| async move { self.route(&id).await }))
                .buffer_unordered(8)
                .try_collect::<Vec<_>>()
                .await?;
            n += done;
            last = page_last;
            progress(n, &last);
        }
        Ok((n, last))
    }

    /// Deletes expired artifacts in batches of `batch` until none is due or
    /// `stop` is set. Each artifact: its object is deleted first, then one
    /// transaction marks it deleted, writes the evidence and — for the last
    /// live artifact of a class — shreds the class's key. A crash between the
    /// two repeats the delete (a missing object is fine) and the transaction.
    pub async fn sweep(
        &self,
        batch: u32,
        stop: &AtomicBool,
        mut progress: impl FnMut(&SweepReport),
    ) -> Result<SweepReport, RetentionError> {
        let mut report = SweepReport::default();
        loop {
            if stop.load(Ordering::Relaxed) {
                report.interrupted = true;
                break;
            }
            let now = self.clock.now_us();
            let due = self.meta.due(now, batch).await?;
            if due.is_empty() {
                break;
            }
            for row in &due {
                if stop.load(Ordering::Relaxed) {
                    report.interrupted = true;
                    return Ok(report);
                }
                if !row.location.is_empty() {
                    match self.blobs.delete(&row.location).await {
                        Ok(()) | Err(StoreError::NotFound(_)) => {}
                        Err(StoreError::Retained(why)) => {
                            // The WORM archive refused (its retain-until or a
                            // legal hold): logged, and rescheduled for then.
                            tracing::warn!(artifact = %row.artifact_id, location = %row.location, %why,
                                "archive refused an expired artifact's deletion; rescheduled");
                            report.refused += 1;
                            self.reschedule(row, &why).await?;
                            continue;
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                if let Some(d) = self.meta.record_deletion(row, now).await? {
                    tracing::info!(call_id = %d.call_id, artifact = %d.artifact_id, kind = %d.kind, rule = %d.rule,
                        key_shredded = d.key_shredded.as_deref().unwrap_or("-"), "expired artifact deleted");
                    report.deleted += 1;
                    report.keys_shredded += d.key_shredded.is_some() as u64;
                    opptak_telemetry::metrics().sweeper_deleted(&d.kind, 1);
                }
            }
            progress(&report);
        }
        if report.keys_shredded > 0 {
            self.meta.scrub_shredded().await?;
        }
        report.spool_objects_deleted = self.collect_spool(stop).await?;
        opptak_telemetry::metrics().sweeper_deleted("spool", report.spool_objects_deleted);
        Ok(report)
    }

    /// After the archive refused a delete: the row waits for the archive's
    /// retain-until (at least a minute from now).
    async fn reschedule(&self, row: &RetentionRow, why: &str) -> Result<(), RetentionError> {
        let until = match &self.archive {
            Some(a) => a.retention(&row.location).await.map(|r| r.retain_until_us).unwrap_or(0),
            None => 0,
        };
        let mut next = row.clone();
        next.expires_at_us = until.max(self.clock.now_us() + 60_000_000);
        next.rules.push_str(&format!(
            "\narchive refused deletion ({why}); retried from {}",
            utc_time(next.expires_at_us)
        ));
        self.meta.put_retention(&[next]).await?;
        Ok(())
    }

    /// Deletes spool objects no segment row points to any more (their
    /// recordings were compacted or expired), once they are over two hours
    /// old (a spool object is written before its rows are committed).
    async fn collect_spool(&self, stop: &AtomicBool) -> Result<u64, RetentionError> {
        let hour_now = self.clock.now_us().div_euclid(3_600_000_000);
        let candidates: Vec<String> = self
            .blobs
            .list("spool/")
            .await?
            .into_iter()
            .filter(|p| spool_hour(p).is_some_and(|h| h < hour_now - 1))
            .collect();
        let mut deleted = 0;
        for chunk in candidates.chunks(500) {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let referenced = self.meta.spool_referenced(chunk).await?;
            for p in chunk.iter().filter(|p| !referenced.contains(*p)) {
                match self.blobs.delete(p).await {
                    Ok(()) | Err(StoreError::NotFound(_)) => deleted += 1,
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(deleted)
    }

    /// Places a legal hold: nothing of the call expires until it is released.
    pub async fn place_hold(
        &self,
        call_id: &CallId,
        case_ref: &str,
        reason: &str,
        by: &str,
    ) -> Result<HoldRow, RetentionError> {
        for (what, v) in [("--case", case_ref), ("--reason", reason), ("--by", by)] {
            if v.trim().is_empty() {
                return Err(RetentionError::Invalid(format!("{what} must not be empty")));
            }
        }
        self.any_facts(call_id).await?;
        self.record(
            by,
            "hold.place",
            &format!("call:{call_id}"),
            &format!("case {case_ref}: {reason}"),
        )
        .await?;
        let now = self.clock.now_us();
        let hold = HoldRow {
            hold_id: format!("hold-{}-{}", now, &call_id.as_str()[..call_id.as_str().len().min(24)]),
            call_id: call_id.to_string(),
            case_ref: case_ref.into(),
            reason: reason.into(),
            placed_by: by.into(),
            placed_at_us: now,
            release_requested_by: None,
            release_requested_at_us: None,
            released_by: None,
            released_at_us: None,
        };
        self.meta.place_hold(&hold).await?;
        tracing::info!(call_id = %call_id, hold_id = %hold.hold_id, case = case_ref, by, "legal hold placed");
        self.route(call_id).await?;
        Ok(hold)
    }

    /// A release: the first officer asks, a second (another) one confirms;
    /// only then does the hold end and the call's retention resume.
    pub async fn release_hold(&self, hold_id: &str, by: &str) -> Result<HoldRow, RetentionError> {
        let now = self.clock.now_us();
        let current = self
            .meta
            .holds(None, false)
            .await?
            .into_iter()
            .find(|h| h.hold_id == hold_id)
            .ok_or_else(|| RetentionError::Invalid(format!("no hold {hold_id}")))?;
        let step = if current.release_requested_by.is_none() {
            "release requested"
        } else {
            "release confirmed"
        };
        self.record(
            by,
            "hold.release",
            &format!("hold:{hold_id}"),
            &format!("{step}; call {}, case {}", current.call_id, current.case_ref),
        )
        .await?;
        let h = if current.release_requested_by.is_none() {
            let h = self.meta.request_hold_release(hold_id, by, now).await?;
            tracing::info!(
                hold_id,
                by,
                "legal hold release requested; a second compliance officer must confirm"
            );
            h
        } else {
            let h = self.meta.confirm_hold_release(hold_id, by, now).await?;
            tracing::info!(hold_id, by, "legal hold released");
            h
        };
        let call_id = CallId::parse(&h.call_id).map_err(|e| RetentionError::Invalid(format!("hold {hold_id}: {e}")))?;
        self.route(&call_id).await?;
        Ok(h)
    }

    /// An authority's extension (MiFID: up to the policy's maximum, 7 years).
    pub async fn extend(
        &self,
        call_id: &CallId,
        years: u32,
        authority: &str,
        case_ref: &str,
        by: &str,
    ) -> Result<Vec<RetentionRow>, RetentionError> {
        let max = match self.policy.extension.max {
            opptak_domain::retention::Period::Years(y) => y,
            _ => 0,
        };
        if years == 0 || years > max {
            return Err(RetentionError::Invalid(format!(
                "--years {years}: the policy allows extensions up to {max} years"
            )));
        }
        self.any_facts(call_id).await?;
        self.record(
            by,
            "retention.extend",
            &format!("call:{call_id}"),
            &format!("{years} years required by {authority}, case {case_ref}"),
        )
        .await?;
        self.meta
            .set_extension(&ExtensionRow {
                call_id: call_id.to_string(),
                years,
                authority: authority.into(),
                case_ref: case_ref.into(),
                requested_by: by.into(),
                at_us: self.clock.now_us(),
            })
            .await?;
        tracing::info!(call_id = %call_id, years, authority, case = case_ref, by, "retention extended");
        self.route(call_id).await
    }

    /// A compliance officer's reclassification of the call's service category.
    pub async fn reclassify(
        &self,
        call_id: &CallId,
        category: ServiceCategory,
        reason: &str,
        by: &str,
    ) -> Result<Vec<RetentionRow>, RetentionError> {
        self.any_facts(call_id).await?;
        self.record(
            by,
            "retention.reclassify",
            &format!("call:{call_id}"),
            &format!("to {category}: {reason}"),
        )
        .await?;
        self.meta
            .set_reclassification(&ReclassRow {
                call_id: call_id.to_string(),
                service_category: category.as_str().into(),
                by_officer: by.into(),
                reason: reason.into(),
                at_us: self.clock.now_us(),
            })
            .await?;
        tracing::info!(call_id = %call_id, %category, by, "call reclassified");
        self.route(call_id).await
    }
}

/// The tier an artifact kind lives on when the policy no longer keeps it.
fn tier_of(kind: ArtifactKind) -> Tier {
    match kind {
        ArtifactKind::ArchiveCopy | ArtifactKind::ChatArchive => Tier::Archive,
        _ => Tier::Hot,
    }
}

/// The hour bucket of a spool object path: `spool/h<hour>/...`.
fn spool_hour(path: &str) -> Option<i64> {
    path.strip_prefix("spool/h")?.split('/').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn spool_hours() {
        assert_eq!(super::spool_hour("spool/h498856/abc-0000000001.optk"), Some(498_856));
        assert_eq!(super::spool_hour("recordings/x"), None);
    }
}
