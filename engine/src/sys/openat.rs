//! Paths inside the rootfs, resolved on fds as runc and crun do: every
//! symlink is followed as if the rootfs were `/` (`RESOLVE_IN_ROOT`) and
//! magic links (`/proc/self/fd/N`, `/proc/PID/root`) are refused
//! (`RESOLVE_NO_MAGICLINKS`), so neither a hostile symlink nor one swapped in
//! mid-start can point a mount, the working directory or a write outside.
//! Mount through the fd (`proc_self_fd_path`, or `sys::idmap::attach_at`),
//! never through the path again. Before exec: `close_fds_except` /
//! `cloexec_fds_except`, then `check_cwd_inside_root`.
//!
//! Kernel: openat2 5.6, close_range 5.9 (`CLOSE_RANGE_CLOEXEC` 5.11).

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

#[derive(Debug)]
pub struct InRootError {
    pub what: &'static str,
    /// The path as given, inside the rootfs.
    pub path: PathBuf,
    pub errno: Errno,
}

impl fmt::Display for InRootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let why = match self.errno {
            Errno::LOOP => "it goes through a magic link such as /proc/self/fd/N, or too many symlinks: point it at a real directory of the rootfs".into(),
            Errno::XDEV => "it crosses onto another mount, which is not allowed here".into(),
            Errno::NOENT => "it does not exist in the rootfs".into(),
            Errno::NOTDIR => "a component is not a directory".into(),
            Errno::EXIST => "a symlink to a missing path is in the way: make it point at a directory inside the rootfs, or remove it".into(),
            Errno::NOSYS => "openat2 needs Linux 5.6 or later".into(),
            e => io::Error::from(e).to_string(),
        };
        write!(f, "cannot {} {} inside the rootfs: {why}", self.what, self.path.display())
    }
}

impl std::error::Error for InRootError {}

fn err(what: &'static str, path: &Path) -> impl Fn(Errno) -> InRootError {
    let path = path.to_path_buf();
    move |errno| InRootError {
        what,
        path: path.clone(),
        errno,
    }
}

const IN_ROOT: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

/// Opens `path` as if `root` were `/`: `..` and absolute symlinks stop at
/// `root`, magic links are refused. `O_CLOEXEC` is always added. Use
/// `OFlags::PATH` for a mount target.
pub fn open_in_root(root: BorrowedFd<'_>, path: &Path, flags: OFlags) -> Result<OwnedFd, InRootError> {
    openat2_in(root, path, flags, Mode::empty(), IN_ROOT)
}

/// As `open_in_root`, and refuses to leave the mount `root` is on
/// (`RESOLVE_NO_XDEV`): for paths that must stay in the rootfs proper, such
/// as the working directory's check or write-through targets.
pub fn open_in_root_no_xdev(
    root: BorrowedFd<'_>,
    path: &Path,
    flags: OFlags,
) -> Result<OwnedFd, InRootError> {
    openat2_in(root, path, flags, Mode::empty(), IN_ROOT | ResolveFlags::NO_XDEV)
}

fn openat2_in(
    root: BorrowedFd<'_>,
    path: &Path,
    flags: OFlags,
    mode: Mode,
    resolve: ResolveFlags,
) -> Result<OwnedFd, InRootError> {
    let rel = relative(path);
    rustix::fs::openat2(root, rel, flags | OFlags::CLOEXEC, mode, resolve)
        .map_err(err("open", path))
}

/// "/a/b" and "a/b" alike name root's a/b; "/" names root itself.
fn relative(path: &Path) -> &Path {
    let rel = path.strip_prefix("/").unwrap_or(path);
    if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    }
}

/// Makes every missing directory of `path` inside `root` (mode `mode`) and
/// returns an `O_PATH` fd of the last. Each prefix is resolved from `root`
/// with `RESOLVE_IN_ROOT`, each directory made with `mkdirat` on its parent's
/// fd, so a symlinked component (even one swapped in meanwhile) leads to a
/// directory inside `root`, never outside. A component that is a symlink to a
/// missing target is refused rather than followed.
pub fn mkdir_all_in_root(root: BorrowedFd<'_>, path: &Path, mode: u32) -> Result<OwnedFd, InRootError> {
    let dir_flags = OFlags::PATH | OFlags::DIRECTORY;
    let mut current = open_in_root(root, Path::new("."), dir_flags)?;
    let mut prefix = PathBuf::new();
    for comp in path.components() {
        let name: &OsStr = match comp {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => continue,
            Component::ParentDir => OsStr::new(".."),
            Component::Normal(n) => n,
        };
        prefix.push(name);
        current = match open_in_root(root, &prefix, dir_flags) {
            Ok(fd) => fd,
            Err(e) if e.errno == Errno::NOENT => {
                match rustix::fs::mkdirat(&current, name, Mode::from_raw_mode(mode)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(errno) => return Err(err("create", path)(errno)),
                }
                // Resolved again from the root: if a symlink is there now,
                // it is followed inside the root, or refused when dangling.
                open_in_root(root, &prefix, dir_flags).map_err(|e| InRootError {
                    what: "create",
                    path: path.to_path_buf(),
                    errno: if e.errno == Errno::NOENT { Errno::EXIST } else { e.errno },
                })?
            }
            Err(e) => {
                return Err(InRootError {
                    what: "create",
                    path: path.to_path_buf(),
                    errno: e.errno,
                })
            }
        };
    }
    Ok(current)
}

/// An `O_PATH` fd of the file `path` inside `root`, created empty (mode
/// `mode`) with its directories if missing: a bind-mount target for a file
/// (`/dev/null`, a file volume). An existing entry is resolved in the root;
/// a new one is made with `O_CREAT | O_EXCL` on its parent's fd, which never
/// follows a symlink.
pub fn touch_in_root(root: BorrowedFd<'_>, path: &Path, mode: u32) -> Result<OwnedFd, InRootError> {
    match open_in_root(root, path, OFlags::PATH) {
        Err(e) if e.errno == Errno::NOENT => {}
        other => return other,
    }
    let name = path
        .file_name()
        .ok_or_else(|| err("create", path)(Errno::INVAL))?;
    let parent = mkdir_all_in_root(root, path.parent().unwrap_or(Path::new("/")), 0o755)?;
    match rustix::fs::openat(
        &parent,
        name,
        OFlags::CREATE | OFlags::EXCL | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(mode),
    ) {
        Ok(_) | Err(Errno::EXIST) => open_in_root(root, path, OFlags::PATH),
        Err(errno) => Err(err("create", path)(errno)),
    }
}

/// `/proc/self/fd/N` of `fd`: the path to give mount(2) so it acts on what
/// the fd was resolved to, not on whatever the path names now.
pub fn proc_self_fd_path(fd: BorrowedFd<'_>) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Closes every fd above 2 except those in `keep` (close_range, 5.9).
pub fn close_fds_except(keep: &[RawFd]) -> io::Result<()> {
    for_ranges_except(keep, 0)
}

/// Marks every fd above 2 except those in `keep` close-on-exec
/// (close_range with `CLOSE_RANGE_CLOEXEC`, 5.11): for the last step before
/// exec, when an fd such as the error pipe must live until exec succeeds.
pub fn cloexec_fds_except(keep: &[RawFd]) -> io::Result<()> {
    for_ranges_except(keep, libc::CLOSE_RANGE_CLOEXEC)
}

fn for_ranges_except(keep: &[RawFd], flags: libc::c_uint) -> io::Result<()> {
    let mut keep: Vec<u32> = keep.iter().filter(|fd| **fd > 2).map(|fd| *fd as u32).collect();
    keep.sort_unstable();
    keep.dedup();
    let mut first = 3u32;
    for k in keep.iter().copied().chain(std::iter::once(u32::MAX)) {
        if k > first {
            close_range(first, k - 1, flags)?;
        }
        if k == u32::MAX {
            break;
        }
        first = k + 1;
    }
    Ok(())
}

/// Neither rustix 1.1 nor nix 0.29 wraps close_range, and musl's libc crate
/// has no function for it: the raw syscall.
fn close_range(first: u32, last: u32, flags: libc::c_uint) -> io::Result<()> {
    // SAFETY: close_range takes integers only; closing fds we may still hold
    // as OwnedFd is the caller's intent (it is about to exec).
    let r = unsafe { libc::syscall(libc::SYS_close_range, first, last, flags) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Refuses a working directory outside the current root (after pivot_root
/// and chdir): a cwd reached through a leaked fd of the host has no path
/// from `/`, and getcwd says so (ENOENT, or a path not starting with '/').
pub fn check_cwd_inside_root() -> io::Result<()> {
    match rustix::process::getcwd(Vec::new()) {
        Ok(cwd) if cwd.as_bytes().first() == Some(&b'/') => Ok(()),
        Ok(cwd) => Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "the working directory {} lies outside the container's root: refusing to run",
                Path::new(OsStr::from_bytes(cwd.as_bytes())).display()
            ),
        )),
        Err(Errno::NOENT) => Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "the working directory lies outside the container's root: refusing to run",
        )),
        Err(e) => Err(io::Error::from(e)),
    }
}
