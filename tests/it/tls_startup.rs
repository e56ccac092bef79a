//! Start-up refusals of the HTTPS listener: a missing, unreadable or garbage certificate or key,
//! a key that does not match, a garbage client CA. The error names the file, and the binary exits
//! 64 before binding any port.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::cli::run_within;
use crate::common::tls::{tls_section, Ca};
use tokengate::config::{Config, Overrides};
use tokengate::tls::server::ServerTls;

/// `[tls]` with `cert`/`key` (and `extra`), parsed as the binary would.
fn tls_config(cert: &Path, key: &Path, extra: &str) -> tokengate::config::TlsConfig {
    let toml = tls_section(cert, key, extra);
    Config::from_toml("t", &toml, &Overrides::default())
        .unwrap()
        .tls
        .unwrap()
}

/// The broken listener set-ups every start-up test tries: (name, cert, key, extra, named file).
fn broken_setups(dir: &Path) -> Vec<(&'static str, String, String, String, String)> {
    let ca = Ca::root("startup CA");
    let (cert, key) = ca.server().write(dir, "good");
    let (_, other_key) = ca.server().write(dir, "other");
    let garbage = dir.join("garbage.pem");
    std::fs::write(&garbage, "not PEM at all\n").unwrap();
    let garbage_key = dir.join("garbage.key");
    std::fs::write(&garbage_key, "not a key either\n").unwrap();
    // A directory cannot be read as a file (tests run as root, so permissions would not do).
    let unreadable = dir.join("unreadable.key");
    std::fs::create_dir_all(&unreadable).unwrap();
    let missing = dir.join("missing.pem");
    let text = |p: &Path| p.display().to_string();
    vec![
        (
            "missing cert",
            text(&missing),
            text(&key),
            String::new(),
            text(&missing),
        ),
        (
            "garbage cert",
            text(&garbage),
            text(&key),
            String::new(),
            text(&garbage),
        ),
        (
            "garbage key",
            text(&cert),
            text(&garbage),
            String::new(),
            text(&garbage),
        ),
        // A directory cannot be read as a file (tests run as root, so permissions would not do).
        (
            "unreadable key",
            text(&cert),
            text(dir),
            String::new(),
            text(dir),
        ),
        (
            "mismatched key",
            text(&cert),
            text(&other_key),
            String::new(),
            text(&other_key),
        ),
        (
            "garbage client CA",
            text(&cert),
            text(&key),
            format!("client_ca = {:?}", text(&garbage)),
            text(&garbage),
        ),
    ]
}

#[test]
fn startup_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    for (case, cert, key, extra, named) in broken_setups(dir.path()) {
        let config = tls_config(Path::new(&cert), Path::new(&key), &extra);
        let error = ServerTls::new(&config)
            .err()
            .unwrap_or_else(|| panic!("{case}: accepted"));
        assert!(error.to_string().contains(&named), "{case}: {error}");
    }
}

#[test]
fn the_binary_exits_64_naming_the_file_before_binding() {
    let dir = tempfile::tempdir().unwrap();
    // Both listen addresses are held here: had the binary tried to bind first, it would fail
    // with "address in use" (exit 1), not 64.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let held_tls = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    for (case, cert, key, extra, named) in broken_setups(dir.path()) {
        let file = dir.path().join("tokengate.toml");
        let toml = format!(
            "{}\n[server]\nlisten = \"{}\"\n",
            tls_section(Path::new(&cert), Path::new(&key), &extra),
            held.local_addr().unwrap()
        )
        .replace("127.0.0.1:0", &held_tls.local_addr().unwrap().to_string());
        std::fs::write(&file, toml).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_tokengate"));
        command
            .arg("--config")
            .arg(&file)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .env("ELASTIC_PASSWORD", "startup-test-pw")
            .env("TOKENGATE_ADMIN_LISTEN", "127.0.0.1:0")
            .env("RUST_LOG", "info");
        let output = run_within(&mut command, None, Duration::from_secs(30));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(64), "{case}: {stderr}");
        assert!(stderr.contains(&named), "{case}: {stderr}");
    }
}
