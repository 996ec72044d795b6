//! Host-wide setup and teardown (the old `env.sh set|clean`): the bridge,
//! IPv4 forwarding and the parent cgroup.

use super::{nat, Error};
use crate::model::config::Config;
use crate::model::subnet::NetConfig;
use crate::parent::recovery::recover_stale;
use crate::sys::cgroup;
use crate::sys::failpoint::step;
use crate::sys::state::StateDir;
use std::time::Duration;

/// Idempotent: bridge with the gateway address, forwarding on, and the
/// parent cgroup delegating cpu, memory and pids (where cgroup v2 exists).
pub fn setup(cfg: &Config) -> Result<(), Error> {
    step!("setup.config");
    let net = NetConfig::new(&cfg.bridge, &cfg.subnet)?;
    let state = StateDir::new(&cfg.state_dir, &cfg.data_dir);
    step!("setup.state_dir");
    state.make_private()?;
    step!("setup.lock");
    let _lock = state.lock()?;
    recover_stale(&state, cfg);
    step!("setup.bridge");
    crate::sys::net::setup_host((&net).into(), &state.dir)?;
    step!("setup.nat");
    nat::install(&net, &state)?;
    step!("setup.cgroup");
    match cgroup::check_available(&cfg.cgroup_root) {
        Ok(_) => cgroup::ensure_parent(&cfg.cgroup_root)?,
        Err(why) => eprintln!("engine: {why}: no resource control on this host"),
    }
    Ok(())
}

/// Idempotent: removes the bridge, restores forwarding, removes the
/// parent cgroup and the records, logs and layers of ended detached
/// containers (in the state and data directories).
/// Refuses while containers run, unless `force`.
pub fn teardown(cfg: &Config, force: bool) -> Result<(), Error> {
    step!("teardown.config");
    let net = NetConfig::new(&cfg.bridge, &cfg.subnet)?;
    let state = StateDir::new(&cfg.state_dir, &cfg.data_dir);
    // Containers may start while others are stopped: stop until none runs
    // under the lock, and hold it from then on, so that none starts on a
    // bridge about to go (nor is left without forwarding).
    let mut rounds = 0;
    let _lock = loop {
        step!("teardown.lock");
        let lock = state.lock()?;
        step!("teardown.recover");
        let recovered = recover_stale(&state, cfg);
        if recovered.running.is_empty() {
            // Ended detached containers go with their logs (below) and
            // writable layers, from the data directory too: the engine
            // leaves nothing of theirs on the host.
            for rec in &recovered.exited {
                state.remove(&rec.name);
                let _ = std::fs::remove_dir_all(state.layer_of(&rec.name));
                let log = state.log_of(&rec.name, true);
                let _ = std::fs::remove_file(super::log::rotated(&log));
                let _ = std::fs::remove_file(log);
            }
            break lock;
        }
        let running = recovered.running;
        let names: Vec<&str> = running.iter().map(|r| r.name.as_str()).collect();
        if !force {
            return Err(Error::Failed(format!(
                "containers are still running: {}: stop them first, or use `engine teardown --force`",
                names.join(", ")
            )));
        }
        rounds += 1;
        if rounds > 20 {
            return Err(Error::Failed(format!(
                "containers keep starting while teardown stops them (now: {}): stop whatever starts them, then run `engine teardown --force` again",
                names.join(", ")
            )));
        }
        drop(lock);
        for rec in &running {
            step!("teardown.stop");
            crate::parent::lifecycle::stop(&state, rec, Duration::from_secs(10))?;
        }
    };
    // Without the marker and without nft there is nothing of ours to remove.
    step!("teardown.nat");
    match crate::sys::net::nat::uninstall(&net.bridge) {
        Err(e) if nat::installed(&state) => return Err(e.into()),
        _ => {}
    }
    nat::forget(&state);
    step!("teardown.bridge");
    crate::sys::net::teardown_host((&net).into(), &state.dir)?;
    step!("teardown.logs");
    // Logs of detached containers outlive them (to be read after the end)
    // until `engine rm`, the name used again, or here.
    if let Ok(dir) = std::fs::read_dir(&state.dir) {
        for entry in dir.flatten() {
            if entry.file_name().to_string_lossy().ends_with(".log") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    step!("teardown.cgroup");
    if cfg.cgroup_root.is_dir() && cgroup::check_available(&cfg.cgroup_root).is_ok() {
        let _ = std::fs::remove_dir(&cfg.cgroup_root);
    }
    Ok(())
}

/// The engine's network, as `sys::net` sets its bridge up.
impl<'a> From<&'a NetConfig> for crate::sys::net::Bridge<'a> {
    fn from(net: &'a NetConfig) -> Self {
        crate::sys::net::Bridge {
            name: &net.bridge,
            gateway: net.gateway,
            prefix: net.prefix,
        }
    }
}
