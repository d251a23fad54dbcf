//! Issue 18, the call page over plain HTTP (no JavaScript): the header's
//! facts and status badge, the player's accessible name and the channels'
//! drawing (authorized and audited as playback), the transcript's times as
//! links to the recording with a media fragment, the script served as the
//! CSP allows it, approval through the confirmation page by plain form
//! posts, the message and the next draft's link after it, form errors shown
//! on the page with the input kept (audited as failed), and a call without
//! KI saying why in Norwegian.

use crate::common;
use common::{wait_for_recordings, AddApproved, Backend, Env};
use opptak::app::{RunningKi, RunningRecorder};
use opptak_domain::model::CallId;
use opptak_review::identity::{Identity, Role};
use std::sync::Arc;
use std::time::Duration;

const PW: &str = "correct horse battery staple";

/// The `name`/`value` pairs of the hidden fields of the first form whose
/// action is `action` (as the page's own markup writes them).
fn hidden_fields(page: &str, action: &str) -> Vec<(String, String)> {
    let form = page
        .split(&format!(" action=\"{action}\""))
        .nth(1)
        .unwrap_or_else(|| panic!("no form to {action} in {page}"));
    let form = form.split("</form>").next().unwrap();
    form.split("<input type=\"hidden\" name=\"")
        .skip(1)
        .map(|rest| {
            let (name, rest) = rest.split_once('"').unwrap();
            let value = rest.split("value=\"").nth(1).unwrap().split('"').next().unwrap();
            (name.to_owned(), value.to_owned())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_call_page_works_without_javascript() {
    let env = Env::new(&Backend::Embedded, "call_page");
    let edges = env.edges().await;
    // Two KI calls of anne's (drafted) and one without KI.
    let mut samples = opptak::demo::samples(&opptak::demo::default_samples_dir()).unwrap();
    let mut ids = Vec::new();
    let recorder = RunningRecorder::spawn(edges.recorder());
    let ki = RunningKi::spawn(
        &edges,
        true,
        true,
        Some(Arc::new(common::FixedAsr("we agree a monthly fund savings plan"))),
    )
    .await
    .unwrap();
    // demo-0003 (drafted), a second drafted call (synthetic), demo-0004
    // (the customer opts out mid-call) and demo-0001 (no KI).
    let mut calls = Vec::new();
    for id in ["demo-0003", "demo-0004", "demo-0001"] {
        let at = samples.iter().position(|s| s.call.call_id == id).unwrap();
        calls.push(samples.swap_remove(at).call);
    }
    let mut second = opptak::sim::SimCall::synthetic("call-page-next", opptak_domain::model::Codec::Pcmu, 2, 6.0, 7);
    second.started.ki_enabled = true;
    second.started.customer_informed = true;
    calls.insert(1, second);
    for c in &mut calls {
        c.started.advisor_id = "adv-anne".into();
        common::publish_events(&edges, &c.events(100)).await;
        ids.push(CallId::parse(&c.call_id).unwrap());
    }
    wait_for_recordings(&edges, 4, 60).await;
    for cid in &ids[..2] {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
        while opptak_ki::summarize::ki_state(edges.vault().meta(), cid).await.unwrap()
            != opptak_ki::summarize::KiState::Drafted
        {
            assert!(tokio::time::Instant::now() < deadline, "no draft of {cid}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    ki.stop().await;
    recorder.stop().await.unwrap();
    let (call, next, opted_out, no_ki) = (ids[0].clone(), ids[1].clone(), ids[2].clone(), ids[3].clone());

    let people = Identity::open(&edges.review()).await.unwrap();
    for (id, name) in [("adv-anne", "Anne Hansen"), ("adv-bo", "Bo Berg")] {
        people
            .add_approved("setup", id, name, Role::Advisor, "pb", PW)
            .await
            .unwrap();
    }
    let server = common::WebService::start(&edges).await;
    let base = server.base.clone();
    let http = crate::browser::no_redirects();
    let anne = common::web_sign_in(&http, &base, "adv-anne", PW).await.1.unwrap();
    let get = |path: String, cookie: String| {
        let http = http.clone();
        let url = format!("{base}{path}");
        async move {
            let r = http.get(url).header("cookie", cookie).send().await.unwrap();
            let status = r.status().as_u16();
            let headers = r.headers().clone();
            (status, headers, r.bytes().await.unwrap())
        }
    };
    let page = |path: String, cookie: String| {
        let get = &get;
        async move {
            let (s, _, body) = get(path, cookie).await;
            (s, String::from_utf8(body.to_vec()).unwrap())
        }
    };
    let post = |path: String, cookie: String, form: Vec<(String, String)>| {
        let http = http.clone();
        let url = format!("{base}{path}");
        async move {
            let r = http
                .post(url)
                .header("cookie", cookie)
                .form(&form)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let location = r.headers().get("location").map(|l| l.to_str().unwrap().to_owned());
            (status, location, r.text().await.unwrap())
        }
    };
    let audit = edges.review().audit().await.unwrap();
    let outcomes = |action: &'static str| {
        let audit = &audit;
        async move {
            audit
                .entries(0, 100_000)
                .await
                .unwrap()
                .into_iter()
                .filter(|e| e.event.action == action)
                .map(|e| e.event.outcome)
                .collect::<Vec<_>>()
        }
    };

    // The header: facts in Oslo time and staff words, the status in text.
    let path = format!("/calls/{call}");
    let (s, body) = page(path.clone(), anne.clone()).await;
    assert_eq!(s, 200, "{body}");
    for says in [
        "Om samtalen",
        "<dd>Anne Hansen (adv-anne)</dd>",
        "Private Banking",
        "Sparing",
        "utgående",
        "Kunden ble informert om KI ved samtalestart.",
        "badge badge-waiting\">venter</strong>",
        "Utkast laget av KI (innebygd modell).",
    ] {
        assert!(body.contains(says), "{says:?} in {body}");
    }
    for never in [
        "(UTC)",
        "embedded-v1",
        "Skrevet av",
        "private_banking",
        ">savings<",
        ">outbound<",
    ] {
        assert!(!body.contains(never), "{never:?} in {body}");
    }
    // The player: named, with the channels' drawing; the controls the script
    // shows are hidden without it; the script is the service's own file.
    assert!(
        body.contains("<audio id=\"player\" controls preload=\"metadata\" aria-label=\"Opptaket av samtalen\""),
        "{body}"
    );
    assert!(body.contains("<div class=\"player-controls\" hidden>"), "{body}");
    assert!(
        body.contains("<script src=\"/static/player.js\" defer></script>"),
        "{body}"
    );
    assert!(
        !body.contains("<script>") && !body.contains(" onclick="),
        "no inline script"
    );
    let (s, h, js) = get("/static/player.js".into(), String::new()).await;
    assert_eq!(s, 200);
    assert_eq!(h["content-type"], "text/javascript; charset=utf-8");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert!(h["cache-control"].to_str().unwrap().starts_with("public"), "{h:?}");
    assert!(String::from_utf8_lossy(&js).contains("aria-current"));
    assert_eq!(get("/static/nothing.js".into(), String::new()).await.0, 404);
    let plays_before = outcomes("recording.play").await.len();
    let envelope = format!("/calls/{call}/envelope.svg");
    assert!(body.contains(&format!("<img class=\"envelope\" src=\"{envelope}\" alt=\"Lydstyrken gjennom samtalen: rådgiverens kanal øverst, kundens nederst.\"")), "{body}");
    let (s, h, svg) = get(envelope.clone(), anne.clone()).await;
    assert_eq!(s, 200);
    assert_eq!(h["content-type"], "image/svg+xml");
    assert_eq!(h["cache-control"], "no-store");
    let svg = String::from_utf8(svg.to_vec()).unwrap();
    assert_eq!(svg.matches("<path").count(), 2, "one band per channel: {svg}");
    assert_eq!(
        outcomes("recording.play").await.len(),
        plays_before + 1,
        "audited as playback"
    );
    let bo = common::web_sign_in(&http, &base, "adv-bo", PW).await.1.unwrap();
    assert_eq!(get(envelope, bo.clone()).await.0, 403, "not bo's call");

    // The transcript: a table with its heads; each time links to the
    // recording at that moment, and the link works without a script.
    assert!(body.contains("<th scope=\"col\">Taler</th>"), "{body}");
    let seek = format!("href=\"/calls/{call}/audio#t=");
    assert!(body.contains(&seek), "{body}");
    let href = body
        .split(&seek[..seek.len() - 3])
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let (s, _, wav) = get(format!("/calls/{call}/audio"), anne.clone()).await;
    assert_eq!(
        (s, &wav[..4]),
        (200, &b"RIFF"[..]),
        "the seek link's target ({href}) plays"
    );

    // Reject without a real reason: the page again, the reason kept and
    // marked, audited as failed, nothing recorded.
    let csrf = hidden_fields(&body, &format!("/calls/{call}/confirm"))
        .into_iter()
        .find(|(k, _)| k == "csrf")
        .unwrap()
        .1;
    let field = |k: &str, v: &str| (k.to_owned(), v.to_owned());
    let (s, _, again) = post(
        format!("/calls/{call}/confirm"),
        anne.clone(),
        vec![field("csrf", &csrf), field("action", "reject"), field("reason", "kort")],
    )
    .await;
    assert_eq!(s, 422, "{again}");
    assert!(again.contains("role=\"alert\""), "{again}");
    assert!(
        again.contains("aria-invalid=\"true\" aria-describedby=\"reject-reason-error\">kort</textarea>"),
        "{again}"
    );
    assert!(
        again.contains("Skriv hvorfor utkastet avvises, med minst 10 tegn."),
        "{again}"
    );
    assert_eq!(outcomes("draft.reject").await, ["failed"]);
    // An empty summary the same way.
    let (s, _, again) = post(
        format!("/calls/{call}/decide"),
        anne.clone(),
        vec![field("csrf", &csrf), field("action", "edit"), field("text", "  ")],
    )
    .await;
    assert_eq!(s, 422);
    assert!(again.contains("Sammendraget kan ikke være tomt."), "{again}");
    assert_eq!(outcomes("draft.edit").await, ["failed"]);

    // Approve: the first post shows what will be recorded and records
    // nothing; the confirmation's own form (csrf, confirm=1) records it.
    let text = "The customer sets up a monthly fund savings plan.";
    let (s, _, confirm) = post(
        format!("/calls/{call}/confirm"),
        anne.clone(),
        vec![field("csrf", &csrf), field("action", "approve"), field("text", text)],
    )
    .await;
    assert_eq!(s, 200, "{confirm}");
    assert!(
        confirm.contains("Bekreft godkjenning") && confirm.contains(text),
        "{confirm}"
    );
    assert!(
        confirm.contains("<button type=\"submit\" name=\"cancel\" value=\"1\">Avbryt</button>"),
        "{confirm}"
    );
    let review = opptak_review::review::Review::open(&edges.review()).await.unwrap();
    assert!(review.versions(&call).await.unwrap().is_empty(), "not yet");
    let fields = hidden_fields(&confirm, &format!("/calls/{call}/decide"));
    assert!(fields.contains(&field("confirm", "1")), "{fields:?}");
    // "Avbryt": back to the form, the text kept, nothing recorded.
    let mut cancel = fields.clone();
    cancel.push(field("cancel", "1"));
    let (s, _, back) = post(format!("/calls/{call}/decide"), anne.clone(), cancel).await;
    assert_eq!(s, 200);
    assert!(back.contains(&format!(">{text}</textarea>")), "the text kept: {back}");
    assert!(review.versions(&call).await.unwrap().is_empty(), "cancelled");
    // Posting to /decide without the confirmation's field only asks again.
    let unconfirmed: Vec<_> = fields.iter().filter(|(k, _)| k != "confirm").cloned().collect();
    let (s, _, asked) = post(format!("/calls/{call}/decide"), anne.clone(), unconfirmed).await;
    assert_eq!(s, 200);
    assert!(asked.contains("Bekreft godkjenning"));
    assert!(review.versions(&call).await.unwrap().is_empty(), "still not");
    let (s, location, _) = post(format!("/calls/{call}/decide"), anne.clone(), fields).await;
    assert_eq!(
        (s, location.as_deref()),
        (303, Some(format!("/calls/{call}?done=approved").as_str()))
    );
    assert_eq!(review.versions(&call).await.unwrap()[0].kind, "approved");

    // After it: the message, the next waiting draft, the approved text first.
    let (_, body) = page(format!("/calls/{call}?done=approved"), anne.clone()).await;
    assert!(
        body.contains("role=\"status\"") && body.contains("Sammendraget er godkjent."),
        "{body}"
    );
    assert!(
        body.contains(&format!("<a href=\"/calls/{next}\">Neste utkast: samtale ")),
        "{body}"
    );
    let approved_at = body.find("Godkjent sammendrag").expect("the approved summary");
    let draft_at = body.find(">KI-utkast<").expect("the draft");
    assert!(approved_at < draft_at, "the approved summary comes first");
    assert!(
        body.contains("badge badge-approved\">godkjent</strong> — godkjent av Anne Hansen (adv-anne) "),
        "{body}"
    );
    assert!(body.contains("Godkjent av Anne Hansen (adv-anne) "), "{body}");
    assert!(!body.contains("name=\"action\""), "closed: no decision form");
    // An amendment without a real reason: the page again, both fields kept.
    let amended = "The customer sets up a monthly fund savings plan of 2,000 kroner.";
    let (s, _, again) = post(
        format!("/calls/{call}/amend"),
        anne.clone(),
        vec![field("csrf", &csrf), field("text", amended), field("reason", "kort")],
    )
    .await;
    assert_eq!(s, 422, "{again}");
    for says in [
        format!(">{amended}</textarea>"),
        "value=\"kort\" required minlength=\"10\" aria-invalid=\"true\" aria-describedby=\"amend-reason-error\""
            .to_owned(),
        "Oppgi en begrunnelse på minst 10 tegn.".to_owned(),
    ] {
        assert!(again.contains(&says), "{says:?} in {again}");
    }
    assert_eq!(outcomes("summary.amend").await, ["failed"]);
    // In English, the same.
    let (_, en) = page(
        format!("/calls/{call}?done=approved"),
        format!("{anne}; opptak_lang=en"),
    )
    .await;
    assert!(
        en.contains("The summary is approved.") && en.contains("Approved summary"),
        "{en}"
    );
    // The last draft approved: no more waiting.
    let (_, body) = page(format!("/calls/{next}"), anne.clone()).await;
    let csrf = hidden_fields(&body, &format!("/calls/{next}/confirm"))
        .into_iter()
        .find(|(k, _)| k == "csrf")
        .unwrap()
        .1;
    let (_, location, _) = post(
        format!("/calls/{next}/decide"),
        anne.clone(),
        vec![
            field("csrf", &csrf),
            field("action", "reject"),
            field("reason", "the draft is about another call"),
            field("confirm", "1"),
        ],
    )
    .await;
    assert_eq!(
        location.as_deref(),
        Some(format!("/calls/{next}?done=rejected").as_str())
    );
    let (_, body) = page(location.unwrap(), anne.clone()).await;
    assert!(
        body.contains("Utkastet er avvist.") && body.contains("Ingen flere utkast venter."),
        "{body}"
    );
    assert!(body.contains("badge badge-rejected\">avvist</strong>"), "{body}");

    // A call whose customer opted out: KI off, and why.
    let (s, body) = page(format!("/calls/{opted_out}"), anne.clone()).await;
    assert_eq!(s, 200, "{body}");
    for says in [
        "badge badge-off\">KI av</strong> — kunden reserverte seg",
        "Kunden reserverte seg mot KI ",
        "Det finnes ikke noe KI-utkast: kunden reserverte seg mot KI.",
    ] {
        assert!(body.contains(says), "{says:?} in {body}");
    }

    // A call without KI says so, in Norwegian, with no library text.
    let (s, body) = page(format!("/calls/{no_ki}"), anne.clone()).await;
    assert_eq!(s, 200, "{body}");
    assert!(
        body.contains("badge badge-off\">KI av</strong> — KI ble ikke bestilt for samtalen"),
        "{body}"
    );
    assert!(
        body.contains("Det finnes ikke noe KI-utkast: KI ble ikke brukt i samtalen."),
        "{body}"
    );
    assert!(
        body.contains("Det finnes ingen transkripsjon: KI ble ikke brukt i samtalen."),
        "{body}"
    );
    for never in ["reading the audio", "has no", "Intet utkast"] {
        assert!(!body.contains(never), "{never:?} in {body}");
    }
    server.stop().await;
}

/// What drawing the channels costs for a long call (the envelope decrypts
/// the whole recording once): an hour-long stereo G.711 call (the longest
/// a desk normally has), recorded by the real recorder, its envelope
/// fetched over HTTP three times. Prints the times; no assertion on them.
/// Not part of the test run:
///
/// ```sh
/// cargo test --release --test it call_page::the_envelope_of_an_hour -- --ignored --nocapture
/// ```
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, run by hand"]
async fn the_envelope_of_an_hour_long_call() {
    let minutes: f64 = std::env::var("OPPTAK_BENCH_MINUTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60.0);
    let env = Env::new(&Backend::Embedded, "envelope_bench");
    let edges = env.edges().await;
    let mut call =
        opptak::sim::SimCall::synthetic("envelope-hour", opptak_domain::model::Codec::Pcmu, 2, minutes * 60.0, 3);
    call.started.advisor_id = "adv-anne".into();
    let recorder = RunningRecorder::spawn(edges.recorder());
    let t = std::time::Instant::now();
    common::publish_events(&edges, &call.events(1000)).await;
    wait_for_recordings(&edges, 1, 1800).await;
    recorder.stop().await.unwrap();
    eprintln!("recorded {minutes} min in {:.1} s", t.elapsed().as_secs_f64());
    let people = Identity::open(&edges.review()).await.unwrap();
    people
        .add_approved("setup", "adv-anne", "Anne", Role::Advisor, "pb", PW)
        .await
        .unwrap();
    let server = common::WebService::start(&edges).await;
    let http = crate::browser::no_redirects();
    let anne = common::web_sign_in(&http, &server.base, "adv-anne", PW)
        .await
        .1
        .unwrap();
    for round in 1..=3 {
        let t = std::time::Instant::now();
        let r = http
            .get(format!("{}/calls/envelope-hour/envelope.svg", server.base))
            .header("cookie", &anne)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let svg = r.text().await.unwrap();
        eprintln!(
            "envelope of {minutes} min, round {round}: {:.3} s, {} bytes",
            t.elapsed().as_secs_f64(),
            svg.len()
        );
    }
    // For scale: the whole recording as the player streams it.
    let t = std::time::Instant::now();
    let r = http
        .get(format!("{}/calls/envelope-hour/audio", server.base))
        .header("cookie", &anne)
        .send()
        .await
        .unwrap();
    let bytes = r.bytes().await.unwrap().len();
    eprintln!(
        "the whole WAV of {minutes} min: {:.3} s, {bytes} bytes",
        t.elapsed().as_secs_f64()
    );
    server.stop().await;
}
