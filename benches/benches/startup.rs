//! Start-to-exit latency of `engine run ... -- /bin/true` on a busybox rootfs:
//! `cargo bench -p benches`.
//!
//! (a) `--net none`; (b) with a bridge address; (c) with cgroup limits, only
//! where cgroup v2 has cpu and memory; (d) N = 1, 10, 50 containers started at
//! once, reported as time per container.
//!
//! The whole bench runs in a network namespace it creates first, so the
//! bridge and veths of (b) never touch the machine's own network.
//!
//! Dead network namespaces: every run leaves one (with `--net none` too), and
//! the kernel tears them down asynchronously, in batches. A loop that only
//! timed the runs would leave that work queued, unmeasured, slowing whatever
//! comes next. So every timed batch ends with a fence (`netns_fence`) that
//! waits until all of them are gone, and the wait counts in the batch's time,
//! less the fence's own cost on an idle system (calibrated once at start).

use anyhow::{bail, Context, Result};
use benches::{
    busybox_rootfs, cgroup_v2_limits, engine_binary, engine_command, enter_private_netns,
    first_line, netns_fence, netns_fence_floor, temp_dir,
};
use criterion::{BenchmarkId, Criterion, SamplingMode};
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

struct Ctx {
    engine: PathBuf,
    rootfs: PathBuf,
    state: PathBuf,
    fence_floor: Duration,
}

impl Ctx {
    /// Starts `engine run ARGS ROOTFS [EXTRA] -- /bin/true`.
    fn spawn(&self, args: &[&str], extra: &[&str]) -> Child {
        engine_command(&self.engine, &self.state)
            .arg("run")
            .args(args)
            .arg(&self.rootfs)
            .args(extra)
            .args(["--", "/bin/true"])
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.engine.display()))
    }

    /// Waits for a run; a failed run invalidates the figure, so it stops the bench.
    fn wait(mut child: Child) {
        let status = child.wait().expect("wait for engine");
        assert!(status.success(), "engine run failed: {status}");
    }

    /// The teardown that the timed runs left queued, beyond the fence's own cost.
    fn drain(&self) -> Duration {
        netns_fence(Duration::from_secs(60))
            .expect("netns fence")
            .saturating_sub(self.fence_floor)
    }

    /// Time of `iters` sequential runs, including the teardown they leave.
    fn sequential(&self, iters: u64, args: &[&str], extra: &[&str]) -> Duration {
        let start = Instant::now();
        for _ in 0..iters {
            Self::wait(self.spawn(args, extra));
        }
        start.elapsed() + self.drain()
    }

    /// Time per container of `iters` rounds of `n` runs started at once.
    fn concurrent(&self, iters: u64, n: u32) -> Duration {
        let start = Instant::now();
        for _ in 0..iters {
            let children: Vec<Child> = (0..n)
                .map(|_| self.spawn(&["--net", "none"], &[]))
                .collect();
            children.into_iter().for_each(Self::wait);
        }
        (start.elapsed() + self.drain()) / n
    }
}

/// Runs once and returns the first line of the error when it fails.
fn probe(ctx: &Ctx, args: &[&str], extra: &[&str]) -> Result<()> {
    let out = engine_command(&ctx.engine, &ctx.state)
        .arg("run")
        .args(args)
        .arg(&ctx.rootfs)
        .args(extra)
        .args(["--", "/bin/true"])
        .stderr(std::process::Stdio::piped())
        .output()
        .context("cannot run the engine")?;
    if !out.status.success() {
        bail!("{} ({})", first_line(&out.stderr), out.status);
    }
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("startup bench: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    // Built before entering the namespace: cargo may need the registry.
    let engine = engine_binary()?;
    let tmp = temp_dir("engine-bench")?;
    let rootfs = tmp.path().join("rootfs");
    let how = busybox_rootfs(&engine, &rootfs)?;
    let state = tmp.path().join("state");
    std::fs::create_dir(&state)?;
    let (host_ns, own_ns) = enter_private_netns()?;
    eprintln!(
        "startup bench: engine {}; rootfs {how}; private network namespace net:[{own_ns}] (host: net:[{host_ns}])",
        engine.display()
    );
    let ctx = Ctx {
        engine,
        rootfs,
        state,
        fence_floor: netns_fence_floor()?,
    };
    eprintln!(
        "startup bench: netns fence floor {:.2} ms (subtracted from each batch's teardown wait)",
        ctx.fence_floor.as_secs_f64() * 1e3
    );
    probe(&ctx, &["--net", "none"], &[]).context("engine run --net none does not work")?;

    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(4))
        .configure_from_args();

    {
        let mut g = c.benchmark_group("start_to_exit");
        g.bench_function("net_none", |b| {
            b.iter_custom(|iters| ctx.sequential(iters, &["--net", "none"], &[]))
        });

        // A fixed name and address: the runs are sequential, so they never clash.
        let bridge = ["--name", "bench-br", "--ip", "192.168.1.2"];
        match probe(&ctx, &bridge, &[]) {
            Ok(()) => {
                g.bench_function("bridge_address", |b| {
                    b.iter_custom(|iters| ctx.sequential(iters, &bridge, &[]))
                });
            }
            Err(e) => println!("start_to_exit/bridge_address: unavailable: {e:#}"),
        }

        let limits = ["--cpus", "0.5", "--memory", "50M", "--net", "none"];
        match cgroup_v2_limits() {
            Ok(()) => {
                g.bench_function("cgroup_limits", |b| {
                    b.iter_custom(|iters| ctx.sequential(iters, &limits, &[]))
                });
            }
            Err(why) => println!(
                "start_to_exit/cgroup_limits: cannot run here: {why}; run this bench in the cgroup v2 guest to measure it (docs/benchmarks.md)"
            ),
        }
        g.finish();
    }

    {
        let mut g = c.benchmark_group("concurrent_per_container");
        // Each iteration is a whole round of N starts: same count per sample.
        g.sampling_mode(SamplingMode::Flat);
        for n in [1u32, 10, 50] {
            g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
                b.iter_custom(|iters| ctx.concurrent(iters, n))
            });
        }
        g.finish();
    }

    c.final_summary();
    // Remove the bridge the runs made (the namespace dies with us anyway).
    let _ = engine_command(&ctx.engine, &ctx.state)
        .args(["teardown", "--force"])
        .status();
    drop(tmp);
    Ok(())
}
