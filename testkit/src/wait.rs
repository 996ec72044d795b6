//! Waiting without sleeping blindly: poll a condition until a deadline, wait
//! for a child with a timeout, for its whole output, for a process we are
//! the subreaper of, for a file, or for a line of output. Nothing here
//! waits without a deadline.

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};
use wait_timeout::ChildExt;

const POLL: Duration = Duration::from_millis(10);

/// Polls `f` until it returns Some, or fails after `timeout` naming `what`.
pub fn poll_until<T>(
    timeout: Duration,
    what: &str,
    mut f: impl FnMut() -> Option<T>,
) -> io::Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("timed out after {timeout:?} waiting for {what}"),
            ));
        }
        std::thread::sleep(POLL);
    }
}

/// [`poll_until`], panicking on timeout: for tests.
pub fn until<T>(timeout: Duration, what: &str, f: impl FnMut() -> Option<T>) -> T {
    poll_until(timeout, what, f).unwrap_or_else(|e| panic!("{e}"))
}

/// Waits for `child` to exit; after `timeout` kills it, reaps it and fails.
pub fn child(child: &mut Child, timeout: Duration) -> io::Result<ExitStatus> {
    match child.wait_timeout(timeout)? {
        Some(status) => Ok(status),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("process {} still ran after {timeout:?}: killed", child.id()),
            ))
        }
    }
}

/// Runs `cmd` to its end with stdin from /dev/null and stdout and stderr
/// captured, as [`Command::output`] does, but within `timeout`: after it the
/// process is killed and reaped, and that is an error.
pub fn output(cmd: &mut Command, timeout: Duration) -> io::Result<Output> {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            io::Error::new(e.kind(), format!("cannot run {:?}: {e}", cmd.get_program()))
        })?;
    output_of(child, timeout)
}

/// The status and output of a spawned `child` (whichever of its stdout and
/// stderr are piped are read while it runs, so a full pipe cannot stall it).
/// After `timeout` the child is killed and reaped, and that is an error; so
/// is output still open at the deadline (a process the child left behind
/// holds it).
pub fn output_of(mut child: Child, timeout: Duration) -> io::Result<Output> {
    let deadline = Instant::now() + timeout;
    let stdout = child.stdout.take().map(Drain::new);
    let stderr = child.stderr.take().map(Drain::new);
    let status = self::child(&mut child, timeout)?;
    let rest = || deadline.saturating_duration_since(Instant::now());
    let read = |d: Option<Drain>, what: &str| match d {
        None => Ok(Vec::new()),
        Some(d) => d.finish(rest()).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("process {} ended, but its {what}: {e}", child.id()),
            )
        }),
    };
    Ok(Output {
        status,
        stdout: read(stdout, "stdout")?,
        stderr: read(stderr, "stderr")?,
    })
}

/// A stream read to its end on a thread of its own, into a buffer that can
/// be looked at while it is read.
pub struct Drain {
    buf: Arc<Mutex<Vec<u8>>>,
    done: mpsc::Receiver<()>,
}

impl Drain {
    pub fn new(mut stream: impl Read + Send + 'static) -> Drain {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let (tx, done) = mpsc::channel();
        let sink = buf.clone();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            while let Ok(n) = stream.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
            let _ = tx.send(());
        });
        Drain { buf, done }
    }

    /// What was read so far.
    pub fn so_far(&self) -> Vec<u8> {
        self.buf.lock().unwrap().clone()
    }

    /// Everything, once the stream has ended; fails if it is still open
    /// after `timeout`.
    pub fn finish(self, timeout: Duration) -> io::Result<Vec<u8>> {
        match self.done.recv_timeout(timeout) {
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => Ok(self.so_far()),
            Err(mpsc::RecvTimeoutError::Timeout) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("stream still open after {timeout:?}"),
            )),
        }
    }
}

/// Reaps `pid`, a child of ours or a process we are the subreaper of, once
/// it has ended: its status, or None when it is not ours to reap (never
/// was, or already reaped). After `timeout` it is killed (SIGKILL) and
/// reaped, and that is an error.
pub fn reap(pid: i32, timeout: Duration) -> io::Result<Option<WaitStatus>> {
    let pid = Pid::from_raw(pid);
    let deadline = Instant::now() + timeout;
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {}
            Ok(status) => return Ok(Some(status)),
            Err(nix::errno::Errno::ECHILD) => return Ok(None),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(io::Error::other(format!("waitpid({pid}): {e}"))),
        }
        if Instant::now() >= deadline {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = waitpid(pid, None);
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("process {pid} still ran after {timeout:?}: killed"),
            ));
        }
        std::thread::sleep(POLL);
    }
}

/// Waits until `fd` (a pipe or socket) has something to read, or its writer
/// is gone: a blocking read after this returns at once.
pub fn readable(fd: std::os::fd::BorrowedFd<'_>, timeout: Duration) -> io::Result<()> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = PollTimeout::try_from(left.as_millis().min(i32::MAX as u128) as i32)
            .unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        match poll(&mut fds, ms) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("nothing to read within {timeout:?}"),
                ))
            }
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(io::Error::other(format!("poll: {e}"))),
        }
    }
}

/// Waits until `path` exists.
pub fn file(path: &Path, timeout: Duration) -> io::Result<()> {
    poll_until(timeout, &format!("{} to exist", path.display()), || {
        path.exists().then_some(())
    })
}

/// Waits until process `pid` is gone (its /proc entry vanished; a zombie
/// that is not ours counts as gone only once reaped).
pub fn pid_gone(pid: i32, timeout: Duration) -> io::Result<()> {
    poll_until(timeout, &format!("process {pid} to end"), || {
        (!Path::new(&format!("/proc/{pid}")).exists()).then_some(())
    })
}

/// The lines of a stream, read on a thread of their own so that each wait
/// has a deadline even when the writer hangs. Bytes that are not UTF-8 are
/// replaced (U+FFFD), and a line's `\n` or `\r\n` is cut off.
pub struct Lines {
    rx: mpsc::Receiver<io::Result<String>>,
    /// Every line received so far, for failure messages.
    pub seen: Vec<String>,
}

impl Lines {
    pub fn new(stream: impl Read + Send + 'static) -> Lines {
        Lines::read(stream, None)
    }

    /// The same, and every line is also appended to `copy` (as read, end of
    /// line included) as soon as it arrives, whether or not it is waited for.
    pub fn with_copy(stream: impl Read + Send + 'static, copy: Arc<Mutex<String>>) -> Lines {
        Lines::read(stream, Some(copy))
    }

    fn read(stream: impl Read + Send + 'static, copy: Option<Arc<Mutex<String>>>) -> Lines {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stream);
            let mut raw = Vec::new();
            loop {
                raw.clear();
                let line = match reader.read_until(b'\n', &mut raw) {
                    Ok(0) => break,
                    Ok(_) => String::from_utf8_lossy(&raw).into_owned(),
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        break;
                    }
                };
                if let Some(copy) = &copy {
                    copy.lock().unwrap().push_str(&line);
                }
                let line = line.strip_suffix('\n').unwrap_or(&line);
                let line = line.strip_suffix('\r').unwrap_or(line).to_string();
                if tx.send(Ok(line)).is_err() && copy.is_none() {
                    break;
                }
            }
        });
        Lines {
            rx,
            seen: Vec::new(),
        }
    }

    /// The next line; fails at end of stream or after `timeout`.
    pub fn next(&mut self, timeout: Duration) -> io::Result<String> {
        match self.rx.recv_timeout(timeout) {
            Ok(Ok(line)) => {
                self.seen.push(line.clone());
                Ok(line)
            }
            Ok(Err(e)) => Err(e),
            Err(mpsc::RecvTimeoutError::Timeout) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no line within {timeout:?} (so far: {:?})", self.seen),
            )),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the stream ended (lines: {:?})", self.seen),
            )),
        }
    }

    /// Reads lines until one contains `needle`, and returns it.
    pub fn until(&mut self, needle: &str, timeout: Duration) -> io::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.next(left).map_err(|e| {
                io::Error::new(e.kind(), format!("waiting for a line with {needle:?}: {e}"))
            })?;
            if line.contains(needle) {
                return Ok(line);
            }
        }
    }

    /// Reads the remaining lines (into [`Lines::seen`]) until the stream
    /// ends; fails if it is still open after `timeout`.
    pub fn wait_end(&mut self, timeout: Duration) -> io::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    /// [`Lines::next`], panicking: for tests.
    pub fn expect_next(&mut self, timeout: Duration) -> String {
        self.next(timeout).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Lines::until`], panicking: for tests.
    pub fn expect_line(&mut self, needle: &str, timeout: Duration) -> String {
        self.until(needle, timeout)
            .unwrap_or_else(|e| panic!("{e}"))
    }
}
