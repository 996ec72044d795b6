//! Scenario `confinement` (issue 14): the attacks that need cgroup v2 or a
//! kernel with every syscall (Debian's, in the guest), run as container root
//! on the root-owned rootfs with default options; each must FAIL:
//! - cgroup limits rewritten from inside through a fresh cgroup2 mount;
//! - a fork bomb with no `--pids-limit` (there must be a default limit; the
//!   bomb is only detonated when one exists, so an unbounded bomb never
//!   takes the guest down);
//! - a process joining by `engine exec`, caught before its exec: its
//!   environment, ptrace, and an fd of a host cgroup directory climbed to
//!   the host's `/`;
//! - the syscall probes this project's host kernel lacks (kexec_load,
//!   init_module, iopl, ioperm), io_uring (a vsock fd through an SQE), and
//!   opening /proc/sysrq-trigger for writing;
//! - (issue 22, `host_mounts`) a setuid file left in a volume, and any
//!   container mount reaching a host whose `/` is shared.
//!
//! The probe binary is engine/tests/attack/attack.c (shared with the engine's
//! host tests), built static here and given to the container as a read-only
//! volume, so the shared fixture rootfs is never changed. Every attack runs;
//! the scenario fails listing each one that succeeded.

use super::Ctx;
use crate::cgroup;
use crate::engine::{Env, Run, LINE_TIMEOUT, RUN_TIMEOUT};
use crate::process;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Where the probe binary appears inside the containers.
const PROBE_DIR: &str = "/.attack";

pub fn run(ctx: &Ctx) -> Result<()> {
    let env = ctx.env("conf")?;
    let probe_dir = build_probe(&ctx.settings.scratch)?;
    let volume = format!("{}:{PROBE_DIR}:ro", probe_dir.display());
    let mut succeeded = Vec::new();
    // Each part's time: this is the slowest scenario under emulation.
    let mut took = Vec::new();
    let mut clock = Instant::now();
    let mut lap = |part: &str| {
        took.push(format!("{part} {:.1} s", clock.elapsed().as_secs_f64()));
        clock = Instant::now();
    };
    succeeded.extend(limits_rewritten(ctx, &env)?);
    lap("limits");
    succeeded.extend(fork_bomb_default_limit(ctx, &env)?);
    lap("fork bomb");
    succeeded.extend(exec_joining_process(ctx, &env, &volume)?);
    lap("exec spy");
    succeeded.extend(syscalls(ctx, &env, &volume)?);
    lap("syscalls");
    succeeded.extend(super::host_mounts::setuid_in_a_volume(ctx, &env, &volume)?);
    lap("setuid volume");
    succeeded.extend(super::host_mounts::mounts_stay_in_containers(ctx, &env)?);
    lap("host mounts");
    env.close()?;
    lap("close");
    println!("    took: {}", took.join(", "));
    if !succeeded.is_empty() {
        bail!(
            "{} attack(s) succeeded:\n  {}",
            succeeded.len(),
            succeeded.join("\n  ")
        );
    }
    Ok(())
}

/// `cc -static` of the probe, into SCRATCH/attack/attack.
fn build_probe(scratch: &Path) -> Result<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../engine/tests/attack/attack.c");
    let dir = scratch.join("attack");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // Cross-built by the launcher for a foreign guest (no compiler there).
    if let Some(probe) = std::env::var_os("HARNESS_ATTACK_PROBE") {
        std::fs::copy(&probe, dir.join("attack"))
            .with_context(|| format!("cannot copy the probe {}", Path::new(&probe).display()))?;
        return Ok(dir);
    }
    let out = process::run(
        Command::new("cc")
            .args(["-static", "-O2", "-o"])
            .arg(dir.join("attack"))
            .arg(&src),
        RUN_TIMEOUT,
    )
    .context("building the probe binary needs gcc and libc6-dev (apt-get install gcc libc6-dev)")?;
    out.expect_success(&format!("cc -static {}", src.display()))?;
    Ok(dir)
}

/// Issue item 9: `mount -t cgroup2` inside, then raise pids.max of the
/// container's own cgroup (the namespace root). Checked from the host.
fn limits_rewritten(ctx: &Ctx, env: &Env) -> Result<Vec<String>> {
    let name = "conf-limits";
    let mut c = env.spawn(&Run::new(ctx.rootfs(), name).opt("--pids-limit", "64").sh(
        "mkdir -p /tmp/cg && mount -t cgroup2 none /tmp/cg && echo mounted; \
         echo max > /tmp/cg/pids.max && echo rewritten; echo done; read x; exit 0",
    ))?;
    c.wait_line("done", LINE_TIMEOUT)?;
    let max = cgroup::read(&env.leaf(name).join("pids.max"))?;
    let out = c.finish(RUN_TIMEOUT)?;
    println!("    limits: after the attack pids.max is {max}");
    let mut found = Vec::new();
    if max != "64" {
        found.push(format!(
            "9: the container raised its own pids.max from 64 to {max} through a fresh cgroup2 mount\n{out}"
        ));
    }
    Ok(found)
}

/// A fork bomb under the default pids limit (no `--pids-limit`).
fn fork_bomb_default_limit(ctx: &Ctx, env: &Env) -> Result<Vec<String>> {
    let name = "conf-bomb";
    let mut c = env.spawn(
        &Run::new(ctx.rootfs(), name).sh("echo ready; read go; [ \"$go\" = bomb ] || exit 0; \
         bomb() { bomb | bomb & }; bomb 2>/dev/null; echo bombed; read x; exit 0"),
    )?;
    c.wait_line("ready", LINE_TIMEOUT)?;
    let leaf = env.leaf(name);
    let max = cgroup::read(&leaf.join("pids.max"))?;
    let limit: Option<u64> = max.parse().ok();
    let Some(limit) = limit else {
        c.send("no\n")?;
        c.finish(RUN_TIMEOUT)?;
        return Ok(vec![format!(
            "fork bomb: no default pids limit (pids.max of {} is {max}); \
             the bomb would be unbounded, so it was not detonated",
            leaf.display()
        )]);
    };
    c.send("bomb\n")?;
    c.wait_line("bombed", LINE_TIMEOUT)?;
    let mut highest = 0;
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        highest = highest.max(cgroup::read_u64(&leaf.join("pids.current")).unwrap_or(0));
        std::thread::sleep(Duration::from_millis(100));
    }
    let start = Instant::now();
    let outside = process::run(
        Command::new("sh").args(["-c", "echo responsive"]),
        Duration::from_secs(10),
    );
    let took = start.elapsed();
    // Killed from here: the container's shell, one runnable process among
    // thousands, would take minutes under emulation to read its stdin's
    // end and exit. The kernel then kills the whole pid namespace.
    let pid1 = env.pid1(name)?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid1),
        nix::sys::signal::Signal::SIGKILL,
    )?;
    let ended = c.finish(Duration::from_secs(120))?;
    if ended.status.code() != Some(137) {
        bail!("the fork bomb's container, killed, should end with status 137:\n{ended}");
    }
    println!(
        "    fork bomb: default pids.max {limit}, highest pids.current {highest}, outside command {:.2} s",
        took.as_secs_f64()
    );
    let mut found = Vec::new();
    if highest > limit || outside.is_err() {
        found.push(format!(
            "fork bomb: pids.current reached {highest} over the default limit {limit}, \
             or the machine stopped answering ({outside:?})"
        ));
    }
    Ok(found)
}

/// Issue item 2: a spy in the container catches `engine exec`'s joining
/// process between setns and exec (see attack.c exec_spy).
fn exec_joining_process(ctx: &Ctx, env: &Env, volume: &str) -> Result<Vec<String>> {
    let name = "conf-spy";
    let secret = format!("s3cr3t-{}", std::process::id());
    let spy = format!("{PROBE_DIR}/attack");
    let mut c = env.spawn(
        &Run::new(ctx.rootfs(), name)
            .opt("-v", volume)
            .cmd(&[&spy, "exec-spy", &secret, "150"]),
    )?;
    c.wait_line("ready", LINE_TIMEOUT)?;
    // Each exec copies the (debug, ~77 MB) engine into a sealed memfd, slow
    // under emulation; the joining process is out of reach from its first
    // instruction, so a handful of tries shows it.
    for _ in 0..8 {
        let mut exec = env.command(&["exec", "--tty=false", name, "--", "true"]);
        exec.env("ENGINE_OPERATOR_SECRET", &secret);
        let _ = process::run(&mut exec, RUN_TIMEOUT)?;
    }
    let _ = process::run(
        &mut env.command(&["exec", name, "--", "touch", "/tmp/spy-stop"]),
        RUN_TIMEOUT,
    )?;
    let out = c.finish(RUN_TIMEOUT)?;
    let mut found = Vec::new();
    for (evidence, what) in [
        (
            "environ-leak",
            "2: the joining process's environment (the operator's) was readable",
        ),
        (
            "ptrace-seize",
            "2: the joining process could be ptraced before exec",
        ),
        (
            "ctty",
            "2: the joining process still held the operator's terminal",
        ),
        (
            "fd-escape",
            "2: an fd of the joining process led to the host's /",
        ),
    ] {
        if let Some(line) = out.stdout.lines().find(|l| l.starts_with(evidence)) {
            found.push(format!("{what}: {line}"));
        }
    }
    println!(
        "    exec spy saw: {}",
        out.stdout.trim().replace('\n', "; ")
    );
    Ok(found)
}

/// The probes the project's host kernel lacks, and sysrq-trigger.
fn syscalls(ctx: &Ctx, env: &Env, volume: &str) -> Result<Vec<String>> {
    let probe = format!("{PROBE_DIR}/attack");
    let mut script = String::new();
    for name in [
        "mount",
        "umount2",
        "reboot",
        "kexec_load",
        "init_module",
        "swapon",
        "keyctl",
        "bpf",
        "perf_event_open",
        "userfaultfd",
        "open_by_handle_at",
        "iopl",
        "ioperm",
        "clock_settime",
        "unshare_user",
        // Issue 22: io_uring's IORING_OP_SOCKET made a vsock fd past the filter.
        "io_uring_setup",
        "io_uring_vsock",
    ] {
        script.push_str(&format!("{probe} sys {name}; "));
    }
    script.push_str(
        "if [ -e /proc/sysrq-trigger ]; then ( exec 3>>/proc/sysrq-trigger ) 2>/dev/null; \
         echo sysrq_open $?; else echo sysrq_open absent; fi",
    );
    let out = env.run(
        &Run::new(ctx.rootfs(), "conf-sys")
            .opt("-v", volume)
            .sh(&script),
    )?;
    println!("    syscalls: {}", out.stdout.trim().replace('\n', "; "));
    let mut found = Vec::new();
    for line in out.stdout.lines() {
        let mut words = line.split_whitespace();
        let (Some(name), Some(result)) = (words.next(), words.next()) else {
            continue;
        };
        let reached = match name {
            "sysrq_open" => result == "0",
            _ => result.parse::<i32>().is_ok_and(|e| {
                e != nix::errno::Errno::EPERM as i32 && e != nix::errno::Errno::ENOSYS as i32
            }),
        };
        if reached {
            found.push(format!(
                "syscall {name} reached the kernel from the container ({result})"
            ));
        }
    }
    if found.is_empty() && !out.stdout.contains("unshare_user") {
        bail!("the syscall probes printed nothing\n{out}");
    }
    Ok(found)
}
