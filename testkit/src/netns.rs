//! Private network namespaces for tests and benches. Network namespaces are
//! per thread: after [`enter_private`] the calling thread, and every process
//! it spawns from then on, lives in a namespace of its own, so bridges, veths
//! and packets made there never reach the machine's own namespace.

use std::io;
use std::os::unix::fs::MetadataExt;

/// The inode of the calling thread's network namespace.
pub fn thread_inode() -> io::Result<u64> {
    inode_of("/proc/thread-self/ns/net")
}

/// The inode of a network namespace file such as `/proc/PID/ns/net`.
pub fn inode_of(path: &str) -> io::Result<u64> {
    std::fs::metadata(path)
        .map(|m| m.ino())
        .map_err(|e| io::Error::new(e.kind(), format!("cannot stat {path}: {e}")))
}

/// `net.ipv4.ip_forward` of the calling thread's network namespace ("0" or
/// "1").
pub fn forwarding() -> String {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
        .expect("read /proc/sys/net/ipv4/ip_forward")
        .trim()
        .to_string()
}

/// Moves the calling thread into a new network namespace and proves it did:
/// the namespace inode before and after must differ. Returns (before, after).
/// An error means the thread may still be in its original namespace: make
/// nothing network-related after one.
pub fn enter_private() -> io::Result<(u64, u64)> {
    let before = thread_inode()?;
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
        io::Error::other(format!(
            "cannot create a private network namespace: unshare(CLONE_NEWNET): {e} (run as root)"
        ))
    })?;
    let after = thread_inode()?;
    if before == after {
        return Err(io::Error::other(format!(
            "unshare(CLONE_NEWNET) left the thread in net:[{before}]: refusing to go on"
        )));
    }
    Ok((before, after))
}

/// [`enter_private`], panicking on failure: for tests.
pub fn enter_private_or_panic() -> (u64, u64) {
    enter_private().unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `f` on a new thread that first entered a private network namespace;
/// a panic in `f` is passed on to the caller.
pub fn in_private<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        enter_private_or_panic();
        f()
    })
    .join()
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}
