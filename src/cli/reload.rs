//! `tokengate reload`: as `nginx -s reload`, signals the gateway that holds the data directory
//! to read its configuration again. The configuration given to this command is only checked
//! (a broken file is reported here, before any signal) and names the data directory; the
//! gateway reads its own file with its own command line.

use std::process::{Command, ExitCode};

use super::EXIT_START;
use crate::app::pid;
use crate::config::Config;
use crate::store;

/// Sends SIGHUP to the gateway running on `config`'s data directory.
pub fn run(config: &Config) -> ExitCode {
    let dir = &config.server.data_dir;
    match store::in_use(dir) {
        Ok(true) => {}
        Ok(false) => {
            eprintln!(
                "tokengate: no gateway runs on data directory {}; nothing to reload",
                dir.display()
            );
            return ExitCode::from(EXIT_START);
        }
        Err(error) => {
            eprintln!("tokengate: {error}");
            return ExitCode::from(EXIT_START);
        }
    }
    let pid = match pid::read(dir) {
        Ok(pid) => pid,
        Err(error) => {
            eprintln!(
                "tokengate: a gateway holds {} but its pid file {} is unusable ({error}); send it SIGHUP by hand",
                dir.display(),
                pid::path(dir).display()
            );
            return ExitCode::from(EXIT_START);
        }
    };
    // `kill` rather than a syscall binding: the crate has no unsafe code and needs no
    // dependency for this one call.
    match Command::new("kill")
        .arg("-HUP")
        .arg(pid.to_string())
        .status()
    {
        Ok(status) if status.success() => {
            eprintln!(
                "tokengate: sent SIGHUP to the gateway (pid {pid}) on {}; its log tells the outcome",
                dir.display()
            );
            ExitCode::SUCCESS
        }
        Ok(status) => {
            eprintln!("tokengate: kill -HUP {pid} failed ({status})");
            ExitCode::from(EXIT_START)
        }
        Err(error) => {
            eprintln!("tokengate: cannot run kill: {error}");
            ExitCode::from(EXIT_START)
        }
    }
}
