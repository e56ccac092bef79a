//! The official Elasticsearch Python client against an account over its rate limit: every
//! search and every bulk document gets through in the end, after the gateway's 429s, its
//! transport's retries and the waits (`tests/clients/python_retry.py` says what the client does
//! with a 429 and what the application has to do itself).
//!
//! The client comes from the virtual environment `.ci/run` makes (`target/python-client`), or
//! `TOKENGATE_TEST_PYTHON`, or `python3` on PATH when it has the package. Without it the test is
//! skipped, except under CI, where it fails.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use http::Response;
use serde_json::{json, Value};

use crate::common::cli::{outcome, run_within};
use crate::common::upstream::{default_response, node_json, FakeBody, Recorded};
use crate::common::{FakeUpstream, TestGateway, FLEET};

/// Where `.ci/run` installs the client, relative to the repository.
const VENV_PYTHON: &str = "target/python-client/bin/python3";
/// The whole script's deadline: it needs a few seconds.
const SCRIPT_DEADLINE: Duration = Duration::from_secs(90);
/// As many as the script sends (`SEARCHES`, `DOCS`, `CHUNK` there).
const SEARCHES: u64 = 12;
const DOCS: usize = 100;
const CHUNKS: u64 = 10;

/// A Python interpreter that imports `elasticsearch` 8 or later, with its version; or why none.
fn python_client() -> Result<(PathBuf, String), String> {
    let candidates: Vec<PathBuf> = match std::env::var_os("TOKENGATE_TEST_PYTHON") {
        Some(python) => vec![python.into()],
        None => vec![
            Path::new(env!("CARGO_MANIFEST_DIR")).join(VENV_PYTHON),
            "python3".into(),
        ],
    };
    let mut tried = Vec::new();
    for python in candidates {
        let probe = Command::new(&python)
            .args([
                "-c",
                "import elasticsearch; print(elasticsearch.__versionstr__)",
            ])
            .output();
        match probe {
            Ok(out) if out.status.success() => {
                let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
                let major: u32 = version
                    .split('.')
                    .next()
                    .and_then(|m| m.parse().ok())
                    .unwrap_or(0);
                if major >= 8 {
                    return Ok((python, version));
                }
                tried.push(format!("{}: elasticsearch {version}", python.display()));
            }
            Ok(_) => tried.push(format!("{}: no elasticsearch package", python.display())),
            Err(e) => tried.push(format!("{}: {e}", python.display())),
        }
    }
    Err(format!(
        "no Python with the elasticsearch 8.x package ({}); .ci/run installs it",
        tried.join("; ")
    ))
}

/// The `_bulk` answer a node gives when every operation of `request` succeeded.
fn bulk_answer(request: &Recorded) -> Response<FakeBody> {
    let body = String::from_utf8_lossy(&request.body);
    let items: Vec<Value> = body
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter_map(|line| {
            let action = line.get("index")?;
            Some(json!({"index": {
                "_index": action["_index"], "_id": action["_id"], "_version": 1,
                "result": "created", "status": 201,
            }}))
        })
        .collect();
    node_json(json!({"took": 1, "errors": false, "items": items}).to_string())
}

/// The `_id`s of the documents the node was sent, with how often each came.
fn indexed_ids(upstream: &FakeUpstream) -> HashMap<String, usize> {
    let mut ids = HashMap::new();
    for request in upstream.requests() {
        if request.uri.path() != "/_bulk" {
            continue;
        }
        for line in String::from_utf8_lossy(&request.body).lines() {
            let line: Value = serde_json::from_str(line).unwrap();
            if let Some(id) = line["index"]["_id"].as_str() {
                *ids.entry(id.to_owned()).or_default() += 1;
            }
        }
    }
    ids
}

/// `name=value` of the script's RESULT line.
fn result_field(result: &str, name: &str) -> u64 {
    result
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {name} in {result}"))
        .parse()
        .unwrap()
}

fn metric(metrics: &str, key: &str) -> u64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{key} missing from\n{metrics}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn the_python_client_gets_every_request_through_the_rate_limit() {
    let test = "the_python_client_gets_every_request_through_the_rate_limit";
    let (python, version) = match python_client() {
        Ok(found) => found,
        Err(why) => {
            assert!(std::env::var_os("CI").is_none(), "{test}: {why}");
            crate::common::skipped(test, &why);
            return;
        }
    };
    let upstream = FakeUpstream::builder()
        .handler(|request| {
            let response = if request.uri.path() == "/_bulk" {
                bulk_answer(request)
            } else {
                default_response()
            };
            async move { response }
        })
        .start()
        .await;
    let gw = TestGateway::builder()
        .upstream(upstream.addr)
        .config(
            "[[service_accounts]]\naccount = \"elastic/fleet-server\"\nrate = \"5/s\"\nburst = 5\n",
        )
        .build()
        .await;
    let token = gw.create_token(FLEET, "python").await;

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/python_retry.py");
    let mut command = Command::new(&python);
    command
        .arg(&script)
        .arg(gw.url(""))
        .arg(&token)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy");
    let output =
        tokio::task::spawn_blocking(move || run_within(&mut command, None, SCRIPT_DEADLINE))
            .await
            .unwrap();
    let (code, stdout, stderr) = outcome(&output);
    assert_eq!(
        code,
        Some(0),
        "python_retry.py (elasticsearch {version}) failed:\n{stdout}\n{stderr}"
    );
    let result = stdout
        .lines()
        .find(|line| line.starts_with("RESULT "))
        .unwrap_or_else(|| panic!("no RESULT line in\n{stdout}"));

    // Every search and every chunk reached the node once: the refused attempts never did.
    assert_eq!(result_field(result, "searches_ok"), SEARCHES, "{result}");
    assert_eq!(result_field(result, "search_200"), SEARCHES, "{result}");
    assert_eq!(result_field(result, "bulk_ok"), DOCS as u64, "{result}");
    assert_eq!(result_field(result, "bulk_200"), CHUNKS, "{result}");
    assert_eq!(upstream.forwarded() as u64, SEARCHES + CHUNKS);
    let ids = indexed_ids(&upstream);
    assert_eq!(ids.len(), DOCS, "{ids:?}");
    assert!(
        ids.values().all(|&n| n == 1),
        "a document came twice: {ids:?}"
    );

    // The client saw every 429 the gateway sent, and the gateway sent some to both kinds of
    // request: the retries were needed.
    let total_429 = result_field(result, "total_429");
    assert!(result_field(result, "search_429") > 0, "{result}");
    assert!(result_field(result, "bulk_429") > 0, "{result}");
    assert!(
        result_field(result, "transport_retries_429") > 0,
        "{result}"
    );
    let (_, metrics) = gw.admin_get("/metrics").await;
    assert_eq!(
        metric(
            &metrics,
            "tokengate_account_limited_total{account=\"elastic/fleet-server\",limit=\"rate\"}"
        ),
        total_429,
        "{result}"
    );
    assert_eq!(
        metric(
            &metrics,
            "tokengate_account_requests_total{account=\"elastic/fleet-server\"}"
        ),
        SEARCHES + CHUNKS
    );
    gw.stop().await;
}
