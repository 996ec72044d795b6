//! Scenario 7, memory: under `--memory 50M` allocating 100 MB gets the allocating
//! process OOM-killed (`memory.events` oom_kill ≥ 1, `memory.peak` ≤ 50M)
//! and the engine says so; a 20 MB allocation succeeds.
//!
//! The allocation is `dd bs=SIZE count=1` from /dev/zero: dd (busybox's
//! and coreutils') allocates one SIZE buffer and reading /dev/zero into it
//! touches every page. The 20 MB run checks that it really allocates:
//! `memory.peak` must reach 20 MB.

use super::{tagged, Ctx};
use crate::cgroup;
use crate::engine::{Env, Run, LINE_TIMEOUT, RUN_TIMEOUT};
use crate::process::Output;
use anyhow::{bail, Context, Result};
use std::path::Path;

pub const MIB: u64 = 1024 * 1024;
pub const LIMIT: u64 = 50 * MIB;

/// The container's memory files, read while it runs.
#[derive(Debug)]
pub struct Memory {
    pub max: String,
    pub swap_max: String,
    pub peak: u64,
    pub oom_kill: u64,
    pub events: String,
}

impl Memory {
    pub fn read(leaf: &Path) -> Result<Memory> {
        let events = cgroup::read(&leaf.join("memory.events"))?;
        Ok(Memory {
            max: cgroup::read(&leaf.join("memory.max"))?,
            swap_max: cgroup::read(&leaf.join("memory.swap.max"))?,
            peak: cgroup::read_u64(&leaf.join("memory.peak"))
                .context("memory.peak needs Linux 5.19 or later")?,
            oom_kill: cgroup::key_in(&events, "oom_kill").unwrap_or(0),
            events: events.split_whitespace().collect::<Vec<_>>().join(" "),
        })
    }
}

impl std::fmt::Display for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "memory.max {}, memory.swap.max {}, memory.peak {} ({:.1} MiB), memory.events [{}]",
            self.max,
            self.swap_max,
            self.peak,
            self.peak as f64 / MIB as f64,
            self.events
        )
    }
}

/// Runs `dd bs=SIZE count=1` in a `--memory 50M` container; returns dd's
/// exit status, the cgroup's memory files read after dd ended (the
/// container still runs), and the engine's output.
fn allocate(env: &Env, ctx: &Ctx, name: &str, size: &str) -> Result<(String, Memory, Output)> {
    let mut c = env.spawn(
        &Run::new(ctx.rootfs(), name)
            .opt("--memory", "50M")
            .sh(&format!(
                "dd if=/dev/zero of=/dev/null bs={size} count=1; echo dd-rc=$?; read x; exit 0"
            )),
    )?;
    let line = c.wait_line("dd-rc=", LINE_TIMEOUT)?;
    let leaf = env.leaf(name);
    let mem = Memory::read(&leaf).with_context(|| {
        format!(
            "reading the memory files of {}\n{}",
            leaf.display(),
            c.so_far()
        )
    })?;
    let out = c.finish(RUN_TIMEOUT)?;
    out.expect_success("the allocating container after its stdin closed")?;
    let rc = tagged(&line, "dd-rc").unwrap_or("").to_string();
    Ok((rc, mem, out))
}

pub fn run(ctx: &Ctx) -> Result<()> {
    let env = ctx.env("mem")?;

    let (rc, mem, out) = allocate(&env, ctx, "mem-100m", "100M")?;
    println!("    100 MB under --memory 50M: dd exit status {rc}; {mem}");
    let want = LIMIT.to_string();
    if mem.max != want || mem.swap_max != "0" {
        bail!("--memory 50M should set memory.max {want} and memory.swap.max 0; {mem}\n{out}");
    }
    if rc != "137" || mem.oom_kill < 1 {
        bail!(
            "allocating 100 MB under --memory 50M should get dd OOM-killed (exit status 137, \
             oom_kill ≥ 1); dd exited {rc:?}; {mem}\n{out}"
        );
    }
    if mem.peak > LIMIT {
        bail!("memory.peak should stay at or below 50M; {mem}\n{out}");
    }
    if !out.stderr.contains("OOM") {
        bail!("the engine should report the OOM kill on its stderr\n{out}");
    }

    let (rc, mem, out) = allocate(&env, ctx, "mem-20m", "20M")?;
    println!("    20 MB under --memory 50M: dd exit status {rc}; {mem}");
    if rc != "0" || mem.oom_kill != 0 {
        bail!("allocating 20 MB under --memory 50M should succeed without an OOM kill; dd exited {rc:?}; {mem}\n{out}");
    }
    if mem.peak < 20 * MIB || mem.peak > LIMIT {
        bail!(
            "memory.peak should show the 20 MB allocation (between 20 MiB and 50M); {mem}\n{out}"
        );
    }
    if out.stderr.contains("OOM") {
        bail!("the engine reported an OOM kill where there was none\n{out}");
    }
    env.close()
}
