//! The child of `engine exec`: join a running container's namespaces, then exec.

use super::{become_root, exec, fail, report_and_exit, Context, Never, Step};
use crate::model::bundle::User;
use crate::model::security::Confinement;
use crate::model::users::{Id, UserSpec};
use crate::sys::failpoint::child_step;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::path::Path;

/// What `engine exec` needs to join a running container.
pub struct JoinSetup<'a> {
    /// A pidfd of the container's PID 1 (setns through it joins every
    /// namespace in `namespaces` at once, Linux 5.8).
    pub pidfd: BorrowedFd<'a>,
    /// The namespaces that differ from ours.
    pub namespaces: rustix::thread::ThreadNameSpaceType,
    pub error_fd: BorrowedFd<'a>,
    pub pty_slave: Option<BorrowedFd<'a>>,
    /// Without a pty: what becomes fds 0, 1, 2 (pipes the engine relays
    /// where its own stdio is a terminal; None keeps ours).
    pub stdio: [Option<BorrowedFd<'a>>; 3],
    pub hostname: &'a str,
    pub env: &'a [(String, String)],
    pub workdir: &'a Path,
    pub command: &'a [String],
    pub confinement: &'a Confinement,
    /// An OCI exec: its user and rlimits, its environment exactly as given,
    /// and no death signal (a detached exec outlives the engine).
    pub oci: Option<exec::OciProcess<'a>>,
    /// `engine exec -u`: resolved in the container's /etc/passwd and
    /// /etc/group once its namespaces are joined.
    pub user: Option<&'a UserSpec>,
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
    use rustix::thread::ThreadNameSpaceType;
    // A detached OCI exec outlives the `exec` that started it.
    if setup.oci.is_none() {
        let _ =
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
    }
    let error_fd = setup.error_fd;
    child_step!(error_fd, "join.non_dumpable");
    // Out of reach of container root (ptrace, /proc/PID/{environ,fd,mem})
    // until exec: the engine set this before cloning us, and a uid change
    // below must not undo it.
    non_dumpable()?;
    // Drop the caller's controlling terminal before anything of the
    // container can see us.
    child_step!(error_fd, "join.session");
    rustix::process::setsid().ctx(|| "setsid".into())?;
    child_step!(error_fd, "join.stdio");
    for (fd, from) in setup.stdio.iter().enumerate() {
        if let Some(from) = *from {
            let dup = match fd {
                0 => rustix::stdio::dup2_stdin(from),
                1 => rustix::stdio::dup2_stdout(from),
                _ => rustix::stdio::dup2_stderr(from),
            };
            dup.ctx(|| format!("dup2 onto fd {fd}"))?;
        }
    }
    // Nothing but what the exec needs: not the cgroup directory of clone3,
    // not the engine's files.
    let mut keep = vec![error_fd.as_raw_fd(), setup.pidfd.as_raw_fd()];
    keep.extend(setup.pty_slave.map(|fd| fd.as_raw_fd()));
    if let Some(o) = &setup.oci {
        keep.extend((0..o.preserve_fds as RawFd).map(|i| 3 + i));
    }
    #[cfg(feature = "failpoints")]
    keep.extend(crate::sys::failpoint::trace_fd());
    child_step!(error_fd, "join.close_fds");
    crate::sys::openat::close_fds_except(&keep)
        .map_err(|e| fail(format!("cannot close the engine's file descriptors: {e}")))?;
    child_step!(error_fd, "join.setns");
    // The pidfd stays open, close-on-exec, until finish_and_exec closes every fd.
    rustix::thread::move_into_thread_name_spaces(setup.pidfd, setup.namespaces)
        .ctx(|| "join the container's namespaces (has it exited?)".into())?;
    if setup.namespaces.contains(ThreadNameSpaceType::USER) {
        child_step!(error_fd, "join.become_root");
        become_root()?;
        if setup.oci.is_none() {
            super::rearm_pdeathsig(setup.error_fd);
        }
        non_dumpable()?;
    }
    // `-u`: looked up now, inside the container (its root is ours), and
    // set as an OCI process's user is.
    let mut as_user: Option<(User, String)> = None;
    if let (None, Some(spec)) = (&setup.oci, setup.user) {
        child_step!(error_fd, "join.user");
        // UID:GID needs neither file: one that cannot be read is skipped.
        let numeric = matches!(
            spec,
            UserSpec {
                user: Id::Number(_),
                group: Some(Id::Number(_))
            }
        );
        let read = |path| match read_account_file(path) {
            Err(_) if numeric => Ok(String::new()),
            other => other,
        };
        let passwd = read("/etc/passwd")?;
        let group = read("/etc/group")?;
        as_user = Some(
            crate::model::users::resolve(spec, &passwd, &group).map_err(|e| fail(e.to_string()))?,
        );
    }
    let env = match (&setup.oci, &as_user) {
        (Some(_), _) => exec::exact_environment(setup.env),
        (None, None) => exec::environment(setup.hostname, setup.pty_slave.is_some(), setup.env),
        // The user's HOME, unless -e gives one (as docker does).
        (None, Some((_, home))) => {
            let mut env = vec![("HOME".to_string(), home.clone())];
            env.extend(setup.env.iter().cloned());
            exec::environment(setup.hostname, setup.pty_slave.is_some(), &env)
        }
    };
    let user_process = as_user.as_ref().map(|(user, _)| exec::OciProcess {
        user,
        rlimits: &[],
        gate: None,
        caller_proc: None,
        preserve_fds: 0,
        start_hooks: None,
    });
    exec::finish_and_exec(
        setup.pty_slave,
        setup.workdir,
        setup.command,
        &env,
        setup.confinement,
        error_fd,
        setup.oci.as_ref().or(user_process.as_ref()),
        false,
    )
}

/// The most of /etc/passwd or /etc/group read: the container's files are
/// its own, so a huge one must not hold the joining process.
const ACCOUNT_FILE_MAX: u64 = 4 << 20;

/// The container's /etc/passwd or /etc/group (empty when it has none):
/// resolved in its root with no magic link (`/proc/self/fd/0` would be
/// our stdin), opened non-blocking (a FIFO there cannot hold us), and
/// read only if it is a regular file, at most [`ACCOUNT_FILE_MAX`].
fn read_account_file(path: &str) -> Step<String> {
    use rustix::fs::{Mode, OFlags};
    use std::io::Read;
    let root = rustix::fs::open(
        "/",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ctx(|| "open the container's root".into())?;
    let fd = match crate::sys::openat::open_in_root(
        root.as_fd(),
        Path::new(path),
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY,
    ) {
        Ok(fd) => fd,
        Err(e) if e.errno == rustix::io::Errno::NOENT => return Ok(String::new()),
        Err(e) => return Err(fail(format!("cannot open the container's {path}: {e}"))),
    };
    let st = rustix::fs::fstat(&fd).ctx(|| format!("stat the container's {path}"))?;
    if !rustix::fs::FileType::from_raw_mode(st.st_mode).is_file() {
        return Err(fail(format!(
            "the container's {path} is not a regular file: give a numeric UID:GID to -u"
        )));
    }
    let mut text = Vec::new();
    std::fs::File::from(fd)
        .take(ACCOUNT_FILE_MAX + 1)
        .read_to_end(&mut text)
        .ctx(|| format!("read the container's {path}"))?;
    if text.len() as u64 > ACCOUNT_FILE_MAX {
        return Err(fail(format!(
            "the container's {path} is over {} MiB: give a numeric UID:GID to -u",
            ACCOUNT_FILE_MAX >> 20
        )));
    }
    Ok(String::from_utf8_lossy(&text).into_owned())
}

fn non_dumpable() -> Step {
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        .ctx(|| "prctl(PR_SET_DUMPABLE, 0)".into())
}
