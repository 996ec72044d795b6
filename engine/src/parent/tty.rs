//! The container's pseudo-terminal: open it sized like ours, raw mode for
//! our terminal, and the byte relay between them; for the OCI verbs, the
//! console socket its master is sent to.

use anyhow::{anyhow, Context, Result};
use rustix::termios::{self, OptionalActions, Termios, Winsize};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

pub struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
    pub slave_path: PathBuf,
}

/// A pty for the container, sized like our terminal: what openpty(3)
/// does (ptmx, unlock, size, the peer), with close-on-exec on both ends:
/// the master must never reach the container (its holder could type into
/// the container's terminal), and the child hands the slave on as fds 0-2
/// itself.
pub fn open_pty() -> Result<Pty> {
    use rustix::pty::OpenptFlags;
    let flags = OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC;
    let master = rustix::pty::openpt(flags)
        .and_then(|master| rustix::pty::unlockpt(&master).map(|()| master))
        .and_then(|master| match terminal_size() {
            Some(ws) => rustix::termios::tcsetwinsize(&master, ws).map(|()| master),
            None => Ok(master),
        })
        .map_err(std::io::Error::from)
        .context("cannot open a pseudo-terminal")?;
    let slave = rustix::pty::ioctl_tiocgptpeer(&master, flags)
        .map_err(std::io::Error::from)
        .context("cannot open a pseudo-terminal")?;
    let slave_path = std::fs::read_link(format!("/proc/self/fd/{}", slave.as_raw_fd()))
        .context("cannot find the pty's path")?;
    Ok(Pty {
        master,
        slave,
        slave_path,
    })
}

/// A pty of the devpts at /dev/pts in the root of process `pid`, sized like
/// our terminal: an OCI exec's terminal, as runc makes it (`tty` inside
/// names the container's own /dev/pts/N). The container, running, may
/// have planted anything there: the node is found without leaving its root
/// or following magic links, held as an O_PATH fd, and opened only once it
/// is the ptmx of a devpts (no fifo to block on, no disk to open).
pub fn open_pty_in_root_of(pid: i32) -> Result<Pty> {
    use crate::sys::console::{check_ptmx, new_pty, PtyError};
    use rustix::fs::{Mode, OFlags};
    let root = rustix::fs::open(
        format!("/proc/{pid}/root"),
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .context("cannot open the container's root")?;
    let node = crate::sys::openat::open_in_root(
        root.as_fd(),
        std::path::Path::new("/dev/pts/ptmx"),
        OFlags::PATH | OFlags::NOFOLLOW,
    )
    .context("cannot find the container's /dev/pts/ptmx")?;
    let made = check_ptmx(node.as_fd()).and_then(|()| {
        let master = rustix::fs::open(
            crate::sys::openat::proc_self_fd_path(node.as_fd()),
            OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|errno| PtyError::Sys {
            what: "open ptmx",
            errno,
        })?;
        new_pty(master, terminal_size().map(|ws| (ws.ws_row, ws.ws_col)))
    });
    let pty = match made {
        Ok(pty) => pty,
        Err(PtyError::NotPtmx) => anyhow::bail!(
            "the container's /dev/pts/ptmx is not the ptmx of a devpts: cannot make a terminal there"
        ),
        Err(e) => return Err(anyhow::anyhow!("the container's /dev/pts/ptmx: {e}")),
    };
    Ok(Pty {
        master: pty.master,
        slave: pty.slave,
        slave_path: PathBuf::from(pty.name),
    })
}

/// The size of our terminal (stdin), if it is one.
pub fn terminal_size() -> Option<Winsize> {
    rustix::termios::tcgetwinsize(std::io::stdin()).ok()
}

/// Gives the container's pty our terminal's size.
pub fn copy_size(master: BorrowedFd) {
    if let Ok(ws) = rustix::termios::tcgetwinsize(std::io::stdin()) {
        let _ = rustix::termios::tcsetwinsize(master, ws);
    }
}

/// Puts our terminal in raw mode, so keys go to the container's pty as typed;
/// restores it on drop.
pub struct RawTerminal(Termios);

impl RawTerminal {
    pub fn enter() -> Option<RawTerminal> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = saved.clone();
        raw.make_raw();
        termios::tcsetattr(stdin.as_fd(), OptionalActions::Now, &raw).ok()?;
        Some(RawTerminal(saved))
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), OptionalActions::Drain, &self.0);
    }
}

/// Writes all of `buf`; false when `fd` is gone.
pub fn write_all(fd: BorrowedFd, mut buf: &[u8]) -> bool {
    while !buf.is_empty() {
        match rustix::io::write(fd, buf) {
            Ok(n) => buf = &buf[n..],
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return false,
        }
    }
    true
}

/// What one read returns: bytes read, 0 at the end, negative on error.
pub fn read_some(fd: BorrowedFd, buf: &mut [u8]) -> isize {
    loop {
        match rustix::io::read(fd, &mut *buf) {
            Ok(n) => return n as isize,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return -1,
        }
    }
}

/// Connects to an OCI console socket (stream or seqpacket, as the caller made it).
pub fn connect_console(path: &Path) -> Result<OwnedFd> {
    use crate::sys::errno_desc as strerror;
    use rustix::io::Errno;
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let addr = SocketAddrUnix::new(path).map_err(|e| {
        // The sentence nix's error gave: the errno's name, then its text.
        let name = match e {
            Errno::NAMETOOLONG => "ENAMETOOLONG: ",
            Errno::INVAL => "EINVAL: ",
            _ => "",
        };
        anyhow!(
            "invalid --console-socket {}: {name}{}",
            path.display(),
            strerror(e)
        )
    })?;
    let mut last = None;
    for ty in [SocketType::STREAM, SocketType::SEQPACKET] {
        let sock = rustix::net::socket_with(AddressFamily::UNIX, ty, SocketFlags::CLOEXEC, None)
            .map_err(std::io::Error::from)
            .context("cannot create a socket for the console")?;
        match rustix::net::connect(&sock, &addr) {
            Ok(()) => return Ok(sock),
            Err(Errno::PROTOTYPE) => last = Some(Errno::PROTOTYPE),
            Err(e) => {
                return Err(anyhow!(
                    "cannot connect to --console-socket {}: {}",
                    path.display(),
                    strerror(e)
                ))
            }
        }
    }
    Err(anyhow!(
        "cannot connect to --console-socket {}: {}",
        path.display(),
        last.map_or_else(|| "unknown".to_string(), strerror)
    ))
}

/// The pty master over SCM_RIGHTS, its name as the data (as runc sends it).
pub fn send_console(sock: &OwnedFd, master: &OwnedFd, name: &Path) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    crate::sys::console::send_master(sock.as_fd(), master.as_fd(), name.as_os_str().as_bytes())
        .map_err(|e| {
            anyhow!(
                "cannot send the pty to the console socket: {}",
                crate::sys::errno_desc(e)
            )
        })
}
