//! [`HttpAsr`]: one utterance per request to an OpenAI-compatible
//! transcription endpoint, within a timeout, a concurrency bound and the
//! circuit breaker; transient failures go round [`crate::retry`].

use super::breaker::{Breaker, BreakerState};
use super::{AsrConfig, AsrError, Segment, SpeechRecognizer, Transcript, Utterance};
use crate::http::{self, Transport, Unanswered};
use crate::retry::{self, Attempts, Policy, Step};
use async_trait::async_trait;
use bytes::Bytes;
use serde::Deserialize;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// Longest utterance sent (a VAD cuts far shorter ones): 10 minutes.
const MAX_UTTERANCE_S: f32 = 600.0;

/// A speech server speaking the OpenAI-compatible transcription API.
pub struct HttpAsr {
    config: AsrConfig,
    endpoint: String,
    client: reqwest::Client,
    permits: Semaphore,
    breaker: Breaker,
    /// Cleared once the server refuses `verbose_json`.
    verbose: AtomicBool,
    retry: Policy,
}

impl fmt::Debug for HttpAsr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpAsr")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// What one HTTP round trip came to.
enum Failure {
    /// Retry after a backoff (at least the server's `Retry-After`).
    Retry(AsrError, Option<Duration>),
    /// The server refused `verbose_json`: ask again for `json`.
    Downgrade,
    /// Give up; counts as a breaker failure unless it is a rejection.
    Fatal(AsrError),
}

impl From<Unanswered> for Failure {
    fn from(u: Unanswered) -> Self {
        match u {
            Unanswered::Transport(Transport::Timeout) => Failure::Retry(AsrError::Timeout, None),
            Unanswered::Transport(t) if t.is_transient() => Failure::Retry(AsrError::Unavailable(t.to_string()), None),
            Unanswered::Transport(t) => Failure::Fatal(AsrError::Rejected(t.to_string())),
            Unanswered::TooLarge => Failure::Fatal(AsrError::Invalid(format!(
                "answer over {} bytes",
                http::MAX_ANSWER_BYTES
            ))),
        }
    }
}

#[derive(Deserialize)]
struct Answer {
    text: Option<String>,
    segments: Option<Vec<AnswerSegment>>,
}

#[derive(Deserialize)]
struct AnswerSegment {
    start: f64,
    end: f64,
    text: String,
}

impl HttpAsr {
    pub fn new(config: AsrConfig) -> Result<Self, AsrError> {
        let endpoint = config.checked_endpoint()?;
        let client = reqwest::Client::builder()
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            .pool_max_idle_per_host(config.max_concurrency)
            .build()
            .map_err(|e| AsrError::Rejected(format!("http client: {e}")))?;
        Ok(Self {
            endpoint,
            client,
            permits: Semaphore::new(config.max_concurrency),
            breaker: Breaker::new(
                config.breaker_failures,
                config.breaker_cooldown,
                config.breaker_cooldown.min(config.timeout),
            ),
            verbose: AtomicBool::new(true),
            retry: config.retry_policy(),
            config,
        })
    }

    pub fn config(&self) -> &AsrConfig {
        &self.config
    }

    pub fn breaker_state(&self) -> BreakerState {
        self.breaker.state()
    }

    /// The delay before retry number `retry` (1-based).
    #[cfg(test)]
    fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        self.retry.backoff.delay(retry, retry_after)
    }

    fn check(&self, u: &Utterance) -> Result<(), AsrError> {
        if !(4000..=192_000).contains(&u.sample_rate_hz) {
            return Err(AsrError::Rejected(format!(
                "sample rate {} Hz (4000 to 192000)",
                u.sample_rate_hz
            )));
        }
        if u.pcm16.is_empty() || !u.pcm16.len().is_multiple_of(2) {
            return Err(AsrError::Rejected(format!(
                "{} bytes of audio is no PCM16 utterance",
                u.pcm16.len()
            )));
        }
        if u.duration_s() > MAX_UTTERANCE_S {
            return Err(AsrError::Rejected(format!(
                "utterance of {:.0} s (at most {MAX_UTTERANCE_S} s)",
                u.duration_s()
            )));
        }
        Ok(())
    }

    /// One HTTP round trip.
    async fn send(&self, wav: &Bytes, u: &Utterance, verbose: bool) -> Result<Transcript, Failure> {
        let file = reqwest::multipart::Part::stream_with_length(reqwest::Body::from(wav.clone()), wav.len() as u64)
            .file_name("utterance.wav")
            .mime_str("audio/wav")
            .map_err(|e| Failure::Fatal(AsrError::Rejected(format!("multipart: {e}"))))?;
        let mut form = reqwest::multipart::Form::new()
            .part("file", file)
            .text("model", self.config.model.clone())
            .text("response_format", if verbose { "verbose_json" } else { "json" });
        if let Some(language) = u.language.as_deref().map(str::trim).filter(|l| !l.is_empty()) {
            form = form.text("language", language.to_string());
        }
        let mut request = self.client.post(&self.endpoint).multipart(form);
        if let Some(key) = &self.config.api_key {
            request = request.bearer_auth(key);
        }
        let answer = http::exchange(request).await?;
        let (status, code) = (answer.status, answer.status.as_u16());
        if status.is_success() {
            return parse_answer(&answer.body, u.duration_s()).map_err(|e| Failure::Fatal(AsrError::Invalid(e)));
        }
        let what = format!(
            "HTTP {code}{}",
            error_message(&answer.body)
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        );
        if http::is_transient_status(status) {
            return Err(Failure::Retry(AsrError::Unavailable(what), answer.retry_after));
        }
        if status.is_client_error() {
            let lower = what.to_ascii_lowercase();
            if verbose && (lower.contains("response_format") || lower.contains("verbose_json")) {
                return Err(Failure::Downgrade);
            }
            return Err(Failure::Fatal(AsrError::Rejected(what)));
        }
        Err(Failure::Fatal(AsrError::Invalid(format!("unexpected HTTP {code}"))))
    }

    /// One attempt: a request (two if the server first refuses
    /// `verbose_json`) within the timeout.
    async fn round_trips(&self, wav: &Bytes, u: &Utterance) -> Result<Transcript, Failure> {
        let round_trips = async {
            let verbose = self.verbose.load(Ordering::Relaxed);
            match self.send(wav, u, verbose).await {
                Err(Failure::Downgrade) => {
                    if self.verbose.swap(false, Ordering::Relaxed) {
                        tracing::info!(model = %self.config.model, "speech server refuses verbose_json, asking for json (no segment times)");
                    }
                    match self.send(wav, u, false).await {
                        Err(Failure::Downgrade) => {
                            Err(Failure::Fatal(AsrError::Rejected("response_format refused".into())))
                        }
                        other => other,
                    }
                }
                other => other,
            }
        };
        match tokio::time::timeout(self.config.timeout, round_trips).await {
            Ok(result) => result,
            Err(_) => Err(Failure::Retry(AsrError::Timeout, None)),
        }
    }
}

#[async_trait]
impl SpeechRecognizer for HttpAsr {
    async fn transcribe(&self, u: &Utterance) -> Result<Transcript, AsrError> {
        self.check(u)?;
        let mut request = Request {
            asr: self,
            u,
            wav: Bytes::from(u.to_wav()),
            audio_ms: (u.duration_s() * 1000.0) as u64,
            started: Instant::now(),
            attempt: 0,
        };
        retry::run(self.retry, &mut request).await
    }

    fn describe(&self) -> String {
        format!(
            "speech model {} at {}",
            self.config.model,
            http::origin(&self.config.url)
        )
    }

    fn max_concurrency(&self) -> Option<usize> {
        Some(self.config.max_concurrency)
    }
}

/// One utterance on its way through the retries.
struct Request<'a> {
    asr: &'a HttpAsr,
    u: &'a Utterance,
    wav: Bytes,
    audio_ms: u64,
    started: Instant,
    /// The attempt under way (1-based), for logs.
    attempt: u32,
}

impl Request<'_> {
    fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
}

impl Attempts for Request<'_> {
    type Output = Transcript;
    type Error = AsrError;

    async fn attempt(&mut self, failures: u32) -> Step<Transcript, AsrError> {
        let asr = self.asr;
        self.attempt = failures + 1;
        // Fail fast without queueing for a permit while the breaker is open.
        if let Some(e) = asr.breaker.open_error() {
            return Step::Fail(e);
        }
        // A live utterance's wait was counted in the live queue already.
        let waiting = (!crate::live_queue::waited_in_slot()).then(|| opptak_telemetry::metrics().asr_waiting());
        let Ok(permit) = asr.permits.acquire().await else {
            return Step::Fail(AsrError::Unavailable("speech client shut down".into()));
        };
        drop(waiting);
        let guard = match asr.breaker.pass() {
            Ok(guard) => guard,
            Err(e) => return Step::Fail(e),
        };
        let sent = Instant::now();
        let result = asr.round_trips(&self.wav, self.u).await;
        drop(permit);
        opptak_telemetry::metrics().asr_request(request_outcome(&result), sent.elapsed());
        let (model, attempt, audio_ms, elapsed_ms) =
            (&asr.config.model, self.attempt, self.audio_ms, self.elapsed_ms());
        match result {
            Ok(transcript) => {
                guard.success();
                tracing::debug!(%model, attempt, audio_ms, elapsed_ms, segments = transcript.segments.len(), "utterance transcribed");
                Step::Done(transcript)
            }
            Err(Failure::Retry(e, retry_after)) => {
                guard.failure();
                Step::Retry(e, retry_after)
            }
            Err(Failure::Fatal(e)) if !e.is_transient() => {
                guard.success(); // the server is up and answering
                tracing::warn!(%model, attempt, audio_ms, elapsed_ms, error = %e, "speech recognition refused the utterance");
                Step::Fail(e)
            }
            Err(Failure::Fatal(e)) => {
                guard.failure();
                tracing::warn!(%model, attempt, audio_ms, elapsed_ms, error = %e, "speech recognition failed");
                Step::Fail(e)
            }
            Err(Failure::Downgrade) => {
                guard.failure();
                Step::Fail(AsrError::Invalid("response_format negotiation failed".into()))
            }
        }
    }

    fn retrying(&mut self, error: &AsrError, delay: Duration) {
        tracing::warn!(
            model = %self.asr.config.model,
            attempt = self.attempt,
            audio_ms = self.audio_ms,
            elapsed_ms = self.elapsed_ms(),
            error = %error,
            retry_in_ms = delay.as_millis() as u64,
            "speech recognition failed, retrying"
        );
    }

    fn giving_up(&mut self, error: &AsrError, _failures: u32) {
        tracing::warn!(
            model = %self.asr.config.model,
            attempt = self.attempt,
            audio_ms = self.audio_ms,
            elapsed_ms = self.elapsed_ms(),
            error = %error,
            "speech recognition failed, giving up"
        );
    }
}

/// How one attempt ended, for `opptak_asr_request_seconds`.
fn request_outcome(result: &Result<Transcript, Failure>) -> opptak_telemetry::RequestOutcome {
    use opptak_telemetry::RequestOutcome as O;
    match result {
        Ok(_) => O::Ok,
        Err(Failure::Retry(AsrError::Timeout, _)) => O::Timeout,
        Err(Failure::Fatal(AsrError::Rejected(_)) | Failure::Downgrade) => O::Rejected,
        Err(Failure::Fatal(AsrError::Invalid(_))) => O::Invalid,
        Err(_) => O::Error,
    }
}

/// The server's own error message, bounded; never the raw body.
fn error_message(body: &[u8]) -> Option<String> {
    http::server_message(body).map(|m| http::ellipsize(&m, http::MESSAGE_CHARS))
}

/// An answer (`json` or `verbose_json`) as a [`Transcript`] for an utterance
/// of `duration_s`. Errors describe the shape, never the content.
fn parse_answer(body: &[u8], duration_s: f32) -> Result<Transcript, String> {
    let answer: Answer = serde_json::from_slice(body).map_err(|e| {
        format!(
            "{} bytes that are no transcription JSON ({:?} at line {} column {})",
            body.len(),
            e.classify(),
            e.line(),
            e.column()
        )
    })?;
    let Some(text) = answer.text else {
        return Err("answer without a text field".into());
    };
    let duration = f64::from(duration_s);
    let mut segments = Vec::new();
    for (i, s) in answer.segments.unwrap_or_default().into_iter().enumerate() {
        if !s.start.is_finite() || !s.end.is_finite() || s.end < s.start || s.start < -1.0 || s.start > duration + 30.0
        {
            return Err(format!("segment {i} has impossible times"));
        }
        let seg_text = s.text.trim();
        if seg_text.is_empty() {
            continue;
        }
        // Whisper's times come in 20 ms steps and can run past the end.
        let start = s.start.clamp(0.0, duration);
        let end = s.end.clamp(start, duration);
        segments.push(Segment {
            start_s: start as f32,
            end_s: end as f32,
            text: seg_text.to_string(),
        });
    }
    segments.sort_by(|a, b| a.start_s.total_cmp(&b.start_s));
    let mut text = text.trim().to_string();
    if text.is_empty() && !segments.is_empty() {
        text = segments.iter().map(|s| s.text.as_str()).collect::<Vec<_>>().join(" ");
    }
    if segments.is_empty() && !text.is_empty() {
        // `json` has no times: the text lies somewhere in the utterance.
        segments.push(Segment {
            start_s: 0.0,
            end_s: duration_s,
            text: text.clone(),
        });
    }
    Ok(Transcript { text, segments })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap_and_honours_retry_after() {
        let mut c = AsrConfig::new("http://127.0.0.1:1", "m");
        c.backoff = Duration::from_millis(100);
        let asr = HttpAsr::new(c).expect("client");
        for retry in 1..=10u32 {
            let full = Duration::from_millis(100 * (1u64 << (retry - 1).min(6)));
            for _ in 0..50 {
                let d = asr.delay(retry, None);
                assert!(
                    d >= full / 2 && d <= full,
                    "retry {retry}: {d:?} outside [{:?}, {full:?}]",
                    full / 2
                );
            }
        }
        let spread: std::collections::HashSet<_> = (0..20).map(|_| asr.delay(3, None)).collect();
        assert!(spread.len() > 10, "jitter spreads retries");
        assert_eq!(asr.delay(1, Some(Duration::from_secs(3))), Duration::from_secs(3));
        assert_eq!(asr.delay(1, Some(Duration::from_secs(3600))), Duration::from_secs(60));
    }

    #[test]
    fn answers_become_ordered_clamped_segments() {
        let body = br#"{"text":" Hello there. General. ","segments":[
            {"start":1.2,"end":4.0,"text":" General. "},
            {"start":0.0,"end":1.2,"text":"Hello there."},
            {"start":4.0,"end":4.0,"text":"  "}]}"#;
        let t = parse_answer(body, 3.9).expect("valid");
        assert_eq!(t.text, "Hello there. General.");
        assert_eq!(t.segments.len(), 2);
        assert_eq!((t.segments[0].start_s, t.segments[0].end_s), (0.0, 1.2));
        assert_eq!((t.segments[1].start_s, t.segments[1].end_s), (1.2, 3.9));
        let t = parse_answer(br#"{"text":"just text"}"#, 2.5).expect("json");
        assert_eq!(
            t.segments,
            vec![Segment {
                start_s: 0.0,
                end_s: 2.5,
                text: "just text".into()
            }]
        );
        let t = parse_answer(br#"{"text":"","segments":[]}"#, 2.5).expect("silence");
        assert_eq!(t, Transcript::default());
        for bad in [
            &b"<html>502</html>"[..],
            br#"{"segments":[]}"#,
            br#"{"text":"x","segments":[{"start":2,"end":1,"text":"x"}]}"#,
        ] {
            let e = parse_answer(bad, 2.0).expect_err("invalid");
            assert!(!e.contains("html") && !e.contains("502"), "no body in errors: {e}");
        }
    }

    #[test]
    fn server_errors_are_bounded_messages_never_bodies() {
        assert_eq!(
            error_message(br#"{"error":{"message":"bad audio","type":"x"}}"#).as_deref(),
            Some("bad audio")
        );
        assert_eq!(
            error_message(br#"{"detail":"Unsupported"}"#).as_deref(),
            Some("Unsupported")
        );
        assert_eq!(error_message(b"<html>secret transcript</html>"), None);
        assert_eq!(
            error_message(format!(r#"{{"error":"{}"}}"#, "x".repeat(500)).as_bytes()).map(|m| m.chars().count()),
            Some(201)
        );
    }
}
