//! The topic dashboard for internal reporting (R5): topic volumes per day
//! or ISO week, per desk or per channel (phone and the conversation
//! channels, issue 17), with trends, from the content-free index of
//! drafted KI calls and analysed conversations. Counts below `web.dashboard_k` are suppressed, with
//! complementary suppression so none can be worked out from the totals
//! ([`crate::dashboard`]); the chart is server-rendered SVG; the same
//! numbers download as CSV. Every query is audited with its parameters,
//! so differencing across overlapping queries can be traced.

use super::cat::Msg;
use super::qa::csv_response;
use super::{cat, format, labels, App, Ctx, Lang, Reply};
use crate::dashboard::{self, Breakdown, Cell, Dashboard, DashboardError, Day, Filter, Period, Table};
use crate::identity::{Role, User};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use maud::{html, Markup, PreEscaped};
use opptak_domain::model::Desk;
use serde::Deserialize;
use std::sync::Arc;

pub(super) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/dashboard", get(page))
        .route("/dashboard.csv", get(csv))
}

/// Everyone but the auditor (the audit log only) sees the aggregates.
pub(crate) fn reads_dashboard(role: Role) -> bool {
    role != Role::Auditor
}

const DESKS: [&str; 5] = [
    "customer_center",
    "markets",
    "private_banking",
    "corporate",
    "unspecified",
];

/// The page's own layout: the form's fields in a wrapping row, errors.
const STYLE: &str = "form.filters{display:flex;flex-wrap:wrap;gap:.5rem 1rem;align-items:end;margin-bottom:1rem}\
form.filters label{display:flex;flex-direction:column}td.n,th.n{text-align:right}\
.scroll{max-width:100%;overflow-x:auto}figure{margin:1rem 0}figure svg{max-width:100%;height:auto}";

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct Params {
    /// First day, `YYYY-MM-DD` (default: 7 weeks before today, or 13 days by day).
    from: Option<String>,
    /// Last day, `YYYY-MM-DD` (default: today, UTC).
    to: Option<String>,
    /// `week` (default) or `day`.
    period: Option<String>,
    /// One desk, or empty for all.
    desk: Option<String>,
    /// One channel (`phone`, `aino_chatbot`, `advisor_chat`,
    /// `secure_message`, `email`), or empty for all.
    channel: Option<String>,
    /// The second table's rows: `desk` (default) or `channel`.
    by: Option<String>,
}

/// A form field's problem: the field's name and what to say.
type Problem = (&'static str, Msg);

impl Params {
    fn text(v: &Option<String>) -> &str {
        v.as_deref().map(str::trim).unwrap_or("")
    }

    /// The filter these parameters ask for, or every field's problem.
    fn filter(&self, today: Day, k: u32) -> Result<Filter, Vec<Problem>> {
        let mut problems = Vec::new();
        let period = match Self::text(&self.period) {
            "" => Period::Week,
            s => Period::parse(s).unwrap_or_else(|_| {
                problems.push(("period", cat::dashboard::BAD_PERIOD));
                Period::Week
            }),
        };
        let breakdown = match Self::text(&self.by) {
            "" => Breakdown::Desk,
            s => Breakdown::parse(s).unwrap_or_else(|_| {
                problems.push(("by", cat::dashboard::BAD_BREAKDOWN));
                Breakdown::Desk
            }),
        };
        let desk = Self::text(&self.desk);
        if !desk.is_empty() && Desk::parse(desk).is_none() {
            problems.push(("desk", cat::dashboard::BAD_DESK));
        }
        let channel = Self::text(&self.channel);
        if !channel.is_empty() && !dashboard::CHANNELS.contains(&channel) {
            problems.push(("channel", cat::dashboard::BAD_CHANNEL));
        }
        let default_from = match period {
            Period::Week => today.plus(-7 * 7),
            Period::Day => today.plus(-13),
        };
        let mut day = |field: &'static str, v: &Option<String>, default: Day| match Self::text(v) {
            "" => Some(default),
            s => s
                .parse::<Day>()
                .map_err(|_| problems.push((field, cat::dashboard::BAD_DAY)))
                .ok(),
        };
        let (from, to) = (day("from", &self.from, default_from), day("to", &self.to, today));
        let (Some(from), Some(to)) = (from, to) else {
            return Err(problems);
        };
        let filter = match Filter::new(from, to, period, today) {
            Ok(f) => f,
            Err(DashboardError::EmptyRange { .. }) => {
                problems.push(("from", cat::dashboard::EMPTY_RANGE));
                return Err(problems);
            }
            Err(_) => {
                problems.push(("from", cat::dashboard::TOO_MANY_PERIODS));
                return Err(problems);
            }
        };
        if !problems.is_empty() {
            return Err(problems);
        }
        filter
            .with_desk(Some(desk.to_owned()))
            .with_channel(Some(channel.to_owned()))
            .with_breakdown(breakdown)
            .with_k(k)
            // A k below the minimum is the configuration's fault, refused at start-up.
            .map_err(|_| vec![("from", cat::dashboard::TOO_MANY_PERIODS)])
    }
}

/// May `user` read the dashboard? The refusal, audited, if not.
async fn access(app: &App, reply: Reply, user: &User) -> Result<(), Response> {
    if reads_dashboard(user.role) {
        return Ok(());
    }
    if let Err(e) = app.audit(user, "dashboard.read", "dashboard", "", "refused").await {
        return Err(reply.internal(e));
    }
    Err(reply.error(StatusCode::FORBIDDEN, cat::dashboard::YOUR_ROLE_HAS_NO_ACCESS_TO))
}

fn today(app: &App) -> Day {
    Day::from_days_since_epoch(app.edges.vault.clock().now_us().div_euclid(86_400_000_000))
}

/// The dashboard for a role that may read it; the refusal or a 400 for
/// bad parameters otherwise.
pub(crate) async fn build(app: &App, reply: Reply, user: &User, p: &Params) -> Result<Dashboard, Response> {
    access(app, reply, user).await?;
    match p.filter(today(app), app.edges.config.web.dashboard_k) {
        Ok(filter) => aggregate(app, reply, user, filter).await,
        Err(problems) => Err(reply.error(StatusCode::BAD_REQUEST, problems[0].1)),
    }
}

/// The audited aggregation of `filter`'s range.
async fn aggregate(app: &App, reply: Reply, user: &User, filter: Filter) -> Result<Dashboard, Response> {
    let subject = format!(
        "dashboard:{} {} {} {} by-{}",
        filter.range_label(),
        filter.period().as_str(),
        filter.desk().unwrap_or(dashboard::ALL),
        filter.channel().unwrap_or(dashboard::ALL),
        filter.breakdown().as_str()
    );
    if let Err(e) = app.audit(user, "dashboard.read", &subject, "", "allowed").await {
        return Err(reply.internal(e));
    }
    let rows = app
        .qa
        .topic_rows(&filter.first_day().to_string(), &filter.last_day().to_string())
        .await
        .map_err(|e| reply.internal(e))?;
    let rows: Vec<dashboard::TopicRow> = rows.into_iter().map(Into::into).collect();
    dashboard::aggregate(&rows, &filter).map_err(|e| reply.internal(e.into()))
}

/// A day as the page language writes dates (`07.12.2026` / `2026-12-07`).
fn day_name(lang: Lang, d: Day) -> String {
    let s = d.to_string();
    let parts: Vec<&str> = s.split('-').collect();
    match (lang, parts.as_slice()) {
        (Lang::Nb, [y, m, dd]) => format!("{dd}.{m}.{y}"),
        _ => s,
    }
}

/// A period column's name: a day, or `uke 48 2026`.
fn period_name(lang: Lang, label: &str) -> String {
    match label.split_once("-W") {
        Some((year, week)) => lang.f(
            cat::dashboard::WEEK_LABEL,
            &[("week", week.trim_start_matches('0')), ("year", year)],
        ),
        None => match label.parse::<Day>() {
            Ok(d) => day_name(lang, d),
            Err(_) => label.to_owned(),
        },
    }
}

/// The dashboard with names for people in place of codes: topics from the
/// taxonomy, desks and channels by name, periods in the page's language.
/// For showing only (the codes stay in the CSV and the API).
fn named(lang: Lang, app: &App, d: &Dashboard) -> Dashboard {
    let taxonomy = app.review.taxonomy();
    let topic = |t: &String| labels::topic(lang, taxonomy, t).to_owned();
    let by_channel = d.filter.breakdown() == Breakdown::Channel;
    let mut n = d.clone();
    n.by_period.rows = d.by_period.rows.iter().map(topic).collect();
    n.by_period.columns = d.by_period.columns.iter().map(|c| period_name(lang, c)).collect();
    for p in &mut n.periods {
        p.label = period_name(lang, &p.label);
    }
    n.by_desk.columns = d.by_desk.columns.iter().map(topic).collect();
    n.by_desk.rows = d
        .by_desk
        .rows
        .iter()
        .map(|r| {
            if by_channel {
                labels::channel(lang, r).to_owned()
            } else {
                labels::desk(lang, r).to_owned()
            }
        })
        .collect();
    for t in &mut n.trends {
        t.topic = topic(&t.topic);
    }
    // The chart's title names the desk.
    n.filter = d
        .filter
        .clone()
        .with_desk(d.filter.desk().map(|desk| labels::desk(lang, desk).to_owned()));
    n
}

/// The form with the values as typed and each field's problem.
fn form(lang: Lang, p: &Params, f: Option<&Filter>, problems: &[Problem]) -> Markup {
    let err = |field: &str| problems.iter().find(|(n, _)| *n == field).map(|(_, m)| *m);
    let typed = |v: &Option<String>, shown: Option<String>| {
        v.clone().filter(|s| !s.trim().is_empty()).or(shown).unwrap_or_default()
    };
    let from = typed(&p.from, f.map(|f| f.first_day().to_string()));
    let to = typed(&p.to, f.map(|f| f.last_day().to_string()));
    let period = typed(&p.period, f.map(|f| f.period().as_str().to_owned()));
    let desk = typed(&p.desk, f.and_then(|f| f.desk().map(str::to_owned)));
    let channel = typed(&p.channel, f.and_then(|f| f.channel().map(str::to_owned)));
    let by = typed(&p.by, f.map(|f| f.breakdown().as_str().to_owned()));
    let all = lang.m(cat::dashboard::ALL_OF_THEM);
    let period_options = [
        ("week", lang.m(cat::dashboard::WEEK)),
        ("day", lang.m(cat::dashboard::DAY)),
    ];
    let desk_options: Vec<(&str, &str)> = std::iter::once(("", all))
        .chain(DESKS.iter().map(|d| (*d, labels::desk(lang, d))))
        .collect();
    let channel_options: Vec<(&str, &str)> = std::iter::once(("", all))
        .chain(dashboard::CHANNELS.iter().map(|c| (*c, labels::channel(lang, c))))
        .collect();
    let by_options = [
        ("desk", lang.m(cat::dashboard::BY_DESK)),
        ("channel", lang.m(cat::dashboard::BY_CHANNEL)),
    ];
    let invalid = |field: &str| err(field).map(|_| "true");
    let described = |field: &str| err(field).map(|_| format!("{field}-error"));
    let error = |field: &str| {
        html! { @if let Some(m) = err(field) { span.field-error id={ (field) "-error" } { (lang.m(m)) } } }
    };
    html! {
        @if !problems.is_empty() {
            div.errors.error-summary role="alert" {
                p { strong { (lang.m(cat::dashboard::NOT_SHOWN)) } }
                ul { @for (field, m) in problems { li { a href={ "#" (field) } { (lang.m(*m)) } } } }
            }
        }
        form.filters method="get" action="/dashboard" {
            label { (lang.m(cat::dashboard::FROM))
                input #from type="date" name="from" value=(from) aria-invalid=[invalid("from")] aria-describedby=[described("from")];
                (error("from")) }
            label { (lang.m(cat::dashboard::TO))
                input #to type="date" name="to" value=(to) aria-invalid=[invalid("to")] aria-describedby=[described("to")];
                (error("to")) }
            (choice(lang.m(cat::dashboard::PERIOD), "period", &period_options, &period, err("period").map(|m| lang.m(m))))
            (choice(lang.m(cat::dashboard::DESK), "desk", &desk_options, &desk, err("desk").map(|m| lang.m(m))))
            (choice(lang.m(cat::dashboard::CHANNEL), "channel", &channel_options, &channel, err("channel").map(|m| lang.m(m))))
            (choice(lang.m(cat::dashboard::BROKEN_DOWN_BY), "by", &by_options, &by, err("by").map(|m| lang.m(m))))
            button type="submit" { (lang.m(cat::dashboard::SHOW)) }
        }
    }
}

/// A labelled list of `options` (`(value, label)`), `chosen` selected,
/// with its field error.
fn choice(label: &str, name: &str, options: &[(&str, &str)], chosen: &str, error: Option<&str>) -> Markup {
    let id = format!("{name}-error");
    html! {
        label { (label)
            select id=(name) name=(name) aria-invalid=[error.map(|_| "true")] aria-describedby=[error.map(|_| id.as_str())] {
                @for (value, text) in options { option value=(value) selected[*value == chosen] { (text) } }
            }
            @if let Some(m) = error { span.field-error id=(id) { (m) } }
        }
    }
}

async fn page(State(app): State<Arc<App>>, ctx: Ctx, Query(p): Query<Params>) -> Response {
    let (user, _) = match ctx.page_user() {
        Ok(u) => u,
        Err(r) => return r,
    };
    let lang = ctx.lang;
    let reply = Reply::Html(lang);
    if let Err(r) = access(&app, reply, user).await {
        return r;
    }
    let filter = match p.filter(today(&app), app.edges.config.web.dashboard_k) {
        Ok(f) => f,
        Err(problems) => {
            let mut r = ctx.page(
                lang.m(cat::dashboard::CALL_TOPICS),
                html! { style { (STYLE) } (form(lang, &p, None, &problems)) },
            );
            *r.status_mut() = StatusCode::BAD_REQUEST;
            return r;
        }
    };
    let raw = match aggregate(&app, reply, user, filter).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let f = &raw.filter;
    let csv = format!(
        "/dashboard.csv?from={}&to={}&period={}&desk={}&channel={}&by={}",
        f.first_day(),
        f.last_day(),
        f.period().as_str(),
        f.desk().unwrap_or(""),
        f.channel().unwrap_or(""),
        f.breakdown().as_str()
    );
    let by_channel = f.breakdown() == Breakdown::Channel;
    let d = named(lang, &app, &raw);
    let caption = lang.f(
        cat::dashboard::CAPTION,
        &[
            ("from", &day_name(lang, f.first_day())),
            ("to", &day_name(lang, f.last_day())),
            (
                "desk",
                f.desk()
                    .map_or(lang.m(cat::dashboard::ALL_OF_THEM), |x| labels::desk(lang, x)),
            ),
            (
                "channel",
                f.channel()
                    .map_or(lang.m(cat::dashboard::ALL_OF_THEM), |c| labels::channel(lang, c)),
            ),
        ],
    );
    let note = lang.f(
        cat::dashboard::SUPPRESSION_NOTE,
        &[("marker", dashboard::SUPPRESSED), ("k", &f.k().to_string())],
    );
    ctx.page(
        lang.m(cat::dashboard::CALL_TOPICS),
        html! {
            style { (STYLE) }
            (form(lang, &Params::default(), Some(f), &[]))
            p.muted { (note) }
            figure {
                (PreEscaped(dashboard::svg_chart(&d, lang.code())))
                figcaption { (caption) }
            }
            h2 { (lang.m(cat::dashboard::PER_PERIOD)) }
            (table(lang, &d.by_period, lang.m(cat::dashboard::TOPIC), lang.m(cat::dashboard::PER_PERIOD)))
            @if !d.trends.is_empty() {
                h2 { (lang.m(cat::dashboard::TREND_OVER_THE_LAST_COMPLETE_PERIOD)) }
                div.scroll tabindex="0" role="region" aria-label=(lang.m(cat::dashboard::TREND_OVER_THE_LAST_COMPLETE_PERIOD)) { table {
                    thead { tr {
                        th scope="col" { (lang.m(cat::dashboard::TOPIC)) }
                        th scope="col" .n { (lang.m(cat::dashboard::PREVIOUS)) }
                        th scope="col" .n { (lang.m(cat::dashboard::LAST)) }
                        th scope="col" .n { (lang.m(cat::dashboard::CHANGE)) }
                    } }
                    tbody { @for t in &d.trends { tr {
                        th scope="row" { (t.topic) }
                        (cell(lang, &t.previous)) (cell(lang, &t.last))
                        td.n { @match t.change {
                            Some(c) if c > 0 => { "+" (format::count(lang, c.unsigned_abs())) }
                            Some(c) if c < 0 => { "−" (format::count(lang, c.unsigned_abs())) }
                            Some(_) => "0",
                            None => "–",
                        } }
                    } } }
                } }
            }
            @if by_channel {
                h2 { (lang.m(cat::dashboard::PER_CHANNEL_WHOLE_RANGE)) }
                (table(lang, &d.by_desk, lang.m(cat::dashboard::CHANNEL), lang.m(cat::dashboard::PER_CHANNEL_WHOLE_RANGE)))
            } @else {
                h2 { (lang.m(cat::dashboard::PER_DESK_WHOLE_RANGE)) }
                (table(lang, &d.by_desk, lang.m(cat::dashboard::DESK), lang.m(cat::dashboard::PER_DESK_WHOLE_RANGE)))
            }
            p { a href=(csv) download { (lang.m(cat::dashboard::DOWNLOAD_AS_CSV)) } }
        },
    )
}

fn cell(lang: Lang, c: &Cell) -> Markup {
    match c {
        Cell::Count(n) => html! { td.n { (format::count(lang, *n)) } },
        Cell::Suppressed => {
            let hidden = lang.m(cat::dashboard::SUPPRESSED);
            html! { td.n.muted title=(hidden) aria-label=(hidden) { (dashboard::SUPPRESSED) } }
        }
    }
}

/// A two-way table in a box of its own that scrolls (named `label`).
fn table(lang: Lang, t: &Table, corner: &str, label: &str) -> Markup {
    html! {
        div.scroll tabindex="0" role="region" aria-label=(label) { table {
            thead { tr {
                th scope="col" { (corner) }
                @for c in &t.columns { th scope="col" .n { (c) } }
                th scope="col" .n { (lang.m(cat::dashboard::TOTAL)) }
            } }
            tbody {
                @for (i, r) in t.rows.iter().enumerate() {
                    tr {
                        th scope="row" { (r) }
                        @for c in &t.cells[i] { (cell(lang, c)) }
                        (cell(lang, &t.row_totals[i]))
                    }
                }
            }
            tfoot { tr {
                th scope="row" { (lang.m(cat::dashboard::TOTAL)) }
                @for c in &t.column_totals { (cell(lang, c)) }
                (cell(lang, &t.total))
            } }
        } }
    }
}

async fn csv(State(app): State<Arc<App>>, ctx: Ctx, Query(p): Query<Params>) -> Response {
    let (user, _) = match ctx.page_user() {
        Ok(u) => u,
        Err(r) => return r,
    };
    let d = match build(&app, Reply::Html(ctx.lang), user, &p).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let name = format!(
        "opptak-topics-{}-{}-{}.csv",
        d.filter.first_day(),
        d.filter.last_day(),
        d.filter.period().as_str()
    );
    csv_response(dashboard::to_csv(&d), &name)
}
