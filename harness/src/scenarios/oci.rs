//! Scenario oci: the OCI verbs on a cgroup v2 kernel. A bundle asking for
//! linux.resources (memory, pids, cpu quota, shares and cpus) gets a cgroup with those
//! limits, its init born in it; `pause`/`resume` drive the freezer and
//! `state` reports paused; `kill` and `delete` leave no cgroup and no state.
//! linux.resources.devices becomes the cgroup's device filter: a device it
//! does not allow cannot be opened, one it allows can.
//!
//! Scenario podman (`run_podman`): podman, a real client, runs a container
//! on the engine with `--memory 64m --cpus 0.5 --pids-limit 50`: the
//! container sees those limits in its own cgroup, a fork loop stops at the
//! pids limit, and a memory hog as the container's process is OOM-killed
//! (podman exits 137).

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
                "cpu": {"quota": 50000, "period": 100000, "shares": 512, "cpus": "0", "mems": "0"}
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
    let result = cycle(&oci, &state, &dir, &bundle, &root, &env)
        .and_then(|()| joined_user_namespace(&oci, &state, &dir, &root, &env, config.clone()));
    let _ = nix::sys::prctl::set_child_subreaper(false);
    result?;
    devices(&oci, &dir, config)?;
    env.close()
}

/// A user namespace joined by path, with limits: the intermediate process
/// that joins it is cloned into the container's cgroup by host root, and
/// the init it clones is born there, in the joined namespace, under the
/// bundle's limits. The namespace is held by `unshare --user sleep`, its
/// maps (0 -> 200000) written from here.
fn joined_user_namespace(
    oci: &dyn Fn(&[&str], &Path) -> Result<String>,
    state: &dyn Fn(&str) -> Result<Value>,
    dir: &Path,
    root: &Path,
    env: &crate::engine::Env,
    mut config: Value,
) -> Result<()> {
    let mut holder = std::process::Command::new("unshare")
        .args(["--user", "sleep", "1000"])
        .spawn()
        .context("unshare --user (util-linux) for a user namespace to join")?;
    let result = (|| -> Result<()> {
        let hpid = holder.id();
        let ours = std::fs::read_link("/proc/self/ns/user")?;
        let userns =
            testkit::wait::poll_until(Duration::from_secs(30), "unshare's user namespace", || {
                std::fs::read_link(format!("/proc/{hpid}/ns/user"))
                    .ok()
                    .filter(|ns| *ns != ours)
            })?;
        for file in ["gid_map", "uid_map"] {
            std::fs::write(format!("/proc/{hpid}/{file}"), "0 200000 65536\n")?;
        }
        let bundle = dir.join("bundle-userns");
        std::fs::create_dir_all(&bundle)?;
        config["linux"]["namespaces"]
            .as_array_mut()
            .context("namespaces")?
            .push(json!({"type": "user", "path": format!("/proc/{hpid}/ns/user")}));
        std::fs::write(bundle.join("config.json"), serde_json::to_vec(&config)?)?;
        let id = "oci-userns";
        oci(
            &["create", "--bundle", bundle.to_str().unwrap(), id],
            &dir.join("create-userns.out"),
        )?;
        let pid = state(id)?["pid"].as_i64().unwrap_or(0);
        let leaf = env.leaf(id);
        let init_ns = std::fs::read_link(format!("/proc/{pid}/ns/user")).ok();
        let procs = cgroup::read(&leaf.join("cgroup.procs")).unwrap_or_default();
        let pids_max = cgroup::read(&leaf.join("pids.max")).unwrap_or_default();
        println!(
            "    joined user namespace: init {pid} in {init_ns:?} (held: {userns:?}), pids.max {pids_max}"
        );
        oci(&["delete", "--force", id], &dir.join("delete-userns.out"))?;
        testkit::wait::reap(pid as i32, Duration::from_secs(30))?;
        if init_ns.as_ref() != Some(&userns)
            || !procs.lines().any(|l| l.trim() == pid.to_string())
            || pids_max != PIDS.to_string()
        {
            bail!("the init should be in the joined user namespace {userns:?} and in its cgroup under pids.max {PIDS}: {init_ns:?}, cgroup.procs [{procs}], pids.max {pids_max}");
        }
        if leaf.exists() || root.join(id).exists() {
            bail!(
                "delete should remove the cgroup {} and the state",
                leaf.display()
            );
        }
        Ok(())
    })();
    let _ = holder.kill();
    let _ = holder.wait();
    result
}

/// Scenario podman: see the module's comment and [`podman`].
pub fn run_podman(ctx: &Ctx) -> Result<()> {
    let env = ctx.env("podman")?;
    let dir = ctx.settings.scratch.join("podman").join(&env.tag);
    std::fs::create_dir_all(&dir)?;
    podman(ctx, &env, &dir)?;
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
        cgroup::read(&leaf.join("cpu.weight"))?,
        cgroup::read(&leaf.join("cpuset.cpus"))?,
        cgroup::read(&leaf.join("cpuset.mems"))?,
    );
    println!(
        "    created: pid {pid}, memory.max {}, pids.max {}, cpu.max {}, cpu.weight {}, cpuset.cpus {}, cpuset.mems {}",
        got.0, got.1, got.2, got.3, got.4, got.5
    );
    // cpu.shares 512 is cpu.weight 20 by runc's formula; cpu.cpus and mems are cpuset's.
    if got
        != (
            MEMORY.to_string(),
            PIDS.to_string(),
            "50000 100000".to_string(),
            "20".to_string(),
            "0".to_string(),
            "0".to_string(),
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
    testkit::wait::reap(pid as i32, Duration::from_secs(30))?;
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

/// The container's script for [`podman`]: its limits as it sees them, a
/// fork loop until the pids limit refuses a fork (the subshell dies of
/// "can't fork"; pids.events counts the refusal; 60 at most, so that an
/// engine ignoring the limit fails fast), then, once the loop's
/// processes are killed and reaped (`jobs` reaps), a hog that allocates
/// 200 MB in one buffer as the container's own process. Shell builtins
/// only after the loop: no fork is left. POSIX sh (busybox ash, dash).
const PODMAN_SCRIPT: &str = "cd /sys/fs/cgroup
echo limits $(cat memory.max memory.swap.max cpu.max pids.max)
(i=0; while [ $i -lt 60 ]; do sleep 60 & i=$((i+1)); done) 2>/dev/null
read k v < pids.events; echo pids.events $k $v
kill -9 -1; while read n < pids.current; [ $n -gt 1 ]; do jobs; done
exec dd if=/dev/zero of=/dev/null bs=200M count=1";

/// podman (with conmon) drives the engine's OCI verbs with limits: one
/// `podman run --rm` (about 15-25 s under TCG: podman is slow there, so
/// one invocation proves it all). podman gets storage of its own in the
/// scratch directory, `--network none` (the guest has no NIC) and, as its
/// cgroup parent, this environment's cgroup root, so that `env.close()`
/// sees the container's cgroup go.
fn podman(ctx: &Ctx, env: &crate::engine::Env, dir: &Path) -> Result<()> {
    let podman = testkit::quote::which("podman").context(
        "podman is not installed: apt-get install podman (the scenario drives the engine through podman and conmon)",
    )?;
    let pdir = dir.join("podman");
    std::fs::create_dir_all(&pdir)?;
    // podman passes --cgroup-manager and --log only to runtimes it knows.
    let conf = pdir.join("containers.conf");
    std::fs::write(
        &conf,
        "[engine]\nevents_logger = \"none\"\nruntime_supports_json = [\"engine\"]\n",
    )?;
    let mount = cgroup::mount_point().context("no cgroup2 mount")?;
    let parent = Path::new("/").join(env.cgroup_root.strip_prefix(&mount).with_context(|| {
        format!(
            "{} is not below the cgroup2 mount {}",
            env.cgroup_root.display(),
            mount.display()
        )
    })?);
    // `:O`: an overlay on the shared fixture, which stays untouched.
    let rootfs = format!("{}:O", ctx.rootfs().display());
    let mut cmd = std::process::Command::new(&podman);
    cmd.env("CONTAINERS_CONF", &conf)
        .arg("--root")
        .arg(pdir.join("storage"))
        .arg("--runroot")
        .arg(pdir.join("run"))
        .arg("--tmpdir")
        .arg(pdir.join("tmp"))
        .args([
            "--storage-driver",
            "vfs",
            "--cgroup-manager",
            "cgroupfs",
            "--runtime",
        ])
        .arg(&env.engine)
        .args(["run", "--rm", "--network", "none", "--cgroup-parent"])
        .arg(&parent)
        .args([
            "--ulimit",
            "nofile=20000:20000",
            "--ulimit",
            "nproc=1000:1000",
        ])
        .args(["--memory", "64m", "--cpus", "0.5", "--pids-limit", "50"])
        .args(["--rootfs", &rootfs, "/bin/sh", "-c", PODMAN_SCRIPT]);
    let out = crate::process::run(&mut cmd, TIMEOUT)?;
    // podman puts conmon in PARENT/conmon and leaves that cgroup: it is
    // podman's, not the engine's.
    let conmon = env.cgroup_root.join("conmon");
    if conmon.exists() {
        std::fs::remove_dir(&conmon)
            .with_context(|| format!("cannot remove podman's cgroup {}", conmon.display()))?;
    }
    println!(
        "    podman run --memory 64m --cpus 0.5 --pids-limit 50: exit {} after {:.1} s; {}",
        out.code(),
        out.elapsed.as_secs_f64(),
        out.stdout.trim().replace('\n', "; ")
    );
    let limits = "limits 67108864 67108864 50000 100000 50";
    let refused = out.stdout.lines().find_map(|l| {
        l.strip_prefix("pids.events max ")?
            .trim()
            .parse::<u64>()
            .ok()
    });
    if !out.stdout.lines().any(|l| l == limits) {
        bail!("the container should see memory.max 64M, memory.swap.max 64M (podman asks memory+swap = 2x), cpu.max 50000 100000, pids.max 50 ({limits}):\n{out}");
    }
    if refused.unwrap_or(0) == 0 {
        bail!("the fork loop should stop at the pids limit (pids.events max >= 1): {refused:?}\n{out}");
    }
    if out.code() != 137 {
        bail!("the 200 MB hog under --memory 64m should be OOM-killed and podman exit 137:\n{out}");
    }
    Ok(())
}
