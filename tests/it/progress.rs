//! Long work says how far it got: a start-up replaying a journal of thousands of tokens (or
//! reading them from etcd) logs progress lines and a summary with the count and the time taken;
//! `tokens list` shows progress on standard error unless `--quiet`, with the same listing on
//! standard output either way. The reporting interval is set to zero through the variable the
//! progress module reads, so every report point shows without waiting.

use std::path::Path;

use crate::common::cli::{ok, run_command};
use crate::common::journal::with_tokens;
use crate::common::process::{field, tokengate, GatewayProcess};
use tokengate::observe::progress::INTERVAL_ENV;

/// Enough tokens for a report point in the replay (one every 4096 records) and in the listing.
const TOKENS: usize = 5000;
const PASSWORD: &str = "progress-elastic-pw";

/// The one line of `lines` containing `needle`, or the test fails showing them all.
fn line_with<'a>(lines: &'a [String], needle: &str) -> &'a str {
    lines
        .iter()
        .find(|line| line.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in {lines:#?}"))
}

fn number(line: &str, name: &str) -> u64 {
    field(line, name)
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no number {name}= in {line}"))
}

/// The binary on an ephemeral port over `dir`, reporting at every report point.
async fn start(dir: &Path, env: &[(&str, &str)]) -> GatewayProcess {
    let mut command = tokengate();
    command
        .args([
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            "http://127.0.0.1:9",
        ])
        .arg("--data-dir")
        .arg(dir)
        .env("ELASTIC_PASSWORD", PASSWORD)
        .env(INTERVAL_ENV, "0")
        .envs(env.iter().copied());
    GatewayProcess::spawn(&mut command).await
}

#[tokio::test]
async fn a_start_up_replaying_thousands_of_tokens_logs_progress_then_the_count_and_time() {
    let dir = tempfile::tempdir().unwrap();
    with_tokens(dir.path(), TOKENS).await;
    let journal_len = std::fs::metadata(dir.path().join("tokens.journal"))
        .unwrap()
        .len();

    let mut gateway = start(dir.path(), &[]).await;
    let progress = line_with(&gateway.startup, "replaying the token journal");
    let tokens = number(progress, "tokens");
    assert!(tokens > 0 && tokens < TOKENS as u64, "{progress}");
    assert_eq!(number(progress, "of_bytes"), journal_len, "{progress}");
    assert!(number(progress, "bytes") < journal_len, "{progress}");
    for name in ["tokens_per_s", "left_s"] {
        assert!(field(progress, name).is_some(), "no {name}= in {progress}");
    }
    let summary = line_with(&gateway.startup, "token store opened");
    assert_eq!(number(summary, "tokens"), TOKENS as u64, "{summary}");
    assert!(field(summary, "took_ms").is_some(), "{summary}");
    gateway.signal("TERM");
    assert!(gateway.exit().await.0.success());
}

/// `tokens list` on `dir`, every report point shown, with `extra` arguments.
fn list(dir: &Path, extra: &[&str]) -> std::process::Output {
    let mut command = tokengate();
    command
        .arg("--data-dir")
        .arg(dir)
        .args(["tokens", "list"])
        .args(extra)
        .env(INTERVAL_ENV, "0");
    run_command(&mut command, None)
}

#[tokio::test]
async fn tokens_list_shows_progress_on_stderr_unless_quiet_and_lists_the_same_either_way() {
    let dir = tempfile::tempdir().unwrap();
    let names = with_tokens(dir.path(), TOKENS).await;
    let listing = format!("{}\n", names.join("\n"));

    let shown = list(dir.path(), &[]);
    assert_eq!(ok(&shown), listing);
    let stderr = String::from_utf8_lossy(&shown.stderr);
    let lines: Vec<String> = stderr.lines().map(str::to_owned).collect();
    let reading = line_with(&lines, "reading the token journal: ");
    assert!(reading.contains(" bytes ("), "{reading}");
    let listed = line_with(&lines, "listing: ");
    assert!(
        listed.starts_with(&format!("listing: 4096/{TOKENS} (")),
        "{listed}"
    );
    assert!(
        lines
            .iter()
            .all(|line| line.starts_with("reading the token journal: ")
                || line.starts_with("listing: ")),
        "{stderr}"
    );

    for quiet in ["--quiet", "-q"] {
        let silent = list(dir.path(), &[quiet]);
        assert_eq!(ok(&silent), listing, "{quiet}");
        assert_eq!(String::from_utf8_lossy(&silent.stderr), "", "{quiet}");
    }
}

#[cfg(feature = "etcd")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_and_a_start_up_on_etcd_report_progress_and_the_count() {
    use crate::common::etcd::EtcdCluster;

    let test = "a_migration_and_a_start_up_on_etcd_report_progress_and_the_count";
    let Some(etcd) = EtcdCluster::start(1, test).await else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let (journal, shared) = (root.path().join("journal"), root.path().join("shared"));
    with_tokens(&journal, TOKENS).await;
    let endpoint = etcd.endpoint(0);
    let store = [
        ("TOKENGATE_STORE__ENDPOINTS", endpoint.as_str()),
        ("TOKENGATE_STORE__PREFIX", "/progress/"),
    ];

    let mut migrate = tokengate();
    migrate
        .arg("--data-dir")
        .arg(&journal)
        .args(["tokens", "migrate", "--to", "etcd"])
        .env(INTERVAL_ENV, "0")
        .envs(store);
    let migrated = run_command(&mut migrate, None);
    assert!(
        ok(&migrated).contains(&format!("copied {TOKENS} token(s)")),
        "{migrated:?}"
    );
    let stderr = String::from_utf8_lossy(&migrated.stderr);
    let lines: Vec<String> = stderr.lines().map(str::to_owned).collect();
    line_with(&lines, "reading the token journal: ");
    line_with(&lines, &format!("copying to etcd: {TOKENS}/{TOKENS} ("));

    let on_etcd = [("TOKENGATE_STORE__BACKEND", "etcd")];
    let mut gateway = start(&shared, &[&store[..], &on_etcd[..]].concat()).await;
    let progress = line_with(&gateway.startup, "reading the tokens from etcd");
    assert_eq!(number(progress, "of_ranges"), 256, "{progress}");
    assert!(field(progress, "tokens_per_s").is_some(), "{progress}");
    let summary = line_with(&gateway.startup, "token store read from etcd");
    assert_eq!(number(summary, "tokens"), TOKENS as u64, "{summary}");
    assert!(field(summary, "took_ms").is_some(), "{summary}");
    gateway.signal("TERM");
    assert!(gateway.exit().await.0.success());
}
