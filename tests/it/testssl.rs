//! An outside opinion of the HTTPS listener: testssl.sh scans an in-process gateway (ECDSA P-256
//! certificate from a test CA) and any HIGH or CRITICAL finding fails the test.
//!
//! Skips, saying so, when testssl.sh is not installed (`apt-get install testssl.sh`).

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use crate::common::cli::run_within;
use crate::common::tls::{installed, leaf_params, tls_section, Ca, KeyKind, LOCAL_NAMES};
use crate::common::TestGateway;
use rcgen::CrlDistributionPoint;
use serde_json::Value;

/// The whole scan is killed after this; the checks chosen finish far sooner on two cores.
const SCAN_DEADLINE: Duration = Duration::from_secs(110);

/// Debian installs the script as `testssl`; upstream's name is `testssl.sh`.
fn testssl() -> Option<&'static str> {
    ["testssl", "testssl.sh"]
        .into_iter()
        .find(|name| installed(name))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn testssl_finds_nothing_high_or_critical() {
    let Some(program) = testssl() else {
        crate::common::skipped(
            "testssl_finds_nothing_high_or_critical",
            "testssl.sh not installed (apt-get install testssl.sh)",
        );
        return;
    };
    let ca = Ca::root("testssl CA");
    let dir = tempfile::tempdir().unwrap();
    // The certificate's content is the operator's; give it the revocation pointer a real CA's
    // leaf carries (never fetched: no --phone-out) so the findings are about the listener.
    let mut params = leaf_params(&LOCAL_NAMES, false);
    params.crl_distribution_points = vec![CrlDistributionPoint {
        uris: vec!["http://127.0.0.1:9/testssl-ca.crl".to_owned()],
    }];
    let served = ca.issue(&params, &KeyKind::P256.generate().unwrap());
    let (cert, key) = served.write(dir.path(), "server");
    let ca_file = ca.write(dir.path(), "ca");
    let gw = TestGateway::https(&tls_section(&cert, &key, ""), "http://127.0.0.1:9").await;
    let json = dir.path().join("testssl.json");

    let mut scan = Command::new(program);
    scan.args(["--quiet", "--color", "0", "--warnings", "batch", "--sneaky"])
        .args([
            "--openssl-timeout",
            "5",
            "--connect-timeout",
            "5",
            "--nodns",
            "none",
        ])
        // Protocols, forward secrecy, server preference and defaults (certificate), headers,
        // vulnerabilities; the per-cipher and client-simulation runs are left out for time.
        .args([
            "--protocols",
            "--fs",
            "--server-preference",
            "--server-defaults",
        ])
        .args(["--headers", "--vulnerable"])
        .arg("--add-ca")
        .arg(&ca_file)
        .arg("--jsonfile")
        .arg(&json)
        .arg(format!("127.0.0.1:{}", gw.addr.port()));
    let output = tokio::task::spawn_blocking(move || run_within(&mut scan, None, SCAN_DEADLINE))
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let text = std::fs::read_to_string(&json).unwrap_or_else(|e| {
        panic!(
            "testssl wrote no JSON ({e}); exit {:?}\n{stdout}\n{}",
            output.status.code(),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let findings: Vec<Value> = serde_json::from_str(&text).unwrap();
    let field = |f: &Value, key: &str| f[key].as_str().unwrap_or_default().to_owned();

    let mut counts = BTreeMap::<String, usize>::new();
    for finding in &findings {
        *counts.entry(field(finding, "severity")).or_default() += 1;
    }
    eprintln!(
        "testssl: {} findings, by severity {counts:?}",
        findings.len()
    );
    for finding in &findings {
        let (id, severity) = (field(finding, "id"), field(finding, "severity"));
        let finding_text = field(finding, "finding");
        let summary = id.starts_with("SSLv")
            || id.starts_with("TLS1")
            || id.starts_with("cipherorder")
            || (id.starts_with("cipher_order") && !finding_text.starts_with("at "))
            || matches!(severity.as_str(), "LOW" | "MEDIUM" | "WARN");
        if summary {
            eprintln!("  {severity:<8} {id}: {finding_text}");
        }
    }
    let bad: Vec<String> = findings
        .iter()
        .filter(|f| matches!(field(f, "severity").as_str(), "HIGH" | "CRITICAL"))
        .map(|f| {
            format!(
                "{} {}: {}",
                field(f, "severity"),
                field(f, "id"),
                field(f, "finding")
            )
        })
        .collect();
    assert!(bad.is_empty(), "testssl found:\n{}", bad.join("\n"));
    // The scan must have reached the listener at all.
    let offered = |id: &str| {
        findings
            .iter()
            .any(|f| field(f, "id") == id && field(f, "finding").starts_with("offered"))
    };
    assert!(offered("TLS1_2") && offered("TLS1_3"), "{stdout}");
    for legacy in ["SSLv2", "SSLv3", "TLS1", "TLS1_1"] {
        assert!(!offered(legacy), "{legacy} offered");
    }
}
