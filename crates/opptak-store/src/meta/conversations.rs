//! Conversations (issue 17): chat with Aino or an advisor, secure messages,
//! e-mail. A conversation is a `calls` row with medium `conversation` (so
//! its keys, artifacts, retention rows, holds and deletions are a call's)
//! plus a `conversations` row, and while it is open its messages, each
//! sealed under the conversation's `chat-open` key.

use super::calls::parse_call_ids;
use super::{db, read, Bigint, SqlStore};
use crate::StoreError;
use opptak_domain::model::{CallId, Channel, ConversationFacts, Desk, ServiceCategory};

/// A conversation as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConversationRecord {
    pub facts: ConversationFacts,
    /// The client's IP address of an anonymous conversation, sealed under the
    /// `chat-open` key, until the conversation is written.
    pub sealed_origin: Option<Vec<u8>>,
    pub messages: u64,
    pub last_event_at_us: i64,
    pub ended_at_us: Option<i64>,
    pub end_reason: Option<String>,
    pub last_sequence: Option<u64>,
    /// When its copies were written (its open messages are gone then).
    pub written_at_us: Option<i64>,
}

/// One message of an open conversation, sealed.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct MessageRow {
    #[sqlx(try_from = "Bigint")]
    pub sequence: u64,
    pub message_id: String,
    pub at_us: i64,
    pub sender: String,
    pub sealed: Vec<u8>,
}

/// What became of a message handed to [`SqlStore::add_messages`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MessageOutcome {
    Stored,
    /// The same message id at the same sequence: stored before.
    Duplicate,
    /// Another message holds the sequence, or the id is used at another one.
    Conflict(String),
}

#[derive(sqlx::FromRow)]
struct ConversationColumns {
    call_id: String,
    started_at_us: i64,
    customer_ref: String,
    advisor_id: String,
    desk: String,
    service_category: String,
    ended_at_us: Option<i64>,
    end_reason: Option<String>,
    last_sequence: Option<i64>,
    channel: String,
    sealed_origin: Option<Vec<u8>>,
    handover_at_us: Option<i64>,
    #[sqlx(try_from = "Bigint")]
    messages: u64,
    last_event_at_us: i64,
    written_at_us: Option<i64>,
}

const SELECT: &str = "SELECT c.call_id, c.started_at_us, c.customer_ref, c.advisor_id, c.desk, c.service_category, \
    c.ended_at_us, c.end_reason, c.last_sequence, v.channel, v.sealed_origin, v.handover_at_us, v.messages, \
    v.last_event_at_us, v.written_at_us FROM calls c JOIN conversations v ON v.call_id = c.call_id";

impl TryFrom<ConversationColumns> for ConversationRecord {
    type Error = StoreError;

    fn try_from(r: ConversationColumns) -> Result<Self, StoreError> {
        let bad = |what: &str, v: &str| StoreError::Corrupt(format!("conversation {}: {what} {v:?}", r.call_id));
        let facts = ConversationFacts {
            conversation_id: CallId::parse(&r.call_id).map_err(|_| bad("id", &r.call_id))?,
            started_at_us: r.started_at_us,
            channel: Channel::parse(&r.channel).ok_or_else(|| bad("channel", &r.channel))?,
            customer_ref: r.customer_ref.clone(),
            advisor_id: r.advisor_id.clone(),
            desk: Desk::parse(&r.desk).ok_or_else(|| bad("desk", &r.desk))?,
            service_category: ServiceCategory::parse(&r.service_category)
                .ok_or_else(|| bad("service category", &r.service_category))?,
            handover_at_us: r.handover_at_us,
        };
        Ok(Self {
            facts,
            sealed_origin: r.sealed_origin,
            messages: r.messages,
            last_event_at_us: r.last_event_at_us,
            ended_at_us: r.ended_at_us,
            end_reason: r.end_reason,
            last_sequence: r.last_sequence.map(|s| s as u64),
            written_at_us: r.written_at_us,
        })
    }
}

impl SqlStore {
    /// Stores a new conversation. `Ok(None)`: stored; `Ok(Some(existing))`:
    /// a conversation of that id exists (the caller compares). A call of that
    /// id is a conflict.
    pub(super) async fn start_conversation(
        &self,
        facts: &ConversationFacts,
        sealed_origin: Option<&[u8]>,
        at_us: i64,
    ) -> Result<Option<ConversationRecord>, StoreError> {
        let id = &facts.conversation_id;
        let mut tx = self.begin().await?;
        let medium: Option<String> = sqlx::query_scalar("SELECT medium FROM calls WHERE call_id = $1")
            .bind(id.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(read("calls row"))?;
        match medium.as_deref() {
            Some("conversation") => {
                drop(tx);
                return self.load_conversation(id).await;
            }
            Some(_) => {
                return Err(StoreError::Conflict(format!(
                    "{id} is the id of a call; a conversation needs an id of its own"
                )))
            }
            None => {}
        }
        sqlx::query(
            "INSERT INTO calls (call_id, started_at_us, direction, customer_ref, advisor_id, desk, \
             service_category, ki_enabled, customer_informed, codec, sample_rate_hz, channel_roles, state, \
             created_at_us, updated_at_us, medium) \
             VALUES ($1, $2, 'inbound', $3, $4, $5, $6, 0, 0, 'text', 0, '', 'open', $7, $7, 'conversation')",
        )
        .bind(id.as_str())
        .bind(facts.started_at_us)
        .bind(facts.customer_ref.as_str())
        .bind(facts.advisor_id.as_str())
        .bind(facts.desk.as_str())
        .bind(facts.service_category.as_str())
        .bind(at_us)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        sqlx::query(
            "INSERT INTO conversations (call_id, channel, sealed_origin, handover_at_us, messages, last_event_at_us) \
             VALUES ($1, $2, $3, $4, 0, $5)",
        )
        .bind(id.as_str())
        .bind(facts.channel.as_str())
        .bind(sealed_origin.map(<[u8]>::to_vec))
        .bind(facts.handover_at_us)
        .bind(at_us)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(None)
    }

    pub(super) async fn load_conversation(&self, id: &CallId) -> Result<Option<ConversationRecord>, StoreError> {
        let row: Option<ConversationColumns> = sqlx::query_as(&format!("{SELECT} WHERE c.call_id = $1"))
            .bind(id.as_str())
            .fetch_optional(&self.pool())
            .await
            .map_err(read("conversations row"))?;
        row.map(ConversationRecord::try_from).transpose()
    }

    /// Stores messages of one conversation (sealed by the caller), each
    /// once: the outcome of each, in order. Counts new ones on the row.
    pub(super) async fn add_messages(
        &self,
        id: &CallId,
        messages: &[MessageRow],
        at_us: i64,
    ) -> Result<Vec<MessageOutcome>, StoreError> {
        let mut tx = self.begin().await?;
        let mut out = Vec::with_capacity(messages.len());
        let mut stored = 0i64;
        for m in messages {
            let existing: Option<(i64, String)> = sqlx::query_as(
                "SELECT sequence, message_id FROM conversation_messages \
                 WHERE call_id = $1 AND (sequence = $2 OR message_id = $3)",
            )
            .bind(id.as_str())
            .bind(m.sequence as i64)
            .bind(m.message_id.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(read("conversation_messages row"))?;
            let outcome = match existing {
                None => {
                    sqlx::query(
                        "INSERT INTO conversation_messages (call_id, sequence, message_id, at_us, sender, sealed) \
                         VALUES ($1, $2, $3, $4, $5, $6)",
                    )
                    .bind(id.as_str())
                    .bind(m.sequence as i64)
                    .bind(m.message_id.as_str())
                    .bind(m.at_us)
                    .bind(m.sender.as_str())
                    .bind(m.sealed.as_slice())
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                    stored += 1;
                    MessageOutcome::Stored
                }
                Some((seq, mid)) if seq as u64 == m.sequence && mid == m.message_id => MessageOutcome::Duplicate,
                Some((seq, mid)) if seq as u64 == m.sequence => {
                    MessageOutcome::Conflict(format!("sequence {seq} already holds message {mid:?}"))
                }
                Some((seq, _)) => MessageOutcome::Conflict(format!(
                    "message id {:?} was stored at sequence {seq}, not {}",
                    m.message_id, m.sequence
                )),
            };
            out.push(outcome);
        }
        sqlx::query("UPDATE conversations SET messages = messages + $1, last_event_at_us = $2 WHERE call_id = $3")
            .bind(stored)
            .bind(at_us)
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        sqlx::query("UPDATE calls SET updated_at_us = $1 WHERE call_id = $2")
            .bind(at_us)
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(out)
    }

    pub(super) async fn conversation_messages(&self, id: &CallId) -> Result<Vec<MessageRow>, StoreError> {
        sqlx::query_as(
            "SELECT sequence, message_id, at_us, sender, sealed FROM conversation_messages \
             WHERE call_id = $1 ORDER BY sequence",
        )
        .bind(id.as_str())
        .fetch_all(&self.pool())
        .await
        .map_err(read("conversation_messages row"))
    }

    /// Aino handed the conversation over to an advisor; `desk` and
    /// `category` replace the start's when given.
    pub(super) async fn hand_over(
        &self,
        id: &CallId,
        advisor_id: &str,
        desk: Option<Desk>,
        category: Option<ServiceCategory>,
        at_us: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE calls SET advisor_id = $1, desk = COALESCE($2, desk), \
             service_category = COALESCE($3, service_category), updated_at_us = $4 WHERE call_id = $5",
        )
        .bind(advisor_id)
        .bind(desk.map(Desk::as_str))
        .bind(category.map(ServiceCategory::as_str))
        .bind(at_us)
        .bind(id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        sqlx::query(
            "UPDATE conversations SET handover_at_us = COALESCE(handover_at_us, $1), last_event_at_us = $1 \
             WHERE call_id = $2",
        )
        .bind(at_us)
        .bind(id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    /// Ends an open conversation (once; a second end changes nothing).
    pub(super) async fn end_conversation(
        &self,
        id: &CallId,
        ended_at_us: i64,
        reason: &str,
        last_sequence: u64,
    ) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "UPDATE calls SET ended_at_us = $1, end_reason = $2, last_sequence = $3, state = 'ended', \
             updated_at_us = $1 WHERE call_id = $4 AND ended_at_us IS NULL AND medium = 'conversation'",
        )
        .bind(ended_at_us)
        .bind(reason)
        .bind(last_sequence as i64)
        .bind(id.as_str())
        .execute(&self.pool())
        .await
        .map_err(db)?
        .rows_affected();
        Ok(n == 1)
    }

    /// The copies were written: the open messages and the sealed origin go
    /// (the caller shreds the `chat-open` key they were sealed under).
    pub(super) async fn conversation_written(&self, id: &CallId, at_us: i64) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM conversation_messages WHERE call_id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        sqlx::query("UPDATE conversations SET written_at_us = $1, sealed_origin = NULL WHERE call_id = $2")
            .bind(at_us)
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    /// Ended conversations whose copies are not written yet.
    pub(super) async fn conversations_to_write(&self, limit: u32) -> Result<Vec<CallId>, StoreError> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT c.call_id FROM calls c JOIN conversations v ON v.call_id = c.call_id \
             WHERE c.ended_at_us IS NOT NULL AND v.written_at_us IS NULL ORDER BY c.ended_at_us LIMIT $1",
        )
        .bind(limit as i64)
        .fetch_all(&self.pool())
        .await
        .map_err(read("conversations row"))?;
        parse_call_ids(&ids, "conversations")
    }

    /// Open conversations with no event since `before_us`, with their last event.
    pub(super) async fn idle_conversations(
        &self,
        before_us: i64,
        limit: u32,
    ) -> Result<Vec<(CallId, i64)>, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT c.call_id, v.last_event_at_us FROM calls c JOIN conversations v ON v.call_id = c.call_id \
             WHERE c.ended_at_us IS NULL AND v.last_event_at_us < $1 ORDER BY v.last_event_at_us LIMIT $2",
        )
        .bind(before_us)
        .bind(limit as i64)
        .fetch_all(&self.pool())
        .await
        .map_err(read("conversations row"))?;
        let (ids, times): (Vec<String>, Vec<i64>) = rows.into_iter().unzip();
        Ok(parse_call_ids(&ids, "conversations")?.into_iter().zip(times).collect())
    }

    /// A customer's conversations started at or after `since_us`, oldest first.
    pub(super) async fn conversations_of_customer(
        &self,
        customer_ref: &str,
        since_us: i64,
    ) -> Result<Vec<ConversationRecord>, StoreError> {
        let rows: Vec<ConversationColumns> = sqlx::query_as(&format!(
            "{SELECT} WHERE c.medium = 'conversation' AND c.customer_ref = $1 AND c.started_at_us >= $2 \
             ORDER BY c.started_at_us, c.call_id"
        ))
        .bind(customer_ref)
        .bind(since_us)
        .fetch_all(&self.pool())
        .await
        .map_err(read("conversations row"))?;
        rows.into_iter().map(ConversationRecord::try_from).collect()
    }

    /// Conversations started at or after `since_us`, newest first; of one
    /// channel and one advisor when given.
    pub(super) async fn recent_conversations(
        &self,
        since_us: i64,
        channel: Option<Channel>,
        advisor_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ConversationRecord>, StoreError> {
        let rows: Vec<ConversationColumns> = sqlx::query_as(&format!(
            "{SELECT} WHERE c.medium = 'conversation' AND c.started_at_us >= $1 \
             AND ($2 = '' OR v.channel = $2) AND ($3 = '' OR c.advisor_id = $3) \
             ORDER BY c.started_at_us DESC, c.call_id LIMIT $4"
        ))
        .bind(since_us)
        .bind(channel.map_or("", Channel::as_str))
        .bind(advisor_id.unwrap_or(""))
        .bind(limit as i64)
        .fetch_all(&self.pool())
        .await
        .map_err(read("conversations row"))?;
        rows.into_iter().map(ConversationRecord::try_from).collect()
    }
}
