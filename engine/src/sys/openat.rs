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
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

#[derive(Debug, thiserror::Error)]
#[error("cannot {what} {} inside the rootfs: {}", .path.display(), why_in_root(*.errno))]
pub struct InRootError {
    pub what: &'static str,
    /// The path as given, inside the rootfs.
    pub path: PathBuf,
    pub errno: Errno,
}

/// Why an in-root resolution failed, in words that say what to change.
fn why_in_root(errno: Errno) -> String {
    match errno {
        Errno::LOOP => "it goes through a magic link such as /proc/self/fd/N, or too many symlinks: point it at a real directory of the rootfs".into(),
        Errno::XDEV => "it crosses onto another mount, which is not allowed here".into(),
        Errno::NOENT => "it does not exist in the rootfs".into(),
        Errno::NOTDIR => "a component is not a directory".into(),
        Errno::EXIST => "a symlink to a missing path is in the way: make it point at a directory inside the rootfs, or remove it".into(),
        Errno::NOSYS => "openat2 needs Linux 5.6 or later".into(),
        e => io::Error::from(e).to_string(),
    }
}

fn err(what: &'static str, path: &Path) -> impl Fn(Errno) -> InRootError {
    let path = path.to_path_buf();
    move |errno| InRootError {
        what,
        path: path.clone(),
        errno,
    }
}

// RESOLVE_IN_ROOT refuses magic links today too, but the man page says that
// "may change": NO_MAGICLINKS keeps the refusal whatever the kernel does.
const IN_ROOT: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

/// Opens `path` as if `root` were `/`: `..` and absolute symlinks stop at
/// `root`, magic links are refused. `O_CLOEXEC` is always added. Use
/// `OFlags::PATH` for a mount target.
pub fn open_in_root(
    root: BorrowedFd<'_>,
    path: &Path,
    flags: OFlags,
) -> Result<OwnedFd, InRootError> {
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
    openat2_in(
        root,
        path,
        flags,
        Mode::empty(),
        IN_ROOT | ResolveFlags::NO_XDEV,
    )
}

fn openat2_in(
    root: BorrowedFd<'_>,
    path: &Path,
    flags: OFlags,
    mode: Mode,
    resolve: ResolveFlags,
) -> Result<OwnedFd, InRootError> {
    let rel = relative(path);
    openat2_retrying(root, rel, flags | OFlags::CLOEXEC, mode, resolve).map_err(err("open", path))
}

/// How often an `openat2` that saw a concurrent rename or mount is retried.
const OPENAT2_TRIES: usize = 128;

/// `openat2`, retried when the kernel answers EAGAIN: with RESOLVE_IN_ROOT
/// or RESOLVE_NO_XDEV it gives up on a walk that raced any rename or mount
/// anywhere on the host (the mount and rename seqlocks), which a busy host
/// (parallel tests, other containers starting) does all the time.
pub fn openat2_retrying(
    dirfd: BorrowedFd<'_>,
    path: &Path,
    flags: OFlags,
    mode: Mode,
    resolve: ResolveFlags,
) -> rustix::io::Result<OwnedFd> {
    let mut tries = 0;
    loop {
        match rustix::fs::openat2(dirfd, path, flags, mode, resolve) {
            Err(Errno::AGAIN | Errno::INTR) if tries < OPENAT2_TRIES => tries += 1,
            other => return other,
        }
    }
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
pub fn mkdir_all_in_root(
    root: BorrowedFd<'_>,
    path: &Path,
    mode: u32,
) -> Result<OwnedFd, InRootError> {
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
                    errno: if e.errno == Errno::NOENT {
                        Errno::EXIST
                    } else {
                        e.errno
                    },
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
    let mut keep: Vec<u32> = keep
        .iter()
        .filter(|fd| **fd > 2)
        .map(|fd| *fd as u32)
        .collect();
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::fs::{symlink, MetadataExt};

    /// TOP/root is the root, with symlinks that try to leave it:
    /// a -> /../../TOP/outside, c -> ../../(...)/TOP/outside (relative),
    /// d -> /TOP/missing (dangling), b -> /proc/self/fd/N (N: the tree's own
    /// root fd). Inside the root they must reach root/TOP/outside ("inside");
    /// an unconfined walk reaches TOP/outside ("outside"), never anything
    /// else of the host, so a broken build of this module writes nowhere else.
    struct Tree {
        top: PathBuf,
        dir: PathBuf,
        root: OwnedFd,
        /// Where the escaping links lead inside the root, and outside it.
        inside: PathBuf,
        outside: PathBuf,
    }

    impl Tree {
        fn new(tag: &str) -> Tree {
            let top =
                std::env::temp_dir().join(format!("engine-openat-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&top);
            let rel = top.strip_prefix("/").unwrap().to_path_buf();
            let dir = top.join("root");
            let (inside, outside) = (dir.join(&rel).join("outside"), top.join("outside"));
            for (d, text) in [(&inside, "inside"), (&outside, "outside")] {
                std::fs::create_dir_all(d).unwrap();
                std::fs::write(d.join("marker"), text).unwrap();
            }
            std::fs::create_dir_all(dir.join("etc")).unwrap();
            symlink(
                Path::new("/../..").join(&rel).join("outside"),
                dir.join("a"),
            )
            .unwrap();
            symlink(
                Path::new("../../../../../../../../..")
                    .join(&rel)
                    .join("outside"),
                dir.join("c"),
            )
            .unwrap();
            symlink(Path::new("/").join(&rel).join("missing"), dir.join("d")).unwrap();
            let root = rustix::fs::open(
                &dir,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .unwrap();
            symlink(format!("/proc/self/fd/{}", root.as_raw_fd()), dir.join("b")).unwrap();
            Tree {
                top,
                dir,
                root,
                inside,
                outside,
            }
        }
    }

    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.top);
        }
    }

    fn ino(fd: &OwnedFd) -> u64 {
        rustix::fs::fstat(fd).unwrap().st_ino
    }

    #[test]
    fn climbing_symlinks_resolve_inside_the_root() {
        let t = Tree::new("climb");
        let inside = std::fs::metadata(t.inside.join("marker")).unwrap().ino();
        let rel = t.top.strip_prefix("/").unwrap();
        let up_and_in = Path::new("etc/../../..").join(rel).join("outside/marker");
        for p in [
            Path::new("/a/marker"),
            Path::new("a/marker"),
            Path::new("/c/marker"),
            Path::new("/../../a/marker"),
            &up_and_in,
        ] {
            let fd = open_in_root(t.root.as_fd(), p, OFlags::RDONLY).unwrap();
            assert_eq!(ino(&fd), inside, "{} left the root", p.display());
        }
        // Without the confinement the same link leads out of the root.
        let out = rustix::fs::openat(
            &t.root,
            "a",
            OFlags::PATH | OFlags::DIRECTORY,
            Mode::empty(),
        )
        .unwrap();
        assert_eq!(ino(&out), std::fs::metadata(&t.outside).unwrap().ino());
    }

    #[test]
    fn magic_links_are_refused() {
        let slash = rustix::fs::open("/", OFlags::PATH | OFlags::CLOEXEC, Mode::empty()).unwrap();
        let e =
            open_in_root(slash.as_fd(), Path::new("/proc/self/fd/0"), OFlags::PATH).unwrap_err();
        assert_eq!(e.errno, Errno::LOOP, "{e}");
        assert!(e.to_string().contains("magic link"), "{e}");
        let e = open_in_root(
            slash.as_fd(),
            Path::new("/proc/self/root/etc"),
            OFlags::PATH,
        )
        .unwrap_err();
        assert_eq!(e.errno, Errno::LOOP, "{e}");

        // A rootfs with /proc mounted and b -> /proc/self/fd/3, in a mount
        // namespace of this thread's own.
        let t = Tree::new("magic");
        let (dir, tree_fd) = (t.dir.clone(), t.root.as_raw_fd());
        std::thread::spawn(move || {
            testkit::mountns::enter_private();
            std::fs::create_dir(dir.join("proc")).unwrap();
            rustix::mount::mount_bind("/proc", dir.join("proc")).unwrap();
            // Opened here, so the fd sees this namespace's mounts.
            let root = rustix::fs::open(
                &dir,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .unwrap();
            assert!(fd_flags(tree_fd).is_some(), "b's target fd is open");
            let e = open_in_root(root.as_fd(), Path::new("/b"), OFlags::PATH).unwrap_err();
            assert_eq!(e.errno, Errno::LOOP, "{e}");
            // A plain openat follows it (to wherever fd N is, here the tree).
            assert!(rustix::fs::openat(&root, "b", OFlags::PATH, Mode::empty()).is_ok());
        })
        .join()
        .unwrap();
    }

    #[test]
    fn no_xdev_refuses_crossing_a_mount() {
        let slash = rustix::fs::open("/", OFlags::PATH | OFlags::CLOEXEC, Mode::empty()).unwrap();
        let e =
            open_in_root_no_xdev(slash.as_fd(), Path::new("/proc/1"), OFlags::PATH).unwrap_err();
        assert_eq!(e.errno, Errno::XDEV, "{e}");
        assert!(open_in_root(slash.as_fd(), Path::new("/proc/1"), OFlags::PATH).is_ok());
    }

    #[test]
    fn mkdir_all_through_a_symlink_stays_inside() {
        let t = Tree::new("mkdir");
        let fd = mkdir_all_in_root(t.root.as_fd(), Path::new("/a/made/x/y"), 0o755).unwrap();
        assert_eq!(
            ino(&fd),
            std::fs::metadata(t.inside.join("made/x/y")).unwrap().ino()
        );
        assert!(!t.outside.join("made").exists(), "created outside the root");
        // Again, through the relative link: everything exists, same directory.
        let again = mkdir_all_in_root(t.root.as_fd(), Path::new("c/made/x/y"), 0o755).unwrap();
        assert_eq!(ino(&again), ino(&fd));

        // A dangling symlink is refused, and nothing is made for it anywhere.
        let e = mkdir_all_in_root(t.root.as_fd(), Path::new("/d/x"), 0o755).unwrap_err();
        assert_eq!(e.errno, Errno::EXIST, "{e}");
        assert!(e.to_string().contains("symlink to a missing path"), "{e}");
        assert!(!t.top.join("missing").exists());
        assert!(!t.inside.parent().unwrap().join("missing").exists());
    }

    /// A walk through ".." that races renames elsewhere gets EAGAIN from
    /// the kernel; CI failed on exactly this while other tests ran.
    #[test]
    fn walks_survive_concurrent_renames() {
        let t = Tree::new("race");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let churn = {
            let (stop, dir) = (stop.clone(), t.top.clone());
            std::thread::spawn(move || {
                let (a, b) = (dir.join("ren-a"), dir.join("ren-b"));
                std::fs::write(&a, "").unwrap();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::fs::rename(&a, &b).unwrap();
                    std::fs::rename(&b, &a).unwrap();
                }
            })
        };
        let walks = (0..20_000)
            .map(|_| open_in_root(t.root.as_fd(), Path::new("etc/../c/marker"), OFlags::PATH))
            .filter(Result::is_err)
            .count();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        churn.join().unwrap();
        assert_eq!(walks, 0, "walks failed while renames ran");
    }

    #[test]
    fn touch_makes_a_file_inside() {
        let t = Tree::new("touch");
        let fd = touch_in_root(t.root.as_fd(), Path::new("/a/new/file"), 0o644).unwrap();
        assert_eq!(
            ino(&fd),
            std::fs::metadata(t.inside.join("new/file")).unwrap().ino()
        );
        assert!(!t.outside.join("new").exists(), "created outside the root");
        let again = touch_in_root(t.root.as_fd(), Path::new("/a/marker"), 0o644).unwrap();
        assert_eq!(
            ino(&again),
            std::fs::metadata(t.inside.join("marker")).unwrap().ino()
        );
        assert_eq!(
            std::fs::read_to_string(t.inside.join("marker")).unwrap(),
            "inside"
        );
    }

    #[test]
    fn proc_self_fd_path_names_the_fd() {
        let t = Tree::new("procfd");
        let p = proc_self_fd_path(t.root.as_fd());
        assert_eq!(std::fs::read_link(&p).unwrap(), t.dir);
    }

    fn fd_flags(fd: RawFd) -> Option<i32> {
        // SAFETY: F_GETFD only reads the fd's flags.
        let r = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        (r >= 0).then_some(r)
    }

    fn inheritable(path: &str) -> OwnedFd {
        let fd = rustix::fs::open(path, OFlags::RDONLY, Mode::empty()).unwrap();
        assert_eq!(fd_flags(fd.as_raw_fd()), Some(0));
        fd
    }

    /// In a forked child: marking the whole test process would race the
    /// other tests' fds (one saw its fresh fd turn close-on-exec).
    #[test]
    fn cloexec_marks_all_but_the_kept() {
        let (a, b, c) = (inheritable("/"), inheritable("/"), inheritable("/"));
        let (a, b, c) = (a.as_raw_fd(), b.as_raw_fd(), c.as_raw_fd());
        let code = in_child(|| {
            if cloexec_fds_except(&[b, 1]).is_err() {
                return 10;
            }
            let flags = [fd_flags(a), fd_flags(b), fd_flags(c)];
            if flags == [Some(libc::FD_CLOEXEC), Some(0), Some(libc::FD_CLOEXEC)] {
                0
            } else {
                11
            }
        });
        assert_eq!(code, 0);
    }

    /// Runs `f` in a forked child; its exit status is f's result.
    fn in_child(f: impl FnOnce() -> i32) -> i32 {
        // SAFETY: the child only makes syscalls (and small allocations,
        // fork-safe with glibc's malloc) and leaves with _exit.
        // libc: rustix's fork is in its unstable `runtime` module.
        match unsafe { libc::fork() } {
            -1 => panic!("fork: {}", std::io::Error::last_os_error()),
            0 => {
                let code = f();
                // SAFETY: _exit ends the child without running the parent's destructors.
                unsafe { libc::_exit(code) }
            }
            child => {
                let child = rustix::process::Pid::from_raw(child);
                let (_, status) =
                    rustix::process::waitpid(child, rustix::process::WaitOptions::empty())
                        .unwrap()
                        .expect("a status without WNOHANG");
                match status.exit_status() {
                    Some(code) => code,
                    None => panic!("child: {status:?}"),
                }
            }
        }
    }

    #[test]
    fn close_fds_closes_all_but_the_kept() {
        let fds: Vec<OwnedFd> = (0..6).map(|_| inheritable("/")).collect();
        let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
        let kept = raw[2];
        let code = in_child(|| {
            if close_fds_except(&[kept, 1]).is_err() {
                return 10;
            }
            let open: Vec<bool> = (0..=*raw.iter().max().unwrap() + 2)
                .map(|fd| fd_flags(fd).is_some())
                .collect();
            let want = |fd: usize| fd <= 2 || fd as RawFd == kept;
            if open.iter().enumerate().all(|(fd, o)| *o == want(fd)) {
                0
            } else {
                11
            }
        });
        assert_eq!(code, 0);
    }

    #[test]
    fn a_cwd_outside_the_root_is_refused() {
        let t = Tree::new("cwd");
        let outside =
            rustix::fs::open("/", OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
        let dir = t.dir.clone();
        let code = in_child(|| {
            if rustix::process::chroot(&dir).is_err() || rustix::process::chdir("/etc").is_err() {
                return 10;
            }
            if check_cwd_inside_root().is_err() {
                return 11;
            }
            // The CVE-2024-21626 shape: a cwd through a leaked host fd.
            if rustix::process::fchdir(&outside).is_err() {
                return 12;
            }
            match check_cwd_inside_root() {
                Err(e) if e.to_string().contains("outside the container's root") => 0,
                _ => 13,
            }
        });
        assert_eq!(code, 0);
    }
}
