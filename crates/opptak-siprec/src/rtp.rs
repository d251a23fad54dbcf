//! RTP (RFC 3550) headers and RFC 4733 telephone-events.
//!
//! A telephone-event payload carries the key pressed (card and account
//! numbers on a bank's calls). [`telephone_event`] reads only whether the
//! event ended; the event code byte is never read into any value, so no
//! digit can reach a struct, log, metric or event.

/// The codecs a session can record: G.711 (8 kHz, one byte a sample) and
/// L16 (RFC 3551 linear PCM, 16-bit big-endian on RTP) at 8 or 16 kHz.
/// G.722 is not among them: no reference encoder to test a decoder against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    Pcmu,
    Pcma,
    /// Mono L16 at `rate` Hz (8000 or 16000).
    L16 {
        rate: u32,
    },
}

impl Codec {
    /// The static RTP payload type (RFC 3551); L16 at 8 and 16 kHz has none.
    pub fn static_pt(self) -> Option<u8> {
        match self {
            Codec::Pcmu => Some(0),
            Codec::Pcma => Some(8),
            Codec::L16 { .. } => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
            Codec::L16 { .. } => "L16",
        }
    }

    /// Samples per second (and the RTP clock rate).
    pub fn rate(self) -> u32 {
        match self {
            Codec::Pcmu | Codec::Pcma => 8000,
            Codec::L16 { rate } => rate,
        }
    }

    pub fn bytes_per_sample(self) -> usize {
        match self {
            Codec::Pcmu | Codec::Pcma => 1,
            Codec::L16 { .. } => 2,
        }
    }

    /// The `a=rtpmap` encoding, e.g. `PCMU/8000`, `L16/16000`.
    pub fn rtpmap(self) -> String {
        format!("{}/{}", self.name(), self.rate())
    }

    /// The codec of an `a=rtpmap` encoding (`name/rate[/channels]`, case
    /// insensitive), or of a static payload type without one. Stereo L16
    /// and other rates are not ours.
    pub fn from_rtpmap(pt: u8, rtpmap: Option<&str>) -> Option<Codec> {
        let Some(map) = rtpmap else {
            return match pt {
                0 => Some(Codec::Pcmu),
                8 => Some(Codec::Pcma),
                _ => None,
            };
        };
        let mut f = map.trim().split('/');
        let (name, rate, channels) = (f.next()?, f.next()?, f.next().unwrap_or("1"));
        if channels != "1" || f.next().is_some() {
            return None;
        }
        match (name.to_ascii_lowercase().as_str(), rate) {
            ("pcmu", "8000") => Some(Codec::Pcmu),
            ("pcma", "8000") => Some(Codec::Pcma),
            ("l16", "8000") => Some(Codec::L16 { rate: 8000 }),
            ("l16", "16000") => Some(Codec::L16 { rate: 16000 }),
            _ => None,
        }
    }

    /// One sample of digital silence in the contract's encoding (G.711's
    /// code closest to zero; L16 zero).
    pub fn silence(self) -> &'static [u8] {
        match self {
            Codec::Pcmu => &[0xFF],
            Codec::Pcma => &[0xD5],
            Codec::L16 { .. } => &[0, 0],
        }
    }

    /// Whole samples of an RTP payload in the telephony contract's encoding
    /// into `out`: G.711 as it is, L16 from RTP's big-endian (RFC 3551 4.5.11)
    /// to the contract's little-endian. A trailing odd byte of L16 is no
    /// sample and is left out.
    pub fn to_contract(self, payload: &[u8], out: &mut Vec<u8>) {
        out.clear();
        match self {
            Codec::Pcmu | Codec::Pcma => out.extend_from_slice(payload),
            Codec::L16 { .. } => {
                out.reserve(payload.len());
                for s in payload.chunks_exact(2) {
                    out.extend_from_slice(&[s[1], s[0]]);
                }
            }
        }
    }
}

/// G.711 alone: what the load generator sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum G711 {
    Pcmu,
    Pcma,
}

impl G711 {
    pub fn static_pt(self) -> u8 {
        match self {
            G711::Pcmu => 0,
            G711::Pcma => 8,
        }
    }
}

impl From<G711> for Codec {
    fn from(c: G711) -> Codec {
        match c {
            G711::Pcmu => Codec::Pcmu,
            G711::Pcma => Codec::Pcma,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RtpError {
    #[error("not an RTP packet: {0}")]
    Invalid(&'static str),
}

/// One RTP packet's header fields and payload range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub payload: &'a [u8],
}

/// Parses an RTP packet: version 2, CSRCs, header extension and padding
/// skipped. RTCP (payload types 200-204 with the marker bit) is refused.
pub fn parse(buf: &[u8]) -> Result<Packet<'_>, RtpError> {
    if buf.len() < 12 {
        return Err(RtpError::Invalid("shorter than a header"));
    }
    if buf[0] >> 6 != 2 {
        return Err(RtpError::Invalid("version is not 2"));
    }
    if (192..=223).contains(&buf[1]) {
        return Err(RtpError::Invalid("RTCP"));
    }
    let padding = buf[0] & 0x20 != 0;
    let extension = buf[0] & 0x10 != 0;
    let csrc = (buf[0] & 0x0F) as usize;
    let mut start = 12 + 4 * csrc;
    if extension {
        if buf.len() < start + 4 {
            return Err(RtpError::Invalid("truncated extension"));
        }
        let words = u16::from_be_bytes([buf[start + 2], buf[start + 3]]) as usize;
        start += 4 + 4 * words;
    }
    let mut end = buf.len();
    if padding {
        let pad = *buf.last().unwrap_or(&0) as usize;
        if pad == 0 || pad > end {
            return Err(RtpError::Invalid("bad padding"));
        }
        end -= pad;
    }
    if start > end {
        return Err(RtpError::Invalid("header longer than packet"));
    }
    Ok(Packet {
        marker: buf[1] & 0x80 != 0,
        payload_type: buf[1] & 0x7F,
        sequence: u16::from_be_bytes([buf[2], buf[3]]),
        timestamp: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
        ssrc: u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]),
        payload: &buf[start..end],
    })
}

/// What a telephone-event packet tells us: that an event is going on and
/// whether this packet ends it. Which key it is is not read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ToneEvent {
    pub end: bool,
}

/// Reads an RFC 4733 payload (4 bytes: event, E|R|volume, duration).
pub fn telephone_event(payload: &[u8]) -> Option<ToneEvent> {
    if payload.len() < 4 {
        return None;
    }
    // payload[0], the event code, is deliberately not read.
    Some(ToneEvent {
        end: payload[1] & 0x80 != 0,
    })
}

/// Builds an RTP packet (tests, the load generator).
pub fn build(payload_type: u8, sequence: u16, timestamp: u32, ssrc: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + payload.len());
    out.push(0x80);
    out.push(payload_type & 0x7F | if marker { 0x80 } else { 0 });
    out.extend_from_slice(&sequence.to_be_bytes());
    out.extend_from_slice(&timestamp.to_be_bytes());
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_plain_packet() {
        let b = build(8, 65535, 0xDEAD_BEEF, 7, true, &[1, 2, 3]);
        let p = parse(&b).unwrap();
        assert_eq!(
            (p.marker, p.payload_type, p.sequence, p.timestamp, p.ssrc),
            (true, 8, 65535, 0xDEAD_BEEF, 7)
        );
        assert_eq!(p.payload, &[1, 2, 3]);
    }

    #[test]
    fn skips_csrcs_extension_and_padding() {
        let mut b = vec![0x80 | 0x20 | 0x10 | 2, 0, 0, 1, 0, 0, 0, 160, 0, 0, 0, 9];
        b.extend_from_slice(&[0; 8]); // two CSRCs
        b.extend_from_slice(&[0xBE, 0xDE, 0, 1, 9, 9, 9, 9]); // one-word extension
        b.extend_from_slice(&[5, 6]);
        b.extend_from_slice(&[0, 0, 3]); // padding of 3
        let p = parse(&b).unwrap();
        assert_eq!(p.payload, &[5, 6]);
        assert_eq!(p.timestamp, 160);
    }

    #[test]
    fn refuses_what_is_not_rtp() {
        assert!(parse(&[0x80; 11]).is_err());
        assert!(parse(&[0x40; 12]).is_err());
        assert!(
            parse(&[0x80, 200, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0]).is_err(),
            "RTCP sender report"
        );
        let mut b = build(0, 1, 1, 1, false, &[]);
        b[0] |= 0x0F; // 15 CSRCs that are not there
        assert!(parse(&b).is_err());
        let mut b = build(0, 1, 1, 1, false, &[1]);
        b[0] |= 0x20;
        *b.last_mut().unwrap() = 40;
        assert!(parse(&b).is_err());
    }

    #[test]
    fn telephone_event_reads_the_end_bit_only() {
        assert_eq!(telephone_event(&[5, 0x0A, 0, 160]), Some(ToneEvent { end: false }));
        assert_eq!(telephone_event(&[9, 0x8A, 3, 32]), Some(ToneEvent { end: true }));
        assert_eq!(telephone_event(&[9, 0x8A]), None);
        // Every key gives the same value: nothing of the key is kept.
        let all: std::collections::HashSet<_> = (0..=16u8).map(|k| telephone_event(&[k, 0x0A, 0, 160])).collect();
        assert_eq!(all.len(), 1);
    }

    #[test]
    fn codecs_from_rtpmap_and_static_payload_types() {
        assert_eq!(Codec::from_rtpmap(0, None), Some(Codec::Pcmu));
        assert_eq!(Codec::from_rtpmap(8, None), Some(Codec::Pcma));
        assert_eq!(Codec::from_rtpmap(11, None), None, "L16/44100 is not ours");
        assert_eq!(Codec::from_rtpmap(96, Some("PCMA/8000/1")), Some(Codec::Pcma));
        assert_eq!(
            Codec::from_rtpmap(97, Some("l16/16000")),
            Some(Codec::L16 { rate: 16000 })
        );
        assert_eq!(
            Codec::from_rtpmap(98, Some("L16/8000/1")),
            Some(Codec::L16 { rate: 8000 })
        );
        for other in [
            "L16/16000/2",
            "L16/44100",
            "L16/48000",
            "G722/8000",
            "opus/48000/2",
            "PCMU",
            "PCMU/16000",
        ] {
            assert_eq!(Codec::from_rtpmap(96, Some(other)), None, "{other}");
        }
        let wb = Codec::L16 { rate: 16000 };
        assert_eq!(
            (wb.rtpmap(), wb.rate(), wb.bytes_per_sample(), wb.static_pt()),
            ("L16/16000".to_owned(), 16000, 2, None)
        );
        assert_eq!(Codec::Pcmu.rtpmap(), "PCMU/8000");
    }

    #[test]
    fn l16_becomes_little_endian_and_g711_stays() {
        let mut out = Vec::new();
        // 0x1234, -2 (0xFFFE), and a trailing odd byte that is no sample.
        Codec::L16 { rate: 8000 }.to_contract(&[0x12, 0x34, 0xFF, 0xFE, 0x7F], &mut out);
        assert_eq!(out, [0x34, 0x12, 0xFE, 0xFF]);
        Codec::Pcma.to_contract(&[1, 2, 3], &mut out);
        assert_eq!(out, [1, 2, 3]);
    }

    proptest::proptest! {
        /// Every sample read back from the contract's bytes is the sample
        /// RTP carried.
        #[test]
        fn l16_samples_survive_the_conversion(samples in proptest::collection::vec(proptest::prelude::any::<i16>(), 0..400)) {
            let wire: Vec<u8> = samples.iter().flat_map(|s| s.to_be_bytes()).collect();
            let mut out = Vec::new();
            Codec::L16 { rate: 16000 }.to_contract(&wire, &mut out);
            let back: Vec<i16> = out.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
            proptest::prop_assert_eq!(back, samples);
        }
    }
}
