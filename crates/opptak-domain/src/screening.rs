//! Screening of KI drafts for discriminatory or unforeseen content (R6,
//! issue 16 section 6): the lexicon half. A [`Lexicon`] (shipped as
//! `screening/lexicon.toml`, documented there and in docs/review-service.md)
//! lists words a summary of a bank call should never need, by category
//! (ethnicity, religion, gender, age, disability, sexual orientation, slurs,
//! health, political views, unforeseen judgements). [`Lexicon::scan`] finds
//! them in a draft's text. The language model's second opinion is
//! `opptak-ki`'s (`screen.rs`); sending hits to QA is `opptak-review`'s.

use serde::Deserialize;
use std::collections::BTreeSet;

/// The shipped lexicon.
pub const DEFAULT_LEXICON: &str = include_str!("../screening/lexicon.toml");

/// One term: its words, the last one a prefix when the term ends in `*`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Term {
    /// As written in the file (for the reason QA sees).
    text: String,
    words: Vec<String>,
    prefix: bool,
}

/// A screening lexicon: terms by category.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lexicon {
    version: u32,
    categories: Vec<(String, Vec<Term>)>,
}

/// A term found in a text.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, Deserialize)]
pub struct LexiconHit {
    pub category: String,
    /// The term as the lexicon writes it (`muslim*`).
    pub term: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    version: u32,
    category: Vec<CategoryFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CategoryFile {
    id: String,
    terms: Vec<String>,
}

/// Why a lexicon file was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("screening lexicon: {0}")]
pub struct LexiconError(pub String);

impl Lexicon {
    /// The shipped lexicon ([`DEFAULT_LEXICON`]); it is tested to parse.
    pub fn default_lexicon() -> Self {
        #[allow(clippy::expect_used)]
        Self::parse(DEFAULT_LEXICON).expect("the shipped screening lexicon parses (tested)")
    }

    /// Parses a lexicon file (see `screening/lexicon.toml` for the format).
    pub fn parse(text: &str) -> Result<Self, LexiconError> {
        let file: File = toml::from_str(text).map_err(|e| LexiconError(format!("not a lexicon file: {e}")))?;
        let mut categories = Vec::new();
        for c in file.category {
            if c.id.trim().is_empty() {
                return Err(LexiconError("a category without an id".into()));
            }
            let mut terms = Vec::new();
            for t in &c.terms {
                let (body, prefix) = match t.strip_suffix('*') {
                    Some(b) => (b, true),
                    None => (t.as_str(), false),
                };
                let words = crate::summary::words(body);
                if words.is_empty() {
                    return Err(LexiconError(format!("{}: the term {t:?} has no words", c.id)));
                }
                terms.push(Term {
                    text: t.clone(),
                    words,
                    prefix,
                });
            }
            categories.push((c.id, terms));
        }
        Ok(Self {
            version: file.version,
            categories,
        })
    }

    /// The file's `version`, recorded with each screening.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Every term found in `text` (whole words, case-insensitive), sorted,
    /// each once.
    pub fn scan(&self, text: &str) -> Vec<LexiconHit> {
        let words = crate::summary::words(text);
        let mut hits = BTreeSet::new();
        for (category, terms) in &self.categories {
            for t in terms {
                if occurs(&words, t) {
                    hits.insert(LexiconHit {
                        category: category.clone(),
                        term: t.text.clone(),
                    });
                }
            }
        }
        hits.into_iter().collect()
    }
}

fn occurs(words: &[String], t: &Term) -> bool {
    let n = t.words.len();
    if words.len() < n {
        return false;
    }
    words.windows(n).any(|w| {
        w.iter().zip(&t.words).enumerate().all(|(i, (got, want))| {
            if t.prefix && i == n - 1 {
                got.starts_with(want.as_str())
            } else {
                got == want
            }
        })
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn terms(hits: &[LexiconHit]) -> Vec<&str> {
        hits.iter().map(|h| h.term.as_str()).collect()
    }

    #[test]
    fn the_shipped_lexicon_parses_and_covers_every_category() {
        let l = Lexicon::default_lexicon();
        assert!(l.version() >= 1);
        let ids: Vec<&str> = l.categories.iter().map(|(c, _)| c.as_str()).collect();
        for want in [
            "ethnicity",
            "religion",
            "gender",
            "age",
            "disability",
            "sexual_orientation",
            "slur",
            "health",
            "political_views",
            "unforeseen",
        ] {
            assert!(ids.contains(&want), "{want} missing");
        }
    }

    #[test]
    fn whole_words_prefixes_and_phrases_match_in_both_languages() {
        let l = Lexicon::default_lexicon();
        let hits = l.scan("Kunden er muslimsk og ba om lån. Customer is PREGNANT.");
        assert_eq!(terms(&hits), vec!["pregnant", "muslim*"]);
        assert_eq!(hits[1].category, "religion");
        assert_eq!(
            terms(&l.scan("The customer is a difficult customer.")),
            vec!["difficult customer"]
        );
        // Not inside other words, not across a prefix the term does not allow.
        assert!(l
            .scan("Kunden vil refinansiere boliglånet og spør om rente.")
            .is_empty());
        assert!(l
            .scan("The customer wants a replacement card and a lower rate.")
            .is_empty());
        assert!(l.scan("gayety").is_empty(), "gay is a whole word, not a prefix");
    }

    #[test]
    fn bad_files_are_refused() {
        assert!(Lexicon::parse("version = 1\n[[category]]\nid = \"x\"\nterms = [\"*\"]\n").is_err());
        assert!(Lexicon::parse("version = 1\n[[category]]\nid = \"\"\nterms = []\n").is_err());
        assert!(Lexicon::parse("nonsense").is_err());
    }
}
