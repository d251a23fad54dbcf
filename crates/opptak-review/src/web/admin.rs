//! The admin's user administration (never content): the users with their
//! role, team and status; adding a user; a second admin's approval of
//! access to content; disabling and enabling again, and changing role and
//! team, each through a confirmation page (POST → `/admin/users/confirm` →
//! "Bekreft", no script needed); the known teams users are picked into.
//! Every action is audited; a form that fails its checks comes back with
//! the input kept and the field named (audited as "failed"). Every other
//! role is refused (and audited). Also [`only`], the role gate the
//! auditor's pages (`web/audit`) share.

use super::{cat, csrf_of, internal, labels, urlencode, App, Ctx, Lang};
use crate::identity::{AdminError, Role, User, UserListing};
use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use cat::Msg;
use maud::{html, Markup};
use serde::Deserialize;
use std::sync::Arc;

pub(super) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/admin/users", get(users_page).post(users_action))
        .route("/admin/users/confirm", post(users_confirm))
        .route("/admin/users/{id}/edit", get(edit_page))
}

/// The user if they hold `role`; else the audited refusal.
pub(super) async fn only(app: &App, ctx: &Ctx, role: Role, action: &str) -> Result<(User, String), Response> {
    let (user, token) = ctx.page_user()?;
    if user.role != role {
        if let Err(e) = app.audit(user, action, "-", "", "refused").await {
            return Err(internal(ctx.lang, e));
        }
        return Err(ctx.error(StatusCode::FORBIDDEN, cat::admin::YOUR_ROLE_HAS_NO_ACCESS_TO));
    }
    Ok((user.clone(), token.to_owned()))
}

/// What went wrong with a form: the field (its element id; `""` for the
/// form as a whole) and the message.
#[derive(Clone, Copy)]
struct Problem {
    field: &'static str,
    msg: Msg,
}

impl Problem {
    fn of(field: &'static str, msg: Msg) -> Self {
        Self { field, msg }
    }

    /// `aria-invalid` and `aria-describedby` of the field `id`.
    fn aria(p: Option<Problem>, id: &str) -> (Option<&'static str>, Option<String>) {
        match p {
            Some(p) if p.field == id => (Some("true"), Some(format!("{id}-error"))),
            _ => (None, None),
        }
    }

    fn below(lang: Lang, p: Option<Problem>, id: &str) -> Markup {
        html! {
            @if let Some(p) = p.filter(|p| p.field == id) {
                p.field-error id={ (id) "-error" } { (lang.m(p.msg)) }
            }
        }
    }

    fn summary(lang: Lang, p: Option<Problem>) -> Markup {
        html! {
            @if let Some(p) = p {
                div.error-summary role="alert" {
                    @if p.field.is_empty() {
                        p { (lang.m(p.msg)) }
                    } @else {
                        p { (lang.m(cat::admin::FIX_THE_FORM)) }
                        ul { li { a href={ "#" (p.field) } { (lang.m(p.msg)) } } }
                    }
                }
            }
        }
    }
}

/// The message and status of an [`AdminError`] inside `e`, with the field
/// of the add form it concerns; `None` for any other error (a 500).
fn problem_of(e: &anyhow::Error) -> Option<(Problem, StatusCode)> {
    use AdminError as E;
    let (field, msg, status) = match e.downcast_ref::<AdminError>()? {
        E::InvalidId(_) => ("u-user", cat::admin::ERR_INVALID_ID, StatusCode::UNPROCESSABLE_ENTITY),
        E::ShortPassword => (
            "u-password",
            cat::admin::ERR_SHORT_PASSWORD,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        E::UserExists(_) => ("u-user", cat::admin::ERR_USER_EXISTS, StatusCode::CONFLICT),
        E::AdvisorsId(_) => ("u-user", cat::admin::ERR_ADVISORS_ID, StatusCode::CONFLICT),
        E::InvalidTeam(_) => ("u-team", cat::admin::ERR_INVALID_TEAM, StatusCode::UNPROCESSABLE_ENTITY),
        E::UnknownTeam(_) => ("u-team", cat::admin::ERR_UNKNOWN_TEAM, StatusCode::UNPROCESSABLE_ENTITY),
        E::TeamExists(_) => ("t-team", cat::admin::ERR_TEAM_EXISTS, StatusCode::CONFLICT),
        E::NoSuchUser(_) => ("", cat::admin::ERR_NO_SUCH_USER, StatusCode::NOT_FOUND),
        E::SameAdmin(_) => ("", cat::admin::ERR_SAME_ADMIN, StatusCode::BAD_REQUEST),
        E::NoApprovalNeeded(_) => ("", cat::admin::ERR_NO_APPROVAL_NEEDED, StatusCode::BAD_REQUEST),
        E::Yourself => ("", cat::admin::NO_SELF_DISABLE, StatusCode::CONFLICT),
        E::NotActive(_) => ("", cat::admin::ERR_NOT_ACTIVE, StatusCode::CONFLICT),
        E::NotDisabled(_) => ("", cat::admin::ERR_NOT_DISABLED, StatusCode::CONFLICT),
    };
    Some((Problem::of(field, msg), status))
}

/// The add form's input, kept when it comes back with an error (never the
/// password).
#[derive(Default)]
struct Typed {
    user: String,
    name: String,
    role: String,
    team: String,
    new_team: String,
}

/// `?done=disable&user=adv-bo`: what the last action did (after its redirect).
#[derive(Deserialize, Default)]
struct Done {
    done: Option<String>,
    user: Option<String>,
}

async fn users_page(State(app): State<Arc<App>>, ctx: Ctx, Query(d): Query<Done>) -> Response {
    let (admin, token) = match only(&app, &ctx, Role::Admin, "user.list").await {
        Ok(u) => u,
        Err(r) => return r,
    };
    if let Err(e) = app.audit(&admin, "user.list", "users", "", "allowed").await {
        return internal(ctx.lang, e);
    }
    let lang = ctx.lang;
    let who = d.user.unwrap_or_default();
    let notice = match d.done.as_deref() {
        Some("disable") => Some(lang.f(cat::admin::DONE_DISABLE, &[("user", &who)])),
        Some("enable") => Some(lang.f(cat::admin::DONE_ENABLE, &[("user", &who)])),
        Some("change") => Some(lang.f(cat::admin::DONE_CHANGE, &[("user", &who)])),
        Some("add") => Some(lang.f(cat::admin::DONE_ADD, &[("user", &who)])),
        Some("approve") => Some(lang.f(cat::admin::DONE_APPROVE, &[("user", &who)])),
        Some("team") => Some(lang.f(cat::admin::DONE_TEAM, &[("team", &who)])),
        _ => None,
    };
    users(
        &app,
        &ctx,
        (&admin, &token),
        &Typed::default(),
        None,
        notice,
        StatusCode::OK,
    )
    .await
}

/// The users page, with the add form holding `typed` and `problem` shown.
async fn users(
    app: &App,
    ctx: &Ctx,
    (admin, token): (&User, &str),
    typed: &Typed,
    problem: Option<Problem>,
    notice: Option<String>,
    status: StatusCode,
) -> Response {
    let lang = ctx.lang;
    let listing = match app.identity.listing().await {
        Ok(u) => u,
        Err(e) => return internal(lang, e),
    };
    let teams = match app.identity.teams().await {
        Ok(t) => t,
        Err(e) => return internal(lang, e),
    };
    let csrf = csrf_of(token);
    let body = html! {
        (Problem::summary(lang, problem))
        @if let Some(n) = &notice { p role="status" .notice { (n) } }
        table.users {
            thead { tr {
                th scope="col" { (lang.m(cat::admin::USER)) }
                th scope="col" { (lang.m(cat::admin::NAME)) }
                th scope="col" { (lang.m(cat::admin::ROLE)) }
                th scope="col" { (lang.m(cat::admin::TEAM)) }
                th scope="col" { (lang.m(cat::admin::STATUS)) }
                th scope="col" { (lang.m(cat::admin::CREATED_BY)) }
                th scope="col" { (lang.m(cat::admin::ACTIONS)) }
            } }
            tbody {
                @for l in &listing {
                    (user_row(lang, admin, &csrf, l))
                }
            }
        }
        p.muted { (lang.m(cat::admin::USERS_OF_ROLES_THAT_SEE_CALL)) }
        h2 #new-user { (lang.m(cat::admin::NEW_USER)) }
        (add_form(lang, &csrf, &teams, typed, problem))
        h2 #teams { (lang.m(cat::admin::TEAMS)) }
        p { (lang.m(cat::admin::TEAMS_EXPLAINED)) }
        @if teams.is_empty() {
            p { (lang.m(cat::admin::NO_TEAMS)) }
        } @else {
            ul.teams {
                @for t in &teams {
                    @let n = listing.iter().filter(|l| l.user.team == *t).count();
                    @let msg = if n == 1 { cat::admin::TEAM_ONE_MEMBER } else { cat::admin::TEAM_MEMBERS };
                    li { (lang.f(msg, &[("team", t), ("n", &n.to_string())])) }
                }
            }
        }
        form.add-team method="post" action="/admin/users" {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="action" value="team";
            @let (bad, desc) = Problem::aria(problem, "t-team");
            p {
                label for="t-team" { (lang.m(cat::admin::NEW_TEAM)) } " "
                input #t-team name="team" value=(typed.new_team) required maxlength="64"
                    aria-invalid=[bad] aria-describedby=[desc];
                (Problem::below(lang, problem, "t-team"))
            }
            button type="submit" { (lang.m(cat::admin::ADD_TEAM)) }
        }
    };
    let mut r = ctx.page(lang.m(cat::admin::USERS), body);
    *r.status_mut() = status;
    r
}

fn user_row(lang: Lang, admin: &User, csrf: &str, l: &UserListing) -> Markup {
    let u = &l.user;
    let me = u.user_id == admin.user_id;
    let name = u.display_name.as_str();
    html! {
        tr data-user=(u.user_id) {
            td { (u.user_id) @if me { " " (lang.m(cat::admin::THIS_IS_YOU)) } }
            td { (name) }
            td { (labels::role(lang, u.role)) }
            td { @if u.team.is_empty() { (lang.m(cat::admin::NO_TEAM)) } @else { (u.team) } }
            td {
                @if !l.active {
                    span.muted { (lang.m(cat::admin::DISABLED)) }
                } @else if l.waiting && l.asked_by == admin.actor() {
                    (lang.m(cat::admin::AWAITING_APPROVAL_BY_ANOTHER_ADMINISTRATOR))
                } @else if l.waiting {
                    (lang.m(cat::admin::WAITING))
                } @else {
                    (lang.m(cat::admin::ACTIVE))
                }
            }
            td {
                (l.created_by)
                @if let Some(b) = &l.approved_by { (lang.m(cat::admin::APPROVED_BY)) (b) }
            }
            td.actions {
                @if l.active && l.waiting && l.asked_by != admin.actor() {
                    form.inline method="post" action="/admin/users" {
                        input type="hidden" name="csrf" value=(csrf);
                        input type="hidden" name="action" value="approve";
                        input type="hidden" name="user" value=(u.user_id);
                        button type="submit" aria-label=(lang.f(cat::admin::APPROVE_ACCESS_FOR, &[("name", name)])) {
                            (lang.m(cat::admin::APPROVE_ACCESS_TO_CONTENT))
                        }
                    }
                    " "
                }
                @if !l.active {
                    form.inline method="post" action="/admin/users/confirm" {
                        input type="hidden" name="csrf" value=(csrf);
                        input type="hidden" name="action" value="enable";
                        input type="hidden" name="user" value=(u.user_id);
                        button type="submit" aria-label=(lang.f(cat::admin::ENABLE_NAME, &[("name", name)])) {
                            (lang.m(cat::admin::ENABLE))
                        }
                    }
                } @else if !me {
                    form.inline method="post" action="/admin/users/confirm" {
                        input type="hidden" name="csrf" value=(csrf);
                        input type="hidden" name="action" value="disable";
                        input type="hidden" name="user" value=(u.user_id);
                        button type="submit" aria-label=(lang.f(cat::admin::DISABLE_NAME, &[("name", name)])) {
                            (lang.m(cat::admin::DISABLE))
                        }
                    }
                }
                " "
                a.edit href={ "/admin/users/" (urlencode(&u.user_id)) "/edit" }
                    aria-label=(lang.f(cat::admin::EDIT_NAME, &[("name", name)])) {
                    (lang.m(cat::admin::EDIT))
                }
            }
        }
    }
}

fn role_select(lang: Lang, id: &str, selected: &str, problem: Option<Problem>) -> Markup {
    let (bad, desc) = Problem::aria(problem, id);
    html! {
        select id=(id) name="role" aria-invalid=[bad] aria-describedby=[desc] {
            @for r in Role::ALL {
                option value=(r.as_str()) selected[selected == r.as_str()] { (labels::role(lang, r)) }
            }
        }
        (Problem::below(lang, problem, id))
    }
}

fn team_select(lang: Lang, id: &str, teams: &[String], selected: &str, problem: Option<Problem>) -> Markup {
    let (bad, desc) = Problem::aria(problem, id);
    html! {
        select id=(id) name="team" aria-invalid=[bad] aria-describedby=[desc] {
            option value="" selected[selected.is_empty()] { (lang.m(cat::admin::NO_TEAM)) }
            @for t in teams {
                option value=(t) selected[selected == t] { (t) }
            }
        }
        (Problem::below(lang, problem, id))
    }
}

fn add_form(lang: Lang, csrf: &str, teams: &[String], typed: &Typed, problem: Option<Problem>) -> Markup {
    let aria = |id| Problem::aria(problem, id);
    let (user_bad, user_desc) = aria("u-user");
    let (name_bad, name_desc) = aria("u-name");
    let (pw_bad, pw_desc) = aria("u-password");
    let user_desc = Some(user_desc.map_or("u-user-hint".to_owned(), |d| format!("{d} u-user-hint")));
    html! {
        form.add-user method="post" action="/admin/users" {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="action" value="add";
            p {
                label for="u-user" { (lang.m(cat::admin::USER)) } " "
                input #u-user name="user" value=(typed.user) required pattern="[A-Za-z0-9._\\-]{1,64}"
                    autocomplete="off" aria-invalid=[user_bad] aria-describedby=[user_desc];
                br; span.muted #u-user-hint { (lang.m(cat::admin::USER_NAME_HINT)) }
                (Problem::below(lang, problem, "u-user"))
            }
            p {
                label for="u-name" { (lang.m(cat::admin::NAME)) } " "
                input #u-name name="name" value=(typed.name) required autocomplete="off"
                    aria-invalid=[name_bad] aria-describedby=[name_desc];
                (Problem::below(lang, problem, "u-name"))
            }
            p { label for="u-role" { (lang.m(cat::admin::ROLE)) } " " (role_select(lang, "u-role", &typed.role, problem)) }
            p { label for="u-team" { (lang.m(cat::admin::TEAM)) } " " (team_select(lang, "u-team", teams, &typed.team, problem)) }
            p {
                label for="u-password" { (lang.m(cat::admin::INITIAL_PASSWORD_AT_LEAST_12_CHARACTERS)) } " "
                input #u-password name="password" type="password" autocomplete="new-password" required minlength="12"
                    aria-invalid=[pw_bad] aria-describedby=[pw_desc];
                (Problem::below(lang, problem, "u-password"))
            }
            button type="submit" { (lang.m(cat::admin::ADD)) }
        }
    }
}

#[derive(Deserialize)]
struct UserForm {
    csrf: String,
    action: String,
    #[serde(default)]
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

/// The audit action of a form's `action` field.
fn audited(action: &str) -> String {
    match action {
        "team" => "team.create".into(),
        a => format!("user.{a}"),
    }
}

/// The reasons admin actions fail for, as the audit log records them
/// ([`AdminError::code`] and this page's own checks), with their messages:
/// the auditor's page names them in the page language.
const REASONS: &[(&str, Msg)] = &[
    ("invalid-id", cat::admin::ERR_INVALID_ID),
    ("short-password", cat::admin::ERR_SHORT_PASSWORD),
    ("user-exists", cat::admin::ERR_USER_EXISTS),
    ("no-such-user", cat::admin::ERR_NO_SUCH_USER),
    ("advisors-id", cat::admin::ERR_ADVISORS_ID),
    ("same-admin", cat::admin::ERR_SAME_ADMIN),
    ("no-approval-needed", cat::admin::ERR_NO_APPROVAL_NEEDED),
    ("yourself", cat::admin::NO_SELF_DISABLE),
    ("not-active", cat::admin::ERR_NOT_ACTIVE),
    ("not-disabled", cat::admin::ERR_NOT_DISABLED),
    ("unknown-team", cat::admin::ERR_UNKNOWN_TEAM),
    ("invalid-team", cat::admin::ERR_INVALID_TEAM),
    ("team-exists", cat::admin::ERR_TEAM_EXISTS),
    ("unknown-role", cat::admin::ERR_UNKNOWN_ROLE),
    ("nothing-changed", cat::admin::ERR_NOTHING_CHANGED),
    ("name-missing", cat::admin::ERR_NAME_MISSING),
    ("unknown-action", cat::admin::ERR_UNKNOWN_ACTION),
];

/// The message of an audit reason an admin action wrote, if it is one.
pub(super) fn reason_message(code: &str) -> Option<Msg> {
    REASONS.iter().find(|(c, _)| *c == code).map(|(_, m)| *m)
}

/// A web-level check of a form that failed: audited "failed" with the
/// reason's code.
async fn failed(app: &App, admin: &User, action: &str, subject: &str, msg: Msg) -> Result<(), Response> {
    let code = REASONS.iter().find(|(_, m)| *m == msg).map_or("", |(c, _)| *c);
    app.audit(admin, action, subject, code, "failed")
        .await
        .map_err(|e| internal(Lang::En, e))
}

async fn users_action(State(app): State<Arc<App>>, ctx: Ctx, Form(f): Form<UserForm>) -> Response {
    let action = audited(&f.action);
    let (admin, token) = match only(&app, &ctx, Role::Admin, &action).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let subject = if f.action == "team" {
        format!("team:{}", f.team)
    } else {
        format!("user:{}", f.user)
    };
    if let Err(r) = app.check_form(&ctx, (&admin, &token), &f.csrf, &action, &subject).await {
        return r;
    }
    let lang = ctx.lang;
    let typed = Typed {
        user: f.user.clone(),
        name: f.name.clone(),
        role: f.role.clone(),
        team: if f.action == "add" {
            f.team.clone()
        } else {
            String::new()
        },
        new_team: if f.action == "team" {
            f.team.clone()
        } else {
            String::new()
        },
    };
    let by = admin.actor();
    let done = match f.action.as_str() {
        "add" => {
            let teams = match app.identity.teams().await {
                Ok(t) => t,
                Err(e) => return internal(lang, e),
            };
            let web_check = if f.name.trim().is_empty() {
                Some(Problem::of("u-name", cat::admin::ERR_NAME_MISSING))
            } else if Role::parse(&f.role).is_err() {
                Some(Problem::of("u-role", cat::admin::ERR_UNKNOWN_ROLE))
            } else if !f.team.is_empty() && !teams.contains(&f.team) {
                Some(Problem::of("u-team", cat::admin::ERR_UNKNOWN_TEAM))
            } else {
                None
            };
            if let Some(p) = web_check {
                if let Err(r) = failed(&app, &admin, "user.create", &subject, p.msg).await {
                    return r;
                }
                let status = StatusCode::UNPROCESSABLE_ENTITY;
                return users(&app, &ctx, (&admin, &token), &typed, Some(p), None, status).await;
            }
            match Role::parse(&f.role) {
                Ok(role) => app
                    .identity
                    .add_user(&by, &f.user, f.name.trim(), role, &f.team, &f.password)
                    .await
                    .map(|_| ()),
                Err(e) => Err(e),
            }
        }
        "approve" => app.identity.approve_user(&by, &f.user).await,
        "disable" => app.identity.disable(&by, &f.user).await,
        "enable" => app.identity.enable(&by, &f.user).await,
        "team" => app.identity.add_team(&by, &f.team).await,
        "change" => {
            let Ok(role) = Role::parse(&f.role) else {
                if let Err(r) = failed(&app, &admin, &action, &subject, cat::admin::ERR_UNKNOWN_ROLE).await {
                    return r;
                }
                let p = Problem::of("e-role", cat::admin::ERR_UNKNOWN_ROLE);
                return edit(
                    &app,
                    &ctx,
                    &token,
                    &f.user,
                    (&f.role, &f.team),
                    Some(p),
                    StatusCode::UNPROCESSABLE_ENTITY,
                )
                .await;
            };
            match app.identity.change(&by, &f.user, role, &f.team).await {
                Err(e) => {
                    let Some((p, status)) = problem_of(&e) else {
                        return internal(lang, e);
                    };
                    let p = match p.field {
                        "u-team" => Problem::of("e-team", p.msg),
                        "u-user" => Problem::of("e-role", p.msg),
                        _ => p,
                    };
                    return edit(&app, &ctx, &token, &f.user, (&f.role, &f.team), Some(p), status).await;
                }
                ok => ok,
            }
        }
        _ => {
            if let Err(r) = failed(&app, &admin, &action, &subject, cat::admin::ERR_UNKNOWN_ACTION).await {
                return r;
            }
            let p = Problem::of("", cat::admin::ERR_UNKNOWN_ACTION);
            return users(
                &app,
                &ctx,
                (&admin, &token),
                &typed,
                Some(p),
                None,
                StatusCode::BAD_REQUEST,
            )
            .await;
        }
    };
    match done {
        Ok(()) => {
            let who = if f.action == "team" { &f.team } else { &f.user };
            Redirect::to(&format!(
                "/admin/users?done={}&user={}",
                urlencode(&f.action),
                urlencode(who)
            ))
            .into_response()
        }
        Err(e) => match problem_of(&e) {
            Some((p, status)) => users(&app, &ctx, (&admin, &token), &typed, Some(p), None, status).await,
            None => internal(lang, e),
        },
    }
}

/// `/admin/users/confirm`: what a disable, enable or role/team change will
/// do, with "Bekreft" (posting the action itself) and "Avbryt". Nothing
/// changes here; a self-disabling or an invalid change is answered (and
/// audited as failed) before the confirmation.
async fn users_confirm(State(app): State<Arc<App>>, ctx: Ctx, Form(f): Form<UserForm>) -> Response {
    let action = audited(&f.action);
    let (admin, token) = match only(&app, &ctx, Role::Admin, &action).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let subject = format!("user:{}", f.user);
    if let Err(r) = app.check_form(&ctx, (&admin, &token), &f.csrf, &action, &subject).await {
        return r;
    }
    let lang = ctx.lang;
    let listing = match app.identity.listing().await {
        Ok(u) => u,
        Err(e) => return internal(lang, e),
    };
    let Some(target) = listing.into_iter().find(|l| l.user.user_id == f.user) else {
        if let Err(r) = failed(&app, &admin, &action, &subject, cat::admin::ERR_NO_SUCH_USER).await {
            return r;
        }
        let p = Problem::of("", cat::admin::ERR_NO_SUCH_USER);
        return users(
            &app,
            &ctx,
            (&admin, &token),
            &Typed::default(),
            Some(p),
            None,
            StatusCode::NOT_FOUND,
        )
        .await;
    };
    let u = &target.user;
    let name = u.display_name.as_str();
    let vars = [("name", name), ("user", u.user_id.as_str())];
    let (title, lines, needs_approval): (String, Vec<String>, bool) = match f.action.as_str() {
        "disable" if u.user_id == admin.user_id => {
            if let Err(r) = failed(&app, &admin, &action, &subject, cat::admin::NO_SELF_DISABLE).await {
                return r;
            }
            let p = Problem::of("", cat::admin::NO_SELF_DISABLE);
            return users(
                &app,
                &ctx,
                (&admin, &token),
                &Typed::default(),
                Some(p),
                None,
                StatusCode::CONFLICT,
            )
            .await;
        }
        "disable" => (
            lang.f(cat::admin::CONFIRM_DISABLE_TITLE, &vars),
            vec![lang.f(cat::admin::CONFIRM_DISABLE, &vars)],
            false,
        ),
        "enable" => (
            lang.f(cat::admin::CONFIRM_ENABLE_TITLE, &vars),
            vec![lang.f(cat::admin::CONFIRM_ENABLE, &vars)],
            u.role.reads_content(),
        ),
        "change" => {
            let teams = match app.identity.teams().await {
                Ok(t) => t,
                Err(e) => return internal(lang, e),
            };
            let role = Role::parse(&f.role).ok();
            let problem = match role {
                None => Some((
                    Problem::of("e-role", cat::admin::ERR_UNKNOWN_ROLE),
                    StatusCode::UNPROCESSABLE_ENTITY,
                )),
                Some(r) if u.user_id == admin.user_id && r != u.role => {
                    Some((Problem::of("e-role", cat::admin::NO_SELF_DISABLE), StatusCode::CONFLICT))
                }
                Some(_) if !f.team.is_empty() && !teams.contains(&f.team) => Some((
                    Problem::of("e-team", cat::admin::ERR_UNKNOWN_TEAM),
                    StatusCode::UNPROCESSABLE_ENTITY,
                )),
                Some(r) if r == u.role && f.team == u.team => Some((
                    Problem::of("e-role", cat::admin::ERR_NOTHING_CHANGED),
                    StatusCode::UNPROCESSABLE_ENTITY,
                )),
                Some(_) => None,
            };
            if let Some((p, status)) = problem {
                if let Err(r) = failed(&app, &admin, &action, &subject, p.msg).await {
                    return r;
                }
                return edit(&app, &ctx, &token, &f.user, (&f.role, &f.team), Some(p), status).await;
            }
            let new_role = role.unwrap_or(u.role);
            let team_name = |t: &str| {
                if t.is_empty() {
                    lang.m(cat::admin::NO_TEAM).to_owned()
                } else {
                    t.to_owned()
                }
            };
            let mut lines = Vec::new();
            if new_role != u.role {
                lines.push(lang.f(
                    cat::admin::CONFIRM_ROLE,
                    &[
                        ("old", labels::role(lang, u.role)),
                        ("new", labels::role(lang, new_role)),
                    ],
                ));
            }
            if f.team != u.team {
                lines.push(lang.f(
                    cat::admin::CONFIRM_TEAM,
                    &[("old", &team_name(&u.team)), ("new", &team_name(&f.team))],
                ));
            }
            lines.push(lang.m(cat::admin::CONFIRM_SIGNED_OUT).to_owned());
            (
                lang.f(cat::admin::CONFIRM_CHANGE_TITLE, &vars),
                lines,
                new_role.reads_content(),
            )
        }
        _ => {
            if let Err(r) = failed(&app, &admin, &action, &subject, cat::admin::ERR_UNKNOWN_ACTION).await {
                return r;
            }
            let p = Problem::of("", cat::admin::ERR_UNKNOWN_ACTION);
            return users(
                &app,
                &ctx,
                (&admin, &token),
                &Typed::default(),
                Some(p),
                None,
                StatusCode::BAD_REQUEST,
            )
            .await;
        }
    };
    ctx.page(
        &title,
        html! {
            @for l in &lines { p { (l) } }
            @if needs_approval { p { strong { (lang.m(cat::admin::CONFIRM_NEEDS_APPROVAL)) } } }
            form.confirm method="post" action="/admin/users" {
                input type="hidden" name="csrf" value=(csrf_of(&token));
                input type="hidden" name="action" value=(f.action);
                input type="hidden" name="user" value=(u.user_id);
                @if f.action == "change" {
                    input type="hidden" name="role" value=(f.role);
                    input type="hidden" name="team" value=(f.team);
                }
                button type="submit" { (lang.m(cat::admin::CONFIRM)) } " "
                a href="/admin/users" { (lang.m(cat::admin::CANCEL)) }
            }
        },
    )
}

async fn edit_page(State(app): State<Arc<App>>, ctx: Ctx, Path(id): Path<String>) -> Response {
    let (admin, token) = match only(&app, &ctx, Role::Admin, "user.read").await {
        Ok(u) => u,
        Err(r) => return r,
    };
    if let Err(e) = app
        .audit(&admin, "user.read", &format!("user:{id}"), "", "allowed")
        .await
    {
        return internal(ctx.lang, e);
    }
    edit(&app, &ctx, &token, &id, ("", ""), None, StatusCode::OK).await
}

/// The role and team form of user `id`; `typed` (role, team) as sent, or
/// empty for the user's own.
async fn edit(
    app: &App,
    ctx: &Ctx,
    token: &str,
    id: &str,
    typed: (&str, &str),
    problem: Option<Problem>,
    status: StatusCode,
) -> Response {
    let lang = ctx.lang;
    let listing = match app.identity.listing().await {
        Ok(u) => u,
        Err(e) => return internal(lang, e),
    };
    let Some(target) = listing.into_iter().find(|l| l.user.user_id == id) else {
        return ctx.error(StatusCode::NOT_FOUND, cat::admin::ERR_NO_SUCH_USER);
    };
    let teams = match app.identity.teams().await {
        Ok(t) => t,
        Err(e) => return internal(lang, e),
    };
    let u = &target.user;
    let me = ctx.session.as_ref().is_some_and(|(a, _)| a.user_id == u.user_id);
    let (role, team) = if problem.is_some() {
        typed
    } else {
        (u.role.as_str(), u.team.as_str())
    };
    let body = html! {
        (Problem::summary(lang, problem))
        p.muted { (lang.m(cat::admin::USERS_OF_ROLES_THAT_SEE_CALL)) }
        form.edit-user method="post" action="/admin/users/confirm" {
            input type="hidden" name="csrf" value=(csrf_of(token));
            input type="hidden" name="action" value="change";
            input type="hidden" name="user" value=(u.user_id);
            @if me {
                // One's own role is another admin's to change: shown, kept.
                p #e-role { (lang.m(cat::admin::ROLE)) ": " (labels::role(lang, u.role)) }
                input type="hidden" name="role" value=(u.role.as_str());
                p.muted { (lang.m(cat::admin::NO_OWN_ROLE)) }
            } @else {
                p { label for="e-role" { (lang.m(cat::admin::ROLE)) } " " (role_select(lang, "e-role", role, problem)) }
            }
            p { label for="e-team" { (lang.m(cat::admin::TEAM)) } " " (team_select(lang, "e-team", &teams, team, problem)) }
            button type="submit" { (lang.m(cat::admin::SAVE_CHANGES)) } " "
            a href="/admin/users" { (lang.m(cat::admin::CANCEL)) }
        }
        p.muted { (lang.m(cat::admin::TEAMS_EXPLAINED)) " " a href="/admin/users#teams" { (lang.m(cat::admin::TEAMS)) } }
    };
    let mut r = ctx.page(&lang.f(cat::admin::EDIT_TITLE, &[("name", &u.display_name)]), body);
    *r.status_mut() = status;
    r
}
