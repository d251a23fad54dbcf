//! The call page (R4; issue 18): the call's facts and a status badge in
//! words, the approved summary first once there is one, the AI draft, the
//! decision form beside the player and the transcript ([`super::player`]),
//! the versions with word diffs; decisions confirmed on a page of their own
//! (`/confirm`) before they are final; amendments and reclassification; form
//! errors shown on the page with the input kept (audited as failed); the
//! recording as a WAV in byte ranges and its channels' loudness as an SVG.

use super::cat::Msg;
use super::{cat, csrf_of, format, internal, labels, player, App, Ctx, Lang, Reply};
use crate::identity::{Role, User};
use anyhow::Result;
use axum::extract::{Form, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::html;
use opptak_domain::model::CallId;
use serde::Deserialize;
use std::sync::Arc;

pub(super) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/calls/{id}", get(call_page))
        .route("/calls/{id}/confirm", post(confirm))
        .route("/calls/{id}/decide", post(decide))
        .route("/calls/{id}/amend", post(amend))
        .route("/calls/{id}/reclassify", post(reclassify))
        .route("/calls/{id}/audio", get(audio))
        .route("/calls/{id}/envelope.svg", get(envelope))
}

/// The call page's query: what was just done (`approved`, `saved`, ...),
/// for the message at the top.
#[derive(Deserialize)]
pub(crate) struct CallQuery {
    done: Option<String>,
}

/// The user, their token and the call id of a request about one call.
fn call_request<'a>(ctx: &'a Ctx, id: &str) -> std::result::Result<(&'a User, &'a str, CallId), Response> {
    let (user, token) = ctx.user()?;
    let call_id = CallId::parse(id).map_err(|_| ctx.error(StatusCode::NOT_FOUND, cat::review::UNKNOWN_CALL))?;
    Ok((user, token, call_id))
}

/// A form's field that an error is about (its element id on the page).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    Text,
    Topics,
    RejectReason,
    AmendText,
    AmendReason,
    ReclassReason,
}

impl Field {
    fn id(self) -> &'static str {
        match self {
            Field::Text => "text",
            Field::Topics => "topics",
            Field::RejectReason => "reject-reason",
            Field::AmendText => "amend-text",
            Field::AmendReason => "amend-reason",
            Field::ReclassReason => "reclass-reason",
        }
    }
}

/// What the user typed into the call page's forms, shown again with the
/// error when a post is not accepted (nothing typed is lost).
#[derive(Default)]
struct Entered {
    text: Option<String>,
    topics: Option<Vec<String>>,
    reject_reason: Option<String>,
    amend_text: Option<String>,
    amend_topics: Option<Vec<String>>,
    amend_reason: Option<String>,
    reclass_category: Option<String>,
    reclass_reason: Option<String>,
    /// The message, and the field it is about (`None`: the whole form).
    error: Option<(Msg, Option<Field>)>,
}

impl Entered {
    fn error_on(&self, f: Field) -> Option<Msg> {
        match self.error {
            Some((m, Some(g))) if g == f => Some(m),
            _ => None,
        }
    }
}

async fn call_page(
    State(app): State<Arc<App>>,
    ctx: Ctx,
    Path(id): Path<String>,
    Query(q): Query<CallQuery>,
) -> Response {
    let (user, token, call_id) = match call_request(&ctx, &id) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let view = View {
        app: &app,
        ctx: &ctx,
        user,
        token,
        call_id,
    };
    view.render(StatusCode::OK, q.done.as_deref(), Entered::default()).await
}

/// One rendering of the call page for one user.
struct View<'a> {
    app: &'a App,
    ctx: &'a Ctx,
    user: &'a User,
    token: &'a str,
    call_id: CallId,
}

/// The call's status as the badge says it, and why.
struct Status {
    badge: Msg,
    class: &'static str,
    why: String,
}

impl View<'_> {
    /// The page (with `status`): authorized and audited as a transcript read.
    async fn render(&self, status: StatusCode, done: Option<&str>, entered: Entered) -> Response {
        let (app, ctx, user, token, call_id) = (self.app, self.ctx, self.user, self.token, &self.call_id);
        let lang = ctx.lang;
        let subject = format!("call:{call_id}");
        let call = match app.edges.vault.meta().load_call(call_id).await {
            Ok(c) => c,
            Err(e) => return internal(lang, e),
        };
        if let Err(r) = app
            .authorize_page(ctx, call.as_ref(), &subject, "transcript.read")
            .await
        {
            return r;
        }
        let Some(call) = call else {
            return ctx.error(StatusCode::NOT_FOUND, cat::review::UNKNOWN_CALL);
        };
        let e = &app.edges;
        let transcript = opptak_ki::transcribe::read_transcript(&e.vault, call_id).await;
        let draft = opptak_ki::summarize::read_draft(&e.vault, call_id).await;
        let ki = match opptak_ki::summarize::ki_state(e.vault.meta(), call_id).await {
            Ok(k) => k,
            Err(err) => return internal(lang, anyhow::Error::from(err)),
        };
        let versions = match app.review.versions(call_id).await {
            Ok(v) => v,
            Err(e) => return internal(lang, e),
        };
        let closed = versions.iter().any(|v| v.kind != "edit");
        let approved = versions.iter().any(|v| v.kind == "approved");
        let mine = call.facts.advisor_id == user.user_id && user.role == Role::Advisor;
        let may_amend = approved && (mine || user.role == Role::Compliance);
        let record = if approved {
            crate::review::read_approved(&app.edges, call_id).await.ok()
        } else {
            None
        };
        let record_topics = record
            .as_ref()
            .and_then(|r| serde_json::from_value::<Vec<String>>(r["topics"].clone()).ok());
        // The topics the forms start from: the last version's choice, else
        // the record's (after approval) or the draft's.
        let chosen_topics: Vec<String> = versions
            .iter()
            .rev()
            .find_map(|v| v.topics.clone())
            .or(record_topics)
            .or_else(|| draft.as_ref().ok().map(|d| d.topics.clone()))
            .unwrap_or_default();
        let current = versions
            .iter()
            .rev()
            .find_map(|v| v.text.clone().filter(|_| v.kind != "rejected"))
            .or_else(|| record.as_ref().and_then(|r| r["summary"].as_str().map(str::to_owned)))
            .or_else(|| draft.as_ref().ok().map(|d| d.summary.clone()))
            .unwrap_or_default();
        let qa_section = if user.role == Role::Qa {
            Some(super::qa::section(app, lang, user, token, call_id).await)
        } else {
            None
        };
        let people = match app.identity.users().await {
            Ok(us) => People(us.into_iter().map(|(u, _)| u).collect()),
            Err(e) => return internal(lang, e),
        };
        let next = match done {
            Some("approved" | "rejected") if user.role == Role::Advisor => {
                match app.qa.open_drafts(std::slice::from_ref(&user.user_id)).await {
                    Ok(d) => Some(d.into_iter().find(|d| d.call_id != call_id.as_str())),
                    Err(e) => return internal(lang, e),
                }
            }
            _ => None,
        };
        let status_of = call_status(lang, &call, &ki, &versions, &people);
        let taxonomy = app.review.taxonomy();
        let started = format::when(lang, call.facts.started_at_us);
        let title = lang.f(cat::review::CALL_OF, &[("when", &started)]);
        let done_msg = match done {
            Some("approved") => Some(cat::review::DONE_APPROVED),
            Some("rejected") => Some(cat::review::DONE_REJECTED),
            Some("saved") => Some(cat::review::DONE_SAVED),
            Some("amended") => Some(cat::review::DONE_AMENDED),
            Some("reclassified") => Some(cat::review::DONE_RECLASSIFIED),
            _ => None,
        };
        let decide_open = mine && !closed && draft.is_ok();
        let action = format!("/calls/{call_id}");
        let body = html! {
            style { (CALL_CSS) }
            @if let Some(m) = done_msg {
                div.notice role="status" {
                    p { strong { (lang.m(m)) } }
                    @if let Some(next) = &next {
                        @match next {
                            Some(n) => p { a href={ "/calls/" (n.call_id) } {
                                (lang.f(cat::review::NEXT_DRAFT, &[("when", &format::when(lang, n.started_at_us))]))
                            } }
                            None => p { (lang.m(cat::review::NO_MORE_DRAFTS)) " " a href="/queue" { (lang.m(cat::review::DRAFTS_TO_REVIEW)) } }
                        }
                    }
                }
            }
            @if let Some((msg, field)) = entered.error {
                div.error-summary role="alert" {
                    p { (lang.m(cat::review::FORM_HAS_ERRORS)) }
                    p { @match field {
                        Some(f) => a href={ "#" (f.id()) } { (lang.m(msg)) },
                        None => (lang.m(msg)),
                    } }
                }
            }
            section.call-head aria-label=(lang.m(cat::review::CALL_FACTS)) {
                p.status {
                    (lang.m(cat::review::STATUS)) ": "
                    strong class={ "badge badge-" (status_of.class) } { (lang.m(status_of.badge)) }
                    @if !status_of.why.is_empty() { " — " (status_of.why) }
                }
                dl.facts {
                    dt { (lang.m(cat::review::WHEN)) } dd { (started) }
                    dt { (lang.m(cat::review::ADVISOR)) } dd {
                        (people.name(&call.facts.advisor_id))
                    }
                    dt { (lang.m(cat::review::DESK)) } dd { (labels::desk(lang, call.facts.desk.as_str())) }
                    dt { (lang.m(cat::review::SERVICE)) } dd { (labels::service(lang, call.facts.service_category.as_str())) }
                    dt { (lang.m(cat::review::LENGTH)) } dd { (format::clock(seconds_of(&call))) }
                    @if let Some(d) = direction(&call.facts.direction) {
                        dt { (lang.m(cat::review::DIRECTION)) } dd { (lang.m(d)) }
                    }
                    dt { (lang.m(cat::review::KI_LABEL)) } dd { (ki_notice(lang, &call)) }
                    dt { (lang.m(cat::review::CALL)) } dd { code { (call_id) } }
                }
            }
            div.call-grid {
                div.call-text {
                    @if let Some(r) = &record {
                        section aria-labelledby="approved-h" {
                            h2 #approved-h { (lang.m(cat::review::APPROVED_SUMMARY)) }
                            p.approved-summary { (r["summary"].as_str().unwrap_or_default()) }
                            @if let Some(t) = record_topics_of(r) {
                                p { (lang.m(cat::review::TOPICS)) (labels::topics(lang, taxonomy, &t)) }
                            }
                            p.muted { small {
                                (lang.f(cat::review::APPROVED_BY_AT, &[
                                    ("who", &people.name(r["approved_by"].as_str().unwrap_or_default())),
                                    ("when", &format::when(lang, r["approved_at_us"].as_i64().unwrap_or_default())),
                                ]))
                                @if let (Some(by), Some(at)) = (r["amended_by"].as_str(), r["amended_at_us"].as_i64()) {
                                    " " (lang.f(cat::review::AMENDED_BY_AT, &[("who", &people.name(by)), ("when", &format::when(lang, at))]))
                                }
                            } }
                        }
                    }
                    section aria-labelledby="draft-h" {
                        h2 #draft-h { (lang.m(cat::review::AI_DRAFT)) }
                        @if record.is_some() { p.muted { (lang.m(cat::review::AI_DRAFT_BELOW_APPROVED)) } }
                        @match &draft {
                            Ok(d) => {
                                p.summary { (d.summary) }
                                p { (lang.m(cat::review::TOPICS)) (labels::topics(lang, taxonomy, &d.topics)) }
                                @if !d.customer_requests.is_empty() {
                                    h3 { (lang.m(cat::review::CUSTOMER_REQUESTS)) }
                                    ul { @for r in &d.customer_requests { li { (r) } } }
                                }
                                @if !d.follow_ups.is_empty() {
                                    h3 { (lang.m(cat::review::FOLLOW_UPS)) }
                                    ul { @for f in &d.follow_ups { li { (f) } } }
                                }
                                p.muted { small { (drafted_by(lang, d)) } }
                            }
                            Err(err) => p { (lang.m(missing(err, &ki, MISSING_DRAFT))) }
                        }
                    }
                    @if decide_open {
                        section aria-labelledby="decide-h" {
                            h2 #decide-h { (lang.m(cat::review::YOUR_DECISION)) }
                            form method="post" action={ (action) "/decide" } {
                                input type="hidden" name="csrf" value=(csrf_of(token));
                                (text_field(lang, Field::Text, "text", cat::review::SUMMARY,
                                    entered.text.as_deref().unwrap_or(&current), entered.error_on(Field::Text), false))
                                (topic_choices(lang, taxonomy, entered.topics.as_deref().unwrap_or(&chosen_topics), entered.error_on(Field::Topics)))
                                p.buttons {
                                    button type="submit" name="action" value="edit" { (lang.m(cat::review::SAVE)) }
                                    " "
                                    button type="submit" name="action" value="approve" formaction={ (action) "/confirm" } { (lang.m(cat::review::APPROVE)) }
                                }
                            }
                            h3 { (lang.m(cat::review::REJECT_THE_DRAFT)) }
                            p.muted { (lang.m(cat::review::REJECT_HINT)) }
                            form method="post" action={ (action) "/confirm" } {
                                input type="hidden" name="csrf" value=(csrf_of(token));
                                input type="hidden" name="action" value="reject";
                                (text_field(lang, Field::RejectReason, "reason", cat::review::REJECT_REASON,
                                    entered.reject_reason.as_deref().unwrap_or(""), entered.error_on(Field::RejectReason), true))
                                p.buttons { button type="submit" { (lang.m(cat::review::REJECT)) } }
                            }
                        }
                    }
                }
                div.call-listen {
                    (player::player(lang, call_id, &call))
                    h2 #transcript-h { (lang.m(cat::review::TRANSCRIPT)) }
                    @match &transcript {
                        Ok(segs) => (player::transcript(lang, call_id, segs)),
                        Err(err) => p { (lang.m(missing(err, &ki, MISSING_TRANSCRIPT))) }
                    }
                }
            }
            @if !versions.is_empty() {
                h2 { (lang.m(cat::review::VERSIONS)) }
                div.scroll { table.versions {
                    thead { tr {
                        th scope="col" { "#" }
                        th scope="col" { (lang.m(cat::review::KIND)) }
                        th scope="col" { (lang.m(cat::review::BY)) }
                        th scope="col" { (lang.m(cat::review::TIME)) }
                        th scope="col" { (lang.m(cat::review::TEXT)) }
                        th scope="col" { (lang.m(cat::review::CHANGES)) }
                    } }
                    tbody {
                        @for v in &versions {
                            tr {
                                td { (v.version) }
                                td { (version_kind(lang, &v.kind)) }
                                td { (people.name(&v.author)) }
                                td { (format::when(lang, v.at_us)) }
                                td {
                                    (v.text.as_deref().unwrap_or(lang.m(cat::review::KI_DATA_ERASED)))
                                    @if let Some(r) = &v.reason { br; small { (lang.m(cat::review::REASON)) (r) } }
                                    @if let Some(t) = &v.topics { br; small { (lang.m(cat::review::TOPICS)) (labels::topics(lang, taxonomy, t)) } }
                                }
                                td {
                                    @if let (Some(before), Some(after)) = (previous_text(&versions, &draft, v.version), &v.text) {
                                        @if v.kind != "rejected" {
                                            @for d in crate::review::word_diff(&before, after) {
                                                @match d {
                                                    crate::review::Diff::Same(t) => { (t) " " }
                                                    crate::review::Diff::Removed(t) => { del { (t) } " " }
                                                    crate::review::Diff::Added(t) => { ins { (t) } " " }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                } }
            }
            @if may_amend {
                h2 { (lang.m(cat::review::AMEND_THE_APPROVED_SUMMARY)) }
                p.muted { (lang.m(cat::review::AN_AMENDMENT_IS_A_NEW_VERSION)) }
                form method="post" action={ (action) "/amend" } {
                    input type="hidden" name="csrf" value=(csrf_of(token));
                    (text_field(lang, Field::AmendText, "text", cat::review::AMENDED_SUMMARY,
                        entered.amend_text.as_deref().unwrap_or(&current), entered.error_on(Field::AmendText), false))
                    (topic_choices(lang, taxonomy, entered.amend_topics.as_deref().unwrap_or(&chosen_topics), None))
                    (line_field(lang, Field::AmendReason, cat::review::REASON_AT_LEAST_10_CHARACTERS,
                        entered.amend_reason.as_deref().unwrap_or(""), entered.error_on(Field::AmendReason)))
                    button type="submit" { (lang.m(cat::review::SAVE_THE_AMENDMENT)) }
                }
            }
            @if user.role == Role::Compliance && app.edges.reclassifier.is_some() {
                h2 { (lang.m(cat::review::SERVICE_CATEGORY)) }
                p { (lang.m(cat::review::NOW)) (labels::service(lang, call.facts.service_category.as_str())) }
                form method="post" action={ (action) "/reclassify" } {
                    input type="hidden" name="csrf" value=(csrf_of(token));
                    p {
                        label for="category" { (lang.m(cat::review::NEW_CATEGORY)) } " "
                        select #category name="category" {
                            @for c in RECLASSIFY_TO {
                                option value=(c.as_str()) selected[entered.reclass_category.as_deref() == Some(c.as_str())] {
                                    (labels::service(lang, c.as_str()))
                                }
                            }
                        }
                    }
                    (line_field(lang, Field::ReclassReason, cat::review::REASON_AT_LEAST_10_CHARACTERS,
                        entered.reclass_reason.as_deref().unwrap_or(""), entered.error_on(Field::ReclassReason)))
                    p.muted { (lang.m(cat::review::IF_THE_CATEGORY_NEEDS_THE_5)) }
                    button type="submit" { (lang.m(cat::review::RECLASSIFY)) }
                }
            }
            @if let Some(qa) = &qa_section { (qa) }
            script src="/static/player.js" defer {}
        };
        let mut r = ctx.page(&title, body);
        *r.status_mut() = status;
        r
    }
}

/// The call page's own layout: facts, the draft and the transcript side by
/// side on a wide screen, stacked below 60rem; nothing wider than a phone.
const CALL_CSS: &str = "\
.call-head dl.facts{display:grid;grid-template-columns:max-content minmax(0,1fr);gap:.2rem 1rem;margin:.5rem 0}\
dl.facts dt{font-weight:bold}dl.facts dd{margin:0;overflow-wrap:anywhere}\
.badge{display:inline-block;padding:0 .5rem;border:2px solid;border-radius:.3rem}\
.badge-waiting{color:#7a4100}.badge-approved{color:#0a5c1f}.badge-rejected{color:#900}.badge-off{color:#333}.badge-pending{color:#124}\
.call-grid{display:grid;grid-template-columns:minmax(0,1fr);gap:0 2rem}\
@media (min-width:60rem){.call-grid{grid-template-columns:minmax(0,1fr) minmax(0,1fr)}}\
.call-grid textarea,.call-head~form textarea,main textarea{width:100%;box-sizing:border-box}\
main input[type=text]{max-width:100%;box-sizing:border-box}\
audio{width:100%}img.envelope{display:block;width:100%;box-sizing:border-box;height:5rem;border:1px solid #ccc}\
table.transcript,table.versions{width:100%}table.transcript td,table.versions td:nth-child(4){white-space:nowrap}table.transcript td:last-child{white-space:normal;overflow-wrap:anywhere;width:100%}\
table.transcript tr[aria-current]{background:#fff3c4}table.transcript tr[aria-current] td:first-child{box-shadow:inset 4px 0 #a60}\
.scroll{overflow-x:auto}.notice{border:2px solid #0a5c1f;padding:0 1rem;margin:1rem 0}\
.error-summary{border:2px solid #900;padding:0 1rem;margin:1rem 0}.field-error{color:#900;font-weight:bold;margin:.2rem 0}\
.player-controls{display:flex;flex-wrap:wrap;gap:.3rem;margin:.5rem 0}\
.player-controls button[aria-pressed=true]{background:#124;color:#fff}\
.shortcuts{font-size:.9rem}.shortcuts ul{margin:.2rem 0;padding-left:1.2rem}kbd{border:1px solid #888;border-radius:.2rem;padding:0 .3rem}\
fieldset.topics label{display:inline-block;margin-right:.5rem}";

/// A multi-line field with its label and, when it is wrong, its error.
fn text_field(
    lang: Lang,
    f: Field,
    name: &str,
    label: Msg,
    value: &str,
    error: Option<Msg>,
    required: bool,
) -> maud::Markup {
    let err_id = format!("{}-error", f.id());
    html! {
        p {
            label for=(f.id()) { (lang.m(label)) } br;
            @if let Some(m) = error { span.field-error id=(err_id) { (lang.m(m)) } br; }
            textarea id=(f.id()) name=(name) rows="6" required[required]
                minlength=[required.then_some(crate::review::MIN_REASON_CHARS)]
                aria-invalid=[error.map(|_| "true")] aria-describedby=[error.map(|_| err_id.as_str())] { (value) }
        }
    }
}

/// A one-line reason field (named `reason`) with its label and error.
fn line_field(lang: Lang, f: Field, label: Msg, value: &str, error: Option<Msg>) -> maud::Markup {
    let err_id = format!("{}-error", f.id());
    html! {
        p {
            label for=(f.id()) { (lang.m(label)) } br;
            @if let Some(m) = error { span.field-error id=(err_id) { (lang.m(m)) } br; }
            input id=(f.id()) type="text" name="reason" size="60" value=(value) required minlength="10"
                aria-invalid=[error.map(|_| "true")] aria-describedby=[error.map(|_| err_id.as_str())];
        }
    }
}

fn record_topics_of(r: &serde_json::Value) -> Option<Vec<String>> {
    serde_json::from_value::<Vec<String>>(r["topics"].clone())
        .ok()
        .filter(|t| !t.is_empty())
}

/// The recording's length in seconds (frames received at the format's rate).
fn seconds_of(call: &opptak_store::meta::CallRecord) -> f64 {
    call.progress.frames as f64 / f64::from(call.facts.format.sample_rate_hz().max(1))
}

fn direction(d: &opptak_domain::model::Direction) -> Option<Msg> {
    use opptak_domain::model::Direction::*;
    match d {
        Inbound => Some(cat::review::DIRECTION_INBOUND),
        Outbound => Some(cat::review::DIRECTION_OUTBOUND),
        Internal => Some(cat::review::DIRECTION_INTERNAL),
        Unspecified => None,
    }
}

/// Whether and how the customer was told about KI, and whether they opted out.
fn ki_notice(lang: Lang, call: &opptak_store::meta::CallRecord) -> String {
    use opptak_domain::model::KiNoticeMethod;
    let f = &call.facts;
    if let Some(o) = &call.opt_out {
        return lang.f(cat::review::KI_OPTED_OUT_AT, &[("when", &format::when(lang, o.at_us))]);
    }
    if !f.ki_enabled {
        return lang.m(cat::review::KI_NOT_REQUESTED).to_owned();
    }
    if f.customer_informed {
        return lang.m(cat::review::KI_INFORMED_AT_START).to_owned();
    }
    match &f.ki_notice {
        None => lang.m(cat::review::KI_NOT_INFORMED).to_owned(),
        Some(n) => {
            let at = format::clock(n.offset_us as f64 / 1e6);
            let msg = match n.method {
                KiNoticeMethod::IvrAnnouncement => cat::review::KI_INFORMED_BY_IVR,
                KiNoticeMethod::Advisor => cat::review::KI_INFORMED_BY_ADVISOR,
                KiNoticeMethod::Unspecified => cat::review::KI_INFORMED_AFTER,
            };
            lang.f(msg, &[("at", &at)])
        }
    }
}

/// The service's users, to name people by name: "Anne Hansen (adv-anne)".
struct People(Vec<User>);

impl People {
    /// A user id or actor (`oidc:…` for a token's user) as staff read it.
    fn name(&self, actor: &str) -> String {
        let id = actor.strip_prefix("oidc:").unwrap_or(actor);
        match self.0.iter().find(|u| u.user_id == id) {
            Some(u) if u.display_name != u.user_id && !u.display_name.is_empty() => {
                format!("{} ({})", u.display_name, u.user_id)
            }
            _ => actor.to_owned(),
        }
    }
}

/// The status badge: the review's outcome once decided, else the KI state.
fn call_status(
    lang: Lang,
    call: &opptak_store::meta::CallRecord,
    ki: &opptak_ki::summarize::KiState,
    versions: &[crate::review::Version],
    people: &People,
) -> Status {
    use opptak_ki::summarize::KiState;
    let decided = |kind: &str, badge, class, why| {
        versions.iter().find(|v| v.kind == kind).map(|v| Status {
            badge,
            class,
            why: lang.f(
                why,
                &[("who", &people.name(&v.author)), ("when", &format::when(lang, v.at_us))],
            ),
        })
    };
    if let Some(s) = decided(
        "approved",
        cat::review::BADGE_APPROVED,
        "approved",
        cat::review::WHY_APPROVED,
    )
    .or_else(|| {
        decided(
            "rejected",
            cat::review::BADGE_REJECTED,
            "rejected",
            cat::review::WHY_REJECTED,
        )
    }) {
        return s;
    }
    let (badge, class, why) = match ki {
        KiState::NotKi if call.facts.ki_enabled => (cat::review::BADGE_KI_OFF, "off", cat::review::WHY_NOT_INFORMED),
        KiState::NotKi => (cat::review::BADGE_KI_OFF, "off", cat::review::WHY_NOT_KI),
        KiState::OptedOut { .. } => (cat::review::BADGE_KI_OFF, "off", cat::review::WHY_OPTED_OUT),
        KiState::Expired => (cat::review::BADGE_KI_OFF, "off", cat::review::WHY_EXPIRED),
        KiState::InProgress => (cat::review::BADGE_PENDING, "pending", cat::review::WHY_IN_PROGRESS),
        KiState::TranscriptionPending => (
            cat::review::BADGE_PENDING,
            "pending",
            cat::review::WHY_TRANSCRIPTION_PENDING,
        ),
        KiState::DraftPending => (cat::review::BADGE_PENDING, "pending", cat::review::WHY_DRAFT_PENDING),
        KiState::Drafted => (cat::review::BADGE_WAITING, "waiting", cat::review::WHY_WAITING),
    };
    Status {
        badge,
        class,
        why: lang.m(why).to_owned(),
    }
}

/// Who made the draft, in staff language (the prompt version only for a
/// language model's draft: the built-in drafter has none).
fn drafted_by(lang: Lang, d: &opptak_domain::summary::Draft) -> String {
    if d.source == opptak_domain::summary::EMBEDDED_SOURCE || d.source.starts_with("embedded") {
        return lang.m(cat::review::DRAFT_BY_EMBEDDED).to_owned();
    }
    let by = lang.f(cat::review::DRAFT_BY_MODEL, &[("model", &d.source)]);
    if d.prompt_version.is_empty() || d.prompt_version == opptak_domain::summary::NO_PROMPT {
        by
    } else {
        format!(
            "{by} {}",
            lang.f(cat::review::PROMPT_VERSION, &[("v", &d.prompt_version)])
        )
    }
}

/// The messages for a missing draft or transcript: KI off, opted out,
/// expired, not made yet, unreadable.
struct Missing {
    ki_off: Msg,
    opted_out: Msg,
    expired: Msg,
    not_yet: Msg,
    unreadable: Msg,
}

const MISSING_DRAFT: Missing = Missing {
    ki_off: cat::review::NO_DRAFT_KI_OFF,
    opted_out: cat::review::NO_DRAFT_OPTED_OUT,
    expired: cat::review::NO_DRAFT_EXPIRED,
    not_yet: cat::review::NO_DRAFT_YET,
    unreadable: cat::review::NO_DRAFT_UNREADABLE,
};

const MISSING_TRANSCRIPT: Missing = Missing {
    ki_off: cat::review::NO_TRANSCRIPT_KI_OFF,
    opted_out: cat::review::NO_TRANSCRIPT_OPTED_OUT,
    expired: cat::review::NO_TRANSCRIPT_EXPIRED,
    not_yet: cat::review::NO_TRANSCRIPT_YET,
    unreadable: cat::review::NO_TRANSCRIPT_UNREADABLE,
};

/// Why a KI artifact could not be read, by the error's kind and the call's
/// KI state; a fault (not a verdict about the call) is logged.
fn missing(err: &opptak_ki::transcribe::TranscribeError, ki: &opptak_ki::summarize::KiState, m: Missing) -> Msg {
    use opptak_ki::summarize::KiState;
    use opptak_ki::transcribe::TranscribeError as T;
    use opptak_vault::VaultError as V;
    match err {
        T::Vault(V::NoArtifact { .. } | V::KeyDestroyed { .. }) | T::UnknownCall(_) => match ki {
            KiState::NotKi => m.ki_off,
            KiState::OptedOut { .. } => m.opted_out,
            KiState::Expired => m.expired,
            KiState::InProgress | KiState::TranscriptionPending | KiState::DraftPending => m.not_yet,
            KiState::Drafted => m.unreadable,
        },
        other => {
            tracing::error!(error = %other, "a call's KI artifact is unreadable");
            m.unreadable
        }
    }
}

fn version_kind(lang: Lang, kind: &str) -> &str {
    match kind {
        "edit" => lang.m(cat::review::EDITED),
        "approved" => lang.m(cat::review::APPROVED),
        "rejected" => lang.m(cat::review::REJECTED),
        "amended" => lang.m(cat::review::AMENDED),
        other => other,
    }
}

/// The taxonomy's topics as checkboxes (`topic`, one per chosen id), with
/// `topics_shown` telling the handler that the choice was offered (so an
/// empty choice is an error, not "keep the draft's").
fn topic_choices(
    lang: Lang,
    taxonomy: &opptak_domain::summary::Taxonomy,
    chosen: &[String],
    error: Option<Msg>,
) -> maud::Markup {
    let language = match lang {
        Lang::Nb => opptak_domain::summary::Language::Nb,
        Lang::En => opptak_domain::summary::Language::En,
    };
    html! {
        fieldset.topics #topics aria-describedby=[error.map(|_| "topics-error")] {
            legend { (lang.m(cat::review::TOPICS_2)) }
            @if let Some(m) = error { p.field-error #topics-error { (lang.m(m)) } }
            input type="hidden" name="topics_shown" value="1";
            @for t in taxonomy.topics() {
                label {
                    input type="checkbox" name="topic" value=(t.id) checked[chosen.contains(&t.id)];
                    " " (t.label(language))
                }
                " "
            }
        }
    }
}

/// A posted form's fields, in order (a checkbox group repeats its name).
struct Fields(Vec<(String, String)>);

impl Fields {
    fn get(&self, name: &str) -> String {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }

    /// The checked topics, when the form offered the choice.
    fn topics(&self) -> Option<Vec<String>> {
        self.0.iter().any(|(k, _)| k == "topics_shown").then(|| {
            self.0
                .iter()
                .filter(|(k, _)| k == "topic")
                .map(|(_, v)| v.clone())
                .collect()
        })
    }
}

/// The text of a decision: the summary, or for a rejection its reason
/// (the page's own field; the API sends it as `text`).
fn decision_text(f: &Fields, verb: &str) -> String {
    if verb == "reject" {
        let r = f.get("reason");
        if r.is_empty() {
            f.get("text")
        } else {
            r
        }
    } else {
        f.get("text")
    }
}

/// What the user typed, kept for the page shown again with an error.
fn entered_decision(f: &Fields, verb: &str, error: Option<(Msg, Option<Field>)>) -> Entered {
    let mut e = Entered {
        error,
        ..Entered::default()
    };
    if verb == "reject" {
        e.reject_reason = Some(decision_text(f, verb));
    } else {
        e.text = Some(f.get("text"));
        e.topics = f.topics();
    }
    e
}

/// Checks a decision before anything is written or confirmed: a rejection
/// has a reason of [`crate::review::MIN_REASON_CHARS`]; a summary is not
/// empty; topics, when offered, are chosen.
fn check_decision(f: &Fields, verb: &str) -> Option<(Msg, Option<Field>)> {
    match verb {
        "reject" if decision_text(f, verb).trim().chars().count() < crate::review::MIN_REASON_CHARS => {
            Some((cat::review::ERR_REJECTION_REASON, Some(Field::RejectReason)))
        }
        "edit" | "approve" if f.get("text").trim().is_empty() => {
            Some((cat::review::ERR_EMPTY_SUMMARY, Some(Field::Text)))
        }
        "edit" | "approve" if f.topics().is_some_and(|t| t.is_empty()) => {
            Some((cat::review::ERR_TOPICS, Some(Field::Topics)))
        }
        _ => None,
    }
}

/// `POST /calls/{id}/confirm`: the confirmation step of an approval or a
/// rejection (works without JavaScript): what will be recorded, with
/// "Bekreft" (the same form to `/decide` with `confirm=1`) and "Avbryt".
async fn confirm(
    State(app): State<Arc<App>>,
    ctx: Ctx,
    Path(id): Path<String>,
    Form(f): Form<Vec<(String, String)>>,
) -> Response {
    let f = Fields(f);
    let verb = f.get("action");
    let (user, call_id) = match call_form(&app, &ctx, &id, &f, &format!("draft.{verb}")).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    confirm_page(&app, &ctx, user, call_id, &f, &verb).await
}

async fn confirm_page(app: &App, ctx: &Ctx, user: &User, call_id: CallId, f: &Fields, verb: &str) -> Response {
    let lang = ctx.lang;
    let token = ctx.session.as_ref().map(|(_, t)| t.as_str()).unwrap_or_default();
    if !matches!(verb, "approve" | "reject") {
        return ctx.error(StatusCode::BAD_REQUEST, cat::review::ACTION_MUST_BE_EDIT_APPROVE_OR);
    }
    // Only the call's advisor is asked to confirm: anyone else is refused
    // here, as the decision itself would be.
    let mine = match app.edges.vault.meta().load_call(&call_id).await {
        Ok(Some(c)) => c.facts.advisor_id == user.user_id && user.role == Role::Advisor,
        Ok(None) => return ctx.error(StatusCode::NOT_FOUND, cat::review::UNKNOWN_CALL),
        Err(e) => return internal(lang, e),
    };
    if !mine {
        let subject = format!("call:{call_id}");
        if let Err(e) = app.audit(user, &format!("draft.{verb}"), &subject, "", "refused").await {
            return internal(lang, e);
        }
        return ctx.error(StatusCode::FORBIDDEN, cat::review::ONLY_THE_CALL_S_ADVISOR_DECIDES);
    }
    if let Some(err) = check_decision(f, verb) {
        return refuse_decision(
            app,
            ctx,
            user,
            token,
            call_id,
            f,
            verb,
            err,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    let text = decision_text(f, verb);
    let topics = f.topics();
    let (title, explain) = if verb == "approve" {
        (cat::review::CONFIRM_APPROVAL, cat::review::CONFIRM_APPROVAL_TEXT)
    } else {
        (cat::review::CONFIRM_REJECTION, cat::review::CONFIRM_REJECTION_TEXT)
    };
    let taxonomy = app.review.taxonomy();
    ctx.page(
        lang.m(title),
        html! {
            p { (lang.m(explain)) }
            blockquote.confirm-text { p { (text) } }
            @if let Some(t) = &topics { p { (lang.m(cat::review::TOPICS)) (labels::topics(lang, taxonomy, t)) } }
            form method="post" action={ "/calls/" (call_id) "/decide" } {
                input type="hidden" name="csrf" value=(csrf_of(token));
                input type="hidden" name="action" value=(verb);
                input type="hidden" name="confirm" value="1";
                @if verb == "reject" {
                    input type="hidden" name="reason" value=(text);
                } @else {
                    input type="hidden" name="text" value=(text);
                }
                @if let Some(t) = &topics {
                    input type="hidden" name="topics_shown" value="1";
                    @for id in t { input type="hidden" name="topic" value=(id); }
                }
                p {
                    button type="submit" { (lang.m(cat::review::CONFIRM)) }
                    " "
                    // Back to the form with the text kept (a link would lose it).
                    button type="submit" name="cancel" value="1" { (lang.m(cat::review::CANCEL)) }
                }
            }
        },
    )
}

/// A decision not accepted: audited as failed, the call page again with
/// the input and the error.
#[allow(clippy::too_many_arguments)]
async fn refuse_decision(
    app: &App,
    ctx: &Ctx,
    user: &User,
    token: &str,
    call_id: CallId,
    f: &Fields,
    verb: &str,
    err: (Msg, Option<Field>),
    status: StatusCode,
) -> Response {
    let subject = format!("call:{call_id}");
    if let Err(e) = app.audit(user, &format!("draft.{verb}"), &subject, "", "failed").await {
        return internal(ctx.lang, e);
    }
    let view = View {
        app,
        ctx,
        user,
        token,
        call_id,
    };
    view.render(status, None, entered_decision(f, verb, Some(err))).await
}

async fn decide(
    State(app): State<Arc<App>>,
    ctx: Ctx,
    Path(id): Path<String>,
    Form(f): Form<Vec<(String, String)>>,
) -> Response {
    let f = Fields(f);
    let verb = f.get("action");
    let (user, call_id) = match call_form(&app, &ctx, &id, &f, &format!("draft.{verb}")).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let token = ctx.session.as_ref().map(|(_, t)| t.as_str()).unwrap_or_default();
    // "Avbryt" on the confirmation: the call page again, the text kept.
    if f.get("cancel") == "1" {
        let view = View {
            app: &app,
            ctx: &ctx,
            user,
            token,
            call_id,
        };
        return view
            .render(StatusCode::OK, None, entered_decision(&f, &verb, None))
            .await;
    }
    // Approving and rejecting are final: without the confirmation's field
    // the post is the first step, and shows what will be recorded.
    if matches!(verb.as_str(), "approve" | "reject") && f.get("confirm") != "1" {
        return confirm_page(&app, &ctx, user, call_id, &f, &verb).await;
    }
    let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
    if let Some(err) = check_decision(&f, &verb) {
        return refuse_decision(&app, &ctx, user, token, call_id, &f, &verb, err, unprocessable).await;
    }
    match decide_inner(&app, user, &call_id, &verb, decision_text(&f, &verb), f.topics()).await {
        Ok(_) => {
            let done = match verb.as_str() {
                "approve" => "approved",
                "reject" => "rejected",
                _ => "saved",
            };
            Redirect::to(&format!("/calls/{call_id}?done={done}")).into_response()
        }
        Err(Failure::Response(r)) => r.into_response(ctx.lang),
        Err(Failure::Form(status, msg, field)) => {
            let view = View {
                app: &app,
                ctx: &ctx,
                user,
                token,
                call_id,
            };
            view.render(status, None, entered_decision(&f, &verb, Some((msg, field))))
                .await
        }
    }
}

/// A posted form about one call: its user and call id once the form's CSRF
/// token checked out (a refusal is audited as `action`).
async fn call_form<'a>(
    app: &App,
    ctx: &'a Ctx,
    id: &str,
    f: &Fields,
    action: &str,
) -> Result<(&'a User, CallId), Response> {
    let (user, token, call_id) = call_request(ctx, id)?;
    let subject = format!("call:{call_id}");
    app.check_form(ctx, (user, token), &f.get("csrf"), action, &subject)
        .await?;
    Ok((user, call_id))
}

async fn amend(
    State(app): State<Arc<App>>,
    ctx: Ctx,
    Path(id): Path<String>,
    Form(f): Form<Vec<(String, String)>>,
) -> Response {
    let f = Fields(f);
    let (user, call_id) = match call_form(&app, &ctx, &id, &f, "summary.amend").await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let reason = f.get("reason");
    match amend_inner(&app, user, &call_id, &f.get("text"), f.topics(), &reason).await {
        Ok(_) => Redirect::to(&format!("/calls/{call_id}?done=amended")).into_response(),
        Err(Failure::Response(r)) => r.into_response(ctx.lang),
        Err(Failure::Form(status, msg, field)) => {
            let token = ctx.session.as_ref().map(|(_, t)| t.as_str()).unwrap_or_default();
            let view = View {
                app: &app,
                ctx: &ctx,
                user,
                token,
                call_id,
            };
            let entered = Entered {
                amend_text: Some(f.get("text")),
                amend_topics: f.topics(),
                amend_reason: Some(reason),
                error: Some((msg, field)),
                ..Entered::default()
            };
            view.render(status, None, entered).await
        }
    }
}

/// The categories a compliance officer may reclassify a call to.
const RECLASSIFY_TO: [opptak_domain::model::ServiceCategory; 6] = {
    use opptak_domain::model::ServiceCategory::*;
    [InvestmentAdvice, Savings, Loan, Insurance, Payments, General]
};

/// A compliance officer reclassifies a call's service category (issue 16,
/// section 1): audited as `call.reclassify` (refused, allowed or failed,
/// with the reason), journaled by retention as `retention.reclassify`.
async fn reclassify(
    State(app): State<Arc<App>>,
    ctx: Ctx,
    Path(id): Path<String>,
    Form(f): Form<Vec<(String, String)>>,
) -> Response {
    let f = Fields(f);
    let action = "call.reclassify";
    let (user, call_id) = match call_form(&app, &ctx, &id, &f, action).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let lang = ctx.lang;
    let subject = format!("call:{call_id}");
    let reason: String = f.get("reason").trim().chars().take(500).collect();
    let refuse = |status, msg| ctx.error(status, msg);
    let Some(reclassifier) = app.edges.reclassifier.clone() else {
        return refuse(StatusCode::NOT_FOUND, cat::review::NOT_AVAILABLE);
    };
    if user.role != Role::Compliance {
        if let Err(e) = app.audit(user, action, &subject, "", "refused").await {
            return internal(lang, e);
        }
        return refuse(StatusCode::FORBIDDEN, cat::review::ONLY_COMPLIANCE_RECLASSIFIES_A_CALL);
    }
    let token = ctx.session.as_ref().map(|(_, t)| t.as_str()).unwrap_or_default();
    let again = |status, msg, field| {
        let view = View {
            app: &app,
            ctx: &ctx,
            user,
            token,
            call_id: call_id.clone(),
        };
        let entered = Entered {
            reclass_category: Some(f.get("category")),
            reclass_reason: Some(f.get("reason")),
            error: Some((msg, field)),
            ..Entered::default()
        };
        async move { view.render(status, None, entered).await }
    };
    let category = match opptak_domain::model::ServiceCategory::parse(&f.get("category")) {
        Some(c) if RECLASSIFY_TO.contains(&c) => c,
        _ => return refuse(StatusCode::BAD_REQUEST, cat::review::UNKNOWN_CATEGORY),
    };
    if reason.chars().count() < crate::review::MIN_REASON_CHARS {
        if let Err(e) = app.audit(user, action, &subject, &reason, "failed").await {
            return internal(lang, e);
        }
        return again(
            StatusCode::BAD_REQUEST,
            cat::review::STATE_A_REASON_OF_AT_LEAST,
            Some(Field::ReclassReason),
        )
        .await;
    }
    match app.edges.vault.meta().load_call(&call_id).await {
        Ok(Some(_)) => {}
        Ok(None) => return refuse(StatusCode::NOT_FOUND, cat::review::UNKNOWN_CALL),
        Err(e) => return internal(lang, anyhow::Error::from(e)),
    }
    match reclassifier
        .reclassify(&call_id, category, &reason, &user.actor())
        .await
    {
        Ok(archived) => {
            let what = format!(
                "to {category}{}: {reason}",
                if archived { ", archive copy written" } else { "" }
            );
            if let Err(e) = app.audit(user, action, &subject, &what, "allowed").await {
                return internal(lang, e);
            }
            Redirect::to(&format!("/calls/{call_id}?done=reclassified")).into_response()
        }
        Err(e) => {
            tracing::warn!(%call_id, error = %format!("{e:#}"), "reclassification refused");
            if let Err(e) = app.audit(user, action, &subject, &reason, "failed").await {
                return internal(lang, e);
            }
            again(StatusCode::CONFLICT, cat::review::RECLASSIFY_FAILED, None).await
        }
    }
}

/// Why a decision or an amendment was not done: a refusal or fault (a
/// finished page or API answer), or a form error to show with the input.
enum Failure {
    Response(Refused),
    Form(StatusCode, Msg, Option<Field>),
}

/// A refusal or a fault, answered as a page or as JSON by the caller.
enum Refused {
    Status(StatusCode, Msg),
    Internal(anyhow::Error),
}

impl Refused {
    fn into_response(self, lang: Lang) -> Response {
        Reply::Html(lang).refused(self)
    }
}

impl Reply {
    fn refused(self, r: Refused) -> Response {
        match r {
            Refused::Status(s, m) => self.error(s, m),
            Refused::Internal(e) => self.internal(e),
        }
    }

    fn failed(self, f: Failure) -> Response {
        match f {
            Failure::Response(r) => self.refused(r),
            Failure::Form(s, m, _) => self.error(s, m),
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Response(Refused::Internal(e))
    }
}

/// A review error as the reviewer reads it: its status, message and field.
fn review_failure(e: crate::review::ReviewError, amending: bool) -> Failure {
    use crate::review::ReviewError as E;
    let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
    let (text, reason) = if amending {
        (Field::AmendText, Field::AmendReason)
    } else {
        (Field::Text, Field::RejectReason)
    };
    let (status, msg, field) = match e {
        E::UnknownCall => (StatusCode::NOT_FOUND, cat::review::UNKNOWN_CALL_2, None),
        E::NotYourDraft => (
            StatusCode::FORBIDDEN,
            cat::review::ONLY_THE_CALL_S_ADVISOR_DECIDES,
            None,
        ),
        E::NotYourSummary => (StatusCode::FORBIDDEN, cat::review::ONLY_THE_CALL_S_ADVISOR_OR, None),
        E::NoDraft => (StatusCode::CONFLICT, cat::review::ERR_NO_DRAFT, None),
        E::NoRejectionReason => (unprocessable, cat::review::ERR_REJECTION_REASON, Some(reason)),
        E::EmptySummary => (unprocessable, cat::review::ERR_EMPTY_SUMMARY, Some(text)),
        E::TooLong => (unprocessable, cat::review::ERR_TOO_LONG, Some(text)),
        E::Topics(_) => (
            unprocessable,
            cat::review::ERR_TOPICS,
            (!amending).then_some(Field::Topics),
        ),
        E::Closed { kind, .. } if kind == "rejected" => (StatusCode::CONFLICT, cat::review::ERR_CLOSED_REJECTED, None),
        E::Closed { .. } => (StatusCode::CONFLICT, cat::review::ERR_CLOSED_APPROVED, None),
        E::Conflict => (StatusCode::CONFLICT, cat::review::ERR_CONFLICT, None),
        E::KiGone => (StatusCode::CONFLICT, cat::review::ERR_KI_GONE, None),
        E::ShortReason => (unprocessable, cat::review::STATE_A_REASON_OF_AT_LEAST, Some(reason)),
        E::NotApproved => (StatusCode::CONFLICT, cat::review::ERR_NOT_APPROVED, None),
        E::NoChange => (unprocessable, cat::review::ERR_NO_CHANGE, Some(text)),
        E::RecordGone => (StatusCode::CONFLICT, cat::review::ERR_RECORD_GONE, None),
        E::Other(e) => return Failure::Response(Refused::Internal(e)),
    };
    Failure::Form(status, msg, field)
}

/// An amendment of a call's approved summary, for the page and the API
/// alike: the call's advisor or compliance; audited as `summary.amend`
/// with the version and the reason (refused, allowed or failed). The caller
/// has checked the request's CSRF token.
pub(crate) async fn amend_summary(
    app: &App,
    user: &User,
    call_id: &CallId,
    text: &str,
    topics: Option<Vec<String>>,
    reason: &str,
    reply: Reply,
) -> Result<crate::review::Version, Response> {
    amend_inner(app, user, call_id, text, topics, reason)
        .await
        .map_err(|f| reply.failed(f))
}

async fn amend_inner(
    app: &App,
    user: &User,
    call_id: &CallId,
    text: &str,
    topics: Option<Vec<String>>,
    reason: &str,
) -> Result<crate::review::Version, Failure> {
    let subject = format!("call:{call_id}");
    let action = "summary.amend";
    let call = match app.edges.vault.meta().load_call(call_id).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            return Err(Failure::Response(Refused::Status(
                StatusCode::NOT_FOUND,
                cat::review::UNKNOWN_CALL_2,
            )))
        }
        Err(e) => return Err(anyhow::Error::from(e).into()),
    };
    let own = call.facts.advisor_id == user.user_id && user.role == Role::Advisor;
    if !own && user.role != Role::Compliance {
        app.audit(user, action, &subject, "", "refused").await?;
        return Err(Failure::Response(Refused::Status(
            StatusCode::FORBIDDEN,
            cat::review::ONLY_THE_CALL_S_ADVISOR_OR,
        )));
    }
    let reason: String = reason.trim().chars().take(500).collect();
    match app.review.amend(user, call_id, text, topics, &reason).await {
        Ok(v) => {
            app.audit(
                user,
                action,
                &subject,
                &format!("version {}: {reason}", v.version),
                "allowed",
            )
            .await?;
            Ok(v)
        }
        Err(e) => {
            app.audit(user, action, &subject, &reason, "failed").await?;
            Err(review_failure(e, true))
        }
    }
}

/// The advisor's decision on a draft (`edit`, `approve` or `reject` with
/// `text`), for the page and the API alike: only the call's own advisor
/// decides; the refusal, the version written or the failure is audited.
/// The caller has checked the request's CSRF token.
pub(crate) async fn decide_draft(
    app: &App,
    user: &User,
    call_id: &CallId,
    action: &str,
    text: String,
    topics: Option<Vec<String>>,
    reply: Reply,
) -> Result<crate::review::Version, Response> {
    decide_inner(app, user, call_id, action, text, topics)
        .await
        .map_err(|f| reply.failed(f))
}

async fn decide_inner(
    app: &App,
    user: &User,
    call_id: &CallId,
    action: &str,
    text: String,
    topics: Option<Vec<String>>,
) -> Result<crate::review::Version, Failure> {
    let subject = format!("call:{call_id}");
    let audited = format!("draft.{action}");
    let decision = match action {
        "edit" => crate::review::Decision::Edit(text),
        "approve" => crate::review::Decision::Approve(text),
        "reject" => crate::review::Decision::Reject(text),
        _ => {
            return Err(Failure::Response(Refused::Status(
                StatusCode::BAD_REQUEST,
                cat::review::ACTION_MUST_BE_EDIT_APPROVE_OR,
            )))
        }
    };
    let mine = match app.edges.vault.meta().load_call(call_id).await {
        Ok(Some(c)) => c.facts.advisor_id == user.user_id && user.role == Role::Advisor,
        Ok(None) => {
            return Err(Failure::Response(Refused::Status(
                StatusCode::NOT_FOUND,
                cat::review::UNKNOWN_CALL_2,
            )))
        }
        Err(e) => return Err(anyhow::Error::from(e).into()),
    };
    if !mine {
        app.audit(user, &audited, &subject, "", "refused").await?;
        return Err(Failure::Response(Refused::Status(
            StatusCode::FORBIDDEN,
            cat::review::ONLY_THE_CALL_S_ADVISOR_DECIDES,
        )));
    }
    match app.review.decide_with_topics(user, call_id, decision, topics).await {
        Ok(v) => {
            app.audit(user, &audited, &subject, &format!("version {}", v.version), "allowed")
                .await?;
            Ok(v)
        }
        Err(e) => {
            app.audit(user, &audited, &subject, "", "failed").await?;
            Err(review_failure(e, false))
        }
    }
}

/// The 44-byte header of a PCM16 WAV file with `frames` frames.
fn wav_header(channels: u16, rate: u32, frames: u64) -> Vec<u8> {
    let data = (frames * u64::from(channels) * 2).min(u64::from(u32::MAX - 36)) as u32;
    let mut h = Vec::with_capacity(44);
    h.extend_from_slice(b"RIFF");
    h.extend_from_slice(&(36 + data).to_le_bytes());
    h.extend_from_slice(b"WAVEfmt ");
    h.extend_from_slice(&16u32.to_le_bytes());
    h.extend_from_slice(&1u16.to_le_bytes());
    h.extend_from_slice(&channels.to_le_bytes());
    h.extend_from_slice(&rate.to_le_bytes());
    h.extend_from_slice(&(rate * u32::from(channels) * 2).to_le_bytes());
    h.extend_from_slice(&(channels * 2).to_le_bytes());
    h.extend_from_slice(&16u16.to_le_bytes());
    h.extend_from_slice(b"data");
    h.extend_from_slice(&data.to_le_bytes());
    h
}

/// Most bytes one ranged response carries; the player asks for the rest.
const MAX_RANGE: u64 = 4 << 20;

/// `bytes=a-b`, `bytes=a-` or `bytes=-n` of a `total`-byte file (one range).
fn parse_range(v: &str, total: u64) -> Option<(u64, u64)> {
    let spec = v.strip_prefix("bytes=")?.trim();
    if spec.contains(',') || total == 0 {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().ok()?;
            (total.saturating_sub(n), total - 1)
        }
        (a, "") => {
            let a: u64 = a.parse().ok()?;
            (a, a.saturating_add(MAX_RANGE - 1).min(total - 1))
        }
        // An explicit range is served up to 4 MiB too (a 206 may carry less
        // than asked; Content-Range says what), so no request holds a whole
        // hour of audio in memory.
        (a, b) => {
            let a: u64 = a.parse().ok()?;
            let b: u64 = b.parse().ok()?;
            if b < a {
                return None;
            }
            (a, b.min(total - 1).min(a.saturating_add(MAX_RANGE - 1)))
        }
    };
    (start <= end && start < total).then_some((start, end))
}

/// The call, and the copy of its audio the user may hear, for a request
/// that plays or draws it: authorized and audited as `recording.play`
/// before anything is decrypted; the refusal or error page otherwise.
async fn playback(
    app: &App,
    ctx: &Ctx,
    id: &str,
) -> Result<(CallId, opptak_store::meta::CallRecord, opptak_vault::Which), Response> {
    let (user, _, call_id) = call_request(ctx, id)?;
    let call = app
        .edges
        .vault
        .meta()
        .load_call(&call_id)
        .await
        .map_err(|e| internal(ctx.lang, e))?;
    let subject = format!("call:{call_id}");
    app.authorize_page(ctx, call.as_ref(), &subject, "recording.play")
        .await?;
    let Some(call) = call else {
        return Err(ctx.error(StatusCode::NOT_FOUND, cat::review::UNKNOWN_CALL));
    };
    match playable(app, &call_id, user.role).await {
        Ok(Some(which)) => Ok((call_id, call, which)),
        Ok(None) => Err(ctx.error(StatusCode::GONE, cat::review::THE_RECORDING_IS_DELETED_24_HOURS)),
        Err(e) => Err(internal(ctx.lang, e)),
    }
}

/// The call's audio as a PCM16 WAV, with byte ranges (an audio element seeks
/// with them): only the segments that hold the range are decrypted. The
/// recording while it is kept, then the copy the role may hear ([`playable`]).
async fn audio(State(app): State<Arc<App>>, ctx: Ctx, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let (call_id, call, which) = match playback(&app, &ctx, &id).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let lang = ctx.lang;
    let format = &call.facts.format;
    let (ch, rate) = (format.channels(), format.sample_rate_hz());
    let fb = u64::from(ch) * 2;
    let frames = call.progress.frames;
    let header = wav_header(ch, rate, frames);
    let total = 44 + frames * fb;
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (start, end) = match range {
        None => return whole_wav(app.edges.vault.clone(), call_id, which, header, frames, fb),
        Some(r) => match parse_range(r, total) {
            Some((a, b)) => (a, b),
            None => {
                let mut resp = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{total}")) {
                    resp.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                return resp;
            }
        },
    };
    let mut body = Vec::with_capacity((end - start + 1) as usize);
    if start < 44 {
        body.extend_from_slice(&header[start as usize..=(end.min(43)) as usize]);
    }
    if end >= 44 {
        let (a, b) = (start.max(44) - 44, end - 44 + 1); // data bytes [a, b)
        let (first, last) = (a / fb, b.div_ceil(fb));
        let e = &app.edges;
        let w = match e.vault.read_frames(&call_id, which, first, last - first).await {
            Ok(w) => w,
            Err(err) => return internal(lang, err),
        };
        let skip = (a - first * fb) as usize;
        let take = (b - a) as usize;
        let end_at = (skip + take).min(w.pcm.len());
        body.extend_from_slice(&w.pcm[skip.min(end_at)..end_at]);
    }
    let mut resp = (StatusCode::PARTIAL_CONTENT, body).into_response();
    wav_headers(resp.headers_mut());
    if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{total}")) {
        resp.headers_mut().insert(header::CONTENT_RANGE, v);
    }
    resp
}

/// `GET /calls/{id}/envelope.svg`: the loudness of each channel of the
/// recording the user may hear, as an SVG for the player. It is drawn from
/// the audio, so it is authorized and audited as playback
/// (`recording.play`); never cached.
async fn envelope(State(app): State<Arc<App>>, ctx: Ctx, Path(id): Path<String>) -> Response {
    let (call_id, call, which) = match playback(&app, &ctx, &id).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let lang = ctx.lang;
    let roles = call.facts.format.channel_roles().to_vec();
    let levels = match player::loudness(&app.edges.vault, &call_id, which, roles.len(), call.progress.frames).await {
        Ok(l) => l,
        Err(e) => return internal(lang, e),
    };
    let mut resp = (StatusCode::OK, player::envelope_svg(&levels, &roles)).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("image/svg+xml"));
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// Which copy of the call `role` hears: the 24-hour recording while it is
/// kept; after it, the 30-day KI audio copy (KI calls), and for compliance
/// the 5-year archive copy (investment advice, advisory desks). `None`: no
/// copy the role may hear is left.
async fn playable(app: &App, call_id: &CallId, role: Role) -> anyhow::Result<Option<opptak_vault::Which>> {
    use opptak_vault::Which;
    let mut order = vec![Which::Recording, Which::Ki];
    if role == Role::Compliance {
        order.insert(1, Which::Archive);
    }
    let kinds: Vec<String> = app
        .edges
        .vault
        .meta()
        .artifacts(call_id)
        .await?
        .into_iter()
        .filter(|a| a.key.destroyed_at_us.is_none())
        .map(|a| a.kind)
        .collect();
    Ok(order.into_iter().find(|w| kinds.iter().any(|k| k == w.store_kind())))
}

fn wav_headers(h: &mut HeaderMap) {
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("audio/wav"));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// The whole recording without a `Range`: streamed a window ([`MAX_RANGE`])
/// at a time, each decrypted as the client takes it, so an hour of audio is
/// never held in memory. A read failing midway ends the body early (the
/// length no longer matches: the client sees a truncated transfer).
fn whole_wav(
    vault: opptak_vault::Vault,
    call_id: CallId,
    which: opptak_vault::Which,
    wav_head: Vec<u8>,
    frames: u64,
    fb: u64,
) -> Response {
    let per_window = (MAX_RANGE / fb).max(1);
    let total = 44 + frames * fb;
    let windows = futures::stream::try_unfold(0u64, move |first| {
        let (vault, call_id) = (vault.clone(), call_id.clone());
        async move {
            if first >= frames {
                return Ok::<_, opptak_vault::VaultError>(None);
            }
            let want = per_window.min(frames - first);
            let w = vault.read_frames(&call_id, which, first, want).await?;
            Ok(Some((bytes::Bytes::from(w.pcm), first + want)))
        }
    });
    let head = futures::stream::once(async move { Ok(bytes::Bytes::from(wav_head)) });
    let body = axum::body::Body::from_stream(futures::StreamExt::chain(head, windows));
    let mut resp = (StatusCode::OK, body).into_response();
    wav_headers(resp.headers_mut());
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(total));
    resp
}

/// The text a version changed: the previous edit's, or the draft's.
fn previous_text(
    versions: &[crate::review::Version],
    draft: &std::result::Result<opptak_domain::summary::Draft, opptak_ki::transcribe::TranscribeError>,
    version: u64,
) -> Option<String> {
    versions
        .iter()
        .rfind(|v| v.version < version && v.kind != "rejected")
        .and_then(|v| v.text.clone())
        .or_else(|| draft.as_ref().ok().map(|d| d.summary.clone()))
}
