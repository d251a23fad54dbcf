//! Wiring: from a [`Config`] to running roles.

use crate::config::Config;
use anyhow::{Context, Result};
use opptak_bus::Bus;
use opptak_crypto::{KeyAdmin, KeyProvider, LocalKeyring, Pkcs11Keyring};
use opptak_recorder::{Recorder, RecorderStats};
use opptak_store::{BlobStore, MetadataStore};
use std::sync::Arc;
use tokio::sync::watch;

/// The edges every role needs, opened from the configuration.
#[derive(Clone)]
pub struct Edges {
    pub config: Config,
    pub bus: Arc<dyn Bus>,
    pub blobs: Arc<dyn BlobStore>,
    pub meta: Arc<dyn MetadataStore>,
    pub keys: Arc<dyn KeyProvider>,
    /// KEKs shared with the telephony system (keys.telephony_keyring).
    pub telephony_keys: Option<Arc<dyn KeyProvider>>,
    pub policy: Arc<opptak_domain::retention::Policy>,
    pub clock: Arc<dyn opptak_domain::time::Clock>,
    /// The WORM archive (also reachable through `blobs` under `archive/`).
    pub archive: Arc<dyn opptak_store::archive::ArchiveStore>,
    /// The hot blob store alone.
    pub hot: Arc<dyn BlobStore>,
}

impl Edges {
    pub async fn open(config: Config) -> Result<Self> {
        let hot = opptak_store::open_blob_store(&config.storage.blobs).context("opening the blob store")?;
        Self::open_with_hot(config, hot).await
    }

    /// [`Edges::open`] with `hot` as the hot blob store instead of the one
    /// `storage.blobs` names (tests: an S3 store with explicit credentials).
    /// The store is verified first, so a bucket opptak must not use (one with
    /// versioning) stops the start.
    pub async fn open_with_hot(config: Config, hot: Arc<dyn BlobStore>) -> Result<Self> {
        hot.verify()
            .await
            .with_context(|| format!("checking the blob store {}", hot.describe()))?;
        let bus: Arc<dyn Bus> = if let Some(brokers) = config.bus.url.strip_prefix("kafka://") {
            let opts = config.kafka_options()?;
            Arc::new(opptak_bus::kafka::KafkaBus::new(brokers.trim_end_matches('/'), opts)?)
        } else {
            opptak_bus::open(&config.bus.url)?
        };
        let meta = opptak_store::open_metadata_store(&config.metadata_url())
            .await
            .context("opening the metadata store")?;
        let keys = Self::open_keys(&config)?;
        let telephony_keys = open_telephony_keyring(&config)?;
        let policy = Arc::new(config.policy()?);
        let clock = clock_from_env()?;
        let archive = opptak_store::archive::open_archive_store(&config.storage.archive, clock.clone())
            .context("opening the archive store")?;
        let blobs: Arc<dyn BlobStore> =
            Arc::new(opptak_retention::tiered::TieredBlobs::new(hot.clone(), archive.clone()));
        Ok(Self {
            config,
            bus,
            blobs,
            meta,
            keys,
            telephony_keys,
            policy,
            clock,
            archive,
            hot,
        })
    }

    /// The same edges on another clock (tests travel in time): the archive is
    /// reopened so its WORM checks use that clock too.
    pub fn with_clock(mut self, clock: Arc<dyn opptak_domain::time::Clock>) -> Result<Self> {
        self.archive = opptak_store::archive::open_archive_store(&self.config.storage.archive, clock.clone())
            .context("opening the archive store")?;
        self.blobs = Arc::new(opptak_retention::tiered::TieredBlobs::new(
            self.hot.clone(),
            self.archive.clone(),
        ));
        self.clock = clock;
        Ok(self)
    }

    /// The same edges on another archive store (tests: a store opened with
    /// explicit credentials).
    pub fn with_archive_store(mut self, archive: Arc<dyn opptak_store::archive::ArchiveStore>) -> Self {
        self.archive = archive;
        self.blobs = Arc::new(opptak_retention::tiered::TieredBlobs::new(
            self.hot.clone(),
            self.archive.clone(),
        ));
        self
    }

    /// Opens the configured KEK provider, creating a local keyring if there
    /// is none yet.
    pub fn open_keys(config: &Config) -> Result<Arc<dyn KeyProvider>> {
        Ok(open_key_admin(config, true)?)
    }

    /// Creates the recorder's topics if missing, with the policy's retention.
    pub async fn create_topics(&self) -> Result<()> {
        self.ensure_topics(&["recorder"]).await
    }

    /// Creates the topics `roles` read or write if missing (an existing
    /// topic is left alone, so a principal that may not create topics
    /// starts against topics an administrator created).
    pub async fn ensure_topics(&self, roles: &[&str]) -> Result<()> {
        let specs = crate::topics::specs_for_roles(&self.config, &self.policy, roles);
        crate::topics::ensure(self.bus.as_ref(), &specs)
            .await
            .with_context(|| format!("the topics of {}", roles.join(", ")))
    }

    /// The call vault over these edges: keys, sealed artifacts, reading back.
    pub fn vault(&self) -> opptak_vault::Vault {
        opptak_vault::Vault::new(
            self.meta.clone(),
            self.blobs.clone(),
            self.keys.clone(),
            self.clock.clone(),
        )
    }

    /// The audit log in the metadata database.
    pub async fn audit(&self) -> Result<opptak_audit::Audit> {
        opptak_audit::Audit::open(&self.config.metadata_url(), self.keys.clone(), self.clock.clone())
            .await
            .context("opening the audit log")
    }

    /// The edges the review service uses.
    pub fn review(&self) -> opptak_review::ReviewEdges {
        let c = &self.config;
        opptak_review::ReviewEdges {
            bus: self.bus.clone(),
            vault: self.vault(),
            retention: self.retention(),
            config: opptak_review::ReviewConfig {
                web: c.web.clone(),
                oidc: c.oidc.clone(),
                qa: c.qa.clone(),
                metadata_url: c.metadata_url(),
                topic_prefix: c.bus.topic_prefix.clone(),
                partitions: c.bus.partitions,
            },
            reclassifier: Some(Arc::new(CompactorReclassifier(self.compactor()))),
        }
    }

    /// The edges disclosure and data-subject requests use.
    pub fn compliance(&self) -> opptak_compliance::ComplianceEdges {
        opptak_compliance::ComplianceEdges {
            vault: self.vault(),
            retention: self.retention(),
            metadata_url: self.config.metadata_url(),
        }
    }

    pub fn recorder(&self) -> Recorder {
        Recorder::new(self.bus.clone(), self.vault(), self.config.recorder_config())
            .with_telephony_keys(self.telephony_keys.clone())
            .with_policy(self.policy.clone())
            .with_archive(Some(self.archive.clone()))
            .with_journal(Some(self.journal()))
    }

    /// The messages role over these edges (conversations; issue 17).
    pub fn conversations(&self) -> opptak_recorder::conversations::ConversationRecorder {
        opptak_recorder::conversations::ConversationRecorder::new(
            self.bus.clone(),
            self.vault(),
            self.retention(),
            self.config.messages_config(),
        )
        .with_shared_keys(self.telephony_keys.clone())
        .with_archive(self.archive.clone())
    }

    /// The messages role as `opptak run --roles messages` runs it: every
    /// conversation's redacted analysis copy, once stored, is categorised
    /// and indexed for the topic dashboard and QA sampling
    /// ([`ConversationQa`]; issue 17, section 4).
    pub async fn messages_role(&self) -> Result<opptak_recorder::conversations::ConversationRecorder> {
        Ok(self.conversations().with_analysis(conversation_qa(self).await?))
    }

    /// Compaction and copies over these edges (the recorder's own, for
    /// copies a later fact change requires).
    pub fn compactor(&self) -> opptak_recorder::compact::Compactor {
        opptak_recorder::compact::Compactor::new(self.vault(), self.config.recorder.stream_segment_bytes)
            .with_policy(self.policy.clone())
            .with_archive(self.archive.clone())
            .with_journal(Some(self.journal()))
    }

    /// Retention routing, sweeping and holds over these edges; holds,
    /// extensions and reclassifications are written to the audit log first.
    pub fn retention(&self) -> opptak_retention::Retention {
        opptak_retention::Retention::new(
            self.meta.clone(),
            self.blobs.clone(),
            self.policy.clone(),
            self.clock.clone(),
        )
        .with_archive(self.archive.clone())
        .with_journal(self.journal())
    }

    /// Retention's journal: the hash-chained audit log of these edges.
    pub fn journal(&self) -> Arc<dyn opptak_retention::Journal> {
        Arc::new(AuditJournal {
            metadata_url: self.config.metadata_url(),
            keys: self.keys.clone(),
            clock: self.clock.clone(),
            audit: tokio::sync::OnceCell::new(),
        })
    }
}

/// A compliance officer's reclassification of a call's service category,
/// with what it takes: when the new category makes the policy keep an
/// archive copy the call does not have, the copy is written from the
/// recording — and the reclassification is refused, with why, when the
/// recording can no longer be read (past its 24 hours, or shredded), so the
/// policy never claims an archive copy that does not exist. Returns the
/// re-routed rows and whether an archive copy was written.
pub async fn reclassify(
    edges: &Edges,
    call_id: &opptak_domain::CallId,
    category: opptak_domain::ServiceCategory,
    reason: &str,
    by: &str,
) -> Result<(Vec<opptak_store::meta::RetentionRow>, bool)> {
    Ok(edges.compactor().reclassify(call_id, category, reason, by).await?)
}

/// The review service's reclassification: the recorder's compactor.
struct CompactorReclassifier(opptak_recorder::compact::Compactor);

#[async_trait::async_trait]
impl opptak_review::Reclassifier for CompactorReclassifier {
    async fn reclassify(
        &self,
        call_id: &opptak_domain::CallId,
        category: opptak_domain::ServiceCategory,
        reason: &str,
        by: &str,
    ) -> Result<bool> {
        Ok(self.0.reclassify(call_id, category, reason, by).await?.1)
    }
}

/// Records the retention policy a process starts with in the audit log:
/// `policy.load`, subject `policy:sha256:<hex of the file>`, with where it
/// came from, so a changed policy file is visible in the hash chain.
pub async fn audit_policy_load(edges: &Edges, roles: &str) -> Result<()> {
    use sha2::Digest;
    let (text, origin) = edges.config.policy_text()?;
    let hash = hex::encode(sha2::Sha256::digest(text.as_bytes()));
    edges
        .audit()
        .await?
        .record_allowed(
            &format!("os:{}", opptak_audit::os_user()),
            "system",
            "policy.load",
            &format!("policy:sha256:{hash}"),
            &format!("{origin}; roles {roles}"),
        )
        .await?;
    tracing::info!(policy_sha256 = %hash, %origin, "retention policy loaded");
    Ok(())
}

/// Retention's journal: the hash-chained audit log, opened on first use.
struct AuditJournal {
    metadata_url: String,
    keys: Arc<dyn KeyProvider>,
    clock: Arc<dyn opptak_domain::time::Clock>,
    audit: tokio::sync::OnceCell<opptak_audit::Audit>,
}

#[async_trait::async_trait]
impl opptak_retention::Journal for AuditJournal {
    async fn record(&self, actor: &str, action: &str, subject: &str, reason: &str) -> Result<(), String> {
        let audit = self
            .audit
            .get_or_try_init(|| opptak_audit::Audit::open(&self.metadata_url, self.keys.clone(), self.clock.clone()))
            .await
            .map_err(|e| e.to_string())?;
        audit
            .record_allowed(actor, "compliance", action, subject, reason)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// The system clock, or — for tests and rehearsals of retention — a fixed
/// time from `OPPTAK_NOW_US` (µs since the epoch).
pub fn clock_from_env() -> Result<Arc<dyn opptak_domain::time::Clock>> {
    match std::env::var("OPPTAK_NOW_US") {
        Ok(v) => {
            let us: i64 = v.trim().parse().context("OPPTAK_NOW_US must be µs since the epoch")?;
            tracing::warn!(now = %opptak_domain::time::utc_time(us), "clock fixed by OPPTAK_NOW_US");
            Ok(Arc::new(opptak_domain::time::ManualClock::new(us)))
        }
        Err(_) => Ok(Arc::new(opptak_domain::time::SystemClock)),
    }
}

/// The sweeper's pass over the key hierarchy ([`opptak_vault::kek::maintain`]):
/// period KEKs made ahead, keys moved, KEKs whose keys all expired destroyed
/// (each destruction audited).
pub struct KekMaintenance {
    pub config: Config,
    pub keys: Arc<dyn KeyProvider>,
    pub clock: Arc<dyn opptak_domain::time::Clock>,
    pub lookahead_us: i64,
}

impl KekMaintenance {
    /// The pass over these edges' keys, looking ahead two sweep intervals and an hour.
    pub fn of(edges: &Edges) -> Self {
        let interval_us = edges.config.retention.sweep_interval_s.saturating_mul(1_000_000) as i64;
        Self {
            config: edges.config.clone(),
            keys: edges.keys.clone(),
            clock: edges.clock.clone(),
            lookahead_us: 2 * interval_us + 3_600_000_000,
        }
    }

    pub async fn run(&self, meta: &dyn MetadataStore) -> Result<opptak_vault::kek::KekReport> {
        let admin = open_key_admin(&self.config, false)?;
        let now_us = self.clock.now_us();
        let report = opptak_vault::kek::maintain(meta, admin.as_ref(), now_us, self.lookahead_us).await?;
        if !report.destroyed.is_empty() {
            let audit =
                opptak_audit::Audit::open(&self.config.metadata_url(), self.keys.clone(), self.clock.clone()).await?;
            for id in &report.destroyed {
                audit
                    .record_allowed(
                        "sweeper",
                        "system",
                        "kek.destroy",
                        id,
                        "every data key it wrapped had expired or was shredded",
                    )
                    .await?;
            }
        }
        if report != Default::default() {
            tracing::info!(created = report.created.len(), moved = report.moved, destroyed = ?report.destroyed,
                "period keks maintained");
        }
        Ok(report)
    }
}

/// The sweeper role: every `retention.sweep_interval_s`, deletes what
/// expired, and ends the calls idle past `recorder.idle_timeout_s` whose
/// CallEnded never came ([`opptak_recorder::close_idle_calls`]).
pub struct RunningSweeper {
    stop: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningSweeper {
    pub fn spawn(edges: &Edges) -> Self {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let retention = edges.retention();
        let interval = std::time::Duration::from_secs(edges.config.retention.sweep_interval_s);
        let batch = edges.config.retention.sweep_batch;
        let flag = stop.clone();
        let up = opptak_telemetry::metrics().role_up("sweeper");
        let idle_timeout_us = edges.config.recorder.idle_timeout_s.saturating_mul(1_000_000) as i64;
        let (meta, bus, clock) = (edges.meta.clone(), edges.bus.clone(), edges.clock.clone());
        let telephony = edges.config.recorder_config().topics.telephony;
        let keks = KekMaintenance::of(edges);
        let task = tokio::spawn(async move {
            let _up = up;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                match retention.sweep(batch, &flag, |_| {}).await {
                    Ok(r) if r.deleted + r.spool_objects_deleted > 0 => tracing::info!(?r, "sweep"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "sweep failed; retrying next interval"),
                }
                // After the sweep: a key it shredded may have been the last
                // live one under its period KEK.
                if let Err(e) = keks.run(meta.as_ref()).await {
                    tracing::warn!(error = %e, "period kek maintenance failed; retrying next interval");
                }
                if idle_timeout_us > 0 {
                    let before = clock.now_us() - idle_timeout_us;
                    match opptak_recorder::close_idle_calls(meta.as_ref(), bus.as_ref(), &telephony, before, batch)
                        .await
                    {
                        Ok(0) => {}
                        Ok(n) => {
                            opptak_telemetry::metrics().idle_calls_ended.inc_by(n as u64);
                            tracing::warn!(calls = n, "idle calls ended (no CallEnded came)")
                        }
                        Err(e) => tracing::warn!(error = %e, "closing idle calls failed; retrying next interval"),
                    }
                }
                let deadline = tokio::time::Instant::now() + interval;
                while tokio::time::Instant::now() < deadline && !flag.load(std::sync::atomic::Ordering::Relaxed) {
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
            }
        });
        Self { stop, task }
    }

    pub async fn stop(self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = self.task.await;
    }
}

/// The transcriber role over these edges (needs `ki.asr_url`).
pub fn transcriber(edges: &Edges) -> Result<Arc<opptak_ki::transcribe::Transcriber>> {
    transcriber_with(edges, None)
}

/// The transcriber role with `asr`, or the configured recognizer when `None`.
pub fn transcriber_with(
    edges: &Edges,
    asr: Option<Arc<dyn opptak_ki::asr::SpeechRecognizer>>,
) -> Result<Arc<opptak_ki::transcribe::Transcriber>> {
    let ki = &edges.config.ki;
    let asr = match asr {
        Some(a) => a,
        None => configured_asr(&edges.config)?,
    };
    Ok(Arc::new(opptak_ki::transcribe::Transcriber {
        vault: edges.vault(),
        bus: edges.bus.clone(),
        asr,
        retention: edges.retention(),
        topic: transcripts_topic(&edges.config),
        vad: Default::default(),
        language: (!ki.language.trim().is_empty()).then(|| ki.language.trim().to_owned()),
        listener: None,
    }))
}

/// The transcriber role with `asr` (the configured one when `None`),
/// telling QA ([`opptak_review::qa::Qa`]) of every call whose speech
/// recognition failed, so it can be sampled.
pub async fn transcriber_with_qa(
    edges: &Edges,
    asr: Option<Arc<dyn opptak_ki::asr::SpeechRecognizer>>,
) -> Result<Arc<opptak_ki::transcribe::Transcriber>> {
    let t = transcriber_with(edges, asr)?;
    let qa = Arc::new(opptak_review::qa::Qa::open(&edges.review()).await?);
    let mut t = Arc::try_unwrap(t).map_err(|_| anyhow::anyhow!("the transcriber is shared already"))?;
    t.listener = Some(qa);
    Ok(Arc::new(t))
}

/// What screens every draft: the lexicon, and the language model of
/// `ki.llm_url` as the second opinion when it is one (not `embedded://`).
pub fn screener(config: &Config) -> Result<opptak_ki::screen::Screener> {
    match chat_config(config)? {
        None => Ok(opptak_ki::screen::Screener::lexicon_only()),
        Some(cfg) => opptak_ki::screen::Screener::with_model(cfg).map_err(|e| anyhow::anyhow!("ki.llm_url: {e}")),
    }
}

/// The recognizer `ki.asr_url` names.
pub fn configured_asr(config: &Config) -> Result<Arc<dyn opptak_ki::asr::SpeechRecognizer>> {
    let ki = &config.ki;
    if ki.asr_url.trim().is_empty() {
        anyhow::bail!(
            "the transcriber role needs a speech recognizer: set ki.asr_url (locally: deploy/local/services.sh \
             start-speech, then ki.asr_url = \"http://127.0.0.1:19100\")"
        );
    }
    let mut cfg = opptak_ki::asr::AsrConfig::new(ki.asr_url.trim(), ki.asr_model.as_str());
    cfg.timeout = std::time::Duration::from_secs(ki.asr_timeout_s.max(1));
    let asr = opptak_ki::asr::HttpAsr::new(cfg).map_err(|e| anyhow::anyhow!("ki.asr_url: {e}"))?;
    Ok(Arc::new(asr))
}

/// The chat server `ki.llm_url` names; `None` for the embedded drafter.
fn chat_config(config: &Config) -> Result<Option<opptak_ki::llm::ChatConfig>> {
    let ki = &config.ki;
    let url = ki.llm_url.trim();
    if url.is_empty() || url.starts_with("embedded:") {
        return Ok(None);
    }
    let mut cfg = opptak_ki::llm::ChatConfig::new(url, ki.llm_model.trim());
    cfg.timeout = std::time::Duration::from_secs(ki.llm_timeout_s.max(1));
    let env = ki.llm_api_key_env.trim();
    if !env.is_empty() {
        let key = std::env::var(env).with_context(|| format!("ki.llm_api_key_env names {env}, which is not set"))?;
        cfg.api_key = Some(opptak_ki::llm::ApiKey::new(key));
    }
    Ok(Some(cfg))
}

/// The draft writer `ki.llm_url` names (the embedded one by default).
pub fn draft_writer(config: &Config) -> Result<Arc<dyn opptak_ki::llm::DraftWriter>> {
    let taxonomy = Arc::new(opptak_domain::summary::Taxonomy::default_taxonomy());
    let Some(cfg) = chat_config(config)? else {
        return Ok(Arc::new(opptak_ki::llm::EmbeddedDrafts::new(taxonomy)));
    };
    Ok(Arc::new(
        opptak_ki::llm::ChatDrafts::new(cfg, taxonomy).map_err(|e| anyhow::anyhow!("ki.llm_url: {e}"))?,
    ))
}

/// QA and the topic dashboard hear of every conversation whose redacted
/// analysis copy the messages role stored: [`opptak_review::qa::Qa::on_conversation`]
/// categorises it into the call taxonomy (the embedded classifier: nothing
/// goes to a language model, R13), indexes it with its channel and samples
/// the bot's answers for QA.
pub struct ConversationQa(pub Arc<opptak_review::qa::Qa>);

#[async_trait::async_trait]
impl opptak_recorder::conversations::ConversationAnalysis for ConversationQa {
    async fn analyse(
        &self,
        facts: &opptak_domain::model::ConversationFacts,
        copy: &opptak_domain::conversation::ConversationLog,
    ) -> std::result::Result<(), String> {
        self.0
            .on_conversation(facts, copy)
            .await
            .map(|_| ())
            .map_err(|e| format!("{e:#}"))
    }
}

/// [`ConversationQa`] over these edges' reporting tables.
pub async fn conversation_qa(edges: &Edges) -> Result<Arc<dyn opptak_recorder::conversations::ConversationAnalysis>> {
    let qa = opptak_review::qa::Qa::open(&edges.review()).await?;
    Ok(Arc::new(ConversationQa(Arc::new(qa))))
}

/// The summarizer role over these edges, its topics created if missing;
/// every stored draft is indexed for reporting and QA sampling
/// ([`opptak_review::qa::Qa`]).
pub async fn summarizer(edges: &Edges) -> Result<Arc<opptak_ki::summarize::Summarizer>> {
    edges.ensure_topics(&["summarizer"]).await?;
    let taxonomy = opptak_domain::summary::Taxonomy::default_taxonomy();
    let qa = Arc::new(opptak_review::qa::Qa::open(&edges.review()).await?);
    let summarizer = opptak_ki::summarize::Summarizer {
        vault: edges.vault(),
        bus: edges.bus.clone(),
        writer: draft_writer(&edges.config)?,
        fallback: opptak_ki::llm::EmbeddedDrafts::default(),
        retention: edges.retention(),
        topic: drafts_topic(&edges.config),
        language: edges.config.ki.language.trim().to_owned(),
        taxonomy_version: taxonomy.version(),
        listener: None,
        screener: Arc::new(screener(&edges.config)?),
    };
    Ok(Arc::new(summarizer.with_listener(qa)))
}

pub fn transcripts_topic(config: &Config) -> String {
    format!("{}opptak.transcripts.v1", config.bus.topic_prefix)
}

pub fn drafts_topic(config: &Config) -> String {
    format!("{}opptak.drafts.v1", config.bus.topic_prefix)
}

/// The consumer group `role` reads `base` in ([`crate::topics::group`]).
fn reader_group(config: &Config, role: &str, base: &str) -> Result<String> {
    crate::topics::group(config, role, base).with_context(|| format!("the {role} role does not read {base}"))
}

type KiTask = tokio::task::JoinHandle<std::result::Result<String, opptak_ki::transcribe::TranscribeError>>;

/// The KI roles running in this process: the transcriber (live from the
/// telephony topic when `ki.live`, and batch from `opptak.recordings.v1`)
/// and/or the summarizer (from `opptak.transcripts.v1`).
pub struct RunningKi {
    stop: watch::Sender<bool>,
    tasks: Vec<(&'static str, KiTask)>,
    /// The live transcriber, when one runs (its counters).
    pub live: Option<Arc<opptak_ki::live::Live>>,
}

impl RunningKi {
    /// Starts the transcriber with `asr` (the configured one when `None`).
    pub async fn spawn(
        edges: &Edges,
        transcribe: bool,
        summarize: bool,
        asr: Option<Arc<dyn opptak_ki::asr::SpeechRecognizer>>,
    ) -> Result<Self> {
        let (stop, _) = watch::channel(false);
        let mut tasks: Vec<(&'static str, KiTask)> = Vec::new();
        let cfg = &edges.config;
        let roles: Vec<&str> = [("transcriber", transcribe), ("summarizer", summarize)]
            .into_iter()
            .filter_map(|(r, on)| on.then_some(r))
            .collect();
        edges.ensure_topics(&roles).await?;
        let mut live = None;
        if transcribe {
            let mut t = transcriber_with_qa(edges, asr).await?;
            let mut calls = None;
            if cfg.ki.live {
                let l = Arc::new(opptak_ki::live::Live::new(t.clone(), edges.telephony_keys.clone()));
                calls = Some(l.calls.clone());
                let (group, topic, rx) = (
                    reader_group(cfg, "transcriber", "opptak.telephony.v1")?,
                    cfg.recorder_config().topics.telephony,
                    stop.subscribe(),
                );
                let task = {
                    let l = l.clone();
                    let up = opptak_telemetry::metrics().role_up("transcriber");
                    tokio::spawn(async move {
                        let _up = up;
                        opptak_ki::live::run_role(l, &group, &topic, rx)
                            .await
                            .map(|s| format!("{} calls live, {} utterances", s.calls_started, s.utterances_sent))
                    })
                };
                tasks.push(("live transcriber", task));
                live = Some(l);
            }
            t = t.clone();
            let (group, topic, rx) = (
                reader_group(cfg, "transcriber", "opptak.recordings.v1")?,
                cfg.recorder_config().topics.recordings,
                stop.subscribe(),
            );
            let up = opptak_telemetry::metrics().role_up("transcriber");
            tasks.push((
                "transcriber",
                tokio::spawn(async move {
                    let _up = up;
                    opptak_ki::transcribe::run_role(t, &group, &topic, calls, rx)
                        .await
                        .map(|n| format!("{n} calls transcribed from their recordings"))
                }),
            ));
        }
        if summarize {
            let s = summarizer(edges).await?;
            let (group, topic, rx) = (
                reader_group(cfg, "summarizer", "opptak.transcripts.v1")?,
                transcripts_topic(cfg),
                stop.subscribe(),
            );
            let up = opptak_telemetry::metrics().role_up("summarizer");
            tasks.push((
                "summarizer",
                tokio::spawn(async move {
                    let _up = up;
                    opptak_ki::summarize::run_role(s, &group, &topic, rx)
                        .await
                        .map(|n| format!("{n} drafts"))
                }),
            ));
        }
        Ok(Self { stop, tasks, live })
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for (name, task) in self.tasks {
            match task.await {
                Ok(Ok(what)) => tracing::info!(role = name, %what, "stopped"),
                Ok(Err(e)) => tracing::warn!(role = name, error = %e, "stopped with an error"),
                Err(e) => tracing::warn!(role = name, error = %e, "task failed"),
            }
        }
    }
}

/// Opens the keyring of KEKs shared with the telephony system, if configured.
/// It must exist: a shared KEK is agreed with the telephony side, not invented
/// here (`opptak keys telephony-init` creates one to hand over).
pub fn open_telephony_keyring(config: &Config) -> Result<Option<Arc<dyn KeyProvider>>> {
    let path = config.keys.telephony_keyring.trim();
    if path.is_empty() {
        return Ok(None);
    }
    let path = std::path::Path::new(path);
    if !path.exists() {
        anyhow::bail!(
            "keys.telephony_keyring {} not found: create it with `opptak keys telephony-init` and give the \
             telephony system its KEK",
            path.display()
        );
    }
    Ok(Some(Arc::new(
        LocalKeyring::open(path).context("opening the telephony keyring")?,
    )))
}

/// Opens the configured KEK provider with its management operations. With
/// `create` false a missing local keyring is an error (readers must not
/// invent keys).
pub fn open_key_admin(config: &Config, create: bool) -> Result<Arc<dyn KeyAdmin>> {
    let k = &config.keys;
    match k.provider.as_str() {
        "pkcs11" => Ok(Arc::new(
            Pkcs11Keyring::open(
                std::path::Path::new(&k.pkcs11_module),
                &k.pkcs11_token,
                k.pkcs11_pin.expose(),
                &k.pkcs11_prefix,
            )
            .context("opening the PKCS#11 token")?,
        )),
        _ => {
            let path = std::path::Path::new(&k.keyring);
            if !create && !path.exists() {
                anyhow::bail!(
                    "keyring {} not found: recordings cannot be decrypted without the key-encryption key",
                    path.display()
                );
            }
            Ok(Arc::new(
                LocalKeyring::open_or_create(path).context("opening the keyring")?,
            ))
        }
    }
}

/// `opptak keys rotate`: a new active (root) KEK, then every live data key
/// still under an older root KEK re-wrapped — into its period's KEK where
/// that exists, else under the new root KEK (each update guarded by the KEK
/// it was read under; audio is not touched). Keys under period KEKs stay:
/// those KEKs are replaced every period and destroyed by the sweeper. Safe to
/// run again after an interruption. Returns the new KEK id and how many data
/// keys were re-wrapped.
pub async fn rotate_and_rewrap(admin: &dyn KeyAdmin, meta: &dyn MetadataStore, now_us: i64) -> Result<(String, u64)> {
    let new = admin.rotate_kek()?;
    tracing::info!(kek_id = %new, "kek rotated");
    let roots: Vec<String> = meta
        .key_counts()
        .await?
        .into_iter()
        .map(|(kek, _, _)| kek)
        .filter(|kek| *kek != new && opptak_vault::kek::parse_period_kek(kek).is_none())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut total = 0u64;
    for old in roots {
        loop {
            let batch = meta.keys_under(&old, 500).await?;
            if batch.is_empty() {
                break;
            }
            let mut rewrapped = Vec::with_capacity(batch.len());
            for u in batch {
                let ctx = opptak_vault::key_context(&u.owner, &u.key.class);
                let dk = opptak_vault::unwrap_key(admin, &u.key, &ctx)
                    .with_context(|| format!("unwrapping data key {}", u.key.key_id))?;
                // Its own period's KEK if the sweeper made it and it is not
                // due; otherwise the new root KEK (the sweeper moves it on).
                let home = opptak_vault::kek::period_kek_id(&u.key.class, u.created_at_us)
                    .filter(|id| opptak_vault::kek::parse_period_kek(id).is_some_and(|p| p.due_us() > now_us));
                let w = match home {
                    Some(id) => admin.wrap_under(&id, &dk, &ctx)?,
                    None => None,
                };
                let w = match w {
                    Some(w) => w,
                    None => admin.wrap(&dk, &ctx)?,
                };
                // The data key keeps its id: artifact headers name it.
                rewrapped.push((
                    u.key.kek_id.clone(),
                    opptak_store::meta::StoredKey {
                        key_id: w.key_id,
                        class: u.key.class.clone(),
                        kek_id: w.kek_id,
                        sealed: w.sealed,
                    },
                ));
            }
            total += meta.rewrap(&rewrapped).await?;
        }
    }
    Ok((new, total))
}

/// A recorder running as a task, stopped by [`RunningRecorder::stop`].
/// The messages role running as a task.
pub struct RunningConversations {
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<
        Result<opptak_recorder::conversations::ConversationStats, opptak_recorder::RecorderError>,
    >,
}

impl RunningConversations {
    pub fn spawn(role: opptak_recorder::conversations::ConversationRecorder) -> Self {
        let (shutdown, rx) = watch::channel(false);
        let up = opptak_telemetry::metrics().role_up("messages");
        let task = tokio::spawn(async move {
            let _up = up;
            role.run(rx).await
        });
        Self { shutdown, task }
    }

    pub async fn stop(self) -> Result<opptak_recorder::conversations::ConversationStats> {
        let _ = self.shutdown.send(true);
        Ok(self.task.await.context("messages task panicked")??)
    }
}

pub struct RunningRecorder {
    pub stats: watch::Receiver<RecorderStats>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<RecorderStats, opptak_recorder::RecorderError>>,
}

impl RunningRecorder {
    pub fn spawn(recorder: Recorder) -> Self {
        let (shutdown, rx) = watch::channel(false);
        let stats = recorder.stats();
        // `opptak_role_up{role="recorder"}` is 1 for as long as the task runs.
        let up = opptak_telemetry::metrics().role_up("recorder");
        let task = tokio::spawn(async move {
            let _up = up;
            recorder.run(rx).await
        });
        Self { stats, shutdown, task }
    }

    pub async fn stop(self) -> Result<RecorderStats> {
        let _ = self.shutdown.send(true);
        Ok(self.task.await.context("recorder task panicked")??)
    }
}
