//! Scenario 8, pids: a fork bomb under `--pids-limit 64` is contained (`pids.max`
//! 64, `pids.current` never above it, `pids.events` max > 0), the machine
//! stays responsive, and stopping the container removes every process.

use super::Ctx;
use crate::cgroup;
use crate::engine::{Run, LINE_TIMEOUT};
use crate::process;
use anyhow::{bail, Context, Result};
use std::process::Command;
use std::time::{Duration, Instant};

const LIMIT: u64 = 64;
/// A command outside the container must finish within this while the bomb runs.
const RESPONSIVE: Duration = Duration::from_secs(10);

pub fn run(ctx: &Ctx) -> Result<()> {
    let env = ctx.env("pids")?;
    let name = "pids-bomb";
    let mut c = env.spawn(
        &Run::new(ctx.rootfs(), name)
            .opt("--pids-limit", &LIMIT.to_string())
            .sh("bomb() { bomb | bomb & }; bomb 2>/dev/null; echo bombed; read x; exit 0"),
    )?;
    c.wait_line("bombed", LINE_TIMEOUT)?;
    let leaf = env.leaf(name);

    // Watch it for a few seconds: it hits the limit, never passes it.
    let mut highest = 0;
    let mut samples = 0;
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        let current = cgroup::read_u64(&leaf.join("pids.current")).with_context(|| {
            format!(
                "the container's cgroup {} should exist\n{}",
                leaf.display(),
                c.so_far()
            )
        })?;
        highest = highest.max(current);
        samples += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    let max = cgroup::read(&leaf.join("pids.max"))?;
    let events = cgroup::read_key(&leaf.join("pids.events"), "max")?;
    let summary = format!(
        "pids.max {max}, highest pids.current {highest} over {samples} samples, pids.events max {events}"
    );
    println!("    fork bomb: {summary}");
    if max != LIMIT.to_string() || highest > LIMIT || events == 0 {
        bail!(
            "a fork bomb under --pids-limit {LIMIT} should hit the limit (pids.events max > 0) \
             and never pass it; {summary}\n{}",
            c.so_far()
        );
    }

    // The machine stays responsive.
    let start = Instant::now();
    let out = process::run(
        Command::new("sh").args(["-c", "echo responsive"]),
        RESPONSIVE,
    )
    .context("a command outside the container while the fork bomb runs")?;
    out.expect_success("a command outside the container while the fork bomb runs")?;
    let took = start.elapsed();
    println!("    a command outside took {:.2} s", took.as_secs_f64());

    // Stopping it (PID 1 exits when stdin closes) removes every process.
    let out = c.finish(Duration::from_secs(120))?;
    out.expect_success("the fork-bomb container after its stdin closed")?;
    if leaf.exists() {
        bail!(
            "the container's cgroup {} should be gone after it stopped; processes: [{}]",
            leaf.display(),
            std::fs::read_to_string(leaf.join("cgroup.procs"))
                .unwrap_or_default()
                .trim()
        );
    }
    env.close()
}
