//! Issue 16, sections 4, 5 and 6: the advisor chooses the topics with the
//! summary, and an approved summary can be amended (rectification, "retting
//! av eventuelle feil") by the call's advisor or compliance, with a reason,
//! the approved text kept as history, audited, announced again, and still
//! possible once the call's KI data is gone. The record's 5-year clock runs
//! from the call's end, whenever it was approved or amended.

use crate::common;
use common::{wait_for_recordings, AddApproved, Backend, Env};
use opptak::app::{RunningKi, RunningRecorder};
use opptak_domain::model::CallId;
use opptak_domain::time::{Clock, ManualClock};
use opptak_proto::Message;
use opptak_review::identity::{Identity, Role};
use opptak_review::review::{read_approved, summaries_topic, Decision, Review};
use std::sync::Arc;
use std::time::Duration;

const PW: &str = "correct horse battery staple";
const DAY_US: i64 = 86_400_000_000;

/// A Private Banking call drafted by the real pipeline (embedded backend),
/// and the edges again with a clock at `days` after the call's end.
pub(crate) async fn drafted(name: &str, days: i64) -> (Env, opptak::app::Edges, CallId, Arc<ManualClock>) {
    let env = Env::new(&Backend::Embedded, name);
    let edges = env.edges().await;
    let mut sample = opptak::demo::samples(&opptak::demo::default_samples_dir())
        .unwrap()
        .into_iter()
        .find(|s| s.call.call_id == "demo-0003")
        .unwrap();
    sample.call.started.advisor_id = "adv-anne".into();
    let cid = CallId::parse(&sample.call.call_id).unwrap();
    let recorder = RunningRecorder::spawn(edges.recorder());
    let ki = RunningKi::spawn(
        &edges,
        true,
        true,
        Some(Arc::new(common::FixedAsr(
            "we agree a monthly fund savings plan of two thousand kroner",
        ))),
    )
    .await
    .unwrap();
    common::publish_events(&edges, &sample.call.events(100)).await;
    wait_for_recordings(&edges, 1, 60).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while opptak_ki::summarize::ki_state(edges.vault().meta(), &cid)
        .await
        .unwrap()
        != opptak_ki::summarize::KiState::Drafted
    {
        assert!(tokio::time::Instant::now() < deadline, "no draft");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ki.stop().await;
    recorder.stop().await.unwrap();
    let ended = edges
        .meta
        .load_call(&cid)
        .await
        .unwrap()
        .unwrap()
        .end
        .unwrap()
        .ended_at_us;
    let clock = Arc::new(ManualClock::new(ended + days * DAY_US));
    let clock_dyn: Arc<dyn Clock> = clock.clone();
    let edges = env.edges().await.with_clock(clock_dyn).unwrap();
    (env, edges, cid, clock)
}

fn expiry_of(rows: &[opptak_store::meta::RetentionRow], kind: &str) -> (String, i64) {
    let r = rows
        .iter()
        .find(|r| r.kind == kind && r.deleted_at_us.is_none())
        .unwrap_or_else(|| panic!("no live {kind} in {rows:?}"));
    (r.artifact_id.clone(), r.expires_at_us)
}

/// The advisor picks topics other than the draft's and approves 20 days
/// after the call; the record and the dashboards' rows carry the advisor's
/// topics; the advisor amends with a reason; compliance amends again after
/// the KI data is gone. Every step keeps the 5-year clock at the call's end
/// plus 5 years, keeps the earlier texts, and is announced; the refusals
/// (another advisor, no reason, nothing changed, unknown topic) change
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_summary_is_amended_with_history_and_its_clock_kept() {
    let (env, edges, cid, clock) = drafted("amend", 20).await;
    let users = Identity::open(&edges.review()).await.unwrap();
    let anne = users
        .add_approved("setup", "adv-anne", "Anne", Role::Advisor, "pb", PW)
        .await
        .unwrap();
    let bo = users
        .add_approved("setup", "adv-bo", "Bo", Role::Advisor, "pb", PW)
        .await
        .unwrap();
    let clara = users
        .add_approved("setup", "comp-clara", "Clara", Role::Compliance, "compliance", PW)
        .await
        .unwrap();
    let review = Review::open(&edges.review()).await.unwrap();
    let draft = opptak_ki::summarize::read_draft(&edges.vault(), &cid).await.unwrap();
    let other: Vec<String> = review
        .taxonomy()
        .ids()
        .filter(|t| !draft.topics.iter().any(|d| d == t))
        .take(2)
        .map(str::to_owned)
        .collect();
    assert_eq!(other.len(), 2);

    // Topics outside the taxonomy are refused; the advisor's own choice is
    // saved with an edit and carried into the approval.
    let e = review
        .decide_with_topics(
            &anne,
            &cid,
            Decision::Edit("x".into()),
            Some(vec!["no_such_topic".into()]),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("not in the taxonomy"), "{e:#}");
    review
        .decide_with_topics(&anne, &cid, Decision::Edit("A first edit.".into()), Some(other.clone()))
        .await
        .unwrap();
    let approved = "The client agrees a monthly fund savings plan of 2,000 kroner.";
    review
        .decide(&anne, &cid, Decision::Approve(approved.into()))
        .await
        .unwrap();
    let record = read_approved(&edges.review(), &cid).await.unwrap();
    assert_eq!(record["topics"], serde_json::json!(other), "{record}");
    let qa = opptak_review::qa::Qa::open(&edges.review()).await.unwrap();
    let row = qa.call(&cid).await.unwrap().unwrap();
    assert_eq!(row.row.topics, other, "the dashboards count the approved topics");

    // The 5-year clock counts from the call's end, not from the approval
    // 20 days later.
    let ended = edges
        .meta
        .load_call(&cid)
        .await
        .unwrap()
        .unwrap()
        .end
        .unwrap()
        .ended_at_us;
    let five_years = opptak_domain::time::add_years(ended, 5);
    let rows = edges.meta.retention_of(&cid).await.unwrap();
    let (first_id, expires) = expiry_of(&rows, "approved-summary");
    assert_eq!(expires, five_years);
    let first_path = edges
        .meta
        .artifacts(&cid)
        .await
        .unwrap()
        .into_iter()
        .find(|a| a.kind == "approved-summary")
        .unwrap()
        .object
        .unwrap()
        .path;

    // Refusals: not the call's advisor; no real reason; no change.
    let fixed = "The client agrees a monthly fund savings plan of 2,500 kroner, not 2,000.";
    let reason = "the customer called back: the amount was 2,500";
    let e = review.amend(&bo, &cid, fixed, None, reason).await.unwrap_err();
    assert!(e.to_string().contains("only the call's advisor or compliance"), "{e:#}");
    let e = review.amend(&anne, &cid, fixed, None, "test").await.unwrap_err();
    assert!(e.to_string().contains("reason"), "{e:#}");
    let e = review.amend(&anne, &cid, approved, None, reason).await.unwrap_err();
    assert!(e.to_string().contains("changes nothing"), "{e:#}");
    assert_eq!(read_approved(&edges.review(), &cid).await.unwrap()["summary"], approved);

    // The advisor amends, a day later.
    clock.set(clock.now_us() + DAY_US);
    let v = review.amend(&anne, &cid, fixed, None, reason).await.unwrap();
    assert_eq!(v.kind, "amended");
    let record = read_approved(&edges.review(), &cid).await.unwrap();
    assert_eq!(record["summary"], fixed);
    assert_eq!(record["approved_by"], "adv-anne");
    assert_eq!(record["amended_by"], "adv-anne");
    assert_eq!(record["amendment_reason"], reason);
    assert_eq!(record["history"][0]["summary"], approved, "{record:#}");
    assert_eq!(record["topics"], serde_json::json!(other), "topics kept when not given");
    let rows = edges.meta.retention_of(&cid).await.unwrap();
    let (second_id, expires) = expiry_of(&rows, "approved-summary");
    assert_ne!(second_id, first_id);
    assert_eq!(expires, five_years, "an amendment does not restart the clock");
    assert!(
        !env.blob_dir().join(&first_path).exists(),
        "the replaced object is deleted: {first_path}"
    );

    // Announced: the approval and the amendment, the second naming the first.
    let mut sub = edges
        .bus
        .subscribe("amend-test", &[summaries_topic(&edges.review())])
        .await
        .unwrap();
    let got = sub.poll(10, Duration::from_secs(2)).await.unwrap();
    let events: Vec<opptak_proto::v1::SummaryApproved> = got
        .iter()
        .map(|m| opptak_proto::v1::SummaryApproved::decode(m.payload.as_ref()).unwrap())
        .collect();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].summary_id, first_id);
    assert_eq!(events[0].amends_summary_id, "");
    assert_eq!(
        (events[1].summary_id.as_str(), events[1].amends_summary_id.as_str()),
        (second_id.as_str(), first_id.as_str())
    );

    // 30 days later the KI data is gone; compliance can still amend, with
    // new topics, and the amendments stay readable.
    edges
        .vault()
        .shred(&cid, "ki", "test: the 30-day KI period ended", "test")
        .await
        .unwrap();
    clock.set(ended + 40 * DAY_US);
    let e = review
        .decide(&anne, &cid, Decision::Edit("too late".into()))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("no draft"), "{e:#}");
    let again = "The client agrees a monthly fund savings plan of 2,500 kroner from March.";
    review
        .amend(
            &clara,
            &cid,
            again,
            Some(vec![other[0].clone()]),
            "complaint FKN-2026-0203: start month missing",
        )
        .await
        .unwrap();
    let record = read_approved(&edges.review(), &cid).await.unwrap();
    assert_eq!(record["summary"], again);
    assert_eq!(record["amended_by"], "comp-clara");
    assert_eq!(record["topics"], serde_json::json!([other[0]]));
    let history: Vec<&str> = record["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["summary"].as_str().unwrap())
        .collect();
    assert_eq!(history, [approved, fixed]);
    let versions = review.versions(&cid).await.unwrap();
    let seen: Vec<(&str, Option<&str>)> = versions.iter().map(|v| (v.kind.as_str(), v.text.as_deref())).collect();
    assert_eq!(
        seen,
        [
            ("edit", None),
            ("approved", None),
            ("amended", Some(fixed)),
            ("amended", Some(again))
        ],
        "edits and the approval went with the KI key; amendments are kept with the record"
    );
    assert_eq!(
        versions[3].reason.as_deref(),
        Some("complaint FKN-2026-0203: start month missing")
    );
    let (_, expires) = expiry_of(&edges.meta.retention_of(&cid).await.unwrap(), "approved-summary");
    assert_eq!(expires, five_years);
}

/// Over HTTP: the amendment form is offered to the call's advisor after
/// approval (not to another advisor), posting it writes the version and an
/// audit entry `summary.amend` with the reason, and a post by another
/// advisor is refused and audited. The decision form offers the topics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_amendment_is_made_and_audited_through_the_web() {
    let (_env, edges, cid, _clock) = drafted("amend_web", 1).await;
    let users = Identity::open(&edges.review()).await.unwrap();
    for (u, role) in [("adv-anne", Role::Advisor), ("adv-bo", Role::Advisor)] {
        users.add_approved("setup", u, u, role, "pb", PW).await.unwrap();
    }
    let server = common::WebService::start(&edges).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let (_, anne) = common::web_sign_in(&http, &server.base, "adv-anne", PW).await;
    let anne = anne.unwrap();
    let (_, bo) = common::web_sign_in(&http, &server.base, "adv-bo", PW).await;
    let bo = bo.unwrap();
    let page = |cookie: String| {
        let http = http.clone();
        let url = format!("{}/calls/{cid}", server.base);
        async move {
            http.get(url)
                .header("cookie", cookie)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    let body = page(anne.clone()).await;
    assert!(body.contains("name=\"topic\""), "the topics are offered: {body}");
    let token = common::csrf_in(&body);
    let draft = opptak_ki::summarize::read_draft(&edges.vault(), &cid).await.unwrap();
    let mut form: Vec<(&str, String)> = vec![
        ("csrf", token.clone()),
        ("action", "approve".into()),
        ("text", "Approved over the web.".into()),
        ("topics_shown", "1".into()),
        ("confirm", "1".into()),
    ];
    form.extend(draft.topics.iter().map(|t| ("topic", t.clone())));
    let r = http
        .post(format!("{}/calls/{cid}/decide", server.base))
        .header("cookie", &anne)
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let body = page(anne.clone()).await;
    assert!(body.contains(&format!("/calls/{cid}/amend")), "{body}");
    assert!(!page(bo.clone()).await.contains("/amend"), "not another advisor's");

    let audit = edges.review().audit().await.unwrap();
    let from = audit.entries(0, 100_000).await.unwrap().len() as u64;
    let amend = |cookie: &str, csrf: &str, reason: &str| {
        http.post(format!("{}/calls/{cid}/amend", server.base))
            .header("cookie", cookie)
            .form(&[("csrf", csrf), ("text", "Amended over the web."), ("reason", reason)])
            .send()
    };
    // Another advisor's call page is refused; the queue page carries bo's token.
    let bo_queue = http
        .get(format!("{}/queue", server.base))
        .header("cookie", &bo)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let bo_token = common::csrf_in(&bo_queue);
    assert_eq!(
        amend(&bo, &bo_token, "I want to change it").await.unwrap().status(),
        403
    );
    assert_eq!(amend(&anne, &token, "test").await.unwrap().status(), 422);
    assert_eq!(
        amend(&anne, &token, "wrong amount in the approved text")
            .await
            .unwrap()
            .status(),
        303
    );
    let entries: Vec<_> = audit
        .entries(0, 100_000)
        .await
        .unwrap()
        .into_iter()
        .skip(from as usize)
        .filter(|e| e.event.action == "summary.amend")
        .map(|e| (e.event.actor, e.event.outcome, e.event.reason))
        .collect();
    assert_eq!(
        entries,
        [
            ("adv-bo".to_string(), "refused".to_string(), String::new()),
            ("adv-anne".to_string(), "failed".to_string(), "test".to_string()),
            (
                "adv-anne".to_string(),
                "allowed".to_string(),
                "version 2: wrong amount in the approved text".to_string()
            ),
        ]
    );
    let body = page(anne.clone()).await;
    assert!(
        body.contains("Amended over the web.") && body.contains("<ins>"),
        "{body}"
    );
    assert_eq!(
        read_approved(&edges.review(), &cid).await.unwrap()["summary"],
        "Amended over the web."
    );
    assert!(audit.verify(None).await.unwrap().ok(), "the chain holds");
    server.stop().await;
}
