//! The common end of a new container and an exec: session, tty, working
//! directory, environment, default signals, and the PATH search of exec.

use super::mounts::mkdir_p;
use super::{fail, Context, Failure, Never, Step};
use crate::exit;
use crate::model::env::{command_candidates, search_path};
use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow, Signal};
use nix::unistd::chdir;
use std::ffi::CString;
use std::os::fd::{BorrowedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The common end of a new container and an exec: own session, the tty,
/// working directory, default signal dispositions, exec.
pub(super) fn finish_and_exec(
    pty_slave: Option<RawFd>,
    workdir: &Path,
    command: &[String],
    env: &[CString],
) -> Step<Never> {
    // A session of our own: the engine's terminal signals reach us only
    // through the engine (or through our own pty).
    nix::unistd::setsid().ctx(|| "setsid".into())?;
    if let Some(slave) = pty_slave {
        // SAFETY: the parent keeps the pty slave open until we exec.
        let slave_fd = unsafe { BorrowedFd::borrow_raw(slave) };
        rustix::process::ioctl_tiocsctty(slave_fd)
            .map_err(|e| fail(format!("cannot make the pty the controlling terminal: {e}")))?;
        for fd in 0..3 {
            let _ = nix::unistd::dup2(slave, fd);
        }
        if slave > 2 {
            let _ = nix::unistd::close(slave);
        }
    }
    enter_workdir(workdir)?;
    reset_signals();
    exec(command, env)
}

pub(super) fn environment(
    hostname: &str,
    tty: bool,
    user_env: &[(String, String)],
) -> Vec<CString> {
    let mut vars: Vec<(String, String)> = vec![
        ("PATH".into(), crate::model::env::DEFAULT_PATH.into()),
        ("HOSTNAME".into(), hostname.to_string()),
        ("HOME".into(), "/root".into()),
    ];
    if tty {
        let term = std::env::var("TERM").unwrap_or_else(|_| "xterm".into());
        vars.push(("TERM".into(), term));
    }
    for (k, v) in user_env {
        vars.retain(|(existing, _)| existing != k);
        vars.push((k.clone(), v.clone()));
    }
    vars.into_iter()
        .filter_map(|(k, v)| CString::new(format!("{k}={v}")).ok())
        .collect()
}

fn enter_workdir(dir: &Path) -> Step {
    if !dir.exists() {
        // As docker does: a missing working directory is created.
        mkdir_p(dir)?;
    }
    chdir(dir).ctx(|| format!("working directory {}", dir.display()))
}

/// The parent blocked the signals it forwards, and Rust ignores SIGPIPE;
/// both would be inherited across exec.
fn reset_signals() {
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    for sig in Signal::iterator() {
        if sig != Signal::SIGKILL && sig != Signal::SIGSTOP {
            // SAFETY: restoring the default disposition is always sound.
            unsafe {
                let _ = nix::sys::signal::signal(sig, nix::sys::signal::SigHandler::SigDfl);
            }
        }
    }
}

/// execve, searching the container's PATH for a bare name. 127 when nothing
/// is found, 126 when something is found but cannot be run.
fn exec(command: &[String], env: &[CString]) -> Step<Never> {
    let args: Vec<CString> = command
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<_, _>>()
        .map_err(|_| fail("the command holds a NUL byte"))?;
    let name = &command[0];
    let path = search_path(env.iter().filter_map(|e| e.to_str().ok()?.split_once('=')));
    let candidates = command_candidates(name, path);
    let mut denied = None;
    for candidate in &candidates {
        let Ok(c_path) = CString::new(candidate.as_os_str().as_bytes()) else {
            continue;
        };
        let err = nix::unistd::execve(&c_path, &args, env).unwrap_err();
        match err {
            nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTDIR => continue,
            other => {
                denied.get_or_insert((candidate.clone(), other));
            }
        }
    }
    Err(match denied {
        Some((path, errno)) => Failure {
            code: exit::NOT_EXECUTABLE,
            msg: format!("cannot execute {}: {}", path.display(), errno.desc()),
        },
        None => Failure {
            code: exit::NOT_FOUND,
            msg: format!("command not found in the container: {name}"),
        },
    })
}
