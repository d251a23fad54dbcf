//! Conversations in the review service (issue 17, section 4): chat with
//! Aino or an advisor, secure messages and e-mail, read as calls are read.
//!
//! - `GET /conversations[?channel=&days=&reason=]`: recent conversations,
//!   newest first, for compliance and QA (all) and the advisor (those handed
//!   over to them); no content, no customer.
//! - `GET /conversations/{id}[?reason=]`: one conversation's stored copy.
//!
//! Who reads what, decided and written to the audit log before anything is
//! decrypted (`conversation.read`, refusals included):
//! - advisor: a conversation whose advisor they are (from the start or after
//!   Aino's handover; reason `review`, not asked): the `chat-advisor` copy;
//! - compliance: any conversation, with a stated `?reason=`;
//! - QA: any conversation while its analysis copy is kept (1 year, none
//!   after the customer's objection: QA's access ends with it, as it ends
//!   with a call's KI data), with a stated `?reason=`;
//! - compliance and QA read the `chat-advisor` or `chat-archive` copy when
//!   one is kept, else the redacted `chat-analysis` copy; the page says which
//!   copy it shows and until when retention keeps it;
//! - team lead, auditor, admin: never.

use super::{internal, urlencode, App, Ctx, Lang, Refusal};
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
        ArtifactKind::ChatAdvisor => lang.t("rådgiverkopien (5 år)", "the advisor copy (5 years)"),
        ArtifactKind::ChatArchive => lang.t(
            "arkivkopien (verdipapirhandelloven, 5 år)",
            "the archive copy (securities act, 5 years)",
        ),
        ArtifactKind::ChatAnalysis => lang.t(
            "analysekopien (1 år, personopplysninger erstattet)",
            "the analysis copy (1 year, personal data replaced)",
        ),
        ArtifactKind::ChatCustomer => lang.t("kundekopien (3 år)", "the customer copy (3 years)"),
        _ => kind.as_str(),
    }
}

fn channel_name(lang: Lang, c: Channel) -> &'static str {
    match c {
        Channel::AinoChatbot => lang.t("chat med Aino", "chat with Aino"),
        Channel::AdvisorChat => lang.t("chat med rådgiver", "chat with an advisor"),
        Channel::SecureMessage => lang.t("sikker melding", "secure message"),
        Channel::Email => lang.t("e-post", "e-mail"),
    }
}

fn sender_name(lang: Lang, s: Sender) -> &'static str {
    match s {
        Sender::Customer => lang.t("kunde", "customer"),
        Sender::Bot => "Aino",
        Sender::Advisor => lang.t("rådgiver", "advisor"),
    }
}

fn when(us: i64) -> String {
    opptak_domain::time::utc_time(us)
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(default)]
    channel: String,
    days: Option<u32>,
    #[serde(default)]
    reason: String,
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
            "Rollen din gir ikke tilgang til samtaler i tekst.",
            "Your role does not read conversations.",
        );
    }
    let channel = match q.channel.as_str() {
        "" => None,
        c => match Channel::parse(c) {
            Some(c) => Some(c),
            None => return ctx.error(StatusCode::BAD_REQUEST, "Ukjent kanal.", "Unknown channel."),
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
    let reason = q.reason.trim();
    let reason_q = if reason.is_empty() {
        String::new()
    } else {
        format!("?reason={}", urlencode(reason))
    };
    let asks_reason = matches!(user.role, Role::Compliance | Role::Qa);
    ctx.page(
        ("Samtaler i tekst", "Conversations"),
        html! {
            p { (lang.t(
                "Chat med Aino og rådgivere, sikre meldinger og e-post, nyeste først. Hver lesning skrives i revisjonsloggen.",
                "Chat with Aino and advisors, secure messages and e-mail, newest first. Every read is written to the audit log."
            )) }
            form method="get" action="/conversations" {
                p {
                    label for="channel" { (lang.t("Kanal", "Channel")) } " "
                    select #channel name="channel" {
                        option value="" selected[channel.is_none()] { (lang.t("alle", "all")) }
                        @for c in Channel::ALL {
                            option value=(c.as_str()) selected[channel == Some(c)] { (channel_name(lang, c)) }
                        }
                    }
                    " "
                    label for="days" { (lang.t("Siste dager", "Last days")) } " "
                    input #days type="number" name="days" min="1" max=(MAX_DAYS) value=(days);
                }
                @if asks_reason {
                    p {
                        label for="reason" { (lang.t("Grunn for å lese (kreves, skrives i revisjonsloggen)", "Reason to read (required, written to the audit log)")) } " "
                        input #reason type="text" name="reason" size="50" value=(reason);
                    }
                }
                button type="submit" { (lang.t("Vis", "Show")) }
            }
            @if rows.is_empty() {
                p { (lang.t("Ingen samtaler i perioden.", "No conversations in the period.")) }
            } @else {
                table {
                    thead { tr {
                        th scope="col" { (lang.t("Samtale", "Conversation")) }
                        th scope="col" { (lang.t("Kanal", "Channel")) }
                        th scope="col" { (lang.t("Startet (UTC)", "Started (UTC)")) }
                        th scope="col" { (lang.t("Avsluttet (UTC)", "Ended (UTC)")) }
                        th scope="col" { (lang.t("Meldinger", "Messages")) }
                        th scope="col" { (lang.t("Rådgiver", "Advisor")) }
                        th scope="col" { (lang.t("Innlogget", "Logged in")) }
                    } }
                    tbody {
                        @for r in &rows {
                            tr {
                                td { a href={ "/conversations/" (r.facts.conversation_id) (reason_q) } { (r.facts.conversation_id) } }
                                td { (channel_name(lang, r.facts.channel)) }
                                td { (when(r.facts.started_at_us)) }
                                td { @match r.ended_at_us { Some(t) => (when(t)), None => span.muted { (lang.t("pågår", "open")) } } }
                                td { (r.messages) }
                                td { (r.facts.advisor_id) }
                                td { (if r.facts.logged_in() { lang.t("ja", "yes") } else { lang.t("nei (anonym)", "no (anonymous)") }) }
                            }
                        }
                    }
                }
                @if rows.len() as u32 == LIST_LIMIT {
                    p.muted { (lang.t("Bare de nyeste 200 vises; velg en kortere periode eller en kanal.", "Only the newest 200 are shown; choose a shorter period or a channel.")) }
                }
            }
        },
    )
}

#[derive(Deserialize)]
struct ReasonQuery {
    reason: Option<String>,
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
        let no_reason: Refusal = (
            StatusCode::BAD_REQUEST,
            "Oppgi en grunn (?reason=…) for å lese samtalen.",
            "State a reason (?reason=…) to read the conversation.",
        );
        let decision: Result<String, Refusal> = match (rec, user.role) {
            (None, _) => Err((StatusCode::NOT_FOUND, "Ukjent samtale.", "Unknown conversation.")),
            (Some(c), Role::Advisor) if c.facts.with_advisor() && c.facts.advisor_id == user.user_id => {
                Ok("review".into())
            }
            (Some(_), Role::Advisor) => Err((
                StatusCode::FORBIDDEN,
                "Samtalen ble ikke overført til deg.",
                "This conversation was not handed over to you.",
            )),
            (Some(_), Role::Compliance) => stated.map(str::to_owned).ok_or(no_reason),
            (Some(_), Role::Qa) if !copies.iter().any(|c| c.kind == ArtifactKind::ChatAnalysis) => Err((
                StatusCode::FORBIDDEN,
                "Analysekopien er slettet (etter ett år, eller fordi kunden protesterte); kvalitetskontrollens tilgang endte med den.",
                "The analysis copy is deleted (after a year, or on the customer's objection); QA's access ended with it.",
            )),
            (Some(_), Role::Qa) => stated.map(str::to_owned).ok_or(no_reason),
            (Some(_), Role::TeamLead) => Err((
                StatusCode::FORBIDDEN,
                "Samtaler i tekst leses av rådgiveren de ble overført til, compliance og kvalitetskontroll.",
                "Conversations are read by the advisor they were handed to, compliance and QA.",
            )),
            (Some(_), Role::Auditor | Role::Admin) => Err((
                StatusCode::FORBIDDEN,
                "Rollen din gir aldri tilgang til innhold.",
                "Your role never reads content.",
            )),
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

async fn page(State(app): State<Arc<App>>, ctx: Ctx, Path(id): Path<String>, Query(q): Query<ReasonQuery>) -> Response {
    let (user, _) = match ctx.user() {
        Ok(u) => u,
        Err(r) => return r,
    };
    let lang = ctx.lang;
    let Ok(id) = CallId::parse(&id) else {
        return ctx.error(StatusCode::NOT_FOUND, "Ukjent samtale.", "Unknown conversation.");
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
    let reason = match app
        .authorize_conversation(lang, user, rec.as_ref(), &copies, &subject, q.reason.as_deref())
        .await
    {
        Ok(r) => r,
        Err(r) => return r,
    };
    let Some(rec) = rec else {
        return ctx.error(StatusCode::NOT_FOUND, "Ukjent samtale.", "Unknown conversation.");
    };
    let Some(copy) = preferred(user.role)
        .iter()
        .find_map(|k| copies.iter().find(|c| c.kind == *k))
    else {
        return ctx.error(
            StatusCode::GONE,
            "Det finnes ingen kopi av samtalen som rollen din kan lese (ikke skrevet ennå, eller slettet etter sin tid).",
            "There is no copy of the conversation your role may read (not written yet, or deleted when its time ran out).",
        );
    };
    let log = match read_copy(&app, &id, copy.kind).await {
        Ok(l) => l,
        Err(e) => return internal(lang, e),
    };
    let title = format!("{} {id}", lang.t("Samtale", "Conversation"));
    let f = &rec.facts;
    ctx.page(
        (&title, &title),
        html! {
            dl {
                dt { (lang.t("Kanal", "Channel")) } dd { (channel_name(lang, f.channel)) }
                dt { (lang.t("Startet (UTC)", "Started (UTC)")) } dd { (when(log.started_at_us)) }
                dt { (lang.t("Avsluttet (UTC)", "Ended (UTC)")) } dd { (when(log.ended_at_us)) " (" (log.end_reason) ")" }
                @if let Some(t) = log.handover_at_us {
                    dt { (lang.t("Overført til rådgiver (UTC)", "Handed over to an advisor (UTC)")) } dd { (when(t)) }
                }
                @if !f.advisor_id.is_empty() {
                    dt { (lang.t("Rådgiver", "Advisor")) } dd { (f.advisor_id) }
                }
                dt { "Desk" } dd { (f.desk.as_str()) }
                dt { (lang.t("Tjenestekategori", "Service category")) } dd { (f.service_category.as_str()) }
                dt { (lang.t("Grunn (i revisjonsloggen)", "Reason (in the audit log)")) } dd { (reason) }
            }
            p.copy {
                (lang.t("Viser ", "Showing ")) strong { (copy_name(lang, copy.kind)) } " (" code { (copy.kind.as_str()) } "). "
                @match copy.kept_until_us {
                    Some(t) => { (lang.t("Oppbevares til ", "Kept until ")) strong { (when(t)) } (lang.t(" (UTC), så slettes den og nøkkelen makuleres.", " (UTC), then it is deleted and its key shredded.")) }
                    None => { (lang.t("Oppbevaringstiden er ikke fastsatt ennå.", "Its retention is not decided yet.")) }
                }
                @if copy.held { " " strong.flag { (lang.t("Under rettslig pålegg (legal hold): beholdes til det oppheves.", "Under a legal hold: kept until it is released.")) } }
            }
            @if log.redacted {
                p.muted { (lang.t(
                    "Analysekopien: navn, fødselsnummer, konto- og kortnumre, telefon, e-post og adresser er erstattet med plassholdere.",
                    "The analysis copy: names, national identity, account and card numbers, phone, e-mail and addresses are replaced by placeholders."
                )) }
            }
            @if !log.missing.is_empty() {
                p.flag { (lang.t("Meldinger som aldri kom fram: ", "Messages that never arrived: "))
                    (log.missing.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")) }
            }
            table.messages {
                thead { tr {
                    th scope="col" { "#" }
                    th scope="col" { (lang.t("Tid (UTC)", "Time (UTC)")) }
                    th scope="col" { (lang.t("Fra", "From")) }
                    th scope="col" { (lang.t("Tekst", "Text")) }
                } }
                tbody {
                    @for m in &log.messages {
                        tr class=(m.sender.as_str()) {
                            td { (m.sequence) }
                            td { (when(m.at_us)) }
                            td { (sender_name(lang, m.sender)) @if !m.sender_id.is_empty() { " (" (m.sender_id) ")" } }
                            td {
                                (m.text)
                                @for a in &m.attachments {
                                    br;
                                    small { (lang.t("Vedlegg: ", "Attachment: ")) (a.media_type) ", " (a.size_bytes) " B"
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
