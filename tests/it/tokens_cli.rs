//! `tokengate tokens list|revoke` run as the built binary: on a stopped gateway's journal, and
//! through a running gateway's API when that gateway holds the data directory.

use crate::common::cli::{fails, ok, run, run_command};
use crate::common::process::tokengate;
use crate::common::{TestGateway, ELASTIC_PASSWORD, FLEET};

#[tokio::test]
async fn tokens_list_and_revoke_on_a_stopped_gateways_data_dir() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let gateway = TestGateway::builder().data_dir(&data).build().await;
    for name in ["t2", "t1"] {
        gateway.create_token(FLEET, name).await;
    }
    gateway.create_token("elastic/kibana", "k1").await;
    gateway.stop().await;

    let tokens = |args: &[&str]| run(&data, &[&["tokens"][..], args].concat(), None);
    assert_eq!(
        ok(&tokens(&["list"])),
        "elastic/fleet-server/t1\nelastic/fleet-server/t2\nelastic/kibana/k1\n"
    );
    assert_eq!(
        ok(&tokens(&["list", FLEET])),
        "elastic/fleet-server/t1\nelastic/fleet-server/t2\n"
    );
    assert_eq!(
        ok(&tokens(&["revoke", FLEET, "t1"])),
        "Service token [elastic/fleet-server/t1] revoked\n"
    );
    fails(
        &tokens(&["revoke", FLEET, "t1"]),
        70,
        "Service token [elastic/fleet-server/t1] does not exist",
    );
    fails(
        &tokens(&["revoke", FLEET, "_bad"]),
        70,
        "invalid service token name [_bad]. service account token name must have",
    );
    fails(
        &tokens(&["list", "nobody/here"]),
        67,
        "Unknown service account principal: [nobody/here]. Must be one of [",
    );
    assert_eq!(
        ok(&tokens(&["list"])),
        "elastic/fleet-server/t2\nelastic/kibana/k1\n"
    );
    let missing = root.path().join("missing");
    fails(
        &run(&missing, &["tokens", "list"], None),
        64,
        "missing: no such data directory",
    );
    assert!(!missing.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_list_and_revoke_go_through_a_running_gateway() {
    let gateway = TestGateway::builder().build().await;
    for name in ["t2", "t1"] {
        gateway.create_token(FLEET, name).await;
    }
    let data = gateway.data_dir.clone();
    let url = format!("http://{}", gateway.addr);
    let remote = move |args: Vec<&'static str>, password: &'static str| {
        let (data, url) = (data.clone(), url.clone());
        tokio::task::spawn_blocking(move || {
            let mut command = tokengate();
            command
                .arg("--data-dir")
                .arg(&data)
                .arg("tokens")
                .args(&args)
                .args(["--url", url.as_str()])
                .env("TOKENGATE_PASSWORD", password);
            run_command(&mut command, None)
        })
    };
    let as_elastic = |args: Vec<&'static str>| remote(args, ELASTIC_PASSWORD);

    let listed = as_elastic(vec!["list", "-u", "elastic"]).await.unwrap();
    assert_eq!(
        ok(&listed),
        "elastic/fleet-server/t1\nelastic/fleet-server/t2\n"
    );
    let revoked = as_elastic(vec!["revoke", FLEET, "t1", "-u", "elastic"]);
    assert_eq!(
        ok(&revoked.await.unwrap()),
        "Service token [elastic/fleet-server/t1] revoked\n"
    );
    assert!(!gateway.state.store.contains("elastic/fleet-server/t1"));
    let again = as_elastic(vec!["revoke", FLEET, "t1", "-u", "elastic"]);
    fails(
        &again.await.unwrap(),
        70,
        "Service token [elastic/fleet-server/t1] does not exist",
    );
    let listed = as_elastic(vec!["list", FLEET, "-u", "elastic"])
        .await
        .unwrap();
    assert_eq!(ok(&listed), "elastic/fleet-server/t2\n");

    let wrong = remote(vec!["list", "-u", "elastic"], "wrong-password");
    fails(
        &wrong.await.unwrap(),
        1,
        "the gateway refused the credentials of [elastic]",
    );
    let anonymous = as_elastic(vec!["list"]).await.unwrap();
    fails(
        &anonymous,
        64,
        "is in use by a running gateway; pass -u <user>",
    );
    gateway.stop().await;
}
