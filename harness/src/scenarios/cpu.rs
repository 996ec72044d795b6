//! Scenario 6, CPU: two busy loops under `--cpus 0.5` use at most 0.55 CPU, measured
//! from the container's `cpu.stat` over several seconds; without a limit
//! they use more than 0.9 (the guest has 2 vCPUs).

use super::Ctx;
use crate::cgroup::{self, CpuSample};
use crate::engine::{Env, Run, LINE_TIMEOUT, RUN_TIMEOUT};
use anyhow::{bail, Context, Result};
use std::time::Duration;

/// Busy loops run this long before the measurement starts.
pub const WARMUP: Duration = Duration::from_secs(2);
/// The measurement window (TCG: at least 5 s).
pub const WINDOW: Duration = Duration::from_secs(3);

pub const LIMIT: f64 = 0.55;
pub const CONTROL_MIN: f64 = 0.9;

/// A shell script that starts `loops` busy loops and the `extra` commands,
/// each in the background, prints `started`, waits for stdin to close,
/// then stops them all.
pub fn busy_script(loops: usize, extra: &[&str]) -> String {
    let jobs = (0..loops)
        .map(|_| "while :; do :; done")
        .chain(extra.iter().copied());
    let mut script = String::new();
    let mut pids = Vec::new();
    for (i, job) in jobs.enumerate() {
        script.push_str(&format!("({job}) & p{i}=$!; "));
        pids.push(format!("$p{i}"));
    }
    let pids = pids.join(" ");
    script.push_str(&format!(
        "echo started; read x; kill {pids}; wait {pids} 2>/dev/null; echo stopped; exit 0"
    ));
    script
}

/// What a measurement saw.
pub struct Measured {
    pub cpus: f64,
    pub cpu_max: String,
}

/// Starts `run` (whose command is a [`busy_script`]) as container `name`,
/// measures its CPU use from `cpu.stat` over [`WINDOW`] after [`WARMUP`],
/// calls `during` while it still runs, then stops it and checks it ended well.
pub fn measure(
    env: &Env,
    run: &Run,
    name: &str,
    mut during: impl FnMut(&std::path::Path) -> Result<()>,
) -> Result<Measured> {
    let mut c = env.spawn(run)?;
    c.wait_line("started", LINE_TIMEOUT)?;
    let leaf = env.leaf(name);
    std::thread::sleep(WARMUP);
    let first = CpuSample::take(&leaf).with_context(|| {
        format!(
            "the container's cgroup {} should exist while it runs\n{}",
            leaf.display(),
            c.so_far()
        )
    })?;
    std::thread::sleep(WINDOW);
    let last = CpuSample::take(&leaf)?;
    let cpu_max = cgroup::read(&leaf.join("cpu.max"))?;
    during(&leaf)?;
    let out = c.finish(RUN_TIMEOUT)?;
    out.expect_success("the busy container after its stdin closed")?;
    if !out.stdout.contains("stopped") {
        bail!("the busy container should have stopped its loops and said so\n{out}");
    }
    Ok(Measured {
        cpus: first.cpus_until(&last),
        cpu_max,
    })
}

pub fn run(ctx: &Ctx) -> Result<()> {
    let env = ctx.env("cpu")?;
    let limited = measure(
        &env,
        &Run::new(ctx.rootfs(), "cpu-limited")
            .opt("--cpus", "0.5")
            .sh(&busy_script(2, &[])),
        "cpu-limited",
        |_| Ok(()),
    )?;
    let control = measure(
        &env,
        &Run::new(ctx.rootfs(), "cpu-free").sh(&busy_script(2, &[])),
        "cpu-free",
        |_| Ok(()),
    )?;
    let summary = format!(
        "two busy loops for {} s: under --cpus 0.5 (cpu.max `{}`) they used {:.3} CPU; \
         without a limit (cpu.max `{}`) {:.3} CPU",
        WINDOW.as_secs(),
        limited.cpu_max,
        limited.cpus,
        control.cpu_max,
        control.cpus
    );
    println!("    {summary}");
    if limited.cpu_max != "50000 100000" {
        bail!("expected cpu.max `50000 100000` for --cpus 0.5; {summary}");
    }
    if limited.cpus > LIMIT {
        bail!("--cpus 0.5 should hold the container at or below {LIMIT} CPU; {summary}");
    }
    if control.cpus <= CONTROL_MIN {
        bail!(
            "the control run without a limit should exceed {CONTROL_MIN} CPU (else the limit \
             proves nothing); {summary}"
        );
    }
    env.close()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_script_stops_what_it_starts() {
        assert_eq!(
            busy_script(1, &["dd if=/dev/zero of=/dev/null bs=1M count=1"]),
            "(while :; do :; done) & p0=$!; (dd if=/dev/zero of=/dev/null bs=1M count=1) & p1=$!; \
             echo started; read x; kill $p0 $p1; wait $p0 $p1 2>/dev/null; echo stopped; exit 0"
        );
    }

    #[test]
    fn busy_script_runs_and_stops() {
        let mut p = crate::process::Proc::spawn(
            std::process::Command::new("sh").args(["-c", &busy_script(2, &["sleep 100"])]),
            true,
        )
        .unwrap();
        p.wait_line("started", Duration::from_secs(10)).unwrap();
        let out = p.finish(Duration::from_secs(10)).unwrap();
        assert_eq!(out.code(), 0, "{out}");
        assert!(out.stdout.contains("stopped"), "{out}");
    }
}
