//! The container's mount tree: the copy-on-write layer over the rootfs (or
//! the rootfs itself), /proc, /sys, /dev, volumes, masked and read-only
//! paths, then pivot_root.
//!
//! No host path is walked and no in-root path is joined: the rootfs and the
//! volumes arrive as detached mounts the parent opened (`sys::idmap`), the
//! layer's tmpfs is made without a path, and every target inside the root is
//! resolved on the root's fd with `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS`
//! (`sys::openat`) and mounted through `/proc/self/fd/N`, so a symlink in
//! the rootfs (even one swapped in meanwhile) cannot redirect a mount.

use super::mnt::{bind_at, dir_in, idm, in_root, kernel_dir, mnt, mnt_at};
use super::mount_plan::{Kind, MountPlan, MountStep};
use super::{fail, ChildSetup, Context, Step};
use crate::model::bundle::TmpfsMount;
use crate::sys::idmap;
use crate::sys::openat::{mkdir_all_in_root, open_in_root, proc_self_fd_path, touch_in_root};
use rustix::fs::{Mode, OFlags};
use rustix::mount::MountAttrFlags;
use rustix::mount::{unmount, MountFlags, UnmountFlags};
use rustix::process::{chdir, fchdir, pivot_root};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

/// Makes what `target` is read-only, with every mount below it: a clone of
/// it, made read-only recursively (mount_setattr), is put over it.
fn read_only_in_place(target: BorrowedFd<'_>, name: &str) -> Step {
    let tree = idm(idmap::detached_tree(
        &proc_self_fd_path(target),
        true,
        idmap::Propagation::Private,
        libc::MOUNT_ATTR_RDONLY,
    ))
    .map_err(|f| fail(format!("make {name} read-only: {}", f.msg)))?;
    idm(idmap::attach_at(tree.as_fd(), target))
}

/// Builds the container's mount tree and returns an fd of its future root.
/// `fds` are the parent's: the rootfs tree, the directory the layer goes on,
/// the engine's resolv.conf, hosts and hostname when `setup.etc_files`, then
/// one tree per volume in the spec's order. Nothing propagates to the
/// host: `/` becomes a slave first. Then `plan`'s steps, in its order.
pub(super) fn build_root(setup: &ChildSetup, plan: &MountPlan, fds: Vec<OwnedFd>) -> Step<OwnedFd> {
    let (root, etc, volumes) = root_layer(setup, fds)?;
    let mut etc = Some(etc);
    let volumes: Vec<OwnedFd> = volumes.collect();
    for step in &plan.steps {
        perform(root.as_fd(), setup, step, &mut etc, &volumes)?;
    }
    Ok(root)
}

/// One step of the plan, on the root's fd. `etc` is taken by the step
/// that attaches the /etc files; `volumes` are the trees in the spec's order.
fn perform(
    root_fd: BorrowedFd<'_>,
    setup: &ChildSetup,
    step: &MountStep,
    etc: &mut Option<Vec<OwnedFd>>,
    volumes: &[OwnedFd],
) -> Step {
    match step {
        MountStep::Proc => proc(root_fd),
        MountStep::Sys => sys(
            root_fd,
            matches!(
                setup.spec.network,
                crate::model::network::Network::Container(_)
            ),
        ),
        MountStep::Cgroup2 => {
            cgroup2(root_fd);
            Ok(())
        }
        MountStep::Dev => super::dev::build_dev(root_fd, setup),
        MountStep::EtcFiles => etc_files(root_fd, etc.take().unwrap_or_default()),
        MountStep::Volume {
            index,
            target,
            propagation,
        } => {
            let (Some(tree), Some(v)) = (volumes.get(*index), setup.spec.volumes.get(*index))
            else {
                return Err(fail(format!(
                    "the engine sent no tree for volume {}",
                    target.display()
                )));
            };
            let in_config_order = setup.oci.is_some();
            let fresh = attach_volume(root_fd, tree.as_fd(), &v.host, target, in_config_order)?;
            // On the tree's fd: the mount just attached, not what is under it.
            let attached = fresh.as_ref().map_or(tree.as_fd(), |f| f.as_fd());
            propagate(attached, target, *propagation)
        }
        MountStep::Tmpfs(t) => tmpfs(root_fd, t),
        MountStep::Mask { path, kind } => mask(root_fd, path, *kind),
        MountStep::ReadOnly(path) => {
            if let Ok(target) = open_in_root(root_fd, Path::new(path), OFlags::PATH) {
                read_only_in_place(target.as_fd(), path)?;
            }
            Ok(())
        }
    }
}

const NOSUID_NODEV_NOEXEC: MountFlags = MountFlags::NOSUID
    .union(MountFlags::NODEV)
    .union(MountFlags::NOEXEC);

/// `/` made a slave, then the root: the layer over the rootfs tree (or the
/// tree itself). Returns it with the /etc files' trees and the volumes'.
fn root_layer(
    setup: &ChildSetup,
    fds: Vec<OwnedFd>,
) -> Step<(OwnedFd, Vec<OwnedFd>, std::vec::IntoIter<OwnedFd>)> {
    let spec = setup.spec;
    // MS_SLAVE | MS_REC (rustix calls MS_SLAVE DOWNSTREAM), a propagation change.
    mnt(
        None,
        Path::new("/"),
        None,
        MountFlags::from_bits_retain(rustix::mount::MountPropagationFlags::DOWNSTREAM.bits())
            | MountFlags::REC,
        None,
    )?;
    let n_etc = if setup.etc_files {
        crate::sys::net::dns::FILES.len()
    } else {
        0
    };
    // The rootfs's tree, or one per image layer (top first).
    let n_trees = spec.image.as_ref().map_or(1, |i| i.layers.len());
    let n_layer = usize::from(setup.disk_layer);
    let expected = n_trees + 1 + n_layer + n_etc + spec.volumes.len();
    if fds.len() != expected {
        return Err(fail(format!(
            "the engine sent {} mount fds, not {expected}",
            fds.len(),
        )));
    }
    let mut fds = fds.into_iter();
    let trees: Vec<OwnedFd> = fds.by_ref().take(n_trees).collect();
    let scratch = fds.next().unwrap();
    let disk_layer = fds.by_ref().take(n_layer).next();
    let etc: Vec<OwnedFd> = fds.by_ref().take(n_etc).collect();
    let root = match setup.layer_size {
        Some(size) => overlay_root(trees, scratch, size, disk_layer, spec.image.is_some())?,
        None => {
            let tree = trees.into_iter().next().unwrap();
            // Write-through: the rootfs's tree itself is the root (writes land
            // as the mapped host IDs). Attached, its fd is the mount's root.
            idm(idmap::attach_at(tree.as_fd(), scratch.as_fd()))?;
            tree
        }
    };
    Ok((root, etc, fds))
}

fn proc(root_fd: BorrowedFd<'_>) -> Step {
    let proc_dir = kernel_dir(root_fd, "/proc")?;
    mnt_at(
        Some(Path::new("proc")),
        proc_dir.as_fd(),
        "/proc",
        Some("proc"),
        NOSUID_NODEV_NOEXEC,
        None,
    )
}

/// sysfs, read-only; in a network namespace joined from another
/// container (`--network container:`), whose user namespace is not ours,
/// the kernel refuses sysfs: an empty read-only tmpfs stands there
/// instead (runc binds the host's /sys then, which shows the host).
fn sys(root_fd: BorrowedFd<'_>, joined_net: bool) -> Step {
    let sys_dir = kernel_dir(root_fd, "/sys")?;
    let (source, fstype, data) = match joined_net {
        true => ("tmpfs", "tmpfs", Some("size=4k,nr_inodes=1,mode=555")),
        false => ("sysfs", "sysfs", None),
    };
    mnt_at(
        Some(Path::new(source)),
        sys_dir.as_fd(),
        "/sys",
        Some(fstype),
        NOSUID_NODEV_NOEXEC | MountFlags::RDONLY,
        data,
    )
}

/// Best effort: the container sees its own cgroup, read-only.
fn cgroup2(root_fd: BorrowedFd<'_>) {
    if let Ok(cg) = open_in_root(
        root_fd,
        Path::new("/sys/fs/cgroup"),
        OFlags::PATH | OFlags::DIRECTORY,
    ) {
        let _ = super::mnt::sys_mount(
            Some(Path::new("cgroup2")),
            &proc_self_fd_path(cg.as_fd()),
            Some("cgroup2"),
            NOSUID_NODEV_NOEXEC | MountFlags::RDONLY,
            None,
        );
    }
}

/// The engine's resolv.conf, hosts and hostname.
fn etc_files(root_fd: BorrowedFd<'_>, etc: Vec<OwnedFd>) -> Step {
    // Trees the parent detached: the state directory they live in may be
    // out of this process's reach (0700, and container root an
    // unprivileged host uid).
    for (file, tree) in crate::sys::net::dns::FILES.iter().zip(etc) {
        let path = Path::new("/etc").join(file);
        let target = in_root(touch_in_root(root_fd, &path, 0o644))?;
        idm(idmap::attach_at(tree.as_fd(), target.as_fd()))?;
    }
    Ok(())
}

/// A volume's tree on a directory or file it gets at `target`; returns the
/// clone that took its place, if any (else `tree` is what is attached).
///
/// The parent cloned the tree before the child made any mount, and
/// mountinfo lists mounts by creation (Linux 6.8 and later): attached as
/// it is, every bind shows before the /proc or tmpfs listed ahead of it
/// in an OCI config, against the runtime-spec's order (runtime-tools'
/// `mounts`). So for an OCI bundle (`in_config_order`) the tree is cloned
/// again once attached here, where the kernel lets the clone be made (it
/// is in our mount namespace), and the new clone takes its place; `engine
/// run`'s own order needs no such step, and its start pays for none.
fn attach_volume(
    root_fd: BorrowedFd<'_>,
    tree: BorrowedFd<'_>,
    host: &Path,
    target: &Path,
    in_config_order: bool,
) -> Step<Option<OwnedFd>> {
    let is_dir = rustix::fs::fstat(tree)
        .map(|st| rustix::fs::FileType::from_raw_mode(st.st_mode).is_dir())
        .map_err(std::io::Error::from)
        .ctx(|| format!("stat volume {}", host.display()))?;
    let target_fd = if is_dir {
        in_root(mkdir_all_in_root(root_fd, target, 0o755))?
    } else {
        in_root(touch_in_root(root_fd, target, 0o644))?
    };
    idm(idmap::attach_at(tree, target_fd.as_fd()))?;
    if !in_config_order {
        return Ok(None);
    }
    let fresh = idm(idmap::clone_attached(tree))?;
    unmount(proc_self_fd_path(tree), UnmountFlags::DETACH)
        .ctx(|| format!("unmount the first clone of volume {}", host.display()))?;
    idm(idmap::attach_at(fresh.as_fd(), target_fd.as_fd()))?;
    Ok(Some(fresh))
}

/// A bundle's tmpfs mount; with tmpcopyup, filled with what the rootfs has
/// there before it is made read-only (when asked).
fn tmpfs(root_fd: BorrowedFd<'_>, t: &TmpfsMount) -> Step {
    let name = t.destination.display().to_string();
    let target = dir_in(root_fd, &name)?;
    // Opened before the tmpfs covers it: the rootfs's directory.
    let under = match t.copy_up {
        true => Some(
            rustix::fs::openat(&target, ".", COPY_DIR, Mode::empty())
                .ctx(|| format!("open {name} to copy it up (tmpcopyup)"))?,
        ),
        false => None,
    };
    // Always nodev, whatever the bundle says (see build_dev).
    let flags = MountFlags::from_bits_truncate(t.flags as _) | MountFlags::NODEV;
    mnt_at(
        Some(Path::new("tmpfs")),
        target.as_fd(),
        &name,
        Some("tmpfs"),
        // Read-only once filled.
        flags
            - under
                .as_ref()
                .map_or(MountFlags::empty(), |_| MountFlags::RDONLY),
        (!t.data.is_empty()).then_some(t.data.as_str()),
    )?;
    if let Some(under) = under {
        // Resolved again: the tmpfs, now that it is mounted.
        let top = rustix::fs::openat(dir_in(root_fd, &name)?, ".", COPY_DIR, Mode::empty())
            .ctx(|| format!("open the tmpfs on {name}"))?;
        super::copy_up::copy_up(under.as_fd(), top.as_fd(), &name)?;
        if flags.contains(MountFlags::RDONLY) {
            idmap::set_attrs(top.as_fd(), libc::MOUNT_ATTR_RDONLY, 0, false)
                .ctx(|| format!("make the tmpfs on {name} read-only"))?;
        }
    }
    if t.propagation != 0 {
        let mounted = dir_in(root_fd, &name)?;
        propagate(mounted.as_fd(), &t.destination, t.propagation)?;
    }
    Ok(())
}

/// A directory to read, never through a symlink.
const COPY_DIR: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// A bundle's propagation option (MS_* flags; 0: none) on the mount whose
/// root `mounted` is.
fn propagate(mounted: BorrowedFd<'_>, name: &Path, propagation: u64) -> Step {
    if propagation == 0 {
        return Ok(());
    }
    mnt_at(
        None,
        mounted,
        &name.display().to_string(),
        None,
        MountFlags::from_bits_retain(propagation as _),
        None,
    )
}

/// linux.rootfsPropagation on the container's `/`, once it is the root.
pub(super) fn propagate_root(propagation: u64) -> Step {
    mnt(
        None,
        Path::new("/"),
        None,
        MountFlags::from_bits_retain(propagation as _),
        None,
    )
    .map_err(|f| fail(format!("{} (linux.rootfsPropagation)", f.msg)))
}

/// Kernel interfaces a container has no business reading or changing: a
/// file gets /dev/null over it, a directory an empty read-only tmpfs. A
/// path that is not there (on this kernel, in this rootfs) is skipped.
fn mask(root_fd: BorrowedFd<'_>, path: &str, kind: Option<Kind>) -> Step {
    // O_DIRECTORY for a directory: the mask must fit what it covers.
    let flags = match kind {
        Some(Kind::Dir) => OFlags::PATH | OFlags::DIRECTORY,
        _ => OFlags::PATH,
    };
    let Ok(target) = open_in_root(root_fd, Path::new(path), flags) else {
        return Ok(());
    };
    let is_dir = match kind {
        Some(kind) => kind == Kind::Dir,
        // A path a bundle names: whatever the rootfs has there.
        None => rustix::fs::fstat(&target)
            .map(|st| rustix::fs::FileType::from_raw_mode(st.st_mode).is_dir())
            .map_err(std::io::Error::from)
            .ctx(|| format!("stat {path}"))?,
    };
    if is_dir {
        mnt_at(
            Some(Path::new("tmpfs")),
            target.as_fd(),
            path,
            Some("tmpfs"),
            NOSUID_NODEV_NOEXEC | MountFlags::RDONLY,
            Some("size=4k,nr_inodes=1,mode=000"),
        )
    } else {
        bind_at(Path::new("/dev/null"), target.as_fd(), path)
    }
}

/// The layer: a tmpfs of `size` bytes (made without a path, in the
/// container's own mount namespace: nothing on the host to remove, gone with
/// the container even if the engine is killed, its pages charged to the
/// container's memory cgroup) on the parent's directory, holding the rootfs
/// tree at lower/ (an image's layers at lower/, lower1/..., top first) and
/// an overlay over them at merged/. The overlay's options name only
/// /proc/self/fd/N paths. A kept container's upper and work directories
/// are those of `disk_layer` (its NAME.layer in the state directory, a
/// detached tree from the engine, attached at disk/) instead of the
/// tmpfs's. An image's overlay reads `user.overlay.*` xattrs
/// (`userxattr`): mounted in the container's user namespace, overlayfs
/// cannot read the store's `trusted.overlay.opaque`, and opaque
/// directories would show the lower layers' files.
fn overlay_root(
    trees: Vec<OwnedFd>,
    scratch: OwnedFd,
    size: u64,
    disk_layer: Option<OwnedFd>,
    image: bool,
) -> Step<OwnedFd> {
    let tmpfs = idm(idmap::detached_tmpfs(
        &format!("mode=755,size={size}"),
        MountAttrFlags::MOUNT_ATTR_NOSUID | MountAttrFlags::MOUNT_ATTR_NODEV,
    ))?;
    idm(idmap::attach_at(tmpfs.as_fd(), scratch.as_fd()))?;
    drop(scratch);
    // lower/ for the first (a rootfs's only) tree: its name is what
    // mountinfo showed before images.
    let lowers: Vec<String> = (0..trees.len())
        .map(|i| match i {
            0 => "lower".to_string(),
            i => format!("lower{i}"),
        })
        .collect();
    // disk/: where a kept container's layer is attached (only then made).
    let own: &[&str] = match disk_layer {
        Some(_) => &["merged", "disk"],
        None => &["upper", "work", "merged"],
    };
    for d in lowers.iter().map(String::as_str).chain(own.iter().copied()) {
        rustix::fs::mkdirat(&tmpfs, d, Mode::from_raw_mode(0o755))
            .map_err(std::io::Error::from)
            .ctx(|| format!("mkdir {d} in the layer"))?;
    }
    let dir = |name: &str| -> Step<OwnedFd> {
        in_root(open_in_root(
            tmpfs.as_fd(),
            Path::new(name),
            OFlags::PATH | OFlags::DIRECTORY,
        ))
    };
    for (tree, lower) in trees.into_iter().zip(&lowers) {
        idm(idmap::attach_at(tree.as_fd(), dir(lower)?.as_fd()))?;
    }
    let top = proc_self_fd_path(tmpfs.as_fd());
    let upper_top = match disk_layer {
        Some(layer) => {
            idm(idmap::attach_at(layer.as_fd(), dir("disk")?.as_fd()))?;
            top.join("disk")
        }
        None => top.clone(),
    };
    let lowerdir: Vec<String> = lowers
        .iter()
        .map(|l| format!("{}/{l}", top.display()))
        .collect();
    let opts = format!(
        "lowerdir={0},upperdir={1}/upper,workdir={1}/work{2}",
        lowerdir.join(":"),
        upper_top.display(),
        if image { ",userxattr" } else { "" }
    );
    // mount(2) copies one page of options: a longer lowerdir would be cut.
    if opts.len() >= 4096 {
        return Err(fail(format!(
            "the overlay's options for {} layers are {} bytes, over the 4095 mount(2) takes: use an image with fewer layers",
            lowers.len(),
            opts.len()
        )));
    }
    mnt(
        Some(Path::new("overlay")),
        &top.join("merged"),
        Some("overlay"),
        // A node made in the container's root cannot be opened.
        MountFlags::NODEV,
        Some(&opts),
    )
    .map_err(|f| {
        fail(format!(
            "{} (can the rootfs's file system be an overlayfs lower layer? 9p cannot: copy the rootfs to a local file system, or use --write-through)",
            f.msg
        ))
    })?;
    // Resolved after the mount: the overlay's root.
    dir("merged")
}

/// root.readonly of an OCI bundle: the root mount alone (not /proc, /dev
/// and the others on it) becomes read-only.
pub(super) fn make_root_read_only() -> Step {
    let root = rustix::fs::open(
        "/",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| fail(format!("cannot open the container's root: {e}")))?;
    idmap::set_attrs(root.as_fd(), libc::MOUNT_ATTR_RDONLY, 0, false)
        .ctx(|| "make the root read-only (root.readonly)".into())
}

/// Without a mount namespace of its own the init is in the caller's, where
/// nothing may be mounted: its root is the rootfs as it stands, entered by
/// chroot (runc's way then). Returns an fd of it for `chroot_into`.
pub(super) fn open_rootfs_in_place(rootfs: &Path) -> Step<OwnedFd> {
    rustix::fs::open(
        rootfs,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ctx(|| format!("open the rootfs {}", rootfs.display()))
}

/// The caller's /proc (see `exec::OciProcess::caller_proc`), checked to
/// be a proc file system.
pub(super) fn open_caller_proc() -> Step<OwnedFd> {
    let fd = rustix::fs::open(
        "/proc",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ctx(|| "open the caller's /proc".into())?;
    match rustix::fs::fstatfs(&fd) {
        Ok(s) if s.f_type == rustix::fs::PROC_SUPER_MAGIC => Ok(fd),
        _ => Err(fail("the caller's /proc is not a proc file system: mount proc there, or give the container a mount namespace")),
    }
}

/// chroot into `root` (see `open_rootfs_in_place`).
pub(super) fn chroot_into(root: &OwnedFd) -> Step {
    fchdir(root).ctx(|| "chdir into the container's root".into())?;
    rustix::process::chroot(".").ctx(|| "chroot into the container's root".into())?;
    chdir("/").ctx(|| "chdir /".into())
}

/// pivot_root into `root` and drop the host's tree.
pub(super) fn enter_root(root: &OwnedFd) -> Step {
    fchdir(root).ctx(|| "chdir into the container's root".into())?;
    // pivot_root(".", ".") stacks the old root on the new one; detaching it
    // then leaves only the container's tree, with no put_old directory needed.
    pivot_root(".", ".").ctx(|| "pivot_root into the container's root".into())?;
    unmount(".", UnmountFlags::DETACH).ctx(|| "detach the host's root".into())?;
    chdir("/").ctx(|| "chdir /".into())
}
