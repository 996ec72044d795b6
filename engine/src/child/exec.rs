//! The common end of a new container and an exec: session, tty, working
//! directory, environment, default signals, and the PATH search of exec.

use super::{fail, Context, Failure, Never, Step};
use crate::model::env::{command_candidates, search_path};
use crate::model::exit;
use crate::model::security::Confinement;
use crate::sys::failpoint::child_step;
use crate::sys::openat;
use rustix::io::Errno;
use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// What an OCI process asks beyond the engine's own: its user, rlimits, and
/// for a container's init the gate `start` opens (ready pipe, exec.fifo).
#[derive(Clone)]
pub struct OciProcess<'a> {
    pub user: &'a crate::model::bundle::User,
    pub rlimits: &'a [crate::model::bundle::Rlimit],
    /// The ready pipe's write end and the exec.fifo's O_PATH fd.
    pub gate: Option<(BorrowedFd<'a>, BorrowedFd<'a>)>,
    /// The caller's /proc, for an init without a mount namespace, whose
    /// root has no proc of the engine's: the gate reopens the exec fifo
    /// through it, then closes it (an fd of a directory outside the root
    /// must not reach the process).
    pub caller_proc: Option<BorrowedFd<'a>>,
    /// Inherited fds 3..3+N the process keeps (`--preserve-fds N`).
    pub preserve_fds: u32,
    /// A container's init: hooks.startContainer and the state they read.
    pub start_hooks: Option<(&'a [crate::model::bundle::Hook], String)>,
}

/// The common end of a new container and an exec: own session, the tty,
/// every other fd closed, working directory, default signal dispositions,
/// confinement (seccomp, capabilities, no_new_privs), exec. `error_fd`
/// (close-on-exec) is the only fd above 2 left open. With `init`
/// (`--init`), the command is forked and this process stays as its
/// reaper (`init`), confined as the command is.
#[allow(clippy::too_many_arguments)]
pub(super) fn finish_and_exec(
    pty_slave: Option<BorrowedFd<'_>>,
    workdir: &Path,
    command: &[String],
    env: &[CString],
    confinement: &Confinement,
    error_fd: BorrowedFd<'_>,
    oci: Option<&OciProcess>,
    init: bool,
) -> Step<Never> {
    // A session of our own: the engine's terminal signals reach us only
    // through the engine (or through our own pty). A joining process made
    // its session before it joined.
    child_step!(error_fd, "finish.session");
    // libc: getsid is 0 when our session's leader is outside our pid
    // namespace, which rustix's Pid cannot hold (it panics).
    // SAFETY: getsid(0) only reads our own session id.
    let sid = unsafe { libc::getsid(0) };
    if sid != rustix::process::getpid().as_raw_nonzero().get() {
        rustix::process::setsid().ctx(|| "setsid".into())?;
    }
    if let Some(slave) = pty_slave {
        child_step!(error_fd, "finish.tty");
        rustix::process::ioctl_tiocsctty(slave)
            .map_err(|e| fail(format!("cannot make the pty the controlling terminal: {e}")))?;
        let _ = rustix::stdio::dup2_stdin(slave);
        let _ = rustix::stdio::dup2_stdout(slave);
        let _ = rustix::stdio::dup2_stderr(slave);
        // The slave itself (above 2) goes with the other fds, just below.
    }
    close_inherited_fds(error_fd, oci)?;
    child_step!(error_fd, "finish.workdir");
    enter_workdir(workdir)?;
    reset_signals();
    // `start`'s end of the exec.fifo, kept open (close-on-exec) until the
    // exec: `start` returns when it closes, once the program runs.
    let mut started_until_exec = None;
    child_step!(error_fd, "finish.confine");
    match oci {
        None => super::confine::apply(confinement)?,
        Some(oci) => {
            set_rlimits(oci.rlimits)?;
            if let Some(mask) = oci.user.umask {
                rustix::process::umask(rustix::fs::Mode::from_raw_mode(mask));
            }
            child_step!(error_fd, "finish.confine_as");
            super::confine::apply_as(confinement, oci.user)?;
            if let Some((ready, fifo)) = oci.gate {
                started_until_exec = Some(gate_and_start_hooks(
                    oci,
                    (ready, fifo),
                    command,
                    env,
                    error_fd,
                )?);
            }
        }
    }
    if init {
        return super::init::fork_and_reap(error_fd, pty_slave.is_some(), || exec(command, env));
    }
    child_step!(error_fd, "finish.exec");
    let failed = exec(command, env);
    drop(started_until_exec);
    failed
}

/// Nothing of the engine's (or of whoever started it) reaches the
/// container: every fd is closed but the error pipe, an OCI init's gate
/// and the caller's /proc it lends the gate, and `--preserve-fds`.
fn close_inherited_fds(error_fd: BorrowedFd<'_>, oci: Option<&OciProcess>) -> Step {
    child_step!(error_fd, "finish.close_fds");
    let mut keep = vec![error_fd.as_raw_fd()];
    if let Some((ready, fifo)) = oci.and_then(|o| o.gate) {
        keep.extend([ready.as_raw_fd(), fifo.as_raw_fd()]);
    }
    keep.extend(oci.and_then(|o| o.caller_proc).map(|fd| fd.as_raw_fd()));
    if let Some(o) = oci {
        keep.extend((0..o.preserve_fds as RawFd).map(|i| 3 + i));
    }
    // The failpoint trace (close-on-exec like the error pipe).
    #[cfg(feature = "failpoints")]
    keep.extend(crate::sys::failpoint::trace_fd());
    openat::close_fds_except(&keep)
        .map_err(|e| fail(format!("cannot close the engine's file descriptors: {e}")))?;
    Ok(())
}

/// An OCI init's gate: the command resolved (a missing one fails
/// `create`), ready told, `start` awaited on the exec.fifo, then the
/// startContainer hooks, whose outcome `start` reads on the fifo. Returns
/// our end of the fifo, kept open until the exec (close-on-exec): `start`
/// returns once it closes, when the program has started.
fn gate_and_start_hooks(
    oci: &OciProcess,
    (ready, fifo): (BorrowedFd<'_>, BorrowedFd<'_>),
    command: &[String],
    env: &[CString],
    error_fd: BorrowedFd<'_>,
) -> Step<std::os::fd::OwnedFd> {
    // A missing command fails `create` (podman maps the words to
    // 127), not a `start` that nobody watches.
    child_step!(error_fd, "finish.gate");
    resolve_command(command, env)?;
    child_step!(error_fd, "finish.ready");
    let started = wait_for_start(ready, fifo, oci.caller_proc, error_fd)?;
    // hooks.startContainer run here, as runc runs them: in the
    // init, after `start`, right before the exec. A hook's path
    // is resolved in the container's root, which the container
    // controls, so it runs as the process would: its user,
    // rlimits, capabilities cut, no_new_privs and seccomp
    // already applied (runc, too, runs them after all of that).
    // It gains nothing the process would not have, and the
    // engine's fds are gone (closed above). `start` learns the
    // outcome on the fifo: "0" to go on, else why not.
    let (hooks, state) = oci
        .start_hooks
        .as_ref()
        .map_or((&[][..], ""), |(h, s)| (*h, s.as_str()));
    for hook in hooks {
        if let Err(e) = crate::sys::hook::run(hook.into(), state) {
            let msg = format!("hooks.startContainer: {e}");
            let mut report = format!("1{msg}").into_bytes();
            report.truncate(4000); // one atomic pipe write
            let _ = rustix::io::write(&started, &report);
            return Err(fail(msg));
        }
    }
    let _ = rustix::io::write(&started, b"0");
    Ok(started)
}

/// process.rlimits, before the capabilities are cut (raising a hard limit
/// needs CAP_SYS_RESOURCE).
fn set_rlimits(rlimits: &[crate::model::bundle::Rlimit]) -> Step {
    for r in rlimits {
        let lim = libc::rlimit {
            rlim_cur: r.soft,
            rlim_max: r.hard,
        };
        // SAFETY: setrlimit reads the struct we pass; the resource number
        // was checked by the front end (rustix's Resource enum cannot hold a raw
        // one, hence libc).
        let ret = unsafe { libc::setrlimit(r.resource as _, &lim) };
        if ret != 0 {
            return Err(fail(format!(
                "cannot set rlimit {} to {}:{}: {}",
                r.resource,
                r.soft,
                r.hard,
                std::io::Error::last_os_error()
            )));
        }
    }
    Ok(())
}

/// Says "ready" on the pipe `create` waits on, then blocks opening the
/// exec.fifo for writing until `start` opens it for reading; returns it
/// opened (the caller writes `start`'s answer). From then on nobody reads
/// the error pipe: a later failure goes to our stderr.
fn wait_for_start(
    ready: BorrowedFd<'_>,
    fifo: BorrowedFd<'_>,
    caller_proc: Option<BorrowedFd<'_>>,
    error_fd: BorrowedFd<'_>,
) -> Step<std::os::fd::OwnedFd> {
    // The fifo is reopened through the container's /proc (or the caller's,
    // `OciProcess::caller_proc`). Checked before "ready", while a failure
    // still fails `create` with our sentence: past it the init would die
    // unseen between create and start.
    let base = caller_proc.unwrap_or(rustix::fs::CWD);
    let path = match caller_proc {
        Some(_) => format!("self/fd/{}", fifo.as_raw_fd()),
        None => format!("/proc/self/fd/{}", fifo.as_raw_fd()),
    };
    let at = rustix::fs::statat(base, path.as_str(), rustix::fs::AtFlags::empty());
    let same = match (at, rustix::fs::fstat(fifo)) {
        (Ok(a), Ok(b)) => (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino),
        _ => false,
    };
    if !same {
        return Err(fail(
            "the container's /proc is not the proc file system the engine mounted (the exec fifo cannot be reached through /proc/self/fd): check the bundle's mounts and hooks over /proc",
        ));
    }
    rustix::io::write(ready, b"R").ctx(|| "tell the engine the container is ready".into())?;
    close_lent(ready);
    let opened = loop {
        match rustix::fs::openat(
            base,
            path.as_str(),
            rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        ) {
            Err(rustix::io::Errno::INTR) => continue,
            other => break other,
        }
    };
    let opened = opened
        .map_err(std::io::Error::from)
        .ctx(|| "open the exec fifo".into())?;
    close_lent(fifo);
    if let Some(proc_dir) = caller_proc {
        close_lent(proc_dir);
    }
    // Our stderr takes the error pipe's place (still close-on-exec).
    // SAFETY: error_fd stays open (ManuallyDrop: dup3 replaces it, nothing closes it).
    let mut error_pipe =
        std::mem::ManuallyDrop::new(unsafe { OwnedFd::from_raw_fd(error_fd.as_raw_fd()) });
    let _ = rustix::io::dup3(
        std::io::stderr().as_fd(),
        &mut error_pipe,
        rustix::io::DupFlags::CLOEXEC,
    );
    Ok(opened)
}

/// Closes an fd of the setup the parent lent us, not used after this (the
/// hooks that run before the exec must not inherit it).
fn close_lent(fd: BorrowedFd<'_>) {
    // SAFETY: its owner is an OwnedFd in the parent's frames, copied by the
    // clone and never dropped in this process (it execs or _exits), so the
    // fd is closed once, here.
    drop(unsafe { OwnedFd::from_raw_fd(fd.as_raw_fd()) });
}

/// The first candidate of the PATH search that exists, or runc's words
/// for none (podman makes them exit code 127).
fn resolve_command(command: &[String], env: &[CString]) -> Step {
    let name = &command[0];
    let path = search_path(env.iter().filter_map(|e| e.to_str().ok()?.split_once('=')));
    if command_candidates(name, path)
        .iter()
        .any(|c| std::fs::metadata(c).is_ok_and(|m| m.is_file()))
    {
        return Ok(());
    }
    Err(Failure {
        code: exit::NOT_FOUND,
        msg: format!("exec: {name:?}: executable file not found in $PATH (no such file or directory in the container)"),
    })
}

/// The environment exactly as an OCI process lists it.
pub(super) fn exact_environment(env: &[(String, String)]) -> Vec<CString> {
    env.iter()
        .filter_map(|(k, v)| CString::new(format!("{k}={v}")).ok())
        .collect()
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
    vars.extend(user_env.iter().cloned());
    // The last value of a name wins, in the place of that last one: one
    // pass from the end (linear: a `retain` per variable took seconds for
    // 10 000 of them).
    let mut seen = std::collections::HashSet::new();
    let mut env: Vec<CString> = vars
        .iter()
        .rev()
        .filter(|(k, _)| seen.insert(k.as_str()))
        .filter_map(|(k, v)| CString::new(format!("{k}={v}")).ok())
        .collect();
    env.reverse();
    env
}

/// Enters `dir` resolved inside the root (no symlink or magic link leads
/// out), creating it if missing as docker does, then checks that the
/// working directory has a path from `/`.
fn enter_workdir(dir: &Path) -> Step {
    use rustix::fs::OFlags;
    let root = rustix::fs::open(
        "/",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| fail(format!("cannot open the container's root: {e}")))?;
    let flags = OFlags::PATH | OFlags::DIRECTORY;
    let fd = match openat::open_in_root(root.as_fd(), dir, flags) {
        Err(e) if e.errno == rustix::io::Errno::NOENT => {
            openat::mkdir_all_in_root(root.as_fd(), dir, 0o755)
        }
        other => other,
    }
    .map_err(|e| fail(format!("working directory: {e}")))?;
    rustix::process::fchdir(&fd).map_err(|e| {
        fail(format!(
            "cannot enter the working directory {}: {e}",
            dir.display()
        ))
    })?;
    openat::check_cwd_inside_root().map_err(|e| fail(e.to_string()))
}

/// The parent blocked the signals it forwards, and Rust ignores SIGPIPE;
/// both would be inherited across exec.
fn reset_signals() {
    // libc: rustix has no safe API for signal masks and dispositions.
    // SAFETY: an empty set, initialised by sigemptyset, set as the whole mask.
    unsafe {
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        let _ = libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
    }
    // The standard signals, 1 to SIGSYS (the real-time ones are not reset, as before).
    for sig in 1..=libc::SIGSYS {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            // SAFETY: restoring the default disposition is always sound.
            unsafe {
                let _ = libc::signal(sig, libc::SIG_DFL);
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
        let err = execve(&c_path, &args, env);
        match err {
            Errno::NOENT | Errno::NOTDIR => continue,
            other => {
                denied.get_or_insert((candidate.clone(), other));
            }
        }
    }
    Err(match denied {
        Some((path, errno)) => Failure {
            code: exit::NOT_EXECUTABLE,
            msg: format!(
                "cannot execute {}: {}",
                path.display(),
                crate::sys::errno_desc(errno)
            ),
        },
        None => Failure {
            code: exit::NOT_FOUND,
            msg: format!("command not found in the container: {name}"),
        },
    })
}

/// execve(2); returns only on failure, with its errno. libc: rustix's
/// execve is in its unstable `runtime` module.
fn execve(path: &CStr, args: &[CString], env: &[CString]) -> Errno {
    let ptrs = crate::sys::c_pointers;
    let (argv, envp) = (ptrs(args), ptrs(env));
    // SAFETY: path and every pointer are NUL-terminated strings alive for the
    // call; both arrays end with a null pointer.
    unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::INVAL)
}

/// A hook of the description, lent to `sys::hook` (which knows no model type).
impl<'a> From<&'a crate::model::bundle::Hook> for crate::sys::hook::Program<'a> {
    fn from(hook: &'a crate::model::bundle::Hook) -> Self {
        crate::sys::hook::Program {
            path: &hook.path,
            args: &hook.args,
            env: &hook.env,
            timeout: hook.timeout,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_value_of_a_name_wins_in_its_place() {
        let user = [("A", "1"), ("PATH", "/x"), ("B", "2"), ("A", "3")]
            .map(|(k, v)| (k.to_string(), v.to_string()));
        let env: Vec<String> = environment("h", false, &user)
            .into_iter()
            .map(|c| c.into_string().unwrap())
            .collect();
        assert_eq!(env, ["HOSTNAME=h", "HOME=/root", "PATH=/x", "B=2", "A=3"]);
    }
}
