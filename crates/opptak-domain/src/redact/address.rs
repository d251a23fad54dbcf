//! Street addresses: a street name, a house number (and letter), and the
//! postcode and place when they follow (`Storgata 12 B, 0661 Oslo`,
//! `Sinsenveien fem`, `Karl Johans gate 1`).
//!
//! A street name alone is not redacted (`Storgata er stengt`): without a
//! house number it names a street, not a home.

use super::{is_magnitude, word_num, Finding, Part, PiiKind, Tok, CURRENCY, UNITS};

/// Endings that make one word a street name when a house number follows.
/// Strong ones are street names even in lower case (`kirkeveien 5`), the
/// rest only capitalised (`Solbakken 3`, but not `omvei 3`).
const STRONG_ENDINGS: &[&str] = &["veien", "vegen", "gata", "gaten", "allé", "alléen"];
const WEAK_ENDINGS: &[&str] = &[
    "vei",
    "veg",
    "gate",
    "stien",
    "sti",
    "plassen",
    "plass",
    "alle",
    "alleen",
    "bakken",
    "bakke",
    "svingen",
    "tunet",
    "ringen",
    "kroken",
    "torget",
    "torg",
    "brygga",
    "bryggen",
    "løkka",
    "lia",
    "jordet",
    "grenda",
    "stubben",
    "terrassen",
    "tråkket",
    "stredet",
    "smauet",
    "promenaden",
    "kaia",
    "kaien",
    "kollen",
    "haugen",
    "åsen",
    "myra",
    "enga",
    "vollen",
    "hagen",
];
const QUALIFIERS: &[&str] = &[
    "nedre", "øvre", "søndre", "nordre", "vestre", "østre", "gamle", "store", "lille", "nye", "indre", "ytre",
];
/// A separate word after the street's name (`Karl Johans gate`, `Bygdøy allé`).
const STREET_WORDS: &[&str] = &[
    "gate", "gata", "vei", "veg", "veien", "vegen", "allé", "alle", "plass", "terrasse", "brygge", "torg", "sti",
];

/// The street name ending at token `k`: the index of its first token.
fn street_at(text: &str, toks: &[Tok], masked: &[bool], k: usize) -> Option<usize> {
    let t = &toks[k];
    if t.digits || masked[k] {
        return None;
    }
    let raw = &text[t.start..t.end];
    let cap = raw.starts_with(char::is_uppercase);
    let compound = |endings: &[&str]| {
        endings.iter().any(|e| {
            t.lower
                .strip_suffix(e)
                .is_some_and(|stem| stem.chars().filter(|c| c.is_alphabetic()).count() >= 2)
        })
    };
    if compound(STRONG_ENDINGS) || (cap && compound(WEAK_ENDINGS)) {
        // "Nedre Storgate", "Øvre Slottsgate": the qualifier is part of the name.
        let qualified = k.checked_sub(1).filter(|&p| {
            let pt = &toks[p];
            !masked[p]
                && QUALIFIERS.contains(&pt.lower.as_str())
                && text[pt.start..].starts_with(char::is_uppercase)
                && text[pt.end..t.start] == *" "
        });
        return Some(qualified.unwrap_or(k));
    }
    // "Karl Johans gate", "Thorvald Meyers gate", "Bygdøy allé": up to
    // two capitalised words right before a street word.
    if STREET_WORDS.contains(&t.lower.as_str()) {
        let mut first = None;
        for back in 1..=2 {
            let Some(p) = k.checked_sub(back) else { break };
            let pt = &toks[p];
            let spaced = text[pt.end..toks[p + 1].start].chars().all(|c| c == ' ');
            if pt.digits || masked[p] || !spaced || !text[pt.start..pt.end].starts_with(char::is_uppercase) {
                break;
            }
            first = Some(p);
        }
        return first;
    }
    None
}

fn spaces(text: &str, a: &Tok, b: &Tok) -> bool {
    let gap = &text[a.end..b.start];
    !gap.is_empty() && gap.chars().all(|c| c == ' ' || c == '\u{a0}')
}

/// A house number starting at token `k`: the last token of number and
/// letter, or none.
fn house_number(text: &str, toks: &[Tok], masked: &[bool], k: usize) -> Option<usize> {
    let t = toks.get(k)?;
    if masked[k] {
        return None;
    }
    let mut last;
    if t.digits {
        if t.end - t.start > 3 || text[t.start..].starts_with('0') {
            return None;
        }
        last = k;
        // "12B": one letter glued on.
        if let Some(n) = toks.get(k + 1) {
            let letter = !n.digits && n.start == t.end && n.end - n.start == 1;
            let after_ok = !text[n.end..].starts_with(char::is_alphanumeric);
            if letter && after_ok {
                last = k + 1;
            } else if t.glued {
                return None;
            }
        } else if t.glued {
            return None;
        }
    } else {
        // Spoken: one number word ("fem", "tolv", "tjueein"), or a tens
        // word and a digit ("tjue fem").
        let w = word_num(&t.lower)?;
        if w.parts.len() != 1 || matches!(w.parts[0], Part::Repeat(_) | Part::Og) || w.english {
            return None;
        }
        last = k;
        if let (Part::Tens(_), Some(n)) = (w.parts[0], toks.get(k + 1)) {
            let unit = word_num(&n.lower).filter(|u| matches!(u.parts.as_slice(), [Part::Digit(d)] if *d > 0));
            if unit.is_some() && spaces(text, t, n) {
                last = k + 1;
            }
        }
        // "en", "to", "ein" are also words ("Storgata en gang"): only at
        // the end of the sentence or before a postcode.
        if w.ambiguous && last == k {
            let rest = text[t.end..].trim_start();
            let ends = rest.is_empty() || rest.starts_with(['.', ',', '!', '?', ';']);
            if !ends {
                return None;
            }
        }
    }
    // A house letter said apart: "Storgata 12 B".
    if let Some(n) = toks.get(last + 1) {
        let raw = &text[n.start..n.end];
        let single = raw.chars().count() == 1 && raw.chars().all(|c| c.is_ascii_uppercase()) && raw != "I";
        if !n.digits && single && spaces(text, &toks[last], n) {
            last += 1;
        }
    }
    // A quantity, not a house number: "Storgata 12 kroner", "tolv år".
    if let Some(n) = toks.get(last + 1) {
        let word = !n.digits && spaces(text, &toks[last], n);
        if word && (UNITS.contains(&n.lower.as_str()) || CURRENCY.contains(&n.lower.as_str()) || is_magnitude(&n.lower))
        {
            return None;
        }
        // More digits joined on: a phone or account number, not a house.
        let gap = &text[toks[last].end..n.start];
        if n.digits && matches!(gap, " " | "." | "-" | "\u{a0}") && postcode_place(text, toks, last + 1).is_none() {
            return None;
        }
    }
    Some(last)
}

/// A postcode and place starting at token `k` ("0661 Oslo"): the place's
/// token.
fn postcode_place(text: &str, toks: &[Tok], k: usize) -> Option<usize> {
    let t = toks.get(k)?;
    let p = toks.get(k + 1)?;
    let place = &text[p.start..p.end];
    (t.digits
        && !t.glued
        && t.end - t.start == 4
        && !p.digits
        && spaces(text, t, p)
        && place.starts_with(char::is_uppercase))
    .then_some(k + 1)
}

pub(super) fn addresses(text: &str, toks: &[Tok], masked: &[bool], out: &mut Vec<Finding>) {
    let mut k = 0;
    while k + 1 < toks.len() {
        let Some(first) = street_at(text, toks, masked, k) else {
            k += 1;
            continue;
        };
        if !spaces(text, &toks[k], &toks[k + 1]) {
            k += 1;
            continue;
        }
        // "Bogstadveien nummer 5".
        let mut h = k + 1;
        let numbered = |n: &Tok| spaces(text, &toks[h], n) || text[toks[h].end..n.start] == *". ";
        if matches!(toks[h].lower.as_str(), "nummer" | "nr" | "number")
            && !masked[h]
            && toks.get(h + 1).is_some_and(numbered)
        {
            h += 1;
        }
        let Some(mut last) = house_number(text, toks, masked, h) else {
            k += 1;
            continue;
        };
        // ", 0661 Oslo" or " 0661 Oslo" right after.
        if let Some(n) = toks.get(last + 1) {
            let gap = &text[toks[last].end..n.start];
            if matches!(gap, " " | ", " | ",") && !masked[last + 1] {
                if let Some(place) = postcode_place(text, toks, last + 1) {
                    last = place;
                }
            }
        }
        out.push(Finding {
            kind: PiiKind::Address,
            span: toks[first].start..toks[last].end,
        });
        k = last + 1;
    }
}
