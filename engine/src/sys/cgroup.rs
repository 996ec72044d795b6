//! cgroup v2: one leaf per container under `ENGINE_CGROUP_ROOT`, controllers
//! enabled top-down in every ancestor (never in the leaf), limits, stats,
//! `cgroup.kill` then rmdir.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Why a cgroup could not be made, limited or removed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cgroup v2: {0}")]
    Unavailable(Unavailable),
    #[error("cannot write {value:?} to {}", .path.display())]
    Write {
        path: PathBuf,
        value: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create cgroup {}", .dir.display())]
    Create {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot enable controllers in {} (a cgroup with processes of its own cannot delegate them)", .dir.display())]
    EnableControllers {
        dir: PathBuf,
        #[source]
        source: Box<Error>,
    },
    #[error("cannot remove cgroup {}: {error} ({procs} processes left in it)", .path.display())]
    Remove {
        path: PathBuf,
        error: std::io::Error,
        procs: usize,
    },
}

/// Why this host cannot hold the engine's cgroups, as a phrase
/// ("ENGINE_CGROUP_ROOT ... is not on a cgroup v2 file system ...").
#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    #[error("ENGINE_CGROUP_ROOT {} is not on a cgroup v2 file system (this host has cgroup v1, or mixes v1 and v2)", .root.display())]
    NotCgroup2 { root: PathBuf },
    #[error("the cgroup v2 hierarchy at {} lacks the {} controller(s) (cgroup v1 hybrid host)", .mount.display(), .missing.join(", "))]
    MissingControllers {
        mount: PathBuf,
        missing: Vec<&'static str>,
    },
}

type Result<T, E = Error> = std::result::Result<T, E>;

/// What the leaf's control files get, the input of [`create`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Settings {
    /// CPUs, e.g. 0.5: cpu.max's quota over a period of 100 ms.
    pub cpus: Option<f64>,
    /// memory.max, bytes.
    pub memory: Option<u64>,
    /// memory.swap.max (u64::MAX for "max"), set with `memory` only;
    /// none: 0.
    pub swap: Option<u64>,
    /// pids.max; none: [`DEFAULT_PIDS_LIMIT`].
    pub pids: Option<u64>,
    /// cpu.weight, 1 to 10000.
    pub cpu_weight: Option<u64>,
    /// cpuset.cpus, bit N for CPU N; the cpuset controller is delegated
    /// down to the leaf only when it is asked for.
    pub cpuset: Option<u64>,
    /// cpuset.mems, bit N for memory node N.
    pub cpuset_mems: Option<u64>,
}

/// pids.max of a container without `--pids-limit`.
pub const DEFAULT_PIDS_LIMIT: u64 = 4096;

const CONTROLLERS: [&str; 3] = ["cpu", "memory", "pids"];
const CPU_PERIOD_US: u64 = 100_000;

fn is_cgroup2(path: &Path) -> bool {
    rustix::fs::statfs(path).is_ok_and(|fs| fs.f_type == libc::CGROUP2_SUPER_MAGIC)
}

/// The cgroup2 mount that holds `root` (or would, once created): the
/// topmost cgroup2 directory among its existing ancestors. statfs is far
/// cheaper than reading /proc/self/mountinfo on every start.
pub fn cgroup2_mount_of(root: &Path) -> Option<PathBuf> {
    let mut dir = root;
    while !dir.exists() {
        dir = dir.parent()?;
    }
    if !is_cgroup2(dir) {
        return None;
    }
    while let Some(parent) = dir.parent().filter(|p| is_cgroup2(p)) {
        dir = parent;
    }
    Some(dir.to_path_buf())
}

/// Ok when `root` can hold cgroup v2 leaves with cpu, memory and pids;
/// otherwise why not.
pub fn check_available(root: &Path) -> Result<PathBuf, Unavailable> {
    let Some(mount) = cgroup2_mount_of(root) else {
        return Err(Unavailable::NotCgroup2 {
            root: root.to_owned(),
        });
    };
    let have = std::fs::read_to_string(mount.join("cgroup.controllers")).unwrap_or_default();
    let missing: Vec<&'static str> = CONTROLLERS
        .iter()
        .copied()
        .filter(|c| !have.split_whitespace().any(|h| h == *c))
        .collect();
    if !missing.is_empty() {
        return Err(Unavailable::MissingControllers { mount, missing });
    }
    Ok(mount)
}

/// A container's leaf cgroup.
#[derive(Debug)]
pub struct Cgroup {
    pub path: PathBuf,
}

fn write(path: &Path, value: &str) -> Result<()> {
    std::fs::write(path, value).map_err(|source| Error::Write {
        path: path.to_owned(),
        value: value.to_owned(),
        source,
    })
}

/// Makes `root` and every ancestor from the mount down delegate
/// `+cpu +memory +pids` to their children (never a leaf: no internal processes).
pub fn ensure_parent(root: &Path) -> Result<()> {
    let mount = check_available(root).map_err(Error::Unavailable)?;
    let enable: String = CONTROLLERS.iter().map(|c| format!("+{c} ")).collect();
    let mut dir = mount.clone();
    let rel = root.strip_prefix(&mount).unwrap_or(Path::new(""));
    enable_controllers(&dir, enable.trim())?;
    for part in rel.components() {
        dir.push(part);
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(source) => return Err(Error::Create { dir, source }),
        }
        enable_controllers(&dir, enable.trim())?;
    }
    Ok(())
}

/// Creates the leaf `root/name` with its limits.
pub fn create(root: &Path, name: &str, limits: &Settings) -> Result<Cgroup> {
    ensure_parent(root)?;
    let path = root.join(name);
    if let Err(e) = std::fs::create_dir(&path) {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            // Left by a crashed run of the same name that recovery could not see.
            kill_and_remove(&path)?;
            std::fs::create_dir(&path)
        } else {
            Err(e)
        }
        .map_err(|source| Error::Create {
            dir: path.clone(),
            source,
        })?;
    }
    let cg = Cgroup { path };
    if limits.cpuset.is_some() || limits.cpuset_mems.is_some() {
        if let Err(e) = enable_cpuset(root) {
            let _ = kill_and_remove(&cg.path);
            return Err(e);
        }
    }
    if let Err(e) = cg.set_limits(limits) {
        let _ = kill_and_remove(&cg.path);
        return Err(e);
    }
    Ok(cg)
}

/// `+cpuset` in the subtree_control of the mount and of every ancestor
/// down to `root` (the leaf's parent).
fn enable_cpuset(root: &Path) -> Result<()> {
    let mount = check_available(root).map_err(Error::Unavailable)?;
    let mut dir = mount.clone();
    let rel = root.strip_prefix(&mount).unwrap_or(Path::new(""));
    let mut dirs = vec![dir.clone()];
    for part in rel.components() {
        dir.push(part);
        dirs.push(dir.clone());
    }
    for d in dirs {
        let file = d.join("cgroup.subtree_control");
        let current = std::fs::read_to_string(&file).unwrap_or_default();
        if !current.split_whitespace().any(|c| c == "cpuset") {
            write(&file, "+cpuset").map_err(|source| Error::EnableControllers {
                dir: d.clone(),
                source: Box::new(source),
            })?;
        }
    }
    Ok(())
}

/// A CPU (or memory node) mask as cpuset.cpus (cpuset.mems) takes it: "0-2,5".
pub fn cpu_list(mask: u64) -> String {
    let mut parts = Vec::new();
    let mut cpu = 0;
    while cpu < 64 {
        if mask & (1 << cpu) == 0 {
            cpu += 1;
            continue;
        }
        let start = cpu;
        while cpu < 64 && mask & (1 << cpu) != 0 {
            cpu += 1;
        }
        parts.push(if cpu - 1 == start {
            start.to_string()
        } else {
            format!("{start}-{}", cpu - 1)
        });
    }
    parts.join(",")
}

fn enable_controllers(dir: &Path, enable: &str) -> Result<()> {
    let file = dir.join("cgroup.subtree_control");
    let current = std::fs::read_to_string(&file).unwrap_or_default();
    if CONTROLLERS
        .iter()
        .all(|c| current.split_whitespace().any(|h| h == *c))
    {
        return Ok(());
    }
    write(&file, enable).map_err(|source| Error::EnableControllers {
        dir: dir.to_owned(),
        source: Box::new(source),
    })
}

impl Cgroup {
    fn set_limits(&self, limits: &Settings) -> Result<()> {
        if let Some(cpus) = limits.cpus {
            let quota = (cpus * CPU_PERIOD_US as f64).round() as u64;
            write(
                &self.path.join("cpu.max"),
                &format!("{quota} {CPU_PERIOD_US}"),
            )?;
        }
        if let Some(weight) = limits.cpu_weight {
            write(&self.path.join("cpu.weight"), &weight.to_string())?;
        }
        if let Some(mask) = limits.cpuset {
            write(&self.path.join("cpuset.cpus"), &cpu_list(mask))?;
        }
        if let Some(mask) = limits.cpuset_mems {
            write(&self.path.join("cpuset.mems"), &cpu_list(mask))?;
        }
        if let Some(mem) = limits.memory {
            write(&self.path.join("memory.max"), &mem.to_string())?;
            // Without this the limit only moves pages to swap.
            let swap = self.path.join("memory.swap.max");
            if swap.exists() {
                let value = match limits.swap {
                    Some(u64::MAX) => "max".to_string(),
                    s => s.unwrap_or(0).to_string(),
                };
                write(&swap, &value)?;
            }
        }
        // A fork bomb is bounded even without --pids-limit.
        let pids = limits.pids.unwrap_or(DEFAULT_PIDS_LIMIT);
        write(&self.path.join("pids.max"), &pids.to_string())?;
        Ok(())
    }
}

/// Reads one `key value` entry of a flat-keyed file such as memory.events.
pub fn read_key(path: &Path, key: &str) -> Option<u64> {
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
}

pub fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Kills every process in the cgroup and removes it, with any cgroups the
/// container made below it. Idempotent.
pub fn kill_and_remove(path: &Path) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let kill = path.join("cgroup.kill");
    let has_kill = kill.exists();
    if has_kill {
        let _ = std::fs::write(&kill, "1");
    }
    // Dying processes leave the cgroup asynchronously: thousands of them (a
    // fork bomb under the pids limit) take seconds on a slow or emulated
    // machine. Retry as long as the count keeps falling, up to a hard cap.
    let hard_deadline = Instant::now() + Duration::from_secs(60);
    let mut deadline = Instant::now() + Duration::from_secs(5);
    let mut left = usize::MAX;
    let mut pause = Duration::from_millis(1);
    loop {
        if !has_kill {
            kill_listed(path); // kernels before 5.14
        }
        match remove_tree(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(error) => {
                let now = Instant::now();
                let procs = count_procs(path);
                if procs < left {
                    left = procs;
                    deadline = (now + Duration::from_secs(5)).min(hard_deadline);
                }
                if now >= deadline {
                    return Err(Error::Remove {
                        path: path.to_owned(),
                        error,
                        procs,
                    });
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
        }
    }
}

/// rmdir of `path` after its child cgroups, depth first.
fn remove_tree(path: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(path)?.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&entry.path())?;
        }
    }
    std::fs::remove_dir(path)
}

/// The processes in `path` and every cgroup below it.
fn count_procs(path: &Path) -> usize {
    let own = std::fs::read_to_string(path.join("cgroup.procs"))
        .map(|s| s.lines().count())
        .unwrap_or(0);
    let below: usize = std::fs::read_dir(path)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| count_procs(&e.path()))
        .sum();
    own + below
}

/// SIGKILL to every process listed in `path` and below.
fn kill_listed(path: &Path) {
    for pid in std::fs::read_to_string(path.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
    {
        // Pid 0 (never listed) would signal our own process group: skipped.
        if let Some(pid) = pid
            .trim()
            .parse::<i32>()
            .ok()
            .filter(|&p| p > 0)
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
    for e in std::fs::read_dir(path).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            kill_listed(&e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    /// A container may make cgroups below its own (it owns its leaf under
    /// nsdelegate): removal must go depth first and kill what is in them.
    #[test]
    fn removal_takes_the_cgroups_a_container_made_and_their_processes() {
        let v2 = testkit::cgroup::v2_mount_point().expect("this test needs a cgroup2 mount");
        let top = v2.join(format!("engine-unit-{}", std::process::id()));
        let inner = top.join("made-inside/deeper");
        std::fs::create_dir_all(&inner).unwrap();
        let mut sleepers: Vec<_> = (0..3)
            .map(|_| {
                Command::new("sleep")
                    .arg("100")
                    .stdin(Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for (i, s) in sleepers.iter().enumerate() {
            let dir = if i == 0 { top.clone() } else { inner.clone() };
            std::fs::write(dir.join("cgroup.procs"), s.id().to_string()).unwrap();
        }
        let removed = kill_and_remove(&top);
        let gone = !top.exists();
        for s in &mut sleepers {
            let _ = s.kill();
            let _ = s.wait();
        }
        let _ = remove_tree(&top);
        removed.unwrap();
        assert!(gone, "{} is still there", top.display());
    }
}
