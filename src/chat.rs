//! A simulated chat system (issue 17): what Aino, the advisor chat, the
//! online bank's secure messages and e-mail write to `opptak.messages.v1`.
//! The demo, the load generator and the tests use it; it is also the
//! reference for integrators (docs/messages-contract.md): a data key per
//! conversation, wrapped under a KEK shared with opptak, and every text
//! sealed under it, so the topic never holds a readable message.

use opptak_crypto::chunk::{self, Domain};
use opptak_crypto::{CryptoError, DataKey, KeyProvider};
use opptak_domain::model::{Channel, Desk, Sender, ServiceCategory};
use opptak_proto::convert::timestamp;
use opptak_proto::v1::{self, conversation_event::Event};
use opptak_proto::Message as _;

/// One conversation as the chat system sees it.
pub struct ChatConversation {
    pub id: String,
    key: DataKey,
    message_key: v1::TelephonyKey,
    next_sequence: u64,
}

/// A message to send.
pub struct Say<'a> {
    pub at_us: i64,
    pub sender: Sender,
    /// The advisor's id for [`Sender::Advisor`].
    pub sender_id: &'a str,
    pub text: &'a str,
}

impl ChatConversation {
    /// A new conversation whose key is wrapped under the active KEK of `shared`.
    pub fn new(id: &str, shared: &dyn KeyProvider) -> Result<Self, CryptoError> {
        let key = DataKey::generate();
        let w = shared.wrap(&key, &chunk::message_key_context(id))?;
        Ok(Self {
            id: id.to_owned(),
            key,
            message_key: v1::TelephonyKey {
                key_id: w.key_id,
                kek_id: w.kek_id,
                wrapped: w.sealed,
            },
            next_sequence: 1,
        })
    }

    fn event(&self, event: Event) -> v1::ConversationEvent {
        v1::ConversationEvent {
            conversation_id: self.id.clone(),
            event: Some(event),
        }
    }

    /// `ConversationStarted`: logged in when `customer_ref` is not empty,
    /// otherwise anonymous from `ip` (Aino only).
    #[allow(clippy::too_many_arguments)]
    pub fn started(
        &self,
        at_us: i64,
        channel: Channel,
        customer_ref: &str,
        ip: Option<&str>,
        advisor_id: &str,
        desk: Desk,
        category: ServiceCategory,
    ) -> Result<v1::ConversationEvent, CryptoError> {
        let sealed_ip_address = match ip {
            Some(ip) => chunk::seal_in(Domain::Message, &self.key, &self.id, 0, ip.as_bytes())?,
            None => Vec::new(),
        };
        Ok(self.event(Event::ConversationStarted(v1::ConversationStarted {
            started_at: Some(timestamp(at_us)),
            channel: wire_channel(channel) as i32,
            customer_ref: customer_ref.to_owned(),
            sealed_ip_address,
            advisor_id: advisor_id.to_owned(),
            desk: wire_desk(desk) as i32,
            service_category: wire_category(category) as i32,
            message_key: Some(self.message_key.clone()),
        })))
    }

    /// The next message (sequence and id assigned here).
    pub fn say(&mut self, s: Say<'_>) -> Result<v1::ConversationEvent, CryptoError> {
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        self.message_at(sequence, s)
    }

    /// A message at a given sequence (a replay or a gap in tests).
    pub fn message_at(&self, sequence: u64, s: Say<'_>) -> Result<v1::ConversationEvent, CryptoError> {
        let sealed_text = chunk::seal_in(Domain::Message, &self.key, &self.id, sequence, s.text.as_bytes())?;
        Ok(self.event(Event::Message(v1::ChatMessage {
            message_id: format!("{}-m{sequence}", self.id),
            sequence,
            at: Some(timestamp(s.at_us)),
            sender: match s.sender {
                Sender::Customer => v1::Sender::Customer,
                Sender::Bot => v1::Sender::Bot,
                Sender::Advisor => v1::Sender::Advisor,
            } as i32,
            sender_id: s.sender_id.to_owned(),
            sealed_text,
            attachments: Vec::new(),
        })))
    }

    pub fn handover(&self, at_us: i64, advisor_id: &str, desk: Desk) -> v1::ConversationEvent {
        self.event(Event::Handover(v1::Handover {
            at: Some(timestamp(at_us)),
            advisor_id: advisor_id.to_owned(),
            desk: wire_desk(desk) as i32,
            service_category: v1::ServiceCategory::Unspecified as i32,
        }))
    }

    pub fn objection(&self, at_us: i64) -> v1::ConversationEvent {
        self.event(Event::AnalysisObjection(v1::AnalysisObjection {
            at: Some(timestamp(at_us)),
            recorded_by: "customer".into(),
        }))
    }

    pub fn ended(&self, at_us: i64) -> v1::ConversationEvent {
        self.event(Event::ConversationEnded(v1::ConversationEnded {
            ended_at: Some(timestamp(at_us)),
            reason: v1::ConversationEndReason::ClosedByCustomer as i32,
            last_sequence: self.next_sequence - 1,
        }))
    }

    /// The sequence the next [`ChatConversation::say`] gets.
    pub fn next_sequence(&self) -> u64 {
        self.next_sequence
    }
}

/// The Kafka key and value of an event.
pub fn encode(ev: &v1::ConversationEvent) -> (Vec<u8>, Vec<u8>) {
    (ev.conversation_id.as_bytes().to_vec(), ev.encode_to_vec())
}

fn wire_channel(c: Channel) -> v1::ConversationChannel {
    match c {
        Channel::AinoChatbot => v1::ConversationChannel::AinoChatbot,
        Channel::AdvisorChat => v1::ConversationChannel::AdvisorChat,
        Channel::SecureMessage => v1::ConversationChannel::SecureMessage,
        Channel::Email => v1::ConversationChannel::Email,
    }
}

fn wire_desk(d: Desk) -> v1::Desk {
    match d {
        Desk::Unspecified => v1::Desk::Unspecified,
        Desk::CustomerCenter => v1::Desk::CustomerCenter,
        Desk::Markets => v1::Desk::Markets,
        Desk::PrivateBanking => v1::Desk::PrivateBanking,
        Desk::Corporate => v1::Desk::Corporate,
    }
}

fn wire_category(c: ServiceCategory) -> v1::ServiceCategory {
    match c {
        ServiceCategory::Unspecified => v1::ServiceCategory::Unspecified,
        ServiceCategory::InvestmentAdvice => v1::ServiceCategory::InvestmentAdvice,
        ServiceCategory::Loan => v1::ServiceCategory::Loan,
        ServiceCategory::Savings => v1::ServiceCategory::Savings,
        ServiceCategory::Insurance => v1::ServiceCategory::Insurance,
        ServiceCategory::Payments => v1::ServiceCategory::Payments,
        ServiceCategory::General => v1::ServiceCategory::General,
    }
}
