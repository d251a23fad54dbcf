//! Arbitrary bytes given to the segment decoder get an error, never a panic
//! and never plaintext.

use opptak_crypto::segment::{open, open_stream, seal, ArtifactKind, Expect, SegmentHeader};
use opptak_crypto::DataKey;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_are_refused(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let key = DataKey::generate();
        let _ = SegmentHeader::parse(&bytes);
        let e = Expect { kind: ArtifactKind::Recording, recording_id: "rec", index: 0 };
        prop_assert!(open(&key, &bytes, e).is_err());
        prop_assert!(open_stream(&key, ArtifactKind::Recording, "rec", &[&bytes], 2, false).is_err());
    }

    #[test]
    fn valid_header_with_random_body_is_refused(body in prop::collection::vec(any::<u8>(), 0..256), final_segment: bool) {
        let key = DataKey::generate();
        let hdr = SegmentHeader {
            kind: ArtifactKind::Recording,
            final_segment,
            key_id: key.id().to_owned(),
            recording_id: "rec".into(),
            index: 0,
            first_frame: 0,
        };
        let sealed = seal(&key, &hdr, b"").unwrap();
        let (_, hlen) = SegmentHeader::parse(&sealed).unwrap();
        let mut forged = sealed[..hlen].to_vec();
        forged.extend_from_slice(&body);
        let e = Expect { kind: ArtifactKind::Recording, recording_id: "rec", index: 0 };
        prop_assert!(open(&key, &forged, e).is_err());
    }

    #[test]
    fn any_plaintext_round_trips(pt in prop::collection::vec(any::<u8>(), 0..20_000)) {
        let key = DataKey::generate();
        let hdr = SegmentHeader {
            kind: ArtifactKind::Recording,
            final_segment: true,
            key_id: key.id().to_owned(),
            recording_id: "rec".into(),
            index: 0,
            first_frame: 0,
        };
        let sealed = seal(&key, &hdr, &pt).unwrap();
        let out = open_stream(&key, ArtifactKind::Recording, "rec", &[&sealed], 1, true).unwrap();
        prop_assert_eq!(out, pt);
    }
}
