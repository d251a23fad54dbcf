//! The review service in a real browser (issue 6): headless Debian Chromium
//! driven over WebDriver ([`common::webdriver`]) through what people do
//! with it, checking what only a browser sees — the page's CSP refusing
//! nothing the page needs, the recording decodable and playable by the
//! browser's media stack through ranged requests, markup in a transcript
//! shown as text and never run, every decision and form reachable by
//! keyboard with a visible focus (radio groups by arrow keys, lists by
//! arrow keys, dates typed), error pages answering with their status, the
//! CSV downloads carrying what the page shows (fetched with the browser's
//! session cookie), and no count below k on the dashboard, in a table, the
//! chart or the CSV.
//!
//! One seeded service ([`Service`]) and one function per flow, each flow in
//! its own browser (fresh cookies): the advisor's ([`advisor_flow`]), then
//! QA's on the call the advisor approved ([`qa_flow`]), then the team lead's
//! topic dashboard ([`dashboard_flow`]). Screenshots of every page go to
//! `$CARGO_TARGET_TMPDIR/screenshots/`, and into `docs/screenshots/` with
//! `OPPTAK_UPDATE_SCREENSHOTS=1`.
//!
//! Skips (saying why) when Chromium or chromedriver is missing, unless
//! `OPPTAK_REQUIRE_SERVICES=1`.

use crate::common;
use common::AddApproved;

use common::webdriver::{keys, Browser, Tools};
use common::{wait_for_recordings, Backend, Env};
use opptak::app::{Edges, RunningKi, RunningRecorder};
use opptak_ki::asr::{AsrError, SpeechRecognizer, Transcript, Utterance};
use opptak_review::identity::{Identity, Role};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub(crate) const PW: &str = "correct horse battery staple";
const ADVISOR: &str = "adv-anne";
const QA: &str = "qa-kari";
const LEAD: &str = "lead-lise";
const AUDITOR: &str = "aud-astrid";
const ADMIN: &str = "admin-ola";
/// What a customer "says" to get markup into a transcript (no speech model
/// writes tags, so only a test recognizer can).
/// `</textarea>` too: the draft carries it into the edit form, which must
/// not end early.
const HOSTILE: &str = "</textarea><script>alert('x')</script>";
/// Generous: a loaded 2-core CI machine starting Chromium.
const WAIT: Duration = Duration::from_secs(30);

/// Hears the sample's script, one line per utterance in time order (the
/// transcriber sends them so), with [`HOSTILE`] appended to the customer's
/// first line. More utterances than lines are refused, and the transcript
/// check below fails.
struct Scripted {
    lines: Vec<String>,
    next: Mutex<usize>,
}

#[async_trait::async_trait]
impl SpeechRecognizer for Scripted {
    async fn transcribe(&self, u: &Utterance) -> Result<Transcript, AsrError> {
        let i = {
            let mut n = self.next.lock().unwrap();
            *n += 1;
            *n - 1
        };
        let text = self
            .lines
            .get(i)
            .ok_or_else(|| AsrError::Rejected(format!("utterance {i} beyond the script")))?
            .clone();
        Ok(Transcript {
            text: text.clone(),
            segments: vec![opptak_ki::asr::Segment {
                start_s: 0.0,
                end_s: u.duration_s(),
                text,
            }],
        })
    }
    fn describe(&self) -> String {
        "scripted test recognizer".into()
    }
}

/// The review service on a free port over an embedded backend, holding one
/// KI call of [`ADVISOR`] (demo-0003: 12.7 s, two channels, G.711 A-law)
/// recorded, transcribed and drafted, and users of every role a flow needs.
pub(crate) struct Service {
    /// Its directory holds everything stored (for the plaintext scan).
    env: Env,
    pub(crate) edges: Edges,
    base: String,
    pub(crate) call: String,
    /// `(speaker, text)` of the transcript, in order.
    transcript: Vec<(String, String)>,
    /// Length of the recording in seconds.
    pub(crate) seconds: f64,
    server: common::WebService,
}

impl Service {
    pub(crate) async fn start() -> Self {
        let mut env = Env::new(&Backend::Embedded, "browser");
        // Transcribe from the stored recording only: the live transcriber
        // would hear the same call in other pieces, ahead of the script.
        env.config.ki.live = false;
        let edges = env.edges().await;
        let id = Identity::open(&edges.review()).await.unwrap();
        for (user, role, team) in [
            (ADVISOR, Role::Advisor, "oslo"),
            (LEAD, Role::TeamLead, "oslo"),
            (QA, Role::Qa, "qa"),
            (AUDITOR, Role::Auditor, "audit"),
            (ADMIN, Role::Admin, "it"),
        ] {
            id.add_approved("setup", user, user, role, team, PW).await.unwrap();
        }

        let mut sample = opptak::demo::samples(&opptak::demo::default_samples_dir())
            .unwrap()
            .into_iter()
            .find(|s| s.call.call_id == "demo-0003")
            .unwrap();
        sample.call.started.advisor_id = ADVISOR.into();
        let call = sample.call.call_id.clone();
        let transcript: Vec<(String, String)> = sample
            .script
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let (who, text) = l.split_once(": ").unwrap();
                let text = if i == 1 {
                    format!("{text} {HOSTILE}")
                } else {
                    text.to_owned()
                };
                (who.to_owned(), text)
            })
            .collect();
        assert!(transcript[1].0 == "customer", "the hostile line is the customer's");
        let asr = Arc::new(Scripted {
            lines: transcript.iter().map(|(_, t)| t.clone()).collect(),
            next: Mutex::new(0),
        });
        let recorder = RunningRecorder::spawn(edges.recorder());
        let ki = RunningKi::spawn(&edges, true, true, Some(asr)).await.unwrap();
        common::publish_events(&edges, &sample.call.events(100)).await;
        wait_for_recordings(&edges, 1, 60).await;
        let cid = opptak_domain::model::CallId::parse(&call).unwrap();
        common::webdriver::wait_until("the call's draft", Duration::from_secs(60), || {
            let (meta, cid) = (edges.meta.clone(), cid.clone());
            async move {
                meta.artifacts(&cid)
                    .await
                    .unwrap()
                    .iter()
                    .any(|a| a.kind == "draft")
                    .then_some(())
            }
        })
        .await;
        ki.stop().await;
        recorder.stop().await.unwrap();
        // The summarizer indexed the draft for QA; the first call of its
        // stratum is always sampled, so QA may read this one.
        assert!(
            opptak_review::qa::Qa::open(&edges.review())
                .await
                .unwrap()
                .is_sampled(&cid)
                .await
                .unwrap(),
            "the seeded call is in the QA sample"
        );

        let server = common::WebService::start(&edges).await;
        let base = server.base.clone();
        let seconds = sample.call.frames() as f64 / f64::from(sample.call.format.sample_rate_hz());
        Self {
            env,
            edges,
            base,
            call,
            transcript,
            seconds,
            server,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub(crate) async fn stop(self) {
        self.server.stop().await;
    }
}

/// Chromium and chromedriver, or None (skip) when missing and not required.
pub(crate) fn tools_or_skip() -> Option<Tools> {
    match Tools::find() {
        Ok(t) => Some(t),
        Err(e) if std::env::var("OPPTAK_REQUIRE_SERVICES").as_deref() == Ok("1") => {
            panic!("{e} but OPPTAK_REQUIRE_SERVICES=1")
        }
        Err(e) => {
            eprintln!("skipping: {e}");
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_pages_work_in_headless_chromium() {
    let Some(tools) = tools_or_skip() else { return };
    let t = Instant::now();
    let svc = Service::start().await;
    eprintln!("seeded in {:.1} s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let edit = advisor_flow(&tools, &svc).await;
    eprintln!("advisor flow in {:.1} s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    qa_flow(&tools, &svc, &edit).await;
    eprintln!("qa flow in {:.1} s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    dashboard_flow(&tools, &svc).await;
    eprintln!("dashboard flow in {:.1} s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    audit_and_admin_flow(&tools, &svc).await;
    eprintln!("audit and admin flow in {:.1} s", t.elapsed().as_secs_f64());
    svc.stop().await;
}

/// What the advisor did to the draft: the draft QA then scores.
struct Edit {
    draft: String,
}

/// Signs in with the form, opens the draft from the queue, plays the
/// recording, edits the summary, approves by keyboard, is refused QA's
/// pages, signs out.
async fn advisor_flow(tools: &Tools, svc: &Service) -> Edit {
    let b = &Browser::start(tools).await;
    let call_path = format!("/calls/{}", svc.call);

    // Not signed in: the queue sends the browser to the sign-in form.
    b.goto(&svc.url("/queue")).await;
    wait_for_path(b, "/login").await;
    assert_clean(b, "login").await;
    csp_refusals_are_seen(b).await;
    let user = b.find("input[name=user]").await;
    assert_eq!(b.active_element().await, user, "the user field has the focus");
    b.send_keys(&user, ADVISOR).await;
    b.send_keys(&b.find("input[name=password]").await, PW).await;
    shot(b, "advisor-1-login").await;
    b.click(&b.find("button[type=submit]").await).await;

    // The queue lists the draft.
    wait_for_path(b, "/queue").await;
    assert_clean(b, "queue").await;
    let link = b.find(&format!("a[href='{call_path}']")).await;
    shot(b, "advisor-2-queue").await;
    b.click(&link).await;

    // The call: the transcript as the recognizer heard it, markup as text;
    // the page's one script is the service's own file.
    wait_for_path(b, &call_path).await;
    assert_clean(b, "call").await;
    let rows = b
        .execute(
            "return [...document.querySelectorAll('table.transcript tbody tr')]
                .map(r => [r.className, r.cells[2].textContent]);",
            vec![],
        )
        .await;
    let rows: Vec<(String, String)> = serde_json::from_value(rows).unwrap();
    assert_eq!(rows, svc.transcript, "the transcript rows");
    assert!(rows[1].1.contains(HOSTILE), "shown as text: {rows:?}");
    assert_eq!(
        b.execute("return [...document.scripts].map(s => s.getAttribute('src'));", vec![])
            .await,
        json!(["/static/player.js"]),
        "one script, the service's own"
    );
    assert_eq!(b.alert_text().await, None, "no script from the transcript ran");
    assert_eq!(
        b.execute(
            "return [document.querySelector('.player-controls').hidden, document.querySelector('.shortcuts').hidden,
                     document.querySelector('.shortcuts h3').textContent];",
            vec![]
        )
        .await,
        json!([false, false, "Hurtigtaster"]),
        "the script shows the controls and the shortcuts"
    );

    play_recording(b, svc).await;
    assert_clean(b, "call, after playing").await;
    listen(b, &call_path, "nb").await;
    shot(b, "advisor-3-call").await;
    fits_a_phone(b, "the call page").await;

    // Edit: the markup (or a word) taken out, a sentence added; the page
    // shows the new version with its word diff against the draft.
    assert_eq!(
        b.execute("return document.documentElement.lang;", vec![]).await,
        json!("nb"),
        "the page in the browser's language"
    );
    let area = b.find("textarea[name=text]").await;
    let draft = b.property(&area, "value").await.as_str().unwrap().to_owned();
    assert_eq!(
        draft,
        b.text(&b.find("p.summary").await).await,
        "the form holds the draft, whole"
    );
    let words: Vec<&str> = draft.split_whitespace().collect();
    assert!(words.len() >= 3, "a draft to edit: {draft:?}");
    // The summarizer may have carried the hostile line over: the advisor
    // takes it out; otherwise the second word.
    let markup = |w: &&str| w.contains('<');
    let removed: Vec<&str> = if words.iter().any(markup) {
        words.iter().copied().filter(markup).collect()
    } else {
        vec![words[1]]
    };
    let kept: Vec<&str> = words.iter().copied().filter(|w| !removed.contains(w)).collect();
    let edited = format!("{} The advisor sends the savings agreement.", kept.join(" "));
    b.clear(&area).await;
    b.send_keys(&area, &edited).await;
    b.click(&b.find("button[name=action][value=edit]").await).await;
    wait_for(b, "the edited version", "ins").await;
    wait_for_path(b, &call_path).await;
    assert_clean(b, "call, edited").await;
    assert_eq!(b.text(&b.find(".notice").await).await, "Endringen er lagret.");
    let diff = b
        .execute(
            "return ['del', 'ins'].map(t => [...document.querySelectorAll(t)].map(e => e.textContent).join(' '));",
            vec![],
        )
        .await;
    assert_eq!(diff[0], json!(removed.join(" ")), "{diff}");
    assert_eq!(diff[1], json!("The advisor sends the savings agreement."), "{diff}");
    let area = b.find("textarea[name=text]").await;
    assert_eq!(
        b.property(&area, "value").await,
        json!(edited),
        "the form holds the new version"
    );
    shot(b, "advisor-4-edited").await;

    // Approve with the keyboard only: Tab from the top of the page to the
    // approve button (its focus visible), Enter; the confirmation page says
    // what will be recorded; Tab to "Bekreft", Enter.
    let path = tab_to(b, "button[name=action][value=approve]").await;
    assert_focus_visible(b, "the approve button").await;
    eprintln!("Tab order to approve: {}", path.join(" → "));
    b.press_keys(keys::ENTER).await;
    wait_for_path(b, &format!("{call_path}/confirm")).await;
    assert_clean(b, "the confirmation").await;
    assert_eq!(b.text(&b.find("h1").await).await, "Bekreft godkjenning");
    assert_eq!(b.text(&b.find("blockquote").await).await, edited);
    assert!(
        review_versions(svc).await.len() == 1,
        "nothing approved before the confirmation"
    );
    shot(b, "advisor-5-confirm").await;
    tab_to(b, "form[action$='/decide'] button[type=submit]").await;
    assert_focus_visible(b, "the confirm button").await;
    b.press_keys(keys::ENTER).await;
    wait_for_path(b, &call_path).await;
    wait_for(b, "the approval's message", ".notice").await;
    assert_clean(b, "call, approved").await;
    assert_eq!(
        b.text(&b.find(".notice").await).await,
        "Sammendraget er godkjent.\nIngen flere utkast venter. Utkast til gjennomgang",
        "the message, and where the next draft would be"
    );
    assert!(b.try_find(".notice a[href='/queue']").await.is_some());
    let kinds = b
        .execute(
            "return [...document.querySelectorAll('table.versions tbody tr')].map(r => r.cells[1].textContent);",
            vec![],
        )
        .await;
    assert_eq!(kinds, json!(["redigert", "godkjent"]));
    assert_eq!(b.text(&b.find("p.approved-summary").await).await, edited);
    assert_eq!(
        b.execute(
            "return !!(document.querySelector('p.approved-summary').compareDocumentPosition(
                 document.querySelector('p.summary')) & Node.DOCUMENT_POSITION_FOLLOWING);",
            vec![]
        )
        .await,
        json!(true),
        "the approved summary first, the AI draft after it"
    );
    assert!(b
        .text(&b.find(".status").await)
        .await
        .starts_with("Status: godkjent — godkjent av adv-anne"));
    assert!(b.try_find("textarea#text").await.is_none(), "closed: no draft to edit");
    assert!(
        b.try_find("textarea#amend-text").await.is_some(),
        "the approved summary can be amended (issue 16, section 5)"
    );
    shot(b, "advisor-6-approved").await;

    // The same page in English: the message, the approved summary, and the
    // player, seeking from a line and by its keys.
    switch_language(b, "en").await;
    wait_for_path(b, &call_path).await;
    assert_clean(b, "call, in English").await;
    assert_eq!(
        b.text(&b.find(".notice p").await).await,
        "The summary is approved.",
        "the message survives the switch"
    );
    assert_eq!(b.text(&b.find("#approved-h").await).await, "Approved summary");
    assert_eq!(b.text(&b.find("#draft-h").await).await, "AI draft");
    listen(b, &call_path, "en").await;
    shot(b, "advisor-7-approved-en").await;
    switch_language(b, "nb").await;

    // What the browser sent is what was kept.
    let review = opptak_review::review::Review::open(&svc.edges.review()).await.unwrap();
    let cid = opptak_domain::model::CallId::parse(&svc.call).unwrap();
    let versions = review.versions(&cid).await.unwrap();
    assert!(versions
        .iter()
        .all(|v| v.author == ADVISOR && v.text.as_deref() == Some(edited.as_str())));
    assert_eq!(
        opptak_review::review::read_approved(&svc.edges.review(), &cid)
            .await
            .unwrap()["summary"],
        json!(edited)
    );

    // QA's pages are not the advisor's: not offered, and refused.
    assert!(
        b.try_find("header a[href^='/qa']").await.is_none(),
        "no QA links for an advisor"
    );
    for (path, says) in [
        ("/qa", "Bare kvalitetskontrollører ser QA-køen."),
        ("/qa/report", "Rollen din gir ikke tilgang til QA-rapporten."),
    ] {
        b.goto(&svc.url(path)).await;
        assert_eq!(error_page(b, path, 403).await, says);
    }

    // The queue is empty now; signing out ends the session. (The error
    // page has no header links, so the advisor types the address.)
    b.goto(&svc.url("/queue")).await;
    wait_for_path(b, "/queue").await;
    assert_clean(b, "queue, empty").await;
    assert!(b.try_find(&format!("a[href='{call_path}']")).await.is_none());
    b.click(&b.find("form[action='/logout'] button").await).await;
    wait_for_path(b, "/login").await;
    b.goto(&svc.url("/queue")).await;
    wait_for_path(b, "/login").await;
    assert_clean(b, "signed out").await;

    // The browser's requests were authorized and audited like any other.
    let log = svc.edges.audit().await.unwrap().entries(1, 1000).await.unwrap();
    for action in ["transcript.read", "recording.play", "draft.edit", "draft.approve"] {
        assert!(
            log.iter()
                .any(|e| e.event.action == action && e.event.actor == ADVISOR && e.event.outcome == "allowed"),
            "{action} not audited"
        );
    }
    assert!(
        log.iter()
            .any(|e| e.event.action == "qa.queue" && e.event.actor == ADVISOR && e.event.outcome == "refused"),
        "the advisor's refusal at /qa not audited"
    );
    Edit { draft }
}

/// At 390 px wide (a phone) the page's content fits: nothing in `main`
/// is wider than it, the draft and the transcript stacked. Back to 1280 px.
async fn fits_a_phone(b: &Browser, page: &str) {
    let size = |w: u32| json!({"width": w, "height": 900});
    b.cmd(reqwest::Method::POST, "/window/rect", size(390)).await;
    let fit = b
        .wait_until("the narrow layout", WAIT, || async move {
            let v = b
                .execute(
                    "const m = document.querySelector('main');
                     if (window.innerWidth > 420) return null;
                     const g = document.querySelector('.call-grid');
                     return {inner: window.innerWidth, main: m.clientWidth, scroll: m.scrollWidth,
                             columns: g ? getComputedStyle(g).gridTemplateColumns.split(' ').length : 1};",
                    vec![],
                )
                .await;
            (!v.is_null()).then_some(v)
        })
        .await;
    shot(b, "advisor-3-call-390").await;
    b.cmd(reqwest::Method::POST, "/window/rect", size(1280)).await;
    assert!(
        fit["scroll"].as_u64() <= fit["main"].as_u64(),
        "{page}: wider than a phone's screen: {fit}"
    );
    assert_eq!(fit["columns"], json!(1), "{page}: stacked at 390 px: {fit}");
}

/// The versions kept of the seeded call.
async fn review_versions(svc: &Service) -> Vec<opptak_review::review::Version> {
    let review = opptak_review::review::Review::open(&svc.edges.review()).await.unwrap();
    let cid = opptak_domain::model::CallId::parse(&svc.call).unwrap();
    review.versions(&cid).await.unwrap()
}

/// The player as the advisor uses it (the page in `lang`): a transcript
/// line's time seeks the page's player (not a navigation to the audio) and
/// marks the line; the keys l and j move 5 s, ] and [ change the speed, k
/// plays and pauses; the buttons do the same.
async fn listen(b: &Browser, call_path: &str, lang: &str) {
    let state = || async move {
        b.execute(
            "const a = document.getElementById('player');
             const cur = document.querySelector('table.transcript tr[aria-current]');
             return {t: a.currentTime, rate: a.playbackRate, paused: a.paused,
                     current: cur ? [...cur.parentNode.children].indexOf(cur) : -1};",
            vec![],
        )
        .await
    };
    let t = |v: &Value| v["t"].as_f64().unwrap();
    // Seek from the third line: the player jumps there and marks the line.
    let link = b.find("table.transcript tbody tr:nth-child(3) a.seek").await;
    let start: f64 = b.attribute(&link, "data-t").await.unwrap().parse().unwrap();
    assert!(
        b.attribute(&link, "href")
            .await
            .unwrap()
            .ends_with(&format!("/audio#t={start:.2}")),
        "without the script the link opens the recording there"
    );
    b.click(&link).await;
    let s = state().await;
    b.execute("document.getElementById('player').pause();", vec![]).await;
    assert!(
        t(&s) >= start - 0.05 && t(&s) < start + 1.5,
        "{lang}: seeked to {start} s: {s}"
    );
    assert_eq!(path_of(&b.current_url().await), call_path, "no navigation");
    b.wait_until("the line marked", WAIT, || async move {
        (state().await["current"] == json!(2)).then_some(())
    })
    .await;

    // The keys, with the focus on no field.
    b.execute(
        "const a = document.getElementById('player'); a.pause(); a.currentTime = 2; document.activeElement.blur();",
        vec![],
    )
    .await;
    b.press_keys("l").await;
    let s = state().await;
    assert!((t(&s) - 7.0).abs() < 0.2, "{lang}: l is +5 s: {s}");
    b.press_keys("j").await;
    assert!((t(&state().await) - 2.0).abs() < 0.2, "{lang}: j is −5 s");
    b.press_keys("]").await;
    assert_eq!(state().await["rate"], json!(1.25), "{lang}: ] is faster");
    b.press_keys("[[").await;
    assert_eq!(state().await["rate"], json!(0.75), "{lang}: [ is slower");
    b.press_keys("k").await;
    assert_eq!(state().await["paused"], json!(false), "{lang}: k plays");
    b.press_keys("k").await;
    assert_eq!(state().await["paused"], json!(true), "{lang}: k pauses");
    // A key typed in a field is the field's.
    if let Some(area) = b.try_find("textarea").await {
        let before = t(&state().await);
        b.click(&area).await;
        b.press_keys("l").await;
        assert!(
            (t(&state().await) - before).abs() < 0.2,
            "{lang}: l in a field is a letter"
        );
        b.execute(
            "const e = document.activeElement; e.value = e.value.slice(0, -1); e.blur();",
            vec![],
        )
        .await;
    }
    // The buttons.
    b.execute("document.getElementById('player').currentTime = 1;", vec![])
        .await;
    b.click(&b.find(".player-controls button[data-skip='5']").await).await;
    assert!((t(&state().await) - 6.0).abs() < 0.2, "{lang}: the +5 s button");
    let fast = b.find(".player-controls button[data-rate='1.5']").await;
    b.click(&fast).await;
    assert_eq!(state().await["rate"], json!(1.5));
    assert_eq!(b.attribute(&fast, "aria-pressed").await.as_deref(), Some("true"));
    b.click(&b.find(".player-controls button[data-rate='1']").await).await;
    assert_clean(b, &format!("{lang}: after listening")).await;
}

/// Waits until the page's path is `path` (after a redirect or a submit;
/// query and fragment aside).
pub(crate) async fn wait_for_path(b: &Browser, path: &str) {
    b.wait_until(&format!("the browser at {path}"), WAIT, || async move {
        (path_of(&b.current_url().await) == path).then_some(())
    })
    .await;
}

/// The path of `url`, without query or fragment.
pub(crate) fn path_of(url: &str) -> String {
    let at = url
        .split_once("://")
        .map_or("", |(_, r)| r.find('/').map_or("/", |i| &r[i..]));
    at.split(['?', '#']).next().unwrap_or_default().to_owned()
}

pub(crate) async fn wait_for(b: &Browser, what: &str, css: &str) {
    b.wait_until(what, WAIT, || async move { b.try_find(css).await.map(|_| ()) })
        .await;
}

/// Fails on anything the browser logged as an error or a CSP refusal, and
/// on any accessibility violation axe-core finds on the page.
pub(crate) async fn assert_clean(b: &Browser, page: &str) {
    let bad: Vec<_> = b
        .browser_log()
        .await
        .into_iter()
        .filter(|e| e.level == "SEVERE" || e.message.contains("Content Security Policy"))
        .collect();
    assert!(bad.is_empty(), "{page}: the browser reported {bad:#?}");
    assert_accessible(b, page).await;
}

/// Fails on any accessibility violation axe-core finds on the page.
pub(crate) async fn assert_accessible(b: &Browser, page: &str) {
    let violations = b.axe().await;
    assert!(violations.is_empty(), "{page}: axe-core found {violations:#?}");
}

/// The control for [`assert_clean`]: a resource the CSP forbids shows up
/// in the browser log, so a clean log means the pages asked for nothing
/// their policy refuses.
async fn csp_refusals_are_seen(b: &Browser) {
    b.execute(
        "const i = document.createElement('img');
         i.src = 'http://127.0.0.2:9/csp-probe.png';
         document.body.append(i);",
        vec![],
    )
    .await;
    let seen = b
        .wait_until("the CSP refusal in the browser log", WAIT, || async move {
            b.browser_log()
                .await
                .into_iter()
                .find(|e| e.message.contains("csp-probe") && e.message.contains("Content Security Policy"))
        })
        .await;
    assert_eq!(seen.level, "SEVERE", "{seen:?}");
    b.execute("document.querySelector('img').remove();", vec![]).await;
}

/// The whole page as `name.png` under the test's temporary directory, and
/// in `docs/screenshots/` with `OPPTAK_UPDATE_SCREENSHOTS=1`.
pub(crate) async fn shot(b: &Browser, name: &str) {
    let file = format!("{name}.png");
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("screenshots")
        .join(&file);
    b.screenshot_full(&tmp).await;
    if std::env::var("OPPTAK_UPDATE_SCREENSHOTS").as_deref() == Ok("1") {
        let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots");
        std::fs::create_dir_all(&docs).unwrap();
        std::fs::copy(&tmp, docs.join(&file)).unwrap();
    }
    eprintln!("screenshot {}", tmp.display());
}

/// The scores [`qa_flow`] gives, one per radio group, in form order.
const SCORES: [(&str, u8); 3] = [("correctness", 4), ("relevance", 1), ("quality", 3)];

/// Signs in as QA and works through the sampled call: the QA queue lists
/// it; the call page plays it; the assessment is given by keyboard (a flag
/// without a note is refused first); the QA report shows it in numbers,
/// for a date range chosen in its form, and as a CSV download; the report
/// reads in English after the header's language link.
async fn qa_flow(tools: &Tools, svc: &Service, edit: &Edit) {
    let b = &Browser::start(tools).await;
    let call_path = format!("/calls/{}", svc.call);
    let cid = opptak_domain::model::CallId::parse(&svc.call).unwrap();
    let qa = opptak_review::qa::Qa::open(&svc.edges.review()).await.unwrap();
    let indexed = qa.call(&cid).await.unwrap().expect("the call is indexed");

    // The QA queue is a QA reviewer's first page: the sampled call with
    // what it was sampled by, not scored yet.
    sign_in(b, svc, QA, "/qa").await;
    assert_clean(b, "qa queue").await;
    let row = row_of(b, &format!("a[href='{call_path}']")).await;
    let k = &indexed.row;
    let taxonomy = opptak_domain::summary::Taxonomy::default_taxonomy();
    let topic_nb = taxonomy.get(k.topic()).expect("a taxonomy topic").label_nb.clone();
    let topic_en = taxonomy.get(k.topic()).expect("a taxonomy topic").label_en.clone();
    let channel_language = format!(
        "Telefon, {}",
        match k.language.as_str() {
            "en" => "engelsk",
            "nb" | "nn" | "no" => "norsk",
            _ => "språk ikke bestemt",
        }
    );
    // Call, waiting, started, length, desk, topic, channel and language,
    // scored by, why: names, not codes.
    assert_eq!(row.len(), 9, "{row:?}");
    assert_eq!(row[0], svc.call);
    assert!(
        row[1].ends_with("min") || row[1].contains('t') || row[1].contains('d'),
        "waiting: {row:?}"
    );
    assert!(
        row[2].contains('.') && row[2].contains(':'),
        "started, Oslo time: {row:?}"
    );
    assert_eq!(
        [&row[4], &row[5], &row[6], &row[7], &row[8]],
        [
            desk_nb(&k.desk),
            topic_nb.as_str(),
            channel_language.as_str(),
            "ingen ennå",
            "tilfeldig utvalg"
        ],
        "the queue's row"
    );
    // The queue's own search: the call found by part of its id, and
    // nothing by another.
    let part = &svc.call[svc.call.len() - 4..];
    b.goto(&svc.url(&format!("/qa?call={part}&status=unscored"))).await;
    wait_for_path(b, "/qa").await;
    assert!(
        b.try_find(&format!("a[href='{call_path}']")).await.is_some(),
        "found by {part}"
    );
    assert!(b.text(&b.find("nav.pages").await).await.starts_with("1–1 av 1"));
    b.goto(&svc.url("/qa?status=scored")).await;
    wait_for_path(b, "/qa").await;
    assert!(
        b.try_find(&format!("a[href='{call_path}']")).await.is_none(),
        "not scored yet"
    );
    b.goto(&svc.url("/qa")).await;
    wait_for_path(b, "/qa").await;
    assert_clean(b, "qa queue, again").await;
    shot(b, "qa-1-queue").await;
    b.click(&b.find(&format!("a[href='{call_path}']")).await).await;

    // The call page: no decision form (not QA's to decide), the recording
    // plays; the assessment says what is scored (the KI draft as
    // generated, shown beside the form) and has its rubric.
    wait_for_path(b, &call_path).await;
    assert_clean(b, "qa call").await;
    assert_eq!(b.text(&b.find("p.scored-summary").await).await, edit.draft);
    assert!(b
        .text(&b.find("p.what-scored").await)
        .await
        .contains("ikke rådgiverens redigerte eller godkjente tekst"));
    let rubric = b
        .execute(
            "return ['correctness', 'relevance', 'quality'].map(n =>
                 [...document.querySelectorAll(`#${n}-rubric li`)].map(l => l.textContent.slice(0, 2)));",
            vec![],
        )
        .await;
    assert_eq!(
        rubric,
        json!([["1:", "3:", "5:"], ["1:", "3:", "5:"], ["1:", "3:", "5:"]]),
        "what 1, 3 and 5 mean"
    );
    assert!(
        b.try_find("button[name=action]").await.is_none(),
        "no decision form for QA"
    );
    assert!(b.try_find("table.reviews").await.is_none(), "no assessment yet");
    play_recording(b, svc).await;
    assert_clean(b, "qa call, after playing").await;

    // A flag needs a note: without one the same form comes back (422) with
    // the scores and flag kept, the note marked, nothing saved.
    let note = "Sammendraget nevner en sparerente kunden aldri ble tilbudt.";
    let path = assess_by_keyboard(b, "").await;
    eprintln!("Tab order to the first score: {}", path.join(" → "));
    wait_for_path(b, &format!("{call_path}/qa")).await;
    assert_eq!(b.status().await, 422, "the form again");
    let log = b.browser_log().await;
    assert!(
        log.iter().all(|e| e.message.contains("status of 422")),
        "only the 422 itself: {log:#?}"
    );
    assert!(qa.reviews(&cid).await.unwrap().is_empty(), "nothing kept");
    assert_eq!(
        b.text(&b.find("#note-error").await).await,
        "Et flagg krever et notat: skriv hva som er galt."
    );
    assert_eq!(
        b.attribute(&b.find("textarea[name=note]").await, "aria-invalid")
            .await
            .as_deref(),
        Some("true")
    );
    assert!(b
        .text(&b.find("div.error-summary").await)
        .await
        .contains("Vurderingen ble ikke lagret"));
    let scores: Vec<String> = SCORES.iter().map(|(_, v)| v.to_string()).collect();
    let kept_form = "const f = document.querySelector('form[action$=\"/qa\"]');
         return [...['correctness', 'relevance', 'quality'].map(n =>
                     (f.querySelector(`input[name=${n}]:checked`) || {}).value),
                 f.flag.value, f.note.value];";
    assert_eq!(
        b.execute(kept_form, vec![]).await,
        json!([scores[0], scores[1], scores[2], "unexpected", ""]),
        "the form keeps what was chosen"
    );
    assert_eq!(b.find_all("ul.rubric").await.len(), 3, "the rubric beside the scores");
    shot(b, "qa-5-assessment-error").await;

    // The note added to the kept form: saved, shown in the assessment
    // table, and the form holds it for a change of mind.
    let field = b.find("textarea[name=note]").await;
    b.click(&field).await;
    b.press_keys(note).await;
    b.click(&b.find("form[action$='/qa'] button[type=submit]").await).await;
    wait_for(b, "the saved assessment", "table.reviews").await;
    wait_for_path(b, &call_path).await;
    assert_clean(b, "qa call, assessed").await;
    assert!(b.current_url().await.ends_with("#qa"), "back at the assessment");
    let row = row_of(b, "table.reviews tbody td").await;
    assert_eq!(
        row,
        [QA, &scores[0], &scores[1], &scores[2], "uventet innhold", note],
        "the assessment row"
    );
    assert_eq!(
        b.text(&b.find("table.reviews strong.flag").await).await,
        "uventet innhold"
    );
    assert_eq!(
        b.execute(kept_form, vec![]).await,
        json!([scores[0], scores[1], scores[2], "unexpected", note]),
        "the form holds the assessment"
    );
    shot(b, "qa-2-call").await;
    let kept = qa.reviews(&cid).await.unwrap();
    assert_eq!(kept.len(), 1, "{kept:?}");
    let r = &kept[0];
    assert_eq!(
        (
            r.reviewer.as_str(),
            [r.correctness, r.relevance, r.quality],
            r.flag,
            r.note.as_deref()
        ),
        (
            QA,
            SCORES.map(|(_, v)| v),
            Some(opptak_review::qa::QaFlag::Unexpected),
            Some(note)
        ),
        "what the browser sent is what was kept"
    );
    // Kept sealed: the note is nowhere at rest in plaintext.
    let probes: std::collections::HashSet<[u8; 16]> =
        note.as_bytes().windows(16).map(|w| w.try_into().unwrap()).collect();
    assert_eq!(
        common::scan_dir(svc.env.dir.path(), &probes),
        Vec::new(),
        "the note in plaintext"
    );

    // The queue says who scored it.
    b.click(&b.find("header a[href='/qa']").await).await;
    wait_for_path(b, "/qa").await;
    assert_clean(b, "qa queue, scored").await;
    assert_eq!(row_of(b, &format!("a[href='{call_path}']")).await[7], QA);

    // The report, from the queue's link: a range without the call counts
    // nothing; the call's day counts it. Dates typed into the form.
    b.click(&b.find("main a[href='/qa/report']").await).await;
    wait_for_path(b, "/qa/report").await;
    assert_clean(b, "qa report").await;
    set_report_range(b, "2020-01-01", "2020-01-31").await;
    assert_eq!(
        report_total(b).await,
        ["Totalt", "0", "0", "0", "–", "–", "–", "0", "0"],
        "nothing in January 2020"
    );
    // The call's day: one call, fewer than k, so the report withholds it as
    // the dashboard does (issue 15, finding 6: the old main showed its
    // scores), in the page and the CSV alike.
    set_report_range(b, &k.day, &k.day).await;
    let kk = svc.edges.config.web.dashboard_k;
    let withheld = format!("Holdt tilbake: færre enn {kk} samtaler");
    assert_eq!(report_total(b).await, ["Totalt", withheld.as_str()], "the total row");
    let topics = b
        .execute(
            "return [...document.querySelectorAll('main table.topics tbody tr')]
                .map(r => [...r.cells].map(c => c.textContent.trim()));",
            vec![],
        )
        .await;
    assert_eq!(topics, json!([[topic_nb, withheld]]), "one topic, by name, withheld");
    shot(b, "qa-3-report").await;
    report_fits(b).await;

    // The CSV link, fetched as the browser would with its session: withheld
    // alike; without the session, the sign-in page.
    let link = b.find("main a[download]").await;
    assert_eq!(b.text(&link).await, "Last ned som CSV");
    let url = b.property(&link, "href").await.as_str().unwrap().to_owned();
    assert_eq!(
        url,
        svc.url(&format!("/qa/report.csv?from={0}&to={0}", k.day)),
        "the CSV of the range shown"
    );
    let session = b
        .cookies()
        .await
        .into_iter()
        .find(|c| c.name == "opptak_session")
        .expect("a session cookie");
    assert!(session.http_only && session.same_site == "Strict", "{session:?}");
    let csv = download_csv(b, &url, &format!("opptak-qa-{0}-{0}.csv", k.day)).await;
    let empty = ",".repeat(opptak_review::qa::CSV_HEADER.len() - 1);
    assert_eq!(
        csv,
        format!(
            "{}\r\n{}{empty}\r\nTOTAL{empty}\r\n",
            opptak_review::qa::CSV_HEADER.join(","),
            k.topic()
        ),
        "the CSV"
    );
    let resp = no_redirects().get(&url).send().await.unwrap();
    assert!(resp.status().is_redirection(), "{}", resp.status());
    assert_eq!(
        resp.headers().get("location").map(|v| v.as_bytes()),
        Some(&b"/login"[..]),
        "no session, no report"
    );

    // English by the header link, and back.
    let nb_heads = report_headings(b).await;
    switch_language(b, "en").await;
    assert_eq!(
        path_of(&b.current_url().await),
        "/qa/report",
        "the language link keeps the page"
    );
    assert!(
        b.current_url().await.contains(&format!("from={}", k.day)),
        "and its range"
    );
    assert_clean(b, "qa report, English").await;
    assert_eq!(b.text(&b.find("h1").await).await, "QA report");
    let en_heads = report_headings(b).await;
    assert_eq!(en_heads.len(), nb_heads.len());
    for (nb, en) in nb_heads.iter().zip(&en_heads) {
        assert_ne!(nb, en, "a heading left in Norwegian");
    }
    assert_eq!(
        &en_heads[..5],
        ["Calls", "Mean score (1–5)", "Flags", "Topic", "Drafts"]
    );
    assert_eq!(report_total(b).await[0], "Total");
    assert_eq!(b.text(&b.find("main a[download]").await).await, "Download as CSV");
    assert_eq!(
        b.execute(
            "return document.querySelector('main table.topics tbody th').textContent;",
            vec![]
        )
        .await,
        json!(topic_en)
    );
    assert!(b
        .text(&b.find("p.note").await)
        .await
        .contains("a draft rewritten entirely (or more) counting as 100 %"));
    shot(b, "qa-4-report-en").await;
    report_fits(b).await;
    switch_language(b, "nb").await;
    assert_clean(b, "back in Norwegian").await;

    // Audited: the reads with QA's reason, the refusal, the score with its flag.
    let log = svc.edges.audit().await.unwrap().entries(1, 1000).await.unwrap();
    let subject = format!("call:{}", svc.call);
    for (action, reason, outcome) in [
        ("transcript.read", "qa sample", "allowed"),
        ("recording.play", "qa sample", "allowed"),
        ("qa.score", "form check: note", "failed"),
        ("qa.score", "unexpected", "allowed"),
    ] {
        assert!(
            log.iter().any(|e| e.event.actor == QA
                && e.event.action == action
                && e.event.subject == subject
                && e.event.reason == reason
                && e.event.outcome == outcome),
            "{action} {outcome} ({reason}) by {QA} not audited"
        );
    }
    assert!(log
        .iter()
        .any(|e| e.event.actor == QA && e.event.action == "qa.report" && e.event.outcome == "allowed"));
}

/// Fills the call page's assessment form with the keyboard only and
/// submits it: Tab from the top of the page to the first score, arrow keys
/// in each radio group ([`SCORES`]), Tab to the next; in the flag list the
/// down arrow twice ("unexpected"); Tab, `note`; Tab to the button, Enter.
/// Checks each stop has a visible focus; returns the Tab stops before the
/// first score.
async fn assess_by_keyboard(b: &Browser, note: &str) -> Vec<String> {
    b.execute("document.activeElement.blur(); window.scrollTo(0, 0);", vec![])
        .await;
    let path = tab_to(b, "input[name=correctness]").await;
    for (i, (name, v)) in SCORES.iter().enumerate() {
        if i > 0 {
            b.press_keys(keys::TAB).await;
        }
        let at = b
            .execute(
                "const a = document.activeElement; return [a.name, a.value, a.checked];",
                vec![],
            )
            .await;
        assert_eq!(at, json!([name, "1", false]), "Tab enters the {name} group at 1");
        // Space checks the focused radio; an arrow moves and checks.
        b.press_keys(keys::SPACE).await;
        for _ in 1..*v {
            b.press_keys(keys::ARROW_RIGHT).await;
        }
        let checked = b
            .execute(
                "return (document.querySelector(`input[name=${arguments[0]}]:checked`) || {}).value;",
                vec![json!(name)],
            )
            .await;
        assert_eq!(checked, json!(v.to_string()), "{name} by keyboard");
        assert_focus_visible(b, name).await;
    }
    b.press_keys(keys::TAB).await;
    assert_eq!(b.active_element().await, b.find("select[name=flag]").await);
    assert_focus_visible(b, "the flag list").await;
    b.press_keys(&keys::ARROW_DOWN.repeat(2)).await;
    assert_eq!(
        b.property(&b.find("select[name=flag]").await, "value").await,
        json!("unexpected"),
        "the flag by keyboard"
    );
    b.press_keys(keys::TAB).await;
    assert_eq!(b.active_element().await, b.find("textarea[name=note]").await);
    assert_focus_visible(b, "the note").await;
    b.press_keys(note).await;
    b.press_keys(keys::TAB).await;
    let button = b.active_element().await;
    assert_eq!(b.text(&button).await, "Lagre vurdering");
    assert_focus_visible(b, "the save button").await;
    b.press_keys(keys::ENTER).await;
    path
}

/// Types `from` and `to` (`YYYY-MM-DD`) into the QA report's date fields
/// and submits with Enter.
async fn set_report_range(b: &Browser, from: &str, to: &str) {
    type_date(b, "input[name=from]", from).await;
    type_date(b, "input[name=to]", to).await;
    b.press_keys(keys::ENTER).await;
    b.wait_until("the report for the range", WAIT, || async move {
        let url = b.current_url().await;
        url.ends_with(&format!("/qa/report?from={from}&to={to}")).then_some(())
    })
    .await;
    assert_clean(b, "qa report, range").await;
}

/// Types `day` (`YYYY-MM-DD`) into the date field `css` as a person does:
/// the field emptied, then its parts in the browser's order (the browser's
/// locale decides, not the page's: Debian's Chromium without
/// `chromium-l10n` is American, month first), which `Intl` reports.
async fn type_date(b: &Browser, css: &str, day: &str) {
    let order = b
        .execute(
            "return new Intl.DateTimeFormat(undefined, {year: 'numeric', month: '2-digit', day: '2-digit'})
                .formatToParts(new Date(2020, 11, 31)).filter(p => p.type !== 'literal').map(p => p.type);",
            vec![],
        )
        .await;
    let order: Vec<String> = serde_json::from_value(order).unwrap();
    let field = b.find(css).await;
    // Empty first: a field checks a typed day against the month it still
    // shows (31 typed into a 30-day month goes astray).
    b.clear(&field).await;
    b.click(&field).await;
    let (y, rest) = day.split_once('-').unwrap();
    let (m, d) = rest.split_once('-').unwrap();
    // Back to the first part, then the parts in order.
    let mut typed = keys::ARROW_LEFT.repeat(2);
    for part in &order {
        typed.push_str(match part.as_str() {
            "year" => y,
            "month" => m,
            _ => d,
        });
    }
    b.press_keys(&typed).await;
    assert_eq!(
        b.property(&field, "value").await,
        json!(day),
        "typing {day} into {css} ({order:?})"
    );
}

/// A desk's Norwegian name (as `web/labels.rs` gives it).
fn desk_nb(code: &str) -> &'static str {
    match code {
        "customer_center" => "Kundesenter",
        "markets" => "Markets",
        "private_banking" => "Private Banking",
        "corporate" => "Bedriftsmarked",
        _ => "ikke oppgitt",
    }
}

/// The page's tables fit: at 1280 px no cell's right edge is beyond the
/// main column or the window (nothing cut off); at 390 px the main column
/// does not scroll sideways (a wide table scrolls in its own box). Back to
/// 1280 px after.
pub(crate) async fn report_fits(b: &Browser) {
    let overflow = |width: u32| {
        format!(
            "const main = document.querySelector('main').getBoundingClientRect();
             const cut = [...document.querySelectorAll('main table th, main table td')]
                 .filter(c => c.getBoundingClientRect().right > Math.min(main.right, window.innerWidth) + 0.5)
                 .map(c => c.textContent.trim());
             const m = document.querySelector('main');
             return {{width: window.innerWidth, cut, page: m.scrollWidth - m.clientWidth, expected: {width}}};"
        )
    };
    for width in [1280u32, 390] {
        b.cmd(
            reqwest::Method::POST,
            "/goog/cdp/execute",
            json!({"cmd": "Emulation.setDeviceMetricsOverride",
                   "params": {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": false}}),
        )
        .await;
        let v = b.execute(&overflow(width), vec![]).await;
        assert_eq!(v["width"], json!(width), "{v}");
        assert!(
            v["page"].as_f64().unwrap() <= 0.5,
            "the main column scrolls sideways at {width} px: {v}"
        );
        if width == 1280 {
            assert_eq!(v["cut"], json!([]), "cells cut off at {width} px: {v}");
        }
    }
    b.cmd(
        reqwest::Method::POST,
        "/goog/cdp/execute",
        json!({"cmd": "Emulation.clearDeviceMetricsOverride", "params": {}}),
    )
    .await;
}

/// The QA report's total row, cell by cell.
async fn report_total(b: &Browser) -> Vec<String> {
    let v = b
        .execute(
            "return [...document.querySelector('main table.topics tfoot tr').cells].map(c => c.textContent.trim());",
            vec![],
        )
        .await;
    serde_json::from_value(v).unwrap()
}

async fn report_headings(b: &Browser) -> Vec<String> {
    let v = b
        .execute(
            "return [...document.querySelectorAll('main table.topics thead th')].map(c => c.textContent.trim());",
            vec![],
        )
        .await;
    serde_json::from_value(v).unwrap()
}

/// Follows the header's language link to `code` and waits for the page
/// in that language.
pub(crate) async fn switch_language(b: &Browser, code: &str) {
    b.click(&b.find(&format!("header a[hreflang={code}]")).await).await;
    b.wait_until(&format!("the page in {code}"), WAIT, || async move {
        (b.execute("return document.documentElement.lang;", vec![]).await == json!(code)).then_some(())
    })
    .await;
    eprintln!("the {code} link led to {}", path_of(&b.current_url().await));
}

/// Signs `user` in with the keyboard only: the user name field has the
/// focus when the page opens, Tab to the password, Enter; waits for the
/// user's first page, `lands`.
pub(crate) async fn sign_in(b: &Browser, svc: &Service, user: &str, lands: &str) {
    b.goto(&svc.url("/login")).await;
    wait_for_path(b, "/login").await;
    assert_clean(b, "login").await;
    assert_eq!(
        b.active_element().await,
        b.find("input[name=user]").await,
        "the user field has the focus"
    );
    b.press_keys(user).await;
    b.press_keys(keys::TAB).await;
    assert_eq!(b.active_element().await, b.find("input[name=password]").await);
    b.press_keys(PW).await;
    b.press_keys(keys::ENTER).await;
    wait_for_path(b, lands).await;
}

/// The recording plays: the browser fetches the WAV by ranges, decodes it
/// and its clock moves; the length is the recording's.
pub(crate) async fn play_recording(b: &Browser, svc: &Service) {
    let played = b
        .execute_async(
            "const done = arguments[arguments.length - 1];
             const a = document.querySelector('audio');
             const t0 = performance.now();
             const state = extra => Object.assign({
                 currentTime: a.currentTime, duration: a.duration, paused: a.paused,
                 readyState: a.readyState, networkState: a.networkState,
                 error: a.error && (a.error.code + ' ' + a.error.message)}, extra);
             const tick = () => {
                 if (a.error || a.currentTime > 0.5) { a.pause(); return done(state({})); }
                 if (performance.now() - t0 > 30000) return done(state({timedOut: true}));
                 setTimeout(tick, 50);
             };
             a.play().then(tick, e => done(state({playRefused: String(e)})));",
            vec![],
        )
        .await;
    assert_eq!(played["error"], Value::Null, "{played}");
    assert_eq!(played.get("playRefused"), None, "{played}");
    assert_eq!(played.get("timedOut"), None, "{played}");
    assert!(played["currentTime"].as_f64().unwrap() > 0.5, "{played}");
    let duration = played["duration"].as_f64().unwrap();
    assert!(
        (duration - svc.seconds).abs() < 0.05,
        "the browser says {duration} s, the recording is {} s",
        svc.seconds
    );
}

/// Presses Tab until the focused element matches `css`, as a keyboard user
/// gets there from where the focus is; the stops on the way (tag, type,
/// name or value). Fails past 60 stops.
async fn tab_to(b: &Browser, css: &str) -> Vec<String> {
    let mut path = Vec::new();
    loop {
        b.press_keys(keys::TAB).await;
        let f = b
            .execute(
                "const a = document.activeElement;
                 const v = a.getAttribute('value'), n = a.getAttribute('name'), t = a.getAttribute('type');
                 return {at: a.matches(arguments[0]),
                         stop: a.tagName.toLowerCase() + (t && t !== 'submit' ? '[' + t + ']' : '')
                               + (n && n !== 'action' ? ' ' + n : '') + (v && t !== 'hidden' && t !== 'date' ? '=' + v : '')};",
                vec![json!(css)],
            )
            .await;
        path.push(f["stop"].as_str().unwrap().to_owned());
        if f["at"] == json!(true) {
            return path;
        }
        assert!(path.len() < 60, "{css} is not reachable by Tab: {path:?}");
    }
}

/// The focused element shows it (the page's 3 px outline).
async fn assert_focus_visible(b: &Browser, what: &str) {
    let outline = b
        .execute(
            "const s = getComputedStyle(document.activeElement); return s.outlineStyle + ' ' + s.outlineWidth;",
            vec![],
        )
        .await;
    assert_eq!(outline, json!("solid 3px"), "focus on {what} is visible");
}

/// The cells' texts of the table row holding the first match of `css`.
async fn row_of(b: &Browser, css: &str) -> Vec<String> {
    let v = b
        .execute(
            "return [...arguments[0].closest('tr').cells].map(c => c.textContent.trim());",
            vec![b.find(css).await.to_json()],
        )
        .await;
    serde_json::from_value(v).unwrap()
}

/// The page is an error page answered with `status`: the browser logged
/// that one failed load and nothing else bad. Returns the message shown.
async fn error_page(b: &Browser, page: &str, status: u16) -> String {
    assert_eq!(b.status().await, status, "{page}");
    let (failed, other): (Vec<_>, Vec<_>) = b
        .browser_log()
        .await
        .into_iter()
        .partition(|e| e.message.contains(&format!("status of {status}")));
    assert!(failed.len() <= 1, "{page}: {failed:#?}");
    assert!(
        other
            .iter()
            .all(|e| e.level != "SEVERE" && !e.message.contains("Content Security Policy")),
        "{page}: the browser reported {other:#?}"
    );
    b.text(&b.find("main p[role=alert]").await).await
}

/// Signs in as the team lead and reads the topic dashboard: the chart is
/// drawn, and the fixture's one call — every count of it below k — shows
/// only as the suppression marker, in the tables and the chart alike; then
/// another period and desk, chosen by keyboard in the form; then the same
/// view as CSV, suppressed alike.
async fn dashboard_flow(tools: &Tools, svc: &Service) {
    let b = &Browser::start(tools).await;
    let k = u64::from(svc.edges.config.web.dashboard_k);
    assert!(k > 1, "k = {k}: the fixture's single call must be below it");
    let cid = opptak_domain::model::CallId::parse(&svc.call).unwrap();
    let qa = opptak_review::qa::Qa::open(&svc.edges.review()).await.unwrap();
    let indexed = qa.call(&cid).await.unwrap().expect("the call is indexed");
    let call = &indexed.row;

    sign_in(b, svc, LEAD, "/team").await;
    assert_clean(b, "lead's escalations").await;
    b.click(&b.find("header a[href='/dashboard']").await).await;
    wait_for_path(b, "/dashboard").await;
    assert_clean(b, "dashboard").await;
    assert_eq!(b.text(&b.find("h1").await).await, "Emner i samtalene");
    // Names, not codes: the topic from the taxonomy, the desk by name,
    // the week as "uke 48 2026", days as 07.12.2026.
    let week = call.day.parse::<opptak_review::dashboard::Day>().unwrap().week_label();
    let (year, w) = week.split_once("-W").unwrap();
    let week = format!("uke {} {year}", w.trim_start_matches('0'));
    let taxonomy = opptak_domain::summary::Taxonomy::default_taxonomy();
    let topic = taxonomy.get(call.topic()).expect("a taxonomy topic").label_nb.clone();
    let desk_name = desk_nb(&call.desk);
    let names = Names {
        topic: &topic,
        desk: desk_name,
    };
    dashboard_suppresses(b, k, &names, &week, "per uke", "alle avdelinger").await;
    shot(b, "dashboard-1").await;

    // The two weeks up to the call's day, by day, the call's desk only:
    // typed and chosen by keyboard.
    let from = call
        .day
        .parse::<opptak_review::dashboard::Day>()
        .unwrap()
        .plus(-13)
        .to_string();
    type_date(b, "input[name=from]", &from).await;
    type_date(b, "input[name=to]", &call.day).await;
    let path = tab_to(b, "select[name=period]").await;
    eprintln!("Tab order to the period: {}", path.join(" → "));
    assert_focus_visible(b, "the period list").await;
    b.press_keys(keys::ARROW_DOWN).await;
    assert_eq!(b.property(&b.active_element().await, "value").await, json!("day"));
    b.press_keys(keys::TAB).await;
    let desk = b.active_element().await;
    assert_eq!(desk, b.find("select[name=desk]").await);
    assert_focus_visible(b, "the desk list").await;
    let index = b
        .execute(
            "return [...arguments[0].options].findIndex(o => o.value === arguments[1]);",
            vec![desk.to_json(), json!(call.desk)],
        )
        .await;
    let index =
        usize::try_from(index.as_i64().unwrap()).unwrap_or_else(|_| panic!("no desk {} in the list", call.desk));
    b.press_keys(&keys::ARROW_DOWN.repeat(index)).await;
    assert_eq!(b.property(&desk, "value").await, json!(call.desk));
    // The channel (all) and the breakdown (by desk) as they are (issue 17).
    b.press_keys(keys::TAB).await;
    assert_eq!(b.active_element().await, b.find("select[name=channel]").await);
    b.press_keys(keys::TAB).await;
    assert_eq!(b.active_element().await, b.find("select[name=by]").await);
    b.press_keys(keys::TAB).await;
    assert_eq!(b.text(&b.active_element().await).await, "Vis");
    b.press_keys(keys::ENTER).await;
    let wanted = format!(
        "?from={from}&to={}&period=day&desk={}&channel=&by=desk",
        call.day, call.desk
    );
    b.wait_until("the dashboard by day for the desk", WAIT, || {
        let wanted = wanted.clone();
        async move { b.current_url().await.ends_with(&wanted).then_some(()) }
    })
    .await;
    assert_clean(b, "dashboard, by day").await;
    let form = b
        .execute(
            "const f = document.querySelector('main form'); return [f.period.value, f.desk.value];",
            vec![],
        )
        .await;
    assert_eq!(form, json!(["day", call.desk]), "the form keeps the choice");
    let (y, rest) = call.day.split_once('-').unwrap();
    let (m, d) = rest.split_once('-').unwrap();
    let day_nb = format!("{d}.{m}.{y}");
    dashboard_suppresses(b, k, &names, &day_nb, "per dag", &format!("avdeling {desk_name}")).await;
    shot(b, "dashboard-2-day-desk").await;

    // An empty range: the form again (400), in Norwegian, with the field
    // marked and what was chosen kept; in English by the header's link.
    b.goto(&svc.url(&format!(
        "/dashboard?from={}&to={from}&period=day&desk={}",
        call.day, call.desk
    )))
    .await;
    wait_for_path(b, "/dashboard").await;
    assert_eq!(b.status().await, 400);
    assert_eq!(
        b.text(&b.find("#from-error").await).await,
        "Tomt tidsrom: fra-datoen er etter til-datoen."
    );
    let kept = b
        .execute(
            "const f = document.querySelector('main form');
             return [f.from.value, f.to.value, f.period.value, f.desk.value, f.from.getAttribute('aria-invalid')];",
            vec![],
        )
        .await;
    assert_eq!(kept, json!([call.day, from, "day", call.desk, "true"]), "the form kept");
    assert!(b
        .text(&b.find("div.error-summary").await)
        .await
        .contains("Oversikten ble ikke vist"));
    shot(b, "dashboard-3-empty-range").await;
    switch_language(b, "en").await;
    assert_eq!(
        b.text(&b.find("#from-error").await).await,
        "Empty range: the from date is after the to date."
    );
    assert_eq!(b.text(&b.find("h1").await).await, "Call topics");
    switch_language(b, "nb").await;
    b.goto(&svc.url(&format!(
        "/dashboard?from={from}&to={}&period=day&desk={}",
        call.day, call.desk
    )))
    .await;
    wait_for_path(b, "/dashboard").await;

    // The CSV of what is shown: every count at least k, or suppressed; the
    // call's own cells suppressed.
    let link = b.find("main a[download]").await;
    let url = b.property(&link, "href").await.as_str().unwrap().to_owned();
    let query = url.split_once('?').map(|(_, q)| q.to_owned()).unwrap_or_default();
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(
        [param("from"), param("to"), param("period"), param("desk")],
        [&from, &call.day, "day", &call.desk],
        "the CSV of the view shown"
    );
    let to = &call.day;
    let csv = download_csv(b, &url, &format!("opptak-topics-{from}-{to}-day.csv")).await;
    let mut lines = csv.split_terminator("\r\n");
    assert_eq!(lines.next(), Some("period,desk,topic,count"));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    for r in &rows {
        assert_eq!(r.len(), 4, "{r:?}");
        assert!(published(r[3], k), "a count below k = {k} in the CSV: {r:?}");
    }
    let suppressed = |period: &str, desk: &str, topic: &str| {
        rows.iter()
            .find(|r| r[0] == period && r[1] == desk && r[2] == topic)
            .unwrap_or_else(|| panic!("no CSV line for {period},{desk},{topic}:\n{csv}"))[3]
            == opptak_review::dashboard::SUPPRESSED
    };
    let range = format!("{from}/{to}");
    let topic = call.topic();
    assert!(suppressed(&call.day, &call.desk, topic), "the call's day");
    assert!(suppressed(&range, &call.desk, topic), "the call's desk and topic");
    assert!(
        suppressed(&range, opptak_review::dashboard::ALL, opptak_review::dashboard::ALL),
        "the total"
    );

    let log = svc.edges.audit().await.unwrap().entries(1, 1000).await.unwrap();
    let reads: Vec<&str> = log
        .iter()
        .filter(|e| e.event.actor == LEAD && e.event.action == "dashboard.read" && e.event.outcome == "allowed")
        .map(|e| e.event.subject.as_str())
        .collect();
    assert!(
        reads.iter().any(|s| s.ends_with(&format!(
            "week {all} {all} by-desk",
            all = opptak_review::dashboard::ALL
        ))) && reads
            .iter()
            .filter(|s| s.ends_with(&format!("day {} {} by-desk", call.desk, opptak_review::dashboard::ALL)))
            .count()
            == 3,
        "every query audited with its parameters (the form, the page again, the CSV): {reads:?}"
    );
}

/// Whether a dashboard number may be shown: the marker, a dash (no
/// trend), zero, or at least `k` (a trend's sign aside).
fn published(v: &str, k: u64) -> bool {
    v == opptak_review::dashboard::SUPPRESSED
        || v == "–"
        || v.trim_start_matches(['+', '-'])
            .parse::<u64>()
            .is_ok_and(|n| n == 0 || n >= k)
}

/// The fixture's call's topic and desk by name.
struct Names<'a> {
    topic: &'a str,
    desk: &'a str,
}

/// The dashboard page as [`dashboard_flow`] expects it for the fixture's
/// one call (counted in the period labelled `period`): the chart drawn and
/// named for the view (`per`, `desk`), no count below `k` in a table or in
/// the chart, the call's cells showing the marker, the marker explained.
async fn dashboard_suppresses(b: &Browser, k: u64, call: &Names<'_>, period: &str, per: &str, desk: &str) {
    let page = b
        .execute(
            "const svg = document.querySelector('main figure svg[role=img]');
             const r = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
             const cells = t => [...t.rows].map(r => [...r.cells].map(c => c.textContent.trim()));
             const tables = [...document.querySelectorAll('main table')];
             return {
                 size: [r.width, r.height],
                 label: svg && svg.getAttribute('aria-label'),
                 title: svg && svg.querySelector('title').textContent,
                 hatched: svg ? svg.querySelectorAll('rect[fill^=\"url(#opptak-dashboard-hatch\"]').length : 0,
                 points: svg ? [...svg.querySelectorAll('circle > title')].map(t => t.textContent) : [],
                 tables: tables.map(cells),
                 suppressed: [...document.querySelectorAll('main table td')]
                     .filter(c => c.textContent.trim() === arguments[0])
                     .every(c => c.title === 'skjult'),
                 note: document.querySelector('main p.muted').textContent,
             };",
            vec![json!(opptak_review::dashboard::SUPPRESSED)],
        )
        .await;
    let size: [f64; 2] = serde_json::from_value(page["size"].clone()).unwrap();
    assert!(size[0] > 100.0 && size[1] > 50.0, "the chart is drawn: {page}");
    let label = page["label"].as_str().unwrap_or_default();
    assert!(
        label.contains(per) && label.contains(desk),
        "the chart's name: {label:?}"
    );
    assert_eq!(page["title"], json!(label), "the chart's title");
    assert!(
        page["hatched"].as_u64().unwrap() >= 1,
        "a suppressed period is marked in the chart: {page}"
    );
    for p in page["points"].as_array().unwrap() {
        let v = p.as_str().unwrap().rsplit(": ").next().unwrap();
        assert!(published(v, k), "a point below k = {k} in the chart: {p}");
    }
    let tables: Vec<Vec<Vec<String>>> = serde_json::from_value(page["tables"].clone()).unwrap();
    assert!(tables.len() >= 2, "{tables:?}");
    for t in &tables {
        for row in &t[1..] {
            for v in &row[1..] {
                assert!(published(v, k), "a count below k = {k}: {v:?} in {row:?}");
            }
        }
    }
    assert_eq!(page["suppressed"], json!(true), "the marker says what it is");
    // The call in the topic × period table (first) and the desk × topic
    // table (last): the marker where its 1 would be.
    let at = |t: &Vec<Vec<String>>, row: &str, column: &str| -> String {
        let c = t[0]
            .iter()
            .position(|h| h == column)
            .unwrap_or_else(|| panic!("no column {column} in {:?}", t[0]));
        let r = t
            .iter()
            .find(|r| r[0] == row)
            .unwrap_or_else(|| panic!("no row {row} in {t:?}"));
        r[c].clone()
    };
    assert_eq!(at(&tables[0], call.topic, period), opptak_review::dashboard::SUPPRESSED);
    assert_eq!(
        at(tables.last().unwrap(), call.desk, call.topic),
        opptak_review::dashboard::SUPPRESSED
    );
    let note = page["note"].as_str().unwrap();
    assert!(
        note.starts_with(opptak_review::dashboard::SUPPRESSED) && note.contains(&format!("færre enn {k} samtaler")),
        "{note}"
    );
}

/// A client that shows redirects instead of following them.
pub(crate) fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Fetches the CSV at `url` as the browser would, with its cookies (a
/// headless browser saves a download without a word): a `text/csv`
/// attachment named `filename`; its text.
async fn download_csv(b: &Browser, url: &str, filename: &str) -> String {
    let resp = no_redirects()
        .get(url)
        .header(reqwest::header::COOKIE, b.cookie_header().await)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{url}");
    let header = |h: &str| {
        resp.headers()
            .get(h)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(header("content-type"), "text/csv; charset=utf-8");
    assert_eq!(
        header("content-disposition"),
        format!("attachment; filename=\"{filename}\"")
    );
    resp.text().await.unwrap()
}

/// The roles that never see content. The auditor reads the log newest
/// first (the flows above are in it, without content), filters it by
/// action, downloads the filtered entries as CSV, verifies the chain, and
/// reads the log in English; the admin adds a team and a user (team from
/// the list), disables a user through the confirmation page, enables them
/// again (in English), changes a role and team with confirmation, and has
/// no disable button on their own row. Neither can open the call.
async fn audit_and_admin_flow(tools: &Tools, svc: &Service) {
    let call_path = format!("/calls/{}", svc.call);
    let b = &Browser::start(tools).await;
    let set = |css: &'static str, value: &'static str| async move {
        b.execute(
            "const e = document.querySelector(arguments[0]); e.value = arguments[1]; return e.value;",
            vec![json!(css), json!(value)],
        )
        .await
    };
    let rows_attr = |attr: &'static str| async move {
        let v = b
            .execute(
                "return [...document.querySelectorAll('table.log tbody tr')].map(r => r.querySelector('[' + arguments[0] + ']') ? r.querySelector('[' + arguments[0] + ']').getAttribute(arguments[0]) : r.getAttribute(arguments[0]));",
                vec![json!(attr)],
            )
            .await;
        serde_json::from_value::<Vec<String>>(v).unwrap()
    };
    sign_in(b, svc, AUDITOR, "/audit").await;
    assert_clean(b, "audit log").await;
    let seqs: Vec<u64> = rows_attr("data-seq").await.iter().map(|s| s.parse().unwrap()).collect();
    assert!(
        !seqs.is_empty() && seqs.windows(2).all(|w| w[0] > w[1]),
        "newest first: {seqs:?}"
    );
    let count = b.text(&b.find("#log-count").await).await;
    assert!(count.starts_with("Viser 1–"), "{count}");
    let text = b.text(&b.find("main table").await).await;
    assert!(!text.contains("savings plan"), "no content in the log");
    assert!(!text.contains("audit.read"), "actions by name: {text}");
    shot(b, "audit-1-log").await;

    // Filter by action: the scores QA gave in its flow.
    assert_eq!(set("#f-action", "qa.score").await, json!("qa.score"));
    b.click(&b.find("form.filters button[type=submit]").await).await;
    b.wait_until("the filtered log", WAIT, || async move {
        b.current_url().await.contains("action=qa.score").then_some(())
    })
    .await;
    assert_clean(b, "audit log, filtered").await;
    let actions = rows_attr("data-action").await;
    assert!(
        !actions.is_empty() && actions.iter().all(|a| a == "qa.score"),
        "{actions:?}"
    );
    assert!(b
        .text(&b.find("main table").await)
        .await
        .contains("Vurderte et utvalgt utkast"));
    shot(b, "audit-2-filtered").await;
    let href = b.attribute(&b.find("a#csv").await, "href").await.unwrap();
    assert_eq!(href, "/audit.csv?action=qa.score");
    let csv = download_csv(b, &svc.url(&href), "audit-log.csv").await;
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines.len(),
        actions.len() + 1,
        "the CSV holds what the page shows: {csv}"
    );
    assert!(lines[1..].iter().all(|l| l.contains(",qa.score,")), "{csv}");

    b.click(&b.find("form[action='/audit/verify'] button[type=submit]").await)
        .await;
    wait_for_path(b, "/audit/verify").await;
    assert_clean(b, "audit verification").await;
    assert_eq!(b.text(&b.find("main p[role=status]").await).await, "Kjeden er intakt.");
    assert!(b
        .text(&b.find("#checkpoints-explained").await)
        .await
        .contains("signert"));
    shot(b, "audit-3-verified").await;

    // In English: the same log, its labels in English.
    b.goto(&svc.url("/audit?action=transcript.read")).await;
    wait_for_path(b, "/audit").await;
    switch_language(b, "en").await;
    assert_clean(b, "audit log, English").await;
    assert_eq!(b.text(&b.find("main h1").await).await, "Audit log");
    assert!(b.text(&b.find("#log-count").await).await.starts_with("Showing 1–"));
    let text = b.text(&b.find("main table").await).await;
    assert!(text.contains("Read a call (transcript and draft)"), "{text}");
    assert!(
        text.contains("own call") && text.contains("allowed"),
        "reasons and outcomes in English: {text}"
    );
    shot(b, "audit-4-log-en").await;
    b.goto(&svc.url(&call_path)).await;
    error_page(b, "the auditor opens a call", 403).await;

    let b = &Browser::start(tools).await;
    let set = |css: &'static str, value: &'static str| async move {
        b.execute(
            "const e = document.querySelector(arguments[0]); e.value = arguments[1]; return e.value;",
            vec![json!(css), json!(value)],
        )
        .await
    };
    let row = |user: &'static str| async move { b.text(&b.find(&format!("tr[data-user='{user}']")).await).await };
    // Signs in by keyboard as `sign_in` does, wherever the admin lands.
    b.goto(&svc.url("/login")).await;
    wait_for_path(b, "/login").await;
    b.press_keys(ADMIN).await;
    b.press_keys(keys::TAB).await;
    b.press_keys(PW).await;
    b.press_keys(keys::ENTER).await;
    b.wait_until("the admin signed in", WAIT, || async move {
        (path_of(&b.current_url().await) != "/login").then_some(())
    })
    .await;
    b.click(&b.find("header a[href='/admin/users']").await).await;
    wait_for_path(b, "/admin/users").await;
    assert_clean(b, "users").await;
    assert!(
        b.try_find(&format!(
            "tr[data-user='{ADMIN}'] form[action='/admin/users/confirm'] input[value=disable]"
        ))
        .await
        .is_none(),
        "no disable button on the admin's own row"
    );

    // A team, then a user put in a team picked from the list.
    b.send_keys(&b.find("#t-team").await, "bergen").await;
    b.click(&b.find("form.add-team button[type=submit]").await).await;
    wait_for(b, "the team added", "p.notice").await;
    b.send_keys(&b.find("#u-user").await, "adv-nina").await;
    b.send_keys(&b.find("#u-name").await, "Nina Nordmann").await;
    assert_eq!(set("#u-team", "oslo").await, json!("oslo"), "oslo is a known team");
    assert_eq!(set("#u-team", "osl").await, json!(""), "a typo is no option");
    set("#u-team", "oslo").await;
    b.send_keys(&b.find("#u-password").await, PW).await;
    b.click(&b.find("form.add-user button[type=submit]").await).await;
    wait_for(b, "the new user listed", "tr[data-user='adv-nina']").await;
    assert!(row("adv-nina").await.contains("Nina Nordmann"));
    assert_clean(b, "users, after adding").await;
    shot(b, "admin-1-users").await;

    // Disable, through the confirmation page.
    b.click(&b.find(&format!("button[aria-label='Deaktiver {AUDITOR}']")).await)
        .await;
    wait_for_path(b, "/admin/users/confirm").await;
    assert_clean(b, "confirm disable").await;
    assert_eq!(b.text(&b.find("main h1").await).await, format!("Deaktivere {AUDITOR}?"));
    shot(b, "admin-2-confirm-disable").await;
    b.click(&b.find("form.confirm button[type=submit]").await).await;
    wait_for_path(b, "/admin/users").await;
    assert!(row(AUDITOR).await.contains("deaktivert"), "{}", row(AUDITOR).await);

    // Enable again (the undo), in English.
    switch_language(b, "en").await;
    b.click(&b.find(&format!("button[aria-label='Enable again: {AUDITOR}']")).await)
        .await;
    wait_for_path(b, "/admin/users/confirm").await;
    assert_clean(b, "confirm enable, English").await;
    assert_eq!(
        b.text(&b.find("main h1").await).await,
        format!("Enable {AUDITOR} again?")
    );
    shot(b, "admin-3-confirm-enable-en").await;
    b.click(&b.find("form.confirm button[type=submit]").await).await;
    wait_for_path(b, "/admin/users").await;
    assert!(row(AUDITOR).await.contains("active"), "{}", row(AUDITOR).await);
    switch_language(b, "nb").await;

    // Role and team, the team from the list, with confirmation.
    b.click(&b.find(&format!("a[aria-label='Endre rolle/team for {LEAD}']")).await)
        .await;
    wait_for_path(b, &format!("/admin/users/{LEAD}/edit")).await;
    assert_clean(b, "edit user").await;
    set("#e-role", "advisor").await;
    assert_eq!(set("#e-team", "bergen").await, json!("bergen"));
    shot(b, "admin-4-edit").await;
    b.click(&b.find("form.edit-user button[type=submit]").await).await;
    wait_for_path(b, "/admin/users/confirm").await;
    assert_clean(b, "confirm change").await;
    let said = b.text(&b.find("main").await).await;
    assert!(
        said.contains("Rolle: teamleder → rådgiver") && said.contains("Team: oslo → bergen"),
        "{said}"
    );
    shot(b, "admin-5-confirm-change").await;
    b.click(&b.find("form.confirm button[type=submit]").await).await;
    wait_for_path(b, "/admin/users").await;
    let lise = row(LEAD).await;
    assert!(lise.contains("rådgiver") && lise.contains("bergen"), "{lise}");
    b.goto(&svc.url(&call_path)).await;
    error_page(b, "the admin opens a call", 403).await;
}
