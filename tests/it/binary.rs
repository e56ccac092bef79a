//! The built binary, run as the README runs it: flags, `ELASTIC_PASSWORD`, the `listening` log
//! line, exit codes.

use crate::common::cli::run_to_end;
use std::path::Path;

use crate::common::process::{field, tokengate, GatewayProcess};
use crate::common::FakeUpstream;

const PASSWORD: &str = "bin-elastic-pw";

#[tokio::test]
async fn the_binary_serves_tokens_and_forwards() {
    let upstream = FakeUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut child = GatewayProcess::spawn(
        tokengate()
            .args(["--listen", "127.0.0.1:0", "--upstream"])
            .arg(format!("http://{}", upstream.addr))
            .arg("--data-dir")
            .arg(dir.path())
            .env("ELASTIC_PASSWORD", PASSWORD),
    )
    .await;
    let line = child.listening.clone();
    assert!(line.contains("INFO"), "{line}");
    let addr = child.addr;
    assert_eq!(field(&line, "tokens"), Some("0"), "{line}");
    assert_eq!(
        field(&line, "upstream"),
        Some(format!("http://{}", upstream.addr).as_str())
    );

    let client = crate::common::client();
    let url = |path: &str| format!("http://{addr}{path}");
    let value = child.create_token("bin1", PASSWORD).await;

    let response = client
        .get(url("/_cluster/health"))
        .bearer_auth(&value)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.text().await.unwrap(),
        crate::common::upstream::DEFAULT_BODY
    );
    let response = client.get(url("/_cluster/health")).send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(upstream.single_request().uri, "/_cluster/health");

    assert!(!child.kill().success());
    assert!(dir.path().join("tokens.journal").exists());
}

#[test]
fn a_bad_config_exits_64_naming_every_bad_key_before_starting() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gw.toml");
    std::fs::write(
        &config,
        "[server]\nlisten = \"nope\"\ncolour = \"red\"\n[upstream]\ntimeout = \"soon\"\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let output = run_to_end(
        tokengate()
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(&data)
            .env("ELASTIC_PASSWORD", PASSWORD),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(64), "{stderr}");
    for key in ["[server] listen", "[server] colour", "[upstream] timeout"] {
        assert!(stderr.contains(key), "{key} not named in: {stderr}");
    }
    assert!(stderr.contains(&config.display().to_string()), "{stderr}");
    assert!(!stderr.contains("listening"), "{stderr}");
    assert!(
        !data.exists(),
        "the data directory was created before validation"
    );
}

#[test]
fn check_config_validates_without_starting() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, "[server]\nlisten = \"127.0.0.1:0\"\n").unwrap();
    let output = run_to_end(tokengate().arg("check-config").arg("--config").arg(&good));
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[upstream]\nurl = \"ftp://x\"\n").unwrap();
    let output = run_to_end(tokengate().arg("check-config").arg("--config").arg(&bad));
    assert_eq!(output.status.code(), Some(64), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("[upstream] url"));
}

#[test]
fn the_shipped_config_is_valid() {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/tokengate.toml");
    if !shipped.exists() {
        crate::common::skipped(
            "the_shipped_config_is_valid",
            &format!("{} does not exist", shipped.display()),
        );
        return;
    }
    let output = run_to_end(
        tokengate()
            .arg("check-config")
            .arg("--config")
            .arg(&shipped),
    );
    assert_eq!(output.status.code(), Some(0), "{output:?}");
}

#[test]
fn check_config_refuses_a_level_that_is_not_one() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gw.toml");
    std::fs::write(&config, "[log]\nlevel = \"warning\"\n").unwrap();
    let output = run_to_end(tokengate().arg("check-config").arg("--config").arg(&config));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("[log] level: \"warning\" is not a log level (did you mean \"warn\"?)"),
        "{stderr}"
    );
}

#[tokio::test]
async fn the_json_log_format_writes_one_object_per_line() {
    let upstream = FakeUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gw.toml");
    std::fs::write(&config, "[log]\nformat = \"json\"\n").unwrap();
    let mut child = GatewayProcess::spawn(
        tokengate()
            .arg("--config")
            .arg(&config)
            .args(["--listen", "127.0.0.1:0", "--upstream"])
            .arg(format!("http://{}", upstream.addr))
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .env("ELASTIC_PASSWORD", PASSWORD),
    )
    .await;
    let line: serde_json::Value = serde_json::from_str(&child.listening).unwrap();
    assert_eq!(line["level"], "INFO", "{line}");
    assert_eq!(line["message"], "listening", "{line}");
    assert_eq!(line["tokens"], 0, "{line}");
    assert!(line["timestamp"].is_string(), "{line}");
    child.signal("TERM");
    let (status, rest) = child.exit().await;
    assert!(status.success(), "{rest:?}");
    assert!(!rest.is_empty());
    for line in rest {
        let parsed: Result<serde_json::Value, _> = serde_json::from_str(&line);
        assert!(
            parsed.is_ok_and(|v| v.is_object()),
            "not a JSON object: {line}"
        );
    }
}

#[test]
fn reset_password_is_audited_without_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let hash = bcrypt::hash("old-password", 4).unwrap();
    std::fs::write(dir.path().join("users"), format!("elastic:{hash}\n")).unwrap();
    std::fs::write(dir.path().join("users_roles"), "superuser:elastic\n").unwrap();
    let output = run_to_end(
        tokengate()
            .args(["reset-password", "-u", "elastic", "--data-dir"])
            .arg(dir.path()),
    );
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let new_password = stdout
        .lines()
        .find_map(|l| l.strip_prefix("New value: "))
        .unwrap();
    let audit = std::fs::read_to_string(dir.path().join("audit.json")).unwrap();
    let event: serde_json::Value = serde_json::from_str(audit.trim_end()).unwrap();
    assert_eq!(event["event.type"], "security_config_change");
    assert_eq!(event["event.action"], "change_password");
    assert_eq!(event["change"]["password"]["user"]["name"], "elastic");
    assert!(!audit.contains(new_password), "{audit}");
}

#[tokio::test]
async fn a_failed_login_is_a_warning_in_the_main_log_at_the_default_level() {
    let upstream = FakeUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut child = GatewayProcess::spawn(
        tokengate()
            .args(["--listen", "127.0.0.1:0", "--upstream"])
            .arg(format!("http://{}", upstream.addr))
            .arg("--data-dir")
            .arg(dir.path())
            .env("ELASTIC_PASSWORD", PASSWORD),
    )
    .await;
    let response = crate::common::client()
        .get(format!("http://{}/_cluster/health", child.addr))
        .header(
            "authorization",
            crate::common::basic("elastic", "wrong-guess-42"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let line = child.wait_for("authentication failed").await;
    assert!(line.contains("WARN"), "{line}");
    assert_eq!(field(&line, "user"), Some("\"elastic\""), "{line}");
    assert!(
        field(&line, "client").is_some_and(|c| c.starts_with("127.0.0.1")),
        "{line}"
    );
    assert!(!line.contains("wrong-guess-42"), "{line}");
}
