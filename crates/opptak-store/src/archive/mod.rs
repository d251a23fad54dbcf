//! WORM archive for recordings that must be kept (investment advice: 5 years,
//! 7 on an authority's request, legal holds), behind one trait.
//!
//! - `file:///dir` ([`FsArchiveStore`]): opptak enforces write-once itself;
//!   retention lives in a sidecar `<object>.lock.json` next to each object.
//!   Time comes from the injected [`Clock`], so tests travel years ahead.
//! - `s3://bucket[/prefix]?endpoint=…&region=…` ([`s3::S3ArchiveStore`]):
//!   S3 Object Lock in COMPLIANCE mode; the server enforces retention and its
//!   clock decides.
//!
//! Both refuse overwriting, shortening retention, and deleting before
//! retain-until or under a legal hold with [`StoreError::Retained`]; every
//! refusal is logged (`tracing::warn!`). See `docs/archive-store.md`.

pub mod s3;

use crate::StoreError;
use async_trait::async_trait;
use bytes::Bytes;
use opptak_domain::time::{iso8601, Clock};
use s3::{S3ArchiveStore, S3Credentials};
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Retention state as the archive enforces it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retention {
    pub retain_until_us: i64,
    pub legal_hold: bool,
}

#[async_trait]
pub trait ArchiveStore: Send + Sync + 'static {
    /// Writes an immutable object kept at least until `retain_until_us`;
    /// an existing object at `path` is never overwritten (Retained error).
    async fn put_retained(&self, path: &str, data: Bytes, retain_until_us: i64) -> Result<(), StoreError>;
    async fn get(&self, path: &str) -> Result<Bytes, StoreError>;
    /// Bytes `range` of an object; an error when the object is shorter.
    async fn get_range(&self, path: &str, range: std::ops::Range<u64>) -> Result<Bytes, StoreError>;
    async fn retention(&self, path: &str) -> Result<Retention, StoreError>;
    /// Moves retain-until later; an earlier date is refused (compliance mode).
    async fn extend_retention(&self, path: &str, retain_until_us: i64) -> Result<(), StoreError>;
    async fn set_legal_hold(&self, path: &str, on: bool) -> Result<(), StoreError>;
    /// Deletes every version of the object. Refused with StoreError::Retained
    /// before retain-until or under a legal hold; NotFound if absent.
    async fn delete(&self, path: &str) -> Result<(), StoreError>;
    /// Paths of the objects under `prefix` (current versions), sorted.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError>;
    /// Where the archive lives, for logs (no credentials).
    fn describe(&self) -> String;
}

/// Opens the archive named by a URL:
/// - `file:///absolute/dir`: WORM enforced by opptak, time from `clock`;
/// - `s3://bucket[/prefix]?endpoint=http://127.0.0.1:9000&region=us-east-1`:
///   S3 Object Lock (COMPLIANCE), credentials from `OPPTAK_S3_ACCESS_KEY` and
///   `OPPTAK_S3_SECRET_KEY`; the server's clock decides, `clock` is unused.
pub fn open_archive_store(url: &str, clock: Arc<dyn Clock>) -> Result<Arc<dyn ArchiveStore>, StoreError> {
    if let Some(dir) = url.strip_prefix("file://") {
        return Ok(Arc::new(FsArchiveStore::open(dir, clock)?));
    }
    if url.starts_with("s3://") {
        return Ok(Arc::new(S3ArchiveStore::open(url, S3Credentials::from_env()?)?));
    }
    Err(StoreError::Config(format!(
        "unsupported archive store url {url:?}: use file:///dir or s3://bucket?endpoint=…&region=…"
    )))
}

/// Object paths are `/`-separated names, the same rules for every backend:
/// no empty, `.`-leading (so no `..`) or control-character segments, and no
/// name ending in `.lock.json` (the filesystem store's sidecars).
pub(crate) fn check_path(path: &str) -> Result<(), StoreError> {
    let bad = |why: &str| Err(StoreError::Config(format!("archive path {path:?}: {why}")));
    if path.is_empty() || path.len() > 900 {
        return bad("must be 1 to 900 bytes");
    }
    if path.chars().any(|c| c.is_control() || c == '\\') {
        return bad("control characters and backslashes are not allowed");
    }
    for seg in path.split('/') {
        if seg.is_empty() || seg.starts_with('.') {
            return bad("segments must be non-empty and must not start with '.'");
        }
    }
    if path.ends_with(SIDECAR_SUFFIX) {
        return bad("names ending in .lock.json are reserved");
    }
    Ok(())
}

/// Logs a refused attempt and returns the error for it.
pub(crate) fn refuse(op: &'static str, path: &str, what: String, r: Option<&Retention>) -> StoreError {
    match r {
        Some(r) => tracing::warn!(
            op,
            path,
            retain_until = %iso8601(r.retain_until_us),
            legal_hold = r.legal_hold,
            "archive refused a write or delete of a retained object"
        ),
        None => tracing::warn!(op, path, "archive refused a write or delete of a retained object"),
    }
    StoreError::Retained(what)
}

pub(crate) fn describe_retention(r: &Retention) -> String {
    format!(
        "retained until {}{}",
        iso8601(r.retain_until_us),
        if r.legal_hold { ", legal hold on" } else { "" }
    )
}

// ------------------------------------------------------------ filesystem ---

const SIDECAR_SUFFIX: &str = ".lock.json";

/// The retention record next to each object (`<object>.lock.json`).
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Sidecar {
    retain_until_us: i64,
    /// For people reading the file; `retain_until_us` is what counts.
    retain_until: String,
    legal_hold: bool,
}

/// An archive in a local directory where opptak itself enforces WORM: objects
/// and sidecars are created with mode 0600 and published with `link(2)`, which
/// never replaces an existing name, so two writers cannot both win.
///
/// This protects the records against opptak and its operators' commands, not
/// against someone with write access to the directory (use S3 Object Lock for
/// that). One process should own a directory: sidecar updates are serialised
/// within the process.
pub struct FsArchiveStore {
    inner: Arc<FsInner>,
}

struct FsInner {
    root: PathBuf,
    clock: Arc<dyn Clock>,
    /// Serialises every check-then-change of a sidecar in this process.
    lock: Mutex<()>,
    tmp_counter: AtomicU64,
}

fn io_err(path: &str, e: std::io::Error) -> StoreError {
    if e.kind() == std::io::ErrorKind::NotFound {
        StoreError::NotFound(path.to_owned())
    } else {
        StoreError::Unavailable(format!("archive {path}: {e}"))
    }
}

impl FsArchiveStore {
    /// `dir` must be absolute; it is created (mode 0700) if missing.
    pub fn open(dir: &str, clock: Arc<dyn Clock>) -> Result<Self, StoreError> {
        if !dir.starts_with('/') {
            return Err(StoreError::Config(format!(
                "archive store url file://{dir}: file:// needs an absolute path, e.g. file:///var/lib/opptak/archive"
            )));
        }
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| StoreError::Config(format!("{dir}: {e}")))?;
        Ok(Self {
            inner: Arc::new(FsInner {
                root: PathBuf::from(dir),
                clock,
                lock: Mutex::new(()),
                tmp_counter: AtomicU64::new(0),
            }),
        })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&FsInner) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| StoreError::Unavailable(format!("archive task failed: {e}")))?
    }
}

impl FsInner {
    fn object_path(&self, path: &str) -> Result<PathBuf, StoreError> {
        check_path(path)?;
        Ok(self.root.join(path))
    }

    fn guard(&self) -> std::sync::MutexGuard<'_, ()> {
        // A panic while holding the lock leaves no half-done state behind
        // (every change is one rename or link), so a poisoned lock is fine.
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes `data` to a new hidden file (0600) next to `target` and syncs it.
    fn write_tmp(&self, target: &Path, data: &[u8]) -> std::io::Result<PathBuf> {
        let dir = target.parent().unwrap_or(&self.root);
        let name = target.file_name().and_then(|n| n.to_str()).unwrap_or("object");
        let n = self.tmp_counter.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".{name}.{}-{n}.tmp", std::process::id()));
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        let written = f.write_all(data).and_then(|()| f.sync_all());
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        Ok(tmp)
    }

    fn read_sidecar(&self, path: &str, obj: &Path) -> Result<Option<Retention>, StoreError> {
        let side = sidecar_of(obj);
        let text = match fs::read(&side) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(path, e)),
        };
        let s: Sidecar = serde_json::from_slice(&text)
            .map_err(|e| StoreError::Corrupt(format!("archive {}: {e}", side.display())))?;
        Ok(Some(Retention {
            retain_until_us: s.retain_until_us,
            legal_hold: s.legal_hold,
        }))
    }

    fn sidecar_bytes(r: &Retention) -> Result<Vec<u8>, StoreError> {
        let s = Sidecar {
            retain_until_us: r.retain_until_us,
            retain_until: iso8601(r.retain_until_us),
            legal_hold: r.legal_hold,
        };
        let mut v = serde_json::to_vec_pretty(&s).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        v.push(b'\n');
        Ok(v)
    }

    /// Retention of an existing object; NotFound when neither object nor
    /// sidecar exists, Corrupt for an object without a sidecar.
    fn existing(&self, path: &str, obj: &Path) -> Result<Retention, StoreError> {
        match self.read_sidecar(path, obj)? {
            Some(r) => Ok(r),
            None if obj.exists() => Err(StoreError::Corrupt(format!(
                "archive object {path} has no retention record"
            ))),
            None => Err(StoreError::NotFound(path.to_owned())),
        }
    }

    /// Replaces the sidecar atomically (tmp + fsync + rename + fsync dir).
    fn replace_sidecar(&self, path: &str, obj: &Path, r: &Retention) -> Result<(), StoreError> {
        let side = sidecar_of(obj);
        let tmp = self
            .write_tmp(&side, &Self::sidecar_bytes(r)?)
            .map_err(|e| io_err(path, e))?;
        if let Err(e) = fs::rename(&tmp, &side) {
            let _ = fs::remove_file(&tmp);
            return Err(io_err(path, e));
        }
        sync_dir(obj).map_err(|e| io_err(path, e))
    }

    fn put(&self, path: &str, data: &[u8], retain_until_us: i64) -> Result<(), StoreError> {
        let obj = self.object_path(path)?;
        let now = self.clock.now_us();
        if retain_until_us <= now {
            return Err(StoreError::Config(format!(
                "archive {path}: retain-until {} is not in the future",
                iso8601(retain_until_us)
            )));
        }
        if let Some(dir) = obj.parent() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| io_err(path, e))?;
        }
        let r = Retention {
            retain_until_us,
            legal_hold: false,
        };
        // Both files are complete and synced before either name appears.
        let obj_tmp = self.write_tmp(&obj, data).map_err(|e| io_err(path, e))?;
        let side_tmp = match Self::sidecar_bytes(&r)
            .and_then(|b| self.write_tmp(&sidecar_of(&obj), &b).map_err(|e| io_err(path, e)))
        {
            Ok(t) => t,
            Err(e) => {
                let _ = fs::remove_file(&obj_tmp);
                return Err(e);
            }
        };
        let result = self.publish(path, &obj, &obj_tmp, &side_tmp);
        let _ = fs::remove_file(&obj_tmp);
        let _ = fs::remove_file(&side_tmp);
        result?;
        sync_dir(&obj).map_err(|e| io_err(path, e))
    }

    /// Claims the name with the sidecar first (link never replaces), then the
    /// object. A crash between the two leaves a sidecar without its object:
    /// the name stays claimed until its retention ends (fail closed).
    fn publish(&self, path: &str, obj: &Path, obj_tmp: &Path, side_tmp: &Path) -> Result<(), StoreError> {
        let _g = self.guard();
        let exists = |what: &str| {
            let r = self.read_sidecar(path, obj).ok().flatten();
            let how = r.as_ref().map(describe_retention).unwrap_or_default();
            refuse(
                "put",
                path,
                format!("{path} already exists in the archive{what} and is never overwritten; {how}"),
                r.as_ref(),
            )
        };
        if obj.exists() {
            return Err(exists(""));
        }
        match fs::hard_link(side_tmp, sidecar_of(obj)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(exists("")),
            Err(e) => return Err(io_err(path, e)),
        }
        match fs::hard_link(obj_tmp, obj) {
            Ok(()) => Ok(()),
            // Someone outside this process created it between our check and link.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(exists(" (written concurrently)")),
            Err(e) => Err(io_err(path, e)),
        }
    }

    fn get_range(&self, path: &str, range: std::ops::Range<u64>) -> Result<Bytes, StoreError> {
        let obj = self.object_path(path)?;
        let want = range.end.saturating_sub(range.start);
        let mut f = fs::File::open(&obj).map_err(|e| io_err(path, e))?;
        f.seek(SeekFrom::Start(range.start)).map_err(|e| io_err(path, e))?;
        let mut buf = Vec::with_capacity(usize::try_from(want).unwrap_or(0));
        f.take(want).read_to_end(&mut buf).map_err(|e| io_err(path, e))?;
        if buf.len() as u64 != want {
            return Err(StoreError::Corrupt(format!(
                "archive {path}: {} bytes where {want} were expected",
                buf.len()
            )));
        }
        Ok(buf.into())
    }

    fn extend(&self, path: &str, retain_until_us: i64) -> Result<(), StoreError> {
        let obj = self.object_path(path)?;
        let _g = self.guard();
        let cur = self.existing(path, &obj)?;
        if retain_until_us < cur.retain_until_us {
            return Err(refuse(
                "extend_retention",
                path,
                format!(
                    "{path}: retain-until cannot move earlier than {} (asked {}); retention only grows",
                    iso8601(cur.retain_until_us),
                    iso8601(retain_until_us)
                ),
                Some(&cur),
            ));
        }
        if retain_until_us == cur.retain_until_us {
            return Ok(());
        }
        self.replace_sidecar(
            path,
            &obj,
            &Retention {
                retain_until_us,
                legal_hold: cur.legal_hold,
            },
        )
    }

    fn set_hold(&self, path: &str, on: bool) -> Result<(), StoreError> {
        let obj = self.object_path(path)?;
        let _g = self.guard();
        let cur = self.existing(path, &obj)?;
        if cur.legal_hold == on {
            return Ok(());
        }
        tracing::info!(path, legal_hold = on, "archive legal hold changed");
        self.replace_sidecar(
            path,
            &obj,
            &Retention {
                retain_until_us: cur.retain_until_us,
                legal_hold: on,
            },
        )
    }

    fn delete(&self, path: &str) -> Result<(), StoreError> {
        let obj = self.object_path(path)?;
        let _g = self.guard();
        let cur = self.existing(path, &obj)?;
        let now = self.clock.now_us();
        if cur.legal_hold || now < cur.retain_until_us {
            return Err(refuse(
                "delete",
                path,
                format!("{path} cannot be deleted: {}", describe_retention(&cur)),
                Some(&cur),
            ));
        }
        // Object first: a crash in between leaves only the (expired) sidecar.
        match fs::remove_file(&obj) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(path, e)),
        }
        fs::remove_file(sidecar_of(&obj)).map_err(|e| io_err(path, e))?;
        sync_dir(&obj).map_err(|e| io_err(path, e))?;
        // Drop directories left empty (archive/<call>/…), never the root.
        let mut dir = obj.parent();
        while let Some(d) = dir {
            if d == self.root || !d.starts_with(&self.root) || fs::remove_dir(d).is_err() {
                break;
            }
            dir = d.parent();
        }
        Ok(())
    }
}

fn sidecar_of(obj: &Path) -> PathBuf {
    let mut s = obj.as_os_str().to_owned();
    s.push(SIDECAR_SUFFIX);
    PathBuf::from(s)
}

fn sync_dir(obj: &Path) -> std::io::Result<()> {
    match obj.parent() {
        Some(d) => fs::File::open(d)?.sync_all(),
        None => Ok(()),
    }
}

#[async_trait]
impl ArchiveStore for FsArchiveStore {
    async fn put_retained(&self, path: &str, data: Bytes, retain_until_us: i64) -> Result<(), StoreError> {
        let path = path.to_owned();
        self.blocking(move |i| i.put(&path, &data, retain_until_us)).await
    }

    async fn get(&self, path: &str) -> Result<Bytes, StoreError> {
        let path = path.to_owned();
        self.blocking(move |i| {
            let obj = i.object_path(&path)?;
            fs::read(obj).map(Bytes::from).map_err(|e| io_err(&path, e))
        })
        .await
    }

    async fn get_range(&self, path: &str, range: std::ops::Range<u64>) -> Result<Bytes, StoreError> {
        let path = path.to_owned();
        self.blocking(move |i| i.get_range(&path, range)).await
    }

    async fn retention(&self, path: &str) -> Result<Retention, StoreError> {
        let path = path.to_owned();
        self.blocking(move |i| {
            let obj = i.object_path(&path)?;
            i.existing(&path, &obj)
        })
        .await
    }

    async fn extend_retention(&self, path: &str, retain_until_us: i64) -> Result<(), StoreError> {
        let path = path.to_owned();
        self.blocking(move |i| i.extend(&path, retain_until_us)).await
    }

    async fn set_legal_hold(&self, path: &str, on: bool) -> Result<(), StoreError> {
        let path = path.to_owned();
        self.blocking(move |i| i.set_hold(&path, on)).await
    }

    async fn delete(&self, path: &str) -> Result<(), StoreError> {
        let path = path.to_owned();
        self.blocking(move |i| i.delete(&path)).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let prefix = prefix.to_owned();
        self.blocking(move |i| {
            let mut out = Vec::new();
            let mut dirs = vec![i.root.clone()];
            while let Some(dir) = dirs.pop() {
                let entries = match fs::read_dir(&dir) {
                    Ok(e) => e,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io_err(&dir.display().to_string(), e)),
                };
                for entry in entries.flatten() {
                    let p = entry.path();
                    let name = entry.file_name().to_string_lossy().to_string();
                    if p.is_dir() {
                        dirs.push(p);
                    } else if !name.starts_with('.') && !name.ends_with(".lock.json") {
                        if let Ok(rel) = p.strip_prefix(&i.root) {
                            let rel = rel.to_string_lossy().to_string();
                            if rel.starts_with(&prefix) {
                                out.push(rel);
                            }
                        }
                    }
                }
            }
            out.sort();
            Ok(out)
        })
        .await
    }

    fn describe(&self) -> String {
        format!("file://{} (WORM enforced by opptak)", self.inner.root.display())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_checked() {
        for ok in ["a", "archive/call-1/arc-1.optk", "a/b=c/d_e-f"] {
            assert!(check_path(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/a",
            "a//b",
            "a/",
            "../a",
            "a/../b",
            "a/.hidden",
            "x.lock.json",
            "a\nb",
            "a\\b",
        ] {
            assert!(matches!(check_path(bad), Err(StoreError::Config(_))), "{bad:?}");
        }
    }
}
