//! A first start as a new user meets it: a port that is taken stops the start before anything is
//! written (the data directory stays as it was, so a later start with `ELASTIC_PASSWORD` still
//! creates `elastic` with it), and the error says which listener and how to move it.

use tokengate::app::{Gateway, StartError};
use tokengate::config::{Config, Overrides};

#[tokio::test]
async fn a_taken_admin_port_stops_the_start_before_anything_is_written() {
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let overrides = Overrides {
        listen: Some("127.0.0.1:0".into()),
        admin_listen: Some(taken.local_addr().unwrap().to_string()),
        upstream: vec!["http://127.0.0.1:9".into()],
        data_dir: Some(data.clone()),
    };
    let config = Config::from_toml("test", "", &overrides).unwrap();
    let Err(error) = Gateway::start(config, Some("changeme")).await else {
        panic!("started on a taken admin port");
    };
    assert!(
        matches!(
            error,
            StartError::Bind {
                listener: "admin",
                ..
            }
        ),
        "{error}"
    );
    let message = error.to_string();
    assert!(message.contains("--admin-listen"), "{message}");
    assert!(
        !data.exists(),
        "the data directory was written before the start failed"
    );

    // Once the port is free the same first start creates `elastic` with the given password.
    drop(taken);
    let overrides = Overrides {
        listen: Some("127.0.0.1:0".into()),
        admin_listen: Some(String::new()),
        upstream: vec!["http://127.0.0.1:9".into()],
        data_dir: Some(data.clone()),
    };
    let config = Config::from_toml("test", "", &overrides).unwrap();
    let mut gateway = Gateway::start(config, Some("changeme")).await.unwrap();
    assert_eq!(gateway.take_generated_password(), None);
    assert!(data.join("users").exists());
    gateway.run(async {}).await;
}
