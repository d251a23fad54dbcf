//! 10,000 random mutations of a sealed multi-segment recording — bit flips,
//! truncations at and between segment boundaries, a dropped final segment,
//! reordered, duplicated and swapped-in segments, header edits — and not one
//! is accepted.

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

mod v2 {
    //! The same for format v2 (one object, fixed-size segments, random access).
    use super::*;
    use opptak_crypto::stream::{self, StreamInfo, StreamOpener};

    const SEG: u32 = 1024;

    fn info(key: &DataKey, artifact: &str) -> StreamInfo {
        StreamInfo {
            kind: ArtifactKind::Recording,
            key_id: key.id().to_owned(),
            key_ref: "call-a/audio-24h".into(),
            artifact_id: artifact.into(),
        }
    }

    fn object(key: &DataKey, artifact: &str, len: usize, seed: u64) -> Vec<u8> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let pt: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        stream::seal(key, &info(key, artifact), SEG, &pt).unwrap()
    }

    /// (header length, start of each segment) of an intact object.
    fn layout(key: &DataKey, artifact: &str, obj: &[u8]) -> (usize, Vec<std::ops::Range<usize>>) {
        let o = StreamOpener::new(key, obj, obj.len() as u64, &info(key, artifact)).unwrap();
        let segs = (0..o.segments())
            .map(|i| {
                let r = o.segment_range(i);
                r.start as usize..r.end as usize
            })
            .collect();
        (o.header_len() as usize, segs)
    }

    fn accepted(key: &DataKey, obj: &[u8]) -> bool {
        stream::open(key, obj, &info(key, "rec-a")).is_ok()
    }

    #[test]
    fn ten_thousand_mutations_are_all_rejected() {
        let key = DataKey::generate();
        let other_key = DataKey::generate();
        // 7.5 segments: six full, one partial, plus the header.
        let len = 7 * SEG as usize + 500;
        let a = object(&key, "rec-a", len, 1);
        let b = object(&key, "rec-b", len, 2);
        let c = object(&other_key, "rec-a", len, 3);
        // The same artifact sealed again (a retry): new salt and prefix.
        let a2 = object(&key, "rec-a", len, 1);
        assert!(accepted(&key, &a), "the unmutated object opens");
        let (hlen, segs) = layout(&key, "rec-a", &a);
        let (_, segs_b) = layout(&key, "rec-b", &b);
        let n = segs.len();
        let splice = |m: &[u8], i: usize, src: &[u8], r: &std::ops::Range<usize>| {
            let mut out = m[..segs[i].start].to_vec();
            out.extend_from_slice(&src[r.clone()]);
            out.extend_from_slice(&m[segs[i].end..]);
            out
        };

        let mut rng = rand::rngs::StdRng::seed_from_u64(0x0002_5eed);
        let mut counts = [0u32; 10];
        for _ in 0..10_000 {
            let kind = rng.gen_range(0..10);
            counts[kind] += 1;
            let m: Vec<u8> = match kind {
                0 => {
                    let mut m = a.clone();
                    let bit = rng.gen_range(0..m.len() * 8);
                    m[bit / 8] ^= 1 << (bit % 8);
                    m
                }
                1 => {
                    let mut m = a.clone();
                    let at = rng.gen_range(0..hlen);
                    m[at] = m[at].wrapping_add(rng.gen_range(1..=255));
                    m
                }
                2 => {
                    // Truncation anywhere (inside a segment or the header).
                    a[..rng.gen_range(0..a.len())].to_vec()
                }
                3 => {
                    // Truncation exactly at a segment boundary.
                    a[..segs[rng.gen_range(0..n)].start].to_vec()
                }
                4 => {
                    // The final segment dropped.
                    a[..segs[n - 1].start].to_vec()
                }
                5 => {
                    // Two full segments reordered.
                    let i = rng.gen_range(0..n - 1);
                    let mut j = rng.gen_range(0..n - 1);
                    while j == i {
                        j = rng.gen_range(0..n - 1);
                    }
                    let (lo, hi) = (i.min(j), i.max(j));
                    let mut m = a[..segs[lo].start].to_vec();
                    m.extend_from_slice(&a[segs[hi].clone()]);
                    m.extend_from_slice(&a[segs[lo].end..segs[hi].start]);
                    m.extend_from_slice(&a[segs[lo].clone()]);
                    m.extend_from_slice(&a[segs[hi].end..]);
                    m
                }
                6 => {
                    // A segment swapped in from another recording, same key and position.
                    let i = rng.gen_range(0..n);
                    splice(&a, i, &b, &segs_b[i])
                }
                7 => {
                    // A segment from the same recording id under another key.
                    let i = rng.gen_range(0..n);
                    splice(&a, i, &c, &segs[i])
                }
                8 => {
                    // A segment from another seal of the same recording.
                    let i = rng.gen_range(0..n);
                    splice(&a, i, &a2, &segs[i])
                }
                _ => {
                    // A full segment duplicated.
                    let i = rng.gen_range(0..n - 1);
                    let mut m = a[..segs[i].end].to_vec();
                    m.extend_from_slice(&a[segs[i].clone()]);
                    m.extend_from_slice(&a[segs[i].end..]);
                    m
                }
            };
            assert!(!accepted(&key, &m), "v2 mutation kind {kind} was accepted");
        }
        assert!(counts.iter().all(|&c| c > 800), "every kind exercised: {counts:?}");
    }
}
