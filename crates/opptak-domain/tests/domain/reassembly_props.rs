//! Properties: whatever order and duplication the chunks arrive in (within the
//! window), the timeline equals the source, and every lost chunk is a gap of the
//! right length at the right place; and whatever arrives at all (any sequence
//! numbers, offsets, payloads and ends), nothing panics and the timeline stays
//! within the call's bounds.

use opptak_domain::model::{AudioFormat, ChannelRole, Codec, MAX_CHUNK_PAYLOAD};
use opptak_domain::reassembly::{Piece, Reassembler, ReassemblyConfig};
use proptest::prelude::*;

fn fmt() -> AudioFormat {
    AudioFormat::new(Codec::Pcmu, 8000, vec![ChannelRole::Agent, ChannelRole::Customer]).expect("valid format")
}

/// Chunks of varying length, `lost` marks those never sent, `order` a
/// permutation that moves each chunk at most `window / 2` places.
fn scenario() -> impl Strategy<Value = (Vec<Vec<u8>>, Vec<bool>, Vec<usize>, Vec<bool>)> {
    (1usize..120).prop_flat_map(|n| {
        (
            prop::collection::vec(
                prop::collection::vec(any::<u8>(), 1..20).prop_map(|mut v| {
                    if v.len() % 2 == 1 {
                        v.pop();
                    }
                    if v.is_empty() {
                        v = vec![0xFF, 0xFF];
                    }
                    v
                }),
                n,
            ),
            prop::collection::vec(prop::bool::weighted(0.05), n),
            prop::collection::vec(0usize..8, n),
            prop::collection::vec(prop::bool::weighted(0.2), n),
        )
    })
}

proptest! {
    #[test]
    fn timeline_matches_source((chunks, lost, jitter, dup) in scenario()) {
        let window = 16u64;
        let f = fmt();
        // Shuffle within the window: sort by index + jitter (< window / 2).
        let mut order: Vec<usize> = (0..chunks.len()).collect();
        order.sort_by_key(|&i| i + jitter[i]);
        let mut r = Reassembler::new(f.clone(), ReassemblyConfig { window, ..Default::default() });
        let mut pieces = Vec::new();
        for &i in &order {
            if lost[i] { continue; }
            let times = if dup[i] { 2 } else { 1 };
            for _ in 0..times {
                r.offer(i as u64, &chunks[i], None, i).expect("within window");
            }
            pieces.extend(r.drain());
        }
        assert_eq!(r.finish(Some(chunks.len() as u64 - 1)), None);
        pieces.extend(r.drain());

        let mut seen = vec![false; chunks.len()];
        let mut next = 0u64;
        for p in &pieces {
            match p {
                Piece::Audio { sequence, wire, .. } => {
                    prop_assert_eq!(*sequence, next);
                    prop_assert!(!lost[*sequence as usize]);
                    prop_assert_eq!(wire, &chunks[*sequence as usize]);
                    seen[*sequence as usize] = true;
                    next += 1;
                }
                Piece::Gap(g) => {
                    prop_assert_eq!(g.first_missing, next);
                    for s in g.first_missing..g.first_missing + g.missing {
                        prop_assert!(lost[s as usize], "gap over a chunk that was sent: {}", s);
                    }
                    next += g.missing;
                }
            }
        }
        prop_assert_eq!(next, chunks.len() as u64);
        for i in 0..chunks.len() {
            prop_assert_eq!(seen[i], !lost[i]);
        }
    }
}

/// One input off the wire, anything a sender (or an attacker) could send.
#[derive(Clone, Debug)]
enum Input {
    Chunk {
        sequence: u64,
        len: usize,
        offset_us: Option<u64>,
    },
    CloseHole,
    End(Option<u64>),
}

fn sequence() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..200, any::<u64>(), Just(u64::MAX), (u64::MAX - 100)..=u64::MAX]
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        8 => (sequence(), 0usize..3000, prop::option::of(prop_oneof![0u64..10_000_000, any::<u64>()]))
            .prop_map(|(sequence, len, offset_us)| Input::Chunk { sequence, len, offset_us }),
        1 => Just(Input::CloseHole),
        1 => prop::option::of(sequence()).prop_map(Input::End),
    ]
}

proptest! {
    #[test]
    fn arbitrary_input_never_panics_and_stays_bounded(inputs in prop::collection::vec(input(), 1..200)) {
        // µ-law mono at 8 kHz, a 2-second maximum: 16,000 frames.
        let f = AudioFormat::new(Codec::Pcmu, 8000, vec![ChannelRole::Mixed]).expect("valid format");
        let config = ReassemblyConfig { window: 16, max_call_secs: 2 };
        let max_frames = 2 * 8000u64;
        let max_chunk_frames = (MAX_CHUNK_PAYLOAD / f.wire_frame_bytes()) as u64;
        let mut r = Reassembler::new(f, config);
        let mut frames = 0u64;
        for i in inputs {
            match i {
                Input::Chunk { sequence, len, offset_us } => {
                    let _ = r.offer(sequence, &vec![0x7f; len], offset_us, ());
                }
                Input::CloseHole => {
                    r.close_oldest_hole();
                }
                Input::End(last) => {
                    let _ = r.finish(last);
                }
            }
            prop_assert!(r.buffered() as u64 <= config.window + 1, "{} chunks buffered", r.buffered());
            for p in r.drain() {
                match p {
                    Piece::Audio { frames: n, .. } => frames += n,
                    Piece::Gap(g) => {
                        prop_assert!(g.missing <= config.window + 1, "a gap of {} chunks", g.missing);
                        prop_assert!(g.frames <= (config.window + 1) * max_chunk_frames, "a gap of {} frames", g.frames);
                        frames += g.frames;
                    }
                }
            }
            prop_assert_eq!(frames, r.progress().frames);
            // The buffered chunks released after a gap that reached the
            // maximum may run past it, by at most a window of chunks.
            prop_assert!(frames <= max_frames + (config.window + 1) * 3000, "{} frames", frames);
        }
    }
}
