//! Find and open (issue 18) over real HTTP on PostgreSQL: compliance's call
//! search (filters, paging, sort, the customer reference kept out of every
//! URL, every search audited), QA's search of its sample, the reason form
//! (kept per session and call, never in a URL), and the queues (the
//! advisor's and the team lead's escalations: search, filter, sort, paging).
//!
//! The calls are seeded through the metadata store's own writes (calls,
//! keys, the KI index), not the recording pipeline: the search reads
//! metadata only. [`seed`] is shared with the wrk benchmark
//! (`web_search_bench.rs`), which seeds 100,000 calls the same way.

use crate::common;
use common::AddApproved;
use common::{csrf_in, Backend, Env};
use opptak_domain::model::{AudioFormat, CallFacts, CallId, ChannelRole, Codec, Desk, Direction, ServiceCategory};
use opptak_domain::time::{oslo_civil, ManualClock};
use opptak_review::identity::{Identity, Role};
use opptak_store::meta::{CallEnd, CallUpdate, Flush, NewCall, StoredKey};
use opptak_store::reporting::{KiCallRow, SqlReporting};
use std::collections::HashSet;
use std::sync::Arc;

const PW: &str = "correct horse battery staple";
/// 2026-12-07 09:41 UTC, a Monday.
pub(crate) const T0: i64 = 1_796_636_460_000_000;
const HOUR: i64 = 3_600_000_000;

/// What a seeded call's KI went through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ki {
    /// KI not enabled for the call.
    Off,
    /// KI on, no draft (yet).
    NoDraft,
    /// Drafted; the advisor's decision if any; sampled for QA or not.
    Drafted {
        decision: Option<&'static str>,
        sampled: bool,
    },
}

/// One call to seed.
#[derive(Clone, Debug)]
pub(crate) struct Seed {
    pub(crate) call_id: String,
    pub(crate) started_at_us: i64,
    pub(crate) advisor: String,
    pub(crate) desk: Desk,
    pub(crate) service: ServiceCategory,
    pub(crate) customer: String,
    pub(crate) seconds: u64,
    pub(crate) ki: Ki,
    pub(crate) topic: String,
}

impl Seed {
    /// The status the search shows for it.
    fn status(&self) -> &'static str {
        match self.ki {
            Ki::Off => "ki_off",
            Ki::NoDraft => "no_ki",
            Ki::Drafted { decision: None, .. } => "waiting",
            Ki::Drafted {
                decision: Some("approved"),
                ..
            } => "approved",
            Ki::Drafted { .. } => "rejected",
        }
    }

    fn ended_at_us(&self) -> i64 {
        self.started_at_us + self.seconds as i64 * 1_000_000
    }
}

const RATE: u32 = 8_000;

/// Seeds `calls` through the store's writes, `batch` calls per flush:
/// the call with its recording key, its length and end; for KI calls a
/// live `ki` key; for drafted ones the KI index row (sampled or not) and
/// the decision.
pub(crate) async fn seed(edges: &opptak::app::Edges, calls: &[Seed], batch: usize) {
    let reporting = SqlReporting::open(&edges.config.metadata_url()).await.unwrap();
    let format = AudioFormat::new(Codec::L16, RATE, vec![ChannelRole::Agent, ChannelRole::Customer]).unwrap();
    let key = |id: &str, class: &str| StoredKey {
        key_id: format!("{id}-{class}"),
        class: class.into(),
        kek_id: "seed".into(),
        sealed: vec![0; 40],
    };
    for chunk in calls.chunks(batch) {
        let mut flush = Flush::default();
        for s in chunk {
            let call_id = CallId::parse(&s.call_id).unwrap();
            flush.new_calls.push(NewCall {
                facts: CallFacts {
                    call_id: call_id.clone(),
                    started_at_us: s.started_at_us,
                    direction: Direction::Inbound,
                    customer_ref: s.customer.clone(),
                    advisor_id: s.advisor.clone(),
                    desk: s.desk,
                    service_category: s.service,
                    ki_enabled: s.ki != Ki::Off,
                    customer_informed: true,
                    format: format.clone(),
                    ki_notice: None,
                },
                key: key(&s.call_id, "audio-24h"),
                extra_keys: Vec::new(),
                recording_id: format!("{}-rec", s.call_id),
                blob_prefix: format!("seed/{}", s.call_id),
                created_at_us: s.started_at_us,
            });
            flush.updates.push(CallUpdate {
                call_id,
                recording_id: format!("{}-rec", s.call_id),
                next_sequence: 1,
                frames: s.seconds * u64::from(RATE),
                last_chunk_frames: 0,
                duplicate_chunks: 0,
                segments: 0,
                prev_segments: 0,
                complete: true,
                end: Some(CallEnd {
                    ended_at_us: s.ended_at_us(),
                    reason: "hangup".into(),
                    last_sequence: Some(0),
                }),
                opt_out: None,
                ki_notice: None,
                updated_at_us: s.ended_at_us(),
            });
        }
        edges.meta.apply(&flush).await.unwrap();
        for s in chunk {
            let Ki::Drafted { decision, sampled } = s.ki else {
                continue;
            };
            let call_id = CallId::parse(&s.call_id).unwrap();
            edges
                .meta
                .create_key(&call_id, &key(&s.call_id, "ki"), s.ended_at_us())
                .await
                .unwrap();
            let (y, m, d) = opptak_domain::time::civil_from_days(s.started_at_us.div_euclid(86_400_000_000));
            let row = KiCallRow {
                call_id: s.call_id.clone(),
                day: format!("{y:04}-{m:02}-{d:02}"),
                desk: s.desk.as_str().into(),
                language: "nb".into(),
                topics: vec![s.topic.clone()],
                advisor_id: s.advisor.clone(),
                drafted_at_us: s.ended_at_us(),
                draft_words: 40,
                recognition_failed: false,
                channel: "phone".into(),
            };
            let stratum = format!("{}|{}|nb|asr-ok", s.topic, s.desk.as_str());
            reporting
                .index_draft(&row, Some(&stratum), s.ended_at_us(), move |_| sampled, None)
                .await
                .unwrap();
            if let Some(d) = decision {
                reporting
                    .set_outcome(&s.call_id, d, Some(0), s.ended_at_us() + HOUR)
                    .await
                    .unwrap();
            }
        }
    }
}

/// The calls of the test: `n` calls an hour apart back from `T0`, the
/// advisors, desks, services, customers and KI outcomes in turn.
pub(crate) fn calls(prefix: &str, n: usize, advisors: &[&str], topics: &[String]) -> Vec<Seed> {
    let desks = [Desk::Markets, Desk::CustomerCenter];
    let services = [
        ServiceCategory::Savings,
        ServiceCategory::Loan,
        ServiceCategory::InvestmentAdvice,
    ];
    (0..n)
        .map(|i| Seed {
            call_id: format!("{prefix}-{i:06}"),
            started_at_us: T0 - i as i64 * HOUR,
            advisor: advisors[i % advisors.len()].to_owned(),
            desk: desks[(i / 5) % 2],
            service: services[i % 3],
            customer: format!("kunde-{}", i % 7),
            seconds: 30 + (i as u64 * 37) % 900,
            ki: match i % 5 {
                0 => Ki::Off,
                1 => Ki::NoDraft,
                2 => Ki::Drafted {
                    decision: Some("approved"),
                    sampled: i % 4 == 2,
                },
                3 => Ki::Drafted {
                    decision: Some("rejected"),
                    sampled: false,
                },
                _ => Ki::Drafted {
                    decision: None,
                    sampled: i % 10 == 4,
                },
            },
            topic: topics[(i / 15) % topics.len()].clone(),
        })
        .collect()
}

struct Web {
    http: reqwest::Client,
    base: String,
}

impl Web {
    async fn get(&self, path: &str, cookie: &str) -> (u16, Option<String>, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap();
        let loc = r.headers().get("location").map(|l| l.to_str().unwrap().to_owned());
        (r.status().as_u16(), loc, r.text().await.unwrap())
    }

    async fn post(&self, path: &str, cookie: &str, form: &[(&str, &str)]) -> (u16, Option<String>, String) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", cookie)
            .form(form)
            .send()
            .await
            .unwrap();
        let loc = r.headers().get("location").map(|l| l.to_str().unwrap().to_owned());
        (r.status().as_u16(), loc, r.text().await.unwrap())
    }

    async fn sign_in(&self, user: &str) -> String {
        common::web_session(&self.http, &self.base, user, PW).await
    }

    /// Submits the search form; returns the results' path (`/search?id=…`).
    async fn search(&self, cookie: &str, filters: &[(&str, &str)]) -> String {
        let (_, _, page) = self.get("/search", cookie).await;
        let csrf = csrf_in(&page);
        let mut form = vec![("csrf", csrf.as_str())];
        form.extend_from_slice(filters);
        let (status, location, body) = self.post("/search", cookie, &form).await;
        assert_eq!(status, 303, "{body}");
        let location = location.unwrap();
        assert!(location.starts_with("/search?id="), "{location}");
        location
    }
}

/// The call ids a page links to, in order.
fn listed(page: &str) -> Vec<String> {
    page.split("href=\"/calls/")
        .skip(1)
        .map(|s| s.split('"').next().unwrap().to_owned())
        .collect()
}

/// The `href` of the link with `rel`.
fn rel_link(page: &str, rel: &str) -> Option<String> {
    let at = page.find(&format!("rel=\"{rel}\" href=\""))?;
    let rest = &page[at + format!("rel=\"{rel}\" href=\"").len()..];
    Some(rest.split('"').next().unwrap().replace("&amp;", "&"))
}

fn oslo_date(us: i64) -> String {
    let (y, m, d, ..) = oslo_civil(us);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The newest-first ids of the seeded calls `keep` selects.
fn expect(calls: &[Seed], keep: impl Fn(&Seed) -> bool) -> Vec<String> {
    let mut v: Vec<&Seed> = calls.iter().filter(|s| keep(s)).collect();
    v.sort_by(|a, b| b.started_at_us.cmp(&a.started_at_us).then(b.call_id.cmp(&a.call_id)));
    v.into_iter().map(|s| s.call_id.clone()).collect()
}

async fn last_entry(edges: &opptak::app::Edges) -> opptak_store::audit::AuditEntry {
    let audit = edges.audit().await.unwrap();
    let mut seq = 1;
    let mut last = None;
    loop {
        let page = audit.entries(seq, 1000).await.unwrap();
        let Some(l) = page.last() else { break };
        seq = l.seq + 1;
        last = Some(l.clone());
    }
    last.expect("an audit entry")
}

/// How many entries the audit log holds.
pub(crate) async fn audit_len(edges: &opptak::app::Edges) -> u64 {
    let audit = edges.audit().await.unwrap();
    let mut seq = 1;
    loop {
        let page = audit.entries(seq, 10_000).await.unwrap();
        match page.last() {
            Some(l) => seq = l.seq + 1,
            None => return seq - 1,
        }
    }
}

struct Site {
    _env: Env,
    edges: opptak::app::Edges,
    web: Web,
    server: common::WebService,
    calls: Vec<Seed>,
}

async fn site(name: &str) -> Option<Site> {
    let (Some(kafka), Some(postgres)) = (common::kafka(), common::postgres_db(name).await) else {
        return None;
    };
    let env = Env::new(&Backend::Services { kafka, postgres }, name);
    let clock = Arc::new(ManualClock::new(T0 + 10 * 60_000_000));
    let edges = env.edges().await.with_clock(clock).unwrap();
    let id = Identity::open(&edges.review()).await.unwrap();
    for (user, role, team) in [
        ("adv-anne", Role::Advisor, "oslo"),
        ("adv-bo", Role::Advisor, "oslo"),
        ("adv-eva", Role::Advisor, "bergen"),
        ("lead-lise", Role::TeamLead, "oslo"),
        ("qa-kari", Role::Qa, "qa"),
        ("co-cato", Role::Compliance, "compliance"),
    ] {
        id.add_approved("setup", user, user, role, team, PW).await.unwrap();
    }
    let taxonomy = opptak_domain::summary::Taxonomy::default_taxonomy();
    let topics: Vec<String> = taxonomy.ids().take(3).map(str::to_owned).collect();
    let calls = calls("srch", 120, &["adv-anne", "adv-bo", "adv-eva"], &topics);
    seed(&edges, &calls, 50).await;
    let server = common::WebService::start(&edges).await;
    let web = Web {
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        base: server.base.clone(),
    };
    Some(Site {
        _env: env,
        edges,
        web,
        server,
        calls,
    })
}

/// Compliance searches by every filter, pages and sorts the results; the
/// customer reference never reaches a URL; each results page is audited
/// with its filters; a wrong filter keeps the input; QA searches its sample
/// only; other roles are refused; a search belongs to its session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compliance_finds_calls_by_every_filter() {
    let Some(s) = site("srch").await else { return };
    let (web, calls) = (&s.web, &s.calls);
    let cato = web.sign_in("co-cato").await;

    // Lands on the search.
    let (_, location, _) = web.get("/", &cato).await;
    assert_eq!(location.as_deref(), Some("/search"));
    let (status, _, form) = web.get("/search", &cato).await;
    assert_eq!(status, 200);
    assert!(
        form.contains("name=\"customer\"") && form.contains("Kundereferanse"),
        "{form}"
    );

    // Customer and desk: the reference goes in the POST body only.
    let at = web.search(&cato, &[("customer", "kunde-3"), ("desk", "markets")]).await;
    assert!(!at.contains("kunde"), "{at}");
    let (status, _, page) = web.get(&at, &cato).await;
    assert_eq!(status, 200, "{page}");
    let want = expect(calls, |c| c.customer == "kunde-3" && c.desk == Desk::Markets);
    assert!(!want.is_empty());
    assert_eq!(listed(&page), want);
    assert!(page.contains(&format!("1–{} av {}", want.len(), want.len())), "{page}");
    assert!(page.contains("value=\"kunde-3\""), "the filters are shown again");
    for link in page.split("href=\"").skip(1).map(|h| h.split('"').next().unwrap()) {
        assert!(!link.contains("kunde-3"), "a customer reference in a link: {link}");
    }
    let e = last_entry(&s.edges).await;
    assert_eq!(
        (
            e.event.action.as_str(),
            e.event.actor.as_str(),
            e.event.outcome.as_str()
        ),
        ("calls.search", "co-cato", "allowed")
    );
    assert!(
        e.event.reason.contains("customer=kunde-3") && e.event.reason.contains("desk=markets"),
        "{}",
        e.event.reason
    );

    // Every other filter, each against the seeded facts.
    let day = oslo_date(T0 - 30 * HOUR);
    type Keep<'a> = Box<dyn Fn(&Seed) -> bool + 'a>;
    let cases: Vec<(Vec<(&str, &str)>, Keep)> = vec![
        (vec![("advisor", "adv-bo")], Box::new(|c| c.advisor == "adv-bo")),
        (
            vec![("service", "loan")],
            Box::new(|c| c.service == ServiceCategory::Loan),
        ),
        (vec![("status", "waiting")], Box::new(|c| c.status() == "waiting")),
        (vec![("status", "ki_off")], Box::new(|c| c.status() == "ki_off")),
        (vec![("status", "no_ki")], Box::new(|c| c.status() == "no_ki")),
        (vec![("status", "rejected")], Box::new(|c| c.status() == "rejected")),
        (
            vec![("from", day.as_str()), ("to", day.as_str())],
            Box::new(|c| oslo_date(c.started_at_us) == day),
        ),
        (vec![("call", "srch-000042")], Box::new(|c| c.call_id == "srch-000042")),
    ];
    for (filters, keep) in cases {
        let at = web.search(&cato, &filters).await;
        let (status, _, page) = web.get(&at, &cato).await;
        assert_eq!(status, 200, "{filters:?}: {page}");
        let want = expect(calls, keep);
        assert!(!want.is_empty(), "{filters:?}");
        assert_eq!(
            listed(&page),
            want.iter().take(50).cloned().collect::<Vec<_>>(),
            "{filters:?}"
        );
    }

    // Paging and sorting: 120 calls, 50 a page, newest first.
    let at = web.search(&cato, &[]).await;
    let all = expect(calls, |_| true);
    let (_, _, page) = web.get(&at, &cato).await;
    assert!(page.contains("1–50 av 120"), "{page}");
    assert_eq!(listed(&page), all[..50]);
    assert!(rel_link(&page, "prev").is_none());
    let next = rel_link(&page, "next").expect("a next page");
    let (_, _, page) = web.get(&next, &cato).await;
    assert!(page.contains("51–100 av 120"), "{page}");
    assert_eq!(listed(&page), all[50..100]);
    let (_, _, page) = web.get(&format!("{at}&page=3"), &cato).await;
    assert!(page.contains("101–120 av 120"), "{page}");
    assert_eq!(listed(&page), all[100..]);
    assert!(rel_link(&page, "next").is_none());
    let (_, _, page) = web.get(&format!("{at}&dir=asc&per=10"), &cato).await;
    let oldest: Vec<String> = all.iter().rev().take(10).cloned().collect();
    assert_eq!(listed(&page), oldest);
    assert!(page.contains("aria-sort=\"ascending\""), "{page}");

    // A wrong filter: the form again, the input kept, a field error; logged
    // as a failed form, not a refusal.
    let csrf = csrf_in(&page);
    let (status, _, page) = web
        .post(
            "/search",
            &cato,
            &[("csrf", &csrf), ("from", "2026-13-40"), ("customer", "kunde-5")],
        )
        .await;
    assert_eq!(status, 422, "{page}");
    assert!(
        page.contains("value=\"2026-13-40\"")
            && page.contains("value=\"kunde-5\"")
            && page.contains("id=\"from-error\""),
        "{page}"
    );
    assert!(
        page.contains("aria-invalid=\"true\"") && page.contains("role=\"alert\""),
        "{page}"
    );
    let e = last_entry(&s.edges).await;
    assert_eq!(
        (e.event.action.as_str(), e.event.outcome.as_str()),
        ("calls.search", "failed")
    );

    // A search belongs to its session.
    let cato2 = web.sign_in("co-cato").await;
    let (status, _, page) = web.get(&at, &cato2).await;
    assert_eq!(status, 404);
    assert!(listed(&page).is_empty() && page.contains("Søk på nytt"), "{page}");

    // QA: its sample only, no customer reference (ignored if sent).
    let kari = web.sign_in("qa-kari").await;
    let (_, _, form) = web.get("/search", &kari).await;
    assert!(!form.contains("name=\"customer\""), "{form}");
    let at = web.search(&kari, &[("customer", "kunde-1")]).await;
    let (_, _, page) = web.get(&at, &kari).await;
    let sampled = expect(calls, |c| matches!(c.ki, Ki::Drafted { sampled: true, .. }));
    assert!(!sampled.is_empty());
    assert_eq!(listed(&page), sampled);
    let e = last_entry(&s.edges).await;
    assert!(!e.event.reason.contains("kunde"), "{}", e.event.reason);

    // An advisor does not search.
    let anne = web.sign_in("adv-anne").await;
    let (status, _, _) = web.get("/search", &anne).await;
    assert_eq!(status, 403);
    let e = last_entry(&s.edges).await;
    assert_eq!(
        (
            e.event.action.as_str(),
            e.event.actor.as_str(),
            e.event.outcome.as_str()
        ),
        ("calls.search", "adv-anne", "refused")
    );

    // In English: the same results, English words.
    let (_, _, page) = web
        .get(
            &web.search(&cato, &[("status", "approved")]).await,
            &format!("{cato}; opptak_lang=en"),
        )
        .await;
    assert!(
        page.contains(" of ") && page.contains("approved") && page.contains("Find a call"),
        "{page}"
    );
    s.server.stop().await;
}

/// Opening a call as compliance: the reason form first (nothing read or
/// logged), a reason too short shown again with the input kept (logged as
/// failed), then 303 to the call page with nothing of the reason in the
/// URL; the read is audited with "category · case · text"; a second
/// request in the session needs no form; another session states it again;
/// another call needs its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reason_is_stated_once_per_session_and_call() {
    let Some(s) = site("rsn").await else { return };
    let web = &s.web;
    let cato = web.sign_in("co-cato").await;
    // A call without KI: its page decrypts nothing (the seeded keys are not real).
    let call = "srch-000005";
    let page = format!("/calls/{call}");
    let before = audit_len(&s.edges).await;
    let (status, _, form) = web.get(&page, &cato).await;
    assert_eq!(status, 200, "{form}");
    assert!(
        form.contains("action=\"/reason\"") && form.contains("Hvorfor åpner du den?"),
        "{form}"
    );
    for category in [
        "complaint",
        "authority_request",
        "subject_access",
        "finansklagenemnda",
        "quality_control",
    ] {
        assert!(form.contains(&format!("value=\"{category}\"")), "{category}");
    }
    let (status, _, _) = web.get(&format!("{page}/audio"), &cato).await;
    assert_eq!(status, 200, "the audio asks too");
    assert_eq!(audit_len(&s.edges).await, before, "asking logs nothing");

    let csrf = csrf_in(&form);
    let subject = format!("call:{call}");
    let state = |category: &'static str, case: &'static str, text: &'static str| {
        let (csrf, subject, cato) = (csrf.clone(), subject.clone(), cato.clone());
        async move {
            web.post(
                "/reason",
                &cato,
                &[
                    ("csrf", csrf.as_str()),
                    ("subject", subject.as_str()),
                    ("category", category),
                    ("case_ref", case),
                    ("text", text),
                ],
            )
            .await
        }
    };
    // Too short, and a complaint without its case number.
    let (status, location, body) = state("complaint", "", "test").await;
    assert_eq!((status, location), (422, None));
    assert!(body.contains(">test</textarea>"), "the text kept: {body}");
    assert!(
        body.contains("id=\"text-error\"") && body.contains("id=\"case_ref-error\""),
        "{body}"
    );
    assert!(body.contains("aria-describedby=\"text-error\""), "{body}");
    assert!(
        body.contains("value=\"complaint\" selected"),
        "the category kept: {body}"
    );
    let e = last_entry(&s.edges).await;
    assert_eq!(
        (
            e.event.action.as_str(),
            e.event.subject.as_str(),
            e.event.outcome.as_str(),
            e.event.reason.as_str()
        ),
        ("read.reason", subject.as_str(), "failed", "test")
    );
    // Stated: 303 to the page, nothing of it in the Location.
    let (status, location, _) = state("complaint", "KL-2026-881", "kunden klager på rådet om fond").await;
    assert_eq!((status, location.as_deref()), (303, Some(page.as_str())));
    let (status, _, body) = web.get(&page, &cato).await;
    assert_eq!(status, 200);
    assert!(!body.contains("action=\"/reason\""), "{body}");
    let why = "Klage fra kunden · KL-2026-881 · kunden klager på rådet om fond";
    let e = last_entry(&s.edges).await;
    assert_eq!(
        (
            e.event.action.as_str(),
            e.event.outcome.as_str(),
            e.event.reason.as_str()
        ),
        ("transcript.read", "allowed", why)
    );
    for link in body.split("href=\"").skip(1).chain(body.split("src=\"").skip(1)) {
        let link = link.split('"').next().unwrap();
        assert!(!link.contains("reason") && !link.contains("KL-2026"), "{link}");
    }
    // The same session again: no form, the same reason logged.
    let (status, _, body) = web.get(&page, &cato).await;
    assert!(status == 200 && !body.contains("action=\"/reason\""));
    assert_eq!(last_entry(&s.edges).await.event.reason, why);
    // Another call asks again.
    let (_, _, body) = web.get("/calls/srch-000010", &cato).await;
    assert!(body.contains("action=\"/reason\""), "{body}");
    // Internal control needs no case number.
    let (status, _, _) = web
        .post(
            "/reason",
            &cato,
            &[
                ("csrf", csrf.as_str()),
                ("subject", "call:srch-000010"),
                ("category", "internal_control"),
                ("case_ref", ""),
                ("text", "stikkprøve av rådgivning"),
            ],
        )
        .await;
    assert_eq!(status, 303);
    // The JSON API takes the reason from a header, never the query string.
    let api = |reason: Option<&'static str>| {
        let mut r = web
            .http
            .get(format!("{}/api/v1/calls/{call}", web.base))
            .header("cookie", &cato);
        if let Some(v) = reason {
            r = r.header("X-Opptak-Reason", v);
        }
        r.send()
    };
    let r = api(Some("authority request FT-2026-12")).await.unwrap();
    assert_eq!(r.status(), 200);
    let json: serde_json::Value = r.json().await.unwrap();
    assert_eq!(json["reason"], "authority request FT-2026-12");
    let e = last_entry(&s.edges).await;
    assert_eq!(e.event.reason, "authority request FT-2026-12");
    let r = api(None).await.unwrap();
    assert_eq!(r.status(), 400);
    let json: serde_json::Value = r.json().await.unwrap();
    assert!(json.to_string().contains("X-Opptak-Reason"), "{json}");
    // Another session states it again.
    let cato2 = web.sign_in("co-cato").await;
    let (_, _, body) = web.get(&page, &cato2).await;
    assert!(body.contains("action=\"/reason\""), "{body}");
    // Signing out ends the reasons with the session.
    let (status, _, _) = web.post("/logout", &cato, &[("csrf", csrf.as_str())]).await;
    assert_eq!(status, 303);
    let cato3 = web.sign_in("co-cato").await;
    let (_, _, body) = web.get(&page, &cato3).await;
    assert!(body.contains("action=\"/reason\""), "{body}");
    s.server.stop().await;
}

/// The advisor's queue and the team lead's escalations: columns, search,
/// filter, sort and paging, the filters kept in the paging links.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_search_filter_sort_and_page() {
    let Some(s) = site("que").await else { return };
    let (web, calls) = (&s.web, &s.calls);
    let now = T0 + 10 * 60_000_000;
    let waiting = |who: &'static str| move |c: &Seed| c.advisor == who && c.status() == "waiting";
    let anne = web.sign_in("adv-anne").await;
    let (_, location, _) = web.get("/", &anne).await;
    assert_eq!(location.as_deref(), Some("/queue"));

    // Longest waiting first (the oldest call ended first).
    let mine: Vec<String> = {
        let mut v = expect(calls, waiting("adv-anne"));
        v.reverse();
        v
    };
    assert!(mine.len() >= 6, "{mine:?}");
    let (status, _, page) = web.get("/queue", &anne).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(listed(&page), mine);
    for head in ["Ventet", "Avdeling", "Emner", "Lengde", "Startet"] {
        assert!(page.contains(head), "{head}: {page}");
    }
    assert!(page.contains("aria-sort=\"descending\""), "{page}");
    assert!(
        page.contains("<td>Markets</td>") || page.contains("<td>Kundesenter</td>"),
        "desk labels: {page}"
    );
    // Sorted by length, shortest first.
    let (_, _, page) = web.get("/queue?sort=length&dir=asc", &anne).await;
    let mut by_length: Vec<&Seed> = calls.iter().filter(|c| waiting("adv-anne")(c)).collect();
    by_length.sort_by(|a, b| a.seconds.cmp(&b.seconds).then(a.call_id.cmp(&b.call_id)));
    assert_eq!(
        listed(&page),
        by_length.iter().map(|c| c.call_id.clone()).collect::<Vec<_>>()
    );
    // Filtered by desk, paged two at a time, the filter kept.
    let desk: Vec<String> = mine
        .iter()
        .filter(|id| {
            calls
                .iter()
                .any(|c| &&c.call_id == id && c.desk == Desk::CustomerCenter)
        })
        .cloned()
        .collect();
    assert!(desk.len() > 2, "{desk:?}");
    let (_, _, page) = web.get("/queue?desk=customer_center&per=2", &anne).await;
    assert_eq!(listed(&page), desk[..2]);
    assert!(page.contains(&format!("1–2 av {}", desk.len())), "{page}");
    let next = rel_link(&page, "next").unwrap();
    assert!(
        next.contains("desk=customer_center") && next.contains("per=2"),
        "{next}"
    );
    let (_, _, page) = web.get(&next, &anne).await;
    assert_eq!(listed(&page), desk[2..4.min(desk.len())]);
    // Found by call id.
    let (_, _, page) = web.get(&format!("/queue?q={}", mine[0]), &anne).await;
    assert_eq!(listed(&page), mine[..1]);
    // By topic.
    let topic = &calls.iter().find(|c| c.call_id == mine[0]).unwrap().topic;
    let (_, _, page) = web.get(&format!("/queue?topic={topic}"), &anne).await;
    let with_topic: Vec<String> = mine
        .iter()
        .filter(|id| calls.iter().any(|c| &&c.call_id == id && &c.topic == topic))
        .cloned()
        .collect();
    assert_eq!(listed(&page), with_topic);

    // The team lead: escalations (ended more than 24 hours ago) of the
    // team (anne and bo, not eva), named and explained; the rest on request.
    let lise = web.sign_in("lead-lise").await;
    let (_, location, _) = web.get("/", &lise).await;
    assert_eq!(location.as_deref(), Some("/team"));
    let team = |c: &Seed| (c.advisor == "adv-anne" || c.advisor == "adv-bo") && c.status() == "waiting";
    let escalated: HashSet<String> = expect(calls, |c| team(c) && now - c.ended_at_us() > 24 * HOUR)
        .into_iter()
        .collect();
    let all_team: HashSet<String> = expect(calls, team).into_iter().collect();
    assert!(escalated.len() < all_team.len() && !escalated.is_empty());
    let (_, _, page) = web.get("/team?per=200", &lise).await;
    assert!(
        page.contains("Eskaleringer: utkast som har ventet mer enn 24 timer"),
        "{page}"
    );
    assert_eq!(listed(&page).into_iter().collect::<HashSet<_>>(), escalated);
    assert!(page.contains("adv-bo") && page.contains("eskalert"), "{page}");
    let (_, _, page) = web.get("/team?show=all&per=200", &lise).await;
    assert_eq!(listed(&page).into_iter().collect::<HashSet<_>>(), all_team);
    let (_, _, page) = web.get("/team?desk=markets&per=200", &lise).await;
    let escalated_markets: HashSet<String> = expect(calls, |c| {
        team(c) && now - c.ended_at_us() > 24 * HOUR && c.desk == Desk::Markets
    })
    .into_iter()
    .collect();
    assert_eq!(listed(&page).into_iter().collect::<HashSet<_>>(), escalated_markets);
    s.server.stop().await;
}
