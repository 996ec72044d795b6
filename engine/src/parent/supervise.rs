//! The supervisor's loop: forward signals to PID 1 through its pidfd, relay
//! the pty, wait, and turn the end into docker's exit code.

use super::tty::{copy_size, read_some, write_all, RawTerminal};
use anyhow::{bail, Context, Result};
use rustix::process::{Pid, Signal};
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// Signals the supervisor passes on to the container's PID 1.
pub const FORWARDED: [Signal; 7] = [
    Signal::INT,
    Signal::TERM,
    Signal::HUP,
    Signal::QUIT,
    Signal::USR1,
    Signal::USR2,
    Signal::WINCH,
];

/// A signal set for sigprocmask(2) and signalfd(2), which rustix has no
/// safe calls for.
#[derive(Clone, Copy)]
pub struct SigSet(libc::sigset_t);

impl SigSet {
    fn empty() -> SigSet {
        let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: sigemptyset initializes the whole set it is given.
        unsafe {
            libc::sigemptyset(set.as_mut_ptr());
            SigSet(set.assume_init())
        }
    }

    fn add(&mut self, sig: Signal) {
        // SAFETY: an initialized set and a valid signal number.
        unsafe { libc::sigaddset(&mut self.0, sig.as_raw()) };
    }
}

pub struct RestoreMask(SigSet);

/// Blocks the forwarded signals (they are read from a signalfd); the old
/// mask comes back when the guard drops.
pub fn block_forwarded() -> Result<(SigSet, RestoreMask)> {
    let mut forwarded = SigSet::empty();
    for s in FORWARDED {
        forwarded.add(s);
    }
    let mut old_mask = SigSet::empty();
    // SAFETY: both sets are initialized; sigprocmask reads one, writes the other.
    if unsafe { libc::sigprocmask(libc::SIG_BLOCK, &forwarded.0, &mut old_mask.0) } != 0 {
        return Err(std::io::Error::last_os_error()).context("cannot block signals");
    }
    Ok((forwarded, RestoreMask(old_mask)))
}

impl Drop for RestoreMask {
    fn drop(&mut self) {
        // SAFETY: an initialized set; no old mask is asked for.
        let _ = unsafe { libc::sigprocmask(libc::SIG_SETMASK, &self.0 .0, std::ptr::null_mut()) };
    }
}

/// A close-on-exec signalfd for `set`.
fn signalfd(set: &SigSet) -> std::io::Result<OwnedFd> {
    // SAFETY: a new fd (-1) for an initialized set.
    let fd = unsafe { libc::signalfd(-1, &set.0, libc::SFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel handed us this new fd; no one else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The number of the next signal on a signalfd (one signalfd_siginfo,
/// whose first field is ssi_signo), None if none could be read.
fn read_signal(sigfd: &OwnedFd) -> Option<i32> {
    let mut info = [0u8; std::mem::size_of::<libc::signalfd_siginfo>()];
    match rustix::io::read(sigfd, &mut info) {
        Ok(n) if n == info.len() => {
            let signo: [u8; 4] = info[..4].try_into().ok()?;
            Some(u32::from_ne_bytes(signo) as i32)
        }
        _ => None,
    }
}

/// How long a process whose terminal hung up has to end before it is
/// killed (`stop`'s default grace).
const HANGUP_GRACE: Duration = Duration::from_secs(10);

/// Waits for PID 1, forwarding signals and relaying the pty. Returns
/// docker's exit code: the status, or 128+N for signal N.
///
/// When the terminal we relay hangs up (its window closed, ssh dropped),
/// the container's terminal hangs up too, as sshd does it: its master is
/// closed, so its session leader gets SIGHUP and its reads end; a process
/// that has not ended `HANGUP_GRACE` later is killed, so no engine is left
/// with a container and no terminal.
pub fn supervise(
    pid: Pid,
    pidfd: &OwnedFd,
    master: Option<OwnedFd>,
    forwarded: SigSet,
) -> Result<i32> {
    let sigfd = signalfd(&forwarded).context("cannot create signalfd")?;
    let raw = if master.is_some() && rustix::termios::isatty(std::io::stdin()) {
        RawTerminal::enter()
    } else {
        None
    };
    let mut relay = PtyRelay {
        stdin_open: master.is_some(),
        master_open: master.is_some(),
        // In raw mode no key reads as an end: only a hangup does.
        terminal: raw.is_some(),
        hung_up: false,
        master,
        buf: vec![0u8; 16 * 1024],
    };
    let mut kill_at: Option<Instant> = None;
    loop {
        let left = kill_at.map(|at| at.saturating_duration_since(Instant::now()));
        let Some(ready) = relay.poll(pidfd, &sigfd, left)? else {
            continue;
        };
        if ready.signal {
            forward_signal(&sigfd, pidfd, relay.master());
        }
        relay.copy(&ready);
        if ready.child_done {
            break;
        }
        match kill_at {
            None if relay.hung_up => kill_at = Some(Instant::now() + HANGUP_GRACE),
            Some(at) if Instant::now() >= at => {
                send_signal(pidfd, libc::SIGKILL);
                kill_at = Some(Instant::now() + HANGUP_GRACE);
            }
            _ => {}
        }
    }
    relay.drain();
    drop(raw);
    super::wait_exit_code(pid)
        .map_err(std::io::Error::from)
        .context("waitpid")
}

/// What one poll found ready.
struct Ready {
    child_done: bool,
    signal: bool,
    stdin: bool,
    master: bool,
}

/// Our stdin to the pty master, the master to our stdout, while each is open.
struct PtyRelay {
    master: Option<OwnedFd>,
    stdin_open: bool,
    master_open: bool,
    /// stdin is our terminal, in raw mode.
    terminal: bool,
    /// Our terminal hung up: the master is closed.
    hung_up: bool,
    buf: Vec<u8>,
}

impl PtyRelay {
    fn master(&self) -> Option<BorrowedFd<'_>> {
        self.master.as_ref().map(|m| m.as_fd())
    }

    /// Waits (at most `timeout`) until PID 1 exits, a forwarded signal
    /// comes, or a relayed fd is readable; `None` when a signal
    /// interrupted the wait.
    fn poll(
        &self,
        pidfd: &OwnedFd,
        sigfd: &OwnedFd,
        timeout: Option<Duration>,
    ) -> Result<Option<Ready>> {
        use rustix::event::{poll, PollFd, PollFlags, Timespec};
        let stdin = std::io::stdin();
        let stdin_fd = stdin.as_fd();
        let mut fds = vec![
            PollFd::new(pidfd, PollFlags::IN),
            PollFd::new(sigfd, PollFlags::IN),
        ];
        if self.stdin_open {
            fds.push(PollFd::new(&stdin_fd, PollFlags::IN));
        }
        let master = self.master().filter(|_| self.master_open);
        if let Some(m) = &master {
            fds.push(PollFd::new(m, PollFlags::IN));
        }
        let timeout = timeout.map(|t| Timespec {
            tv_sec: t.as_secs() as _,
            tv_nsec: t.subsec_nanos() as _,
        });
        match poll(&mut fds, timeout.as_ref()) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => return Ok(None),
            Err(e) => bail!("poll: {e}"),
        }
        let ready = |i: usize| fds.get(i).is_some_and(|f| !f.revents().is_empty());
        let master_at = if self.stdin_open { 3 } else { 2 };
        Ok(Some(Ready {
            child_done: ready(0),
            signal: ready(1),
            stdin: self.stdin_open && ready(2),
            master: master.is_some() && ready(master_at),
        }))
    }

    /// One read each way, for what is ready; an end that reads EOF (or
    /// EIO: every slave is closed) is not polled again. Our terminal
    /// reading its end has hung up: the master is closed.
    fn copy(&mut self, ready: &Ready) {
        if ready.stdin {
            let n = read_some(std::io::stdin().as_fd(), &mut self.buf);
            if n <= 0 {
                self.stdin_open = false;
                if self.terminal {
                    self.hung_up = true;
                    self.master_open = false;
                    self.master = None;
                }
            } else if let Some(m) = &self.master {
                write_all(m.as_fd(), &self.buf[..n as usize]);
            }
        }
        if ready.master {
            let n = match &self.master {
                Some(m) => read_some(m.as_fd(), &mut self.buf),
                None => -1,
            };
            if n <= 0 {
                self.master_open = false;
            } else {
                write_all(std::io::stdout().as_fd(), &self.buf[..n as usize]);
            }
        }
    }

    /// What the container wrote before it exited.
    fn drain(&mut self) {
        let Some(m) = self.master.as_ref().filter(|_| self.master_open) else {
            return;
        };
        let m = m.as_fd();
        let _ = rustix::fs::fcntl_setfl(m, rustix::fs::OFlags::NONBLOCK);
        loop {
            let n = read_some(m, &mut self.buf);
            if n <= 0 {
                break;
            }
            write_all(std::io::stdout().as_fd(), &self.buf[..n as usize]);
        }
    }
}

/// A forwarded signal, read from the signalfd, to PID 1; a window change
/// is copied to the pty first.
fn forward_signal(sigfd: &OwnedFd, pidfd: &OwnedFd, master: Option<BorrowedFd>) {
    if let Some(sig) = read_signal(sigfd) {
        if sig == libc::SIGWINCH {
            if let Some(m) = master {
                copy_size(m);
            }
        }
        send_signal(pidfd, sig);
    }
}

/// Signals through the pidfd: never a recycled pid.
fn send_signal(pidfd: &OwnedFd, sig: i32) {
    if let Some(sig) = rustix::process::Signal::from_named_raw(sig) {
        let _ = rustix::process::pidfd_send_signal(pidfd, sig);
    }
}
