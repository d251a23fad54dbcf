//! `[siprec]` configuration and the business-context mapping.
//!
//! The metadata names participants, not desks: which desk, service
//! category and KI setting a call gets comes from `[[siprec.mapping]]`
//! entries (first match wins; every criterion an entry sets must match),
//! else `[siprec.default]`.

use crate::metadata::{Metadata, Sides};
use opptak_domain::model::{Desk, ServiceCategory};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SiprecConfig {
    /// SIP listeners, `udp:IP:PORT`, `tcp:IP:PORT` or `tls:IP:PORT` (a
    /// list, or one comma-separated string as an environment override
    /// gives it).
    #[serde(deserialize_with = "list")]
    pub listen: Vec<String>,
    /// The certificate of `tls:` listeners and the CA for mutual TLS.
    #[serde(default)]
    pub tls: Tls,
    /// The IP put into SDP answers and Contact; empty: the listener's IP
    /// (127.0.0.1 for a wildcard listener).
    pub advertise: String,
    /// RTP ports, `FIRST-LAST`; one per recorded stream (two per session),
    /// all bound at start.
    pub rtp_ports: String,
    /// Threads reading the RTP sockets (each wakes at most every 2 ms and
    /// reads every ready socket once); one reads 2,000 calls' packets in
    /// about 0.4 cores.
    #[serde(default = "one")]
    pub rtp_threads: usize,
    /// Length of one AudioChunk.
    pub chunk_ms: u32,
    /// Packets each stream's jitter buffer holds before declaring loss.
    pub jitter_depth: usize,
    /// Sessions at once; one more gets 503 with Retry-After.
    pub max_sessions: usize,
    /// A session without RTP this long ends (CallEnded, reason ERROR).
    pub rtp_timeout_s: u64,
    /// AOR patterns (`*` wildcard, case-insensitive) of agents; a
    /// participant matching one is the agent.
    #[serde(deserialize_with = "list")]
    pub agent_aor: Vec<String>,
    pub default: Context,
    #[serde(default)]
    pub mapping: Vec<Mapping>,
}

fn one() -> usize {
    1
}

/// `[siprec.tls]`: SIP over TLS (SIPS). The shape of `[bus.tls]`, seen
/// from the server's side.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// The server's certificate chain (PEM, leaf first).
    #[serde(default)]
    pub cert_file: String,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1, not encrypted).
    #[serde(default)]
    pub key_file: String,
    /// The CA bundle (PEM) the SRC's client certificate must chain to;
    /// set: every TLS client must present one (mutual TLS); empty: none is
    /// asked for.
    #[serde(default)]
    pub ca_file: String,
}

/// What a call is, for the recorder and KI.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Context {
    pub desk: Desk,
    pub service_category: ServiceCategory,
    pub ki_enabled: bool,
    pub customer_informed: bool,
}

/// One `[[siprec.mapping]]` entry: criteria (empty: any) and the context.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// Pattern on the called number (the user part of the second
    /// participant's AOR, e.g. `+4722*`).
    #[serde(default)]
    pub called: String,
    /// Pattern on the agent's AOR.
    #[serde(default)]
    pub agent_aor: String,
    /// `field=pattern` on an `extensiondata` element (e.g. `skill=invest*`).
    #[serde(default)]
    pub extension: String,
    pub desk: Desk,
    pub service_category: ServiceCategory,
    pub ki_enabled: bool,
    pub customer_informed: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
    /// TCP with TLS (SIPS).
    Tls,
}

/// The checked form.
#[derive(Clone, Debug)]
pub struct Validated {
    pub listen: Vec<(Transport, SocketAddr)>,
    pub rtp_first: u16,
    pub rtp_last: u16,
}

impl SiprecConfig {
    pub fn validate(&self) -> Result<Validated, String> {
        let mut listen = Vec::new();
        for l in &self.listen {
            let (t, addr) = l
                .split_once(':')
                .ok_or_else(|| format!("siprec.listen {l:?}: expected udp:IP:PORT, tcp:IP:PORT or tls:IP:PORT"))?;
            let t = match t {
                "udp" => Transport::Udp,
                "tcp" => Transport::Tcp,
                "tls" => Transport::Tls,
                _ => return Err(format!("siprec.listen {l:?}: transport must be udp, tcp or tls")),
            };
            let addr: SocketAddr = addr.parse().map_err(|e| format!("siprec.listen {l:?}: {e}"))?;
            listen.push((t, addr));
        }
        if listen.is_empty() {
            return Err("siprec.listen is empty".into());
        }
        self.validate_tls(listen.iter().any(|(t, _)| *t == Transport::Tls))?;
        let (a, b) = self
            .rtp_ports
            .split_once('-')
            .ok_or("siprec.rtp_ports: expected FIRST-LAST")?;
        let (rtp_first, rtp_last): (u16, u16) = (
            a.trim().parse().map_err(|_| "siprec.rtp_ports: bad first port")?,
            b.trim().parse().map_err(|_| "siprec.rtp_ports: bad last port")?,
        );
        if rtp_first == 0 || rtp_last < rtp_first.saturating_add(1) {
            return Err("siprec.rtp_ports: need at least two ports, FIRST below LAST, FIRST not 0".into());
        }
        if !(1..=64).contains(&self.rtp_threads) {
            return Err("siprec.rtp_threads must be 1 to 64".into());
        }
        if !(10..=2000).contains(&self.chunk_ms) {
            return Err("siprec.chunk_ms must be 10 to 2000".into());
        }
        if !(1..=64).contains(&self.jitter_depth) {
            return Err("siprec.jitter_depth must be 1 to 64".into());
        }
        if self.max_sessions == 0 || self.rtp_timeout_s == 0 {
            return Err("siprec.max_sessions and siprec.rtp_timeout_s must be positive".into());
        }
        if !self.advertise.is_empty() && self.advertise.parse::<std::net::IpAddr>().is_err() {
            return Err("siprec.advertise must be an IP address or empty".into());
        }
        for m in &self.mapping {
            if !m.extension.is_empty() && !m.extension.contains('=') {
                return Err(format!(
                    "siprec.mapping extension {:?}: expected field=pattern",
                    m.extension
                ));
            }
        }
        Ok(Validated {
            listen,
            rtp_first,
            rtp_last,
        })
    }

    /// A `tls:` listener needs a certificate and key; TLS files without
    /// one are a mistake (TLS meant, plain SIP configured). The files must
    /// exist here; what is in them is checked when the server loads them.
    fn validate_tls(&self, listening: bool) -> Result<(), String> {
        let t = &self.tls;
        let files = [
            ("cert_file", &t.cert_file),
            ("key_file", &t.key_file),
            ("ca_file", &t.ca_file),
        ];
        if !listening {
            let set: Vec<&str> = files
                .iter()
                .filter(|(_, v)| !v.trim().is_empty())
                .map(|(k, _)| *k)
                .collect();
            if !set.is_empty() {
                return Err(format!(
                    "siprec.tls.{} set but siprec.listen has no tls: listener: add one, or remove them",
                    set.join(", siprec.tls.")
                ));
            }
            return Ok(());
        }
        for (key, path) in &files[..2] {
            if path.trim().is_empty() {
                return Err(format!(
                    "siprec.tls.{key} is empty: a tls: listener in siprec.listen needs the server's certificate and key"
                ));
            }
        }
        for (key, path) in files {
            let path = path.trim();
            if !path.is_empty() && !std::path::Path::new(path).is_file() {
                return Err(format!("siprec.tls.{key} = {path:?}: no such file"));
            }
        }
        Ok(())
    }

    pub fn is_agent(&self, aor: &str) -> bool {
        self.agent_aor.iter().any(|p| glob(p, aor))
    }

    /// The context of a call, by the mapping.
    pub fn context(&self, md: &Metadata, sides: &Sides) -> Context {
        let callee_aor = if sides.agent_called {
            &sides.agent_aor
        } else {
            &sides.customer_aor
        };
        let called = user_part(callee_aor);
        self.mapping
            .iter()
            .find(|m| {
                (m.called.is_empty() || glob(&m.called, called))
                    && (m.agent_aor.is_empty() || glob(&m.agent_aor, &sides.agent_aor))
                    && (m.extension.is_empty()
                        || m.extension
                            .split_once('=')
                            .is_some_and(|(f, p)| md.extension(f.trim()).is_some_and(|v| glob(p.trim(), v))))
            })
            .map(|m| Context {
                desk: m.desk,
                service_category: m.service_category,
                ki_enabled: m.ki_enabled,
                customer_informed: m.customer_informed,
            })
            .unwrap_or_else(|| self.default.clone())
    }
}

/// A list of strings, or one string of comma-separated items.
fn list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::Many(v) => v,
        OneOrMany::One(s) => s
            .split(',')
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

/// The user part of a SIP or tel URI: `sip:+4722@x;user=phone` -> `+4722`.
pub fn user_part(aor: &str) -> &str {
    let s = aor.trim().trim_start_matches('<');
    let s = s
        .split_once(':')
        .map(|(scheme, rest)| {
            if scheme.starts_with("sip") || scheme == "tel" {
                rest
            } else {
                s
            }
        })
        .unwrap_or(s);
    s.split(['@', ';', '>']).next().unwrap_or(s)
}

/// `*` matches any run of characters; case-insensitive.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.to_ascii_lowercase(), text.to_ascii_lowercase());
    let parts: Vec<&str> = p.split('*').collect();
    if parts.len() == 1 {
        return p == t;
    }
    let mut rest = t.as_str();
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
    }
    true
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::metadata;

    fn config(mapping: &str) -> SiprecConfig {
        let text = format!(
            "listen = [\"udp:127.0.0.1:0\"]\nadvertise = \"\"\nrtp_ports = \"40000-40009\"\nrtp_threads = 1\nchunk_ms = 100\njitter_depth = 8\n\
max_sessions = 10\nrtp_timeout_s = 30\nagent_aor = []\n\
[default]\ndesk = \"customer_center\"\nservice_category = \"general\"\nki_enabled = false\ncustomer_informed = false\n{mapping}"
        );
        toml::from_str(&text).unwrap()
    }

    #[test]
    fn globs_and_user_parts() {
        assert!(glob("+4722*", "+4722123456"));
        assert!(!glob("+4722*", "+4791234567"));
        assert!(glob("sip:*@Bank.example", "sip:4001@bank.example"));
        assert!(glob("*invest*", "private-investment"));
        assert!(glob("exact", "EXACT"));
        assert_eq!(user_part("sip:+4722@x.example;user=phone"), "+4722");
        assert_eq!(user_part("<tel:+4722>"), "+4722");
    }

    #[test]
    fn the_first_matching_mapping_decides_else_the_default() {
        let c = config(
            "[[mapping]]\nextension = \"skill=invest*\"\ncalled = \"4001\"\ndesk = \"markets\"\nservice_category = \"investment_advice\"\nki_enabled = true\ncustomer_informed = true\n\
[[mapping]]\nagent_aor = \"sip:4001@*\"\ndesk = \"corporate\"\nservice_category = \"loan\"\nki_enabled = false\ncustomer_informed = false\n",
        );
        c.validate().unwrap();
        let md = metadata::parse(metadata::tests::RFC7865.as_bytes()).unwrap();
        let sides = md.sides(|a| c.is_agent(a)).unwrap();
        let ctx = c.context(&md, &sides);
        assert_eq!(
            (ctx.desk, ctx.service_category, ctx.ki_enabled),
            (Desk::Markets, ServiceCategory::InvestmentAdvice, true)
        );
        let md2 = metadata::parse(metadata::tests::RFC7865.replace(">invest<", ">loans<").as_bytes()).unwrap();
        assert_eq!(c.context(&md2, &sides).desk, Desk::Corporate);
        let md3 = metadata::parse(
            metadata::tests::RFC7865
                .replace(">invest<", ">loans<")
                .replace("4001@", "4002@")
                .as_bytes(),
        )
        .unwrap();
        let sides3 = md3.sides(|_| false).unwrap();
        assert_eq!(c.context(&md3, &sides3), c.default);
    }

    #[test]
    fn validation_names_the_bad_key() {
        let mut c = config("");
        c.rtp_ports = "5-4".into();
        assert!(c.validate().unwrap_err().contains("rtp_ports"));
        let mut c = config("");
        c.listen = vec!["sctp:1.2.3.4:5060".into()];
        assert!(c.validate().unwrap_err().contains("listen"));
        assert!(toml::from_str::<SiprecConfig>("bogus = 1").is_err());
        // One comma-separated string (an environment override) is a list too.
        let text = toml::to_string(&config("")).unwrap().replace(
            "listen = [\"udp:127.0.0.1:0\"]",
            "listen = \"udp:127.0.0.1:5070, tcp:127.0.0.1:5070\"",
        );
        let c: SiprecConfig = toml::from_str(&text).unwrap();
        assert_eq!(c.validate().unwrap().listen.len(), 2);
    }

    #[test]
    fn a_tls_listener_needs_certificate_and_key_files_and_tls_files_need_a_listener() {
        let dir = std::env::temp_dir().join(format!("siprec-tls-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("server.pem");
        std::fs::write(&file, "not checked here").unwrap();
        let file = file.display().to_string();
        let mut c = config("");
        c.listen = vec!["tls:127.0.0.1:5061".into()];
        assert!(c.validate().unwrap_err().contains("siprec.tls.cert_file is empty"));
        c.tls.cert_file = file.clone();
        assert!(c.validate().unwrap_err().contains("siprec.tls.key_file is empty"));
        c.tls.key_file = file.clone();
        assert_eq!(
            c.validate().unwrap().listen,
            vec![(Transport::Tls, "127.0.0.1:5061".parse().unwrap())]
        );
        c.tls.ca_file = dir.join("missing.pem").display().to_string();
        assert!(
            c.validate().unwrap_err().contains("siprec.tls.ca_file"),
            "a missing CA file"
        );
        c.tls.ca_file = file;
        c.validate().unwrap();
        c.listen = vec!["tcp:127.0.0.1:5060".into()];
        let err = c.validate().unwrap_err();
        assert!(
            err.contains(
                "siprec.tls.cert_file, siprec.tls.key_file, siprec.tls.ca_file set but siprec.listen has no tls:"
            ),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
