//! How a Kafka bus protects its connections: TLS (optionally with a client
//! certificate, for brokers that require mutual TLS) and SASL/SCRAM, mapped
//! onto librdkafka's settings. The process authenticates as one principal
//! (the SASL user) for every role it runs; roles that need their own
//! principals run as their own processes.
//!
//! Secrets arrive here already read (the configuration resolves files and
//! environment variables); [`Password`] never prints.

use std::fmt;
use std::path::PathBuf;

/// A password or passphrase: `Debug` prints `*****`.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("*****")
    }
}

/// The SCRAM mechanisms opptak speaks (RFC 5802/7677).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScramMechanism {
    Sha256,
    Sha512,
}

impl ScramMechanism {
    /// `SCRAM-SHA-256` or `SCRAM-SHA-512` (any case).
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_uppercase().as_str() {
            "SCRAM-SHA-256" => Some(Self::Sha256),
            "SCRAM-SHA-512" => Some(Self::Sha512),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sha256 => "SCRAM-SHA-256",
            Self::Sha512 => "SCRAM-SHA-512",
        }
    }
}

/// A client certificate and its private key (PEM files).
#[derive(Clone, Debug)]
pub struct ClientCert {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// The key's passphrase, when the key file is encrypted.
    pub key_password: Option<Password>,
}

/// TLS to the brokers; their certificates are checked against `ca_file` and
/// their host names against the certificates (`https` identification).
#[derive(Clone, Debug, Default)]
pub struct KafkaTls {
    /// The CA bundle (PEM) the brokers' certificates chain to; `None`: the
    /// system's trust store.
    pub ca_file: Option<PathBuf>,
    /// Sent to brokers that ask for one (mutual TLS).
    pub client_cert: Option<ClientCert>,
}

/// SASL/SCRAM credentials: the principal is `User:<username>`.
#[derive(Clone, Debug)]
pub struct KafkaSasl {
    pub mechanism: ScramMechanism,
    pub username: String,
    pub password: Password,
}

/// Plaintext when both are `None` (a local broker, tests).
#[derive(Clone, Debug, Default)]
pub struct KafkaSecurity {
    pub tls: Option<KafkaTls>,
    pub sasl: Option<KafkaSasl>,
}

impl KafkaSecurity {
    /// librdkafka's `security.protocol`.
    pub fn protocol(&self) -> &'static str {
        match (&self.tls, &self.sasl) {
            (None, None) => "plaintext",
            (Some(_), None) => "ssl",
            (None, Some(_)) => "sasl_plaintext",
            (Some(_), Some(_)) => "sasl_ssl",
        }
    }

    /// For start-up logs: the protocol and the principal, never a secret.
    pub fn describe(&self) -> String {
        let mut out = self.protocol().to_owned();
        if let Some(sasl) = &self.sasl {
            out.push_str(&format!(" as User:{} ({})", sasl.username, sasl.mechanism.as_str()));
        }
        if self.tls.as_ref().is_some_and(|t| t.client_cert.is_some()) {
            out.push_str(", client certificate");
        }
        out
    }

    /// The librdkafka settings, applied to every client the bus creates.
    pub(crate) fn settings(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![("security.protocol", self.protocol().to_owned())];
        if let Some(tls) = &self.tls {
            // librdkafka's default since 2.0, stated so that no override
            // (an older library, a pass-through setting) turns it off.
            out.push(("ssl.endpoint.identification.algorithm", "https".to_owned()));
            out.push(("enable.ssl.certificate.verification", "true".to_owned()));
            if let Some(ca) = &tls.ca_file {
                out.push(("ssl.ca.location", ca.display().to_string()));
            }
            if let Some(c) = &tls.client_cert {
                out.push(("ssl.certificate.location", c.cert_file.display().to_string()));
                out.push(("ssl.key.location", c.key_file.display().to_string()));
                if let Some(p) = &c.key_password {
                    out.push(("ssl.key.password", p.expose().to_owned()));
                }
            }
        }
        if let Some(sasl) = &self.sasl {
            out.push(("sasl.mechanism", sasl.mechanism.as_str().to_owned()));
            out.push(("sasl.username", sasl.username.clone()));
            out.push(("sasl.password", sasl.password.expose().to_owned()));
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sasl_ssl() -> KafkaSecurity {
        KafkaSecurity {
            tls: Some(KafkaTls {
                ca_file: Some("/etc/opptak/ca.pem".into()),
                client_cert: Some(ClientCert {
                    cert_file: "/etc/opptak/client.pem".into(),
                    key_file: "/etc/opptak/client.key".into(),
                    key_password: Some(Password::new("key-secret")),
                }),
            }),
            sasl: Some(KafkaSasl {
                mechanism: ScramMechanism::parse("scram-sha-512").unwrap(),
                username: "recorder".into(),
                password: Password::new("scram-secret"),
            }),
        }
    }

    #[test]
    fn maps_onto_librdkafka_settings() {
        let s: std::collections::HashMap<_, _> = sasl_ssl().settings().into_iter().collect();
        assert_eq!(s["security.protocol"], "sasl_ssl");
        assert_eq!(s["ssl.ca.location"], "/etc/opptak/ca.pem");
        assert_eq!(s["ssl.certificate.location"], "/etc/opptak/client.pem");
        assert_eq!(s["ssl.key.location"], "/etc/opptak/client.key");
        assert_eq!(s["ssl.key.password"], "key-secret");
        assert_eq!(s["ssl.endpoint.identification.algorithm"], "https");
        assert_eq!(s["sasl.mechanism"], "SCRAM-SHA-512");
        assert_eq!(
            (s["sasl.username"].as_str(), s["sasl.password"].as_str()),
            ("recorder", "scram-secret")
        );
        let plain = KafkaSecurity::default();
        assert_eq!(plain.settings(), vec![("security.protocol", "plaintext".to_owned())]);
        let tls_only = KafkaSecurity {
            tls: Some(KafkaTls::default()),
            sasl: None,
        };
        assert_eq!(tls_only.protocol(), "ssl");
        assert!(ScramMechanism::parse("PLAIN").is_none());
    }

    #[test]
    fn secrets_never_print() {
        let s = sasl_ssl();
        let text = format!("{s:?} {}", s.describe());
        assert!(!text.contains("secret"), "{text}");
        assert!(text.contains("*****") && text.contains("User:recorder"), "{text}");
    }
}
