//! The pages of the roles that never see call content: the auditor's view
//! of the audit log with on-demand verification (R9), and the admin's user
//! administration. Each is refused (and audited) for every other role.

use super::{csrf_of, internal, App, Ctx};
use crate::identity::{Role, User};
use axum::extract::{Form, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::html;
use serde::Deserialize;
use std::sync::Arc;

pub(super) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/audit", get(audit_page))
        .route("/audit/verify", post(audit_verify))
        .route("/admin/users", get(users_page).post(users_action))
}

/// Entries per audit page.
const PAGE: u32 = 100;

/// The user if they hold `role`; else the audited refusal.
async fn only(app: &App, ctx: &Ctx, role: Role, action: &str) -> Result<(User, String), Response> {
    let (user, token) = ctx.page_user()?;
    if user.role != role {
        if let Err(e) = app.audit(user, action, "-", "", "refused").await {
            return Err(internal(ctx.lang, e));
        }
        return Err(ctx.error(
            StatusCode::FORBIDDEN,
            "Rollen din gir ikke tilgang til denne siden.",
            "Your role has no access to this page.",
        ));
    }
    Ok((user.clone(), token.to_owned()))
}

#[derive(Deserialize)]
struct From {
    from: Option<u64>,
}

async fn audit_page(State(app): State<Arc<App>>, ctx: Ctx, Query(q): Query<From>) -> Response {
    let (user, token) = match only(&app, &ctx, Role::Auditor, "audit.read").await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let lang = ctx.lang;
    let from = q.from.unwrap_or(1).max(1);
    if let Err(e) = app
        .audit(&user, "audit.read", &format!("audit:{from}"), "", "allowed")
        .await
    {
        return internal(lang, e);
    }
    let entries = match app.audit.entries(from, PAGE).await {
        Ok(e) => e,
        Err(e) => return internal(lang, e),
    };
    ctx.page(
        ("Revisjonslogg", "Audit log"),
        html! {
            p { (lang.t(
                "Hver oppføring binder seg til den forrige med SHA-256, og jevnlige sjekkpunkter er signert (Ed25519). Oppføringene har aldri lyd eller tekst fra samtaler.",
                "Each entry commits to the one before with SHA-256, and periodic checkpoints are signed (Ed25519). Entries never hold call audio or text.")) }
            form method="post" action="/audit/verify" {
                input type="hidden" name="csrf" value=(csrf_of(&token));
                button type="submit" { (lang.t("Verifiser hele kjeden", "Verify the whole chain")) }
            }
            table {
                thead { tr {
                    th scope="col" { "#" }
                    th scope="col" { (lang.t("Tid (UTC)", "Time (UTC)")) }
                    th scope="col" { (lang.t("Hvem", "Who")) }
                    th scope="col" { (lang.t("Rolle", "Role")) }
                    th scope="col" { (lang.t("Handling", "Action")) }
                    th scope="col" { (lang.t("Gjelder", "Subject")) }
                    th scope="col" { (lang.t("Grunn", "Reason")) }
                    th scope="col" { (lang.t("Utfall", "Outcome")) }
                } }
                tbody {
                    @for e in &entries {
                        tr {
                            td { (e.seq) }
                            td { (opptak_domain::time::utc_time(e.at_us)) }
                            td { (e.event.actor) }
                            td { (e.event.role) }
                            td { (e.event.action) }
                            td { (e.event.subject) }
                            td { (e.event.reason) }
                            td { @if e.event.outcome == "refused" { strong.flag { (e.event.outcome) } } @else { (e.event.outcome) } }
                        }
                    }
                }
            }
            @if from > 1 {
                a href={ "/audit?from=" (from.saturating_sub(u64::from(PAGE)).max(1)) } { (lang.t("← Eldre", "← Older")) } " "
            }
            @if entries.len() == PAGE as usize {
                a href={ "/audit?from=" (from + u64::from(PAGE)) } { (lang.t("Nyere →", "Newer →")) }
            }
        },
    )
}

#[derive(Deserialize)]
struct CsrfOnly {
    csrf: String,
}

async fn audit_verify(State(app): State<Arc<App>>, ctx: Ctx, Form(f): Form<CsrfOnly>) -> Response {
    let (user, token) = match only(&app, &ctx, Role::Auditor, "audit.verify").await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let lang = ctx.lang;
    if let Err(r) = app
        .check_form(&ctx, (&user, &token), &f.csrf, "audit.verify", "audit")
        .await
    {
        return r;
    }
    let report = match app.audit.verify(None).await {
        Ok(r) => r,
        Err(e) => return internal(lang, e),
    };
    let outcome = if report.ok() { "intact" } else { "broken" };
    if let Err(e) = app.audit(&user, "audit.verify", "audit", "", outcome).await {
        return internal(lang, e);
    }
    ctx.page(
        ("Verifisering av revisjonsloggen", "Audit log verification"),
        html! {
            @if report.ok() {
                p role="status" { strong { (lang.t("Kjeden er intakt.", "The chain is intact.")) } }
            } @else {
                p role="alert" class="flag" { (lang.t("Kjeden er brutt:", "The chain is broken:")) }
                ul { @for p in &report.problems { li { (p) } } }
            }
            p { (report.entries) (lang.t(" oppføringer, ", " entries, ")) (report.checkpoints) (lang.t(" signerte sjekkpunkter", " signed checkpoints")) }
            @if let Some((seq, hash)) = &report.newest_checkpoint {
                p { (lang.t("Nyeste sjekkpunkt: #", "Newest checkpoint: #")) (seq) " " code { (hash) } }
            }
            @for s in &report.signers { p { (lang.t("Signert av ", "Signed by ")) code { (s) } } }
            p { a href="/audit" { (lang.t("Tilbake til loggen", "Back to the log")) } }
        },
    )
}

async fn users_page(State(app): State<Arc<App>>, ctx: Ctx) -> Response {
    let (admin, token) = match only(&app, &ctx, Role::Admin, "user.list").await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let lang = ctx.lang;
    if let Err(e) = app.audit(&admin, "user.list", "users", "", "allowed").await {
        return internal(lang, e);
    }
    let users = match app.identity.listing().await {
        Ok(u) => u,
        Err(e) => return internal(lang, e),
    };
    let roles = [
        Role::Advisor,
        Role::TeamLead,
        Role::Qa,
        Role::Compliance,
        Role::Auditor,
        Role::Admin,
    ];
    ctx.page(
        ("Brukere", "Users"),
        html! {
            table {
                thead { tr {
                    th scope="col" { (lang.t("Bruker", "User")) }
                    th scope="col" { (lang.t("Navn", "Name")) }
                    th scope="col" { (lang.t("Rolle", "Role")) }
                    th scope="col" { (lang.t("Team", "Team")) }
                    th scope="col" { (lang.t("Status", "Status")) }
                    th scope="col" { (lang.t("Opprettet av", "Created by")) }
                } }
                tbody {
                    @for l in &users {
                        @let u = &l.user;
                        tr {
                            td { (u.user_id) }
                            td { (u.display_name) }
                            td { (super::role_name(lang, u.role)) }
                            td { (u.team) }
                            td {
                                @if !l.active {
                                    span.muted { (lang.t("deaktivert", "disabled")) }
                                } @else if l.waiting && l.created_by == admin.actor() {
                                    span { (lang.t("venter på godkjenning fra en annen administrator", "awaiting approval by another administrator")) }
                                } @else if l.waiting {
                                    form.inline method="post" action="/admin/users" {
                                        input type="hidden" name="csrf" value=(csrf_of(&token));
                                        input type="hidden" name="action" value="approve";
                                        input type="hidden" name="user" value=(u.user_id);
                                        button type="submit" { (lang.t("Godkjenn tilgang til innhold", "Approve access to content")) }
                                    }
                                } @else {
                                    form.inline method="post" action="/admin/users" {
                                        input type="hidden" name="csrf" value=(csrf_of(&token));
                                        input type="hidden" name="action" value="disable";
                                        input type="hidden" name="user" value=(u.user_id);
                                        button type="submit" { (lang.t("Deaktiver", "Disable")) }
                                    }
                                }
                            }
                            td {
                                (l.created_by)
                                @if let Some(b) = &l.approved_by { (lang.t(", godkjent av ", ", approved by ")) (b) }
                            }
                        }
                    }
                }
            }
            p.muted { (lang.t(
                "Brukere med roller som ser samtaleinnhold (rådgiver, teamleder, kvalitet, etterlevelse) kan logge inn først når en annen administrator enn den som opprettet dem, har godkjent dem.",
                "Users of roles that see call content (advisor, team lead, QA, compliance) can sign in only once an administrator other than their creator has approved them.")) }
            h2 { (lang.t("Ny bruker", "New user")) }
            form method="post" action="/admin/users" {
                input type="hidden" name="csrf" value=(csrf_of(&token));
                input type="hidden" name="action" value="add";
                p { label { (lang.t("Brukernavn ", "User name ")) input name="user" required pattern="[A-Za-z0-9._\\-]{1,64}"; } }
                p { label { (lang.t("Navn ", "Name ")) input name="name" required; } }
                p { label { (lang.t("Rolle ", "Role ")) select name="role" {
                    @for r in roles { option value=(r.as_str()) { (super::role_name(lang, r)) } }
                } } }
                p { label { (lang.t("Team ", "Team ")) input name="team"; } }
                p { label { (lang.t("Startpassord (minst 12 tegn) ", "Initial password (at least 12 characters) ")) input name="password" type="password" autocomplete="new-password" required minlength="12"; } }
                button type="submit" { (lang.t("Legg til", "Add")) }
            }
        },
    )
}

#[derive(Deserialize)]
struct UserForm {
    csrf: String,
    action: String,
    user: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    team: String,
    #[serde(default)]
    password: String,
}

async fn users_action(State(app): State<Arc<App>>, ctx: Ctx, Form(f): Form<UserForm>) -> Response {
    let (admin, token) = match only(&app, &ctx, Role::Admin, &format!("user.{}", f.action)).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let action = format!("user.{}", f.action);
    if let Err(r) = app
        .check_form(&ctx, (&admin, &token), &f.csrf, &action, &format!("user:{}", f.user))
        .await
    {
        return r;
    }
    let done = match f.action.as_str() {
        "disable" if f.user == admin.user_id => Err(anyhow::anyhow!("you cannot disable yourself")),
        "disable" => app.identity.disable(&admin.actor(), &f.user).await,
        "approve" => app.identity.approve_user(&admin.actor(), &f.user).await,
        "add" => match Role::parse(&f.role) {
            Ok(role) => app
                .identity
                .add_user(&admin.actor(), &f.user, &f.name, role, &f.team, &f.password)
                .await
                .map(|_| ()),
            Err(e) => Err(e),
        },
        _ => Err(anyhow::anyhow!("unknown action")),
    };
    match done {
        Ok(()) => Redirect::to("/admin/users").into_response(),
        Err(e) => {
            let msg = e.to_string();
            ctx.error(StatusCode::BAD_REQUEST, &msg, &msg)
        }
    }
}
