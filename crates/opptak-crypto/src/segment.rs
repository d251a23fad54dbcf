//! The segmented encryption format (v1) of every stored artifact.
//!
//! An artifact (a recording, later transcripts and summaries) is a sequence of
//! independently stored *segment objects*. Each is sealed with AES-256-GCM under
//! the artifact's data key; the whole header is the associated data, so the
//! recording id, artifact kind, segment index, first frame, final flag and key
//! id are all authenticated. A segment moved to another recording or index,
//! truncated, edited or marked final/not-final fails to open. See
//! `docs/encryption-format.md`.
//!
//! The nonce is 96 random bits per segment, not a counter: after a crash the
//! recorder may seal the same index again with different content, and a
//! counter nonce would then repeat under the same key. With one data key per
//! recording the random-nonce limit of NIST SP 800-38D (2^32 seals per key) is
//! far away (a 60-minute call flushed every 250 ms is 14,400 seals).
//!
//! ```text
//! magic "OPTK" | version 1 | alg 1 | kind | flags(bit0 final)
//! | u8 len + key id | u8 len + recording id | u64 BE index | u64 BE first frame
//! | 12-byte nonce | ciphertext | 16-byte tag
//! ```

use crate::{CryptoError, DataKey};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;

pub const MAGIC: &[u8; 4] = b"OPTK";
pub const VERSION: u8 = 1;
pub const ALG_AES256GCM: u8 = 1;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// What an artifact is; bound into every segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ArtifactKind {
    /// The call's recording: interleaved frames in the call's wire codec (G.711 or L16).
    Recording = 1,
    /// The investment-advice archive copy of a recording (`archive-5y` key).
    ArchiveCopy = 2,
    /// The KI copy of a recording, kept for the KI purposes (`ki` key).
    KiAudio = 3,
    /// Transcript segments (`ki` key).
    Transcript = 4,
    /// A draft summary (`ki` key).
    Draft = 5,
    /// Topic tags (`ki` key).
    TopicTags = 6,
    /// The approved summary, the customer-service record (`record-5y` key).
    ApprovedSummary = 7,
    /// The original bytes of a refused input message.
    DeadLetter = 8,
    /// An audio chunk the telephony system sealed itself.
    TelephonyChunk = 9,
    /// A message of an open conversation (`chat-open` key).
    ChatMessage = 10,
    /// A written copy of a conversation (analysis, advisor, customer or
    /// archive class).
    Conversation = 11,
}

impl ArtifactKind {
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::Recording,
            2 => Self::ArchiveCopy,
            3 => Self::KiAudio,
            4 => Self::Transcript,
            5 => Self::Draft,
            6 => Self::TopicTags,
            7 => Self::ApprovedSummary,
            8 => Self::DeadLetter,
            9 => Self::TelephonyChunk,
            10 => Self::ChatMessage,
            11 => Self::Conversation,
            _ => return None,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    pub kind: ArtifactKind,
    pub final_segment: bool,
    pub key_id: String,
    pub recording_id: String,
    pub index: u64,
    pub first_frame: u64,
}

impl SegmentHeader {
    fn encode(&self, nonce: &[u8; NONCE_LEN]) -> Result<Vec<u8>, CryptoError> {
        let mut h = Vec::with_capacity(64);
        h.extend_from_slice(MAGIC);
        h.extend_from_slice(&[VERSION, ALG_AES256GCM, self.kind as u8, self.final_segment as u8]);
        for field in [&self.key_id, &self.recording_id] {
            let len = u8::try_from(field.len())
                .map_err(|_| CryptoError::Format(format!("header field of {} bytes", field.len())))?;
            h.push(len);
            h.extend_from_slice(field.as_bytes());
        }
        h.extend_from_slice(&self.index.to_be_bytes());
        h.extend_from_slice(&self.first_frame.to_be_bytes());
        h.extend_from_slice(nonce);
        Ok(h)
    }

    /// Parses the header of a sealed segment; returns it and the header length.
    pub fn parse(blob: &[u8]) -> Result<(Self, usize), CryptoError> {
        let mut r = Reader { b: blob, at: 0 };
        if r.take(4)? != MAGIC {
            return Err(CryptoError::Format("not an opptak segment (bad magic)".into()));
        }
        let version = r.u8()?;
        if version != VERSION {
            return Err(CryptoError::Format(format!("unsupported segment version {version}")));
        }
        let alg = r.u8()?;
        if alg != ALG_AES256GCM {
            return Err(CryptoError::Format(format!("unsupported algorithm {alg}")));
        }
        let kind = ArtifactKind::from_u8(r.u8()?).ok_or_else(|| CryptoError::Format("unknown artifact kind".into()))?;
        let flags = r.u8()?;
        if flags > 1 {
            return Err(CryptoError::Format(format!("unknown flags {flags:#x}")));
        }
        let key_id = r.string()?;
        let recording_id = r.string()?;
        let index = r.u64()?;
        let first_frame = r.u64()?;
        r.take(NONCE_LEN)?;
        if blob.len() < r.at + TAG_LEN {
            return Err(CryptoError::Truncated);
        }
        let hdr = Self {
            kind,
            final_segment: flags == 1,
            key_id,
            recording_id,
            index,
            first_frame,
        };
        Ok((hdr, r.at))
    }
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CryptoError> {
        let s = self.b.get(self.at..self.at + n).ok_or(CryptoError::Truncated)?;
        self.at += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, CryptoError> {
        Ok(self.take(1)?[0])
    }
    fn u64(&mut self) -> Result<u64, CryptoError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(a))
    }
    fn string(&mut self) -> Result<String, CryptoError> {
        let n = self.u8()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| CryptoError::Format("header field is not UTF-8".into()))
    }
}

/// Seals one segment.
pub fn seal(key: &DataKey, header: &SegmentHeader, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if header.key_id != key.id() {
        return Err(CryptoError::Format("header key id differs from the key".into()));
    }
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let mut out = header.encode(&nonce)?;
    let cipher = Aes256Gcm::new_from_slice(key.secret()).map_err(|_| CryptoError::Authentication)?;
    let ct = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: &out,
            },
        )
        .map_err(|_| CryptoError::Authentication)?;
    out.extend_from_slice(&ct);
    Ok(out)
}

/// What the reader expects a segment to be; anything else is refused.
#[derive(Clone, Copy, Debug)]
pub struct Expect<'a> {
    pub kind: ArtifactKind,
    pub recording_id: &'a str,
    pub index: u64,
}

/// Opens one segment, checking it belongs where the reader found it.
pub fn open(key: &DataKey, blob: &[u8], expect: Expect<'_>) -> Result<(SegmentHeader, Vec<u8>), CryptoError> {
    let (hdr, hlen) = SegmentHeader::parse(blob)?;
    if hdr.kind != expect.kind {
        return Err(CryptoError::Misplaced(format!(
            "kind {:?}, expected {:?}",
            hdr.kind, expect.kind
        )));
    }
    if hdr.recording_id != expect.recording_id {
        return Err(CryptoError::Misplaced("segment belongs to another recording".into()));
    }
    if hdr.index != expect.index {
        return Err(CryptoError::Misplaced(format!(
            "segment index {}, expected {}",
            hdr.index, expect.index
        )));
    }
    if hdr.key_id != key.id() {
        return Err(CryptoError::Misplaced("segment sealed under another key".into()));
    }
    let cipher = Aes256Gcm::new_from_slice(key.secret()).map_err(|_| CryptoError::Authentication)?;
    let (aad, ct) = blob.split_at(hlen);
    let nonce = &aad[hlen - NONCE_LEN..];
    let pt = cipher
        .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
        .map_err(|_| CryptoError::Authentication)?;
    Ok((hdr, pt))
}

/// Opens a whole artifact from its segments in stored order and checks the
/// stream: indexes 0..n, each segment starting where the previous ended
/// (`frame_bytes` of plaintext per frame), and — for a complete artifact — the
/// final marker on the last segment and nowhere else. Returns the plaintext
/// only if everything verifies.
pub fn open_stream(
    key: &DataKey,
    kind: ArtifactKind,
    recording_id: &str,
    segments: &[&[u8]],
    frame_bytes: usize,
    complete: bool,
) -> Result<Vec<u8>, CryptoError> {
    let mut out = Vec::new();
    let mut frames = 0u64;
    for (i, blob) in segments.iter().enumerate() {
        let (hdr, pt) = open(
            key,
            blob,
            Expect {
                kind,
                recording_id,
                index: i as u64,
            },
        )?;
        if hdr.first_frame != frames {
            return Err(CryptoError::Stream(format!(
                "segment {i} starts at frame {}, expected {frames}",
                hdr.first_frame
            )));
        }
        let last = i + 1 == segments.len();
        if hdr.final_segment && !last {
            return Err(CryptoError::Stream(format!(
                "segment {i} is marked final but more follow"
            )));
        }
        if pt.len() % frame_bytes.max(1) != 0 {
            return Err(CryptoError::Stream(format!("segment {i} holds a partial frame")));
        }
        frames += (pt.len() / frame_bytes.max(1)) as u64;
        out.extend_from_slice(&pt);
    }
    if complete
        && !segments
            .last()
            .map(|b| SegmentHeader::parse(b).map(|(h, _)| h.final_segment).unwrap_or(false))
            .unwrap_or(false)
    {
        return Err(CryptoError::Stream("truncated: the final segment is missing".into()));
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn hdr(key: &DataKey, index: u64, final_segment: bool) -> SegmentHeader {
        SegmentHeader {
            kind: ArtifactKind::Recording,
            final_segment,
            key_id: key.id().to_owned(),
            recording_id: "rec-1".into(),
            index,
            first_frame: index * 10,
        }
    }

    fn expect(index: u64) -> Expect<'static> {
        Expect {
            kind: ArtifactKind::Recording,
            recording_id: "rec-1",
            index,
        }
    }

    #[test]
    fn round_trip_and_every_single_bit_flip_is_rejected() {
        let key = DataKey::generate();
        let blob = seal(&key, &hdr(&key, 3, true), b"hello audio").unwrap();
        let (h, pt) = open(&key, &blob, expect(3)).unwrap();
        assert_eq!(pt, b"hello audio");
        assert!(h.final_segment);
        for bit in 0..blob.len() * 8 {
            let mut b = blob.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(open(&key, &b, expect(3)).is_err(), "flip of bit {bit} accepted");
        }
        for len in 0..blob.len() {
            assert!(
                open(&key, &blob[..len], expect(3)).is_err(),
                "truncation to {len} accepted"
            );
        }
    }

    #[test]
    fn misplaced_segments_and_wrong_keys_are_rejected() {
        let key = DataKey::generate();
        let other = DataKey::generate();
        let blob = seal(&key, &hdr(&key, 3, false), b"x").unwrap();
        assert!(matches!(open(&key, &blob, expect(4)), Err(CryptoError::Misplaced(_))));
        let e = Expect {
            recording_id: "rec-2",
            ..expect(3)
        };
        assert!(matches!(open(&key, &blob, e), Err(CryptoError::Misplaced(_))));
        assert!(open(&other, &blob, expect(3)).is_err());
        let forged = DataKey::from_parts(key.id().to_owned(), *other.secret());
        assert!(matches!(
            open(&forged, &blob, expect(3)),
            Err(CryptoError::Authentication)
        ));
    }

    #[test]
    fn nist_gcm_test_cases_13_to_15() {
        // NIST GCM spec (McGrew & Viega), AES-256 test cases without AAD:
        // (key, iv, plaintext, ciphertext ‖ tag).
        let cases = [
            ("00".repeat(32), "00".repeat(12), String::new(), "530f8afbc74536b9a963b4f1c4cb738b".to_owned()),
            ("00".repeat(32), "00".repeat(12), "00".repeat(16),
             "cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919".to_owned()),
            ("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308".to_owned(),
             "cafebabefacedbaddecaf888".to_owned(),
             "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255".to_owned(),
             "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015adb094dac5d93471bdec1a502270e3cc6c".to_owned()),
        ];
        let h = |s: &str| -> Vec<u8> {
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect()
        };
        for (key, iv, pt, ct) in cases {
            let cipher = Aes256Gcm::new_from_slice(&h(&key)).unwrap();
            let out = cipher.encrypt(Nonce::from_slice(&h(&iv)), h(&pt).as_slice()).unwrap();
            assert_eq!(out, h(&ct));
            let back = cipher.decrypt(Nonce::from_slice(&h(&iv)), out.as_slice()).unwrap();
            assert_eq!(back, h(&pt));
        }
    }

    #[test]
    fn nist_gcm_test_case_16() {
        // NIST GCM spec (McGrew & Viega), test case 16: AES-256, 96-bit IV, with AAD.
        let h = |s: &str| -> Vec<u8> {
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect()
        };
        let key = h("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308");
        let iv = h("cafebabefacedbaddecaf888");
        let pt = h("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39");
        let aad = h("feedfacedeadbeeffeedfacedeadbeefabaddad2");
        let expect_ct = h("522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662");
        let expect_tag = h("76fc6ece0f4e1768cddf8853bb2d551b");
        let cipher = Aes256Gcm::new_from_slice(&key).unwrap();
        let out = cipher
            .encrypt(Nonce::from_slice(&iv), Payload { msg: &pt, aad: &aad })
            .unwrap();
        assert_eq!(&out[..pt.len()], &expect_ct[..]);
        assert_eq!(&out[pt.len()..], &expect_tag[..]);
    }
}
