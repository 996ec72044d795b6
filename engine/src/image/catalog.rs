//! The catalog: its names, the per-name cache, and where each flavour comes from.

use super::{pull, PullOptions};
use anyhow::{bail, Context, Result};
use std::fs;
use std::path::{Path, PathBuf};

// The names are the description's (a ROOTFS argument is one or a path).
pub use crate::model::spec::{is_catalog_name, CATALOG};

/// The cached rootfs for a catalog name, pulled into `cache/NAME` on first use.
///
/// Two processes asking at once for the same name are serialized by a lock
/// file in `cache`, so the second one waits and then uses the first one's.
pub fn cached(name: &str, cache: &Path) -> Result<PathBuf, super::Error> {
    if !is_catalog_name(name) {
        return Err(super::Error::Failed(format!(
            "`{name}` is not a rootfs catalog name (try {})",
            CATALOG.join(", ")
        )));
    }
    let dest = cache.join(name);
    if dest.is_dir() {
        return Ok(dest);
    }
    fs::create_dir_all(cache)
        .with_context(|| format!("cannot create the rootfs cache {}", cache.display()))?;
    let _lock = crate::sys::lock::lock_file(&cache.join(format!(".{name}.lock")))?;
    // Whoever held the lock before us may have pulled it meanwhile.
    if dest.is_dir() {
        return Ok(dest);
    }
    let opts = PullOptions {
        progress: true,
        ..PullOptions::default()
    };
    pull(name, &dest, &opts)?;
    Ok(dest)
}

/// The catalog's architectures, accepting the kernel's names as aliases.
pub(super) fn catalog_arch(arch: &str) -> Result<&'static str> {
    match arch {
        "amd64" | "x86_64" => Ok("amd64"),
        "arm64" | "aarch64" => Ok("arm64"),
        other => {
            bail!("unsupported architecture `{other}`: the rootfs catalog has amd64 and arm64")
        }
    }
}

pub(super) fn centos_url(arch: &str) -> String {
    format!(
        "https://raw.githubusercontent.com/EXALAB/Anlinux-Resources/master/Rootfs/CentOS/{arch}/centos-rootfs-{arch}.tar.xz"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn centos_url_follows_the_arch() {
        assert_eq!(
            centos_url("arm64"),
            "https://raw.githubusercontent.com/EXALAB/Anlinux-Resources/master/Rootfs/CentOS/arm64/centos-rootfs-arm64.tar.xz"
        );
        assert!(centos_url("amd64").ends_with("/CentOS/amd64/centos-rootfs-amd64.tar.xz"));
    }
}
