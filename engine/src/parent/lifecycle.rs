//! Running containers seen from another terminal: find by name, list with
//! their cgroup figures, follow logs, signal and stop.

use super::record::Record;
use super::recovery::{self, is_alive};
use super::Error;
use crate::model::config::Config;
use crate::sys::cgroup;
use crate::sys::failpoint::step;
use crate::sys::state::{self, StateDir};
use anyhow::{anyhow, Context, Result};
use rustix::process::{Pid, Signal};
use serde::Serialize;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The running container called `name`, or an error listing those that run.
pub fn find(state: &StateDir, cfg: &Config, name: &str) -> Result<Record, Error> {
    let running = {
        let _lock = state.lock()?;
        recovery::recover_stale(state, cfg).running
    };
    if let Some(rec) = running.iter().find(|r| r.name == name && r.pid > 0) {
        return Ok(rec.clone());
    }
    let names: Vec<&str> = running.iter().map(|r| r.name.as_str()).collect();
    let message = if names.is_empty() {
        format!("no such container: {name} (no containers are running)")
    } else {
        format!("no such container: {name} (running: {})", names.join(", "))
    };
    Err(Error::NoSuchContainer(message))
}

/// One row of `engine ps`; its JSON form is the documented, stable format.
#[derive(Debug, Serialize)]
pub struct PsRow {
    pub name: String,
    /// PID 1 of the container, as the host sees it.
    pub pid: i32,
    /// The supervising engine process.
    pub engine_pid: i32,
    pub ip: Option<String>,
    pub rootfs: String,
    pub command: Vec<String>,
    /// Unix time in seconds.
    pub created: u64,
    pub uptime_seconds: u64,
    pub cpus: Option<f64>,
    /// Bytes.
    pub memory_limit: Option<u64>,
    /// Bytes, from the cgroup's memory.current; null without cgroup v2.
    pub memory_usage: Option<u64>,
    pub pids_limit: Option<u64>,
    pub cgroup: Option<String>,
    pub veth: Option<String>,
    pub log: Option<String>,
    /// Published ports, as docker shows them: `0.0.0.0:8080->80/tcp`.
    pub ports: Vec<String>,
}

/// What `engine ps` shows.
pub struct PsReport {
    pub rows: Vec<PsRow>,
    /// State records that could not be read (what they named is released).
    pub corrupt: Vec<PathBuf>,
}

pub fn ps(state: &StateDir, cfg: &Config) -> Result<PsReport, Error> {
    let recovered = {
        let _lock = state.lock()?;
        recovery::recover_stale(state, cfg)
    };
    let now = state::now_secs();
    let rows = recovered
        .running
        .into_iter()
        .filter(|r| r.pid > 0)
        .map(|r| PsRow {
            memory_usage: r
                .cgroup
                .as_ref()
                .and_then(|c| cgroup::read_u64(&c.join("memory.current"))),
            name: r.name,
            pid: r.pid,
            engine_pid: r.engine_pid,
            ip: r.ip.map(|i| i.to_string()),
            rootfs: r.rootfs.display().to_string(),
            command: r.command,
            created: r.created,
            uptime_seconds: now.saturating_sub(r.created),
            cpus: r.cpus,
            memory_limit: r.memory,
            pids_limit: r.pids_limit,
            cgroup: r.cgroup.map(|c| c.display().to_string()),
            veth: r.veth,
            log: r.log.map(|l| l.display().to_string()),
            ports: r.ports.iter().map(|p| p.to_string()).collect(),
        })
        .collect();
    Ok(PsReport {
        rows,
        corrupt: recovered.corrupt,
    })
}

/// The signals `kill` takes, by name and number: Linux's standard ones
/// (no real-time signals).
const SIGNALS: [(libc::c_int, &str); 31] = [
    (libc::SIGHUP, "SIGHUP"),
    (libc::SIGINT, "SIGINT"),
    (libc::SIGQUIT, "SIGQUIT"),
    (libc::SIGILL, "SIGILL"),
    (libc::SIGTRAP, "SIGTRAP"),
    (libc::SIGABRT, "SIGABRT"),
    (libc::SIGBUS, "SIGBUS"),
    (libc::SIGFPE, "SIGFPE"),
    (libc::SIGKILL, "SIGKILL"),
    (libc::SIGUSR1, "SIGUSR1"),
    (libc::SIGSEGV, "SIGSEGV"),
    (libc::SIGUSR2, "SIGUSR2"),
    (libc::SIGPIPE, "SIGPIPE"),
    (libc::SIGALRM, "SIGALRM"),
    (libc::SIGTERM, "SIGTERM"),
    (libc::SIGSTKFLT, "SIGSTKFLT"),
    (libc::SIGCHLD, "SIGCHLD"),
    (libc::SIGCONT, "SIGCONT"),
    (libc::SIGSTOP, "SIGSTOP"),
    (libc::SIGTSTP, "SIGTSTP"),
    (libc::SIGTTIN, "SIGTTIN"),
    (libc::SIGTTOU, "SIGTTOU"),
    (libc::SIGURG, "SIGURG"),
    (libc::SIGXCPU, "SIGXCPU"),
    (libc::SIGXFSZ, "SIGXFSZ"),
    (libc::SIGVTALRM, "SIGVTALRM"),
    (libc::SIGPROF, "SIGPROF"),
    (libc::SIGWINCH, "SIGWINCH"),
    (libc::SIGIO, "SIGIO"),
    (libc::SIGPWR, "SIGPWR"),
    (libc::SIGSYS, "SIGSYS"),
];

/// `SIGTERM` for `Signal::TERM`.
pub fn signal_name(sig: Signal) -> &'static str {
    SIGNALS
        .iter()
        .find(|(n, _)| *n == sig.as_raw())
        .map_or("an unnamed signal", |(_, name)| name)
}

/// `SIGTERM`, `TERM`, `15`.
pub fn parse_signal(s: &str) -> Result<Signal> {
    if let Ok(n) = s.parse::<i32>() {
        return SIGNALS
            .iter()
            .find(|(number, _)| *number == n)
            .and_then(|(number, _)| Signal::from_named_raw(*number))
            .ok_or_else(|| anyhow!("unknown signal {s}: use a name such as TERM or a number"));
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    SIGNALS
        .iter()
        .find(|(_, known)| *known == name)
        .and_then(|(number, _)| Signal::from_named_raw(*number))
        .ok_or_else(|| {
            anyhow!("unknown signal {s}: use a name such as TERM, KILL, HUP or a number")
        })
}

/// Sends a signal to the container's PID 1.
pub fn kill(rec: &Record, sig: Signal) -> Result<(), Error> {
    // A record's pid is never 0 (that would signal our own process group).
    Ok(Pid::from_raw(rec.pid)
        .ok_or(rustix::io::Errno::SRCH)
        .and_then(|pid| rustix::process::kill_process(pid, sig))
        .map_err(std::io::Error::from)
        .with_context(|| format!("cannot send {} to container {}", signal_name(sig), rec.name))?)
}

/// SIGTERM to PID 1, SIGKILL to the whole cgroup after `grace`, then wait
/// until the supervisor has removed everything (or remove it here if the
/// supervisor is gone).
pub fn stop(state: &StateDir, rec: &Record, grace: Duration) -> Result<(), Error> {
    let pid = Pid::from_raw(rec.pid).filter(|_| rec.pid > 0);
    step!("stop.term");
    if let Some(pid) = pid {
        let _ = rustix::process::kill_process(pid, Signal::TERM);
    }
    let deadline = Instant::now() + grace;
    let mut killed = false;
    step!("stop.wait");
    loop {
        let gone = state
            .read::<Record>(&rec.name)
            .is_none_or(|r| r.engine_pid != rec.engine_pid);
        if gone {
            return Ok(());
        }
        if !is_alive(rec) {
            // Under the lock, and only if the record is still this one: the
            // name may already belong to a new container, whose cgroup,
            // veth and record have the same names.
            let _lock = state.lock()?;
            if state.read::<Record>(&rec.name).is_some_and(|r| {
                r.engine_pid == rec.engine_pid && r.engine_start == rec.engine_start
            }) {
                recovery::release(state, rec);
            }
            return Ok(());
        }
        if !killed && Instant::now() >= deadline {
            step!("stop.kill");
            if let Some(cg) = rec.cgroup.as_ref().filter(|c| c.exists()) {
                let _ = std::fs::write(cg.join("cgroup.kill"), "1");
            }
            if let Some(pid) = pid {
                let _ = rustix::process::kill_process(pid, Signal::KILL);
            }
            killed = true;
        }
        if killed && Instant::now() >= deadline + Duration::from_secs(10) {
            return Err(Error::Failed(format!(
                "container {} did not stop within 10s of SIGKILL",
                rec.name
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Prints a detached container's log; with `follow`, keeps printing until
/// the container has exited.
pub fn logs(state: &StateDir, cfg: &Config, name: &str, follow: bool) -> Result<(), Error> {
    use std::os::unix::fs::MetadataExt;
    let path = state.log_of(name);
    let mut file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(_) => {
            // Say which containers exist, as for every unknown name.
            find(state, cfg, name)?;
            return Err(Error::Failed(format!(
                "container {name} has no log: only detached containers (run -d) keep one"
            )));
        }
    };
    let rec = state.read::<Record>(name);
    let mut out = std::io::stdout().lock();
    let mut buf = vec![0u8; 64 * 1024];
    // The older half first (the log relay rotates NAME.log to NAME.log.1).
    if let Ok(mut older) = std::fs::File::open(super::log::rotated(&path)) {
        copy_all(&mut older, &mut out, &mut buf)?;
    }
    loop {
        let running = rec
            .as_ref()
            .is_some_and(|r| is_alive(r) && state.read::<Record>(name).is_some());
        copy_all(&mut file, &mut out, &mut buf)?;
        out.flush().ok();
        if !follow || !running {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
        // Rotated meanwhile: finish the old file, go on with the new one.
        let ino = file.metadata().map(|m| m.ino()).ok();
        if std::fs::metadata(&path).map(|m| m.ino()).ok() != ino {
            copy_all(&mut file, &mut out, &mut buf)?;
            if let Ok(f) = std::fs::File::open(&path) {
                file = f;
            }
        }
    }
}

/// Copies what `file` holds from its position on.
fn copy_all(file: &mut std::fs::File, out: &mut impl Write, buf: &mut [u8]) -> Result<()> {
    loop {
        let n = file.read(buf).context("cannot read the log")?;
        if n == 0 {
            return Ok(());
        }
        out.write_all(&buf[..n]).ok();
    }
}
