//! Quality sampling in the review service (R6): the QA reviewer's queue of
//! sampled calls, the assessment form on the call page (correctness,
//! relevance, quality 1–5; a flag for discriminatory or unexpected content
//! with a note), and the QA report as a page and as CSV. The queue says why
//! each call is there (the sample, a screening hit with its term, a failed
//! speech recognition to listen to); the report shows each stratum's error
//! and flag rates with 95 % Wilson intervals, small strata withheld.
//!
//! Sampled conversations with the bot (issue 17) stand in the same queue;
//! QA reads one's redacted analysis copy at `/qa/conversations/{id}` (QA
//! only, sampled, its `chat-analysis-1y` key alive; audited) and scores the
//! bot's answers with the same form.

use super::cat::Msg;
use super::{cat, csrf_of, format, internal, labels, urlencode, App, Ctx, Lang, Reply};
use crate::identity::{Role, User};
use crate::qa::{
    queue_length_us, QaFlag, QaReport, QaReview, QaScore, QueueQuery, QueueSort, QueueStatus, Rate, Refusal,
    SampleAccess, StratumStats, TopicStats, MAX_NOTE_BYTES, NO_TOPIC, RECOGNITION_FAILED,
};
use axum::extract::{Form, Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup};
use opptak_domain::model::{CallId, Sender};
use opptak_domain::summary::Taxonomy;
use opptak_store::reporting::{QueueRow, PHONE};
use serde::Deserialize;
use std::sync::Arc;

pub(super) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/qa", get(queue))
        .route("/qa/report", get(report_page))
        .route("/qa/report.csv", get(report_csv))
        .route("/qa/conversations/{id}", get(conversation_page))
        .route("/calls/{id}/qa", post(assess))
}

/// Who reads the QA report (aggregates, no content).
pub(crate) fn reads_report(role: Role) -> bool {
    matches!(role, Role::Qa | Role::TeamLead | Role::Compliance)
}

/// The QA pages' own layout: tables that fit the page (wrapping heads,
/// numbers right-aligned), the rubric beside the scores, form errors.
const STYLE: &str = "table.qa{width:100%;max-width:100%}table.qa th,table.qa td{overflow-wrap:break-word}\
table.qa td.n,table.qa th.n{text-align:right;white-space:nowrap}table.qa thead th{vertical-align:bottom}\
table.qa th.group{text-align:center;border-bottom:1px solid #124}table.qa caption{text-align:left;font-weight:bold;padding:.3rem 0}\
.scroll{max-width:100%;overflow-x:auto}.rate small{display:block;color:#555;white-space:normal}\
fieldset.score{display:grid;grid-template-columns:minmax(10rem,auto) 1fr;gap:.3rem 1rem;margin-bottom:.6rem}\
fieldset.score legend{font-weight:bold}fieldset.score .choices label{margin-right:.6rem;white-space:nowrap}\
ul.rubric{margin:0;padding-left:1rem;color:#333}fieldset.score .field-error{grid-column:1/-1}\
blockquote.scored{border-left:4px solid #124;margin:.5rem 0;padding:.3rem 1rem;background:#f4f6fa}\
form.filters{display:flex;flex-wrap:wrap;gap:.5rem 1rem;align-items:end;margin-bottom:1rem}form.filters label{display:flex;flex-direction:column}\
nav.pages{display:flex;gap:1rem;align-items:center;margin:.5rem 0}\
@media (max-width:40rem){fieldset.score{grid-template-columns:1fr}}";

fn style() -> Markup {
    html! { style { (STYLE) } }
}

/// A topic's name; a call without a draft has none.
fn topic_name<'a>(lang: Lang, taxonomy: &'a Taxonomy, id: &'a str) -> &'a str {
    if id == NO_TOPIC {
        lang.m(cat::qa::TOPIC_NONE)
    } else {
        labels::topic(lang, taxonomy, id)
    }
}

/// A detected language's name (`und`: not determined).
fn language_name(lang: Lang, code: &str) -> &'static str {
    if code == opptak_domain::summary::UNDETERMINED {
        lang.m(cat::qa::LANGUAGE_UNDETERMINED)
    } else {
        labels::language(lang, code)
    }
}

/// The QA queue's query string, every field optional (a bad value is
/// taken as its default rather than refused: these are links and filters).
#[derive(Deserialize, Default)]
struct QueueParams {
    call: Option<String>,
    desk: Option<String>,
    topic: Option<String>,
    status: Option<String>,
    sort: Option<String>,
    dir: Option<String>,
    page: Option<String>,
    per: Option<String>,
}

impl QueueParams {
    fn query(&self) -> QueueQuery {
        let d = QueueQuery::default();
        let text = |v: &Option<String>| v.as_deref().unwrap_or("").trim().to_owned();
        let sort = match self.sort.as_deref() {
            Some("start") => QueueSort::Start,
            Some("length") => QueueSort::Length,
            _ => QueueSort::Waiting,
        };
        QueueQuery {
            call: text(&self.call),
            desk: text(&self.desk),
            topic: text(&self.topic),
            status: match self.status.as_deref() {
                Some("scored") => QueueStatus::Scored,
                Some("unscored") => QueueStatus::NotScored,
                _ => QueueStatus::All,
            },
            sort,
            descending: match self.dir.as_deref() {
                Some("asc") => false,
                Some("desc") => true,
                _ => d.descending,
            },
            page: self
                .page
                .as_deref()
                .and_then(|p| p.parse().ok())
                .filter(|p| *p >= 1)
                .unwrap_or(1),
            per: self
                .per
                .as_deref()
                .and_then(|p| p.parse().ok())
                .map_or(d.per, |p: usize| p.clamp(1, 200)),
        }
    }
}

fn sort_code(s: QueueSort) -> &'static str {
    match s {
        QueueSort::Waiting => "waiting",
        QueueSort::Start => "start",
        QueueSort::Length => "length",
    }
}

fn status_code(s: QueueStatus) -> &'static str {
    match s {
        QueueStatus::All => "",
        QueueStatus::Scored => "scored",
        QueueStatus::NotScored => "unscored",
    }
}

/// The queue's URL for `q`: its filters, sort and page.
fn queue_href(q: &QueueQuery) -> String {
    format!(
        "/qa?call={}&desk={}&topic={}&status={}&sort={}&dir={}&page={}&per={}",
        urlencode(&q.call),
        urlencode(&q.desk),
        urlencode(&q.topic),
        status_code(q.status),
        sort_code(q.sort),
        if q.descending { "desc" } else { "asc" },
        q.page,
        q.per
    )
}

/// A sortable column head: a link that sorts by it (again: the other way),
/// `aria-sort` on the active one.
fn sort_head(lang: Lang, q: &QueueQuery, by: QueueSort, label: Msg) -> Markup {
    let active = q.sort == by;
    let next = QueueQuery {
        sort: by,
        descending: if active { !q.descending } else { true },
        page: 1,
        ..q.clone()
    };
    let aria = active.then_some(if q.descending { "descending" } else { "ascending" });
    html! {
        th scope="col" aria-sort=[aria] {
            a href=(queue_href(&next)) { (lang.m(label)) @if active { (if q.descending { " ↓" } else { " ↑" }) } }
        }
    }
}

fn reason_text(lang: Lang, why: &str) -> Markup {
    if why == RECOGNITION_FAILED {
        html! { strong.flag { (lang.m(cat::qa::RECOGNITION_FAILED_LISTEN)) } }
    } else if why == "sample" {
        html! { (lang.m(cat::qa::SAMPLE)) }
    } else if why == "screening (detail unreadable)" {
        html! { strong.flag { (lang.m(cat::qa::SCREENING_UNREADABLE)) } }
    } else {
        html! { strong.flag { (screening_reason(lang, why)) } }
    }
}

/// A screening's reason (`opptak_ki::screen::Screening::reasons`, English
/// and for logs) in the page's language.
fn screening_reason(lang: Lang, why: &str) -> String {
    let inner = |prefix: &str| {
        why.strip_prefix(prefix)
            .and_then(|r| r.strip_suffix(')'))
            .map(str::to_owned)
    };
    if let Some(rest) = inner("screening: lexicon term ") {
        if let Some((term, category)) = rest.rsplit_once(" (") {
            let category = lang.m(match category {
                "ethnicity" => cat::qa::CATEGORY_ETHNICITY,
                "religion" => cat::qa::CATEGORY_RELIGION,
                "gender" => cat::qa::CATEGORY_GENDER,
                "age" => cat::qa::CATEGORY_AGE,
                "disability" => cat::qa::CATEGORY_DISABILITY,
                "sexual_orientation" => cat::qa::CATEGORY_SEXUAL_ORIENTATION,
                "slur" => cat::qa::CATEGORY_SLUR,
                "health" => cat::qa::CATEGORY_HEALTH,
                "political_views" => cat::qa::CATEGORY_POLITICAL_VIEWS,
                "unforeseen" => cat::qa::CATEGORY_UNFORESEEN,
                _ => cat::qa::CATEGORY_OTHER,
            });
            return lang.f(cat::qa::SCREEN_LEXICON, &[("term", term), ("category", category)]);
        }
    }
    if let Some(model) = inner("screening: language model (") {
        return lang.f(cat::qa::SCREEN_MODEL, &[("model", &model)]);
    }
    lang.m(cat::qa::SCREEN_OTHER).to_owned()
}

async fn queue(State(app): State<Arc<App>>, ctx: Ctx, Query(p): Query<QueueParams>) -> Response {
    let (user, _) = match ctx.page_user() {
        Ok(u) => u,
        Err(r) => return r,
    };
    let lang = ctx.lang;
    if user.role != Role::Qa {
        if let Err(e) = app.audit(user, "qa.queue", "qa", "", "refused").await {
            return internal(lang, e);
        }
        return ctx.error(StatusCode::FORBIDDEN, cat::qa::ONLY_QA_REVIEWERS_SEE_THE_QA);
    }
    let q = p.query();
    let now = app.edges.vault.clock().now_us();
    let (page, strata) = match (app.qa.queue_page(&q, now).await, app.qa.strata().await) {
        (Ok(r), Ok(s)) => (r, s),
        (Err(e), _) | (_, Err(e)) => return internal(lang, e),
    };
    let taxonomy = app.review.taxonomy();
    let share = format::percent(lang, app.qa.share(), 0);
    // A page past the end shows none: "0–0 av 7", with the way back.
    let first = if page.rows.is_empty() {
        0
    } else {
        (q.page - 1) * q.per + 1
    };
    let last = if page.rows.is_empty() {
        0
    } else {
        first + page.rows.len() - 1
    };
    let paging = lang.f(
        cat::qa::PAGING,
        &[
            ("first", &format::count(lang, first as u64)),
            ("last", &format::count(lang, last as u64)),
            ("total", &format::count(lang, page.total as u64)),
        ],
    );
    let prev = (q.page > 1).then(|| {
        queue_href(&QueueQuery {
            page: q.page - 1,
            ..q.clone()
        })
    });
    let next = (!page.rows.is_empty() && last < page.total).then(|| {
        queue_href(&QueueQuery {
            page: q.page + 1,
            ..q.clone()
        })
    });
    let filtered = !(q.call.is_empty() && q.desk.is_empty() && q.topic.is_empty() && q.status == QueueStatus::All);
    ctx.page(
        lang.m(cat::qa::QUALITY_ASSURANCE),
        html! {
            (style())
            p { (lang.f(cat::qa::SHARE_SAMPLED, &[("share", &share)])) }
            form.filters method="get" action="/qa" {
                label { (lang.m(cat::qa::SEARCH_CALL)) input type="search" name="call" value=(q.call); }
                label { (lang.m(cat::qa::DESK)) select name="desk" {
                    option value="" { (lang.m(cat::qa::ALL_OF_THEM)) }
                    @for d in &page.desks { option value=(d) selected[q.desk == *d] { (labels::desk(lang, d)) } }
                } }
                label { (lang.m(cat::qa::TOPIC)) select name="topic" {
                    option value="" { (lang.m(cat::qa::ALL_OF_THEM)) }
                    @for t in &page.topics { option value=(t) selected[q.topic == *t] { (topic_name(lang, taxonomy, t)) } }
                } }
                label { (lang.m(cat::qa::STATUS)) select name="status" {
                    option value="" { (lang.m(cat::qa::ALL_OF_THEM)) }
                    option value="unscored" selected[q.status == QueueStatus::NotScored] { (lang.m(cat::qa::STATUS_NOT_SCORED)) }
                    option value="scored" selected[q.status == QueueStatus::Scored] { (lang.m(cat::qa::STATUS_SCORED)) }
                } }
                input type="hidden" name="sort" value=(sort_code(q.sort));
                input type="hidden" name="dir" value=(if q.descending { "desc" } else { "asc" });
                button type="submit" { (lang.m(cat::qa::FILTER)) }
            }
            @if page.total == 0 {
                p { (lang.m(if filtered { cat::qa::NO_MATCH } else { cat::qa::NO_CALLS_ARE_WAITING_FOR_QA })) }
            } @else if !page.rows.is_empty() {
                div.scroll tabindex="0" role="region" aria-label=(lang.m(cat::qa::QUEUE_CAPTION)) {
                table.qa.queue {
                    caption { (lang.m(cat::qa::QUEUE_CAPTION)) }
                    thead { tr {
                        th scope="col" { (lang.m(cat::qa::CALL)) }
                        (sort_head(lang, &q, QueueSort::Waiting, cat::qa::WAITING))
                        (sort_head(lang, &q, QueueSort::Start, cat::qa::STARTED))
                        (sort_head(lang, &q, QueueSort::Length, cat::qa::LENGTH))
                        th scope="col" { (lang.m(cat::qa::DESK)) }
                        th scope="col" { (lang.m(cat::qa::TOPIC)) }
                        th scope="col" { (lang.m(cat::qa::CHANNEL)) " / " (lang.m(cat::qa::LANGUAGE)) }
                        th scope="col" { (lang.m(cat::qa::SCORED_BY)) }
                        th scope="col" { (lang.m(cat::qa::WHY)) }
                    } }
                    tbody {
                        @for r in &page.rows { (queue_row(lang, taxonomy, now, r)) }
                    }
                }
                }
            }
            nav.pages aria-label=(lang.m(cat::qa::PAGES)) {
                span.count { (paging) }
                @if let Some(h) = &prev { a rel="prev" href=(h) { (lang.m(cat::qa::PREVIOUS)) } }
                @if let Some(h) = &next { a rel="next" href=(h) { (lang.m(cat::qa::NEXT)) } }
            }
            details {
                summary { (lang.m(cat::qa::STRATA)) }
                table.qa {
                    thead { tr {
                        th scope="col" { (lang.m(cat::qa::STRATUM)) }
                        th scope="col" .n { (lang.m(cat::qa::SEEN)) }
                        th scope="col" .n { (lang.m(cat::qa::SAMPLED)) }
                    } }
                    tbody { @for s in &strata { tr {
                        td { (stratum_name(lang, taxonomy, &s.stratum)) }
                        td.n { (format::count(lang, s.seen)) }
                        td.n { (format::count(lang, s.sampled)) }
                    } } }
                }
            }
            p { a href="/qa/report" { (lang.m(cat::qa::QA_REPORT)) } }
        },
    )
}

fn queue_row(lang: Lang, taxonomy: &Taxonomy, now: i64, r: &QueueRow) -> Markup {
    let length = queue_length_us(r);
    html! {
        tr {
            td { a href=(item_href(&r.channel, &r.call_id)) { (r.call_id) } }
            td.n { (format::waited(lang, now - r.sampled_at_us)) }
            td { (format::when(lang, r.started_at_us)) }
            td.n { @if r.ended_at_us.is_some() { (format::clock(length as f64 / 1e6)) } @else { "–" } }
            td { (labels::desk(lang, &r.desk)) }
            td { (topic_name(lang, taxonomy, &r.topic)) }
            td { (labels::channel(lang, &r.channel)) ", " (language_name(lang, &r.language)) }
            td {
                @if r.reviewers.is_empty() { span.muted { (lang.m(cat::qa::NO_ONE_YET)) } }
                @else { (r.reviewers.join(", ")) }
            }
            td.reasons { @for (i, why) in r.reasons.iter().enumerate() { @if i > 0 { br; } (reason_text(lang, why)) } }
        }
    }
}

/// A stratum key (`topic|desk|language|asr-ok`, or the channel last) in words.
fn stratum_name(lang: Lang, taxonomy: &Taxonomy, key: &str) -> String {
    let parts: Vec<&str> = key.split('|').collect();
    let [topic, desk, language, last] = parts[..] else {
        return key.to_owned();
    };
    let last = match last {
        "asr-ok" => lang.m(cat::qa::RECOGNITION_OK),
        "asr-failed" => lang.m(cat::qa::RECOGNITION_FAILED),
        channel => labels::channel(lang, channel),
    };
    format!(
        "{} · {} · {} · {}",
        topic_name(lang, taxonomy, topic),
        labels::desk(lang, desk),
        language_name(lang, language),
        last
    )
}

/// Where QA reads a queued item: a call's page, or a conversation's
/// analysis copy.
fn item_href(channel: &str, id: &str) -> String {
    if channel == PHONE {
        format!("/calls/{id}")
    } else {
        format!("/qa/conversations/{id}")
    }
}

/// A sampled conversation's redacted analysis copy for a QA reviewer, with
/// the assessment form: the bot's answers are what is scored. Only QA, only
/// while sampled and its `chat-analysis-1y` key lives; audited either way.
async fn conversation_page(State(app): State<Arc<App>>, ctx: Ctx, Path(id): Path<String>) -> Response {
    if ctx.user().is_err() {
        return Redirect::to("/login").into_response();
    }
    let Ok(call_id) = CallId::parse(&id) else {
        return ctx.error(StatusCode::NOT_FOUND, cat::qa::UNKNOWN_CONVERSATION);
    };
    conversation(&app, &ctx, &call_id, None).await
}

/// The conversation page for a signed-in user, its form showing `attempt`
/// when given (then answered 422: the form again).
async fn conversation(app: &App, ctx: &Ctx, call_id: &CallId, attempt: Option<&Attempt>) -> Response {
    let (user, token) = match ctx.user() {
        Ok(u) => u,
        Err(r) => return r,
    };
    let lang = ctx.lang;
    let call_id = call_id.clone();
    let subject = format!("conversation:{call_id}");
    let indexed = match app.qa.call(&call_id).await {
        Ok(c) => c.filter(|c| c.row.channel != PHONE),
        Err(e) => return internal(lang, e),
    };
    let access = match (&indexed, user.role) {
        (Some(_), Role::Qa) => match app.qa.sample_access(&call_id).await {
            Ok(a) => a,
            Err(e) => return internal(lang, e),
        },
        _ => SampleAccess::NotSampled,
    };
    let copy = match access {
        SampleAccess::Readable => match app.qa.analysis_copy(&call_id).await {
            Ok(c) => c,
            Err(e) => return internal(lang, e),
        },
        _ => None,
    };
    let (Some(indexed), Some(copy)) = (indexed, copy) else {
        if let Err(e) = app.audit(user, "conversation.read", &subject, "", "refused").await {
            return internal(lang, e);
        }
        return ctx.error(
            StatusCode::FORBIDDEN,
            cat::qa::ONLY_QA_REVIEWERS_READ_SAMPLED_CONVERSATIONS,
        );
    };
    if app.audit_reads {
        if let Err(e) = app
            .audit(user, "conversation.read", &subject, "qa sample", "allowed")
            .await
        {
            return internal(lang, e);
        }
    }
    let qa = section_with(app, lang, user, token, &call_id, attempt).await;
    let sender = |s: Sender| match s {
        Sender::Customer => lang.m(cat::qa::CUSTOMER),
        Sender::Bot => "Aino",
        Sender::Advisor => lang.m(cat::qa::ADVISOR),
    };
    let taxonomy = app.review.taxonomy();
    let row = &indexed.row;
    let facts = lang.f(
        cat::qa::CONVERSATION_FACTS,
        &[
            ("channel", labels::channel(lang, &row.channel)),
            ("day", &day_name(lang, &row.day)),
            ("desk", labels::desk(lang, &row.desk)),
            ("language", language_name(lang, &row.language)),
            ("topics", &labels::topics(lang, taxonomy, &row.topics)),
        ],
    );
    let mut r = ctx.page(
        lang.m(cat::qa::CONVERSATION_QA),
        html! {
            (style())
            p { (facts) }
            p.muted { (lang.m(cat::qa::THE_ANALYSIS_COPY_PERSONAL_DATA_REPLACED)) }
            table {
                thead { tr {
                    th scope="col" { "#" }
                    th scope="col" { (lang.m(cat::qa::FROM)) }
                    th scope="col" { (lang.m(cat::qa::TEXT)) }
                } }
                tbody { @for m in &copy.messages { tr {
                    td { (m.sequence) }
                    td { @if m.sender == Sender::Bot { strong { (sender(m.sender)) } } @else { (sender(m.sender)) } }
                    td { (m.text) }
                } } }
            }
            (qa)
        },
    );
    if attempt.is_some() {
        *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    }
    r
}

/// A `YYYY-MM-DD` day as the page language writes dates.
fn day_name(lang: Lang, day: &str) -> String {
    let parts: Vec<&str> = day.split('-').collect();
    match (lang, parts.as_slice()) {
        (Lang::Nb, [y, m, d]) => format!("{d}.{m}.{y}"),
        _ => day.to_owned(),
    }
}

/// What a QA reviewer typed into the assessment form, and what was wrong
/// with it: kept to show the form again.
#[derive(Clone, Debug, Default)]
pub(crate) struct Attempt {
    scores: [Option<u8>; 3],
    flag: String,
    note: String,
    /// `(field, message)`; the field is a form field's name.
    errors: Vec<(&'static str, Msg)>,
}

impl Attempt {
    fn error(&self, field: &str) -> Option<Msg> {
        self.errors.iter().find(|(f, _)| *f == field).map(|(_, m)| *m)
    }
}

const SCORE_NAMES: [&str; 3] = ["correctness", "relevance", "quality"];

/// The assessment section of the call page for a QA reviewer: earlier
/// assessments and the form.
pub(crate) async fn section(app: &App, lang: Lang, user: &User, token: &str, call_id: &CallId) -> Markup {
    section_with(app, lang, user, token, call_id, None).await
}

/// [`section`], showing `attempt` (typed input and its errors) in the form
/// when given.
async fn section_with(
    app: &App,
    lang: Lang,
    user: &User,
    token: &str,
    call_id: &CallId,
    attempt: Option<&Attempt>,
) -> Markup {
    let reviews: Vec<QaReview> = app.qa.reviews(call_id).await.unwrap_or_default();
    let screening = app.qa.screening(call_id).await.ok().flatten().filter(|s| s.flagged());
    let indexed = app.qa.call(call_id).await.ok().flatten();
    let failed = indexed.as_ref().is_some_and(|c| c.row.recognition_failed);
    // A conversation's KI output is the bot's answers, not a summary.
    let bot = indexed.as_ref().is_some_and(|c| c.row.channel != PHONE);
    let draft = if bot || failed {
        None
    } else {
        Some(opptak_ki::summarize::read_draft(&app.edges.vault, call_id).await)
    };
    let mine = reviews.iter().find(|r| r.reviewer == user.actor());
    let current = |i: usize| match attempt {
        Some(a) => a.scores[i],
        None => mine.map(|r| [r.correctness, r.relevance, r.quality][i]),
    };
    let flag = match attempt {
        Some(a) => QaFlag::parse(&a.flag),
        None => mine.and_then(|r| r.flag),
    };
    let note = match attempt {
        Some(a) => a.note.clone(),
        None => mine.and_then(|r| r.note.clone()).unwrap_or_default(),
    };
    let err = |field: &str| attempt.and_then(|a| a.error(field));
    let taxonomy = app.review.taxonomy();
    let rubrics: [(Msg, [Msg; 3]); 3] = if bot {
        [
            (
                cat::qa::BOT_CORRECTNESS_Q,
                [
                    cat::qa::BOT_CORRECTNESS_1,
                    cat::qa::BOT_CORRECTNESS_3,
                    cat::qa::BOT_CORRECTNESS_5,
                ],
            ),
            (
                cat::qa::BOT_RELEVANCE_Q,
                [
                    cat::qa::BOT_RELEVANCE_1,
                    cat::qa::BOT_RELEVANCE_3,
                    cat::qa::BOT_RELEVANCE_5,
                ],
            ),
            (
                cat::qa::QUALITY_Q,
                [cat::qa::QUALITY_1, cat::qa::QUALITY_3, cat::qa::QUALITY_5],
            ),
        ]
    } else {
        [
            (
                cat::qa::CORRECTNESS_Q,
                [cat::qa::CORRECTNESS_1, cat::qa::CORRECTNESS_3, cat::qa::CORRECTNESS_5],
            ),
            (
                cat::qa::RELEVANCE_Q,
                [cat::qa::RELEVANCE_1, cat::qa::RELEVANCE_3, cat::qa::RELEVANCE_5],
            ),
            (
                cat::qa::QUALITY_Q,
                [cat::qa::QUALITY_1, cat::qa::QUALITY_3, cat::qa::QUALITY_5],
            ),
        ]
    };
    let errors = attempt.map(|a| a.errors.clone()).unwrap_or_default();
    html! {
        (style())
        h2 #qa { (lang.m(cat::qa::QUALITY_ASSESSMENT)) }
        @if !errors.is_empty() {
            div.errors.error-summary role="alert" {
                p { strong { (lang.m(cat::qa::NOT_SAVED)) } }
                ul { @for (field, msg) in &errors {
                    li { a href={ "#" (field_anchor(field)) } { (lang.m(*msg)) } }
                } }
            }
        }
        @if failed {
            p { strong.flag { (lang.m(cat::qa::SPEECH_RECOGNITION_FAILED_LISTEN_TO_THE)) } }
        }
        @if let Some(s) = &screening {
            p.screening { strong.flag { (lang.m(cat::qa::SCREENING_FLAGGED_THE_DRAFT)) } " "
                (s.reasons().iter().map(|r| screening_reason(lang, r)).collect::<Vec<_>>().join("; ")) }
        }
        @if bot {
            p.what-scored { (lang.m(cat::qa::WHAT_IS_SCORED_BOT)) }
        } @else if let Some(d) = &draft {
            p.what-scored { (lang.m(cat::qa::WHAT_IS_SCORED_CALL)) }
            h3 { (lang.m(cat::qa::SCORED_DRAFT)) }
            @match d {
                Ok(d) => {
                    blockquote.scored {
                        p.scored-summary { (d.summary) }
                        p.muted { (lang.m(cat::qa::SCORED_DRAFT_TOPICS)) (labels::topics(lang, taxonomy, &d.topics)) }
                    }
                }
                Err(_) => p.muted { (lang.m(cat::qa::NO_DRAFT)) }
            }
        }
        @if !reviews.is_empty() {
            table.qa.reviews {
                caption { (lang.m(cat::qa::EARLIER_ASSESSMENTS)) }
                thead { tr {
                    th scope="col" { (lang.m(cat::qa::BY)) }
                    th scope="col" .n { (lang.m(cat::qa::CORRECTNESS)) }
                    th scope="col" .n { (lang.m(cat::qa::RELEVANCE)) }
                    th scope="col" .n { (lang.m(cat::qa::QUALITY)) }
                    th scope="col" { (lang.m(cat::qa::FLAG)) }
                    th scope="col" { (lang.m(cat::qa::NOTE)) }
                } }
                tbody { @for r in &reviews { tr {
                    td { (r.reviewer) }
                    td.n { (r.correctness) } td.n { (r.relevance) } td.n { (r.quality) }
                    td { @if let Some(f) = r.flag { strong.flag { (flag_name(lang, f)) } } }
                    td { (r.note.as_deref().unwrap_or(lang.m(cat::qa::KI_DATA_ERASED))) }
                } } }
            }
        }
        form.assessment method="post" action={ "/calls/" (call_id) "/qa" } novalidate {
            input type="hidden" name="csrf" value=(csrf_of(token));
            p.muted { (lang.m(cat::qa::RUBRIC_HINT)) }
            @for (i, (question, rubric)) in rubrics.iter().enumerate() {
                (score_field(lang, SCORE_NAMES[i], *question, rubric, current(i), err(SCORE_NAMES[i])))
            }
            p {
                label for="flag" { (lang.m(cat::qa::FLAG_2)) } " "
                select #flag name="flag" aria-invalid=[err("flag").map(|_| "true")] aria-describedby=[err("flag").map(|_| "flag-error")] {
                    option value="" { (lang.m(cat::qa::NONE)) }
                    option value="discriminatory" selected[flag == Some(QaFlag::Discriminatory)] { (flag_name(lang, QaFlag::Discriminatory)) }
                    option value="unexpected" selected[flag == Some(QaFlag::Unexpected)] { (flag_name(lang, QaFlag::Unexpected)) }
                }
            }
            @if let Some(m) = err("flag") { p.field-error #flag-error { (lang.m(m)) } }
            p { label for="note" { (lang.m(cat::qa::NOTE_REQUIRED_WITH_A_FLAG)) } br;
                textarea #note name="note" rows="3" cols="60" aria-invalid=[err("note").map(|_| "true")]
                    aria-describedby=[err("note").map(|_| "note-error")] { (note) } }
            @if let Some(m) = err("note") {
                p.field-error #note-error { (lang.f(m, &[("max", &format::count(lang, MAX_NOTE_BYTES as u64))])) }
            }
            button type="submit" { (lang.m(cat::qa::SAVE_ASSESSMENT)) }
        }
    }
}

/// Where an error summary's link takes the reader: the field (a score's
/// first choice).
fn field_anchor(field: &str) -> String {
    if SCORE_NAMES.contains(&field) {
        format!("{field}-1")
    } else {
        field.to_owned()
    }
}

/// One 1–5 score with its rubric beside it (what 1, 3 and 5 mean).
fn score_field(
    lang: Lang,
    name: &str,
    question: Msg,
    rubric: &[Msg; 3],
    current: Option<u8>,
    error: Option<Msg>,
) -> Markup {
    let described = match error {
        Some(_) => format!("{name}-rubric {name}-error"),
        None => format!("{name}-rubric"),
    };
    html! {
        fieldset.score aria-describedby=(described) {
            legend { (lang.m(question)) }
            div.choices {
                @for v in 1..=5u8 {
                    label for={ (name) "-" (v) } {
                        input type="radio" id={ (name) "-" (v) } name=(name) value=(v) checked[current == Some(v)]
                            aria-invalid=[error.map(|_| "true")];
                        " " (v)
                    }
                }
            }
            ul.rubric id={ (name) "-rubric" } { @for m in rubric { li { (lang.m(*m)) } } }
            @if let Some(m) = error { p.field-error id={ (name) "-error" } { (lang.m(m)) } }
        }
    }
}

fn flag_name(lang: Lang, f: QaFlag) -> &'static str {
    match f {
        QaFlag::Discriminatory => lang.m(cat::qa::DISCRIMINATORY),
        QaFlag::Unexpected => lang.m(cat::qa::UNEXPECTED_CONTENT),
    }
}

/// The assessment form as posted: everything optional and text, so a
/// missing or odd field is the form's error to show, not a rejection.
#[derive(Deserialize, Default)]
struct AssessForm {
    #[serde(default)]
    csrf: String,
    correctness: Option<String>,
    relevance: Option<String>,
    quality: Option<String>,
    #[serde(default)]
    flag: String,
    #[serde(default)]
    note: String,
}

/// The assessment `f` asks for, or what to show the reviewer again.
fn check(f: &AssessForm) -> Result<QaScore, Attempt> {
    let mut a = Attempt {
        flag: f.flag.clone(),
        note: f.note.clone(),
        ..Attempt::default()
    };
    for (i, v) in [&f.correctness, &f.relevance, &f.quality].into_iter().enumerate() {
        a.scores[i] = v
            .as_deref()
            .and_then(|s| s.trim().parse::<u8>().ok())
            .filter(|s| (1..=5).contains(s));
        if a.scores[i].is_none() {
            a.errors.push((SCORE_NAMES[i], cat::qa::SCORE_MISSING));
        }
    }
    let flag = match f.flag.as_str() {
        "" => None,
        other => {
            let flag = QaFlag::parse(other);
            if flag.is_none() {
                a.errors.push(("flag", cat::qa::FLAG_UNKNOWN));
            }
            flag
        }
    };
    let note = f.note.trim();
    if flag.is_some() && note.is_empty() {
        a.errors.push(("note", cat::qa::NOTE_MISSING));
    }
    if note.len() > MAX_NOTE_BYTES {
        a.errors.push(("note", cat::qa::NOTE_TOO_LONG));
    }
    match (a.errors.is_empty(), a.scores) {
        (true, [Some(correctness), Some(relevance), Some(quality)]) => Ok(QaScore {
            correctness,
            relevance,
            quality,
            flag,
            note: f.note.clone(),
        }),
        _ => Err(a),
    }
}

/// Whether `user` could save an assessment of the call at all (the checks
/// [`crate::qa::Qa::score`] makes before the form's), so only they see the
/// form again with what they typed.
async fn may_score(app: &App, user: &User, call_id: &CallId) -> anyhow::Result<Result<(), Refusal>> {
    if user.role != Role::Qa {
        return Ok(Err(Refusal::NotQa));
    }
    Ok(match app.qa.sample_access(call_id).await? {
        SampleAccess::Readable => Ok(()),
        SampleAccess::NotSampled => Err(Refusal::NotSampled),
        SampleAccess::KiGone => Err(Refusal::KiGone),
    })
}

async fn assess(State(app): State<Arc<App>>, ctx: Ctx, Path(id): Path<String>, Form(f): Form<AssessForm>) -> Response {
    let (user, token) = match ctx.user() {
        Ok(u) => u,
        Err(r) => return r,
    };
    let lang = ctx.lang;
    let Ok(call_id) = CallId::parse(&id) else {
        return ctx.error(StatusCode::NOT_FOUND, cat::qa::UNKNOWN_CALL);
    };
    let subject = format!("call:{call_id}");
    if let Err(r) = app.check_form(&ctx, (user, token), &f.csrf, "qa.score", &subject).await {
        return r;
    }
    let attempt = match check(&f) {
        Ok(score) => {
            return match store_score(&app, Reply::Html(lang), user, &call_id, score).await {
                Ok(()) => {
                    let channel = app.qa.call(&call_id).await.ok().flatten().map(|c| c.row.channel);
                    let href = item_href(channel.as_deref().unwrap_or(PHONE), call_id.as_str());
                    Redirect::to(&format!("{href}#qa")).into_response()
                }
                Err(r) => r,
            };
        }
        Err(attempt) => attempt,
    };
    match may_score(&app, user, &call_id).await {
        Err(e) => return internal(lang, e),
        Ok(Err(refusal)) => return refuse(&app, Reply::Html(lang), user, &subject, &refusal).await,
        Ok(Ok(())) => {}
    }
    let fields: Vec<&str> = attempt.errors.iter().map(|(f, _)| *f).collect();
    if let Err(e) = app
        .audit(
            user,
            "qa.score",
            &subject,
            &format!("form check: {}", fields.join(", ")),
            "failed",
        )
        .await
    {
        return internal(lang, e);
    }
    let channel = app.qa.call(&call_id).await.ok().flatten().map(|c| c.row.channel);
    if channel.as_deref().is_some_and(|c| c != PHONE) {
        // A conversation's form again on its page: the answers it scores.
        return conversation(&app, &ctx, &call_id, Some(&attempt)).await;
    }
    let back = item_href(channel.as_deref().unwrap_or(PHONE), call_id.as_str());
    let form = section_with(&app, lang, user, token, &call_id, Some(&attempt)).await;
    let mut r = ctx.page(
        &lang.f(cat::qa::ASSESS_CALL, &[("id", call_id.as_str())]),
        html! {
            p { a href=(back) { (lang.m(cat::qa::BACK_TO_THE_CALL)) } }
            (form)
        },
    );
    *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    r
}

/// Stores `user`'s assessment of a sampled call, audited either way (the
/// JSON API's entry; the page checks its form first).
pub(crate) async fn score_call(
    app: &App,
    reply: Reply,
    user: &User,
    call_id: &CallId,
    flag: &str,
    [correctness, relevance, quality]: [u8; 3],
    note: String,
) -> Result<(), Response> {
    let flag = match flag {
        "" => None,
        other => match QaFlag::parse(other) {
            Some(flag) => Some(flag),
            None => {
                let subject = format!("call:{call_id}");
                if let Err(e) = app
                    .audit(user, "qa.score", &subject, "form check: flag", "failed")
                    .await
                {
                    return Err(reply.internal(e));
                }
                return Err(reply.error(StatusCode::BAD_REQUEST, cat::qa::FLAG_UNKNOWN));
            }
        },
    };
    let score = QaScore {
        correctness,
        relevance,
        quality,
        flag,
        note,
    };
    store_score(app, reply, user, call_id, score).await
}

/// Stores a checked assessment; a refusal is audited (`refused` for
/// access, `failed` for an invalid assessment) and answered.
async fn store_score(app: &App, reply: Reply, user: &User, call_id: &CallId, score: QaScore) -> Result<(), Response> {
    let subject = format!("call:{call_id}");
    let flag = score.flag;
    match app.qa.score(user, call_id, score).await {
        Ok(()) => {
            let reason = flag.map_or("", |f| f.as_str());
            app.audit(user, "qa.score", &subject, reason, "allowed")
                .await
                .map_err(|e| reply.internal(e))
        }
        Err(e) => match e.downcast_ref::<Refusal>() {
            Some(refusal) => Err(refuse(app, reply, user, &subject, refusal).await),
            None => Err(reply.internal(e)),
        },
    }
}

/// Audits and answers a [`Refusal`]: access (`refused`, 403/410) or an
/// invalid assessment (`failed`, 400: a form check, not an access denial).
async fn refuse(app: &App, reply: Reply, user: &User, subject: &str, refusal: &Refusal) -> Response {
    let (status, msg, outcome) = match refusal {
        Refusal::NotQa => (StatusCode::FORBIDDEN, cat::qa::ONLY_QA_SCORES, "refused"),
        Refusal::NotSampled => (StatusCode::FORBIDDEN, cat::qa::NOT_SAMPLED, "refused"),
        Refusal::KiGone => (StatusCode::GONE, cat::qa::KI_GONE, "refused"),
        Refusal::Invalid(_) => (StatusCode::BAD_REQUEST, cat::qa::INVALID_ASSESSMENT, "failed"),
    };
    let reason = match refusal {
        Refusal::Invalid(_) => "form check",
        _ => "",
    };
    if let Err(e) = app.audit(user, "qa.score", subject, reason, outcome).await {
        return reply.internal(e);
    }
    reply.error(status, msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn screening_reasons_read_in_the_page_language() {
        let lexicon = "screening: lexicon term innvandrer (ethnicity)";
        assert_eq!(
            screening_reason(Lang::Nb, lexicon),
            "screening: ordet «innvandrer» (etnisitet)"
        );
        assert_eq!(
            screening_reason(Lang::En, lexicon),
            "screening: the term “innvandrer” (ethnicity)"
        );
        let model = "screening: language model (qwen, screen-v1)";
        assert_eq!(
            screening_reason(Lang::Nb, model),
            "screening: språkmodellen (qwen, screen-v1) flagget utkastet"
        );
        assert_eq!(
            screening_reason(Lang::Nb, "screening: something new"),
            "screening flagget utkastet"
        );
    }

    #[test]
    fn the_form_check_names_each_field() {
        let form = |c: Option<&str>, flag: &str, note: &str| AssessForm {
            csrf: String::new(),
            correctness: c.map(str::to_owned),
            relevance: Some("3".into()),
            quality: Some("9".into()),
            flag: flag.into(),
            note: note.into(),
        };
        let fields = |f: AssessForm| {
            check(&f)
                .map(|_| ())
                .map_err(|a| a.errors.iter().map(|e| e.0).collect::<Vec<_>>())
        };
        assert_eq!(
            fields(form(None, "unexpected", " ")),
            Err(vec!["correctness", "quality", "note"])
        );
        assert_eq!(fields(form(Some("2"), "odd", "x")), Err(vec!["quality", "flag"]));
        let ok = AssessForm {
            quality: Some("5".into()),
            ..form(Some("1"), "discriminatory", "Why.")
        };
        assert_eq!(fields(ok), Ok(()));
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct Range {
    /// First day, `YYYY-MM-DD` (default: 29 days before today, UTC).
    pub(crate) from: Option<String>,
    /// Last day, `YYYY-MM-DD` (default: today, UTC).
    pub(crate) to: Option<String>,
}

impl Range {
    /// The requested days, by default the 30 days up to today (UTC).
    pub(crate) fn days(&self, now_us: i64) -> (String, String) {
        let to = self
            .to
            .clone()
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| opptak_domain::time::utc_day(now_us));
        let from = self
            .from
            .clone()
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| opptak_domain::time::utc_day(now_us - 29 * 86_400_000_000));
        (from, to)
    }

    /// What is wrong with the range: `(field, message)` for each field.
    fn errors(&self, now_us: i64) -> Vec<(&'static str, Msg)> {
        let (from, to) = self.days(now_us);
        let day = |d: &str| d.parse::<opptak_domain::time::Day>().ok();
        let mut out = Vec::new();
        if day(&from).is_none() {
            out.push(("from", cat::qa::BAD_DAY));
        }
        if day(&to).is_none() {
            out.push(("to", cat::qa::BAD_DAY));
        }
        if let (Some(f), Some(t)) = (day(&from), day(&to)) {
            if f > t {
                out.push(("from", cat::qa::EMPTY_RANGE));
            }
        }
        out
    }
}

/// May `user` read the report? The refusal, audited, if not.
async fn report_access(app: &App, reply: Reply, user: &User) -> Result<(), Response> {
    if reads_report(user.role) {
        return Ok(());
    }
    if let Err(e) = app.audit(user, "qa.report", "qa", "", "refused").await {
        return Err(reply.internal(e));
    }
    Err(reply.error(StatusCode::FORBIDDEN, cat::qa::YOUR_ROLE_HAS_NO_ACCESS_TO))
}

/// The report for a role that may read it, or the audited refusal.
pub(crate) async fn report_for(app: &App, reply: Reply, user: &User, q: &Range) -> Result<QaReport, Response> {
    report_access(app, reply, user).await?;
    let now = app.edges.vault.clock().now_us();
    if let Some((_, msg)) = q.errors(now).first() {
        return Err(reply.error(StatusCode::BAD_REQUEST, *msg));
    }
    let (from, to) = q.days(now);
    let k = u64::from(app.edges.config.web.dashboard_k);
    let report = app.qa.report(&from, &to).await.map_err(|e| reply.internal(e))?;
    if let Err(e) = app
        .audit(user, "qa.report", &format!("qa:{from}..{to}"), "", "allowed")
        .await
    {
        return Err(reply.internal(e));
    }
    Ok(report.suppress(k))
}

/// A mean score with two decimals (`3,50`), `–` with nothing to average.
fn mean(lang: Lang, v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_owned(), |m| format::number(lang, m, 2))
}

/// The report's date form; `errors` by field, the typed values kept.
fn range_form(lang: Lang, from: &str, to: &str, errors: &[(&'static str, Msg)]) -> Markup {
    let err = |field: &str| errors.iter().find(|(f, _)| *f == field).map(|(_, m)| *m);
    let field = |name: &'static str, label: Msg, value: &str| {
        let e = err(name);
        html! {
            label {
                (lang.m(label))
                input type="date" name=(name) id=(name) value=(value)
                    aria-invalid=[e.map(|_| "true")] aria-describedby=[e.map(|_| format!("{name}-error"))];
            }
            @if let Some(m) = e { p.field-error id={ (name) "-error" } { (lang.m(m)) } }
        }
    };
    html! {
        @if !errors.is_empty() {
            div.errors.error-summary role="alert" {
                p { strong { (lang.m(cat::qa::REPORT_NOT_SHOWN)) } }
                ul { @for (f, m) in errors { li { a href={ "#" (f) } { (lang.m(*m)) } } } }
            }
        }
        form.filters method="get" action="/qa/report" {
            (field("from", cat::qa::FROM_2, from))
            (field("to", cat::qa::TO, to))
            button type="submit" { (lang.m(cat::qa::SHOW)) }
        }
    }
}

async fn report_page(State(app): State<Arc<App>>, ctx: Ctx, Query(q): Query<Range>) -> Response {
    let (user, _) = match ctx.page_user() {
        Ok(u) => u,
        Err(r) => return r,
    };
    let lang = ctx.lang;
    if let Err(r) = report_access(&app, Reply::Html(lang), user).await {
        return r;
    }
    let now = app.edges.vault.clock().now_us();
    let errors = q.errors(now);
    if !errors.is_empty() {
        let (from, to) = q.days(now);
        let mut r = ctx.page(
            lang.m(cat::qa::QA_REPORT),
            html! { (style()) (range_form(lang, &from, &to, &errors)) },
        );
        *r.status_mut() = StatusCode::BAD_REQUEST;
        return r;
    }
    let report = match report_for(&app, Reply::Html(lang), user, &q).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let k = app.edges.config.web.dashboard_k;
    let taxonomy = app.review.taxonomy();
    let n = |v: u64| format::count(lang, v);
    let withheld = |cols: usize| {
        html! { td colspan=(cols) { (lang.f(cat::qa::WITHHELD_FEWER_THAN_K, &[("k", &k.to_string())])) } }
    };
    let head = |t: &TopicStats, total: bool| {
        html! {
            @if total { th scope="row" { (lang.m(cat::qa::TOTAL)) } }
            @else { th scope="row" { (topic_name(lang, taxonomy, &t.topic)) } }
        }
    };
    let flags = |v: u64| html! { @if v > 0 { strong.flag { (n(v)) } } @else { "0" } };
    let scores_row = |t: &TopicStats, total: bool| {
        html! { tr {
            (head(t, total))
            @if t.suppressed { (withheld(8)) } @else {
                td.n { (n(t.drafted)) } td.n { (n(t.sampled)) } td.n { (n(t.scored)) }
                td.n { (mean(lang, t.mean_correctness)) } td.n { (mean(lang, t.mean_relevance)) } td.n { (mean(lang, t.mean_quality)) }
                td.n { (flags(t.flagged_discriminatory)) } td.n { (flags(t.flagged_unexpected)) }
            }
        } }
    };
    let decisions_row = |t: &TopicStats, total: bool| {
        html! { tr {
            (head(t, total))
            @if t.suppressed { (withheld(5)) } @else {
                td.n { (n(t.drafted)) } td.n { (n(t.approved)) } td.n { (n(t.rejected)) }
                td.n { (t.mean_edit_distance.map_or_else(|| "–".to_owned(), |m| format::number(lang, m, 1))) }
                td.n { (t.mean_changed_share.map_or_else(|| "–".to_owned(), |m| format::percent(lang, m, 0))) }
            }
        } }
    };
    let csv = format!("/qa/report.csv?from={}&to={}", report.from_day, report.to_day);
    let range = lang.f(
        cat::qa::REPORT_RANGE,
        &[
            ("from", &day_name(lang, &report.from_day)),
            ("to", &day_name(lang, &report.to_day)),
        ],
    );
    ctx.page(
        lang.m(cat::qa::QA_REPORT),
        html! {
            (style())
            (range_form(lang, &report.from_day, &report.to_day, &[]))
            p { (range) " " a href=(csv) download { (lang.m(cat::qa::DOWNLOAD_AS_CSV)) } }
            div.scroll tabindex="0" role="region" aria-label=(lang.m(cat::qa::ASSESSMENTS_CAPTION)) {
            table.qa.topics {
                caption { (lang.m(cat::qa::ASSESSMENTS_CAPTION)) }
                thead {
                    tr {
                        td {}
                        th scope="colgroup" colspan="3" .group { (lang.m(cat::qa::CALLS_GROUP)) }
                        th scope="colgroup" colspan="3" .group { (lang.m(cat::qa::MEANS_GROUP)) " (1–5)" }
                        th scope="colgroup" colspan="2" .group { (lang.m(cat::qa::FLAGS_GROUP)) }
                    }
                    (heads(lang, cat::qa::TOPIC, &[cat::qa::DRAFTS, cat::qa::SAMPLED, cat::qa::SCORED,
                        cat::qa::CORRECTNESS, cat::qa::RELEVANCE, cat::qa::QUALITY, cat::qa::DISCRIMINATORY_2, cat::qa::UNEXPECTED]))
                }
                tbody { @for t in &report.topics { (scores_row(t, false)) } }
                tfoot { (scores_row(&report.total, true)) }
            }
            }
            div.scroll tabindex="0" role="region" aria-label=(lang.m(cat::qa::DECISIONS_CAPTION)) {
            table.qa.decisions {
                caption { (lang.m(cat::qa::DECISIONS_CAPTION)) }
                thead { (heads(lang, cat::qa::TOPIC, &[cat::qa::DRAFTS, cat::qa::APPROVED, cat::qa::REJECTED,
                    cat::qa::CHANGED_WORDS, cat::qa::CHANGED_SHARE])) }
                tbody { @for t in &report.topics { (decisions_row(t, false)) } }
                tfoot { (decisions_row(&report.total, true)) }
            }
            }
            p.muted.note { "¹ " (lang.m(cat::qa::CHANGED_NOTE)) }
            h2 { (lang.m(cat::qa::PER_STRATUM)) }
            p.muted { (lang.m(cat::qa::ERROR_RATE_EXPLAINED)) }
            div.scroll tabindex="0" role="region" aria-label=(lang.m(cat::qa::STRATA_CAPTION)) {
            table.qa.strata {
                caption { (lang.m(cat::qa::STRATA_CAPTION)) }
                thead { (heads(lang, cat::qa::STRATUM, &[cat::qa::CALLS, cat::qa::SAMPLED, cat::qa::SCORED,
                    cat::qa::ERROR_RATE, cat::qa::FLAG_RATE, cat::qa::SCREENING_HITS])) }
                tbody { @for s in &report.strata { (stratum_row(lang, taxonomy, k, s, false)) } }
                tfoot { (stratum_row(lang, taxonomy, k, &report.strata_total, true)) }
            }
            }
        },
    )
}

/// A table's head row: the row heads' column, then numbers' columns.
fn heads(lang: Lang, first: Msg, numbers: &[Msg]) -> Markup {
    html! { tr {
        th scope="col" { (lang.m(first)) }
        @for m in numbers { th scope="col" .n { (lang.m(*m)) @if *m == cat::qa::CHANGED_SHARE { " ¹" } } }
    } }
}

/// A rate with its count and interval: `12 %`, under it `3 av 25, 95 %:
/// 4–27 %`; `–` with nothing to count.
fn rate(lang: Lang, r: Option<Rate>) -> Markup {
    match r {
        None => html! { "–" },
        Some(r) => html! {
            (format::percent(lang, r.share(), 0))
            small { (lang.f(cat::qa::RATE_DETAIL, &[
                ("x", &format::count(lang, r.x)),
                ("n", &format::count(lang, r.n)),
                ("low", &format::percent(lang, r.low, 0)),
                ("high", &format::percent(lang, r.high, 0)),
            ])) }
        },
    }
}

fn stratum_row(lang: Lang, taxonomy: &Taxonomy, k: u32, s: &StratumStats, total: bool) -> Markup {
    let last = if s.recognition_failed {
        lang.m(cat::qa::RECOGNITION_FAILED)
    } else if !s.channel.is_empty() && s.channel != PHONE {
        labels::channel(lang, &s.channel)
    } else {
        lang.m(cat::qa::RECOGNITION_OK)
    };
    html! {
        tr {
            @if total {
                th scope="row" { (lang.m(cat::qa::TOTAL)) }
            } @else {
                th scope="row" {
                    (topic_name(lang, taxonomy, &s.topic)) br;
                    small.muted { (labels::desk(lang, &s.desk)) " · " (language_name(lang, &s.language)) " · " (last) }
                }
            }
            @if s.suppressed {
                td colspan="6" { (lang.f(cat::qa::WITHHELD_FEWER_THAN_K, &[("k", &k.to_string())])) }
            } @else {
                td.n { (format::count(lang, s.calls)) } td.n { (format::count(lang, s.sampled)) } td.n { (format::count(lang, s.scored)) }
                td.n.rate { (rate(lang, s.error_rate)) } td.n.rate { (rate(lang, s.flag_rate)) } td.n.rate { (rate(lang, s.screening_rate)) }
            }
        }
    }
}

async fn report_csv(State(app): State<Arc<App>>, ctx: Ctx, Query(q): Query<Range>) -> Response {
    let (user, _) = match ctx.page_user() {
        Ok(u) => u,
        Err(r) => return r,
    };
    let report = match report_for(&app, Reply::Html(ctx.lang), user, &q).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    csv_response(
        report.to_csv(),
        &format!("opptak-qa-{}-{}.csv", report.from_day, report.to_day),
    )
}

/// A CSV download.
pub(crate) fn csv_response(body: String, filename: &str) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    r
}
