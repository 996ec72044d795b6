//! The catalog: its names, the per-name cache, and where each flavour comes from.

use super::{pull, PullOptions};
use anyhow::{bail, Context, Result};
use std::fs;
use std::path::{Path, PathBuf};

// The names are the description's (a ROOTFS argument is one or a path).
pub use crate::model::spec::{is_catalog_name, CATALOG};

/// The recipe of a catalog flavour the engine builds itself, raised when its
/// builder changes what it makes (2: busybox with the host's iputils ping as
/// /bin/ping and /etc/profile's `ping` function). A cached tree whose stamp
/// (`cache/.NAME.recipe`, beside the tree, so not inside the containers) is
/// missing or older was built by an older engine and is built again.
/// Downloaded flavours have none: they are kept as pulled.
pub const fn recipe(name: &str) -> Option<u32> {
    match name.as_bytes() {
        b"busybox" => Some(2),
        _ => None,
    }
}

/// The cached rootfs for a catalog name, pulled into `cache/NAME` on first
/// use, and built again when its recipe is newer than the cached tree's.
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
    if dest.is_dir() && is_current(name, cache) {
        return Ok(dest);
    }
    fs::create_dir_all(cache)
        .with_context(|| format!("cannot create the rootfs cache {}", cache.display()))?;
    let _lock = crate::sys::lock::lock_file(&cache.join(format!(".{name}.lock")))?;
    // Whoever held the lock before us may have pulled it meanwhile.
    if dest.is_dir() && is_current(name, cache) {
        return Ok(dest);
    }
    let opts = PullOptions {
        progress: true,
        ..PullOptions::default()
    };
    if dest.is_dir() {
        rebuild(name, cache, &dest, &opts)?;
    } else {
        pull(name, &dest, &opts)?;
    }
    if let Some(recipe) = recipe(name) {
        write_stamp(name, cache, recipe)?;
    }
    Ok(dest)
}

fn stamp_path(name: &str, cache: &Path) -> PathBuf {
    cache.join(format!(".{name}.recipe"))
}

/// The cached tree was made by this recipe or a newer one (an engine
/// downgraded keeps a newer tree).
fn is_current(name: &str, cache: &Path) -> bool {
    let Some(recipe) = recipe(name) else {
        return true;
    };
    fs::read_to_string(stamp_path(name, cache))
        .ok()
        .and_then(|text| text.trim().parse::<u32>().ok())
        .is_some_and(|built| built >= recipe)
}

/// Builds the flavour afresh beside `dest` and swaps the two trees in one
/// rename (RENAME_EXCHANGE), so `dest` is a whole tree at every moment,
/// then removes the old one. A container started from the old tree and
/// still running may then miss files it had not opened yet: this happens
/// once, on the first run after an engine upgrade that raised the recipe.
fn rebuild(name: &str, cache: &Path, dest: &Path, opts: &PullOptions) -> Result<(), super::Error> {
    let fresh = cache.join(format!(".{name}.rebuild-{}", std::process::id()));
    // A rebuild killed before its swap or its removal left this behind.
    super::staging::remove_stale_partials(cache, &format!(".{name}.rebuild-"));
    super::staging::remove_stale_partials(cache, &format!("..{name}.rebuild-"));
    if fresh.exists() {
        fs::remove_dir_all(&fresh).with_context(|| format!("cannot remove {}", fresh.display()))?;
    }
    pull(name, &fresh, opts)?;
    let swapped = rustix::fs::renameat_with(
        rustix::fs::CWD,
        &fresh,
        rustix::fs::CWD,
        dest,
        rustix::fs::RenameFlags::EXCHANGE,
    );
    if let Err(errno) = swapped {
        let _ = fs::remove_dir_all(&fresh);
        return Err(super::Error::Failed(format!(
            "cannot put the rebuilt {name} rootfs in place of {}: {errno}",
            dest.display()
        )));
    }
    fs::remove_dir_all(&fresh)
        .with_context(|| format!("cannot remove the old {name} rootfs {}", fresh.display()))?;
    Ok(())
}

/// Written once the tree is in place (a crash before leaves the old stamp,
/// and the next use builds again), through a rename so it is never half.
fn write_stamp(name: &str, cache: &Path, recipe: u32) -> Result<()> {
    let stamp = stamp_path(name, cache);
    let partial = cache.join(format!(".{name}.recipe.partial"));
    fs::write(&partial, format!("{recipe}\n"))
        .with_context(|| format!("cannot write {}", partial.display()))?;
    fs::rename(&partial, &stamp).with_context(|| format!("cannot write {}", stamp.display()))
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
