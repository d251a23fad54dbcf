//! The streaming format (v2) of every finished artifact: one object, a header,
//! then fixed-size plaintext segments each sealed with AES-256-GCM — in the
//! spirit of age's STREAM and Tink's AES-GCM-HKDF streaming AEAD.
//!
//! ```text
//! header:  magic "OPTK" | version 2 | alg 2 | kind | flags 0 | u32 BE segment size
//!          | u8 len + key id | u8 len + key ref | u8 len + artifact id
//!          | 16-byte salt | 7-byte nonce prefix
//! segment: ciphertext (segment size bytes; the last 0..=segment size) | 16-byte tag
//! ```
//!
//! - The segment key is HKDF-SHA256(data key, salt, "opptak-stream-v2" ‖ artifact
//!   id): every stream (every write, every retry after a crash) has its own
//!   key, so nonces never repeat under one AES key however often an artifact
//!   is rewritten.
//! - The nonce of segment `i` is `prefix(7) ‖ i as u32 BE ‖ final(1)`; the
//!   associated data is the whole header ‖ `i` ‖ final flag, so every header
//!   field (kind, artifact id, key reference) is bound to every segment, a
//!   segment moved to another index fails, and a stream cut at a segment
//!   boundary fails because its new last segment was not sealed as final.
//! - Random access: segment `i` starts at `header + i × (segment size + 16)`;
//!   a reader fetches the header and only the segments it needs.
//!
//! Every failure names its kind ([`CryptoError`]) and returns no plaintext.
//! See `docs/encryption-format.md`.

use crate::segment::ArtifactKind;
use crate::{CryptoError, DataKey};
use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use rand::RngCore;
use std::ops::Range;

pub const VERSION: u8 = 2;
/// AES-256-GCM with an HKDF-SHA256 derived per-stream key.
pub const ALG_AES256GCM_HKDF: u8 = 2;
/// 64 KiB of plaintext per segment: 4 s of stereo G.711, 2 s of stereo L16.
pub const DEFAULT_SEGMENT_SIZE: u32 = 64 * 1024;
const TAG_LEN: usize = 16;
const SALT_LEN: usize = 16;
const PREFIX_LEN: usize = 7;
/// Longest possible header: fixed fields plus three 255-byte strings.
pub const MAX_HEADER_LEN: usize = 4 + 4 + 4 + 3 * 256 + SALT_LEN + PREFIX_LEN;
const MIN_SEGMENT: u32 = 16;
const MAX_SEGMENT: u32 = 16 << 20;

/// What a stream claims to be; the reader states what it expects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamInfo {
    pub kind: ArtifactKind,
    /// Id of the data key (`dk-…`).
    pub key_id: String,
    /// Where the wrapped data key is found: `<call id>/<retention class>`.
    pub key_ref: String,
    /// The artifact (a recording id, a dead letter's source, …).
    pub artifact_id: String,
}

#[derive(Clone, Debug)]
struct Header {
    info: StreamInfo,
    segment_size: u32,
    salt: [u8; SALT_LEN],
    prefix: [u8; PREFIX_LEN],
    bytes: Vec<u8>,
}

impl Header {
    fn encode(info: &StreamInfo, segment_size: u32) -> Result<Self, CryptoError> {
        let mut salt = [0u8; SALT_LEN];
        let mut prefix = [0u8; PREFIX_LEN];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        rand::rngs::OsRng.fill_bytes(&mut prefix);
        let mut b = Vec::with_capacity(96);
        b.extend_from_slice(crate::segment::MAGIC);
        b.extend_from_slice(&[VERSION, ALG_AES256GCM_HKDF, info.kind as u8, 0]);
        b.extend_from_slice(&segment_size.to_be_bytes());
        for field in [&info.key_id, &info.key_ref, &info.artifact_id] {
            let len = u8::try_from(field.len())
                .map_err(|_| CryptoError::Format(format!("header field of {} bytes", field.len())))?;
            b.push(len);
            b.extend_from_slice(field.as_bytes());
        }
        b.extend_from_slice(&salt);
        b.extend_from_slice(&prefix);
        Ok(Self {
            info: info.clone(),
            segment_size,
            salt,
            prefix,
            bytes: b,
        })
    }

    fn parse(blob: &[u8]) -> Result<Self, CryptoError> {
        let mut at = 0usize;
        let mut take = |n: usize| -> Result<&[u8], CryptoError> {
            let s = blob.get(at..at + n).ok_or(CryptoError::Truncated)?;
            at += n;
            Ok(s)
        };
        if take(4)? != crate::segment::MAGIC {
            return Err(CryptoError::Format("not an opptak object (bad magic)".into()));
        }
        let fixed = take(4)?;
        let (version, alg, kind, flags) = (fixed[0], fixed[1], fixed[2], fixed[3]);
        if version != VERSION {
            return Err(CryptoError::Format(format!("unsupported stream version {version}")));
        }
        if alg != ALG_AES256GCM_HKDF {
            return Err(CryptoError::Format(format!("unsupported algorithm {alg}")));
        }
        let kind = ArtifactKind::from_u8(kind).ok_or_else(|| CryptoError::Format(format!("unknown kind {kind}")))?;
        if flags != 0 {
            return Err(CryptoError::Format(format!("unknown flags {flags:#x}")));
        }
        let mut size = [0u8; 4];
        size.copy_from_slice(take(4)?);
        let segment_size = u32::from_be_bytes(size);
        if !(MIN_SEGMENT..=MAX_SEGMENT).contains(&segment_size) {
            return Err(CryptoError::Format(format!("segment size {segment_size} out of range")));
        }
        let mut strings = Vec::with_capacity(3);
        for _ in 0..3 {
            let n = take(1)?[0] as usize;
            let s = String::from_utf8(take(n)?.to_vec())
                .map_err(|_| CryptoError::Format("header field is not UTF-8".into()))?;
            strings.push(s);
        }
        let mut salt = [0u8; SALT_LEN];
        salt.copy_from_slice(take(SALT_LEN)?);
        let mut prefix = [0u8; PREFIX_LEN];
        prefix.copy_from_slice(take(PREFIX_LEN)?);
        let artifact_id = strings.pop().unwrap_or_default();
        let key_ref = strings.pop().unwrap_or_default();
        let key_id = strings.pop().unwrap_or_default();
        Ok(Self {
            info: StreamInfo {
                kind,
                key_id,
                key_ref,
                artifact_id,
            },
            segment_size,
            salt,
            prefix,
            bytes: blob[..at].to_vec(),
        })
    }

    fn cipher(&self, key: &DataKey) -> Result<Aes256Gcm, CryptoError> {
        let mut info = b"opptak-stream-v2\0".to_vec();
        info.extend_from_slice(self.info.artifact_id.as_bytes());
        let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(&self.salt), key.secret());
        let mut sub = crate::Sensitive::new([0u8; 32]);
        hk.expand(&info, sub.expose_mut())
            .map_err(|_| CryptoError::Format("key derivation".into()))?;
        Aes256Gcm::new_from_slice(sub.expose()).map_err(|_| CryptoError::Authentication)
    }

    fn nonce(&self, index: u32, last: bool) -> [u8; 12] {
        let mut n = [0u8; 12];
        n[..PREFIX_LEN].copy_from_slice(&self.prefix);
        n[PREFIX_LEN..11].copy_from_slice(&index.to_be_bytes());
        n[11] = last as u8;
        n
    }

    fn aad(&self, index: u32, last: bool) -> Vec<u8> {
        let mut a = Vec::with_capacity(self.bytes.len() + 5);
        a.extend_from_slice(&self.bytes);
        a.extend_from_slice(&index.to_be_bytes());
        a.push(last as u8);
        a
    }
}

/// Writes a stream incrementally: plaintext in, sealed bytes out as each
/// segment fills. Memory holds at most one segment of plaintext.
pub struct StreamSealer {
    header: Header,
    cipher: Aes256Gcm,
    buf: Vec<u8>,
    next: u32,
    out: Vec<u8>,
}

impl StreamSealer {
    pub fn new(key: &DataKey, info: &StreamInfo, segment_size: u32) -> Result<Self, CryptoError> {
        if info.key_id != key.id() {
            return Err(CryptoError::Format("stream key id differs from the key".into()));
        }
        if !(MIN_SEGMENT..=MAX_SEGMENT).contains(&segment_size) {
            return Err(CryptoError::Format(format!("segment size {segment_size} out of range")));
        }
        let header = Header::encode(info, segment_size)?;
        let cipher = header.cipher(key)?;
        let out = header.bytes.clone();
        Ok(Self {
            header,
            cipher,
            buf: Vec::with_capacity(segment_size as usize),
            next: 0,
            out,
        })
    }

    /// Adds plaintext; full segments are sealed at once.
    pub fn push(&mut self, mut data: &[u8]) -> Result<(), CryptoError> {
        let size = self.header.segment_size as usize;
        while !data.is_empty() {
            // A full buffer is sealed only when more data follows: the last
            // segment may be full, and must then carry the final flag.
            if self.buf.len() == size {
                self.seal_buffered(false)?;
            }
            let n = (size - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..n]);
            data = &data[n..];
        }
        Ok(())
    }

    fn seal_buffered(&mut self, last: bool) -> Result<(), CryptoError> {
        let index = self.next;
        self.next = self
            .next
            .checked_add(1)
            .ok_or_else(|| CryptoError::Format("stream longer than 2^32 segments".into()))?;
        let nonce = self.header.nonce(index, last);
        let aad = self.header.aad(index, last);
        let tag = self
            .cipher
            .encrypt_in_place_detached(Nonce::from_slice(&nonce), &aad, &mut self.buf)
            .map_err(|_| CryptoError::Authentication)?;
        self.out.extend_from_slice(&self.buf);
        self.out.extend_from_slice(&tag);
        self.buf.clear();
        Ok(())
    }

    /// Sealed bytes produced so far (for writing out as they come).
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Seals the final segment (empty only if the whole stream is) and
    /// returns the remaining output.
    pub fn finish(mut self) -> Result<Vec<u8>, CryptoError> {
        self.seal_buffered(true)?;
        Ok(self.out)
    }
}

/// Seals a whole plaintext as one stream.
pub fn seal(key: &DataKey, info: &StreamInfo, segment_size: u32, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let mut s = StreamSealer::new(key, info, segment_size)?;
    s.push(plaintext)?;
    s.finish()
}

/// Reads a stream by segment. Built from the object's first bytes (at least
/// the header: [`MAX_HEADER_LEN`] or the whole object if shorter) and its
/// total length, which together fix where every segment lies.
pub struct StreamOpener {
    header: Header,
    cipher: Aes256Gcm,
    segments: u64,
    total_len: u64,
}

impl std::fmt::Debug for StreamOpener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamOpener")
            .field("info", &self.header.info)
            .field("segments", &self.segments)
            .finish_non_exhaustive()
    }
}

impl StreamOpener {
    /// Parses the header and checks the stream is what the caller expects
    /// (kind, artifact id, key reference, key id) before any decryption.
    pub fn new(key: &DataKey, head: &[u8], total_len: u64, expect: &StreamInfo) -> Result<Self, CryptoError> {
        let header = Header::parse(head)?;
        let got = &header.info;
        if got.kind != expect.kind {
            return Err(CryptoError::Misplaced(format!(
                "kind {:?}, expected {:?}",
                got.kind, expect.kind
            )));
        }
        if got.artifact_id != expect.artifact_id {
            return Err(CryptoError::Misplaced("stream belongs to another artifact".into()));
        }
        if got.key_ref != expect.key_ref {
            return Err(CryptoError::Misplaced(format!(
                "stream sealed under key {:?}, expected {:?}",
                got.key_ref, expect.key_ref
            )));
        }
        if got.key_id != key.id() || got.key_id != expect.key_id {
            return Err(CryptoError::Misplaced("stream sealed under another key".into()));
        }
        let hlen = header.bytes.len() as u64;
        let body = total_len.checked_sub(hlen).ok_or(CryptoError::Truncated)?;
        if body < TAG_LEN as u64 {
            return Err(CryptoError::Truncated);
        }
        let full = header.segment_size as u64 + TAG_LEN as u64;
        let segments = body.div_ceil(full).max(1);
        if segments > u32::MAX as u64 + 1 {
            return Err(CryptoError::Format("stream longer than 2^32 segments".into()));
        }
        let last_len = body - (segments - 1) * full;
        if last_len < TAG_LEN as u64 {
            // A cut inside the last segment's tag; no plaintext to show.
            return Err(CryptoError::Truncated);
        }
        let cipher = header.cipher(key)?;
        Ok(Self {
            header,
            cipher,
            segments,
            total_len,
        })
    }

    pub fn info(&self) -> &StreamInfo {
        &self.header.info
    }

    pub fn segment_size(&self) -> u64 {
        self.header.segment_size as u64
    }

    pub fn segments(&self) -> u64 {
        self.segments
    }

    pub fn header_len(&self) -> u64 {
        self.header.bytes.len() as u64
    }

    pub fn plaintext_len(&self) -> u64 {
        self.total_len - self.header_len() - self.segments * TAG_LEN as u64
    }

    /// Byte range of segment `i` within the object.
    pub fn segment_range(&self, i: u64) -> Range<u64> {
        let full = self.segment_size() + TAG_LEN as u64;
        let start = self.header_len() + i * full;
        start..(start + full).min(self.total_len)
    }

    /// Segments holding the plaintext bytes `range` (clamped to the stream).
    pub fn segments_for(&self, range: Range<u64>) -> Range<u64> {
        let end = range.end.min(self.plaintext_len());
        let start = range.start.min(end);
        if start == end {
            let i = (start / self.segment_size()).min(self.segments - 1);
            return i..i;
        }
        start / self.segment_size()..(end - 1) / self.segment_size() + 1
    }

    /// Opens segment `i` from exactly the bytes of [`Self::segment_range`].
    pub fn open_segment(&self, i: u64, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if i >= self.segments {
            return Err(CryptoError::Stream(format!(
                "segment {i} of a {}-segment stream",
                self.segments
            )));
        }
        let r = self.segment_range(i);
        if sealed.len() as u64 != r.end - r.start {
            return Err(CryptoError::Truncated);
        }
        let last = i + 1 == self.segments;
        let index = i as u32;
        let (ct, tag) = sealed.split_at(sealed.len() - TAG_LEN);
        let attempt = |last: bool| -> Option<Vec<u8>> {
            let mut buf = ct.to_vec();
            self.cipher
                .decrypt_in_place_detached(
                    Nonce::from_slice(&self.header.nonce(index, last)),
                    &self.header.aad(index, last),
                    &mut buf,
                    Tag::from_slice(tag),
                )
                .ok()
                .map(|_| buf)
        };
        match attempt(last) {
            Some(pt) => Ok(pt),
            // Diagnosis only: an intact segment sealed as not-final in the
            // last position means the stream was cut at a segment boundary.
            None if last && attempt(false).is_some() => {
                Err(CryptoError::Stream("truncated: the final segment is missing".into()))
            }
            None => Err(CryptoError::Authentication),
        }
    }

    /// Opens the whole object and returns the plaintext only if every segment verifies.
    pub fn open_all(&self, object: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if object.len() as u64 != self.total_len {
            return Err(CryptoError::Truncated);
        }
        let mut out = Vec::with_capacity(self.plaintext_len() as usize);
        for i in 0..self.segments {
            let r = self.segment_range(i);
            out.extend_from_slice(&self.open_segment(i, &object[r.start as usize..r.end as usize])?);
        }
        Ok(out)
    }
}

/// Opens a whole stream held in memory.
pub fn open(key: &DataKey, object: &[u8], expect: &StreamInfo) -> Result<Vec<u8>, CryptoError> {
    StreamOpener::new(key, object, object.len() as u64, expect)?.open_all(object)
}

/// The header of a stream without opening it (for tools and error messages).
pub fn peek(object: &[u8]) -> Result<StreamInfo, CryptoError> {
    Ok(Header::parse(object)?.info)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn info(key: &DataKey, artifact: &str) -> StreamInfo {
        StreamInfo {
            kind: ArtifactKind::Recording,
            key_id: key.id().to_owned(),
            key_ref: "call-1/audio-24h".into(),
            artifact_id: artifact.into(),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn round_trips_any_length(len in prop_oneof![0usize..2_000, Just(64), Just(128), Just(640), Just(6_400)],
                                  size in prop_oneof![Just(16u32), Just(64), Just(100), Just(1024)]) {
            let key = DataKey::generate();
            let pt: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let sealed = seal(&key, &info(&key, "rec-1"), size, &pt).unwrap();
            prop_assert_eq!(open(&key, &sealed, &info(&key, "rec-1")).unwrap(), pt.clone());
            let o = StreamOpener::new(&key, &sealed, sealed.len() as u64, &info(&key, "rec-1")).unwrap();
            prop_assert_eq!(o.plaintext_len(), len as u64);
            prop_assert_eq!(o.segments(), (len as u64).div_ceil(size as u64).max(1));
            // Random access: any range decrypts from just its segments.
            let (a, b) = (len / 3, len * 2 / 3 + 1);
            let segs = o.segments_for(a as u64..b as u64);
            let mut got = Vec::new();
            for i in segs.clone() {
                let r = o.segment_range(i);
                got.extend(o.open_segment(i, &sealed[r.start as usize..r.end as usize]).unwrap());
            }
            let skip = a - (segs.start * size as u64) as usize;
            let want = &pt[a.min(len)..b.min(len)];
            prop_assert_eq!(&got[skip.min(got.len())..(skip + want.len()).min(got.len())], want);
        }
    }

    #[test]
    fn exact_multiple_has_no_empty_trailing_segment() {
        let key = DataKey::generate();
        let sealed = seal(&key, &info(&key, "r"), 64, &[1u8; 128]).unwrap();
        let o = StreamOpener::new(&key, &sealed, sealed.len() as u64, &info(&key, "r")).unwrap();
        assert_eq!(o.segments(), 2);
        // Dropping the final (full) segment is detected as truncation.
        let cut = &sealed[..o.segment_range(1).start as usize];
        let e = open(&key, cut, &info(&key, "r")).unwrap_err();
        assert!(
            matches!(e, CryptoError::Stream(ref m) if m.contains("final segment is missing")),
            "{e}"
        );
    }

    #[test]
    fn misplaced_streams_are_named() {
        let key = DataKey::generate();
        let sealed = seal(&key, &info(&key, "rec-1"), 64, b"audio").unwrap();
        assert!(matches!(
            open(&key, &sealed, &info(&key, "rec-2")),
            Err(CryptoError::Misplaced(_))
        ));
        let mut other_ref = info(&key, "rec-1");
        other_ref.key_ref = "call-1/ki".into();
        assert!(matches!(
            open(&key, &sealed, &other_ref),
            Err(CryptoError::Misplaced(_))
        ));
        let forged = DataKey::from_parts(key.id().to_owned(), [9u8; 32]);
        assert!(matches!(
            open(&forged, &sealed, &info(&key, "rec-1")),
            Err(CryptoError::Authentication)
        ));
    }

    #[test]
    fn every_bit_flip_and_truncation_is_rejected() {
        let key = DataKey::generate();
        let pt: Vec<u8> = (0..100u8).collect();
        let sealed = seal(&key, &info(&key, "r"), 32, &pt).unwrap();
        for bit in 0..sealed.len() * 8 {
            let mut b = sealed.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(open(&key, &b, &info(&key, "r")).is_err(), "flip of bit {bit} accepted");
        }
        for len in 0..sealed.len() {
            assert!(
                open(&key, &sealed[..len], &info(&key, "r")).is_err(),
                "cut to {len} accepted"
            );
        }
    }

    #[test]
    fn two_seals_of_the_same_artifact_differ() {
        // A retry after a crash draws a new salt and prefix: no nonce reuse.
        let key = DataKey::generate();
        let a = seal(&key, &info(&key, "r"), 64, &[0u8; 100]).unwrap();
        let b = seal(&key, &info(&key, "r"), 64, &[0u8; 100]).unwrap();
        assert_ne!(a, b);
    }
}
