//! A bundle's config.json (parsed by the `oci-spec` crate) made into the
//! engine's own validated description (`Spec`) plus what only OCI asks
//! (`model::bundle::Extras`), before anything is created. Every field the
//! engine cannot honour is refused with a sentence naming it.

use crate::model::bundle::{
    BindOptions, Device, DeviceKind, Extras, MountEntry, Rlimit, TmpfsMount, User,
};
use crate::model::security::{Confinement, Filter, ProcessCaps};
use crate::model::spec::Spec;
use crate::model::userns::UserNs;
use crate::model::volumes::{Ownership, Volume};
use crate::parent::create::IdMapping;
use crate::sys::caps::{Cap, CapSet};
use anyhow::{anyhow, bail, Context, Result};
use oci_spec::runtime::{self as rt, LinuxNamespaceType};
use rustix::thread::LinkNameSpaceType as NsType;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A parsed bundle.
pub struct Bundle {
    /// Absolute.
    pub dir: PathBuf,
    pub config: rt::Spec,
}

/// Hooks in the order the spec gives them.
#[derive(Debug, Clone, Default)]
pub struct Hooks {
    pub prestart: Vec<rt::Hook>,
    pub create_runtime: Vec<rt::Hook>,
    pub poststart: Vec<rt::Hook>,
    pub poststop: Vec<rt::Hook>,
}

/// Everything `create` needs, checked.
pub struct Plan {
    pub spec: Spec,
    pub extras: Extras,
    pub new_namespaces: u64,
    pub join: Vec<(PathBuf, NsType)>,
    pub uid_map: Vec<IdMapping>,
    pub gid_map: Vec<IdMapping>,
    pub oom_score_adj: Option<i32>,
    pub console_size: Option<(u16, u16)>,
    pub hooks: Hooks,
    pub cgroups_path: Option<PathBuf>,
    pub annotations: HashMap<String, String>,
    /// linux.resources.devices, then runc's allow list (`sys::devices`).
    pub device_rules: Vec<crate::sys::devices::Rule>,
}

/// Reads BUNDLE/config.json.
pub fn load(bundle: &Path) -> Result<Bundle> {
    let dir = std::path::absolute(bundle)
        .with_context(|| format!("cannot resolve bundle {}", bundle.display()))?;
    if !dir.is_dir() {
        bail!(
            "bundle {} is not a directory: give --bundle the directory that holds config.json",
            dir.display()
        );
    }
    let file = dir.join("config.json");
    let text = std::fs::read_to_string(&file).map_err(|e| {
        anyhow!(
            "cannot read {}: {e}: the bundle needs a config.json (runc spec writes one)",
            file.display()
        )
    })?;
    let config: rt::Spec = serde_json::from_str(&text)
        .map_err(|e| anyhow!("{} is not a valid OCI runtime config: {e}", file.display()))?;
    Ok(Bundle { dir, config })
}

/// ociVersion 1.0 to 1.3 (any patch level or pre-release).
fn check_version(v: &str) -> Result<()> {
    let mut parts = v.split(['.', '-', '+']);
    let (major, minor) = (parts.next(), parts.next());
    match (major, minor.and_then(|m| m.parse::<u32>().ok())) {
        (Some("1"), Some(0..=3)) => Ok(()),
        _ => bail!("config.json ociVersion {v:?} is not supported: this engine reads 1.0 to 1.3"),
    }
}

fn refuse(field: &str) -> anyhow::Error {
    anyhow!("config.json {field} is not supported by this engine: remove it from the config")
}

/// Makes the config a plan; refuses what cannot be honoured. Pure but for
/// the bundle's rootfs, which must be a directory.
pub fn plan(id: &str, bundle: &Bundle) -> Result<Plan> {
    let c = &bundle.config;
    check_version(c.version())?;
    let (rootfs, readonly_root) = root_fs(c, &bundle.dir)?;
    let process = c
        .process()
        .as_ref()
        .ok_or_else(|| anyhow!("config.json has no process: give process.args"))?;
    let pp = process_plan(process)?;
    let hostname = hostname(c)?;
    refuse_platforms(c)?;

    let linux = c.linux().clone().unwrap_or_default();
    let mut extras = Extras {
        user: pp.user,
        rlimits: pp.rlimits,
        readonly_root,
        ..Extras::default()
    };
    let ns = namespace_plan(&linux, &hostname, &mut extras)?;
    let volumes = mounts(
        c.mounts().as_deref().unwrap_or(&[]),
        &bundle.dir,
        &mut extras,
    )?;
    refuse_linux_extras(&linux)?;
    linux_extras(&linux, ns.shared.contains(&"ipc"), &mut extras)?;
    let limits = resources(linux.resources().as_ref())?;
    let device_rules = device_rules(
        linux
            .resources()
            .as_ref()
            .and_then(|r| r.devices().as_deref())
            .unwrap_or(&[]),
        &extras.devices,
    )?;
    let confinement = confinement(process, &linux, &pp.caps, pp.cap_sets)?;
    let (hooks, create_container, start_container) = hooks_of(c)?;
    extras.create_container = create_container.iter().map(hook).collect();
    extras.start_container = start_container.iter().map(hook).collect();
    let cgroups_path = cgroups_path(&linux)?;
    let spec = Spec {
        name: id.to_string(),
        generated_name: false,
        hostname,
        rootfs,
        command: pp.command,
        env: pp.env,
        workdir: process.cwd().clone(),
        volumes,
        limits,
        userns: ns.userns,
        network: crate::model::network::Network::None,
        ports: Vec::new(),
        dns: Default::default(),
        tty: process.terminal().unwrap_or(false),
        write_through: true,
        layer_size: 0,
        verbose: false,
        detach: false,
        rm: true,
        origin: None,
        restart: false,
        confinement,
        log_size_max: crate::model::spec::DEFAULT_LOG_SIZE_MAX,
        // A bundle's own: Extras::readonly_root and Extras::tmpfs.
        readonly_root: false,
        tmpfs: Vec::new(),
        init: false,
        restart_policy: crate::model::spec::RestartPolicy::No,
        image: None,
        user: None,
    };
    Ok(Plan {
        spec,
        extras,
        new_namespaces: ns.new_namespaces,
        join: ns.join,
        uid_map: ns.uid_map,
        gid_map: ns.gid_map,
        oom_score_adj: process.oom_score_adj(),
        console_size: pp.console_size,
        hooks,
        cgroups_path,
        annotations: c.annotations().clone().unwrap_or_default(),
        device_rules,
    })
}

/// What `linux` asks beyond the namespaces and limits: root propagation,
/// masked and read-only paths, sysctls, device nodes; checked against a
/// missing mount namespace last.
fn linux_extras(linux: &rt::Linux, shared_ipc: bool, extras: &mut Extras) -> Result<()> {
    extras.rootfs_propagation = linux
        .rootfs_propagation()
        .as_deref()
        .and_then(propagation_flags)
        .unwrap_or(0);
    extras.masked = paths(linux.masked_paths().as_deref(), "linux.maskedPaths")?;
    extras.readonly = paths(linux.readonly_paths().as_deref(), "linux.readonlyPaths")?;
    extras.sysctl = sysctls(linux, extras.joined_net, shared_ipc)?;
    extras.devices = devices(linux.devices().as_deref().unwrap_or(&[]))?;
    if extras.caller_mount_ns {
        no_mount_namespace(extras)?;
    }
    Ok(())
}

/// What `process` asks, checked.
struct ProcessPlan {
    command: Vec<String>,
    env: Env,
    user: User,
    /// The bounding set.
    caps: CapSet,
    cap_sets: ProcessCaps,
    rlimits: Vec<Rlimit>,
    /// (rows, columns).
    console_size: Option<(u16, u16)>,
}

/// The command and environment, the user, the capabilities, the rlimits and
/// the console size; a field the engine cannot honour refused.
fn process_plan(process: &rt::Process) -> Result<ProcessPlan> {
    let (command, env) = command_and_env(process)?;
    refuse_process_extras(process)?;
    let user = user_of(process)?;
    let (caps, cap_sets) = capabilities(process.capabilities().as_ref())?;
    let rlimits = process
        .rlimits()
        .clone()
        .unwrap_or_default()
        .iter()
        .map(rlimit)
        .collect::<Result<Vec<_>>>()?;
    let console_size = process.console_size().as_ref().map(|b| {
        (
            b.height().min(u16::MAX as u64) as u16,
            b.width().min(u16::MAX as u64) as u16,
        )
    });
    Ok(ProcessPlan {
        command,
        env,
        user,
        caps,
        cap_sets,
        rlimits,
        console_size,
    })
}

/// The namespaces (created, joined, shared with the caller), the ID
/// mappings and the user namespace they make.
struct NamespacePlan {
    new_namespaces: u64,
    join: Vec<(PathBuf, NsType)>,
    shared: Vec<&'static str>,
    uid_map: Vec<IdMapping>,
    gid_map: Vec<IdMapping>,
    userns: UserNs,
}

/// linux.namespaces and the ID mappings; a hostname with the caller's UTS
/// namespace is refused, as runc refuses it.
fn namespace_plan(linux: &rt::Linux, hostname: &str, extras: &mut Extras) -> Result<NamespacePlan> {
    let Namespaces { new, join, shared } = namespaces(linux, extras)?;
    if shared.contains(&"uts") && !hostname.is_empty() {
        bail!("config.json gives a hostname but no uts namespace: the hostname would be the caller's; add a uts namespace, or leave the hostname out (as runc requires)");
    }
    let uid_map = mappings(linux.uid_mappings().as_deref(), "uidMappings")?;
    let gid_map = mappings(linux.gid_mappings().as_deref(), "gidMappings")?;
    let userns = user_namespace(new, &join, &uid_map, &gid_map)?;
    Ok(NamespacePlan {
        new_namespaces: new,
        join,
        shared,
        uid_map,
        gid_map,
        userns,
    })
}

/// root.path (relative to the bundle), resolved, and root.readonly.
fn root_fs(c: &rt::Spec, bundle: &Path) -> Result<(PathBuf, bool)> {
    let root = c.root().as_ref().ok_or_else(|| {
        anyhow!("config.json has no root: give root.path, the container's root filesystem")
    })?;
    let rootfs = bundle.join(root.path());
    if !rootfs.is_dir() {
        bail!(
            "the bundle's rootfs {} does not exist or is not a directory: fix root.path in config.json",
            rootfs.display()
        );
    }
    let rootfs = rootfs
        .canonicalize()
        .with_context(|| format!("cannot resolve rootfs {}", rootfs.display()))?;
    Ok((rootfs, root.readonly().unwrap_or(false)))
}

/// An environment, `KEY=VALUE` split.
type Env = Vec<(String, String)>;

/// process.args, process.cwd (absolute) and process.env (`KEY=VALUE` each).
fn command_and_env(process: &rt::Process) -> Result<(Vec<String>, Env)> {
    let args = process.args().clone().unwrap_or_default();
    if args.first().is_none_or(|a| a.is_empty()) {
        bail!("config.json process.args is empty: give the program to run");
    }
    if !process.cwd().is_absolute() {
        bail!(
            "config.json process.cwd {} is not absolute",
            process.cwd().display()
        );
    }
    let mut env = Vec::new();
    for e in process.env().clone().unwrap_or_default() {
        match e.split_once('=') {
            Some((k, v)) if !k.is_empty() => env.push((k.to_string(), v.to_string())),
            _ => bail!("config.json process.env entry {e:?} is not KEY=VALUE"),
        }
    }
    Ok((args, env))
}

/// The process fields that change behaviour and that the engine cannot honour.
fn refuse_process_extras(process: &rt::Process) -> Result<()> {
    let set = |s: &Option<String>| s.as_ref().is_some_and(|p| !p.is_empty());
    for (field, present) in [
        ("process.commandLine", process.command_line().is_some()),
        ("process.apparmorProfile", set(process.apparmor_profile())),
        ("process.selinuxLabel", set(process.selinux_label())),
        ("process.ioPriority", process.io_priority().is_some()),
        ("process.scheduler", process.scheduler().is_some()),
        (
            "process.execCPUAffinity",
            process.exec_cpu_affinity().is_some(),
        ),
    ] {
        if present {
            return Err(refuse(field));
        }
    }
    Ok(())
}

/// process.user. An ID of 4294967295 (-1) is refused: setresuid and
/// setresgid read it as "leave unchanged", so the process would stay root.
pub(crate) fn user_of(process: &rt::Process) -> Result<User> {
    let u = process.user();
    let gids = u.additional_gids().clone().unwrap_or_default();
    for (field, id) in [("uid", u.uid()), ("gid", u.gid())]
        .into_iter()
        .chain(gids.iter().map(|g| ("additionalGids", *g)))
    {
        if id == u32::MAX {
            bail!("process.user.{field} 4294967295 is not an ID (to setresuid and setresgid it means \"leave unchanged\", so the process would stay root): give the ID to run as");
        }
    }
    Ok(User {
        uid: u.uid(),
        gid: u.gid(),
        additional_gids: gids,
        umask: u.umask(),
    })
}

/// hostname, checked as `engine run --hostname` checks it; a domainname is refused.
fn hostname(c: &rt::Spec) -> Result<String> {
    if c.domainname().as_ref().is_some_and(|d| !d.is_empty()) {
        return Err(refuse("domainname"));
    }
    match c.hostname().as_deref() {
        None | Some("") => Ok(String::new()),
        Some(h) => {
            crate::model::names::check_hostname(h).map_err(|e| anyhow!("config.json hostname: {e}"))
        }
    }
}

/// Sections for other platforms.
fn refuse_platforms(c: &rt::Spec) -> Result<()> {
    for (field, present) in [
        ("solaris", c.solaris().is_some()),
        ("windows", c.windows().is_some()),
        ("vm", c.vm().is_some()),
        ("zos", c.zos().is_some()),
    ] {
        if present {
            return Err(refuse(field));
        }
    }
    Ok(())
}

/// The container's user namespace: none (host IDs), a new one mapping
/// container ID 0, or one joined by path, whose own maps stand (mappings
/// given must match them: checked once the init is in it, `parent::create`).
fn user_namespace(
    new_namespaces: u64,
    join: &[(PathBuf, NsType)],
    uid_map: &[IdMapping],
    gid_map: &[IdMapping],
) -> Result<UserNs> {
    let has_userns = new_namespaces & libc::CLONE_NEWUSER as u64 != 0;
    let joined = |kind: NsType| join.iter().any(|(_, k)| *k == kind);
    if joined(NsType::Mount) && has_userns {
        bail!("config.json linux.namespaces joins a mount namespace by path but makes a new user namespace, whose root could not mount in it: join the user namespace that owns it by path too, or make a new mount namespace");
    }
    if joined(NsType::User) {
        let host_of_root =
            |m: &[IdMapping]| m.iter().find(|m| m.container == 0).map_or(0, |m| m.host);
        return Ok(UserNs::Map {
            uid: host_of_root(uid_map),
            gid: host_of_root(gid_map),
        });
    }
    if has_userns {
        let (Some(u), Some(g)) = (
            uid_map.iter().find(|m| m.container == 0),
            gid_map.iter().find(|m| m.container == 0),
        ) else {
            bail!("config.json asks for a user namespace but linux.uidMappings/gidMappings do not map container ID 0");
        };
        return Ok(UserNs::Map {
            uid: u.host,
            gid: g.host,
        });
    }
    if !uid_map.is_empty() || !gid_map.is_empty() {
        bail!("config.json gives linux.uidMappings but no user namespace in linux.namespaces");
    }
    Ok(UserNs::Host)
}

/// The linux fields the engine cannot honour, and a rootfsPropagation
/// other than private or slave.
fn refuse_linux_extras(linux: &rt::Linux) -> Result<()> {
    for (field, present) in [
        (
            "linux.mountLabel",
            linux.mount_label().as_ref().is_some_and(|d| !d.is_empty()),
        ),
        ("linux.intelRdt", linux.intel_rdt().is_some()),
        ("linux.personality", linux.personality().is_some()),
        ("linux.timeOffsets", linux.time_offsets().is_some()),
        ("linux.memoryPolicy", linux.memory_policy().is_some()),
        (
            "linux.netDevices",
            linux.net_devices().as_ref().is_some_and(|d| !d.is_empty()),
        ),
    ] {
        if present {
            return Err(refuse(field));
        }
    }
    match linux.rootfs_propagation().as_deref() {
        None | Some("") => Ok(()),
        Some(p) if propagation_flags(p).is_some() => Ok(()),
        Some(other) => {
            bail!("config.json linux.rootfsPropagation {other:?} is not a propagation: use shared, slave, private or unbindable (or rshared, rslave, rprivate, runbindable)")
        }
    }
}

/// A config without a mount namespace runs in the caller's: runc 1.1.5
/// then mounts the config's mounts into the rootfs there (where they stay
/// after `delete`) and chroots. The engine mounts nothing there: the
/// entries for the kernel's own file systems (/proc, /sys, /dev and its
/// pts, shm, mqueue, cgroup) are left out, the process sees the caller's
/// through its chroot no more than runc's would once they are gone; what
/// would have to be mounted, made or changed in the caller's namespace is
/// refused: other mounts, masked and read-only paths (runc's validator
/// refuses these too), root.readonly (which runc ignores there), devices,
/// rootfsPropagation.
fn no_mount_namespace(extras: &mut Extras) -> Result<()> {
    let why = "without a mount namespace (linux.namespaces has none) it would be made in the caller's: add {\"type\": \"mount\"} or remove it";
    let standard = |e: &MountEntry| {
        matches!(
            e,
            MountEntry::Proc | MountEntry::Sys | MountEntry::Dev | MountEntry::Cgroup
        )
    };
    if let Some(e) = extras.mounts.iter().find(|e| !standard(e)) {
        let what = match e {
            MountEntry::Tmpfs(i) => extras.tmpfs[*i].destination.display().to_string(),
            _ => "a bind mount".to_string(),
        };
        bail!("config.json mounts {what}: {why}");
    }
    for (field, present) in [
        ("linux.maskedPaths", !extras.masked.is_empty()),
        ("linux.readonlyPaths", !extras.readonly.is_empty()),
        ("root.readonly", extras.readonly_root),
        ("linux.devices", !extras.devices.is_empty()),
        ("linux.rootfsPropagation", extras.rootfs_propagation != 0),
    ] {
        if present {
            bail!("config.json {field}: {why}");
        }
    }
    extras.mounts.clear();
    Ok(())
}

/// linux.sysctl, sorted; only keys of the container's own namespaces
/// (never of the caller's, when it shares its network or IPC namespace).
fn sysctls(linux: &rt::Linux, joined_net: bool, shared_ipc: bool) -> Result<Vec<(String, String)>> {
    let mut sysctl: Vec<(String, String)> = linux
        .sysctl()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    sysctl.sort();
    for (key, _) in &sysctl {
        let ipc = is_ipc_sysctl(key);
        let namespaced = (ipc && !shared_ipc) || (key.starts_with("net.") && !joined_net);
        if !namespaced || key.contains('/') || key.contains("..") {
            bail!("config.json linux.sysctl {key:?} is not namespaced (or the network namespace is shared): only kernel.msg*, kernel.shm*, kernel.sem, fs.mqueue.* (in an IPC namespace of the container's) and net.* (in a network namespace of its own) can be set for one container");
        }
    }
    Ok(sysctl)
}

/// A sysctl of the IPC namespace (the rest that may be set are net.*).
pub(super) fn is_ipc_sysctl(key: &str) -> bool {
    key.starts_with("kernel.msg")
        || key.starts_with("kernel.shm")
        || key == "kernel.sem"
        || key.starts_with("fs.mqueue.")
}

/// Capabilities, noNewPrivileges and the seccomp filter, compiled once
/// here so that a filter that cannot be built is refused before create.
fn confinement(
    process: &rt::Process,
    linux: &rt::Linux,
    caps: &CapSet,
    sets: ProcessCaps,
) -> Result<Confinement> {
    let filter = match linux.seccomp() {
        None => Filter::Unconfined,
        Some(s) => seccomp(s, caps)?,
    };
    let confinement = Confinement {
        privileged: false,
        caps: caps.bits(),
        no_new_privs: process.no_new_privileges().unwrap_or(false),
        filter,
        sets: Some(sets),
    };
    confinement
        .program()
        .map_err(|e| anyhow!("linux.seccomp: {e}"))?;
    Ok(confinement)
}

/// The hooks of every kind, checked (absolute paths, timeouts not
/// negative): those the runtime runs, and createContainer and
/// startContainer, which the init runs.
fn hooks_of(c: &rt::Spec) -> Result<(Hooks, Vec<rt::Hook>, Vec<rt::Hook>)> {
    let h = c.hooks().clone().unwrap_or_default();
    let hooks = Hooks {
        prestart: h.prestart().clone().unwrap_or_default(),
        create_runtime: h.create_runtime().clone().unwrap_or_default(),
        poststart: h.poststart().clone().unwrap_or_default(),
        poststop: h.poststop().clone().unwrap_or_default(),
    };
    let create_container = h.create_container().clone().unwrap_or_default();
    let start_container = h.start_container().clone().unwrap_or_default();
    for (field, list) in [
        ("prestart", &hooks.prestart),
        ("createRuntime", &hooks.create_runtime),
        ("createContainer", &create_container),
        ("startContainer", &start_container),
        ("poststart", &hooks.poststart),
        ("poststop", &hooks.poststop),
    ] {
        for (i, hook) in list.iter().enumerate() {
            if !hook.path().is_absolute() {
                bail!(
                    "config.json hooks.{field}[{i}].path {} is not absolute",
                    hook.path().display()
                );
            }
            if hook.timeout().is_some_and(|t| t < 0) {
                bail!("config.json hooks.{field}[{i}].timeout is negative: give seconds, or leave it out for no limit");
            }
        }
    }
    Ok((hooks, create_container, start_container))
}

/// linux.cgroupsPath: a cgroupfs path below the cgroup mount's root.
fn cgroups_path(linux: &rt::Linux) -> Result<Option<PathBuf>> {
    let cgroups_path = linux.cgroups_path().clone();
    if let Some(p) = &cgroups_path {
        if p.to_string_lossy().contains(':') {
            bail!("config.json linux.cgroupsPath {} is a systemd slice: this engine drives cgroupfs paths only (give a path such as /engine/ID)", p.display());
        }
        // `delete` kills what is in it and removes it: it must stay below
        // the cgroup mount.
        if p.components().any(|c| c == std::path::Component::ParentDir) || p.as_os_str() == "/" {
            bail!("config.json linux.cgroupsPath {} leaves the cgroup tree or names its root: give a path such as /engine/ID", p.display());
        }
    }
    Ok(cgroups_path)
}

/// A config.json hook as the engine runs it (`sys::hook`).
pub fn hook(h: &rt::Hook) -> crate::model::bundle::Hook {
    crate::model::bundle::Hook {
        path: h.path().clone(),
        args: h.args().clone().unwrap_or_default(),
        env: h.env().clone().unwrap_or_default(),
        timeout: h.timeout().filter(|t| *t > 0).map(|t| t as u64),
    }
}

/// linux.devices, checked: a path in the root (absolute, no `..`, not a
/// directory the engine mounts), a type of c, b, u or p, numbers for a
/// device. runc's defaults: mode 0666, owner 0:0.
fn devices(list: &[rt::LinuxDevice]) -> Result<Vec<Device>> {
    let mut devices: Vec<Device> = Vec::new();
    for (i, d) in list.iter().enumerate() {
        let path = d.path();
        let field = format!("config.json linux.devices[{i}] {}", path.display());
        if !path.is_absolute()
            || path
                .components()
                .any(|c| c == std::path::Component::ParentDir)
            || path.file_name().is_none()
        {
            bail!("{field}: the path must be absolute, name a file, and have no '..'");
        }
        if path.starts_with("/proc") || path.starts_with("/sys") || path == Path::new("/dev") {
            bail!(
                "{field}: the engine mounts the kernel's file system there; give a path under /dev"
            );
        }
        let kind = match d.typ() {
            rt::LinuxDeviceType::C | rt::LinuxDeviceType::U => DeviceKind::Char,
            rt::LinuxDeviceType::B => DeviceKind::Block,
            rt::LinuxDeviceType::P => DeviceKind::Fifo,
            rt::LinuxDeviceType::A => {
                bail!("{field}: type a is a cgroup rule, not a node: give c, b, u or p")
            }
        };
        let number = |n: i64, what: &str| -> Result<u32> {
            u32::try_from(n).map_err(|_| {
                anyhow!("{field}: {what} {n} is not a device number (0 to 4294967295)")
            })
        };
        let (major, minor) = match kind {
            DeviceKind::Fifo => (0, 0),
            _ => (number(d.major(), "major")?, number(d.minor(), "minor")?),
        };
        if devices.iter().any(|o| o.path == *path) {
            bail!("{field} is listed twice");
        }
        devices.push(Device {
            path: path.clone(),
            kind,
            major,
            minor,
            mode: d.file_mode().unwrap_or(0o666) & 0o7777,
            uid: d.uid().unwrap_or(0),
            gid: d.gid().unwrap_or(0),
        });
    }
    Ok(devices)
}

/// linux.resources.devices as rules (runc's reading: no type is `a`, a
/// missing or -1 major/minor is `*`, no access is `rwm`), then an allow
/// rule for each linux.devices node (as runc adds them), followed by runc's
/// allow list, which therefore always wins.
fn device_rules(
    list: &[rt::LinuxDeviceCgroup],
    nodes: &[Device],
) -> Result<Vec<crate::sys::devices::Rule>> {
    use crate::sys::devices::{self, Kind, Rule};
    let number = |n: Option<i64>, what: &str, i: usize| -> Result<Option<u32>> {
        match n {
            None | Some(-1) => Ok(None),
            Some(n) => u32::try_from(n).map(Some).map_err(|_| {
                anyhow!("config.json linux.resources.devices[{i}].{what} {n} is not a device number (0 to 4294967295, or -1 for any)")
            }),
        }
    };
    let mut rules = Vec::new();
    for (i, d) in list.iter().enumerate() {
        let kind = match d.typ().unwrap_or_default() {
            rt::LinuxDeviceType::A => None,
            rt::LinuxDeviceType::B => Some(Kind::Block),
            rt::LinuxDeviceType::C | rt::LinuxDeviceType::U => Some(Kind::Char),
            rt::LinuxDeviceType::P => bail!(
                "config.json linux.resources.devices[{i}].type p (a fifo) is not a device cgroup type: use a, b or c"
            ),
        };
        let access = match d.access().as_deref() {
            None => devices::ALL,
            Some(a) => devices::parse_access(a).ok_or_else(|| {
                anyhow!("config.json linux.resources.devices[{i}].access {a:?} is not a combination of r, w and m")
            })?,
        };
        rules.push(Rule {
            allow: d.allow(),
            kind,
            major: number(d.major(), "major", i)?,
            minor: number(d.minor(), "minor", i)?,
            access,
        });
    }
    for d in nodes {
        let kind = match d.kind {
            DeviceKind::Char => Kind::Char,
            DeviceKind::Block => Kind::Block,
            DeviceKind::Fifo => continue,
        };
        rules.push(Rule {
            allow: true,
            kind: Some(kind),
            major: Some(d.major),
            minor: Some(d.minor),
            access: devices::ALL,
        });
    }
    Ok(devices::with_defaults(&rules))
}

/// process.capabilities as runc applies them: bounding (else the union
/// of effective and permitted) is what the process keeps; permitted
/// defaults to it and effective to permitted; inheritable and ambient are
/// empty unless given. Ambient capabilities the kernel cannot raise (not
/// both permitted and inheritable) are left out, as runc leaves them (it
/// warns); the rest reach a non-root user too.
pub(super) fn capabilities(caps: Option<&rt::LinuxCapabilities>) -> Result<(CapSet, ProcessCaps)> {
    let Some(caps) = caps else {
        return Ok((CapSet::empty(), ProcessCaps::default()));
    };
    let to_set = |s: &Option<rt::Capabilities>, field: &str| -> Result<Option<CapSet>> {
        let Some(s) = s else { return Ok(None) };
        let mut set = CapSet::from_bits(0);
        for c in s {
            let cap = Cap::parse(&c.to_string())
                .map_err(|e| anyhow!("config.json process.capabilities.{field}: {e}"))?;
            set.insert(cap);
        }
        Ok(Some(set))
    };
    let bounding = to_set(caps.bounding(), "bounding")?;
    let effective = to_set(caps.effective(), "effective")?;
    let permitted = to_set(caps.permitted(), "permitted")?;
    let inheritable = to_set(caps.inheritable(), "inheritable")?.unwrap_or_default();
    let ambient = to_set(caps.ambient(), "ambient")?.unwrap_or_default();
    let union = [effective, permitted]
        .iter()
        .flatten()
        .fold(0u64, |acc, s| acc | s.bits());
    let kept = bounding.map(|b| b.bits()).unwrap_or(union);
    if union & !kept != 0 {
        bail!("config.json process.capabilities: effective/permitted hold capabilities that bounding does not: fix the sets");
    }
    // The kernel's rules for capset: inheritable within the bounding set,
    // effective within permitted.
    if inheritable.bits() & !kept != 0 {
        bail!("config.json process.capabilities.inheritable holds capabilities that bounding does not: the kernel refuses them; add them to bounding or remove them");
    }
    let permitted = permitted.map_or(kept, |p| p.bits());
    let effective = effective.map_or(permitted, |e| e.bits());
    if effective & !permitted != 0 {
        bail!("config.json process.capabilities.effective holds capabilities that permitted does not: the kernel refuses them; add them to permitted or remove them");
    }
    let sets = ProcessCaps {
        effective,
        permitted,
        inheritable: inheritable.bits(),
        ambient: ambient.bits() & permitted & inheritable.bits(),
    };
    Ok((CapSet::from_bits(kept), sets))
}

pub(super) fn rlimit(r: &rt::PosixRlimit) -> Result<Rlimit> {
    let name = serde_json::to_value(r.typ())?
        .as_str()
        .unwrap_or_default()
        .to_string();
    let resource = match name.as_str() {
        "RLIMIT_CPU" => libc::RLIMIT_CPU,
        "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
        "RLIMIT_DATA" => libc::RLIMIT_DATA,
        "RLIMIT_STACK" => libc::RLIMIT_STACK,
        "RLIMIT_CORE" => libc::RLIMIT_CORE,
        "RLIMIT_RSS" => libc::RLIMIT_RSS,
        "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
        "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
        "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "RLIMIT_AS" => libc::RLIMIT_AS,
        "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS,
        "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING,
        "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => libc::RLIMIT_NICE,
        "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => libc::RLIMIT_RTTIME,
        other => bail!("config.json process.rlimits type {other:?} is unknown"),
    } as i32;
    if r.soft() > r.hard() {
        bail!(
            "config.json process.rlimits {name}: soft {} is above hard {}",
            r.soft(),
            r.hard()
        );
    }
    Ok(Rlimit {
        resource,
        soft: r.soft(),
        hard: r.hard(),
    })
}

/// The namespaces of a config: the CLONE_NEW* flags to create, those to
/// join by path, and the kinds it leaves out, which the container shares
/// with the caller (runc's reading).
struct Namespaces {
    new: u64,
    join: Vec<(PathBuf, NsType)>,
    shared: Vec<&'static str>,
}

/// Which namespaces to create, which to join by path and which to share.
/// A namespace left out is the caller's, as with runc (podman `--pid=host`
/// and friends): the engine then writes nothing into it (no hostname,
/// loopback, ping range or sysctl of its kind; without a mount namespace
/// no mount at all, `no_mount_namespace`).
fn namespaces(linux: &rt::Linux, extras: &mut Extras) -> Result<Namespaces> {
    let list = linux.namespaces().clone().unwrap_or_default();
    let mut new = 0u64;
    let mut join = Vec::new();
    let mut seen = Vec::new();
    for ns in &list {
        let (kind, name) = match ns.typ() {
            LinuxNamespaceType::Pid => (Some(NsType::ProcessID), "pid"),
            LinuxNamespaceType::Mount => (Some(NsType::Mount), "mount"),
            LinuxNamespaceType::Network => (Some(NsType::Network), "network"),
            LinuxNamespaceType::Ipc => (Some(NsType::InterProcessCommunication), "ipc"),
            LinuxNamespaceType::Uts => (Some(NsType::HostNameAndNISDomainName), "uts"),
            LinuxNamespaceType::User => (Some(NsType::User), "user"),
            // The child always makes its own cgroup namespace.
            LinuxNamespaceType::Cgroup => (None, "cgroup"),
            LinuxNamespaceType::Time => return Err(refuse("linux.namespaces type time")),
        };
        if seen.contains(&name) {
            bail!("config.json linux.namespaces lists {name} twice");
        }
        seen.push(name);
        match ns.path() {
            None => new |= kind.map_or(0, |k| k as u64),
            Some(p) => {
                let Some(kind) = kind else {
                    return Err(refuse(&format!("linux.namespaces {name} with a path")));
                };
                if !p.is_absolute() {
                    bail!(
                        "config.json linux.namespaces {name} path {} is not absolute",
                        p.display()
                    );
                }
                if !p.exists() {
                    bail!(
                        "config.json linux.namespaces {name} path {} does not exist",
                        p.display()
                    );
                }
                extras.joined_net |= name == "network";
                extras.joined_uts |= name == "uts";
                join.push((p.clone(), kind));
            }
        }
    }
    extras.caller_mount_ns = !seen.contains(&"mount");
    extras.caller_cgroup_ns = extras.caller_mount_ns && !seen.contains(&"cgroup");
    let shared: Vec<&'static str> = ["pid", "network", "ipc", "uts"]
        .into_iter()
        .filter(|kind| !seen.contains(kind))
        .collect();
    // A new user namespace owns none of the caller's: its root could not
    // mount /proc (pid), /sys (network) or /dev/mqueue (ipc) for them.
    if new & libc::CLONE_NEWUSER as u64 != 0 {
        if let Some(kind) = shared.iter().find(|k| **k != "uts") {
            bail!("config.json linux.namespaces makes a new user namespace but shares the caller's {kind} namespace, which that user namespace's root cannot mount /proc, /sys or mqueue for: add a {kind} namespace, or leave the user namespace out");
        }
    }
    extras.joined_net |= shared.contains(&"network");
    extras.joined_uts |= shared.contains(&"uts");
    Ok(Namespaces { new, join, shared })
}

fn mappings(m: Option<&[rt::LinuxIdMapping]>, field: &str) -> Result<Vec<IdMapping>> {
    let m = m.unwrap_or(&[]);
    if m.len() > 340 {
        bail!(
            "config.json linux.{field} has {} entries: the kernel takes at most 340",
            m.len()
        );
    }
    Ok(m.iter()
        .map(|e| IdMapping {
            container: e.container_id(),
            host: e.host_id(),
            size: e.size(),
        })
        .collect())
}

fn paths(p: Option<&[String]>, field: &str) -> Result<Vec<String>> {
    let p = p.unwrap_or(&[]);
    for path in p {
        if !path.starts_with('/') || path.split('/').any(|c| c == "..") {
            bail!("config.json {field} entry {path:?} must be absolute without '..'");
        }
    }
    Ok(p.to_vec())
}

/// The engine makes /proc, /sys, /dev (with pts, shm, mqueue) and the
/// cgroup file system itself; the config's entries for those are accepted
/// as they stand. Binds become volumes, tmpfs mounts elsewhere are made as
/// asked; other types are refused.
fn mounts(list: &[rt::Mount], bundle: &Path, extras: &mut Extras) -> Result<Vec<Volume>> {
    let mut volumes = Vec::new();
    for m in list {
        let dest = m.destination();
        let d = dest.to_string_lossy();
        if !dest.is_absolute() || d.split('/').any(|c| c == "..") {
            bail!("config.json mounts destination {d:?} must be absolute without '..'");
        }
        let typ = m.typ().as_deref().unwrap_or("");
        let options = m.options().clone().unwrap_or_default();
        if m.uid_mappings().is_some() || m.gid_mappings().is_some() {
            return Err(refuse(&format!("mounts {d} uidMappings/gidMappings")));
        }
        let is_bind = options.iter().any(|o| o == "bind" || o == "rbind") || typ == "bind";
        if let (Some(entry), false) = (standard_mount(typ, &d), is_bind) {
            extras.mounts.push(entry);
            continue;
        }
        let opts = mount_options(&options, &d, typ, is_bind)?;
        if is_bind {
            let (volume, bind) = bind_volume(m, &d, bundle, &opts)?;
            extras.binds.push(bind);
            extras.mounts.push(MountEntry::Volume(volumes.len()));
            volumes.push(volume);
        } else if typ == "tmpfs" {
            extras.mounts.push(MountEntry::Tmpfs(extras.tmpfs.len()));
            extras.tmpfs.push(TmpfsMount {
                destination: dest.clone(),
                flags: opts.flags,
                data: opts.data.join(","),
                propagation: opts.propagation,
                copy_up: opts.copy_up,
            });
        } else {
            bail!("config.json mounts {d}: type {typ:?} is not supported at that destination (tmpfs, bind, and the standard /proc, /sys, /dev, /dev/pts, /dev/shm, /dev/mqueue are)");
        }
    }
    if volumes.len() > crate::sys::idmap::MAX_FDS - 2 {
        bail!(
            "config.json has {} bind mounts: at most {} fit",
            volumes.len(),
            crate::sys::idmap::MAX_FDS - 2
        );
    }
    Ok(volumes)
}

/// What a mount's options ask.
#[derive(Debug, Default)]
struct MountOptions {
    /// MS_* flags.
    flags: u64,
    /// A tmpfs's `key=value` options.
    data: Vec<String>,
    readonly: bool,
    /// The last propagation option, as MS_* flags (0: none).
    propagation: u64,
    /// tmpcopyup.
    copy_up: bool,
}

/// The options of the mount at `d` (of type `typ`, a bind or not).
fn mount_options(options: &[String], d: &str, typ: &str, is_bind: bool) -> Result<MountOptions> {
    let mut opts = MountOptions::default();
    for o in options {
        match o.as_str() {
            "ro" => {
                opts.readonly = true;
                opts.flags |= libc::MS_RDONLY;
            }
            // The last propagation option wins, as with mount(8).
            p if propagation_flags(p).is_some() => {
                opts.propagation = propagation_flags(p).unwrap_or(0)
            }
            "rw" | "bind" | "rbind" | "suid" | "dev" | "exec" | "relatime" | "norelatime"
            | "nocopyup" | "copy" => {}
            // runc copies up into a tmpfs only, and ignores it elsewhere.
            "tmpcopyup" => opts.copy_up = true,
            "nosuid" => opts.flags |= libc::MS_NOSUID,
            "nodev" => opts.flags |= libc::MS_NODEV,
            "noexec" => opts.flags |= libc::MS_NOEXEC,
            "strictatime" => opts.flags |= libc::MS_STRICTATIME,
            "noatime" => opts.flags |= libc::MS_NOATIME,
            "nodiratime" => opts.flags |= libc::MS_NODIRATIME,
            other if !is_bind && typ == "tmpfs" && other.contains('=') => {
                opts.data.push(other.to_string())
            }
            // runc hands a bind's other options to mount(2) as data,
            // which a bind ignores (runtime-tools gives binds tmpfs's
            // "mode=755", "size=1k").
            _ if is_bind => {}
            other => bail!("config.json mounts {d}: option {other:?} is not supported"),
        }
    }
    Ok(opts)
}

/// A bind mount as a volume (its source resolved against the bundle),
/// with the MOUNT_ATTR_* bits and propagation the engine applies to it.
fn bind_volume(
    m: &rt::Mount,
    d: &str,
    bundle: &Path,
    opts: &MountOptions,
) -> Result<(Volume, BindOptions)> {
    let source = m
        .source()
        .as_ref()
        .ok_or_else(|| anyhow!("config.json mounts {d}: a bind mount needs a source"))?;
    let source = if source.is_absolute() {
        source.clone()
    } else {
        bundle.join(source)
    };
    if !source.exists() {
        bail!(
            "config.json mounts {d}: source {} does not exist",
            source.display()
        );
    }
    let mut attrs = 0;
    for (ms, attr) in [
        (libc::MS_NOSUID, libc::MOUNT_ATTR_NOSUID),
        (libc::MS_NODEV, libc::MOUNT_ATTR_NODEV),
        (libc::MS_NOEXEC, libc::MOUNT_ATTR_NOEXEC),
    ] {
        if opts.flags & ms != 0 {
            attrs |= attr;
        }
    }
    let volume = Volume {
        host: source
            .canonicalize()
            .with_context(|| format!("cannot resolve {}", source.display()))?,
        container: m.destination().clone(),
        readonly: opts.readonly,
        owner: Ownership::AsIs,
    };
    let bind = BindOptions {
        attrs,
        propagation: opts.propagation,
    };
    Ok((volume, bind))
}

/// A propagation option (of a mount or of linux.rootfsPropagation) as
/// the MS_* flags runc gives it.
fn propagation_flags(option: &str) -> Option<u64> {
    let (recursive, kind) = match option.strip_prefix('r') {
        Some(kind) => (libc::MS_REC, kind),
        _ => (0, option),
    };
    let flag = match kind {
        "shared" => libc::MS_SHARED,
        "slave" => libc::MS_SLAVE,
        "private" => libc::MS_PRIVATE,
        "unbindable" => libc::MS_UNBINDABLE,
        _ => return None,
    };
    Some(flag | recursive)
}

/// The engine's own file system a config's mount of `typ` at `dest` stands for.
fn standard_mount(typ: &str, dest: &str) -> Option<MountEntry> {
    Some(match (typ, dest) {
        ("proc", "/proc") => MountEntry::Proc,
        ("sysfs", "/sys") => MountEntry::Sys,
        ("tmpfs", "/dev")
        | ("devpts", "/dev/pts")
        | ("tmpfs", "/dev/shm")
        | ("mqueue", "/dev/mqueue") => MountEntry::Dev,
        ("cgroup", "/sys/fs/cgroup") | ("cgroup2", "/sys/fs/cgroup") => MountEntry::Cgroup,
        _ => return None,
    })
}

/// linux.resources: memory limit and swap (runc's memory+swap), CPU
/// quota/period and shares (as cpu.weight), pids. Limits need cgroup v2.
fn resources(r: Option<&rt::LinuxResources>) -> Result<crate::model::limits::Limits> {
    let mut limits = crate::model::limits::Limits::default();
    let Some(r) = r else { return Ok(limits) };
    for (field, present) in [
        ("linux.resources.blockIO", r.block_io().is_some()),
        (
            "linux.resources.hugepageLimits",
            r.hugepage_limits().as_ref().is_some_and(|v| !v.is_empty()),
        ),
        ("linux.resources.network", r.network().is_some()),
        (
            "linux.resources.rdma",
            r.rdma().as_ref().is_some_and(|v| !v.is_empty()),
        ),
        (
            "linux.resources.unified",
            r.unified().as_ref().is_some_and(|v| !v.is_empty()),
        ),
    ] {
        if present {
            return Err(refuse(field));
        }
    }
    if let Some(m) = r.memory() {
        memory_limits(m, &mut limits)?;
    }
    if let Some(cpu) = r.cpu() {
        cpu_limits(cpu, &mut limits)?;
    }
    if let Some(p) = r.pids() {
        if p.limit() > 0 {
            limits.pids = Some(p.limit() as u64);
        }
    }
    // linux.resources.devices: see device_rules.
    Ok(limits)
}

/// linux.resources.memory: the limit and runc's memory+swap.
fn memory_limits(m: &rt::LinuxMemory, limits: &mut crate::model::limits::Limits) -> Result<()> {
    let limit = m.limit().filter(|l| *l > 0);
    limits.memory = limit.map(|l| l as u64);
    // runc's reading: swap is memory+swap; 0 or unset is no swap here
    // (the engine's default), -1 unlimited. podman asks twice the limit.
    limits.swap = match (m.swap(), limit) {
        (None | Some(0), _) => None,
        (Some(-1), _) => Some(u64::MAX),
        (Some(s), Some(l)) if s >= l => Some((s - l) as u64),
        (Some(s), Some(l)) => bail!(
            "config.json linux.resources.memory.swap {s} is below the memory limit {l}: it counts memory plus swap, so give at least the limit (or -1 for unlimited swap)"
        ),
        (Some(s), None) => bail!(
            "config.json linux.resources.memory.swap {s} has no memory limit to add to: give linux.resources.memory.limit too"
        ),
    };
    for (field, present) in [
        ("reservation", m.reservation().is_some()),
        ("kernel", m.kernel().is_some()),
        ("kernelTCP", m.kernel_tcp().is_some()),
        ("swappiness", m.swappiness().is_some()),
        ("disableOOMKiller", m.disable_oom_killer() == Some(true)),
    ] {
        if present {
            return Err(refuse(&format!("linux.resources.memory.{field}")));
        }
    }
    Ok(())
}

/// linux.resources.cpu: quota/period, shares (as cpu.weight) and cpus.
fn cpu_limits(cpu: &rt::LinuxCpu, limits: &mut crate::model::limits::Limits) -> Result<()> {
    if let Some(q) = cpu.quota().filter(|q| *q > 0) {
        let period = cpu.period().unwrap_or(100_000).max(1);
        limits.cpus = Some(q as f64 / period as f64);
    }
    limits.cpu_weight = match cpu.shares() {
        None | Some(0) => None,
        Some(s @ 2..=262_144) => Some(shares_to_weight(s)),
        Some(s) => bail!(
            "config.json linux.resources.cpu.shares {s} is outside 2 to 262144, the range cgroup v1 took and cgroup v2's cpu.weight maps"
        ),
    };
    limits.cpuset = match cpu.cpus().as_deref() {
        None | Some("") => None,
        Some(list) => Some(cpu_mask(list, "cpus")?),
    };
    limits.cpuset_mems = match cpu.mems().as_deref() {
        None | Some("") => None,
        Some(list) => Some(cpu_mask(list, "mems")?),
    };
    for (field, present) in [
        ("realtimeRuntime", cpu.realtime_runtime().is_some()),
        ("realtimePeriod", cpu.realtime_period().is_some()),
        ("idle", cpu.idle().is_some()),
        ("burst", cpu.burst().is_some()),
    ] {
        if present {
            return Err(refuse(&format!("linux.resources.cpu.{field}")));
        }
    }
    Ok(())
}

/// linux.resources.cpu.cpus or .mems ("0-2,5", cpuset's list form) as a
/// mask of CPUs (memory nodes) 0 to 63.
fn cpu_mask(list: &str, field: &str) -> Result<u64> {
    let bad = || {
        anyhow!("config.json linux.resources.cpu.{field} {list:?} is not a CPU list such as \"0-2,5\" of numbers 0 to 63")
    };
    let cpu = |s: &str| {
        s.trim()
            .parse::<u32>()
            .ok()
            .filter(|n| *n < 64)
            .ok_or_else(bad)
    };
    let mut mask = 0u64;
    for part in list.split(',') {
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (cpu(a)?, cpu(b)?),
            None => (cpu(part)?, cpu(part)?),
        };
        if first > last {
            return Err(bad());
        }
        for n in first..=last {
            mask |= 1 << n;
        }
    }
    Ok(mask)
}

/// cgroup v1 cpu.shares [2, 262144] onto cgroup v2 cpu.weight [1, 10000],
/// runc's and crun's formula, so that a Kubernetes pod's request weighs
/// what it weighs under runc (1024 shares: weight 39).
fn shares_to_weight(shares: u64) -> u64 {
    1 + (shares - 2) * 9999 / 262_142
}

/// linux.seccomp: the same shape as docker's profile format, compiled by
/// the engine's own compiler.
fn seccomp(s: &rt::LinuxSeccomp, caps: &CapSet) -> Result<Filter> {
    let json = serde_json::to_string(s)?;
    let profile = crate::sys::seccomp::Profile::from_docker_json(&json, caps)
        .map_err(|e| anyhow!("config.json linux.seccomp: {e}"))?;
    let arch = crate::sys::seccomp::Arch::native().ok_or_else(|| {
        anyhow!(
            "config.json linux.seccomp: no filter support on {}",
            std::env::consts::ARCH
        )
    })?;
    let program = crate::sys::seccomp::compile(&profile, arch)
        .map_err(|e| anyhow!("config.json linux.seccomp: {e}"))?;
    Ok(Filter::Custom(
        program.iter().map(crate::model::security::pack).collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn limits_of(r: serde_json::Value) -> Result<crate::model::limits::Limits> {
        resources(Some(&serde_json::from_value(r).unwrap()))
    }

    /// runc's memory.swap is memory+swap: podman's `--memory 64m` asks
    /// twice that, so 64M of swap on top; -1 is unlimited; equal or unset
    /// is no swap.
    #[test]
    fn memory_swap_is_memory_plus_swap() {
        const M: i64 = 64 << 20;
        for (swap, want) in [
            (json!(2 * M), Some(M as u64)),
            (json!(M), Some(0)),
            (json!(-1), Some(u64::MAX)),
            (json!(0), None),
            (serde_json::Value::Null, None),
        ] {
            let l = limits_of(json!({"memory": {"limit": M, "swap": swap}})).unwrap();
            assert_eq!((l.memory, l.swap), (Some(M as u64), want), "swap {swap}");
        }
        let below = limits_of(json!({"memory": {"limit": M, "swap": M / 2}})).unwrap_err();
        assert!(
            below.to_string().contains("below the memory limit"),
            "{below}"
        );
        let alone = limits_of(json!({"memory": {"swap": M}})).unwrap_err();
        assert!(alone.to_string().contains("no memory limit"), "{alone}");
    }

    /// cpu.shares becomes cpu.weight as under runc and crun (Kubernetes
    /// sets shares from a pod's CPU request: 2 for best effort).
    #[test]
    fn cpu_shares_become_cpu_weight() {
        for (shares, want) in [
            (2, Some(1)),
            (512, Some(20)),
            (1024, Some(39)),
            (262_144, Some(10_000)),
            (0, None),
        ] {
            let l = limits_of(json!({"cpu": {"shares": shares}})).unwrap();
            assert_eq!(l.cpu_weight, want, "shares {shares}");
        }
        for shares in [1, 262_145] {
            let e = limits_of(json!({"cpu": {"shares": shares}})).unwrap_err();
            assert!(e.to_string().contains("outside 2 to 262144"), "{e}");
        }
    }

    /// cpu.cpus and cpu.mems in cpuset's list form become masks; a malformed list
    /// or a CPU past 63 is refused.
    #[test]
    fn cpu_cpus_is_a_cpu_list() {
        for (cpus, want, written) in [
            ("0", 1, "0"),
            ("0-2,5", 0b100111, "0-2,5"),
            ("3,1", 0b1010, "1,3"),
            ("63", 1 << 63, "63"),
        ] {
            let l = limits_of(json!({"cpu": {"cpus": cpus, "mems": cpus}})).unwrap();
            assert_eq!(
                (l.cpuset, l.cpuset_mems),
                (Some(want), Some(want)),
                "{cpus}"
            );
            assert_eq!(crate::sys::cgroup::cpu_list(want), written);
        }
        for cpus in ["64", "2-1", "a", "0,,1", "-1"] {
            let e = limits_of(json!({"cpu": {"cpus": cpus}})).unwrap_err();
            assert!(e.to_string().contains("is not a CPU list"), "{cpus}: {e}");
        }
    }

    /// The last propagation option of a mount wins, as runc gives it
    /// (MS_REC for the r* forms); a bind mount with none stays a slave.
    #[test]
    fn propagation_options() {
        let bundle = Path::new("/");
        let (shared, slave, private, unbindable, rec) = (
            libc::MS_SHARED,
            libc::MS_SLAVE,
            libc::MS_PRIVATE,
            libc::MS_UNBINDABLE,
            libc::MS_REC,
        );
        // The model's copies of the bits it tests.
        use crate::model::bundle as b;
        assert_eq!((b::MS_PRIVATE, b::MS_SHARED), (private, shared));
        for (options, want) in [
            (json!(["rbind"]), 0),
            (json!(["rbind", "rprivate"]), private | rec),
            (json!(["bind", "private", "nosuid"]), private),
            (json!(["rbind", "rprivate", "rslave"]), slave | rec),
            (json!(["rbind", "rshared"]), shared | rec),
            (json!(["bind", "shared"]), shared),
            (json!(["rbind", "unbindable"]), unbindable),
            (json!(["rbind", "runbindable", "ro"]), unbindable | rec),
        ] {
            let m: rt::Mount = serde_json::from_value(
                json!({"destination": "/d", "type": "bind", "source": "/tmp", "options": options}),
            )
            .unwrap();
            let mut extras = Extras::default();
            mounts(&[m], bundle, &mut extras).unwrap();
            assert_eq!(extras.binds[0].propagation, want, "{options}");
            let m: rt::Mount = serde_json::from_value(
                json!({"destination": "/t", "type": "tmpfs", "source": "tmpfs", "options": options.as_array().unwrap().iter().filter(|o| !matches!(o.as_str(), Some("bind" | "rbind"))).collect::<Vec<_>>()}),
            )
            .unwrap();
            mounts(&[m], bundle, &mut extras).unwrap();
            assert_eq!(extras.tmpfs[0].propagation, want, "tmpfs {options}");
        }
        let mut c = runc_spec();
        for (value, want) in [
            ("shared", shared),
            ("rslave", slave | rec),
            ("private", private),
            ("runbindable", unbindable | rec),
        ] {
            c["linux"]["rootfsPropagation"] = json!(value);
            assert_eq!(plan_of(c.clone()).unwrap().extras.rootfs_propagation, want);
        }
    }

    /// `runc spec`'s config (the rootless-free default), on a rootfs of
    /// the test's own: planning reads only the bundle.
    fn runc_spec() -> serde_json::Value {
        json!({
            "ociVersion": "1.0.2",
            "process": {
                "terminal": true,
                "user": {"uid": 0, "gid": 0},
                "args": ["sh"],
                "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
                "cwd": "/",
                "capabilities": {
                    "bounding": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                    "effective": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                    "permitted": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
                },
                "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
                "noNewPrivileges": true
            },
            "root": {"path": "rootfs", "readonly": true},
            "hostname": "runc",
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}
            ],
            "linux": {
                "resources": {"devices": [{"allow": false, "access": "rwm"}]},
                "namespaces": [
                    {"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}
                ],
                "maskedPaths": ["/proc/kcore"],
                "readonlyPaths": ["/proc/sys"]
            }
        })
    }

    /// The plan of `config` in a bundle whose rootfs is an empty directory.
    fn plan_of(config: serde_json::Value) -> Result<Plan> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("rootfs")).unwrap();
        let bundle = Bundle {
            dir: dir.path().to_path_buf(),
            config: serde_json::from_value(config).expect("a runtime-spec config"),
        };
        plan("c1", &bundle)
    }

    fn refusal(config: serde_json::Value) -> String {
        match plan_of(config) {
            Ok(_) => panic!("planned a config that should be refused"),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn runc_spec_s_config_is_planned_as_given() {
        let p = plan_of(runc_spec()).unwrap();
        assert_eq!(p.spec.name, "c1");
        assert_eq!(p.spec.hostname, "runc");
        assert_eq!(p.spec.command, ["sh"]);
        assert!(p.spec.tty);
        assert!(p.spec.rootfs.ends_with("rootfs"));
        assert_eq!(p.spec.userns, UserNs::Host);
        assert!(p.extras.readonly_root);
        assert_eq!(p.extras.masked, ["/proc/kcore"]);
        assert_eq!(p.extras.readonly, ["/proc/sys"]);
        assert_eq!(p.extras.rlimits.len(), 1);
        let want = (libc::CLONE_NEWPID
            | libc::CLONE_NEWNET
            | libc::CLONE_NEWIPC
            | libc::CLONE_NEWUTS
            | libc::CLONE_NEWNS) as u64;
        // The cgroup namespace is unshared by the child, once in its cgroup.
        assert_eq!(p.new_namespaces, want);
        assert!(p.join.is_empty());
        let caps = CapSet::from_bits(p.spec.confinement.caps);
        let names: Vec<&str> = caps.iter().map(|c| c.name()).collect();
        assert_eq!(names, ["KILL", "NET_BIND_SERVICE", "AUDIT_WRITE"]);
        assert!(p.spec.confinement.no_new_privs);
        assert_eq!(p.spec.env[1], ("TERM".to_string(), "xterm".to_string()));
    }

    #[test]
    fn a_user_namespace_maps_container_root() {
        let mut c = runc_spec();
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "user"}));
        c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
        let p = plan_of(c.clone()).unwrap();
        assert_eq!(
            p.spec.userns,
            UserNs::Map {
                uid: 100000,
                gid: 200000
            }
        );
        c["linux"]["uidMappings"] = json!([{"containerID": 1, "hostID": 100000, "size": 10}]);
        assert!(refusal(c).contains("do not map container ID 0"));
    }

    /// Each field the engine cannot honour is refused, naming it.
    #[test]
    fn what_cannot_be_honoured_is_refused_by_name() {
        type Edit = fn(&mut serde_json::Value);
        let cases: &[(Edit, &str)] = &[
            (|c| c["ociVersion"] = json!("2.0.0"), "ociVersion \"2.0.0\""),
            (
                |c| c["process"]["args"] = json!([]),
                "process.args is empty",
            ),
            (
                |c| c["process"]["cwd"] = json!("tmp"),
                "process.cwd tmp is not absolute",
            ),
            (
                |c| c["process"]["env"] = json!(["NOEQUALS"]),
                "process.env entry",
            ),
            (
                |c| c["process"]["apparmorProfile"] = json!("p"),
                "process.apparmorProfile",
            ),
            (|c| c["domainname"] = json!("d"), "config.json domainname"),
            (|c| c["root"]["path"] = json!("missing"), "does not exist"),
            (
                |c| c["linux"]["sysctl"] = json!({"kernel.hostname": "x"}),
                "linux.sysctl \"kernel.hostname\" is not namespaced",
            ),
            (
                |c| {
                    c["linux"]["uidMappings"] =
                        json!([{"containerID": 0, "hostID": 1000, "size": 1}])
                },
                "no user namespace",
            ),
            (
                |c| c["linux"]["cgroupsPath"] = json!("system.slice:engine:c1"),
                "is a systemd slice",
            ),
            (
                |c| c["linux"]["cgroupsPath"] = json!("/a/../.."),
                "leaves the cgroup tree",
            ),
            (
                |c| c["hooks"] = json!({"prestart": [{"path": "true"}]}),
                "hooks.prestart[0].path true is not absolute",
            ),
            (
                |c| c["hooks"] = json!({"poststop": [{"path": "/bin/true", "timeout": -1}]}),
                "hooks.poststop[0].timeout is negative",
            ),
            (
                |c| c["linux"]["rootfsPropagation"] = json!("sideways"),
                "rootfsPropagation \"sideways\" is not a propagation",
            ),
        ];
        for (edit, words) in cases {
            let mut c = runc_spec();
            edit(&mut c);
            let e = refusal(c);
            assert!(e.contains(words), "{words:?} not in: {e}");
        }
    }
}
