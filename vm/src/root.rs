//! A root filesystem for a guest of another architecture than the host's
//! (arm64 on amd64): the host's own `/` cannot be its root, so a small Debian
//! root with a kernel is built once with mmdebstrap and cached under
//! `<target>/vm/<arch>-root/`.
//!
//! mmdebstrap's `extract` variant unpacks the packages and their
//! dependencies without running any of their scripts, so it needs no
//! binfmt_misc emulation on the host (the `minbase` variant does, and
//! registering a binfmt handler would change what the host's own engine
//! tests see). The few things package scripts would have done are done here.

use crate::cache::{self, Lock, RemoveOnDrop};
use crate::kernel::output;
use crate::Arch;
use anyhow::{Context, Result};
use std::path::{Component, Path, PathBuf};
use std::process::Command;

/// Debian's release for the root. A codename, not `stable`: on machines whose
/// apt sources are pinned snapshots, `stable`'s update lists are expired.
const SUITE: &str = "bookworm";

/// What the guest's root holds: busybox for the initramfs, a shell and the
/// usual tools the tests call, the C runtime for cross-built Rust binaries.
/// No kernel: the guest boots the backports one (see `kernel::from_backports`).
const PACKAGES: &[&str] = &[
    "busybox-static",
    "libc6",
    "libgcc-s1",
    "base-files",
    "base-passwd",
    "dash",
    "bash",
    "coreutils",
    "util-linux",
    "mount",
    "hostname",
    "grep",
    "sed",
    "findutils",
    "procps",
    "iproute2",
    "iputils-ping",
    "kmod",
];

/// Written into a finished root: what it was built from. A root built from
/// another package list is rebuilt.
const STAMP: &str = ".vm-root";

/// The cached root for `arch`, built first if needed.
pub fn foreign(arch: Arch) -> Result<PathBuf> {
    let vm = cache::vm_dir()?;
    let dir = vm.join(format!("{}-root", arch.debian()));
    let include = PACKAGES
        .iter()
        .map(|p| p.replace("{arch}", arch.debian()))
        .collect::<Vec<_>>()
        .join(",");
    let stamp = format!("{SUITE} {include}\n");
    let current = || std::fs::read_to_string(dir.join(STAMP)).is_ok_and(|s| s == stamp);
    if current() {
        return Ok(dir);
    }
    let _lock = Lock::take(&format!("{}-root", arch.debian()))?;
    if current() {
        return Ok(dir);
    }
    let tmp = vm.join(format!("{}-root.tmp{}", arch.debian(), std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let cleanup = RemoveOnDrop(Some(tmp.clone()));
    eprintln!(
        "vm: building the {} guest root in {} (once; 10-60 s)",
        arch.debian(),
        dir.display()
    );
    output(
        Command::new("mmdebstrap")
            .arg(format!("--arch={}", arch.debian()))
            .args(["--variant=extract", "--quiet"])
            .arg(format!("--include={include}"))
            .arg(SUITE)
            .arg(&tmp)
            .arg(mirror()),
        "mmdebstrap arch-test",
    )
    .with_context(|| format!("build the {} guest root with mmdebstrap", arch.debian()))?;
    finish(&tmp)?;
    std::fs::write(tmp.join(STAMP), &stamp)
        .with_context(|| format!("write {}", tmp.join(STAMP).display()))?;
    if dir.exists() {
        // An outdated root: out of the way first (a rename cannot replace a
        // directory that is not empty).
        let old = vm.join(format!("{}-root.old{}", arch.debian(), std::process::id()));
        std::fs::rename(&dir, &old).with_context(|| format!("rename {}", dir.display()))?;
        let _ = std::fs::remove_dir_all(&old);
    }
    std::fs::rename(&tmp, &dir).with_context(|| format!("rename to {}", dir.display()))?;
    cleanup.keep();
    Ok(dir)
}

/// Debian's archive address: `VM_DEBIAN_MIRROR`, else the host's own Debian
/// source (a local mirror or proxy keeps working offline), else deb.debian.org.
pub fn mirror() -> String {
    if let Ok(m) = std::env::var("VM_DEBIAN_MIRROR") {
        return m;
    }
    let sources =
        std::fs::read_to_string("/etc/apt/sources.list.d/debian.sources").unwrap_or_default();
    sources
        .lines()
        .filter_map(|l| l.strip_prefix("URIs:"))
        .flat_map(str::split_whitespace)
        .find(|u| u.trim_end_matches('/').ends_with("/debian"))
        .unwrap_or("http://deb.debian.org/debian")
        .to_string()
}

/// What the packages' scripts would have done, for a usable root.
fn finish(root: &Path) -> Result<()> {
    for d in ["proc", "sys", "dev", "tmp", "run", "mnt", "root", "var/tmp"] {
        let p = root.join(d);
        std::fs::create_dir_all(&p).with_context(|| format!("create {}", p.display()))?;
    }
    // base-passwd's postinst copies these.
    for f in ["passwd", "group"] {
        let master = root.join(format!("usr/share/base-passwd/{f}.master"));
        let target = root.join("etc").join(f);
        if !target.exists() && master.exists() {
            std::fs::copy(&master, &target)
                .with_context(|| format!("copy {} to {}", master.display(), target.display()))?;
        }
    }
    // /bin/sh is dash's, made by its postinst in current releases.
    let sh = root.join("bin/sh");
    if sh.symlink_metadata().is_err() {
        std::os::unix::fs::symlink("dash", &sh)
            .with_context(|| format!("create {}", sh.display()))?;
    }
    Ok(())
}

/// Makes `path` (absolute, on the host) exist as a directory in the root, so
/// that a share can be mounted there over the read-only 9p root.
/// A symlink on the way is not followed (an absolute one would lead out of
/// the root, onto the host): the guest then reports the failed mount.
pub fn mountpoint(root: &Path, path: &Path) -> Result<()> {
    let mut at = root.to_path_buf();
    for part in path.components().skip_while(|c| c == &Component::RootDir) {
        at.push(part);
        match at.symlink_metadata() {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Ok(()),
            Err(_) => std::fs::create_dir(&at)
                .with_context(|| format!("create the mount point {}", at.display()))?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountpoints_stay_inside_the_root() {
        let scratch = tempfile::tempdir().unwrap();
        let root = scratch.path().join("root");
        let outside = scratch.path().join("outside");
        std::fs::create_dir_all(root.join("var")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("var/run")).unwrap();
        mountpoint(&root, Path::new("/work/main")).unwrap();
        assert!(root.join("work/main").is_dir());
        mountpoint(&root, Path::new("/var/run/x")).unwrap();
        assert!(!outside.exists(), "did not follow the symlink");
    }
}
