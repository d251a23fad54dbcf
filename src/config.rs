//! Typed configuration: the embedded `default.toml`, then an optional file,
//! then `OPPTAK__SECTION__KEY=value` environment overrides; validated before
//! anything starts.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;

pub use opptak_review::config::{OidcSection, QaSection, WebSection};

const DEFAULT: &str = include_str!("default.toml");

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub bus: BusConfig,
    pub storage: StorageConfig,
    pub keys: KeysConfig,
    pub recorder: RecorderSection,
    pub messages: MessagesSection,
    pub retention: RetentionSection,
    pub ki: KiSection,
    pub web: WebSection,
    /// OIDC bearer tokens for the review service's API (production); absent:
    /// only the embedded mode's local users sign in.
    #[serde(default)]
    pub oidc: Option<OidcSection>,
    pub qa: QaSection,
    pub log: LogConfig,
    pub telemetry: TelemetrySection,
    /// The SIPREC recording server (`opptak run --roles siprec`).
    pub siprec: opptak_siprec::config::SiprecConfig,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BusConfig {
    #[serde(serialize_with = "masked_url")]
    pub url: String,
    pub topic_prefix: String,
    pub partitions: i32,
    /// Replicas per topic opptak creates: `"auto"` (3, or every broker of a
    /// smaller cluster) or a number.
    pub replication: AutoCount,
    /// `min.insync.replicas` of topics opptak creates: `"auto"` (2 of 3
    /// replicas, a majority from 3 up; below 3 the broker's default) or a number.
    pub min_insync_replicas: AutoCount,
    /// A consumer outside its group this long ends its role (crash-only restart).
    pub group_stuck_s: u64,
    pub tls: BusTls,
    pub sasl: BusSasl,
}

/// A count opptak chooses (`"auto"` in the file) or one given as a number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AutoCount {
    Auto,
    Fixed(i32),
}

impl AutoCount {
    /// The given number, `None` for auto.
    pub fn fixed(self) -> Option<i32> {
        match self {
            AutoCount::Auto => None,
            AutoCount::Fixed(n) => Some(n),
        }
    }
}

impl std::fmt::Display for AutoCount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AutoCount::Auto => write!(f, "\"auto\""),
            AutoCount::Fixed(n) => write!(f, "{n}"),
        }
    }
}

impl Serialize for AutoCount {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            AutoCount::Auto => s.serialize_str("auto"),
            AutoCount::Fixed(n) => s.serialize_i32(*n),
        }
    }
}

impl<'de> Deserialize<'de> for AutoCount {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = AutoCount;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("\"auto\" or a whole number")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> std::result::Result<AutoCount, E> {
                i32::try_from(v)
                    .map(AutoCount::Fixed)
                    .map_err(|_| E::custom(format!("{v} is out of range")))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> std::result::Result<AutoCount, E> {
                i32::try_from(v)
                    .map(AutoCount::Fixed)
                    .map_err(|_| E::custom(format!("{v} is out of range")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<AutoCount, E> {
                if v.trim().eq_ignore_ascii_case("auto") {
                    Ok(AutoCount::Auto)
                } else {
                    Err(E::custom(format!("{v:?}: expected \"auto\" or a whole number")))
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// `[bus.tls]`: TLS to the brokers, with a client certificate for mutual TLS.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BusTls {
    pub enabled: bool,
    /// The CA bundle (PEM) the brokers' certificates chain to; empty: the system's.
    pub ca_file: String,
    /// Client certificate and key (PEM) for brokers that require one; both or neither.
    pub cert_file: String,
    pub key_file: String,
    /// The key's passphrase, from a file or an environment variable (at most one).
    pub key_password_file: String,
    pub key_password_env: String,
}

/// `[bus.sasl]`: SASL/SCRAM credentials; the principal is `User:<username>`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BusSasl {
    /// Empty (no SASL), `SCRAM-SHA-512` or `SCRAM-SHA-256`.
    pub mechanism: String,
    pub username: String,
    /// The password, from a file or an environment variable (exactly one).
    pub password_file: String,
    pub password_env: String,
    /// SASL without TLS (every record in clear): only when set.
    pub allow_plaintext: bool,
}

#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    #[serde(serialize_with = "masked_url")]
    pub blobs: String,
    #[serde(serialize_with = "masked_url")]
    pub metadata: String,
    /// A file holding the PostgreSQL password (never in the URL); empty:
    /// the URL's or `PGPASSWORD`.
    pub metadata_password_file: String,
    /// The WORM archive for archive-tier artifacts (investment recordings).
    #[serde(serialize_with = "masked_url")]
    pub archive: String,
}

impl std::fmt::Debug for StorageConfig {
    /// A password written into a URL prints as `*****`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageConfig")
            .field("blobs", &mask_url(&self.blobs))
            .field("metadata", &mask_url(&self.metadata))
            .field("metadata_password_file", &self.metadata_password_file)
            .field("archive", &mask_url(&self.archive))
            .finish()
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KeysConfig {
    pub provider: String,
    pub keyring: String,
    /// KEKs shared with the telephony system, for calls whose chunks it seals
    /// itself (empty: the input topic carries plaintext chunks).
    pub telephony_keyring: String,
    pub pkcs11_module: String,
    pub pkcs11_token: String,
    pub pkcs11_prefix: String,
    pub pkcs11_pin: Secret,
}

/// A configuration secret: never printed (`opptak config` shows `*****`).
#[derive(Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

/// What `opptak config` and debug output show for a secret.
pub const MASK: &str = "*****";

/// Serializes as [`MASK`] (empty stays empty): the configuration is only
/// serialized to be shown (`opptak config`), never to be read back as the
/// real thing.
impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(if self.0.is_empty() { "" } else { MASK })
    }
}

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "*****" })
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RecorderSection {
    pub group: String,
    pub flush_interval_ms: u64,
    pub reorder_window: u64,
    pub reorder_timeout_ms: u64,
    pub max_batch: usize,
    pub max_segment_bytes: usize,
    pub compact: bool,
    pub stream_segment_bytes: u32,
    pub compact_sweep_s: u64,
    /// A call with no input for this long and no CallEnded is ended by the
    /// sweeper role (`END_REASON_IDLE_TIMEOUT`); 0: never.
    pub idle_timeout_s: u64,
    /// The longest call kept, in seconds of timeline (audio and gaps).
    pub max_call_s: u64,
}

/// `[messages]`: the messages role (chat, secure messages, e-mail; issue 17).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MessagesSection {
    pub group: String,
    pub max_batch: usize,
    /// An open conversation with no event for this long is ended and written.
    pub idle_end_s: u64,
    /// How often idle conversations are ended and unwritten ones written.
    pub housekeeping_s: u64,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSection {
    /// A policy file; empty: the bank's defaults shipped with opptak.
    pub policy: String,
    pub sweep_interval_s: u64,
    pub sweep_batch: u32,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KiSection {
    /// The speech recognizer (OpenAI-compatible `/v1/audio/transcriptions`); empty: none.
    #[serde(serialize_with = "masked_url")]
    pub asr_url: String,
    pub asr_model: String,
    pub asr_timeout_s: u64,
    /// Language hint for the recognizer (`en`, `no`); empty: let it detect.
    pub language: String,
    pub transcriber_group: String,
    /// Also transcribe KI calls while they run (from the telephony topic).
    pub live: bool,
    pub live_group: String,
    /// `embedded://` or an OpenAI-compatible chat-completions server.
    #[serde(serialize_with = "masked_url")]
    pub llm_url: String,
    pub llm_model: String,
    /// Name of the environment variable holding the model server's API key.
    pub llm_api_key_env: String,
    pub llm_timeout_s: u64,
    pub summarizer_group: String,
    /// Hosts besides loopback that `asr_url` and `llm_url` may name,
    /// comma-separated (R13: call audio and text go only to the bank's own
    /// model servers).
    pub model_hosts: String,
}

impl KiSection {
    /// `url` (the value of `ki.<key>`) must name loopback or a host of
    /// `ki.model_hosts`.
    fn check_model_url(&self, key: &str, url: &str) -> Result<()> {
        let Some(host) = reqwest::Url::parse(url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
        else {
            bail!("ki.{key} = {url:?}: expected an http(s) URL of the model server");
        };
        let host = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
        let allowed = self
            .model_hosts
            .split(',')
            .map(|h| h.trim().to_ascii_lowercase())
            .any(|h| !h.is_empty() && h == host);
        if !(loopback || allowed) {
            bail!(
                "ki.{key} = {url:?}: {host} is not loopback and not in ki.model_hosts; call audio and transcripts go only to the bank's own model servers (R13): add the host to ki.model_hosts if it is one"
            );
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub format: String,
}

/// Metrics and health endpoints of `opptak run` (`crate::telemetry`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySection {
    /// Address serving `/metrics`, `/healthz` and `/readyz`; empty: none.
    pub listen: String,
    /// OTLP/HTTP base URL of an OpenTelemetry collector the spans of
    /// `opptak run` are exported to (`opptak_telemetry::otlp`); empty: no export.
    #[serde(serialize_with = "masked_url")]
    pub otlp_endpoint: String,
    /// A partial batch of spans is exported after this many milliseconds.
    pub otlp_interval_ms: u64,
}

/// Stands for the host list of a libpq multi-host URL (`db1:5432,db2:5432`)
/// where the url crate, which takes one host, must read the rest of it.
const STAND_IN_HOST: &str = "opptak-host-list.invalid";

/// A PostgreSQL URL naming several hosts, in three parts around its host
/// list (see [`opptak_store::meta::split_host_list`]).
fn multi_host(url: &str) -> Option<(&str, &str, &str)> {
    opptak_store::meta::split_host_list(url).filter(|(_, hosts, _)| hosts.contains(','))
}

/// `url` as the url crate can read it: a multi-host URL with one stand-in host.
fn one_host(url: &str) -> std::borrow::Cow<'_, str> {
    match multi_host(url) {
        Some((before, _, after)) => format!("{before}{STAND_IN_HOST}{after}").into(),
        None => url.into(),
    }
}

/// `url` as `opptak config` shows it: a password in its user info, or in a
/// query parameter naming a password, secret or token (`?password=`), as
/// [`MASK`]; any other URL exactly as written.
pub fn mask_url(url: &str) -> String {
    if let Some((before, hosts, after)) = multi_host(url) {
        return mask_url(&format!("{before}{STAND_IN_HOST}{after}")).replacen(STAND_IN_HOST, hosts, 1);
    }
    let Ok(mut u) = reqwest::Url::parse(url) else {
        return url.to_owned();
    };
    let secret_param = |k: &str| {
        let k = k.to_ascii_lowercase();
        // `password_file=/path` names a file, not the password.
        !k.ends_with("_file") && ["password", "secret", "token"].iter().any(|s| k.contains(s))
    };
    let mut masked = false;
    if u.password().is_some() {
        masked = u.set_password(Some(MASK)).is_ok();
    }
    let pairs: Vec<(String, String)> = u.query_pairs().into_owned().collect();
    if pairs.iter().any(|(k, _)| secret_param(k)) {
        u.query_pairs_mut()
            .clear()
            .extend_pairs(pairs.iter().map(|(k, v)| (k, if secret_param(k) { MASK } else { v })));
        masked = true;
    }
    if masked {
        u.to_string()
    } else {
        url.to_owned()
    }
}

fn masked_url<S: serde::Serializer>(url: &str, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&mask_url(url))
}

impl Config {
    /// The effective configuration as TOML, as `opptak config` prints it:
    /// every secret as [`MASK`] (the PKCS#11 PIN, a password in a URL);
    /// secrets read from files or environment variables are not part of it,
    /// only where they come from.
    pub fn to_masked_toml(&self) -> Result<String> {
        toml::to_string_pretty(self).context("printing the configuration as TOML")
    }

    /// Loads defaults, then `file`, then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self> {
        let env: Vec<(String, String)> = std::env::vars().filter(|(k, _)| k.starts_with("OPPTAK__")).collect();
        Self::load_from(file, &env)
    }

    pub fn load_from(file: Option<&Path>, env: &[(String, String)]) -> Result<Self> {
        let mut value: toml::Table = DEFAULT.parse().context("embedded default.toml")?;
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading config {}", path.display()))?;
            let over: toml::Table = toml::from_str(&text)
                .map_err(|e| anyhow::anyhow!("parsing config {}: {}", path.display(), toml_error(&text, &e)))?;
            merge(&mut value, over);
        }
        for (k, v) in env {
            let path: Vec<String> = k["OPPTAK__".len()..]
                .split("__")
                .map(|s| s.to_ascii_lowercase())
                .collect();
            // OPPTAK__BUS__URL, and for sub-sections OPPTAK__BUS__TLS__CA_FILE.
            let Some((key, sections)) = path.split_last().filter(|(_, s)| !s.is_empty()) else {
                bail!("environment override {k}: expected OPPTAK__SECTION__KEY");
            };
            let mut table = &mut value;
            for name in sections {
                let section = table
                    .entry(name.clone())
                    .or_insert_with(|| toml::Value::Table(Default::default()));
                let toml::Value::Table(section) = section else {
                    bail!("{k}: {name} is not a section")
                };
                table = section;
            }
            table.insert(key.clone(), env_value(v));
        }
        let cfg: Config = toml::Value::Table(value).try_into().context("invalid configuration")?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<()> {
        if !(1..=10_000).contains(&self.bus.partitions) {
            bail!("bus.partitions = {}: expected 1..=10000", self.bus.partitions);
        }
        if !(30..=3600).contains(&self.bus.group_stuck_s) {
            bail!(
                "bus.group_stuck_s = {}: expected 30..=3600 (seconds a consumer may stay outside its group)",
                self.bus.group_stuck_s
            );
        }
        if let Some(r) = self.bus.replication.fixed().filter(|r| !(1..=10).contains(r)) {
            bail!("bus.replication = {r}: expected \"auto\" or 1..=10");
        }
        if let Some(m) = self.bus.min_insync_replicas.fixed() {
            let max = self.bus.replication.fixed().unwrap_or(10);
            if !(1..=max).contains(&m) {
                bail!(
                    "bus.min_insync_replicas = {m}: expected \"auto\" or 1..={max} (at most bus.replication = {})",
                    self.bus.replication
                );
            }
        }
        self.check_bus_security()?;
        self.check_metadata_url()?;
        self.siprec.validate().map_err(|e| anyhow::anyhow!(e))?;
        if !(60..=30 * 86_400).contains(&self.messages.idle_end_s) {
            bail!(
                "messages.idle_end_s = {}: expected 60..=2592000 (a minute to 30 days)",
                self.messages.idle_end_s
            );
        }
        if !(1..=3600).contains(&self.messages.housekeeping_s) || !(1..=100_000).contains(&self.messages.max_batch) {
            bail!(
                "messages.housekeeping_s = {} (expected 1..=3600) or messages.max_batch = {} (expected 1..=100000)",
                self.messages.housekeeping_s,
                self.messages.max_batch
            );
        }
        if !(10..=5_000).contains(&self.recorder.flush_interval_ms) {
            bail!(
                "recorder.flush_interval_ms = {}: expected 10..=5000",
                self.recorder.flush_interval_ms
            );
        }
        if !(1..=100_000).contains(&self.recorder.reorder_window) {
            bail!(
                "recorder.reorder_window = {}: expected 1..=100000",
                self.recorder.reorder_window
            );
        }
        if self.recorder.max_segment_bytes < 4096 || self.recorder.max_segment_bytes > 64 << 20 {
            bail!(
                "recorder.max_segment_bytes = {}: expected 4096..=67108864",
                self.recorder.max_segment_bytes
            );
        }
        if !(4096..=16 << 20).contains(&self.recorder.stream_segment_bytes) {
            bail!(
                "recorder.stream_segment_bytes = {}: expected 4096..=16777216",
                self.recorder.stream_segment_bytes
            );
        }
        if !(60..=7 * 86_400).contains(&self.recorder.max_call_s) {
            bail!(
                "recorder.max_call_s = {}: expected 60..=604800 (one minute to a week)",
                self.recorder.max_call_s
            );
        }
        if !self.recorder.compact {
            // Compaction is where a recording gets its retention rows and its
            // copies: without it nothing would ever expire and no investment
            // call would be archived (issue 16).
            bail!(
                "recorder.compact = false is refused: finished recordings are routed to their retention and \
                 archived when they are compacted, so without it no recording would ever expire and no \
                 archive copy would be written"
            );
        }
        if self.recorder.compact_sweep_s == 0 {
            bail!("recorder.compact_sweep_s must be at least 1");
        }
        if self.recorder.max_batch == 0 {
            bail!("recorder.max_batch must be at least 1");
        }
        if self.web.dashboard_k < 2 {
            bail!(
                "web.dashboard_k = {}: expected at least 2 (1 would publish single calls)",
                self.web.dashboard_k
            );
        }
        if self.web.login_max_failures == 0 || self.web.login_window_min == 0 {
            bail!("web.login_max_failures and web.login_window_min must be at least 1");
        }
        match self.keys.provider.as_str() {
            "file" => {}
            "pkcs11" if self.keys.pkcs11_pin.expose().is_empty() => {
                bail!("keys.provider = \"pkcs11\" needs the token PIN in OPPTAK__KEYS__PKCS11_PIN")
            }
            "pkcs11" => {}
            other => bail!("keys.provider = {other:?}: expected \"file\" or \"pkcs11\""),
        }
        if self.retention.sweep_interval_s == 0 || !(1..=100_000).contains(&self.retention.sweep_batch) {
            bail!("retention.sweep_interval_s must be at least 1 and retention.sweep_batch 1..=100000");
        }
        if !(0.0..=1.0).contains(&self.qa.share) {
            bail!(
                "qa.share = {}: expected a share from 0.0 to 1.0 (0.1 samples one drafted call in ten per stratum)",
                self.qa.share
            );
        }
        if let Some(oidc) = &self.oidc {
            opptak_review::oidc::check_config(oidc)?;
        }
        opptak_review::oidc::check_archive_clients(&self.web.archive_clients, self.oidc.as_ref())?;
        let listen = self.telemetry.listen.trim();
        if !listen.is_empty()
            && listen
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok())
                .is_none()
        {
            bail!("telemetry.listen = {listen:?}: expected host:port such as \"0.0.0.0:9464\", or \"\" for none");
        }
        let otlp = self.telemetry.otlp_endpoint.trim();
        if !otlp.is_empty() {
            let ok = reqwest::Url::parse(otlp)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some());
            if ok.is_none() {
                bail!(
                    "telemetry.otlp_endpoint = {otlp:?}: expected the collector's OTLP/HTTP base URL such as \"http://otel-collector:4318\" (spans go to its /v1/traces), or \"\" for no export"
                );
            }
        }
        if !(100..=60_000).contains(&self.telemetry.otlp_interval_ms) {
            bail!(
                "telemetry.otlp_interval_ms = {}: expected 100..=60000",
                self.telemetry.otlp_interval_ms
            );
        }
        if !self.ki.asr_url.trim().is_empty() {
            self.ki.check_model_url("asr_url", self.ki.asr_url.trim())?;
        }
        let llm = self.ki.llm_url.trim();
        if !llm.is_empty() && llm != "embedded://" {
            self.ki.check_model_url("llm_url", llm)?;
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            bail!("log.format = {:?}: expected \"text\" or \"json\"", self.log.format);
        }
        Ok(())
    }

    /// `[bus.tls]` and `[bus.sasl]` say something coherent, and the files
    /// they name exist (their contents are read when the bus opens).
    fn check_bus_security(&self) -> Result<()> {
        let (tls, sasl) = (&self.bus.tls, &self.bus.sasl);
        let sasl_on = !sasl.mechanism.trim().is_empty();
        if (tls.enabled || sasl_on) && !self.bus.url.starts_with("kafka://") {
            bail!(
                "bus.tls.enabled / bus.sasl.mechanism apply to a kafka:// bus; bus.url is {:?}",
                self.bus.url
            );
        }
        let tls_files = [
            ("ca_file", &tls.ca_file),
            ("cert_file", &tls.cert_file),
            ("key_file", &tls.key_file),
        ];
        if !tls.enabled {
            let set: Vec<&str> = tls_files
                .iter()
                .chain(
                    [
                        ("key_password_file", &tls.key_password_file),
                        ("key_password_env", &tls.key_password_env),
                    ]
                    .iter(),
                )
                .filter(|(_, v)| !v.trim().is_empty())
                .map(|(k, _)| *k)
                .collect();
            if !set.is_empty() {
                bail!(
                    "bus.tls.{} set but bus.tls.enabled = false: enable TLS, or remove them",
                    set.join(", bus.tls.")
                );
            }
        } else {
            for (key, path) in tls_files {
                existing_file(&format!("bus.tls.{key}"), path)?;
            }
            if tls.cert_file.trim().is_empty() != tls.key_file.trim().is_empty() {
                bail!("bus.tls.cert_file and bus.tls.key_file go together (mutual TLS): set both or neither");
            }
            let key_password = secret_source("bus.tls.key_password", &tls.key_password_file, &tls.key_password_env)?;
            if key_password && tls.key_file.trim().is_empty() {
                bail!("bus.tls.key_password_file / key_password_env without bus.tls.key_file");
            }
        }
        if sasl_on {
            if opptak_bus::security::ScramMechanism::parse(&sasl.mechanism).is_none() {
                bail!(
                    "bus.sasl.mechanism = {:?}: expected \"SCRAM-SHA-512\" or \"SCRAM-SHA-256\" (or \"\" for no SASL)",
                    sasl.mechanism
                );
            }
            if sasl.username.trim().is_empty() {
                bail!("bus.sasl.username is empty: the principal is User:<username>");
            }
            if !secret_source("bus.sasl.password", &sasl.password_file, &sasl.password_env)? {
                bail!(
                    "bus.sasl needs the password from bus.sasl.password_file or from the environment variable \
                     named by bus.sasl.password_env (never in the configuration itself)"
                );
            }
            if !tls.enabled && !sasl.allow_plaintext {
                bail!(
                    "bus.sasl without bus.tls: every record (call audio) would cross the network in clear. \
                     Enable bus.tls, or set bus.sasl.allow_plaintext = true for a test broker"
                );
            }
        } else {
            let set: Vec<&str> = [
                ("username", &sasl.username),
                ("password_file", &sasl.password_file),
                ("password_env", &sasl.password_env),
            ]
            .iter()
            .filter(|(_, v)| !v.trim().is_empty())
            .map(|(k, _)| *k)
            .collect();
            if !set.is_empty() {
                bail!(
                    "bus.sasl.{} set but bus.sasl.mechanism is empty: set it to \"SCRAM-SHA-512\"",
                    set.join(", bus.sasl.")
                );
            }
        }
        Ok(())
    }

    /// The PostgreSQL password file and the TLS files the URL names exist.
    fn check_metadata_url(&self) -> Result<()> {
        let url = &self.storage.metadata;
        let postgres = url.starts_with("postgres://") || url.starts_with("postgresql://");
        let file = self.storage.metadata_password_file.trim();
        if !file.is_empty() {
            if !postgres {
                bail!("storage.metadata_password_file applies to a postgres:// metadata URL");
            }
            if url.contains(&format!("{}=", opptak_store::meta::PASSWORD_FILE_PARAM)) {
                bail!("storage.metadata_password_file and a password_file parameter in storage.metadata: give one");
            }
            if reqwest::Url::parse(&one_host(url))
                .ok()
                .and_then(|u| u.password().map(str::to_owned))
                .is_some()
            {
                bail!("storage.metadata carries a password and storage.metadata_password_file names one: give one");
            }
            existing_file("storage.metadata_password_file", file)?;
        }
        if postgres {
            // Several hosts, target_session_attrs: what the store will accept.
            opptak_store::meta::check_url(url).context("storage.metadata")?;
            let u = reqwest::Url::parse(&one_host(url))
                .with_context(|| format!("storage.metadata {}", opptak_store::meta::redact(url)))?;
            for (k, v) in u.query_pairs() {
                if matches!(k.as_ref(), "sslrootcert" | "sslcert" | "sslkey") {
                    existing_file(&format!("storage.metadata {k}"), &v)?;
                }
            }
        }
        Ok(())
    }

    /// The metadata store's URL as the store opens it: with
    /// `storage.metadata_password_file` as its `password_file` parameter
    /// (read by the store; the password itself is in no URL).
    pub fn metadata_url(&self) -> String {
        let url = &self.storage.metadata;
        let file = self.storage.metadata_password_file.trim();
        if file.is_empty() {
            return url.clone();
        }
        let sep = if url.contains('?') { '&' } else { '?' };
        let mut out = format!("{url}{sep}{}=", opptak_store::meta::PASSWORD_FILE_PARAM);
        out.extend(url_encode(file));
        out
    }

    /// The Kafka client options: replication, the consumer limit and the
    /// TLS/SASL settings, with the secrets read from their files or
    /// environment variables now.
    pub fn kafka_options(&self) -> Result<opptak_bus::kafka::KafkaOptions> {
        use opptak_bus::security::{ClientCert, KafkaSasl, KafkaSecurity, KafkaTls, Password, ScramMechanism};
        let (tls, sasl) = (&self.bus.tls, &self.bus.sasl);
        let path = |p: &str| (!p.trim().is_empty()).then(|| std::path::PathBuf::from(p.trim()));
        let tls = if tls.enabled {
            let client_cert = match (path(&tls.cert_file), path(&tls.key_file)) {
                (Some(cert_file), Some(key_file)) => Some(ClientCert {
                    cert_file,
                    key_file,
                    key_password: read_secret("bus.tls.key_password", &tls.key_password_file, &tls.key_password_env)?
                        .map(|s| Password::new(s.0)),
                }),
                _ => None,
            };
            Some(KafkaTls {
                ca_file: path(&tls.ca_file),
                client_cert,
            })
        } else {
            None
        };
        let sasl = match ScramMechanism::parse(&sasl.mechanism) {
            Some(mechanism) => Some(KafkaSasl {
                mechanism,
                username: sasl.username.trim().to_owned(),
                password: read_secret("bus.sasl.password", &sasl.password_file, &sasl.password_env)?
                    .map(|s| Password::new(s.0))
                    .context("bus.sasl needs a password")?,
            }),
            None => None,
        };
        Ok(opptak_bus::kafka::KafkaOptions {
            replication: self.bus.replication.fixed(),
            min_insync_replicas: self.bus.min_insync_replicas.fixed(),
            group_stuck_after: Duration::from_secs(self.bus.group_stuck_s),
            security: KafkaSecurity { tls, sasl },
            ..Default::default()
        })
    }

    /// The retention policy: the file named by `retention.policy`, or the
    /// shipped default. A policy with gaps or overlaps stops the process here.
    pub fn policy(&self) -> Result<opptak_domain::retention::Policy> {
        let (text, origin) = self.policy_text()?;
        opptak_domain::retention::Policy::parse(&text).with_context(|| origin.clone())
    }

    /// The policy file's text in force and where it comes from (the shipped
    /// default, or `retention.policy <path>`): what `policy.load` audits.
    pub fn policy_text(&self) -> Result<(String, String)> {
        let path = self.retention.policy.trim();
        if path.is_empty() {
            return Ok((
                opptak_domain::retention::DEFAULT_POLICY.to_owned(),
                "the shipped default policy".into(),
            ));
        }
        let text = std::fs::read_to_string(path).with_context(|| format!("reading retention.policy {path}"))?;
        Ok((text, format!("retention.policy {path}")))
    }

    pub fn messages_config(&self) -> opptak_recorder::conversations::ConversationConfig {
        opptak_recorder::conversations::ConversationConfig {
            topic: format!("{}opptak.messages.v1", self.bus.topic_prefix),
            deadletter: format!("{}opptak.deadletter.v1", self.bus.topic_prefix),
            group: self.messages.group.clone(),
            max_batch: self.messages.max_batch,
            poll_wait: Duration::from_millis(200),
            idle_end: Duration::from_secs(self.messages.idle_end_s),
            housekeeping: Duration::from_secs(self.messages.housekeeping_s),
        }
    }

    pub fn recorder_config(&self) -> opptak_recorder::RecorderConfig {
        opptak_recorder::RecorderConfig {
            topics: opptak_recorder::Topics::with_prefix(&self.bus.topic_prefix),
            group: self.recorder.group.clone(),
            flush_interval: Duration::from_millis(self.recorder.flush_interval_ms),
            max_batch: self.recorder.max_batch,
            reassembly: opptak_domain::reassembly::ReassemblyConfig {
                window: self.recorder.reorder_window,
                max_call_secs: self.recorder.max_call_s,
            },
            reorder_timeout: Duration::from_millis(self.recorder.reorder_timeout_ms),
            max_segment_bytes: self.recorder.max_segment_bytes,
            compact: self.recorder.compact,
            stream_segment_bytes: self.recorder.stream_segment_bytes,
            compact_sweep_interval: Duration::from_secs(self.recorder.compact_sweep_s),
        }
    }
}

/// A TOML syntax error in one line: where (line and column) and what,
/// without the multi-line excerpt the parser's own message carries.
fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let Some(span) = e.span() else {
        return e.message().to_owned();
    };
    let before = &text[..span.start.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("line {line}, column {column}: {}", e.message().trim())
}

/// `key`: empty, or a file that exists.
fn existing_file(key: &str, path: &str) -> Result<()> {
    let path = path.trim();
    if !path.is_empty() && !Path::new(path).is_file() {
        bail!("{key} = {path:?}: no such file");
    }
    Ok(())
}

/// Whether a secret `key` is configured, through `{key}_file` or `{key}_env`
/// (not both); the file must exist and the variable be set.
fn secret_source(key: &str, file: &str, env: &str) -> Result<bool> {
    let (file, env) = (file.trim(), env.trim());
    match (file.is_empty(), env.is_empty()) {
        (true, true) => Ok(false),
        (false, false) => bail!("{key}_file and {key}_env are both set: give one"),
        (false, true) => {
            existing_file(&format!("{key}_file"), file)?;
            Ok(true)
        }
        (true, false) => {
            if std::env::var_os(env).is_none_or(|v| v.is_empty()) {
                bail!("{key}_env names {env}, which is not set");
            }
            Ok(true)
        }
    }
}

/// Reads a secret from its file (one trailing newline dropped) or from the
/// environment variable named; `None` when neither is configured.
fn read_secret(key: &str, file: &str, env: &str) -> Result<Option<Secret>> {
    let (file, env) = (file.trim(), env.trim());
    let value = if !file.is_empty() {
        let text = std::fs::read_to_string(file).with_context(|| format!("reading {key}_file {file}"))?;
        text.trim_end_matches(['\n', '\r']).to_owned()
    } else if !env.is_empty() {
        std::env::var(env).with_context(|| format!("{key}_env names {env}, which is not set"))?
    } else {
        return Ok(None);
    };
    if value.is_empty() {
        bail!("{key}: the secret is empty");
    }
    Ok(Some(Secret(value)))
}

/// Percent-encodes a query value.
fn url_encode(v: &str) -> impl Iterator<Item = String> + '_ {
    v.bytes().map(|b| {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            (b as char).to_string()
        } else {
            format!("%{b:02X}")
        }
    })
}

fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

fn env_value(v: &str) -> toml::Value {
    if let Ok(i) = v.parse::<i64>() {
        toml::Value::Integer(i)
    } else if let Ok(b) = v.parse::<bool>() {
        toml::Value::Boolean(b)
    } else if let Some(f) = v.parse::<f64>().ok().filter(|f| v.contains('.') && f.is_finite()) {
        // Shares and other fractions (`OPPTAK__QA__SHARE=0.25`).
        toml::Value::Float(f)
    } else {
        toml::Value::String(v.to_owned())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    /// R13 (issue 15, finding 6): the old main sent call audio and
    /// transcripts to whatever URL the configuration named.
    #[test]
    fn model_servers_are_loopback_or_allow_listed() {
        let with = |pairs: &[(&str, &str)]| {
            let vars: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            super::Config::load_from(None, &vars)
        };
        for url in ["http://127.0.0.1:19100", "http://localhost:8000", "http://[::1]:9000"] {
            assert!(with(&[("OPPTAK__KI__ASR_URL", url)]).is_ok(), "{url}");
        }
        let err = with(&[("OPPTAK__KI__ASR_URL", "https://api.openai.com")]).unwrap_err();
        let err = format!("{err:#}");
        assert!(
            err.contains("api.openai.com is not loopback") && err.contains("ki.model_hosts"),
            "{err}"
        );
        assert!(with(&[("OPPTAK__KI__LLM_URL", "http://llm.evil.example/v1")]).is_err());
        assert!(with(&[("OPPTAK__KI__LLM_URL", "not a url")]).is_err());
        let ok = with(&[
            ("OPPTAK__KI__LLM_URL", "http://vllm.internal.bank:8000"),
            ("OPPTAK__KI__ASR_URL", "http://whisper.internal.bank:9000"),
            ("OPPTAK__KI__MODEL_HOSTS", "whisper.internal.bank, VLLM.internal.bank"),
        ]);
        assert!(ok.is_ok(), "{ok:?}");
    }

    #[test]
    fn replication_is_auto_or_a_number_within_bounds() {
        use super::{AutoCount, Config};
        let with = |pairs: &[(&str, &str)]| {
            let vars: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            Config::load_from(None, &vars)
        };
        let c = with(&[]).unwrap();
        assert_eq!(
            (c.bus.replication, c.bus.min_insync_replicas),
            (AutoCount::Auto, AutoCount::Auto)
        );
        let o = c.kafka_options().unwrap();
        assert_eq!((o.replication, o.min_insync_replicas), (None, None));
        let c = with(&[
            ("OPPTAK__BUS__REPLICATION", "3"),
            ("OPPTAK__BUS__MIN_INSYNC_REPLICAS", "3"),
        ])
        .unwrap();
        let o = c.kafka_options().unwrap();
        assert_eq!((o.replication, o.min_insync_replicas), (Some(3), Some(3)));
        assert!(c.to_masked_toml().unwrap().contains("replication = 3"));
        assert!(with(&[("OPPTAK__BUS__REPLICATION", "AUTO")]).is_ok());
        let err = |pairs: &[(&str, &str)]| format!("{:#}", with(pairs).unwrap_err());
        assert!(err(&[("OPPTAK__BUS__REPLICATION", "three")]).contains("expected \"auto\" or a whole number"));
        assert!(err(&[("OPPTAK__BUS__REPLICATION", "0")]).contains("bus.replication = 0"));
        let e = err(&[
            ("OPPTAK__BUS__REPLICATION", "2"),
            ("OPPTAK__BUS__MIN_INSYNC_REPLICAS", "3"),
        ]);
        assert!(e.contains("bus.min_insync_replicas = 3") && e.contains("1..=2"), "{e}");
        // What `opptak config` prints loads again.
        let printed = with(&[]).unwrap().to_masked_toml().unwrap();
        assert!(printed.contains("replication = \"auto\""), "{printed}");
    }

    #[test]
    fn siprec_section_loads_validates_and_its_mapping_example_parses() {
        let c = Config::load_from(None, &[]).unwrap();
        assert_eq!((c.siprec.chunk_ms, c.siprec.rtp_ports.as_str()), (100, "40000-40999"));
        assert!(c.siprec.mapping.is_empty());
        let bad = vec![("OPPTAK__SIPREC__RTP_PORTS".to_string(), "5-4".to_string())];
        let err = format!("{:#}", Config::load_from(None, &bad).unwrap_err());
        assert!(err.contains("siprec.rtp_ports"), "{err}");
        let text: String = include_str!("default.toml")
            .lines()
            .skip_while(|l| *l != "# [[siprec.mapping]]")
            .take_while(|l| l.starts_with('#'))
            .map(|l| format!("{}\n", l.trim_start_matches("# ")))
            .collect();
        let doc: toml::Table = text.parse().unwrap();
        let entries: Vec<opptak_siprec::config::Mapping> = doc["siprec"]["mapping"].clone().try_into().unwrap();
        assert_eq!(entries[0].extension, "skill=invest*");
    }

    #[test]
    fn the_commented_example_in_default_toml_is_valid() {
        let text: String = include_str!("default.toml")
            .lines()
            .skip_while(|l| *l != "# [oidc]")
            .take_while(|l| !l.is_empty())
            .map(|l| format!("{}\n", l.trim_start_matches("# ")))
            .collect();
        let doc: toml::Table = text.parse().unwrap();
        let section: OidcSection = doc["oidc"].clone().try_into().unwrap();
        assert_eq!(section.fetch_timeout_ms, 5000);
        opptak_review::oidc::check_config(&section).unwrap();
    }

    #[test]
    fn the_section_is_optional_and_takes_env_overrides() {
        assert!(Config::load_from(None, &[]).unwrap().oidc.is_none());
        let env = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        let c = Config::load_from(
            None,
            &env(&[
                ("OPPTAK__OIDC__ISSUER", "https://idp.example/realms/bank"),
                ("OPPTAK__OIDC__AUDIENCE", "opptak-review"),
                ("OPPTAK__OIDC__ALGORITHMS", "RS256, PS256"),
            ]),
        )
        .unwrap();
        let oidc = c.oidc.unwrap();
        assert_eq!(oidc.algorithms, vec!["RS256", "PS256"]);
        assert_eq!((oidc.roles_claim.as_str(), oidc.leeway_s), ("roles", 60));
        let e = Config::load_from(None, &env(&[("OPPTAK__OIDC__AUDIENCE", "x")])).unwrap_err();
        assert!(format!("{e:#}").contains("issuer"), "{e:#}");
        let e = Config::load_from(
            None,
            &env(&[
                ("OPPTAK__OIDC__ISSUER", "https://idp.example"),
                ("OPPTAK__OIDC__AUDIENCE", "x"),
                ("OPPTAK__OIDC__ALGORITHMS", "HS256"),
            ]),
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("algorithm confusion"), "{e:#}");
    }

    use super::*;

    #[test]
    fn defaults_load_and_env_overrides_apply() {
        let env = vec![
            ("OPPTAK__BUS__URL".to_string(), "kafka://127.0.0.1:9092".to_string()),
            ("OPPTAK__RECORDER__FLUSH_INTERVAL_MS".to_string(), "100".to_string()),
        ];
        let c = Config::load_from(None, &env).unwrap();
        assert_eq!(c.bus.url, "kafka://127.0.0.1:9092");
        assert_eq!(c.recorder.flush_interval_ms, 100);
    }

    #[test]
    fn qa_share_is_a_fraction() {
        let c = Config::load_from(None, &[]).unwrap();
        assert_eq!(c.qa.share, 0.1);
        let env = vec![("OPPTAK__QA__SHARE".to_string(), "0.25".to_string())];
        assert_eq!(Config::load_from(None, &env).unwrap().qa.share, 0.25);
        let env = vec![("OPPTAK__QA__SHARE".to_string(), "1".to_string())];
        assert_eq!(Config::load_from(None, &env).unwrap().qa.share, 1.0);
        for bad in ["1.5", "-0.1"] {
            let env = vec![("OPPTAK__QA__SHARE".to_string(), bad.to_string())];
            let e = format!("{:#}", Config::load_from(None, &env).unwrap_err());
            assert!(e.contains("qa.share") && e.contains("0.0 to 1.0"), "{e}");
        }
    }

    #[test]
    fn telemetry_listen_is_an_address_or_empty() {
        assert_eq!(Config::load_from(None, &[]).unwrap().telemetry.listen, "127.0.0.1:9464");
        for ok in ["", "0.0.0.0:9464", "localhost:9464"] {
            let env = vec![("OPPTAK__TELEMETRY__LISTEN".to_string(), ok.to_string())];
            assert_eq!(Config::load_from(None, &env).unwrap().telemetry.listen, ok);
        }
        let env = vec![("OPPTAK__TELEMETRY__LISTEN".to_string(), "metrics.example".to_string())];
        let e = format!("{:#}", Config::load_from(None, &env).unwrap_err());
        assert!(e.contains("telemetry.listen"), "{e}");
    }

    #[test]
    fn telemetry_otlp_endpoint_is_an_http_url_or_empty() {
        let cfg = Config::load_from(None, &[]).unwrap();
        assert_eq!(cfg.telemetry.otlp_endpoint, "");
        assert_eq!(cfg.telemetry.otlp_interval_ms, 2000);
        for ok in [
            "",
            "http://otel-collector:4318",
            "https://collector.example/otlp",
            "http://127.0.0.1:4318/",
        ] {
            let env = vec![("OPPTAK__TELEMETRY__OTLP_ENDPOINT".to_string(), ok.to_string())];
            assert_eq!(Config::load_from(None, &env).unwrap().telemetry.otlp_endpoint, ok);
        }
        for bad in [
            "otel-collector:4318",
            "grpc://otel-collector:4317",
            "http://",
            "file:///tmp/x",
        ] {
            let env = vec![("OPPTAK__TELEMETRY__OTLP_ENDPOINT".to_string(), bad.to_string())];
            let e = format!("{:#}", Config::load_from(None, &env).unwrap_err());
            assert!(
                e.contains("telemetry.otlp_endpoint") && e.contains("http://"),
                "{bad}: {e}"
            );
        }
        let env = vec![("OPPTAK__TELEMETRY__OTLP_INTERVAL_MS".to_string(), "0".to_string())];
        let e = format!("{:#}", Config::load_from(None, &env).unwrap_err());
        assert!(e.contains("telemetry.otlp_interval_ms"), "{e}");
    }

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn refused(pairs: &[(&str, &str)]) -> String {
        format!("{:#}", Config::load_from(None, &vars(pairs)).unwrap_err())
    }

    #[test]
    fn bus_tls_and_sasl_map_onto_the_kafka_client() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p.display().to_string()
        };
        let (ca, cert, key) = (file("ca.pem", "x"), file("c.pem", "x"), file("c.key", "x"));
        let pw = file("pw", "scram-secret\n");
        let c = Config::load_from(
            None,
            &vars(&[
                ("OPPTAK__BUS__URL", "kafka://broker:9093"),
                ("OPPTAK__BUS__TLS__ENABLED", "true"),
                ("OPPTAK__BUS__TLS__CA_FILE", &ca),
                ("OPPTAK__BUS__TLS__CERT_FILE", &cert),
                ("OPPTAK__BUS__TLS__KEY_FILE", &key),
                ("OPPTAK__BUS__SASL__MECHANISM", "SCRAM-SHA-512"),
                ("OPPTAK__BUS__SASL__USERNAME", "recorder"),
                ("OPPTAK__BUS__SASL__PASSWORD_FILE", &pw),
            ]),
        )
        .unwrap();
        let opts = c.kafka_options().unwrap();
        assert_eq!(opts.security.protocol(), "sasl_ssl");
        assert_eq!(
            opts.security.describe(),
            "sasl_ssl as User:recorder (SCRAM-SHA-512), client certificate"
        );
        let tls = opts.security.tls.as_ref().unwrap();
        assert_eq!(tls.ca_file.as_deref(), Some(std::path::Path::new(&ca)));
        assert_eq!(tls.client_cert.as_ref().unwrap().key_file.display().to_string(), key);
        // The password was read (its trailing newline dropped) and prints nowhere.
        let shown = format!("{c:?} {opts:?}");
        assert!(!shown.contains("scram-secret"), "{shown}");
        assert!(format!("{:?}", opts.security.sasl.as_ref().unwrap().password) == "*****");
        // The defaults: plaintext.
        let plain = Config::load_from(None, &vars(&[("OPPTAK__BUS__URL", "kafka://b:9092")])).unwrap();
        assert_eq!(plain.kafka_options().unwrap().security.protocol(), "plaintext");
    }

    #[test]
    fn bus_security_misconfigurations_are_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "secret").unwrap();
        let pw = pw.display().to_string();
        let kafka = ("OPPTAK__BUS__URL", "kafka://broker:9093");
        let tls = ("OPPTAK__BUS__TLS__ENABLED", "true");
        let scram = ("OPPTAK__BUS__SASL__MECHANISM", "SCRAM-SHA-512");
        let user = ("OPPTAK__BUS__SASL__USERNAME", "recorder");
        let file = ("OPPTAK__BUS__SASL__PASSWORD_FILE", pw.as_str());
        for (pairs, want) in [
            (
                vec![kafka, tls, ("OPPTAK__BUS__TLS__CA_FILE", "/nonexistent/ca.pem")],
                "bus.tls.ca_file",
            ),
            (
                vec![kafka, tls, ("OPPTAK__BUS__TLS__CERT_FILE", pw.as_str())],
                "set both or neither",
            ),
            (
                vec![kafka, ("OPPTAK__BUS__TLS__CA_FILE", pw.as_str())],
                "bus.tls.enabled = false",
            ),
            (vec![kafka, scram, user, file], "bus.sasl without bus.tls"),
            (vec![kafka, tls, scram, user], "password_file"),
            (vec![kafka, tls, scram, file], "bus.sasl.username"),
            (
                vec![kafka, tls, ("OPPTAK__BUS__SASL__MECHANISM", "PLAIN"), user, file],
                "SCRAM-SHA-512",
            ),
            (
                vec![kafka, tls, scram, user, file, ("OPPTAK__BUS__SASL__PASSWORD_ENV", "X")],
                "give one",
            ),
            (
                vec![
                    kafka,
                    tls,
                    scram,
                    user,
                    ("OPPTAK__BUS__SASL__PASSWORD_ENV", "OPPTAK_TEST_UNSET_PASSWORD_VAR"),
                ],
                "OPPTAK_TEST_UNSET_PASSWORD_VAR, which is not set",
            ),
            (vec![("OPPTAK__BUS__URL", "memory://"), tls], "kafka:// bus"),
            (
                vec![("OPPTAK__BUS__SASL__USERNAME", "x")],
                "bus.sasl.mechanism is empty",
            ),
        ] {
            let e = refused(&pairs);
            assert!(e.contains(want), "{pairs:?}: {e}");
        }
        // SASL without TLS only when asked for.
        let c = Config::load_from(
            None,
            &vars(&[kafka, scram, user, file, ("OPPTAK__BUS__SASL__ALLOW_PLAINTEXT", "true")]),
        )
        .unwrap();
        assert_eq!(c.kafka_options().unwrap().security.protocol(), "sasl_plaintext");
    }

    /// `url` with its password in a file `name` under `dir` (written here):
    /// loaded, the file named in the store's URL. The config and the file.
    fn with_password_file(dir: &std::path::Path, name: &str, url: &str) -> (Config, String) {
        let pw = dir.join(name);
        std::fs::write(&pw, "pg-secret").unwrap();
        let pw = pw.display().to_string();
        let c = Config::load_from(
            None,
            &vars(&[
                ("OPPTAK__STORAGE__METADATA", url),
                ("OPPTAK__STORAGE__METADATA_PASSWORD_FILE", &pw),
            ]),
        )
        .unwrap();
        assert!(
            c.metadata_url().starts_with(&format!("{url}&password_file=/")),
            "{}",
            c.metadata_url()
        );
        (c, pw)
    }

    #[test]
    fn the_metadata_password_comes_from_a_file_and_never_prints() {
        let dir = tempfile::tempdir().unwrap();
        let (c, pw) = with_password_file(
            dir.path(),
            "pg password",
            "postgres://opptak@db:5432/opptak?sslmode=verify-full",
        );
        assert!(c.metadata_url().contains("pg%20password"), "{}", c.metadata_url());
        let inline = Config::load_from(
            None,
            &vars(&[("OPPTAK__STORAGE__METADATA", "postgres://u:inline-secret@db/x")]),
        )
        .unwrap();
        let shown = format!("{inline:?}");
        assert!(
            !shown.contains("inline-secret") && shown.contains("u:*****@db"),
            "{shown}"
        );
        for (pairs, want) in [
            (
                vec![
                    ("OPPTAK__STORAGE__METADATA", "postgres://u:p@db/x"),
                    ("OPPTAK__STORAGE__METADATA_PASSWORD_FILE", pw.as_str()),
                ],
                "give one",
            ),
            (
                vec![("OPPTAK__STORAGE__METADATA_PASSWORD_FILE", pw.as_str())],
                "postgres://",
            ),
            (
                vec![(
                    "OPPTAK__STORAGE__METADATA",
                    "postgres://u@db/x?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
                )],
                "sslrootcert",
            ),
        ] {
            let e = refused(&pairs);
            assert!(e.contains(want), "{pairs:?}: {e}");
            assert!(!e.contains("u:p@"), "{e}");
        }
    }

    #[test]
    fn a_metadata_url_with_several_hosts_loads_and_never_prints_its_password() {
        let dir = tempfile::tempdir().unwrap();
        let url = "postgres://opptak@db1:5432,db2:5433/opptak?sslmode=disable&target_session_attrs=read-write";
        let (_, pw) = with_password_file(dir.path(), "pw", url);
        // The first host with a port is what the url crate cannot read
        // (`5432,db2` is no port): on its own it showed the URL as written.
        for hosts in ["db1,db2:5433", "db1:5432,db2:5433"] {
            let inline = format!("postgres://u:inline-secret@{hosts}/x?target_session_attrs=primary&token=t0k");
            let c = Config::load_from(None, &vars(&[("OPPTAK__STORAGE__METADATA", &inline)])).unwrap();
            let shown = format!("{c:?}");
            assert!(
                shown.contains(&format!(
                    "postgres://u:*****@{hosts}/x?target_session_attrs=primary&token=*****"
                )) && !shown.contains("inline-secret")
                    && !shown.contains("t0k"),
                "{shown}"
            );
            assert!(!mask_url(&inline).contains("inline-secret"), "{}", mask_url(&inline));
        }
        for (pairs, want) in [
            (
                vec![("OPPTAK__STORAGE__METADATA", "postgres://u:p@db1,db2/x?sslmode=disable")],
                "target_session_attrs=read-write",
            ),
            (
                vec![(
                    "OPPTAK__STORAGE__METADATA",
                    "postgres://u:p@db1,db2/x?target_session_attrs=prefer-standby",
                )],
                "only read-write or primary",
            ),
            (
                vec![
                    (
                        "OPPTAK__STORAGE__METADATA",
                        "postgres://u:p@db1,db2/x?target_session_attrs=read-write",
                    ),
                    ("OPPTAK__STORAGE__METADATA_PASSWORD_FILE", pw.as_str()),
                ],
                "give one",
            ),
        ] {
            let e = refused(&pairs);
            assert!(e.contains(want), "{pairs:?}: {e}");
            assert!(!e.contains("u:p@"), "{e}");
        }
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        let env = vec![("OPPTAK__BUS__URLL".to_string(), "x".to_string())];
        let e = format!("{:#}", Config::load_from(None, &env).unwrap_err());
        assert!(e.contains("urll"), "{e}");
        let env = vec![("OPPTAK__RECORDER__FLUSH_INTERVAL_MS".to_string(), "0".to_string())];
        let e = format!("{:#}", Config::load_from(None, &env).unwrap_err());
        assert!(e.contains("flush_interval_ms"), "{e}");
        let e = refused(&[("OPPTAK__BUS__TLS__CA_FLIE", "x")]);
        assert!(e.contains("ca_flie"), "{e}");
        let e = refused(&[("OPPTAK__BUS", "x")]);
        assert!(e.contains("OPPTAK__SECTION__KEY"), "{e}");
    }
}
