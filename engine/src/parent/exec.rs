//! `engine exec`: a new process inside a running container (its namespaces,
//! cgroup, root and working directory), supervised like PID 1.

use super::clone::{clone3, Cloned};
use super::supervise::{block_forwarded, supervise};
use super::{child_failure, pipe};
use crate::child;
use crate::sys::state::Record;
use anyhow::{anyhow, Context, Result};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd};
use std::path::PathBuf;

/// What `engine exec` runs.
pub struct ExecRequest {
    pub command: Vec<String>,
    pub env: Vec<(String, String)>,
    pub workdir: Option<PathBuf>,
    pub tty: bool,
}

/// Runs a process inside a running container: its namespaces (setns), its
/// cgroup, its root and working directory. Returns docker's exit code.
pub fn exec_into(rec: &Record, req: &ExecRequest) -> Result<i32> {
    use nix::sched::CloneFlags;
    let gone = || anyhow!("container {} has exited", rec.name);
    let mut namespaces = Vec::new();
    let mut files = Vec::new();
    let mut userns = false;
    // The user namespace last: joining it first would drop the host
    // capabilities the others need.
    for (name, kind) in [
        ("ipc", CloneFlags::CLONE_NEWIPC),
        ("uts", CloneFlags::CLONE_NEWUTS),
        ("net", CloneFlags::CLONE_NEWNET),
        ("cgroup", CloneFlags::CLONE_NEWCGROUP),
        ("mnt", CloneFlags::CLONE_NEWNS),
        ("user", CloneFlags::CLONE_NEWUSER),
    ] {
        let theirs = format!("/proc/{}/ns/{name}", rec.pid);
        let target = std::fs::read_link(&theirs).map_err(|_| gone())?;
        if std::fs::read_link(format!("/proc/self/ns/{name}")).ok() == Some(target) {
            continue; // shared with the host (e.g. --userns host)
        }
        let file = File::open(&theirs).map_err(|_| gone())?;
        namespaces.push((file.as_raw_fd(), kind));
        files.push(file);
        userns |= name == "user";
    }
    // Our children, not we, are born in the container's pid namespace.
    let pid_ns = File::open(format!("/proc/{}/ns/pid", rec.pid)).map_err(|_| gone())?;
    nix::sched::setns(pid_ns.as_fd(), CloneFlags::CLONE_NEWPID)
        .with_context(|| format!("cannot join the pid namespace of {}", rec.name))?;

    let pty = if req.tty {
        Some(super::tty::open_pty()?)
    } else {
        None
    };
    let (error_read, error_write) = pipe()?;
    let mut env = rec.env.clone();
    env.extend(req.env.iter().cloned());
    let workdir = req.workdir.clone().unwrap_or_else(|| PathBuf::from("/"));
    let setup = child::join::JoinSetup {
        namespaces,
        userns,
        error_fd: error_write.as_raw_fd(),
        pty_slave: pty.as_ref().map(|p| p.slave.as_raw_fd()),
        hostname: &rec.hostname,
        env: &env,
        workdir: &workdir,
        command: &req.command,
    };
    let (forwarded, _restore_mask) = block_forwarded()?;
    let cgroup_dir = rec.cgroup.as_ref().and_then(|p| File::open(p).ok());
    let (pid, pidfd) = match clone3(0, cgroup_dir.as_ref().map(|f| f.as_raw_fd()))? {
        Cloned::Child => child::join::join(&setup),
        Cloned::Parent { pid, pidfd } => (pid, pidfd),
    };
    drop(setup);
    drop(files);
    drop(error_write);
    let master = pty.map(|p| p.master);
    if let Some(failure) = child_failure(error_read) {
        let _ = nix::sys::wait::waitpid(pid, None);
        return Err(failure.into());
    }
    supervise(pid, &pidfd, master, forwarded)
}
