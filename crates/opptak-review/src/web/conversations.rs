//! Conversations in the review service (issue 17, section 4): chat with
//! Aino or an advisor, secure messages and e-mail, read as calls are read.
//!
//! - `GET /conversations[?channel=&days=]`: recent conversations, newest
//!   first, for compliance and QA (all) and the advisor (those handed over
//!   to them); no content, no customer.
//! - `GET /conversations/{id}`: one conversation's stored copy.
//!
//! Who reads what, decided and written to the audit log before anything is
//! decrypted (`conversation.read`, refusals included):
//! - advisor: a conversation whose advisor they are (from the start or after
//!   Aino's handover; reason `review`, not asked): the `chat-advisor` copy;
//! - compliance: any conversation, with a stated reason (the form of
//!   [`super::reason`], kept server-side for the session, never in the URL);
//! - QA: any conversation while its analysis copy is kept (1 year, none
//!   after the customer's objection: QA's access ends with it, as it ends
//!   with a call's KI data), with a stated reason (the same form);
//! - compliance and QA read the `chat-advisor` or `chat-archive` copy when
//!   one is kept, else the redacted `chat-analysis` copy; the page says which
//!   copy it shows and until when retention keeps it;
//! - team lead, auditor, admin: never.

use super::{cat, format, internal, labels, App, Ctx, Lang, Refusal};
use crate::identity::{Role, User};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use maud::html;
use opptak_domain::conversation::ConversationLog;
use opptak_domain::model::{CallId, Channel, Sender};
use opptak_domain::retention::ArtifactKind;
use opptak_store::meta::ConversationRecord;
use serde::Deserialize;
use std::sync::Arc;

pub(super) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/conversations", get(list))
        .route("/conversations/{id}", get(page))
}

/// Who is offered the list of conversations (the menu link).
pub(crate) fn reads_conversations(role: Role) -> bool {
    matches!(role, Role::Advisor | Role::Qa | Role::Compliance)
}

/// A stored copy of a conversation that can still be read (found from the
/// metadata alone: nothing is decrypted to find it).
#[derive(Clone, Debug)]
pub(crate) struct StoredCopy {
    pub(crate) kind: ArtifactKind,
    /// When retention deletes it (`None`: not routed yet).
    pub(crate) kept_until_us: Option<i64>,
    /// Under a legal hold: kept past `kept_until_us` until released.
    pub(crate) held: bool,
}

/// The copies of conversation `id` that are readable now: the artifact has
/// its object and its key, and retention has not deleted it.
pub(crate) async fn copies(app: &App, id: &CallId) -> anyhow::Result<Vec<StoredCopy>> {
    let meta = app.edges.vault.meta();
    let retention = meta.retention_of(id).await?;
    let mut out = Vec::new();
    for a in meta.artifacts(id).await? {
        let Some(kind) = ArtifactKind::parse(&a.kind).filter(|k| k.of_conversation()) else {
            continue;
        };
        if a.object.is_none() || a.key.destroyed_at_us.is_some() {
            continue;
        }
        let row = retention.iter().find(|r| r.artifact_id == a.artifact_id);
        if row.is_some_and(|r| r.deleted_at_us.is_some()) {
            continue;
        }
        out.push(StoredCopy {
            kind,
            kept_until_us: row.map(|r| r.expires_at_us),
            held: row.is_some_and(|r| r.held),
        });
    }
    Ok(out)
}

/// Reads (decrypts) the copy of `kind`; the caller has authorized and
/// audited the read.
pub(crate) async fn read_copy(app: &App, id: &CallId, kind: ArtifactKind) -> anyhow::Result<ConversationLog> {
    Ok(app
        .edges
        .vault
        .read_json::<ConversationLog>(id, kind.as_str(), opptak_crypto::segment::ArtifactKind::Conversation)
        .await?)
}

/// The copy a role reads, in the order it prefers them.
fn preferred(role: Role) -> &'static [ArtifactKind] {
    match role {
        Role::Advisor => &[ArtifactKind::ChatAdvisor],
        Role::Compliance | Role::Qa => &[
            ArtifactKind::ChatAdvisor,
            ArtifactKind::ChatArchive,
            ArtifactKind::ChatAnalysis,
        ],
        Role::TeamLead | Role::Auditor | Role::Admin => &[],
    }
}

fn copy_name(lang: Lang, kind: ArtifactKind) -> &'static str {
    match kind {
        ArtifactKind::ChatAdvisor => lang.m(cat::conversations::THE_ADVISOR_COPY_5_YEARS),
        ArtifactKind::ChatArchive => lang.m(cat::conversations::THE_ARCHIVE_COPY_SECURITIES_ACT_5),
        ArtifactKind::ChatAnalysis => lang.m(cat::conversations::THE_ANALYSIS_COPY_1_YEAR_PERSONAL),
        ArtifactKind::ChatCustomer => lang.m(cat::conversations::THE_CUSTOMER_COPY_3_YEARS),
        _ => lang.m(cat::conversations::ANOTHER_COPY),
    }
}

fn channel_name(lang: Lang, c: Channel) -> &'static str {
    labels::channel(lang, c.as_str())
}

fn end_reason(lang: Lang, code: &str) -> &'static str {
    lang.m(match code {
        "closed_by_customer" => cat::conversations::END_CLOSED_BY_CUSTOMER,
        "closed_by_advisor" => cat::conversations::END_CLOSED_BY_ADVISOR,
        "timeout" | "idle_timeout" => cat::conversations::END_TIMEOUT,
        _ => cat::conversations::END_UNSPECIFIED,
    })
}

fn sender_name(lang: Lang, s: Sender) -> &'static str {
    match s {
        Sender::Customer => lang.m(cat::conversations::CUSTOMER),
        Sender::Bot => "Aino",
        Sender::Advisor => lang.m(cat::conversations::ADVISOR),
    }
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(default)]
    channel: String,
    days: Option<u32>,
}

/// Conversations shown per list page at most.
const LIST_LIMIT: u32 = 200;
/// The list's default and longest look-back.
const DEFAULT_DAYS: u32 = 30;
const MAX_DAYS: u32 = 5 * 366;

async fn list(State(app): State<Arc<App>>, ctx: Ctx, Query(q): Query<ListQuery>) -> Response {
    let (user, _) = match ctx.page_user() {
        Ok(u) => u,
        Err(r) => return r,
    };
    let lang = ctx.lang;
    if !reads_conversations(user.role) {
        if let Err(e) = app
            .audit(user, "conversations.list", "conversations", "", "refused")
            .await
        {
            return internal(lang, e);
        }
        return ctx.error(
            StatusCode::FORBIDDEN,
            cat::conversations::YOUR_ROLE_DOES_NOT_READ_CONVERSATIONS,
        );
    }
    let channel = match q.channel.as_str() {
        "" => None,
        c => match Channel::parse(c) {
            Some(c) => Some(c),
            None => return ctx.error(StatusCode::BAD_REQUEST, cat::conversations::UNKNOWN_CHANNEL),
        },
    };
    let days = q.days.unwrap_or(DEFAULT_DAYS).clamp(1, MAX_DAYS);
    let since = app.edges.vault.clock().now_us() - i64::from(days) * 86_400_000_000;
    // An advisor sees the conversations handed over to them only (an empty
    // id would match every conversation without an advisor).
    let advisor = (user.role == Role::Advisor).then_some(user.user_id.as_str());
    let rows: Vec<ConversationRecord> = if advisor == Some("") {
        Vec::new()
    } else {
        match app
            .edges
            .vault
            .meta()
            .recent_conversations(since, channel, advisor, LIST_LIMIT)
            .await
        {
            Ok(r) => r,
            Err(e) => return internal(lang, e),
        }
    };
    let asks_reason = matches!(user.role, Role::Compliance | Role::Qa);
    ctx.page(ctx.lang.m(cat::conversations::CONVERSATIONS),
        html! {
            p { (lang.m(cat::conversations::CHAT_WITH_AINO_AND_ADVISORS_SECURE))
                @if asks_reason { " " (lang.m(cat::conversations::YOU_STATE_WHY_WHEN_YOU_OPEN)) } }
            form method="get" action="/conversations" {
                p {
                    label for="channel" { (lang.m(cat::conversations::CHANNEL)) } " "
                    select #channel name="channel" {
                        option value="" selected[channel.is_none()] { (lang.m(cat::conversations::ALL_OF_THEM)) }
                        @for c in Channel::ALL {
                            option value=(c.as_str()) selected[channel == Some(c)] { (channel_name(lang, c)) }
                        }
                    }
                    " "
                    label for="days" { (lang.m(cat::conversations::LAST_DAYS)) } " "
                    input #days type="number" name="days" min="1" max=(MAX_DAYS) value=(days);
                }
                button type="submit" { (lang.m(cat::conversations::SHOW)) }
            }
            @if rows.is_empty() {
                p { (lang.m(cat::conversations::NO_CONVERSATIONS_IN_THE_PERIOD)) }
            } @else {
                table {
                    thead { tr {
                        th scope="col" { (lang.m(cat::conversations::CONVERSATION)) }
                        th scope="col" { (lang.m(cat::conversations::CHANNEL)) }
                        th scope="col" { (lang.m(cat::conversations::STARTED)) }
                        th scope="col" { (lang.m(cat::conversations::ENDED)) }
                        th scope="col" { (lang.m(cat::conversations::MESSAGES)) }
                        th scope="col" { (lang.m(cat::conversations::ADVISOR_2)) }
                        th scope="col" { (lang.m(cat::conversations::LOGGED_IN)) }
                    } }
                    tbody {
                        @for r in &rows {
                            tr {
                                td { a href={ "/conversations/" (r.facts.conversation_id) } { (r.facts.conversation_id) } }
                                td { (channel_name(lang, r.facts.channel)) }
                                td { (format::when(lang, r.facts.started_at_us)) }
                                td { @match r.ended_at_us { Some(t) => (format::when(lang, t)), None => span.muted { (lang.m(cat::conversations::OPEN)) } } }
                                td { (format::count(lang, r.messages)) }
                                td { (r.facts.advisor_id) }
                                td { (if r.facts.logged_in() { lang.m(cat::conversations::YES) } else { lang.m(cat::conversations::NO_ANONYMOUS) }) }
                            }
                        }
                    }
                }
                @if rows.len() as u32 == LIST_LIMIT {
                    p.muted { (lang.m(cat::conversations::ONLY_THE_NEWEST_200_ARE_SHOWN)) }
                }
            }
        },
    )
}

impl App {
    /// Whether `user` may read conversation `rec`, and why (the reason kept
    /// in the audit log); writes the audit entry either way, before anything
    /// is decrypted. On refusal returns the page to send.
    async fn authorize_conversation(
        &self,
        lang: Lang,
        user: &User,
        rec: Option<&ConversationRecord>,
        copies: &[StoredCopy],
        subject: &str,
        stated: Option<&str>,
    ) -> Result<String, Response> {
        let stated = stated.map(str::trim).filter(|r| !r.is_empty());
        // The page asks for the reason before it gets here (the form).
        let no_reason: Refusal = (StatusCode::BAD_REQUEST, cat::conversations::STATE_A_REASON_TO_READ);
        let decision: Result<String, Refusal> = match (rec, user.role) {
            (None, _) => Err((StatusCode::NOT_FOUND, cat::conversations::UNKNOWN_CONVERSATION)),
            (Some(c), Role::Advisor) if c.facts.with_advisor() && c.facts.advisor_id == user.user_id => {
                Ok("review".into())
            }
            (Some(_), Role::Advisor) => Err((
                StatusCode::FORBIDDEN,
                cat::conversations::THIS_CONVERSATION_WAS_NOT_HANDED_OVER,
            )),
            (Some(_), Role::Compliance) => stated.map(str::to_owned).ok_or(no_reason),
            (Some(_), Role::Qa) if !copies.iter().any(|c| c.kind == ArtifactKind::ChatAnalysis) => Err((
                StatusCode::FORBIDDEN,
                cat::conversations::THE_ANALYSIS_COPY_IS_DELETED_AFTER,
            )),
            (Some(_), Role::Qa) => stated.map(str::to_owned).ok_or(no_reason),
            (Some(_), Role::TeamLead) => Err((
                StatusCode::FORBIDDEN,
                cat::conversations::CONVERSATIONS_ARE_READ_BY_THE_ADVISOR,
            )),
            (Some(_), Role::Auditor | Role::Admin) => {
                Err((StatusCode::FORBIDDEN, cat::conversations::YOUR_ROLE_NEVER_READS_CONTENT))
            }
        };
        self.settle(
            lang,
            user,
            ("conversation.read", subject),
            decision,
            stated.unwrap_or(""),
        )
        .await
    }
}

async fn page(State(app): State<Arc<App>>, ctx: Ctx, Path(id): Path<String>) -> Response {
    let (user, token) = match ctx.user() {
        Ok(u) => u,
        Err(r) => return r,
    };
    let lang = ctx.lang;
    let Ok(id) = CallId::parse(&id) else {
        return ctx.error(StatusCode::NOT_FOUND, cat::conversations::UNKNOWN_CONVERSATION);
    };
    let subject = format!("conversation:{id}");
    let rec = match app.edges.vault.meta().load_conversation(&id).await {
        Ok(r) => r,
        Err(e) => return internal(lang, e),
    };
    let copies = match &rec {
        Some(_) => match copies(&app, &id).await {
            Ok(c) => c,
            Err(e) => return internal(lang, e),
        },
        None => Vec::new(),
    };
    // The form only where a reason would open it: QA without the analysis
    // copy is refused whatever it states.
    let qa_shut = user.role == Role::Qa && !copies.iter().any(|c| c.kind == ArtifactKind::ChatAnalysis);
    let stated = match app
        .reason_or_form(&ctx, (user, token), rec.is_some() && !qa_shut, &subject)
        .await
    {
        Ok(r) => r,
        Err(r) => return r,
    };
    let reason = match app
        .authorize_conversation(lang, user, rec.as_ref(), &copies, &subject, stated.as_deref())
        .await
    {
        Ok(r) => r,
        Err(r) => return r,
    };
    let Some(rec) = rec else {
        return ctx.error(StatusCode::NOT_FOUND, cat::conversations::UNKNOWN_CONVERSATION);
    };
    let Some(copy) = preferred(user.role)
        .iter()
        .find_map(|k| copies.iter().find(|c| c.kind == *k))
    else {
        return ctx.error(StatusCode::GONE, cat::conversations::THERE_IS_NO_COPY_OF_THE);
    };
    let log = match read_copy(&app, &id, copy.kind).await {
        Ok(l) => l,
        Err(e) => return internal(lang, e),
    };
    let title = format!("{} {id}", lang.m(cat::conversations::CONVERSATION));
    let f = &rec.facts;
    ctx.page(
        &title,
        html! {
            dl {
                dt { (lang.m(cat::conversations::CHANNEL)) } dd { (channel_name(lang, f.channel)) }
                dt { (lang.m(cat::conversations::STARTED)) } dd { (format::when(lang, log.started_at_us)) }
                dt { (lang.m(cat::conversations::ENDED)) } dd { (format::when(lang, log.ended_at_us)) " (" (end_reason(lang, &log.end_reason)) ")" }
                @if let Some(t) = log.handover_at_us {
                    dt { (lang.m(cat::conversations::HANDED_OVER_TO_AN_ADVISOR)) } dd { (format::when(lang, t)) }
                }
                @if !f.advisor_id.is_empty() {
                    dt { (lang.m(cat::conversations::ADVISOR_2)) } dd { (f.advisor_id) }
                }
                dt { (lang.m(cat::conversations::DESK)) } dd { (labels::desk(lang, f.desk.as_str())) }
                dt { (lang.m(cat::conversations::SERVICE_CATEGORY)) } dd { (labels::service(lang, f.service_category.as_str())) }
                dt { (lang.m(cat::conversations::REASON_IN_THE_AUDIT_LOG)) } dd { (reason) }
            }
            p.copy {
                (lang.m(cat::conversations::SHOWING)) strong { (copy_name(lang, copy.kind)) } ". "
                @match copy.kept_until_us {
                    Some(t) => { (lang.m(cat::conversations::KEPT_UNTIL)) strong { (format::when(lang, t)) } (lang.m(cat::conversations::THEN_IT_IS_DELETED_AND)) }
                    None => { (lang.m(cat::conversations::ITS_RETENTION_IS_NOT_DECIDED_YET)) }
                }
                @if copy.held { " " strong.flag { (lang.m(cat::conversations::UNDER_A_LEGAL_HOLD_KEPT_UNTIL)) } }
            }
            @if log.redacted {
                p.muted { (lang.m(cat::conversations::THE_ANALYSIS_COPY_NAMES_NATIONAL_IDENTITY)) }
            }
            @if !log.missing.is_empty() {
                p.flag { (lang.m(cat::conversations::MESSAGES_THAT_NEVER_ARRIVED))
                    (log.missing.iter().map(|n| format::count(lang, *n)).collect::<Vec<_>>().join(", ")) }
            }
            table.messages {
                thead { tr {
                    th scope="col" { "#" }
                    th scope="col" { (lang.m(cat::conversations::TIME)) }
                    th scope="col" { (lang.m(cat::conversations::FROM)) }
                    th scope="col" { (lang.m(cat::conversations::TEXT)) }
                } }
                tbody {
                    @for m in &log.messages {
                        tr class=(m.sender.as_str()) {
                            td { (m.sequence) }
                            td { (format::when_s(lang, m.at_us)) }
                            td { (sender_name(lang, m.sender)) @if !m.sender_id.is_empty() { " (" (m.sender_id) ")" } }
                            td {
                                (m.text)
                                @for a in &m.attachments {
                                    br;
                                    small { (lang.m(cat::conversations::ATTACHMENT)) (a.media_type) ", " (format::count(lang, a.size_bytes)) "\u{a0}B"
                                        @if !a.reference.is_empty() { " · " (a.reference) } }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}
