//! Detached mounts made by the parent (host root) and handed to the child:
//! the way crun presents a root-owned rootfs to a container whose root is an
//! unprivileged host uid, with no chown.
//!
//! Parent: `idmapped_tree(rootfs, userns)` clones the rootfs as a detached
//! mount (`open_tree(OPEN_TREE_CLONE | AT_RECURSIVE)`) and idmaps it with the
//! container's user namespace (`mount_setattr(MOUNT_ATTR_IDMAP)`), after its
//! maps are written: host uid 0 then reads as container uid 0, and what
//! container root writes lands as host uid BASE. `detached_tree` does the same
//! without the idmap (volumes, or a rootfs already shifted with `--owner`).
//! Each clone leaves `open_tree` private (a volume: a slave), so nothing the
//! container mounts on it reaches the host's peer group (`Propagation`).
//! Either fd crosses to the already-cloned child with `send_fds` over a
//! `fd_socketpair`. The child attaches it in its own mount namespace with
//! `attach`/`attach_at` (`move_mount`), never walking the host path, so a
//! rootfs under a directory the mapped root cannot search still runs.
//!
//! Child: `detached_tmpfs` makes the layer's tmpfs without a path either
//! (`fsopen`/`fsmount`) and `attach_at` puts it on the scratch directory,
//! whose fd the parent opened through `/proc/PID/root/...` (so the fd is of
//! the child's mount namespace: an fd opened before the clone is of the
//! host's, and move_mount onto it fails with EINVAL). Everything else is
//! reached through `/proc/self/fd/N` of that tmpfs (see
//! `sys::openat::proc_self_fd_path`), overlayfs options included, so no host
//! path (and no ',' or ':' in one) is ever parsed.
//!
//! Mount attributes set by the parent on a detached tree (read-only...) are
//! not locked once attached in the child's namespace: a container root that
//! keeps CAP_SYS_ADMIN could clear them with mount_setattr. The capability
//! cut and seccomp are what keep them.
//!
//! Kernel: open_tree/move_mount/fsopen 5.2, mount_setattr 5.12, idmapped
//! overlayfs layers 5.19, idmapped tmpfs 6.3 (ext4, xfs, btrfs earlier; 9p,
//! nfs not at all).

use std::ffi::CStr;
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use std::mem::MaybeUninit;

use rustix::io::Errno;
use rustix::mount::{
    fsconfig_create, fsconfig_set_string, fsmount, fsopen, move_mount, open_tree, FsMountFlags,
    FsOpenFlags, MountAttrFlags, MoveMountFlags, OpenTreeFlags,
};
use rustix::net::{
    recvmsg, sendmsg, socketpair, AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage,
    RecvFlags, ReturnFlags, SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketFlags,
    SocketType,
};

/// Most fds one message of `send_fds` carries (SCM_MAX_FD is 253).
pub const MAX_FDS: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum IdmapError {
    /// The kernel or the file system cannot idmap this tree.
    #[error("{} is on {fstype}, which cannot be idmapped on this kernel (Linux {kernel}; tmpfs needs 6.3, 9p and nfs never): use --userns BASE with a rootfs pulled with --owner BASE, or --userns host", .path.display())]
    Unsupported {
        path: PathBuf,
        fstype: String,
        kernel: String,
        errno: Errno,
    },
    /// Any other failure: which syscall, on what, and the errno.
    #[error("{what} {} failed: {}", .path.display(), errno_text(*.errno))]
    Sys {
        what: &'static str,
        path: PathBuf,
        errno: Errno,
    },
}

fn errno_text(e: Errno) -> String {
    io::Error::from(e).to_string()
}

fn sys(what: &'static str, path: &Path) -> impl FnOnce(Errno) -> IdmapError {
    let path = path.to_path_buf();
    move |errno| IdmapError::Sys { what, path, errno }
}

/// `/proc/PID/ns/user` of the container, opened once its maps are written.
pub fn open_userns(pid: i32) -> Result<OwnedFd, IdmapError> {
    let path = PathBuf::from(format!("/proc/{pid}/ns/user"));
    rustix::fs::open(
        &path,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(sys("open the user namespace", &path))
}

/// A user namespace that maps host uid `uid` and gid `gid` (one each) onto
/// `to_uid`/`to_gid`, as an fd: an idmapped mount with it shows files of
/// `uid` as `to_uid` and writes what `to_uid` makes as `uid`, and nothing
/// else of the tree is mapped (seen as the overflow ID, never written). A
/// throwaway child holds the namespace while its maps are written and is
/// killed and reaped before this returns.
pub fn mapping_userns(uid: u32, gid: u32, to_uid: u32, to_gid: u32) -> Result<OwnedFd, IdmapError> {
    let what = Path::new("a user namespace for an idmapped volume");
    // exit_signal 0: no SIGCHLD to whatever the engine waits for.
    // SAFETY: raw clone without a new stack behaves as fork; the child
    // only calls pause and _exit (async-signal-safe), so it needs nothing
    // another thread of ours might hold.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            libc::CLONE_NEWUSER as libc::c_ulong,
            0,
            0,
            0,
            0,
        )
    };
    if pid == 0 {
        loop {
            // SAFETY: pause has no arguments; the parent kills us.
            unsafe { libc::pause() };
        }
    }
    if pid < 0 {
        return Err(sys("clone (CLONE_NEWUSER)", what)(
            Errno::from_io_error(&io::Error::last_os_error()).unwrap_or(Errno::INVAL),
        ));
    }
    let pid = pid as i32;
    let result = (|| {
        for (file, from, to) in [("uid_map", uid, to_uid), ("gid_map", gid, to_gid)] {
            let path = PathBuf::from(format!("/proc/{pid}/{file}"));
            std::fs::write(&path, format!("{from} {to} 1\n")).map_err(|e| IdmapError::Sys {
                what: "write",
                path: path.clone(),
                errno: Errno::from_io_error(&e).unwrap_or(Errno::INVAL),
            })?;
        }
        open_userns(pid)
    })();
    // SAFETY: pid is our own child, not yet reaped, so it names no other
    // process; __WALL waits for a child whose exit signal is not SIGCHLD.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), libc::__WALL);
    }
    result
}

/// How a detached tree takes part in mount propagation once attached.
/// A clone of a shared mount stays in its source's peer group, and a
/// detached tree is out of reach of the child's "make / a slave": left so,
/// what the container mounts on it appears in the host's namespace (and
/// pivot_root onto it fails with EINVAL). So every clone gets one of these
/// before anything is mounted on or under it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    /// Nothing in, nothing out (MS_PRIVATE): the rootfs, the engine's files.
    Private,
    /// The host's mounts come in, none go out (MS_SLAVE): volumes.
    Slave,
    /// A peer of a shared source (MS_SHARED): a volume whose bundle asks
    /// for shared propagation.
    Shared,
}

impl Propagation {
    fn flag(self) -> u64 {
        match self {
            Propagation::Private => libc::MS_PRIVATE,
            Propagation::Slave => libc::MS_SLAVE,
            Propagation::Shared => libc::MS_SHARED,
        }
    }
}

/// A detached copy of the mount tree at `path` (submounts too when
/// `recursive`), as an fd: a bind mount not yet attached anywhere, every
/// mount of it with `propagation` and the `MOUNT_ATTR_*` bits `attrs` (one
/// mount_setattr: this is on every container's start).
pub fn detached_tree(
    path: &Path,
    recursive: bool,
    propagation: Propagation,
    attrs: u64,
) -> Result<OwnedFd, IdmapError> {
    let mut flags = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC;
    if recursive {
        flags |= OpenTreeFlags::AT_RECURSIVE;
    }
    let tree = open_tree(rustix::fs::CWD, path, flags).map_err(sys("open_tree", path))?;
    let attr = libc::mount_attr {
        attr_set: attrs,
        attr_clr: 0,
        propagation: propagation.flag(),
        userns_fd: 0,
    };
    let at = if recursive { libc::AT_RECURSIVE } else { 0 };
    mount_setattr(tree.as_fd(), at, &attr).map_err(sys(
        "mount_setattr (propagation and flags) on the clone of",
        path,
    ))?;
    Ok(tree)
}

/// A new detached copy of the attached tree whose root `tree` is, with
/// its submounts: same flags, idmap and propagation (a peer of a shared
/// mount, a slave of the same master). Its mounts are new, and list after
/// every mount made before it in mountinfo (Linux 6.8 and later sort it
/// by creation).
pub fn clone_attached(tree: BorrowedFd<'_>) -> Result<OwnedFd, IdmapError> {
    open_tree(
        tree,
        c"",
        OpenTreeFlags::OPEN_TREE_CLONE
            | OpenTreeFlags::OPEN_TREE_CLOEXEC
            | OpenTreeFlags::AT_RECURSIVE
            | OpenTreeFlags::AT_EMPTY_PATH,
    )
    .map_err(sys("open_tree (a new clone of)", &fd_path(tree)))
}

/// As `detached_tree` (recursive, private, `attrs`), idmapped with
/// `userns`: host ID `BASE + n` of that namespace's map reads as `n`, and
/// host root as container root. Must run in the initial user namespace (the
/// parent), after the maps of `userns` are written.
pub fn idmapped_tree(
    path: &Path,
    userns: BorrowedFd<'_>,
    attrs: u64,
) -> Result<OwnedFd, IdmapError> {
    let tree = detached_tree(path, true, Propagation::Private, attrs)?;
    set_idmap(&tree, userns, path)?;
    Ok(tree)
}

/// Idmaps a detached tree (every mount of it) with `userns`. `path` only
/// names the tree in errors.
pub fn set_idmap(tree: &OwnedFd, userns: BorrowedFd<'_>, path: &Path) -> Result<(), IdmapError> {
    let attr = libc::mount_attr {
        attr_set: libc::MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    match mount_setattr(tree.as_fd(), libc::AT_RECURSIVE, &attr) {
        Ok(()) => Ok(()),
        Err(errno @ (Errno::INVAL | Errno::OPNOTSUPP | Errno::NOSYS)) => {
            Err(IdmapError::Unsupported {
                path: path.to_path_buf(),
                fstype: fs_type_name(tree.as_fd()),
                kernel: rustix::system::uname()
                    .release()
                    .to_string_lossy()
                    .into_owned(),
                errno,
            })
        }
        Err(errno) => Err(IdmapError::Sys {
            what: "mount_setattr MOUNT_ATTR_IDMAP on",
            path: path.to_path_buf(),
            errno,
        }),
    }
}

/// Sets and clears `MOUNT_ATTR_*` flags (libc's constants) on the mount of
/// `tree`, and on every mount below it when `recursive`: read-only volumes
/// made recursive this way cannot be remounted read-write from inside.
pub fn set_attrs(tree: BorrowedFd<'_>, set: u64, clear: u64, recursive: bool) -> io::Result<()> {
    let attr = libc::mount_attr {
        attr_set: set,
        attr_clr: clear,
        propagation: 0,
        userns_fd: 0,
    };
    let flags = if recursive { libc::AT_RECURSIVE } else { 0 };
    mount_setattr(tree, flags, &attr).map_err(io::Error::from)
}

/// rustix 1.1 and nix 0.29 have no mount_setattr; libc has its number and struct.
fn mount_setattr(tree: BorrowedFd<'_>, flags: i32, attr: &libc::mount_attr) -> Result<(), Errno> {
    const EMPTY: &CStr = c"";
    // SAFETY: the fd is borrowed and open, the path is a NUL-terminated empty
    // string, and attr points to a live mount_attr whose size we pass.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            EMPTY.as_ptr(),
            (flags | libc::AT_EMPTY_PATH) as libc::c_uint,
            attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(Errno::from_io_error(&io::Error::last_os_error()).unwrap_or(Errno::INVAL))
    }
}

/// Attaches a detached tree at `target` (a path in the caller's mount
/// namespace). The fd may be closed afterwards.
pub fn attach(tree: BorrowedFd<'_>, target: &Path) -> Result<(), IdmapError> {
    move_mount(
        tree,
        c"",
        rustix::fs::CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(sys("move_mount onto", target))
}

/// Attaches a detached tree onto the directory (or file) `target` is an fd
/// of, e.g. one `sys::openat::open_in_root` resolved: no path is walked.
pub fn attach_at(tree: BorrowedFd<'_>, target: BorrowedFd<'_>) -> Result<(), IdmapError> {
    move_mount(
        tree,
        c"",
        target,
        c"",
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
    )
    .map_err(sys("move_mount onto", &fd_path(target)))
}

/// A new tmpfs as a detached mount (`fsopen`/`fsmount`), owned by the
/// caller's user namespace: for the child's layer. `options` as mount(8)'s,
/// comma-separated `key=value` (e.g. "mode=755,size=64m").
pub fn detached_tmpfs(options: &str, attrs: MountAttrFlags) -> Result<OwnedFd, IdmapError> {
    let what = Path::new("tmpfs");
    let fs = fsopen("tmpfs", FsOpenFlags::FSOPEN_CLOEXEC).map_err(sys("fsopen", what))?;
    for opt in options.split(',').filter(|o| !o.is_empty()) {
        let (k, v) = opt.split_once('=').unwrap_or((opt, ""));
        if v.is_empty() {
            rustix::mount::fsconfig_set_flag(&fs, k)
        } else {
            fsconfig_set_string(&fs, k, v)
        }
        .map_err(sys("fsconfig (an option of)", Path::new(opt)))?;
    }
    fsconfig_create(&fs).map_err(sys("fsconfig create", what))?;
    fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, attrs).map_err(sys("fsmount", what))
}

/// A pair of connected `SOCK_SEQPACKET` sockets (close-on-exec) to carry
/// mount fds from the parent to the child. Make it before the clone; each
/// side drops the other's end.
pub fn fd_socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(io::Error::from)
}

/// Most fds `send_fds` sends at once: an image of docker's 127 layers and
/// its volumes go in several messages.
pub const MAX_SENT_FDS: usize = 1024;

/// Sends `fds` (SCM_RIGHTS) in messages of at most `MAX_FDS` each, which
/// one `recv_fds` receives whole.
pub fn send_fds(sock: BorrowedFd<'_>, fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    if fds.is_empty() || fds.len() > MAX_SENT_FDS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "send_fds carries 1 to {MAX_SENT_FDS} fds, not {}",
                fds.len()
            ),
        ));
    }
    let last = (fds.len() - 1) / MAX_FDS;
    for (i, chunk) in fds.chunks(MAX_FDS).enumerate() {
        // The count travels as data too, so the receiver checks it got
        // them all, and whether another message follows.
        let head = [chunk.len() as u8, u8::from(i < last)];
        let iov = [IoSlice::new(&head)];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
        let mut cmsg = SendAncillaryBuffer::new(&mut space);
        if !cmsg.push(SendAncillaryMessage::ScmRights(chunk)) {
            return Err(io::Error::other(
                "send_fds: the fds do not fit the control buffer",
            ));
        }
        sendmsg(sock, &iov, &mut cmsg, SendFlags::NOSIGNAL)?;
    }
    Ok(())
}

/// Receives the messages of one `send_fds`; the fds come close-on-exec.
pub fn recv_fds(sock: BorrowedFd<'_>) -> io::Result<Vec<OwnedFd>> {
    let mut fds = Vec::new();
    loop {
        let mut head = [0u8; 2];
        let mut iov = [IoSliceMut::new(&mut head)];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
        let mut cmsg = RecvAncillaryBuffer::new(&mut space);
        let msg = recvmsg(sock, &mut iov, &mut cmsg, RecvFlags::CMSG_CLOEXEC)?;
        let before = fds.len();
        for c in cmsg.drain() {
            if let RecvAncillaryMessage::ScmRights(received) = c {
                fds.extend(received);
            }
        }
        let truncated = msg
            .flags
            .intersects(ReturnFlags::CTRUNC | ReturnFlags::TRUNC);
        let (bytes, expected, more) = (msg.bytes, head[0] as usize, head[1] != 0);
        if bytes == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the parent closed the mount fd channel without sending",
            ));
        }
        if truncated || bytes != head.len() || fds.len() - before != expected {
            return Err(io::Error::other(format!(
                "expected {expected} mount fds from the parent, got {}",
                fds.len() - before
            )));
        }
        if !more {
            return Ok(fds);
        }
        if fds.len() >= MAX_SENT_FDS {
            return Err(io::Error::other(format!(
                "the parent sent more than {MAX_SENT_FDS} mount fds"
            )));
        }
    }
}

/// What an fd points at, for messages.
fn fd_path(fd: BorrowedFd<'_>) -> PathBuf {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .unwrap_or_else(|_| PathBuf::from(format!("fd {}", fd.as_raw_fd())))
}

/// The file system a tree is on, by name where known.
fn fs_type_name(fd: BorrowedFd<'_>) -> String {
    let Ok(st) = rustix::fs::fstatfs(fd) else {
        return "a file system".into();
    };
    let magic = st.f_type as u64 as u32;
    let name = match magic {
        0xEF53 => "ext4",
        0x5846_5342 => "xfs",
        0x9123_683E => "btrfs",
        0x0102_1994 => "tmpfs",
        0x0102_1997 => "9p",
        0x6969 => "nfs",
        0x794C_7630 => "overlayfs",
        0x6573_5546 => "fuse",
        0x7371_7368 => "squashfs",
        0xF2F5_2010 => "f2fs",
        0x4D44 => "vfat",
        0x2FC1_2FC1 => "zfs",
        0xFF53_4D42 => "cifs",
        0x858_458F6 => "ramfs",
        0x9FA0 => "proc",
        0x6265_6572 => "sysfs",
        _ => return format!("a file system of type {magic:#x}"),
    };
    name.into()
}
