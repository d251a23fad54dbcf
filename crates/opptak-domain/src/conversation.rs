//! A conversation's log (issue 17): what is kept of a chat with Aino or an
//! advisor, a secure message thread or an e-mail exchange, once it ended.
//! Each retention class keeps its own copy of it (sealed under its own data
//! key by the IO crates); the analysis copy is the redacted one.

use crate::model::{Channel, Desk, Sender, ServiceCategory};
use crate::redact::{self, redact_from};
use crate::summary::{detect_language, Language, Segment, Speaker, Taxonomy};
use serde::{Deserialize, Serialize};

/// A document sent with a message: the reference, never the content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub reference: String,
    pub media_type: String,
    pub size_bytes: u64,
}

/// One message, as the chat system sent it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub sequence: u64,
    pub message_id: String,
    pub at_us: i64,
    pub sender: Sender,
    /// The advisor's id for an advisor's message.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sender_id: String,
    pub text: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
}

/// A whole conversation, the body of every copy (JSON, then sealed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationLog {
    pub conversation_id: String,
    pub channel: Channel,
    /// Empty when anonymous, and in the analysis copy.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub customer_ref: String,
    /// An anonymous conversation's client IP address (not in the analysis copy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub advisor_id: String,
    pub desk: Desk,
    pub service_category: ServiceCategory,
    pub started_at_us: i64,
    pub ended_at_us: i64,
    pub end_reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handover_at_us: Option<i64>,
    pub messages: Vec<Message>,
    /// Sequences up to the last one announced that never arrived.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<u64>,
    /// True for the analysis copy: identifiers replaced by tokens.
    #[serde(default)]
    pub redacted: bool,
}

impl ConversationLog {
    /// The analysis copy: who the customer is and where they wrote from are
    /// left out, and every identifier in the texts is replaced by its token
    /// (the redactor that runs on transcripts: fødselsnummer, account and card
    /// numbers, phone, e-mail, names, addresses). Advisors' and the bot's
    /// texts are redacted too: they quote the customer.
    pub fn redacted(&self) -> ConversationLog {
        let messages = self
            .messages
            .iter()
            .map(|m| Message {
                text: redact_from(
                    &m.text,
                    match m.sender {
                        Sender::Customer => redact::Channel::Customer,
                        Sender::Bot | Sender::Advisor => redact::Channel::Agent,
                    },
                )
                .text,
                attachments: m
                    .attachments
                    .iter()
                    .map(|a| Attachment {
                        reference: String::new(),
                        ..a.clone()
                    })
                    .collect(),
                ..m.clone()
            })
            .collect();
        ConversationLog {
            customer_ref: String::new(),
            ip_address: None,
            messages,
            redacted: true,
            ..self.clone()
        }
    }

    /// The texts one after another, for the topic categorizer.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for m in &self.messages {
            out.push_str(&m.text);
            out.push('\n');
        }
        out
    }

    /// The language the conversation is written in, from its words alone
    /// (as a call's is from its transcript); `None` when undetermined.
    pub fn language(&self) -> Option<Language> {
        detect_language(self.messages.iter().map(|m| m.text.as_str()))
    }

    /// The conversation's topics in `taxonomy` (R5: the same taxonomy as
    /// calls), by the embedded phrase classifier: no language model sees
    /// the text (R13). The customer's messages count as the customer's
    /// side of a call, the bot's and the advisor's as the advisor's; best
    /// topic first, `["other"]` when no phrase matched.
    pub fn topics(&self, taxonomy: &Taxonomy) -> Vec<String> {
        let segments: Vec<Segment> = self
            .messages
            .iter()
            .map(|m| {
                let speaker = match m.sender {
                    Sender::Customer => Speaker::Customer,
                    Sender::Bot | Sender::Advisor => Speaker::Agent,
                };
                let start_s = (m.at_us - self.started_at_us).max(0) as f32 / 1e6;
                Segment::new(speaker, start_s, m.text.clone())
            })
            .collect();
        let language = self.language().unwrap_or_else(|| Language::resolve("", &segments));
        taxonomy.classify(language, &segments)
    }

    /// How many words the bot wrote: its answers are the KI output QA
    /// samples (R6); 0 when the bot took no part.
    pub fn bot_words(&self) -> u64 {
        self.messages
            .iter()
            .filter(|m| m.sender == Sender::Bot)
            .map(|m| m.text.split_whitespace().count() as u64)
            .sum()
    }
}

/// Which sequences in `1..=last` are not in `have` (sorted).
pub fn missing(have: &[u64], last: u64) -> Vec<u64> {
    let set: std::collections::BTreeSet<u64> = have.iter().copied().collect();
    (1..=last).filter(|s| !set.contains(s)).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn log() -> ConversationLog {
        ConversationLog {
            conversation_id: "conv-1".into(),
            channel: Channel::AinoChatbot,
            customer_ref: "cust-9".into(),
            ip_address: Some("203.0.113.7".into()),
            advisor_id: String::new(),
            desk: Desk::Unspecified,
            service_category: ServiceCategory::General,
            started_at_us: 1,
            ended_at_us: 2,
            end_reason: "closed_by_customer".into(),
            handover_at_us: None,
            messages: vec![Message {
                sequence: 1,
                message_id: "m1".into(),
                at_us: 1,
                sender: Sender::Customer,
                sender_id: String::new(),
                text: "Fødselsnummeret mitt er 010180 12371, ring 412 34 567".into(),
                attachments: vec![Attachment {
                    reference: "doc-77/kontoutskrift-ola.pdf".into(),
                    media_type: "application/pdf".into(),
                    size_bytes: 5120,
                }],
            }],
            missing: vec![],
            redacted: false,
        }
    }

    #[test]
    fn the_analysis_copy_names_no_one() {
        let r = log().redacted();
        let json = format!("{r:?}");
        for secret in ["cust-9", "203.0.113.7", "010180", "412 34 567", "kontoutskrift-ola"] {
            assert!(!json.contains(secret), "{secret} in {json}");
        }
        assert!(r.redacted);
        assert_eq!(r.messages[0].text, "Fødselsnummeret mitt er [FNR], ring [PHONE]");
        assert_eq!(r.messages[0].attachments[0].size_bytes, 5120);
    }

    fn said(sequence: u64, sender: Sender, text: &str) -> Message {
        Message {
            sequence,
            message_id: format!("m{sequence}"),
            at_us: 1_000_000 * sequence as i64,
            sender,
            sender_id: String::new(),
            text: text.into(),
            attachments: vec![],
        }
    }

    #[test]
    fn conversations_get_topics_of_the_call_taxonomy() {
        let taxonomy = Taxonomy::default_taxonomy();
        let mut card = log();
        card.messages = vec![
            said(1, Sender::Customer, "Hei, jeg har mistet kortet mitt og vil sperre det"),
            said(
                2,
                Sender::Bot,
                "Du kan sperre kortet i appen. Vil du bestille nytt kort?",
            ),
            said(3, Sender::Customer, "Ja takk, det vil jeg"),
        ];
        assert_eq!(card.topics(&taxonomy).first().map(String::as_str), Some("cards"));
        assert_eq!(card.language(), Some(Language::Nb));
        assert_eq!(card.bot_words(), 11);
        let mut loan = log();
        loan.messages = vec![
            said(
                1,
                Sender::Customer,
                "I would like to refinance my mortgage, what is the interest rate?",
            ),
            said(
                2,
                Sender::Advisor,
                "Let me look at your mortgage and the rate we can offer.",
            ),
        ];
        assert_eq!(
            loan.topics(&taxonomy).first().map(String::as_str),
            Some("mortgage_loans")
        );
        assert_eq!(loan.language(), Some(Language::En));
        assert_eq!(loan.bot_words(), 0, "an advisor is not the bot");
        let mut nothing = log();
        nothing.messages = vec![said(1, Sender::Customer, "Hei")];
        assert_eq!(nothing.topics(&taxonomy), vec!["other".to_owned()]);
        assert_eq!(nothing.language(), None);
        for id in card.topics(&taxonomy).iter().chain(&loan.topics(&taxonomy)) {
            assert!(taxonomy.contains(id), "{id}");
        }
    }

    #[test]
    fn missing_sequences() {
        assert_eq!(missing(&[1, 2, 4], 6), vec![3, 5, 6]);
        assert_eq!(missing(&[], 0), Vec::<u64>::new());
    }
}
