//! The parent, on the host: reserve the name and address, make the cgroup,
//! layer and veth, clone the child straight into its namespaces and cgroup
//! (clone3 + CLONE_INTO_CGROUP), write its id maps, let it go, then supervise:
//! relay the tty, forward signals, wait, report, and undo everything.

use crate::sys::cgroup::{self, Cgroup};
use crate::model::config::Config;
use crate::exit;
use crate::child::init::{self, ChildSetup};
use crate::model::spec::{Network, Spec, UserNs, USERNS_SIZE};
use crate::sys::state::{self, Record, StateDir};
use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::termios::{self, SetArg, Termios};
use nix::unistd::Pid;
use std::fs::File;
use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

/// Signals the supervisor passes on to the container's PID 1.
pub const FORWARDED: [Signal; 7] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

/// An error with the exit code the engine should end with.
#[derive(Debug)]
pub struct ExitError {
    pub code: i32,
    pub msg: String,
}

impl std::fmt::Display for ExitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for ExitError {}

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
}

impl Drop for Resources {
    fn drop(&mut self) {
        if let Some(cg) = self.cgroup.take() {
            let _ = cgroup::kill_and_remove(&cg.path);
        }
        if let Some(pid) = self.child.take() {
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(pid, None);
        }
        // The veth is not deleted here: it dies with the container's network
        // namespace, which the kernel tears down in the background. Deleting
        // it ourselves would make every start wait ~25 ms for the kernel.
        if let Some(log) = self.log.take() {
            let _ = std::fs::remove_file(log);
        }
        if self.record_written {
            self.state.remove(&self.name);
        }
    }
}

/// Runs a container to its end; returns the exit code for the engine.
pub fn run(spec: &Spec, cfg: &Config) -> Result<i32> {
    run_with(spec, cfg, |_| {})
}

/// As `run`; `started` is called once PID 1 has exec'd (used by detached runs).
pub fn run_with(spec: &Spec, cfg: &Config, started: impl FnOnce(&Record)) -> Result<i32> {
    let state = StateDir::new(&cfg.state_dir);
    let cgroup_ok = cgroup::check_available(&cfg.cgroup_root).is_ok();
    if !cgroup_ok && !spec.limits.any() {
        eprintln!("engine: this host has no cgroup v2 cpu/memory controllers: no resource control for this container");
    }

    let mut res = Resources {
        state: state.clone(),
        name: spec.name.clone(),
        record_written: false,
        cgroup: None,
        child: None,
        log: None,
    };
    // The lock is held until the record (with PID 1's pid) is written: one
    // write per container, and no reader ever sees a half-made entry.
    let (mut record, lock) = reserve(spec, cfg, cgroup_ok, &state)?;
    verbose!(spec, "reserved {} ({:?})", spec.name, record.ip);
    if spec.detach {
        // Only now is the name ours: a clash must not truncate another's log.
        let log = state.log_of(&spec.name);
        res.log = Some(log.clone());
        redirect_output(&log)?;
        record.log = Some(log);
    }

    if cgroup_ok {
        res.cgroup = Some(cgroup::create(&cfg.cgroup_root, &spec.name, &spec.limits)?);
    }
    let layer = (!spec.write_through).then(|| state.dir.clone());

    let eth0 = match (&spec.network, record.ip) {
        (Network::Bridge { net, .. }, Some(ip)) => Some((ip, net.prefix, net.gateway)),
        _ => None,
    };
    let pty = if spec.tty { Some(open_pty()?) } else { None };
    let (sync_read, sync_write) = pipe()?;
    let (error_read, error_write) = pipe()?;

    // Block what we forward before cloning, so no signal is lost in between;
    // the child unblocks them before exec.
    let (forwarded, _restore_mask) = block_forwarded()?;

    let setup = ChildSetup {
        spec,
        layer,
        sync_fd: sync_read.as_raw_fd(),
        error_fd: error_write.as_raw_fd(),
        pty_slave: pty
            .as_ref()
            .map(|p| (p.slave.as_raw_fd(), p.slave_path.clone())),
        eth0,
        cgroup2: cgroup_ok,
    };
    let cgroup_dir = match &res.cgroup {
        Some(cg) => Some(
            File::open(&cg.path)
                .with_context(|| format!("cannot open cgroup {}", cg.path.display()))?,
        ),
        None => None,
    };
    let (pid, pidfd) =
        match clone_container(spec.userns, cgroup_dir.as_ref().map(|f| f.as_raw_fd()))? {
            Cloned::Child => init::run(&setup),
            Cloned::Parent { pid, pidfd } => (pid, pidfd),
        };
    res.child = Some(pid);
    record.pid = pid.as_raw();
    state.write(&record)?;
    res.record_written = true;
    drop(lock);
    drop(setup);
    drop(sync_read);
    drop(error_write);
    drop(cgroup_dir);
    let master = pty.map(|p| p.master);
    verbose!(spec, "cloned pid {pid}");

    if let UserNs::Map { uid, gid } = spec.userns {
        write_id_maps(pid, uid, gid)?;
    }
    if let (Network::Bridge { net, .. }, Some(veth)) = (&spec.network, &record.veth) {
        crate::sys::net::create_veth(net, veth, pid.as_raw())?;
    }
    File::from(sync_write)
        .write_all(b"G")
        .context("cannot signal the container to start")?;

    if let Some(failure) = child_failure(error_read) {
        let _ = nix::sys::wait::waitpid(pid, None);
        res.child = None;
        return Err(failure.into());
    }
    verbose!(spec, "{} started", spec.command[0]);
    res.log = None;
    started(&record);

    let status = supervise(pid, &pidfd, master, forwarded)?;
    res.child = None;
    if let Some(cg) = &res.cgroup {
        report_oom(spec, cg);
    }
    drop(res);
    Ok(status)
}

/// Takes the state lock, recovers stale entries, checks the name, picks or
/// checks the address and sets up the bridge. Returns the record to write
/// (once PID 1 exists) and the lock, held until then.
fn reserve(
    spec: &Spec,
    cfg: &Config,
    cgroup_ok: bool,
    state: &StateDir,
) -> Result<(Record, state::Lock)> {
    let lock = state.lock()?;
    let running = state::recover_stale(state);
    if running.iter().any(|r| r.name == spec.name) {
        bail!(
            "container name {} is already in use: choose another name, or stop it with `engine stop {}`",
            spec.name,
            spec.name
        );
    }
    let (ip, veth) = match &spec.network {
        Network::None => (None, None),
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
            crate::sys::net::setup_host(net, &state.dir)?;
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
    };
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
    };
    if cgroup_ok {
        record.cgroup = Some(cfg.cgroup_root.join(&spec.name));
    }
    Ok((record, lock))
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("cannot create a pipe")
}

struct RestoreMask(SigSet);

/// Blocks the forwarded signals (they are read from a signalfd); the old
/// mask comes back when the guard drops.
fn block_forwarded() -> Result<(SigSet, RestoreMask)> {
    let mut forwarded = SigSet::empty();
    for s in FORWARDED {
        forwarded.add(s);
    }
    let mut old_mask = SigSet::empty();
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&forwarded), Some(&mut old_mask))
        .context("cannot block signals")?;
    Ok((forwarded, RestoreMask(old_mask)))
}

/// Reads the child's error pipe to its end: EOF alone means exec succeeded;
/// otherwise "CODE message" from `init`.
fn child_failure(error_read: OwnedFd) -> Option<ExitError> {
    let mut report = String::new();
    let _ = File::from(error_read).read_to_string(&mut report);
    if report.is_empty() {
        return None;
    }
    let (code, msg) = report.split_once(' ').unwrap_or(("125", &report));
    Some(ExitError {
        code: code.parse().unwrap_or(exit::ENGINE_ERROR),
        msg: msg.to_string(),
    })
}

impl Drop for RestoreMask {
    fn drop(&mut self) {
        let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&self.0), None);
    }
}

struct Pty {
    master: OwnedFd,
    slave: OwnedFd,
    slave_path: PathBuf,
}

/// A pty for the container, sized like our terminal.
fn open_pty() -> Result<Pty> {
    let winsize = terminal_size(0);
    let pty = nix::pty::openpty(winsize.as_ref(), None).context("cannot open a pseudo-terminal")?;
    let slave_path = std::fs::read_link(format!("/proc/self/fd/{}", pty.slave.as_raw_fd()))
        .context("cannot find the pty's path")?;
    Ok(Pty {
        master: pty.master,
        slave: pty.slave,
        slave_path,
    })
}

fn terminal_size(fd: RawFd) -> Option<nix::pty::Winsize> {
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ fills a winsize we own.
    (unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0).then_some(ws)
}

enum Cloned {
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
/// one, so the child is never charged to ours.
fn clone_container(userns: UserNs, cgroup_fd: Option<RawFd>) -> Result<Cloned> {
    let mut flags = (libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWNET) as u64;
    if let UserNs::Map { .. } = userns {
        flags |= libc::CLONE_NEWUSER as u64;
    }
    clone3(flags, cgroup_fd)
}

/// clone3 with a pidfd, optionally straight into a cgroup. Like fork: the
/// child continues on a copy of our stack.
fn clone3(flags: u64, cgroup_fd: Option<RawFd>) -> Result<Cloned> {
    let flags = flags | libc::CLONE_PIDFD as u64;
    let mut pidfd: RawFd = -1;
    let mut args = CloneArgs {
        flags,
        pidfd: &mut pidfd as *mut RawFd as u64,
        exit_signal: libc::SIGCHLD as u64,
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
            pid: Pid::from_raw(pid as i32),
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
fn write_id_maps(pid: Pid, uid: u32, gid: u32) -> Result<()> {
    for (file, base) in [("uid_map", uid), ("gid_map", gid)] {
        let path = format!("/proc/{pid}/{file}");
        std::fs::write(&path, format!("0 {base} {USERNS_SIZE}\n"))
            .with_context(|| format!("cannot write {path}"))?;
    }
    Ok(())
}

/// Puts our terminal in raw mode, so keys go to the container's pty as typed;
/// restores it on drop.
struct RawTerminal(Termios);

impl RawTerminal {
    fn enter() -> Option<RawTerminal> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).ok()?;
        Some(RawTerminal(saved))
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSADRAIN, &self.0);
    }
}

fn write_all(fd: RawFd, mut buf: &[u8]) -> bool {
    while !buf.is_empty() {
        // SAFETY: writing from a slice we own.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return false;
        }
        buf = &buf[n as usize..];
    }
    true
}

fn read_some(fd: RawFd, buf: &mut [u8]) -> isize {
    loop {
        // SAFETY: reading into a slice we own.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        return n;
    }
}

/// Waits for PID 1, forwarding signals and relaying the pty. Returns
/// docker's exit code: the status, or 128+N for signal N.
fn supervise(pid: Pid, pidfd: &OwnedFd, master: Option<OwnedFd>, forwarded: SigSet) -> Result<i32> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let sigfd = SignalFd::with_flags(&forwarded, SfdFlags::SFD_CLOEXEC)
        .context("cannot create signalfd")?;
    let _raw = if master.is_some() && nix::unistd::isatty(0).unwrap_or(false) {
        RawTerminal::enter()
    } else {
        None
    };
    let master_fd = master.as_ref().map(|m| m.as_raw_fd());
    let mut stdin_open = master.is_some();
    let mut master_open = master.is_some();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let mut fds = vec![
            PollFd::new(pidfd.as_fd(), PollFlags::POLLIN),
            PollFd::new(sigfd.as_fd(), PollFlags::POLLIN),
        ];
        let stdin = std::io::stdin();
        let master_borrow = master.as_ref().map(|m| m.as_fd());
        if stdin_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        if let (true, Some(m)) = (master_open, master_borrow) {
            fds.push(PollFd::new(m, PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => bail!("poll: {e}"),
        }
        let ready = |i: usize| {
            fds.get(i)
                .and_then(|f| f.revents())
                .is_some_and(|r| !r.is_empty())
        };
        let child_done = ready(0);
        let sig_ready = ready(1);
        let mut idx = 2;
        let stdin_ready = stdin_open && {
            let r = ready(idx);
            idx += 1;
            r
        };
        let master_ready = master_open && ready(idx);
        drop(fds);

        if sig_ready {
            if let Ok(Some(info)) = sigfd.read_signal() {
                let sig = info.ssi_signo as i32;
                if sig == libc::SIGWINCH {
                    if let (Some(m), Some(ws)) = (master_fd, terminal_size(0)) {
                        // SAFETY: TIOCSWINSZ with a winsize we own.
                        unsafe { libc::ioctl(m, libc::TIOCSWINSZ, &ws) };
                    }
                }
                send_signal(pidfd, sig);
            }
        }
        if stdin_ready {
            let n = read_some(0, &mut buf);
            if n <= 0 {
                stdin_open = false;
            } else if let Some(m) = master_fd {
                write_all(m, &buf[..n as usize]);
            }
        }
        if master_ready {
            let n = read_some(master_fd.unwrap_or(-1), &mut buf);
            if n <= 0 {
                master_open = false; // EIO: every slave is closed
            } else {
                write_all(1, &buf[..n as usize]);
            }
        }
        if child_done {
            break;
        }
    }
    // Drain what the container wrote before it exited.
    if let (true, Some(m)) = (master_open, master_fd) {
        let _ = nix::fcntl::fcntl(
            m,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        );
        loop {
            let n = read_some(m, &mut buf);
            if n <= 0 {
                break;
            }
            write_all(1, &buf[..n as usize]);
        }
    }
    let status = loop {
        match nix::sys::wait::waitpid(pid, None) {
            Err(nix::errno::Errno::EINTR) => continue,
            other => break other.context("waitpid")?,
        }
    };
    use nix::sys::wait::WaitStatus;
    Ok(match status {
        WaitStatus::Exited(_, code) => code,
        WaitStatus::Signaled(_, sig, _) => 128 + sig as i32,
        _ => exit::ENGINE_ERROR,
    })
}

/// Signals through the pidfd: never a recycled pid.
fn send_signal(pidfd: &OwnedFd, sig: i32) {
    // SAFETY: pidfd_send_signal with a valid pidfd and no siginfo.
    unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
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

/// Sends our stdout and stderr (and so the container's) to a detached
/// container's log; stdin becomes /dev/null.
fn redirect_output(log: &Path) -> Result<()> {
    let file = File::create(log).with_context(|| format!("cannot create log {}", log.display()))?;
    let null = File::open("/dev/null").context("cannot open /dev/null")?;
    // SAFETY: dup2 of fds we own onto 0-2.
    unsafe {
        libc::dup2(null.as_raw_fd(), 0);
        libc::dup2(file.as_raw_fd(), 1);
        libc::dup2(file.as_raw_fd(), 2);
    }
    Ok(())
}

/// `engine run -d`: a supervisor process of its own, in a new session, runs
/// the container; we return once PID 1 has exec'd, or with its error.
pub fn run_detached(spec: &Spec, cfg: &Config) -> Result<()> {
    let (notify_read, notify_write) = pipe()?;
    // SAFETY: single-threaded; the child only calls async-signal-safe code
    // until it proceeds like a fresh engine process.
    match unsafe { nix::unistd::fork() }.context("cannot fork the supervisor")? {
        nix::unistd::ForkResult::Child => {
            drop(notify_read);
            let _ = nix::unistd::setsid();
            let mut notify = Some(File::from(notify_write));
            let result = run_with(spec, cfg, |_| {
                if let Some(mut n) = notify.take() {
                    let _ = n.write_all(b"S");
                }
            });
            let code = match result {
                Ok(code) => code,
                Err(err) => {
                    let code = err
                        .downcast_ref::<ExitError>()
                        .map_or(exit::ENGINE_ERROR, |e| e.code);
                    match notify.take() {
                        Some(mut n) => {
                            let _ = write!(n, "E{code} {err:#}");
                        }
                        None => eprintln!("engine: {err:#}"),
                    }
                    code
                }
            };
            std::process::exit(code)
        }
        nix::unistd::ForkResult::Parent { .. } => {
            drop(notify_write);
            let mut reply = String::new();
            let _ = File::from(notify_read).read_to_string(&mut reply);
            if reply == "S" {
                return Ok(());
            }
            let Some(rest) = reply.strip_prefix('E') else {
                bail!(
                    "the supervisor of {} died before the container started: run it again without -d to see why",
                    spec.name
                );
            };
            let (code, msg) = rest.split_once(' ').unwrap_or(("125", rest));
            Err(ExitError {
                code: code.parse().unwrap_or(exit::ENGINE_ERROR),
                msg: msg.to_string(),
            }
            .into())
        }
    }
}

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

    let pty = if req.tty { Some(open_pty()?) } else { None };
    let (error_read, error_write) = pipe()?;
    let mut env = rec.env.clone();
    env.extend(req.env.iter().cloned());
    let workdir = req.workdir.clone().unwrap_or_else(|| PathBuf::from("/"));
    let setup = init::JoinSetup {
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
        Cloned::Child => init::join(&setup),
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
