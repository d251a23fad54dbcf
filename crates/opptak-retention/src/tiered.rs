//! One [`BlobStore`] view over both tiers: paths under `archive/` live in the
//! WORM [`ArchiveStore`], everything else in the hot blob store. Readers and
//! the sweeper use it unchanged; writes to the archive go through
//! [`ArchiveStore::put_retained`] only (a plain `put` there is refused).

use async_trait::async_trait;
use bytes::Bytes;
use opptak_store::archive::ArchiveStore;
use opptak_store::{BlobStore, StoreError};
use std::sync::Arc;

/// The prefix of archive-tier objects.
pub const ARCHIVE_PREFIX: &str = "archive/";

pub struct TieredBlobs {
    pub hot: Arc<dyn BlobStore>,
    pub archive: Arc<dyn ArchiveStore>,
}

impl TieredBlobs {
    pub fn new(hot: Arc<dyn BlobStore>, archive: Arc<dyn ArchiveStore>) -> Self {
        Self { hot, archive }
    }
}

fn archived(path: &str) -> bool {
    path.starts_with(ARCHIVE_PREFIX)
}

#[async_trait]
impl BlobStore for TieredBlobs {
    async fn put(&self, path: &str, data: Bytes) -> Result<(), StoreError> {
        if archived(path) {
            return Err(StoreError::Config(format!(
                "{path}: archive objects are written with a retain-until date (ArchiveStore::put_retained)"
            )));
        }
        self.hot.put(path, data).await
    }

    async fn get(&self, path: &str) -> Result<Bytes, StoreError> {
        if archived(path) {
            self.archive.get(path).await
        } else {
            self.hot.get(path).await
        }
    }

    async fn get_range(&self, path: &str, range: std::ops::Range<u64>) -> Result<Bytes, StoreError> {
        if archived(path) {
            self.archive.get_range(path, range).await
        } else {
            self.hot.get_range(path, range).await
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut out = if archived(prefix) || ARCHIVE_PREFIX.starts_with(prefix) {
            self.archive.list(prefix).await?
        } else {
            Vec::new()
        };
        if !archived(prefix) {
            out.extend(self.hot.list(prefix).await?);
        }
        out.sort();
        Ok(out)
    }

    async fn delete(&self, path: &str) -> Result<(), StoreError> {
        if archived(path) {
            self.archive.delete(path).await
        } else {
            self.hot.delete(path).await
        }
    }

    fn describe(&self) -> String {
        format!("{} + archive {}", self.hot.describe(), self.archive.describe())
    }
}
