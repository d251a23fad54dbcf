//! The hot blob store on S3 (`s3://bucket[/prefix]?endpoint=…&region=…`),
//! over the client the S3 stores share ([`crate::s3_client`]), so recorders on
//! different hosts share one bucket.
//!
//! Deleting must be final: retention sweeps and KI opt-outs promise that a
//! deleted artifact is gone. A versioned bucket keeps every deleted or
//! overwritten object as a noncurrent version, so before its first request
//! the store reads the bucket's versioning and refuses a bucket where it was
//! ever turned on (`Enabled` or `Suspended`); see `docs/blob-store.md`.

use super::BlobStore;
use crate::s3_client::{check, content_md5, ranged_body, text, xml_tag, S3Client, S3Credentials, S3Error, Timeouts};
use crate::StoreError;
use async_trait::async_trait;
use bytes::Bytes;
use reqwest::{Method, StatusCode};
use std::time::Duration;

/// See the module docs. Build with [`S3BlobStore::open`].
pub struct S3BlobStore {
    c: S3Client,
    /// Set once the bucket was found usable (reachable, unversioned).
    checked: tokio::sync::OnceCell<()>,
}

/// S3 keys are at most 1,024 bytes.
const MAX_KEY: usize = 1024;

impl S3BlobStore {
    /// `s3://bucket[/prefix]?endpoint=https://…&region=…`. Without `endpoint`,
    /// AWS's `https://s3.<region>.amazonaws.com`; `region` defaults to
    /// `us-east-1`. Credentials never go in the URL. Sends nothing yet: the
    /// bucket is checked before the first request ([`BlobStore::verify`]).
    pub fn open(url: &str, creds: S3Credentials) -> Result<Self, StoreError> {
        // A recorder's flush waits on these requests: a stalled connection
        // must become Unavailable (and a retry) in seconds, while a
        // compacted hour-long recording (~60 MB) still has time to upload.
        let timeouts = Timeouts {
            connect: Duration::from_secs(5),
            read: Duration::from_secs(30),
            total: Duration::from_secs(120),
        };
        let c = S3Client::open(url, creds, "blob store", |p| normalize(p).map(|_| ()), timeouts)?;
        Ok(Self {
            c,
            checked: tokio::sync::OnceCell::new(),
        })
    }

    /// Creates the bucket without versioning (set-up and tests); a bucket we
    /// already own is fine, and is then checked like any other.
    pub async fn create_bucket(&self) -> Result<(), StoreError> {
        self.c.create_bucket(vec![]).await?;
        self.ready().await
    }

    /// The bucket check, once per store (a refusal or an unreachable server
    /// is asked again on the next request).
    async fn ready(&self) -> Result<(), StoreError> {
        self.checked.get_or_try_init(|| self.check_bucket()).await.map(|_| ())
    }

    async fn check_bucket(&self) -> Result<(), StoreError> {
        let resp = self
            .c
            .send(Method::GET, None, &[("versioning", "")], vec![], Bytes::new())
            .await?;
        let resp = check(resp)
            .await
            .map_err(|e| map_error(&self.c.bucket, "check versioning", "", &e))?;
        refuse_versioned(&self.c.bucket, &text(resp).await?)
    }

    fn key(&self, path: &str) -> Result<String, StoreError> {
        let key = format!("{}{}", self.c.prefix, normalize(path)?);
        if key.len() > MAX_KEY {
            return Err(StoreError::Config(format!(
                "blob path {path:?}: longer than S3's {MAX_KEY} bytes with the prefix"
            )));
        }
        Ok(key)
    }

    fn map(&self, op: &str, path: &str, e: S3Error) -> StoreError {
        map_error(&self.c.bucket, op, path, &e)
    }
}

/// A blob path as the object_store backends read it
/// (`object_store::path::Path::parse`), so a path is valid on every backend
/// or on none: one leading and one trailing `/` ignored; no empty, `.` or `..`
/// segments; no control characters.
fn normalize(path: &str) -> Result<&str, StoreError> {
    let p = path.strip_prefix('/').unwrap_or(path);
    let p = p.strip_suffix('/').unwrap_or(p);
    let bad = |why: &str| Err(StoreError::Config(format!("blob path {path:?}: {why}")));
    if p.is_empty() {
        return bad("empty");
    }
    if p.chars().any(char::is_control) {
        return bad("control characters are not allowed");
    }
    if p.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
        return bad("segments must be non-empty and not . or ..");
    }
    Ok(p)
}

/// Refuses a bucket whose `GetBucketVersioning` answer (`xml`) shows
/// versioning was ever turned on: there a DELETE only hides the object.
fn refuse_versioned(bucket: &str, xml: &str) -> Result<(), StoreError> {
    match xml_tag(xml, "Status").map(str::trim) {
        None | Some("") => Ok(()),
        Some(status) => Err(StoreError::Config(format!(
            "s3 blob store: bucket {bucket} has versioning {status}, so a deleted object would stay stored \
             as a noncurrent version and deleting recordings and KI artifacts would not remove them; \
             use a bucket on which versioning was never enabled (it cannot be switched off, only suspended) \
             and without object lock (see docs/blob-store.md)"
        ))),
    }
}

/// What an S3 error answer to `op` on `path` means: retry (Unavailable),
/// absent (NotFound), or a configuration to fix (Config; 403 names the
/// bucket and the operation, never a credential).
fn map_error(bucket: &str, op: &str, path: &str, e: &S3Error) -> StoreError {
    let what = if path.is_empty() {
        op.to_owned()
    } else {
        format!("{op} {path}")
    };
    match (e.status.as_u16(), e.code.as_str()) {
        (_, "RequestTimeout" | "SlowDown" | "InternalError" | "ServiceUnavailable" | "OperationAborted") => {
            StoreError::Unavailable(format!("s3 blob store {what}: {e}"))
        }
        (404, "NoSuchBucket") => StoreError::Config(format!(
            "s3 blob store: bucket {bucket} does not exist ({what}): create it, without versioning"
        )),
        (404, _) => StoreError::NotFound(path.to_owned()),
        (401 | 403, _) => StoreError::Config(format!(
            "s3 blob store: access to bucket {bucket} refused ({what}): {e}; check OPPTAK_S3_ACCESS_KEY / \
             OPPTAK_S3_SECRET_KEY and the bucket policy"
        )),
        (416, _) => StoreError::Corrupt(format!("{path}: range beyond the object ({e})")),
        (408 | 409 | 429, _) | (500..=599, _) => StoreError::Unavailable(format!("s3 blob store {what}: {e}")),
        // Any other answer says the request itself is wrong: no retry helps.
        _ => StoreError::Config(format!("s3 blob store {what} in bucket {bucket}: {e}")),
    }
}

fn body_err(path: &str, e: reqwest::Error) -> StoreError {
    StoreError::Unavailable(format!("s3 blob store {path}: {e}"))
}

#[async_trait]
impl BlobStore for S3BlobStore {
    async fn put(&self, path: &str, data: Bytes) -> Result<(), StoreError> {
        let key = self.key(path)?;
        self.ready().await?;
        let headers = vec![
            ("content-md5", content_md5(&data)),
            ("content-type", "application/octet-stream".into()),
        ];
        let resp = self.c.send(Method::PUT, Some(&key), &[], headers, data).await?;
        check(resp).await.map_err(|e| self.map("put", path, e))?;
        Ok(())
    }

    async fn get(&self, path: &str) -> Result<Bytes, StoreError> {
        let key = self.key(path)?;
        self.ready().await?;
        let resp = self.c.send(Method::GET, Some(&key), &[], vec![], Bytes::new()).await?;
        let resp = check(resp).await.map_err(|e| self.map("get", path, e))?;
        resp.bytes().await.map_err(|e| body_err(path, e))
    }

    async fn get_range(&self, path: &str, range: std::ops::Range<u64>) -> Result<Bytes, StoreError> {
        let key = self.key(path)?;
        self.ready().await?;
        let want = range.end.saturating_sub(range.start);
        if want == 0 {
            // HTTP cannot ask for zero bytes; still say whether the object exists.
            let resp = self.c.send(Method::HEAD, Some(&key), &[], vec![], Bytes::new()).await?;
            check(resp).await.map_err(|e| self.map("get_range", path, e))?;
            return Ok(Bytes::new());
        }
        let headers = vec![("range", format!("bytes={}-{}", range.start, range.end - 1))];
        let resp = self.c.send(Method::GET, Some(&key), &[], headers, Bytes::new()).await?;
        let resp = check(resp).await.map_err(|e| self.map("get_range", path, e))?;
        let whole = resp.status() == StatusCode::OK;
        let got = resp.bytes().await.map_err(|e| body_err(path, e))?;
        ranged_body(whole, got, &range, path)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        // Whole segments, as object_store lists: `a/b` is `a/b/…`, not `a/bc`.
        let p = prefix.trim_matches('/');
        let key_prefix = if p.is_empty() {
            self.c.prefix.clone()
        } else {
            format!("{}{}/", self.c.prefix, normalize(p)?)
        };
        self.ready().await?;
        let keys = self.c.list_keys(&key_prefix, |e| self.map("list", prefix, e)).await?;
        let mut out: Vec<String> = keys
            .iter()
            .filter_map(|k| k.strip_prefix(&self.c.prefix).map(str::to_owned))
            .collect();
        out.sort();
        Ok(out)
    }

    async fn delete(&self, path: &str) -> Result<(), StoreError> {
        let key = self.key(path)?;
        self.ready().await?;
        // S3 answers 204 whether or not the key existed; in an unversioned
        // bucket (checked by ready) nothing of the object is left.
        let resp = self
            .c
            .send(Method::DELETE, Some(&key), &[], vec![], Bytes::new())
            .await?;
        check(resp).await.map_err(|e| self.map("delete", path, e))?;
        Ok(())
    }

    async fn verify(&self) -> Result<(), StoreError> {
        self.ready().await
    }

    fn describe(&self) -> String {
        format!(
            "s3://{}/{} at {} (region {})",
            self.c.bucket, self.c.prefix, self.c.endpoint, self.c.region
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn err(status: u16, code: &str) -> S3Error {
        S3Error {
            status: StatusCode::from_u16(status).unwrap(),
            code: code.into(),
            message: "m".into(),
        }
    }

    #[test]
    fn errors_say_retry_absent_or_fix_the_configuration() {
        let m = |s, c| map_error("hot", "put", "spool/a", &err(s, c));
        for (s, c) in [
            (500, "InternalError"),
            (503, "SlowDown"),
            (502, "BadGateway"),
            (400, "RequestTimeout"),
            (409, "OperationAborted"),
            (429, "TooManyRequests"),
        ] {
            assert!(matches!(m(s, c), StoreError::Unavailable(_)), "{s} {c}");
        }
        assert!(matches!(m(404, "NoSuchKey"), StoreError::NotFound(p) if p == "spool/a"));
        assert!(matches!(m(404, "NoSuchBucket"), StoreError::Config(e) if e.contains("hot")));
        assert!(matches!(m(416, "InvalidRange"), StoreError::Corrupt(_)));
        assert!(matches!(m(400, "InvalidArgument"), StoreError::Config(_)));
        for c in ["AccessDenied", "SignatureDoesNotMatch", "InvalidAccessKeyId"] {
            match m(403, c) {
                StoreError::Config(e) => assert!(
                    e.contains("bucket hot") && e.contains("put spool/a") && e.contains(c),
                    "{e}"
                ),
                other => panic!("{other:?}"),
            }
        }
    }

    /// Enabled and Suspended are both refused: a suspended bucket still
    /// holds the noncurrent versions made while it was enabled.
    #[test]
    fn a_bucket_that_was_ever_versioned_is_refused() {
        let ns = "xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"";
        assert!(refuse_versioned("hot", &format!("<VersioningConfiguration {ns}/>")).is_ok());
        assert!(refuse_versioned(
            "hot",
            &format!("<VersioningConfiguration {ns}></VersioningConfiguration>")
        )
        .is_ok());
        for status in ["Enabled", "Suspended"] {
            let xml = format!(
                "<VersioningConfiguration {ns}><Status>{status}</Status><MfaDelete>Disabled</MfaDelete></VersioningConfiguration>"
            );
            match refuse_versioned("hot", &xml) {
                Err(StoreError::Config(e)) => assert!(
                    e.contains("bucket hot") && e.contains(status) && e.contains("noncurrent"),
                    "{e}"
                ),
                other => panic!("{status}: {other:?}"),
            }
        }
    }

    #[test]
    fn paths_follow_the_object_store_rules() {
        for (p, n) in [
            ("a", "a"),
            ("/a/b/", "a/b"),
            ("rec/a b=c+d&e", "rec/a b=c+d&e"),
            ("æ/ø", "æ/ø"),
        ] {
            assert_eq!(normalize(p).unwrap(), n);
        }
        for bad in ["", "/", "a//b", "a/../b", "./a", "a\nb", "a/\u{7f}"] {
            assert!(matches!(normalize(bad), Err(StoreError::Config(_))), "{bad:?}");
        }
    }

    #[test]
    fn urls_and_secrets() {
        let c = S3Credentials::new("AK", "very-secret");
        let s = S3BlobStore::open(
            "s3://hot/opptak/a?endpoint=http://127.0.0.1:19000&region=eu-north-1",
            c.clone(),
        )
        .unwrap();
        assert_eq!(s.key("spool/x").unwrap(), "opptak/a/spool/x");
        assert!(s.describe().contains("s3://hot/opptak/a/") && !s.describe().contains("very-secret"));
        assert!(matches!(s.key(&"x".repeat(1020)), Err(StoreError::Config(_))));
        for url in [
            "s3://ak:sk@hot",
            "s3://hot?endpoint=http://ak:sk@127.0.0.1:9000",
            "s3://hot?secret_key=sk",
        ] {
            let e = S3BlobStore::open(url, c.clone()).err().unwrap().to_string();
            assert!(
                e.contains("blob store url")
                    && e.contains("OPPTAK_S3_SECRET_KEY")
                    && !e.contains("sk@")
                    && !e.contains("=sk"),
                "{e}"
            );
        }
        assert!(S3BlobStore::open("s3://hot/a//b", c).is_err());
    }
}
