//! QA sampling (R6) and the KI reporting index (R5), issue 6 item 3, on
//! SQLite and PostgreSQL: stratified systematic sampling (every stratum's
//! first call, each stratum within one call of its share, share 0 and 1),
//! consistent under concurrent drafting and idempotent for retried drafts;
//! opted-out calls gone from every read whatever the order; QA scoring
//! refused to other roles, unsampled calls and invalid scores; notes sealed
//! at rest; the report's numbers on a small data set computed by hand (with
//! edit distances from real approvals); the CSV read back. And the hook: a
//! call drafted by the real pipeline is indexed and sampled.
//!
//! Issue 16, section 6: strata by the language detected from the
//! transcript (not the configured one) and by recognition failure; a call
//! whose recognition failed (the real speech server refusing the language)
//! sampled and queued for listening; a draft holding a lexicon term queued
//! by screening though the sample did not pick it; the real language model
//! asked for its second opinion and the answer recorded.

use crate::common;
use common::AddApproved;

use bytes::Bytes;
use common::{wait_for_recordings, Backend, Env};
use opptak::app::{Edges, RunningKi, RunningRecorder};
use opptak_crypto::segment::ArtifactKind;
use opptak_crypto::stream::{self, StreamInfo, DEFAULT_SEGMENT_SIZE};
use opptak_review::identity::{Identity, Role};
use opptak_review::qa::{Qa, QaFlag, QaScore, Refusal, TopicRow, CSV_HEADER, TOTAL};
use opptak_review::review::{Decision, Review};

use opptak_domain::model::{CallId, Desk, ServiceCategory};
use opptak_domain::summary::Draft;
use opptak_domain::time::days_from_civil;
use opptak_ki::asr::{AsrError, SpeechRecognizer, Transcript, Utterance};
use opptak_store::meta::{CallEnd, CallUpdate, Flush, OptOut, StoredObject};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

const PW: &str = "correct horse battery staple";
const ADVISOR: &str = "adv-anne";
const HOUR_US: i64 = 3_600_000_000;

pub(crate) async fn backends(name: &str) -> Vec<Env> {
    let mut out = vec![Env::new(&Backend::Embedded, name)];
    if let (Some(kafka), Some(postgres)) = (common::kafka(), common::postgres_db(name).await) {
        out.push(Env::new(&Backend::Services { kafka, postgres }, name));
    }
    out
}

pub(crate) fn day_us(y: i64, m: u32, d: u32) -> i64 {
    days_from_civil(y, m, d) * 24 * HOUR_US
}

/// A call of `ADVISOR` as the recorder would have stored it, finished, with
/// its `ki` key (what KI seals under).
pub(crate) struct CallSpec {
    pub(crate) id: String,
    pub(crate) desk: Desk,
    pub(crate) started_at_us: i64,
}

fn update(id: &str, at_us: i64, opt_out: bool) -> CallUpdate {
    update_lasting(id, at_us, 60, opt_out)
}

/// [`update`] for a call of `seconds`.
fn update_lasting(id: &str, at_us: i64, seconds: i64, opt_out: bool) -> CallUpdate {
    CallUpdate {
        call_id: CallId::parse(id).unwrap(),
        recording_id: format!("rec-{id}"),
        next_sequence: 0,
        frames: 0,
        last_chunk_frames: 0,
        duplicate_chunks: 0,
        segments: 0,
        prev_segments: 0,
        complete: true,
        end: Some(CallEnd {
            ended_at_us: at_us + seconds * 1_000_000,
            reason: "hangup_customer".into(),
            last_sequence: None,
        }),
        opt_out: opt_out.then(|| OptOut {
            at_us: at_us + 30_000_000,
            requested_by: "customer".into(),
            offset_us: 0,
        }),
        ki_notice: None,
        updated_at_us: at_us + seconds * 1_000_000,
    }
}

async fn register(edges: &Edges, calls: &[CallSpec]) {
    register_lasting(edges, calls, |_| 60).await;
}

/// [`register`], each call lasting `seconds(call)`.
pub(crate) async fn register_lasting(edges: &Edges, calls: &[CallSpec], seconds: impl Fn(&CallSpec) -> i64) {
    let new_calls = calls
        .iter()
        .map(|c| {
            let mut n = opptak_store::contract::sample_call(&c.id);
            n.facts.desk = c.desk;
            n.facts.started_at_us = c.started_at_us;
            n.facts.advisor_id = ADVISOR.into();
            n.facts.service_category = ServiceCategory::General;
            n
        })
        .collect();
    edges
        .meta
        .apply(&Flush {
            new_calls,
            ..Default::default()
        })
        .await
        .unwrap();
    edges
        .meta
        .apply(&Flush {
            updates: calls
                .iter()
                .map(|c| update_lasting(&c.id, c.started_at_us, seconds(c), false))
                .collect(),
            ..Default::default()
        })
        .await
        .unwrap();
    for c in calls {
        let cid = CallId::parse(&c.id).unwrap();
        let (_, key) = edges.vault().new_key(cid.as_str(), "ki").unwrap();
        edges.meta.create_key(&cid, &key, edges.clock.now_us()).await.unwrap();
    }
}

async fn opt_out(edges: &Edges, id: &str, started_at_us: i64) {
    edges
        .meta
        .apply(&Flush {
            updates: vec![update(id, started_at_us, true)],
            ..Default::default()
        })
        .await
        .unwrap();
}

/// Stores a draft artifact the way the summarizer does (sealed under the
/// call's `ki` key), so the real review service can approve it.
pub(crate) async fn store_draft(edges: &Edges, cid: &CallId, draft: &Draft) {
    store_ki_json(edges, cid, ArtifactKind::Draft, "draft", draft).await;
}

/// Stores a KI artifact as the KI roles do: JSON sealed under the call's
/// `ki` key, recorded as `store_kind`.
async fn store_ki_json<T: serde::Serialize>(edges: &Edges, cid: &CallId, kind: ArtifactKind, store_kind: &str, v: &T) {
    let row = edges.meta.class_key(cid, "ki").await.unwrap().unwrap();
    let key = edges.vault().open_row(cid, &row).unwrap();
    let id = format!("{store_kind}-{}", uuid::Uuid::new_v4().simple());
    let info = StreamInfo {
        kind,
        key_id: key.id().to_owned(),
        key_ref: format!("{cid}/ki"),
        artifact_id: id.clone(),
    };
    let sealed = stream::seal(&key, &info, DEFAULT_SEGMENT_SIZE, &serde_json::to_vec(v).unwrap()).unwrap();
    let path = format!("ki/{cid}/{id}.optk");
    edges.blobs.put(&path, Bytes::from(sealed.clone())).await.unwrap();
    let object = StoredObject {
        path,
        bytes: sealed.len() as u64,
    };
    edges
        .meta
        .add_artifact(cid, &id, store_kind, key.id(), &object, edges.clock.now_us())
        .await
        .unwrap();
}

pub(crate) fn draft(summary: &str, topics: &[&str], language: &str) -> Draft {
    Draft {
        summary: summary.into(),
        topics: topics.iter().map(|t| t.to_string()).collect(),
        customer_requests: Vec::new(),
        follow_ups: Vec::new(),
        language: language.into(),
        source: "test".into(),
        prompt_version: "none".into(),
    }
}

pub(crate) async fn facts(edges: &Edges, id: &str) -> opptak_domain::model::CallFacts {
    edges
        .meta
        .load_call(&CallId::parse(id).unwrap())
        .await
        .unwrap()
        .unwrap()
        .facts
}

/// Qa over the same store with another share.
pub(crate) async fn qa_with_share(edges: &Edges, share: f64) -> Qa {
    let mut review = edges.review();
    review.config.qa.share = share;
    Qa::open(&review).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_is_stratified_systematic_concurrent_and_idempotent() {
    for env in backends("qa_sampling").await {
        let edges = env.edges().await;
        let day = day_us(2026, 3, 2);
        // 12 strata of skewed sizes (1 to 56 calls; 336 in all): small ones
        // are where a proportional sample would miss whole groups.
        let topics = ["cards", "mortgage_loans", "pension"];
        let desks = [Desk::CustomerCenter, Desk::Markets];
        let langs = ["nb", "en"];
        let mut specs = Vec::new();
        let mut plan: Vec<(String, Draft)> = Vec::new();
        let mut sizes: BTreeMap<String, u64> = BTreeMap::new();
        let mut k = 0usize;
        for topic in topics {
            for desk in desks {
                for lang in langs {
                    k += 1;
                    let size = [1, 2, 3, 9, 10, 11, 19, 21, 30, 41, 56, 133][k - 1];
                    sizes.insert(opptak_review::qa::stratum(topic, desk.as_str(), lang, false), size);
                    for i in 0..size {
                        let id = format!("s{k:02}-{i:03}");
                        specs.push(CallSpec {
                            id: id.clone(),
                            desk,
                            started_at_us: day + (i as i64) * 1_000_000,
                        });
                        plan.push((id, draft("Customer asked about a thing.", &[topic, "other"], lang)));
                    }
                }
            }
        }
        assert_eq!(plan.len(), 336);
        register(&edges, &specs).await;

        // Sixteen tasks over two independent pools (as two processes would).
        let qa = [
            Arc::new(Qa::open(&edges.review()).await.unwrap()),
            Arc::new(Qa::open(&edges.review()).await.unwrap()),
        ];
        assert_eq!(qa[0].share(), 0.1);
        let mut tasks = Vec::new();
        let plan = Arc::new(plan);
        for t in 0..16usize {
            let (qa, plan, edges) = (qa[t % 2].clone(), plan.clone(), edges.clone());
            tasks.push(tokio::spawn(async move {
                let mut out = Vec::new();
                for (id, d) in plan.iter().skip(t).step_by(16) {
                    let f = facts(&edges, id).await;
                    out.push((id.clone(), qa.on_draft(&f, d).await.unwrap()));
                }
                out
            }));
        }
        let mut first: HashMap<String, bool> = HashMap::new();
        for t in tasks {
            for (id, ix) in t.await.unwrap() {
                assert!(ix.new, "{id} indexed twice");
                first.insert(id, ix.sampled);
            }
        }
        assert_eq!(first.len(), 336);

        let check = |strata: Vec<opptak_review::qa::StratumRow>| {
            assert_eq!(strata.len(), sizes.len(), "{strata:?}");
            for s in &strata {
                let seen = sizes[&s.stratum];
                assert_eq!(s.seen, seen, "{}", s.stratum);
                // Systematic sampling samples exactly ceil(seen · share).
                assert_eq!(s.sampled, (seen * 10).div_ceil(100), "{}", s.stratum);
                assert!(s.sampled >= 1, "{}: its first call is sampled", s.stratum);
                assert!((s.sampled as f64 - 0.1 * seen as f64).abs() <= 1.0, "{s:?}");
            }
        };
        check(qa[0].strata().await.unwrap());
        // The decisions agree with the counters and the queue.
        let queue = qa[1].queue().await.unwrap();
        assert_eq!(queue.len(), first.values().filter(|s| **s).count());
        let mut per_stratum: BTreeMap<String, u64> = BTreeMap::new();
        for q in &queue {
            assert!(first[&q.call_id], "{} queued but not sampled", q.call_id);
            assert!(q.reviewers.is_empty());
            *per_stratum.entry(q.stratum.clone()).or_default() += 1;
        }
        for s in qa[0].strata().await.unwrap() {
            assert_eq!(per_stratum.get(&s.stratum).copied().unwrap_or(0), s.sampled);
        }

        // A retried draft (the summarizer's retry, concurrently) changes nothing.
        let mut tasks = Vec::new();
        for t in 0..8usize {
            let (qa, plan, edges) = (qa[t % 2].clone(), plan.clone(), edges.clone());
            tasks.push(tokio::spawn(async move {
                let mut out = Vec::new();
                for (id, d) in plan.iter().skip(t).step_by(8) {
                    let f = facts(&edges, id).await;
                    out.push((id.clone(), qa.on_draft(&f, d).await.unwrap()));
                }
                out
            }));
        }
        for t in tasks {
            for (id, ix) in t.await.unwrap() {
                assert!(!ix.new, "{id}");
                assert_eq!(ix.sampled, first[&id], "{id} changed its sampling decision");
                assert_eq!(
                    qa[0].is_sampled(&CallId::parse(&id).unwrap()).await.unwrap(),
                    ix.sampled
                );
            }
        }
        check(qa[1].strata().await.unwrap());

        // In order: a stratum's first call is sampled, then one in ten.
        let seq: Vec<CallSpec> = (0..25)
            .map(|i| CallSpec {
                id: format!("seq-{i:02}"),
                desk: Desk::Corporate,
                started_at_us: day + i * 1_000_000,
            })
            .collect();
        register(&edges, &seq).await;
        let mut picked = Vec::new();
        for (i, c) in seq.iter().enumerate() {
            let ix = qa[0]
                .on_draft(&facts(&edges, &c.id).await, &draft("x", &["cards"], "nb"))
                .await
                .unwrap();
            if ix.sampled {
                picked.push(i);
            }
        }
        assert_eq!(picked, vec![0, 10, 20]);

        // Share 0 samples none, share 1 every call.
        let none = qa_with_share(&edges, 0.0).await;
        let all = qa_with_share(&edges, 1.0).await;
        let extra: Vec<CallSpec> = (0..40)
            .map(|i| CallSpec {
                id: format!("share-{i:02}"),
                desk: Desk::PrivateBanking,
                started_at_us: day + i * 1_000_000,
            })
            .collect();
        register(&edges, &extra).await;
        for (i, c) in extra.iter().enumerate() {
            let f = facts(&edges, &c.id).await;
            let lang = if i % 2 == 0 { "nb" } else { "en" };
            if i < 20 {
                let ix = none.on_draft(&f, &draft("x", &["insurance"], lang)).await.unwrap();
                assert!(ix.new && !ix.sampled, "share 0 sampled {}", c.id);
            } else {
                let ix = all.on_draft(&f, &draft("x", &["complaints"], lang)).await.unwrap();
                assert!(ix.new && ix.sampled, "share 1 skipped {}", c.id);
            }
        }
        let strata = none.strata().await.unwrap();
        for s in strata.iter().filter(|s| s.stratum.starts_with("insurance|")) {
            assert_eq!((s.seen, s.sampled), (10, 0));
        }
        for s in strata.iter().filter(|s| s.stratum.starts_with("complaints|")) {
            assert_eq!((s.seen, s.sampled), (10, 10));
        }
    }
}

/// A scripted test: on `TEST_DAY`, calls c1..c6 and c8, and c7 a week later.
const STRATUM_CARDS: &str = "cards|customer_center|en|asr-ok";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scoring_report_and_opt_out_on_a_known_data_set() {
    for env in backends("qa_report").await {
        let edges = env.edges().await;
        let id = Identity::open(&edges.review()).await.unwrap();
        let anne = id
            .add_approved("setup", ADVISOR, "Anne", Role::Advisor, "oslo", PW)
            .await
            .unwrap();
        let kari = id
            .add_approved("setup", "qa-kari", "Kari", Role::Qa, "qa", PW)
            .await
            .unwrap();
        let lars = id
            .add_approved("setup", "qa-lars", "Lars", Role::Qa, "qa", PW)
            .await
            .unwrap();
        let lead = id
            .add_approved("setup", "lead-lise", "Lise", Role::TeamLead, "oslo", PW)
            .await
            .unwrap();

        // Share one half: a stratum's calls 0, 2, 4, … are sampled.
        let qa = qa_with_share(&edges, 0.5).await;
        let review = Review::open(&edges.review()).await.unwrap();
        let d = day_us(2026, 3, 2) + 9 * HOUR_US;
        let later = day_us(2026, 3, 10) + 9 * HOUR_US;
        let odd = day_us(2026, 3, 20) + 9 * HOUR_US;
        let cc = Desk::CustomerCenter;
        let calls: Vec<(&str, Desk, i64, Draft)> = vec![
            (
                "qa-c1",
                cc,
                d,
                draft(
                    "Customer reports a lost Zorblaxcard.",
                    &["cards", "fraud_security"],
                    "en",
                ),
            ),
            (
                "qa-c2",
                cc,
                d + 1,
                draft("Card limit raise requested.", &["cards"], "en"),
            ),
            (
                "qa-c3",
                cc,
                d + 2,
                draft("Customer disputes a card fee.", &["cards"], "en"),
            ),
            (
                "qa-c4",
                Desk::Markets,
                d + 3,
                draft("Kunden vil refinansiere boliglånet.", &["mortgage_loans"], "nb"),
            ),
            (
                "qa-c5",
                Desk::Markets,
                d + 4,
                draft("Kunden spør om rente.", &["mortgage_loans"], "nb"),
            ),
            (
                "qa-c6",
                Desk::PrivateBanking,
                d + 5,
                draft("Pension transfer asked.", &["pension"], "en"),
            ),
            (
                "qa-c7",
                Desk::Corporate,
                later,
                draft("Corporate card order.", &["cards"], "en"),
            ),
            (
                "qa-c8",
                Desk::Corporate,
                d + 6,
                draft("Opted out before drafting.", &["pension"], "nb"),
            ),
            (
                "qa-c9",
                cc,
                odd,
                draft("Hostile topic ids.", &["=HYPERLINK(\"http://x\")", "-2+3"], "en"),
            ),
        ];
        register(
            &edges,
            &calls
                .iter()
                .map(|(id, desk, at, _)| CallSpec {
                    id: id.to_string(),
                    desk: *desk,
                    started_at_us: *at,
                })
                .collect::<Vec<_>>(),
        )
        .await;
        // c8's customer opts out before the draft is indexed.
        opt_out(&edges, "qa-c8", d + 6).await;
        let mut sampled = BTreeMap::new();
        for (call, _, _, dr) in &calls {
            store_draft(&edges, &CallId::parse(call).unwrap(), dr).await;
            let ix = qa.on_draft(&facts(&edges, call).await, dr).await.unwrap();
            sampled.insert(call.to_string(), ix.sampled);
        }
        let want: BTreeMap<String, bool> = [
            ("qa-c1", true),
            ("qa-c2", false),
            ("qa-c3", true),
            ("qa-c4", true),
            ("qa-c5", false),
            ("qa-c6", true),
            ("qa-c7", true),
            ("qa-c8", true),
            ("qa-c9", true),
        ]
        .into_iter()
        .map(|(c, s)| (c.to_string(), s))
        .collect();
        assert_eq!(sampled, want);
        let cid = |s: &str| CallId::parse(s).unwrap();
        // Opted out first, drafted after: indexed, and invisible.
        assert!(!qa.is_sampled(&cid("qa-c8")).await.unwrap());
        assert!(qa.call(&cid("qa-c8")).await.unwrap().is_none());

        // The advisor's decisions through the real review service.
        let approve = |c: &'static str, text: &'static str| {
            let (review, anne) = (&review, &anne);
            async move {
                review
                    .decide(anne, &CallId::parse(c).unwrap(), Decision::Approve(text.into()))
                    .await
                    .unwrap()
            }
        };
        // +3 words of 5: distance 3, 0.6 per draft word.
        approve(
            "qa-c1",
            "Customer reports a lost Zorblaxcard. Replacement card ordered.",
        )
        .await;
        // Unchanged: 0.
        approve("qa-c2", "Card limit raise requested.").await;
        review
            .decide(&anne, &cid("qa-c3"), Decision::Reject("not what was said".into()))
            .await
            .unwrap();
        // One word of 4 replaced: 1, 0.25 per draft word (an edit first).
        review
            .decide(&anne, &cid("qa-c4"), Decision::Edit("Kunden vil refinansiere".into()))
            .await
            .unwrap();
        approve("qa-c4", "Kunden vil refinansiere huslånet.").await;
        let c1 = qa.call(&cid("qa-c1")).await.unwrap().unwrap();
        assert_eq!(
            (c1.decision.as_deref(), c1.edit_distance, c1.row.draft_words),
            (Some("approved"), Some(3), 5)
        );
        assert_eq!(c1.row.topics, vec!["cards", "fraud_security"]);
        assert_eq!(c1.row.day, "2026-03-02");
        let c3 = qa.call(&cid("qa-c3")).await.unwrap().unwrap();
        assert_eq!((c3.decision.as_deref(), c3.edit_distance), (Some("rejected"), None));

        // Scoring: only QA, only sampled calls, valid scores, flags with a note.
        let s = |c, r, q, flag: Option<QaFlag>, note: &str| QaScore {
            correctness: c,
            relevance: r,
            quality: q,
            flag,
            note: note.into(),
        };
        let refusal = |e: anyhow::Error| e.downcast_ref::<Refusal>().cloned();
        for who in [&anne, &lead] {
            let e = qa.score(who, &cid("qa-c1"), s(3, 3, 3, None, "")).await.unwrap_err();
            assert_eq!(refusal(e), Some(Refusal::NotQa));
        }
        let e = qa.score(&kari, &cid("qa-c2"), s(3, 3, 3, None, "")).await.unwrap_err();
        assert_eq!(refusal(e), Some(Refusal::NotSampled), "an unsampled call");
        for bad in [s(0, 3, 3, None, ""), s(3, 6, 3, None, ""), s(3, 3, 9, None, "")] {
            let e = qa.score(&kari, &cid("qa-c1"), bad).await.unwrap_err();
            assert!(matches!(refusal(e), Some(Refusal::Invalid(_))));
        }
        let e = qa
            .score(&kari, &cid("qa-c1"), s(3, 3, 3, Some(QaFlag::Unexpected), "  "))
            .await
            .unwrap_err();
        assert!(matches!(refusal(e), Some(Refusal::Invalid(m)) if m.contains("note")));
        assert!(
            qa.reviews(&cid("qa-c1")).await.unwrap().is_empty(),
            "refusals store nothing"
        );

        const NOTE: &str = "Vurdering: utkastet antar kjønn ut fra stemmen PLAINNOTE";
        qa.score(&kari, &cid("qa-c1"), s(4, 5, 3, None, "Fine summary."))
            .await
            .unwrap();
        qa.score(&lars, &cid("qa-c1"), s(2, 3, 4, Some(QaFlag::Discriminatory), NOTE))
            .await
            .unwrap();
        qa.score(
            &kari,
            &cid("qa-c3"),
            s(5, 5, 5, Some(QaFlag::Unexpected), "Odd phrasing."),
        )
        .await
        .unwrap();
        qa.score(&kari, &cid("qa-c4"), s(3, 3, 3, None, "")).await.unwrap();
        // Scoring again replaces the reviewer's earlier assessment.
        qa.score(&kari, &cid("qa-c4"), s(2, 2, 2, None, "Second look."))
            .await
            .unwrap();
        qa.score(
            &kari,
            &cid("qa-c6"),
            s(1, 1, 1, Some(QaFlag::Unexpected), "Pension note."),
        )
        .await
        .unwrap();
        qa.score(&kari, &cid("qa-c7"), s(4, 4, 4, None, "Corporate note."))
            .await
            .unwrap();

        let r1 = qa.reviews(&cid("qa-c1")).await.unwrap();
        assert_eq!(
            r1.iter()
                .map(|r| (r.reviewer.as_str(), r.correctness, r.flag, r.note.as_deref()))
                .collect::<Vec<_>>(),
            vec![
                ("qa-kari", 4, None, Some("Fine summary.")),
                ("qa-lars", 2, Some(QaFlag::Discriminatory), Some(NOTE)),
            ]
        );
        let r4 = qa.reviews(&cid("qa-c4")).await.unwrap();
        assert_eq!(r4.len(), 1);
        assert_eq!((r4[0].quality, r4[0].note.as_deref()), (2, Some("Second look.")));

        // c6's customer opts out after it was sampled and scored; c7's KI
        // data expires (its key shredded by the sweeper).
        opt_out(&edges, "qa-c6", d + 5).await;
        edges
            .meta
            .shred_key(
                &cid("qa-c7"),
                "ki",
                "retention expired",
                "sweeper",
                edges.clock.now_us(),
            )
            .await
            .unwrap();
        assert!(!qa.is_sampled(&cid("qa-c6")).await.unwrap());
        assert!(qa.reviews(&cid("qa-c6")).await.unwrap().is_empty());
        assert!(qa.call(&cid("qa-c6")).await.unwrap().is_none());
        let e = qa.score(&kari, &cid("qa-c6"), s(3, 3, 3, None, "")).await.unwrap_err();
        assert_eq!(refusal(e), Some(Refusal::NotSampled));
        // The sample and its reviews are KI data: they went with the key
        // (issue 16, section 4).
        assert!(!qa.is_sampled(&cid("qa-c7")).await.unwrap());
        assert!(qa.reviews(&cid("qa-c7")).await.unwrap().is_empty());
        let e = qa.score(&kari, &cid("qa-c7"), s(3, 3, 3, None, "")).await.unwrap_err();
        assert_eq!(refusal(e), Some(Refusal::NotSampled));

        // The queue: sampled, readable calls, with who scored them.
        let queue: Vec<(String, Vec<String>)> = qa
            .queue()
            .await
            .unwrap()
            .into_iter()
            .map(|q| (q.call_id, q.reviewers))
            .collect();
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            queue,
            vec![
                ("qa-c1".into(), v(&["qa-kari", "qa-lars"])),
                ("qa-c3".into(), v(&["qa-kari"])),
                ("qa-c4".into(), v(&["qa-kari"])),
                ("qa-c9".into(), v(&[])),
            ]
        );
        let q1 = &qa.queue().await.unwrap()[0];
        assert_eq!(
            (
                q1.day.as_str(),
                q1.desk.as_str(),
                q1.language.as_str(),
                q1.topic.as_str(),
                q1.stratum.as_str()
            ),
            ("2026-03-02", "customer_center", "en", "cards", STRATUM_CARDS)
        );

        // The report, by hand (2026-03-01..05: c1–c5; c6, c8 opted out).
        let report = qa.report("2026-03-01", "2026-03-05").await.unwrap();
        let close = |a: Option<f64>, b: f64| a.is_some_and(|a| (a - b).abs() < 1e-9);
        assert_eq!(
            report.topics.iter().map(|t| t.topic.as_str()).collect::<Vec<_>>(),
            vec!["cards", "mortgage_loans"]
        );
        let cards = &report.topics[0];
        assert_eq!(
            (cards.drafted, cards.sampled, cards.scored, cards.reviews),
            (3, 2, 2, 3)
        );
        assert!(close(cards.mean_correctness, (4.0 + 2.0 + 5.0) / 3.0), "{cards:?}");
        assert!(close(cards.mean_relevance, (5.0 + 3.0 + 5.0) / 3.0));
        assert!(close(cards.mean_quality, (3.0 + 4.0 + 5.0) / 3.0));
        assert_eq!(
            (
                cards.flagged_discriminatory,
                cards.flagged_unexpected,
                cards.approved,
                cards.rejected
            ),
            (1, 1, 2, 1)
        );
        assert!(close(cards.mean_edit_distance, (3.0 + 0.0) / 2.0));
        assert!(close(cards.mean_edit_distance_per_draft_word, (3.0 / 5.0 + 0.0) / 2.0));
        let mort = &report.topics[1];
        assert_eq!((mort.drafted, mort.sampled, mort.scored, mort.reviews), (2, 1, 1, 1));
        assert!(close(mort.mean_correctness, 2.0) && close(mort.mean_quality, 2.0));
        assert_eq!((mort.flagged_discriminatory, mort.flagged_unexpected), (0, 0));
        assert_eq!((mort.approved, mort.rejected), (1, 0));
        assert!(close(mort.mean_edit_distance, 1.0));
        assert!(close(mort.mean_edit_distance_per_draft_word, 0.25));
        let t = &report.total;
        assert_eq!(t.topic, TOTAL);
        assert_eq!((t.drafted, t.sampled, t.scored, t.reviews), (5, 3, 3, 4));
        assert!(close(t.mean_correctness, (4.0 + 2.0 + 5.0 + 2.0) / 4.0));
        assert!(close(t.mean_relevance, (5.0 + 3.0 + 5.0 + 2.0) / 4.0));
        assert!(close(t.mean_quality, (3.0 + 4.0 + 5.0 + 2.0) / 4.0));
        assert_eq!(
            (t.flagged_discriminatory, t.flagged_unexpected, t.approved, t.rejected),
            (1, 1, 3, 1)
        );
        assert!(close(t.mean_edit_distance, (3.0 + 0.0 + 1.0) / 3.0));
        assert!(close(t.mean_edit_distance_per_draft_word, (0.6 + 0.0 + 0.25) / 3.0));
        // A wider range does not take c7 in: its per-call rows went with its
        // KI data (issue 16, section 4; the QA report covers the calls whose
        // KI data is kept).
        let month = qa.report("2026-03-01", "2026-03-19").await.unwrap();
        assert_eq!(
            (
                month.topics[0].drafted,
                month.topics[0].sampled,
                month.topics[0].reviews
            ),
            (3, 2, 3)
        );
        assert!(qa.report("2026-3-1", "2026-03-05").await.is_err());

        // The CSV reads back, with the header and the injection guard.
        let rows = parse_csv(&report.to_csv());
        assert_eq!(rows[0], CSV_HEADER.iter().map(|h| h.to_string()).collect::<Vec<_>>());
        assert_eq!(rows.len(), 4);
        let col = |row: &Vec<String>, name: &str| row[CSV_HEADER.iter().position(|h| *h == name).unwrap()].clone();
        assert_eq!(col(&rows[1], "topic"), "cards");
        assert_eq!(col(&rows[1], "drafted"), "3");
        assert_eq!(col(&rows[1], "mean_correctness"), "3.67");
        assert_eq!(col(&rows[1], "mean_edit_distance_per_draft_word"), "0.300");
        assert_eq!(col(&rows[2], "mean_edit_distance"), "1.00");
        assert_eq!(col(&rows[3], "topic"), TOTAL);
        assert_eq!(col(&rows[3], "approved"), "3");
        let hostile = qa.report("2026-03-20", "2026-03-20").await.unwrap();
        let rows = parse_csv(&hostile.to_csv());
        assert_eq!(col(&rows[1], "topic"), "'=HYPERLINK(\"http://x\")");
        assert!(rows.iter().skip(1).all(|r| !r[0].starts_with(['=', '+', '-', '@'])));

        // The dashboard's rows: one per call and topic, opted-out calls gone.
        let got = qa.topic_rows("2026-03-01", "2026-03-05").await.unwrap();
        let row = |desk: &str, topic: &str| TopicRow {
            day: "2026-03-02".into(),
            desk: desk.into(),
            channel: "phone".into(),
            topic: topic.into(),
        };
        assert_eq!(
            got,
            vec![
                row("customer_center", "cards"),
                row("customer_center", "cards"),
                row("customer_center", "cards"),
                row("customer_center", "fraud_security"),
                row("markets", "mortgage_loans"),
                row("markets", "mortgage_loans"),
            ]
        );
        // c7's key was shredded by hand here, not by the expiry sweep, so it
        // is not added to the per-day counts either (the sweep's case:
        // retention::ki_reporting_rows_go_with_the_ki_data).
        assert_eq!(qa.topic_rows("2026-03-10", "2026-03-10").await.unwrap().len(), 0);
        assert!(qa.topic_rows("2026-03-02", "x").await.is_err());

        // Nothing in clear at rest: not the notes, not the summaries.
        let probes: [&[u8]; 3] = [b"PLAINNOTE", b"Zorblaxcard", b"Second look"];
        if env.config.storage.metadata.starts_with("sqlite://") {
            let path = env.config.storage.metadata.trim_start_matches("sqlite://");
            for f in [path.to_string(), format!("{path}-wal")] {
                let Ok(bytes) = std::fs::read(&f) else { continue };
                for p in probes {
                    assert!(
                        find_bytes(&bytes, p).is_none(),
                        "{f} holds {}",
                        String::from_utf8_lossy(p)
                    );
                }
            }
        } else {
            use sqlx::{Connection, Row};
            let mut conn = sqlx::PgConnection::connect(&env.config.storage.metadata).await.unwrap();
            for table in ["qa_reviews", "ki_calls", "call_topics", "qa_samples", "review_versions"] {
                let rows = sqlx::query(&format!("SELECT CAST(t AS TEXT) AS row FROM {table} t"))
                    .fetch_all(&mut conn)
                    .await
                    .unwrap();
                assert!(!rows.is_empty(), "{table}");
                for r in rows {
                    let text: String = r.get("row");
                    for p in probes {
                        assert!(!text.contains(std::str::from_utf8(p).unwrap()), "{table}: {text}");
                    }
                }
            }
            let sealed: Vec<Vec<u8>> = sqlx::query_scalar("SELECT note_sealed FROM qa_reviews")
                .fetch_all(&mut conn)
                .await
                .unwrap();
            assert_eq!(sealed.len(), 5, "c7's review went with its KI data");
            for s in sealed {
                for p in probes {
                    assert!(find_bytes(&s, p).is_none());
                }
            }
        }
    }
}

fn find_bytes(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// RFC 4180: quoted cells with doubled quotes, CRLF line ends.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let (mut rows, mut row, mut cell) = (Vec::new(), Vec::new(), String::new());
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                cell.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => cell.push(c),
            (false, '"') if cell.is_empty() => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut cell)),
            (false, '\r') => {
                assert_eq!(chars.next(), Some('\n'), "CR without LF");
                row.push(std::mem::take(&mut cell));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => cell.push(c),
        }
    }
    assert!(
        row.is_empty() && cell.is_empty() && !quoted,
        "the CSV does not end with CRLF"
    );
    let width = rows[0].len();
    assert!(rows.iter().all(|r| r.len() == width), "ragged CSV");
    rows
}

/// Hears the same line in every utterance.
struct Scripted;

#[async_trait::async_trait]
impl SpeechRecognizer for Scripted {
    async fn transcribe(&self, u: &Utterance) -> Result<Transcript, AsrError> {
        const LINE: &str = "I lost my card and I want to block it and order a new card";
        let secs = u.pcm16.len() as f32 / 2.0 / u.sample_rate_hz as f32;
        Ok(Transcript {
            text: LINE.into(),
            segments: vec![opptak_ki::asr::Segment {
                start_s: 0.0,
                end_s: secs,
                text: LINE.into(),
            }],
        })
    }
    fn describe(&self) -> String {
        "scripted test recognizer".into()
    }
}

/// The demo's Private Banking KI call (demo-0003), made the advisor Anne's.
fn demo_0003() -> (opptak::demo::Sample, CallId) {
    let mut sample = opptak::demo::samples(&opptak::demo::default_samples_dir())
        .unwrap()
        .into_iter()
        .find(|s| s.call.call_id == "demo-0003")
        .unwrap();
    sample.call.started.advisor_id = ADVISOR.into();
    let cid = CallId::parse(&sample.call.call_id).unwrap();
    (sample, cid)
}

/// The demo's Private Banking KI call (demo-0003) of the advisor Anne,
/// recorded and drafted by the real summarizer; the recorder and KI roles
/// still run (stop them when done).
async fn drafted_demo_call(
    name: &str,
) -> (
    Env,
    Edges,
    opptak_review::identity::User,
    CallId,
    RunningRecorder,
    RunningKi,
) {
    let env = Env::new(&Backend::Embedded, name);
    let edges = env.edges().await;
    let id = Identity::open(&edges.review()).await.unwrap();
    let anne = id
        .add_approved("setup", ADVISOR, "Anne", Role::Advisor, "oslo", PW)
        .await
        .unwrap();
    let (sample, cid) = demo_0003();
    let recorder = RunningRecorder::spawn(edges.recorder());
    let ki = RunningKi::spawn(&edges, true, true, Some(Arc::new(Scripted)))
        .await
        .unwrap();
    common::publish_events(&edges, &sample.call.events(100)).await;
    wait_for_recordings(&edges, 1, 60).await;
    (env, edges, anne, cid, recorder, ki)
}

/// The hook: a call drafted by the real summarizer is indexed and, as its
/// stratum's first call, sampled; a retried summary changes nothing; the
/// advisor's approval records the edit distance from the real draft.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_summarizer_indexes_and_samples_every_draft() {
    let (_env, edges, anne, cid, recorder, ki) = drafted_demo_call("qa_hook").await;
    let qa = Qa::open(&edges.review()).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while qa.call(&cid).await.unwrap().is_none() {
        assert!(tokio::time::Instant::now() < deadline, "the draft was not indexed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ki.stop().await;
    recorder.stop().await.unwrap();

    let d = opptak_ki::summarize::read_draft(&edges.vault(), &cid).await.unwrap();
    let c = qa.call(&cid).await.unwrap().unwrap();
    assert!(c.sampled, "a stratum's first call is sampled");
    assert_eq!(c.row.topics, d.topics);
    assert_eq!(c.row.language, d.language);
    assert_eq!(c.row.draft_words, d.summary.split_whitespace().count() as u64);
    assert_eq!(c.row.advisor_id, ADVISOR);
    let facts = edges.meta.load_call(&cid).await.unwrap().unwrap().facts;
    assert_eq!(c.row.desk, facts.desk.as_str());
    assert_eq!(c.row.day, opptak_domain::time::utc_day(facts.started_at_us));
    let before = qa.strata().await.unwrap();
    assert_eq!(before.iter().map(|s| s.seen).sum::<u64>(), 1);

    // A retried closing record: the draft exists, the listener is told
    // again, and nothing changes.
    let summarizer = opptak::app::summarizer(&edges).await.unwrap();
    assert_eq!(
        summarizer.summarize_call(&cid).await.unwrap(),
        opptak_ki::summarize::SummaryOutcome::AlreadyDone
    );
    assert_eq!(qa.strata().await.unwrap(), before);

    let review = Review::open(&edges.review()).await.unwrap();
    let approved = format!("{} Card blocked today.", d.summary);
    review.decide(&anne, &cid, Decision::Approve(approved)).await.unwrap();
    let c = qa.call(&cid).await.unwrap().unwrap();
    assert_eq!((c.decision.as_deref(), c.edit_distance), (Some("approved"), Some(3)));
    let report = qa.report(&c.row.day, &c.row.day).await.unwrap();
    assert_eq!(
        (report.total.drafted, report.total.sampled, report.total.approved),
        (1, 1, 1)
    );
}

/// Issue 16, section 6: approving writes the version and the 5-year record
/// as one unit. When the record cannot be written (here: its key was
/// shredded), the approval fails and the draft stays open, with no approved
/// version (on the old main the draft was closed as approved, without a
/// record).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_without_its_record_leaves_the_draft_open() {
    let (_env, edges, anne, cid, recorder, ki) = drafted_demo_call("qa_atomic").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while opptak_ki::summarize::ki_state(edges.vault().meta(), &cid)
        .await
        .unwrap()
        != opptak_ki::summarize::KiState::Drafted
    {
        assert!(tokio::time::Instant::now() < deadline, "no draft");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ki.stop().await;
    recorder.stop().await.unwrap();

    let vault = edges.vault();
    vault
        .key_or_create(&cid, opptak_domain::KeyClass::Record5y)
        .await
        .unwrap();
    vault
        .shred(&cid, "record-5y", "test: the record cannot be written", "test")
        .await
        .unwrap();
    let review = Review::open(&edges.review()).await.unwrap();
    let e = review
        .decide(&anne, &cid, Decision::Approve("The approved text.".into()))
        .await
        .unwrap_err();
    assert!(format!("{e:#}").contains("the draft stays open"), "{e:#}");
    let versions = review.versions(&cid).await.unwrap();
    assert!(versions.iter().all(|v| v.kind == "edit"), "{versions:?}");
    // Still open: the advisor can go on editing.
    review
        .decide(&anne, &cid, Decision::Edit("An edit after the failure.".into()))
        .await
        .unwrap();
}

// ------------------------------------------------- issue 16, section 6 ---

/// An English call about a lost card, with no lexicon term.
const LOST_CARD_EN: &[(&str, &str)] = &[
    ("customer", "I lost my card and I want to block it."),
    ("agent", "I will block the card and order a new card."),
];

/// A transcript of `(speaker, text)` lines, one second each.
fn transcript(lines: &[(&str, &str)]) -> Vec<opptak_ki::transcribe::TranscriptSegment> {
    lines
        .iter()
        .enumerate()
        .map(|(i, (speaker, text))| opptak_ki::transcribe::TranscriptSegment {
            speaker: speaker.to_string(),
            start_s: i as f32,
            end_s: i as f32 + 1.0,
            text: text.to_string(),
        })
        .collect()
}

/// The deployment's summarizer with one global language (`en`), telling
/// `qa`, screening with `screener`.
async fn summarizer_with(
    edges: &Edges,
    qa: Arc<Qa>,
    screener: opptak_ki::screen::Screener,
) -> opptak_ki::summarize::Summarizer {
    let mut s = Arc::try_unwrap(opptak::app::summarizer(edges).await.unwrap())
        .ok()
        .unwrap();
    s.language = "en".into();
    s.listener = Some(qa);
    s.screener = Arc::new(screener);
    s
}

/// Registers `id` at the customer center and stores its transcript.
async fn transcribed(edges: &Edges, id: &str, lines: &[(&str, &str)]) -> CallId {
    register(
        edges,
        &[CallSpec {
            id: id.into(),
            desk: Desk::CustomerCenter,
            started_at_us: day_us(2026, 4, 1) + 9 * HOUR_US,
        }],
    )
    .await;
    let cid = CallId::parse(id).unwrap();
    store_ki_json(edges, &cid, ArtifactKind::Transcript, "transcript", &transcript(lines)).await;
    cid
}

/// Two calls, one in English and one in Norwegian, drafted by the real
/// summarizer under one global language setting (`en`): each is indexed
/// with the language its transcript is in, so they land in different
/// strata (on the old main both were `en`, the setting).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strata_follow_the_detected_language_not_the_setting() {
    for env in backends("qa_detected_language").await {
        let edges = env.edges().await;
        let qa = Arc::new(Qa::open(&edges.review()).await.unwrap());
        let s = summarizer_with(&edges, qa.clone(), opptak_ki::screen::Screener::lexicon_only()).await;
        let en = transcribed(&edges, "lang-en", LOST_CARD_EN).await;
        let nb = transcribed(
            &edges,
            "lang-nb",
            &[
                ("customer", "Hei, jeg har mistet kortet mitt og vil sperre det."),
                ("agent", "Takk, jeg har sperret kortet, og du får et nytt kort."),
            ],
        )
        .await;
        for cid in [&en, &nb] {
            let out = s.summarize_call(cid).await.unwrap();
            assert!(
                matches!(out, opptak_ki::summarize::SummaryOutcome::Done { .. }),
                "{out:?}"
            );
        }
        let row_en = qa.call(&en).await.unwrap().unwrap().row;
        let row_nb = qa.call(&nb).await.unwrap().unwrap().row;
        assert_eq!((row_en.language.as_str(), row_nb.language.as_str()), ("en", "nb"));
        assert!(!row_en.recognition_failed && !row_nb.recognition_failed);
        let strata: Vec<String> = qa.strata().await.unwrap().into_iter().map(|s| s.stratum).collect();
        let want_en = opptak_review::qa::stratum(row_en.topic(), "customer_center", "en", false);
        let want_nb = opptak_review::qa::stratum(row_nb.topic(), "customer_center", "nb", false);
        assert_ne!(want_en, want_nb);
        assert!(strata.contains(&want_en) && strata.contains(&want_nb), "{strata:?}");
        // Each is its stratum's first call: both sampled.
        let queued: Vec<String> = qa.queue().await.unwrap().into_iter().map(|q| q.stratum).collect();
        assert!(queued.contains(&want_en) && queued.contains(&want_nb), "{queued:?}");
    }
}

/// A draft holding a lexicon term is queued for QA by screening, with the
/// term as the reason, though the sample (share 0) picked nothing; a clean
/// draft is not queued. The term is sealed at rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draft_with_a_lexicon_term_is_queued_by_screening() {
    for env in backends("qa_screening_lexicon").await {
        let edges = env.edges().await;
        let qa = Arc::new(qa_with_share(&edges, 0.0).await);
        let s = summarizer_with(&edges, qa.clone(), opptak_ki::screen::Screener::lexicon_only()).await;
        let hit = transcribed(
            &edges,
            "screen-hit",
            &[
                ("customer", "I am pregnant and I lost my card."),
                (
                    "agent",
                    "Since you are pregnant I will block the card and order a new card.",
                ),
            ],
        )
        .await;
        let clean = transcribed(&edges, "screen-clean", LOST_CARD_EN).await;
        for cid in [&hit, &clean] {
            s.summarize_call(cid).await.unwrap();
        }
        let d = opptak_ki::summarize::read_draft(&edges.vault(), &hit).await.unwrap();
        assert!(
            d.summary.to_lowercase().contains("pregnant"),
            "precondition: the draft holds the term: {d:?}"
        );
        let queue = qa.queue().await.unwrap();
        assert_eq!(
            queue.iter().map(|q| q.call_id.as_str()).collect::<Vec<_>>(),
            vec!["screen-hit"]
        );
        assert_eq!(queue[0].reason, "screening");
        assert_eq!(
            queue[0].reasons,
            vec!["screening: lexicon term pregnant (health)".to_owned()]
        );
        let c = qa.call(&hit).await.unwrap().unwrap();
        assert!(c.sampled, "in the QA queue, so QA may read it");
        let sc = qa.screening(&hit).await.unwrap().unwrap();
        assert_eq!(sc.model.verdict, opptak_ki::screen::Verdict::Off);
        assert!(!qa.screening(&clean).await.unwrap().unwrap().flagged());
        // The sample's own counters: nothing sampled at share 0.
        assert!(qa.strata().await.unwrap().iter().all(|s| s.sampled == 0));
        // QA may score it (it is in the queue).
        let kari = Identity::open(&edges.review())
            .await
            .unwrap()
            .add_approved("setup", "qa-kari", "Kari", Role::Qa, "qa", PW)
            .await
            .unwrap();
        qa.score(
            &kari,
            &hit,
            QaScore {
                correctness: 2,
                relevance: 3,
                quality: 3,
                flag: Some(QaFlag::Unexpected),
                note: "Health detail in the summary.".into(),
            },
        )
        .await
        .unwrap();
        if !env.config.storage.metadata.starts_with("sqlite://") {
            use sqlx::{Connection, Row};
            let mut conn = sqlx::PgConnection::connect(&env.config.storage.metadata).await.unwrap();
            let rows = sqlx::query("SELECT CAST(t AS TEXT) AS row FROM qa_screenings t")
                .fetch_all(&mut conn)
                .await
                .unwrap();
            assert_eq!(rows.len(), 2);
            for r in rows {
                let text: String = r.get("row");
                assert!(!text.contains("pregnant"), "{text}");
            }
        }
    }
}

/// The language model's second opinion, from the real SmolLM2 server: the
/// question is asked and the answer (whatever it is: the model is small)
/// recorded with the model and the prompt version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_language_model_is_asked_for_a_second_opinion() {
    let Some((url, model)) = common::llm() else { return };
    let env = Env::new(&Backend::Embedded, "qa_screening_model");
    let edges = env.edges().await;
    let qa = Arc::new(qa_with_share(&edges, 0.0).await);
    let mut cfg = opptak_ki::llm::ChatConfig::new(url, model.clone());
    cfg.timeout = Duration::from_secs(60);
    let screener = opptak_ki::screen::Screener::with_model(cfg).unwrap();
    let s = summarizer_with(&edges, qa.clone(), screener).await;
    let cid = transcribed(&edges, "screen-model", LOST_CARD_EN).await;
    s.summarize_call(&cid).await.unwrap();
    let sc = qa.screening(&cid).await.unwrap().unwrap();
    eprintln!("model opinion: {:?}", sc.model);
    assert_eq!(sc.model.model, model);
    assert_eq!(sc.model.prompt_version, opptak_ki::screen::SCREEN_PROMPT_VERSION);
    assert!(
        matches!(
            sc.model.verdict,
            opptak_ki::screen::Verdict::Clear | opptak_ki::screen::Verdict::Flagged
        ),
        "the model answered: {:?}",
        sc.model
    );
    // Queued exactly when flagged (by the model: the text holds no term).
    assert!(sc.lexicon.is_empty());
    let queued = !qa.queue().await.unwrap().is_empty();
    assert_eq!(queued, sc.model.verdict == opptak_ki::screen::Verdict::Flagged);
}

/// A call whose speech recognition failed — the real speech server (tiny.en)
/// refuses the language asked for (`no`) — gets no transcript and no draft,
/// but an index row in its own stratum (`none|desk|und|asr-failed`), and as
/// that stratum's first call it is sampled: the QA queue shows it as
/// "speech recognition failed", to be listened to. The report counts it in
/// the strata only, withheld under k. (On the old main an empty transcript
/// was stored and the call never reached QA as a failure.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_recognition_failed_is_sampled_for_listening() {
    let Some(url) = common::speech_url() else { return };
    let env = Env::new(&Backend::Embedded, "qa_asr_failed");
    let edges = env.edges().await;
    let (sample, cid) = demo_0003();
    let recorder = RunningRecorder::spawn(edges.recorder());
    common::publish_events(&edges, &sample.call.events(100)).await;
    wait_for_recordings(&edges, 1, 60).await;
    recorder.stop().await.unwrap();

    let qa = Arc::new(Qa::open(&edges.review()).await.unwrap());
    let mut asr = opptak_ki::asr::AsrConfig::new(&url, "tiny.en");
    asr.timeout = Duration::from_secs(60);
    let mut t = Arc::try_unwrap(
        opptak::app::transcriber_with(&edges, Some(Arc::new(opptak_ki::asr::HttpAsr::new(asr).unwrap()))).unwrap(),
    )
    .ok()
    .unwrap();
    t.language = Some("no".into());
    t.listener = Some(qa.clone());
    let out = t.transcribe_call(&cid).await.unwrap();
    assert!(
        matches!(&out, opptak_ki::transcribe::Outcome::RecognitionFailed(why) if why.contains("refused")),
        "{out:?}"
    );
    assert!(
        !edges
            .meta
            .artifacts(&cid)
            .await
            .unwrap()
            .iter()
            .any(|a| a.kind == "transcript"),
        "no transcript stored"
    );
    let c = qa.call(&cid).await.unwrap().unwrap();
    assert!(c.row.recognition_failed && c.sampled);
    assert_eq!(
        (c.row.topics.clone(), c.row.language.as_str(), c.row.draft_words),
        (vec!["none".to_owned()], "und", 0)
    );
    let stratum = opptak_review::qa::stratum("none", "private_banking", "und", true);
    let queue = qa.queue().await.unwrap();
    assert_eq!(queue.len(), 1);
    assert_eq!(
        (queue[0].call_id.as_str(), queue[0].stratum.as_str()),
        (cid.as_str(), stratum.as_str())
    );
    assert!(queue[0].recognition_failed);
    assert!(
        queue[0]
            .reasons
            .iter()
            .any(|r| r == opptak_review::qa::RECOGNITION_FAILED),
        "{:?}",
        queue[0].reasons
    );
    // Told again (a retry): nothing changes.
    assert_eq!(t.transcribe_call(&cid).await.unwrap(), out);
    assert_eq!(qa.strata().await.unwrap().iter().map(|s| s.seen).sum::<u64>(), 1);
    // Not an advisor's draft to review.
    assert!(qa.open_drafts(&[ADVISOR.to_owned()]).await.unwrap().is_empty());
    // The report: no topic row (no draft), one stratum, withheld at k = 5.
    let report = qa.report(&c.row.day, &c.row.day).await.unwrap();
    assert!(report.topics.is_empty());
    assert_eq!(report.strata.len(), 1);
    assert_eq!((report.strata[0].calls, report.strata[0].sampled), (1, 1));
    assert!(report.strata[0].recognition_failed);
    let withheld = report.suppress(5);
    assert!(withheld.strata[0].suppressed && withheld.strata[0].calls == 0);
    assert!(withheld.strata_total.suppressed);
}
