//! Processes the harness runs: started with their output collected live
//! (stdout also line by line, to wait for a line), ended within a timeout,
//! and reported with what they printed.

use anyhow::{anyhow, bail, Context, Result};
use std::io::Write;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use testkit::quote::quote;
use testkit::wait::{Drain, Lines};
use wait_timeout::ChildExt;

/// How long a finished child's stdout and stderr may stay open (held by a
/// process it left behind) before that is an error.
const STREAMS_GRACE: Duration = Duration::from_secs(30);

/// The exit code, or 128+N when killed by signal N (as a shell says it).
pub fn status_code(status: &ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(-1)
}

/// How a process ended.
pub fn describe_status(status: &ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with {code}"),
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        _ => "ended".into(),
    }
}

/// Keeps the last `max` bytes of `text` (at a char boundary), saying what
/// was cut.
pub fn tail(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("[... {} bytes cut ...]\n{}", start, &text[start..])
}

/// A finished command: what ran, how it ended, what it printed.
#[derive(Debug, Clone)]
pub struct Output {
    pub cmdline: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Output {
    /// The exit code, or 128+N when killed by signal N (as a shell says it).
    pub fn code(&self) -> i32 {
        status_code(&self.status)
    }

    /// Fails unless the command exited with `code`.
    pub fn expect_code(&self, code: i32, what: &str) -> Result<&Self> {
        if self.status.code() != Some(code) {
            bail!("{what}: expected exit status {code}\n{self}");
        }
        Ok(self)
    }

    /// Fails unless the command exited with 0.
    pub fn expect_success(&self, what: &str) -> Result<&Self> {
        self.expect_code(0, what)
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "  command: {}\n  it {} after {:.1} s",
            self.cmdline,
            describe_status(&self.status),
            self.elapsed.as_secs_f64()
        )?;
        write_stream(f, "stdout", &self.stdout)?;
        write_stream(f, "stderr", &self.stderr)
    }
}

fn write_stream(f: &mut std::fmt::Formatter<'_>, name: &str, text: &str) -> std::fmt::Result {
    if text.trim().is_empty() {
        return writeln!(f, "  {name}: (empty)");
    }
    writeln!(f, "  {name}:")?;
    for line in tail(text, 3000).lines() {
        writeln!(f, "    | {line}")?;
    }
    Ok(())
}

/// `program arg...` as a shell would read it, with `VAR=value` prefixes.
pub fn cmdline(cmd: &Command) -> String {
    let mut parts: Vec<String> = cmd
        .get_envs()
        .filter_map(|(k, v)| {
            Some(format!(
                "{}={}",
                k.to_string_lossy(),
                quote(&v?.to_string_lossy())
            ))
        })
        .collect();
    parts.push(quote(&cmd.get_program().to_string_lossy()));
    parts.extend(cmd.get_args().map(|a| quote(&a.to_string_lossy())));
    parts.join(" ")
}

/// A running child whose stdout and stderr are collected by threads (stdout
/// also line by line, to wait for a line), with stdin optionally a pipe.
pub struct Proc {
    child: Option<Child>,
    pub cmdline: String,
    started: Instant,
    stdin: Option<ChildStdin>,
    /// stdout line by line; every line also goes into `stdout` as it comes.
    lines: Lines,
    stdout: Arc<Mutex<String>>,
    stderr: Option<Drain>,
}

impl Proc {
    /// Starts `cmd`, with stdin a pipe when `stdin` is true (else /dev/null).
    pub fn spawn(cmd: &mut Command, stdin: bool) -> Result<Proc> {
        let cmdline = cmdline(cmd);
        cmd.stdin(if stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start `{cmdline}`"))?;
        let stdout = Arc::new(Mutex::new(String::new()));
        let lines = Lines::with_copy(
            child.stdout.take().expect("stdout is piped"),
            stdout.clone(),
        );
        let stderr = Drain::new(child.stderr.take().expect("stderr is piped"));
        Ok(Proc {
            stdin: child.stdin.take(),
            child: Some(child),
            cmdline,
            started: Instant::now(),
            lines,
            stdout,
            stderr: Some(stderr),
        })
    }

    /// The process id of the child.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// Its stdout so far.
    pub fn stdout_so_far(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    /// What it printed so far, for messages.
    pub fn so_far(&self) -> String {
        let mut s = format!(
            "  command: {}\n  running for {:.1} s\n",
            self.cmdline,
            self.started.elapsed().as_secs_f64()
        );
        let stderr = self.stderr.as_ref().map(Drain::so_far).unwrap_or_default();
        for (name, text) in [
            ("stdout", self.stdout_so_far()),
            ("stderr", String::from_utf8_lossy(&stderr).into_owned()),
        ] {
            if text.trim().is_empty() {
                s.push_str(&format!("  {name} so far: (empty)\n"));
            } else {
                s.push_str(&format!("  {name} so far:\n"));
                for line in tail(&text, 3000).lines() {
                    s.push_str(&format!("    | {line}\n"));
                }
            }
        }
        s
    }

    /// Waits for a stdout line that contains `needle` and returns it.
    /// Fails, with the output so far, when the process ends or `timeout`
    /// passes first.
    pub fn wait_line(&mut self, needle: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.next(left) {
                Ok(line) if line.contains(needle) => return Ok(line),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => bail!(
                    "waited {} s for a line containing {needle:?}, in vain\n{}",
                    timeout.as_secs(),
                    self.so_far()
                ),
                // The stream ended (or could not be read).
                Err(_) => {
                    let how = self
                        .wait_briefly(Duration::from_secs(5))
                        .map(|s| describe_status(&s))
                        .unwrap_or_else(|| "closed its stdout".into());
                    bail!(
                        "expected a line containing {needle:?}, but the command {how} first\n{}",
                        self.so_far()
                    )
                }
            }
        }
    }

    /// The child's status if it ends within `timeout`.
    fn wait_briefly(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        child.wait_timeout(timeout).ok().flatten()
    }

    /// Writes `text` to the child's stdin.
    pub fn send(&mut self, text: &str) -> Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| anyhow!("stdin of `{}` is not open", self.cmdline))?;
        stdin
            .write_all(text.as_bytes())
            .and_then(|()| stdin.flush())
            .with_context(|| format!("cannot write to the stdin of `{}`", self.cmdline))
    }

    /// Closes the child's stdin (a `read` inside then sees end of file).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Closes stdin and waits for the child to end. Past `timeout` it is
    /// killed (SIGKILL) and that is an error.
    pub fn finish(mut self, timeout: Duration) -> Result<Output> {
        self.close_stdin();
        let mut child = self.child.take().expect("child is present until finish");
        let status = match testkit::wait::child(&mut child, timeout) {
            Ok(status) => status,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => bail!(
                "did not end within {} s; killed it\n{}",
                timeout.as_secs(),
                self.so_far()
            ),
            Err(e) => bail!("cannot wait for `{}`: {e}", self.cmdline),
        };
        // The streams end with the last process that holds them: the child,
        // or one it left behind (the engine kills its whole container).
        let left_open = |e: std::io::Error, name: &str, so_far: String| {
            anyhow!(
                "`{}` {}, but its {name} stayed open: {e} (a process it left behind holds it)\n{so_far}",
                self.cmdline,
                describe_status(&status)
            )
        };
        if let Err(e) = self.lines.wait_end(STREAMS_GRACE) {
            return Err(left_open(e, "stdout", self.so_far()));
        }
        let so_far = self.so_far();
        let stderr = self
            .stderr
            .take()
            .expect("stderr is present until finish")
            .finish(STREAMS_GRACE)
            .map_err(|e| left_open(e, "stderr", so_far))?;
        let out = Output {
            cmdline: self.cmdline.clone(),
            status,
            stdout: self.stdout_so_far(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
            elapsed: self.started.elapsed(),
        };
        trace(&out);
        Ok(out)
    }
}

impl Drop for Proc {
    /// A child still running (a scenario failed midway) sees its stdin
    /// closed, then gets SIGTERM after 5 s and SIGKILL after 10 more.
    fn drop(&mut self) {
        self.stdin = None;
        if self.wait_briefly(Duration::from_secs(5)).is_some() {
            return;
        }
        let Some(mut child) = self.child.take() else {
            return;
        };
        // Our own child, not reaped yet: the pid is still its.
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        // Kills and reaps it if SIGTERM was not enough.
        let _ = testkit::wait::child(&mut child, Duration::from_secs(10));
    }
}

/// Runs `cmd` to the end with stdin from /dev/null; past `timeout` it is
/// killed and that is an error.
pub fn run(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    Proc::spawn(cmd, false)?.finish(timeout)
}

/// With `HARNESS_TRACE=1`, prints a finished command and how long it took.
pub fn trace(out: &Output) {
    if std::env::var_os("HARNESS_TRACE").is_some_and(|v| v == "1") {
        println!(
            "    [trace] {:.2} s, {}: {}",
            out.elapsed.as_secs_f64(),
            describe_status(&out.status),
            out.cmdline
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_waits_for_lines_and_reports_output() {
        let mut p = Proc::spawn(
            Command::new("sh").args(["-c", "echo one; read x; echo got=$x; echo err >&2"]),
            true,
        )
        .unwrap();
        assert_eq!(p.wait_line("one", Duration::from_secs(10)).unwrap(), "one");
        p.send("hello\n").unwrap();
        assert_eq!(
            p.wait_line("got=", Duration::from_secs(10)).unwrap(),
            "got=hello"
        );
        let out = p.finish(Duration::from_secs(10)).unwrap();
        assert_eq!(out.code(), 0);
        assert_eq!(out.stdout, "one\ngot=hello\n");
        assert_eq!(out.stderr, "err\n");
    }

    #[test]
    fn proc_reports_an_early_end_and_a_timeout() {
        let mut p =
            Proc::spawn(Command::new("sh").args(["-c", "echo bye; exit 3"]), false).unwrap();
        let err = p
            .wait_line("never", Duration::from_secs(10))
            .unwrap_err()
            .to_string();
        assert!(err.contains("exited with 3 first"), "{err}");
        assert!(err.contains("| bye"), "{err}");
        let p = Proc::spawn(Command::new("sleep").arg("30"), false).unwrap();
        let err = p
            .finish(Duration::from_millis(200))
            .unwrap_err()
            .to_string();
        assert!(err.contains("did not end within 0 s"), "{err}");
    }
}
