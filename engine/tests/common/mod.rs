//! Shared helpers for the engine's host tests: a busybox rootfs, a private
//! state directory per test, and a way to run the engine binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const ENGINE: &str = env!("CARGO_BIN_EXE_engine");

/// Where fixtures go: `ENGINE_TEST_TMPDIR`, else cargo's per-target
/// scratch directory. (In a VM guest the target directory is 9p, which
/// overlayfs refuses as a lower layer: point this at a tmpfs there.)
pub fn scratch_root() -> PathBuf {
    std::env::var_os("ENGINE_TEST_TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")))
}

/// The busybox rootfs, built once per test binary by `engine rootfs pull busybox`.
pub fn busybox() -> &'static Path {
    static ROOTFS: OnceLock<PathBuf> = OnceLock::new();
    ROOTFS.get_or_init(|| {
        let dir = scratch_root().join(format!("busybox-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let out = Command::new(ENGINE)
            .args(["rootfs", "pull", "busybox"])
            .arg(&dir)
            .output()
            .expect("run engine rootfs pull");
        assert!(
            out.status.success(),
            "engine rootfs pull busybox failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
}

/// A scratch directory removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir =
            std::env::temp_dir().join(format!("engine-test-{}-{tag}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A private engine environment: its own state dir and cgroup root, so tests
/// run in parallel without seeing each other.
pub struct Env {
    pub state: Scratch,
    pub cgroup_root: PathBuf,
}

impl Env {
    pub fn new(tag: &str) -> Env {
        let state = Scratch::new(tag);
        let cgroup_root = PathBuf::from(format!(
            "/sys/fs/cgroup/engine-test-{}-{}",
            std::process::id(),
            state.0.file_name().unwrap().to_string_lossy()
        ));
        Env { state, cgroup_root }
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(ENGINE);
        c.env("ENGINE_STATE_DIR", self.state.path())
            .env("ENGINE_CGROUP_ROOT", &self.cgroup_root)
            .env("ENGINE_ROOTFS_CACHE", self.state.path().join("cache"))
            .stdin(Stdio::null());
        c
    }

    /// `engine run --net none ROOTFS [args...]`, collected.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd()
            .args(["run", "--net", "none"])
            .args(args)
            .output()
            .expect("spawn engine")
    }

    /// `engine run --net none ARGS`, running, with stdout piped.
    pub fn spawn(&self, args: &[&str]) -> std::process::Child {
        self.cmd()
            .args(["run", "--net", "none"])
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn engine")
    }

    /// State files (NAME.json) present now.
    pub fn state_files(&self) -> Vec<String> {
        std::fs::read_dir(self.state.path())
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.ends_with(".json") || n.ends_with(".layer"))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn assert_clean(&self) {
        assert_eq!(self.state_files(), Vec::<String>::new(), "leftover state");
        assert!(!self.cgroup_root.join("x").exists());
        assert_no_mounts_under(self.state.path());
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.cgroup_root);
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The lines of a spawned engine's stdout.
pub fn lines(
    child: &mut std::process::Child,
) -> std::io::Lines<std::io::BufReader<std::process::ChildStdout>> {
    use std::io::BufRead;
    std::io::BufReader::new(child.stdout.take().expect("stdout piped")).lines()
}

/// Fails when the host's mount table mentions `path`.
pub fn assert_no_mounts_under(path: &Path) {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let p = path.to_string_lossy();
    let hits: Vec<&str> = info.lines().filter(|l| l.contains(p.as_ref())).collect();
    assert!(
        hits.is_empty(),
        "container mounts visible on the host: {hits:#?}"
    );
}

/// Polls `f` until it returns Some, or panics after `secs`.
pub fn wait_for<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The host pid of a running container's PID 1, from its state file.
pub fn container_pid(env: &Env, name: &str) -> i32 {
    wait_for(10, "the container's state file", || {
        let data = std::fs::read(env.state.path().join(format!("{name}.json"))).ok()?;
        let v: serde_json::Value = serde_json::from_slice(&data).ok()?;
        let pid = v["pid"].as_i64()? as i32;
        (pid > 0).then_some(pid)
    })
}

/// Debian's arm64 busybox-static, fetched once with apt-get into private
/// lists and cache (the host's apt state is untouched).
pub fn arm64_busybox() -> PathBuf {
    static BUSYBOX: OnceLock<PathBuf> = OnceLock::new();
    BUSYBOX
        .get_or_init(|| {
            let dir = scratch_root().join("arm64-apt");
            let binary = dir.join("x/bin/busybox");
            if binary.exists() {
                return binary;
            }
            for d in ["lists/partial", "cache/archives/partial", "deb"] {
                std::fs::create_dir_all(dir.join(d)).unwrap();
            }
            let apt = |args: &[&str]| {
                let out = Command::new("apt-get")
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
                    .output()
                    .expect("run apt-get");
                assert!(
                    out.status.success(),
                    "apt-get {args:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            };
            apt(&["update"]);
            apt(&["download", "busybox-static"]);
            let deb = std::fs::read_dir(dir.join("deb"))
                .unwrap()
                .flatten()
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|e| e == "deb"))
                .expect("the downloaded busybox-static .deb");
            let status = Command::new("dpkg-deb")
                .arg("-x")
                .arg(&deb)
                .arg(dir.join("x"))
                .status()
                .unwrap();
            assert!(status.success(), "dpkg-deb -x {}", deb.display());
            binary
        })
        .clone()
}
