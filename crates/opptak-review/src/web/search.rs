//! The call search of compliance and QA (issue 18): find a call by date
//! range (Oslo dates), advisor, desk, service, customer reference, call id
//! and review status, then open it (the call page asks compliance why,
//! [`super::reason`]).
//!
//! - `GET /search`: the form; `GET /search?id=…[&page=&dir=&per=]`: the
//!   form filled in and one page of results (start, advisor, desk, service,
//!   length, status; never content), newest first unless `dir=asc`.
//! - `POST /search`: the filters are kept on the server for the session
//!   (table `saved_searches`) and the answer is 303 to `/search?id=…`, so a
//!   customer reference never reaches a URL, browser history or a proxy log.
//!   A wrong filter (a date that is not one, a call id that cannot be one)
//!   shows the form again with the input kept. The matches are counted
//!   here, once (at most 10,000), and kept with the search: a results page
//!   then costs one index walk to its end, however many calls match.
//!
//! Compliance searches every call. QA searches the calls in its sample only
//! (what it may open), without the customer reference: QA assesses the KI
//! output, it has no business looking for a customer. Other roles are
//! refused. Every search is written to the audit log when it is submitted
//! (`calls.search`) with its filters and the number of matches, the
//! customer reference included: the log is what shows who looked for which
//! customer, and only auditors read it. Paging through it appends nothing:
//! a page lists facts without content, as the queues do.

use super::{cat, csrf_of, format, internal, labels, urlencode, App, Ctx, Lang, Msg};
use crate::identity::{Role, User};
use axum::extract::{Form, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use maud::{html, Markup};
use opptak_domain::model::{CallId, Desk, ServiceCategory};
use opptak_domain::time::Day;
use opptak_store::search::{CallQuery, CallStatus, Found, SavedSearch, COUNT_CAP};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

pub(super) fn routes() -> Router<Arc<App>> {
    Router::new().route("/search", get(search_page).post(submit))
}

const DESKS: [Desk; 4] = [
    Desk::CustomerCenter,
    Desk::Markets,
    Desk::PrivateBanking,
    Desk::Corporate,
];
const SERVICES: [ServiceCategory; 6] = [
    ServiceCategory::InvestmentAdvice,
    ServiceCategory::Loan,
    ServiceCategory::Savings,
    ServiceCategory::Insurance,
    ServiceCategory::Payments,
    ServiceCategory::General,
];

/// Results per page unless `per=` says otherwise (at most [`MAX_PER`]).
const PER: u32 = 50;
const MAX_PER: u32 = 200;

/// Who may search.
pub(crate) fn searches(role: Role) -> bool {
    matches!(role, Role::Compliance | Role::Qa)
}

/// The filters as typed (and as kept, as JSON, behind a search id).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub(crate) struct Filters {
    from: String,
    to: String,
    advisor: String,
    desk: String,
    service: String,
    customer: String,
    call: String,
    status: String,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct SubmitForm {
    csrf: String,
    #[serde(flatten)]
    filters: Filters,
}

/// What is wrong with the typed filters, per field.
#[derive(Default)]
struct Problems {
    from: Option<Msg>,
    to: Option<Msg>,
    call: Option<Msg>,
    other: Option<Msg>,
}

impl Problems {
    fn any(&self) -> bool {
        self.from.is_some() || self.to.is_some() || self.call.is_some() || self.other.is_some()
    }
}

/// A `YYYY-MM-DD` date (what `<input type="date">` sends).
fn parse_day(date: &str) -> Option<Day> {
    let mut parts = date.trim().splitn(3, '-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: u32 = parts.next()?.parse().ok()?;
    let d: u32 = parts.next()?.parse().ok()?;
    Day::from_ymd(y, m, d)
}

/// The µs of the Oslo midnight that starts `day`.
fn oslo_midnight(day: Day) -> i64 {
    let utc_midnight = day.days_since_epoch() * 86_400_000_000;
    // Oslo is one or two hours ahead: its midnight is the evening before in
    // UTC, with the offset in force then.
    let offset = opptak_domain::time::oslo_offset_s(utc_midnight - 3_600_000_000);
    utc_midnight - offset * 1_000_000
}

impl Filters {
    fn trimmed(mut self, role: Role) -> Filters {
        for v in [
            &mut self.from,
            &mut self.to,
            &mut self.advisor,
            &mut self.desk,
            &mut self.service,
            &mut self.customer,
            &mut self.call,
            &mut self.status,
        ] {
            *v = v.trim().chars().take(100).collect();
        }
        if role != Role::Compliance {
            self.customer.clear();
        }
        self
    }

    /// The store's query (paging aside), or what is wrong.
    fn query(&self, role: Role) -> Result<CallQuery, Problems> {
        let mut p = Problems::default();
        let mut q = CallQuery {
            sampled_only: role == Role::Qa,
            ..CallQuery::default()
        };
        let date = |s: &str, bad: &mut Option<Msg>| {
            if s.is_empty() {
                return None;
            }
            let day = parse_day(s);
            if day.is_none() {
                *bad = Some(cat::search::NOT_A_DATE);
            }
            day
        };
        q.from_us = date(&self.from, &mut p.from).map(oslo_midnight);
        // Up to and including the last day.
        q.until_us = date(&self.to, &mut p.to).map(|d| oslo_midnight(d.plus(1)));
        if let (Some(a), Some(b)) = (q.from_us, q.until_us) {
            if a >= b {
                p.to = Some(cat::search::THE_LAST_DAY_IS_BEFORE_THE_FIRST);
            }
        }
        let some = |s: &String| (!s.is_empty()).then(|| s.clone());
        q.advisor_id = some(&self.advisor);
        q.customer_ref = some(&self.customer);
        if !self.call.is_empty() {
            match CallId::parse(&self.call) {
                Ok(id) => q.call_id = Some(id.to_string()),
                Err(_) => p.call = Some(cat::search::NOT_A_CALL_ID),
            }
        }
        if !self.desk.is_empty() {
            match Desk::parse(&self.desk) {
                Some(d) => q.desk = Some(d.as_str().into()),
                None => p.other = Some(cat::search::UNKNOWN_FILTER_VALUE),
            }
        }
        if !self.service.is_empty() {
            match ServiceCategory::parse(&self.service) {
                Some(s) => q.service_category = Some(s.as_str().into()),
                None => p.other = Some(cat::search::UNKNOWN_FILTER_VALUE),
            }
        }
        if !self.status.is_empty() {
            match CallStatus::parse(&self.status) {
                Some(s) => q.status = Some(s),
                None => p.other = Some(cat::search::UNKNOWN_FILTER_VALUE),
            }
        }
        if p.any() {
            Err(p)
        } else {
            Ok(q)
        }
    }

    /// The filters for the audit log: every one that is set, the customer
    /// reference included.
    fn summary(&self) -> String {
        [
            ("from", &self.from),
            ("to", &self.to),
            ("advisor", &self.advisor),
            ("desk", &self.desk),
            ("service", &self.service),
            ("customer", &self.customer),
            ("call", &self.call),
            ("status", &self.status),
        ]
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
    }
}

fn shown(lang: Lang, problem: Option<Msg>) -> Option<&'static str> {
    problem.map(|m| lang.m(m))
}

fn status_label(lang: Lang, s: CallStatus) -> &'static str {
    lang.m(match s {
        CallStatus::Waiting => cat::search::STATUS_WAITING,
        CallStatus::Approved => cat::search::STATUS_APPROVED,
        CallStatus::Rejected => cat::search::STATUS_REJECTED,
        CallStatus::KiOff => cat::search::STATUS_KI_OFF,
        CallStatus::NoKi => cat::search::STATUS_NO_KI,
    })
}

#[derive(Deserialize)]
struct PageQuery {
    id: Option<String>,
    page: Option<u32>,
    per: Option<u32>,
    dir: Option<String>,
}

/// The user, or the refusal (audited) for a role that does not search.
async fn searcher<'a>(app: &App, ctx: &'a Ctx) -> Result<(&'a User, &'a str), Response> {
    let (user, token) = ctx.page_user()?;
    if !searches(user.role) {
        if let Err(e) = app.audit(user, "calls.search", "calls", "", "refused").await {
            return Err(internal(ctx.lang, e));
        }
        return Err(ctx.error(StatusCode::FORBIDDEN, cat::search::YOUR_ROLE_DOES_NOT_SEARCH_CALLS));
    }
    Ok((user, token))
}

async fn search_page(State(app): State<Arc<App>>, ctx: Ctx, Query(q): Query<PageQuery>) -> Response {
    let (user, token) = match searcher(&app, &ctx).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let lang = ctx.lang;
    let advisors = match advisor_names(&app).await {
        Ok(a) => a,
        Err(e) => return internal(lang, e),
    };
    let Some(id) = q.id.filter(|i| !i.is_empty()) else {
        return render(
            &ctx,
            user,
            token,
            &Filters::default(),
            &Problems::default(),
            None,
            &advisors,
        );
    };
    let saved = match saved_search(&app, &id, &crate::identity::token_hash(token)).await {
        Ok(s) => s,
        Err(e) => return internal(lang, e),
    };
    let Some((saved, filters)) = saved.and_then(|s| serde_json::from_str::<Filters>(&s.filters).ok().map(|f| (s, f)))
    else {
        let p = Problems {
            other: Some(cat::search::THE_SEARCH_HAS_EXPIRED),
            ..Problems::default()
        };
        let mut r = render(&ctx, user, token, &Filters::default(), &p, None, &advisors);
        *r.status_mut() = StatusCode::NOT_FOUND;
        return r;
    };
    let filters = filters.trimmed(user.role);
    let mut query = match filters.query(user.role) {
        Ok(q) => q,
        Err(p) => return render(&ctx, user, token, &filters, &p, None, &advisors),
    };
    let per = q.per.unwrap_or(PER).clamp(1, MAX_PER);
    let last_page = (COUNT_CAP as u32).div_ceil(per);
    let page = q.page.unwrap_or(1).clamp(1, last_page);
    query.oldest_first = q.dir.as_deref() == Some("asc");
    query.limit = per;
    query.offset = u64::from(page - 1) * u64::from(per);
    // The count is the one made when the search was submitted: a page
    // costs an index walk to its end, whatever the number of matches.
    let found = match app.search.page_of_calls(&query).await {
        Ok(calls) => Found {
            calls,
            total: saved.total,
            capped: saved.capped,
        },
        Err(e) => return internal(lang, e),
    };
    // No audit append per page: the search was audited when it was
    // submitted, with its filters, and a page of it lists facts without
    // content, as the queues do.
    let results = Results {
        id: &id,
        found: &found,
        page,
        per,
        oldest_first: query.oldest_first,
    };
    render(
        &ctx,
        user,
        token,
        &filters,
        &Problems::default(),
        Some(results),
        &advisors,
    )
}

async fn submit(State(app): State<Arc<App>>, ctx: Ctx, Form(f): Form<SubmitForm>) -> Response {
    let (user, token) = match searcher(&app, &ctx).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let lang = ctx.lang;
    if let Err(r) = app
        .check_form(&ctx, (user, token), &f.csrf, "calls.search", "calls")
        .await
    {
        return r;
    }
    let filters = f.filters.trimmed(user.role);
    let query = match filters.query(user.role) {
        Ok(q) => q,
        Err(p) => {
            if let Err(e) = app
                .audit(user, "calls.search", "calls", &filters.summary(), "failed")
                .await
            {
                return internal(lang, e);
            }
            let advisors = match advisor_names(&app).await {
                Ok(a) => a,
                Err(e) => return internal(lang, e),
            };
            let mut r = render(&ctx, user, token, &filters, &p, None, &advisors);
            *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            return r;
        }
    };
    let (total, capped) = match app.search.count_calls(&query).await {
        Ok(c) => c,
        Err(e) => return internal(lang, e),
    };
    let what = format!("{} hits={total}{}", filters.summary(), if capped { "+" } else { "" });
    if let Err(e) = app.audit(user, "calls.search", "calls", what.trim(), "allowed").await {
        return internal(lang, e);
    }
    let id = hex::encode(rand::random::<[u8; 16]>());
    let json = match serde_json::to_string(&filters) {
        Ok(j) => j,
        Err(e) => return internal(lang, e),
    };
    let now = app.edges.vault.clock().now_us();
    if let Err(e) = app
        .search
        .save_search(
            &id,
            &crate::identity::token_hash(token),
            &SavedSearch {
                filters: json,
                total,
                capped,
                created_at_us: now,
            },
        )
        .await
    {
        return internal(lang, e);
    }
    Redirect::to(&format!("/search?id={id}")).into_response()
}

/// The most saved searches kept in memory; past it the memory starts over.
const SAVED_KEPT: usize = 10_000;

/// Saved searches read before, by id and session. A saved search never
/// changes once submitted, and it is only reached through a session checked
/// on every request, so a kept copy cannot outlive its session's rights:
/// paging through results costs no read of it.
#[derive(Default)]
pub(crate) struct SavedCache(std::sync::Mutex<HashMap<(String, String), SavedSearch>>);

/// The saved search `id` of the session `session_sha256`, if it has one.
async fn saved_search(app: &App, id: &str, session_sha256: &str) -> anyhow::Result<Option<SavedSearch>> {
    let key = (id.to_owned(), session_sha256.to_owned());
    if let Some(s) = app.saved.0.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
        return Ok(Some(s.clone()));
    }
    let Some(saved) = app.search.saved_search(id, session_sha256).await? else {
        return Ok(None);
    };
    let mut kept = app.saved.0.lock().unwrap_or_else(|p| p.into_inner());
    if kept.len() >= SAVED_KEPT {
        kept.clear();
    }
    kept.insert(key, saved.clone());
    Ok(Some(saved))
}

/// How long the advisor list of the search form is reused: a new advisor
/// appears in the filter at most this late (the search itself is by id).
const ADVISORS_FOR: std::time::Duration = std::time::Duration::from_secs(30);

/// The advisors by name, read at most every [`ADVISORS_FOR`] (every results
/// page shows the filter; reading every user per page cost a third of it).
#[derive(Default)]
pub(crate) struct AdvisorCache(std::sync::Mutex<Option<(std::time::Instant, Advisors)>>);

/// Advisors' ids and names, by name.
type Advisors = Arc<Vec<(String, String)>>;

/// Advisors by id with their names, for the advisor filter and the column.
async fn advisor_names(app: &App) -> anyhow::Result<Advisors> {
    let cached = app
        .advisors
        .0
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .filter(|(at, _)| at.elapsed() < ADVISORS_FOR)
        .map(|(_, list)| list.clone());
    if let Some(list) = cached {
        return Ok(list);
    }
    let list = Arc::new(read_advisor_names(app).await?);
    *app.advisors.0.lock().unwrap_or_else(|p| p.into_inner()) = Some((std::time::Instant::now(), list.clone()));
    Ok(list)
}

async fn read_advisor_names(app: &App) -> anyhow::Result<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = app
        .identity
        .users()
        .await?
        .into_iter()
        .filter(|(u, _)| u.role == Role::Advisor)
        .map(|(u, _)| (u.user_id, u.display_name))
        .collect();
    out.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(out)
}

struct Results<'a> {
    id: &'a str,
    found: &'a Found,
    page: u32,
    per: u32,
    oldest_first: bool,
}

impl Results<'_> {
    fn link(&self, page: u32, oldest_first: bool) -> String {
        let mut s = format!("/search?id={}&page={page}", urlencode(self.id));
        if self.per != PER {
            s.push_str(&format!("&per={}", self.per));
        }
        if oldest_first {
            s.push_str("&dir=asc");
        }
        s
    }
}

fn render(
    ctx: &Ctx,
    user: &User,
    token: &str,
    f: &Filters,
    p: &Problems,
    results: Option<Results<'_>>,
    advisors: &[(String, String)],
) -> Response {
    let lang = ctx.lang;
    let body = html! {
        p { (lang.m(if user.role == Role::Qa { cat::search::QA_SEARCHES_ITS_SAMPLE } else { cat::search::SEARCH_INTRO })) }
        @if p.any() {
            div.error-summary role="alert" {
                p { strong { (lang.m(cat::search::CHECK_THE_FILTERS)) } }
                ul {
                    @if let Some(m) = shown(lang, p.from) { li { a href="#from" { (m) } } }
                    @if let Some(m) = shown(lang, p.to) { li { a href="#to" { (m) } } }
                    @if let Some(m) = shown(lang, p.call) { li { a href="#call" { (m) } } }
                    @if let Some(m) = shown(lang, p.other) { li { (m) } }
                }
            }
        }
        (form(lang, user, token, f, p, advisors))
        @if let Some(r) = &results { (table(lang, r, advisors)) }
    };
    ctx.page(lang.m(cat::search::FIND_A_CALL), body)
}

fn field_error(lang: Lang, id: &str, problem: Option<Msg>) -> Markup {
    html! {
        @if let Some(m) = shown(lang, problem) { p.field-error id={ (id) "-error" } { (m) } }
    }
}

fn form(lang: Lang, user: &User, token: &str, f: &Filters, p: &Problems, advisors: &[(String, String)]) -> Markup {
    let bad = |x: Option<Msg>| x.map(|_| "true");
    let described = |id: &str, x: Option<Msg>| x.map(|_| format!("{id}-error"));
    html! {
        form.search method="post" action="/search" {
            input type="hidden" name="csrf" value=(csrf_of(token));
            fieldset {
                legend { (lang.m(cat::search::FILTERS)) }
                p {
                    label for="from" { (lang.m(cat::search::FIRST_DAY)) } " "
                    input #from type="date" name="from" value=(f.from) aria-invalid=[bad(p.from)] aria-describedby=[described("from", p.from)];
                    " "
                    label for="to" { (lang.m(cat::search::LAST_DAY)) } " "
                    input #to type="date" name="to" value=(f.to) aria-invalid=[bad(p.to)] aria-describedby=[described("to", p.to)];
                    (field_error(lang, "from", p.from))
                    (field_error(lang, "to", p.to))
                }
                p {
                    label for="advisor" { (lang.m(cat::search::ADVISOR)) } " "
                    select #advisor name="advisor" {
                        option value="" { (lang.m(cat::search::ANY)) }
                        @for (id, name) in advisors {
                            option value=(id) selected[f.advisor == *id] { (name) }
                        }
                    }
                    " "
                    label for="desk" { (lang.m(cat::search::DESK)) } " "
                    select #desk name="desk" {
                        option value="" { (lang.m(cat::search::ANY)) }
                        @for d in DESKS {
                            option value=(d.as_str()) selected[f.desk == d.as_str()] { (labels::desk(lang, d.as_str())) }
                        }
                    }
                    " "
                    label for="service" { (lang.m(cat::search::SERVICE)) } " "
                    select #service name="service" {
                        option value="" { (lang.m(cat::search::ANY)) }
                        @for s in SERVICES {
                            option value=(s.as_str()) selected[f.service == s.as_str()] { (labels::service(lang, s.as_str())) }
                        }
                    }
                    " "
                    label for="status" { (lang.m(cat::search::STATUS)) } " "
                    select #status name="status" {
                        option value="" { (lang.m(cat::search::ANY)) }
                        @for s in CallStatus::ALL {
                            option value=(s.as_str()) selected[f.status == s.as_str()] { (status_label(lang, s)) }
                        }
                    }
                }
                p {
                    @if user.role == Role::Compliance {
                        label for="customer" { (lang.m(cat::search::CUSTOMER_REFERENCE)) } " "
                        input #customer type="text" name="customer" size="20" autocomplete="off" value=(f.customer);
                        " "
                    }
                    label for="call" { (lang.m(cat::search::CALL_ID)) } " "
                    input #call type="text" name="call" size="30" autocomplete="off" value=(f.call)
                        aria-invalid=[bad(p.call)] aria-describedby=[described("call", p.call)];
                    (field_error(lang, "call", p.call))
                }
                button type="submit" { (lang.m(cat::search::SEARCH)) }
            }
        }
    }
}

fn table(lang: Lang, r: &Results<'_>, advisors: &[(String, String)]) -> Markup {
    let found = r.found;
    let first = (r.page - 1) * r.per + 1;
    let last = first - 1 + found.calls.len() as u32;
    let total = if found.capped {
        lang.f(cat::search::MORE_THAN_N, &[("n", &format::count(lang, COUNT_CAP))])
    } else {
        format::count(lang, found.total)
    };
    let name = |id: &str| {
        advisors
            .iter()
            .find(|(a, _)| a == id)
            .map_or_else(|| id.to_owned(), |(_, n)| n.clone())
    };
    let (sort, next_dir) = if r.oldest_first {
        ("ascending", false)
    } else {
        ("descending", true)
    };
    let has_next = u64::from(first - 1 + r.per) < found.total.min(COUNT_CAP) && !found.calls.is_empty();
    html! {
        h2 #results { (lang.m(cat::search::RESULTS)) }
        @if found.calls.is_empty() {
            p { (lang.m(cat::search::NO_CALLS_MATCH)) }
        } @else {
            p aria-live="polite" {
                (lang.f(cat::search::SHOWING_RANGE, &[
                    ("first", &format::count(lang, u64::from(first))),
                    ("last", &format::count(lang, u64::from(last))),
                    ("total", &total),
                ]))
            }
            table.results {
                caption.muted { (lang.m(cat::search::RESULTS_CAPTION)) }
                thead { tr {
                    th scope="col" { (lang.m(cat::search::CALL)) }
                    th scope="col" aria-sort=(sort) {
                        a href=(r.link(1, !next_dir)) { (lang.m(cat::search::STARTED)) " " (if r.oldest_first { "▲" } else { "▼" }) }
                    }
                    th scope="col" { (lang.m(cat::search::ADVISOR)) }
                    th scope="col" { (lang.m(cat::search::DESK)) }
                    th scope="col" { (lang.m(cat::search::SERVICE)) }
                    th scope="col" { (lang.m(cat::search::LENGTH)) }
                    th scope="col" { (lang.m(cat::search::STATUS)) }
                } }
                tbody {
                    @for c in &found.calls {
                        tr {
                            td { a href={ "/calls/" (c.call_id) } { (c.call_id) } }
                            td { (format::when(lang, c.started_at_us)) }
                            td { (name(&c.advisor_id)) }
                            td { (labels::desk(lang, &c.desk)) }
                            td { (labels::service(lang, &c.service_category)) }
                            td { (format::clock(c.frames as f64 / f64::from(c.sample_rate_hz.max(1)))) }
                            td { (status_label(lang, c.status)) }
                        }
                    }
                }
            }
            nav.paging aria-label=(lang.m(cat::search::PAGES)) {
                @if r.page > 1 { a rel="prev" href=(r.link(r.page - 1, r.oldest_first)) { (lang.m(cat::search::PREVIOUS)) } " " }
                @if has_next { a rel="next" href=(r.link(r.page + 1, r.oldest_first)) { (lang.m(cat::search::NEXT)) } }
            }
        }
    }
}
