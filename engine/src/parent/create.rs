//! The host side of an OCI container's `create`, up to the exec.fifo gate: the same clone, id maps,
//! mount fds and go as `engine run` (`run::send_mount_fds`, `child::run`),
//! then, instead of supervising, wait until the init says it is ready to
//! exec and leave it blocked on the exec.fifo for `start`. The init stays
//! behind when `create` returns; the caller (a subreaper) reaps it.

use super::clone::{clone3, Cloned};
use super::{child_failure, pipe, Error};
use crate::child::{self, ChildSetup, OciChild};
use crate::model::bundle::Extras;
use crate::model::spec::Spec;
use crate::sys::failpoint::step;
use anyhow::{anyhow, bail, Context, Result};
use rustix::process::{Pid, Signal};
use rustix::thread::LinkNameSpaceType as NsType;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// One linux.uidMappings/gidMappings entry.
#[derive(Debug, Clone, Copy)]
pub struct IdMapping {
    pub container: u32,
    pub host: u32,
    pub size: u32,
}

/// What `create` hands the launch besides the spec.
pub struct Launch<'a> {
    pub spec: &'a Spec,
    pub extras: &'a Extras,
    /// CLONE_NEW* flags of the namespaces to create.
    pub new_namespaces: u64,
    /// Namespaces joined by path (opened before anything was created).
    pub join: Vec<(OwnedFd, NsType)>,
    pub uid_map: Vec<IdMapping>,
    pub gid_map: Vec<IdMapping>,
    /// The state directory's exec.fifo.
    pub fifo: &'a Path,
    /// A connected console socket: the pty master goes there.
    pub console: Option<OwnedFd>,
    pub console_size: Option<(u16, u16)>,
    pub oom_score_adj: Option<i32>,
    /// The cgroup to clone into.
    pub cgroup: Option<PathBuf>,
    /// O_PATH fds of the hooks.createContainer executables, opened in our
    /// mount namespace (the runtime's, as the runtime-spec says); the init
    /// runs them through these.
    pub create_container_hooks: Vec<OwnedFd>,
}

/// The init of a created container, waiting for `start`. Dropped before
/// `disarm`, it is killed and reaped.
pub struct Created {
    pub pid: Pid,
    armed: bool,
}

impl Created {
    /// Keep the init: `create` succeeded.
    pub fn disarm(mut self) -> Pid {
        self.armed = false;
        self.pid
    }
}

impl Drop for Created {
    fn drop(&mut self) {
        if self.armed {
            let _ = rustix::process::kill_process(self.pid, Signal::KILL);
            super::reap(self.pid);
        }
    }
}

/// Clones the init and sets it up up to the gate. `before_go` runs once
/// the init exists, in its namespaces but before it builds its root (the
/// prestart and createRuntime hooks); it returns the OCI state the init's
/// own hooks (createContainer, startContainer) read.
pub fn create_init(
    l: Launch,
    before_go: impl FnOnce(Pid) -> Result<String>,
) -> Result<Created, Error> {
    let spec = l.spec;
    let InitChannels {
        fifo,
        console,
        sync_read,
        sync_write,
        ready_read,
        ready_write,
        error_read,
        error_write,
        state_read,
        state_write,
        mount_sock,
        child_mount_sock,
        cgroup_dir,
    } = open_init_channels(&l)?;
    // Joined here, so the init is born in them (setns of a pid namespace
    // applies to our children). A user or mount namespace is joined by an
    // intermediate process instead (`clone_joining`): we keep the host's.
    let (join_in_child, join_here): (Vec<_>, Vec<_>) = l
        .join
        .iter()
        .partition(|(_, kind)| matches!(kind, NsType::User | NsType::Mount));
    join_here_by_path(&join_here)?;
    let joins_user = join_in_child.iter().any(|(_, kind)| *kind == NsType::User);
    let setup = ChildSetup {
        disk_layer: false,
        spec,
        layer_size: None,
        mount_sock: child_mount_sock.as_fd(),
        sync_fd: sync_read.as_fd(),
        error_fd: error_write.as_fd(),
        pty_slave: None,
        eth0: None,
        etc_files: false,
        cgroup2: l.cgroup.is_some(),
        oci: Some(OciChild {
            extras: l.extras,
            ready_fd: ready_write.as_fd(),
            fifo_fd: fifo.as_fd(),
            state_fd: state_read.as_fd(),
            hook_fds: l.create_container_hooks.iter().map(AsFd::as_fd).collect(),
            console,
        }),
    };
    let cgroup_fd = cgroup_dir.as_ref().map(|f| f.as_raw_fd());
    step!("oci_create.clone");
    let pid = clone_init(&setup, &join_in_child, l.new_namespaces, cgroup_fd)?;
    let created = Created { pid, armed: true };
    drop(setup);
    drop((
        sync_read,
        child_mount_sock,
        error_write,
        ready_write,
        state_read,
        fifo,
        cgroup_dir,
    ));

    wire_up_init(&l, pid, joins_user, mount_sock)?;
    let_init_go(pid, before_go, sync_write, state_write)?;
    if init_is_ready(ready_read, &error_read) {
        return Ok(created);
    }
    Err(child_failure(error_read).unwrap_or(Error::Child {
        code: crate::model::exit::ENGINE_ERROR,
        message: "the container's init exited before it was ready".into(),
    }))
}

/// The init's fifo fd, console, pipes (the go, its readiness, its
/// failure, the OCI state), mount socket and cgroup directory.
struct InitChannels<'a> {
    fifo: OwnedFd,
    console: Option<child::Console<'a>>,
    sync_read: OwnedFd,
    sync_write: OwnedFd,
    ready_read: OwnedFd,
    ready_write: OwnedFd,
    error_read: OwnedFd,
    error_write: OwnedFd,
    state_read: OwnedFd,
    state_write: OwnedFd,
    mount_sock: OwnedFd,
    child_mount_sock: OwnedFd,
    cgroup_dir: Option<File>,
}

fn open_init_channels<'a>(l: &'a Launch) -> Result<InitChannels<'a>, Error> {
    step!("oci_create.open_fifo");
    let fifo = rustix::fs::open(
        l.fifo,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .with_context(|| format!("cannot open {}", l.fifo.display()))?;
    step!("oci_create.console_check");
    let console = console_of(l)?;
    step!("oci_create.sync_pipe");
    let (sync_read, sync_write) = pipe()?;
    step!("oci_create.ready_pipe");
    let (ready_read, ready_write) = pipe()?;
    step!("oci_create.error_pipe");
    let (error_read, error_write) = pipe()?;
    step!("oci_create.state_pipe");
    let (state_read, state_write) = pipe()?;
    step!("oci_create.mount_socket");
    let (mount_sock, child_mount_sock) = crate::sys::idmap::fd_socketpair()
        .context("cannot create a socket pair for the mount fds")?;
    step!("oci_create.cgroup_dir");
    let cgroup_dir = match &l.cgroup {
        Some(p) => {
            Some(File::open(p).with_context(|| format!("cannot open cgroup {}", p.display()))?)
        }
        None => None,
    };
    Ok(InitChannels {
        fifo,
        console,
        sync_read,
        sync_write,
        ready_read,
        ready_write,
        error_read,
        error_write,
        state_read,
        state_write,
        mount_sock,
        child_mount_sock,
        cgroup_dir,
    })
}

/// The namespaces given by path that the init is born in (a pid
/// namespace joined applies to our children).
fn join_here_by_path(join_here: &[&(OwnedFd, NsType)]) -> Result<(), Error> {
    step!("oci_create.join_namespaces");
    for (fd, kind) in join_here {
        rustix::thread::move_into_link_name_space(fd.as_fd(), Some(*kind))
            .map_err(std::io::Error::from)
            .with_context(|| {
                format!(
                    "cannot join the {} namespace given by path",
                    clone_flag_name(*kind)
                )
            })?;
    }
    Ok(())
}

/// The hooks that run before the go (`before_go`), the go, then the OCI
/// state they returned, which the init reads first thing.
fn let_init_go(
    pid: Pid,
    before_go: impl FnOnce(Pid) -> Result<String>,
    sync_write: OwnedFd,
    state_write: OwnedFd,
) -> Result<(), Error> {
    step!("oci_create.before_go");
    let state = before_go(pid)?;
    step!("oci_create.go");
    File::from(sync_write)
        .write_all(b"G")
        .context("cannot signal the container to start")?;
    // After the go, so a state of any size cannot block us: the init reads
    // it to its end first thing.
    let _ = File::from(state_write).write_all(state.as_bytes());
    Ok(())
}

/// Around the cloned init, before the hooks and the go: its ID maps, its
/// oomScoreAdj, the mount fds (then the socket is closed).
fn wire_up_init(l: &Launch, pid: Pid, joins_user: bool, mount_sock: OwnedFd) -> Result<(), Error> {
    step!("oci_create.id_maps");
    id_maps(pid, joins_user, &l.uid_map, &l.gid_map)?;
    step!("oci_create.oom_score_adj");
    if let Some(adj) = l.oom_score_adj {
        std::fs::write(format!("/proc/{pid}/oom_score_adj"), adj.to_string())
            .with_context(|| format!("cannot set process.oomScoreAdj {adj}"))?;
    }
    step!("oci_create.mount_fds");
    let scratch = std::env::temp_dir();
    let dirs = (scratch.as_path(), None);
    super::run::send_mount_fds(l.spec, pid, dirs, &[], &l.extras.binds, None, &mount_sock)?;
    drop(mount_sock);
    Ok(())
}

/// With process.terminal the init opens the pty in its own devpts and
/// sends the master to the console socket itself (child/console.rs).
fn console_of<'a>(l: &'a Launch) -> Result<Option<child::Console<'a>>> {
    match (&l.console, l.spec.tty) {
        (Some(sock), true) => Ok(Some(child::Console {
            socket: sock.as_fd(),
            size: l.console_size,
        })),
        (None, true) => Err(anyhow!(
            "process.terminal needs a --console-socket to send the terminal to"
        )),
        _ => Ok(None),
    }
}

/// The init, cloned into its cgroup and new namespaces (by an intermediate
/// process when a user or mount namespace is joined by path). Returns its
/// pid here; the init runs `child::run`.
fn clone_init(
    setup: &ChildSetup,
    join_in_child: &[&(OwnedFd, NsType)],
    new_namespaces: u64,
    cgroup_fd: Option<std::os::fd::RawFd>,
) -> Result<Pid> {
    if join_in_child.is_empty() {
        return Ok(match clone3(new_namespaces, cgroup_fd)? {
            Cloned::Child => child::run(setup),
            Cloned::Parent { pid, .. } => pid,
        });
    }
    Ok(
        match clone_joining(join_in_child, new_namespaces, cgroup_fd)? {
            None => child::run(setup),
            Some(pid) => pid,
        },
    )
}

/// The maps of a new user namespace, written once from here; those of one
/// joined by path are checked against the config's instead.
fn id_maps(pid: Pid, joins_user: bool, uid_map: &[IdMapping], gid_map: &[IdMapping]) -> Result<()> {
    if joins_user {
        check_map(pid, "uid_map", "uidMappings", uid_map)?;
        check_map(pid, "gid_map", "gidMappings", gid_map)
    } else if !uid_map.is_empty() {
        write_map(pid, "gid_map", gid_map)?;
        write_map(pid, "uid_map", uid_map)
    } else {
        Ok(())
    }
}

/// Whether the init said it is ready, rather than reporting on its error
/// pipe first (a failure it is about to exit with, or a failpoint's request
/// to kill this engine: the init then waits, holding the ready pipe open).
fn init_is_ready(ready_read: OwnedFd, error_read: &OwnedFd) -> bool {
    use rustix::event::{poll, PollFd, PollFlags};
    loop {
        let mut fds = [
            PollFd::new(&ready_read, PollFlags::IN),
            PollFd::new(error_read, PollFlags::IN),
        ];
        match poll(&mut fds, None) {
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return false,
            Ok(_) => {}
        }
        let woke = |fd: &PollFd| !fd.revents().is_empty();
        if woke(&fds[1]) {
            return false;
        }
        if woke(&fds[0]) {
            let mut byte = [0u8; 1];
            return File::from(ready_read).read(&mut byte).unwrap_or(0) == 1;
        }
    }
}

/// The init, cloned by an intermediate process that first joins the
/// mount namespace, then the user namespace given by path (in that order:
/// as host root we may join a mount namespace that any user namespace
/// owns; once in a user namespace, only those it owns), so that the
/// namespaces the init gets anew belong to the joined user namespace, as
/// with runc's nsexec. CLONE_PARENT makes the init our child, not the
/// intermediate's: we reap it, and its death signal follows us. Returns
/// None in the init, its pid here.
fn clone_joining(
    join: &[&(OwnedFd, NsType)],
    new_namespaces: u64,
    cgroup_fd: Option<std::os::fd::RawFd>,
) -> Result<Option<Pid>> {
    let (report_read, report_write) = pipe()?;
    // The intermediate is born in the cgroup (by us, host root), and so the
    // init, its child, too: no clone into a cgroup from inside a user
    // namespace, which the cgroup's owner may not allow.
    let middle = match clone3(0, cgroup_fd)? {
        Cloned::Child => {
            // Before we share a user namespace with its root, who would
            // otherwise have ptrace rights over us and the init (which
            // inherits this until its exec): pidfd_getfd would take the
            // engine's fds (the mount socket, the state directory's fifo).
            let joined = rustix::process::set_dumpable_behavior(
                rustix::process::DumpableBehavior::NotDumpable,
            )
            .map_err(|e| {
                anyhow!(
                    "cannot make the engine non-dumpable: {}",
                    crate::sys::errno_desc(e)
                )
            })
            .and_then(|()| join_in_order(join));
            let cloned =
                joined.and_then(|()| clone3(new_namespaces | libc::CLONE_PARENT as u64, None));
            let report = match cloned {
                Ok(Cloned::Child) => return Ok(None),
                Ok(Cloned::Parent { pid, .. }) => format!("P{pid}"),
                Err(e) => format!("E{e:#}"),
            };
            let _ = File::from(report_write).write_all(report.as_bytes());
            // SAFETY: _exit ends this copy of us at once, as a forked child
            // should (no atexit handlers, no flushing of our stdio buffers).
            unsafe { libc::_exit(0) }
        }
        Cloned::Parent { pid, .. } => pid,
    };
    drop(report_write);
    let mut report = String::new();
    let _ = File::from(report_read).read_to_string(&mut report);
    super::reap(middle);
    match report.split_at_checked(1) {
        Some(("P", pid)) => pid
            .parse()
            .ok()
            .and_then(Pid::from_raw)
            .map(Some)
            .ok_or(())
            .map_err(|_| anyhow!("the intermediate process reported {report:?}, not a pid")),
        Some(("E", msg)) => Err(anyhow!("{msg}")),
        _ => Err(anyhow!(
            "the intermediate process that joins the namespaces given by path died"
        )),
    }
}

/// setns into each namespace, the mount namespace before the user one.
fn join_in_order(join: &[&(OwnedFd, NsType)]) -> Result<()> {
    let mut ordered = join.to_vec();
    ordered.sort_by_key(|(_, kind)| *kind == NsType::User);
    for (fd, kind) in ordered {
        let name = match *kind {
            NsType::User => "user",
            _ => "mount",
        };
        rustix::thread::move_into_link_name_space(fd.as_fd(), Some(*kind)).map_err(|e| {
            anyhow!(
                "cannot join the {name} namespace given by path in linux.namespaces: {}",
                crate::sys::errno_desc(e)
            )
        })?;
    }
    Ok(())
}

/// The name nix's CloneFlags printed for a namespace type, which the
/// message of a failed join has always shown.
fn clone_flag_name(kind: NsType) -> &'static str {
    match kind {
        NsType::Mount => "CloneFlags(CLONE_NEWNS)",
        NsType::User => "CloneFlags(CLONE_NEWUSER)",
        NsType::ProcessID => "CloneFlags(CLONE_NEWPID)",
        NsType::Network => "CloneFlags(CLONE_NEWNET)",
        NsType::InterProcessCommunication => "CloneFlags(CLONE_NEWIPC)",
        NsType::HostNameAndNISDomainName => "CloneFlags(CLONE_NEWUTS)",
        NsType::ControlGroup => "CloneFlags(CLONE_NEWCGROUP)",
        NsType::Time => "CloneFlags(0x80)",
    }
}

/// The maps of the user namespace joined by path; mappings given in
/// config.json must be the same (the runtime-spec), as sets.
fn check_map(pid: Pid, file: &str, field: &str, given: &[IdMapping]) -> Result<()> {
    if given.is_empty() {
        return Ok(());
    }
    let path = format!("/proc/{pid}/{file}");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    let mut actual: Vec<(u32, u32, u32)> = text
        .lines()
        .filter_map(|l| {
            let mut n = l.split_whitespace().map(|n| n.parse::<u32>().ok());
            Some((n.next()??, n.next()??, n.next()??))
        })
        .collect();
    let mut wanted: Vec<(u32, u32, u32)> = given
        .iter()
        .map(|m| (m.container, m.host, m.size))
        .collect();
    actual.sort_unstable();
    wanted.sort_unstable();
    if actual != wanted {
        let show = |m: &[(u32, u32, u32)]| {
            m.iter()
                .map(|(c, h, s)| format!("{c}:{h}:{s}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        bail!(
            "config.json linux.{field} ({}) differ from the maps of the user namespace joined by path ({}): leave them out, or give the same",
            show(&wanted),
            if actual.is_empty() { "none".to_string() } else { show(&actual) }
        );
    }
    Ok(())
}

/// Maps as the config gives them, written once from here.
fn write_map(pid: Pid, file: &str, map: &[IdMapping]) -> Result<()> {
    let text: String = map
        .iter()
        .map(|m| format!("{} {} {}\n", m.container, m.host, m.size))
        .collect();
    let path = format!("/proc/{pid}/{file}");
    std::fs::write(&path, &text).with_context(|| format!("cannot write {path} ({})", text.trim()))
}
