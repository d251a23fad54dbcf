//! SDP (RFC 4566) offers from a recording client and the answers to them.
//!
//! Only what SIPREC audio needs: `c=`, one or more `m=audio`, `a=label`
//! (RFC 4574, ties a stream to the metadata), `a=rtpmap`, the direction
//! attributes. The answer receives every offered audio stream
//! (`a=recvonly`, or `a=inactive` for an inactive one) on its own local
//! port, with the session's one G.711 codec and telephone-event if offered.

use crate::rtp::G711;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SdpError {
    #[error("malformed SDP: {0}")]
    Malformed(String),
    #[error("no acceptable codec (PCMU or PCMA at 8000 Hz) offered on every audio stream")]
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
    /// Payload type -> G.711 codec (static 0/8 or from rtpmap).
    pub g711: Vec<(u8, G711)>,
    /// telephone-event/8000 payload type, if offered.
    pub telephone_event: Option<u8>,
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
            let codec = match (pt, map.as_deref()) {
                (_, Some("pcmu/8000")) | (_, Some("pcmu/8000/1")) | (0, None) => Some(G711::Pcmu),
                (_, Some("pcma/8000")) | (_, Some("pcma/8000/1")) | (8, None) => Some(G711::Pcma),
                _ => None,
            };
            if let Some(c) = codec {
                s.g711.push((pt, c));
            }
            if map.as_deref() == Some("telephone-event/8000") {
                s.telephone_event = Some(pt);
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
                        g711: Vec::new(),
                        telephone_event: None,
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

impl Offer {
    /// The session's codec: the first G.711 codec of the first stream that
    /// every stream offers. Both channels of a chunk share one codec.
    pub fn choose_codec(&self) -> Result<G711, SdpError> {
        let first = &self.streams[0];
        first
            .g711
            .iter()
            .map(|(_, c)| *c)
            .find(|c| self.streams.iter().all(|s| s.g711.iter().any(|(_, sc)| sc == c)))
            .ok_or(SdpError::NoCodec)
    }
}

/// Builds the answer: one local port per audio stream (`ports[i]` for
/// `offer.streams[i]`), the chosen codec with the payload type the offer
/// gave it, telephone-event if offered, labels kept, `a=recvonly` (or
/// `a=inactive` where the offer is inactive or sends nothing).
pub fn build_answer(offer: &Offer, codec: G711, local_ip: &str, ports: &[u16], session_version: u64) -> String {
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
        let pt = s
            .g711
            .iter()
            .find(|(_, c)| *c == codec)
            .map(|(p, _)| *p)
            .unwrap_or(codec.static_pt());
        let mut pts = vec![pt];
        pts.extend(s.telephone_event);
        let list = pts.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(" ");
        out.push_str(&format!("m=audio {} {proto} {list}\r\n", ports[*i]));
        out.push_str(&format!("a=rtpmap:{pt} {}/8000\r\n", codec.name()));
        if let Some(te) = s.telephone_event {
            out.push_str(&format!("a=rtpmap:{te} telephone-event/8000\r\na=fmtp:{te} 0-16\r\n"));
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
        assert_eq!(a.g711, vec![(8, G711::Pcma), (0, G711::Pcmu)]);
        assert_eq!(a.telephone_event, Some(101));
        assert_eq!(a.direction, Direction::SendOnly);
        assert_eq!(
            (b.label.as_deref(), b.remote_addr.as_str(), b.index),
            (Some("2"), "10.0.0.3", 2)
        );
        assert_eq!(b.g711, vec![(96, G711::Pcma), (0, G711::Pcmu)]);
        assert_eq!(o.choose_codec().unwrap(), G711::Pcma);
    }

    #[test]
    fn answer_receives_each_stream_with_the_offers_payload_type() {
        let o = parse_offer(OFFER).unwrap();
        let ans = build_answer(&o, G711::Pcma, "10.0.0.1", &[40000, 40002], 1);
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
}
