//! Per-call reassembly of audio chunks into one gap-aware timeline.
//!
//! The telephony system numbers chunks `0, 1, 2, …` per call. Kafka keeps one
//! call's events in order, but the sender may still retry, duplicate or reorder
//! chunks, and lose some. [`Reassembler`] turns what arrives into an ordered
//! sequence of [`Piece`]s:
//!
//! - a chunk whose sequence number was already written is a **duplicate** and
//!   is dropped (the sequence number is the contract's idempotency key);
//! - a chunk ahead of the next expected one is **buffered** while it lies within
//!   the reorder window `W` of the next expected sequence number;
//! - when a chunk arrives `W` or more past the next expected one, the stream has
//!   moved on: the oldest hole is closed as a [`Gap`] with its duration, never
//!   silently joined — the writer fills it with silence so the timeline stays
//!   true and records it in the metadata;
//! - a chunk more than `W` past the highest sequence number seen is **outside
//!   the window** (most likely a corrupt sequence number) and is rejected;
//! - a chunk for a hole already closed is **late** and rejected, a chunk after
//!   [`Reassembler::finish`] is **after the end** and rejected;
//! - a chunk that would make the call longer than its maximum length
//!   ([`ReassemblyConfig::max_call_secs`]) is **too long** and rejected.
//!
//! Every value from the wire is bounded before it costs memory: a gap is
//! never longer than the chunks it stands for could have carried (at most
//! `W` chunks of [`MAX_CHUNK_PAYLOAD`]), nor than the call's remaining
//! maximum length; a `CallEnded` whose last sequence number lies more than
//! `W` past the highest sequence seen ends the call at the highest sequence
//! seen instead ([`Reassembler::finish`] returns the refusal for the caller
//! to dead-letter).
//!
//! Every chunk is tagged with a caller-chosen `T` (the recorder uses the Kafka
//! position) so the caller knows when each input has reached the output.

use crate::model::{AudioFormat, DecodeError, MAX_CHUNK_PAYLOAD};
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReassemblyConfig {
    /// Reorder window, in chunks.
    pub window: u64,
    /// The longest call kept, in seconds of timeline (audio and gaps).
    pub max_call_secs: u64,
}

/// A call's timeline is at most this long by default: a day, longer than
/// any trader's open line.
pub const MAX_CALL_SECS: u64 = 24 * 3600;

impl Default for ReassemblyConfig {
    fn default() -> Self {
        // 64 chunks: 6.4 s of 100 ms chunks, 1.3 s of 20 ms chunks.
        Self {
            window: 64,
            max_call_secs: MAX_CALL_SECS,
        }
    }
}

/// A hole in the sequence, kept with its length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gap {
    pub first_missing: u64,
    pub missing: u64,
    /// Position of the gap on the timeline, in frames from the call start.
    pub at_frame: u64,
    /// Length of the gap in frames (filled with silence in the recording).
    pub frames: u64,
}

/// One step of the reassembled timeline, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece<T> {
    Audio {
        sequence: u64,
        /// Interleaved frames in the call's wire codec, exactly as received.
        wire: Vec<u8>,
        frames: u64,
        tag: T,
    },
    Gap(Gap),
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("payload of {len} bytes exceeds the {max}-byte chunk limit")]
    Oversized { len: usize, max: usize },
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("sequence {sequence} is more than {window} past the highest sequence seen ({})", highest.map(|h| h.to_string()).unwrap_or_else(|| "none".into()))]
    OutsideWindow {
        sequence: u64,
        highest: Option<u64>,
        window: u64,
    },
    #[error("sequence {sequence} arrived after its hole was closed as a gap")]
    Late { sequence: u64 },
    #[error("sequence {sequence} arrived after the call ended{}", last.map(|l| format!(" (last sequence {l})")).unwrap_or_default())]
    AfterEnd { sequence: u64, last: Option<u64> },
    #[error("sequence {sequence} was received twice with different audio")]
    Conflicting { sequence: u64 },
    #[error("sequence {sequence} would make the call longer than its maximum of {max_secs} s")]
    TooLong { sequence: u64, max_secs: u64 },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Offer {
    /// Taken: it will come out of [`Reassembler::drain`] in order.
    Accepted,
    /// Already written or already buffered with the same audio.
    Duplicate,
}

struct Pending<T> {
    wire: Vec<u8>,
    frames: u64,
    offset_frames: Option<u64>,
    tag: T,
}

/// Durable progress of a call, enough to resume reassembly after a restart.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Every sequence number below this one is written or closed as a gap.
    pub next_sequence: u64,
    /// Frames on the timeline so far (audio and gaps).
    pub frames: u64,
    /// Closed holes: `(first_missing, missing)`.
    pub gaps: Vec<(u64, u64)>,
    /// Frames in the most recent chunk; sizes gaps when no offset is known.
    pub last_chunk_frames: u64,
    pub ended: bool,
}

pub struct Reassembler<T> {
    format: AudioFormat,
    config: ReassemblyConfig,
    progress: Progress,
    pending: BTreeMap<u64, Pending<T>>,
    out: Vec<Piece<T>>,
    last_sequence: Option<u64>,
}

impl<T> Reassembler<T> {
    pub fn new(format: AudioFormat, config: ReassemblyConfig) -> Self {
        Self::resume(format, config, Progress::default())
    }

    pub fn resume(format: AudioFormat, config: ReassemblyConfig, progress: Progress) -> Self {
        Self {
            format,
            config,
            progress,
            pending: BTreeMap::new(),
            out: Vec::new(),
            last_sequence: None,
        }
    }

    pub fn format(&self) -> &AudioFormat {
        &self.format
    }

    /// Progress counting what has been drained (the caller persists it with the audio).
    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    pub fn buffered(&self) -> usize {
        self.pending.len()
    }

    /// Tags of the chunks held back waiting for a hole to fill.
    pub fn buffered_tags(&self) -> impl Iterator<Item = &T> {
        self.pending.values().map(|p| &p.tag)
    }

    fn highest_seen(&self) -> Option<u64> {
        let written = self.progress.next_sequence.checked_sub(1);
        let buffered = self.pending.keys().next_back().copied();
        written.max(buffered)
    }

    /// Offers one chunk. `offset_micros` is the chunk's position from the call start, when known.
    pub fn offer(
        &mut self,
        sequence: u64,
        payload: &[u8],
        offset_micros: Option<u64>,
        tag: T,
    ) -> Result<Offer, Rejection> {
        if payload.len() > MAX_CHUNK_PAYLOAD {
            return Err(Rejection::Oversized {
                len: payload.len(),
                max: MAX_CHUNK_PAYLOAD,
            });
        }
        let next = self.progress.next_sequence;
        if sequence < next {
            if self.in_closed_gap(sequence) {
                return Err(Rejection::Late { sequence });
            }
            return Ok(Offer::Duplicate);
        }
        if self.progress.ended {
            return Err(Rejection::AfterEnd {
                sequence,
                last: self.last_sequence.or(next.checked_sub(1)),
            });
        }
        let window = self.config.window.max(1);
        let highest = self.highest_seen();
        let limit = highest.map_or(window, |h| h.saturating_add(window));
        if sequence > limit {
            return Err(Rejection::OutsideWindow {
                sequence,
                highest,
                window,
            });
        }
        let frames = self.format.frames_in(payload)?;
        let offset_frames = offset_micros.map(|us| self.format.micros_to_frames(us));
        let buffered: u64 = self.pending.values().map(|p| p.frames).sum();
        let ends_at = offset_frames
            .unwrap_or(0)
            .max(self.progress.frames.saturating_add(buffered))
            .saturating_add(frames);
        if ends_at > self.max_frames() && !self.pending.contains_key(&sequence) {
            return Err(Rejection::TooLong {
                sequence,
                max_secs: self.config.max_call_secs,
            });
        }
        if let Some(existing) = self.pending.get(&sequence) {
            return if existing.wire == payload {
                Ok(Offer::Duplicate)
            } else {
                Err(Rejection::Conflicting { sequence })
            };
        }
        self.pending.insert(
            sequence,
            Pending {
                wire: payload.to_vec(),
                frames,
                offset_frames,
                tag,
            },
        );
        self.release_contiguous();
        while sequence >= self.progress.next_sequence.saturating_add(window) {
            if !self.close_oldest_hole() {
                break;
            }
        }
        Ok(Offer::Accepted)
    }

    fn in_closed_gap(&self, sequence: u64) -> bool {
        self.progress
            .gaps
            .iter()
            .any(|&(first, n)| sequence >= first && sequence < first + n)
    }

    fn release_contiguous(&mut self) {
        while let Some(p) = self.pending.remove(&self.progress.next_sequence) {
            let sequence = self.progress.next_sequence;
            self.progress.next_sequence += 1;
            self.progress.frames += p.frames;
            if p.frames > 0 {
                self.progress.last_chunk_frames = p.frames;
            }
            self.out.push(Piece::Audio {
                sequence,
                wire: p.wire,
                frames: p.frames,
                tag: p.tag,
            });
        }
    }

    /// Closes the hole at the next expected sequence number as a gap, up to the
    /// first buffered chunk, and releases what follows. Returns false when
    /// nothing is buffered (no hole to close). The recorder calls this when a
    /// hole has waited longer than its reorder timeout.
    pub fn close_oldest_hole(&mut self) -> bool {
        let Some((&first_buffered, p)) = self.pending.iter().next() else {
            return false;
        };
        let first_missing = self.progress.next_sequence;
        let missing = first_buffered - first_missing;
        let frames = self.gap_frames(missing, p.offset_frames);
        self.push_gap(first_missing, missing, frames);
        self.release_contiguous();
        true
    }

    /// The longest timeline kept, in frames.
    fn max_frames(&self) -> u64 {
        self.config
            .max_call_secs
            .saturating_mul(u64::from(self.format.sample_rate_hz()))
    }

    fn gap_frames(&self, missing: u64, resume_at: Option<u64>) -> u64 {
        // Never fill more than the missing chunks could have carried, nor
        // past the call's maximum length.
        let max_chunk_frames = (MAX_CHUNK_PAYLOAD / self.format.wire_frame_bytes()) as u64;
        let cap = missing
            .saturating_mul(max_chunk_frames)
            .min(self.max_frames().saturating_sub(self.progress.frames));
        match resume_at {
            Some(at) => at.saturating_sub(self.progress.frames).min(cap),
            None => missing.saturating_mul(self.progress.last_chunk_frames).min(cap),
        }
    }

    fn push_gap(&mut self, first_missing: u64, missing: u64, frames: u64) {
        let gap = Gap {
            first_missing,
            missing,
            at_frame: self.progress.frames,
            frames,
        };
        self.progress.gaps.push((first_missing, missing));
        self.progress.next_sequence = first_missing + missing;
        self.progress.frames += frames;
        self.out.push(Piece::Gap(gap));
    }

    /// The call ended after chunk `last_sequence` (None: no audio at all).
    /// Every hole up to the last chunk becomes a gap; buffered chunks are
    /// written. A `last_sequence` more than the window past the highest
    /// sequence seen is not believed: the call ends at the highest sequence
    /// seen, and the refusal is returned for the caller to dead-letter.
    #[must_use = "a refused last sequence must be dead-lettered"]
    pub fn finish(&mut self, last_sequence: Option<u64>) -> Option<Rejection> {
        let window = self.config.window.max(1);
        let highest = self.highest_seen();
        let limit = highest.map_or(window, |h| h.saturating_add(window));
        let (last_sequence, refused) = match last_sequence {
            Some(last) if last > limit => (
                highest,
                Some(Rejection::OutsideWindow {
                    sequence: last,
                    highest,
                    window,
                }),
            ),
            other => (other, None),
        };
        while self.close_oldest_hole() {}
        if let Some(last) = last_sequence {
            let next = self.progress.next_sequence;
            if last >= next {
                let missing = last - next + 1;
                let frames = self.gap_frames(missing, None);
                self.push_gap(next, missing, frames);
            }
        }
        self.last_sequence = last_sequence;
        self.progress.ended = true;
        refused
    }

    /// The highest sequence number received so far (written, or buffered
    /// behind a hole); `None` before the first chunk.
    pub fn last_received(&self) -> Option<u64> {
        self.pending
            .keys()
            .next_back()
            .copied()
            .or_else(|| self.progress.next_sequence.checked_sub(1))
    }

    /// Takes the pieces released since the last call, in timeline order.
    pub fn drain(&mut self) -> Vec<Piece<T>> {
        std::mem::take(&mut self.out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::model::{ChannelRole, Codec};

    fn fmt() -> AudioFormat {
        AudioFormat::new(Codec::L16, 8000, vec![ChannelRole::Agent, ChannelRole::Customer]).unwrap()
    }

    fn chunk(seq: u64) -> Vec<u8> {
        // 4 frames of stereo L16 whose samples encode the sequence number.
        (0..4u16).flat_map(|i| [seq as u8, i as u8, 0, 1]).collect()
    }

    fn audio_seqs(pieces: &[Piece<u64>]) -> Vec<String> {
        pieces
            .iter()
            .map(|p| match p {
                Piece::Audio { sequence, .. } => sequence.to_string(),
                Piece::Gap(g) => format!("gap{}+{}:{}f", g.first_missing, g.missing, g.frames),
            })
            .collect()
    }

    #[test]
    fn in_order_chunks_pass_straight_through() {
        let mut r = Reassembler::new(fmt(), ReassemblyConfig::default());
        for s in 0..3 {
            assert_eq!(r.offer(s, &chunk(s), None, s), Ok(Offer::Accepted));
        }
        assert_eq!(audio_seqs(&r.drain()), ["0", "1", "2"]);
        assert_eq!(r.progress().frames, 12);
    }

    #[test]
    fn last_received_counts_chunks_held_behind_a_hole() {
        let mut r = Reassembler::new(fmt(), ReassemblyConfig::default());
        assert_eq!(r.last_received(), None);
        r.offer(0, &chunk(0), None, 0).unwrap();
        assert_eq!(r.last_received(), Some(0));
        r.offer(3, &chunk(3), None, 3).unwrap();
        assert_eq!(r.last_received(), Some(3));
        // Ending there writes the held chunk after a gap, and nothing after it.
        assert_eq!(r.finish(r.last_received()), None);
        assert_eq!(audio_seqs(&r.drain()), ["0", "gap1+2:8f", "3"]);
        assert_eq!(r.last_received(), Some(3));
    }

    #[test]
    fn reordered_and_duplicated_chunks_come_out_once_in_order() {
        let mut r = Reassembler::new(fmt(), ReassemblyConfig::default());
        for s in [2, 0, 2, 1, 0, 3] {
            r.offer(s, &chunk(s), None, s).unwrap();
        }
        assert_eq!(audio_seqs(&r.drain()), ["0", "1", "2", "3"]);
    }

    #[test]
    fn a_lost_chunk_becomes_a_gap_once_the_window_has_passed() {
        let mut r = Reassembler::new(
            fmt(),
            ReassemblyConfig {
                window: 3,
                ..Default::default()
            },
        );
        for s in [0, 2, 3] {
            r.offer(s, &chunk(s), None, s).unwrap();
        }
        assert_eq!(audio_seqs(&r.drain()), ["0"]);
        r.offer(4, &chunk(4), None, 4).unwrap();
        assert_eq!(audio_seqs(&r.drain()), ["gap1+1:4f", "2", "3", "4"]);
        assert_eq!(r.offer(1, &chunk(1), None, 1), Err(Rejection::Late { sequence: 1 }));
    }

    #[test]
    fn gap_length_follows_the_offset_when_given() {
        let mut r = Reassembler::new(
            fmt(),
            ReassemblyConfig {
                window: 4,
                ..Default::default()
            },
        );
        r.offer(0, &chunk(0), Some(0), 0).unwrap();
        // Chunk 3 starts at 2 ms = 16 frames: the gap is 12 frames, not 2 × 4.
        r.offer(3, &chunk(3), Some(2_000), 3).unwrap();
        assert_eq!(r.finish(Some(3)), None);
        assert_eq!(audio_seqs(&r.drain()), ["0", "gap1+2:12f", "3"]);
    }

    #[test]
    fn far_jumps_are_rejected_not_turned_into_huge_gaps() {
        let mut r = Reassembler::new(
            fmt(),
            ReassemblyConfig {
                window: 8,
                ..Default::default()
            },
        );
        r.offer(0, &chunk(0), None, 0).unwrap();
        assert!(matches!(
            r.offer(1_000_000, &chunk(0), None, 9),
            Err(Rejection::OutsideWindow { .. })
        ));
        r.offer(1, &chunk(1), None, 1).unwrap();
        assert_eq!(audio_seqs(&r.drain()), ["0", "1"]);
    }

    #[test]
    fn finish_closes_trailing_holes_and_refuses_later_chunks() {
        let mut r = Reassembler::new(fmt(), ReassemblyConfig::default());
        r.offer(0, &chunk(0), None, 0).unwrap();
        r.offer(2, &chunk(2), None, 2).unwrap();
        assert_eq!(r.finish(Some(4)), None);
        assert_eq!(audio_seqs(&r.drain()), ["0", "gap1+1:4f", "2", "gap3+2:8f"]);
        assert!(matches!(
            r.offer(5, &chunk(5), None, 5),
            Err(Rejection::AfterEnd { .. })
        ));
        assert_eq!(r.offer(2, &chunk(2), None, 2), Ok(Offer::Duplicate));
    }

    #[test]
    fn an_end_far_past_the_highest_sequence_is_refused_not_filled_with_silence() {
        let mut r = Reassembler::new(fmt(), ReassemblyConfig::default());
        r.offer(0, &chunk(0), None, 0).unwrap();
        // One chunk, then "the call ended after chunk 1e9": believing it would
        // write a billion chunks of silence.
        assert_eq!(
            r.finish(Some(1_000_000_000)),
            Some(Rejection::OutsideWindow {
                sequence: 1_000_000_000,
                highest: Some(0),
                window: 64
            })
        );
        assert_eq!(audio_seqs(&r.drain()), ["0"]);
        assert_eq!(r.progress().frames, 4);
        assert!(r.progress().ended);
        // Within the window, trailing chunks lost in transit are still gaps.
        let mut r = Reassembler::new(fmt(), ReassemblyConfig::default());
        r.offer(0, &chunk(0), None, 0).unwrap();
        assert_eq!(r.finish(Some(64)), None);
        assert_eq!(audio_seqs(&r.drain()), ["0", "gap1+64:256f"]);
        // Nothing seen: an end beyond the first window is refused too.
        let mut r: Reassembler<u64> = Reassembler::new(fmt(), ReassemblyConfig::default());
        assert!(matches!(
            r.finish(Some(u64::MAX)),
            Some(Rejection::OutsideWindow { .. })
        ));
        assert!(r.drain().is_empty());
    }

    #[test]
    fn a_call_longer_than_its_maximum_is_refused_and_gaps_stop_at_it() {
        // One second at 8 kHz: 8000 frames, 2000 chunks of 4 frames.
        let config = ReassemblyConfig {
            max_call_secs: 1,
            ..Default::default()
        };
        let mut r = Reassembler::new(fmt(), config);
        for s in 0..2000 {
            r.offer(s, &chunk(s), None, s).unwrap();
        }
        assert_eq!(
            r.offer(2000, &chunk(2000), None, 2000),
            Err(Rejection::TooLong {
                sequence: 2000,
                max_secs: 1
            })
        );
        assert_eq!(r.progress().frames, 8000);
        // An offset past the maximum is refused before it becomes a gap.
        let mut r = Reassembler::new(fmt(), config);
        r.offer(0, &chunk(0), Some(0), 0).unwrap();
        assert!(matches!(
            r.offer(1, &chunk(1), Some(u64::MAX), 1),
            Err(Rejection::TooLong { .. })
        ));
        // A gap is cut at the maximum: 0.999 s of offset leaves 7992 frames
        // of room, capped again by what one missing chunk could carry.
        let mut r = Reassembler::new(fmt(), config);
        r.offer(0, &chunk(0), Some(0), 0).unwrap();
        r.offer(2, &chunk(2), Some(999_000), 2).unwrap();
        assert_eq!(r.finish(Some(2)), None);
        let frames: u64 = r
            .drain()
            .iter()
            .map(|p| match p {
                Piece::Audio { frames, .. } => *frames,
                Piece::Gap(g) => g.frames,
            })
            .sum();
        assert!(frames <= 8000, "{frames} frames on a 1 s timeline");
    }

    #[test]
    fn conflicting_duplicates_and_bad_payloads_are_rejected() {
        let mut r = Reassembler::new(fmt(), ReassemblyConfig::default());
        r.offer(1, &chunk(1), None, 1).unwrap();
        assert_eq!(
            r.offer(1, &chunk(7), None, 1),
            Err(Rejection::Conflicting { sequence: 1 })
        );
        assert!(matches!(r.offer(0, &[0; 3], None, 0), Err(Rejection::Decode(_))));
        let big = vec![0; MAX_CHUNK_PAYLOAD + 4];
        assert!(matches!(r.offer(0, &big, None, 0), Err(Rejection::Oversized { .. })));
    }

    #[test]
    fn resumed_reassembler_treats_replayed_chunks_as_duplicates() {
        let progress = Progress {
            next_sequence: 5,
            frames: 20,
            gaps: vec![(2, 1)],
            last_chunk_frames: 4,
            ended: false,
        };
        let mut r = Reassembler::resume(fmt(), ReassemblyConfig::default(), progress);
        assert_eq!(r.offer(4, &chunk(4), None, 4), Ok(Offer::Duplicate));
        assert_eq!(r.offer(2, &chunk(2), None, 2), Err(Rejection::Late { sequence: 2 }));
        r.offer(5, &chunk(5), None, 5).unwrap();
        assert_eq!(audio_seqs(&r.drain()), ["5"]);
    }
}
