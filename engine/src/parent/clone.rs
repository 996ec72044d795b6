//! clone3 (no rustix wrapper): a pidfd, every namespace at once, and
//! CLONE_INTO_CGROUP so the child is born in its cgroup; the id maps.

use crate::model::userns::{UserNs, USERNS_SIZE};
use anyhow::{anyhow, Context, Result};
use rustix::process::Pid;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

pub enum Cloned {
    Child,
    Parent { pid: Pid, pidfd: OwnedFd },
}

/// Linux's clone_args (v2, with `cgroup`).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// clone3 into every namespace at once, and into the cgroup when there is
/// one, so the child is never charged to ours. `new_net` false: the child
/// stays in our network namespace (`--network container:`, where the
/// caller has just joined that container's).
pub fn clone_container(userns: UserNs, new_net: bool, cgroup_fd: Option<RawFd>) -> Result<Cloned> {
    let mut flags =
        (libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC) as u64;
    if new_net {
        flags |= libc::CLONE_NEWNET as u64;
    }
    if userns != UserNs::Host {
        flags |= libc::CLONE_NEWUSER as u64;
    }
    clone3(flags, cgroup_fd)
}

/// clone3 with a pidfd, optionally straight into a cgroup. Like fork: the
/// child continues on a copy of our stack.
pub fn clone3(flags: u64, cgroup_fd: Option<RawFd>) -> Result<Cloned> {
    let flags = flags | libc::CLONE_PIDFD as u64;
    let mut pidfd: RawFd = -1;
    let mut args = CloneArgs {
        flags,
        pidfd: &mut pidfd as *mut RawFd as u64,
        // With CLONE_PARENT the kernel takes the caller's own (and wants 0 here).
        exit_signal: if flags & libc::CLONE_PARENT as u64 != 0 {
            0
        } else {
            libc::SIGCHLD as u64
        },
        ..Default::default()
    };
    if let Some(fd) = cgroup_fd {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = fd as u64;
    }
    // SAFETY: the process is single-threaded (the engine never starts
    // threads before this point), so the child is a consistent copy.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match ret {
        0 => Ok(Cloned::Child),
        pid if pid > 0 => Ok(Cloned::Parent {
            // SAFETY: pid > 0, so not zero.
            pid: unsafe { Pid::from_raw_unchecked(pid as i32) },
            // SAFETY: the kernel handed us this new fd.
            pidfd: unsafe { OwnedFd::from_raw_fd(pidfd) },
        }),
        _ => {
            let err = std::io::Error::last_os_error();
            Err(match err.raw_os_error() {
                Some(libc::ENOSYS) => anyhow!("clone3 is not supported: the engine needs Linux 5.7 or later"),
                Some(libc::EPERM) | Some(libc::EACCES) => anyhow!("cannot create the container's namespaces: {err} (are user namespaces disabled? check kernel.unprivileged_userns_clone and user.max_user_namespaces)"),
                Some(libc::ENOSPC) | Some(libc::EUSERS) => anyhow!("cannot create the container's namespaces: {err} (raise user.max_*_namespaces)"),
                _ => anyhow!("cannot clone the container process: {err}"),
            })
        }
    }
}

/// Container IDs 0..65535 onto host IDs base..base+65535. Written once, from
/// the parent; setgroups stays allowed (we are privileged) so a distro's
/// tools can drop to their own users.
pub fn write_id_maps(pid: Pid, uid: u32, gid: u32) -> Result<()> {
    for (file, base) in [("uid_map", uid), ("gid_map", gid)] {
        let path = format!("/proc/{pid}/{file}");
        std::fs::write(&path, format!("0 {base} {USERNS_SIZE}\n"))
            .with_context(|| format!("cannot write {path}"))?;
    }
    Ok(())
}
