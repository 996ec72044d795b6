//! Runs a command in a QEMU guest that sees the host's own files.
//!
//! The guest boots Debian's bookworm-backports kernel (6.12) with an initramfs built here
//! (busybox and the needed modules), mounts the host's `/` read-only over 9p
//! (with tmpfs where writes are needed, and the directories asked for shared
//! read-write at the same paths), mounts cgroup2 alone with `cpu memory pids`
//! enabled for children, has no network device, and runs the command as root
//! in the same working directory. Its output is streamed live; its exit code
//! is returned. A guest of another architecture (arm64 on an amd64 host) gets
//! a Debian root of its own, built once, with the workspace shared into it.
//!
//! ```no_run
//! let code = vm::run(&vm::VmConfig::default(), &["true".to_string()])?;
//! # Ok::<(), anyhow::Error>(())
//! ```
//!
//! Everything fetched or built is cached under `<target>/vm/` (see
//! [`target_dir`]): `kernel/` (the unpacked kernel packages), `initramfs/`,
//! `arm64-root/` (or `amd64-root/` on an arm64 host), and `run/` (one
//! directory per running guest, removed after it). Environment overrides:
//! `VM_KERNEL_PACKAGE` (a kernel package from the host's own apt lists,
//! instead of Debian's bookworm-backports `linux-image-<arch>`, 6.12),
//! `VM_DEBIAN_MIRROR` (for the foreign root; default: the host's Debian
//! source), `VM_BUSYBOX` (the host's static busybox), `VM_ACCEL` (the
//! default accelerator: auto, kvm or tcg).

mod cache;
mod cpio;
mod initramfs;
mod kernel;
mod modules;
mod probe;
mod qemu;
mod root;
mod script;

use anyhow::{bail, Context, Result};
use script::Share;
use std::path::{Path, PathBuf};
use std::time::Duration;
use testkit::elf;

pub use cache::target_dir;

/// The guest's architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arch {
    Amd64,
    Arm64,
}

impl Arch {
    /// The architecture this program was built for.
    pub fn host() -> Arch {
        if cfg!(target_arch = "aarch64") {
            Arch::Arm64
        } else {
            Arch::Amd64
        }
    }

    /// Debian's name for it.
    pub fn debian(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }

    fn qemu(self) -> &'static str {
        match self {
            Arch::Amd64 => "qemu-system-x86_64",
            Arch::Arm64 => "qemu-system-aarch64",
        }
    }

    fn qemu_package(self) -> &'static str {
        match self {
            Arch::Amd64 => "qemu-system-x86",
            Arch::Arm64 => "qemu-system-arm",
        }
    }

    fn elf_machine(self) -> u16 {
        match self {
            Arch::Amd64 => elf::EM_X86_64,
            Arch::Arm64 => elf::EM_AARCH64,
        }
    }
}

impl std::str::FromStr for Arch {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Arch> {
        match s {
            "amd64" | "x86_64" => Ok(Arch::Amd64),
            "arm64" | "aarch64" => Ok(Arch::Arm64),
            _ => bail!("unknown architecture {s:?}: use amd64 or arm64"),
        }
    }
}

/// How QEMU runs the guest's CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// KVM when a test guest shows that it works here, else TCG.
    Auto,
    /// KVM, or an error.
    Kvm,
    /// Software emulation.
    Tcg,
}

impl std::str::FromStr for Accel {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Accel> {
        match s {
            "auto" => Ok(Accel::Auto),
            "kvm" => Ok(Accel::Kvm),
            "tcg" => Ok(Accel::Tcg),
            _ => bail!("unknown accelerator {s:?}: use auto, kvm or tcg"),
        }
    }
}

/// One guest and what its command sees.
#[derive(Debug, Clone)]
pub struct VmConfig {
    pub arch: Arch,
    pub accel: Accel,
    /// QEMU's `-m`: `2G`, `512M`, or a number of MiB.
    pub memory: String,
    pub cpus: u32,
    /// A guest still running after this is killed: an error.
    pub timeout: Duration,
    /// A kernel image; default: Debian's bookworm-backports
    /// `linux-image-<arch>` (6.12: idmapped tmpfs needs 6.3), fetched with
    /// `apt-get download` and cached under `<target>/vm/`.
    pub kernel: Option<PathBuf>,
    /// The command runs in the same path in the guest.
    pub workdir: PathBuf,
    /// Exported to the command, after `PATH` and `HOME=/root` (so these may
    /// be overridden).
    pub env: Vec<(String, String)>,
    /// Host directories shared read-write at the same path in the guest.
    pub writable: Vec<PathBuf>,
}

impl Default for VmConfig {
    fn default() -> Self {
        VmConfig {
            arch: Arch::host(),
            // For a host whose KVM passes the probe but hangs real guests.
            accel: std::env::var("VM_ACCEL")
                .ok()
                .and_then(|a| a.parse().ok())
                .unwrap_or(Accel::Auto),
            memory: "2G".into(),
            cpus: 2,
            timeout: Duration::from_secs(600),
            kernel: None,
            workdir: std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
            env: Vec::new(),
            writable: Vec::new(),
        }
    }
}

/// Boots a guest, runs `command` in it and returns its exit code (docker's
/// conventions: 128+N when killed by signal N, 126/127 when it cannot be
/// executed or found). The command's stdout and stderr are copied live to
/// ours. A guest that panics, fails to boot or outlives `cfg.timeout` is an
/// error, whose message ends with the tail of the guest's console.
pub fn run(cfg: &VmConfig, command: &[String]) -> Result<i32> {
    let checked = check(cfg)?;
    let run_sh = script::run(&cfg.workdir, &cfg.env, command)?;
    let kvm = use_kvm(cfg)?;
    let foreign = cfg.arch != Arch::host();

    // The guest's root, kernel and the busybox for its initramfs.
    let (root, kernel, busybox) = if foreign {
        let root = root::foreign(cfg.arch)?;
        let kernel = match &cfg.kernel {
            Some(k) => kernel::from_path(k)?,
            None => kernel::from_backports(cfg.arch)?,
        };
        let busybox = root.join("bin/busybox");
        (root, kernel, busybox)
    } else {
        let kernel = match &cfg.kernel {
            Some(k) => kernel::from_path(k)?,
            None => match std::env::var("VM_KERNEL_PACKAGE") {
                Ok(meta) => kernel::from_package(cfg.arch, &meta)?,
                Err(_) => kernel::from_backports(cfg.arch)?,
            },
        };
        (PathBuf::from("/"), kernel, host_busybox())
    };
    let base = initramfs::base(&kernel, &busybox, cfg.arch)?;

    let shares = shares(&checked, foreign, &cfg.workdir, command);
    if foreign {
        for s in &shares {
            root::mountpoint(&root, &s.path)?;
        }
    }
    let config_sh = script::config(&shares)?;

    let dir = RunDir::create()?;
    let initrd = dir.0.join("initrd.cpio");
    initramfs::with_run_files(
        &base,
        &[("config.sh", &config_sh), ("run.sh", &run_sh)],
        &initrd,
    )?;
    let guest = |kvm| qemu::Guest {
        arch: cfg.arch,
        kvm,
        memory: &cfg.memory,
        cpus: cfg.cpus,
        kernel: &kernel.image,
        initrd: &initrd,
        root: &root,
        shares: &shares,
        timeout: cfg.timeout,
        console_log: dir.0.join("console.log"),
        qemu_log: dir.0.join("qemu.log"),
    };
    match qemu::run(&guest(kvm)) {
        Err(e) if kvm && cfg.accel == Accel::Auto && e.is::<qemu::KvmBroken>() => {
            eprintln!("vm: {e}; using TCG from now on");
            probe::mark_broken(cfg.arch);
            qemu::run(&guest(false))
        }
        other => other,
    }
}

/// The configuration's directories, resolved, once its values are known
/// to be sane.
struct Checked {
    workdir: PathBuf,
    writable: Vec<PathBuf>,
}

fn check(cfg: &VmConfig) -> Result<Checked> {
    let m = cfg
        .memory
        .trim_end_matches(['K', 'M', 'G', 'T', 'k', 'm', 'g', 't']);
    if m.is_empty()
        || !m.bytes().all(|b| b.is_ascii_digit())
        || cfg.memory.len() > m.len() + 1
        || m.parse::<u64>().map_or(true, |n| n == 0)
    {
        bail!(
            "memory size {:?} is not valid: use e.g. 2G or 512M",
            cfg.memory
        );
    }
    if cfg.cpus == 0 || cfg.cpus > 64 {
        bail!("cpus {} is not valid: use 1 to 64", cfg.cpus);
    }
    if cfg.timeout.is_zero() {
        bail!("timeout must be more than 0 seconds");
    }
    if !cfg.workdir.is_absolute() {
        bail!(
            "working directory {} must be an absolute path",
            cfg.workdir.display()
        );
    }
    let workdir = std::fs::canonicalize(&cfg.workdir)
        .ok()
        .filter(|p| p.is_dir())
        .with_context(|| format!("working directory {} does not exist", cfg.workdir.display()))?;
    let mut writable = Vec::new();
    for w in &cfg.writable {
        let dir = std::fs::canonicalize(w)
            .ok()
            .filter(|p| p.is_dir())
            .with_context(|| format!("writable directory {} does not exist", w.display()))?;
        script::path_str(&dir)?;
        if dir == Path::new("/") {
            bail!("the host's / cannot be shared writable: name the directories the guest writes");
        }
        writable.push(dir);
    }
    Ok(Checked { workdir, writable })
}

fn use_kvm(cfg: &VmConfig) -> Result<bool> {
    match cfg.accel {
        Accel::Tcg => Ok(false),
        Accel::Auto => Ok(probe::kvm_works(cfg.arch)),
        Accel::Kvm if cfg.arch != Arch::host() => bail!(
            "KVM cannot run an {} guest on this {} host: use --accel tcg",
            cfg.arch.debian(),
            Arch::host().debian()
        ),
        Accel::Kvm if !probe::kvm_works(cfg.arch) => bail!(
            "KVM does not work here (/dev/kvm is missing or not usable, or a test guest failed under it): use --accel tcg"
        ),
        Accel::Kvm => Ok(true),
    }
}

/// A static busybox of `arch`: the host's for the host's architecture,
/// else the one of the foreign root (built first if it is not cached).
pub fn static_busybox(arch: Arch) -> Result<PathBuf> {
    if arch == Arch::host() {
        Ok(host_busybox())
    } else {
        Ok(root::foreign(arch)?.join("bin/busybox"))
    }
}

/// The host's static busybox (`VM_BUSYBOX` overrides).
fn host_busybox() -> PathBuf {
    if let Some(p) = std::env::var_os("VM_BUSYBOX") {
        return p.into();
    }
    ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("/bin/busybox"))
}

/// Where the guest mounts a fresh tmpfs over the host's root: host files
/// there are hidden unless shared on their own.
const GUEST_TMPFS: [&str; 3] = ["/tmp", "/run", "/var/tmp"];

/// The directories shared into the guest besides its root: the writable
/// ones, and (read-only) the workspace, the target directory, the working
/// directory and the program's directory where the guest would not see them
/// otherwise: always for a foreign root (cross-built binaries run from the
/// same paths), and under the guest's tmpfs mounts for the host's own root
/// (a checkout in /tmp). Nested ones are skipped; parents mount first.
fn shares(checked: &Checked, foreign: bool, workdir: &Path, command: &[String]) -> Vec<Share> {
    let mut out: Vec<Share> = checked
        .writable
        .iter()
        .enumerate()
        .map(|(i, p)| Share {
            tag: format!("rw{i}"),
            path: p.clone(),
            writable: true,
        })
        .collect();
    let mut wanted = vec![
        cache::workspace_dir(),
        target_dir(),
        checked.workdir.clone(),
    ];
    if let Some(program) = command.first().filter(|c| c.contains('/')) {
        if let Some(dir) = workdir.join(program).parent() {
            wanted.push(dir.to_path_buf());
        }
    }
    let mut read_only: Vec<PathBuf> = wanted
        .iter()
        .filter_map(|p| std::fs::canonicalize(p).ok())
        .filter(|p| p.is_dir() && p != Path::new("/"))
        .filter(|p| foreign || GUEST_TMPFS.iter().any(|t| p.starts_with(t)))
        .collect();
    read_only.sort_by_key(|p| p.components().count());
    let mut chosen: Vec<PathBuf> = Vec::new();
    for p in read_only {
        let covered = chosen
            .iter()
            .chain(&checked.writable)
            .any(|c| p.starts_with(c));
        if !covered {
            chosen.push(p);
        }
    }
    out.extend(chosen.into_iter().enumerate().map(|(i, path)| Share {
        tag: format!("ro{i}"),
        path,
        writable: false,
    }));
    // A writable directory inside a read-only share must mount after it.
    out.sort_by_key(|s| s.path.components().count());
    out
}

/// A private directory for one run's files (initrd, console log), removed
/// when dropped; those of runs whose process died are removed on the next
/// run.
struct RunDir(PathBuf);

impl RunDir {
    fn create() -> Result<RunDir> {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let runs = cache::vm_dir()?.join("run");
        std::fs::create_dir_all(&runs).with_context(|| format!("create {}", runs.display()))?;
        remove_stale(&runs);
        let pid = std::process::id();
        let dir = runs.join(format!("{pid}-{}", NEXT.fetch_add(1, Ordering::Relaxed)));
        std::fs::create_dir(&dir).with_context(|| format!("create {}", dir.display()))?;
        Ok(RunDir(dir))
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn remove_stale(runs: &Path) {
    let Ok(entries) = std::fs::read_dir(runs) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let pid = name
            .to_str()
            .and_then(|n| n.split('-').next()?.parse::<i32>().ok());
        // Signal 0 only checks whether the process exists.
        let dead = pid.is_some_and(|pid| {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
                == Err(nix::errno::Errno::ESRCH)
        });
        if dead {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_configurations_are_refused_before_anything_runs() {
        let ok = VmConfig {
            workdir: "/".into(),
            ..VmConfig::default()
        };
        assert!(check(&ok).is_ok());
        for memory in ["", "G", "2X", "2GG", "-1G", "0", "1.5G"] {
            let cfg = VmConfig {
                memory: memory.into(),
                ..ok.clone()
            };
            assert!(check(&cfg).is_err(), "memory {memory:?}");
        }
        for memory in ["2G", "512M", "1024", "4g"] {
            let cfg = VmConfig {
                memory: memory.into(),
                ..ok.clone()
            };
            assert!(check(&cfg).is_ok(), "memory {memory:?}");
        }
        let bad = [
            VmConfig {
                cpus: 0,
                ..ok.clone()
            },
            VmConfig {
                timeout: Duration::ZERO,
                ..ok.clone()
            },
            VmConfig {
                workdir: "relative".into(),
                ..ok.clone()
            },
            VmConfig {
                workdir: "/nonexistent/dir".into(),
                ..ok.clone()
            },
            VmConfig {
                writable: vec!["/nonexistent/dir".into()],
                ..ok.clone()
            },
            VmConfig {
                writable: vec!["/".into()],
                ..ok.clone()
            },
        ];
        for cfg in bad {
            assert!(check(&cfg).is_err(), "{cfg:?}");
        }
    }

    #[test]
    fn foreign_guests_share_the_workspace_once() {
        let ws = cache::workspace_dir();
        let checked = Checked {
            workdir: ws.clone(),
            writable: vec![],
        };
        let s = shares(&checked, true, &ws, &["target/x/debug/prog".into()]);
        let paths: Vec<_> = s.iter().map(|s| s.path.clone()).collect();
        let ws = std::fs::canonicalize(ws).unwrap();
        assert!(paths.contains(&ws), "{paths:?}");
        for p in &paths {
            assert!(
                p == &ws || !p.starts_with(&ws),
                "{p:?} nested in the workspace"
            );
        }
        // The host's own root hides only what lies under the guest's tmpfs.
        let own = shares(&checked, false, &ws, &["x".into()]);
        if GUEST_TMPFS.iter().any(|t| ws.starts_with(t)) {
            assert!(own.iter().any(|s| s.path == ws && !s.writable), "{paths:?}");
        } else {
            assert!(own.is_empty());
        }
    }

    #[test]
    fn hidden_checkouts_are_shared_parents_first() {
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path().to_path_buf();
        let inner = dir.join("target/harness/run");
        std::fs::create_dir_all(&inner).unwrap();
        let dir = std::fs::canonicalize(&dir).unwrap();
        let inner = std::fs::canonicalize(&inner).unwrap();
        let checked = Checked {
            workdir: dir.clone(),
            writable: vec![inner.clone()],
        };
        let s = shares(&checked, false, &dir, &["x".into()]);
        let order: Vec<(PathBuf, bool)> = s.iter().map(|s| (s.path.clone(), s.writable)).collect();
        if GUEST_TMPFS.iter().any(|t| dir.starts_with(t)) {
            let ro = order
                .iter()
                .position(|(p, w)| p == &dir && !w)
                .expect("workdir shared");
            let rw = order
                .iter()
                .position(|(p, w)| p == &inner && *w)
                .expect("writable shared");
            assert!(ro < rw, "{order:?}");
        }
    }

    #[test]
    fn names_parse() {
        assert_eq!("arm64".parse::<Arch>().unwrap(), Arch::Arm64);
        assert_eq!("aarch64".parse::<Arch>().unwrap(), Arch::Arm64);
        assert_eq!("tcg".parse::<Accel>().unwrap(), Accel::Tcg);
        assert!("sparc".parse::<Arch>().is_err());
        assert!("xen".parse::<Accel>().is_err());
    }
}
