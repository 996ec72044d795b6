//! The last steps before exec, in runc's order: the seccomp filter while
//! CAP_SYS_ADMIN is still held (unless no_new_privs is asked for), the
//! capability cut, then no_new_privs and the filter. Everything was built
//! and checked by the parent; here only the system calls remain.

use super::{fail, Step};
use crate::model::security::Confinement;
use crate::model::userns::{UserNs, USERNS_SIZE};
use crate::sys::{caps, seccomp};

/// Applies `conf` to the calling process.
pub(super) fn apply(conf: &Confinement) -> Step {
    if conf.privileged {
        caps::apply_privileged().map_err(|e| fail(e.to_string()))?;
        if conf.no_new_privs {
            set_no_new_privs()?;
        }
        return Ok(());
    }
    let program = conf.program().map_err(|e| fail(e.to_string()))?;
    let install = |p: &[seccomp::sock_filter]| seccomp::apply(p).map_err(|e| fail(e.to_string()));
    if !conf.no_new_privs {
        // Needs CAP_SYS_ADMIN in our user namespace: before the cut.
        if let Some(p) = &program {
            install(p)?;
        }
    }
    caps::drop_bounding(&conf.caps()).map_err(|e| fail(e.to_string()))?;
    caps::set_process_sets(&conf.process_sets()).map_err(|e| fail(e.to_string()))?;
    if conf.no_new_privs {
        set_no_new_privs()?;
        if let Some(p) = &program {
            install(p)?;
        }
    }
    Ok(())
}

/// `apply` for an OCI process that runs as `user`: runc's order, the
/// bounding set cut while still root, PR_SET_KEEPCAPS across setgroups,
/// setresgid and setresuid, then the permitted and effective sets.
pub(super) fn apply_as(conf: &Confinement, user: &crate::model::bundle::User) -> Step {
    use rustix::thread::{set_keep_capabilities, set_thread_groups, set_thread_res_gid};
    use rustix::thread::{set_thread_res_uid, Gid, Uid};
    if user.uid == 0 && user.gid == 0 && user.additional_gids.is_empty() {
        return apply(conf);
    }
    let program = conf.program().map_err(|e| fail(e.to_string()))?;
    let install = |p: &[seccomp::sock_filter]| seccomp::apply(p).map_err(|e| fail(e.to_string()));
    if !conf.no_new_privs {
        if let Some(p) = &program {
            install(p)?;
        }
    }
    caps::drop_bounding(&conf.caps()).map_err(|e| fail(e.to_string()))?;
    set_keep_capabilities(true).map_err(|e| {
        fail(format!(
            "cannot keep the capabilities across setuid: {}",
            errno_with_name(e)
        ))
    })?;
    let groups: Vec<Gid> = user
        .additional_gids
        .iter()
        .map(|g| Gid::from_raw_unchecked(*g))
        .collect();
    // Per thread (rustix), where glibc's would set every thread: this process
    // is single-threaded here (the child after clone, or the joining one).
    set_thread_groups(&groups).map_err(|e| {
        fail(format!(
            "setgroups {:?}: {}",
            user.additional_gids,
            crate::sys::errno_desc(e)
        ))
    })?;
    // from_raw_unchecked: a raw -1 goes to the kernel as before (nix passed it).
    let gid = Gid::from_raw_unchecked(user.gid);
    set_thread_res_gid(gid, gid, gid).map_err(|e| {
        fail(format!(
            "setresgid {}: {}",
            user.gid,
            crate::sys::errno_desc(e)
        ))
    })?;
    let uid = Uid::from_raw_unchecked(user.uid);
    set_thread_res_uid(uid, uid, uid).map_err(|e| {
        fail(format!(
            "setresuid {}: {}",
            user.uid,
            crate::sys::errno_desc(e)
        ))
    })?;
    let _ = set_keep_capabilities(false);
    caps::set_process_sets(&conf.process_sets()).map_err(|e| fail(e.to_string()))?;
    if conf.no_new_privs {
        set_no_new_privs()?;
        if let Some(p) = &program {
            install(p)?;
        }
    }
    Ok(())
}

/// An errno as the sentence printed it before (nix's Display: "EPERM: Operation
/// not permitted"); PR_SET_KEEPCAPS fails with EPERM or EINVAL only.
fn errno_with_name(e: rustix::io::Errno) -> String {
    let name = match e {
        rustix::io::Errno::PERM => "EPERM".to_owned(),
        rustix::io::Errno::INVAL => "EINVAL".to_owned(),
        e => format!("errno {}", e.raw_os_error()),
    };
    format!("{name}: {}", crate::sys::errno_desc(e))
}

fn set_no_new_privs() -> Step {
    rustix::thread::set_no_new_privs(true)
        .map_err(|e| fail(format!("cannot set no_new_privs in the container: {e}")))
}

/// `ping` without CAP_NET_RAW: ICMP echo sockets for every group of the
/// container, in its own network namespace (before /proc/sys is made
/// read-only). The kernel takes only groups mapped in our user namespace:
/// all of them without one, else the 65536 the engine maps. Best effort:
/// ping is a comfort.
pub(super) fn allow_ping(userns: UserNs) {
    let range = match userns {
        UserNs::Host => "0 2147483647".to_string(),
        _ => format!("0 {}", USERNS_SIZE - 1),
    };
    let _ = std::fs::write("/proc/sys/net/ipv4/ping_group_range", range);
}
