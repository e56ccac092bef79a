//! The built binary as a child process: a clean environment, its log lines as they come, signals
//! by PID, and an exit awaited through the end of its log rather than by polling.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use tokio::sync::mpsc;

pub const BIN: &str = env!("CARGO_BIN_EXE_tokengate");
/// How long the binary may take to log that it listens, or anything else a test waits for.
pub const LOG_DEADLINE: Duration = Duration::from_secs(30);

/// The binary with a clean environment for the variables it reads.
pub fn tokengate() -> Command {
    let mut command = Command::new(BIN);
    command
        .env_remove("RUST_LOG")
        .env_remove("TOKENGATE_CONFIG")
        .env_remove("ELASTIC_PASSWORD")
        // Tests run side by side: every gateway gets an admin port of its own.
        .env("TOKENGATE_ADMIN_LISTEN", "127.0.0.1:0")
        .stdin(Stdio::null());
    command
}

/// Removes ANSI colour sequences the log formatter may add around field names.
pub fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The `field=value` of a log line.
pub fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|part| part.strip_prefix(name)?.strip_prefix('='))
}

/// The `addr` of a `listening` line, written as text (`addr=…`) or as a JSON object.
fn listening_addr(line: &str) -> SocketAddr {
    let addr = if line.starts_with('{') {
        let json: serde_json::Value = serde_json::from_str(line).unwrap();
        json["addr"].as_str().unwrap().to_owned()
    } else {
        field(line, "addr").unwrap().to_owned()
    };
    addr.parse().unwrap()
}

/// A running gateway process; killed by its PID when dropped, however the test ends.
pub struct GatewayProcess {
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
    /// The `listening` line.
    pub listening: String,
    /// The plain-HTTP address it logged.
    pub addr: SocketAddr,
    /// Every line logged before `listening`: what a start said about its configuration.
    pub startup: Vec<String>,
}

impl GatewayProcess {
    /// Spawns `command` (stderr captured, stdout discarded) and waits for its `listening` line.
    pub async fn spawn(command: &mut Command) -> GatewayProcess {
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::unbounded_channel();
        // Reads until the child closes stderr, i.e. exits; never lets the pipe fill up.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(strip_ansi(&line)).is_err() {
                    break;
                }
            }
        });
        let mut process = GatewayProcess {
            child,
            lines,
            listening: String::new(),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            startup: Vec::new(),
        };
        let startup = tokio::time::timeout(LOG_DEADLINE, async {
            let mut before = Vec::new();
            while let Some(line) = process.lines.recv().await {
                if line.contains("listening") {
                    return Some((before, line));
                }
                before.push(line);
            }
            None
        })
        .await;
        match startup {
            Ok(Some((before, line))) => {
                process.startup = before;
                process.listening = line;
            }
            Ok(None) => panic!("the gateway exited without logging \"listening\""),
            Err(_) => panic!("no \"listening\" log line within {LOG_DEADLINE:?}"),
        }
        process.addr = listening_addr(&process.listening);
        process
    }

    /// The next log line containing `needle`; fails the test if the log ends or stays silent
    /// about it for [`LOG_DEADLINE`].
    pub async fn wait_for(&mut self, needle: &str) -> String {
        let found = tokio::time::timeout(LOG_DEADLINE, async {
            while let Some(line) = self.lines.recv().await {
                if line.contains(needle) {
                    return Some(line);
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(line)) => line,
            Ok(None) => panic!("the gateway exited without logging {needle:?}"),
            Err(_) => panic!("no log line with {needle:?} within {LOG_DEADLINE:?}"),
        }
    }

    /// The log lines up to and including the next one containing `needle` (bounded as
    /// [`GatewayProcess::wait_for`]), to check what was logged before it.
    pub async fn lines_until(&mut self, needle: &str) -> Vec<String> {
        let mut seen = Vec::new();
        let found = tokio::time::timeout(LOG_DEADLINE, async {
            while let Some(line) = self.lines.recv().await {
                let done = line.contains(needle);
                seen.push(line);
                if done {
                    return true;
                }
            }
            false
        })
        .await;
        assert!(
            matches!(found, Ok(true)),
            "no log line with {needle:?}: {seen:?}"
        );
        seen
    }

    /// Creates token `name` of `elastic/fleet-server` through the process's API as `elastic`
    /// with `password`; returns the token's value.
    pub async fn create_token(&self, name: &str, password: &str) -> String {
        let url = format!(
            "http://{}/_security/service/elastic/fleet-server/credential/token/{name}",
            self.addr
        );
        let response = super::client()
            .post(url)
            .header("authorization", super::basic("elastic", password))
            .send()
            .await
            .unwrap();
        let (status, body) = super::json_of(response).await;
        assert_eq!(status, 200, "{body}");
        body["token"]["value"].as_str().unwrap().to_owned()
    }

    /// Sends signal `name` (`TERM`, `HUP`, …) to the process by its PID.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} failed");
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits for the process to end (its log closes first), with the remaining log lines.
    pub async fn exit(&mut self) -> (ExitStatus, Vec<String>) {
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(LOG_DEADLINE, async {
            while let Some(line) = self.lines.recv().await {
                rest.push(line);
            }
        })
        .await;
        assert!(
            closed.is_ok(),
            "the gateway did not exit within {LOG_DEADLINE:?}"
        );
        (self.child.wait().unwrap(), rest)
    }

    /// Kills the process now.
    pub fn kill(&mut self) -> ExitStatus {
        let _ = self.child.kill();
        self.child.wait().unwrap()
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
