//! A real browser for the pages the gateway serves: Debian's `chromium`, headless, as a child
//! process. It loads a page, runs its script under a virtual-time budget (timers fire without
//! the test waiting for them in real time) and hands back the DOM as rendered, or a screenshot.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

/// The browser programs tried, in order.
const PROGRAMS: [&str; 3] = ["chromium", "chromium-browser", "google-chrome"];
/// Bound on one browser run, far above what loading a local page takes.
const RUN_DEADLINE: Duration = Duration::from_secs(90);

/// A headless browser with a profile of its own (removed when dropped), so runs side by side
/// never share one.
pub struct Browser {
    program: &'static str,
    profile: TempDir,
}

impl Browser {
    /// The first browser installed, if any.
    pub fn find() -> Option<Browser> {
        let program = PROGRAMS.into_iter().find(|p| super::tls::installed(p))?;
        Some(Browser {
            program,
            profile: tempfile::tempdir().unwrap(),
        })
    }

    fn command(&self, extra: &[String], url: &str) -> Command {
        let mut command = Command::new(self.program);
        command
            .args([
                "--headless",
                "--disable-gpu",
                "--no-sandbox",
                "--no-first-run",
                "--disable-dev-shm-usage",
                "--disable-extensions",
                "--disable-background-networking",
                "--no-proxy-server",
            ])
            .arg(format!("--user-data-dir={}", self.profile.path().display()))
            .args(extra)
            .arg(url)
            .stdin(Stdio::null());
        command
    }

    /// The DOM of `url` after its scripts ran for `budget` of virtual time.
    pub async fn dump_dom(&self, url: &str, budget: Duration) -> String {
        let extra = [
            "--dump-dom".to_owned(),
            format!("--virtual-time-budget={}", budget.as_millis()),
        ];
        let output = run(self.command(&extra, url)).await;
        String::from_utf8_lossy(&output).into_owned()
    }

    /// A PNG of `url` at `width`×`height` after `budget` of virtual time, written to `path`.
    pub async fn screenshot(&self, url: &str, path: &Path, size: (u32, u32), budget: Duration) {
        let extra = [
            format!("--screenshot={}", path.display()),
            format!("--window-size={},{}", size.0, size.1),
            format!("--virtual-time-budget={}", budget.as_millis()),
            "--hide-scrollbars".to_owned(),
        ];
        run(self.command(&extra, url)).await;
        assert!(path.exists(), "no screenshot at {}", path.display());
    }
}

/// Runs `command` off the runtime's thread (the gateway under test serves on it meanwhile);
/// its stdout, failing the test if it fails or outlives [`RUN_DEADLINE`].
async fn run(mut command: Command) -> Vec<u8> {
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let waiting = tokio::task::spawn_blocking(move || child.wait_with_output());
    match tokio::time::timeout(RUN_DEADLINE, waiting).await {
        Ok(output) => {
            let output = output.unwrap().unwrap();
            assert!(
                output.status.success(),
                "browser failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
            output.stdout
        }
        Err(_) => {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
            panic!("the browser did not finish within {RUN_DEADLINE:?}");
        }
    }
}
