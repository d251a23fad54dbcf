//! SIP messages (RFC 3261 section 7): a small strict parser and writer.
//!
//! Requests and responses, headers with their compact forms, Content-Length
//! framing for stream transports, and `multipart/mixed` bodies (RFC 2046)
//! as SIPREC sends them. A message larger than [`MAX_MESSAGE`] is refused.

use bytes::Bytes;

/// The largest message accepted (start line, headers and body).
pub const MAX_MESSAGE: usize = 64 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SipError {
    #[error("message larger than {MAX_MESSAGE} bytes")]
    TooLarge,
    #[error("incomplete message")]
    Incomplete,
    #[error("malformed message: {0}")]
    Malformed(&'static str),
}

/// A request's method, or a response's status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartLine {
    Request { method: String, uri: String },
    Response { code: u16, reason: String },
}

/// One SIP message: headers in order (names as sent), body as bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub start: StartLine,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

/// Compact header forms (RFC 3261 7.3.3 and the registry) to full names.
fn expand(name: &str) -> &str {
    if name.len() != 1 {
        return name;
    }
    match name.as_bytes()[0].to_ascii_lowercase() {
        b'i' => "Call-ID",
        b'f' => "From",
        b't' => "To",
        b'v' => "Via",
        b'm' => "Contact",
        b'l' => "Content-Length",
        b'c' => "Content-Type",
        b'k' => "Supported",
        b's' => "Subject",
        b'e' => "Content-Encoding",
        b'x' => "Session-Expires",
        _ => name,
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

impl Message {
    /// Parses one message from a datagram or from the front of a stream
    /// buffer. Returns the message and the bytes it took. With `stream`,
    /// Content-Length is required and a short buffer is
    /// [`SipError::Incomplete`]; without it (UDP) a missing Content-Length
    /// means the rest of the datagram.
    pub fn parse(buf: &[u8], stream: bool) -> Result<(Message, usize), SipError> {
        let head_end = match find(buf, b"\r\n\r\n") {
            Some(i) => i,
            None if buf.len() > MAX_MESSAGE => return Err(SipError::TooLarge),
            None if stream => return Err(SipError::Incomplete),
            None => return Err(SipError::Malformed("no end of headers")),
        };
        if head_end + 4 > MAX_MESSAGE {
            return Err(SipError::TooLarge);
        }
        let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| SipError::Malformed("headers not UTF-8"))?;
        let mut lines = head.split("\r\n");
        let first = lines.next().ok_or(SipError::Malformed("empty"))?;
        let start = parse_start(first)?;
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in lines {
            if line.starts_with([' ', '\t']) {
                // Folded continuation (RFC 3261 7.3.1).
                let last = headers
                    .last_mut()
                    .ok_or(SipError::Malformed("continuation before any header"))?;
                last.1.push(' ');
                last.1.push_str(line.trim());
                continue;
            }
            let (name, value) = line
                .split_once(':')
                .ok_or(SipError::Malformed("header without colon"))?;
            let name = name.trim();
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(SipError::Malformed("bad header name"));
            }
            headers.push((expand(name).to_owned(), value.trim().to_owned()));
        }
        let body_start = head_end + 4;
        let len = match headers.iter().find(|(n, _)| n.eq_ignore_ascii_case("Content-Length")) {
            Some((_, v)) => v
                .parse::<usize>()
                .map_err(|_| SipError::Malformed("bad Content-Length"))?,
            None if stream => return Err(SipError::Malformed("no Content-Length on a stream transport")),
            None => buf.len() - body_start,
        };
        if body_start + len > MAX_MESSAGE {
            return Err(SipError::TooLarge);
        }
        if buf.len() < body_start + len {
            return Err(if stream {
                SipError::Incomplete
            } else {
                SipError::Malformed("body shorter than Content-Length")
            });
        }
        let body = Bytes::copy_from_slice(&buf[body_start..body_start + len]);
        Ok((Message { start, headers, body }, body_start + len))
    }

    /// The start line and headers of a message whose body or size was
    /// refused, so that an error response can still be addressed.
    pub fn parse_head_only(buf: &[u8]) -> Option<Message> {
        let head_end = find(&buf[..buf.len().min(MAX_MESSAGE)], b"\r\n\r\n")?;
        let text = std::str::from_utf8(&buf[..head_end]).ok()?;
        let mut head: String = text
            .split("\r\n")
            .filter(|l| !expand(l.split(':').next().unwrap_or("").trim()).eq_ignore_ascii_case("Content-Length"))
            .collect::<Vec<_>>()
            .join("\r\n");
        head.push_str("\r\n\r\n");
        Message::parse(head.as_bytes(), false).ok().map(|(mut m, _)| {
            m.body = Bytes::new();
            m
        })
    }

    /// The first value of a header (case-insensitive, compact forms expanded).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a header, in order.
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn method(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    pub fn call_id(&self) -> Option<&str> {
        self.header("Call-ID")
    }

    /// CSeq's number and method.
    pub fn cseq(&self) -> Option<(u32, &str)> {
        let v = self.header("CSeq")?;
        let (n, m) = v.split_once(char::is_whitespace)?;
        Some((n.trim().parse().ok()?, m.trim()))
    }

    /// The `tag` parameter of To or From.
    pub fn tag(&self, header: &str) -> Option<&str> {
        param(self.header(header)?, "tag")
    }

    /// A response to this request: Via, From, To (with `to_tag` added if
    /// it has none), Call-ID and CSeq copied, then `extra` headers and the
    /// body with its Content-Type.
    pub fn response(
        &self,
        code: u16,
        to_tag: Option<&str>,
        extra: &[(&str, String)],
        body: Option<(&str, Bytes)>,
    ) -> Message {
        let mut headers = Vec::new();
        for (n, v) in &self.headers {
            let copy = ["Via", "From", "Call-ID", "CSeq"]
                .iter()
                .any(|h| n.eq_ignore_ascii_case(h));
            if copy {
                headers.push((n.clone(), v.clone()));
            } else if n.eq_ignore_ascii_case("To") {
                let mut v = v.clone();
                if let Some(tag) = to_tag {
                    if param(&v, "tag").is_none() {
                        v.push_str(";tag=");
                        v.push_str(tag);
                    }
                }
                headers.push(("To".into(), v));
            }
        }
        for (n, v) in extra {
            headers.push(((*n).to_owned(), v.clone()));
        }
        let body = match body {
            Some((ct, b)) => {
                headers.push(("Content-Type".into(), ct.to_owned()));
                b
            }
            None => Bytes::new(),
        };
        Message {
            start: StartLine::Response {
                code,
                reason: reason_phrase(code).to_owned(),
            },
            headers,
            body,
        }
    }

    /// The wire form; Content-Length is always written (and any given one replaced).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512 + self.body.len());
        match &self.start {
            StartLine::Request { method, uri } => {
                out.extend_from_slice(format!("{method} {uri} SIP/2.0\r\n").as_bytes())
            }
            StartLine::Response { code, reason } => {
                out.extend_from_slice(format!("SIP/2.0 {code} {reason}\r\n").as_bytes())
            }
        }
        for (n, v) in &self.headers {
            if n.eq_ignore_ascii_case("Content-Length") {
                continue;
            }
            out.extend_from_slice(n.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", self.body.len()).as_bytes());
        out.extend_from_slice(&self.body);
        out
    }
}

fn parse_start(line: &str) -> Result<StartLine, SipError> {
    if let Some(rest) = line.strip_prefix("SIP/2.0 ") {
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        let code: u16 = code.parse().map_err(|_| SipError::Malformed("bad status code"))?;
        if !(100..700).contains(&code) {
            return Err(SipError::Malformed("bad status code"));
        }
        return Ok(StartLine::Response {
            code,
            reason: reason.to_owned(),
        });
    }
    let mut parts = line.split(' ');
    let (Some(method), Some(uri), Some("SIP/2.0"), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SipError::Malformed("bad request line"));
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) || uri.is_empty() {
        return Err(SipError::Malformed("bad request line"));
    }
    Ok(StartLine::Request {
        method: method.to_owned(),
        uri: uri.to_owned(),
    })
}

/// A `;name=value` parameter of a header value (outside `<...>`).
pub fn param<'a>(value: &'a str, name: &str) -> Option<&'a str> {
    let after_uri = match value.rfind('>') {
        Some(i) => &value[i + 1..],
        None => value,
    };
    after_uri.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim().trim_matches('"'))
    })
}

/// The media type of a Content-Type value, lowercase, without parameters.
pub fn media_type(content_type: &str) -> String {
    content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase()
}

pub fn reason_phrase(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        200 => "OK",
        400 => "Bad Request",
        405 => "Method Not Allowed",
        415 => "Unsupported Media Type",
        420 => "Bad Extension",
        481 => "Call/Transaction Does Not Exist",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        500 => "Server Internal Error",
        503 => "Service Unavailable",
        513 => "Message Too Large",
        _ => "Unknown",
    }
}

/// One part of a multipart body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    /// The part's media type, lowercase, without parameters.
    pub content_type: String,
    pub body: Bytes,
}

/// Splits a `multipart/*` body (RFC 2046 5.1) by the boundary of its
/// Content-Type. Strict: the closing delimiter must be present.
pub fn multipart(content_type: &str, body: &[u8]) -> Result<Vec<Part>, SipError> {
    let with_head = format!("x{content_type}");
    let boundary = param(&with_head, "boundary")
        .filter(|b| !b.is_empty() && b.len() <= 70)
        .ok_or(SipError::Malformed("multipart without boundary"))?;
    let delim = format!("--{boundary}");
    let d = delim.as_bytes();
    // The first delimiter may start the body or follow a preamble.
    let mut pos = if body.starts_with(d) {
        0
    } else {
        find(body, format!("\r\n{delim}").as_bytes()).ok_or(SipError::Malformed("multipart boundary not found"))? + 2
    };
    let mut parts = Vec::new();
    loop {
        pos += d.len();
        let rest = &body[pos..];
        if rest.starts_with(b"--") {
            return if parts.is_empty() {
                Err(SipError::Malformed("multipart without parts"))
            } else {
                Ok(parts)
            };
        }
        // Transport padding, then CRLF.
        let line_end = find(rest, b"\r\n").ok_or(SipError::Malformed("multipart delimiter line"))?;
        if !rest[..line_end].iter().all(|b| *b == b' ' || *b == b'\t') {
            return Err(SipError::Malformed("multipart delimiter line"));
        }
        let part_start = pos + line_end + 2;
        let next = find(&body[part_start..], format!("\r\n{delim}").as_bytes())
            .ok_or(SipError::Malformed("multipart without closing delimiter"))?
            + part_start;
        let part = &body[part_start..next];
        let (head, content) = if part.starts_with(b"\r\n") {
            (&part[..0], &part[2..])
        } else {
            let i = find(part, b"\r\n\r\n").ok_or(SipError::Malformed("multipart part without headers end"))?;
            (&part[..i], &part[i + 4..])
        };
        let head = std::str::from_utf8(head).map_err(|_| SipError::Malformed("multipart headers not UTF-8"))?;
        let mut ct = String::from("text/plain");
        for line in head.split("\r\n").filter(|l| !l.is_empty()) {
            let (n, v) = line
                .split_once(':')
                .ok_or(SipError::Malformed("multipart header without colon"))?;
            if expand(n.trim()).eq_ignore_ascii_case("Content-Type") {
                ct = media_type(v);
            }
        }
        parts.push(Part {
            content_type: ct,
            body: Bytes::copy_from_slice(content),
        });
        pos = next + 2;
    }
}

/// Builds a `multipart/mixed` body; returns (Content-Type, body).
pub fn build_multipart(boundary: &str, parts: &[(&str, &[u8])]) -> (String, Vec<u8>) {
    let mut out = Vec::new();
    for (ct, body) in parts {
        out.extend_from_slice(format!("--{boundary}\r\nContent-Type: {ct}\r\n\r\n").as_bytes());
        out.extend_from_slice(body);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/mixed;boundary={boundary}"), out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:srs@10.0.0.1 SIP/2.0\r\n\
v: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK1\r\n\
f: <sip:src@10.0.0.2>;tag=a1\r\n\
t: <sip:srs@10.0.0.1>\r\n\
i: abc@10.0.0.2\r\n\
CSeq: 1 INVITE\r\n\
Subject: a\r\n  folded\r\n\
c: application/sdp\r\n\
l: 4\r\n\r\nv=0\n";

    #[test]
    fn parses_compact_forms_folding_and_body() {
        let (m, used) = Message::parse(INVITE.as_bytes(), true).unwrap();
        assert_eq!(used, INVITE.len());
        assert_eq!(m.method(), Some("INVITE"));
        assert_eq!(m.call_id(), Some("abc@10.0.0.2"));
        assert_eq!(m.cseq(), Some((1, "INVITE")));
        assert_eq!(m.tag("From"), Some("a1"));
        assert_eq!(m.tag("To"), None);
        assert_eq!(m.header("subject"), Some("a folded"));
        assert_eq!(m.header("Content-Type"), Some("application/sdp"));
        assert_eq!(&m.body[..], b"v=0\n");
    }

    #[test]
    fn stream_framing_waits_for_the_whole_body() {
        let short = &INVITE.as_bytes()[..INVITE.len() - 3];
        assert_eq!(Message::parse(short, true), Err(SipError::Incomplete));
        assert!(matches!(Message::parse(short, false), Err(SipError::Malformed(_))));
        let no_len = INVITE.replace("l: 4\r\n", "");
        assert!(matches!(
            Message::parse(no_len.as_bytes(), true),
            Err(SipError::Malformed(_))
        ));
        let (m, _) = Message::parse(no_len.as_bytes(), false).unwrap();
        assert_eq!(&m.body[..], b"v=0\n");
    }

    #[test]
    fn refuses_oversized_and_malformed() {
        let big = format!("{}{}", INVITE.replace("l: 4", "l: 70000"), "x".repeat(70_000));
        assert_eq!(Message::parse(big.as_bytes(), true), Err(SipError::TooLarge));
        let huge_head = format!("INVITE sip:a SIP/2.0\r\nX: {}", "y".repeat(70_000));
        assert_eq!(Message::parse(huge_head.as_bytes(), true), Err(SipError::TooLarge));
        for bad in [
            "INVITE sip:a SIP/3.0\r\n\r\n",
            "hello\r\n\r\n",
            "SIP/2.0 99 x\r\n\r\n",
            "INVITE sip:a SIP/2.0\r\nnocolon\r\n\r\n",
        ] {
            assert!(
                matches!(Message::parse(bad.as_bytes(), false), Err(SipError::Malformed(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_head_of_a_refused_message_still_addresses_a_response() {
        let cut = &INVITE.as_bytes()[..INVITE.len() - 2];
        let head = Message::parse_head_only(cut).unwrap();
        assert_eq!(
            (head.call_id(), head.cseq()),
            (Some("abc@10.0.0.2"), Some((1, "INVITE")))
        );
        assert!(head.body.is_empty() && head.header("Content-Length").is_none());
        assert_eq!(Message::parse_head_only(b"INVITE sip:a SIP/2.0\r\nVia: x"), None);
    }

    #[test]
    fn response_copies_dialog_headers_and_round_trips() {
        let (m, _) = Message::parse(INVITE.as_bytes(), true).unwrap();
        let r = m.response(
            200,
            Some("srs1"),
            &[("Contact", "<sip:srs@10.0.0.1>".into())],
            Some(("application/sdp", Bytes::from_static(b"v=0\r\n"))),
        );
        let wire = r.to_bytes();
        let (back, used) = Message::parse(&wire, true).unwrap();
        assert_eq!(used, wire.len());
        assert_eq!(
            back.start,
            StartLine::Response {
                code: 200,
                reason: "OK".into()
            }
        );
        assert_eq!(back.tag("To"), Some("srs1"));
        assert_eq!(back.header("Via"), m.header("Via"));
        assert_eq!(back.cseq(), Some((1, "INVITE")));
        assert_eq!(&back.body[..], b"v=0\r\n");
    }

    #[test]
    fn multipart_round_trip_and_strictness() {
        let (ct, body) = build_multipart(
            "b1",
            &[
                ("application/sdp", b"v=0\r\n"),
                ("application/rs-metadata+xml", b"<recording/>"),
            ],
        );
        let parts = multipart(&ct, &body).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].content_type, "application/sdp");
        assert_eq!(&parts[0].body[..], b"v=0\r\n");
        assert_eq!(parts[1].content_type, "application/rs-metadata+xml");
        assert_eq!(&parts[1].body[..], b"<recording/>");
        // A quoted boundary, a preamble and a part header in compact form.
        let body2 =
            b"preamble\r\n--x y\r\nc: application/sdp\r\nContent-Disposition: session\r\n\r\nv=0\r\n--x y--\r\n";
        let parts = multipart("multipart/mixed; boundary=\"x y\"", body2).unwrap();
        assert_eq!(parts[0].content_type, "application/sdp");
        assert_eq!(&parts[0].body[..], b"v=0");
        assert!(multipart("multipart/mixed", &body).is_err());
        assert!(multipart(&ct, &body[..body.len() - 8]).is_err());
        assert!(multipart("multipart/mixed;boundary=zz", &body).is_err());
    }
}
