//! Checks against the host, after pure parsing (`model`) and after any
//! pull: root, the rootfs (and the owner of a shifted one), the command
//! inside it and its architecture, cgroup v2 when limits are asked for,
//! volume host paths; and `rootfs pull --owner` against the host's users.

use crate::model::config::Config;
use crate::model::env::{command_candidates, search_path};
use crate::model::security::SeccompChoice;
use crate::model::spec::{Request, Spec};
use crate::model::userns::{check_base, suggest_base, BaseProblem, HostIds, UserNs, UserNsChoice};
use crate::sys::idrange::IdPool;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A request this host cannot run, refused before anything is created. The
/// sentence is whole: an I/O error that explains it is part of it, since the
/// facade prints this error alone.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("engine run needs root (namespaces, cgroups, networking): run it with sudo")]
    NotRoot,
    #[error("rootfs {} does not exist: give a directory holding a root filesystem, or a catalog name (busybox, debian, centos)", .0.display())]
    RootfsMissing(PathBuf),
    #[error("rootfs {} is not a directory: unpack it first (engine rootfs pull URL DEST)", .0.display())]
    RootfsNotDir(PathBuf),
    #[error("rootfs {} is not a root filesystem (no bin/ or usr/bin/): point to an unpacked distro root", .0.display())]
    RootfsNoBin(PathBuf),
    #[error("cannot resolve rootfs {}: {error}", .rootfs.display())]
    RootfsResolve {
        rootfs: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot stat rootfs {}: {error}", .rootfs.display())]
    RootfsStat {
        rootfs: PathBuf,
        error: std::io::Error,
    },
    #[error("--cpus {cpus} is more than the {host} CPUs of this host: give at most {host}")]
    TooManyCpus { cpus: f64, host: usize },
    #[error("resource limits need cgroup v2 with the cpu, memory and pids controllers, but {0}: run without --cpus/--memory/--pids-limit, or on a cgroup v2 host")]
    NoCgroup(crate::sys::cgroup::Unavailable),
    #[error("volume host path {0} does not exist: create it first or fix the path")]
    VolumeMissing(String),
    #[error("cannot resolve volume host path {host}: {error}")]
    VolumeResolve { host: String, error: std::io::Error },
    #[error("cannot read the seccomp profile {}: give the path of a docker profile JSON file: {error}", .path.display())]
    SeccompProfile {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot read {path}: {error}: the engine checks host IDs against it")]
    HostIds {
        path: &'static str,
        error: std::io::Error,
    },
    #[error("--owner {base} cannot be the first host ID of a rootfs ({why}): give {WHAT_BASE_IS}{suggestion}")]
    OwnerBase {
        base: u32,
        why: BaseProblem,
        /// ", such as N", or nothing.
        suggestion: String,
    },
    #[error("rootfs {} is owned by {uid}:{gid}, which cannot be the host IDs of its container ({which} {id}: {why}): give its root to 0:0 (`chown 0:0 {}`) to run it on IDs from the engine's pool, or pull it again with `engine rootfs pull --owner BASE`, BASE {WHAT_BASE_IS}{suggestion}", .rootfs.display(), .rootfs.display())]
    ShiftedOwner {
        rootfs: PathBuf,
        uid: u32,
        gid: u32,
        /// "uid" or "gid", and which of them is refused.
        which: &'static str,
        id: u32,
        why: BaseProblem,
        suggestion: String,
    },
    #[error("{cmd} in rootfs {} is built for {theirs}, which this {ours} host cannot run (no binfmt_misc handler): use a rootfs for {ours}, or install qemu-user-static", .rootfs.display())]
    Arch {
        cmd: String,
        rootfs: PathBuf,
        theirs: String,
        ours: &'static str,
    },
    #[error(transparent)]
    Pool(#[from] crate::sys::idrange::IdRangeError),
    #[error(transparent)]
    Userns(#[from] crate::model::userns::Error),
    #[error(transparent)]
    Security(#[from] crate::model::security::Error),
}

type Result<T, E = Error> = std::result::Result<T, E>;

pub fn require_root() -> Result<()> {
    if !rustix::process::geteuid().is_root() {
        return Err(Error::NotRoot);
    }
    Ok(())
}

/// A directory given as the rootfs: it must hold a root file system.
pub fn rootfs_dir(path: &Path) -> Result<PathBuf> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(_) => return Err(Error::RootfsMissing(path.to_owned())),
    };
    if !meta.is_dir() {
        return Err(Error::RootfsNotDir(path.to_owned()));
    }
    let has_bin = ["bin", "usr/bin"].iter().any(|d| path.join(d).is_dir());
    if !has_bin {
        return Err(Error::RootfsNoBin(path.to_owned()));
    }
    path.canonicalize().map_err(|error| Error::RootfsResolve {
        rootfs: path.to_owned(),
        error,
    })
}

/// Makes a parsed request a `Spec`, given the rootfs directory it runs on.
pub fn validate(req: Request, rootfs: PathBuf, cfg: &Config) -> Result<Spec> {
    if let Some(cpus) = req.limits.cpus {
        let host = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        if cpus > host as f64 {
            return Err(Error::TooManyCpus { cpus, host });
        }
    }
    if req.limits.any() {
        crate::sys::cgroup::check_available(&cfg.cgroup_root).map_err(Error::NoCgroup)?;
    }
    let userns = match req.userns {
        UserNsChoice::Fixed(u) => u,
        UserNsChoice::Auto => {
            let meta = std::fs::metadata(&rootfs).map_err(|error| Error::RootfsStat {
                rootfs: rootfs.clone(),
                error,
            })?;
            if meta.uid() == 0 {
                UserNs::Pool
            } else {
                shifted_rootfs_owner(&rootfs, meta.uid(), meta.gid())?
            }
        }
    };
    let layer_size = match req.layer_size {
        Some(bytes) => bytes,
        None => default_layer_size(),
    };
    let mut volumes = req.volumes;
    for v in &mut volumes {
        let host = v.host.display().to_string();
        if !v.host.exists() {
            return Err(Error::VolumeMissing(host));
        }
        v.host = v
            .host
            .canonicalize()
            .map_err(|error| Error::VolumeResolve { host, error })?;
    }
    let command = if req.command.is_empty() {
        vec![default_shell(&rootfs)]
    } else {
        req.command
    };
    check_command_arch(&rootfs, &command[0], &req.env, &req.workdir)?;
    // Detached containers have no terminal unless asked for one.
    let tty = req
        .tty
        .unwrap_or_else(|| !req.detach && rustix::termios::isatty(std::io::stdin()));
    Ok(Spec {
        name: req.name,
        generated_name: req.generated_name,
        hostname: req.hostname,
        rootfs,
        command,
        env: req.env,
        workdir: req.workdir,
        volumes,
        limits: req.limits,
        userns,
        network: req.network,
        ports: req.ports,
        dns: req.dns,
        tty,
        write_through: req.write_through,
        layer_size,
        verbose: req.verbose,
        detach: req.detach,
        rm: req.rm,
        origin: None,
        restart: false,
        confinement: crate::model::security::resolve(
            &req.security,
            seccomp_profile(&req.security.seccomp)?.as_deref(),
        )?,
        log_size_max: req.log_size_max,
        readonly_root: req.readonly_root,
        tmpfs: req.tmpfs,
        init: req.init,
        restart_policy: req.restart_policy,
        image: None,
        user: None,
    })
}

/// The content of the seccomp profile `--security-opt seccomp=FILE` names.
fn seccomp_profile(choice: &SeccompChoice) -> Result<Option<String>> {
    let SeccompChoice::Profile(path) = choice else {
        return Ok(None);
    };
    let json = std::fs::read_to_string(path).map_err(|error| Error::SeccompProfile {
        path: path.clone(),
        error,
    })?;
    Ok(Some(json))
}

/// Whose IDs a uid or gid belongs to on this host.
#[derive(Debug, Clone, Copy)]
enum IdKind {
    User,
    Group,
}

/// The IDs the host's account files hand out: each uid of /etc/passwd and
/// range of /etc/subuid (for `Group`: /etc/group and /etc/subgid). A file
/// that does not exist hands out nothing; a line that does not parse is
/// skipped, as the shadow tools do.
fn host_ids(kind: IdKind) -> Result<Vec<HostIds>> {
    let (accounts, subids, what) = match kind {
        IdKind::User => ("/etc/passwd", "/etc/subuid", "uid"),
        IdKind::Group => ("/etc/group", "/etc/subgid", "gid"),
    };
    let read = |path: &'static str| match std::fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(error) => Err(Error::HostIds { path, error }),
    };
    let mut ids = Vec::new();
    for line in read(accounts)?.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        if let Some(id) = fields.get(2).and_then(|f| f.parse::<u32>().ok()) {
            ids.push(HostIds {
                start: id,
                count: 1,
                what: format!("{what} {id} ({}) in {accounts}", fields[0]),
            });
        }
    }
    for line in read(subids)?.lines() {
        let fields: Vec<&str> = line.trim().split(':').collect();
        if let [name, start, count] = fields[..] {
            if let (Ok(start), Ok(count @ 1..)) = (start.parse::<u32>(), count.parse::<u32>()) {
                let end = u64::from(start) + u64::from(count);
                ids.push(HostIds {
                    start,
                    count: count.min(u32::MAX - start),
                    what: format!("the range {start}..{} of {name} in {subids}", end - 1),
                });
            }
        }
    }
    Ok(ids)
}

/// `rootfs pull --owner BASE`: refused (before anything is created) unless
/// BASE is a base the engine would choose itself (`model::userns::check_base`).
pub fn owner_base(base: u32) -> Result<()> {
    let pool = IdPool::from_env()?;
    let (uids, gids) = (host_ids(IdKind::User)?, host_ids(IdKind::Group)?);
    let problem = check_base(base, &pool, &uids)
        .err()
        .or_else(|| check_base(base, &pool, &gids).err());
    let Some(why) = problem else {
        return Ok(());
    };
    Err(Error::OwnerBase {
        base,
        why,
        suggestion: suggestion(&pool, &uids, &gids),
    })
}

/// `--userns auto` on a rootfs whose root is not owned by host root: the
/// map 0 -> its owner, if uid and gid owner are bases the engine would
/// choose itself. Whoever made the rootfs (a tarball's `./`, a `chown`)
/// must not choose the host IDs its container runs as.
fn shifted_rootfs_owner(rootfs: &Path, uid: u32, gid: u32) -> Result<UserNs> {
    let pool = IdPool::from_env()?;
    let (uids, gids) = (host_ids(IdKind::User)?, host_ids(IdKind::Group)?);
    let problem = match (check_base(uid, &pool, &uids), check_base(gid, &pool, &gids)) {
        (Err(why), _) => Some(("uid", uid, why)),
        (_, Err(why)) => Some(("gid", gid, why)),
        _ => None,
    };
    let Some((which, id, why)) = problem else {
        return Ok(UserNs::map(uid, gid)?);
    };
    Err(Error::ShiftedOwner {
        rootfs: rootfs.to_owned(),
        uid,
        gid,
        which,
        id,
        why,
        suggestion: suggestion(&pool, &uids, &gids),
    })
}

/// What `check_base` accepts, for messages.
const WHAT_BASE_IS: &str = "a multiple of 65536, at least 65536, whose 65536 IDs overlap no user or group of the host, no range of /etc/subuid or /etc/subgid and not the engine's pool";

fn suggestion(pool: &IdPool, uids: &[HostIds], gids: &[HostIds]) -> String {
    suggest_base(pool, uids, gids)
        .map(|b| format!(", such as {b}"))
        .unwrap_or_default()
}

/// A quarter of the host's RAM. tmpfs would default to half, which lets one
/// container's writes (in RAM, and only charged to its memory limit when it
/// has one) starve the host; a quarter still fits a distro's package
/// installs. sysinfo(2) is one cheap syscall.
fn default_layer_size() -> u64 {
    // rustix's sysinfo cannot fail (the syscall only faults on a bad pointer).
    let info = rustix::system::sysinfo();
    let ram_total = info.totalram * u64::from(info.mem_unit);
    let quarter = ram_total / 4;
    quarter.max(crate::model::limits::MIN_LAYER_SIZE)
}

/// `path` as the container will see it, if it exists there.
fn existing_in_root(root: &Path, path: &Path) -> Option<PathBuf> {
    crate::sys::path::resolve_in_rootfs(root, path)
        .ok()
        .filter(|p| p.exists())
}

fn default_shell(rootfs: &Path) -> String {
    if existing_in_root(rootfs, Path::new("/bin/bash")).is_some() {
        "/bin/bash".into()
    } else {
        "/bin/sh".into()
    }
}

/// Finds the command as the container's exec will (the same PATH search).
fn find_command(
    rootfs: &Path,
    cmd: &str,
    env: &[(String, String)],
    workdir: &Path,
) -> Option<PathBuf> {
    let path = search_path(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    command_candidates(cmd, path)
        .into_iter()
        .find_map(|c| existing_in_root(rootfs, &workdir.join(c)).filter(|p| p.is_file()))
}

/// Refuses a command built for an architecture this host cannot run (no
/// binfmt_misc handler), instead of a bare "Exec format error" later.
fn check_command_arch(
    rootfs: &Path,
    cmd: &str,
    env: &[(String, String)],
    workdir: &Path,
) -> Result<()> {
    use crate::sys::arch::{arch_machine, elf_machine, host_arch, machine_arch};
    let Some(path) = find_command(rootfs, cmd, env, workdir) else {
        return Ok(()); // not found: exec reports 127 with the container's own view
    };
    let Ok(Some(machine)) = elf_machine(&path) else {
        return Ok(());
    };
    if Some(machine) == arch_machine(host_arch()) || binfmt_handles(machine) {
        return Ok(());
    }
    let theirs = machine_arch(machine)
        .map(str::to_string)
        .unwrap_or_else(|| format!("ELF machine {machine}"));
    let ours = host_arch();
    Err(Error::Arch {
        cmd: cmd.into(),
        rootfs: rootfs.to_owned(),
        theirs,
        ours,
    })
}

/// Whether an enabled binfmt_misc entry matches ELF files for `machine`
/// (its magic covers e_machine at byte offset 18, little endian).
fn binfmt_handles(machine: u16) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc/sys/fs/binfmt_misc") else {
        return false;
    };
    let want = [machine as u8, (machine >> 8) as u8];
    dir.flatten().any(|entry| {
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            return false;
        };
        if !text.lines().any(|l| l == "enabled") {
            return false;
        }
        let magic = text
            .lines()
            .find_map(|l| l.strip_prefix("magic "))
            .and_then(hex_bytes);
        let offset = text
            .lines()
            .find_map(|l| l.strip_prefix("offset "))
            .and_then(|o| o.trim().parse::<usize>().ok())
            .unwrap_or(0);
        match magic {
            Some(m) if offset == 0 && m.len() >= 20 && m.starts_with(b"\x7fELF") => {
                m[18..20] == want
            }
            _ => false,
        }
    })
}

fn hex_bytes(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_seccomp_profile_is_named() {
        let choice = SeccompChoice::Profile("/nonexistent/p.json".into());
        let err = seccomp_profile(&choice).unwrap_err();
        assert!(
            format!("{err:#}").contains("/nonexistent/p.json"),
            "{err:#}"
        );
        assert_eq!(seccomp_profile(&SeccompChoice::Default).unwrap(), None);
    }

    #[test]
    fn binfmt_magic_parses() {
        assert_eq!(hex_bytes("7f454c46"), Some(vec![0x7f, b'E', b'L', b'F']));
        assert_eq!(hex_bytes("zz"), None);
    }
}
