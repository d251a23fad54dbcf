//! The review service's sections of opptak's configuration (`[web]`,
//! `[oidc]`, `[qa]`), read by the binary's typed configuration with
//! `deny_unknown_fields` like every other section, and serialized by
//! `opptak config` to show them (none holds a secret).

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebSection {
    /// Address the review service listens on.
    pub listen: String,
    /// Mark the session cookie `Secure` (behind TLS).
    pub secure_cookies: bool,
    /// Drafts not decided this many hours after the call go to the team lead.
    pub escalate_after_h: u32,
    /// Dashboard counts below this are suppressed (R5).
    pub dashboard_k: u32,
    /// Failed sign-ins per user name or client address per window before 429.
    pub login_max_failures: u32,
    pub login_window_min: u32,
    /// The OIDC clients (`azp` or `client_id` of a client-credentials token)
    /// that read the customer archive (`/api/v1/customers/...`, the online
    /// bank); a list, or one comma-separated string from the environment.
    /// Their tokens carry no opptak role and reach no staff route.
    #[serde(default, deserialize_with = "oidc_default::string_or_list")]
    pub archive_clients: Vec<String>,
}

/// The identity provider whose JWT access tokens the API accepts
/// (checked by [`crate::oidc::OidcVerifier`]; the rules are in [`crate::oidc`]).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OidcSection {
    /// The issuer identifier, exactly as the tokens' `iss` spells it.
    pub issuer: String,
    /// The value the tokens' `aud` must contain (this API's identifier at the
    /// provider); required, or any token the provider mints for any
    /// application would be accepted here.
    pub audience: String,
    /// The JWK set; empty: `jwks_uri` from `{issuer}/.well-known/openid-configuration`.
    #[serde(default)]
    pub jwks_url: String,
    /// The claim naming the user (default `sub`); it must equal the advisor id
    /// the telephony system puts on calls. A dotted path reaches nested claims.
    #[serde(default = "oidc_default::user_claim")]
    pub user_claim: String,
    /// A string or array claim with the opptak role (`realm_access.roles` for Keycloak).
    #[serde(default = "oidc_default::roles_claim")]
    pub roles_claim: String,
    #[serde(default = "oidc_default::team_claim")]
    pub team_claim: String,
    #[serde(default = "oidc_default::name_claim")]
    pub name_claim: String,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`.
    #[serde(default = "oidc_default::leeway_s")]
    pub leeway_s: u64,
    /// Accepted JWS algorithms (a list, or one comma-separated string from the
    /// environment); only asymmetric ones exist here.
    #[serde(
        default = "oidc_default::algorithms",
        deserialize_with = "oidc_default::string_or_list"
    )]
    pub algorithms: Vec<String>,
    /// Bound on each discovery or JWK-set request.
    #[serde(default = "oidc_default::fetch_timeout_ms")]
    pub fetch_timeout_ms: u64,
    /// When set, the header's `typ` must be this media type (`at+jwt` for
    /// RFC 9068 access tokens; `application/` may prefix it either side), so
    /// an ID token or another JWT the provider signs is not accepted as one.
    #[serde(default)]
    pub token_type: String,
    /// When set, the `azp` claim (the client the token was issued to) must
    /// equal it.
    #[serde(default)]
    pub authorized_party: String,
}

mod oidc_default {
    pub(super) fn user_claim() -> String {
        "sub".into()
    }
    pub(super) fn roles_claim() -> String {
        "roles".into()
    }
    pub(super) fn team_claim() -> String {
        "team".into()
    }
    pub(super) fn name_claim() -> String {
        "name".into()
    }
    pub(super) fn leeway_s() -> u64 {
        60
    }
    pub(super) fn algorithms() -> Vec<String> {
        vec!["RS256".into(), "ES256".into()]
    }
    pub(super) fn fetch_timeout_ms() -> u64 {
        5000
    }
    pub(super) fn string_or_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(String),
            Many(Vec<String>),
        }
        Ok(match OneOrMany::deserialize(d)? {
            OneOrMany::One(s) => s
                .split(',')
                .map(|a| a.trim().to_owned())
                .filter(|a| !a.is_empty())
                .collect(),
            OneOrMany::Many(v) => v,
        })
    }
    use serde::Deserialize;
}

/// QA sampling of drafted KI calls (R6; `crate::qa`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QaSection {
    /// The share of each stratum (topic, desk, language) sampled for QA,
    /// 0.0..=1.0; a stratum's first call is always sampled when above 0.
    pub share: f64,
}
