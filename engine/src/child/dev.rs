//! /dev inside the container, every target resolved on the root's fd.

use super::mnt::{bind_at, in_root, kernel_dir, mnt, mnt_at};
use super::{fail, ChildSetup, Step};
use crate::model::bundle::{Device, DeviceKind};
use crate::sys::openat::{mkdir_all_in_root, proc_self_fd_path};
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
    if let Some(oci) = &setup.oci {
        for device in &oci.extras.devices {
            make_device(root, device)?;
        }
    }
    Ok(())
}

/// One linux.devices node, as runc makes it: mknod where permitted (with
/// the config's mode and owner), else (in a user namespace) a bind of the
/// host's node at the same path, which must be that device. The parent
/// directory is resolved (and made) in the root, the node made on its fd,
/// never following a link: a path or symlink of the rootfs cannot lead
/// out. An entry already there (the engine's /dev/null, a node of the
/// image) is kept, as runc keeps it. The /dev tmpfs is nodev, so a device
/// opens through a bind of itself without nodev, a mount that holds only
/// that node.
fn make_device(root: BorrowedFd<'_>, d: &Device) -> Step {
    use rustix::fs::{AtFlags, FileType};
    let shown = d.path.display();
    let name = d
        .path
        .file_name()
        .ok_or_else(|| fail(format!("device {shown} names no file")))?;
    let parent = in_root(mkdir_all_in_root(
        root,
        d.path.parent().unwrap_or(Path::new("/")),
        0o755,
    ))?;
    match rustix::fs::statat(&parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(_) => return Ok(()),
        Err(rustix::io::Errno::NOENT) => {}
        Err(e) => return Err(fail(format!("cannot stat device {shown}: {e}"))),
    }
    let file_type = match d.kind {
        DeviceKind::Char => FileType::CharacterDevice,
        DeviceKind::Block => FileType::BlockDevice,
        DeviceKind::Fifo => FileType::Fifo,
    };
    // The config's mode exactly, not less our umask.
    let old_umask = rustix::process::umask(Mode::empty());
    let made = rustix::fs::mknodat(
        &parent,
        name,
        file_type,
        Mode::from_raw_mode(d.mode),
        rustix::fs::makedev(d.major, d.minor),
    );
    rustix::process::umask(old_umask);
    match made {
        Ok(()) => {}
        // A user namespace: runc binds the host's node instead.
        Err(rustix::io::Errno::PERM) if d.kind != DeviceKind::Fifo => {
            return bind_host_device(&parent, name, d, file_type)
        }
        Err(e) => return Err(fail(format!("cannot create device {shown}: {e}"))),
    }
    rustix::fs::chownat(
        &parent,
        name,
        Some(rustix::fs::Uid::from_raw(d.uid)),
        Some(rustix::fs::Gid::from_raw(d.gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(|e| {
        fail(format!(
            "cannot chown device {shown} to {}:{}: {e}",
            d.uid, d.gid
        ))
    })?;
    if d.kind == DeviceKind::Fifo {
        return Ok(());
    }
    let node = open_entry(&parent, name, d)?;
    let node_path = proc_self_fd_path(node.as_fd());
    mnt(Some(&node_path), &node_path, None, MountFlags::BIND, None)?;
    // The bind now covers the node: remount that mount without nodev.
    let bound = open_entry(&parent, name, d)?;
    rustix::mount::mount_remount(
        proc_self_fd_path(bound.as_fd()),
        MountFlags::BIND | MountFlags::NOSUID | MountFlags::NOEXEC,
        "",
    )
    .map_err(|e| {
        fail(format!(
            "cannot make device {shown} openable (remount without nodev): {e}"
        ))
    })
}

/// An O_PATH fd of `name` in `parent`, not following a link.
fn open_entry(parent: &OwnedFd, name: &std::ffi::OsStr, d: &Device) -> Step<OwnedFd> {
    rustix::fs::openat(
        parent,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| fail(format!("cannot open device {}: {e}", d.path.display())))
}

/// In a user namespace (mknod refused): the host's node at the same path,
/// checked to be the device the config names, bound onto an empty file.
fn bind_host_device(
    parent: &OwnedFd,
    name: &std::ffi::OsStr,
    d: &Device,
    file_type: rustix::fs::FileType,
) -> Step {
    let shown = d.path.display();
    let host = rustix::fs::open(
        &d.path,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| {
        fail(format!(
            "cannot create device {shown}: mknod is refused in a user namespace, and the host has no node to bind there ({e}): create it on the host, or run without a user namespace"
        ))
    })?;
    let st = rustix::fs::fstat(&host).map_err(|e| fail(format!("cannot stat {shown}: {e}")))?;
    let same = rustix::fs::FileType::from_raw_mode(st.st_mode) == file_type
        && (rustix::fs::major(st.st_rdev), rustix::fs::minor(st.st_rdev)) == (d.major, d.minor);
    if !same {
        return Err(fail(format!(
            "cannot create device {shown}: mknod is refused in a user namespace, and the host's {shown} is not device {}:{}: fix linux.devices",
            d.major, d.minor
        )));
    }
    match rustix::fs::openat(
        parent,
        name,
        OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    ) {
        Ok(_) => {}
        Err(e) => return Err(fail(format!("cannot create {shown}: {e}"))),
    }
    let target = open_entry(parent, name, d)?;
    bind_at(
        &proc_self_fd_path(host.as_fd()),
        target.as_fd(),
        &shown.to_string(),
    )
}
