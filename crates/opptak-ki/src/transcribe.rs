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

use crate::asr::{AsrError, SpeechRecognizer, Utterance};
use bytes::Bytes;
use opptak_bus::{Bus, Outgoing};
use opptak_crypto::segment::ArtifactKind;
use opptak_crypto::DataKey;
use opptak_domain::model::{CallId, ChannelRole, KeyClass};
use opptak_domain::vad::{Vad, VadConfig};
use opptak_proto::Message;
use opptak_retention::{Retention, RetentionError};
use opptak_store::{MetadataStore, StoreError};
use opptak_vault::{Sealing, Vault, VaultError, Which};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tracing::Instrument;

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
    Pending(String),
}

#[derive(Debug, thiserror::Error)]
pub enum TranscribeError {
    #[error("no call {0}")]
    UnknownCall(String),
    #[error("reading the audio: {0}")]
    Vault(#[from] VaultError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("bus: {0}")]
    Bus(#[from] opptak_bus::BusError),
    #[error("retention: {0}")]
    Retention(#[from] RetentionError),
    /// The stored audio does not decode in its declared format.
    #[error("decoding the audio of {call_id}: {detail}")]
    Audio { call_id: String, detail: String },
    /// The embedded drafter failed (it runs locally, so this is a bug).
    #[error("embedded draft of {call_id}: {detail}")]
    Draft { call_id: String, detail: String },
    /// The summarizer's [`crate::summarize::DraftListener`] failed.
    #[error("draft listener: {0}")]
    Listener(String),
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
}

impl TranscribeError {
    /// Whether the same attempt can succeed later (a store, bus or KEK
    /// provider that was unreachable), as opposed to a verdict about the
    /// call or its data that a retry does not change.
    pub fn is_transient(&self) -> bool {
        match self {
            TranscribeError::Vault(e) => e.is_transient(),
            TranscribeError::Store(e) | TranscribeError::Retention(RetentionError::Store(e)) => {
                matches!(e, StoreError::Unavailable(_))
            }
            TranscribeError::Bus(_) => true,
            _ => false,
        }
    }
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
        if !rec.facts.ki_active() {
            return Ok(Outcome::NotKi);
        }
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
        let pcm = format.decode(&wire.wire).map_err(|e| TranscribeError::Audio {
            call_id: call_id.to_string(),
            detail: e.to_string(),
        })?;
        let rate = format.sample_rate_hz();
        let roles = format.channel_roles().to_vec();
        let channels = roles.len();
        let samples: Vec<i16> = pcm.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
        // Utterances of every channel, in time order.
        let mut utterances = Vec::new();
        for (ch, role) in roles.iter().enumerate() {
            let mono: Vec<i16> = samples.iter().skip(ch).step_by(channels).copied().collect();
            let mut vad = Vad::new(rate, self.vad);
            let mut spans = vad.push(&mono);
            spans.extend(vad.finish());
            for s in spans {
                utterances.push((
                    s.start,
                    *role,
                    s.end,
                    mono[s.start as usize..(s.end as usize).min(mono.len())].to_vec(),
                ));
            }
        }
        utterances.sort_by_key(|u| u.0);
        let mut segments = Vec::new();
        for (start, role, end, mono) in utterances {
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
                Err(AsrError::Rejected(why)) => {
                    tracing::warn!(call_id = %call_id, start, %why, "utterance refused by the recognizer; skipped");
                }
                Err(e) => {
                    tracing::warn!(call_id = %call_id, error = %e, "speech recognizer unavailable; call left pending");
                    return Ok(Outcome::Pending(e.to_string()));
                }
            }
        }
        let id = new_transcript_id();
        if !self.store(call_id, &key, &id, &segments, 0).await? {
            return Ok(Outcome::AlreadyDone);
        }
        Ok(Outcome::Done {
            segments: segments.len(),
        })
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

/// Attempts of a role at a call that fails with an error (not an outage)
/// before it moves on and leaves the call pending.
pub(crate) const MAX_FAILURES: u32 = 5;

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
/// same way).
///
/// With `live`, a call this process is transcribing live is waited for
/// first (it is then usually already done).
pub async fn run_role(
    t: Arc<Transcriber>,
    group: &str,
    recordings_topic: &str,
    live: Option<crate::live::LiveCalls>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<u64, TranscribeError> {
    let mut sub = t.bus.subscribe(group, &[recordings_topic.to_owned()]).await?;
    let mut done = 0u64;
    tracing::info!(group, topic = recordings_topic, asr = %t.asr.describe(), "transcriber started");
    while !*shutdown.borrow() {
        let records = tokio::select! {
            r = sub.poll(100, std::time::Duration::from_millis(500)) => r?,
            _ = shutdown.changed() => Vec::new(),
        };
        for r in records {
            let ev = match opptak_proto::v1::RecordingStored::decode(r.payload.as_ref()) {
                Ok(ev) => ev,
                Err(e) => {
                    tracing::warn!(partition = r.partition, offset = r.offset, error = %e, "not a RecordingStored; skipped");
                    continue;
                }
            };
            let Ok(call_id) = CallId::parse(&ev.call_id) else {
                continue;
            };
            while live.as_ref().is_some_and(|l| l.contains(&call_id)) && !*shutdown.borrow() {
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_millis(100)) => {}
                    _ = shutdown.changed() => {}
                }
            }
            let span = tracing::info_span!("transcribe", call_id = %call_id);
            let settled = settle(&call_id, "transcription", &mut shutdown, || async {
                Ok(match t.transcribe_call(&call_id).await? {
                    Outcome::Pending(why) => Attempt::Pending(why),
                    Outcome::Done { .. } => Attempt::Done,
                    _ => Attempt::Final,
                })
            })
            .instrument(span)
            .await;
            match settled {
                // Not acknowledged: the next start retries it.
                None => {
                    sub.flush_commits().await?;
                    return Ok(done);
                }
                Some(true) => done += 1,
                Some(false) => {}
            }
            acknowledge(sub.as_mut(), &r)?;
        }
    }
    sub.flush_commits().await?;
    Ok(done)
}

/// Marks `r` done for the role's group. A partition that moved to another
/// member meanwhile (a rebalance) is not an error: the new owner reads the
/// record again and the work is idempotent (a role that stopped here left
/// its process running without it; found by the fault suite, tests/it/fault.rs).
pub(crate) fn acknowledge(
    sub: &mut dyn opptak_bus::Subscription,
    r: &opptak_bus::Record,
) -> Result<(), TranscribeError> {
    match sub.commit(&[r.next_position()]) {
        Err(opptak_bus::BusError::NotAssigned(e)) => {
            tracing::warn!(partition = r.partition, offset = r.offset, error = %e, "offset not stored: partition moved");
            Ok(())
        }
        other => Ok(other?),
    }
}

/// What one attempt of a role at a call came to, for [`settle`].
pub(crate) enum Attempt {
    /// Stored.
    Done,
    /// Nothing to do, or nothing more will help (not KI, opted out, done before).
    Final,
    /// The backend is unavailable; try again later.
    Pending(String),
}

/// Tries `attempt` on a call until it settles: an unavailable backend is
/// retried with backoff (0.5 s doubling to 30 s) for as long as it takes, an
/// error [`MAX_FAILURES`] times, after which the call stays `{what}-pending`
/// (`opptak ki --pending` lists it) and the role moves on. `None` when
/// `shutdown` came first (the caller must not acknowledge the call), else
/// whether the call is done.
pub(crate) async fn settle<F, Fut>(
    call_id: &CallId,
    what: &str,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
    mut attempt: F,
) -> Option<bool>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Attempt, TranscribeError>>,
{
    let mut backoff = std::time::Duration::from_millis(500);
    let mut failures = 0u32;
    loop {
        match attempt().await {
            Ok(Attempt::Done) => return Some(true),
            Ok(Attempt::Final) | Err(TranscribeError::UnknownCall(_)) => return Some(false),
            Ok(Attempt::Pending(why)) => {
                tracing::warn!(call_id = %call_id, %why, retry_in_ms = backoff.as_millis() as u64, "{what} pending");
            }
            Err(e) => {
                failures += 1;
                if failures >= MAX_FAILURES {
                    tracing::error!(call_id = %call_id, error = %e, attempts = failures,
                        "{what} keeps failing; the call stays {what}-pending");
                    return Some(false);
                }
                tracing::warn!(call_id = %call_id, error = %e, retry_in_ms = backoff.as_millis() as u64, "{what} failed; retrying");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            return None;
        }
        backoff = (backoff * 2).min(std::time::Duration::from_secs(30));
    }
}
