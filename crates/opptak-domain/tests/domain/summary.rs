//! The embedded draft writer on realistic calls (the sample calls of
//! `samples/calls.toml` and Norwegian ones), the taxonomy's validation, and
//! the prompts and schema against the golden files in `tests/golden/summary/`
//! (regenerate with `UPDATE_GOLDEN=1 cargo test -p opptak-domain --test
//! summary` and review the diff).

use opptak_domain::summary::{
    customer_requests, embedded_draft, follow_ups, prompt, Draft, Language, Segment, Speaker, Taxonomy, TopicError,
    DEFAULT_TAXONOMY, EMBEDDED_SOURCE, MAX_ITEMS, MAX_TOPICS, NO_PROMPT, PROMPT_VERSION,
};

fn call(lines: &[&str]) -> Vec<Segment> {
    lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let (who, text) = l.split_once(": ").unwrap();
            Segment::new(Speaker::parse(who).unwrap(), i as f32 * 3.5, text)
        })
        .collect()
}

// samples/calls.toml, demo-0001 .. demo-0005 (demo-0004 up to the opt-out).
const CARD_TWICE: &[&str] = &[
    "agent: Customer centre, good morning. How can I help?",
    "customer: A card payment of four hundred kroner was taken twice.",
    "agent: I see both. I will dispute the duplicate for you.",
    "customer: Great, thank you.",
];
const INDEX_FUND: &[&str] = &[
    "agent: Markets desk, hello.",
    "customer: I want to buy units in the global index fund.",
    "agent: How much, and have you read the key facts?",
    "customer: Fifty thousand kroner, and yes.",
    "agent: Thanks, the order is placed.",
];
const SAVINGS_PLAN: &[&str] = &[
    "agent: Private Banking here, an AI takes notes on this call.",
    "customer: That is fine.",
    "agent: For your daughter, a monthly fund savings plan could suit you.",
    "customer: Let us start with two thousand kroner a month.",
];
const MOVE_MORTGAGE: &[&str] = &[
    "agent: Loans, an AI takes notes on this call.",
    "customer: I want to move my mortgage here.",
    "agent: What is the balance?",
];
const BRANCH_HOURS: &[&str] = &[
    "agent: Customer centre, good morning.",
    "customer: Hi. When does the branch in town open tomorrow?",
    "agent: It opens at nine o'clock.",
    "customer: Perfect, thanks. Bye.",
];
// Norwegian calls, already redacted as the pipeline hands them over.
const MISTET_KORT: &[&str] = &[
    "agent: Kundesenteret, god morgen, du snakker med Kari.",
    "customer: Hei. Jeg har mistet bankkortet mitt, og jeg ser et ukjent trekk på kontoen [ACCOUNT] fra i går.",
    "agent: Det var leit å høre. Jeg sperrer kortet nå med en gang.",
    "customer: Kan dere sende meg et nytt kort?",
    "agent: Ja, vi sender et nytt kort i posten, det kommer om fem virkedager. Jeg sender også en reklamasjon på trekket.",
    "customer: Tusen takk for hjelpen.",
];
const REFINANSIERING: &[&str] = &[
    "agent: Boliglån, dette er Ola.",
    "customer: Hei, jeg vil gjerne refinansiere boliglånet mitt, renten hos dere er for høy.",
    "agent: Hvor mye er det igjen på lånet?",
    "customer: Omtrent to millioner kroner, og jeg lurer på om jeg kan få avdragsfrihet i et år.",
    "agent: Det kan vi se på. Jeg setter opp et møte på torsdag og sender deg et lånetilbud før det.",
    "customer: Flott, takk.",
];
const INNLOGGING: &[&str] = &[
    "agent: Kundesenteret, hva kan jeg hjelpe deg med?",
    "customer: Jeg kommer ikke inn i nettbanken, BankID-en min sier at passordet er feil.",
    "agent: Da er BankID-en trolig låst. Jeg sender deg en lenke på SMS så du kan bestille ny.",
    "customer: Ok, og fungerer mobilbanken i mellomtiden?",
    "agent: Nei, appen bruker samme BankID, så den må være i orden først.",
];

fn draft(lang: &str, lines: &[&str]) -> Draft {
    embedded_draft(&Taxonomy::default_taxonomy(), lang, &call(lines))
}

/// Every summary sentence is a sentence of the transcript, in call order.
fn assert_extractive(d: &Draft, lines: &[&str]) {
    let transcript: String = lines
        .iter()
        .map(|l| l.split_once(": ").unwrap().1)
        .collect::<Vec<_>>()
        .join(" ");
    let mut from = 0;
    for sentence in d
        .summary
        .split_inclusive(['.', '?', '!'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let at = transcript[from..]
            .find(sentence)
            .unwrap_or_else(|| panic!("{sentence:?} is not in the transcript after byte {from}: {transcript:?}"));
        from += at + sentence.len();
    }
}

fn assert_shape(d: &Draft) {
    let taxonomy = Taxonomy::default_taxonomy();
    taxonomy.check_topics(&d.topics).unwrap();
    assert!(!d.summary.trim().is_empty());
    assert!(d.customer_requests.len() <= MAX_ITEMS && d.follow_ups.len() <= MAX_ITEMS);
    assert_eq!(d.source, EMBEDDED_SOURCE);
    assert_eq!(d.prompt_version, NO_PROMPT);
}

#[test]
fn a_double_card_charge_is_about_cards_and_the_dispute_is_a_follow_up() {
    let d = draft("en", CARD_TWICE);
    assert_shape(&d);
    assert_extractive(&d, CARD_TWICE);
    assert_eq!(d.topics, ["cards"]);
    assert_eq!(d.language, "en");
    assert!(
        d.summary
            .contains("A card payment of four hundred kroner was taken twice."),
        "{}",
        d.summary
    );
    assert!(
        d.summary.contains("I will dispute the duplicate for you."),
        "{}",
        d.summary
    );
    assert!(!d.summary.contains("good morning"), "{}", d.summary);
    assert_eq!(d.follow_ups, ["I will dispute the duplicate for you."]);
}

#[test]
fn buying_index_fund_units_is_funds_and_investments() {
    let d = draft("en", INDEX_FUND);
    assert_shape(&d);
    assert_extractive(&d, INDEX_FUND);
    assert_eq!(d.topics, ["savings_funds", "investments_securities"]);
    assert_eq!(d.customer_requests, ["I want to buy units in the global index fund."]);
    assert!(
        d.summary.starts_with("I want to buy units in the global index fund."),
        "{}",
        d.summary
    );
}

#[test]
fn a_savings_plan_is_savings() {
    let d = draft("en", SAVINGS_PLAN);
    assert_shape(&d);
    assert_extractive(&d, SAVINGS_PLAN);
    assert_eq!(d.topics, ["savings_funds"]);
    assert_eq!(d.customer_requests, ["Let us start with two thousand kroner a month."]);
    assert!(d.summary.contains("monthly fund savings plan"), "{}", d.summary);
    assert!(!d.summary.contains("That is fine."), "{}", d.summary);
    // The KI notice is read on every KI call: no summary material.
    assert!(!d.summary.contains("takes notes"), "{}", d.summary);
}

#[test]
fn moving_a_mortgage_is_mortgages_and_loans() {
    let d = draft("en", MOVE_MORTGAGE);
    assert_shape(&d);
    assert_extractive(&d, MOVE_MORTGAGE);
    assert_eq!(d.topics, ["mortgage_loans"]);
    assert_eq!(d.customer_requests, ["I want to move my mortgage here."]);
    assert!(d.follow_ups.is_empty());
    assert_eq!(d.summary, "I want to move my mortgage here.");
}

#[test]
fn a_call_about_opening_hours_is_other() {
    let d = draft("en", BRANCH_HOURS);
    assert_shape(&d);
    assert_extractive(&d, BRANCH_HOURS);
    assert_eq!(d.topics, ["other"]);
    assert_eq!(d.customer_requests, ["When does the branch in town open tomorrow?"]);
    assert!(
        d.summary.contains("When does the branch in town open tomorrow?"),
        "{}",
        d.summary
    );
    assert!(d.summary.contains("It opens at nine o'clock."), "{}", d.summary);
}

#[test]
fn a_lost_card_with_an_unknown_charge_is_cards_and_fraud() {
    let d = draft("nb", MISTET_KORT);
    assert_shape(&d);
    assert_extractive(&d, MISTET_KORT);
    assert_eq!(d.language, "nb");
    assert_eq!(d.topics, ["cards", "fraud_security"]);
    assert_eq!(d.customer_requests, ["Kan dere sende meg et nytt kort?"]);
    assert_eq!(
        d.follow_ups,
        [
            "Jeg sperrer kortet nå med en gang.",
            "Ja, vi sender et nytt kort i posten, det kommer om fem virkedager.",
            "Jeg sender også en reklamasjon på trekket.",
        ]
    );
    assert!(d.summary.contains("Jeg har mistet bankkortet mitt"), "{}", d.summary);
    assert!(!d.summary.contains("Tusen takk"), "{}", d.summary);
    assert!(d.summary.split_inclusive(['.', '?', '!']).count() <= 3, "{}", d.summary);
}

#[test]
fn refinancing_a_mortgage_in_norwegian() {
    let d = draft("nb-NO", REFINANSIERING);
    assert_shape(&d);
    assert_extractive(&d, REFINANSIERING);
    assert_eq!(d.topics, ["mortgage_loans"]);
    assert_eq!(
        d.customer_requests,
        [
            "Hei, jeg vil gjerne refinansiere boliglånet mitt, renten hos dere er for høy.",
            "Omtrent to millioner kroner, og jeg lurer på om jeg kan få avdragsfrihet i et år.",
        ]
    );
    assert_eq!(
        d.follow_ups,
        ["Jeg setter opp et møte på torsdag og sender deg et lånetilbud før det."]
    );
    assert!(d.summary.contains("refinansiere boliglånet"), "{}", d.summary);
    assert!(d.summary.contains("Jeg setter opp et møte"), "{}", d.summary);
}

#[test]
fn a_locked_bankid_is_online_bank_and_login() {
    let d = draft("no", INNLOGGING);
    assert_shape(&d);
    assert_extractive(&d, INNLOGGING);
    assert_eq!(d.topics, ["online_mobile_bank_login"]);
    assert_eq!(d.customer_requests, ["Ok, og fungerer mobilbanken i mellomtiden?"]);
    assert_eq!(d.follow_ups, ["Jeg sender deg en lenke på SMS så du kan bestille ny."]);
}

#[test]
fn the_language_is_guessed_when_the_hint_is_unknown() {
    assert_eq!(draft("", MISTET_KORT).language, "nb");
    assert_eq!(draft("auto", CARD_TWICE).language, "en");
}

#[test]
fn an_empty_or_polite_only_call_still_gives_a_valid_draft() {
    let empty = embedded_draft(&Taxonomy::default_taxonomy(), "nb", &[]);
    assert_shape(&empty);
    assert_eq!(empty.topics, ["other"]);
    let polite = draft("en", &["agent: Hello.", "customer: Hi, thanks, bye."]);
    assert_shape(&polite);
    assert_eq!(polite.topics, ["other"]);
}

#[test]
fn requests_and_follow_ups_come_only_from_their_speaker() {
    // The agent asking "can you" is no customer request; the customer saying
    // "I will" is no promise of the bank.
    let segs = call(&[
        "agent: Can you confirm your address?",
        "customer: I will send it later.",
    ]);
    assert!(customer_requests(Language::En, &segs).is_empty());
    assert!(follow_ups(Language::En, &segs).is_empty());
}

#[test]
fn classification_is_bounded_and_only_taxonomy_ids_come_out() {
    let t = Taxonomy::default_taxonomy();
    let everything = call(&[
        "customer: My mortgage, my card, the online bank login, my savings fund, my shares, a payment, \
         a fraud, my insurance, my pension and a complaint.",
    ]);
    let topics = t.classify(Language::En, &everything);
    assert_eq!(topics.len(), MAX_TOPICS, "{topics:?}");
    t.check_topics(&topics).unwrap();
}

#[test]
fn drafts_round_trip_through_serde() {
    let d = draft("en", CARD_TWICE);
    let toml = toml::to_string(&d).unwrap();
    assert_eq!(toml::from_str::<Draft>(&toml).unwrap(), d);
}

// ---------------------------------------------------------------- taxonomy ---

#[test]
fn the_taxonomy_has_the_agreed_topics() {
    let t = Taxonomy::default_taxonomy();
    let ids: Vec<&str> = t.ids().collect();
    assert_eq!(
        ids,
        [
            "mortgage_loans",
            "cards",
            "online_mobile_bank_login",
            "savings_funds",
            "investments_securities",
            "payments_transfers",
            "fraud_security",
            "insurance",
            "pension",
            "complaints",
            "other",
        ]
    );
    assert_eq!(t.get("mortgage_loans").unwrap().label(Language::Nb), "Boliglån og lån");
    assert_eq!(t.get("cards").unwrap().label(Language::En), "Cards");
}

#[test]
fn a_broken_taxonomy_is_refused_with_every_problem_named() {
    let text = r#"
version = 0
[[topic]]
id = "cards"
nb = "Kort"
[[topic]]
id = "cards"
nb = "Kort"
en = "Cards"
[[topic]]
id = "Bad Id"
nb = "X"
en = "X"
phrases_en = ["  "]
"#;
    let err = Taxonomy::parse(text).unwrap_err().to_string();
    for want in [
        "version must be 1 or higher",
        "topic \"cards\": the en label is missing",
        "topic \"cards\": id is used by more than one topic",
        "topic \"Bad Id\": id may hold only a-z, 0-9 and _",
        "topic \"Bad Id\": en phrase \"  \" holds no word",
        "no topic \"other\" to fall back to",
    ] {
        assert!(err.contains(want), "{want:?} missing from: {err}");
    }
    let unknown_field =
        Taxonomy::parse("version = 1\n[[topic]]\nid = \"other\"\nnb = \"Annet\"\nen = \"Other\"\nlabel = \"x\"\n");
    assert!(unknown_field.unwrap_err().to_string().contains("unknown field `label`"));
}

#[test]
fn topic_checks_name_the_problem() {
    let t = Taxonomy::default_taxonomy();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(t.check_topics(&[]), Err(TopicError::Empty));
    assert_eq!(
        t.check_topics(&s(&["cards", "weather"])),
        Err(TopicError::Unknown("weather".into()))
    );
    assert_eq!(
        t.check_topics(&s(&["cards", "cards"])),
        Err(TopicError::Duplicate("cards".into()))
    );
    assert_eq!(
        t.check_topics(&s(&["cards", "pension", "insurance", "other"])),
        Err(TopicError::TooMany(4))
    );
    assert_eq!(
        TopicError::Unknown("weather".into()).to_string(),
        "topic \"weather\" is not in the taxonomy"
    );
}

// ------------------------------------------------------- prompts & schema ---

#[test]
fn prompts_and_schema_match_the_golden_files() {
    let t = Taxonomy::default_taxonomy();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/summary");
    let update = std::env::var("UPDATE_GOLDEN").is_ok();
    let nb = prompt(&t, Language::Nb, &call(MISTET_KORT));
    let en = prompt(&t, Language::En, &call(CARD_TWICE));
    assert_eq!(nb.version, PROMPT_VERSION);
    let files = [
        (
            format!("{PROMPT_VERSION}-nb.txt"),
            format!("## system\n{}\n## user\n{}", nb.system, nb.user),
        ),
        (
            format!("{PROMPT_VERSION}-en.txt"),
            format!("## system\n{}\n## user\n{}", en.system, en.user),
        ),
        (format!("{PROMPT_VERSION}-schema.json"), t.draft_schema() + "\n"),
    ];
    let mut mismatches = Vec::new();
    for (name, text) in files {
        let path = dir.join(&name);
        if update {
            std::fs::create_dir_all(&dir).unwrap();
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
fn the_prompt_lists_every_topic_with_its_label_and_asks_for_json_only() {
    let t = Taxonomy::default_taxonomy();
    let p = prompt(&t, Language::Nb, &call(REFINANSIERING));
    for topic in t.topics() {
        assert!(
            p.system.contains(&format!("- {}: {}", topic.id, topic.label_nb)),
            "{}",
            topic.id
        );
    }
    assert!(p.system.contains("Svar bare med ett JSON-objekt"));
    assert!(
        p.user.contains("[00:03] Kunde: Hei, jeg vil gjerne refinansiere"),
        "{}",
        p.user
    );
    let e = prompt(&t, Language::En, &call(CARD_TWICE));
    assert!(e
        .system
        .contains("- online_mobile_bank_login: Online and mobile bank and login"));
    assert!(e.system.contains("Answer with one JSON object only"));
    assert!(
        e.user.contains("[00:00] Advisor: Customer centre, good morning."),
        "{}",
        e.user
    );
}

#[test]
fn the_schema_enumerates_exactly_the_taxonomy_ids() {
    let t = Taxonomy::default_taxonomy();
    let schema = t.draft_schema();
    let ids: Vec<String> = t.ids().map(|id| format!("\"{id}\"")).collect();
    assert!(schema.contains(&format!("\"enum\": [{}]", ids.join(", "))), "{schema}");
    assert!(!schema.contains("__TOPIC_IDS__"));
    // The shipped file is what the default taxonomy parses from.
    assert_eq!(Taxonomy::parse(DEFAULT_TAXONOMY).unwrap(), t);
}
