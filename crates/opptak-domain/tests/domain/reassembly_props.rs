//! Property: whatever order and duplication the chunks arrive in (within the
//! window), the timeline equals the source, and every lost chunk is a gap of the
//! right length at the right place.

use opptak_domain::model::{AudioFormat, ChannelRole, Codec};
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
        let mut r = Reassembler::new(f.clone(), ReassemblyConfig { window });
        let mut pieces = Vec::new();
        for &i in &order {
            if lost[i] { continue; }
            let times = if dup[i] { 2 } else { 1 };
            for _ in 0..times {
                r.offer(i as u64, &chunks[i], None, i).expect("within window");
            }
            pieces.extend(r.drain());
        }
        r.finish(Some(chunks.len() as u64 - 1));
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
