//! Host-wide setup and teardown (the old `env.sh set|clean`): the bridge,
//! IPv4 forwarding and the parent cgroup; and stopping a running container.

use crate::cgroup;
use crate::config::Config;
use crate::net::NetConfig;
use crate::state::{self, Record, StateDir};
use anyhow::{bail, Result};
use nix::sys::signal::Signal;
use std::time::{Duration, Instant};

/// Idempotent: bridge with the gateway address, forwarding on, and the
/// parent cgroup delegating cpu, memory and pids (where cgroup v2 exists).
pub fn setup(cfg: &Config) -> Result<()> {
    let net = NetConfig::new(&cfg.bridge, &cfg.subnet)?;
    let state = StateDir::new(&cfg.state_dir);
    let _lock = state.lock()?;
    state::recover_stale(&state);
    crate::net::setup_host(&net, &state.dir)?;
    match cgroup::check_available(&cfg.cgroup_root) {
        Ok(_) => cgroup::ensure_parent(&cfg.cgroup_root)?,
        Err(why) => eprintln!("engine: {why}: no resource control on this host"),
    }
    Ok(())
}

/// Idempotent: removes the bridge, restores forwarding and removes the
/// parent cgroup. Refuses while containers run, unless `force`.
pub fn teardown(cfg: &Config, force: bool) -> Result<()> {
    let net = NetConfig::new(&cfg.bridge, &cfg.subnet)?;
    let state = StateDir::new(&cfg.state_dir);
    let running = {
        let _lock = state.lock()?;
        state::recover_stale(&state);
        state.running()
    };
    if !running.is_empty() {
        let names: Vec<&str> = running.iter().map(|r| r.name.as_str()).collect();
        if !force {
            bail!(
                "containers are still running: {}: stop them first, or use `engine teardown --force`",
                names.join(", ")
            );
        }
        for rec in &running {
            stop(&state, rec, Duration::from_secs(10))?;
        }
    }
    let _lock = state.lock()?;
    crate::net::teardown_host(&net, &state.dir)?;
    if cfg.cgroup_root.is_dir() && cgroup::check_available(&cfg.cgroup_root).is_ok() {
        let _ = std::fs::remove_dir(&cfg.cgroup_root);
    }
    Ok(())
}

/// SIGTERM to PID 1, SIGKILL after `grace`, then wait until its supervisor
/// has removed everything (or, if the supervisor is gone, remove it here).
pub fn stop(state: &StateDir, rec: &Record, grace: Duration) -> Result<()> {
    let pid = nix::unistd::Pid::from_raw(rec.pid);
    if rec.pid > 0 {
        let _ = nix::sys::signal::kill(pid, Signal::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    let mut killed = false;
    loop {
        let gone = state
            .read(&rec.name)
            .is_none_or(|r| r.engine_pid != rec.engine_pid);
        if gone {
            return Ok(());
        }
        if !state::is_alive(rec) {
            let _lock = state.lock()?;
            state::release(state, rec);
            return Ok(());
        }
        if !killed && Instant::now() >= deadline {
            match &rec.cgroup {
                Some(cg) if cg.exists() => {
                    let _ = std::fs::write(cg.join("cgroup.kill"), "1");
                }
                _ => {}
            }
            if rec.pid > 0 {
                let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
            }
            killed = true;
        }
        if killed && Instant::now() >= deadline + Duration::from_secs(10) {
            bail!(
                "container {} did not stop within {}s of SIGKILL",
                rec.name,
                10
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
