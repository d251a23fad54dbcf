//! Why compliance (and QA, for conversations) reads: the reason is stated
//! once per session and subject in a form and kept on the server (table
//! `read_reasons`, keyed by the session token's hash and the subject), never
//! in a URL, so it does not reach browser history, proxy logs or a
//! `Referer`. It goes with the session (sign-out, expiry).
//!
//! - Opening a call or conversation (page, audio) without a stated reason
//!   shows the form ([`App::authorize_page`]), not an error.
//! - `POST /reason`: category from a fixed list ([`Category`]), a case
//!   number (required for the categories that have one), and a text of at
//!   least [`crate::review::MIN_REASON_CHARS`] characters. A wrong form is
//!   shown again with the input kept and audited as `read.reason` "failed";
//!   a right one is kept and answered with 303 to the page.
//! - Every read then carries "category · case · text" to the audit log.

use super::{cat, csrf_of, internal, App, Ctx, Lang};
use crate::identity::{Role, User};
use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::post;
use axum::Router;
use maud::{html, Markup};
use opptak_domain::model::CallId;
use opptak_store::search::ReadReason;
use serde::Deserialize;
use std::sync::Arc;

pub(super) fn routes() -> Router<Arc<App>> {
    Router::new().route("/reason", post(state_reason))
}

/// Why content is read: a fixed list, so the audit log can be sorted by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Category {
    Complaint,
    AuthorityRequest,
    SubjectAccess,
    FinancialComplaintsBoard,
    LegalClaim,
    InternalControl,
    QualityControl,
}

impl Category {
    pub(crate) const ALL: [Category; 7] = [
        Category::Complaint,
        Category::AuthorityRequest,
        Category::SubjectAccess,
        Category::FinancialComplaintsBoard,
        Category::LegalClaim,
        Category::InternalControl,
        Category::QualityControl,
    ];

    pub(crate) fn code(self) -> &'static str {
        match self {
            Category::Complaint => "complaint",
            Category::AuthorityRequest => "authority_request",
            Category::SubjectAccess => "subject_access",
            Category::FinancialComplaintsBoard => "finansklagenemnda",
            Category::LegalClaim => "legal_claim",
            Category::InternalControl => "internal_control",
            Category::QualityControl => "quality_control",
        }
    }

    pub(crate) fn parse(code: &str) -> Option<Category> {
        Category::ALL.into_iter().find(|c| c.code() == code)
    }

    pub(crate) fn label(self, lang: Lang) -> &'static str {
        lang.m(match self {
            Category::Complaint => cat::search::CATEGORY_COMPLAINT,
            Category::AuthorityRequest => cat::search::CATEGORY_AUTHORITY_REQUEST,
            Category::SubjectAccess => cat::search::CATEGORY_SUBJECT_ACCESS,
            Category::FinancialComplaintsBoard => cat::search::CATEGORY_FINANSKLAGENEMNDA,
            Category::LegalClaim => cat::search::CATEGORY_LEGAL_CLAIM,
            Category::InternalControl => cat::search::CATEGORY_INTERNAL_CONTROL,
            Category::QualityControl => cat::search::CATEGORY_QUALITY_CONTROL,
        })
    }

    /// A complaint, a request or a case from outside has a number to cite;
    /// the bank's own controls may not.
    pub(crate) fn needs_case(self) -> bool {
        !matches!(self, Category::InternalControl | Category::QualityControl)
    }
}

/// What the audit log keeps of a stated reason: the category in Norwegian
/// (the log is one language), the case number and the text.
pub(crate) fn audit_text(r: &ReadReason) -> String {
    let category = Category::parse(&r.category).map_or(r.category.as_str(), |c| c.label(Lang::Nb));
    if r.case_ref.is_empty() {
        format!("{category} · {}", r.text)
    } else {
        format!("{category} · {} · {}", r.case_ref, r.text)
    }
}

/// The page a subject (`call:<id>`, `conversation:<id>`) is read on.
fn page_of(subject: &str) -> Option<String> {
    let (kind, id) = subject.split_once(':')?;
    let id = CallId::parse(id).ok()?;
    match kind {
        "call" => Some(format!("/calls/{id}")),
        "conversation" => Some(format!("/conversations/{id}")),
        _ => None,
    }
}

/// The form as typed, and what is wrong with it.
#[derive(Default, Deserialize)]
pub(crate) struct ReasonForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    category: String,
    #[serde(default)]
    case_ref: String,
    #[serde(default)]
    text: String,
}

#[derive(Default)]
struct Problems {
    category: Option<&'static str>,
    case_ref: Option<&'static str>,
    text: Option<String>,
}

impl Problems {
    fn any(&self) -> bool {
        self.category.is_some() || self.case_ref.is_some() || self.text.is_some()
    }
}

fn check(lang: Lang, f: &ReasonForm) -> (Problems, Option<ReadReason>) {
    let mut p = Problems::default();
    let category = Category::parse(f.category.trim());
    if category.is_none() {
        p.category = Some(lang.m(cat::search::CHOOSE_A_CATEGORY));
    }
    let case_ref: String = f.case_ref.trim().chars().take(100).collect();
    if category.is_some_and(Category::needs_case) && case_ref.is_empty() {
        p.case_ref = Some(lang.m(cat::search::THE_CATEGORY_NEEDS_A_CASE_NUMBER));
    }
    let text: String = f.text.trim().chars().take(500).collect();
    if text.chars().count() < crate::review::MIN_REASON_CHARS {
        p.text = Some(lang.f(
            cat::search::WRITE_AT_LEAST_N_CHARACTERS,
            &[("n", &crate::review::MIN_REASON_CHARS.to_string())],
        ));
    }
    match category {
        Some(c) if !p.any() => (
            p,
            Some(ReadReason {
                category: c.code().into(),
                case_ref,
                text,
                stated_at_us: 0,
            }),
        ),
        _ => (p, None),
    }
}

/// A reason stated on the command line (`opptak ki show --category --case
/// --reason`), checked as the form is: the text the audit log keeps
/// ("category · case · text"), or what is wrong with it (English).
pub(super) fn check_stated(category: &str, case_ref: &str, text: &str) -> Result<String, String> {
    let form = ReasonForm {
        category: category.into(),
        case_ref: case_ref.into(),
        text: text.into(),
        ..ReasonForm::default()
    };
    match check(Lang::En, &form) {
        (_, Some(reason)) => Ok(audit_text(&reason)),
        (p, None) => Err([p.category.map(str::to_owned), p.case_ref.map(str::to_owned), p.text]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join("; ")),
    }
}

/// The session's stated reason for `subject`, as the audit log keeps it.
pub(crate) async fn stated(app: &App, token: &str, subject: &str) -> anyhow::Result<Option<String>> {
    Ok(app
        .search
        .reason(&crate::identity::token_hash(token), subject)
        .await?
        .map(|r| audit_text(&r)))
}

/// Whether the role states a reason in the form for `subject` (calls:
/// compliance; conversations: compliance and QA).
pub(super) fn asks(role: Role, subject: &str) -> bool {
    role == Role::Compliance || (role == Role::Qa && subject.starts_with("conversation:"))
}

impl App {
    /// [`App::authorize`] for a page of the HTML service: the stated reason
    /// comes from the session's store; without one the reason form is the
    /// answer (nothing is read, nothing audited yet).
    pub(crate) async fn authorize_page(
        &self,
        ctx: &Ctx,
        call: Option<&opptak_store::meta::CallRecord>,
        subject: &str,
        action: &str,
    ) -> Result<String, Response> {
        let (user, token) = ctx.user()?;
        let reason = match self.reason_or_form(ctx, (user, token), call.is_some(), subject).await {
            Ok(r) => r,
            Err(r) => return Err(r),
        };
        self.authorize(ctx.lang, user, call, subject, action, reason.as_deref())
            .await
    }

    /// The stated reason of a role that states one (or the form to state
    /// it); `None` for the other roles and for a subject that does not
    /// exist (the caller refuses that).
    pub(crate) async fn reason_or_form(
        &self,
        ctx: &Ctx,
        (user, token): (&User, &str),
        exists: bool,
        subject: &str,
    ) -> Result<Option<String>, Response> {
        if !exists || !asks(user.role, subject) {
            return Ok(None);
        }
        match stated(self, token, subject).await {
            Ok(Some(r)) => Ok(Some(r)),
            Ok(None) => Err(form_page(
                ctx,
                token,
                subject,
                &ReasonForm::default(),
                &Problems::default(),
            )),
            Err(e) => Err(internal(ctx.lang, e)),
        }
    }
}

fn form_page(ctx: &Ctx, token: &str, subject: &str, f: &ReasonForm, p: &Problems) -> Response {
    let lang = ctx.lang;
    let mut r = ctx.page(
        lang.m(cat::search::WHY_DO_YOU_OPEN_IT),
        form(lang, token, subject, f, p),
    );
    if p.any() {
        *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    }
    r
}

/// `aria-invalid`/`aria-describedby` of a field with a problem.
fn field_error(id: &str, problem: Option<&str>) -> Markup {
    html! {
        @if let Some(m) = problem { p.field-error id={ (id) "-error" } { (m) } }
    }
}

fn form(lang: Lang, token: &str, subject: &str, f: &ReasonForm, p: &Problems) -> Markup {
    let described = |id: &str, bad: bool| bad.then(|| format!("{id}-error"));
    html! {
        @if p.any() {
            div.error-summary role="alert" {
                p { strong { (lang.m(cat::search::THE_REASON_IS_NOT_COMPLETE)) } }
                ul {
                    @if let Some(m) = p.category { li { a href="#category" { (m) } } }
                    @if let Some(m) = p.case_ref { li { a href="#case_ref" { (m) } } }
                    @if let Some(m) = &p.text { li { a href="#text" { (m) } } }
                }
            }
        }
        p { (lang.m(cat::search::THE_REASON_IS_KEPT_FOR_THIS_SESSION)) }
        p { (lang.f(cat::search::YOU_OPEN, &[("id", subject.split_once(':').map_or(subject, |(_, id)| id))])) }
        form method="post" action="/reason" {
            input type="hidden" name="csrf" value=(csrf_of(token));
            input type="hidden" name="subject" value=(subject);
            p {
                label for="category" { (lang.m(cat::search::CATEGORY)) } br;
                select #category name="category" required
                    aria-invalid=[p.category.map(|_| "true")] aria-describedby=[described("category", p.category.is_some())] {
                    option value="" selected[f.category.is_empty()] { (lang.m(cat::search::CHOOSE)) }
                    @for c in Category::ALL {
                        option value=(c.code()) selected[f.category == c.code()] { (c.label(lang)) }
                    }
                }
                (field_error("category", p.category))
            }
            p {
                label for="case_ref" { (lang.m(cat::search::CASE_NUMBER)) } br;
                input #case_ref type="text" name="case_ref" size="30" maxlength="100" value=(f.case_ref)
                    aria-invalid=[p.case_ref.map(|_| "true")] aria-describedby=[described("case_ref", p.case_ref.is_some())];
                br; small.muted { (lang.m(cat::search::CASE_NUMBER_HELP)) }
                (field_error("case_ref", p.case_ref))
            }
            p {
                label for="text" { (lang.f(cat::search::REASON_TEXT, &[("n", &crate::review::MIN_REASON_CHARS.to_string())])) } br;
                textarea #text name="text" rows="3" cols="70" required
                    aria-invalid=[p.text.as_ref().map(|_| "true")] aria-describedby=[described("text", p.text.is_some())] { (f.text) }
                (field_error("text", p.text.as_deref()))
            }
            button type="submit" { (lang.m(cat::search::OPEN)) }
        }
    }
}

async fn state_reason(State(app): State<Arc<App>>, ctx: Ctx, Form(f): Form<ReasonForm>) -> Response {
    let (user, token) = match ctx.user() {
        Ok(u) => u,
        Err(r) => return r,
    };
    let lang = ctx.lang;
    let action = "read.reason";
    let Some(back) = page_of(&f.subject) else {
        return ctx.error(StatusCode::NOT_FOUND, cat::search::UNKNOWN_CALL_OR_CONVERSATION);
    };
    if let Err(r) = app.check_form(&ctx, (user, token), &f.csrf, action, &f.subject).await {
        return r;
    }
    if !asks(user.role, &f.subject) {
        if let Err(e) = app.audit(user, action, &f.subject, "", "refused").await {
            return internal(lang, e);
        }
        return ctx.error(StatusCode::FORBIDDEN, cat::search::YOUR_ROLE_STATES_NO_REASON);
    }
    let (problems, reason) = check(lang, &f);
    let Some(mut reason) = reason else {
        let typed: String = f.text.trim().chars().take(500).collect();
        if let Err(e) = app.audit(user, action, &f.subject, &typed, "failed").await {
            return internal(lang, e);
        }
        return form_page(&ctx, token, &f.subject, &f, &problems);
    };
    reason.stated_at_us = app.edges.vault.clock().now_us();
    if let Err(e) = app
        .search
        .keep_reason(&crate::identity::token_hash(token), &f.subject, &reason)
        .await
    {
        return internal(lang, e);
    }
    Redirect::to(&back).into_response()
}
