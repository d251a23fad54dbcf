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

use super::{cat, csrf_of, internal, App, Ctx, Lang, Reply};
use crate::dashboard::channel_label;
use crate::identity::{Role, User};
use crate::qa::{QaFlag, QaReport, QaReview, QaScore, Rate, Refusal, StratumStats, TopicStats, RECOGNITION_FAILED};
use axum::extract::{Form, Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup};
use opptak_domain::model::{CallId, Sender};
use opptak_store::reporting::PHONE;
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

async fn queue(State(app): State<Arc<App>>, ctx: Ctx) -> Response {
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
    let (rows, strata) = match (app.qa.queue().await, app.qa.strata().await) {
        (Ok(r), Ok(s)) => (r, s),
        (Err(e), _) | (_, Err(e)) => return internal(lang, e),
    };
    let share = app.qa.share();
    ctx.page(ctx.lang.m(cat::qa::QUALITY_ASSURANCE),
        html! {
            p { (lang.m(cat::qa::SHARE_SAMPLED_PER_STRATUM_TOPIC_DESK))
                strong { (format!("{:.0} %", share * 100.0)) }
                (lang.m(cat::qa::THE_FIRST_CALL_OF_EVERY_STRATUM)) }
            @if rows.is_empty() {
                p { (lang.m(cat::qa::NO_CALLS_ARE_WAITING_FOR_QA)) }
            } @else {
                table {
                    thead { tr {
                        th scope="col" { (lang.m(cat::qa::CALL)) }
                        th scope="col" { (lang.m(cat::qa::CHANNEL)) }
                        th scope="col" { (lang.m(cat::qa::DAY)) }
                        th scope="col" { "Desk" }
                        th scope="col" { (lang.m(cat::qa::LANGUAGE)) }
                        th scope="col" { (lang.m(cat::qa::TOPIC)) }
                        th scope="col" { (lang.m(cat::qa::SCORED_BY)) }
                        th scope="col" { (lang.m(cat::qa::WHY)) }
                    } }
                    tbody {
                        @for r in &rows {
                            tr {
                                td { a href=(item_href(&r.channel, &r.call_id)) { (r.call_id) } }
                                td { (channel_label(&r.channel, lang.code())) }
                                td { (r.day) }
                                td { (r.desk) }
                                td { (r.language) }
                                td { (r.topic) }
                                td {
                                    @if r.reviewers.is_empty() { span.muted { (lang.m(cat::qa::NO_ONE_YET)) } }
                                    @else { (r.reviewers.join(", ")) }
                                }
                                td.reasons {
                                    @for why in &r.reasons {
                                        @if why == RECOGNITION_FAILED {
                                            strong.flag { (lang.m(cat::qa::RECOGNITION_FAILED_LISTEN)) } br;
                                        } @else if why.starts_with("screening") {
                                            strong.flag { (why) } br;
                                        } @else if why == "sample" {
                                            (lang.m(cat::qa::SAMPLE)) br;
                                        } @else { (why) br; }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            details {
                summary { (lang.m(cat::qa::STRATA)) }
                table {
                    thead { tr { th scope="col" { "Stratum" } th scope="col" { (lang.m(cat::qa::SEEN)) } th scope="col" { (lang.m(cat::qa::SAMPLED)) } } }
                    tbody { @for s in &strata { tr { td { (s.stratum) } td { (s.seen) } td { (s.sampled) } } } }
                }
            }
            p { a href="/qa/report" { (lang.m(cat::qa::QA_REPORT)) } }
        },
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
    let (user, token) = match ctx.user() {
        Ok(u) => u,
        Err(_) => return Redirect::to("/login").into_response(),
    };
    let lang = ctx.lang;
    let Ok(call_id) = CallId::parse(&id) else {
        return ctx.error(StatusCode::NOT_FOUND, cat::qa::UNKNOWN_CONVERSATION);
    };
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
        _ => crate::qa::SampleAccess::NotSampled,
    };
    let copy = match access {
        crate::qa::SampleAccess::Readable => match app.qa.analysis_copy(&call_id).await {
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
    let qa = section(&app, lang, user, token, &call_id).await;
    let sender = |s: Sender| match s {
        Sender::Customer => lang.m(cat::qa::CUSTOMER),
        Sender::Bot => "Aino",
        Sender::Advisor => lang.m(cat::qa::ADVISOR),
    };
    ctx.page(ctx.lang.m(cat::qa::CONVERSATION_QA),
        html! {
            p { (channel_label(&indexed.row.channel, lang.code())) ", " (indexed.row.day) ", desk " (indexed.row.desk)
                ", " (lang.m(cat::qa::LANGUAGE_2)) (indexed.row.language) ", " (lang.m(cat::qa::TOPICS)) (indexed.row.topics.join(", ")) }
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
    )
}

/// The assessment section of the call page for a QA reviewer: earlier
/// assessments and the form.
pub(crate) async fn section(app: &App, lang: Lang, user: &User, token: &str, call_id: &CallId) -> Markup {
    let reviews: Vec<QaReview> = app.qa.reviews(call_id).await.unwrap_or_default();
    let screening = app.qa.screening(call_id).await.ok().flatten().filter(|s| s.flagged());
    let indexed = app.qa.call(call_id).await.ok().flatten();
    let failed = indexed.as_ref().is_some_and(|c| c.row.recognition_failed);
    // A conversation's KI output is the bot's answers, not a summary.
    let bot = indexed.as_ref().is_some_and(|c| c.row.channel != PHONE);
    let mine = reviews.iter().find(|r| r.reviewer == user.actor());
    let score_field = |name: &str, label: &str, current: Option<u8>| {
        html! {
            fieldset {
                legend { (label) }
                @for v in 1..=5u8 {
                    label { input type="radio" name=(name) value=(v) required checked[current == Some(v)]; " " (v) } " "
                }
            }
        }
    };
    html! {
        h2 #qa { (lang.m(cat::qa::QUALITY_ASSESSMENT)) }
        @if failed {
            p { strong.flag { (lang.m(cat::qa::SPEECH_RECOGNITION_FAILED_LISTEN_TO_THE)) } }
        }
        @if let Some(s) = &screening {
            p.screening { strong.flag { (lang.m(cat::qa::SCREENING_FLAGGED_THE_DRAFT)) }
                (s.reasons().join("; ")) }
        }
        @if !reviews.is_empty() {
            table {
                thead { tr {
                    th scope="col" { (lang.m(cat::qa::BY)) }
                    th scope="col" { (lang.m(cat::qa::CORRECTNESS)) }
                    th scope="col" { (lang.m(cat::qa::RELEVANCE)) }
                    th scope="col" { (lang.m(cat::qa::QUALITY)) }
                    th scope="col" { (lang.m(cat::qa::FLAG)) }
                    th scope="col" { (lang.m(cat::qa::NOTE)) }
                } }
                tbody { @for r in &reviews { tr {
                    td { (r.reviewer) }
                    td { (r.correctness) } td { (r.relevance) } td { (r.quality) }
                    td { @if let Some(f) = r.flag { strong.flag { (flag_name(lang, f)) } } }
                    td { (r.note.as_deref().unwrap_or(lang.m(cat::qa::KI_DATA_ERASED))) }
                } } }
            }
        }
        form method="post" action={ "/calls/" (call_id) "/qa" } {
            input type="hidden" name="csrf" value=(csrf_of(token));
            @if bot {
                (score_field("correctness", lang.m(cat::qa::CORRECTNESS_ARE_AINO_S_ANSWERS_RIGHT), mine.map(|r| r.correctness)))
                (score_field("relevance", lang.m(cat::qa::RELEVANCE_DOES_AINO_ANSWER_WHAT_THE), mine.map(|r| r.relevance)))
            } @else {
                (score_field("correctness", lang.m(cat::qa::CORRECTNESS_DOES_THE_SUMMARY_MATCH_THE), mine.map(|r| r.correctness)))
                (score_field("relevance", lang.m(cat::qa::RELEVANCE_DOES_IT_KEEP_WHAT_MATTERS), mine.map(|r| r.relevance)))
            }
            (score_field("quality", lang.m(cat::qa::QUALITY_LANGUAGE_AND_FORM), mine.map(|r| r.quality)))
            p { label { (lang.m(cat::qa::FLAG_2)) select name="flag" {
                option value="" { (lang.m(cat::qa::NONE)) }
                option value="discriminatory" selected[mine.and_then(|r| r.flag) == Some(QaFlag::Discriminatory)] { (flag_name(lang, QaFlag::Discriminatory)) }
                option value="unexpected" selected[mine.and_then(|r| r.flag) == Some(QaFlag::Unexpected)] { (flag_name(lang, QaFlag::Unexpected)) }
            } } }
            p { label for="note" { (lang.m(cat::qa::NOTE_REQUIRED_WITH_A_FLAG)) } br;
                textarea #note name="note" rows="3" cols="80" { (mine.and_then(|r| r.note.clone()).unwrap_or_default()) } }
            button type="submit" { (lang.m(cat::qa::SAVE_ASSESSMENT)) }
        }
    }
}

fn flag_name(lang: Lang, f: QaFlag) -> &'static str {
    match f {
        QaFlag::Discriminatory => lang.m(cat::qa::DISCRIMINATORY),
        QaFlag::Unexpected => lang.m(cat::qa::UNEXPECTED_CONTENT),
    }
}

#[derive(Deserialize)]
struct AssessForm {
    csrf: String,
    correctness: u8,
    relevance: u8,
    quality: u8,
    #[serde(default)]
    flag: String,
    #[serde(default)]
    note: String,
}

async fn assess(State(app): State<Arc<App>>, ctx: Ctx, Path(id): Path<String>, Form(f): Form<AssessForm>) -> Response {
    let (user, token) = match ctx.user() {
        Ok(u) => u,
        Err(r) => return r,
    };
    let Ok(call_id) = CallId::parse(&id) else {
        return ctx.error(StatusCode::NOT_FOUND, cat::qa::UNKNOWN_CALL);
    };
    let subject = format!("call:{call_id}");
    if let Err(r) = app.check_form(&ctx, (user, token), &f.csrf, "qa.score", &subject).await {
        return r;
    }
    match score_call(
        &app,
        Reply::Html(ctx.lang),
        user,
        &call_id,
        &f.flag,
        [f.correctness, f.relevance, f.quality],
        f.note,
    )
    .await
    {
        Ok(()) => {
            let channel = app.qa.call(&call_id).await.ok().flatten().map(|c| c.row.channel);
            let href = item_href(channel.as_deref().unwrap_or(PHONE), call_id.as_str());
            Redirect::to(&format!("{href}#qa")).into_response()
        }
        Err(r) => r,
    }
}

/// Stores `user`'s assessment of a sampled call, audited either way.
pub(crate) async fn score_call(
    app: &App,
    reply: Reply,
    user: &User,
    call_id: &CallId,
    flag: &str,
    [correctness, relevance, quality]: [u8; 3],
    note: String,
) -> Result<(), Response> {
    let subject = format!("call:{call_id}");
    let flag = match flag {
        "" => None,
        other => match QaFlag::parse(other) {
            Some(flag) => Some(flag),
            None => return Err(reply.error(StatusCode::BAD_REQUEST, cat::qa::UNKNOWN_FLAG)),
        },
    };
    let score = QaScore {
        correctness,
        relevance,
        quality,
        flag,
        note,
    };
    match app.qa.score(user, call_id, score).await {
        Ok(()) => {
            let reason = flag.map_or("", |f| f.as_str());
            app.audit(user, "qa.score", &subject, reason, "allowed")
                .await
                .map_err(|e| reply.internal(e))
        }
        Err(e) => {
            let Some(refusal) = e.downcast_ref::<Refusal>() else {
                return Err(reply.internal(e));
            };
            let status = match refusal {
                Refusal::NotQa | Refusal::NotSampled => StatusCode::FORBIDDEN,
                Refusal::Invalid(_) => StatusCode::BAD_REQUEST,
                Refusal::KiGone => StatusCode::GONE,
            };
            if let Err(e) = app.audit(user, "qa.score", &subject, "", "refused").await {
                return Err(reply.internal(e));
            }
            let en = refusal.to_string();
            let nb = match refusal {
                Refusal::NotQa => "Bare kvalitetskontrollører vurderer KI-samtaler.".to_owned(),
                Refusal::NotSampled => "Samtalen er ikke trukket ut til kvalitetskontroll.".to_owned(),
                Refusal::KiGone => "KI-dataene til samtalen er slettet (utløpt eller på forespørsel).".to_owned(),
                Refusal::Invalid(why) => {
                    format!("Vurderingen ble ikke lagret: hver karakter er 1–5, og et flagg krever et notat ({why}).")
                }
            };
            match reply {
                Reply::Html(lang) => Err(super::untranslated(lang, status, lang.pick(&nb, &en))),
                Reply::Json => Err(reply.untranslated(status, &en)),
            }
        }
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
}

/// The report for a role that may read it, or the audited refusal.
pub(crate) async fn report_for(app: &App, reply: Reply, user: &User, q: &Range) -> Result<QaReport, Response> {
    if !reads_report(user.role) {
        if let Err(e) = app.audit(user, "qa.report", "qa", "", "refused").await {
            return Err(reply.internal(e));
        }
        return Err(reply.error(StatusCode::FORBIDDEN, cat::qa::YOUR_ROLE_HAS_NO_ACCESS_TO));
    }
    let (from, to) = q.days(app.edges.vault.clock().now_us());
    let k = u64::from(app.edges.config.web.dashboard_k);
    match app.qa.report(&from, &to).await.map(|r| r.suppress(k)) {
        Ok(r) => {
            if let Err(e) = app
                .audit(user, "qa.report", &format!("qa:{from}..{to}"), "", "allowed")
                .await
            {
                return Err(reply.internal(e));
            }
            Ok(r)
        }
        Err(e) => Err(reply.untranslated(StatusCode::BAD_REQUEST, &e.to_string())),
    }
}

/// A mean with two decimals, with a decimal comma in Norwegian.
fn mean(lang: Lang, v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_owned(), |m| decimal(lang, format!("{m:.2}")))
}

fn decimal(lang: Lang, s: String) -> String {
    match lang {
        Lang::Nb => s.replace('.', ","),
        Lang::En => s,
    }
}

async fn report_page(State(app): State<Arc<App>>, ctx: Ctx, Query(q): Query<Range>) -> Response {
    let (user, _) = match ctx.page_user() {
        Ok(u) => u,
        Err(r) => return r,
    };
    let report = match report_for(&app, Reply::Html(ctx.lang), user, &q).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let lang = ctx.lang;
    let k = app.edges.config.web.dashboard_k;
    let row = |t: &TopicStats, total: bool| {
        html! {
            tr {
                @if total { th scope="row" { (lang.m(cat::qa::TOTAL)) } } @else { th scope="row" { (t.topic) } }
                @if t.suppressed {
                    td colspan="13" { (lang.f(cat::qa::WITHHELD_FEWER_THAN_K, &[("k", &k.to_string())])) }
                } @else {
                td { (t.drafted) } td { (t.sampled) } td { (t.scored) }
                td { (mean(lang, t.mean_correctness)) } td { (mean(lang, t.mean_relevance)) } td { (mean(lang, t.mean_quality)) }
                td { @if t.flagged_discriminatory > 0 { strong.flag { (t.flagged_discriminatory) } } @else { "0" } }
                td { @if t.flagged_unexpected > 0 { strong.flag { (t.flagged_unexpected) } } @else { "0" } }
                td { (t.approved) } td { (t.rejected) }
                td { (mean(lang, t.mean_edit_distance)) }
                td { (t.mean_edit_distance_per_draft_word.map_or_else(|| "–".to_owned(), |m| format!("{:.0} %", m * 100.0))) }
                }
            }
        }
    };
    let csv = format!("/qa/report.csv?from={}&to={}", report.from_day, report.to_day);
    ctx.page(
        ctx.lang.m(cat::qa::QA_REPORT),
        html! {
            form method="get" action="/qa/report" {
                label { (lang.m(cat::qa::FROM_2)) input type="date" name="from" value=(report.from_day); } " "
                label { (lang.m(cat::qa::TO)) input type="date" name="to" value=(report.to_day); } " "
                button type="submit" { (lang.m(cat::qa::SHOW)) }
            }
            table.topics {
                thead { tr {
                    th scope="col" { (lang.m(cat::qa::TOPIC)) }
                    th scope="col" { (lang.m(cat::qa::DRAFTS)) }
                    th scope="col" { (lang.m(cat::qa::SAMPLED)) }
                    th scope="col" { (lang.m(cat::qa::SCORED)) }
                    th scope="col" { (lang.m(cat::qa::CORRECTNESS)) }
                    th scope="col" { (lang.m(cat::qa::RELEVANCE)) }
                    th scope="col" { (lang.m(cat::qa::QUALITY)) }
                    th scope="col" { (lang.m(cat::qa::DISCRIMINATORY_2)) }
                    th scope="col" { (lang.m(cat::qa::UNEXPECTED)) }
                    th scope="col" { (lang.m(cat::qa::APPROVED)) }
                    th scope="col" { (lang.m(cat::qa::REJECTED)) }
                    th scope="col" { (lang.m(cat::qa::EDIT_DISTANCE_WORDS)) }
                    th scope="col" { (lang.m(cat::qa::SHARE_CHANGED)) }
                } }
                tbody { @for t in &report.topics { (row(t, false)) } }
                tfoot { (row(&report.total, true)) }
            }
            p { a href=(csv) download { (lang.m(cat::qa::DOWNLOAD_AS_CSV)) } }
            h2 { (lang.m(cat::qa::PER_STRATUM)) }
            p.muted { (lang.m(cat::qa::ERROR_RATE_SCORED_CALLS_WHOSE_CORRECTNESS)) }
            table.strata {
                thead { tr {
                    th scope="col" { (lang.m(cat::qa::TOPIC)) }
                    th scope="col" { "Desk" }
                    th scope="col" { (lang.m(cat::qa::LANGUAGE)) }
                    th scope="col" { (lang.m(cat::qa::SPEECH_RECOGNITION_CONVERSATIONS_CHANNEL)) }
                    th scope="col" { (lang.m(cat::qa::CALLS)) }
                    th scope="col" { (lang.m(cat::qa::SAMPLED)) }
                    th scope="col" { (lang.m(cat::qa::SCORED)) }
                    th scope="col" { (lang.m(cat::qa::ERROR_RATE)) }
                    th scope="col" { (lang.m(cat::qa::FLAG_RATE)) }
                    th scope="col" { (lang.m(cat::qa::SCREENING_HITS)) }
                } }
                tbody { @for s in &report.strata { (stratum_row(lang, k, s, false)) } }
                tfoot { (stratum_row(lang, k, &report.strata_total, true)) }
            }
        },
    )
}

/// A rate with its interval: `12 % [4–27 %] (3/25)`; `–` with nothing to count.
fn rate(lang: Lang, r: Option<Rate>) -> String {
    r.map_or_else(
        || "–".to_owned(),
        |r| {
            decimal(
                lang,
                format!(
                    "{:.0} % [{:.0}–{:.0} %] ({}/{})",
                    r.share() * 100.0,
                    r.low * 100.0,
                    r.high * 100.0,
                    r.x,
                    r.n
                ),
            )
        },
    )
}

fn stratum_row(lang: Lang, k: u32, s: &StratumStats, total: bool) -> Markup {
    html! {
        tr {
            @if total {
                th scope="row" colspan="4" { (lang.m(cat::qa::TOTAL)) }
            } @else {
                th scope="row" { (s.topic) } td { (s.desk) } td { (s.language) }
                td { @if s.recognition_failed { strong.flag { (lang.m(cat::qa::FAILED)) } }
                    @else if !s.channel.is_empty() && s.channel != PHONE { (channel_label(&s.channel, lang.code())) }
                    @else { "ok" } }
            }
            @if s.suppressed {
                td colspan="6" { (lang.f(cat::qa::WITHHELD_FEWER_THAN_K, &[("k", &k.to_string())])) }
            } @else {
                td { (s.calls) } td { (s.sampled) } td { (s.scored) }
                td { (rate(lang, s.error_rate)) } td { (rate(lang, s.flag_rate)) } td { (rate(lang, s.screening_rate)) }
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
