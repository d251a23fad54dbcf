//! What staff read in place of a stored code: desks, service categories,
//! roles, languages, channels and topics by name, in the page language.
//! A code the catalogue does not know is shown as "ukjent"/"unknown" with
//! the code in a `title` only by the caller that wants it, never as text.

use super::{cat, Lang};
use crate::identity::Role;
use opptak_domain::model::{Channel, Desk, ServiceCategory};
use opptak_domain::summary::Taxonomy;

/// A desk's name.
pub(crate) fn desk(lang: Lang, code: &str) -> &'static str {
    lang.m(match Desk::parse(code) {
        Some(Desk::CustomerCenter) => cat::common::DESK_CUSTOMER_CENTER,
        Some(Desk::Markets) => cat::common::DESK_MARKETS,
        Some(Desk::PrivateBanking) => cat::common::DESK_PRIVATE_BANKING,
        Some(Desk::Corporate) => cat::common::DESK_CORPORATE,
        Some(Desk::Unspecified) | None => cat::common::UNSPECIFIED,
    })
}

/// A service category's name.
pub(crate) fn service(lang: Lang, code: &str) -> &'static str {
    lang.m(match ServiceCategory::parse(code) {
        Some(ServiceCategory::InvestmentAdvice) => cat::common::SERVICE_INVESTMENT_ADVICE,
        Some(ServiceCategory::Loan) => cat::common::SERVICE_LOAN,
        Some(ServiceCategory::Savings) => cat::common::SERVICE_SAVINGS,
        Some(ServiceCategory::Insurance) => cat::common::SERVICE_INSURANCE,
        Some(ServiceCategory::Payments) => cat::common::SERVICE_PAYMENTS,
        Some(ServiceCategory::General) => cat::common::SERVICE_GENERAL,
        Some(ServiceCategory::Unspecified) | None => cat::common::UNSPECIFIED,
    })
}

/// A channel's name (`phone` for calls).
pub(crate) fn channel(lang: Lang, code: &str) -> &'static str {
    lang.m(match Channel::parse(code) {
        Some(Channel::AinoChatbot) => cat::common::CHANNEL_AINO,
        Some(Channel::AdvisorChat) => cat::common::CHANNEL_ADVISOR_CHAT,
        Some(Channel::SecureMessage) => cat::common::CHANNEL_SECURE_MESSAGE,
        Some(Channel::Email) => cat::common::CHANNEL_EMAIL,
        None if code == "phone" || code.is_empty() => cat::common::CHANNEL_PHONE,
        None => cat::common::UNSPECIFIED,
    })
}

/// A spoken or written language's name (`nb`, `nn`, `no`, `en`).
pub(crate) fn language(lang: Lang, code: &str) -> &'static str {
    lang.m(match code {
        "nb" | "no" | "nn" => cat::common::LANGUAGE_NORWEGIAN,
        "en" => cat::common::LANGUAGE_ENGLISH,
        _ => cat::common::LANGUAGE_OTHER,
    })
}

/// A role's name.
pub(crate) fn role(lang: Lang, role: Role) -> &'static str {
    lang.m(match role {
        Role::Advisor => cat::common::ROLE_ADVISOR,
        Role::TeamLead => cat::common::ROLE_TEAM_LEAD,
        Role::Qa => cat::common::ROLE_QA,
        Role::Compliance => cat::common::ROLE_COMPLIANCE,
        Role::Auditor => cat::common::ROLE_AUDITOR,
        Role::Admin => cat::common::ROLE_ADMIN,
    })
}

/// A topic's label from the taxonomy (the id only if the taxonomy no
/// longer has it: a topic retired after the call was tagged).
pub(crate) fn topic<'a>(lang: Lang, taxonomy: &'a Taxonomy, id: &'a str) -> &'a str {
    taxonomy.get(id).map_or(id, |t| lang.pick(&t.label_nb, &t.label_en))
}

/// Several topics' labels, comma-separated.
pub(crate) fn topics(lang: Lang, taxonomy: &Taxonomy, ids: &[String]) -> String {
    ids.iter()
        .map(|t| topic(lang, taxonomy, t))
        .collect::<Vec<_>>()
        .join(", ")
}
