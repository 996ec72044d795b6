//! Mount primitives on fds inside the root, whose errors name the path:
//! shared by the mount tree (`mounts`) and /dev (`dev`).

use super::{fail, Context, Step};
use crate::sys::idmap;
use crate::sys::openat::{mkdir_all_in_root, proc_self_fd_path};
use rustix::io::Errno;
use rustix::mount::{mount, mount_bind, mount_bind_recursive, mount_change};
use rustix::mount::{MountFlags, MountPropagationFlags};
use std::ffi::CString;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::Path;

/// mount(2) in the three forms the child uses: a file system (source and
/// type), a bind of `source` (no type; BIND, recursive or not), a
/// propagation change (neither), each as rustix spells it; a missing source
/// or type stays NULL for the kernel, as before.
pub(super) fn sys_mount(
    source: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: MountFlags,
    data: Option<&str>,
) -> rustix::io::Result<()> {
    match (source, fstype) {
        (Some(source), Some(fstype)) => {
            let data = data
                .map(CString::new)
                .transpose()
                .map_err(|_| Errno::INVAL)?;
            mount(source, target, fstype, flags, data.as_deref())
        }
        (Some(source), None) if flags == MountFlags::BIND => mount_bind(source, target),
        (Some(source), None) if flags == MountFlags::BIND | MountFlags::REC => {
            mount_bind_recursive(source, target)
        }
        (None, None) => mount_change(
            target,
            MountPropagationFlags::from_bits_retain(flags.bits()),
        ),
        // No caller mounts a type without a source, or binds with other flags.
        _ => Err(Errno::INVAL),
    }
}

pub(super) fn mnt(
    source: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: MountFlags,
    data: Option<&str>,
) -> Step {
    sys_mount(source, target, fstype, flags, data).ctx(|| {
        format!(
            "mount {} on {}{}",
            fstype
                .map(str::to_string)
                .unwrap_or_else(|| source.map(|s| s.display().to_string()).unwrap_or_default()),
            target.display(),
            data.map(|d| format!(" ({d})")).unwrap_or_default()
        )
    })
}

/// Mounts on what `target` (an fd inside the root) is, named `name` in errors.
pub(super) fn mnt_at(
    source: Option<&Path>,
    target: BorrowedFd<'_>,
    name: &str,
    fstype: Option<&str>,
    flags: MountFlags,
    data: Option<&str>,
) -> Step {
    sys_mount(source, &proc_self_fd_path(target), fstype, flags, data).ctx(|| {
        format!(
            "mount {} on {name}{}",
            fstype
                .map(str::to_string)
                .unwrap_or_else(|| source.map(|s| s.display().to_string()).unwrap_or_default()),
            data.map(|d| format!(" ({d})")).unwrap_or_default()
        )
    })
}

pub(super) fn in_root<T>(r: Result<T, crate::sys::openat::InRootError>) -> Step<T> {
    r.map_err(|e| fail(e.to_string()))
}

pub(super) fn idm<T>(r: Result<T, idmap::IdmapError>) -> Step<T> {
    r.map_err(|e| fail(e.to_string()))
}

/// A directory inside the root (made if missing), as an O_PATH fd.
pub(super) fn dir_in(root: BorrowedFd<'_>, path: &str) -> Step<OwnedFd> {
    in_root(mkdir_all_in_root(root, Path::new(path), 0o755))
}

/// `/proc`, `/sys` or `/dev` (a top-level `path`) of the root, for a kernel
/// file system, as an O_PATH fd; made if missing. A symlink there (or a
/// file) is refused, as runc does: resolved in the root it cannot lead out,
/// but `/sys -> /proc` put sysfs over the container's proc, and the init
/// died after `create` had said all was well.
pub(super) fn kernel_dir(root: BorrowedFd<'_>, path: &str) -> Step<OwnedFd> {
    let name = path.trim_start_matches('/');
    match rustix::fs::statat(root, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) if rustix::fs::FileType::from_raw_mode(st.st_mode).is_dir() => {}
        Ok(st) => {
            let what = match rustix::fs::FileType::from_raw_mode(st.st_mode) {
                rustix::fs::FileType::Symlink => "a symlink",
                _ => "not a directory",
            };
            return Err(fail(format!(
                "the rootfs's {path} is {what}: the engine mounts the kernel's file system there, so it must be a directory (or absent); fix the rootfs"
            )));
        }
        Err(rustix::io::Errno::NOENT) => {}
        Err(e) => return Err(fail(format!("cannot stat {path} in the rootfs: {e}"))),
    }
    dir_in(root, path)
}

/// Bind-mounts the host's `source` (before pivot_root) onto `target`.
pub(super) fn bind_at(source: &Path, target: BorrowedFd<'_>, name: &str) -> Step {
    mnt_at(
        Some(source),
        target,
        name,
        None,
        MountFlags::BIND | MountFlags::REC,
        None,
    )
}
