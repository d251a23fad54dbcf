//! Writes the committed seed corpus, `fuzz/corpus/<target>/seed-*`: small
//! objects sealed under the fuzzing key (`opptak_fuzz::key`), which the
//! targets also load as the *genuine* objects, and edit scripts for `mutate`.
//! Sealing draws fresh salts and nonces, so every run writes other bytes.
//!
//! ```text
//! cargo run --manifest-path fuzz/Cargo.toml --example gen_corpus
//! ```
#![allow(clippy::unwrap_used)]

use opptak_crypto::segment::{self, ArtifactKind, SegmentHeader};
use opptak_crypto::stream::{self, StreamInfo};
use opptak_fuzz::{key, v2_info, CORPUS, FRAME_BYTES, KEY_ID, RECORDING_ID};
use std::path::Path;

fn pattern(len: usize, seed: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + seed) as u8).collect()
}

/// A v1 recording: segments of these plaintext lengths, the last one final if `complete`.
struct Recording {
    name: &'static str,
    kind: ArtifactKind,
    id: &'static str,
    lens: &'static [usize],
    complete: bool,
}

fn main() {
    let key = key();
    for target in ["decode_v1", "decode_v2", "mutate"] {
        let dir = Path::new(CORPUS).join(target);
        std::fs::create_dir_all(&dir).unwrap();
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            if path.file_name().unwrap().to_string_lossy().starts_with("seed-") {
                std::fs::remove_file(path).unwrap();
            }
        }
    }
    let write = |target: &str, name: &str, bytes: &[u8]| {
        let path = Path::new(CORPUS).join(target).join(name);
        std::fs::write(&path, bytes).unwrap();
        println!("{:>6} bytes  {}", bytes.len(), path.display());
    };

    // Format v2, in file-name order (the mutate scripts pick bases by index).
    let transcript = StreamInfo {
        kind: ArtifactKind::Transcript,
        key_id: KEY_ID.to_owned(),
        key_ref: "call-fuzz/ki".to_owned(),
        artifact_id: "rec-fuzz-2".to_owned(),
    };
    let objects: [(&str, StreamInfo, u32, Vec<u8>); 5] = [
        ("seed-a-empty.bin", v2_info(), 16, Vec::new()),
        ("seed-b-three-segments.bin", v2_info(), 16, pattern(40, 3)),
        ("seed-c-exact-multiple.bin", v2_info(), 32, pattern(64, 5)),
        (
            "seed-d-transcript.bin",
            transcript,
            64,
            b"Kunden vil flytte fondssparingen.".to_vec(),
        ),
        // The same artifact and plaintext as b, sealed again (a retry after a
        // crash): a new salt, so none of b's segments fit in it.
        ("seed-e-resealed.bin", v2_info(), 16, pattern(40, 3)),
    ];
    for (name, info, size, pt) in &objects {
        write("decode_v2", name, &stream::seal(&key, info, *size, pt).unwrap());
    }

    // Format v1: segments back to back, split again before each magic.
    let recordings = [
        Recording {
            name: "seed-a-recording.bin",
            kind: ArtifactKind::Recording,
            id: RECORDING_ID,
            lens: &[4, 6, 2],
            complete: true,
        },
        // The same recording sealed again after a crash with other batch
        // edges: its segment 1 follows a's segment 0 legitimately, and a's
        // segment 2 cannot follow it (frame 5, not 6).
        Recording {
            name: "seed-b-resealed.bin",
            kind: ArtifactKind::Recording,
            id: RECORDING_ID,
            lens: &[4, 8, 2],
            complete: true,
        },
        Recording {
            name: "seed-c-incomplete.bin",
            kind: ArtifactKind::Recording,
            id: "rec-fuzz-2",
            lens: &[2, 2],
            complete: false,
        },
        Recording {
            name: "seed-d-empty-final.bin",
            kind: ArtifactKind::KiAudio,
            id: "rec-fuzz-3",
            lens: &[0],
            complete: true,
        },
    ];
    for r in &recordings {
        let mut out = Vec::new();
        let mut frame = 0u64;
        for (index, &len) in r.lens.iter().enumerate() {
            let header = SegmentHeader {
                kind: r.kind,
                final_segment: r.complete && index + 1 == r.lens.len(),
                key_id: KEY_ID.to_owned(),
                recording_id: r.id.to_owned(),
                index: index as u64,
                first_frame: frame,
            };
            // The targets split at the magic: reseal until it is only in front.
            let sealed = loop {
                let s = segment::seal(&key, &header, &pattern(len, index)).unwrap();
                if !s[1..].windows(4).any(|w| w == segment::MAGIC) {
                    break s;
                }
            };
            out.extend_from_slice(&sealed);
            frame += (len / FRAME_BYTES) as u64;
        }
        write("decode_v1", r.name, &out);
    }

    // Edit scripts (see fuzz_targets/mutate.rs): base index, then edits.
    // Bases 0..=4 are the v2 objects above, 5..=8 the v1 recordings.
    let scripts: [(&str, &[u8]); 16] = [
        ("seed-base-0.bin", &[0]),
        ("seed-base-1.bin", &[1]),
        ("seed-base-2.bin", &[2]),
        ("seed-base-3.bin", &[3]),
        ("seed-base-4.bin", &[4]),
        ("seed-base-5.bin", &[5]),
        ("seed-base-6.bin", &[6]),
        ("seed-base-7.bin", &[7]),
        ("seed-base-8.bin", &[8]),
        // v2: swap segments 0 and 1; drop the final segment; segment 1 from
        // the resealed object; flip a bit of the segment size in the header.
        ("seed-v2-swap.bin", &[1, 5, 1, 2]),
        ("seed-v2-drop-final.bin", &[1, 3, 3]),
        ("seed-v2-splice.bin", &[1, 7, 2, 4, 2]),
        ("seed-v2-segment-size.bin", &[2, 0, 0, 0, 95]),
        // v1: a's segment 1 replaced by the resealed b's (frames no longer
        // contiguous); a's final segment dropped (an incomplete recording);
        // b's segments 1 and 2 after a's segment 0 (a legitimate chain).
        ("seed-v1-splice.bin", &[5, 7, 1, 6, 1]),
        ("seed-v1-drop-final.bin", &[5, 3, 2]),
        ("seed-v1-reseal-chain.bin", &[5, 7, 1, 6, 1, 7, 2, 6, 2]),
    ];
    for (name, script) in scripts {
        write("mutate", name, script);
    }
}
