//! `tokengate users …` run as the built binary: the file realm's files edited with
//! Elasticsearch's messages and exit codes, and a running gateway taking the changes.

use std::path::Path;

use crate::common::cli::{fails, ok, run};
use crate::common::process::{tokengate, GatewayProcess};
use crate::common::{basic, ELASTIC_PASSWORD};

#[test]
fn users_round_trip_with_elasticsearch_messages() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let users = |args: &[&str]| run(&data, &[&["users"][..], args].concat(), None);

    assert_eq!(ok(&users(&["list"])), "No users found\n");
    assert_eq!(
        ok(&users(&[
            "add",
            "alice",
            "-p",
            "alice-pw",
            "-r",
            "viewer,ops"
        ])),
        ""
    );
    let piped = run(&data, &["users", "useradd", "bob"], Some("bob-secret\n"));
    assert_eq!(ok(&piped), "");
    let hash_of = |user: &str| {
        let text = std::fs::read_to_string(data.join("users")).unwrap();
        let line = text.lines().find(|l| l.starts_with(&format!("{user}:")));
        line.unwrap().split_once(':').unwrap().1.to_owned()
    };
    assert!(hash_of("bob").starts_with("$2a$10$"));
    assert!(bcrypt::verify("bob-secret", &hash_of("bob")).unwrap());
    assert_eq!(
        ok(&users(&["list"])),
        "alice          : viewer,ops\nbob            : -\n"
    );

    assert_eq!(
        ok(&users(&["roles", "alice", "-a", "admin", "-r", "ops"])),
        ""
    );
    assert_eq!(ok(&users(&["roles", "bob", "-a", "viewer"])), "");
    assert_eq!(
        ok(&users(&["roles", "alice"])),
        "alice          : viewer,admin\n"
    );
    assert_eq!(
        std::fs::read_to_string(data.join("users_roles")).unwrap(),
        "viewer:alice,bob\nadmin:alice\n"
    );

    assert_eq!(ok(&users(&["passwd", "alice", "-p", "alice-new-pw"])), "");
    assert!(bcrypt::verify("alice-new-pw", &hash_of("alice")).unwrap());
    assert_eq!(ok(&users(&["userdel", "bob"])), "");
    assert_eq!(
        ok(&users(&["list", "alice"])),
        "alice          : viewer,admin\n"
    );
    assert_eq!(
        std::fs::read_to_string(data.join("users_roles")).unwrap(),
        "viewer:alice\nadmin:alice\n"
    );
    #[cfg(unix)]
    for file in ["users", "users_roles"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }

    fails(
        &users(&["add", "bad:name", "-p", "123456"]),
        65,
        "Invalid username [bad:name]... User names must be at least 1 and no more than 1024 characters.",
    );
    fails(
        &users(&["add", "carol", "-p", "12345"]),
        65,
        "Invalid password...passwords must be at least [6] characters long",
    );
    fails(
        &run(&data, &["users", "add", "carol"], Some("short\n")),
        65,
        "Invalid password...passwords must be at least [6] characters long",
    );
    fails(
        &users(&["add", "carol", "-p", "123456", "-r", "a:b"]),
        65,
        "Invalid role [a:b]... Role names must be",
    );
    fails(
        &users(&["add", "alice", "-p", "123456"]),
        70,
        "User [alice] already exists",
    );
    fails(&users(&["delete", "bob"]), 67, "User [bob] doesn't exist");
    fails(
        &users(&["passwd", "bob", "-p", "123456"]),
        67,
        "User [bob] doesn't exist",
    );
    fails(&users(&["list", "bob"]), 67, "User [bob] doesn't exist");
    fails(
        &users(&["roles", "bob", "-a", "x"]),
        67,
        "User [bob] doesn't exist",
    );
    fails(&users(&["add"]), 64, "<USERNAME>");
    assert_eq!(ok(&users(&["list"])), "alice          : viewer,admin\n");
}

/// A gateway process on `data` that re-reads its users on SIGHUP only.
async fn gateway_on(root: &Path, data: &Path) -> GatewayProcess {
    let config = root.join("gw.toml");
    std::fs::write(&config, "[security]\nusers_reload_interval = \"1h\"\n").unwrap();
    GatewayProcess::spawn(
        tokengate()
            .arg("--config")
            .arg(&config)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--upstream",
                "http://127.0.0.1:9",
            ])
            .arg("--data-dir")
            .arg(data)
            .env("ELASTIC_PASSWORD", ELASTIC_PASSWORD),
    )
    .await
}

#[tokio::test]
async fn a_running_gateway_takes_added_users_and_drops_deleted_ones() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let mut gateway = gateway_on(root.path(), &data).await;
    let accounts = format!("http://{}/_security/service", gateway.addr);
    let status_as_dave = || async {
        let response = crate::common::client()
            .get(&accounts)
            .header("authorization", basic("dave", "dave-password"))
            .send()
            .await
            .unwrap();
        response.status().as_u16()
    };
    assert_eq!(status_as_dave().await, 401);

    let add = [
        "users",
        "add",
        "dave",
        "-p",
        "dave-password",
        "-r",
        "superuser",
    ];
    ok(&run(&data, &add, None));
    gateway.signal("HUP");
    gateway.wait_for("users reloaded").await;
    assert_eq!(status_as_dave().await, 200);

    ok(&run(&data, &["users", "delete", "dave"], None));
    gateway.signal("HUP");
    gateway.wait_for("users reloaded").await;
    assert_eq!(status_as_dave().await, 401);
}
