//! The pages of the roles that never see call content: the auditor's view
//! of the audit log with on-demand verification (R9), and the admin's user
//! administration. Each is refused (and audited) for every other role.

use super::{cat, csrf_of, internal, App, Ctx};
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
        return Err(ctx.error(StatusCode::FORBIDDEN, cat::admin::YOUR_ROLE_HAS_NO_ACCESS_TO));
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
    ctx.page(ctx.lang.m(cat::admin::AUDIT_LOG),
        html! {
            p { (lang.m(cat::admin::EACH_ENTRY_COMMITS_TO_THE_ONE)) }
            form method="post" action="/audit/verify" {
                input type="hidden" name="csrf" value=(csrf_of(&token));
                button type="submit" { (lang.m(cat::admin::VERIFY_THE_WHOLE_CHAIN)) }
            }
            table {
                thead { tr {
                    th scope="col" { "#" }
                    th scope="col" { (lang.m(cat::admin::TIME_UTC)) }
                    th scope="col" { (lang.m(cat::admin::WHO)) }
                    th scope="col" { (lang.m(cat::admin::ROLE)) }
                    th scope="col" { (lang.m(cat::admin::ACTION)) }
                    th scope="col" { (lang.m(cat::admin::SUBJECT)) }
                    th scope="col" { (lang.m(cat::admin::REASON)) }
                    th scope="col" { (lang.m(cat::admin::OUTCOME)) }
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
                a href={ "/audit?from=" (from.saturating_sub(u64::from(PAGE)).max(1)) } { (lang.m(cat::admin::OLDER)) } " "
            }
            @if entries.len() == PAGE as usize {
                a href={ "/audit?from=" (from + u64::from(PAGE)) } { (lang.m(cat::admin::NEWER)) }
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
    ctx.page(ctx.lang.m(cat::admin::AUDIT_LOG_VERIFICATION),
        html! {
            @if report.ok() {
                p role="status" { strong { (lang.m(cat::admin::THE_CHAIN_IS_INTACT)) } }
            } @else {
                p role="alert" class="flag" { (lang.m(cat::admin::THE_CHAIN_IS_BROKEN)) }
                ul { @for p in &report.problems { li { (p) } } }
            }
            p { (report.entries) (lang.m(cat::admin::ENTRIES)) (report.checkpoints) (lang.m(cat::admin::SIGNED_CHECKPOINTS)) }
            @if let Some((seq, hash)) = &report.newest_checkpoint {
                p { (lang.m(cat::admin::NEWEST_CHECKPOINT)) (seq) " " code { (hash) } }
            }
            @for s in &report.signers { p { (lang.m(cat::admin::SIGNED_BY)) code { (s) } } }
            p { a href="/audit" { (lang.m(cat::admin::BACK_TO_THE_LOG)) } }
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
    ctx.page(ctx.lang.m(cat::admin::USERS),
        html! {
            table {
                thead { tr {
                    th scope="col" { (lang.m(cat::admin::USER)) }
                    th scope="col" { (lang.m(cat::admin::NAME)) }
                    th scope="col" { (lang.m(cat::admin::ROLE)) }
                    th scope="col" { (lang.m(cat::admin::TEAM)) }
                    th scope="col" { (lang.m(cat::admin::STATUS)) }
                    th scope="col" { (lang.m(cat::admin::CREATED_BY)) }
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
                                    span.muted { (lang.m(cat::admin::DISABLED)) }
                                } @else if l.waiting && l.created_by == admin.actor() {
                                    span { (lang.m(cat::admin::AWAITING_APPROVAL_BY_ANOTHER_ADMINISTRATOR)) }
                                } @else if l.waiting {
                                    form.inline method="post" action="/admin/users" {
                                        input type="hidden" name="csrf" value=(csrf_of(&token));
                                        input type="hidden" name="action" value="approve";
                                        input type="hidden" name="user" value=(u.user_id);
                                        button type="submit" { (lang.m(cat::admin::APPROVE_ACCESS_TO_CONTENT)) }
                                    }
                                } @else {
                                    form.inline method="post" action="/admin/users" {
                                        input type="hidden" name="csrf" value=(csrf_of(&token));
                                        input type="hidden" name="action" value="disable";
                                        input type="hidden" name="user" value=(u.user_id);
                                        button type="submit" { (lang.m(cat::admin::DISABLE)) }
                                    }
                                }
                            }
                            td {
                                (l.created_by)
                                @if let Some(b) = &l.approved_by { (lang.m(cat::admin::APPROVED_BY)) (b) }
                            }
                        }
                    }
                }
            }
            p.muted { (lang.m(cat::admin::USERS_OF_ROLES_THAT_SEE_CALL)) }
            h2 { (lang.m(cat::admin::NEW_USER)) }
            form method="post" action="/admin/users" {
                input type="hidden" name="csrf" value=(csrf_of(&token));
                input type="hidden" name="action" value="add";
                p { label { (lang.m(cat::admin::USER_NAME)) input name="user" required pattern="[A-Za-z0-9._\\-]{1,64}"; } }
                p { label { (lang.m(cat::admin::NAME_2)) input name="name" required; } }
                p { label { (lang.m(cat::admin::ROLE_2)) select name="role" {
                    @for r in roles { option value=(r.as_str()) { (super::role_name(lang, r)) } }
                } } }
                p { label { (lang.m(cat::admin::TEAM_2)) input name="team"; } }
                p { label { (lang.m(cat::admin::INITIAL_PASSWORD_AT_LEAST_12_CHARACTERS)) input name="password" type="password" autocomplete="new-password" required minlength="12"; } }
                button type="submit" { (lang.m(cat::admin::ADD)) }
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
            super::untranslated(ctx.lang, StatusCode::BAD_REQUEST, &msg)
        }
    }
}
