//! The status page of the admin listener: `/status` (JSON for scripts) and `/` (HTML readable
//! without JavaScript) show the gateway's figures as it counts them, a dead node out of
//! rotation with its reason, under a Content-Security-Policy that loads nothing from elsewhere.

use reqwest::Method;
use serde_json::Value;

use crate::common::{eventually_get, FakeUpstream, TestGateway, DEADLINE, FLEET};

/// A gateway in front of two nodes, the second stopped and ejected (for ten minutes, so it
/// stays out while the test looks), with a token of `elastic/fleet-server`.
pub struct DeadNode {
    pub gw: TestGateway,
    pub token: String,
    pub alive: FakeUpstream,
    pub dead: FakeUpstream,
}

impl DeadNode {
    pub async fn start() -> DeadNode {
        let alive = FakeUpstream::start().await;
        let mut dead = FakeUpstream::start().await;
        let gw = TestGateway::builder()
            .upstreams(&[alive.addr, dead.addr])
            .config("[upstream]\neject_for = \"10m\"\neject_max = \"10m\"\n")
            .build()
            .await;
        let token = gw.create_token(FLEET, "t1").await;
        dead.stop().await;
        let label = format!("http://{}", dead.addr);
        // Requests go to either node at random: one reaches the dead one and ejects it.
        eventually_get("the stopped node ejected", DEADLINE, || async {
            let sent = gw.with_token(Method::GET, "/_search", &token).send().await;
            let _ = sent.map_err(|e| e.to_string())?;
            let doc = status(&gw).await;
            match node(&doc, &label) {
                Some(n) if n["state"] == "out" => Ok(()),
                seen => Err(format!("{seen:?}")),
            }
        })
        .await;
        DeadNode {
            gw,
            token,
            alive,
            dead,
        }
    }

    /// The dead node as the page names it.
    pub fn dead_label(&self) -> String {
        format!("http://{}", self.dead.addr)
    }
}

/// `GET /status` on the admin listener, as JSON.
pub async fn status(gw: &TestGateway) -> Value {
    let (code, body) = gw.admin_get("/status").await;
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn node<'a>(doc: &'a Value, label: &str) -> Option<&'a Value> {
    doc["nodes"].as_array()?.iter().find(|n| n["node"] == label)
}

#[tokio::test]
async fn the_document_shows_a_dead_node_out_with_its_reason_and_counts_that_move() {
    let setup = DeadNode::start().await;
    let gw = &setup.gw;
    let doc = status(gw).await;
    let dead = node(&doc, &setup.dead_label()).unwrap();
    assert_eq!(dead["state"], "out", "{dead}");
    let reason = dead["reason"].as_str().unwrap();
    assert!(reason.contains("refused"), "{reason}");
    assert!(dead["back_in_seconds"].as_u64().unwrap() > 0, "{dead}");
    assert_eq!(dead["ejections"], 1);
    assert_eq!(dead["last_error"]["error"], reason);
    assert_eq!(dead["source"], "configured");
    assert_eq!(dead["active_check"], Value::Null);
    let alive = node(&doc, &format!("http://{}", setup.alive.addr)).unwrap();
    assert_eq!(alive["state"], "in", "{alive}");
    assert_eq!(alive["reason"], Value::Null);

    let fleet = doc["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["account"] == FLEET)
        .unwrap();
    assert_eq!(fleet["tokens"], 1);
    assert_eq!(fleet["limited"], 0);
    assert_eq!(doc["store"]["backend"], "journal");
    assert_eq!(doc["store"]["tokens"], 1);
    assert!(doc["store"]["journal_bytes"].as_u64().unwrap() > 0);
    assert_eq!(doc["gateway"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(doc["gateway"]["config_source"], "test");
    assert_eq!(doc["gateway"]["last_reload"], Value::Null);
    let names: Vec<&str> = doc["gateway"]["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["http", "admin"]);
    assert_eq!(doc["history"]["interval_seconds"], 2);

    // Counts move with what the gateway does.
    let forwarded = |doc: &Value| {
        doc["gateway"]["requests_total"]["forwarded"]
            .as_u64()
            .unwrap()
    };
    let failures = |doc: &Value| doc["security"]["auth_failures_total"].as_u64().unwrap();
    let before = status(gw).await;
    let answer = gw
        .with_token(Method::GET, "/_search", &setup.token)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let refused = gw
        .with_token(Method::GET, "/", "nope")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let after = status(gw).await;
    assert_eq!(forwarded(&after), forwarded(&before) + 1);
    assert_eq!(failures(&after), failures(&before) + 1);
    assert_eq!(after["security"]["throttled_addresses"], 0);
    assert!(
        after["security"]["password_pool"]["capacity"]
            .as_u64()
            .unwrap()
            > 0
    );
}

#[tokio::test]
async fn the_page_without_javascript_holds_the_tables_under_a_strict_policy() {
    let setup = DeadNode::start().await;
    let addr = setup.gw.admin_addr.unwrap();
    let response = setup
        .gw
        .client
        .get(format!("http://{addr}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    let policy = headers["content-security-policy"].to_str().unwrap();
    assert!(policy.contains("default-src 'none'"), "{policy}");
    assert!(policy.contains("script-src 'self'"), "{policy}");
    assert!(!policy.contains("unsafe-inline"), "{policy}");
    let page = response.text().await.unwrap();
    for section in [
        "gateway", "charts", "nodes", "accounts", "store", "security",
    ] {
        assert!(
            page.contains(&format!("<section id=\"{section}\">")),
            "{section}"
        );
    }
    assert!(page.contains("<table class=\"grid\">"));
    assert!(page.contains("<svg class=\"chart\""));
    // The dead node's row: out, in the class the style colours red, with its reason.
    let row_start = page
        .find(&format!("<td class=\"\">{}</td>", setup.dead_label()))
        .unwrap();
    let row = &page[page[..row_start].rfind("<tr").unwrap()..];
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(row.starts_with("<tr class=\"node out\">"), "{row}");
    assert!(row.contains("<td class=\"out\">out</td>"), "{row}");
    assert!(
        row.contains("refused or did not accept a connection"),
        "{row}"
    );
    // Nothing is loaded from elsewhere: every src and href is the listener's own.
    for attribute in ["src=\"", "href=\""] {
        for (at, _) in page.match_indices(attribute) {
            let value = &page[at + attribute.len()..];
            assert!(
                value.starts_with('/') && !value.starts_with("//"),
                "{}",
                &value[..40.min(value.len())]
            );
        }
    }
    assert!(!page.contains("<script>") && !page.contains("style=\""));

    for (path, kind) in [
        ("/status.js", "text/javascript"),
        ("/status.css", "text/css"),
    ] {
        let response = setup
            .gw
            .client
            .get(format!("http://{addr}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let content_type = response.headers()["content-type"].to_str().unwrap();
        assert!(content_type.starts_with(kind), "{path}: {content_type}");
        let text = response.text().await.unwrap();
        // The script fetches only `/status`; the style imports nothing.
        assert!(
            !text.contains("url(") && !text.contains("@import"),
            "{path}"
        );
        assert_eq!(
            text.matches("fetch(").count(),
            usize::from(path == "/status.js")
        );
    }
    let css = setup.gw.admin_get("/status.css").await.1;
    assert!(
        css.contains("td.out, p.out { color: #fff; background: #c62828;"),
        "{css}"
    );
}

#[tokio::test]
async fn a_refused_reload_shows_until_one_is_applied() {
    use crate::common::process::{field, tokengate, GatewayProcess};
    let upstream = FakeUpstream::start().await;
    let (etc, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config = etc.path().join("tokengate.toml");
    let good = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[upstream]\nurl = \"http://{}\"\n",
        upstream.addr
    );
    std::fs::write(&config, &good).unwrap();
    let mut gw = GatewayProcess::spawn(
        tokengate()
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(data.path())
            .env("ELASTIC_PASSWORD", "status-elastic-pw"),
    )
    .await;
    let line = gw.wait_for("admin listener").await;
    let admin = field(&line, "addr").unwrap().to_owned();
    let client = crate::common::client();
    let last_reload = || async {
        let body = client
            .get(format!("http://{admin}/status"))
            .send()
            .await
            .map_err(|e| e.to_string())?
            .text()
            .await
            .map_err(|e| e.to_string())?;
        let doc: Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
        Ok::<Value, String>(doc["gateway"]["last_reload"].clone())
    };
    assert_eq!(last_reload().await.unwrap(), Value::Null);

    std::fs::write(
        &config,
        format!("{good}[admin]\nrequire_auth = \"maybe\"\n"),
    )
    .unwrap();
    gw.signal("HUP");
    gw.wait_for("configuration reload refused").await;
    let refused = eventually_get("the refused reload on the page", DEADLINE, || async {
        let reload = last_reload().await?;
        match reload["outcome"].as_str() {
            Some("refused") => Ok(reload),
            _ => Err(reload.to_string()),
        }
    })
    .await;
    let problems = refused["problems"].as_str().unwrap();
    assert!(problems.contains("[admin] require_auth"), "{problems}");

    std::fs::write(&config, &good).unwrap();
    gw.signal("HUP");
    gw.wait_for("configuration reloaded").await;
    eventually_get("the applied reload on the page", DEADLINE, || async {
        let reload = last_reload().await?;
        match (reload["outcome"].as_str(), &reload["problems"]) {
            (Some("applied"), Value::Null) => Ok(()),
            _ => Err(reload.to_string()),
        }
    })
    .await;
}
