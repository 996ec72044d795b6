//! The mounts a process sees, read through the `procfs` crate.

use procfs::process::{MountInfo, Process};
use std::path::Path;

/// The mounts of this process whose mount point or root lies at or under `path`.
pub fn mounts_under(path: &Path) -> Vec<MountInfo> {
    let infos = Process::myself()
        .and_then(|p| p.mountinfo())
        .unwrap_or_else(|e| panic!("cannot read /proc/self/mountinfo: {e}"));
    infos
        .into_iter()
        .filter(|m| m.mount_point.starts_with(path) || m.root.starts_with(&*path.to_string_lossy()))
        .collect()
}

/// Panics, listing them, when this process sees a mount at or under `path`.
pub fn assert_none_under(path: &Path) {
    let hits = mounts_under(path);
    assert!(
        hits.is_empty(),
        "mounts under {} visible here: {:#?}",
        path.display(),
        hits.iter()
            .map(|m| format!("{} ({})", m.mount_point.display(), m.fs_type))
            .collect::<Vec<_>>()
    );
}
