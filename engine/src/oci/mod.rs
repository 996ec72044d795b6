//! The OCI runtime verbs behind the facade's `oci_*` (runc's command line
//! is the binary's own, `cli/oci.rs`): a bundle's config.json made into the
//! engine's description (`config`), and the verbs over a state directory
//! (`--root`, default /run/engine/oci) that is separate from `engine run`'s
//! records (`state`); `checks` of the bundle against the host before
//! anything is made; `parent::create` is create's host side,
//! `parent::exec` the one way into a running container.

mod checks;
pub mod config;
mod error;
pub mod exec;
mod procs;
pub mod spec;
pub mod state;

pub use error::Error;
pub use exec::ExecOptions;
pub use state::{check_id, now_rfc3339, rfc3339, state_json, Record, Root, Status, DEFAULT_ROOT};

use checks::{check_bound_devices, maps_host_root, open_create_container_hooks, open_namespaces};
use state::alive;

use crate::model::config::Config;
use crate::parent::create::{Created, Launch};
use crate::sys::failpoint::step;
use anyhow::{anyhow, bail, Context, Result};
use rustix::process::{Pid, Signal};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Options of `create` (and `run`).
#[derive(Debug, Default, Clone)]
pub struct CreateOptions {
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub preserve_fds: u32,
}

/// Undoes a `create` that failed: the init (by `Created`), its cgroup, its
/// state directory.
struct Undo {
    dir: Option<PathBuf>,
    cgroup: Option<PathBuf>,
}

impl Drop for Undo {
    fn drop(&mut self) {
        if let Some(cg) = self.cgroup.take() {
            let _ = crate::sys::cgroup::kill_and_remove(&cg);
        }
        if let Some(dir) = self.dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// `create`: the init waits on exec.fifo for `start`. Returns its pid.
pub fn create(root: &Root, cfg: &Config, id: &str, opts: &CreateOptions) -> Result<Pid, Error> {
    let created = create_inner(root, cfg, id, opts)?;
    Ok(created.disarm())
}

/// The steps of `create`, each with its failpoint: input first (nothing
/// is made before the bundle is planned and checked, `open_inputs`), then
/// what is made on the host (`make_host_side`), then the init.
fn create_inner(
    root: &Root,
    cfg: &Config,
    id: &str,
    opts: &CreateOptions,
) -> Result<Created, Error> {
    step!("oci_create.check_id");
    check_id(id)?;
    let input = open_inputs(cfg, id, opts)?;
    let (mut made, mut lease) = make_host_side(root, cfg, id, &input)?;
    let plan = &input.plan;
    let mut rec = first_record(id, &input.bundle, plan, made.cgroup.clone());
    step!("oci_create.record");
    root.save(&rec)?;
    let hooks = plan.hooks.clone();
    let fifo = root.fifo(id);
    let launch = Launch {
        spec: &plan.spec,
        extras: &plan.extras,
        new_namespaces: plan.new_namespaces,
        join: input.join,
        uid_map: plan.uid_map.clone(),
        gid_map: plan.gid_map.clone(),
        fifo: &fifo,
        console: input.console,
        console_size: plan.console_size,
        oom_score_adj: plan.oom_score_adj,
        cgroup: made.cgroup.clone(),
        create_container_hooks: input.create_container_hooks,
    };
    step!("oci_create.launch");
    let created = crate::parent::create::create_init(launch, |pid| {
        init_exists(root, &rec, &hooks, pid, plan.new_namespaces)
    })?;
    rec = with_init(&rec, created.pid, plan.new_namespaces);
    step!("oci_create.record_created");
    root.save(&rec)?;
    step!("oci_create.pid_file");
    if let Some(p) = &opts.pid_file {
        write_pid_file(p, rec.pid)?;
    }
    step!("oci_create.hand_over_lease");
    if let Some(mut held) = lease.take() {
        // Held by the init alone from here: no engine process stays.
        held.set_holders(None, crate::sys::idlease::Proc::of(rec.pid))
            .map_err(anyhow::Error::from)?;
        held.keep();
    }
    made.dir = None;
    made.cgroup = None;
    Ok(created)
}

/// What `create` reads and opens before it makes anything: the planned
/// bundle, the console socket, the namespaces to join, the
/// createContainer hooks' binaries.
struct Inputs {
    bundle: config::Bundle,
    plan: config::Plan,
    joins_user: bool,
    console: Option<std::os::fd::OwnedFd>,
    join: Vec<(std::os::fd::OwnedFd, rustix::thread::LinkNameSpaceType)>,
    create_container_hooks: Vec<std::os::fd::OwnedFd>,
    cgroup_ok: bool,
}

fn open_inputs(cfg: &Config, id: &str, opts: &CreateOptions) -> Result<Inputs, Error> {
    step!("oci_create.plan");
    let (bundle, plan) = plan_bundle(id, opts)?;
    let joins_user = plan
        .join
        .iter()
        .any(|(_, k)| *k == rustix::thread::LinkNameSpaceType::User);
    if joins_user || maps_host_root(&plan) {
        // Host root is mapped into the container (or may be: a user
        // namespace joined by path may map host uid 0): the init runs from
        // a read-only image of the engine (CVE-2019-5736), as `engine run
        // --userns host` does.
        // Before anything is opened or connected: this re-executes us.
        step!("oci_create.read_only_image");
        crate::parent::exec::rerun_from_read_only_image()?;
    }
    step!("oci_create.console");
    let console = match &opts.console_socket {
        Some(p) => Some(crate::parent::tty::connect_console(p)?),
        None => None,
    };
    step!("oci_create.open_namespaces");
    let join = open_namespaces(&plan)?;
    // Opened here, in the runtime's mount namespace (see child::create_container_hooks).
    step!("oci_create.open_hooks");
    let create_container_hooks = open_create_container_hooks(&plan)?;
    let cgroup_ok = crate::sys::cgroup::check_available(&cfg.cgroup_root).is_ok();
    if (plan.spec.limits.any() || plan.cgroups_path.is_some()) && !cgroup_ok {
        return Err(anyhow!("config.json linux.resources limits or linux.cgroupsPath need cgroup v2 with the cpu, memory and pids controllers, which this host lacks: drop them (podman: --cgroups=disabled)").into());
    }
    step!("oci_create.bound_devices");
    if !cgroup_ok {
        check_bound_devices(&plan)?;
    }
    step!("oci_create.capabilities");
    checks::check_capabilities(&plan)?;
    Ok(Inputs {
        bundle,
        plan,
        joins_user,
        console,
        join,
        create_container_hooks,
        cgroup_ok,
    })
}

/// The state directory, the ID lease, the fifo and the cgroup, undone on
/// drop until `create` succeeds.
fn make_host_side(
    root: &Root,
    cfg: &Config,
    id: &str,
    input: &Inputs,
) -> Result<(Undo, Option<crate::sys::idlease::Held>), Error> {
    let plan = &input.plan;
    step!("oci_create.state_dir");
    let dir = make_container_dir(root, id)?;
    let mut undo = Undo {
        dir: Some(dir),
        cgroup: None,
    };
    // After the directory: the ID is ours, so is the lease of that name.
    step!("oci_create.lease");
    let lease = if input.joins_user {
        None // the joined namespace's IDs are its first container's lease
    } else {
        lease_mappings(root, id, &plan.uid_map, &plan.gid_map)?
    };
    step!("oci_create.fifo");
    make_fifo(&root.fifo(id))?;
    step!("oci_create.cgroup");
    if input.cgroup_ok {
        undo.cgroup = Some(make_cgroup(cfg, id, plan)?);
    }
    Ok((undo, lease))
}

/// Once the init exists (in its namespaces, before it builds its root):
/// its pid recorded at once (a create killed from here on leaves a
/// container that `state` reports and `delete` removes), then the prestart
/// and createRuntime hooks. Returns the state the init's own hooks read.
fn init_exists(
    root: &Root,
    rec: &Record,
    hooks: &config::Hooks,
    pid: Pid,
    new_namespaces: u64,
) -> Result<String> {
    let creating = with_init(rec, pid, new_namespaces);
    step!("oci_create.record_pid");
    root.save(&creating)?;
    let state = hook_state(&creating, "created");
    step!("oci_create.hooks");
    for hook in hooks.prestart.iter().chain(&hooks.create_runtime) {
        run_hook(hook, &state)?;
    }
    Ok(hook_state(&creating, "creating"))
}

/// The record once the init exists: its pid, start time and namespaces.
fn with_init(rec: &Record, pid: Pid, new_namespaces: u64) -> Record {
    let mut rec = rec.clone();
    rec.pid = pid.as_raw_pid();
    rec.start_time = crate::sys::state::process_start_time(rec.pid).unwrap_or(0);
    (rec.own_pid_ns, rec.mnt_ns) = procs::scope_of(rec.pid, new_namespaces);
    rec
}

/// The state directory (0700) and the container's directory in it: the
/// ID is ours from here.
fn make_container_dir(root: &Root, id: &str) -> Result<PathBuf, Error> {
    root.make_private()?;
    let dir = root.container_dir(id);
    match std::fs::create_dir(&dir) {
        Ok(()) => Ok(dir),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Err(Error::AlreadyExists(id.to_string()))
        }
        Err(e) => Err(anyhow!("cannot create {}: {e}", dir.display()).into()),
    }
}

/// The record before the init exists (pid 0: a create killed now leaves
/// a stopped container that `delete` removes).
fn first_record(
    id: &str,
    bundle: &config::Bundle,
    plan: &config::Plan,
    cgroup: Option<PathBuf>,
) -> Record {
    Record {
        id: id.to_string(),
        pid: 0,
        start_time: 0,
        bundle: bundle.dir.clone(),
        rootfs: plan.spec.rootfs.clone(),
        created: now_rfc3339(),
        annotations: plan.annotations.clone(),
        cgroup,
        poststop: plan.hooks.poststop.clone(),
        poststart: plan.hooks.poststart.clone(),
        confinement: Some(plan.spec.confinement.clone()),
        own_pid_ns: false,
        mnt_ns: None,
    }
}

/// The bundle, and its config planned and checked: nothing is created
/// before this.
fn plan_bundle(id: &str, opts: &CreateOptions) -> Result<(config::Bundle, config::Plan)> {
    let bundle = config::load(&opts.bundle)?;
    let mut plan = config::plan(id, &bundle)?;
    plan.extras.preserve_fds = opts.preserve_fds;
    if plan.spec.tty && opts.console_socket.is_none() {
        bail!("config.json process.terminal is true but no --console-socket was given: the pty master needs somewhere to go");
    }
    Ok((bundle, plan))
}

/// The exec.fifo `start` opens, writable by the container's user.
fn make_fifo(fifo: &Path) -> Result<()> {
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        fifo,
        rustix::fs::Mode::from_bits_truncate(0o622),
    )
    .map_err(std::io::Error::from)
    .with_context(|| format!("cannot create {}", fifo.display()))?;
    // mkfifo obeys our umask.
    std::fs::set_permissions(fifo, std::os::unix::fs::PermissionsExt::from_mode(0o622))
        .with_context(|| format!("cannot make {} writable by the container", fifo.display()))
}

/// The container's cgroup (linux.cgroupsPath, or ENGINE_CGROUP_ROOT/ID),
/// with its limits and device filter, before the init is cloned into it.
fn make_cgroup(cfg: &Config, id: &str, plan: &config::Plan) -> Result<PathBuf> {
    let path = match &plan.cgroups_path {
        Some(p) if p.is_absolute() => {
            let mount =
                crate::sys::cgroup::check_available(&cfg.cgroup_root).map_err(|e| anyhow!(e))?;
            mount.join(p.strip_prefix("/").unwrap_or(p))
        }
        Some(p) => cfg.cgroup_root.join(p),
        None => cfg.cgroup_root.join(id),
    };
    // A cgroup that exists is someone else's (a service, another
    // container): create would empty it and delete would kill it.
    if path.exists() {
        bail!(
            "cgroup {} already exists: give linux.cgroupsPath a cgroup of its own",
            path.display()
        );
    }
    let parent = path.parent().unwrap_or(Path::new("/"));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or(id);
    let cg = crate::sys::cgroup::create(parent, name, &(&plan.spec.limits).into())?;
    // Before the init is cloned into it: no device is opened unchecked.
    if let Err(e) = crate::sys::devices::confine(&cg.path, &plan.device_rules) {
        let _ = crate::sys::cgroup::kill_and_remove(&cg.path);
        bail!(
            "cannot attach the device filter (linux.resources.devices) to cgroup {}: {e}: the kernel needs CONFIG_CGROUP_BPF",
            cg.path.display()
        );
    }
    Ok(cg.path)
}

/// Leases the host IDs of linux.uidMappings/gidMappings host-wide
/// (`sys::idlease`), so `engine run` hands none of them out while the
/// container lives. They are the caller's choice: containers of the OCI
/// verbs may share them (a pod's do), but not with a container of `engine
/// run`, whose IDs are its own. Held by this process until the init exists.
fn lease_mappings(
    root: &Root,
    id: &str,
    uid_map: &[crate::parent::create::IdMapping],
    gid_map: &[crate::parent::create::IdMapping],
) -> Result<Option<crate::sys::idlease::Held>> {
    use crate::sys::idlease::{Lease, Leases, Proc};
    if uid_map.is_empty() && gid_map.is_empty() {
        return Ok(None);
    }
    let spans = |m: &[crate::parent::create::IdMapping]| -> Vec<(u32, u32)> {
        m.iter().map(|m| (m.host, m.size)).collect()
    };
    let (uids, gids) = (spans(uid_map), spans(gid_map));
    let leases = Leases::host();
    let locked = leases.lock()?;
    if let Some(held) = locked
        .live()
        .iter()
        .find(|l| !l.shared && l.overlaps(&uids, &gids))
    {
        bail!(
            "config.json linux.uidMappings/gidMappings map host IDs that {} holds: map other host IDs",
            held.holder()
        );
    }
    let held = locked.write(Lease {
        state_dir: root.dir.clone(),
        name: id.to_string(),
        uids,
        gids,
        shared: true,
        engine: Proc::of(std::process::id() as i32),
        init: None,
    })?;
    Ok(Some(held))
}

/// The decimal pid with no newline, written whole (rename) so a reader
/// never sees it half-made.
pub fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("pid")
    ));
    std::fs::write(&tmp, pid.to_string())
        .with_context(|| format!("cannot write the pid file {}", tmp.display()))?;
    std::fs::rename(&tmp, &path)
        .with_context(|| format!("cannot write the pid file {}", path.display()))
}

fn hook_state(rec: &Record, status: &str) -> String {
    serde_json::json!({
        "ociVersion": "1.2.0",
        "id": rec.id,
        "status": status,
        "pid": rec.pid,
        "bundle": rec.bundle,
        "annotations": rec.annotations,
    })
    .to_string()
}

/// Runs one hook with the state on its stdin; a non-zero exit or its
/// timeout is an error naming it.
fn run_hook(hook: &oci_spec::runtime::Hook, state: &str) -> Result<()> {
    crate::sys::hook::run((&config::hook(hook)).into(), state).map_err(anyhow::Error::from)
}

/// `start`: opens the exec.fifo, which lets the init exec; only from `created`.
pub fn start(root: &Root, id: &str) -> Result<(), Error> {
    step!("oci_start.load");
    let rec = root.load(id)?;
    match root.status(&rec) {
        Status::Created => {}
        is => {
            return Err(Error::WrongState {
                verb: "start",
                id: id.to_string(),
                is,
                wanted: Status::Created,
            })
        }
    }
    let fifo = root.fifo(id);
    step!("oci_start.open_fifo");
    let file = std::fs::File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .with_context(|| {
            format!(
                "cannot start container {id}: cannot open {}",
                fifo.display()
            )
        })?;
    // The init's open for writing completes now; wait for its answer ("0",
    // or why its startContainer hooks failed), and notice if it died instead.
    // After "0", wait for the end of the file too: the init's end is
    // close-on-exec, so it comes when the process has been executed. Only
    // then is the container running (runtime-spec's "has executed the
    // user-specified program"), and poststart hooks run after it, as the
    // spec asks (runtime-tools `poststart`); a `kill` after `start` finds
    // the program, not the engine before its exec.
    step!("oci_start.wait");
    let mut said_go = false;
    loop {
        let mut fds = [rustix::event::PollFd::new(
            &file,
            rustix::event::PollFlags::IN,
        )];
        let timeout = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 100_000_000,
        };
        let n = rustix::event::poll(&mut fds, Some(&timeout)).unwrap_or(0);
        if n > 0 {
            let mut answer = [0u8; 4096];
            let got = rustix::io::read(&file, &mut answer).unwrap_or(0);
            if said_go && got == 0 {
                break;
            }
            if !said_go && got >= 1 && answer[0] == b'0' {
                said_go = true;
                continue;
            }
            if !said_go && got > 1 {
                let _ = std::fs::remove_file(&fifo);
                // It exits now: report it stopped, as it is.
                wait_gone(&rec);
                return Err(anyhow!(
                    "cannot start container {id}: {}",
                    String::from_utf8_lossy(&answer[1..got]).trim()
                )
                .into());
            }
        }
        if !alive(rec.pid, rec.start_time) {
            if said_go {
                // It was started, and its program has exited already.
                break;
            }
            let _ = std::fs::remove_file(&fifo);
            return Err(anyhow!("cannot start container {id}: its init has exited").into());
        }
    }
    step!("oci_start.remove_fifo");
    let _ = std::fs::remove_file(&fifo);
    let state = hook_state(&rec, "running");
    step!("oci_start.poststart");
    for hook in &rec.poststart {
        // Failures of poststart hooks are logged, not fatal (runtime-spec).
        if let Err(e) = run_hook(hook, &state) {
            eprintln!("engine: {e:#}");
        }
    }
    Ok(())
}

/// `kill [--all] ID SIGNAL`. `--all` signals every process of the
/// container (`procs::members`), also once it has stopped: its leftovers
/// (runc does; containerd's shim sends it after every exit in a pod that
/// shares a pid namespace).
pub fn kill(root: &Root, id: &str, signal: &str, all: bool) -> Result<(), Error> {
    step!("oci_kill.signal_name");
    let sig = crate::parent::lifecycle::parse_signal(signal)?;
    step!("oci_kill.load");
    let rec = root.load(id)?;
    if all {
        step!("oci_kill.signal_all");
        procs::signal_all(&rec, sig);
        return Ok(());
    }
    if root.status(&rec) == Status::Stopped {
        return Err(Error::NotRunning(id.to_string()));
    }
    step!("oci_kill.signal");
    Pid::from_raw(rec.pid)
        .ok_or(rustix::io::Errno::SRCH)
        .and_then(|pid| rustix::process::kill_process(pid, sig))
        .map_err(|e| {
            anyhow!(
                "cannot kill container {id}: {} (no such process?)",
                crate::sys::errno_desc(e)
            )
            .into()
        })
}

/// `delete [--force] ID`.
pub fn delete(root: &Root, id: &str, force: bool) -> Result<(), Error> {
    step!("oci_delete.load");
    check_id(id)?;
    let rec = match root.load(id) {
        Ok(r) => r,
        Err(e) => {
            let dir = root.container_dir(id);
            // A create killed before its first record, or a corrupt one.
            if force && dir.is_dir() {
                let _ = std::fs::remove_dir_all(&dir);
                return Ok(());
            }
            // Nothing to delete is what --force asks for (runc and crun
            // exit 0; containerd and podman call it after a failed create).
            if force && !dir.exists() {
                return Ok(());
            }
            return Err(e);
        }
    };
    step!("oci_delete.stop");
    match root.status(&rec) {
        Status::Running if !force => return Err(Error::Running(id.to_string())),
        Status::Stopped => {}
        _ => {
            // A created container is deleted without --force, as runc does.
            if let Some(pid) = Pid::from_raw(rec.pid) {
                let _ = rustix::process::kill_process(pid, Signal::KILL);
            }
            wait_gone(&rec);
        }
    }
    if rec.cgroup.is_none() && !rec.own_pid_ns {
        // In a shared pid namespace its leftovers live on: runc's delete
        // kills them too.
        procs::signal_all(&rec, Signal::KILL);
    }
    step!("oci_delete.cgroup");
    if let Some(cg) = &rec.cgroup {
        crate::sys::cgroup::kill_and_remove(cg).map_err(anyhow::Error::from)?;
    }
    step!("oci_delete.lease");
    crate::sys::idlease::Leases::host().remove(&root.dir, id);
    let state = hook_state(&rec, "stopped");
    step!("oci_delete.poststop");
    for hook in &rec.poststop {
        if let Err(e) = run_hook(hook, &state) {
            eprintln!("engine: {e:#}");
        }
    }
    step!("oci_delete.remove");
    std::fs::remove_dir_all(root.container_dir(id))
        .with_context(|| format!("cannot remove the state of container {id}"))?;
    Ok(())
}

/// Waits (up to 10 s) until the init has exited: killing a pid namespace's
/// init takes the kernel a moment.
fn wait_gone(rec: &Record) {
    // A pidfd turns readable when its process exits. Opened before the
    // check, it names the init and not a process that reused the pid.
    let pid = Pid::from_raw(rec.pid);
    if let Some(pidfd) =
        pid.and_then(|p| rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok())
    {
        if alive(rec.pid, rec.start_time) {
            let mut fds = [rustix::event::PollFd::new(
                &pidfd,
                rustix::event::PollFlags::IN,
            )];
            let timeout = rustix::event::Timespec {
                tv_sec: 10,
                tv_nsec: 0,
            };
            let _ = rustix::event::poll(&mut fds, Some(&timeout));
        }
        return;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while alive(rec.pid, rec.start_time) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// `run`: create and start, then wait for the init (our own child) and
/// delete; returns its exit status.
pub fn run(root: &Root, cfg: &Config, id: &str, opts: &CreateOptions) -> Result<i32, Error> {
    let created = create_inner(root, cfg, id, opts)?;
    let pid = created.disarm();
    if let Err(e) = start(root, id) {
        let _ = delete(root, id, true);
        return Err(e);
    }
    let status = crate::parent::wait_exit_code(pid).map_err(|e| {
        anyhow!(
            "cannot wait for container {id}: {}",
            crate::sys::errno_desc(e)
        )
    })?;
    delete(root, id, true)?;
    Ok(status)
}

/// `ps --format json ID` (table: one pid a line).
pub fn ps(root: &Root, id: &str) -> Result<Vec<i32>, Error> {
    let rec = root.load(id)?;
    if root.status(&rec) == Status::Stopped {
        return Ok(Vec::new());
    }
    Ok(procs::members(&rec))
}

/// `pause` (freeze) and `resume` (thaw) through the cgroup v2 freezer.
pub fn pause_resume(root: &Root, id: &str, freeze: bool) -> Result<(), Error> {
    let verb = if freeze { "pause" } else { "resume" };
    let rec = root.load(id)?;
    let status = root.status(&rec);
    let expected = if freeze {
        Status::Running
    } else {
        Status::Paused
    };
    if status != expected {
        return Err(Error::WrongState {
            verb,
            id: id.to_string(),
            is: status,
            wanted: expected,
        });
    }
    let Some(cg) = &rec.cgroup else {
        return Err(anyhow!("cannot {verb} container {id}: it has no cgroup (this host has no cgroup v2 freezer, or it was created without one)").into());
    };
    let file = cg.join("cgroup.freeze");
    std::fs::write(&file, if freeze { "1" } else { "0" }).with_context(|| {
        format!(
            "cannot {verb} container {id}: cannot write {}",
            file.display()
        )
    })?;
    // The kernel reports the change in cgroup.events once every task is done.
    let want = if freeze { "frozen 1" } else { "frozen 0" };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if std::fs::read_to_string(cg.join("cgroup.events"))
            .is_ok_and(|e| e.lines().any(|l| l == want))
        {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Err(anyhow!("cannot {verb} container {id}: the freezer did not settle within 10 s").into())
}

/// `features`: the runtime-spec features JSON.
pub fn features() -> serde_json::Value {
    serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.3.0",
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": ["ro", "rw", "bind", "rbind", "shared", "rshared", "slave", "rslave", "private", "rprivate", "unbindable", "runbindable", "tmpcopyup",
            "nosuid", "suid", "nodev", "dev", "noexec", "exec", "relatime", "norelatime",
            "strictatime", "noatime", "nodiratime"],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"],
            "capabilities": crate::sys::caps::CapSet::from_bits(u64::MAX).iter().map(|c| format!("CAP_{}", c.name())).collect::<Vec<_>>(),
            "cgroup": {"v1": false, "v2": true, "systemd": false, "systemdUser": false, "rdma": false},
            "seccomp": {"enabled": true, "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_TRAP"], "operators": ["SCMP_CMP_EQ", "SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_GT", "SCMP_CMP_GE", "SCMP_CMP_MASKED_EQ"], "archs": ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"]},
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false},
            "intelRdt": {"enabled": false},
            "mountExtensions": {"idmap": {"enabled": false}}
        },
        "annotations": {"org.opencontainers.runc.version": "none", "io.github.engine.version": env!("CARGO_PKG_VERSION")}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record of a container whose init is gone (a pid no process has).
    fn stopped(root: &Root, id: &str) {
        std::fs::create_dir(root.container_dir(id)).unwrap();
        let rec = Record {
            id: id.to_string(),
            pid: i32::MAX,
            start_time: 1,
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            created: rfc3339(0, 0),
            annotations: Default::default(),
            cgroup: None,
            poststop: Vec::new(),
            poststart: Vec::new(),
            confinement: None,
            own_pid_ns: true,
            mnt_ns: None,
        };
        root.save(&rec).unwrap();
    }

    /// Each failure a caller tells apart is its own variant, through the
    /// facade too, with the sentence the verbs always printed.
    #[test]
    fn the_verbs_fail_with_typed_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Root::new(&tmp.path().join("root"));
        root.make_private().unwrap();
        stopped(&root, "c1");

        let e = start(&root, "c1").unwrap_err();
        assert!(
            matches!(&e, Error::WrongState { verb: "start", id, is: Status::Stopped, wanted: Status::Created } if id == "c1"),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "cannot start container c1: it is stopped, not created"
        );
        let e = kill(&root, "c1", "KILL", false).unwrap_err();
        assert!(matches!(&e, Error::NotRunning(id) if id == "c1"), "{e:?}");
        // --all on a stopped container: its leftovers (none here), and success.
        kill(&root, "c1", "KILL", true).unwrap();
        let e = pause_resume(&root, "c1", true).unwrap_err();
        assert!(
            matches!(&e, Error::WrongState { verb: "pause", .. }),
            "{e:?}"
        );
        assert!(
            matches!(make_container_dir(&root, "c1"), Err(Error::AlreadyExists(id)) if id == "c1")
        );
        assert!(matches!(ps(&root, "nope"), Err(Error::NoSuchContainer(id)) if id == "nope"));
        assert!(matches!(
            delete(&root, "nope", false),
            Err(Error::NoSuchContainer(_))
        ));
        delete(&root, "nope", true).unwrap();
        assert!(matches!(delete(&root, "a/b", true), Err(Error::InvalidId(id)) if id == "a/b"));
        delete(&root, "c1", false).unwrap();

        let bundle = tmp.path().join("bundle");
        std::fs::create_dir(&bundle).unwrap();
        spec::write(&bundle, false).unwrap();
        assert!(matches!(
            spec::write(&bundle, false),
            Err(Error::ConfigExists)
        ));
        assert!(matches!(
            spec::write(&tmp.path().join("none"), false),
            Err(Error::Other(_))
        ));

        // The facade keeps the variant.
        let e = crate::oci_start(&root.dir, "nope").unwrap_err();
        assert!(
            matches!(&e, crate::Error::Oci(Error::NoSuchContainer(id)) if id == "nope"),
            "{e:?}"
        );
        assert_eq!(e.to_string(), "container nope does not exist");
    }
}
