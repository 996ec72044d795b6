//! process.terminal of an OCI container, as runc does it: after pivot_root
//! the init opens a pty of the container's own devpts (so `tty` names
//! /dev/pts/N, not a node of the host's devpts), sizes it, binds the slave
//! on /dev/console, and sends the master to the caller's console socket.

use super::{fail, Console, Step};
use rustix::fs::{Mode, OFlags};
use std::os::fd::{AsFd, OwnedFd};

/// The slave, for the process's stdio.
pub(super) fn open(console: Console) -> Step<OwnedFd> {
    // /dev is the engine's nodev tmpfs and no process of the container
    // runs yet: the path leads to our devpts, and the check says so.
    let master = rustix::fs::open(
        "/dev/pts/ptmx",
        OFlags::RDWR | OFlags::NOCTTY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| fail(format!("cannot open /dev/pts/ptmx for the terminal: {e}")))?;
    let pty = crate::sys::console::check_ptmx(master.as_fd())
        .and_then(|()| crate::sys::console::new_pty(master, console.size))
        .map_err(|e| fail(format!("process.terminal: /dev/pts/ptmx {e}")))?;
    rustix::mount::mount_bind(
        crate::sys::openat::proc_self_fd_path(pty.slave.as_fd()),
        "/dev/console",
    )
    .map_err(|e| fail(format!("cannot bind {} on /dev/console: {e}", pty.name)))?;
    crate::sys::console::send_master(console.socket, pty.master.as_fd(), pty.name.as_bytes())
        .map_err(|e| fail(format!("cannot send the pty to the console socket: {e}")))?;
    Ok(pty.slave)
}
