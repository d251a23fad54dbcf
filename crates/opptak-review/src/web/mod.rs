//! The review service (issue 6): server-rendered HTML (maud escapes every
//! value, so a transcript holding `<script>` shows as text), working
//! without JavaScript (the call page's player adds one script of the
//! service's own, [`assets`]), Norwegian and English, every page reachable
//! by keyboard.
//!
//! - [`admin`]: the admin's users, teams and confirmations.
//! - [`audit`]: the auditor's audit log: filters, paging, CSV, verification.
//! - [`api`]: the JSON API under `/api/v1` and its OpenAPI document.
//! - [`assets`]: the service's own static files (`/static/player.js`).
//! - [`archive`]: the customer archive API for the online bank (an archive
//!   client's token, never a person's): one customer's conversations.
//! - [`conversations`]: chat, secure messages and e-mail: the list and the
//!   conversation page (the copy the role may read).
//! - [`dashboard`]: the topic dashboard (R5), k-suppressed, SVG and CSV.
//! - [`qa`]: quality sampling: the QA queue, assessments, the QA report.
//! - [`queue`]: the advisor's queue of drafts and the team lead's escalations.
//! - [`reason`]: the reason form; stated reasons kept per session.
//! - [`reader`]: the call page's read for the command line (`opptak ki show`).
//! - [`search`]: the call search of compliance and QA.
//! - [`review`]: the call page (facts and status, approved summary, draft,
//!   versions with their word diffs), confirmed decisions, audio ranges.
//! - [`player`]: the call page's player, channel loudness and transcript.
//!
//! Every request for call content is authorized by role and written to the
//! audit log first, refusals included ([`App::authorize`]):
//! - advisor: only calls where they are the advisor (reason "review", not asked);
//! - team lead: calls of advisors in their team (reason "team review");
//! - compliance: any call, with a stated reason: in the HTML service from a
//!   form, kept server-side per session ([`reason`]); in the API from the
//!   `X-Opptak-Reason` header;
//! - QA: sampled calls only (reason "qa sample");
//! - auditor, admin: never content.
//!
//! Sessions: an `HttpOnly`, `SameSite=Strict` cookie holding a random token
//! (only its hash is stored, [`crate::identity`]). Every form post carries a
//! CSRF token derived from the session token (`SHA-256("opptak-csrf" ‖
//! token)`), which a page from another origin cannot compute; the sign-in
//! form, before any session, uses a double-submit token (a random cookie
//! repeated in the form). Failed sign-ins are limited per user name and per
//! client address ([`LoginLimiter`]).

// Handlers refuse by returning the finished `Response` (128 bytes, built
// once per request): boxing it would only add an allocation.
#![allow(clippy::result_large_err)]

mod admin;
mod api;
mod archive;
mod assets;
mod audit;
pub mod catalogue;
mod conversations;
mod dashboard;
pub(crate) mod format;
pub(crate) mod labels;
mod player;
mod qa;
mod queue;
pub mod reader;
mod reason;
mod review;
mod search;

pub use api::openapi;
pub(crate) use catalogue as cat;
use catalogue::Msg;

use crate::identity::{Identity, Role, User};
use crate::ReviewEdges;
use anyhow::Result;
use axum::extract::{ConnectInfo, Form, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup, DOCTYPE};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

const COOKIE: &str = "opptak_session";
const LANG_COOKIE: &str = "opptak_lang";
const LOGIN_COOKIE: &str = "opptak_login";

/// The page language: Norwegian (bokmål) first, English on request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    Nb,
    En,
}

impl Lang {
    /// The `opptak_lang` cookie if set, else the first supported language
    /// of `Accept-Language`, else Norwegian.
    fn of(headers: &HeaderMap) -> Lang {
        if let Some(v) = cookie(headers, LANG_COOKIE) {
            return Lang::parse(&v).unwrap_or(Lang::Nb);
        }
        headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.split(',')
                    .filter_map(|part| part.split(';').next())
                    .find_map(|tag| Lang::parse(tag.trim().split('-').next().unwrap_or("")))
            })
            .unwrap_or(Lang::Nb)
    }

    fn parse(code: &str) -> Option<Lang> {
        match code.to_ascii_lowercase().as_str() {
            "nb" | "no" | "nn" => Some(Lang::Nb),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Lang::Nb => "nb",
            Lang::En => "en",
        }
    }

    /// A catalogue message in this language.
    pub fn m(self, msg: Msg) -> &'static str {
        match self {
            Lang::Nb => msg.nb,
            Lang::En => msg.en,
        }
    }

    /// A catalogue message with its `{name}` placeholders filled.
    pub fn f(self, msg: Msg, args: &[(&str, &str)]) -> String {
        let mut s = self.m(msg).to_owned();
        for (k, v) in args {
            s = s.replace(&format!("{{{k}}}"), v);
        }
        s
    }

    /// Picks the text of this language from a Norwegian/English pair: only
    /// for text that is not the service's own (a topic's label from the
    /// taxonomy file), never for a page's wording, which is in [`cat`].
    pub fn pick<'a>(self, nb: &'a str, en: &'a str) -> &'a str {
        match self {
            Lang::Nb => nb,
            Lang::En => en,
        }
    }

    fn other(self) -> Lang {
        match self {
            Lang::Nb => Lang::En,
            Lang::En => Lang::Nb,
        }
    }
}

/// Knobs of the router; production uses [`router`].
#[derive(Clone, Debug)]
pub struct Options {
    pub secure_cookies: bool,
    /// Only for measuring the audit log's cost (`BENCHMARKS.md`): `false`
    /// skips the audit appends of content reads. Not reachable from config.
    #[doc(hidden)]
    pub audit_reads: bool,
}

pub(crate) struct App {
    pub(crate) edges: ReviewEdges,
    pub(crate) identity: Identity,
    pub(crate) audit: opptak_audit::Audit,
    pub(crate) review: crate::review::Review,
    pub(crate) qa: crate::qa::Qa,
    /// The call search, saved searches and stated reasons.
    pub(crate) search: opptak_store::search::SqlSearch,
    /// The search form's advisor list, reused for a while.
    pub(crate) advisors: search::AdvisorCache,
    /// Saved searches read before (they never change).
    pub(crate) saved: search::SavedCache,
    /// Verifies bearer tokens when `[oidc]` is configured.
    oidc: Option<crate::oidc::OidcVerifier>,
    secure_cookies: bool,
    audit_reads: bool,
    limiter: LoginLimiter,
}

/// Builds the service's router over `edges`.
pub async fn router(edges: &ReviewEdges, secure_cookies: bool) -> Result<Router> {
    router_with(
        edges,
        Options {
            secure_cookies,
            audit_reads: true,
        },
    )
    .await
}

/// [`router`] with explicit [`Options`].
pub async fn router_with(edges: &ReviewEdges, options: Options) -> Result<Router> {
    let app = Arc::new(App::open(edges, options).await?);
    Ok(Router::new()
        .route("/", get(home))
        .route("/healthz", get(|| async { "ok" }))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/lang/{code}", get(set_lang))
        .merge(review::routes())
        .merge(queue::routes())
        .merge(reason::routes())
        .merge(search::routes())
        .merge(api::routes())
        .merge(archive::routes())
        .merge(conversations::routes())
        .merge(admin::routes())
        .merge(audit::routes())
        .merge(qa::routes())
        .merge(dashboard::routes())
        .merge(assets::routes())
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(app.clone(), with_page_ctx))
        .with_state(app)
        .layer(axum::middleware::from_fn(run_to_completion))
        .layer(axum::middleware::from_fn(security_headers)))
}

impl App {
    /// The service's state over `edges`: the stores it reads and writes.
    async fn open(edges: &ReviewEdges, options: Options) -> Result<App> {
        let web = &edges.config.web;
        Ok(App {
            identity: Identity::open(edges).await?,
            audit: edges.audit().await?,
            review: crate::review::Review::open(edges).await?,
            qa: crate::qa::Qa::open(edges).await?,
            search: opptak_store::search::SqlSearch::open(&edges.config.metadata_url).await?,
            advisors: search::AdvisorCache::default(),
            saved: search::SavedCache::default(),
            oidc: match &edges.config.oidc {
                Some(cfg) => Some(
                    crate::oidc::OidcVerifier::new(
                        cfg,
                        reqwest::Client::builder()
                            .timeout(std::time::Duration::from_millis(cfg.fetch_timeout_ms))
                            .build()?,
                        edges.vault.clock().clone(),
                    )?
                    .with_archive_clients(&web.archive_clients),
                ),
                None => None,
            },
            edges: edges.clone(),
            secure_cookies: options.secure_cookies,
            audit_reads: options.audit_reads,
            limiter: LoginLimiter::new(web.login_max_failures, i64::from(web.login_window_min) * 60_000_000),
        })
    }
}

/// Every response, pages and API alike, carries personal data or could:
/// never cached (unless a handler said otherwise) and never content-sniffed.
async fn security_headers(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// Runs each request's handler as a task of its own, so a client that
/// disconnects mid-request does not cancel it halfway: an audit append, a
/// decision or a sign-in is then either done or not started, never dropped
/// inside a database transaction. (sqlx 0.8's `begin()` is not cancel-safe on
/// PostgreSQL: a future dropped during the `BEGIN` round trip returns the
/// connection to the pool inside a transaction, and the audit's advisory lock
/// with it — sqlx issue #4385; found by the wrk benchmark, whose closing
/// connections logged "there is already a transaction in progress".)
async fn run_to_completion(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    match tokio::spawn(next.run(req)).await {
        Ok(response) => response,
        Err(e) => {
            tracing::error!(error = %e, "request handler panicked");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// Serves the router on `listener` until `shutdown` resolves (with the
/// client address known, for the sign-in limiter).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

pub(crate) fn csrf_of(token: &str) -> String {
    hex::encode(Sha256::digest([b"opptak-csrf\0".as_slice(), token.as_bytes()].concat()))
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

tokio::task_local! {
    /// The request's [`Ctx`], for error pages built where no handler's
    /// `Ctx` is at hand (so every error page keeps the menu and sign-out).
    static PAGE: Ctx;
}

/// Resolves the request's [`Ctx`] once (one session lookup), hands it to
/// the handler's extractor and to error pages ([`PAGE`]).
async fn with_page_ctx(
    State(app): State<Arc<App>>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let (mut parts, body) = req.into_parts();
    let ctx = match Ctx::resolve(&parts, &app).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    parts.extensions.insert(ctx.clone());
    req = axum::extract::Request::from_parts(parts, body);
    PAGE.scope(ctx, next.run(req)).await
}

/// What every handler knows about its request: the page language and the
/// signed-in user with their session token, if any.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub(crate) lang: Lang,
    pub(crate) session: Option<(User, String)>,
    /// Where the language switch returns to: this page (path and query)
    /// for a GET, the home page otherwise.
    back: String,
}

impl FromRequestParts<Arc<App>> for Ctx {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<Ctx>() {
            Some(ctx) => Ok(ctx.clone()),
            None => Ctx::resolve(parts, app).await,
        }
    }
}

impl Ctx {
    async fn resolve(parts: &Parts, app: &App) -> Result<Self, Response> {
        let lang = Lang::of(&parts.headers);
        let session = match cookie(&parts.headers, COOKIE) {
            None => None,
            Some(token) => app
                .identity
                .session(&token)
                .await
                .map_err(|e| internal(lang, e))?
                .map(|u| (u, token)),
        };
        let back = match (&parts.method, parts.uri.path_and_query()) {
            (&axum::http::Method::GET, Some(pq)) => pq.as_str().to_owned(),
            _ => "/".to_owned(),
        };
        Ok(Ctx { lang, session, back })
    }

    /// The signed-in user and token, or 401.
    pub(crate) fn user(&self) -> Result<(&User, &str), Response> {
        match &self.session {
            Some((u, t)) => Ok((u, t)),
            None => Err(self.error(StatusCode::UNAUTHORIZED, cat::common::SIGN_IN_FIRST)),
        }
    }

    /// The signed-in user, or a redirect to the sign-in page (for pages
    /// a person navigates to).
    pub(crate) fn page_user(&self) -> Result<(&User, &str), Response> {
        self.user().map_err(|_| Redirect::to("/login").into_response())
    }

    /// An error page, with the signed-in user's menu.
    pub(crate) fn error(&self, status: StatusCode, msg: Msg) -> Response {
        error_page(self.lang, status, self.lang.m(msg), self.session.as_ref(), &self.back)
    }

    /// A full page for this request.
    pub(crate) fn page(&self, title: &str, body: Markup) -> Response {
        Html(
            page(self.lang, title, self.session.as_ref(), &self.back, body),
            StatusCode::OK,
        )
        .into_response()
    }
}

/// The links a role's pages offer in the header.
/// Each role's own main page, where it lands after signing in (and the
/// first link of its menu).
pub(crate) fn main_page(role: Role) -> &'static str {
    match role {
        Role::Advisor => "/queue",
        Role::TeamLead => "/team",
        Role::Qa => "/qa",
        Role::Compliance => "/search",
        Role::Auditor => "/audit",
        Role::Admin => "/admin/users",
    }
}

fn nav(lang: Lang, role: Role) -> Vec<(&'static str, &'static str)> {
    let mut links = Vec::new();
    match role {
        Role::Advisor => links.push(("/queue", lang.m(cat::common::DRAFTS))),
        Role::TeamLead => links.push(("/team", lang.m(cat::queue::ESCALATIONS))),
        Role::Compliance => links.push(("/search", lang.m(cat::search::FIND_A_CALL))),
        Role::Auditor => links.push(("/audit", lang.m(cat::common::AUDIT_LOG))),
        Role::Admin => links.push(("/admin/users", lang.m(cat::common::USERS))),
        Role::Qa => {}
    }
    if role == Role::Qa {
        links.push(("/qa", lang.m(cat::common::QA)));
        links.push(("/search", lang.m(cat::search::FIND_A_CALL)));
    }
    if qa::reads_report(role) {
        links.push(("/qa/report", lang.m(cat::common::QA_REPORT)));
    }
    if dashboard::reads_dashboard(role) {
        links.push(("/dashboard", lang.m(cat::common::TOPICS)));
    }
    if conversations::reads_conversations(role) {
        links.push(("/conversations", lang.m(cat::common::CHATS_AND_MESSAGES)));
    }
    debug_assert_eq!(links.first().map(|l| l.0), Some(main_page(role)));
    links
}

fn page(lang: Lang, title: &str, session: Option<&(User, String)>, back: &str, body: Markup) -> Markup {
    let other = lang.other();
    html! {
        (DOCTYPE)
        html lang=(lang.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " — opptak" }
                link rel="icon" href="data:,";
                style { (STYLE) }
            }
            body {
                a.skip href="#main" { (lang.m(cat::common::SKIP_TO_CONTENT)) }
                header {
                    strong { "opptak" }
                    nav aria-label=(lang.m(cat::common::MAIN_MENU)) {
                        @if let Some((u, token)) = session {
                            @for (href, label) in nav(lang, u.role) {
                                a href=(href) { (label) }
                            }
                            span.who { (u.display_name) " (" (role_name(lang, u.role)) ")" }
                            form.inline method="post" action="/logout" {
                                input type="hidden" name="csrf" value=(csrf_of(token));
                                button type="submit" { (lang.m(cat::common::SIGN_OUT)) }
                            }
                        }
                        a href={ "/lang/" (other.code()) "?back=" (urlencode(back)) } hreflang=(other.code()) lang=(other.code()) {
                            (other.m(cat::common::ENGLISH))
                        }
                    }
                }
                main #main tabindex="-1" { h1 { (title) } (body) }
            }
        }
    }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:72rem;margin:1rem auto;padding:0 1rem;color:#111}\
header{display:flex;flex-wrap:wrap;gap:.5rem 1rem;align-items:center;border-bottom:2px solid #124;padding-bottom:.5rem}\
header nav{display:flex;flex-wrap:wrap;gap:.5rem 1rem;align-items:center;flex:1 1 auto;min-width:0}header .who{margin-left:auto}\
@media (max-width:40rem){body{padding:0 .5rem;margin:.5rem auto}header .who{margin-left:0}h1{font-size:1.4rem;overflow-wrap:anywhere}}\
.field-error{color:#a00;font-weight:bold;margin:.2rem 0}[aria-invalid=true]{border:2px solid #a00}\
.errors{border:2px solid #a00;padding:.5rem 1rem;margin:1rem 0}.notice{border:2px solid #060;padding:.5rem 1rem;margin:1rem 0}\
.badge{display:inline-block;padding:.1rem .5rem;border-radius:.8rem;border:1px solid #555;font-size:.9rem}\
form.inline{display:inline}.skip{position:absolute;left:-999px}.skip:focus{left:1rem;top:1rem;background:#fff}\
table{border-collapse:collapse}td,th{padding:.3rem .6rem;border-bottom:1px solid #ccc;text-align:left;vertical-align:top}\
.agent{color:#124}.customer{color:#412}del{color:#900}ins{color:#060}\
a:focus,button:focus,input:focus,textarea:focus,select:focus,audio:focus{outline:3px solid #06c;outline-offset:2px}\
button{padding:.3rem .8rem}main{overflow-x:auto}.flag{color:#900;font-weight:bold}.muted{color:#555}";

/// A role's name in `lang`.
pub(crate) fn role_name(lang: Lang, role: Role) -> &'static str {
    labels::role(lang, role)
}

pub(crate) struct Html(pub(crate) Markup, pub(crate) StatusCode);

impl IntoResponse for Html {
    fn into_response(self) -> Response {
        let mut r = (self.1, self.0.into_string()).into_response();
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; img-src 'self' data:; media-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            ),
        );
        h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
        r
    }
}

pub(crate) fn error(lang: Lang, status: StatusCode, msg: Msg) -> Response {
    let (session, back) = PAGE
        .try_with(|c| (c.session.clone(), c.back.clone()))
        .unwrap_or((None, "/".to_owned()));
    error_page(lang, status, lang.m(msg), session.as_ref(), &back)
}

/// An error page: the message, where to go next, and the menu of whoever
/// is signed in (never a bare page without a way back or out).
fn error_page(lang: Lang, status: StatusCode, text: &str, session: Option<&(User, String)>, back: &str) -> Response {
    let title = match status {
        StatusCode::NOT_FOUND | StatusCode::GONE => cat::common::NOT_FOUND_TITLE,
        StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED => cat::common::NO_ACCESS_TITLE,
        s if s.is_server_error() => cat::common::ERROR,
        _ => cat::common::CANNOT_DO_THAT_TITLE,
    };
    Html(
        page(
            lang,
            lang.m(title),
            session,
            back,
            html! {
                p role="alert" { (text) }
                p { a href="/" { (lang.m(if session.is_some() { cat::common::TO_YOUR_START_PAGE } else { cat::common::TO_SIGN_IN })) } }
            },
        ),
        status,
    )
    .into_response()
}

/// Any path the service does not have: a real 404 page (JSON under `/api/`).
async fn not_found(ctx: Ctx, uri: axum::http::Uri) -> Response {
    if uri.path().starts_with("/api/") {
        return api::api_error(StatusCode::NOT_FOUND, "no such resource");
    }
    ctx.error(StatusCode::NOT_FOUND, cat::common::PAGE_NOT_FOUND)
}

/// How a handler shared by a page and the JSON API answers errors.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Reply {
    Html(Lang),
    Json,
}

impl Reply {
    pub(crate) fn error(self, status: StatusCode, msg: Msg) -> Response {
        match self {
            Reply::Html(lang) => error(lang, status, msg),
            Reply::Json => api::api_error(status, msg.en),
        }
    }

    pub(crate) fn internal(self, e: anyhow::Error) -> Response {
        match self {
            Reply::Html(lang) => internal(lang, e),
            Reply::Json => api::internal_json(e),
        }
    }
}

pub(crate) fn internal(lang: Lang, e: impl Into<anyhow::Error>) -> Response {
    let e: anyhow::Error = e.into();
    tracing::error!(error = %e, "request failed");
    error(
        lang,
        StatusCode::INTERNAL_SERVER_ERROR,
        cat::common::SOMETHING_WENT_WRONG_TRY_AGAIN_OR,
    )
}

impl App {
    /// The user of a bearer token, verified against the OIDC issuer's JWKS
    /// (issuer, audience, expiry, signature, role). Without an `[oidc]`
    /// issuer (the embedded mode) every token is refused. Refusals are
    /// audited with the reason (never the token).
    pub(crate) async fn bearer_user(&self, token: &str) -> std::result::Result<User, Response> {
        let refused = |reason: &str| opptak_audit::Event {
            actor: "-".into(),
            role: "-".into(),
            action: "token".into(),
            subject: "api".into(),
            reason: reason.into(),
            outcome: "refused".into(),
        };
        let Some(oidc) = &self.oidc else {
            let reason = "no OIDC issuer configured";
            if let Err(e) = self.audit.record(&refused(reason)).await {
                return Err(internal(Lang::En, e));
            }
            return Err(api::api_error(StatusCode::UNAUTHORIZED, reason));
        };
        match oidc.verify(token).await {
            Ok(p) => Ok(p.user),
            Err(err) => {
                if let Err(e) = self.audit.record(&refused(err.reason())).await {
                    return Err(internal(Lang::En, e));
                }
                let mut r = api::api_error(err.status(), &err.to_string());
                if let Some(v) = err.www_authenticate() {
                    r.headers_mut()
                        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(v));
                }
                Err(r)
            }
        }
    }

    /// Checks a form's CSRF token against the session's; a mismatch is
    /// audited as a refusal of `action` and answered with 403.
    pub(crate) async fn check_form(
        &self,
        ctx: &Ctx,
        (user, token): (&User, &str),
        sent: &str,
        action: &str,
        subject: &str,
    ) -> std::result::Result<(), Response> {
        if sent == csrf_of(token) {
            return Ok(());
        }
        if let Err(e) = self
            .audit(user, action, subject, "no valid CSRF token", "refused")
            .await
        {
            return Err(internal(ctx.lang, e));
        }
        Err(ctx.error(StatusCode::FORBIDDEN, cat::common::THE_FORM_LACKS_A_VALID_CSRF))
    }

    pub(crate) async fn audit(&self, u: &User, action: &str, subject: &str, reason: &str, outcome: &str) -> Result<()> {
        self.record(&u.actor(), u.role.as_str(), action, subject, reason, outcome)
            .await
    }

    /// One audit entry, for people and services (an archive client) alike.
    pub(crate) async fn record(
        &self,
        actor: &str,
        role: &str,
        action: &str,
        subject: &str,
        reason: &str,
        outcome: &str,
    ) -> Result<()> {
        self.audit
            .record(&opptak_audit::Event {
                actor: actor.into(),
                role: role.into(),
                action: action.into(),
                subject: subject.into(),
                reason: reason.into(),
                outcome: outcome.into(),
            })
            .await?;
        Ok(())
    }

    /// Writes the audit entry of a content read as decided: allowed with
    /// its reason (unless reads are not audited, for measuring), or refused
    /// with `refused_reason` and the error page to send.
    pub(crate) async fn settle(
        &self,
        lang: Lang,
        user: &User,
        (action, subject): (&str, &str),
        decision: std::result::Result<String, Refusal>,
        refused_reason: &str,
    ) -> std::result::Result<String, Response> {
        match decision {
            Ok(reason) => {
                if self.audit_reads {
                    self.audit(user, action, subject, &reason, "allowed")
                        .await
                        .map_err(|e| internal(lang, e))?;
                }
                Ok(reason)
            }
            Err((status, msg)) => {
                self.audit(user, action, subject, refused_reason, "refused")
                    .await
                    .map_err(|e| internal(lang, e))?;
                Err(error(lang, status, msg))
            }
        }
    }

    /// Whether `user` may read `call`'s content, and why (the reason kept in
    /// the audit log). Writes the audit entry either way, before anything is
    /// decrypted; on refusal returns the response to send.
    pub(crate) async fn authorize(
        &self,
        lang: Lang,
        user: &User,
        call: Option<&opptak_store::meta::CallRecord>,
        subject: &str,
        action: &str,
        stated: Option<&str>,
    ) -> std::result::Result<String, Response> {
        let decision = self.decide(user, call, stated).await.map_err(|e| internal(lang, e))?;
        self.settle(lang, user, (action, subject), decision, "").await
    }

    /// The rules of [`App::authorize`], deciding only (nothing audited):
    /// the reason to audit, or the refusal. The pages, the API and `opptak
    /// ki show` ([`reader`]) all decide here.
    pub(crate) async fn decide(
        &self,
        user: &User,
        call: Option<&opptak_store::meta::CallRecord>,
        stated: Option<&str>,
    ) -> Result<std::result::Result<String, Refusal>> {
        Ok(match (call, user.role) {
            (None, _) => Err((StatusCode::NOT_FOUND, cat::common::UNKNOWN_CALL)),
            (Some(c), Role::Advisor) if c.facts.advisor_id == user.user_id => Ok("review".into()),
            (Some(c), Role::TeamLead) => {
                let in_team = self
                    .identity
                    .users()
                    .await
                    .map(|us| {
                        us.iter()
                            .any(|(u, _)| u.user_id == c.facts.advisor_id && u.team == user.team && !u.team.is_empty())
                    })
                    .unwrap_or(false);
                if in_team {
                    Ok("team review".into())
                } else {
                    Err((StatusCode::FORBIDDEN, cat::common::NOT_YOUR_TEAM_S_CALL))
                }
            }
            (Some(_), Role::Compliance) => match stated.map(str::trim) {
                Some(r) if !r.is_empty() => Ok(r.to_owned()),
                _ => Err((StatusCode::BAD_REQUEST, cat::search::STATE_A_REASON_IN_THE_HEADER)),
            },
            (Some(_), Role::Advisor) => Err((StatusCode::FORBIDDEN, cat::common::NOT_YOUR_CALL)),
            (Some(c), Role::Qa) => match self.qa.sample_access(&c.facts.call_id).await? {
                crate::qa::SampleAccess::Readable => Ok("qa sample".into()),
                crate::qa::SampleAccess::NotSampled => {
                    Err((StatusCode::FORBIDDEN, cat::common::THIS_CALL_IS_NOT_SAMPLED_FOR))
                }
                // QA exists for the KI output: its access to the call (the
                // mandated recording included) ends with the KI data.
                crate::qa::SampleAccess::KiGone => Err((StatusCode::FORBIDDEN, cat::common::THE_CALL_S_KI_DATA_IS)),
            },
            (Some(_), Role::Auditor | Role::Admin) => {
                Err((StatusCode::FORBIDDEN, cat::common::YOUR_ROLE_NEVER_READS_CALL_CONTENT))
            }
        })
    }
}

/// Why a read is refused: the status and the message in both languages.
pub(crate) type Refusal = (StatusCode, Msg);

/// Sign-in attempts per user name and per client address in a fixed
/// window; past the limit further attempts are refused (429) until the
/// window ends, so passwords cannot be guessed at speed. Per process: with
/// several review processes behind a balancer the limit applies per process.
///
/// Check and count are one step ([`LoginLimiter::attempt`]): an attempt counts
/// as failed before its password is verified, and a success takes it back, so
/// forty parallel guesses cannot all pass the check before any is counted.
pub(crate) struct LoginLimiter {
    max: u32,
    window_us: i64,
    windows: Mutex<HashMap<String, Window>>,
}

#[derive(Clone, Copy)]
struct Window {
    start: i64,
    attempts: u32,
    /// Attempts refused in this window (only the first is audited).
    refused: u32,
}

/// What [`LoginLimiter::attempt`] decided.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Gate {
    /// Go on and verify the password (the attempt is counted).
    Open,
    /// Refused; `first` for the first refusal of the window, the only one
    /// written to the audit log (the rest are counted, so a flood of guesses
    /// cannot grow the hash-chained log without bound).
    Blocked { first: bool, wait_us: i64 },
}

impl LoginLimiter {
    fn new(max: u32, window_us: i64) -> Self {
        Self {
            max,
            window_us,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// `max` attempts per user name, ten times that per client address (an
    /// office behind one NAT).
    fn limits(&self) -> [u32; 2] {
        [self.max, self.max.saturating_mul(10)]
    }

    pub(crate) fn attempt(&self, keys: &[String; 2], now: i64) -> Gate {
        let mut map = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 100_000 {
            let w = self.window_us;
            map.retain(|_, v| now - v.start < w);
        }
        let fresh = Window {
            start: now,
            attempts: 0,
            refused: 0,
        };
        let mut current = [fresh; 2];
        for (i, k) in keys.iter().enumerate() {
            let w = map.entry(k.clone()).or_insert(fresh);
            if now - w.start >= self.window_us {
                *w = fresh;
            }
            current[i] = *w;
        }
        let over = current.iter().zip(self.limits()).position(|(w, max)| w.attempts >= max);
        match over {
            Some(i) => {
                let w = map.get_mut(&keys[i]).expect("inserted above");
                w.refused += 1;
                Gate::Blocked {
                    first: w.refused == 1,
                    wait_us: (w.start + self.window_us - now).max(0),
                }
            }
            None => {
                for k in keys {
                    if let Some(w) = map.get_mut(k) {
                        w.attempts += 1;
                    }
                }
                Gate::Open
            }
        }
    }

    /// The password was right: the user name starts afresh and the address
    /// gets its attempt back.
    fn succeeded(&self, keys: &[String; 2]) {
        let mut map = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&keys[0]);
        if let Some(w) = map.get_mut(&keys[1]) {
            w.attempts = w.attempts.saturating_sub(1);
        }
    }
}

async fn home(ctx: Ctx) -> Response {
    match &ctx.session {
        None => Redirect::to("/login").into_response(),
        Some((u, _)) => Redirect::to(main_page(u.role)).into_response(),
    }
}

/// `/lang/{nb|en}`: remembers the language in a cookie and goes back to
/// the page it came from (a local path only: no open redirect).
#[derive(Deserialize)]
struct Back {
    back: Option<String>,
}

/// A path on this site only: `/` then printable ASCII, no second `/` or `\`
/// at the start, no control characters or spaces anywhere (browsers drop tabs
/// and newlines from URLs, so `/%09/evil.example` would become
/// `//evil.example`, another site; a newline cannot go in a header at all).
fn same_site_path(back: &str) -> bool {
    let b = back.as_bytes();
    b.first() == Some(&b'/')
        && !matches!(b.get(1), Some(b'/' | b'\\'))
        && b.iter().all(|c| (0x21..=0x7e).contains(c) && *c != b'\\')
}

async fn set_lang(Path(code): Path<String>, Query(q): Query<Back>, headers: HeaderMap) -> Response {
    let Some(lang) = Lang::parse(&code) else {
        return error(Lang::of(&headers), StatusCode::NOT_FOUND, cat::common::UNKNOWN_LANGUAGE);
    };
    let back = q.back.filter(|b| same_site_path(b)).unwrap_or_else(|| "/".into());
    let mut r = Redirect::to(&back).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{LANG_COOKIE}={}; Path=/; SameSite=Strict; Max-Age=31536000",
        lang.code()
    )) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

async fn login_page(State(app): State<Arc<App>>, ctx: Ctx) -> Response {
    login_form(&app, ctx.lang, StatusCode::OK, "", None)
}

/// The sign-in form, with a fresh double-submit token; after a failed
/// attempt, the message at the field and the user name kept.
fn login_form(app: &App, lang: Lang, status: StatusCode, user: &str, problem: Option<&str>) -> Response {
    let nonce = hex::encode(rand::random::<[u8; 16]>());
    let mut r = Html(
        page(
            lang,
            lang.m(cat::common::SIGN_IN),
            None,
            "/login",
            html! {
                @if let Some(p) = problem {
                    p.field-error #login-error role="alert" { (p) }
                }
                form method="post" action="/login" {
                    input type="hidden" name="csrf" value=(nonce);
                    p { label { (lang.m(cat::common::USER_NAME)) " "
                        input name="user" value=(user) autocomplete="username" required autofocus[user.is_empty()]
                            aria-invalid=[problem.map(|_| "true")] aria-describedby=[problem.map(|_| "login-error")]; } }
                    p { label { (lang.m(cat::common::PASSWORD)) " "
                        input name="password" type="password" autocomplete="current-password" required autofocus[!user.is_empty()]
                            aria-invalid=[problem.map(|_| "true")] aria-describedby=[problem.map(|_| "login-error")]; } }
                    button type="submit" { (lang.m(cat::common::SIGN_IN)) }
                }
            },
        ),
        status,
    )
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{LOGIN_COOKIE}={nonce}; Path=/login; HttpOnly; SameSite=Strict; Max-Age=1800{}",
        if app.secure_cookies { "; Secure" } else { "" }
    )) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

#[derive(Deserialize)]
struct LoginForm {
    user: String,
    password: String,
    #[serde(default)]
    csrf: String,
}

async fn login(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let lang = Lang::of(&headers);
    // Double submit: the form repeats the random cookie set with the page,
    // which another site's form cannot read (login CSRF).
    if f.csrf.is_empty() || cookie(&headers, LOGIN_COOKIE).as_deref() != Some(f.csrf.as_str()) {
        return login_form(
            &app,
            lang,
            StatusCode::FORBIDDEN,
            &f.user,
            Some(lang.m(cat::common::THE_FORM_HAS_EXPIRED_RELOAD_THE)),
        );
    }
    let now = app.edges.vault.clock().now_us();
    let user_key = format!("user:{}", f.user.to_ascii_lowercase());
    let keys = [user_key.clone(), format!("addr:{}", peer.ip())];
    if let Gate::Blocked { first, wait_us } = app.limiter.attempt(&keys, now) {
        let refused = opptak_audit::Event {
            actor: f.user.clone(),
            role: "-".into(),
            action: "login".into(),
            subject: format!("user:{}", f.user),
            reason: "too many failed sign-ins".into(),
            outcome: "refused".into(),
        };
        if first {
            if let Err(e) = app.audit.record(&refused).await {
                return internal(lang, e);
            }
        }
        let wait_s = (wait_us + 999_999) / 1_000_000;
        let minutes = ((wait_s + 59) / 60).max(1);
        let text = lang.f(
            if minutes == 1 {
                cat::common::TOO_MANY_SIGN_INS_WAIT_A_MINUTE
            } else {
                cat::common::TOO_MANY_SIGN_INS_WAIT_MINUTES
            },
            &[("n", &minutes.to_string())],
        );
        let mut r = login_form(&app, lang, StatusCode::TOO_MANY_REQUESTS, &f.user, Some(&text));
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(wait_s.max(1)));
        return r;
    }
    match app.identity.login(&f.user, &f.password).await {
        Ok(Some((_, token))) => {
            app.limiter.succeeded(&keys);
            let cookie = format!(
                "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
                crate::identity::SESSION_HOURS * 3600,
                if app.secure_cookies { "; Secure" } else { "" }
            );
            let mut r = Redirect::to("/").into_response();
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                r.headers_mut().append(header::SET_COOKIE, v);
            }
            r.headers_mut().append(
                header::SET_COOKIE,
                HeaderValue::from_static("opptak_login=; Path=/login; HttpOnly; SameSite=Strict; Max-Age=0"),
            );
            r
        }
        Ok(None) => login_form(
            &app,
            lang,
            StatusCode::UNAUTHORIZED,
            &f.user,
            Some(lang.m(cat::common::WRONG_USER_NAME_OR_PASSWORD)),
        ),
        Err(e) => internal(lang, e),
    }
}

#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    csrf: String,
}

async fn logout(State(app): State<Arc<App>>, ctx: Ctx, Form(f): Form<CsrfForm>) -> Response {
    let Some((user, token)) = &ctx.session else {
        return Redirect::to("/login").into_response();
    };
    if let Err(r) = app.check_form(&ctx, (user, token), &f.csrf, "logout", "session").await {
        return r;
    }
    if let Err(e) = app.identity.logout(token).await {
        return internal(ctx.lang, e);
    }
    let mut r = Redirect::to("/login").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("opptak_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    r
}

/// Percent-encodes a query value.
pub(crate) fn urlencode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
