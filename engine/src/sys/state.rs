//! `ENGINE_STATE_DIR`: one `NAME.json` per container while it runs, a lock
//! that serializes names and address leases, and recovery of entries whose
//! engine died (SIGKILL) without cleaning up.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

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
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    pub dir: PathBuf,
}

/// An exclusive lock on a file, released on drop.
pub struct Lock {
    _held: nix::fcntl::Flock<File>,
}

/// Takes an exclusive flock on `path` (created if missing), waiting for it.
pub fn lock_file(path: &Path) -> Result<Lock> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open lock {}", path.display()))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map(|held| Lock { _held: held })
        .map_err(|(_, errno)| anyhow::anyhow!("cannot lock {}: {}", path.display(), errno.desc()))
}

impl StateDir {
    pub fn new(dir: &Path) -> Self {
        StateDir {
            dir: dir.to_path_buf(),
        }
    }

    fn ensure(&self) -> Result<()> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create state directory {}", self.dir.display()))
    }

    /// An exclusive lock over the whole state directory.
    pub fn lock(&self) -> Result<Lock> {
        self.ensure()?;
        lock_file(&self.dir.join(".lock"))
    }

    pub fn path_of(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    /// Where a detached container's output goes.
    pub fn log_of(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.log"))
    }

    /// Writes a record atomically (temp file + rename).
    pub fn write(&self, rec: &Record) -> Result<()> {
        self.ensure()?;
        let path = self.path_of(&rec.name);
        let tmp = self.dir.join(format!(".{}.json.tmp", rec.name));
        let data = serde_json::to_vec_pretty(rec).context("cannot encode state")?;
        std::fs::write(&tmp, data)
            .and_then(|_| std::fs::rename(&tmp, &path))
            .with_context(|| format!("cannot write state file {}", path.display()))
    }

    pub fn read(&self, name: &str) -> Option<Record> {
        let data = std::fs::read(self.path_of(name)).ok()?;
        serde_json::from_slice(&data).ok()
    }

    pub fn remove(&self, name: &str) {
        let _ = std::fs::remove_file(self.path_of(name));
    }

    /// Every record, sorted by name; unreadable files are skipped.
    pub fn list(&self) -> Vec<Record> {
        let Ok(dir) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out: Vec<Record> = dir
            .flatten()
            .filter(|e| {
                let n = e.file_name();
                let n = n.to_string_lossy();
                n.ends_with(".json") && !n.starts_with('.')
            })
            .filter_map(|e| serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok())
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}

/// Field 22 of /proc/PID/stat: start time in clock ticks since boot.
pub fn process_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parens; fields follow the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

/// Whether the engine that wrote the record still runs.
pub fn is_alive(rec: &Record) -> bool {
    rec.engine_pid > 0 && process_start_time(rec.engine_pid) == Some(rec.engine_start)
}

/// Removes everything a dead engine left behind: the container's processes
/// (through its cgroup, or its pid), cgroup, veth and state file. Returns
/// the records of the containers that still run (one scan of the directory
/// serves both). Call with the lock held.
pub fn recover_stale(state: &StateDir) -> Vec<Record> {
    let (running, stale): (Vec<Record>, Vec<Record>) = state.list().into_iter().partition(is_alive);
    for rec in &stale {
        release(state, rec);
    }
    running
}

/// Tears down what a record names. Idempotent.
pub fn release(state: &StateDir, rec: &Record) {
    if let Some(cg) = &rec.cgroup {
        let _ = crate::sys::cgroup::kill_and_remove(cg);
    }
    if rec.pid > 0 {
        kill_if_container(rec);
    }
    if let Some(veth) = &rec.veth {
        let _ = crate::sys::net::delete_link(veth);
    }
    state.remove(&rec.name);
}

/// Kills the recorded PID 1 if it is still that container (its parent is gone,
/// so it is reparented; we check it lives in a pid namespace other than ours).
fn kill_if_container(rec: &Record) {
    let ours = std::fs::read_link("/proc/self/ns/pid").ok();
    let theirs = std::fs::read_link(format!("/proc/{}/ns/pid", rec.pid)).ok();
    if theirs.is_some() && theirs != ours {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(rec.pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
