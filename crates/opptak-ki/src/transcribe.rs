//! Transcribing a finished KI call from its stored audio: the KI copy (or the
//! recording) is decrypted, each channel cut into utterances by voice
//! activity ([`opptak_domain::vad`]) — the channel is the speaker —, every
//! utterance sent to the speech recognizer, and the transcript stored as one
//! format-v2 object under the call's `ki` key, routed to its retention, and
//! published segment by segment, sealed, on `opptak.transcripts.v1`.
//!
//! This is the path that guarantees completeness: a call whose recognizer
//! was down is left pending (nothing stored) and transcribed again later
//! (`Transcriber::transcribe_pending`). A call whose customer opted out of
//! KI is never sent, and its `ki` key is shredded.
//!
//! A call whose speech recognition failed (every utterance refused by the
//! recognizer, e.g. a language the model does not take, or audio that
//! cannot be decoded) gets no transcript; the listener is told, so QA can
//! sample it and listen (R6: failure can be unequal across groups).

pub use crate::error::TranscribeError;

use crate::asr::{AsrError, SpeechRecognizer, Utterance};
use crate::live_calls::LiveCalls;
use crate::role::{self, Attempt, Job, Role};
use bytes::Bytes;
use opptak_bus::{Bus, Outgoing};
use opptak_crypto::segment::ArtifactKind;
use opptak_crypto::DataKey;
use opptak_domain::model::{CallId, ChannelRole, KeyClass};
use opptak_domain::vad::{Vad, VadConfig};
use opptak_proto::Message;
use opptak_retention::Retention;
use opptak_store::MetadataStore;
use opptak_vault::{Sealing, Vault, VaultError, Which};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// One recognised utterance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TranscriptSegment {
    /// `agent`, `customer` or `mixed` (a mono call).
    pub speaker: String,
    /// Seconds from the start of the call.
    pub start_s: f32,
    pub end_s: f32,
    pub text: String,
}

/// What transcribing a call did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Done {
        segments: usize,
    },
    AlreadyDone,
    /// KI does not run on this call (not requested or the customer not informed).
    NotKi,
    /// The customer opted out: nothing was sent, the `ki` key is shredded.
    OptedOut,
    /// The recognizer is unavailable; nothing stored, try again later.
    Pending(AsrError),
    /// Speech recognition failed for good (why, no content): nothing
    /// stored, the listener told.
    RecognitionFailed(String),
}

pub struct Transcriber {
    /// The calls' keys, audio and KI artifacts.
    pub vault: Vault,
    pub bus: Arc<dyn Bus>,
    pub asr: Arc<dyn SpeechRecognizer>,
    pub retention: Retention,
    /// `opptak.transcripts.v1` (with the deployment's prefix).
    pub topic: String,
    pub vad: VadConfig,
    pub language: Option<String>,
    /// Told of calls whose recognition failed (QA samples them).
    pub listener: Option<Arc<dyn crate::listener::DraftListener>>,
}

impl Transcriber {
    fn meta(&self) -> &Arc<dyn MetadataStore> {
        self.vault.meta()
    }

    /// Transcribes one finished call, once.
    pub async fn transcribe_call(&self, call_id: &CallId) -> Result<Outcome, TranscribeError> {
        let rec = self
            .meta()
            .load_call(call_id)
            .await?
            .ok_or_else(|| TranscribeError::UnknownCall(call_id.to_string()))?;
        // KI hears the call only from the moment the customer was told
        // (issue 16, section 6); never told: no KI.
        let Some(heard_from) = rec.facts.ki_from_frame() else {
            return Ok(Outcome::NotKi);
        };
        if let Some(o) = &rec.opt_out {
            // R12: nothing of this call reaches the recognizer; any KI data goes.
            self.vault.purge_ki(call_id, &o.requested_by, o.at_us).await?;
            return Ok(Outcome::OptedOut);
        }
        if self
            .meta()
            .artifacts(call_id)
            .await?
            .iter()
            .any(|a| a.kind == "transcript")
        {
            return Ok(Outcome::AlreadyDone);
        }
        let key = match self.ki_key(call_id).await? {
            Some(k) => k,
            None => return Ok(Outcome::OptedOut),
        };
        // The KI copy if compaction wrote it, else the recording itself.
        let wire = match self.vault.read_artifact_wire(call_id, Which::Ki).await {
            Ok(w) => w,
            Err(VaultError::NoArtifact { .. }) => self.vault.read_artifact_wire(call_id, Which::Recording).await?,
            Err(e) => return Err(e.into()),
        };
        let format = wire.record.facts.format.clone();
        let pcm = match format.decode(&wire.wire) {
            Ok(pcm) => pcm,
            Err(source) => {
                self.recognition_failed(&rec.facts, "the audio cannot be decoded")
                    .await?;
                return Err(TranscribeError::Audio {
                    call_id: call_id.to_string(),
                    source,
                });
            }
        };
        let rate = format.sample_rate_hz();
        let roles = format.channel_roles().to_vec();
        let channels = roles.len();
        let samples: Vec<i16> = pcm.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
        // Utterances of every channel, in time order, from the notice on:
        // the audio before it is never looked at, let alone sent.
        let skip = usize::try_from(heard_from).unwrap_or(usize::MAX);
        let mut utterances = Vec::new();
        for (ch, role) in roles.iter().enumerate() {
            let mono: Vec<i16> = samples.iter().skip(ch).step_by(channels).skip(skip).copied().collect();
            let mut vad = Vad::new(rate, self.vad);
            let mut spans = vad.push(&mono);
            spans.extend(vad.finish());
            for s in spans {
                utterances.push((
                    s.start + heard_from,
                    *role,
                    s.end + heard_from,
                    mono[s.start as usize..(s.end as usize).min(mono.len())].to_vec(),
                ));
            }
        }
        utterances.sort_by_key(|u| u.0);
        let mut segments = Vec::new();
        let (sent, mut refused) = (utterances.len(), 0usize);
        let mut refusal = String::new();
        for (start, role, end, mono) in utterances {
            // An opt-out while this call is transcribed stops it before the
            // next utterance reaches the recognizer; what was recognized is
            // dropped unstored (R12).
            if let Some(o) = self.meta().load_call(call_id).await?.and_then(|r| r.opt_out) {
                tracing::info!(call_id = %call_id, "ki opt-out during transcription: stopped");
                self.vault.purge_ki(call_id, &o.requested_by, o.at_us).await?;
                return Ok(Outcome::OptedOut);
            }
            let u = Utterance {
                pcm16: mono.iter().flat_map(|s| s.to_le_bytes()).collect(),
                sample_rate_hz: rate,
                language: self.language.clone(),
            };
            match self.asr.transcribe(&u).await {
                Ok(t) => {
                    let text = t.text.trim().to_owned();
                    if !text.is_empty() {
                        segments.push(TranscriptSegment {
                            speaker: speaker(role).into(),
                            start_s: start as f32 / rate as f32,
                            end_s: end as f32 / rate as f32,
                            text,
                        });
                    }
                }
                Err(e) if e.is_transient() => {
                    tracing::warn!(call_id = %call_id, error = %e, "speech recognizer unavailable; call left pending");
                    return Ok(Outcome::Pending(e));
                }
                Err(e) => {
                    tracing::warn!(call_id = %call_id, start, error = %e, "utterance refused by the recognizer; skipped");
                    refused += 1;
                    refusal = e.to_string();
                }
            }
        }
        if sent > 0 && refused == sent {
            // Nothing recognised, and not for want of speech: QA listens.
            let why = format!("the recognizer refused all {sent} utterances ({refusal})");
            self.recognition_failed(&rec.facts, &why).await?;
            return Ok(Outcome::RecognitionFailed(why));
        }
        let id = new_transcript_id();
        if !self.store(call_id, &key, &id, &segments, 0).await? {
            return Ok(Outcome::AlreadyDone);
        }
        Ok(Outcome::Done {
            segments: segments.len(),
        })
    }

    /// Tells the listener that `facts`' recognition failed.
    async fn recognition_failed(
        &self,
        facts: &opptak_domain::model::CallFacts,
        why: &str,
    ) -> Result<(), TranscribeError> {
        tracing::warn!(call_id = %facts.call_id, why, "speech recognition failed; no transcript");
        match &self.listener {
            Some(l) => l
                .recognition_failed(facts, why)
                .await
                .map_err(TranscribeError::Listener),
            None => Ok(()),
        }
    }

    /// Transcribes every finished KI call that has no transcript yet
    /// (after an outage of the recognizer); returns the outcomes.
    pub async fn transcribe_pending(&self, call_ids: &[CallId]) -> Result<Vec<Outcome>, TranscribeError> {
        let mut out = Vec::new();
        for id in call_ids {
            out.push(self.transcribe_call(id).await?);
        }
        Ok(out)
    }

    /// The call's `ki` key, created on first use; `None` once shredded.
    pub(crate) async fn ki_key(&self, call_id: &CallId) -> Result<Option<DataKey>, TranscribeError> {
        Ok(self.vault.key_or_create(call_id, KeyClass::Ki).await?)
    }

    /// Seals `segments[first..]` for `opptak.transcripts.v1`, as indexes
    /// `first..` of transcript `id`.
    pub(crate) fn segment_records(
        &self,
        call_id: &CallId,
        key: &DataKey,
        id: &str,
        first: usize,
        segments: &[TranscriptSegment],
    ) -> Result<Vec<Outgoing>, TranscribeError> {
        let mut out = Vec::with_capacity(segments.len());
        for (i, s) in segments.iter().enumerate().skip(first) {
            let artifact_id = format!("{id}/{i}");
            let sealing = Sealing {
                call_id,
                class: KeyClass::Ki.as_str(),
                kind: ArtifactKind::Transcript,
                artifact_id: &artifact_id,
            };
            let msg = opptak_proto::v1::TranscriptSegment {
                call_id: call_id.to_string(),
                transcript_id: id.to_owned(),
                index: i as u32,
                sealed: sealing.seal_json(key, s)?,
                last: false,
                count: 0,
            };
            out.push(self.record(call_id, &msg));
        }
        Ok(out)
    }

    fn record(&self, call_id: &CallId, msg: &opptak_proto::v1::TranscriptSegment) -> Outgoing {
        Outgoing {
            topic: self.topic.clone(),
            key: Bytes::from(call_id.to_string()),
            payload: Bytes::from(msg.encode_to_vec()),
        }
    }

    /// Stores the whole transcript as one object under the `ki` key, routes
    /// its retention, publishes the segments from `published` on (those
    /// before went out live) and the closing record. `false` when the call
    /// already has a transcript (another attempt won; nothing stored).
    pub(crate) async fn store(
        &self,
        call_id: &CallId,
        key: &DataKey,
        id: &str,
        segments: &[TranscriptSegment],
        published: usize,
    ) -> Result<bool, TranscribeError> {
        if self
            .meta()
            .artifacts(call_id)
            .await?
            .iter()
            .any(|a| a.kind == "transcript")
        {
            return Ok(false);
        }
        crate::store_ki_artifact(
            &self.vault,
            &self.retention,
            Sealing {
                call_id,
                class: KeyClass::Ki.as_str(),
                kind: ArtifactKind::Transcript,
                artifact_id: id,
            },
            key,
            "transcript",
            segments,
        )
        .await?;
        // Each segment on the bus, sealed (unreadable once the key goes),
        // then the closing record: the transcript is complete and stored.
        let mut out = self.segment_records(call_id, key, id, published, segments)?;
        out.push(self.record(
            call_id,
            &opptak_proto::v1::TranscriptSegment {
                call_id: call_id.to_string(),
                transcript_id: id.to_owned(),
                index: segments.len() as u32,
                sealed: Vec::new(),
                last: true,
                count: segments.len() as u32,
            },
        ));
        self.bus.publish_all(out).await?;
        opptak_telemetry::metrics().transcripts_stored.inc();
        tracing::info!(call_id = %call_id, transcript_id = %id, segments = segments.len(), "transcript stored");
        Ok(true)
    }
}

pub(crate) fn new_transcript_id() -> String {
    format!("tr-{}", uuid::Uuid::new_v4().simple())
}

/// Reads a stored transcript back (decrypted; fails with "key destroyed" after an opt-out or expiry).
pub async fn read_transcript(vault: &Vault, call_id: &CallId) -> Result<Vec<TranscriptSegment>, TranscribeError> {
    Ok(vault.read_json(call_id, "transcript", ArtifactKind::Transcript).await?)
}

pub(crate) fn speaker(role: ChannelRole) -> &'static str {
    match role {
        ChannelRole::Agent => "agent",
        ChannelRole::Customer => "customer",
        _ => "mixed",
    }
}

/// The transcriber role: every recording stored (`opptak.recordings.v1`) of a
/// KI call is transcribed. A call whose recognizer is down is retried with
/// backoff and its event is not acknowledged until it is done, so a restart
/// or an outage loses nothing; the calls behind it wait (they would fail the
/// same way). The loop is `crate::role`'s.
///
/// With `live`, a call this process is transcribing live is waited for
/// first (it is then usually already done).
pub async fn run_role(
    t: Arc<Transcriber>,
    group: &str,
    recordings_topic: &str,
    live: Option<LiveCalls>,
    shutdown: watch::Receiver<bool>,
) -> Result<u64, TranscribeError> {
    let role = Transcribing { t, live };
    role::run_role(&role, role.t.bus.as_ref(), group, recordings_topic, shutdown).await
}

/// The transcriber as a [`Role`].
struct Transcribing {
    t: Arc<Transcriber>,
    live: Option<LiveCalls>,
}

impl Role for Transcribing {
    const WHAT: &'static str = "transcription";

    fn started(&self, group: &str, topic: &str) {
        tracing::info!(group, topic, asr = %self.t.asr.describe(), "transcriber started");
    }

    fn job(&self, r: &opptak_bus::Record) -> Job {
        let ev = match opptak_proto::v1::RecordingStored::decode(r.payload.as_ref()) {
            Ok(ev) => ev,
            Err(e) => {
                tracing::warn!(partition = r.partition, offset = r.offset, error = %e, "not a RecordingStored; skipped");
                return Job::Ignore;
            }
        };
        match CallId::parse(&ev.call_id) {
            Ok(call_id) => Job::Call(call_id),
            Err(_) => Job::Ignore,
        }
    }

    fn span(&self, call_id: &CallId) -> tracing::Span {
        tracing::info_span!("transcribe", call_id = %call_id)
    }

    async fn ready(&self, call_id: &CallId, shutdown: &mut watch::Receiver<bool>) {
        while self.live.as_ref().is_some_and(|l| l.contains(call_id)) && !*shutdown.borrow() {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    async fn attempt(&self, call_id: &CallId) -> Result<Attempt, TranscribeError> {
        Ok(match self.t.transcribe_call(call_id).await {
            Ok(Outcome::Pending(why)) => Attempt::Pending(why.to_string()),
            Ok(Outcome::Done { .. }) => Attempt::Done,
            Ok(_) => Attempt::Final,
            Err(e) => return role::outage_or(e, &self.t.vault).await,
        })
    }
}
