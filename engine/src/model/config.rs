//! Host-side settings that tests vary through the environment.

use std::path::PathBuf;

/// Where the engine keeps its state, its bridge, subnet and cgroup parent.
#[derive(Debug, Clone)]
pub struct Config {
    /// `ENGINE_STATE_DIR`, default `/run/engine`.
    pub state_dir: PathBuf,
    /// `ENGINE_DATA_DIR`, default `/var/lib/engine/containers`: what of a
    /// kept container (`run -d` without `--rm`) survives a reboot.
    pub data_dir: PathBuf,
    /// `ENGINE_BRIDGE`, default `engine0` (checked by `net::NetConfig`).
    pub bridge: String,
    /// `ENGINE_SUBNET`, default `192.168.1.0/24` (checked by `net::NetConfig`).
    pub subnet: String,
    /// `ENGINE_CGROUP_ROOT`, default `/sys/fs/cgroup/engine`.
    pub cgroup_root: PathBuf,
    /// `ENGINE_ROOTFS_CACHE`, default `/var/lib/engine/rootfs`: catalog rootfs pulled on first use.
    pub rootfs_cache: PathBuf,
}

fn var(name: &str, default: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v,
        _ => default.to_string(),
    }
}

impl Config {
    pub fn from_env() -> Self {
        Config {
            state_dir: var("ENGINE_STATE_DIR", "/run/engine").into(),
            data_dir: var("ENGINE_DATA_DIR", "/var/lib/engine/containers").into(),
            bridge: var("ENGINE_BRIDGE", "engine0"),
            subnet: var("ENGINE_SUBNET", "192.168.1.0/24"),
            cgroup_root: var("ENGINE_CGROUP_ROOT", "/sys/fs/cgroup/engine").into(),
            rootfs_cache: var("ENGINE_ROOTFS_CACHE", "/var/lib/engine/rootfs").into(),
        }
    }
}
