//! The archive on S3 with Object Lock in COMPLIANCE mode, over the client
//! the S3 stores share ([`crate::s3_client`]).
//!
//! Deleting means `DELETE ?versionId=` of every version: a DELETE without a
//! version id only adds a delete marker and succeeds even under a compliance
//! lock, hiding the object while keeping it (see `docs/archive-store.md`).

use super::{check_path, describe_retention, refuse, ArchiveStore, Retention};
use crate::s3_client::{
    check, content_md5, ranged_body, text, xml_blocks, xml_tag, xml_unescape, S3Client, S3Error, Timeouts, XMLNS,
};
use crate::StoreError;
use async_trait::async_trait;
use bytes::Bytes;
use opptak_domain::time::{iso8601, parse_iso8601};
use reqwest::{Method, StatusCode};
use std::time::Duration;

pub use crate::s3_client::S3Credentials;

/// See the module docs. Build with [`S3ArchiveStore::open`].
pub struct S3ArchiveStore {
    c: S3Client,
}

/// One stored version of an object, or a delete marker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectVersion {
    pub id: String,
    pub delete_marker: bool,
}

impl S3ArchiveStore {
    /// `s3://bucket[/prefix]?endpoint=https://…&region=…`. Without `endpoint`,
    /// AWS's `https://s3.<region>.amazonaws.com`; `region` defaults to
    /// `us-east-1`. Credentials never go in the URL.
    pub fn open(url: &str, creds: S3Credentials) -> Result<Self, StoreError> {
        let timeouts = Timeouts {
            connect: Duration::from_secs(10),
            read: Duration::from_secs(300),
            total: Duration::from_secs(300),
        };
        Ok(Self {
            c: S3Client::open(url, creds, "archive store", check_path, timeouts)?,
        })
    }

    /// Creates the bucket with Object Lock enabled (which also turns on
    /// versioning); an existing bucket of ours is fine, but it must have
    /// Object Lock enabled.
    pub async fn create_bucket(&self) -> Result<(), StoreError> {
        self.c
            .create_bucket(vec![("x-amz-bucket-object-lock-enabled", "true".into())])
            .await?;
        let resp = self
            .c
            .send(Method::GET, None, &[("object-lock", "")], vec![], Bytes::new())
            .await?;
        let xml = match check(resp).await {
            Ok(r) => text(r).await?,
            Err(e) => {
                return Err(StoreError::Config(format!(
                    "bucket {} without object lock: {e}",
                    self.c.bucket
                )))
            }
        };
        if xml_tag(&xml, "ObjectLockEnabled") != Some("Enabled") {
            return Err(StoreError::Config(format!(
                "bucket {} does not have object lock enabled",
                self.c.bucket
            )));
        }
        Ok(())
    }

    fn key(&self, path: &str) -> Result<String, StoreError> {
        check_path(path)?;
        Ok(format!("{}{path}", self.c.prefix))
    }

    /// Every version of exactly `key` (the listing is by prefix): data
    /// versions, then delete markers.
    async fn versions(&self, key: &str) -> Result<Vec<ObjectVersion>, StoreError> {
        let mut out = Vec::new();
        let mut markers: Option<(String, String)> = None;
        loop {
            let mut q = vec![("versions", ""), ("prefix", key)];
            if let Some((k, v)) = &markers {
                q.push(("key-marker", k.as_str()));
                q.push(("version-id-marker", v.as_str()));
            }
            let resp = self.c.send(Method::GET, None, &q, vec![], Bytes::new()).await?;
            let xml = text(check(resp).await.map_err(|e| self.map(key, e))?).await?;
            for (tag, delete_marker) in [("Version", false), ("DeleteMarker", true)] {
                for block in xml_blocks(&xml, tag) {
                    let k = xml_tag(block, "Key").map(xml_unescape);
                    let id = xml_tag(block, "VersionId").map(xml_unescape);
                    if let (Some(k), Some(id)) = (k, id) {
                        if k == key {
                            out.push(ObjectVersion { id, delete_marker });
                        }
                    }
                }
            }
            if xml_tag(&xml, "IsTruncated") != Some("true") {
                break;
            }
            let next = (
                xml_tag(&xml, "NextKeyMarker").map(xml_unescape).unwrap_or_default(),
                xml_tag(&xml, "NextVersionIdMarker")
                    .map(xml_unescape)
                    .unwrap_or_default(),
            );
            // Past our key, or a server that does not advance: stop.
            if next.0 != key || markers.as_ref() == Some(&next) {
                break;
            }
            markers = Some(next);
        }
        Ok(out)
    }

    /// Every stored version of `path` (data versions, then delete markers)
    /// (audits, and tests proving that a delete left nothing behind).
    pub async fn versions_of(&self, path: &str) -> Result<Vec<ObjectVersion>, StoreError> {
        let key = self.key(path)?;
        self.versions(&key).await
    }

    /// The data versions of `key` (not delete markers); NotFound if none.
    async fn data_versions(&self, path: &str, key: &str) -> Result<Vec<String>, StoreError> {
        let ids: Vec<String> = self
            .versions(key)
            .await?
            .into_iter()
            .filter(|v| !v.delete_marker)
            .map(|v| v.id)
            .collect();
        if ids.is_empty() {
            return Err(StoreError::NotFound(path.to_owned()));
        }
        Ok(ids)
    }

    async fn head_retention(&self, path: &str, key: &str, version: Option<&str>) -> Result<Retention, StoreError> {
        let q: Vec<(&str, &str)> = version.map(|v| vec![("versionId", v)]).unwrap_or_default();
        let resp = self.c.send(Method::HEAD, Some(key), &q, vec![], Bytes::new()).await?;
        let resp = check(resp).await.map_err(|e| self.map(path, e))?;
        let h = resp.headers();
        let header = |name: &str| h.get(name).and_then(|v| v.to_str().ok());
        let until = header("x-amz-object-lock-retain-until-date")
            .ok_or_else(|| StoreError::Corrupt(format!("archive {path}: stored without object lock retention")))?;
        let retain_until_us = parse_iso8601(until)
            .ok_or_else(|| StoreError::Corrupt(format!("archive {path}: retain-until {until:?} unreadable")))?;
        Ok(Retention {
            retain_until_us,
            legal_hold: header("x-amz-object-lock-legal-hold") == Some("ON"),
        })
    }

    /// General mapping of an S3 error for `path`.
    fn map(&self, path: &str, e: S3Error) -> StoreError {
        match (e.status.as_u16(), e.code.as_str()) {
            (404, "NoSuchBucket") => StoreError::Config(format!("s3 bucket {}: {e}", self.c.bucket)),
            (404, _) => StoreError::NotFound(path.to_owned()),
            (400 | 401 | 403 | 405 | 501, _) => StoreError::Config(format!("s3 archive {path}: {e}")),
            (416, _) => StoreError::Corrupt(format!("archive {path}: range beyond the object: {e}")),
            _ => StoreError::Unavailable(format!("s3 archive {path}: {e}")),
        }
    }

    /// The lock refusing a change to a version: AWS answers 403 AccessDenied,
    /// MinIO 400 InvalidRequest ("Object is WORM protected"). Either counts
    /// as Retained when the version does carry a lock.
    async fn refused(&self, op: &'static str, path: &str, key: &str, version: Option<&str>, e: S3Error) -> StoreError {
        let lock_answer = matches!(
            (e.status.as_u16(), e.code.as_str()),
            (403, "AccessDenied") | (400, "InvalidRequest")
        );
        if !lock_answer {
            return self.map(path, e);
        }
        match self.head_retention(path, key, version).await {
            Ok(r) => refuse(
                op,
                path,
                format!(
                    "{path} {}: {} (s3: {e})",
                    if op == "delete" {
                        "cannot be deleted"
                    } else {
                        "cannot be changed"
                    },
                    describe_retention(&r)
                ),
                Some(&r),
            ),
            Err(_) => self.map(path, e),
        }
    }

    async fn put_xml(&self, key: &str, sub: &'static str, version: &str, xml: String) -> Result<(), S3Error> {
        let body = Bytes::from(xml);
        let headers = vec![
            ("content-md5", content_md5(&body)),
            ("content-type", "application/xml".into()),
        ];
        let q = [(sub, ""), ("versionId", version)];
        let resp = self
            .c
            .send(Method::PUT, Some(key), &q, headers, body)
            .await
            .map_err(|e| S3Error {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "Unavailable".into(),
                message: e.to_string(),
            })?;
        check(resp).await.map(|_| ())
    }
}

#[async_trait]
impl ArchiveStore for S3ArchiveStore {
    async fn put_retained(&self, path: &str, data: Bytes, retain_until_us: i64) -> Result<(), StoreError> {
        let key = self.key(path)?;
        // Whole seconds, rounded up: kept at least as long as asked.
        let until = ceil_secs(retain_until_us) * 1_000_000;
        let headers = vec![
            ("content-md5", content_md5(&data)),
            ("content-type", "application/octet-stream".into()),
            ("if-none-match", "*".into()),
            ("x-amz-object-lock-mode", "COMPLIANCE".into()),
            ("x-amz-object-lock-retain-until-date", iso8601(until)),
        ];
        let resp = self.c.send(Method::PUT, Some(&key), &[], headers, data).await?;
        let e = match check(resp).await {
            Ok(_) => return Ok(()),
            // Another conditional write to the same key is in flight.
            Err(e) if e.status == StatusCode::CONFLICT => {
                return Err(StoreError::Unavailable(format!("s3 archive {path}: {e}")))
            }
            Err(e) => e,
        };
        // If-None-Match answers 412 for an existing key; MinIO checks the
        // lock first and answers 400 "Object is WORM protected" when the
        // existing version is locked. Either way: the key exists.
        if matches!(e.status.as_u16(), 400 | 403 | 412) {
            if let Ok(r) = self.head_retention(path, &key, None).await {
                return Err(refuse(
                    "put",
                    path,
                    format!(
                        "{path} already exists in the archive and is never overwritten; {}",
                        describe_retention(&r)
                    ),
                    Some(&r),
                ));
            }
        }
        if e.status == StatusCode::PRECONDITION_FAILED {
            return Err(refuse(
                "put",
                path,
                format!("{path} already exists in the archive and is never overwritten"),
                None,
            ));
        }
        Err(self.map(path, e))
    }

    async fn get(&self, path: &str) -> Result<Bytes, StoreError> {
        let key = self.key(path)?;
        let resp = self.c.send(Method::GET, Some(&key), &[], vec![], Bytes::new()).await?;
        let resp = check(resp).await.map_err(|e| self.map(path, e))?;
        resp.bytes()
            .await
            .map_err(|e| StoreError::Unavailable(format!("s3 archive {path}: {e}")))
    }

    async fn get_range(&self, path: &str, range: std::ops::Range<u64>) -> Result<Bytes, StoreError> {
        let key = self.key(path)?;
        let want = range.end.saturating_sub(range.start);
        if want == 0 {
            // HTTP cannot ask for zero bytes; still say whether the object exists.
            self.head_retention(path, &key, None).await.map(|_| Bytes::new())?;
            return Ok(Bytes::new());
        }
        let headers = vec![("range", format!("bytes={}-{}", range.start, range.end - 1))];
        let resp = self.c.send(Method::GET, Some(&key), &[], headers, Bytes::new()).await?;
        let resp = check(resp).await.map_err(|e| self.map(path, e))?;
        let whole = resp.status() == StatusCode::OK;
        let got = resp
            .bytes()
            .await
            .map_err(|e| StoreError::Unavailable(format!("s3 archive {path}: {e}")))?;
        ranged_body(whole, got, &range, &format!("archive {path}"))
    }

    async fn retention(&self, path: &str) -> Result<Retention, StoreError> {
        let key = self.key(path)?;
        self.head_retention(path, &key, None).await
    }

    async fn extend_retention(&self, path: &str, retain_until_us: i64) -> Result<(), StoreError> {
        let key = self.key(path)?;
        let until = ceil_secs(retain_until_us) * 1_000_000;
        let cur = self.head_retention(path, &key, None).await?;
        if until < cur.retain_until_us {
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
        if until == cur.retain_until_us {
            return Ok(());
        }
        let xml = format!(
            "<Retention xmlns=\"{XMLNS}\"><Mode>COMPLIANCE</Mode><RetainUntilDate>{}</RetainUntilDate></Retention>",
            iso8601(until)
        );
        for v in self.data_versions(path, &key).await? {
            if let Err(e) = self.put_xml(&key, "retention", &v, xml.clone()).await {
                return Err(self.refused("extend_retention", path, &key, Some(&v), e).await);
            }
        }
        Ok(())
    }

    async fn set_legal_hold(&self, path: &str, on: bool) -> Result<(), StoreError> {
        let key = self.key(path)?;
        let status = if on { "ON" } else { "OFF" };
        let xml = format!("<LegalHold xmlns=\"{XMLNS}\"><Status>{status}</Status></LegalHold>");
        for v in self.data_versions(path, &key).await? {
            if let Err(e) = self.put_xml(&key, "legal-hold", &v, xml.clone()).await {
                return Err(self.map(path, e));
            }
        }
        tracing::info!(path, legal_hold = on, "archive legal hold changed");
        Ok(())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let key_prefix = format!("{}{prefix}", self.c.prefix);
        let keys = self.c.list_keys(&key_prefix, |e| self.map(prefix, e)).await?;
        let mut out: Vec<String> = keys
            .iter()
            .filter_map(|k| k.strip_prefix(&self.c.prefix).map(str::to_owned))
            .collect();
        out.sort();
        Ok(out)
    }

    async fn delete(&self, path: &str) -> Result<(), StoreError> {
        let key = self.key(path)?;
        let versions = self.versions(&key).await?;
        if !versions.iter().any(|v| !v.delete_marker) {
            return Err(StoreError::NotFound(path.to_owned()));
        }
        // Data versions first: if the lock refuses one, any delete marker
        // stays and nothing the lock protects has changed.
        let (data, markers): (Vec<_>, Vec<_>) = versions.into_iter().partition(|v| !v.delete_marker);
        for v in data.iter().chain(markers.iter()) {
            let resp = self
                .c
                .send(
                    Method::DELETE,
                    Some(&key),
                    &[("versionId", v.id.as_str())],
                    vec![],
                    Bytes::new(),
                )
                .await?;
            match check(resp).await {
                Ok(_) => {}
                Err(e) if e.status == StatusCode::NOT_FOUND => {}
                Err(e) => return Err(self.refused("delete", path, &key, Some(&v.id), e).await),
            }
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!(
            "s3://{}/{} at {} (region {}, object lock COMPLIANCE)",
            self.c.bucket, self.c.prefix, self.c.endpoint, self.c.region
        )
    }
}

fn ceil_secs(us: i64) -> i64 {
    us.div_euclid(1_000_000) + i64::from(us.rem_euclid(1_000_000) != 0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert_eq!(ceil_secs(1_000_000), 1);
        assert_eq!(ceil_secs(1_000_001), 2);
    }

    #[test]
    fn urls_and_secrets() {
        let c = S3Credentials::new("AK", "very-secret");
        assert!(!format!("{c:?}").contains("very-secret"));
        let s = S3ArchiveStore::open(
            "s3://b/pre/fix?endpoint=http://127.0.0.1:19000&region=eu-north-1",
            c.clone(),
        )
        .unwrap();
        assert_eq!(s.c.host, "127.0.0.1:19000");
        assert_eq!(s.c.prefix, "pre/fix/");
        assert_eq!(s.c.region, "eu-north-1");
        let s = S3ArchiveStore::open("s3://b?endpoint=https://s3.example:443", c.clone()).unwrap();
        assert_eq!(
            (s.c.host.as_str(), s.c.endpoint.as_str()),
            ("s3.example", "https://s3.example")
        );
        let s = S3ArchiveStore::open("s3://b", c.clone()).unwrap();
        assert_eq!(s.c.endpoint, "https://s3.us-east-1.amazonaws.com");
        let e = S3ArchiveStore::open("s3://b?secret_key=x", c.clone())
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("OPPTAK_S3_SECRET_KEY") && !e.contains("=x"), "{e}");
        for url in ["s3://ak:sk@b", "s3://b?endpoint=http://ak:sk@127.0.0.1:9000"] {
            let e = S3ArchiveStore::open(url, c.clone()).err().unwrap().to_string();
            assert!(e.contains("OPPTAK_S3_SECRET_KEY") && !e.contains("sk@"), "{e}");
        }
    }
}
