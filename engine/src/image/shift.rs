//! Ownership shift, for a rootfs used from an unprivileged user namespace:
//! every uid/gid becomes BASE + id.
//!
//! Every change goes through a file descriptor opened without following a
//! symlink (`O_NOFOLLOW`), or, for a symlink itself, `fchownat` with
//! `AT_SYMLINK_NOFOLLOW` on its parent's fd. Nothing is ever chmodded through
//! a link, so a tree's symlinks and hardlinks cannot reach a host file.

use anyhow::{anyhow, Context, Result};
use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, Uid};
use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// `id + base`, refused when it does not fit a uid.
pub(super) fn shifted(id: u64, base: u32, path: &Path) -> Result<u32> {
    u32::try_from(id)
        .ok()
        .and_then(|id| id.checked_add(base))
        .filter(|&id| id != u32::MAX) // (uid_t)-1 means "unchanged" to chown
        .ok_or_else(|| {
            anyhow!(
                "id {id} of {} shifted by {base} does not fit a uid",
                path.display()
            )
        })
}

/// Sets owner, then mode, on an open file or directory. chown clears the
/// setuid/setgid bits, so the mode is written after it.
pub(super) fn set_owner_mode(
    fd: BorrowedFd<'_>,
    uid: u32,
    gid: u32,
    mode: u32,
) -> rustix::io::Result<()> {
    rustix::fs::fchown(fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))?;
    rustix::fs::fchmod(fd, Mode::from_raw_mode(mode & 0o7777))
}

const OPEN_NOFOLLOW: OFlags = OFlags::RDONLY
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC)
    .union(OFlags::NONBLOCK);

/// Gives the (still empty) root to BASE before unpacking: the engine maps user
/// namespaces from the owner of the rootfs's root, and an archive need not
/// have a `./` entry (the unpacker gives one BASE as well, whatever its
/// owner in the archive).
pub(super) fn shift_root(root: &Path, owner: Option<u32>) -> Result<()> {
    let Some(base) = owner else {
        return Ok(());
    };
    own_root(root, base)
}

/// Gives the root to `base`:`base`, keeping its mode.
pub(super) fn own_root(root: &Path, base: u32) -> Result<()> {
    let fd = open_dir(root)?;
    rustix::fs::fchown(&fd, Some(Uid::from_raw(base)), Some(Gid::from_raw(base)))
        .with_context(|| format!("cannot chown {}", root.display()))
}

/// `chown -h` every file under `root` (and `root` itself) from id to base+id,
/// keeping every mode (setuid and setgid bits included).
pub(super) fn shift_tree(root: &Path, base: u32) -> Result<()> {
    let fd = open_dir(root)?;
    shift_dir(fd, root, base)
}

fn open_dir(path: &Path) -> Result<OwnedFd> {
    let flags = OPEN_NOFOLLOW | OFlags::DIRECTORY;
    rustix::fs::open(path, flags, Mode::empty())
        .with_context(|| format!("cannot open the directory {}", path.display()))
}

/// Shifts the open directory `dir` (at `path`, for messages) and everything in it.
fn shift_dir(dir: OwnedFd, path: &Path, base: u32) -> Result<()> {
    shift_open(dir.as_fd(), path, base)?;
    let entries = rustix::fs::Dir::read_from(&dir)
        .with_context(|| format!("cannot read {}", path.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot read {}", path.display()))?;
        let name = OsStr::from_bytes(entry.file_name().to_bytes());
        if name == "." || name == ".." {
            continue;
        }
        let child = path.join(name);
        let stat = rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW)
            .with_context(|| format!("cannot stat {}", child.display()))?;
        match FileType::from_raw_mode(stat.st_mode) {
            FileType::Directory => {
                let fd = rustix::fs::openat(
                    &dir,
                    name,
                    OPEN_NOFOLLOW | OFlags::DIRECTORY,
                    Mode::empty(),
                )
                .with_context(|| format!("cannot open {}", child.display()))?;
                shift_dir(fd, &child, base)?;
            }
            FileType::RegularFile => {
                let fd = rustix::fs::openat(&dir, name, OPEN_NOFOLLOW, Mode::empty())
                    .with_context(|| format!("cannot open {}", child.display()))?;
                shift_open(fd.as_fd(), &child, base)?;
            }
            // Symlinks (and any other kind): the link itself, never its target;
            // chown clears no bit these keep.
            _ => {
                let uid = shifted(stat.st_uid.into(), base, &child)?;
                let gid = shifted(stat.st_gid.into(), base, &child)?;
                rustix::fs::chownat(
                    &dir,
                    name,
                    Some(Uid::from_raw(uid)),
                    Some(Gid::from_raw(gid)),
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .with_context(|| format!("cannot chown {}", child.display()))?;
            }
        }
    }
    Ok(())
}

/// Shifts an open regular file or directory, keeping its mode.
fn shift_open(fd: BorrowedFd<'_>, path: &Path, base: u32) -> Result<()> {
    let stat = rustix::fs::fstat(fd).with_context(|| format!("cannot stat {}", path.display()))?;
    let uid = shifted(stat.st_uid.into(), base, path)?;
    let gid = shifted(stat.st_gid.into(), base, path)?;
    set_owner_mode(fd, uid, gid, stat.st_mode)
        .with_context(|| format!("cannot chown {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};

    /// A tree holding a symlink to a host file and a setuid binary: the shift
    /// chowns the link itself, keeps the setuid bit, and leaves the host file be.
    #[test]
    fn shift_tree_never_follows_a_symlink() {
        let outside = tempfile::tempdir().unwrap();
        let host_file = outside.path().join("host");
        fs::write(&host_file, "host\n").unwrap();
        fs::set_permissions(&host_file, fs::Permissions::from_mode(0o600)).unwrap();
        let tree = tempfile::tempdir().unwrap();
        let root = tree.path();
        fs::create_dir(root.join("bin")).unwrap();
        fs::write(root.join("bin/tool"), "tool\n").unwrap();
        fs::set_permissions(root.join("bin/tool"), fs::Permissions::from_mode(0o4755)).unwrap();
        symlink(&host_file, root.join("bin/escape")).unwrap();
        symlink(outside.path(), root.join("dir-escape")).unwrap();

        shift_tree(root, 100_000).unwrap();

        let host = fs::metadata(&host_file).unwrap();
        assert_eq!(
            (host.uid(), host.mode() & 0o7777),
            (0, 0o600),
            "host file touched"
        );
        let outside_dir = fs::metadata(outside.path()).unwrap();
        assert_eq!(outside_dir.uid(), 0, "host directory touched");
        let link = fs::symlink_metadata(root.join("bin/escape")).unwrap();
        assert_eq!((link.uid(), link.gid()), (100_000, 100_000));
        let tool = fs::metadata(root.join("bin/tool")).unwrap();
        assert_eq!((tool.uid(), tool.mode() & 0o7777), (100_000, 0o4755));
        assert_eq!(fs::metadata(root).unwrap().uid(), 100_000);
    }
}
