//! Measuring one runtime: a probe run, peak memory, and 30 engine starts at
//! once. (The start-to-exit times themselves are hyperfine's, in `main`.)

use anyhow::{bail, Context, Result};
use benches::{first_line, netns_fence};
use serde::Serialize;
use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How many `engine run`s start at once.
pub const CONCURRENT: usize = 30;

#[derive(Serialize)]
pub struct Concurrent {
    pub mode: String,
    pub rounds: usize,
    pub batch_wall_ms: Vec<f64>,
    pub median_batch_wall_ms: f64,
    pub median_per_container_ms: f64,
}

/// Runs a command once; Err holds the first line of what went wrong.
pub fn probe(argv: &[String]) -> std::result::Result<(), String> {
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start: {e}"))?;
    let status =
        testkit::wait::child(&mut child, Duration::from_secs(60)).map_err(|e| e.to_string())?;
    if status.success() {
        return Ok(());
    }
    let mut err = Vec::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = std::io::Read::read_to_end(&mut pipe, &mut err);
    }
    Err(format!("{} ({status})", first_line(&err)))
}

/// Peak RSS (VmHWM) of the command's own process, read from /proc while it runs.
pub fn vm_hwm(argv: &[String]) -> Option<u64> {
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak = None;
    let exited = testkit::wait::poll_until(Duration::from_secs(60), "the command to exit", || {
        // VmHWM only grows; a zombie has none, so keep the last value read.
        if let Some(kb) = fs::read_to_string(&status_path).ok().and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        }) {
            peak = Some(kb);
        }
        child.try_wait().ok().flatten()
    });
    if exited.is_err() {
        let _ = child.kill();
        let _ = child.wait();
        return None;
    }
    peak
}

/// `/usr/bin/time -f %M`: the largest RSS among the process and the children it reaped.
pub fn time_max_rss(gnu_time: &Path, out: &Path, argv: &[String]) -> Option<u64> {
    let status = Command::new(gnu_time)
        .args(["-f", "%M", "-o"])
        .arg(out)
        .arg("--")
        .args(argv)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()?;
    if !status.success() {
        return None;
    }
    fs::read_to_string(out).ok()?.trim().parse().ok()
}

/// 30 `engine run`s started at once, `rounds` times: the batch's wall time
/// and each container's start-to-exit time. Every round starts with the dead
/// namespaces of the one before torn down (`netns_fence`, unmeasured).
pub fn concurrent_starts(
    engine: &Path,
    rootfs: &Path,
    bridge: bool,
    rounds: usize,
) -> Result<Option<Concurrent>> {
    let net = if bridge { "bridge" } else { "none" };
    let mode = if bridge {
        "--net bridge (addresses leased)".to_string()
    } else {
        "--net none: bridge networking is unavailable here".to_string()
    };
    eprintln!("compare: {CONCURRENT} concurrent starts, {mode}, {rounds} rounds");
    let mut walls = Vec::new();
    let mut each = Vec::new();
    for _ in 0..rounds {
        netns_fence(Duration::from_secs(60))?;
        let start = Instant::now();
        let mut children: Vec<Option<Child>> = (0..CONCURRENT)
            .map(|_| {
                Command::new(engine)
                    .args(["run", "--net", net])
                    .arg(rootfs)
                    .args(["--", "/bin/true"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .map(Some)
            })
            .collect::<std::io::Result<_>>()
            .context("cannot start the engine")?;
        let mut left = CONCURRENT;
        let mut failed = 0;
        // Polled every 0.5 ms, not with testkit's 10 ms wait: each
        // container's start-to-exit time is measured here.
        while left > 0 {
            for slot in children.iter_mut() {
                if let Some(child) = slot {
                    if let Some(status) = child.try_wait()? {
                        each.push(start.elapsed().as_secs_f64() * 1e3);
                        failed += usize::from(!status.success());
                        *slot = None;
                        left -= 1;
                    }
                }
            }
            if start.elapsed() > Duration::from_secs(120) {
                children.iter_mut().flatten().for_each(|c| {
                    let _ = c.kill();
                    let _ = c.wait();
                });
                bail!("{CONCURRENT} concurrent starts did not finish within 120 s");
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        walls.push(start.elapsed().as_secs_f64() * 1e3);
        if failed > 0 {
            bail!("{failed} of {CONCURRENT} concurrent engine runs ({mode}) failed");
        }
    }
    let mut sorted = walls.clone();
    sorted.sort_by(f64::total_cmp);
    each.sort_by(f64::total_cmp);
    Ok(Some(Concurrent {
        mode,
        rounds,
        median_batch_wall_ms: median(&sorted),
        median_per_container_ms: median(&each),
        batch_wall_ms: walls,
    }))
}

pub fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

pub fn median_u64(values: impl Iterator<Item = u64>) -> Option<u64> {
    let mut v: Vec<u64> = values.collect();
    v.sort_unstable();
    v.get(v.len().checked_sub(1)? / 2).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[1.0, 2.0, 10.0]), 2.0);
        assert_eq!(median(&[1.0, 2.0, 4.0, 10.0]), 3.0);
        assert!(median(&[]).is_nan());
        assert_eq!(median_u64([5, 1, 9].into_iter()), Some(5));
        assert_eq!(median_u64(std::iter::empty()), None);
    }
}
