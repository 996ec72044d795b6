//! Scenario 9, the old project's `stress_test.sh` flow: inside one container with
//! `--cpus 0.5 --memory 50M`, a shell CPU loop plus a memory hog that keeps
//! asking for more than the limit. CPU stays under 0.55, `memory.peak` under
//! 50M, and the hog really hit the limit.

use super::cpu::{busy_script, measure, LIMIT as CPU_LIMIT};
use super::memory::{Memory, LIMIT as MEMORY_LIMIT};
use super::Ctx;
use crate::engine::Run;
use anyhow::{bail, Result};

pub fn run(ctx: &Ctx) -> Result<()> {
    let env = ctx.env("stress")?;
    let name = "stress";
    // One shell CPU loop, and a hog asking for 80 MB again and again (each
    // time OOM-killed).
    let hog = "while :; do dd if=/dev/zero of=/dev/null bs=80M count=1 2>/dev/null; done";
    let script = busy_script(1, &[hog]);
    let mut mem = None;
    let measured = measure(
        &env,
        &Run::new(ctx.rootfs(), name)
            .opt("--cpus", "0.5")
            .opt("--memory", "50M")
            .sh(&script),
        name,
        |leaf| {
            mem = Some(Memory::read(leaf)?);
            Ok(())
        },
    )?;
    let mem = mem.expect("measure calls `during`");
    let summary = format!(
        "a CPU loop and a memory hog under --cpus 0.5 --memory 50M: {:.3} CPU (cpu.max `{}`); {mem}",
        measured.cpus, measured.cpu_max
    );
    println!("    {summary}");
    if measured.cpus > CPU_LIMIT {
        bail!("CPU should stay at or below {CPU_LIMIT}; {summary}");
    }
    if measured.cpus < 0.2 {
        bail!("the CPU loop should have used a good part of its 0.5 CPU; {summary}");
    }
    if mem.peak > MEMORY_LIMIT {
        bail!("memory.peak should stay at or below 50M; {summary}");
    }
    if mem.oom_kill < 1 {
        bail!("the memory hog should have hit the limit (oom_kill ≥ 1); {summary}");
    }
    env.close()
}
