//! Side-by-side start-to-exit latency of `/bin/true` on one busybox rootfs:
//! the engine, runc, crun, bwrap, systemd-nspawn, podman and the `unshare`
//! floor, timed by hyperfine in one run, plus each supervisor's peak RSS, the
//! "30 concurrent starts" figure, and issue 5's targets marked met or missed.
//!
//! Run: `cargo run --release -p benches --bin compare` (as root).
//! Options: `--runs N` (default 30), `--rounds R`, `--rootfs PATH`, `--json OUT`,
//! `--quick` (also when `CI=true`).
//!
//! The whole tool runs in a network namespace it creates at start: the
//! engine's bridge and veths and podman's default network live and die there.
//! So no command needs an `unshare --net` wrapper, and there is no wrapper cost
//! to subtract: every runtime is timed bare, in the same namespace.

mod measure;
mod report;
mod runtimes;
mod targets;

use anyhow::{bail, Context, Result};
use benches::{busybox_rootfs, cgroup_v2_limits, engine_binary, enter_private_netns, temp_dir};
use clap::Parser;
use measure::{concurrent_starts, median, median_u64, probe, time_max_rss, vm_hwm};
use report::{machine_info, markdown, Report};
use runtimes::{cleanup, find, prepare_rows, Row, Status, ENGINE_BRIDGE, ENGINE_NONE};
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use testkit::quote::{join as shell_join, which};

#[derive(Parser)]
#[command(about = "Compare engine's container start time with runc, crun, bwrap, nspawn, podman")]
struct Args {
    /// Timed runs per command, spread over the rounds
    #[arg(long, default_value_t = 30)]
    runs: usize,
    /// hyperfine invocations, each timing every command (default 5; 2 when quick)
    #[arg(long)]
    rounds: Option<usize>,
    /// A busybox root filesystem to use (default: one made in a temporary directory)
    #[arg(long)]
    rootfs: Option<PathBuf>,
    /// Also write every figure as JSON to this file
    #[arg(long)]
    json: Option<PathBuf>,
    /// Few runs, for CI (implied by CI=true)
    #[arg(long)]
    quick: bool,
}

fn main() {
    if let Err(e) = run() {
        eprintln!("compare: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let args = Args::parse();
    let quick = args.quick || std::env::var("CI").is_ok_and(|v| v == "true");
    let runs = if quick { args.runs.min(6) } else { args.runs }.max(1);
    let rounds = args
        .rounds
        .unwrap_or(if quick { 2 } else { 5 })
        .clamp(1, runs);
    let per_round = runs.div_ceil(rounds);
    let hyperfine = which("hyperfine")
        .context("hyperfine is needed: install it with `apt-get install hyperfine`")?;

    // Everything that may need the network or a registry happens before the
    // private namespace: building the engine.
    let engine = engine_binary()?;
    let tmp = temp_dir("engine-compare")?;
    let rootfs = match &args.rootfs {
        Some(p) => {
            if !p.join("bin/busybox").is_file() {
                bail!("--rootfs {}: no bin/busybox in it", p.display());
            }
            fs::canonicalize(p)?
        }
        None => tmp.path().join("rootfs"),
    };
    let rootfs_how = match &args.rootfs {
        Some(_) => "given with --rootfs",
        None => busybox_rootfs(&engine, &rootfs)?,
    };
    let (host_ns, own_ns) = enter_private_netns()?;
    eprintln!("compare: private network namespace net:[{own_ns}] (host: net:[{host_ns}])");

    let state = tmp.path().join("engine-state");
    fs::create_dir(&state)?;
    // Set while single-threaded; hyperfine and every engine run inherit it.
    std::env::set_var("ENGINE_STATE_DIR", &state);
    std::env::set_var("ENGINE_DATA_DIR", tmp.path().join("engine-data"));

    let mut machine = machine_info(&engine, rootfs_how, quick, runs, rounds);
    let mut rows = prepare_rows(&engine, &rootfs, tmp.path())?;

    // Probe every command once: a runtime that refuses this host gets its
    // error in the table instead of a number, and never aborts hyperfine.
    for row in rows.iter_mut().filter(|r| r.measured()) {
        eprintln!("compare: probing {}", row.name);
        if let Err(why) = probe(&row.argv) {
            row.status = if row.name.starts_with("engine") {
                Status::Unavailable(why)
            } else {
                Status::Refused(why)
            };
        }
    }

    // Interleaving: each round is one hyperfine call holding every command;
    // within it hyperfine runs a command's runs back to back; the command
    // order rotates from round to round, and the rounds' times are pooled.
    let live: Vec<usize> = (0..rows.len()).filter(|&i| rows[i].measured()).collect();
    if live.is_empty() {
        bail!("no runtime could run here");
    }
    for round in 0..rounds {
        let mut order = live.clone();
        order.rotate_left(round % live.len());
        eprintln!(
            "compare: hyperfine round {}/{rounds}, {per_round} runs per command",
            round + 1
        );
        let out = tmp.path().join(format!("round{round}.json"));
        let mut cmd = Command::new(&hyperfine);
        cmd.args(["-N", "--style", "none", "--warmup", "2"])
            .args(["--runs", &per_round.to_string(), "--export-json"])
            .arg(&out);
        for &i in &order {
            cmd.args(["--command-name", &rows[i].name, &shell_join(&rows[i].argv)]);
        }
        let status = cmd.status().context("cannot run hyperfine")?;
        if !status.success() {
            bail!("hyperfine failed in round {} ({status})", round + 1);
        }
        let json: Value = serde_json::from_slice(&fs::read(&out)?)?;
        for result in json["results"].as_array().into_iter().flatten() {
            let name = result["command"].as_str().unwrap_or_default();
            if let Some(row) = rows.iter_mut().find(|r| r.name == name) {
                row.times.extend(
                    result["times"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_f64),
                );
            }
        }
    }
    for row in &mut rows {
        if !row.times.is_empty() {
            let mut t: Vec<f64> = row.times.iter().map(|s| s * 1e3).collect();
            t.sort_by(f64::total_cmp);
            row.median_ms = Some(median(&t));
            row.min_ms = t.first().copied();
            row.max_ms = t.last().copied();
        }
    }
    let engine_median = find(&rows, ENGINE_NONE).and_then(|r| r.median_ms);
    for row in &mut rows {
        if let (Some(m), Some(e)) = (row.median_ms, engine_median) {
            row.ratio_to_engine = Some(m / e);
        }
    }

    // Peak RSS, each runtime running `sleep 0.2`.
    let rss_runs = if quick { 1 } else { 3 };
    let gnu_time = Path::new("/usr/bin/time");
    for row in rows.iter_mut().filter(|r| r.measured()) {
        eprintln!("compare: peak RSS of {}", row.name);
        row.vm_hwm_kb = median_u64((0..rss_runs).filter_map(|_| vm_hwm(&row.argv_sleep)));
        if gnu_time.is_file() {
            let out = tmp.path().join("time.out");
            row.time_max_rss_kb = median_u64(
                (0..rss_runs).filter_map(|_| time_max_rss(gnu_time, &out, &row.argv_sleep)),
            );
        }
    }
    if !gnu_time.is_file() {
        machine.push((
            "/usr/bin/time".into(),
            "not installed (apt-get install time): its column is empty".into(),
        ));
    }

    let bridge_ok = find(&rows, ENGINE_BRIDGE).is_some_and(Row::measured);
    let concurrent = concurrent_starts(&engine, &rootfs, bridge_ok, if quick { 2 } else { 5 })?;
    let cgroup = cgroup_v2_limits();
    let targets = targets::targets(&rows, &cgroup);

    let method = vec![
        format!("hyperfine -N (no shell), {rounds} round(s) of one hyperfine call holding every command, {per_round} timed runs per command per round after 2 warm-up runs, command order rotated each round, times pooled; the engine's stdout/stderr discarded like every other command's"),
        format!("everything ran in a private network namespace (net:[{own_ns}]) made once by this tool, so no per-command `unshare --net` wrapper and no wrapper cost; each run's dead network namespace is torn down by the kernel in the background while the next runs, the same for every runtime"),
        "runc and crun: an OCI bundle from `runc spec` (default namespaces: pid, network, ipc, uts, mount; read-only root), process /bin/true, no terminal, a fixed id (runs are sequential and `run` deletes the container at exit)".into(),
        "podman and systemd-nspawn write into the rootfs they are given (mount points, /etc/localtime, /var/log/journal; nspawn also wants /usr): each gets its own identical copy".into(),
        "engine, bridge address: `engine run --name NAME --ip 192.168.1.2 ROOTFS` (a name and an address, as the seed's `container_engine ROOTFS NAME IP` gave), the bridge already up from a first run".into(),
    ];
    let report = Report {
        machine,
        method,
        rows,
        concurrent,
        targets,
    };
    print!("{}", markdown(&report, &cgroup));
    if let Some(path) = &args.json {
        fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("compare: wrote {}", path.display());
    }

    cleanup(&engine, tmp.path());
    drop(tmp);
    Ok(())
}
