//! The edge between the wire contract and the domain: protobuf in, validated
//! domain values out, or the dead-letter reason that says why not.

use crate::v1::{self, DeadLetterReason};
use opptak_domain::model::{
    AudioFormat, CallFacts, CallId, Channel, ChannelRole, Codec, ContextChange, ConversationFacts, Desk, Direction,
    KiNotice, KiNoticeMethod, Sender, ServiceCategory,
};

/// Why an input cannot be accepted: the reason code and a human-readable detail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub reason: DeadLetterReason,
    pub detail: String,
}

impl Refusal {
    pub fn new(reason: DeadLetterReason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }
}

pub fn micros(ts: &prost_types::Timestamp) -> i64 {
    ts.seconds
        .saturating_mul(1_000_000)
        .saturating_add(ts.nanos as i64 / 1_000)
}

pub fn duration_micros(d: &prost_types::Duration) -> Option<u64> {
    if d.seconds < 0 || d.nanos < 0 {
        return None;
    }
    Some(
        (d.seconds as u64)
            .saturating_mul(1_000_000)
            .saturating_add(d.nanos as u64 / 1_000),
    )
}

pub fn timestamp(us: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: us.div_euclid(1_000_000),
        nanos: (us.rem_euclid(1_000_000) * 1_000) as i32,
    }
}

pub fn duration(us: u64) -> prost_types::Duration {
    prost_types::Duration {
        seconds: (us / 1_000_000) as i64,
        nanos: ((us % 1_000_000) * 1_000) as i32,
    }
}

pub fn audio_format(f: Option<&v1::AudioFormat>) -> Result<AudioFormat, Refusal> {
    use DeadLetterReason::{InvalidFormat, UnknownCodec};
    let f = f.ok_or_else(|| Refusal::new(InvalidFormat, "audio_format missing"))?;
    let codec = match v1::Codec::try_from(f.codec) {
        Ok(v1::Codec::Pcmu) => Codec::Pcmu,
        Ok(v1::Codec::Pcma) => Codec::Pcma,
        Ok(v1::Codec::L16) => Codec::L16,
        Ok(v1::Codec::Unspecified) => return Err(Refusal::new(UnknownCodec, "codec unspecified")),
        Err(_) => return Err(Refusal::new(UnknownCodec, format!("unknown codec {}", f.codec))),
    };
    let mut roles = Vec::new();
    for r in &f.channel_roles {
        roles.push(match v1::ChannelRole::try_from(*r) {
            Ok(v1::ChannelRole::Agent) => ChannelRole::Agent,
            Ok(v1::ChannelRole::Customer) => ChannelRole::Customer,
            Ok(v1::ChannelRole::Mixed) => ChannelRole::Mixed,
            _ => return Err(Refusal::new(InvalidFormat, format!("unknown channel role {r}"))),
        });
    }
    if roles.is_empty() {
        // Defaults documented in docs/telephony-contract.md.
        roles = match f.channels {
            1 => vec![ChannelRole::Mixed],
            2 => vec![ChannelRole::Agent, ChannelRole::Customer],
            n => return Err(Refusal::new(InvalidFormat, format!("{n} channels: expected 1 or 2"))),
        };
    } else if f.channels as usize != roles.len() {
        return Err(Refusal::new(
            InvalidFormat,
            format!("channels = {} but {} channel roles", f.channels, roles.len()),
        ));
    }
    AudioFormat::new(codec, f.sample_rate_hz, roles).map_err(|e| Refusal::new(InvalidFormat, e.to_string()))
}

pub fn call_facts(call_id: CallId, s: &v1::CallStarted) -> Result<CallFacts, Refusal> {
    use DeadLetterReason::InvalidFormat;
    let started = s
        .started_at
        .as_ref()
        .ok_or_else(|| Refusal::new(InvalidFormat, "started_at missing"))?;
    let direction = match v1::Direction::try_from(s.direction) {
        Ok(v1::Direction::Inbound) => Direction::Inbound,
        Ok(v1::Direction::Outbound) => Direction::Outbound,
        Ok(v1::Direction::Internal) => Direction::Internal,
        _ => Direction::Unspecified,
    };
    let desk = desk(s.desk);
    let service_category = service_category(s.service_category);
    if s.customer_ref.len() > 256 || s.advisor_id.len() > 256 {
        return Err(Refusal::new(
            InvalidFormat,
            "customer_ref or advisor_id longer than 256 bytes",
        ));
    }
    Ok(CallFacts {
        call_id,
        started_at_us: micros(started),
        direction,
        customer_ref: s.customer_ref.clone(),
        advisor_id: s.advisor_id.clone(),
        desk,
        service_category,
        ki_enabled: s.ki_enabled,
        customer_informed: s.customer_informed,
        format: audio_format(s.audio_format.as_ref())?,
        ki_notice: None,
    })
}

/// A `KiNotice` as evidence: the offset is required (it is what KI may
/// hear from), the time defaults to `now_us`.
pub fn ki_notice(n: &v1::KiNotice, now_us: i64) -> Result<KiNotice, Refusal> {
    use DeadLetterReason::InvalidFormat;
    let offset_us = n.offset.as_ref().ok_or_else(|| {
        Refusal::new(
            InvalidFormat,
            "KiNotice.offset missing: the audio position of the notice is required",
        )
    })?;
    let offset_us =
        duration_micros(offset_us).ok_or_else(|| Refusal::new(InvalidFormat, "KiNotice.offset negative"))?;
    if n.announcement_id.len() > 256 || n.by.len() > 256 {
        return Err(Refusal::new(
            InvalidFormat,
            "KiNotice announcement_id or by longer than 256 bytes",
        ));
    }
    let method = match v1::KiNoticeMethod::try_from(n.method) {
        Ok(v1::KiNoticeMethod::IvrAnnouncement) => KiNoticeMethod::IvrAnnouncement,
        Ok(v1::KiNoticeMethod::Advisor) => KiNoticeMethod::Advisor,
        _ => KiNoticeMethod::Unspecified,
    };
    Ok(KiNotice {
        at_us: n.at.as_ref().map(micros).unwrap_or(now_us),
        offset_us,
        method,
        announcement_id: n.announcement_id.clone(),
        by: n.by.clone(),
    })
}

/// The longest `CallContext.reason` accepted.
const MAX_CONTEXT_REASON: usize = 1024;

/// A `CallContext` as a change of the call's context, or why it is refused
/// (`CONTEXT_REFUSED`): no `by`, nothing set, a field set to its unspecified
/// or empty value (not set is no change; unspecified is no context), an
/// oversized string, a service category without a reason (the rule of a
/// `Reclassification`). The time defaults to `now_us`.
pub fn call_context(c: &v1::CallContext, now_us: i64) -> Result<ContextChange, Refusal> {
    let refuse = |why: String| Err(Refusal::new(DeadLetterReason::ContextRefused, why));
    if c.by.trim().is_empty() {
        return refuse("a CallContext needs who sent it (by); nothing was changed".into());
    }
    if c.by.len() > MAX_ID || c.reason.len() > MAX_CONTEXT_REASON {
        return refuse(format!(
            "CallContext by is over {MAX_ID} bytes or reason over {MAX_CONTEXT_REASON}; nothing was changed"
        ));
    }
    if c.desk.is_none() && c.advisor_id.is_none() && c.customer_ref.is_none() && c.service_category.is_none() {
        return refuse("a CallContext sets nothing (desk, advisor_id, customer_ref, service_category)".into());
    }
    let desk = match c.desk {
        None => None,
        Some(v) => match desk(v) {
            Desk::Unspecified => return refuse(format!("CallContext desk {v} is unspecified or unknown")),
            d => Some(d),
        },
    };
    let service = match c.service_category {
        None => None,
        Some(v) => match service_category(v) {
            ServiceCategory::Unspecified => {
                return refuse(format!("CallContext service_category {v} is unspecified or unknown"))
            }
            s => Some(s),
        },
    };
    if service.is_some() && c.reason.trim().is_empty() {
        return refuse("a CallContext with a service_category needs a reason (as a Reclassification)".into());
    }
    for (name, v) in [("advisor_id", &c.advisor_id), ("customer_ref", &c.customer_ref)] {
        match v.as_deref() {
            Some(v) if v.trim().is_empty() => return refuse(format!("CallContext {name} is set but empty")),
            Some(v) if v.len() > MAX_ID => return refuse(format!("CallContext {name} is over {MAX_ID} bytes")),
            _ => {}
        }
    }
    Ok(ContextChange {
        desk,
        advisor_id: c.advisor_id.clone(),
        customer_ref: c.customer_ref.clone(),
        service_category: service,
        by: c.by.clone(),
        reason: c.reason.clone(),
        at_us: c.at.as_ref().map(micros).unwrap_or(now_us),
    })
}

pub fn end_reason(r: i32) -> &'static str {
    match v1::EndReason::try_from(r) {
        Ok(v1::EndReason::HangupCustomer) => "hangup_customer",
        Ok(v1::EndReason::HangupAgent) => "hangup_agent",
        Ok(v1::EndReason::Transfer) => "transfer",
        Ok(v1::EndReason::Error) => "error",
        Ok(v1::EndReason::IdleTimeout) => "idle_timeout",
        _ => "unspecified",
    }
}

/// A wire `Desk` as the domain's (`Unspecified` for unknown values).
pub fn desk(v: i32) -> Desk {
    match v1::Desk::try_from(v) {
        Ok(v1::Desk::CustomerCenter) => Desk::CustomerCenter,
        Ok(v1::Desk::Markets) => Desk::Markets,
        Ok(v1::Desk::PrivateBanking) => Desk::PrivateBanking,
        Ok(v1::Desk::Corporate) => Desk::Corporate,
        _ => Desk::Unspecified,
    }
}

/// The longest customer reference, advisor id or message id accepted.
const MAX_ID: usize = 256;

/// A `ConversationStarted` as the conversation's facts. Only Aino may be
/// anonymous (advisor chat, secure messages and e-mail are logged in), and
/// an anonymous conversation carries its sealed IP address.
pub fn conversation_facts(id: CallId, s: &v1::ConversationStarted) -> Result<ConversationFacts, Refusal> {
    use DeadLetterReason::InvalidFormat;
    let started = s
        .started_at
        .as_ref()
        .ok_or_else(|| Refusal::new(InvalidFormat, "started_at missing"))?;
    let channel = channel(s.channel)?;
    if s.customer_ref.len() > MAX_ID || s.advisor_id.len() > MAX_ID {
        return Err(Refusal::new(
            InvalidFormat,
            "customer_ref or advisor_id longer than 256 bytes",
        ));
    }
    if s.message_key.is_none() {
        return Err(Refusal::new(
            InvalidFormat,
            "message_key missing: texts on the messages topic are always sealed",
        ));
    }
    if s.customer_ref.is_empty() {
        if channel != Channel::AinoChatbot {
            return Err(Refusal::new(
                InvalidFormat,
                format!("an anonymous conversation (no customer_ref) can only be with Aino, not {channel}"),
            ));
        }
        if s.sealed_ip_address.is_empty() {
            return Err(Refusal::new(
                InvalidFormat,
                "an anonymous conversation needs sealed_ip_address",
            ));
        }
    } else if !s.sealed_ip_address.is_empty() {
        return Err(Refusal::new(
            InvalidFormat,
            "sealed_ip_address is for anonymous conversations only (a logged-in one names its customer)",
        ));
    }
    Ok(ConversationFacts {
        conversation_id: id,
        started_at_us: micros(started),
        channel,
        customer_ref: s.customer_ref.clone(),
        advisor_id: s.advisor_id.clone(),
        desk: desk(s.desk),
        service_category: service_category(s.service_category),
        handover_at_us: None,
    })
}

pub fn channel(v: i32) -> Result<Channel, Refusal> {
    match v1::ConversationChannel::try_from(v) {
        Ok(v1::ConversationChannel::AinoChatbot) => Ok(Channel::AinoChatbot),
        Ok(v1::ConversationChannel::AdvisorChat) => Ok(Channel::AdvisorChat),
        Ok(v1::ConversationChannel::SecureMessage) => Ok(Channel::SecureMessage),
        Ok(v1::ConversationChannel::Email) => Ok(Channel::Email),
        _ => Err(Refusal::new(
            DeadLetterReason::InvalidFormat,
            format!("channel {v} is not one of Aino chatbot, advisor chat, secure message, e-mail"),
        )),
    }
}

pub fn sender(v: i32) -> Result<Sender, Refusal> {
    match v1::Sender::try_from(v) {
        Ok(v1::Sender::Customer) => Ok(Sender::Customer),
        Ok(v1::Sender::Bot) => Ok(Sender::Bot),
        Ok(v1::Sender::Advisor) => Ok(Sender::Advisor),
        _ => Err(Refusal::new(
            DeadLetterReason::InvalidFormat,
            format!("sender {v} is not customer, bot or advisor"),
        )),
    }
}

pub fn conversation_end_reason(r: i32) -> &'static str {
    match v1::ConversationEndReason::try_from(r) {
        Ok(v1::ConversationEndReason::ClosedByCustomer) => "closed_by_customer",
        Ok(v1::ConversationEndReason::ClosedByAdvisor) => "closed_by_advisor",
        Ok(v1::ConversationEndReason::Timeout) => "timeout",
        Ok(v1::ConversationEndReason::Idle) => "idle_timeout",
        _ => "unspecified",
    }
}

/// Checks a message's envelope (not its sealed text): ids, sequence, sender,
/// attachments.
pub fn check_message(m: &v1::ChatMessage) -> Result<Sender, Refusal> {
    use DeadLetterReason::{InvalidFormat, OversizedChunk};
    if m.message_id.is_empty() || m.message_id.len() > MAX_ID || m.sender_id.len() > MAX_ID {
        return Err(Refusal::new(
            InvalidFormat,
            "message_id missing, or message_id or sender_id longer than 256 bytes",
        ));
    }
    if m.sequence == 0 {
        return Err(Refusal::new(InvalidFormat, "sequence 0: messages count from 1"));
    }
    let sender = sender(m.sender)?;
    if sender == Sender::Advisor && m.sender_id.is_empty() {
        return Err(Refusal::new(InvalidFormat, "an advisor's message needs sender_id"));
    }
    // The text: 64 KiB, + nonce and tag.
    if m.sealed_text.len() > MAX_TEXT + 28 {
        return Err(Refusal::new(
            OversizedChunk,
            format!("sealed_text of {} bytes (at most 64 KiB of text)", m.sealed_text.len()),
        ));
    }
    if m.sealed_text.len() < 28 {
        return Err(Refusal::new(
            InvalidFormat,
            "sealed_text missing or shorter than nonce and tag",
        ));
    }
    if m.attachments.len() > 16 {
        return Err(Refusal::new(
            InvalidFormat,
            format!("{} attachments (at most 16)", m.attachments.len()),
        ));
    }
    for a in &m.attachments {
        if a.reference.is_empty() || a.reference.len() > MAX_ID || a.media_type.len() > 128 {
            return Err(Refusal::new(
                InvalidFormat,
                "an attachment's reference is missing or longer than 256 bytes, or its media_type longer than 128",
            ));
        }
    }
    Ok(sender)
}

/// The longest message text accepted (bytes of UTF-8).
pub const MAX_TEXT: usize = 64 * 1024;

/// A wire `ServiceCategory` as the domain's (`Unspecified` for unknown values).
pub fn service_category(v: i32) -> ServiceCategory {
    match v1::ServiceCategory::try_from(v) {
        Ok(v1::ServiceCategory::InvestmentAdvice) => ServiceCategory::InvestmentAdvice,
        Ok(v1::ServiceCategory::Loan) => ServiceCategory::Loan,
        Ok(v1::ServiceCategory::Savings) => ServiceCategory::Savings,
        Ok(v1::ServiceCategory::Insurance) => ServiceCategory::Insurance,
        Ok(v1::ServiceCategory::Payments) => ServiceCategory::Payments,
        Ok(v1::ServiceCategory::General) => ServiceCategory::General,
        _ => ServiceCategory::Unspecified,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Every codec, sample rate, channel count and role list, against the
    /// contract's rules written out independently (docs/telephony-contract.md
    /// 2.3): an unknown codec is `UNKNOWN_CODEC`; G.711 is 8 kHz only, L16
    /// one of five rates; 1 or 2 channels; roles one per channel (or none:
    /// the defaults), stereo one agent and one customer. Everything else is
    /// `INVALID_FORMAT`, and what passes is stored exactly as sent.
    #[test]
    fn every_audio_format_combination_is_checked_at_call_start() {
        use v1::ChannelRole as R;
        let (a, c, m, u) = (
            R::Agent as i32,
            R::Customer as i32,
            R::Mixed as i32,
            R::Unspecified as i32,
        );
        let codecs = [
            v1::Codec::Unspecified as i32,
            v1::Codec::Pcmu as i32,
            v1::Codec::Pcma as i32,
            v1::Codec::L16 as i32,
            99,
        ];
        let rates = [
            0, 7_999, 8_000, 11_025, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000, 96_000,
        ];
        let role_lists: [&[i32]; 13] = [
            &[],
            &[m],
            &[a],
            &[c],
            &[u],
            &[42],
            &[a, c],
            &[c, a],
            &[a, a],
            &[m, a],
            &[c, m],
            &[a, c, m],
            &[a, c, a, c],
        ];
        let (mut accepted, mut refused) = (0, 0);
        for &codec in &codecs {
            for &rate in &rates {
                for channels in 0..=4u32 {
                    for roles in role_lists {
                        let wire = v1::AudioFormat {
                            codec,
                            sample_rate_hz: rate,
                            channels,
                            channel_roles: roles.to_vec(),
                        };
                        // The contract's rules.
                        let want: Result<(), DeadLetterReason> = (|| {
                            let rate_ok = match v1::Codec::try_from(codec) {
                                Ok(v1::Codec::Pcmu | v1::Codec::Pcma) => rate == 8_000,
                                Ok(v1::Codec::L16) => [8_000, 16_000, 24_000, 32_000, 48_000].contains(&rate),
                                _ => return Err(DeadLetterReason::UnknownCodec),
                            };
                            let effective: Vec<i32> = match (roles, channels) {
                                ([], 1) => vec![m],
                                ([], 2) => vec![a, c],
                                ([], _) => return Err(DeadLetterReason::InvalidFormat),
                                (r, n) if r.len() == n as usize => r.to_vec(),
                                _ => return Err(DeadLetterReason::InvalidFormat),
                            };
                            let roles_ok = match effective.as_slice() {
                                [one] => [a, c, m].contains(one),
                                [x, y] => (*x == a && *y == c) || (*x == c && *y == a),
                                _ => false,
                            };
                            if rate_ok && roles_ok {
                                Ok(())
                            } else {
                                Err(DeadLetterReason::InvalidFormat)
                            }
                        })();
                        let got = audio_format(Some(&wire));
                        let case = format!("{wire:?}");
                        match (want, got) {
                            (Ok(()), Ok(f)) => {
                                accepted += 1;
                                assert_eq!(f.sample_rate_hz(), rate, "{case}");
                                assert_eq!(u32::from(f.channels()), channels, "{case}");
                                assert_eq!(f.codec().bytes_per_sample(), if codec == 3 { 2 } else { 1 }, "{case}");
                            }
                            (Err(reason), Err(r)) => {
                                refused += 1;
                                assert_eq!(r.reason, reason, "{case}: {}", r.detail);
                                assert!(!r.detail.is_empty(), "{case}");
                            }
                            (want, got) => panic!("{case}: expected {want:?}, got {got:?}"),
                        }
                    }
                }
            }
        }
        // (PCMU at 1 rate, PCMA at 1, L16 at 5) × (4 mono role lists, the
        // empty one included, + 3 stereo) accepted.
        assert_eq!(accepted, (1 + 1 + 5) * (4 + 3));
        assert!(refused > 2_000, "{refused}");
        assert!(audio_format(None).is_err());
    }

    /// The integrator's case: G.711 at 16 kHz would play at double speed.
    #[test]
    fn g711_at_16_khz_is_an_invalid_format() {
        let f = v1::AudioFormat {
            codec: v1::Codec::Pcmu as i32,
            sample_rate_hz: 16_000,
            channels: 2,
            channel_roles: Vec::new(),
        };
        let r = audio_format(Some(&f)).unwrap_err();
        assert_eq!(r.reason, DeadLetterReason::InvalidFormat);
        assert!(
            r.detail.contains("16000 Hz") && r.detail.contains("pcmu"),
            "{}",
            r.detail
        );
    }

    #[test]
    fn a_ki_notice_needs_its_offset() {
        let mut n = v1::KiNotice {
            at: None,
            offset: None,
            method: v1::KiNoticeMethod::Advisor as i32,
            announcement_id: String::new(),
            by: "adv-1042".into(),
        };
        let refused = ki_notice(&n, 5).unwrap_err();
        assert_eq!(refused.reason, DeadLetterReason::InvalidFormat);
        n.offset = Some(duration(2_500_000));
        let got = ki_notice(&n, 5).unwrap();
        assert_eq!(
            (got.at_us, got.offset_us, got.method),
            (5, 2_500_000, KiNoticeMethod::Advisor)
        );
        assert_eq!(got.by, "adv-1042");
        n.offset = Some(prost_types::Duration { seconds: -1, nanos: 0 });
        assert!(ki_notice(&n, 5).is_err());
        n.offset = Some(duration(1));
        n.method = 99;
        assert_eq!(ki_notice(&n, 5).unwrap().method, KiNoticeMethod::Unspecified);
    }

    fn ctx() -> v1::CallContext {
        v1::CallContext {
            by: "cti-genesys".into(),
            desk: Some(v1::Desk::Markets as i32),
            ..Default::default()
        }
    }

    #[test]
    fn call_context_sets_only_what_is_set() {
        let c = call_context(&ctx(), 7).unwrap();
        assert_eq!(c.desk, Some(Desk::Markets));
        assert_eq!(
            (c.advisor_id, c.customer_ref, c.service_category, c.at_us),
            (None, None, None, 7)
        );
        let c = call_context(
            &v1::CallContext {
                service_category: Some(v1::ServiceCategory::InvestmentAdvice as i32),
                reason: "advice given".into(),
                advisor_id: Some("a-2".into()),
                ..ctx()
            },
            7,
        )
        .unwrap();
        assert_eq!(c.service_category, Some(ServiceCategory::InvestmentAdvice));
        assert_eq!(c.advisor_id.as_deref(), Some("a-2"));
    }

    #[test]
    fn call_context_refusals_say_why() {
        let refused = |c: v1::CallContext, needle: &str| {
            let r = call_context(&c, 0).unwrap_err();
            assert_eq!(r.reason, DeadLetterReason::ContextRefused);
            assert!(r.detail.contains(needle), "{} lacks {needle}", r.detail);
        };
        refused(
            v1::CallContext {
                by: " ".into(),
                ..ctx()
            },
            "(by)",
        );
        refused(v1::CallContext { desk: None, ..ctx() }, "sets nothing");
        refused(v1::CallContext { desk: Some(0), ..ctx() }, "desk 0 is unspecified");
        refused(
            v1::CallContext {
                desk: Some(99),
                ..ctx()
            },
            "desk 99",
        );
        refused(
            v1::CallContext {
                service_category: Some(0),
                reason: "r".into(),
                ..ctx()
            },
            "service_category 0",
        );
        refused(
            v1::CallContext {
                service_category: Some(v1::ServiceCategory::Loan as i32),
                ..ctx()
            },
            "needs a reason",
        );
        refused(
            v1::CallContext {
                advisor_id: Some(String::new()),
                ..ctx()
            },
            "advisor_id is set but empty",
        );
        refused(
            v1::CallContext {
                customer_ref: Some("x".repeat(257)),
                ..ctx()
            },
            "customer_ref is over 256",
        );
        refused(
            v1::CallContext {
                by: "b".repeat(257),
                ..ctx()
            },
            "over 256",
        );
        refused(
            v1::CallContext {
                reason: "r".repeat(1025),
                ..ctx()
            },
            "reason over 1024",
        );
    }
}
