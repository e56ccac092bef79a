//! The status page in a real browser: headless Chromium loads it from the admin listener, its
//! script refreshes it from `/status`, and the DOM it renders shows a dead node out, in red,
//! with its reason. Skipped (with a printed reason) where no Chromium is installed, except under
//! `CI=true`, where it fails instead.
//!
//! `TOKENGATE_STATUS_SCREENSHOT=<path.png>` also writes a screenshot of the page there (that is
//! how docs/status.png is made).

use std::path::PathBuf;
use std::time::Duration;

use crate::common::browser::Browser;
use crate::common::skipped;
use crate::status::DeadNode;

/// Virtual time the page's script runs for: enough for the first refresh and two timed ones.
const BUDGET: Duration = Duration::from_millis(5000);

#[tokio::test]
async fn the_rendered_page_shows_the_dead_node_out_in_red_after_a_refresh() {
    let Some(browser) = Browser::find() else {
        let why = "no chromium installed (apt-get install chromium)";
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true: the browser test must run: {why}"
        );
        skipped("status_page", why);
        return;
    };
    let setup = DeadNode::start().await;
    let url = format!("http://{}/", setup.gw.admin_addr.unwrap());
    let dom = browser.dump_dom(&url, BUDGET).await;

    // The script ran and replaced the server's rendering at least once.
    let refreshes = attribute(&dom, "<body", "data-refreshes")
        .and_then(|n| n.parse::<u32>().ok())
        .unwrap_or(0);
    assert!(
        refreshes >= 1,
        "the script never refreshed the page:\n{dom}"
    );
    assert!(dom.contains("id=\"generated\""), "{dom}");
    assert!(
        !dom.contains("server-rendered;"),
        "the server's text is still there:\n{dom}"
    );

    // The dead node's row, as the browser rendered it.
    let label = setup.dead_label();
    let cell = format!("<td>{label}</td>");
    let at = dom
        .find(&cell)
        .unwrap_or_else(|| panic!("no row for {label}:\n{dom}"));
    let row = &dom[dom[..at].rfind("<tr").unwrap()..];
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(row.starts_with("<tr class=\"node out\">"), "{row}");
    assert!(row.contains("<td class=\"out\">out</td>"), "{row}");
    assert!(
        row.contains("refused or did not accept a connection"),
        "{row}"
    );
    let alive = format!("<td>http://{}</td>", setup.alive.addr);
    let at = dom.find(&alive).unwrap();
    assert!(dom[..at].ends_with("<tr class=\"node in\">"), "{dom}");

    if let Ok(path) = std::env::var("TOKENGATE_STATUS_SCREENSHOT") {
        let path = PathBuf::from(path);
        traffic(&setup, SCREENSHOT_TRAFFIC).await;
        browser.screenshot(&url, &path, (1280, 1400), BUDGET).await;
    }
}

/// How long the screenshot's charts get traffic to draw (only when a screenshot is asked for).
const SCREENSHOT_TRAFFIC: Duration = Duration::from_secs(40);

/// Requests for `how_long`, good ones and a few with a bad token, so the charts have lines.
async fn traffic(setup: &DeadNode, how_long: Duration) {
    let end = tokio::time::Instant::now() + how_long;
    let mut n = 0u32;
    while tokio::time::Instant::now() < end {
        let token = if n.is_multiple_of(7) {
            "bad"
        } else {
            setup.token.as_str()
        };
        let _ = setup
            .gw
            .with_token(reqwest::Method::GET, "/_search", token)
            .send()
            .await;
        n += 1;
        tokio::time::sleep(Duration::from_millis(5 + u64::from(n % 40))).await;
    }
}

/// The value of `name` on the first element starting with `element`.
fn attribute<'a>(dom: &'a str, element: &str, name: &str) -> Option<&'a str> {
    let start = dom.find(element)?;
    let tag = &dom[start..start + dom[start..].find('>')?];
    let key = format!("{name}=\"");
    let from = tag.find(&key)? + key.len();
    Some(&tag[from..from + tag[from..].find('"')?])
}
