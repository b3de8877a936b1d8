//! Running commands in the integration tests. Each support module includes this
//! file as its own `cmd` module (`#[path = "…/common/cmd.rs"] mod cmd;`) and
//! re-exports what its tests use.
//!
//! Every runner closes the child's stdin and panics, naming the command line, if
//! the program cannot be started. The asserting runners panic with the exit status
//! and the whole output unless the command succeeded.

#![allow(dead_code)]

use std::io::Write;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// `program arg arg…`, for messages.
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&arg.to_string_lossy());
    }
    s
}

/// Output bytes as text (invalid UTF-8 replaced).
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn failure(command: &str, status: ExitStatus, stdout: &str, stderr: &str) -> String {
    format!("{command} failed ({status}):\nstdout:\n{stdout}\nstderr:\n{stderr}")
}

/// Runs a command to completion (stdin closed); its output, whatever the exit
/// status.
pub fn output(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", describe(cmd)))
}

/// Runs a command to completion and panics, with its output, unless it succeeded.
/// Returns the raw output (stdout may be binary).
pub fn run_output(cmd: &mut Command) -> Output {
    let out = output(cmd);
    assert_succeeded(cmd, &out);
    out
}

fn assert_succeeded(cmd: &Command, out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        failure(
            &describe(cmd),
            out.status,
            &text(&out.stdout),
            &text(&out.stderr)
        )
    );
}

/// Runs a command, asserts it succeeded, returns its stdout.
pub fn run(cmd: &mut Command) -> String {
    text(&run_output(cmd).stdout)
}

/// Runs a command and returns (success, stdout, stderr) without asserting.
pub fn run_status(cmd: &mut Command) -> (bool, String, String) {
    let run = capture(cmd);
    (run.success, run.stdout, run.stderr)
}

/// Runs a command with `input` on stdin, asserts success, returns stdout.
pub fn run_with_input(cmd: &mut Command, input: &[u8]) -> String {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", describe(cmd)));
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_succeeded(cmd, &out);
    text(&out.stdout)
}

/// A finished command: exit status and its output as text.
#[derive(Debug)]
pub struct Run {
    pub command: String,
    pub status: ExitStatus,
    pub success: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs a command to completion (stdin closed) and captures its output, whatever
/// the exit status.
pub fn capture(cmd: &mut Command) -> Run {
    let out = output(cmd);
    Run {
        command: describe(cmd),
        status: out.status,
        success: out.status.success(),
        code: out.status.code(),
        stdout: text(&out.stdout),
        stderr: text(&out.stderr),
    }
}

impl Run {
    /// Panics with the whole output unless the command succeeded.
    pub fn ok(self) -> Self {
        assert!(
            self.success,
            "{}",
            failure(&self.command, self.status, &self.stdout, &self.stderr)
        );
        self
    }

    /// Panics with the whole output unless the command failed (non-zero exit, not a
    /// crash by signal).
    pub fn failed(self) -> Self {
        assert!(
            !self.success && self.code.is_some(),
            "{} was expected to fail with an exit code ({}):\nstdout:\n{}\nstderr:\n{}",
            self.command,
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }

    /// stdout parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "{} did not print JSON ({e}):\n{}",
                self.command, self.stdout
            )
        })
    }

    /// The single error line of a failed `ferryctl`: stderr minus `WARNING:` lines
    /// must be exactly one non-empty line, `ferryctl: …`, without a panic or a
    /// backtrace. Returns the message after `ferryctl: `.
    pub fn error_sentence(&self) -> String {
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with("WARNING:"))
            .collect();
        assert_eq!(
            lines.len(),
            1,
            "{}: expected one error line on stderr, got:\n{}",
            self.command,
            self.stderr
        );
        let line = lines[0];
        assert!(
            !line.contains("panicked") && !line.contains("RUST_BACKTRACE"),
            "{}: crashed instead of reporting an error:\n{}",
            self.command,
            self.stderr
        );
        line.strip_prefix("ferryctl: ")
            .unwrap_or_else(|| panic!("{}: error line is not `ferryctl: …`: {line}", self.command))
            .to_owned()
    }
}

/// SIGTERM to the child's process group (the child must have been spawned with
/// `process_group(0)`), then SIGKILL to whatever is left of the group; reaps the
/// child.
pub fn kill_group(child: &mut Child) {
    let pgid = child.id() as libc::pid_t;
    // SAFETY: signalling a process group this test created; no memory is involved.
    unsafe {
        libc::kill(-pgid, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: as above; whatever is left of the group goes.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
    let _ = child.wait();
}
