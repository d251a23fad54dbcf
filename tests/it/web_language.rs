//! Norwegian throughout (issue 18): every page of the review service, as
//! every role reaches it by following its own links from its start page,
//! shows in Norwegian no English text of the message catalogue and no raw
//! code (a desk, service, channel, topic, role, audit action or outcome as
//! stored). And the service's shell: each role lands on its own main page,
//! an unknown address is a real 404 page with the menu, a failed sign-in
//! keeps the user name and says how long to wait once the limit is reached.
//!
//! The call's transcript and draft are Norwegian ([`SAID`]), and the users
//! have real names, so any English on a Norwegian page is the service's own.

use crate::common;
use common::{AddApproved, Backend, Env, FixedAsr};
use opptak::app::{RunningKi, RunningRecorder};
use opptak_review::identity::{Identity, Role};
use opptak_review::web::catalogue::{all, Msg};
use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

const PW: &str = "correct horse battery staple";
/// What the customer "says" (Norwegian, as the pages' content will be).
const SAID: &str = "Jeg vil gjerne snakke om boliglånet mitt og renten på sparekontoen.";

/// `(user, display name, role, team, where the role lands)`.
const USERS: [(&str, &str, Role, &str, &str); 6] = [
    ("adv-anne", "Anne Hansen", Role::Advisor, "oslo", "/queue"),
    ("lead-lise", "Lise Berg", Role::TeamLead, "oslo", "/team"),
    ("qa-kari", "Kari Nilsen", Role::Qa, "kvalitet", "/qa"),
    ("co-cato", "Cato Lie", Role::Compliance, "etterlevelse", "/search"),
    ("aud-astrid", "Astrid Moe", Role::Auditor, "revisjon", "/audit"),
    // Not "admin-ola": user ids are shown as they are (the users page, the
    // audit log), and "admin" is an English word of the catalogue.
    ("adm-ola", "Ola Dahl", Role::Admin, "drift", "/admin/users"),
];

/// Most pages one role's crawl visits (paging links could go on).
const MAX_PAGES: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_norwegian_page_shows_english_or_a_raw_code() {
    let env = Env::new(&Backend::Embedded, "language");
    let edges = env.edges().await;
    let id = Identity::open(&edges.review()).await.unwrap();
    for (user, name, role, team, _) in USERS {
        id.add_approved("setup", user, name, role, team, PW).await.unwrap();
    }
    // One KI call of the advisor, drafted; one call without KI.
    let sample_of = |call_id: &str| {
        opptak::demo::samples(&opptak::demo::default_samples_dir())
            .unwrap()
            .into_iter()
            .find(|s| s.call.call_id == call_id)
            .unwrap()
    };
    let mut ki_call = sample_of("demo-0003");
    ki_call.call.started.advisor_id = "adv-anne".into();
    let mut plain = sample_of("demo-0001");
    plain.call.started.advisor_id = "adv-anne".into();
    let recorder = RunningRecorder::spawn(edges.recorder());
    let ki = RunningKi::spawn(&edges, true, true, Some(Arc::new(FixedAsr(SAID))))
        .await
        .unwrap();
    common::publish_events(&edges, &ki_call.call.events(100)).await;
    common::publish_events(&edges, &plain.call.events(100)).await;
    common::wait_for_recordings(&edges, 2, 60).await;
    let cid = opptak_domain::model::CallId::parse(&ki_call.call.call_id).unwrap();
    common::wait_for_draft(&edges, &cid, 60).await;
    ki.stop().await;
    recorder.stop().await.unwrap();
    let server = common::WebService::start(&edges).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    let english = english_texts();
    let codes = raw_codes();
    let mut pages_seen = 0;
    // Every problem of every page, reported together.
    let mut problems = BTreeSet::new();
    let mut crawled = std::collections::BTreeMap::new();
    for (user, _, _, _, lands) in USERS {
        let cookie = common::web_session(&http, &server.base, user, PW).await;
        // Each role lands on its own main page.
        let home = get(&http, &server.base, "/", &cookie).await;
        assert_eq!(home.0, 303, "{user}: /");
        if home.1.as_deref() != Some(lands) {
            problems.insert(format!("{user} lands on {:?}, not its main page {lands}", home.1));
        }

        let mut queue = VecDeque::from([lands.to_owned()]);
        let mut seen = BTreeSet::new();
        let mut visited = Vec::new();
        while let Some(path) = queue.pop_front() {
            if seen.len() >= MAX_PAGES || !seen.insert(path.clone()) {
                continue;
            }
            let (status, location, body) = get(&http, &server.base, &path, &cookie).await;
            if let Some(to) = location {
                queue.push_back(to);
                continue;
            }
            assert!(status.as_u16() < 500, "{user} {path}: {status}\n{body}");
            if !body.contains("<html") {
                continue;
            }
            pages_seen += 1;
            visited.push(path.clone());
            assert!(
                body.contains("<html lang=\"nb\""),
                "{user} {path}: not a Norwegian page"
            );
            let text = visible_text(&body);
            for (name, en) in &english {
                if contains_phrase(&text, en) {
                    problems.insert(format!("{user} {path}: English {en:?} ({name})"));
                }
            }
            for code in &codes {
                if contains_phrase(&text, code) {
                    problems.insert(format!("{user} {path}: raw code {code:?}"));
                }
            }
            for link in links(&body) {
                if crawlable(&link) {
                    queue.push_back(link);
                }
            }
        }
        crawled.insert(user, visited);
    }
    assert!(pages_seen >= 12, "the crawl saw only {pages_seen} pages");
    for (user, must) in [("adv-anne", "/calls/demo-0003"), ("qa-kari", "/calls/demo-0003")] {
        assert!(
            crawled.get(user).is_some_and(|v| v.iter().any(|p| p == must)),
            "{user} never reached {must}: {crawled:?}"
        );
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.into_iter().collect::<Vec<_>>().join("\n")
    );

    // Shell: an unknown address is a 404 page with the menu and sign-out.
    let cookie = common::web_session(&http, &server.base, "adv-anne", PW).await;
    let (status, _, body) = get(&http, &server.base, "/no/such/page", &cookie).await;
    assert_eq!(status, 404);
    assert!(
        body.contains("Siden finnes ikke") && body.contains("action=\"/logout\""),
        "{body}"
    );
    assert!(body.contains("href=\"/queue\""), "the menu is on the 404 page: {body}");
    // An error page reached from deep inside a handler keeps the menu too.
    let (status, _, body) = get(&http, &server.base, "/calls/demo-9999", &cookie).await;
    assert!(status == 404 || status == 403, "{status}");
    assert!(
        body.contains("action=\"/logout\""),
        "the menu is on the error page: {body}"
    );

    // Sign-in: a wrong password keeps the user name and says what went wrong
    // at the field; past the limit the page says how long to wait.
    let page = |name: &str| {
        let http = http.clone();
        let base = server.base.clone();
        let name = name.to_owned();
        async move {
            let r = common::post_sign_in(&http, &base, &name, "wrong").await;
            let retry = r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
            (r.status().as_u16(), retry, r.text().await.unwrap())
        }
    };
    let (status, _, body) = page("guess-who").await;
    assert_eq!(status, 401);
    assert!(body.contains("value=\"guess-who\""), "the user name is kept: {body}");
    assert!(
        body.contains("Feil brukernavn eller passord") && body.contains("aria-invalid=\"true\""),
        "{body}"
    );
    let mut last = (0, None, String::new());
    for _ in 0..6 {
        last = page("guess-who").await;
    }
    assert_eq!(last.0, 429);
    let wait: u64 = last.1.expect("Retry-After").parse().unwrap();
    assert!(wait > 0 && wait <= 15 * 60, "{wait}");
    let minutes = wait.div_ceil(60);
    let said = if minutes == 1 {
        "Vent ett minutt".to_owned()
    } else {
        format!("Vent {minutes} minutter")
    };
    assert!(
        last.2.contains(&said),
        "the page says how long to wait ({said}): {}",
        last.2
    );
    assert!(last.2.contains("value=\"guess-who\""));
}

async fn get(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    cookie: &str,
) -> (reqwest::StatusCode, Option<String>, String) {
    let r = http
        .get(format!("{base}{path}"))
        .header("cookie", cookie)
        .header("accept-language", "nb-NO,nb;q=0.9")
        .send()
        .await
        .unwrap();
    let status = r.status();
    let location = status
        .is_redirection()
        .then(|| r.headers().get("location").map(|v| v.to_str().unwrap().to_owned()))
        .flatten();
    (status, location, r.text().await.unwrap_or_default())
}

/// A link worth following: a page of this site, not an action (sign-out,
/// language switch) and not a download (audio, CSV, static files).
fn crawlable(link: &str) -> bool {
    link.starts_with('/')
        && !link.starts_with("//")
        && !["/logout", "/lang/", "/static/", "/audio", ".csv", ".svg", "/api/", "#"]
            .iter()
            .any(|skip| link.contains(skip))
}

fn links(html: &str) -> Vec<String> {
    html.split("href=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(unescape)
        .collect()
}

/// The English side of every catalogue entry that differs from its
/// Norwegian side, split at placeholders into the parts a page shows
/// verbatim; parts too short to mean anything alone are left out.
fn english_texts() -> Vec<(String, String)> {
    // A one-word English text that is also a Norwegian word of the
    // catalogue ("Last" as in "Last ned") proves nothing on its own.
    let norwegian_words: BTreeSet<&str> = all()
        .iter()
        .flat_map(|(_, _, m)| m.nb.split(|c: char| !c.is_alphanumeric()))
        .filter(|w| !w.is_empty())
        .collect();
    let mut out = Vec::new();
    for (section, name, Msg { nb, en }) in all() {
        if nb == en {
            continue;
        }
        for part in en.split(['{', '}']).step_by(2) {
            let part = part.trim().trim_end_matches([':', '.', ',']).trim();
            let nb_has_it = contains_phrase(nb, part) || norwegian_words.contains(part);
            if part.chars().filter(|c| c.is_alphabetic()).count() >= 4 && !nb_has_it {
                out.push((format!("{section}::{name}"), part.to_owned()));
            }
        }
    }
    assert!(out.len() > 200, "the catalogue has only {} English texts", out.len());
    out
}

/// Codes as the store keeps them, which a page must show by name.
fn raw_codes() -> BTreeSet<String> {
    let mut codes: BTreeSet<String> = [
        "customer_center",
        "private_banking",
        "investment_advice",
        "aino_chatbot",
        "advisor_chat",
        "secure_message",
        "team_lead",
        "transcript.read",
        "recording.play",
        "draft.approve",
        "draft.edit",
        "draft.reject",
        "audit.read",
        "user.list",
        "qa.queue",
        "qa.score",
        "allowed",
        "refused",
        "embedded-v1",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    for t in opptak_domain::summary::Taxonomy::default_taxonomy().topics() {
        if t.id.contains('_') || t.id == "other" {
            codes.insert(t.id.clone());
        }
    }
    codes
}

/// Whether `phrase` occurs in `text` as whole words (case-sensitive; a
/// hyphen joins words, so the user id `admin-ola` holds no word "admin").
fn contains_phrase(text: &str, phrase: &str) -> bool {
    if phrase.is_empty() {
        return false;
    }
    let word = |c: char| c.is_alphanumeric() || c == '_' || c == '-';
    text.match_indices(phrase).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + phrase.len()..].chars().next();
        !before.is_some_and(word) && !after.is_some_and(word)
    })
}

/// What a person sees or hears from a page: its text outside scripts and
/// styles, and the attributes read out or shown (labels, titles,
/// placeholders, alternative text, button values).
fn visible_text(html: &str) -> String {
    let mut out = String::new();
    let mut rest = html;
    let mut skip_until: Option<&str> = None;
    while let Some(lt) = rest.find('<') {
        if skip_until.is_none() {
            out.push_str(&rest[..lt]);
            out.push(' ');
        }
        let Some(gt) = rest[lt..].find('>') else { break };
        let tag = &rest[lt + 1..lt + gt];
        rest = &rest[lt + gt + 1..];
        let name: String = tag.chars().take_while(|c| c.is_alphanumeric() || *c == '/').collect();
        if let Some(end) = skip_until {
            if name == end {
                skip_until = None;
            }
            continue;
        }
        match name.as_str() {
            "script" => skip_until = Some("/script"),
            "style" => skip_until = Some("/style"),
            // The other language's name on the language switch, marked as
            // such (`<a lang="en">English</a>`).
            "a" if tag.contains(" lang=\"en\"") => skip_until = Some("/a"),
            _ => {}
        }
        for attr in ["aria-label", "title", "placeholder", "alt"] {
            if let Some(v) = tag
                .split(&format!("{attr}=\""))
                .nth(1)
                .and_then(|v| v.split('"').next())
            {
                out.push_str(v);
                out.push(' ');
            }
        }
        if tag.contains("type=\"submit\"") || tag.contains("type=\"button\"") {
            if let Some(v) = tag.split(" value=\"").nth(1).and_then(|v| v.split('"').next()) {
                // A button's value is sent, not shown, except for <input>.
                if name == "input" {
                    out.push_str(v);
                    out.push(' ');
                }
            }
        }
    }
    out.push_str(rest);
    unescape(&out)
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

#[test]
fn the_text_extraction_sees_what_a_reader_sees() {
    let html = "<html lang=\"nb\"><style>a{}</style><script>var Call=1</script><p title=\"Tittel\">Hei <b>du</b></p><input type=\"submit\" value=\"Send\"><button type=\"submit\" name=\"action\" value=\"approve\">Godkjenn</button></html>";
    let t = visible_text(html);
    assert!(
        t.contains("Hei") && t.contains("du") && t.contains("Tittel") && t.contains("Send") && t.contains("Godkjenn"),
        "{t}"
    );
    assert!(
        !t.contains("Call") && !t.contains("a{}") && !t.contains("approve"),
        "{t}"
    );
    assert!(contains_phrase("Status: Approved.", "Approved"));
    assert!(!contains_phrase("administrator", "admin"));
    assert!(!contains_phrase("admin-ola", "admin"));
}
