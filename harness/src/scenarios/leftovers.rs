//! Scenario 10, leftovers (runs last): after the suite no veth, bridge, cgroup,
//! mount, process or state file of the engine remains. Then the harness
//! removes its own (empty) cgroup parents.

use crate::engine::{self, link_exists, EnvRecord, Settings};
use crate::process::{self, Output};
use anyhow::{bail, Result};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Links of type veth in this network namespace, from `ip -d -o link`.
fn veths(links: &str) -> Vec<String> {
    links
        .lines()
        .filter(|l| l.split_whitespace().any(|w| w == "veth"))
        .filter_map(|l| {
            let name = l.split(':').nth(1)?.trim();
            Some(name.split('@').next().unwrap_or(name).to_string())
        })
        .collect()
}

/// Mount points under any of `dirs` (the scratch directory holds the
/// fixtures and the engine's state directories), from mountinfo.
fn mounts(mountinfo: &str, dirs: &[&Path]) -> Vec<String> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let point = left.split(' ').nth(4)?;
            let fstype = right.split(' ').next()?;
            dirs.iter()
                .any(|d| Path::new(point).starts_with(d))
                .then(|| format!("mount: {fstype} on {point}"))
        })
        .collect()
}

/// Host pids of the processes that live in another PID namespace than
/// ours (containers'), with their command lines.
pub fn foreign_processes() -> Vec<(u32, String)> {
    let own_ns = std::fs::read_link("/proc/self/ns/pid").ok();
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let ns = std::fs::read_link(e.path().join("ns/pid")).ok();
        if ns.is_some() && own_ns.is_some() && ns != own_ns {
            found.push((pid, command_of(pid)));
        }
    }
    found
}

fn command_of(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| {
            String::from_utf8_lossy(&c)
                .replace('\0', " ")
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}

/// Processes in another PID namespace that were not there when the run
/// began (`baseline`), and processes running the engine binary.
fn processes(engine: &Path, baseline: &[u32]) -> Vec<String> {
    let mut found: Vec<String> = foreign_processes()
        .into_iter()
        .filter(|(pid, _)| !baseline.contains(pid))
        .map(|(pid, cmd)| format!("process {pid} `{cmd}` in another PID namespace (a container's)"))
        .collect();
    let engine = std::fs::canonicalize(engine).ok();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let exe = std::fs::read_link(e.path().join("exe")).ok();
            if exe.is_some() && exe == engine {
                found.push(format!("engine process {pid} `{}`", command_of(pid)));
            }
        }
    }
    found
}

fn ip_links() -> Result<Output> {
    let out = process::run(
        Command::new("ip").args(["-d", "-o", "link", "show"]),
        Duration::from_secs(60),
    )?;
    out.expect_success("ip -d -o link show")?;
    Ok(out)
}

/// Checks that nothing is left by the environments in `envs` and the
/// engine at large; on success removes the cgroup parents.
pub fn check(settings: &Settings, envs: &[EnvRecord]) -> Result<()> {
    let mut problems = Vec::new();
    if envs.is_empty() {
        bail!("no scenario ran before the leftovers check, so there is nothing to check");
    }

    let links = ip_links()?;
    for veth in veths(&links.stdout) {
        problems.push(format!("veth {veth}"));
    }
    for env in envs {
        if link_exists(&env.bridge) {
            problems.push(format!("bridge {} (of {})", env.bridge, env.tag));
        }
        problems.extend(engine::state_files(&env.state_dir));
        problems.extend(engine::state_files(&env.data_dir));
        problems.extend(engine::child_cgroups(&env.cgroup_root));
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    problems.extend(mounts(&mountinfo, &[&settings.scratch]));
    problems.extend(processes(&settings.engine, &settings.foreign_baseline));

    if !problems.is_empty() {
        bail!(
            "after {} environment(s) these remain:\n  {}\n(ip -d -o link:\n{})",
            envs.len(),
            problems.join("\n  "),
            links.stdout.trim_end()
        );
    }

    // Ours to remove: each environment's cgroup root, then their parent.
    for env in envs {
        if env.cgroup_root.exists() {
            std::fs::remove_dir(&env.cgroup_root).map_err(|e| {
                anyhow::anyhow!(
                    "cannot remove the empty cgroup {}: {e}",
                    env.cgroup_root.display()
                )
            })?;
        }
    }
    if settings.cgroup_parent.exists() {
        std::fs::remove_dir(&settings.cgroup_parent).map_err(|e| {
            anyhow::anyhow!(
                "cannot remove the cgroup parent {}: {e}",
                settings.cgroup_parent.display()
            )
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn veths_are_found() {
        let links = "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN mode DEFAULT group default qlen 1000\\    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00 promiscuity 0 \n\
                     5: ve-c1@if4: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue master hb1 state UP mode DEFAULT group default qlen 1000\\    link/ether 2a:4e brd ff:ff promiscuity 1 \\    veth addrgenmode eui64\n\
                     6: hb1: <BROADCAST> mtu 1500\\    link/ether 2a:4e \\    bridge forward_delay 1500\n";
        assert_eq!(veths(links), vec!["ve-c1".to_string()]);
    }

    #[test]
    fn mounts_under_scratch_and_overlays_are_found() {
        let info = "22 1 0:20 / / rw - 9p hostroot rw\n\
                    40 22 0:30 / /tmp/harness/state/x/merged rw - overlay overlay rw\n\
                    41 22 0:31 / /tmp/harness/rootfs/busybox/proc rw - proc proc rw\n\
                    42 22 0:32 / /elsewhere rw - tmpfs tmpfs rw\n";
        assert_eq!(
            mounts(info, &[Path::new("/tmp/harness")]),
            vec![
                "mount: overlay on /tmp/harness/state/x/merged".to_string(),
                "mount: proc on /tmp/harness/rootfs/busybox/proc".to_string()
            ]
        );
    }
}
