//! Small helpers: processes with timeouts and live output capture, tokens,
//! ELF interpreters.

use anyhow::{anyhow, bail, Context, Result};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A short random hex string (for markers and unique names).
pub fn token() -> String {
    let mut buf = [0u8; 6];
    let got = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf));
    if got.is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        buf[..4].copy_from_slice(&nanos.to_le_bytes());
        buf[4..].copy_from_slice(&(std::process::id() as u16).to_le_bytes());
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

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

/// Quotes a word for a shell when it needs it (for command lines in messages).
pub fn shell_quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// `program arg...` as a shell would read it, with `VAR=value` prefixes.
pub fn cmdline(cmd: &Command) -> String {
    let mut parts: Vec<String> = cmd
        .get_envs()
        .filter_map(|(k, v)| {
            Some(format!(
                "{}={}",
                k.to_string_lossy(),
                shell_quote(&v?.to_string_lossy())
            ))
        })
        .collect();
    parts.push(shell_quote(&cmd.get_program().to_string_lossy()));
    parts.extend(cmd.get_args().map(|a| shell_quote(&a.to_string_lossy())));
    parts.join(" ")
}

/// A running child whose stdout and stderr are collected by threads (stdout
/// also line by line, to wait for a line), with stdin optionally a pipe.
pub struct Proc {
    child: Option<Child>,
    pub cmdline: String,
    started: Instant,
    stdin: Option<ChildStdin>,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    lines: Receiver<String>,
    readers: Vec<JoinHandle<()>>,
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
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, lines) = std::sync::mpsc::channel();
        let out_pipe = child.stdout.take().expect("stdout is piped");
        let err_pipe = child.stderr.take().expect("stderr is piped");
        let out_buf = stdout.clone();
        let err_buf = stderr.clone();
        let readers = vec![
            std::thread::spawn(move || {
                let mut reader = BufReader::new(out_pipe);
                let mut raw = Vec::new();
                loop {
                    raw.clear();
                    match reader.read_until(b'\n', &mut raw) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            let line = String::from_utf8_lossy(&raw).into_owned();
                            out_buf.lock().unwrap().push_str(&line);
                            let _ = tx.send(line.trim_end_matches('\n').to_string());
                        }
                    }
                }
            }),
            std::thread::spawn(move || {
                let mut reader = err_pipe;
                let mut buf = [0u8; 4096];
                loop {
                    match reader.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => err_buf
                            .lock()
                            .unwrap()
                            .push_str(&String::from_utf8_lossy(&buf[..n])),
                    }
                }
            }),
        ];
        Ok(Proc {
            stdin: child.stdin.take(),
            child: Some(child),
            cmdline,
            started: Instant::now(),
            stdout,
            stderr,
            lines,
            readers,
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
        for (name, buf) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            let text = buf.lock().unwrap().clone();
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
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return Ok(line),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => bail!(
                    "waited {} s for a line containing {needle:?}, in vain\n{}",
                    timeout.as_secs(),
                    self.so_far()
                ),
                Err(RecvTimeoutError::Disconnected) => {
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
        let deadline = Instant::now() + timeout;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => return None,
            }
        }
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
        let deadline = Instant::now() + timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    bail!(
                        "did not end within {} s; killed it\n{}",
                        timeout.as_secs(),
                        self.so_far()
                    );
                }
                Err(e) => bail!("cannot wait for `{}`: {e}", self.cmdline),
            }
        };
        for reader in self.readers.drain(..) {
            // A grandchild that kept the pipes open would block this join;
            // the engine kills its whole container, so this ends.
            let _ = reader.join();
        }
        let out = Output {
            cmdline: self.cmdline.clone(),
            status,
            stdout: self.stdout.lock().unwrap().clone(),
            stderr: self.stderr.lock().unwrap().clone(),
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
        // SAFETY: kill(2) on our own child's pid, which we have not reaped.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
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

/// The program interpreter (`PT_INTERP`) of a 64-bit little-endian ELF
/// executable, such as `/lib64/ld-linux-x86-64.so.2`.
pub fn elf_interpreter(path: &Path) -> Result<PathBuf> {
    let data = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let bad = || {
        anyhow!(
            "{} is not a 64-bit little-endian ELF executable",
            path.display()
        )
    };
    if data.len() < 64 || &data[..4] != b"\x7fELF" || data[4] != 2 || data[5] != 1 {
        return Err(bad());
    }
    let u16_at = |o: usize| -> Option<u64> {
        Some(u16::from_le_bytes(data.get(o..o + 2)?.try_into().ok()?) as u64)
    };
    let u32_at = |o: usize| -> Option<u64> {
        Some(u32::from_le_bytes(data.get(o..o + 4)?.try_into().ok()?) as u64)
    };
    let u64_at = |o: usize| -> Option<u64> {
        Some(u64::from_le_bytes(data.get(o..o + 8)?.try_into().ok()?))
    };
    let phoff = u64_at(0x20).ok_or_else(bad)? as usize;
    let phentsize = u16_at(0x36).ok_or_else(bad)? as usize;
    let phnum = u16_at(0x38).ok_or_else(bad)? as usize;
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        if u32_at(ph).ok_or_else(bad)? == 3 {
            let offset = u64_at(ph + 8).ok_or_else(bad)? as usize;
            let size = u64_at(ph + 32).ok_or_else(bad)? as usize;
            let raw = data.get(offset..offset + size).ok_or_else(bad)?;
            let text = String::from_utf8_lossy(raw);
            return Ok(PathBuf::from(text.trim_end_matches('\0')));
        }
    }
    bail!(
        "{} has no program interpreter (statically linked?)",
        path.display()
    )
}

/// The ELF machine (`e_machine`) of an executable; None when it is not ELF
/// (a script).
pub fn elf_machine(path: &Path) -> Option<u16> {
    let mut head = [0u8; 20];
    std::fs::File::open(path).ok()?.read_exact(&mut head).ok()?;
    if &head[..4] != b"\x7fELF" {
        return None;
    }
    let bytes = [head[18], head[19]];
    Some(if head[5] == 2 {
        u16::from_be_bytes(bytes)
    } else {
        u16::from_le_bytes(bytes)
    })
}

/// The ELF machine of this build: 62 (x86-64) or 183 (aarch64).
pub fn host_elf_machine() -> Option<u16> {
    match std::env::consts::ARCH {
        "x86_64" => Some(62),
        "aarch64" => Some(183),
        _ => None,
    }
}

/// Finds `program` in PATH (or the usual system directories).
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain([
            "/usr/local/sbin",
            "/usr/local/bin",
            "/usr/sbin",
            "/usr/bin",
            "/sbin",
            "/bin",
        ])
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file());
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpreter_of_a_dynamic_binary() {
        let sh = which("ls").expect("ls is installed");
        let interp = elf_interpreter(&std::fs::canonicalize(sh).unwrap()).unwrap();
        assert!(
            interp.to_string_lossy().contains("ld-linux"),
            "{}",
            interp.display()
        );
    }

    #[test]
    fn machine_of_this_test_binary() {
        let exe = std::env::current_exe().unwrap();
        assert_eq!(elf_machine(&exe), host_elf_machine());
        assert_eq!(elf_machine(Path::new("/etc/hostname")), None);
    }

    #[test]
    fn not_an_elf_is_refused() {
        let err = elf_interpreter(Path::new("/etc/hostname")).unwrap_err();
        assert!(err.to_string().contains("not a 64-bit"), "{err}");
    }

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

    #[test]
    fn quoting_for_messages() {
        assert_eq!(shell_quote("ps"), "ps");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }
}
