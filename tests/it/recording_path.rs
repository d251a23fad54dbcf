//! Acceptance tests of the recording path, against a real Kafka broker and
//! PostgreSQL (started by `deploy/local/services.sh`), and the same checks on
//! the embedded backend (memory bus, SQLite).

use crate::common;

use common::{play_interleaved, verify_calls, wait_for_recordings, Backend, Env};
use opptak::app::{Edges, RunningRecorder};
use opptak::sim::{self, SimCall};
use opptak_domain::model::CallId;
use opptak_domain::time::Clock;
use opptak_proto::v1::{self, telephony_event::Event};
use opptak_proto::Message;
use std::sync::Arc;
use std::time::Duration;

async fn services_backend(name: &str) -> Option<Backend> {
    let kafka = common::kafka()?;
    let postgres = common::postgres_db(name).await?;
    Some(Backend::Services { kafka, postgres })
}

async fn dead_letters(edges: &Edges, at_least: usize, secs: u64) -> Vec<v1::DeadLetter> {
    let topic = edges.config.recorder_config().topics.deadletter;
    let mut sub = edges
        .bus
        .subscribe(&common::unique("watch-dl"), &[topic])
        .await
        .unwrap();
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        for r in sub.poll(1000, Duration::from_millis(300)).await.unwrap() {
            got.push(v1::DeadLetter::decode(r.payload.as_ref()).unwrap());
        }
        if got.len() >= at_least || tokio::time::Instant::now() > deadline {
            return got;
        }
    }
}

async fn fifty_interleaved_calls(backend: Backend, name: &str) -> Env {
    let env = Env::new(&backend, name);
    let edges = env.edges().await;
    let recorder = RunningRecorder::spawn(edges.recorder());
    let calls = common::mixed_calls(&common::unique("call"), 50);
    play_interleaved(&edges, &calls, 7).await;
    let stored = wait_for_recordings(&edges, calls.len(), 180).await;
    let stats = recorder.stop().await.unwrap();
    assert!(stats.chunks_duplicate > 0, "the test must exercise duplicates");
    assert_eq!(stats.dead_letters, 0, "no dead letters for well-formed calls");
    verify_calls(&edges, &calls).await;
    common::verify_copies(&edges, &calls).await;
    for c in &calls {
        let ev = &stored[&c.call_id];
        assert_eq!(ev.frames as usize, c.frames());
        assert_eq!(ev.channels, c.format.channels() as u32);
    }
    // Scan the blob store for any run of the source audio.
    let probes = common::probes(&calls, 200);
    // Positive control: the scanner finds the source in a buffer at an odd offset.
    let mut control = vec![7u8; 13];
    control.extend_from_slice(&calls[5].wire);
    assert!(
        common::find_probe(&control, &probes).is_some(),
        "scanner must detect plaintext"
    );
    let hits = common::scan_dir(&env.blob_dir(), &probes);
    assert!(hits.is_empty(), "plaintext audio in the blob store: {hits:?}");
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_interleaved_calls_embedded() {
    let env = fifty_interleaved_calls(Backend::Embedded, "fifty_embedded").await;
    // The SQLite files (database, WAL) hold no audio either.
    let db_hits = common::scan_dir(env.dir.path(), &common::probes(&common::mixed_calls("x", 50), 200));
    assert!(db_hits.is_empty(), "plaintext audio on disk: {db_hits:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_interleaved_calls_kafka_postgres() {
    let Some(backend) = services_backend("fifty").await else {
        return;
    };
    let Backend::Services { postgres, .. } = &backend else {
        unreachable!()
    };
    let postgres = postgres.clone();
    // File times have coarse granularity; allow a margin.
    let started = std::time::SystemTime::now() - Duration::from_secs(2);
    let env = fifty_interleaved_calls(backend, "fifty").await;
    let probes = common::probes(&common::mixed_calls("x", 50), 200);
    // Logical scan: every value in every table.
    let pool = sqlx::PgPool::connect(&postgres).await.unwrap();
    for table in [
        "calls",
        "data_keys",
        "recordings",
        "segments",
        "gaps",
        "key_shreddings",
        "deadletter_keys",
    ] {
        let rows: Vec<(String,)> = sqlx::query_as(&format!("SELECT CAST(t.* AS TEXT) FROM {table} t"))
            .fetch_all(&pool)
            .await
            .unwrap();
        for (text,) in rows {
            assert!(
                common::find_probe(text.as_bytes(), &probes).is_none(),
                "plaintext in {table}"
            );
        }
        let blobs: Vec<(Vec<u8>,)> = if table == "data_keys" {
            sqlx::query_as("SELECT sealed FROM data_keys")
                .fetch_all(&pool)
                .await
                .unwrap()
        } else {
            Vec::new()
        };
        for (b,) in blobs {
            assert!(common::find_probe(&b, &probes).is_none(), "plaintext in data_keys");
        }
    }
    // Physical scan: the database's files and the write-ahead log.
    if let Ok(pg_data) = std::env::var("OPPTAK_TEST_PG_DATA") {
        let (oid,): (sqlx::postgres::types::Oid,) =
            sqlx::query_as("SELECT oid FROM pg_database WHERE datname = current_database()")
                .fetch_one(&pool)
                .await
                .unwrap();
        for dir in [format!("{pg_data}/base/{}", oid.0), format!("{pg_data}/pg_wal")] {
            let hits = common::scan_dir_since(std::path::Path::new(&dir), &probes, started);
            assert!(hits.is_empty(), "plaintext audio in PostgreSQL files: {hits:?}");
        }
    }
    // The Kafka logs of every topic opptak produces to (not the input topic,
    // which the telephony system writes in plaintext by contract).
    if let Ok(kafka_data) = std::env::var("OPPTAK_TEST_KAFKA_DATA") {
        let topics = env.config.recorder_config().topics;
        let mut scanned = 0;
        for entry in std::fs::read_dir(&kafka_data).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if name.starts_with(&topics.recordings) || name.starts_with(&topics.deadletter) {
                scanned += 1;
                let hits = common::scan_dir(&entry.path(), &probes);
                assert!(hits.is_empty(), "plaintext audio in Kafka log {name}: {hits:?}");
            }
        }
        assert!(scanned >= 8, "the output topics' partitions were scanned ({scanned})");
        // Positive control: the input topic's log does hold the audio.
        let input_hit = std::fs::read_dir(&kafka_data).unwrap().flatten().any(|e| {
            e.file_name().to_string_lossy().starts_with(&topics.telephony)
                && !common::scan_dir(&e.path(), &probes).is_empty()
        });
        assert!(input_hit, "the scan must find the plaintext the telephony system wrote");
    }
    drop(env);
}

/// Builds one bad input of each kind for the dead-letter test.
fn bad_inputs(good: &SimCall) -> Vec<(&'static str, bytes::Bytes, bytes::Bytes, v1::DeadLetterReason)> {
    use v1::DeadLetterReason as R;
    let ev = |id: &str, e: Event| v1::TelephonyEvent {
        call_id: id.into(),
        event: Some(e),
    };
    let chunk = |seq: u64, payload: Vec<u8>| {
        Event::AudioChunk(v1::AudioChunk {
            sequence: seq,
            payload,
            duration: None,
            offset: None,
            sealed_payload: Vec::new(),
        })
    };
    let mut bad_codec = good.started.clone();
    bad_codec.audio_format.as_mut().unwrap().codec = 99;
    let bad_codec_id = format!("{}-codec", good.call_id);
    let enc = |e: v1::TelephonyEvent| sim::encode(&e);
    let (k1, v1_) = (
        bytes::Bytes::from(good.call_id.clone()),
        bytes::Bytes::from_static(b"\x08\x96\x01garbage\xff"),
    );
    let (k2, v2) = enc(ev(&bad_codec_id, Event::CallStarted(bad_codec)));
    let (k3, v3) = enc(ev(&good.call_id, chunk(3, vec![0x55; 300 * 1024])));
    let (k4, v4) = enc(ev("never-started-call", chunk(0, vec![0x55; 1600])));
    let (k5, v5) = enc(ev(&good.call_id, chunk(50_000_000, vec![0x55; 1600])));
    let (_, v6) = enc(ev(&good.call_id, chunk(1, vec![0x55; 1600])));
    vec![
        ("malformed protobuf", k1, v1_, R::Malformed),
        ("unknown codec", k2, v2, R::UnknownCodec),
        ("oversized chunk", k3, v3, R::OversizedChunk),
        ("chunk for a call never started", k4, v4, R::UnknownCall),
        ("sequence far outside the window", k5, v5, R::OutsideWindow),
        (
            "key is not the call id",
            bytes::Bytes::from_static(b"another-key"),
            v6,
            R::KeyMismatch,
        ),
    ]
}

async fn dead_letter_cases(backend: Backend, name: &str) {
    let env = Env::new(&backend, name);
    let edges = env.edges().await;
    let recorder = RunningRecorder::spawn(edges.recorder());
    let calls = common::mixed_calls(&common::unique("dl"), 6);
    let topic = edges.config.recorder_config().topics.telephony;
    let bad = bad_inputs(&calls[0]);
    // Bad inputs go in the middle of the good calls' traffic.
    let mut good: Vec<_> = calls.iter().map(|c| c.events(100)).collect();
    for (i, evs) in good.iter_mut().enumerate() {
        let tail = evs.split_off(evs.len() / 2);
        for e in evs.iter() {
            let (key, payload) = sim::encode(e);
            edges.bus.publish(&topic, &key, &payload).await.unwrap();
        }
        if i == 0 {
            for (_, key, payload, _) in &bad {
                edges.bus.publish(&topic, key, payload).await.unwrap();
            }
        }
        *evs = tail;
    }
    for evs in &good {
        for e in evs {
            let (key, payload) = sim::encode(e);
            edges.bus.publish(&topic, &key, &payload).await.unwrap();
        }
    }
    // A chunk after its call ended.
    let after_end = sim::encode(&v1::TelephonyEvent {
        call_id: calls[1].call_id.clone(),
        event: Some(Event::AudioChunk(v1::AudioChunk {
            sequence: 10_000,
            // Real audio of the call: the dead letter must not show it in clear.
            payload: calls[1].wire[..1600].to_vec(),
            duration: None,
            offset: None,
            sealed_payload: Vec::new(),
        })),
    });
    wait_for_recordings(&edges, calls.len(), 120).await;
    edges.bus.publish(&topic, &after_end.0, &after_end.1).await.unwrap();
    let dls = dead_letters(&edges, bad.len() + 1, 60).await;
    recorder.stop().await.unwrap();
    verify_calls(&edges, &calls).await;
    for (what, key, payload, reason) in &bad {
        let d = dls
            .iter()
            .find(|d| d.reason == *reason as i32)
            .unwrap_or_else(|| panic!("{what}: no dead letter with {reason:?}; got {dls:?}"));
        assert_eq!(&d.original_key[..], &key[..], "{what}");
        let keep = payload.len().min(512 * 1024);
        // The original is sealed on the topic; opptak (with the keys) opens it.
        let original = edges.vault().open_dead_letter(d).await.unwrap();
        assert_eq!(&original[..], &payload[..keep], "{what}: original bytes");
        assert_eq!(d.original_bytes, payload.len() as u64, "{what}");
        assert!(!d.detail.is_empty(), "{what}: a reason text");
        assert_eq!(d.source_topic, topic);
    }
    let late = dls
        .iter()
        .find(|d| d.reason == v1::DeadLetterReason::AfterEnd as i32)
        .expect("a dead letter for the chunk after the end");
    // Sealed under the call's own recording key (so shredding the call covers it).
    assert_eq!(
        edges.vault().open_dead_letter(late).await.unwrap(),
        after_end.1.to_vec()
    );
    let declared = opptak_crypto::stream::peek(&late.sealed_original).unwrap();
    assert_eq!(declared.key_ref, format!("{}/audio-24h", calls[1].call_id));
    assert_eq!(
        dls.len(),
        bad.len() + 1,
        "exactly one dead letter per bad input: {dls:?}"
    );
    // The dead-letter topic's Kafka log holds none of that audio in clear; the
    // input topic's log (the positive control) does.
    if let (Some(_), Ok(kafka_data)) = (
        edges.config.bus.url.strip_prefix("kafka://"),
        std::env::var("OPPTAK_TEST_KAFKA_DATA"),
    ) {
        let mut probes = std::collections::HashSet::new();
        for w in calls[1].wire[..1600].chunks_exact(16).step_by(5) {
            probes.insert(<[u8; 16]>::try_from(w).unwrap());
        }
        let topics = edges.config.recorder_config().topics;
        let (mut in_dl, mut in_input) = (Vec::new(), Vec::new());
        for entry in std::fs::read_dir(&kafka_data).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if name.starts_with(&topics.deadletter) {
                in_dl.extend(common::scan_dir(&entry.path(), &probes));
            } else if name.starts_with(&topics.telephony) {
                in_input.extend(common::scan_dir(&entry.path(), &probes));
            }
        }
        assert!(in_dl.is_empty(), "plaintext audio in the dead-letter log: {in_dl:?}");
        assert!(!in_input.is_empty(), "the scan must find the audio in the input log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_embedded() {
    dead_letter_cases(Backend::Embedded, "dl_embedded").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_kafka_postgres() {
    let Some(backend) = services_backend("dl").await else {
        return;
    };
    dead_letter_cases(backend, "dl").await;
}

/// A `CallStarted` whose codec, sample rate, channel count and roles do
/// not fit together (the integrator's G.711 at 16 kHz first) is an
/// `INVALID_FORMAT` dead letter, through the real broker and the recorder:
/// no call is stored and its chunks and end are `UNKNOWN_CALL`. Valid
/// formats next to them (G.711 stereo, L16 at 16 kHz) are recorded exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_audio_formats_are_dead_lettered_at_call_start() {
    use opptak_domain::model::{AudioFormat, ChannelRole};
    use opptak_domain::Codec;
    let Some(backend) = services_backend("badformat").await else {
        return;
    };
    let env = Env::new(&backend, "badformat");
    let edges = env.edges().await;
    let recorder = RunningRecorder::spawn(edges.recorder());
    let prefix = common::unique("fmt");
    let (a, c, m) = (
        v1::ChannelRole::Agent as i32,
        v1::ChannelRole::Customer as i32,
        v1::ChannelRole::Mixed as i32,
    );
    let (pcmu, pcma, l16) = (v1::Codec::Pcmu as i32, v1::Codec::Pcma as i32, v1::Codec::L16 as i32);
    // (what, codec, rate, channels, roles)
    let bad: [(&str, i32, u32, u32, Vec<i32>); 7] = [
        ("g711u-16k", pcmu, 16_000, 2, vec![a, c]),
        ("g711a-48k", pcma, 48_000, 1, vec![m]),
        ("l16-44k1", l16, 44_100, 2, vec![]),
        ("three-channels", pcmu, 8_000, 3, vec![]),
        ("two-agents", pcma, 8_000, 2, vec![a, a]),
        ("mixed-in-stereo", l16, 16_000, 2, vec![m, a]),
        ("roles-not-channels", pcmu, 8_000, 1, vec![a, c]),
    ];
    let mut bad_calls = Vec::new();
    for (i, (what, codec, rate, channels, roles)) in bad.iter().enumerate() {
        let mut call = SimCall::synthetic(&format!("{prefix}-{what}"), Codec::Pcmu, 2, 0.5, 40 + i as u64);
        call.started.audio_format = Some(v1::AudioFormat {
            codec: *codec,
            sample_rate_hz: *rate,
            channels: *channels,
            channel_roles: roles.clone(),
        });
        bad_calls.push(call);
    }
    let mut good = vec![SimCall::synthetic(
        &format!("{prefix}-g711-ok"),
        Codec::Pcma,
        2,
        0.5,
        50,
    )];
    let wide = AudioFormat::new(Codec::L16, 16_000, vec![ChannelRole::Mixed]).unwrap();
    let pcm: Vec<i16> = (0..8_000).map(|n| ((n * 37) % 2000 - 1000) as i16).collect();
    good.push(SimCall::new(
        &format!("{prefix}-l16-16k-ok"),
        wide,
        sim::encode_pcm(Codec::L16, &pcm),
    ));
    let mut expected_dead = 0;
    for call in bad_calls.iter().chain(&good) {
        let events = call.events(100);
        if bad_calls.iter().any(|b| b.call_id == call.call_id) {
            expected_dead += events.len();
        }
        common::publish_events(&edges, &events).await;
    }
    let stored = wait_for_recordings(&edges, good.len(), 120).await;
    let dls = dead_letters(&edges, expected_dead, 60).await;
    recorder.stop().await.unwrap();
    verify_calls(&edges, &good).await;
    assert_eq!(stored[&good[1].call_id].sample_rate_hz, 16_000);
    for call in &bad_calls {
        let mine: Vec<_> = dls.iter().filter(|d| d.call_id == call.call_id).collect();
        let invalid: Vec<_> = mine
            .iter()
            .filter(|d| d.reason == v1::DeadLetterReason::InvalidFormat as i32)
            .collect();
        assert_eq!(
            invalid.len(),
            1,
            "{}: one INVALID_FORMAT for its start: {mine:?}",
            call.call_id
        );
        assert!(!invalid[0].detail.is_empty());
        assert!(
            mine.iter()
                .all(|d| d.reason == v1::DeadLetterReason::InvalidFormat as i32
                    || d.reason == v1::DeadLetterReason::UnknownCall as i32),
            "{}: {mine:?}",
            call.call_id
        );
        assert_eq!(
            mine.len(),
            call.events(100).len(),
            "{}: every event refused",
            call.call_id
        );
        let id = CallId::parse(&call.call_id).unwrap();
        assert!(
            edges.meta.load_call(&id).await.unwrap().is_none(),
            "{}: stored",
            call.call_id
        );
        assert!(!stored.contains_key(&call.call_id), "{}: recorded", call.call_id);
    }
    let g711 = dls
        .iter()
        .find(|d| d.call_id == bad_calls[0].call_id && d.reason == v1::DeadLetterReason::InvalidFormat as i32)
        .unwrap();
    assert!(g711.detail.contains("16000 Hz"), "{}", g711.detail);
    assert_eq!(dls.len(), expected_dead, "only the invalid calls' events: {dls:?}");
}

/// Lost chunks become gaps of the right length, filled with silence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_chunks_are_kept_as_gaps() {
    let env = Env::new(&Backend::Embedded, "gaps");
    let edges = env.edges().await;
    let recorder = RunningRecorder::spawn(edges.recorder());
    let call = SimCall::synthetic("gap-call", opptak_domain::Codec::Pcmu, 2, 3.0, 5);
    let mut evs = call.events(100);
    // Drop chunks 5, 6 and 20 (events are CallStarted + chunks + CallEnded).
    for seq in [20usize, 6, 5] {
        evs.remove(seq + 1);
    }
    common::publish_events(&edges, &evs).await;
    let stored = wait_for_recordings(&edges, 1, 60).await;
    recorder.stop().await.unwrap();
    let rec = edges
        .vault()
        .read_recording(&CallId::parse("gap-call").unwrap())
        .await
        .unwrap();
    let gaps: Vec<(u64, u64, u64, u64)> = rec
        .gaps
        .iter()
        .map(|g| (g.first_missing, g.missing, g.at_frame, g.frames))
        .collect();
    assert_eq!(gaps, vec![(5, 2, 4000, 1600), (20, 1, 16000, 800)]);
    // The timeline keeps its length; the gaps are silence, the rest the source.
    let src = call.expected_pcm();
    assert_eq!(rec.pcm.len(), src.len());
    let fb = 4;
    for (i, (a, b)) in rec.pcm.chunks(fb).zip(src.chunks(fb)).enumerate() {
        let in_gap = (4000..5600).contains(&i) || (16000..16800).contains(&i);
        if in_gap {
            assert_eq!(a, [0; 4], "frame {i} should be silence");
        } else {
            assert_eq!(a, b, "frame {i}");
        }
    }
    let ev = &stored["gap-call"];
    assert_eq!(ev.gaps.len(), 2);
    assert_eq!(
        ev.gaps[0].length,
        Some(prost_types::Duration {
            seconds: 0,
            nanos: 200_000_000
        })
    );
}

/// Values off the wire are bounded, not trusted (issue 15, finding 4): a
/// `CallEnded` claiming a last sequence far past anything sent ends the call
/// at the highest sequence seen (no silence invented; on the old main the
/// recorder appended silence a frame at a time until it ran out of memory),
/// and a chunk past the call's maximum length is refused. Both are
/// dead-lettered with the reason; both recordings equal their source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_values_are_dead_lettered_not_trusted() {
    let mut env = Env::new(&Backend::Embedded, "poison");
    env.config.recorder.max_call_s = 60;
    let edges = env.edges().await;
    let recorder = RunningRecorder::spawn(edges.recorder());
    let end_far = SimCall::synthetic("poison-end", opptak_domain::Codec::Pcmu, 2, 1.0, 21);
    let mut evs = end_far.events(100);
    let Some(Event::CallEnded(end)) = &mut evs.last_mut().unwrap().event else {
        panic!("the last event is CallEnded")
    };
    end.last_sequence = 1_000_000_000;
    let too_long = SimCall::synthetic("poison-long", opptak_domain::Codec::Pcmu, 2, 1.0, 22);
    let mut long_evs = too_long.events(100);
    let ended = long_evs.pop().unwrap();
    let Some(Event::AudioChunk(last_chunk)) = long_evs.last().unwrap().event.clone() else {
        panic!("chunks before CallEnded")
    };
    let mut beyond = long_evs.last().unwrap().clone();
    beyond.event = Some(Event::AudioChunk(v1::AudioChunk {
        sequence: last_chunk.sequence + 1,
        // Two minutes into a call allowed one.
        offset: Some(prost_types::Duration { seconds: 120, nanos: 0 }),
        ..last_chunk
    }));
    long_evs.push(beyond);
    long_evs.push(ended);
    evs.extend(long_evs);
    common::publish_events(&edges, &evs).await;
    wait_for_recordings(&edges, 2, 60).await;
    let dls = dead_letters(&edges, 2, 30).await;
    recorder.stop().await.unwrap();
    let find = |call: &str, reason: v1::DeadLetterReason| {
        dls.iter()
            .find(|d| d.call_id == call && d.reason == reason as i32)
            .unwrap_or_else(|| panic!("no {reason:?} dead letter for {call}: {dls:?}"))
    };
    let d = find("poison-end", v1::DeadLetterReason::OutsideWindow);
    assert!(
        d.detail.contains("1000000000") && d.detail.contains("ended at"),
        "{}",
        d.detail
    );
    let d = find("poison-long", v1::DeadLetterReason::CallTooLong);
    assert!(d.detail.contains("maximum of 60 s"), "{}", d.detail);
    assert_eq!(dls.len(), 2, "{dls:?}");
    for call in [&end_far, &too_long] {
        let rec = edges
            .vault()
            .read_recording(&CallId::parse(&call.call_id).unwrap())
            .await
            .unwrap();
        assert!(rec.complete, "{}", call.call_id);
        assert!(rec.gaps.is_empty(), "{}: {:?}", call.call_id, rec.gaps);
        assert!(
            rec.pcm == call.expected_pcm(),
            "{}: the recording is its source",
            call.call_id
        );
    }
}

/// A reader without the key-encryption key gets a clear refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_refuses_without_the_key() {
    let env = Env::new(&Backend::Embedded, "nokey");
    let edges = env.edges().await;
    let recorder = RunningRecorder::spawn(edges.recorder());
    let call = SimCall::synthetic("key-call", opptak_domain::Codec::Pcma, 2, 1.0, 9);
    common::publish_events(&edges, &call.events(100)).await;
    wait_for_recordings(&edges, 1, 60).await;
    recorder.stop().await.unwrap();
    let other = tempfile::tempdir().unwrap();
    let wrong: std::sync::Arc<dyn opptak_crypto::KeyProvider> =
        std::sync::Arc::new(opptak_crypto::LocalKeyring::open_or_create(&other.path().join("k.json")).unwrap());
    let err = opptak_vault::Vault::new(edges.meta.clone(), edges.blobs.clone(), wrong, edges.clock.clone())
        .read_recording(&CallId::parse("key-call").unwrap())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cannot decrypt"), "{err}");
}

/// A KiOptOut is recorded with who asked, when, and from which point of the
/// audio; the recording itself goes on to the end (R12).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ki_opt_out_is_recorded_and_the_recording_goes_on() {
    let env = Env::new(&Backend::Embedded, "optout");
    let edges = env.edges().await;
    let recorder = RunningRecorder::spawn(edges.recorder());
    let mut call = SimCall::synthetic("optout-call", opptak_domain::Codec::Pcmu, 2, 3.0, 11);
    call.started.ki_enabled = true;
    call.started.customer_informed = true;
    call.started.advisor_id = "adv-77".into();
    call.opt_out_at_ms = Some(1_200);
    common::publish_events(&edges, &call.events(100)).await;
    wait_for_recordings(&edges, 1, 60).await;
    recorder.stop().await.unwrap();
    let id = CallId::parse("optout-call").unwrap();
    let rec = edges.vault().read_recording(&id).await.unwrap();
    let o = rec.record.opt_out.clone().expect("opt-out recorded");
    assert_eq!(o.requested_by, "adv-77");
    assert_eq!(o.offset_us, 1_200_000);
    assert!(rec.facts.ki_active());
    assert!(rec.complete);
    assert!(
        rec.pcm == call.expected_pcm(),
        "the recording continues after the opt-out"
    );
}

/// Waits until the store holds a call's input up to `next_sequence`.
async fn wait_stored(edges: &Edges, id: &CallId, next_sequence: u64) -> opptak_store::meta::CallRecord {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(rec) = edges.meta.load_call(id).await.unwrap() {
            if rec.progress.next_sequence >= next_sequence {
                return rec;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{id}: input up to {next_sequence} never stored"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Calls whose CallEnded never comes are ended by the sweeper after
/// `recorder.idle_timeout_s` with what arrived; an idle end stamped before a
/// call's latest input is refused; a chunk after the idle end is dead-lettered.
async fn idle_calls_are_ended(backend: Backend, name: &str) {
    let env = Env::new(&backend, name);
    let edges = env.edges().await;
    let recorder = RunningRecorder::spawn(edges.recorder());
    let prefix = common::unique("idle");
    let call =
        |tag: &str, seed| SimCall::synthetic(&format!("{prefix}-{tag}"), opptak_domain::Codec::Pcma, 2, 2.0, seed);
    let (lost, active, ended) = (call("lost", 21), call("active", 22), call("ended", 23));
    let id = |c: &SimCall| CallId::parse(&c.call_id).unwrap();
    // `lost` and `active` never send their CallEnded; `ended` does.
    let without_end = |c: &SimCall| {
        let mut e = c.events(100);
        assert!(matches!(e.pop().unwrap().event, Some(Event::CallEnded(_))));
        e
    };
    let (lost_events, active_events) = (without_end(&lost), without_end(&active));
    common::publish_events(&edges, &lost_events).await;
    common::publish_events(&edges, &active_events[..active_events.len() - 1]).await;
    common::publish_events(&edges, &ended.events(100)).await;
    wait_for_recordings(&edges, 1, 60).await;
    let chunks = (lost_events.len() - 1) as u64;
    wait_stored(&edges, &id(&lost), chunks).await;
    let before = wait_stored(&edges, &id(&active), chunks - 1).await;

    // An idle end stamped before `active`'s latest input is refused: the
    // chunk after it is stored, and the call stays open.
    let stale = v1::TelephonyEvent {
        call_id: active.call_id.clone(),
        event: Some(Event::CallEnded(v1::CallEnded {
            ended_at: Some(opptak_proto::convert::timestamp(before.updated_at_us - 1_000_000)),
            reason: v1::EndReason::IdleTimeout as i32,
            last_sequence: 0,
            no_audio: false,
        })),
    };
    common::publish_events(&edges, &[stale]).await;
    common::publish_events(&edges, &active_events[active_events.len() - 1..]).await;
    let rec = wait_stored(&edges, &id(&active), chunks).await;
    assert!(rec.end.is_none() && !rec.complete, "a refused idle end ended the call");

    // The sweeper, 16 minutes on (the default timeout is 15): both open
    // calls end with everything that arrived.
    let now = opptak_domain::time::SystemClock.now_us();
    let later = edges
        .clone()
        .with_clock(Arc::new(opptak_domain::time::ManualClock::new(
            now + 16 * 60 * 1_000_000,
        )))
        .unwrap();
    assert_eq!(later.config.recorder.idle_timeout_s, 900);
    let ended_before = opptak_telemetry::metrics().idle_calls_ended.get();
    let sweeper = opptak::app::RunningSweeper::spawn(&later);
    let stored = wait_for_recordings(&edges, 3, 60).await;
    sweeper.stop().await;
    // Counted (another test of this binary may add its own).
    assert!(opptak_telemetry::metrics().idle_calls_ended.get() >= ended_before + 2);
    for c in [&lost, &active] {
        let ev = &stored[&c.call_id];
        assert_eq!(ev.frames as usize, c.frames(), "{}", c.call_id);
        assert!(ev.gaps.is_empty());
        let rec = edges.vault().read_recording(&id(c)).await.unwrap();
        assert!(rec.complete);
        assert!(
            rec.pcm == c.expected_pcm(),
            "{}: the recording holds what arrived",
            c.call_id
        );
        let end = rec.record.end.clone().unwrap();
        assert_eq!(end.reason, "idle_timeout");
        assert_eq!(end.last_sequence, Some(chunks - 1));
        assert!(end.ended_at_us <= now, "ended when its last input was stored");
    }
    let normal = edges.meta.load_call(&id(&ended)).await.unwrap().unwrap();
    assert_ne!(normal.end.unwrap().reason, "idle_timeout");

    // A chunk that comes after all is kept as a dead letter, with its reason.
    let mut late = active_events.last().unwrap().clone();
    match late.event.as_mut() {
        Some(Event::AudioChunk(c)) => c.sequence = chunks,
        other => panic!("{other:?}"),
    }
    common::publish_events(&edges, &[late]).await;
    let dl = dead_letters(&edges, 1, 60).await;
    recorder.stop().await.unwrap();
    assert!(
        dl.iter()
            .any(|d| d.call_id == active.call_id && d.reason == v1::DeadLetterReason::AfterEnd as i32),
        "{dl:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_calls_are_ended_embedded() {
    idle_calls_are_ended(Backend::Embedded, "idle").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_calls_are_ended_kafka_postgres() {
    let Some(backend) = services_backend("idle").await else {
        return;
    };
    idle_calls_are_ended(backend, "idle").await;
}

/// MinIO's endpoint and test credentials (`deploy/local/services.sh env`).
fn minio() -> Option<(String, opptak_store::s3::S3Credentials)> {
    let Ok(endpoint) = std::env::var("OPPTAK_TEST_S3_ENDPOINT") else {
        return common::skip("OPPTAK_TEST_S3_ENDPOINT not set");
    };
    let creds = opptak_store::s3::S3Credentials::new(
        std::env::var("OPPTAK_TEST_S3_ACCESS_KEY").unwrap(),
        std::env::var("OPPTAK_TEST_S3_SECRET_KEY").unwrap(),
    );
    Some((endpoint, creds))
}

/// The recording path over Kafka and PostgreSQL with `storage.blobs` on S3
/// (MinIO): every call is stored complete and reads back as its source
/// audio, whole and in playback windows (range reads of the compacted object
/// in the bucket); every object in the bucket is sealed; nothing goes to
/// local files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_path_with_blobs_on_s3() {
    use opptak_store::BlobStore;
    let Some(backend) = services_backend("s3hot").await else {
        return;
    };
    let Some((endpoint, creds)) = minio() else {
        return;
    };
    let mut env = Env::new(&backend, "s3hot");
    let url = format!(
        "s3://opptak-hot-test/{}?endpoint={endpoint}&region=us-east-1",
        common::unique("hot")
    );
    for (k, v) in env.vars.iter_mut() {
        if k.as_str() == "OPPTAK__STORAGE__BLOBS" {
            *v = url.clone();
        }
    }
    env.config = opptak::config::Config::load_from(None, &env.vars).unwrap();
    assert_eq!(env.config.storage.blobs, url);
    // The configured URL, with the test's credentials instead of the environment's.
    let hot = Arc::new(opptak_store::s3::S3BlobStore::open(&env.config.storage.blobs, creds).unwrap());
    hot.create_bucket().await.unwrap();
    let edges = Edges::open_with_hot(env.config.clone(), hot.clone()).await.unwrap();
    edges.create_topics().await.unwrap();
    assert!(edges.blobs.describe().contains("opptak-hot-test"));

    let recorder = RunningRecorder::spawn(edges.recorder());
    let calls = common::mixed_calls(&common::unique("call"), 12);
    play_interleaved(&edges, &calls, 11).await;
    wait_for_recordings(&edges, calls.len(), 180).await;
    let stats = recorder.stop().await.unwrap();
    assert_eq!(stats.dead_letters, 0, "no dead letters for well-formed calls");
    verify_calls(&edges, &calls).await;
    common::verify_copies(&edges, &calls).await;

    // Playback: windows at the start, the middle and the end.
    for c in &calls {
        let id = CallId::parse(&c.call_id).unwrap();
        let pcm = c.expected_pcm();
        let frames = c.frames() as u64;
        let bpf = pcm.len() / c.frames();
        for (first, want) in [(0, 160), (frames / 3, 400), (frames - 50, 100)] {
            let w = edges
                .vault()
                .read_frames(&id, opptak_vault::Which::Recording, first, want)
                .await
                .unwrap_or_else(|e| panic!("{}: window at {first}: {e}", c.call_id));
            let end = (first + want).min(frames);
            assert_eq!((w.first_frame, w.frames), (first, end - first), "{}", c.call_id);
            assert!(
                w.pcm == pcm[first as usize * bpf..end as usize * bpf],
                "{}: window at {first} differs from the source",
                c.call_id
            );
        }
    }

    // The bucket holds the recordings, every object sealed; no local files.
    let objects = hot.list("").await.unwrap();
    let recordings = objects.iter().filter(|p| p.starts_with("recordings/")).count();
    assert!(recordings >= calls.len(), "{recordings} recordings in {objects:?}");
    let probes = common::probes(&calls, 200);
    let mut control = vec![7u8; 13];
    control.extend_from_slice(&calls[3].wire);
    assert!(
        common::find_probe(&control, &probes).is_some(),
        "scanner must detect plaintext"
    );
    for p in &objects {
        let bytes = hot.get(p).await.unwrap();
        assert!(
            common::find_probe(&bytes, &probes).is_none(),
            "plaintext audio in the bucket: {p}"
        );
    }
    assert!(!env.blob_dir().exists(), "nothing written to local blob files");
    for p in &objects {
        hot.delete(p).await.unwrap();
    }
    assert!(hot.list("").await.unwrap().is_empty());
}

/// opptak does not start on a hot bucket with versioning (there a delete
/// would keep the object): the bucket here has Object Lock, which enables it.
#[tokio::test]
async fn a_versioned_hot_bucket_stops_the_start() {
    let Some((endpoint, creds)) = minio() else {
        return;
    };
    let url = format!(
        "s3://opptak-hot-versioned-test/{}?endpoint={endpoint}&region=us-east-1",
        common::unique("hot")
    );
    opptak_store::s3::S3ArchiveStore::open(&url, creds.clone())
        .unwrap()
        .create_bucket()
        .await
        .unwrap();
    let env = Env::new(&Backend::Embedded, "s3versioned");
    let hot = Arc::new(opptak_store::s3::S3BlobStore::open(&url, creds).unwrap());
    let e = match Edges::open_with_hot(env.config.clone(), hot).await {
        Ok(_) => panic!("a versioned hot bucket must stop the start"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        e.contains("checking the blob store") && e.contains("versioning Enabled"),
        "{e}"
    );
}
