//! What the engine records about a container in the state directory, or
//! the data directory for a kept one (`sys::state` keeps it): while it
//! runs, enough to find and remove everything it made if the engine dies,
//! and what `engine exec` and `ps` need; once a detached one has ended,
//! its exit status, kept until `engine rm`.

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
    /// The engine process whose life is the container's (its supervisor;
    /// a started detached container's monitor), and its start time (guards
    /// against pid reuse).
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
    /// `--network-alias`: its names for its peers on the bridge, besides its name.
    #[serde(default)]
    pub aliases: Vec<String>,
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
    /// A detached container without `--rm`: its record is kept when it
    /// ends, with the three fields below.
    #[serde(default)]
    pub keep: bool,
    /// Unix time in seconds of its command's start (kept records only).
    #[serde(default)]
    pub started: Option<u64>,
    /// Unix time in seconds of its end. A record with this set is an
    /// exited container's: it holds no address, IDs, cgroup or veth (all
    /// released), only its name, until `engine rm`.
    #[serde(default)]
    pub finished: Option<u64>,
    /// Its exit status (128+N when killed by signal N).
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// An exited container its supervisor runs again after a back-off
    /// (`--restart`); `stop` ends that.
    #[serde(default)]
    pub restarting: bool,
    /// How many times its `--restart` policy has run it again since
    /// `run` or `start` (`on-failure:N` counts these; docker's RestartCount).
    #[serde(default)]
    pub restart_count: u32,
    /// What its front end gave (kept records only): `engine start` runs it
    /// again from this, with the same settings.
    #[serde(default)]
    pub input: Option<crate::model::spec::SpecInput>,
    /// The image it runs on, as given (None: a rootfs directory).
    #[serde(default)]
    pub image: Option<String>,
    /// The image's ID.
    #[serde(default)]
    pub image_id: Option<String>,
    /// The signal `engine stop` sends first (the image's StopSignal;
    /// None: SIGTERM).
    #[serde(default)]
    pub stop_signal: Option<i32>,
    /// The host's boot the record was written in (kept records only, which
    /// outlive a reboot): one of another boot is an ended container's, even
    /// where its pids now name live processes.
    #[serde(default)]
    pub boot_id: Option<String>,
}

impl crate::sys::state::Placed for Record {
    fn kept(&self) -> bool {
        self.keep
    }
}

impl Record {
    /// Whether the container has ended (its record kept for `engine rm`).
    pub fn exited(&self) -> bool {
        self.finished.is_some()
    }

    /// The record of the ended container: its status, and none of what
    /// it held (released by its supervisor).
    pub fn into_exited(mut self, exit_code: i32, finished: u64) -> Record {
        self.pid = 0;
        self.ip = None;
        self.veth = None;
        self.cgroup = None;
        self.userns_base = None;
        self.finished = Some(finished);
        self.exit_code = Some(exit_code);
        self
    }
}
