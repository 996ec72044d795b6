//! The child, inside the new namespaces, before exec: wait for the parent's
//! go, become root of the user namespace, build the mount tree (`mounts`,
//! `dev`), pivot_root, set the hostname and network, then exec the command
//! as PID 1 (`exec`). `join` is the child of `engine exec`.
//!
//! Runs in a process cloned from a single-threaded parent, so allocating is
//! fine; every failure is reported to the parent over the error pipe with the
//! exit code it should become (125, 126 or 127).

mod confine;
mod console;
mod copy_up;
mod dev;
mod exec;
mod init;
pub mod join;
mod mnt;
mod mount_plan;
mod mounts;

pub use exec::OciProcess;

use crate::model::exit;
use crate::model::spec::Spec;
use crate::model::userns::UserNs;
use crate::sys::failpoint::child_step;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::PathBuf;

/// Everything the child needs besides the spec; prepared by the parent.
pub struct ChildSetup<'a> {
    pub spec: &'a Spec,
    /// Bytes of the tmpfs that holds the copy-on-write layer. None: write
    /// through to the rootfs.
    pub layer_size: Option<u64>,
    /// The overlay's upper and work directories come on disk (a kept
    /// container's layer, one more mount fd after the layer's directory)
    /// instead of in the layer's tmpfs.
    pub disk_layer: bool,
    /// Our end of the socket the parent sends the mount fds on (rootfs
    /// tree, the layer's directory, the /etc files, one per volume; see `mounts`).
    pub mount_sock: BorrowedFd<'a>,
    /// Read end of the pipe the parent writes one byte to once the id maps
    /// and the veth exist.
    pub sync_fd: BorrowedFd<'a>,
    /// Write end of the close-on-exec pipe that carries a failure to the parent.
    pub error_fd: BorrowedFd<'a>,
    /// The pty slave, and its path on the host, when the container has a tty.
    pub pty_slave: Option<(BorrowedFd<'a>, PathBuf)>,
    /// eth0's address, prefix and gateway.
    pub eth0: Option<(Ipv4Addr, u8, Ipv4Addr)>,
    /// Whether the parent sends the engine's resolv.conf, hosts and hostname
    /// (bridged containers) among the mount fds.
    pub etc_files: bool,
    /// Whether to mount cgroup2 at /sys/fs/cgroup (the host has v2).
    pub cgroup2: bool,
    /// An OCI container: what its bundle asks beyond the spec, and the gate
    /// that `start` opens.
    pub oci: Option<OciChild<'a>>,
}

/// The OCI parts of the child's setup.
pub struct OciChild<'a> {
    pub extras: &'a crate::model::bundle::Extras,
    /// Write end of a pipe: one byte once the container waits for `start`.
    pub ready_fd: BorrowedFd<'a>,
    /// An O_PATH fd of the state directory's exec.fifo: opening it for
    /// writing blocks until `start` opens it for reading.
    pub fifo_fd: BorrowedFd<'a>,
    /// Read end of a pipe: the OCI state JSON (with our host pid) for the
    /// createContainer and startContainer hooks, sent after the go.
    pub state_fd: BorrowedFd<'a>,
    /// O_PATH fds of the createContainer hooks' executables, one per hook.
    pub hook_fds: Vec<BorrowedFd<'a>>,
    /// process.terminal: where the pty master goes.
    pub console: Option<Console<'a>>,
}

/// The caller's console socket (connected) and process.consoleSize.
#[derive(Clone, Copy)]
pub struct Console<'a> {
    pub socket: BorrowedFd<'a>,
    pub size: Option<(u16, u16)>,
}

/// A failure before exec, and the exit code it becomes.
struct Failure {
    code: i32,
    msg: String,
}

type Step<T = ()> = std::result::Result<T, Failure>;

#[cfg(feature = "failpoints")]
impl From<crate::sys::failpoint::Injected> for Failure {
    fn from(injected: crate::sys::failpoint::Injected) -> Failure {
        fail(injected.to_string())
    }
}

fn fail(msg: impl Into<String>) -> Failure {
    Failure {
        code: exit::ENGINE_ERROR,
        msg: msg.into(),
    }
}

/// Adds what failed to an errno.
trait Context<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Step<T>;
}

impl<T> Context<T> for rustix::io::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Step<T> {
        self.map_err(|e| fail(format!("{}: {}", what(), crate::sys::errno_desc(e))))
    }
}

impl<T> Context<T> for std::io::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Step<T> {
        self.map_err(|e| fail(format!("{}: {e}", what())))
    }
}

/// The child's whole life. Never returns: it execs or exits.
pub fn run(setup: &ChildSetup) -> ! {
    // Die with the supervisor: a SIGKILLed engine must not leave a container running.
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
    // Keep only our ends of the engine's fds. A copy of the state lock would
    // hold it after the engine died (every later `engine` would hang), and a
    // copy of the sync pipe's write end would hide the engine's death from
    // wait_for_parent (an engine killed before the prctl above left us
    // waiting forever, with no record naming us).
    let mut keep: Vec<RawFd> = [setup.mount_sock, setup.sync_fd, setup.error_fd]
        .iter()
        .map(AsRawFd::as_raw_fd)
        .collect();
    keep.extend(setup.pty_slave.as_ref().map(|(fd, _)| fd.as_raw_fd()));
    if let Some(oci) = &setup.oci {
        // The gate, and the fds the caller asked to pass (3.., `--preserve-fds`).
        keep.extend([oci.ready_fd, oci.fifo_fd, oci.state_fd].map(|fd| fd.as_raw_fd()));
        keep.extend(oci.hook_fds.iter().map(AsRawFd::as_raw_fd));
        keep.extend(oci.console.map(|c| c.socket.as_raw_fd()));
        keep.extend((0..oci.extras.preserve_fds as RawFd).map(|i| 3 + i));
    }
    #[cfg(feature = "failpoints")]
    keep.extend(crate::sys::failpoint::trace_fd());
    if let Err(e) = crate::sys::openat::close_fds_except(&keep) {
        let failure = fail(format!("cannot close the engine's file descriptors: {e}"));
        report_and_exit(setup.error_fd, failure);
    }
    // The go is the handshake, not a step: the steps begin once the engine
    // reads the error pipe.
    let go = wait_for_parent(setup.sync_fd).map(|()| {
        // An OCI init outlives `create` by design (its caller reaps it); only
        // a `create` killed before its go takes it along.
        if setup.oci.is_some() {
            let _ = rustix::process::set_parent_process_death_signal(None);
        }
    });
    let failure = match go.and_then(|()| prepare_and_exec(setup)) {
        Ok(never) => match never {},
        Err(f) => f,
    };
    report_and_exit(setup.error_fd, failure)
}

/// Ends the child now: no atexit handlers, no flushing of the parent's
/// stdio buffers copied into us.
fn exit_now(code: i32) -> ! {
    // SAFETY: _exit takes an integer and never returns; skipping Rust's
    // exit path is the point (the buffers and handlers are the parent's).
    unsafe { libc::_exit(code) }
}

fn report_and_exit(error_fd: BorrowedFd<'_>, failure: Failure) -> ! {
    let report = format!("{} {}", failure.code, failure.msg);
    let _ = rustix::io::write(error_fd, report.as_bytes());
    exit_now(failure.code)
}

enum Never {}

/// The steps after the go, in order: the mount fds, our identity and
/// namespaces, the OCI state and sysctls, the mount tree and pivot_root,
/// hostname and network, then the exec.
fn prepare_and_exec(setup: &ChildSetup) -> Step<Never> {
    child_step!(setup.error_fd, "child.receive_fds");
    let mount_fds = receive_mount_fds(setup.mount_sock)?;
    become_the_container_s_root(setup)?;
    let hook_state = oci_state_and_sysctls(setup)?;
    let caller_proc = enter_the_container_s_root(setup, mount_fds, &hook_state)?;
    hostname_and_network(setup)?;
    exec_the_process(setup, &hook_state, caller_proc)
}

/// Root of the user namespace (when there is one), our own cgroup
/// namespace, and ping for the container's groups.
fn become_the_container_s_root(setup: &ChildSetup) -> Step {
    let (spec, error_fd) = (setup.spec, setup.error_fd);
    if spec.userns != UserNs::Host {
        child_step!(error_fd, "child.become_root");
        become_root()?; // the parent has written the maps
        if setup.oci.is_none() {
            rearm_pdeathsig(error_fd);
        }
    }
    // Unshared here, not at clone: the namespace's root is the cgroup we were born in.
    if !setup
        .oci
        .as_ref()
        .is_some_and(|o| o.extras.caller_cgroup_ns)
    {
        child_step!(error_fd, "child.cgroupns");
        // SAFETY: a new cgroup namespace leaves the fd table shared.
        unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWCGROUP) }
            .ctx(|| "unshare the cgroup namespace".into())?;
    }
    // Through /proc/sys/net of our own network namespace, while it is
    // writable; never into one joined by path (a pod's, someone else's).
    // (`--network container:` joins one too: its settings are its owner's.)
    let joins_container = matches!(spec.network, crate::model::network::Network::Container(_));
    if !setup.oci.as_ref().is_some_and(|o| o.extras.joined_net) && !joins_container {
        confine::allow_ping(spec.userns);
    }
    Ok(())
}

/// An OCI container's state for its hooks (empty otherwise), and its
/// linux.sysctl written.
fn oci_state_and_sysctls(setup: &ChildSetup) -> Step<String> {
    let Some(oci) = &setup.oci else {
        return Ok(String::new());
    };
    child_step!(setup.error_fd, "child.oci_state");
    let hook_state = read_state(oci.state_fd)?;
    child_step!(setup.error_fd, "child.sysctl");
    write_sysctls(&oci.extras.sysctl)?;
    Ok(hook_state)
}

/// The mount tree of the plan, the createContainer hooks, pivot_root,
/// then the root's propagation and read-only flag. Without a mount
/// namespace of its own (an OCI config without one), nothing is mounted
/// and the root is changed by chroot; the caller's /proc, opened before,
/// is returned for the exec fifo (`exec::OciProcess::caller_proc`): never
/// dropped, the gate closes it.
fn enter_the_container_s_root(
    setup: &ChildSetup,
    mount_fds: Vec<OwnedFd>,
    hook_state: &str,
) -> Step<Option<std::mem::ManuallyDrop<OwnedFd>>> {
    let error_fd = setup.error_fd;
    let in_caller_mount_ns = setup.oci.as_ref().is_some_and(|o| o.extras.caller_mount_ns);
    child_step!(error_fd, "child.mounts");
    let run = mount_plan::RunMounts {
        tmpfs: &setup.spec.tmpfs,
        readonly_root: setup.spec.readonly_root,
    };
    let plan = mount_plan::plan(
        &setup.spec.volumes,
        run,
        setup.oci.as_ref().map(|o| o.extras),
        setup.etc_files,
        setup.cgroup2,
    );
    let root = if in_caller_mount_ns {
        drop(mount_fds);
        mounts::open_rootfs_in_place(&setup.spec.rootfs)?
    } else {
        mounts::build_root(setup, &plan, mount_fds)?
    };
    if let Some(oci) = &setup.oci {
        child_step!(error_fd, "child.create_container_hooks");
        create_container_hooks(oci, &root, hook_state)?;
    }
    child_step!(error_fd, "child.pivot_root");
    // Opened before the chroot, closed by the gate (`exec::OciProcess`).
    let mut caller_proc = None;
    if in_caller_mount_ns {
        caller_proc = Some(std::mem::ManuallyDrop::new(mounts::open_caller_proc()?));
        mounts::chroot_into(&root)?;
    } else {
        mounts::enter_root(&root)?;
    }
    if plan.root_propagation != 0 {
        child_step!(error_fd, "child.root_propagation");
        mounts::propagate_root(plan.root_propagation)?;
    }
    // Closed now: exec::finish_and_exec closes every fd but the error pipe,
    // and an OwnedFd still alive then would be closed twice on a failure.
    drop(root);
    if plan.readonly_root {
        child_step!(error_fd, "child.readonly_root");
        mounts::make_root_read_only()?;
    }
    Ok(caller_proc)
}

/// The hostname, loopback and eth0, except in namespaces joined by path.
fn hostname_and_network(setup: &ChildSetup) -> Step {
    let (spec, error_fd) = (setup.spec, setup.error_fd);
    let extras = setup.oci.as_ref().map(|o| o.extras);
    // An OCI bundle may give no hostname, or join a UTS namespace by path.
    if !spec.hostname.is_empty() && !extras.is_some_and(|e| e.joined_uts) {
        child_step!(error_fd, "child.hostname");
        rustix::system::sethostname(spec.hostname.as_bytes())
            .ctx(|| format!("sethostname {}", spec.hostname))?;
    }
    let joined_net = matches!(spec.network, crate::model::network::Network::Container(_));
    if !extras.is_some_and(|e| e.joined_net) && !joined_net {
        child_step!(error_fd, "child.loopback");
        crate::sys::net::loopback_up().map_err(|e| fail(format!("{e:#}")))?;
    }
    if let Some((ip, prefix, gateway)) = setup.eth0 {
        child_step!(error_fd, "child.eth0");
        crate::sys::net::configure_eth0(ip, prefix, gateway).map_err(|e| fail(format!("{e:#}")))?;
    }
    Ok(())
}

/// The process's environment, terminal and OCI parts, then
/// `exec::finish_and_exec`.
fn exec_the_process(
    setup: &ChildSetup,
    hook_state: &str,
    caller_proc: Option<std::mem::ManuallyDrop<OwnedFd>>,
) -> Step<Never> {
    let spec = setup.spec;
    // An OCI process gets exactly the environment its config lists.
    let env = match setup.oci {
        Some(_) => exec::exact_environment(&spec.env),
        None => exec::environment(&spec.hostname, spec.tty, &spec.env),
    };
    let mut console = None;
    if let Some(c) = setup.oci.as_ref().and_then(|o| o.console) {
        child_step!(setup.error_fd, "child.console");
        // finish_and_exec makes it fds 0-2 and closes it with every other
        // fd: never dropped here, or a failure after would close it twice.
        console = Some(std::mem::ManuallyDrop::new(console::open(c)?));
    }
    let slave = match &console {
        Some(console) => Some(console.as_fd()),
        None => setup.pty_slave.as_ref().map(|(fd, _)| *fd),
    };
    // `--user` (or an image's User) of `engine run`: the OCI path's
    // setgroups/setresgid/setresuid, with none of its other parts.
    let run_as = match (&setup.oci, &spec.user) {
        (None, Some(user)) => Some(exec::OciProcess {
            caller_proc: None,
            user,
            rlimits: &[],
            gate: None,
            preserve_fds: 0,
            start_hooks: None,
        }),
        _ => None,
    };
    let process = setup.oci.as_ref().map(|o| exec::OciProcess {
        caller_proc: caller_proc.as_ref().map(|fd| fd.as_fd()),
        user: &o.extras.user,
        rlimits: &o.extras.rlimits,
        gate: Some((o.ready_fd, o.fifo_fd)),
        preserve_fds: o.extras.preserve_fds,
        start_hooks: Some((
            &o.extras.start_container,
            with_status(hook_state, "created"),
        )),
    });
    if spec.detach {
        // A detached container outlives its supervisor: should that die
        // now, the monitor (or, before the hand-over, the next engine's
        // recovery) takes care of it.
        let _ = rustix::process::set_parent_process_death_signal(None);
    }
    exec::finish_and_exec(
        slave,
        &spec.workdir,
        &spec.command,
        &env,
        &spec.confinement,
        setup.error_fd,
        process.as_ref().or(run_as.as_ref()),
        spec.init,
    )
}

/// The OCI state the engine sends after its go, read to its end (the
/// pipe's read end stays open, close-on-exec, until finish_and_exec closes
/// every fd).
fn read_state(fd: BorrowedFd<'_>) -> Step<String> {
    let mut state = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match rustix::io::read(fd, &mut buf) {
            Ok(0) => break,
            Ok(n) => state.extend_from_slice(&buf[..n]),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e).ctx(|| "read the container's state from the engine".into()),
        }
    }
    String::from_utf8(state).map_err(|_| fail("the container's state from the engine is not UTF-8"))
}

/// The state JSON with another `status`.
fn with_status(state: &str, status: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(state) {
        Ok(mut v) => {
            v["status"] = status.into();
            v.to_string()
        }
        Err(_) => state.to_string(),
    }
}

/// hooks.createContainer, as runc runs them: in the container's
/// namespaces with the engine's privileges there, the mounts made but
/// before pivot_root, in the container's root as working directory. Each
/// runs from the fd `create` opened in the runtime's mount namespace (the
/// runtime-spec's "path resolves in the runtime namespace"), not from its
/// path here: in this copy of the host's tree the rootfs is mounted over
/// the scratch directory (/tmp), and a path through it would run a file of
/// the container's with the engine's privileges.
fn create_container_hooks(oci: &OciChild, root: &OwnedFd, state: &str) -> Step {
    let hooks = &oci.extras.create_container;
    if hooks.is_empty() {
        return Ok(());
    }
    if hooks.len() != oci.hook_fds.len() {
        return Err(fail(format!(
            "the engine sent {} hook fds, not {}",
            oci.hook_fds.len(),
            hooks.len()
        )));
    }
    rustix::process::fchdir(root).ctx(|| "chdir into the container's root".into())?;
    for (hook, exe) in hooks.iter().zip(&oci.hook_fds) {
        crate::sys::hook::run_from(hook.into(), Some(*exe), state)
            .map_err(|e| fail(format!("hooks.createContainer: {e}")))?;
    }
    Ok(())
}

/// linux.sysctl, through /proc/sys while it still shows our own network
/// and IPC namespaces (the front end accepted only namespaced keys).
fn write_sysctls(sysctls: &[(String, String)]) -> Step {
    for (key, value) in sysctls {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        std::fs::write(&path, value).ctx(|| format!("set sysctl {key}={value}"))?;
    }
    Ok(())
}

/// The fds the parent sent before its go (they are queued on the socket).
/// Our end of the socket stays open, close-on-exec, until finish_and_exec
/// closes every fd.
fn receive_mount_fds(sock: BorrowedFd<'_>) -> Step<Vec<OwnedFd>> {
    crate::sys::idmap::recv_fds(sock)
        .map_err(|e| fail(format!("cannot receive the mount fds from the engine: {e}")))
}

/// In a user namespace whose maps are written: act as its root, so files we
/// create belong to the mapped root and not to the unmapped host root.
/// Root of the user namespace, still dying with the engine.
fn become_root() -> Step {
    use rustix::thread::{Gid, Uid};
    // Per thread (rustix), where glibc's would set every thread: the child
    // after clone and the joining process are single-threaded.
    rustix::thread::set_thread_res_gid(Gid::ROOT, Gid::ROOT, Gid::ROOT)
        .ctx(|| "setresgid(0) in the user namespace".into())?;
    rustix::thread::set_thread_res_uid(Uid::ROOT, Uid::ROOT, Uid::ROOT)
        .ctx(|| "setresuid(0) in the user namespace".into())?;
    rustix::thread::set_thread_groups(&[]).ctx(|| "setgroups in the user namespace".into())
}

/// A change of uid clears the parent-death signal: set it again, so that a
/// SIGKILLed engine still takes its container with it. If the engine died
/// in between, nobody reads the error pipe any more (POLLERR): go.
pub(crate) fn rearm_pdeathsig(error_fd: BorrowedFd<'_>) {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
    let mut polled = [PollFd::new(&error_fd, PollFlags::OUT)];
    let now = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    let _ = poll(&mut polled, Some(&now));
    let gone = polled[0].revents().contains(PollFlags::ERR);
    if gone {
        exit_now(exit::ENGINE_ERROR);
    }
}

/// The go. Our read end of the sync pipe stays open, close-on-exec, until
/// finish_and_exec closes every fd; only its write end matters (close_fds_except
/// dropped our copy of it).
fn wait_for_parent(fd: BorrowedFd<'_>) -> Step {
    let mut byte = [0u8; 1];
    loop {
        match rustix::io::read(fd, &mut byte) {
            Ok(1) => break,
            // The parent died or gave up: leave quietly, it cleans up.
            Ok(_) => exit_now(exit::ENGINE_ERROR),
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => return Err(fail("cannot read from the engine's sync pipe")),
        }
    }
    Ok(())
}
