//! Live transcription (issue 5 item 1): KI calls are transcribed while they
//! run, from the telephony topic itself, in a consumer group of their own.
//!
//! Per call, chunks are put back in order ([`Reassembler`]), decoded, and
//! each channel (the channel is the speaker) runs through a streaming voice
//! activity detector; every utterance is sent to the recognizer as soon as
//! it ends, and each recognised segment is published at once on
//! `opptak.transcripts.v1`, sealed under the call's `ki` key. When the call
//! ends the whole transcript is stored and the closing record published.
//!
//! A `KiOptOut` (R12) stops the call's KI at once: requests in flight are
//! cancelled (their futures dropped, so their connections close and any
//! answer is never read), buffered audio is dropped, and the call's `ki` key
//! is shredded, which makes every segment already published unreadable.
//! Kafka keeps one call's records in order, so no audio after the opt-out
//! has been read, let alone sent, when it is handled.
//!
//! Live is the fast path, not the guarantee: a call this process did not see
//! start (a restart mid-call, a rebalance), a recognizer outage, or a chunk
//! it could not place leaves the call to the batch path
//! ([`crate::transcribe::run_role`]), which transcribes every finished KI
//! call that has no transcript from its stored recording. The batch path
//! waits while a call is being transcribed live by the same process
//! ([`LiveCalls`], which lives in [`crate::live_calls`] so that neither
//! path imports the other; re-exported here).

pub use crate::live_calls::LiveCalls;

use crate::asr::{AsrError, Utterance};
use crate::live_queue::LiveQueue;
use crate::notice::NoticeGate;
use crate::transcribe::{new_transcript_id, TranscribeError, Transcriber, TranscriptSegment};
use opptak_crypto::{DataKey, KeyProvider};
use opptak_domain::model::{AudioFormat, CallId, ChannelRole};
use opptak_domain::reassembly::{Piece, Reassembler, ReassemblyConfig, Rejection};
use opptak_domain::vad::{Span, Vad};
use opptak_proto::convert;
use opptak_proto::v1::{self, telephony_event::Event};
use opptak_proto::Message;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::Instrument;

/// What ended a call's live transcription.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LiveEnd {
    /// The transcript is stored and closed.
    Stored { segments: usize },
    /// The customer opted out: in-flight requests cancelled, `ki` key shredded.
    OptedOut,
    /// Left to the batch path (why).
    Abandoned(String),
}

/// Counters of the live role (for tests, benchmarks and logs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LiveStats {
    pub calls_started: u64,
    pub utterances_sent: u64,
    pub requests_cancelled: u64,
    pub ends: Vec<(String, LiveEnd)>,
}

enum Cmd {
    /// Decoded PCM16 of every channel, one `Vec` per channel.
    Audio(Vec<Vec<i16>>),
    OptOut {
        by: String,
        at_us: i64,
    },
    End,
    /// Leave the call to the batch path (why).
    Abandon(String),
}

struct CallHandle {
    tx: mpsc::UnboundedSender<Cmd>,
    format: AudioFormat,
    reasm: Reassembler<()>,
    chunk_key: Option<DataKey>,
    /// The input partition the call's events arrive on.
    partition: (String, i32),
    /// No audio before the customer's KI notice passes (issue 16, section 6).
    gate: NoticeGate,
}

/// The live transcriber: one per process, fed by [`run_role`].
pub struct Live {
    pub t: Arc<Transcriber>,
    /// KEKs shared with the telephony system, for calls whose chunks it seals.
    pub telephony_keys: Option<Arc<dyn KeyProvider>>,
    pub reassembly: ReassemblyConfig,
    pub calls: LiveCalls,
    /// Utterances of all live calls that may wait for the recognizer at once
    /// ([`LIVE_QUEUE_MAX`]); a call that would queue more is handed to the
    /// batch path whole instead of growing the queue without bound.
    pub queue_max: usize,
    queued: Arc<std::sync::atomic::AtomicUsize>,
    /// Where queued utterances wait for a recognizer slot: those of ended
    /// calls first ([`crate::live_queue`]).
    slots: LiveQueue,
    stats: Arc<Mutex<LiveStats>>,
}

/// The default bound of the live queue: about 4 minutes of speech at a
/// model's real-time pace per slot; beyond it live transcription cannot keep
/// up anyway, and the batch path (which works a call at a time from its
/// recording) takes the call.
pub const LIVE_QUEUE_MAX: usize = 512;

impl Live {
    pub fn new(t: Arc<Transcriber>, telephony_keys: Option<Arc<dyn KeyProvider>>) -> Self {
        let slots = t
            .asr
            .max_concurrency()
            .unwrap_or(crate::asr::AsrConfig::DEFAULT_MAX_CONCURRENCY);
        Self {
            slots: LiveQueue::new(slots, true),
            t,
            telephony_keys,
            reassembly: ReassemblyConfig::default(),
            calls: LiveCalls::default(),
            queue_max: LIVE_QUEUE_MAX,
            queued: Arc::default(),
            stats: Arc::default(),
        }
    }

    pub fn stats(&self) -> LiveStats {
        self.stats.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// `slots` requests to the recognizer at once (instead of its own bound);
    /// with `ended_first` false, utterances are served strictly in the order
    /// they were cut (the benchmark's baseline; not for production).
    pub fn with_slots(mut self, slots: usize, ended_first: bool) -> Self {
        self.slots = LiveQueue::new(slots, ended_first);
        self
    }

    /// The utterances waiting for a recognizer slot, in the order they will
    /// be served: each one's call, and whether that call has ended.
    pub fn waiting(&self) -> Vec<(CallId, bool)> {
        self.slots.waiting()
    }
}

/// The live role: consumes the telephony topic in `group` until `shutdown`.
/// Offsets are committed as records are handled: live state is not durable
/// (a restart hands the calls in progress to the batch path).
pub async fn run_role(
    live: Arc<Live>,
    group: &str,
    input_topic: &str,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<LiveStats, TranscribeError> {
    let mut sub = live.t.bus.subscribe(group, &[input_topic.to_owned()]).await?;
    let mut calls: HashMap<CallId, CallHandle> = HashMap::new();
    // Calls that ended but whose worker still finishes (utterances queued for
    // the recognizer): a `KiOptOut` after the end must still reach it (issue
    // 16: it was dropped, and 5-7 s of audio went to the recognizer 75-88 s
    // after the opt-out).
    let mut finishing: HashMap<CallId, mpsc::UnboundedSender<Cmd>> = HashMap::new();
    // Opt-outs that came before their call's start (separate producers race):
    // the call then never starts live.
    let mut opted_out_early: HashMap<CallId, i64> = HashMap::new();
    // KI notices that came before their call's start: (first frame KI may
    // hear, in µs of the call's audio; when seen).
    let mut noticed_early: HashMap<CallId, (u64, i64)> = HashMap::new();
    let mut workers = JoinSet::new();
    tracing::info!(group, topic = input_topic, asr = %live.t.asr.describe(), "live transcriber started");
    while !*shutdown.borrow() {
        let records = tokio::select! {
            r = sub.poll(200, std::time::Duration::from_millis(200)) => r?,
            _ = shutdown.changed() => Vec::new(),
        };
        let mut positions: BTreeMap<(String, i32), i64> = BTreeMap::new();
        for r in records {
            positions.insert((r.topic.clone(), r.partition), r.offset + 1);
            let Ok(ev) = v1::TelephonyEvent::decode(r.payload.as_ref()) else {
                continue; // the recorder dead-letters it
            };
            let Ok(call_id) = CallId::parse(&ev.call_id) else {
                continue;
            };
            match ev.event {
                Some(Event::CallStarted(s)) => {
                    if calls.contains_key(&call_id) || finishing.contains_key(&call_id) {
                        continue;
                    }
                    let Ok(facts) = convert::call_facts(call_id.clone(), &s) else {
                        continue;
                    };
                    // KI requested: the worker starts, and hears the call from
                    // the customer's notice on (at once if told at the start).
                    if !facts.ki_enabled {
                        continue;
                    }
                    let mut heard_from = facts.ki_from_frame();
                    if heard_from.is_none() {
                        // A notice that came first, here or (kept by the recorder) elsewhere.
                        let early = match noticed_early.remove(&call_id) {
                            Some((us, _)) => Some(us),
                            None => live
                                .t
                                .vault
                                .meta()
                                .early_ki_notice(&call_id)
                                .await
                                .ok()
                                .flatten()
                                .map(|n| n.offset_us),
                        };
                        heard_from = early.map(|us| facts.format.first_frame_at(us));
                    }
                    // Also when another process saw the opt-out first (the
                    // recorder keeps it for the call), or the customer objected
                    // to KI before and gave no new consent in this call. When
                    // the store cannot say, not live: the batch path decides
                    // from the call's stored opt-out.
                    let meta = live.t.vault.meta();
                    let kept = !matches!(meta.early_opt_out(&call_id).await, Ok(None))
                        || (!s.ki_consent_renewed
                            && meta.objections(&s.customer_ref).await.map_or(true, |o| !o.is_empty()));
                    if opted_out_early.remove(&call_id).is_some() || kept {
                        tracing::info!(call_id = %call_id, "not transcribed live: the customer opted out of or objected to KI");
                        continue;
                    }
                    let chunk_key = match &s.telephony_key {
                        Some(tk) => match open_telephony_key(&live, &call_id, tk) {
                            Some(k) => Some(k),
                            None => continue, // left to the batch path
                        },
                        None => None,
                    };
                    let (tx, rx) = mpsc::unbounded_channel();
                    live.calls.insert(call_id.clone());
                    if let Ok(mut st) = live.stats.lock() {
                        st.calls_started += 1;
                    }
                    // Everything the worker logs (the recognizer's requests
                    // too) carries the call id.
                    let span = tracing::info_span!("live_call", call_id = %call_id);
                    workers
                        .spawn(call_worker(live.clone(), call_id.clone(), facts.format.clone(), rx).instrument(span));
                    calls.insert(
                        call_id,
                        CallHandle {
                            tx,
                            reasm: Reassembler::new(facts.format.clone(), live.reassembly),
                            format: facts.format.clone(),
                            chunk_key,
                            partition: (r.topic.clone(), r.partition),
                            gate: NoticeGate::new(
                                facts.format.channels().into(),
                                heard_from,
                                facts.format.sample_rate_hz(),
                            ),
                        },
                    );
                }
                Some(Event::AudioChunk(c)) => {
                    if calls.get(&call_id).is_some_and(|h| h.tx.is_closed()) {
                        // Its worker gave the call up to the batch path.
                        calls.remove(&call_id);
                    }
                    let Some(h) = calls.get_mut(&call_id) else { continue };
                    let payload = match (&h.chunk_key, c.sealed_payload.is_empty()) {
                        (Some(k), false) => {
                            match opptak_crypto::chunk::open(k, call_id.as_str(), c.sequence, &c.sealed_payload) {
                                Ok(p) => p,
                                Err(_) => continue, // dead-lettered by the recorder; a gap here
                            }
                        }
                        _ => c.payload.clone(),
                    };
                    let offset = c.offset.as_ref().and_then(convert::duration_micros);
                    let mut offered = h.reasm.offer(c.sequence, &payload, offset, ());
                    if matches!(offered, Err(Rejection::OutsideWindow { .. })) {
                        h.reasm.close_oldest_hole();
                        offered = h.reasm.offer(c.sequence, &payload, offset, ());
                    }
                    if offered.is_err() {
                        continue;
                    }
                    let pieces = h.reasm.drain();
                    send_pieces(h, pieces);
                }
                Some(Event::KiNotice(n)) => {
                    // Refused (no offset) or after the end: the recorder dead-letters it.
                    let Ok(n) = convert::ki_notice(&n, 0) else { continue };
                    if let Some(h) = calls.get_mut(&call_id) {
                        match h.gate.notice(h.format.first_frame_at(n.offset_us)) {
                            Ok(held) => forward(h, held),
                            Err(why) => {
                                let _ = h.tx.send(Cmd::Abandon(why));
                            }
                        }
                    } else if !finishing.contains_key(&call_id) {
                        noticed_early.insert(call_id.clone(), (n.offset_us, live.t.vault.clock().now_us()));
                    }
                }
                Some(Event::KiOptOut(o)) => {
                    let at_us =
                        o.at.as_ref()
                            .map(convert::micros)
                            .unwrap_or_else(|| live.t.vault.clock().now_us());
                    let cmd = Cmd::OptOut {
                        by: o.requested_by.clone(),
                        at_us,
                    };
                    if let Some(h) = calls.remove(&call_id) {
                        let _ = h.tx.send(cmd);
                    } else if let Some(tx) = finishing.remove(&call_id) {
                        // Ended, still finishing: its queued and in-flight
                        // requests stop now.
                        let _ = tx.send(cmd);
                    } else {
                        // Before its start, or a call this process never saw:
                        // the recorder keeps the opt-out for the call.
                        opted_out_early.insert(call_id.clone(), live.t.vault.clock().now_us());
                    }
                }
                Some(Event::CallEnded(e)) if e.reason == v1::EndReason::IdleTimeout as i32 => {
                    // opptak's own idle end, which the recorder may refuse
                    // (input came since): the batch path transcribes whatever
                    // recording results.
                    if let Some(h) = calls.remove(&call_id) {
                        let _ = h.tx.send(Cmd::Abandon("no input for the idle timeout".into()));
                    }
                }
                Some(Event::CallEnded(e)) => {
                    if calls.get(&call_id).is_some_and(|h| !h.gate.open()) {
                        // Never told: nothing was heard, nothing is stored live.
                        if let Some(h) = calls.remove(&call_id) {
                            let _ = h.tx.send(Cmd::Abandon("the customer was never told KI is used".into()));
                        }
                    } else if let Some(mut h) = calls.remove(&call_id) {
                        // A refused end (far past what was seen) is dead-lettered by the
                        // recorder; the transcript ends with what arrived either way.
                        let _ = h.reasm.finish(if e.no_audio { None } else { Some(e.last_sequence) });
                        let pieces = h.reasm.drain();
                        send_pieces(&mut h, pieces);
                        let _ = h.tx.send(Cmd::End);
                        finishing.insert(call_id, h.tx);
                    }
                }
                Some(Event::CallContext(c)) => {
                    // Desk, advisor and service are the recorder's (KI
                    // continues as started: a context never turns KI on).
                    // A customer named now who objected to KI before stops
                    // it, as at the start; the recorder keeps the opt-out.
                    let Ok(change) = convert::call_context(&c, 0) else {
                        continue;
                    };
                    let Some(customer) = change.customer_ref else { continue };
                    if !calls.contains_key(&call_id) && !finishing.contains_key(&call_id) {
                        continue;
                    }
                    let meta = live.t.vault.meta();
                    if meta.objections(&customer).await.map_or(true, |o| !o.is_empty()) {
                        tracing::info!(call_id = %call_id, "the customer named by a call context objected to KI: live transcription stops");
                        let cmd = Cmd::OptOut {
                            by: format!("the customer's objection (customer named by {})", change.by),
                            at_us: live.t.vault.clock().now_us(),
                        };
                        if let Some(h) = calls.remove(&call_id) {
                            let _ = h.tx.send(cmd);
                        } else if let Some(tx) = finishing.remove(&call_id) {
                            let _ = tx.send(cmd);
                        }
                    }
                }
                // Retention only (the recorder applies it).
                Some(Event::Reclassification(_)) | None => {}
            }
        }
        // A rebalance moved partitions to another transcriber: the rest of
        // their calls goes there, where the calls were not seen starting, so
        // an end never comes here. Those calls go to the batch path now
        // (without this their workers waited for ever, and the batch path of
        // this process with them).
        if let Ok(Some(assigned)) = sub.assigned() {
            calls.retain(|_, h| {
                let owned = assigned.iter().any(|(t, p)| *t == h.partition.0 && *p == h.partition.1);
                if !owned {
                    let _ =
                        h.tx.send(Cmd::Abandon("its partition moved to another transcriber".into()));
                }
                owned
            });
        }
        // Workers that finished no longer take an opt-out; early opt-outs
        // whose call never came here are forgotten after a day.
        finishing.retain(|_, tx| !tx.is_closed());
        let day_ago = live.t.vault.clock().now_us() - 86_400_000_000;
        opted_out_early.retain(|_, seen| *seen > day_ago);
        noticed_early.retain(|_, (_, seen)| *seen > day_ago);
        // Reap finished workers.
        while let Some(done) = workers.try_join_next() {
            if let Err(e) = done {
                tracing::warn!(error = %e, "live call worker failed");
            }
        }
        let positions: Vec<opptak_bus::Position> = positions
            .into_iter()
            .map(|((topic, partition), next_offset)| opptak_bus::Position {
                topic,
                partition,
                next_offset,
            })
            .collect();
        if !positions.is_empty() {
            if let Err(e) = sub.commit(&positions) {
                tracing::warn!(error = %e, "live offsets not stored");
            }
        }
    }
    // Calls in progress are abandoned to the batch path.
    drop(calls);
    while workers.join_next().await.is_some() {}
    sub.flush_commits().await?;
    Ok(live.stats())
}

fn send_pieces(h: &mut CallHandle, pieces: Vec<Piece<()>>) {
    let channels = h.format.channels().max(1) as usize;
    for p in pieces {
        let pcm: Vec<i16> = match p {
            Piece::Audio { wire, .. } => match h.format.decode(&wire) {
                Ok(bytes) => bytes
                    .chunks_exact(2)
                    .map(|b| i16::from_le_bytes([b[0], b[1]]))
                    .collect(),
                Err(_) => continue,
            },
            // A hole on the timeline: silence, so times stay true. A hole of
            // more than a minute is not padded: the batch path takes the call.
            Piece::Gap(g) if g.frames > 60 * u64::from(h.format.sample_rate_hz()) => {
                let _ =
                    h.tx.send(Cmd::Abandon(format!("a gap of {} frames in the audio", g.frames)));
                return;
            }
            Piece::Gap(g) => vec![0; g.frames as usize * channels],
        };
        let pcm = h.gate.admit(pcm);
        forward(h, pcm);
    }
}

/// Hands interleaved PCM that passed the notice gate to the call's worker, one `Vec` per channel.
fn forward(h: &CallHandle, pcm: Option<Vec<i16>>) {
    let channels = h.format.channels().max(1) as usize;
    if let Some(pcm) = pcm {
        let mut per: Vec<Vec<i16>> = vec![Vec::with_capacity(pcm.len() / channels); channels];
        for frame in pcm.chunks_exact(channels) {
            for (ch, s) in frame.iter().enumerate() {
                per[ch].push(*s);
            }
        }
        let _ = h.tx.send(Cmd::Audio(per));
    }
}

fn open_telephony_key(live: &Live, call_id: &CallId, tk: &v1::TelephonyKey) -> Option<DataKey> {
    opptak_vault::open_telephony_key(live.telephony_keys.as_ref()?.as_ref(), call_id, tk).ok()
}

/// One channel's audio since `base` (sample index from the call start).
struct Channel {
    role: ChannelRole,
    vad: Vad,
    base: u64,
    samples: Vec<i16>,
}

impl Channel {
    fn cut(&self, span: Span) -> Vec<i16> {
        let from = span.start.saturating_sub(self.base) as usize;
        let to = (span.end.saturating_sub(self.base) as usize).min(self.samples.len());
        self.samples.get(from..to).map(<[i16]>::to_vec).unwrap_or_default()
    }

    fn trim(&mut self) {
        let keep = self.vad.keep_from();
        if keep > self.base {
            let drop = ((keep - self.base) as usize).min(self.samples.len());
            self.samples.drain(..drop);
            self.base += drop as u64;
        }
    }
}

type Heard = (usize, ChannelRole, u64, u64, Result<crate::asr::Transcript, AsrError>);

/// Transcribes one call live; ends on `End`, `OptOut`, a recognizer outage,
/// or the feed going away (a shutdown).
async fn call_worker(live: Arc<Live>, call_id: CallId, format: AudioFormat, mut rx: mpsc::UnboundedReceiver<Cmd>) {
    let end = work(&live, &call_id, &format, &mut rx).await;
    let end = match end {
        Ok(end) => end,
        Err(e) => LiveEnd::Abandoned(e.to_string()),
    };
    match &end {
        LiveEnd::Abandoned(why) => {
            tracing::warn!(call_id = %call_id, %why, "live transcription abandoned; the batch path transcribes the call")
        }
        LiveEnd::OptedOut => tracing::info!(call_id = %call_id, "live transcription stopped by a KI opt-out"),
        LiveEnd::Stored { segments } => tracing::debug!(call_id = %call_id, segments, "live transcript stored"),
    }
    if let Ok(mut st) = live.stats.lock() {
        st.ends.push((call_id.to_string(), end));
    }
    live.slots.forget(&call_id);
    live.calls.remove(&call_id);
}

async fn work(
    live: &Live,
    call_id: &CallId,
    format: &AudioFormat,
    rx: &mut mpsc::UnboundedReceiver<Cmd>,
) -> Result<LiveEnd, TranscribeError> {
    let t = &live.t;
    let rate = format.sample_rate_hz();
    let mut channels: Vec<Channel> = format
        .channel_roles()
        .iter()
        .map(|role| Channel {
            role: *role,
            vad: Vad::new(rate, t.vad),
            base: 0,
            samples: Vec::new(),
        })
        .collect();
    let mut inflight: JoinSet<Heard> = JoinSet::new();
    let mut ordinal = 0usize;
    // Results by ordinal, published in ordinal order.
    let mut heard: BTreeMap<usize, Option<TranscriptSegment>> = BTreeMap::new();
    let mut next = 0usize;
    let mut segments: Vec<TranscriptSegment> = Vec::new();
    let mut key: Option<DataKey> = None;
    let transcript_id = new_transcript_id();
    let mut ended = false;
    // After `End` the feed stays open for one command: a late `OptOut`.
    let mut feed_open = true;
    loop {
        if ended && inflight.is_empty() {
            break;
        }
        tokio::select! {
            cmd = rx.recv(), if feed_open => match cmd {
                Some(Cmd::Audio(per)) => {
                    for (ch, pcm) in channels.iter_mut().zip(per) {
                        ch.samples.extend_from_slice(&pcm);
                        let spans = ch.vad.push(&pcm);
                        for span in spans {
                            if !spawn_utterance(live, call_id, &mut inflight, ordinal, ch, span, rate) {
                                inflight.abort_all();
                                return Ok(LiveEnd::Abandoned(queue_full(live)));
                            }
                            ordinal += 1;
                        }
                        ch.trim();
                    }
                }
                Some(Cmd::OptOut { by, at_us }) => {
                    let cancelled = inflight.len() as u64;
                    inflight.abort_all();
                    if let Ok(mut st) = live.stats.lock() {
                        st.requests_cancelled += cancelled;
                    }
                    t.vault.purge_ki(call_id, &by, at_us).await?;
                    return Ok(LiveEnd::OptedOut);
                }
                Some(Cmd::End) if ended => {}
                Some(Cmd::End) => {
                    for ch in channels.iter_mut() {
                        if let Some(span) = ch.vad.finish() {
                            if !spawn_utterance(live, call_id, &mut inflight, ordinal, ch, span, rate) {
                                inflight.abort_all();
                                return Ok(LiveEnd::Abandoned(queue_full(live)));
                            }
                            ordinal += 1;
                        }
                    }
                    live.slots.ended(call_id);
                    ended = true;
                }
                Some(Cmd::Abandon(why)) => {
                    inflight.abort_all();
                    return Ok(LiveEnd::Abandoned(why));
                }
                None if ended => feed_open = false,
                None => {
                    inflight.abort_all();
                    return Ok(LiveEnd::Abandoned("shut down mid-call".into()));
                }
            },
            Some(done) = inflight.join_next(), if !inflight.is_empty() => {
                let Ok((n, role, start, end, result)) = done else { continue };
                let seg = match result {
                    Ok(tr) => {
                        let text = tr.text.trim().to_owned();
                        (!text.is_empty()).then(|| TranscriptSegment {
                            speaker: crate::transcribe::speaker(role).into(),
                            start_s: start as f32 / rate as f32,
                            end_s: end as f32 / rate as f32,
                            text,
                        })
                    }
                    Err(e) if e.is_transient() => {
                        inflight.abort_all();
                        return Ok(LiveEnd::Abandoned(format!("speech recognizer unavailable: {e}")));
                    }
                    Err(e) => {
                        tracing::warn!(call_id = %call_id, start, error = %e, "utterance refused by the recognizer; skipped");
                        None
                    }
                };
                heard.insert(n, seg);
                // Publish what is contiguous, sealed under the ki key.
                let mut ready = Vec::new();
                while let Some(s) = heard.remove(&next) {
                    next += 1;
                    if let Some(s) = s {
                        ready.push(s);
                    }
                }
                if !ready.is_empty() {
                    if key.is_none() {
                        key = t.ki_key(call_id).await?;
                    }
                    let Some(k) = &key else {
                        // Shredded: an opt-out recorded elsewhere. Stop.
                        inflight.abort_all();
                        return Ok(LiveEnd::OptedOut);
                    };
                    let first = segments.len();
                    segments.extend(ready);
                    let out = t.segment_records(call_id, k, &transcript_id, first, &segments)?;
                    t.bus.publish_all(out).await?;
                }
            }
        }
    }
    if key.is_none() {
        key = t.ki_key(call_id).await?;
    }
    let Some(k) = key else {
        return Ok(LiveEnd::OptedOut);
    };
    // Opted out after the end, before this was stored?
    if let Some(rec) = t.vault.meta().load_call(call_id).await? {
        if let Some(o) = rec.opt_out {
            t.vault.purge_ki(call_id, &o.requested_by, o.at_us).await?;
            return Ok(LiveEnd::OptedOut);
        }
    }
    let published = segments.len();
    // Stored in time order; the feed's indexes follow the order utterances ended.
    let mut stored = segments.clone();
    stored.sort_by(|a, b| a.start_s.total_cmp(&b.start_s));
    if t.store(call_id, &k, &transcript_id, &stored, published).await? {
        Ok(LiveEnd::Stored { segments: published })
    } else {
        Ok(LiveEnd::Abandoned("a transcript was stored by another attempt".into()))
    }
}

fn queue_full(live: &Live) -> String {
    format!(
        "the live queue is full ({} utterances wait for the recognizer): the batch path transcribes the call",
        live.queue_max
    )
}

/// Counts an utterance in the live queue until its task ends (answered,
/// failed or cancelled).
struct Queued(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for Queued {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Sends one utterance to the recognizer; `false` (nothing sent) when the
/// live queue is full.
fn spawn_utterance(
    live: &Live,
    call_id: &CallId,
    inflight: &mut JoinSet<Heard>,
    n: usize,
    ch: &Channel,
    span: Span,
    rate: u32,
) -> bool {
    use std::sync::atomic::Ordering;
    if live.queued.fetch_add(1, Ordering::SeqCst) >= live.queue_max {
        live.queued.fetch_sub(1, Ordering::SeqCst);
        return false;
    }
    let queued = Queued(live.queued.clone());
    // Its place in the queue is taken now, in the order of the audio.
    let ticket = live.slots.enqueue(call_id);
    let pcm = ch.cut(span);
    let u = Utterance {
        pcm16: pcm.iter().flat_map(|s| s.to_le_bytes()).collect(),
        sample_rate_hz: rate,
        language: live.t.language.clone(),
    };
    if let Ok(mut st) = live.stats.lock() {
        st.utterances_sent += 1;
    }
    let asr = live.t.asr.clone();
    let role = ch.role;
    inflight.spawn(
        async move {
            let _queued = queued;
            let _slot = ticket.slot().await;
            let heard = crate::live_queue::in_slot(asr.transcribe(&u)).await;
            (n, role, span.start, span.end, heard)
        }
        .in_current_span(),
    );
    true
}
