//! `engine run`: reserve the name and address, make the cgroup, layer and
//! veth, clone the child straight into its namespaces and cgroup, write its
//! id maps, let it go, supervise it, and undo everything (also on failure).

use super::clone::{clone_container, write_id_maps, Cloned};
use super::record::Record;
use super::supervise::{block_forwarded, supervise};
use super::{child_failure, pipe, recovery, Error};
use crate::child::{self, ChildSetup};
use crate::model::bundle::BindOptions;
use crate::model::config::Config;
use crate::model::network::Network;
use crate::model::spec::Spec;
use crate::model::userns::{UserNs, USERNS_SIZE};
use crate::sys::cgroup::{self, Cgroup};
use crate::sys::failpoint::step;
use crate::sys::idlease::{Held, Lease, Leases, Proc};
use crate::sys::idmap::{self, Propagation};
use crate::sys::idrange::IdPool;
use crate::sys::lock::Lock;
use crate::sys::net::{dns, nat};
use crate::sys::state::{self, StateDir};
use anyhow::{anyhow, bail, Context, Result};
use rustix::process::{Pid, Signal};
use std::fs::File;
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;

macro_rules! verbose {
    ($spec:expr, $($arg:tt)*) => {
        if $spec.verbose {
            eprintln!("engine: {}", format_args!($($arg)*));
        }
    };
}

/// What this run created on the host; dropping it removes all of it.
struct Resources {
    state: StateDir,
    name: String,
    record_written: bool,
    cgroup: Option<Cgroup>,
    child: Option<Pid>,
    /// A detached container's log, until its command has started (after
    /// that the log outlives the container, to be read).
    log: Option<PathBuf>,
    /// The directory of its resolv.conf, hosts and hostname.
    etc: Option<PathBuf>,
    /// A kept container's writable layer, made by this run: removed if the
    /// run fails, or if its record is not kept.
    layer: Option<PathBuf>,
    /// Whether its published ports may have rules (removal is idempotent).
    ports: bool,
    /// The host-wide lease of its host IDs.
    lease: Option<Held>,
    /// A started detached container that is kept: its record, and (once
    /// supervised to its end) its exit status. Without the status (the
    /// supervisor failed) the record goes as a foreground one's.
    keep: Option<(Record, Option<i32>)>,
    /// `engine start`: the exited record this run replaced, put back if
    /// it fails before its command has started.
    replaced: Option<Record>,
}

impl Drop for Resources {
    fn drop(&mut self) {
        if let Some(cg) = self.cgroup.take() {
            let _ = cgroup::kill_and_remove(&cg.path);
        }
        if let Some(pid) = self.child.take() {
            let _ = rustix::process::kill_process(pid, Signal::KILL);
            super::reap(pid);
        }
        // The veth is not deleted here: it dies with the container's network
        // namespace, which the kernel tears down in the background. Deleting
        // it ourselves would make every start wait ~25 ms for the kernel.
        if let Some(log) = self.log.take() {
            let _ = std::fs::remove_file(log);
        }
        if self.ports {
            if let Err(e) = nat::remove_ports(&self.name) {
                eprintln!("engine: {e:#}");
            }
        }
        let bridged = self.etc.is_some();
        if let Some(etc) = self.etc.take() {
            dns::remove_files(&etc);
        }
        // After the child is reaped (and with it every process of its pid
        // namespace), before the record: `stop` returns once the record
        // is gone, and the IDs must be free by then.
        drop(self.lease.take());
        if let Some(layer) = self.layer.take() {
            let _ = std::fs::remove_dir_all(layer);
        }
        if !self.record_written {
            return;
        }
        // Its line leaves its peers' /etc/hosts before `stop` can see it
        // ended, and no start can put it back (same hold of the lock).
        let lock = bridged.then(|| self.state.lock().ok()).flatten();
        if lock.is_some() {
            super::hosts::refresh_peers(&self.state, Some(&self.name));
        }
        // The exited record replaces the running one (by rename): `stop`
        // and `wait` see it finished once everything above is released.
        let kept = match self.keep.take() {
            Some((rec, Some(code))) => {
                let rec = rec.into_exited(code, state::now_secs());
                self.state.write(&self.name, &rec).is_ok()
            }
            _ => false,
        };
        if !kept {
            match self.replaced.take() {
                Some(old) if self.state.write(&self.name, &old).is_ok() => {}
                _ => self.state.remove(&self.name),
            }
        }
        if !kept && !self.state.has_record(&self.name) {
            let _ = std::fs::remove_dir_all(self.state.layer_of(&self.name));
        }
    }
}

/// Runs a container to its end; returns the exit code for the engine.
pub fn run(spec: &Spec, cfg: &Config) -> Result<i32, Error> {
    run_with(spec, cfg, None, |_| {})
}

/// A detached run's monitor (parent/monitor.rs): its pid, and the write end
/// of the pipe it reads into the container's log.
pub(super) struct Monitor {
    pub pid: i32,
    pub log: OwnedFd,
}

/// As `run`; `started` is called once PID 1 has exec'd (used by detached
/// runs, which have a monitor).
pub(super) fn run_with(
    spec: &Spec,
    cfg: &Config,
    monitor: Option<Monitor>,
    started: impl FnOnce(&Record),
) -> Result<i32, Error> {
    let cgroup_ok = cgroup_available(spec, cfg);
    let state = StateDir::new(&cfg.state_dir, &cfg.data_dir);
    let mut res = Resources::new(state, spec.name.clone());
    let (monitor_pid, log_pipe) = match monitor {
        Some(m) => (Some(m.pid), Some(m.log)),
        None => (None, None),
    };
    // The lock is held until the record (with PID 1's pid) is written: one
    // write per container, and no reader ever sees a half-made entry.
    let (mut record, lock) = take_name_log_and_cgroup(spec, cfg, cgroup_ok, log_pipe, &mut res)?;
    let layer_size = (!spec.write_through).then_some(spec.layer_size);
    let Prepared {
        scratch_dir,
        disk_layer,
        eth0,
        etc_files,
        pty,
    } = prepare_files(spec, &record, &mut res)?;
    let Channels {
        sync_read,
        sync_write,
        mount_sock,
        child_mount_sock,
        error_read,
        error_write,
    } = open_channels()?;

    // Block what we forward before cloning, so no signal is lost in between;
    // the child unblocks them before exec.
    step!("run.block_signals");
    let (forwarded, _restore_mask) = block_forwarded()?;

    let setup = ChildSetup {
        spec,
        layer_size,
        disk_layer: disk_layer.is_some(),
        mount_sock: child_mount_sock.as_fd(),
        sync_fd: sync_read.as_fd(),
        error_fd: error_write.as_fd(),
        pty_slave: pty
            .as_ref()
            .map(|p| (p.slave.as_fd(), p.slave_path.clone())),
        eth0,
        etc_files: !etc_files.is_empty(),
        cgroup2: cgroup_ok,
        oci: None,
    };
    let (pid, pidfd) = clone_child(spec, &setup, &res)?;
    res.child = Some(pid);
    record.pid = pid.as_raw_pid();
    write_record(&record, &mut res)?;
    if record.ip.is_some() {
        // Its peers' lines in its /etc/hosts (before its command runs), its
        // line in theirs.
        super::hosts::refresh_peers(&res.state, None);
    }
    drop(lock);
    drop(setup);
    drop(sync_read);
    drop(child_mount_sock);
    drop(error_write);
    let master = pty.map(|p| p.master);
    verbose!(
        spec,
        "created the namespaces of {}: its PID 1 is host PID {pid}",
        spec.name
    );

    let wiring = Wiring {
        pid,
        scratch_dir: &scratch_dir,
        disk_layer: disk_layer.as_deref(),
        etc_files: &etc_files,
        mount_sock,
    };
    wire_up(spec, &record, wiring, &mut res)?;
    start(pid, sync_write, error_read, &mut res)?;
    verbose!(spec, "started {} in {}", spec.command[0], spec.name);
    step!("run.started");
    res.log = None;
    res.layer = None;
    res.replaced = None;
    if let Some(monitor) = monitor_pid {
        hand_over_to_monitor(&mut record, monitor, &mut res)?;
    }
    if spec.detach && !spec.rm {
        res.keep = Some((record.clone(), None));
    }
    started(&record);

    let status = supervise_child(spec, pid, &pidfd, master, forwarded, &mut res)?;
    step!("run.teardown");
    if let Some((_, code)) = res.keep.as_mut() {
        *code = Some(status);
    }
    drop(res);
    Ok(status)
}

/// Whether the container gets a cgroup (cgroup v2 with its controllers).
/// Without one a container that asked for no limit runs quietly (a limit
/// asked for is refused before this): only `--verbose` says so, so that
/// nothing of the engine's mixes with the container's stderr.
fn cgroup_available(spec: &Spec, cfg: &Config) -> bool {
    let cgroup_ok = cgroup::check_available(&cfg.cgroup_root).is_ok();
    if !cgroup_ok && !spec.limits.any() {
        verbose!(
            spec,
            "this host has no cgroup v2 cpu/memory controllers, so {} runs without resource control",
            spec.name
        );
    }
    cgroup_ok
}

impl Resources {
    /// Nothing created yet.
    fn new(state: StateDir, name: String) -> Resources {
        Resources {
            state,
            name,
            record_written: false,
            cgroup: None,
            child: None,
            log: None,
            etc: None,
            layer: None,
            ports: false,
            lease: None,
            keep: None,
            replaced: None,
        }
    }
}

/// What the child is told about, made before it is cloned.
struct Prepared {
    /// Where the layer's tmpfs (or the write-through root) is attached.
    scratch_dir: PathBuf,
    /// A kept container's upper and work directories (NAME.layer).
    disk_layer: Option<PathBuf>,
    /// A bridged container's address, prefix and gateway.
    eth0: Option<(Ipv4Addr, u8, Ipv4Addr)>,
    /// Its resolv.conf, hosts and hostname.
    etc_files: Vec<PathBuf>,
    pty: Option<super::tty::Pty>,
}

/// The layer's place, a bridged container's /etc files, the pty.
fn prepare_files(spec: &Spec, record: &Record, res: &mut Resources) -> Result<Prepared, Error> {
    // The layer's tmpfs (or the write-through root) is attached on the state
    // directory in the container's mount namespace; the parent opens it there.
    step!("run.layer");
    let scratch_dir = std::path::absolute(&res.state.dir)
        .with_context(|| format!("cannot resolve {}", res.state.dir.display()))?;
    // Kept containers only: a foreground or --rm run keeps the tmpfs (and
    // its start costs nothing more).
    let disk_layer = if spec.detach && !spec.rm && !spec.write_through {
        step!("run.disk_layer");
        Some(make_disk_layer(spec, res)?)
    } else {
        None
    };

    let eth0 = match (&spec.network, record.ip) {
        (Network::Bridge { net, .. }, Some(ip)) => Some((ip, net.prefix, net.gateway)),
        _ => None,
    };
    // Sent to the child as detached trees with the other mounts.
    let etc_files = match eth0 {
        Some((ip, ..)) => write_etc_files(spec, ip, res)?,
        None => Vec::new(),
    };
    let pty = if spec.tty {
        step!("run.pty");
        Some(super::tty::open_pty()?)
    } else {
        None
    };
    Ok(Prepared {
        scratch_dir,
        disk_layer,
        eth0,
        etc_files,
        pty,
    })
}

/// A kept container's NAME.layer with its upper and work directories,
/// owned by the container's root (the overlay writes as it); `engine start`
/// finds the one its first run made. Made under the state lock with the
/// record, so recovery never sees one without the other.
fn make_disk_layer(spec: &Spec, res: &mut Resources) -> Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    res.state.ensure_data()?;
    let layer = std::path::absolute(res.state.layer_of(&spec.name))
        .with_context(|| format!("cannot resolve {}", res.state.data.display()))?;
    // A range from the pool moves from run to run: the layer is kept as
    // the container sees it (its root as 0) and reaches the container
    // through an idmapped mount, as a root-owned rootfs does. A fixed
    // --userns BASE (a shifted rootfs) owns it as it owns the rootfs.
    let (uid, gid) = match spec.userns {
        UserNs::Map { uid, gid } => (uid, gid),
        _ => (0, 0),
    };
    if !layer.exists() {
        res.layer = Some(layer.clone());
    }
    for (dir, mode) in [("", 0o700), ("upper", 0o755), ("work", 0o700)] {
        let path = layer.join(dir);
        match std::fs::DirBuilder::new().mode(mode).create(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                return Err(e).with_context(|| format!("cannot create {}", path.display()))
            }
            _ => {}
        }
        // Once, when made: the files keep their owners.
        if res.layer.is_some() {
            rustix::fs::chown(
                &path,
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(gid)),
            )
            .map_err(std::io::Error::from)
            .with_context(|| format!("cannot give {} to the container's root", path.display()))?;
        }
    }
    Ok(layer)
}

/// Clones the child straight into its cgroup (opened here) and its
/// namespaces; the child runs `setup` and never returns here.
fn clone_child(spec: &Spec, setup: &ChildSetup, res: &Resources) -> Result<(Pid, OwnedFd), Error> {
    step!("run.cgroup_fd");
    let cgroup_dir = match &res.cgroup {
        Some(cg) => Some(
            File::open(&cg.path)
                .with_context(|| format!("cannot open cgroup {}", cg.path.display()))?,
        ),
        None => None,
    };
    step!("run.clone");
    let (pid, pidfd) = clone_in_its_network(spec, setup, res, cgroup_dir.as_ref())?;
    Ok((pid, pidfd))
}

/// clone_container; with `--network container:NAME` the child is born in
/// that container's network namespace (joined by us for the clone, then
/// left, whether the clone worked or not).
fn clone_in_its_network(
    spec: &Spec,
    setup: &ChildSetup,
    res: &Resources,
    cgroup_dir: Option<&File>,
) -> Result<(Pid, OwnedFd)> {
    let ours = match &spec.network {
        Network::Container(target) => Some(enter_network_of(res, target)?),
        _ => None,
    };
    let cloned = clone_container(
        spec.userns,
        ours.is_none(),
        cgroup_dir.map(|f| f.as_raw_fd()),
    );
    // The child never returns from child::run; only we go back.
    if let Ok(Cloned::Child) = cloned {
        child::run(setup);
    }
    if let Some(ours) = ours {
        rustix::thread::move_into_link_name_space(
            ours.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .map_err(std::io::Error::from)
        .context("cannot return to the engine's network namespace")?;
    }
    match cloned? {
        Cloned::Child => child::run(setup),
        Cloned::Parent { pid, pidfd } => Ok((pid, pidfd)),
    }
}

/// Joins the network namespace of the running container `target` (through
/// a pidfd of its PID 1, whose record was read under the state lock that
/// `reserve` found it running under); returns our own, to go back to.
fn enter_network_of(res: &Resources, target: &str) -> Result<OwnedFd> {
    let ours = File::open("/proc/thread-self/ns/net")
        .context("cannot open the engine's network namespace")?;
    let rec: Option<Record> = res.state.read(target);
    let pid = rec
        .filter(|r| r.pid > 0 && !r.exited())
        .map(|r| r.pid)
        .ok_or_else(|| {
            anyhow!("container {target} is not running: start it, or choose another --network")
        })?;
    let pidfd = rustix::process::pidfd_open(
        Pid::from_raw(pid).ok_or_else(|| anyhow!("container {target} has no PID 1"))?,
        rustix::process::PidfdFlags::empty(),
    )
    .map_err(std::io::Error::from)
    .with_context(|| format!("container {target} is not running (its PID 1 is gone)"))?;
    rustix::thread::move_into_thread_name_spaces(
        pidfd.as_fd(),
        rustix::thread::ThreadNameSpaceType::NETWORK,
    )
    .map_err(std::io::Error::from)
    .with_context(|| format!("cannot join the network namespace of container {target}"))?;
    Ok(OwnedFd::from(ours))
}

/// Once PID 1 exists: it holds the IDs' lease too, and its record (with
/// its pid) is written, the one write per container.
fn write_record(record: &Record, res: &mut Resources) -> Result<(), Error> {
    if let Some(lease) = res.lease.as_mut() {
        // The init holds the IDs too: should this engine die, they stay
        // taken for as long as the container runs.
        step!("run.id_lease");
        lease.set_holders(Proc::of(record.engine_pid), Proc::of(record.pid))?;
    }
    step!("run.record");
    res.state.write(&record.name, record)?;
    res.record_written = true;
    Ok(())
}

/// A started detached container is its monitor's: the record and the ID
/// lease name the monitor, so that the container lives on should this
/// supervisor be killed (the monitor then reaps it and does the teardown).
/// The lease first: a record naming the monitor with a lease naming a dead
/// supervisor would have the lease's recovery kill the container.
fn hand_over_to_monitor(
    record: &mut Record,
    monitor: i32,
    res: &mut Resources,
) -> Result<(), Error> {
    record.engine_pid = monitor;
    record.engine_start = state::process_start_time(monitor).unwrap_or(0);
    record.started = Some(state::now_secs());
    if let Some(lease) = res.lease.as_mut() {
        step!("run.monitor_lease");
        lease.set_holders(Proc::of(monitor), Proc::of(record.pid))?;
    }
    step!("run.monitor_record");
    res.state.write(&record.name, record)?;
    Ok(())
}

/// Supervises PID 1 to its end (reaped), then reports OOM kills.
fn supervise_child(
    spec: &Spec,
    pid: Pid,
    pidfd: &OwnedFd,
    master: Option<OwnedFd>,
    forwarded: super::supervise::SigSet,
    res: &mut Resources,
) -> Result<i32, Error> {
    step!("run.supervise");
    let status = supervise(pid, pidfd, master, forwarded)?;
    res.child = None;
    if let Some(cg) = &res.cgroup {
        report_oom(spec, cg);
    }
    Ok(status)
}

/// Takes the name (and address, and host IDs) under the state lock, then
/// a detached container's log and the cgroup. Returns the record to write
/// and the lock, held until it is written.
fn take_name_log_and_cgroup(
    spec: &Spec,
    cfg: &Config,
    cgroup_ok: bool,
    log_pipe: Option<OwnedFd>,
    res: &mut Resources,
) -> Result<(Record, Lock)> {
    step!("run.reserve");
    let (mut record, lock, lease) = reserve(spec, cfg, cgroup_ok, &res.state)?;
    res.lease = lease;
    if spec.restart {
        // Put back as exited, not restarting: this restart failed.
        res.replaced = res
            .state
            .read::<Record>(&spec.name)
            .filter(|r| r.exited())
            .map(|r| Record {
                restarting: false,
                ..r
            });
    }
    match record.ip {
        Some(ip) => verbose!(spec, "reserved the name {} and the address {ip}", spec.name),
        None => verbose!(
            spec,
            "reserved the name {} (no address: not on the bridge)",
            spec.name
        ),
    }
    if let (true, Some(log_pipe)) = (spec.detach, log_pipe) {
        // Only now is the name ours: a clash must not truncate another's log.
        step!("run.log");
        let kept = !spec.rm;
        let log = res.state.log_of(&spec.name, kept);
        if kept {
            res.state.ensure_data()?;
        }
        if kept && !spec.restart {
            // The name is used again: a `-d --rm` namesake's log goes, as it
            // would be overwritten in the state directory.
            let _ = std::fs::remove_file(res.state.log_of(&spec.name, false));
        }
        // A restarted container's log goes on (and stays if it fails).
        if !spec.restart {
            res.log = Some(log.clone());
        }
        super::log::redirect_output(&log, spec.restart, log_pipe)?;
        record.log = Some(log);
    }
    if cgroup_ok {
        step!("run.cgroup");
        res.cgroup = Some(cgroup::create(
            &cfg.cgroup_root,
            &spec.name,
            &(&spec.limits).into(),
        )?);
    }
    Ok((record, lock))
}

/// A bridged container's resolv.conf, hosts and hostname, in the state
/// directory; returns their paths.
fn write_etc_files(spec: &Spec, ip: Ipv4Addr, res: &mut Resources) -> Result<Vec<PathBuf>> {
    step!("run.etc_files");
    let dir = res.state.etc_of(&spec.name);
    res.etc = Some(dir.clone());
    let files = dns::write_files(&dir, &spec.hostname, &spec.name, Some(ip), asked(&spec.dns))?;
    Ok(files.to_vec())
}

/// The pipes and the socket between the engine and the container's init.
struct Channels {
    /// The go (`G`) once the parent has set everything up.
    sync_read: OwnedFd,
    sync_write: OwnedFd,
    /// The mount fds, sent by the parent.
    mount_sock: OwnedFd,
    child_mount_sock: OwnedFd,
    /// The child's failure, if any, before exec.
    error_read: OwnedFd,
    error_write: OwnedFd,
}

fn open_channels() -> Result<Channels> {
    step!("run.sync_pipe");
    let (sync_read, sync_write) = pipe()?;
    step!("run.mount_socket");
    let (mount_sock, child_mount_sock) =
        idmap::fd_socketpair().context("cannot create a socket pair for the mount fds")?;
    step!("run.error_pipe");
    let (error_read, error_write) = pipe()?;
    Ok(Channels {
        sync_read,
        sync_write,
        mount_sock,
        child_mount_sock,
        error_read,
        error_write,
    })
}

/// What `wire_up` needs of the clone.
struct Wiring<'a> {
    pid: Pid,
    scratch_dir: &'a std::path::Path,
    disk_layer: Option<&'a std::path::Path>,
    etc_files: &'a [PathBuf],
    /// Closed once the mount fds are sent.
    mount_sock: OwnedFd,
}

/// Around the cloned child, before it may go: ID maps, mount fds, veth,
/// published ports.
fn wire_up(spec: &Spec, record: &Record, w: Wiring, res: &mut Resources) -> Result<()> {
    let pid = w.pid;
    step!("run.id_maps");
    match (spec.userns, record.userns_base) {
        (UserNs::Map { uid, gid }, _) => write_id_maps(pid, uid, gid)?,
        (UserNs::Pool, Some(base)) => write_id_maps(pid, base, base)?,
        _ => {}
    }
    step!("run.mount_fds");
    let root = container_root(spec, record.userns_base);
    let dirs = (w.scratch_dir, w.disk_layer);
    send_mount_fds(spec, pid, dirs, w.etc_files, &[], Some(root), &w.mount_sock)?;
    drop(w.mount_sock);
    if let (Network::Bridge { net, .. }, Some(veth), Some(ip)) =
        (&spec.network, &record.veth, record.ip)
    {
        step!("run.veth");
        crate::sys::net::create_veth(net.into(), veth, pid.as_raw_pid(), ip)?;
    }
    if let (false, Some(ip)) = (spec.ports.is_empty(), record.ip) {
        res.ports = true;
        step!("run.ports");
        nat::add_ports(&spec.name, ip, &super::nat::forwards(&spec.ports))?;
        verbose!(spec, "published port(s) {}", show_ports(&spec.ports));
    }
    Ok(())
}

/// Container root's host uid and gid.
fn container_root(spec: &Spec, pool_base: Option<u32>) -> (u32, u32) {
    match (spec.userns, pool_base) {
        (UserNs::Map { uid, gid }, _) => (uid, gid),
        (UserNs::Pool, Some(base)) => (base, base),
        _ => (0, 0),
    }
}

/// Lets the child go; its failure before exec, if any, is ours.
fn start(
    pid: Pid,
    sync_write: OwnedFd,
    error_read: OwnedFd,
    res: &mut Resources,
) -> Result<(), Error> {
    step!("run.go");
    File::from(sync_write)
        .write_all(b"G")
        .context("cannot signal the container to start")?;
    if let Some(failure) = child_failure(error_read) {
        super::reap(pid);
        res.child = None;
        return Err(failure);
    }
    Ok(())
}

/// Opens, as host root, what the container mounts: the rootfs as a detached
/// tree (idmapped onto the container's user namespace for a pool range), the
/// directory the layer goes on (through /proc/PID/root, so the fd is of the
/// child's mount namespace), a kept container's NAME.layer as a detached
/// tree (the upper and work directories on disk, idmapped onto the
/// container's user namespace for a pool range), the engine's /etc files
/// (`etc`), and each
/// volume's source (read-only ones recursively so, and with the MOUNT_ATTR_*
/// bits and propagation of `volume_opts`, one entry per volume or none).
/// Every tree is private or a slave before it leaves. The child attaches
/// them without walking a host path. `root`, container root's host uid and
/// gid, is given by `engine run`, whose `-v` volumes are idmapped onto it
/// or chowned to it (`:U`); an OCI bundle's binds are left as they are.
pub(super) fn send_mount_fds(
    spec: &Spec,
    pid: Pid,
    (scratch_dir, disk_layer): (&std::path::Path, Option<&std::path::Path>),
    etc: &[PathBuf],
    volume_opts: &[BindOptions],
    root: Option<(u32, u32)>,
    sock: &std::os::fd::OwnedFd,
) -> Result<()> {
    step!("run.rootfs_tree");
    let mut fds = rootfs_trees(spec, pid)?;
    step!("run.layer_dir");
    fds.push(layer_dir(pid, scratch_dir)?);
    if let Some(layer) = disk_layer {
        // A detached tree the child attaches in its mount namespace
        // (overlayfs clones its upper's mount, which must be one of the
        // mounter's namespace), idmapped for a range from the pool.
        step!("run.disk_layer_tree");
        fds.push(if spec.userns == UserNs::Pool {
            let userns = idmap::open_userns(pid.as_raw_pid())?;
            idmap::idmapped_tree(layer, userns.as_fd(), libc::MOUNT_ATTR_NODEV)?
        } else {
            idmap::detached_tree(layer, false, Propagation::Private, libc::MOUNT_ATTR_NODEV)?
        });
    }
    step!("run.etc_trees");
    for path in etc {
        fds.push(idmap::detached_tree(path, false, Propagation::Private, 0)?);
    }
    step!("run.volume_trees");
    for (i, v) in spec.volumes.iter().enumerate() {
        let bind = volume_opts.get(i).copied().unwrap_or_default();
        if let Some(root) = root {
            super::volume_ids::chown_volume(v, root)?;
        }
        let tree = volume_tree(v, bind)?;
        if let Some(root) = root {
            super::volume_ids::idmap_volume(v, &tree, root, spec.verbose)?;
        }
        fds.push(tree);
    }
    let borrowed: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
    step!("run.send_fds");
    idmap::send_fds(sock.as_fd(), &borrowed).context("cannot send the mount fds to the container")
}

/// The rootfs as a detached tree, or an image's layers as one tree each
/// (top layer first): nodev, private, idmapped onto the container's user
/// namespace for a pool range (a layer, whose files the image owns as
/// container IDs, for any user namespace).
fn rootfs_trees(spec: &Spec, pid: Pid) -> Result<Vec<std::os::fd::OwnedFd>> {
    let Some(image) = &spec.image else {
        return Ok(vec![rootfs_tree(spec, pid)?]);
    };
    let userns = match spec.userns {
        UserNs::Host => None,
        _ => Some(idmap::open_userns(pid.as_raw_pid())?),
    };
    let mut trees = Vec::with_capacity(image.layers.len());
    for layer in &image.layers {
        trees.push(match &userns {
            Some(userns) => idmap::idmapped_tree(layer, userns.as_fd(), libc::MOUNT_ATTR_NODEV)?,
            None => {
                idmap::detached_tree(layer, true, Propagation::Private, libc::MOUNT_ATTR_NODEV)?
            }
        });
    }
    Ok(trees)
}

/// The rootfs as a detached tree, nodev, private (idmapped onto the
/// container's user namespace for a pool range).
fn rootfs_tree(spec: &Spec, pid: Pid) -> Result<std::os::fd::OwnedFd> {
    // A device node made in the rootfs (write-through) or one the image
    // brought cannot be opened: without a user namespace and with
    // CAP_MKNOD, a container could otherwise make the host's disk and read
    // it (the engine has no device cgroup on a v1 host). The overlay over
    // it is nodev as well (child::mounts). Private: see idmap::Propagation.
    Ok(if spec.userns == UserNs::Pool {
        let userns = idmap::open_userns(pid.as_raw_pid())?;
        idmap::idmapped_tree(&spec.rootfs, userns.as_fd(), libc::MOUNT_ATTR_NODEV)?
    } else {
        idmap::detached_tree(
            &spec.rootfs,
            true,
            Propagation::Private,
            libc::MOUNT_ATTR_NODEV,
        )?
    })
}

/// The directory the layer goes on, opened through /proc/PID/root: an fd
/// of the child's mount namespace.
fn layer_dir(pid: Pid, scratch_dir: &std::path::Path) -> Result<std::os::fd::OwnedFd> {
    let in_child = PathBuf::from(format!("/proc/{pid}/root"))
        .join(scratch_dir.strip_prefix("/").unwrap_or(scratch_dir));
    rustix::fs::open(
        &in_child,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .with_context(|| {
        format!(
            "cannot open {} in the container's mount namespace",
            scratch_dir.display()
        )
    })
}

/// A volume's source as a detached tree: read-only (recursively) when
/// asked, with the bundle's MOUNT_ATTR_* bits and propagation.
fn volume_tree(
    v: &crate::model::volumes::Volume,
    bind: BindOptions,
) -> Result<std::os::fd::OwnedFd> {
    // A slave unless the bundle asks for private or shared: what the
    // container mounts in a volume reaches the host's tree only when
    // the bundle asks for shared propagation.
    let propagation = if bind.private() {
        Propagation::Private
    } else if bind.shared() {
        Propagation::Shared
    } else {
        Propagation::Slave
    };
    let readonly = if v.readonly {
        libc::MOUNT_ATTR_RDONLY
    } else {
        0
    };
    // An OCI bind mount's nosuid/nodev/noexec.
    let vol = idmap::detached_tree(&v.host, true, propagation, readonly | bind.attrs)?;
    // A directory volume is nodev and nosuid whatever the bundle says: a
    // node made in it could be opened (runc leaves `dev` and counts on
    // the device cgroup), and a setuid file container root leaves in it
    // would lift a process of the container to that owner. A bind of
    // one file (a device the bundle passes on purpose) keeps its flags:
    // nothing can be made in it.
    let is_dir = rustix::fs::fstat(&vol)
        .map(|st| rustix::fs::FileType::from_raw_mode(st.st_mode).is_dir())
        .with_context(|| format!("cannot stat volume {}", v.host.display()))?;
    if is_dir {
        idmap::set_attrs(
            vol.as_fd(),
            libc::MOUNT_ATTR_NODEV | libc::MOUNT_ATTR_NOSUID,
            0,
            true,
        )
        .with_context(|| format!("cannot make volume {} nodev and nosuid", v.host.display()))?;
    }
    Ok(vol)
}

/// Takes the state lock, recovers stale entries, checks the name, leases
/// the host IDs, picks or checks the address and sets up the bridge.
/// Returns the record to write (once PID 1 exists), the lock, held until
/// then, and the lease.
fn reserve(
    spec: &Spec,
    cfg: &Config,
    cgroup_ok: bool,
    state: &StateDir,
) -> Result<(Record, Lock, Option<Held>)> {
    step!("run.lock");
    let lock = state.lock()?;
    step!("run.recover");
    let recovered = recovery::recover_stale(state, cfg);
    // `engine start` (and a restart policy) replaces the kept record (by
    // rename, under this lock); once `rm` or `stop` came, nothing runs.
    let kept_rec = recovered.exited.iter().find(|r| r.name == spec.name);
    let kept = kept_rec.is_some();
    // A run again by its policy (the record says restarting) counts on;
    // one after a plain exit counts afresh.
    let restart_count = kept_rec
        .filter(|r| spec.restart && r.restarting)
        .map_or(0, |r| r.restart_count);
    if spec.restart && (!kept || state.stopped_mark_of(&spec.name).exists()) {
        bail!(
            "container {} was stopped or removed: `engine start {}` runs it again if it is kept",
            spec.name,
            spec.name
        );
    }
    if !spec.restart && kept {
        bail!(
            "container name {} is held by an exited container: remove it with `engine rm {}`, or choose another name",
            spec.name,
            spec.name
        );
    }
    let running = recovered.running;
    if running.iter().any(|r| r.name == spec.name) {
        bail!(
            "container name {} is already in use: choose another name, or stop it with `engine stop {}`",
            spec.name,
            spec.name
        );
    }
    // Refused here, before anything is created.
    step!("run.id_range");
    let (userns_base, lease) = lease_ids(spec, state, &running)?;
    let (ip, veth) = address_and_veth(spec, state, &running)?;
    let me = std::process::id() as i32;
    let mut record = Record {
        name: spec.name.clone(),
        engine_pid: me,
        engine_start: state::process_start_time(me).unwrap_or(0),
        pid: 0,
        rootfs: spec.rootfs.clone(),
        command: spec.command.clone(),
        ip,
        veth,
        cgroup: None,
        created: state::now_secs(),
        cpus: spec.limits.cpus,
        memory: spec.limits.memory,
        pids_limit: spec.limits.pids,
        log: None,
        hostname: spec.hostname.clone(),
        env: spec.env.clone(),
        ports: spec.ports.clone(),
        aliases: spec.dns.aliases.clone(),
        userns_base,
        confinement: Some(spec.confinement.clone()),
        keep: spec.detach && !spec.rm,
        input: spec.origin.clone().filter(|_| spec.detach && !spec.rm),
        started: None,
        finished: None,
        exit_code: None,
        restarting: false,
        restart_count,
        image: spec.image.as_ref().map(|i| i.reference.clone()),
        image_id: spec.image.as_ref().map(|i| i.id.clone()),
        stop_signal: spec.image.as_ref().and_then(|i| i.stop_signal),
        // Read for kept containers only: a foreground run costs nothing more.
        boot_id: (spec.detach && !spec.rm).then(state::boot_id).flatten(),
    };
    if cgroup_ok {
        record.cgroup = Some(cfg.cgroup_root.join(&spec.name));
    }
    Ok((record, lock, lease))
}

/// The container's address (the one asked for, or the lowest free) and
/// its veth's name, once its ports are free and the bridge and the NAT
/// table are there; none without a bridge.
fn address_and_veth(
    spec: &Spec,
    state: &StateDir,
    running: &[Record],
) -> Result<(Option<Ipv4Addr>, Option<String>)> {
    step!("run.address");
    Ok(match &spec.network {
        Network::None => (None, None),
        Network::Container(target) => {
            if !running.iter().any(|r| r.name == *target && r.pid > 0) {
                bail!("container {target} is not running: start it, or choose another --network");
            }
            (None, None)
        }
        Network::Bridge { net, ip } => {
            let used: Vec<Ipv4Addr> = running.iter().filter_map(|r| r.ip).collect();
            let ip = match ip {
                Some(ip) => {
                    if let Some(holder) = running.iter().find(|r| r.ip == Some(*ip)) {
                        bail!(
                            "address {ip} is already used by container {}: choose another address or omit it to lease one",
                            holder.name
                        );
                    }
                    *ip
                }
                None => net.lowest_free(&used)?,
            };
            check_ports(spec, running)?;
            step!("run.bridge");
            crate::sys::net::setup_host(net.into(), &state.dir)?;
            step!("run.nat");
            super::nat::ensure(net, state, !spec.ports.is_empty())?;
            step!("run.veth_name");
            let mut veth = crate::sys::net::veth_name(&spec.name);
            // The name is ours now, so a veth of that name is stale: left by
            // a container of the same name whose namespace the kernel is
            // still tearing down (it goes with it). Deleting it would wait
            // for that teardown; take another name instead ('%' never occurs
            // in a container name, so this one is the run's own).
            if crate::sys::net::link_exists(&veth)? {
                veth = crate::sys::net::veth_name(&format!("{}%{}", spec.name, std::process::id()));
            }
            (Some(ip), Some(veth))
        }
    })
}

/// Leases the container's host IDs host-wide (`sys::idlease`): from the
/// pool, the range a name the user chose picks (`IdPool::for_name`) when
/// no container of any state directory holds it, else the lowest such
/// range; or the fixed base (`--userns BASE`, a shifted rootfs) if none
/// holds any of it. Returns the pool base, if from the pool, and the lease, held by
/// this engine until the init exists.
fn lease_ids(
    spec: &Spec,
    state: &StateDir,
    running: &[Record],
) -> Result<(Option<u32>, Option<Held>)> {
    if spec.userns == UserNs::Host {
        return Ok((None, None));
    }
    let leases = Leases::host();
    let locked = leases.lock()?;
    let live = locked.live();
    let (uid, gid) = match spec.userns {
        UserNs::Map { uid, gid } => {
            let (uids, gids) = ([(uid, USERNS_SIZE)], [(gid, USERNS_SIZE)]);
            if let Some(held) = live.iter().find(|l| l.overlaps(&uids, &gids)) {
                bail!(
                    "host IDs {uid}..{} (uids) and {gid}..{} (gids) of this container would overlap the IDs of {}: stop it first, or give this container other IDs (another --userns BASE, or a rootfs pulled with another --owner)",
                    u64::from(uid) + u64::from(USERNS_SIZE) - 1,
                    u64::from(gid) + u64::from(USERNS_SIZE) - 1,
                    held.holder()
                );
            }
            (uid, gid)
        }
        _ => {
            // Records of an engine from before the host-wide leases count too.
            let used: Vec<(u32, u32)> = live
                .iter()
                .flat_map(|l| l.spans())
                .chain(
                    running
                        .iter()
                        .filter_map(|r| r.userns_base.map(|b| (b, USERNS_SIZE))),
                )
                .collect();
            let pool = IdPool::from_env()?;
            let base = if spec.generated_name {
                pool.lowest_free(&used)?
            } else {
                pool.for_name(&spec.name, &used)?
            };
            (base, base)
        }
    };
    let held = locked.write(Lease {
        state_dir: state.dir.clone(),
        name: spec.name.clone(),
        uids: vec![(uid, USERNS_SIZE)],
        gids: vec![(gid, USERNS_SIZE)],
        shared: false,
        engine: Proc::of(std::process::id() as i32),
        init: None,
    })?;
    let pool_base = (spec.userns == UserNs::Pool).then_some(uid);
    Ok((pool_base, Some(held)))
}

/// Refuses a host port another container publishes, or a host process
/// holds; under the state lock, before anything is created.
fn check_ports(spec: &Spec, running: &[Record]) -> Result<()> {
    for map in &spec.ports {
        for rec in running {
            if let Some(theirs) = rec.ports.iter().find(|p| p.clashes_with(map)) {
                bail!(
                    "host port {}/{} is already published by container {} ({theirs}): publish another host port, or stop {}",
                    map.host_port,
                    map.proto.as_str(),
                    rec.name,
                    rec.name
                );
            }
        }
        nat::check_host_port_free(&map.into())?;
    }
    Ok(())
}

fn show_ports(ports: &[crate::model::ports::PortMapping]) -> String {
    ports
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn report_oom(spec: &Spec, cg: &Cgroup) {
    let kills = cgroup::read_key(&cg.path.join("memory.events"), "oom_kill").unwrap_or(0);
    if kills > 0 {
        let limit = spec
            .limits
            .memory
            .map(|m| format!(" of {} bytes", m))
            .unwrap_or_default();
        eprintln!(
            "engine: container {}: {kills} process(es) killed by the OOM killer (memory limit{limit})",
            spec.name
        );
    }
}

/// The description's limits, as the cgroup's files take them.
impl From<&crate::model::limits::Limits> for cgroup::Settings {
    fn from(l: &crate::model::limits::Limits) -> Self {
        cgroup::Settings {
            cpus: l.cpus,
            memory: l.memory,
            swap: l.swap,
            pids: l.pids,
            cpu_weight: l.cpu_weight,
            cpuset: l.cpuset,
            cpuset_mems: l.cpuset_mems,
        }
    }
}

/// The description's `--dns`, `--dns-search`, `--add-host`, lent to `dns`.
fn asked(opts: &crate::model::ports::DnsOptions) -> dns::Asked<'_> {
    dns::Asked {
        servers: &opts.servers,
        search: &opts.search,
        hosts: &opts.hosts,
    }
}
