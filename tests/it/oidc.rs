//! OIDC bearer-token verification (issue 6 item 4) against a real OpenID
//! provider: panva's certified `oidc-provider` run by node
//! (`tests/oidc/issuer.mjs`), issuing JWT access tokens with client
//! credentials and resource indicators. Its admin routes rotate keys,
//! simulate outages of the key endpoints and mint the tokens a provider
//! never issues (forgeries, odd claims).
//!
//! The provider is installed once from `tests/oidc/package-lock.json` with
//! `npm ci` under `$OPPTAK_TOOLS_DIR` (outside the clone). Without node the
//! tests skip, unless `OPPTAK_REQUIRE_SERVICES=1`, where they fail.

use crate::common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use opptak::config::OidcSection;
use opptak_domain::time::{Clock, ManualClock, SystemClock};
use opptak_review::identity::Role;
use opptak_review::oidc::{OidcVerifier, TokenError, MAX_TOKEN_BYTES};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt;

pub(crate) const AUDIENCE: &str = "opptak-review";
pub(crate) const API: &str = "https://opptak.test/api";
const API_ES256: &str = "https://opptak.test/api-es256";
const API_PS256: &str = "https://opptak.test/api-ps256";
const OTHER_API: &str = "https://other.test/api";
const LOCK: &str = include_str!("../oidc/package-lock.json");
const PACKAGE: &str = include_str!("../oidc/package.json");

use common::skip;

/// `node_modules` with oidc-provider, installed once per lock file.
async fn node_modules() -> Option<PathBuf> {
    static DIR: tokio::sync::OnceCell<Option<PathBuf>> = tokio::sync::OnceCell::const_new();
    DIR.get_or_init(install).await.clone()
}

async fn install() -> Option<PathBuf> {
    let node = tokio::process::Command::new("node").arg("--version").output().await;
    if !node.is_ok_and(|o| o.status.success()) {
        return skip("node is not installed");
    }
    let tools = std::env::var_os("OPPTAK_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/opptak-ci/tools"));
    let digest: String = Sha256::digest(LOCK.as_bytes())[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let dir = tools.join(format!("oidc-provider-{digest}"));
    let ready = |d: &Path| d.join("node_modules/oidc-provider/package.json").exists();
    if ready(&dir) {
        return Some(dir.join("node_modules"));
    }
    // Install beside, then rename into place: a concurrent run sees either
    // nothing or a complete install.
    std::fs::create_dir_all(&tools).unwrap();
    let staging = tools.join(format!(".oidc-provider-{digest}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&staging).unwrap();
    std::fs::write(staging.join("package.json"), PACKAGE).unwrap();
    std::fs::write(staging.join("package-lock.json"), LOCK).unwrap();
    let out = tokio::process::Command::new("npm")
        .args(["ci", "--omit=dev", "--no-audit", "--no-fund", "--ignore-scripts"])
        .current_dir(&staging)
        .output()
        .await;
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            let _ = std::fs::remove_dir_all(&staging);
            return skip(&format!("npm ci failed: {}", String::from_utf8_lossy(&o.stderr)));
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            return skip(&format!("npm is not runnable: {e}"));
        }
    }
    if std::fs::rename(&staging, &dir).is_err() {
        let _ = std::fs::remove_dir_all(&staging);
        assert!(ready(&dir), "installing oidc-provider into {}", dir.display());
    }
    Some(dir.join("node_modules"))
}

/// One running provider (two tenants, `/a` and `/b`, sharing keys); killed on drop.
pub(crate) struct Provider {
    _child: tokio::process::Child,
    base: String,
    http: reqwest::Client,
}

impl Provider {
    pub(crate) async fn start() -> Option<Provider> {
        let modules = node_modules().await?;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc/issuer.mjs");
        let mut child = tokio::process::Command::new("node")
            .arg(script)
            .arg(modules)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        tokio::time::timeout(
            Duration::from_secs(30),
            tokio::io::BufReader::new(stdout).read_line(&mut line),
        )
        .await
        .expect("the provider did not start within 30 s")
        .unwrap();
        let ready: Value = serde_json::from_str(&line).unwrap();
        Some(Provider {
            _child: child,
            base: ready["base"].as_str().unwrap().to_owned(),
            http: reqwest::Client::new(),
        })
    }

    pub(crate) fn issuer(&self, tenant: &str) -> String {
        format!("{}/{tenant}", self.base)
    }

    /// A JWT access token for `client` at `resource`, from the token endpoint.
    pub(crate) async fn token(&self, tenant: &str, client: &str, resource: &str) -> String {
        let resp: Value = self
            .http
            .post(format!("{}/token", self.issuer(tenant)))
            .basic_auth(client, Some(format!("secret-{client}")))
            .form(&[
                ("grant_type", "client_credentials"),
                ("resource", resource),
                ("scope", "api"),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        resp["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no token: {resp}"))
            .to_owned()
    }

    async fn admin(&self, route: &str, body: Option<Value>) -> Value {
        let url = format!("{}/admin/{route}", self.base);
        let req = match body {
            Some(b) => self.http.post(url).json(&b),
            None => self.http.post(url),
        };
        let resp = req.send().await.unwrap();
        assert!(resp.status().is_success(), "admin {route}: {}", resp.status());
        resp.json().await.unwrap()
    }

    /// The provider's kid for a key type (`RSA`, `EC`), newest first.
    pub(crate) async fn kid(&self, kty: &str) -> String {
        let state = self.admin("state", None).await;
        state["kids"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kty"] == kty)
            .unwrap()["kid"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// How often the key set was requested.
    async fn jwks_fetches(&self) -> u64 {
        self.admin("state", None).await["stats"]["jwks"].as_u64().unwrap()
    }

    async fn outage(&self, mode: &str) {
        self.admin(&format!("outage?mode={mode}"), None).await;
    }

    async fn rotate(&self, drop_old: bool) -> String {
        let r = self
            .admin(if drop_old { "rotate?drop=1" } else { "rotate" }, None)
            .await;
        r["kid"].as_str().unwrap().to_owned()
    }

    /// A token with these header and claims, signed `with` "provider",
    /// "attacker" or "hmac-public-pem" (see issuer.mjs).
    pub(crate) async fn mint(&self, header: Value, claims: Value, with: &str) -> String {
        let r = self
            .admin("sign", Some(json!({"header": header, "claims": claims, "with": with})))
            .await;
        r["token"].as_str().unwrap().to_owned()
    }

    /// Claims as tenant a would issue them to Ada, valid from `now_s`.
    fn claims(&self, now_s: i64) -> Value {
        json!({
            "iss": self.issuer("a"), "aud": AUDIENCE, "sub": "advisor-ada",
            "roles": ["advisor"], "team": "nord", "name": "Ada Advisor",
            "iat": now_s, "exp": now_s + 300,
        })
    }
}

pub(crate) fn section(issuer: &str, extra: &str) -> OidcSection {
    toml::from_str(&format!(
        "issuer = {issuer:?}\naudience = {AUDIENCE:?}\nfetch_timeout_ms = 1000\n{extra}"
    ))
    .unwrap()
}

/// A verifier for tenant a on a clock the test moves (starting now).
fn verifier(p: &Provider, extra: &str) -> (OidcVerifier, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(SystemClock.now_us()));
    let v = OidcVerifier::new(&section(&p.issuer("a"), extra), reqwest::Client::new(), clock.clone()).unwrap();
    (v, clock)
}

fn part(token: &str, i: usize) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').nth(i).unwrap()).unwrap()).unwrap()
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

fn now_s(clock: &ManualClock) -> i64 {
    clock.now_us() / 1_000_000
}

const S: i64 = 1_000_000;

#[tokio::test]
async fn provider_tokens_verify_and_carry_role_team_and_name() {
    let Some(p) = Provider::start().await else { return };
    // No jwks_url: found through discovery, then cached.
    let (v, _clock) = verifier(&p, "");

    let token = p.token("a", "advisor-ada", API).await;
    assert_eq!(part(&token, 0)["alg"], "RS256");
    let ada = v.verify(&token).await.unwrap();
    assert_eq!(ada.user.user_id, "advisor-ada");
    assert_eq!(ada.user.display_name, "Ada Advisor");
    assert_eq!(ada.user.role, Role::Advisor);
    assert_eq!(ada.user.team, "nord");
    assert_eq!(ada.expires_at_us, part(&token, 1)["exp"].as_i64().unwrap() * S);
    assert_eq!(ada.token_id.as_deref(), part(&token, 1)["jti"].as_str());
    assert_eq!(opptak_review::identity::User::from(ada.clone()), ada.user);

    // A role given as a plain string.
    let lars = v.verify(&p.token("a", "lead-lars", API).await).await.unwrap();
    assert_eq!((lars.user.role, lars.user.team.as_str()), (Role::TeamLead, "nord"));

    // ES256, a role among other applications' roles (listed twice), no team.
    let token = p.token("a", "qa-olga", API_ES256).await;
    assert_eq!(part(&token, 0)["alg"], "ES256");
    let olga = v.verify(&token).await.unwrap();
    assert_eq!((olga.user.role, olga.user.team.as_str()), (Role::Qa, ""));

    // All of that took one discovery and one key fetch.
    assert_eq!(p.jwks_fetches().await, 1);

    // The user id from another claim (an employee number matching the
    // advisor id on the calls), with the key set URL configured directly.
    let (v, _) = verifier(
        &p,
        &format!("user_claim = \"employee_id\"\njwks_url = \"{}/jwks\"", p.issuer("a")),
    );
    let ada = v.verify(&p.token("a", "advisor-ada", API).await).await.unwrap();
    assert_eq!(ada.user.user_id, "E1001");
}

#[tokio::test]
async fn expiry_and_not_before_are_checked_with_leeway() {
    let Some(p) = Provider::start().await else { return };
    let (v, clock) = verifier(&p, "");
    let token = p.token("a", "advisor-ada", API).await;
    let claims = part(&token, 1);
    let (iat, exp) = (claims["iat"].as_i64().unwrap(), claims["exp"].as_i64().unwrap());
    assert_eq!(exp - iat, 300);

    // exp plus 60 s of leeway is the last instant.
    clock.set((exp + 60) * S - 1);
    v.verify(&token).await.unwrap();
    clock.set((exp + 60) * S);
    assert_eq!(v.verify(&token).await, Err(TokenError::Expired));
    assert_eq!(TokenError::Expired.status(), 401);

    // Issued "in the future": a clock behind by more than the leeway.
    clock.set((iat - 60) * S);
    v.verify(&token).await.unwrap();
    clock.set((iat - 60) * S - 1);
    assert_eq!(v.verify(&token).await, Err(TokenError::NotYetValid));

    // nbf, and tokens that never expire.
    clock.set(SystemClock.now_us());
    let now = now_s(&clock);
    let rsa = p.kid("RSA").await;
    let header = json!({"alg": "RS256", "kid": rsa, "typ": "at+jwt"});
    let mut c = p.claims(now);
    c["nbf"] = json!(now + 61);
    let early = p.mint(header.clone(), c.clone(), "provider").await;
    assert_eq!(v.verify(&early).await, Err(TokenError::NotYetValid));
    clock.advance(S);
    v.verify(&early).await.unwrap();
    let mut c = p.claims(now);
    c.as_object_mut().unwrap().remove("exp");
    let forever = p.mint(header.clone(), c, "provider").await;
    assert_eq!(v.verify(&forever).await, Err(TokenError::Malformed("no exp claim")));
    let mut c = p.claims(now);
    c["exp"] = json!("tomorrow");
    let words = p.mint(header, c, "provider").await;
    assert_eq!(
        v.verify(&words).await,
        Err(TokenError::Malformed("exp is not a number"))
    );
}

#[tokio::test]
async fn forged_and_tampered_tokens_are_refused() {
    let Some(p) = Provider::start().await else { return };
    let (v, clock) = verifier(&p, "");
    let now = now_s(&clock);
    let (rsa, ec) = (p.kid("RSA").await, p.kid("EC").await);

    // Another key under the provider's kid.
    for (alg, kid) in [("RS256", &rsa), ("ES256", &ec)] {
        let forged = p.mint(json!({"alg": alg, "kid": kid}), p.claims(now), "attacker").await;
        assert_eq!(v.verify(&forged).await, Err(TokenError::BadSignature), "{alg}");
        // The same claims with the provider's key pass: the key made the difference.
        let real = p.mint(json!({"alg": alg, "kid": kid}), p.claims(now), "provider").await;
        v.verify(&real).await.unwrap();
    }

    // A real token promoted to admin, signature kept.
    let token = p.token("a", "advisor-ada", API).await;
    let mut claims = part(&token, 1);
    claims["roles"] = json!(["admin"]);
    let parts: Vec<&str> = token.split('.').collect();
    let promoted = format!("{}.{}.{}", parts[0], b64(&claims), parts[2]);
    assert_eq!(v.verify(&promoted).await, Err(TokenError::BadSignature));

    // The EC key's kid with an RSA algorithm: the key decides the algorithm's family.
    let mixed = p
        .mint(json!({"alg": "RS256", "kid": rsa}), p.claims(now), "provider")
        .await;
    let parts: Vec<&str> = mixed.split('.').collect();
    let header = json!({"alg": "RS256", "kid": ec});
    let swapped = format!("{}.{}.{}", b64(&header), parts[1], parts[2]);
    assert_eq!(
        v.verify(&swapped).await,
        Err(TokenError::UnsupportedAlgorithm("RS256".into()))
    );

    // Every truncation and many single-character changes of a real token fail.
    let token = p.token("a", "advisor-ada", API).await;
    v.verify(&token).await.unwrap();
    for cut in (0..token.len()).step_by(3) {
        assert!(v.verify(&token[..cut]).await.is_err(), "prefix of {cut} bytes accepted");
    }
    let dot = token.find('.').unwrap();
    for i in (0..token.len()).step_by(5).filter(|i| token.as_bytes()[*i] != b'.') {
        let mut bytes = token.clone().into_bytes();
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let changed = String::from_utf8(bytes).unwrap();
        // A change in the last character of a part can leave its bytes as
        // they were (unused base64 bits): only different bytes must fail.
        if changed
            .split('.')
            .map(|x| URL_SAFE_NO_PAD.decode(x).ok())
            .collect::<Vec<_>>()
            == token
                .split('.')
                .map(|x| URL_SAFE_NO_PAD.decode(x).ok())
                .collect::<Vec<_>>()
        {
            continue;
        }
        let r = v.verify(&changed).await;
        assert!(r.is_err(), "change at {i} (header ends at {dot}) accepted");
    }
}

#[tokio::test]
async fn alg_none_and_symmetric_algorithms_are_refused_before_any_fetch() {
    let Some(p) = Provider::start().await else { return };
    let (v, clock) = verifier(&p, "");
    let now = now_s(&clock);
    let rsa = p.kid("RSA").await;

    let unsigned = format!("{}.{}.", b64(&json!({"alg": "none", "kid": rsa})), b64(&p.claims(now)));
    assert_eq!(
        v.verify(&unsigned).await,
        Err(TokenError::UnsupportedAlgorithm("none".into()))
    );
    // HS256 keyed with the provider's RSA public key (PEM): the algorithm-confusion attack.
    let confused = p
        .mint(json!({"alg": "HS256", "kid": rsa}), p.claims(now), "hmac-public-pem")
        .await;
    assert_eq!(
        v.verify(&confused).await,
        Err(TokenError::UnsupportedAlgorithm("HS256".into()))
    );
    // A real PS256 token is refused while only RS256 and ES256 are configured.
    let pss = p.token("a", "advisor-ada", API_PS256).await;
    assert_eq!(part(&pss, 0)["alg"], "PS256");
    assert_eq!(
        v.verify(&pss).await,
        Err(TokenError::UnsupportedAlgorithm("PS256".into()))
    );
    // None of these cost a request to the provider.
    assert_eq!(p.jwks_fetches().await, 0);

    // Configured, PS256 verifies.
    let (v, _) = verifier(&p, "algorithms = [\"PS256\"]");
    assert_eq!(v.verify(&pss).await.unwrap().user.role, Role::Advisor);
    // And the configuration refuses HS256 and none.
    for bad in ["HS256", "none"] {
        let e = OidcVerifier::new(
            &section(&p.issuer("a"), &format!("algorithms = [{bad:?}]")),
            reqwest::Client::new(),
            Arc::new(SystemClock),
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("algorithm confusion"), "{e:#}");
    }
}

#[tokio::test]
async fn wrong_audience_and_wrong_issuer_are_refused() {
    let Some(p) = Provider::start().await else { return };
    let (v, clock) = verifier(&p, "");

    // The provider's token for another resource server.
    let other = p.token("a", "advisor-ada", OTHER_API).await;
    assert_eq!(part(&other, 1)["aud"], "other-service");
    assert_eq!(v.verify(&other).await, Err(TokenError::WrongAudience));

    // Tenant b signs with the same keys: a good signature, the wrong issuer.
    let b = p.token("b", "advisor-ada", API).await;
    assert_eq!(part(&b, 1)["iss"], p.issuer("b"));
    assert_eq!(v.verify(&b).await, Err(TokenError::WrongIssuer));

    // `aud` as an array.
    let now = now_s(&clock);
    let header = json!({"alg": "RS256", "kid": p.kid("RSA").await});
    let mut c = p.claims(now);
    c["aud"] = json!(["account", AUDIENCE]);
    v.verify(&p.mint(header.clone(), c.clone(), "provider").await)
        .await
        .unwrap();
    c["aud"] = json!(["account", "opptak"]);
    let t = p.mint(header.clone(), c.clone(), "provider").await;
    assert_eq!(v.verify(&t).await, Err(TokenError::WrongAudience));
    c.as_object_mut().unwrap().remove("aud");
    let t = p.mint(header, c, "provider").await;
    assert_eq!(v.verify(&t).await, Err(TokenError::WrongAudience));

    // A configured issuer that differs from the one discovery names (a
    // trailing slash) is a configuration fault: 503, not a refused token.
    let clock2 = Arc::new(ManualClock::new(SystemClock.now_us()));
    let slash = OidcVerifier::new(
        &section(&format!("{}/", p.issuer("a")), ""),
        reqwest::Client::new(),
        clock2,
    )
    .unwrap();
    let token = p.token("a", "advisor-ada", API).await;
    assert_eq!(slash.verify(&token).await, Err(TokenError::Unavailable));
}

#[tokio::test]
async fn exactly_one_opptak_role_is_required() {
    let Some(p) = Provider::start().await else { return };
    let (v, clock) = verifier(&p, "");
    let nils = p.token("a", "ops-nils", API).await;
    assert_eq!(v.verify(&nils).await, Err(TokenError::MissingRole));
    let mia = p.token("a", "mixed-mia", API).await;
    assert_eq!(part(&mia, 1)["roles"], json!(["advisor", "admin"]));
    assert_eq!(v.verify(&mia).await, Err(TokenError::ConflictingRoles));

    // Keycloak keeps roles in a nested object.
    let (nested, _) = verifier(&p, "roles_claim = \"realm_access.roles\"\nteam_claim = \"org.team\"");
    let mut c = p.claims(now_s(&clock));
    c.as_object_mut().unwrap().remove("roles");
    c["realm_access"] = json!({"roles": ["offline_access", "compliance"]});
    c["org"] = json!({"team": "compliance-oslo"});
    let t = p
        .mint(json!({"alg": "RS256", "kid": p.kid("RSA").await}), c, "provider")
        .await;
    let who = nested.verify(&t).await.unwrap();
    assert_eq!(
        (who.user.role, who.user.team.as_str()),
        (Role::Compliance, "compliance-oslo")
    );
    assert_eq!(v.verify(&t).await, Err(TokenError::MissingRole));
}

#[tokio::test]
async fn rotated_keys_are_fetched_once_and_retired_keys_dropped() {
    let Some(p) = Provider::start().await else { return };
    let (v, clock) = verifier(&p, "");
    let old_kid = p.kid("RSA").await;
    let before = p.token("a", "advisor-ada", API).await;
    v.verify(&before).await.unwrap();
    assert_eq!(p.jwks_fetches().await, 1);
    // Signed by the old key, valid for hours: it must stop working once the
    // key is retired, not when it expires.
    let now = now_s(&clock);
    let mut c = p.claims(now);
    c["exp"] = json!(now + 3 * 3600);
    let long = p.mint(json!({"alg": "RS256", "kid": old_kid}), c, "provider").await;

    let new_kid = p.rotate(false).await;
    let after = p.token("a", "advisor-ada", API).await;
    assert_eq!(part(&after, 0)["kid"], new_kid.as_str());
    assert_ne!(new_kid, old_kid);

    // Within 30 s of the last fetch an unknown kid is refused without asking.
    clock.advance(29 * S);
    assert_eq!(v.verify(&after).await, Err(TokenError::UnknownKey));
    assert_eq!(p.jwks_fetches().await, 1);
    // Then one refetch picks up the rotation; the old key still verifies.
    clock.advance(S);
    v.verify(&after).await.unwrap();
    v.verify(&before).await.unwrap();
    assert_eq!(p.jwks_fetches().await, 2);

    // Made-up kids, many at once: at most one fetch per 30 s.
    let ghost = |i: usize| {
        format!(
            "{}.{}.{}",
            b64(&json!({"alg": "RS256", "kid": format!("ghost-{i}")})),
            b64(&p.claims(now)),
            URL_SAFE_NO_PAD.encode([7u8; 256])
        )
    };
    let tokens: Vec<String> = (0..20).map(ghost).collect();
    let results = futures::future::join_all(tokens.iter().map(|t| v.verify(t))).await;
    assert!(results.iter().all(|r| *r == Err(TokenError::UnknownKey)));
    assert_eq!(p.jwks_fetches().await, 2);
    clock.advance(31 * S);
    let results = futures::future::join_all(tokens.iter().map(|t| v.verify(t))).await;
    assert!(results.iter().all(|r| *r == Err(TokenError::UnknownKey)));
    assert_eq!(p.jwks_fetches().await, 3);

    // The provider retires the old keys. Cached keys serve until the set is
    // an hour old; then the refresh drops them.
    let newest = p.rotate(true).await;
    v.verify(&long).await.unwrap();
    clock.advance(3600 * S);
    assert_eq!(v.verify(&long).await, Err(TokenError::UnknownKey));
    let fresh = p.token("a", "lead-lars", API).await;
    assert_eq!(part(&fresh, 0)["kid"], newest.as_str());
    // The test's clock is an hour ahead of the provider's: expired there.
    assert_eq!(v.verify(&fresh).await, Err(TokenError::Expired));
    clock.set(SystemClock.now_us());
    v.verify(&fresh).await.unwrap();
}

#[tokio::test]
async fn an_unreachable_provider_is_unavailable_not_an_invalid_token() {
    let Some(p) = Provider::start().await else { return };
    let token = p.token("a", "advisor-ada", API).await;

    // Discovery and keys answer 503.
    p.outage("error").await;
    let (v, clock) = verifier(&p, "");
    let e = v.verify(&token).await.unwrap_err();
    assert_eq!(e, TokenError::Unavailable);
    assert_eq!(e.status(), 503);
    assert_eq!(e.reason(), "unavailable");
    assert_eq!(e.www_authenticate(), None);
    assert_eq!(v.refresh().await, Err(TokenError::Unavailable));
    // Failing fast for 5 s: no request per token while the provider is down.
    let seen = p.admin("state", None).await["stats"].clone();
    clock.advance(4 * S);
    assert_eq!(v.verify(&token).await, Err(TokenError::Unavailable));
    assert_eq!(p.admin("state", None).await["stats"], seen);
    // Back up: the next try after 5 s succeeds.
    p.outage("off").await;
    assert_eq!(v.verify(&token).await, Err(TokenError::Unavailable));
    clock.advance(S);
    v.verify(&token).await.unwrap();

    // Keys fetched before an outage keep serving, even past their hour; a
    // kid they lack cannot be checked then: unavailable, not unknown.
    let now = now_s(&clock);
    let mut c = p.claims(now);
    c["exp"] = json!(now + 3 * 3600);
    let long = p
        .mint(json!({"alg": "RS256", "kid": p.kid("RSA").await}), c, "provider")
        .await;
    p.outage("error").await;
    clock.advance(3601 * S);
    v.verify(&long).await.unwrap();
    let rotated = p.rotate(false).await;
    let mut c = p.claims(now + 3601);
    c["exp"] = json!(now + 3 * 3600);
    let new = p.mint(json!({"alg": "RS256", "kid": rotated}), c, "provider").await;
    clock.advance(31 * S);
    assert_eq!(v.verify(&new).await, Err(TokenError::Unavailable));

    // A provider that never answers: the fetch timeout (1 s here) bounds the wait.
    p.outage("hang").await;
    let (v, _) = verifier(&p, "");
    let started = Instant::now();
    assert_eq!(v.verify(&token).await, Err(TokenError::Unavailable));
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "{waited:?}"
    );

    // Answers that are not a key set.
    p.outage("garbage").await;
    let (v, _) = verifier(&p, "");
    assert_eq!(v.verify(&token).await, Err(TokenError::Unavailable));

    // Nobody listening at all.
    let issuer = p.issuer("a");
    drop(p);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let v = OidcVerifier::new(&section(&issuer, ""), reqwest::Client::new(), Arc::new(SystemClock)).unwrap();
    assert_eq!(v.verify(&token).await, Err(TokenError::Unavailable));
}

#[tokio::test]
async fn garbage_is_malformed_and_costs_no_fetch() {
    let Some(p) = Provider::start().await else { return };
    let (v, clock) = verifier(&p, "");
    let claims = b64(&p.claims(now_s(&clock)));
    let header = |h: Value| b64(&h);
    let rs = json!({"alg": "RS256", "kid": "k"});
    let cases: Vec<(String, &str)> = vec![
        (String::new(), "not a compact JWS (three dot-separated parts)"),
        ("not-a-token".into(), "not a compact JWS (three dot-separated parts)"),
        ("a.b".into(), "not a compact JWS (three dot-separated parts)"),
        ("a.b.c.d.e".into(), "not a compact JWS (three dot-separated parts)"),
        (format!("@@@.{claims}.AAAA"), "header is not base64url"),
        (
            format!("{}=.{claims}.AAAA", header(rs.clone())),
            "header is not base64url",
        ),
        (
            format!(" {}.{claims}.AAAA", header(rs.clone())),
            "header is not base64url",
        ),
        (
            format!("{}.{claims}.AAAA", URL_SAFE_NO_PAD.encode("not json")),
            "header is not a JSON object with alg",
        ),
        (
            format!("{}.{claims}.AAAA", header(json!(["RS256"]))),
            "header is not a JSON object with alg",
        ),
        (
            format!("{}.{claims}.AAAA", header(json!({"kid": "k"}))),
            "header is not a JSON object with alg",
        ),
        (format!("{}.%%%.AAAA", header(rs.clone())), "claims are not base64url"),
        (
            format!("{}.{claims}.A", header(rs.clone())),
            "signature is not base64url",
        ),
        (
            format!("{}.{claims}.AAAA", header(json!({"alg": "RS256"}))),
            "no kid in header",
        ),
        (
            format!(
                "{}.{claims}.AAAA",
                header(json!({"alg": "RS256", "kid": "k", "crit": ["exp"]}))
            ),
            "critical header extensions are not supported",
        ),
    ];
    for (token, why) in &cases {
        assert_eq!(v.verify(token).await, Err(TokenError::Malformed(why)), "{token:?}");
    }
    // Oversized: refused on its length alone, before decoding.
    let huge = format!("{}.{}.AAAA", header(rs), "A".repeat(MAX_TOKEN_BYTES));
    assert_eq!(v.verify(&huge).await, Err(TokenError::Malformed("token too large")));
    let e = v.verify(&huge).await.unwrap_err();
    assert!(e.to_string().len() < 100);
    assert_eq!(p.jwks_fetches().await, 0);
}

/// The review API over real HTTP with the provider's tokens: a valid token
/// signs its subject in with the token's role; expired, forged and
/// wrong-audience tokens get 401 with `WWW-Authenticate`, and every refusal
/// is in the audit log with its reason (never the token).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_accepts_only_valid_tokens_and_audits_each_refusal() {
    let Some(p) = Provider::start().await else { return };
    let env = common::Env::new(&common::Backend::Embedded, "oidcweb");
    let mut edges = env.edges().await;
    edges.config.oidc = Some(section(&p.issuer("a"), ""));
    let server = common::WebService::start(&edges).await;
    let base = server.base.clone();
    let http = reqwest::Client::new();
    let get = |path: &str, token: &str| http.get(format!("{base}{path}")).bearer_auth(token).send();

    let ada = p.token("a", "advisor-ada", API).await;
    let r = get("/api/v1/queue", &ada).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!([]));
    // The token's subject and role decide, as with a session: an advisor
    // reads no other advisor's call, and unknown calls are 404.
    let r = get("/api/v1/calls/no-such-call", &ada).await.unwrap();
    assert_eq!(r.status(), 404);

    let now = SystemClock.now_us() / S;
    let rsa = p.kid("RSA").await;
    let mut expired = p.claims(now - 3600);
    expired["exp"] = json!(now - 600);
    let expired = p.mint(json!({"alg": "RS256", "kid": rsa}), expired, "provider").await;
    let forged = p
        .mint(json!({"alg": "RS256", "kid": rsa}), p.claims(now), "attacker")
        .await;
    let other = p.token("a", "advisor-ada", OTHER_API).await;
    for (token, why) in [
        (&expired, "expired"),
        (&forged, "bad_signature"),
        (&other, "wrong_audience"),
    ] {
        let r = get("/api/v1/queue", token).await.unwrap();
        assert_eq!(r.status(), 401, "{why}");
        let challenge = r
            .headers()
            .get("www-authenticate")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        assert!(challenge.contains("invalid_token"), "{challenge}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["status"], 401);
    }

    let log = edges.audit().await.unwrap().entries(1, 100).await.unwrap();
    // A token's user is audited as `oidc:<id>`: a separate namespace from
    // local users (issue 15, finding 6: `sub = admin` was logged as the
    // local `admin`).
    let ada_entries: Vec<&str> = log
        .iter()
        .map(|e| e.event.actor.as_str())
        .filter(|a| a.contains("advisor-ada"))
        .collect();
    assert!(!ada_entries.is_empty(), "{log:?}");
    assert!(ada_entries.iter().all(|a| *a == "oidc:advisor-ada"), "{ada_entries:?}");
    let refusals: Vec<&str> = log
        .iter()
        .filter(|e| e.event.action == "token" && e.event.outcome == "refused")
        .map(|e| e.event.reason.as_str())
        .collect();
    assert_eq!(refusals, ["expired", "bad_signature", "wrong_audience"]);
    for e in &log {
        for t in [&ada, &expired, &forged, &other] {
            assert!(!e.event.reason.contains(t.as_str()) && !e.event.subject.contains(t.as_str()));
        }
    }
    server.stop().await;
}

/// `typ` and `azp` are checked when configured (issue 15, finding 6): an ID
/// token or any other JWT the provider signs for the same audience is not an
/// access token, and a token issued to another client is refused; left
/// unconfigured, neither is required.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_type_and_authorized_party_are_checked_when_configured() {
    let Some(p) = Provider::start().await else { return };
    let (v, clock) = verifier(
        &p,
        "token_type = \"application/at+jwt\"\nauthorized_party = \"opptak-review\"",
    );
    let rsa = p.kid("RSA").await;
    let mut claims = p.claims(now_s(&clock));
    claims["azp"] = json!("opptak-review");
    let typed = |typ: Option<&str>| match typ {
        Some(t) => json!({"alg": "RS256", "kid": rsa, "typ": t}),
        None => json!({"alg": "RS256", "kid": rsa}),
    };
    let good = p.mint(typed(Some("at+jwt")), claims.clone(), "provider").await;
    assert_eq!(v.verify(&good).await.map(|p| p.user.user_id), Ok("advisor-ada".into()));
    for typ in [Some("JWT"), Some("id_token+jwt"), None] {
        let t = p.mint(typed(typ), claims.clone(), "provider").await;
        assert_eq!(v.verify(&t).await, Err(TokenError::WrongTokenType), "{typ:?}");
    }
    let mut other = claims.clone();
    other["azp"] = json!("another-application");
    let t = p.mint(typed(Some("at+jwt")), other, "provider").await;
    assert_eq!(v.verify(&t).await, Err(TokenError::WrongAuthorizedParty));
    let mut missing = claims.clone();
    missing.as_object_mut().unwrap().remove("azp");
    let t = p.mint(typed(Some("application/at+jwt")), missing, "provider").await;
    assert_eq!(v.verify(&t).await, Err(TokenError::WrongAuthorizedParty));
    // Not configured: neither is required.
    let (plain, _) = verifier(&p, "");
    let t = p.mint(typed(Some("JWT")), p.claims(now_s(&clock)), "provider").await;
    assert!(plain.verify(&t).await.is_ok());
}

/// Archive clients (issue 17): the online bank's client-credentials token
/// verifies as a client, never as a person, and only when its client is
/// configured and it names no opptak role; a person's token never verifies
/// as a client. Expiry, issuer and audience hold for clients as for people.
#[tokio::test]
async fn archive_clients_verify_as_clients_only() {
    let Some(p) = Provider::start().await else { return };
    let (v, clock) = verifier(&p, "authorized_party = \"opptak-review\"");
    let v = v.with_archive_clients(&["nettbank".to_owned()]);
    let bank = p.token("a", "nettbank", API).await;
    let claims = part(&bank, 1);
    assert_eq!(claims["client_id"], "nettbank", "{claims}");
    assert!(claims.get("roles").is_none(), "{claims}");
    let client = v.verify_client(&bank).await.unwrap();
    assert_eq!(client.client_id, "nettbank");
    assert_eq!(client.actor(), "client:nettbank");
    assert_eq!(client.expires_at_us, claims["exp"].as_i64().unwrap() * S);
    // Never a person, whatever authorized_party says.
    assert_eq!(v.verify(&bank).await, Err(TokenError::ArchiveClient));
    assert_eq!(TokenError::ArchiveClient.status(), 403);

    // A person's token, and a service that is not configured, are no archive client.
    let ada = p.token("a", "advisor-ada", API).await;
    assert_eq!(v.verify_client(&ada).await, Err(TokenError::NotArchiveClient));
    let nils = p.token("a", "ops-nils", API).await;
    assert_eq!(v.verify_client(&nils).await, Err(TokenError::NotArchiveClient));
    let (unconfigured, _) = verifier(&p, "");
    assert_eq!(
        unconfigured.verify_client(&bank).await,
        Err(TokenError::NotArchiveClient)
    );

    // The client named by azp; a role on it, or azp and client_id that
    // disagree, are refused.
    let now = now_s(&clock);
    let header = json!({"alg": "RS256", "kid": p.kid("RSA").await});
    let client_claims = json!({"iss": p.issuer("a"), "aud": AUDIENCE, "sub": "nettbank", "azp": "nettbank", "iat": now, "exp": now + 300});
    let t = p.mint(header.clone(), client_claims.clone(), "provider").await;
    assert_eq!(v.verify_client(&t).await.unwrap().client_id, "nettbank");
    let mut c = client_claims.clone();
    c["roles"] = json!(["compliance"]);
    let t = p.mint(header.clone(), c, "provider").await;
    assert_eq!(v.verify_client(&t).await, Err(TokenError::RoleOnArchiveClient));
    assert_eq!(v.verify(&t).await, Err(TokenError::ArchiveClient));
    let mut c = client_claims.clone();
    c["client_id"] = json!("advisor-ada");
    let t = p.mint(header.clone(), c, "provider").await;
    assert_eq!(
        v.verify_client(&t).await,
        Err(TokenError::Malformed("azp and client_id differ"))
    );
    let mut c = client_claims.clone();
    c["aud"] = json!("other-service");
    let t = p.mint(header.clone(), c, "provider").await;
    assert_eq!(v.verify_client(&t).await, Err(TokenError::WrongAudience));
    clock.set((claims["exp"].as_i64().unwrap() + 60) * S);
    assert_eq!(v.verify_client(&bank).await, Err(TokenError::Expired));
    let forged = p.mint(header, client_claims, "attacker").await;
    assert_eq!(v.verify_client(&forged).await, Err(TokenError::BadSignature));
}
