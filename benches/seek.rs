//! Format v2: stream seal/open throughput against the bare aes-gcm crate on
//! the same buffers, and seeking — minute 30 of a 60-minute stereo G.711
//! recording, one second decrypted — through the reader, against reading the
//! whole recording, on a file blob store and SQLite (the embedded mode).
//! `cargo bench --bench seek`; results in BENCHMARKS.md.
#![allow(clippy::unwrap_used)]

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use opptak_crypto::segment::ArtifactKind;
use opptak_crypto::stream::{self, StreamInfo, StreamOpener, DEFAULT_SEGMENT_SIZE};
use opptak_crypto::{DataKey, KeyProvider, LocalKeyring};
use opptak_domain::model::{AudioFormat, CallFacts, CallId, ChannelRole, Codec, Desk, Direction, ServiceCategory};
use opptak_store::meta::{CallEnd, CallUpdate, Compacted, Flush, NewCall, StoredObject};
use opptak_vault::{Vault, Which};
use std::sync::Arc;
use std::time::Duration;

fn stream_throughput(c: &mut Criterion) {
    let key = DataKey::generate();
    let info = StreamInfo {
        kind: ArtifactKind::Recording,
        key_id: key.id().to_owned(),
        key_ref: "call-bench/audio-24h".into(),
        artifact_id: "rec-bench".into(),
    };
    // 4 MiB: 64 segments of 64 KiB (about 4 minutes of stereo G.711).
    let pt: Vec<u8> = (0..4usize << 20).map(|i| (i * 31 % 251) as u8).collect();
    let sealed = stream::seal(&key, &info, DEFAULT_SEGMENT_SIZE, &pt).unwrap();
    let mut g = c.benchmark_group("stream_v2_4MiB");
    g.throughput(Throughput::Bytes(pt.len() as u64));
    g.sample_size(20);
    g.bench_function("seal", |b| {
        b.iter(|| black_box(stream::seal(&key, &info, DEFAULT_SEGMENT_SIZE, &pt).unwrap()))
    });
    g.bench_function("open", |b| {
        b.iter(|| black_box(stream::open(&key, &sealed, &info).unwrap()))
    });
    // Baseline in the same run: the bare aes-gcm crate sealing the same 64
    // segments in place, with associated data of the header's size.
    use aes_gcm::aead::{AeadInPlace, KeyInit};
    let cipher = aes_gcm::Aes256Gcm::new_from_slice(&[7u8; 32]).unwrap();
    let opener = StreamOpener::new(&key, &sealed, sealed.len() as u64, &info).unwrap();
    let aad = vec![1u8; opener.header_len() as usize + 5];
    let nonce = aes_gcm::Nonce::from_slice(&[9u8; 12]);
    let mut tags = Vec::new();
    let mut ct = pt.clone();
    for seg in ct.chunks_mut(DEFAULT_SEGMENT_SIZE as usize) {
        tags.push(cipher.encrypt_in_place_detached(nonce, &aad, seg).unwrap());
    }
    g.bench_function("bare_aes_gcm_encrypt", |b| {
        b.iter(|| {
            let mut out = pt.clone();
            for seg in out.chunks_mut(DEFAULT_SEGMENT_SIZE as usize) {
                black_box(cipher.encrypt_in_place_detached(nonce, &aad, seg).unwrap());
            }
            black_box(out)
        })
    });
    g.bench_function("bare_aes_gcm_decrypt", |b| {
        b.iter(|| {
            let mut out = ct.clone();
            for (seg, tag) in out.chunks_mut(DEFAULT_SEGMENT_SIZE as usize).zip(&tags) {
                cipher.decrypt_in_place_detached(nonce, &aad, seg, tag).unwrap();
            }
            black_box(out)
        })
    });
    g.finish();
}

struct Fixture {
    _dir: tempfile::TempDir,
    vault: Vault,
    call_id: CallId,
}

/// A 60-minute stereo PCMU call stored as the recorder leaves it after
/// compaction: metadata in SQLite, one format-v2 object in a file blob store.
async fn sixty_minute_call() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let meta = opptak_store::open_metadata_store(&format!("sqlite://{d}/opptak.db"))
        .await
        .unwrap();
    let blobs = opptak_store::open_blob_store(&format!("file://{d}/blobs")).unwrap();
    let keys: Arc<dyn KeyProvider> = Arc::new(LocalKeyring::open_or_create(&dir.path().join("keyring.json")).unwrap());
    let call_id = CallId::parse("bench-60min").unwrap();
    let format = AudioFormat::new(Codec::Pcmu, 8000, vec![ChannelRole::Agent, ChannelRole::Customer]).unwrap();
    let frames = 8000u64 * 3600;
    let wire: Vec<u8> = (0..frames * 2).map(|i| (i * 7 % 253) as u8).collect();
    let vault = Vault::new(
        meta.clone(),
        blobs.clone(),
        keys,
        Arc::new(opptak_domain::time::SystemClock),
    );
    let (key, stored_key) = vault.new_key(call_id.as_str(), "audio-24h").unwrap();
    let key_id = stored_key.key_id.clone();
    let recording_id = "rec-bench-60min".to_string();
    let facts = CallFacts {
        call_id: call_id.clone(),
        started_at_us: 1_795_824_000_000_000,
        direction: Direction::Inbound,
        customer_ref: "cust-1".into(),
        advisor_id: "adv-1".into(),
        desk: Desk::Markets,
        service_category: ServiceCategory::InvestmentAdvice,
        ki_enabled: false,
        customer_informed: false,
        format,
        ki_notice: None,
    };
    let flush = Flush {
        new_calls: vec![NewCall {
            facts,
            key: stored_key,
            extra_keys: Vec::new(),
            recording_id: recording_id.clone(),
            blob_prefix: "recordings/bench-60min/rec-bench-60min".into(),
            created_at_us: 1,
        }],
        segments: Vec::new(),
        gaps: Vec::new(),
        updates: vec![CallUpdate {
            call_id: call_id.clone(),
            recording_id: recording_id.clone(),
            next_sequence: 36_000,
            frames,
            last_chunk_frames: 800,
            duplicate_chunks: 0,
            segments: 0,
            prev_segments: 0,
            complete: true,
            end: Some(CallEnd {
                ended_at_us: 2,
                reason: "hangup_customer".into(),
                last_sequence: Some(35_999),
            }),
            opt_out: None,
            ki_notice: None,
            updated_at_us: 2,
        }],
    };
    meta.apply(&flush).await.unwrap();
    let info = opptak_vault::artifact_info(&call_id, "audio-24h", &key_id, ArtifactKind::Recording, &recording_id);
    let sealed = stream::seal(&key, &info, DEFAULT_SEGMENT_SIZE, &wire).unwrap();
    let path = "recordings/bench-60min/rec-bench-60min/v2-bench.optk".to_string();
    let bytes = sealed.len() as u64;
    blobs.put(&path, bytes::Bytes::from(sealed)).await.unwrap();
    meta.store_compacted(&Compacted {
        call_id: call_id.clone(),
        recording_id,
        object: StoredObject { path, bytes },
        copies: Vec::new(),
        retention: Vec::new(),
        at_us: 3,
    })
    .await
    .unwrap();
    Fixture {
        _dir: dir,
        vault,
        call_id,
    }
}

fn seek(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let f = rt.block_on(sixty_minute_call());
    let window = || {
        rt.block_on(f.vault.read_window(
            &f.call_id,
            Which::Recording,
            Duration::from_secs(30 * 60),
            Duration::from_secs(1),
        ))
        .unwrap()
    };
    let w = window();
    assert_eq!(w.frames, 8000);
    assert!(w.segments_opened <= 2, "{w:?}");
    let mut g = c.benchmark_group("seek_60min_stereo_pcmu");
    g.sample_size(10);
    g.bench_function("window_1s_at_minute_30", |b| b.iter(|| black_box(window())));
    g.bench_function("whole_recording", |b| {
        b.iter(|| black_box(rt.block_on(f.vault.read_recording(&f.call_id)).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, stream_throughput, seek);
criterion_main!(benches);
