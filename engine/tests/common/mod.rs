//! What the engine's integration tests share beyond the testkit crate: the
//! binary under test, the busybox fixture as a string, and a running
//! container whose output lines the test reads with deadlines.
#![allow(dead_code)]

pub use assert_cmd::assert::Assert;
pub use predicates::prelude::*;
pub use testkit::engine_cmd::Engine;
#[allow(unused_imports)]
pub use testkit::engine_cmd::{detached_args, tagged_exec_args};
#[allow(unused_imports)]
pub use testkit::{busybox, mountinfo, quote, wait};

use std::process::{Child, ExitStatus, Stdio};
use std::time::Duration;

pub const ENGINE: &str = env!("CARGO_BIN_EXE_engine");

/// How long a line, a file or a state change may take to show up.
pub const SHORT: Duration = Duration::from_secs(20);

/// How long a container run beside the test may take in all.
pub const LONG: Duration = testkit::engine_cmd::DEFAULT_TIMEOUT;

/// The busybox rootfs shared by the tests of one binary.
pub fn rootfs() -> &'static str {
    busybox::rootfs().to_str().unwrap()
}

/// A private copy of the busybox rootfs, at `name` in a temporary directory
/// that lives as long as the returned guard (for tests that write into it).
pub fn rootfs_copy(name: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join(name);
    busybox::copy_to(&root);
    (dir, root)
}

/// `engine run --write-through ROOT wt -- sh -c SCRIPT`, which must succeed.
pub fn run_write_through(env: &Engine, root: &std::path::Path, script: &str) -> Assert {
    run(
        env,
        &[
            "--write-through",
            "--name",
            "wt",
            root.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            script,
        ],
    )
    .code(0)
}

/// A private engine environment for the binary under test.
pub fn engine(tag: &str) -> Engine {
    Engine::new(ENGINE, tag)
}

/// `engine run --net none ARGS`, run to its end (with the timeout).
/// `run -d` of the busybox rootfs running `sh -c script`, named `name`;
/// it prints the name.
pub fn detach(env: &Engine, name: &str, script: &str) {
    env.cmd()
        .args(detached_args(rootfs(), name, &["sh", "-c", script]))
        .assert()
        .code(0)
        .stdout(format!("{name}\n"));
}

pub fn run(env: &Engine, args: &[&str]) -> Assert {
    env.cmd().args(["run", "--net", "none"]).args(args).assert()
}

pub fn stdout(a: &Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stdout).into_owned()
}

pub fn stderr(a: &Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stderr).into_owned()
}

/// An engine process the test runs beside it: its stdout read line by line
/// with deadlines, its stdin a pipe the test may close to let the
/// container go on. Killed on drop.
pub struct Running {
    pub child: Child,
    pub lines: wait::Lines,
}

impl Running {
    /// `engine ARGS` with stdout and stdin piped.
    pub fn spawn(env: &Engine, args: &[&str]) -> Running {
        let mut child = env
            .spawnable()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn engine");
        let lines = wait::Lines::new(child.stdout.take().unwrap());
        Running { child, lines }
    }

    /// `engine run --net none ARGS`.
    pub fn run(env: &Engine, args: &[&str]) -> Running {
        Running::spawn(env, &[&["run", "--net", "none"], args].concat())
    }

    /// The next line the container prints.
    pub fn line(&mut self) -> String {
        self.lines.expect_next(SHORT)
    }

    /// Waits for the next line and checks it.
    pub fn expect(&mut self, want: &str) {
        assert_eq!(self.line(), want, "lines so far: {:?}", self.lines.seen);
    }

    /// Closes the container's stdin (a `read` inside returns).
    pub fn close_stdin(&mut self) {
        drop(self.child.stdin.take());
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), sig)
            .expect("signal the engine");
    }

    /// The engine's exit status, within [`LONG`].
    pub fn wait(&mut self) -> ExitStatus {
        self.close_stdin();
        wait::child(&mut self.child, LONG).unwrap_or_else(|e| panic!("engine: {e}"))
    }

    /// The rest of stdout, once the engine has ended.
    pub fn rest(&mut self) -> Vec<String> {
        let mut rest = Vec::new();
        while let Ok(line) = self.lines.next(SHORT) {
            rest.push(line);
        }
        rest
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The host pid of a running container's PID 1, from its state file (in
/// the data directory for a kept container).
pub fn container_pid(env: &Engine, name: &str) -> i32 {
    let file = format!("{name}.json");
    let (record, kept) = (env.state_dir().join(&file), env.data_dir().join(&file));
    wait::until(SHORT, &format!("{}", record.display()), || {
        let data = std::fs::read(&record)
            .or_else(|_| std::fs::read(&kept))
            .ok()?;
        let v: serde_json::Value = serde_json::from_slice(&data).ok()?;
        let pid = v["pid"].as_i64()? as i32;
        (pid > 0).then_some(pid)
    })
}

/// Where the engine keeps the host-wide leases of host IDs (fixed, for
/// every state directory).
pub const LEASE_ROOT: &str = "/run/engine-userns";

/// One host-wide ID lease, as its file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdLease {
    pub name: String,
    pub uids: Vec<(u64, u64)>,
    pub gids: Vec<(u64, u64)>,
}

/// The ID leases of the containers of `state_dir` (whatever their holders'
/// state), by name.
pub fn id_leases(state_dir: &std::path::Path) -> Vec<IdLease> {
    let want = std::fs::canonicalize(state_dir).unwrap_or_else(|_| state_dir.to_path_buf());
    let spans = |v: &serde_json::Value| -> Vec<(u64, u64)> {
        v.as_array()
            .into_iter()
            .flatten()
            .map(|s| (s[0].as_u64().unwrap(), s[1].as_u64().unwrap()))
            .collect()
    };
    let mut found: Vec<IdLease> = std::fs::read_dir(LEASE_ROOT)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .filter_map(|e| {
            let v: serde_json::Value =
                serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok()?;
            (v["state_dir"].as_str()? == want.to_str()?).then(|| IdLease {
                name: v["name"].as_str().unwrap().to_string(),
                uids: spans(&v["uids"]),
                gids: spans(&v["gids"]),
            })
        })
        .collect();
    found.sort_by(|a, b| a.name.cmp(&b.name));
    found
}

/// Debian's arm64 busybox-static, fetched once with apt-get into private
/// lists and cache (the host's apt state is untouched).
pub fn arm64_busybox() -> std::path::PathBuf {
    use std::sync::OnceLock;
    static BUSYBOX: OnceLock<std::path::PathBuf> = OnceLock::new();
    BUSYBOX
        .get_or_init(|| {
            let dir = busybox::scratch_root().join("engine-test-arm64-apt");
            let binary = dir.join("x/bin/busybox");
            if binary.exists() {
                return binary;
            }
            for d in ["lists/partial", "cache/archives/partial", "deb"] {
                std::fs::create_dir_all(dir.join(d)).unwrap();
            }
            let apt = |args: &[&str]| {
                assert_cmd::Command::new(quote::require("apt-get", "apt"))
                    .arg("-q")
                    .args([
                        "-o",
                        "APT::Architecture=arm64",
                        "-o",
                        "APT::Architectures=arm64",
                    ])
                    .arg("-o")
                    .arg(format!("Dir::State::Lists={}", dir.join("lists").display()))
                    .arg("-o")
                    .arg(format!("Dir::Cache={}", dir.join("cache").display()))
                    .args(args)
                    .current_dir(dir.join("deb"))
                    .timeout(Duration::from_secs(300))
                    .assert()
                    .success();
            };
            apt(&["update"]);
            apt(&["download", "busybox-static"]);
            let deb = std::fs::read_dir(dir.join("deb"))
                .unwrap()
                .flatten()
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|e| e == "deb"))
                .expect("the downloaded busybox-static .deb");
            assert_cmd::Command::new(quote::require("dpkg-deb", "dpkg"))
                .arg("-x")
                .arg(&deb)
                .arg(dir.join("x"))
                .timeout(Duration::from_secs(60))
                .assert()
                .success();
            binary
        })
        .clone()
}
