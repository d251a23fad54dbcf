//! `opptak run` against the local services without hand mapping (issue 19,
//! finding 4): `deploy/local/services.sh config` writes an `opptak.toml`
//! that points at the running broker, PostgreSQL, speech and language-model
//! servers; `opptak config` shows those addresses, and `opptak run --roles
//! recorder` with the file records a call sent to the broker into the
//! file's database.

use crate::common;
use opptak::app::Edges;
use opptak::config::Config;
use std::process::{Command, Stdio};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_config_points_opptak_run_at_the_local_services() {
    let Some(kafka) = common::kafka() else { return };
    let Some(postgres) = std::env::var("OPPTAK_TEST_POSTGRES")
        .ok()
        .or_else(|| common::skip("OPPTAK_TEST_POSTGRES not set"))
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let database = common::unique("run_config").to_lowercase();
    let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/local/services.sh"))
        .args(["config", "--dir", run_dir.to_str().unwrap(), "--database", &database])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let file = std::path::PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    assert_eq!(file, run_dir.join("opptak.toml"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);

    // What `opptak config` makes of it: the services' addresses, as
    // `services.sh env` gives them to the tests.
    let shown = Command::new(env!("CARGO_BIN_EXE_opptak"))
        .args(["config", "--config", file.to_str().unwrap()])
        .env_remove("OPPTAK_CONFIG")
        .output()
        .unwrap();
    assert!(shown.status.success(), "{}", String::from_utf8_lossy(&shown.stderr));
    let shown: toml::Table = String::from_utf8(shown.stdout).unwrap().parse().unwrap();
    let (base, _) = postgres.rsplit_once('/').unwrap();
    let at = |section: &str, key: &str| shown[section][key].as_str().unwrap().to_owned();
    assert_eq!(at("bus", "url"), format!("kafka://{kafka}"));
    assert_eq!(at("storage", "metadata"), format!("{base}/{database}"));
    let d = run_dir.display();
    assert_eq!(at("storage", "blobs"), format!("file://{d}/blobs"));
    assert_eq!(at("keys", "keyring"), format!("{d}/keyring.json"));
    // The model servers answer there: the speech server's health names the
    // file's model, the language-model server lists the file's model.
    let http = reqwest::Client::new();
    let json = |url: String| {
        let http = http.clone();
        async move {
            let r = http.get(&url).send().await.unwrap();
            assert!(r.status().is_success(), "{url}: {}", r.status());
            r.json::<serde_json::Value>().await.unwrap()
        }
    };
    if let Some(speech) = common::speech_url() {
        assert_eq!(at("ki", "asr_url"), speech);
        let health = json(format!("{}/health", at("ki", "asr_url"))).await;
        assert_eq!(
            health["model"].as_str(),
            Some(at("ki", "asr_model").as_str()),
            "{health}"
        );
    }
    if let Some((llm, model)) = common::llm() {
        assert_eq!((at("ki", "llm_url"), at("ki", "llm_model")), (llm, model));
        let models = json(format!("{}/v1/models", at("ki", "llm_url"))).await;
        assert!(
            models["data"].as_array().is_some_and(|m| m
                .iter()
                .any(|m| m["id"].as_str() == Some(at("ki", "llm_model").as_str()))),
            "{models}"
        );
    }

    // `opptak run --roles recorder` with the file alone (only the topic
    // prefix and the group are the test's own, beside other tests' runs)
    // records a call sent to the broker, into the file's database.
    let own = [
        (
            "OPPTAK__BUS__TOPIC_PREFIX".to_string(),
            format!("{}.", common::unique("runcfg")),
        ),
        ("OPPTAK__RECORDER__GROUP".to_string(), common::unique("recorder")),
        ("OPPTAK__TELEMETRY__LISTEN".to_string(), String::new()),
    ];
    // The test's own view of the same edges first: it makes the keyring
    // the recorder then finds (two processes must not both create it).
    let config = Config::load_from(Some(&file), &own).unwrap();
    let edges = Edges::open(config).await.unwrap();
    edges.create_topics().await.unwrap();
    let log_path = dir.path().join("recorder.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_opptak"))
        .args(["run", "--roles", "recorder", "--config", file.to_str().unwrap()])
        .env_remove("OPPTAK_CONFIG")
        .envs(own.iter().cloned())
        .env("OPPTAK_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let calls = common::mixed_calls(&common::unique("runcfg"), 2);
    common::play_interleaved(&edges, &calls, 19).await;
    common::wait_for_recordings(&edges, calls.len(), 120).await;
    sigterm(&child);
    let status = common::wait_exit(&mut child, 60, || {
        std::fs::read_to_string(&log_path).unwrap_or_default()
    })
    .await;
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(&log_path).unwrap_or_default()
    );
    common::verify_calls(&edges, &calls).await;
    assert!(
        run_dir.join("blobs").is_dir(),
        "the recorder's blobs under the file's directory"
    );
}

/// Asks `child` to stop as a supervisor does (SIGTERM).
fn sigterm(child: &std::process::Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}
