//! Screening of every draft for discriminatory or unforeseen content (R6,
//! issue 16 section 6), independent of the random QA sample:
//!
//! 1. the lexicon ([`opptak_domain::screening::Lexicon`],
//!    `crates/opptak-domain/screening/lexicon.toml`) over the draft's
//!    summary, customer requests and follow-ups;
//! 2. the language model as a second opinion ([`ChatScreen`]): one yes/no
//!    question about the draft's text, answered as JSON constrained by a
//!    schema (`{"flagged": bool}`), the prompt versioned by
//!    [`SCREEN_PROMPT_VERSION`]. A model that cannot answer (down, timed
//!    out, invalid answer) changes nothing: the lexicon's result stands, and
//!    the [`Verdict::Unavailable`] is recorded with the screening.
//!
//! A hit on either sends the call to the QA queue (`opptak-review`'s
//! `qa.rs`). Only redacted text goes to the model: the draft was written
//! from redacted text, and is redacted again before it leaves.

use crate::http::{self, Unanswered};
use crate::llm::{ChatConfig, ResponseFormat};
use opptak_domain::redact::redact;
use opptak_domain::screening::{Lexicon, LexiconHit};
use opptak_domain::summary::Draft;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The version of the screening question; recorded with every opinion.
pub const SCREEN_PROMPT_VERSION: &str = "screen-v1";

const SCREEN_SYSTEM: &str = "You check summaries of a bank's customer calls before an advisor approves them. \
A summary must only record the customer's business with the bank. Answer flagged = true if the summary \
mentions or judges the customer's ethnicity, origin, religion, gender, age, disability, sexual orientation, \
health, or political views, contains a slur or an insult, judges the customer's character, or holds anything \
else a bank's call summary should never contain. Otherwise answer flagged = false. The summary may be in \
Norwegian or English. Answer only with the JSON object.";

/// What the language model said about a draft.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// No model asked: none configured (the embedded drafter), or the
    /// draft's redaction was incomplete (nothing leaves then).
    Off,
    Clear,
    Flagged,
    /// Asked, but no usable answer: the lexicon's result stands.
    Unavailable,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Clear => "clear",
            Self::Flagged => "flagged",
            Self::Unavailable => "unavailable",
        }
    }
}

/// The model's second opinion on one draft.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelOpinion {
    pub verdict: Verdict,
    /// The model asked (empty when [`Verdict::Off`]).
    pub model: String,
    /// [`SCREEN_PROMPT_VERSION`] when asked.
    pub prompt_version: String,
    /// Why [`Verdict::Unavailable`] or [`Verdict::Off`] (no content).
    pub detail: String,
}

impl ModelOpinion {
    pub fn off(why: &str) -> Self {
        Self {
            verdict: Verdict::Off,
            model: String::new(),
            prompt_version: String::new(),
            detail: why.to_owned(),
        }
    }
}

/// The screening of one draft.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Screening {
    /// The lexicon's version.
    pub lexicon_version: u32,
    /// Lexicon terms found, sorted.
    pub lexicon: Vec<LexiconHit>,
    pub model: ModelOpinion,
}

impl Screening {
    /// Whether the call goes to the QA queue.
    pub fn flagged(&self) -> bool {
        !self.lexicon.is_empty() || self.model.verdict == Verdict::Flagged
    }

    /// The reasons QA sees: `screening: lexicon term X (category)`, `screening: language model`.
    pub fn reasons(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .lexicon
            .iter()
            .map(|h| format!("screening: lexicon term {} ({})", h.term, h.category))
            .collect();
        if self.model.verdict == Verdict::Flagged {
            out.push(format!(
                "screening: language model ({}, {})",
                self.model.model, self.model.prompt_version
            ));
        }
        out
    }
}

/// The draft's text that is screened: summary, customer requests, follow-ups.
pub fn draft_text(d: &Draft) -> String {
    let mut parts = vec![d.summary.as_str()];
    parts.extend(d.customer_requests.iter().map(String::as_str));
    parts.extend(d.follow_ups.iter().map(String::as_str));
    parts.join("\n")
}

/// The lexicon and, when configured, the model.
pub struct Screener {
    lexicon: Lexicon,
    model: Option<ChatScreen>,
}

impl Default for Screener {
    fn default() -> Self {
        Self::lexicon_only()
    }
}

impl Screener {
    /// The shipped lexicon, no model.
    pub fn lexicon_only() -> Self {
        Self {
            lexicon: Lexicon::default_lexicon(),
            model: None,
        }
    }

    /// The shipped lexicon and the model at `config` as the second opinion.
    pub fn with_model(config: ChatConfig) -> Result<Self, crate::llm::LlmError> {
        Ok(Self {
            lexicon: Lexicon::default_lexicon(),
            model: Some(ChatScreen::new(config)?),
        })
    }

    /// Screens `draft`; `withhold` keeps its text from the model, saying
    /// why (the call's redaction was incomplete, or is not known).
    pub async fn screen(&self, draft: &Draft, withhold: Option<&str>) -> Screening {
        let text = draft_text(draft);
        let lexicon = self.lexicon.scan(&text);
        let model = match (&self.model, withhold) {
            (None, _) => ModelOpinion::off("no language model configured"),
            (Some(_), Some(why)) => ModelOpinion::off(why),
            (Some(m), None) => m.opinion(&redact(&text).text).await,
        };
        tracing::info!(
            lexicon_hits = lexicon.len(),
            model = model.verdict.as_str(),
            "draft screened"
        );
        Screening {
            lexicon_version: self.lexicon.version(),
            lexicon,
            model,
        }
    }
}

/// The yes/no question to an OpenAI-compatible chat server: one request
/// (two if the server first refuses `json_schema`), no retries: screening
/// must not hold up the summarizer, and a missing opinion is recorded.
pub struct ChatScreen {
    config: ChatConfig,
    endpoint: String,
    client: reqwest::Client,
    /// Set once the server refused `json_schema`.
    downgraded: AtomicBool,
}

fn schema() -> Value {
    json!({
        "type": "object",
        "properties": {"flagged": {"type": "boolean"}},
        "required": ["flagged"],
        "additionalProperties": false,
    })
}

impl ChatScreen {
    pub fn new(config: ChatConfig) -> Result<Self, crate::llm::LlmError> {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| crate::llm::LlmError::Rejected(format!("http client: {e}")))?;
        Ok(Self {
            endpoint: config.endpoint(),
            config,
            client,
            downgraded: AtomicBool::new(false),
        })
    }

    /// The model's opinion of `text` (already redacted).
    pub async fn opinion(&self, text: &str) -> ModelOpinion {
        let mut opinion = ModelOpinion {
            verdict: Verdict::Unavailable,
            model: self.config.model.clone(),
            prompt_version: SCREEN_PROMPT_VERSION.to_owned(),
            detail: String::new(),
        };
        let mut answer = self.ask(text).await;
        if matches!(&answer, Err(Asked::Downgrade)) {
            self.downgraded.store(true, Ordering::Relaxed);
            answer = self.ask(text).await;
        }
        match answer {
            Ok(true) => opinion.verdict = Verdict::Flagged,
            Ok(false) => opinion.verdict = Verdict::Clear,
            Err(Asked::Downgrade) => opinion.detail = "the server refuses schema-constrained answers".into(),
            Err(Asked::Failed(why)) => opinion.detail = why,
        }
        if opinion.verdict == Verdict::Unavailable {
            tracing::warn!(model = %self.config.model, detail = %opinion.detail,
                "screening model unavailable; the lexicon's result stands");
        }
        opinion
    }

    fn response_format(&self) -> Value {
        let downgraded = self.downgraded.load(Ordering::Relaxed);
        match self.config.response_format {
            ResponseFormat::JsonSchema if !downgraded => json!({
                "type": "json_schema",
                "json_schema": {"name": "screening", "schema": schema(), "strict": true},
            }),
            ResponseFormat::JsonObject => json!({"type": "json_object"}),
            _ => json!({"type": "json_object", "schema": schema()}),
        }
    }

    async fn ask(&self, text: &str) -> Result<bool, Asked> {
        let body = json!({
            "model": self.config.model,
            "messages": [
                {"role": "system", "content": SCREEN_SYSTEM},
                {"role": "user", "content": format!("Summary:\n{text}")},
            ],
            "temperature": 0,
            "max_tokens": 32,
            "stream": false,
            "response_format": self.response_format(),
        });
        let request = self.config.authorize(self.client.post(&self.endpoint).json(&body));
        let answer = http::exchange(request).await.map_err(|u| {
            Asked::Failed(match u {
                Unanswered::Transport(t) => t.to_string(),
                Unanswered::TooLarge => "answer too large".into(),
            })
        })?;
        if !answer.status.is_success() {
            let message = http::server_message(&answer.body).unwrap_or_default();
            if !self.downgraded.load(Ordering::Relaxed)
                && self.config.response_format == ResponseFormat::JsonSchema
                && (message.contains("response_format") || message.contains("json_schema"))
            {
                return Err(Asked::Downgrade);
            }
            return Err(Asked::Failed(format!(
                "HTTP {} {}",
                answer.status.as_u16(),
                http::ellipsize(&message, http::MESSAGE_CHARS)
            )));
        }
        let completion: Value =
            serde_json::from_slice(&answer.body).map_err(|_| Asked::Failed("response is not JSON".into()))?;
        let content = completion["choices"][0]["message"]["content"]
            .as_str()
            .ok_or_else(|| Asked::Failed("no choices[0].message.content".into()))?;
        // The answer is the model's, not the customer's: still, only its
        // shape is logged, never its text.
        let v: Value = serde_json::from_str(content.trim()).map_err(|_| Asked::Failed("answer is not JSON".into()))?;
        v["flagged"]
            .as_bool()
            .ok_or_else(|| Asked::Failed("answer has no boolean `flagged`".into()))
    }
}

enum Asked {
    Downgrade,
    Failed(String),
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn draft(summary: &str) -> Draft {
        Draft {
            summary: summary.into(),
            topics: vec!["cards".into()],
            customer_requests: vec!["Block the card.".into()],
            follow_ups: Vec::new(),
            language: "en".into(),
            source: "test".into(),
            prompt_version: "none".into(),
        }
    }

    #[tokio::test]
    async fn the_lexicon_flags_and_the_reasons_name_the_term() {
        let s = Screener::lexicon_only();
        let clean = s.screen(&draft("The customer lost a card."), None).await;
        assert!(!clean.flagged());
        assert_eq!(clean.model.verdict, Verdict::Off);
        let hit = s.screen(&draft("The customer, an immigrant, lost a card."), None).await;
        assert!(hit.flagged());
        assert_eq!(
            hit.reasons(),
            vec!["screening: lexicon term immigrant* (ethnicity)".to_owned()]
        );
    }

    #[tokio::test]
    async fn an_unreachable_model_is_recorded_and_the_lexicon_stands() {
        let mut c = ChatConfig::new("http://127.0.0.1:9", "m");
        c.timeout = Duration::from_secs(2);
        let s = Screener::with_model(c).unwrap();
        let r = s.screen(&draft("Kunden er gravid og vil ha lån."), None).await;
        assert_eq!(r.model.verdict, Verdict::Unavailable);
        assert_eq!(r.model.prompt_version, SCREEN_PROMPT_VERSION);
        assert!(!r.model.detail.is_empty());
        assert!(r.flagged(), "the lexicon's hit stands");
        let off = s.screen(&draft("x"), Some("not sent")).await;
        assert_eq!(
            (off.model.verdict, off.model.detail.as_str()),
            (Verdict::Off, "not sent")
        );
    }
}
