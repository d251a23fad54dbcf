//! Speech recognition behind the [`SpeechRecognizer`] trait (issue 5 item 1).
//!
//! [`HttpAsr`] speaks the OpenAI-compatible `POST /v1/audio/transcriptions`
//! (multipart: `file`, `model`, `language`, `response_format`) that
//! faster-whisper servers, whisper.cpp's server, vLLM and NB-Whisper
//! deployments answer; `deploy/speech/server.py` is the local one
//! (docs/speech-server.md). One request carries one utterance of one channel
//! as an in-memory WAV (44-byte header + PCM16 mono).
//!
//! Around each request:
//! - a per-attempt **timeout** (connect to last byte of the answer);
//! - **retries** with exponential backoff and jitter on [`AsrError::Timeout`]
//!   and [`AsrError::Unavailable`] (connection errors, HTTP 408/429/5xx,
//!   honouring `Retry-After`), never on [`AsrError::Rejected`] (4xx: bad
//!   audio, wrong key, unsupported language) nor [`AsrError::Invalid`];
//! - bounded **concurrency** (a semaphore; a permit is held only while a
//!   request is in flight, not while backing off);
//! - a **circuit breaker**: after `breaker_failures` consecutive failed
//!   attempts (timeouts, unavailable, invalid answers) every call fails fast
//!   with [`AsrError::CircuitOpen`] for `breaker_cooldown`; then one trial
//!   request goes through (half-open): success closes the breaker, failure
//!   opens it for another cooldown. A 4xx answer proves the server alive and
//!   counts as success for the breaker.
//!
//! Answers are asked for as `verbose_json` (segments with times); a server
//! that refuses that format is asked for `json` from then on, and an answer
//! without segments becomes one segment spanning the utterance. Segment times
//! are clamped to the utterance and sorted.
//!
//! Transcripts are customer data: nothing here logs transcript text, server
//! answers or the API key; errors carry sizes, statuses and the server's own
//! error message (bounded), never the body.
//!
//! [`word_error_rate`] is the measure the tests and benchmarks use against
//! known scripts.

use async_trait::async_trait;
use bytes::Bytes;
use serde::Deserialize;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// One utterance of one channel: PCM16 little-endian mono at `sample_rate_hz`.
#[derive(Clone, PartialEq, Eq)]
pub struct Utterance {
    pub pcm16: Vec<u8>,
    pub sample_rate_hz: u32,
    /// ISO 639-1 (`en`, `no`, `nb`, `nn`); `None` lets the server decide.
    pub language: Option<String>,
}

impl Utterance {
    pub fn new(pcm16: Vec<u8>, sample_rate_hz: u32) -> Self {
        Self {
            pcm16,
            sample_rate_hz,
            language: None,
        }
    }

    pub fn with_language(mut self, language: impl Into<String>) -> Self {
        self.language = Some(language.into());
        self
    }

    /// Length in seconds (0 for a zero rate).
    pub fn duration_s(&self) -> f32 {
        if self.sample_rate_hz == 0 {
            return 0.0;
        }
        (self.pcm16.len() / 2) as f32 / self.sample_rate_hz as f32
    }

    /// The utterance as a WAV file: 44-byte header + the samples.
    pub fn to_wav(&self) -> Vec<u8> {
        wav_pcm16_mono(&self.pcm16, self.sample_rate_hz)
    }
}

impl fmt::Debug for Utterance {
    // Audio is customer data and large: sizes only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Utterance")
            .field("bytes", &self.pcm16.len())
            .field("sample_rate_hz", &self.sample_rate_hz)
            .field("language", &self.language)
            .finish()
    }
}

/// A canonical 44-byte-header WAV (RIFF, PCM format 1, mono, 16 bits).
pub fn wav_pcm16_mono(pcm16: &[u8], sample_rate_hz: u32) -> Vec<u8> {
    let data_len = u32::try_from(pcm16.len()).unwrap_or(u32::MAX - 36);
    let mut wav = Vec::with_capacity(44 + pcm16.len());
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data_len).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes()); // fmt chunk size
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&1u16.to_le_bytes()); // channels
    wav.extend_from_slice(&sample_rate_hz.to_le_bytes());
    wav.extend_from_slice(&(sample_rate_hz.saturating_mul(2)).to_le_bytes()); // byte rate
    wav.extend_from_slice(&2u16.to_le_bytes()); // block align
    wav.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&data_len.to_le_bytes());
    wav.extend_from_slice(pcm16);
    wav
}

/// What was said in one utterance.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Transcript {
    pub text: String,
    /// In order, times relative to the utterance's start, within its length.
    /// Never empty when `text` is not.
    pub segments: Vec<Segment>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Segment {
    pub start_s: f32,
    pub end_s: f32,
    pub text: String,
}

/// Why an utterance has no transcript. [`AsrError::is_transient`] tells the
/// transcriber whether to keep the call transcription-pending.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AsrError {
    /// Every attempt ran out of time.
    #[error("speech recognition timed out")]
    Timeout,
    /// The server could not be reached or kept failing (connection errors,
    /// HTTP 408/429/5xx).
    #[error("speech recognition unavailable: {0}")]
    Unavailable(String),
    /// The breaker is open after repeated failures: no request was sent.
    #[error("speech recognition circuit open, retry after {} ms", retry_after.as_millis())]
    CircuitOpen { retry_after: Duration },
    /// The request was refused (HTTP 4xx: bad audio, key, language) or the
    /// utterance is unusable: sending it again will not help.
    #[error("speech recognition rejected the request: {0}")]
    Rejected(String),
    /// The server answered something that is no transcription.
    #[error("speech recognition answer invalid: {0}")]
    Invalid(String),
}

impl AsrError {
    /// Whether the same utterance may be transcribed later (keep the call
    /// pending) rather than never. Only a rejection is final: an invalid
    /// answer is a server fault that an operator can fix.
    pub fn is_transient(&self) -> bool {
        !matches!(self, Self::Rejected(_))
    }
}

/// Turns one utterance into text.
#[async_trait]
pub trait SpeechRecognizer: Send + Sync + 'static {
    async fn transcribe(&self, u: &Utterance) -> Result<Transcript, AsrError>;
    /// What transcribes, for logs and the demo (never holds secrets).
    fn describe(&self) -> String;
}

// ------------------------------------------------------------------ config ---

/// Settings of an [`HttpAsr`].
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
    /// The defaults for a server at `url` serving `model`.
    pub fn new(url: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            model: model.into(),
            timeout: Duration::from_secs(30),
            retries: 2,
            backoff: Duration::from_millis(250),
            max_concurrency: 4,
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

/// `scheme://host:port` of a URL: no user info, path or query.
fn origin(url: &str) -> String {
    match reqwest::Url::parse(url.trim()) {
        Ok(u) => match (u.host_str(), u.port_or_known_default()) {
            (Some(host), Some(port)) => format!("{}://{host}:{port}", u.scheme()),
            _ => format!("{}://?", u.scheme()),
        },
        Err(_) => "(invalid url)".into(),
    }
}

// ----------------------------------------------------------------- breaker ---

/// The circuit breaker's state, for metrics and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    /// Requests go through; counting consecutive failures.
    Closed,
    /// Failing fast until the cooldown is over.
    Open,
    /// One trial request is in flight (or may go next).
    HalfOpen,
}

#[derive(Debug)]
enum Circuit {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen,
}

#[derive(Debug)]
struct Breaker {
    threshold: u32,
    cooldown: Duration,
    /// What a caller turned away while a trial runs is told to wait.
    trial_wait: Duration,
    circuit: Mutex<Circuit>,
}

/// Permission to send one request; a trial (half-open) resolves the breaker.
#[derive(Debug, PartialEq, Eq)]
enum Pass {
    Normal,
    Trial,
}

impl Breaker {
    fn new(threshold: u32, cooldown: Duration, trial_wait: Duration) -> Self {
        Self {
            threshold,
            cooldown,
            trial_wait,
            circuit: Mutex::new(Circuit::Closed { failures: 0 }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Circuit> {
        // No code panics while holding it; a poisoned lock still holds a valid state.
        self.circuit.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn state(&self) -> BreakerState {
        match *self.lock() {
            Circuit::Closed { .. } => BreakerState::Closed,
            Circuit::Open { until } if Instant::now() < until => BreakerState::Open,
            Circuit::Open { .. } | Circuit::HalfOpen => BreakerState::HalfOpen,
        }
    }

    /// Fails fast while open; the first caller after the cooldown is the trial.
    fn admit(&self) -> Result<Pass, AsrError> {
        let mut circuit = self.lock();
        match *circuit {
            Circuit::Closed { .. } => Ok(Pass::Normal),
            Circuit::Open { until } => {
                let now = Instant::now();
                if now < until {
                    Err(AsrError::CircuitOpen {
                        retry_after: until - now,
                    })
                } else {
                    *circuit = Circuit::HalfOpen;
                    tracing::info!("speech recognition circuit half-open, sending one trial request");
                    Ok(Pass::Trial)
                }
            }
            Circuit::HalfOpen => Err(AsrError::CircuitOpen {
                retry_after: self.trial_wait,
            }),
        }
    }

    fn success(&self, pass: &Pass) {
        let mut circuit = self.lock();
        if !matches!(*circuit, Circuit::Closed { failures: 0 }) {
            if matches!(*circuit, Circuit::Closed { .. }) || *pass == Pass::Normal {
                tracing::debug!("speech recognition failure count reset");
            } else {
                tracing::info!("speech recognition circuit closed");
            }
        }
        *circuit = Circuit::Closed { failures: 0 };
    }

    fn failure(&self, pass: &Pass) {
        let mut circuit = self.lock();
        match (&*circuit, pass) {
            (Circuit::HalfOpen, Pass::Trial) => {
                *circuit = Circuit::Open {
                    until: Instant::now() + self.cooldown,
                };
                tracing::warn!(
                    cooldown_ms = self.cooldown.as_millis() as u64,
                    "speech recognition trial failed, circuit open again"
                );
            }
            (Circuit::Closed { failures }, _) => {
                let failures = failures + 1;
                if failures >= self.threshold {
                    *circuit = Circuit::Open {
                        until: Instant::now() + self.cooldown,
                    };
                    tracing::warn!(
                        failures,
                        cooldown_ms = self.cooldown.as_millis() as u64,
                        "speech recognition circuit open"
                    );
                } else {
                    *circuit = Circuit::Closed { failures };
                }
            }
            // A request sent before the breaker opened: the breaker already knows.
            _ => {}
        }
    }

    /// A trial that ended without an outcome (its caller went away, e.g. an
    /// opt-out cancelled the request): the next caller may try.
    fn abandon(&self, pass: &Pass) {
        if *pass == Pass::Trial {
            let mut circuit = self.lock();
            if matches!(*circuit, Circuit::HalfOpen) {
                *circuit = Circuit::Open { until: Instant::now() };
            }
        }
    }
}

/// Resolves a pass exactly once, also when the future holding it is dropped.
struct PassGuard<'a> {
    breaker: &'a Breaker,
    pass: Option<Pass>,
}

impl PassGuard<'_> {
    fn success(mut self) {
        if let Some(pass) = self.pass.take() {
            self.breaker.success(&pass);
        }
    }

    fn failure(mut self) {
        if let Some(pass) = self.pass.take() {
            self.breaker.failure(&pass);
        }
    }
}

impl Drop for PassGuard<'_> {
    fn drop(&mut self) {
        if let Some(pass) = self.pass.take() {
            self.breaker.abandon(&pass);
        }
    }
}

// -------------------------------------------------------------------- http ---

/// Longest utterance sent (a VAD cuts far shorter ones): 10 minutes.
const MAX_UTTERANCE_S: f32 = 600.0;
/// Largest answer read; a transcription of 10 minutes is a few tens of KiB.
const MAX_ANSWER_BYTES: usize = 4 << 20;

/// A speech server speaking the OpenAI-compatible transcription API.
pub struct HttpAsr {
    config: AsrConfig,
    endpoint: String,
    client: reqwest::Client,
    permits: Semaphore,
    breaker: Breaker,
    /// Cleared once the server refuses `verbose_json`.
    verbose: AtomicBool,
    jitter: RandomState,
    jitter_counter: AtomicU64,
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
        let endpoint = config.endpoint();
        let parsed = reqwest::Url::parse(&endpoint)
            .map_err(|e| AsrError::Rejected(format!("speech server url {}: {e}", origin(&config.url))))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(AsrError::Rejected(format!(
                "speech server url scheme {:?} (http, https)",
                parsed.scheme()
            )));
        }
        if config.max_concurrency == 0 || config.breaker_failures == 0 || config.timeout.is_zero() {
            return Err(AsrError::Rejected(
                "max_concurrency, breaker_failures and timeout must be above zero".into(),
            ));
        }
        if config.model.trim().is_empty() {
            return Err(AsrError::Rejected("no speech model named".into()));
        }
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
            jitter: RandomState::new(),
            jitter_counter: AtomicU64::new(0),
            config,
        })
    }

    pub fn config(&self) -> &AsrConfig {
        &self.config
    }

    pub fn breaker_state(&self) -> BreakerState {
        self.breaker.state()
    }

    /// The delay before retry number `retry` (1-based): `backoff * 2^(retry-1)`
    /// capped at 64x, jittered down to half of it ("equal jitter"), at least
    /// the server's `Retry-After` (capped at 60 s).
    fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        let full = self
            .config
            .backoff
            .saturating_mul(1u32 << (retry.saturating_sub(1)).min(6));
        let mut h = self.jitter.build_hasher();
        h.write_u64(self.jitter_counter.fetch_add(1, Ordering::Relaxed));
        let fraction = (h.finish() >> 11) as f64 / (1u64 << 53) as f64; // [0, 1)
        let jittered = full.mul_f64(0.5 + 0.5 * fraction);
        jittered.max(retry_after.map_or(Duration::ZERO, |d| d.min(Duration::from_secs(60))))
    }

    fn check(&self, u: &Utterance) -> Result<(), AsrError> {
        if !(4000..=192_000).contains(&u.sample_rate_hz) {
            return Err(AsrError::Rejected(format!(
                "sample rate {} Hz (4000 to 192000)",
                u.sample_rate_hz
            )));
        }
        if u.pcm16.is_empty() || u.pcm16.len() % 2 != 0 {
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
        let mut response = request.send().await.map_err(transport_failure)?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport_failure)? {
            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(Failure::Fatal(AsrError::Invalid(format!(
                    "answer over {MAX_ANSWER_BYTES} bytes"
                ))));
            }
            body.extend_from_slice(&chunk);
        }
        let code = status.as_u16();
        if status.is_success() {
            return parse_answer(&body, u.duration_s()).map_err(|e| Failure::Fatal(AsrError::Invalid(e)));
        }
        let what = format!(
            "HTTP {code}{}",
            error_message(&body).map(|m| format!(": {m}")).unwrap_or_default()
        );
        if code == 408 || code == 429 || status.is_server_error() {
            return Err(Failure::Retry(AsrError::Unavailable(what), retry_after));
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
    async fn attempt(&self, wav: &Bytes, u: &Utterance) -> Result<Transcript, Failure> {
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
        let wav = Bytes::from(u.to_wav());
        let audio_ms = (u.duration_s() * 1000.0) as u64;
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            // Fail fast without queueing for a permit while the breaker is open.
            if self.breaker.state() == BreakerState::Open {
                self.breaker.admit()?;
            }
            let permit = self
                .permits
                .acquire()
                .await
                .map_err(|_| AsrError::Unavailable("speech client shut down".into()))?;
            let guard = PassGuard {
                breaker: &self.breaker,
                pass: Some(self.breaker.admit()?),
            };
            let sent = Instant::now();
            let result = self.attempt(&wav, u).await;
            drop(permit);
            opptak_telemetry::metrics().asr_request(request_outcome(&result), sent.elapsed());
            let elapsed_ms = started.elapsed().as_millis() as u64;
            let (error, retry_after) = match result {
                Ok(transcript) => {
                    guard.success();
                    tracing::debug!(model = %self.config.model, attempt, audio_ms, elapsed_ms, segments = transcript.segments.len(), "utterance transcribed");
                    return Ok(transcript);
                }
                Err(Failure::Retry(e, retry_after)) => {
                    guard.failure();
                    (e, retry_after)
                }
                Err(Failure::Fatal(e @ AsrError::Rejected(_))) => {
                    guard.success(); // the server is up and answering
                    tracing::warn!(model = %self.config.model, attempt, audio_ms, elapsed_ms, error = %e, "speech recognition refused the utterance");
                    return Err(e);
                }
                Err(Failure::Fatal(e)) => {
                    guard.failure();
                    tracing::warn!(model = %self.config.model, attempt, audio_ms, elapsed_ms, error = %e, "speech recognition failed");
                    return Err(e);
                }
                Err(Failure::Downgrade) => {
                    guard.failure();
                    return Err(AsrError::Invalid("response_format negotiation failed".into()));
                }
            };
            if attempt > self.config.retries {
                tracing::warn!(model = %self.config.model, attempt, audio_ms, elapsed_ms, error = %error, "speech recognition failed, giving up");
                return Err(error);
            }
            let delay = self.delay(attempt, retry_after);
            tracing::warn!(
                model = %self.config.model,
                attempt,
                audio_ms,
                elapsed_ms,
                error = %error,
                retry_in_ms = delay.as_millis() as u64,
                "speech recognition failed, retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }

    fn describe(&self) -> String {
        format!("speech model {} at {}", self.config.model, origin(&self.config.url))
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

fn transport_failure(e: reqwest::Error) -> Failure {
    let e = e.without_url();
    if e.is_timeout() {
        Failure::Retry(AsrError::Timeout, None)
    } else if e.is_connect() {
        Failure::Retry(
            AsrError::Unavailable(format!("cannot connect: {}", source_chain(&e))),
            None,
        )
    } else {
        Failure::Retry(AsrError::Unavailable(source_chain(&e)), None)
    }
}

/// The error and its causes, bounded ("error sending request: connection refused").
fn source_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    truncate(&text, 200)
}

/// The server's own error message (`{"error": {"message": ..}}`, `{"detail": ..}`
/// or `{"error": ".."}`), bounded; never the raw body.
fn error_message(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let message = value
        .pointer("/error/message")
        .or_else(|| value.get("detail"))
        .or_else(|| value.get("error"))
        .or_else(|| value.get("message"))?;
    message.as_str().map(|m| truncate(m, 200))
}

fn truncate(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
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

// --------------------------------------------------------------------- WER ---

/// Word error rate of `hypothesis` against `reference`: word-level
/// Levenshtein distance (substitutions + deletions + insertions) over the
/// reference's word count, after [`normalize_words`] on both. 0 for two
/// empty texts, 1 for a hypothesis against an empty reference.
pub fn word_error_rate(reference: &str, hypothesis: &str) -> f64 {
    let (errors, words) = word_errors(reference, hypothesis);
    if words == 0 {
        return if errors == 0 { 0.0 } else { 1.0 };
    }
    errors as f64 / words as f64
}

/// `(edit distance, reference words)`, to sum over a corpus.
pub fn word_errors(reference: &str, hypothesis: &str) -> (usize, usize) {
    let r = normalize_words(reference);
    let h = normalize_words(hypothesis);
    let mut row: Vec<usize> = (0..=h.len()).collect();
    for (i, rw) in r.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, hw) in h.iter().enumerate() {
            let substitution = diagonal + usize::from(rw != hw);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    (row[h.len()], r.len())
}

/// Lowercase words without punctuation, for comparing transcripts: hyphens
/// split words, apostrophes stay inside them (`don't`, then expanded as
/// Whisper's English normalizer does), e-mail addresses are spelled as spoken
/// (`tom.berg@example.com` → `tom dot berg at example dot com`), `%` is
/// `percent`, numbers in digits are spelled out in English (`400` → `four
/// hundred`, `2,000` → `two thousand`) except that a run of numerals with five
/// digits or more in all, or a leading zero, is read digit by digit (`412 34
/// 567` → `four one two three four five six seven`: phone and account
/// numbers), and a few British spellings become American (`centre` →
/// `center`), as Whisper writes them.
pub fn normalize_words(text: &str) -> Vec<String> {
    enum Tok {
        Digits(String),
        Amount(u64),
        Word(String),
    }
    let lower = text.to_lowercase().replace('\u{2019}', "'");
    // Spoken punctuation of addresses; acronyms ("a.i.") lose their dots.
    let chars: Vec<char> = lower.chars().collect();
    let mut spelled = String::with_capacity(lower.len() + 16);
    for (i, &c) in chars.iter().enumerate() {
        let before = i.checked_sub(1).and_then(|j| chars.get(j)).copied();
        let after = chars.get(i + 1).copied();
        let alnum = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
        match c {
            '@' => spelled.push_str(" at "),
            '%' => spelled.push_str(" percent "),
            '.' if alnum(before) && alnum(after) => {
                // "a.i." stays one word; "tom.berg" is "tom dot berg".
                let single = |c: Option<char>| c.is_none_or(|c| !c.is_alphanumeric());
                let acronym =
                    single(i.checked_sub(2).and_then(|j| chars.get(j)).copied()) && single(chars.get(i + 2).copied());
                if acronym {
                    continue;
                }
                spelled.push_str(" dot ");
            }
            c => spelled.push(c),
        }
    }
    let mut toks = Vec::new();
    for raw in spelled.split(|c: char| c.is_whitespace() || c == '-' || c == '/') {
        let core = raw.trim_matches(|c: char| !c.is_alphanumeric() && c != ',');
        let core = core.trim_matches(',');
        if !core.is_empty() && core.chars().all(|c| c.is_ascii_digit()) {
            toks.push(Tok::Digits(core.to_owned()));
            continue;
        }
        if !core.is_empty() && core.chars().all(|c| c.is_ascii_digit() || c == ',') {
            let plain: String = core.chars().filter(char::is_ascii_digit).collect();
            if let Ok(n) = plain.parse::<u64>() {
                toks.push(Tok::Amount(n));
                continue;
            }
        }
        let word: String = raw.chars().filter(|c| c.is_alphanumeric() || *c == '\'').collect();
        let word = word.trim_matches('\'');
        if !word.is_empty() {
            toks.push(Tok::Word(word.to_owned()));
        }
    }
    let mut words = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        match &toks[i] {
            Tok::Digits(_) => {
                let mut run = Vec::new();
                while let Some(Tok::Digits(d)) = toks.get(i) {
                    run.push(d.as_str());
                    i += 1;
                }
                let total: usize = run.iter().map(|d| d.len()).sum();
                if total >= 5 || run.iter().any(|d| d.len() > 1 && d.starts_with('0')) {
                    for d in run.iter().flat_map(|d| d.chars()) {
                        words.push(spell_number(u64::from(d as u8 - b'0')));
                    }
                } else {
                    for d in run {
                        if let Ok(n) = d.parse::<u64>() {
                            words.extend(spell_number(n).split(' ').map(str::to_string));
                        }
                    }
                }
                continue;
            }
            Tok::Amount(n) => words.extend(spell_number(*n).split(' ').map(str::to_string)),
            Tok::Word(w) => push_word(&mut words, w),
        }
        i += 1;
    }
    words
}

fn push_word(words: &mut Vec<String>, word: &str) {
    let word = match word {
        "centre" => "center",
        "centres" => "centers",
        "colour" => "color",
        "favour" => "favor",
        "favourite" => "favorite",
        "cheque" => "check",
        "cheques" => "checks",
        "organise" => "organize",
        "realise" => "realize",
        "programme" => "program",
        "okay" => "ok",
        w => w,
    };
    // Contractions as Whisper's English normalizer expands them.
    let expanded = match word {
        "it's" => "it is",
        "that's" => "that is",
        "there's" => "there is",
        "what's" => "what is",
        "i'm" => "i am",
        "you're" => "you are",
        "we're" => "we are",
        "they're" => "they are",
        "i'll" => "i will",
        "we'll" => "we will",
        "you'll" => "you will",
        "i've" => "i have",
        "we've" => "we have",
        "i'd" => "i would",
        "can't" => "cannot",
        "don't" => "do not",
        "doesn't" => "does not",
        "didn't" => "did not",
        "won't" => "will not",
        "isn't" => "is not",
        "aren't" => "are not",
        "let's" => "let us",
        w => w,
    };
    words.extend(expanded.split(' ').map(str::to_string));
}

fn spell_number(n: u64) -> String {
    const ONES: [&str; 20] = [
        "zero",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "thirteen",
        "fourteen",
        "fifteen",
        "sixteen",
        "seventeen",
        "eighteen",
        "nineteen",
    ];
    const TENS: [&str; 10] = [
        "", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
    ];
    fn below_thousand(n: u64, out: &mut Vec<String>) {
        let (h, rest) = (n / 100, n % 100);
        if h > 0 {
            out.push(ONES[h as usize].into());
            out.push("hundred".into());
        }
        if rest >= 20 {
            out.push(TENS[(rest / 10) as usize].into());
            if rest % 10 > 0 {
                out.push(ONES[(rest % 10) as usize].into());
            }
        } else if rest > 0 || h == 0 {
            out.push(ONES[rest as usize].into());
        }
    }
    if n >= 1_000_000_000_000 {
        // Account and card numbers: digit by digit, as they are read out.
        return n
            .to_string()
            .chars()
            .map(|c| ONES[(c as u8 - b'0') as usize])
            .collect::<Vec<_>>()
            .join(" ");
    }
    let mut out = Vec::new();
    let mut rest = n;
    for (scale, name) in [(1_000_000_000, "billion"), (1_000_000, "million"), (1_000, "thousand")] {
        if rest >= scale {
            below_thousand(rest / scale, &mut out);
            out.push(name.into());
            rest %= scale;
        }
    }
    if rest > 0 || out.is_empty() {
        below_thousand(rest, &mut out);
    }
    out.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wav_header_is_the_canonical_44_bytes() {
        let wav = wav_pcm16_mono(&[1, 0, 2, 0, 3, 0], 8000);
        assert_eq!(wav.len(), 44 + 6);
        assert_eq!(&wav[0..4], b"RIFF");
        assert_eq!(u32::from_le_bytes([wav[4], wav[5], wav[6], wav[7]]), 36 + 6);
        assert_eq!(&wav[8..16], b"WAVEfmt ");
        assert_eq!(u16::from_le_bytes([wav[20], wav[21]]), 1, "PCM");
        assert_eq!(u16::from_le_bytes([wav[22], wav[23]]), 1, "mono");
        assert_eq!(u32::from_le_bytes([wav[24], wav[25], wav[26], wav[27]]), 8000);
        assert_eq!(
            u32::from_le_bytes([wav[28], wav[29], wav[30], wav[31]]),
            16000,
            "byte rate"
        );
        assert_eq!(u16::from_le_bytes([wav[32], wav[33]]), 2, "block align");
        assert_eq!(u16::from_le_bytes([wav[34], wav[35]]), 16, "bits");
        assert_eq!(&wav[36..40], b"data");
        assert_eq!(u32::from_le_bytes([wav[40], wav[41], wav[42], wav[43]]), 6);
        assert_eq!(&wav[44..], &[1, 0, 2, 0, 3, 0]);
    }

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

    #[tokio::test(start_paused = true)]
    async fn breaker_opens_fails_fast_then_lets_one_trial_through() {
        let b = Breaker::new(3, Duration::from_secs(10), Duration::from_secs(1));
        for _ in 0..2 {
            let p = b.admit().expect("closed");
            b.failure(&p);
        }
        let p = b.admit().expect("still closed");
        b.success(&p);
        for _ in 0..3 {
            let p = b.admit().expect("closed");
            b.failure(&p);
        }
        assert_eq!(b.state(), BreakerState::Open);
        match b.admit() {
            Err(AsrError::CircuitOpen { retry_after }) => assert_eq!(retry_after, Duration::from_secs(10)),
            other => panic!("{other:?}"),
        }
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(
            matches!(b.admit(), Err(AsrError::CircuitOpen { retry_after }) if retry_after == Duration::from_secs(6))
        );
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(b.state(), BreakerState::HalfOpen);
        let trial = b.admit().expect("trial");
        assert_eq!(trial, Pass::Trial);
        assert!(
            matches!(b.admit(), Err(AsrError::CircuitOpen { retry_after }) if retry_after == Duration::from_secs(1)),
            "only one trial at a time"
        );
        b.failure(&trial);
        assert_eq!(b.state(), BreakerState::Open, "a failed trial opens it again");
        tokio::time::advance(Duration::from_secs(10)).await;
        let trial = b.admit().expect("trial");
        b.success(&trial);
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.admit().expect("closed"), Pass::Normal);
    }

    #[tokio::test(start_paused = true)]
    async fn an_abandoned_trial_lets_the_next_caller_try() {
        let b = Breaker::new(1, Duration::from_secs(5), Duration::from_secs(1));
        let p = b.admit().expect("closed");
        b.failure(&p);
        tokio::time::advance(Duration::from_secs(5)).await;
        {
            let _guard = PassGuard {
                breaker: &b,
                pass: Some(b.admit().expect("trial")),
            };
            assert!(b.admit().is_err());
        } // dropped: the request was cancelled
        assert_eq!(b.admit().expect("next trial"), Pass::Trial);
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

    #[test]
    fn word_error_rate_counts_edits_over_reference_words() {
        assert_eq!(word_error_rate("the cat sat", "the cat sat"), 0.0);
        assert_eq!(word_error_rate("The cat, sat!", "the cat sat"), 0.0);
        assert!((word_error_rate("the cat sat", "the bat sat") - 1.0 / 3.0).abs() < 1e-9);
        assert!((word_error_rate("the cat sat", "the cat") - 1.0 / 3.0).abs() < 1e-9);
        assert!((word_error_rate("the cat sat", "the cat sat down") - 1.0 / 3.0).abs() < 1e-9);
        assert_eq!(word_error_rate("a b", "c d e f"), 2.0);
        assert_eq!(word_error_rate("", ""), 0.0);
        assert_eq!(word_error_rate("", "x"), 1.0);
        assert_eq!(
            word_errors("Customer centre, good morning.", "Customer Center. Good morning."),
            (0, 4)
        );
        assert_eq!(
            word_errors("I don't want fund-saving", "i don't want fund saving"),
            (0, 6)
        );
    }

    #[test]
    fn numbers_are_compared_as_words() {
        assert_eq!(normalize_words("400 kroner"), ["four", "hundred", "kroner"]);
        assert_eq!(normalize_words("2,000 a month"), ["two", "thousand", "a", "month"]);
        assert_eq!(normalize_words("50,000."), ["fifty", "thousand"]);
        assert_eq!(normalize_words("at 9"), ["at", "nine"]);
        assert_eq!(
            normalize_words("1,234,567"),
            "one million two hundred thirty four thousand five hundred sixty seven"
                .split(' ')
                .collect::<Vec<_>>()
        );
        assert_eq!(normalize_words("0"), ["zero"]);
        // Phone and account numbers are said digit by digit.
        assert_eq!(
            word_error_rate("nine one two three four five six seven", "9-1-2-3-4-5-6-7."),
            0.0
        );
        assert_eq!(word_error_rate("nine eight seven six five", "98765"), 0.0);
        assert_eq!(word_error_rate("It is locked, I am out", "It's locked, I'm out"), 0.0);
        assert_eq!(
            word_error_rate("It is four one two, three four, five six seven.", "It's 412 34 567."),
            0.0
        );
        assert_eq!(word_error_rate("one two three", "123"), 0.0 + 2.0 / 3.0);
        assert_eq!(
            word_error_rate("john dot smith at example dot com", "John.Smith@example.com"),
            0.0
        );
        assert_eq!(
            word_error_rate("an AI takes notes, five percent", "An A.I. takes notes, 5%"),
            0.0
        );
        assert_eq!(
            word_error_rate("Fifty thousand kroner, and yes.", "50,000 kroner and yes"),
            0.0
        );
    }
}
