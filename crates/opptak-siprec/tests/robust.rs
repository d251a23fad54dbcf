//! What the network can send never panics a decoder, and whatever RTP
//! arrives, the session's chunks stay a valid telephony stream: sequence
//! numbers increasing, chunks never overlapping on the timeline, whole
//! stereo frames, and exactly one CallEnded naming the last chunk.

#![allow(clippy::unwrap_used)]

use opptak_proto::v1::{self, telephony_event::Event};
use opptak_siprec::rtp::{self, Codec};
use opptak_siprec::session::{Recording, Side};
use opptak_siprec::{loadgen, metadata, sdp, sip};
use proptest::prelude::*;

/// A whole SIPREC INVITE, as the load generator sends it: the seed the
/// mutations start from.
fn invite() -> Vec<u8> {
    let dialog = loadgen::SrcDialog {
        srs_uri: "sip:srs@h".into(),
        via: "SIP/2.0/UDP h".into(),
        branch: "1".into(),
        from: "<sip:a@h>;tag=1".into(),
        call_id: "x".into(),
        contact: "sip:a@h".into(),
    };
    let sdp = loadgen::offer_sdp(
        1,
        std::net::Ipv4Addr::new(1, 2, 3, 4).into(),
        "0 101",
        "a=rtpmap:101 telephone-event/8000\r\n",
    );
    dialog.invite(
        &sdp,
        &loadgen::metadata("c2Vz", "sip:+4791234567@c", "sip:4001@b", Some("1")),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn decoders_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = sip::Message::parse(&bytes, true);
        let _ = sip::Message::parse(&bytes, false);
        let _ = sip::Message::parse_head_only(&bytes);
        let _ = sip::multipart("multipart/mixed;boundary=b", &bytes);
        let _ = rtp::parse(&bytes);
        let _ = rtp::telephone_event(&bytes);
        let text = String::from_utf8_lossy(&bytes);
        let _ = sdp::parse_offer(&text);
        let _ = metadata::parse(&bytes);
    }

    #[test]
    fn a_mutated_siprec_invite_never_panics(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut m = invite();
        for (at, b) in edits {
            let i = at.index(m.len());
            m[i] = b;
        }
        let m = &m[..cut.index(m.len() + 1).max(1).min(m.len())];
        if let Ok((msg, _)) = sip::Message::parse(m, true) {
            let ct = msg.header("Content-Type").unwrap_or("").to_owned();
            if let Ok(parts) = sip::multipart(&ct, &msg.body) {
                for p in parts {
                    let _ = sdp::parse_offer(&String::from_utf8_lossy(&p.body));
                    let _ = metadata::parse(&p.body);
                }
            }
            let _ = msg.response(400, Some("t"), &[], None).to_bytes();
        }
    }

    #[test]
    fn any_rtp_gives_a_valid_chunk_stream(
        packets in proptest::collection::vec(
            (any::<bool>(), 0u8..3, any::<u16>(), any::<u32>(), prop_oneof![Just(0u8), Just(101), Just(8)], 0usize..400, 0u64..200_000),
            0..300,
        ),
        chunk_ms in 10u32..200,
        depth in 1usize..16,
        codec in prop_oneof![Just(Codec::Pcmu), Just(Codec::L16 { rate: 8000 }), Just(Codec::L16 { rate: 16000 })],
    ) {
        let mut rec = Recording::new("c".into(), codec, chunk_ms, depth, v1::CallStarted::default());
        let frame_bytes = 2 * codec.bytes_per_sample();
        let ns_per_frame = 1_000_000_000 / u64::from(codec.rate());
        rec.set_payload_types(Side::Agent, vec![0], Some(101));
        rec.set_payload_types(Side::Customer, vec![0], Some(101));
        let mut now = 0u64;
        // Sequence numbers near each other most of the time, so the
        // buffer reorders rather than restarts.
        for (agent, ssrc, seq, ts, pt, len, dt) in packets {
            now += dt;
            let b = rtp::build(pt, seq % 64, ts % 20_000, ssrc as u32, false, &vec![0x55; len]);
            let p = rtp::parse(&b).unwrap();
            rec.packet(if agent { Side::Agent } else { Side::Customer }, &p, now);
            if dt > 150_000 {
                rec.tick(now);
            }
        }
        rec.end(v1::EndReason::Unspecified, Default::default());
        let events = rec.take_events();
        prop_assert!(matches!(events.first().and_then(|e| e.event.as_ref()), Some(Event::CallStarted(_))));
        let mut last: Option<(u64, u64)> = None; // (sequence, end frame)
        let mut ended = 0;
        for e in &events[1..] {
            match e.event.as_ref().unwrap() {
                Event::AudioChunk(c) => {
                    prop_assert_eq!(ended, 0, "a chunk after CallEnded");
                    prop_assert!(!c.payload.is_empty() && c.payload.len() % frame_bytes == 0);
                    let o = c.offset.unwrap();
                    let start = (o.seconds as u64 * 1_000_000_000 + o.nanos as u64 + ns_per_frame / 2) / ns_per_frame;
                    if let Some((seq, end)) = last {
                        prop_assert!(c.sequence > seq && c.sequence - seq <= 64, "{} after {}", c.sequence, seq);
                        prop_assert!(start >= end, "chunk at {} overlaps one ending at {}", start, end);
                        prop_assert_eq!(c.sequence - seq > 1, start > end, "a skipped sequence is exactly a gap");
                    }
                    last = Some((c.sequence, start + (c.payload.len() / frame_bytes) as u64));
                }
                Event::CallEnded(end) => {
                    ended += 1;
                    prop_assert_eq!(end.no_audio, last.is_none());
                    if let Some((seq, _)) = last {
                        prop_assert_eq!(end.last_sequence, seq);
                    }
                }
                other => prop_assert!(false, "unexpected {:?}", other),
            }
        }
        prop_assert_eq!(ended, 1);
    }
}
