//! The recorder stage: telephony events in, encrypted recordings out.
//!
//! Layout:
//! - [`Recorder`] (this file): consumes the input topic in batches, reassembles
//!   each call ([`opptak_domain::reassembly`]), seals new audio into segments,
//!   and makes a batch durable in three steps — segment blobs, one metadata
//!   transaction, dead letters and `RecordingStored` events — before storing
//!   the consumer offsets. Planning a flush (`plan_flush`: what to seal into
//!   the spool object, which rows) and choosing the offsets to commit
//!   (`commit_positions`) are pure steps with unit tests of their own; the
//!   flush itself only persists, publishes and commits. A crash anywhere
//!   replays from the last stored offset; replayed chunks are recognised by
//!   sequence number and dropped, so nothing acknowledged is lost and
//!   nothing is written twice.
//! - [`compact`]: finished recordings rewritten as one format-v2 object,
//!   with the copies the retention policy keeps (archive, KI).
//! - [`conversations`]: the messages role — chat, secure messages and
//!   e-mail in, each conversation's copies out (issue 17).
//! - [`Topics`]: topic names.
//!
//! Keys and sealed artifacts go through [`opptak_vault::Vault`]; protobuf →
//! domain validation is [`opptak_proto::convert`].

pub mod compact;
pub mod conversations;
mod outage;

use bytes::Bytes;
use opptak_bus::{Bus, BusError, Outgoing, Position, Record, Subscription};
use opptak_crypto::segment::{self, ArtifactKind, SegmentHeader};
use opptak_crypto::stream::StreamInfo;
use opptak_crypto::{CryptoError, DataKey, KeyProvider};
use opptak_domain::model::{CallFacts, CallId, ContextChange, KeyClass, ServiceCategory};
use opptak_domain::reassembly::{Offer, Piece, Reassembler, ReassemblyConfig, Rejection};
use opptak_domain::retention::Policy;
use opptak_proto::convert::{self, Refusal};
use opptak_proto::v1::{self, telephony_event::Event, DeadLetterReason};
use opptak_proto::Message;
use opptak_store::meta::{CallEnd, CallRecord, CallUpdate, Flush, GapRow, NewCall, OptOut, SegmentRow};
use opptak_store::{BlobStore, MetadataStore, StoreError};
use opptak_vault::{Vault, VaultError};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// Topic names; a prefix lets tests and tenants share a cluster.
#[derive(Clone, Debug)]
pub struct Topics {
    pub telephony: String,
    pub recordings: String,
    pub deadletter: String,
}

impl Topics {
    pub fn with_prefix(prefix: &str) -> Self {
        Self {
            telephony: format!("{prefix}opptak.telephony.v1"),
            recordings: format!("{prefix}opptak.recordings.v1"),
            deadletter: format!("{prefix}opptak.deadletter.v1"),
        }
    }

    /// Creates the topics if missing.
    pub async fn create(&self, bus: &dyn Bus, partitions: i32) -> Result<(), BusError> {
        for t in [&self.telephony, &self.recordings, &self.deadletter] {
            bus.create_topic(t, partitions).await?;
        }
        Ok(())
    }
}

impl Default for Topics {
    fn default() -> Self {
        Self::with_prefix("")
    }
}

#[derive(Clone, Debug)]
pub struct RecorderConfig {
    pub topics: Topics,
    pub group: String,
    /// How often new audio is made durable; bounds chunk-to-durable latency.
    pub flush_interval: Duration,
    /// Most records taken from the bus per poll.
    pub max_batch: usize,
    pub reassembly: ReassemblyConfig,
    /// How long a hole may wait for its chunk before it is closed as a gap.
    pub reorder_timeout: Duration,
    /// Largest plaintext per segment.
    pub max_segment_bytes: usize,
    /// Compact finished recordings into format-v2 objects (and write their
    /// archive / KI copies) in the background.
    pub compact: bool,
    /// Plaintext bytes per format-v2 segment.
    pub stream_segment_bytes: u32,
    /// How often to look for finished recordings nobody compacted (after a
    /// crash, or another recorder's), and how old they must be.
    pub compact_sweep_interval: Duration,
}

impl Default for RecorderConfig {
    fn default() -> Self {
        Self {
            topics: Topics::default(),
            group: "opptak-recorder".into(),
            flush_interval: Duration::from_millis(250),
            max_batch: 10_000,
            reassembly: ReassemblyConfig::default(),
            reorder_timeout: Duration::from_secs(5),
            max_segment_bytes: 1 << 20,
            compact: true,
            stream_segment_bytes: opptak_crypto::stream::DEFAULT_SEGMENT_SIZE,
            compact_sweep_interval: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RecorderError {
    #[error("bus: {0}")]
    Bus(#[from] BusError),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("crypto: {0}")]
    Crypto(#[from] CryptoError),
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error("compaction: {0}")]
    Compaction(String),
    /// A request refused, with why (nothing was changed).
    #[error("refused: {0}")]
    Refused(String),
    /// A conversation's stored state contradicts itself.
    #[error("conversation: {0}")]
    Conversation(String),
}

impl RecorderError {
    /// The metadata or blob store did not answer (a PostgreSQL primary
    /// failing over, an object store restarting): the role starts over
    /// from its committed offsets, as after a crash but in the same
    /// process, once the store answers again (`outage`).
    pub fn is_store_outage(&self) -> bool {
        matches!(
            self,
            RecorderError::Store(StoreError::Unavailable(_))
                | RecorderError::Vault(VaultError::Store(StoreError::Unavailable(_)))
        )
    }
}

/// Where a record came from: (topic, partition, offset).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Source {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    /// The producer's timestamp (ms), for the end-to-end latency.
    pub timestamp_ms: Option<i64>,
}

/// Retention class of the recording's data key (R2: every call, 24 hours).
pub const RECORDING_KEY_CLASS: &str = "audio-24h";
/// Unsealed audio held across all calls before a flush is forced (bytes).
/// With the reassembler's bounds (a gap is at most the reorder window's
/// worth of largest chunks) this bounds the recorder's audio memory.
const MAX_UNSEALED_BYTES: usize = 64 << 20;
/// Class of the telephony system's chunk key as opptak stores it (re-wrapped).
pub const TELEPHONY_KEY_CLASS: &str = "telephony";

/// Ends the calls whose last input was stored before `idle_before_us` and
/// that never got a `CallEnded` (the telephony system crashed, a link
/// dropped): each gets a `CallEnded` with `END_REASON_IDLE_TIMEOUT` on the
/// telephony `topic`, keyed by its call id, so the recorder that owns the
/// call's partition ends it in order with the rest of its input. Without
/// this such a call would stay open for ever: in a recorder's memory, and
/// outside retention (a recording's clock starts at its end). Returns how
/// many were sent; sending one twice is harmless (a second end is ignored).
pub async fn close_idle_calls(
    meta: &dyn MetadataStore,
    bus: &dyn Bus,
    topic: &str,
    idle_before_us: i64,
    limit: u32,
) -> Result<usize, RecorderError> {
    let idle = meta.idle_calls(idle_before_us, limit).await?;
    let out: Vec<Outgoing> = idle
        .iter()
        .map(|(call_id, last_input_us)| {
            tracing::warn!(call_id = %call_id, last_input = %opptak_domain::time::utc_time(*last_input_us), "call idle with no CallEnded: ending it");
            let ev = v1::TelephonyEvent {
                call_id: call_id.as_str().to_owned(),
                event: Some(Event::CallEnded(v1::CallEnded {
                    ended_at: Some(convert::timestamp(*last_input_us)),
                    reason: v1::EndReason::IdleTimeout as i32,
                    last_sequence: 0,
                    no_audio: false,
                })),
            };
            Outgoing {
                topic: topic.to_owned(),
                key: Bytes::from(call_id.as_str().to_owned()),
                payload: Bytes::from(ev.encode_to_vec()),
            }
        })
        .collect();
    let n = out.len();
    if n > 0 {
        bus.publish_all(out).await?;
    }
    Ok(n)
}

/// Wall-clock milliseconds, only to measure latency against Kafka's record
/// timestamps (the `opptak_end_to_end_latency_seconds` histogram). Every time that
/// decides something (retention, idleness, spool hours, event times) comes
/// from the vault's injected clock.
fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

struct CallState {
    facts: CallFacts,
    recording_id: String,
    blob_prefix: String,
    key: DataKey,
    /// The telephony system's key for this call's sealed chunks, if it seals them.
    tel_key: Option<DataKey>,
    reasm: Reassembler<Source>,
    /// Segments durably written.
    segments: u64,
    /// Segment count at the last flush (the store's view; fences the next).
    flushed_segments: u64,
    /// Audio (wire codec) not yet sealed, starting at frame `buf_first_frame`.
    buf: Vec<u8>,
    buf_first_frame: u64,
    new_gaps: Vec<GapRow>,
    duplicates: u64,
    end: Option<CallEnd>,
    opt_out: Option<OptOut>,
    /// Written as complete (final segment stored).
    complete: bool,
    new_call: Option<NewCall>,
    dirty: bool,
    hole_since: Option<Instant>,
    /// The input partition this call's events arrive on.
    partition: Option<(Arc<str>, i32)>,
    /// Producer timestamps (ms) of the chunks in `buf`: their end-to-end
    /// latency is observed once the flush that seals them is durable.
    arrived_ms: Vec<i64>,
    /// When this recorder last handled input of the call (µs), or for a call
    /// rebuilt from the store, when its last input was stored. An idle end
    /// (`END_REASON_IDLE_TIMEOUT`) stamped before this is refused: the call
    /// is not idle.
    last_input_us: i64,
}

impl CallState {
    /// Records the opt-out; says whether the call is already complete.
    fn stop_ki(&mut self, opt_out: &OptOut) -> bool {
        self.opt_out = Some(opt_out.clone());
        self.dirty = true;
        self.complete
    }

    /// Appends released pieces to the unsealed buffer; returns the bytes added.
    fn absorb(&mut self, pieces: Vec<Piece<Source>>) -> usize {
        let before = self.buf.len();
        for p in pieces {
            match p {
                Piece::Audio { wire, tag, .. } => {
                    self.buf.extend_from_slice(&wire);
                    self.arrived_ms.extend(tag.timestamp_ms);
                }
                Piece::Gap(g) => {
                    // Silence in the call's own codec keeps the timeline true,
                    // written in one go. The reassembler bounds a gap by what
                    // the missing chunks could have carried and by the call's
                    // maximum length.
                    let silence = self.reasm.format().silence_frame();
                    let bytes = usize::try_from(g.frames)
                        .unwrap_or(usize::MAX)
                        .saturating_mul(silence.len());
                    self.buf.reserve(bytes);
                    self.buf.extend(silence.iter().copied().cycle().take(bytes));
                    self.new_gaps.push(GapRow {
                        recording_id: self.recording_id.clone(),
                        first_missing: g.first_missing,
                        missing: g.missing,
                        at_frame: g.at_frame,
                        frames: g.frames,
                    });
                }
            }
            self.dirty = true;
        }
        self.buf.len() - before
    }
}

/// Counters since start, for logs, the demo and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecorderStats {
    pub records: u64,
    pub chunks_accepted: u64,
    pub chunks_duplicate: u64,
    pub dead_letters: u64,
    pub segments_written: u64,
    pub recordings_completed: u64,
    pub flushes: u64,
    /// Cached data keys dropped because their key was crypto-shredded.
    pub keys_evicted: u64,
}

pub struct Recorder {
    bus: Arc<dyn Bus>,
    /// The call's keys and sealed artifacts; `blobs` and `meta` are its stores.
    vault: Vault,
    blobs: Arc<dyn BlobStore>,
    meta: Arc<dyn MetadataStore>,
    /// KEKs shared with the telephony system (for calls whose chunks it seals).
    telephony_keys: Option<Arc<dyn KeyProvider>>,
    cfg: RecorderConfig,
    calls: HashMap<CallId, CallState>,
    unknown: HashSet<CallId>,
    /// Highest offset seen per (topic, partition) since the last commit.
    seen: BTreeMap<(Arc<str>, i32), i64>,
    dead_letters: Vec<PendingDeadLetter>,
    completed: Vec<Outgoing>,
    /// The dead-letter key of the day, for refusals that name no known call.
    day_key: Option<(String, DataKey, String)>,
    /// Finished recordings, handed to the compaction task.
    finished_tx: Option<tokio::sync::mpsc::UnboundedSender<Job>>,
    /// Finished calls whose retention facts changed (a late KI opt-out).
    reroute: Vec<CallId>,
    /// Calls whose customer opted out of KI since the last flush: their `ki`
    /// key is shredded once the opt-out is stored (R12).
    ki_purge: Vec<(CallId, OptOut)>,
    policy: Arc<Policy>,
    archive: Option<Arc<dyn opptak_store::archive::ArchiveStore>>,
    /// Where reclassifications are journaled (the audit log).
    journal: Option<Arc<dyn opptak_retention::Journal>>,
    /// Reclassifications received since the last flush, applied once the
    /// calls they name are stored (a call may have started in this batch).
    reclassifications: Vec<(Record, CallId, v1::Reclassification)>,
    /// CallContext events received since the last flush (with the digest of
    /// their encoding), applied like the reclassifications.
    contexts: Vec<(Record, CallId, ContextChange, String)>,

    stats: RecorderStats,
    stats_tx: watch::Sender<RecorderStats>,
    durable_tx: watch::Sender<Vec<Position>>,
    durable: BTreeMap<(String, i32), i64>,
    /// Names this process's spool objects apart from other recorders'.
    instance: String,
    flush_seq: u64,
    /// What this recorder last added to `opptak_calls_in_flight` (several
    /// recorders may share a process).
    in_flight_reported: i64,
    /// Audio absorbed since the last flush, not yet sealed (bytes).
    unsealed_bytes: usize,
}

impl Recorder {
    /// A recorder reading `bus`, storing through `vault` (whose clock also
    /// decides retention).
    pub fn new(bus: Arc<dyn Bus>, vault: Vault, cfg: RecorderConfig) -> Self {
        let (stats_tx, _) = watch::channel(RecorderStats::default());
        let (durable_tx, _) = watch::channel(Vec::new());
        Self {
            bus,
            blobs: vault.blobs().clone(),
            meta: vault.meta().clone(),
            vault,
            telephony_keys: None,
            cfg,
            calls: HashMap::new(),
            unknown: HashSet::new(),
            seen: BTreeMap::new(),
            dead_letters: Vec::new(),
            completed: Vec::new(),
            day_key: None,
            finished_tx: None,
            reroute: Vec::new(),
            ki_purge: Vec::new(),
            policy: Arc::new(Policy::default_policy()),
            journal: None,
            reclassifications: Vec::new(),
            contexts: Vec::new(),
            archive: None,

            stats: RecorderStats::default(),
            stats_tx,
            durable_tx,
            durable: BTreeMap::new(),
            instance: uuid::Uuid::new_v4().simple().to_string(),
            flush_seq: 0,
            in_flight_reported: 0,
            unsealed_bytes: 0,
        }
    }

    /// Now, on the vault's clock: the one clock every decision uses.
    fn now_us(&self) -> i64 {
        self.vault.clock().now_us()
    }

    /// The retention policy compaction decides copies and expiries by
    /// (default: the shipped policy).
    pub fn with_policy(mut self, policy: Arc<Policy>) -> Self {
        self.policy = policy;
        self
    }

    /// Archive-tier copies go to this WORM archive.
    pub fn with_archive(mut self, archive: Option<Arc<dyn opptak_store::archive::ArchiveStore>>) -> Self {
        self.archive = archive;
        self
    }

    /// Journals reclassifications received from the telephony system in
    /// `journal` (the audit log) before applying them.
    pub fn with_journal(mut self, journal: Option<Arc<dyn opptak_retention::Journal>>) -> Self {
        self.journal = journal;
        self
    }

    /// Compaction, copies and routing over this recorder's stores and policy.
    fn compactor(&self) -> compact::Compactor {
        let c = compact::Compactor::new(self.vault.clone(), self.cfg.stream_segment_bytes)
            .with_policy(self.policy.clone())
            .with_journal(self.journal.clone());
        match &self.archive {
            Some(a) => c.with_archive(a.clone()),
            None => c,
        }
    }

    /// Accepts chunks the telephony system seals under KEKs from `shared`.
    pub fn with_telephony_keys(mut self, shared: Option<Arc<dyn KeyProvider>>) -> Self {
        self.telephony_keys = shared;
        self
    }

    /// Live counters, updated after every flush.
    pub fn stats(&self) -> watch::Receiver<RecorderStats> {
        self.stats_tx.subscribe()
    }

    /// Input positions (all partitions seen) whose effect is durable, after every flush (the load
    /// generator measures chunk-to-durable latency with it).
    pub fn durable_positions(&self) -> watch::Receiver<Vec<Position>> {
        self.durable_tx.subscribe()
    }

    /// Runs until `shutdown` turns true, then flushes and commits what it has.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<RecorderStats, RecorderError> {
        let topics = [self.cfg.topics.telephony.clone()];
        tracing::info!(group = %self.cfg.group, topic = %topics[0], "recorder started");
        let compaction = if self.cfg.compact {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            self.finished_tx = Some(tx);
            let c = self.compactor();
            Some(tokio::spawn(compaction_loop(
                c,
                rx,
                self.cfg.compact_sweep_interval,
                shutdown.clone(),
            )))
        } else {
            None
        };
        let mut outages = outage::Outages::default();
        loop {
            let flushes = self.stats.flushes;
            let e = match self.session(&topics, &mut shutdown).await {
                Ok(()) => break,
                Err(e) if e.is_store_outage() => e,
                Err(e) => return Err(e),
            };
            let Some(delay) = outages.next(self.stats.flushes > flushes) else {
                return Err(e);
            };
            // What a crash would lose: the input not yet committed is read
            // again, so the calls' state in memory goes (and with it any
            // write whose fate the outage left unknown).
            tracing::warn!(error = %e, retry_in_s = delay.as_secs(),
                "recorder: its store is unavailable; starting over from the committed offsets once it answers");
            self.forget_uncommitted();
            if !outage::store_answers("recorder", &self.vault, delay, &mut shutdown).await {
                if *shutdown.borrow() {
                    break;
                }
                return Err(e);
            }
        }
        opptak_telemetry::metrics()
            .calls_in_flight
            .dec_by(self.in_flight_reported);
        self.in_flight_reported = 0;
        self.finished_tx = None;
        if let Some(task) = compaction {
            // Pending compactions resume at the next start (the sweep finds them).
            let _ = task.await;
        }
        tracing::info!(stats = ?self.stats, "recorder stopped");
        Ok(self.stats)
    }

    /// One subscription to the input, from the committed offsets until
    /// shutdown (flushed and committed) or an error.
    async fn session(&mut self, topics: &[String], shutdown: &mut watch::Receiver<bool>) -> Result<(), RecorderError> {
        let mut sub = self.bus.subscribe(&self.cfg.group, topics).await?;
        let mut last_flush = Instant::now();
        loop {
            if *shutdown.borrow() {
                break;
            }
            // Poll only until the next flush is due, so a chunk waits at most
            // one flush interval (plus the flush itself) to become durable.
            let wait = self
                .cfg
                .flush_interval
                .saturating_sub(last_flush.elapsed())
                .max(Duration::from_millis(1));
            let records = tokio::select! {
                r = sub.poll(self.cfg.max_batch, wait) => r?,
                _ = shutdown.changed() => Vec::new(),
            };
            self.forget_revoked(sub.as_ref())?;
            for r in records {
                self.handle(r).await?;
                if self.unsealed_bytes > MAX_UNSEALED_BYTES {
                    // Memory stays bounded whatever a poll brings (gaps of
                    // silence included): seal and commit what is held.
                    last_flush = Instant::now();
                    self.flush(sub.as_mut()).await?;
                }
            }
            self.expire_holes(Instant::now());
            if last_flush.elapsed() >= self.cfg.flush_interval
                || self.dead_letters.len() > 1000
                || self.unsealed_bytes > MAX_UNSEALED_BYTES
            {
                // Timed from the start: a flush every interval, however long it takes.
                last_flush = Instant::now();
                self.flush(sub.as_mut()).await?;
            }
        }
        self.flush(sub.as_mut()).await?;
        sub.flush_commits().await?;
        Ok(())
    }

    /// Drops everything read since the last commit, as a crash would: the
    /// calls' state, what waited for the next flush, the offsets seen. The
    /// next session reads that input again (its effects are idempotent).
    fn forget_uncommitted(&mut self) {
        self.calls.clear();
        self.unknown.clear();
        self.seen.clear();
        self.dead_letters.clear();
        self.completed.clear();
        self.reroute.clear();
        self.ki_purge.clear();
        self.reclassifications.clear();
        self.contexts.clear();
        self.unsealed_bytes = 0;
        opptak_telemetry::metrics()
            .calls_in_flight
            .dec_by(self.in_flight_reported);
        self.in_flight_reported = 0;
    }

    fn dead_letter(&mut self, r: &Record, call_id: &str, refusal: Refusal) {
        tracing::warn!(call_id, reason = ?refusal.reason, partition = r.partition, offset = r.offset, detail = %refusal.detail, "dead letter");
        self.stats.dead_letters += 1;
        let name = refusal.reason.as_str_name();
        opptak_telemetry::metrics().dead_letter(name.strip_prefix("DEAD_LETTER_REASON_").unwrap_or(name));
        // Sealed at the flush (the dead-letter key may need the store).
        self.dead_letters.push(PendingDeadLetter {
            record: r.clone(),
            call_id: call_id.to_owned(),
            refusal,
        });
    }

    /// A dead letter with its original bytes sealed (format v2, kind
    /// dead-letter) under the call's `audio-24h` key — so shredding the call
    /// makes its dead letters on Kafka unreadable too — or, when the message
    /// names no known call, under the dead-letter key of the day.
    async fn seal_dead_letter(&mut self, p: PendingDeadLetter) -> Result<Outgoing, RecorderError> {
        let known = CallId::parse(&p.call_id)
            .ok()
            .and_then(|id| self.calls.get(&id).map(|c| (id, c.key.clone())));
        let (key, key_ref) = match known {
            Some((id, key)) => (key, opptak_vault::key_ref(id.as_str(), KeyClass::Audio24h.as_str())),
            None => self.day_key().await?,
        };
        let seal = DeadLetterSeal {
            key: &key,
            key_ref,
            segment_bytes: self.cfg.stream_segment_bytes,
            topic: &self.cfg.topics.deadletter,
            stage: "recorder",
            at_us: self.now_us(),
        };
        dead_letter_out(&p.record, p.call_id, p.refusal, &seal)
    }

    /// Unwraps the call key the telephony system sent, under a shared KEK;
    /// the error says why not (for the dead letter).
    fn open_telephony_key(&self, call_id: &CallId, tk: &v1::TelephonyKey) -> Result<DataKey, String> {
        let Some(shared) = &self.telephony_keys else {
            return Err(
                "CallStarted carries a telephony_key, but no telephony keyring is configured \
                        (keys.telephony_keyring)"
                    .into(),
            );
        };
        if tk.key_id.is_empty() || tk.key_id.len() > 64 {
            return Err("telephony_key.key_id must be 1 to 64 bytes".into());
        }
        let k = opptak_vault::open_telephony_key(shared.as_ref(), call_id, tk)
            .map_err(|e| format!("telephony_key (kek {:?}) does not open: {e}", tk.kek_id))?;
        // Stored under an id of opptak's own: telephony ids need not be unique.
        Ok(k.renamed(format!("tk-{}", uuid::Uuid::new_v4().simple())))
    }

    /// The dead-letter key of today (UTC), created on first use.
    async fn day_key(&mut self) -> Result<(DataKey, String), RecorderError> {
        let day = opptak_domain::time::utc_day(self.now_us());
        if let Some((d, key, key_ref)) = &self.day_key {
            if *d == day {
                return Ok((key.clone(), key_ref.clone()));
            }
        }
        let (key, key_ref) = self.vault.deadletter_key(&day).await?;
        self.day_key = Some((day, key.clone(), key_ref.clone()));
        Ok((key, key_ref))
    }

    /// Drops the cached keys (and the state) of calls whose recording key was
    /// crypto-shredded since the last flush: no further audio is sealed under
    /// a destroyed key, and the plaintext key leaves memory (zeroized). Runs
    /// before every flush (one indexed query); a shredding that commits
    /// between this look and the flush's transaction is caught by the store's
    /// fence (the flush is refused and the recorder restarts clean).
    async fn evict_shredded(&mut self) -> Result<(), RecorderError> {
        // A minute of overlap: eviction is idempotent, clocks differ.
        let since = self.now_us() - 60_000_000;
        for ev in self.meta.shreddings_since(since).await? {
            let Ok(id) = CallId::parse(&ev.call_id) else { continue };
            if let Some(call) = self.calls.get(&id) {
                if call.key.id() == ev.key_id {
                    tracing::warn!(call_id = %id, class = %ev.class, "recording key shredded: cached key and call state dropped");
                    self.calls.remove(&id);
                    self.unknown.insert(id);
                    self.stats.keys_evicted += 1;
                }
            }
        }
        Ok(())
    }

    async fn handle(&mut self, r: Record) -> Result<(), RecorderError> {
        self.stats.records += 1;
        let topic: Arc<str> = Arc::from(r.topic.as_str());
        let slot = self.seen.entry((topic.clone(), r.partition)).or_insert(r.offset);
        *slot = (*slot).max(r.offset);
        let source_topic = topic.clone();
        let source = Source {
            topic,
            partition: r.partition,
            offset: r.offset,
            timestamp_ms: r.timestamp_ms,
        };

        let ev = match v1::TelephonyEvent::decode(r.payload.as_ref()) {
            Ok(ev) => ev,
            Err(e) => {
                self.dead_letter(
                    &r,
                    "",
                    Refusal::new(DeadLetterReason::Malformed, format!("not a TelephonyEvent: {e}")),
                );
                return Ok(());
            }
        };
        let call_id = match CallId::parse(&ev.call_id) {
            Ok(id) => id,
            Err(e) => {
                self.dead_letter(&r, "", Refusal::new(DeadLetterReason::Malformed, e.to_string()));
                return Ok(());
            }
        };
        if r.key.as_deref() != Some(ev.call_id.as_bytes()) {
            self.dead_letter(
                &r,
                call_id.as_str(),
                Refusal::new(DeadLetterReason::KeyMismatch, "message key must be the call id"),
            );
            return Ok(());
        }
        let input = !matches!(ev.event, Some(Event::CallEnded(_)));
        match ev.event {
            None => self.dead_letter(
                &r,
                call_id.as_str(),
                Refusal::new(DeadLetterReason::Malformed, "no event set"),
            ),
            Some(Event::CallStarted(s)) => self.on_started(&r, call_id.clone(), &s).await?,
            Some(Event::AudioChunk(c)) => {
                let refused = self.stats.dead_letters;
                self.on_chunk(&r, call_id.clone(), &c, source).await?;
                if self.stats.dead_letters > refused {
                    opptak_telemetry::metrics().chunk(opptak_telemetry::ChunkOutcome::DeadLetter);
                }
            }
            Some(Event::KiOptOut(o)) => {
                let now_us = self.now_us();
                if let Some(call) = self.call(&call_id).await? {
                    if call.opt_out.is_none() {
                        let at_us = o.at.as_ref().map(convert::micros).unwrap_or(now_us);
                        tracing::info!(call_id = %call_id, "ki opt-out recorded");
                        // Without an offset: from the audio received so far.
                        let offset_us = o
                            .offset
                            .as_ref()
                            .and_then(convert::duration_micros)
                            .unwrap_or_else(|| call.reasm.format().frames_to_micros(call.reasm.progress().frames));
                        let opt_out = OptOut {
                            at_us,
                            requested_by: o.requested_by.clone(),
                            offset_us,
                        };
                        let complete = call.stop_ki(&opt_out);
                        self.ki_stopped(&call_id, opt_out, complete);
                    }
                } else {
                    // Before its CallStarted (the telephony system's producers
                    // race): kept for the call, applied when it starts. An
                    // opt-out is never lost (it was dead-lettered, and KI then
                    // ran on the whole call).
                    let opt_out = OptOut {
                        at_us: o.at.as_ref().map(convert::micros).unwrap_or(now_us),
                        requested_by: o.requested_by.clone(),
                        offset_us: 0,
                    };
                    self.meta.keep_early_opt_out(&call_id, &opt_out, now_us).await?;
                    tracing::info!(call_id = %call_id, "ki opt-out before the call started: kept for the call");
                }
            }
            Some(Event::CallEnded(e)) => self.on_ended(&r, call_id.clone(), &e).await?,
            Some(Event::Reclassification(rc)) => {
                let category = convert::service_category(rc.service_category);
                let missing = [
                    (category == ServiceCategory::Unspecified, "a service category"),
                    (rc.by.trim().is_empty(), "who reclassified (by)"),
                    (rc.reason.trim().is_empty(), "a reason"),
                ];
                if let Some((_, what)) = missing.iter().find(|(m, _)| *m) {
                    self.dead_letter(
                        &r,
                        call_id.as_str(),
                        Refusal::new(
                            DeadLetterReason::ReclassificationRefused,
                            format!("a reclassification needs {what}; nothing was changed"),
                        ),
                    );
                } else if self.call(&call_id).await?.is_none() && self.meta.load_call(&call_id).await?.is_none() {
                    self.dead_letter(
                        &r,
                        call_id.as_str(),
                        Refusal::new(
                            DeadLetterReason::UnknownCall,
                            "reclassification of a call never started",
                        ),
                    );
                } else {
                    self.reclassifications.push((r.clone(), call_id.clone(), rc));
                }
            }
            Some(Event::KiNotice(n)) => self.on_ki_notice(&r, call_id.clone(), &n).await?,
            Some(Event::CallContext(c)) => match convert::call_context(&c, self.now_us()) {
                Err(refusal) => self.dead_letter(&r, call_id.as_str(), refusal),
                Ok(_) if self.call(&call_id).await?.is_none() && self.meta.load_call(&call_id).await?.is_none() => self
                    .dead_letter(
                        &r,
                        call_id.as_str(),
                        Refusal::new(
                            DeadLetterReason::UnknownCall,
                            "CallContext for a call never started; nothing was changed",
                        ),
                    ),
                Ok(change) => {
                    if let Some(customer) = &change.customer_ref {
                        self.objection_stops_ki(&call_id, customer, &change.by).await?;
                    }
                    use sha2::Digest;
                    let digest = hex::encode(sha2::Sha256::digest(&r.payload));
                    self.contexts.push((r.clone(), call_id.clone(), change, digest));
                }
            },
        }
        let now = self.now_us();
        if let Some(call) = self.calls.get_mut(&call_id) {
            call.partition = Some((source_topic, r.partition));
            if input {
                call.last_input_us = call.last_input_us.max(now);
            }
        }
        Ok(())
    }

    /// The call's state, from memory or rebuilt from the metadata store.
    async fn call(&mut self, id: &CallId) -> Result<Option<&mut CallState>, RecorderError> {
        if !self.calls.contains_key(id) {
            if self.unknown.contains(id) {
                return Ok(None);
            }
            match self.meta.load_call(id).await? {
                // A shredded recording takes no more audio: like an unknown call.
                Some(rec) if rec.key_destroyed_at_us.is_some() => {
                    tracing::warn!(call_id = %id, "input for a call whose recording key was shredded");
                    self.unknown.insert(id.clone());
                    return Ok(None);
                }
                Some(rec) => {
                    let tel = self.meta.class_key(id, TELEPHONY_KEY_CLASS).await?;
                    let mut state = self.rebuild(rec)?;
                    if let Some(row) = tel.filter(|r| r.destroyed_at_us.is_none()) {
                        state.tel_key = Some(self.vault.open_row(id, &row)?);
                    }
                    self.calls.insert(id.clone(), state);
                }
                None => {
                    if self.unknown.len() > 10_000 {
                        self.unknown.clear();
                    }
                    self.unknown.insert(id.clone());
                    return Ok(None);
                }
            }
        }
        Ok(self.calls.get_mut(id))
    }

    fn rebuild(&self, rec: CallRecord) -> Result<CallState, RecorderError> {
        let key = self.vault.open_key(rec.facts.call_id.as_str(), &rec.key)?;
        let reasm = Reassembler::resume(rec.facts.format.clone(), self.cfg.reassembly, rec.progress.clone());
        Ok(CallState {
            buf_first_frame: rec.progress.frames,
            facts: rec.facts,
            recording_id: rec.recording_id,
            blob_prefix: rec.blob_prefix,
            key,
            tel_key: None,
            reasm,
            segments: rec.segments,
            flushed_segments: rec.segments,
            buf: Vec::new(),
            new_gaps: Vec::new(),
            duplicates: rec.duplicate_chunks,
            end: rec.end,
            opt_out: rec.opt_out,
            complete: rec.complete,
            new_call: None,
            dirty: false,
            hole_since: None,
            partition: None,
            arrived_ms: Vec::new(),
            last_input_us: rec.updated_at_us,
        })
    }

    async fn on_started(&mut self, r: &Record, call_id: CallId, s: &v1::CallStarted) -> Result<(), RecorderError> {
        let mut facts = match convert::call_facts(call_id.clone(), s) {
            Ok(f) => f,
            Err(refusal) => {
                self.dead_letter(r, call_id.as_str(), refusal);
                return Ok(());
            }
        };
        if let Some(existing) = self.call(&call_id).await? {
            // A notice is no part of the start: it came later.
            let started = CallFacts {
                ki_notice: None,
                ..existing.facts.clone()
            };
            // A CallContext since may have changed desk, advisor and customer.
            let corrected = || CallFacts {
                desk: started.desk,
                advisor_id: started.advisor_id.clone(),
                customer_ref: started.customer_ref.clone(),
                ..facts.clone()
            };
            if started != facts && (started != corrected() || self.meta.call_contexts(&call_id).await?.is_empty()) {
                self.dead_letter(
                    r,
                    call_id.as_str(),
                    Refusal::new(
                        DeadLetterReason::DuplicateStart,
                        "CallStarted again with different facts",
                    ),
                );
            }
            // The same start again (a replay or a resend) changes nothing.
            return Ok(());
        }
        // Calls and conversations share one id space (their keys, artifacts
        // and retention rows are keyed by it): a call cannot take a
        // conversation's id.
        if self.meta.load_conversation(&call_id).await?.is_some() {
            self.dead_letter(
                r,
                call_id.as_str(),
                Refusal::new(
                    DeadLetterReason::DuplicateStart,
                    "CallStarted for the id of a conversation (opptak.messages.v1); a call needs an id of its own",
                ),
            );
            return Ok(());
        }
        // A call whose chunks the telephony system seals: its key must open
        // now, or the call cannot be recorded.
        let mut extra_keys = Vec::new();
        let tel_key = match &s.telephony_key {
            None => None,
            Some(tk) => match self.open_telephony_key(&call_id, tk) {
                Ok(k) => {
                    let ctx = opptak_vault::key_context(call_id.as_str(), TELEPHONY_KEY_CLASS);
                    extra_keys.push(opptak_vault::wrap_key(
                        self.vault.keys().as_ref(),
                        &k,
                        TELEPHONY_KEY_CLASS,
                        &ctx,
                        self.vault.clock().now_us(),
                    )?);
                    Some(k)
                }
                Err(detail) => {
                    self.dead_letter(
                        r,
                        call_id.as_str(),
                        Refusal::new(DeadLetterReason::Undecryptable, detail),
                    );
                    return Ok(());
                }
            },
        };
        self.unknown.remove(&call_id);
        // A notice that came first (the producers race) is the call's notice.
        facts.ki_notice = self.meta.early_ki_notice(&call_id).await?;
        let (key, stored_key) = self.vault.new_key(call_id.as_str(), RECORDING_KEY_CLASS)?;
        let recording_id = format!("rec-{}", uuid::Uuid::new_v4().simple());
        let blob_prefix = format!("recordings/{call_id}/{recording_id}");
        let new_call = NewCall {
            facts: facts.clone(),
            key: stored_key,
            extra_keys,
            recording_id: recording_id.clone(),
            blob_prefix: blob_prefix.clone(),
            created_at_us: self.now_us(),
        };
        tracing::info!(call_id = %call_id, %recording_id, desk = %facts.desk, category = %facts.service_category, ki = facts.ki_active(), "call started");
        // An opt-out that came first applies from the first second; so does
        // the customer's standing objection to KI, unless the advisor
        // recorded new consent in this call.
        let mut early = self.meta.early_opt_out(&call_id).await?;
        if early.is_none() && facts.ki_active() && !s.ki_consent_renewed {
            if let Some(o) = self.meta.objections(&facts.customer_ref).await?.into_iter().next() {
                tracing::info!(call_id = %call_id, kind = %o.kind, "the customer objected to KI before: KI stays off for this call");
                early = Some(OptOut {
                    at_us: self.now_us(),
                    requested_by: format!(
                        "the customer's objection of {} ({})",
                        opptak_domain::time::utc_time(o.at_us),
                        o.recorded_by
                    ),
                    offset_us: 0,
                });
            }
        }
        if let Some(o) = &early {
            tracing::info!(call_id = %call_id, "the customer opted out of KI before the call started");
            self.ki_purge.push((call_id.clone(), o.clone()));
        }
        let reasm = Reassembler::new(facts.format.clone(), self.cfg.reassembly);
        self.calls.insert(
            call_id,
            CallState {
                facts,
                recording_id,
                blob_prefix,
                key,
                tel_key,
                reasm,
                segments: 0,
                flushed_segments: 0,
                buf: Vec::new(),
                buf_first_frame: 0,
                new_gaps: Vec::new(),
                duplicates: 0,
                end: None,
                opt_out: early,
                complete: false,
                new_call: Some(new_call),
                dirty: true,
                hole_since: None,
                partition: None,
                arrived_ms: Vec::new(),
                last_input_us: self.now_us(),
            },
        );
        Ok(())
    }

    async fn on_chunk(
        &mut self,
        r: &Record,
        call_id: CallId,
        c: &v1::AudioChunk,
        source: Source,
    ) -> Result<(), RecorderError> {
        if self.call(&call_id).await?.is_none() {
            self.dead_letter(
                r,
                call_id.as_str(),
                Refusal::new(
                    DeadLetterReason::UnknownCall,
                    "AudioChunk for a call never started (or whose recording was shredded)",
                ),
            );
            return Ok(());
        }
        let Some(call) = self.calls.get_mut(&call_id) else {
            return Ok(());
        };
        let offset = c.offset.as_ref().and_then(convert::duration_micros);
        let opened;
        let payload: &[u8] = match (&call.tel_key, c.sealed_payload.is_empty()) {
            (None, true) => &c.payload,
            (Some(k), false) => match opptak_crypto::chunk::open(k, call_id.as_str(), c.sequence, &c.sealed_payload) {
                Ok(p) => {
                    opened = p;
                    &opened
                }
                Err(e) => {
                    let detail = format!("sealed_payload of sequence {} does not open: {e}", c.sequence);
                    self.dead_letter(
                        r,
                        call_id.as_str(),
                        Refusal::new(DeadLetterReason::Undecryptable, detail),
                    );
                    return Ok(());
                }
            },
            (None, false) => {
                let detail = "sealed_payload for a call started without a telephony_key";
                self.dead_letter(
                    r,
                    call_id.as_str(),
                    Refusal::new(DeadLetterReason::Undecryptable, detail),
                );
                return Ok(());
            }
            (Some(_), true) => {
                let detail = "plaintext payload for a call whose chunks are sealed (telephony_key was set)";
                self.dead_letter(
                    r,
                    call_id.as_str(),
                    Refusal::new(DeadLetterReason::Undecryptable, detail),
                );
                return Ok(());
            }
        };
        let outcome = call.reasm.offer(c.sequence, payload, offset, source);
        let rej = match outcome {
            Ok(Offer::Accepted) => {
                self.stats.chunks_accepted += 1;
                opptak_telemetry::metrics().chunk(opptak_telemetry::ChunkOutcome::Accepted);
                let pieces = call.reasm.drain();
                let added = call.absorb(pieces);
                call.hole_since = match (call.reasm.buffered(), call.hole_since) {
                    (0, _) => None,
                    (_, Some(t)) => Some(t),
                    (_, None) => Some(Instant::now()),
                };
                self.unsealed_bytes += added;
                return Ok(());
            }
            Ok(Offer::Duplicate) => {
                self.stats.chunks_duplicate += 1;
                opptak_telemetry::metrics().chunk(opptak_telemetry::ChunkOutcome::Duplicate);
                call.duplicates += 1;
                call.dirty = true;
                return Ok(());
            }
            Err(rej) => rej,
        };
        let reason = match &rej {
            Rejection::Oversized { .. } => DeadLetterReason::OversizedChunk,
            Rejection::Decode(_) => DeadLetterReason::InvalidFormat,
            Rejection::OutsideWindow { .. } => DeadLetterReason::OutsideWindow,
            Rejection::Late { .. } => DeadLetterReason::LateChunk,
            Rejection::AfterEnd { .. } => DeadLetterReason::AfterEnd,
            Rejection::Conflicting { .. } => DeadLetterReason::ConflictingChunk,
            Rejection::TooLong { .. } => DeadLetterReason::CallTooLong,
        };
        self.dead_letter(r, call_id.as_str(), Refusal::new(reason, rej.to_string()));
        Ok(())
    }

    /// The evidence that the customer was told KI is used (issue 16,
    /// section 6): kept on the call's row; KI hears nothing before its offset.
    /// The first notice of a call stays (a replay changes nothing). Before
    /// the call's start it is kept for the call, as an early opt-out is.
    async fn on_ki_notice(&mut self, r: &Record, call_id: CallId, n: &v1::KiNotice) -> Result<(), RecorderError> {
        let now_us = self.now_us();
        let notice = match convert::ki_notice(n, now_us) {
            Ok(notice) => notice,
            Err(refusal) => {
                self.dead_letter(r, call_id.as_str(), refusal);
                return Ok(());
            }
        };
        let Some(call) = self.call(&call_id).await? else {
            self.meta.keep_early_ki_notice(&call_id, &notice, now_us).await?;
            tracing::info!(call_id = %call_id, "ki notice before the call started: kept for the call");
            return Ok(());
        };
        if call.end.is_some() {
            let detail = "KiNotice after CallEnded: the notice must come while the call runs";
            self.dead_letter(r, call_id.as_str(), Refusal::new(DeadLetterReason::AfterEnd, detail));
            return Ok(());
        }
        match &call.facts.ki_notice {
            Some(first) if *first != notice => {
                tracing::info!(call_id = %call_id, "a second ki notice: the first stays");
            }
            Some(_) => {}
            None => {
                tracing::info!(call_id = %call_id, method = %notice.method, offset_us = notice.offset_us, "ki notice recorded");
                call.facts.ki_notice = Some(notice);
                call.dirty = true;
            }
        }
        Ok(())
    }

    async fn on_ended(&mut self, r: &Record, call_id: CallId, e: &v1::CallEnded) -> Result<(), RecorderError> {
        let now_us = self.now_us();
        let Some(call) = self.call(&call_id).await? else {
            self.dead_letter(
                r,
                call_id.as_str(),
                Refusal::new(DeadLetterReason::UnknownCall, "CallEnded for a call never started"),
            );
            return Ok(());
        };
        let idle = e.reason == v1::EndReason::IdleTimeout as i32;
        if call.end.is_some() {
            // Replayed after a crash: announce again if the recording was
            // finished (an idle end racing a real one announces nothing).
            if call.complete && !idle {
                let recording_id = call.recording_id.clone();
                let format = call.reasm.format().clone();
                let mut ev = recording_stored(call, now_us);
                ev.gaps = self
                    .meta
                    .gaps(&recording_id)
                    .await?
                    .iter()
                    .map(|g| gap_event(g, &format))
                    .collect();
                self.completed.push(Outgoing {
                    topic: self.cfg.topics.recordings.clone(),
                    key: Bytes::from(call_id.as_str().to_owned()),
                    payload: Bytes::from(ev.encode_to_vec()),
                });
            }
            return Ok(());
        }
        let ended_at_us = e.ended_at.as_ref().map(convert::micros).unwrap_or(now_us);
        if idle && call.last_input_us > ended_at_us {
            // Input came after the sweeper looked: the call is not idle.
            tracing::info!(call_id = %call_id, "idle end ignored: the call had input since");
            return Ok(());
        }
        let last = if idle {
            // The recording ends with what arrived (chunks held behind a hole too).
            let last = call.reasm.last_received();
            tracing::warn!(call_id = %call_id, last_sequence = ?last, "no CallEnded came: call closed after the idle timeout");
            last
        } else if e.no_audio {
            None
        } else {
            Some(e.last_sequence)
        };
        let refused = call.reasm.finish(last);
        // A refused end: the call ended at the highest sequence seen.
        let last = if refused.is_some() {
            call.reasm.last_received()
        } else {
            last
        };
        let pieces = call.reasm.drain();
        let added = call.absorb(pieces);
        call.hole_since = None;
        call.end = Some(CallEnd {
            ended_at_us,
            reason: convert::end_reason(e.reason).into(),
            last_sequence: last,
        });
        call.dirty = true;
        self.unsealed_bytes += added;
        if let Some(rej) = refused {
            let detail = format!("{rej}: the call ended at the highest sequence seen ({last:?})");
            self.dead_letter(
                r,
                call_id.as_str(),
                Refusal::new(DeadLetterReason::OutsideWindow, detail),
            );
        }
        Ok(())
    }

    /// Applies the CallContext events of this flush (the calls they name are
    /// stored now); a refused one is dead-lettered with why before the
    /// offsets move on.
    async fn apply_contexts(&mut self) -> Result<(), RecorderError> {
        for (r, call_id, change, digest) in std::mem::take(&mut self.contexts) {
            match self.compactor().apply_context(&call_id, &change, &digest).await {
                Ok(compact::ContextOutcome::Applied {
                    facts,
                    changes,
                    archived,
                }) => {
                    tracing::info!(call_id = %call_id, by = %change.by, changes = %changes.join("; "), archived, "call context applied");
                    if let Some(call) = self.call(&call_id).await? {
                        call.facts.desk = facts.desk;
                        call.facts.advisor_id = facts.advisor_id.clone();
                        call.facts.customer_ref = facts.customer_ref.clone();
                    }
                }
                Ok(compact::ContextOutcome::Unchanged) => {
                    tracing::info!(call_id = %call_id, by = %change.by, "call context changes nothing")
                }
                Ok(compact::ContextOutcome::Duplicate) => {
                    tracing::info!(call_id = %call_id, by = %change.by, "call context applied before: ignored")
                }
                Err(RecorderError::Refused(why)) => self.dead_letter(
                    &r,
                    call_id.as_str(),
                    Refusal::new(DeadLetterReason::ContextRefused, why),
                ),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// A KI call whose customer, named by a CallContext, objected to KI
    /// before: KI stops as by an opt-out from the first second (the
    /// objection holds for every call, as at the start). Decided here, before
    /// the flush, so the opt-out is stored with the call's next update.
    async fn objection_stops_ki(&mut self, call_id: &CallId, customer: &str, by: &str) -> Result<(), RecorderError> {
        let open = match self.call(call_id).await? {
            Some(call) => call.opt_out.is_none() && call.facts.ki_active(),
            None => false,
        };
        if !open {
            return Ok(());
        }
        let Some(o) = self.meta.objections(customer).await?.into_iter().next() else {
            return Ok(());
        };
        let opt_out = OptOut {
            at_us: self.now_us(),
            requested_by: format!(
                "the customer's objection of {} ({}), customer named by {by}",
                opptak_domain::time::utc_time(o.at_us),
                o.recorded_by
            ),
            offset_us: 0,
        };
        let Some(call) = self.call(call_id).await? else {
            return Ok(());
        };
        tracing::info!(call_id = %call_id, kind = %o.kind, "the customer named by a call context objected to KI before: KI stops");
        let complete = call.stop_ki(&opt_out);
        self.ki_stopped(call_id, opt_out, complete);
        Ok(())
    }

    /// After [`CallState::stop_ki`]: the call's KI artifacts are purged at
    /// the next flush; a call already complete has its KI copy's retention
    /// end now.
    fn ki_stopped(&mut self, call_id: &CallId, opt_out: OptOut, complete: bool) {
        self.ki_purge.push((call_id.clone(), opt_out));
        if complete {
            self.reroute.push(call_id.clone());
        }
    }

    /// After a rebalance, drops the state of calls whose partition moved to
    /// another recorder. What they held unflushed was never committed, so the
    /// new owner re-reads it; the metadata store fences any stale write.
    fn forget_revoked(&mut self, sub: &dyn Subscription) -> Result<(), RecorderError> {
        let Some(assigned) = sub.assigned()? else { return Ok(()) };
        let owned = |t: &str, p: i32| assigned.iter().any(|(at, ap)| at == t && *ap == p);
        let before = self.calls.len();
        self.calls.retain(|_, c| match &c.partition {
            Some((t, p)) => owned(t, *p),
            None => true,
        });
        self.seen.retain(|(t, p), _| owned(t, *p));
        if self.calls.len() != before {
            tracing::info!(
                dropped = before - self.calls.len(),
                "partitions moved away: call state dropped"
            );
        }
        Ok(())
    }

    fn expire_holes(&mut self, now: Instant) {
        for call in self.calls.values_mut() {
            if let Some(since) = call.hole_since {
                if now.duration_since(since) >= self.cfg.reorder_timeout {
                    call.reasm.close_oldest_hole();
                    let pieces = call.reasm.drain();
                    self.unsealed_bytes += call.absorb(pieces);
                    call.hole_since = if call.reasm.buffered() > 0 { Some(now) } else { None };
                }
            }
        }
    }

    /// Makes everything handled so far durable, then stores the offsets.
    async fn flush(&mut self, sub: &mut dyn Subscription) -> Result<(), RecorderError> {
        self.evict_shredded().await?;
        let now = self.now_us();
        // All calls' new segments go into one spool object per flush: one
        // write instead of one per call (a file create costs ~1 ms of system
        // CPU on ext4 here; see docs/design/pitfalls.md).
        self.flush_seq += 1;
        let spool_path = format!(
            "spool/h{}/{}-{:010}.optk",
            now.div_euclid(3_600_000_000),
            self.instance,
            self.flush_seq
        );
        let FlushPlan {
            flush,
            spool,
            segments_written,
            finished,
            arrived_ms,
        } = plan_flush(&mut self.calls, &spool_path, self.cfg.max_segment_bytes, now)?;
        self.unsealed_bytes = 0;
        let t_start = Instant::now();
        // 1. Sealed audio into the blob store.
        if !spool.is_empty() {
            self.blobs.put(&spool_path, Bytes::from(spool)).await?;
        }
        let t_blobs = t_start.elapsed();
        // 2. Metadata in one transaction (refused if another recorder moved
        //    any of these calls on: this process then stops and restarts clean).
        self.meta.apply(&flush).await?;
        for call in self.calls.values_mut() {
            call.flushed_segments = call.segments;
        }
        let metrics = opptak_telemetry::metrics();
        let durable_ms = wall_ms();
        for at in arrived_ms {
            metrics
                .end_to_end_latency
                .observe((durable_ms - at).max(0) as f64 / 1000.0);
        }
        let t_meta = t_start.elapsed() - t_blobs;
        // The calls are stored: apply the reclassifications (journaled, and
        // an archive copy written where the new category needs one); a
        // refused one is dead-lettered with why, before the offsets move on.
        for (r, call_id, rc) in std::mem::take(&mut self.reclassifications) {
            let category = convert::service_category(rc.service_category);
            match self
                .compactor()
                .reclassify(&call_id, category, &rc.reason, &rc.by)
                .await
            {
                Ok((_, archived)) => {
                    tracing::info!(call_id = %call_id, %category, by = %rc.by, archived, "call reclassified by the telephony system")
                }
                Err(RecorderError::Refused(why)) => self.dead_letter(
                    &r,
                    call_id.as_str(),
                    Refusal::new(DeadLetterReason::ReclassificationRefused, why),
                ),
                Err(e) => return Err(e),
            }
        }
        self.apply_contexts().await?;
        // 3. Dead letters and completion events, acknowledged by the bus.
        for id in &finished {
            if let Some(call) = self.calls.get(id) {
                tracing::info!(call_id = %id, recording_id = %call.recording_id, frames = call.reasm.progress().frames,
                    segments = call.segments, gaps = call.reasm.progress().gaps.len(), "recording stored");
                let mut ev = recording_stored(call, now);
                let format = call.reasm.format();
                ev.gaps = self
                    .meta
                    .gaps(&call.recording_id)
                    .await?
                    .iter()
                    .map(|g| gap_event(g, format))
                    .collect();
                self.completed.push(Outgoing {
                    topic: self.cfg.topics.recordings.clone(),
                    key: Bytes::from(id.as_str().to_owned()),
                    payload: Bytes::from(ev.encode_to_vec()),
                });
            }
        }
        let mut out = Vec::with_capacity(self.dead_letters.len() + self.completed.len());
        for p in std::mem::take(&mut self.dead_letters) {
            out.push(self.seal_dead_letter(p).await?);
        }
        let completed = std::mem::take(&mut self.completed);
        self.stats.recordings_completed += completed.len() as u64;
        metrics.recordings_stored.inc_by(completed.len() as u64);
        out.extend(completed);
        if !out.is_empty() {
            self.bus.publish_all(out).await?;
        }
        let t_events = t_start.elapsed() - t_blobs - t_meta;
        if segments_written > 0 {
            tracing::debug!(
                segments = segments_written,
                blobs_ms = t_blobs.as_millis() as u64,
                meta_ms = t_meta.as_millis() as u64,
                events_ms = t_events.as_millis() as u64,
                "flush"
            );
        }
        // The opt-outs are stored: every KI artifact of those calls goes now,
        // before their offsets are committed (a crash here replays them).
        for (call_id, o) in std::mem::take(&mut self.ki_purge) {
            self.vault.purge_ki(&call_id, &o.requested_by, o.at_us).await?;
        }
        // 4. Offsets: up to the oldest chunk still held back for reordering.
        let (positions, held) = commit_positions(&self.seen, &self.calls);
        if let Some(tx) = &self.finished_tx {
            for id in &finished {
                let _ = tx.send(Job::Compact(id.clone()));
            }
            for id in self.reroute.drain(..) {
                let _ = tx.send(Job::Reroute(id));
            }
        }
        let committed = sub.commit(&positions);
        if committed.is_ok() && !positions.is_empty() {
            for p in &positions {
                self.durable.insert((p.topic.clone(), p.partition), p.next_offset);
            }
            let all = self
                .durable
                .iter()
                .map(|((topic, partition), next_offset)| Position {
                    topic: topic.clone(),
                    partition: *partition,
                    next_offset: *next_offset,
                })
                .collect();
            self.durable_tx.send_replace(all);
        }
        match committed {
            Ok(()) => {}
            // After a rebalance the new owner replays; the effect is idempotent.
            Err(BusError::NotAssigned(e)) => tracing::warn!(error = %e, "offsets not stored: partition moved"),
            Err(e) => return Err(e.into()),
        }
        // Partitions with nothing held back are fully committed.
        self.seen.retain(|k, _| held.contains(k));
        // Finished calls leave memory; a late or replayed chunk reloads them.
        self.calls.retain(|_, c| !c.complete);
        self.stats.segments_written += segments_written;
        self.stats.flushes += 1;
        if segments_written > 0 {
            // Idle flushes (nothing new) would only drown the real ones.
            metrics.flush_duration.observe(t_start.elapsed().as_secs_f64());
        }
        let in_flight = self.calls.len() as i64;
        metrics.calls_in_flight.inc_by(in_flight - self.in_flight_reported);
        self.in_flight_reported = in_flight;
        self.stats_tx.send_replace(self.stats.clone());
        Ok(())
    }
}

/// What one flush writes: planned from the calls' buffered audio, no IO.
struct FlushPlan {
    /// The metadata rows of the flush's one transaction.
    flush: Flush,
    /// The spool object: every sealed segment, back to back.
    spool: Vec<u8>,
    segments_written: u64,
    /// Calls whose final segment is in this flush.
    finished: Vec<CallId>,
    /// Producer timestamps of the audio sealed (for the latency metric).
    arrived_ms: Vec<i64>,
}

/// Step 1 of a flush, pure: seals each dirty call's new audio as segments
/// of at most `max_segment_bytes` (whole frames) into one spool object at
/// `spool_path`, with an ending call's last segment marked final (empty if
/// nothing is left), and lists the metadata rows for the transaction. The
/// calls' state moves on as planned (segment counters, buffers emptied,
/// ending calls complete); if the plan is not made durable the recorder
/// stops and rebuilds from the store, so nothing planned is taken for done.
fn plan_flush(
    calls: &mut HashMap<CallId, CallState>,
    spool_path: &str,
    max_segment_bytes: usize,
    now_us: i64,
) -> Result<FlushPlan, CryptoError> {
    let mut plan = FlushPlan {
        flush: Flush::default(),
        spool: Vec::new(),
        segments_written: 0,
        finished: Vec::new(),
        arrived_ms: Vec::new(),
    };
    for (id, call) in calls.iter_mut().filter(|(_, c)| c.dirty) {
        if let Some(nc) = call.new_call.take() {
            plan.flush.new_calls.push(nc);
        }
        let ending = call.end.is_some() && !call.complete;
        let frame_bytes = call.reasm.format().wire_frame_bytes();
        let max = (max_segment_bytes / frame_bytes).max(1) * frame_bytes;
        let mut pieces: Vec<&[u8]> = call.buf.chunks(max).collect();
        if pieces.is_empty() && ending {
            pieces.push(&[]);
        }
        let n = pieces.len();
        for (i, pt) in pieces.into_iter().enumerate() {
            let header = SegmentHeader {
                kind: ArtifactKind::Recording,
                final_segment: ending && i + 1 == n,
                key_id: call.key.id().to_owned(),
                recording_id: call.recording_id.clone(),
                index: call.segments,
                first_frame: call.buf_first_frame,
            };
            let sealed = segment::seal(&call.key, &header, pt)?;
            let frames = (pt.len() / frame_bytes) as u64;
            plan.flush.segments.push(SegmentRow {
                recording_id: call.recording_id.clone(),
                idx: call.segments,
                blob_path: spool_path.to_owned(),
                blob_offset: plan.spool.len() as u64,
                first_frame: call.buf_first_frame,
                frames,
                sealed_bytes: sealed.len() as u64,
                final_segment: header.final_segment,
            });
            plan.spool.extend_from_slice(&sealed);
            plan.segments_written += 1;
            call.segments += 1;
            call.buf_first_frame += frames;
        }
        call.buf.clear();
        plan.arrived_ms.append(&mut call.arrived_ms);
        plan.flush.gaps.append(&mut call.new_gaps);
        if ending {
            call.complete = true;
            plan.finished.push(id.clone());
        }
        let p = call.reasm.progress();
        plan.flush.updates.push(CallUpdate {
            call_id: id.clone(),
            recording_id: call.recording_id.clone(),
            next_sequence: p.next_sequence,
            frames: p.frames,
            last_chunk_frames: p.last_chunk_frames,
            duplicate_chunks: call.duplicates,
            segments: call.segments,
            prev_segments: call.flushed_segments,
            complete: call.complete,
            end: call.end.clone(),
            opt_out: call.opt_out.clone(),
            ki_notice: call.facts.ki_notice.clone(),
            updated_at_us: now_us,
        });
        call.dirty = false;
    }
    Ok(plan)
}

/// Step 4 of a flush, pure: the offset each input partition may be
/// committed at — just past the highest offset seen, or at the oldest chunk
/// a call still holds back for reordering, so a crash reads it again. Also
/// returns the partitions with chunks held back.
fn commit_positions(
    seen: &BTreeMap<(Arc<str>, i32), i64>,
    calls: &HashMap<CallId, CallState>,
) -> (Vec<Position>, HashSet<(Arc<str>, i32)>) {
    let mut held: HashMap<(Arc<str>, i32), i64> = HashMap::new();
    for call in calls.values() {
        for s in call.reasm.buffered_tags() {
            let e = held.entry((s.topic.clone(), s.partition)).or_insert(s.offset);
            *e = (*e).min(s.offset);
        }
    }
    let positions = seen
        .iter()
        .map(|((topic, partition), max_seen)| Position {
            topic: topic.to_string(),
            partition: *partition,
            next_offset: held.get(&(topic.clone(), *partition)).copied().unwrap_or(max_seen + 1),
        })
        .collect();
    (positions, held.into_keys().collect())
}

fn recording_stored(call: &CallState, now_us: i64) -> v1::RecordingStored {
    let format = call.reasm.format();
    let p = call.reasm.progress();
    v1::RecordingStored {
        call_id: call.facts.call_id.to_string(),
        recording_id: call.recording_id.clone(),
        stored_at: Some(convert::timestamp(now_us)),
        sample_rate_hz: format.sample_rate_hz(),
        channels: format.channels() as u32,
        frames: p.frames,
        duration: Some(convert::duration(format.frames_to_micros(p.frames))),
        segments: call.segments as u32,
        gaps: Vec::new(),
        duplicate_chunks: call.duplicates,
        blob_prefix: call.blob_prefix.clone(),
    }
}

fn gap_event(g: &GapRow, format: &opptak_domain::AudioFormat) -> v1::Gap {
    v1::Gap {
        first_missing_sequence: g.first_missing,
        missing_chunks: g.missing,
        at: Some(convert::duration(format.frames_to_micros(g.at_frame))),
        length: Some(convert::duration(format.frames_to_micros(g.frames))),
    }
}

/// Work for the compaction task.
enum Job {
    /// A recording finished: compact it, write its copies, route its retention.
    Compact(CallId),
    /// A finished call's facts changed: recompute its retention.
    Reroute(CallId),
}

/// How a stage seals and addresses its dead letters.
pub(crate) struct DeadLetterSeal<'a> {
    pub(crate) key: &'a DataKey,
    /// `<owner>/<class>` of `key`.
    pub(crate) key_ref: String,
    pub(crate) segment_bytes: u32,
    /// The dead-letter topic.
    pub(crate) topic: &'a str,
    /// The stage that refused it (`recorder`, `messages`).
    pub(crate) stage: &'static str,
    pub(crate) at_us: i64,
}

/// The dead letter of a refused record: its reason and detail, and its
/// original value (the first 512 KiB; `detail` says when it was cut) sealed
/// in format v2 (kind dead-letter) under `seal.key`.
pub(crate) fn dead_letter_out(
    r: &Record,
    call_id: String,
    refusal: Refusal,
    seal: &DeadLetterSeal<'_>,
) -> Result<Outgoing, RecorderError> {
    const MAX_ORIGINAL: usize = 512 * 1024;
    let mut detail = refusal.detail;
    use sha2::Digest;
    let digest = hex::encode(sha2::Sha256::digest(&r.payload));
    let original = if r.payload.len() > MAX_ORIGINAL {
        detail.push_str(&format!(
            "; original of {} bytes truncated to {MAX_ORIGINAL}",
            r.payload.len()
        ));
        r.payload.slice(..MAX_ORIGINAL)
    } else {
        r.payload.clone()
    };
    let info = StreamInfo {
        kind: ArtifactKind::DeadLetter,
        key_id: seal.key.id().to_owned(),
        key_ref: seal.key_ref.clone(),
        artifact_id: opptak_vault::reader::deadletter_artifact_id(r.partition, r.offset),
    };
    let sealed = opptak_crypto::stream::seal(seal.key, &info, seal.segment_bytes, &original)?;
    let dl = v1::DeadLetter {
        source_topic: r.topic.clone(),
        source_partition: r.partition,
        source_offset: r.offset,
        original_key: r.key.clone().map(|k| k.to_vec()).unwrap_or_default(),
        sealed_original: sealed,
        original_bytes: r.payload.len() as u64,
        original_sha256: digest,
        reason: refusal.reason as i32,
        detail,
        call_id,
        at: Some(convert::timestamp(seal.at_us)),
        stage: seal.stage.into(),
    };
    Ok(Outgoing {
        topic: seal.topic.to_owned(),
        key: r.key.clone().unwrap_or_else(|| Bytes::from_static(b"unknown")),
        payload: Bytes::from(dl.encode_to_vec()),
    })
}

/// A refused input waiting for the flush that seals and publishes it.
struct PendingDeadLetter {
    record: Record,
    call_id: String,
    refusal: Refusal,
}

/// Compacts the recordings this recorder finished as they come, and sweeps
/// for ones left behind (a crash, another recorder) every `sweep`.
async fn compaction_loop(
    c: compact::Compactor,
    mut finished: tokio::sync::mpsc::UnboundedReceiver<Job>,
    sweep: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(sweep);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stopping = false;
    loop {
        tokio::select! {
            // Runs until the recorder drops its sender after the last flush:
            // everything it finished is compacted before the process exits.
            job = finished.recv() => match job {
                Some(Job::Compact(id)) => {
                    let span = tracing::info_span!("compact", call_id = %id);
                    if let Err(e) = tracing::Instrument::instrument(c.compact(&id), span).await {
                        tracing::warn!(call_id = %id, error = %e, "compaction failed; the sweep retries");
                    }
                }
                Some(Job::Reroute(id)) => {
                    if let Err(e) = c.retention().route(&id).await {
                        tracing::warn!(call_id = %id, error = %e, "retention routing failed");
                    }
                }
                None => return,
            },
            _ = tick.tick(), if !stopping => {
                if let Err(e) = c.run_pending(sweep, 100).await {
                    tracing::warn!(error = %e, "compaction sweep failed");
                }
            }
            r = shutdown.changed(), if !stopping => stopping = r.is_err() || *shutdown.borrow(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use opptak_domain::model::{AudioFormat, ChannelRole, Codec, Desk, Direction};

    fn call(id: &str) -> (CallId, CallState) {
        let call_id = CallId::parse(id).unwrap();
        let format = AudioFormat::new(Codec::Pcmu, 8000, vec![ChannelRole::Agent, ChannelRole::Customer]).unwrap();
        let facts = CallFacts {
            call_id: call_id.clone(),
            started_at_us: 1,
            direction: Direction::Inbound,
            customer_ref: "cust".into(),
            advisor_id: "adv".into(),
            desk: Desk::CustomerCenter,
            service_category: ServiceCategory::General,
            ki_enabled: false,
            customer_informed: false,
            format: format.clone(),
            ki_notice: None,
        };
        let state = CallState {
            facts,
            recording_id: format!("rec-{id}"),
            blob_prefix: format!("recordings/{id}"),
            key: DataKey::generate(),
            tel_key: None,
            reasm: Reassembler::new(format, ReassemblyConfig::default()),
            segments: 0,
            flushed_segments: 0,
            buf: Vec::new(),
            buf_first_frame: 0,
            new_gaps: Vec::new(),
            duplicates: 0,
            end: None,
            opt_out: None,
            complete: false,
            new_call: None,
            dirty: false,
            hole_since: None,
            partition: None,
            arrived_ms: Vec::new(),
            last_input_us: 0,
        };
        (call_id, state)
    }

    fn source(partition: i32, offset: i64) -> Source {
        Source {
            topic: Arc::from("opptak.telephony.v1"),
            partition,
            offset,
            timestamp_ms: None,
        }
    }

    #[test]
    fn a_flush_seals_each_calls_new_audio_into_one_spool_object() {
        let mut calls = HashMap::new();
        // 2.5 segments of stereo G.711 (2 bytes a frame), and an idle call.
        let (a, mut sa) = call("call-a");
        sa.buf = (0..2500u32).map(|i| (i % 251) as u8).collect();
        sa.arrived_ms = vec![7, 8];
        sa.dirty = true;
        calls.insert(a.clone(), sa);
        let (b, sb) = call("call-b");
        calls.insert(b.clone(), sb);

        let plan = plan_flush(&mut calls, "spool/h1/x-1.optk", 1000, 42).unwrap();
        assert_eq!(plan.segments_written, 3);
        assert_eq!(plan.arrived_ms, vec![7, 8]);
        assert!(plan.finished.is_empty());
        let rows = &plan.flush.segments;
        assert_eq!(rows.iter().map(|r| r.frames).collect::<Vec<_>>(), vec![500, 500, 250]);
        assert_eq!(
            rows.iter().map(|r| r.first_frame).collect::<Vec<_>>(),
            vec![0, 500, 1000]
        );
        let mut at = 0;
        let mut audio = Vec::new();
        let key = &calls[&a].key;
        for (i, r) in rows.iter().enumerate() {
            assert_eq!((r.idx, r.blob_offset, r.final_segment), (i as u64, at, false));
            assert_eq!(r.blob_path, "spool/h1/x-1.optk");
            let sealed = &plan.spool[r.blob_offset as usize..(r.blob_offset + r.sealed_bytes) as usize];
            let (_, pt) = segment::open(
                key,
                sealed,
                segment::Expect {
                    kind: ArtifactKind::Recording,
                    recording_id: "rec-call-a",
                    index: i as u64,
                },
            )
            .unwrap();
            audio.extend(pt);
            at += r.sealed_bytes;
        }
        assert_eq!(at, plan.spool.len() as u64, "the spool is the segments back to back");
        assert_eq!(audio, (0..2500u32).map(|i| (i % 251) as u8).collect::<Vec<_>>());
        // One update, for the dirty call only, fenced on its previous count.
        assert_eq!(plan.flush.updates.len(), 1);
        let u = &plan.flush.updates[0];
        assert_eq!((u.segments, u.prev_segments, u.updated_at_us), (3, 0, 42));
        let sa = &calls[&a];
        assert!(!sa.dirty && sa.buf.is_empty() && sa.arrived_ms.is_empty());
        assert_eq!((sa.segments, sa.buf_first_frame), (3, 1250));
    }

    #[test]
    fn an_ending_call_gets_a_final_segment_even_without_new_audio() {
        let mut calls = HashMap::new();
        let (a, mut sa) = call("call-end");
        sa.segments = 4;
        sa.flushed_segments = 4;
        sa.buf_first_frame = 900;
        sa.end = Some(CallEnd {
            ended_at_us: 5,
            reason: "hangup_customer".into(),
            last_sequence: None,
        });
        sa.dirty = true;
        calls.insert(a.clone(), sa);
        let plan = plan_flush(&mut calls, "spool/h1/x-2.optk", 1000, 43).unwrap();
        assert_eq!(plan.finished, vec![a.clone()]);
        assert_eq!(plan.flush.segments.len(), 1);
        let r = &plan.flush.segments[0];
        assert_eq!((r.idx, r.first_frame, r.frames, r.final_segment), (4, 900, 0, true));
        assert!(calls[&a].complete);
        assert!(plan.flush.updates[0].complete);
        // Complete: a later flush writes nothing more for it.
        calls.get_mut(&a).unwrap().dirty = true;
        let again = plan_flush(&mut calls, "spool/h1/x-3.optk", 1000, 44).unwrap();
        assert_eq!(again.segments_written, 0);
        assert!(again.finished.is_empty());
    }

    #[test]
    fn offsets_stop_at_the_oldest_chunk_held_back_for_reordering() {
        let mut calls = HashMap::new();
        let (a, mut sa) = call("call-held");
        // Sequence 0 is missing: 1 and 2 wait in the reorder window.
        let chunk = vec![0xffu8; 160];
        assert!(matches!(
            sa.reasm.offer(2, &chunk, None, source(0, 9)).unwrap(),
            Offer::Accepted
        ));
        assert!(matches!(
            sa.reasm.offer(1, &chunk, None, source(0, 5)).unwrap(),
            Offer::Accepted
        ));
        calls.insert(a, sa);
        let mut seen = BTreeMap::new();
        seen.insert((Arc::from("opptak.telephony.v1"), 0), 12);
        seen.insert((Arc::from("opptak.telephony.v1"), 1), 3);
        let (positions, held) = commit_positions(&seen, &calls);
        let at = |p: i32| positions.iter().find(|x| x.partition == p).unwrap().next_offset;
        assert_eq!(at(0), 5, "the held chunk is read again after a crash");
        assert_eq!(at(1), 4, "past everything seen");
        assert_eq!(held.len(), 1);
    }
}
