//! What cgroup v2 offers on this host, as tests need to know it.

use std::path::PathBuf;

/// The controllers the engine's limits need.
pub const LIMIT_CONTROLLERS: [&str; 3] = ["cpu", "memory", "pids"];

/// The first cgroup2 mount point this process sees.
pub fn v2_mount_point() -> Option<PathBuf> {
    procfs::process::Process::myself()
        .and_then(|p| p.mountinfo())
        .ok()?
        .into_iter()
        .find(|m| m.fs_type == "cgroup2")
        .map(|m| m.mount_point)
}

/// Ok when cgroup v2 is mounted at /sys/fs/cgroup offering cpu, memory and
/// pids (what `engine run --cpus/--memory/--pids-limit` needs); else why not,
/// in one sentence.
pub fn v2_limits() -> Result<(), String> {
    match v2_mount_point() {
        None => return Err("this host has no cgroup v2 mount".into()),
        Some(m) if m != std::path::Path::new("/sys/fs/cgroup") => {
            let offers = std::fs::read_to_string(m.join("cgroup.controllers")).unwrap_or_default();
            return Err(format!(
                "this host is cgroup v1 hybrid: cgroup2 at {} offers only `{}`",
                m.display(),
                offers.trim()
            ));
        }
        Some(_) => {}
    }
    let have = std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers").unwrap_or_default();
    let missing: Vec<&str> = LIMIT_CONTROLLERS
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
