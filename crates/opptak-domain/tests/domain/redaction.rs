//! PII redaction measured on a labelled corpus, plus properties.
//!
//! `tests/pii_corpus/corpus.tsv` is written by the generator below (run
//! `cargo test -p opptak-domain --test domain redaction:: -- --ignored write_corpus`)
//! and committed, so the measurement is over a fixed text; `corpus_is_fresh`
//! fails when the generator and the file drift apart.
//! `tests/pii_corpus/handwritten.tsv` holds hand-written lines in the same
//! format. A line is `id \t lang \t group \t marked \t expected`: `marked`
//! is the transcript with each identifier written `⟦KIND|text⟧`, `expected`
//! the redacted output.
//!
//! The generator computes every check digit itself (independently of the
//! crate), draws invalid numbers as hard negatives, and labels from what it
//! inserted, never from what `redact` says.

use opptak_domain::redact::{luhn, redact, redact_from, valid_account, valid_fnr, Channel, PiiKind};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::ops::Range;
use std::path::PathBuf;

// ---------------------------------------------------------------------------
// Corpus format

struct Line {
    id: String,
    lang: String,
    group: String,
    text: String,
    labels: Vec<(PiiKind, Range<usize>)>,
    expected: String,
    /// The channel the line was said on (an optional sixth column; mixed
    /// when absent, as `redact` assumes).
    channel: Channel,
}

/// `⟦KIND|text⟧` → plain text and labelled spans.
fn parse_marked(marked: &str) -> (String, Vec<(PiiKind, Range<usize>)>) {
    let mut text = String::new();
    let mut labels = Vec::new();
    let mut rest = marked;
    while let Some(open) = rest.find('⟦') {
        text.push_str(&rest[..open]);
        let after = &rest[open + '⟦'.len_utf8()..];
        let close = after.find('⟧').expect("unclosed ⟦");
        let (kind, raw) = after[..close].split_once('|').expect("⟦KIND|text⟧");
        let kind = PiiKind::from_label(kind).unwrap_or_else(|| panic!("unknown kind {kind}"));
        labels.push((kind, text.len()..text.len() + raw.len()));
        text.push_str(raw);
        rest = &after[close + '⟧'.len_utf8()..];
    }
    text.push_str(rest);
    (text, labels)
}

fn expected_of(text: &str, labels: &[(PiiKind, Range<usize>)]) -> String {
    let mut out = String::new();
    let mut pos = 0;
    for (k, span) in labels {
        out.push_str(&text[pos..span.start]);
        out.push_str(k.token());
        pos = span.end;
    }
    out.push_str(&text[pos..]);
    out
}

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/pii_corpus")
}

fn load(file: &str) -> Vec<Line> {
    let body = std::fs::read_to_string(corpus_dir().join(file)).unwrap();
    body.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            assert!(matches!(cols.len(), 5 | 6), "{file}: five or six columns: {l}");
            let (text, labels) = parse_marked(cols[3]);
            let channel = match cols.get(5) {
                None | Some(&"mixed") => Channel::Mixed,
                Some(&"agent") => Channel::Agent,
                Some(&"customer") => Channel::Customer,
                Some(other) => panic!("{file}: unknown channel {other}"),
            };
            Line {
                id: cols[0].into(),
                lang: cols[1].into(),
                group: cols[2].into(),
                text,
                labels,
                expected: cols[4].into(),
                channel,
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Measurement

#[derive(Default, Clone, Copy)]
struct Counts {
    tp: usize,
    fp: usize,
    fn_: usize,
}

impl Counts {
    fn precision(&self) -> f64 {
        if self.tp + self.fp == 0 {
            1.0
        } else {
            self.tp as f64 / (self.tp + self.fp) as f64
        }
    }
    fn recall(&self) -> f64 {
        if self.tp + self.fn_ == 0 {
            1.0
        } else {
            self.tp as f64 / (self.tp + self.fn_) as f64
        }
    }
}

/// Span-level counts per kind over `lines`, the table, and the misses.
struct Measured {
    per: BTreeMap<PiiKind, Counts>,
    all: Counts,
    exact: usize,
    table: String,
    misses: Vec<String>,
}

impl Measured {
    fn get(&self, k: PiiKind) -> Counts {
        self.per.get(&k).copied().unwrap_or_default()
    }
}

/// The measured table must be the one `docs/pii-redaction.md` shows.
fn assert_documented(table: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/pii-redaction.md");
    let doc = std::fs::read_to_string(path).unwrap();
    assert!(
        doc.contains(table),
        "docs/pii-redaction.md does not show the measured table:\n{table}"
    );
}

fn measure(lines: &[Line]) -> Measured {
    let mut per: BTreeMap<PiiKind, Counts> = BTreeMap::new();
    let mut exact = 0;
    let mut misses = Vec::new();
    for line in lines {
        assert_eq!(
            expected_of(&line.text, &line.labels),
            line.expected,
            "{}: expected column",
            line.id
        );
        let r = redact_from(&line.text, line.channel);
        let got: Vec<(PiiKind, Range<usize>)> = r.findings.iter().map(|f| (f.kind, f.span.clone())).collect();
        for g in &got {
            if line.labels.contains(g) {
                per.entry(g.0).or_default().tp += 1;
            } else {
                per.entry(g.0).or_default().fp += 1;
                misses.push(format!(
                    "{} [{}] FP {} {:?}",
                    line.id,
                    line.group,
                    g.0,
                    &line.text[g.1.clone()]
                ));
            }
        }
        for l in &line.labels {
            if !got.contains(l) {
                per.entry(l.0).or_default().fn_ += 1;
                misses.push(format!(
                    "{} [{}] FN {} {:?}",
                    line.id,
                    line.group,
                    l.0,
                    &line.text[l.1.clone()]
                ));
            }
            // Whatever the kind, a structured identifier itself must be
            // gone. Names and addresses have known misses (counted as FN).
            if !matches!(l.0, PiiKind::Number | PiiKind::Name | PiiKind::Address) {
                assert!(
                    !r.text.contains(&line.text[l.1.clone()]),
                    "{}: {:?} survived: {}",
                    line.id,
                    l,
                    r.text
                );
            }
        }
        if r.text == line.expected {
            exact += 1;
        }
    }

    let mut table = String::from(
        "| kind | labelled | found | TP | FP | FN | precision | recall |\n|---|---|---|---|---|---|---|---|\n",
    );
    let mut all = Counts::default();
    for k in PiiKind::ALL {
        let c = per.get(&k).copied().unwrap_or_default();
        all.tp += c.tp;
        all.fp += c.fp;
        all.fn_ += c.fn_;
        writeln!(
            table,
            "| {} | {} | {} | {} | {} | {} | {:.3} | {:.3} |",
            k,
            c.tp + c.fn_,
            c.tp + c.fp,
            c.tp,
            c.fp,
            c.fn_,
            c.precision(),
            c.recall()
        )
        .unwrap();
    }
    writeln!(
        table,
        "| all | {} | {} | {} | {} | {} | {:.3} | {:.3} |",
        all.tp + all.fn_,
        all.tp + all.fp,
        all.tp,
        all.fp,
        all.fn_,
        all.precision(),
        all.recall()
    )
    .unwrap();
    Measured {
        per,
        all,
        exact,
        table,
        misses,
    }
}

#[test]
fn corpus_precision_and_recall() {
    let mut lines = load("corpus.tsv");
    let generated = lines.len();
    lines.extend(load("handwritten.tsv"));
    lines.extend(load("norsk.tsv"));
    assert!(generated >= 400, "{generated} generated lines");
    let m = measure(&lines);
    println!(
        "{} lines ({} generated, {} hand-written), {} redacted exactly as expected\n\n{}",
        lines.len(),
        generated,
        lines.len() - generated,
        m.exact,
        m.table
    );
    for miss in &m.misses {
        println!("{miss}");
    }

    for k in [
        PiiKind::Fnr,
        PiiKind::Account,
        PiiKind::Card,
        PiiKind::Phone,
        PiiKind::Email,
    ] {
        let c = m.get(k);
        assert!(c.tp + c.fn_ >= 30, "{k}: too few labels to measure");
        assert!(c.recall() >= 0.98, "{k}: recall {:.3}", c.recall());
    }
    assert!(m.all.precision() >= 0.95, "overall precision {:.3}", m.all.precision());
    assert_documented(&m.table);
}

/// The Norwegian corpus (`norsk.tsv`, issue 16): names, addresses,
/// Nynorsk number words and digits read out on the customer's channel, with
/// the look-alikes that must stay. The minimums are what the rules reach
/// today; `docs/pii-redaction.md` has the table.
#[test]
fn norwegian_corpus_precision_and_recall() {
    let lines = load("norsk.tsv");
    assert!(lines.len() >= 60, "{} lines", lines.len());
    let nynorsk = lines.iter().filter(|l| l.lang == "nn").count();
    let negatives = lines.iter().filter(|l| l.labels.is_empty()).count();
    assert!(
        nynorsk >= 20 && negatives >= 20,
        "{nynorsk} Nynorsk, {negatives} negative lines"
    );
    let m = measure(&lines);
    println!(
        "{} lines ({nynorsk} Nynorsk, {negatives} with no label), {} redacted exactly as expected\n\n{}",
        lines.len(),
        m.exact,
        m.table
    );
    for miss in &m.misses {
        println!("{miss}");
    }
    for k in PiiKind::ALL {
        let c = m.get(k);
        assert!(c.tp + c.fn_ >= 1, "{k}: no label in the Norwegian corpus");
    }
    for (k, recall, precision) in [
        (PiiKind::Name, 0.85, 0.9),
        (PiiKind::Address, 0.9, 0.95),
        (PiiKind::Fnr, 1.0, 1.0),
        (PiiKind::Account, 1.0, 1.0),
        (PiiKind::Phone, 1.0, 1.0),
    ] {
        let c = m.get(k);
        assert!(c.tp + c.fn_ >= 5, "{k}: too few labels to measure");
        assert!(c.recall() >= recall, "{k}: recall {:.3}", c.recall());
        assert!(c.precision() >= precision, "{k}: precision {:.3}", c.precision());
    }
    assert!(m.all.precision() >= 0.95, "overall precision {:.3}", m.all.precision());
    assert!(m.all.recall() >= 0.9, "overall recall {:.3}", m.all.recall());
    assert_documented(&m.table);
}

#[test]
fn corpus_is_fresh() {
    let on_disk = std::fs::read_to_string(corpus_dir().join("corpus.tsv")).unwrap();
    assert!(
        on_disk == generate_corpus(),
        "corpus.tsv differs from the generator: run the ignored test write_corpus"
    );
}

#[test]
#[ignore = "writes tests/pii_corpus/corpus.tsv"]
fn write_corpus() {
    std::fs::create_dir_all(corpus_dir()).unwrap();
    std::fs::write(corpus_dir().join("corpus.tsv"), generate_corpus()).unwrap();
}

/// The generator's own check-digit code agrees with the crate's.
#[test]
fn generator_and_crate_agree_on_check_digits() {
    let mut rng = Rng(7);
    for _ in 0..2000 {
        let d = rng.chance(30);
        let f = fnr(&mut rng, d);
        assert!(valid_fnr(&f), "{f}");
        assert!(valid_account(&f), "every FNR is also a valid account number: {f}");
        let a = account(&mut rng);
        assert!(valid_account(&a) && valid_fnr(&a) == fnr_ok(&a), "{a}");
        let a = account_only(&mut rng);
        assert!(valid_account(&a) && !valid_fnr(&a), "{a}");
        let c = card(&mut rng);
        assert!(luhn(&c), "{c}");
        let bad = invalid11(&mut rng);
        assert!(!valid_fnr(&bad) && !valid_account(&bad), "{bad}");
        let bad = invalid_card(&mut rng);
        assert!(!luhn(&bad), "{bad}");
    }
}

// ---------------------------------------------------------------------------
// Properties

fn check_invariants(text: &str) {
    let r = redact(text);
    let mut pos = 0;
    let mut rebuilt = String::new();
    for f in &r.findings {
        assert!(f.span.start >= pos && f.span.start < f.span.end && f.span.end <= text.len());
        assert!(text.is_char_boundary(f.span.start) && text.is_char_boundary(f.span.end));
        rebuilt.push_str(&text[pos..f.span.start]);
        rebuilt.push_str(f.kind.token());
        pos = f.span.end;
    }
    rebuilt.push_str(&text[pos..]);
    assert_eq!(rebuilt, r.text);
}

const FILLER: &[&str] = &[
    "ja", "nei", "altså", "okei", "takk", "hei", "det", "er", "jeg", "mitt", "nummer", "det", "var", "yes", "so", "my",
    "is", "the", "it's", "um", "eh", "vel", "kanskje", "please", "thanks", "right", "bra", "hold", "på",
];

proptest! {
    #[test]
    fn never_panics_on_any_text(s in any::<String>()) {
        check_invariants(&s);
    }

    #[test]
    fn never_panics_on_number_like_text(s in "[0-9 .,+\\-@a-zæøå]{0,80}") {
        check_invariants(&s);
    }

    #[test]
    fn never_panics_on_number_words(words in prop::collection::vec(prop::sample::select(vec![
        "en", "to", "tre", "fire", "og", "tjue", "førtito", "null", "one", "two", "double", "oh", "twenty",
        "tusen", "takk", "kroner", "hundre", "pluss", "+", "47", "1234", "56", ".", ",", "konto", "at", "dot",
        "punktum", "krøllalfa", "no", "com", "ola", "-", "9", "fødselsnummer",
    ]), 0..30), seps in prop::collection::vec(prop::sample::select(vec![" ", "", ", ", ".", "-", "  "]), 30)) {
        let mut s = String::new();
        for (w, sep) in words.iter().zip(&seps) {
            s.push_str(w);
            s.push_str(sep);
        }
        check_invariants(&s);
    }

    /// A generated identifier among filler words never survives, written or
    /// spoken, and redacting the output again finds nothing.
    #[test]
    fn identifiers_never_survive(seed in any::<u64>(), before in prop::collection::vec(prop::sample::select(FILLER.to_vec()), 0..6), after in prop::collection::vec(prop::sample::select(FILLER.to_vec()), 0..6)) {
        let mut rng = Rng(seed);
        let (kind, raw, digits) = identifier(&mut rng);
        let text = format!("{} {} {}", before.join(" "), raw, after.join(" "));
        let r = redact(&text);
        prop_assert!(!r.text.contains(&raw), "{kind}: {text} -> {}", r.text);
        prop_assert!(!r.text.bytes().any(|b| b.is_ascii_digit()), "{kind}: {text} -> {}", r.text);
        let at = text.find(&raw).unwrap();
        let found: Vec<_> = r.findings.iter().filter(|f| f.span.start < at + raw.len() && at < f.span.end).collect();
        prop_assert!(found.len() == 1 && found[0].span == (at..at + raw.len()), "{text}: {found:?}");
        // Without a context word, an account number that is also a valid
        // FNR is taken for the more sensitive one unless grouped 4.2.5.
        let tie = kind == PiiKind::Account && found[0].kind == PiiKind::Fnr && valid_fnr(&digits);
        prop_assert!(found[0].kind == kind || tie, "{kind}: {text}: {found:?}");
        prop_assert!(redact(&r.text).findings.is_empty(), "not idempotent: {}", r.text);
    }
}

/// The crate's own name lists, entries without the `*` mark.
fn listed(file: &str, ambiguous: bool) -> Vec<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/redact").join(file);
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#') && l.starts_with('*') == ambiguous)
        .map(|l| l.trim_start_matches('*').to_string())
        .collect()
}

const STREETS: &[&str] = &[
    "Storgata",
    "Kirkeveien",
    "Kyrkjevegen",
    "Sinsenveien",
    "Fagerborggata",
    "Karl Johans gate",
    "Bygdøy allé",
    "Solbakken",
    "Lyngtunet",
];

proptest! {
    /// Any listed given name with any listed surname after a cue is one
    /// name, and any listed street with a house number one address; no
    /// other finding, and redacting the output again finds nothing.
    #[test]
    fn listed_names_and_addresses_are_found(
        g in 0usize..10_000, sur in 0usize..10_000, amb in any::<bool>(), st in 0usize..100,
        house in 1u32..300, letter in prop::option::of(prop::sample::select(vec!["A", "B", "C"])),
        cue in prop::sample::select(vec!["Jeg heter", "Eg heiter", "Mitt navn er", "Hei", "Kan jeg snakke med", "My name is"]),
        before in prop::collection::vec(prop::sample::select(FILLER.to_vec()), 0..4),
    ) {
        let given = listed("given_names.txt", amb);
        let surnames = listed("surnames.txt", false);
        let name = format!("{} {}", given[g % given.len()], surnames[sur % surnames.len()]);
        let street = STREETS[st % STREETS.len()];
        let address = match letter {
            Some(l) => format!("{street} {house} {l}"),
            None => format!("{street} {house}"),
        };
        let text = format!("{} {cue} {name}, og jeg bor i {address}.", before.join(" "));
        let r = redact(&text);
        let got: Vec<(PiiKind, &str)> = r.findings.iter().map(|f| (f.kind, &text[f.span.clone()])).collect();
        prop_assert_eq!(got, vec![(PiiKind::Name, name.as_str()), (PiiKind::Address, address.as_str())], "{}", text);
        prop_assert!(redact(&r.text).findings.is_empty(), "not idempotent: {}", r.text);
    }
}

// ---------------------------------------------------------------------------
// Generator

/// SplitMix64: deterministic, so the corpus is reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn digits(&mut self, n: usize) -> String {
        (0..n).map(|_| char::from(b'0' + self.below(10) as u8)).collect()
    }
}

/// Mod-11 check digit as Skatteetaten and the banks define it; `None` when
/// it would be 10 (never issued).
fn mod11(digits: &str, weights: &[u32]) -> Option<u32> {
    let sum: u32 = digits.bytes().zip(weights).map(|(d, w)| u32::from(d - b'0') * w).sum();
    let r = sum % 11;
    let k = if r == 0 { 0 } else { 11 - r };
    (k != 10).then_some(k)
}

const FNR1: [u32; 9] = [3, 7, 6, 1, 8, 9, 4, 5, 2];
const FNR2: [u32; 10] = [5, 4, 3, 2, 7, 6, 5, 4, 3, 2];
const ACC: [u32; 10] = [5, 4, 3, 2, 7, 6, 5, 4, 3, 2];

fn days_in(month: usize, yy: usize) -> usize {
    match month {
        2 if yy.is_multiple_of(4) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn fnr_checks(base9: &str) -> Option<String> {
    let k1 = mod11(base9, &FNR1)?;
    let b10 = format!("{base9}{k1}");
    let k2 = mod11(&b10, &FNR2)?;
    Some(format!("{b10}{k2}"))
}

fn account_ok(s: &str) -> bool {
    mod11(&s[..10], &ACC) == Some(u32::from(s.as_bytes()[10] - b'0'))
}

fn fnr_ok(s: &str) -> bool {
    let n = |i: usize| usize::from(s.as_bytes()[i] - b'0');
    let (mut day, mut month, yy) = (n(0) * 10 + n(1), n(2) * 10 + n(3), n(4) * 10 + n(5));
    if day > 40 {
        day -= 40;
    }
    if month > 40 {
        month -= 40;
    }
    (1..=12).contains(&month) && day >= 1 && day <= days_in(month, yy) && fnr_checks(&s[..9]).as_deref() == Some(s)
}

/// A valid fødselsnummer (or D-number). The second FNR check digit uses the
/// account weights, so every one is also a valid account number.
fn fnr(rng: &mut Rng, d_number: bool) -> String {
    loop {
        let yy = rng.below(100);
        let month = 1 + rng.below(12);
        let day = 1 + rng.below(days_in(month, yy)) + if d_number { 40 } else { 0 };
        let ind = rng.below(1000);
        if let Some(s) = fnr_checks(&format!("{day:02}{month:02}{yy:02}{ind:03}")) {
            return s;
        }
    }
}

fn fnr_any(rng: &mut Rng) -> String {
    fnr(rng, false)
}

const BANKS: &[&str] = &[
    "1503", "1506", "1254", "1207", "1822", "2801", "3000", "3201", "4200", "6063", "9710", "0530", "1594", "1602",
    "9235", "1644",
];

/// A valid account number. About one in twelve is also a valid
/// fødselsnummer (a date-like bank prefix and a matching first FNR digit).
fn account(rng: &mut Rng) -> String {
    loop {
        let base = format!("{}{}", rng.pick(BANKS), rng.digits(6));
        if let Some(k) = mod11(&base, &ACC) {
            return format!("{base}{k}");
        }
    }
}

/// A valid account number that is not also a valid fødselsnummer.
fn account_only(rng: &mut Rng) -> String {
    loop {
        let s = account(rng);
        if !fnr_ok(&s) {
            return s;
        }
    }
}

/// Eleven digits that are neither.
fn invalid11(rng: &mut Rng) -> String {
    loop {
        let s = format!("{}{}", rng.pick(BANKS), rng.digits(7));
        if !account_ok(&s) && !fnr_ok(&s) {
            return s;
        }
    }
}

/// An FNR-looking number (real date) with a wrong check digit.
fn invalid_fnr(rng: &mut Rng) -> String {
    loop {
        let good = fnr_any(rng);
        let last = (good.as_bytes()[10] - b'0' + 1 + rng.below(8) as u8) % 10;
        let s = format!("{}{}", &good[..10], last);
        if !fnr_ok(&s) && !account_ok(&s) {
            return s;
        }
    }
}

fn luhn_digit(body: &str) -> u32 {
    // The check digit makes the sum over body+check divisible by 10; the
    // rightmost body digit is doubled.
    let sum: u32 = body
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, c)| {
            let v = u32::from(c - b'0');
            if i % 2 == 0 {
                let d = v * 2;
                d / 10 + d % 10
            } else {
                v
            }
        })
        .sum();
    (10 - sum % 10) % 10
}

const CARD_PREFIX: &[(&str, usize)] = &[
    ("4", 16),
    ("4", 16),
    ("4", 16),
    ("51", 16),
    ("53", 16),
    ("55", 16),
    ("2221", 16),
    ("34", 15),
    ("37", 15),
    ("6011", 16),
    ("4", 13),
    ("6759", 19),
];

fn card(rng: &mut Rng) -> String {
    let (p, len) = *rng.pick(CARD_PREFIX);
    let body = format!("{p}{}", rng.digits(len - 1 - p.len()));
    format!("{body}{}", luhn_digit(&body))
}

fn invalid_card(rng: &mut Rng) -> String {
    let good = card_len(rng, 16);
    let last = (good.as_bytes()[15] - b'0' + 1 + rng.below(9) as u8) % 10;
    format!("{}{}", &good[..15], last)
}

fn card_len(rng: &mut Rng, len: usize) -> String {
    let body = format!("4{}", rng.digits(len - 2));
    format!("{body}{}", luhn_digit(&body))
}

fn phone(rng: &mut Rng) -> String {
    let first = if rng.chance(75) {
        *rng.pick(&['4', '9'])
    } else {
        *rng.pick(&['2', '3', '5', '6', '7'])
    };
    format!("{first}{}", rng.digits(7))
}

// Formats -------------------------------------------------------------------

fn group(s: &str, sizes: &[usize], sep: &str) -> String {
    let mut out = Vec::new();
    let mut pos = 0;
    for n in sizes {
        out.push(&s[pos..pos + n]);
        pos += n;
    }
    if pos < s.len() {
        out.push(&s[pos..]);
    }
    out.join(sep)
}

fn fnr_written(rng: &mut Rng, s: &str) -> String {
    match rng.below(6) {
        0 | 1 => s.to_string(),
        2 | 3 => group(s, &[6, 5], " "),
        4 => format!("{}.{}.{} {}", &s[..2], &s[2..4], &s[4..6], &s[6..]),
        _ => group(s, &[2, 2, 2, 5], " "),
    }
}

fn account_written(rng: &mut Rng, s: &str) -> String {
    match rng.below(6) {
        0 | 1 => group(s, &[4, 2, 5], "."),
        2 | 3 => group(s, &[4, 2, 5], " "),
        4 => s.to_string(),
        _ => group(s, &[4, 2, 5], "-"),
    }
}

fn card_written(rng: &mut Rng, s: &str) -> String {
    if s.len() == 15 {
        return group(s, &[4, 6, 5], " ");
    }
    let fours: Vec<usize> = vec![4; s.len() / 4];
    match rng.below(4) {
        0 | 1 => group(s, &fours, " "),
        2 => group(s, &fours, "-"),
        _ => s.to_string(),
    }
}

fn phone_written(rng: &mut Rng, s: &str) -> String {
    match rng.below(11) {
        0 | 1 => s.to_string(),
        2 | 3 => group(s, &[2, 2, 2, 2], " "),
        4 | 5 => group(s, &[3, 2, 3], " "),
        6 => group(s, &[4, 4], " "),
        7 => format!("+47 {}", group(s, &[3, 2, 3], " ")),
        8 => format!("+47 {}", group(s, &[2, 2, 2, 2], " ")),
        9 => format!("+47{s}"),
        _ => format!("0047 {}", group(s, &[2, 2, 2, 2], " ")),
    }
}

const NB: [&str; 10] = ["null", "en", "to", "tre", "fire", "fem", "seks", "sju", "åtte", "ni"];
const EN: [&str; 10] = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
];
const NB_TEEN: [&str; 10] = [
    "ti", "elleve", "tolv", "tretten", "fjorten", "femten", "seksten", "sytten", "atten", "nitten",
];
const EN_TEEN: [&str; 10] = [
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
];
const NB_TENS: [&str; 10] = [
    "", "", "tjue", "tretti", "førti", "femti", "seksti", "sytti", "åtti", "nitti",
];
const EN_TENS: [&str; 10] = [
    "", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
];

fn digit_word(lang: Lang, d: u8, rng: &mut Rng) -> String {
    match lang {
        Lang::Nb => NB[usize::from(d)].to_string(),
        Lang::En if d == 0 && rng.chance(30) => "oh".into(),
        Lang::En => EN[usize::from(d)].to_string(),
    }
}

fn pair_words(lang: Lang, a: u8, b: u8, rng: &mut Rng) -> String {
    let (a, b) = (usize::from(a), usize::from(b));
    match (lang, a) {
        (_, 0) => format!("{} {}", digit_word(lang, 0, rng), digit_word(lang, b as u8, rng)),
        (Lang::Nb, 1) => NB_TEEN[b].into(),
        (Lang::En, 1) => EN_TEEN[b].into(),
        (Lang::Nb, _) if b == 0 => NB_TENS[a].into(),
        (Lang::En, _) if b == 0 => EN_TENS[a].into(),
        (Lang::Nb, _) => format!("{}{}", NB_TENS[a], NB[b]),
        (Lang::En, _) if rng.chance(50) => format!("{}-{}", EN_TENS[a], EN[b]),
        (Lang::En, _) => format!("{} {}", EN_TENS[a], EN[b]),
    }
}

/// Digits read out one by one, now and then with a comma between groups.
fn spoken_digits(lang: Lang, s: &str, rng: &mut Rng) -> String {
    let comma = rng.chance(30);
    let mut out = String::new();
    for (i, c) in s.bytes().enumerate() {
        if i > 0 {
            out.push_str(if comma && i % 4 == 0 { ", " } else { " " });
        }
        out.push_str(&digit_word(lang, c - b'0', rng));
    }
    out
}

/// Digits read in pairs ("førtien tjueto ..."), an odd last digit alone.
/// A round ten ("tjue") right before a digit word would be heard as one
/// number ("tjue fem" = 25), so speakers, and this generator, read it out
/// digit by digit then.
fn spoken_pairs(lang: Lang, s: &str, rng: &mut Rng) -> String {
    let b: Vec<u8> = s.bytes().map(|c| c - b'0').collect();
    let mut pieces: Vec<(u8, Option<u8>)> = b.chunks(2).map(|c| (c[0], c.get(1).copied())).collect();
    let mut rendered: Vec<String> = Vec::new();
    let mut next_is_digit_word = false;
    while let Some((a, second)) = pieces.pop() {
        let (text, digit_word) = match second {
            None => (digit_word(lang, a, rng), true),
            Some(0) if a >= 2 && next_is_digit_word => (
                format!("{} {}", digit_word(lang, a, rng), digit_word(lang, 0, rng)),
                true,
            ),
            Some(c) => (pair_words(lang, a, c, rng), a == 0),
        };
        rendered.push(text);
        next_is_digit_word = digit_word;
    }
    rendered.reverse();
    rendered.join(if rng.chance(25) { ", " } else { " " })
}

fn spoken(lang: Lang, s: &str, rng: &mut Rng) -> String {
    if rng.chance(50) {
        spoken_digits(lang, s, rng)
    } else {
        spoken_pairs(lang, s, rng)
    }
}

/// A phone number read out, sometimes with the country code.
fn phone_spoken(lang: Lang, s: &str, rng: &mut Rng) -> String {
    let body = spoken(lang, s, rng);
    match (lang, rng.below(4)) {
        (Lang::Nb, 0) => format!("pluss førtisju {body}"),
        (Lang::En, 0) => format!("plus four seven {body}"),
        _ => body,
    }
}

const FIRST: &[&str] = &[
    "ola", "kari", "per", "lise", "jonas", "ingrid", "john", "mary", "ahmed", "fatima", "sofie", "magnus", "nora",
    "erik",
];
const LAST: &[&str] = &[
    "nordmann", "hansen", "johansen", "olsen", "larsen", "smith", "berg", "haugen", "solberg", "khan", "brown",
];
const DOMAINS: &[&[&str]] = &[
    &["gmail", "com"],
    &["hotmail", "com"],
    &["online", "no"],
    &["eksempel", "no"],
    &["outlook", "com"],
    &["yahoo", "co", "uk"],
    &["icloud", "com"],
    &["firma", "no"],
    &["altibox", "no"],
    &["live", "no"],
    &["example", "com"],
];

fn email_written(rng: &mut Rng) -> String {
    let f = rng.pick(FIRST);
    let l = rng.pick(LAST);
    let local = match rng.below(5) {
        0 => format!("{f}.{l}"),
        1 => format!("{f}_{l}{}", 50 + rng.below(50)),
        2 => format!("{f}{l}"),
        3 => format!("{}.{l}", &f[..1]),
        _ => format!("{f}-{l}"),
    };
    format!("{local}@{}", rng.pick(DOMAINS).join("."))
}

fn email_spoken(lang: Lang, rng: &mut Rng) -> String {
    let f = rng.pick(FIRST);
    let l = rng.pick(LAST);
    let (dot, at, under) = match lang {
        Lang::Nb => (
            "punktum",
            if rng.chance(80) { "krøllalfa" } else { "alfakrøll" },
            "understrek",
        ),
        Lang::En => ("dot", "at", "underscore"),
    };
    let local = match rng.below(4) {
        0 | 1 => format!("{f} {dot} {l}"),
        2 => format!("{f} {under} {l}"),
        _ => format!("{f}.{l}"),
    };
    let d = rng.pick(DOMAINS);
    let domain = if rng.chance(20) {
        d.join(".")
    } else {
        d.join(&format!(" {dot} "))
    };
    format!("{local} {at} {domain}")
}

// Templates -------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum Lang {
    Nb,
    En,
}

impl Lang {
    fn code(self) -> &'static str {
        match self {
            Lang::Nb => "nb",
            Lang::En => "en",
        }
    }
}

const FNR_NB: &[&str] = &[
    "Fødselsnummeret mitt er {}.",
    "Ja, det er {}, fødselsnummeret altså.",
    "Personnummeret er {} hvis du trenger det.",
    "Kan jeg få fødselsnummeret ditt? Ja, {}.",
    "Jeg har ikke BankID på mobilen, men fødselsnummeret er {}.",
    "Det er mor som eier kontoen, fødselsnummeret hennes er {}.",
    "Okei, så fødselsnummeret er {}, stemmer det?",
    "Bare for å bekrefte, fødselsnummer {}.",
    "Du kan slå meg opp på personnummer {}.",
    "Eh, vent litt, jeg må finne frem passet. Fødselsnummeret er {}.",
];
const FNR_EN: &[&str] = &[
    "My national identity number is {}.",
    "Sure, my personal number is {}.",
    "The fødselsnummer is {}, I think.",
    "Yes, it's {}, that's my birth number.",
    "I'm calling for my father, his national identity number is {}.",
    "For the verification, the number is {}.",
];
const DNR_NB: &[&str] = &[
    "Jeg har D-nummer, det er {}.",
    "D-nummeret mitt er {}.",
    "Jeg jobber her på D-nummer, {}.",
];
const DNR_EN: &[&str] = &[
    "I only have a D number, it's {}.",
    "My D-number is {}.",
    "The tax office gave me {} as my D-number.",
];
const ACCOUNT_NB: &[&str] = &[
    "Kontonummeret er {}.",
    "Kan du overføre det til konto {}?",
    "Pengene skal inn på {}, det er brukskontoen min.",
    "Jeg vil sperre kontoen {} med en gang.",
    "Det gjelder sparekontoen min, {}.",
    "Ja, kontonummer {}, den står på meg.",
    "Lønna kommer inn på kontoen {} hver måned.",
    "Jeg overførte til feil konto, jeg skulle ha sendt til {}.",
    "Mottakerens kontonummer er {}.",
    "Den faste betalingen går fra konto {} til husleia.",
];
const ACCOUNT_EN: &[&str] = &[
    "The account number is {}.",
    "Please transfer it to account {}.",
    "My savings account is {}, I think.",
    "Could you check account {} for me?",
    "The money should go to my account {}.",
    "I sent it to the wrong account, it should have been {}.",
];
const CARD_NB: &[&str] = &[
    "Kortnummeret er {}.",
    "Jeg må sperre kortet mitt, nummeret er {}.",
    "Det står {} på kortet.",
    "Visakortet mitt har nummer {}.",
    "Det ble trukket fra kredittkortet {} i går.",
    "Har du kortnummeret? Ja, {}.",
];
const CARD_EN: &[&str] = &[
    "My card number is {}.",
    "The card is {}, it expires next year.",
    "I need to block my card, the number is {}.",
    "It was charged to {} yesterday.",
    "The long number on the card is {}.",
];
const PHONE_NB: &[&str] = &[
    "Du kan ringe meg på {}.",
    "Mobilnummeret mitt er {}.",
    "Ring tilbake på {} etter klokka tre.",
    "Telefonnummeret er {}, det er best å sende SMS.",
    "Nummeret mitt er {}.",
    "Kan du sende koden til {}?",
    "Jeg har byttet nummer, det nye er {}.",
    "Kona mi kan nås på {}.",
];
const PHONE_EN: &[&str] = &[
    "You can call me on {}.",
    "My mobile number is {}.",
    "Please text me at {}.",
    "The best number to reach me is {}.",
    "My new number is {}.",
    "Call my wife on {} if I don't pick up.",
];
const EMAIL_NB: &[&str] = &[
    "E-postadressen min er {}.",
    "Send det til {}, takk.",
    "Du kan sende bekreftelsen på e-post til {}.",
    "Den gamle adressen var {}, den må endres.",
];
const EMAIL_EN: &[&str] = &[
    "My email is {}.",
    "You can email me at {}.",
    "Please send the statement to {}.",
    "My e-mail address is {}, all lower case.",
];
const NUMBER_NB: &[&str] = &[
    "PIN-koden min er {}, men den skal jeg vel ikke si?",
    "Referansen på brevet er {}.",
    "Koden jeg fikk var {}.",
    "Kortet slutter på {}.",
    "Brukernavnet mitt er vel {}.",
];
const NUMBER_EN: &[&str] = &[
    "The reference on the letter is {}.",
    "The code I got was {}.",
    "The last four digits are {}.",
    "My customer code is {}.",
];

/// One slot of a line: labelled or not.
type Slot = (Option<PiiKind>, String);

fn fill(template: &str, slots: &[Slot]) -> String {
    let mut out = String::new();
    let mut parts = template.split("{}");
    out.push_str(parts.next().unwrap_or(""));
    for ((kind, raw), rest) in slots.iter().zip(parts) {
        match kind {
            Some(k) => write!(out, "⟦{}|{raw}⟧", k.label()).unwrap(),
            None => out.push_str(raw),
        }
        out.push_str(rest);
    }
    out
}

struct Gen {
    rng: Rng,
    lines: Vec<(Lang, &'static str, String)>,
}

impl Gen {
    fn add(&mut self, lang: Lang, group: &'static str, template: &str, slots: &[Slot]) {
        self.lines.push((lang, group, fill(template, slots)));
    }

    fn lang(&mut self) -> Lang {
        if self.rng.chance(55) {
            Lang::Nb
        } else {
            Lang::En
        }
    }

    fn template(&mut self, lang: Lang, nb: &[&'static str], en: &[&'static str]) -> &'static str {
        match lang {
            Lang::Nb => nb[self.rng.below(nb.len())],
            Lang::En => en[self.rng.below(en.len())],
        }
    }
}

/// A random identifier of any structured kind, written or spoken, as the
/// property test embeds it.
fn identifier(rng: &mut Rng) -> (PiiKind, String, String) {
    let lang = if rng.chance(50) { Lang::Nb } else { Lang::En };
    let spoken_form = rng.chance(30);
    match rng.below(5) {
        0 => {
            let d = rng.chance(30);
            let s = fnr(rng, d);
            let w = if spoken_form {
                spoken(lang, &s, rng)
            } else {
                fnr_written(rng, &s)
            };
            (PiiKind::Fnr, w, s)
        }
        1 => {
            let s = account(rng);
            let w = if spoken_form {
                spoken(lang, &s, rng)
            } else {
                account_written(rng, &s)
            };
            (PiiKind::Account, w, s)
        }
        2 => {
            let s = card(rng);
            let w = if spoken_form {
                spoken_digits(lang, &s, rng)
            } else {
                card_written(rng, &s)
            };
            (PiiKind::Card, w, s)
        }
        3 => {
            let s = phone(rng);
            let w = if spoken_form {
                phone_spoken(lang, &s, rng)
            } else {
                phone_written(rng, &s)
            };
            (PiiKind::Phone, w, s)
        }
        _ => {
            let w = if spoken_form {
                email_spoken(lang, rng)
            } else {
                email_written(rng)
            };
            (PiiKind::Email, w, String::new())
        }
    }
}

fn generate_corpus() -> String {
    let mut g = Gen {
        rng: Rng(0x000b_b7a4_2024),
        lines: Vec::new(),
    };
    use PiiKind::*;

    // Structured identifiers, written.
    for _ in 0..45 {
        let lang = g.lang();
        let t = g.template(lang, FNR_NB, FNR_EN);
        let s = fnr(&mut g.rng, false);
        let w = fnr_written(&mut g.rng, &s);
        g.add(lang, "fnr", t, &[(Some(Fnr), w)]);
    }
    for _ in 0..15 {
        let lang = g.lang();
        let t = g.template(lang, DNR_NB, DNR_EN);
        let s = fnr(&mut g.rng, true);
        let w = fnr_written(&mut g.rng, &s);
        g.add(lang, "d-number", t, &[(Some(Fnr), w)]);
    }
    for _ in 0..50 {
        let lang = g.lang();
        let t = g.template(lang, ACCOUNT_NB, ACCOUNT_EN);
        let s = account(&mut g.rng);
        let w = account_written(&mut g.rng, &s);
        g.add(lang, "account", t, &[(Some(Account), w)]);
    }
    for _ in 0..45 {
        let lang = g.lang();
        let t = g.template(lang, CARD_NB, CARD_EN);
        let s = card(&mut g.rng);
        let w = card_written(&mut g.rng, &s);
        g.add(lang, "card", t, &[(Some(Card), w)]);
    }
    for _ in 0..50 {
        let lang = g.lang();
        let t = g.template(lang, PHONE_NB, PHONE_EN);
        let s = phone(&mut g.rng);
        let w = phone_written(&mut g.rng, &s);
        g.add(lang, "phone", t, &[(Some(Phone), w)]);
    }
    for _ in 0..30 {
        let lang = g.lang();
        let t = g.template(lang, EMAIL_NB, EMAIL_EN);
        let w = email_written(&mut g.rng);
        g.add(lang, "email", t, &[(Some(Email), w)]);
    }

    // Spoken.
    for _ in 0..15 {
        let lang = g.lang();
        let t = g.template(lang, FNR_NB, FNR_EN);
        let s = fnr(&mut g.rng, false);
        let w = spoken(lang, &s, &mut g.rng);
        g.add(lang, "fnr-spoken", t, &[(Some(Fnr), w)]);
    }
    for _ in 0..20 {
        let lang = g.lang();
        let t = g.template(lang, ACCOUNT_NB, ACCOUNT_EN);
        let s = account(&mut g.rng);
        let w = spoken(lang, &s, &mut g.rng);
        g.add(lang, "account-spoken", t, &[(Some(Account), w)]);
    }
    for _ in 0..6 {
        let lang = g.lang();
        let t = g.template(lang, CARD_NB, CARD_EN);
        let s = card(&mut g.rng);
        let w = spoken_digits(lang, &s, &mut g.rng);
        g.add(lang, "card-spoken", t, &[(Some(Card), w)]);
    }
    for _ in 0..22 {
        let lang = g.lang();
        let t = g.template(lang, PHONE_NB, PHONE_EN);
        let s = phone(&mut g.rng);
        let w = phone_spoken(lang, &s, &mut g.rng);
        g.add(lang, "phone-spoken", t, &[(Some(Phone), w)]);
    }
    for _ in 0..22 {
        let lang = g.lang();
        let t = g.template(lang, EMAIL_NB, EMAIL_EN);
        let w = email_spoken(lang, &mut g.rng);
        g.add(lang, "email-spoken", t, &[(Some(Email), w)]);
    }
    for _ in 0..25 {
        let lang = g.lang();
        let t = g.template(lang, NUMBER_NB, NUMBER_EN);
        let len = *g.rng.pick(&[4, 4, 5, 6, 6, 7]);
        let s = g.rng.digits(len);
        let w = spoken_digits(lang, &s, &mut g.rng);
        g.add(lang, "number-spoken", t, &[(Some(Number), w)]);
    }

    // Valid as both FNR and account: words, then format, then FNR.
    for i in 0..20 {
        let s = fnr_any(&mut g.rng);
        let acc = group(&s, &[4, 2, 5], if g.rng.chance(50) { "." } else { " " });
        let (lang, t, w, k) = match i % 6 {
            0 => (Lang::Nb, "Kontonummeret er {}.", fnr_written(&mut g.rng, &s), Account),
            1 => (Lang::En, "My national identity number is {}.", acc, Fnr),
            2 => (Lang::Nb, "Det er {}, står det her.", acc, Account),
            3 => (Lang::Nb, "Det er {}, står det her.", group(&s, &[6, 5], " "), Fnr),
            4 => (Lang::En, "It's {}, that's what it says here.", s.clone(), Fnr),
            _ => (
                Lang::Nb,
                "Nummeret {} er kontonummeret til sønnen min.",
                s.clone(),
                Account,
            ),
        };
        g.add(lang, "fnr-or-account", t, &[(Some(k), w)]);
    }

    // Two or three identifiers in one utterance.
    for _ in 0..30 {
        let r = &mut g.rng;
        match r.below(6) {
            0 => {
                let f = fnr(r, false);
                let (f, p) = (fnr_written(r, &f), phone(r));
                let p = phone_written(r, &p);
                g.add(
                    Lang::Nb,
                    "mixed",
                    "Fødselsnummeret er {} og mobilnummeret {}.",
                    &[(Some(Fnr), f), (Some(Phone), p)],
                );
            }
            1 => {
                let (a, p) = (account(r), phone(r));
                let (a, p) = (account_written(r, &a), phone_written(r, &p));
                g.add(
                    Lang::Nb,
                    "mixed",
                    "Kontonummer {}, og du kan ringe meg på {}.",
                    &[(Some(Account), a), (Some(Phone), p)],
                );
            }
            2 => {
                let e = email_written(r);
                let p = phone(r);
                let p = phone_written(r, &p);
                g.add(
                    Lang::Nb,
                    "mixed",
                    "Send kvitteringen til {} og ring {} hvis noe er galt.",
                    &[(Some(Email), e), (Some(Phone), p)],
                );
            }
            3 => {
                let (c, a) = (card(r), account(r));
                let (c, a) = (card_written(r, &c), account_written(r, &a));
                g.add(
                    Lang::En,
                    "mixed",
                    "Card {}, and the account is {}.",
                    &[(Some(Card), c), (Some(Account), a)],
                );
            }
            4 => {
                let p = phone(r);
                let p = phone_written(r, &p);
                let e = email_spoken(Lang::En, r);
                g.add(
                    Lang::En,
                    "mixed",
                    "My number is {} and my email is {}.",
                    &[(Some(Phone), p), (Some(Email), e)],
                );
            }
            _ => {
                let amount = format!("{} 000", 1 + r.below(99));
                let (a1, a2) = (account(r), account(r));
                let (a1, a2) = (account_written(r, &a1), account_written(r, &a2));
                g.add(
                    Lang::Nb,
                    "mixed",
                    "Overfør {} kroner fra konto {} til konto {}.",
                    &[(None, amount), (Some(Account), a1), (Some(Account), a2)],
                );
            }
        }
    }

    // Hard negatives: wrong check digits. Without an identifier word they
    // stay; after one they become [NUMBER] (a misheard identifier).
    for i in 0..30 {
        let r = &mut g.rng;
        match i % 6 {
            0 => {
                let s = invalid_fnr(r);
                let w = fnr_written(r, &s);
                g.add(
                    Lang::Nb,
                    "neg-bad-check",
                    "Fødselsnummeret er {}, tror jeg.",
                    &[(Some(Number), w)],
                );
            }
            1 => {
                let s = invalid11(r);
                let w = account_written(r, &s);
                g.add(
                    Lang::En,
                    "neg-bad-check",
                    "The account number is {}.",
                    &[(Some(Number), w)],
                );
            }
            2 => {
                let s = invalid_card(r);
                let w = card_written(r, &s);
                g.add(Lang::Nb, "neg-bad-check", "Kortnummeret er {}.", &[(Some(Number), w)]);
            }
            3 => {
                let s = invalid_fnr(r);
                g.add(
                    Lang::Nb,
                    "neg-bad-check",
                    "Brevet hadde {} øverst i hjørnet.",
                    &[(None, s)],
                );
            }
            4 => {
                let s = invalid11(r);
                let w = account_written(r, &s);
                g.add(Lang::En, "neg-bad-check", "The form says {} at the top.", &[(None, w)]);
            }
            _ => {
                let s = invalid_card(r);
                let w = card_written(r, &s);
                g.add(Lang::Nb, "neg-bad-check", "Det står {} nederst på arket.", &[(None, w)]);
            }
        }
    }

    // Hard negatives: business numbers that are not personal identifiers.
    for i in 0..30 {
        let r = &mut g.rng;
        let eight = format!("{}{}", 2 + r.below(8), r.digits(7));
        match i % 10 {
            0 => g.add(Lang::Nb, "neg-business", "Ordrenummeret er {}.", &[(None, eight)]),
            1 => g.add(Lang::En, "neg-business", "My order number is {}.", &[(None, eight)]),
            2 => g.add(Lang::Nb, "neg-business", "Kundenummeret mitt er {}.", &[(None, eight)]),
            3 => g.add(
                Lang::Nb,
                "neg-business",
                "Fakturanummer {} fra strømselskapet.",
                &[(None, eight)],
            ),
            4 => {
                let len = 13 + r.below(3);
                let kid = card_len(r, len);
                g.add(Lang::Nb, "neg-business", "KID-nummeret er {}.", &[(None, kid)]);
            }
            5 => {
                let s = format!("{}-{}", 2019 + r.below(6), r.digits(6));
                g.add(Lang::Nb, "neg-business", "Saksnummeret er {}.", &[(None, s)]);
            }
            6 => {
                let s = format!("{}/{}", 2019 + r.below(6), r.digits(4));
                g.add(Lang::En, "neg-business", "The case number is {}.", &[(None, s)]);
            }
            7 => {
                let s = account_only(r);
                g.add(Lang::Nb, "neg-business", "Ordrenummeret på pakken er {}.", &[(None, s)]);
            }
            8 => {
                let s = group(&format!("9{}", r.digits(8)), &[3, 3, 3], " ");
                g.add(Lang::Nb, "neg-business", "Organisasjonsnummeret er {}.", &[(None, s)]);
            }
            _ => {
                let s = format!("1{}", r.digits(7));
                g.add(Lang::Nb, "neg-business", "Nummeret {} står på brevet.", &[(None, s)]);
            }
        }
    }

    // Hard negatives: amounts, dates, times, years, postcodes, percentages.
    for i in 0..60 {
        let r = &mut g.rng;
        let (lang, t, v): (Lang, &str, String) = match i % 20 {
            0 => (
                Lang::Nb,
                "Jeg vil låne {} kroner.",
                format!("{} {:03} 000", 1 + r.below(9), r.below(1000)),
            ),
            1 => (
                Lang::Nb,
                "Det står {} kr på kontoen.",
                format!("{} {:03}", 1 + r.below(99), r.below(1000)),
            ),
            2 => (
                Lang::Nb,
                "Saldoen er {} kroner.",
                format!("{} {:03} {:03}", 10 + r.below(90), r.below(1000), r.below(1000)),
            ),
            3 => (
                Lang::En,
                "The loan is {} kroner.",
                format!("{} {:03} {:03}", 10 + r.below(90), r.below(1000), r.below(1000)),
            ),
            4 => (
                Lang::En,
                "I paid NOK {} for it.",
                format!("{} {:03}", 1 + r.below(999), r.below(1000)),
            ),
            5 => (
                Lang::Nb,
                "Det skjedde {}.",
                format!("{:02}.{:02}.{}", 1 + r.below(28), 1 + r.below(12), 2019 + r.below(6)),
            ),
            6 => (
                Lang::Nb,
                "Jeg er født {}.",
                format!("{:02}.{:02}.{}", 1 + r.below(28), 1 + r.below(12), 1940 + r.below(66)),
            ),
            7 => (
                Lang::En,
                "It happened on {}.",
                format!("{}-{:02}-{:02}", 2019 + r.below(6), 1 + r.below(12), 1 + r.below(28)),
            ),
            8 => (
                Lang::En,
                "The transfer was on {}.",
                format!("{:02} {:02} {}", 1 + r.below(28), 1 + r.below(12), 2019 + r.below(6)),
            ),
            9 => (
                Lang::Nb,
                "Ring meg mellom {}.",
                format!("kl. {:02}.00 og {:02}.30", 8 + r.below(4), 13 + r.below(4)),
            ),
            10 => (
                Lang::En,
                "It was at {} this morning.",
                format!("{}:{:02}", 6 + r.below(5), r.below(60)),
            ),
            11 => (
                Lang::Nb,
                "Jeg har vært kunde siden {}.",
                format!("{}", 1970 + r.below(55)),
            ),
            12 => (
                Lang::Nb,
                "Adressen er {}.",
                format!("Storgata {}, {:04} Oslo", 1 + r.below(120), 150 + r.below(1000)),
            ),
            13 => (
                Lang::Nb,
                "Renten er {} prosent.",
                format!("{},{}", 3 + r.below(5), r.below(10)),
            ),
            14 => (
                Lang::En,
                "The rate went up to {} %.",
                format!("{}.{}", 3 + r.below(5), r.below(100)),
            ),
            15 => (
                Lang::Nb,
                "Det ble trukket {} to ganger.",
                format!("{},{:02} kr", 10 + r.below(900), r.below(100)),
            ),
            16 => (
                Lang::En,
                "I earn about {} a year.",
                format!("{} {:03} kroner", 300 + r.below(900), r.below(1000)),
            ),
            17 => (
                Lang::Nb,
                "Boligen kostet {},-.",
                format!("{} {:03} {:03}", 2 + r.below(9), r.below(1000), r.below(1000)),
            ),
            18 => (
                Lang::Nb,
                "Vi har {} i egenkapital.",
                format!("{} {:03} kroner", 100 + r.below(900), r.below(1000)),
            ),
            _ => (
                Lang::Nb,
                "Beløpet var {}.",
                format!("{} {:03} {:03}", 10 + r.below(90), r.below(1000), r.below(1000)),
            ),
        };
        // The street address among them is one, postcode and place included.
        if i % 20 == 12 {
            g.add(lang, "address", t, &[(Some(PiiKind::Address), v)]);
        } else {
            g.add(lang, "neg-amount-date", t, &[(None, v)]);
        }
    }

    // Hard negatives: numbers said as words that are amounts, times, years.
    const SPOKEN_NEG: &[(Lang, &str)] = &[
        (Lang::Nb, "Jeg vil låne to tusen kroner av deg."),
        (Lang::Nb, "Det er snakk om tre millioner."),
        (Lang::Nb, "Vi trenger femti tusen kroner til oppussing."),
        (Lang::Nb, "Det ble trukket to hundre og femti kroner."),
        (Lang::Nb, "Jeg ringte tre eller fire ganger i går."),
        (Lang::Nb, "Jeg venter i ti minutter til."),
        (Lang::Nb, "Kan du ringe meg om to uker?"),
        (Lang::Nb, "Det var i to tusen og nitten."),
        (Lang::Nb, "Rundt fem og tjue tusen, tror jeg."),
        (Lang::Nb, "Tusen takk for hjelpen."),
        (Lang::Nb, "Jeg har to kort og tre kontoer hos dere."),
        (Lang::Nb, "Klokka er halv ni, så jeg må gå."),
        (Lang::Nb, "Gå inn på dnb punktum no og logg inn."),
        (Lang::Nb, "Det er en fire-fem år siden."),
        (Lang::Nb, "Renten er fire komma fem prosent."),
        (Lang::En, "I want to borrow fifty thousand kroner."),
        (Lang::En, "It was about twenty five minutes ago."),
        (Lang::En, "I was born in nineteen eighty five."),
        (Lang::En, "Please log in at dnb dot no and check."),
        (Lang::En, "We are open from nine to five."),
        (Lang::En, "That's one hundred and twenty pounds."),
        (Lang::En, "I have two cards and one account with you."),
        (Lang::En, "It happened on the twenty first of March."),
        (Lang::En, "It costs two thousand four hundred kroner."),
        (Lang::En, "I called three or four times."),
        (Lang::En, "One moment, I'll find it."),
        (Lang::En, "The interest went from three to four percent."),
        (Lang::En, "Twenty twenty four was a hard year."),
    ];
    for (lang, t) in SPOKEN_NEG {
        g.add(*lang, "neg-spoken", t, &[]);
    }

    // No numbers at all.
    const PLAIN: &[(Lang, &str)] = &[
        (Lang::Nb, "Hei, jeg ringer fordi jeg ikke kommer inn i nettbanken."),
        (Lang::Nb, "Jeg har glemt passordet mitt."),
        (Lang::Nb, "Kan du hjelpe meg med å sperre kortet?"),
        (Lang::Nb, "Jeg lurer på om jeg kan få avdragsfrihet på boliglånet."),
        (Lang::Nb, "Det var noen som ringte og sa de var fra banken."),
        (Lang::Nb, "Jeg vil gjerne snakke med en rådgiver om fond."),
        (Lang::Nb, "Takk, da har jeg det jeg trenger."),
        (Lang::Nb, "Jeg fikk en SMS med en lenke, og jeg trykket på den."),
        (Lang::Nb, "Kan du sende meg et tilbud på forsikring?"),
        (Lang::Nb, "Jeg vil klage på gebyret."),
        (Lang::En, "Hi, I'm calling about my mortgage."),
        (Lang::En, "I think someone has stolen my card."),
        (Lang::En, "Can you help me set up mobile banking?"),
        (Lang::En, "I would like to close my account."),
        (Lang::En, "Thank you, that's all for today."),
        (Lang::En, "I got an email saying my account was locked."),
        (Lang::En, "Could you explain the fees on my statement?"),
        (Lang::En, "I'd like to talk to someone about my pension."),
    ];
    for (lang, t) in PLAIN {
        g.add(*lang, "plain", t, &[]);
    }

    let mut out = String::from(
        "# Generated by tests/redaction.rs (write_corpus); do not edit, regenerate.\n# id\tlang\tgroup\tmarked\texpected\n",
    );
    for (i, (lang, group, marked)) in g.lines.iter().enumerate() {
        let (text, labels) = parse_marked(marked);
        assert!(!text.contains(['\t', '\n']));
        writeln!(
            out,
            "g{:04}\t{}\t{}\t{}\t{}",
            i + 1,
            lang.code(),
            group,
            marked,
            expected_of(&text, &labels)
        )
        .unwrap();
    }
    out
}
