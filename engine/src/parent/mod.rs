//! Host side: run (orchestration and undo), clone (clone3, id maps),
//! supervise (signals, wait), tty, detach (run -d), exec into a running
//! container (both front ends), create (an OCI container up to its gate), recovery of what a dead engine left, lifecycle verbs, host setup.

pub mod clone;
pub mod create;
pub mod detach;
pub mod exec;
pub mod host;
mod hosts;
pub mod lifecycle;
pub mod log;
pub mod monitor;
pub mod nat;
pub mod record;
pub mod recovery;
pub mod run;
pub mod supervise;
pub mod tty;
mod volume_ids;

use crate::model::exit;
use anyhow::{Context, Result};
use std::fs::File;
use std::io::Read;
use std::os::fd::OwnedFd;

/// The host side's error: the variants a caller matches on, the typed
/// errors of the facilities it passes on, and (where a step only added
/// context to a sentence) that sentence.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The child (or a detached supervisor) failed and reported the exit
    /// code the engine should end with: 126 (not executable), 127 (not
    /// found), or 125.
    #[error("{message}")]
    Child { code: i32, message: String },
    /// No running container has the name asked for.
    #[error("{0}")]
    NoSuchContainer(String),
    #[error(transparent)]
    State(#[from] crate::sys::state::Error),
    #[error(transparent)]
    Lock(#[from] crate::sys::lock::Error),
    #[error(transparent)]
    Cgroup(#[from] crate::sys::cgroup::Error),
    #[error(transparent)]
    Net(#[from] crate::sys::net::Error),
    #[error(transparent)]
    Nat(#[from] crate::sys::net::nat::Error),
    #[error(transparent)]
    IdLease(#[from] crate::sys::idlease::Error),
    /// The engine's subnet (ENGINE_BRIDGE, ENGINE_SUBNET) is refused.
    #[error(transparent)]
    Subnet(#[from] crate::model::subnet::Error),
    /// A host step that failed, as its sentence: the context one function
    /// added (anyhow inside that function), flattened to one line.
    #[error("{0}")]
    Failed(String),
}

/// A failure injected at a failpoint (`failpoints` feature).
#[cfg(feature = "failpoints")]
impl From<crate::sys::failpoint::Injected> for Error {
    fn from(injected: crate::sys::failpoint::Injected) -> Error {
        Error::Failed(injected.to_string())
    }
}

/// A step that kept anyhow for its context: its whole chain, as one line.
impl From<anyhow::Error> for Error {
    fn from(err: anyhow::Error) -> Error {
        Error::Failed(format!("{err:#}"))
    }
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
fn child_failure(error_read: OwnedFd) -> Option<Error> {
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
    Some(Error::Child {
        code: code.parse().unwrap_or(exit::ENGINE_ERROR),
        message: msg.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn report(text: &str) -> Option<Error> {
        let (read, write) = pipe().unwrap();
        File::from(write).write_all(text.as_bytes()).unwrap();
        child_failure(read)
    }

    /// The child's "CODE message" becomes `Error::Child` with that code;
    /// EOF alone is no failure; a report without a code is the engine's.
    #[test]
    fn child_report_is_a_child_variant() {
        assert!(report("").is_none());
        let Some(Error::Child { code, message }) = report("127 cannot find x in PATH") else {
            panic!("not a Child error");
        };
        assert_eq!((code, message.as_str()), (127, "cannot find x in PATH"));
        assert!(matches!(
            report("126 x is a directory"),
            Some(Error::Child { code: 126, .. })
        ));
        assert!(matches!(
            report("garbled"),
            Some(Error::Child { code: 125, .. })
        ));
    }
}
