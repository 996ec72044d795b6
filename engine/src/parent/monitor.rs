//! A detached container's monitor (conmon's role for podman): a small
//! process of the engine's own binary, exec'd afresh so that it holds
//! little memory, that is the supervisor's parent and a subreaper. It
//! writes the container's log from the pipe the supervisor hands the
//! container, and outlives the supervisor: should the supervisor be killed
//! once the container has started (the record then names the monitor),
//! PID 1 is reparented to the monitor, which reaps it and does the
//! supervisor's teardown, keeping the exit status in the record; then,
//! as the supervisor would have, applies the container's `--restart`
//! policy (`engine __restart`, exec'd in its place, runs it again).

use super::lifecycle::{BACKOFF_FIRST, BACKOFF_RESET_AFTER};
use super::record::Record;
use super::{lifecycle, recovery};
use crate::model::exit;
use crate::model::spec::RestartPolicy;
use crate::sys::idlease::Leases;
use crate::sys::state::{self, StateDir};
use rustix::process::WaitOptions;
use std::ffi::OsString;
use std::fs::File;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;

/// The hidden first argument that makes the binary a monitor.
pub const VERB: &str = "__monitor";

/// The hidden verb that runs an exited container again by its policy
/// (`engine __restart STATE_DIR DATA_DIR NAME`, lib.rs `run_as_restart`).
pub const RESTART_VERB: &str = "__restart";

/// What the monitor is told on its command line.
pub struct Args {
    pub log: PathBuf,
    /// The log's cap in bytes (NAME.log and NAME.log.1 together).
    pub log_max: u64,
    pub supervisor: i32,
    pub state_dir: PathBuf,
    /// Where a kept container's record is (`sys::state`).
    pub data_dir: PathBuf,
    pub name: String,
}

/// Replaces this (forked) process with a fresh monitor; the log pipe's
/// read end must be on stdin. Returns only if exec failed.
pub fn exec(args: &Args) -> std::io::Error {
    std::process::Command::new("/proc/self/exe")
        .arg0("engine")
        .arg(VERB)
        .arg(&args.log)
        .arg(args.log_max.to_string())
        .arg(args.supervisor.to_string())
        .arg(&args.state_dir)
        .arg(&args.data_dir)
        .arg(&args.name)
        .exec()
}

/// The monitor's arguments, when the binary was started as one.
pub fn parse(argv: &[OsString]) -> Option<Args> {
    let [_, verb, log, max, supervisor, state_dir, data_dir, name] = argv else {
        return None;
    };
    if verb != VERB {
        return None;
    }
    Some(Args {
        log: log.into(),
        log_max: max.to_str()?.parse().ok()?,
        supervisor: supervisor.to_str()?.parse().ok()?,
        state_dir: state_dir.into(),
        data_dir: data_dir.into(),
        name: name.to_str()?.to_string(),
    })
}

/// The monitor: relays stdin (the log pipe) to the log until every writer
/// is gone, then reaps its children; if the supervisor was killed, does its
/// teardown. Returns the monitor's exit code.
pub fn run(args: &Args) -> i32 {
    let _ = rustix::thread::set_name(c"engine-monitor");
    let stdin = File::from(
        rustix::io::dup(rustix::stdio::stdin()).unwrap_or_else(|_| std::process::exit(1)),
    );
    let mut buf = Vec::with_capacity(1 << 16);
    let _ = File::open("/proc/self/smaps").and_then(|mut f| f.read_to_end(&mut buf));
    drop_clean_file_pages(&String::from_utf8_lossy(&buf));
    drop(buf);
    super::log::relay_log(stdin, &args.log, args.log_max);
    let mut supervisor_killed = false;
    let mut reaped = Vec::new();
    loop {
        // wait(2): any child (waitpid(None) is our process group only).
        match rustix::process::wait(WaitOptions::empty()) {
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => break,
            Ok(Some((pid, status))) => {
                let code = status
                    .exit_status()
                    .or(status.terminating_signal().map(|s| 128 + s));
                if pid.as_raw_pid() == args.supervisor {
                    supervisor_killed = status.terminating_signal().is_some();
                } else if let Some(code) = code {
                    reaped.push((pid.as_raw_pid(), code));
                }
            }
            Ok(None) => {}
        }
    }
    if supervisor_killed {
        let state = StateDir::new(&args.state_dir, &args.data_dir);
        match finish(&state, &args.name, &reaped) {
            Some(exited) => restart_by_policy(&state, args, &exited),
            None => {
                // Killed in its back-off: the restart it had scheduled.
                let me = std::process::id() as i32;
                if let Some(rec) = state
                    .read::<Record>(&args.name)
                    .filter(|r| r.engine_pid == me && r.exited() && r.restarting)
                {
                    run_again(args, backoff(&rec, rec.restart_count.saturating_sub(1)));
                }
            }
        }
    }
    0
}

/// The killed supervisor's `--restart` loop, one turn: if the policy runs
/// the exited container again (and no `stop` or `rm` came), after the
/// supervisor's back-off this process becomes `engine __restart`, which
/// runs it as `engine start` does, under a new monitor and supervisor.
/// Returns if it is not run again.
fn restart_by_policy(state: &StateDir, args: &Args, exited: &Record) {
    let policy = exited
        .input
        .as_ref()
        .and_then(|i| i.restart_policy.as_deref())
        .and_then(RestartPolicy::parse);
    let (Some(policy), Some(code)) = (policy, exited.exit_code) else {
        return;
    };
    if lifecycle::schedule_restart(state, &args.name, policy, code) {
        run_again(args, backoff(exited, exited.restart_count));
    }
}

/// The supervisor's back-off before restart number `earlier` + 1 of the
/// `exited` run: doubled with each restart, the first again after a run
/// of 10 s.
fn backoff(exited: &Record, earlier: u32) -> std::time::Duration {
    let ran = exited
        .finished
        .zip(exited.started)
        .map_or(0, |(end, start)| end.saturating_sub(start));
    if ran >= BACKOFF_RESET_AFTER.as_secs() {
        BACKOFF_FIRST
    } else {
        BACKOFF_FIRST * (1 << earlier.min(10))
    }
}

/// After `backoff`, becomes `engine __restart`; returns only if that
/// cannot be exec'd.
fn run_again(args: &Args, backoff: std::time::Duration) {
    std::thread::sleep(backoff);
    // The restart's errors go where its supervisor's would: the log.
    if let Ok(log) = File::options().append(true).open(&args.log) {
        let _ = rustix::stdio::dup2_stderr(&log);
    }
    // `__restart` checks the stop mark again, under the state lock.
    let err = std::process::Command::new("/proc/self/exe")
        .arg0("engine")
        .arg(RESTART_VERB)
        .arg(&args.state_dir)
        .arg(&args.data_dir)
        .arg(&args.name)
        .exec();
    eprintln!("engine: cannot run {} again: {err}", args.name);
}

/// Gives back the pages of the binary and its libraries that loading
/// and starting touched: they stay in the page cache, and the few the
/// monitor runs fault back in. Only mappings that are read-only and hold
/// no anonymous (copied, e.g. relocated) page: those are the file's own
/// content, so dropping them changes nothing but the resident size.
fn drop_clean_file_pages(smaps: &str) {
    // (start, end, read-only file mapping, has anonymous pages)
    let mut mappings: Vec<(usize, usize, bool, bool)> = Vec::new();
    for line in smaps.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or("");
        let range = first.split_once('-').and_then(|(a, b)| {
            Some((
                usize::from_str_radix(a, 16).ok()?,
                usize::from_str_radix(b, 16).ok()?,
            ))
        });
        if let Some((start, end)) = range {
            let perms = words.next().unwrap_or("");
            let path = words.nth(3).unwrap_or("");
            let read_only = perms.starts_with("r-") && path.starts_with('/');
            mappings.push((start, end, read_only, false));
        } else if first == "Anonymous:" {
            if let Some(last) = mappings.last_mut() {
                last.3 = words.next().is_some_and(|kb| kb != "0");
            }
        }
    }
    // All at the end: the parsing above faults code back in.
    for (start, end, read_only, anonymous) in mappings {
        if read_only && !anonymous {
            // SAFETY: a read-only private file mapping with no page of its
            // own (no COW copy): what MADV_DONTNEED drops is faulted back
            // unchanged from the file on the next access.
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
        }
    }
}

/// The killed supervisor's teardown, if the record names this monitor
/// (the container had started): everything it held is released (its line
/// leaves its peers' /etc/hosts), and a
/// kept container's record becomes an exited one with the status of its
/// PID 1 (125 if the supervisor had reaped it before it died), returned.
fn finish(state: &StateDir, name: &str, reaped: &[(i32, i32)]) -> Option<Record> {
    let Ok(_lock) = state.lock() else {
        return None;
    };
    let me = std::process::id() as i32;
    let Some(rec) = state
        .read::<Record>(name)
        .filter(|r| r.engine_pid == me && !r.exited())
    else {
        // Killed between handing the ID lease to us and writing the
        // record: the record's recovery kills the container, the lease is
        // ours to give back.
        let leases = Leases::host();
        for (file, lease) in leases.of_state_dir(&state.dir) {
            if lease.is_some_and(|l| l.name == name && l.engine.is_some_and(|p| p.pid == me)) {
                let _ = std::fs::remove_file(file);
            }
        }
        return None;
    };
    let code = reaped
        .iter()
        .find(|(pid, _)| *pid == rec.pid)
        .map_or(exit::ENGINE_ERROR, |(_, code)| *code);
    // PID 1 is reaped (or was, by the supervisor): nothing to kill but
    // what its cgroup may still hold.
    recovery::release_held(
        state,
        &Record {
            pid: 0,
            ..rec.clone()
        },
    );
    Leases::host().remove(&state.dir, name);
    if rec.ip.is_some() {
        super::hosts::refresh_peers(state, Some(name));
    }
    if rec.keep {
        let exited = rec.into_exited(code, state::now_secs());
        state.write(name, &exited).ok().map(|()| exited)
    } else {
        state.remove(name);
        None
    }
}
