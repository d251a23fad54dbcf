//! The customer archive API (issue 17, section 3): the online bank reads one
//! customer's conversations of the last 3 years, as the privacy notice
//! promises ("available to the customer in the online bank for 3 years").
//!
//! - `GET /api/v1/customers/{customer_ref}/conversations`: the customer's
//!   conversations whose `chat-customer` copy is kept, oldest first;
//! - `GET /api/v1/customers/{customer_ref}/conversations/{id}`: that copy,
//!   the conversation's log.
//!
//! The caller is a service, not a person: an OIDC client-credentials token
//! of one of `web.archive_clients`, naming no opptak role
//! ([`crate::oidc::OidcVerifier::verify_client`]). A person's token or
//! session is refused here (403), and an archive client's token is refused
//! on every staff route (`verify`). What is shown: only logged-in
//! conversations of that customer (anonymous ones have no customer copy),
//! started within 3 years by the service's clock, whose customer copy is
//! still readable (the sweeper deletes it and shreds its key when its 3
//! years from the end of the conversation are over). A conversation of
//! another customer, an unknown one and one outside the window all answer
//! the same 404.
//!
//! Every request is written to the audit log before anything is decrypted,
//! refusals included: actor `client:<id>`, role `archive-client`, action
//! `archive.list` (subject `customer:<ref>`) or `archive.read` (subject
//! `customer:<ref> conversation:<id>`).

use super::api::{api_error, internal_json, ApiError};
use super::conversations::{copies, read_copy};
use super::{App, Ctx};
use crate::oidc::{ClientPrincipal, TokenError};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use opptak_domain::conversation::{Attachment, ConversationLog, Message};
use opptak_domain::model::CallId;
use opptak_domain::retention::ArtifactKind;
use opptak_domain::time::add_years;
use serde::Serialize;
use std::sync::Arc;
use utoipa::ToSchema;

pub(super) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/api/v1/customers/{customer_ref}/conversations", get(list))
        .route("/api/v1/customers/{customer_ref}/conversations/{id}", get(read))
}

/// The role archive clients are audited under.
const ROLE: &str = "archive-client";
/// How long the customer sees a conversation.
const YEARS: u32 = 3;
/// Longer customer references are refused (they are pseudonymous ids).
const MAX_REF_BYTES: usize = 128;

/// A customer's conversation in the archive (no content).
#[derive(Serialize, ToSchema)]
pub(crate) struct ArchivedConversation {
    conversation_id: String,
    /// `aino_chatbot`, `advisor_chat`, `secure_message` or `email`.
    channel: String,
    /// Microseconds since the Unix epoch.
    started_at_us: i64,
    ended_at_us: Option<i64>,
    /// Messages in the conversation.
    messages: u64,
    /// When the customer copy is deleted (3 years after the end).
    kept_until_us: Option<i64>,
}

/// The customer's conversations of the last 3 years.
#[derive(Serialize, ToSchema)]
pub(crate) struct ArchiveListing {
    customer_ref: String,
    /// Conversations started before this are not shown.
    since_us: i64,
    conversations: Vec<ArchivedConversation>,
}

/// A document sent with a message: its reference, never its content.
#[derive(Serialize, ToSchema)]
pub(crate) struct AttachmentView {
    reference: String,
    media_type: String,
    size_bytes: u64,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct MessageView {
    sequence: u64,
    message_id: String,
    at_us: i64,
    /// `customer`, `bot` (Aino) or `advisor`.
    sender: String,
    /// The advisor's id on an advisor's message.
    #[serde(skip_serializing_if = "String::is_empty")]
    sender_id: String,
    text: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    attachments: Vec<AttachmentView>,
}

/// The conversation's log as kept in the customer copy.
#[derive(Serialize, ToSchema)]
pub(crate) struct ConversationLogView {
    conversation_id: String,
    channel: String,
    customer_ref: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    advisor_id: String,
    desk: String,
    service_category: String,
    started_at_us: i64,
    ended_at_us: i64,
    end_reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    handover_at_us: Option<i64>,
    messages: Vec<MessageView>,
    /// Sequences announced that never arrived.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    missing: Vec<u64>,
}

impl From<ConversationLog> for ConversationLogView {
    fn from(l: ConversationLog) -> Self {
        let attachment = |a: Attachment| AttachmentView {
            reference: a.reference,
            media_type: a.media_type,
            size_bytes: a.size_bytes,
        };
        let message = |m: Message| MessageView {
            sequence: m.sequence,
            message_id: m.message_id,
            at_us: m.at_us,
            sender: m.sender.as_str().to_owned(),
            sender_id: m.sender_id,
            text: m.text,
            attachments: m.attachments.into_iter().map(attachment).collect(),
        };
        Self {
            conversation_id: l.conversation_id,
            channel: l.channel.as_str().to_owned(),
            customer_ref: l.customer_ref,
            advisor_id: l.advisor_id,
            desk: l.desk.as_str().to_owned(),
            service_category: l.service_category.as_str().to_owned(),
            started_at_us: l.started_at_us,
            ended_at_us: l.ended_at_us,
            end_reason: l.end_reason,
            handover_at_us: l.handover_at_us,
            messages: l.messages.into_iter().map(message).collect(),
            missing: l.missing,
        }
    }
}

/// A customer reference as it may appear in a path and the audit log.
fn usable_ref(r: &str) -> bool {
    !r.is_empty() && r.len() <= MAX_REF_BYTES && r.chars().all(|c| !c.is_control() && !c.is_whitespace())
}

impl App {
    /// The archive client calling, or the refusal to send (audited as a
    /// refused `action` on `subject`, naming the person when a person's
    /// token or session tried).
    async fn archive_client(
        &self,
        ctx: &Ctx,
        headers: &HeaderMap,
        action: &str,
        subject: &str,
    ) -> Result<ClientPrincipal, Response> {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim);
        let refuse = |status: StatusCode, msg: &str, challenge: Option<&'static str>| {
            let mut r = api_error(status, msg);
            if let Some(v) = challenge {
                r.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(v));
            }
            r
        };
        let Some(token) = bearer else {
            return Err(match &ctx.session {
                Some((user, _)) => {
                    if let Err(e) = self
                        .record(
                            &user.actor(),
                            user.role.as_str(),
                            action,
                            subject,
                            "a session reaches no archive route",
                            "refused",
                        )
                        .await
                    {
                        return Err(internal_json(e));
                    }
                    refuse(
                        StatusCode::FORBIDDEN,
                        "the customer archive is for archive clients only",
                        None,
                    )
                }
                None => refuse(
                    StatusCode::UNAUTHORIZED,
                    "an archive client's bearer token is required",
                    None,
                ),
            });
        };
        let Some(oidc) = &self.oidc else {
            let reason = "no OIDC issuer configured";
            if let Err(e) = self.record("-", "-", action, subject, reason, "refused").await {
                return Err(internal_json(e));
            }
            return Err(refuse(StatusCode::UNAUTHORIZED, reason, None));
        };
        match oidc.verify_client(token).await {
            Ok(client) => Ok(client),
            Err(err) => {
                // A person's valid token: name them in the log.
                let (actor, role) = match &err {
                    TokenError::NotArchiveClient => match oidc.verify(token).await {
                        Ok(p) => (p.user.actor(), p.user.role.as_str().to_owned()),
                        Err(_) => ("-".to_owned(), "-".to_owned()),
                    },
                    _ => ("-".to_owned(), "-".to_owned()),
                };
                if let Err(e) = self
                    .record(&actor, &role, action, subject, err.reason(), "refused")
                    .await
                {
                    return Err(internal_json(e));
                }
                Err(refuse(err.status(), &err.to_string(), err.www_authenticate()))
            }
        }
    }
}

/// One customer's conversations of the last 3 years, oldest first: those
/// whose customer copy is kept and readable. Audited as `archive.list`.
#[utoipa::path(get, path = "/api/v1/customers/{customer_ref}/conversations", tag = "archive",
    params(("customer_ref" = String, Path, description = "The customer's (pseudonymous) reference")),
    responses(
        (status = 200, description = "The customer's conversations", body = ArchiveListing),
        (status = 401, description = "No token, or the token was refused", body = ApiError),
        (status = 403, description = "Not an archive client's token (a person's token or session)", body = ApiError),
        (status = 404, description = "Not a customer reference", body = ApiError),
    ),
    security(("bearer" = [])))]
async fn list(State(app): State<Arc<App>>, ctx: Ctx, headers: HeaderMap, Path(customer_ref): Path<String>) -> Response {
    let action = "archive.list";
    let subject = if usable_ref(&customer_ref) {
        format!("customer:{customer_ref}")
    } else {
        "customer:(unusable reference)".to_owned()
    };
    let client = match app.archive_client(&ctx, &headers, action, &subject).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    if !usable_ref(&customer_ref) {
        if let Err(e) = app
            .record(
                &client.actor(),
                ROLE,
                action,
                &subject,
                "unusable customer reference",
                "refused",
            )
            .await
        {
            return internal_json(e);
        }
        return api_error(StatusCode::NOT_FOUND, "unknown customer");
    }
    let since_us = window_start(app.edges.vault.clock().now_us());
    let records = match app
        .edges
        .vault
        .meta()
        .conversations_of_customer(&customer_ref, since_us)
        .await
    {
        Ok(r) => r,
        Err(e) => return internal_json(e.into()),
    };
    let mut shown = Vec::new();
    for r in records
        .into_iter()
        .filter(|r| r.facts.logged_in() && r.facts.customer_ref == customer_ref)
    {
        let kept = match copies(&app, &r.facts.conversation_id).await {
            Ok(c) => c.into_iter().find(|c| c.kind == ArtifactKind::ChatCustomer),
            Err(e) => return internal_json(e),
        };
        if let Some(copy) = kept {
            shown.push(ArchivedConversation {
                conversation_id: r.facts.conversation_id.to_string(),
                channel: r.facts.channel.as_str().to_owned(),
                started_at_us: r.facts.started_at_us,
                ended_at_us: r.ended_at_us,
                messages: r.messages,
                kept_until_us: copy.kept_until_us,
            });
        }
    }
    if let Err(e) = app
        .record(
            &client.actor(),
            ROLE,
            action,
            &subject,
            &format!("{} conversations", shown.len()),
            "allowed",
        )
        .await
    {
        return internal_json(e);
    }
    Json(ArchiveListing {
        customer_ref,
        since_us,
        conversations: shown,
    })
    .into_response()
}

/// The earliest start shown at `now_us`: the first instant whose 3
/// calendar years (as retention counts them) reach past now.
fn window_start(now_us: i64) -> i64 {
    let day = 86_400_000_000;
    let mut lo = now_us - (i64::from(YEARS) * 366 + 1) * day;
    let mut hi = now_us;
    // add_years is monotonic: bisect.
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if add_years(mid, YEARS) > now_us {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    lo
}

/// One conversation of the customer: the customer copy's log. Audited as
/// `archive.read`; another customer's conversation, an unknown one, one
/// started more than 3 years ago or without a readable customer copy is
/// refused (and audited) with the same 404.
#[utoipa::path(get, path = "/api/v1/customers/{customer_ref}/conversations/{id}", tag = "archive",
    params(("customer_ref" = String, Path, description = "The customer's (pseudonymous) reference"),
           ("id" = String, Path, description = "The conversation id")),
    responses(
        (status = 200, description = "The conversation's log", body = ConversationLogView),
        (status = 401, description = "No token, or the token was refused", body = ApiError),
        (status = 403, description = "Not an archive client's token (a person's token or session)", body = ApiError),
        (status = 404, description = "Not a conversation of this customer within 3 years", body = ApiError),
    ),
    security(("bearer" = [])))]
async fn read(
    State(app): State<Arc<App>>,
    ctx: Ctx,
    headers: HeaderMap,
    Path((customer_ref, id)): Path<(String, String)>,
) -> Response {
    let action = "archive.read";
    let usable = usable_ref(&customer_ref) && CallId::parse(&id).is_ok();
    let subject = if usable {
        format!("customer:{customer_ref} conversation:{id}")
    } else {
        "customer:(unusable reference)".to_owned()
    };
    let client = match app.archive_client(&ctx, &headers, action, &subject).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let conversation_id = match decide_read(&app, &customer_ref, &id, usable).await {
        Ok(Ok(c)) => c,
        Ok(Err(why)) => {
            return match app
                .record(&client.actor(), ROLE, action, &subject, why, "refused")
                .await
            {
                Ok(()) => api_error(StatusCode::NOT_FOUND, "no such conversation of this customer"),
                Err(e) => internal_json(e),
            }
        }
        Err(e) => return internal_json(e),
    };
    if let Err(e) = app
        .record(&client.actor(), ROLE, action, &subject, "customer archive", "allowed")
        .await
    {
        return internal_json(e);
    }
    match read_copy(&app, &conversation_id, ArtifactKind::ChatCustomer).await {
        Ok(log) if log.customer_ref == customer_ref => Json(ConversationLogView::from(log)).into_response(),
        Ok(_) => internal_json(anyhow::anyhow!(
            "the customer copy of {conversation_id} names another customer than its conversation"
        )),
        Err(e) => internal_json(e),
    }
}

/// Whether the customer's archive shows conversation `id`: its id, or why
/// not (for the audit log; the caller answers 404 either way).
async fn decide_read(
    app: &App,
    customer_ref: &str,
    id: &str,
    usable: bool,
) -> anyhow::Result<Result<CallId, &'static str>> {
    let conversation_id = match CallId::parse(id) {
        Ok(c) if usable => c,
        _ => return Ok(Err("unusable reference")),
    };
    let Some(rec) = app.edges.vault.meta().load_conversation(&conversation_id).await? else {
        return Ok(Err("unknown conversation"));
    };
    if !rec.facts.logged_in() || rec.facts.customer_ref != customer_ref {
        return Ok(Err("another customer's conversation"));
    }
    if rec.facts.started_at_us < window_start(app.edges.vault.clock().now_us()) {
        return Ok(Err("started more than 3 years ago"));
    }
    let kept = copies(app, &conversation_id)
        .await?
        .into_iter()
        .any(|c| c.kind == ArtifactKind::ChatCustomer);
    if !kept {
        return Ok(Err("no customer copy kept"));
    }
    Ok(Ok(conversation_id))
}
