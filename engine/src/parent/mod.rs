//! Host side: run (orchestration and undo), clone (clone3, id maps),
//! supervise (signals, wait), tty, detach (run -d), exec into a running
//! container (both front ends), create (an OCI container up to its gate), recovery of what a dead engine left, lifecycle verbs, host setup.

pub mod clone;
pub mod create;
pub mod detach;
pub mod exec;
pub mod host;
pub mod lifecycle;
pub mod log;
pub mod nat;
pub mod record;
pub mod recovery;
pub mod run;
pub mod supervise;
pub mod tty;

use crate::model::exit;
use anyhow::{Context, Result};
use std::fs::File;
use std::io::Read;
use std::os::fd::OwnedFd;

/// A failure the child (or a detached supervisor) reported with the exit
/// code the engine should end with.
#[derive(Debug, thiserror::Error)]
#[error("{msg}")]
pub struct ExitError {
    pub code: i32,
    pub msg: String,
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(std::io::Error::from)
        .context("cannot create a pipe")
}

/// Waits for child `pid` to end (through EINTR): its exit code, or 128+N
/// when signal N killed it.
pub(crate) fn wait_exit_code(pid: rustix::process::Pid) -> rustix::io::Result<i32> {
    loop {
        match rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty()) {
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e),
            Ok(Some((_, status))) => {
                if let Some(code) = status.exit_status() {
                    return Ok(code);
                }
                if let Some(sig) = status.terminating_signal() {
                    return Ok(128 + sig);
                }
                // Stopped or continued: only reported with WUNTRACED/WCONTINUED.
            }
            // Only with WNOHANG.
            Ok(None) => {}
        }
    }
}

/// Reaps child `pid` (once: an EINTR leaves it unreaped, as before).
fn reap(pid: rustix::process::Pid) {
    let _ = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty());
}

/// fork(2), which rustix has no safe call for: `Some(pid)` of the child in
/// the parent, `None` in the child.
///
/// # Safety
///
/// The caller is single-threaded, or the child calls only
/// async-signal-safe functions before it execs or exits.
unsafe fn fork() -> std::io::Result<Option<libc::pid_t>> {
    // SAFETY: the caller upholds the contract above.
    match unsafe { libc::fork() } {
        -1 => Err(std::io::Error::last_os_error()),
        0 => Ok(None),
        child => Ok(Some(child)),
    }
}

/// Reads the child's error pipe to its end: EOF alone means exec succeeded;
/// otherwise "CODE message" from the child.
fn child_failure(error_read: OwnedFd) -> Option<ExitError> {
    let mut pipe = File::from(error_read);
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match pipe.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
        // A child at a `return(kill)` failpoint: we die here, as a
        // SIGKILLed engine would while its child runs that step.
        #[cfg(feature = "failpoints")]
        crate::sys::failpoint::on_child_report(&String::from_utf8_lossy(&bytes));
    }
    let report = String::from_utf8_lossy(&bytes).into_owned();
    if report.is_empty() {
        return None;
    }
    let (code, msg) = report.split_once(' ').unwrap_or(("125", &report));
    Some(ExitError {
        code: code.parse().unwrap_or(exit::ENGINE_ERROR),
        msg: msg.to_string(),
    })
}
