//! The advisor's side of the review service (R4): the
//! call page (draft, versions with word diffs, transcript, audio player),
//! decisions, and the recording as a WAV served in byte ranges.

use super::{cat, csrf_of, internal, App, Ctx, Lang, Reply};
use crate::identity::{Role, User};
use anyhow::Result;
use axum::extract::{Form, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::html;
use opptak_domain::model::CallId;
use std::sync::Arc;

pub(super) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/calls/{id}", get(call_page))
        .route("/calls/{id}/decide", post(decide))
        .route("/calls/{id}/amend", post(amend))
        .route("/calls/{id}/reclassify", post(reclassify))
        .route("/calls/{id}/audio", get(audio))
}

fn when(at_us: i64) -> String {
    opptak_domain::time::utc_time(at_us)
}

/// The user, their token and the call id of a request about one call.
fn call_request<'a>(ctx: &'a Ctx, id: &str) -> std::result::Result<(&'a User, &'a str, CallId), Response> {
    let (user, token) = ctx.user()?;
    let call_id = CallId::parse(id).map_err(|_| ctx.error(StatusCode::NOT_FOUND, cat::review::UNKNOWN_CALL))?;
    Ok((user, token, call_id))
}

async fn call_page(State(app): State<Arc<App>>, ctx: Ctx, Path(id): Path<String>) -> Response {
    let (user, token, call_id) = match call_request(&ctx, &id) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let lang = ctx.lang;
    let subject = format!("call:{call_id}");
    let call = match app.edges.vault.meta().load_call(&call_id).await {
        Ok(c) => c,
        Err(e) => return internal(lang, e),
    };
    if let Err(r) = app
        .authorize_page(&ctx, call.as_ref(), &subject, "transcript.read")
        .await
    {
        return r;
    }
    let e = &app.edges;
    let transcript = opptak_ki::transcribe::read_transcript(&e.vault, &call_id).await;
    let draft = opptak_ki::summarize::read_draft(&e.vault, &call_id).await;
    let versions = match app.review.versions(&call_id).await {
        Ok(v) => v,
        Err(e) => return internal(lang, e),
    };
    let closed = versions.iter().any(|v| v.kind != "edit");
    let approved = versions.iter().any(|v| v.kind == "approved");
    let mine = call.as_ref().is_some_and(|c| c.facts.advisor_id == user.user_id) && user.role == Role::Advisor;
    let may_amend = approved && (mine || user.role == Role::Compliance);
    // The topics the advisor's form starts from: the last version's choice,
    // else the record's (after approval) or the draft's.
    let record_topics = if approved {
        crate::review::read_approved(&app.edges, &call_id)
            .await
            .ok()
            .and_then(|r| serde_json::from_value::<Vec<String>>(r["topics"].clone()).ok())
    } else {
        None
    };
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
        .or_else(|| draft.as_ref().ok().map(|d| d.summary.clone()))
        .unwrap_or_default();
    let qa_section = if user.role == Role::Qa {
        Some(super::qa::section(&app, lang, user, token, &call_id).await)
    } else {
        None
    };
    let title = format!("{} {call_id}", lang.m(cat::review::CALL));
    ctx.page(
        &title,
        html! {
            h2 { (lang.m(cat::review::RECORDING)) }
            audio controls preload="none" src={ "/calls/" (call_id) "/audio" } {
                (lang.m(cat::review::YOUR_BROWSER_CANNOT_PLAY_AUDIO))
            }
            h2 { (lang.m(cat::review::DRAFT)) }
            @match &draft {
                Ok(d) => {
                    p.summary { (d.summary) }
                    p { (lang.m(cat::review::TOPICS)) (d.topics.join(", ")) }
                    @if !d.customer_requests.is_empty() {
                        h3 { (lang.m(cat::review::CUSTOMER_REQUESTS)) }
                        ul { @for r in &d.customer_requests { li { (r) } } }
                    }
                    @if !d.follow_ups.is_empty() {
                        h3 { (lang.m(cat::review::FOLLOW_UPS)) }
                        ul { @for f in &d.follow_ups { li { (f) } } }
                    }
                    p.muted { small { (lang.m(cat::review::WRITTEN_BY)) (d.source) " · " (d.prompt_version) } }
                }
                Err(err) => p { (lang.m(cat::review::NO_DRAFT)) (err.to_string()) }
            }
            @if !versions.is_empty() {
                h2 { (lang.m(cat::review::VERSIONS)) }
                table.versions {
                    thead { tr {
                        th scope="col" { "#" }
                        th scope="col" { (lang.m(cat::review::KIND)) }
                        th scope="col" { (lang.m(cat::review::BY)) }
                        th scope="col" { (lang.m(cat::review::TIME_UTC)) }
                        th scope="col" { (lang.m(cat::review::TEXT)) }
                        th scope="col" { (lang.m(cat::review::CHANGES)) }
                    } }
                    tbody {
                        @for v in &versions {
                            tr {
                                td { (v.version) }
                                td { (version_kind(lang, &v.kind)) }
                                td { (v.author) }
                                td { (when(v.at_us)) }
                                td {
                                    (v.text.as_deref().unwrap_or(lang.m(cat::review::KI_DATA_ERASED)))
                                    @if let Some(r) = &v.reason { br; small { (lang.m(cat::review::REASON)) (r) } }
                                    @if let Some(t) = &v.topics { br; small { (lang.m(cat::review::TOPICS)) (t.join(", ")) } }
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
                }
            }
            @if mine && !closed && draft.is_ok() {
                h2 { (lang.m(cat::review::YOUR_DECISION)) }
                form method="post" action={ "/calls/" (call_id) "/decide" } {
                    input type="hidden" name="csrf" value=(csrf_of(token));
                    p { label for="text" { (lang.m(cat::review::SUMMARY_WHEN_REJECTING_THE_REASON)) } br;
                        textarea #text name="text" rows="6" cols="80" { (current) } }
                    (topic_choices(lang, app.review.taxonomy(), &chosen_topics))
                    button type="submit" name="action" value="edit" { (lang.m(cat::review::SAVE)) }
                    " "
                    button type="submit" name="action" value="approve" { (lang.m(cat::review::APPROVE)) }
                    " "
                    button type="submit" name="action" value="reject" { (lang.m(cat::review::REJECT)) }
                }
            }
            @if may_amend {
                h2 { (lang.m(cat::review::AMEND_THE_APPROVED_SUMMARY)) }
                p.muted { (lang.m(cat::review::AN_AMENDMENT_IS_A_NEW_VERSION)) }
                form method="post" action={ "/calls/" (call_id) "/amend" } {
                    input type="hidden" name="csrf" value=(csrf_of(token));
                    p { label for="amend-text" { (lang.m(cat::review::AMENDED_SUMMARY)) } br;
                        textarea #amend-text name="text" rows="6" cols="80" { (current) } }
                    (topic_choices(lang, app.review.taxonomy(), &chosen_topics))
                    p { label for="amend-reason" { (lang.m(cat::review::REASON_AT_LEAST_10_CHARACTERS)) } br;
                        input #amend-reason type="text" name="reason" size="80" required minlength="10"; }
                    button type="submit" { (lang.m(cat::review::SAVE_THE_AMENDMENT)) }
                }
            }
            @if user.role == Role::Compliance && app.edges.reclassifier.is_some() {
                @if let Some(c) = &call {
                    h2 { (lang.m(cat::review::SERVICE_CATEGORY)) }
                    p { (lang.m(cat::review::NOW)) (c.facts.service_category.as_str()) }
                    form method="post" action={ "/calls/" (call_id) "/reclassify" } {
                        input type="hidden" name="csrf" value=(csrf_of(token));
                        p {
                            label for="category" { (lang.m(cat::review::NEW_CATEGORY)) } " "
                            select #category name="category" {
                                @for cat in RECLASSIFY_TO { option value=(cat.as_str()) { (cat.as_str()) } }
                            }
                        }
                        p { label for="reclass-reason" { (lang.m(cat::review::REASON_AT_LEAST_10_CHARACTERS)) } br;
                            input #reclass-reason type="text" name="reason" size="80" required minlength="10"; }
                        p.muted { (lang.m(cat::review::IF_THE_CATEGORY_NEEDS_THE_5)) }
                        button type="submit" { (lang.m(cat::review::RECLASSIFY)) }
                    }
                }
            }
            @if let Some(qa) = &qa_section { (qa) }
            h2 { (lang.m(cat::review::TRANSCRIPT)) }
            @match &transcript {
                Ok(segs) => {
                    table.transcript {
                        tbody {
                            @for s in segs {
                                tr class=(s.speaker) {
                                    td { (format!("{:.1} s", s.start_s)) }
                                    td { (speaker(lang, &s.speaker)) }
                                    td { (s.text) }
                                }
                            }
                        }
                    }
                }
                Err(err) => p { (lang.m(cat::review::NO_TRANSCRIPT)) (err.to_string()) }
            }
        },
    )
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

fn speaker(lang: Lang, s: &str) -> &str {
    match s {
        "agent" => lang.m(cat::review::ADVISOR_2),
        "customer" => lang.m(cat::review::CUSTOMER),
        other => other,
    }
}

/// The taxonomy's topics as checkboxes (`topic`, one per chosen id), with
/// `topics_shown` telling the handler that the choice was offered (so an
/// empty choice is an error, not "keep the draft's").
fn topic_choices(lang: Lang, taxonomy: &opptak_domain::summary::Taxonomy, chosen: &[String]) -> maud::Markup {
    let language = match lang {
        Lang::Nb => opptak_domain::summary::Language::Nb,
        Lang::En => opptak_domain::summary::Language::En,
    };
    html! {
        fieldset.topics {
            legend { (lang.m(cat::review::TOPICS_2)) }
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
    let lang = ctx.lang;
    match decide_draft(
        &app,
        user,
        &call_id,
        &verb,
        f.get("text"),
        f.topics(),
        Reply::Html(lang),
    )
    .await
    {
        Ok(_) => Redirect::to(&format!("/calls/{call_id}")).into_response(),
        Err(r) => r,
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
    let lang = ctx.lang;
    let reason = f.get("reason");
    match amend_summary(
        &app,
        user,
        &call_id,
        &f.get("text"),
        f.topics(),
        &reason,
        Reply::Html(lang),
    )
    .await
    {
        Ok(_) if user.role == Role::Compliance => Redirect::to(&format!("/calls/{call_id}")).into_response(),
        Ok(_) => Redirect::to(&format!("/calls/{call_id}")).into_response(),
        Err(r) => r,
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
    let category = match opptak_domain::model::ServiceCategory::parse(&f.get("category")) {
        Some(c) if RECLASSIFY_TO.contains(&c) => c,
        _ => return refuse(StatusCode::BAD_REQUEST, cat::review::UNKNOWN_CATEGORY),
    };
    if reason.chars().count() < crate::review::MIN_REASON_CHARS {
        if let Err(e) = app.audit(user, action, &subject, &reason, "failed").await {
            return internal(lang, e);
        }
        return refuse(StatusCode::BAD_REQUEST, cat::review::STATE_A_REASON_OF_AT_LEAST);
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
            Redirect::to(&format!("/calls/{call_id}")).into_response()
        }
        Err(e) => {
            if let Err(e) = app.audit(user, action, &subject, &reason, "failed").await {
                return internal(lang, e);
            }
            let msg = format!("{e:#}");
            super::untranslated(lang, StatusCode::CONFLICT, &msg)
        }
    }
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
    let subject = format!("call:{call_id}");
    let action = "summary.amend";
    let call = match app.edges.vault.meta().load_call(call_id).await {
        Ok(Some(c)) => c,
        Ok(None) => return Err(reply.error(StatusCode::NOT_FOUND, cat::review::UNKNOWN_CALL_2)),
        Err(e) => return Err(reply.internal(e.into())),
    };
    let own = call.facts.advisor_id == user.user_id && user.role == Role::Advisor;
    if !own && user.role != Role::Compliance {
        app.audit(user, action, &subject, "", "refused")
            .await
            .map_err(|e| reply.internal(e))?;
        return Err(reply.error(StatusCode::FORBIDDEN, cat::review::ONLY_THE_CALL_S_ADVISOR_OR));
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
            .await
            .map_err(|e| reply.internal(e))?;
            Ok(v)
        }
        Err(e) => {
            app.audit(user, action, &subject, &reason, "failed")
                .await
                .map_err(|e| reply.internal(e))?;
            let msg = e.to_string();
            Err(reply.untranslated(StatusCode::CONFLICT, &msg))
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
    let subject = format!("call:{call_id}");
    let audited = format!("draft.{action}");
    let decision = match action {
        "edit" => crate::review::Decision::Edit(text),
        "approve" => crate::review::Decision::Approve(text),
        "reject" => crate::review::Decision::Reject(text),
        _ => return Err(reply.error(StatusCode::BAD_REQUEST, cat::review::ACTION_MUST_BE_EDIT_APPROVE_OR)),
    };
    let mine = match app.edges.vault.meta().load_call(call_id).await {
        Ok(Some(c)) => c.facts.advisor_id == user.user_id && user.role == Role::Advisor,
        Ok(None) => return Err(reply.error(StatusCode::NOT_FOUND, cat::review::UNKNOWN_CALL_2)),
        Err(e) => return Err(reply.internal(e.into())),
    };
    if !mine {
        app.audit(user, &audited, &subject, "", "refused")
            .await
            .map_err(|e| reply.internal(e))?;
        return Err(reply.error(StatusCode::FORBIDDEN, cat::review::ONLY_THE_CALL_S_ADVISOR_DECIDES));
    }
    match app.review.decide_with_topics(user, call_id, decision, topics).await {
        Ok(v) => {
            app.audit(user, &audited, &subject, &format!("version {}", v.version), "allowed")
                .await
                .map_err(|e| reply.internal(e))?;
            Ok(v)
        }
        Err(e) => {
            app.audit(user, &audited, &subject, "", "failed")
                .await
                .map_err(|e| reply.internal(e))?;
            let msg = e.to_string();
            Err(reply.untranslated(StatusCode::CONFLICT, &msg))
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

/// The call's audio as a PCM16 WAV, with byte ranges (an audio element seeks
/// with them): only the segments that hold the range are decrypted. The
/// recording while it is kept, then the copy the role may hear ([`playable`]).
async fn audio(State(app): State<Arc<App>>, ctx: Ctx, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let (user, _, call_id) = match call_request(&ctx, &id) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let lang = ctx.lang;
    let call = match app.edges.vault.meta().load_call(&call_id).await {
        Ok(c) => c,
        Err(e) => return internal(lang, e),
    };
    let subject = format!("call:{call_id}");
    if let Err(r) = app
        .authorize_page(&ctx, call.as_ref(), &subject, "recording.play")
        .await
    {
        return r;
    }
    let Some(call) = call else {
        return ctx.error(StatusCode::NOT_FOUND, cat::review::UNKNOWN_CALL);
    };
    let which = match playable(&app, &call_id, user.role).await {
        Ok(Some(w)) => w,
        Ok(None) => return ctx.error(StatusCode::GONE, cat::review::THE_RECORDING_IS_DELETED_24_HOURS),
        Err(e) => return internal(lang, e),
    };
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
