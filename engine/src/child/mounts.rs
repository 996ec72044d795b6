//! The container's mount tree: the copy-on-write layer (or the rootfs
//! itself), /proc, /sys, volumes, masked paths, then pivot_root.

use super::{fail, ChildSetup, Context, Step};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::unistd::{chdir, pivot_root};
use std::path::{Path, PathBuf};

pub(super) fn mnt(
    source: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> Step {
    mount(source, target, fstype, flags, data).ctx(|| {
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

/// `path` inside `root`: existing components resolve like the container
/// would (symlinks stay inside root); missing ones are taken literally.
pub(super) fn join_in_root(root: &Path, path: &Path) -> Step<PathBuf> {
    crate::sys::path::resolve_in_rootfs(root, path).map_err(|e| fail(format!("{e:#}")))
}

pub(super) fn mkdir_p(path: &Path) -> Step {
    std::fs::create_dir_all(path).ctx(|| format!("mkdir {}", path.display()))
}

/// A mount point for a file: an empty file at `path`.
pub(super) fn touch(path: &Path) -> Step {
    if let Some(parent) = path.parent() {
        mkdir_p(parent)?;
    }
    if !path.exists() {
        std::fs::File::create(path).ctx(|| format!("create {}", path.display()))?;
    }
    Ok(())
}

/// A bind mount, read-only when asked. The read-only remount keeps the
/// flags the kernel locks in a user namespace (nosuid, nodev, noexec).
pub(super) fn bind(source: &Path, target: &Path, readonly: bool) -> Step {
    mnt(
        Some(source),
        target,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )?;
    if readonly {
        remount_readonly(target)?;
    }
    Ok(())
}

fn remount_readonly(target: &Path) -> Step {
    let st = nix::sys::statvfs::statvfs(target).ctx(|| format!("statvfs {}", target.display()))?;
    use nix::sys::statvfs::FsFlags;
    let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
    for (have, keep) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        // ST_RELATIME (4096): nix names it only for glibc.
        (FsFlags::from_bits_retain(4096), MsFlags::MS_RELATIME),
    ] {
        if st.flags().contains(have) {
            flags |= keep;
        }
    }
    mnt(None, target, None, flags, None)
}

/// Builds the container's mount tree at its future root and returns that root.
/// Nothing propagates to the host: `/` becomes a slave first.
pub(super) fn build_root(setup: &ChildSetup) -> Step<PathBuf> {
    let spec = setup.spec;
    mnt(
        None,
        Path::new("/"),
        None,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None,
    )?;
    let root = match &setup.layer {
        Some(scratch) => {
            // The layer lives in a tmpfs of the container's own mount
            // namespace: nothing to create or remove on the host, and it
            // vanishes with the container even if the engine is killed.
            // Its pages are charged to the container's memory cgroup.
            mnt(
                Some(Path::new("tmpfs")),
                scratch,
                Some("tmpfs"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                Some("mode=755"),
            )?;
            let (upper, work, merged) = (
                scratch.join("upper"),
                scratch.join("work"),
                scratch.join("merged"),
            );
            for d in [&upper, &work, &merged] {
                std::fs::create_dir(d).ctx(|| format!("mkdir {}", d.display()))?;
            }
            let opts = format!(
                "lowerdir={},upperdir={},workdir={}",
                spec.rootfs.display(),
                upper.display(),
                work.display()
            );
            mnt(
                Some(Path::new("overlay")),
                &merged,
                Some("overlay"),
                MsFlags::empty(),
                Some(&opts),
            )
            .map_err(|f| {
                fail(format!(
                    "{} (can the rootfs's file system be an overlayfs lower layer? 9p cannot: copy the rootfs to a local file system, or use --write-through)",
                    f.msg
                ))
            })?;
            merged
        }
        None => {
            // pivot_root needs the new root to be a mount point.
            bind(&spec.rootfs, &spec.rootfs, false)?;
            spec.rootfs.clone()
        }
    };

    let nosuid_nodev_noexec = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let proc_dir = join_in_root(&root, Path::new("/proc"))?;
    mkdir_p(&proc_dir)?;
    mnt(
        Some(Path::new("proc")),
        &proc_dir,
        Some("proc"),
        nosuid_nodev_noexec,
        None,
    )?;

    let sys_dir = join_in_root(&root, Path::new("/sys"))?;
    mkdir_p(&sys_dir)?;
    mnt(
        Some(Path::new("sysfs")),
        &sys_dir,
        Some("sysfs"),
        nosuid_nodev_noexec | MsFlags::MS_RDONLY,
        None,
    )?;
    if setup.cgroup2 {
        let cg = sys_dir.join("fs/cgroup");
        // Best effort: the container sees its own cgroup, read-only.
        if cg.is_dir() {
            let _ = mount(
                Some("cgroup2"),
                &cg,
                Some("cgroup2"),
                nosuid_nodev_noexec | MsFlags::MS_RDONLY,
                None::<&str>,
            );
        }
    }

    super::dev::build_dev(&root, setup)?;

    // Before the volumes, so a user's `-v FILE:/etc/hosts` wins.
    // Detached mounts the parent made: the state directory may be out of
    // this process's reach (0700, and container root may be an unprivileged
    // host uid), and the layer's tmpfs covers it anyway.
    for (file, tree) in crate::sys::net::dns::FILES.iter().zip(&setup.etc_files) {
        let target = join_in_root(&root, &Path::new("/etc").join(file))?;
        touch(&target)?;
        crate::sys::idmap::attach(*tree, &target).map_err(|e| fail(e.to_string()))?;
    }

    for v in &spec.volumes {
        let target = join_in_root(&root, &v.container)?;
        if v.host.is_dir() {
            mkdir_p(&target)?;
        } else {
            touch(&target)?;
        }
        bind(&v.host, &target, v.readonly)?;
    }

    // Kernel interfaces a container has no business reading or changing.
    for masked in ["kcore", "keys", "timer_list", "sched_debug"] {
        let p = proc_dir.join(masked);
        if p.exists() {
            bind(Path::new("/dev/null"), &p, false)?;
        }
    }
    for ro in ["sys", "sysrq-trigger", "irq", "bus"] {
        let p = proc_dir.join(ro);
        if p.exists() {
            bind(&p, &p, true)?;
        }
    }
    Ok(root)
}

/// pivot_root into `root` and drop the host's tree.
pub(super) fn enter_root(root: &Path) -> Step {
    chdir(root).ctx(|| format!("chdir {}", root.display()))?;
    // pivot_root(".", ".") stacks the old root on the new one; detaching it
    // then leaves only the container's tree, with no put_old directory needed.
    pivot_root(".", ".").ctx(|| format!("pivot_root into {}", root.display()))?;
    umount2(".", MntFlags::MNT_DETACH).ctx(|| "detach the host's root".into())?;
    chdir("/").ctx(|| "chdir /".into())
}
