//! The archive on S3 with Object Lock in COMPLIANCE mode: a small client of
//! our own (reqwest + AWS Signature V4 signed by hand, path-style requests),
//! doing only what the archive needs.
//!
//! Deleting means `DELETE ?versionId=` of every version: a DELETE without a
//! version id only adds a delete marker and succeeds even under a compliance
//! lock, hiding the object while keeping it (see `docs/archive-store.md`).

use super::{check_path, describe_retention, refuse, ArchiveStore, Retention};
use crate::StoreError;
use async_trait::async_trait;
use base64::Engine as _;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use opptak_domain::time::{iso8601, parse_iso8601};
use reqwest::{Method, StatusCode, Url};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// Access key id and secret; the secret never appears in `Debug` or logs.
#[derive(Clone)]
pub struct S3Credentials {
    access_key: String,
    secret_key: String,
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Credentials")
            .field("access_key", &self.access_key)
            .field("secret_key", &"*****")
            .finish()
    }
}

impl S3Credentials {
    pub fn new(access_key: impl Into<String>, secret_key: impl Into<String>) -> Self {
        Self {
            access_key: access_key.into(),
            secret_key: secret_key.into(),
        }
    }

    /// From `OPPTAK_S3_ACCESS_KEY` and `OPPTAK_S3_SECRET_KEY`.
    pub fn from_env() -> Result<Self, StoreError> {
        let get = |name: &str| {
            std::env::var(name).ok().filter(|v| !v.is_empty()).ok_or_else(|| {
                StoreError::Config(format!(
                    "s3 archive: set {name} (credentials come from the environment)"
                ))
            })
        };
        Ok(Self::new(get("OPPTAK_S3_ACCESS_KEY")?, get("OPPTAK_S3_SECRET_KEY")?))
    }
}

/// See the module docs. Build with [`S3ArchiveStore::open`].
pub struct S3ArchiveStore {
    http: reqwest::Client,
    /// `scheme://host[:port]`, no trailing slash.
    endpoint: String,
    /// The `Host` header as signed (port only when not the scheme's default).
    host: String,
    bucket: String,
    /// Prepended to every object path; empty or ending in `/`.
    prefix: String,
    region: String,
    creds: S3Credentials,
}

/// An S3 error response: status plus the `<Code>` and `<Message>` of its body.
#[derive(Debug)]
struct S3Error {
    status: StatusCode,
    code: String,
    message: String,
}

impl std::fmt::Display for S3Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.code)?;
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

/// One stored version of an object, or a delete marker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectVersion {
    pub id: String,
    pub delete_marker: bool,
}

const XMLNS: &str = "http://s3.amazonaws.com/doc/2006-03-01/";

impl S3ArchiveStore {
    /// `s3://bucket[/prefix]?endpoint=https://…&region=…`. Without `endpoint`,
    /// AWS's `https://s3.<region>.amazonaws.com`; `region` defaults to
    /// `us-east-1`. Credentials never go in the URL.
    pub fn open(url: &str, creds: S3Credentials) -> Result<Self, StoreError> {
        let bad = |why: String| StoreError::Config(format!("archive store url {}: {why}", redact(url)));
        let u = Url::parse(url).map_err(|e| bad(e.to_string()))?;
        let no_creds = "credentials do not go in the url: set OPPTAK_S3_ACCESS_KEY / OPPTAK_S3_SECRET_KEY";
        if !u.username().is_empty() || u.password().is_some() {
            return Err(bad(no_creds.into()));
        }
        let bucket = u
            .host_str()
            .filter(|b| !b.is_empty())
            .ok_or_else(|| bad("no bucket".into()))?;
        let mut endpoint = None;
        let mut region = "us-east-1".to_owned();
        for (k, v) in u.query_pairs() {
            match &*k {
                "endpoint" => endpoint = Some(v.into_owned()),
                "region" => region = v.into_owned(),
                other => {
                    return Err(bad(format!(
                        "unknown parameter {other:?} (known: endpoint, region; credentials come from OPPTAK_S3_ACCESS_KEY / OPPTAK_S3_SECRET_KEY)"
                    )))
                }
            }
        }
        let endpoint = endpoint.unwrap_or_else(|| format!("https://s3.{region}.amazonaws.com"));
        // The endpoint itself is never echoed: it could carry user info.
        let e = Url::parse(&endpoint).map_err(|err| bad(format!("endpoint: {err}")))?;
        if !e.username().is_empty() || e.password().is_some() {
            return Err(bad(no_creds.into()));
        }
        let host_name = e.host_str().ok_or_else(|| bad("endpoint has no host".into()))?;
        if !matches!(e.scheme(), "http" | "https") || e.path() != "/" || e.query().is_some() {
            return Err(bad(format!("endpoint of {host_name} must be http(s)://host[:port]")));
        }
        let host = match e.port() {
            Some(p) => format!("{host_name}:{p}"),
            None => host_name.to_owned(),
        };
        let mut prefix = u.path().trim_matches('/').to_owned();
        if !prefix.is_empty() {
            check_path(&prefix)?;
            prefix.push('/');
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(300))
            .build()
            .map_err(|e| StoreError::Config(format!("s3 client: {e}")))?;
        Ok(Self {
            http,
            endpoint: format!("{}://{host}", e.scheme()),
            host,
            bucket: bucket.to_owned(),
            prefix,
            region,
            creds,
        })
    }

    /// Creates the bucket with Object Lock enabled (which also turns on
    /// versioning); an existing bucket of ours is fine, but it must have
    /// Object Lock enabled.
    pub async fn create_bucket(&self) -> Result<(), StoreError> {
        let body = if self.region == "us-east-1" {
            Bytes::new()
        } else {
            Bytes::from(format!(
                "<CreateBucketConfiguration xmlns=\"{XMLNS}\"><LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>",
                self.region
            ))
        };
        let resp = self
            .send(
                Method::PUT,
                None,
                &[],
                vec![("x-amz-bucket-object-lock-enabled", "true".into())],
                body,
            )
            .await?;
        match check(resp).await {
            Ok(_) => {}
            Err(e) if e.code == "BucketAlreadyOwnedByYou" => {}
            Err(e) => return Err(StoreError::Config(format!("create bucket {}: {e}", self.bucket))),
        }
        let resp = self
            .send(Method::GET, None, &[("object-lock", "")], vec![], Bytes::new())
            .await?;
        let xml = match check(resp).await {
            Ok(r) => text(r).await?,
            Err(e) => {
                return Err(StoreError::Config(format!(
                    "bucket {} without object lock: {e}",
                    self.bucket
                )))
            }
        };
        if xml_tag(&xml, "ObjectLockEnabled") != Some("Enabled") {
            return Err(StoreError::Config(format!(
                "bucket {} does not have object lock enabled",
                self.bucket
            )));
        }
        Ok(())
    }

    fn key(&self, path: &str) -> Result<String, StoreError> {
        check_path(path)?;
        Ok(format!("{}{path}", self.prefix))
    }

    /// Signs (SigV4, payload hash included) and sends one request.
    async fn send(
        &self,
        method: Method,
        key: Option<&str>,
        query: &[(&str, &str)],
        headers: Vec<(&'static str, String)>,
        body: Bytes,
    ) -> Result<reqwest::Response, StoreError> {
        let uri = match key {
            Some(k) => format!("/{}/{}", uri_encode(&self.bucket, false), uri_encode(k, true)),
            None => format!("/{}", uri_encode(&self.bucket, false)),
        };
        let mut q: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| (uri_encode(k, false), uri_encode(v, false)))
            .collect();
        q.sort();
        let query_str = q.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
        let payload_hash = hex::encode(Sha256::digest(&body));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let (amz_date, day) = amz_date(now);

        let mut signed: Vec<(String, String)> = headers
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        signed.push(("host".into(), self.host.clone()));
        signed.push(("x-amz-content-sha256".into(), payload_hash.clone()));
        signed.push(("x-amz-date".into(), amz_date.clone()));
        signed.sort();
        let canonical_headers: String = signed.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
        let signed_names = signed.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>().join(";");
        let canonical = format!(
            "{}\n{uri}\n{query_str}\n{canonical_headers}\n{signed_names}\n{payload_hash}",
            method.as_str()
        );
        let scope = format!("{day}/{}/s3/aws4_request", self.region);
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
        let mut k = hmac(format!("AWS4{}", self.creds.secret_key).as_bytes(), day.as_bytes());
        for part in [self.region.as_bytes(), b"s3", b"aws4_request"] {
            k = hmac(&k, part);
        }
        let signature = hex::encode(hmac(&k, to_sign.as_bytes()));
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_names}, Signature={signature}",
            self.creds.access_key
        );

        let url = if query_str.is_empty() {
            format!("{}{uri}", self.endpoint)
        } else {
            format!("{}{uri}?{query_str}", self.endpoint)
        };
        let mut req = self.http.request(method, url).header("authorization", auth);
        for (k, v) in &signed {
            req = req.header(k.as_str(), v.as_str());
        }
        req.body(body)
            .send()
            .await
            .map_err(|e| StoreError::Unavailable(format!("s3 {}: {e}", self.bucket)))
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
            let resp = self.send(Method::GET, None, &q, vec![], Bytes::new()).await?;
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
        let resp = self.send(Method::HEAD, Some(key), &q, vec![], Bytes::new()).await?;
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
            (404, "NoSuchBucket") => StoreError::Config(format!("s3 bucket {}: {e}", self.bucket)),
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
        let resp = self.send(Method::PUT, Some(&key), &[], headers, data).await?;
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
        let resp = self.send(Method::GET, Some(&key), &[], vec![], Bytes::new()).await?;
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
        let resp = self.send(Method::GET, Some(&key), &[], headers, Bytes::new()).await?;
        let resp = check(resp).await.map_err(|e| self.map(path, e))?;
        let whole = resp.status() == StatusCode::OK;
        let got = resp
            .bytes()
            .await
            .map_err(|e| StoreError::Unavailable(format!("s3 archive {path}: {e}")))?;
        // A server that ignores Range sends the whole object (200).
        let got = if whole && got.len() as u64 >= range.end {
            got.slice(range.start as usize..range.end as usize)
        } else {
            got
        };
        if got.len() as u64 != want {
            return Err(StoreError::Corrupt(format!(
                "archive {path}: {} bytes where {want} were expected",
                got.len()
            )));
        }
        Ok(got)
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
        let key_prefix = format!("{}{prefix}", self.prefix);
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut q = vec![("list-type", "2"), ("prefix", key_prefix.as_str())];
            if let Some(t) = &token {
                q.push(("continuation-token", t.as_str()));
            }
            let resp = self.send(Method::GET, None, &q, vec![], Bytes::new()).await?;
            let xml = text(check(resp).await.map_err(|e| self.map(prefix, e))?).await?;
            for block in xml_blocks(&xml, "Contents") {
                if let Some(k) = xml_tag(block, "Key").map(xml_unescape) {
                    if let Some(rel) = k.strip_prefix(&self.prefix) {
                        out.push(rel.to_owned());
                    }
                }
            }
            match (xml_tag(&xml, "IsTruncated"), xml_tag(&xml, "NextContinuationToken")) {
                (Some("true"), Some(t)) => token = Some(xml_unescape(t)),
                _ => break,
            }
        }
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
            self.bucket, self.prefix, self.endpoint, self.region
        )
    }
}

/// The response if 2xx, else its S3 error.
async fn check(resp: reqwest::Response) -> Result<reqwest::Response, S3Error> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let body = resp.text().await.unwrap_or_default();
    Err(S3Error {
        status,
        code: xml_tag(&body, "Code")
            .map(xml_unescape)
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("").replace(' ', "")),
        message: xml_tag(&body, "Message").map(xml_unescape).unwrap_or_default(),
    })
}

async fn text(resp: reqwest::Response) -> Result<String, StoreError> {
    resp.text()
        .await
        .map_err(|e| StoreError::Unavailable(format!("s3 response: {e}")))
}

fn ceil_secs(us: i64) -> i64 {
    us.div_euclid(1_000_000) + i64::from(us.rem_euclid(1_000_000) != 0)
}

fn content_md5(data: &[u8]) -> String {
    use md5::Digest as _;
    base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(data))
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length; new_from_slice cannot fail for it.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// `(YYYYMMDDThhmmssZ, YYYYMMDD)` for SigV4.
fn amz_date(secs: i64) -> (String, String) {
    let iso = iso8601(secs * 1_000_000); // YYYY-MM-DDThh:mm:ssZ
    let compact: String = iso.chars().filter(|c| *c != '-' && *c != ':').collect();
    let day = compact[..8].to_owned();
    (compact, day)
}

/// SigV4's URI encoding: everything but `A-Za-z0-9-._~` (and `/` in keys).
fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(b as char),
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The URL for messages: scheme, bucket and prefix only (no user info, no
/// query, where a misplaced secret could be).
fn redact(url: &str) -> String {
    match Url::parse(url) {
        Ok(u) => format!("{}://{}{}", u.scheme(), u.host_str().unwrap_or(""), u.path()),
        Err(_) => "<unparseable url>".into(),
    }
}

// S3's responses are small and flat; these read what the archive needs.

/// The text inside the first `<tag>…</tag>`.
fn xml_tag<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    xml_blocks(xml, tag).into_iter().next()
}

/// The text inside every `<tag>…</tag>` (not nested in itself).
fn xml_blocks<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let Some(j) = after.find(&close) else { break };
        out.push(&after[..j]);
        rest = &after[j + close.len()..];
    }
    out
}

fn xml_unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let Some(end) = tail.find(';') else {
            out.push_str(tail);
            return out;
        };
        let ent = &tail[1..end];
        let ch = match ent {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => ent
                .strip_prefix("#x")
                .map(|h| u32::from_str_radix(h, 16))
                .or_else(|| ent.strip_prefix('#').map(str::parse::<u32>))
                .and_then(Result::ok)
                .and_then(char::from_u32),
        };
        match ch {
            Some(c) => out.push(c),
            None => out.push_str(&tail[..=end]),
        }
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// AWS's published example ("GET Object" in the SigV4 for S3 docs,
    /// `examplebucket`, 2013-05-24): same canonical request rules, same key.
    #[test]
    fn signing_key_and_signature_match_aws_example() {
        let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        let canonical = "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n\
x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n\
x-amz-date:20130524T000000Z\n\nhost;range;x-amz-content-sha256;x-amz-date\n\
e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n{}",
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
        let mut k = hmac(format!("AWS4{secret}").as_bytes(), b"20130524");
        for part in [&b"us-east-1"[..], b"s3", b"aws4_request"] {
            k = hmac(&k, part);
        }
        assert_eq!(
            hex::encode(hmac(&k, to_sign.as_bytes())),
            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
        assert_eq!(amz_date(1_369_353_600), ("20130524T000000Z".into(), "20130524".into()));
    }

    #[test]
    fn helpers() {
        assert_eq!(uri_encode("a b/c~d+é", true), "a%20b/c~d%2B%C3%A9");
        assert_eq!(uri_encode("a/b", false), "a%2Fb");
        assert_eq!(content_md5(b""), "1B2M2Y8AsgTpgAmY7PhCfg==");
        assert_eq!(ceil_secs(1_000_000), 1);
        assert_eq!(ceil_secs(1_000_001), 2);
        assert_eq!(xml_unescape("a&amp;b&lt;&#65;&#x42;&bogus;"), "a&b<AB&bogus;");
        let xml = "<R><Version><Key>k</Key><VersionId>1</VersionId></Version>\
<DeleteMarker><Key>k</Key><VersionId>2</VersionId></DeleteMarker><Version><Key>k2</Key></Version></R>";
        assert_eq!(xml_blocks(xml, "Version").len(), 2);
        assert_eq!(xml_tag(xml_blocks(xml, "DeleteMarker")[0], "VersionId"), Some("2"));
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
        assert_eq!(s.host, "127.0.0.1:19000");
        assert_eq!(s.prefix, "pre/fix/");
        assert_eq!(s.region, "eu-north-1");
        let s = S3ArchiveStore::open("s3://b?endpoint=https://s3.example:443", c.clone()).unwrap();
        assert_eq!(
            (s.host.as_str(), s.endpoint.as_str()),
            ("s3.example", "https://s3.example")
        );
        let s = S3ArchiveStore::open("s3://b", c.clone()).unwrap();
        assert_eq!(s.endpoint, "https://s3.us-east-1.amazonaws.com");
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
