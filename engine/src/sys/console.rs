//! The console socket of the OCI runtime interface: a pty master handed
//! to the caller (conmon, containerd's shim) over SCM_RIGHTS.

use std::os::fd::{BorrowedFd, OwnedFd};

/// Sends `master` on the connected `sock`, its name as the data (as runc
/// does).
pub fn send_master(sock: BorrowedFd, master: BorrowedFd, name: &[u8]) -> rustix::io::Result<()> {
    use rustix::net::{sendmsg, SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
    let iov = [std::io::IoSlice::new(name)];
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut cmsg = SendAncillaryBuffer::new(&mut space);
    let fds = [master];
    // One fd always fits the space made for one.
    if !cmsg.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(rustix::io::Errno::NOBUFS);
    }
    sendmsg(sock, &iov, &mut cmsg, SendFlags::NOSIGNAL).map(drop)
}

/// A new pty: the master, its slave and the slave's name (/dev/pts/N as
/// its own devpts numbers it).
pub struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
    pub name: String,
}

/// Why no pty could be made.
#[derive(Debug, thiserror::Error)]
pub enum PtyError {
    #[error("is not the ptmx of a devpts")]
    NotPtmx,
    #[error("cannot {what}: {errno}")]
    Sys {
        what: &'static str,
        errno: rustix::io::Errno,
    },
}

fn sys(what: &'static str) -> impl FnOnce(rustix::io::Errno) -> PtyError {
    move |errno| PtyError::Sys { what, errno }
}

/// Whether `fd` (O_PATH will do) is the ptmx of a devpts, char 5:2: a
/// node a container planted where ptmx was (a fifo, a disk) is not.
pub fn check_ptmx(fd: BorrowedFd) -> Result<(), PtyError> {
    use rustix::fs::{fstat, fstatfs, major, minor, FileType};
    const DEVPTS_SUPER_MAGIC: i64 = 0x1cd1;
    let st = fstat(fd).map_err(sys("stat ptmx"))?;
    // f_type is i64 here and another width on other architectures and libcs.
    #[allow(clippy::unnecessary_cast)]
    let on_devpts = fstatfs(fd).is_ok_and(|f| f.f_type as i64 == DEVPTS_SUPER_MAGIC);
    let is_ptmx = FileType::from_raw_mode(st.st_mode) == FileType::CharacterDevice
        && (major(st.st_rdev), minor(st.st_rdev)) == (5, 2);
    if on_devpts && is_ptmx {
        Ok(())
    } else {
        Err(PtyError::NotPtmx)
    }
}

/// A new pty from an opened ptmx (`master`), sized `(rows, cols)`.
pub fn new_pty(master: OwnedFd, size: Option<(u16, u16)>) -> Result<Pty, PtyError> {
    use rustix::pty::OpenptFlags;
    rustix::pty::unlockpt(&master).map_err(sys("unlock the pty"))?;
    if let Some((rows, cols)) = size {
        let ws = rustix::termios::Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        rustix::termios::tcsetwinsize(&master, ws).map_err(sys("size the pty"))?;
    }
    let slave = rustix::pty::ioctl_tiocgptpeer(
        &master,
        OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC,
    )
    .map_err(sys("open the pty's slave"))?;
    let name = rustix::pty::ptsname(&master, Vec::new()).map_err(sys("name the pty"))?;
    Ok(Pty {
        master,
        slave,
        name: name.to_string_lossy().into_owned(),
    })
}
