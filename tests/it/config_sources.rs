//! Where the binary takes its configuration from, as a service manager runs it: paths relative
//! to the configuration file, `TOKENGATE_<SECTION>__<KEY>` variables, credentials from a file or
//! a variable, `check-config` on the files and the data directory, `ELASTIC_PASSWORD` on a
//! later start.

use crate::common::cli::run_to_end;
use std::path::Path;

use crate::common::process::{tokengate, GatewayProcess};
use crate::common::FakeUpstream;

const PASSWORD: &str = "sources-elastic-pw";

fn write_config(dir: &Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("gw.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn a_start_from_elsewhere_finds_the_data_dir_beside_the_config_and_ignores_a_new_password() {
    let upstream = FakeUpstream::start().await;
    let etc = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let config = write_config(
        etc.path(),
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\ndata_dir = \"state\"\n[upstream]\nurl = \"http://{}\"\n",
            upstream.addr
        ),
    );
    let start = |password: &str| {
        let mut command = tokengate();
        command
            .arg("--config")
            .arg(&config)
            .current_dir(elsewhere.path())
            .env("ELASTIC_PASSWORD", password);
        command
    };
    let mut first = GatewayProcess::spawn(&mut start(PASSWORD)).await;
    assert!(etc.path().join("state/users").exists());
    assert!(!elsewhere.path().join("state").exists());
    first.kill();

    let other = "a-password-nobody-uses";
    let mut second = GatewayProcess::spawn(&mut start(other)).await;
    // The first start's password still works: the same data directory was found.
    second.create_token("t1", PASSWORD).await;
    second.kill();
    let lines = &second.startup;
    let warning = lines
        .iter()
        .find(|line| line.contains("ELASTIC_PASSWORD ignored"))
        .unwrap_or_else(|| panic!("no warning in {lines:#?}"));
    assert!(warning.contains("WARN"), "{warning}");
    assert!(lines.iter().all(|line| !line.contains(other)), "{lines:#?}");
}

#[tokio::test]
async fn variables_override_the_file_and_carry_the_upstream_credential() {
    let upstream = FakeUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    // The file names an upstream nobody listens on; the variable's wins.
    let config = write_config(
        dir.path(),
        "[server]\nlisten = \"127.0.0.1:1\"\n[upstream]\nurl = \"http://127.0.0.1:9\"\nservice_credentials = \"gateway\"\nauthorization_env = \"TOKENGATE_TEST_UPSTREAM_KEY\"\n",
    );
    let mut child = GatewayProcess::spawn(
        tokengate()
            .arg("--config")
            .arg(&config)
            // The file leaves data_dir out: it is the working directory's `data`.
            .current_dir(dir.path())
            .env("TOKENGATE_SERVER__LISTEN", "127.0.0.1:0")
            .env(
                "TOKENGATE_UPSTREAM__URL",
                format!("http://{}", upstream.addr),
            )
            .env("TOKENGATE_TEST_UPSTREAM_KEY", "ApiKey ZnJvbS1lbnY=")
            .env("ELASTIC_PASSWORD", PASSWORD),
    )
    .await;
    let value = child.create_token("t1", PASSWORD).await;
    let response = crate::common::client()
        .get(format!("http://{}/_cluster/health", child.addr))
        .bearer_auth(&value)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let seen = upstream.single_request();
    assert_eq!(seen.header("authorization"), Some("ApiKey ZnJvbS1lbnY="));
    child.kill();
}

#[tokio::test]
async fn a_credential_file_beside_the_config_reaches_the_upstream() {
    let upstream = FakeUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("es-key"), "ApiKey ZnJvbS1maWxl\n").unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[upstream]\nurl = \"http://{}\"\nservice_credentials = \"gateway\"\nauthorization_file = \"es-key\"\n",
            upstream.addr
        ),
    );
    let elsewhere = tempfile::tempdir().unwrap();
    let mut child = GatewayProcess::spawn(
        tokengate()
            .arg("--config")
            .arg(&config)
            .current_dir(elsewhere.path())
            .env("ELASTIC_PASSWORD", PASSWORD),
    )
    .await;
    let value = child.create_token("t1", PASSWORD).await;
    let response = crate::common::client()
        .get(format!("http://{}/", child.addr))
        .bearer_auth(&value)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        upstream.single_request().header("authorization"),
        Some("ApiKey ZnJvbS1maWxl")
    );
    child.kill();
}

#[test]
fn a_bad_variable_exits_64_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let output = run_to_end(
        tokengate()
            .arg("check-config")
            .arg("--config")
            .arg(&config)
            .env("TOKENGATE_UPSTREAM__TIMEOUT", "soon"),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("environment variable TOKENGATE_UPSTREAM__TIMEOUT: [upstream] timeout"),
        "{stderr}"
    );
}

#[test]
fn check_config_lists_every_missing_file_and_an_unusable_data_dir_at_once() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("plain"), "").unwrap();
    let config = write_config(
        dir.path(),
        "[server]\ndata_dir = \"plain/data\"\n[tls]\nlisten = \"127.0.0.1:0\"\ncert = \"missing-cert.pem\"\nkey = \"missing-key.pem\"\n",
    );
    let output = run_to_end(tokengate().arg("check-config").arg("--config").arg(&config));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(64), "{stderr}");
    for needle in [
        "3 problem(s)",
        "[tls] cert: cannot read",
        "missing-cert.pem",
        "[tls] key: cannot read",
        "[server] data_dir",
        "is not a directory",
    ] {
        assert!(stderr.contains(needle), "{needle} not in: {stderr}");
    }
    let entries = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(entries, 2, "check-config created something");
}
