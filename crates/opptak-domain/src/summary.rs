//! Draft summaries and topic tags for KI calls (R5, issue 5 items 5 and 6).
//! Pure: the caller hands in transcript segments that are already
//! PII-redacted; nothing here reads a file, a clock or the network.
//!
//! - [`Taxonomy`]: the versioned topic list (`taxonomy/topics.toml`), the only
//!   ids a draft may carry, with Norwegian and English labels and the phrases
//!   the embedded classifier looks for.
//! - [`embedded_draft`]: the default that needs no model: an extractive
//!   summary ([`summarize`]), a phrase-based topic classifier
//!   ([`Taxonomy::classify`]), customer requests and advisor follow-ups picked
//!   by cue phrases.
//! - [`prompt`] and [`Taxonomy::draft_schema`]: what a language model is given
//!   (versioned by [`PROMPT_VERSION`]) and the JSON it must answer with. The
//!   HTTP side lives in `opptak-ki`.

use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::fmt;

/// The bank's topic taxonomy, shipped with opptak.
pub const DEFAULT_TAXONOMY: &str = include_str!("../taxonomy/topics.toml");

/// Version of the prompt templates and schema; recorded in every model draft.
/// Change it whenever the wording of [`prompt`] or the schema changes (the
/// golden files in `tests/golden/summary/` make such a change visible).
pub const PROMPT_VERSION: &str = "draft-v1";

/// [`Draft::source`] of drafts written by [`embedded_draft`].
pub const EMBEDDED_SOURCE: &str = "embedded-v1";

/// [`Draft::prompt_version`] of drafts that used no prompt (the embedded ones).
pub const NO_PROMPT: &str = "none";

/// The topic every call falls back to; every taxonomy must have it.
pub const OTHER_TOPIC: &str = "other";

/// At most this many topics per call.
pub const MAX_TOPICS: usize = 3;

/// At most this many customer requests or follow-ups per draft (the schema's
/// `maxItems`).
pub const MAX_ITEMS: usize = 5;

/// The JSON schema a language model's answer must satisfy, with
/// `"__TOPIC_IDS__"` standing for the taxonomy's ids (see
/// [`Taxonomy::draft_schema`]). Only keywords that constrained decoders
/// (llama.cpp grammars, vLLM, Ollama, OpenAI structured outputs) understand.
/// No `maxLength`: llama-cpp-python unrolls it into one grammar rule per
/// character and its server crashes on a few hundred; `max_tokens` bounds
/// the answer instead.
pub const DRAFT_SCHEMA_TEMPLATE: &str = r#"{
  "type": "object",
  "properties": {
    "summary": {"type": "string", "minLength": 1},
    "topics": {
      "type": "array",
      "items": {"type": "string", "enum": ["__TOPIC_IDS__"]},
      "minItems": 1,
      "maxItems": 3
    },
    "customer_requests": {
      "type": "array",
      "items": {"type": "string"},
      "maxItems": 5
    },
    "follow_ups": {
      "type": "array",
      "items": {"type": "string"},
      "maxItems": 5
    }
  },
  "required": ["summary", "topics", "customer_requests", "follow_ups"],
  "additionalProperties": false
}"#;

// ------------------------------------------------------------------ draft ---

/// A draft summary for the advisor to review: never final until approved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Draft {
    pub summary: String,
    /// Taxonomy ids, most prominent first; `["other"]` when nothing matched.
    pub topics: Vec<String>,
    pub customer_requests: Vec<String>,
    pub follow_ups: Vec<String>,
    /// `nb` or `en`.
    pub language: String,
    /// [`EMBEDDED_SOURCE`] or the language model's name.
    pub source: String,
    /// [`PROMPT_VERSION`] for model drafts, [`NO_PROMPT`] for embedded ones.
    pub prompt_version: String,
}

/// The two languages drafts are written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Language {
    /// Norwegian (bokmål; nynorsk hints map here too).
    Nb,
    En,
}

impl Language {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Nb => "nb",
            Self::En => "en",
        }
    }

    /// A language tag as speech backends and configs spell it (`nb`, `no`,
    /// `nn`, `nb-NO`, `en`, `en-GB`, `english`, ...); `None` if unknown.
    pub fn from_hint(hint: &str) -> Option<Self> {
        let h = hint.trim().to_ascii_lowercase();
        let primary = h.split(['-', '_']).next().unwrap_or("");
        match primary {
            "nb" | "no" | "nn" | "nob" | "nno" | "nor" | "norwegian" | "norsk" | "bokmål" => Some(Self::Nb),
            "en" | "eng" | "english" => Some(Self::En),
            _ => None,
        }
    }

    /// The hint if it names a language, else a guess from the words (function
    /// words of each language counted); Norwegian on a tie, as the bank is.
    pub fn resolve(hint: &str, segments: &[Segment]) -> Self {
        if let Some(l) = Self::from_hint(hint) {
            return l;
        }
        let (mut nb, mut en) = (0usize, 0usize);
        for s in segments {
            for w in words(&s.text) {
                nb += usize::from(NB_MARKERS.contains(&w.as_str()));
                en += usize::from(EN_MARKERS.contains(&w.as_str()));
            }
        }
        if en > nb {
            Self::En
        } else {
            Self::Nb
        }
    }
}

/// The language a transcript is in, from its words alone (function words
/// of each language counted), whatever the deployment is configured for:
/// QA stratifies by it (R6, issue 16 section 6), so a call in another
/// language than the configured one lands in its own stratum. `None`
/// (undetermined) when fewer than [`DETECT_MIN_MARKERS`] function words
/// are found, or neither language has more than twice the other's: a call
/// in a third language, a mixed call, or one with nothing recognised.
pub fn detect_language<'a>(texts: impl IntoIterator<Item = &'a str>) -> Option<Language> {
    let (mut nb, mut en) = (0usize, 0usize);
    for t in texts {
        for w in words(t) {
            nb += usize::from(NB_MARKERS.contains(&w.as_str()));
            en += usize::from(EN_MARKERS.contains(&w.as_str()));
        }
    }
    if nb + en < DETECT_MIN_MARKERS {
        None
    } else if en > 2 * nb {
        Some(Language::En)
    } else if nb > 2 * en {
        Some(Language::Nb)
    } else {
        None
    }
}

/// The fewest function words [`detect_language`] decides on.
pub const DETECT_MIN_MARKERS: usize = 3;

/// The stratum code of an undetermined language ([`detect_language`] `None`), as in BCP 47.
pub const UNDETERMINED: &str = "und";

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who spoke: the channel is the speaker (agent and customer are recorded on
/// separate channels).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Speaker {
    Agent,
    Customer,
}

impl Speaker {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::Customer => "customer",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "agent" | "advisor" => Some(Self::Agent),
            "customer" => Some(Self::Customer),
            _ => None,
        }
    }

    fn label(self, language: Language) -> &'static str {
        match (self, language) {
            (Self::Agent, Language::Nb) => "Rådgiver",
            (Self::Customer, Language::Nb) => "Kunde",
            (Self::Agent, Language::En) => "Advisor",
            (Self::Customer, Language::En) => "Customer",
        }
    }
}

/// One transcript segment (an utterance on one channel), already redacted.
#[derive(Clone, Debug, PartialEq)]
pub struct Segment {
    pub speaker: Speaker,
    /// Seconds from the call's start.
    pub start_s: f32,
    pub text: String,
}

impl Segment {
    pub fn new(speaker: Speaker, start_s: f32, text: impl Into<String>) -> Self {
        Self {
            speaker,
            start_s,
            text: text.into(),
        }
    }
}

// --------------------------------------------------------------- taxonomy ---

/// One predefined topic.
#[derive(Clone, Debug, PartialEq)]
pub struct Topic {
    /// Stable id, `[a-z0-9_]+`.
    pub id: String,
    pub label_nb: String,
    pub label_en: String,
    phrases_nb: Vec<Phrase>,
    phrases_en: Vec<Phrase>,
}

impl Topic {
    pub fn label(&self, language: Language) -> &str {
        match language {
            Language::Nb => &self.label_nb,
            Language::En => &self.label_en,
        }
    }

    fn phrases(&self, language: Language) -> &[Phrase] {
        match language {
            Language::Nb => &self.phrases_nb,
            Language::En => &self.phrases_en,
        }
    }
}

/// The versioned list of topics a draft may carry.
#[derive(Clone, Debug, PartialEq)]
pub struct Taxonomy {
    version: u32,
    topics: Vec<Topic>,
}

/// Every problem found in a taxonomy file, one message each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaxonomyError(pub Vec<String>);

impl fmt::Display for TaxonomyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid topic taxonomy: {}", self.0.join("; "))
    }
}

impl std::error::Error for TaxonomyError {}

/// Why a list of topics is not acceptable for a draft.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("no topic given")]
    Empty,
    #[error("{0} topics given, at most {MAX_TOPICS} allowed")]
    TooMany(usize),
    #[error("topic {0:?} is not in the taxonomy")]
    Unknown(String),
    #[error("topic {0:?} given twice")]
    Duplicate(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTaxonomy {
    version: u32,
    #[serde(default)]
    topic: Vec<RawTopic>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTopic {
    id: String,
    #[serde(default)]
    nb: String,
    #[serde(default)]
    en: String,
    #[serde(default)]
    phrases_nb: Vec<String>,
    #[serde(default)]
    phrases_en: Vec<String>,
}

impl Taxonomy {
    /// The shipped taxonomy ([`DEFAULT_TAXONOMY`]).
    pub fn default_taxonomy() -> Self {
        // The default is checked by a test; failing here is a build defect.
        Self::parse(DEFAULT_TAXONOMY).unwrap_or_else(|e| panic!("the shipped taxonomy is invalid: {e}"))
    }

    /// Parses and validates a taxonomy file: a version of at least 1, ids of
    /// `[a-z0-9_]` that are unique, both labels on every topic, phrases that
    /// hold a word, and an `other` topic to fall back to.
    pub fn parse(text: &str) -> Result<Self, TaxonomyError> {
        let raw: RawTaxonomy =
            toml::from_str(text).map_err(|e| TaxonomyError(vec![format!("not a taxonomy file: {e}")]))?;
        let mut errs = Vec::new();
        if raw.version == 0 {
            errs.push("version must be 1 or higher".to_string());
        }
        if raw.topic.is_empty() {
            errs.push("no [[topic]] given".to_string());
        }
        let mut seen = HashSet::new();
        let mut topics = Vec::with_capacity(raw.topic.len());
        for (i, t) in raw.topic.into_iter().enumerate() {
            let name = if t.id.is_empty() {
                format!("topic #{}", i + 1)
            } else {
                format!("topic {:?}", t.id)
            };
            if t.id.is_empty() {
                errs.push(format!("{name}: id is empty"));
            } else if !t
                .id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                errs.push(format!("{name}: id may hold only a-z, 0-9 and _"));
            } else if !seen.insert(t.id.clone()) {
                errs.push(format!("{name}: id is used by more than one topic"));
            }
            for (lang, label) in [("nb", &t.nb), ("en", &t.en)] {
                if label.trim().is_empty() {
                    errs.push(format!("{name}: the {lang} label is missing"));
                }
            }
            let mut parse_list = |lang: &str, list: &[String]| -> Vec<Phrase> {
                let mut out = Vec::new();
                for p in list {
                    match Phrase::parse(p) {
                        Some(ph) => out.push(ph),
                        None => errs.push(format!("{name}: {lang} phrase {p:?} holds no word")),
                    }
                }
                out
            };
            let phrases_nb = parse_list("nb", &t.phrases_nb);
            let phrases_en = parse_list("en", &t.phrases_en);
            topics.push(Topic {
                id: t.id,
                label_nb: t.nb.trim().to_string(),
                label_en: t.en.trim().to_string(),
                phrases_nb,
                phrases_en,
            });
        }
        if !seen.contains(OTHER_TOPIC) {
            errs.push(format!("no topic {OTHER_TOPIC:?} to fall back to"));
        }
        if errs.is_empty() {
            Ok(Self {
                version: raw.version,
                topics,
            })
        } else {
            Err(TaxonomyError(errs))
        }
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    /// Topics in file order.
    pub fn topics(&self) -> &[Topic] {
        &self.topics
    }

    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.topics.iter().map(|t| t.id.as_str())
    }

    pub fn get(&self, id: &str) -> Option<&Topic> {
        self.topics.iter().find(|t| t.id == id)
    }

    pub fn contains(&self, id: &str) -> bool {
        self.get(id).is_some()
    }

    /// Checks a draft's topics: 1 to [`MAX_TOPICS`] distinct taxonomy ids.
    pub fn check_topics(&self, topics: &[String]) -> Result<(), TopicError> {
        if topics.is_empty() {
            return Err(TopicError::Empty);
        }
        if topics.len() > MAX_TOPICS {
            return Err(TopicError::TooMany(topics.len()));
        }
        let mut seen = HashSet::new();
        for t in topics {
            if !self.contains(t) {
                // Bounded: the text came from a model and may be anything.
                return Err(TopicError::Unknown(t.chars().take(40).collect()));
            }
            if !seen.insert(t.as_str()) {
                return Err(TopicError::Duplicate(t.clone()));
            }
        }
        Ok(())
    }

    /// [`DRAFT_SCHEMA_TEMPLATE`] with this taxonomy's ids as the topic enum.
    pub fn draft_schema(&self) -> String {
        // Ids are [a-z0-9_]+ (checked in parse): no JSON escaping needed.
        let ids: Vec<String> = self.ids().map(|id| format!("\"{id}\"")).collect();
        DRAFT_SCHEMA_TEMPLATE.replace("\"__TOPIC_IDS__\"", &ids.join(", "))
    }

    /// Phrase scores per topic for a call, in taxonomy order, zeros left out.
    /// Each occurrence of a phrase scores its number of words.
    pub fn scores(&self, language: Language, segments: &[Segment]) -> Vec<(String, u32)> {
        let texts: Vec<Vec<String>> = segments.iter().map(|s| words(&s.text)).collect();
        self.topics
            .iter()
            .filter_map(|t| {
                let score: u32 = texts.iter().map(|w| phrase_points(t.phrases(language), w)).sum();
                (score > 0).then(|| (t.id.clone(), score))
            })
            .collect()
    }

    /// The call's topics: those scoring at least a third of the best, best
    /// first (ties in taxonomy order), at most [`MAX_TOPICS`]; `["other"]`
    /// when no phrase matched. Only taxonomy ids come out.
    pub fn classify(&self, language: Language, segments: &[Segment]) -> Vec<String> {
        let mut scores = self.scores(language, segments);
        scores.retain(|(id, _)| id != OTHER_TOPIC);
        let best = scores.iter().map(|(_, s)| *s).max().unwrap_or(0);
        if best == 0 {
            return vec![OTHER_TOPIC.to_string()];
        }
        // Stable sort: equal scores keep taxonomy order.
        scores.sort_by_key(|(_, s)| std::cmp::Reverse(*s));
        scores
            .into_iter()
            .filter(|(_, s)| 3 * s >= best)
            .take(MAX_TOPICS)
            .map(|(id, _)| id)
            .collect()
    }
}

// ---------------------------------------------------------------- phrases ---

/// A lowercase word sequence; a word ending in `*` matches by prefix.
#[derive(Clone, Debug, PartialEq)]
struct Phrase(Vec<(String, bool)>);

impl Phrase {
    fn parse(text: &str) -> Option<Self> {
        let mut out = Vec::new();
        for raw in text.split_whitespace() {
            let prefix = raw.ends_with('*');
            let ws = words(raw.trim_end_matches('*'));
            let n = ws.len();
            for (i, w) in ws.into_iter().enumerate() {
                out.push((w, prefix && i + 1 == n));
            }
        }
        (!out.is_empty()).then_some(Self(out))
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn occurrences(&self, text: &[String]) -> usize {
        let n = self.0.len();
        if text.len() < n {
            return 0;
        }
        (0..=text.len() - n)
            .filter(|&i| {
                self.0
                    .iter()
                    .zip(&text[i..i + n])
                    .all(|((p, prefix), w)| if *prefix { w.starts_with(p.as_str()) } else { w == p })
            })
            .count()
    }

    fn matches(&self, text: &[String]) -> bool {
        self.occurrences(text) > 0
    }
}

fn phrase_points(phrases: &[Phrase], text: &[String]) -> u32 {
    phrases.iter().map(|p| (p.occurrences(text) * p.len()) as u32).sum()
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric()
}

/// Lowercase words; `'` and `-` between letters stay inside a word ("don't",
/// "pin-kode"); every other non-alphanumeric character separates words.
pub(crate) fn words(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().map(|c| if c == '’' { '\'' } else { c }).collect();
    let mut out = Vec::new();
    let mut cur = String::new();
    for (i, &c) in chars.iter().enumerate() {
        let joiner = (c == '\'' || c == '-') && !cur.is_empty() && chars.get(i + 1).copied().is_some_and(is_word_char);
        if is_word_char(c) || joiner {
            cur.extend(c.to_lowercase());
        } else if !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn cue_list(list: &[&str]) -> Vec<Phrase> {
    list.iter().filter_map(|p| Phrase::parse(p)).collect()
}

// Customer sentences that ask for something. Questions count too.
#[rustfmt::skip]
const REQUEST_CUES_EN: &[&str] = &[
    "i would like", "i'd like", "i want", "i wanna", "i need", "can you", "could you", "would you", "can i",
    "could i", "may i", "please", "i wish", "is it possible", "how do i", "how can i", "i'm calling about",
    "i am calling about", "i'm calling to", "i am calling to", "let us", "let's", "help me",
];
#[rustfmt::skip]
const REQUEST_CUES_NB: &[&str] = &[
    "jeg vil", "jeg ville", "jeg ønsker", "jeg skulle gjerne", "vil gjerne", "jeg trenger", "kan dere",
    "kan du", "kunne dere", "kunne du", "kan jeg", "får jeg", "er det mulig", "hvordan", "jeg lurer på",
    "lurer på", "jeg ringer om", "jeg ringer for å", "hjelp meg", "hjelpe meg", "vær så snill", "la oss",
];
// Advisor sentences that promise something.
#[rustfmt::skip]
const FOLLOW_UP_CUES_EN: &[&str] = &[
    "i will", "i'll", "we will", "we'll", "i am going to", "i'm going to", "we are going to", "we're going to",
    "you will receive", "you'll receive", "you will get", "you'll get", "i have sent", "i've sent", "we send",
    "let me", "i have ordered", "i've ordered", "i have blocked", "i've blocked",
];
#[rustfmt::skip]
const FOLLOW_UP_CUES_NB: &[&str] = &[
    "jeg skal", "vi skal", "jeg vil", "vi vil", "jeg kommer til å", "vi kommer til å", "jeg sender",
    "vi sender", "jeg ordner", "vi ordner", "jeg sperrer", "vi sperrer", "jeg ringer deg", "vi ringer deg",
    "jeg setter opp", "jeg sjekker", "vi sjekker", "du får", "du vil få", "du vil motta", "du mottar",
    "jeg kommer tilbake", "vi kommer tilbake", "jeg har sendt", "jeg har sperret", "jeg har bestilt",
    "jeg oppretter", "la meg",
];

// Notices read out on every KI call ("an AI takes notes on this call"):
// required, but no summary material.
#[rustfmt::skip]
const NOTICE_CUES_EN: &[&str] = &[
    "takes notes", "taking notes", "take notes", "is recorded", "being recorded", "is still recorded",
];
#[rustfmt::skip]
const NOTICE_CUES_NB: &[&str] = &[
    "tar notater", "skriver notater", "blir tatt opp", "tas opp", "tatt opp", "tar opp samtalen",
];
// Function words and pleasantries: they carry no content for scoring.
#[rustfmt::skip]
const STOP_EN: &[&str] = &[
    "a", "an", "the", "and", "or", "but", "if", "of", "to", "in", "on", "at", "for", "with", "from", "by",
    "about", "as", "into", "is", "are", "was", "were", "be", "been", "being", "am", "do", "does", "did", "have",
    "has", "had", "i", "me", "my", "mine", "we", "us", "our", "you", "your", "he", "him", "his", "she", "her",
    "it", "its", "they", "them", "their", "this", "that", "these", "those", "there", "here", "what", "which",
    "who", "whom", "when", "where", "why", "how", "can", "could", "will", "would", "shall", "should", "may",
    "might", "must", "not", "no", "yes", "ok", "okay", "so", "just", "also", "very", "too", "then", "than",
    "all", "any", "some", "one", "i'm", "i'll", "i'd", "i've", "you're", "you'll", "we'll", "we're", "it's",
    "that's", "don't", "can't", "let", "let's", "hello", "hi", "hey", "good", "morning", "afternoon", "evening",
    "thanks", "thank", "please", "bye", "goodbye", "great", "fine", "perfect", "right", "sure", "well", "see",
    "help", "calling", "wait", "like", "want", "need", "oh", "um", "uh", "now", "customer", "centre", "center",
    "desk", "speaking", "welcome", "much", "get", "got", "go", "going", "again", "still", "up", "out", "off",
    "over", "more",
];
#[rustfmt::skip]
const STOP_NB: &[&str] = &[
    "og", "i", "på", "til", "av", "for", "med", "som", "er", "var", "har", "hadde", "det", "den", "de", "en",
    "et", "ei", "jeg", "meg", "min", "mitt", "mine", "du", "deg", "din", "ditt", "dine", "vi", "oss", "vår",
    "vårt", "våre", "dere", "han", "hun", "ham", "henne", "seg", "sin", "sitt", "sine", "at", "å", "om", "men",
    "eller", "så", "ikke", "ja", "nei", "ok", "også", "bare", "kan", "kunne", "skal", "skulle", "vil", "ville",
    "må", "måtte", "blir", "bli", "ble", "være", "vært", "hva", "hvem", "hvor", "hvorfor", "hvordan", "når",
    "her", "der", "denne", "dette", "disse", "noe", "alle", "hei", "hallo", "god", "morgen", "dag", "kveld",
    "takk", "tusen", "ha", "hadet", "flott", "fint", "greit", "supert", "perfekt", "bra", "kundesenter",
    "kundesenteret", "velkommen", "hjelpe", "hjelp", "lurer", "gjerne", "nå", "litt", "mer", "fra", "ut", "inn",
    "opp", "ned", "etter", "før", "over", "under", "ved", "hos", "mot", "uten", "enn", "da", "jo", "vel",
    "altså", "liksom", "sånn", "snakker", "ringer", "får", "fikk", "gjøre", "gjør", "helt", "akkurat", "vent",
];
// Frequent words of one language only, for guessing a call's language.
#[rustfmt::skip]
const NB_MARKERS: &[&str] = &[
    "og", "jeg", "det", "er", "ikke", "på", "til", "med", "har", "vi", "du", "kan", "en", "et", "som", "å",
    "hei", "takk", "meg", "deg",
];
#[rustfmt::skip]
const EN_MARKERS: &[&str] = &[
    "and", "the", "is", "not", "on", "to", "with", "have", "we", "you", "can", "a", "that", "hello", "thanks",
    "thank", "me", "my", "your", "it",
];
// Words whose trailing period does not end a sentence.
#[rustfmt::skip]
const ABBREVIATIONS: &[&str] = &[
    "f.eks", "bl.a", "ca", "kr", "nr", "kl", "mr", "mrs", "ms", "dr", "st", "e.g", "i.e", "etc", "osv", "dvs",
    "evt", "inkl", "ekskl", "mv",
];

struct Cues {
    requests: Vec<Phrase>,
    follow_ups: Vec<Phrase>,
    notices: Vec<Phrase>,
    stop: HashSet<&'static str>,
}

impl Cues {
    fn new(language: Language) -> Self {
        let (r, f, n, s) = match language {
            Language::Nb => (REQUEST_CUES_NB, FOLLOW_UP_CUES_NB, NOTICE_CUES_NB, STOP_NB),
            Language::En => (REQUEST_CUES_EN, FOLLOW_UP_CUES_EN, NOTICE_CUES_EN, STOP_EN),
        };
        Self {
            requests: cue_list(r),
            follow_ups: cue_list(f),
            notices: cue_list(n),
            stop: s.iter().copied().collect(),
        }
    }
}

// -------------------------------------------------------------- sentences ---

#[derive(Debug)]
struct Sentence {
    speaker: Speaker,
    text: String,
    words: Vec<String>,
}

/// Splits one segment's text into sentences at `.`, `!`, `?` and `…` that
/// are followed by a space or the end (not "4.5", not "f.eks.").
fn split_sentences(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut start = 0;
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut i = 0;
    while i < chars.len() {
        let (_, c) = chars[i];
        if matches!(c, '.' | '!' | '?' | '…') {
            let mut j = i;
            while j + 1 < chars.len() && matches!(chars[j + 1].1, '.' | '!' | '?' | '…') {
                j += 1;
            }
            let end = chars.get(j + 1).map_or(text.len(), |&(b, _)| b);
            let at_break = chars.get(j + 1).is_none_or(|&(_, n)| n.is_whitespace());
            let abbrev = c == '.' && i == j && {
                let before = &text[start..chars[i].0];
                let last = before.rsplit(char::is_whitespace).next().unwrap_or("").to_lowercase();
                ABBREVIATIONS.contains(&last.as_str())
            };
            if at_break && !abbrev {
                let s = text[start..end].trim();
                if !s.is_empty() {
                    out.push(s.to_string());
                }
                start = end;
            }
            i = j + 1;
        } else {
            i += 1;
        }
    }
    let rest = text[start..].trim();
    if !rest.is_empty() {
        out.push(rest.to_string());
    }
    out
}

fn sentences(segments: &[Segment]) -> Vec<Sentence> {
    segments
        .iter()
        .flat_map(|seg| {
            split_sentences(&seg.text).into_iter().map(move |text| Sentence {
                speaker: seg.speaker,
                words: words(&text),
                text,
            })
        })
        .filter(|s| !s.words.is_empty())
        .collect()
}

fn is_request(s: &Sentence, cues: &Cues) -> bool {
    s.speaker == Speaker::Customer
        && (s.text.trim_end().ends_with('?') || cues.requests.iter().any(|p| p.matches(&s.words)))
}

fn is_follow_up(s: &Sentence, cues: &Cues) -> bool {
    s.speaker == Speaker::Agent && cues.follow_ups.iter().any(|p| p.matches(&s.words))
}

fn dedup_take(items: impl Iterator<Item = String>, max: usize) -> Vec<String> {
    let mut seen = HashSet::new();
    items.filter(|s| seen.insert(s.to_lowercase())).take(max).collect()
}

/// Customer sentences that ask for something (request cues, questions), in
/// call order, at most [`MAX_ITEMS`].
pub fn customer_requests(language: Language, segments: &[Segment]) -> Vec<String> {
    let cues = Cues::new(language);
    dedup_take(
        sentences(segments)
            .into_iter()
            .filter(|s| is_request(s, &cues))
            .map(|s| s.text),
        MAX_ITEMS,
    )
}

/// Advisor sentences that promise something (commitment cues), in call
/// order, at most [`MAX_ITEMS`].
pub fn follow_ups(language: Language, segments: &[Segment]) -> Vec<String> {
    let cues = Cues::new(language);
    dedup_take(
        sentences(segments)
            .into_iter()
            .filter(|s| is_follow_up(s, &cues))
            .map(|s| s.text),
        MAX_ITEMS,
    )
}

/// An extractive summary: at most 3 sentences (4 in calls of more than 12),
/// taken verbatim from the transcript and kept in call order. Always in: the
/// customer's first request (or most informative sentence) and the advisor's
/// resolution (last promise, or most informative sentence after the
/// request); the rest by TF-IDF-like weight against the call plus the
/// phrases of the call's topics. Pleasantries and the KI notice never make it
/// in.
pub fn summarize(taxonomy: &Taxonomy, language: Language, segments: &[Segment]) -> String {
    let cues = Cues::new(language);
    let sents = sentences(segments);
    if sents.is_empty() {
        return match language {
            Language::Nb => "Ingen tale ble transkribert i samtalen.",
            Language::En => "No speech was transcribed in the call.",
        }
        .to_string();
    }
    let content: Vec<Vec<&str>> = sents
        .iter()
        .map(|s| {
            let mut seen = HashSet::new();
            s.words
                .iter()
                .map(String::as_str)
                .filter(|w| !cues.stop.contains(w) && w.chars().count() > 1 && seen.insert(*w))
                .collect()
        })
        .collect();
    let n = sents.len() as f64;
    let mut tf: HashMap<&str, f64> = HashMap::new();
    let mut df: HashMap<&str, f64> = HashMap::new();
    for (s, c) in sents.iter().zip(&content) {
        for w in &s.words {
            if c.contains(&w.as_str()) {
                *tf.entry(w.as_str()).or_default() += 1.0;
            }
        }
        for w in c {
            *df.entry(w).or_default() += 1.0;
        }
    }
    let topics = taxonomy.classify(language, segments);
    let topic_phrases: Vec<&Phrase> = topics
        .iter()
        .filter_map(|id| taxonomy.get(id))
        .flat_map(|t| t.phrases(language))
        .collect();
    let topical: Vec<usize> = sents
        .iter()
        .map(|s| topic_phrases.iter().map(|p| p.occurrences(&s.words) * p.len()).sum())
        .collect();
    let scores: Vec<f64> = content
        .iter()
        .zip(&topical)
        .map(|(c, &topical)| {
            if c.is_empty() {
                return 0.0;
            }
            let weight: f64 = c.iter().map(|w| tf[w] * (1.0 + n / df[w]).ln()).sum();
            weight / (c.len() as f64).sqrt() + topical as f64
        })
        .collect();
    // Pleasantries and one-word answers are never summary material, unless
    // they name the call's topic; nor is the KI notice.
    let notice: Vec<bool> = sents
        .iter()
        .map(|s| cues.notices.iter().any(|p| p.matches(&s.words)))
        .collect();
    let informative = |i: usize| !notice[i] && (content[i].len() >= 2 || (topical[i] > 0 && !content[i].is_empty()));
    let best_of = |pred: &dyn Fn(usize) -> bool| -> Option<usize> {
        (0..sents.len())
            .filter(|&i| informative(i) && pred(i))
            .max_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(b.cmp(&a)))
    };
    let limit = if sents.len() > 12 { 4 } else { 3 };
    let mut chosen: Vec<usize> = Vec::new();
    let request = (0..sents.len())
        .find(|&i| is_request(&sents[i], &cues) && informative(i))
        .or_else(|| best_of(&|i| sents[i].speaker == Speaker::Customer));
    chosen.extend(request);
    let after = request.unwrap_or(0);
    let resolution = (0..sents.len())
        .rev()
        .find(|&i| is_follow_up(&sents[i], &cues) && informative(i))
        .or_else(|| best_of(&|i| sents[i].speaker == Speaker::Agent && i > after));
    if let Some(r) = resolution {
        if !chosen.contains(&r) {
            chosen.push(r);
        }
    }
    let mut rest: Vec<usize> = (0..sents.len())
        .filter(|&i| informative(i) && !chosen.contains(&i))
        .collect();
    rest.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    for i in rest {
        if chosen.len() >= limit {
            break;
        }
        chosen.push(i);
    }
    if chosen.is_empty() {
        // Only pleasantries were said: the longest sentence is the best we have.
        chosen.extend((0..sents.len()).max_by_key(|&i| (sents[i].words.len(), std::cmp::Reverse(i))));
    }
    chosen.truncate(limit);
    chosen.sort_unstable();
    chosen
        .iter()
        .map(|&i| sents[i].text.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The embedded default: a draft from the transcript alone, no model.
/// `language_hint` is the call's language as configured or detected by the
/// speech backend (`nb`, `en`, ...); unknown hints are resolved from the words.
pub fn embedded_draft(taxonomy: &Taxonomy, language_hint: &str, segments: &[Segment]) -> Draft {
    let language = Language::resolve(language_hint, segments);
    Draft {
        summary: summarize(taxonomy, language, segments),
        topics: taxonomy.classify(language, segments),
        customer_requests: customer_requests(language, segments),
        follow_ups: follow_ups(language, segments),
        language: language.as_str().to_string(),
        source: EMBEDDED_SOURCE.to_string(),
        prompt_version: NO_PROMPT.to_string(),
    }
}

// ---------------------------------------------------------------- prompts ---

/// What a chat model is given: a system and a user message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prompt {
    /// [`PROMPT_VERSION`].
    pub version: &'static str,
    pub system: String,
    pub user: String,
}

const SYSTEM_NB: &str = "\
Du skriver utkast til samtalereferat for rådgivere i en norsk bank. Du får en \
transkripsjon av en telefonsamtale mellom en rådgiver og en kunde. \
Personopplysninger er erstattet med plassholdere i hakeparentes, som [FNR] og \
[ACCOUNT]; gjengi dem som de er, og gjett aldri hva som sto der.

Svar bare med ett JSON-objekt, uten annen tekst, med disse feltene:
- \"summary\": et kort, nøkternt referat på norsk bokmål (2 til 4 setninger) som \
rådgiveren kan bruke i kundens historikk.
- \"topics\": 1 til 3 emner samtalen handlet om, bare id-er fra listen under; \
bruk \"other\" om ingen passer.
- \"customer_requests\": det kunden ba om, én kort setning per ønske (tom liste \
om ingen).
- \"follow_ups\": det rådgiveren eller banken lovet å gjøre etter samtalen (tom \
liste om ingen).

Emner (id: navn):
{topics}";

const USER_NB: &str = "Transkripsjon:\n{transcript}\nSvar med JSON-objektet.";

const SYSTEM_EN: &str = "\
You write draft call notes for advisors at a Norwegian bank. You are given a \
transcript of a phone call between an advisor and a customer. Personal data has \
been replaced by placeholders in square brackets, such as [FNR] and [ACCOUNT]; \
keep them as they are and never guess what they stood for.

Answer with one JSON object only, no other text, with these fields:
- \"summary\": a short, factual summary in English (2 to 4 sentences) that the \
advisor can file in the customer's history.
- \"topics\": 1 to 3 topics of the call, only ids from the list below; use \
\"other\" if none fits.
- \"customer_requests\": what the customer asked for, one short sentence each \
(empty list if none).
- \"follow_ups\": what the advisor or the bank promised to do after the call \
(empty list if none).

Topics (id: name):
{topics}";

const USER_EN: &str = "Transcript:\n{transcript}\nAnswer with the JSON object.";

/// The versioned prompt ([`PROMPT_VERSION`]) for a call in `language`: the
/// taxonomy's topics with their labels in the system message, the transcript
/// (`[mm:ss] Speaker: text` lines) in the user message.
pub fn prompt(taxonomy: &Taxonomy, language: Language, segments: &[Segment]) -> Prompt {
    let (system, user) = match language {
        Language::Nb => (SYSTEM_NB, USER_NB),
        Language::En => (SYSTEM_EN, USER_EN),
    };
    let topics: String = taxonomy
        .topics()
        .iter()
        .map(|t| format!("- {}: {}\n", t.id, t.label(language)))
        .collect();
    let transcript: String = segments
        .iter()
        .filter(|s| !s.text.trim().is_empty())
        .map(|s| {
            let t = s.start_s.max(0.0) as u64;
            format!(
                "[{:02}:{:02}] {}: {}\n",
                t / 60,
                t % 60,
                s.speaker.label(language),
                s.text.trim()
            )
        })
        .collect();
    Prompt {
        version: PROMPT_VERSION,
        system: system.replace("{topics}", topics.trim_end()),
        user: user.replace("{transcript}", &transcript),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_taxonomy_is_valid() {
        let t = Taxonomy::parse(DEFAULT_TAXONOMY).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.version(), 1);
        assert!(t.contains(OTHER_TOPIC));
    }

    #[test]
    fn languages_are_detected_from_the_words_not_a_setting() {
        assert_eq!(
            detect_language(["I lost my card and I want to block it"]),
            Some(Language::En)
        );
        assert_eq!(
            detect_language(["Hei, jeg har mistet kortet mitt og vil sperre det"]),
            Some(Language::Nb)
        );
        // Polish: neither language's function words.
        assert_eq!(
            detect_language(["Dzień dobry, zgubiłem kartę i chcę ją zablokować"]),
            None
        );
        assert_eq!(detect_language(Vec::<&str>::new()), None);
    }

    #[test]
    fn words_keep_inner_apostrophes_and_hyphens() {
        assert_eq!(
            words("I don't know, pin-kode 'x' -y Æøå!"),
            ["i", "don't", "know", "pin-kode", "x", "y", "æøå"]
        );
        assert_eq!(words("It’s"), ["it's"]);
    }

    #[test]
    fn phrases_match_whole_words_or_prefixes() {
        let p = Phrase::parse("boliglån*").unwrap_or_else(|| panic!());
        assert!(p.matches(&words("Boliglånet mitt")));
        assert!(!p.matches(&words("nytt lån")));
        let card = Phrase::parse("card").unwrap_or_else(|| panic!());
        assert!(!card.matches(&words("a postcard")));
        assert!(!card.matches(&words("cardinal")));
        let two = Phrase::parse("card payment").unwrap_or_else(|| panic!());
        assert_eq!(two.occurrences(&words("card payment, card and payment")), 1);
    }

    #[test]
    fn sentences_split_at_terminators_not_inside_numbers_or_abbreviations() {
        assert_eq!(
            split_sentences("Rate is 4.5 now. Ca. 300 kr. per month?! Yes"),
            ["Rate is 4.5 now.", "Ca. 300 kr. per month?!", "Yes"]
        );
    }

    #[test]
    fn language_hints() {
        assert_eq!(Language::from_hint("nb-NO"), Some(Language::Nb));
        assert_eq!(Language::from_hint("no"), Some(Language::Nb));
        assert_eq!(Language::from_hint("en_GB"), Some(Language::En));
        assert_eq!(Language::from_hint("de"), None);
        let en = [Segment::new(
            Speaker::Customer,
            0.0,
            "I want to move my mortgage to you and the bank",
        )];
        assert_eq!(Language::resolve("", &en), Language::En);
        let nb = [Segment::new(
            Speaker::Customer,
            0.0,
            "Jeg vil flytte lånet mitt til dere og det haster",
        )];
        assert_eq!(Language::resolve("auto", &nb), Language::Nb);
    }
}
