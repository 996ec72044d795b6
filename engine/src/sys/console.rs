//! The console socket of the OCI runtime interface: a pty master handed
//! to the caller (conmon, containerd's shim) over SCM_RIGHTS.

use std::os::fd::{AsRawFd, BorrowedFd};

/// Sends `master` on the connected `sock`, its name as the data (as runc
/// does).
pub fn send_master(sock: BorrowedFd, master: BorrowedFd, name: &[u8]) -> nix::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let raw = [master.as_raw_fd()];
    let iov = [std::io::IoSlice::new(name)];
    sendmsg::<()>(
        sock.as_raw_fd(),
        &iov,
        &[ControlMessage::ScmRights(&raw)],
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .map(drop)
}
