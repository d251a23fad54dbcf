//! The review service's JSON API under `/api/v1` (issue 6 item 1), for the
//! bank's other systems and for scripts, described by an OpenAPI 3.1
//! document generated from these handlers (`GET /api/openapi.json`, kept in
//! `docs/openapi.json`, checked by `tests/docs.rs`).
//!
//! Authentication: `Authorization: Bearer <JWT>` verified against the OIDC
//! issuer's JWKS ([`crate::oidc`], production), or the session cookie of
//! the embedded mode — then a state-changing request must repeat the
//! session's CSRF token in `X-CSRF-Token`. Authorization and auditing are
//! the web pages' own ([`App::authorize`]); a refused token is audited too.

use super::review::{drafts_for, ReasonQuery};
use super::{csrf_of, App, Ctx, Lang};
use crate::identity::{Role, User};
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
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "opptak review API",
        description = "Drafts, reviews, QA and reporting of opptak's KI calls. Every read of call content is authorized by role and written to the tamper-evident audit log, refusals included.",
        license(name = "UNLICENSED")
    ),
    paths(queue, call, decision),
    modifiers(&Security),
    tags((name = "review", description = "The advisor's drafts and decisions (R4)"))
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

fn internal_json(e: anyhow::Error) -> Response {
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
    /// `edit`, `approved` or `rejected`.
    kind: String,
    author: String,
    at_us: i64,
    /// `null` once the call's KI data is erased.
    text: Option<String>,
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
        StatusCode::BAD_REQUEST => "state a reason (?reason=...)",
        StatusCode::FORBIDDEN => "your role may not read this call",
        _ => "refused",
    };
    api_error(status, msg)
}

/// One call's draft, versions and transcript. Audited as `transcript.read`
/// with the caller's reason (compliance must state one).
#[utoipa::path(get, path = "/api/v1/calls/{id}", tag = "review",
    params(("id" = String, Path, description = "The call id"),
           ("reason" = Option<String>, Query, description = "Why you read it (required for compliance; kept in the audit log)")),
    responses(
        (status = 200, description = "The call's KI content", body = CallView),
        (status = 400, description = "A reason is required", body = ApiError),
        (status = 401, description = "Not signed in, or the token was refused", body = ApiError),
        (status = 403, description = "The role may not read this call", body = ApiError),
        (status = 404, description = "Unknown call", body = ApiError),
    ),
    security(("bearer" = []), ("session" = [])))]
async fn call(
    State(app): State<Arc<App>>,
    ctx: Ctx,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<ReasonQuery>,
) -> Response {
    let (user, _) = match app.api_user(&ctx, &headers).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let Ok(call_id) = CallId::parse(&id) else {
        return api_error(StatusCode::NOT_FOUND, "unknown call");
    };
    let call = match app.edges.meta.load_call(&call_id).await {
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
            q.reason.as_deref(),
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
    let transcript = opptak_ki::transcribe::read_transcript(&e.meta, &e.blobs, &e.keys, &call_id).await;
    let draft = opptak_ki::summarize::read_draft(&e.meta, &e.blobs, &e.keys, &call_id).await;
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
        versions: versions
            .into_iter()
            .map(|v| VersionView {
                version: v.version,
                kind: v.kind,
                author: v.author,
                at_us: v.at_us,
                text: v.text,
            })
            .collect(),
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

/// The advisor's decision on a draft.
#[derive(Deserialize, ToSchema)]
pub(crate) struct DecisionRequest {
    /// `edit` (save, stays open), `approve` (the text becomes the
    /// customer-service record) or `reject` (the text is the reason).
    action: String,
    text: String,
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
    let (user, via) = match app.api_user(&ctx, &headers).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let Ok(call_id) = CallId::parse(&id) else {
        return api_error(StatusCode::NOT_FOUND, "unknown call");
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
    let decision = match req.action.as_str() {
        "edit" => crate::review::Decision::Edit(req.text),
        "approve" => crate::review::Decision::Approve(req.text),
        "reject" => crate::review::Decision::Reject(req.text),
        _ => return api_error(StatusCode::BAD_REQUEST, "action must be edit, approve or reject"),
    };
    let mine = match app.edges.meta.load_call(&call_id).await {
        Ok(Some(c)) => c.facts.advisor_id == user.user_id && user.role == Role::Advisor,
        Ok(None) => return api_error(StatusCode::NOT_FOUND, "unknown call"),
        Err(e) => return internal_json(e.into()),
    };
    if !mine {
        if let Err(e) = app.audit(&user, &action, &subject, "", "refused").await {
            return internal_json(e);
        }
        return api_error(StatusCode::FORBIDDEN, "only the call's advisor decides on its draft");
    }
    match app.review.decide(&user, &call_id, decision).await {
        Ok(v) => {
            if let Err(e) = app
                .audit(&user, &action, &subject, &format!("version {}", v.version), "allowed")
                .await
            {
                return internal_json(e);
            }
            Json(VersionView {
                version: v.version,
                kind: v.kind,
                author: v.author,
                at_us: v.at_us,
                text: v.text,
            })
            .into_response()
        }
        Err(e) => {
            if let Err(e) = app.audit(&user, &action, &subject, "", "failed").await {
                return internal_json(e);
            }
            api_error(StatusCode::CONFLICT, &e.to_string())
        }
    }
}
