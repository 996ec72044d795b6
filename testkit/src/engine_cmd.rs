//! The engine binary in an environment of its own: a private state dir,
//! data dir, cgroup root, rootfs cache and (optionally) bridge and subnet, so tests run
//! in parallel without seeing each other; every command gets a timeout.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// The timeout of every command made by [`Engine::cmd`], unless changed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// A private engine environment. Its state dir is a [`tempfile::TempDir`]
/// under [`crate::busybox::scratch_root`]; its cgroup root (and any leaf a
/// failed test left in it) is removed on drop.
pub struct Engine {
    bin: PathBuf,
    state: tempfile::TempDir,
    /// `ENGINE_DATA_DIR`: kept containers' records, logs and layers.
    data: tempfile::TempDir,
    cgroup_root: PathBuf,
    bridge: Option<String>,
    subnet: Option<String>,
    extra_env: Vec<(&'static str, OsString)>,
    timeout: Duration,
}

impl Engine {
    /// An environment for the engine binary `bin`
    /// (`env!("CARGO_BIN_EXE_engine")` in the engine's own tests).
    pub fn new(bin: impl Into<PathBuf>, tag: &str) -> Engine {
        let state = tempfile::Builder::new()
            .prefix(&format!("engine-test-{tag}-"))
            .tempdir_in(crate::busybox::scratch_root())
            .expect("create a state directory");
        let data = tempfile::Builder::new()
            .prefix(&format!("engine-test-{tag}-data-"))
            .tempdir_in(crate::busybox::scratch_root())
            .expect("create a data directory");
        let leaf = state
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        Engine {
            bin: bin.into(),
            cgroup_root: PathBuf::from("/sys/fs/cgroup").join(leaf),
            state,
            data,
            bridge: None,
            subnet: None,
            extra_env: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The same, with `ENGINE_BRIDGE` and `ENGINE_SUBNET` set: call it only
    /// from a thread in a private network namespace (see [`crate::netns`]).
    pub fn with_network(mut self, bridge: &str, subnet: &str) -> Engine {
        self.bridge = Some(bridge.to_string());
        self.subnet = Some(subnet.to_string());
        self
    }

    /// Another variable of the environment (`ENGINE_USERNS_POOL`, say).
    pub fn with_env(mut self, key: &'static str, value: impl Into<OsString>) -> Engine {
        self.extra_env.push((key, value.into()));
        self
    }

    /// The timeout for the commands made from now on.
    pub fn with_timeout(mut self, timeout: Duration) -> Engine {
        self.timeout = timeout;
        self
    }

    pub fn bin(&self) -> &Path {
        &self.bin
    }

    pub fn state_dir(&self) -> &Path {
        self.state.path()
    }

    /// Where kept containers (`run -d` without `--rm`) have their record,
    /// log and writable layer.
    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    pub fn cgroup_root(&self) -> &Path {
        &self.cgroup_root
    }

    pub fn bridge(&self) -> Option<&str> {
        self.bridge.as_deref()
    }

    /// The environment variables that make this environment private.
    pub fn envs(&self) -> Vec<(&'static str, OsString)> {
        let mut envs = vec![
            ("ENGINE_STATE_DIR", self.state.path().as_os_str().to_owned()),
            ("ENGINE_DATA_DIR", self.data.path().as_os_str().to_owned()),
            (
                "ENGINE_CGROUP_ROOT",
                self.cgroup_root.as_os_str().to_owned(),
            ),
            (
                "ENGINE_ROOTFS_CACHE",
                self.state.path().join("cache").into_os_string(),
            ),
        ];
        if let Some(bridge) = &self.bridge {
            envs.push(("ENGINE_BRIDGE", bridge.into()));
        }
        if let Some(subnet) = &self.subnet {
            envs.push(("ENGINE_SUBNET", subnet.into()));
        }
        envs.extend(self.extra_env.iter().cloned());
        envs
    }

    /// `engine` in this environment, with the timeout: for commands that run
    /// to their end (`.assert()`, `.output()`).
    pub fn cmd(&self) -> assert_cmd::Command {
        let mut c = assert_cmd::Command::new(&self.bin);
        c.envs(self.envs()).timeout(self.timeout);
        c
    }

    /// `engine` in this environment as a std Command, stdin null: for
    /// processes the test runs beside it (wait for them with
    /// [`crate::wait::child`], which has a timeout).
    pub fn spawnable(&self) -> std::process::Command {
        let mut c = std::process::Command::new(&self.bin);
        c.envs(self.envs()).stdin(Stdio::null());
        c
    }

    /// Whether state file `file` is an exited detached container's record.
    pub fn is_exited_record(&self, file: &str) -> bool {
        // A kept container's writable layer (NAME.layer) goes with its record.
        let file = match file.strip_suffix(".layer") {
            Some(name) => format!("{name}.json"),
            None => file.to_string(),
        };
        std::fs::read(self.state.path().join(&file))
            .or_else(|_| std::fs::read(self.data.path().join(&file)))
            .ok()
            .and_then(|d| serde_json::from_slice::<serde_json::Value>(&d).ok())
            .is_some_and(|v| v.get("finished").is_some_and(|f| !f.is_null()))
    }

    /// The names of the records and layers in the state and data dirs now.
    pub fn state_files(&self) -> Vec<String> {
        let mut names: Vec<String> = [self.state.path(), self.data.path()]
            .iter()
            .flat_map(|dir| std::fs::read_dir(dir).into_iter().flatten().flatten())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".json") || n.ends_with(".layer"))
            .collect();
        names.sort();
        names
    }

    /// The cgroup directories left under the cgroup root (one per container
    /// while it runs, none after).
    pub fn cgroup_leaves(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.cgroup_root)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Nothing left behind: no record or layer, no cgroup leaf, no mount
    /// under the state dir.
    /// Records of detached containers that have ended are kept on purpose
    /// (until `engine rm`; they hold only their name and log): not counted
    /// here. tests/persist.rs checks that `rm` removes them.
    pub fn assert_clean(&self) {
        let left: Vec<String> = self
            .state_files()
            .into_iter()
            .filter(|f| !self.is_exited_record(f))
            .collect();
        assert_eq!(left, Vec::<String>::new(), "leftover state");
        assert_eq!(
            self.cgroup_leaves(),
            Vec::<String>::new(),
            "leftover cgroups under {}",
            self.cgroup_root.display()
        );
        crate::mountinfo::assert_none_under(self.state.path());
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        for leaf in self.cgroup_leaves() {
            let _ = std::fs::remove_dir(self.cgroup_root.join(leaf));
        }
        let _ = std::fs::remove_dir(&self.cgroup_root);
    }
}

/// The arguments of `engine run -d --net none --name NAME ROOTFS -- COMMAND...`: a
/// detached container with no network, as most tests of detached runs want.
pub fn detached_args<'a>(rootfs: &'a str, name: &'a str, command: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["run", "-d", "--net", "none", "--name", name, rootfs, "--"];
    args.extend_from_slice(command);
    args
}

/// The arguments of `engine exec -e TAG=TAG -w /tmp NAME -- sh -c SCRIPT`:
/// an exec whose output says which one it was, and where it ran.
pub fn tagged_exec_args(tag: &str, name: &str, script: &str) -> Vec<String> {
    let tag = format!("TAG={tag}");
    [
        "exec", "-e", &tag, "-w", "/tmp", name, "--", "sh", "-c", script,
    ]
    .map(String::from)
    .to_vec()
}
