//! The retention policy engine (R8, R10, R11, R12): from a call's facts and an
//! artifact kind, which retention class keeps it, until when, on which storage
//! tier, and the chain of rules that decided. Pure: no IO, no clock (the
//! caller passes the facts, including times).
//!
//! Rules come from a TOML policy (`policy/default.toml` holds the bank's
//! defaults). A policy is accepted only if, for every artifact kind, its
//! rules cover every combination of service category, desk and KI use
//! exactly once; [`Policy::parse`] names every gap and overlap otherwise.

use crate::model::{Channel, Desk, KeyClass, ServiceCategory};
use crate::time::{add_years, utc_time};
use serde::Deserialize;
use std::fmt;

/// The bank's default policy, shipped with opptak.
pub const DEFAULT_POLICY: &str = include_str!("../policy/default.toml");

/// What is kept of a call, each under its own retention.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ArtifactKind {
    Recording,
    ArchiveCopy,
    KiAudio,
    Transcript,
    Draft,
    TopicTags,
    ApprovedSummary,
    /// A conversation's redacted copy for analysis and improvement.
    ChatAnalysis,
    /// A conversation an advisor took part in.
    ChatAdvisor,
    /// A logged-in conversation as the customer sees it in the online bank.
    ChatCustomer,
    /// A conversation kept under the securities act (WORM archive).
    ChatArchive,
}

impl ArtifactKind {
    pub const ALL: [ArtifactKind; 11] = [
        Self::Recording,
        Self::ArchiveCopy,
        Self::KiAudio,
        Self::Transcript,
        Self::Draft,
        Self::TopicTags,
        Self::ApprovedSummary,
        Self::ChatAnalysis,
        Self::ChatAdvisor,
        Self::ChatCustomer,
        Self::ChatArchive,
    ];

    /// What is kept of a call.
    pub const CALL: [ArtifactKind; 7] = [
        Self::Recording,
        Self::ArchiveCopy,
        Self::KiAudio,
        Self::Transcript,
        Self::Draft,
        Self::TopicTags,
        Self::ApprovedSummary,
    ];

    /// What is kept of a conversation (chat, secure message, e-mail).
    pub const CONVERSATION: [ArtifactKind; 4] = [
        Self::ChatAnalysis,
        Self::ChatAdvisor,
        Self::ChatCustomer,
        Self::ChatArchive,
    ];

    /// A kind kept of conversations rather than of calls.
    pub fn of_conversation(self) -> bool {
        Self::CONVERSATION.contains(&self)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Recording => "recording",
            Self::ArchiveCopy => "archive-copy",
            Self::KiAudio => "ki-audio",
            Self::Transcript => "transcript",
            Self::Draft => "draft",
            Self::TopicTags => "topic-tags",
            Self::ApprovedSummary => "approved-summary",
            Self::ChatAnalysis => "chat-analysis",
            Self::ChatAdvisor => "chat-advisor",
            Self::ChatCustomer => "chat-customer",
            Self::ChatArchive => "chat-archive",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for ArtifactKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an artifact is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    /// The blob store.
    Hot,
    /// WORM storage that refuses deletes before retain-until.
    Archive,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hot => "hot",
            Self::Archive => "archive",
        }
    }
}

/// A retention period.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Period {
    Hours(u32),
    Days(u32),
    /// Calendar years.
    Years(u32),
}

impl Period {
    fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
        let n: u32 = n.parse().ok()?;
        match unit {
            "h" => Some(Self::Hours(n)),
            "d" => Some(Self::Days(n)),
            "y" => Some(Self::Years(n)),
            _ => None,
        }
    }

    /// The instant `self` after `from_us`.
    pub fn after(self, from_us: i64) -> i64 {
        match self {
            Self::Hours(h) => from_us + h as i64 * 3_600_000_000,
            Self::Days(d) => from_us + d as i64 * 86_400_000_000,
            Self::Years(y) => add_years(from_us, y),
        }
    }

    /// The shortest span this period can be, in milliseconds (a calendar
    /// year is at least 365 days): a copy that must not outlive the period,
    /// such as a Kafka topic's `retention.ms`, is kept at most this long.
    pub fn shortest_ms(self) -> i64 {
        const HOUR_MS: i64 = 3_600_000;
        match self {
            Self::Hours(h) => h as i64 * HOUR_MS,
            Self::Days(d) => d as i64 * 24 * HOUR_MS,
            Self::Years(y) => y as i64 * 365 * 24 * HOUR_MS,
        }
    }

    /// For ordering periods of different units (not for computing instants).
    fn approx_hours(self) -> u64 {
        match self {
            Self::Hours(h) => h as u64,
            Self::Days(d) => d as u64 * 24,
            Self::Years(y) => y as u64 * 8766,
        }
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Hours(n) => write!(f, "{n}h"),
            Self::Days(n) => write!(f, "{n}d"),
            Self::Years(n) => write!(f, "{n}y"),
        }
    }
}

/// Which calls or conversations a rule applies to; an absent field matches
/// everything. `ki_active` is about calls; `channel`, `logged_in` and
/// `advisor` about conversations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Condition {
    pub service_category: Option<Vec<ServiceCategory>>,
    pub desk: Option<Vec<Desk>>,
    pub ki_active: Option<bool>,
    pub channel: Option<Vec<Channel>>,
    pub logged_in: Option<bool>,
    pub advisor: Option<bool>,
}

/// The facts of one case a rule is matched against.
#[derive(Clone, Copy, Debug)]
struct Case {
    category: ServiceCategory,
    desk: Desk,
    ki_active: bool,
    conversation: Option<ConversationCase>,
}

#[derive(Clone, Copy, Debug)]
struct ConversationCase {
    channel: Channel,
    logged_in: bool,
    advisor: bool,
}

impl Condition {
    fn matches(&self, case: Case) -> bool {
        let common = self
            .service_category
            .as_ref()
            .is_none_or(|c| c.contains(&case.category))
            && self.desk.as_ref().is_none_or(|d| d.contains(&case.desk));
        common
            && match case.conversation {
                None => self.ki_active.is_none_or(|k| k == case.ki_active),
                Some(c) => {
                    self.channel.as_ref().is_none_or(|ch| ch.contains(&c.channel))
                        && self.logged_in.is_none_or(|l| l == c.logged_in)
                        && self.advisor.is_none_or(|a| a == c.advisor)
                }
            }
    }
}

impl fmt::Display for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "service_category={} desk={}", self.category, self.desk)?;
        match self.conversation {
            None => write!(f, " ki_active={}", self.ki_active),
            Some(c) => write!(
                f,
                " channel={} logged_in={} advisor={}",
                c.channel, c.logged_in, c.advisor
            ),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub id: String,
    pub artifacts: Vec<ArtifactKind>,
    pub when: Condition,
    /// `None`: the artifact is not kept at all for these calls.
    pub keep: Option<Period>,
    pub class: Option<KeyClass>,
    pub tier: Tier,
    pub basis: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Extension {
    pub artifacts: Vec<ArtifactKind>,
    pub max: Period,
    pub basis: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OptOutRule {
    pub artifacts: Vec<ArtifactKind>,
    pub basis: String,
}

/// A validated retention policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub rules: Vec<Rule>,
    pub extension: Extension,
    pub opt_out: OptOutRule,
    /// What a customer's objection to the analysis of their conversations
    /// ends at once.
    pub objection: OptOutRule,
}

/// Why a policy file was refused: every problem, each naming its rule or case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyError(pub Vec<String>);

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the retention policy is invalid ({} problem(s)):", self.0.len())?;
        for p in &self.0 {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    version: u32,
    #[serde(default, rename = "rule")]
    rules: Vec<RawRule>,
    extension: RawExtension,
    opt_out: RawOptOut,
    objection: RawOptOut,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: String,
    artifacts: Vec<String>,
    #[serde(default)]
    when: RawCondition,
    keep: String,
    class: Option<String>,
    tier: Option<String>,
    basis: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCondition {
    service_category: Option<Vec<String>>,
    desk: Option<Vec<String>>,
    ki_active: Option<bool>,
    channel: Option<Vec<String>>,
    logged_in: Option<bool>,
    advisor: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExtension {
    artifacts: Vec<String>,
    max: String,
    basis: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOptOut {
    artifacts: Vec<String>,
    basis: String,
}

const CATEGORIES: [ServiceCategory; 7] = [
    ServiceCategory::Unspecified,
    ServiceCategory::InvestmentAdvice,
    ServiceCategory::Loan,
    ServiceCategory::Savings,
    ServiceCategory::Insurance,
    ServiceCategory::Payments,
    ServiceCategory::General,
];
const DESKS: [Desk; 5] = [
    Desk::Unspecified,
    Desk::CustomerCenter,
    Desk::Markets,
    Desk::PrivateBanking,
    Desk::Corporate,
];

impl Policy {
    /// The shipped default policy.
    pub fn default_policy() -> Self {
        // The default is checked by a unit test; failing here is a build defect.
        Self::parse(DEFAULT_POLICY).unwrap_or_else(|e| panic!("the shipped default policy is invalid: {e}"))
    }

    /// Parses and validates a policy file.
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        let raw: RawPolicy = toml::from_str(text).map_err(|e| PolicyError(vec![format!("not a policy file: {e}")]))?;
        let mut errs = Vec::new();
        if raw.version != 1 {
            errs.push(format!("version {} is not supported (expected 1)", raw.version));
        }
        let kinds = |what: &str, names: &[String], errs: &mut Vec<String>| -> Vec<ArtifactKind> {
            names
                .iter()
                .filter_map(|n| {
                    let k = ArtifactKind::parse(n);
                    if k.is_none() {
                        errs.push(format!(
                            "{what}: unknown artifact {n:?} (expected one of {})",
                            ArtifactKind::ALL.map(|k| k.as_str()).join(", ")
                        ));
                    }
                    k
                })
                .collect()
        };
        let mut rules = Vec::new();
        let mut ids = std::collections::BTreeSet::new();
        for r in raw.rules {
            let what = format!("rule {:?}", r.id);
            if !ids.insert(r.id.clone()) {
                errs.push(format!("{what}: the id is used twice"));
            }
            let artifacts = kinds(&what, &r.artifacts, &mut errs);
            if r.artifacts.is_empty() {
                errs.push(format!("{what}: no artifacts"));
            }
            let when = Condition {
                service_category: r.when.service_category.map(|v| {
                    v.iter()
                        .filter_map(|s| {
                            let c = ServiceCategory::parse(s);
                            if c.is_none() {
                                errs.push(format!("{what}: unknown service_category {s:?}"));
                            }
                            c
                        })
                        .collect()
                }),
                desk: r.when.desk.map(|v| {
                    v.iter()
                        .filter_map(|s| {
                            let d = Desk::parse(s);
                            if d.is_none() {
                                errs.push(format!("{what}: unknown desk {s:?}"));
                            }
                            d
                        })
                        .collect()
                }),
                ki_active: r.when.ki_active,
                channel: r.when.channel.map(|v| {
                    v.iter()
                        .filter_map(|s| {
                            let c = Channel::parse(s);
                            if c.is_none() {
                                errs.push(format!("{what}: unknown channel {s:?}"));
                            }
                            c
                        })
                        .collect()
                }),
                logged_in: r.when.logged_in,
                advisor: r.when.advisor,
            };
            let calls = artifacts.iter().any(|a| !a.of_conversation());
            let conversations = artifacts.iter().any(|a| a.of_conversation());
            if calls && conversations {
                errs.push(format!(
                    "{what}: mixes artifacts of calls and of conversations (give each its own rule)"
                ));
            }
            if calls && (when.channel.is_some() || when.logged_in.is_some() || when.advisor.is_some()) {
                errs.push(format!(
                    "{what}: channel, logged_in and advisor are conditions on conversations, not calls"
                ));
            }
            if conversations && when.ki_active.is_some() {
                errs.push(format!("{what}: ki_active is a condition on calls, not conversations"));
            }
            let keep = if r.keep.trim() == "none" {
                None
            } else {
                let p = Period::parse(&r.keep);
                if p.is_none() {
                    errs.push(format!(
                        "{what}: keep = {:?} is not a period (e.g. \"24h\", \"30d\", \"5y\", or \"none\")",
                        r.keep
                    ));
                }
                p
            };
            let class = r.class.as_deref().and_then(|c| {
                let k = KeyClass::parse(c);
                if k.is_none() {
                    errs.push(format!("{what}: unknown class {c:?}"));
                }
                k
            });
            if keep.is_some() && r.class.is_none() {
                errs.push(format!("{what}: an artifact that is kept needs a class (its data key)"));
            }
            let tier = match r.tier.as_deref() {
                None | Some("hot") => Tier::Hot,
                Some("archive") => Tier::Archive,
                Some(t) => {
                    errs.push(format!("{what}: unknown tier {t:?} (hot or archive)"));
                    Tier::Hot
                }
            };
            if r.basis.trim().is_empty() {
                errs.push(format!("{what}: state its legal basis"));
            }
            rules.push(Rule {
                id: r.id,
                artifacts,
                when,
                keep,
                class,
                tier,
                basis: r.basis,
            });
        }
        let extension = Extension {
            artifacts: kinds("[extension]", &raw.extension.artifacts, &mut errs),
            max: Period::parse(&raw.extension.max).unwrap_or_else(|| {
                errs.push(format!("[extension]: max = {:?} is not a period", raw.extension.max));
                Period::Years(0)
            }),
            basis: raw.extension.basis,
        };
        let opt_out = OptOutRule {
            artifacts: kinds("[opt_out]", &raw.opt_out.artifacts, &mut errs),
            basis: raw.opt_out.basis,
        };
        let objection = OptOutRule {
            artifacts: kinds("[objection]", &raw.objection.artifacts, &mut errs),
            basis: raw.objection.basis,
        };
        if objection.artifacts.iter().any(|a| !a.of_conversation()) {
            errs.push("[objection]: lists artifacts of calls (a call's KI objection is [opt_out])".into());
        }
        // Every case covered exactly once.
        for kind in ArtifactKind::ALL {
            let mut missing = Vec::new();
            let mut overlaps = std::collections::BTreeMap::<String, Vec<String>>::new();
            for case in cases(kind.of_conversation()) {
                let hits: Vec<&str> = rules
                    .iter()
                    .filter(|r| r.artifacts.contains(&kind) && r.when.matches(case))
                    .map(|r| r.id.as_str())
                    .collect();
                let case = case.to_string();
                match hits.len() {
                    0 => missing.push(case),
                    1 => {}
                    _ => overlaps.entry(hits.join(" and ")).or_default().push(case),
                }
            }
            if !missing.is_empty() {
                errs.push(format!(
                    "{kind}: no rule for {} case(s), e.g. {}",
                    missing.len(),
                    missing[0]
                ));
            }
            for (rules, cases) in overlaps {
                errs.push(format!(
                    "{kind}: rules {rules} overlap in {} case(s), e.g. {}",
                    cases.len(),
                    cases[0]
                ));
            }
        }
        for r in &rules {
            if let Some(keep) = r.keep {
                for a in r.artifacts.iter().filter(|a| extension.artifacts.contains(a)) {
                    if keep.approx_hours() > extension.max.approx_hours() {
                        errs.push(format!(
                            "rule {:?}: keeps {a} {keep}, longer than the extension maximum {}",
                            r.id, extension.max
                        ));
                    }
                }
            }
        }
        if errs.is_empty() {
            Ok(Self {
                rules,
                extension,
                opt_out,
                objection,
            })
        } else {
            Err(PolicyError(errs))
        }
    }

    /// The one rule for this artifact and these facts (validation guarantees it).
    fn rule(&self, kind: ArtifactKind, case: Case) -> Option<&Rule> {
        self.rules
            .iter()
            .find(|r| r.artifacts.contains(&kind) && r.when.matches(case))
    }

    /// The longest any rule keeps any of `kinds` (before extensions and
    /// holds, which apply to stored artifacts, not to copies in transit);
    /// `None` when no rule keeps them at all.
    pub fn longest_keep(&self, kinds: &[ArtifactKind]) -> Option<Period> {
        self.rules
            .iter()
            .filter(|r| r.artifacts.iter().any(|a| kinds.contains(a)))
            .filter_map(|r| r.keep)
            .max_by_key(|p| p.approx_hours())
    }

    /// Decides one artifact's retention.
    pub fn decide(&self, facts: &RetentionFacts, kind: ArtifactKind) -> Decision {
        let mut chain = Vec::new();
        let category = match facts.reclassified {
            Some((c, ref by)) if c != facts.service_category => {
                chain.push(format!("reclassified from {} to {c} by {by}", facts.service_category));
                c
            }
            _ => facts.service_category,
        };
        let what = if facts.conversation.is_some() {
            "conversation"
        } else {
            "call"
        };
        if kind.of_conversation() != facts.conversation.is_some() {
            chain.push(format!("a {what} has no {kind}"));
            return Decision::not_kept(kind, facts.ended_at_us, chain);
        }
        let case = Case {
            category,
            desk: facts.desk,
            ki_active: facts.ki_active,
            conversation: facts.conversation.as_ref().map(|c| ConversationCase {
                channel: c.channel,
                logged_in: c.logged_in,
                advisor: c.advisor,
            }),
        };
        let Some(rule) = self.rule(kind, case) else {
            // Unreachable for a validated policy; keep nothing rather than guess.
            chain.push("no rule".into());
            return Decision::not_kept(kind, facts.ended_at_us, chain);
        };
        chain.push(format!("{} ({})", rule.id, rule.basis));
        let Some(keep) = rule.keep else {
            return Decision::not_kept(kind, facts.ended_at_us, chain);
        };
        let mut expires = keep.after(facts.ended_at_us);
        chain.push(format!(
            "keep {keep} from the end of the {what}: until {}",
            utc_time(expires)
        ));
        if let Some(ext) = &facts.extension {
            if self.extension.artifacts.contains(&kind) {
                let years = ext.years.min(match self.extension.max {
                    Period::Years(y) => y,
                    _ => 0,
                });
                let until = add_years(facts.ended_at_us, years);
                if until > expires {
                    expires = until;
                    chain.push(format!(
                        "extended to {years}y on the request of {} (case {}): until {} ({})",
                        ext.authority,
                        ext.case,
                        utc_time(expires),
                        self.extension.basis
                    ));
                }
            }
        }
        if let Some(at) = facts.opt_out_at_us {
            if self.opt_out.artifacts.contains(&kind) && at < expires {
                expires = at;
                chain.push(format!(
                    "KI opt-out at {}: purge ({})",
                    utc_time(at),
                    self.opt_out.basis
                ));
            }
        }
        if let Some(at) = facts.conversation.as_ref().and_then(|c| c.objected_at_us) {
            if self.objection.artifacts.contains(&kind) && at < expires {
                expires = at;
                chain.push(format!(
                    "the customer objected to analysis at {}: shred ({})",
                    utc_time(at),
                    self.objection.basis
                ));
            }
        }
        let holds: Vec<&str> = facts.holds.iter().map(String::as_str).collect();
        if !holds.is_empty() {
            chain.push(format!("legal hold {}: kept until released", holds.join(", ")));
        }
        Decision {
            kind,
            kept: true,
            class: rule.class,
            tier: rule.tier,
            expires_at_us: expires,
            held: !holds.is_empty(),
            chain,
        }
    }

    /// Decisions for every artifact kind of a call, or of a conversation.
    pub fn explain(&self, facts: &RetentionFacts) -> Vec<Decision> {
        let kinds: &[ArtifactKind] = if facts.conversation.is_some() {
            &ArtifactKind::CONVERSATION
        } else {
            &ArtifactKind::CALL
        };
        kinds.iter().map(|k| self.decide(facts, *k)).collect()
    }
}

/// Every case a rule for calls (`conversation` false) or for conversations
/// must cover.
fn cases(conversation: bool) -> Vec<Case> {
    let mut out = Vec::new();
    for category in CATEGORIES {
        for desk in DESKS {
            if conversation {
                for channel in Channel::ALL {
                    for logged_in in [false, true] {
                        for advisor in [false, true] {
                            out.push(Case {
                                category,
                                desk,
                                ki_active: false,
                                conversation: Some(ConversationCase {
                                    channel,
                                    logged_in,
                                    advisor,
                                }),
                            });
                        }
                    }
                }
            } else {
                for ki_active in [false, true] {
                    out.push(Case {
                        category,
                        desk,
                        ki_active,
                        conversation: None,
                    });
                }
            }
        }
    }
    out
}

/// The facts of a conversation its retention depends on, beside those it
/// shares with calls (service category, desk, end, holds, extension).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConversationRetention {
    pub channel: Channel,
    pub logged_in: bool,
    pub advisor: bool,
    /// When the customer objected to the analysis of their conversations.
    pub objected_at_us: Option<i64>,
}

/// An authority's extension of a call's retention.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtensionFact {
    pub years: u32,
    pub authority: String,
    pub case: String,
}

/// What the policy decides on, for one call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetentionFacts {
    pub service_category: ServiceCategory,
    pub desk: Desk,
    pub ki_active: bool,
    /// The end of the call (its start while it runs).
    pub ended_at_us: i64,
    pub opt_out_at_us: Option<i64>,
    /// A compliance officer's reclassification: the category and who did it.
    pub reclassified: Option<(ServiceCategory, String)>,
    /// Ids of the legal holds in force on the call.
    pub holds: Vec<String>,
    pub extension: Option<ExtensionFact>,
    /// Set for a conversation (chat, secure message, e-mail), not a call.
    pub conversation: Option<ConversationRetention>,
}

/// One artifact's retention.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub kind: ArtifactKind,
    /// False: the artifact is not kept for this call (or no longer may be).
    pub kept: bool,
    pub class: Option<KeyClass>,
    pub tier: Tier,
    /// When it must be gone (ignored while `held`).
    pub expires_at_us: i64,
    /// A legal hold keeps it past its expiry.
    pub held: bool,
    /// The rules that decided, in order, each with its basis.
    pub chain: Vec<String>,
}

impl Decision {
    fn not_kept(kind: ArtifactKind, at_us: i64, mut chain: Vec<String>) -> Self {
        chain.push("not kept".into());
        Self {
            kind,
            kept: false,
            class: None,
            tier: Tier::Hot,
            expires_at_us: at_us,
            held: false,
            chain,
        }
    }

    /// May the artifact be deleted at `now_us`?
    pub fn expired(&self, now_us: i64) -> bool {
        !self.held && now_us >= self.expires_at_us
    }
}

/// The explanation `opptak policy explain` prints: the facts, then each
/// artifact kind with its class, tier, expiry and the rules that decided.
pub fn render_explanation(facts: &RetentionFacts, decisions: &[Decision]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let medium = match &facts.conversation {
        None => format!("ki_active={}", facts.ki_active),
        Some(c) => format!(
            "conversation channel={} logged_in={} advisor={}{}",
            c.channel,
            c.logged_in,
            c.advisor,
            c.objected_at_us
                .map(|t| format!(" objected to analysis {}", utc_time(t)))
                .unwrap_or_default()
        ),
    };
    let _ = writeln!(
        out,
        "facts: service_category={} desk={} {medium} ended {}{}{}{}{}",
        facts.service_category,
        facts.desk,
        utc_time(facts.ended_at_us),
        facts
            .opt_out_at_us
            .map(|t| format!(", KI opt-out {}", utc_time(t)))
            .unwrap_or_default(),
        facts
            .reclassified
            .as_ref()
            .map(|(c, by)| format!(", reclassified {c} by {by}"))
            .unwrap_or_default(),
        if facts.holds.is_empty() {
            String::new()
        } else {
            format!(", holds {}", facts.holds.join(","))
        },
        facts
            .extension
            .as_ref()
            .map(|e| format!(", extension {}y ({}, {})", e.years, e.authority, e.case))
            .unwrap_or_default(),
    );
    for d in decisions {
        let state = if !d.kept {
            "not kept".to_string()
        } else if d.held {
            format!("HELD (would expire {})", utc_time(d.expires_at_us))
        } else {
            format!("until {}", utc_time(d.expires_at_us))
        };
        let _ = writeln!(
            out,
            "\n{:<17} {:<16} {:<8} {}",
            d.kind.as_str(),
            d.class.map(|c| c.as_str()).unwrap_or("-"),
            d.tier.as_str(),
            state
        );
        for (i, step) in d.chain.iter().enumerate() {
            let _ = writeln!(out, "  {}. {step}", i + 1);
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const END: i64 = 1_795_824_000_000_000; // 2026-11-28 00:00:00 UTC

    #[test]
    fn the_longest_keep_bounds_copies_in_transit() {
        let p = Policy::default_policy();
        assert_eq!(p.longest_keep(&[ArtifactKind::Recording]), Some(Period::Hours(24)));
        assert_eq!(
            p.longest_keep(&[ArtifactKind::Recording, ArtifactKind::KiAudio]),
            Some(Period::Days(30))
        );
        assert_eq!(p.longest_keep(&[ArtifactKind::ApprovedSummary]), Some(Period::Years(5)));
        assert_eq!(Period::Hours(24).shortest_ms(), 86_400_000);
        assert_eq!(Period::Days(30).shortest_ms(), 2_592_000_000);
        assert_eq!(Period::Years(5).shortest_ms(), 157_680_000_000);
    }

    fn facts(category: ServiceCategory, ki: bool) -> RetentionFacts {
        RetentionFacts {
            service_category: category,
            desk: Desk::CustomerCenter,
            ki_active: ki,
            ended_at_us: END,
            opt_out_at_us: None,
            reclassified: None,
            holds: Vec::new(),
            extension: None,
            conversation: None,
        }
    }

    #[test]
    fn the_default_policy_is_valid_and_follows_r8() {
        let p = Policy::default_policy();
        let f = facts(ServiceCategory::InvestmentAdvice, true);
        let d = |k| p.decide(&f, k);
        assert_eq!(d(ArtifactKind::Recording).expires_at_us, END + 24 * 3_600_000_000);
        assert_eq!(d(ArtifactKind::Recording).class, Some(KeyClass::Audio24h));
        let arc = d(ArtifactKind::ArchiveCopy);
        assert_eq!(
            (arc.kept, arc.tier, arc.class),
            (true, Tier::Archive, Some(KeyClass::Archive5y))
        );
        assert_eq!(utc_time(arc.expires_at_us), "2031-11-28 00:00:00");
        assert_eq!(d(ArtifactKind::Transcript).expires_at_us, END + 30 * 86_400_000_000);
        assert_eq!(
            utc_time(d(ArtifactKind::ApprovedSummary).expires_at_us),
            "2031-11-28 00:00:00"
        );
        let general = facts(ServiceCategory::General, false);
        assert!(!p.decide(&general, ArtifactKind::ArchiveCopy).kept);
        assert!(!p.decide(&general, ArtifactKind::KiAudio).kept);
    }

    #[test]
    fn opt_out_extension_hold_and_reclassification() {
        let p = Policy::default_policy();
        let mut f = facts(ServiceCategory::Loan, true);
        f.opt_out_at_us = Some(END - 60_000_000);
        let ki = p.decide(&f, ArtifactKind::KiAudio);
        assert_eq!(ki.expires_at_us, END - 60_000_000);
        assert!(ki.chain.iter().any(|c| c.contains("opt-out")));
        // The recording keeps its own rule.
        assert_eq!(
            p.decide(&f, ArtifactKind::Recording).expires_at_us,
            END + 24 * 3_600_000_000
        );
        f.reclassified = Some((ServiceCategory::InvestmentAdvice, "co-7".into()));
        let arc = p.decide(&f, ArtifactKind::ArchiveCopy);
        assert!(arc.kept && arc.chain[0].contains("reclassified from loan to investment_advice by co-7"));
        f.extension = Some(ExtensionFact {
            years: 9,
            authority: "Finanstilsynet".into(),
            case: "FT-1".into(),
        });
        // Capped at the policy's maximum of 7 years.
        assert_eq!(
            utc_time(p.decide(&f, ArtifactKind::ArchiveCopy).expires_at_us),
            "2033-11-28 00:00:00"
        );
        f.holds = vec!["H-1".into()];
        let held = p.decide(&f, ArtifactKind::Recording);
        assert!(held.held && !held.expired(i64::MAX));
    }

    #[test]
    fn gaps_and_overlaps_are_named() {
        let broken = DEFAULT_POLICY.replace(
            "when = { desk = [\"customer_center\", \"corporate\", \"unspecified\"], service_category = [\"loan\", \"savings\", \"insurance\", \"payments\", \"general\", \"unspecified\"] }",
            "when = { desk = [\"customer_center\", \"corporate\", \"unspecified\"], service_category = [\"loan\", \"investment_advice\"] }",
        );
        assert_ne!(broken, DEFAULT_POLICY);
        let e = Policy::parse(&broken).unwrap_err().to_string();
        assert!(e.contains("archive-copy: no rule for"), "{e}");
        assert!(e.contains("rules investment-archive-5y and no-archive overlap"), "{e}");
        let e = Policy::parse(&DEFAULT_POLICY.replace("keep = \"30d\"", "keep = \"30 days\"")).unwrap_err();
        assert!(
            e.to_string()
                .contains("rule \"ki-30d\": keep = \"30 days\" is not a period"),
            "{e}"
        );
        let e = Policy::parse("version = 1\n[[rule]]\nid = 1").unwrap_err();
        assert!(e.to_string().contains("not a policy file"), "{e}");
    }
}
