//! Scenario oci: the OCI verbs on a cgroup v2 kernel. A bundle asking for
//! linux.resources (memory, pids, cpu quota) gets a cgroup with those
//! limits, its init born in it; `pause`/`resume` drive the freezer and
//! `state` reports paused; `kill` and `delete` leave no cgroup and no state.
//! linux.resources.devices becomes the cgroup's device filter: a device it
//! does not allow cannot be opened, one it allows can.

use super::Ctx;
use crate::cgroup;
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(120);
const MEMORY: u64 = 64 << 20;
const PIDS: u64 = 32;

pub fn run(ctx: &Ctx) -> Result<()> {
    let env = ctx.env("oci")?;
    let dir = ctx.settings.scratch.join("oci").join(&env.tag);
    let (bundle, root) = (dir.join("bundle"), dir.join("root"));
    std::fs::create_dir_all(&bundle)?;
    let config = json!({
        "ociVersion": "1.0.2",
        "process": {
            "user": {"uid": 0, "gid": 0},
            "args": ["sh", "-c", "echo ready; exec sleep 1000"],
            "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
            "cwd": "/",
            "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"]},
            "noNewPrivileges": true
        },
        "root": {"path": ctx.rootfs(), "readonly": true},
        "hostname": "oci",
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
        "linux": {
            "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}],
            "resources": {
                "memory": {"limit": MEMORY, "swap": MEMORY},
                "pids": {"limit": PIDS},
                "cpu": {"quota": 50000, "period": 100000}
            }
        }
    });
    std::fs::write(bundle.join("config.json"), serde_json::to_vec(&config)?)?;
    let oci = |args: &[&str], out: &Path| -> Result<String> {
        let mut cmd = env.command(&[&["--root", root.to_str().unwrap()], args].concat());
        // The init inherits create's stdio: a file, not a pipe we would wait on.
        cmd.stdin(Stdio::null())
            .stdout(std::fs::File::create(out)?)
            .stderr(std::fs::File::create(out.with_extension("err"))?);
        let status = testkit::wait::child(&mut cmd.spawn()?, TIMEOUT)?;
        let text = std::fs::read_to_string(out).unwrap_or_default();
        let err = std::fs::read_to_string(out.with_extension("err")).unwrap_or_default();
        if !status.success() {
            bail!("engine {} failed: {}", args.join(" "), err.trim());
        }
        Ok(text)
    };
    let state = |id: &str| -> Result<Value> {
        let text = oci(&["state", id], &dir.join("state.out"))?;
        serde_json::from_str(&text).context("state JSON")
    };
    // As conmon and containerd's shim are: the init `create` leaves behind
    // becomes ours to reap (only during this scenario).
    nix::sys::prctl::set_child_subreaper(true)?;
    let result = cycle(&oci, &state, &dir, &bundle, &root, &env);
    let _ = nix::sys::prctl::set_child_subreaper(false);
    result?;
    devices(&oci, &dir, config)?;
    env.close()
}

/// The device filter: a bundle binds in two device nodes of the guest's
/// /dev (file binds keep `dev`, so only the cgroup's program stands in the
/// way) and allows one of them in linux.resources.devices; inside, the
/// allowed one opens and the other is refused with EPERM. Both open here
/// first, so a refusal is the filter's doing. kmsg opened write-only needs
/// no capability; cpu_dma_latency (a misc device, always built) only sets
/// a latency request while open.
fn devices(
    oci: &dyn Fn(&[&str], &Path) -> Result<String>,
    dir: &Path,
    mut config: Value,
) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let (allowed, denied) = ("/dev/kmsg", "/dev/cpu_dma_latency");
    for dev in [allowed, denied] {
        std::fs::OpenOptions::new()
            .write(true)
            .open(dev)
            .with_context(|| format!("{dev} does not open in the guest itself"))?;
    }
    let rdev = std::fs::metadata(allowed)?.rdev();
    let (major, minor) = (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev));
    let bundle = dir.join("bundle-devices");
    std::fs::create_dir_all(&bundle)?;
    config["process"]["args"] = json!([
        "sh",
        "-c",
        "for d in /dev/allowed /dev/denied; do (exec 3>$d) 2>&1 && echo $d opened; done; true"
    ]);
    config["mounts"] = json!([
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev/allowed", "type": "bind", "source": allowed, "options": ["bind"]},
        {"destination": "/dev/denied", "type": "bind", "source": denied, "options": ["bind"]}
    ]);
    config["linux"]["resources"] = json!({"devices": [
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": major, "minor": minor, "access": "w"}
    ]});
    std::fs::write(bundle.join("config.json"), serde_json::to_vec(&config)?)?;
    let out = oci(
        &["run", "--bundle", bundle.to_str().unwrap(), "oci-devices"],
        &dir.join("devices.out"),
    )?;
    println!("    devices: {}", out.trim().replace('\n', "; "));
    let denied_refused = out
        .lines()
        .any(|l| l.contains("/dev/denied") && l.contains("Operation not permitted"));
    if !out.contains("/dev/allowed opened") || out.contains("/dev/denied opened") || !denied_refused
    {
        bail!("linux.resources.devices should let {allowed} ({major}:{minor}, allowed) open and refuse {denied} with EPERM: {out}");
    }
    Ok(())
}

fn cycle(
    oci: &dyn Fn(&[&str], &Path) -> Result<String>,
    state: &dyn Fn(&str) -> Result<Value>,
    dir: &Path,
    bundle: &Path,
    root: &Path,
    env: &crate::engine::Env,
) -> Result<()> {
    let id = "oci-limits";
    let create_out = dir.join("create.out");
    oci(
        &["create", "--bundle", bundle.to_str().unwrap(), id],
        &create_out,
    )?;
    let pid = state(id)?["pid"].as_i64().unwrap_or(0);
    let leaf = env.leaf(id);
    let procs = cgroup::read(&leaf.join("cgroup.procs"))?;
    let got = (
        cgroup::read(&leaf.join("memory.max"))?,
        cgroup::read(&leaf.join("pids.max"))?,
        cgroup::read(&leaf.join("cpu.max"))?,
    );
    println!(
        "    created: pid {pid}, memory.max {}, pids.max {}, cpu.max {}",
        got.0, got.1, got.2
    );
    if got
        != (
            MEMORY.to_string(),
            PIDS.to_string(),
            "50000 100000".to_string(),
        )
        || !procs.lines().any(|l| l.trim() == pid.to_string())
    {
        bail!(
            "linux.resources should become the cgroup's limits with the init in it: {got:?}, cgroup.procs [{procs}], init {pid}"
        );
    }
    oci(&["start", id], &dir.join("start.out"))?;
    testkit::wait::poll_until(
        Duration::from_secs(30),
        "the container's ready line",
        || {
            std::fs::read_to_string(&create_out)
                .ok()
                .filter(|t| t.contains("ready"))
        },
    )?;
    oci(&["pause", id], &dir.join("pause.out"))?;
    let paused = state(id)?["status"].clone();
    let freeze = cgroup::read(&leaf.join("cgroup.freeze"))?;
    oci(&["resume", id], &dir.join("resume.out"))?;
    let resumed = state(id)?["status"].clone();
    println!("    pause: {paused}, cgroup.freeze {freeze}; resume: {resumed}");
    if paused != "paused" || freeze != "1" || resumed != "running" {
        bail!("pause/resume should freeze and thaw the cgroup: {paused}, {freeze}, {resumed}");
    }
    oci(&["kill", id, "KILL"], &dir.join("kill.out"))?;
    testkit::wait::poll_until(Duration::from_secs(30), "the container to stop", || {
        state(id).ok().filter(|s| s["status"] == "stopped")
    })?;
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid as i32), None);
    oci(&["delete", id], &dir.join("delete.out"))?;
    if leaf.exists() || root.join(id).exists() {
        bail!(
            "delete should remove the cgroup {} and the state {}",
            leaf.display(),
            root.join(id).display()
        );
    }
    Ok(())
}
