//! The scenarios. Each gets a [`Ctx`] (the engine, a fixture), makes its
//! own [`Env`] (state directory, cgroup parent, bridge, subnet), asserts
//! for real and ends with [`Env::close`], which checks that it left
//! nothing behind.

mod confinement;
mod cpu;
mod cri;
mod filesystem;
mod host_mounts;
pub mod image;
pub mod leftovers;
mod lifecycle;
mod memory;
mod nat;
mod network;
mod oci;
mod pids;
mod processes;
mod stress;
mod users;
mod uts_ipc;

use crate::engine::{Env, Settings};
use crate::fixtures::Fixture;
use anyhow::Result;
use std::path::Path;

/// What a scenario works with.
pub struct Ctx<'a> {
    pub settings: &'a Settings,
    pub fixture: &'a Fixture,
}

impl Ctx<'_> {
    /// A fresh engine environment for this scenario.
    pub fn env(&self, tag: &str) -> Result<Env> {
        Env::new(self.settings, tag)
    }

    /// The root-owned rootfs of this flavour.
    pub fn rootfs(&self) -> &Path {
        &self.fixture.rootfs
    }
}

/// A scenario.
pub type Scenario = fn(&Ctx) -> Result<()>;

/// The scenario called `name` (one of [`crate::plan::SCENARIOS`]).
pub fn by_name(name: &str) -> Option<Scenario> {
    Some(match name {
        "processes" => processes::run,
        "users" => users::run,
        "filesystem" => filesystem::run,
        "hostname_ipc" => uts_ipc::run,
        "network" => network::run,
        "nat" => nat::run,
        "cpu" => cpu::run,
        "memory" => memory::run,
        "pids" => pids::run,
        "stress" => stress::run,
        "lifecycle" => lifecycle::run,
        "confinement" => confinement::run,
        "oci" => oci::run,
        "podman" => oci::run_podman,
        "cri" => cri::run,
        "image" => image::run,
        _ => return None,
    })
}

/// Lines of `text`, trimmed, without empty ones.
pub(crate) fn lines(text: &str) -> Vec<&str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect()
}

/// The value after `key=` on the line that starts with it (`dd-rc=137`).
pub(crate) fn tagged<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let prefix = format!("{key}=");
    text.lines()
        .find_map(|l| l.trim().strip_prefix(prefix.as_str()))
        .map(str::trim)
}

/// `/proc/self/uid_map` text with its columns single-spaced.
pub(crate) fn normalize_map(text: &str) -> String {
    lines(text)
        .iter()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::SCENARIOS;

    #[test]
    fn every_planned_scenario_exists() {
        for name in SCENARIOS {
            assert!(by_name(name).is_some(), "{name}");
        }
    }

    #[test]
    fn small_parsers() {
        assert_eq!(tagged("a\ndd-rc=137\n", "dd-rc"), Some("137"));
        assert_eq!(tagged("a\n", "dd-rc"), None);
        assert_eq!(
            normalize_map("         0          0      65536\n"),
            "0 0 65536"
        );
    }
}
