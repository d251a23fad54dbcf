//! SDP (RFC 4566) offers from a recording client and the answers to them.
//!
//! Only what SIPREC audio needs: `c=`, one or more `m=audio`, `a=label`
//! (RFC 4574, ties a stream to the metadata), `a=rtpmap`, the direction
//! attributes. The answer receives every offered audio stream
//! (`a=recvonly`, or `a=inactive` for an inactive one) on its own local
//! port, with the session's one codec (G.711 or L16) and telephone-event at
//! its rate if offered.

use crate::rtp::Codec;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SdpError {
    #[error("malformed SDP: {0}")]
    Malformed(String),
    #[error("no acceptable codec (PCMU/8000, PCMA/8000, L16/8000 or L16/16000, mono) offered on every audio stream")]
    NoCodec,
    #[error("no audio stream offered")]
    NoAudio,
}

/// Direction of an offered stream, from the offerer's side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

/// One offered `m=audio` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OfferedStream {
    /// Index among all `m=` lines (the answer keeps their order).
    pub index: usize,
    pub label: Option<String>,
    /// Remote RTP address (from the media or session `c=` line) and port.
    pub remote_addr: String,
    pub remote_port: u16,
    /// Payload types in offer order.
    pub payloads: Vec<u8>,
    /// Payload type -> codec we can record (static 0/8 or from rtpmap), in
    /// offer order.
    pub codecs: Vec<(u8, Codec)>,
    /// telephone-event payload types and their clock rates.
    pub telephone_events: Vec<(u8, u32)>,
    pub direction: Direction,
}

/// A parsed offer: audio streams and the other m-lines (rejected with port 0).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offer {
    pub streams: Vec<OfferedStream>,
    /// Every m-line in order: (media, proto, audio stream index or None).
    pub mlines: Vec<(String, String, Option<usize>)>,
}

pub fn parse_offer(text: &str) -> Result<Offer, SdpError> {
    let bad = |s: &str| SdpError::Malformed(s.to_owned());
    let mut session_c: Option<String> = None;
    let mut streams: Vec<OfferedStream> = Vec::new();
    let mut mlines = Vec::new();
    let mut current: Option<usize> = None; // index into streams when in an audio section
    let mut in_media = false;
    let mut rtpmaps: Vec<(u8, String)> = Vec::new();
    let mut seen_v = false;
    let finish = |s: &mut OfferedStream, rtpmaps: &mut Vec<(u8, String)>| {
        for &pt in &s.payloads {
            let map = rtpmaps
                .iter()
                .find(|(p, _)| *p == pt)
                .map(|(_, m)| m.to_ascii_lowercase());
            if let Some(c) = Codec::from_rtpmap(pt, map.as_deref()) {
                s.codecs.push((pt, c));
            }
            if let Some(rate) = map
                .as_deref()
                .and_then(|m| m.strip_prefix("telephone-event/"))
                .and_then(|r| r.parse().ok())
            {
                s.telephone_events.push((pt, rate));
            }
        }
        rtpmaps.clear();
    };
    for raw in text.lines() {
        let line = raw.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        let (kind, value) = line.split_once('=').ok_or_else(|| bad("line without '='"))?;
        if kind.len() != 1 {
            return Err(bad("bad line type"));
        }
        if !seen_v {
            if kind != "v" || value != "0" {
                return Err(bad("must start with v=0"));
            }
            seen_v = true;
            continue;
        }
        match kind {
            "c" => {
                let addr = value.split_whitespace().nth(2).ok_or_else(|| bad("bad c= line"))?;
                let addr = addr.split('/').next().unwrap_or(addr).to_owned();
                match current {
                    Some(i) if in_media => streams[i].remote_addr = addr,
                    _ if !in_media => session_c = Some(addr),
                    _ => {}
                }
            }
            "m" => {
                if let Some(i) = current.take() {
                    finish(&mut streams[i], &mut rtpmaps);
                }
                rtpmaps.clear();
                in_media = true;
                let mut f = value.split_whitespace();
                let (Some(media), Some(port), Some(proto)) = (f.next(), f.next(), f.next()) else {
                    return Err(bad("bad m= line"));
                };
                let port: u16 = port
                    .split('/')
                    .next()
                    .unwrap_or(port)
                    .parse()
                    .map_err(|_| bad("bad m= port"))?;
                if media == "audio" && proto.starts_with("RTP/") {
                    let payloads = f
                        .map(|p| p.parse::<u8>().map_err(|_| bad("bad payload type")))
                        .collect::<Result<Vec<_>, _>>()?;
                    if payloads.is_empty() || payloads.iter().any(|p| *p > 127) {
                        return Err(bad("bad payload type"));
                    }
                    current = Some(streams.len());
                    mlines.push((media.to_owned(), proto.to_owned(), Some(streams.len())));
                    streams.push(OfferedStream {
                        index: mlines.len() - 1,
                        label: None,
                        remote_addr: session_c.clone().unwrap_or_default(),
                        remote_port: port,
                        payloads,
                        codecs: Vec::new(),
                        telephone_events: Vec::new(),
                        direction: if port == 0 {
                            Direction::Inactive
                        } else {
                            Direction::SendRecv
                        },
                    });
                } else {
                    mlines.push((media.to_owned(), proto.to_owned(), None));
                }
            }
            "a" => {
                let Some(i) = current else { continue };
                let s = &mut streams[i];
                let (name, v) = value.split_once(':').unwrap_or((value, ""));
                match name {
                    "label" => s.label = Some(v.trim().to_owned()),
                    "rtpmap" => {
                        let (pt, enc) = v.split_once(' ').ok_or_else(|| bad("bad rtpmap"))?;
                        let pt: u8 = pt.parse().map_err(|_| bad("bad rtpmap"))?;
                        rtpmaps.push((pt, enc.trim().to_owned()));
                    }
                    "sendonly" => s.direction = Direction::SendOnly,
                    "recvonly" => s.direction = Direction::RecvOnly,
                    "inactive" => s.direction = Direction::Inactive,
                    "sendrecv" => s.direction = Direction::SendRecv,
                    _ => {}
                }
            }
            _ => {}
        }
    }
    if !seen_v {
        return Err(bad("empty"));
    }
    if let Some(i) = current {
        finish(&mut streams[i], &mut rtpmaps);
    }
    if streams.is_empty() {
        return Err(SdpError::NoAudio);
    }
    for s in &streams {
        if s.remote_addr.is_empty() && s.direction != Direction::Inactive {
            return Err(bad("audio stream without c= address"));
        }
    }
    Ok(Offer { streams, mlines })
}

impl OfferedStream {
    /// The payload types this stream offers `codec` under.
    pub fn payload_types(&self, codec: Codec) -> Vec<u8> {
        self.codecs
            .iter()
            .filter(|(_, c)| *c == codec)
            .map(|(p, _)| *p)
            .collect()
    }

    /// The telephone-event payload type at `rate` (RFC 4733: the audio's clock).
    pub fn telephone_event(&self, rate: u32) -> Option<u8> {
        self.telephone_events.iter().find(|(_, r)| *r == rate).map(|(p, _)| *p)
    }
}

impl Offer {
    /// The session's codec (both channels of a chunk share one). L16/16000
    /// when every stream offers it: wideband, lossless, what speech
    /// recognition does best with (at 4x the bytes of G.711). Else the
    /// first codec of the first stream that every stream offers.
    pub fn choose_codec(&self) -> Result<Codec, SdpError> {
        let everywhere = |c: &Codec| self.streams.iter().all(|s| s.codecs.iter().any(|(_, sc)| sc == c));
        let wideband = Codec::L16 { rate: 16000 };
        if everywhere(&wideband) {
            return Ok(wideband);
        }
        self.streams[0]
            .codecs
            .iter()
            .map(|(_, c)| *c)
            .find(everywhere)
            .ok_or(SdpError::NoCodec)
    }
}

/// Builds the answer: one local port per audio stream (`ports[i]` for
/// `offer.streams[i]`), the chosen codec with the payload type the offer
/// gave it, telephone-event at the codec's rate if offered, labels kept,
/// `a=recvonly` (or `a=inactive` where the offer is inactive or sends
/// nothing).
pub fn build_answer(offer: &Offer, codec: Codec, local_ip: &str, ports: &[u16], session_version: u64) -> String {
    let ip_kind = if local_ip.contains(':') { "IP6" } else { "IP4" };
    let mut out = format!(
        "v=0\r\no=opptak-srs 1 {session_version} IN {ip_kind} {local_ip}\r\ns=opptak SIPREC\r\nc=IN {ip_kind} {local_ip}\r\nt=0 0\r\n"
    );
    for (media, proto, audio) in &offer.mlines {
        let Some(i) = audio else {
            out.push_str(&format!("m={media} 0 {proto} 0\r\n"));
            continue;
        };
        let s = &offer.streams[*i];
        // A stream that lacks the codec (an inactive one) is answered with
        // the codec's static type, or the first dynamic one.
        let pt = s
            .payload_types(codec)
            .first()
            .copied()
            .or(codec.static_pt())
            .unwrap_or(96);
        let te = s.telephone_event(codec.rate());
        let mut pts = vec![pt];
        pts.extend(te);
        let list = pts.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(" ");
        out.push_str(&format!("m=audio {} {proto} {list}\r\n", ports[*i]));
        out.push_str(&format!("a=rtpmap:{pt} {}\r\n", codec.rtpmap()));
        if let Some(te) = te {
            out.push_str(&format!(
                "a=rtpmap:{te} telephone-event/{}\r\na=fmtp:{te} 0-16\r\n",
                codec.rate()
            ));
        }
        if let Some(l) = &s.label {
            out.push_str(&format!("a=label:{l}\r\n"));
        }
        let dir = match s.direction {
            Direction::Inactive | Direction::RecvOnly => "inactive",
            Direction::SendOnly | Direction::SendRecv => "recvonly",
        };
        out.push_str(&format!("a={dir}\r\n"));
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    pub(crate) const OFFER: &str = "v=0\r\no=src 1 1 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\n\
m=audio 20000 RTP/AVP 8 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=label:1\r\na=sendonly\r\n\
m=video 20004 RTP/AVP 96\r\n\
m=audio 20002 RTP/AVP 96 0\r\nc=IN IP4 10.0.0.3\r\na=rtpmap:96 PCMA/8000\r\na=label:2\r\na=sendonly\r\n";

    #[test]
    fn parses_streams_labels_and_payload_types() {
        let o = parse_offer(OFFER).unwrap();
        assert_eq!(o.streams.len(), 2);
        let (a, b) = (&o.streams[0], &o.streams[1]);
        assert_eq!(
            (a.label.as_deref(), a.remote_addr.as_str(), a.remote_port),
            (Some("1"), "10.0.0.2", 20000)
        );
        assert_eq!(a.codecs, vec![(8, Codec::Pcma), (0, Codec::Pcmu)]);
        assert_eq!(a.telephone_event(8000), Some(101));
        assert_eq!(a.direction, Direction::SendOnly);
        assert_eq!(
            (b.label.as_deref(), b.remote_addr.as_str(), b.index),
            (Some("2"), "10.0.0.3", 2)
        );
        assert_eq!(b.codecs, vec![(96, Codec::Pcma), (0, Codec::Pcmu)]);
        assert_eq!(o.choose_codec().unwrap(), Codec::Pcma);
    }

    #[test]
    fn answer_receives_each_stream_with_the_offers_payload_type() {
        let o = parse_offer(OFFER).unwrap();
        let ans = build_answer(&o, Codec::Pcma, "10.0.0.1", &[40000, 40002], 1);
        let expected = "v=0\r\no=opptak-srs 1 1 IN IP4 10.0.0.1\r\ns=opptak SIPREC\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
m=audio 40000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=label:1\r\na=recvonly\r\n\
m=video 0 RTP/AVP 0\r\n\
m=audio 40002 RTP/AVP 96\r\na=rtpmap:96 PCMA/8000\r\na=label:2\r\na=recvonly\r\n";
        assert_eq!(ans, expected);
        // The answer parses as an offer would (same grammar).
        assert_eq!(parse_offer(&ans).unwrap().streams.len(), 2);
    }

    #[test]
    fn no_common_g711_codec_is_refused() {
        let o = parse_offer("v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 1 RTP/AVP 0\r\nm=audio 2 RTP/AVP 8\r\n").unwrap();
        assert_eq!(o.choose_codec(), Err(SdpError::NoCodec));
        let o =
            parse_offer("v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 1 RTP/AVP 9 96\r\na=rtpmap:96 opus/48000/2\r\n").unwrap();
        assert_eq!(o.choose_codec(), Err(SdpError::NoCodec));
        assert_eq!(
            parse_offer("v=0\r\nc=IN IP4 1.2.3.4\r\nm=video 1 RTP/AVP 96\r\n"),
            Err(SdpError::NoAudio)
        );
        assert!(matches!(parse_offer("hello"), Err(SdpError::Malformed(_))));
        assert!(matches!(
            parse_offer("v=0\r\nm=audio 1 RTP/AVP 0\r\n"),
            Err(SdpError::Malformed(_))
        ));
    }

    #[test]
    fn l16_is_read_from_rtpmap_and_wideband_is_preferred_when_every_stream_has_it() {
        let two = |a: &str, b: &str| {
            parse_offer(&format!(
                "v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 1 RTP/AVP {a}\r\nm=audio 2 RTP/AVP {b}\r\n"
            ))
            .unwrap()
        };
        let maps = "a=rtpmap:96 L16/16000\r\na=rtpmap:97 L16/8000\r\na=rtpmap:98 telephone-event/16000\r\na=rtpmap:101 telephone-event/8000\r\n";
        let o = two(&format!("0 97 96 101 98\r\n{maps}"), &format!("8 0 96 98\r\n{maps}"));
        assert_eq!(
            o.streams[0].codecs,
            vec![
                (0, Codec::Pcmu),
                (97, Codec::L16 { rate: 8000 }),
                (96, Codec::L16 { rate: 16000 })
            ]
        );
        assert_eq!(
            (o.streams[0].telephone_event(16000), o.streams[0].telephone_event(8000)),
            (Some(98), Some(101))
        );
        assert_eq!(o.choose_codec().unwrap(), Codec::L16 { rate: 16000 });
        let ans = build_answer(&o, Codec::L16 { rate: 16000 }, "10.0.0.1", &[40000, 40002], 1);
        assert!(
            ans.contains(
                "m=audio 40000 RTP/AVP 96 98\r\na=rtpmap:96 L16/16000\r\na=rtpmap:98 telephone-event/16000\r\n"
            ),
            "{ans}"
        );
        // Not on every stream: the offer's order among the rest decides.
        let o = two(&format!("97 0 96\r\n{maps}"), &format!("0 97\r\n{maps}"));
        assert_eq!(o.choose_codec().unwrap(), Codec::L16 { rate: 8000 });
        let o = two(&format!("0 96\r\n{maps}"), &format!("8 0\r\n{maps}"));
        assert_eq!(o.choose_codec().unwrap(), Codec::Pcmu);
        // Stereo L16 or another rate is no codec of ours.
        let o = two("96\r\na=rtpmap:96 L16/16000/2\r\n", "96\r\na=rtpmap:96 L16/44100\r\n");
        assert_eq!(o.choose_codec(), Err(SdpError::NoCodec));
    }
}
