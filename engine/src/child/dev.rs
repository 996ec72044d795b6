//! /dev inside the container, every target resolved on the root's fd.

use super::mnt::{bind_at, kernel_dir, mnt_at};
use super::{fail, ChildSetup, Step};
use rustix::fs::{Mode, OFlags};
use rustix::mount::MountFlags;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

/// An entry made in our fresh /dev tmpfs, as an O_PATH fd. Nothing else can
/// have written there yet (no process of the container exists), so names
/// are made and opened on the tmpfs's fd directly, never following a link.
fn make_in_dev(dev: &OwnedFd, name: &str, dir: bool) -> Step<OwnedFd> {
    let made = if dir {
        rustix::fs::mkdirat(dev, name, Mode::from_raw_mode(0o755))
    } else {
        rustix::fs::openat(
            dev,
            name,
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .map(drop)
    };
    made.and_then(|()| {
        rustix::fs::openat(
            dev,
            name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
    })
    .map_err(|e| fail(format!("create /dev/{name}: {e}")))
}

/// /dev as a tmpfs (nosuid, nodev, noexec) with the usual nodes bound from
/// the host (mknod is refused in a user namespace), a private devpts, shm
/// and mqueue. The binds are mounts of their own, with the host /dev's
/// flags, so they open; a node the container makes in the tmpfs does not
/// (without a user namespace, CAP_MKNOD could make the host's disk).
pub(super) fn build_dev(root: BorrowedFd<'_>, setup: &ChildSetup) -> Step {
    let dev = kernel_dir(root, "/dev")?;
    mnt_at(
        Some(Path::new("tmpfs")),
        dev.as_fd(),
        "/dev",
        Some("tmpfs"),
        MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC | MountFlags::STRICTATIME,
        Some("mode=755,size=65536k"),
    )?;
    // The tmpfs, now that it is mounted.
    let dev = kernel_dir(root, "/dev")?;
    for node in ["null", "zero", "full", "random", "urandom", "tty"] {
        let path = format!("/dev/{node}");
        let target = make_in_dev(&dev, node, false)?;
        bind_at(Path::new(&path), target.as_fd(), &path)?;
    }
    let pts = make_in_dev(&dev, "pts", true)?;
    let flags = MountFlags::NOSUID | MountFlags::NOEXEC;
    if super::mnt::sys_mount(
        Some(Path::new("devpts")),
        &crate::sys::openat::proc_self_fd_path(pts.as_fd()),
        Some("devpts"),
        flags,
        Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
    )
    .is_err()
    {
        // gid 5 (tty) may be unmapped in the user namespace.
        mnt_at(
            Some(Path::new("devpts")),
            pts.as_fd(),
            "/dev/pts",
            Some("devpts"),
            flags,
            Some("newinstance,ptmxmode=0666,mode=0620"),
        )?;
    }
    let shm = make_in_dev(&dev, "shm", true)?;
    mnt_at(
        Some(Path::new("shm")),
        shm.as_fd(),
        "/dev/shm",
        Some("tmpfs"),
        MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        Some("mode=1777,size=65536k"),
    )?;
    let mqueue = make_in_dev(&dev, "mqueue", true)?;
    mnt_at(
        Some(Path::new("mqueue")),
        mqueue.as_fd(),
        "/dev/mqueue",
        Some("mqueue"),
        MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        None,
    )?;
    for (link, target) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("core", "/proc/kcore"),
    ] {
        rustix::fs::symlinkat(target, &dev, link)
            .map_err(|e| fail(format!("symlink /dev/{link}: {e}")))?;
    }
    if let Some((_, slave_path)) = &setup.pty_slave {
        let console = make_in_dev(&dev, "console", false)?;
        bind_at(slave_path, console.as_fd(), "/dev/console")?;
    } else if setup.oci.as_ref().is_some_and(|o| o.console.is_some()) {
        // The pty is opened after pivot_root (child/console.rs).
        make_in_dev(&dev, "console", false)?;
    }
    Ok(())
}
