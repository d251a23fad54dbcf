//! Policy explanations for a fixed set of sample calls match the golden files
//! in `tests/golden/` (regenerate with `UPDATE_GOLDEN=1 cargo test -p
//! opptak-domain --test domain policy_golden::` and review the diff).

use opptak_domain::model::Channel;
use opptak_domain::retention::{
    render_explanation, ConversationRetention, ExtensionFact, Policy, RetentionFacts, DEFAULT_POLICY,
};
use opptak_domain::{Desk, ServiceCategory};

const END: i64 = 1_795_824_000_000_000; // 2026-11-28 00:00:00 UTC
const FEB29: i64 = 1_835_395_200_000_000; // 2028-02-29 00:00:00 UTC

fn base(category: ServiceCategory, desk: Desk, ki: bool) -> RetentionFacts {
    RetentionFacts {
        service_category: category,
        desk,
        ki_active: ki,
        ended_at_us: END + 37 * 60_000_000,
        opt_out_at_us: None,
        reclassified: None,
        holds: Vec::new(),
        extension: None,
        conversation: None,
    }
}

/// A conversation (issue 17) on `channel`, logged in or not, with an advisor or not.
fn chat(channel: Channel, category: ServiceCategory, desk: Desk, logged_in: bool, advisor: bool) -> RetentionFacts {
    let mut f = base(category, desk, false);
    f.conversation = Some(ConversationRetention {
        channel,
        logged_in,
        advisor,
        objected_at_us: None,
    });
    f
}

fn samples() -> Vec<(&'static str, RetentionFacts)> {
    use ServiceCategory::*;
    let mut opt_out = base(Loan, Desk::CustomerCenter, true);
    opt_out.opt_out_at_us = Some(END + 30 * 60_000_000);
    let mut held = base(InvestmentAdvice, Desk::Markets, true);
    held.holds = vec!["hold-17".into()];
    let mut extended = base(InvestmentAdvice, Desk::PrivateBanking, false);
    extended.extension = Some(ExtensionFact {
        years: 7,
        authority: "Finanstilsynet".into(),
        case: "FT-2026-0042".into(),
    });
    let mut reclassified = base(Savings, Desk::PrivateBanking, false);
    reclassified.reclassified = Some((InvestmentAdvice, "co-anne".into()));
    let mut leap = base(InvestmentAdvice, Desk::Markets, false);
    leap.ended_at_us = FEB29 + 3_600_000_000;
    vec![
        ("general", base(General, Desk::CustomerCenter, false)),
        ("investment", base(InvestmentAdvice, Desk::Markets, false)),
        ("ki", base(Payments, Desk::CustomerCenter, true)),
        ("ki-investment", base(InvestmentAdvice, Desk::PrivateBanking, true)),
        ("ki-opt-out", opt_out),
        ("held", held),
        ("extended", extended),
        ("reclassified", reclassified),
        ("leap-day", leap),
        // Issue 16: a Private Banking fund savings plan is archived by its desk.
        ("private-banking-savings", base(Savings, Desk::PrivateBanking, true)),
        // Issue 17: conversations.
        (
            "chat-anonymous-aino",
            chat(Channel::AinoChatbot, General, Desk::Unspecified, false, false),
        ),
        (
            "chat-logged-in-aino",
            chat(Channel::AinoChatbot, Payments, Desk::Unspecified, true, false),
        ),
        (
            "chat-handover",
            chat(Channel::AinoChatbot, Loan, Desk::CustomerCenter, true, true),
        ),
        ("chat-investment-advice", chat_investment_held()),
        ("chat-objection", chat_objected()),
    ]
}

fn chat_investment_held() -> RetentionFacts {
    let mut f = chat(
        Channel::AdvisorChat,
        ServiceCategory::InvestmentAdvice,
        Desk::Markets,
        true,
        true,
    );
    f.holds = vec!["hold-42".into()];
    f.extension = Some(ExtensionFact {
        years: 7,
        authority: "Finanstilsynet".into(),
        case: "FT-2026-0107".into(),
    });
    f
}

fn chat_objected() -> RetentionFacts {
    let mut f = chat(
        Channel::SecureMessage,
        ServiceCategory::Savings,
        Desk::CustomerCenter,
        true,
        true,
    );
    if let Some(c) = f.conversation.as_mut() {
        c.objected_at_us = Some(END + 90 * 86_400_000_000);
    }
    f
}

#[test]
fn explanations_match_the_golden_files() {
    let policy = Policy::default_policy();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let update = std::env::var("UPDATE_GOLDEN").is_ok();
    let mut mismatches = Vec::new();
    for (name, facts) in samples() {
        let text = render_explanation(&facts, &policy.explain(&facts));
        let path = dir.join(format!("{name}.txt"));
        if update {
            std::fs::write(&path, &text).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if want != text {
            mismatches.push(format!("{name}:\n--- golden\n{want}\n--- now\n{text}"));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn a_broken_policy_is_refused_with_a_clear_message() {
    // A rule removed: the KI artifacts of KI calls are then uncovered.
    let start = DEFAULT_POLICY.find("[[rule]]\nid = \"ki-30d\"").unwrap();
    let end = start + DEFAULT_POLICY[start..].find("\n\n").unwrap();
    let broken = format!("{}{}", &DEFAULT_POLICY[..start], &DEFAULT_POLICY[end..]);
    let e = Policy::parse(&broken).unwrap_err().to_string();
    for kind in ["ki-audio", "transcript", "draft", "topic-tags"] {
        assert!(
            e.contains(&format!(
                "{kind}: no rule for 35 case(s), e.g. service_category=unspecified desk=unspecified ki_active=true"
            )),
            "{e}"
        );
    }
    // An unknown artifact and a bad period name their rule.
    let e = Policy::parse(&DEFAULT_POLICY.replace(
        "\"ki-audio\", \"transcript\", \"draft\", \"topic-tags\"]\nwhen = { ki_active = true }",
        "\"ki-audio\", \"transcripts\", \"draft\", \"topic-tags\"]\nwhen = { ki_active = true }",
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains("rule \"ki-30d\": unknown artifact \"transcripts\""), "{e}");
}
