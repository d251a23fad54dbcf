//! Test suites every storage backend passes (run from `tests/store/contract.rs`).
#![allow(clippy::unwrap_used)]

use crate::meta::{CallEnd, CallUpdate, ContextRow, Flush, GapRow, NewCall, OptOut, SegmentRow, StoredKey};
use crate::{BlobStore, MetadataStore, StoreError};
use bytes::Bytes;
use opptak_domain::model::{
    AudioFormat, CallFacts, CallId, ChannelRole, Codec, Desk, Direction, KiNotice, KiNoticeMethod, ServiceCategory,
};
use std::sync::Arc;

/// The `BlobStore` contract, for every backend (`memory://`, `file://`,
/// `s3://`); everything it writes lives under `prefix` and is deleted again.
pub async fn blob_store_suite(store: Arc<dyn BlobStore>, prefix: &str) {
    use futures::{StreamExt, TryStreamExt};
    let not_found = |r: Result<Bytes, StoreError>, what: &str| {
        assert!(
            matches!(r, Err(StoreError::NotFound(_))),
            "{what}: expected NotFound, got {r:?}"
        );
    };
    store.verify().await.unwrap();

    // Round trip and overwrite.
    let a = format!("{prefix}/rec/seg-00000001");
    let b = format!("{prefix}/rec/seg-00000000");
    store.put(&a, Bytes::from_static(b"one")).await.unwrap();
    store.put(&b, Bytes::from_static(b"zero")).await.unwrap();
    assert_eq!(store.get(&a).await.unwrap().as_ref(), b"one");
    store.put(&a, Bytes::from_static(b"uno")).await.unwrap();
    assert_eq!(store.get(&a).await.unwrap().as_ref(), b"uno");
    let big = Bytes::from((0..=255u8).cycle().take(300_000).collect::<Vec<_>>());
    let c = format!("{prefix}/rec/big");
    store.put(&c, big.clone()).await.unwrap();
    assert_eq!(store.get(&c).await.unwrap(), big);
    not_found(
        store.get(&format!("{prefix}/rec/none")).await,
        "get of a missing object",
    );

    // Ranges: inside, to the end, empty; past the end is Corrupt.
    assert_eq!(store.get_range(&a, 1..3).await.unwrap().as_ref(), b"no");
    assert_eq!(
        store.get_range(&c, 123_456..123_556).await.unwrap(),
        big.slice(123_456..123_556)
    );
    assert_eq!(
        store.get_range(&c, 299_990..300_000).await.unwrap(),
        big.slice(299_990..)
    );
    assert!(store.get_range(&a, 1..1).await.unwrap().is_empty());
    for past in [2..9, 3..4, 10..12] {
        let r = store.get_range(&a, past.clone()).await;
        assert!(
            matches!(r, Err(StoreError::Corrupt(_))),
            "range {past:?} of 3 bytes: {r:?}"
        );
    }
    not_found(
        store.get_range(&format!("{prefix}/rec/none"), 0..1).await,
        "range of a missing object",
    );

    // Listing: whole segments, sorted; siblings that share a string prefix
    // and objects elsewhere stay out.
    store
        .put(&format!("{prefix}/rec2/x"), Bytes::from_static(b"x"))
        .await
        .unwrap();
    store
        .put(&format!("{prefix}/recx"), Bytes::from_static(b"x"))
        .await
        .unwrap();
    let mut rec = vec![a.clone(), b.clone(), c.clone()];
    rec.sort();
    assert_eq!(store.list(&format!("{prefix}/rec")).await.unwrap(), rec);
    assert_eq!(store.list(&format!("{prefix}/rec/")).await.unwrap(), rec);
    assert!(store.list(&format!("{prefix}/none")).await.unwrap().is_empty());
    assert!(store.list(&format!("{prefix}/re")).await.unwrap().is_empty());

    // Paths that need encoding in a URL (and in XML listings).
    let odd = [
        format!("{prefix}/odd/a b"),
        format!("{prefix}/odd/k=v+w"),
        format!("{prefix}/odd/x&y<z>'q'"),
        format!("{prefix}/odd/bl\u{e5}b\u{e6}r \u{f8}l"),
        format!("{prefix}/odd/sp ace/ne=st+ed"),
    ];
    for (i, p) in odd.iter().enumerate() {
        store.put(p, Bytes::from(format!("odd {i}"))).await.unwrap();
    }
    for (i, p) in odd.iter().enumerate() {
        assert_eq!(store.get(p).await.unwrap(), Bytes::from(format!("odd {i}")), "{p}");
        assert_eq!(
            store.get_range(p, 4..5).await.unwrap(),
            Bytes::from(i.to_string()),
            "{p}"
        );
    }
    let mut odd_sorted = odd.to_vec();
    odd_sorted.sort();
    assert_eq!(store.list(&format!("{prefix}/odd")).await.unwrap(), odd_sorted);
    assert_eq!(
        store.list(&format!("{prefix}/odd/sp ace")).await.unwrap(),
        vec![odd[4].clone()]
    );

    // More objects than one S3 listing page (1,000).
    let many: Vec<String> = (0..1_005).map(|i| format!("{prefix}/many/{i:05}")).collect();
    futures::stream::iter(many.iter().map(|p| store.put(p, Bytes::from(p.clone()))))
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await
        .unwrap();
    assert_eq!(store.list(&format!("{prefix}/many")).await.unwrap(), many);
    assert_eq!(store.get(&many[1_004]).await.unwrap(), Bytes::from(many[1_004].clone()));

    // Delete: gone for get, range and list; deleting again is Ok or NotFound.
    store.delete(&a).await.unwrap();
    not_found(store.get(&a).await, "get after delete");
    not_found(store.get_range(&a, 0..1).await, "range after delete");
    rec.retain(|p| p != &a);
    assert_eq!(store.list(&format!("{prefix}/rec")).await.unwrap(), rec);
    for missing in [a.clone(), format!("{prefix}/rec/never-written")] {
        let r = store.delete(&missing).await;
        assert!(
            matches!(r, Ok(()) | Err(StoreError::NotFound(_))),
            "delete of a missing object: {r:?}"
        );
    }

    // Clean up, deleting everything listed under the prefix.
    let all = store.list(prefix).await.unwrap();
    assert_eq!(all.len(), rec.len() + 2 + odd.len() + many.len());
    futures::stream::iter(all.iter().map(|p| store.delete(p)))
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await
        .unwrap();
    assert!(store.list(prefix).await.unwrap().is_empty());
    not_found(store.get(&odd[2]).await, "get after delete");
}

pub fn sample_call(id: &str) -> NewCall {
    NewCall {
        facts: CallFacts {
            call_id: CallId::parse(id).unwrap(),
            started_at_us: 1_764_000_000_000_000,
            direction: Direction::Inbound,
            customer_ref: "cust-1".into(),
            advisor_id: "adv-1".into(),
            desk: Desk::Markets,
            service_category: ServiceCategory::InvestmentAdvice,
            ki_enabled: true,
            customer_informed: true,
            format: AudioFormat::new(Codec::Pcma, 8000, vec![ChannelRole::Agent, ChannelRole::Customer]).unwrap(),
            ki_notice: None,
        },
        extra_keys: Vec::new(),
        key: StoredKey {
            key_id: format!("dk-{id}"),
            class: "audio-24h".into(),
            kek_id: "kek-1".into(),
            sealed: vec![0, 1, 2, 255],
        },
        recording_id: format!("rec-{id}"),
        blob_prefix: format!("recordings/{id}"),
        created_at_us: 1_764_000_000_000_001,
    }
}

pub async fn metadata_store_suite(store: Arc<dyn MetadataStore>, prefix: &str) {
    let id = format!("{prefix}-call");
    let call = sample_call(&id);
    let cid = call.facts.call_id.clone();
    assert!(store.load_call(&cid).await.unwrap().is_none());
    let flush = Flush {
        new_calls: vec![call.clone()],
        ..Default::default()
    };
    store.apply(&flush).await.unwrap();
    store.apply(&flush).await.unwrap(); // replay is harmless
    let got = store.load_call(&cid).await.unwrap().unwrap();
    assert_eq!(got.facts, call.facts);
    assert_eq!(got.key, call.key);
    assert_eq!(got.progress.next_sequence, 0);
    assert!(!got.complete && got.end.is_none());

    let seg = |idx: u64, final_segment: bool| SegmentRow {
        recording_id: call.recording_id.clone(),
        idx,
        blob_path: format!("spool/{idx:08}"),
        blob_offset: idx * 3300,
        first_frame: idx * 800,
        frames: 800,
        sealed_bytes: 3300,
        final_segment,
    };
    let update = CallUpdate {
        call_id: cid.clone(),
        recording_id: call.recording_id.clone(),
        next_sequence: 12,
        frames: 1600,
        last_chunk_frames: 800,
        duplicate_chunks: 3,
        segments: 2,
        prev_segments: 0,
        complete: true,
        end: Some(CallEnd {
            ended_at_us: 5,
            reason: "hangup_customer".into(),
            last_sequence: Some(11),
        }),
        opt_out: Some(OptOut {
            at_us: 4,
            requested_by: "adv-1".into(),
            offset_us: 1_250_000,
        }),
        ki_notice: Some(KiNotice {
            at_us: 3,
            offset_us: 4_000_000,
            method: KiNoticeMethod::IvrAnnouncement,
            announcement_id: "ivr-ki-1".into(),
            by: String::new(),
        }),
        updated_at_us: 6,
    };
    let gap = GapRow {
        recording_id: call.recording_id.clone(),
        first_missing: 3,
        missing: 2,
        at_frame: 400,
        frames: 200,
    };
    store
        .apply(&Flush {
            segments: vec![seg(1, true), seg(0, false)],
            gaps: vec![gap.clone()],
            updates: vec![update.clone()],
            ..Default::default()
        })
        .await
        .unwrap();
    let got = store.load_call(&cid).await.unwrap().unwrap();
    assert_eq!(got.progress.next_sequence, 12);
    assert_eq!(got.progress.frames, 1600);
    assert_eq!(got.progress.gaps, vec![(3, 2)]);
    assert!(got.progress.ended && got.complete);
    assert_eq!(got.segments, 2);
    assert_eq!(got.duplicate_chunks, 3);
    assert_eq!(got.end, update.end);
    assert_eq!(got.opt_out, update.opt_out);
    assert_eq!(got.facts.ki_notice, update.ki_notice);

    // A KiNotice before its call's start: kept (the first stays), and gone
    // once the call is stored with it.
    let early = sample_call(&format!("early-{prefix}"));
    let eid = early.facts.call_id.clone();
    let notice = update.ki_notice.clone().unwrap();
    store.keep_early_ki_notice(&eid, &notice, 7).await.unwrap();
    let second = KiNotice {
        method: KiNoticeMethod::Advisor,
        ..notice.clone()
    };
    store.keep_early_ki_notice(&eid, &second, 8).await.unwrap();
    assert_eq!(store.early_ki_notice(&eid).await.unwrap(), Some(notice.clone()));
    let mut started = early.clone();
    started.facts.ki_notice = Some(notice);
    store
        .apply(&Flush {
            new_calls: vec![started],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(store.early_ki_notice(&eid).await.unwrap(), None);
    assert_eq!(
        store.segments(&call.recording_id).await.unwrap(),
        vec![seg(0, false), seg(1, true)]
    );
    assert_eq!(store.gaps(&call.recording_id).await.unwrap(), vec![gap]);
    let listed = store.list_calls(10_000).await.unwrap();
    assert!(listed.iter().any(|c| c.facts.call_id == cid));

    // A CallContext: applied once per digest, the call's desk, advisor and
    // customer set in the same transaction, the progress untouched.
    let mut after = got.facts.clone();
    after.desk = Desk::Corporate;
    after.advisor_id = "adv-2".into();
    after.customer_ref = "cust-2".into();
    let row = ContextRow {
        call_id: cid.to_string(),
        digest: "d1".into(),
        by_actor: "cti".into(),
        at_us: 9,
        received_at_us: 10,
    };
    assert!(store.call_contexts(&cid).await.unwrap().is_empty());
    assert!(store.apply_call_context(&row, &after).await.unwrap());
    let mut other = after.clone();
    other.advisor_id = "adv-3".into();
    assert!(
        !store.apply_call_context(&row, &other).await.unwrap(),
        "a digest applied before changes nothing"
    );
    let now = store.load_call(&cid).await.unwrap().unwrap();
    assert_eq!(now.facts, after);
    assert_eq!(now.progress.next_sequence, 12);
    assert_eq!(store.call_contexts(&cid).await.unwrap(), vec![row]);

    // Many rows in one flush (more than one multi-row statement), several calls.
    let many: Vec<NewCall> = (0..3).map(|i| sample_call(&format!("{prefix}-many-{i}"))).collect();
    store
        .apply(&Flush {
            new_calls: many.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut flush = Flush::default();
    for (i, c) in many.iter().enumerate() {
        for idx in 0..1203u64 {
            flush.segments.push(SegmentRow {
                recording_id: c.recording_id.clone(),
                idx,
                blob_path: format!("spool/{i}"),
                blob_offset: idx * 100,
                first_frame: idx * 10,
                frames: 10,
                sealed_bytes: 100 + i as u64,
                final_segment: idx == 1202,
            });
        }
        flush.updates.push(CallUpdate {
            call_id: c.facts.call_id.clone(),
            recording_id: c.recording_id.clone(),
            next_sequence: 1203 + i as u64,
            frames: 12030,
            last_chunk_frames: 10,
            duplicate_chunks: i as u64,
            segments: 1203,
            prev_segments: 0,
            complete: i == 1,
            end: (i == 1).then(|| CallEnd {
                ended_at_us: 9,
                reason: "transfer".into(),
                last_sequence: None,
            }),
            opt_out: None,
            ki_notice: None,
            updated_at_us: 10,
        });
    }
    store.apply(&flush).await.unwrap();
    for (i, c) in many.iter().enumerate() {
        let got = store.load_call(&c.facts.call_id).await.unwrap().unwrap();
        assert_eq!(got.progress.next_sequence, 1203 + i as u64);
        assert_eq!(got.duplicate_chunks, i as u64);
        assert_eq!(got.complete, i == 1);
        assert_eq!(got.end.is_some(), i == 1);
        assert_eq!(got.segments, 1203);
        let segs = store.segments(&c.recording_id).await.unwrap();
        assert_eq!(segs.len(), 1203);
        assert!(segs.iter().all(|s| s.sealed_bytes == 100 + i as u64));
        assert!(segs[1202].final_segment && !segs[1201].final_segment);
    }
    // Open calls by when their last input was stored (the idle sweep): the
    // ended ones never, the open ones only strictly before the bound.
    let idle = |v: Vec<(CallId, i64)>| -> Vec<(String, i64)> {
        v.into_iter()
            .filter(|(c, _)| c.as_str().starts_with(prefix))
            .map(|(c, at)| (c.as_str().to_owned(), at))
            .collect()
    };
    let open = idle(store.idle_calls(11, 1_000_000).await.unwrap());
    let want: Vec<(String, i64)> = [&many[0], &many[2]]
        .iter()
        .map(|c| (c.facts.call_id.as_str().to_owned(), 10))
        .collect();
    assert_eq!(open.len(), 2, "{open:?}");
    assert!(want.iter().all(|w| open.contains(w)), "{open:?}");
    assert!(idle(store.idle_calls(10, 1_000_000).await.unwrap()).is_empty());

    // A writer whose view is stale (another recorder moved the call on) is
    // refused, and nothing of its flush is applied.
    let c = &many[0];
    let stale = Flush {
        segments: vec![SegmentRow {
            recording_id: c.recording_id.clone(),
            idx: 0,
            blob_path: "spool/stale".into(),
            blob_offset: 0,
            first_frame: 0,
            frames: 1,
            sealed_bytes: 1,
            final_segment: false,
        }],
        updates: vec![CallUpdate {
            call_id: c.facts.call_id.clone(),
            recording_id: c.recording_id.clone(),
            next_sequence: 1,
            frames: 1,
            last_chunk_frames: 1,
            duplicate_chunks: 0,
            segments: 1,
            prev_segments: 0,
            complete: false,
            end: None,
            opt_out: None,
            ki_notice: None,
            updated_at_us: 11,
        }],
        ..Default::default()
    };
    assert!(matches!(store.apply(&stale).await, Err(StoreError::Conflict(_))));
    let got = store.load_call(&c.facts.call_id).await.unwrap().unwrap();
    assert_eq!(got.segments, 1203);
    assert_eq!(got.progress.next_sequence, 1203);
    assert_eq!(store.segments(&c.recording_id).await.unwrap()[0].blob_path, "spool/0");

    // Re-wrapping for KEK rotation: guarded by the KEK the caller read.
    let counts = store.key_counts().await.unwrap();
    assert!(counts
        .iter()
        .any(|(kek, class, n)| kek == "kek-1" && class == "audio-24h" && *n >= 4));
    let todo = store.keys_under("kek-1", 100_000).await.unwrap();
    let mine: Vec<_> = todo
        .iter()
        .filter(|u| u.owner.starts_with(prefix))
        .map(|u| (u.owner.clone(), u.key.clone()))
        .collect();
    assert_eq!(mine.len(), 4);
    assert!(todo.iter().all(|u| u.key.kek_id == "kek-1" && u.created_at_us > 0));
    let (call, k) = &mine[0];
    let new = StoredKey {
        kek_id: "kek-2".into(),
        sealed: vec![9, 9],
        ..k.clone()
    };
    assert_eq!(store.rewrap(&[("kek-1".into(), new.clone())]).await.unwrap(), 1);
    assert_eq!(
        store.rewrap(&[("kek-1".into(), new.clone())]).await.unwrap(),
        0,
        "already re-wrapped"
    );
    let got = store.load_call(&CallId::parse(call).unwrap()).await.unwrap().unwrap();
    assert_eq!(got.key, new);
    assert!(store
        .keys_under("kek-1", 100_000)
        .await
        .unwrap()
        .iter()
        .all(|u| u.key.key_id != new.key_id));
    assert!(store
        .keys_under("kek-2", 100_000)
        .await
        .unwrap()
        .iter()
        .any(|u| u.key.key_id == new.key_id));

    // Crypto-shredding: the wrapped key is gone, evidence stays, once.
    let victim = &many[2].facts.call_id;
    let ev = store
        .shred_key(victim, "audio-24h", "test", "tester", 42)
        .await
        .unwrap();
    assert_eq!(ev.call_id, victim.as_str());
    let got = store.load_call(victim).await.unwrap().unwrap();
    assert_eq!(got.key_destroyed_at_us, Some(42));
    assert!(got.key.sealed.is_empty(), "the wrapped key is overwritten");
    assert!(matches!(
        store.shred_key(victim, "audio-24h", "again", "tester", 43).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(store.shreddings(Some(victim)).await.unwrap(), vec![ev]);
    // Shreddings racing each other (a KI opt-out seen by two roles): exactly
    // one wins, the others find the key gone, one piece of evidence.
    let racer = &many[1].facts.call_id;
    let ki = StoredKey {
        key_id: format!("{prefix}-ki-key"),
        class: "ki".into(),
        kek_id: "kek-2".into(),
        sealed: vec![7; 40],
    };
    store.create_key(racer, &ki, 50).await.unwrap();
    let attempts = (0..6).map(|i| {
        let store = store.clone();
        let racer = racer.clone();
        async move {
            store
                .shred_key(&racer, "ki", "KI opt-out", &format!("role-{i}"), 60)
                .await
        }
    });
    let results = futures::future::join_all(attempts).await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "{results:?}");
    assert!(results
        .iter()
        .all(|r| r.is_ok() || matches!(r, Err(StoreError::NotFound(_)))));
    let ev: Vec<_> = store
        .shreddings(Some(racer))
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.class == "ki")
        .collect();
    assert_eq!(ev.len(), 1);
    assert!(
        store
            .keys_under("kek-1", 100_000)
            .await
            .unwrap()
            .iter()
            .all(|u| u.owner != victim.as_str()),
        "a shredded key is not live"
    );
    recent_conversations_suite(&store, prefix).await;
}

/// `recent_conversations`: conversations only (never calls), newest first,
/// from `since`, by channel and advisor, at most `limit`.
async fn recent_conversations_suite(store: &Arc<dyn MetadataStore>, prefix: &str) {
    use opptak_domain::model::{Channel, ConversationFacts};
    // Far in the future, so conversations of other suites cannot interfere.
    let base = 7_000_000_000_000_000;
    let advisor = format!("{prefix}-adv");
    let start = |i: i64, channel: Channel, advisor_id: &str| ConversationFacts {
        conversation_id: CallId::parse(&format!("{prefix}-conv-{i}")).unwrap(),
        started_at_us: base + i,
        channel,
        customer_ref: if i % 2 == 0 {
            format!("{prefix}-cust")
        } else {
            String::new()
        },
        advisor_id: advisor_id.to_owned(),
        desk: Desk::CustomerCenter,
        service_category: ServiceCategory::General,
        handover_at_us: None,
    };
    let all = [
        start(1, Channel::AinoChatbot, ""),
        start(2, Channel::AdvisorChat, &advisor),
        start(3, Channel::AinoChatbot, &advisor),
        start(4, Channel::Email, "someone-else"),
    ];
    for f in &all {
        assert!(store
            .start_conversation(f, None, f.started_at_us)
            .await
            .unwrap()
            .is_none());
    }
    // A call in the window is never listed.
    let mut call = sample_call(&format!("{prefix}-call-in-window"));
    call.facts.started_at_us = base + 5;
    store
        .apply(&Flush {
            new_calls: vec![call],
            ..Default::default()
        })
        .await
        .unwrap();
    let ids = |rows: Vec<crate::meta::ConversationRecord>| {
        rows.into_iter()
            .map(|r| r.facts.conversation_id.as_str().rsplit('-').next().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let got = store.recent_conversations(base, None, None, 10).await.unwrap();
    assert_eq!(got[0].facts, all[3]);
    assert_eq!(ids(got), ["4", "3", "2", "1"]);
    let got = store.recent_conversations(base + 2, None, None, 10).await.unwrap();
    assert_eq!(ids(got), ["4", "3", "2"]);
    let got = store.recent_conversations(base, None, None, 2).await.unwrap();
    assert_eq!(ids(got), ["4", "3"]);
    let got = store
        .recent_conversations(base, Some(Channel::AinoChatbot), None, 10)
        .await
        .unwrap();
    assert_eq!(ids(got), ["3", "1"]);
    let got = store
        .recent_conversations(base, None, Some(&advisor), 10)
        .await
        .unwrap();
    assert_eq!(ids(got), ["3", "2"]);
    let got = store
        .recent_conversations(base, Some(Channel::AdvisorChat), Some(&advisor), 10)
        .await
        .unwrap();
    assert_eq!(ids(got), ["2"]);
}
