//! The review service over real HTTP (issue 6, first slice): sign-in, the
//! advisor's queue, the draft page, and every role trying what it must not —
//! another advisor's call, a team lead outside the team, QA without a
//! sample, an auditor and an admin reading content, compliance without a
//! reason, a forged session, a form post without its CSRF token — each
//! refused with the right status and audited; a transcript holding
//! `<script>` is rendered inert.

use crate::common;

use common::{wait_for_recordings, Backend, Env};
use opptak::app::{RunningKi, RunningRecorder};
use opptak_domain::time::Clock;
use opptak_ki::asr::{AsrError, SpeechRecognizer, Transcript, Utterance};
use opptak_review::identity::{Identity, Role};
use std::sync::Arc;
use std::time::Duration;

const PW: &str = "correct horse battery staple";
const HOSTILE: &str = "<script>alert('x')</script> I want to move my mortgage";

/// Hears the same hostile line in every utterance: the only way to get
/// markup into a transcript (no speech model writes tags).
struct Hostile;

#[async_trait::async_trait]
impl SpeechRecognizer for Hostile {
    async fn transcribe(&self, u: &Utterance) -> Result<Transcript, AsrError> {
        let secs = u.pcm16.len() as f32 / 2.0 / u.sample_rate_hz as f32;
        Ok(Transcript {
            text: HOSTILE.into(),
            segments: vec![opptak_ki::asr::Segment {
                start_s: 0.0,
                end_s: secs,
                text: HOSTILE.into(),
            }],
        })
    }
    fn describe(&self) -> String {
        "hostile test recognizer".into()
    }
}

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    /// Signs in through the form (which checks the session cookie's flags).
    async fn login(&self, user: &str, password: &str) -> (reqwest::StatusCode, Option<String>) {
        common::web_sign_in(&self.http, &self.base, user, password).await
    }

    async fn get(&self, path: &str, cookie: Option<&str>) -> (reqwest::StatusCode, reqwest::header::HeaderMap, String) {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        let r = req.send().await.unwrap();
        let (s, h) = (r.status(), r.headers().clone());
        (s, h, r.text().await.unwrap())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_gets_exactly_what_it_may() {
    let env = Env::new(&Backend::Embedded, "web");
    let clock = Arc::new(opptak_domain::time::ManualClock::new(
        opptak_domain::time::SystemClock.now_us(),
    ));
    let edges = env.edges().await.with_clock(clock.clone()).unwrap();
    let id = Identity::open(&edges.review()).await.unwrap();
    for (user, role, team) in [
        ("adv-anne", Role::Advisor, "oslo"),
        ("adv-bo", Role::Advisor, "oslo"),
        ("lead-lise", Role::TeamLead, "oslo"),
        ("lead-per", Role::TeamLead, "bergen"),
        ("qa-kari", Role::Qa, "qa"),
        ("co-cato", Role::Compliance, "compliance"),
        ("aud-astrid", Role::Auditor, "audit"),
        ("admin-ola", Role::Admin, "it"),
    ] {
        id.add_user("setup", user, user, role, team, PW).await.unwrap();
    }

    // One KI call of adv-anne, transcribed and drafted.
    let mut sample = opptak::demo::samples(&opptak::demo::default_samples_dir())
        .unwrap()
        .into_iter()
        .find(|s| s.call.call_id == "demo-0003")
        .unwrap();
    sample.call.started.advisor_id = "adv-anne".into();
    let call = sample.call.call_id.clone();
    let recorder = RunningRecorder::spawn(edges.recorder());
    let ki = RunningKi::spawn(&edges, true, true, Some(Arc::new(Hostile)))
        .await
        .unwrap();
    common::publish_events(&edges, &sample.call.events(100)).await;
    wait_for_recordings(&edges, 1, 60).await;
    let cid = opptak_domain::model::CallId::parse(&call).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !edges
        .meta
        .artifacts(&cid)
        .await
        .unwrap()
        .iter()
        .any(|a| a.kind == "draft")
    {
        assert!(tokio::time::Instant::now() < deadline, "no draft");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ki.stop().await;
    recorder.stop().await.unwrap();

    // The service on a free port.
    let server = common::WebService::start(&edges).await;
    let base = server.base.clone();
    let c = Client {
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        base,
    };

    // Not signed in, wrong password, forged session.
    let (s, h, _) = c.get("/queue", None).await;
    assert_eq!(s, 303);
    assert_eq!(h.get("location").unwrap(), "/login");
    assert_eq!(c.login("adv-anne", "not the password").await.0, 401);
    assert_eq!(
        c.get(&format!("/calls/{call}"), Some("opptak_session=forged")).await.0,
        401
    );

    // Sign-in: a post without the form's double-submit token (login CSRF)
    // is refused; repeated failures for one name get 429, audited.
    let r = c
        .http
        .post(format!("{}/login", c.base))
        .form(&[("user", "adv-anne"), ("password", PW)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    for _ in 0..5 {
        assert_eq!(c.login("guess-me", "wrong password").await.0, 401);
    }
    assert_eq!(c.login("guess-me", "wrong password").await.0, 429);

    // Language: Norwegian by default, English by Accept-Language or the
    // /lang switch (a cookie), and never an open redirect.
    let (_, _, body) = c.get("/login", None).await;
    assert!(body.contains("lang=\"nb\"") && body.contains("Logg inn"), "{body}");
    let r = c
        .http
        .get(format!("{}/login", c.base))
        .header("accept-language", "en-GB,en;q=0.9")
        .send()
        .await
        .unwrap();
    assert!(r.text().await.unwrap().contains("Sign in"));
    let (s, h, _) = c.get("/lang/en?back=//evil.example/", None).await;
    assert_eq!(s, 303);
    assert_eq!(h.get("location").unwrap(), "/");
    assert!(h
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("opptak_lang=en"));
    let (_, _, body) = c.get("/login", Some("opptak_lang=en")).await;
    assert!(body.contains("lang=\"en\"") && body.contains("User name"), "{body}");

    // The advisor: the queue, and the draft with the transcript, inert.
    let (s, anne) = c.login("adv-anne", PW).await;
    assert_eq!(s, 303);
    let anne = anne.unwrap();
    let (s, _, body) = c.get("/queue", Some(&anne)).await;
    assert_eq!(s, 200);
    assert!(body.contains(&format!("/calls/{call}")), "{body}");
    let (s, h, body) = c.get(&format!("/calls/{call}"), Some(&anne)).await;
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("&lt;script&gt;"), "{body}");
    assert!(!body.contains("<script>"), "markup from a transcript must be inert");
    assert!(h
        .get("content-security-policy")
        .unwrap()
        .to_str()
        .unwrap()
        .contains("default-src 'none'"));
    assert_eq!(h.get("cache-control").unwrap(), "no-store");

    // Everyone else.
    for (user, query, want) in [
        ("adv-bo", "", 403),
        ("lead-lise", "", 200),
        ("lead-per", "", 403),
        ("qa-kari", "", 200),
        ("aud-astrid", "", 403),
        ("admin-ola", "", 403),
        ("co-cato", "", 400),
        ("co-cato", "?reason=complaint%20FKN-2026-0203", 200),
    ] {
        let (_, cookie) = c.login(user, PW).await;
        let (s, _, body) = c.get(&format!("/calls/{call}{query}"), cookie.as_deref()).await;
        assert_eq!(s.as_u16(), want, "{user}{query}: {body}");
        if want != 200 {
            assert!(!body.contains("mortgage"), "{user} saw content");
        }
    }
    // Another advisor's queue does not list the call.
    let (_, bo) = c.login("adv-bo", PW).await;
    let (_, _, body) = c.get("/queue", bo.as_deref()).await;
    assert!(!body.contains(&call));
    drop(bo);

    // Escalation: the team lead's queue gets the draft once it waited too long.
    let (_, lise) = c.login("lead-lise", PW).await;
    let (_, _, body) = c.get("/queue", lise.as_deref()).await;
    assert!(!body.contains(&call), "not overdue yet");
    clock.set(clock.now_us() + 25 * 3_600_000_000);
    let (_, lise) = c.login("lead-lise", PW).await;
    let (_, _, body) = c.get("/queue", lise.as_deref()).await;
    assert!(body.contains(&call) && body.contains("eskalert"), "{body}");
    let (_, per) = c.login("lead-per", PW).await;
    assert!(
        !c.get("/queue", per.as_deref()).await.2.contains(&call),
        "not that lead's team"
    );
    let (_, anne) = c.login("adv-anne", PW).await; // the old session expired
    let anne = anne.unwrap();
    let (_, bo) = c.login("adv-bo", PW).await;

    // Audio: the recording as WAV, whole or by byte range, same rules.
    let get_audio = |cookie: Option<String>, range: Option<&'static str>| {
        let mut r = c.http.get(format!("{}/calls/{call}/audio", c.base));
        if let Some(ck) = cookie {
            r = r.header("cookie", ck);
        }
        if let Some(rg) = range {
            r = r.header("range", rg);
        }
        r.send()
    };
    let full = get_audio(Some(anne.clone()), None).await.unwrap();
    assert_eq!(full.status(), 200);
    assert_eq!(full.headers().get("accept-ranges").unwrap(), "bytes");
    let full = full.bytes().await.unwrap().to_vec();
    assert_eq!(&full[..4], b"RIFF");
    assert_eq!(
        &full[44..],
        &sample.call.expected_pcm()[..],
        "the recording, sample for sample"
    );
    for (range, from, to) in [
        ("bytes=0-99", 0, 100),
        ("bytes=40-70001", 40, 70_002),
        ("bytes=12345-", 12_345, full.len()),
    ] {
        let r = get_audio(Some(anne.clone()), Some(range)).await.unwrap();
        assert_eq!(r.status(), 206, "{range}");
        let cr = r.headers().get("content-range").unwrap().to_str().unwrap().to_owned();
        assert_eq!(cr, format!("bytes {from}-{}/{}", to - 1, full.len()));
        assert_eq!(r.bytes().await.unwrap().as_ref(), &full[from..to], "{range}");
    }
    let big = get_audio(Some(anne.clone()), Some("bytes=0-999999999")).await.unwrap();
    assert_eq!(big.status(), 206);
    let big = big.bytes().await.unwrap();
    assert!(big.len() <= 4 << 20 && big.as_ref() == &full[..big.len()]);
    let tail = get_audio(Some(anne.clone()), Some("bytes=-10")).await.unwrap();
    assert_eq!(tail.bytes().await.unwrap().as_ref(), &full[full.len() - 10..]);
    assert_eq!(
        get_audio(Some(anne.clone()), Some("bytes=99999999-"))
            .await
            .unwrap()
            .status(),
        416
    );
    assert_eq!(get_audio(bo.clone(), None).await.unwrap().status(), 403);
    // Compliance listens only with a stated reason, which the log keeps.
    let (_, cato) = c.login("co-cato", PW).await;
    assert_eq!(get_audio(cato.clone(), None).await.unwrap().status(), 400);
    let r = c
        .http
        .get(format!(
            "{}/calls/{call}/audio?reason=complaint%20FKN-2026-0203",
            c.base
        ))
        .header("cookie", cato.clone().unwrap())
        .header("range", "bytes=0-99")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    let (_, astrid_) = c.login("aud-astrid", PW).await;
    assert_eq!(
        get_audio(astrid_, None).await.unwrap().status(),
        403,
        "an auditor never listens"
    );
    assert_eq!(get_audio(None, None).await.unwrap().status(), 401);

    // Decisions: only the advisor, only with the form's token; edits are
    // kept as versions; approval makes the 5-year record and its event.
    let (_, _, page) = c.get(&format!("/calls/{call}"), Some(&anne)).await;
    let token = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let decide = |cookie: &str, csrf: &str, action: &str, text: &str| {
        c.http
            .post(format!("{}/calls/{call}/decide", c.base))
            .header("cookie", cookie)
            .form(&[("csrf", csrf), ("action", action), ("text", text)])
            .send()
    };
    assert_eq!(decide(&anne, "forged", "approve", "x").await.unwrap().status(), 403);
    let bo_page = c.get(&format!("/calls/{call}"), bo.as_deref()).await.2;
    assert!(!bo_page.contains("decide"));
    assert_eq!(
        decide(bo.as_deref().unwrap(), "forged", "approve", "x")
            .await
            .unwrap()
            .status(),
        403
    );
    let edited = "The customer wants to move the mortgage; the advisor sends an offer.";
    assert_eq!(decide(&anne, &token, "edit", edited).await.unwrap().status(), 303);
    assert_eq!(decide(&anne, &token, "approve", edited).await.unwrap().status(), 303);
    assert_eq!(
        decide(&anne, &token, "reject", "too late").await.unwrap().status(),
        409,
        "closed"
    );
    let review = opptak_review::review::Review::open(&edges.review()).await.unwrap();
    let versions = review.versions(&cid).await.unwrap();
    let kinds: Vec<&str> = versions.iter().map(|v| v.kind.as_str()).collect();
    assert_eq!(kinds, ["edit", "approved"]);
    assert!(versions
        .iter()
        .all(|v| v.author == "adv-anne" && v.text.as_deref() == Some(edited)));
    // The page shows each version's change against the one before.
    let (_, _, page) = c.get(&format!("/calls/{call}"), Some(&anne)).await;
    assert!(page.contains("<ins>") && page.contains("offer."), "{page}");
    assert!(!page.contains("name=\"action\""), "closed: no more decisions offered");
    let record = opptak_review::review::read_approved(&edges.review(), &cid)
        .await
        .unwrap();
    assert_eq!(record["summary"], edited);
    assert_eq!(record["approved_by"], "adv-anne");
    let rows = edges.meta.retention_of(&cid).await.unwrap();
    assert!(
        rows.iter()
            .any(|r| r.kind == "approved-summary" && r.class == "record-5y"),
        "{rows:?}"
    );
    let mut sub = edges
        .bus
        .subscribe("web-test", &[opptak_review::review::summaries_topic(&edges.review())])
        .await
        .unwrap();
    let got = sub.poll(10, Duration::from_secs(2)).await.unwrap();
    assert_eq!(got.len(), 1);
    let ev = <opptak_proto::v1::SummaryApproved as opptak_proto::Message>::decode(got[0].payload.as_ref()).unwrap();
    assert_eq!(ev.call_id, call);
    assert!(
        !got[0].payload.windows(12).any(|w| w == &edited.as_bytes()[..12]),
        "sealed on the bus"
    );

    // The JSON API: the same rules, the same audit log.
    let api = |path: &str, cookie: Option<&str>, bearer: Option<&str>| {
        let mut r = c.http.get(format!("{}{path}", c.base));
        if let Some(cookie) = cookie {
            r = r.header("cookie", cookie);
        }
        if let Some(b) = bearer {
            r = r.bearer_auth(b);
        }
        r.send()
    };
    let r = api(&format!("/api/v1/calls/{call}"), Some(&anne), None).await.unwrap();
    assert_eq!(r.status(), 200);
    let view: serde_json::Value = r.json().await.unwrap();
    assert_eq!(view["reason"], "review");
    assert_eq!(view["closed"], true);
    assert_eq!(view["versions"].as_array().unwrap().len(), 2);
    assert!(
        view["transcript"][0]["text"].as_str().unwrap().contains("<script>"),
        "JSON carries the text as data"
    );
    let r = api(&format!("/api/v1/calls/{call}"), bo.as_deref(), None)
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["status"], 403);
    let r = api("/api/v1/queue", None, Some("not.a.jwt")).await.unwrap();
    assert_eq!(r.status(), 401, "no OIDC issuer configured: every token refused");
    assert!(r.headers().get("www-authenticate").is_some());
    assert_eq!(api("/api/v1/queue", None, None).await.unwrap().status(), 401);
    let queue: serde_json::Value = api("/api/v1/queue", Some(&anne), None)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(queue, serde_json::json!([]), "approved: nothing waits");
    let post_decision = |csrf: Option<&str>| {
        let mut r = c
            .http
            .post(format!("{}/api/v1/calls/{call}/decision", c.base))
            .header("cookie", &anne)
            .json(&serde_json::json!({"action": "reject", "text": "late"}));
        if let Some(t) = csrf {
            r = r.header("x-csrf-token", t);
        }
        r.send()
    };
    assert_eq!(
        post_decision(None).await.unwrap().status(),
        403,
        "a session needs X-CSRF-Token"
    );
    assert_eq!(
        post_decision(Some(&token)).await.unwrap().status(),
        409,
        "already approved"
    );
    let doc: serde_json::Value = api("/api/openapi.json", None, None)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["paths"]["/api/v1/calls/{id}/decision"]["post"].is_object());

    // QA: the call is sampled (the first of its stratum always is); the QA
    // reviewer scores it through the call page's form, and the report counts
    // it, in the page and as CSV. Advisors may not score nor read the report.
    let (_, kari) = c.login("qa-kari", PW).await;
    let kari = kari.unwrap();
    let (s, _, body) = c.get("/qa", Some(&kari)).await;
    assert_eq!(s, 200, "{body}");
    assert!(body.contains(&format!("/calls/{call}")), "{body}");
    assert_eq!(c.get("/qa", Some(&anne)).await.0, 403);
    let (_, _, page) = c.get(&format!("/calls/{call}"), Some(&kari)).await;
    assert!(page.contains(&format!("/calls/{call}/qa")), "the assessment form");
    let qa_csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let assess = |cookie: &str, csrf: &str, flag: &str, note: &str| {
        c.http
            .post(format!("{}/calls/{call}/qa", c.base))
            .header("cookie", cookie)
            .form(&[
                ("csrf", csrf),
                ("correctness", "4"),
                ("relevance", "5"),
                ("quality", "3"),
                ("flag", flag),
                ("note", note),
            ])
            .send()
    };
    assert_eq!(assess(&kari, "forged", "", "").await.unwrap().status(), 403);
    assert_eq!(
        assess(&kari, &qa_csrf, "unexpected", "").await.unwrap().status(),
        400,
        "a flag needs a note"
    );
    assert_eq!(
        assess(&anne, &token, "", "").await.unwrap().status(),
        403,
        "advisors do not score"
    );
    let note = "The summary repeats a markup string from the transcript.";
    assert_eq!(assess(&kari, &qa_csrf, "unexpected", note).await.unwrap().status(), 303);
    let (_, _, page) = c.get(&format!("/calls/{call}"), Some(&kari)).await;
    assert!(page.contains(note) && page.contains("uventet innhold"), "{page}");
    let (s, _, report) = c.get("/qa/report", Some(&kari)).await;
    assert_eq!(s, 200);
    assert!(report.contains("Totalt"), "{report}");
    let r = c
        .http
        .get(format!("{}/qa/report.csv", c.base))
        .header("cookie", &kari)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers().get("content-type").unwrap(), "text/csv; charset=utf-8");
    let csv = r.text().await.unwrap();
    let total = csv
        .lines()
        .find(|l| l.starts_with("TOTAL"))
        .unwrap_or_else(|| panic!("{csv}"));
    assert!(total.contains(",1,1,1,"), "drafted, sampled, scored: {total}\n{csv}");
    assert!(!csv.contains(note), "the report holds no notes");
    assert_eq!(c.get("/qa/report", Some(&anne)).await.0, 403);

    // The topic dashboard: one call is fewer than k = 5, so its count is
    // suppressed in the page, the chart and the CSV; the auditor may not look.
    let (_, lise) = c.login("lead-lise", PW).await;
    let (s, _, body) = c.get("/dashboard?period=day", lise.as_deref()).await;
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("<svg") && body.contains("role=\"img\""), "{body}");
    assert!(body.contains("title=\"skjult\""), "{body}");
    let r = c
        .http
        .get(format!("{}/dashboard.csv?period=week", c.base))
        .header("cookie", lise.as_deref().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let csv = r.text().await.unwrap();
    assert!(csv.starts_with("period,desk,topic,count"), "{csv}");
    for line in csv.lines().skip(1) {
        let count = line.rsplit(',').next().unwrap();
        if let Ok(n) = count.parse::<u64>() {
            assert!(n == 0 || n >= 5, "a small count published: {line}");
        }
    }
    assert!(csv.lines().any(|l| l.ends_with(",:")), "{csv}");
    assert_eq!(c.get("/dashboard?period=fortnight", lise.as_deref()).await.0, 400);
    // The same numbers over the JSON API: suppressed counts are null.
    let r = api("/api/v1/dashboard?period=day", lise.as_deref(), None)
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let d: serde_json::Value = r.json().await.unwrap();
    assert_eq!(d["k"], 5);
    let cells: Vec<&serde_json::Value> = d["by_period"]["cells"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap())
        .collect();
    assert!(cells.iter().any(|c| c.is_null()), "{d}");
    assert!(cells.iter().all(|c| c.as_u64().is_none_or(|n| n == 0 || n >= 5)), "{d}");
    let r = api("/api/v1/qa/report", Some(&kari), None).await.unwrap();
    assert_eq!(r.status(), 200);
    let rep: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        (rep["total"]["drafted"].as_u64(), rep["total"]["scored"].as_u64()),
        (Some(1), Some(1)),
        "{rep}"
    );
    assert_eq!(api("/api/v1/qa/report", Some(&anne), None).await.unwrap().status(), 403);
    let (_, astrid) = c.login("aud-astrid", PW).await;
    assert_eq!(c.get("/dashboard", astrid.as_deref()).await.0, 403);
    assert_eq!(
        api("/api/v1/dashboard", astrid.as_deref(), None)
            .await
            .unwrap()
            .status(),
        403
    );

    // The auditor reads the audit log (and verifies it) but no content; the
    // admin manages users but reads no audit log and no content.
    let (_, astrid) = c.login("aud-astrid", PW).await;
    let (s, _, body) = c.get("/audit", astrid.as_deref()).await;
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("transcript.read") && body.contains("refused"));
    assert!(!body.contains("mortgage"), "the log holds no content");
    let csrf = body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let r = c
        .http
        .post(format!("{}/audit/verify", c.base))
        .header("cookie", astrid.as_deref().unwrap())
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("Kjeden er intakt"));
    let (_, ola) = c.login("admin-ola", PW).await;
    assert_eq!(c.get("/audit", ola.as_deref()).await.0, 403);
    assert_eq!(c.get("/admin/users", Some(&anne)).await.0, 403);
    let (s, _, body) = c.get("/admin/users", ola.as_deref()).await;
    assert_eq!(s, 200);
    assert!(
        body.contains("adv-anne") && !body.contains("$argon2"),
        "no hashes shown"
    );
    let csrf = body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let r = c
        .http
        .post(format!("{}/admin/users", c.base))
        .header("cookie", ola.as_deref().unwrap())
        .form(&[
            ("csrf", csrf.as_str()),
            ("action", "add"),
            ("user", "adv-nina"),
            ("name", "Nina"),
            ("role", "advisor"),
            ("team", "oslo"),
            ("password", PW),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(c.login("adv-nina", PW).await.0, 303);

    // Sign-out needs the form's CSRF token.
    let post = |cookie: &str, csrf: &str| {
        c.http
            .post(format!("{}/logout", c.base))
            .header("cookie", cookie)
            .form(&[("csrf", csrf)])
            .send()
    };
    assert_eq!(post(&anne, "forged").await.unwrap().status(), 403);
    assert_eq!(c.get("/queue", Some(&anne)).await.0, 200, "still signed in");
    let (_, _, queue) = c.get("/queue", Some(&anne)).await;
    let csrf = queue
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(post(&anne, &csrf).await.unwrap().status(), 303);
    assert_eq!(c.get("/queue", Some(&anne)).await.0, 303, "signed out");

    // Every read and refusal is in the audit log, which verifies.
    let audit = edges.audit().await.unwrap();
    let log = audit.entries(1, 1000).await.unwrap();
    let reads: Vec<(String, String, String)> = log
        .iter()
        .filter(|e| e.event.action == "transcript.read")
        .map(|e| (e.event.actor.clone(), e.event.outcome.clone(), e.event.reason.clone()))
        .collect();
    for want in [
        ("adv-anne", "allowed", "review"),
        ("lead-lise", "allowed", "team review"),
        ("co-cato", "allowed", "complaint FKN-2026-0203"),
        ("adv-bo", "refused", ""),
        ("lead-per", "refused", ""),
        ("qa-kari", "allowed", "qa sample"),
        ("aud-astrid", "refused", ""),
        ("admin-ola", "refused", ""),
        ("co-cato", "refused", ""),
    ] {
        assert!(
            reads.contains(&(want.0.into(), want.1.into(), want.2.into())),
            "{want:?} not in {reads:?}"
        );
    }
    let plays: Vec<(String, String)> = log
        .iter()
        .filter(|e| e.event.action == "recording.play")
        .map(|e| (e.event.actor.clone(), e.event.outcome.clone()))
        .collect();
    for want in [
        ("adv-anne", "allowed"),
        ("adv-bo", "refused"),
        ("co-cato", "refused"),
        ("co-cato", "allowed"),
        ("aud-astrid", "refused"),
    ] {
        assert!(
            plays.contains(&(want.0.into(), want.1.into())),
            "{want:?} not in {plays:?}"
        );
    }
    let decisions: Vec<(String, String)> = log
        .iter()
        .filter(|e| e.event.action.starts_with("draft."))
        .map(|e| (e.event.action.clone(), e.event.outcome.clone()))
        .collect();
    for want in [
        ("draft.approve", "refused"),
        ("draft.edit", "allowed"),
        ("draft.approve", "allowed"),
        ("draft.reject", "failed"),
        ("draft.reject", "refused"),
    ] {
        assert!(
            decisions.contains(&(want.0.into(), want.1.into())),
            "{want:?} not in {decisions:?}"
        );
    }
    let actions: Vec<(String, String)> = log
        .iter()
        .map(|e| (e.event.action.clone(), e.event.outcome.clone()))
        .collect();
    for want in [
        ("token", "refused"),
        ("audit.read", "allowed"),
        ("audit.read", "refused"),
        ("audit.verify", "intact"),
        ("user.list", "refused"),
        ("user.create", "allowed"),
        ("login", "refused"),
        ("qa.score", "allowed"),
        ("qa.score", "refused"),
        ("qa.report", "allowed"),
        ("qa.report", "refused"),
        ("qa.queue", "refused"),
        ("dashboard.read", "allowed"),
        ("dashboard.read", "refused"),
    ] {
        assert!(
            actions.contains(&(want.0.into(), want.1.into())),
            "{want:?} not audited"
        );
    }
    assert!(audit.verify(None).await.unwrap().ok());
    server.stop().await;
}

/// A client that leaves while its request waits inside an audited read (the
/// audit append queues on its PostgreSQL advisory lock, held here) does not
/// cancel the handler halfway: every such read is still audited, and the
/// service's connections come back clean (the next read works).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_leaving_mid_request_cancels_nothing_halfway() {
    let Some(kafka) = common::kafka() else { return };
    let Some(postgres) = common::postgres_db("web_leave").await else {
        return;
    };
    let env = Env::new(
        &Backend::Services {
            kafka,
            postgres: postgres.clone(),
        },
        "web_leave",
    );
    let edges = env.edges().await;
    let id = Identity::open(&edges.review()).await.unwrap();
    id.add_user("setup", "lead-lise", "Lise", Role::TeamLead, "oslo", PW)
        .await
        .unwrap();
    let server = common::WebService::start(&edges).await;
    let base = server.base.clone();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let cookie = common::web_sign_in(&http, &base, "lead-lise", PW).await.1.unwrap();
    let db = sqlx::PgPool::connect(&postgres).await.unwrap();
    let reads = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM audit_log WHERE action = 'dashboard.read'")
            .fetch_one(&db)
            .await
            .unwrap()
    };
    assert_eq!(reads().await, 0);

    // Hold the audit's lock; 8 dashboard reads queue behind it, and their
    // clients give up after 1 s and close their connections.
    let mut lock = db.begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock(7243061)")
        .execute(&mut *lock)
        .await
        .unwrap();
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let gave_up = futures::future::join_all((0..8).map(|_| {
        impatient
            .get(format!("{base}/dashboard"))
            .header("cookie", &cookie)
            .send()
    }))
    .await;
    assert!(
        gave_up.iter().all(|r| r.as_ref().is_err_and(|e| e.is_timeout())),
        "{gave_up:?}"
    );
    // The service saw them leave; now the lock goes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    lock.commit().await.unwrap();

    // Every read that started is audited, and reads go on working.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while reads().await < 8 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of 8 abandoned reads audited: their handlers were cancelled",
            reads().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = http
        .get(format!("{base}/dashboard"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(reads().await, 9);
    server.stop().await;
}
