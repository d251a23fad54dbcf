//! PII redaction of transcript text before any of it leaves for a language
//! model (R13, data minimization).
//!
//! [`redact`] replaces each identifier with a typed token (`[FNR]`,
//! `[ACCOUNT]`, `[CARD]`, `[PHONE]`, `[EMAIL]`, `[NUMBER]`, `[NAME]`,
//! `[ADDRESS]`) and returns the findings as kind and byte span in the
//! original text, never the value, so a finding can be logged;
//! [`redact_from`] does the same for text from a known [`Channel`]. The
//! rules, tie-breaks, measured precision and recall, and known limits are in
//! `docs/pii-redaction.md`.
//!
//! Layout, in the order [`redact_from`] runs:
//! - check digits: [`valid_fnr`] (fødselsnummer, D- and H-numbers, both
//!   mod-11 digits), [`valid_account`] (mod-11), [`luhn`];
//! - e-mail: written (`ola@eksempel.no`) and spoken (`ola punktum nordmann
//!   krøllalfa eksempel punktum no`, `john dot smith at example dot com`);
//! - addresses (`redact/address.rs`): a street-name ending or street word,
//!   a house number, and the postcode and place after it;
//! - names (`redact/names.rs`): the gazetteer in `redact/given_names.txt`
//!   and `redact/surnames.txt`, surname endings, capitalisation and cue words;
//! - number runs: text is cut into digit groups and number words (Bokmål,
//!   Nynorsk and English), neighbours are joined into runs (on the
//!   customer's channel also digit groups read out with commas between),
//!   and each run is split into identifiers by converting it to digits and
//!   checking it against the rules, longest candidate first; what no rule
//!   claims may still become `[NUMBER]` (spoken numbers, or long numbers
//!   right after an identifier word such as `kontonummer`);
//! - context words: the nearest keyword before a number (`konto`,
//!   `fødselsnummer`, `telefon`, `ordre`, ...) breaks ties and blocks
//!   false positives; a currency or unit word after it marks an amount.
//!
//! Hand-written scanners, no regular expressions: the rules need check digits
//! and context anyway, and the crate stays free of dependencies.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::ops::Range;

mod address;
mod names;

/// What kind of identifier a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PiiKind {
    /// Norwegian national identity number: fødselsnummer, D-number, H-number.
    Fnr,
    /// Norwegian bank account number.
    Account,
    /// Payment card number.
    Card,
    /// Phone number (Norwegian, or any number written with a `+` country code).
    Phone,
    /// E-mail address, written or spoken.
    Email,
    /// Any other number that may identify someone: spoken digit runs, and
    /// long numbers after an identifier word that fail their check digits.
    Number,
    /// A person's name: listed given names and surnames, surname endings,
    /// and capitalised words after "jeg heter" / "mitt navn er".
    Name,
    /// A street address with its house number (and postcode and place when
    /// they follow).
    Address,
}

impl PiiKind {
    /// Every kind, in token order.
    pub const ALL: [PiiKind; 8] = [
        PiiKind::Fnr,
        PiiKind::Account,
        PiiKind::Card,
        PiiKind::Phone,
        PiiKind::Email,
        PiiKind::Number,
        PiiKind::Name,
        PiiKind::Address,
    ];

    /// The label, as in the token and the corpus: `FNR`, `ACCOUNT`, ...
    pub fn label(self) -> &'static str {
        match self {
            PiiKind::Fnr => "FNR",
            PiiKind::Account => "ACCOUNT",
            PiiKind::Card => "CARD",
            PiiKind::Phone => "PHONE",
            PiiKind::Email => "EMAIL",
            PiiKind::Number => "NUMBER",
            PiiKind::Name => "NAME",
            PiiKind::Address => "ADDRESS",
        }
    }

    /// The token that replaces the identifier: `[FNR]`, `[ACCOUNT]`, ...
    pub fn token(self) -> &'static str {
        match self {
            PiiKind::Fnr => "[FNR]",
            PiiKind::Account => "[ACCOUNT]",
            PiiKind::Card => "[CARD]",
            PiiKind::Phone => "[PHONE]",
            PiiKind::Email => "[EMAIL]",
            PiiKind::Number => "[NUMBER]",
            PiiKind::Name => "[NAME]",
            PiiKind::Address => "[ADDRESS]",
        }
    }

    /// The kind of a label (`"FNR"` → [`PiiKind::Fnr`]).
    pub fn from_label(label: &str) -> Option<Self> {
        PiiKind::ALL.into_iter().find(|k| k.label() == label)
    }
}

impl fmt::Display for PiiKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// One identifier found: its kind and byte span in the original text. It
/// holds no copy of the value, so `Debug` output is safe to log.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Finding {
    pub kind: PiiKind,
    pub span: Range<usize>,
}

/// The redacted text and what was taken out, findings in text order and
/// never overlapping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redacted {
    pub text: String,
    pub findings: Vec<Finding>,
}

/// Replace every identifier in `text` with its token.
///
/// ```
/// use opptak_domain::redact::{redact, PiiKind};
///
/// let r = redact("Fødselsnummeret er 010180 12371, ring meg på 412 34 567.");
/// assert_eq!(r.text, "Fødselsnummeret er [FNR], ring meg på [PHONE].");
/// assert_eq!(r.findings[0].kind, PiiKind::Fnr);
/// assert_eq!(r.findings[0].span, 20..32);
/// assert_eq!(r.findings[1].span, 47..57);
/// let r = redact("john smith at gmail dot com, to tusen kroner");
/// assert_eq!(r.text, "john [EMAIL], to tusen kroner");
/// ```
pub fn redact(text: &str) -> Redacted {
    redact_from(text, Channel::Mixed)
}

/// Who said a piece of text: the recording channel it was transcribed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Channel {
    /// The bank's side.
    Agent,
    /// The customer's side: digits read out one by one are expected here.
    Customer,
    /// A mono or mixed recording, or unknown: treated as the customer's,
    /// since the customer may be the one speaking (fail closed).
    Mixed,
}

impl Channel {
    /// The channel of a transcript segment's speaker (`"agent"`,
    /// `"customer"`; anything else is [`Channel::Mixed`]).
    pub fn from_speaker(speaker: &str) -> Self {
        match speaker {
            "agent" => Channel::Agent,
            "customer" => Channel::Customer,
            _ => Channel::Mixed,
        }
    }
}

/// [`redact`] for text from a known channel. On the customer's channel (and
/// a mixed or unknown one) digit groups that speech recognition wrote with
/// commas or full stops between them (`4,1,2,3,4,5,6,7`, `41. 23. 45. 67`)
/// are one number read out; on the agent's, only the separators [`redact`]
/// always joins (`41 23 45 67`, `1234, 56, 78903`) are.
///
/// ```
/// use opptak_domain::redact::{redact_from, Channel};
///
/// let said = "Ja, det er 91,23,45,67.";
/// assert_eq!(redact_from(said, Channel::Customer).text, "Ja, det er [PHONE].");
/// assert_eq!(redact_from(said, Channel::Agent).text, said);
/// ```
pub fn redact_from(text: &str, channel: Channel) -> Redacted {
    let mut findings = Vec::new();
    written_emails(text, &mut findings);
    spoken_emails(text, &mut findings);
    let toks = tokenize(text);
    let mask = |f: &[Finding]| -> Vec<bool> { toks.iter().map(|t| overlaps(f, &(t.start..t.end))).collect() };
    // Addresses before names ("Karl Johans gate 1" is a street), both
    // before numbers (a house number or postcode is not part of a run).
    let masked = mask(&findings);
    address::addresses(text, &toks, &masked, &mut findings);
    let masked = mask(&findings);
    names::names(text, &toks, &masked, &mut findings);
    let masked = mask(&findings);
    let scan = Scan {
        text,
        toks,
        masked,
        channel,
    };
    scan.numbers(&mut findings);
    findings.sort_by_key(|f| (f.span.start, f.span.end));
    // Scanners never overlap by construction; this keeps the invariant even
    // if a future rule breaks it, at the cost of the later finding.
    let mut kept: Vec<Finding> = Vec::with_capacity(findings.len());
    for f in findings {
        if kept.last().is_none_or(|k| k.span.end <= f.span.start) {
            kept.push(f);
        }
    }
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    for f in &kept {
        out.push_str(&text[pos..f.span.start]);
        out.push_str(f.kind.token());
        pos = f.span.end;
    }
    out.push_str(&text[pos..]);
    Redacted {
        text: out,
        findings: kept,
    }
}

// ---------------------------------------------------------------------------
// Check digits

const FNR_K1: [u32; 9] = [3, 7, 6, 1, 8, 9, 4, 5, 2];
const FNR_K2: [u32; 10] = [5, 4, 3, 2, 7, 6, 5, 4, 3, 2];
const ACCOUNT_W: [u32; 10] = [5, 4, 3, 2, 7, 6, 5, 4, 3, 2];

fn ascii_digits<const N: usize>(s: &str) -> Option<[u32; N]> {
    let b = s.as_bytes();
    if b.len() != N || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut out = [0u32; N];
    for (o, c) in out.iter_mut().zip(b) {
        *o = u32::from(c - b'0');
    }
    Some(out)
}

/// The mod-11 check digit of `digits` under `weights`: remainder 0 gives 0,
/// remainder 1 gives none (such numbers are never issued).
fn mod11(digits: &[u32], weights: &[u32]) -> Option<u32> {
    let sum: u32 = digits.iter().zip(weights).map(|(d, w)| d * w).sum();
    match 11 - sum % 11 {
        11 => Some(0),
        10 => None,
        k => Some(k),
    }
}

/// Whether `digits` (exactly 11 ASCII digits, no separators) is a valid
/// Norwegian fødselsnummer, D-number (day + 40) or H-number (month + 40):
/// a real calendar date and both mod-11 check digits (Skatteetaten's
/// weights 3 7 6 1 8 9 4 5 2 and 5 4 3 2 7 6 5 4 3 2).
pub fn valid_fnr(digits: &str) -> bool {
    let Some(d) = ascii_digits::<11>(digits) else {
        return false;
    };
    let date = [d[0], d[1], d[2], d[3], d[4], d[5]];
    date_ok(date) && mod11(&d[..9], &FNR_K1) == Some(d[9]) && mod11(&d[..10], &FNR_K2) == Some(d[10])
}

/// Six ASCII digits DDMMYY that are a date an FNR could start with.
fn birth_date(digits: &[u8]) -> bool {
    let mut d = [0u32; 6];
    for (o, c) in d.iter_mut().zip(digits) {
        if !c.is_ascii_digit() {
            return false;
        }
        *o = u32::from(c - b'0');
    }
    digits.len() == 6 && date_ok(d)
}

/// DDMMYY with D-number (day + 40) and H-number (month + 40) offsets.
fn date_ok(d: [u32; 6]) -> bool {
    let mut day = d[0] * 10 + d[1];
    let mut month = d[2] * 10 + d[3];
    let yy = d[4] * 10 + d[5];
    if day > 40 {
        day -= 40;
    }
    if month > 40 {
        month -= 40;
    }
    // The century lives in the individual number; 29 February is accepted
    // in every year divisible by four (00 may be 2000, a leap year).
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if yy.is_multiple_of(4) => 29,
        2 => 28,
        _ => return false,
    };
    day != 0 && day <= days
}

/// Whether `digits` (exactly 11 ASCII digits, no separators) is a valid
/// Norwegian bank account number: mod-11 over the first ten digits with
/// weights 5 4 3 2 7 6 5 4 3 2. All zeros is not an account.
pub fn valid_account(digits: &str) -> bool {
    let Some(d) = ascii_digits::<11>(digits) else {
        return false;
    };
    d.iter().any(|x| *x != 0) && mod11(&d[..10], &ACCOUNT_W) == Some(d[10])
}

/// The Luhn (mod-10) check of payment card numbers, over ASCII digits only
/// (at least two, no separators).
pub fn luhn(digits: &str) -> bool {
    let b = digits.as_bytes();
    if b.len() < 2 || !b.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let sum: u32 = b
        .iter()
        .rev()
        .enumerate()
        .map(|(i, c)| {
            let v = u32::from(c - b'0');
            if i % 2 == 1 {
                let v2 = v * 2;
                if v2 > 9 {
                    v2 - 9
                } else {
                    v2
                }
            } else {
                v
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

// ---------------------------------------------------------------------------
// E-mail

const TLDS: &[&str] = &[
    "no", "com", "net", "org", "se", "dk", "fi", "is", "de", "uk", "eu", "io", "info", "biz", "edu", "gov", "fr", "nl",
    "es", "it", "us", "ca", "pl", "ch", "at", "be", "me", "co", "ai", "app", "dev",
];

fn overlaps(findings: &[Finding], span: &Range<usize>) -> bool {
    findings
        .iter()
        .any(|f| f.span.start < span.end && span.start < f.span.end)
}

fn valid_domain(domain: &str, tld_listed: bool) -> bool {
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 || labels.iter().any(|l| l.is_empty()) {
        return false;
    }
    let tld = labels[labels.len() - 1];
    let alpha = tld.chars().count() >= 2 && tld.chars().all(char::is_alphabetic);
    alpha && (!tld_listed || TLDS.contains(&tld.to_lowercase().as_str()))
}

/// `local@domain.tld`, as speech recognition writes an address it heard
/// clearly.
fn written_emails(text: &str, out: &mut Vec<Finding>) {
    let local_char = |c: char| c.is_alphanumeric() || matches!(c, '.' | '_' | '%' | '+' | '-');
    let domain_char = |c: char| c.is_alphanumeric() || matches!(c, '.' | '-');
    for (at, _) in text.match_indices('@') {
        let mut start = at;
        for (i, c) in text[..at].char_indices().rev() {
            if !local_char(c) {
                break;
            }
            start = i;
        }
        while text[start..at].starts_with('.') {
            start += 1;
        }
        let mut end = at + 1;
        for (i, c) in text[at + 1..].char_indices() {
            if !domain_char(c) {
                break;
            }
            end = at + 1 + i + c.len_utf8();
        }
        while end > at + 1 && text[..end].ends_with(['.', '-']) {
            end -= 1;
        }
        let span = start..end;
        if start < at && valid_domain(&text[at + 1..end], false) && !overlaps(out, &span) {
            out.push(Finding {
                kind: PiiKind::Email,
                span,
            });
        }
    }
}

/// A whitespace-separated word with surrounding punctuation stripped.
struct WTok {
    start: usize,
    end: usize,
    lower: String,
    /// Punctuation was stripped after it: the spoken address cannot go on.
    trail: bool,
}

fn wtoks(text: &str) -> Vec<WTok> {
    let mut out = Vec::new();
    let mut push = |s: usize, e: usize| {
        let word = &text[s..e];
        let core_start = s + (word.len() - word.trim_start_matches(['(', '[', '"', '\'', '«', '“']).len());
        let rest = &text[core_start..e];
        let trimmed = rest.trim_end_matches(['.', ',', ';', ':', '!', '?', ')', ']', '"', '\'', '»', '”']);
        let core_end = core_start + trimmed.len();
        if core_start < core_end {
            out.push(WTok {
                start: core_start,
                end: core_end,
                lower: trimmed.to_lowercase(),
                trail: core_end < e,
            });
        }
    };
    let mut start = None;
    for (i, c) in text.char_indices() {
        match (c.is_whitespace(), start) {
            (true, Some(s)) => {
                push(s, i);
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        push(s, text.len());
    }
    out
}

const AT_WORDS: &[&str] = &["at", "krøllalfa", "krøll-alfa", "alfakrøll", "@"];
const DOT_WORDS: &[&str] = &["dot", "punktum", "prikk"];
const LOCAL_JOINERS: &[&str] = &[
    "dot",
    "punktum",
    "prikk",
    "underscore",
    "understrek",
    "bindestrek",
    "strek",
    "dash",
    "hyphen",
];
/// Words that sit before `at` in ordinary speech ("log in at dnb dot no").
const AT_STOP: &[&str] = &[
    "me",
    "us",
    "him",
    "her",
    "them",
    "it",
    "i",
    "you",
    "we",
    "they",
    "is",
    "are",
    "was",
    "were",
    "be",
    "been",
    "in",
    "on",
    "up",
    "out",
    "log",
    "logged",
    "login",
    "sign",
    "signed",
    "online",
    "look",
    "looked",
    "check",
    "checked",
    "go",
    "went",
    "find",
    "found",
    "there",
    "here",
    "home",
    "that",
    "this",
    "what",
    "where",
    "or",
    "and",
    "but",
    "not",
    "also",
    "just",
    "only",
    "available",
    "reach",
    "contact",
    "email",
    "e-mail",
    "mail",
    "write",
    "send",
    "him",
    "jeg",
    "du",
    "vi",
    "de",
    "det",
    "den",
    "er",
    "var",
    "tror",
    "sier",
    "sa",
    "og",
    "meg",
    "deg",
    "oss",
    "dem",
    "seg",
    "se",
    "ser",
    "står",
    "ligger",
    "inne",
    "logge",
    "logget",
    "bare",
    "også",
    "look",
    "site",
    "website",
    "nettsiden",
    "page",
    "us",
];

fn label_ok(s: &str, extra: &[char]) -> bool {
    s.chars().any(char::is_alphanumeric)
        && s.chars().all(|c| c.is_alphanumeric() || extra.contains(&c))
        && !s.starts_with('.')
        && !s.ends_with('.')
}

/// Addresses read out: local words joined by "dot"/"punktum"/"underscore",
/// then "at"/"krøllalfa", then domain labels joined by "dot"/"punktum",
/// ending in a known top-level domain. Also the hybrids speech recognition
/// writes, such as `ola.nordmann at eksempel.no`.
fn spoken_emails(text: &str, out: &mut Vec<Finding>) {
    let w = wtoks(text);
    for i in 1..w.len().saturating_sub(1) {
        let at = w[i].lower.as_str();
        // "krøll alfa" in two words: the address goes on after "alfa".
        let split_at = at == "krøll" && w.get(i + 1).is_some_and(|a| a.lower == "alfa") && !w[i].trail;
        let after = if split_at { i + 1 } else { i };
        if !(AT_WORDS.contains(&at) || split_at) || w[after].trail || w[i - 1].trail || after + 1 >= w.len() {
            continue;
        }
        let stop = |s: &str| at == "at" && AT_STOP.contains(&s);
        let local_ok = |t: &WTok| {
            label_ok(&t.lower, &['.', '_', '-', '+']) && !LOCAL_JOINERS.contains(&t.lower.as_str()) && !stop(&t.lower)
        };
        if !local_ok(&w[i - 1]) {
            continue;
        }
        let mut first = i - 1;
        while first >= 2
            && LOCAL_JOINERS.contains(&w[first - 1].lower.as_str())
            && !w[first - 1].trail
            && !w[first - 2].trail
            && local_ok(&w[first - 2])
        {
            first -= 2;
        }
        let domain_ok = |t: &WTok| label_ok(&t.lower, &['.', '-']) && !DOT_WORDS.contains(&t.lower.as_str());
        if !domain_ok(&w[after + 1]) {
            continue;
        }
        let mut last = after + 1;
        let mut domain = w[last].lower.clone();
        while !w[last].trail
            && last + 2 < w.len()
            && DOT_WORDS.contains(&w[last + 1].lower.as_str())
            && !w[last + 1].trail
            && domain_ok(&w[last + 2])
        {
            domain.push('.');
            domain.push_str(&w[last + 2].lower);
            last += 2;
        }
        let span = w[first].start..w[last].end;
        if valid_domain(&domain, true) && !overlaps(out, &span) {
            out.push(Finding {
                kind: PiiKind::Email,
                span,
            });
        }
    }
}

// ---------------------------------------------------------------------------
// Number words

/// One spoken piece of a number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    /// 0–9, one digit.
    Digit(u8),
    /// 10–19, two digits.
    Teen(u8),
    /// 20, 30, ... 90: two digits, the second taken by a following 1–9.
    Tens(u8),
    /// 21–99 said as one word ("førtito").
    Pair(u8),
    /// "double", "triple": the next digit that many times.
    Repeat(u8),
    /// Norwegian "fem og tjue" (25): joins a digit and the tens after it.
    Og,
}

#[derive(Clone, Debug)]
struct WordNum {
    parts: Vec<Part>,
    english: bool,
    /// Also an ordinary word ("en" = a, "to" = to, "one"): a number is not
    /// started with it when one can start right after.
    ambiguous: bool,
    is_to: bool,
}

const NB_DIGITS: &[(&str, u8)] = &[
    ("null", 0),
    ("en", 1),
    ("én", 1),
    ("ett", 1),
    // Nynorsk: "ein", "eit", "eitt" (masculine, neuter, counting form).
    ("ein", 1),
    ("éin", 1),
    ("eit", 1),
    ("eitt", 1),
    ("to", 2),
    ("tvo", 2),
    ("tre", 3),
    ("fire", 4),
    ("fem", 5),
    ("seks", 6),
    ("sju", 7),
    ("syv", 7),
    ("åtte", 8),
    ("ni", 9),
];
const EN_DIGITS: &[(&str, u8)] = &[
    ("zero", 0),
    ("oh", 0),
    ("one", 1),
    ("two", 2),
    ("three", 3),
    ("four", 4),
    ("five", 5),
    ("six", 6),
    ("seven", 7),
    ("eight", 8),
    ("nine", 9),
];
const NB_TEENS: &[(&str, u8)] = &[
    ("ti", 10),
    ("elleve", 11),
    ("tolv", 12),
    ("tretten", 13),
    ("fjorten", 14),
    ("femten", 15),
    ("seksten", 16),
    ("sytten", 17),
    ("søtten", 17),
    ("atten", 18),
    ("nitten", 19),
];
const EN_TEENS: &[(&str, u8)] = &[
    ("ten", 10),
    ("eleven", 11),
    ("twelve", 12),
    ("thirteen", 13),
    ("fourteen", 14),
    ("fifteen", 15),
    ("sixteen", 16),
    ("seventeen", 17),
    ("eighteen", 18),
    ("nineteen", 19),
];
const NB_TENS: &[(&str, u8)] = &[
    ("tjue", 20),
    ("tyve", 20),
    ("tjuge", 20),
    ("tretti", 30),
    ("tredve", 30),
    ("førti", 40),
    ("fyrti", 40),
    ("femti", 50),
    ("seksti", 60),
    ("sytti", 70),
    ("søtti", 70),
    ("åtti", 80),
    ("nitti", 90),
];
const EN_TENS: &[(&str, u8)] = &[
    ("twenty", 20),
    ("thirty", 30),
    ("forty", 40),
    ("fourty", 40),
    ("fifty", 50),
    ("sixty", 60),
    ("seventy", 70),
    ("eighty", 80),
    ("ninety", 90),
];

fn lookup(table: &[(&str, u8)], w: &str) -> Option<u8> {
    table.iter().find(|(k, _)| *k == w).map(|(_, v)| *v)
}

/// A Norwegian digit 1–9 ("en", "ett", "to", ...).
fn nb_unit(w: &str) -> Option<u8> {
    lookup(NB_DIGITS, w).filter(|d| *d > 0)
}

/// One word without hyphens: its parts and whether it is English.
fn single_word(w: &str) -> Option<(Part, bool)> {
    if let Some(d) = lookup(NB_DIGITS, w) {
        return Some((Part::Digit(d), false));
    }
    if let Some(d) = lookup(EN_DIGITS, w) {
        return Some((Part::Digit(d), true));
    }
    if let Some(v) = lookup(NB_TEENS, w) {
        return Some((Part::Teen(v), false));
    }
    if let Some(v) = lookup(EN_TEENS, w) {
        return Some((Part::Teen(v), true));
    }
    if let Some(v) = lookup(NB_TENS, w) {
        return Some((Part::Tens(v), false));
    }
    if let Some(v) = lookup(EN_TENS, w) {
        return Some((Part::Tens(v), true));
    }
    match w {
        "double" => return Some((Part::Repeat(2), true)),
        "triple" => return Some((Part::Repeat(3), true)),
        "dobbel" | "dobbelt" => return Some((Part::Repeat(2), false)),
        "trippel" => return Some((Part::Repeat(3), false)),
        _ => {}
    }
    // Norwegian writes 21–99 as one word: "førtito", or the older "toogførti".
    for (t, v) in NB_TENS {
        if let Some(u) = w.strip_prefix(t).and_then(nb_unit) {
            return Some((Part::Pair(v + u), false));
        }
    }
    if let Some((a, b)) = w.split_once("og") {
        if let (Some(u), Some(t)) = (nb_unit(a), lookup(NB_TENS, b)) {
            return Some((Part::Pair(t + u), false));
        }
    }
    None
}

fn word_num(lower: &str) -> Option<WordNum> {
    let mut parts = Vec::new();
    let mut english = false;
    for piece in lower.split('-') {
        let (p, en) = single_word(piece)?;
        parts.push(p);
        english |= en;
    }
    Some(WordNum {
        parts,
        english,
        ambiguous: matches!(
            lower,
            "en" | "én" | "ett" | "ein" | "éin" | "eit" | "eitt" | "to" | "one" | "oh"
        ),
        is_to: lower == "to",
    })
}

const MAGNITUDES: &[&str] = &[
    "hundre",
    "hundred",
    "hundreds",
    "tusen",
    "thousand",
    "thousands",
    "million",
    "millioner",
    "millionar",
    "millions",
    "milliard",
    "milliarder",
    "milliardar",
    "billion",
    "billions",
];

/// "hundre", "tusen", "thousand", ... also as the end of a compound
/// ("femtusen"). Said with a number, they make it a quantity.
fn is_magnitude(lower: &str) -> bool {
    matches!(lower, "mill" | "mrd" | "k") || MAGNITUDES.iter().any(|m| lower.ends_with(m))
}

const CURRENCY: &[&str] = &[
    "kroner", "krone", "kr", "nok", "øre", "kronor", "dollar", "dollars", "usd", "euro", "euros", "eur", "pund",
    "pounds", "gbp", "sek", "dkk",
];
const UNITS: &[&str] = &[
    "prosent",
    "percent",
    "pct",
    "prosentpoeng",
    "år",
    "års",
    "året",
    "years",
    "year",
    "dager",
    "dagar",
    "dag",
    "days",
    "day",
    "uker",
    "veker",
    "weeks",
    "måneder",
    "månader",
    "mnd",
    "months",
    "timer",
    "timar",
    "hours",
    "minutter",
    "minutt",
    "min",
    "minutes",
    "sekunder",
    "seconds",
    "ganger",
    "gonger",
    "times",
    "gang",
    "gong",
    "stk",
    "stykker",
    "kilo",
    "kg",
    "meter",
    "km",
    "mil",
    "kvm",
    "kvadratmeter",
];

// ---------------------------------------------------------------------------
// Context words

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ctx {
    None,
    Fnr,
    Account,
    Card,
    Phone,
    /// Order, case, reference, KID, invoice, customer numbers: not personal
    /// identifiers, kept for the summary.
    NonId,
    /// A price or balance right before the number.
    Amount,
}

fn keyword(w: &str) -> Option<Ctx> {
    let starts = |ps: &[&str]| ps.iter().any(|p| w.starts_with(p));
    if starts(&[
        "fødselsn",
        "fodselsn",
        "fødselsnr",
        "personn",
        "personnr",
        "identitetsn",
        "idnummer",
        "id-nummer",
    ]) || matches!(
        w,
        "fnr"
            | "d-nummer"
            | "d-nummeret"
            | "dnummer"
            | "d-nr"
            | "identity"
            | "ssn"
            | "social"
            | "national"
            | "personal"
            | "birth"
            | "d-number"
    ) {
        return Some(Ctx::Fnr);
    }
    if (w.contains("konto") && !w.starts_with("kontor")) || starts(&["account", "acct", "kto"]) {
        return Some(Ctx::Account);
    }
    if w.contains("kortn")
        || w.ends_with("kort")
        || w.ends_with("kortet")
        || w.ends_with("kortets")
        || starts(&["card", "visa", "mastercard", "amex", "maestro"])
        || matches!(w, "debit" | "credit")
    {
        return Some(Ctx::Card);
    }
    if (starts(&["telefon", "tlf", "mobil", "phone", "mobile", "cell", "landline"]) && !w.starts_with("mobilbank"))
        || w.contains("telefon")
        || matches!(
            w,
            "ring" | "ringe" | "ringer" | "ringt" | "ringje" | "ringjer" | "reach" | "sms" | "nås" | "nåast"
        )
    {
        return Some(Ctx::Phone);
    }
    if starts(&[
        "ordre",
        "order",
        "saksn",
        "saken",
        "saksnr",
        "case",
        "referanse",
        "reference",
        "kid",
        "faktura",
        "invoice",
        "kundenummer",
        "kundenr",
        "customer",
        "postn",
        "postnr",
        "orgn",
        "orgnr",
        "organisasjon",
        "organisation",
        "organization",
        "avtalen",
        "agreement",
        "polise",
        "policy",
        "transaksjon",
        "transaction",
        "ticket",
        "billett",
        "sporing",
        "tracking",
        "serien",
        "serial",
        "bestilling",
        "booking",
        "versjon",
        "version",
    ]) || matches!(w, "sak" | "ref" | "rom" | "room")
    {
        return Some(Ctx::NonId);
    }
    None
}

fn amount_word(w: &str) -> bool {
    matches!(
        w,
        "kr" | "nok"
            | "usd"
            | "eur"
            | "sek"
            | "dkk"
            | "beløp"
            | "beløpet"
            | "amount"
            | "sum"
            | "summen"
            | "saldo"
            | "saldoen"
            | "balance"
            | "pris"
            | "prisen"
            | "price"
            | "lønn"
            | "salary"
            | "total"
            | "totalt"
    )
}

// ---------------------------------------------------------------------------
// Tokens and runs

#[derive(Clone, Debug)]
struct Tok {
    digits: bool,
    start: usize,
    end: usize,
    /// Touches a letter or digit of another kind ("A4", "5G", "ola123"):
    /// never part of a number run.
    glued: bool,
    lower: String,
}

fn tokenize(text: &str) -> Vec<Tok> {
    let mut toks = Vec::new();
    let mut it = text.char_indices().peekable();
    while let Some(&(i, c)) = it.peek() {
        if c.is_ascii_digit() {
            let mut end = i;
            while let Some(&(j, d)) = it.peek() {
                if !d.is_ascii_digit() {
                    break;
                }
                end = j + 1;
                it.next();
            }
            toks.push(Tok {
                digits: true,
                start: i,
                end,
                glued: false,
                lower: String::new(),
            });
        } else if c.is_alphabetic() {
            let mut end = i;
            while let Some(&(j, d)) = it.peek() {
                let joiner = matches!(d, '-' | '\'' | '’')
                    && text[j + d.len_utf8()..].chars().next().is_some_and(char::is_alphabetic);
                if !(d.is_alphabetic() || joiner) {
                    break;
                }
                end = j + d.len_utf8();
                it.next();
            }
            toks.push(Tok {
                digits: false,
                start: i,
                end,
                glued: false,
                lower: text[i..end].to_lowercase(),
            });
        } else {
            it.next();
        }
    }
    for t in &mut toks {
        let before = text[..t.start].chars().next_back();
        let after = text[t.end..].chars().next();
        let glue = |c: char| {
            if t.digits {
                c.is_alphanumeric() || c == '_' || c == '@'
            } else {
                c.is_ascii_digit()
            }
        };
        t.glued = before.is_some_and(glue) || after.is_some_and(glue);
    }
    // Digits hyphenated onto a code are part of it: "FKN-2026-0117",
    // "tlf1-20261128-8f3b": glue spreads over one '-', '/' or '_' from a
    // word or glued token to a digit group, in both directions.
    let joined = |a: &Tok, b: &Tok| a.end + 1 == b.start && matches!(&text[a.end..b.start], "-" | "/" | "_");
    for k in 1..toks.len() {
        let (l, r) = toks.split_at_mut(k);
        let (p, t) = (&l[k - 1], &mut r[0]);
        if t.digits && joined(p, t) && (!p.digits || p.glued) {
            t.glued = true;
        }
    }
    for k in (0..toks.len().saturating_sub(1)).rev() {
        let (l, r) = toks.split_at_mut(k + 1);
        let (t, n) = (&mut l[k], &r[0]);
        if t.digits && joined(t, n) && (!n.digits || n.glued) {
            t.glued = true;
        }
    }
    toks
}

/// A digit group or a number word inside a run.
#[derive(Clone, Debug)]
struct Unit {
    tok: usize,
    start: usize,
    end: usize,
    /// `None` for a group of written digits.
    word: Option<WordNum>,
}

impl Unit {
    fn is_digits(&self) -> bool {
        self.word.is_none()
    }
    fn ambiguous(&self) -> bool {
        self.word.as_ref().is_some_and(|w| w.ambiguous)
    }
    fn is_og(&self) -> bool {
        self.word.as_ref().is_some_and(|w| w.parts == [Part::Og])
    }
    /// Counts toward "four or more spoken numbers": a number word or a digit
    /// written alone.
    fn spoken(&self) -> bool {
        match &self.word {
            Some(_) => !self.is_og(),
            None => self.end - self.start == 1,
        }
    }
}

/// The digits a sequence of units says. With `pairs`, a tens word takes the
/// digit word right after it ("tjue fem" = 25) unless a comma separates
/// them ("tjue, fem" = 20 5); without, only within one word ("åtti en to"
/// = 80 1 2, "thirty-one" = 31).
fn to_digits(text: &str, units: &[Unit], pairs: bool) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::new();
    let mut tens_open: Option<usize> = None;
    let mut og = false;
    let mut repeat = 1u8;
    for (k, u) in units.iter().enumerate() {
        // Inside one word ("thirty-one") a tens word always takes its digit.
        if k > 0 && (!pairs || text[units[k - 1].end..u.start].contains(',')) {
            tens_open = None;
        }
        let Some(w) = &u.word else {
            out.extend_from_slice(&text.as_bytes()[u.start..u.end]);
            tens_open = None;
            og = false;
            repeat = 1;
            continue;
        };
        for p in &w.parts {
            match *p {
                Part::Digit(d) => {
                    match tens_open.take() {
                        Some(k) if d != 0 && repeat == 1 => out[k + 1] = b'0' + d,
                        _ => {
                            for _ in 0..repeat {
                                out.push(b'0' + d);
                            }
                        }
                    }
                    repeat = 1;
                    og = false;
                }
                Part::Teen(v) | Part::Pair(v) => {
                    out.extend_from_slice(&[b'0' + v / 10, b'0' + v % 10]);
                    tens_open = None;
                    og = false;
                    repeat = 1;
                }
                Part::Tens(v) => {
                    let unit = out.last().copied().filter(|c| og && (b'1'..=b'9').contains(c));
                    if let Some(c) = unit {
                        out.pop();
                        out.extend_from_slice(&[b'0' + v / 10, c]);
                        tens_open = None;
                    } else {
                        out.extend_from_slice(&[b'0' + v / 10, b'0']);
                        tens_open = Some(out.len() - 2);
                    }
                    og = false;
                    repeat = 1;
                }
                Part::Repeat(r) => {
                    repeat = r;
                    tens_open = None;
                }
                Part::Og => {
                    og = true;
                    tens_open = None;
                }
            }
        }
    }
    out
}

/// Separators between digit groups that join them only on the customer's
/// channel, only between groups of one to three digits (as people read
/// numbers out), and only in a list of three or more groups with the same
/// separator (`4,1,2,3`; `2,5` stays a decimal, `1000,2000,3000` a list).
const READ_OUT_GAPS: &[&str] = &[",", " ,", " , ", ". ", ";", "; "];

/// Longest candidate identifier, in units.
const MAX_UNITS: usize = 24;
/// How far context words are looked for, in tokens, numbers included.
const CONTEXT_TOKENS: usize = 32;

struct Cand {
    from: usize,
    to: usize,
    kind: PiiKind,
    span: Range<usize>,
}

struct Scan<'a> {
    text: &'a str,
    toks: Vec<Tok>,
    /// Tokens inside an e-mail, address or name already found.
    masked: Vec<bool>,
    channel: Channel,
}

impl Scan<'_> {
    fn gap(&self, a: usize, b: usize) -> &str {
        &self.text[self.toks[a].end..self.toks[b].start]
    }

    /// Whether two neighbouring units belong to the same spoken or written number.
    fn joins(&self, a: &Unit, b: &Unit) -> bool {
        let gap = &self.text[a.end..b.start];
        if a.is_digits() && b.is_digits() {
            // One separator between digit groups: "41 23 45 67",
            // "1234.56.78903", "4111-1111-...", or ", " as speech
            // recognition writes dictated groups ("1234, 56, 78903").
            matches!(gap, " " | "." | "-" | "\u{a0}" | ", ")
                || (self.channel != Channel::Agent
                    && READ_OUT_GAPS.contains(&gap)
                    && a.end - a.start <= 3
                    && b.end - b.start <= 3
                    && (self.same_gap(a.tok.wrapping_sub(1), a.tok, gap) || self.same_gap(b.tok, b.tok + 1, gap)))
        } else {
            !gap.is_empty()
                && gap.chars().count() <= 3
                && gap.chars().all(|c| matches!(c, ' ' | ',' | '-' | '.' | '\u{a0}'))
        }
    }

    /// Tokens `a` and `b` are digit groups, free, with exactly `gap` between.
    fn same_gap(&self, a: usize, b: usize, gap: &str) -> bool {
        let free = |k: usize| {
            self.toks
                .get(k)
                .is_some_and(|t| t.digits && !t.glued && !self.masked[k])
        };
        free(a) && free(b) && self.gap(a, b) == gap
    }

    /// Digit groups read out on the customer's channel, as speech recognition
    /// writes them: with commas or full stops between (`4,1,2,3`, `41. 23. 45`).
    fn read_out(&self, units: &[Unit]) -> bool {
        self.channel != Channel::Agent
            && units.len() >= 2
            && units.iter().all(Unit::is_digits)
            && units.windows(2).all(|w| {
                let gap = &self.text[w[0].end..w[1].start];
                gap.contains(',') || gap.contains(". ")
            })
    }

    fn numbers(&self, out: &mut Vec<Finding>) {
        let mut run: Vec<Unit> = Vec::new();
        for (ti, t) in self.toks.iter().enumerate() {
            let unit = if self.masked[ti] || t.glued {
                None
            } else if t.digits {
                Some(Unit {
                    tok: ti,
                    start: t.start,
                    end: t.end,
                    word: None,
                })
            } else if let Some(w) = word_num(&t.lower) {
                Some(Unit {
                    tok: ti,
                    start: t.start,
                    end: t.end,
                    word: Some(w),
                })
            } else if self.og_joins(&run, ti) {
                let og = WordNum {
                    parts: vec![Part::Og],
                    english: false,
                    ambiguous: false,
                    is_to: false,
                };
                Some(Unit {
                    tok: ti,
                    start: t.start,
                    end: t.end,
                    word: Some(og),
                })
            } else {
                None
            };
            match unit {
                Some(u) => {
                    if run.last().is_some_and(|p| !self.joins(p, &u)) {
                        self.flush(std::mem::take(&mut run), out);
                    }
                    run.push(u);
                }
                None => self.flush(std::mem::take(&mut run), out),
            }
        }
        self.flush(run, out);
    }

    /// "fem og tjue": "og" joins a spoken digit and the tens word after it.
    fn og_joins(&self, run: &[Unit], ti: usize) -> bool {
        let t = &self.toks[ti];
        if t.lower != "og" {
            return false;
        }
        let after_digit = run.last().is_some_and(|u| {
            u.tok + 1 == ti
                && u.word
                    .as_ref()
                    .is_some_and(|w| matches!(w.parts.last(), Some(Part::Digit(d)) if *d > 0))
        });
        let before_tens = self
            .toks
            .get(ti + 1)
            .is_some_and(|n| !n.digits && !n.glued && !self.masked[ti + 1] && lookup(NB_TENS, &n.lower).is_some());
        after_digit && before_tens && self.gap(ti, ti + 1).trim().is_empty()
    }

    fn flush(&self, run: Vec<Unit>, out: &mut Vec<Finding>) {
        if run.is_empty() {
            return;
        }
        // In English, "to" between number words is the preposition
        // ("from nine to five"), never the Norwegian two.
        if run.iter().any(|u| u.word.as_ref().is_some_and(|w| w.english)) {
            let mut piece = Vec::new();
            for u in run {
                if u.word.as_ref().is_some_and(|w| w.is_to) {
                    self.scan_run(&std::mem::take(&mut piece), out);
                } else {
                    piece.push(u);
                }
            }
            self.scan_run(&piece, out);
        } else {
            self.scan_run(&run, out);
        }
    }

    fn scan_run(&self, run: &[Unit], out: &mut Vec<Finding>) {
        let n = run.len();
        if n == 0 {
            return;
        }
        let mut taken = vec![false; n];
        let mut i = 0;
        while i < n {
            let mut pick = self.best_at(run, i);
            // "text me to 4 1 2 ...": an ambiguous first word gives way to a
            // candidate right after it that reaches further.
            if let Some(c) = &pick {
                if run[i].ambiguous() && i + 1 < n {
                    if let Some(alt) = self.best_at(run, i + 1).filter(|a| a.to > c.to) {
                        pick = Some(alt);
                    }
                }
            }
            match pick {
                Some(c) => {
                    taken[c.from..c.to].iter_mut().for_each(|t| *t = true);
                    out.push(Finding {
                        kind: c.kind,
                        span: c.span,
                    });
                    i = c.to;
                }
                None => i += 1,
            }
        }
        let mut k = 0;
        while k < n {
            if taken[k] {
                k += 1;
                continue;
            }
            let s = k;
            while k < n && !taken[k] {
                k += 1;
            }
            if let Some(f) = self.leftover(run, s, k) {
                out.push(f);
            }
        }
    }

    fn best_at(&self, run: &[Unit], i: usize) -> Option<Cand> {
        let top = run.len().min(i + MAX_UNITS);
        (i + 1..=top).rev().find_map(|j| self.classify(run, i, j))
    }

    /// Digit groups on both sides of a boundary: cutting there splits a
    /// written number.
    fn tight(run: &[Unit], a: usize) -> bool {
        run[a].is_digits() && run[a + 1].is_digits()
    }

    /// `+` or the word "pluss"/"plus" right before a unit: (start, token).
    fn plus_before(&self, u: &Unit) -> Option<(usize, usize)> {
        if self.text[..u.start].ends_with('+') {
            return Some((u.start - 1, u.tok));
        }
        let p = u.tok.checked_sub(1)?;
        let t = &self.toks[p];
        let plus = !t.digits && matches!(t.lower.as_str(), "pluss" | "plus");
        (plus && self.gap(p, u.tok).chars().all(char::is_whitespace)).then_some((t.start, p))
    }

    /// The nearest keyword in the six words before token `tok`, within the
    /// sentence (or the question it answers); an amount word counts only
    /// right before the number.
    fn context_before(&self, tok: usize) -> Ctx {
        let mut words = 0;
        let mut k = tok;
        // Numbers are skipped, not counted; the token cap keeps a long run of
        // spoken digits linear.
        let floor = tok.saturating_sub(CONTEXT_TOKENS);
        while k > floor && words < 6 {
            let later = &self.toks[k];
            let gap = self.gap(k - 1, k);
            // A question does not end the context: its answer follows
            // ("fødselsnummeret? Ja, 12323").
            let sentence_end = gap.contains(['.', '!']) && self.text[later.start..].starts_with(char::is_uppercase);
            if sentence_end && k != tok {
                break;
            }
            k -= 1;
            let t = &self.toks[k];
            if t.digits || t.glued || word_num(&t.lower).is_some() {
                continue;
            }
            if words == 0 && k + 1 == tok && amount_word(&t.lower) && gap.trim().is_empty() {
                return Ctx::Amount;
            }
            if let Some(c) = keyword(&t.lower) {
                return c;
            }
            words += 1;
        }
        if tok > 0 && self.text[..self.toks[tok].start].trim_end().ends_with(['$', '€', '£']) {
            return Ctx::Amount;
        }
        Ctx::None
    }

    /// The nearest account or identity keyword in the four words after token
    /// `tok` ("12345678903 er kontonummeret mitt").
    fn context_after(&self, tok: usize) -> Ctx {
        let mut words = 0;
        let mut k = tok + 1;
        let ceiling = self.toks.len().min(tok + 1 + CONTEXT_TOKENS);
        while k < ceiling && words < 4 {
            if self.gap(k - 1, k).contains(['.', '!', '?']) {
                break;
            }
            let t = &self.toks[k];
            k += 1;
            if t.digits || word_num(&t.lower).is_some() {
                continue;
            }
            match keyword(&t.lower) {
                Some(c @ (Ctx::Fnr | Ctx::Account)) => return c,
                _ => words += 1,
            }
        }
        Ctx::None
    }

    /// The word right after unit `u` (same sentence, a space between).
    fn next_word(&self, u: &Unit) -> Option<&str> {
        let n = self.toks.get(u.tok + 1)?;
        let gap = self.gap(u.tok, u.tok + 1);
        (!n.digits && gap.chars().all(char::is_whitespace)).then_some(n.lower.as_str())
    }

    fn currency_after(&self, u: &Unit) -> bool {
        let rest = self.text[u.end..].trim_start();
        rest.starts_with('%') || rest.starts_with(",-") || self.next_word(u).is_some_and(|w| CURRENCY.contains(&w))
    }

    /// A currency, a unit ("år", "ganger", "%") or a magnitude ("tusen")
    /// follows: the number is a quantity. "tusen takk" is thanks.
    fn quantity_after(&self, u: &Unit) -> bool {
        if self.currency_after(u) {
            return true;
        }
        let Some(w) = self.next_word(u) else {
            return false;
        };
        let thanks = w == "tusen" && self.toks.get(u.tok + 2).is_some_and(|t| t.lower == "takk");
        UNITS.contains(&w) || (is_magnitude(w) && !thanks)
    }

    /// "to hundre og femti", "two thousand twenty four": a magnitude right before.
    fn magnitude_before(&self, u: &Unit) -> bool {
        let Some(p) = u.tok.checked_sub(1) else {
            return false;
        };
        let mut t = &self.toks[p];
        if matches!(t.lower.as_str(), "og" | "and") && p > 0 {
            t = &self.toks[p - 1];
        }
        !t.digits && is_magnitude(&t.lower)
    }

    fn classify(&self, run: &[Unit], i: usize, j: usize) -> Option<Cand> {
        let units = &run[i..j];
        if units[0].is_og() || units[units.len() - 1].is_og() {
            return None;
        }
        let paired = to_digits(self.text, units, true);
        let single = to_digits(self.text, units, false);
        // A tens word before a digit word is heard both ways; either reading
        // that validates counts.
        if let Some(c) = self.classify_digits(run, i, j, &paired) {
            return Some(c);
        }
        if single != paired {
            return self.classify_digits(run, i, j, &single);
        }
        None
    }

    fn classify_digits(&self, run: &[Unit], i: usize, j: usize, digits: &[u8]) -> Option<Cand> {
        let n = run.len();
        let units = &run[i..j];
        let dl = digits.len();
        if !(8..=19).contains(&dl) {
            return None;
        }
        let d = std::str::from_utf8(digits).ok()?;
        let all_digits = units.iter().all(Unit::is_digits);
        let groups: Vec<usize> = units.iter().map(|u| u.end - u.start).collect();
        let cut = (i > 0 && Self::tight(run, i - 1)) || (j < n && Self::tight(run, j - 1));
        let dictated = all_digits && groups.len() >= 4 && groups.iter().all(|g| *g == 1);
        let spoken = !all_digits || dictated;
        let plus = if i == 0 || !Self::tight(run, i - 1) {
            self.plus_before(&units[0])
        } else {
            None
        };
        let (start, first_tok) = plus.unwrap_or((units[0].start, units[0].tok));
        let end = units[units.len() - 1].end;
        let ctx = self.context_before(first_tok);
        let last = &units[units.len() - 1];
        if ctx == Ctx::Amount || (j == n && self.currency_after(last)) {
            return None;
        }
        let quantity = (j == n && self.quantity_after(last)) || (i == 0 && self.magnitude_before(&units[0]));
        let cand = |kind| {
            Some(Cand {
                from: i,
                to: j,
                kind,
                span: start..end,
            })
        };
        // A strict format is needed to cut a written number in two
        // ("1234.56.78903 500 kroner"); a phone never cuts one.
        let strict = !cut || all_digits;

        if plus.is_some() && !cut && (8..=15).contains(&dl) {
            return cand(PiiKind::Phone);
        }
        if dl == 12 && d.starts_with("0047") && !cut && !quantity {
            return cand(PiiKind::Phone);
        }
        // The second FNR check digit uses the account weights, so every valid
        // FNR is also a valid account number: which one it is comes from the
        // words around it, then the grouping, and FNR (the more sensitive)
        // when nothing tells.
        if dl == 11 {
            let fnr_shape = !cut || matches!(groups.as_slice(), [11] | [6, 5] | [2, 2, 2, 5]);
            let account_shape = !cut || matches!(groups.as_slice(), [11] | [4, 2, 5]);
            if strict && (fnr_shape || account_shape) && valid_account(d) {
                if valid_fnr(d) && fnr_shape {
                    let by_words = match ctx {
                        Ctx::Fnr | Ctx::Account => ctx,
                        _ => self.context_after(units[units.len() - 1].tok),
                    };
                    let kind = match by_words {
                        Ctx::Account if account_shape => PiiKind::Account,
                        Ctx::Fnr => PiiKind::Fnr,
                        _ if all_digits && groups == [4, 2, 5] => PiiKind::Account,
                        _ => PiiKind::Fnr,
                    };
                    return cand(kind);
                }
                if account_shape && ctx != Ctx::NonId {
                    return cand(PiiKind::Account);
                }
            }
        }
        if (13..=19).contains(&dl) && !d.starts_with('0') && luhn(d) && ctx != Ctx::NonId {
            let card_shape = !cut
                || groups.len() == 1
                || matches!(groups.as_slice(), [4, 6, 5] | [4, 6, 4])
                || groups
                    .split_last()
                    .is_some_and(|(l, rest)| (1..=4).contains(l) && rest.iter().all(|g| *g == 4));
            if strict && card_shape {
                return cand(PiiKind::Card);
            }
        }
        // Eight digits inside a longer spoken run after "fødselsnummer" are
        // a garbled identifier, not a phone: leave them to [NUMBER].
        let partial = i > 0 || j < n;
        let other_id = matches!(ctx, Ctx::Fnr | Ctx::Account | Ctx::Card);
        // An unbroken group of eight may stand next to another number
        // ("kl 14 41234567"); a grouped phone never cuts a written number.
        let whole = !cut || groups == [8];
        let phone_ctx = whole && !quantity && ctx != Ctx::NonId && !(partial && other_id);
        if dl == 8 && phone_ctx && (b'2'..=b'9').contains(&digits[0]) {
            let (shape, dated) = self.phone_shape(units, &groups, self.read_out(units));
            if spoken || shape || (ctx == Ctx::Phone && !dated) {
                return cand(PiiKind::Phone);
            }
        }
        if dl == 10 && d.starts_with("47") && phone_ctx && ctx == Ctx::Phone {
            return cand(PiiKind::Phone);
        }
        None
    }

    /// Whether written digit groups of eight digits in all look like a phone
    /// number rather than a date, an amount or a list; and whether a date.
    /// Read out (`relaxed`), commas and full stops are only how speech
    /// recognition wrote the pauses.
    fn phone_shape(&self, units: &[Unit], groups: &[usize], relaxed: bool) -> (bool, bool) {
        let sep = |c: char| units.windows(2).any(|w| self.text[w[0].end..w[1].start].contains(c));
        let year = |u: &Unit| {
            let g = &self.text[u.start..u.end];
            g.len() == 4 && (g.starts_with("19") || g.starts_with("20"))
        };
        let thousands = groups.len() > 1 && groups[0] <= 3 && groups[1..].iter().all(|g| *g == 3);
        // "24 03 2024", "2024-03-24", "2019 2020": a year beside day and
        // month parts, or only years ("7700 2075" is a phone).
        let dated = groups.len() > 1
            && (units.iter().all(year)
                || (groups.len() >= 3
                    && (year(&units[0]) || year(&units[units.len() - 1]))
                    && groups.iter().all(|g| *g <= 2 || *g == 4)));
        let list = sep(',') && groups.iter().any(|g| *g > 3);
        ((relaxed || (!sep('.') && !list)) && !thousands && !dated, dated)
    }

    /// Units no identifier claimed: `[NUMBER]` when four or more were said
    /// one by one (or in pairs), or when at least eight digits follow an
    /// identifier word — a misheard identifier is still an identifier.
    fn leftover(&self, run: &[Unit], s: usize, e: usize) -> Option<Finding> {
        let units = &run[s..e];
        let first = units.iter().position(|u| !u.is_og())?;
        let last = units.iter().rposition(|u| !u.is_og())?;
        let units = &units[first..=last];
        let ctx = self.context_before(units[0].tok);
        let tail = &units[units.len() - 1];
        let quantity = (s + last + 1 == run.len() && self.quantity_after(tail))
            || (s + first == 0 && self.magnitude_before(&units[0]));
        if ctx == Ctx::Amount || quantity {
            return None;
        }
        let spoken = units.iter().filter(|u| u.spoken()).count();
        let sensitive = matches!(ctx, Ctx::Fnr | Ctx::Account | Ctx::Card | Ctx::Phone);
        let digits = to_digits(self.text, units, true);
        let long = (8..=20).contains(&digits.len());
        // "personnummer 12371": the five digits after the birth date are
        // themselves called the personnummer; the date alone is six.
        let fnr_part = ctx == Ctx::Fnr && (digits.len() == 5 || (digits.len() == 6 && birth_date(&digits)));
        (spoken >= 4 || (sensitive && long) || fnr_part).then(|| Finding {
            kind: PiiKind::Number,
            span: units[0].start..tail.end,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn kinds(text: &str) -> Vec<(PiiKind, String)> {
        redact(text)
            .findings
            .into_iter()
            .map(|f| (f.kind, text[f.span].to_string()))
            .collect()
    }

    // Worked by hand from Skatteetaten's description, not from this code:
    // 010180 123 → k1: 3·0+7·1+6·0+1·1+8·8+9·0+4·1+5·2+2·3 = 92, 92 mod 11 = 4,
    // 11−4 = 7; k2: 5·0+4·1+3·0+2·1+7·8+6·0+5·1+4·2+3·3+2·7 = 98, 98 mod 11
    // = 10, 11−10 = 1 → 01018012371.
    // D-number 410180 123 → k1: 104 mod 11 = 5 → 6; k2 over …1236: 116 mod 11
    // = 6 → 5 → 41018012365.
    #[test]
    fn fnr_check_digits() {
        assert!(valid_fnr("01018012371"));
        assert!(valid_fnr("41018012365"), "D-number");
        assert!(!valid_fnr("01018012372"), "second check digit off by one");
        assert!(!valid_fnr("01018012381"), "first check digit off by one");
        assert!(!valid_fnr("0101801237"), "ten digits");
        assert!(!valid_fnr("0101801237a"));
        assert!(!valid_fnr("010180 12371"), "separators are the caller's job");
        assert!(!valid_fnr("00000000000"), "day zero");
        assert!(!valid_fnr("32018012345"));
    }

    /// For a fixed date, each individual number has at most one valid pair
    /// of check digits, and none when either step leaves remainder 1 (about
    /// 1 in 11 each): 1000 · (10/11)² ≈ 826 valid numbers.
    #[test]
    fn fnr_has_at_most_one_check_pair_per_individual_number() {
        let mut valid = 0;
        for ind in 0..1000u32 {
            let pairs = (0..100u32)
                .filter(|k| valid_fnr(&format!("290280{ind:03}{k:02}")))
                .count();
            assert!(pairs <= 1, "{ind}: {pairs}");
            valid += pairs;
        }
        assert!((780..=870).contains(&valid), "{valid}");
        assert!(!valid_fnr("29028112371"), "29 February 1981 does not exist");
    }

    // 1234.56.78903: 1·5+2·4+3·3+4·2+5·7+6·6+7·5+8·4+9·3+0·2 = 195,
    // 195 mod 11 = 8, 11−8 = 3.
    #[test]
    fn account_check_digit() {
        assert!(valid_account("12345678903"));
        assert!(!valid_account("12345678904"));
        assert!(!valid_account("00000000000"));
        assert!(!valid_account("1234.56.78903"));
    }

    // Published Luhn examples (ISO/IEC 7812 test numbers used by card
    // networks, and Wikipedia's 79927398713).
    #[test]
    fn luhn_check() {
        for ok in [
            "4111111111111111",
            "5555555555554444",
            "378282246310005",
            "6011111111111117",
            "79927398713",
        ] {
            assert!(luhn(ok), "{ok}");
        }
        for bad in ["4111111111111112", "79927398710", "1", "", "4111 1111 1111 1111"] {
            assert!(!luhn(bad), "{bad}");
        }
    }

    #[test]
    fn written_forms() {
        assert_eq!(
            kinds("Fødselsnummeret er 010180 12371."),
            [(PiiKind::Fnr, "010180 12371".into())]
        );
        assert_eq!(
            kinds("Kontoen er 1234.56.78903, takk"),
            [(PiiKind::Account, "1234.56.78903".into())]
        );
        assert_eq!(
            kinds("card 4111 1111 1111 1111 ok"),
            [(PiiKind::Card, "4111 1111 1111 1111".into())]
        );
        assert_eq!(
            kinds("ring +47 412 34 567 i dag"),
            [(PiiKind::Phone, "+47 412 34 567".into())]
        );
        assert_eq!(kinds("ring 41 23 45 67."), [(PiiKind::Phone, "41 23 45 67".into())]);
        assert_eq!(
            kinds("mail ola.nordmann@eksempel.no."),
            [(PiiKind::Email, "ola.nordmann@eksempel.no".into())]
        );
    }

    #[test]
    fn spoken_forms() {
        assert_eq!(
            kinds("det er ola punktum nordmann krøllalfa eksempel punktum no, takk"),
            [(
                PiiKind::Email,
                "ola punktum nordmann krøllalfa eksempel punktum no".into()
            )]
        );
        assert_eq!(
            kinds("it's john dot smith at example dot com."),
            [(PiiKind::Email, "john dot smith at example dot com".into())]
        );
        assert_eq!(
            kinds("kontonummeret er tolv trettifire femtiseks sju åtte ni null tre"),
            [(
                PiiKind::Account,
                "tolv trettifire femtiseks sju åtte ni null tre".into()
            )]
        );
        assert_eq!(
            kinds("send it to nine four one two three four five six"),
            [(PiiKind::Phone, "nine four one two three four five six".into())]
        );
        assert_eq!(
            kinds("PIN er en to tre fire"),
            [(PiiKind::Number, "en to tre fire".into())]
        );
        assert_eq!(
            kinds("fem og tjue, seks, sju, åtte"),
            [(PiiKind::Number, "fem og tjue, seks, sju, åtte".into())]
        );
    }

    #[test]
    fn quantities_and_other_numbers_stay() {
        for t in [
            "Jeg vil låne 2 500 000 kroner.",
            "fifty thousand kroner",
            "to tusen fem hundre kroner",
            "Den 24.03.2024 kl. 14.30",
            "Ordrenummeret er 58291734.",
            "saksnummer 2024-118734",
            "in nineteen eighty five",
            "log in at dnb dot no",
            "Kontonummeret er 1234 56 78903, tusen takk",
            "25 000 000 kroner",
            "from nine to five",
        ] {
            let r = redact(t);
            let got: Vec<_> = r.findings.iter().map(|f| (f.kind, &t[f.span.clone()])).collect();
            if t.contains("tusen takk") {
                assert_eq!(got, [(PiiKind::Account, "1234 56 78903")]);
            } else {
                assert!(got.is_empty(), "{t}: {got:?}");
            }
        }
    }

    #[test]
    fn ties_go_by_words_then_format_then_fnr() {
        // Valid as both: found by search in the corpus generator's numbers.
        let both = (0..10_000_000u64)
            .map(|n| format!("0101{:07}", n))
            .find(|s| valid_fnr(s) && valid_account(s))
            .unwrap();
        let grouped = format!("{} {} {}", &both[..4], &both[4..6], &both[6..]);
        let six_five = format!("{} {}", &both[..6], &both[6..]);
        assert_eq!(redact(&format!("konto {both}")).findings[0].kind, PiiKind::Account);
        assert_eq!(
            redact(&format!("fødselsnummer {grouped}")).findings[0].kind,
            PiiKind::Fnr
        );
        assert_eq!(redact(&format!("det er {grouped}")).findings[0].kind, PiiKind::Account);
        assert_eq!(redact(&format!("det er {six_five}")).findings[0].kind, PiiKind::Fnr);
        assert_eq!(redact(&format!("det er {both}")).findings[0].kind, PiiKind::Fnr);
    }

    #[test]
    fn edges_found_while_probing() {
        let cases: &[(&str, &[(PiiKind, &str)])] = &[
            ("kl 14 41234567", &[(PiiKind::Phone, "41234567")]),
            ("Mitt nummer er 9 12 34 567", &[(PiiKind::Phone, "9 12 34 567")]),
            ("Telefon 1234 5678", &[(PiiKind::Number, "1234 5678")]),
            ("Født 010180, personnummer 12371", &[(PiiKind::Number, "12371")]),
            ("fødselsnummeret? Ja, 12371.", &[(PiiKind::Number, "12371")]),
            (
                "Nummeret mitt er fire en, to tre, fire fem, seks sju.",
                &[(PiiKind::Phone, "fire en, to tre, fire fem, seks sju")],
            ),
            ("text me to 4 1 2 3 4 5 6 7", &[(PiiKind::Phone, "4 1 2 3 4 5 6 7")]),
            (
                "Ja, det er null en null en åtti en to tre sju en.",
                &[(PiiKind::Fnr, "null en null en åtti en to tre sju en")],
            ),
            (
                "Det er kari krøll alfa online punktum no",
                &[(PiiKind::Email, "kari krøll alfa online punktum no")],
            ),
            ("Ring meg på (+47) 41 23 45 67.", &[(PiiKind::Phone, "41 23 45 67")]),
            // Not identifiers: a date after "calls", codes with digits in them,
            // two phones with nothing between them (a known miss).
            ("concurrent real-time calls through Kafka (2026-11-28)", &[]),
            ("the key tlf1-20261128-8f3b2c1e9d and FKN-2026-0117.age", &[]),
            ("Vi har fire, fem, seks kontoer og ringte fire fem ganger", &[]),
            ("mitt nummer er 41 23 45 67 89", &[]),
        ];
        for (text, want) in cases {
            let got = kinds(text);
            let want: Vec<(PiiKind, String)> = want.iter().map(|(k, s)| (*k, s.to_string())).collect();
            assert_eq!(got, want, "{text}");
        }
    }

    fn kinds_from(text: &str, channel: Channel) -> Vec<(PiiKind, String)> {
        redact_from(text, channel)
            .findings
            .into_iter()
            .map(|f| (f.kind, text[f.span].to_string()))
            .collect()
    }

    #[test]
    fn nynorsk_number_words() {
        assert_eq!(
            kinds("Ja, det er null eitt null eitt åtti eitt to tre sju eitt."),
            [(PiiKind::Fnr, "null eitt null eitt åtti eitt to tre sju eitt".into())]
        );
        assert_eq!(
            kinds("Mobilnummeret er nittiein tjuetre førtifem sekstisju."),
            [(PiiKind::Phone, "nittiein tjuetre førtifem sekstisju".into())]
        );
        assert_eq!(
            kinds("Nummeret er tjuge, tjuetre, førtifem, sekstisju"),
            [(PiiKind::Phone, "tjuge, tjuetre, førtifem, sekstisju".into())]
        );
        assert_eq!(
            kinds("PIN-koden er ein to tre fire"),
            [(PiiKind::Number, "ein to tre fire".into())]
        );
        assert_eq!(
            kinds("Koden er ein og tjuge, tre, fire, fem"),
            [(PiiKind::Number, "ein og tjuge, tre, fire, fem".into())]
        );
        for t in [
            "Eg vil låne to millionar kroner.",
            "Eg har ringt tre eller fire gonger.",
            "Det tek tre, fire dagar.",
            "Eg har berre ein konto og eitt kort.",
        ] {
            assert_eq!(kinds(t), [], "{t}");
        }
    }

    #[test]
    fn names_need_a_listed_name_or_a_cue() {
        let cases: &[(&str, &[&str])] = &[
            ("Jeg heter Kari Nordmann og ringer om lånet.", &["Kari Nordmann"]),
            ("Eg heiter Aleksandra Wiśniewska.", &["Aleksandra Wiśniewska"]),
            ("Hei Bjørn, det er Liv Berg som ringer.", &["Bjørn", "Liv Berg"]),
            ("Per Bakken ringte i går.", &["Per Bakken"]),
            ("Kontaktpersonen er Anne-Lise Berg.", &["Anne-Lise Berg"]),
            ("Karis konto er sperret.", &["Karis"]),
            ("jeg snakket med kari i går", &["kari"]),
            // Ordinary words that are also names, and places.
            ("Per måned blir det tre tusen kroner.", &[]),
            ("Liv og helse går foran.", &[]),
            ("Hans konto er sperret, og Dag for dag går det bedre.", &[]),
            ("Vi var i Vik og på Berg i sommer.", &[]),
            ("Han heter ikke det. Kontakt DNB.", &[]),
        ];
        for (text, want) in cases {
            let got: Vec<String> = kinds(text)
                .into_iter()
                .filter(|(k, _)| *k == PiiKind::Name)
                .map(|(_, s)| s)
                .collect();
            assert_eq!(got, *want, "{text}");
        }
        // Redacting again finds nothing: a token is no cue.
        let once = redact("Kari er Glad i dag.");
        assert_eq!(once.text, "[NAME] er Glad i dag.");
        assert!(redact(&once.text).findings.is_empty());
    }

    #[test]
    fn addresses_need_a_house_number() {
        let cases: &[(&str, &[&str])] = &[
            ("Jeg bor i Storgata 12 B, 0661 Oslo.", &["Storgata 12 B, 0661 Oslo"]),
            ("Den nye adressen er Sinsenveien fem.", &["Sinsenveien fem"]),
            ("Send kortet til Karl Johans gate 1.", &["Karl Johans gate 1"]),
            (
                "Eg bur i Kyrkjevegen 14, 5003 Bergen.",
                &["Kyrkjevegen 14, 5003 Bergen"],
            ),
            ("Adressen er Fagerborggata 3b.", &["Fagerborggata 3b"]),
            ("Han bor i Nedre Storgate 7.", &["Nedre Storgate 7"]),
            ("Jeg bor i Bogstadveien nummer 5.", &["Bogstadveien nummer 5"]),
            ("Storgata er stengt.", &[]),
            ("Vi kjørte motorveien 3 timer.", &[]),
            ("Jeg har bodd i Kirkeveien i 12 år.", &[]),
            ("Jeg gikk Storgata en gang til.", &[]),
        ];
        for (text, want) in cases {
            let got: Vec<String> = kinds(text)
                .into_iter()
                .filter(|(k, _)| *k == PiiKind::Address)
                .map(|(_, s)| s)
                .collect();
            assert_eq!(got, *want, "{text}");
        }
        // A phone number after a street name is a phone number.
        assert_eq!(kinds("Storgata 41 23 45 67"), [(PiiKind::Phone, "41 23 45 67".into())]);
    }

    #[test]
    fn digits_read_out_join_on_the_customer_channel() {
        for (text, kind, span) in [
            ("Ja, det er 91,23,45,67.", PiiKind::Phone, "91,23,45,67"),
            ("Det er 41. 23. 45. 67.", PiiKind::Phone, "41. 23. 45. 67"),
            ("Mobilen er 4,1,2,3,4,5,6,7", PiiKind::Phone, "4,1,2,3,4,5,6,7"),
            (
                "Kontonummeret er 1,2,0,7,3,3,1,1,8,8,6.",
                PiiKind::Account,
                "1,2,0,7,3,3,1,1,8,8,6",
            ),
        ] {
            let want = vec![(kind, span.to_string())];
            assert_eq!(kinds_from(text, Channel::Customer), want, "{text}");
            assert_eq!(kinds_from(text, Channel::Mixed), want, "{text}");
            assert_eq!(kinds_from(text, Channel::Agent), [], "agent: {text}");
        }
        // Decimals and years are not read-out digits.
        for t in [
            "Renten var 4,5, så 4,9 og nå 5,2.",
            "Jeg var kunde i 2019, 2020 og 2021.",
            "Det kostet 1,5 millioner.",
            "benches/tls.sh 1000,2000,3000,4000 20",
        ] {
            assert_eq!(kinds_from(t, Channel::Customer), [], "{t}");
        }
        assert_eq!(Channel::from_speaker("agent"), Channel::Agent);
        assert_eq!(Channel::from_speaker("customer"), Channel::Customer);
        assert_eq!(Channel::from_speaker("mixed"), Channel::Mixed);
    }

    /// A long spoken run (someone reading out a list) stays linear.
    #[test]
    fn long_runs_stay_fast() {
        let text = "fire en to tre ".repeat(5000) + "12 34 ".repeat(5000).as_str();
        let start = std::time::Instant::now();
        let r = redact(&text);
        assert!(!r.findings.is_empty());
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn findings_do_not_echo_values() {
        let r = redact("fnr 01018012371");
        let dbg = format!("{:?}", r.findings);
        assert!(!dbg.contains("01018012371"), "{dbg}");
        assert_eq!(r.text, "fnr [FNR]");
    }
}
