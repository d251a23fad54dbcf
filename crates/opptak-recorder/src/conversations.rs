//! The messages role (issue 17): conversations in, sealed copies out.
//!
//! Chat systems (Aino, advisor chat, secure messages, e-mail) write
//! `opptak.v1.ConversationEvent`s to `opptak.messages.v1`, keyed by the
//! conversation id. [`ConversationRecorder`] consumes them in batches:
//!
//! - `ConversationStarted`: the conversation is stored (a `calls` row with
//!   medium `conversation`), and the data key the chat system sealed its
//!   texts under is kept, wrapped under our KEK, as the conversation's
//!   `chat-open` key.
//! - `ChatMessage`: opened (a text that does not open is dead-lettered),
//!   resealed in format v2 with its sender and attachments under `chat-open`,
//!   stored once per message id and sequence.
//! - `Handover`, `AnalysisObjection`: facts that change what is kept.
//! - `ConversationEnded` (or no event for `idle_end`): the conversation is
//!   written — one [`ConversationLog`] per copy the retention policy keeps,
//!   each under its own class key (the analysis copy redacted), retention
//!   rows routed — then its open messages are deleted and `chat-open` is
//!   shredded, which also makes the texts on the topic unreadable.
//!
//! Offsets are committed only after a batch's effects are durable; every
//! step is idempotent, so a replay after a crash stores nothing twice.

use crate::{dead_letter_out, DeadLetterSeal, RecorderError};
use bytes::Bytes;
use opptak_bus::{Bus, Position, Record};
use opptak_crypto::chunk::{self, Domain};
use opptak_crypto::segment::ArtifactKind as SealKind;
use opptak_crypto::{DataKey, KeyProvider};
use opptak_domain::conversation::{self, Attachment, ConversationLog, Message};
use opptak_domain::model::{CallId, ConversationFacts, KeyClass};
use opptak_domain::retention::{ArtifactKind, Tier};
use opptak_proto::convert::{self, Refusal};
use opptak_proto::v1::{self, conversation_event::Event, DeadLetterReason};
use opptak_proto::Message as _;
use opptak_retention::Retention;
use opptak_store::archive::ArchiveStore;
use opptak_store::meta::{MessageOutcome, MessageRow, StoredObject};
use opptak_store::StoreError;
use opptak_vault::{Sealing, Vault};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Told once per conversation, after its redacted analysis copy is stored:
/// topic categorization and QA sampling hang here (the root crate wires it).
#[async_trait::async_trait]
pub trait ConversationAnalysis: Send + Sync + 'static {
    /// The conversation's redacted analysis copy was stored (chat-analysis-1y key).
    async fn analyse(&self, facts: &ConversationFacts, copy: &ConversationLog) -> Result<(), String>;
}

#[derive(Clone, Debug)]
pub struct ConversationConfig {
    /// `opptak.messages.v1` (with the bus prefix).
    pub topic: String,
    pub deadletter: String,
    pub group: String,
    pub max_batch: usize,
    pub poll_wait: Duration,
    /// An open conversation with no event for this long is ended (and written).
    pub idle_end: Duration,
    /// How often to end idle conversations and write ended ones nobody wrote.
    pub housekeeping: Duration,
}

impl Default for ConversationConfig {
    fn default() -> Self {
        Self {
            topic: "opptak.messages.v1".into(),
            deadletter: "opptak.deadletter.v1".into(),
            group: "opptak-messages".into(),
            max_batch: 5_000,
            poll_wait: Duration::from_millis(200),
            idle_end: Duration::from_secs(24 * 3600),
            housekeeping: Duration::from_secs(30),
        }
    }
}

/// What the role did since it started.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConversationStats {
    pub started: u64,
    pub messages: u64,
    pub duplicates: u64,
    pub dead_letters: u64,
    pub written: u64,
    pub idle_ended: u64,
    pub objections: u64,
}

/// An open conversation this process has seen: its `chat-open` key.
struct Open {
    key: DataKey,
    ended: bool,
}

/// A message opened and resealed, waiting for its batch's transaction.
struct Pending {
    record: Record,
    row: MessageRow,
}

pub struct ConversationRecorder {
    bus: Arc<dyn Bus>,
    vault: Vault,
    retention: Retention,
    archive: Option<Arc<dyn ArchiveStore>>,
    /// KEKs shared with the chat systems (`keys.telephony_keyring`).
    shared: Option<Arc<dyn KeyProvider>>,
    analysis: Option<Arc<dyn ConversationAnalysis>>,
    cfg: ConversationConfig,
    open: HashMap<CallId, Open>,
    stats: ConversationStats,
    dead_letters: Vec<(Record, String, Refusal)>,
    /// A key was shredded since the database last scrubbed shredded keys
    /// (once per batch: a vacuum per conversation would cost more than the
    /// conversation).
    scrub: bool,
}

/// Most open conversations whose keys stay in memory; past it the cache is
/// dropped and keys are read back from the store as needed.
const MAX_CACHED: usize = 100_000;

impl ConversationRecorder {
    pub fn new(bus: Arc<dyn Bus>, vault: Vault, retention: Retention, cfg: ConversationConfig) -> Self {
        Self {
            bus,
            vault,
            retention,
            archive: None,
            shared: None,
            analysis: None,
            cfg,
            open: HashMap::new(),
            stats: ConversationStats::default(),
            dead_letters: Vec::new(),
            scrub: false,
        }
    }

    /// The KEKs shared with the chat systems; without them no conversation opens.
    pub fn with_shared_keys(mut self, shared: Option<Arc<dyn KeyProvider>>) -> Self {
        self.shared = shared;
        self
    }

    /// Archive-tier copies (investment advice) go to the WORM archive.
    pub fn with_archive(mut self, archive: Arc<dyn ArchiveStore>) -> Self {
        self.retention = self.retention.with_archive(archive.clone());
        self.archive = Some(archive);
        self
    }

    pub fn with_analysis(mut self, analysis: Arc<dyn ConversationAnalysis>) -> Self {
        self.analysis = Some(analysis);
        self
    }

    pub fn stats(&self) -> &ConversationStats {
        &self.stats
    }

    fn now_us(&self) -> i64 {
        self.vault.clock().now_us()
    }

    /// Consumes the messages topic until `shutdown`. A store outage ends
    /// one session, not the role ([`crate::outage`]).
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<ConversationStats, RecorderError> {
        let topics = [self.cfg.topic.clone()];
        tracing::info!(group = %self.cfg.group, topic = %topics[0], "messages role started");
        let mut outages = crate::outage::Outages::default();
        loop {
            let mut progressed = false;
            let e = match self.session(&topics, &mut shutdown, &mut progressed).await {
                Ok(()) => break,
                Err(e) if e.is_store_outage() => e,
                Err(e) => return Err(e),
            };
            let Some(delay) = outages.next(progressed) else {
                return Err(e);
            };
            tracing::warn!(error = %e, retry_in_s = delay.as_secs(),
                "messages role: its store is unavailable; starting over from the committed offsets once it answers");
            // What the failed batch left in memory: its dead letters, and
            // keys it may have made but not stored.
            self.dead_letters.clear();
            self.open.clear();
            if !crate::outage::store_answers("messages", &self.vault, delay, &mut shutdown).await {
                if *shutdown.borrow() {
                    break;
                }
                return Err(e);
            }
        }
        tracing::info!(stats = ?self.stats, "messages role stopped");
        Ok(self.stats)
    }

    /// One subscription, from the committed offsets until shutdown or an
    /// error; `progressed` once a batch or housekeeping went through.
    async fn session(
        &mut self,
        topics: &[String],
        shutdown: &mut watch::Receiver<bool>,
        progressed: &mut bool,
    ) -> Result<(), RecorderError> {
        let mut sub = self.bus.subscribe(&self.cfg.group, topics).await?;
        let mut last_housekeeping: Option<Instant> = None;
        loop {
            if *shutdown.borrow() {
                break;
            }
            if last_housekeeping.is_none_or(|t| t.elapsed() >= self.cfg.housekeeping) {
                last_housekeeping = Some(Instant::now());
                self.housekeeping().await?;
                *progressed = true;
            }
            let records = tokio::select! {
                r = sub.poll(self.cfg.max_batch, self.cfg.poll_wait) => r?,
                _ = shutdown.changed() => Vec::new(),
            };
            if records.is_empty() {
                continue;
            }
            let positions = self.handle_batch(records).await?;
            sub.commit(&positions)?;
            *progressed = true;
        }
        sub.flush_commits().await?;
        Ok(())
    }

    /// Handles one batch and makes its effects durable; returns the positions
    /// to commit.
    pub async fn handle_batch(&mut self, records: Vec<Record>) -> Result<Vec<Position>, RecorderError> {
        let mut seen: BTreeMap<(String, i32), i64> = BTreeMap::new();
        let mut pending: BTreeMap<CallId, Vec<Pending>> = BTreeMap::new();
        for r in records {
            let e = seen.entry((r.topic.clone(), r.partition)).or_insert(r.offset);
            *e = (*e).max(r.offset);
            self.handle(r, &mut pending).await?;
        }
        for (id, msgs) in std::mem::take(&mut pending) {
            self.store_messages(&id, msgs).await?;
        }
        self.publish_dead_letters().await?;
        self.scrub_shredded().await?;
        Ok(seen
            .into_iter()
            .map(|((topic, partition), max)| Position {
                topic,
                partition,
                next_offset: max + 1,
            })
            .collect())
    }

    async fn handle(&mut self, r: Record, pending: &mut BTreeMap<CallId, Vec<Pending>>) -> Result<(), RecorderError> {
        let ev = match v1::ConversationEvent::decode(r.payload.as_ref()) {
            Ok(ev) => ev,
            Err(e) => {
                self.dead_letter(
                    &r,
                    "",
                    Refusal::new(DeadLetterReason::Malformed, format!("not a ConversationEvent: {e}")),
                );
                return Ok(());
            }
        };
        let key_matches = r.key.as_deref() == Some(ev.conversation_id.as_bytes());
        let id = match CallId::parse(&ev.conversation_id) {
            Ok(id) if key_matches => id,
            Ok(_) => {
                let refusal = Refusal::new(
                    DeadLetterReason::KeyMismatch,
                    "the Kafka key is not the conversation id",
                );
                self.dead_letter(&r, &ev.conversation_id, refusal);
                return Ok(());
            }
            Err(e) => {
                self.dead_letter(&r, "", Refusal::new(DeadLetterReason::Malformed, e.to_string()));
                return Ok(());
            }
        };
        let Some(event) = ev.event else {
            self.dead_letter(
                &r,
                id.as_str(),
                Refusal::new(DeadLetterReason::Malformed, "no event set"),
            );
            return Ok(());
        };
        if let Event::Message(m) = event {
            match self.accept_message(&id, &m).await? {
                Ok(row) => pending.entry(id).or_default().push(Pending { record: r, row }),
                Err(refusal) => self.dead_letter(&r, id.as_str(), refusal),
            }
            return Ok(());
        }
        // Anything else may change what the messages before it are stored
        // under or whether they are accepted: store those first.
        if let Some(msgs) = pending.remove(&id) {
            self.store_messages(&id, msgs).await?;
        }
        let outcome = match event {
            Event::ConversationStarted(s) => self.start(&id, &s).await?,
            Event::Handover(h) => self.hand_over(&id, &h).await?,
            Event::AnalysisObjection(o) => self.objection(&id, &o).await?,
            Event::ConversationEnded(e) => self.end(&id, &e).await?,
            Event::Message(_) => Ok(()),
        };
        if let Err(refusal) = outcome {
            self.dead_letter(&r, id.as_str(), refusal);
        }
        Ok(())
    }

    /// The open conversation's `chat-open` key, from memory or the store.
    async fn open_state(&mut self, id: &CallId) -> Result<Result<&Open, Refusal>, RecorderError> {
        if !self.open.contains_key(id) {
            let Some(rec) = self.vault.meta().load_conversation(id).await? else {
                return Ok(Err(Refusal::new(
                    DeadLetterReason::UnknownCall,
                    format!("no ConversationStarted for {id} before this event"),
                )));
            };
            let Some(key) = self.vault.key(id, KeyClass::ChatOpen.as_str()).await? else {
                return Ok(Err(Refusal::new(
                    DeadLetterReason::AfterEnd,
                    format!("conversation {id} was written and closed"),
                )));
            };
            if self.open.len() >= MAX_CACHED {
                self.open.clear();
            }
            self.open.insert(
                id.clone(),
                Open {
                    key,
                    ended: rec.ended_at_us.is_some(),
                },
            );
        }
        Ok(self
            .open
            .get(id)
            .ok_or_else(|| Refusal::new(DeadLetterReason::UnknownCall, format!("conversation {id} is not open"))))
    }

    async fn start(&mut self, id: &CallId, s: &v1::ConversationStarted) -> Result<Result<(), Refusal>, RecorderError> {
        let facts = match convert::conversation_facts(id.clone(), s) {
            Ok(f) => f,
            Err(r) => return Ok(Err(r)),
        };
        let key = match self.open_message_key(id, s.message_key.as_ref()) {
            Ok(k) => k,
            Err(detail) => return Ok(Err(Refusal::new(DeadLetterReason::Undecryptable, detail))),
        };
        let origin = if s.sealed_ip_address.is_empty() {
            None
        } else {
            let ip = chunk::open_in(Domain::Message, &key, id.as_str(), 0, &s.sealed_ip_address)
                .ok()
                .and_then(|b| String::from_utf8(b).ok());
            let Some(ip) = ip.filter(|ip| ip.parse::<std::net::IpAddr>().is_ok()) else {
                return Ok(Err(Refusal::new(
                    DeadLetterReason::Undecryptable,
                    "sealed_ip_address does not open to an IP address (sealed for sequence 0 of this conversation?)",
                )));
            };
            Some(origin_sealing(id).seal(&key, ip.as_bytes())?)
        };
        let existing = match self
            .vault
            .meta()
            .start_conversation(&facts, origin.as_deref(), self.now_us())
            .await
        {
            Ok(e) => e,
            Err(StoreError::Conflict(detail)) => {
                return Ok(Err(Refusal::new(DeadLetterReason::DuplicateStart, detail)))
            }
            Err(e) => return Err(e.into()),
        };
        if let Some(existing) = &existing {
            let same = ConversationFacts {
                advisor_id: facts.advisor_id.clone(),
                desk: existing.facts.desk,
                service_category: existing.facts.service_category,
                handover_at_us: existing.facts.handover_at_us,
                ..facts.clone()
            } == ConversationFacts {
                advisor_id: facts.advisor_id.clone(),
                ..existing.facts.clone()
            };
            if !same {
                return Ok(Err(Refusal::new(
                    DeadLetterReason::DuplicateStart,
                    format!("conversation {id} was started before with other facts"),
                )));
            }
            self.stats.duplicates += 1;
            opptak_telemetry::metrics().conversation_event("duplicate");
        } else {
            self.stats.started += 1;
            opptak_telemetry::metrics().conversation_event("started");
        }
        // A replayed start finds the key kept the first time.
        let Some(key) = self.vault.adopt_key(id, KeyClass::ChatOpen, &key).await? else {
            return Ok(Err(Refusal::new(
                DeadLetterReason::AfterEnd,
                format!("conversation {id} was written and closed"),
            )));
        };
        let ended = existing.is_some_and(|e| e.ended_at_us.is_some());
        self.open.insert(id.clone(), Open { key, ended });
        Ok(Ok(()))
    }

    fn open_message_key(&self, id: &CallId, k: Option<&v1::TelephonyKey>) -> Result<DataKey, String> {
        let Some(shared) = &self.shared else {
            return Err("no keyring shared with the chat systems is configured (keys.telephony_keyring)".into());
        };
        let k = k.ok_or("message_key missing")?;
        if k.key_id.is_empty() || k.key_id.len() > 64 {
            return Err("message_key.key_id must be 1 to 64 bytes".into());
        }
        let key = opptak_vault::open_message_key(shared.as_ref(), id, k)
            .map_err(|e| format!("message_key (kek {:?}) does not open: {e}", k.kek_id))?;
        // Kept under an id of our own: the chat system's ids need not be unique.
        Ok(key.renamed(format!("mk-{}", uuid::Uuid::new_v4().simple())))
    }

    /// Checks, opens and reseals one message; the refusal says why not.
    async fn accept_message(
        &mut self,
        id: &CallId,
        m: &v1::ChatMessage,
    ) -> Result<Result<MessageRow, Refusal>, RecorderError> {
        let sender = match convert::check_message(m) {
            Ok(s) => s,
            Err(r) => return Ok(Err(r)),
        };
        let open = match self.open_state(id).await? {
            Ok(o) => o,
            Err(r) => return Ok(Err(r)),
        };
        if open.ended {
            return Ok(Err(Refusal::new(
                DeadLetterReason::AfterEnd,
                format!("message {} after the conversation ended", m.sequence),
            )));
        }
        let key = open.key.clone();
        let Ok(text) = chunk::open_in(Domain::Message, &key, id.as_str(), m.sequence, &m.sealed_text) else {
            return Ok(Err(Refusal::new(
                DeadLetterReason::Undecryptable,
                format!(
                    "sealed_text of message {} does not open under the conversation's key (altered, or sealed for another conversation or sequence)",
                    m.sequence
                ),
            )));
        };
        let Ok(text) = String::from_utf8(text) else {
            return Ok(Err(Refusal::new(
                DeadLetterReason::InvalidFormat,
                "the text is not UTF-8",
            )));
        };
        let at_us = m.at.as_ref().map(convert::micros).unwrap_or_else(|| self.now_us());
        let body = Message {
            sequence: m.sequence,
            message_id: m.message_id.clone(),
            at_us,
            sender,
            sender_id: m.sender_id.clone(),
            text,
            attachments: m
                .attachments
                .iter()
                .map(|a| Attachment {
                    reference: a.reference.clone(),
                    media_type: a.media_type.clone(),
                    size_bytes: a.size_bytes,
                })
                .collect(),
        };
        let artifact_id = format!("m/{}", m.sequence);
        let sealed = message_sealing(id, &artifact_id).seal_json(&key, &body)?;
        Ok(Ok(MessageRow {
            sequence: m.sequence,
            message_id: m.message_id.clone(),
            at_us,
            sender: sender.as_str().to_owned(),
            sealed,
        }))
    }

    async fn store_messages(&mut self, id: &CallId, msgs: Vec<Pending>) -> Result<(), RecorderError> {
        let rows: Vec<MessageRow> = msgs.iter().map(|p| p.row.clone()).collect();
        let outcomes = self.vault.meta().add_messages(id, &rows, self.now_us()).await?;
        for (p, o) in msgs.into_iter().zip(outcomes) {
            match o {
                MessageOutcome::Stored => {
                    self.stats.messages += 1;
                    opptak_telemetry::metrics().conversation_event("message");
                }
                MessageOutcome::Duplicate => {
                    self.stats.duplicates += 1;
                    opptak_telemetry::metrics().conversation_event("duplicate");
                }
                MessageOutcome::Conflict(detail) => self.dead_letter(
                    &p.record,
                    id.as_str(),
                    Refusal::new(DeadLetterReason::ConflictingChunk, detail),
                ),
            }
        }
        Ok(())
    }

    async fn hand_over(&mut self, id: &CallId, h: &v1::Handover) -> Result<Result<(), Refusal>, RecorderError> {
        let Some(rec) = self.vault.meta().load_conversation(id).await? else {
            return Ok(Err(Refusal::new(
                DeadLetterReason::UnknownCall,
                format!("no conversation {id}"),
            )));
        };
        if rec.ended_at_us.is_some() {
            return Ok(Err(Refusal::new(
                DeadLetterReason::AfterEnd,
                "handover after the conversation ended",
            )));
        }
        if h.advisor_id.is_empty() || h.advisor_id.len() > 256 {
            return Ok(Err(Refusal::new(
                DeadLetterReason::InvalidFormat,
                "Handover.advisor_id missing or longer than 256 bytes",
            )));
        }
        if !rec.facts.logged_in() {
            return Ok(Err(Refusal::new(
                DeadLetterReason::InvalidFormat,
                "a handover to an advisor needs a logged-in conversation",
            )));
        }
        let desk = Some(convert::desk(h.desk)).filter(|d| *d != opptak_domain::model::Desk::Unspecified);
        let category = Some(convert::service_category(h.service_category))
            .filter(|c| *c != opptak_domain::model::ServiceCategory::Unspecified);
        let at = h.at.as_ref().map(convert::micros).unwrap_or_else(|| self.now_us());
        self.vault
            .meta()
            .hand_over(id, &h.advisor_id, desk, category, at)
            .await?;
        tracing::info!(conversation = %id, advisor = %h.advisor_id, "conversation handed over to an advisor");
        Ok(Ok(()))
    }

    /// The customer objects to the analysis of their chat logs: recorded for
    /// the customer, and every analysis copy of their conversations (open
    /// ones included) made unreadable and deleted at once.
    async fn objection(
        &mut self,
        id: &CallId,
        o: &v1::AnalysisObjection,
    ) -> Result<Result<(), Refusal>, RecorderError> {
        let Some(rec) = self.vault.meta().load_conversation(id).await? else {
            return Ok(Err(Refusal::new(
                DeadLetterReason::UnknownCall,
                format!("no conversation {id}"),
            )));
        };
        if !rec.facts.logged_in() {
            return Ok(Err(Refusal::new(
                DeadLetterReason::InvalidFormat,
                "an objection needs a logged-in conversation (an anonymous one names no customer)",
            )));
        }
        let by = if o.recorded_by.is_empty() {
            "customer".to_owned()
        } else {
            o.recorded_by.chars().take(256).collect()
        };
        let at = o.at.as_ref().map(convert::micros).unwrap_or_else(|| self.now_us());
        let customer = rec.facts.customer_ref.clone();
        self.vault
            .meta()
            .record_objection(&opptak_store::meta::Objection {
                customer_ref: customer.clone(),
                kind: "chat-analysis".into(),
                at_us: at,
                recorded_by: by.clone(),
                reason: format!("AnalysisObjection in conversation {id}"),
            })
            .await?;
        let reason = format!("the customer objected to the analysis of their chat logs (recorded by {by})");
        let mut shredded = 0;
        for c in self.vault.meta().conversations_of_customer(&customer, 0).await? {
            let cid = &c.facts.conversation_id;
            if self
                .vault
                .purge_class(cid, KeyClass::ChatAnalysis1y.as_str(), &reason, &by, self.now_us())
                .await?
            {
                shredded += 1;
            }
            self.retention
                .route(cid)
                .await
                .map_err(|e| RecorderError::Conversation(e.to_string()))?;
        }
        self.stats.objections += 1;
        opptak_telemetry::metrics().conversation_event("objection");
        tracing::info!(conversation = %id, shredded, "objection to analysis: the customer's analysis copies shredded");
        Ok(Ok(()))
    }

    async fn end(&mut self, id: &CallId, e: &v1::ConversationEnded) -> Result<Result<(), Refusal>, RecorderError> {
        let Some(rec) = self.vault.meta().load_conversation(id).await? else {
            return Ok(Err(Refusal::new(
                DeadLetterReason::UnknownCall,
                format!("no conversation {id}"),
            )));
        };
        if rec.ended_at_us.is_some() {
            // A replay, or a second end: nothing changes.
            self.stats.duplicates += 1;
            self.write(id).await?;
            return Ok(Ok(()));
        }
        let at = e
            .ended_at
            .as_ref()
            .map(convert::micros)
            .unwrap_or_else(|| self.now_us());
        let reason = convert::conversation_end_reason(e.reason);
        self.vault
            .meta()
            .end_conversation(id, at.max(rec.facts.started_at_us), reason, e.last_sequence)
            .await?;
        if let Some(o) = self.open.get_mut(id) {
            o.ended = true;
        }
        self.write(id).await?;
        Ok(Ok(()))
    }

    /// Ends idle conversations and writes ended ones not written yet (a
    /// crash between end and write, or another process's).
    pub async fn housekeeping(&mut self) -> Result<(), RecorderError> {
        let now = self.now_us();
        let before = now - self.cfg.idle_end.as_micros() as i64;
        loop {
            let idle = self.vault.meta().idle_conversations(before, 500).await?;
            if idle.is_empty() {
                break;
            }
            for (id, last) in idle {
                if self.vault.meta().end_conversation(&id, last, "idle_timeout", 0).await? {
                    self.stats.idle_ended += 1;
                    opptak_telemetry::metrics().conversation_event("idle_ended");
                    tracing::info!(conversation = %id, "no event for messages.idle_end_s: conversation ended");
                }
                if let Some(o) = self.open.get_mut(&id) {
                    o.ended = true;
                }
            }
        }
        loop {
            let ids = self.vault.meta().conversations_to_write(500).await?;
            if ids.is_empty() {
                break;
            }
            for id in ids {
                self.write(&id).await?;
            }
        }
        self.scrub_shredded().await
    }

    async fn scrub_shredded(&mut self) -> Result<(), RecorderError> {
        if std::mem::take(&mut self.scrub) {
            self.vault.meta().scrub_shredded().await?;
        }
        Ok(())
    }

    /// Writes an ended conversation's copies (idempotent): every copy the
    /// policy keeps, each under its class key, with its retention rows; then
    /// the open messages go and `chat-open` is shredded.
    pub async fn write(&mut self, id: &CallId) -> Result<(), RecorderError> {
        let meta = self.vault.meta().clone();
        let Some(rec) = meta.load_conversation(id).await? else {
            return Ok(());
        };
        if rec.written_at_us.is_some() || rec.ended_at_us.is_none() {
            return Ok(());
        }
        let (_, facts) = self
            .retention
            .conversation_facts(id)
            .await
            .map_err(|e| RecorderError::Conversation(e.to_string()))?;
        let Some(open_key) = self.vault.key(id, KeyClass::ChatOpen.as_str()).await? else {
            return Err(RecorderError::Conversation(format!(
                "conversation {id} ended unwritten but its chat-open key is gone"
            )));
        };
        let rows = meta.conversation_messages(id).await?;
        let mut messages = Vec::with_capacity(rows.len());
        for r in &rows {
            let m: Message = message_sealing(id, &format!("m/{}", r.sequence)).open_json(&open_key, &r.sealed)?;
            messages.push(m);
        }
        let ip_address = match &rec.sealed_origin {
            Some(s) => Some(String::from_utf8_lossy(&origin_sealing(id).open(&open_key, s)?).into_owned()),
            None => None,
        };
        let last = rec
            .last_sequence
            .unwrap_or(0)
            .max(messages.last().map_or(0, |m| m.sequence));
        let seqs: Vec<u64> = messages.iter().map(|m| m.sequence).collect();
        let log = ConversationLog {
            conversation_id: id.to_string(),
            channel: rec.facts.channel,
            customer_ref: rec.facts.customer_ref.clone(),
            ip_address,
            advisor_id: rec.facts.advisor_id.clone(),
            desk: rec.facts.desk,
            service_category: rec.facts.service_category,
            started_at_us: rec.facts.started_at_us,
            ended_at_us: rec.ended_at_us.unwrap_or(rec.facts.started_at_us),
            end_reason: rec.end_reason.clone().unwrap_or_default(),
            handover_at_us: rec.facts.handover_at_us,
            messages,
            missing: conversation::missing(&seqs, last),
            redacted: false,
        };
        let existing: Vec<String> = meta.artifacts(id).await?.into_iter().map(|a| a.kind).collect();
        let mut analysis_copy = None;
        let now = self.now_us();
        for kind in ArtifactKind::CONVERSATION {
            let d = self.retention.policy.decide(&facts, kind);
            if !d.kept || d.expired(now) || existing.iter().any(|k| k == kind.as_str()) {
                continue;
            }
            let Some(class) = d.class else { continue };
            // A shredded class (the customer objected) gets nothing.
            let Some(key) = self.vault.key_or_create(id, class).await? else {
                continue;
            };
            let body = if kind == ArtifactKind::ChatAnalysis {
                let r = log.redacted();
                analysis_copy = Some(r.clone());
                r
            } else {
                log.clone()
            };
            let json = serde_json_bytes(&body)?;
            let artifact_id = format!("{}-{}", kind.as_str(), uuid::Uuid::new_v4().simple());
            let what = Sealing {
                call_id: id,
                class: class.as_str(),
                kind: SealKind::Conversation,
                artifact_id: &artifact_id,
            };
            match (&self.archive, d.tier) {
                (Some(archive), Tier::Archive) => {
                    let path = format!("archive/conversations/{id}/{artifact_id}.optk");
                    let sealed = what.seal(&key, &json)?;
                    let bytes = sealed.len() as u64;
                    archive
                        .put_retained(&path, Bytes::from(sealed), d.expires_at_us)
                        .await?;
                    if d.held {
                        archive.set_legal_hold(&path, true).await?;
                    }
                    meta.add_artifact(
                        id,
                        &artifact_id,
                        kind.as_str(),
                        key.id(),
                        &StoredObject { path, bytes },
                        now,
                    )
                    .await?;
                }
                _ => {
                    let path = format!("conversations/{id}/{artifact_id}.optk");
                    self.vault
                        .store_artifact(what, &key, kind.as_str(), path, &json)
                        .await?;
                }
            }
        }
        let artifacts = meta.artifacts(id).await?;
        let retention_rows = self.retention.rows(id, &facts, &artifacts);
        meta.put_retention(&retention_rows).await?;
        if let (Some(copy), Some(analysis)) = (&analysis_copy, &self.analysis) {
            if let Err(e) = analysis.analyse(&rec.facts, copy).await {
                tracing::warn!(conversation = %id, error = %e, "conversation analysis failed; the copy is kept");
            }
        }
        meta.conversation_written(id, now).await?;
        self.vault
            .shred(
                id,
                KeyClass::ChatOpen.as_str(),
                "conversation written into its copies",
                "messages",
            )
            .await?;
        self.open.remove(id);
        self.stats.written += 1;
        opptak_telemetry::metrics().conversation_event("written");
        tracing::info!(conversation = %id, copies = retention_rows.len(), "conversation written");
        Ok(())
    }

    fn dead_letter(&mut self, r: &Record, id: &str, refusal: Refusal) {
        tracing::warn!(conversation = id, reason = ?refusal.reason, partition = r.partition, offset = r.offset, detail = %refusal.detail, "dead letter");
        self.stats.dead_letters += 1;
        let name = refusal.reason.as_str_name();
        opptak_telemetry::metrics().dead_letter(name.strip_prefix("DEAD_LETTER_REASON_").unwrap_or(name));
        self.dead_letters.push((r.clone(), id.to_owned(), refusal));
    }

    /// Dead letters with their originals sealed under the day's dead-letter
    /// key (the texts inside are sealed by the producer as well).
    async fn publish_dead_letters(&mut self) -> Result<(), RecorderError> {
        if self.dead_letters.is_empty() {
            return Ok(());
        }
        let day = opptak_domain::time::utc_day(self.now_us());
        let (key, key_ref) = self.vault.deadletter_key(&day).await?;
        let seal = DeadLetterSeal {
            key: &key,
            key_ref,
            segment_bytes: opptak_crypto::stream::DEFAULT_SEGMENT_SIZE,
            topic: &self.cfg.deadletter,
            stage: "messages",
            at_us: self.now_us(),
        };
        let mut out = Vec::new();
        for (r, id, refusal) in std::mem::take(&mut self.dead_letters) {
            out.push(dead_letter_out(&r, id, refusal, &seal)?);
        }
        self.bus.publish_all(out).await?;
        Ok(())
    }
}

fn message_sealing<'a>(id: &'a CallId, artifact_id: &'a str) -> Sealing<'a> {
    Sealing {
        call_id: id,
        class: KeyClass::ChatOpen.as_str(),
        kind: SealKind::ChatMessage,
        artifact_id,
    }
}

fn origin_sealing(id: &CallId) -> Sealing<'_> {
    Sealing {
        call_id: id,
        class: KeyClass::ChatOpen.as_str(),
        kind: SealKind::ChatMessage,
        artifact_id: "origin",
    }
}

fn serde_json_bytes(log: &ConversationLog) -> Result<Vec<u8>, RecorderError> {
    serde_json::to_vec(log).map_err(|e| RecorderError::Conversation(format!("conversation log: {e}")))
}
