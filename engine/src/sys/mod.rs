//! Host facilities, each a leaf: arch (ELF), caps, cgroup, state (persistence
//! only), lock, net, path (in-root resolution by path), and the confinement
//! primitives idrange (host ID ranges), idlease (their host-wide leases), idmap (detached and idmapped mounts,
//! fd passing) and openat (paths resolved inside the rootfs on fds, fd hygiene), seccomp (filters compiled to BPF),
//! devices (the cgroup v2 device filter, eBPF), hook (runs one OCI hook);
//! failpoint (the failpoints of every step, with the `failpoints` feature only).
pub mod arch;
pub mod caps;
pub mod cgroup;
pub mod console;
pub mod devices;
pub mod failpoint;
pub mod hook;
pub mod idlease;
pub mod idmap;
pub mod idrange;
pub mod lock;
pub mod net;
pub mod openat;
pub mod path;
pub mod random;
pub mod seccomp;
pub mod state;

/// execve's argv or envp: pointers to `strings`, then NULL. The strings
/// must outlive the array.
pub fn c_pointers(strings: &[std::ffi::CString]) -> Vec<*const libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// The C library's description of `errno` ("No such file or directory"),
/// without std's " (os error N)": the text error sentences end with.
pub fn errno_desc(errno: rustix::io::Errno) -> String {
    let text = std::io::Error::from_raw_os_error(errno.raw_os_error()).to_string();
    match text.rfind(" (os error ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use rustix::io::Errno;

    /// The text error sentences ended with under nix (`Errno::desc`), for
    /// the errnos users meet; no " (os error N)" of std's.
    #[test]
    fn errno_desc_is_the_c_library_text() {
        assert_eq!(super::errno_desc(Errno::NOENT), "No such file or directory");
        assert_eq!(super::errno_desc(Errno::ACCESS), "Permission denied");
        assert_eq!(super::errno_desc(Errno::PERM), "Operation not permitted");
        assert_eq!(
            super::errno_desc(Errno::ADDRINUSE),
            "Address already in use"
        );
    }
}
