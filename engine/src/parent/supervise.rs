//! The supervisor's loop: forward signals to PID 1 through its pidfd, relay
//! the pty, wait, and turn the end into docker's exit code.

use super::tty::{copy_size, read_some, write_all, RawTerminal};
use crate::model::exit;
use anyhow::{bail, Context, Result};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::Pid;
use std::os::fd::{AsFd, OwnedFd};

/// Signals the supervisor passes on to the container's PID 1.
pub const FORWARDED: [Signal; 7] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

pub struct RestoreMask(SigSet);

/// Blocks the forwarded signals (they are read from a signalfd); the old
/// mask comes back when the guard drops.
pub fn block_forwarded() -> Result<(SigSet, RestoreMask)> {
    let mut forwarded = SigSet::empty();
    for s in FORWARDED {
        forwarded.add(s);
    }
    let mut old_mask = SigSet::empty();
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&forwarded), Some(&mut old_mask))
        .context("cannot block signals")?;
    Ok((forwarded, RestoreMask(old_mask)))
}

impl Drop for RestoreMask {
    fn drop(&mut self) {
        let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&self.0), None);
    }
}

/// Waits for PID 1, forwarding signals and relaying the pty. Returns
/// docker's exit code: the status, or 128+N for signal N.
pub fn supervise(
    pid: Pid,
    pidfd: &OwnedFd,
    master: Option<OwnedFd>,
    forwarded: SigSet,
) -> Result<i32> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let sigfd = SignalFd::with_flags(&forwarded, SfdFlags::SFD_CLOEXEC)
        .context("cannot create signalfd")?;
    let _raw = if master.is_some() && nix::unistd::isatty(0).unwrap_or(false) {
        RawTerminal::enter()
    } else {
        None
    };
    let master_fd = master.as_ref().map(|m| m.as_fd());
    let stdout = std::io::stdout();
    let mut stdin_open = master.is_some();
    let mut master_open = master.is_some();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let mut fds = vec![
            PollFd::new(pidfd.as_fd(), PollFlags::POLLIN),
            PollFd::new(sigfd.as_fd(), PollFlags::POLLIN),
        ];
        let stdin = std::io::stdin();
        let master_borrow = master.as_ref().map(|m| m.as_fd());
        if stdin_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        if let (true, Some(m)) = (master_open, master_borrow) {
            fds.push(PollFd::new(m, PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => bail!("poll: {e}"),
        }
        let ready = |i: usize| {
            fds.get(i)
                .and_then(|f| f.revents())
                .is_some_and(|r| !r.is_empty())
        };
        let child_done = ready(0);
        let sig_ready = ready(1);
        let mut idx = 2;
        let stdin_ready = stdin_open && {
            let r = ready(idx);
            idx += 1;
            r
        };
        let master_ready = master_open && ready(idx);
        drop(fds);

        if sig_ready {
            if let Ok(Some(info)) = sigfd.read_signal() {
                let sig = info.ssi_signo as i32;
                if sig == libc::SIGWINCH {
                    if let Some(m) = master_fd {
                        copy_size(m);
                    }
                }
                send_signal(pidfd, sig);
            }
        }
        if stdin_ready {
            let n = read_some(stdin.as_fd(), &mut buf);
            if n <= 0 {
                stdin_open = false;
            } else if let Some(m) = master_fd {
                write_all(m, &buf[..n as usize]);
            }
        }
        if master_ready {
            let n = master_fd.map_or(-1, |m| read_some(m, &mut buf));
            if n <= 0 {
                master_open = false; // EIO: every slave is closed
            } else {
                write_all(stdout.as_fd(), &buf[..n as usize]);
            }
        }
        if child_done {
            break;
        }
    }
    // Drain what the container wrote before it exited.
    if let (true, Some(m)) = (master_open, master_fd) {
        let _ = rustix::fs::fcntl_setfl(m, rustix::fs::OFlags::NONBLOCK);
        loop {
            let n = read_some(m, &mut buf);
            if n <= 0 {
                break;
            }
            write_all(stdout.as_fd(), &buf[..n as usize]);
        }
    }
    let status = loop {
        match nix::sys::wait::waitpid(pid, None) {
            Err(nix::errno::Errno::EINTR) => continue,
            other => break other.context("waitpid")?,
        }
    };
    use nix::sys::wait::WaitStatus;
    Ok(match status {
        WaitStatus::Exited(_, code) => code,
        WaitStatus::Signaled(_, sig, _) => 128 + sig as i32,
        _ => exit::ENGINE_ERROR,
    })
}

/// Signals through the pidfd: never a recycled pid.
fn send_signal(pidfd: &OwnedFd, sig: i32) {
    if let Some(sig) = rustix::process::Signal::from_named_raw(sig) {
        let _ = rustix::process::pidfd_send_signal(pidfd, sig);
    }
}
