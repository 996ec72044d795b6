//! /dev inside the container.

use super::mounts::{bind, join_in_root, mkdir_p, mnt, touch};
use super::{ChildSetup, Context, Step};
use nix::mount::{mount, MsFlags};
use std::path::Path;

/// /dev as a tmpfs with the usual nodes bound from the host (mknod is
/// refused in a user namespace), a private devpts, shm and mqueue.
pub(super) fn build_dev(root: &Path, setup: &ChildSetup) -> Step {
    let dev = join_in_root(root, Path::new("/dev"))?;
    mkdir_p(&dev)?;
    mnt(
        Some(Path::new("tmpfs")),
        &dev,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
    )?;
    for node in ["null", "zero", "full", "random", "urandom", "tty"] {
        let target = dev.join(node);
        touch(&target)?;
        bind(&Path::new("/dev").join(node), &target, false)?;
    }
    let pts = dev.join("pts");
    mkdir_p(&pts)?;
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC;
    if mount(
        Some("devpts"),
        &pts,
        Some("devpts"),
        flags,
        Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
    )
    .is_err()
    {
        // gid 5 (tty) may be unmapped in the user namespace.
        mnt(
            Some(Path::new("devpts")),
            &pts,
            Some("devpts"),
            flags,
            Some("newinstance,ptmxmode=0666,mode=0620"),
        )?;
    }
    let shm = dev.join("shm");
    mkdir_p(&shm)?;
    mnt(
        Some(Path::new("shm")),
        &shm,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=1777,size=65536k"),
    )?;
    let mqueue = dev.join("mqueue");
    mkdir_p(&mqueue)?;
    mnt(
        Some(Path::new("mqueue")),
        &mqueue,
        Some("mqueue"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
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
        std::os::unix::fs::symlink(target, dev.join(link))
            .ctx(|| format!("symlink /dev/{link}"))?;
    }
    if let Some((_, slave_path)) = &setup.pty_slave {
        let console = dev.join("console");
        touch(&console)?;
        bind(slave_path, &console, false)?;
    }
    Ok(())
}
