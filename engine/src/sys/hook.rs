//! Runs one OCI hook: the state JSON on its stdin, its own argv and
//! environment, killed when its timeout passes. Used by the host side
//! (prestart, createRuntime, poststart, poststop) and by the container's
//! init (createContainer, startContainer), which is single-threaded.

use std::ffi::CString;
use std::io::Write;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One hook to run, as config.json gives it (the caller's description
/// lent field by field).
#[derive(Debug, Clone, Copy)]
pub struct Program<'a> {
    /// Absolute.
    pub path: &'a Path,
    /// argv, argv[0] included (may be empty: then argv[0] is the path).
    pub args: &'a [String],
    /// KEY=VALUE, the hook's whole environment.
    pub env: &'a [String],
    /// Seconds; None or 0: no limit.
    pub timeout: Option<u64>,
}

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
pub fn run(hook: Program, state: &str) -> Result<(), HookError> {
    run_from(hook, None, state)
}

/// `run`, executing `exe` (an fd of the hook's file, O_PATH will do) with
/// execveat instead of looking its path up here (no /proc needed). The fd
/// stays open across exec, so that a script's interpreter can open it
/// (/dev/fd/N).
pub fn run_from(hook: Program, exe: Option<BorrowedFd>, state: &str) -> Result<(), HookError> {
    let path = hook.path.display().to_string();
    let mut child = command(&hook, exe.map(|fd| fd.as_raw_fd()))
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
    wait(child, path, hook.timeout)
}

/// The hook's command: its argv and nothing but its environment; in the
/// child before exec, every fd of ours but 0, 1, 2 closed on exec, and
/// with `exe_fd`, execveat of that fd (kept open) instead of the path.
fn command(hook: &Program, exe_fd: Option<RawFd>) -> Command {
    let path = hook.path.display().to_string();
    let mut cmd = Command::new(hook.path);
    if let Some((first, rest)) = hook.args.split_first() {
        cmd.arg0(first).args(rest);
    }
    cmd.env_clear();
    for e in hook.env {
        if let Some((k, v)) = e.split_once('=') {
            cmd.env(k, v);
        }
    }
    // What execveat takes, made before the fork.
    let cstr = |s: &str| CString::new(s).ok();
    let argv: Vec<CString> = match hook.args.is_empty() {
        true => cstr(&path).into_iter().collect(),
        false => hook.args.iter().filter_map(|a| cstr(a)).collect(),
    };
    let envp: Vec<CString> = hook
        .env
        .iter()
        .filter(|e| e.contains('='))
        .filter_map(|e| cstr(e))
        .collect();
    // Null-terminated pointer arrays over argv and envp, which outlive them.
    let ptrs = super::c_pointers;
    // SAFETY: runs in the forked child before exec: close_range, fcntl and
    // execveat are plain syscalls; the keep list and execveat's pointer
    // arrays allocate, which is sound here since every caller is
    // single-threaded (the engine, its init).
    unsafe {
        cmd.pre_exec(move || {
            let keep: Vec<RawFd> = exe_fd.into_iter().collect();
            crate::sys::openat::cloexec_fds_except(&keep)?;
            if let Some(fd) = exe_fd {
                rustix::io::fcntl_setfd(BorrowedFd::borrow_raw(fd), rustix::io::FdFlags::empty())?;
                // The raw syscall: rustix's execveat is in its unstable
                // `runtime` module, and the libc crate has no execveat
                // wrapper for musl (the static build would not compile).
                let (argv_ptrs, envp_ptrs) = (ptrs(&argv), ptrs(&envp));
                libc::syscall(
                    libc::SYS_execveat,
                    fd,
                    c"".as_ptr(),
                    argv_ptrs.as_ptr(),
                    envp_ptrs.as_ptr(),
                    libc::AT_EMPTY_PATH,
                );
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

/// Waits for the hook to end, killing it once `timeout` seconds (None or
/// 0: no limit) have passed.
fn wait(
    mut child: std::process::Child,
    path: String,
    timeout: Option<u64>,
) -> Result<(), HookError> {
    let timeout = timeout.filter(|t| *t > 0);
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
