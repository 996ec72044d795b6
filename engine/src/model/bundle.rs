//! What an OCI bundle asks for beyond the engine's own description
//! (`Spec`): filled by the OCI front end (`crate::oci`), applied by the
//! child. Pure data.

use std::path::PathBuf;

/// The process's identity (process.user).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub umask: Option<u32>,
}

/// One process.rlimits entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimit {
    /// The RLIMIT_* number.
    pub resource: i32,
    pub soft: u64,
    pub hard: u64,
}

/// A mount of the config's list that the engine makes itself, beside its
/// standard /proc, /sys and /dev (bind mounts travel as volumes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TmpfsMount {
    pub destination: PathBuf,
    /// MS_* flags (nosuid, nodev, noexec, ro...).
    pub flags: u64,
    /// size=, mode=... as given.
    pub data: String,
    /// MS_SHARED, MS_SLAVE, MS_PRIVATE or MS_UNBINDABLE (with MS_REC for
    /// the r* options): the last propagation option, applied once
    /// mounted; 0 for none.
    pub propagation: u64,
    /// tmpcopyup: what the rootfs has at the destination is copied into
    /// the tmpfs before it covers it.
    pub copy_up: bool,
}

/// One entry of config.json's mounts, in the order the config lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountEntry {
    /// The engine's own /proc.
    Proc,
    /// The engine's own /sys.
    Sys,
    /// The engine's own /dev, with /dev/pts, /dev/shm and /dev/mqueue (any
    /// of the four: /dev is made whole where the first is listed).
    Dev,
    /// The cgroup file system at /sys/fs/cgroup.
    Cgroup,
    /// A bind mount: the spec's volume of this index.
    Volume(usize),
    /// A tmpfs elsewhere: `Extras::tmpfs` of this index.
    Tmpfs(usize),
}

/// One hook of config.json (runtime-spec `hooks.*[]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hook {
    /// Absolute.
    pub path: PathBuf,
    /// argv, argv[0] included (may be empty: then argv[0] is the path).
    pub args: Vec<String>,
    /// KEY=VALUE, the hook's whole environment.
    pub env: Vec<String>,
    /// Seconds; None or 0: no limit.
    pub timeout: Option<u64>,
}

/// The kind of a linux.devices node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    Char,
    Block,
    Fifo,
}

/// One linux.devices entry, checked: the node made in the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Absolute, without `..` (resolved in the root).
    pub path: PathBuf,
    pub kind: DeviceKind,
    pub major: u32,
    pub minor: u32,
    /// Permission bits (07777).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// What a bundle's options ask of one bind mount beyond ro.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BindOptions {
    /// MOUNT_ATTR_NOSUID/NODEV/NOEXEC.
    pub attrs: u64,
    /// The last propagation option as MS_* flags (0: none). The tree is a
    /// slave of the host's unless it is private (receives nothing) or
    /// shared (stays a peer of a shared source: the container's mounts
    /// in it reach the host, as asked); applied again once attached.
    pub propagation: u64,
}

/// MS_PRIVATE and MS_SHARED of mount(2) (the model names no syscall layer).
pub const MS_PRIVATE: u64 = 1 << 18;
pub const MS_SHARED: u64 = 1 << 20;

impl BindOptions {
    pub fn private(&self) -> bool {
        self.propagation & MS_PRIVATE != 0
    }

    pub fn shared(&self) -> bool {
        self.propagation & MS_SHARED != 0
    }
}

/// The OCI-only parts of a container's setup.
#[derive(Debug, Clone, Default)]
pub struct Extras {
    pub user: User,
    pub rlimits: Vec<Rlimit>,
    /// linux.maskedPaths beyond the engine's own list.
    pub masked: Vec<String>,
    /// linux.readonlyPaths beyond the engine's own list.
    pub readonly: Vec<String>,
    pub tmpfs: Vec<TmpfsMount>,
    /// config.json's mounts in its order (empty: the engine's own order).
    pub mounts: Vec<MountEntry>,
    /// root.readonly.
    pub readonly_root: bool,
    /// linux.rootfsPropagation as MS_* flags, applied to the container's
    /// `/` once it is the root (0: none).
    pub rootfs_propagation: u64,
    /// linux.sysctl, written in the container's namespaces.
    pub sysctl: Vec<(String, String)>,
    /// The network namespace is one joined by path, or the caller's (no
    /// network entry in linux.namespaces): leave its links alone.
    pub joined_net: bool,
    /// A UTS namespace joined by path, or the caller's: leave its hostname alone.
    pub joined_uts: bool,
    /// Options of each bind mount, in the order of the spec's volumes.
    pub binds: Vec<BindOptions>,
    /// Inherited fds 3.. that the process keeps (`--preserve-fds N`).
    pub preserve_fds: u32,
    /// hooks.createContainer: run by the init in the container's
    /// namespaces, mounts made, before pivot_root.
    pub create_container: Vec<Hook>,
    /// linux.devices, made by the init (`child::dev`).
    pub devices: Vec<Device>,
    /// hooks.startContainer: run by the init once `start` opened the gate,
    /// confined as the process, right before its exec.
    pub start_container: Vec<Hook>,
    /// No mount namespace in linux.namespaces: the init stays in the
    /// caller's, mounts nothing there and chroots into the rootfs (runc's
    /// way without one, less its mounts on the caller's side).
    pub caller_mount_ns: bool,
    /// Neither a mount nor a cgroup namespace listed: the caller's cgroup
    /// namespace is kept (with a mount namespace of its own the container
    /// always gets its own, for the cgroup2 it mounts).
    pub caller_cgroup_ns: bool,
}
