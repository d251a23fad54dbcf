//! The call model: what a call is, how its audio is framed, and the facts that
//! later decide routing and retention.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Largest audio payload accepted in one chunk (the contract's limit).
pub const MAX_CHUNK_PAYLOAD: usize = 256 * 1024;

/// Identifier of a call, assigned by the telephony system.
///
/// 1–128 characters of `[A-Za-z0-9._:-]`: it appears in blob paths and Kafka keys,
/// so nothing that could escape a path or carry personal data in free text.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CallId(String);

impl CallId {
    pub fn parse(s: &str) -> Result<Self, ModelError> {
        let ok = !s.is_empty()
            && s.len() <= 128
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
            && s != "."
            && s != "..";
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(ModelError::InvalidCallId(s.chars().take(140).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ModelError {
    #[error("invalid call id {0:?}: expected 1-128 characters of [A-Za-z0-9._:-]")]
    InvalidCallId(String),
    #[error("unknown codec {0}")]
    UnknownCodec(i32),
    #[error("invalid audio format: {0}")]
    InvalidFormat(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Codec {
    /// G.711 µ-law.
    Pcmu,
    /// G.711 A-law.
    Pcma,
    /// Linear PCM, 16-bit signed little-endian.
    L16,
}

impl Codec {
    pub fn bytes_per_sample(self) -> usize {
        match self {
            Codec::Pcmu | Codec::Pcma => 1,
            Codec::L16 => 2,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Codec::Pcmu => "pcmu",
            Codec::Pcma => "pcma",
            Codec::L16 => "l16",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pcmu" => Some(Codec::Pcmu),
            "pcma" => Some(Codec::Pcma),
            "l16" => Some(Codec::L16),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelRole {
    Agent,
    Customer,
    Mixed,
}

impl ChannelRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelRole::Agent => "agent",
            ChannelRole::Customer => "customer",
            ChannelRole::Mixed => "mixed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "agent" => Some(ChannelRole::Agent),
            "customer" => Some(ChannelRole::Customer),
            "mixed" => Some(ChannelRole::Mixed),
            _ => None,
        }
    }
}

/// How a call's audio is encoded on the wire. Validated on construction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AudioFormat {
    codec: Codec,
    sample_rate_hz: u32,
    channel_roles: Vec<ChannelRole>,
}

impl AudioFormat {
    /// Telephony sample rates opptak accepts (narrowband to fullband).
    pub const SAMPLE_RATES: [u32; 5] = [8_000, 16_000, 24_000, 32_000, 48_000];

    /// G.711's only sample rate (ITU-T G.711, RTP payload types 0 and 8).
    pub const G711_RATE: u32 = 8_000;

    /// The sample rates `codec` may have: G.711 only 8 kHz (its code words
    /// are 8 kHz samples: at another rate the recording would play at the
    /// wrong speed), L16 any of [`AudioFormat::SAMPLE_RATES`].
    pub fn rates_of(codec: Codec) -> &'static [u32] {
        match codec {
            Codec::Pcmu | Codec::Pcma => std::slice::from_ref(&Self::G711_RATE),
            Codec::L16 => &Self::SAMPLE_RATES,
        }
    }

    pub fn new(codec: Codec, sample_rate_hz: u32, channel_roles: Vec<ChannelRole>) -> Result<Self, ModelError> {
        if !Self::rates_of(codec).contains(&sample_rate_hz) {
            return Err(ModelError::InvalidFormat(format!(
                "sample rate {sample_rate_hz} Hz not one of {:?} for {}",
                Self::rates_of(codec),
                codec.as_str()
            )));
        }
        Self::with_roles(codec, sample_rate_hz, channel_roles)
    }

    /// A format as the metadata store has it: the checks of
    /// [`AudioFormat::new`] but G.711's rate, which calls stored before it
    /// was enforced may break (they stay readable as they were recorded).
    /// Never for input.
    pub fn stored(codec: Codec, sample_rate_hz: u32, channel_roles: Vec<ChannelRole>) -> Result<Self, ModelError> {
        if !Self::SAMPLE_RATES.contains(&sample_rate_hz) {
            return Err(ModelError::InvalidFormat(format!(
                "sample rate {sample_rate_hz} Hz not one of {:?}",
                Self::SAMPLE_RATES
            )));
        }
        Self::with_roles(codec, sample_rate_hz, channel_roles)
    }

    fn with_roles(codec: Codec, sample_rate_hz: u32, channel_roles: Vec<ChannelRole>) -> Result<Self, ModelError> {
        match channel_roles.as_slice() {
            [_] => {}
            [a, b] if a != b && !channel_roles.contains(&ChannelRole::Mixed) => {}
            [_, _] => {
                return Err(ModelError::InvalidFormat(
                    "stereo needs one agent and one customer channel".into(),
                ))
            }
            roles => {
                return Err(ModelError::InvalidFormat(format!(
                    "{} channels: expected 1 or 2",
                    roles.len()
                )))
            }
        }
        Ok(Self {
            codec,
            sample_rate_hz,
            channel_roles,
        })
    }

    pub fn codec(&self) -> Codec {
        self.codec
    }
    pub fn sample_rate_hz(&self) -> u32 {
        self.sample_rate_hz
    }
    pub fn channels(&self) -> u16 {
        self.channel_roles.len() as u16
    }
    pub fn channel_roles(&self) -> &[ChannelRole] {
        &self.channel_roles
    }
    /// Bytes of one frame (one sample of every channel) on the wire.
    pub fn wire_frame_bytes(&self) -> usize {
        self.codec.bytes_per_sample() * self.channel_roles.len()
    }
    /// Bytes of one frame once decoded to PCM16.
    pub fn pcm_frame_bytes(&self) -> usize {
        2 * self.channel_roles.len()
    }
    pub fn frames_to_micros(&self, frames: u64) -> u64 {
        frames * 1_000_000 / self.sample_rate_hz as u64
    }
    pub fn micros_to_frames(&self, micros: u64) -> u64 {
        // Round to the nearest frame: offsets on the wire are rounded to µs.
        // In u128: an offset off the wire may be anything up to u64::MAX µs.
        let frames = (u128::from(micros) * u128::from(self.sample_rate_hz) + 500_000) / 1_000_000;
        u64::try_from(frames).unwrap_or(u64::MAX)
    }

    /// The first frame that starts at or after `micros` (rounded up).
    pub fn first_frame_at(&self, micros: u64) -> u64 {
        let frames = (u128::from(micros) * u128::from(self.sample_rate_hz)).div_ceil(1_000_000);
        u64::try_from(frames).unwrap_or(u64::MAX)
    }

    /// Whole frames in a wire payload, or why it is not whole frames.
    pub fn frames_in(&self, payload: &[u8]) -> Result<u64, DecodeError> {
        let fb = self.wire_frame_bytes();
        if !payload.len().is_multiple_of(fb) {
            return Err(DecodeError::PartialFrame {
                len: payload.len(),
                frame_bytes: fb,
            });
        }
        Ok((payload.len() / fb) as u64)
    }

    /// One frame of silence in the wire codec (µ-law 0xFF and A-law 0xD5 are
    /// the codes closest to zero; L16 zero).
    pub fn silence_frame(&self) -> Vec<u8> {
        let sample: &[u8] = match self.codec {
            Codec::Pcmu => &[0xFF],
            Codec::Pcma => &[0xD5],
            Codec::L16 => &[0, 0],
        };
        sample.repeat(self.channel_roles.len())
    }

    /// Overwrites the first `frames` frames of a wire buffer in this format
    /// with silence (the rest stays): the timeline stays true.
    pub fn silence_head(&self, wire: &mut [u8], frames: u64) {
        let silence = self.silence_frame();
        let n = usize::try_from(frames)
            .unwrap_or(usize::MAX)
            .saturating_mul(silence.len())
            .min(wire.len());
        for (b, s) in wire[..n].iter_mut().zip(silence.iter().cycle()) {
            *b = *s;
        }
    }

    /// Decodes a wire payload to interleaved PCM16 little-endian bytes.
    pub fn decode(&self, payload: &[u8]) -> Result<Vec<u8>, DecodeError> {
        let fb = self.wire_frame_bytes();
        if !payload.len().is_multiple_of(fb) {
            return Err(DecodeError::PartialFrame {
                len: payload.len(),
                frame_bytes: fb,
            });
        }
        let mut out = Vec::with_capacity(payload.len() / self.codec.bytes_per_sample() * 2);
        match self.codec {
            Codec::Pcmu => {
                for &b in payload {
                    out.extend_from_slice(&crate::g711::ulaw_decode(b).to_le_bytes());
                }
            }
            Codec::Pcma => {
                for &b in payload {
                    out.extend_from_slice(&crate::g711::alaw_decode(b).to_le_bytes());
                }
            }
            Codec::L16 => out.extend_from_slice(payload),
        }
        Ok(out)
    }
}

#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("payload of {len} bytes is not a whole number of {frame_bytes}-byte frames")]
    PartialFrame { len: usize, frame_bytes: usize },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Unspecified,
    Inbound,
    Outbound,
    Internal,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Desk {
    Unspecified,
    CustomerCenter,
    Markets,
    PrivateBanking,
    Corporate,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceCategory {
    Unspecified,
    InvestmentAdvice,
    Loan,
    Savings,
    Insurance,
    Payments,
    General,
}

macro_rules! str_enum {
    ($t:ty { $($v:ident => $s:literal),* $(,)? }) => {
        impl $t {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$v => $s),* }
            }
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some(Self::$v),)* _ => None }
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

str_enum!(Direction { Unspecified => "unspecified", Inbound => "inbound", Outbound => "outbound", Internal => "internal" });
str_enum!(Desk { Unspecified => "unspecified", CustomerCenter => "customer_center", Markets => "markets", PrivateBanking => "private_banking", Corporate => "corporate" });
str_enum!(ServiceCategory { Unspecified => "unspecified", InvestmentAdvice => "investment_advice", Loan => "loan", Savings => "savings", Insurance => "insurance", Payments => "payments", General => "general" });

/// A retention class: each call has one data key per class it uses, and
/// shredding a class's key makes every artifact of that class unreadable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyClass {
    /// The recording of every call (R2: 24 hours).
    Audio24h,
    /// The investment-advice archive copy (R1: 5 years, 7 on request).
    Archive5y,
    /// Every KI artifact: KI audio copy, transcript, drafts, topic tags (R4: 30 days).
    Ki,
    /// The approved summary, the customer-service record (5 years).
    Record5y,
    /// The messages of a conversation that is still open; shredded when the
    /// conversation is written into its copies at its end.
    ChatOpen,
    /// A conversation's analysis copy, redacted (1 year; gone at once when
    /// the customer objects to analysis).
    ChatAnalysis1y,
    /// A conversation with an advisor (5 years).
    ChatAdvisor5y,
    /// A logged-in conversation in the customer's online-bank archive (3 years).
    ChatCustomer3y,
}

str_enum!(KeyClass {
    Audio24h => "audio-24h",
    Archive5y => "archive-5y",
    Ki => "ki",
    Record5y => "record-5y",
    ChatOpen => "chat-open",
    ChatAnalysis1y => "chat-analysis-1y",
    ChatAdvisor5y => "chat-advisor-5y",
    ChatCustomer3y => "chat-customer-3y",
});

impl KeyClass {
    pub const ALL: [KeyClass; 8] = [
        Self::Audio24h,
        Self::Archive5y,
        Self::Ki,
        Self::Record5y,
        Self::ChatOpen,
        Self::ChatAnalysis1y,
        Self::ChatAdvisor5y,
        Self::ChatCustomer3y,
    ];
}

/// Where a conversation took place (issue 17).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    AinoChatbot,
    AdvisorChat,
    SecureMessage,
    Email,
}

str_enum!(Channel { AinoChatbot => "aino_chatbot", AdvisorChat => "advisor_chat", SecureMessage => "secure_message", Email => "email" });

impl Channel {
    pub const ALL: [Channel; 4] = [Self::AinoChatbot, Self::AdvisorChat, Self::SecureMessage, Self::Email];
}

/// Who wrote a message of a conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sender {
    Customer,
    Bot,
    Advisor,
}

str_enum!(Sender { Customer => "customer", Bot => "bot", Advisor => "advisor" });

/// What the chat system told us when a conversation started, and what
/// happened to it since (handover). The facts its retention is decided on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationFacts {
    pub conversation_id: CallId,
    pub started_at_us: i64,
    pub channel: Channel,
    /// Pseudonymous customer reference; empty for an anonymous conversation.
    pub customer_ref: String,
    /// The advisor taking part (from the start or after a handover); empty
    /// for a conversation with the bot only.
    pub advisor_id: String,
    pub desk: Desk,
    pub service_category: ServiceCategory,
    /// When Aino handed the conversation over to `advisor_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handover_at_us: Option<i64>,
}

impl ConversationFacts {
    /// A logged-in conversation: linked to a customer, shown in their archive.
    pub fn logged_in(&self) -> bool {
        !self.customer_ref.is_empty()
    }

    /// An advisor took part (kept 5 years).
    pub fn with_advisor(&self) -> bool {
        !self.advisor_id.is_empty()
    }
}

/// What the telephony system told us when the call started. These are the
/// routing facts the retention policy (a later issue) decides on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallFacts {
    pub call_id: CallId,
    /// Microseconds since the Unix epoch.
    pub started_at_us: i64,
    pub direction: Direction,
    /// Pseudonymous customer reference.
    pub customer_ref: String,
    pub advisor_id: String,
    pub desk: Desk,
    pub service_category: ServiceCategory,
    pub ki_enabled: bool,
    pub customer_informed: bool,
    pub format: AudioFormat,
    /// When and how the customer was told that KI is used (a `KiNotice`
    /// event during the call; issue 16, section 6). Not part of the start:
    /// a `CallStarted` never carries it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ki_notice: Option<KiNotice>,
}

/// How the customer was told that KI is used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KiNoticeMethod {
    Unspecified,
    IvrAnnouncement,
    Advisor,
}

str_enum!(KiNoticeMethod { Unspecified => "unspecified", IvrAnnouncement => "ivr_announcement", Advisor => "advisor" });

/// The evidence that the customer was told KI is used: kept with the
/// recording, shown in disclosures. KI hears no audio before `offset_us`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KiNotice {
    /// Wall-clock time the notice was complete (µs since the epoch).
    pub at_us: i64,
    /// Position on the call's audio timeline at which the notice was complete.
    pub offset_us: u64,
    pub method: KiNoticeMethod,
    /// Which IVR announcement was played (free text, may be empty).
    pub announcement_id: String,
    /// The advisor who told the customer (may be empty).
    pub by: String,
}

/// A CTI system's correction of a call's business context (the
/// `CallContext` event): only the fields set change. The service category is
/// no part of the call's facts once it started: it is applied as a
/// reclassification, which the retention policy reads.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ContextChange {
    pub desk: Option<Desk>,
    pub advisor_id: Option<String>,
    pub customer_ref: Option<String>,
    pub service_category: Option<ServiceCategory>,
    /// Who sent it (CTI system, advisor id).
    pub by: String,
    pub reason: String,
    pub at_us: i64,
}

impl ContextChange {
    /// `facts` with the desk, advisor and customer set here, and what changed
    /// as `field before -> after` (empty: nothing changes, e.g. a resend).
    pub fn apply(&self, facts: &CallFacts) -> (CallFacts, Vec<String>) {
        let mut after = facts.clone();
        let mut changes = Vec::new();
        if let Some(d) = self.desk.filter(|d| *d != facts.desk) {
            changes.push(format!("desk {} -> {d}", facts.desk));
            after.desk = d;
        }
        if let Some(a) = self.advisor_id.as_ref().filter(|a| **a != facts.advisor_id) {
            changes.push(format!("advisor_id {:?} -> {a:?}", facts.advisor_id));
            after.advisor_id = a.clone();
        }
        if let Some(c) = self.customer_ref.as_ref().filter(|c| **c != facts.customer_ref) {
            changes.push(format!("customer_ref {:?} -> {c:?}", facts.customer_ref));
            after.customer_ref = c.clone();
        }
        (after, changes)
    }
}

impl CallFacts {
    /// KI runs only when requested *and* the customer was told (R4): at the
    /// start (`customer_informed`) or by a `KiNotice` during the call.
    pub fn ki_active(&self) -> bool {
        self.ki_from_us().is_some()
    }

    /// The position on the call's audio timeline from which KI may hear the
    /// call, `None` when KI may not run at all. `customer_informed` at the
    /// start is a notice at offset 0 (producers from before the `KiNotice`
    /// event); otherwise the notice's offset: audio before it never reaches
    /// speech recognition.
    pub fn ki_from_us(&self) -> Option<u64> {
        if !self.ki_enabled {
            return None;
        }
        if self.customer_informed {
            return Some(0);
        }
        self.ki_notice.as_ref().map(|n| n.offset_us)
    }

    /// [`Self::ki_from_us`] as the first frame KI may hear, rounded up: no
    /// frame that starts before the notice was complete.
    pub fn ki_from_frame(&self) -> Option<u64> {
        Some(self.format.first_frame_at(self.ki_from_us()?))
    }

    /// One line saying when and how the customer was told that KI is used,
    /// for `policy explain`, `recordings info` and disclosures.
    pub fn ki_notice_summary(&self) -> String {
        if !self.ki_enabled {
            return "KI not requested for this call".into();
        }
        let at_start = "the customer was told KI is used at call start (customer_informed at CallStarted)";
        match (&self.ki_notice, self.customer_informed) {
            (None, true) => format!("{at_start}: KI hears the call from 0 s"),
            (Some(n), informed) => {
                let mut s = if informed {
                    format!("{at_start}, and by ")
                } else {
                    "the customer was told KI is used by ".to_owned()
                };
                s.push_str(&format!(
                    "{} at {} UTC, {:.3} s into the call",
                    n.method.as_str().replace('_', " "),
                    crate::time::utc_time(n.at_us),
                    n.offset_us as f64 / 1e6
                ));
                if !n.announcement_id.is_empty() {
                    s.push_str(&format!(" (announcement {})", n.announcement_id));
                }
                if !n.by.is_empty() {
                    s.push_str(&format!(" (by {})", n.by));
                }
                s.push_str(if informed {
                    ": KI hears the call from 0 s"
                } else {
                    ": KI hears nothing before it"
                });
                s
            }
            (None, false) => "the customer was never told KI is used: no KI".into(),
        }
    }

    /// Calls under the securities trading act get the 5-year archive (R1, R8).
    pub fn investment_service(&self) -> bool {
        self.service_category == ServiceCategory::InvestmentAdvice
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn call_ids_that_could_escape_a_path_are_refused() {
        assert!(CallId::parse("call-2026-11-28.0001:a").is_ok());
        for bad in ["", "..", "a/b", "a b", "ø", &"x".repeat(129)] {
            assert!(CallId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn formats_are_validated() {
        use ChannelRole::*;
        assert!(AudioFormat::new(Codec::Pcmu, 8000, vec![Agent, Customer]).is_ok());
        assert!(AudioFormat::new(Codec::Pcmu, 8000, vec![Mixed]).is_ok());
        assert!(AudioFormat::new(Codec::Pcmu, 8001, vec![Mixed]).is_err());
        assert!(AudioFormat::new(Codec::Pcmu, 8000, vec![Agent, Agent]).is_err());
        assert!(AudioFormat::new(Codec::Pcmu, 8000, vec![]).is_err());
        assert!(AudioFormat::new(Codec::L16, 8000, vec![Agent, Customer, Mixed]).is_err());
        // G.711 is 8 kHz only; L16 any telephony rate.
        for rate in AudioFormat::SAMPLE_RATES {
            assert_eq!(AudioFormat::new(Codec::Pcmu, rate, vec![Mixed]).is_ok(), rate == 8000);
            assert_eq!(
                AudioFormat::new(Codec::Pcma, rate, vec![Agent, Customer]).is_ok(),
                rate == 8000
            );
            assert!(AudioFormat::new(Codec::L16, rate, vec![Customer, Agent]).is_ok());
            // A call stored before the rule stays readable.
            assert!(AudioFormat::stored(Codec::Pcmu, rate, vec![Mixed]).is_ok());
        }
        assert!(AudioFormat::stored(Codec::Pcmu, 8001, vec![Mixed]).is_err());
        assert!(AudioFormat::stored(Codec::Pcmu, 8000, vec![Mixed, Mixed]).is_err());
    }

    #[test]
    fn a_context_change_sets_only_what_it_names_and_says_what_changed() {
        let f = CallFacts {
            call_id: CallId::parse("c1").unwrap(),
            started_at_us: 0,
            direction: Direction::Inbound,
            customer_ref: "cust-1".into(),
            advisor_id: "adv-1".into(),
            desk: Desk::CustomerCenter,
            service_category: ServiceCategory::Loan,
            ki_enabled: true,
            customer_informed: true,
            format: AudioFormat::new(Codec::Pcma, 8000, vec![ChannelRole::Mixed]).unwrap(),
            ki_notice: None,
        };
        let change = ContextChange {
            desk: Some(Desk::Markets),
            advisor_id: Some("adv-1".into()),
            customer_ref: Some("cust-2".into()),
            service_category: Some(ServiceCategory::InvestmentAdvice),
            by: "cti".into(),
            ..Default::default()
        };
        let (after, changes) = change.apply(&f);
        assert_eq!(
            changes,
            [
                "desk customer_center -> markets",
                r#"customer_ref "cust-1" -> "cust-2""#
            ]
        );
        // KI and the category are no part of it (the category is a reclassification).
        let want = CallFacts {
            desk: Desk::Markets,
            customer_ref: "cust-2".into(),
            ..f.clone()
        };
        assert_eq!(after, want);
        assert!(ContextChange::default().apply(&f).1.is_empty());
        assert!(change.apply(&after).1.is_empty(), "applied twice: no change");
    }

    #[test]
    fn ki_hears_a_call_from_its_notice_only() {
        use ChannelRole::*;
        let mut f = CallFacts {
            call_id: CallId::parse("c1").unwrap(),
            started_at_us: 0,
            direction: Direction::Inbound,
            customer_ref: String::new(),
            advisor_id: String::new(),
            desk: Desk::CustomerCenter,
            service_category: ServiceCategory::Loan,
            ki_enabled: true,
            customer_informed: false,
            format: AudioFormat::new(Codec::Pcma, 8000, vec![Agent, Customer]).unwrap(),
            ki_notice: None,
        };
        // Neither told at the start nor a notice: no KI.
        assert!(!f.ki_active());
        assert_eq!(f.ki_from_frame(), None);
        f.ki_notice = Some(KiNotice {
            at_us: 1,
            offset_us: 2_500_001,
            method: KiNoticeMethod::IvrAnnouncement,
            announcement_id: "ivr-1".into(),
            by: String::new(),
        });
        assert!(f.ki_active());
        // Rounded up: the frame that starts before the notice is not heard.
        assert_eq!(f.ki_from_frame(), Some(20_001));
        // Told before the call connected (producers without KiNotice): from 0.
        f.customer_informed = true;
        assert_eq!(f.ki_from_us(), Some(0));
        f.ki_enabled = false;
        assert!(!f.ki_active());
        let mut wire = vec![1u8; 10];
        f.format.silence_head(&mut wire, 3);
        assert_eq!(wire, [0xD5, 0xD5, 0xD5, 0xD5, 0xD5, 0xD5, 1, 1, 1, 1]);
    }

    #[test]
    fn decode_refuses_partial_frames() {
        use ChannelRole::*;
        let f = AudioFormat::new(Codec::L16, 8000, vec![Agent, Customer]).unwrap();
        assert_eq!(f.decode(&[0; 8]).unwrap().len(), 8);
        assert!(matches!(f.decode(&[0; 6]), Err(DecodeError::PartialFrame { .. })));
        let f = AudioFormat::new(Codec::Pcma, 8000, vec![Agent, Customer]).unwrap();
        assert_eq!(f.decode(&[0xD5; 4]).unwrap(), [8, 0, 8, 0, 8, 0, 8, 0]);
    }
}
