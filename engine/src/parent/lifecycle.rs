//! Containers seen from another terminal: find by name, list with their
//! cgroup figures, follow logs, signal and stop; and the records detached
//! containers leave when they end: wait for one, inspect, remove.

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

/// The running container called `name`; one that has exited is refused
/// with its status, an unknown name with the list of those that run.
pub fn find(state: &StateDir, cfg: &Config, name: &str) -> Result<Record, Error> {
    let rec = find_any(state, cfg, name)?;
    if let Some(code) = rec.exit_code.filter(|_| rec.exited()) {
        return Err(Error::Failed(format!(
            "container {name} is not running: it exited with status {code} {}; `engine logs {name}` shows its output, `engine rm {name}` removes it",
            ago(rec.finished)
        )));
    }
    Ok(rec)
}

/// The container called `name`, running or exited (a detached one's kept
/// record), or an error listing those that run.
pub fn find_any(state: &StateDir, cfg: &Config, name: &str) -> Result<Record, Error> {
    let recovered = {
        let _lock = state.lock()?;
        recovery::recover_stale(state, cfg)
    };
    let running = recovered.running;
    if let Some(rec) = running.iter().find(|r| r.name == name && r.pid > 0) {
        return Ok(rec.clone());
    }
    if let Some(rec) = recovered.exited.into_iter().find(|r| r.name == name) {
        return Ok(rec);
    }
    let names: Vec<&str> = running.iter().map(|r| r.name.as_str()).collect();
    let message = if names.is_empty() {
        format!("no such container: {name} (no containers are running)")
    } else {
        format!("no such container: {name} (running: {})", names.join(", "))
    };
    Err(Error::NoSuchContainer(message))
}

/// `5 seconds ago`, from a Unix time.
pub fn ago(when: Option<u64>) -> String {
    let s = state::now_secs().saturating_sub(when.unwrap_or(0));
    let (n, unit) = match s {
        s if s >= 86400 => (s / 86400, "day"),
        s if s >= 3600 => (s / 3600, "hour"),
        s if s >= 60 => (s / 60, "minute"),
        s => (s, "second"),
    };
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
}

/// One row of `engine ps`; its JSON form is the documented, stable format.
#[derive(Debug, Serialize)]
pub struct PsRow {
    pub name: String,
    /// PID 1 of the container, as the host sees it.
    pub pid: i32,
    /// The engine process whose life is the container's: its supervisor,
    /// or once a detached one has started, its monitor.
    pub engine_pid: i32,
    pub ip: Option<String>,
    pub rootfs: String,
    /// The image it runs on, as given (null: a rootfs directory).
    pub image: Option<String>,
    pub image_id: Option<String>,
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
    /// `running`, `exited` (a detached container's kept record: `ps -a`),
    /// or `restarting` (exited, to be run again by its `--restart`).
    pub status: &'static str,
    /// The exit status of an exited container.
    pub exit_code: Option<i32>,
    /// Unix time in seconds of the command's start.
    pub started: u64,
    /// Unix time in seconds of an exited container's end.
    pub finished: Option<u64>,
}

/// What `engine ps` lists: `--all` adds the exited containers, each
/// `--filter` narrows (`name=` a part of the name, `status=running|exited`;
/// the same key twice is either, two keys both).
#[derive(Debug, Default)]
pub struct PsFilter {
    pub all: bool,
    names: Vec<String>,
    statuses: Vec<String>,
}

impl PsFilter {
    /// From `--all` and the `--filter KEY=VALUE` words; a bad one is refused.
    pub fn parse(all: bool, filters: &[String]) -> Result<PsFilter> {
        let mut f = PsFilter {
            all,
            ..PsFilter::default()
        };
        for word in filters {
            match word.split_once('=') {
                Some(("name", v)) if !v.is_empty() => f.names.push(v.to_string()),
                Some(("status", v @ ("running" | "exited" | "restarting"))) => {
                    // As docker: asking for exited ones lists them without -a.
                    f.all |= v != "running";
                    f.statuses.push(v.to_string());
                }
                Some(("status", v)) => {
                    return Err(anyhow!(
                    "unknown status {v:?} in --filter {word}: use status=running, status=exited or status=restarting"
                ))
                }
                _ => {
                    return Err(anyhow!(
                        "unknown filter {word:?}: use name=PART or status=running|exited|restarting"
                    ))
                }
            }
        }
        Ok(f)
    }

    fn admits(&self, row: &PsRow) -> bool {
        (self.all || row.status != "exited")
            && (self.names.is_empty() || self.names.iter().any(|n| row.name.contains(n.as_str())))
            && (self.statuses.is_empty() || self.statuses.iter().any(|s| s == row.status))
    }
}

/// What `engine ps` shows.
pub struct PsReport {
    pub rows: Vec<PsRow>,
    /// State records that could not be read (what they named is released).
    pub corrupt: Vec<PathBuf>,
}

pub fn ps(state: &StateDir, cfg: &Config, filter: &PsFilter) -> Result<PsReport, Error> {
    let recovered = {
        let _lock = state.lock()?;
        recovery::recover_stale(state, cfg)
    };
    let now = state::now_secs();
    let mut records: Vec<Record> = recovered
        .running
        .into_iter()
        .filter(|r| r.pid > 0)
        .chain(recovered.exited)
        .collect();
    records.sort_by(|a, b| a.name.cmp(&b.name));
    let rows = records
        .into_iter()
        .map(|r| PsRow {
            memory_usage: r
                .cgroup
                .as_ref()
                .and_then(|c| cgroup::read_u64(&c.join("memory.current"))),
            status: match (r.exited(), r.restarting) {
                (false, _) => "running",
                (true, true) => "restarting",
                (true, false) => "exited",
            },
            exit_code: r.exit_code,
            started: r.started.unwrap_or(r.created),
            finished: r.finished,
            name: r.name,
            pid: r.pid,
            engine_pid: r.engine_pid,
            ip: r.ip.map(|i| i.to_string()),
            rootfs: r.rootfs.display().to_string(),
            image: r.image,
            image_id: r.image_id,
            command: r.command,
            created: r.created,
            uptime_seconds: match r.finished {
                Some(_) => 0,
                None => now.saturating_sub(r.created),
            },
            cpus: r.cpus,
            memory_limit: r.memory,
            pids_limit: r.pids_limit,
            cgroup: r.cgroup.map(|c| c.display().to_string()),
            veth: r.veth,
            log: r.log.map(|l| l.display().to_string()),
            ports: r.ports.iter().map(|p| p.to_string()).collect(),
        })
        .filter(|row| filter.admits(row))
        .collect();
    Ok(PsReport {
        rows,
        corrupt: recovered.corrupt,
    })
}

/// Blocks while the container runs; its exit status once it has ended.
/// Only a kept record has one: a foreground or `--rm` container's goes.
pub fn wait(state: &StateDir, cfg: &Config, name: &str) -> Result<i32, Error> {
    let rec = find_any(state, cfg, name)?;
    loop {
        match state.read::<Record>(name) {
            Some(r) if r.exited() => return Ok(r.exit_code.unwrap_or(crate::model::exit::ENGINE_ERROR)),
            Some(r) if r.engine_pid == rec.engine_pid && is_alive(&r) => {
                std::thread::sleep(Duration::from_millis(20))
            }
            _ => {
                return Err(Error::Failed(format!(
                    "container {name} ended without keeping its exit status: only a detached container run without --rm keeps it"
                )))
            }
        }
    }
}

/// `engine rm`: removes each named container's kept record, its log and
/// its writable layer.
/// Every name is checked first; a running one is refused unless `force`,
/// which stops it at once (SIGKILL) and then removes it.
pub fn rm(
    state: &StateDir,
    cfg: &Config,
    names: &[String],
    force: bool,
    mut removed: impl FnMut(&str),
) -> Result<(), Error> {
    step!("rm.find");
    let recs = names
        .iter()
        .map(|n| find_any(state, cfg, n))
        .collect::<Result<Vec<_>, Error>>()?;
    if let Some(rec) = recs.iter().find(|r| !r.exited() && !force) {
        return Err(Error::Failed(format!(
            "container {} is running: stop it first with `engine stop {}`, or use `engine rm -f {}`",
            rec.name, rec.name, rec.name
        )));
    }
    for rec in &recs {
        if !rec.exited() {
            step!("rm.stop");
            stop(state, rec, Duration::ZERO)?;
        }
        step!("rm.lock");
        let _lock = state.lock()?;
        // Only the kept record: a new container may have taken a name
        // whose (foreground, or --rm) container `stop` just ended.
        if state.read::<Record>(&rec.name).is_some_and(|r| r.exited()) {
            state.remove(&rec.name);
        }
        if !state.has_record(&rec.name) {
            let _ = std::fs::remove_dir_all(state.layer_of(&rec.name));
            let _ = std::fs::remove_file(state.stopped_mark_of(&rec.name));
            for kept in [true, false] {
                let log = state.log_of(&rec.name, kept);
                let _ = std::fs::remove_file(super::log::rotated(&log));
                let _ = std::fs::remove_file(log);
            }
        }
        removed(&rec.name);
    }
    Ok(())
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

/// Whether the container was run with a restart policy (`--restart`).
pub fn has_restart_policy(rec: &Record) -> bool {
    rec.input
        .as_ref()
        .and_then(|i| i.restart_policy.as_deref())
        .is_some_and(|p| p != "no")
}

/// `stop` ends a restart policy: its supervisor finds the mark before it
/// runs the container again, and a container waiting to be run again is
/// exited from now on. Under the lock, as the supervisor's checks.
pub fn end_restart_policy(state: &StateDir, rec: &Record) -> Result<(), Error> {
    if !has_restart_policy(rec) {
        return Ok(());
    }
    let _lock = state.lock()?;
    let mark = state.stopped_mark_of(&rec.name);
    std::fs::write(&mark, b"").with_context(|| format!("cannot write {}", mark.display()))?;
    if let Some(mut now) = state.read::<Record>(&rec.name).filter(|r| r.restarting) {
        now.restarting = false;
        state.write(&rec.name, &now)?;
    }
    Ok(())
}

/// docker's back-off before a restart: 100 ms, doubled each time, back to
/// 100 ms after a run of at least 10 s.
pub(super) const BACKOFF_FIRST: Duration = Duration::from_millis(100);
pub(super) const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(10);

/// The choice of the supervisor (or of the monitor, if the supervisor was
/// killed) once a run with a restart policy has ended with `code`: true
/// (the record now says restarting, its count one more) unless `stop` or
/// `rm` came, or the policy says no more (`on-failure:N` counts the
/// record's restarts). Under the lock, as `stop`'s mark.
pub fn schedule_restart(
    state: &StateDir,
    name: &str,
    policy: crate::model::spec::RestartPolicy,
    code: i32,
) -> bool {
    let Ok(_lock) = state.lock() else {
        return false;
    };
    if state.stopped_mark_of(name).exists() {
        return false;
    }
    match state.read::<Record>(name).filter(|r| r.exited()) {
        Some(mut rec) if policy.runs_again(code, rec.restart_count) => {
            rec.restarting = true;
            rec.restart_count += 1;
            state.write(name, &rec).is_ok()
        }
        _ => false,
    }
}

/// SIGTERM to PID 1, SIGKILL to the whole cgroup after `grace`, then wait
/// until the supervisor has removed everything (or remove it here if the
/// supervisor is gone).
pub fn stop(state: &StateDir, rec: &Record, grace: Duration) -> Result<(), Error> {
    let pid = Pid::from_raw(rec.pid).filter(|_| rec.pid > 0);
    step!("stop.term");
    // The image's StopSignal, else SIGTERM.
    let first = rec
        .stop_signal
        .and_then(Signal::from_named_raw)
        .unwrap_or(Signal::TERM);
    if let Some(pid) = pid {
        let _ = rustix::process::kill_process(pid, first);
    }
    let deadline = Instant::now() + grace;
    let mut killed = false;
    step!("stop.wait");
    loop {
        // Ended: its record is gone, or kept as an exited one.
        let gone = state
            .read::<Record>(&rec.name)
            .is_none_or(|r| r.engine_pid != rec.engine_pid || r.exited());
        if gone {
            return Ok(());
        }
        if !is_alive(rec) {
            // Under the lock, and only if the record is still this one: the
            // name may already belong to a new container, whose cgroup,
            // veth and record have the same names.
            let _lock = state.lock()?;
            if state.read::<Record>(&rec.name).is_some_and(|r| {
                r.engine_pid == rec.engine_pid && r.engine_start == rec.engine_start && !r.exited()
            }) {
                recovery::release_dead(state, rec);
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
    let path = state.find_log(name);
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
        let running = rec.as_ref().is_some_and(|r| {
            is_alive(r) && state.read::<Record>(name).is_some_and(|now| !now.exited())
        });
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
