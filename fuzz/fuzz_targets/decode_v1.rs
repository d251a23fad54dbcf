//! Any bytes as format v1 segments stored back to back (`segment.rs`), split
//! before each `OPTK` magic and opened with the fuzzing key one by one and as
//! a recording: never a panic; whatever opens is genuine, in order and
//! contiguous.
#![no_main]

use libfuzzer_sys::fuzz_target;
use opptak_crypto::segment::{ArtifactKind, SegmentHeader};

fuzz_target!(|data: &[u8]| {
    let pieces = opptak_fuzz::split_at_magic(data);
    // The reader's metadata names the recording: take the first segment's
    // word for it, so that fuzzed headers still reach decryption.
    let (kind, recording_id) = pieces
        .first()
        .and_then(|p| SegmentHeader::parse(p).ok())
        .map(|(h, _)| (h.kind, h.recording_id))
        .unwrap_or((ArtifactKind::Recording, opptak_fuzz::RECORDING_ID.to_owned()));
    opptak_fuzz::check_v1(&pieces, kind, &recording_id);
});
