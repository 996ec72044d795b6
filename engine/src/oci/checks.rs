//! Checks of a planned bundle against the host, before anything is
//! created: the namespaces given by path, the createContainer hooks'
//! files, and (without cgroup v2) the device nodes bound in.

use super::config;
use anyhow::{anyhow, bail, Context, Result};
use rustix::thread::LinkNameSpaceType as NsType;
use std::os::fd::OwnedFd;
use std::path::Path;

/// Whether host root is mapped into the container: no user namespace, or
/// linux.uidMappings/gidMappings that hold host uid or gid 0.
pub(super) fn maps_host_root(plan: &config::Plan) -> bool {
    let ranges = |m: &[crate::parent::create::IdMapping]| {
        crate::model::userns::ranges_hold_host_root(m.iter().map(|m| (m.host, m.size)))
    };
    plan.spec.userns.maps_host_root() || ranges(&plan.uid_map) || ranges(&plan.gid_map)
}

/// The namespaces given by path, opened and checked (`check_namespace`).
/// A path to the caller's own pid, ipc, uts, network or cgroup namespace
/// (a pod whose sandbox shares the host's: HostPID, HostNetwork...) is the
/// same as leaving the path out: it is not joined, and the engine writes
/// into it what it writes into a shared one, nothing (an IPC sysctl is
/// refused, as where the entry is left out).
pub(super) fn open_namespaces(plan: &config::Plan) -> Result<Vec<(OwnedFd, NsType)>> {
    let mut join = Vec::new();
    for (p, f) in &plan.join {
        let fd = rustix::fs::open(
            p,
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(|e| {
            anyhow!(
                "config.json linux.namespaces path {}: cannot open it: {e}",
                p.display()
            )
        })?;
        if check_namespace(&fd, *f, p)? == Whose::Callers {
            if *f == NsType::InterProcessCommunication
                && plan
                    .extras
                    .sysctl
                    .iter()
                    .any(|(k, _)| config::is_ipc_sysctl(k))
            {
                bail!(
                    "config.json linux.namespaces ipc path {} is the caller's own IPC namespace, where linux.sysctl's IPC keys would be written: remove them, or give the container an IPC namespace of its own",
                    p.display()
                );
            }
            continue;
        }
        join.push((fd, *f));
    }
    Ok(join)
}

/// Whose namespace a path names.
#[derive(Debug, PartialEq, Eq)]
enum Whose {
    /// The engine's own (its caller's): joining it changes nothing.
    Callers,
    Another,
}

/// The createContainer hooks' files, opened here, in the runtime's mount
/// namespace (see child::create_container_hooks).
pub(super) fn open_create_container_hooks(plan: &config::Plan) -> Result<Vec<OwnedFd>> {
    plan.extras
        .create_container
        .iter()
        .enumerate()
        .map(|(i, hook)| open_hook(i, &hook.path))
        .collect()
}

/// An O_PATH fd of a createContainer hook's file, which must be a regular file.
fn open_hook(i: usize, path: &Path) -> Result<OwnedFd> {
    let field = format!(
        "config.json hooks.createContainer[{i}].path {}",
        path.display()
    );
    let fd = rustix::fs::open(
        path,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| anyhow!("{field}: cannot open it: {e}"))?;
    let st = rustix::fs::fstat(&fd).map_err(|e| anyhow!("{field}: cannot stat it: {e}"))?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
        bail!("{field} is not a regular file");
    }
    Ok(fd)
}

/// A namespace given by path is a namespace of the type its entry names;
/// the host's (PID 1's) is refused unless it is the engine's own too, and
/// for mount and user so is the engine's own: the init would pivot_root in
/// the caller's mount namespace (moving every process whose root is `/`
/// into the container's root). Says whether it is the engine's own.
fn check_namespace(fd: &OwnedFd, kind: NsType, path: &Path) -> Result<Whose> {
    use std::os::fd::AsRawFd;
    let name = match kind {
        NsType::User => "user",
        NsType::Mount => "mount",
        NsType::Network => "network",
        NsType::ProcessID => "pid",
        NsType::InterProcessCommunication => "ipc",
        NsType::HostNameAndNISDomainName => "uts",
        _ => "other",
    };
    // NS_GET_NSTYPE (Linux 4.11): _IO(0xb7, 0x3).
    const NS_GET_NSTYPE: libc::c_ulong = 0xb703;
    // SAFETY: an ioctl without argument on an fd we own; it only returns an int.
    let ty = unsafe { libc::ioctl(fd.as_raw_fd(), NS_GET_NSTYPE as _) };
    if ty < 0 {
        bail!(
            "config.json linux.namespaces {name} path {} is not a namespace (a /proc/PID/ns/* file or a bind mount of one)",
            path.display()
        );
    }
    if ty != kind as i32 {
        bail!(
            "config.json linux.namespaces {name} path {} is not a {name} namespace",
            path.display()
        );
    }
    // The engine's own namespaces are the host's (or its caller's): a
    // container joined to one would write into it (sysctls, hostname, mounts).
    let file = match name {
        "mount" => "mnt",
        "network" => "net",
        other => other,
    };
    let st = rustix::fs::fstat(fd)
        .with_context(|| format!("cannot stat namespace {}", path.display()))?;
    let is = |own: &str| {
        rustix::fs::stat(format!("/proc/{own}/ns/{file}").as_str())
            .is_ok_and(|o| (o.st_dev, o.st_ino) == (st.st_dev, st.st_ino))
    };
    let (callers, hosts) = (is("self"), is("1"));
    if callers && !matches!(name, "mount" | "user") {
        return Ok(Whose::Callers);
    }
    if callers || hosts {
        let hint = if name == "user" {
            "leave the user entry out, and the container has none"
        } else {
            "leave the path out, and a new one is made"
        };
        bail!(
            "config.json linux.namespaces {name} path {} is the host's own {name} namespace: {hint}",
            path.display()
        );
    }
    Ok(Whose::Another)
}

/// Without cgroup v2 there is no device filter. What a container can open
/// is then the engine's /dev nodes (null, zero, full, random, urandom, tty,
/// the console and its ptys: runc's allow list, which no rule can take
/// away) and the device nodes a bundle binds in as files: every writable
/// mount is nodev (`child::mounts`). So a bound device node that the rules
/// do not allow is refused here, and every rule is kept.
pub(super) fn check_bound_devices(plan: &config::Plan) -> Result<()> {
    use crate::sys::devices::{self, Kind};
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    for v in &plan.spec.volumes {
        let Ok(meta) = std::fs::metadata(&v.host) else {
            continue;
        };
        let kind = match meta.file_type() {
            t if t.is_block_device() => Kind::Block,
            t if t.is_char_device() => Kind::Char,
            _ => continue,
        };
        let (major, minor) = (
            rustix::fs::major(meta.rdev()),
            rustix::fs::minor(meta.rdev()),
        );
        let access = if v.readonly {
            devices::READ
        } else {
            devices::READ | devices::WRITE
        };
        if !devices::allows(&plan.device_rules, kind, major, minor, access) {
            bail!(
                "config.json mounts {}: {} is a device ({major}:{minor}) that linux.resources.devices does not allow, and this host has no cgroup v2 device filter to stop it being opened: allow it in linux.resources.devices, or remove the mount",
                v.container.display(),
                v.host.display()
            );
        }
    }
    Ok(())
}

/// The capabilities a process is to hold (permitted, and inheritable,
/// which the kernel keeps within the bounding set) must be in the engine's
/// own bounding set: no process can gain one from outside it, and capset
/// would fail in the init with a bare EPERM (this project's hosts lack
/// CAP_SYS_RESOURCE, for instance).
pub(super) fn check_capabilities(plan: &config::Plan) -> Result<()> {
    let conf = &plan.spec.confinement;
    let sets = conf.process_sets();
    let asked = sets.permitted.bits() | sets.inheritable.bits();
    let missing: Vec<String> = crate::sys::caps::CapSet::from_bits(asked)
        .iter()
        .filter(|cap| {
            let one = rustix::thread::CapabilitySet::from_bits_retain(1 << cap.number());
            rustix::thread::capability_is_in_bounding_set(one) == Ok(false)
        })
        .map(|cap| cap.to_string())
        .collect();
    if !missing.is_empty() {
        bail!(
            "config.json process.capabilities asks for {}, which this host's bounding set does not hold (no process here can have it): remove it from the config",
            missing.join(", ")
        );
    }
    Ok(())
}
