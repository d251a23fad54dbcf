//! The QA pages in Chromium over a data set with numbers to show (the
//! fixture of [`crate::web_qa`]: seven sampled calls, six of one topic on
//! one day, so the report's rows are published, not withheld): the QA
//! report, the QA queue and the topic dashboard fit the page at 1280 px
//! (no column cut off; the dashboard in its default eight weeks) and do not push the page sideways at 390 px, in
//! Norwegian and in English.

use crate::browser::{assert_clean, report_fits, shot, switch_language, tools_or_skip, wait_for_path};
use crate::common::webdriver::{keys, Browser};
use crate::qa::backends;
use crate::web_qa::{fixture, PW, QA};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qa_report_queue_and_dashboard_fit_the_page() {
    let Some(tools) = tools_or_skip() else { return };
    let env = backends("browser_qa").await.pop().unwrap();
    let f = fixture(&env).await;
    let base = f.server.base.clone();
    let b = &Browser::start(&tools).await;
    b.goto(&format!("{base}/login")).await;
    wait_for_path(b, "/login").await;
    b.press_keys(QA).await;
    b.press_keys(keys::TAB).await;
    b.press_keys(PW).await;
    b.press_keys(keys::ENTER).await;
    wait_for_path(b, "/qa").await;
    assert_clean(b, "qa queue").await;
    shot(b, "qa-7-queue-many").await;
    report_fits(b).await;

    let report = format!("{base}/qa/report?from={0}&to={0}", f.day);
    b.goto(&report).await;
    wait_for_path(b, "/qa/report").await;
    assert_clean(b, "qa report").await;
    // The numbers are there: a published topic row with its means and the
    // changed share.
    let cells = b
        .execute(
            "return [...document.querySelectorAll('main table.decisions tbody td')].map(c => c.textContent.trim());",
            vec![],
        )
        .await;
    assert_eq!(cells[4], serde_json::json!("50\u{a0}%"), "{cells}");
    shot(b, "qa-6-report-numbers").await;
    report_fits(b).await;
    switch_language(b, "en").await;
    assert_clean(b, "qa report, English").await;
    report_fits(b).await;
    switch_language(b, "nb").await;

    // The dashboard's default view: eight weeks.
    b.goto(&format!("{base}/dashboard")).await;
    wait_for_path(b, "/dashboard").await;
    assert_clean(b, "dashboard").await;
    report_fits(b).await;
    f.server.stop().await;
}
