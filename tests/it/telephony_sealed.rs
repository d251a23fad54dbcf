//! Chunks the telephony system seals itself under a KEK it shares with
//! opptak: recorded sample-identical, the input topic's Kafka log holds no
//! plaintext audio, and a chunk or key that does not open is dead-lettered
//! with the reason `UNDECRYPTABLE`.

use crate::common;

use common::{verify_calls, wait_for_recordings, Backend, Env};
use opptak::app::RunningRecorder;
use opptak::config::Config;
use opptak_crypto::{KeyProvider, LocalKeyring};
use opptak_proto::v1::{self, telephony_event::Event};
use opptak_proto::Message;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_chunks_are_recorded_and_never_plaintext_on_the_input_topic() {
    let backend = match (common::kafka(), common::postgres_db("sealed").await) {
        (Some(kafka), Some(postgres)) => Backend::Services { kafka, postgres },
        _ => Backend::Embedded,
    };
    let mut env = Env::new(&backend, "sealed");
    // The shared KEK: opptak's telephony keyring; the telephony side holds the same.
    let shared_path = env.dir.path().join("telephony-keyring.json");
    let shared = LocalKeyring::open_or_create(&shared_path).unwrap();
    env.vars.push((
        "OPPTAK__KEYS__TELEPHONY_KEYRING".into(),
        shared_path.display().to_string(),
    ));
    env.config = Config::load_from(None, &env.vars).unwrap();
    let edges = env.edges().await;
    let recorder = RunningRecorder::spawn(edges.recorder());

    let mut calls = common::mixed_calls(&common::unique("sealed"), 6);
    for c in calls.iter_mut() {
        c.seal_with(&shared).unwrap();
    }
    common::play_interleaved(&edges, &calls, 3).await;
    wait_for_recordings(&edges, calls.len(), 120).await;

    // What goes wrong on the telephony side: a key under a KEK opptak does not
    // share, a chunk altered in transit, and a plaintext chunk in a sealed call.
    let stranger = LocalKeyring::open_or_create(&env.dir.path().join("other.json")).unwrap();
    let mut foreign = common::mixed_calls(&common::unique("foreign"), 1).remove(0);
    foreign.seal_with(&stranger).unwrap();
    let mut tampered = common::mixed_calls(&common::unique("tampered"), 1).remove(0);
    tampered.seal_with(&shared).unwrap();
    let mut evs = tampered.events(100);
    if let Some(Event::AudioChunk(c)) = evs[2].event.as_mut() {
        let last = c.sealed_payload.len() - 1;
        c.sealed_payload[last] ^= 1;
    }
    if let Some(Event::AudioChunk(c)) = evs[3].event.as_mut() {
        c.payload = vec![0xFF; 1600];
        c.sealed_payload.clear();
    }
    common::publish_events(&edges, &foreign.events(100)[..1]).await;
    common::publish_events(&edges, &evs).await;
    wait_for_recordings(&edges, calls.len() + 1, 60).await;
    let stats = recorder.stop().await.unwrap();
    assert_eq!(stats.dead_letters, 3, "{stats:?}");
    verify_calls(&edges, &calls).await;
    common::verify_copies(&edges, &calls).await;

    // The dead letters name the reason.
    let topic = edges.config.recorder_config().topics.deadletter;
    let mut sub = edges.bus.subscribe(&common::unique("dl"), &[topic]).await.unwrap();
    let mut dls = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while dls.len() < 3 && tokio::time::Instant::now() < deadline {
        for r in sub.poll(100, Duration::from_millis(300)).await.unwrap() {
            dls.push(v1::DeadLetter::decode(r.payload.as_ref()).unwrap());
        }
    }
    assert_eq!(dls.len(), 3);
    assert!(
        dls.iter()
            .all(|d| d.reason == v1::DeadLetterReason::Undecryptable as i32),
        "{dls:?}"
    );
    assert!(dls
        .iter()
        .any(|d| d.call_id == foreign.call_id && d.detail.contains("does not open")));
    assert!(dls
        .iter()
        .any(|d| d.call_id == tampered.call_id && d.detail.contains("sequence 1")));
    assert!(dls
        .iter()
        .any(|d| d.call_id == tampered.call_id && d.detail.contains("plaintext payload")));
    // The tampered call is recorded with the two refused chunks as a gap.
    let id = opptak_domain::CallId::parse(&tampered.call_id).unwrap();
    let rec = edges.vault().read_recording(&id).await.unwrap();
    assert_eq!(rec.gaps.len(), 1, "{:?}", rec.gaps);
    assert_eq!(rec.gaps[0].missing, 2);

    // Nothing of the audio on the input topic's log (the telephony side sealed it).
    if let (Backend::Services { .. }, Ok(kafka_data)) = (&backend, std::env::var("OPPTAK_TEST_KAFKA_DATA")) {
        let probes = common::probes(&calls, 200);
        let topics = env.config.recorder_config().topics;
        let mut scanned = 0;
        for entry in std::fs::read_dir(&kafka_data).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if name.starts_with(&topics.telephony) || name.starts_with(&topics.deadletter) {
                scanned += 1;
                let hits = common::scan_dir(&entry.path(), &probes);
                assert!(hits.is_empty(), "plaintext audio in Kafka log {name}: {hits:?}");
            }
        }
        assert!(scanned >= 8, "partitions scanned: {scanned}");
    }
    // `opptak deadletters --out` decrypts the originals for whoever holds the
    // keys, with a reason, audited before each is decrypted (issue 15,
    // finding 5: it needed neither).
    if let Backend::Services { .. } = &backend {
        let out = env.dir.path().join("dl-out");
        let opptak = |args: &[&str]| {
            std::process::Command::new(env!("CARGO_BIN_EXE_opptak"))
                .args(args)
                .envs(env.vars.iter().cloned())
                .output()
                .unwrap()
        };
        let refused = opptak(&["deadletters", "--out", out.to_str().unwrap()]);
        assert!(!refused.status.success());
        assert!(String::from_utf8_lossy(&refused.stderr).contains("--reason"));
        assert!(!out.exists(), "nothing decrypted without a reason");
        let run = opptak(&[
            "deadletters",
            "--out",
            out.to_str().unwrap(),
            "--reason",
            "INC-4711: telephony sealing fault",
            "--actor",
            "ops-olga",
        ]);
        let stdout = String::from_utf8_lossy(&run.stdout);
        assert!(
            run.status.success(),
            "{stdout} {}",
            String::from_utf8_lossy(&run.stderr)
        );
        assert_eq!(stdout.matches("UNDECRYPTABLE").count(), 3, "{stdout}");
        for d in &dls {
            let f = out.join(format!("{}-{}.bin", d.source_partition, d.source_offset));
            let bytes = std::fs::read(&f).unwrap();
            assert_eq!(bytes.len() as u64, d.original_bytes);
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&f).unwrap().permissions().mode() & 0o777, 0o600);
            // The original decodes as the TelephonyEvent that was refused.
            let ev = v1::TelephonyEvent::decode(bytes.as_slice()).unwrap();
            assert_eq!(ev.call_id, d.call_id);
        }
        let log = edges.audit().await.unwrap().entries(1, 1000).await.unwrap();
        let exports: Vec<_> = log.iter().filter(|e| e.event.action == "deadletter.export").collect();
        assert_eq!(exports.len(), dls.len(), "one entry per original");
        for e in exports {
            assert_eq!(
                (
                    e.event.actor.as_str(),
                    e.event.reason.as_str(),
                    e.event.outcome.as_str()
                ),
                ("ops-olga", "INC-4711: telephony sealing fault", "allowed")
            );
        }
    }
    // The shared KEK never reaches the metadata store: the call's chunk key is
    // stored re-wrapped under opptak's own KEK.
    let row = edges.meta.class_key(&id, "telephony").await.unwrap().unwrap();
    assert_eq!(row.key.kek_id, edges.keys.active_kek_id());
    assert_ne!(row.key.kek_id, shared.active_kek_id());
}
