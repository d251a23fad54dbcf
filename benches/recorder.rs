//! Micro-benchmarks of the recorder's per-chunk work: protobuf decode, G.711
//! decode, reassembly, and sealing segments. `cargo bench --bench recorder`.
//! End-to-end throughput through Kafka is `opptak loadgen` (BENCHMARKS.md).
#![allow(clippy::unwrap_used)]

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use opptak::sim::{self, SimCall};
use opptak_crypto::segment::{self, ArtifactKind, Expect, SegmentHeader};
use opptak_crypto::DataKey;
use opptak_domain::model::Codec;
use opptak_domain::reassembly::{Reassembler, ReassemblyConfig};
use opptak_proto::v1;
use opptak_proto::Message;

fn per_chunk(c: &mut Criterion) {
    let call = SimCall::synthetic("bench", Codec::Pcmu, 2, 10.0, 1);
    let events: Vec<Vec<u8>> = call.events(100).iter().map(|e| e.encode_to_vec()).collect();
    let chunks = &events[1..events.len() - 1];
    let mut g = c.benchmark_group("per_chunk_100ms_stereo_pcmu");
    g.throughput(Throughput::Elements(chunks.len() as u64));
    g.bench_function("protobuf_decode", |b| {
        b.iter(|| {
            for c in chunks {
                black_box(v1::TelephonyEvent::decode(c.as_slice()).unwrap());
            }
        })
    });
    let payloads: Vec<Vec<u8>> = chunks
        .iter()
        .map(|c| match v1::TelephonyEvent::decode(c.as_slice()).unwrap().event {
            Some(v1::telephony_event::Event::AudioChunk(a)) => a.payload,
            _ => unreachable!(),
        })
        .collect();
    g.bench_function("g711_decode", |b| {
        b.iter(|| {
            for p in &payloads {
                black_box(call.format.decode(p).unwrap());
            }
        })
    });
    g.bench_function("reassemble_in_order", |b| {
        b.iter(|| {
            let mut r = Reassembler::new(call.format.clone(), ReassemblyConfig::default());
            for (i, p) in payloads.iter().enumerate() {
                r.offer(i as u64, p, None, ()).unwrap();
                black_box(r.drain());
            }
        })
    });
    g.bench_function("decode_and_reassemble_shuffled", |b| {
        let mut evs = call.events(100);
        sim::shuffle_and_duplicate(&mut evs, 6, 0.1, 3);
        let enc: Vec<Vec<u8>> = evs[1..evs.len() - 1].iter().map(|e| e.encode_to_vec()).collect();
        b.iter(|| {
            let mut r = Reassembler::new(call.format.clone(), ReassemblyConfig::default());
            for e in &enc {
                if let Some(v1::telephony_event::Event::AudioChunk(a)) =
                    v1::TelephonyEvent::decode(e.as_slice()).unwrap().event
                {
                    let _ = r.offer(a.sequence, &a.payload, None, ());
                    black_box(r.drain());
                }
            }
        })
    });
    g.finish();
}

fn sealing(c: &mut Criterion) {
    let key = DataKey::generate();
    // 250 ms of stereo PCM16 at 8 kHz (one flush of one call) and 64 KiB.
    for size in [8_000usize, 65_536] {
        let pt = vec![0x5Au8; size];
        let hdr = SegmentHeader {
            kind: ArtifactKind::Recording,
            final_segment: false,
            key_id: key.id().to_owned(),
            recording_id: "rec-bench".into(),
            index: 7,
            first_frame: 0,
        };
        let sealed = segment::seal(&key, &hdr, &pt).unwrap();
        let mut g = c.benchmark_group(format!("segment_{size}_bytes"));
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function("seal", |b| {
            b.iter(|| black_box(segment::seal(&key, &hdr, &pt).unwrap()))
        });
        g.bench_function("open", |b| {
            let e = Expect {
                kind: ArtifactKind::Recording,
                recording_id: "rec-bench",
                index: 7,
            };
            b.iter(|| black_box(segment::open(&key, &sealed, e).unwrap()))
        });
        // Baseline in the same run: the bare aes-gcm crate on the same buffer
        // with associated data of the header's size (the format's overhead is
        // the header, the random nonce and the checks).
        use aes_gcm::aead::{Aead, KeyInit, Payload};
        let cipher = aes_gcm::Aes256Gcm::new_from_slice(&[7u8; 32]).unwrap();
        let nonce = [9u8; 12];
        let aad = vec![1u8; sealed.len() - size - 16];
        let ct = cipher
            .encrypt(aes_gcm::Nonce::from_slice(&nonce), Payload { msg: &pt, aad: &aad })
            .unwrap();
        g.bench_function("bare_aes_gcm_encrypt", |b| {
            b.iter(|| {
                black_box(
                    cipher
                        .encrypt(aes_gcm::Nonce::from_slice(&nonce), Payload { msg: &pt, aad: &aad })
                        .unwrap(),
                )
            })
        });
        g.bench_function("bare_aes_gcm_decrypt", |b| {
            b.iter(|| {
                black_box(
                    cipher
                        .decrypt(aes_gcm::Nonce::from_slice(&nonce), Payload { msg: &ct, aad: &aad })
                        .unwrap(),
                )
            })
        });
        g.finish();
    }
}

criterion_group!(benches, per_chunk, sealing);
criterion_main!(benches);
