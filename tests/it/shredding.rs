//! Crypto-shredding per retention class, everywhere: after `shred(call,
//! class)` nothing of that class decrypts — the compacted object, the spool
//! segments, the copies, the dead letters on the bus — with a "key destroyed"
//! error, while the call's other classes and other calls still decrypt. A
//! running recorder drops its cached key. Random access by time reads the
//! same audio as a whole read, before and after compaction.

use crate::common;

use common::{wait_for_recordings, Backend, Env};
use opptak::app::{Edges, RunningRecorder};
use opptak::sim::SimCall;
use opptak_domain::model::CallId;
use opptak_proto::v1::{self, telephony_event::Event};
use opptak_proto::Message;
use opptak_vault::{VaultError, Which};
use std::time::Duration;

async fn backend(name: &str) -> Backend {
    match (common::kafka(), common::postgres_db(name).await) {
        (Some(kafka), Some(postgres)) => Backend::Services { kafka, postgres },
        _ => Backend::Embedded,
    }
}

async fn dead_letters(edges: &Edges, at_least: usize) -> Vec<v1::DeadLetter> {
    let topic = edges.config.recorder_config().topics.deadletter;
    let mut sub = edges.bus.subscribe(&common::unique("dl"), &[topic]).await.unwrap();
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while got.len() < at_least && tokio::time::Instant::now() < deadline {
        for r in sub.poll(1000, Duration::from_millis(300)).await.unwrap() {
            got.push(v1::DeadLetter::decode(r.payload.as_ref()).unwrap());
        }
    }
    got
}

fn destroyed<T: std::fmt::Debug>(r: Result<T, VaultError>, what: &str) {
    match r {
        Err(VaultError::KeyDestroyed { .. }) => {}
        other => panic!("{what}: expected 'key destroyed', got {other:?}"),
    }
}

/// Every format-v2 object in the blob store, opened by the key its header names.
async fn open_every_object(edges: &Edges) -> Vec<(String, Result<(String, String), String>)> {
    let mut out = Vec::new();
    for path in edges.blobs.list("").await.unwrap() {
        if path.starts_with("spool/") {
            continue; // format v1, read through the segments table below
        }
        let bytes = edges.blobs.get(&path).await.unwrap();
        let r = edges
            .vault()
            .open_any_object(&bytes)
            .await
            .map(|(info, _)| (info.key_ref, info.artifact_id))
            .map_err(|e| e.to_string());
        out.push((path, r));
    }
    out
}

async fn shred_everywhere(name: &str) {
    let env = Env::new(&backend(name).await, name);
    let edges = env.edges().await;
    let recorder = RunningRecorder::spawn(edges.recorder());
    let mut calls = common::mixed_calls(&common::unique("shred"), 3);
    // Call 0: investment advice, KI on and the customer informed → all three classes.
    calls[0].started.service_category = 1;
    calls[0].started.ki_enabled = true;
    calls[0].started.customer_informed = true;
    for c in &calls {
        common::publish_events(&edges, &c.events(100)).await;
    }
    wait_for_recordings(&edges, calls.len(), 60).await;
    // Two dead letters: a chunk after call 0 ended (sealed under its
    // recording key) and one for a call nobody started (the day's key).
    let late = v1::TelephonyEvent {
        call_id: calls[0].call_id.clone(),
        event: Some(Event::AudioChunk(v1::AudioChunk {
            sequence: 9_000,
            payload: vec![0x11; 1600],
            duration: None,
            offset: None,
            sealed_payload: Vec::new(),
        })),
    };
    let stray = v1::TelephonyEvent {
        call_id: common::unique("nobody"),
        event: late.event.clone(),
    };
    common::publish_events(&edges, &[late, stray]).await;
    let dls = dead_letters(&edges, 2).await;
    assert_eq!(dls.len(), 2, "{dls:?}");
    recorder.stop().await.unwrap();
    common::verify_copies(&edges, &calls).await;

    let id = CallId::parse(&calls[0].call_id).unwrap();
    let other = CallId::parse(&calls[1].call_id).unwrap();
    let read = |which| {
        let edges = &edges;
        let id = id.clone();
        async move { edges.vault().read_artifact(&id, which).await }
    };
    let window = |which| {
        let edges = &edges;
        let id = id.clone();
        async move {
            edges
                .vault()
                .read_window(&id, which, Duration::from_millis(500), Duration::from_millis(300))
                .await
        }
    };
    let before = open_every_object(&edges).await;
    assert!(before.iter().all(|(_, r)| r.is_ok()), "{before:?}");
    assert!(before.len() >= 3 + 2, "3 recordings and 2 copies: {before:?}");

    // Shred the KI class: the KI copy is gone, the recording and archive stay.
    let at = now_us();
    edges
        .meta
        .shred_key(&id, "ki", "customer opted out", "test", at)
        .await
        .unwrap();
    destroyed(read(Which::Ki).await, "KI copy");
    destroyed(window(Which::Ki).await, "KI copy window");
    assert!(read(Which::Recording).await.unwrap().pcm == calls[0].expected_pcm());
    assert!(read(Which::Archive).await.unwrap().pcm == calls[0].expected_pcm());
    window(Which::Recording).await.unwrap();

    // Shred the recording class: recording (object and spool), its dead letter gone.
    edges
        .meta
        .shred_key(&id, "audio-24h", "24 h elapsed", "test", at + 1)
        .await
        .unwrap();
    destroyed(read(Which::Recording).await, "recording");
    destroyed(window(Which::Recording).await, "recording window");
    let rec = edges.meta.load_call(&id).await.unwrap().unwrap();
    for seg in edges.meta.segments(&rec.recording_id).await.unwrap() {
        // The spool segments are still there, sealed under a key that no longer exists.
        let bytes = edges
            .blobs
            .get_range(&seg.blob_path, seg.blob_offset..seg.blob_offset + seg.sealed_bytes)
            .await
            .unwrap();
        let (hdr, _) = opptak_crypto::segment::SegmentHeader::parse(&bytes).unwrap();
        let (_, row) = edges.meta.key_by_id(&hdr.key_id).await.unwrap().unwrap();
        assert!(row.destroyed_at_us.is_some() && row.key.sealed.is_empty());
    }
    let mine = dls.iter().find(|d| d.call_id == calls[0].call_id).unwrap();
    destroyed(edges.vault().open_dead_letter(mine).await, "dead letter on the bus");
    let stray_dl = dls.iter().find(|d| d.call_id != calls[0].call_id).unwrap();
    assert_eq!(
        edges.vault().open_dead_letter(stray_dl).await.unwrap().len() as u64,
        stray_dl.original_bytes
    );
    // The archive class and the other calls are untouched.
    assert!(read(Which::Archive).await.unwrap().pcm == calls[0].expected_pcm());
    let o = edges.vault().read_recording(&other).await.unwrap();
    assert!(o.pcm == calls[1].expected_pcm());

    // Every object in the store: the shredded classes of call 0 fail with
    // "key destroyed"; everything else opens.
    let after = open_every_object(&edges).await;
    assert_eq!(after.len(), before.len());
    for (path, r) in &after {
        let shredded = path.contains(&calls[0].call_id) && !path.starts_with("archive/");
        match r {
            Ok(_) => assert!(!shredded, "{path} still opens"),
            Err(e) => assert!(shredded && e.contains("key destroyed"), "{path}: {e}"),
        }
    }
    // Evidence: what, when, why — never the key.
    let ev = edges.meta.shreddings(Some(&id)).await.unwrap();
    assert_eq!(ev.len(), 2);
    assert_eq!((ev[0].class.as_str(), ev[1].class.as_str()), ("ki", "audio-24h"));
    assert_eq!(ev[0].reason, "customer opted out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shred_reaches_every_store_and_topic() {
    shred_everywhere("shred_all").await;
}

/// Every file under `dir` that holds `needle`.
fn files_holding(dir: &std::path::Path, needle: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_holding(&p, needle));
        } else if std::fs::read(&p).unwrap().windows(needle.len()).any(|w| w == needle) {
            out.push(p.display().to_string());
        }
    }
    out
}

/// Shredding is final in the live embedded store (issue 15, finding 1): the
/// wrapped key is in no file of the deployment afterwards — not in the
/// SQLite database, its free pages or its write-ahead log (on the old main the
/// WAL still held it, and unwrapping it opened the transcript) — and a KI
/// opt-out deletes the KI objects, not only their key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shredded_key_is_in_no_file_and_ki_objects_go() {
    let env = Env::new(&Backend::Embedded, "shred_files");
    let edges = env.edges().await;
    let recorder = RunningRecorder::spawn(edges.recorder());
    let mut calls = common::mixed_calls(&common::unique("final"), 1);
    calls[0].started.ki_enabled = true;
    calls[0].started.customer_informed = true;
    common::publish_events(&edges, &calls[0].events(100)).await;
    wait_for_recordings(&edges, 1, 60).await;
    recorder.stop().await.unwrap();
    common::verify_copies(&edges, &calls).await;
    let id = CallId::parse(&calls[0].call_id).unwrap();
    let wrapped = |class: &'static str| {
        let edges = &edges;
        let id = id.clone();
        async move { edges.meta.class_key(&id, class).await.unwrap().unwrap().key.sealed }
    };
    let (ki, audio) = (wrapped("ki").await, wrapped("audio-24h").await);
    assert!(ki.len() >= 32 && audio.len() >= 32);
    let ki_objects: Vec<String> = edges
        .meta
        .artifacts(&id)
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.key.key.class == "ki")
        .filter_map(|a| a.object.map(|o| o.path))
        .collect();
    assert!(!ki_objects.is_empty(), "the KI copy was written");
    assert!(
        !files_holding(env.dir.path(), &ki).is_empty(),
        "the wrapped key is stored"
    );

    // The opt-out path and the operator's `keys shred`.
    assert!(edges.vault().purge_ki(&id, "customer", now_us()).await.unwrap());
    edges
        .vault()
        .shred(&id, "audio-24h", "operator request", "test")
        .await
        .unwrap();
    for (class, bytes) in [("ki", &ki), ("audio-24h", &audio)] {
        let found = files_holding(env.dir.path(), bytes);
        assert!(found.is_empty(), "the shredded {class} key is still in {found:?}");
    }
    let left = edges.blobs.list("").await.unwrap();
    for path in &ki_objects {
        assert!(!left.contains(path), "{path} outlived the opt-out");
    }
    destroyed(edges.vault().read_artifact(&id, Which::Ki).await, "KI copy");
}

/// A recorder holding a call's key drops it when the key is shredded mid-call:
/// nothing more is sealed under it, later chunks are refused as for an
/// unknown call, and the recorder carries on with its other calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_recorder_drops_a_shredded_key() {
    let env = Env::new(&Backend::Embedded, "shred_live");
    let edges = env.edges().await;
    let recorder = RunningRecorder::spawn(edges.recorder());
    let mut stats = recorder.stats.clone();
    let calls: Vec<SimCall> = (0..2)
        .map(|i| {
            SimCall::synthetic(
                &common::unique(&format!("live{i}")),
                opptak_domain::Codec::Pcmu,
                2,
                6.0,
                9 + i,
            )
        })
        .collect();
    // 100 ms chunks paced at 50 ms: about 3 s of wall time per call.
    let publisher = common::spawn_paced_publisher(&edges, &calls, Duration::from_millis(50));
    let victim = CallId::parse(&calls[0].call_id).unwrap();
    // Wait until the victim has durable audio, then shred it mid-call.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(rec) = edges.meta.load_call(&victim).await.unwrap() {
            if rec.segments > 0 {
                break;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "victim never recorded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let at = now_us();
    edges
        .meta
        .shred_key(&victim, "audio-24h", "erasure request", "test", at)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while stats.borrow().keys_evicted == 0 {
        assert!(tokio::time::Instant::now() < deadline, "cached key never dropped");
        tokio::time::timeout(Duration::from_secs(1), stats.changed()).await.ok();
    }
    publisher.await.unwrap();
    let stored = wait_for_recordings(&edges, 1, 60).await;
    assert!(
        stored.contains_key(&calls[1].call_id),
        "the other call completes: {stored:?}"
    );
    let stats = recorder.stop().await.unwrap();
    assert!(stats.dead_letters > 0, "chunks after the shredding are refused");
    destroyed(edges.vault().read_recording(&victim).await, "shredded call");
    let other = CallId::parse(&calls[1].call_id).unwrap();
    let o = edges.vault().read_recording(&other).await.unwrap();
    assert!(o.pcm == calls[1].expected_pcm());
}

/// Seeking by time decrypts only the segments needed and returns exactly the
/// samples a whole read has at that position — from the spool before
/// compaction, and from the format-v2 object after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_match_whole_reads_before_and_after_compaction() {
    let env = Env::new(&Backend::Embedded, "windows");
    let edges = env.edges().await;
    // Only here: a recorder that leaves recordings in the spool (the
    // configuration refuses it: nothing would expire).
    let mut cfg = edges.config.recorder_config();
    cfg.compact = false;
    let recorder = RunningRecorder::spawn(
        opptak_recorder::Recorder::new(edges.bus.clone(), edges.vault(), cfg).with_policy(edges.policy.clone()),
    );
    let calls = common::mixed_calls(&common::unique("win"), 3);
    for c in &calls {
        common::publish_events(&edges, &c.events(20)).await;
    }
    wait_for_recordings(&edges, calls.len(), 60).await;
    recorder.stop().await.unwrap();
    let check = |compacted: bool| {
        let edges = &edges;
        let calls = &calls;
        async move {
            for c in calls {
                let id = CallId::parse(&c.call_id).unwrap();
                let rec = edges.meta.load_call(&id).await.unwrap().unwrap();
                assert_eq!(rec.object.is_some(), compacted);
                let pcm = c.expected_pcm();
                let fb = 2 * c.format.channels() as usize;
                for (from_ms, len_ms) in [(0, 100), (333, 250), (1_000, 10_000), (50_000, 100)] {
                    let w = edges
                        .vault()
                        .read_window(
                            &id,
                            Which::Recording,
                            Duration::from_millis(from_ms),
                            Duration::from_millis(len_ms),
                        )
                        .await
                        .unwrap();
                    let a = ((from_ms as usize * 8) * fb).min(pcm.len());
                    let b = (a + len_ms as usize * 8 * fb).min(pcm.len());
                    assert!(w.pcm == pcm[a..b], "{} window {from_ms}+{len_ms} ms differs", c.call_id);
                    if compacted && b > a {
                        // Seconds of G.711 fit in one or two 64 KiB segments.
                        assert!(w.segments_opened <= 2, "{w:?}");
                    }
                }
            }
        }
    };
    check(false).await;
    let compactor = opptak_recorder::compact::Compactor::new(edges.vault(), 65_536).with_archive(edges.archive.clone());
    assert_eq!(compactor.run_pending(Duration::ZERO, 100).await.unwrap(), calls.len());
    // Idempotent: a second pass finds nothing to do.
    assert_eq!(compactor.run_pending(Duration::ZERO, 100).await.unwrap(), 0);
    check(true).await;
    common::verify_calls(&edges, &calls).await;
    common::verify_copies(&edges, &calls).await;
}

/// A read that runs while compaction moves a recording from the spool into
/// its object reads the object: it never reports the recording inconsistent
/// ("0 segment rows, 3 recorded") nor returns an empty window. The vault
/// located the recording in the spool, compaction then took the segment
/// rows, and the read found none (seen once in CI, in a test reading a call
/// right after it was recorded).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_during_compaction_read_the_object() {
    let env = Env::new(&backend("readcompact").await, "readcompact");
    let edges = env.edges().await;
    let mut cfg = edges.config.recorder_config();
    cfg.compact = false;
    let recorder = RunningRecorder::spawn(
        opptak_recorder::Recorder::new(edges.bus.clone(), edges.vault(), cfg).with_policy(edges.policy.clone()),
    );
    let calls = common::mixed_calls(&common::unique("rc"), 30);
    for c in &calls {
        common::publish_events(&edges, &c.events(20)).await;
    }
    wait_for_recordings(&edges, calls.len(), 60).await;
    recorder.stop().await.unwrap();
    let compactor = opptak_recorder::compact::Compactor::new(edges.vault(), 65_536).with_archive(edges.archive.clone());
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..4)
        .map(|r| {
            let (edges, calls, done) = (edges.clone(), calls.clone(), done.clone());
            tokio::spawn(async move {
                let mut reads = 0;
                while !done.load(std::sync::atomic::Ordering::SeqCst) {
                    for c in calls.iter().skip(r) {
                        let id = CallId::parse(&c.call_id).unwrap();
                        let rec = edges.vault().read_recording(&id).await.unwrap();
                        assert!(rec.pcm == c.expected_pcm(), "{} differs", c.call_id);
                        let w = edges
                            .vault()
                            .read_window(&id, Which::Recording, Duration::ZERO, Duration::from_millis(500))
                            .await
                            .unwrap();
                        let fb = 2 * c.format.channels() as usize;
                        let pcm = c.expected_pcm();
                        assert!(
                            w.pcm == pcm[..(4000 * fb).min(pcm.len())],
                            "{} window differs",
                            c.call_id
                        );
                        reads += 1;
                    }
                }
                reads
            })
        })
        .collect();
    assert_eq!(compactor.run_pending(Duration::ZERO, 100).await.unwrap(), calls.len());
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    for r in readers {
        assert!(r.await.unwrap() > 0);
    }
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

/// Issue 15, finding 1: a copy of the database taken before a shredding (a
/// backup, a replica, a WAL archive) still holds the wrapped key, so the
/// shredding is final only once the KEK that wrapped it is gone. Keys are
/// wrapped under a KEK per class and period; the sweeper's pass destroys a
/// period's KEK once everything it wrapped expired — a held call's key moved
/// under a hold KEK first. Afterwards the old backup opens nothing of that
/// period, while the live held call still does. On the old main every key
/// was under the one long-lived KEK and the backup opened everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_opens_nothing_once_its_period_kek_is_destroyed() {
    backup_after_period_kek(Vec::new(), "shred_backup").await;
}

/// The same with the KEKs in an HSM (SoftHSM2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_opens_nothing_once_its_period_kek_is_destroyed_in_the_hsm() {
    let Some(vars) = common::softhsm_vars("period") else {
        return;
    };
    backup_after_period_kek(vars, "shred_backup_hsm").await;
}

async fn backup_after_period_kek(provider_vars: Vec<(String, String)>, name: &str) {
    use opptak_domain::time::ManualClock;
    use opptak_vault::kek;
    use std::sync::Arc;
    let hsm = !provider_vars.is_empty();
    let mut env = Env::new(&Backend::Embedded, name);
    env.vars.extend(provider_vars);
    env.config = opptak::config::Config::load_from(None, &env.vars).unwrap();
    let edges = env.edges().await;
    let maintenance = opptak::app::KekMaintenance::of(&edges);
    let report = maintenance.run(edges.meta.as_ref()).await.unwrap();
    assert!(
        report.created.iter().any(|k| k.starts_with("kek-audio-24h-")),
        "{report:?}"
    );

    let recorder = RunningRecorder::spawn(edges.recorder());
    let mut calls = common::mixed_calls(&common::unique("period"), 2);
    for c in calls.iter_mut() {
        c.started.ki_enabled = true;
        c.started.customer_informed = true;
    }
    for c in &calls {
        common::publish_events(&edges, &c.events(100)).await;
    }
    wait_for_recordings(&edges, 2, 60).await;
    recorder.stop().await.unwrap();
    common::verify_copies(&edges, &calls).await;
    let (gone, held) = (
        CallId::parse(&calls[0].call_id).unwrap(),
        CallId::parse(&calls[1].call_id).unwrap(),
    );
    let mut periods = std::collections::BTreeSet::new();
    for id in [&gone, &held] {
        for class in ["audio-24h", "ki"] {
            let row = edges.meta.class_key(id, class).await.unwrap().unwrap();
            assert!(
                kek::parse_period_kek(&row.key.kek_id).is_some_and(|p| p.class == class),
                "the {class} key of {id} is under {}, not its period's KEK",
                row.key.kek_id
            );
            periods.insert(row.key.kek_id);
        }
    }
    edges
        .retention()
        .place_hold(&held, "CASE-7", "dispute", "compliance-1")
        .await
        .unwrap();

    // The backup: the database files as they are now (WAL included), not the keyring.
    let backup = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(env.dir.path()).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("opptak.db") {
            std::fs::copy(e.path(), backup.path().join(&name)).unwrap();
        }
    }

    assert!(edges.vault().purge_ki(&gone, "customer", now_us()).await.unwrap());
    edges
        .vault()
        .shred(&gone, "audio-24h", "expired", "test")
        .await
        .unwrap();

    // 31 days on: every period the two calls were made in is over and past
    // its keys' retention.
    let later = Arc::new(ManualClock::new(now_us() + 31 * 86_400_000_000 + 7_200_000_000));
    let travelled = opptak::app::KekMaintenance {
        clock: later.clone(),
        ..opptak::app::KekMaintenance::of(&edges)
    };
    let report = travelled.run(edges.meta.as_ref()).await.unwrap();
    assert!(report.moved >= 2, "the held call's keys moved: {report:?}");
    for class in ["audio-24h", "ki"] {
        let row = edges.meta.class_key(&held, class).await.unwrap().unwrap();
        assert!(row.key.kek_id.starts_with("kek-hold-"), "{class}: {}", row.key.kek_id);
    }
    for p in &periods {
        assert!(report.destroyed.contains(p), "{p} not destroyed: {report:?}");
    }
    let again = travelled.run(edges.meta.as_ref()).await.unwrap();
    assert_eq!((again.moved, again.destroyed.len()), (0, 0), "idempotent: {again:?}");

    // The live system: the held call still opens in full; the shredded one does not.
    let live = Edges::open(env.config.clone()).await.unwrap();
    common::verify_calls(&live, &calls[1..]).await;
    destroyed(live.vault().read_recording(&gone).await, "recording");

    // The backup: the shredded call's keys are there, wrapped, and open nothing;
    // nor does the held call's old wrap. Its archive copy's month KEK is not due.
    let backup_meta = opptak_store::open_metadata_store(&format!("sqlite://{}/opptak.db", backup.path().display()))
        .await
        .unwrap();
    let old = opptak_vault::Vault::new(backup_meta.clone(), live.blobs.clone(), live.keys.clone(), later);
    for id in [&gone, &held] {
        for class in ["audio-24h", "ki"] {
            let row = backup_meta.class_key(id, class).await.unwrap().unwrap();
            assert!(
                row.destroyed_at_us.is_none() && !row.key.sealed.is_empty(),
                "the backup holds the key"
            );
            // The keyring file keeps a tombstone of a destroyed KEK; an HSM
            // simply no longer has it.
            use opptak_crypto::CryptoError::{KekDestroyed, KeyUnavailable};
            match old.open_row(id, &row) {
                Err(VaultError::Key(KekDestroyed(why))) => assert!(why.contains(&row.key.kek_id), "{why}"),
                Err(VaultError::Key(KeyUnavailable(why))) if hsm => assert!(why.contains(&row.key.kek_id), "{why}"),
                other => panic!("{class} key of {id} from the backup: {other:?}"),
            }
        }
        let r = old.read_recording(id).await;
        assert!(
            matches!(r, Err(VaultError::Key(_))),
            "recording of {id} from the backup: {r:?}"
        );
    }
    let log = live.audit().await.unwrap().entries(0, 10_000).await.unwrap();
    let kek_log: Vec<&str> = log
        .iter()
        .filter(|e| e.event.action == "kek.destroy")
        .map(|e| e.event.subject.as_str())
        .collect();
    assert_eq!(kek_log, report.destroyed, "every destruction audited");
}

/// The same on Kafka and PostgreSQL (issue 15, finding 1): after a KI
/// opt-out and a shredding, no Kafka log of the test's topics, no value in
/// the `data_keys` table (VACUUM removed the dead row versions) and no blob
/// holds the wrapped keys. PostgreSQL's WAL and base backups keep the old row
/// until its period KEK is destroyed (the test above).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shredded_key_is_in_no_kafka_log_or_table_on_postgres() {
    let (Some(kafka), Some(postgres)) = (common::kafka(), common::postgres_db("shred_pg").await) else {
        assert_ne!(
            std::env::var("OPPTAK_REQUIRE_SERVICES").as_deref(),
            Ok("1"),
            "Kafka/PostgreSQL not set"
        );
        eprintln!("skipping: no Kafka/PostgreSQL");
        return;
    };
    let env = Env::new(
        &Backend::Services {
            kafka,
            postgres: postgres.clone(),
        },
        "shred_pg",
    );
    let edges = env.edges().await;
    let recorder = RunningRecorder::spawn(edges.recorder());
    let mut calls = common::mixed_calls(&common::unique("pgfinal"), 1);
    calls[0].started.ki_enabled = true;
    calls[0].started.customer_informed = true;
    common::publish_events(&edges, &calls[0].events(100)).await;
    wait_for_recordings(&edges, 1, 90).await;
    recorder.stop().await.unwrap();
    let id = CallId::parse(&calls[0].call_id).unwrap();
    let ki = edges.meta.class_key(&id, "ki").await.unwrap().unwrap().key.sealed;
    let audio = edges
        .meta
        .class_key(&id, "audio-24h")
        .await
        .unwrap()
        .unwrap()
        .key
        .sealed;
    let pool = sqlx::PgPool::connect(&postgres).await.unwrap();
    let table_file = || async {
        let pg_data = std::env::var("OPPTAK_TEST_PG_DATA").ok()?;
        sqlx::query("CHECKPOINT").execute(&pool).await.unwrap();
        let (file,): (String,) = sqlx::query_as("SELECT pg_relation_filepath('data_keys')")
            .fetch_one(&pool)
            .await
            .unwrap();
        std::fs::read(std::path::Path::new(&pg_data).join(file)).ok()
    };
    let holds = |bytes: &[u8], key: &[u8]| bytes.windows(key.len()).any(|w| w == key);
    if let Some(before) = table_file().await {
        assert!(
            holds(&before, &audio),
            "positive control: the table's file holds the live key"
        );
    }
    assert!(edges.vault().purge_ki(&id, "customer", now_us()).await.unwrap());
    edges
        .vault()
        .shred(&id, "audio-24h", "operator request", "test")
        .await
        .unwrap();

    let rows: Vec<(Vec<u8>,)> = sqlx::query_as("SELECT sealed FROM data_keys")
        .fetch_all(&pool)
        .await
        .unwrap();
    for (class, bytes) in [("ki", &ki), ("audio-24h", &audio)] {
        assert!(
            rows.iter().all(|(s,)| s != bytes),
            "the shredded {class} key is still a row"
        );
        let found = files_holding(env.dir.path(), bytes);
        assert!(found.is_empty(), "the shredded {class} key is in {found:?}");
    }
    // The table's own file holds no dead version of the row.
    if let Some(after) = table_file().await {
        for (class, key) in [("ki", &ki), ("audio-24h", &audio)] {
            assert!(!holds(&after, key), "the {class} key is still in data_keys' file");
        }
    }
    if let Ok(kafka_data) = std::env::var("OPPTAK_TEST_KAFKA_DATA") {
        let prefix = &edges.config.bus.topic_prefix;
        let mut scanned = 0;
        for entry in std::fs::read_dir(&kafka_data).unwrap().flatten() {
            if entry.file_name().to_string_lossy().starts_with(prefix.as_str()) {
                scanned += 1;
                for (class, key) in [("ki", &ki), ("audio-24h", &audio)] {
                    let found = files_holding(&entry.path(), key);
                    assert!(found.is_empty(), "the {class} key is in the Kafka log {found:?}");
                }
            }
        }
        assert!(scanned > 0, "no Kafka log of this test's topics under {kafka_data}");
    }
}
