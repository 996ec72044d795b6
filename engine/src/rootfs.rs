//! Rootfs catalog, download, sha256 check, xz/gz unpack, ownership shift.
//! STUB: being written by the rootfs helper; signatures are the contract.

use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

/// Options for `engine rootfs pull`.
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// `amd64` or `arm64`; default: the host's.
    pub arch: Option<String>,
    /// Expected sha256 of the downloaded file (hex).
    pub sha256: Option<String>,
    /// Shift every uid/gid by this base (for an unprivileged user namespace).
    pub owner: Option<u32>,
    /// Show a progress bar (on a terminal).
    pub progress: bool,
}

/// Pulls `source` (a catalog name such as `busybox`, `debian`, `centos`, or an
/// http(s)/file URL of a .tar.xz/.tar.gz/.tar) into `dest`, atomically.
pub fn pull(source: &str, dest: &Path, opts: &PullOptions) -> Result<()> {
    let _ = (source, dest, opts);
    bail!("rootfs pull is not implemented yet")
}

/// Whether `name` is a catalog name.
pub fn is_catalog_name(name: &str) -> bool {
    matches!(name, "busybox" | "debian" | "centos")
}

/// The cached rootfs for a catalog name, pulled into `cache/NAME` on first use.
pub fn cached(name: &str, cache: &Path) -> Result<PathBuf> {
    let dest = cache.join(name);
    if dest.is_dir() {
        return Ok(dest);
    }
    pull(name, &dest, &PullOptions::default())?;
    Ok(dest)
}
