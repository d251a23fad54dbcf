//! What the two HTTP clients (the speech client `asr::HttpAsr`, the chat
//! client `llm::ChatDrafts`) share around one request: sending it and reading the answer within a size
//! bound ([`exchange`]), the server's `Retry-After`, which statuses and
//! transport failures are worth retrying ([`is_transient_status`],
//! [`Transport`]), the server's own error message out of an error body
//! ([`server_message`]), and a URL's origin for logs ([`origin`]). The retry
//! loop itself is [`crate::retry`].
//!
//! Bodies are customer data (a transcription, a draft, an error that echoes
//! the request): nothing here returns a body in an error, only sizes,
//! statuses and the server's bounded message.

use std::fmt;
use std::time::Duration;

/// Largest answer read: a transcription of 10 minutes or a chat completion
/// of a few thousand tokens is a few tens of KiB.
pub(crate) const MAX_ANSWER_BYTES: usize = 4 << 20;

/// Longest server message or transport error kept, in characters.
pub(crate) const MESSAGE_CHARS: usize = 200;

/// A whole answer.
pub(crate) struct Answer {
    pub(crate) status: reqwest::StatusCode,
    /// `Retry-After` in seconds (an HTTP date is not honoured).
    pub(crate) retry_after: Option<Duration>,
    pub(crate) body: Vec<u8>,
}

/// Why there is no [`Answer`].
pub(crate) enum Unanswered {
    Transport(Transport),
    /// The body went past [`MAX_ANSWER_BYTES`]; the rest is not read.
    TooLarge,
}

/// Sends `request` and reads the answer, at most [`MAX_ANSWER_BYTES`].
pub(crate) async fn exchange(request: reqwest::RequestBuilder) -> Result<Answer, Unanswered> {
    let transport = |e| Unanswered::Transport(Transport::from(e));
    let mut response = request.send().await.map_err(transport)?;
    let status = response.status();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport)? {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(Unanswered::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Answer {
        status,
        retry_after,
        body,
    })
}

/// Whether the server says "not now" rather than "never": 408, 429, 5xx.
pub(crate) fn is_transient_status(status: reqwest::StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 429) || status.is_server_error()
}

/// A request that got no answer, classified. Its text is the error and its
/// causes, bounded, without the URL.
#[derive(Debug)]
pub(crate) enum Transport {
    /// The client's timeout fired.
    Timeout,
    /// No connection (refused, DNS, TLS).
    Connect(String),
    /// The request could not be built: sending it again will not help.
    Request(String),
    /// The connection broke mid-exchange.
    Broken(String),
}

impl Transport {
    /// Whether sending the same request again may work.
    pub(crate) fn is_transient(&self) -> bool {
        !matches!(self, Self::Request(_))
    }
}

impl From<reqwest::Error> for Transport {
    fn from(e: reqwest::Error) -> Self {
        let e = e.without_url();
        if e.is_timeout() {
            Self::Timeout
        } else if e.is_builder() {
            Self::Request(source_chain(&e))
        } else if e.is_connect() {
            Self::Connect(source_chain(&e))
        } else {
            Self::Broken(source_chain(&e))
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout => f.write_str("timed out"),
            Self::Connect(e) => write!(f, "cannot connect: {e}"),
            Self::Request(e) => write!(f, "bad request: {e}"),
            Self::Broken(e) => write!(f, "transport error: {e}"),
        }
    }
}

/// The error and its causes ("error sending request: connection refused").
fn source_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    ellipsize(&text, MESSAGE_CHARS)
}

/// The server's own message in an error body: OpenAI's `{"error": {"message":
/// ..}}` or `{"error": ".."}`, FastAPI's `{"detail": ..}` (a string or a
/// list of `{"msg": ..}`), or `{"message": ..}`; never the raw body. A
/// validation error (pydantic's) quotes the offending input after its
/// message: that part is cut off, since the input is the transcript. Not
/// bounded: each client bounds it in its own error style.
pub(crate) fn server_message(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let message = v["error"]["message"]
        .as_str()
        .or_else(|| v["error"].as_str())
        .or_else(|| v["detail"].as_str())
        .or_else(|| v["detail"][0]["msg"].as_str())
        .or_else(|| v["message"].as_str())?;
    let end = ["'input'", "\"input\"", "input="]
        .iter()
        .filter_map(|k| message.find(k))
        .min()
        .unwrap_or(message.len());
    Some(message[..end].trim_end_matches([' ', ',', '{', '\n']).to_string())
}

/// At most `max_chars` characters of `s`, with `…` where it was cut.
pub(crate) fn ellipsize(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// `scheme://host:port` of a URL: no user info, path or query.
pub(crate) fn origin(url: &str) -> String {
    match reqwest::Url::parse(url.trim()) {
        Ok(u) => match (u.host_str(), u.port_or_known_default()) {
            (Some(host), Some(port)) => format!("{}://{host}:{port}", u.scheme()),
            _ => format!("{}://?", u.scheme()),
        },
        Err(_) => "(invalid url)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_worth_retrying() {
        let transient = |code: u16| is_transient_status(reqwest::StatusCode::from_u16(code).expect("status"));
        for code in [408, 429, 500, 502, 503, 504] {
            assert!(transient(code), "{code}");
        }
        for code in [200, 301, 400, 401, 403, 404, 413, 422] {
            assert!(!transient(code), "{code}");
        }
    }

    #[test]
    fn server_messages_without_the_input() {
        let m = |body: &str| server_message(body.as_bytes());
        assert_eq!(
            m(r#"{"error": {"message": "bad audio"}}"#).as_deref(),
            Some("bad audio")
        );
        assert_eq!(m(r#"{"error": "slow down"}"#).as_deref(), Some("slow down"));
        assert_eq!(m(r#"{"detail": "Unsupported"}"#).as_deref(), Some("Unsupported"));
        assert_eq!(
            m(r#"{"detail": [{"msg": "Field required", "input": {"messages": "secret"}}]}"#).as_deref(),
            Some("Field required")
        );
        assert_eq!(m(r#"{"message": "x", "detail": 3}"#).as_deref(), Some("x"));
        assert_eq!(
            m(r#"{"error": {"message": "1 validation error: {'msg': 'bad', 'input': 'Jeg har mistet kortet'}"}}"#)
                .as_deref(),
            Some("1 validation error: {'msg': 'bad'")
        );
        assert_eq!(m("<html>secret transcript</html>"), None);
        assert_eq!(m(r#"{"error": {"code": 3}}"#), None);
    }

    #[test]
    fn bounds_and_origins() {
        assert_eq!(ellipsize("abc", 3), "abc");
        assert_eq!(ellipsize("abcd", 3), "abc…");
        assert_eq!(ellipsize("æøåæ", 2), "æø…");
        assert_eq!(origin("https://u:p@h.example/v1?key=x"), "https://h.example:443");
        assert_eq!(origin("http://127.0.0.1:1/x"), "http://127.0.0.1:1");
        assert_eq!(origin("not a url"), "(invalid url)");
    }
}
