//! OIDC bearer tokens for the review service's API (issue 6 item 4): a JWT
//! access token from the bank's identity provider, verified against the
//! provider's published keys (JWKS), becomes a [`Principal`] carrying an
//! opptak [`User`].
//!
//! What is checked, in this order (claims are read only once the signature
//! holds, so nothing an attacker wrote decides anything before that):
//! - size (at most [`MAX_TOKEN_BYTES`], refused before decoding) and shape:
//!   compact JWS, three base64url parts, a JSON header with `alg` and `kid`,
//!   no `crit` extensions;
//! - `alg` is in `oidc.algorithms` and asymmetric. `none` and every HS*
//!   algorithm are refused outright: verifying HS256 "with the public key"
//!   is the algorithm-confusion attack, where anyone holding the public key
//!   mints tokens. Keys are only ever taken from the JWKS, never from the
//!   token's `jwk`/`jku`/`x5u` headers;
//! - the key named by `kid` exists, its type (and its own `alg`, if stated)
//!   fits `alg`, and the signature verifies (the `jsonwebtoken` crate on
//!   ring: RSA keys of 2048-8192 bits, P-256/P-384, Ed25519). opptak picks
//!   the algorithm and the key before the crate sees the token, so the
//!   header's `alg` only ever selects among the configured ones;
//! - `iss` equals `oidc.issuer` exactly; `aud` (string or array) contains
//!   `oidc.audience`; `exp` is present and not past (with `oidc.leeway_s`);
//!   `nbf` and `iat`, when present, are not in the future beyond the leeway;
//! - the user claim (`sub` by default) is a usable id, and the roles claim
//!   names exactly one opptak role.
//!
//! `jsonwebtoken` verifies the signature and decodes the claims; the claim
//! rules above are opptak's own, with the crate's claim validation switched
//! off: its clock is the system's in whole seconds (expiry here follows the
//! service's [`Clock`]), it accepts an `iss` array that merely contains the
//! issuer, and with several required claims missing which one it names
//! varies from run to run.
//!
//! Roles: values of the roles claim that are not opptak roles (`advisor`,
//! `team-lead`, `qa`, `compliance`, `auditor`, `admin`) are ignored, since
//! the provider may list other applications' roles too. Exactly one distinct
//! opptak role must remain: with two (say `advisor` and `admin`) the token is
//! refused rather than the first one winning, because identity providers do
//! not promise an order, and an admin must never end up reading content
//! because of one.
//!
//! Archive clients (issue 17): the online bank reads one customer's
//! conversations with a client-credentials token of its own. A token whose
//! client (`azp`, else `client_id` of RFC 9068; both present must agree) is
//! one of `web.archive_clients` speaks for that service, not for a person:
//! [`OidcVerifier::verify_client`] accepts it when it passes every check
//! above except the role and `oidc.authorized_party`, and names no opptak
//! role at all; [`OidcVerifier::verify`] refuses it
//! ([`TokenError::ArchiveClient`]), so it reaches no staff route, and
//! `verify_client` refuses every other token
//! ([`TokenError::NotArchiveClient`]).
//!
//! The user id is the user claim as is (no prefix), so an advisor signed in
//! through the provider is the same person as the advisor id on the calls;
//! point `oidc.user_claim` at a stable employee-id claim if `sub` differs
//! from it.
//!
//! Keys are fetched lazily and cached. A token naming an unknown `kid`
//! triggers one refetch (the provider rotated its keys), at most once per
//! [`REFETCH_INTERVAL`], so tokens with made-up kids cannot make opptak
//! hammer the provider; after a failed fetch the next try waits
//! [`RETRY_AFTER_FAILURE`]. The set is also refreshed when older than
//! [`KEYS_MAX_AGE`], so retired keys stop being accepted. A provider that
//! cannot be reached is [`TokenError::Unavailable`] (503), never "invalid
//! token": the token may well be good. If a refresh fails while cached keys
//! exist, the cached keys go on being used.
//!
//! Nothing here logs or returns the token: [`TokenError`]'s messages are
//! fixed strings (plus a sanitized algorithm name) and safe for the audit log.

use crate::config::OidcSection;
use crate::identity::{Role, User};
use anyhow::{bail, Context};
use axum::http::StatusCode;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, KeyOperations, PublicKeyUse};
use jsonwebtoken::{DecodingKey, Validation};
use opptak_domain::time::Clock;
use serde_json::{Map, Value};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Longer tokens are refused before any decoding (real access tokens are a
/// few KiB; this bounds the work an unauthenticated request can cause).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// An unknown `kid` refetches the key set at most this often.
pub const REFETCH_INTERVAL: Duration = Duration::from_secs(30);
/// After a failed fetch, requests fail fast for this long before the next try.
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(5);
/// Cached keys older than this are refreshed on the next token.
pub const KEYS_MAX_AGE: Duration = Duration::from_secs(3600);
/// A discovery document or key set larger than this is refused.
const MAX_DOCUMENT_BYTES: usize = 1 << 20;
/// Ids, names and teams from the token longer than this are refused or cut.
const MAX_ID_BYTES: usize = 255;
const MAX_TEXT_CHARS: usize = 200;

fn us(d: Duration) -> i64 {
    d.as_micros() as i64
}

/// A JWS algorithm opptak can verify (all asymmetric by construction).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    Rs256,
    Rs384,
    Rs512,
    Ps256,
    Ps384,
    Ps512,
    Es256,
    Es384,
    EdDsa,
}

impl Algorithm {
    pub const ALL: [Algorithm; 9] = [
        Algorithm::Rs256,
        Algorithm::Rs384,
        Algorithm::Rs512,
        Algorithm::Ps256,
        Algorithm::Ps384,
        Algorithm::Ps512,
        Algorithm::Es256,
        Algorithm::Es384,
        Algorithm::EdDsa,
    ];

    /// The JWS name (`RS256`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Rs256 => "RS256",
            Algorithm::Rs384 => "RS384",
            Algorithm::Rs512 => "RS512",
            Algorithm::Ps256 => "PS256",
            Algorithm::Ps384 => "PS384",
            Algorithm::Ps512 => "PS512",
            Algorithm::Es256 => "ES256",
            Algorithm::Es384 => "ES384",
            Algorithm::EdDsa => "EdDSA",
        }
    }

    pub fn parse(name: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|a| a.as_str() == name)
    }

    /// The same algorithm in `jsonwebtoken`, whose enum also has the HS*
    /// ones that this type cannot name.
    fn jwt(self) -> jsonwebtoken::Algorithm {
        use jsonwebtoken::Algorithm as J;
        match self {
            Algorithm::Rs256 => J::RS256,
            Algorithm::Rs384 => J::RS384,
            Algorithm::Rs512 => J::RS512,
            Algorithm::Ps256 => J::PS256,
            Algorithm::Ps384 => J::PS384,
            Algorithm::Ps512 => J::PS512,
            Algorithm::Es256 => J::ES256,
            Algorithm::Es384 => J::ES384,
            Algorithm::EdDsa => J::EdDSA,
        }
    }

    fn fits(self, kind: KeyKind) -> bool {
        use Algorithm::*;
        matches!(
            (self, kind),
            (Rs256 | Rs384 | Rs512 | Ps256 | Ps384 | Ps512, KeyKind::Rsa)
                | (Es256, KeyKind::P256)
                | (Es384, KeyKind::P384)
                | (EdDsa, KeyKind::Ed25519)
        )
    }
}

/// Why a token was refused. `Display` is a short, fixed text safe to log and
/// audit (it never contains the token); [`TokenError::reason`] is a stable code.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a well-formed compact JWS, or a claim of the wrong shape.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// `none`, HS*, unknown, not configured, or not matching the key's type.
    #[error("unsupported algorithm {0}")]
    UnsupportedAlgorithm(String),
    /// No published key has the token's `kid` (even after a refetch).
    #[error("unknown signing key")]
    UnknownKey,
    #[error("bad signature")]
    BadSignature,
    #[error("token expired")]
    Expired,
    /// `nbf` or `iat` in the future (beyond the leeway).
    #[error("token not yet valid")]
    NotYetValid,
    #[error("wrong issuer")]
    WrongIssuer,
    #[error("wrong audience")]
    WrongAudience,
    /// The header's `typ` is not `oidc.token_type`.
    #[error("wrong token type")]
    WrongTokenType,
    /// The `azp` claim is not `oidc.authorized_party`.
    #[error("wrong authorized party")]
    WrongAuthorizedParty,
    /// The roles claim names no opptak role.
    #[error("no opptak role in token")]
    MissingRole,
    /// The roles claim names more than one opptak role (see the module docs).
    #[error("more than one opptak role in token")]
    ConflictingRoles,
    /// The identity provider's keys could not be fetched: the token was not judged.
    #[error("identity provider unavailable")]
    Unavailable,
    /// An archive client's token on a staff route.
    #[error("an archive client reaches no staff route")]
    ArchiveClient,
    /// A token of a person or another client on the customer archive.
    #[error("not an archive client")]
    NotArchiveClient,
    /// An archive client's token naming an opptak role: a person's rights
    /// given to a service, refused everywhere.
    #[error("an archive client's token names an opptak role")]
    RoleOnArchiveClient,
}

impl TokenError {
    /// 503 when the provider could not be asked, 403 for a valid token on
    /// routes not its own, 401 for every other refused token.
    pub fn status(&self) -> StatusCode {
        match self {
            TokenError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            TokenError::ArchiveClient | TokenError::NotArchiveClient | TokenError::RoleOnArchiveClient => {
                StatusCode::FORBIDDEN
            }
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    /// A stable, machine-readable code for the audit log's reason.
    pub fn reason(&self) -> &'static str {
        match self {
            TokenError::Malformed(_) => "malformed",
            TokenError::UnsupportedAlgorithm(_) => "unsupported_algorithm",
            TokenError::UnknownKey => "unknown_key",
            TokenError::BadSignature => "bad_signature",
            TokenError::Expired => "expired",
            TokenError::NotYetValid => "not_yet_valid",
            TokenError::WrongIssuer => "wrong_issuer",
            TokenError::WrongAudience => "wrong_audience",
            TokenError::WrongTokenType => "wrong_token_type",
            TokenError::WrongAuthorizedParty => "wrong_authorized_party",
            TokenError::MissingRole => "missing_role",
            TokenError::ConflictingRoles => "conflicting_roles",
            TokenError::Unavailable => "unavailable",
            TokenError::ArchiveClient => "archive_client",
            TokenError::NotArchiveClient => "not_archive_client",
            TokenError::RoleOnArchiveClient => "role_on_archive_client",
        }
    }

    /// The `WWW-Authenticate` value for a 401 or 403 (RFC 6750); none for a 503.
    pub fn www_authenticate(&self) -> Option<&'static str> {
        match self {
            TokenError::Unavailable => None,
            e if e.status() == StatusCode::FORBIDDEN => Some("Bearer realm=\"opptak\", error=\"insufficient_scope\""),
            _ => Some("Bearer realm=\"opptak\", error=\"invalid_token\""),
        }
    }

    /// The attacker chooses `alg`: keep only a short printable prefix of it.
    fn algorithm(name: &str) -> Self {
        let clean: String = name
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .take(16)
            .collect();
        TokenError::UnsupportedAlgorithm(if clean.is_empty() { "(empty)".into() } else { clean })
    }
}

/// Who a verified token speaks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub user: User,
    /// The token's `exp` in microseconds since the epoch: nothing built on
    /// the token (a cache entry, a session) may outlive it.
    pub expires_at_us: i64,
    /// The token's `jti`, if any, to name the token in the audit log.
    pub token_id: Option<String>,
}

/// A service client speaking for itself (client credentials): an archive
/// client of `web.archive_clients`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientPrincipal {
    /// The token's `azp` (or `client_id`).
    pub client_id: String,
    pub expires_at_us: i64,
    pub token_id: Option<String>,
}

impl ClientPrincipal {
    /// The name the audit log records: `client:<id>`, apart from people.
    pub fn actor(&self) -> String {
        format!("client:{}", self.client_id)
    }
}

impl From<Principal> for User {
    fn from(p: Principal) -> User {
        p.user
    }
}

/// `oidc.*` checked and parsed once.
#[derive(Clone, Debug)]
struct Settings {
    issuer: String,
    audience: String,
    jwks_url: Option<String>,
    user_claim: String,
    roles_claim: String,
    team_claim: String,
    name_claim: String,
    leeway_us: i64,
    algorithms: Vec<Algorithm>,
    timeout: Duration,
    /// `typ` required, lower case without `application/`; `None`: not checked.
    token_type: Option<String>,
    azp: Option<String>,
}

/// A `typ` value as compared: lower case, without `application/` (RFC 7515
/// section 4.1.9 lets a media type drop it).
fn media_type(typ: &str) -> String {
    let t = typ.trim().to_ascii_lowercase();
    t.strip_prefix("application/").map(str::to_owned).unwrap_or(t)
}

/// `https://`, or `http://` to this machine only (tests, a local provider).
fn check_url(key: &str, value: &str) -> anyhow::Result<()> {
    let url = reqwest::Url::parse(value).with_context(|| format!("oidc.{key} = {value:?}: not a URL"))?;
    let loopback = url.host_str().is_some_and(|h| {
        let h = h.trim_start_matches('[').trim_end_matches(']');
        h == "localhost" || h.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
    });
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => bail!("oidc.{key} = {value:?}: expected an https:// URL (http:// only to a loopback address)"),
    }
    if url.query().is_some() || url.fragment().is_some() {
        bail!("oidc.{key} = {value:?}: no query or fragment allowed");
    }
    Ok(())
}

fn settings(c: &OidcSection) -> anyhow::Result<Settings> {
    check_url("issuer", &c.issuer)?;
    if !c.jwks_url.is_empty() {
        check_url("jwks_url", &c.jwks_url)?;
    }
    if c.audience.trim().is_empty() {
        bail!("oidc.audience is required: this API's identifier at the identity provider");
    }
    for (key, value) in [
        ("user_claim", &c.user_claim),
        ("roles_claim", &c.roles_claim),
        ("team_claim", &c.team_claim),
        ("name_claim", &c.name_claim),
    ] {
        if value.trim().is_empty() {
            bail!("oidc.{key} must name a claim");
        }
    }
    if c.leeway_s > 600 {
        bail!(
            "oidc.leeway_s = {}: expected 0..=600 (more makes expiry meaningless)",
            c.leeway_s
        );
    }
    if !(100..=60_000).contains(&c.fetch_timeout_ms) {
        bail!("oidc.fetch_timeout_ms = {}: expected 100..=60000", c.fetch_timeout_ms);
    }
    if c.algorithms.is_empty() {
        bail!("oidc.algorithms is empty: expected e.g. [\"RS256\", \"ES256\"]");
    }
    let mut algorithms = Vec::new();
    for name in &c.algorithms {
        if name.eq_ignore_ascii_case("none") || name.to_ascii_uppercase().starts_with("HS") {
            bail!(
                "oidc.algorithms: {name:?} is refused: unsigned and shared-secret tokens are open to \
                 forgery (algorithm confusion); use RS256, PS256, ES256 or EdDSA"
            );
        }
        let Some(alg) = Algorithm::parse(name) else {
            let known: Vec<&str> = Algorithm::ALL.iter().map(|a| a.as_str()).collect();
            bail!(
                "oidc.algorithms: unknown algorithm {name:?}: one of {}",
                known.join(", ")
            );
        };
        if !algorithms.contains(&alg) {
            algorithms.push(alg);
        }
    }
    Ok(Settings {
        issuer: c.issuer.clone(),
        audience: c.audience.clone(),
        jwks_url: (!c.jwks_url.is_empty()).then(|| c.jwks_url.clone()),
        user_claim: c.user_claim.clone(),
        roles_claim: c.roles_claim.clone(),
        team_claim: c.team_claim.clone(),
        name_claim: c.name_claim.clone(),
        leeway_us: c.leeway_s as i64 * 1_000_000,
        algorithms,
        timeout: Duration::from_millis(c.fetch_timeout_ms),
        token_type: (!c.token_type.trim().is_empty()).then(|| media_type(&c.token_type)),
        azp: (!c.authorized_party.trim().is_empty()).then(|| c.authorized_party.trim().to_owned()),
    })
}

/// Checks an `[oidc]` section (called by `Config::validate`).
pub fn check_config(c: &OidcSection) -> anyhow::Result<()> {
    settings(c).map(|_| ())
}

/// Checks `web.archive_clients` against `[oidc]` (called by `Config::validate`).
pub fn check_archive_clients(clients: &[String], oidc: Option<&OidcSection>) -> anyhow::Result<()> {
    if clients.is_empty() {
        return Ok(());
    }
    let Some(oidc) = oidc else {
        bail!(
            "web.archive_clients is set but [oidc] is not: archive clients sign in with the identity provider's tokens"
        );
    };
    for c in clients {
        if c.trim().is_empty() || c.len() > MAX_ID_BYTES || c.chars().any(|ch| ch.is_control() || ch.is_whitespace()) {
            bail!("web.archive_clients: {c:?} is not a client id");
        }
        if *c == oidc.authorized_party.trim() {
            bail!("web.archive_clients: {c:?} is also oidc.authorized_party, the staff application's client");
        }
    }
    Ok(())
}

/// What a JWKS key is, for matching it to an algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    P256,
    P384,
    Ed25519,
}

#[derive(Clone)]
struct Jwk {
    kid: String,
    /// The key's own `alg`, when the provider pins one.
    alg: Option<String>,
    kind: KeyKind,
    key: DecodingKey,
}

impl Jwk {
    /// A verification key from one JWKS entry; None for keys opptak cannot
    /// or must not use (encryption keys, shared secrets, unknown types or
    /// curves, short RSA moduli, points of the wrong size).
    fn parse(v: &Value) -> Option<Jwk> {
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(v.clone()).ok()?;
        let common = &jwk.common;
        let kid = common.key_id.clone()?;
        if common
            .public_key_use
            .as_ref()
            .is_some_and(|u| *u != PublicKeyUse::Signature)
        {
            return None;
        }
        if common
            .key_operations
            .as_ref()
            .is_some_and(|ops| !ops.contains(&KeyOperations::Verify))
        {
            return None;
        }
        let bytes = |x: &str| URL_SAFE_NO_PAD.decode(x).ok();
        let (kind, key) = match &jwk.algorithm {
            AlgorithmParameters::RSA(p) => {
                // ring wants no leading zero bytes, which some providers publish.
                let unsigned = |mut x: Vec<u8>| {
                    let zeros = x.iter().take_while(|b| **b == 0).count();
                    x.drain(..zeros);
                    x
                };
                let n = unsigned(bytes(&p.n)?);
                let e = unsigned(bytes(&p.e)?);
                let bits = n.len() * 8 - n.first().map_or(8, |b| b.leading_zeros() as usize);
                if bits < 2048 || e.is_empty() {
                    return None;
                }
                (KeyKind::Rsa, DecodingKey::from_rsa_raw_components(&n, &e))
            }
            AlgorithmParameters::EllipticCurve(p) => {
                let (kind, size) = match p.curve {
                    EllipticCurve::P256 => (KeyKind::P256, 32),
                    EllipticCurve::P384 => (KeyKind::P384, 48),
                    _ => return None,
                };
                if bytes(&p.x)?.len() != size || bytes(&p.y)?.len() != size {
                    return None;
                }
                (kind, DecodingKey::from_jwk(&jwk).ok()?)
            }
            AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
                if bytes(&p.x)?.len() != 32 {
                    return None;
                }
                (KeyKind::Ed25519, DecodingKey::from_jwk(&jwk).ok()?)
            }
            // `oct` keys are shared secrets: HS*, never accepted.
            _ => return None,
        };
        Some(Jwk {
            kid,
            alg: common.key_algorithm.map(|a| a.to_string()),
            kind,
            key,
        })
    }
}

/// The provider's keys as last fetched.
#[derive(Default)]
struct KeySet {
    keys: Vec<Jwk>,
    /// None: never fetched.
    fetched_at_us: Option<i64>,
}

impl KeySet {
    fn fresh(&self, now_us: i64) -> bool {
        self.fetched_at_us.is_some_and(|t| now_us - t < us(KEYS_MAX_AGE))
    }

    /// The key for `kid` that fits `alg`; Err when none does.
    fn select(&self, kid: &str, alg: Algorithm) -> Result<Jwk, TokenError> {
        let mut named = self.keys.iter().filter(|k| k.kid == kid).peekable();
        if named.peek().is_none() {
            return Err(TokenError::UnknownKey);
        }
        named
            .find(|k| alg.fits(k.kind) && k.alg.as_deref().is_none_or(|a| a == alg.as_str()))
            .cloned()
            .ok_or_else(|| TokenError::algorithm(alg.as_str()))
    }
}

#[derive(Debug, Default)]
struct FetchState {
    /// From the configuration, or discovered once.
    jwks_url: Option<String>,
    last_attempt_us: Option<i64>,
    last_failed: bool,
}

/// Verifies the identity provider's bearer tokens. One per process: it owns
/// the key cache. Cheap to share behind an `Arc`.
pub struct OidcVerifier {
    settings: Settings,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    keys: RwLock<Arc<KeySet>>,
    /// Held while fetching, so concurrent requests with an unknown `kid`
    /// cause one fetch, not one each.
    fetch: tokio::sync::Mutex<FetchState>,
    /// `web.archive_clients`.
    archive_clients: Vec<String>,
}

impl std::fmt::Debug for OidcVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcVerifier")
            .field("issuer", &self.settings.issuer)
            .field("audience", &self.settings.audience)
            .finish_non_exhaustive()
    }
}

impl OidcVerifier {
    /// A verifier for `config`; fetches nothing until the first token (or
    /// [`OidcVerifier::refresh`]). `clock` decides expiry and the refetch
    /// intervals. Per-request timeouts come from `oidc.fetch_timeout_ms`.
    pub fn new(config: &OidcSection, http: reqwest::Client, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let settings = settings(config)?;
        Ok(Self {
            fetch: tokio::sync::Mutex::new(FetchState {
                jwks_url: settings.jwks_url.clone(),
                ..FetchState::default()
            }),
            settings,
            http,
            clock,
            keys: RwLock::new(Arc::new(KeySet::default())),
            archive_clients: Vec::new(),
        })
    }

    /// The clients whose tokens read the customer archive
    /// ([`OidcVerifier::verify_client`]) and reach no staff route.
    pub fn with_archive_clients(mut self, clients: &[String]) -> Self {
        self.archive_clients = clients.to_vec();
        self
    }

    /// The configured issuer.
    pub fn issuer(&self) -> &str {
        &self.settings.issuer
    }

    /// Fetches the key set now, whatever the cache holds (start-up check,
    /// health probe); the number of usable keys.
    pub async fn refresh(&self) -> Result<usize, TokenError> {
        let mut state = self.fetch.lock().await;
        state.last_attempt_us = Some(self.clock.now_us());
        match self.fetch_keys(&mut state).await {
            Ok(set) => {
                state.last_failed = false;
                let n = set.keys.len();
                self.install(set);
                Ok(n)
            }
            Err(e) => {
                state.last_failed = true;
                tracing::warn!(issuer = %self.settings.issuer, error = %e, "identity provider keys unavailable");
                Err(TokenError::Unavailable)
            }
        }
    }

    /// Verifies a person's bearer token (without the `Bearer ` prefix).
    pub async fn verify(&self, token: &str) -> Result<Principal, TokenError> {
        let claims = self.signed_claims(token).await?;
        if self.archive_client(&claims)?.is_some() {
            self.check_common(&claims)?;
            return Err(TokenError::ArchiveClient);
        }
        self.check_claims(&claims)
    }

    /// Verifies an archive client's bearer token: every check of
    /// [`OidcVerifier::verify`] but the person's (role, user, and
    /// `oidc.authorized_party`); the client must be one of
    /// `web.archive_clients` and the token name no opptak role.
    pub async fn verify_client(&self, token: &str) -> Result<ClientPrincipal, TokenError> {
        let claims = self.signed_claims(token).await?;
        let exp = self.check_common(&claims)?;
        let Some(client_id) = self.archive_client(&claims)? else {
            return Err(TokenError::NotArchiveClient);
        };
        match role(lookup(&claims, &self.settings.roles_claim)) {
            Err(TokenError::MissingRole) => {}
            _ => return Err(TokenError::RoleOnArchiveClient),
        }
        Ok(ClientPrincipal {
            client_id,
            expires_at_us: exp,
            token_id: token_id(&claims),
        })
    }

    /// The token's client when it is one of `web.archive_clients`.
    fn archive_client(&self, claims: &Map<String, Value>) -> Result<Option<String>, TokenError> {
        if self.archive_clients.is_empty() {
            return Ok(None);
        }
        let text = |name: &str| match claims.get(name) {
            None => Ok(None),
            Some(Value::String(v)) => Ok(Some(v.as_str())),
            Some(_) => Err(TokenError::Malformed("azp or client_id is not a string")),
        };
        let client = match (text("azp")?, text("client_id")?) {
            (Some(a), Some(c)) if a != c => return Err(TokenError::Malformed("azp and client_id differ")),
            (Some(a), _) => a,
            (None, Some(c)) => c,
            (None, None) => return Ok(None),
        };
        Ok(self
            .archive_clients
            .iter()
            .any(|c| c == client)
            .then(|| client.to_owned()))
    }

    /// The token's signature (against the provider's key chosen by `kid`
    /// and a configured algorithm) and shape; its claims, not yet checked.
    async fn signed_claims(&self, token: &str) -> Result<Map<String, Value>, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Malformed("token too large"));
        }
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(TokenError::Malformed("not a compact JWS (three dot-separated parts)"));
        };
        let decode = |x: &str, what: &'static str| URL_SAFE_NO_PAD.decode(x).map_err(|_| TokenError::Malformed(what));
        let header: Map<String, Value> = serde_json::from_slice(&decode(h, "header is not base64url")?)
            .map_err(|_| TokenError::Malformed("header is not a JSON object with alg"))?;
        let Some(Value::String(alg)) = header.get("alg") else {
            return Err(TokenError::Malformed("header is not a JSON object with alg"));
        };
        // Decoded again by jsonwebtoken; decoding here gives each part its
        // reason and refuses them before any key is fetched.
        decode(p, "claims are not base64url")?;
        decode(s, "signature is not base64url")?;

        let alg = Algorithm::parse(alg)
            .filter(|a| self.settings.algorithms.contains(a))
            .ok_or_else(|| TokenError::algorithm(alg))?;
        if header.contains_key("crit") {
            return Err(TokenError::Malformed("critical header extensions are not supported"));
        }
        if let Some(want) = &self.settings.token_type {
            match header.get("typ") {
                Some(Value::String(typ)) if media_type(typ) == *want => {}
                _ => return Err(TokenError::WrongTokenType),
            }
        }
        let kid = match header.get("kid") {
            Some(Value::String(kid)) => kid,
            Some(_) => return Err(TokenError::Malformed("kid is not a string")),
            None => return Err(TokenError::Malformed("no kid in header")),
        };
        // The header as jsonwebtoken reads it (typed `typ`, `x5c`, ...), here
        // so that a header it refuses costs no fetch.
        jsonwebtoken::decode_header(token)
            .map_err(|_| TokenError::Malformed("header has a field of the wrong type"))?;
        let key = self.key(kid, alg).await?;
        // Only the signature, against the algorithm and key chosen above:
        // the claims are checked below, on `self.clock`.
        let mut only_signature = Validation::new(alg.jwt());
        only_signature.required_spec_claims.clear();
        only_signature.validate_exp = false;
        only_signature.validate_nbf = false;
        only_signature.validate_aud = false;
        Ok(
            jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &only_signature)
                .map_err(|e| refusal(e.kind(), alg))?
                .claims,
        )
    }

    /// Issuer, audience and time claims, which every token must pass; the
    /// token's `exp`.
    fn check_common(&self, claims: &Map<String, Value>) -> Result<i64, TokenError> {
        let s = &self.settings;
        if claims.get("iss").and_then(Value::as_str) != Some(s.issuer.as_str()) {
            return Err(TokenError::WrongIssuer);
        }
        let audience_ok = match claims.get("aud") {
            Some(Value::String(a)) => *a == s.audience,
            Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(s.audience.as_str())),
            _ => false,
        };
        if !audience_ok {
            return Err(TokenError::WrongAudience);
        }
        let now = self.clock.now_us();
        let exp = numeric_date(claims, "exp")?.ok_or(TokenError::Malformed("no exp claim"))?;
        if now >= exp.saturating_add(s.leeway_us) {
            return Err(TokenError::Expired);
        }
        for name in ["nbf", "iat"] {
            if let Some(t) = numeric_date(claims, name)? {
                if t > now.saturating_add(s.leeway_us) {
                    return Err(TokenError::NotYetValid);
                }
            }
        }
        Ok(exp)
    }

    fn check_claims(&self, claims: &Map<String, Value>) -> Result<Principal, TokenError> {
        let s = &self.settings;
        let exp = self.check_common(claims)?;
        if let Some(want) = &s.azp {
            if claims.get("azp").and_then(Value::as_str) != Some(want.as_str()) {
                return Err(TokenError::WrongAuthorizedParty);
            }
        }

        let user_id = match lookup(claims, &s.user_claim) {
            Some(Value::String(id)) => id.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err(TokenError::Malformed("no user id claim")),
        };
        if user_id.is_empty()
            || user_id.len() > MAX_ID_BYTES
            || user_id.chars().any(|c| c.is_control() || c.is_whitespace())
        {
            return Err(TokenError::Malformed("unusable user id claim"));
        }
        let role = role(lookup(claims, &s.roles_claim))?;
        let text = |name: &str| {
            lookup(claims, name)
                .and_then(Value::as_str)
                .map(|v| {
                    v.chars()
                        .filter(|c| !c.is_control())
                        .take(MAX_TEXT_CHARS)
                        .collect::<String>()
                })
                .filter(|v| !v.trim().is_empty())
        };
        Ok(Principal {
            user: User {
                display_name: text(&s.name_claim).unwrap_or_else(|| user_id.clone()),
                team: text(&s.team_claim).unwrap_or_default(),
                user_id,
                role,
                source: crate::identity::Source::Oidc,
            },
            expires_at_us: exp,
            token_id: token_id(claims),
        })
    }

    fn current(&self) -> Arc<KeySet> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn install(&self, set: KeySet) {
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
    }

    /// The key for `kid`, from the cache or, when it is stale or lacks the
    /// kid, from one (rate-limited) fetch.
    async fn key(&self, kid: &str, alg: Algorithm) -> Result<Jwk, TokenError> {
        let cached = self.current();
        if cached.fresh(self.clock.now_us()) {
            match cached.select(kid, alg) {
                Err(TokenError::UnknownKey) => {}
                done => return done,
            }
        }
        let mut state = self.fetch.lock().await;
        let now = self.clock.now_us();
        // Another request may have fetched while this one waited.
        let cached = self.current();
        if cached.fresh(now) {
            match cached.select(kid, alg) {
                Err(TokenError::UnknownKey) => {}
                done => return done,
            }
        }
        let wait = us(if state.last_failed {
            RETRY_AFTER_FAILURE
        } else {
            REFETCH_INTERVAL
        });
        let throttled = state.last_attempt_us.is_some_and(|t| now - t < wait);
        let failed = if throttled {
            state.last_failed
        } else {
            state.last_attempt_us = Some(now);
            match self.fetch_keys(&mut state).await {
                Ok(set) => {
                    state.last_failed = false;
                    tracing::info!(issuer = %self.settings.issuer, keys = set.keys.len(), "identity provider keys fetched");
                    self.install(set);
                    false
                }
                Err(e) => {
                    state.last_failed = true;
                    tracing::warn!(issuer = %self.settings.issuer, error = %e, "identity provider keys unavailable");
                    true
                }
            }
        };
        // After a failure, keys fetched earlier still count: they were the
        // provider's. A kid they lack could not be checked, which is not
        // the token's fault.
        match self.current().select(kid, alg) {
            Err(TokenError::UnknownKey) if failed => Err(TokenError::Unavailable),
            other => other,
        }
    }

    /// One fetch of the key set (after discovery, the first time, when no
    /// `jwks_url` is configured). Errors are for the log, never the client.
    async fn fetch_keys(&self, state: &mut FetchState) -> anyhow::Result<KeySet> {
        let url = match &state.jwks_url {
            Some(url) => url.clone(),
            None => {
                let url = self.discover().await?;
                state.jwks_url = Some(url.clone());
                url
            }
        };
        let doc = self.get_json(&url).await.context("fetching the JWK set")?;
        let Some(entries) = doc.get("keys").and_then(Value::as_array) else {
            bail!("{url} is not a JWK set (no keys array)");
        };
        let keys: Vec<Jwk> = entries.iter().filter_map(Jwk::parse).collect();
        if keys.len() < entries.len() {
            tracing::debug!(url = %url, skipped = entries.len() - keys.len(), "skipped JWK set entries opptak cannot use to verify");
        }
        Ok(KeySet {
            keys,
            fetched_at_us: Some(self.clock.now_us()),
        })
    }

    /// `jwks_uri` from the provider's discovery document, whose `issuer` must
    /// be ours (OpenID Connect Discovery 1.0 section 4.3).
    async fn discover(&self) -> anyhow::Result<String> {
        let issuer = &self.settings.issuer;
        let url = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
        let doc = self.get_json(&url).await.context("fetching the discovery document")?;
        if doc.get("issuer").and_then(Value::as_str) != Some(issuer.as_str()) {
            bail!("{url} names another issuer than oidc.issuer {issuer:?}");
        }
        let jwks = doc
            .get("jwks_uri")
            .and_then(Value::as_str)
            .with_context(|| format!("{url} has no jwks_uri"))?;
        check_url("jwks_url (discovered)", jwks)?;
        Ok(jwks.to_owned())
    }

    async fn get_json(&self, url: &str) -> anyhow::Result<Value> {
        let mut resp = self
            .http
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(self.settings.timeout)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        if !resp.status().is_success() {
            bail!("GET {url}: status {}", resp.status());
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.with_context(|| format!("GET {url}"))? {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                bail!("GET {url}: larger than {MAX_DOCUMENT_BYTES} bytes");
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).with_context(|| format!("GET {url}: not JSON"))
    }
}

/// jsonwebtoken's refusal as a [`TokenError`]. The shape, `alg` and key
/// were checked before (with their own reasons) and its claim checks are
/// off, so in practice it is the signature or the claims' JSON; the rest
/// keeps the variant opptak's own check gives for the same fault.
fn refusal(kind: &ErrorKind, alg: Algorithm) -> TokenError {
    match kind {
        // ring refusing the key itself (a point off the curve, say) means the
        // published key cannot have made this signature either.
        ErrorKind::InvalidSignature
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat
        | ErrorKind::Crypto(_) => TokenError::BadSignature,
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm | ErrorKind::InvalidAlgorithmName => {
            TokenError::algorithm(alg.as_str())
        }
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
        ErrorKind::InvalidAudience => TokenError::WrongAudience,
        ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
            "iss" => TokenError::WrongIssuer,
            "aud" => TokenError::WrongAudience,
            "exp" => TokenError::Malformed("no exp claim"),
            _ => TokenError::Malformed("a required claim is missing"),
        },
        ErrorKind::InvalidSubject => TokenError::Malformed("unusable user id claim"),
        ErrorKind::InvalidToken => TokenError::Malformed("not a compact JWS (three dot-separated parts)"),
        ErrorKind::Base64(_) => TokenError::Malformed("token is not base64url"),
        ErrorKind::Json(_) | ErrorKind::Utf8(_) => TokenError::Malformed("claims are not a JSON object"),
        // Signing only, and kinds added later (the enum is non-exhaustive).
        _ => TokenError::Malformed("refused by the JWT library"),
    }
}

/// The token's `jti`, printable and bounded, to name it in the audit log.
fn token_id(claims: &Map<String, Value>) -> Option<String> {
    claims
        .get("jti")
        .and_then(Value::as_str)
        .map(|j| j.chars().filter(|c| !c.is_control()).take(MAX_TEXT_CHARS).collect())
}

/// A NumericDate claim in microseconds (seconds, possibly fractional).
fn numeric_date(claims: &Map<String, Value>, name: &'static str) -> Result<Option<i64>, TokenError> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => match v.as_f64() {
            Some(secs) if secs.is_finite() && secs.abs() < 1e12 => Ok(Some((secs * 1e6) as i64)),
            _ => Err(TokenError::Malformed(match name {
                "exp" => "exp is not a number",
                "nbf" => "nbf is not a number",
                _ => "iat is not a number",
            })),
        },
    }
}

/// A claim by name, or by dotted path into nested objects
/// (`realm_access.roles`) when no top-level claim has the whole name.
fn lookup<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(name) {
        return Some(v);
    }
    let mut parts = name.split('.');
    let mut v = claims.get(parts.next()?)?;
    for part in parts {
        v = v.get(part)?;
    }
    Some(v)
}

/// Exactly one distinct opptak role among the claim's values.
fn role(claim: Option<&Value>) -> Result<Role, TokenError> {
    let values: Vec<&str> = match claim {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let mut found: Option<Role> = None;
    for role in values.into_iter().filter_map(|v| Role::parse(v).ok()) {
        match found {
            Some(r) if r != role => return Err(TokenError::ConflictingRoles),
            _ => found = Some(role),
        }
    }
    found.ok_or(TokenError::MissingRole)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn section() -> OidcSection {
        toml::from_str(
            r#"
            issuer = "https://idp.example/realms/bank"
            audience = "opptak-review"
            "#,
        )
        .unwrap()
    }

    #[test]
    fn defaults_and_refused_settings() {
        let s = settings(&section()).unwrap();
        assert_eq!(s.algorithms, vec![Algorithm::Rs256, Algorithm::Es256]);
        assert_eq!(s.leeway_us, 60_000_000);
        assert_eq!(s.user_claim, "sub");
        let refused = |f: &dyn Fn(&mut OidcSection), needle: &str| {
            let mut c = section();
            f(&mut c);
            let e = format!("{:#}", settings(&c).unwrap_err());
            assert!(e.contains(needle), "{e}");
        };
        refused(&|c| c.algorithms = vec!["HS256".into()], "algorithm confusion");
        refused(&|c| c.algorithms = vec!["none".into()], "algorithm confusion");
        refused(&|c| c.algorithms = vec!["RS1".into()], "unknown algorithm");
        refused(&|c| c.algorithms = vec![], "empty");
        refused(&|c| c.issuer = "http://idp.example".into(), "https://");
        refused(&|c| c.issuer = "idp".into(), "not a URL");
        refused(&|c| c.jwks_url = "http://10.0.0.1/jwks".into(), "loopback");
        refused(&|c| c.audience = " ".into(), "audience");
        refused(&|c| c.leeway_s = 3600, "leeway_s");
        refused(&|c| c.roles_claim = String::new(), "roles_claim");
        refused(&|c| c.fetch_timeout_ms = 0, "fetch_timeout_ms");
        let mut c = section();
        c.issuer = "http://127.0.0.1:9000/realms/x".into();
        settings(&c).unwrap();
    }

    #[test]
    fn archive_clients_need_oidc_and_are_not_the_staff_client() {
        let clients = |v: &[&str]| v.iter().map(|c| c.to_string()).collect::<Vec<_>>();
        check_archive_clients(&[], None).unwrap();
        let e = check_archive_clients(&clients(&["nettbank"]), None).unwrap_err();
        assert!(format!("{e:#}").contains("[oidc]"), "{e:#}");
        let mut c = section();
        check_archive_clients(&clients(&["nettbank"]), Some(&c)).unwrap();
        for bad in ["", "net bank", "nett\nbank"] {
            assert!(check_archive_clients(&clients(&[bad]), Some(&c)).is_err(), "{bad:?}");
        }
        c.authorized_party = "nettbank".into();
        let e = check_archive_clients(&clients(&["nettbank"]), Some(&c)).unwrap_err();
        assert!(format!("{e:#}").contains("authorized_party"), "{e:#}");
        assert_eq!(TokenError::NotArchiveClient.status(), StatusCode::FORBIDDEN);
        assert!(TokenError::ArchiveClient
            .www_authenticate()
            .is_some_and(|v| v.contains("insufficient_scope")));
    }

    #[test]
    fn roles_need_exactly_one_opptak_role() {
        assert_eq!(role(Some(&json!("team-lead"))), Ok(Role::TeamLead));
        assert_eq!(role(Some(&json!(["offline_access", "qa", "qa"]))), Ok(Role::Qa));
        assert_eq!(
            role(Some(&json!(["advisor", "admin"]))),
            Err(TokenError::ConflictingRoles)
        );
        assert_eq!(role(Some(&json!(["operator"]))), Err(TokenError::MissingRole));
        assert_eq!(role(Some(&json!(7))), Err(TokenError::MissingRole));
        assert_eq!(role(None), Err(TokenError::MissingRole));
    }

    #[test]
    fn dotted_claims_reach_nested_objects() {
        let claims = json!({"realm_access": {"roles": ["auditor"]}, "a.b": 1});
        let claims = claims.as_object().unwrap();
        assert_eq!(lookup(claims, "realm_access.roles"), Some(&json!(["auditor"])));
        assert_eq!(lookup(claims, "a.b"), Some(&json!(1)));
        assert_eq!(lookup(claims, "realm_access.groups"), None);
    }

    #[test]
    fn only_usable_verification_keys_are_kept() {
        let b = |x: &[u8]| URL_SAFE_NO_PAD.encode(x);
        // 2048 bits after a leading zero byte, which ring would refuse.
        let rsa = json!({"kty": "RSA", "kid": "r", "alg": "RS256", "use": "sig",
            "n": b(&[&[0u8][..], &[0xc5; 256]].concat()), "e": "AQAB"});
        let key = Jwk::parse(&rsa).unwrap();
        assert_eq!(
            (key.kid.as_str(), key.kind, key.alg.as_deref()),
            ("r", KeyKind::Rsa, Some("RS256"))
        );
        assert!(Algorithm::Ps256.fits(key.kind) && !Algorithm::Es256.fits(key.kind));
        let ec = json!({"kty": "EC", "kid": "e", "crv": "P-256", "x": b(&[1; 32]), "y": b(&[2; 32])});
        assert_eq!(Jwk::parse(&ec).unwrap().kind, KeyKind::P256);
        let ed = json!({"kty": "OKP", "kid": "d", "crv": "Ed25519", "x": b(&[3; 32])});
        assert_eq!(Jwk::parse(&ed).unwrap().kind, KeyKind::Ed25519);

        let with = |base: &Value, name: &str, v: Value| {
            let mut x = base.clone();
            x[name] = v;
            x
        };
        let refused = [
            with(&rsa, "kid", Value::Null),
            with(&rsa, "use", json!("enc")),
            with(&rsa, "key_ops", json!(["encrypt"])),
            with(&rsa, "alg", json!("RSA-OAEP-384")),
            with(&rsa, "n", json!(b(&[0xc5; 255]))),
            with(&ec, "crv", json!("P-521")),
            with(&ec, "y", json!(b(&[2; 31]))),
            with(&ed, "crv", json!("X25519")),
            json!({"kty": "oct", "kid": "h", "k": b(b"shared secret")}),
        ];
        for v in &refused {
            assert!(Jwk::parse(v).is_none(), "{v}");
        }
    }

    #[test]
    fn library_refusals_keep_opptaks_variants() {
        use jsonwebtoken::errors::ErrorKind as K;
        let json = std::sync::Arc::new(serde_json::from_str::<Value>("[").unwrap_err());
        for (kind, expected) in [
            (K::InvalidSignature, TokenError::BadSignature),
            (K::InvalidEcdsaKey, TokenError::BadSignature),
            (K::InvalidAlgorithm, TokenError::UnsupportedAlgorithm("ES256".into())),
            (K::ExpiredSignature, TokenError::Expired),
            (K::ImmatureSignature, TokenError::NotYetValid),
            (K::InvalidIssuer, TokenError::WrongIssuer),
            (K::MissingRequiredClaim("aud".into()), TokenError::WrongAudience),
            (K::Json(json), TokenError::Malformed("claims are not a JSON object")),
        ] {
            assert_eq!(refusal(&kind, Algorithm::Es256), expected, "{kind:?}");
        }
    }

    #[test]
    fn errors_map_to_status_and_stay_short() {
        assert_eq!(TokenError::Unavailable.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(TokenError::Expired.status(), StatusCode::UNAUTHORIZED);
        assert!(TokenError::Unavailable.www_authenticate().is_none());
        let e = TokenError::algorithm(&format!("HS256\"\n{}", "x".repeat(1000)));
        assert_eq!(e, TokenError::UnsupportedAlgorithm("HS256xxxxxxxxxxx".into()));
        assert_eq!(e.reason(), "unsupported_algorithm");
    }
}
