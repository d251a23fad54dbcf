//! The queues of open drafts: the advisor's own (`/queue`) and the team
//! lead's escalations (`/team`): drafts of the team waiting longer than
//! `web.escalate_after_h` since the call ended.

use super::{cat, format, internal, App, Ctx};
use crate::identity::{Role, User};
use anyhow::Result;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use maud::html;
use std::sync::Arc;

pub(super) fn routes() -> Router<Arc<App>> {
    Router::new().route("/queue", get(queue))
}

/// One open draft in a queue.
pub(crate) struct QueueItem {
    pub(crate) call_id: String,
    pub(crate) advisor_id: String,
    pub(crate) started_at_us: i64,
    pub(crate) escalated: bool,
}

async fn queue(State(app): State<Arc<App>>, ctx: Ctx) -> Response {
    let (user, _) = match ctx.page_user() {
        Ok(u) => u,
        Err(r) => return r,
    };
    let lang = ctx.lang;
    let rows = match drafts_for(&app, user).await {
        Ok(r) => r,
        Err(e) => return internal(lang, e),
    };
    ctx.page(
        lang.m(cat::queue::DRAFTS_TO_REVIEW),
        html! {
            @if rows.is_empty() {
                p { (lang.m(cat::queue::NO_DRAFTS_ARE_WAITING)) }
            } @else {
                table {
                    thead { tr {
                        th scope="col" { (lang.m(cat::queue::CALL)) }
                        th scope="col" { (lang.m(cat::queue::ADVISOR)) }
                        th scope="col" { (lang.m(cat::queue::STARTED)) }
                        th scope="col" { (lang.m(cat::queue::STATUS)) }
                    } }
                    tbody {
                        @for r in &rows {
                            tr {
                                td { a href={ "/calls/" (r.call_id) } { (r.call_id) } }
                                td { (r.advisor_id) }
                                td { (format::when(lang, r.started_at_us)) }
                                td { @if r.escalated { strong.flag { (lang.m(cat::queue::ESCALATED)) } } @else { (lang.m(cat::queue::WAITING)) } }
                            }
                        }
                    }
                }
            }
        },
    )
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
