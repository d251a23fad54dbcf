//! The topic dashboard for internal reporting (R5; issue 6 item 6): rows of
//! (day, desk, topic) in, tables with small counts suppressed out, as CSV
//! ([`to_csv`]) and as a server-rendered SVG chart ([`svg_chart`]). Pure: no
//! IO and no clock (the day the dashboard is drawn comes in the [`Filter`]),
//! so the page, the CSV export and the tests see the same numbers.
//!
//! # What is published
//!
//! [`aggregate`] publishes two tables over the filter's range:
//!
//! - `by_period`: topic × period (days, or ISO 8601 weeks such as `2026-W48`)
//!   for the filter's desk or for all desks, with a total per topic, per
//!   period and overall. Every period of the range is present, zeros included.
//! - `by_desk`: desk × topic over the whole range, always for **all** desks
//!   (so the caller passes the rows of every desk), with a total per desk,
//!   per topic and overall.
//!
//! # Channels
//!
//! Calls and conversations (issue 17) are counted in one dashboard, with the
//! channel as a dimension ([`CHANNELS`]: `phone` for calls, then the
//! conversation channels). The filter's [`Breakdown`] says which of desk
//! and channel is the second table's dimension: with [`Breakdown::Desk`]
//! (the default) a channel filter keeps only that channel's rows and the
//! tables are as above; with [`Breakdown::Channel`] `by_desk` is channel ×
//! topic, the channel filter slices `by_period` as the desk filter does
//! otherwise, and a desk filter keeps only that desk's rows. Either way the
//! tables are those of a subset of the rows, so everything below holds
//! unchanged.
//!
//! Every published number is a count of one cell of the cube
//! (period or whole range) × (desk or all desks) × (topic or all topics); the
//! two tables share some of them (with a desk filter, the topic totals of
//! `by_period` are that desk's row of `by_desk`; without one, they are
//! `by_desk`'s topic totals), and a shared number is one value, suppressed in
//! both places or in neither. The trend per topic (last complete period
//! against the one before) is derived from published cells only.
//!
//! # Suppression
//!
//! A count is a number of KI calls with a topic, so a count of 1..k-1 could
//! single out a customer or an advisor. The scheme:
//!
//! 1. **Primary**: every count in `1..k` (cells and totals alike) is
//!    suppressed. A zero is published: it says nobody, so it singles out
//!    nobody, and hiding zeros would hide most of a sparse day view.
//! 2. **Secondary**: no suppressed number may be recoverable exactly from the
//!    published ones by any combination of the tables' sums — not just one
//!    row minus its published cells, but also chains across rows, columns and
//!    both tables. All the sums of both tables, with the shared numbers
//!    identified, reduce (after dropping the redundant ones) to flow
//!    conservation on a graph: one node per independent sum, one edge per
//!    published number. A set of unknown edges in such a system determines an
//!    edge exactly if and only if the edge is a bridge of the unknowns'
//!    subgraph (the null space of an incidence matrix is its cycle space). So
//!    while some suppressed number is a bridge, the cheapest path between its
//!    ends over non-zero numbers (already suppressed ones cost nothing,
//!    published ones cost their value, so small cells are chosen first) is
//!    suppressed too, closing a cycle through it. Adding suppressions never
//!    creates a bridge, so this ends; and a non-zero count is never a bridge
//!    of the non-zero counts (a circulation carries nothing across a bridge),
//!    so a path always exists. Zeros are never suppressed, so each line with
//!    a suppressed number has at least two, each at least 1: a line's
//!    published total minus its published cells never equals one of them.
//!
//! All suppressed numbers share one marker, [`SUPPRESSED`]: `<k` would be
//! false for a secondary suppression (which may be large) and, used for the
//! primary ones only, would tell a reader which hidden numbers are the small
//! ones. The choice is deterministic (same rows, same filter, same output),
//! so asking again does not reveal a different complement.
//!
//! **Not covered** (decide at the page): exact recovery is prevented, but the
//! sums still bound a hidden number (interval disclosure; non-negativity can
//! narrow it), and two queries over overlapping ranges or different desks
//! can be subtracted from each other (a day dropped from a range reveals that
//! day's counts). Restricting the ranges offered, or auditing the queries, is
//! the page's part.

pub use opptak_domain::time::Day;
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::fmt::{self, Write as _};

/// The default suppression threshold: counts below it are not published.
pub const DEFAULT_K: u32 = 5;
/// The smallest threshold accepted: `k = 1` would suppress nothing.
pub const MIN_K: u32 = 2;
/// The most periods one dashboard covers (a year of days, seven of weeks):
/// beyond it the chart is unreadable and the suppression search slow.
pub const MAX_PERIODS: usize = 366;
/// What a suppressed number shows, in the tables and in the CSV (the symbol
/// Statistics Norway uses for numbers withheld for confidentiality).
pub const SUPPRESSED: &str = ":";
/// The desk or topic of a total over all desks or all topics (CSV).
pub const ALL: &str = "(all)";
/// The chart draws at most this many topics (the largest by published
/// total): more lines than colours cannot be told apart.
pub const CHART_TOPICS: usize = 8;

/// One drafted KI call (or analysed conversation) and one of its topics (a
/// call with three topics is three rows), as the store reads it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicRow {
    /// `YYYY-MM-DD`, UTC.
    pub day: String,
    pub desk: String,
    /// One of [`CHANNELS`].
    pub channel: String,
    pub topic: String,
}

impl From<opptak_store::reporting::TopicRow> for TopicRow {
    fn from(r: opptak_store::reporting::TopicRow) -> Self {
        TopicRow {
            day: r.day,
            desk: r.desk,
            channel: r.channel,
            topic: r.topic,
        }
    }
}

/// The channels, calls first: `phone`, then the conversation channels.
pub const CHANNELS: [&str; 5] = ["phone", "aino_chatbot", "advisor_chat", "secure_message", "email"];

/// A channel's name for people (`nb` or `en`); an unknown id as it is.
pub fn channel_label<'a>(channel: &'a str, lang: &str) -> &'a str {
    let en = lang == "en";
    match (channel, en) {
        ("phone", false) => "Telefon",
        ("phone", true) => "Phone",
        ("aino_chatbot", false) => "Chat med Aino",
        ("aino_chatbot", true) => "Chat with Aino",
        ("advisor_chat", false) => "Chat med rådgiver",
        ("advisor_chat", true) => "Chat with an advisor",
        ("secure_message", false) => "Sikker melding",
        ("secure_message", true) => "Secure message",
        ("email", false) => "E-post",
        ("email", true) => "E-mail",
        (other, _) => other,
    }
}

/// The dimension of the dashboard's second table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Breakdown {
    #[default]
    Desk,
    Channel,
}

impl Breakdown {
    /// `desk` or `channel` (as in a query string).
    pub fn parse(s: &str) -> Result<Breakdown, DashboardError> {
        match s {
            "desk" => Ok(Breakdown::Desk),
            "channel" => Ok(Breakdown::Channel),
            _ => Err(DashboardError::InvalidBreakdown(s.to_owned())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Breakdown::Desk => "desk",
            Breakdown::Channel => "channel",
        }
    }
}

/// Why a dashboard cannot be drawn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DashboardError {
    /// Not a `YYYY-MM-DD` calendar date.
    InvalidDay(String),
    /// Neither `day` nor `week`.
    InvalidPeriod(String),
    /// Neither `desk` nor `channel`.
    InvalidBreakdown(String),
    /// `from` after `to`.
    EmptyRange { from: Day, to: Day },
    /// The range has more periods than [`MAX_PERIODS`].
    TooManyPeriods { periods: usize, max: usize },
    /// `k` below [`MIN_K`].
    KTooSmall { k: u32, min: u32 },
    /// A row from the store whose day is not a date (a bug in the query).
    InvalidRow { day: String },
}

impl From<opptak_domain::time::InvalidDay> for DashboardError {
    fn from(e: opptak_domain::time::InvalidDay) -> Self {
        Self::InvalidDay(e.0)
    }
}

impl fmt::Display for DashboardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidDay(s) => write!(f, "invalid day {s:?} (YYYY-MM-DD expected)"),
            Self::InvalidPeriod(s) => write!(f, "invalid period {s:?} (day or week expected)"),
            Self::InvalidBreakdown(s) => write!(f, "invalid breakdown {s:?} (desk or channel expected)"),
            Self::EmptyRange { from, to } => write!(f, "empty range: {from} is after {to}"),
            Self::TooManyPeriods { periods, max } => {
                write!(f, "range of {periods} periods, at most {max} allowed")
            }
            Self::KTooSmall { k, min } => write!(f, "suppression threshold k = {k}, at least {min} required"),
            Self::InvalidRow { day } => write!(f, "topic row with invalid day {day:?}"),
        }
    }
}

impl std::error::Error for DashboardError {}

/// The columns of the topic × period table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Period {
    Day,
    /// ISO 8601 weeks, Monday to Sunday.
    Week,
}

impl Period {
    /// `day` or `week` (as in a query string).
    pub fn parse(s: &str) -> Result<Period, DashboardError> {
        match s {
            "day" => Ok(Period::Day),
            "week" => Ok(Period::Week),
            _ => Err(DashboardError::InvalidPeriod(s.to_owned())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Week => "week",
        }
    }
}

/// What the dashboard shows: a range of days (inclusive), the periods it is
/// cut into, optionally one desk and one channel, the second table's
/// dimension, and the suppression threshold `k`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    from: Day,
    to: Day,
    desk: Option<String>,
    channel: Option<String>,
    breakdown: Breakdown,
    period: Period,
    k: u32,
    today: Day,
}

impl Filter {
    /// A filter over `from..=to` for all desks with `k` = [`DEFAULT_K`].
    /// With [`Period::Week`] the range widens to whole weeks (Monday of
    /// `from`'s week to Sunday of `to`'s), so no week is counted in part;
    /// query the store with [`Filter::first_day`] and [`Filter::last_day`].
    /// `today` (UTC, from the injected clock) decides which periods are
    /// complete: those that ended before it.
    pub fn new(from: Day, to: Day, period: Period, today: Day) -> Result<Filter, DashboardError> {
        if from > to {
            return Err(DashboardError::EmptyRange { from, to });
        }
        let (from, to) = match period {
            Period::Day => (from, to),
            Period::Week => (from.monday(), to.monday().plus(6)),
        };
        let days = (to.days_since_epoch() - from.days_since_epoch() + 1) as usize;
        let periods = match period {
            Period::Day => days,
            Period::Week => days / 7,
        };
        if periods > MAX_PERIODS {
            return Err(DashboardError::TooManyPeriods {
                periods,
                max: MAX_PERIODS,
            });
        }
        Ok(Filter {
            from,
            to,
            desk: None,
            channel: None,
            breakdown: Breakdown::Desk,
            period,
            k: DEFAULT_K,
            today,
        })
    }

    /// Only this desk in the topic × period table (`None` or `""`: all desks).
    pub fn with_desk(mut self, desk: Option<String>) -> Filter {
        self.desk = desk.filter(|d| !d.is_empty());
        self
    }

    /// Only this channel (`None` or `""`: all channels; module docs).
    pub fn with_channel(mut self, channel: Option<String>) -> Filter {
        self.channel = channel.filter(|c| !c.is_empty());
        self
    }

    /// The second table's dimension (module docs).
    pub fn with_breakdown(mut self, breakdown: Breakdown) -> Filter {
        self.breakdown = breakdown;
        self
    }

    /// The suppression threshold: counts in `1..k` are not published.
    pub fn with_k(mut self, k: u32) -> Result<Filter, DashboardError> {
        if k < MIN_K {
            return Err(DashboardError::KTooSmall { k, min: MIN_K });
        }
        self.k = k;
        Ok(self)
    }

    /// The first day counted (a Monday for weeks).
    pub fn first_day(&self) -> Day {
        self.from
    }

    /// The last day counted (a Sunday for weeks).
    pub fn last_day(&self) -> Day {
        self.to
    }

    pub fn desk(&self) -> Option<&str> {
        self.desk.as_deref()
    }

    pub fn channel(&self) -> Option<&str> {
        self.channel.as_deref()
    }

    pub fn breakdown(&self) -> Breakdown {
        self.breakdown
    }

    /// The filter in the second table's dimension (it slices `by_period`).
    pub fn slice(&self) -> Option<&str> {
        match self.breakdown {
            Breakdown::Desk => self.desk(),
            Breakdown::Channel => self.channel(),
        }
    }

    /// The filter in the other dimension (it keeps only its rows).
    fn only(&self) -> Option<&str> {
        match self.breakdown {
            Breakdown::Desk => self.channel(),
            Breakdown::Channel => self.desk(),
        }
    }

    /// The row's value in the second table's dimension, and in the other.
    fn dimensions<'a>(&self, row: &'a TopicRow) -> (&'a str, &'a str) {
        match self.breakdown {
            Breakdown::Desk => (row.desk.as_str(), row.channel.as_str()),
            Breakdown::Channel => (row.channel.as_str(), row.desk.as_str()),
        }
    }

    pub fn period(&self) -> Period {
        self.period
    }

    pub fn k(&self) -> u32 {
        self.k
    }

    pub fn today(&self) -> Day {
        self.today
    }

    /// The whole range as an ISO 8601 interval, `2026-11-02/2026-11-29`.
    pub fn range_label(&self) -> String {
        format!("{}/{}", self.from, self.to)
    }

    /// Every period of the range, in order.
    pub fn periods(&self) -> Vec<PeriodInfo> {
        let step = match self.period {
            Period::Day => 1,
            Period::Week => 7,
        };
        (self.from.days_since_epoch()..=self.to.days_since_epoch())
            .step_by(step)
            .map(|first| {
                let first = Day::from_days_since_epoch(first);
                let last = first.plus(step as i64 - 1);
                let label = match self.period {
                    Period::Day => first.to_string(),
                    Period::Week => first.week_label(),
                };
                PeriodInfo {
                    label,
                    first,
                    last,
                    complete: last < self.today,
                }
            })
            .collect()
    }

    fn period_index(&self, day: Day) -> usize {
        let offset = (day.days_since_epoch() - self.from.days_since_epoch()) as usize;
        match self.period {
            Period::Day => offset,
            Period::Week => offset / 7,
        }
    }
}

/// One column of the topic × period table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeriodInfo {
    /// `2026-11-28` or `2026-W48`.
    pub label: String,
    pub first: Day,
    pub last: Day,
    /// Ended before the filter's `today`: no more calls will come.
    pub complete: bool,
}

/// A published number, or [`SUPPRESSED`]. A suppressed cell carries no value:
/// nothing downstream of [`aggregate`] can leak it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cell {
    Count(u64),
    Suppressed,
}

impl Cell {
    pub fn count(self) -> Option<u64> {
        match self {
            Cell::Count(n) => Some(n),
            Cell::Suppressed => None,
        }
    }

    pub fn is_suppressed(self) -> bool {
        self == Cell::Suppressed
    }
}

impl fmt::Display for Cell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cell::Count(n) => write!(f, "{n}"),
            Cell::Suppressed => f.write_str(SUPPRESSED),
        }
    }
}

/// A two-way table with its totals, every number already suppressed as needed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    pub rows: Vec<String>,
    pub columns: Vec<String>,
    /// `cells[row][column]`.
    pub cells: Vec<Vec<Cell>>,
    /// One per row: the sum over the columns.
    pub row_totals: Vec<Cell>,
    /// One per column: the sum over the rows.
    pub column_totals: Vec<Cell>,
    pub total: Cell,
}

/// A topic's last complete period against the one before.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trend {
    pub topic: String,
    pub previous: Cell,
    pub last: Cell,
    /// `last - previous`; `None` ("n/a") when either is suppressed.
    pub change: Option<i64>,
}

/// Everything the dashboard page shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dashboard {
    pub filter: Filter,
    pub periods: Vec<PeriodInfo>,
    /// Rows: topics (sorted); columns: period labels. For the filter's desk
    /// or all desks.
    pub by_period: Table,
    /// Rows: desks (sorted, every desk with a call in the range, and the
    /// filter's desk), or channels by [`Breakdown::Channel`]; columns:
    /// topics, as `by_period`'s rows. Whole range.
    pub by_desk: Table,
    /// Indices into `periods` of the two periods compared by `trends`
    /// (previous, last): the last complete period and the one before it.
    /// `None` when the range has fewer than two complete periods.
    pub trend_periods: Option<(usize, usize)>,
    /// One per topic, as `by_period`'s rows; empty without `trend_periods`.
    pub trends: Vec<Trend>,
}

impl Dashboard {
    /// The desk (or channel, by [`Breakdown::Channel`]) of `by_period`:
    /// the filter's, or [`ALL`].
    pub fn slice_desk(&self) -> &str {
        self.filter.slice().unwrap_or(ALL)
    }

    /// What the marker means, for the page's legend.
    pub fn suppression_note(&self, lang: &str) -> String {
        let k = self.filter.k;
        if lang == "en" {
            format!(
                "{SUPPRESSED} = not shown: fewer than {k} calls, or hidden so that a small number \
                 cannot be worked out from the totals"
            )
        } else {
            format!(
                "{SUPPRESSED} = vises ikke: færre enn {k} samtaler, eller skjult for at et lite tall \
                 ikke skal kunne regnes ut av summene"
            )
        }
    }
}

/// Counts the rows of `filter`'s range into the two tables and suppresses
/// what could single someone out (see the module docs). Pass the rows of
/// every desk: the desk × topic table covers all of them. Rows outside the
/// range are ignored; a row whose day is not a date is an error.
pub fn aggregate(rows: &[TopicRow], filter: &Filter) -> Result<Dashboard, DashboardError> {
    let periods = filter.periods();
    let np = periods.len();
    let mut kept = Vec::with_capacity(rows.len());
    for row in rows {
        let day: Day = row
            .day
            .parse()
            .map_err(|_| DashboardError::InvalidRow { day: row.day.clone() })?;
        let (dimension, other) = filter.dimensions(row);
        if day >= filter.from && day <= filter.to && filter.only().is_none_or(|o| o == other) {
            kept.push((filter.period_index(day), dimension, row.topic.as_str()));
        }
    }
    let topics: Vec<&str> = kept.iter().map(|r| r.2).collect::<BTreeSet<_>>().into_iter().collect();
    let mut desk_set: BTreeSet<&str> = kept.iter().map(|r| r.1).collect();
    if let Some(d) = filter.slice() {
        desk_set.insert(d);
    }
    let desks: Vec<&str> = desk_set.into_iter().collect();
    let topic_of: HashMap<&str, usize> = topics.iter().enumerate().map(|(i, t)| (*t, i)).collect();
    let desk_of: HashMap<&str, usize> = desks.iter().enumerate().map(|(i, d)| (*d, i)).collect();
    let (nt, nd) = (topics.len(), desks.len());

    let mut cube = vec![0u64; nt * np * nd];
    for (p, d, t) in &kept {
        cube[(topic_of[t] * np + p) * nd + desk_of[d]] += 1;
    }
    let at = |t: usize, p: usize, d: usize| cube[(t * np + p) * nd + d];
    let slice = filter.slice().map(|d| desk_of[d]);
    let x = |t: usize, p: usize| match slice {
        Some(s) => at(t, p, s),
        None => (0..nd).map(|d| at(t, p, d)).sum(),
    };
    let y = |d: usize, t: usize| (0..np).map(|p| at(t, p, d)).sum::<u64>();

    // The graph of the sums (module docs). Nodes: ground, one per topic row
    // of by_period (A), one per period column (B), by_period's totals column
    // (C), one per topic column of by_desk (D), one per desk row (E), and
    // by_desk's desk-totals column (F, used with a desk filter). With a desk
    // filter, C is that desk's row of by_desk, so its E is left unused.
    // Interior cells are added first: bridges are mended in edge order, and a
    // small cell should pick its complement before a total does.
    const GROUND: usize = 0;
    let node_a = |t: usize| 1 + t;
    let node_b = |p: usize| 1 + nt + p;
    let node_c = 1 + nt + np;
    let node_d = |t: usize| 2 + nt + np + t;
    let node_e = |d: usize| 2 + 2 * nt + np + d;
    let node_f = 2 + 2 * nt + np + nd;
    let mut g = Graph::new(3 + 2 * nt + np + nd);

    let xs: Vec<Vec<usize>> = (0..nt)
        .map(|t| (0..np).map(|p| g.add(node_a(t), node_b(p), x(t, p))).collect())
        .collect();
    let mut ys: Vec<Vec<Option<usize>>> = vec![vec![None; nt]; nd];
    for (d, row) in ys.iter_mut().enumerate() {
        if Some(d) != slice {
            for (t, e) in row.iter_mut().enumerate() {
                *e = Some(g.add(node_d(t), node_e(d), y(d, t)));
            }
        }
    }
    let row_tot: Vec<usize> = (0..nt)
        .map(|t| g.add(node_a(t), node_d(t), (0..np).map(|p| x(t, p)).sum()))
        .collect();
    let col_tot: Vec<usize> = (0..np)
        .map(|p| g.add(node_b(p), node_c, (0..nt).map(|t| x(t, p)).sum()))
        .collect();
    let slice_total: u64 = (0..nt)
        .flat_map(|t| (0..np).map(move |p| (t, p)))
        .map(|(t, p)| x(t, p))
        .sum();
    let desk_total = |d: usize| (0..nt).map(|t| y(d, t)).sum::<u64>();
    let (desk_tot, topic_tot, grand, slice_grand): (Vec<usize>, Vec<usize>, usize, usize) = match slice {
        None => {
            let desk_tot = (0..nd).map(|d| g.add(node_e(d), GROUND, desk_total(d))).collect();
            let grand = g.add(node_c, GROUND, slice_total);
            (desk_tot, row_tot.clone(), grand, grand)
        }
        Some(s) => {
            let slice_grand = g.add(node_c, node_f, slice_total);
            let desk_tot = (0..nd)
                .map(|d| {
                    if d == s {
                        slice_grand
                    } else {
                        g.add(node_e(d), node_f, desk_total(d))
                    }
                })
                .collect();
            let topic_tot = (0..nt)
                .map(|t| g.add(node_d(t), GROUND, (0..nd).map(|d| y(d, t)).sum()))
                .collect();
            let grand = g.add(node_f, GROUND, (0..nd).map(desk_total).sum());
            (desk_tot, topic_tot, grand, slice_grand)
        }
    };
    g.protect(u64::from(filter.k));

    let cells = |edges: &[usize]| edges.iter().map(|&e| g.cell(e)).collect::<Vec<_>>();
    let by_period = Table {
        rows: topics.iter().map(|t| (*t).to_owned()).collect(),
        columns: periods.iter().map(|p| p.label.clone()).collect(),
        cells: xs.iter().map(|row| cells(row)).collect(),
        row_totals: cells(&row_tot),
        column_totals: cells(&col_tot),
        total: g.cell(slice_grand),
    };
    let by_desk = Table {
        rows: desks.iter().map(|d| (*d).to_owned()).collect(),
        columns: by_period.rows.clone(),
        cells: ys
            .iter()
            .map(|row| row.iter().zip(&row_tot).map(|(e, r)| g.cell(e.unwrap_or(*r))).collect())
            .collect(),
        row_totals: cells(&desk_tot),
        column_totals: cells(&topic_tot),
        total: g.cell(grand),
    };

    let trend_periods = periods
        .iter()
        .rposition(|p| p.complete)
        .filter(|&last| last > 0)
        .map(|last| (last - 1, last));
    let trends = match trend_periods {
        None => Vec::new(),
        Some((prev, last)) => (0..nt)
            .map(|t| {
                let (previous, last) = (by_period.cells[t][prev], by_period.cells[t][last]);
                let change = match (previous, last) {
                    (Cell::Count(a), Cell::Count(b)) => Some(b as i64 - a as i64),
                    _ => None,
                };
                Trend {
                    topic: by_period.rows[t].clone(),
                    previous,
                    last,
                    change,
                }
            })
            .collect(),
    };

    Ok(Dashboard {
        filter: filter.clone(),
        periods,
        by_period,
        by_desk,
        trend_periods,
        trends,
    })
}

/// One published number: an edge between the two sums it takes part in.
struct Edge {
    a: usize,
    b: usize,
    value: u64,
    suppressed: bool,
}

struct Graph {
    nodes: usize,
    edges: Vec<Edge>,
}

impl Graph {
    fn new(nodes: usize) -> Graph {
        Graph {
            nodes,
            edges: Vec::new(),
        }
    }

    fn add(&mut self, a: usize, b: usize, value: u64) -> usize {
        self.edges.push(Edge {
            a,
            b,
            value,
            suppressed: false,
        });
        self.edges.len() - 1
    }

    fn cell(&self, e: usize) -> Cell {
        let edge = &self.edges[e];
        if edge.suppressed {
            Cell::Suppressed
        } else {
            Cell::Count(edge.value)
        }
    }

    /// Primary suppression of `1..k`, then secondary suppression until no
    /// suppressed number is a bridge of the suppressed ones.
    fn protect(&mut self, k: u64) {
        for e in &mut self.edges {
            e.suppressed = e.value > 0 && e.value < k;
        }
        // Zeros are published, so paths only use non-zero numbers.
        let mut adjacency = vec![Vec::new(); self.nodes];
        for (i, e) in self.edges.iter().enumerate().filter(|(_, e)| e.value > 0) {
            adjacency[e.a].push((e.b, i));
            adjacency[e.b].push((e.a, i));
        }
        loop {
            let bridges = self.bridges();
            if bridges.is_empty() {
                return;
            }
            // A bridge mended earlier in this round costs nothing again: a
            // path of suppressed numbers already joins its ends.
            for e in bridges {
                match self.cheapest_path(&adjacency, e) {
                    Some(path) => path.into_iter().for_each(|p| self.edges[p].suppressed = true),
                    None => {
                        // Cannot happen (a non-zero number is never a bridge
                        // of the non-zero numbers); should it, publishing only
                        // the zeros is still safe.
                        debug_assert!(false, "no complement for a suppressed count");
                        self.edges.iter_mut().for_each(|e| e.suppressed |= e.value > 0);
                        return;
                    }
                }
            }
        }
    }

    /// The suppressed edges that are bridges of the suppressed subgraph
    /// (Tarjan's low-link, iterative: a year of days makes deep searches).
    fn bridges(&self) -> Vec<usize> {
        let n = self.nodes;
        let mut adjacency = vec![Vec::new(); n];
        for (i, e) in self.edges.iter().enumerate().filter(|(_, e)| e.suppressed) {
            adjacency[e.a].push((e.b, i));
            adjacency[e.b].push((e.a, i));
        }
        const UNSEEN: usize = usize::MAX;
        let (mut disc, mut low) = (vec![UNSEEN; n], vec![0; n]);
        let mut time = 0;
        let mut out = Vec::new();
        for root in 0..n {
            if disc[root] != UNSEEN || adjacency[root].is_empty() {
                continue;
            }
            disc[root] = time;
            low[root] = time;
            time += 1;
            // (node, edge it was reached by, next neighbour to look at)
            let mut stack = vec![(root, UNSEEN, 0usize)];
            while let Some(&(v, via, i)) = stack.last() {
                if let Some(&(w, e)) = adjacency[v].get(i) {
                    if let Some(top) = stack.last_mut() {
                        top.2 += 1;
                    }
                    if e == via {
                        continue;
                    }
                    if disc[w] == UNSEEN {
                        disc[w] = time;
                        low[w] = time;
                        time += 1;
                        stack.push((w, e, 0));
                    } else {
                        low[v] = low[v].min(disc[w]);
                    }
                } else {
                    stack.pop();
                    if let Some(&(u, _, _)) = stack.last() {
                        low[u] = low[u].min(low[v]);
                        if low[v] > disc[u] {
                            out.push(via);
                        }
                    }
                }
            }
        }
        out.sort_unstable();
        out
    }

    /// The cheapest path between `skip`'s ends not using `skip`, over
    /// non-zero edges: suppressed ones cost nothing, published ones their
    /// value (Dijkstra; ties go to the lower node, so the choice is stable).
    fn cheapest_path(&self, adjacency: &[Vec<(usize, usize)>], skip: usize) -> Option<Vec<usize>> {
        let (from, to) = (self.edges[skip].a, self.edges[skip].b);
        let mut dist = vec![u64::MAX; self.nodes];
        let mut via = vec![usize::MAX; self.nodes];
        let mut heap = BinaryHeap::new();
        dist[from] = 0;
        heap.push(Reverse((0u64, from)));
        while let Some(Reverse((d, v))) = heap.pop() {
            if v == to {
                break;
            }
            if d > dist[v] {
                continue;
            }
            for &(w, e) in &adjacency[v] {
                if e == skip {
                    continue;
                }
                let edge = &self.edges[e];
                let nd = d + if edge.suppressed { 0 } else { edge.value };
                if nd < dist[w] {
                    dist[w] = nd;
                    via[w] = e;
                    heap.push(Reverse((nd, w)));
                }
            }
        }
        if dist[to] == u64::MAX {
            return None;
        }
        let mut path = Vec::new();
        let mut v = to;
        while v != from {
            let e = via[v];
            path.push(e);
            v = if self.edges[e].a == v {
                self.edges[e].b
            } else {
                self.edges[e].a
            };
        }
        Some(path)
    }
}

/// The dashboard as tidy CSV (RFC 4180, CRLF): `period,desk,topic,count`
/// (`period,channel,topic,count` by [`Breakdown::Channel`]), one line per
/// published number, each once. `period` is a period label or the whole
/// range (`2026-11-02/2026-11-29`); `desk` (`channel`) and `topic` are
/// [`ALL`] for totals; `count` is a number or [`SUPPRESSED`].
pub fn to_csv(d: &Dashboard) -> String {
    let mut out = format!("period,{},topic,count\r\n", d.filter.breakdown().as_str());
    let mut line = |period: &str, desk: &str, topic: &str, cell: Cell| {
        let _ = write!(
            out,
            "{},{},{},{cell}\r\n",
            crate::csv::field(period),
            crate::csv::field(desk),
            crate::csv::field(topic)
        );
    };
    let range = d.filter.range_label();
    let slice = d.slice_desk();
    let (t1, t2) = (&d.by_period, &d.by_desk);
    for (topic, row) in t1.rows.iter().zip(&t1.cells) {
        for (period, &cell) in t1.columns.iter().zip(row) {
            line(period, slice, topic, cell);
        }
    }
    for (period, &cell) in t1.columns.iter().zip(&t1.column_totals) {
        line(period, slice, ALL, cell);
    }
    // by_period's topic totals and grand total are numbers of by_desk (module
    // docs), written there.
    for ((desk, row), &total) in t2.rows.iter().zip(&t2.cells).zip(&t2.row_totals) {
        for (topic, &cell) in t2.columns.iter().zip(row) {
            line(&range, desk, topic, cell);
        }
        line(&range, desk, ALL, total);
    }
    for (topic, &cell) in t2.columns.iter().zip(&t2.column_totals) {
        line(&range, ALL, topic, cell);
    }
    line(&range, ALL, ALL, t2.total);
    out
}

/// Text for XML content and attribute values.
fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Not allowed in XML 1.0 at all.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Line colours, each at least 3:1 against white (WCAG 2.1, 1.4.11), from
/// the Okabe–Ito colour-blind-safe set darkened where it fell short; each
/// line also has its own dash pattern, so colour is never the only cue.
const PALETTE: [&str; CHART_TOPICS] = [
    "#0072B2", "#D55E00", "#007A5E", "#B4457F", "#000000", "#8C510A", "#5E3C99", "#A6761D",
];
const DASHES: [&str; CHART_TOPICS] = ["none", "8 4", "2 3", "10 3 2 3", "5 5", "12 4", "2 6", "6 2 2 2 2 2"];

/// Up to [`CHART_TOPICS`] topics (indices into `by_period.rows`), the
/// largest by published total first; topics with a suppressed total come
/// after, by name, so the order never depends on a hidden number.
fn chart_topics(d: &Dashboard) -> Vec<usize> {
    let t = &d.by_period;
    let mut topics: Vec<usize> = (0..t.rows.len()).collect();
    topics.sort_by_key(|&i| match t.row_totals[i] {
        Cell::Count(n) => (0, Reverse(n), i),
        Cell::Suppressed => (1, Reverse(0), i),
    });
    topics.truncate(CHART_TOPICS);
    topics
}

/// Axis top and tick step: ticks of 1, 2 or 5 × 10ⁿ, at most about five.
fn nice_scale(max: u64) -> (u64, u64) {
    let raw = max.div_ceil(5).max(1);
    let mut magnitude = 1;
    while magnitude * 10 <= raw {
        magnitude *= 10;
    }
    let step = [1, 2, 5, 10]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|&s| s >= raw)
        .unwrap_or(10 * magnitude);
    (max.div_ceil(step).max(1) * step, step)
}

/// A line chart of the topic × period table: one line per topic (the
/// largest [`CHART_TOPICS`]), broken where a number is suppressed, with a
/// hatched mark under the axis at each period with a suppressed number, and
/// the periods not over yet on a grey band.
/// `lang` is `nb` (the default) or `en`. Accessible as an image: `role="img"`,
/// an `aria-label`, `<title>` and `<desc>`; every text is XML-escaped. The
/// numbers themselves are in the page's table.
pub fn svg_chart(d: &Dashboard, lang: &str) -> String {
    let en = lang == "en";
    let tr = |nb: &'static str, en_text: &'static str| if en { en_text } else { nb };
    const W: f64 = 880.0;
    const H: f64 = 420.0;
    const LEFT: f64 = 64.0;
    const RIGHT: f64 = 240.0;
    const TOP: f64 = 52.0;
    const BOTTOM: f64 = 104.0;
    let (plot_w, plot_h) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let (axis_y, plot_right) = (TOP + plot_h, LEFT + plot_w);
    let t = &d.by_period;
    let series = chart_topics(d);
    let np = d.periods.len();
    let max = series
        .iter()
        .flat_map(|&i| t.cells[i].iter().filter_map(|c| c.count()))
        .max()
        .unwrap_or(0);
    let (top, step) = nice_scale(max);
    let x_at = |i: usize| {
        if np <= 1 {
            LEFT + plot_w / 2.0
        } else {
            LEFT + plot_w * i as f64 / (np - 1) as f64
        }
    };
    let y_at = |v: u64| axis_y - plot_h * v as f64 / top as f64;

    let per = match (d.filter.period, en) {
        (Period::Day, false) => "Emner per dag",
        (Period::Day, true) => "Topics per day",
        (Period::Week, false) => "Emner per uke",
        (Period::Week, true) => "Topics per week",
    };
    let desk = match d.filter.desk() {
        Some(desk) => format!("{} {desk}", tr("avdeling", "desk")),
        None => tr("alle avdelinger", "all desks").to_owned(),
    };
    let desk = match d.filter.channel() {
        Some(channel) => format!("{desk}, {}", channel_label(channel, lang)),
        None => desk,
    };
    // Dates as the language writes them: 02.11.2026 in Norwegian.
    let date = |day: Day| {
        if en {
            day.to_string()
        } else {
            let (y, m, dd) = opptak_domain::time::civil_from_days(day.days_since_epoch());
            format!("{dd:02}.{m:02}.{y}")
        }
    };
    let title = format!("{per}, {desk}, {} – {}", date(d.filter.from), date(d.filter.to));
    let (shown, all) = (series.len(), t.rows.len());
    let shown = match (all > shown, en) {
        (true, false) => format!("de {shown} største av {all} emner"),
        (true, true) => format!("the {shown} largest of {all} topics"),
        (false, false) => format!("{shown} emner"),
        (false, true) => format!("{shown} topics"),
    };
    let desc = format!(
        "{} {shown} {} {np} {}. {}",
        tr("Linjediagram over", "Line chart of"),
        tr("i", "over"),
        tr("perioder", "periods"),
        tr(
            "Tall som ikke vises av personvernhensyn er brudd i linjen og merket med skravur under aksen. \
             Tallene står i tabellen på siden.",
            "Numbers withheld for privacy are gaps in the line, marked with hatching below the axis. \
             The numbers are in the table on the page."
        ),
    );

    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="{}" font-family="sans-serif" font-size="12" style="max-width:100%;height:auto">"##,
        xml_escape(&title)
    );
    let _ = write!(
        s,
        "<title>{}</title><desc>{}</desc>",
        xml_escape(&title),
        xml_escape(&desc)
    );
    s.push_str(
        r##"<defs><pattern id="opptak-dashboard-hatch" patternUnits="userSpaceOnUse" width="5" height="5" patternTransform="rotate(45)"><rect width="5" height="5" fill="#ffffff"/><line x1="0" y1="0" x2="0" y2="5" stroke="#333333" stroke-width="2"/></pattern></defs>"##,
    );
    let _ = write!(s, r##"<rect width="{W}" height="{H}" fill="#ffffff"/>"##);
    let _ = write!(
        s,
        r##"<text x="{LEFT}" y="26" font-size="16" font-weight="bold" fill="#111111">{}</text>"##,
        xml_escape(&title)
    );

    // Periods still in progress (always the last ones): a grey band, so a
    // drop at the end is not read as a fall.
    if let Some(first) = d.periods.iter().position(|p| !p.complete) {
        let half = if np > 1 {
            plot_w / (np - 1) as f64 / 2.0
        } else {
            plot_w / 2.0
        };
        let x = (x_at(first) - half).max(LEFT);
        let _ = write!(
            s,
            r##"<rect x="{x:.1}" y="{TOP}" width="{:.1}" height="{plot_h}" fill="#ececec"><title>{}</title></rect><text x="{:.1}" y="{:.1}" text-anchor="end" font-size="11" fill="#111111">{}</text>"##,
            plot_right - x,
            tr(
                "Ikke avsluttet: flere samtaler kan komme",
                "Not over yet: more calls may come"
            ),
            plot_right - 4.0,
            TOP + 14.0,
            tr("pågår", "in progress")
        );
    }

    // The value axis: grid lines and labels.
    let mut v = 0;
    while v <= top {
        let y = y_at(v);
        let _ = write!(
            s,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{plot_right}" y2="{y:.1}" stroke="#d0d0d0" stroke-width="1"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#111111">{v}</text>"##,
            LEFT - 6.0,
            y + 4.0
        );
        v += step;
    }
    let _ = write!(
        s,
        r##"<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{axis_y}" stroke="#111111"/><line x1="{LEFT}" y1="{axis_y}" x2="{plot_right}" y2="{axis_y}" stroke="#111111"/>"##
    );
    let _ = write!(
        s,
        r##"<text transform="translate(16 {:.1}) rotate(-90)" text-anchor="middle" fill="#111111">{}</text>"##,
        TOP + plot_h / 2.0,
        tr("Samtaler med emnet", "Calls with the topic")
    );

    // The period axis: at most about twelve labels.
    let every = np.div_ceil(12).max(1);
    for (i, p) in d.periods.iter().enumerate().filter(|(i, _)| i % every == 0) {
        let (x, y) = (x_at(i), axis_y + 26.0);
        let _ = write!(
            s,
            r##"<line x1="{x:.1}" y1="{axis_y}" x2="{x:.1}" y2="{:.1}" stroke="#111111"/><text x="{x:.1}" y="{y:.1}" text-anchor="end" transform="rotate(-35 {x:.1} {y:.1})" fill="#111111">{}</text>"##,
            axis_y + 4.0,
            xml_escape(&p.label)
        );
    }
    let _ = write!(
        s,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#111111">{}</text>"##,
        LEFT + plot_w / 2.0,
        H - 8.0,
        match d.filter.period {
            Period::Day => tr("Dag", "Day"),
            Period::Week => tr("Uke (ISO 8601)", "Week (ISO 8601)"),
        }
    );

    if series.is_empty() {
        let _ = write!(
            s,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#111111">{}</text>"##,
            LEFT + plot_w / 2.0,
            TOP + plot_h / 2.0,
            tr("Ingen samtaler i perioden", "No calls in the period")
        );
    }

    // The lines, broken at suppressed numbers; a point stands alone as a dot.
    let dots = np <= 60;
    for (n, &i) in series.iter().enumerate() {
        let (colour, dash) = (PALETTE[n], DASHES[n]);
        let _ = write!(s, "<g><title>{}</title>", xml_escape(&t.rows[i]));
        let mut path = String::new();
        for (j, cell) in t.cells[i].iter().enumerate() {
            if let Cell::Count(v) = cell {
                let joined = j > 0 && !t.cells[i][j - 1].is_suppressed();
                let _ = write!(
                    path,
                    "{}{:.1} {:.1} ",
                    if joined { "L" } else { "M" },
                    x_at(j),
                    y_at(*v)
                );
            }
        }
        if !path.is_empty() {
            let _ = write!(
                s,
                r##"<path d="{}" fill="none" stroke="{colour}" stroke-width="2" stroke-dasharray="{dash}" stroke-linejoin="round"/>"##,
                path.trim_end()
            );
        }
        for (j, cell) in t.cells[i].iter().enumerate() {
            let alone = |k: Option<usize>| k.and_then(|k| t.cells[i].get(k)).is_none_or(|c| c.is_suppressed());
            if let Cell::Count(v) = cell {
                if dots || (alone(j.checked_sub(1)) && alone(Some(j + 1))) {
                    let _ = write!(
                        s,
                        r##"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{colour}"><title>{}, {}: {v}</title></circle>"##,
                        x_at(j),
                        y_at(*v),
                        xml_escape(&t.rows[i]),
                        xml_escape(&d.periods[j].label)
                    );
                }
            }
        }
        s.push_str("</g>");
    }

    // One hatched mark under the axis per period with a suppressed number.
    let width = (plot_w / np.max(1) as f64).clamp(3.0, 10.0);
    for j in 0..np {
        let hidden: Vec<&str> = series
            .iter()
            .filter(|&&i| t.cells[i][j].is_suppressed())
            .map(|&i| t.rows[i].as_str())
            .collect();
        if !hidden.is_empty() {
            let _ = write!(
                s,
                r##"<rect x="{:.1}" y="{:.1}" width="{width:.1}" height="8" fill="url(#opptak-dashboard-hatch)" stroke="#333333" stroke-width="0.5"><title>{} {}: {}</title></rect>"##,
                x_at(j) - width / 2.0,
                axis_y + 6.0,
                tr("Vises ikke", "Not shown"),
                xml_escape(&d.periods[j].label),
                xml_escape(&hidden.join(", "))
            );
        }
    }

    // The legend: line sample and name (long names shortened, whole in the tooltip).
    let lx = plot_right + 20.0;
    for (n, &i) in series.iter().enumerate() {
        let y = TOP + 8.0 + n as f64 * 22.0;
        let name = &t.rows[i];
        let short: String = if name.chars().count() > 26 {
            name.chars().take(25).chain(['…']).collect()
        } else {
            name.clone()
        };
        let _ = write!(
            s,
            r##"<g><title>{}</title><line x1="{lx:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{}" stroke-width="2" stroke-dasharray="{}"/><text x="{:.1}" y="{:.1}" fill="#111111">{}</text></g>"##,
            xml_escape(name),
            lx + 28.0,
            PALETTE[n],
            DASHES[n],
            lx + 34.0,
            y + 4.0,
            xml_escape(&short)
        );
    }
    let y = TOP + 8.0 + series.len() as f64 * 22.0 + 6.0;
    let _ = write!(
        s,
        r##"<rect x="{lx:.1}" y="{:.1}" width="10" height="8" fill="url(#opptak-dashboard-hatch)" stroke="#333333" stroke-width="0.5"/><text x="{:.1}" y="{:.1}" fill="#111111">{}</text><text x="{:.1}" y="{:.1}" fill="#111111" font-size="11">{}</text>"##,
        y - 4.0,
        lx + 16.0,
        y + 4.0,
        tr("Vises ikke (personvern)", "Not shown (privacy)"),
        lx + 16.0,
        y + 20.0,
        tr("Brudd i linjen: tall vises ikke", "Gap in a line: number not shown"),
    );
    s.push_str("</svg>");
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use opptak_domain::time::days_from_civil;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn day(s: &str) -> Day {
        s.parse().unwrap()
    }

    fn row(d: &str, desk: &str, topic: &str) -> TopicRow {
        TopicRow {
            day: d.to_owned(),
            desk: desk.to_owned(),
            channel: "phone".to_owned(),
            topic: topic.to_owned(),
        }
    }

    /// `n` rows of one channel.
    fn on(out: &mut Vec<TopicRow>, n: usize, d: &str, desk: &str, channel: &str, topic: &str) {
        let mut r = row(d, desk, topic);
        r.channel = channel.to_owned();
        out.extend(std::iter::repeat_n(r, n));
    }

    /// `n` rows of the same day, desk and topic.
    fn rows(out: &mut Vec<TopicRow>, n: usize, d: &str, desk: &str, topic: &str) {
        out.extend(std::iter::repeat_n(row(d, desk, topic), n));
    }

    #[test]
    fn iso_weeks_across_the_new_year() {
        for d in ["2026-12-28", "2026-12-31", "2027-01-01", "2027-01-03"] {
            assert_eq!(day(d).week_label(), "2026-W53", "{d}");
        }
        assert_eq!(day("2027-01-04").week_label(), "2027-W01");
        assert_eq!(day("2026-12-27").week_label(), "2026-W52");
        assert_eq!(day("2026-11-23").week_label(), "2026-W48");
        assert_eq!(day("2024-12-30").week_label(), "2025-W01");
        assert_eq!(day("2021-01-03").week_label(), "2020-W53");
        assert_eq!(day("2021-01-04").week_label(), "2021-W01");
        assert_eq!(day("2010-01-03").week_label(), "2009-W53");
        assert_eq!(day("2008-12-29").week_label(), "2009-W01");
        assert_eq!(day("2026-12-28").iso_weekday(), 1);
        assert_eq!(day("2027-01-03").iso_weekday(), 7);

        // Against the definition: week 1 is the week holding 4 January.
        for n in days_from_civil(1999, 1, 1)..days_from_civil(2032, 1, 1) {
            let d = Day::from_days_since_epoch(n);
            let (year, week) = d.iso_week();
            let week1 = Day::from_days_since_epoch(days_from_civil(year, 1, 4)).monday();
            assert_eq!(d.monday(), week1.plus(7 * (i64::from(week) - 1)), "{d}");
            assert!((1..=53).contains(&week));
        }

        let f = Filter::new(day("2026-12-30"), day("2027-01-05"), Period::Week, day("2027-02-01")).unwrap();
        assert_eq!((f.first_day(), f.last_day()), (day("2026-12-28"), day("2027-01-10")));
        let labels: Vec<String> = f.periods().into_iter().map(|p| p.label).collect();
        assert_eq!(labels, ["2026-W53", "2027-W01"]);
        let rows: Vec<TopicRow> = ["2026-12-28", "2027-01-03", "2027-01-04", "2027-01-10", "2027-01-11"]
            .iter()
            .map(|d| row(d, "markets", "loan"))
            .collect();
        let k2 = f.with_k(2).unwrap();
        let d = aggregate(&rows, &k2).unwrap();
        assert_eq!(d.by_period.cells, [[Cell::Count(2), Cell::Count(2)]]);
        assert_eq!(d.by_period.total, Cell::Count(4), "2027-01-11 is outside the range");
    }

    #[test]
    fn days_parse_strictly() {
        assert_eq!(day("2026-11-28").to_string(), "2026-11-28");
        assert_eq!(day("2028-02-29").days_since_epoch(), days_from_civil(2028, 2, 29));
        for bad in [
            "2026-02-29",
            "2026-13-01",
            "2026-00-10",
            "2026-1-01",
            "2026-11-28T00",
            "26-11-28",
            "",
            "2026/11/28",
            "+026-11-28",
            "2026-11-2x",
        ] {
            assert_eq!(
                bad.parse::<Day>().map_err(DashboardError::from),
                Err(DashboardError::InvalidDay(bad.to_owned())),
                "{bad}"
            );
        }
        assert_eq!(Period::parse("week"), Ok(Period::Week));
        assert!(Period::parse("month").is_err());
    }

    #[test]
    fn filters_are_checked() {
        let today = day("2026-12-01");
        assert_eq!(
            Filter::new(day("2026-11-02"), day("2026-11-01"), Period::Day, today),
            Err(DashboardError::EmptyRange {
                from: day("2026-11-02"),
                to: day("2026-11-01")
            })
        );
        let f = Filter::new(day("2026-01-01"), day("2026-12-31"), Period::Day, today).unwrap();
        assert_eq!(f.periods().len(), 365);
        assert_eq!(
            Filter::new(day("2026-01-01"), day("2027-01-02"), Period::Day, today),
            Err(DashboardError::TooManyPeriods {
                periods: 367,
                max: MAX_PERIODS
            })
        );
        assert!(Filter::new(day("2020-01-01"), day("2026-12-31"), Period::Week, today).is_ok());
        assert_eq!(f.clone().with_k(1), Err(DashboardError::KTooSmall { k: 1, min: MIN_K }));
        assert_eq!(f.k(), DEFAULT_K);
        assert_eq!(f.clone().with_desk(Some(String::new())).desk(), None);
        assert_eq!(f.with_desk(Some("markets".into())).desk(), Some("markets"));
        let bad = [row("2026-11-31", "markets", "loan")];
        let f = Filter::new(day("2026-11-01"), day("2026-11-30"), Period::Day, today).unwrap();
        assert_eq!(
            aggregate(&bad, &f),
            Err(DashboardError::InvalidRow {
                day: "2026-11-31".into()
            })
        );
        assert_eq!(
            DashboardError::InvalidRow { day: "x".into() }.to_string(),
            "topic row with invalid day \"x\""
        );
    }

    /// One small cell (loan on 5 November): its complements are the cheapest
    /// rectangle, the 4 November cells (9 + 7 + 9 = 25 against 27 through
    /// 2 November and 32 through 3 November). Zeros are shown.
    #[test]
    fn worked_example() {
        let mut input = Vec::new();
        for (d, loan, savings) in [
            ("2026-11-02", 10, 8),
            ("2026-11-03", 12, 11),
            ("2026-11-04", 9, 7),
            ("2026-11-05", 2, 9),
        ] {
            rows(&mut input, loan, d, "markets", "loan");
            rows(&mut input, savings, d, "markets", "savings");
        }
        rows(&mut input, 3, "2026-11-06", "markets", "loan"); // outside the range
        let f = Filter::new(day("2026-11-02"), day("2026-11-05"), Period::Day, day("2026-11-04")).unwrap();
        let d = aggregate(&input, &f).unwrap();
        use Cell::{Count as C, Suppressed as S};
        assert_eq!(d.by_period.rows, ["loan", "savings"]);
        assert_eq!(d.by_period.cells, [[C(10), C(12), S, S], [C(8), C(11), S, S]]);
        assert_eq!(d.by_period.row_totals, [C(33), C(35)]);
        assert_eq!(d.by_period.column_totals, [C(18), C(23), C(16), C(11)]);
        assert_eq!(d.by_period.total, C(68));
        assert_eq!(d.by_desk.rows, ["markets"]);
        assert_eq!(d.by_desk.cells, [[C(33), C(35)]]);
        assert_eq!(d.trend_periods, Some((0, 1)), "4 November is not over yet");
        assert_eq!(
            d.trends,
            [
                Trend {
                    topic: "loan".into(),
                    previous: C(10),
                    last: C(12),
                    change: Some(2)
                },
                Trend {
                    topic: "savings".into(),
                    previous: C(8),
                    last: C(11),
                    change: Some(3)
                },
            ]
        );
        let csv = "period,desk,topic,count\r\n\
            2026-11-02,(all),loan,10\r\n2026-11-03,(all),loan,12\r\n2026-11-04,(all),loan,:\r\n2026-11-05,(all),loan,:\r\n\
            2026-11-02,(all),savings,8\r\n2026-11-03,(all),savings,11\r\n2026-11-04,(all),savings,:\r\n2026-11-05,(all),savings,:\r\n\
            2026-11-02,(all),(all),18\r\n2026-11-03,(all),(all),23\r\n2026-11-04,(all),(all),16\r\n2026-11-05,(all),(all),11\r\n\
            2026-11-02/2026-11-05,markets,loan,33\r\n2026-11-02/2026-11-05,markets,savings,35\r\n\
            2026-11-02/2026-11-05,markets,(all),68\r\n\
            2026-11-02/2026-11-05,(all),loan,33\r\n2026-11-02/2026-11-05,(all),savings,35\r\n\
            2026-11-02/2026-11-05,(all),(all),68\r\n";
        assert_eq!(to_csv(&d), csv);

        // A zero next to a small count stays a zero, so zeros never close a
        // cycle: loan's 3 on 2 November takes loan's 6 on 3 November and the
        // two days' totals (6 + 6 + 10 = 22), cheaper than going through
        // savings' 7 (7 + 8 + 8 + 6 + 6 = 35).
        let mut input = Vec::new();
        rows(&mut input, 3, "2026-11-02", "markets", "loan");
        rows(&mut input, 6, "2026-11-03", "markets", "loan");
        rows(&mut input, 7, "2026-11-02", "markets", "savings");
        rows(&mut input, 8, "2026-11-04", "markets", "savings");
        let f = Filter::new(day("2026-11-02"), day("2026-11-04"), Period::Day, day("2026-11-04")).unwrap();
        let d = aggregate(&input, &f).unwrap();
        assert_eq!(d.by_period.cells, [[S, S, C(0)], [C(7), C(0), C(8)]]);
        assert_eq!(d.by_period.column_totals, [S, S, C(8)]);
        assert_eq!(
            (d.by_period.row_totals.as_slice(), d.by_period.total),
            ([C(9), C(15)].as_slice(), C(24))
        );
        assert_eq!(
            d.trends[0],
            Trend {
                topic: "loan".into(),
                previous: S,
                last: S,
                change: None
            }
        );
    }

    /// The numbers both tables publish are one number each.
    #[test]
    fn tables_agree_on_shared_numbers() {
        let mut input = Vec::new();
        rows(&mut input, 2, "2026-11-02", "markets", "loan");
        rows(&mut input, 9, "2026-11-03", "markets", "loan");
        rows(&mut input, 7, "2026-11-02", "markets", "savings");
        rows(&mut input, 30, "2026-11-02", "corporate", "loan");
        rows(&mut input, 1, "2026-11-03", "corporate", "pension");
        let f = Filter::new(day("2026-11-02"), day("2026-11-03"), Period::Day, day("2026-11-04")).unwrap();
        let all = aggregate(&input, &f).unwrap();
        assert_eq!(all.by_period.row_totals, all.by_desk.column_totals);
        assert_eq!(all.by_period.total, all.by_desk.total);
        for desk in ["markets", "corporate", "private_banking"] {
            let d = aggregate(&input, &f.clone().with_desk(Some(desk.into()))).unwrap();
            let i = d.by_desk.rows.iter().position(|r| r == desk).unwrap();
            assert_eq!(d.by_period.row_totals, d.by_desk.cells[i], "{desk}");
            assert_eq!(d.by_period.total, d.by_desk.row_totals[i], "{desk}");
            assert_eq!(d.slice_desk(), desk);
        }
        let d = aggregate(&input, &f.with_desk(Some("private_banking".into()))).unwrap();
        assert_eq!(d.by_desk.rows, ["corporate", "markets", "private_banking"]);
        assert!(d.by_period.cells.iter().flatten().all(|&c| c == Cell::Count(0)));
    }

    #[test]
    fn channel_is_a_filter_and_a_breakdown() {
        let mut input = Vec::new();
        on(&mut input, 8, "2026-11-02", "markets", "phone", "cards");
        on(&mut input, 6, "2026-11-02", "markets", "aino_chatbot", "cards");
        on(&mut input, 7, "2026-11-03", "corporate", "aino_chatbot", "loan");
        on(&mut input, 2, "2026-11-03", "corporate", "email", "loan");
        on(&mut input, 9, "2026-11-03", "corporate", "phone", "loan");
        let f = Filter::new(day("2026-11-02"), day("2026-11-03"), Period::Day, day("2026-11-04")).unwrap();
        // All channels, by desk: calls and conversations counted together.
        let all = aggregate(&input, &f).unwrap();
        assert_eq!(all.by_period.total, Cell::Count(32));
        assert_eq!(all.by_desk.rows, ["corporate", "markets"]);
        // One channel: only its rows, still by desk.
        let aino = aggregate(&input, &f.clone().with_channel(Some("aino_chatbot".into()))).unwrap();
        assert_eq!(aino.by_period.rows, ["cards", "loan"]);
        assert_eq!(aino.by_period.row_totals, [Cell::Count(6), Cell::Count(7)]);
        assert_eq!(aino.by_desk.rows, ["corporate", "markets"]);
        assert_eq!(aino.slice_desk(), ALL);
        // By channel: the second table's rows are the channels; the two
        // e-mails are under k and withheld, with a complement.
        let by = f.clone().with_breakdown(Breakdown::Channel);
        let d = aggregate(&input, &by).unwrap();
        assert_eq!(d.by_desk.rows, ["aino_chatbot", "email", "phone"]);
        assert!(d.by_desk.cells[1][1].is_suppressed() && d.by_desk.row_totals[1].is_suppressed());
        for (i, truth) in [13, 2, 17].into_iter().enumerate() {
            assert!(
                d.by_desk.row_totals[i].count().is_none_or(|n| n == truth),
                "{:?}",
                d.by_desk
            );
        }
        assert!(d.by_desk.cells.iter().flatten().filter(|c| c.is_suppressed()).count() >= 2);
        assert_eq!(d.by_period.row_totals, d.by_desk.column_totals);
        assert!(to_csv(&d).starts_with("period,channel,topic,count\r\n"));
        // By channel with a channel filter: it slices by_period like a desk.
        let phone = aggregate(&input, &by.clone().with_channel(Some("phone".into()))).unwrap();
        assert_eq!(phone.slice_desk(), "phone");
        assert_eq!(phone.by_period.total, Cell::Count(17));
        assert_eq!(phone.by_period.total, phone.by_desk.row_totals[2]);
        // By channel with a desk filter: only that desk's rows.
        let markets = aggregate(&input, &by.with_desk(Some("markets".into()))).unwrap();
        assert_eq!(markets.by_desk.rows, ["aino_chatbot", "phone"]);
        assert_eq!(markets.by_desk.total, Cell::Count(14));
        assert_eq!(Breakdown::parse("channel"), Ok(Breakdown::Channel));
        assert!(Breakdown::parse("advisor").is_err());
        assert_eq!(channel_label("aino_chatbot", "nb"), "Chat med Aino");
        assert_eq!(channel_label("secure_message", "en"), "Secure message");
    }

    #[test]
    fn too_few_complete_periods_give_no_trend() {
        let input = vec![row("2026-11-02", "markets", "loan"); 6];
        let f = Filter::new(day("2026-11-02"), day("2026-11-08"), Period::Day, day("2026-11-03")).unwrap();
        let d = aggregate(&input, &f).unwrap();
        assert_eq!(d.periods.iter().filter(|p| p.complete).count(), 1);
        assert_eq!((d.trend_periods, d.trends.len()), (None, 0));
    }

    /// Splits CSV text (RFC 4180) back into records.
    fn parse_csv(text: &str) -> Vec<Vec<String>> {
        let (mut records, mut record, mut field) = (Vec::new(), Vec::new(), String::new());
        let (mut chars, mut quoted) = (text.chars().peekable(), false);
        while let Some(c) = chars.next() {
            match (quoted, c) {
                (true, '"') if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                (true, '"') => quoted = false,
                (true, c) => field.push(c),
                (false, '"') => {
                    assert!(field.is_empty(), "quote inside an unquoted field");
                    quoted = true;
                }
                (false, ',') => record.push(std::mem::take(&mut field)),
                (false, '\r') => {
                    assert_eq!(chars.next(), Some('\n'));
                    record.push(std::mem::take(&mut field));
                    records.push(std::mem::take(&mut record));
                }
                (false, '\n') => panic!("bare line feed outside quotes"),
                (false, c) => field.push(c),
            }
        }
        assert!(!quoted && field.is_empty() && record.is_empty(), "unterminated record");
        records
    }

    /// A minimal well-formedness check: tags nest, attribute values are
    /// quoted, text holds no raw `<` and every `&` starts an entity.
    fn assert_well_formed(svg: &str) {
        let mut stack = Vec::new();
        let mut rest = svg;
        let entity = |s: &str| {
            ["&amp;", "&lt;", "&gt;", "&quot;", "&#39;"]
                .iter()
                .any(|e| s.starts_with(e))
        };
        while let Some(open) = rest.find('<') {
            let text = &rest[..open];
            for (i, _) in text.match_indices('&') {
                assert!(entity(&text[i..]), "bare & in text {text:?}");
            }
            let close = rest[open..].find('>').expect("unclosed tag") + open;
            let tag = &rest[open + 1..close];
            let mut in_quote = false;
            for (i, c) in tag.char_indices() {
                match c {
                    '"' => in_quote = !in_quote,
                    '<' => panic!("< inside tag {tag:?}"),
                    '&' => assert!(entity(&tag[i..]), "bare & in {tag:?}"),
                    _ => {}
                }
            }
            assert!(!in_quote, "unbalanced quotes in {tag:?}");
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(stack.pop(), Some(name.to_owned()), "mismatched </{name}>");
            } else if !tag.ends_with('/') {
                stack.push(tag.split_whitespace().next().unwrap_or("").to_owned());
            }
            rest = &rest[close + 1..];
        }
        assert!(stack.is_empty(), "unclosed {stack:?}");
        assert!(rest.trim().is_empty());
    }

    #[test]
    fn csv_and_svg_escape_names() {
        let nasty = [
            "<script>alert(1)</script>",
            "a \"quoted\", topic",
            "=HYPERLINK(\"x\")",
            "line\nbreak & more",
        ];
        let mut input = Vec::new();
        for (i, t) in nasty.iter().enumerate() {
            rows(&mut input, 5 + i, "2026-11-02", "desk, \"one\"", t);
            rows(&mut input, 6, "2026-11-03", "desk, \"one\"", t);
        }
        let f = Filter::new(day("2026-11-02"), day("2026-11-03"), Period::Day, day("2026-12-01")).unwrap();
        let d = aggregate(&input, &f.with_desk(Some("desk, \"one\"".into()))).unwrap();

        let records = parse_csv(&to_csv(&d));
        assert_eq!(records[0], ["period", "desk", "topic", "count"]);
        assert!(records.iter().all(|r| r.len() == 4));
        let topics: BTreeSet<&str> = records[1..].iter().map(|r| r[2].as_str()).collect();
        let expected: BTreeSet<&str> = [
            "<script>alert(1)</script>",
            "a \"quoted\", topic",
            "'=HYPERLINK(\"x\")",
            "line\nbreak & more",
            ALL,
        ]
        .into();
        assert_eq!(topics, expected, "names come back whole, the formula defused");
        assert!(records[1..].iter().any(|r| r[1] == "desk, \"one\""));
        assert!(records[1..]
            .iter()
            .any(|r| r == &["2026-11-02", "desk, \"one\"", "<script>alert(1)</script>", "5"]));

        for lang in ["nb", "en"] {
            let svg = svg_chart(&d, lang);
            assert_well_formed(&svg);
            assert!(!svg.contains("<script"), "{lang}");
            assert!(svg.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
            assert!(svg.contains("a &quot;quoted&quot;, topic"));
            assert!(svg.contains("line\nbreak &amp; more"));
            assert!(svg.contains(r#"role="img""#) && svg.contains("aria-label=\"") && svg.contains("<title>"));
        }
        let nb = svg_chart(&d, "nb");
        assert!(nb.contains("Emner per dag, avdeling desk, &quot;one&quot;, 02.11.2026 – 03.11.2026"));
        assert!(svg_chart(&d, "en").contains("Topics per day, desk desk, &quot;one&quot;"));
        assert_eq!(svg_chart(&d, "xx"), nb, "unknown languages fall back to Norwegian");
    }

    #[test]
    fn svg_draws_gaps_marks_and_legend() {
        let mut input = Vec::new();
        for (d, loan, savings) in [
            ("2026-11-02", 10, 8),
            ("2026-11-03", 12, 11),
            ("2026-11-04", 9, 7),
            ("2026-11-05", 2, 9),
        ] {
            rows(&mut input, loan, d, "markets", "loan");
            rows(&mut input, savings, d, "markets", "savings");
        }
        let f = Filter::new(day("2026-11-02"), day("2026-11-05"), Period::Day, day("2026-11-04")).unwrap();
        let d = aggregate(&input, &f).unwrap();
        let svg = svg_chart(&d, "en");
        assert_well_formed(&svg);
        // Two points each, then nothing: one M and one L per line.
        assert_eq!(svg.matches("<path d=\"M").count(), 2);
        assert_eq!(svg.matches(" L").count(), 2);
        assert_eq!(svg.matches("<circle").count(), 4, "published points only");
        assert_eq!(
            svg.matches("url(#opptak-dashboard-hatch)").count(),
            3,
            "two periods and the legend"
        );
        assert!(svg.contains("<title>Not shown 2026-11-05: savings, loan</title>"));
        assert!(svg.contains("<title>loan, 2026-11-03: 12</title>"));
        assert!(
            !svg.contains(": 9</title>") && !svg.contains(": 2</title>"),
            "no hidden value in a tooltip"
        );
        assert_eq!(
            svg.matches(">in progress</text>").count(),
            1,
            "4 and 5 November are not over"
        );
        let done = Filter::new(day("2026-11-02"), day("2026-11-05"), Period::Day, day("2026-11-06")).unwrap();
        assert!(!svg_chart(&aggregate(&input, &done).unwrap(), "en").contains("in progress"));

        let empty = aggregate(&[], &f).unwrap();
        let svg = svg_chart(&empty, "nb");
        assert_well_formed(&svg);
        assert!(svg.contains("Ingen samtaler i perioden"));
        assert_eq!(
            to_csv(&empty).lines().count(),
            1 + 4 + 1,
            "the column totals and the grand total"
        );
    }

    /// More topics than colours: the largest published totals are drawn,
    /// suppressed totals last.
    #[test]
    fn chart_picks_the_largest_published_topics() {
        let mut input = Vec::new();
        for i in 0..10 {
            rows(&mut input, 10 + i, "2026-11-02", "markets", &format!("t{i}"));
        }
        rows(&mut input, 1, "2026-11-02", "markets", "small");
        let f = Filter::new(day("2026-11-02"), day("2026-11-02"), Period::Day, day("2026-11-03")).unwrap();
        let d = aggregate(&input, &f).unwrap();
        let names: Vec<&str> = chart_topics(&d).iter().map(|&i| d.by_period.rows[i].as_str()).collect();
        assert_eq!(names, ["t9", "t8", "t7", "t6", "t5", "t4", "t3", "t2"]);
        assert!(svg_chart(&d, "nb").contains("de 8 største av 11 emner"));
    }

    #[test]
    fn nice_scales() {
        assert_eq!(nice_scale(0), (1, 1));
        assert_eq!(nice_scale(4), (4, 1));
        assert_eq!(nice_scale(7), (8, 2));
        assert_eq!(nice_scale(23), (25, 5));
        assert_eq!(nice_scale(48), (50, 10));
        assert_eq!(nice_scale(1234), (1500, 500));
    }

    /// WCAG relative luminance contrast of each line colour against white.
    #[test]
    fn palette_contrasts_with_white() {
        let channel = |h: &str| {
            let c = f64::from(u8::from_str_radix(h, 16).unwrap()) / 255.0;
            if c <= 0.040_45 {
                c / 12.92
            } else {
                ((c + 0.055) / 1.055).powf(2.4)
            }
        };
        for colour in PALETTE {
            let l = 0.2126 * channel(&colour[1..3]) + 0.7152 * channel(&colour[3..5]) + 0.0722 * channel(&colour[5..7]);
            let contrast = 1.05 / (l + 0.05);
            assert!(contrast >= 3.0, "{colour}: {contrast:.2}");
        }
        assert_eq!(PALETTE.iter().collect::<BTreeSet<_>>().len(), CHART_TOPICS);
        assert_eq!(DASHES.iter().collect::<BTreeSet<_>>().len(), CHART_TOPICS);
    }

    /// Identifies a published number: (period index or the whole range, desk
    /// or all, topic or all).
    type Key = (Option<usize>, Option<String>, Option<String>);

    /// Every published number of `d` by key, checking that a number both
    /// tables publish is the same cell in both.
    fn published(d: &Dashboard) -> BTreeMap<Key, Cell> {
        let mut out = BTreeMap::new();
        let mut put = |key: Key, cell: Cell| {
            if let Some(old) = out.insert(key.clone(), cell) {
                assert_eq!(old, cell, "{key:?} published twice, differently");
            }
        };
        let slice = d.filter.desk().map(str::to_owned);
        let (t1, t2) = (&d.by_period, &d.by_desk);
        for (t, topic) in t1.rows.iter().enumerate() {
            for p in 0..t1.columns.len() {
                put((Some(p), slice.clone(), Some(topic.clone())), t1.cells[t][p]);
            }
            put((None, slice.clone(), Some(topic.clone())), t1.row_totals[t]);
        }
        for p in 0..t1.columns.len() {
            put((Some(p), slice.clone(), None), t1.column_totals[p]);
        }
        put((None, slice.clone(), None), t1.total);
        for (i, desk) in t2.rows.iter().enumerate() {
            for (t, topic) in t2.columns.iter().enumerate() {
                put((None, Some(desk.clone()), Some(topic.clone())), t2.cells[i][t]);
            }
            put((None, Some(desk.clone()), None), t2.row_totals[i]);
        }
        for (t, topic) in t2.columns.iter().enumerate() {
            put((None, None, Some(topic.clone())), t2.column_totals[t]);
        }
        put((None, None, None), t2.total);
        out
    }

    /// Every line of both tables as (members, total).
    fn lines(d: &Dashboard) -> Vec<(Vec<Key>, Key)> {
        let slice = d.filter.desk().map(str::to_owned);
        let (t1, t2) = (&d.by_period, &d.by_desk);
        let np = t1.columns.len();
        let topic = |t: &String| Some(t.clone());
        let mut out = Vec::new();
        for t in &t1.rows {
            out.push((
                (0..np).map(|p| (Some(p), slice.clone(), topic(t))).collect(),
                (None, slice.clone(), topic(t)),
            ));
        }
        for p in 0..np {
            out.push((
                t1.rows.iter().map(|t| (Some(p), slice.clone(), topic(t))).collect(),
                (Some(p), slice.clone(), None),
            ));
        }
        out.push((
            (0..np).map(|p| (Some(p), slice.clone(), None)).collect(),
            (None, slice.clone(), None),
        ));
        out.push((
            t1.rows.iter().map(|t| (None, slice.clone(), topic(t))).collect(),
            (None, slice.clone(), None),
        ));
        for desk in &t2.rows {
            let desk = Some(desk.clone());
            out.push((
                t2.columns.iter().map(|t| (None, desk.clone(), topic(t))).collect(),
                (None, desk, None),
            ));
        }
        for t in &t2.columns {
            out.push((
                t2.rows.iter().map(|d| (None, Some(d.clone()), topic(t))).collect(),
                (None, None, topic(t)),
            ));
        }
        out.push((
            t2.rows.iter().map(|d| (None, Some(d.clone()), None)).collect(),
            (None, None, None),
        ));
        out.push((
            t2.columns.iter().map(|t| (None, None, topic(t))).collect(),
            (None, None, None),
        ));
        out
    }

    /// The true count of a key, straight from the rows.
    fn truth(rows: &[TopicRow], f: &Filter, key: &Key) -> u64 {
        let periods = f.periods();
        rows.iter()
            .filter(|r| {
                let d = day(&r.day);
                d >= f.first_day()
                    && d <= f.last_day()
                    && key.0.is_none_or(|p| d >= periods[p].first && d <= periods[p].last)
                    && key.1.as_ref().is_none_or(|k| *k == r.desk)
                    && key.2.as_ref().is_none_or(|k| *k == r.topic)
            })
            .count() as u64
    }

    /// The rank of a matrix over GF(2⁶¹ − 1). The matrices here have entries
    /// in {0, ±1} and at most 21 rows, so every minor is below 21^10.5 < p
    /// (Hadamard) and the rank equals the rank over the rationals.
    fn rank(mut m: Vec<Vec<u64>>) -> usize {
        const P: u64 = (1 << 61) - 1;
        let mul = |a: u64, b: u64| ((u128::from(a) * u128::from(b)) % u128::from(P)) as u64;
        let inv = |a: u64| {
            let (mut r, mut base, mut e) = (1, a, P - 2);
            while e > 0 {
                if e & 1 == 1 {
                    r = mul(r, base);
                }
                base = mul(base, base);
                e >>= 1;
            }
            r
        };
        let cols = m.first().map_or(0, Vec::len);
        let mut rank = 0;
        for c in 0..cols {
            let Some(pivot) = (rank..m.len()).find(|&r| m[r][c] != 0) else {
                continue;
            };
            m.swap(rank, pivot);
            let scale = inv(m[rank][c]);
            let pivot_row = m[rank].clone();
            for (r, row) in m.iter_mut().enumerate() {
                if r != rank && row[c] != 0 {
                    let factor = mul(row[c], scale);
                    for (v, p) in row.iter_mut().zip(&pivot_row) {
                        *v = (*v + P - mul(factor, *p)) % P;
                    }
                }
            }
            rank += 1;
        }
        rank
    }

    /// The checks of every dashboard: published numbers are true, none in
    /// 1..k, zeros shown, trends from published cells, no line gives away a
    /// hidden number by difference, and no combination of all the sums of
    /// both tables pins one down exactly.
    fn check(rows: &[TopicRow], f: &Filter) -> Result<(), TestCaseError> {
        let d = aggregate(rows, f).unwrap();
        let k = u64::from(f.k());
        let cells = published(&d);
        for (key, cell) in &cells {
            let truth = truth(rows, f, key);
            match cell {
                Cell::Count(n) => {
                    prop_assert_eq!(*n, truth, "{:?}", key);
                    prop_assert!(*n == 0 || *n >= k, "{:?} = {} published with k = {}", key, n, k);
                }
                Cell::Suppressed => prop_assert!(truth > 0, "{:?}: a zero suppressed", key),
            }
        }
        for (t, trend) in d.trends.iter().enumerate() {
            let (prev, last) = d.trend_periods.unwrap();
            prop_assert_eq!(
                (trend.previous, trend.last),
                (d.by_period.cells[t][prev], d.by_period.cells[t][last])
            );
            let change = trend
                .last
                .count()
                .zip(trend.previous.count())
                .map(|(b, a)| b as i64 - a as i64);
            prop_assert_eq!(trend.change, change);
        }

        let lines = lines(&d);
        for (members, total) in &lines {
            let Cell::Count(total) = cells[total] else { continue };
            let hidden: Vec<&Key> = members.iter().filter(|m| cells[*m].is_suppressed()).collect();
            let shown: u64 = members.iter().filter_map(|m| cells[m].count()).sum();
            for h in hidden {
                prop_assert_ne!(truth(rows, f, h), total - shown, "{:?} recovered by difference", h);
            }
        }

        // Exact determination: a hidden number is fixed by the sums if and
        // only if its column of the sums' matrix (over the hidden numbers)
        // is not a combination of the others.
        let unknown: Vec<&Key> = cells
            .iter()
            .filter(|(_, c)| c.is_suppressed())
            .map(|(k, _)| k)
            .collect();
        let column: BTreeMap<&Key, usize> = unknown.iter().enumerate().map(|(i, k)| (*k, i)).collect();
        let matrix: Vec<Vec<u64>> = lines
            .iter()
            .map(|(members, total)| {
                let mut row = vec![0u64; unknown.len()];
                for m in members {
                    if let Some(&i) = column.get(m) {
                        row[i] = 1;
                    }
                }
                if let Some(&i) = column.get(total) {
                    row[i] = (1 << 61) - 2; // -1
                }
                row
            })
            .collect();
        let full = rank(matrix.clone());
        for (i, key) in unknown.iter().enumerate() {
            let without: Vec<Vec<u64>> = matrix
                .iter()
                .map(|r| r.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, v)| *v).collect())
                .collect();
            prop_assert_eq!(rank(without), full, "{:?} is determined by the published sums", key);
        }
        Ok(())
    }

    const DESKS: [&str; 3] = ["corporate", "markets", "private_banking"];
    const TOPICS: [&str; 4] = ["card", "loan", "pension", "savings"];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        /// Random small cubes (a few cells with many calls, most with few),
        /// by day or by week across a year boundary, with and without a desk.
        #[test]
        fn suppression_holds(
            weeks in any::<bool>(),
            periods in 1usize..=5,
            groups in prop::collection::vec((0i64..40, 0usize..3, 0usize..4, 1usize..=12), 0..25),
            desk in prop::option::of(0usize..4),
            k in 2u32..=6,
            today_offset in 0i64..42,
        ) {
            let start = day("2026-12-21");
            let (period, len) = if weeks { (Period::Week, 7 * periods as i64) } else { (Period::Day, periods as i64) };
            let f = Filter::new(start, start.plus(len - 1), period, start.plus(today_offset))
                .unwrap()
                .with_desk(desk.map(|d| ["corporate", "markets", "private_banking", "retail"][d].to_owned()))
                .with_k(k)
                .unwrap();
            let mut input = Vec::new();
            for (offset, d, t, n) in groups {
                rows(&mut input, n, &start.plus(offset).to_string(), DESKS[d], TOPICS[t]);
            }
            check(&input, &f)?;
        }
    }

    /// A year of days, 30 topics, 5 desks, sparse: the search stays fast
    /// enough for a page and the properties hold.
    #[test]
    fn a_year_of_sparse_days() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let start = day("2026-01-01");
        let desks = ["a", "b", "c", "d", "e"];
        let topics: Vec<String> = (0..30).map(|i| format!("topic-{i:02}")).collect();
        let input: Vec<TopicRow> = (0..20_000)
            .map(|_| {
                // Skewed: a few topics carry most calls.
                let t = (rng.gen_range(0.0f64..1.0).powi(3) * 30.0) as usize;
                TopicRow {
                    day: start.plus(rng.gen_range(0..365)).to_string(),
                    desk: desks[rng.gen_range(0..5)].to_owned(),
                    channel: "phone".to_owned(),
                    topic: topics[t].clone(),
                }
            })
            .collect();
        let f = Filter::new(start, start.plus(364), Period::Day, day("2027-01-01")).unwrap();
        let began = std::time::Instant::now();
        let d = aggregate(&input, &f.clone().with_desk(Some("c".into()))).unwrap();
        let took = began.elapsed();
        eprintln!("a year of days: {took:?}");
        let cells = published(&d);
        let k = u64::from(DEFAULT_K);
        assert!(cells.values().filter_map(|c| c.count()).all(|n| n == 0 || n >= k));
        for (members, total) in lines(&d) {
            let hidden = members.iter().filter(|m| cells[*m].is_suppressed()).count();
            assert!(
                hidden != 1 || cells[&total].is_suppressed(),
                "a line with one hidden number and its total"
            );
        }
        let weeks = Filter::new(start, start.plus(364), Period::Week, day("2027-01-01")).unwrap();
        let w = aggregate(&input, &weeks).unwrap();
        assert_eq!(w.periods.len(), 53);
        assert!(svg_chart(&d, "nb").len() < 200_000);
    }
}
