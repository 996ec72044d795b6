//! Which host processes are a container's, for `kill --all`, `ps` and
//! `delete`: its cgroup's when it has one; else those of its pid namespace
//! when that is its own; else, in a pid namespace it shares (a pod's, or the
//! host's), those in its own mount namespace.
//!
//! Why the mount namespace: every process the init forks and every `exec`
//! (which joins the init's namespaces) is in it; an orphan stays in it when
//! the pod's pause process adopts it; `setsid` or a double fork does not
//! take a process out of it (leaving needs CAP_SYS_ADMIN). It needs no
//! process of ours to stay behind: a per-container subreaper would have to
//! live in the pod's pid namespace, seen by every container of the pod, and
//! fork every exec; a pidfd names one process, not its descendants, and
//! closes when `create` exits. The namespace is named by the kernel's 64-bit
//! ID (NS_GET_MNTNS_ID, Linux 6.8), which is never reused, so a leftover is
//! still found after the init has gone and a later namespace is never taken
//! for it; on older kernels the inode number stands in, which the kernel
//! reuses once the namespace is gone.

use super::state::{alive, NsId, Record};
use rustix::process::{Pid, PidfdFlags, Signal};
use std::os::fd::AsFd;

/// What `create` records of the init's namespaces (from `config::Plan`
/// and the init itself, once it exists).
pub fn scope_of(pid: i32, new_namespaces: u64) -> (bool, Option<NsId>) {
    let own_pid_ns = new_namespaces & libc::CLONE_NEWPID as u64 != 0;
    let own_mount_ns = new_namespaces & libc::CLONE_NEWNS as u64 != 0;
    (
        own_pid_ns,
        own_mount_ns.then(|| NsId::mount_of(pid)).flatten(),
    )
}

/// The host pids of the container's processes, sorted.
pub fn members(rec: &Record) -> Vec<i32> {
    let mut pids = if let Some(cg) = &rec.cgroup {
        std::fs::read_to_string(cg.join("cgroup.procs"))
            .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    } else if rec.own_pid_ns {
        // Once its init is gone the kernel has killed the rest.
        if !alive(rec.pid, rec.start_time) {
            return Vec::new();
        }
        match std::fs::read_link(format!("/proc/{}/ns/pid", rec.pid)) {
            Ok(ns) => all_pids()
                .filter(|p| {
                    std::fs::read_link(format!("/proc/{p}/ns/pid")).ok() == Some(ns.clone())
                })
                .collect(),
            Err(_) => Vec::new(),
        }
    } else if let Some(mnt) = &rec.mnt_ns {
        all_pids()
            .filter(|p| NsId::mount_of(*p).is_some_and(|m| m.same(mnt)))
            .collect()
    } else {
        // Neither pid nor mount namespace of its own: the init's live
        // descendants are all that can be told apart.
        descendants(rec)
    };
    pids.sort();
    pids
}

/// Signals every process of the container (see `members`). Each is opened
/// as a pidfd and checked again through it, so a pid reused between the
/// scan and the signal is not hit. Returns how many were signalled.
pub fn signal_all(rec: &Record, sig: Signal) -> usize {
    let mut signalled = 0;
    for pid in members(rec) {
        let Some(p) = Pid::from_raw(pid) else {
            continue;
        };
        let Ok(pidfd) = rustix::process::pidfd_open(p, PidfdFlags::empty()) else {
            continue; // gone already
        };
        // The pidfd pins this process: if the pid was reused before it was
        // opened, the check below sees the newcomer and leaves it alone.
        if still_member(rec, pid) && rustix::process::pidfd_send_signal(pidfd.as_fd(), sig).is_ok()
        {
            signalled += 1;
        }
    }
    signalled
}

/// `pid` is still the container's (a cheap re-check of `members`' rule).
fn still_member(rec: &Record, pid: i32) -> bool {
    if let Some(cg) = &rec.cgroup {
        return std::fs::read_to_string(cg.join("cgroup.procs"))
            .is_ok_and(|t| t.lines().any(|l| l.trim().parse() == Ok(pid)));
    }
    if rec.own_pid_ns {
        return std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok()
            == std::fs::read_link(format!("/proc/{}/ns/pid", rec.pid)).ok();
    }
    if let Some(mnt) = &rec.mnt_ns {
        return NsId::mount_of(pid).is_some_and(|m| m.same(mnt));
    }
    descendants(rec).contains(&pid)
}

fn all_pids() -> impl Iterator<Item = i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
}

/// The init and its descendants, while the init lives.
fn descendants(rec: &Record) -> Vec<i32> {
    if !alive(rec.pid, rec.start_time) {
        return Vec::new();
    }
    let parents: Vec<(i32, i32)> = all_pids()
        .filter_map(|p| Some((p, parent_of(p)?)))
        .collect();
    let mut found = vec![rec.pid];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    found
}

/// Field 4 of /proc/PID/stat (after the command, which may hold spaces).
fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The mount namespace of this process is named the same twice, and
    /// differs from a gone process's (none).
    #[test]
    fn a_mount_namespace_is_named_by_the_kernel() {
        let me = std::process::id() as i32;
        let a = NsId::mount_of(me).unwrap();
        assert!(a.same(&NsId::mount_of(me).unwrap()));
        assert!(a.id.is_some(), "NS_GET_MNTNS_ID is in Linux 6.8 and later");
        assert_eq!(NsId::mount_of(i32::MAX), None);
        assert_eq!(
            parent_of(me),
            Some(std::os::unix::process::parent_id() as i32)
        );
    }
}
