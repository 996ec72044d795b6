//! `engine exec`: a new process inside a running container (its namespaces,
//! cgroup, root and working directory, capabilities and seccomp filter),
//! supervised like PID 1.
//!
//! The joining process is what container root would most like to reach, so
//! it carries nothing of the caller's: the engine runs from a read-only image
//! of itself (the host binary cannot be reopened for writing through
//! /proc/PID/exe, CVE-2019-5736), is non-dumpable until exec, leaves the caller's session
//! (no controlling terminal to push keystrokes into), closes every fd but
//! the ones it hands on, joins with a pidfd, and gets an environment made of
//! the container's record and `-e` only. A terminal is never handed in: with
//! `-t` it gets a pty of its own; without, any of the caller's stdin, stdout
//! and stderr that is a terminal is relayed through a pipe.

use super::clone::{clone3, Cloned};
use super::supervise::{block_forwarded, supervise, RestoreMask};
use super::{child_failure, pipe, Error};
use crate::child;
use crate::model::security::Confinement;
use crate::parent::record::Record;
use crate::sys::failpoint::step;
use anyhow::{anyhow, Context, Result};
use rustix::thread::ThreadNameSpaceType;
use std::ffi::CString;
use std::fs::File;
use std::io::{IsTerminal, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// What `engine exec` runs.
pub struct ExecRequest {
    pub command: Vec<String>,
    pub env: Vec<(String, String)>,
    pub workdir: Option<PathBuf>,
    pub tty: bool,
    /// `-u USER[:GROUP]`, looked up inside the container.
    pub user: Option<crate::model::users::UserSpec>,
}

/// The namespaces of process `pid` (besides pid) that are not ours: what a
/// joining process must enter. None when `pid` is gone.
pub(crate) fn namespaces_to_join(pid: i32) -> Option<ThreadNameSpaceType> {
    let mut namespaces = ThreadNameSpaceType::empty();
    for (name, kind) in [
        ("ipc", ThreadNameSpaceType::INTER_PROCESS_COMMUNICATION),
        ("uts", ThreadNameSpaceType::HOST_NAME_AND_NIS_DOMAIN_NAME),
        ("net", ThreadNameSpaceType::NETWORK),
        ("cgroup", ThreadNameSpaceType::CONTROL_GROUP),
        ("mnt", ThreadNameSpaceType::MOUNT),
        ("user", ThreadNameSpaceType::USER),
    ] {
        let theirs = std::fs::read_link(format!("/proc/{pid}/ns/{name}")).ok()?;
        // Shared with the host (e.g. --userns host): nothing to join.
        if std::fs::read_link(format!("/proc/self/ns/{name}")).ok() != Some(theirs) {
            namespaces |= kind;
        }
    }
    Some(namespaces)
}

/// The running container a process joins.
pub struct Target<'a> {
    pub name: &'a str,
    /// Its PID 1, on the host.
    pub pid: i32,
    pub cgroup: Option<&'a Path>,
    pub hostname: &'a str,
}

/// What the joining process runs, and as whom.
pub struct JoinProcess<'a> {
    /// Exactly the environment it gets.
    pub env: &'a [(String, String)],
    pub workdir: &'a Path,
    pub command: &'a [String],
    pub confinement: &'a Confinement,
    /// An OCI process: its user, rlimits, preserved fds.
    pub oci: Option<child::OciProcess<'a>>,
    /// `engine exec -u`.
    pub user: Option<&'a crate::model::users::UserSpec>,
}

/// Where the joining process's stdio comes from.
pub enum Terminal {
    /// Ours, but those of our stdin, stdout and stderr that are terminals
    /// are relayed through pipes (`engine exec` without `-t`).
    Relayed,
    /// Ours, as they are (an OCI exec: its caller's pipes or files).
    Inherited,
    /// A pty of the host's devpts whose master we keep (`engine exec -t`).
    OwnPty,
    /// A pty of the container's devpts whose master goes to this console
    /// socket (an OCI exec with a terminal).
    ConsoleSocket(OwnedFd),
}

/// A process that joined a container and exec'd its command.
pub struct Joined {
    pub pid: rustix::process::Pid,
    pub pidfd: OwnedFd,
    /// The pty master of `Terminal::OwnPty`.
    pub master: Option<OwnedFd>,
    /// With `forward_signals`: the signals blocked for `supervise`.
    pub forwarded: Option<(super::supervise::SigSet, RestoreMask)>,
    relays: Vec<RelayProcess>,
}

impl Joined {
    /// Ends the stdio relays once the process has exited.
    pub fn finish(self) {
        for r in self.relays {
            r.finish();
        }
    }
}

/// Runs a process inside a running container: its namespaces (setns), its
/// cgroup, its root and working directory. Returns docker's exit code.
pub fn exec_into(rec: &Record, req: &ExecRequest) -> Result<i32, Error> {
    let mut env = rec.env.clone();
    env.extend(req.env.iter().cloned());
    let workdir = req.workdir.clone().unwrap_or_else(|| PathBuf::from("/"));
    let confinement = rec.confinement.clone().unwrap_or_default();
    let target = Target {
        name: &rec.name,
        pid: rec.pid,
        cgroup: rec.cgroup.as_deref(),
        hostname: &rec.hostname,
    };
    let process = JoinProcess {
        env: &env,
        workdir: &workdir,
        command: &req.command,
        confinement: &confinement,
        oci: None,
        user: req.user.as_ref(),
    };
    let terminal = if req.tty {
        Terminal::OwnPty
    } else {
        Terminal::Relayed
    };
    step!("exec.enter");
    let mut joined = join_container(&target, &process, terminal, true)?;
    let Some((forwarded, _restore_mask)) = joined.forwarded.take() else {
        unreachable!("join_container blocks the forwarded signals when asked")
    };
    step!("exec.supervise");
    let status = supervise(joined.pid, &joined.pidfd, joined.master.take(), forwarded)?;
    step!("exec.finish");
    joined.finish();
    Ok(status)
}

/// The one way into a running container, for `engine exec` and the OCI
/// `exec`: non-dumpable, a pidfd of its PID 1, the namespaces that differ
/// from ours, our pid namespace joined so that our child is born in it,
/// the terminal, the error pipe, clone3 into its cgroup, and the child's
/// report. With `forward_signals`, the signals `supervise` forwards are
/// blocked before the clone.
pub fn join_container(
    target: &Target,
    process: &JoinProcess,
    terminal: Terminal,
    forward_signals: bool,
) -> Result<Joined, Error> {
    let (pidfd, namespaces) = open_target(target)?;
    // Relays for our terminals, forked while our children are still born
    // in our own pid namespace (out of the container's sight).
    let relays = start_relays(&terminal)?;
    let mut stdio = [None; 3];
    for r in &relays {
        stdio[r.fd] = r.theirs.as_ref().map(|fd| fd.as_fd());
    }
    // Our children, not we, are born in the container's pid namespace.
    step!("exec.pid_namespace");
    rustix::thread::move_into_link_name_space(
        pidfd.as_fd(),
        Some(rustix::thread::LinkNameSpaceType::ProcessID),
    )
    .map_err(std::io::Error::from)
    .with_context(|| format!("cannot join the pid namespace of {}", target.name))?;
    step!("exec.pty");
    // A pty of the container's own devpts (a host one has no name in there:
    // `tty` said "not a tty"), whether we relay it or hand it to a console.
    let pty = match terminal {
        Terminal::OwnPty | Terminal::ConsoleSocket(_) => {
            Some(super::tty::open_pty_in_root_of(target.pid)?)
        }
        Terminal::Relayed | Terminal::Inherited => None,
    };
    step!("exec.error_pipe");
    let (error_read, error_write) = pipe()?;
    let setup = child::join::JoinSetup {
        pidfd: pidfd.as_fd(),
        namespaces,
        error_fd: error_write.as_fd(),
        pty_slave: pty.as_ref().map(|p| p.slave.as_fd()),
        stdio,
        hostname: target.hostname,
        env: process.env,
        workdir: process.workdir,
        command: process.command,
        confinement: process.confinement,
        oci: process.oci.clone(),
        user: process.user,
    };
    step!("exec.block_signals");
    let forwarded = if forward_signals {
        Some(block_forwarded()?)
    } else {
        None
    };
    let cgroup_dir = target.cgroup.and_then(|p| File::open(p).ok());
    step!("exec.clone");
    let (pid, child_pidfd) = match clone3(0, cgroup_dir.as_ref().map(|f| f.as_raw_fd()))? {
        Cloned::Child => child::join::join(&setup),
        Cloned::Parent { pid, pidfd } => (pid, pidfd),
    };
    drop(cgroup_dir);
    drop(pidfd);
    drop(error_write);
    // Only the joining process holds the command's ends of the pipes now.
    let relays: Vec<RelayProcess> = relays.into_iter().map(RelayProcess::close_theirs).collect();
    let master = hand_over_pty(&terminal, pty)?;
    if let Some(failure) = child_failure(error_read) {
        super::reap(pid);
        return Err(failure);
    }
    Ok(Joined {
        pid,
        pidfd: child_pidfd,
        master,
        forwarded,
        relays,
    })
}

/// Before anything of the container exists in this process (inherited
/// by the joining child): non-dumpable; then a pidfd of the target's PID 1
/// and the namespaces of it that are not ours.
fn open_target(target: &Target) -> Result<(OwnedFd, ThreadNameSpaceType), Error> {
    step!("exec.non_dumpable");
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        .map_err(std::io::Error::from)
        .context("cannot make the engine non-dumpable")?;
    let gone = || anyhow!("container {} has exited", target.name);
    step!("exec.pid");
    let pid = rustix::process::Pid::from_raw(target.pid).ok_or_else(gone)?;
    step!("exec.pidfd");
    let pidfd: OwnedFd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())
        .map_err(|_| gone())?;
    step!("exec.namespaces");
    let namespaces = namespaces_to_join(target.pid).ok_or_else(gone)?;
    Ok((pidfd, namespaces))
}

/// With `Terminal::Relayed`, a relay process for each of our stdio fds
/// that is a terminal, started; their pipe ends (`theirs`) are the
/// joining process's stdio.
fn start_relays(terminal: &Terminal) -> Result<Vec<RelayProcess>, Error> {
    step!("exec.relays");
    let relays = match terminal {
        Terminal::Relayed => terminal_relays()?,
        _ => Vec::new(),
    };
    step!("exec.start_relays");
    Ok(relays
        .into_iter()
        .map(Relay::start)
        .collect::<Result<_>>()?)
}

/// The pty's master: sent to the console socket, or kept (returned) to
/// relay our terminal through.
fn hand_over_pty(
    terminal: &Terminal,
    pty: Option<super::tty::Pty>,
) -> Result<Option<OwnedFd>, Error> {
    step!("exec.console");
    let Some(pty) = pty else {
        return Ok(None);
    };
    match terminal {
        Terminal::ConsoleSocket(sock) => {
            super::tty::send_console(sock, &pty.master, &pty.slave_path)?;
            Ok(None)
        }
        _ => Ok(Some(pty.master)),
    }
}

/// A pipe standing in for one of our stdio fds that is a terminal.
struct Relay {
    /// 0, 1 or 2.
    fd: usize,
    /// The end the joining process gets.
    theirs: OwnedFd,
    ours: OwnedFd,
}

fn terminal_relays() -> Result<Vec<Relay>> {
    let mut relays = Vec::new();
    let terminal = [
        std::io::stdin().is_terminal(),
        std::io::stdout().is_terminal(),
        std::io::stderr().is_terminal(),
    ];
    for (fd, is_tty) in terminal.into_iter().enumerate() {
        if !is_tty {
            continue;
        }
        let (read, write) = pipe()?;
        let (theirs, ours) = if fd == 0 {
            (read, write)
        } else {
            (write, read)
        };
        relays.push(Relay { fd, theirs, ours });
    }
    Ok(relays)
}

impl Relay {
    /// Forks a process that copies between our fd and the pipe (a process,
    /// not a thread: no thread can be made once we joined the container's
    /// pid namespace, and the joining child is cloned from us).
    fn start(self) -> Result<RelayProcess> {
        // SAFETY: single-threaded; the child only copies bytes and _exits.
        match unsafe { super::fork() }.context("cannot fork a stdio relay")? {
            None => {
                let _ = crate::sys::openat::close_fds_except(&[self.ours.as_raw_fd()]);
                for sig in [libc::SIGINT, libc::SIGQUIT] {
                    // SAFETY: ignoring a signal is always sound (rustix has no
                    // safe call for it). The engine forwards ^C to the command.
                    unsafe { libc::signal(sig, libc::SIG_IGN) };
                }
                copy_loop(self.fd, self.ours);
                // SAFETY: skips the exit handlers and buffers copied from the engine.
                unsafe { libc::_exit(0) }
            }
            Some(child) => Ok(RelayProcess {
                // SAFETY: fork returned a child's pid, which is > 0.
                pid: unsafe { rustix::process::Pid::from_raw_unchecked(child) },
                fd: self.fd,
                theirs: Some(self.theirs),
            }),
        }
    }
}

/// A forked relay, and the pipe end the joining process gets until it is cloned.
struct RelayProcess {
    pid: rustix::process::Pid,
    /// Our stdio fd it relays: 0, 1 or 2.
    fd: usize,
    theirs: Option<OwnedFd>,
}

impl RelayProcess {
    fn close_theirs(mut self) -> RelayProcess {
        self.theirs = None;
        self
    }

    /// The stdin relay may be blocked on the terminal: it goes. The output
    /// relays end once the command's side of their pipe is closed, after
    /// writing what is left in it.
    fn finish(self) {
        if self.fd == 0 {
            let _ = rustix::process::kill_process(self.pid, rustix::process::Signal::KILL);
        }
        super::reap(self.pid);
    }
}

fn copy_loop(fd: usize, pipe: OwnedFd) {
    let mut pipe = File::from(pipe);
    let mut buf = [0u8; 16 * 1024];
    let ours = match fd {
        0 => rustix::stdio::stdin(),
        1 => rustix::stdio::stdout(),
        _ => rustix::stdio::stderr(),
    };
    loop {
        if fd == 0 {
            let n = super::tty::read_some(ours, &mut buf);
            if n <= 0 || pipe.write_all(&buf[..n as usize]).is_err() {
                return;
            }
        } else {
            match pipe.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if !super::tty::write_all(ours, &buf[..n]) {
                        return;
                    }
                }
            }
        }
    }
}

/// Re-executes the engine (same argv and environment) from an image of
/// itself that cannot be written, as runc does against CVE-2019-5736: a
/// process of the container that reaches /proc/PID/exe of this engine finds
/// a file it cannot reopen for writing, never the host's binary writable.
/// The image is a read-only bind mount of the binary that is attached
/// nowhere (`open_tree` + `mount_setattr`: no copy, nothing any mount
/// namespace sees); where the kernel or privileges refuse that, a sealed
/// memfd copy. Returns at once when already running from such an image
/// (told by the image itself, not by a variable the caller could set).
pub fn rerun_from_read_only_image() -> Result<(), Error> {
    let exe = File::open("/proc/self/exe").context("cannot open /proc/self/exe")?;
    if is_unwritable_image(&exe) {
        return Ok(());
    }
    let image = match read_only_mount_of_self() {
        Ok(fd) => fd,
        Err(_) => sealed_memfd_copy(exe)?,
    };
    let args: Vec<CString> = std::env::args_os()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<_, _>>()
        .context("an argument holds a NUL byte")?;
    let env: Vec<CString> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv).ok()
        })
        .collect();
    // fexecve through libc: rustix has no safe exec.
    let (argv, envp) = (crate::sys::c_pointers(&args), crate::sys::c_pointers(&env));
    // SAFETY: argv and envp are NULL-terminated arrays of pointers to C
    // strings (args, env) that outlive the call; it returns only on failure.
    unsafe { libc::fexecve(image.as_raw_fd(), argv.as_ptr(), envp.as_ptr()) };
    let err = std::io::Error::last_os_error();
    Err(anyhow!(
        "cannot run the engine from its read-only image: {}",
        rustix::io::Errno::from_io_error(&err)
            .map_or_else(|| err.to_string(), crate::sys::errno_desc)
    )
    .into())
}

/// A write-sealed memfd, or a file on a read-only mount: what neither host
/// root nor container root can open for writing through /proc/PID/exe.
fn is_unwritable_image(exe: &File) -> bool {
    use rustix::fs::{SealFlags, StatVfsMountFlags};
    rustix::fs::fcntl_get_seals(exe).is_ok_and(|s| s.contains(SealFlags::WRITE))
        || rustix::fs::fstatvfs(exe).is_ok_and(|s| s.f_flag.contains(StatVfsMountFlags::RDONLY))
}

/// The running binary as a detached, read-only bind mount (an O_PATH fd).
/// Needs CAP_SYS_ADMIN and Linux 5.12.
fn read_only_mount_of_self() -> Result<OwnedFd> {
    use crate::sys::idmap::{detached_tree, Propagation};
    Ok(detached_tree(
        std::path::Path::new("/proc/self/exe"),
        false,
        Propagation::Private,
        libc::MOUNT_ATTR_RDONLY,
    )?)
}

/// A sealed, read-only memfd copy of the running binary.
fn sealed_memfd_copy(mut exe: File) -> Result<OwnedFd> {
    use rustix::fs::SealFlags;
    let memfd = rustix::fs::memfd_create(
        "engine",
        rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING,
    )
    .context("cannot create a memfd for a sealed copy of the engine")?;
    let mut copy = File::from(memfd);
    std::io::copy(&mut exe, &mut copy).context("cannot copy the engine into a memfd")?;
    // Read and execute for its owner only: container root, not host root,
    // may not even open it for writing.
    rustix::fs::fchmod(&copy, rustix::fs::Mode::from_raw_mode(0o500))
        .context("cannot make the engine's memfd read-only")?;
    rustix::fs::fcntl_add_seals(
        &copy,
        SealFlags::SEAL | SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE,
    )
    .context("cannot seal the engine's memfd")?;
    Ok(OwnedFd::from(copy))
}
