//! Compliance's main job in Chromium (issue 18), in Norwegian and in
//! English: sign in and land on the call search, find the call by the
//! customer reference (which never shows in the address bar), open it,
//! state the reason in the form (a text too short is refused with the
//! input kept), land on the call page with nothing of the reason in the
//! URL, and listen to the recording. The read is in the audit log with
//! "category · case · text".

use crate::browser::{
    assert_clean, path_of, play_recording, shot, sign_in, switch_language, tools_or_skip, wait_for, wait_for_path,
    Service, PW,
};
use crate::common::webdriver::{Browser, Tools};
use crate::common::AddApproved;
use opptak_review::identity::{Identity, Role};

const OFFICER: &str = "co-cato";

/// What the flow shows in one language.
struct Words {
    lang: &'static str,
    search_title: &'static str,
    reason_title: &'static str,
    case: &'static str,
    text: &'static str,
    audited: &'static str,
}

const NB: Words = Words {
    lang: "nb",
    search_title: "Finn en samtale",
    reason_title: "Hvorfor åpner du den?",
    case: "KL-2026-0412",
    text: "kunden klager på rådet om fondssparing",
    audited: "Klage fra kunden · KL-2026-0412 · kunden klager på rådet om fondssparing",
};

const EN: Words = Words {
    lang: "en",
    search_title: "Find a call",
    reason_title: "Why do you open it?",
    case: "FT-2026-77",
    text: "the supervisory authority asks for the call",
    audited:
        "Henvendelse fra myndighet (Finanstilsynet, politi) · FT-2026-77 · the supervisory authority asks for the call",
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compliance_searches_states_why_and_listens() {
    let Some(tools) = tools_or_skip() else { return };
    let svc = Service::start().await;
    Identity::open(&svc.edges.review())
        .await
        .unwrap()
        .add_approved("setup", OFFICER, "Cato Compliance", Role::Compliance, "compliance", PW)
        .await
        .unwrap();
    let cid = opptak_domain::model::CallId::parse(&svc.call).unwrap();
    let customer = svc
        .edges
        .meta
        .load_call(&cid)
        .await
        .unwrap()
        .unwrap()
        .facts
        .customer_ref;
    assert!(!customer.is_empty());
    for (words, category) in [(&NB, "complaint"), (&EN, "authority_request")] {
        flow(&tools, &svc, words, &customer, category).await;
    }
    svc.stop().await;
}

async fn flow(tools: &Tools, svc: &Service, w: &Words, customer: &str, category: &str) {
    let b = &Browser::start(tools).await;
    let call_path = format!("/calls/{}", svc.call);
    sign_in(b, svc, OFFICER, "/search").await;
    if w.lang == "en" {
        switch_language(b, "en").await;
        wait_for_path(b, "/search").await;
    }
    assert_clean(b, "search").await;
    assert_eq!(b.text(&b.find("h1").await).await, w.search_title);
    axe_clean(b, "search").await;
    shot(b, &format!("compliance-1-search-{}", w.lang)).await;

    // The customer reference goes in the form, never in the address.
    b.send_keys(&b.find("input#customer").await, customer).await;
    b.click(&b.find("form.search button[type=submit]").await).await;
    wait_for(b, "the results", "table.results").await;
    let url = b.current_url().await;
    assert_eq!(path_of(&url), "/search");
    assert!(url.contains("?id=") && !url.contains(customer), "{url}");
    assert_eq!(
        b.property(&b.find("input#customer").await, "value").await,
        serde_json::json!(customer),
        "the filter is shown again"
    );
    assert_clean(b, "results").await;
    axe_clean(b, "results").await;
    shot(b, &format!("compliance-2-results-{}", w.lang)).await;
    b.click(&b.find(&format!("table.results a[href='{call_path}']")).await)
        .await;

    // The reason form, not the call: a text too short is refused, kept.
    wait_for_path(b, &call_path).await;
    assert_eq!(b.text(&b.find("h1").await).await, w.reason_title);
    assert!(
        b.try_find("audio").await.is_none(),
        "nothing of the call before the reason"
    );
    b.click(&b.find(&format!("select#category option[value='{category}']")).await)
        .await;
    b.send_keys(&b.find("input#case_ref").await, w.case).await;
    b.send_keys(&b.find("textarea#text").await, "test").await;
    b.click(&b.find("form[action='/reason'] button[type=submit]").await)
        .await;
    wait_for(b, "the field error", "p#text-error").await;
    assert_eq!(
        b.property(&b.find("textarea#text").await, "value").await,
        serde_json::json!("test")
    );
    assert_eq!(
        b.attribute(&b.find("textarea#text").await, "aria-invalid")
            .await
            .as_deref(),
        Some("true")
    );
    assert_eq!(
        b.property(&b.find("input#case_ref").await, "value").await,
        serde_json::json!(w.case),
        "the case number kept"
    );
    assert!(b.try_find("[role=alert]").await.is_some(), "an error summary");
    // The form came back as 422, which the browser logs as a failed load;
    // nothing else may be in the log.
    let logged = b.browser_log().await;
    assert!(
        logged
            .iter()
            .all(|e| e.message.contains("/reason") && e.message.contains("422")),
        "{logged:#?}"
    );
    axe_clean(b, "reason form with errors").await;
    shot(b, &format!("compliance-3-reason-{}", w.lang)).await;
    b.clear(&b.find("textarea#text").await).await;
    b.send_keys(&b.find("textarea#text").await, w.text).await;
    b.click(&b.find("form[action='/reason'] button[type=submit]").await)
        .await;

    // The call page, the reason nowhere in the address; the recording plays.
    wait_for(b, "the player", "audio").await;
    let url = b.current_url().await;
    assert_eq!(path_of(&url), call_path);
    assert!(!url.contains('?') && !url.contains(w.case), "{url}");
    assert_clean(b, "call").await;
    play_recording(b, svc).await;
    axe_clean(b, "call").await;
    shot(b, &format!("compliance-4-call-{}", w.lang)).await;

    let log = svc.edges.audit().await.unwrap().entries(1, 10_000).await.unwrap();
    for action in ["calls.search", "transcript.read", "recording.play"] {
        assert!(
            log.iter().any(|e| e.event.action == action
                && e.event.actor == OFFICER
                && e.event.outcome == "allowed"
                && (action == "calls.search" || e.event.reason == w.audited)),
            "{action} with {:?} not audited",
            w.audited
        );
    }
    assert!(
        log.iter().any(|e| e.event.action == "read.reason"
            && e.event.actor == OFFICER
            && e.event.outcome == "failed"
            && e.event.reason == "test"),
        "the refused reason is logged as a failed form"
    );
}

/// axe-core finds nothing on the page.
async fn axe_clean(b: &Browser, page: &str) {
    let violations = b.axe().await;
    assert!(violations.is_empty(), "{page}: axe-core: {violations:#?}");
}
