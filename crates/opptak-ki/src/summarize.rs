//! Draft summaries of transcribed KI calls (issue 5 item 5, R5, R13): the
//! stored transcript is decrypted, every segment PII-redacted
//! ([`opptak_domain::redact`]) — and checked to be clean — before any text
//! goes to the [`DraftWriter`], the draft (summary, taxonomy topics, customer
//! requests, follow-ups) is sealed under the call's `ki` key, stored as a
//! `draft` artifact routed to its retention, and published sealed on
//! `opptak.drafts.v1` for the advisor's review queue.
//!
//! A language model that is down (timeouts, HTTP 5xx) leaves the call
//! pending, to be drafted when it is back; one whose answers stay invalid
//! (bad JSON, topics outside the taxonomy) or that refuses the request gets
//! replaced, for that call, by the embedded drafter, so every KI call has a
//! draft for its advisor, and the draft's `source` says which wrote it.
//!
//! Every stored draft is screened ([`crate::screen`]: the lexicon, then
//! the model's second opinion) and the listener told, with the language
//! detected from the transcript's words (not the configured one) and
//! whether anything was recognised at all, for QA's strata (R6).
//!
//! A customer's opt-out wins at every step: checked before the transcript
//! is read, and again after the model answered (that draft is discarded).
//! A draft stored in the instant before a concurrent opt-out is sealed under
//! the key the opt-out shreds, so it is unreadable either way.

use crate::llm::{DraftRequest, DraftWriter, EmbeddedDrafts, LlmError};
use crate::role::{self, Attempt, Job, Role};
use crate::screen::Screener;
use crate::transcribe::{read_transcript, TranscribeError, TranscriptSegment};
use bytes::Bytes;
use opptak_bus::{Bus, Outgoing};
use opptak_crypto::segment::ArtifactKind;
use opptak_domain::model::{CallFacts, CallId, KeyClass};
use opptak_domain::redact::{redact_from, Channel};
use opptak_domain::summary::{detect_language, Draft, UNDETERMINED};
use opptak_proto::Message;
use opptak_retention::Retention;
use opptak_store::MetadataStore;
use opptak_vault::{Sealing, Vault, VaultError};
use std::sync::Arc;
use tokio::sync::watch;

/// What summarizing a call did.
#[derive(Clone, Debug, PartialEq)]
pub enum SummaryOutcome {
    /// A draft is stored and published.
    Done {
        draft_id: String,
        draft: Draft,
    },
    AlreadyDone,
    /// KI does not run on this call.
    NotKi,
    /// The customer opted out (or the KI data expired): nothing drafted.
    OptedOut,
    /// The call has no transcript yet.
    NoTranscript,
    /// The language model is unavailable; try again later.
    Pending(LlmError),
}

pub use crate::listener::{DraftListener, Drafted};

pub struct Summarizer {
    /// The calls' keys and KI artifacts.
    pub vault: Vault,
    pub bus: Arc<dyn Bus>,
    pub writer: Arc<dyn DraftWriter>,
    /// Writes the draft when the model's answers stay invalid.
    pub fallback: EmbeddedDrafts,
    pub retention: Retention,
    /// `opptak.drafts.v1` (with the deployment's prefix).
    pub topic: String,
    /// The calls' language (`nb`, `en`); empty: guessed from the transcript.
    pub language: String,
    pub taxonomy_version: u32,
    /// Told of each stored draft (see [`DraftListener`]).
    pub listener: Option<Arc<dyn DraftListener>>,
    /// Screens each stored draft before the listener is told.
    pub screener: Arc<Screener>,
}

impl Summarizer {
    fn meta(&self) -> &Arc<dyn MetadataStore> {
        self.vault.meta()
    }

    /// The same summarizer, telling `listener` of every stored draft.
    pub fn with_listener(mut self, listener: Arc<dyn DraftListener>) -> Self {
        self.listener = Some(listener);
        self
    }

    /// Screens `draft` (its text to the model unless `withhold` says why
    /// not) and tells the listener, with the language detected from `segments`.
    async fn tell(
        &self,
        facts: &CallFacts,
        draft: &Draft,
        segments: &[TranscriptSegment],
        withhold: Option<&str>,
    ) -> Result<(), TranscribeError> {
        let Some(l) = &self.listener else {
            return Ok(());
        };
        let language = detect_language(segments.iter().map(|s| s.text.as_str()))
            .map_or(UNDETERMINED, |l| l.as_str())
            .to_owned();
        let recognition_failed = segments.iter().all(|s| s.text.trim().is_empty());
        let screening = self.screener.screen(draft, withhold).await;
        let drafted = Drafted {
            draft,
            language,
            recognition_failed,
            screening: Some(screening),
        };
        l.drafted(facts, &drafted).await.map_err(TranscribeError::Listener)
    }

    /// Drafts one transcribed KI call, once.
    pub async fn summarize_call(&self, call_id: &CallId) -> Result<SummaryOutcome, TranscribeError> {
        let Some(rec) = self.meta().load_call(call_id).await? else {
            return Err(TranscribeError::UnknownCall(call_id.to_string()));
        };
        if !rec.facts.ki_active() {
            return Ok(SummaryOutcome::NotKi);
        }
        if let Some(o) = &rec.opt_out {
            self.vault.purge_ki(call_id, &o.requested_by, o.at_us).await?;
            return Ok(SummaryOutcome::OptedOut);
        }
        let arts = self.meta().artifacts(call_id).await?;
        if arts.iter().any(|a| a.kind == "draft") {
            // The attempt that stored it may have failed before the listener
            // was told; telling it again is harmless (idempotent).
            if self.listener.is_some() {
                let read = match read_draft(&self.vault, call_id).await {
                    Ok(d) => read_transcript(&self.vault, call_id).await.map(|s| (d, s)),
                    Err(e) => Err(e),
                };
                // Not knowing whether this call's redaction was complete,
                // the retry screens with the lexicon alone.
                match read {
                    Ok((d, segments)) => {
                        let why = "a retried call: its redaction is not known here, so nothing sent";
                        self.tell(&rec.facts, &d, &segments, Some(why)).await?
                    }
                    // Opted out or expired since: nothing to index.
                    Err(TranscribeError::Vault(VaultError::KeyDestroyed { .. })) => {}
                    Err(e) => return Err(e),
                }
            }
            return Ok(SummaryOutcome::AlreadyDone);
        }
        let transcript = match read_transcript(&self.vault, call_id).await {
            Ok(s) => s,
            Err(TranscribeError::Vault(VaultError::NoArtifact { .. })) => return Ok(SummaryOutcome::NoTranscript),
            Err(TranscribeError::Vault(VaultError::KeyDestroyed { .. })) => return Ok(SummaryOutcome::OptedOut),
            Err(e) => return Err(e),
        };
        // R13: only redacted text leaves, and redaction is checked, not trusted.
        let (segments, leftovers) = redacted_segments(&transcript);
        let request = DraftRequest {
            language: self.language.clone(),
            segments,
        };
        let asked = if leftovers > 0 {
            // Never sent: the embedded drafter runs here and sends nothing.
            tracing::error!(call_id = %call_id, leftovers, "redaction left identifiers; drafted locally, nothing sent");
            self.fallback.draft(&request).await
        } else {
            self.writer.draft(&request).await
        };
        let draft = match asked {
            Ok(d) => d,
            Err(e) if e.is_transient() => return Ok(SummaryOutcome::Pending(e)),
            Err(e) => {
                tracing::warn!(call_id = %call_id, error = %e, writer = %self.writer.describe(),
                    "no usable draft from the language model; the embedded drafter writes this one");
                self.fallback
                    .draft(&request)
                    .await
                    .map_err(|source| TranscribeError::Draft {
                        call_id: call_id.to_string(),
                        source,
                    })?
            }
        };
        // The opt-out may have come while the model was writing.
        let key_row = self.meta().class_key(call_id, KeyClass::Ki.as_str()).await?;
        let opted_out = self.meta().load_call(call_id).await?.and_then(|r| r.opt_out).is_some();
        let Some(key_row) = key_row.filter(|k| k.destroyed_at_us.is_none() && !opted_out) else {
            tracing::info!(call_id = %call_id, "KI stopped while drafting: draft discarded");
            return Ok(SummaryOutcome::OptedOut);
        };
        let key = self.vault.open_row(call_id, &key_row)?;
        let draft_id = format!("dr-{}", uuid::Uuid::new_v4().simple());
        let sealed = crate::store_ki_artifact(
            &self.vault,
            &self.retention,
            draft_sealing(call_id, &draft_id),
            &key,
            "draft",
            &draft,
        )
        .await?;
        let msg = opptak_proto::v1::DraftWritten {
            call_id: call_id.to_string(),
            draft_id: draft_id.clone(),
            sealed,
            source: draft.source.clone(),
            prompt_version: draft.prompt_version.clone(),
            taxonomy_version: self.taxonomy_version.to_string(),
        };
        self.bus
            .publish_all(vec![Outgoing {
                topic: self.topic.clone(),
                key: Bytes::from(call_id.to_string()),
                payload: Bytes::from(msg.encode_to_vec()),
            }])
            .await?;
        let withhold = (leftovers > 0).then_some("redaction incomplete: nothing sent");
        self.tell(&rec.facts, &draft, &transcript, withhold).await?;
        opptak_telemetry::metrics().drafts_stored.inc();
        if let Some(end) = &rec.end {
            // Wall time against the telephony system's end time: what the
            // advisor waits after hanging up.
            let now = opptak_domain::time::Clock::now_us(&opptak_domain::time::SystemClock);
            if now >= end.ended_at_us {
                let waited = (now - end.ended_at_us) as f64 / 1e6;
                opptak_telemetry::metrics().call_end_to_draft.observe(waited);
            }
        }
        // The number of topics only: a topic is derived from the call's content
        // and must not outlive its KI data in logs or trace spans.
        tracing::info!(call_id = %call_id, %draft_id, source = %draft.source, topics = draft.topics.len(), "draft stored for review");
        Ok(SummaryOutcome::Done { draft_id, draft })
    }
}

/// Reads a call's stored draft back (fails with "key destroyed" after an
/// opt-out or the 30-day expiry).
pub async fn read_draft(vault: &Vault, call_id: &CallId) -> Result<Draft, TranscribeError> {
    Ok(vault.read_json(call_id, "draft", ArtifactKind::Draft).await?)
}

/// What a draft of `call_id` is sealed as (kind, class and id in its header).
fn draft_sealing<'a>(call_id: &'a CallId, draft_id: &'a str) -> Sealing<'a> {
    Sealing {
        call_id,
        class: KeyClass::Ki.as_str(),
        kind: ArtifactKind::Draft,
        artifact_id: draft_id,
    }
}

/// Opens a sealed `DraftWritten.sealed` body with the call's `ki` key.
pub fn open_draft_message(
    key: &opptak_crypto::DataKey,
    msg: &opptak_proto::v1::DraftWritten,
) -> Result<Draft, TranscribeError> {
    let call_id = CallId::parse(&msg.call_id).map_err(|e| VaultError::Integrity {
        recording_id: msg.draft_id.clone(),
        detail: format!("call id: {e}"),
    })?;
    Ok(draft_sealing(&call_id, &msg.draft_id).open_json(key, &msg.sealed)?)
}

/// The summarizer role: every closed transcript (`opptak.transcripts.v1`)
/// of a KI call gets a draft. A language model that is down is retried with
/// backoff and the transcript's record is not acknowledged until its draft
/// is stored, so an outage or a restart loses nothing. The loop is
/// `crate::role`'s.
pub async fn run_role(
    s: Arc<Summarizer>,
    group: &str,
    transcripts_topic: &str,
    shutdown: watch::Receiver<bool>,
) -> Result<u64, TranscribeError> {
    let role = Summarizing(s);
    role::run_role(&role, role.0.bus.as_ref(), group, transcripts_topic, shutdown).await
}

/// The summarizer as a [`Role`].
struct Summarizing(Arc<Summarizer>);

impl Role for Summarizing {
    const WHAT: &'static str = "draft";

    fn started(&self, group: &str, topic: &str) {
        tracing::info!(group, topic, writer = %self.0.writer.describe(), "summarizer started");
    }

    /// Only a transcript's closing record asks for a draft; every other
    /// record is acknowledged as it comes.
    fn job(&self, r: &opptak_bus::Record) -> Job {
        let closing = match opptak_proto::v1::TranscriptSegment::decode(r.payload.as_ref()) {
            Ok(m) if m.last => CallId::parse(&m.call_id).ok(),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(partition = r.partition, offset = r.offset, error = %e, "not a TranscriptSegment; skipped");
                None
            }
        };
        closing.map_or(Job::Skip, Job::Call)
    }

    fn span(&self, call_id: &CallId) -> tracing::Span {
        tracing::info_span!("summarize", call_id = %call_id)
    }

    async fn attempt(&self, call_id: &CallId) -> Result<Attempt, TranscribeError> {
        Ok(match self.0.summarize_call(call_id).await {
            Ok(SummaryOutcome::Pending(why)) => Attempt::Pending(why.to_string()),
            Ok(SummaryOutcome::Done { .. }) => Attempt::Done,
            Ok(_) => Attempt::Final,
            Err(e) => return role::outage_or(e, &self.0.vault).await,
        })
    }
}

/// Where a call stands on the KI path (no content: for operators).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KiState {
    /// KI not requested, or the customer not informed.
    NotKi,
    /// The customer opted out (by whom); every KI artifact shredded.
    OptedOut { by: String, shredded: bool },
    /// The 30-day KI data is gone (its key shredded by the sweeper).
    Expired,
    /// The call is still running.
    InProgress,
    /// Finished, no transcript yet (recognizer down or behind).
    TranscriptionPending,
    /// Transcribed, no draft yet (model down or behind).
    DraftPending,
    /// Draft stored, waiting for the advisor.
    Drafted,
}

impl KiState {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::NotKi => "not-ki",
            Self::OptedOut { .. } => "opted-out",
            Self::Expired => "expired",
            Self::InProgress => "in-progress",
            Self::TranscriptionPending => "transcription-pending",
            Self::DraftPending => "draft-pending",
            Self::Drafted => "drafted",
        }
    }
}

/// The KI state of one call, from the metadata store alone.
pub async fn ki_state(meta: &Arc<dyn MetadataStore>, call_id: &CallId) -> Result<KiState, TranscribeError> {
    let rec = meta
        .load_call(call_id)
        .await?
        .ok_or_else(|| TranscribeError::UnknownCall(call_id.to_string()))?;
    if !rec.facts.ki_active() {
        return Ok(KiState::NotKi);
    }
    let key = meta.class_key(call_id, KeyClass::Ki.as_str()).await?;
    let shredded = key.as_ref().is_some_and(|k| k.destroyed_at_us.is_some());
    if let Some(o) = rec.opt_out {
        return Ok(KiState::OptedOut {
            by: o.requested_by,
            shredded,
        });
    }
    if shredded {
        return Ok(KiState::Expired);
    }
    if !rec.complete {
        return Ok(KiState::InProgress);
    }
    let arts = meta.artifacts(call_id).await?;
    Ok(if arts.iter().any(|a| a.kind == "draft") {
        KiState::Drafted
    } else if arts.iter().any(|a| a.kind == "transcript") {
        KiState::DraftPending
    } else {
        KiState::TranscriptionPending
    })
}

/// Every segment redacted for the channel it was said on, as the language
/// model gets it (`(speaker, start_s, text)`), and how many identifiers a
/// second pass still finds (more than none: nothing is sent). Digits read out
/// are joined on the customer's channel and on a mixed one (the customer may
/// be the one speaking), not on the agent's.
pub(crate) fn redacted_segments(segments: &[TranscriptSegment]) -> (Vec<(String, f32, String)>, usize) {
    let mut out = Vec::with_capacity(segments.len());
    let mut leftovers = 0;
    for s in segments {
        let channel = Channel::from_speaker(&s.speaker);
        let clean = redact_from(&s.text, channel).text;
        leftovers += redact_from(&clean, channel).findings.len();
        let speaker = if s.speaker == "agent" { "agent" } else { "customer" };
        out.push((speaker.to_owned(), s.start_s, clean));
    }
    (out, leftovers)
}

#[cfg(test)]
mod redaction_tests {
    use super::*;

    fn seg(speaker: &str, text: &str) -> TranscriptSegment {
        TranscriptSegment {
            speaker: speaker.into(),
            start_s: 0.0,
            end_s: 1.0,
            text: text.into(),
        }
    }

    /// Issue 16: digits the customer reads out, written with commas, are
    /// one number; the agent's comma lists are left alone; a mono call is
    /// treated as the customer's.
    #[test]
    fn read_out_digits_are_joined_on_the_customer_channel() {
        let said = "Ja, det er 91,23,45,67. Jeg heter Kari Nordmann.";
        let (out, leftovers) = redacted_segments(&[seg("agent", said), seg("customer", said), seg("mixed", said)]);
        assert_eq!(leftovers, 0);
        assert_eq!(out[0].2, "Ja, det er 91,23,45,67. Jeg heter [NAME].");
        assert_eq!(out[1].2, "Ja, det er [PHONE]. Jeg heter [NAME].");
        assert_eq!((out[2].0.as_str(), out[2].2.as_str()), ("customer", out[1].2.as_str()));
    }
}
