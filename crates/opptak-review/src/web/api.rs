//! The review service's JSON API under `/api/v1` (issue 6 item 1), for the
//! bank's other systems and for scripts, described by an OpenAPI 3.1
//! document generated from these handlers (`GET /api/openapi.json`, kept in
//! `docs/openapi.json`, checked by `tests/it/docs.rs`).
//!
//! Authentication: `Authorization: Bearer <JWT>` verified against the OIDC
//! issuer's JWKS ([`crate::oidc`], production), or the session cookie of
//! the embedded mode — then a state-changing request must repeat the
//! session's CSRF token in `X-CSRF-Token`. Authorization and auditing are
//! the web pages' own ([`App::authorize`]); a refused token is audited too.

use super::queue::drafts_for;
use super::review::{amend_summary, decide_draft};
use super::{csrf_of, App, Ctx, Lang, Reply};
use crate::identity::User;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use opptak_domain::model::CallId;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

pub(super) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/api/openapi.json", get(openapi_json))
        .route("/api/v1/queue", get(queue))
        .route("/api/v1/calls/{id}", get(call))
        .route("/api/v1/calls/{id}/decision", post(decision))
        .route("/api/v1/calls/{id}/amendment", post(amendment))
        .route("/api/v1/calls/{id}/qa", post(qa_score))
        .route("/api/v1/qa/report", get(qa_report))
        .route("/api/v1/dashboard", get(dashboard))
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "opptak review API",
        description = "Drafts, reviews, QA and reporting of opptak's KI calls, and the customer archive of conversations. Every read of call content is authorized by role and written to the tamper-evident audit log, refusals included.",
        license(name = "UNLICENSED")
    ),
    paths(queue, call, decision, amendment, qa_score, qa_report, dashboard, super::archive::list, super::archive::read),
    modifiers(&Security),
    tags(
        (name = "review", description = "The advisor's drafts and decisions (R4)"),
        (name = "qa", description = "Quality sampling: assessments and the QA report (R6)"),
        (name = "reporting", description = "The topic dashboard, small counts suppressed (R5)"),
        (name = "archive", description = "The customer archive for the online bank: one customer's conversations of the last 3 years, for archive clients' tokens only (web.archive_clients)")
    )
)]
pub(super) struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "An access token of the bank's OIDC issuer (iss, aud, exp checked)",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                super::COOKIE,
                "The embedded mode's session cookie; POSTs then need X-CSRF-Token",
            ))),
        );
    }
}

/// The OpenAPI document of this API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

async fn openapi_json() -> Response {
    Json(openapi()).into_response()
}

/// An error body: `{"status": 403, "error": "..."}`.
#[derive(Serialize, ToSchema)]
pub(crate) struct ApiError {
    status: u16,
    error: String,
}

pub(crate) fn api_error(status: StatusCode, msg: &str) -> Response {
    let mut r = (
        status,
        Json(ApiError {
            status: status.as_u16(),
            error: msg.to_owned(),
        }),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"opptak\""),
        );
    }
    r
}

/// How an API caller authenticated.
pub(crate) enum Via {
    Bearer,
    /// The session cookie, with its token (for the CSRF check).
    Session(String),
}

impl App {
    /// The caller of an API request: a verified bearer token or a session.
    /// A refused bearer token is audited with the reason it failed.
    /// [`App::api_user`] and the call id of the path (404 if it is none).
    async fn api_call(&self, ctx: &Ctx, headers: &HeaderMap, id: &str) -> Result<(User, Via, CallId), Response> {
        let (user, via) = self.api_user(ctx, headers).await?;
        let call_id = CallId::parse(id).map_err(|_| api_error(StatusCode::NOT_FOUND, "unknown call"))?;
        Ok((user, via, call_id))
    }

    pub(crate) async fn api_user(&self, ctx: &Ctx, headers: &HeaderMap) -> Result<(User, Via), Response> {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
        if let Some(token) = bearer {
            return self.bearer_user(token.trim()).await.map(|u| (u, Via::Bearer));
        }
        match &ctx.session {
            Some((u, t)) => Ok((u.clone(), Via::Session(t.clone()))),
            None => Err(api_error(
                StatusCode::UNAUTHORIZED,
                "sign in: a bearer token or a session cookie is required",
            )),
        }
    }
}

/// A session caller's state-changing request must repeat the CSRF token.
fn check_csrf(via: &Via, headers: &HeaderMap) -> Result<(), Response> {
    match via {
        Via::Bearer => Ok(()),
        Via::Session(token) => {
            let sent = headers.get("x-csrf-token").and_then(|v| v.to_str().ok());
            if sent == Some(csrf_of(token).as_str()) {
                Ok(())
            } else {
                Err(api_error(StatusCode::FORBIDDEN, "X-CSRF-Token missing or wrong"))
            }
        }
    }
}

/// An open draft waiting for review.
#[derive(Serialize, ToSchema)]
pub(crate) struct QueueEntry {
    call_id: String,
    advisor_id: String,
    /// Microseconds since the Unix epoch.
    started_at_us: i64,
    /// Undecided past `web.escalate_after_h`: in the team lead's queue.
    escalated: bool,
}

/// The caller's open drafts: an advisor's own, a team lead's team's
/// escalated ones; empty for other roles.
#[utoipa::path(get, path = "/api/v1/queue", tag = "review",
    responses(
        (status = 200, description = "Open drafts", body = [QueueEntry]),
        (status = 401, description = "Not signed in, or the token was refused", body = ApiError),
    ),
    security(("bearer" = []), ("session" = [])))]
async fn queue(State(app): State<Arc<App>>, ctx: Ctx, headers: HeaderMap) -> Response {
    let (user, _) = match app.api_user(&ctx, &headers).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    match drafts_for(&app, &user).await {
        Ok(items) => Json(
            items
                .into_iter()
                .map(|q| QueueEntry {
                    call_id: q.call_id,
                    advisor_id: q.advisor_id,
                    started_at_us: q.started_at_us,
                    escalated: q.escalated,
                })
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => internal_json(e),
    }
}

pub(crate) fn internal_json(e: anyhow::Error) -> Response {
    tracing::error!(error = %e, "API request failed");
    api_error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
}

/// A call's KI content as a reviewer sees it.
#[derive(Serialize, ToSchema)]
pub(crate) struct CallView {
    call_id: String,
    advisor_id: String,
    started_at_us: i64,
    /// The reason kept in the audit log for this read.
    reason: String,
    /// `null` when there is no draft (yet), or its KI data is gone.
    draft: Option<DraftView>,
    versions: Vec<VersionView>,
    /// `null` when there is no transcript (yet), or its KI data is gone.
    transcript: Option<Vec<SegmentView>>,
    /// Approved or rejected: no more decisions.
    closed: bool,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct DraftView {
    summary: String,
    topics: Vec<String>,
    customer_requests: Vec<String>,
    follow_ups: Vec<String>,
    language: String,
    source: String,
    prompt_version: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct VersionView {
    version: u64,
    /// `edit`, `approved`, `rejected` or `amended`.
    kind: String,
    author: String,
    at_us: i64,
    /// `null` once its key is gone (the call's KI data for edits and the
    /// approval; amendments are kept with the 5-year record).
    text: Option<String>,
    /// The topics chosen with this version (`null`: the draft's).
    topics: Option<Vec<String>>,
    /// Why an amendment was made.
    reason: Option<String>,
}

impl From<crate::review::Version> for VersionView {
    fn from(v: crate::review::Version) -> Self {
        VersionView {
            version: v.version,
            kind: v.kind,
            author: v.author,
            at_us: v.at_us,
            text: v.text,
            topics: v.topics,
            reason: v.reason,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct SegmentView {
    /// `agent`, `customer` or `mixed`.
    speaker: String,
    start_s: f32,
    end_s: f32,
    text: String,
}

fn refusal_json(r: Response) -> Response {
    // The HTML refusal's status, as JSON.
    let status = r.status();
    let msg = match status {
        StatusCode::NOT_FOUND => "unknown call",
        StatusCode::BAD_REQUEST => "state a reason (X-Opptak-Reason header)",
        StatusCode::FORBIDDEN => "your role may not read this call",
        _ => "refused",
    };
    api_error(status, msg)
}

/// The reason a request states for reading (`X-Opptak-Reason`, UTF-8): a
/// header, not the query string, so it stays out of proxy and access logs.
pub(crate) const REASON_HEADER: &str = "x-opptak-reason";

fn stated_reason(headers: &HeaderMap) -> Option<String> {
    headers
        .get(REASON_HEADER)
        .and_then(|v| String::from_utf8(v.as_bytes().to_vec()).ok())
}

/// One call's draft, versions and transcript. Audited as `transcript.read`
/// with the caller's reason (compliance must state one, in the
/// `X-Opptak-Reason` header).
#[utoipa::path(get, path = "/api/v1/calls/{id}", tag = "review",
    params(("id" = String, Path, description = "The call id"),
           ("X-Opptak-Reason" = Option<String>, Header, description = "Why you read it, UTF-8 (required for compliance; kept in the audit log)")),
    responses(
        (status = 200, description = "The call's KI content", body = CallView),
        (status = 400, description = "A reason is required", body = ApiError),
        (status = 401, description = "Not signed in, or the token was refused", body = ApiError),
        (status = 403, description = "The role may not read this call", body = ApiError),
        (status = 404, description = "Unknown call", body = ApiError),
    ),
    security(("bearer" = []), ("session" = [])))]
async fn call(State(app): State<Arc<App>>, ctx: Ctx, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let (user, _, call_id) = match app.api_call(&ctx, &headers, &id).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let call = match app.edges.vault.meta().load_call(&call_id).await {
        Ok(c) => c,
        Err(e) => return internal_json(e.into()),
    };
    let subject = format!("call:{call_id}");
    let reason = match app
        .authorize(
            Lang::En,
            &user,
            call.as_ref(),
            &subject,
            "transcript.read",
            stated_reason(&headers).as_deref(),
        )
        .await
    {
        Ok(r) => r,
        Err(r) => return refusal_json(r),
    };
    let Some(call) = call else {
        return api_error(StatusCode::NOT_FOUND, "unknown call");
    };
    let e = &app.edges;
    let transcript = opptak_ki::transcribe::read_transcript(&e.vault, &call_id).await;
    let draft = opptak_ki::summarize::read_draft(&e.vault, &call_id).await;
    let versions = match app.review.versions(&call_id).await {
        Ok(v) => v,
        Err(e) => return internal_json(e),
    };
    Json(CallView {
        call_id: call_id.to_string(),
        advisor_id: call.facts.advisor_id.clone(),
        started_at_us: call.facts.started_at_us,
        reason,
        closed: versions.iter().any(|v| v.kind != "edit"),
        draft: draft.ok().map(|d| DraftView {
            summary: d.summary,
            topics: d.topics,
            customer_requests: d.customer_requests,
            follow_ups: d.follow_ups,
            language: d.language,
            source: d.source,
            prompt_version: d.prompt_version,
        }),
        versions: versions.into_iter().map(VersionView::from).collect(),
        transcript: transcript.ok().map(|segs| {
            segs.into_iter()
                .map(|s| SegmentView {
                    speaker: s.speaker,
                    start_s: s.start_s,
                    end_s: s.end_s,
                    text: s.text,
                })
                .collect()
        }),
    })
    .into_response()
}

/// An amendment of an approved summary (rectification).
#[derive(Deserialize, ToSchema)]
pub(crate) struct AmendmentRequest {
    /// The amended summary.
    text: String,
    /// Why it is amended (at least 10 characters); kept with the version
    /// and in the audit log.
    reason: String,
    /// The topics (taxonomy ids); absent: the record's stay.
    #[serde(default)]
    topics: Option<Vec<String>>,
}

/// Amends the approved summary of a call: the call's advisor or compliance.
/// The approved text stays in the record's history; the record keeps its
/// 5-year clock (from the call's end) and is announced again.
#[utoipa::path(post, path = "/api/v1/calls/{id}/amendment", tag = "review",
    params(("id" = String, Path, description = "The call id"),
           ("X-CSRF-Token" = Option<String>, Header, description = "Required with a session cookie")),
    request_body = AmendmentRequest,
    responses(
        (status = 200, description = "The version written", body = VersionView),
        (status = 401, description = "Not signed in, or the token was refused", body = ApiError),
        (status = 403, description = "Neither the call's advisor nor compliance, or no CSRF token", body = ApiError),
        (status = 404, description = "Unknown call", body = ApiError),
        (status = 409, description = "No approved summary, no reason, unknown topics, or nothing changed", body = ApiError),
    ),
    security(("bearer" = []), ("session" = [])))]
async fn amendment(
    State(app): State<Arc<App>>,
    ctx: Ctx,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(req): Json<AmendmentRequest>,
) -> Response {
    let (user, via, call_id) = match app.api_call(&ctx, &headers, &id).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let subject = format!("call:{call_id}");
    if let Err(r) = check_csrf(&via, &headers) {
        if let Err(e) = app
            .audit(&user, "summary.amend", &subject, "no valid CSRF token", "refused")
            .await
        {
            return internal_json(e);
        }
        return r;
    }
    match amend_summary(&app, &user, &call_id, &req.text, req.topics, &req.reason, Reply::Json).await {
        Ok(v) => Json(VersionView::from(v)).into_response(),
        Err(r) => r,
    }
}

/// The advisor's decision on a draft.
#[derive(Deserialize, ToSchema)]
pub(crate) struct DecisionRequest {
    /// `edit` (save, stays open), `approve` (the text becomes the
    /// customer-service record) or `reject` (the text is the reason).
    action: String,
    text: String,
    /// The topics (taxonomy ids) the advisor chooses; absent: the draft's,
    /// or those of the last saved edit.
    #[serde(default)]
    topics: Option<Vec<String>>,
}

/// Edits, approves or rejects the draft of one of the caller's own calls.
#[utoipa::path(post, path = "/api/v1/calls/{id}/decision", tag = "review",
    params(("id" = String, Path, description = "The call id"),
           ("X-CSRF-Token" = Option<String>, Header, description = "Required with a session cookie")),
    request_body = DecisionRequest,
    responses(
        (status = 200, description = "The version written", body = VersionView),
        (status = 400, description = "Unknown action or empty text", body = ApiError),
        (status = 401, description = "Not signed in, or the token was refused", body = ApiError),
        (status = 403, description = "Not the call's advisor, or no CSRF token", body = ApiError),
        (status = 404, description = "Unknown call", body = ApiError),
        (status = 409, description = "Already approved or rejected, or no draft", body = ApiError),
    ),
    security(("bearer" = []), ("session" = [])))]
async fn decision(
    State(app): State<Arc<App>>,
    ctx: Ctx,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(req): Json<DecisionRequest>,
) -> Response {
    let (user, via, call_id) = match app.api_call(&ctx, &headers, &id).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let subject = format!("call:{call_id}");
    let action = format!("draft.{}", req.action);
    if let Err(r) = check_csrf(&via, &headers) {
        if let Err(e) = app
            .audit(&user, &action, &subject, "no valid CSRF token", "refused")
            .await
        {
            return internal_json(e);
        }
        return r;
    }
    match decide_draft(&app, &user, &call_id, &req.action, req.text, req.topics, Reply::Json).await {
        Ok(v) => Json(VersionView::from(v)).into_response(),
        Err(r) => r,
    }
}

/// A QA reviewer's assessment of a sampled call.
#[derive(Deserialize, ToSchema)]
pub(crate) struct QaScoreRequest {
    /// 1–5: does the summary match the call?
    correctness: u8,
    /// 1–5: does it keep what matters?
    relevance: u8,
    /// 1–5: language and form.
    quality: u8,
    /// `""` (none), `discriminatory` or `unexpected`; a flag needs a note.
    #[serde(default)]
    flag: String,
    /// Sealed under the call's `ki` key; gone with the KI data.
    #[serde(default)]
    note: String,
}

/// Stores (or replaces) the caller's assessment of a call sampled for QA.
#[utoipa::path(post, path = "/api/v1/calls/{id}/qa", tag = "qa",
    params(("id" = String, Path, description = "The call id"),
           ("X-CSRF-Token" = Option<String>, Header, description = "Required with a session cookie")),
    request_body = QaScoreRequest,
    responses(
        (status = 204, description = "Stored"),
        (status = 400, description = "A score outside 1–5, an unknown flag, a flag without a note", body = ApiError),
        (status = 401, description = "Not signed in, or the token was refused", body = ApiError),
        (status = 403, description = "Not a QA reviewer, the call is not sampled, or no CSRF token", body = ApiError),
        (status = 404, description = "Unknown call", body = ApiError),
        (status = 410, description = "The call's KI data is gone", body = ApiError),
    ),
    security(("bearer" = []), ("session" = [])))]
async fn qa_score(
    State(app): State<Arc<App>>,
    ctx: Ctx,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(req): Json<QaScoreRequest>,
) -> Response {
    let (user, via, call_id) = match app.api_call(&ctx, &headers, &id).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if let Err(r) = check_csrf(&via, &headers) {
        if let Err(e) = app
            .audit(
                &user,
                "qa.score",
                &format!("call:{call_id}"),
                "no valid CSRF token",
                "refused",
            )
            .await
        {
            return internal_json(e);
        }
        return r;
    }
    let scores = [req.correctness, req.relevance, req.quality];
    match super::qa::score_call(&app, Reply::Json, &user, &call_id, &req.flag, scores, req.note).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(r) => r,
    }
}

/// The QA report's numbers for one topic or the total.
#[derive(Serialize, ToSchema)]
pub(crate) struct TopicStatsView {
    /// The primary topic, or `TOTAL`.
    topic: String,
    /// Withheld because it counts fewer than `web.dashboard_k` calls (or it
    /// would reveal such a row): every number is then 0 or null.
    suppressed: bool,
    drafted: u64,
    sampled: u64,
    scored: u64,
    reviews: u64,
    mean_correctness: Option<f64>,
    mean_relevance: Option<f64>,
    mean_quality: Option<f64>,
    flagged_discriminatory: u64,
    flagged_unexpected: u64,
    approved: u64,
    rejected: u64,
    /// Mean word-level edit distance from draft to approved summary.
    mean_edit_distance: Option<f64>,
    /// Mean share of the draft's words the advisor changed.
    mean_edit_distance_per_draft_word: Option<f64>,
}

impl From<&crate::qa::TopicStats> for TopicStatsView {
    fn from(t: &crate::qa::TopicStats) -> Self {
        Self {
            topic: t.topic.clone(),
            suppressed: t.suppressed,
            drafted: t.drafted,
            sampled: t.sampled,
            scored: t.scored,
            reviews: t.reviews,
            mean_correctness: t.mean_correctness,
            mean_relevance: t.mean_relevance,
            mean_quality: t.mean_quality,
            flagged_discriminatory: t.flagged_discriminatory,
            flagged_unexpected: t.flagged_unexpected,
            approved: t.approved,
            rejected: t.rejected,
            mean_edit_distance: t.mean_edit_distance,
            mean_edit_distance_per_draft_word: t.mean_edit_distance_per_draft_word,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct QaReportView {
    from_day: String,
    to_day: String,
    topics: Vec<TopicStatsView>,
    total: TopicStatsView,
}

/// The QA report over the calls of a range of days (QA, team lead, compliance).
#[utoipa::path(get, path = "/api/v1/qa/report", tag = "qa",
    params(super::qa::Range),
    responses(
        (status = 200, description = "The report", body = QaReportView),
        (status = 400, description = "A day that is not YYYY-MM-DD", body = ApiError),
        (status = 401, description = "Not signed in, or the token was refused", body = ApiError),
        (status = 403, description = "The role may not read the report", body = ApiError),
    ),
    security(("bearer" = []), ("session" = [])))]
async fn qa_report(
    State(app): State<Arc<App>>,
    ctx: Ctx,
    headers: HeaderMap,
    Query(q): Query<super::qa::Range>,
) -> Response {
    let (user, _) = match app.api_user(&ctx, &headers).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    match super::qa::report_for(&app, Reply::Json, &user, &q).await {
        Ok(r) => Json(QaReportView {
            from_day: r.from_day.clone(),
            to_day: r.to_day.clone(),
            topics: r.topics.iter().map(TopicStatsView::from).collect(),
            total: TopicStatsView::from(&r.total),
        })
        .into_response(),
        Err(r) => r,
    }
}

/// A table of counts; `null` is a suppressed count.
#[derive(Serialize, ToSchema)]
pub(crate) struct TableView {
    rows: Vec<String>,
    columns: Vec<String>,
    cells: Vec<Vec<Option<u64>>>,
    row_totals: Vec<Option<u64>>,
    column_totals: Vec<Option<u64>>,
    total: Option<u64>,
}

impl From<&crate::dashboard::Table> for TableView {
    fn from(t: &crate::dashboard::Table) -> Self {
        let cells = |v: &[crate::dashboard::Cell]| v.iter().map(|c| c.count()).collect::<Vec<_>>();
        Self {
            rows: t.rows.clone(),
            columns: t.columns.clone(),
            cells: t.cells.iter().map(|r| cells(r)).collect(),
            row_totals: cells(&t.row_totals),
            column_totals: cells(&t.column_totals),
            total: t.total.count(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct TrendView {
    topic: String,
    previous: Option<u64>,
    last: Option<u64>,
    /// `null` when either count is suppressed.
    change: Option<i64>,
}

/// The topic dashboard's numbers; counts below `k` and those that would
/// reveal them are `null`.
#[derive(Serialize, ToSchema)]
pub(crate) struct DashboardView {
    from_day: String,
    to_day: String,
    /// `day` or `week`.
    period: String,
    /// The desk of `by_period` (the channel, by `channel`), or `(all)`.
    desk: String,
    /// The channel filter (`phone`, `aino_chatbot`, `advisor_chat`,
    /// `secure_message`, `email`), or `(all)`.
    channel: String,
    /// `by_desk`'s rows: `desk` or `channel`.
    breakdown: String,
    k: u32,
    /// Topics × periods for `desk`.
    by_period: TableView,
    /// Desks (or channels) × topics over the whole range.
    by_desk: TableView,
    trends: Vec<TrendView>,
}

/// Topic volumes per period and desk (every role but the auditor).
#[utoipa::path(get, path = "/api/v1/dashboard", tag = "reporting",
    params(super::dashboard::Params),
    responses(
        (status = 200, description = "The dashboard's numbers", body = DashboardView),
        (status = 400, description = "A bad day, period or range", body = ApiError),
        (status = 401, description = "Not signed in, or the token was refused", body = ApiError),
        (status = 403, description = "The auditor's role reads the audit log only", body = ApiError),
    ),
    security(("bearer" = []), ("session" = [])))]
async fn dashboard(
    State(app): State<Arc<App>>,
    ctx: Ctx,
    headers: HeaderMap,
    Query(p): Query<super::dashboard::Params>,
) -> Response {
    let (user, _) = match app.api_user(&ctx, &headers).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    match super::dashboard::build(&app, Reply::Json, &user, &p).await {
        Ok(d) => Json(DashboardView {
            from_day: d.filter.first_day().to_string(),
            to_day: d.filter.last_day().to_string(),
            period: d.filter.period().as_str().to_owned(),
            desk: d.slice_desk().to_owned(),
            channel: d.filter.channel().unwrap_or(crate::dashboard::ALL).to_owned(),
            breakdown: d.filter.breakdown().as_str().to_owned(),
            k: d.filter.k(),
            by_period: TableView::from(&d.by_period),
            by_desk: TableView::from(&d.by_desk),
            trends: d
                .trends
                .iter()
                .map(|t| TrendView {
                    topic: t.topic.clone(),
                    previous: t.previous.count(),
                    last: t.last.count(),
                    change: t.change,
                })
                .collect(),
        })
        .into_response(),
        Err(r) => r,
    }
}
