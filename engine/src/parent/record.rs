//! What the engine records about a running container in the state
//! directory (`sys::state` keeps it): enough to find and remove everything
//! it made if the engine dies, and what `engine exec` and `ps` need.

use crate::model::ports::PortMapping;
use crate::model::security::Confinement;
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;
use std::path::PathBuf;

/// What the engine records about a running container; enough to find and
/// remove everything it made if the engine dies.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Record {
    pub name: String,
    /// The supervising engine process, and its start time (guards against pid reuse).
    pub engine_pid: i32,
    pub engine_start: u64,
    /// The container's PID 1 as the host sees it; 0 while starting.
    pub pid: i32,
    pub rootfs: PathBuf,
    pub command: Vec<String>,
    pub ip: Option<Ipv4Addr>,
    pub veth: Option<String>,
    pub cgroup: Option<PathBuf>,
    /// Unix time in seconds.
    pub created: u64,
    pub cpus: Option<f64>,
    pub memory: Option<u64>,
    pub pids_limit: Option<u64>,
    /// Output of a detached container.
    #[serde(default)]
    pub log: Option<PathBuf>,
    /// For `engine exec`: the container's hostname and `-e` variables.
    #[serde(default)]
    pub hostname: String,
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// Published ports; their nftables chains are named after the container.
    #[serde(default)]
    pub ports: Vec<PortMapping>,
    /// First host ID of the range from the pool (`--userns auto` on a
    /// root-owned rootfs). The lease itself is host-wide (`sys::idlease`);
    /// an engine also counts these, as engines before those leases wrote them.
    #[serde(default)]
    pub userns_base: Option<u32>,
    /// For `engine exec`: the capabilities and filter the joining process
    /// gets (None in records of older engines: the defaults).
    #[serde(default)]
    pub confinement: Option<Confinement>,
}
