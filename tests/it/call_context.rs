//! Issue 19: a CTI system sends or corrects a call's business context later
//! in the call (`CallContext` on the telephony topic), against the real
//! broker and PostgreSQL. A transfer mid-call changes desk, advisor and
//! customer; after the end a service correction to investment advice writes
//! the 5-year archive copy from the recording; a redelivery and a replayed
//! `CallStarted` change nothing; every applied change is in the audit log
//! (before -> after, by, reason); an unknown call, an empty `by` and a context
//! after the 24 hours are dead letters with why, and nothing changes.

use crate::common;

use common::{wait_for_recordings, Backend, Env};
use opptak::app::RunningRecorder;
use opptak::sim::SimCall;
use opptak_domain::model::{CallId, Codec, Desk};
use opptak_domain::retention::ArtifactKind;
use opptak_domain::time::{Clock, ManualClock};
use opptak_proto::v1::{self, telephony_event::Event};
use opptak_proto::Message;
use opptak_vault::{VaultError, Which};
use std::sync::Arc;
use std::time::Duration;

const SEC: i64 = 1_000_000;
const HOUR: i64 = 3_600 * SEC;

fn timestamp(us: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: us.div_euclid(SEC),
        nanos: (us.rem_euclid(SEC) * 1000) as i32,
    }
}

fn context(call_id: &str, c: v1::CallContext) -> v1::TelephonyEvent {
    v1::TelephonyEvent {
        call_id: call_id.to_owned(),
        event: Some(Event::CallContext(c)),
    }
}

/// A customer-center call about payments (no archive copy by the policy),
/// ended at `ended_us`; `mid` goes in before its CallEnded.
fn call(name: &str, seed: u64, ended_us: i64, mid: Vec<v1::CallContext>) -> (SimCall, Vec<v1::TelephonyEvent>) {
    let mut c = SimCall::synthetic(&format!("cc-{}", common::unique(name)), Codec::Pcma, 2, 0.6, seed);
    c.started.desk = v1::Desk::CustomerCenter as i32;
    c.started.service_category = v1::ServiceCategory::Payments as i32;
    c.started.advisor_id = "adv-1".into();
    c.started.customer_ref = "cust-1".into();
    c.started.started_at = Some(timestamp(ended_us - 60 * SEC));
    let mut events = c.events(100);
    for e in events.iter_mut() {
        if let Some(Event::CallEnded(end)) = e.event.as_mut() {
            end.ended_at = Some(timestamp(ended_us));
        }
    }
    let at = events.len() - 1;
    for (i, m) in mid.into_iter().enumerate() {
        events.insert(at - 2 + i, context(&c.call_id, m));
    }
    (c, events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cti_sends_and_corrects_the_call_context() {
    let backend = match (common::kafka(), common::postgres_db("call_context").await) {
        (Some(kafka), Some(postgres)) => Backend::Services { kafka, postgres },
        _ => Backend::Embedded,
    };
    let base = (opptak_domain::time::SystemClock.now_us() / SEC) * SEC;
    let env = Env::new(&backend, "call_context");
    let clock = Arc::new(ManualClock::new(base + 20 * SEC));
    let clock_dyn: Arc<dyn Clock> = clock.clone();
    let edges = env.edges().await.with_clock(clock_dyn).unwrap();
    let recorder = RunningRecorder::spawn(edges.recorder());

    // A transfer during the call: another desk (not an advisory one), another
    // advisor, the customer identified.
    let transfer = v1::CallContext {
        by: "cti-genesys".into(),
        reason: "transfer to the corporate desk".into(),
        at: Some(timestamp(base - 30 * SEC)),
        desk: Some(v1::Desk::Corporate as i32),
        advisor_id: Some("adv-2".into()),
        customer_ref: Some("cust-2".into()),
        service_category: None,
    };
    let (a, mut a_events) = call("a", 1, base, vec![transfer.clone()]);
    // Delivered twice (a producer's resend): applied once.
    a_events.push(context(&a.call_id, transfer.clone()));
    let (b, b_events) = call("b", 2, base, Vec::new());
    // A KI call whose customer, identified mid-call, objected to KI before:
    // KI stops for it as by an opt-out (as it would have at the start).
    let objector = common::unique("cust-obj");
    edges
        .meta
        .record_objection(&opptak_store::meta::Objection {
            customer_ref: objector.clone(),
            kind: "ki".into(),
            at_us: base - 30 * 24 * HOUR,
            recorded_by: "co-1".into(),
            reason: "the customer objected to KI".into(),
        })
        .await
        .unwrap();
    let named = v1::CallContext {
        by: "cti-genesys".into(),
        customer_ref: Some(objector.clone()),
        ..Default::default()
    };
    let (k, mut k_events) = call("k", 3, base, vec![named]);
    if let Some(Event::CallStarted(s)) = k_events[0].event.as_mut() {
        s.ki_enabled = true;
        s.customer_informed = true;
    }
    common::publish_events(&edges, &a_events).await;
    common::publish_events(&edges, &b_events).await;
    common::publish_events(&edges, &k_events).await;
    wait_for_recordings(&edges, 3, 120).await;
    let (a_id, b_id) = (CallId::parse(&a.call_id).unwrap(), CallId::parse(&b.call_id).unwrap());
    let k_id = CallId::parse(&k.call_id).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let k_now = loop {
        let k_now = edges.meta.load_call(&k_id).await.unwrap().unwrap();
        if k_now.opt_out.is_some() {
            break k_now;
        }
        assert!(tokio::time::Instant::now() < deadline, "KI not stopped: {k_now:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(k_now.facts.customer_ref, objector);
    let o = k_now.opt_out.unwrap();
    assert!(o.requested_by.contains("objection") && o.offset_us == 0, "{o:?}");
    let ki_key = edges.meta.class_key(&k_id, "ki").await.unwrap();
    assert!(
        ki_key.is_some_and(|k| k.destroyed_at_us.is_some()),
        "the KI key is shredded: nothing of the call can be sealed for KI"
    );

    let stored = edges.meta.load_call(&a_id).await.unwrap().unwrap();
    assert_eq!(
        (
            stored.facts.desk,
            stored.facts.advisor_id.as_str(),
            stored.facts.customer_ref.as_str()
        ),
        (Desk::Corporate, "adv-2", "cust-2"),
        "the stored call has the context the CTI sent"
    );
    assert!(
        edges.meta.calls_of_customer("cust-2").await.unwrap().contains(&a_id),
        "a subject request finds the call under the corrected customer"
    );
    assert!(matches!(
        edges.vault().read_artifact(&a_id, Which::Archive).await,
        Err(VaultError::NoArtifact { .. })
    ));

    // After the end, within the 24 hours: the service was investment advice.
    // The archive copy is written from the recording; the CallStarted again
    // (a replay) is no conflicting start.
    clock.set(base + 2 * HOUR);
    let advice = v1::CallContext {
        by: "cti-genesys".into(),
        reason: "wrap-up code: fund recommendation".into(),
        at: Some(timestamp(base + HOUR)),
        service_category: Some(v1::ServiceCategory::InvestmentAdvice as i32),
        ..Default::default()
    };
    let restart = a_events[0].clone();
    assert!(matches!(restart.event, Some(Event::CallStarted(_))));
    common::publish_events(&edges, &[restart, context(&a.call_id, advice)]).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let copy = loop {
        match edges.vault().read_artifact(&a_id, Which::Archive).await {
            Ok(c) => break c,
            Err(e) => assert!(tokio::time::Instant::now() < deadline, "no archive copy: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(copy.pcm == edges.vault().read_recording(&a_id).await.unwrap().pcm);
    let why = edges.retention().explain(&a_id).await.unwrap();
    let archive = why.iter().find(|d| d.kind == ArtifactKind::ArchiveCopy).unwrap();
    assert!(
        archive.kept && archive.chain.iter().any(|c| c.contains("investment_advice")),
        "{archive:?}"
    );
    let years = (archive.expires_at_us - base) / (365 * 24 * HOUR);
    assert_eq!(years, 5, "kept 5 years: {archive:?}");

    // Refused: a call never started, no `by`, and (at +25 h) a call that
    // ended more than 24 hours ago.
    let unknown = format!("cc-{}", common::unique("nobody"));
    let desk = |by: &str| v1::CallContext {
        by: by.into(),
        desk: Some(v1::Desk::Markets as i32),
        ..Default::default()
    };
    common::publish_events(
        &edges,
        &[context(&unknown, desk("cti-genesys")), context(&b.call_id, desk(" "))],
    )
    .await;
    let topic = edges.config.recorder_config().topics.deadletter;
    let mut sub = edges
        .bus
        .subscribe(&common::unique("watch-dl"), &[topic])
        .await
        .unwrap();
    let mut letters: Vec<v1::DeadLetter> = Vec::new();
    poll_until(sub.as_mut(), &mut letters, 2).await;
    clock.set(base + 25 * HOUR);
    common::publish_events(&edges, &[context(&b.call_id, desk("cti-genesys"))]).await;
    poll_until(sub.as_mut(), &mut letters, 3).await;
    recorder.stop().await.unwrap();

    let find = |id: &str, reason: v1::DeadLetterReason, needle: &str| {
        assert!(
            letters
                .iter()
                .any(|d| d.call_id == id && d.reason == reason as i32 && d.detail.contains(needle)),
            "no {reason:?} for {id} saying {needle:?}: {letters:?}"
        );
    };
    find(&unknown, v1::DeadLetterReason::UnknownCall, "never started");
    find(&b.call_id, v1::DeadLetterReason::ContextRefused, "(by)");
    find(&b.call_id, v1::DeadLetterReason::ContextRefused, "24 hours");
    assert_eq!(
        letters.len(),
        3,
        "the replayed start and the resend are no dead letters: {letters:?}"
    );
    let b_now = edges.meta.load_call(&b_id).await.unwrap().unwrap();
    assert_eq!(b_now.facts.desk, Desk::CustomerCenter, "nothing changed");

    // Audited before -> after, by, reason; the resend not twice.
    let log = edges.audit().await.unwrap().entries(1, 10_000).await.unwrap();
    let a_subject = format!("call:{a_id}");
    let changes: Vec<&str> = log
        .iter()
        .filter(|e| e.event.action == "call.context" && e.event.subject == a_subject)
        .inspect(|e| assert_eq!(e.event.actor, "cti-genesys"))
        .map(|e| e.event.reason.as_str())
        .collect();
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert!(
        changes[0].contains("desk customer_center -> corporate")
            && changes[0].contains(r#"advisor_id "adv-1" -> "adv-2""#)
            && changes[0].contains(r#"customer_ref "cust-1" -> "cust-2""#)
            && changes[0].contains("transfer to the corporate desk"),
        "{}",
        changes[0]
    );
    assert!(
        changes[1].contains("service_category payments -> investment_advice")
            && changes[1].contains("fund recommendation"),
        "{}",
        changes[1]
    );
    assert!(log.iter().any(|e| e.event.action == "retention.reclassify"
        && e.event.subject == a_subject
        && e.event.actor == "cti-genesys"));
    assert!(!log.iter().any(|e| e.event.subject == format!("call:{b_id}")));
}

/// Reads dead letters until there are `n`.
async fn poll_until(sub: &mut dyn opptak_bus::Subscription, letters: &mut Vec<v1::DeadLetter>, n: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while letters.len() < n {
        assert!(tokio::time::Instant::now() < deadline, "dead letters: {letters:?}");
        for r in sub.poll(100, Duration::from_millis(300)).await.unwrap() {
            letters.push(v1::DeadLetter::decode(r.payload.as_ref()).unwrap());
        }
    }
}
