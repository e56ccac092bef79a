//! `tokengate service-tokens` through the built binary, next to a running gateway over the same
//! data directory: what it creates works after a reload, what it deletes stops working, and
//! its messages and exit codes are Elasticsearch's `elasticsearch-service-tokens` ones.

use std::io::Write;
use std::path::Path;
use std::process::Output;

use crate::common::cli::run_command;
use crate::common::process::{field, tokengate, GatewayProcess, LOG_DEADLINE};
use crate::common::{within, FakeUpstream};

const PASSWORD: &str = "cli-elastic-pw";

/// Runs `tokengate --data-dir <dir> service-tokens <args>`.
fn cli(dir: &Path, args: &[&str]) -> Output {
    let mut command = tokengate();
    command
        .arg("--data-dir")
        .arg(dir)
        .arg("service-tokens")
        .args(args);
    run_command(&mut command, None)
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

/// Sends SIGHUP and waits (bounded) for the reload that leaves `count` file tokens.
async fn reload(gw: &mut GatewayProcess, count: usize) {
    gw.signal("HUP");
    let reloaded = async {
        loop {
            let line = gw.wait_for("service tokens loaded").await;
            if field(&line, "tokens") == Some(count.to_string().as_str()) {
                return;
            }
        }
    };
    let what = format!("a reload that leaves {count} file tokens");
    within(&what, LOG_DEADLINE, reloaded).await;
}

async fn status(gw: &GatewayProcess, value: &str) -> u16 {
    crate::common::client()
        .get(format!("http://{}/_cluster/health", gw.addr))
        .bearer_auth(value)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn create_list_and_delete_against_a_running_gateway() {
    let upstream = FakeUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut gw = GatewayProcess::spawn(
        tokengate()
            .args(["--listen", "127.0.0.1:0", "--upstream"])
            .arg(format!("http://{}", upstream.addr))
            .arg("--data-dir")
            .arg(dir.path())
            .env("ELASTIC_PASSWORD", PASSWORD),
    )
    .await;

    let created = cli(dir.path(), &["create", "elastic/fleet-server", "cli-token"]);
    assert!(created.status.success(), "{}", stderr(&created));
    let out = stdout(&created);
    let value = out
        .strip_prefix("SERVICE_TOKEN elastic/fleet-server/cli-token = ")
        .and_then(|rest| rest.strip_suffix('\n'))
        .unwrap_or_else(|| panic!("unexpected output {out:?}"));
    let file = dir.path().join("service_tokens");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.starts_with("elastic/fleet-server/cli-token:{PBKDF2_STRETCH}10000$"),
        "{text}"
    );
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);

    reload(&mut gw, 1).await;
    assert_eq!(status(&gw, value).await, 200);

    let listed = cli(dir.path(), &["list"]);
    assert_eq!(stdout(&listed), "elastic/fleet-server/cli-token\n");
    let listed = cli(dir.path(), &["list", "elastic/kibana"]);
    assert!(listed.status.success());
    assert_eq!(stdout(&listed), "");

    // Elasticsearch's messages and exit codes.
    let unknown = cli(dir.path(), &["list", "nobody/here"]);
    assert_eq!(unknown.status.code(), Some(67));
    assert_eq!(
        stderr(&unknown),
        "ERROR: Unknown service account principal: [nobody/here]. Must be one of \
         [elastic/enterprise-search-server,elastic/fleet-server,elastic/kibana]\n"
    );
    let duplicate = cli(dir.path(), &["create", "elastic/fleet-server", "cli-token"]);
    assert_eq!(duplicate.status.code(), Some(70));
    assert_eq!(
        stderr(&duplicate),
        "ERROR: Service token [elastic/fleet-server/cli-token] already exists\n"
    );
    let invalid = cli(dir.path(), &["create", "elastic/fleet-server", "_x"]);
    assert_eq!(invalid.status.code(), Some(70));
    assert!(
        stderr(&invalid)
            .starts_with("ERROR: invalid service token name [_x]. service account token name must"),
        "{}",
        stderr(&invalid)
    );

    // A bad line is reported by number; the good one keeps working.
    let mut appended = std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .unwrap();
    appended
        .write_all(b"elastic/fleet-server/no-hash-here\n")
        .unwrap();
    drop(appended);
    gw.signal("HUP");
    let warning = gw.wait_for("service tokens line skipped").await;
    assert_eq!(field(&warning, "line"), Some("2"), "{warning}");
    assert_eq!(status(&gw, value).await, 200);

    let deleted = cli(dir.path(), &["delete", "elastic/fleet-server", "cli-token"]);
    assert!(deleted.status.success(), "{}", stderr(&deleted));
    assert_eq!(stdout(&deleted), "");
    reload(&mut gw, 0).await;
    assert_eq!(status(&gw, value).await, 401);
    let again = cli(dir.path(), &["delete", "elastic/fleet-server", "cli-token"]);
    assert_eq!(again.status.code(), Some(70));
    assert_eq!(
        stderr(&again),
        "ERROR: Service token [elastic/fleet-server/cli-token] does not exist\n"
    );
    assert_eq!(upstream.requests().len(), 2);
}
