//! The review service's frame in Chromium (issue 18): for every role, in
//! Norwegian and English, the header fits a 390 px wide phone screen (no
//! horizontal scrolling of the page), and axe-core finds nothing on the
//! role's start page, the sign-in form (empty and after a failed attempt)
//! and the 404 page, which keeps the menu.

use crate::browser::{assert_accessible, assert_clean, tools_or_skip};
use crate::common;
use common::webdriver::Browser;
use common::{AddApproved, Backend, Env};
use opptak_review::identity::{Identity, Role};
use serde_json::json;
use std::time::Duration;

const PW: &str = "correct horse battery staple";
const WAIT: Duration = Duration::from_secs(30);

/// `(user, display name, role, team, where the role lands)`.
const USERS: [(&str, &str, Role, &str, &str); 6] = [
    (
        "adv-anne",
        "Anne Margrethe Hansen-Bakke",
        Role::Advisor,
        "oslo",
        "/queue",
    ),
    ("lead-lise", "Lise Berg", Role::TeamLead, "oslo", "/team"),
    ("qa-kari", "Kari Nilsen", Role::Qa, "kvalitet", "/qa"),
    ("co-cato", "Cato Lie", Role::Compliance, "etterlevelse", "/search"),
    ("aud-astrid", "Astrid Moe", Role::Auditor, "revisjon", "/audit"),
    ("admin-ola", "Ola Dahl", Role::Admin, "drift", "/admin/users"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_s_frame_fits_a_phone_and_passes_axe() {
    let Some(tools) = tools_or_skip() else { return };
    let env = Env::new(&Backend::Embedded, "browser-shell");
    let edges = env.edges().await;
    let id = Identity::open(&edges.review()).await.unwrap();
    for (user, name, role, team, _) in USERS {
        id.add_approved("setup", user, name, role, team, PW).await.unwrap();
    }
    let server = common::WebService::start(&edges).await;
    for langs in ["nb-NO,nb", "en-GB,en"] {
        let b = &Browser::start_in(&tools, langs).await;
        set_width(b, 390).await;
        // The sign-in form, then a failed attempt: the message at the field.
        b.goto(&format!("{}/login", server.base)).await;
        assert_clean(b, "login").await;
        fits(b, "login").await;
        b.send_keys(&b.find("input[name=user]").await, "adv-anne").await;
        b.send_keys(&b.find("input[name=password]").await, "not the password")
            .await;
        b.click(&b.find("button[type=submit]").await).await;
        wait_for(b, "#login-error").await;
        // (Not assert_clean: the browser logs the page's own 401.)
        assert_accessible(b, "failed sign-in").await;
        b.browser_log().await;
        assert_eq!(
            b.property(&b.find("input[name=user]").await, "value").await,
            json!("adv-anne"),
            "the user name is kept"
        );
        for (user, _, _, _, lands) in USERS {
            b.goto(&format!("{}/login", server.base)).await;
            b.send_keys(&b.find("input[name=user]").await, user).await;
            b.send_keys(&b.find("input[name=password]").await, PW).await;
            b.click(&b.find("button[type=submit]").await).await;
            let landed = b
                .wait_until(&format!("{user} lands"), WAIT, || async move {
                    let url = b.current_url().await;
                    (!url.ends_with("/login")).then_some(url)
                })
                .await;
            assert!(landed.ends_with(lands), "{user} landed on {landed}, not {lands}");
            assert_clean(b, &format!("{user} {lands} ({langs})")).await;
            fits(b, &format!("{user} {lands} ({langs})")).await;
            // A wrong address: a 404 page with the menu and sign-out.
            b.goto(&format!("{}/no-such-page", server.base)).await;
            assert_eq!(b.status().await, 404);
            assert_accessible(b, "404").await;
            b.browser_log().await;
            fits(b, "404").await;
            assert!(
                b.try_find("header form[action='/logout'] button").await.is_some(),
                "sign-out on the 404 page"
            );
            b.click(&b.find("header form[action='/logout'] button").await).await;
            b.wait_until("signed out", WAIT, || async move {
                b.current_url().await.ends_with("/login").then_some(())
            })
            .await;
        }
    }
    server.stop().await;
}

/// Makes the page's viewport `px` wide (the window's frame, if any, added).
async fn set_width(b: &Browser, px: i64) {
    b.cmd(
        reqwest::Method::POST,
        "/window/rect",
        json!({ "width": px, "height": 844 }),
    )
    .await;
    let inner = b.execute("return window.innerWidth;", vec![]).await.as_i64().unwrap();
    if inner != px {
        b.cmd(
            reqwest::Method::POST,
            "/window/rect",
            json!({ "width": px + (px - inner), "height": 844 }),
        )
        .await;
    }
    assert_eq!(b.execute("return window.innerWidth;", vec![]).await.as_i64(), Some(px));
}

/// Nothing sticks out sideways: the page does not scroll horizontally and
/// every item of the header ends inside the screen.
async fn fits(b: &Browser, page: &str) {
    let v = b
        .execute(
            "const w = document.documentElement.clientWidth;
             const out = [...document.querySelectorAll('header, header *')]
               .filter(e => e.getBoundingClientRect().right > w + 0.5)
               .map(e => e.tagName + ' ' + (e.textContent || '').trim().slice(0, 30));
             return { scroll: document.documentElement.scrollWidth, width: w, out };",
            vec![],
        )
        .await;
    assert!(
        v["scroll"].as_i64() <= v["width"].as_i64(),
        "{page}: the page scrolls sideways: {v}"
    );
    assert_eq!(v["out"], json!([]), "{page}: header items beyond the screen: {v}");
}

async fn wait_for(b: &Browser, css: &str) {
    b.wait_until(css, WAIT, || async move { b.try_find(css).await.map(|_| ()) })
        .await;
}
