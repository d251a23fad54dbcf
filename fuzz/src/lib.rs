//! What the fuzz targets share: the fixed key the committed corpus is sealed
//! under, the *genuine* objects (the corpus's `seed-*` files, written by
//! `examples/gen_corpus.rs`), and the checks every decoded input must pass.
//!
//! The checks panic on any violation, which libFuzzer reports as a crash:
//! - a decoder panics (index out of range, arithmetic overflow, …);
//! - the layout of a v2 stream (segment ranges, plaintext length,
//!   `segments_for`) is inconsistent;
//! - something opens that the generator did not seal byte for byte, or opens
//!   to other plaintext (a forgery, a splice, a moved or dropped segment);
//! - whole-object and segment-by-segment (random access) reads disagree.

use opptak_crypto::segment::{self, ArtifactKind, Expect, SegmentHeader};
use opptak_crypto::stream::{self, StreamInfo, StreamOpener, MAX_HEADER_LEN};
use opptak_crypto::{CryptoError, DataKey};
use std::collections::HashMap;
use std::ops::Range;
use std::sync::OnceLock;

/// The corpus, found where this crate was built from.
pub const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/corpus");
pub const REGENERATE: &str =
    "regenerate the seeds with `cargo run --manifest-path fuzz/Cargo.toml --example gen_corpus`";

/// Id of the fuzzing key; its secret is public, it protects nothing.
pub const KEY_ID: &str = "dk-f0220000000000000000f022";
const KEY_SECRET: [u8; 32] = *b"opptak fuzz corpus key, not real";
const TAG_LEN: u64 = 16;

/// The only key the targets open with: the corpus is sealed under it, so the
/// fuzzer starts from inputs that reach decryption.
pub fn key() -> DataKey {
    DataKey::from_parts(KEY_ID.to_owned(), KEY_SECRET)
}

/// Plaintext bytes per frame in the v1 seeds (stereo G.711).
pub const FRAME_BYTES: usize = 2;
/// Recording id of the v1 seeds and the artifact id of most v2 seeds.
pub const RECORDING_ID: &str = "rec-fuzz";

/// What the reader of a v2 seed expects (all but one seed are this).
pub fn v2_info() -> StreamInfo {
    StreamInfo {
        kind: ArtifactKind::Recording,
        key_id: KEY_ID.to_owned(),
        key_ref: "call-fuzz/audio-24h".to_owned(),
        artifact_id: RECORDING_ID.to_owned(),
    }
}

/// Splits `data` before every `OPTK` magic: v1 segments stored back to back
/// (as in a spool object) become one piece each. Bytes before the first magic
/// are a piece too; no bytes, no pieces.
pub fn split_at_magic(data: &[u8]) -> Vec<&[u8]> {
    let mut starts: Vec<usize> = data
        .windows(segment::MAGIC.len())
        .enumerate()
        .filter(|(_, w)| w == segment::MAGIC)
        .map(|(i, _)| i)
        .collect();
    if !data.is_empty() && starts.first() != Some(&0) {
        starts.insert(0, 0);
    }
    let ends = starts.iter().skip(1).copied().chain([data.len()]);
    starts.iter().zip(ends).map(|(&s, e)| &data[s..e]).collect()
}

/// A genuine object broken into the pieces a mutation moves around.
#[derive(Debug)]
pub struct Base {
    pub name: String,
    /// v2: the header, then each sealed segment; v1: each sealed segment.
    pub pieces: Vec<Vec<u8>>,
    pub format: Format,
}

#[derive(Clone, Debug)]
pub enum Format {
    /// A v2 object and what its reader expects.
    V2(StreamInfo),
    /// A v1 recording: its kind and id (the reader's metadata).
    V1(ArtifactKind, String),
}

/// Everything the corpus generator sealed, checked to open when loaded.
#[derive(Debug)]
pub struct Genuine {
    /// v2 objects, then v1 recordings, each in file-name order.
    pub bases: Vec<Base>,
    objects: HashMap<Vec<u8>, Vec<u8>>,
    segments: HashMap<Vec<u8>, (SegmentHeader, Vec<u8>)>,
}

/// The genuine objects, loaded once per process from [`CORPUS`].
pub fn genuine() -> &'static Genuine {
    static G: OnceLock<Genuine> = OnceLock::new();
    G.get_or_init(Genuine::load)
}

impl Genuine {
    fn load() -> Self {
        let key = key();
        let mut bases = Vec::new();
        let mut objects = HashMap::new();
        for (name, obj) in seeds("decode_v2") {
            let fail = |e: CryptoError| -> ! { panic!("{CORPUS}/decode_v2/{name} does not open ({e}); {REGENERATE}") };
            let info = stream::peek(&obj).unwrap_or_else(|e| fail(e));
            let opener = StreamOpener::new(&key, &obj, obj.len() as u64, &info).unwrap_or_else(|e| fail(e));
            let pt = opener.open_all(&obj).unwrap_or_else(|e| fail(e));
            let mut pieces = vec![obj[..opener.header_len() as usize].to_vec()];
            for i in 0..opener.segments() {
                pieces.push(obj[usize_range(opener.segment_range(i))].to_vec());
            }
            objects.insert(obj, pt);
            bases.push(Base {
                name,
                pieces,
                format: Format::V2(info),
            });
        }
        let mut segments = HashMap::new();
        for (name, bytes) in seeds("decode_v1") {
            let fail = |e: CryptoError| -> ! { panic!("{CORPUS}/decode_v1/{name} does not open ({e}); {REGENERATE}") };
            let pieces = split_at_magic(&bytes);
            let mut headers = Vec::new();
            for p in &pieces {
                let (h, _) = SegmentHeader::parse(p).unwrap_or_else(|e| fail(e));
                let expect = Expect {
                    kind: h.kind,
                    recording_id: &h.recording_id,
                    index: h.index,
                };
                let opened = segment::open(&key, p, expect).unwrap_or_else(|e| fail(e));
                segments.insert(p.to_vec(), opened);
                headers.push(h);
            }
            let first = headers
                .first()
                .unwrap_or_else(|| panic!("{CORPUS}/decode_v1/{name} is empty"));
            let complete = headers.last().is_some_and(|h| h.final_segment);
            segment::open_stream(&key, first.kind, &first.recording_id, &pieces, FRAME_BYTES, complete)
                .unwrap_or_else(|e| fail(e));
            bases.push(Base {
                format: Format::V1(first.kind, first.recording_id.clone()),
                pieces: pieces.iter().map(|p| p.to_vec()).collect(),
                name,
            });
        }
        assert!(
            !objects.is_empty() && !segments.is_empty(),
            "no seed-* files in {CORPUS}/decode_v1 and decode_v2; {REGENERATE}"
        );
        Self {
            bases,
            objects,
            segments,
        }
    }

    /// The plaintext of a genuine v2 object.
    pub fn object(&self, obj: &[u8]) -> Option<&[u8]> {
        self.objects.get(obj).map(Vec::as_slice)
    }

    /// The header and plaintext of a genuine v1 segment.
    pub fn segment(&self, seg: &[u8]) -> Option<&(SegmentHeader, Vec<u8>)> {
        self.segments.get(seg)
    }
}

/// The `seed-*` files of one corpus directory, sorted by name.
pub fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = format!("{CORPUS}/{target}");
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{dir}: {e}; {REGENERATE}"));
    let mut out: Vec<(String, Vec<u8>)> = entries
        .map(|e| e.expect("read corpus directory").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("seed-"))
        })
        .map(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
            let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (name, bytes)
        })
        .collect();
    out.sort();
    out
}

fn usize_range(r: Range<u64>) -> Range<usize> {
    r.start as usize..r.end as usize
}

/// `data` as a v2 object, read as its reader would: with what the reader
/// expects (`expect`), and with what the header itself claims (so a fuzzed
/// header still reaches decryption).
pub fn check_v2_object(data: &[u8], expect: &StreamInfo) {
    let key = key();
    let opened = check_v2(&key, data, expect);
    match stream::peek(data) {
        Ok(claimed) => {
            if claimed != *expect {
                assert!(opened.is_none(), "opened although the header is not what was expected");
            }
            let as_claimed = StreamInfo {
                key_id: KEY_ID.to_owned(),
                ..claimed
            };
            if as_claimed != *expect {
                check_v2(&key, data, &as_claimed);
            }
        }
        Err(_) => assert!(opened.is_none(), "opened although the header does not parse"),
    }
}

/// Opens `data` every way a reader can; returns the plaintext if it opens.
pub fn check_v2(key: &DataKey, data: &[u8], expect: &StreamInfo) -> Option<Vec<u8>> {
    let total = data.len() as u64;
    // A reader fetches the first MAX_HEADER_LEN bytes and knows the length
    // from the store: the same opener as from the whole object.
    let head = &data[..data.len().min(MAX_HEADER_LEN)];
    let opener = StreamOpener::new(key, head, total, expect);
    let from_all = StreamOpener::new(key, data, total, expect);
    assert_eq!(
        opener.is_ok(),
        from_all.is_ok(),
        "opener differs from the head and from the object"
    );
    // A length that is not the object's (stale metadata): layout arithmetic only.
    if let Some(tail) = data.last_chunk::<8>() {
        let claimed = u64::from_be_bytes(*tail);
        if let Ok(o) = StreamOpener::new(key, head, claimed, expect) {
            check_layout(&o, claimed);
        }
    }
    let Ok(opener) = opener else {
        assert!(stream::open(key, data, expect).is_err(), "opened without an opener");
        return None;
    };
    check_layout(&opener, total);
    let pt = match (opener.open_all(data), stream::open(key, data, expect)) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a, b, "open_all and stream::open disagree");
            a
        }
        (Err(_), Err(_)) => return None,
        (a, b) => panic!(
            "open_all gave {:?} bytes, stream::open {:?}",
            a.map(|p| p.len()),
            b.map(|p| p.len())
        ),
    };
    let want = genuine()
        .object(data)
        .unwrap_or_else(|| panic!("accepted a {}-byte object the generator never sealed", data.len()));
    assert_eq!(pt, want, "genuine object opened to other plaintext");
    assert_eq!(pt.len() as u64, opener.plaintext_len(), "plaintext_len is wrong");
    check_random_access(&opener, data, &pt);
    let forged = DataKey::from_parts(KEY_ID.to_owned(), [0x5a; 32]);
    assert!(
        matches!(stream::open(&forged, data, expect), Err(CryptoError::Authentication)),
        "another secret under the same key id did not fail authentication"
    );
    Some(pt)
}

/// The layout an opener derives from the header and a total length.
fn check_layout(o: &StreamOpener, total: u64) {
    let (n, size, hlen) = (o.segments(), o.segment_size(), o.header_len());
    assert!(n >= 1, "no segments");
    assert!(hlen as usize <= MAX_HEADER_LEN, "header of {hlen} bytes");
    let overhead = n.checked_mul(TAG_LEN).and_then(|t| t.checked_add(hlen));
    assert_eq!(
        total.checked_sub(overhead.expect("overhead overflows")),
        Some(o.plaintext_len())
    );
    assert_eq!(
        o.segment_range(0).start,
        hlen,
        "first segment not right after the header"
    );
    assert_eq!(
        o.segment_range(n - 1).end,
        total,
        "last segment does not end the object"
    );
    // The length may be claimed: billions of segments, so only a few of them.
    for i in [0, 1, n / 2, n.saturating_sub(2), n - 1] {
        if i >= n {
            continue;
        }
        let r = o.segment_range(i);
        assert_eq!(r.start, hlen + i * (size + TAG_LEN), "segment {i} misplaced");
        let len = r.end - r.start;
        if i + 1 < n {
            assert_eq!(len, size + TAG_LEN, "inner segment {i} not full");
            assert_eq!(o.segment_range(i + 1).start, r.end, "gap after segment {i}");
        } else {
            assert!((TAG_LEN..=size + TAG_LEN).contains(&len), "last segment of {len} bytes");
        }
    }
    for r in ranges(o) {
        check_segments_for(o, r);
    }
}

/// Plaintext ranges worth asking for: whole, inner, across and past the end.
fn ranges(o: &StreamOpener) -> Vec<Range<u64>> {
    let (len, size) = (o.plaintext_len(), o.segment_size());
    vec![
        0..len,
        0..u64::MAX,
        len / 3..len / 3 * 2 + 1,
        size - 1..size + 1,
        size..size,
        size..2 * size,
        len.saturating_sub(1)..len + 1,
        len..len,
        len + 10..len + 20,
        // Reversed: clamped to nothing.
        len / 2 + 1..len / 2,
    ]
}

/// `segments_for` returns exactly the segments holding the (clamped) range.
fn check_segments_for(o: &StreamOpener, r: Range<u64>) {
    let (len, size) = (o.plaintext_len(), o.segment_size());
    let segs = o.segments_for(r.clone());
    assert!(segs.start <= segs.end && segs.end <= o.segments(), "{segs:?} for {r:?}");
    let end = r.end.min(len);
    let start = r.start.min(end);
    if start == end {
        assert!(segs.is_empty() && segs.start < o.segments(), "{segs:?} for empty {r:?}");
    } else {
        assert!(
            segs.start * size <= start && start < (segs.start + 1) * size,
            "{segs:?} for {r:?}"
        );
        assert!(
            (segs.end - 1) * size < end && end <= segs.end * size,
            "{segs:?} for {r:?}"
        );
    }
}

/// Every segment opens on its own, and every range read from just its
/// segments equals the same bytes of the whole plaintext.
fn check_random_access(o: &StreamOpener, data: &[u8], pt: &[u8]) {
    let size = o.segment_size() as usize;
    let mut whole = Vec::new();
    for i in 0..o.segments() {
        let sealed = &data[usize_range(o.segment_range(i))];
        let seg = o.open_segment(i, sealed).expect("segment of an opened object");
        assert!(seg.len() <= size && (seg.len() == size || i + 1 == o.segments()));
        whole.extend(seg);
        assert!(o.open_segment(i, &sealed[1..]).is_err(), "segment {i} opened short");
    }
    assert_eq!(whole, pt, "segments differ from the whole");
    assert!(
        o.open_segment(o.segments(), &[0; 16]).is_err(),
        "opened a segment past the end"
    );
    for r in ranges(o) {
        let end = (r.end as usize).min(pt.len());
        let start = (r.start as usize).min(end);
        let segs = o.segments_for(r);
        let mut got = Vec::new();
        for i in segs.clone() {
            got.extend(
                o.open_segment(i, &data[usize_range(o.segment_range(i))])
                    .expect("segment"),
            );
        }
        if start < end {
            let skip = start - segs.start as usize * size;
            assert_eq!(
                got.get(skip..skip + end - start),
                Some(&pt[start..end]),
                "random access"
            );
        }
    }
}

/// `pieces` as the v1 segments of one recording (`kind`, `recording_id`, as
/// the reader's metadata says), each at its position.
pub fn check_v1(pieces: &[&[u8]], kind: ArtifactKind, recording_id: &str) {
    let key = key();
    let mut opened = Vec::with_capacity(pieces.len());
    for (i, p) in pieces.iter().enumerate() {
        let expect = Expect {
            kind,
            recording_id,
            index: i as u64,
        };
        let at_index = segment::open(&key, p, expect);
        match SegmentHeader::parse(p) {
            Ok((h, hlen)) => {
                let want = 4 + 4 + 1 + h.key_id.len() + 1 + h.recording_id.len() + 8 + 8 + 12;
                assert_eq!(hlen, want, "header length");
                assert!(hlen + TAG_LEN as usize <= p.len(), "no room for the tag");
                // As the header claims to be: reaches decryption for any header.
                let claimed = Expect {
                    kind: h.kind,
                    recording_id: &h.recording_id,
                    index: h.index,
                };
                let own = segment::open(&key, p, claimed);
                if let Ok((h2, pt)) = &own {
                    assert_eq!(*h2, h, "opened header differs from the parsed one");
                    assert_eq!(pt.len(), p.len() - hlen - TAG_LEN as usize);
                    let g = genuine()
                        .segment(p)
                        .unwrap_or_else(|| panic!("accepted a {}-byte segment the generator never sealed", p.len()));
                    assert_eq!(*pt, g.1, "genuine segment opened to other plaintext");
                }
                let placed = h.kind == kind && h.recording_id == recording_id && h.index == i as u64;
                assert_eq!(
                    at_index.is_ok(),
                    own.is_ok() && placed,
                    "segment {i}: {at_index:?} vs {own:?}"
                );
            }
            Err(_) => assert!(at_index.is_err(), "opened a segment whose header does not parse"),
        }
        opened.push(at_index.ok());
    }
    for complete in [false, true] {
        let Ok(pt) = segment::open_stream(&key, kind, recording_id, pieces, FRAME_BYTES, complete) else {
            continue;
        };
        let mut want = Vec::new();
        let mut frames = 0u64;
        for (i, o) in opened.iter().enumerate() {
            let (h, p) = o.as_ref().expect("open_stream accepted a segment that does not open");
            assert_eq!(h.first_frame, frames, "segment {i} not contiguous");
            assert!(!h.final_segment || i + 1 == pieces.len(), "final segment {i} not last");
            assert_eq!(p.len() % FRAME_BYTES, 0, "partial frame");
            frames += (p.len() / FRAME_BYTES) as u64;
            want.extend_from_slice(p);
        }
        assert_eq!(pt, want, "open_stream differs from the segments");
        if complete {
            let last = opened.last().and_then(Option::as_ref);
            assert!(
                last.is_some_and(|(h, _)| h.final_segment),
                "complete without a final segment"
            );
        }
    }
}
