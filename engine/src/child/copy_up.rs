//! tmpcopyup: what a directory of the rootfs holds, copied into the tmpfs
//! that is about to cover it (runc's copy, podman's `--read-only` and
//! `--tmpfs`), owners, modes and modification times kept.
//!
//! The rootfs is the attacker's and this runs before pivot_root, where `/`
//! is still the host's: the walk goes on fds only. Every entry is opened
//! from its directory's fd with `O_NOFOLLOW` and checked by `fstat` on the
//! fd it read, so a symlink is copied as a symlink (its text), never
//! followed, and an entry swapped meanwhile is refused. What is made lands
//! in the new tmpfs only, created with `O_EXCL | O_NOFOLLOW`.

use super::{fail, Context, Step};
use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, Stat, Timespec, Timestamps};
use rustix::fs::{Gid, Uid};
use std::ffi::CStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

const DIR: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// Copies what directory `from` holds into directory `to` (the new
/// tmpfs's root), then gives `to` the owner, mode and times of `from`, as
/// the directory it stands for. `name` (the mount's destination) is for
/// errors.
pub(super) fn copy_up(from: BorrowedFd<'_>, to: BorrowedFd<'_>, name: &str) -> Step {
    copy_dir(from, to, name)?;
    let st = rustix::fs::fstat(from).ctx(|| format!("stat {name}"))?;
    keep_owner_mode_times(to, &st, name)
}

/// Each entry of `from`, copied into `to` by its type.
fn copy_dir(from: BorrowedFd<'_>, to: BorrowedFd<'_>, path: &str) -> Step {
    let mut entries = Dir::read_from(from).ctx(|| format!("read the directory {path}"))?;
    while let Some(entry) = entries.read() {
        let entry = entry.ctx(|| format!("read the directory {path}"))?;
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        let path = format!("{path}/{}", name.to_string_lossy());
        copy_entry(from, to, name, &path)?;
    }
    Ok(())
}

/// One entry `name` of `from`, at `path` for errors.
fn copy_entry(from: BorrowedFd<'_>, to: BorrowedFd<'_>, name: &CStr, path: &str) -> Step {
    let st =
        rustix::fs::statat(from, name, AtFlags::SYMLINK_NOFOLLOW).ctx(|| format!("stat {path}"))?;
    match FileType::from_raw_mode(st.st_mode) {
        FileType::Directory => {
            let src = open_as(from, name, DIR, FileType::Directory, path)?;
            rustix::fs::mkdirat(to, name, Mode::from_raw_mode(0o700))
                .ctx(|| format!("make {path} in the tmpfs"))?;
            let dst = rustix::fs::openat(to, name, DIR, Mode::empty())
                .ctx(|| format!("open {path} in the tmpfs"))?;
            copy_dir(src.as_fd(), dst.as_fd(), path)?;
            let st = rustix::fs::fstat(&src).ctx(|| format!("stat {path}"))?;
            keep_owner_mode_times(dst.as_fd(), &st, path)
        }
        FileType::RegularFile => {
            // O_NONBLOCK: a fifo swapped in does not hang the open; the
            // fstat on the fd then refuses it.
            let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY;
            let src = open_as(from, name, flags, FileType::RegularFile, path)?;
            let dst = rustix::fs::openat(
                to,
                name,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )
            .ctx(|| format!("make {path} in the tmpfs"))?;
            let (mut src, mut dst) = (std::fs::File::from(src), std::fs::File::from(dst));
            std::io::copy(&mut src, &mut dst).ctx(|| format!("copy {path} into the tmpfs"))?;
            let st = rustix::fs::fstat(&src).ctx(|| format!("stat {path}"))?;
            keep_owner_mode_times(dst.as_fd(), &st, path)
        }
        FileType::Symlink => {
            let target = rustix::fs::readlinkat(from, name, Vec::new())
                .ctx(|| format!("read the symlink {path}"))?;
            rustix::fs::symlinkat(&*target, to, name)
                .ctx(|| format!("make the symlink {path} in the tmpfs"))?;
            // The link's own owner and times; a symlink has no mode.
            rustix::fs::chownat(to, name, uid(&st), gid(&st), AtFlags::SYMLINK_NOFOLLOW)
                .ctx(|| format!("chown {path} in the tmpfs"))?;
            rustix::fs::utimensat(to, name, &times(&st), AtFlags::SYMLINK_NOFOLLOW)
                .ctx(|| format!("set the times of {path} in the tmpfs"))
        }
        kind => {
            // Device nodes, fifos and sockets: made anew, never opened.
            rustix::fs::mknodat(to, name, kind, mode(&st), st.st_rdev)
                .ctx(|| format!("make the node {path} in the tmpfs"))?;
            // The tmpfs is ours alone (no process of the container runs
            // yet): its names need no fd.
            rustix::fs::chownat(to, name, uid(&st), gid(&st), AtFlags::SYMLINK_NOFOLLOW)
                .ctx(|| format!("chown {path} in the tmpfs"))?;
            rustix::fs::chmodat(to, name, mode(&st), AtFlags::empty())
                .ctx(|| format!("chmod {path} in the tmpfs"))
        }
    }
}

/// `name` of `dir` opened with `flags` (O_NOFOLLOW among them), refused
/// unless it is still of the type `kind` that statat saw.
fn open_as(
    dir: BorrowedFd<'_>,
    name: &CStr,
    flags: OFlags,
    kind: FileType,
    path: &str,
) -> Step<OwnedFd> {
    let fd = rustix::fs::openat(dir, name, flags | OFlags::CLOEXEC, Mode::empty())
        .ctx(|| format!("open {path}"))?;
    let st = rustix::fs::fstat(&fd).ctx(|| format!("stat {path}"))?;
    if FileType::from_raw_mode(st.st_mode) != kind {
        return Err(fail(format!(
            "{path} changed while it was copied into the tmpfs (tmpcopyup): start the container again"
        )));
    }
    Ok(fd)
}

/// The owner, then the mode (a chown clears set-id bits), then the times
/// (last: writing the content moved them) of `st` on `fd`.
fn keep_owner_mode_times(fd: BorrowedFd<'_>, st: &Stat, path: &str) -> Step {
    rustix::fs::fchown(fd, uid(st), gid(st)).ctx(|| format!("chown {path} in the tmpfs"))?;
    rustix::fs::fchmod(fd, mode(st)).ctx(|| format!("chmod {path} in the tmpfs"))?;
    rustix::fs::futimens(fd, &times(st)).ctx(|| format!("set the times of {path} in the tmpfs"))
}

fn uid(st: &Stat) -> Option<Uid> {
    Some(Uid::from_raw(st.st_uid))
}

fn gid(st: &Stat) -> Option<Gid> {
    Some(Gid::from_raw(st.st_gid))
}

fn mode(st: &Stat) -> Mode {
    Mode::from_raw_mode(st.st_mode & 0o7777)
}

/// Access and modification times as `st` has them.
fn times(st: &Stat) -> Timestamps {
    Timestamps {
        last_access: Timespec {
            tv_sec: st.st_atime as _,
            tv_nsec: st.st_atime_nsec as _,
        },
        last_modification: Timespec {
            tv_sec: st.st_mtime as _,
            tv_nsec: st.st_mtime_nsec as _,
        },
    }
}
