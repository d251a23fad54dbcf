//! [`ChatDrafts`]: drafts from an OpenAI-compatible chat-completions server,
//! asked for schema-constrained JSON at temperature 0. Transport failures go
//! round [`crate::retry`]; an answer that is no valid draft is shown to the
//! model with what is wrong with it, up to `max_invalid` times.

use super::schema::{check_answer, draft_schema, json_error};
use super::{truncate, DraftRequest, DraftWriter, LlmError};
use crate::http::{self, Transport, Unanswered};
use crate::retry::{self, Attempts, Backoff, Policy, Step};
use async_trait::async_trait;
use opptak_domain::summary::{self, Draft, Language, Taxonomy, PROMPT_VERSION};
use serde_json::{json, Value};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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

    pub(crate) fn endpoint(&self) -> String {
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

    /// `request` with the API key: `Authorization: Bearer`, or Azure's `api-key`.
    pub(crate) fn authorize(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.api_key {
            Some(key) if self.azure_api_version.is_some() => request.header("api-key", key.expose()),
            Some(key) => request.bearer_auth(key.expose()),
            None => request,
        }
    }

    /// Scheme, host and port only: no path, query or credentials.
    fn origin(&self) -> String {
        http::origin(&self.url)
    }

    /// `max_attempts` in all, `backoff * 2^(retry-1)` up to `max_backoff`; a
    /// server's `Retry-After` replaces the delay (still up to `max_backoff`).
    fn retry_policy(&self) -> Policy {
        Policy {
            backoff: Backoff::doubling(self.backoff, self.max_backoff),
            max_failures: self.max_attempts,
        }
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

impl From<Unanswered> for Failure {
    fn from(u: Unanswered) -> Self {
        match u {
            Unanswered::Transport(Transport::Timeout) => Failure::Retry(LlmError::Timeout, None),
            Unanswered::Transport(t) if t.is_transient() => Failure::Retry(LlmError::Unavailable(t.to_string()), None),
            Unanswered::Transport(t) => Failure::Fatal(LlmError::Rejected(t.to_string())),
            Unanswered::TooLarge => Failure::Fatal(LlmError::Invalid(format!(
                "answer over {} bytes",
                http::MAX_ANSWER_BYTES
            ))),
        }
    }
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
    async fn request(&self, messages: &[Value]) -> Result<String, Failure> {
        let body = json!({
            "model": self.config.model,
            "messages": messages,
            "temperature": 0,
            "max_tokens": self.config.max_tokens,
            "stream": false,
            "response_format": self.response_format(),
        });
        let request = self.config.authorize(self.client.post(&self.endpoint).json(&body));
        let answer = http::exchange(request).await?;
        let status = answer.status;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&answer.body);
            let what = format!("HTTP {}{}", status.as_u16(), error_message(&text));
            if self.format() == ResponseFormat::JsonSchema
                && status.as_u16() != 429
                && (text.contains("response_format") || text.contains("json_schema"))
            {
                return Err(Failure::Downgrade(what));
            }
            return Err(if http::is_transient_status(status) {
                Failure::Retry(LlmError::Unavailable(what), answer.retry_after)
            } else {
                Failure::Fatal(LlmError::Rejected(what))
            });
        }
        let completion: Value = serde_json::from_slice(&answer.body).map_err(|e| {
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

    /// The delay before transport retry number `retry` (1-based).
    #[cfg(test)]
    fn backoff(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        self.config.retry_policy().backoff.delay(retry, retry_after)
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
        let messages = vec![
            json!({"role": "system", "content": system}),
            json!({"role": "user", "content": prompt.user}),
        ];
        let now = Instant::now();
        let mut drafting = Drafting {
            drafts: self,
            language,
            messages,
            invalid: 0,
            attempt: 0,
            started: now,
            sent: now,
        };
        retry::run(self.config.retry_policy(), &mut drafting).await
    }

    fn describe(&self) -> String {
        format!(
            "chat model {} at {} (prompt {PROMPT_VERSION})",
            self.config.model,
            self.config.origin()
        )
    }
}

/// One draft on its way through the retries and corrections.
struct Drafting<'a> {
    drafts: &'a ChatDrafts,
    language: Language,
    /// System, user, then the last invalid answer and its correction.
    messages: Vec<Value>,
    /// Answers so far that were no valid draft.
    invalid: u32,
    /// The attempt under way (1-based), for logs.
    attempt: u32,
    started: Instant,
    /// When the attempt under way was sent.
    sent: Instant,
}

impl Drafting<'_> {
    fn draft(&self, answer: super::schema::Answer) -> Draft {
        Draft {
            summary: answer.summary,
            topics: answer.topics,
            customer_requests: answer.customer_requests,
            follow_ups: answer.follow_ups,
            language: self.language.as_str().to_string(),
            source: self.drafts.config.model.clone(),
            prompt_version: PROMPT_VERSION.to_string(),
        }
    }
}

impl Attempts for Drafting<'_> {
    type Output = Draft;
    type Error = LlmError;

    async fn attempt(&mut self, failures: u32) -> Step<Draft, LlmError> {
        let d = self.drafts;
        let model = &d.config.model;
        self.attempt = failures + self.invalid + 1;
        let attempt = self.attempt;
        self.sent = Instant::now();
        let outcome = match d.request(&self.messages).await {
            Err(Failure::Downgrade(what)) if !d.downgraded.swap(true, Ordering::Relaxed) => {
                tracing::info!(
                    %model,
                    error = %what,
                    "server refused a json_schema response_format; asking with json_object and the schema from now on"
                );
                return Step::Again;
            }
            Ok(content) => match check_answer(&d.taxonomy, &d.schema, &content) {
                Ok(answer) => {
                    opptak_telemetry::metrics().llm_request(
                        "model",
                        opptak_telemetry::RequestOutcome::Ok,
                        self.sent.elapsed(),
                    );
                    tracing::info!(
                        %model,
                        attempt,
                        elapsed_ms = self.started.elapsed().as_millis() as u64,
                        topics = ?answer.topics,
                        "draft written by language model"
                    );
                    return Step::Done(self.draft(answer));
                }
                Err(reason) => Failure::Invalid(reason, content),
            },
            Err(f) => f,
        };
        let elapsed_ms = self.sent.elapsed().as_millis() as u64;
        use opptak_telemetry::RequestOutcome as O;
        let observed = match &outcome {
            Failure::Downgrade(_) | Failure::Fatal(LlmError::Rejected(_)) => O::Rejected,
            Failure::Fatal(LlmError::Timeout) | Failure::Retry(LlmError::Timeout, _) => O::Timeout,
            Failure::Invalid(..) | Failure::Fatal(LlmError::Invalid(_)) => O::Invalid,
            Failure::Fatal(_) | Failure::Retry(..) => O::Error,
        };
        opptak_telemetry::metrics().llm_request("model", observed, self.sent.elapsed());
        match outcome {
            // Refused again after the downgrade: nothing else to try.
            Failure::Downgrade(what) | Failure::Fatal(LlmError::Rejected(what)) => {
                let e = LlmError::Rejected(what);
                tracing::warn!(%model, attempt, elapsed_ms, error = %e, "language model request refused");
                Step::Fail(e)
            }
            Failure::Fatal(e) => {
                tracing::warn!(%model, attempt, elapsed_ms, error = %e, "language model request refused");
                Step::Fail(e)
            }
            Failure::Retry(e, retry_after) => Step::Retry(e, retry_after),
            Failure::Invalid(reason, content) => {
                self.invalid += 1;
                if self.invalid >= d.config.max_invalid {
                    tracing::warn!(%model, attempt, elapsed_ms, reason = %reason, "language model answers invalid, giving up");
                    return Step::Fail(LlmError::Invalid(reason));
                }
                tracing::warn!(%model, attempt, elapsed_ms, reason = %reason, "language model answer invalid, retrying");
                // Show the model its answer and what is wrong with it: at
                // temperature 0 the same prompt would give the same answer.
                self.messages.truncate(2);
                self.messages
                    .push(json!({"role": "assistant", "content": truncate(&content, 4000)}));
                self.messages
                    .push(json!({"role": "user", "content": correction(self.language, &reason)}));
                Step::Again
            }
        }
    }

    fn retrying(&mut self, error: &LlmError, delay: Duration) {
        tracing::warn!(
            model = %self.drafts.config.model,
            attempt = self.attempt,
            elapsed_ms = self.sent.elapsed().as_millis() as u64,
            error = %error,
            retry_in_ms = delay.as_millis() as u64,
            "language model request failed, retrying"
        );
    }

    fn giving_up(&mut self, error: &LlmError, _failures: u32) {
        tracing::warn!(
            model = %self.drafts.config.model,
            attempt = self.attempt,
            elapsed_ms = self.sent.elapsed().as_millis() as u64,
            error = %error,
            "language model failed, giving up"
        );
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

/// `: message` from the server's error body ([`http::server_message`]),
/// bounded; empty when it has none.
fn error_message(body: &str) -> String {
    http::server_message(body.as_bytes())
        .map(|m| format!(": {}", truncate(&m, http::MESSAGE_CHARS)))
        .unwrap_or_default()
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
