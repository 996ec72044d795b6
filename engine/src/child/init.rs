//! The child, inside the new namespaces, before exec: wait for the parent's
//! go, become root of the user namespace, build the mount tree, pivot_root,
//! set the hostname and network, then exec the command as PID 1.
//!
//! Runs in a process cloned from a single-threaded parent, so allocating is
//! fine; every failure is reported to the parent over the error pipe with the
//! exit code it should become (125, 126 or 127).

use crate::exit;
use crate::model::spec::{Spec, UserNs};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow, Signal};
use nix::unistd::{chdir, pivot_root, sethostname, Gid, Uid};
use std::ffi::CString;
use std::net::Ipv4Addr;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The PATH a container gets unless the user sets one.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Everything the child needs besides the spec; prepared by the parent.
pub struct ChildSetup<'a> {
    pub spec: &'a Spec,
    /// Where to mount the tmpfs that holds the copy-on-write layer (an
    /// existing host directory; the mount exists only in the container's
    /// mount namespace). None: write through to the rootfs.
    pub layer: Option<PathBuf>,
    /// Read end of the pipe the parent writes one byte to once the id maps
    /// and the veth exist.
    pub sync_fd: RawFd,
    /// Write end of the close-on-exec pipe that carries a failure to the parent.
    pub error_fd: RawFd,
    /// The pty slave, and its path on the host, when the container has a tty.
    pub pty_slave: Option<(RawFd, PathBuf)>,
    /// eth0's address, prefix and gateway.
    pub eth0: Option<(Ipv4Addr, u8, Ipv4Addr)>,
    /// Whether to mount cgroup2 at /sys/fs/cgroup (the host has v2).
    pub cgroup2: bool,
}

/// A failure before exec, and the exit code it becomes.
struct Failure {
    code: i32,
    msg: String,
}

type Step<T = ()> = std::result::Result<T, Failure>;

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

impl<T> Context<T> for nix::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Step<T> {
        self.map_err(|e| fail(format!("{}: {}", what(), e.desc())))
    }
}

impl<T> Context<T> for std::io::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Step<T> {
        self.map_err(|e| fail(format!("{}: {e}", what())))
    }
}

/// The child's whole life. Never returns: it execs or exits.
pub fn run(setup: &ChildSetup) -> ! {
    let failure = match prepare_and_exec(setup) {
        Ok(never) => match never {},
        Err(f) => f,
    };
    report_and_exit(setup.error_fd, failure)
}

fn report_and_exit(error_fd: RawFd, failure: Failure) -> ! {
    let report = format!("{} {}", failure.code, failure.msg);
    // SAFETY: writing a buffer we own to our pipe, then exiting without
    // running the parent's atexit handlers or flushing its stdio copies.
    unsafe {
        libc::write(error_fd, report.as_ptr().cast(), report.len());
        libc::_exit(failure.code)
    }
}

enum Never {}

fn prepare_and_exec(setup: &ChildSetup) -> Step<Never> {
    let spec = setup.spec;
    // Die with the supervisor: a SIGKILLed engine must not leave a container running.
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    wait_for_parent(setup.sync_fd)?;

    if let UserNs::Map { .. } = spec.userns {
        become_root()?; // the parent has written the maps
    }
    // Unshared here, not at clone: the namespace's root is the cgroup we were born in.
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP)
        .ctx(|| "unshare the cgroup namespace".into())?;

    let root = build_root(setup)?;
    enter_root(&root)?;

    sethostname(&spec.hostname).ctx(|| format!("sethostname {}", spec.hostname))?;
    crate::sys::net::loopback_up().map_err(|e| fail(format!("{e:#}")))?;
    if let Some((ip, prefix, gateway)) = setup.eth0 {
        crate::sys::net::configure_eth0(ip, prefix, gateway).map_err(|e| fail(format!("{e:#}")))?;
    }

    let env = environment(&spec.hostname, spec.tty, &spec.env);
    let slave = setup.pty_slave.as_ref().map(|(fd, _)| *fd);
    finish_and_exec(slave, &spec.workdir, &spec.command, &env)
}

/// What `engine exec` needs to join a running container.
pub struct JoinSetup<'a> {
    /// Open /proc/PID/ns/* files of the container's PID 1, in the order to
    /// join them (the user namespace last: joining it first would drop the
    /// host capabilities the others need).
    pub namespaces: Vec<(RawFd, nix::sched::CloneFlags)>,
    /// Whether a user namespace is among them (then become its root).
    pub userns: bool,
    pub error_fd: RawFd,
    pub pty_slave: Option<RawFd>,
    pub hostname: &'a str,
    pub env: &'a [(String, String)],
    pub workdir: &'a Path,
    pub command: &'a [String],
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
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    for (fd, kind) in &setup.namespaces {
        // SAFETY: the fd is an open namespace file that outlives this call.
        let ns = unsafe { std::os::fd::BorrowedFd::borrow_raw(*fd) };
        nix::sched::setns(ns, *kind)
            .ctx(|| format!("join the container's {kind:?} namespace (has it exited?)"))?;
    }
    if setup.userns {
        become_root()?;
    }
    let env = environment(setup.hostname, setup.pty_slave.is_some(), setup.env);
    finish_and_exec(setup.pty_slave, setup.workdir, setup.command, &env)
}

/// In a user namespace whose maps are written: act as its root, so files we
/// create belong to the mapped root and not to the unmapped host root.
fn become_root() -> Step {
    nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
        .ctx(|| "setresgid(0) in the user namespace".into())?;
    nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
        .ctx(|| "setresuid(0) in the user namespace".into())?;
    nix::unistd::setgroups(&[]).ctx(|| "setgroups in the user namespace".into())
}

/// The common end of a new container and an exec: own session, the tty,
/// working directory, default signal dispositions, exec.
fn finish_and_exec(
    pty_slave: Option<RawFd>,
    workdir: &Path,
    command: &[String],
    env: &[CString],
) -> Step<Never> {
    // A session of our own: the engine's terminal signals reach us only
    // through the engine (or through our own pty).
    nix::unistd::setsid().ctx(|| "setsid".into())?;
    if let Some(slave) = pty_slave {
        // SAFETY: TIOCSCTTY on a pty slave fd we hold; dup2 onto 0-2.
        unsafe {
            if libc::ioctl(slave, libc::TIOCSCTTY, 0) < 0 {
                return Err(fail(format!(
                    "cannot make the pty the controlling terminal: {}",
                    std::io::Error::last_os_error()
                )));
            }
            for fd in 0..3 {
                libc::dup2(slave, fd);
            }
            if slave > 2 {
                libc::close(slave);
            }
        }
    }
    enter_workdir(workdir)?;
    reset_signals();
    exec(command, env)
}

fn wait_for_parent(fd: RawFd) -> Step {
    let mut byte = [0u8; 1];
    loop {
        // SAFETY: reading one byte into a local buffer.
        let n = unsafe { libc::read(fd, byte.as_mut_ptr().cast(), 1) };
        match n {
            1 => break,
            // The parent died or gave up: leave quietly, it cleans up.
            0 => unsafe { libc::_exit(exit::ENGINE_ERROR) },
            _ if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted => {}
            _ => return Err(fail("cannot read from the engine's sync pipe")),
        }
    }
    // SAFETY: closing our copy of the pipe.
    unsafe { libc::close(fd) };
    Ok(())
}

fn mnt(
    source: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> Step {
    mount(source, target, fstype, flags, data).ctx(|| {
        format!(
            "mount {} on {}{}",
            fstype
                .map(str::to_string)
                .unwrap_or_else(|| source.map(|s| s.display().to_string()).unwrap_or_default()),
            target.display(),
            data.map(|d| format!(" ({d})")).unwrap_or_default()
        )
    })
}

/// `path` inside `root`: existing components resolve like the container
/// would (symlinks stay inside root); missing ones are taken literally.
fn join_in_root(root: &Path, path: &Path) -> Step<PathBuf> {
    crate::image::resolve_in_rootfs(root, path).map_err(|e| fail(format!("{e:#}")))
}

fn mkdir_p(path: &Path) -> Step {
    std::fs::create_dir_all(path).ctx(|| format!("mkdir {}", path.display()))
}

/// A mount point for a file: an empty file at `path`.
fn touch(path: &Path) -> Step {
    if let Some(parent) = path.parent() {
        mkdir_p(parent)?;
    }
    if !path.exists() {
        std::fs::File::create(path).ctx(|| format!("create {}", path.display()))?;
    }
    Ok(())
}

/// A bind mount, read-only when asked. The read-only remount keeps the
/// flags the kernel locks in a user namespace (nosuid, nodev, noexec).
fn bind(source: &Path, target: &Path, readonly: bool) -> Step {
    mnt(
        Some(source),
        target,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )?;
    if readonly {
        remount_readonly(target)?;
    }
    Ok(())
}

fn remount_readonly(target: &Path) -> Step {
    let st = nix::sys::statvfs::statvfs(target).ctx(|| format!("statvfs {}", target.display()))?;
    use nix::sys::statvfs::FsFlags;
    let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
    for (have, keep) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        // ST_RELATIME (4096): nix names it only for glibc.
        (FsFlags::from_bits_retain(4096), MsFlags::MS_RELATIME),
    ] {
        if st.flags().contains(have) {
            flags |= keep;
        }
    }
    mnt(None, target, None, flags, None)
}

/// Builds the container's mount tree at its future root and returns that root.
/// Nothing propagates to the host: `/` becomes a slave first.
fn build_root(setup: &ChildSetup) -> Step<PathBuf> {
    let spec = setup.spec;
    mnt(
        None,
        Path::new("/"),
        None,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None,
    )?;
    let root = match &setup.layer {
        Some(scratch) => {
            // The layer lives in a tmpfs of the container's own mount
            // namespace: nothing to create or remove on the host, and it
            // vanishes with the container even if the engine is killed.
            // Its pages are charged to the container's memory cgroup.
            mnt(
                Some(Path::new("tmpfs")),
                scratch,
                Some("tmpfs"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                Some("mode=755"),
            )?;
            let (upper, work, merged) = (
                scratch.join("upper"),
                scratch.join("work"),
                scratch.join("merged"),
            );
            for d in [&upper, &work, &merged] {
                std::fs::create_dir(d).ctx(|| format!("mkdir {}", d.display()))?;
            }
            let opts = format!(
                "lowerdir={},upperdir={},workdir={}",
                spec.rootfs.display(),
                upper.display(),
                work.display()
            );
            mnt(
                Some(Path::new("overlay")),
                &merged,
                Some("overlay"),
                MsFlags::empty(),
                Some(&opts),
            )
            .map_err(|f| {
                fail(format!(
                    "{} (can the rootfs's file system be an overlayfs lower layer? 9p cannot: copy the rootfs to a local file system, or use --write-through)",
                    f.msg
                ))
            })?;
            merged
        }
        None => {
            // pivot_root needs the new root to be a mount point.
            bind(&spec.rootfs, &spec.rootfs, false)?;
            spec.rootfs.clone()
        }
    };

    let nosuid_nodev_noexec = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let proc_dir = join_in_root(&root, Path::new("/proc"))?;
    mkdir_p(&proc_dir)?;
    mnt(
        Some(Path::new("proc")),
        &proc_dir,
        Some("proc"),
        nosuid_nodev_noexec,
        None,
    )?;

    let sys_dir = join_in_root(&root, Path::new("/sys"))?;
    mkdir_p(&sys_dir)?;
    mnt(
        Some(Path::new("sysfs")),
        &sys_dir,
        Some("sysfs"),
        nosuid_nodev_noexec | MsFlags::MS_RDONLY,
        None,
    )?;
    if setup.cgroup2 {
        let cg = sys_dir.join("fs/cgroup");
        // Best effort: the container sees its own cgroup, read-only.
        if cg.is_dir() {
            let _ = mount(
                Some("cgroup2"),
                &cg,
                Some("cgroup2"),
                nosuid_nodev_noexec | MsFlags::MS_RDONLY,
                None::<&str>,
            );
        }
    }

    build_dev(&root, setup)?;

    for v in &spec.volumes {
        let target = join_in_root(&root, &v.container)?;
        if v.host.is_dir() {
            mkdir_p(&target)?;
        } else {
            touch(&target)?;
        }
        bind(&v.host, &target, v.readonly)?;
    }

    // Kernel interfaces a container has no business reading or changing.
    for masked in ["kcore", "keys", "timer_list", "sched_debug"] {
        let p = proc_dir.join(masked);
        if p.exists() {
            bind(Path::new("/dev/null"), &p, false)?;
        }
    }
    for ro in ["sys", "sysrq-trigger", "irq", "bus"] {
        let p = proc_dir.join(ro);
        if p.exists() {
            bind(&p, &p, true)?;
        }
    }
    Ok(root)
}

/// /dev as a tmpfs with the usual nodes bound from the host (mknod is
/// refused in a user namespace), a private devpts, shm and mqueue.
fn build_dev(root: &Path, setup: &ChildSetup) -> Step {
    let dev = join_in_root(root, Path::new("/dev"))?;
    mkdir_p(&dev)?;
    mnt(
        Some(Path::new("tmpfs")),
        &dev,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
    )?;
    for node in ["null", "zero", "full", "random", "urandom", "tty"] {
        let target = dev.join(node);
        touch(&target)?;
        bind(&Path::new("/dev").join(node), &target, false)?;
    }
    let pts = dev.join("pts");
    mkdir_p(&pts)?;
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC;
    if mount(
        Some("devpts"),
        &pts,
        Some("devpts"),
        flags,
        Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
    )
    .is_err()
    {
        // gid 5 (tty) may be unmapped in the user namespace.
        mnt(
            Some(Path::new("devpts")),
            &pts,
            Some("devpts"),
            flags,
            Some("newinstance,ptmxmode=0666,mode=0620"),
        )?;
    }
    let shm = dev.join("shm");
    mkdir_p(&shm)?;
    mnt(
        Some(Path::new("shm")),
        &shm,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=1777,size=65536k"),
    )?;
    let mqueue = dev.join("mqueue");
    mkdir_p(&mqueue)?;
    mnt(
        Some(Path::new("mqueue")),
        &mqueue,
        Some("mqueue"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None,
    )?;
    for (link, target) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("core", "/proc/kcore"),
    ] {
        std::os::unix::fs::symlink(target, dev.join(link))
            .ctx(|| format!("symlink /dev/{link}"))?;
    }
    if let Some((_, slave_path)) = &setup.pty_slave {
        let console = dev.join("console");
        touch(&console)?;
        bind(slave_path, &console, false)?;
    }
    Ok(())
}

/// pivot_root into `root` and drop the host's tree.
fn enter_root(root: &Path) -> Step {
    chdir(root).ctx(|| format!("chdir {}", root.display()))?;
    // pivot_root(".", ".") stacks the old root on the new one; detaching it
    // then leaves only the container's tree, with no put_old directory needed.
    pivot_root(".", ".").ctx(|| format!("pivot_root into {}", root.display()))?;
    umount2(".", MntFlags::MNT_DETACH).ctx(|| "detach the host's root".into())?;
    chdir("/").ctx(|| "chdir /".into())
}

fn environment(hostname: &str, tty: bool, user_env: &[(String, String)]) -> Vec<CString> {
    let mut vars: Vec<(String, String)> = vec![
        ("PATH".into(), DEFAULT_PATH.into()),
        ("HOSTNAME".into(), hostname.to_string()),
        ("HOME".into(), "/root".into()),
    ];
    if tty {
        let term = std::env::var("TERM").unwrap_or_else(|_| "xterm".into());
        vars.push(("TERM".into(), term));
    }
    for (k, v) in user_env {
        vars.retain(|(existing, _)| existing != k);
        vars.push((k.clone(), v.clone()));
    }
    vars.into_iter()
        .filter_map(|(k, v)| CString::new(format!("{k}={v}")).ok())
        .collect()
}

fn enter_workdir(dir: &Path) -> Step {
    if !dir.exists() {
        // As docker does: a missing working directory is created.
        mkdir_p(dir)?;
    }
    chdir(dir).ctx(|| format!("working directory {}", dir.display()))
}

/// The parent blocked the signals it forwards, and Rust ignores SIGPIPE;
/// both would be inherited across exec.
fn reset_signals() {
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    for sig in Signal::iterator() {
        if sig != Signal::SIGKILL && sig != Signal::SIGSTOP {
            // SAFETY: restoring the default disposition is always sound.
            unsafe {
                let _ = nix::sys::signal::signal(sig, nix::sys::signal::SigHandler::SigDfl);
            }
        }
    }
}

/// execve, searching the container's PATH for a bare name. 127 when nothing
/// is found, 126 when something is found but cannot be run.
fn exec(command: &[String], env: &[CString]) -> Step<Never> {
    let args: Vec<CString> = command
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<_, _>>()
        .map_err(|_| fail("the command holds a NUL byte"))?;
    let name = &command[0];
    let candidates: Vec<PathBuf> = if name.contains('/') {
        vec![PathBuf::from(name)]
    } else {
        let path = env
            .iter()
            .rev()
            .find_map(|e| e.to_str().ok()?.strip_prefix("PATH="))
            .unwrap_or(DEFAULT_PATH)
            .to_string();
        path.split(':')
            .filter(|d| !d.is_empty())
            .map(|d| Path::new(d).join(name))
            .collect()
    };
    let mut denied = None;
    for candidate in &candidates {
        let Ok(c_path) = CString::new(candidate.as_os_str().as_bytes()) else {
            continue;
        };
        let err = nix::unistd::execve(&c_path, &args, env).unwrap_err();
        match err {
            nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTDIR => continue,
            other => {
                denied.get_or_insert((candidate.clone(), other));
            }
        }
    }
    Err(match denied {
        Some((path, errno)) => Failure {
            code: exit::NOT_EXECUTABLE,
            msg: format!("cannot execute {}: {}", path.display(), errno.desc()),
        },
        None => Failure {
            code: exit::NOT_FOUND,
            msg: format!("command not found in the container: {name}"),
        },
    })
}
