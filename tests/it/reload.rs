//! Configuration reload on the built binary: SIGHUP and `tokengate reload` read the file again;
//! a valid one applies live in the same process, an invalid one is refused with its problems
//! logged and the old configuration keeps serving, a listener change waits for a restart.

use std::path::{Path, PathBuf};

use crate::common::cli;
use crate::common::process::{tokengate, GatewayProcess};
use crate::common::FakeUpstream;

const PASSWORD: &str = "reload-elastic-pw";

/// A configuration file in `dir` for a gateway on an ephemeral port in front of `upstream`,
/// with `extra` appended.
fn write_config(dir: &Path, upstream: &FakeUpstream, extra: &str) -> PathBuf {
    let path = dir.join("tokengate.toml");
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n{extra}\n[upstream]\nurl = \"http://{}\"\n",
        upstream.addr
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// The binary on `config`, state in `data`.
async fn spawn(config: &Path, data: &Path) -> GatewayProcess {
    GatewayProcess::spawn(
        tokengate()
            .arg("--config")
            .arg(config)
            .arg("--data-dir")
            .arg(data)
            .env("ELASTIC_PASSWORD", PASSWORD),
    )
    .await
}

async fn get(gw: &GatewayProcess, token: &str) -> u16 {
    crate::common::client()
        .get(format!("http://{}/_cluster/health", gw.addr))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn sighup_moves_forwarding_to_a_new_upstream_url_in_the_same_process() {
    let (first, second) = (FakeUpstream::start().await, FakeUpstream::start().await);
    let (etc, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config = write_config(etc.path(), &first, "");
    let mut gw = spawn(&config, data.path()).await;
    let token = gw.create_token("before-reload", PASSWORD).await;
    assert_eq!(get(&gw, &token).await, 200);
    assert_eq!(first.requests().len(), 1);

    write_config(etc.path(), &second, "");
    gw.signal("HUP");
    let line = gw.wait_for("configuration reloaded").await;
    assert!(line.contains("upstream.url"), "{line}");

    assert_eq!(
        get(&gw, &token).await,
        200,
        "the token made before stopped working"
    );
    assert_eq!(
        second.requests().len(),
        1,
        "not forwarded to the new upstream"
    );
    assert_eq!(
        first.requests().len(),
        1,
        "still forwarded to the old upstream"
    );
    assert!(gw.running());
}

#[tokio::test]
async fn an_invalid_edit_is_refused_with_every_problem_and_the_old_config_keeps_serving() {
    let upstream = FakeUpstream::start().await;
    let (etc, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config = write_config(etc.path(), &upstream, "");
    let mut gw = spawn(&config, data.path()).await;
    let token = gw.create_token("survives", PASSWORD).await;

    write_config(
        etc.path(),
        &upstream,
        "max_request_line = -1\nno_such_key = 1\n",
    );
    gw.signal("HUP");
    let line = gw.wait_for("configuration reload refused").await;
    assert!(line.contains("max_request_line"), "{line}");
    assert!(line.contains("no_such_key"), "{line}");

    assert_eq!(get(&gw, &token).await, 200);
    assert!(gw.running());
}

#[tokio::test]
async fn a_changed_listen_address_waits_for_a_restart_and_the_old_port_keeps_serving() {
    let upstream = FakeUpstream::start().await;
    let (etc, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config = write_config(etc.path(), &upstream, "");
    let mut gw = spawn(&config, data.path()).await;
    let token = gw.create_token("same-port", PASSWORD).await;

    // Never bound: a restart would take it, the reload does not.
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("127.0.0.1:0", "127.0.0.1:1");
    std::fs::write(&config, text).unwrap();
    gw.signal("HUP");
    let line = gw.wait_for("restart needed to apply").await;
    assert!(line.contains("server.listen"), "{line}");
    gw.wait_for("configuration reloaded").await;

    assert_eq!(get(&gw, &token).await, 200);
}

#[tokio::test]
async fn a_changed_log_level_takes_effect() {
    let upstream = FakeUpstream::start().await;
    let (etc, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config = write_config(etc.path(), &upstream, "");
    let mut gw = spawn(&config, data.path()).await;
    let bad = "AAEAAWVsYXN0aWMvZmxlZXQtc2VydmVyL25vbmU6bm9wZQ";

    // At info, a rejected token has no line of its own.
    assert_eq!(get(&gw, bad).await, 401);
    write_config(etc.path(), &upstream, "[log]\nlevel = \"debug\"\n");
    gw.signal("HUP");
    let before = gw.lines_until("configuration reloaded").await;
    assert!(
        !before.iter().any(|l| l.contains("bearer token rejected")),
        "{before:?}"
    );
    assert!(before.last().unwrap().contains("log.level"), "{before:?}");

    assert_eq!(get(&gw, bad).await, 401);
    gw.wait_for("bearer token rejected").await;
}

#[tokio::test]
async fn tokengate_reload_signals_the_gateway_on_the_data_directory() {
    let (first, second) = (FakeUpstream::start().await, FakeUpstream::start().await);
    let (etc, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config = write_config(etc.path(), &first, "");
    let mut gw = spawn(&config, data.path()).await;
    let token = gw.create_token("by-command", PASSWORD).await;

    write_config(etc.path(), &second, "");
    let mut command = tokengate();
    command
        .arg("reload")
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(data.path());
    let output = cli::run_command(&mut command, None);
    let (code, _, stderr) = cli::outcome(&output);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("sent SIGHUP"), "{stderr}");
    let line = gw.wait_for("configuration reloaded").await;
    assert!(line.contains("upstream.url"), "{line}");
    assert_eq!(get(&gw, &token).await, 200);
    assert_eq!(second.requests().len(), 1);

    // Stopped cleanly: the pid file is gone and the command says nothing runs.
    gw.signal("TERM");
    let (status, _) = gw.exit().await;
    assert_eq!(status.code(), Some(0));
    assert!(!data.path().join("tokengate.pid").exists());
    let output = cli::run(data.path(), &["reload"], None);
    cli::fails(&output, 1, "no gateway runs");
}
