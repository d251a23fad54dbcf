//! The queues of open drafts, searched, filtered, sorted and paged in SQL
//! (`opptak_store::search::SqlSearch::open_drafts`):
//!
//! - `/queue`: the advisor's own drafts;
//! - `/team`: the team lead's escalations, the team's drafts that have
//!   waited longer than `web.escalate_after_h` since the call ended, named
//!   and explained on the page; `show=all` lists the team's other open
//!   drafts too.
//!
//! Query parameters (no personal data: they may sit in a URL): `q` (call id
//! or its start), `desk`, `topic`, `sort=waited|started|length`,
//! `dir=asc|desc`, `page`, `per` (default 50, at most 200), `show=all`.
//! Columns: call, start, advisor (team), desk, topics (taxonomy labels),
//! length, waiting time.

use super::{cat, format, internal, labels, urlencode, App, Ctx, Lang};
use crate::identity::{Role, User};
use anyhow::Result;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use maud::{html, Markup};
use opptak_domain::model::Desk;
use opptak_store::search::{QueueQuery, QueueSort, QueuedDraft};
use serde::Deserialize;
use std::sync::Arc;

pub(super) fn routes() -> Router<Arc<App>> {
    Router::new().route("/queue", get(queue)).route("/team", get(team))
}

/// One open draft in a queue.
pub(crate) struct QueueItem {
    pub(crate) call_id: String,
    pub(crate) advisor_id: String,
    pub(crate) started_at_us: i64,
    pub(crate) escalated: bool,
}

const DESKS: [Desk; 4] = [
    Desk::CustomerCenter,
    Desk::Markets,
    Desk::PrivateBanking,
    Desk::Corporate,
];
const PER: u32 = 50;
const MAX_PER: u32 = 200;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
struct Params {
    q: String,
    desk: String,
    topic: String,
    sort: String,
    dir: String,
    page: Option<u32>,
    per: Option<u32>,
    show: String,
}

impl Params {
    fn sort(&self) -> QueueSort {
        match self.sort.as_str() {
            "started" => QueueSort::Started,
            "length" => QueueSort::Length,
            _ => QueueSort::Waited,
        }
    }

    fn descending(&self) -> bool {
        self.dir != "asc"
    }

    fn per(&self) -> u32 {
        self.per.unwrap_or(PER).clamp(1, MAX_PER)
    }

    /// The link to this list with `page` and the sort given, the filters kept.
    fn link(&self, base: &str, page: u32, sort: QueueSort, descending: bool) -> String {
        let mut s = format!("{base}?page={page}");
        for (k, v) in [
            ("q", self.q.as_str()),
            ("desk", self.desk.as_str()),
            ("topic", self.topic.as_str()),
            ("show", self.show.as_str()),
        ] {
            if !v.is_empty() {
                s.push_str(&format!("&{k}={}", urlencode(v)));
            }
        }
        let sort = match sort {
            QueueSort::Waited => "waited",
            QueueSort::Started => "started",
            QueueSort::Length => "length",
        };
        s.push_str(&format!("&sort={sort}&dir={}", if descending { "desc" } else { "asc" }));
        if self.per() != PER {
            s.push_str(&format!("&per={}", self.per()));
        }
        s
    }
}

/// Which list a page shows.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Which {
    Own,
    Escalated,
    Team,
}

async fn queue(State(app): State<Arc<App>>, ctx: Ctx, Query(p): Query<Params>) -> Response {
    let (user, _) = match ctx.page_user() {
        Ok(u) => u,
        Err(r) => return r,
    };
    match user.role {
        Role::Advisor => list(&app, &ctx, user, p, Which::Own).await,
        Role::TeamLead => Redirect::to("/team").into_response(),
        _ => ctx.error(StatusCode::FORBIDDEN, cat::queue::YOUR_ROLE_HAS_NO_DRAFTS),
    }
}

async fn team(State(app): State<Arc<App>>, ctx: Ctx, Query(p): Query<Params>) -> Response {
    let (user, _) = match ctx.page_user() {
        Ok(u) => u,
        Err(r) => return r,
    };
    if user.role != Role::TeamLead {
        return ctx.error(StatusCode::FORBIDDEN, cat::queue::ONLY_TEAM_LEADS);
    }
    let which = if p.show == "all" { Which::Team } else { Which::Escalated };
    list(&app, &ctx, user, p, which).await
}

/// The advisors of the user's team (nobody when the team is blank: an
/// empty team would otherwise match every advisor without one).
async fn team_of(app: &App, user: &User) -> Result<Vec<(String, String)>> {
    Ok(app
        .identity
        .users()
        .await?
        .into_iter()
        .filter(|(u, _)| u.team == user.team && !u.team.is_empty())
        .map(|(u, _)| (u.user_id, u.display_name))
        .collect())
}

async fn list(app: &App, ctx: &Ctx, user: &User, p: Params, which: Which) -> Response {
    let lang = ctx.lang;
    let members = match which {
        Which::Own => vec![(user.user_id.clone(), user.display_name.clone())],
        Which::Escalated | Which::Team => match team_of(app, user).await {
            Ok(m) => m,
            Err(e) => return internal(lang, e),
        },
    };
    let now = app.edges.vault.clock().now_us();
    let hours = app.edges.config.web.escalate_after_h;
    let escalate_before = now - i64::from(hours) * 3_600_000_000;
    let taxonomy = app.review.taxonomy();
    let per = p.per();
    let page = p.page.unwrap_or(1).max(1);
    let q = QueueQuery {
        advisors: members.iter().map(|(id, _)| id.clone()).collect(),
        ended_before_us: (which == Which::Escalated).then_some(escalate_before),
        desk: Desk::parse(&p.desk).map(|d| d.as_str().to_owned()),
        topic: taxonomy.get(&p.topic).map(|t| t.id.clone()),
        call_prefix: Some(p.q.trim().to_owned()).filter(|s| !s.is_empty()),
        sort: p.sort(),
        descending: p.descending(),
        offset: u64::from(page - 1) * u64::from(per),
        limit: per,
    };
    let (drafts, total) = match app.search.open_drafts(&q).await {
        Ok(v) => v,
        Err(e) => return internal(lang, e),
    };
    let base = if which == Which::Own { "/queue" } else { "/team" };
    let hours_s = hours.to_string();
    let title = lang.m(match which {
        Which::Own => cat::queue::DRAFTS_TO_REVIEW,
        Which::Escalated => cat::queue::ESCALATIONS,
        Which::Team => cat::queue::TEAM_DRAFTS,
    });
    let heading = lang.f(cat::queue::ESCALATIONS_HEADING, &[("h", &hours_s)]);
    let body = html! {
        @if which != Which::Own {
            p.lead { strong { (heading) } }
        }
        p { (lang.f(intro_msg(which), &[("h", &hours_s)])) }
        @if which != Which::Own {
            p {
                @if which == Which::Escalated {
                    a href="/team?show=all" { (lang.m(cat::queue::SHOW_ALL_TEAM_DRAFTS)) }
                } @else {
                    a href="/team" { (lang.m(cat::queue::SHOW_ONLY_ESCALATIONS)) }
                }
            }
        }
        (filters(lang, &p, base, taxonomy))
        (table(lang, &p, base, which, &drafts, total, page, &members, taxonomy, escalate_before, now))
    };
    ctx.page(title, body)
}

fn intro_msg(which: Which) -> super::Msg {
    match which {
        Which::Own => cat::queue::YOUR_OPEN_DRAFTS,
        Which::Escalated => cat::queue::ESCALATIONS_EXPLAINED,
        Which::Team => cat::queue::TEAM_DRAFTS_EXPLAINED,
    }
}

fn filters(lang: Lang, p: &Params, base: &str, taxonomy: &opptak_domain::summary::Taxonomy) -> Markup {
    html! {
        form.filters method="get" action=(base) {
            @if !p.show.is_empty() { input type="hidden" name="show" value=(p.show); }
            fieldset {
                legend { (lang.m(cat::queue::FIND_AND_FILTER)) }
                label for="q" { (lang.m(cat::queue::CALL_ID)) } " "
                input #q type="search" name="q" size="24" value=(p.q);
                " "
                label for="desk" { (lang.m(cat::queue::DESK)) } " "
                select #desk name="desk" {
                    option value="" { (lang.m(cat::queue::ANY)) }
                    @for d in DESKS {
                        option value=(d.as_str()) selected[p.desk == d.as_str()] { (labels::desk(lang, d.as_str())) }
                    }
                }
                " "
                label for="topic" { (lang.m(cat::queue::TOPIC)) } " "
                select #topic name="topic" {
                    option value="" { (lang.m(cat::queue::ANY)) }
                    @for t in taxonomy.topics() {
                        option value=(t.id) selected[p.topic == t.id] { (lang.pick(&t.label_nb, &t.label_en)) }
                    }
                }
                " "
                input type="hidden" name="sort" value=(if p.sort.is_empty() { "waited" } else { p.sort.as_str() });
                input type="hidden" name="dir" value=(if p.descending() { "desc" } else { "asc" });
                button type="submit" { (lang.m(cat::queue::FILTER)) }
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn table(
    lang: Lang,
    p: &Params,
    base: &str,
    which: Which,
    drafts: &[QueuedDraft],
    total: u64,
    page: u32,
    members: &[(String, String)],
    taxonomy: &opptak_domain::summary::Taxonomy,
    escalate_before: i64,
    now: i64,
) -> Markup {
    if drafts.is_empty() {
        return html! { p { (lang.m(cat::queue::NO_DRAFTS_ARE_WAITING)) } };
    }
    let per = p.per();
    let first = u64::from(page - 1) * u64::from(per) + 1;
    let last = first - 1 + drafts.len() as u64;
    let sort = p.sort();
    let desc = p.descending();
    let head = |col: QueueSort, label: &'static str| {
        let active = sort == col;
        let aria = active.then_some(if desc { "descending" } else { "ascending" });
        // A new column starts largest first; the active one flips.
        let next_desc = if active { !desc } else { true };
        html! {
            th scope="col" aria-sort=[aria] {
                a href=(p.link(base, 1, col, next_desc)) { (label) @if active { " " (if desc { "▼" } else { "▲" }) } }
            }
        }
    };
    let name = |id: &str| {
        members
            .iter()
            .find(|(a, _)| a == id)
            .map_or_else(|| id.to_owned(), |(_, n)| n.clone())
    };
    html! {
        p aria-live="polite" {
            (lang.f(cat::queue::SHOWING_RANGE, &[
                ("first", &format::count(lang, first)),
                ("last", &format::count(lang, last)),
                ("total", &format::count(lang, total)),
            ]))
        }
        table.queue {
            thead { tr {
                th scope="col" { (lang.m(cat::queue::CALL)) }
                (head(QueueSort::Started, lang.m(cat::queue::STARTED)))
                @if which != Which::Own { th scope="col" { (lang.m(cat::queue::ADVISOR)) } }
                th scope="col" { (lang.m(cat::queue::DESK)) }
                th scope="col" { (lang.m(cat::queue::TOPICS)) }
                (head(QueueSort::Length, lang.m(cat::queue::LENGTH)))
                (head(QueueSort::Waited, lang.m(cat::queue::WAITED)))
            } }
            tbody {
                @for d in drafts {
                    @let ended = d.ended_at_us.unwrap_or(d.started_at_us);
                    tr {
                        td { a href={ "/calls/" (d.call_id) } { (d.call_id) } }
                        td { (format::when(lang, d.started_at_us)) }
                        @if which != Which::Own { td { (name(&d.advisor_id)) } }
                        td { (labels::desk(lang, &d.desk)) }
                        td { (labels::topics(lang, taxonomy, &d.topics)) }
                        td { (format::clock(d.frames as f64 / f64::from(d.sample_rate_hz.max(1)))) }
                        td {
                            (format::waited(lang, now - ended))
                            @if ended < escalate_before { " " strong.flag { (lang.m(cat::queue::ESCALATED)) } }
                        }
                    }
                }
            }
        }
        nav.paging aria-label=(lang.m(cat::queue::PAGES)) {
            @if page > 1 { a rel="prev" href=(p.link(base, page - 1, sort, desc)) { (lang.m(cat::queue::PREVIOUS)) } " " }
            @if last < total { a rel="next" href=(p.link(base, page + 1, sort, desc)) { (lang.m(cat::queue::NEXT)) } }
        }
    }
}

/// Open drafts (drafted, neither approved nor rejected) the user should
/// review: an advisor their own; a team lead their team's drafts that waited
/// longer than `web.escalate_after_h` since the call ended (escalated).
/// One indexed query over the drafted-calls index (`ki_calls`).
pub(crate) async fn drafts_for(app: &App, user: &User) -> Result<Vec<QueueItem>> {
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
    let now = app.edges.vault.clock().now_us();
    let escalate_after = i64::from(app.edges.config.web.escalate_after_h) * 3_600_000_000;
    let mut out = Vec::new();
    for d in app.qa.open_drafts(&team).await? {
        let ended = d.ended_at_us.unwrap_or(d.started_at_us);
        let overdue = now - ended > escalate_after;
        if user.role == Role::TeamLead && !overdue {
            continue;
        }
        out.push(QueueItem {
            call_id: d.call_id,
            advisor_id: d.advisor_id,
            started_at_us: d.started_at_us,
            escalated: overdue,
        });
    }
    Ok(out)
}
