//! Arbitrary bytes where the telephony system's messages or sample WAV files
//! belong: a clear error, never a panic.

use opptak_domain::model::CallId;
use opptak_proto::v1;
use opptak_proto::Message;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn telephony_decoding_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(ev) = v1::TelephonyEvent::decode(bytes.as_slice()) {
            if let (Ok(id), Some(v1::telephony_event::Event::CallStarted(s))) = (CallId::parse(&ev.call_id), &ev.event) {
                let _ = opptak_proto::convert::call_facts(id, s);
            }
        }
    }

    #[test]
    fn wav_reader_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let mut riff = b"RIFF\0\0\0\0WAVE".to_vec();
        riff.extend_from_slice(&bytes);
        let _ = opptak::sim::read_wav(&riff);
        let _ = opptak::sim::read_wav(&bytes);
    }
}
