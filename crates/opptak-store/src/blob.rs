//! Blob storage for sealed segments, behind one trait.

use crate::StoreError;
use async_trait::async_trait;
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::ObjectStore;
use std::sync::Arc;

#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Writes (or replaces) an object; durable when this returns.
    async fn put(&self, path: &str, data: Bytes) -> Result<(), StoreError>;
    async fn get(&self, path: &str) -> Result<Bytes, StoreError>;
    /// Bytes `range` of an object; an error when the object is shorter.
    async fn get_range(&self, path: &str, range: std::ops::Range<u64>) -> Result<Bytes, StoreError>;
    /// Object paths under `prefix`, sorted.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError>;
    async fn delete(&self, path: &str) -> Result<(), StoreError>;
    /// Where the blobs live, for logs (no credentials).
    fn describe(&self) -> String;
}

/// A [`BlobStore`] over any object_store backend.
pub struct ObjectBlobStore {
    inner: Arc<dyn ObjectStore>,
    description: String,
}

fn map_err(e: object_store::Error) -> StoreError {
    match e {
        object_store::Error::NotFound { path, .. } => StoreError::NotFound(path),
        object_store::Error::InvalidPath { .. } => StoreError::Config(e.to_string()),
        other => StoreError::Unavailable(other.to_string()),
    }
}

fn path(p: &str) -> Result<Path, StoreError> {
    Path::parse(p).map_err(|e| StoreError::Config(format!("blob path {p:?}: {e}")))
}

#[async_trait]
impl BlobStore for ObjectBlobStore {
    async fn put(&self, p: &str, data: Bytes) -> Result<(), StoreError> {
        self.inner.put(&path(p)?, data.into()).await.map_err(map_err)?;
        Ok(())
    }

    async fn get(&self, p: &str) -> Result<Bytes, StoreError> {
        let r = self.inner.get(&path(p)?).await.map_err(map_err)?;
        r.bytes().await.map_err(map_err)
    }

    async fn get_range(&self, p: &str, range: std::ops::Range<u64>) -> Result<Bytes, StoreError> {
        let want = range.end.saturating_sub(range.start);
        let got = self.inner.get_range(&path(p)?, range).await.map_err(map_err)?;
        if got.len() as u64 != want {
            return Err(StoreError::Corrupt(format!(
                "{p}: {} bytes where {want} were expected",
                got.len()
            )));
        }
        Ok(got)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let prefix = path(prefix)?;
        let mut out: Vec<String> = self
            .inner
            .list(Some(&prefix))
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .map_err(map_err)?;
        out.sort();
        Ok(out)
    }

    async fn delete(&self, p: &str) -> Result<(), StoreError> {
        self.inner.delete(&path(p)?).await.map_err(map_err)
    }

    fn describe(&self) -> String {
        self.description.clone()
    }
}

/// Opens the blob store named by a URL: `memory://` or `file:///absolute/dir`.
pub fn open_blob_store(url: &str) -> Result<Arc<dyn BlobStore>, StoreError> {
    if url == "memory://" {
        return Ok(Arc::new(ObjectBlobStore {
            inner: Arc::new(object_store::memory::InMemory::new()),
            description: url.to_owned(),
        }));
    }
    if let Some(dir) = url.strip_prefix("file://") {
        if !dir.starts_with('/') {
            return Err(StoreError::Config(format!(
                "blob store url {url:?}: file:// needs an absolute path, e.g. file:///var/lib/opptak/blobs"
            )));
        }
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Config(format!("{dir}: {e}")))?;
        let fs = object_store::local::LocalFileSystem::new_with_prefix(dir)
            .map_err(|e| StoreError::Config(format!("{dir}: {e}")))?;
        return Ok(Arc::new(ObjectBlobStore {
            inner: Arc::new(fs),
            description: url.to_owned(),
        }));
    }
    Err(StoreError::Config(format!(
        "unsupported blob store url {url:?}: use memory:// or file:///dir"
    )))
}
