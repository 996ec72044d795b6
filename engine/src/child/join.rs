//! The child of `engine exec`: join a running container's namespaces, then exec.

use super::{become_root, exec, report_and_exit, Context, Never, Step};
use std::os::fd::RawFd;
use std::path::Path;

/// What `engine exec` needs to join a running container.
pub struct JoinSetup<'a> {
    /// Open /proc/PID/ns/* files of the container's PID 1, in the order to
    /// join them (the user namespace last: joining it first would drop the
    /// host capabilities the others need).
    pub namespaces: Vec<(RawFd, nix::sched::CloneFlags)>,
    /// Whether a user namespace is among them (then become its root).
    pub userns: bool,
    pub error_fd: RawFd,
    pub pty_slave: Option<RawFd>,
    pub hostname: &'a str,
    pub env: &'a [(String, String)],
    pub workdir: &'a Path,
    pub command: &'a [String],
}

/// The child of `engine exec`: already in the container's pid namespace and
/// cgroup (by clone3); joins the other namespaces, then execs.
pub fn join(setup: &JoinSetup) -> ! {
    let failure = match join_and_exec(setup) {
        Ok(never) => match never {},
        Err(f) => f,
    };
    report_and_exit(setup.error_fd, failure)
}

fn join_and_exec(setup: &JoinSetup) -> Step<Never> {
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
    for (fd, kind) in &setup.namespaces {
        // SAFETY: the fd is an open namespace file that outlives this call.
        let ns = unsafe { std::os::fd::BorrowedFd::borrow_raw(*fd) };
        nix::sched::setns(ns, *kind)
            .ctx(|| format!("join the container's {kind:?} namespace (has it exited?)"))?;
    }
    if setup.userns {
        become_root()?;
    }
    let env = exec::environment(setup.hostname, setup.pty_slave.is_some(), setup.env);
    exec::finish_and_exec(setup.pty_slave, setup.workdir, setup.command, &env)
}
