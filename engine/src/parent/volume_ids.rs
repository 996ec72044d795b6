//! Whose a `-v` volume's files are from inside the container.
//!
//! By default (`Ownership::Idmap`) the source is presented through an
//! idmapped mount that maps its owner (uid and gid, one each) onto the
//! container's root: container root reads the source's files as its own and
//! what it writes lands as the source's owner on the host, as podman's
//! `:idmap`. Nothing else is mapped: files of other owners read as
//! nobody, and no other container user can write there (the kernel refuses
//! to store an ID the mount does not map).
//!
//! A source owned by host root (uid or gid 0) is not idmapped: container
//! root would write as host root, and a setuid-root file it leaves there
//! (nosuid holds only inside the container) lifts whoever runs it on the
//! host. Such a volume keeps the plain view (owner nobody) and `:U` is the
//! way to give it to the container. Neither is a file system the kernel
//! cannot idmap (9p, nfs, tmpfs before 6.3); `--verbose` says why.
//!
//! `:U` (`Ownership::Chown`) chowns the source to container root's host IDs
//! before the container starts, as podman's `:U`.

use crate::model::volumes::{Ownership, Volume};
use crate::sys::idmap::{self, IdmapError};
use anyhow::{Context, Result};
use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, StatxFlags, Uid};
use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Gives an idmapped view to `tree` (the detached clone of `v`'s source,
/// not yet attached) when `v` asks for one and it can be had. `root` is
/// container root's host uid and gid.
pub(super) fn idmap_volume(
    v: &Volume,
    tree: &OwnedFd,
    root: (u32, u32),
    verbose: bool,
) -> Result<()> {
    if v.owner != Ownership::Idmap || root == (0, 0) {
        return Ok(());
    }
    let say = |why: String| {
        if verbose {
            eprintln!(
                "engine: volume {} is not idmapped: {why}; container root sees its files as nobody's",
                v.host.display()
            );
        }
    };
    let st = rustix::fs::fstat(tree)
        .with_context(|| format!("cannot stat volume {}", v.host.display()))?;
    let owner = (st.st_uid, st.st_gid);
    if owner == root {
        // Already container root's (`:U` on an earlier run of this range).
        return Ok(());
    }
    if owner.0 == 0 || owner.1 == 0 {
        say(format!(
            "it is owned by host root ({}:{}), and container root must not write as host root (add :U to give it to the container's root)",
            owner.0, owner.1
        ));
        return Ok(());
    }
    let userns = idmap::mapping_userns(owner.0, owner.1, root.0, root.1)?;
    match idmap::set_idmap(tree, userns.as_fd(), &v.host) {
        Ok(()) => Ok(()),
        Err(e @ IdmapError::Unsupported { .. }) => {
            say(match e {
                IdmapError::Unsupported { fstype, kernel, .. } => {
                    format!("{fstype} cannot be idmapped on Linux {kernel}")
                }
                other => other.to_string(),
            });
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// `:U`: gives the source of `v` (and everything under it) to `root`
/// (container root's host uid and gid).
pub(super) fn chown_volume(v: &Volume, root: (u32, u32)) -> Result<()> {
    if v.owner != Ownership::Chown {
        return Ok(());
    }
    chown_tree(&v.host, root.0, root.1)
        .with_context(|| format!("cannot chown volume {} (:U)", v.host.display()))
}

const PATH_NOFOLLOW: OFlags = OFlags::PATH.union(OFlags::NOFOLLOW).union(OFlags::CLOEXEC);

/// chowns `root` and every entry under it to `uid`:`gid` through fds: a
/// symlink is chowned itself and never followed, nothing on another mount
/// (a file system or a bind mounted below `root`) is entered or touched,
/// and a regular file with other hard links is left alone (it is not the
/// volume's alone: a link could be a host file's other name). chown
/// clears setuid and setgid bits, which stay cleared.
pub fn chown_tree(root: &Path, uid: u32, gid: u32) -> Result<()> {
    let fd = rustix::fs::open(root, PATH_NOFOLLOW, Mode::empty())
        .with_context(|| format!("cannot open {}", root.display()))?;
    let st = statx_fd(fd.as_fd(), root)?;
    chown_entry(fd.as_fd(), st, st.stx_mnt_id, root, uid, gid)
}

fn statx_fd(fd: BorrowedFd<'_>, path: &Path) -> Result<rustix::fs::Statx> {
    rustix::fs::statx(
        fd,
        c"",
        AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW,
        StatxFlags::BASIC_STATS | StatxFlags::MNT_ID,
    )
    .with_context(|| format!("cannot stat {}", path.display()))
}

/// chowns the entry `fd` (an O_PATH fd) and, for a directory, what it holds.
fn chown_entry(
    fd: BorrowedFd<'_>,
    st: rustix::fs::Statx,
    mnt: u64,
    path: &Path,
    uid: u32,
    gid: u32,
) -> Result<()> {
    if st.stx_mnt_id != mnt {
        return Ok(());
    }
    let kind = FileType::from_raw_mode(st.stx_mode.into());
    if kind == FileType::RegularFile && st.stx_nlink > 1 {
        return Ok(());
    }
    rustix::fs::chownat(
        fd,
        c"",
        Some(Uid::from_raw(uid)),
        Some(Gid::from_raw(gid)),
        AtFlags::EMPTY_PATH,
    )
    .with_context(|| format!("cannot chown {}", path.display()))?;
    if kind != FileType::Directory {
        return Ok(());
    }
    let dir = rustix::fs::openat(
        fd,
        c".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("cannot open the directory {}", path.display()))?;
    let entries = rustix::fs::Dir::read_from(&dir)
        .with_context(|| format!("cannot read {}", path.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot read {}", path.display()))?;
        let name = OsStr::from_bytes(entry.file_name().to_bytes());
        if name == "." || name == ".." {
            continue;
        }
        let child = path.join(name);
        let fd = match rustix::fs::openat(&dir, name, PATH_NOFOLLOW, Mode::empty()) {
            Ok(fd) => fd,
            // Removed meanwhile (a running container may share the volume).
            Err(rustix::io::Errno::NOENT) => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot open {}", child.display())),
        };
        let st = statx_fd(fd.as_fd(), &child)?;
        chown_entry(fd.as_fd(), st, mnt, &child, uid, gid)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};

    /// A tree with a symlink to a host file and to a host directory, a
    /// hard link of a host file and a setuid file: the links are chowned
    /// themselves, the host files and the hard-linked one are left alone,
    /// the setuid bit is cleared.
    #[test]
    fn chown_tree_reaches_nothing_outside_the_tree() {
        let outside = tempfile::tempdir().unwrap();
        let host_file = outside.path().join("host");
        fs::write(&host_file, "host\n").unwrap();
        let tree = tempfile::tempdir_in(outside.path()).unwrap();
        let root = tree.path();
        fs::create_dir(root.join("sub")).unwrap();
        fs::write(root.join("sub/tool"), "tool\n").unwrap();
        fs::set_permissions(root.join("sub/tool"), fs::Permissions::from_mode(0o4755)).unwrap();
        symlink(&host_file, root.join("sub/escape")).unwrap();
        symlink(outside.path(), root.join("dir-escape")).unwrap();
        fs::hard_link(&host_file, root.join("hard")).unwrap();

        chown_tree(root, 100_000, 100_001).unwrap();

        let host = fs::metadata(&host_file).unwrap();
        assert_eq!((host.uid(), host.gid()), (0, 0), "host file touched");
        assert_eq!(
            fs::metadata(outside.path()).unwrap().uid(),
            0,
            "host directory touched"
        );
        let link = fs::symlink_metadata(root.join("sub/escape")).unwrap();
        assert_eq!((link.uid(), link.gid()), (100_000, 100_001));
        let tool = fs::metadata(root.join("sub/tool")).unwrap();
        assert_eq!((tool.uid(), tool.mode() & 0o7777), (100_000, 0o755));
        let top = fs::metadata(root).unwrap();
        assert_eq!((top.uid(), top.gid()), (100_000, 100_001));
        assert_eq!(fs::metadata(root.join("sub")).unwrap().uid(), 100_000);
    }
}
