//! Wiring: from a [`Config`] to running roles.

use crate::config::Config;
use anyhow::{Context, Result};
use opptak_bus::Bus;
use opptak_crypto::{KeyProvider, LocalKeyring};
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
}

impl Edges {
    pub async fn open(config: Config) -> Result<Self> {
        let bus: Arc<dyn Bus> = if let Some(brokers) = config.bus.url.strip_prefix("kafka://") {
            let opts = opptak_bus::kafka::KafkaOptions {
                replication: config.bus.replication,
                ..Default::default()
            };
            Arc::new(opptak_bus::kafka::KafkaBus::new(brokers.trim_end_matches('/'), opts)?)
        } else {
            opptak_bus::open(&config.bus.url)?
        };
        let blobs = opptak_store::open_blob_store(&config.storage.blobs).context("opening the blob store")?;
        let meta = opptak_store::open_metadata_store(&config.storage.metadata)
            .await
            .context("opening the metadata store")?;
        let keys = Self::open_keys(&config)?;
        Ok(Self {
            config,
            bus,
            blobs,
            meta,
            keys,
        })
    }

    /// Opens only what reading recordings needs (no bus).
    pub fn open_keys(config: &Config) -> Result<Arc<dyn KeyProvider>> {
        let ring =
            LocalKeyring::open_or_create(std::path::Path::new(&config.keys.keyring)).context("opening the keyring")?;
        Ok(Arc::new(ring))
    }

    pub async fn create_topics(&self) -> Result<()> {
        self.config
            .recorder_config()
            .topics
            .create(self.bus.as_ref(), self.config.bus.partitions)
            .await
            .context("creating topics")
    }

    pub fn recorder(&self) -> Recorder {
        Recorder::new(
            self.bus.clone(),
            self.blobs.clone(),
            self.meta.clone(),
            self.keys.clone(),
            self.config.recorder_config(),
        )
    }
}

/// A recorder running as a task, stopped by [`RunningRecorder::stop`].
pub struct RunningRecorder {
    pub stats: watch::Receiver<RecorderStats>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<RecorderStats, opptak_recorder::RecorderError>>,
}

impl RunningRecorder {
    pub fn spawn(recorder: Recorder) -> Self {
        let (shutdown, rx) = watch::channel(false);
        let stats = recorder.stats();
        let task = tokio::spawn(recorder.run(rx));
        Self { stats, shutdown, task }
    }

    pub async fn stop(self) -> Result<RecorderStats> {
        let _ = self.shutdown.send(true);
        Ok(self.task.await.context("recorder task panicked")??)
    }
}
