//! One recording session: RTP of the two recorded streams in, the
//! telephony contract's events out.
//!
//! Channel 0 is the agent and channel 1 the customer (from the metadata).
//! Each stream's packets pass its [`JitterBuffer`], then are placed on the
//! call's timeline in frames (one sample per channel at the codec's rate:
//! 8 kHz for G.711, 8 or 16 kHz for L16; frame 0 is the session's first
//! audio packet). A packet holds as many frames as its payload has samples
//! (bytes per sample by codec):
//!
//! - the first packet of a stream is placed by its arrival time after the
//!   session's first packet, rounded to whole packets (so two streams whose
//!   first packets arrive together start together);
//! - later packets by their RTP timestamp relative to that anchor, unless
//!   the timestamp disagrees with the arrival time by more than
//!   [`JUMP_MS`] (a timestamp jump, or a pause during which it stood
//!   still): then the stream is re-anchored at its end plus the wall-clock
//!   gap. A new SSRC or sequence restart re-anchors the same way.
//!
//! The timeline is cut into chunks of `chunk_ms`. A chunk is written once
//! both streams reached its end, or one stream is [`LAG_MS`] past it
//! (the other is lost, paused or silent), or on [`Recording::tick`] after
//! [`QUIET_US`] without packets. In a written chunk, frames neither stream
//! covered are a gap: the chunk is cut there, the next chunk's `sequence`
//! skips a number (the recorder keeps a gap for a missing sequence) and its
//! `offset` says where it starts. Frames only one stream covered carry the
//! codec's silence in the other channel. L16 arrives big-endian (RFC 3551)
//! and is written little-endian, as the contract's `CODEC_L16` is. A telephone-event packet (DTMF) adds a
//! [`Notice::Tone`] with the time only; its key is never read.

use crate::jitter::{Held, JitterBuffer, Out};
use crate::rtp::{self, Codec};
use opptak_domain::retention::{ArtifactKind, Policy, RetentionFacts};
use opptak_proto::convert;
use opptak_proto::v1::{self, telephony_event::Event};
use std::collections::VecDeque;

/// A stream this far ahead of the other (0.5 s) makes the other's missing
/// frames silence.
pub const LAG_MS: u64 = 500;
/// A timestamp disagreeing with arrival by more than this (1 s) re-anchors.
pub const JUMP_MS: u64 = 1000;
/// Payload buffers a session keeps for reuse (a jitter buffer's depth per
/// stream is about what is in flight).
const SPARE_BUFFERS: usize = 16;
/// Without packets this long, held packets and audio are written out.
pub const QUIET_US: u64 = 300_000;
/// The recorder's bound per missing chunk (the contract's largest
/// payload): one skipped sequence number covers at most this many bytes of
/// stereo frames of gap.
const GAP_BYTES_PER_SEQUENCE: u64 = 262_144;
/// The recorder's reorder window: a skip never reaches it.
const MAX_SKIP: u64 = 63;

/// Which side a channel records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Agent = 0,
    Customer = 1,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Agent => "agent",
            Side::Customer => "customer",
        }
    }
}

/// Things the IO layer logs or counts; never audio, never a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// A telephone-event (DTMF) started on `side`, `offset_ms` into the call.
    Tone { side: Side, offset_ms: u64 },
    /// Frames filled with silence on one channel (the other had audio).
    Concealed { side: Side, frames: u64 },
    /// A packet of a payload type not negotiated: dropped.
    UnknownPayload { side: Side },
}

struct Channel {
    jb: JitterBuffer,
    audio_pts: Vec<u8>,
    tone_pt: Option<u8>,
    /// (RTP timestamp, timeline frame) the stream's positions count from.
    anchor: Option<(u32, u64)>,
    started: bool,
    end: u64,
    last_arrival_us: u64,
    last_emit_us: u64,
    /// Timestamp of the last telephone-event seen.
    tone_ts: Option<u32>,
    /// Samples (in the contract's encoding, `bps` bytes each) and whether
    /// each frame was received, from `Recording::done` on.
    samples: VecDeque<u8>,
    present: VecDeque<bool>,
    /// RFC 3550 interarrival jitter, in timestamp units.
    jitter: f64,
    last_transit: Option<i64>,
}

impl Channel {
    fn new(depth: usize) -> Self {
        Self {
            jb: JitterBuffer::new(depth),
            audio_pts: Vec::new(),
            tone_pt: None,
            anchor: None,
            started: false,
            end: 0,
            last_arrival_us: 0,
            last_emit_us: 0,
            tone_ts: None,
            samples: VecDeque::new(),
            present: VecDeque::new(),
            jitter: 0.0,
            last_transit: None,
        }
    }
}

/// The part of a call's business context a metadata update can change (a
/// transfer to another agent, desk or service): what a `CallContext` carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Context {
    pub advisor_id: String,
    pub desk: v1::Desk,
    pub service_category: v1::ServiceCategory,
}

impl Context {
    /// The retention policy in force keeps an archive copy of a call in
    /// this context (the shipped one: investment advice, or an advisory
    /// desk). A transfer never takes a call out of it: the recording holds
    /// the advice given before the transfer.
    fn archived(&self, policy: &Policy) -> bool {
        let facts = RetentionFacts {
            service_category: convert::service_category(self.service_category as i32),
            desk: convert::desk(self.desk as i32),
            ki_active: false,
            ended_at_us: 0,
            opt_out_at_us: None,
            reclassified: None,
            holds: Vec::new(),
            extension: None,
            conversation: None,
        };
        policy.decide(&facts, ArtifactKind::ArchiveCopy).kept
    }

    fn of(s: &v1::CallStarted) -> Self {
        Self {
            advisor_id: s.advisor_id.clone(),
            desk: v1::Desk::try_from(s.desk).unwrap_or(v1::Desk::Unspecified),
            service_category: v1::ServiceCategory::try_from(s.service_category)
                .unwrap_or(v1::ServiceCategory::Unspecified),
        }
    }
}

/// Per-stream counts for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StreamStats {
    pub received: u64,
    pub lost: u64,
    pub late: u64,
    pub duplicates: u64,
    /// Interarrival jitter in milliseconds.
    pub jitter_ms: f64,
}

/// The media half of a session: timeline, chunks, events.
pub struct Recording {
    call_id: String,
    codec: Codec,
    /// Frames per second and bytes per sample, of `codec`.
    rate: u64,
    bps: usize,
    lag_frames: u64,
    jump_frames: i64,
    chunk_frames: u64,
    channels: [Channel; 2],
    /// Every frame before this is written (or a gap).
    done: u64,
    next_sequence: u64,
    last_sequence: Option<u64>,
    /// End of the last chunk written, to size a gap.
    written_end: u64,
    pending_gap: bool,
    t0_us: Option<u64>,
    /// The SRC said BYE: what still arrives was sent before it.
    closing: bool,
    ended: bool,
    events: Vec<v1::TelephonyEvent>,
    notices: Vec<Notice>,
    /// The business context last sent (CallStarted or CallContext).
    context: Context,
    scratch: Vec<Out>,
    /// Payload buffers of packets placed, for the next packets to reuse
    /// (an allocation per packet was a measurable share of the role's CPU).
    spare: Vec<Vec<u8>>,
    /// A payload in the contract's encoding.
    converted: Vec<u8>,
}

impl Recording {
    /// `started` is sent at once; chunks follow as audio arrives.
    pub fn new(call_id: String, codec: Codec, chunk_ms: u32, jitter_depth: usize, started: v1::CallStarted) -> Self {
        let rate = u64::from(codec.rate());
        let mut r = Self {
            call_id,
            codec,
            rate,
            bps: codec.bytes_per_sample(),
            lag_frames: rate * LAG_MS / 1000,
            jump_frames: (rate * JUMP_MS / 1000) as i64,
            chunk_frames: (chunk_ms as u64 * rate / 1000).max(1),
            channels: [Channel::new(jitter_depth), Channel::new(jitter_depth)],
            done: 0,
            next_sequence: 0,
            last_sequence: None,
            written_end: 0,
            pending_gap: false,
            t0_us: None,
            closing: false,
            ended: false,
            events: Vec::new(),
            notices: Vec::new(),
            context: Context::of(&started),
            scratch: Vec::new(),
            spare: Vec::new(),
            converted: Vec::new(),
        };
        r.push_event(Event::CallStarted(started));
        r
    }

    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// The call's context is now `now` (from a re-INVITE's or UPDATE's
    /// metadata): queues a `CallContext` by `by` with the fields that
    /// changed, after the audio so far. `false` when nothing changed. An
    /// unspecified desk or service, or no agent, is no context (the contract
    /// refuses them): those fields stay as they were. A call in an archived
    /// context keeps its desk and service (only the advisor changes): a
    /// transfer adds to what the recording holds, it does not undo it.
    pub fn update_context(
        &mut self,
        mut now: Context,
        policy: &Policy,
        by: &str,
        reason: &str,
        at: opptak_proto::Timestamp,
    ) -> bool {
        let old = &self.context;
        if old.archived(policy) && !now.archived(policy) {
            now.desk = old.desk;
            now.service_category = old.service_category;
        }
        let advisor = (!now.advisor_id.is_empty() && now.advisor_id != old.advisor_id).then(|| now.advisor_id.clone());
        let desk = (now.desk != v1::Desk::Unspecified && now.desk != old.desk).then_some(now.desk as i32);
        let service = (now.service_category != v1::ServiceCategory::Unspecified
            && now.service_category != old.service_category)
            .then_some(now.service_category as i32);
        if advisor.is_none() && desk.is_none() && service.is_none() {
            return false;
        }
        let c = v1::CallContext {
            by: by.to_owned(),
            reason: reason.to_owned(),
            at: Some(at),
            desk,
            advisor_id: advisor,
            customer_ref: None,
            service_category: service,
        };
        if let Some(a) = &c.advisor_id {
            self.context.advisor_id = a.clone();
        }
        if desk.is_some() {
            self.context.desk = now.desk;
        }
        if service.is_some() {
            self.context.service_category = now.service_category;
        }
        self.push_event(Event::CallContext(c));
        true
    }

    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// The payload types of `side`'s stream: audio (the session codec)
    /// and telephone-event.
    pub fn set_payload_types(&mut self, side: Side, audio: Vec<u8>, tone: Option<u8>) {
        let ch = &mut self.channels[side as usize];
        ch.audio_pts = audio;
        ch.tone_pt = tone;
    }

    fn push_event(&mut self, event: Event) {
        self.events.push(v1::TelephonyEvent {
            call_id: self.call_id.clone(),
            event: Some(event),
        });
    }

    /// Events ready to publish, in order.
    /// Events or notices wait to be taken.
    pub fn has_output(&self) -> bool {
        !self.events.is_empty() || !self.notices.is_empty()
    }

    pub fn take_events(&mut self) -> Vec<v1::TelephonyEvent> {
        std::mem::take(&mut self.events)
    }

    pub fn take_notices(&mut self) -> Vec<Notice> {
        std::mem::take(&mut self.notices)
    }

    pub fn stats(&self, side: Side) -> StreamStats {
        let ch = &self.channels[side as usize];
        StreamStats {
            received: ch.jb.stats.received,
            lost: ch.jb.stats.lost,
            late: ch.jb.stats.late,
            duplicates: ch.jb.stats.duplicates,
            jitter_ms: ch.jitter / (self.rate as f64 / 1000.0),
        }
    }

    /// One RTP packet of `side`'s stream, arrived at `now_us` (any
    /// monotonic microsecond clock).
    pub fn packet(&mut self, side: Side, p: &rtp::Packet<'_>, now_us: u64) {
        if self.ended {
            return;
        }
        let rate = self.rate;
        let ch = &mut self.channels[side as usize];
        // RFC 3550 A.8, with arrival in timestamp units.
        let arrival = (now_us * rate / 1_000_000) as i64;
        let transit = arrival - p.timestamp as i64;
        if let Some(last) = ch.last_transit {
            let d = (transit - last).abs() as f64;
            if d < rate as f64 * 10.0 {
                ch.jitter += (d - ch.jitter) / 16.0;
            }
        }
        ch.last_transit = Some(transit);
        ch.last_arrival_us = now_us;
        let mut payload = self.spare.pop().unwrap_or_default();
        payload.clear();
        payload.extend_from_slice(p.payload);
        let held = Held {
            sequence: p.sequence,
            timestamp: p.timestamp,
            payload_type: p.payload_type,
            marker: p.marker,
            payload,
            arrival_us: now_us,
        };
        let mut out = std::mem::take(&mut self.scratch);
        ch.jb.push(p.ssrc, held, &mut out);
        self.play(side, &mut out);
        self.scratch = out;
        self.advance(false);
    }

    fn play(&mut self, side: Side, out: &mut Vec<Out>) {
        for o in out.drain(..) {
            match o {
                Out::Packet(h) => self.place(side, h),
                Out::Lost(_) => {}
                Out::Restart => self.channels[side as usize].anchor = None,
            }
        }
    }

    /// Frames of wall-clock time, rounded to whole packets of `len`.
    fn wall_frames(&self, us: u64, len: u64) -> u64 {
        let f = us * self.rate / 1_000_000;
        (f + len / 2).checked_div(len).map_or(f, |n| n * len)
    }

    /// Places a played-out packet by its arrival time and timestamp.
    fn place(&mut self, side: Side, h: Held) {
        let now_us = h.arrival_us;
        let i = side as usize;
        if Some(h.payload_type) == self.channels[i].tone_pt {
            let rate = self.rate;
            let ch = &mut self.channels[i];
            // One event is several packets with one timestamp (the end
            // packet is sent three times): a new timestamp is a new event.
            if rtp::telephone_event(&h.payload).is_some() && ch.tone_ts != Some(h.timestamp) {
                ch.tone_ts = Some(h.timestamp);
                let offset_ms = ch.end * 1000 / rate;
                self.notices.push(Notice::Tone { side, offset_ms });
            }
            return;
        }
        if !self.channels[i].audio_pts.contains(&h.payload_type) {
            self.notices.push(Notice::UnknownPayload { side });
            return;
        }
        // Frames (samples of this stream) in the packet.
        let len = (h.payload.len() / self.bps) as u64;
        if len == 0 {
            return;
        }
        let t0 = *self.t0_us.get_or_insert(now_us);
        let jump = self.jump_frames;
        let gap_frames = self
            .wall_frames(now_us.saturating_sub(self.channels[i].last_emit_us), len)
            .saturating_sub(len);
        let first_pos = self.wall_frames(now_us.saturating_sub(t0), len);
        let ch = &mut self.channels[i];
        let pos = match ch.anchor {
            None if !ch.started => first_pos,
            None => ch.end + gap_frames,
            Some((ts, at)) => {
                let ts_pos = at as i64 + h.timestamp.wrapping_sub(ts) as i32 as i64;
                let ahead = ts_pos - ch.end as i64;
                let wall = gap_frames as i64;
                if ahead < -(len as i64) || ahead > wall + jump || wall > ahead + jump {
                    ch.end + gap_frames
                } else {
                    ts_pos.max(0) as u64
                }
            }
        };
        if ch
            .anchor
            .is_none_or(|(ts, at)| at as i64 + h.timestamp.wrapping_sub(ts) as i32 as i64 != pos as i64)
        {
            ch.anchor = Some((h.timestamp, pos));
        }
        ch.started = true;
        ch.last_emit_us = now_us;
        let mut converted = std::mem::take(&mut self.converted);
        self.codec.to_contract(&h.payload, &mut converted);
        self.write(i, pos, &converted);
        self.converted = converted;
        if self.spare.len() < SPARE_BUFFERS {
            self.spare.push(h.payload);
        }
    }

    /// Writes whole samples (`payload` in the contract's encoding) at frame `pos`.
    fn write(&mut self, i: usize, pos: u64, payload: &[u8]) {
        let bps = self.bps;
        let end = pos + (payload.len() / bps) as u64;
        if end <= self.done {
            return; // already written out: too late
        }
        // Keep the buffer bounded: write out what the lag rule allows first.
        if !self.closing && end > self.done + self.lag_frames + self.chunk_frames {
            self.advance_to(end - self.lag_frames, false);
        }
        let (skip, start) = if pos < self.done {
            ((self.done - pos) as usize, self.done)
        } else {
            (0, pos)
        };
        let silence = self.codec.silence();
        let ch = &mut self.channels[i];
        let off = (start - self.done) as usize;
        let need = (end - self.done) as usize;
        let n = (end - start) as usize;
        let data = &payload[skip * bps..(skip + n) * bps];
        if off == ch.present.len() {
            // Right after what is held (nearly every packet): append.
            ch.samples.extend(data);
            ch.present.resize(need, true);
            ch.end = ch.end.max(end);
            return;
        }
        if ch.present.len() < need {
            let add = need - ch.present.len();
            match silence {
                // Every codec's silence is one repeated byte: a memset.
                [first, rest @ ..] if rest.iter().all(|b| b == first) => {
                    ch.samples.resize(ch.samples.len() + add * bps, *first);
                }
                _ => ch.samples.extend(silence.iter().cycle().take(add * bps)),
            }
            ch.present.resize(need, false);
        }
        // Slice copies: a loop per byte over a VecDeque range was the
        // role's largest single cost per packet (BENCHMARKS.md).
        copy_into(&mut ch.samples, off * bps, data);
        fill(&mut ch.present, off, n, true);
        ch.end = ch.end.max(end);
    }

    fn advance(&mut self, all: bool) {
        let [a, b] = &self.channels;
        let both = a.end.min(b.end);
        let lead = a.end.max(b.end);
        let target = if all {
            lead
        } else if self.closing {
            both
        } else {
            both.max(lead.saturating_sub(self.lag_frames))
        };
        self.advance_to(target, all);
    }

    /// Writes out chunks up to `target`; a final partial chunk only with `partial`.
    fn advance_to(&mut self, target: u64, partial: bool) {
        while self.done < target {
            let buffered = self.channels.iter().map(|c| c.present.len()).max().unwrap_or(0) as u64;
            if buffered == 0 {
                // Nothing held: the whole stretch is a gap.
                let to = if partial {
                    target
                } else {
                    target - (target - self.done) % self.chunk_frames
                };
                if to > self.done {
                    self.pending_gap = true;
                    self.done = to;
                }
                return;
            }
            let n = self.chunk_frames.min(target - self.done);
            if n < self.chunk_frames && !partial {
                return;
            }
            self.write_chunk(n as usize);
        }
    }

    fn write_chunk(&mut self, n: usize) {
        // The common case: both streams cover every frame. One pass over
        // each channel's slices, not a lookup per frame.
        let whole = self.channels.iter().all(|c| {
            let (x, y) = c.present.as_slices();
            let nx = x.len().min(n);
            c.present.len() >= n && !x[..nx].contains(&false) && !y[..n - nx].contains(&false)
        });
        let bps = self.bps;
        if whole {
            let [a, b] = &self.channels;
            let (mut wa, mut wb) = (Vec::new(), Vec::new());
            let (xa, xb) = (front(&a.samples, n * bps, &mut wa), front(&b.samples, n * bps, &mut wb));
            // Over plain slices the interleave vectorizes; over deque
            // iterators it was a byte at a time.
            let mut payload = vec![0u8; n * 2 * bps];
            if bps == 1 {
                for ((o, x), y) in payload.chunks_exact_mut(2).zip(xa).zip(xb) {
                    o[0] = *x;
                    o[1] = *y;
                }
            } else {
                for ((o, x), y) in payload
                    .chunks_exact_mut(2 * bps)
                    .zip(xa.chunks_exact(bps))
                    .zip(xb.chunks_exact(bps))
                {
                    o[..bps].copy_from_slice(x);
                    o[bps..].copy_from_slice(y);
                }
            }
            self.emit_chunk(self.done, payload);
            for c in &mut self.channels {
                c.samples.drain(..n * bps);
                c.present.drain(..n);
            }
            self.done += n as u64;
            return;
        }
        let silence = self.codec.silence();
        let mut run_start: Option<usize> = None;
        let mut concealed = [0u64; 2];
        let mut k = 0;
        while k <= n {
            let covered = k < n && self.channels.iter().any(|c| c.present.get(k).copied().unwrap_or(false));
            match (covered, run_start) {
                (true, None) => run_start = Some(k),
                (false, Some(s)) => {
                    let mut payload = Vec::with_capacity((k - s) * 2 * bps);
                    for f in s..k {
                        for (ci, c) in self.channels.iter().enumerate() {
                            if c.present.get(f).copied().unwrap_or(false) {
                                payload.extend(c.samples.range(f * bps..(f + 1) * bps));
                            } else {
                                payload.extend_from_slice(silence);
                                concealed[ci] += 1;
                            }
                        }
                    }
                    self.emit_chunk(self.done + s as u64, payload);
                    run_start = None;
                    // Frame k itself is uncovered: the gap starts here.
                    if k < n {
                        self.pending_gap = true;
                    }
                }
                (false, None) if k < n => self.pending_gap = true,
                _ => {}
            }
            k += 1;
        }
        for (ci, c) in self.channels.iter_mut().enumerate() {
            let d = n.min(c.present.len());
            c.samples.drain(..d * bps);
            c.present.drain(..d);
            if concealed[ci] > 0 && c.started {
                let side = if ci == 0 { Side::Agent } else { Side::Customer };
                self.notices.push(Notice::Concealed {
                    side,
                    frames: concealed[ci],
                });
            }
        }
        self.done += n as u64;
    }

    fn emit_chunk(&mut self, start: u64, payload: Vec<u8>) {
        if self.pending_gap || (self.last_sequence.is_none() && start > 0) {
            let gap = start.saturating_sub(self.written_end);
            let per_sequence = GAP_BYTES_PER_SEQUENCE / (2 * self.bps as u64);
            let skip = gap.div_ceil(per_sequence).clamp(1, MAX_SKIP);
            self.next_sequence += skip;
            self.pending_gap = false;
        }
        let frames = (payload.len() / (2 * self.bps)) as u64;
        let seq = self.next_sequence;
        self.next_sequence += 1;
        self.last_sequence = Some(seq);
        self.written_end = start + frames;
        self.push_event(Event::AudioChunk(v1::AudioChunk {
            sequence: seq,
            payload,
            duration: Some(frames_duration(frames, self.rate)),
            offset: Some(frames_duration(start, self.rate)),
            sealed_payload: Default::default(),
        }));
    }

    /// Time passes: streams quiet for [`QUIET_US`] play out what they hold,
    /// and with every stream quiet the timeline is written out to its end.
    pub fn tick(&mut self, now_us: u64) {
        if self.ended {
            return;
        }
        let mut all_quiet = true;
        for i in 0..2 {
            let quiet = now_us.saturating_sub(self.channels[i].last_arrival_us) >= QUIET_US;
            if quiet && self.channels[i].jb.held() > 0 {
                let mut out = std::mem::take(&mut self.scratch);
                self.channels[i].jb.flush(&mut out);
                let side = if i == 0 { Side::Agent } else { Side::Customer };
                self.play(side, &mut out);
                self.scratch = out;
            }
            all_quiet &= quiet;
        }
        self.advance(all_quiet);
    }

    /// The session ends: everything held is written, then `CallEnded`.
    /// The SRC said BYE. The receive threads now drain each stream's port
    /// to the end, one stream's whole backlog before the other's: a lead
    /// no longer makes the other stream's missing frames silence (its
    /// frames are on their way), and what is held is bounded by the ports'
    /// kernel buffers. [`Recording::end`] writes it all out.
    pub fn closing(&mut self) {
        self.closing = true;
    }

    pub fn end(&mut self, reason: v1::EndReason, ended_at: opptak_proto::Timestamp) {
        if self.ended {
            return;
        }
        for i in 0..2 {
            let mut out = std::mem::take(&mut self.scratch);
            self.channels[i].jb.flush(&mut out);
            let side = if i == 0 { Side::Agent } else { Side::Customer };
            self.play(side, &mut out);
            self.scratch = out;
        }
        self.advance(true);
        self.ended = true;
        self.push_event(Event::CallEnded(v1::CallEnded {
            ended_at: Some(ended_at),
            reason: reason as i32,
            last_sequence: self.last_sequence.unwrap_or(0),
            no_audio: self.last_sequence.is_none(),
        }));
    }

    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// When the last packet of any stream arrived (0: none yet).
    pub fn last_arrival_us(&self) -> u64 {
        self.channels.iter().map(|c| c.last_arrival_us).max().unwrap_or(0)
    }
}

/// The first `n` elements of `d` as one slice: its own front when that
/// holds them, else copied into `spill`.
fn front<'a, T: Copy>(d: &'a VecDeque<T>, n: usize, spill: &'a mut Vec<T>) -> &'a [T] {
    let (x, y) = d.as_slices();
    if x.len() >= n {
        return &x[..n];
    }
    spill.clear();
    spill.extend_from_slice(x);
    spill.extend_from_slice(&y[..n - x.len()]);
    spill
}

/// `dst[off..off + src.len()] = src`, over the deque's two slices.
fn copy_into<T: Copy>(dst: &mut VecDeque<T>, off: usize, src: &[T]) {
    let (a, b) = dst.as_mut_slices();
    if off >= a.len() {
        let off = off - a.len();
        b[off..off + src.len()].copy_from_slice(src);
        return;
    }
    let n = src.len().min(a.len() - off);
    a[off..off + n].copy_from_slice(&src[..n]);
    b[..src.len() - n].copy_from_slice(&src[n..]);
}

/// `dst[off..off + n] = v`, over the deque's two slices.
fn fill<T: Copy>(dst: &mut VecDeque<T>, off: usize, n: usize, v: T) {
    let (a, b) = dst.as_mut_slices();
    if off >= a.len() {
        let off = off - a.len();
        b[off..off + n].fill(v);
        return;
    }
    let k = n.min(a.len() - off);
    a[off..off + k].fill(v);
    b[..n - k].fill(v);
}

fn frames_duration(frames: u64, rate: u64) -> opptak_proto::Duration {
    let us = frames * 1_000_000 / rate;
    opptak_proto::Duration {
        seconds: (us / 1_000_000) as i64,
        nanos: ((us % 1_000_000) * 1000) as i32,
    }
}

/// The session's call id: stable for a SIP Call-ID and SRS session id,
/// within the contract's charset and length.
pub fn call_id(sip_call_id: &str, session_id: Option<&str>) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(sip_call_id.as_bytes());
    h.update([0]);
    h.update(session_id.unwrap_or("").as_bytes());
    format!("siprec-{}", hex::encode(&h.finalize()[..16]))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn deque_copies_fills_and_fronts_cross_the_wrap() {
        for front in 0..6 {
            // A deque whose contents wrap around its buffer after `front` pops.
            let mut d: VecDeque<u8> = VecDeque::with_capacity(8);
            d.extend(0..8u8);
            for _ in 0..front {
                d.pop_front();
            }
            d.extend(100..100 + front as u8);
            let mut want: Vec<u8> = d.iter().copied().collect();
            copy_into(&mut d, 2, &[1, 2, 3, 4]);
            want[2..6].copy_from_slice(&[1, 2, 3, 4]);
            assert_eq!(d.iter().copied().collect::<Vec<_>>(), want, "front {front}");
            fill(&mut d, 1, 5, 9);
            want[1..6].fill(9);
            assert_eq!(d.iter().copied().collect::<Vec<_>>(), want, "front {front}");
            for n in 0..=8 {
                let mut spill = Vec::new();
                assert_eq!(super::front(&d, n, &mut spill), &want[..n], "front {front}, n {n}");
            }
        }
    }

    const PT: u8 = 0;

    fn rec(chunk_ms: u32) -> Recording {
        let mut r = Recording::new("c1".into(), Codec::Pcmu, chunk_ms, 4, v1::CallStarted::default());
        r.set_payload_types(Side::Agent, vec![PT], Some(101));
        r.set_payload_types(Side::Customer, vec![PT], Some(101));
        r
    }

    fn send(r: &mut Recording, side: Side, ssrc: u32, seq: u16, ts: u32, payload: &[u8], now: u64) {
        let b = rtp::build(PT, seq, ts, ssrc, false, payload);
        r.packet(side, &rtp::parse(&b).unwrap(), now);
    }

    /// (sequence, offset frames, payload) of every chunk.
    fn chunks(r: &mut Recording) -> Vec<(u64, u64, Vec<u8>)> {
        r.take_events()
            .into_iter()
            .filter_map(|e| match e.event {
                Some(Event::AudioChunk(c)) => {
                    let off = c.offset.unwrap();
                    let us = off.seconds as u64 * 1_000_000 + off.nanos as u64 / 1000;
                    Some((c.sequence, us * 8000 / 1_000_000, c.payload.to_vec()))
                }
                _ => None,
            })
            .collect()
    }

    fn interleave(a: &[u8], c: &[u8]) -> Vec<u8> {
        a.iter().zip(c).flat_map(|(x, y)| [*x, *y]).collect()
    }

    fn ended(r: &mut Recording) {
        r.end(v1::EndReason::Unspecified, Default::default());
    }

    fn frame(tag: u8, k: u16) -> Vec<u8> {
        (0..160)
            .map(|i| tag.wrapping_add((k as u8).wrapping_mul(7)).wrapping_add(i as u8 % 3))
            .collect()
    }

    #[test]
    fn interleaves_two_streams_into_chunks_with_offsets() {
        let mut r = rec(40);
        let mut want = Vec::new();
        for k in 0..6u16 {
            let (a, c) = (frame(10, k), frame(100, k));
            send(
                &mut r,
                Side::Agent,
                1,
                1000 + k,
                5000 + k as u32 * 160,
                &a,
                k as u64 * 20_000,
            );
            send(
                &mut r,
                Side::Customer,
                2,
                60000 + k,
                90 + k as u32 * 160,
                &c,
                k as u64 * 20_000 + 500,
            );
            want.extend(interleave(&a, &c));
        }
        ended(&mut r);
        let got = chunks(&mut r);
        assert_eq!(
            got.iter().map(|(s, o, _)| (*s, *o)).collect::<Vec<_>>(),
            vec![(0, 0), (1, 320), (2, 640)]
        );
        assert_eq!(got.into_iter().flat_map(|(_, _, p)| p).collect::<Vec<_>>(), want);
    }

    #[test]
    fn loss_on_both_streams_skips_a_sequence_and_offsets_the_next_chunk() {
        let mut r = rec(20);
        for k in 0..8u16 {
            if k == 3 || k == 4 {
                continue; // the pair lost on both streams
            }
            send(
                &mut r,
                Side::Agent,
                1,
                k,
                k as u32 * 160,
                &frame(1, k),
                k as u64 * 20_000,
            );
            send(
                &mut r,
                Side::Customer,
                2,
                k,
                k as u32 * 160,
                &frame(2, k),
                k as u64 * 20_000,
            );
        }
        ended(&mut r);
        let got = chunks(&mut r);
        let meta: Vec<_> = got.iter().map(|(s, o, p)| (*s, *o, p.len())).collect();
        assert_eq!(
            meta,
            vec![
                (0, 0, 320),
                (1, 160, 320),
                (2, 320, 320),
                (4, 800, 320),
                (5, 960, 320),
                (6, 1120, 320)
            ]
        );
        assert_eq!(got[3].2, interleave(&frame(1, 5), &frame(2, 5)));
    }

    /// Which contexts a transfer cannot leave comes from the retention
    /// policy in force: the shipped one archives investment advice and the
    /// advisory desks; a bank's policy that also archives `corporate` makes
    /// that desk archived here too.
    #[test]
    fn archived_contexts_are_the_policys() {
        let shipped = Policy::default_policy();
        let text = opptak_domain::retention::DEFAULT_POLICY
            .replace(
                r#"desk = ["markets", "private_banking"], service_category"#,
                r#"desk = ["markets", "private_banking", "corporate"], service_category"#,
            )
            .replace(
                r#"desk = ["customer_center", "corporate", "unspecified"], service_category"#,
                r#"desk = ["customer_center", "unspecified"], service_category"#,
            );
        let corporate_too = Policy::parse(&text).unwrap();
        let desks = [
            v1::Desk::Unspecified,
            v1::Desk::CustomerCenter,
            v1::Desk::Markets,
            v1::Desk::PrivateBanking,
            v1::Desk::Corporate,
        ];
        for desk in desks {
            for category in [
                v1::ServiceCategory::Unspecified,
                v1::ServiceCategory::InvestmentAdvice,
                v1::ServiceCategory::Loan,
                v1::ServiceCategory::Savings,
                v1::ServiceCategory::Insurance,
                v1::ServiceCategory::Payments,
                v1::ServiceCategory::General,
            ] {
                let c = Context {
                    advisor_id: "a1".into(),
                    desk,
                    service_category: category,
                };
                let investment = category == v1::ServiceCategory::InvestmentAdvice;
                let advisory = matches!(desk, v1::Desk::Markets | v1::Desk::PrivateBanking);
                assert_eq!(c.archived(&shipped), investment || advisory, "{desk:?} {category:?}");
                assert_eq!(
                    c.archived(&corporate_too),
                    investment || advisory || desk == v1::Desk::Corporate,
                    "{desk:?} {category:?}"
                );
            }
        }
    }

    /// After a BYE the receive threads drain one stream's port before the
    /// other's: 2 s of the agent, then 2 s of the customer, all read at
    /// once. Open, the agent's lead past LAG_MS writes the customer's
    /// frames out as silence; closing, both arrive whole.
    #[test]
    fn a_closing_session_waits_for_the_stream_that_is_behind() {
        for closing in [false, true] {
            let mut r = rec(20);
            send(&mut r, Side::Agent, 1, 0, 0, &frame(1, 0), 0);
            send(&mut r, Side::Customer, 2, 0, 0, &frame(2, 0), 0);
            if closing {
                r.closing();
            }
            for k in 1..100u16 {
                send(&mut r, Side::Agent, 1, k, k as u32 * 160, &frame(1, k), 30_000);
            }
            for k in 1..100u16 {
                send(&mut r, Side::Customer, 2, k, k as u32 * 160, &frame(2, k), 30_000);
            }
            ended(&mut r);
            let whole = chunks(&mut r)
                .iter()
                .enumerate()
                .filter(|(k, c)| c.2 == interleave(&frame(1, *k as u16), &frame(2, *k as u16)))
                .count();
            assert_eq!(whole == 100, closing, "{whole} whole chunks, closing {closing}");
        }
    }

    #[test]
    fn loss_on_one_stream_is_silence_in_that_channel() {
        let mut r = rec(20);
        for k in 0..6u16 {
            send(
                &mut r,
                Side::Agent,
                1,
                k,
                k as u32 * 160,
                &frame(1, k),
                k as u64 * 20_000,
            );
            if k != 2 {
                send(
                    &mut r,
                    Side::Customer,
                    2,
                    k,
                    k as u32 * 160,
                    &frame(2, k),
                    k as u64 * 20_000,
                );
            }
        }
        ended(&mut r);
        let got = chunks(&mut r);
        assert_eq!(
            got.iter().map(|(s, _, _)| *s).collect::<Vec<_>>(),
            vec![0, 1, 2, 3, 4, 5]
        );
        assert_eq!(got[2].2, interleave(&frame(1, 2), &[0xFF; 160]));
        assert!(r.take_notices().contains(&Notice::Concealed {
            side: Side::Customer,
            frames: 160
        }));
    }

    #[test]
    fn reordered_and_duplicated_packets_are_recovered_exactly() {
        let mut r = rec(20);
        let order = [0u16, 2, 1, 1, 3, 5, 4, 0, 6, 7];
        for (n, &k) in order.iter().enumerate() {
            send(
                &mut r,
                Side::Agent,
                1,
                500 + k,
                k as u32 * 160,
                &frame(1, k),
                n as u64 * 20_000,
            );
            send(
                &mut r,
                Side::Customer,
                2,
                9 + k,
                7 + k as u32 * 160,
                &frame(2, k),
                n as u64 * 20_000,
            );
        }
        ended(&mut r);
        let got = chunks(&mut r);
        let want: Vec<u8> = (0..8).flat_map(|k| interleave(&frame(1, k), &frame(2, k))).collect();
        assert_eq!(
            got.iter().map(|(s, _, _)| *s).collect::<Vec<_>>(),
            (0..8).collect::<Vec<_>>()
        );
        assert_eq!(got.into_iter().flat_map(|(_, _, p)| p).collect::<Vec<_>>(), want);
        assert_eq!(r.stats(Side::Agent).duplicates, 2);
    }

    #[test]
    fn tones_are_noticed_by_time_and_never_reach_the_audio() {
        let mut r = rec(20);
        send(&mut r, Side::Agent, 1, 0, 0, &frame(1, 0), 0);
        send(&mut r, Side::Customer, 2, 0, 0, &frame(2, 0), 0);
        for (seq, end) in [(1u16, false), (2, false), (3, true), (4, true)] {
            let b = rtp::build(101, seq, 160, 2, false, &[7, if end { 0x80 } else { 0 }, 0, 160]);
            r.packet(Side::Customer, &rtp::parse(&b).unwrap(), seq as u64 * 20_000);
        }
        ended(&mut r);
        let notices = r.take_notices();
        assert_eq!(notices.iter().filter(|n| matches!(n, Notice::Tone { .. })).count(), 1);
        assert!(notices.contains(&Notice::Tone {
            side: Side::Customer,
            offset_ms: 20
        }));
        let events = format!("{:?}", r.take_events());
        assert!(!events.contains("Tone"));
    }

    #[test]
    fn ssrc_change_and_timestamp_jump_continue_the_timeline() {
        let mut r = rec(20);
        for k in 0..4u16 {
            // The customer's SSRC changes at k=2, and its timestamps jump far.
            let (ssrc, ts) = if k < 2 {
                (2, k as u32 * 160)
            } else {
                (3, 4_000_000_000 + k as u32 * 160)
            };
            send(
                &mut r,
                Side::Agent,
                1,
                k,
                100 + k as u32 * 160,
                &frame(1, k),
                k as u64 * 20_000,
            );
            send(&mut r, Side::Customer, ssrc, k, ts, &frame(2, k), k as u64 * 20_000);
        }
        // The agent's timestamps jump without a new SSRC.
        send(&mut r, Side::Agent, 1, 4, 2_000_000_000, &frame(1, 4), 80_000);
        send(&mut r, Side::Customer, 3, 4, 4_000_000_000 + 640, &frame(2, 4), 80_000);
        ended(&mut r);
        let got = chunks(&mut r);
        let want: Vec<u8> = (0..5).flat_map(|k| interleave(&frame(1, k), &frame(2, k))).collect();
        assert_eq!(
            got.iter().map(|(s, o, _)| (*s, *o)).collect::<Vec<_>>(),
            (0..5).map(|k| (k, k * 160)).collect::<Vec<_>>()
        );
        assert_eq!(got.into_iter().flat_map(|(_, _, p)| p).collect::<Vec<_>>(), want);
    }

    #[test]
    fn a_pause_is_a_gap_sized_by_the_wall_clock() {
        let mut r = rec(20);
        send(&mut r, Side::Agent, 1, 0, 0, &frame(1, 0), 0);
        send(&mut r, Side::Customer, 2, 0, 0, &frame(2, 0), 0);
        // Paused for 5 s (a=inactive); the timestamps stood still.
        r.tick(1_000_000);
        send(&mut r, Side::Agent, 1, 1, 160, &frame(1, 1), 5_020_000);
        send(&mut r, Side::Customer, 2, 1, 160, &frame(2, 1), 5_020_000);
        ended(&mut r);
        let got = chunks(&mut r);
        assert_eq!(
            got.iter().map(|(s, o, _)| (*s, *o)).collect::<Vec<_>>(),
            vec![(0, 0), (2, 5 * 8000 + 160)]
        );
        let mut r = rec(20);
        ended(&mut r);
        let events = r.take_events();
        assert!(matches!(&events[1].event, Some(Event::CallEnded(e)) if e.no_audio));
    }

    #[test]
    fn call_ids_are_stable_and_in_the_contracts_charset() {
        let a = call_id("abc@host", Some("s=="));
        assert_eq!(a, call_id("abc@host", Some("s==")));
        assert_ne!(a, call_id("abc@host", Some("t==")));
        assert!(a.len() <= 128 && a.bytes().all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b)));
    }

    /// L16 at 16 kHz: big-endian samples in, little-endian stereo frames
    /// out, timed at 16 kHz; loss on one stream is zero samples there, on
    /// both a gap whose sequence skip and offset count 16 kHz frames.
    #[test]
    fn l16_wideband_is_converted_and_timed_at_its_rate() {
        let codec = Codec::L16 { rate: 16000 };
        let mut r = Recording::new("c1".into(), codec, 20, 4, v1::CallStarted::default());
        r.set_payload_types(Side::Agent, vec![96], None);
        r.set_payload_types(Side::Customer, vec![96], None);
        // 20 ms = 320 samples; sample j of packet k of stream t.
        let samples =
            |t: i16, k: u16| -> Vec<i16> { (0..320).map(|j| t * 1000 + k as i16 * 7 - j as i16 * 3).collect() };
        let be = |v: &[i16]| -> Vec<u8> { v.iter().flat_map(|x| x.to_be_bytes()).collect() };
        for k in 0..6u16 {
            if k == 3 {
                continue; // lost on both streams: a gap
            }
            for (side, t, ssrc) in [(Side::Agent, 1, 1), (Side::Customer, -2, 2)] {
                if side == Side::Customer && k == 1 {
                    continue; // lost on the customer's only: silence there
                }
                let b = rtp::build(96, k, 320 * k as u32, ssrc, false, &be(&samples(t, k)));
                r.packet(side, &rtp::parse(&b).unwrap(), k as u64 * 20_000);
            }
        }
        ended(&mut r);
        let got: Vec<(u64, opptak_proto::Duration, Vec<u8>)> = r
            .take_events()
            .into_iter()
            .filter_map(|e| match e.event {
                Some(Event::AudioChunk(c)) => Some((c.sequence, c.offset.unwrap(), c.payload.to_vec())),
                _ => None,
            })
            .collect();
        let ms = |d: &opptak_proto::Duration| d.seconds as u64 * 1000 + d.nanos as u64 / 1_000_000;
        assert_eq!(
            got.iter().map(|(s, o, p)| (*s, ms(o), p.len())).collect::<Vec<_>>(),
            vec![
                (0, 0, 1280),
                (1, 20, 1280),
                (2, 40, 1280),
                (4, 80, 1280),
                (5, 100, 1280)
            ]
        );
        for (seq, _, payload) in &got {
            let k = *seq as u16;
            let frames: Vec<(i16, i16)> = payload
                .chunks_exact(4)
                .map(|f| (i16::from_le_bytes([f[0], f[1]]), i16::from_le_bytes([f[2], f[3]])))
                .collect();
            let cust = if k == 1 { vec![0; 320] } else { samples(-2, k) };
            assert_eq!(
                frames,
                samples(1, k).into_iter().zip(cust).collect::<Vec<_>>(),
                "chunk {seq}"
            );
        }
        assert!(r.take_notices().contains(&Notice::Concealed {
            side: Side::Customer,
            frames: 320
        }));
    }

    #[test]
    fn a_new_agent_or_desk_is_one_call_context_with_what_changed() {
        let started = v1::CallStarted {
            advisor_id: "1001".into(),
            desk: v1::Desk::CustomerCenter as i32,
            service_category: v1::ServiceCategory::General as i32,
            ..Default::default()
        };
        let mut r = Recording::new("c1".into(), Codec::Pcmu, 20, 4, started);
        r.take_events();
        let at = opptak_proto::Timestamp { seconds: 5, nanos: 0 };
        let same = Context {
            advisor_id: "1001".into(),
            desk: v1::Desk::CustomerCenter,
            service_category: v1::ServiceCategory::General,
        };
        assert!(!r.update_context(same.clone(), &Policy::default_policy(), "siprec", "x", at));
        // Unspecified or empty is no context: nothing to send.
        let blank = Context {
            advisor_id: String::new(),
            desk: v1::Desk::Unspecified,
            service_category: v1::ServiceCategory::Unspecified,
        };
        assert!(!r.update_context(blank, &Policy::default_policy(), "siprec", "x", at));
        assert!(r.take_events().is_empty());
        let moved = Context {
            advisor_id: "2002".into(),
            desk: v1::Desk::Markets,
            ..same
        };
        assert!(r.update_context(moved.clone(), &Policy::default_policy(), "siprec", "transfer", at));
        let ev = r.take_events();
        assert_eq!(ev.len(), 1);
        let Some(Event::CallContext(c)) = &ev[0].event else {
            panic!("{ev:?}")
        };
        assert_eq!(c.advisor_id.as_deref(), Some("2002"));
        assert_eq!(c.desk, Some(v1::Desk::Markets as i32));
        assert_eq!(c.service_category, None);
        assert_eq!(
            (c.by.as_str(), c.reason.as_str(), ev[0].call_id.as_str()),
            ("siprec", "transfer", "c1")
        );
        // Sent once: the same context again changes nothing.
        assert!(!r.update_context(moved, &Policy::default_policy(), "siprec", "transfer", at));
        // Out of an archived desk to a customer-center agent: the advisor
        // changes, the desk (and its 5-year archive) stays.
        let back = Context {
            advisor_id: "3003".into(),
            desk: v1::Desk::CustomerCenter,
            service_category: v1::ServiceCategory::General,
        };
        assert!(r.update_context(back, &Policy::default_policy(), "siprec", "transfer", at));
        let ev = r.take_events();
        let Some(Event::CallContext(c)) = &ev[0].event else {
            panic!("{ev:?}")
        };
        assert_eq!(
            (c.advisor_id.as_deref(), c.desk, c.service_category),
            (Some("3003"), None, None)
        );
    }
}
