//! Settings of the speech client, checked when it is built.

use super::AsrError;
use crate::http::origin;
use crate::retry::{Backoff, Policy, RetryAfter};
use std::fmt;
use std::time::Duration;

/// Settings of an [`HttpAsr`](super::HttpAsr).
#[derive(Clone)]
pub struct AsrConfig {
    /// The server: its root (`http://127.0.0.1:19100`; `/v1/audio/transcriptions`
    /// is appended), an API root ending in `/v1`, or the full endpoint.
    pub url: String,
    /// Sent as `model` (`tiny.en`, `Systran/faster-whisper-small`,
    /// `NbAiLab/nb-whisper-small`, `whisper-1`, ...).
    pub model: String,
    /// Per attempt, connection to last byte; waiting for a permit is not counted.
    pub timeout: Duration,
    /// Extra attempts after a timeout or an unavailable server.
    pub retries: u32,
    /// The first retry's delay; doubles each retry (jittered, capped at 64x).
    pub backoff: Duration,
    /// Requests in flight at once.
    pub max_concurrency: usize,
    /// Consecutive failed attempts that open the breaker (at least 1).
    pub breaker_failures: u32,
    /// How long an open breaker fails fast before one trial request.
    pub breaker_cooldown: Duration,
    /// `Authorization: Bearer`; never logged or printed.
    pub api_key: Option<String>,
}

impl AsrConfig {
    /// Requests at once unless configured otherwise.
    pub const DEFAULT_MAX_CONCURRENCY: usize = 4;

    /// The defaults for a server at `url` serving `model`.
    pub fn new(url: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            model: model.into(),
            timeout: Duration::from_secs(30),
            retries: 2,
            backoff: Duration::from_millis(250),
            max_concurrency: Self::DEFAULT_MAX_CONCURRENCY,
            breaker_failures: 5,
            breaker_cooldown: Duration::from_secs(15),
            api_key: None,
        }
    }

    fn endpoint(&self) -> String {
        let url = self.url.trim().trim_end_matches('/');
        if url.ends_with("/audio/transcriptions") {
            url.to_string()
        } else if url.ends_with("/v1") {
            format!("{url}/audio/transcriptions")
        } else {
            format!("{url}/v1/audio/transcriptions")
        }
    }

    /// The endpoint, if the settings make a usable client.
    pub(super) fn checked_endpoint(&self) -> Result<String, AsrError> {
        let endpoint = self.endpoint();
        let parsed = reqwest::Url::parse(&endpoint)
            .map_err(|e| AsrError::Rejected(format!("speech server url {}: {e}", origin(&self.url))))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(AsrError::Rejected(format!(
                "speech server url scheme {:?} (http, https)",
                parsed.scheme()
            )));
        }
        if self.max_concurrency == 0 || self.breaker_failures == 0 || self.timeout.is_zero() {
            return Err(AsrError::Rejected(
                "max_concurrency, breaker_failures and timeout must be above zero".into(),
            ));
        }
        if self.model.trim().is_empty() {
            return Err(AsrError::Rejected("no speech model named".into()));
        }
        Ok(endpoint)
    }

    /// `retries` after the first attempt, `backoff * 2^(retry-1)` capped at
    /// 64x, jittered down to half of it ("equal jitter"), at least the
    /// server's `Retry-After` (believed up to 60 s).
    pub(super) fn retry_policy(&self) -> Policy {
        Policy {
            backoff: Backoff {
                first: self.backoff,
                max: self.backoff.saturating_mul(64),
                jitter: true,
                retry_after: RetryAfter::AtLeast {
                    cap: Duration::from_secs(60),
                },
            },
            max_failures: self.retries.saturating_add(1),
        }
    }
}

impl fmt::Debug for AsrConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsrConfig")
            .field("url", &origin(&self.url))
            .field("model", &self.model)
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .field("backoff", &self.backoff)
            .field("max_concurrency", &self.max_concurrency)
            .field("breaker_failures", &self.breaker_failures)
            .field("breaker_cooldown", &self.breaker_cooldown)
            .field("api_key", &self.api_key.as_ref().map(|_| "*****"))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asr::{HttpAsr, SpeechRecognizer, Utterance};

    #[test]
    fn endpoints_for_each_kind_of_url() {
        let e = |url: &str| AsrConfig::new(url, "m").endpoint();
        assert_eq!(
            e("http://127.0.0.1:19100"),
            "http://127.0.0.1:19100/v1/audio/transcriptions"
        );
        assert_eq!(
            e("http://127.0.0.1:19100/"),
            "http://127.0.0.1:19100/v1/audio/transcriptions"
        );
        assert_eq!(
            e("https://asr.bank.internal/v1"),
            "https://asr.bank.internal/v1/audio/transcriptions"
        );
        assert_eq!(
            e("https://h/whisper/v1/audio/transcriptions"),
            "https://h/whisper/v1/audio/transcriptions"
        );
        assert_eq!(
            origin("https://user:pw@asr.bank.internal/v1?x=1"),
            "https://asr.bank.internal:443"
        );
    }

    #[test]
    fn keys_do_not_print() {
        let mut config = AsrConfig::new("http://u:secret-pw@127.0.0.1:1", "tiny.en");
        config.api_key = Some("sk-very-secret".into());
        let printed = format!("{config:?}");
        assert!(
            !printed.contains("sk-very-secret") && !printed.contains("secret-pw"),
            "{printed}"
        );
        assert!(printed.contains("*****"));
        let asr = HttpAsr::new(config).expect("client");
        assert!(!format!("{asr:?}{}", asr.describe()).contains("secret"));
        let u = Utterance::new(vec![0; 1000], 8000);
        assert!(!format!("{u:?}").contains("0, 0"), "audio is not printed");
    }

    #[test]
    fn config_is_checked() {
        let bad = |f: fn(&mut AsrConfig)| {
            let mut c = AsrConfig::new("http://127.0.0.1:1", "tiny.en");
            f(&mut c);
            matches!(HttpAsr::new(c), Err(AsrError::Rejected(_)))
        };
        assert!(bad(|c| c.url = "ftp://x".into()));
        assert!(bad(|c| c.url = "not a url".into()));
        assert!(bad(|c| c.max_concurrency = 0));
        assert!(bad(|c| c.breaker_failures = 0));
        assert!(bad(|c| c.timeout = Duration::ZERO));
        assert!(bad(|c| c.model = " ".into()));
        assert!(!bad(|_| {}));
    }
}
