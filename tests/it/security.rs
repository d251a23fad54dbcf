//! Kafka over SASL_SSL with a principal per role, and PostgreSQL over TLS
//! with SCRAM (issue 15, finding 3), against the secured services of
//! `deploy/local/services.sh` (a second broker: client certificates, SCRAM
//! users per role, the standard authorizer with the ACLs of
//! docs/security.md; a TLS-only PostgreSQL cluster).
//!
//! The ACLs name the topics without a prefix, so these tests share the
//! production topic names on that broker and tell their records apart by
//! call id; consumer groups are unique per test under the roles' prefixes.

use crate::common::{required, unique, verify_calls};
use opptak::app::{Edges, RunningRecorder};
use opptak::config::Config;
use opptak::sim::{self, SimCall};
use opptak_bus::BusError;
use opptak_domain::model::Codec;
use opptak_proto::v1;
use opptak_proto::Message;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The secured services, from `services.sh env`.
struct Secure {
    brokers: String,
    tls: PathBuf,
    secrets: PathBuf,
    /// `postgres://opptak_tls@…/opptak?sslmode=verify-full&sslrootcert=…`.
    postgres: String,
}

const PARTITIONS: &str = "4";

fn secure() -> Option<Secure> {
    let var = |k: &str| std::env::var(k).ok();
    match (
        var("OPPTAK_TEST_KAFKA_SECURE"),
        var("OPPTAK_TEST_TLS_DIR"),
        var("OPPTAK_TEST_SECRETS_DIR"),
        var("OPPTAK_TEST_POSTGRES_TLS"),
    ) {
        (Some(brokers), Some(tls), Some(secrets), Some(postgres)) => Some(Secure {
            brokers,
            tls: tls.into(),
            secrets: secrets.into(),
            postgres,
        }),
        _ if required() => panic!(
            "OPPTAK_TEST_KAFKA_SECURE, OPPTAK_TEST_TLS_DIR, OPPTAK_TEST_SECRETS_DIR or OPPTAK_TEST_POSTGRES_TLS \
             not set but OPPTAK_REQUIRE_SERVICES=1"
        ),
        _ => {
            eprintln!("skipping: the secured services are not configured (deploy/local/services.sh start-secure)");
            None
        }
    }
}

impl Secure {
    fn password_file(&self, principal: &str) -> PathBuf {
        self.secrets.join(format!("kafka-{principal}.password"))
    }

    fn pg_password_file(&self) -> PathBuf {
        self.secrets.join("pg-opptak_tls.password")
    }

    /// `url` with the TLS cluster's password in it (the test's own connections).
    fn with_pg_password(&self, url: &str) -> String {
        let mut u = reqwest::Url::parse(url).unwrap();
        let pw = std::fs::read_to_string(self.pg_password_file()).unwrap();
        u.set_password(Some(pw.trim())).unwrap();
        u.to_string()
    }

    /// A fresh database on the TLS cluster; its URL without the password.
    async fn database(&self, name: &str) -> String {
        use sqlx::Connection;
        let db = unique(name).to_lowercase();
        let mut conn = sqlx::PgConnection::connect(&self.with_pg_password(&self.postgres))
            .await
            .unwrap();
        sqlx::query(&format!("CREATE DATABASE {db}"))
            .execute(&mut conn)
            .await
            .unwrap();
        self.postgres.replacen("/opptak?", &format!("/{db}?"), 1)
    }

    async fn drop_database(&self, url: &str) {
        use sqlx::Connection;
        let db = reqwest::Url::parse(url)
            .unwrap()
            .path()
            .trim_start_matches('/')
            .to_owned();
        if let Ok(mut conn) = sqlx::PgConnection::connect(&self.with_pg_password(&self.postgres)).await {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
                .execute(&mut conn)
                .await;
        }
    }

    /// The configuration of a process authenticating as `principal`, with
    /// mutual TLS and its password from its file; the metadata store on the
    /// TLS cluster at `metadata` (password from its file), or SQLite in `dir`.
    fn vars(&self, dir: &Path, principal: &str, metadata: Option<&str>) -> Vec<(String, String)> {
        let d = dir.display();
        let tls = |f: &str| self.tls.join(f).display().to_string();
        let (metadata, password_file) = match metadata {
            Some(url) => (url.to_owned(), self.pg_password_file().display().to_string()),
            None => (format!("sqlite://{d}/opptak.db"), String::new()),
        };
        [
            ("OPPTAK__BUS__URL", format!("kafka://{}", self.brokers)),
            ("OPPTAK__BUS__PARTITIONS", PARTITIONS.into()),
            ("OPPTAK__BUS__TLS__ENABLED", "true".into()),
            ("OPPTAK__BUS__TLS__CA_FILE", tls("ca.pem")),
            ("OPPTAK__BUS__TLS__CERT_FILE", tls("client.pem")),
            ("OPPTAK__BUS__TLS__KEY_FILE", tls("client.key")),
            ("OPPTAK__BUS__SASL__MECHANISM", "SCRAM-SHA-512".into()),
            ("OPPTAK__BUS__SASL__USERNAME", principal.into()),
            (
                "OPPTAK__BUS__SASL__PASSWORD_FILE",
                self.password_file(principal).display().to_string(),
            ),
            ("OPPTAK__STORAGE__METADATA", metadata),
            ("OPPTAK__STORAGE__METADATA_PASSWORD_FILE", password_file),
            ("OPPTAK__STORAGE__BLOBS", format!("file://{d}/blobs")),
            ("OPPTAK__STORAGE__ARCHIVE", format!("file://{d}/archive")),
            ("OPPTAK__KEYS__KEYRING", format!("{d}/keyring.json")),
            // Under the prefixes the roles' group ACLs allow.
            ("OPPTAK__RECORDER__GROUP", unique("opptak-recorder")),
            ("OPPTAK__KI__TRANSCRIBER_GROUP", unique("opptak-transcriber")),
            ("OPPTAK__KI__LIVE_GROUP", unique("opptak-transcriber-live")),
            ("OPPTAK__KI__SUMMARIZER_GROUP", unique("opptak-summarizer")),
            ("OPPTAK__RECORDER__FLUSH_INTERVAL_MS", "100".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    fn config(&self, dir: &Path, principal: &str, metadata: Option<&str>) -> Config {
        Config::load_from(None, &self.vars(dir, principal, metadata)).unwrap()
    }

    /// The edges of a process authenticating as `principal`, on SQLite
    /// (for tests that only need the bus).
    async fn edges(&self, dir: &Path, principal: &str) -> Edges {
        Edges::open(self.config(dir, principal, None)).await.unwrap()
    }
}

/// Every topic as `opptak topics create` makes it, by the super user
/// (idempotent: later runs find them).
async fn topics_created(s: &Secure, dir: &Path) -> Edges {
    let admin = s.edges(dir, "admin").await;
    let specs = opptak::topics::specs(&admin.config, &admin.policy);
    opptak::topics::ensure(admin.bus.as_ref(), &specs).await.unwrap();
    admin
}

/// The records on `topic` whose key is one of `keys`, read as `edges`'
/// principal in `group` from the start, until there are `n`.
async fn read_keys(
    edges: &Edges,
    group: &str,
    topic: &str,
    keys: &HashSet<Vec<u8>>,
    n: usize,
) -> Vec<opptak_bus::Record> {
    let mut sub = edges.bus.subscribe(group, &[topic.to_owned()]).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let mut got = Vec::new();
    while got.len() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {n} records on {topic}",
            got.len()
        );
        for r in sub.poll(1000, Duration::from_millis(500)).await.unwrap() {
            if r.key.as_ref().is_some_and(|k| keys.contains(k.as_ref())) {
                got.push(r);
            }
        }
    }
    got
}

/// The pipeline with a principal per role: the telephony system's producer
/// publishes calls (and a malformed record); the recorder, as its own
/// principal without the right to create topics, records them into
/// PostgreSQL over TLS and dead-letters the malformed one; the batch
/// transcriber's principal reads the recordings topic. The topics carry the
/// policy's retention (24 h for call audio), which `topics check` confirms.
#[tokio::test(flavor = "multi_thread")]
async fn each_role_works_with_its_own_principal() {
    let Some(s) = secure() else { return };
    let dir = tempfile::tempdir().unwrap();
    let admin = topics_created(&s, dir.path()).await;
    let report = opptak::topics::check(admin.bus.as_ref(), &opptak::topics::specs(&admin.config, &admin.policy))
        .await
        .unwrap();
    for (spec, drift) in &report {
        assert!(drift.is_empty(), "{}: {drift:?}", spec.name);
    }
    let telephony_topic = admin.config.recorder_config().topics.telephony;
    let info = admin.bus.describe_topic(&telephony_topic).await.unwrap().unwrap();
    assert_eq!(info.retention_ms, Some(86_400_000), "call audio stays 24 h on Kafka");

    let db = s.database("sec_pipeline").await;
    let rec_dir = dir.path().join("recorder");
    let recorder = Edges::open(s.config(&rec_dir, "recorder", Some(&db))).await.unwrap();
    assert!(
        format!("{:?}", recorder.config).contains("password_file"),
        "the password is in a file, not in the configuration"
    );
    // Its topics exist: starting needs no right to create them.
    recorder.ensure_topics(&["recorder"]).await.unwrap();
    let running = RunningRecorder::spawn(recorder.recorder());

    let telephony = s.edges(&dir.path().join("telephony"), "telephony").await;
    let run = unique("sec");
    let calls: Vec<SimCall> = (0..2)
        .map(|i| {
            SimCall::synthetic(
                &format!("{run}-{i}"),
                [Codec::Pcma, Codec::L16][i],
                2,
                1.3,
                40 + i as u64,
            )
        })
        .collect();
    for c in &calls {
        for e in c.events(100) {
            let (k, v) = sim::encode(&e);
            telephony.bus.publish(&telephony_topic, &k, &v).await.unwrap();
        }
    }
    let garbage_key = format!("{run}-garbage");
    telephony
        .bus
        .publish(&telephony_topic, garbage_key.as_bytes(), b"\x08\x96\x01garbage\xff")
        .await
        .unwrap();

    // The batch transcriber's principal sees the recordings.
    let transcriber = s.edges(&dir.path().join("transcriber"), "transcriber").await;
    let ids: HashSet<Vec<u8>> = calls.iter().map(|c| c.call_id.as_bytes().to_vec()).collect();
    let recordings = read_keys(
        &transcriber,
        &transcriber.config.ki.transcriber_group,
        &recorder.config.recorder_config().topics.recordings,
        &ids,
        calls.len(),
    )
    .await;
    for r in &recordings {
        let ev = v1::RecordingStored::decode(r.payload.as_ref()).unwrap();
        assert!(ids.contains(ev.call_id.as_bytes()), "{}", ev.call_id);
    }
    // The malformed record went to the dead letters (the super user reads them).
    let dead = read_keys(
        &admin,
        &unique("opptak-deadletters"),
        &recorder.config.recorder_config().topics.deadletter,
        &HashSet::from([garbage_key.into_bytes()]),
        1,
    )
    .await;
    let letter = v1::DeadLetter::decode(dead[0].payload.as_ref()).unwrap();
    assert_eq!(letter.reason(), v1::DeadLetterReason::Malformed);

    running.stop().await.unwrap();
    verify_calls(&recorder, &calls).await;
    drop(recorder);
    s.drop_database(&db).await;
}

/// A wrong SASL password fails start-up, fast, with the broker's reason.
#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_password_is_refused_as_an_authentication_failure() {
    let Some(s) = secure() else { return };
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("wrong.password");
    std::fs::write(&wrong, "not-the-password\n").unwrap();
    let mut vars = s.vars(dir.path(), "recorder", None);
    vars.push(("OPPTAK__BUS__SASL__PASSWORD_FILE".into(), wrong.display().to_string()));
    let edges = Edges::open(Config::load_from(None, &vars).unwrap()).await.unwrap();
    let started = std::time::Instant::now();
    let e = edges.ensure_topics(&["recorder"]).await.unwrap_err();
    let text = format!("{e:#}");
    eprintln!("wrong password: {text}");
    assert!(
        text.contains("bus authentication failed") && text.contains("SASL authentication error"),
        "{text}"
    );
    assert!(!text.contains("not-the-password"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    // A publish fails the same way, not as a bare timeout.
    let e = edges.bus.publish("opptak.telephony.v1", b"k", b"v").await.unwrap_err();
    assert!(matches!(e, BusError::Authentication(_)), "{e}");
}

/// TLS both ways: a client without a certificate is refused by the broker
/// (it requires one), and a client that does not trust the broker's
/// certificate refuses the broker.
#[tokio::test(flavor = "multi_thread")]
async fn missing_client_certificate_and_untrusted_broker_are_refused() {
    let Some(s) = secure() else { return };
    let dir = tempfile::tempdir().unwrap();
    let base = s.vars(dir.path(), "recorder", None);
    let no_cert: Vec<_> = base
        .iter()
        .filter(|(k, _)| !k.ends_with("__CERT_FILE") && !k.ends_with("__KEY_FILE"))
        .cloned()
        .collect();
    let edges = Edges::open(Config::load_from(None, &no_cert).unwrap()).await.unwrap();
    let e = format!("{:#}", edges.ensure_topics(&["recorder"]).await.unwrap_err());
    eprintln!("no client certificate: {e}");
    assert!(e.contains("bus authentication failed") && e.contains("SSL"), "{e}");

    // Trusting only another certificate (the client's own, not a CA).
    let mut other_ca = base.clone();
    other_ca.push((
        "OPPTAK__BUS__TLS__CA_FILE".into(),
        s.tls.join("client.pem").display().to_string(),
    ));
    let edges = Edges::open(Config::load_from(None, &other_ca).unwrap()).await.unwrap();
    let e = format!("{:#}", edges.ensure_topics(&["recorder"]).await.unwrap_err());
    eprintln!("untrusted broker: {e}");
    assert!(
        e.contains("bus authentication failed") && e.contains("certificate verify failed"),
        "{e}"
    );
}

/// The ACLs: the review service's principal may write the summaries but
/// not forge telephony events; the recorder may not create topics nor read
/// in a consumer group outside its prefix.
#[tokio::test(flavor = "multi_thread")]
async fn a_principal_is_refused_what_its_acls_do_not_allow() {
    let Some(s) = secure() else { return };
    let dir = tempfile::tempdir().unwrap();
    let admin = topics_created(&s, dir.path()).await;
    let topics = admin.config.recorder_config().topics;
    let review = s.edges(&dir.path().join("review"), "review").await;
    let summaries = opptak::topics::TOPICS[5].name(&review.config);
    assert!(summaries.ends_with("opptak.summaries.v1"));
    review.bus.publish(&summaries, b"acl-probe", b"allowed").await.unwrap();
    let e = review
        .bus
        .publish(&topics.telephony, b"forged", b"CallEnded")
        .await
        .unwrap_err();
    eprintln!("review writing telephony: {e}");
    assert!(matches!(e, BusError::Denied(_)), "{e}");
    assert!(e.to_string().contains("Topic authorization failed"), "{e}");

    let recorder = s.edges(&dir.path().join("recorder"), "recorder").await;
    let e = recorder
        .bus
        .create_topic(&format!("opptak.sec-{}", unique("new")), 1)
        .await
        .unwrap_err();
    assert!(matches!(e, BusError::Denied(_)), "{e}");

    let mut sub = recorder
        .bus
        .subscribe(&unique("someone-elses-group"), std::slice::from_ref(&topics.telephony))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let e = loop {
        match sub.poll(10, Duration::from_millis(500)).await {
            Err(e) => break e,
            Ok(_) => assert!(tokio::time::Instant::now() < deadline, "the group was never refused"),
        }
    };
    assert!(matches!(e, BusError::Denied(_)), "{e}");
    assert!(e.to_string().contains("Group authorization failed"), "{e}");
}

/// The metadata store over TLS with the server's certificate checked
/// (`sslmode=verify-full`) and SCRAM, the password from its file; the same
/// user in plaintext, with a wrong password, or trusting another CA is refused.
#[tokio::test(flavor = "multi_thread")]
async fn postgres_over_verify_full_with_scram() {
    let Some(s) = secure() else { return };
    let url = s.database("sec_pg").await;
    let password_file = format!("password_file={}", s.pg_password_file().display());
    let store = opptak_store::open_metadata_store(&format!("{url}&{password_file}"))
        .await
        .unwrap();
    store.ping().await.unwrap();
    assert!(!store
        .describe()
        .contains(&std::fs::read_to_string(s.pg_password_file()).unwrap()));
    {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&s.with_pg_password(&url)).await.unwrap();
        let (ssl, version): (bool, String) =
            sqlx::query_as("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                .fetch_one(&mut conn)
                .await
                .unwrap();
        assert!(ssl && version.starts_with("TLSv1."), "{ssl} {version}");
    }
    let plain = url.replace("sslmode=verify-full", "sslmode=disable");
    let e = opptak_store::open_metadata_store(&format!("{plain}&{password_file}"))
        .await
        .err()
        .unwrap()
        .to_string();
    eprintln!("postgres in plaintext: {e}");
    assert!(e.contains("no pg_hba.conf entry") && e.contains("no encryption"), "{e}");

    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("pw");
    std::fs::write(&wrong, "wrong").unwrap();
    let e = opptak_store::open_metadata_store(&format!("{url}&password_file={}", wrong.display()))
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("password authentication failed"), "{e}");

    let other_ca = url.replace("ca.pem", "client.pem");
    let e = opptak_store::open_metadata_store(&format!("{other_ca}&{password_file}"))
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(e.to_lowercase().contains("certificate"), "{e}");
    drop(store);
    s.drop_database(&url).await;
}
