//! The topic dashboard for internal reporting (R5): topic volumes per day
//! or ISO week, per desk or per channel (phone and the conversation
//! channels, issue 17), with trends, from the content-free index of
//! drafted KI calls and analysed conversations. Counts below `web.dashboard_k` are suppressed, with
//! complementary suppression so none can be worked out from the totals
//! ([`crate::dashboard`]); the chart is server-rendered SVG; the same
//! numbers download as CSV. Every query is audited with its parameters,
//! so differencing across overlapping queries can be traced.

use super::qa::csv_response;
use super::{cat, App, Ctx, Lang, Reply};
use crate::dashboard::{self, Breakdown, Cell, Dashboard, Day, Filter, Period, Table};
use crate::identity::{Role, User};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use maud::{html, Markup, PreEscaped};
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

/// The dashboard for a role that may read it; the refusal or a 400 for
/// bad parameters otherwise.
pub(crate) async fn build(app: &App, reply: Reply, user: &User, p: &Params) -> Result<Dashboard, Response> {
    if !reads_dashboard(user.role) {
        if let Err(e) = app.audit(user, "dashboard.read", "dashboard", "", "refused").await {
            return Err(reply.internal(e));
        }
        return Err(reply.error(StatusCode::FORBIDDEN, cat::dashboard::YOUR_ROLE_HAS_NO_ACCESS_TO));
    }
    let bad = |e: &dyn std::fmt::Display| reply.untranslated(StatusCode::BAD_REQUEST, &e.to_string());
    let today: Day = opptak_domain::time::utc_day(app.edges.vault.clock().now_us())
        .parse()
        .map_err(|e: opptak_domain::time::InvalidDay| bad(&e))?;
    let period = match p.period.as_deref().filter(|s| !s.is_empty()) {
        None => Period::Week,
        Some(s) => Period::parse(s).map_err(|e| bad(&e))?,
    };
    let day = |v: &Option<String>, default: Day| match v.as_deref().filter(|s| !s.is_empty()) {
        None => Ok(default),
        Some(s) => s.parse::<Day>().map_err(|e| bad(&e)),
    };
    let default_from = match period {
        Period::Week => today.plus(-7 * 7),
        Period::Day => today.plus(-13),
    };
    let from = day(&p.from, default_from)?;
    let to = day(&p.to, today)?;
    let breakdown = match p.by.as_deref().filter(|s| !s.is_empty()) {
        None => Breakdown::Desk,
        Some(s) => Breakdown::parse(s).map_err(|e| bad(&e))?,
    };
    let filter = Filter::new(from, to, period, today)
        .map_err(|e| bad(&e))?
        .with_desk(p.desk.clone().filter(|d| !d.is_empty()))
        .with_channel(p.channel.clone().filter(|c| !c.is_empty()))
        .with_breakdown(breakdown)
        .with_k(app.edges.config.web.dashboard_k)
        .map_err(|e| bad(&e))?;
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

async fn page(State(app): State<Arc<App>>, ctx: Ctx, Query(p): Query<Params>) -> Response {
    let (user, _) = match ctx.page_user() {
        Ok(u) => u,
        Err(r) => return r,
    };
    let d = match build(&app, Reply::Html(ctx.lang), user, &p).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let lang = ctx.lang;
    let f = &d.filter;
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
    let second = if by_channel {
        Table {
            rows: d
                .by_desk
                .rows
                .iter()
                .map(|c| dashboard::channel_label(c, lang.code()).to_owned())
                .collect(),
            ..d.by_desk.clone()
        }
    } else {
        d.by_desk.clone()
    };
    let channel_shown = f.channel().map_or(lang.m(cat::dashboard::ALL_OF_THEM), |c| {
        dashboard::channel_label(c, lang.code())
    });
    ctx.page(ctx.lang.m(cat::dashboard::CALL_TOPICS),
        html! {
            form method="get" action="/dashboard" {
                label { (lang.m(cat::dashboard::FROM)) input type="date" name="from" value=(f.first_day()); } " "
                label { (lang.m(cat::dashboard::TO)) input type="date" name="to" value=(f.last_day()); } " "
                label { (lang.m(cat::dashboard::PERIOD)) select name="period" {
                    option value="week" selected[f.period() == Period::Week] { (lang.m(cat::dashboard::WEEK)) }
                    option value="day" selected[f.period() == Period::Day] { (lang.m(cat::dashboard::DAY)) }
                } } " "
                label { "Desk " select name="desk" {
                    option value="" selected[f.desk().is_none()] { (lang.m(cat::dashboard::ALL_OF_THEM)) }
                    @for desk in DESKS { option value=(desk) selected[f.desk() == Some(desk)] { (desk) } }
                } } " "
                label { (lang.m(cat::dashboard::CHANNEL)) select name="channel" {
                    option value="" selected[f.channel().is_none()] { (lang.m(cat::dashboard::ALL_OF_THEM)) }
                    @for c in dashboard::CHANNELS { option value=(c) selected[f.channel() == Some(c)] { (dashboard::channel_label(c, lang.code())) } }
                } } " "
                label { (lang.m(cat::dashboard::BROKEN_DOWN_BY)) select name="by" {
                    option value="desk" selected[!by_channel] { "desk" }
                    option value="channel" selected[by_channel] { (lang.m(cat::dashboard::CHANNEL_2)) }
                } } " "
                button type="submit" { (lang.m(cat::dashboard::SHOW)) }
            }
            p.muted { (d.suppression_note(lang.code())) }
            figure {
                (PreEscaped(dashboard::svg_chart(&d, lang.code())))
                figcaption { (lang.m(cat::dashboard::CALLS_PER_TOPIC)) (f.range_label()) ", desk: " (f.desk().unwrap_or(lang.m(cat::dashboard::ALL_OF_THEM)))
                    (lang.m(cat::dashboard::CHANNEL_3)) (channel_shown) }
            }
            h2 { (lang.m(cat::dashboard::PER_PERIOD)) }
            (table(lang, &d.by_period, lang.m(cat::dashboard::TOPIC)))
            @if !d.trends.is_empty() {
                h2 { (lang.m(cat::dashboard::TREND_OVER_THE_LAST_COMPLETE_PERIOD)) }
                table {
                    thead { tr {
                        th scope="col" { (lang.m(cat::dashboard::TOPIC)) }
                        th scope="col" { (lang.m(cat::dashboard::PREVIOUS)) }
                        th scope="col" { (lang.m(cat::dashboard::LAST)) }
                        th scope="col" { (lang.m(cat::dashboard::CHANGE)) }
                    } }
                    tbody { @for t in &d.trends { tr {
                        th scope="row" { (t.topic) }
                        td { (t.previous) } td { (t.last) }
                        td { @match t.change { Some(c) => (format!("{c:+}")), None => "–" } }
                    } } }
                }
            }
            @if by_channel {
                h2 { (lang.m(cat::dashboard::PER_CHANNEL_WHOLE_RANGE)) }
                (table(lang, &second, lang.m(cat::dashboard::CHANNEL_4)))
            } @else {
                h2 { (lang.m(cat::dashboard::PER_DESK_WHOLE_RANGE)) }
                (table(lang, &second, "Desk"))
            }
            p { a href=(csv) download { (lang.m(cat::dashboard::DOWNLOAD_AS_CSV)) } }
        },
    )
}

fn cell(lang: Lang, c: &Cell) -> Markup {
    match c {
        Cell::Count(n) => html! { td { (n) } },
        Cell::Suppressed => {
            let hidden = lang.m(cat::dashboard::SUPPRESSED);
            html! { td.muted title=(hidden) aria-label=(hidden) { (dashboard::SUPPRESSED) } }
        }
    }
}

fn table(lang: Lang, t: &Table, corner: &str) -> Markup {
    html! {
        table {
            thead { tr {
                th scope="col" { (corner) }
                @for c in &t.columns { th scope="col" { (c) } }
                th scope="col" { (lang.m(cat::dashboard::TOTAL)) }
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
        }
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
