//! QA sampling (R6) and the KI reporting index (R5), issue 6 item 3.
//!
//! Every drafted KI call gets a content-free index row the moment its draft
//! is stored ([`Qa::on_drafted`], called by the summarizer through
//! [`opptak_ki::summarize::DraftListener`]): UTC day, desk, the language
//! detected from the transcript, taxonomy topics, the draft's length. So
//! does every call whose speech recognition failed
//! ([`Qa::on_recognition_failed`], from the transcriber): topic `none`, no
//! draft, so QA can listen to it (issue 16 section 6: failure itself can be
//! unequal across groups). The same transaction decides whether the call
//! lands in the QA queue (stratified systematic sampling by [`stratum`]:
//! topic × desk × detected language × recognition failed, see
//! [`systematic_pick`]), stores the draft's screening (lexicon and language
//! model, `opptak_ki::screen`) and queues a screening hit whatever the
//! sample decided. The advisor's outcome (approved with the word-level
//! edit distance from the draft, or rejected) is added by `src/review.rs`
//! ([`Qa::on_decision`]).
//!
//! QA reviewers ([`Role::Qa`]) score sampled calls ([`Qa::score`]); the note
//! is the one text stored, sealed under the call's `ki` key like the review
//! versions, so it goes with the KI data; so are the screening's terms.
//! [`Qa::report`] aggregates per topic (UI and CSV) and per stratum, with
//! error and flag rates and their 95 % Wilson intervals ([`wilson`]),
//! k-suppressed like the dashboard; [`Qa::topic_rows`] feeds the topic
//! dashboard.
//!
//! Calls whose customer opted out of KI are left out of every read (the
//! store joins `calls` at read time), whatever order the opt-out and the
//! draft arrived in. Authorization beyond "only QA scores, only sampled
//! calls" and the audit log are the caller's (the web layer's).
//!
//! Conversations (issue 17) come in through [`Qa::on_conversation`], once
//! their redacted analysis copy is stored: topics from the same taxonomy
//! by the embedded classifier (no language model, R13), indexed with their
//! channel for the one dashboard; a conversation the bot answered in is
//! sampled like a drafted call, in its own stratum
//! ([`conversation_stratum`]), since the bot's answers are KI output that
//! "kan inneholde feil" (R6). Its QA note is sealed under its
//! `chat-analysis-1y` key, and its rows go with that key (expiry, the
//! customer's objection, erasure) as a call's go with `ki`.

use crate::identity::{Role, User};
use crate::ReviewEdges;
use anyhow::{Context, Result};
use opptak_crypto::segment::ArtifactKind;

use opptak_crypto::DataKey;
use opptak_domain::conversation::ConversationLog;
use opptak_domain::model::{CallFacts, CallId, ConversationFacts, KeyClass};
use opptak_domain::summary::{Draft, Taxonomy, UNDETERMINED};
use opptak_ki::screen::Screening;
use opptak_ki::summarize::Drafted;
use opptak_store::reporting::{KiCallRow, QaReviewRow, ScreeningRow, SqlReporting, PHONE};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

pub use opptak_store::reporting::{Indexed, IndexedCall, QueueRow, StratumRow, TopicRow};

/// Shares are kept as parts per million so every process makes the same
/// decision for the same number: float products like `0.07 × 100` land a
/// hair above an integer and would shift a ceiling.
pub const SHARE_SCALE: u64 = 1_000_000;

/// `share` (0.0..=1.0) in parts per million.
pub fn share_ppm(share: f64) -> u64 {
    (share.clamp(0.0, 1.0) * SHARE_SCALE as f64).round() as u64
}

/// Systematic sampling within a stratum: the `n`-th call (0-based) is
/// sampled iff `ceil((n+1)·share) > ceil(n·share)`.
///
/// Why this rule: the sampled count after `N` calls is then exactly
/// `ceil(N·share)` (the steps telescope), so every stratum's sample stays
/// within one call of `share × seen` at every moment, not only on average
/// as with random draws; and `ceil(1·share) = 1` for any share above 0, so
/// each stratum's *first* call is sampled. Small strata — a rare topic at a
/// small desk in the less common language — are where discriminatory or
/// unexpected output hides from a proportional sample, and this keeps every
/// one of them in front of QA. A changed share applies from the stratum's
/// next call on.
pub fn systematic_pick(n: u64, share_ppm: u64) -> bool {
    let p = u128::from(share_ppm.min(SHARE_SCALE));
    let scale = u128::from(SHARE_SCALE);
    let ceil = |k: u128| (k * p).div_ceil(scale);
    let n = u128::from(n);
    ceil(n + 1) > ceil(n)
}

/// The sampling stratum of a call: primary topic, desk, the language
/// detected from its transcript, and whether its speech recognition failed
/// (`asr-failed`, else `asr-ok`).
pub fn stratum(topic: &str, desk: &str, language: &str, recognition_failed: bool) -> String {
    let asr = if recognition_failed { "asr-failed" } else { "asr-ok" };
    format!("{topic}|{desk}|{language}|{asr}")
}

/// The sampling stratum of a conversation with the bot's answers: primary
/// topic, desk and detected language as for a call, then its channel in
/// place of the recognition outcome, so conversations and calls never
/// share a stratum (each keeps its own first-is-always-sampled guarantee).
pub fn conversation_stratum(topic: &str, desk: &str, language: &str, channel: &str) -> String {
    format!("{topic}|{desk}|{language}|{channel}")
}

/// The topic of a call without a draft (speech recognition failed).
pub const NO_TOPIC: &str = "none";

/// What QA sees for a call whose recognition failed.
pub const RECOGNITION_FAILED: &str = "speech recognition failed: listen to the call (no draft to score)";

/// A QA review counts as finding an error when its correctness is at most this.
pub const ERROR_MAX_CORRECTNESS: u8 = 2;

/// z for a two-sided 95 % interval.
pub const Z95: f64 = 1.959_963_984_540_054;

/// A share `x / n` with its Wilson score interval.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    pub x: u64,
    pub n: u64,
    pub low: f64,
    pub high: f64,
}

impl Rate {
    /// `x / n` with its 95 % Wilson interval; `None` when `n` is 0.
    pub fn of(x: u64, n: u64) -> Option<Rate> {
        let (low, high) = wilson(x, n, Z95)?;
        Some(Rate { x, n, low, high })
    }

    pub fn share(&self) -> f64 {
        self.x as f64 / self.n as f64
    }
}

/// The Wilson score interval of `x` successes in `n` trials at `z`:
/// `(p + z²/2n ± z·√(p(1−p)/n + z²/4n²)) / (1 + z²/n)`. Unlike the normal
/// approximation it stays inside 0..=1 and is not zero-width at 0 or n,
/// which matters here: QA samples few calls per stratum, and "0 errors in
/// 3 reviews" must not read as "no errors". `None` when `n` is 0.
pub fn wilson(x: u64, n: u64, z: f64) -> Option<(f64, f64)> {
    if n == 0 || x > n {
        return None;
    }
    let (n, p) = (n as f64, x as f64 / n as f64);
    let z2 = z * z;
    let denom = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denom;
    let half = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denom;
    Some(((centre - half).max(0.0), (centre + half).min(1.0)))
}

/// Which of groups of `sizes` calls to withhold at `k`: every group with
/// 1..k-1 calls, then (so no withheld one can be recovered as a published
/// total minus the published groups) the smallest others until the
/// withheld ones hold at least k calls together. `exhausted` when that
/// cannot be reached: the total over these groups must be withheld too.
fn withhold(sizes: &[u64], k: u64) -> (Vec<bool>, bool) {
    let mut hidden: Vec<bool> = sizes.iter().map(|n| (1..k).contains(n)).collect();
    let mut by_size: Vec<usize> = (0..sizes.len()).filter(|&i| !hidden[i] && sizes[i] > 0).collect();
    by_size.sort_by_key(|&i| sizes[i]);
    let mut by_size = by_size.into_iter();
    let withheld = |h: &[bool]| sizes.iter().zip(h).filter(|(_, h)| **h).map(|(n, _)| n).sum::<u64>();
    while hidden.iter().any(|h| *h) && withheld(&hidden) < k {
        match by_size.next() {
            Some(i) => hidden[i] = true,
            None => return (hidden, true),
        }
    }
    (hidden, false)
}

/// Word-level Levenshtein distance: the fewest words inserted, deleted or
/// replaced to turn `a` into `b` (whitespace-separated; spacing is ignored).
pub fn word_edit_distance(a: &str, b: &str) -> u64 {
    let a: Vec<&str> = a.split_whitespace().collect();
    let b: Vec<&str> = b.split_whitespace().collect();
    // Two rows of the table: O(|a|·|b|) time, O(|b|) memory (texts are
    // bounded by the review's 20,000 bytes).
    let mut prev: Vec<u64> = (0..=b.len() as u64).collect();
    let mut cur = vec![0u64; b.len() + 1];
    for (i, wa) in a.iter().enumerate() {
        cur[0] = i as u64 + 1;
        for (j, wb) in b.iter().enumerate() {
            let replace = prev[j] + u64::from(wa != wb);
            cur[j + 1] = replace.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// What a QA reviewer may flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QaFlag {
    /// The KI output treats the customer differently for who they are.
    Discriminatory,
    /// Anything else QA did not expect of the KI output.
    Unexpected,
}

impl QaFlag {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Discriminatory => "discriminatory",
            Self::Unexpected => "unexpected",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "discriminatory" => Some(Self::Discriminatory),
            "unexpected" => Some(Self::Unexpected),
            _ => None,
        }
    }
}

/// A QA reviewer's assessment of one sampled call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QaScore {
    /// 1..=5 each.
    pub correctness: u8,
    pub relevance: u8,
    pub quality: u8,
    /// A flag needs a note saying why.
    pub flag: Option<QaFlag>,
    /// Free text (may be empty without a flag); sealed at rest.
    pub note: String,
}

/// A stored QA review as a reader sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QaReview {
    pub reviewer: String,
    pub at_us: i64,
    pub correctness: u8,
    pub relevance: u8,
    pub quality: u8,
    pub flag: Option<QaFlag>,
    /// `None` once the call's `ki` key is gone (opt-out, expiry, erasure).
    pub note: Option<String>,
}

/// Why [`Qa::score`] refused; inside the `anyhow::Error` it returns
/// (`err.downcast_ref::<Refusal>()`), so the web layer can pick a status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Only QA reviewers score (403).
    NotQa,
    /// The call is not in the QA sample, or its customer opted out of KI (403).
    NotSampled,
    /// A score outside 1..=5, a flag without a note, a note too long (400).
    Invalid(String),
    /// The call's KI data is gone (expired or erased): nothing to assess (410).
    KiGone,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotQa => f.write_str("only QA reviewers score KI calls"),
            Self::NotSampled => f.write_str("the call is not in the QA sample"),
            Self::Invalid(why) => f.write_str(why),
            Self::KiGone => f.write_str("the call's KI data is gone (expired or erased)"),
        }
    }
}

impl std::error::Error for Refusal {}

/// The advisor's outcome of a draft, for [`Qa::on_decision`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DraftOutcome<'a> {
    /// Approved as `approved`; `draft` is the summary the model wrote.
    Approved {
        draft: &'a str,
        approved: &'a str,
    },
    Rejected,
}

/// The QA report's numbers for one topic (or all of them).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TopicStats {
    /// The primary topic, or [`TOTAL`] for the total row.
    pub topic: String,
    /// Withheld by [`QaReport::suppress`]: every number below is 0 or `None`.
    pub suppressed: bool,
    /// Drafted KI calls.
    pub drafted: u64,
    /// Of those, sampled for QA.
    pub sampled: u64,
    /// Sampled calls with at least one QA review.
    pub scored: u64,
    /// QA reviews (a call may be scored by several reviewers); the means
    /// and flags count reviews.
    pub reviews: u64,
    pub mean_correctness: Option<f64>,
    pub mean_relevance: Option<f64>,
    pub mean_quality: Option<f64>,
    pub flagged_discriminatory: u64,
    pub flagged_unexpected: u64,
    pub approved: u64,
    pub rejected: u64,
    /// Mean word-level edit distance from draft to approved summary, over
    /// the approved calls.
    pub mean_edit_distance: Option<f64>,
    /// Mean of (edit distance ÷ draft words) over the approved calls.
    /// Unbounded: an advisor who adds more words than the draft had counts
    /// over 1 (the report once read "111 %"); kept for the API and CSV.
    pub mean_edit_distance_per_draft_word: Option<f64>,
    /// Mean over the approved calls of the share of the draft changed,
    /// each call's (edit distance ÷ draft words) capped at 1: a draft
    /// rewritten entirely, or more, counts as 100 %. Always within 0..=1;
    /// what the report page shows.
    pub mean_changed_share: Option<f64>,
}

/// The QA report's numbers for one stratum (or all of them).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StratumStats {
    /// [`stratum`]'s key, or [`TOTAL`].
    pub stratum: String,
    pub topic: String,
    pub desk: String,
    pub language: String,
    pub recognition_failed: bool,
    /// `phone`, or the channel of the conversations of this stratum.
    pub channel: String,
    /// Withheld (under k): every number below is 0 or `None`.
    pub suppressed: bool,
    /// Indexed calls (drafted, or recognition failed) or conversations.
    pub calls: u64,
    /// Picked by the stratified sample.
    pub sampled: u64,
    /// Flagged by screening.
    pub screened: u64,
    /// Calls with at least one QA review.
    pub scored: u64,
    /// Scored calls a reviewer found wrong (correctness at most [`ERROR_MAX_CORRECTNESS`]).
    pub errors: u64,
    /// Scored calls a reviewer flagged (discriminatory or unexpected).
    pub flagged: u64,
    /// `errors / scored`, 95 % Wilson interval.
    pub error_rate: Option<Rate>,
    /// `flagged / scored`, 95 % Wilson interval.
    pub flag_rate: Option<Rate>,
    /// `screened / calls`, 95 % Wilson interval.
    pub screening_rate: Option<Rate>,
}

impl StratumStats {
    fn withheld(&self) -> StratumStats {
        StratumStats {
            stratum: self.stratum.clone(),
            topic: self.topic.clone(),
            desk: self.desk.clone(),
            language: self.language.clone(),
            recognition_failed: self.recognition_failed,
            channel: self.channel.clone(),
            suppressed: true,
            ..Default::default()
        }
    }

    /// The group that sums to a published topic row (failed calls and
    /// conversations have none: each is a group of its own).
    fn group(&self) -> String {
        if self.recognition_failed {
            "|asr-failed".to_owned()
        } else if !self.channel.is_empty() && self.channel != PHONE {
            format!("|{}", self.channel)
        } else {
            self.topic.clone()
        }
    }
}

#[derive(Default)]
struct StratumAcc {
    calls: u64,
    sampled: u64,
    screened: u64,
    scored: BTreeSet<String>,
    errors: BTreeSet<String>,
    flagged: BTreeSet<String>,
}

impl StratumAcc {
    fn stats(&self, key: &StratumKey) -> StratumStats {
        let (scored, errors, flagged) = (
            self.scored.len() as u64,
            self.errors.len() as u64,
            self.flagged.len() as u64,
        );
        StratumStats {
            stratum: key.stratum(),
            topic: key.0.clone(),
            desk: key.1.clone(),
            language: key.2.clone(),
            recognition_failed: key.3,
            channel: key.4.clone(),
            suppressed: false,
            calls: self.calls,
            sampled: self.sampled,
            screened: self.screened,
            scored,
            errors,
            flagged,
            error_rate: Rate::of(errors, scored),
            flag_rate: Rate::of(flagged, scored),
            screening_rate: Rate::of(self.screened, self.calls),
        }
    }
}

/// (topic, desk, language, recognition failed, channel).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct StratumKey(String, String, String, bool, String);

impl StratumKey {
    fn stratum(&self) -> String {
        if self.0 == TOTAL {
            return TOTAL.to_owned();
        }
        if self.4 != PHONE {
            return conversation_stratum(&self.0, &self.1, &self.2, &self.4);
        }
        stratum(&self.0, &self.1, &self.2, self.3)
    }

    /// A conversation's (in the strata only: no draft, no advisor's outcome).
    fn conversation(&self) -> bool {
        self.4 != PHONE
    }
}

/// What [`Qa::sample_access`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SampleAccess {
    Readable,
    NotSampled,
    /// Sampled, but the call's `ki` key is shredded.
    KiGone,
}

/// The topic of the total row.
pub const TOTAL: &str = "TOTAL";

/// The QA report over the calls of `from_day..=to_day` (UTC days of the
/// calls' start), per primary topic (sorted) and in total.
#[derive(Clone, Debug, PartialEq)]
pub struct QaReport {
    pub from_day: String,
    pub to_day: String,
    /// Drafted calls (recognition failures are in the strata only).
    pub topics: Vec<TopicStats>,
    pub total: TopicStats,
    /// Per stratum (sorted), failed recognitions included.
    pub strata: Vec<StratumStats>,
    pub strata_total: StratumStats,
}

#[derive(Default)]
struct Acc {
    drafted: u64,
    sampled: u64,
    scored: BTreeSet<String>,
    reviews: u64,
    scores: [u64; 3],
    flags: [u64; 2],
    approved: u64,
    rejected: u64,
    distances: Vec<(u64, u64)>,
}

impl Acc {
    fn stats(&self, topic: &str) -> TopicStats {
        let mean = |sum: u64, n: u64| (n > 0).then(|| sum as f64 / n as f64);
        let n = self.distances.len() as u64;
        TopicStats {
            topic: topic.to_owned(),
            suppressed: false,
            drafted: self.drafted,
            sampled: self.sampled,
            scored: self.scored.len() as u64,
            reviews: self.reviews,
            mean_correctness: mean(self.scores[0], self.reviews),
            mean_relevance: mean(self.scores[1], self.reviews),
            mean_quality: mean(self.scores[2], self.reviews),
            flagged_discriminatory: self.flags[0],
            flagged_unexpected: self.flags[1],
            approved: self.approved,
            rejected: self.rejected,
            mean_edit_distance: mean(self.distances.iter().map(|d| d.0).sum(), n),
            mean_edit_distance_per_draft_word: (n > 0).then(|| {
                self.distances
                    .iter()
                    .map(|&(d, words)| d as f64 / words.max(1) as f64)
                    .sum::<f64>()
                    / n as f64
            }),
            mean_changed_share: (n > 0).then(|| {
                self.distances
                    .iter()
                    .map(|&(d, words)| changed_share(d, words))
                    .sum::<f64>()
                    / n as f64
            }),
        }
    }
}

/// The share of a draft of `words` words an edit distance of `distance`
/// words changed, capped at 1 (a rewrite longer than the draft is 100 %,
/// an empty draft given any text too).
pub fn changed_share(distance: u64, words: u64) -> f64 {
    if words == 0 {
        return if distance > 0 { 1.0 } else { 0.0 };
    }
    distance.min(words) as f64 / words as f64
}

impl TopicStats {
    fn withheld(topic: &str) -> TopicStats {
        TopicStats {
            topic: topic.to_owned(),
            suppressed: true,
            ..Default::default()
        }
    }
}

/// The CSV header of [`QaReport::to_csv`].
pub const CSV_HEADER: [&str; 15] = [
    "topic",
    "drafted",
    "sampled",
    "scored",
    "reviews",
    "mean_correctness",
    "mean_relevance",
    "mean_quality",
    "flagged_discriminatory",
    "flagged_unexpected",
    "approved",
    "rejected",
    "mean_edit_distance",
    "mean_edit_distance_per_draft_word",
    "mean_changed_share",
];

impl QaReport {
    /// Small counts withheld, as on the topic dashboard (R5; issue 15,
    /// finding 6: the QA report showed them): a topic row with 1..k-1
    /// drafted calls could single out an advisor or a customer, so its
    /// numbers are withheld; then, so that no withheld row can be recovered
    /// as the total minus the published rows, more rows (the smallest first)
    /// are withheld until the withheld ones together hold at least k calls —
    /// and the total too when that cannot be reached (or is itself under k).
    ///
    /// The strata likewise, within each topic (their calls sum to the
    /// topic's row; a withheld topic withholds all its strata) and among
    /// the failed recognitions; the strata's total goes when any of that
    /// cannot reach k, or the topics' total went.
    pub fn suppress(mut self, k: u64) -> QaReport {
        let sizes: Vec<u64> = self.topics.iter().map(|t| t.drafted).collect();
        let (hidden, exhausted) = withhold(&sizes, k);
        let total_hidden = (1..k).contains(&self.total.drafted) || exhausted;
        let hidden_topics: BTreeSet<String> = self
            .topics
            .iter()
            .zip(&hidden)
            .filter(|(_, h)| **h)
            .map(|(t, _)| t.topic.clone())
            .collect();
        for (t, h) in self.topics.iter_mut().zip(hidden) {
            if h {
                *t = TopicStats::withheld(&t.topic);
            }
        }
        if total_hidden {
            self.total = TopicStats::withheld(TOTAL);
        }
        let mut strata_total_hidden = total_hidden || (1..k).contains(&self.strata_total.calls);
        let groups: BTreeSet<String> = self.strata.iter().map(StratumStats::group).collect();
        for g in groups {
            let members: Vec<usize> = (0..self.strata.len())
                .filter(|&i| self.strata[i].group() == g)
                .collect();
            let hide: Vec<bool> = if hidden_topics.contains(&g) {
                vec![true; members.len()]
            } else {
                let sizes: Vec<u64> = members.iter().map(|&i| self.strata[i].calls).collect();
                let (hide, exhausted) = withhold(&sizes, k);
                strata_total_hidden |= exhausted;
                hide
            };
            for (i, h) in members.into_iter().zip(hide) {
                if h {
                    self.strata[i] = self.strata[i].withheld();
                }
            }
        }
        if strata_total_hidden {
            self.strata_total = self.strata_total.withheld();
        }
        self
    }

    /// The report as CSV (RFC 4180, CRLF line ends): [`CSV_HEADER`], one
    /// row per topic, then the [`TOTAL`] row. Means have two decimals (the
    /// per-word distance three); an empty cell means nothing to average.
    pub fn to_csv(&self) -> String {
        let mut out = String::new();
        let mut line = |cells: Vec<String>| {
            out.push_str(&cells.iter().map(|c| crate::csv::field(c)).collect::<Vec<_>>().join(","));
            out.push_str("\r\n");
        };
        line(CSV_HEADER.iter().map(|h| h.to_string()).collect());
        let f = |v: Option<f64>, decimals: usize| v.map_or(String::new(), |v| format!("{v:.decimals$}"));
        for t in self.topics.iter().chain(std::iter::once(&self.total)) {
            if t.suppressed {
                // Withheld (under k): the topic and empty cells.
                let mut cells = vec![t.topic.clone()];
                cells.resize(CSV_HEADER.len(), String::new());
                line(cells);
                continue;
            }
            line(vec![
                t.topic.clone(),
                t.drafted.to_string(),
                t.sampled.to_string(),
                t.scored.to_string(),
                t.reviews.to_string(),
                f(t.mean_correctness, 2),
                f(t.mean_relevance, 2),
                f(t.mean_quality, 2),
                t.flagged_discriminatory.to_string(),
                t.flagged_unexpected.to_string(),
                t.approved.to_string(),
                t.rejected.to_string(),
                f(t.mean_edit_distance, 2),
                f(t.mean_edit_distance_per_draft_word, 3),
                f(t.mean_changed_share, 3),
            ]);
        }
        out
    }
}

#[derive(Serialize, Deserialize)]
struct SealedNote {
    note: String,
}

/// The longest note kept, in bytes.
pub const MAX_NOTE_BYTES: usize = 10_000;

/// Which queued items [`select_queue`] keeps by their assessments.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum QueueStatus {
    #[default]
    All,
    /// Scored by at least one reviewer.
    Scored,
    /// Scored by no one yet.
    NotScored,
}

/// What [`select_queue`] sorts by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum QueueSort {
    /// Time in the queue (since sampled).
    #[default]
    Waiting,
    /// When the call started.
    Start,
    /// The call's length (an open call's counts as 0).
    Length,
}

/// One page of the QA queue, as asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueQuery {
    /// Part of a call id (case-insensitive); empty for all.
    pub call: String,
    /// One desk code; empty for all.
    pub desk: String,
    /// One primary topic id; empty for all.
    pub topic: String,
    pub status: QueueStatus,
    pub sort: QueueSort,
    pub descending: bool,
    /// 1-based.
    pub page: usize,
    pub per: usize,
}

impl Default for QueueQuery {
    /// Everything, the longest waiting first, 50 a page.
    fn default() -> Self {
        QueueQuery {
            call: String::new(),
            desk: String::new(),
            topic: String::new(),
            status: QueueStatus::All,
            sort: QueueSort::Waiting,
            descending: true,
            page: 1,
            per: 50,
        }
    }
}

/// A page of the queue: its rows, how many match in all, and every desk
/// and topic in the queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuePage {
    pub rows: Vec<QueueRow>,
    pub total: usize,
    pub desks: Vec<String>,
    pub topics: Vec<String>,
}

/// A queued item's length in microseconds (0 while open).
pub fn queue_length_us(r: &QueueRow) -> i64 {
    r.ended_at_us.map_or(0, |e| (e - r.started_at_us).max(0))
}

/// The rows `q` keeps, sorted (ties by call id) and cut to its page, with
/// how many matched before the cut. `now_us` is only for the waiting time.
pub fn select_queue(rows: Vec<QueueRow>, q: &QueueQuery, now_us: i64) -> (Vec<QueueRow>, usize) {
    let needle = q.call.trim().to_lowercase();
    let mut kept: Vec<QueueRow> = rows
        .into_iter()
        .filter(|r| needle.is_empty() || r.call_id.to_lowercase().contains(&needle))
        .filter(|r| q.desk.is_empty() || r.desk == q.desk)
        .filter(|r| q.topic.is_empty() || r.topic == q.topic)
        .filter(|r| match q.status {
            QueueStatus::All => true,
            QueueStatus::Scored => !r.reviewers.is_empty(),
            QueueStatus::NotScored => r.reviewers.is_empty(),
        })
        .collect();
    let key = |r: &QueueRow| match q.sort {
        QueueSort::Waiting => now_us - r.sampled_at_us,
        QueueSort::Start => r.started_at_us,
        QueueSort::Length => queue_length_us(r),
    };
    kept.sort_by(|a, b| {
        let by = key(a).cmp(&key(b));
        let by = if q.descending { by.reverse() } else { by };
        by.then_with(|| a.call_id.cmp(&b.call_id))
    });
    let total = kept.len();
    let per = q.per.clamp(1, 200);
    let skip = q.page.max(1).saturating_sub(1).saturating_mul(per);
    (kept.into_iter().skip(skip).take(per).collect(), total)
}

/// QA sampling, scoring and the report over the edges' metadata store.
pub struct Qa {
    edges: ReviewEdges,
    store: SqlReporting,
    share_ppm: u64,
    /// The call taxonomy conversations are categorised into (R5).
    taxonomy: Taxonomy,
}

impl Qa {
    /// Opens the reporting tables; the share is `qa.share` of the config.
    pub async fn open(edges: &ReviewEdges) -> Result<Self> {
        Ok(Self {
            edges: edges.clone(),
            store: SqlReporting::open(&edges.config.metadata_url)
                .await
                .context("opening the reporting tables")?,
            share_ppm: share_ppm(edges.config.qa.share),
            taxonomy: Taxonomy::default_taxonomy(),
        })
    }

    /// The configured share, 0.0..=1.0.
    pub fn share(&self) -> f64 {
        self.share_ppm as f64 / SHARE_SCALE as f64
    }

    /// Indexes a call whose draft was just stored and decides whether QA
    /// samples it. Idempotent per call: a retried draft changes nothing and
    /// returns the first decision.
    /// The draft's own language stands for the detected one and nothing
    /// is screened: [`Qa::on_drafted`] is what the summarizer calls.
    pub async fn on_draft(&self, facts: &CallFacts, draft: &Draft) -> Result<Indexed> {
        let drafted = Drafted {
            draft,
            language: draft.language.clone(),
            recognition_failed: false,
            screening: None,
        };
        self.on_drafted(facts, &drafted).await
    }

    /// Indexes a stored draft with its detected language and screening;
    /// a screening hit is queued for QA whatever the sample decided.
    pub async fn on_drafted(&self, facts: &CallFacts, d: &Drafted<'_>) -> Result<Indexed> {
        let topics: Vec<String> = if d.draft.topics.is_empty() {
            vec!["other".to_owned()]
        } else {
            d.draft.topics.clone()
        };
        let row = self.row(
            facts,
            &d.language,
            topics,
            d.draft.summary.split_whitespace().count() as u64,
            d.recognition_failed,
        );
        let screening = match &d.screening {
            Some(s) => self.seal_screening(&facts.call_id, s, row.drafted_at_us).await?,
            None => None,
        };
        self.index_call(&row, screening.as_ref()).await
    }

    /// Indexes a call whose speech recognition failed (`why`, logged
    /// only): topic [`NO_TOPIC`], language undetermined, no draft. Sampled
    /// in its own stratum, so QA listens to such calls too. Idempotent.
    pub async fn on_recognition_failed(&self, facts: &CallFacts, why: &str) -> Result<Indexed> {
        let row = self.row(facts, UNDETERMINED, vec![NO_TOPIC.to_owned()], 0, true);
        tracing::info!(call_id = %facts.call_id, why, "speech recognition failed; indexed for QA");
        self.index_call(&row, None).await
    }

    fn row(&self, facts: &CallFacts, language: &str, topics: Vec<String>, words: u64, failed: bool) -> KiCallRow {
        let language = language.trim();
        KiCallRow {
            call_id: facts.call_id.to_string(),
            day: opptak_domain::time::utc_day(facts.started_at_us),
            desk: facts.desk.as_str().to_owned(),
            language: if language.is_empty() { UNDETERMINED } else { language }.to_owned(),
            topics,
            advisor_id: facts.advisor_id.clone(),
            drafted_at_us: self.edges.vault.clock().now_us(),
            draft_words: words,
            recognition_failed: failed,
            channel: PHONE.to_owned(),
        }
    }

    /// Indexes a conversation whose redacted analysis copy was just stored
    /// (the messages role calls this once per conversation through the
    /// binary's hook): its topics in the call taxonomy by the embedded
    /// classifier, the language detected from its words, its channel and
    /// desk. A conversation the bot answered in is sampled for QA in its
    /// [`conversation_stratum`] as a drafted call is in its stratum; one
    /// without the bot's answers is on the dashboard only. Idempotent: a
    /// repeated call changes nothing. Only the redacted copy is accepted.
    pub async fn on_conversation(&self, facts: &ConversationFacts, copy: &ConversationLog) -> Result<Indexed> {
        if !copy.redacted || !copy.customer_ref.is_empty() || copy.ip_address.is_some() {
            anyhow::bail!(
                "conversation {}: only its redacted analysis copy is analysed",
                facts.conversation_id
            );
        }
        let row = KiCallRow {
            call_id: facts.conversation_id.to_string(),
            day: opptak_domain::time::utc_day(facts.started_at_us),
            desk: facts.desk.as_str().to_owned(),
            language: copy.language().map_or(UNDETERMINED, |l| l.as_str()).to_owned(),
            topics: copy.topics(&self.taxonomy),
            advisor_id: facts.advisor_id.clone(),
            drafted_at_us: self.edges.vault.clock().now_us(),
            draft_words: copy.bot_words(),
            recognition_failed: false,
            channel: facts.channel.as_str().to_owned(),
        };
        let stratum =
            (row.draft_words > 0).then(|| conversation_stratum(row.topic(), &row.desk, &row.language, &row.channel));
        self.index(&row, stratum.as_deref(), None).await
    }

    /// A sampled conversation's redacted analysis copy, for QA; `None`
    /// once its `chat-analysis-1y` key is gone. The caller authorizes and
    /// audits.
    pub async fn analysis_copy(&self, id: &CallId) -> Result<Option<ConversationLog>> {
        if self
            .edges
            .vault
            .key(id, KeyClass::ChatAnalysis1y.as_str())
            .await?
            .is_none()
        {
            return Ok(None);
        }
        Ok(Some(
            self.edges
                .vault
                .read_json::<ConversationLog>(id, "chat-analysis", ArtifactKind::Conversation)
                .await?,
        ))
    }

    /// Indexes a row in `stratum` (`None`: for the dashboard only).
    async fn index(&self, row: &KiCallRow, stratum: Option<&str>, screening: Option<&ScreeningRow>) -> Result<Indexed> {
        let share = self.share_ppm;
        let indexed = self
            .store
            .index_draft(
                row,
                stratum,
                row.drafted_at_us,
                |n| systematic_pick(n, share),
                screening,
            )
            .await
            .with_context(|| format!("indexing {} ({})", row.call_id, row.channel))?;
        if indexed.new {
            tracing::info!(call_id = %row.call_id, channel = %row.channel, stratum = %stratum.unwrap_or(""),
                sampled = indexed.sampled, screened = indexed.screened, "indexed for the dashboard and QA");
        }
        Ok(indexed)
    }

    /// A call's row in its [`stratum`].
    async fn index_call(&self, row: &KiCallRow, screening: Option<&ScreeningRow>) -> Result<Indexed> {
        let stratum = stratum(row.topic(), &row.desk, &row.language, row.recognition_failed);
        self.index(row, Some(&stratum), screening).await
    }

    /// The screening as stored, its terms and detail sealed under the
    /// call's `ki` key; `None` once that key is gone (nothing to queue).
    async fn seal_screening(&self, call_id: &CallId, s: &Screening, at_us: i64) -> Result<Option<ScreeningRow>> {
        let Some(key) = self.ki_key(call_id).await? else {
            return Ok(None);
        };
        let sealed = screening_sealing(call_id).seal_json(&key, s)?;
        Ok(Some(ScreeningRow {
            at_us,
            lexicon_version: s.lexicon_version,
            lexicon_hits: s.lexicon.len() as u64,
            model_verdict: s.model.verdict.as_str().to_owned(),
            prompt_version: s.model.prompt_version.clone(),
            flagged: s.flagged(),
            key_id: key.id().to_owned(),
            detail_sealed: sealed,
        }))
    }

    /// A call's screening with its terms opened; `None` when not screened,
    /// opted out or its KI data is gone.
    pub async fn screening(&self, call_id: &CallId) -> Result<Option<Screening>> {
        let Some(row) = self.store.screening(call_id.as_str()).await? else {
            return Ok(None);
        };
        let key = self.ki_key(call_id).await?;
        Ok(key
            .filter(|k| k.id() == row.key_id)
            .and_then(|k| screening_sealing(call_id).open_json(&k, &row.detail_sealed).ok()))
    }

    /// Records the advisor's outcome of the call's draft; the first one
    /// stays. A call drafted before the index existed is skipped.
    pub async fn on_decision(&self, call_id: &CallId, outcome: DraftOutcome<'_>, at_us: i64) -> Result<()> {
        let (decision, distance) = match outcome {
            DraftOutcome::Approved { draft, approved } => ("approved", Some(word_edit_distance(draft, approved))),
            DraftOutcome::Rejected => ("rejected", None),
        };
        let set = self
            .store
            .set_outcome(call_id.as_str(), decision, distance, at_us)
            .await
            .with_context(|| format!("recording the outcome of {call_id} for the QA report"))?;
        if !set {
            tracing::warn!(call_id = %call_id, decision, "no open index row for the decided draft; not in the QA report");
        }
        Ok(())
    }

    /// The call's index row and outcome; `None` when not indexed or opted out.
    pub async fn call(&self, call_id: &CallId) -> Result<Option<IndexedCall>> {
        Ok(self.store.call(call_id.as_str()).await?)
    }

    /// Whether the call is in the QA sample (and its customer did not opt out).
    pub async fn is_sampled(&self, call_id: &CallId) -> Result<bool> {
        Ok(self.store.is_sampled(call_id.as_str()).await?)
    }

    /// Whether QA may read a call: sampled, and its KI data not gone (opted
    /// out or expired): QA reviews KI output, so its access to the call —
    /// the recording too, kept 5 years for investment advice — ends with it.
    pub async fn sample_access(&self, call_id: &CallId) -> Result<SampleAccess> {
        let class = self.analysis_class(call_id).await?;
        if !self.is_sampled(call_id).await? {
            // A sample goes with the KI key (issue 16, section 4): say so
            // rather than "not sampled" when that is why.
            let ki = self.edges.vault.meta().class_key(call_id, class.as_str()).await?;
            return Ok(match ki {
                Some(k) if k.destroyed_at_us.is_some() => SampleAccess::KiGone,
                _ => SampleAccess::NotSampled,
            });
        }
        Ok(match self.analysis_key(call_id).await? {
            Some(_) => SampleAccess::Readable,
            None => SampleAccess::KiGone,
        })
    }

    /// The QA queue: sampled calls QA can still read (not opted out, `ki`
    /// key alive), oldest sample first, with who scored each already.
    /// Each with its reasons: `sample`, [`RECOGNITION_FAILED`], the
    /// screening's (`screening: lexicon term X (category)`, `screening:
    /// language model (...)`).
    pub async fn queue(&self) -> Result<Vec<QueueRow>> {
        let mut rows = self.store.queue().await?;
        self.explain(&mut rows).await?;
        Ok(rows)
    }

    /// One page of the QA queue as `q` asks for it (search, filters, sort,
    /// paging, [`select_queue`]), with the desks and topics the whole
    /// queue holds (for the filter's choices). Only the page's rows get
    /// their reasons: opening a screening is a decryption.
    pub async fn queue_page(&self, q: &QueueQuery, now_us: i64) -> Result<QueuePage> {
        let rows = self.store.queue().await?;
        let desks: BTreeSet<String> = rows.iter().map(|r| r.desk.clone()).collect();
        let topics: BTreeSet<String> = rows.iter().map(|r| r.topic.clone()).collect();
        let (mut rows, total) = select_queue(rows, q, now_us);
        self.explain(&mut rows).await?;
        Ok(QueuePage {
            rows,
            total,
            desks: desks.into_iter().collect(),
            topics: topics.into_iter().collect(),
        })
    }

    /// Fills in each row's reasons (see [`Qa::queue`]).
    async fn explain(&self, rows: &mut [QueueRow]) -> Result<()> {
        for r in rows {
            if r.reason == "sample" {
                r.reasons.push("sample".to_owned());
            }
            if r.recognition_failed {
                r.reasons.push(RECOGNITION_FAILED.to_owned());
            }
            if let Some((key_id, sealed)) = &r.screening {
                let call_id = CallId::parse(&r.call_id)?;
                let opened = self
                    .ki_key(&call_id)
                    .await?
                    .filter(|k| k.id() == key_id)
                    .and_then(|k| screening_sealing(&call_id).open_json::<Screening>(&k, sealed).ok());
                match opened {
                    Some(s) => r.reasons.extend(s.reasons()),
                    None => r.reasons.push("screening (detail unreadable)".to_owned()),
                }
            }
        }
        Ok(())
    }

    /// The undecided, readable drafts of `advisors`' calls (the review queues).
    pub async fn open_drafts(&self, advisors: &[String]) -> Result<Vec<opptak_store::reporting::OpenDraft>> {
        Ok(self.store.open_drafts(advisors).await?)
    }

    /// The sampling counters of every stratum.
    pub async fn strata(&self) -> Result<Vec<StratumRow>> {
        Ok(self.store.strata().await?)
    }

    /// Stores `user`'s assessment of a sampled call (replacing their
    /// earlier one). Refused with a [`Refusal`] unless `user` is a QA
    /// reviewer, the call is sampled and its KI data is still there, the
    /// scores are 1..=5, and a flag comes with a note.
    pub async fn score(&self, user: &User, call_id: &CallId, score: QaScore) -> Result<()> {
        if user.role != Role::Qa {
            return Err(Refusal::NotQa.into());
        }
        for (name, v) in [
            ("correctness", score.correctness),
            ("relevance", score.relevance),
            ("quality", score.quality),
        ] {
            if !(1..=5).contains(&v) {
                return Err(Refusal::Invalid(format!("{name} = {v}: scores are 1 to 5")).into());
            }
        }
        let note = score.note.trim();
        if let (Some(flag), true) = (score.flag, note.is_empty()) {
            return Err(Refusal::Invalid(format!("the flag {} needs a note saying why", flag.as_str())).into());
        }
        if note.len() > MAX_NOTE_BYTES {
            return Err(Refusal::Invalid(format!("the note is longer than {MAX_NOTE_BYTES} bytes")).into());
        }
        if !self.store.is_sampled(call_id.as_str()).await? {
            return Err(Refusal::NotSampled.into());
        }
        let (key, class) = self.analysis_key(call_id).await?.ok_or(Refusal::KiGone)?;
        let at_us = self.edges.vault.clock().now_us();
        let note_id = note_id(&user.user_id, at_us);
        let sealed = note_sealing(call_id, class, &note_id).seal_json(&key, &SealedNote { note: note.to_owned() })?;
        self.store
            .upsert_review(&QaReviewRow {
                call_id: call_id.to_string(),
                reviewer: user.actor(),
                at_us,
                correctness: score.correctness,
                relevance: score.relevance,
                quality: score.quality,
                flag: score.flag.map_or("", QaFlag::as_str).to_owned(),
                key_id: key.id().to_owned(),
                note_sealed: sealed,
            })
            .await
            .map_err(|e| match e {
                opptak_store::StoreError::NotFound(_) => anyhow::Error::new(Refusal::NotSampled),
                e => anyhow::Error::new(e).context(format!("storing the QA review of {call_id}")),
            })
    }

    /// A call's QA reviews with their notes opened (`note: None` once the
    /// `ki` key is gone); none once the customer opted out. The caller
    /// decides who may read them.
    pub async fn reviews(&self, call_id: &CallId) -> Result<Vec<QaReview>> {
        let rows = self.store.reviews(call_id.as_str()).await?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let key = self.analysis_key(call_id).await.ok().flatten();
        Ok(rows
            .into_iter()
            .map(|r| {
                let note = key
                    .as_ref()
                    .filter(|(k, _)| k.id() == r.key_id)
                    .and_then(|(k, class)| {
                        note_sealing(call_id, *class, &note_id(&r.reviewer, r.at_us))
                            .open_json::<SealedNote>(k, &r.note_sealed)
                            .ok()
                    })
                    .map(|n| n.note);
                QaReview {
                    reviewer: r.reviewer,
                    at_us: r.at_us,
                    correctness: r.correctness,
                    relevance: r.relevance,
                    quality: r.quality,
                    flag: QaFlag::parse(&r.flag),
                    note,
                }
            })
            .collect())
    }

    /// The QA report over the calls of `from_day..=to_day` (`YYYY-MM-DD`,
    /// UTC day of the call's start).
    pub async fn report(&self, from_day: &str, to_day: &str) -> Result<QaReport> {
        check_day(from_day)?;
        check_day(to_day)?;
        let mut by_topic: BTreeMap<String, Acc> = BTreeMap::new();
        let mut total = Acc::default();
        let mut by_stratum: BTreeMap<StratumKey, StratumAcc> = BTreeMap::new();
        let mut strata_total = StratumAcc::default();
        let mut stratum_of: BTreeMap<String, StratumKey> = BTreeMap::new();
        for c in self.store.report_calls(from_day, to_day).await? {
            let key = StratumKey(
                c.topic.clone(),
                c.desk.clone(),
                c.language.clone(),
                c.recognition_failed,
                c.channel.clone(),
            );
            for a in [by_stratum.entry(key.clone()).or_default(), &mut strata_total] {
                a.calls += 1;
                a.sampled += u64::from(c.sampled);
                a.screened += u64::from(c.screened);
            }
            let strata_only = c.recognition_failed || key.conversation();
            stratum_of.insert(c.call_id.clone(), key);
            if strata_only {
                // No draft (recognition failed, or a conversation's bot
                // answers): in the strata only.
                continue;
            }
            let t = by_topic.entry(c.topic.clone()).or_default();
            for a in [&mut *t, &mut total] {
                a.drafted += 1;
                a.sampled += u64::from(c.sampled);
                match c.decision.as_deref() {
                    Some("approved") => {
                        a.approved += 1;
                        if let Some(d) = c.edit_distance {
                            a.distances.push((d, c.draft_words));
                        }
                    }
                    Some("rejected") => a.rejected += 1,
                    _ => {}
                }
            }
        }
        for r in self.store.report_reviews(from_day, to_day).await? {
            let Some(key) = stratum_of.get(&r.call_id) else {
                continue;
            };
            let error = r.correctness <= ERROR_MAX_CORRECTNESS;
            let flagged = QaFlag::parse(&r.flag).is_some();
            for a in [by_stratum.entry(key.clone()).or_default(), &mut strata_total] {
                a.scored.insert(r.call_id.clone());
                if error {
                    a.errors.insert(r.call_id.clone());
                }
                if flagged {
                    a.flagged.insert(r.call_id.clone());
                }
            }
            if key.3 || key.conversation() {
                continue;
            }
            let t = by_topic.entry(r.topic.clone()).or_default();
            for a in [&mut *t, &mut total] {
                a.scored.insert(r.call_id.clone());
                a.reviews += 1;
                a.scores[0] += u64::from(r.correctness);
                a.scores[1] += u64::from(r.relevance);
                a.scores[2] += u64::from(r.quality);
                match QaFlag::parse(&r.flag) {
                    Some(QaFlag::Discriminatory) => a.flags[0] += 1,
                    Some(QaFlag::Unexpected) => a.flags[1] += 1,
                    None => {}
                }
            }
        }
        Ok(QaReport {
            from_day: from_day.to_owned(),
            to_day: to_day.to_owned(),
            topics: by_topic.iter().map(|(topic, a)| a.stats(topic)).collect(),
            total: total.stats(TOTAL),
            strata: by_stratum.iter().map(|(k, a)| a.stats(k)).collect(),
            strata_total: strata_total.stats(&StratumKey(
                TOTAL.into(),
                String::new(),
                String::new(),
                false,
                String::new(),
            )),
        })
    }

    /// One row per drafted call and topic of `from_day..=to_day` (calls
    /// with several topics count under each), for the topic dashboard.
    pub async fn topic_rows(&self, from_day: &str, to_day: &str) -> Result<Vec<TopicRow>> {
        check_day(from_day)?;
        check_day(to_day)?;
        Ok(self.store.topic_rows(from_day, to_day).await?)
    }

    /// The call's live `ki` key; `None` once shredded (or never made).
    async fn ki_key(&self, call_id: &CallId) -> Result<Option<DataKey>> {
        Ok(self.edges.vault.key(call_id, KeyClass::Ki.as_str()).await?)
    }

    /// The class QA's rows of `call_id` live under: a conversation's
    /// `chat-analysis-1y` (it has such a key, live or shredded), else `ki`.
    async fn analysis_class(&self, call_id: &CallId) -> Result<KeyClass> {
        let conversation = self
            .edges
            .vault
            .meta()
            .class_key(call_id, KeyClass::ChatAnalysis1y.as_str())
            .await?
            .is_some();
        Ok(if conversation {
            KeyClass::ChatAnalysis1y
        } else {
            KeyClass::Ki
        })
    }

    /// The live key QA's notes of `call_id` are sealed under, with its
    /// class ([`Qa::analysis_class`]); `None` once shredded.
    async fn analysis_key(&self, call_id: &CallId) -> Result<Option<(DataKey, KeyClass)>> {
        let class = self.analysis_class(call_id).await?;
        Ok(self.edges.vault.key(call_id, class.as_str()).await?.map(|k| (k, class)))
    }
}

/// The summarizer's hook: every stored draft is indexed (and maybe
/// sampled) before its transcript record is acknowledged.
#[async_trait::async_trait]
impl opptak_ki::summarize::DraftListener for Qa {
    async fn drafted(&self, facts: &CallFacts, drafted: &Drafted<'_>) -> std::result::Result<(), String> {
        self.on_drafted(facts, drafted)
            .await
            .map(|_| ())
            .map_err(|e| format!("{e:#}"))
    }

    async fn recognition_failed(&self, facts: &CallFacts, why: &str) -> std::result::Result<(), String> {
        self.on_recognition_failed(facts, why)
            .await
            .map(|_| ())
            .map_err(|e| format!("{e:#}"))
    }
}

/// A screening's terms are bound to their call.
fn screening_sealing(call_id: &CallId) -> opptak_vault::Sealing<'_> {
    opptak_vault::Sealing {
        call_id,
        class: KeyClass::Ki.as_str(),
        kind: ArtifactKind::Draft,
        artifact_id: "qa-screening",
    }
}

/// A note is bound to its call, reviewer and time: a sealed note moved to
/// another row does not open. A call's under its `ki` key (as a draft), a
/// conversation's under its `chat-analysis-1y` key.
fn note_sealing<'a>(call_id: &'a CallId, class: KeyClass, note_id: &'a str) -> opptak_vault::Sealing<'a> {
    opptak_vault::Sealing {
        call_id,
        class: class.as_str(),
        kind: match class {
            KeyClass::ChatAnalysis1y => ArtifactKind::Conversation,
            _ => ArtifactKind::Draft,
        },
        artifact_id: note_id,
    }
}

fn note_id(reviewer: &str, at_us: i64) -> String {
    format!("qa-note/{reviewer}/{at_us}")
}

/// Days are compared as text, so they must be exactly `YYYY-MM-DD` (and a real date).
fn check_day(day: &str) -> Result<()> {
    if day.parse::<opptak_domain::time::Day>().is_err() {
        anyhow::bail!("{day:?}: expected a day as YYYY-MM-DD");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_changed_share_stays_within_the_draft() {
        assert_eq!(changed_share(0, 10), 0.0);
        assert_eq!(changed_share(3, 12), 0.25);
        // An advisor who wrote 11 words in place of a 10-word draft changed
        // "111 %" by the old measure: all of it, by this one.
        assert_eq!(changed_share(11, 10), 1.0);
        assert_eq!(changed_share(4, 0), 1.0);
        assert_eq!(changed_share(0, 0), 0.0);
        let acc = Acc {
            distances: vec![(11, 10), (0, 10)],
            ..Acc::default()
        };
        let t = acc.stats("x");
        assert_eq!(t.mean_changed_share, Some(0.5));
        assert!(
            t.mean_edit_distance_per_draft_word.is_some_and(|m| m > 0.5),
            "the old measure, unbounded"
        );
    }

    fn queued(
        id: &str,
        desk: &str,
        topic: &str,
        sampled: i64,
        started: i64,
        length_s: Option<i64>,
        scored: bool,
    ) -> QueueRow {
        QueueRow {
            call_id: id.to_owned(),
            channel: "phone".to_owned(),
            day: "2026-12-01".to_owned(),
            desk: desk.to_owned(),
            language: "nb".to_owned(),
            topic: topic.to_owned(),
            stratum: String::new(),
            sampled_at_us: sampled,
            started_at_us: started,
            ended_at_us: length_s.map(|s| started + s * 1_000_000),
            reviewers: if scored { vec!["qa-kari".to_owned()] } else { Vec::new() },
            recognition_failed: false,
            reason: "sample".to_owned(),
            screening: None,
            reasons: Vec::new(),
        }
    }

    #[test]
    fn the_queue_filters_sorts_and_pages() {
        let rows = vec![
            queued("call-a", "markets", "loan", 10, 300, Some(60), false),
            queued("call-b", "corporate", "loan", 20, 100, Some(600), true),
            queued("call-c", "markets", "savings", 30, 200, None, false),
            queued("other-d", "markets", "loan", 5, 400, Some(5), false),
        ];
        let ids = |(rows, _): (Vec<QueueRow>, usize)| rows.into_iter().map(|r| r.call_id).collect::<Vec<_>>();
        let q = QueueQuery::default();
        // Longest waiting first by default: the earliest sampled.
        assert_eq!(
            ids(select_queue(rows.clone(), &q, 100)),
            ["other-d", "call-a", "call-b", "call-c"]
        );
        let by = |sort, descending| QueueQuery {
            sort,
            descending,
            ..QueueQuery::default()
        };
        assert_eq!(
            ids(select_queue(rows.clone(), &by(QueueSort::Start, false), 100)),
            ["call-b", "call-c", "call-a", "other-d"]
        );
        assert_eq!(
            ids(select_queue(rows.clone(), &by(QueueSort::Length, true), 100)),
            ["call-b", "call-a", "other-d", "call-c"]
        );
        let f = QueueQuery {
            desk: "markets".into(),
            topic: "loan".into(),
            ..QueueQuery::default()
        };
        assert_eq!(ids(select_queue(rows.clone(), &f, 100)), ["other-d", "call-a"]);
        let f = QueueQuery {
            call: "CALL-".into(),
            status: QueueStatus::NotScored,
            ..QueueQuery::default()
        };
        assert_eq!(ids(select_queue(rows.clone(), &f, 100)), ["call-a", "call-c"]);
        let f = QueueQuery {
            status: QueueStatus::Scored,
            ..QueueQuery::default()
        };
        assert_eq!(ids(select_queue(rows.clone(), &f, 100)), ["call-b"]);
        // Pages of 3: the second has the last one; the total is all four.
        let p2 = QueueQuery {
            per: 3,
            page: 2,
            ..QueueQuery::default()
        };
        let (page, total) = select_queue(rows.clone(), &p2, 100);
        assert_eq!((page.len(), total, page[0].call_id.as_str()), (1, 4, "call-c"));
        let far = QueueQuery {
            page: 9,
            ..QueueQuery::default()
        };
        assert_eq!(select_queue(rows, &far, 100).0.len(), 0);
    }

    #[test]
    fn systematic_sampling_keeps_every_prefix_within_one_of_the_share() {
        for share in [0.0, 0.01, 0.07, 0.1, 0.25, 1.0 / 3.0, 0.5, 0.9, 1.0] {
            let p = share_ppm(share);
            let mut sampled = 0u64;
            for n in 0..2_000u64 {
                let pick = systematic_pick(n, p);
                if n == 0 {
                    assert_eq!(pick, share > 0.0, "first call at share {share}");
                }
                sampled += u64::from(pick);
                let expect = (n + 1) as f64 * share;
                assert!(
                    (sampled as f64 - expect).abs() <= 1.0,
                    "share {share}: {sampled} sampled of {}",
                    n + 1
                );
            }
        }
        assert!((0..100).all(|n| systematic_pick(n, SHARE_SCALE)));
        assert!((0..100).all(|n| !systematic_pick(n, 0)));
        // One in ten: calls 0, 10, 20, …
        let p = share_ppm(0.1);
        let picked: Vec<u64> = (0..35).filter(|&n| systematic_pick(n, p)).collect();
        assert_eq!(picked, vec![0, 10, 20, 30]);
    }

    #[test]
    fn word_edit_distance_counts_words() {
        assert_eq!(word_edit_distance("", ""), 0);
        assert_eq!(word_edit_distance("a b c", "a  b\nc"), 0);
        assert_eq!(word_edit_distance("a b c", ""), 3);
        assert_eq!(word_edit_distance("", "x y"), 2);
        assert_eq!(
            word_edit_distance("the customer wants a loan", "the customer wants a mortgage"),
            1
        );
        assert_eq!(word_edit_distance("a b c d", "b c d e"), 2);
        assert_eq!(word_edit_distance("kitten sat on mat", "sitting sat on the mat"), 2);
    }

    #[test]
    fn csv_quotes_and_defuses_formulas() {
        assert_eq!(crate::csv::field("cards"), "cards");
        assert_eq!(crate::csv::field("a,b"), "\"a,b\"");
        assert_eq!(crate::csv::field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(crate::csv::field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        for s in ["+1", "-1", "@SUM(A1)", "\tx"] {
            assert!(
                crate::csv::field(s).starts_with('\'') || crate::csv::field(s).starts_with("\"'"),
                "{s}"
            );
        }
        let report = QaReport {
            from_day: "2026-01-01".into(),
            to_day: "2026-01-31".into(),
            topics: vec![TopicStats {
                topic: "=cmd".into(),
                drafted: 2,
                mean_quality: Some(4.5),
                ..Default::default()
            }],
            total: TopicStats {
                topic: TOTAL.into(),
                drafted: 2,
                ..Default::default()
            },
            strata: Vec::new(),
            strata_total: StratumStats::default(),
        };
        let csv = report.to_csv();
        let lines: Vec<&str> = csv.split("\r\n").collect();
        assert_eq!(lines[0], CSV_HEADER.join(","));
        assert_eq!(lines[1], "'=cmd,2,0,0,0,,,4.50,0,0,0,0,,,");
        assert_eq!(lines[2], "TOTAL,2,0,0,0,,,,0,0,0,0,,,");
        assert_eq!(lines[3], "");
    }

    #[test]
    fn small_topic_rows_are_withheld_and_cannot_be_recovered_from_the_total() {
        let row = |topic: &str, drafted: u64| TopicStats {
            topic: topic.into(),
            drafted,
            reviews: drafted,
            mean_quality: Some(4.0),
            ..Default::default()
        };
        let report = |topics: Vec<TopicStats>| {
            let drafted = topics.iter().map(|t| t.drafted).sum();
            QaReport {
                from_day: "2026-01-01".into(),
                to_day: "2026-01-31".into(),
                topics,
                total: row(TOTAL, drafted),
                strata: Vec::new(),
                strata_total: StratumStats::default(),
            }
        };
        let shown = |r: &QaReport| -> Vec<(String, bool)> {
            r.topics
                .iter()
                .chain([&r.total])
                .map(|t| (t.topic.clone(), t.suppressed))
                .collect()
        };
        // One small row: it and the next smallest go, so the total minus the
        // published rows is a group of at least k.
        let r = report(vec![
            row("cards", 2),
            row("loans", 9),
            row("savings", 7),
            row("empty", 0),
        ])
        .suppress(5);
        assert_eq!(
            shown(&r),
            [
                ("cards", true),
                ("loans", false),
                ("savings", true),
                ("empty", false),
                (TOTAL, false)
            ]
            .map(|(t, s)| (t.to_owned(), s))
        );
        assert_eq!(r.topics[0], TopicStats::withheld("cards"));
        assert!(r.to_csv().contains("\r\ncards,,,,,,,,,,,,,,\r\n"));
        // Two small rows that make k together: nothing more goes.
        let r = report(vec![row("cards", 2), row("loans", 3), row("savings", 7)]).suppress(5);
        assert_eq!(r.topics.iter().filter(|t| t.suppressed).count(), 2);
        assert!(!r.total.suppressed && !r.topics[2].suppressed);
        // Nothing left to hide behind: the total goes too.
        let r = report(vec![row("cards", 2), row("loans", 1)]).suppress(5);
        assert!(r.topics.iter().all(|t| t.suppressed) && r.total.suppressed);
        // Nothing small: nothing withheld.
        let r = report(vec![row("loans", 9), row("savings", 7)]).suppress(5);
        assert!(r.topics.iter().chain([&r.total]).all(|t| !t.suppressed));
    }

    #[test]
    fn wilson_intervals_match_known_values() {
        // Reference values (Wilson 1927; Newcombe 1998, Stat. Med. 17:857,
        // table I: 0/10, 1/10, 81/263): two-sided 95 %, z = 1.96.
        let close = |got: Option<(f64, f64)>, want: (f64, f64)| {
            let (lo, hi) = got.expect("an interval");
            assert!(
                (lo - want.0).abs() < 5e-5 && (hi - want.1).abs() < 5e-5,
                "{lo} {hi} vs {want:?}"
            );
        };
        close(wilson(0, 10, 1.96), (0.0, 0.2775));
        close(wilson(1, 10, 1.96), (0.0179, 0.4042));
        close(wilson(81, 263, 1.96), (0.2553, 0.3662));
        close(wilson(5, 10, 1.96), (0.2366, 0.7634));
        close(wilson(10, 10, 1.96), (0.7225, 1.0));
        assert_eq!(wilson(0, 0, Z95), None);
        assert_eq!(wilson(3, 2, Z95), None);
        let r = Rate::of(1, 4).expect("a rate");
        assert!((r.share() - 0.25).abs() < 1e-12 && r.low < 0.25 && r.high > 0.25);
    }

    #[test]
    fn small_strata_are_withheld_within_their_topic() {
        let st = |topic: &str, lang: &str, failed: bool, calls: u64| StratumStats {
            stratum: stratum(topic, "markets", lang, failed),
            topic: topic.into(),
            desk: "markets".into(),
            language: lang.into(),
            recognition_failed: failed,
            calls,
            scored: calls,
            errors: 1,
            error_rate: Rate::of(1, calls),
            ..Default::default()
        };
        let topic = |t: &str, drafted: u64| TopicStats {
            topic: t.into(),
            drafted,
            ..Default::default()
        };
        let report = |strata: Vec<StratumStats>| {
            let mut topics: BTreeMap<String, u64> = BTreeMap::new();
            for s in strata.iter().filter(|s| !s.recognition_failed) {
                *topics.entry(s.topic.clone()).or_default() += s.calls;
            }
            let total: u64 = topics.values().sum();
            let all: u64 = strata.iter().map(|s| s.calls).sum();
            QaReport {
                from_day: "2026-01-01".into(),
                to_day: "2026-01-31".into(),
                topics: topics.iter().map(|(t, n)| topic(t, *n)).collect(),
                total: topic(TOTAL, total),
                strata,
                strata_total: StratumStats {
                    stratum: TOTAL.into(),
                    calls: all,
                    ..Default::default()
                },
            }
        };
        let hidden = |r: &QaReport| -> Vec<bool> { r.strata.iter().map(|s| s.suppressed).collect() };
        // cards: 20 nb and 2 en: the 2 go, and so that cards' row (22)
        // minus the published 20 cannot give them, the 20 go too.
        let r = report(vec![
            st("cards", "nb", false, 20),
            st("cards", "en", false, 2),
            st("loans", "nb", false, 30),
            st("loans", "en", false, 9),
        ])
        .suppress(5);
        assert_eq!(hidden(&r), vec![true, true, false, false]);
        assert_eq!(r.strata[1].calls, 0);
        assert_eq!(r.strata[1].error_rate, None, "never the numbers of a withheld stratum");
        assert!(!r.strata_total.suppressed);
        // A withheld topic withholds its strata, even large ones.
        let r = report(vec![
            st("cards", "nb", false, 3),
            st("loans", "nb", false, 6),
            st("pension", "nb", false, 40),
        ])
        .suppress(5);
        assert!(r.topics[0].suppressed && r.topics[1].suppressed);
        assert_eq!(hidden(&r), vec![true, true, false]);
        // Failed recognitions alone under k: withheld, and the total too
        // (else the total minus the topics would give them).
        let r = report(vec![st("cards", "nb", false, 20), st("none", "und", true, 2)]).suppress(5);
        assert_eq!(hidden(&r), vec![false, true]);
        assert!(r.strata_total.suppressed && !r.total.suppressed);
        // Nothing small: nothing withheld.
        let r = report(vec![st("cards", "nb", false, 20), st("none", "und", true, 7)]).suppress(5);
        assert_eq!(hidden(&r), vec![false, false]);
        assert!(!r.strata_total.suppressed);
    }

    #[test]
    fn conversation_strata_are_groups_of_their_own() {
        let st = |topic: &str, channel: &str, calls: u64| StratumStats {
            stratum: if channel == PHONE {
                stratum(topic, "markets", "nb", false)
            } else {
                conversation_stratum(topic, "markets", "nb", channel)
            },
            topic: topic.into(),
            desk: "markets".into(),
            language: "nb".into(),
            channel: channel.into(),
            calls,
            scored: calls,
            ..Default::default()
        };
        let report = |strata: Vec<StratumStats>| QaReport {
            from_day: "2026-01-01".into(),
            to_day: "2026-01-31".into(),
            topics: vec![TopicStats {
                topic: "cards".into(),
                drafted: 20,
                ..Default::default()
            }],
            total: TopicStats {
                topic: TOTAL.into(),
                drafted: 20,
                ..Default::default()
            },
            strata_total: StratumStats {
                stratum: TOTAL.into(),
                calls: strata.iter().map(|s| s.calls).sum(),
                ..Default::default()
            },
            strata,
        };
        // The calls' stratum sums to the cards row; the two Aino
        // conversations are not in it: alone under k, they are withheld,
        // and the strata's total too (it minus the calls would give them).
        let r = report(vec![st("cards", PHONE, 20), st("cards", "aino_chatbot", 2)]).suppress(5);
        assert!(!r.strata[0].suppressed && r.strata[1].suppressed);
        assert_eq!(r.strata[1].channel, "aino_chatbot");
        assert!(r.strata_total.suppressed && !r.topics[0].suppressed);
        let r = report(vec![st("cards", PHONE, 20), st("cards", "aino_chatbot", 6)]).suppress(5);
        assert!(r.strata.iter().all(|s| !s.suppressed) && !r.strata_total.suppressed);
        assert_eq!(
            conversation_stratum("cards", "unspecified", "nb", "aino_chatbot"),
            "cards|unspecified|nb|aino_chatbot"
        );
    }

    #[test]
    fn strata_keys_hold_the_detected_language_and_the_failure() {
        assert_eq!(stratum("cards", "markets", "nb", false), "cards|markets|nb|asr-ok");
        assert_eq!(stratum(NO_TOPIC, "markets", "und", true), "none|markets|und|asr-failed");
    }

    #[test]
    fn days_must_be_iso() {
        assert!(check_day("2026-02-03").is_ok());
        for bad in ["2026-2-03", "20260203", "2026-02-03'", "' OR 1=1 --", ""] {
            assert!(check_day(bad).is_err(), "{bad}");
        }
    }
}
