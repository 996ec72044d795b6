//! `--init`: PID 1 of the container stays the engine's own code, a small
//! reaper in tini's manner, and the command runs as its child. PID 1 of a
//! pid namespace gets no signal it has no handler for, so `sleep` as PID 1
//! ignores `engine stop`'s SIGTERM and Ctrl-C; the reaper forwards every
//! signal it gets to the command, reaps the orphans the namespace hands it,
//! and exits with the command's status (128+N when signal N ended it).
//!
//! Why no exec of an init binary: the engine binary is dynamically linked
//! unless built for musl, so it cannot run inside an arbitrary rootfs, and
//! catatonit/tini would be a dependency to find and trust. A process that
//! never execs keeps the host's engine as /proc/1/exe; it is made
//! non-dumpable first, and its memory belongs to the host's user
//! namespace (it was never exec'd in the container's), so container root
//! can neither ptrace it nor open /proc/1/exe (CVE-2019-5736's way in).

use super::{fail, Never, Step};
use std::os::fd::{AsRawFd, BorrowedFd};

/// What PID 1 calls itself (`ps` inside the container).
const NAME: &std::ffi::CStr = c"engine-init";

/// The signals the reaper takes and forwards: every standard one but
/// SIGKILL and SIGSTOP (which cannot be caught) and the ones the kernel
/// sends a process for its own fault (tini's list), plus SIGCHLD.
fn forwarded() -> libc::sigset_t {
    // SAFETY: sigemptyset and sigaddset fill the set they are given.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in 1..=libc::SIGSYS {
            let own_fault = [
                libc::SIGKILL,
                libc::SIGSTOP,
                libc::SIGFPE,
                libc::SIGILL,
                libc::SIGSEGV,
                libc::SIGBUS,
                libc::SIGABRT,
                libc::SIGTRAP,
                libc::SIGSYS,
                libc::SIGTTIN,
                libc::SIGTTOU,
            ];
            if !own_fault.contains(&sig) {
                libc::sigaddset(&mut set, sig);
            }
        }
        set
    }
}

fn set_mask(how: libc::c_int, set: &libc::sigset_t) {
    // SAFETY: a valid set; the old mask is not asked for.
    unsafe {
        libc::sigprocmask(how, set, std::ptr::null_mut());
    }
}

/// Forks the command (which `exec` runs in the child) and becomes its
/// reaper. Returns only in the child, with `exec`'s failure.
pub(super) fn fork_and_reap(
    error_fd: BorrowedFd<'_>,
    tty: bool,
    exec: impl FnOnce() -> Step<Never>,
) -> Step<Never> {
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        .map_err(|e| fail(format!("prctl(PR_SET_DUMPABLE, 0) for --init: {e}")))?;
    let set = forwarded();
    // Blocked before the fork: a signal sent while the child starts waits
    // for the reaper's sigwaitinfo.
    set_mask(libc::SIG_BLOCK, &set);
    // SAFETY: this process is single-threaded (the child of a clone); the
    // child execs or _exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(fail(format!(
            "cannot fork the command under --init: {}",
            std::io::Error::last_os_error()
        )));
    }
    if pid == 0 {
        // Its own process group, the terminal's foreground one: Ctrl-C
        // goes to the command, not to the reaper as well (then twice).
        // SAFETY: setpgid, signal and tcsetpgrp on our own process and
        // terminal; the old SIGTTOU disposition is put back.
        unsafe {
            libc::setpgid(0, 0);
            if tty {
                let old = libc::signal(libc::SIGTTOU, libc::SIG_IGN);
                libc::tcsetpgrp(0, libc::getpgrp());
                libc::signal(libc::SIGTTOU, old);
            }
        }
        set_mask(libc::SIG_UNBLOCK, &set);
        return exec();
    }
    // The command's copy reports its exec (or its failure) to the engine.
    // SAFETY: our copy of the error pipe, not used by this process again.
    unsafe { libc::close(error_fd.as_raw_fd()) };
    // SAFETY: PR_SET_NAME with a NUL-terminated name of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, NAME.as_ptr()) };
    reap(pid, &set)
}

/// Waits for signals: SIGCHLD reaps every child that ended (ours or an
/// orphan's), anything else goes to the command. Exits with the command's
/// status once it has ended.
fn reap(command: libc::pid_t, set: &libc::sigset_t) -> ! {
    loop {
        // SAFETY: a valid set; no siginfo asked for.
        let sig = unsafe { libc::sigwaitinfo(set, std::ptr::null_mut()) };
        if sig < 0 {
            continue;
        }
        if sig != libc::SIGCHLD {
            // SAFETY: kill takes two integers.
            unsafe { libc::kill(command, sig) };
            continue;
        }
        loop {
            let mut status = 0;
            // SAFETY: waitpid writes the status it is given room for.
            let ended = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if ended <= 0 {
                break;
            }
            if ended == command {
                let code = if libc::WIFSIGNALED(status) {
                    128 + libc::WTERMSIG(status)
                } else {
                    libc::WEXITSTATUS(status)
                };
                super::exit_now(code);
            }
        }
    }
}
