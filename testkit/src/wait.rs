//! Waiting without sleeping blindly: poll a condition until a deadline, wait
//! for a child with a timeout, for a file, or for a line of output.

use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, ExitStatus};
use std::sync::mpsc;
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
/// has a deadline even when the writer hangs.
pub struct Lines {
    rx: mpsc::Receiver<io::Result<String>>,
    /// Every line received so far, for failure messages.
    pub seen: Vec<String>,
}

impl Lines {
    pub fn new(stream: impl Read + Send + 'static) -> Lines {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                if tx.send(line).is_err() {
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
