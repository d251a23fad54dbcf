//! The review service (issue 6, first slice): sign-in with a local user, the
//! advisor's queue of drafts, and a draft page with the call's transcript —
//! server-rendered HTML (maud escapes every value, so a transcript holding
//! `<script>` shows as text), no JavaScript.
//!
//! Every request for call content is authorized by role and written to the
//! audit log first, refusals included:
//! - advisor: only calls where they are the advisor (reason "review", not asked);
//! - team lead: calls of advisors in their team (reason "team review");
//! - compliance: any call, with a stated `?reason=`;
//! - QA: sampled items only (sampling arrives later: refused today);
//! - auditor, admin: never content.
//!
//! Sessions: an `HttpOnly`, `SameSite=Strict` cookie holding a random token
//! (only its hash is stored, [`crate::identity`]). Every form post carries a
//! CSRF token derived from the session token (`SHA-256("opptak-csrf" ‖
//! token)`), which a page from another origin cannot compute.

use crate::app::Edges;
use crate::identity::{Identity, Role, User};
use anyhow::Result;
use axum::extract::{Form, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup, DOCTYPE};
use opptak_domain::model::CallId;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::sync::Arc;

const COOKIE: &str = "opptak_session";

struct App {
    edges: Edges,
    identity: Identity,
    audit: crate::audit::Audit,
    review: crate::review::Review,
    secure_cookies: bool,
}

/// Builds the service's router over `edges`.
pub async fn router(edges: &Edges, secure_cookies: bool) -> Result<Router> {
    let app = Arc::new(App {
        identity: Identity::open(edges).await?,
        audit: edges.audit().await?,
        review: crate::review::Review::open(edges).await?,
        edges: edges.clone(),
        secure_cookies,
    });
    Ok(Router::new()
        .route("/", get(|| async { Redirect::to("/queue") }))
        .route("/healthz", get(|| async { "ok" }))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/queue", get(queue))
        .route("/calls/{id}", get(call_page))
        .route("/calls/{id}/decide", post(decide))
        .route("/calls/{id}/audio", get(audio))
        .with_state(app))
}

/// Serves the router on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    axum::serve(listener, router).with_graceful_shutdown(shutdown).await?;
    Ok(())
}

fn csrf_of(token: &str) -> String {
    let d = Sha256::digest([b"opptak-csrf\0".as_slice(), token.as_bytes()].concat());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn session_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_owned())
}

fn page(title: &str, user: Option<&User>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="nb" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " — opptak" }
                style { "body{font-family:system-ui,sans-serif;max-width:60rem;margin:1rem auto;padding:0 1rem}\
                        table{border-collapse:collapse}td,th{padding:.3rem .6rem;border-bottom:1px solid #ccc;text-align:left}\
                        .agent{color:#124}.customer{color:#412}del{color:#900}ins{color:#060}:focus{outline:3px solid #06c}" }
            }
            body {
                header {
                    strong { "opptak" }
                    @if let Some(u) = user {
                        " · " (u.display_name) " (" (u.role.as_str()) ") · "
                        a href="/queue" { "Kø / queue" }
                    }
                }
                main { h1 { (title) } (body) }
            }
        }
    }
}

struct Html(Markup, StatusCode);

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
                "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
            ),
        );
        h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
    }
}

fn error(status: StatusCode, msg: &str) -> Response {
    Html(page("Feil / error", None, html! { p { (msg) } }), status).into_response()
}

impl App {
    async fn user(&self, headers: &HeaderMap) -> Result<Option<(User, String)>> {
        let Some(token) = session_token(headers) else {
            return Ok(None);
        };
        Ok(self.identity.session(&token).await?.map(|u| (u, token)))
    }

    async fn audit(&self, u: &User, action: &str, subject: &str, reason: &str, outcome: &str) -> Result<()> {
        self.audit
            .record(&crate::audit::Event {
                actor: u.user_id.clone(),
                role: u.role.as_str().into(),
                action: action.into(),
                subject: subject.into(),
                reason: reason.into(),
                outcome: outcome.into(),
            })
            .await?;
        Ok(())
    }
}

impl App {
    /// Whether `user` may read `call`'s content, and why (the reason kept in
    /// the audit log). Writes the audit entry either way, before anything is
    /// decrypted; on refusal returns the response to send.
    async fn authorize(
        &self,
        user: &User,
        call: Option<&opptak_store::meta::CallRecord>,
        subject: &str,
        action: &str,
        stated: Option<&str>,
    ) -> std::result::Result<String, Response> {
        let decision: std::result::Result<String, (StatusCode, &str)> = match (call, user.role) {
            (None, _) => Err((StatusCode::NOT_FOUND, "Ukjent samtale / unknown call")),
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
                    Err((StatusCode::FORBIDDEN, "Ikke ditt team / not your team's call"))
                }
            }
            (Some(_), Role::Compliance) => match stated.map(str::trim) {
                Some(r) if !r.is_empty() => Ok(r.to_owned()),
                _ => Err((StatusCode::BAD_REQUEST, "Oppgi en grunn (?reason=…) / state a reason")),
            },
            (Some(_), Role::Advisor) => Err((StatusCode::FORBIDDEN, "Ikke din samtale / not your call")),
            (Some(_), Role::Qa) => Err((StatusCode::FORBIDDEN, "Ikke trukket ut til QA / not sampled for QA")),
            (Some(_), Role::Auditor | Role::Admin) => Err((
                StatusCode::FORBIDDEN,
                "Rollen din gir ikke tilgang til innhold / your role never reads content",
            )),
        };
        match decision {
            Ok(reason) => {
                self.audit(user, action, subject, &reason, "allowed")
                    .await
                    .map_err(internal)?;
                Ok(reason)
            }
            Err((status, msg)) => {
                self.audit(user, action, subject, "", "refused")
                    .await
                    .map_err(internal)?;
                Err(error(status, msg))
            }
        }
    }

    /// The signed-in user, their session token and the call of a request
    /// about one call; the error response otherwise.
    async fn call_request(
        &self,
        headers: &HeaderMap,
        id: &str,
    ) -> std::result::Result<(User, String, CallId), Response> {
        let (user, token) = match self.user(headers).await {
            Ok(Some(u)) => u,
            Ok(None) => return Err(error(StatusCode::UNAUTHORIZED, "Logg inn først / sign in first")),
            Err(e) => return Err(internal(e)),
        };
        let call_id = CallId::parse(id).map_err(|_| error(StatusCode::NOT_FOUND, "Ukjent samtale / unknown call"))?;
        Ok((user, token, call_id))
    }
}

fn internal(e: anyhow::Error) -> Response {
    tracing::error!(error = %e, "request failed");
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Noe gikk galt / something went wrong",
    )
}

async fn login_page() -> Response {
    Html(
        page(
            "Logg inn / sign in",
            None,
            html! {
                form method="post" action="/login" {
                    p { label { "Bruker / user " input name="user" autocomplete="username" required autofocus; } }
                    p { label { "Passord / password " input name="password" type="password" autocomplete="current-password" required; } }
                    button type="submit" { "Logg inn / sign in" }
                }
            },
        ),
        StatusCode::OK,
    )
    .into_response()
}

#[derive(Deserialize)]
struct LoginForm {
    user: String,
    password: String,
}

async fn login(State(app): State<Arc<App>>, Form(f): Form<LoginForm>) -> Response {
    match app.identity.login(&f.user, &f.password).await {
        Ok(Some((_, token))) => {
            let cookie = format!(
                "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
                crate::identity::SESSION_HOURS * 3600,
                if app.secure_cookies { "; Secure" } else { "" }
            );
            let mut r = Redirect::to("/queue").into_response();
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r
        }
        Ok(None) => error(
            StatusCode::UNAUTHORIZED,
            "Feil bruker eller passord / wrong user or password",
        ),
        Err(e) => internal(e),
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn logout(State(app): State<Arc<App>>, headers: HeaderMap, Form(f): Form<CsrfForm>) -> Response {
    let Some(token) = session_token(&headers) else {
        return Redirect::to("/login").into_response();
    };
    if f.csrf != csrf_of(&token) {
        return error(
            StatusCode::FORBIDDEN,
            "Skjemaet mangler gyldig CSRF-token / invalid form token",
        );
    }
    if let Err(e) = app.identity.logout(&token).await {
        return internal(e);
    }
    let mut r = Redirect::to("/login").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("opptak_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    r
}

async fn queue(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let (user, token) = match app.user(&headers).await {
        Ok(Some(u)) => u,
        Ok(None) => return Redirect::to("/login").into_response(),
        Err(e) => return internal(e),
    };
    let rows = match drafts_for(&app, &user).await {
        Ok(r) => r,
        Err(e) => return internal(e),
    };
    Html(
        page(
            "Utkast til gjennomgang / drafts to review",
            Some(&user),
            html! {
                @if rows.is_empty() {
                    p { "Ingen utkast venter / no drafts are waiting." }
                } @else {
                    table {
                        thead { tr { th { "Samtale / call" } th { "Rådgiver / advisor" } th { "Startet / started (UTC)" } } }
                        tbody {
                            @for (id, advisor, started) in &rows {
                                tr {
                                    td { a href={ "/calls/" (id) } { (id) } }
                                    td { (advisor) }
                                    td { (started) }
                                }
                            }
                        }
                    }
                }
                form method="post" action="/logout" {
                    input type="hidden" name="csrf" value=(csrf_of(&token));
                    button type="submit" { "Logg ut / sign out" }
                }
            },
        ),
        StatusCode::OK,
    )
    .into_response()
}

/// Open drafts (drafted, neither approved nor rejected) the user should
/// review: an advisor their own; a team lead their team's drafts that waited
/// longer than `web.escalate_after_h` since the call ended (escalated).
async fn drafts_for(app: &App, user: &User) -> Result<Vec<(String, String, String)>> {
    let team: Vec<String> = match user.role {
        Role::Advisor => vec![user.user_id.clone()],
        Role::TeamLead => app
            .identity
            .users()
            .await?
            .into_iter()
            .filter(|(u, _)| u.team == user.team && !u.team.is_empty())
            .map(|(u, _)| u.user_id)
            .collect(),
        _ => Vec::new(),
    };
    let now = app.edges.clock.now_us();
    let escalate_after = i64::from(app.edges.config.web.escalate_after_h) * 3_600_000_000;
    let mut out = Vec::new();
    for c in app.edges.meta.list_calls(500).await? {
        if !team.contains(&c.facts.advisor_id) {
            continue;
        }
        if opptak_ki::summarize::ki_state(&app.edges.meta, &c.facts.call_id).await?
            != opptak_ki::summarize::KiState::Drafted
        {
            continue;
        }
        if app
            .review
            .versions(&c.facts.call_id)
            .await?
            .iter()
            .any(|v| v.kind != "edit")
        {
            continue; // decided
        }
        let ended = c.end.as_ref().map_or(c.facts.started_at_us, |e| e.ended_at_us);
        let overdue = now - ended > escalate_after;
        if user.role == Role::TeamLead && !overdue {
            continue;
        }
        let at = c.facts.started_at_us;
        out.push((
            c.facts.call_id.to_string(),
            c.facts.advisor_id.clone(),
            format!(
                "{} {}{}",
                opptak_domain::time::utc_day(at),
                opptak_domain::time::utc_time(at),
                if overdue { " · eskalert / escalated" } else { "" }
            ),
        ));
    }
    Ok(out)
}

#[derive(Deserialize)]
struct ReasonQuery {
    reason: Option<String>,
}

async fn call_page(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<ReasonQuery>,
) -> Response {
    let (user, token, call_id) = match app.call_request(&headers, &id).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let subject = format!("call:{call_id}");
    let call = match app.edges.meta.load_call(&call_id).await {
        Ok(c) => c,
        Err(e) => return internal(e.into()),
    };
    if let Err(r) = app
        .authorize(&user, call.as_ref(), &subject, "transcript.read", q.reason.as_deref())
        .await
    {
        return r;
    }
    let e = &app.edges;
    let transcript = opptak_ki::transcribe::read_transcript(&e.meta, &e.blobs, &e.keys, &call_id).await;
    let draft = opptak_ki::summarize::read_draft(&e.meta, &e.blobs, &e.keys, &call_id).await;
    let versions = match app.review.versions(&call_id).await {
        Ok(v) => v,
        Err(e) => return internal(e),
    };
    let closed = versions.iter().any(|v| v.kind != "edit");
    let mine = call.as_ref().is_some_and(|c| c.facts.advisor_id == user.user_id) && user.role == Role::Advisor;
    let current = versions
        .iter()
        .rev()
        .find_map(|v| v.text.clone().filter(|_| v.kind != "rejected"))
        .or_else(|| draft.as_ref().ok().map(|d| d.summary.clone()))
        .unwrap_or_default();
    Html(
        page(
            &format!("Samtale / call {call_id}"),
            Some(&user),
            html! {
                h2 { "Opptak / recording" }
                audio controls preload="none" src={ "/calls/" (call_id) "/audio" @if let Some(r) = &q.reason { "?reason=" (urlencode(r)) } } {}
                h2 { "Utkast / draft" }
                @match &draft {
                    Ok(d) => {
                        p { (d.summary) }
                        p { "Emner / topics: " (d.topics.join(", ")) }
                        @if !d.customer_requests.is_empty() {
                            h3 { "Kunden ba om / customer requests" }
                            ul { @for r in &d.customer_requests { li { (r) } } }
                        }
                        @if !d.follow_ups.is_empty() {
                            h3 { "Oppfølging / follow-ups" }
                            ul { @for f in &d.follow_ups { li { (f) } } }
                        }
                        p { small { "Skrevet av / written by " (d.source) " · " (d.prompt_version) } }
                    }
                    Err(err) => p { "Intet utkast / no draft: " (err.to_string()) }
                }
                @if !versions.is_empty() {
                    h2 { "Versjoner / versions" }
                    table {
                        tbody {
                            @for v in &versions {
                                tr {
                                    td { (v.version) }
                                    td { (v.kind) }
                                    td { (v.author) }
                                    td { (opptak_domain::time::utc_day(v.at_us)) " " (opptak_domain::time::utc_time(v.at_us)) }
                                    td { (v.text.as_deref().unwrap_or("(KI-data slettet / KI data erased)")) }
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
                    h2 { "Din vurdering / your decision" }
                    form method="post" action={ "/calls/" (call_id) "/decide" } {
                        input type="hidden" name="csrf" value=(csrf_of(&token));
                        p { label { "Sammendrag / summary" br; textarea name="text" rows="6" cols="80" { (current) } } }
                        button type="submit" name="action" value="edit" { "Lagre / save" }
                        " "
                        button type="submit" name="action" value="approve" { "Godkjenn / approve" }
                        " "
                        button type="submit" name="action" value="reject" { "Avvis med begrunnelse / reject (the text is the reason)" }
                    }
                }
                h2 { "Transkripsjon / transcript" }
                @match &transcript {
                    Ok(segs) => {
                        table {
                            tbody {
                                @for s in segs {
                                    tr class=(s.speaker) {
                                        td { (format!("{:.1} s", s.start_s)) }
                                        td { (s.speaker) }
                                        td { (s.text) }
                                    }
                                }
                            }
                        }
                    }
                    Err(err) => p { "Ingen transkripsjon / no transcript: " (err.to_string()) }
                }
            },
        ),
        StatusCode::OK,
    )
    .into_response()
}

#[derive(Deserialize)]
struct DecideForm {
    csrf: String,
    action: String,
    text: String,
}

async fn decide(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<DecideForm>,
) -> Response {
    let (user, token, call_id) = match app.call_request(&headers, &id).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let subject = format!("call:{call_id}");
    let action = format!("draft.{}", f.action);
    if f.csrf != csrf_of(&token) {
        if let Err(e) = app
            .audit(&user, &action, &subject, "no valid CSRF token", "refused")
            .await
        {
            return internal(e);
        }
        return error(
            StatusCode::FORBIDDEN,
            "Skjemaet mangler gyldig CSRF-token / invalid form token",
        );
    }
    let decision = match f.action.as_str() {
        "edit" => crate::review::Decision::Edit(f.text),
        "approve" => crate::review::Decision::Approve(f.text),
        "reject" => crate::review::Decision::Reject(f.text),
        _ => return error(StatusCode::BAD_REQUEST, "Ukjent handling / unknown action"),
    };
    let mine = match app.edges.meta.load_call(&call_id).await {
        Ok(Some(c)) => c.facts.advisor_id == user.user_id && user.role == Role::Advisor,
        Ok(None) => return error(StatusCode::NOT_FOUND, "Ukjent samtale / unknown call"),
        Err(e) => return internal(e.into()),
    };
    if !mine {
        if let Err(e) = app.audit(&user, &action, &subject, "", "refused").await {
            return internal(e);
        }
        return error(
            StatusCode::FORBIDDEN,
            "Bare samtalens rådgiver / only the call's advisor decides",
        );
    }
    match app.review.decide(&user, &call_id, decision).await {
        Ok(v) => {
            if let Err(e) = app
                .audit(&user, &action, &subject, &format!("version {}", v.version), "allowed")
                .await
            {
                return internal(e);
            }
            Redirect::to(&format!("/calls/{call_id}")).into_response()
        }
        Err(e) => {
            if let Err(e) = app.audit(&user, &action, &subject, "", "failed").await {
                return internal(e);
            }
            error(StatusCode::CONFLICT, &e.to_string())
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
            (a, (a + MAX_RANGE - 1).min(total - 1))
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
            (a, b.min(total - 1).min(a + MAX_RANGE - 1))
        }
    };
    (start <= end && start < total).then_some((start, end))
}

/// The call's recording as a PCM16 WAV, with byte ranges (an audio element
/// seeks with them): only the segments that hold the range are decrypted.
async fn audio(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<ReasonQuery>,
) -> Response {
    let (user, _, call_id) = match app.call_request(&headers, &id).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let call = match app.edges.meta.load_call(&call_id).await {
        Ok(c) => c,
        Err(e) => return internal(e.into()),
    };
    let subject = format!("call:{call_id}");
    if let Err(r) = app
        .authorize(&user, call.as_ref(), &subject, "recording.play", q.reason.as_deref())
        .await
    {
        return r;
    }
    let Some(call) = call else {
        return error(StatusCode::NOT_FOUND, "Ukjent samtale / unknown call");
    };
    let format = &call.facts.format;
    let (ch, rate) = (format.channels(), format.sample_rate_hz());
    let fb = u64::from(ch) * 2;
    let frames = call.progress.frames;
    let header = wav_header(ch, rate, frames);
    let total = 44 + frames * fb;
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (start, end, partial) = match range {
        None => (0, total.saturating_sub(1), false),
        Some(r) => match parse_range(r, total) {
            Some((a, b)) => (a, b, true),
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
        let w = match opptak_recorder::reader::read_frames(
            &e.meta,
            &e.blobs,
            &e.keys,
            &call_id,
            opptak_recorder::reader::Which::Recording,
            first,
            last - first,
        )
        .await
        {
            Ok(w) => w,
            Err(err) => return internal(err.into()),
        };
        let skip = (a - first * fb) as usize;
        let take = (b - a) as usize;
        let end_at = (skip + take).min(w.pcm.len());
        body.extend_from_slice(&w.pcm[skip.min(end_at)..end_at]);
    }
    let mut resp = (
        if partial {
            StatusCode::PARTIAL_CONTENT
        } else {
            StatusCode::OK
        },
        body,
    )
        .into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("audio/wav"));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if partial {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{total}")) {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    resp
}

/// Percent-encodes a query value.
fn urlencode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The text a version changed: the previous edit's, or the draft's.
fn previous_text(
    versions: &[crate::review::Version],
    draft: &std::result::Result<opptak_domain::summary::Draft, opptak_ki::transcribe::TranscribeError>,
    version: u64,
) -> Option<String> {
    versions
        .iter()
        .rfind(|v| v.version < version && v.kind == "edit")
        .and_then(|v| v.text.clone())
        .or_else(|| draft.as_ref().ok().map(|d| d.summary.clone()))
}
