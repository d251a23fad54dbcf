//! Blob storage for sealed data (segments, spool, compacted recordings, KI
//! artifacts, drafts, dead letters), behind one trait, chosen by URL:
//! `memory://` and `file:///dir` over the object_store crate
//! ([`ObjectBlobStore`]), `s3://bucket[/prefix]?endpoint=…&region=…` over our
//! own S3 client ([`s3::S3BlobStore`]).

pub mod s3;

use crate::s3_client::S3Credentials;
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
    /// Bytes `range` of an object; `Corrupt` when the object is shorter.
    async fn get_range(&self, path: &str, range: std::ops::Range<u64>) -> Result<Bytes, StoreError>;
    /// Object paths under `prefix` by whole segments (`a/b` lists `a/b/…`,
    /// not `a/bc`), sorted.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError>;
    /// Removes the object for good: no copy or version of it is left.
    /// Deleting a missing object is `Ok` or `NotFound` (both mean gone).
    async fn delete(&self, path: &str) -> Result<(), StoreError>;
    /// Checks that the store is usable as configured (reachable, the
    /// credentials work, an S3 bucket unversioned), so a start-up fails early;
    /// stores that need the check also make it before their first request.
    async fn verify(&self) -> Result<(), StoreError> {
        Ok(())
    }
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
        let loc = path(p)?;
        if want == 0 {
            // object_store refuses an empty range; still say whether the object exists.
            self.inner.head(&loc).await.map_err(map_err)?;
            return Ok(Bytes::new());
        }
        let got = match self.inner.get_range(&loc, range.clone()).await {
            Ok(got) => got,
            Err(e @ object_store::Error::NotFound { .. }) => return Err(map_err(e)),
            // A range starting past the end is a generic error here; say
            // what it is rather than Unavailable (which callers retry).
            Err(e) => match self.inner.head(&loc).await {
                Ok(meta) if range.end > meta.size => {
                    return Err(StoreError::Corrupt(format!(
                        "{p}: bytes {range:?} asked of a {}-byte object",
                        meta.size
                    )))
                }
                _ => return Err(map_err(e)),
            },
        };
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

/// Opens the blob store named by a URL: `memory://`, `file:///absolute/dir`
/// or `s3://bucket[/prefix]?endpoint=…&region=…` (credentials from
/// `OPPTAK_S3_ACCESS_KEY` / `OPPTAK_S3_SECRET_KEY`; the bucket is checked by
/// [`BlobStore::verify`] or before the first request).
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
    if url.starts_with("s3://") {
        return Ok(Arc::new(s3::S3BlobStore::open(url, S3Credentials::from_env()?)?));
    }
    Err(StoreError::Config(format!(
        "unsupported blob store url {url:?}: use memory://, file:///dir or s3://bucket?endpoint=…&region=…"
    )))
}
