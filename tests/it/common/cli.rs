//! The binary's one-shot commands: run to their end with optional standard input, and the
//! exit code, output and messages checked.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use super::process::tokengate;

/// Runs the binary on `data` with `args` (and `input` on standard input) to its end.
pub fn run(data: &Path, args: &[&str], input: Option<&str>) -> Output {
    let mut command = tokengate();
    command.arg("--data-dir").arg(data).args(args);
    run_command(&mut command, input)
}

pub fn run_command(command: &mut Command, input: Option<&str>) -> Output {
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    if input.is_some() {
        command.stdin(Stdio::piped());
    }
    let mut child = command.spawn().unwrap();
    if let Some(input) = input {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    child.wait_with_output().unwrap()
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
