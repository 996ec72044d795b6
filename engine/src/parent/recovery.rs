//! What an engine that died (SIGKILL) left behind: its container's
//! processes, cgroup, veth, state record (which is the lease of its
//! address) and the host-wide lease of its host IDs (`sys::idlease`);
//! a kept container's record (on disk, it outlives a reboot) becomes an
//! exited one.
//! Every verb runs this under the state lock before it looks at the records.

use super::record::Record;
use crate::model::config::Config;
use crate::model::exit;
use crate::sys::idlease::{Leases, Proc};
use crate::sys::state::{self, Entry, StateDir};
use std::path::PathBuf;

/// The state directory after recovery.
pub struct Recovered {
    /// Records of containers whose engine still runs.
    pub running: Vec<Record>,
    /// Records of detached containers that have ended, kept until `engine
    /// rm`: they hold their name, nothing else.
    pub exited: Vec<Record>,
    /// Records that could not be read; what they named has been released.
    pub corrupt: Vec<PathBuf>,
}

/// Whether the engine that wrote the record still runs. A zombie does not:
/// a killed supervisor stays one until its monitor has reaped it, which is
/// once the container it left has ended.
pub fn is_alive(rec: &Record) -> bool {
    let engine = Proc {
        pid: rec.engine_pid,
        start: rec.engine_start,
    };
    engine.alive()
}

/// Releases what dead engines left, and what unreadable records name.
/// Returns the records of the containers that still run (one scan of the
/// directory serves both). Call with the lock held.
pub fn recover_stale(state: &StateDir, cfg: &Config) -> Recovered {
    let mut out = Recovered {
        running: Vec::new(),
        exited: Vec::new(),
        corrupt: Vec::new(),
    };
    // Read once, and only if a kept container may have outlived its boot.
    let mut boot: Option<Option<String>> = None;
    for entry in state.list::<Record>() {
        match entry {
            // Before the liveness check: its supervisor writes it just before it exits.
            Entry::Record(mut rec) if rec.exited() => {
                // A restart whose engine is gone (killed in its back-off, or
                // a reboot since) will not come: plainly exited.
                if rec.restarting
                    && (state::of_another_boot(
                        rec.boot_id.as_deref(),
                        boot.get_or_insert_with(state::boot_id).as_deref(),
                    ) || !is_alive(&rec))
                {
                    rec.restarting = false;
                    let _ = state.write(&rec.name, &*rec);
                }
                out.exited.push(*rec)
            }
            Entry::Record(rec)
                if rec.boot_id.is_some()
                    && state::of_another_boot(
                        rec.boot_id.as_deref(),
                        boot.get_or_insert_with(state::boot_id).as_deref(),
                    ) =>
            {
                match rec.started {
                    Some(_) => out.exited.push(end_kept(state, *rec, true)),
                    // Never started: gone, as a dead engine's (below).
                    None => forget(state, &rec.name),
                }
            }
            Entry::Record(rec) if is_alive(&rec) => out.running.push(*rec),
            Entry::Record(rec) if rec.keep && rec.started.is_some() => {
                out.exited.push(end_kept(state, *rec, false))
            }
            Entry::Record(rec) => release(state, &rec),
            Entry::Corrupt { name, file } => {
                release_corrupt(cfg, &name, &file);
                crate::sys::net::dns::remove_files(&state.etc_of(&name));
                // Whether it published ports is unknown: ask nft only if the table exists.
                if super::nat::installed(state) && crate::model::names::check_name(&name).is_ok() {
                    let _ = crate::sys::net::nat::remove_ports(&name);
                }
                out.corrupt.push(file);
            }
        }
    }
    // A `NAME.etc` with no record is an engine's killed between writing it
    // and writing the record (both happen under this lock).
    if let Ok(dir) = std::fs::read_dir(&state.dir) {
        for entry in dir.flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            if let Some(name) = file.strip_suffix(".etc") {
                if !state.has_record(name) {
                    crate::sys::net::dns::remove_files(&entry.path());
                }
            }
            // A layer an older engine kept here goes once its record has.
            if let Some(name) = file.strip_suffix(".layer") {
                if !state.has_record(name) {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
    }
    // Likewise a kept container's layer and log: made under the lock
    // with its record, they go with it (if that lock is ours).
    let data = std::fs::read_dir(&state.data).ok();
    if let Some(dir) = data.filter(|_| state.data_is_ours()) {
        for entry in dir.flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            if let Some(name) = file.strip_suffix(".layer") {
                if !state.has_record(name) {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
            let log = file.strip_suffix(".log").or(file.strip_suffix(".log.1"));
            if log.is_some_and(|name| !state.has_record(name)) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        state.unmark_data_if_unused();
    }
    release_dead_leases(state);
    out
}

/// The ID leases of this state directory whose engine died: its container
/// (if the record was not written yet, or is gone) is killed, and the lease
/// removed. A lease no process holds is free anyway; its file goes too.
/// (Leases of this directory are written only under its lock, which we hold.)
fn release_dead_leases(state: &StateDir) {
    for (file, lease) in Leases::host().of_state_dir(&state.dir) {
        let release = lease
            .as_ref()
            .is_none_or(|l| l.engine.is_some_and(|p| !p.alive()) || !l.alive());
        if !release {
            continue;
        }
        if let Some(init) = lease.and_then(|l| l.init).filter(Proc::alive) {
            kill_if_container(init.pid);
        }
        let _ = std::fs::remove_file(file);
    }
}

/// Tears down what a record names. Idempotent.
pub fn release(state: &StateDir, rec: &Record) {
    release_held(state, rec);
    // Last, after the kill: the ID lease and the record (the lease of the
    // address) go back only once nothing runs as them.
    Leases::host().remove_if_engine_dead(&state.dir, &rec.name);
    forget(state, &rec.name);
    if rec.ip.is_some() {
        // Its line leaves its peers' /etc/hosts, as on a supervised end.
        super::hosts::refresh_peers(state, Some(&rec.name));
    }
}

/// What a dead engine's record names, released; a kept container that had
/// started is kept, exited (as `recover_stale` does).
pub fn release_dead(state: &StateDir, rec: &Record) {
    if rec.keep && rec.started.is_some() {
        end_kept(state, rec.clone(), false);
    } else {
        release(state, rec);
    }
}

/// The record and a kept container's layer.
fn forget(state: &StateDir, name: &str) {
    state.remove(name);
    let _ = std::fs::remove_dir_all(state.layer_of(name));
}

/// A kept container whose engine is gone (its monitor killed, or the host
/// rebooted since) has ended: what it held is released, and its record is
/// kept as an exited one for `ps -a`, `logs`, `start` and `rm`, with the
/// status the engine gives a status it lost (125, as `wait` and the
/// monitor do). After a reboot nothing it held is left (processes,
/// cgroup, veth, port rules and ID lease are of the earlier boot), and
/// its pids may name others' processes now: nothing is killed.
fn end_kept(state: &StateDir, rec: Record, rebooted: bool) -> Record {
    if rebooted {
        crate::sys::net::dns::remove_files(&state.etc_of(&rec.name));
    } else {
        release_held(state, &rec);
        Leases::host().remove_if_engine_dead(&state.dir, &rec.name);
        if rec.ip.is_some() {
            super::hosts::refresh_peers(state, Some(&rec.name));
        }
    }
    let rec = rec.into_exited(exit::ENGINE_ERROR, state::now_secs());
    let _ = state.write(&rec.name, &rec);
    rec
}

/// What a record names but its ID lease and the record itself: the
/// container's processes, cgroup, veth, port rules, /etc files.
pub fn release_held(state: &StateDir, rec: &Record) {
    if let Some(cg) = &rec.cgroup {
        let _ = crate::sys::cgroup::kill_and_remove(cg);
    }
    if rec.pid > 0 {
        kill_if_container(rec.pid);
    }
    if let Some(veth) = &rec.veth {
        let _ = crate::sys::net::delete_link(veth);
    }
    if !rec.ports.is_empty() {
        let _ = crate::sys::net::nat::remove_ports(&rec.name);
    }
    crate::sys::net::dns::remove_files(&state.etc_of(&rec.name));
}

/// An unreadable record still has the container's name in its file name,
/// and the engine derives the cgroup and veth from it. Its address lease
/// is the record itself.
fn release_corrupt(cfg: &Config, name: &str, file: &std::path::Path) {
    // Only a name the engine could have given: never rmdir outside the root.
    if crate::model::names::check_name(name).is_ok() {
        let _ = crate::sys::cgroup::kill_and_remove(&cfg.cgroup_root.join(name));
        let _ = crate::sys::net::delete_link(&crate::sys::net::veth_name(name));
    }
    let _ = std::fs::remove_file(file);
}

/// Kills a recorded PID 1 if it is still a container's (its parent is gone,
/// so it is reparented; we check it lives in a pid namespace other than ours).
fn kill_if_container(pid: i32) {
    let ours = std::fs::read_link("/proc/self/ns/pid").ok();
    let theirs = std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok();
    if theirs.is_some() && theirs != ours {
        // No pid 0 here: /proc/0 does not exist, so `theirs` was None.
        if let Some(pid) = rustix::process::Pid::from_raw(pid) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
}
