//! process.terminal of an OCI container, as runc does it: after pivot_root
//! the init opens a pty of the container's own devpts (so `tty` names
//! /dev/pts/N, not a node of the host's devpts), sizes it, binds the slave
//! on /dev/console, and sends the master to the caller's console socket.

use super::{fail, Console, Step};
use nix::mount::{mount, MsFlags};
use rustix::fs::{Mode, OFlags};
use rustix::pty::OpenptFlags;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// The slave, for the process's stdio.
pub(super) fn open(console: Console) -> Step<OwnedFd> {
    // /dev is the engine's tmpfs and no process of the container runs yet:
    // the path leads to our devpts (a non-pty fails unlockpt below).
    let master = rustix::fs::open(
        "/dev/pts/ptmx",
        OFlags::RDWR | OFlags::NOCTTY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| fail(format!("cannot open /dev/pts/ptmx for the terminal: {e}")))?;
    rustix::pty::unlockpt(&master).map_err(|e| fail(format!("cannot unlock the pty: {e}")))?;
    if let Some((rows, cols)) = console.size {
        let ws = rustix::termios::Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        rustix::termios::tcsetwinsize(&master, ws)
            .map_err(|e| fail(format!("cannot set process.consoleSize {rows}x{cols}: {e}")))?;
    }
    let slave = rustix::pty::ioctl_tiocgptpeer(
        &master,
        OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC,
    )
    .map_err(|e| fail(format!("cannot open the pty's slave: {e}")))?;
    let name = rustix::pty::ptsname(&master, Vec::new())
        .map_err(|e| fail(format!("cannot name the pty: {e}")))?;
    mount(
        Some(&crate::sys::openat::proc_self_fd_path(slave.as_fd())),
        "/dev/console",
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| fail(format!("cannot bind {name:?} on /dev/console: {e}")))?;
    // SAFETY: the socket is the caller's connected console socket, kept
    // open in the child (its `keep` list) until finish_and_exec closes it.
    let socket = unsafe { BorrowedFd::borrow_raw(console.socket) };
    crate::sys::console::send_master(socket, master.as_fd(), name.as_bytes())
        .map_err(|e| fail(format!("cannot send the pty to the console socket: {e}")))?;
    Ok(slave)
}
