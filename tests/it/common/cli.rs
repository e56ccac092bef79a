//! One-shot commands, the binary's and other programs' (curl, testssl.sh): run to their end with
//! optional standard input, killed if they outlive a deadline, and the exit code, output and
//! messages checked.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use super::process::tokengate;

/// How long a one-shot command of the binary may take; far above what any needs, so only a
/// command that hangs reaches it.
pub const RUN_DEADLINE: Duration = Duration::from_secs(60);

/// Runs the binary on `data` with `args` (and `input` on standard input) to its end.
pub fn run(data: &Path, args: &[&str], input: Option<&str>) -> Output {
    let mut command = tokengate();
    command.arg("--data-dir").arg(data).args(args);
    run_command(&mut command, input)
}

/// Runs `command` to its end within [`RUN_DEADLINE`], nothing on standard input.
pub fn run_to_end(command: &mut Command) -> Output {
    run_command(command, None)
}

/// Runs `command` to its end within [`RUN_DEADLINE`], with `input` on standard input.
pub fn run_command(command: &mut Command, input: Option<&str>) -> Output {
    run_within(command, input, RUN_DEADLINE)
}

/// Runs `command` (output captured, `input` or nothing on standard input) in its own process
/// group, which is killed if it has not finished after `deadline`; the test then fails instead
/// of hanging.
pub fn run_within(command: &mut Command, input: Option<&str>, deadline: Duration) -> Output {
    use std::os::unix::process::CommandExt;
    command
        .process_group(0)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    if let Some(input) = input {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    let group = child.id();
    let (done, outcome) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    match outcome.recv_timeout(deadline) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &format!("-{group}")])
                .status();
            panic!("{command:?} did not finish within {deadline:?}");
        }
    }
}

/// Exit code, stdout, stderr.
pub fn outcome(output: &Output) -> (Option<i32>, String, String) {
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

pub fn ok(output: &Output) -> String {
    let (code, stdout, stderr) = outcome(output);
    assert_eq!(code, Some(0), "stdout: {stdout}\nstderr: {stderr}");
    stdout
}

/// Asserts the exit code and that standard error carries `message`.
pub fn fails(output: &Output, code: i32, message: &str) {
    let (got, stdout, stderr) = outcome(output);
    assert_eq!(got, Some(code), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains(message), "{message:?} not in: {stderr}");
}
