//! Per-stream jitter buffer: RTP packets back in sequence order.
//!
//! Sequence numbers are extended past their 16-bit wrap. A packet already
//! held or already played out is a duplicate and dropped; one for a number
//! given up as lost is late and dropped (counted). The buffer holds at most
//! `depth` packets: when it is full and the next expected number is still
//! missing, that number (and any run up to the first held packet) is lost.
//! A new SSRC or a jump of more than [`RESET_JUMP`] numbers restarts the
//! numbering (what was held is played out first). Timestamps are passed
//! through untouched: placing audio in time is the session's job.

use std::collections::{BTreeMap, VecDeque};

/// A sequence jump this large is a restarted source, not loss.
pub const RESET_JUMP: u64 = 3000;

/// One packet as the buffer keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    pub sequence: u16,
    pub timestamp: u32,
    pub payload_type: u8,
    pub marker: bool,
    pub payload: Vec<u8>,
    /// When it arrived (the caller's microsecond clock).
    pub arrival_us: u64,
}

/// What comes out, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Out {
    Packet(Held),
    /// This many sequence numbers are given up as lost here.
    Lost(u64),
    /// The numbering restarted (new SSRC or a large jump): the next packet
    /// has no sequence or timestamp relation to the previous one.
    Restart,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub received: u64,
    pub duplicates: u64,
    pub late: u64,
    pub lost: u64,
    pub restarts: u64,
}

pub struct JitterBuffer {
    depth: usize,
    ssrc: Option<u32>,
    /// Next extended sequence number to play out.
    next: u64,
    highest: u64,
    started: bool,
    /// Something was played out since the (re)start; before that, the
    /// buffer fills to `depth` so a reordered first packet is not late.
    playing: bool,
    held: BTreeMap<u64, Held>,
    /// Recently given-up numbers, to tell late from duplicate.
    recent_lost: VecDeque<u64>,
    pub stats: Stats,
}

impl JitterBuffer {
    pub fn new(depth: usize) -> Self {
        Self {
            depth: depth.max(1),
            ssrc: None,
            next: 0,
            highest: 0,
            started: false,
            playing: false,
            held: BTreeMap::new(),
            recent_lost: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    /// The extended form of `seq`: the one nearest the highest seen.
    fn extend(&self, seq: u16) -> u64 {
        let base = self.highest & !0xFFFF;
        let cand = base | seq as u64;
        let candidates = [cand.wrapping_sub(0x1_0000), cand, cand + 0x1_0000];
        candidates
            .into_iter()
            .filter(|c| *c < u64::MAX / 2)
            .min_by_key(|c| c.abs_diff(self.highest))
            .unwrap_or(cand)
    }

    /// Takes one packet; appends what can be played out to `out`.
    pub fn push(&mut self, ssrc: u32, p: Held, out: &mut Vec<Out>) {
        self.stats.received += 1;
        if self.started && self.ssrc != Some(ssrc) {
            self.restart(out);
        }
        self.ssrc = Some(ssrc);
        if !self.started {
            // Start well above zero so numbers before the first stay positive.
            self.next = (1 << 32) | p.sequence as u64;
            self.highest = self.next;
            self.started = true;
        }
        let mut ext = self.extend(p.sequence);
        if ext.abs_diff(self.highest) > RESET_JUMP {
            self.restart(out);
            self.ssrc = Some(ssrc);
            self.next = (1 << 32) | p.sequence as u64;
            self.highest = self.next;
            self.started = true;
            ext = self.next;
        }
        if ext < self.next && !self.playing {
            self.next = ext;
        }
        if ext < self.next {
            if self.recent_lost.contains(&ext) {
                self.stats.late += 1;
            } else {
                self.stats.duplicates += 1;
            }
            return;
        }
        if self.held.contains_key(&ext) {
            self.stats.duplicates += 1;
            return;
        }
        self.highest = self.highest.max(ext);
        if self.playing && ext == self.next && self.held.is_empty() {
            // In order with nothing held (nearly every packet): what
            // inserting and draining would do, without the map.
            out.push(Out::Packet(p));
            self.next += 1;
            return;
        }
        self.held.insert(ext, p);
        if !self.playing {
            if self.held.len() < self.depth {
                return;
            }
            self.next = *self.held.keys().next().unwrap_or(&self.next);
            self.playing = true;
        }
        self.drain(out);
        while self.held.len() >= self.depth {
            let first = *self.held.keys().next().unwrap_or(&self.next);
            self.give_up(first, out);
            self.drain(out);
        }
    }

    fn drain(&mut self, out: &mut Vec<Out>) {
        while let Some(p) = self.held.remove(&self.next) {
            out.push(Out::Packet(p));
            self.next += 1;
        }
    }

    /// Declares every number from `next` up to `until` lost.
    fn give_up(&mut self, until: u64, out: &mut Vec<Out>) {
        if until <= self.next {
            return;
        }
        let n = until - self.next;
        for s in self.next..until {
            if self.recent_lost.len() == 256 {
                self.recent_lost.pop_front();
            }
            self.recent_lost.push_back(s);
        }
        self.stats.lost += n;
        out.push(Out::Lost(n));
        self.next = until;
    }

    /// Plays out everything held, in order, with the holes between as lost
    /// (the stream went quiet or the session ends).
    pub fn flush(&mut self, out: &mut Vec<Out>) {
        if !self.playing {
            self.next = *self.held.keys().next().unwrap_or(&self.next);
            self.playing = !self.held.is_empty();
        }
        while let Some(&first) = self.held.keys().next() {
            self.give_up(first, out);
            self.drain(out);
        }
    }

    fn restart(&mut self, out: &mut Vec<Out>) {
        self.flush(out);
        self.stats.restarts += 1;
        self.recent_lost.clear();
        self.started = false;
        self.playing = false;
        out.push(Out::Restart);
    }

    pub fn held(&self) -> usize {
        self.held.len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pkt(seq: u16) -> Held {
        Held {
            sequence: seq,
            timestamp: (seq as u32).wrapping_mul(160),
            payload_type: 0,
            marker: false,
            payload: seq.to_be_bytes().to_vec(),
            arrival_us: 0,
        }
    }

    fn run(depth: usize, ssrc_seqs: &[(u32, u16)]) -> (Vec<Out>, Stats) {
        let mut jb = JitterBuffer::new(depth);
        let mut out = Vec::new();
        for &(ssrc, s) in ssrc_seqs {
            jb.push(ssrc, pkt(s), &mut out);
        }
        jb.flush(&mut out);
        (out, jb.stats)
    }

    fn seqs(out: &[Out]) -> Vec<u16> {
        out.iter()
            .filter_map(|o| match o {
                Out::Packet(p) => Some(p.sequence),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn reorders_across_the_wrap() {
        let (out, st) = run(4, &[(1, 65534), (1, 0), (1, 65535), (1, 1)]);
        assert_eq!(seqs(&out), vec![65534, 65535, 0, 1]);
        assert_eq!(st.lost, 0);
    }

    #[test]
    fn loss_is_declared_when_the_buffer_is_full_and_late_packets_counted() {
        let (out, st) = run(3, &[(1, 10), (1, 12), (1, 13), (1, 14), (1, 11), (1, 14)]);
        assert_eq!(
            out,
            vec![
                Out::Packet(pkt(10)),
                Out::Lost(1),
                Out::Packet(pkt(12)),
                Out::Packet(pkt(13)),
                Out::Packet(pkt(14))
            ]
        );
        assert_eq!((st.lost, st.late, st.duplicates), (1, 1, 1));
    }

    #[test]
    fn ssrc_change_and_sequence_jump_restart_the_numbering() {
        let (out, st) = run(4, &[(1, 100), (1, 102), (2, 7), (2, 8), (2, 20000), (2, 20001)]);
        assert_eq!(
            out,
            vec![
                Out::Packet(pkt(100)),
                Out::Lost(1),
                Out::Packet(pkt(102)),
                Out::Restart,
                Out::Packet(pkt(7)),
                Out::Packet(pkt(8)),
                Out::Restart,
                Out::Packet(pkt(20000)),
                Out::Packet(pkt(20001)),
            ]
        );
        assert_eq!(st.restarts, 2);
    }

    proptest! {
        /// Any permutation within blocks of `depth` packets, with any
        /// duplicates arriving at most `depth` places after the original,
        /// yields exactly the original sequence, with no loss.
        #[test]
        fn permutation_and_duplication_within_depth_is_recovered_exactly(
            start in any::<u16>(),
            depth in 1usize..12,
            n in 1usize..400,
            seed in any::<u64>(),
            dup_rate in 0u32..50,
        ) {
            let mut rng = seed;
            let mut next_rand = move || { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; rng };
            let original: Vec<u16> = (0..n).map(|i| start.wrapping_add(i as u16)).collect();
            let mut arrival: Vec<u16> = Vec::new();
            for block in original.chunks(depth) {
                let mut b = block.to_vec();
                for i in (1..b.len()).rev() {
                    let j = (next_rand() % (i as u64 + 1)) as usize;
                    b.swap(i, j);
                }
                let mut with_dups = Vec::new();
                for s in b {
                    with_dups.push(s);
                    if (next_rand() % 100) < dup_rate as u64 {
                        with_dups.push(s);
                    }
                }
                arrival.extend(with_dups);
            }
            let input: Vec<(u32, u16)> = arrival.iter().map(|s| (42, *s)).collect();
            let (out, st) = run(depth, &input);
            prop_assert_eq!(seqs(&out), original);
            prop_assert!(out.iter().all(|o| matches!(o, Out::Packet(_))));
            prop_assert_eq!(st.lost, 0);
            prop_assert_eq!(st.duplicates, (arrival.len() - n) as u64);
        }

        /// Dropping packets (never the first) gives exactly the others in
        /// order and the dropped count as loss.
        #[test]
        fn drops_become_exact_losses(start in any::<u16>(), mask in proptest::collection::vec(any::<bool>(), 1..300), depth in 1usize..8) {
            let sent: Vec<(u32, u16)> = mask.iter().enumerate().filter(|(i, keep)| *i == 0 || **keep).map(|(i, _)| (9, start.wrapping_add(i as u16))).collect();
            let (out, st) = run(depth, &sent);
            let got = seqs(&out);
            prop_assert_eq!(got, sent.iter().map(|(_, s)| *s).collect::<Vec<_>>());
            let last = sent.last().map(|(_, s)| s.wrapping_sub(start) as u64).unwrap_or(0);
            prop_assert_eq!(st.lost, last + 1 - sent.len() as u64);
        }
    }
}
