//! Draft summaries behind the [`DraftWriter`] trait (R5, issue 5 item 5):
//!
//! - [`EmbeddedDrafts`]: no model, the extractive summarizer and phrase
//!   classifier of [`opptak_domain::summary`]; the default.
//! - [`ChatDrafts`]: any server speaking the OpenAI-compatible
//!   `POST /v1/chat/completions` (vLLM, Ollama, llama.cpp and
//!   llama-cpp-python servers, Azure OpenAI), asked for JSON constrained by
//!   the draft schema, at temperature 0. Transport failures (timeouts,
//!   connection errors, HTTP 408/429/5xx) are retried with exponential
//!   backoff; answers that fail the schema or name a topic outside the
//!   taxonomy are retried with a correction, then reported as
//!   [`LlmError::Invalid`].
//!
//! [`draft_writer`] picks the backend from a URL (`embedded://` or
//! `http(s)://...`).
//!
//! The transcript must already be PII-redacted (the pipeline asserts it);
//! this module never logs transcript text, model answers or the API key.

use async_trait::async_trait;
use opptak_domain::summary::{self, Draft, Language, Segment, Speaker, Taxonomy, PROMPT_VERSION};
use serde::Deserialize;
use serde_json::{json, Value};
use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A call's redacted transcript, to be drafted.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DraftRequest {
    /// The call's language (`nb`, `en`, `nb-NO`, ...); unknown or empty: guessed.
    pub language: String,
    /// `(speaker, start_s, text)`, speaker `agent` or `customer`.
    pub segments: Vec<(String, f32, String)>,
}

impl DraftRequest {
    fn to_segments(&self) -> Result<Vec<Segment>, LlmError> {
        self.segments
            .iter()
            .map(|(speaker, start_s, text)| {
                let speaker = Speaker::parse(speaker).ok_or_else(|| {
                    LlmError::Rejected(format!(
                        "unknown speaker {:?} (agent or customer)",
                        truncate(speaker, 20)
                    ))
                })?;
                Ok(Segment::new(speaker, *start_s, text.clone()))
            })
            .collect()
    }
}

/// Why no draft was written. [`LlmError::is_transient`] tells the caller
/// whether to keep the call pending and try again later.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LlmError {
    /// Every attempt ran out of time.
    #[error("language model timed out")]
    Timeout,
    /// The server could not be reached or kept failing (HTTP 5xx, 429).
    #[error("language model unavailable: {0}")]
    Unavailable(String),
    /// The model kept answering with something that is not a valid draft.
    #[error("language model answer invalid: {0}")]
    Invalid(String),
    /// The request itself was refused (HTTP 4xx, bad configuration, bad input):
    /// sending it again will not help.
    #[error("language model rejected the request: {0}")]
    Rejected(String),
}

impl LlmError {
    /// Whether the same request may succeed later (keep the call pending)
    /// rather than never (fall back to the embedded draft or dead-letter).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Timeout | Self::Unavailable(_))
    }
}

/// Writes a draft summary with topics for one call.
#[async_trait]
pub trait DraftWriter: Send + Sync + 'static {
    async fn draft(&self, req: &DraftRequest) -> Result<Draft, LlmError>;
    /// What writes the drafts, for logs and the demo (never holds secrets).
    fn describe(&self) -> String;
}

/// Picks the backend from a URL: `embedded://` (or empty) for
/// [`EmbeddedDrafts`], `http://` or `https://` for [`ChatDrafts`] with the
/// given model and [`ChatConfig`] defaults.
pub fn draft_writer(
    url: &str,
    model: &str,
    api_key: Option<ApiKey>,
    taxonomy: Arc<Taxonomy>,
) -> Result<Arc<dyn DraftWriter>, LlmError> {
    let url = url.trim();
    if url.is_empty() || url.starts_with("embedded:") {
        return Ok(Arc::new(EmbeddedDrafts::new(taxonomy)));
    }
    if url.starts_with("http://") || url.starts_with("https://") {
        let mut config = ChatConfig::new(url, model);
        config.api_key = api_key;
        return Ok(Arc::new(ChatDrafts::new(config, taxonomy)?));
    }
    Err(LlmError::Rejected(format!(
        "unsupported language model url scheme in {:?} (embedded://, http://, https://)",
        truncate(url.split("://").next().unwrap_or(url), 20)
    )))
}

// --------------------------------------------------------------- embedded ---

/// The default draft writer: no model, no network.
#[derive(Clone, Debug)]
pub struct EmbeddedDrafts {
    taxonomy: Arc<Taxonomy>,
}

impl EmbeddedDrafts {
    pub fn new(taxonomy: Arc<Taxonomy>) -> Self {
        Self { taxonomy }
    }
}

impl Default for EmbeddedDrafts {
    fn default() -> Self {
        Self::new(Arc::new(Taxonomy::default_taxonomy()))
    }
}

#[async_trait]
impl DraftWriter for EmbeddedDrafts {
    async fn draft(&self, req: &DraftRequest) -> Result<Draft, LlmError> {
        let started = Instant::now();
        let segments = req.to_segments();
        let outcome = match &segments {
            Ok(_) => opptak_telemetry::RequestOutcome::Ok,
            Err(_) => opptak_telemetry::RequestOutcome::Rejected,
        };
        let draft = segments.map(|s| summary::embedded_draft(&self.taxonomy, &req.language, &s));
        opptak_telemetry::metrics().llm_request("embedded", outcome, started.elapsed());
        draft
    }

    fn describe(&self) -> String {
        format!(
            "embedded ({}, taxonomy v{})",
            summary::EMBEDDED_SOURCE,
            self.taxonomy.version()
        )
    }
}

// ------------------------------------------------------------------- chat ---

/// An API key that never shows in `Debug` or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("*****")
    }
}

/// How the answer's JSON shape is enforced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseFormat {
    /// `{"type": "json_schema", "json_schema": {"name": "draft", "schema": ..,
    /// "strict": true}}`: OpenAI structured outputs, as Azure OpenAI, vLLM,
    /// Ollama and llama.cpp's own server take it. A server that refuses it
    /// with an error naming `response_format` (llama-cpp-python up to at
    /// least 0.3.36 does, with HTTP 500) is asked again, from then on, with
    /// [`ResponseFormat::JsonObjectSchema`].
    JsonSchema,
    /// `{"type": "json_object", "schema": ..}`: llama-cpp-python's (and
    /// Anyscale's) spelling of schema-constrained output.
    JsonObjectSchema,
    /// `{"type": "json_object"}` with the schema spelled out in the system
    /// prompt, for servers without schema-constrained decoding.
    JsonObject,
}

/// Settings of a [`ChatDrafts`].
#[derive(Clone, Debug)]
pub struct ChatConfig {
    /// The server: its root (`http://127.0.0.1:19200`, `/v1/chat/completions`
    /// is appended), an API root ending in `/v1`, or an Azure OpenAI
    /// deployment (`https://NAME.openai.azure.com/openai/deployments/DEPLOYMENT`).
    pub url: String,
    /// Sent as `model`; becomes [`Draft::source`].
    pub model: String,
    /// `Authorization: Bearer` (or Azure's `api-key` header).
    pub api_key: Option<ApiKey>,
    /// Azure OpenAI: the `api-version` query parameter; also switches the key
    /// to the `api-key` header.
    pub azure_api_version: Option<String>,
    /// Per HTTP request, connection to last byte.
    pub timeout: Duration,
    /// Attempts when the transport fails (timeout, connection, 408/429/5xx).
    pub max_attempts: u32,
    /// Attempts when the answer is not a valid draft.
    pub max_invalid: u32,
    /// Delay before the first transport retry; doubled each time.
    pub backoff: Duration,
    pub max_backoff: Duration,
    pub max_tokens: u32,
    pub response_format: ResponseFormat,
}

impl ChatConfig {
    pub fn new(url: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            model: model.into(),
            api_key: None,
            azure_api_version: None,
            timeout: Duration::from_secs(60),
            max_attempts: 3,
            max_invalid: 3,
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(10),
            max_tokens: 1024,
            response_format: ResponseFormat::JsonSchema,
        }
    }

    fn endpoint(&self) -> String {
        let base = self.url.trim_end_matches('/');
        let mut url = if base.ends_with("/v1") || base.contains("/openai/deployments/") {
            format!("{base}/chat/completions")
        } else {
            format!("{base}/v1/chat/completions")
        };
        if let Some(v) = &self.azure_api_version {
            url.push_str("?api-version=");
            url.push_str(v);
        }
        url
    }

    /// Scheme, host and port only: no path, query or credentials.
    fn origin(&self) -> String {
        let (scheme, rest) = self.url.split_once("://").unwrap_or(("http", &self.url));
        let host = rest.split(['/', '?', '#']).next().unwrap_or("");
        let host = host.rsplit('@').next().unwrap_or(host);
        format!("{scheme}://{host}")
    }
}

/// Drafts from a chat-completions server.
pub struct ChatDrafts {
    config: ChatConfig,
    endpoint: String,
    client: reqwest::Client,
    taxonomy: Arc<Taxonomy>,
    schema: Value,
    /// Set once the server refused `json_schema`: use `JsonObjectSchema`.
    downgraded: AtomicBool,
}

impl fmt::Debug for ChatDrafts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatDrafts")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The four fields a model answers with (the rest of a [`Draft`] is ours).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Answer {
    summary: String,
    topics: Vec<String>,
    customer_requests: Vec<String>,
    follow_ups: Vec<String>,
}

enum Failure {
    /// The server does not take `json_schema`: ask again as `json_object`
    /// with a schema.
    Downgrade(String),
    /// Try again after a backoff (transport problems).
    Retry(LlmError, Option<Duration>),
    /// Try again with a correction (the answer was no valid draft).
    Invalid(String, String),
    /// Give up.
    Fatal(LlmError),
}

impl ChatDrafts {
    pub fn new(config: ChatConfig, taxonomy: Arc<Taxonomy>) -> Result<Self, LlmError> {
        if config.max_attempts == 0 || config.max_invalid == 0 {
            return Err(LlmError::Rejected(
                "max_attempts and max_invalid must be at least 1".into(),
            ));
        }
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| LlmError::Rejected(format!("http client: {e}")))?;
        let schema = draft_schema(&taxonomy)?;
        Ok(Self {
            endpoint: config.endpoint(),
            config,
            client,
            taxonomy,
            schema,
            downgraded: AtomicBool::new(false),
        })
    }

    fn format(&self) -> ResponseFormat {
        match self.config.response_format {
            ResponseFormat::JsonSchema if self.downgraded.load(Ordering::Relaxed) => ResponseFormat::JsonObjectSchema,
            f => f,
        }
    }

    fn response_format(&self) -> Value {
        match self.format() {
            ResponseFormat::JsonSchema => json!({
                "type": "json_schema",
                "json_schema": {"name": "draft", "schema": self.schema, "strict": true},
            }),
            ResponseFormat::JsonObjectSchema => json!({"type": "json_object", "schema": self.schema}),
            ResponseFormat::JsonObject => json!({"type": "json_object"}),
        }
    }

    /// One HTTP round trip; the answer's `content` on success.
    async fn attempt(&self, messages: &[Value]) -> Result<String, Failure> {
        let body = json!({
            "model": self.config.model,
            "messages": messages,
            "temperature": 0,
            "max_tokens": self.config.max_tokens,
            "stream": false,
            "response_format": self.response_format(),
        });
        let mut request = self.client.post(&self.endpoint).json(&body);
        if let Some(key) = &self.config.api_key {
            request = if self.config.azure_api_version.is_some() {
                request.header("api-key", key.expose())
            } else {
                request.bearer_auth(key.expose())
            };
        }
        let response = request.send().await.map_err(transport_failure)?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = response.text().await.map_err(transport_failure)?;
        if !status.is_success() {
            let what = format!("HTTP {}{}", status.as_u16(), error_message(&text));
            if self.format() == ResponseFormat::JsonSchema
                && status.as_u16() != 429
                && (text.contains("response_format") || text.contains("json_schema"))
            {
                return Err(Failure::Downgrade(what));
            }
            return Err(
                if status.as_u16() == 408 || status.as_u16() == 429 || status.is_server_error() {
                    Failure::Retry(LlmError::Unavailable(what), retry_after)
                } else {
                    Failure::Fatal(LlmError::Rejected(what))
                },
            );
        }
        let completion: Value = serde_json::from_str(&text).map_err(|e| {
            Failure::Retry(
                LlmError::Unavailable(format!("response is not JSON ({})", json_error(&e))),
                None,
            )
        })?;
        let choice = &completion["choices"][0];
        let message = &choice["message"];
        if let Some(refusal) = message.get("refusal").filter(|r| !r.is_null()) {
            let _ = refusal; // its text may quote the transcript
            return Err(Failure::Fatal(LlmError::Rejected("the model refused".into())));
        }
        let Some(content) = message["content"].as_str() else {
            return Err(Failure::Retry(
                LlmError::Unavailable("response holds no choices[0].message.content".into()),
                None,
            ));
        };
        if choice["finish_reason"].as_str() == Some("length") {
            return Err(Failure::Invalid(
                format!("answer cut off at max_tokens ({})", self.config.max_tokens),
                content.to_string(),
            ));
        }
        Ok(content.to_string())
    }

    fn backoff(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .config
            .backoff
            .saturating_mul(1u32 << (retry.saturating_sub(1)).min(16));
        retry_after.unwrap_or(exp).min(self.config.max_backoff)
    }
}

#[async_trait]
impl DraftWriter for ChatDrafts {
    async fn draft(&self, req: &DraftRequest) -> Result<Draft, LlmError> {
        let segments = req.to_segments()?;
        let language = Language::resolve(&req.language, &segments);
        let prompt = summary::prompt(&self.taxonomy, language, &segments);
        let mut system = prompt.system;
        if self.config.response_format == ResponseFormat::JsonObject {
            system.push_str("\n\nJSON schema:\n");
            system.push_str(&self.taxonomy.draft_schema());
        }
        let mut messages = vec![
            json!({"role": "system", "content": system}),
            json!({"role": "user", "content": prompt.user}),
        ];
        let (mut failures, mut invalid) = (0u32, 0u32);
        let started = Instant::now();
        loop {
            let attempt = failures + invalid + 1;
            let t = Instant::now();
            let outcome = match self.attempt(&messages).await {
                Err(Failure::Downgrade(what)) if !self.downgraded.swap(true, Ordering::Relaxed) => {
                    tracing::info!(
                        model = %self.config.model,
                        error = %what,
                        "server refused a json_schema response_format; asking with json_object and the schema from now on"
                    );
                    continue;
                }
                Ok(content) => match check_answer(&self.taxonomy, &self.schema, &content) {
                    Ok(answer) => {
                        opptak_telemetry::metrics().llm_request(
                            "model",
                            opptak_telemetry::RequestOutcome::Ok,
                            t.elapsed(),
                        );
                        tracing::info!(
                            model = %self.config.model,
                            attempt,
                            elapsed_ms = started.elapsed().as_millis() as u64,
                            topics = ?answer.topics,
                            "draft written by language model"
                        );
                        return Ok(Draft {
                            summary: answer.summary,
                            topics: answer.topics,
                            customer_requests: answer.customer_requests,
                            follow_ups: answer.follow_ups,
                            language: language.as_str().to_string(),
                            source: self.config.model.clone(),
                            prompt_version: PROMPT_VERSION.to_string(),
                        });
                    }
                    Err(reason) => Failure::Invalid(reason, content),
                },
                Err(f) => f,
            };
            let elapsed_ms = t.elapsed().as_millis() as u64;
            use opptak_telemetry::RequestOutcome as O;
            let observed = match &outcome {
                Failure::Downgrade(_) | Failure::Fatal(LlmError::Rejected(_)) => O::Rejected,
                Failure::Fatal(LlmError::Timeout) | Failure::Retry(LlmError::Timeout, _) => O::Timeout,
                Failure::Invalid(..) | Failure::Fatal(LlmError::Invalid(_)) => O::Invalid,
                Failure::Fatal(_) | Failure::Retry(..) => O::Error,
            };
            opptak_telemetry::metrics().llm_request("model", observed, t.elapsed());
            match outcome {
                // Refused again after the downgrade: nothing else to try.
                Failure::Downgrade(what) | Failure::Fatal(LlmError::Rejected(what)) => {
                    let e = LlmError::Rejected(what);
                    tracing::warn!(model = %self.config.model, attempt, elapsed_ms, error = %e, "language model request refused");
                    return Err(e);
                }
                Failure::Fatal(e) => {
                    tracing::warn!(model = %self.config.model, attempt, elapsed_ms, error = %e, "language model request refused");
                    return Err(e);
                }
                Failure::Retry(e, retry_after) => {
                    failures += 1;
                    if failures >= self.config.max_attempts {
                        tracing::warn!(model = %self.config.model, attempt, elapsed_ms, error = %e, "language model failed, giving up");
                        return Err(e);
                    }
                    let delay = self.backoff(failures, retry_after);
                    tracing::warn!(
                        model = %self.config.model,
                        attempt,
                        elapsed_ms,
                        error = %e,
                        retry_in_ms = delay.as_millis() as u64,
                        "language model request failed, retrying"
                    );
                    tokio::time::sleep(delay).await;
                }
                Failure::Invalid(reason, content) => {
                    invalid += 1;
                    if invalid >= self.config.max_invalid {
                        tracing::warn!(model = %self.config.model, attempt, elapsed_ms, reason = %reason, "language model answers invalid, giving up");
                        return Err(LlmError::Invalid(reason));
                    }
                    tracing::warn!(model = %self.config.model, attempt, elapsed_ms, reason = %reason, "language model answer invalid, retrying");
                    // Show the model its answer and what is wrong with it: at
                    // temperature 0 the same prompt would give the same answer.
                    messages.truncate(2);
                    messages.push(json!({"role": "assistant", "content": truncate(&content, 4000)}));
                    messages.push(json!({"role": "user", "content": correction(language, &reason)}));
                }
            }
        }
    }

    fn describe(&self) -> String {
        format!(
            "chat model {} at {} (prompt {PROMPT_VERSION})",
            self.config.model,
            self.config.origin()
        )
    }
}

fn correction(language: Language, reason: &str) -> String {
    match language {
        Language::Nb => format!(
            "Svaret var ikke gyldig: {reason}. Svar på nytt med bare JSON-objektet, med alle fire feltene og bare emne-id-er fra listen."
        ),
        Language::En => format!(
            "That answer was not valid: {reason}. Answer again with the JSON object only, with all four fields and only topic ids from the list."
        ),
    }
}

fn transport_failure(e: reqwest::Error) -> Failure {
    if e.is_timeout() {
        Failure::Retry(LlmError::Timeout, None)
    } else if e.is_builder() {
        Failure::Fatal(LlmError::Rejected(format!("bad request: {}", e.without_url())))
    } else {
        let kind = if e.is_connect() {
            "cannot connect"
        } else {
            "transport error"
        };
        Failure::Retry(LlmError::Unavailable(format!("{kind}: {}", e.without_url())), None)
    }
}

/// `: message` from an OpenAI-style (`error.message`) or FastAPI-style
/// (`detail`) error body, bounded; never the whole body, which may echo the
/// request (and so the transcript).
fn error_message(body: &str) -> String {
    let Ok(v) = serde_json::from_str::<Value>(body) else {
        return String::new();
    };
    let msg = v["error"]["message"]
        .as_str()
        .or_else(|| v["error"].as_str())
        .or_else(|| v["detail"].as_str())
        .or_else(|| v["detail"][0]["msg"].as_str())
        .or_else(|| v["message"].as_str());
    // Validation errors (pydantic's among them) quote the offending input
    // after the message: keep what comes before.
    let cut = |m: &str| -> String {
        let end = ["'input'", "\"input\"", "input="]
            .iter()
            .filter_map(|k| m.find(k))
            .min()
            .unwrap_or(m.len());
        truncate(m[..end].trim_end_matches([' ', ',', '{', '\n']), 200)
    };
    msg.map(|m| format!(": {}", cut(m))).unwrap_or_default()
}

fn json_error(e: &serde_json::Error) -> String {
    // serde_json's own messages may quote the offending value; position only.
    let what = match e.classify() {
        serde_json::error::Category::Io => "io error",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "unexpected data",
        serde_json::error::Category::Eof => "ends early",
    };
    format!("{what} at line {} column {}", e.line(), e.column())
}

fn truncate(s: &str, max_chars: usize) -> String {
    s.chars().take(max_chars).collect()
}

// ------------------------------------------------------------- validation ---

/// The draft schema of `taxonomy` as JSON ([`Taxonomy::draft_schema`]).
pub fn draft_schema(taxonomy: &Taxonomy) -> Result<Value, LlmError> {
    serde_json::from_str(&taxonomy.draft_schema())
        .map_err(|e| LlmError::Rejected(format!("the draft schema is not JSON ({})", json_error(&e))))
}

/// Parses and checks a model's answer: JSON (a Markdown code fence around it
/// is tolerated), valid against `schema`, topics from `taxonomy` (duplicates
/// dropped). The reason names the place, never the offending text.
fn check_answer(taxonomy: &Taxonomy, schema: &Value, content: &str) -> Result<Answer, String> {
    let text = escape_raw_controls(strip_fence(content));
    let value: Value = serde_json::from_str(&text).map_err(|e| format!("not JSON ({})", json_error(&e)))?;
    validate_json(schema, &value)?;
    let mut answer: Answer = serde_json::from_value(value).map_err(|e| format!("not a draft ({})", json_error(&e)))?;
    let mut seen = std::collections::HashSet::new();
    answer.topics.retain(|t| seen.insert(t.clone()));
    taxonomy.check_topics(&answer.topics).map_err(|e| e.to_string())?;
    answer.summary = answer.summary.trim().to_string();
    if answer.summary.is_empty() {
        return Err("summary is empty".into());
    }
    for list in [&mut answer.customer_requests, &mut answer.follow_ups] {
        list.iter_mut().for_each(|s| *s = s.trim().to_string());
        list.retain(|s| !s.is_empty());
    }
    Ok(answer)
}

/// Escapes raw control characters inside JSON strings. llama.cpp's JSON
/// grammars let a model put a bare newline in a string, which JSON forbids;
/// the text is fine, so it is repaired rather than refused. Valid JSON comes
/// out unchanged.
fn escape_raw_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| c < ' ') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    let (mut in_string, mut escaped) = (false, false);
    for c in text.chars() {
        if in_string && !escaped && c < ' ' {
            match c {
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c => out.push_str(&format!("\\u{:04x}", c as u32)),
            }
            continue;
        }
        if in_string && !escaped && c == '\\' {
            escaped = true;
        } else {
            if !escaped && c == '"' {
                in_string = !in_string;
            }
            escaped = false;
        }
        out.push(c);
    }
    Cow::Owned(out)
}

fn strip_fence(content: &str) -> &str {
    let t = content.trim();
    let Some(rest) = t.strip_prefix("```") else {
        return t;
    };
    let rest = rest.strip_prefix("json").unwrap_or(rest);
    rest.strip_suffix("```").unwrap_or(rest).trim()
}

/// Checks `value` against the subset of JSON Schema the draft schema uses:
/// `type`, `properties`, `required`, `additionalProperties: false`, `items`,
/// `enum`, `minItems`, `maxItems`, `minLength`, `maxLength`. The error names
/// the JSON pointer and the rule, not the value (model text may quote the
/// transcript).
pub fn validate_json(schema: &Value, value: &Value) -> Result<(), String> {
    validate_at(schema, value, "")
}

fn validate_at(schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    let here = if at.is_empty() { "/" } else { at };
    if let Some(ty) = schema["type"].as_str() {
        let ok = match ty {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            "null" => value.is_null(),
            _ => return Err(format!("schema at {here}: unsupported type {ty:?}")),
        };
        if !ok {
            return Err(format!("at {here}: expected {ty}"));
        }
    }
    if let Some(options) = schema["enum"].as_array() {
        if !options.contains(value) {
            return Err(format!("at {here}: not one of the allowed values"));
        }
    }
    if let Some(s) = value.as_str() {
        let n = s.chars().count() as u64;
        if schema["minLength"].as_u64().is_some_and(|min| n < min) {
            return Err(format!("at {here}: shorter than minLength {}", schema["minLength"]));
        }
        if schema["maxLength"].as_u64().is_some_and(|max| n > max) {
            return Err(format!("at {here}: longer than maxLength {}", schema["maxLength"]));
        }
    }
    if let Some(items) = value.as_array() {
        let n = items.len() as u64;
        if schema["minItems"].as_u64().is_some_and(|min| n < min) {
            return Err(format!("at {here}: fewer than minItems {}", schema["minItems"]));
        }
        if schema["maxItems"].as_u64().is_some_and(|max| n > max) {
            return Err(format!("at {here}: more than maxItems {}", schema["maxItems"]));
        }
        if let Some(item_schema) = schema.get("items") {
            for (i, item) in items.iter().enumerate() {
                validate_at(item_schema, item, &format!("{at}/{i}"))?;
            }
        }
    }
    if let Some(obj) = value.as_object() {
        if let Some(required) = schema["required"].as_array() {
            for name in required.iter().filter_map(Value::as_str) {
                if !obj.contains_key(name) {
                    return Err(format!("at {here}: missing required field {name:?}"));
                }
            }
        }
        let props = schema["properties"].as_object();
        for (name, v) in obj {
            match props.and_then(|p| p.get(name)) {
                Some(s) => validate_at(s, v, &format!("{at}/{name}"))?,
                None if schema["additionalProperties"] == Value::Bool(false) => {
                    return Err(format!("at {here}: unexpected field {:?}", truncate(name, 40)));
                }
                None => {}
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_for_each_kind_of_server() {
        let e = |url: &str| ChatConfig::new(url, "m").endpoint();
        assert_eq!(
            e("http://127.0.0.1:19200"),
            "http://127.0.0.1:19200/v1/chat/completions"
        );
        assert_eq!(
            e("http://localhost:11434/"),
            "http://localhost:11434/v1/chat/completions"
        );
        assert_eq!(e("http://vllm:8000/v1"), "http://vllm:8000/v1/chat/completions");
        let mut azure = ChatConfig::new(
            "https://r.openai.azure.com/openai/deployments/gpt-4o-mini",
            "gpt-4o-mini",
        );
        azure.azure_api_version = Some("2024-10-21".into());
        assert_eq!(
            azure.endpoint(),
            "https://r.openai.azure.com/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21"
        );
        assert_eq!(ChatConfig::new("https://u:p@h:1/x?y", "m").origin(), "https://h:1");
    }

    #[test]
    fn the_schema_validator_names_the_place_not_the_value() {
        let t = Taxonomy::default_taxonomy();
        let schema = draft_schema(&t).unwrap_or_else(|e| panic!("{e}"));
        let ok = json!({"summary": "s", "topics": ["cards"], "customer_requests": [], "follow_ups": ["x"]});
        assert_eq!(validate_json(&schema, &ok), Ok(()));
        let cases = [
            (
                json!({"summary": "s", "topics": ["secret-ish"], "customer_requests": [], "follow_ups": []}),
                "at /topics/0: not one of the allowed values",
            ),
            (
                json!({"summary": "s", "topics": [], "customer_requests": [], "follow_ups": []}),
                "at /topics: fewer than minItems 1",
            ),
            (
                json!({"summary": "s", "topics": ["cards"], "customer_requests": []}),
                "at /: missing required field \"follow_ups\"",
            ),
            (
                json!({"summary": 1, "topics": ["cards"], "customer_requests": [], "follow_ups": []}),
                "at /summary: expected string",
            ),
            (
                json!({"summary": "s", "topics": ["cards"], "customer_requests": [], "follow_ups": [], "x": 1}),
                "at /: unexpected field \"x\"",
            ),
            (
                json!({"summary": "s", "topics": ["cards", "pension", "insurance", "other"], "customer_requests": [], "follow_ups": []}),
                "at /topics: more than maxItems 3",
            ),
            (json!([]), "at /: expected object"),
        ];
        for (value, want) in cases {
            assert_eq!(validate_json(&schema, &value), Err(want.to_string()));
        }
    }

    #[test]
    fn answers_are_checked_and_tidied() {
        let t = Taxonomy::default_taxonomy();
        let schema = draft_schema(&t).unwrap_or_else(|e| panic!("{e}"));
        let fenced = "```json\n{\"summary\": \" S. \", \"topics\": [\"cards\", \"cards\"], \"customer_requests\": [\"\", \"a\"], \"follow_ups\": []}\n```";
        let a = check_answer(&t, &schema, fenced).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (a.summary.as_str(), a.topics, a.customer_requests),
            ("S.", vec!["cards".to_string()], vec!["a".to_string()])
        );
        let bad = check_answer(&t, &schema, "{\"summary\": \"my fnr is 123\"").unwrap_err();
        assert!(bad.starts_with("not JSON (ends early at line 1"), "{bad}");
        assert!(!bad.contains("123"));
        let blank = check_answer(
            &t,
            &schema,
            r#"{"summary": " ", "topics": ["other"], "customer_requests": [], "follow_ups": []}"#,
        );
        assert_eq!(blank.unwrap_err(), "summary is empty");
    }

    #[test]
    fn raw_newlines_inside_strings_are_repaired() {
        let raw = "{\"summary\": \"line one\nline\ttwo \\\"q\\\"\",\n \"x\": 1}";
        let fixed = escape_raw_controls(raw);
        let v: Value = serde_json::from_str(&fixed).unwrap_or_else(|e| panic!("{e}: {fixed}"));
        assert_eq!(v["summary"], "line one\nline\ttwo \"q\"");
        let valid = r#"{"a": "b\nc"}"#;
        assert!(matches!(escape_raw_controls(valid), Cow::Borrowed(_)));
    }

    #[test]
    fn errors_from_servers_are_bounded_and_never_the_body() {
        assert_eq!(
            error_message(r#"{"error": {"message": "model not found"}}"#),
            ": model not found"
        );
        assert_eq!(
            error_message(r#"{"detail": [{"msg": "Field required", "input": {"messages": "secret"}}]}"#),
            ": Field required"
        );
        assert_eq!(error_message("<html>secret</html>"), "");
        let pydantic = r#"{"error": {"message": "1 validation error:\n  {'type': 'literal_error', 'msg': 'bad', 'input': 'Jeg har mistet kortet'}"}}"#;
        assert_eq!(
            error_message(pydantic),
            ": 1 validation error:\n  {'type': 'literal_error', 'msg': 'bad'"
        );
        assert_eq!(
            error_message(&format!(r#"{{"error": "{}"}}"#, "x".repeat(500))).len(),
            202
        );
    }

    #[test]
    fn keys_do_not_print() {
        let mut c = ChatConfig::new("http://h:1", "m");
        c.api_key = Some(ApiKey::new("sk-very-secret"));
        assert!(!format!("{c:?}").contains("sk-very-secret"));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_honours_retry_after() {
        let mut c = ChatConfig::new("http://h:1", "m");
        c.backoff = Duration::from_millis(100);
        c.max_backoff = Duration::from_millis(350);
        let d = ChatDrafts::new(c, Arc::new(Taxonomy::default_taxonomy())).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(d.backoff(1, None), Duration::from_millis(100));
        assert_eq!(d.backoff(2, None), Duration::from_millis(200));
        assert_eq!(d.backoff(3, None), Duration::from_millis(350));
        assert_eq!(d.backoff(1, Some(Duration::from_secs(1))), Duration::from_millis(350));
        assert_eq!(d.backoff(1, Some(Duration::from_millis(0))), Duration::ZERO);
    }
}
