//! The status page as HTML, rendered on the server from the status document: readable without
//! JavaScript, every value escaped. `status.js` renders the same document into the same
//! structure (section ids, table classes, row classes) after each refresh.

use std::fmt::Write;

use serde_json::Value;

use super::charts;
use super::escape::escape;

/// A value as the page shows it: text as is, numbers as they are, `null` as a dash.
fn show(value: &Value) -> String {
    match value {
        Value::Null => "\u{2014}".to_owned(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => if *b { "yes" } else { "no" }.to_owned(),
        other => other.to_string(),
    }
}

/// Seconds as `3d 4h`, `5m 6s`: what an uptime or a wait reads best as.
pub fn duration(seconds: u64) -> String {
    let (d, h, m, s) = (
        seconds / 86_400,
        seconds / 3600 % 24,
        seconds / 60 % 60,
        seconds % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// The whole page.
pub fn render(doc: &Value) -> String {
    let mut page = String::with_capacity(16 * 1024);
    page.push_str(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>tokengate status</title>\
         <link rel=\"stylesheet\" href=\"/status.css\">\
         <script src=\"/status.js\" defer></script></head>\n",
    );
    let _ = write!(
        page,
        "<body data-refreshes=\"0\"><header><h1>tokengate</h1>\
         <p id=\"generated\" data-at=\"{}\">server-rendered; the page refreshes itself every \
         2 s when JavaScript runs</p></header>\n<main id=\"status\">",
        escape(&show(&doc["generated_at"]))
    );
    page.push_str(&sections(doc));
    page.push_str("</main></body></html>\n");
    page
}

/// Every section, in the page's order.
fn sections(doc: &Value) -> String {
    let mut out = String::new();
    out.push_str(&gateway(&doc["gateway"]));
    out.push_str(&charts_section(&doc["history"]));
    out.push_str(&nodes(&doc["nodes"]));
    out.push_str(&accounts(&doc["accounts"]));
    out.push_str(&store(&doc["store"]));
    out.push_str(&security(&doc["security"]));
    out
}

/// A section with a heading and a two-column table of (name, value, value's class).
fn key_values(id: &str, title: &str, rows: &[(&str, String, &str)]) -> String {
    let mut out = format!(
        "<section id=\"{id}\"><h2>{}</h2><table class=\"kv\"><tbody>",
        escape(title)
    );
    for (name, value, class) in rows {
        let _ = write!(
            out,
            "<tr><th>{}</th><td class=\"{class}\">{}</td></tr>",
            escape(name),
            escape(value)
        );
    }
    out.push_str("</tbody></table></section>\n");
    out
}

fn gateway(g: &Value) -> String {
    let reload = match &g["last_reload"] {
        Value::Null => ("none since the start".to_owned(), ""),
        r if r["outcome"] == "refused" => (format!("refused: {}", show(&r["problems"])), "out"),
        _ => ("applied".to_owned(), "in"),
    };
    let listeners = list(&g["listeners"], |l| {
        format!("{} {}", show(&l["name"]), show(&l["address"]))
    });
    let tls = match &g["tls"] {
        Value::Null => ("no [tls] listener".to_owned(), ""),
        t => {
            let days = t["days_to_expiry"].as_i64();
            let class = match days {
                Some(d) if d < 14 => "out",
                Some(d) if d < 30 => "warn",
                _ => "",
            };
            (
                format!(
                    "{}, {} days to expiry",
                    show(&t["subject"]),
                    show(&t["days_to_expiry"])
                ),
                class,
            )
        }
    };
    let requests = match &g["requests_total"] {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| format!("{k} {}", show(v)))
            .collect::<Vec<_>>()
            .join(", "),
        _ => String::new(),
    };
    key_values(
        "gateway",
        "Gateway",
        &[
            ("version", show(&g["version"]), ""),
            (
                "uptime",
                duration(g["uptime_seconds"].as_u64().unwrap_or(0)),
                "",
            ),
            ("configuration", show(&g["config_source"]), ""),
            ("last reload", reload.0, reload.1),
            ("listeners", listeners, ""),
            ("TLS certificate", tls.0, tls.1),
            ("client connections", show(&g["client_connections"]), ""),
            ("requests since start", requests, ""),
        ],
    )
}

fn list(value: &Value, each: impl Fn(&Value) -> String) -> String {
    value
        .as_array()
        .map(|items| items.iter().map(each).collect::<Vec<_>>().join(", "))
        .unwrap_or_default()
}

fn charts_section(history: &Value) -> String {
    let samples = history["samples"].as_array().map_or(&[][..], Vec::as_slice);
    let mut out =
        String::from("<section id=\"charts\"><h2>Last minutes</h2><div class=\"charts\">");
    for (title, series) in charts::all(samples) {
        let legend = series
            .iter()
            .map(|s| format!("<span class=\"key {}\">{}</span>", s.class, escape(s.name)))
            .collect::<String>();
        let _ = write!(
            out,
            "<figure>{}<figcaption>{} (peak {:.1}) {legend}</figcaption></figure>",
            charts::svg(title, &series),
            escape(title),
            charts::peak(&series)
        );
    }
    out.push_str("</div></section>\n");
    out
}

/// A section with a table of `columns`; each row has a class and its cells.
fn table(
    id: &str,
    title: &str,
    columns: &[&str],
    rows: &[(String, Vec<(String, &str)>)],
) -> String {
    let mut out = format!(
        "<section id=\"{id}\"><h2>{}</h2><table class=\"grid\"><thead><tr>",
        escape(title)
    );
    for column in columns {
        let _ = write!(out, "<th>{}</th>", escape(column));
    }
    out.push_str("</tr></thead><tbody>");
    for (class, cells) in rows {
        let _ = write!(out, "<tr class=\"{}\">", escape(class));
        for (text, cell_class) in cells {
            let _ = write!(out, "<td class=\"{cell_class}\">{}</td>", escape(text));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></section>\n");
    out
}

fn nodes(nodes: &Value) -> String {
    let rows: Vec<_> = nodes
        .as_array()
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .map(|n| {
            let state = if n["state"] == "in" { "in" } else { "out" };
            let back_in = n["back_in_seconds"]
                .as_u64()
                .map_or(String::new(), duration);
            let last_error = match &n["last_error"] {
                Value::Null => String::new(),
                e => show(&e["error"]),
            };
            let check = match &n["active_check"] {
                Value::Null => "off".to_owned(),
                c => format!(
                    "{} ({} in a row)",
                    if c["passing"] == true {
                        "passing"
                    } else {
                        "failing"
                    },
                    c["streak"].as_i64().unwrap_or(0).abs()
                ),
            };
            let cells = vec![
                (show(&n["node"]), ""),
                (state.to_owned(), state),
                (show(&n["reason"]), ""),
                (back_in, ""),
                (show(&n["in_flight"]), "num"),
                (show(&n["idle_connections"]), "num"),
                (show(&n["ejections"]), "num"),
                (last_error, ""),
                (check, ""),
                (show(&n["source"]), ""),
            ];
            (format!("node {state}"), cells)
        })
        .collect();
    let columns = [
        "node",
        "state",
        "reason",
        "back in",
        "in flight",
        "idle",
        "ejections",
        "last error",
        "active check",
        "source",
    ];
    table("nodes", "Upstream nodes", &columns, &rows)
}

fn accounts(accounts: &Value) -> String {
    let rows: Vec<_> = accounts
        .as_array()
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .map(|a| {
            let credential = show(&a["credential"]);
            let class = if credential == "auto key being made" {
                "warn"
            } else {
                ""
            };
            let cells = vec![
                (show(&a["account"]), ""),
                (show(&a["tokens"]), "num"),
                (credential, class),
                (show(&a["requests_per_second"]), "num"),
                (show(&a["errors_4xx"]), "num"),
                (show(&a["errors_5xx"]), "num"),
                (show(&a["limited"]), "num"),
            ];
            ("account".to_owned(), cells)
        })
        .collect();
    let columns = [
        "account",
        "tokens",
        "upstream credential",
        "requests/s",
        "4xx",
        "5xx",
        "limited",
    ];
    table("accounts", "Accounts", &columns, &rows)
}

fn store(s: &Value) -> String {
    let stale_class = match (
        s["staleness_seconds"].as_f64(),
        s["max_staleness_seconds"].as_f64(),
    ) {
        (Some(stale), Some(max)) if stale > max => "out",
        _ => "",
    };
    key_values(
        "store",
        "Token store",
        &[
            ("backend", show(&s["backend"]), ""),
            ("location", show(&s["location"]), ""),
            ("tokens", show(&s["tokens"]), ""),
            ("journal bytes", show(&s["journal_bytes"]), ""),
            ("etcd endpoints", list(&s["etcd_endpoints"], show), ""),
            ("staleness (s)", show(&s["staleness_seconds"]), stale_class),
        ],
    )
}

fn security(s: &Value) -> String {
    let top = list(&s["throttled_top"], |t| {
        format!(
            "{} ({}s)",
            show(&t["address"]),
            show(&t["retry_after_seconds"])
        )
    });
    let throttled = s["throttled_addresses"].as_u64().unwrap_or(0);
    let pool = &s["password_pool"];
    key_values(
        "security",
        "Security",
        &[
            (
                "failed authentications / min",
                show(&s["auth_failures_per_minute"]),
                "",
            ),
            (
                "failed authentications since start",
                show(&s["auth_failures_total"]),
                "",
            ),
            (
                "throttled addresses",
                format!("{throttled} {top}").trim_end().to_owned(),
                if throttled > 0 { "warn" } else { "" },
            ),
            (
                "password pool in use",
                format!("{} of {}", show(&pool["in_use"]), show(&pool["capacity"])),
                "",
            ),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn everything_put_in_the_page_is_escaped() {
        let doc = json!({
            "gateway": { "config_source": "<script>alert(1)</script>", "listeners": [] },
            "nodes": [{ "node": "http://x\"><b>", "state": "out", "reason": "<i>" }],
        });
        let page = render(&doc);
        assert!(!page.contains("<script>alert"), "{page}");
        assert!(!page.contains("<b>") && !page.contains("<i>"));
        assert!(page.contains("&lt;script&gt;"));
        assert!(page.contains("<tr class=\"node out\">"));
    }

    #[test]
    fn durations_read_as_the_largest_units() {
        assert_eq!(duration(5), "5s");
        assert_eq!(duration(65), "1m 5s");
        assert_eq!(duration(3 * 3600 + 120), "3h 2m");
        assert_eq!(duration(2 * 86_400 + 3600), "2d 1h");
    }
}
