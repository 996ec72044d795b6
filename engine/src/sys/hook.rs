//! Runs one OCI hook: the state JSON on its stdin, its own argv and
//! environment, killed when its timeout passes. Used by the host side
//! (prestart, createRuntime, poststart, poststop) and by the container's
//! init (createContainer, startContainer), which is single-threaded.

use crate::model::oci::Hook;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Why a hook failed, naming it.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("cannot run hook {path}: {err}")]
    Spawn { path: String, err: std::io::Error },
    #[error("hook {path} failed: {status}")]
    Failed {
        path: String,
        status: std::process::ExitStatus,
    },
    #[error("hook {path} timed out after {secs}s and was killed")]
    TimedOut { path: String, secs: u64 },
}

/// Runs `hook` to its end with `state` on its stdin. Its stdout is
/// discarded, its stderr is ours; no fd of ours but 0, 1, 2 reaches it.
pub fn run(hook: &Hook, state: &str) -> Result<(), HookError> {
    let path = hook.path.display().to_string();
    let mut cmd = Command::new(&hook.path);
    if let Some((first, rest)) = hook.args.split_first() {
        cmd.arg0(first).args(rest);
    }
    cmd.env_clear();
    for e in &hook.env {
        if let Some((k, v)) = e.split_once('=') {
            cmd.env(k, v);
        }
    }
    // SAFETY: runs in the forked child before exec; close_range is a
    // plain syscall, and with an empty keep list nothing is allocated.
    unsafe {
        cmd.pre_exec(|| crate::sys::openat::cloexec_fds_except(&[]));
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|err| HookError::Spawn {
            path: path.clone(),
            err,
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its state closes the pipe: not an error.
        let _ = stdin.write_all(state.as_bytes());
    }
    let timeout = hook.timeout.filter(|t| *t > 0);
    let deadline = timeout.map(|t| Instant::now() + Duration::from_secs(t));
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(HookError::Failed { path, status }),
            Ok(None) => {}
            Err(err) => return Err(HookError::Spawn { path, err }),
        }
        if deadline.is_some_and(|d| Instant::now() > d) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(HookError::TimedOut {
                path,
                secs: timeout.unwrap_or(0),
            });
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}
