//! Reading a container's cgroup v2 files, as the host sees them.

use anyhow::{anyhow, Context, Result};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The cgroup2 mount point, from /proc/self/mountinfo.
pub fn mount_point() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mount_point = left.split(' ').nth(4)?;
        (right.split(' ').next()? == "cgroup2").then(|| PathBuf::from(mount_point))
    })
}

/// Whether scenarios can run on this host as it is: root, and cgroup v2
/// mounted at /sys/fs/cgroup offering cpu, memory and pids. Otherwise why not.
pub fn direct_capable() -> std::result::Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("not running as root".into());
    }
    let root = Path::new("/sys/fs/cgroup");
    if mount_point().as_deref() != Some(root) {
        return Err("cgroup v2 is not mounted at /sys/fs/cgroup (cgroup v1 or hybrid host)".into());
    }
    let have = std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
    let missing: Vec<&str> = ["cpu", "memory", "pids"]
        .into_iter()
        .filter(|c| !have.split_whitespace().any(|h| h == *c))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the cgroup v2 root lacks the {} controller(s)",
            missing.join(", ")
        ))
    }
}

/// The contents of a cgroup file, trimmed.
pub fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .with_context(|| format!("cannot read {}", path.display()))
}

/// A number from a cgroup file holding one (`memory.peak`, `pids.current`).
pub fn read_u64(path: &Path) -> Result<u64> {
    let text = read(path)?;
    text.parse()
        .map_err(|_| anyhow!("{} holds {text:?}, not a number", path.display()))
}

/// The value of `key` in a flat-keyed cgroup file (`memory.events`,
/// `cpu.stat`, `pids.events`); 0 when the key is absent.
pub fn read_key(path: &Path, key: &str) -> Result<u64> {
    let text = read(path)?;
    Ok(key_in(&text, key).unwrap_or(0))
}

/// The value of `key` in the text of a flat-keyed file.
pub fn key_in(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.next()? == key)
            .then(|| words.next()?.parse().ok())
            .flatten()
    })
}

/// A sample of a cgroup's CPU time (`cpu.stat` usage_usec) and the time it
/// was taken.
#[derive(Debug, Clone, Copy)]
pub struct CpuSample {
    pub usage_usec: u64,
    pub at: Instant,
}

impl CpuSample {
    pub fn take(leaf: &Path) -> Result<CpuSample> {
        let at = Instant::now();
        let usage_usec = read_key(&leaf.join("cpu.stat"), "usage_usec")?;
        Ok(CpuSample { usage_usec, at })
    }

    /// CPUs used on average between `self` and a later sample.
    pub fn cpus_until(&self, later: &CpuSample) -> f64 {
        let wall = later.at.duration_since(self.at).as_secs_f64();
        let used = later.usage_usec.saturating_sub(self.usage_usec) as f64 / 1e6;
        if wall > 0.0 {
            used / wall
        } else {
            0.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_flat_files() {
        let events = "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0";
        assert_eq!(key_in(events, "oom_kill"), Some(1));
        assert_eq!(key_in(events, "max"), Some(12));
        assert_eq!(key_in(events, "oom"), Some(1));
        assert_eq!(key_in(events, "absent"), None);
    }
}
