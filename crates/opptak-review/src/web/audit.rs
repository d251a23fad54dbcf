//! The auditor's view of the audit log (R9): newest first, filtered by
//! actor, action, call or subject, outcome and Oslo dates, paged, exported
//! as CSV, every code under a readable label, and the chain verified on
//! demand. Reading, exporting and verifying are audited; every other role
//! is refused (and audited).

use super::admin::{only, reason_message};
use super::{cat, csrf_of, format, internal, labels, urlencode, App, Ctx, Lang};
use crate::identity::Role;
use axum::extract::{Form, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use cat::Msg;
use maud::{html, Markup};
use opptak_domain::time::{days_from_civil, oslo_civil, oslo_offset_s};
use opptak_store::audit::{AuditEntry, AuditFilter};
use serde::Deserialize;
use std::sync::Arc;

pub(super) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/audit", get(audit_page))
        .route("/audit.csv", get(audit_csv))
        .route("/audit/verify", post(audit_verify))
}

/// Entries per page unless `per=` says otherwise, and the most it may say.
const PER_DEFAULT: u32 = 50;
const PER_MAX: u32 = 200;
/// The most entries one CSV export holds.
const CSV_MAX: u64 = 100_000;

/// Every action code the service writes, with its label; the action filter
/// offers these.
pub(crate) const ACTIONS: &[(&str, Msg)] = &[
    ("transcript.read", cat::audit::A_TRANSCRIPT_READ),
    ("recording.play", cat::audit::A_RECORDING_PLAY),
    ("draft.edit", cat::audit::A_DRAFT_EDIT),
    ("draft.approve", cat::audit::A_DRAFT_APPROVE),
    ("draft.reject", cat::audit::A_DRAFT_REJECT),
    ("summary.amend", cat::audit::A_SUMMARY_AMEND),
    ("qa.queue", cat::audit::A_QA_QUEUE),
    ("qa.score", cat::audit::A_QA_SCORE),
    ("qa.report", cat::audit::A_QA_REPORT),
    ("qa.share", cat::audit::A_QA_SHARE),
    ("dashboard.read", cat::audit::A_DASHBOARD_READ),
    ("conversations.list", cat::audit::A_CONVERSATIONS_LIST),
    ("conversation.read", cat::audit::A_CONVERSATION_READ),
    ("archive.list", cat::audit::A_ARCHIVE_LIST),
    ("archive.read", cat::audit::A_ARCHIVE_READ),
    ("audit.read", cat::audit::A_AUDIT_READ),
    ("audit.verify", cat::audit::A_AUDIT_VERIFY),
    ("audit.export", cat::audit::A_AUDIT_EXPORT),
    ("user.list", cat::audit::A_USER_LIST),
    ("user.read", cat::audit::A_USER_READ),
    ("user.create", cat::audit::A_USER_CREATE),
    ("user.add", cat::audit::A_USER_ADD),
    ("user.approve", cat::audit::A_USER_APPROVE),
    ("user.disable", cat::audit::A_USER_DISABLE),
    ("user.enable", cat::audit::A_USER_ENABLE),
    ("user.change", cat::audit::A_USER_CHANGE),
    ("user.password", cat::audit::A_USER_PASSWORD),
    ("team.create", cat::audit::A_TEAM_CREATE),
    ("login", cat::audit::A_LOGIN),
    ("logout", cat::audit::A_LOGOUT),
    ("token", cat::audit::A_TOKEN),
    ("cli.authenticate", cat::audit::A_CLI_AUTHENTICATE),
    ("key.shred", cat::audit::A_KEY_SHRED),
    ("key.shred.emergency", cat::audit::A_KEY_SHRED_EMERGENCY),
    ("key.shred.emergency.confirm", cat::audit::A_KEY_SHRED_EMERGENCY_CONFIRM),
    ("kek.destroy", cat::audit::A_KEK_DESTROY),
    ("hold.place", cat::audit::A_HOLD_PLACE),
    ("hold.extend", cat::audit::A_HOLD_EXTEND),
    ("hold.release", cat::audit::A_HOLD_RELEASE),
    ("retention.reclassify", cat::audit::A_RETENTION_RECLASSIFY),
    ("retention.extend", cat::audit::A_RETENTION_EXTEND),
    ("call.reclassify", cat::audit::A_CALL_RECLASSIFY),
    ("call.context", cat::audit::A_CALL_CONTEXT),
    ("disclosure", cat::audit::A_DISCLOSURE),
    ("subject.export", cat::audit::A_SUBJECT_EXPORT),
    ("subject.erase", cat::audit::A_SUBJECT_ERASE),
    ("subject.erase.dry-run", cat::audit::A_SUBJECT_ERASE_DRY_RUN),
    ("subject.object", cat::audit::A_SUBJECT_OBJECT),
    ("deadletter.export", cat::audit::A_DEADLETTER_EXPORT),
    ("recording.export", cat::audit::A_RECORDING_EXPORT),
    ("archive-copy.export", cat::audit::A_ARCHIVE_COPY_EXPORT),
    ("ki-audio.export", cat::audit::A_KI_AUDIO_EXPORT),
    ("policy.load", cat::audit::A_POLICY_LOAD),
];

/// The outcomes, with their labels: "refused" is an access refusal,
/// "failed" a form that did not pass its checks (not an access violation).
pub(crate) const OUTCOMES: &[(&str, Msg)] = &[
    ("allowed", cat::audit::OUTCOME_ALLOWED),
    ("refused", cat::audit::OUTCOME_REFUSED),
    ("failed", cat::audit::OUTCOME_FAILED),
    ("intact", cat::audit::OUTCOME_INTACT),
    ("broken", cat::audit::OUTCOME_BROKEN),
];

/// An action's label; `None` for a code this service does not know.
pub(crate) fn action_label(lang: Lang, code: &str) -> Option<&'static str> {
    ACTIONS.iter().find(|(c, _)| *c == code).map(|(_, m)| lang.m(*m))
}

/// An outcome's label; `None` for an unknown code.
pub(crate) fn outcome_label(lang: Lang, code: &str) -> Option<&'static str> {
    OUTCOMES.iter().find(|(c, _)| *c == code).map(|(_, m)| lang.m(*m))
}

/// The role an entry was written in: a person's role, or a service's.
fn role_label(lang: Lang, code: &str) -> Option<&'static str> {
    if let Ok(r) = Role::parse(code) {
        return Some(labels::role(lang, r));
    }
    Some(lang.m(match code {
        "" | "-" => cat::audit::ROLE_NONE,
        "operator" => cat::audit::ROLE_OPERATOR,
        "system" => cat::audit::ROLE_SYSTEM,
        "archive-client" | "archive client" | "archive" => cat::audit::ROLE_ARCHIVE_CLIENT,
        _ => return None,
    }))
}

/// The fixed reasons the service writes itself, by name (an admin's
/// change `role advisor -> qa; team oslo -> bergen; awaiting …` part by
/// part); a stated reason (a compliance officer's) is shown as written.
fn reason_text(lang: Lang, reason: &str) -> String {
    if reason.contains("; ") {
        return reason
            .split("; ")
            .map(|p| reason_text(lang, p))
            .collect::<Vec<_>>()
            .join("; ");
    }
    let arrow = |rest: &str| rest.split_once(" -> ").map(|(a, b)| (a.to_owned(), b.to_owned()));
    if let Some((old, new)) = reason.strip_prefix("role ").and_then(arrow) {
        let name = |r: &str| Role::parse(r).map_or_else(|_| r.to_owned(), |r| labels::role(lang, r).to_owned());
        return lang.f(cat::admin::CONFIRM_ROLE, &[("old", &name(&old)), ("new", &name(&new))]);
    }
    if let Some((old, new)) = reason.strip_prefix("team ").and_then(arrow) {
        let name = |t: &str| {
            if t.is_empty() {
                lang.m(cat::admin::NO_TEAM).to_owned()
            } else {
                t.to_owned()
            }
        };
        return lang.f(cat::admin::CONFIRM_TEAM, &[("old", &name(&old)), ("new", &name(&new))]);
    }
    if let Some(role) = reason.strip_prefix("role ").and_then(|r| Role::parse(r).ok()) {
        return format!("{}: {}", lang.m(cat::admin::ROLE), labels::role(lang, role));
    }
    if let Some(m) = reason_message(reason) {
        return lang.m(m).to_owned();
    }
    let fixed = match reason {
        "review" => Some(cat::audit::REASON_REVIEW),
        "team review" => Some(cat::audit::REASON_TEAM_REVIEW),
        "qa sample" => Some(cat::audit::REASON_QA_SAMPLE),
        "no valid CSRF token" => Some(cat::audit::REASON_NO_CSRF),
        "too many failed sign-ins" => Some(cat::audit::REASON_TOO_MANY),
        "awaiting a second admin's approval" => Some(cat::audit::REASON_AWAITING),
        _ => None,
    };
    fixed.map_or_else(|| reason.to_owned(), |m| lang.m(m).to_owned())
}

/// A subject as `Samtale demo-0003`; the kind's label, then the id.
fn subject_text(lang: Lang, subject: &str) -> String {
    let kinds = [
        ("call:", cat::audit::KIND_CALL),
        ("conversation:", cat::audit::KIND_CONVERSATION),
        ("user:", cat::audit::KIND_USER),
        ("team:", cat::audit::KIND_TEAM),
    ];
    // The log's own reads: what was asked (the filters) after the name.
    for (what, label) in [
        ("audit.csv", cat::audit::SUBJECT_AUDIT_CSV),
        ("audit", cat::audit::SUBJECT_AUDIT),
    ] {
        if subject == what {
            return lang.m(label).to_owned();
        }
        if let Some(q) = subject.strip_prefix(what).and_then(|r| r.strip_prefix('?')) {
            return format!("{} ({q})", lang.m(label));
        }
    }
    match subject {
        "users" => return lang.m(cat::audit::SUBJECT_USERS).to_owned(),
        "session" => return lang.m(cat::audit::SUBJECT_SESSION).to_owned(),
        _ => {}
    }
    for (prefix, label) in kinds {
        if let Some(id) = subject.strip_prefix(prefix) {
            return format!("{} {id}", lang.m(label));
        }
    }
    subject.to_owned()
}

/// The query of the log page and of its CSV.
#[derive(Deserialize, Default, Clone)]
pub(super) struct LogQuery {
    #[serde(default)]
    actor: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    outcome: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    page: Option<u64>,
    per: Option<u32>,
}

/// A filter field that failed its check.
struct FieldError {
    field: &'static str,
    msg: Msg,
}

/// An Oslo calendar date, typed as `2026-12-07` (what `<input type=date>`
/// sends) or `07.12.2026`, as its midnight in microseconds.
fn oslo_midnight(s: &str) -> Option<i64> {
    let s = s.trim();
    let (y, m, d) = if let [y, m, d] = s.split('-').collect::<Vec<_>>()[..] {
        (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?)
    } else if let [d, m, y] = s.split('.').collect::<Vec<_>>()[..] {
        (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?)
    } else {
        return None;
    };
    let (y, m, d): (i64, u32, u32) = (y, m, d);
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let days = days_from_civil(y, m, d);
    // Summer time changes at 01:00 UTC, never near Oslo's midnight: the
    // offset at UTC midnight is the offset at Oslo's midnight.
    let utc_midnight = days * 86_400;
    let at = (utc_midnight - oslo_offset_s(utc_midnight * 1_000_000)) * 1_000_000;
    // A date that does not exist (31 February) comes back as another day.
    let (yy, mm, dd, ..) = oslo_civil(at);
    ((yy, mm, dd) == (y, m, d)).then_some(at)
}

impl LogQuery {
    fn per(&self) -> u32 {
        self.per.unwrap_or(PER_DEFAULT).clamp(1, PER_MAX)
    }

    fn page(&self) -> u64 {
        self.page.unwrap_or(1).max(1)
    }

    /// The store's filter, or the field that is wrong.
    fn filter(&self) -> Result<AuditFilter, FieldError> {
        let text = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
        let from_us = match text(&self.from) {
            None => None,
            Some(d) => Some(oslo_midnight(&d).ok_or(FieldError {
                field: "from",
                msg: cat::audit::BAD_DATE,
            })?),
        };
        let to_us = match text(&self.to) {
            None => None,
            // To and with the day: up to the next day's midnight.
            Some(d) => Some(oslo_midnight(&d).and_then(oslo_midnight_after).ok_or(FieldError {
                field: "to",
                msg: cat::audit::BAD_DATE,
            })?),
        };
        if let (Some(f), Some(t)) = (from_us, to_us) {
            if t <= f {
                return Err(FieldError {
                    field: "to",
                    msg: cat::audit::DATES_REVERSED,
                });
            }
        }
        Ok(AuditFilter {
            actor: text(&self.actor),
            action: text(&self.action),
            subject: text(&self.subject),
            outcome: text(&self.outcome),
            from_us,
            to_us,
        })
    }

    /// The filters as a query string (no page), for links and the CSV.
    fn filters_query(&self) -> String {
        let mut parts = Vec::new();
        for (k, v) in [
            ("actor", &self.actor),
            ("action", &self.action),
            ("subject", &self.subject),
            ("outcome", &self.outcome),
            ("from", &self.from),
            ("to", &self.to),
        ] {
            if !v.trim().is_empty() {
                parts.push(format!("{k}={}", urlencode(v.trim())));
            }
        }
        if let Some(p) = self.per.filter(|p| *p != PER_DEFAULT) {
            parts.push(format!("per={}", p.clamp(1, PER_MAX)));
        }
        parts.join("&")
    }

    /// What the audit entry of a read records as its subject: the filters.
    fn audited_subject(&self, what: &str) -> String {
        let q = self.filters_query();
        let mut s = if q.is_empty() {
            what.to_owned()
        } else {
            format!("{what}?{q}")
        };
        if s.len() > 900 {
            let mut end = 900;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s.truncate(end);
        }
        s
    }
}

/// The Oslo midnight after the one at `at` (23, 24 or 25 hours later).
fn oslo_midnight_after(at: i64) -> Option<i64> {
    let (y, m, d, ..) = oslo_civil(at + 36 * 3_600_000_000);
    oslo_midnight(&format!("{y:04}-{m:02}-{d:02}"))
}

async fn audit_page(State(app): State<Arc<App>>, ctx: Ctx, Query(q): Query<LogQuery>) -> Response {
    let (user, token) = match only(&app, &ctx, Role::Auditor, "audit.read").await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let lang = ctx.lang;
    let filter = q.filter();
    let outcome = if filter.is_ok() { "allowed" } else { "failed" };
    if let Err(e) = app
        .audit(&user, "audit.read", &q.audited_subject("audit"), "", outcome)
        .await
    {
        return internal(lang, e);
    }
    let (per, page) = (q.per(), q.page());
    let found = match &filter {
        Err(_) => None,
        Ok(f) => {
            let total = match app.audit.count(f).await {
                Ok(n) => n,
                Err(e) => return internal(lang, e),
            };
            let offset = (page - 1).saturating_mul(u64::from(per));
            let entries = match app.audit.search(f, offset, per).await {
                Ok(e) => e,
                Err(e) => return internal(lang, e),
            };
            Some((total, offset, entries))
        }
    };
    let error = filter.as_ref().err();
    let body = html! {
        p { (lang.m(cat::audit::INTRO)) }
        form method="post" action="/audit/verify" {
            input type="hidden" name="csrf" value=(csrf_of(&token));
            button type="submit" { (lang.m(cat::audit::VERIFY_THE_WHOLE_CHAIN)) }
        }
        @if let Some(e) = error {
            div role="alert" .error-summary {
                p { (lang.m(cat::audit::FIX_FILTERS)) }
                ul { li { a href={ "#f-" (e.field) } { (lang.m(e.msg)) } } }
            }
        }
        (filter_form(lang, &q, error))
        @if let Some((total, offset, entries)) = &found {
            (results(lang, &q, *total, *offset, entries))
        }
    };
    let mut r = ctx.page(lang.m(cat::audit::AUDIT_LOG), body);
    if error.is_some() {
        *r.status_mut() = StatusCode::BAD_REQUEST;
    }
    r
}

/// One filter field's attributes when it is the wrong one.
fn invalid(error: Option<&FieldError>, field: &str) -> (Option<&'static str>, Option<String>) {
    match error {
        Some(e) if e.field == field => (Some("true"), Some(format!("f-{field}-error"))),
        _ => (None, None),
    }
}

fn filter_form(lang: Lang, q: &LogQuery, error: Option<&FieldError>) -> Markup {
    let mut actions: Vec<(&str, &str)> = ACTIONS.iter().map(|(c, m)| (*c, lang.m(*m))).collect();
    actions.sort_by(|a, b| a.1.cmp(b.1));
    let (from_bad, from_desc) = invalid(error, "from");
    let (to_bad, to_desc) = invalid(error, "to");
    let field_error = |field: &str| -> Markup {
        html! {
            @if let Some(e) = error.filter(|e| e.field == field) {
                p.field-error id={ "f-" (field) "-error" } { (lang.m(e.msg)) }
            }
        }
    };
    html! {
        form.filters method="get" action="/audit" role="search" aria-label=(lang.m(cat::audit::FILTERS)) {
            fieldset {
                legend { (lang.m(cat::audit::FILTERS)) }
                p { label for="f-actor" { (lang.m(cat::audit::F_ACTOR)) } " "
                    input #f-actor name="actor" value=(q.actor) autocomplete="off"; }
                p { label for="f-action" { (lang.m(cat::audit::F_ACTION)) } " "
                    select #f-action name="action" {
                        option value="" { (lang.m(cat::audit::F_ALL)) }
                        @for (code, label) in &actions {
                            option value=(code) selected[q.action == *code] { (label) }
                        }
                    }
                }
                p { label for="f-subject" { (lang.m(cat::audit::F_SUBJECT)) } " "
                    input #f-subject name="subject" value=(q.subject) aria-describedby="f-subject-hint" autocomplete="off";
                    br; span.muted #f-subject-hint { (lang.m(cat::audit::F_SUBJECT_HINT)) }
                }
                p { label for="f-outcome" { (lang.m(cat::audit::F_OUTCOME)) } " "
                    select #f-outcome name="outcome" {
                        option value="" { (lang.m(cat::audit::F_ALL)) }
                        @for (code, label) in OUTCOMES {
                            option value=(code) selected[q.outcome == *code] { (lang.m(*label)) }
                        }
                    }
                }
                p { label for="f-from" { (lang.m(cat::audit::F_FROM)) } " "
                    input #f-from type="date" name="from" value=(q.from) aria-invalid=[from_bad] aria-describedby=[from_desc];
                    (field_error("from"))
                }
                p { label for="f-to" { (lang.m(cat::audit::F_TO)) } " "
                    input #f-to type="date" name="to" value=(q.to) aria-invalid=[to_bad] aria-describedby=[to_desc];
                    (field_error("to"))
                }
                p { label for="f-per" { (lang.m(cat::audit::F_PER)) } " "
                    select #f-per name="per" {
                        @for n in [50u32, 100, 200] {
                            option value=(n) selected[q.per() == n] { (n) }
                        }
                    }
                }
                button type="submit" { (lang.m(cat::audit::F_APPLY)) } " "
                a href="/audit" { (lang.m(cat::audit::F_RESET)) }
            }
        }
    }
}

fn results(lang: Lang, q: &LogQuery, total: u64, offset: u64, entries: &[AuditEntry]) -> Markup {
    let filters = q.filters_query();
    let link = |page: u64| {
        if filters.is_empty() {
            format!("/audit?page={page}")
        } else {
            format!("/audit?{filters}&page={page}")
        }
    };
    let csv = if filters.is_empty() {
        "/audit.csv".to_owned()
    } else {
        format!("/audit.csv?{filters}")
    };
    let page = q.page();
    let last = offset + entries.len() as u64;
    html! {
        p role="status" #log-count {
            @if entries.is_empty() {
                (lang.m(cat::audit::NONE_MATCH))
            } @else {
                (lang.f(cat::audit::SHOWING, &[
                    ("first", &format::count(lang, offset + 1)),
                    ("last", &format::count(lang, last)),
                    ("total", &format::count(lang, total)),
                ]))
            }
        }
        p { a #csv href=(csv) download { (lang.m(cat::audit::DOWNLOAD_CSV)) } }
        @if !entries.is_empty() {
            table.log {
                thead { tr {
                    th scope="col" { (lang.m(cat::audit::COL_TIME)) }
                    th scope="col" { (lang.m(cat::audit::COL_WHO)) }
                    th scope="col" { (lang.m(cat::audit::COL_ROLE)) }
                    th scope="col" { (lang.m(cat::audit::COL_ACTION)) }
                    th scope="col" { (lang.m(cat::audit::COL_SUBJECT)) }
                    th scope="col" { (lang.m(cat::audit::COL_REASON)) }
                    th scope="col" { (lang.m(cat::audit::COL_OUTCOME)) }
                    th scope="col" { (lang.m(cat::audit::COL_SEQ)) }
                } }
                tbody {
                    @for e in entries {
                        @let ev = &e.event;
                        tr data-seq=(e.seq) {
                            td { (format::when_s(lang, e.at_us)) }
                            td {
                                @if ev.actor.is_empty() || ev.actor == "-" {
                                    "–"
                                } @else {
                                    a href={ "/audit?actor=" (urlencode(&ev.actor)) } title=(lang.m(cat::audit::FILTER_BY_ACTOR)) { (ev.actor) }
                                }
                            }
                            td { (coded(lang, role_label(lang, &ev.role), &ev.role)) }
                            td data-action=(ev.action) { (coded(lang, action_label(lang, &ev.action), &ev.action)) }
                            td {
                                @if ev.subject.is_empty() || ev.subject == "-" {
                                    "–"
                                } @else {
                                    a href={ "/audit?subject=" (urlencode(&ev.subject)) } title=(lang.m(cat::audit::FILTER_BY_SUBJECT)) {
                                        (subject_text(lang, &ev.subject))
                                    }
                                }
                            }
                            td { (reason_text(lang, &ev.reason)) }
                            td data-outcome=(ev.outcome) {
                                @let label = coded(lang, outcome_label(lang, &ev.outcome), &ev.outcome);
                                @if ev.outcome == "refused" || ev.outcome == "broken" { strong.flag { (label) } } @else { (label) }
                            }
                            td { (e.seq) }
                        }
                    }
                }
            }
        }
        @if page > 1 || last < total {
            nav.pager aria-label=(lang.m(cat::audit::PAGES)) {
                @if page > 1 { a rel="prev" href=(link(page - 1)) { (lang.m(cat::audit::PREVIOUS)) } " " }
                @if last < total { a rel="next" href=(link(page + 1)) { (lang.m(cat::audit::NEXT)) } }
            }
        }
    }
}

/// A label, or for a code this service does not know, "ukjent kode" with
/// the code itself (an auditor must still see what was written).
fn coded(lang: Lang, label: Option<&'static str>, code: &str) -> Markup {
    html! {
        @match label {
            Some(l) => (l),
            None => { (lang.m(cat::audit::UNKNOWN_CODE)) " " code { (code) } },
        }
    }
}

/// `/audit.csv?…`: the entries the filters select, newest first, as a
/// download (codes and labels both, times in Oslo time with their offset).
async fn audit_csv(State(app): State<Arc<App>>, ctx: Ctx, Query(q): Query<LogQuery>) -> Response {
    let (user, _) = match only(&app, &ctx, Role::Auditor, "audit.export").await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let lang = ctx.lang;
    let subject = q.audited_subject("audit.csv");
    let filter = match q.filter() {
        Ok(f) => f,
        Err(e) => {
            if let Err(err) = app.audit(&user, "audit.export", &subject, "", "failed").await {
                return internal(lang, err);
            }
            return ctx.error(StatusCode::BAD_REQUEST, e.msg);
        }
    };
    let total = match app.audit.count(&filter).await {
        Ok(n) => n,
        Err(e) => return internal(lang, e),
    };
    if total > CSV_MAX {
        if let Err(e) = app
            .audit(&user, "audit.export", &subject, "too many entries", "failed")
            .await
        {
            return internal(lang, e);
        }
        let text = lang.f(cat::audit::TOO_MANY_FOR_CSV, &[("max", &format::count(lang, CSV_MAX))]);
        let mut r = ctx.page(lang.m(cat::audit::AUDIT_LOG), html! { p role="alert" { (text) } });
        *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
        return r;
    }
    // Audited before it is read, like every other read.
    if let Err(e) = app
        .audit(&user, "audit.export", &subject, &format!("{total} entries"), "allowed")
        .await
    {
        return internal(lang, e);
    }
    let mut out = String::from("seq,time_oslo,actor,role,action,action_label,subject,reason,outcome,outcome_label\r\n");
    let mut offset = 0u64;
    loop {
        let page = match app.audit.search(&filter, offset, 5_000).await {
            Ok(p) => p,
            Err(e) => return internal(lang, e),
        };
        if page.is_empty() {
            break;
        }
        offset += page.len() as u64;
        for e in &page {
            let ev = &e.event;
            let row = [
                e.seq.to_string(),
                oslo_iso(e.at_us),
                ev.actor.clone(),
                ev.role.clone(),
                ev.action.clone(),
                action_label(lang, &ev.action).unwrap_or("").to_owned(),
                ev.subject.clone(),
                ev.reason.clone(),
                ev.outcome.clone(),
                outcome_label(lang, &ev.outcome).unwrap_or("").to_owned(),
            ];
            let fields: Vec<String> = row.iter().map(|f| crate::csv::field(f)).collect();
            out.push_str(&fields.join(","));
            out.push_str("\r\n");
        }
        if offset >= total.max(1) && page.len() < 5_000 {
            break;
        }
    }
    let mut r = (StatusCode::OK, out).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"audit-log.csv\""),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// `2026-12-07T10:41:05+01:00`: Oslo time with its offset, for a file a
/// program may read.
fn oslo_iso(us: i64) -> String {
    let (y, m, d, h, mi, s) = oslo_civil(us);
    let off = oslo_offset_s(us) / 3600;
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}+{off:02}:00")
}

/// One problem of a verification, in the page language.
fn finding(lang: Lang, f: &opptak_audit::Finding) -> String {
    use opptak_audit::Finding as F;
    match f {
        F::KeyNotPinned { key_id } => lang.f(cat::audit::V_KEY_NOT_PINNED, &[("key", key_id)]),
        F::KeyReplaced { key_id } => lang.f(cat::audit::V_KEY_REPLACED, &[("key", key_id)]),
        F::KeyUnopenable { key_id } => lang.f(cat::audit::V_KEY_UNOPENABLE, &[("key", key_id)]),
        F::CheckpointForged { seq } => lang.f(cat::audit::V_CHECKPOINT_FORGED, &[("seq", &seq.to_string())]),
        F::Deleted { from, to } => lang.f(
            cat::audit::V_DELETED,
            &[("from", &from.to_string()), ("to", &to.to_string())],
        ),
        F::Reordered { seq } => lang.f(cat::audit::V_REORDERED, &[("seq", &seq.to_string())]),
        F::Altered { seq } => lang.f(cat::audit::V_ALTERED, &[("seq", &seq.to_string())]),
        F::Rewritten { seq } => lang.f(cat::audit::V_REWRITTEN, &[("seq", &seq.to_string())]),
        F::DeletedFromEnd { seq } => lang.f(cat::audit::V_DELETED_FROM_END, &[("seq", &seq.to_string())]),
    }
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
    let every = app.audit.checkpoint_every.to_string();
    ctx.page(
        lang.m(cat::audit::AUDIT_LOG_VERIFICATION),
        html! {
            @if report.ok() {
                p role="status" { strong { (lang.m(cat::audit::THE_CHAIN_IS_INTACT)) } }
            } @else {
                p role="alert" class="flag" { (lang.m(cat::audit::THE_CHAIN_IS_BROKEN)) }
                ul.findings { @for f in &report.findings { li { (finding(lang, f)) } } }
            }
            p #checked { (lang.f(cat::audit::CHECKED, &[
                ("entries", &format::count(lang, report.entries)),
                ("checkpoints", &format::count(lang, report.checkpoints as u64)),
            ])) }
            p #checkpoints-explained { (lang.f(cat::audit::CHECKPOINTS_EXPLAINED, &[("every", &every)])) }
            @if report.checkpoints == 0 {
                p #no-checkpoints { (lang.m(cat::audit::NO_CHECKPOINTS_EXPLAINED)) }
            }
            @if let Some((seq, hash)) = &report.newest_checkpoint {
                p { (lang.f(cat::audit::NEWEST_CHECKPOINT, &[("seq", &seq.to_string())])) " " code { (hash) } }
            }
            @for s in &report.signers { p { (lang.m(cat::audit::SIGNED_BY)) " " code { (s) } } }
            p { a href="/audit" { (lang.m(cat::audit::BACK_TO_THE_LOG)) } }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_oslo_midnights() {
        // 2026-12-07 00:00 Oslo is 2026-12-06 23:00 UTC (winter).
        let dec = oslo_midnight("2026-12-07").expect("a date");
        assert_eq!(oslo_civil(dec), (2026, 12, 7, 0, 0, 0));
        assert_eq!(dec, (days_from_civil(2026, 12, 6) * 86_400 + 23 * 3600) * 1_000_000);
        assert_eq!(oslo_midnight("07.12.2026"), Some(dec));
        // Summer: 22:00 UTC the day before.
        let jul = oslo_midnight("2026-07-01").expect("a date");
        assert_eq!(jul, (days_from_civil(2026, 6, 30) * 86_400 + 22 * 3600) * 1_000_000);
        // The day summer time starts has 23 hours.
        let start = oslo_midnight("2026-03-29").expect("a date");
        assert_eq!(oslo_midnight_after(start).expect("a date") - start, 23 * 3_600_000_000);
        assert_eq!(oslo_midnight("2026-02-31"), None);
        assert_eq!(oslo_midnight("yesterday"), None);
    }

    #[test]
    fn every_action_has_one_label() {
        let mut codes: Vec<&str> = ACTIONS.iter().map(|(c, _)| *c).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), ACTIONS.len());
        assert_eq!(outcome_label(Lang::Nb, "failed"), Some("mislyktes (skjemafeil e.l.)"));
        assert_eq!(outcome_label(Lang::Nb, "refused"), Some("avvist (tilgang nektet)"));
    }
}
