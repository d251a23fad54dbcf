//! The S3 client both S3 stores share: the archive
//! ([`crate::archive::s3::S3ArchiveStore`], Object Lock) and the hot blob
//! store ([`crate::blob::s3::S3BlobStore`], no versioning). Our own small client (reqwest + AWS Signature V4 signed by hand, path-style
//! requests), doing only what the two stores need: URL parsing, credentials
//! from the environment, signing and sending, S3 error responses, object
//! listings.

use crate::StoreError;
use base64::Engine as _;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use opptak_domain::time::iso8601;
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
                StoreError::Config(format!("s3 store: set {name} (credentials come from the environment)"))
            })
        };
        Ok(Self::new(get("OPPTAK_S3_ACCESS_KEY")?, get("OPPTAK_S3_SECRET_KEY")?))
    }
}

/// How long a request may take: connecting, waiting between bytes, and in all.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timeouts {
    pub(crate) connect: Duration,
    pub(crate) read: Duration,
    pub(crate) total: Duration,
}

/// One bucket (and key prefix) at one endpoint, with the credentials to sign for it.
pub(crate) struct S3Client {
    http: reqwest::Client,
    /// `scheme://host[:port]`, no trailing slash.
    pub(crate) endpoint: String,
    /// The `Host` header as signed (port only when not the scheme's default).
    pub(crate) host: String,
    pub(crate) bucket: String,
    /// Prepended to every object path; empty or ending in `/`.
    pub(crate) prefix: String,
    pub(crate) region: String,
    creds: S3Credentials,
}

/// An S3 error response: status plus the `<Code>` and `<Message>` of its body.
#[derive(Debug)]
pub(crate) struct S3Error {
    pub(crate) status: StatusCode,
    pub(crate) code: String,
    pub(crate) message: String,
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

pub(crate) const XMLNS: &str = "http://s3.amazonaws.com/doc/2006-03-01/";

impl S3Client {
    /// `s3://bucket[/prefix]?endpoint=https://…&region=…`. Without `endpoint`,
    /// AWS's `https://s3.<region>.amazonaws.com`; `region` defaults to
    /// `us-east-1`. Credentials never go in the URL. `what` names the store in
    /// messages ("archive store"); `check_prefix` applies the store's path
    /// rules to the prefix.
    pub(crate) fn open(
        url: &str,
        creds: S3Credentials,
        what: &str,
        check_prefix: impl Fn(&str) -> Result<(), StoreError>,
        timeouts: Timeouts,
    ) -> Result<Self, StoreError> {
        let bad = |why: String| StoreError::Config(format!("{what} url {}: {why}", redact(url)));
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
            check_prefix(&prefix)?;
            prefix.push('/');
        }
        let http = reqwest::Client::builder()
            .connect_timeout(timeouts.connect)
            .read_timeout(timeouts.read)
            .timeout(timeouts.total)
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

    /// Signs (SigV4, payload hash included) and sends one request; `key`
    /// None addresses the bucket. A request that got no answer (connection,
    /// timeout) is `Unavailable`.
    pub(crate) async fn send(
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

    /// Creates the bucket (in `region`, with `headers` such as Object Lock);
    /// a bucket we already own is fine.
    pub(crate) async fn create_bucket(&self, headers: Vec<(&'static str, String)>) -> Result<(), StoreError> {
        let body = if self.region == "us-east-1" {
            Bytes::new()
        } else {
            Bytes::from(format!(
                "<CreateBucketConfiguration xmlns=\"{XMLNS}\"><LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>",
                self.region
            ))
        };
        let resp = self.send(Method::PUT, None, &[], headers, body).await?;
        match check(resp).await {
            Ok(_) => Ok(()),
            Err(e) if e.code == "BucketAlreadyOwnedByYou" => Ok(()),
            Err(e) => Err(StoreError::Config(format!("create bucket {}: {e}", self.bucket))),
        }
    }

    /// Every key under `key_prefix` (ListObjectsV2, following continuation
    /// tokens past S3's 1,000 keys a page), in S3's order; `map` turns an
    /// error response into the store's error.
    pub(crate) async fn list_keys(
        &self,
        key_prefix: &str,
        map: impl Fn(S3Error) -> StoreError,
    ) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut q = vec![("list-type", "2"), ("prefix", key_prefix)];
            if let Some(t) = &token {
                q.push(("continuation-token", t.as_str()));
            }
            let resp = self.send(Method::GET, None, &q, vec![], Bytes::new()).await?;
            let xml = text(check(resp).await.map_err(&map)?).await?;
            for block in xml_blocks(&xml, "Contents") {
                if let Some(k) = xml_tag(block, "Key").map(xml_unescape) {
                    out.push(k);
                }
            }
            match (xml_tag(&xml, "IsTruncated"), xml_tag(&xml, "NextContinuationToken")) {
                (Some("true"), Some(t)) => {
                    let next = xml_unescape(t);
                    // A server repeating its token would loop forever.
                    if token.as_deref() == Some(next.as_str()) {
                        return Err(StoreError::Unavailable(format!(
                            "s3 {}: listing {key_prefix:?} did not advance",
                            self.bucket
                        )));
                    }
                    token = Some(next);
                }
                _ => break,
            }
        }
        Ok(out)
    }
}

/// The response if 2xx, else its S3 error.
pub(crate) async fn check(resp: reqwest::Response) -> Result<reqwest::Response, S3Error> {
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

/// The bytes `range` of an object from the body of a ranged GET: a server
/// that ignores Range sends the whole object (`whole`: status 200). Fewer
/// or more bytes than asked for are [`StoreError::Corrupt`]; `what` names
/// the object in that error.
pub(crate) fn ranged_body(
    whole: bool,
    got: Bytes,
    range: &std::ops::Range<u64>,
    what: &str,
) -> Result<Bytes, StoreError> {
    let want = range.end.saturating_sub(range.start);
    let got = if whole && got.len() as u64 >= range.end {
        got.slice(range.start as usize..range.end as usize)
    } else {
        got
    };
    if got.len() as u64 != want {
        return Err(StoreError::Corrupt(format!(
            "{what}: {} bytes where {want} were expected",
            got.len()
        )));
    }
    Ok(got)
}

pub(crate) async fn text(resp: reqwest::Response) -> Result<String, StoreError> {
    resp.text()
        .await
        .map_err(|e| StoreError::Unavailable(format!("s3 response: {e}")))
}

pub(crate) fn content_md5(data: &[u8]) -> String {
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
pub(crate) fn redact(url: &str) -> String {
    match Url::parse(url) {
        Ok(u) => format!("{}://{}{}", u.scheme(), u.host_str().unwrap_or(""), u.path()),
        Err(_) => "<unparseable url>".into(),
    }
}

// S3's responses are small and flat; these read what the stores need.

/// The text inside the first `<tag>…</tag>`.
pub(crate) fn xml_tag<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    xml_blocks(xml, tag).into_iter().next()
}

/// The text inside every `<tag>…</tag>` (not nested in itself).
pub(crate) fn xml_blocks<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
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

pub(crate) fn xml_unescape(s: &str) -> String {
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
    fn a_ranged_body_is_the_range_whether_or_not_the_server_honoured_it() {
        let object = Bytes::from_static(b"0123456789");
        // 206: the server sent the range.
        assert_eq!(
            ranged_body(false, object.slice(2..5), &(2..5), "a").unwrap(),
            &b"234"[..]
        );
        // 200: it ignored Range and sent the whole object.
        assert_eq!(ranged_body(true, object.clone(), &(2..5), "a").unwrap(), &b"234"[..]);
        // A short or a whole but too short object is corrupt, never padded.
        for (whole, got) in [(false, object.slice(2..4)), (true, object.slice(0..4))] {
            let e = ranged_body(whole, got, &(2..5), "archive a").unwrap_err();
            assert!(
                matches!(&e, StoreError::Corrupt(m) if m == "archive a: 2 bytes where 3 were expected")
                    || matches!(&e, StoreError::Corrupt(m) if m == "archive a: 4 bytes where 3 were expected"),
                "{e}"
            );
        }
    }

    #[test]
    fn helpers() {
        assert_eq!(uri_encode("a b/c~d+é", true), "a%20b/c~d%2B%C3%A9");
        assert_eq!(uri_encode("a/b", false), "a%2Fb");
        assert_eq!(uri_encode("k=v&x", true), "k%3Dv%26x");
        assert_eq!(content_md5(b""), "1B2M2Y8AsgTpgAmY7PhCfg==");
        assert_eq!(xml_unescape("a&amp;b&lt;&#65;&#x42;&bogus;"), "a&b<AB&bogus;");
        let xml = "<R><Version><Key>k</Key><VersionId>1</VersionId></Version>\
<DeleteMarker><Key>k</Key><VersionId>2</VersionId></DeleteMarker><Version><Key>k2</Key></Version></R>";
        assert_eq!(xml_blocks(xml, "Version").len(), 2);
        assert_eq!(xml_tag(xml_blocks(xml, "DeleteMarker")[0], "VersionId"), Some("2"));
    }

    #[test]
    fn secrets_stay_out_of_debug_and_messages() {
        let c = S3Credentials::new("AK", "very-secret");
        assert!(!format!("{c:?}").contains("very-secret"));
        assert_eq!(redact("s3://ak:sk@b/p?endpoint=x"), "s3://b/p");
    }
}
