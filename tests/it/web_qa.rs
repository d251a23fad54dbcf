//! The QA pages and the topic dashboard over HTTP (issue 18, items 4, 5
//! and 7): the assessment form shows its rubric and what is scored; a flag
//! without a note (or a missing score) comes back as the same form with
//! what was typed, a field-level error and 422, audited as `failed` (not
//! `refused`); the report's "changed" share stays within 0–100 % when an
//! advisor writes more than the draft had; the QA queue's search,
//! filters, sort and paging; the dashboard's and the report's date errors
//! in Norwegian (and English) on the form, typed values kept. On
//! PostgreSQL when the services run, else SQLite.

use crate::common;
use crate::qa::{backends, day_us, draft, facts, qa_with_share, register_lasting, store_draft, CallSpec};
use common::AddApproved;
use opptak_domain::model::{CallId, Desk};
use opptak_domain::summary::Taxonomy;
use opptak_domain::time::{Clock, ManualClock};
use opptak_review::identity::{Identity, Role};
use opptak_review::qa::{DraftOutcome, QaScore};
use std::sync::Arc;

pub(crate) const PW: &str = "correct horse battery staple";
pub(crate) const QA: &str = "qa-kari";
const MORTGAGE: &str = "mortgage_loans";
const MINUTE_US: i64 = 60_000_000;

/// The calls: six on mortgages on one day (desk, length in seconds), one on
/// cards the next day (outside the report's range, so the report's topic
/// row is not withheld by its neighbour).
const CALLS: [(&str, Desk, &str, i64); 7] = [
    ("webqa-m1", Desk::CustomerCenter, MORTGAGE, 60),
    ("webqa-m2", Desk::CustomerCenter, MORTGAGE, 120),
    ("webqa-m3", Desk::Markets, MORTGAGE, 30),
    ("webqa-m4", Desk::Markets, MORTGAGE, 600),
    ("webqa-m5", Desk::Corporate, MORTGAGE, 90),
    ("webqa-m6", Desk::PrivateBanking, MORTGAGE, 45),
    ("webqa-c1", Desk::Markets, "cards", 300),
];

const DRAFT: &str = "Kunden vil refinansiere boliglånet.";

pub(crate) struct Fixture {
    pub(crate) server: common::WebService,
    http: reqwest::Client,
    edges: opptak::app::Edges,
    cookie: String,
    csrf: String,
    pub(crate) day: String,
}

impl Fixture {
    async fn get(&self, path: &str, lang: &str) -> (u16, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.server.base))
            .header("cookie", format!("{}; opptak_lang={lang}", self.cookie))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn post(&self, path: &str, lang: &str, form: &[(&str, &str)]) -> (u16, Option<String>, String) {
        let mut form = form.to_vec();
        form.push(("csrf", &self.csrf));
        let r = self
            .http
            .post(format!("{}{path}", self.server.base))
            .header("cookie", format!("{}; opptak_lang={lang}", self.cookie))
            .form(&form)
            .send()
            .await
            .unwrap();
        let location = r.headers().get("location").map(|l| l.to_str().unwrap().to_owned());
        (r.status().as_u16(), location, r.text().await.unwrap())
    }

    /// The last audit entry: (action, subject, reason, outcome).
    async fn last_audit(&self) -> (String, String, String, String) {
        let log = self.edges.audit().await.unwrap().entries(1, 10_000).await.unwrap();
        let e = &log.last().unwrap().event;
        (e.action.clone(), e.subject.clone(), e.reason.clone(), e.outcome.clone())
    }
}

/// Indexes [`CALLS`] (all sampled), approves m1 with a rewrite longer
/// than its draft and m2 unchanged, has QA score m2 and m5, and starts the
/// service with QA signed in.
pub(crate) async fn fixture(env: &common::Env) -> Fixture {
    let clock = Arc::new(ManualClock::new(day_us(2026, 3, 10)));
    let edges = env.edges().await.with_clock(clock.clone()).unwrap();
    let day0 = day_us(2026, 3, 2);
    let specs: Vec<CallSpec> = CALLS
        .iter()
        .enumerate()
        .map(|(i, (id, desk, topic, _))| CallSpec {
            id: (*id).to_owned(),
            desk: *desk,
            started_at_us: if *topic == MORTGAGE {
                day0
            } else {
                day0 + 24 * 60 * MINUTE_US
            } + i as i64 * 60 * MINUTE_US,
        })
        .collect();
    register_lasting(&edges, &specs, |c| CALLS.iter().find(|x| x.0 == c.id).unwrap().3).await;
    let qa = qa_with_share(&edges, 1.0).await;
    for (id, _, topic, _) in CALLS {
        let cid = CallId::parse(id).unwrap();
        let d = draft(DRAFT, &[topic], "nb");
        store_draft(&edges, &cid, &d).await;
        let indexed = qa.on_draft(&facts(&edges, id).await, &d).await.unwrap();
        assert!(indexed.sampled, "{id} sampled");
        // Sampled a minute apart: m1 has waited longest.
        clock.advance(MINUTE_US);
    }
    let longer = "Rådgiveren skrev om alt: ny tekst om lån, rente, sikkerhet, betaling og videre oppfølging i banken.";
    for (id, approved) in [("webqa-m1", longer), ("webqa-m2", DRAFT)] {
        let outcome = DraftOutcome::Approved { draft: DRAFT, approved };
        qa.on_decision(&CallId::parse(id).unwrap(), outcome, clock.now_us())
            .await
            .unwrap();
    }
    let id = Identity::open(&edges.review()).await.unwrap();
    let kari = id.add_approved("setup", QA, "Kari", Role::Qa, "qa", PW).await.unwrap();
    for id in ["webqa-m2", "webqa-m5"] {
        let score = QaScore {
            correctness: 4,
            relevance: 4,
            quality: 4,
            flag: None,
            note: String::new(),
        };
        qa.score(&kari, &CallId::parse(id).unwrap(), score).await.unwrap();
    }
    let server = common::WebService::start(&edges).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let cookie = common::web_session(&http, &server.base, QA, PW).await;
    let page = http
        .get(format!("{}/qa", server.base))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = common::csrf_in(&page);
    Fixture {
        server,
        http,
        edges,
        cookie,
        csrf,
        day: "2026-03-02".into(),
    }
}

/// The call ids a queue page lists, in order.
fn listed(page: &str) -> Vec<String> {
    page.split("href=\"/calls/")
        .skip(1)
        .map(|s| s.split('"').next().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qa_pages_keep_input_bound_percentages_and_page_the_queue() {
    let env = backends("web_qa").await.pop().unwrap();
    let f = fixture(&env).await;
    let call = "/calls/webqa-m1/qa";

    // The form beside the draft: the rubric (what 1, 3 and 5 mean) and
    // that the KI draft as generated is what is scored.
    let (s, page) = f.get("/calls/webqa-m1", "nb").await;
    assert_eq!(s, 200, "{page}");
    for text in [
        "Dette vurderer du: KI-utkastet slik det ble generert",
        "ikke rådgiverens redigerte eller godkjente tekst",
        "1: feil eller oppdiktede opplysninger",
        "3: i hovedsak riktig",
        "5: alt stemmer med samtalen",
        "Korrekthet 2 eller lavere telles som feil",
    ] {
        assert!(page.contains(text), "{text} missing");
    }
    assert!(
        page.contains(&format!("<p class=\"scored-summary\">{DRAFT}</p>")),
        "the draft is shown as scored"
    );

    // A flag without a note: the same form again, 422, what was typed
    // kept, the note field marked; nothing stored; audited `failed`.
    let typed = [
        ("correctness", "4"),
        ("relevance", "2"),
        ("quality", "5"),
        ("flag", "unexpected"),
        ("note", "  "),
    ];
    let (s, _, page) = f.post(call, "nb", &typed).await;
    assert_eq!(s, 422, "{page}");
    assert!(page.contains("role=\"alert\""), "an error summary");
    assert!(
        page.contains("id=\"note-error\">Et flagg krever et notat: skriv hva som er galt.</p>"),
        "{page}"
    );
    assert!(
        page.contains("aria-invalid=\"true\" aria-describedby=\"note-error\""),
        "the note field marked: {page}"
    );
    for (name, v) in [("correctness", "4"), ("relevance", "2"), ("quality", "5")] {
        assert!(
            page.contains(&format!("id=\"{name}-{v}\" name=\"{name}\" value=\"{v}\" checked")),
            "{name} kept: {page}"
        );
    }
    assert!(page.contains("<option value=\"unexpected\" selected>"), "the flag kept");
    assert!(
        page.contains("1: feil eller oppdiktede opplysninger"),
        "the rubric on the form again"
    );
    assert!(
        !page.contains("needs a note") && !page.contains("untranslated"),
        "no English"
    );
    let qa = opptak_review::qa::Qa::open(&f.edges.review()).await.unwrap();
    assert!(
        qa.reviews(&CallId::parse("webqa-m1").unwrap())
            .await
            .unwrap()
            .is_empty(),
        "nothing kept"
    );
    assert_eq!(
        f.last_audit().await,
        (
            "qa.score".into(),
            "call:webqa-m1".into(),
            "form check: note".into(),
            "failed".into()
        )
    );

    // A score missing, a note typed: the note kept, the score marked; in English.
    let typed = [
        ("correctness", "4"),
        ("quality", "5"),
        ("flag", ""),
        ("note", "Halvferdig notat"),
    ];
    let (s, _, page) = f.post(call, "en", &typed).await;
    assert_eq!(s, 422);
    assert!(
        page.contains("id=\"relevance-error\">Choose a score from 1 to 5.</p>"),
        "{page}"
    );
    assert!(page.contains(">Halvferdig notat</textarea>"), "the note kept");
    assert!(page.contains("What you score: the KI draft as generated"));
    assert_eq!(f.last_audit().await.3, "failed");

    // With the note: saved, back to the call's assessment.
    let typed = [
        ("correctness", "4"),
        ("relevance", "2"),
        ("quality", "5"),
        ("flag", "unexpected"),
        ("note", "Nevner en rente kunden aldri fikk."),
    ];
    let (s, location, _) = f.post(call, "nb", &typed).await;
    assert_eq!((s, location.as_deref()), (303, Some("/calls/webqa-m1#qa")));
    assert_eq!(qa.reviews(&CallId::parse("webqa-m1").unwrap()).await.unwrap().len(), 1);
    assert_eq!(
        f.last_audit().await,
        (
            "qa.score".into(),
            "call:webqa-m1".into(),
            "unexpected".into(),
            "allowed".into()
        )
    );

    // The report: m1's advisor wrote 16 words for a 4-word draft (400 %
    // by the old measure), m2 kept it: 50 % changed on average, and no
    // share above 100 %. Names for codes, Norwegian numbers.
    let (s, page) = f.get(&format!("/qa/report?from={0}&to={0}", f.day), "nb").await;
    assert_eq!(s, 200, "{page}");
    let taxonomy = Taxonomy::default_taxonomy();
    let mortgage = &taxonomy.get(MORTGAGE).unwrap().label_nb;
    assert!(
        page.contains(&format!("<th scope=\"row\">{mortgage}</th>")),
        "the topic by name"
    );
    assert!(!page.contains(&format!(">{MORTGAGE}<")), "no topic code");
    assert!(
        page.contains("<td class=\"n\">50\u{a0}%</td>"),
        "half the drafts' text changed: {page}"
    );
    let shares: Vec<f64> = page
        .split("\u{a0}%")
        .filter_map(|before| before.rsplit(|c: char| !(c.is_ascii_digit() || c == ',')).next())
        .filter_map(|n| n.replace(',', ".").parse().ok())
        .collect();
    assert!(
        !shares.is_empty() && shares.iter().all(|p| (0.0..=100.0).contains(p)),
        "{shares:?}"
    );
    assert!(page.contains("Endret tekst, andel av utkastet"), "the measure named");
    assert!(
        page.contains("teller som 100\u{a0}%") || page.contains("teller som 100 %"),
        "and explained"
    );
    // 4,00 with a decimal comma (m2 and m5 scored 4, m1 4).
    assert!(page.contains("<td class=\"n\">4,00</td>"), "{page}");
    let (_, en) = f.get(&format!("/qa/report?from={0}&to={0}", f.day), "en").await;
    assert!(en.contains("<td class=\"n\">50\u{a0}%</td>") && en.contains("<td class=\"n\">4.00</td>"));

    // The report's dates wrong: the form again, in Norwegian, values kept.
    let (s, page) = f.get("/qa/report?from=2026-03-10&to=2026-03-01", "nb").await;
    assert_eq!(s, 400);
    assert!(
        page.contains("id=\"from-error\">Fra-datoen er etter til-datoen.</p>"),
        "{page}"
    );
    assert!(page.contains("value=\"2026-03-10\"") && page.contains("value=\"2026-03-01\""));

    // The queue: all seven, the longest waiting first, "1–7 av 7".
    let all: Vec<String> = CALLS.iter().map(|c| c.0.to_owned()).collect();
    let (s, page) = f.get("/qa", "nb").await;
    assert_eq!(s, 200);
    assert_eq!(listed(&page), all);
    assert!(page.contains("1–7 av 7"), "{page}");
    assert!(
        page.contains("Kundesenter") && page.contains(mortgage.as_str()),
        "names"
    );
    assert!(
        !page.contains(">customer_center<") && !page.contains(&format!(">{MORTGAGE}<")),
        "no codes"
    );
    // m1 was sampled 7 minutes before the service's now.
    assert!(page.contains("7\u{a0}min"), "waiting time");
    // 02.03.2026 00:00 UTC is 01:00 in Oslo.
    assert!(page.contains("02.03.2026 01:00"), "Oslo time");
    assert!(page.contains(">10:00<"), "m4 lasts 10 minutes");
    // Filters.
    let ids = |page: &str| listed(page);
    assert_eq!(
        ids(&f.get("/qa?desk=markets", "nb").await.1),
        ["webqa-m3", "webqa-m4", "webqa-c1"]
    );
    assert_eq!(ids(&f.get("/qa?topic=cards", "nb").await.1), ["webqa-c1"]);
    assert_eq!(
        ids(&f.get("/qa?status=scored", "nb").await.1),
        ["webqa-m1", "webqa-m2", "webqa-m5"]
    );
    assert_eq!(
        ids(&f.get("/qa?status=unscored&desk=markets", "nb").await.1),
        ["webqa-m3", "webqa-m4", "webqa-c1"]
    );
    assert_eq!(ids(&f.get("/qa?call=M4", "nb").await.1), ["webqa-m4"]);
    let (_, none) = f.get("/qa?call=nothing-like-it", "nb").await;
    assert!(none.contains("Ingen samtaler i køen passer til søket.") && none.contains("0–0 av 0"));
    // Sorts.
    assert_eq!(
        ids(&f.get("/qa?sort=length&dir=desc", "nb").await.1),
        ["webqa-m4", "webqa-c1", "webqa-m2", "webqa-m5", "webqa-m1", "webqa-m6", "webqa-m3"]
    );
    let (_, page) = f.get("/qa?sort=start&dir=desc", "nb").await;
    assert_eq!(ids(&page), all.iter().rev().cloned().collect::<Vec<_>>());
    assert!(page.contains("aria-sort=\"descending\""));
    // Paging keeps the filters.
    let (_, page) = f.get("/qa?per=3&page=2&status=", "nb").await;
    assert_eq!(ids(&page), ["webqa-m4", "webqa-m5", "webqa-m6"]);
    assert!(page.contains("4–6 av 7"), "{page}");
    assert!(
        page.contains(
            "href=\"/qa?call=&amp;desk=&amp;topic=&amp;status=&amp;sort=waiting&amp;dir=desc&amp;page=1&amp;per=3\""
        ),
        "the previous page, filters kept: {page}"
    );
    assert!(page.contains("page=3&amp;per=3\""), "the next page");
    let (_, last) = f.get("/qa?per=3&page=3", "nb").await;
    assert_eq!(ids(&last), ["webqa-c1"]);
    assert!(last.contains("7–7 av 7") && !last.contains("rel=\"next\""));
    let (s, beyond) = f.get("/qa?per=3&page=9", "nb").await;
    assert_eq!(s, 200);
    assert!(
        ids(&beyond).is_empty() && beyond.contains("0–0 av 7"),
        "past the end: none, the total kept"
    );
    assert!(beyond.contains("rel=\"prev\"") && !beyond.contains("rel=\"next\""));
    assert!(!beyond.contains("Ingen samtaler venter"), "the queue is not empty");

    // The dashboard: an empty range in Norwegian on the form, values kept.
    let (s, page) = f
        .get("/dashboard?from=2026-03-10&to=2026-03-01&period=day&desk=markets", "nb")
        .await;
    assert_eq!(s, 400, "{page}");
    assert!(
        page.contains("id=\"from-error\">Tomt tidsrom: fra-datoen er etter til-datoen.</span>"),
        "{page}"
    );
    assert!(page.contains("value=\"2026-03-10\"") && page.contains("value=\"2026-03-01\""));
    assert!(
        page.contains("<option value=\"markets\" selected>Markets</option>"),
        "the desk kept"
    );
    assert!(page.contains("<option value=\"day\" selected>"), "the period kept");
    assert!(page.contains("aria-invalid=\"true\"") && page.contains("role=\"alert\""));
    assert!(!page.contains("empty range"), "no English");
    let (s, page) = f.get("/dashboard?from=2026-03-10&to=2026-03-01", "en").await;
    assert_eq!(s, 400);
    assert!(page.contains("Empty range: the from date is after the to date."));
    let (s, page) = f.get("/dashboard?from=2026-02-30", "nb").await;
    assert_eq!(s, 400);
    assert!(
        page.contains("id=\"from-error\">Skriv en dato (dd.mm.åååå).</span>"),
        "{page}"
    );
    // And the dashboard itself: names, not codes.
    let (s, page) = f.get("/dashboard?from=2026-03-01&to=2026-03-04&period=day", "nb").await;
    assert_eq!(s, 200, "{page}");
    assert!(page.contains(&format!("<th scope=\"row\">{mortgage}</th>")), "{page}");
    assert!(page.contains("<th scope=\"row\">Kundesenter</th>"), "{page}");
    assert!(!page.contains(&format!(">{MORTGAGE}<")) && !page.contains(">customer_center<"));
    assert!(page.contains("02.03.2026"), "dates in Norwegian");
    f.server.stop().await;
}
