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

use super::{csrf_of, internal, App, Ctx, Lang, Reply};
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
        return ctx.error(
            StatusCode::FORBIDDEN,
            "Bare kvalitetskontrollører ser QA-køen.",
            "Only QA reviewers see the QA queue.",
        );
    }
    let (rows, strata) = match (app.qa.queue().await, app.qa.strata().await) {
        (Ok(r), Ok(s)) => (r, s),
        (Err(e), _) | (_, Err(e)) => return internal(lang, e),
    };
    let share = app.qa.share();
    ctx.page(
        ("Kvalitetskontroll", "Quality assurance"),
        html! {
            p { (lang.t("Andel trukket ut per stratum (emne, desk, oppdaget språk, talegjenkjenning feilet; for chat med Aino: kanalen): ", "Share sampled per stratum (topic, desk, detected language, speech recognition failed; for chats with Aino: the channel): "))
                strong { (format!("{:.0} %", share * 100.0)) }
                (lang.t(". Den første samtalen i hvert stratum trekkes alltid, så små grupper blir sett. Utkast som screeningen flagger, kommer hit uansett.",
                        ". The first call of every stratum is always sampled, so small groups are seen. Drafts screening flags come here whatever the sample.")) }
            @if rows.is_empty() {
                p { (lang.t("Ingen samtaler venter på kontroll.", "No calls are waiting for QA.")) }
            } @else {
                table {
                    thead { tr {
                        th scope="col" { (lang.t("Samtale", "Call")) }
                        th scope="col" { (lang.t("Kanal", "Channel")) }
                        th scope="col" { (lang.t("Dag", "Day")) }
                        th scope="col" { "Desk" }
                        th scope="col" { (lang.t("Språk", "Language")) }
                        th scope="col" { (lang.t("Emne", "Topic")) }
                        th scope="col" { (lang.t("Vurdert av", "Scored by")) }
                        th scope="col" { (lang.t("Hvorfor", "Why")) }
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
                                    @if r.reviewers.is_empty() { span.muted { (lang.t("ingen ennå", "no one yet")) } }
                                    @else { (r.reviewers.join(", ")) }
                                }
                                td.reasons {
                                    @for why in &r.reasons {
                                        @if why == RECOGNITION_FAILED {
                                            strong.flag { (lang.t("talegjenkjenning feilet: lytt til samtalen (ikke noe utkast å vurdere)", why)) } br;
                                        } @else if why.starts_with("screening") {
                                            strong.flag { (why) } br;
                                        } @else if why == "sample" {
                                            (lang.t("tilfeldig utvalg", "sample")) br;
                                        } @else { (why) br; }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            details {
                summary { (lang.t("Strata", "Strata")) }
                table {
                    thead { tr { th scope="col" { "Stratum" } th scope="col" { (lang.t("Sett", "Seen")) } th scope="col" { (lang.t("Trukket", "Sampled")) } } }
                    tbody { @for s in &strata { tr { td { (s.stratum) } td { (s.seen) } td { (s.sampled) } } } }
                }
            }
            p { a href="/qa/report" { (lang.t("QA-rapport", "QA report")) } }
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
        return ctx.error(StatusCode::NOT_FOUND, "Ukjent samtale.", "Unknown conversation.");
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
            "Bare kvalitetskontrollører leser uttrukne samtaler, og bare så lenge analysekopien finnes.",
            "Only QA reviewers read sampled conversations, and only while the analysis copy exists.",
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
        Sender::Customer => lang.t("Kunde", "Customer"),
        Sender::Bot => "Aino",
        Sender::Advisor => lang.t("Rådgiver", "Advisor"),
    };
    ctx.page(
        ("Kvalitetskontroll av samtale", "Conversation QA"),
        html! {
            p { (channel_label(&indexed.row.channel, lang.code())) ", " (indexed.row.day) ", desk " (indexed.row.desk)
                ", " (lang.t("språk ", "language ")) (indexed.row.language) ", " (lang.t("emner: ", "topics: ")) (indexed.row.topics.join(", ")) }
            p.muted { (lang.t("Analysekopien: personopplysninger er erstattet med merker. Svarene fra Aino kan inneholde feil; vurder dem.",
                "The analysis copy: personal data replaced by tokens. Aino's answers may contain errors; assess them.")) }
            table {
                thead { tr {
                    th scope="col" { "#" }
                    th scope="col" { (lang.t("Fra", "From")) }
                    th scope="col" { (lang.t("Tekst", "Text")) }
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
        h2 #qa { (lang.t("Kvalitetskontroll", "Quality assessment")) }
        @if failed {
            p { strong.flag { (lang.t("Talegjenkjenningen feilet: lytt til opptaket; det finnes ikke noe utkast å vurdere.", "Speech recognition failed: listen to the recording; there is no draft to score.")) } }
        }
        @if let Some(s) = &screening {
            p.screening { strong.flag { (lang.t("Screening flagget utkastet: ", "Screening flagged the draft: ")) }
                (s.reasons().join("; ")) }
        }
        @if !reviews.is_empty() {
            table {
                thead { tr {
                    th scope="col" { (lang.t("Av", "By")) }
                    th scope="col" { (lang.t("Korrekthet", "Correctness")) }
                    th scope="col" { (lang.t("Relevans", "Relevance")) }
                    th scope="col" { (lang.t("Kvalitet", "Quality")) }
                    th scope="col" { (lang.t("Flagg", "Flag")) }
                    th scope="col" { (lang.t("Notat", "Note")) }
                } }
                tbody { @for r in &reviews { tr {
                    td { (r.reviewer) }
                    td { (r.correctness) } td { (r.relevance) } td { (r.quality) }
                    td { @if let Some(f) = r.flag { strong.flag { (flag_name(lang, f)) } } }
                    td { (r.note.as_deref().unwrap_or(lang.t("(KI-data slettet)", "(KI data erased)"))) }
                } } }
            }
        }
        form method="post" action={ "/calls/" (call_id) "/qa" } {
            input type="hidden" name="csrf" value=(csrf_of(token));
            @if bot {
                (score_field("correctness", lang.t("Korrekthet: er svarene fra Aino riktige?", "Correctness: are Aino's answers right?"), mine.map(|r| r.correctness)))
                (score_field("relevance", lang.t("Relevans: svarer Aino på det kunden spør om?", "Relevance: does Aino answer what the customer asks?"), mine.map(|r| r.relevance)))
            } @else {
                (score_field("correctness", lang.t("Korrekthet: stemmer sammendraget med samtalen?", "Correctness: does the summary match the call?"), mine.map(|r| r.correctness)))
                (score_field("relevance", lang.t("Relevans: tar det med det som betyr noe?", "Relevance: does it keep what matters?"), mine.map(|r| r.relevance)))
            }
            (score_field("quality", lang.t("Kvalitet: språk og form", "Quality: language and form"), mine.map(|r| r.quality)))
            p { label { (lang.t("Flagg ", "Flag ")) select name="flag" {
                option value="" { (lang.t("ingen", "none")) }
                option value="discriminatory" selected[mine.and_then(|r| r.flag) == Some(QaFlag::Discriminatory)] { (flag_name(lang, QaFlag::Discriminatory)) }
                option value="unexpected" selected[mine.and_then(|r| r.flag) == Some(QaFlag::Unexpected)] { (flag_name(lang, QaFlag::Unexpected)) }
            } } }
            p { label for="note" { (lang.t("Notat (påkrevd ved flagg)", "Note (required with a flag)")) } br;
                textarea #note name="note" rows="3" cols="80" { (mine.and_then(|r| r.note.clone()).unwrap_or_default()) } }
            button type="submit" { (lang.t("Lagre vurdering", "Save assessment")) }
        }
    }
}

fn flag_name(lang: Lang, f: QaFlag) -> &'static str {
    match f {
        QaFlag::Discriminatory => lang.t("diskriminerende", "discriminatory"),
        QaFlag::Unexpected => lang.t("uventet innhold", "unexpected content"),
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
        return ctx.error(StatusCode::NOT_FOUND, "Ukjent samtale.", "Unknown call.");
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
            None => return Err(reply.error(StatusCode::BAD_REQUEST, "Ukjent flagg.", "Unknown flag.")),
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
            Err(reply.error(status, &nb, &en))
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
        return Err(reply.error(
            StatusCode::FORBIDDEN,
            "Rollen din gir ikke tilgang til QA-rapporten.",
            "Your role has no access to the QA report.",
        ));
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
        Err(e) => Err(reply.error(StatusCode::BAD_REQUEST, &e.to_string(), &e.to_string())),
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
                @if total { th scope="row" { (lang.t("Totalt", "Total")) } } @else { th scope="row" { (t.topic) } }
                @if t.suppressed {
                    td colspan="13" { (lang.t(&format!("Holdt tilbake: færre enn {k} samtaler"), &format!("Withheld: fewer than {k} calls"))) }
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
        ("QA-rapport", "QA report"),
        html! {
            form method="get" action="/qa/report" {
                label { (lang.t("Fra ", "From ")) input type="date" name="from" value=(report.from_day); } " "
                label { (lang.t("Til ", "To ")) input type="date" name="to" value=(report.to_day); } " "
                button type="submit" { (lang.t("Vis", "Show")) }
            }
            table.topics {
                thead { tr {
                    th scope="col" { (lang.t("Emne", "Topic")) }
                    th scope="col" { (lang.t("Utkast", "Drafts")) }
                    th scope="col" { (lang.t("Trukket", "Sampled")) }
                    th scope="col" { (lang.t("Vurdert", "Scored")) }
                    th scope="col" { (lang.t("Korrekthet", "Correctness")) }
                    th scope="col" { (lang.t("Relevans", "Relevance")) }
                    th scope="col" { (lang.t("Kvalitet", "Quality")) }
                    th scope="col" { (lang.t("Diskriminerende", "Discriminatory")) }
                    th scope="col" { (lang.t("Uventet", "Unexpected")) }
                    th scope="col" { (lang.t("Godkjent", "Approved")) }
                    th scope="col" { (lang.t("Avvist", "Rejected")) }
                    th scope="col" { (lang.t("Redigeringsavstand (ord)", "Edit distance (words)")) }
                    th scope="col" { (lang.t("Andel endret", "Share changed")) }
                } }
                tbody { @for t in &report.topics { (row(t, false)) } }
                tfoot { (row(&report.total, true)) }
            }
            p { a href=(csv) download { (lang.t("Last ned som CSV", "Download as CSV")) } }
            h2 { (lang.t("Per stratum", "Per stratum")) }
            p.muted { (lang.t(
                "Feilrate: vurderte samtaler der korrektheten fikk 2 eller lavere. Flaggrate: vurderte samtaler en kontrollør flagget. Screening: samtaler leksikonet eller språkmodellen flagget. I klammer: 95 % Wilson-intervall.",
                "Error rate: scored calls whose correctness got 2 or less. Flag rate: scored calls a reviewer flagged. Screening: calls the lexicon or the language model flagged. In brackets: 95 % Wilson interval.")) }
            table.strata {
                thead { tr {
                    th scope="col" { (lang.t("Emne", "Topic")) }
                    th scope="col" { "Desk" }
                    th scope="col" { (lang.t("Språk", "Language")) }
                    th scope="col" { (lang.t("Talegjenkjenning (samtaler: kanal)", "Speech recognition (conversations: channel)")) }
                    th scope="col" { (lang.t("Samtaler", "Calls")) }
                    th scope="col" { (lang.t("Trukket", "Sampled")) }
                    th scope="col" { (lang.t("Vurdert", "Scored")) }
                    th scope="col" { (lang.t("Feilrate", "Error rate")) }
                    th scope="col" { (lang.t("Flaggrate", "Flag rate")) }
                    th scope="col" { (lang.t("Screening-treff", "Screening hits")) }
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
                th scope="row" colspan="4" { (lang.t("Totalt", "Total")) }
            } @else {
                th scope="row" { (s.topic) } td { (s.desk) } td { (s.language) }
                td { @if s.recognition_failed { strong.flag { (lang.t("feilet", "failed")) } }
                    @else if !s.channel.is_empty() && s.channel != PHONE { (channel_label(&s.channel, lang.code())) }
                    @else { "ok" } }
            }
            @if s.suppressed {
                td colspan="6" { (lang.t(&format!("Holdt tilbake: færre enn {k} samtaler"), &format!("Withheld: fewer than {k} calls"))) }
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
