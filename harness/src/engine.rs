//! Driving the `engine` binary: a per-scenario environment (its own state
//! directory, cgroup parent, bridge and subnet, so scenarios never clash),
//! and `engine run` in the foreground or in the background.

use crate::process::{self, Output, Proc};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// How long one `engine run` may take in the foreground (TCG is slow).
pub const RUN_TIMEOUT: Duration = Duration::from_secs(180);
/// How long to wait for a background container to print a line.
pub const LINE_TIMEOUT: Duration = Duration::from_secs(120);

/// Where every environment of this run lives; see [`Env::new`].
#[derive(Debug, Clone)]
pub struct Settings {
    /// The engine binary under test.
    pub engine: PathBuf,
    /// A scratch directory for state directories, markers and fixtures.
    pub scratch: PathBuf,
    /// The cgroup under which each environment gets its `ENGINE_CGROUP_ROOT`.
    pub cgroup_parent: PathBuf,
    /// Processes in other PID namespaces when the run began (a host's own
    /// containers), which the leftovers check ignores.
    pub foreign_baseline: Vec<u32>,
}

/// What an environment used, for the final leftovers check.
#[derive(Debug, Clone)]
pub struct EnvRecord {
    pub tag: String,
    pub state_dir: PathBuf,
    pub data_dir: PathBuf,
    pub cgroup_root: PathBuf,
    pub bridge: String,
}

static REGISTRY: Mutex<Vec<EnvRecord>> = Mutex::new(Vec::new());
static NEXT_SUBNET: AtomicU32 = AtomicU32::new(1);

/// Every environment created so far in this process.
pub fn registry() -> Vec<EnvRecord> {
    REGISTRY.lock().unwrap().clone()
}

/// One scenario's engine environment: `ENGINE_STATE_DIR`, `ENGINE_DATA_DIR`
/// (the guest's /var is the host's, read-only), `ENGINE_CGROUP_ROOT`, `ENGINE_BRIDGE` and `ENGINE_SUBNET` of its own.
pub struct Env {
    pub engine: PathBuf,
    pub tag: String,
    pub state_dir: PathBuf,
    pub data_dir: PathBuf,
    pub cgroup_root: PathBuf,
    pub bridge: String,
    /// The third octet of the subnet 10.231.N.0/24.
    pub net: u32,
    closed: bool,
}

impl Env {
    /// A fresh environment named `tag` (short: it is part of the bridge name).
    pub fn new(settings: &Settings, tag: &str) -> Result<Env> {
        let net = NEXT_SUBNET.fetch_add(1, Ordering::Relaxed);
        if net > 254 {
            bail!("more than 254 environments in one run");
        }
        let tag = format!("{tag}{net}");
        let state_dir = settings.scratch.join("state").join(&tag);
        let data_dir = settings.scratch.join("data").join(&tag);
        let cgroup_root = settings.cgroup_parent.join(&tag);
        let bridge = format!("hb{net}");
        std::fs::create_dir_all(&state_dir)
            .with_context(|| format!("cannot create {}", state_dir.display()))?;
        REGISTRY.lock().unwrap().push(EnvRecord {
            tag: tag.clone(),
            state_dir: state_dir.clone(),
            data_dir: data_dir.clone(),
            cgroup_root: cgroup_root.clone(),
            bridge: bridge.clone(),
        });
        Ok(Env {
            engine: settings.engine.clone(),
            tag,
            state_dir,
            data_dir,
            cgroup_root,
            bridge,
            net,
            closed: false,
        })
    }

    /// `10.231.N.0/24`.
    pub fn subnet(&self) -> String {
        format!("10.231.{}.0/24", self.net)
    }

    /// The gateway (the bridge's address), `10.231.N.1`.
    pub fn gateway(&self) -> String {
        self.ip(1)
    }

    /// `10.231.N.HOST`.
    pub fn ip(&self, host: u8) -> String {
        format!("10.231.{}.{host}", self.net)
    }

    /// The cgroup leaf of container `name`.
    pub fn leaf(&self, name: &str) -> PathBuf {
        self.cgroup_root.join(name)
    }

    /// `engine ARGS...` with this environment's variables.
    pub fn command<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Command {
        let mut cmd = Command::new(&self.engine);
        cmd.env("ENGINE_STATE_DIR", &self.state_dir)
            .env("ENGINE_DATA_DIR", &self.data_dir)
            .env("ENGINE_CGROUP_ROOT", &self.cgroup_root)
            .env("ENGINE_BRIDGE", &self.bridge)
            .env("ENGINE_SUBNET", self.subnet())
            .args(args);
        cmd
    }

    /// `engine run ...` in the foreground, stdin from /dev/null.
    pub fn run(&self, run: &Run) -> Result<Output> {
        process::run(&mut self.command(&run.args()), RUN_TIMEOUT)
    }

    /// `engine run ...` in the background, its stdin a pipe (scripts wait
    /// with `read` until [`Proc::finish`] closes it).
    pub fn spawn(&self, run: &Run) -> Result<Proc> {
        Proc::spawn(&mut self.command(&run.args()), true)
    }

    /// The host pid of container `name`'s PID 1, from its state file.
    pub fn pid1(&self, name: &str) -> Result<i32> {
        // A kept container's record is in the data directory.
        let file = format!("{name}.json");
        let kept = self.data_dir.join(&file);
        let path = self.state_dir.join(file);
        let pid =
            testkit::wait::poll_until(Duration::from_secs(30), "a pid in the state file", || {
                let data = std::fs::read(&path)
                    .or_else(|_| std::fs::read(&kept))
                    .ok()?;
                let value: serde_json::Value = serde_json::from_slice(&data).ok()?;
                let pid = i32::try_from(value.get("pid")?.as_i64()?).ok()?;
                (pid > 0).then_some(pid)
            });
        pid.with_context(|| {
            format!(
                "no pid in the state file {} (seen: {:?})",
                path.display(),
                std::fs::read_to_string(&path).ok()
            )
        })
    }

    /// `engine teardown --force`, then checks that nothing of this
    /// environment is left: no state file, no container cgroup, no bridge.
    pub fn close(mut self) -> Result<()> {
        self.closed = true;
        let out = process::run(&mut self.command(&["teardown", "--force"]), RUN_TIMEOUT)?;
        out.expect_success("engine teardown --force")?;
        let mut problems = Vec::new();
        problems.extend(state_files(&self.state_dir));
        problems.extend(state_files(&self.data_dir));
        problems.extend(child_cgroups(&self.cgroup_root));
        if link_exists(&self.bridge) {
            problems.push(format!("the bridge {} still exists", self.bridge));
        }
        if !problems.is_empty() {
            bail!(
                "after the scenario and `engine teardown --force` ({}), these remain:\n  {}",
                self.tag,
                problems.join("\n  ")
            );
        }
        Ok(())
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if !self.closed {
            // The scenario failed midway: clean up as well as we can; the
            // leftovers scenario reports whatever remains.
            let _ = process::run(&mut self.command(&["teardown", "--force"]), RUN_TIMEOUT);
        }
    }
}

/// State files (`*.json`, `*.layer`) left in `dir`, as messages.
pub fn state_files(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json" || x == "layer"))
        .map(|p| {
            format!(
                "state file {}: {}",
                p.display(),
                std::fs::read_to_string(&p)
                    .unwrap_or_default()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        })
        .collect()
}

/// Child cgroups left under `root`, as messages (with their processes).
pub fn child_cgroups(root: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| {
            let procs = std::fs::read_to_string(e.path().join("cgroup.procs")).unwrap_or_default();
            format!(
                "cgroup {} (processes: [{}])",
                e.path().display(),
                procs.split_whitespace().collect::<Vec<_>>().join(" ")
            )
        })
        .collect()
}

/// Whether a network link named `name` exists in this network namespace
/// (asked through `ip`, i.e. netlink: /sys/class/net may show another one).
pub fn link_exists(name: &str) -> bool {
    testkit::wait::output(
        Command::new("ip").args(["-o", "link", "show", "dev", name]),
        std::time::Duration::from_secs(20),
    )
    .is_ok_and(|out| out.status.success())
}

/// An `engine run` command line.
#[derive(Debug, Clone)]
pub struct Run {
    rootfs: PathBuf,
    name: String,
    ip: Option<String>,
    opts: Vec<String>,
    cmd: Vec<String>,
}

impl Run {
    /// `engine run --net none --name NAME ROOTFS`, with the rootfs's default command.
    pub fn new(rootfs: &Path, name: &str) -> Run {
        Run {
            rootfs: rootfs.to_path_buf(),
            name: name.to_string(),
            ip: None,
            opts: Vec::new(),
            cmd: Vec::new(),
        }
    }

    /// Adds an option (`--cpus 0.5` is `.opt("--cpus", "0.5")`).
    pub fn opt(mut self, name: &str, value: &str) -> Run {
        self.opts.push(name.to_string());
        self.opts.push(value.to_string());
        self
    }

    /// Bridge networking with this address instead of `--net none`.
    pub fn ip(mut self, ip: &str) -> Run {
        self.ip = Some(ip.to_string());
        self
    }

    /// The command: `/bin/sh -c SCRIPT`.
    pub fn sh(self, script: &str) -> Run {
        self.cmd(&["/bin/sh", "-c", script])
    }

    /// The command and its arguments.
    pub fn cmd(mut self, args: &[&str]) -> Run {
        self.cmd = args.iter().map(|s| s.to_string()).collect();
        self
    }

    /// The engine's arguments.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec!["run".to_string(), "--net".to_string()];
        args.push(if self.ip.is_some() { "bridge" } else { "none" }.into());
        args.extend(self.opts.iter().cloned());
        args.extend(["--name".to_string(), self.name.clone()]);
        if let Some(ip) = &self.ip {
            args.extend(["--ip".to_string(), ip.clone()]);
        }
        args.push(self.rootfs.to_string_lossy().into_owned());
        if !self.cmd.is_empty() {
            args.push("--".into());
            args.extend(self.cmd.iter().cloned());
        }
        args
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_command_lines() {
        let r = Run::new(Path::new("/r"), "c1")
            .opt("--cpus", "0.5")
            .cmd(&["ps", "-e"]);
        assert_eq!(
            r.args(),
            ["run", "--net", "none", "--cpus", "0.5", "--name", "c1", "/r", "--", "ps", "-e"]
        );
        let r = Run::new(Path::new("/r"), "c2").ip("10.231.1.10").sh("ip a");
        assert_eq!(
            r.args(),
            [
                "run",
                "--net",
                "bridge",
                "--name",
                "c2",
                "--ip",
                "10.231.1.10",
                "/r",
                "--",
                "/bin/sh",
                "-c",
                "ip a"
            ]
        );
    }
}
