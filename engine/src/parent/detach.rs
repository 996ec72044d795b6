//! `engine run -d`: a monitor (parent/monitor.rs) in a new session, and
//! under it the supervisor, which runs the container with its output going
//! through the monitor into its log.

use super::lifecycle::{BACKOFF_FIRST, BACKOFF_RESET_AFTER};
use super::run::{run_with, Monitor};
use super::{lifecycle, monitor, pipe, Error};
use crate::model::config::Config;
use crate::model::exit;
use crate::model::spec::Spec;
use crate::sys::failpoint::step;
use crate::sys::state::StateDir;
use anyhow::{anyhow, Context};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::Instant;

/// `engine run -d`: forks the monitor, which forks the supervisor that runs
/// the container; we return once PID 1 has exec'd, or with its error.
///
/// `marker`, an image's in-use marker (`image::inuse`), stays open in the
/// monitor, whose flock then pins the image's layers for as long as the
/// container runs, even if the supervisor is killed.
pub fn run_detached(
    spec: &Spec,
    cfg: &Config,
    marker: Option<BorrowedFd<'_>>,
) -> Result<(), Error> {
    step!("detach.notify_pipe");
    let (notify_read, notify_write) = pipe()?;
    step!("detach.log_pipe");
    let (log_read, log_write) = pipe()?;
    step!("detach.fork");
    // SAFETY: single-threaded; the child only calls async-signal-safe code
    // until it proceeds like a fresh engine process.
    match unsafe { super::fork() }.context("cannot fork the monitor")? {
        None => {
            drop(notify_read);
            monitor_and_supervisor(spec, cfg, notify_write, log_read, log_write, marker)
        }
        Some(_) => {
            drop((notify_write, log_read, log_write));
            let mut reply = String::new();
            let _ = File::from(notify_read).read_to_string(&mut reply);
            if reply == "S" {
                return Ok(());
            }
            let Some(rest) = reply.strip_prefix('E') else {
                return Err(anyhow!(
                    "the supervisor of {} died before the container started: run it again without -d to see why",
                    spec.name
                )
                .into());
            };
            let (code, msg) = rest.split_once(' ').unwrap_or(("125", rest));
            Err(Error::Child {
                code: code.parse().unwrap_or(exit::ENGINE_ERROR),
                message: msg.to_string(),
            })
        }
    }
}

/// In the forked child: it becomes the monitor, a subreaper in a session
/// of its own, after forking the supervisor. Never returns.
fn monitor_and_supervisor(
    spec: &Spec,
    cfg: &Config,
    notify_write: OwnedFd,
    log_read: OwnedFd,
    log_write: OwnedFd,
    marker: Option<BorrowedFd<'_>>,
) -> ! {
    let _ = rustix::process::setsid();
    // SAFETY: prctl with an int argument; it only sets a flag of ours.
    // Should the supervisor die, PID 1 is reparented to us, not to init.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let monitor_pid = std::process::id() as i32;
    // SAFETY: single-threaded, as above.
    match unsafe { super::fork() } {
        Ok(None) => {
            drop(log_read);
            supervise(spec, cfg, monitor_pid, log_write, notify_write)
        }
        Ok(Some(supervisor)) => {
            drop((log_write, notify_write));
            let args = monitor::Args {
                log: StateDir::new(&cfg.state_dir, &cfg.data_dir).log_of(&spec.name, !spec.rm),
                log_max: spec.log_size_max,
                supervisor,
                state_dir: cfg.state_dir.clone(),
                data_dir: cfg.data_dir.clone(),
                name: spec.name.clone(),
            };
            // stdin is the log pipe; nothing else of the engine's stays open.
            let null = File::options().read(true).write(true).open("/dev/null");
            let _ = rustix::stdio::dup2_stdin(&log_read);
            if let Ok(null) = &null {
                let _ = rustix::stdio::dup2_stdout(null);
                let _ = rustix::stdio::dup2_stderr(null);
            }
            let marker_fd = marker.map(|fd| fd.as_raw_fd());
            let keep: Vec<RawFd> = [0, 1, 2].into_iter().chain(marker_fd).collect();
            let _ = crate::sys::openat::close_fds_except(&keep);
            if let Some(fd) = marker {
                // Across the exec: the monitor holds the image's flock.
                let _ = rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty());
            }
            // A fresh image of the binary holds little memory; should the
            // exec fail, this process monitors as it is.
            let _ = monitor::exec(&args);
            std::process::exit(monitor::run(&args))
        }
        Err(e) => {
            let _ = write!(
                File::from(notify_write),
                "E{} cannot fork the supervisor: {e}",
                exit::ENGINE_ERROR
            );
            std::process::exit(exit::ENGINE_ERROR)
        }
    }
}

/// The supervisor: runs the container and reports its start (or its
/// failure) on the notify pipe; with a restart policy, runs it again when
/// it ends, as its policy says. Never returns.
fn supervise(
    spec: &Spec,
    cfg: &Config,
    monitor_pid: i32,
    log_write: OwnedFd,
    notify_write: OwnedFd,
) -> ! {
    let mut notify = Some(File::from(notify_write));
    let mut spec = spec.clone();
    let state = StateDir::new(&cfg.state_dir, &cfg.data_dir);
    let mut backoff = BACKOFF_FIRST;
    loop {
        let began = Instant::now();
        let result = match log_write.try_clone() {
            Ok(log) => {
                let monitor = Monitor {
                    pid: monitor_pid,
                    log,
                };
                run_with(&spec, cfg, Some(monitor), |_| {
                    if let Some(mut n) = notify.take() {
                        let _ = n.write_all(b"S");
                    }
                })
            }
            Err(e) => Err(anyhow!("cannot pass on the log pipe: {e}").into()),
        };
        let code = match result {
            Ok(code) => code,
            Err(err) => {
                let code = match &err {
                    Error::Child { code, .. } => *code,
                    _ => exit::ENGINE_ERROR,
                };
                // The whole chain, as the engine prints it.
                let message = format!("{:#}", anyhow::Error::from(err));
                match notify.take() {
                    Some(mut n) => {
                        let _ = write!(n, "E{code} {message}");
                    }
                    // A restart that failed: its log says why.
                    None => eprintln!("engine: {message}"),
                }
                std::process::exit(code)
            }
        };
        let policy = spec.restart_policy;
        if !lifecycle::schedule_restart(&state, &spec.name, policy, code) {
            std::process::exit(code)
        }
        if began.elapsed() >= BACKOFF_RESET_AFTER {
            backoff = BACKOFF_FIRST;
        }
        std::thread::sleep(backoff);
        backoff *= 2;
        // Stopped or removed meanwhile: quietly done (`run_with` checks
        // again under the lock).
        if state.stopped_mark_of(&spec.name).exists() || !state.has_record(&spec.name) {
            std::process::exit(code)
        }
        // As `engine start`: the kept record's name, the log goes on.
        spec.restart = true;
    }
}
