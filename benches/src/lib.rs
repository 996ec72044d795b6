//! What the criterion bench (`benches/startup.rs`) and the `compare` binary
//! share: the engine binary, a busybox rootfs, a private network namespace to
//! hold every bridge and veth, a fence that waits until dead network
//! namespaces are torn down, and the cgroup v2 check.

use anyhow::{anyhow, bail, Context, Result};
use std::fs;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Set once this process is in a network namespace of its own: the only place
/// where it may make a veth.
static PRIVATE_NETNS: AtomicBool = AtomicBool::new(false);

/// A scratch directory under the temp dir, removed when dropped.
pub fn temp_dir(prefix: &str) -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(&format!("{prefix}-"))
        .tempdir()
        .context("cannot create a scratch directory")
}

pub use testkit::quote::which;

/// The musl target of this architecture, when its standard library and
/// musl-gcc are installed (`rustup target add x86_64-unknown-linux-musl`,
/// `apt-get install musl-tools`).
fn musl_target() -> Option<String> {
    let target = format!("{}-unknown-linux-musl", std::env::consts::ARCH);
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .ok()?;
    let sysroot = String::from_utf8(sysroot.stdout).ok()?;
    let lib = Path::new(sysroot.trim()).join("lib/rustlib").join(&target);
    (lib.is_dir() && which("musl-gcc").is_some()).then_some(target)
}

/// The release `engine` binary: `ENGINE_BIN` when set, else built now with
/// `cargo build --release -p engine` (a no-op when up to date), whose JSON
/// messages say where the binary is, whatever the target directory. Where
/// the musl target is installed it is built static against musl: no
/// dynamic loader and no shared libc pages, so it starts faster and its
/// supervisor stays small (the way to ship it).
pub fn engine_binary() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("ENGINE_BIN") {
        let bin = PathBuf::from(bin);
        if !bin.is_file() {
            bail!("ENGINE_BIN={} is not a file", bin.display());
        }
        return Ok(bin);
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let mut build = Command::new(&cargo);
    build.args(["build", "--release", "-p", "engine"]);
    if let Some(target) = musl_target() {
        build
            .args(["--target", &target])
            .env(format!("CC_{}", target.replace('-', "_")), "musl-gcc");
    }
    let built = build
        .args(["--message-format", "json-render-diagnostics"])
        .arg("--manifest-path")
        .arg(&manifest)
        .stderr(Stdio::inherit())
        .output();
    let out = match built {
        Ok(out) => out,
        // No cargo (a VM guest running binaries built on the host): the
        // engine built beside this binary, in target/release.
        Err(_) => return sibling_engine(),
    };
    if !out.status.success() {
        bail!("`cargo build --release -p engine` failed: fix the build, or set ENGINE_BIN to an engine binary");
    }
    for line in out.stdout.lines() {
        let msg: serde_json::Value = serde_json::from_str(&line?).unwrap_or_default();
        if msg["reason"] == "compiler-artifact" && msg["target"]["name"] == "engine" {
            if let Some(exe) = msg["executable"].as_str() {
                return Ok(PathBuf::from(exe));
            }
        }
    }
    bail!("cargo built no `engine` executable: set ENGINE_BIN")
}

/// `target/release/engine`, seen from `target/release/compare` or
/// `target/release/deps/startup-HASH`.
fn sibling_engine() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    exe.ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join("engine"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            anyhow!(
                "no cargo to build the engine and no engine beside {}: set ENGINE_BIN",
                exe.display()
            )
        })
}

/// Fills `dest` (which must not exist) with a busybox root filesystem.
/// `engine rootfs pull busybox` is the engine's own way; while it is missing
/// or fails, the same tree is built here from the host's static busybox.
/// Returns how it was made.
pub fn busybox_rootfs(engine: &Path, dest: &Path) -> Result<&'static str> {
    let pulled = Command::new(engine)
        .args(["rootfs", "pull", "busybox"])
        .arg(dest)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if pulled && dest.join("bin/busybox").is_file() && dest.join("bin/true").exists() {
        return Ok("engine rootfs pull busybox");
    }
    let _ = fs::remove_dir_all(dest);
    build_busybox_rootfs(dest)?;
    Ok("built here from the host's /bin/busybox (engine rootfs pull busybox failed)")
}

fn build_busybox_rootfs(dest: &Path) -> Result<()> {
    testkit::busybox::build(dest)
        .with_context(|| format!("cannot build a busybox rootfs in {}", dest.display()))
}

/// Moves this process into a network namespace of its own, so that every
/// bridge and veth made from here on (by the engine, podman, the fence) lives
/// and dies there, never in the machine's namespace. Call it while the process
/// has one thread. Returns the inodes (before, after); fails unless they differ.
pub fn enter_private_netns() -> Result<(u64, u64)> {
    let inodes = testkit::netns::enter_private()?;
    PRIVATE_NETNS.store(true, Ordering::SeqCst);
    Ok(inodes)
}

/// Waits until every network namespace that died before the call has been
/// torn down by the kernel, and returns how long that took.
///
/// Namespace teardown is asynchronous: the kernel queues dead namespaces and
/// one ordered work item cleans them in batches. The fence queues one more
/// namespace behind them, holding one end of a veth whose other end is here,
/// and waits for that end to vanish: by then every earlier namespace is gone.
/// The veth lives in the caller's namespace, which must be a private one
/// (see [`enter_private_netns`]).
pub fn netns_fence(timeout: Duration) -> Result<Duration> {
    if !PRIVATE_NETNS.load(Ordering::SeqCst) {
        bail!("the netns fence makes a veth: call enter_private_netns first");
    }
    let own = testkit::netns::inode_of("/proc/self/ns/net")?;
    let name = format!("bfence{}", std::process::id() % 1_000_000);
    let mut holder = Command::new("unshare")
        .args(["--net", "--", "sleep", "60"])
        .stdin(Stdio::null())
        .spawn()
        .context("cannot run unshare (util-linux) for the netns fence")?;
    let pid = holder.id();
    let result = (|| {
        // Wait until the holder is in its own namespace and has exec'd sleep.
        testkit::wait::poll_until(
            Duration::from_secs(5),
            "the netns fence holder to reach its namespace",
            || {
                let ns = testkit::netns::inode_of(&format!("/proc/{pid}/ns/net")).unwrap_or(own);
                let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                (ns != own && comm.trim() == "sleep").then_some(())
            },
        )?;
        let status = Command::new("ip")
            .args([
                "link", "add", &name, "type", "veth", "peer", "name", "fence0",
            ])
            .args(["netns", &pid.to_string()])
            .status()
            .context("cannot run ip (iproute2) for the netns fence")?;
        if !status.success() {
            bail!("ip link add {name} type veth failed");
        }
        Ok(())
    })();
    let _ = holder.kill();
    let _ = holder.wait();
    result?;
    let start = Instant::now();
    // Polled every 0.2 ms, not with testkit's 10 ms wait: the time is the figure.
    while nix::net::if_::if_nametoindex(name.as_str()).is_ok() {
        if start.elapsed() > timeout {
            let _ = Command::new("ip").args(["link", "del", &name]).status();
            return Err(anyhow!(
                "dead network namespaces were not torn down within {timeout:?}"
            ));
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    Ok(start.elapsed())
}

/// The fence's own cost on a quiet system: the least of a few runs. Benches
/// subtract it, so that what they add is only the teardown their runs left.
pub fn netns_fence_floor() -> Result<Duration> {
    netns_fence(Duration::from_secs(10))?;
    let mut best = Duration::MAX;
    for _ in 0..5 {
        best = best.min(netns_fence(Duration::from_secs(10))?);
    }
    Ok(best)
}

/// Ok when cgroup v2 at /sys/fs/cgroup offers what `engine run
/// --cpus/--memory` needs; else why not, in one sentence.
pub fn cgroup_v2_limits() -> std::result::Result<(), String> {
    testkit::cgroup::v2_limits()
}

/// `engine` with its state in `state_dir` (and kept containers beside it,
/// in `STATE_DIR.data`), quiet: the engine's one line about missing
/// resource control would otherwise print on every run.
pub fn engine_command(engine: &Path, state_dir: &Path) -> Command {
    let mut cmd = Command::new(engine);
    cmd.env("ENGINE_STATE_DIR", state_dir)
        .env("ENGINE_DATA_DIR", state_dir.with_extension("data"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// The first line of a failed command's stderr, for a table cell.
pub fn first_line(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("no message");
    let mut line = line.replace('|', "/");
    if line.len() > 120 {
        let cut = (0..=117)
            .rev()
            .find(|&i| line.is_char_boundary(i))
            .unwrap_or(0);
        line.truncate(cut);
        line.push_str("...");
    }
    line
}
