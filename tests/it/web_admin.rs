//! The auditor's log and the admin's users over real HTTP (issue 18, items
//! 6 and 7), on SQLite and on PostgreSQL: the log newest first, each filter
//! (actor, action, call, outcome, Oslo dates) with paging that keeps the
//! filters, the CSV of the filtered entries (itself audited), readable
//! labels with a failed form check told apart from an access refusal; the
//! admin's confirmation step, no self-deactivation, re-enabling (with a
//! second admin's approval, as adding), role and team changes with the
//! team picked from the known teams only, and conflicts that keep the form.

use crate::common;
use common::{csrf_in, AddApproved, Backend, Env};
use opptak_domain::time::{days_from_civil, ManualClock};
use opptak_review::identity::{Identity, Role};
use std::sync::Arc;

const PW: &str = "correct horse battery staple";

/// Microseconds of an Oslo winter time (UTC+1).
fn oslo(y: i64, m: u32, d: u32, h: i64) -> i64 {
    (days_from_civil(y, m, d) * 86_400 + (h - 1) * 3600) * 1_000_000
}

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    async fn login(&self, user: &str) -> Option<String> {
        let (s, cookie) = common::web_sign_in(&self.http, &self.base, user, PW).await;
        (s == 303).then_some(cookie).flatten()
    }

    async fn get(&self, path: &str, cookie: &str) -> (u16, reqwest::header::HeaderMap, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap();
        let (s, h) = (r.status().as_u16(), r.headers().clone());
        (s, h, r.text().await.unwrap())
    }

    async fn post(&self, path: &str, cookie: &str, form: &[(&str, &str)]) -> (u16, String) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", cookie)
            .form(form)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }
}

/// The `data-seq` of every row of the log table, in page order.
fn seqs(page: &str) -> Vec<u64> {
    page.split("data-seq=\"")
        .skip(1)
        .map(|s| s.split('"').next().unwrap().parse().unwrap())
        .collect()
}

/// The value of `attr="…"` on every row, in page order.
fn cells(page: &str, attr: &str) -> Vec<String> {
    page.split(&format!("{attr}=\""))
        .skip(1)
        .map(|s| s.split('"').next().unwrap().to_owned())
        .collect()
}

/// The text of the element with `id`.
fn text_of(page: &str, id: &str) -> String {
    let from = page
        .split(&format!("id=\"{id}\""))
        .nth(1)
        .unwrap_or_else(|| panic!("no #{id} in {page}"));
    let inner = from.split_once('>').unwrap().1;
    inner.split('<').next().unwrap().to_owned()
}

/// A user's row in the admin's table.
fn row<'a>(page: &'a str, user: &str) -> &'a str {
    page.split(&format!("<tr data-user=\"{user}\""))
        .nth(1)
        .unwrap_or_else(|| panic!("no row of {user}"))
        .split("</tr>")
        .next()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_auditor_filters_pages_and_exports_the_log() {
    let mut backends = vec![Env::new(&Backend::Embedded, "web_audit")];
    if let (Some(kafka), Some(postgres)) = (common::kafka(), common::postgres_db("web_audit").await) {
        backends.push(Env::new(&Backend::Services { kafka, postgres }, "web_audit"));
    }
    for env in backends {
        let clock = Arc::new(ManualClock::new(oslo(2026, 11, 1, 9)));
        let edges = env.edges().await.with_clock(clock.clone()).unwrap();
        let id = Identity::open(&edges.review()).await.unwrap();
        id.add_approved("setup", "aud-astrid", "Astrid", Role::Auditor, "audit", PW)
            .await
            .unwrap();
        let audit = edges.audit().await.unwrap();
        let event = |actor: &str, action: &str, subject: &str, outcome: &str| opptak_audit::Event {
            actor: actor.into(),
            role: "advisor".into(),
            action: action.into(),
            subject: subject.into(),
            reason: "review".into(),
            outcome: outcome.into(),
        };
        // 1 December: 120 reads of one call by adv-anne; 7 December: a QA
        // score that failed its form check and a refused read.
        clock.set(oslo(2026, 12, 1, 10));
        for _ in 0..120 {
            audit
                .record(&event("adv-anne", "transcript.read", "call:demo-0003", "allowed"))
                .await
                .unwrap();
        }
        clock.set(oslo(2026, 12, 7, 11));
        audit
            .record(&event("qa-kari", "qa.score", "call:demo-0005", "failed"))
            .await
            .unwrap();
        audit
            .record(&event("adv-bo", "transcript.read", "call:demo-0003", "refused"))
            .await
            .unwrap();
        let newest = audit.search(&Default::default(), 0, 1).await.unwrap()[0].seq;
        clock.set(oslo(2026, 12, 8, 9));

        let server = common::WebService::start(&edges).await;
        let c = Client {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: server.base.clone(),
        };
        let astrid = c.login("aud-astrid").await.expect("the auditor signs in");

        // Newest first, 50 a page, the count of all.
        let (s, _, page) = c.get("/audit", &astrid).await;
        assert_eq!(s, 200, "{page}");
        let rows = seqs(&page);
        assert_eq!(rows.len(), 50);
        assert!(rows[0] > newest, "the sign-in is the newest entry: {rows:?}");
        assert!(rows.windows(2).all(|w| w[0] > w[1]), "newest first: {rows:?}");
        assert!(
            text_of(&page, "log-count").starts_with("Viser 1–50 av "),
            "{}",
            text_of(&page, "log-count")
        );
        assert!(
            page.contains("egen samtale") && !page.contains(">review<"),
            "reasons by name"
        );
        assert!(page.contains("mislyktes (skjemafeil e.l.)") && page.contains("avvist (tilgang nektet)"));

        // Outcome: the failed form check is its own outcome, not a refusal.
        let (_, _, page) = c.get("/audit?outcome=failed", &astrid).await;
        assert_eq!(cells(&page, "data-outcome"), ["failed"]);
        assert_eq!(cells(&page, "data-action"), ["qa.score"]);
        assert!(page.contains("Vurderte et utvalgt utkast"));

        // Actor and call (a bare call id finds `call:<id>`), paged with the
        // filters kept in the links.
        let (_, _, page) = c.get("/audit?actor=adv-anne&subject=demo-0003&page=3", &astrid).await;
        assert_eq!(text_of(&page, "log-count"), "Viser 101–120 av 120 oppføringer");
        assert_eq!(seqs(&page).len(), 20);
        assert!(
            page.contains("href=\"/audit?actor=adv-anne&amp;subject=demo-0003&amp;page=2\""),
            "the previous page keeps the filters"
        );
        assert!(!page.contains("rel=\"next\""), "the last page");
        let (_, _, page) = c
            .get("/audit?subject=demo-0003&action=transcript.read&per=200", &astrid)
            .await;
        assert_eq!(text_of(&page, "log-count"), "Viser 1–121 av 121 oppføringer");
        assert!(
            page.contains("<option value=\"transcript.read\" selected"),
            "the select keeps the action"
        );

        // Oslo dates, the to date inclusive.
        let (_, _, page) = c.get("/audit?from=2026-12-07&to=2026-12-07", &astrid).await;
        assert_eq!(cells(&page, "data-seq").len(), 2, "{page}");
        let (_, _, page) = c.get("/audit?to=07.12.2026&actor=adv-anne", &astrid).await;
        assert_eq!(text_of(&page, "log-count"), "Viser 1–50 av 120 oppføringer");
        let (_, _, page) = c.get("/audit?from=2026-12-02&to=2026-12-06", &astrid).await;
        assert_eq!(text_of(&page, "log-count"), "Ingen oppføringer passer filtrene.");

        // A date that is no date: the form again, the field marked.
        let (s, _, page) = c.get("/audit?from=2026-13-01&actor=adv-anne", &astrid).await;
        assert_eq!(s, 400);
        assert!(
            page.contains("aria-invalid=\"true\" aria-describedby=\"f-from-error\""),
            "{page}"
        );
        assert!(page.contains("value=\"adv-anne\""), "the input kept");
        assert!(page.contains("role=\"alert\""));

        // The CSV of the filtered entries, an attachment, audited.
        let (s, h, csv) = c.get("/audit.csv?actor=qa-kari", &astrid).await;
        assert_eq!(s, 200);
        assert_eq!(h["content-type"], "text/csv; charset=utf-8");
        assert!(h["content-disposition"].to_str().unwrap().starts_with("attachment"));
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 2, "{csv}");
        assert!(lines[0].starts_with("seq,time_oslo,actor"));
        assert!(
            lines[1].contains(",2026-12-07T11:00:00+01:00,qa-kari,advisor,qa.score,Vurderte et utvalgt utkast,call:demo-0005,review,failed,mislyktes (skjemafeil e.l.)"),
            "{csv}"
        );
        let (_, _, all) = c.get("/audit.csv?subject=call:demo-0003", &astrid).await;
        assert_eq!(all.lines().count(), 122, "header and 121 entries");

        // Reading and exporting are audited, as the filters asked.
        let log = audit.search(&Default::default(), 0, 200).await.unwrap();
        let mine: Vec<(String, String, String)> = log
            .iter()
            .filter(|e| e.event.actor == "aud-astrid" && e.event.action.starts_with("audit."))
            .map(|e| (e.event.action.clone(), e.event.subject.clone(), e.event.outcome.clone()))
            .collect();
        for want in [
            ("audit.read", "audit", "allowed"),
            ("audit.read", "audit?outcome=failed", "allowed"),
            ("audit.read", "audit?actor=adv-anne&from=2026-13-01", "failed"),
            ("audit.export", "audit.csv?actor=qa-kari", "allowed"),
        ] {
            assert!(
                mine.contains(&(want.0.into(), want.1.into(), want.2.into())),
                "{want:?} not in {mine:?}"
            );
        }
        assert!(audit.verify(None).await.unwrap().ok());

        // A verification that finds an edited entry names it in Norwegian.
        let (_, _, page) = c.get("/audit", &astrid).await;
        crate::audit::sql(
            &env.config.storage.metadata,
            &["UPDATE audit_log SET reason = 'curiosity' WHERE seq = 7"],
        )
        .await;
        let (s, page) = c.post("/audit/verify", &astrid, &[("csrf", &csrf_in(&page))]).await;
        assert_eq!(s, 200);
        assert!(
            page.contains("Kjeden er brutt")
                && page.contains("Oppføring nr. 7: endret (innholdet stemmer ikke med hashen)."),
            "{page}"
        );

        // Another role gets neither the log nor its CSV.
        id.add_approved("setup", "admin-ola", "Ola", Role::Admin, "it", PW)
            .await
            .unwrap();
        let ola = c.login("admin-ola").await.unwrap();
        assert_eq!(c.get("/audit.csv", &ola).await.0, 403);
        assert_eq!(c.get("/audit?outcome=failed", &ola).await.0, 403);
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_confirms_re_enables_and_edits_from_known_teams() {
    let mut backends = vec![Env::new(&Backend::Embedded, "web_admin")];
    if let (Some(kafka), Some(postgres)) = (common::kafka(), common::postgres_db("web_admin").await) {
        backends.push(Env::new(&Backend::Services { kafka, postgres }, "web_admin"));
    }
    for env in backends {
        let clock = Arc::new(ManualClock::new(oslo(2026, 12, 7, 9)));
        let edges = env.edges().await.with_clock(clock.clone()).unwrap();
        let id = Identity::open(&edges.review()).await.unwrap();
        for (user, name, role, team) in [
            ("admin-ola", "Ola", Role::Admin, "it"),
            ("admin-siv", "Siv", Role::Admin, "it"),
            ("adv-anne", "Anne Hansen", Role::Advisor, "oslo"),
            ("lead-lise", "Lise", Role::TeamLead, "oslo"),
        ] {
            id.add_approved("setup", user, name, role, team, PW).await.unwrap();
        }
        id.add_team("setup", "bergen").await.unwrap();
        let audit = edges.audit().await.unwrap();
        let server = common::WebService::start(&edges).await;
        let c = Client {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: server.base.clone(),
        };
        let ola = c.login("admin-ola").await.unwrap();
        let siv = c.login("admin-siv").await.unwrap();
        let (s, _, page) = c.get("/admin/users", &ola).await;
        assert_eq!(s, 200);
        let csrf = csrf_in(&page);
        let siv_csrf = csrf_in(&c.get("/admin/users", &siv).await.2);

        // Per-user labels; no deactivation on one's own row.
        assert!(row(&page, "adv-anne").contains("aria-label=\"Deaktiver Anne Hansen\""));
        assert!(
            !row(&page, "admin-ola").contains("value=\"disable\""),
            "not on the admin's own row"
        );
        assert!(row(&page, "admin-ola").contains("(deg)"));
        assert!(row(&page, "adv-anne").contains(">rådgiver<"), "the role by name");

        // Self-deactivation: refused at the confirmation and at the action,
        // audited as failed (a form check, not an access refusal).
        let (s, page) = c
            .post(
                "/admin/users/confirm",
                &ola,
                &[("csrf", &csrf), ("action", "disable"), ("user", "admin-ola")],
            )
            .await;
        assert_eq!(s, 409);
        assert!(page.contains("Du kan ikke deaktivere deg selv"), "{page}");
        let (s, _) = c
            .post(
                "/admin/users",
                &ola,
                &[("csrf", &csrf), ("action", "disable"), ("user", "admin-ola")],
            )
            .await;
        assert_eq!(s, 409);
        assert_eq!(c.get("/admin/users", &ola).await.0, 200, "still signed in");

        // Disable: the confirmation changes nothing; Bekreft does.
        let (s, page) = c
            .post(
                "/admin/users/confirm",
                &ola,
                &[("csrf", &csrf), ("action", "disable"), ("user", "adv-anne")],
            )
            .await;
        assert_eq!(s, 200);
        assert!(
            page.contains("Deaktivere Anne Hansen?") && page.contains(">Bekreft<"),
            "{page}"
        );
        assert!(page.contains("name=\"action\" value=\"disable\""));
        assert!(
            c.login("adv-anne").await.is_some(),
            "not disabled by the confirmation page"
        );
        let (s, _) = c
            .post(
                "/admin/users",
                &ola,
                &[("csrf", &csrf), ("action", "disable"), ("user", "adv-anne")],
            )
            .await;
        assert_eq!(s, 303);
        assert!(c.login("adv-anne").await.is_none(), "disabled");
        let (_, _, page) = c.get("/admin/users?done=disable&user=adv-anne", &ola).await;
        assert!(row(&page, "adv-anne").contains("deaktivert"));
        assert!(row(&page, "adv-anne").contains("aria-label=\"Aktiver igjen: Anne Hansen\""));

        // Re-enable: an advisor reads content, so a second admin approves,
        // as for a new user; the one who re-enabled cannot.
        let (s, page) = c
            .post(
                "/admin/users/confirm",
                &ola,
                &[("csrf", &csrf), ("action", "enable"), ("user", "adv-anne")],
            )
            .await;
        assert_eq!(s, 200);
        assert!(
            page.contains("annen administrator"),
            "says it waits for approval: {page}"
        );
        let (s, _) = c
            .post(
                "/admin/users",
                &ola,
                &[("csrf", &csrf), ("action", "enable"), ("user", "adv-anne")],
            )
            .await;
        assert_eq!(s, 303);
        assert!(c.login("adv-anne").await.is_none(), "waits for a second admin");
        let (s, _) = c
            .post(
                "/admin/users",
                &ola,
                &[("csrf", &csrf), ("action", "approve"), ("user", "adv-anne")],
            )
            .await;
        assert_eq!(s, 400, "not the admin who asked");
        let (s, _) = c
            .post(
                "/admin/users",
                &siv,
                &[("csrf", &siv_csrf), ("action", "approve"), ("user", "adv-anne")],
            )
            .await;
        assert_eq!(s, 303);
        assert!(c.login("adv-anne").await.is_some(), "enabled again");

        // Role and team: the team from the list only.
        let (s, _, page) = c.get("/admin/users/lead-lise/edit", &ola).await;
        assert_eq!(s, 200);
        assert!(
            page.contains("<select id=\"e-team\" name=\"team\""),
            "a select, not free text"
        );
        assert!(page.contains("<option value=\"bergen\">bergen</option>"));
        let change = |team: &'static str, role: &'static str| {
            [
                ("action", "change"),
                ("user", "lead-lise"),
                ("role", role),
                ("team", team),
            ]
        };
        let with = |csrf: &str, f: [(&'static str, &'static str); 4]| {
            let mut v = vec![("csrf", csrf.to_owned())];
            v.extend(f.iter().map(|(k, v)| (*k, (*v).to_owned())));
            v
        };
        let form = with(&csrf, change("bregen", "advisor"));
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (s, page) = c.post("/admin/users/confirm", &ola, &form).await;
        assert_eq!(s, 422, "a typo is no team");
        assert!(
            page.contains("aria-invalid=\"true\" aria-describedby=\"e-team-error\""),
            "{page}"
        );
        assert!(page.contains("Velg et team fra listen."));
        let (s, _) = c.post("/admin/users", &ola, &form).await;
        assert_eq!(s, 422, "nor when posted without the confirmation");
        let form = with(&csrf, change("bergen", "advisor"));
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (s, page) = c.post("/admin/users/confirm", &ola, &form).await;
        assert_eq!(s, 200);
        assert!(
            page.contains("Rolle: teamleder → rådgiver") && page.contains("Team: oslo → bergen"),
            "{page}"
        );
        assert!(
            !row(&c.get("/admin/users", &ola).await.2, "lead-lise").contains("bergen"),
            "not changed by the confirmation page"
        );
        let (s, _) = c.post("/admin/users", &ola, &form).await;
        assert_eq!(s, 303);
        let users = id.listing().await.unwrap();
        let lise = users.iter().find(|l| l.user.user_id == "lead-lise").unwrap();
        assert_eq!(
            (lise.user.role, lise.user.team.as_str(), lise.waiting),
            (Role::Advisor, "bergen", true)
        );

        // Nor one's own role: not offered, and refused.
        let (_, _, page) = c.get("/admin/users/admin-ola/edit", &ola).await;
        assert!(
            page.contains("Din egen rolle kan bare en annen administrator endre.")
                && !page.contains("<select id=\"e-role\""),
            "{page}"
        );
        let (s, _) = c
            .post(
                "/admin/users/confirm",
                &ola,
                &[
                    ("csrf", &csrf),
                    ("action", "change"),
                    ("user", "admin-ola"),
                    ("role", "advisor"),
                    ("team", "it"),
                ],
            )
            .await;
        assert_eq!(s, 409);

        // Conflicts come back as the form, input kept, the field named.
        let add = |user: &'static str, team: &'static str| {
            vec![
                ("csrf", csrf.clone()),
                ("action", "add".into()),
                ("user", user.into()),
                ("name", "Nina Nordmann".into()),
                ("role", "advisor".into()),
                ("team", team.into()),
                ("password", PW.into()),
            ]
        };
        let form = add("adv-anne", "oslo");
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (s, page) = c.post("/admin/users", &ola, &form).await;
        assert_eq!(s, 409);
        assert!(page.contains("value=\"Nina Nordmann\""), "the name kept");
        assert!(
            page.contains("aria-invalid=\"true\" aria-describedby=\"u-user-error u-user-hint\""),
            "{page}"
        );
        assert!(page.contains("Det finnes allerede en bruker med dette brukernavnet."));
        assert!(page.contains("<option value=\"oslo\" selected"), "the team kept");
        let form = add("adv-nina", "nowhere");
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (s, page) = c.post("/admin/users", &ola, &form).await;
        assert_eq!(s, 422);
        assert!(page.contains("e-team-error") || page.contains("u-team-error"), "{page}");
        let (s, page) = c
            .post(
                "/admin/users",
                &ola,
                &[("csrf", &csrf), ("action", "team"), ("team", "bergen")],
            )
            .await;
        assert_eq!(s, 409);
        assert!(page.contains("Teamet finnes allerede.") && page.contains("t-team-error"));
        let (s, _) = c
            .post(
                "/admin/users",
                &ola,
                &[("csrf", &csrf), ("action", "team"), ("team", "trondheim")],
            )
            .await;
        assert_eq!(s, 303);
        assert!(id.teams().await.unwrap().contains(&"trondheim".to_owned()));

        // Every action audited, failures as failed.
        let log = audit.search(&Default::default(), 0, 500).await.unwrap();
        let got: Vec<(String, String, String)> = log
            .iter()
            .filter(|e| e.event.actor.starts_with("admin-"))
            .map(|e| (e.event.action.clone(), e.event.subject.clone(), e.event.outcome.clone()))
            .collect();
        for want in [
            ("user.disable", "user:admin-ola", "failed"),
            ("user.disable", "user:adv-anne", "allowed"),
            ("user.enable", "user:adv-anne", "allowed"),
            ("user.approve", "user:adv-anne", "refused"),
            ("user.approve", "user:adv-anne", "allowed"),
            ("user.change", "user:lead-lise", "failed"),
            ("user.change", "user:lead-lise", "allowed"),
            ("user.change", "user:admin-ola", "failed"),
            ("user.create", "user:adv-anne", "failed"),
            ("user.create", "user:adv-nina", "failed"),
            ("team.create", "team:bergen", "failed"),
            ("team.create", "team:trondheim", "allowed"),
            ("user.read", "user:lead-lise", "allowed"),
        ] {
            assert!(
                got.contains(&(want.0.into(), want.1.into(), want.2.into())),
                "{want:?} not in {got:?}"
            );
        }
        assert!(
            !got.iter()
                .any(|(a, _, o)| a.starts_with("user.") && o == "refused" && a != "user.approve"),
            "no form check logged as an access refusal: {got:?}"
        );
        server.stop().await;
    }
}
