//! A child process that prints JSON lines (`ferryctl --json serve`, `sources
//! --watch --json`, `update --json`): its stdout is read on a thread as the lines
//! come, its stderr is kept for failure messages, and its whole process group is
//! killed on drop, also when the test fails.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::cmd::{describe, kill_group};

/// One line of output, with when it arrived. A line that is not JSON is kept as a
/// JSON string, so it shows in the transcript and matches no event.
#[derive(Clone, Debug)]
pub struct Line {
    pub at: Instant,
    pub value: Value,
}

/// A running child whose stdout is read line by line (JSON) and stderr kept.
pub struct JsonLines {
    child: Child,
    lines: mpsc::Receiver<Line>,
    /// Every line read so far, in order.
    pub seen: Vec<Line>,
    stderr: Arc<Mutex<String>>,
    stderr_reader: Option<JoinHandle<()>>,
}

impl JsonLines {
    /// Starts `cmd` in its own process group (so the whole tree can be killed),
    /// stdin closed, stdout and stderr read by threads.
    pub fn spawn(mut cmd: Command) -> Self {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", describe(&cmd)));
        let stdout = child.stdout.take().expect("stdout");
        let mut stderr_pipe = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let at = Instant::now();
                let value = serde_json::from_str(&line).unwrap_or(Value::String(line));
                if tx.send(Line { at, value }).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let keep = stderr.clone();
        let stderr_reader = thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let Ok(mut s) = keep.lock() {
                    s.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        });
        Self {
            child,
            lines: rx,
            seen: Vec::new(),
            stderr,
            stderr_reader: Some(stderr_reader),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next line, waiting up to `timeout`; `None` at the timeout or at the end
    /// of the output.
    pub fn next_line(&mut self, timeout: Duration) -> Option<Line> {
        let line = self.lines.recv_timeout(timeout).ok()?;
        self.seen.push(line.clone());
        Some(line)
    }

    /// Waits up to `timeout` for a line matching `pred`; lines already seen count.
    pub fn wait_for(
        &mut self,
        timeout: Duration,
        mut pred: impl FnMut(&Value) -> bool,
    ) -> Option<Line> {
        if let Some(line) = self.seen.iter().find(|l| pred(&l.value)) {
            return Some(line.clone());
        }
        self.wait_for_new(timeout, pred)
    }

    /// Waits up to `timeout` for a line not read before that matches `pred`.
    pub fn wait_for_new(
        &mut self,
        timeout: Duration,
        mut pred: impl FnMut(&Value) -> bool,
    ) -> Option<Line> {
        let deadline = Instant::now() + timeout;
        loop {
            let line = self.next_line(deadline.saturating_duration_since(Instant::now()))?;
            if pred(&line.value) {
                return Some(line);
            }
        }
    }

    /// Reads every line that arrives within `duration`.
    pub fn drain_for(&mut self, duration: Duration) {
        let deadline = Instant::now() + duration;
        while self
            .next_line(deadline.saturating_duration_since(Instant::now()))
            .is_some()
        {}
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Everything seen so far and stderr, for failure messages.
    pub fn transcript(&self) -> String {
        let mut out: String = self.seen.iter().map(|l| format!("{}\n", l.value)).collect();
        out.push_str("--- stderr ---\n");
        out.push_str(&self.stderr());
        out
    }

    /// Sends `signal` to the child (not its group).
    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: plain kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        assert_eq!(rc, 0, "kill({}, {signal})", self.child.id());
    }

    /// Waits up to `timeout` for the child to exit (`None` if it did not), then
    /// reads what is left of its output (up to 5 s each for stdout and stderr).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for the child") {
                break status;
            }
            if Instant::now() > deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        };
        while self.next_line(Duration::from_secs(5)).is_some() {}
        if let Some(reader) = self.stderr_reader.take() {
            let until = Instant::now() + Duration::from_secs(5);
            while !reader.is_finished() && Instant::now() < until {
                thread::sleep(Duration::from_millis(20));
            }
        }
        Some(status)
    }

    /// SIGKILL to the whole process group, and reaps the child.
    pub fn kill(&mut self) {
        // SAFETY: signalling the process group this child leads.
        unsafe {
            libc::kill(-(self.child.id() as libc::pid_t), libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

impl Drop for JsonLines {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}
