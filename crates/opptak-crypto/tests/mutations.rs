//! 10,000 random mutations of a sealed multi-segment recording — bit flips,
//! truncations at and between segment boundaries, a dropped final segment,
//! reordered, duplicated and swapped-in segments, header edits — and not one
//! is accepted.
#![allow(clippy::unwrap_used)]

use opptak_crypto::segment::{open_stream, seal, ArtifactKind, SegmentHeader};
use opptak_crypto::DataKey;
use rand::{Rng, SeedableRng};

const FRAME: usize = 2;

fn recording(key: &DataKey, id: &str, sizes: &[usize], seed: u64) -> Vec<Vec<u8>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut first = 0u64;
    sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let pt: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
            let hdr = SegmentHeader {
                kind: ArtifactKind::Recording,
                final_segment: i + 1 == sizes.len(),
                key_id: key.id().to_owned(),
                recording_id: id.to_owned(),
                index: i as u64,
                first_frame: first,
            };
            first += (n / FRAME) as u64;
            seal(key, &hdr, &pt).unwrap()
        })
        .collect()
}

fn verify(key: &DataKey, segs: &[Vec<u8>]) -> bool {
    let parts: Vec<&[u8]> = segs.iter().map(Vec::as_slice).collect();
    open_stream(key, ArtifactKind::Recording, "rec-a", &parts, FRAME, true).is_ok()
}

#[test]
fn ten_thousand_mutations_are_all_rejected() {
    let key = DataKey::generate();
    let other_key = DataKey::generate();
    let sizes = [4000, 0, 4000, 1234, 16384, 2, 4000, 300];
    let a = recording(&key, "rec-a", &sizes, 1);
    // Same key, other recording; and the same recording id under another key.
    let b = recording(&key, "rec-b", &sizes, 2);
    let c = recording(&other_key, "rec-a", &sizes, 3);
    assert!(verify(&key, &a), "the unmutated recording opens");

    let mut rng = rand::rngs::StdRng::seed_from_u64(0x0009_77a4);
    let mut counts = [0u32; 9];
    for _ in 0..10_000 {
        let mut m = a.clone();
        let kind = rng.gen_range(0..9);
        counts[kind] += 1;
        match kind {
            0 => {
                // Bit flip anywhere.
                let s = rng.gen_range(0..m.len());
                let bit = rng.gen_range(0..m[s].len() * 8);
                m[s][bit / 8] ^= 1 << (bit % 8);
            }
            1 => {
                // Header edit: a byte of the header changed.
                let s = rng.gen_range(0..m.len());
                let (_, hlen) = SegmentHeader::parse(&m[s]).unwrap();
                let at = rng.gen_range(0..hlen);
                m[s][at] = m[s][at].wrapping_add(rng.gen_range(1..=255));
            }
            2 => {
                // Truncation inside a segment.
                let s = rng.gen_range(0..m.len());
                let len = rng.gen_range(0..m[s].len());
                m[s].truncate(len);
            }
            3 => {
                // Truncation at a segment boundary: the tail dropped.
                let keep = rng.gen_range(0..m.len());
                m.truncate(keep);
            }
            4 => {
                // The final segment dropped.
                m.pop();
            }
            5 => {
                // Two segments reordered.
                let i = rng.gen_range(0..m.len());
                let mut j = rng.gen_range(0..m.len());
                while j == i {
                    j = rng.gen_range(0..m.len());
                }
                m.swap(i, j);
            }
            6 => {
                // A segment swapped in from another recording (same key).
                let i = rng.gen_range(0..m.len());
                m[i] = b[i].clone();
            }
            7 => {
                // A segment swapped in from the same recording id under another key.
                let i = rng.gen_range(0..m.len());
                m[i] = c[i].clone();
            }
            _ => {
                // A segment duplicated.
                let i = rng.gen_range(0..m.len());
                let dup = m[i].clone();
                m.insert(rng.gen_range(0..=m.len()), dup);
            }
        }
        assert!(!verify(&key, &m), "mutation kind {kind} was accepted");
    }
    assert!(counts.iter().all(|&c| c > 900), "every kind exercised: {counts:?}");
}
