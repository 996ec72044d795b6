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
    /// `private`/`rprivate`: the mount receives nothing from the host
    /// either; otherwise it is a slave (shared propagation is refused).
    pub private: bool,
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
    /// root.readonly.
    pub readonly_root: bool,
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
}
