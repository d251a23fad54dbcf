//! Personal names: a gazetteer of common Norwegian given names and surnames
//! (`given_names.txt`, `surnames.txt`), surname endings, capitalisation and
//! the words around a name.
//!
//! Many names are also ordinary words (`Per` ≈ "per", `Liv` = life, `Bjørn`
//! = bear, `Dag` = day, `Hans` = his; `Berg`, `Vik`, `Dal` are places). Such
//! entries are marked `*` in the lists and are a name only with evidence:
//! a surname after them (`Per Hansen`) or a cue word before them (`jeg heter
//! Per`, `hei Bjørn`, `snakke med Liv`). Other listed names count whenever
//! they are capitalised. The trade-off is written up in
//! `docs/pii-redaction.md`.

use super::{Finding, PiiKind, Tok};
use std::collections::HashMap;
use std::sync::OnceLock;

const GIVEN: &str = include_str!("given_names.txt");
const SURNAMES: &str = include_str!("surnames.txt");

/// Endings of Norwegian surnames (farm names and patronymics): a
/// capitalised word with one of them is a surname right after a given name
/// (`Ingrid Fjellstad`, `Ola Nordvik`), never alone.
const SURNAME_ENDINGS: &[&str] = &[
    "sen", "son", "sson", "stad", "rud", "ruud", "heim", "vik", "dal", "dahl", "dalen", "berg", "berget", "bakken",
    "bakke", "haug", "haugen", "hauge", "land", "nes", "næs", "ness", "moen", "lien", "lie", "li", "seth", "set",
    "voll", "vold", "by", "bø", "bøe", "aas", "ås", "åsen", "aasen", "eng", "engen", "strand", "gård", "gaard", "gard",
    "lund", "holm", "sæter", "seter", "sæther", "stein", "myr", "myhre", "mo", "rød", "bråten", "tveit", "tveiten",
    "hus", "torp", "øy", "sveen", "skog", "stuen", "hagen", "fjeld", "fjell", "næss", "nesse", "vang", "eide",
];

/// Lower-case name → whether it is also an ordinary word.
type Gazetteer = HashMap<String, bool>;

fn parse(list: &str) -> Gazetteer {
    list.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| match l.strip_prefix('*') {
            Some(n) => (n.to_lowercase(), true),
            None => (l.to_lowercase(), false),
        })
        .collect()
}

fn given() -> &'static Gazetteer {
    static G: OnceLock<Gazetteer> = OnceLock::new();
    G.get_or_init(|| parse(GIVEN))
}

fn surnames() -> &'static Gazetteer {
    static S: OnceLock<Gazetteer> = OnceLock::new();
    S.get_or_init(|| parse(SURNAMES))
}

/// A listed name, also as a genitive (`Karis konto`) and as each part of a
/// hyphenated name (`Anne-Lise`): `Some(ambiguous)`.
fn lookup(g: &Gazetteer, lower: &str) -> Option<bool> {
    if let Some(a) = g.get(lower) {
        return Some(*a);
    }
    if lower.contains('-') {
        let parts: Vec<Option<bool>> = lower.split('-').map(|p| g.get(p).copied()).collect();
        if parts.iter().all(Option::is_some) {
            return Some(parts.iter().all(|p| *p == Some(true)));
        }
    }
    lower
        .strip_suffix('s')
        .filter(|s| s.chars().count() >= 3)
        .and_then(|s| g.get(s).copied())
}

/// A capitalised word (not an acronym such as `DNB` or a token `[NAME]`).
fn capitalised(raw: &str) -> bool {
    let mut cs = raw.chars();
    let first = cs.next().is_some_and(char::is_uppercase);
    let rest: Vec<char> = cs.filter(|c| c.is_alphabetic()).collect();
    // An acronym is capitals throughout; one capital letter alone is a word.
    let acronym = !rest.is_empty() && rest.iter().all(|c| c.is_uppercase());
    first && !acronym
}

fn surname_like(lower: &str) -> bool {
    lookup(surnames(), lower).is_some()
        || SURNAME_ENDINGS.iter().any(|e| {
            lower
                .strip_suffix(e)
                .is_some_and(|stem| stem.chars().filter(|c| c.is_alphabetic()).count() >= 2)
        })
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Cue {
    None,
    /// Greeting, title, "snakke med", "kontakt": a listed name after it is one.
    Weak,
    /// "jeg heter", "mitt navn er", "my name is": the capitalised words after
    /// it are a name, listed or not.
    Strong,
}

const SUBJECTS: &[&str] = &[
    "jeg",
    "eg",
    "han",
    "hun",
    "ho",
    "du",
    "dere",
    "de",
    "kona",
    "mannen",
    "sønnen",
    "datteren",
    "dattera",
    "dotter",
    "dottera",
    "mor",
    "mora",
    "far",
    "faren",
    "moren",
    "broren",
    "søsteren",
    "søstera",
    "sambohen",
    "samboeren",
    "rådgiveren",
    "rådgjevaren",
    "kontaktpersonen",
    "kunden",
];
const NAME_NOUNS: &[&str] = &["navn", "navnet", "namn", "namnet", "name"];
const GREETINGS: &[&str] = &[
    "hei",
    "hallo",
    "heisann",
    "hallå",
    "morn",
    "hi",
    "hello",
    "hey",
    "dear",
    "herr",
    "fru",
    "frøken",
    "mr",
    "mrs",
    "ms",
    "miss",
    "kontakt",
    "kontakte",
    "kontaktperson",
    "kontaktpersonen",
    "hilsen",
    "helsing",
    "takk",
];
const TALK: &[&str] = &[
    "snakke", "snakker", "snakket", "snakka", "snakkar", "prate", "prater", "pratet", "prata", "pratar", "speak",
    "speaking", "spoke", "talk", "talked", "talking", "ask", "asked", "spør", "spurte", "spurde", "ringte", "ringde",
    "møtte",
];

struct Ctx<'a> {
    text: &'a str,
    toks: &'a [Tok],
    masked: &'a [bool],
}

impl Ctx<'_> {
    fn raw(&self, k: usize) -> &str {
        &self.text[self.toks[k].start..self.toks[k].end]
    }

    /// A token redaction put in (`[NAME]`): no cue, so that redacting the
    /// output again finds nothing new ("[NAME] er Glad" is not "navnet er").
    fn placeholder(&self, k: usize) -> bool {
        let t = &self.toks[k];
        self.text[..t.start].ends_with('[') && self.text[t.end..].starts_with(']')
    }

    /// The alphabetic word `back` tokens before `k` in the same sentence.
    fn before(&self, k: usize, back: usize) -> Option<&str> {
        let mut i = k;
        for _ in 0..back {
            let p = i.checked_sub(1)?;
            if self.text[self.toks[p].end..self.toks[i].start].contains(['.', '!', '?'])
                || self.toks[p].digits
                || self.placeholder(p)
            {
                return None;
            }
            i = p;
        }
        Some(self.toks[i].lower.as_str())
    }

    fn cue(&self, k: usize) -> Cue {
        let b1 = self.before(k, 1);
        let b2 = self.before(k, 2);
        let b3 = self.before(k, 3);
        let heter = |w: Option<&str>| matches!(w, Some("heter" | "heiter" | "het" | "hette" | "heitte"));
        let is = |w: Option<&str>| matches!(w, Some("er" | "is" | "var" | "was"));
        let in_ = |w: Option<&str>, set: &[&str]| w.is_some_and(|w| set.contains(&w));
        // "jeg heter", "heter du", "mitt navn er", "navnet mitt er", "my name is", "name's".
        if (heter(b1) && in_(b2, SUBJECTS))
            || (in_(b1, SUBJECTS) && heter(b2))
            || (is(b1) && in_(b2, NAME_NOUNS))
            || (is(b1)
                && in_(
                    b2,
                    &["mitt", "ditt", "hans", "hennes", "hennar", "my", "his", "her", "your"],
                )
                && in_(b3, NAME_NOUNS))
            || b1 == Some("name's")
        {
            return Cue::Strong;
        }
        if in_(b1, GREETINGS)
            || (in_(b1, &["med", "with", "to", "for", "etter"]) && in_(b2, TALK))
            || (is(b1) && in_(b2, &["jeg", "eg", "this", "i"]))
            || b1 == Some("i'm")
        {
            return Cue::Weak;
        }
        Cue::None
    }

    /// Token `k` can stand in a name: a word, not masked, not glued to digits.
    fn word(&self, k: usize) -> bool {
        let t = &self.toks[k];
        !t.digits && !t.glued && !self.masked[k]
    }

    /// Token `k + 1` follows `k` with one space between.
    fn next_spaced(&self, k: usize) -> bool {
        k + 1 < self.toks.len()
            && self.word(k + 1)
            && matches!(&self.text[self.toks[k].end..self.toks[k + 1].start], " " | "\u{a0}")
    }

    /// Whether a name starts at token `k`, and under which cue.
    fn starts(&self, k: usize) -> Option<Cue> {
        if !self.word(k) {
            return None;
        }
        let lower = self.toks[k].lower.as_str();
        let cap = capitalised(self.raw(k));
        let g = lookup(given(), lower);
        let s = lookup(surnames(), lower);
        let cue = self.cue(k);
        let ok = match cue {
            Cue::Strong => cap || g.is_some() || s.is_some(),
            // "snakket med kari": a listed name that is no ordinary word
            // needs no capital after a cue.
            Cue::Weak => (cap && (g.is_some() || s.is_some())) || g == Some(false),
            Cue::None => {
                let surname_next =
                    self.next_spaced(k) && capitalised(self.raw(k + 1)) && surname_like(&self.toks[k + 1].lower);
                cap && (g == Some(false) || (g.is_some() && surname_next) || s == Some(false))
            }
        };
        ok.then_some(cue)
    }

    /// Whether token `n` goes on a name started under `cue`: a middle name,
    /// a surname, or (after "jeg heter") any capitalised word.
    fn continues(&self, n: usize, cue: Cue) -> bool {
        let lower = self.toks[n].lower.as_str();
        let listed = lookup(given(), lower).is_some() || surname_like(lower);
        if capitalised(self.raw(n)) {
            listed || cue == Cue::Strong
        } else {
            cue == Cue::Strong && (lookup(given(), lower).is_some() || lookup(surnames(), lower).is_some())
        }
    }
}

/// The longest a name runs, in words (`Anne Marie Berg Hansen`).
const MAX_WORDS: usize = 4;

pub(super) fn names(text: &str, toks: &[Tok], masked: &[bool], out: &mut Vec<Finding>) {
    let c = Ctx { text, toks, masked };
    let mut k = 0;
    while k < toks.len() {
        let Some(cue) = c.starts(k) else {
            k += 1;
            continue;
        };
        let mut last = k;
        while last + 1 - k < MAX_WORDS && c.next_spaced(last) && c.continues(last + 1, cue) {
            last += 1;
        }
        out.push(Finding {
            kind: PiiKind::Name,
            span: toks[k].start..toks[last].end,
        });
        k = last + 1;
    }
}
