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

    pub fn new(codec: Codec, sample_rate_hz: u32, channel_roles: Vec<ChannelRole>) -> Result<Self, ModelError> {
        if !Self::SAMPLE_RATES.contains(&sample_rate_hz) {
            return Err(ModelError::InvalidFormat(format!(
                "sample rate {sample_rate_hz} Hz not one of {:?}",
                Self::SAMPLE_RATES
            )));
        }
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
}

str_enum!(KeyClass { Audio24h => "audio-24h", Archive5y => "archive-5y", Ki => "ki", Record5y => "record-5y" });

impl KeyClass {
    pub const ALL: [KeyClass; 4] = [Self::Audio24h, Self::Archive5y, Self::Ki, Self::Record5y];
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
}

impl CallFacts {
    /// KI runs only when requested *and* the customer was told (R4).
    pub fn ki_active(&self) -> bool {
        self.ki_enabled && self.customer_informed
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
