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

use anyhow::{bail, Context, Result};
use benches::{
    busybox_rootfs, cgroup_v2_limits, engine_binary, enter_private_netns, first_line, netns_fence,
    which, TempDir,
};
use clap::Parser;
use serde::Serialize;
use serde_json::Value;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

/// Name of the engine row every ratio is taken against.
const ENGINE_NONE: &str = "engine --net none";
const ENGINE_BRIDGE: &str = "engine, bridge address";
const ENGINE_LIMITS: &str = "engine, limits + bridge";
const CONCURRENT: usize = 30;

#[derive(Serialize, Clone)]
#[serde(rename_all = "snake_case", tag = "state", content = "why")]
enum Status {
    Measured,
    NotInstalled(String),
    Refused(String),
    Unavailable(String),
}

#[derive(Serialize)]
struct Row {
    name: String,
    status: Status,
    /// The timed command, `/bin/true` in the container.
    argv: Vec<String>,
    /// The same runtime running `sleep 0.2`, for the RSS table.
    #[serde(skip)]
    argv_sleep: Vec<String>,
    /// Every timed run, in seconds.
    times: Vec<f64>,
    median_ms: Option<f64>,
    min_ms: Option<f64>,
    max_ms: Option<f64>,
    ratio_to_engine: Option<f64>,
    /// Peak RSS of the foreground process itself (VmHWM), kB.
    vm_hwm_kb: Option<u64>,
    /// `/usr/bin/time -f %M`: the largest of it and the children it reaped, kB.
    time_max_rss_kb: Option<u64>,
    note: String,
}

impl Row {
    fn new(name: &str, argv: Vec<String>, argv_sleep: Vec<String>) -> Self {
        Row {
            name: name.into(),
            status: Status::Measured,
            argv,
            argv_sleep,
            times: Vec::new(),
            median_ms: None,
            min_ms: None,
            max_ms: None,
            ratio_to_engine: None,
            vm_hwm_kb: None,
            time_max_rss_kb: None,
            note: String::new(),
        }
    }

    fn missing(name: &str, binary: &str) -> Self {
        let mut r = Row::new(name, vec![], vec![]);
        r.status = Status::NotInstalled(format!("{binary} not installed"));
        r
    }

    fn measured(&self) -> bool {
        matches!(self.status, Status::Measured)
    }
}

#[derive(Serialize)]
struct Target {
    target: String,
    verdict: String,
    figure: String,
}

#[derive(Serialize)]
struct Concurrent {
    mode: String,
    rounds: usize,
    batch_wall_ms: Vec<f64>,
    median_batch_wall_ms: f64,
    median_per_container_ms: f64,
}

#[derive(Serialize)]
struct Report {
    machine: Vec<(String, String)>,
    method: Vec<String>,
    rows: Vec<Row>,
    concurrent: Option<Concurrent>,
    targets: Vec<Target>,
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
    let tmp = TempDir::new("engine-compare")?;
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
    let targets = targets(&rows, &cgroup);

    let method = vec![
        format!("hyperfine -N (no shell), {rounds} round(s) of one hyperfine call holding every command, {per_round} timed runs per command per round after 2 warm-up runs, command order rotated each round, times pooled; the engine's stdout/stderr discarded like every other command's"),
        format!("everything ran in a private network namespace (net:[{own_ns}]) made once by this tool, so no per-command `unshare --net` wrapper and no wrapper cost; each run's dead network namespace is torn down by the kernel in the background while the next runs, the same for every runtime"),
        "runc and crun: an OCI bundle from `runc spec` (default namespaces: pid, network, ipc, uts, mount; read-only root), process /bin/true, no terminal, a fixed id (runs are sequential and `run` deletes the container at exit)".into(),
        "podman and systemd-nspawn write into the rootfs they are given (mount points, /etc/localtime, /var/log/journal; nspawn also wants /usr): each gets its own identical copy".into(),
        "engine, bridge address: `engine run ROOTFS NAME 192.168.1.2` (the old container_engine usage), the bridge already up from a first run".into(),
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

fn find<'a>(rows: &'a [Row], name: &str) -> Option<&'a Row> {
    rows.iter().find(|r| r.name == name)
}

fn s(x: impl AsRef<std::ffi::OsStr>) -> String {
    x.as_ref().to_string_lossy().into_owned()
}

/// Every row, each with its `/bin/true` and `sleep 0.2` commands; runtimes
/// that are not installed get a row saying so.
fn prepare_rows(engine: &Path, rootfs: &Path, tmp: &Path) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    let e = s(engine);
    let r = s(rootfs);
    let run = |pre: &[&str], post: &[&str], cmd: &[&str]| -> Vec<String> {
        let mut v = vec![e.clone(), "run".into()];
        v.extend(pre.iter().map(|x| x.to_string()));
        v.push(r.clone());
        v.extend(post.iter().map(|x| x.to_string()));
        v.push("--".into());
        v.extend(cmd.iter().map(|x| x.to_string()));
        v
    };
    let t: &[&str] = &["/bin/true"];
    let z: &[&str] = &["/bin/sleep", "0.2"];
    rows.push(Row::new(
        ENGINE_NONE,
        run(&["--net", "none"], &[], t),
        run(&["--net", "none"], &[], z),
    ));
    let br = ["cmp-br", "192.168.1.2"];
    rows.push(Row::new(ENGINE_BRIDGE, run(&[], &br, t), run(&[], &br, z)));
    if cgroup_v2_limits().is_ok() {
        let lim = ["--cpus", "0.5", "--memory", "50M"];
        let br = ["cmp-cg", "192.168.1.3"];
        rows.push(Row::new(
            ENGINE_LIMITS,
            run(&lim, &br, t),
            run(&lim, &br, z),
        ));
    }

    // runc and crun share one bundle per command; `X spec` writes the defaults.
    let spec_tool = which("runc").or_else(|| which("crun"));
    let bundles = match &spec_tool {
        Some(tool) => Some((
            make_bundle(tool, &tmp.join("bundle-true"), rootfs, t)?,
            make_bundle(tool, &tmp.join("bundle-sleep"), rootfs, z)?,
        )),
        None => None,
    };
    for rt in ["runc", "crun"] {
        let name = format!("{rt} run");
        match (which(rt), &bundles) {
            (Some(bin), Some((bt, bz))) => {
                let root = tmp.join(format!("{rt}-state"));
                let argv = |b: &Path| {
                    vec![
                        s(&bin),
                        "--root".into(),
                        s(&root),
                        "run".into(),
                        "--bundle".into(),
                        s(b),
                        format!("cmp-{rt}"),
                    ]
                };
                rows.push(Row::new(&name, argv(bt), argv(bz)));
            }
            _ => rows.push(Row::missing(&name, rt)),
        }
    }

    let bwrap = |bin: &Path, cmd: &[&str]| {
        let mut v = vec![
            s(bin),
            "--unshare-all".into(),
            "--bind".into(),
            r.clone(),
            "/".into(),
        ];
        v.extend(["--proc", "/proc", "--dev", "/dev"].map(String::from));
        v.extend(cmd.iter().map(|x| x.to_string()));
        v
    };
    match which("bwrap") {
        Some(bin) => rows.push(Row::new(
            "bwrap --unshare-all",
            bwrap(&bin, t),
            bwrap(&bin, z),
        )),
        None => rows.push(Row::missing("bwrap --unshare-all", "bwrap")),
    }

    match which("systemd-nspawn") {
        Some(bin) => {
            let copy = tmp.join("rootfs-nspawn");
            copy_tree(rootfs, &copy)?;
            // nspawn refuses a tree without /usr ("doesn't look like an OS tree").
            fs::create_dir_all(copy.join("usr"))?;
            // --keep-unit: no systemd manager to ask for a scope here.
            let argv = |cmd: &[&str]| {
                let mut v = vec![s(&bin), "-q".into(), "-D".into(), s(&copy)];
                v.extend(["--register=no", "--keep-unit", "--private-network"].map(String::from));
                v.extend(cmd.iter().map(|x| x.to_string()));
                v
            };
            rows.push(Row::new("systemd-nspawn", argv(t), argv(z)));
        }
        None => rows.push(Row::missing("systemd-nspawn", "systemd-nspawn")),
    }

    match which("podman") {
        Some(bin) => {
            let copy = tmp.join("rootfs-podman");
            copy_tree(rootfs, &copy)?;
            // Global options go before `run`; run options before the rootfs,
            // which is a positional argument (`--rootfs` is a flag): anything
            // after it is the container's command.
            let argv = |cmd: &[&str]| {
                let mut v = vec![s(&bin)];
                v.extend(
                    [
                        "--runtime",
                        "runc",
                        "--cgroup-manager",
                        "cgroupfs",
                        "run",
                        "--rm",
                    ]
                    .map(String::from),
                );
                v.extend(
                    [
                        "--ulimit",
                        "nofile=1024:1024",
                        "--ulimit",
                        "nproc=1024:1024",
                        "--rootfs",
                    ]
                    .map(String::from),
                );
                v.push(s(&copy));
                v.extend(cmd.iter().map(|x| x.to_string()));
                v
            };
            let mut row = Row::new("podman run --rootfs", argv(t), argv(z));
            row.note = "default network (netavark bridge), runc, cgroupfs".into();
            rows.push(row);
        }
        None => rows.push(Row::missing("podman run --rootfs", "podman")),
    }

    let floor = |bin: &Path, cmd: &[&str]| {
        let mut v = vec![s(bin)];
        v.extend(
            [
                "--pid", "--fork", "--net", "--uts", "--ipc", "--mount", "--root",
            ]
            .map(String::from),
        );
        v.push(r.clone());
        v.extend(cmd.iter().map(|x| x.to_string()));
        v
    };
    match which("unshare") {
        Some(bin) => rows.push(Row::new("unshare (floor)", floor(&bin, t), floor(&bin, z))),
        None => rows.push(Row::missing("unshare (floor)", "unshare")),
    }
    Ok(rows)
}

/// An OCI bundle: `TOOL spec`'s defaults, root = `rootfs`, the given command,
/// no terminal.
fn make_bundle(tool: &Path, dir: &Path, rootfs: &Path, cmd: &[&str]) -> Result<PathBuf> {
    fs::create_dir(dir)?;
    let status = Command::new(tool)
        .args(["spec", "--bundle"])
        .arg(dir)
        .status()
        .with_context(|| format!("cannot run {} spec", tool.display()))?;
    if !status.success() {
        bail!("{} spec failed", tool.display());
    }
    let path = dir.join("config.json");
    let mut config: Value = serde_json::from_slice(&fs::read(&path)?)?;
    config["root"]["path"] = Value::from(s(rootfs));
    config["process"]["args"] = Value::from(cmd.to_vec());
    config["process"]["terminal"] = Value::from(false);
    fs::write(&path, serde_json::to_vec_pretty(&config)?)?;
    Ok(dir.to_path_buf())
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .context("cannot run cp")?;
    if !status.success() {
        bail!("cp -a {} {} failed", from.display(), to.display());
    }
    Ok(())
}

/// Quotes for hyperfine's `-N` word splitting (POSIX shell rules).
fn shell_join(argv: &[String]) -> String {
    let quote = |a: &String| {
        let safe = !a.is_empty()
            && a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "/._-=:,+@%".contains(c));
        if safe {
            a.clone()
        } else {
            format!("'{}'", a.replace('\'', "'\\''"))
        }
    };
    argv.iter().map(quote).collect::<Vec<_>>().join(" ")
}

/// Waits for `child`, killing it after `limit`.
fn wait_limited(child: &mut Child, limit: Duration) -> Result<std::process::ExitStatus> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            bail!("timed out after {} s", limit.as_secs());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Runs a command once; Err holds the first line of what went wrong.
fn probe(argv: &[String]) -> std::result::Result<(), String> {
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start: {e}"))?;
    let status = wait_limited(&mut child, Duration::from_secs(60)).map_err(|e| e.to_string())?;
    if status.success() {
        return Ok(());
    }
    let mut err = Vec::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = std::io::Read::read_to_end(&mut pipe, &mut err);
    }
    // The engine's "no resource control" notice is not the error.
    let err: String = String::from_utf8_lossy(&err)
        .lines()
        .filter(|l| !l.contains("running without resource control"))
        .collect::<Vec<_>>()
        .join("\n");
    Err(format!("{} ({status})", first_line(err.as_bytes())))
}

/// Peak RSS (VmHWM) of the command's own process, read from /proc while it runs.
fn vm_hwm(argv: &[String]) -> Option<u64> {
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak = None;
    let start = Instant::now();
    loop {
        // VmHWM only grows; a zombie has none, so keep the last value read.
        if let Ok(text) = fs::read_to_string(&status_path) {
            if let Some(kb) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            {
                peak = Some(kb);
            }
        }
        if child.try_wait().ok()?.is_some() {
            return peak;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// `/usr/bin/time -f %M`: the largest RSS among the process and the children it reaped.
fn time_max_rss(gnu_time: &Path, out: &Path, argv: &[String]) -> Option<u64> {
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
fn concurrent_starts(
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

fn median(sorted: &[f64]) -> f64 {
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

fn median_u64(values: impl Iterator<Item = u64>) -> Option<u64> {
    let mut v: Vec<u64> = values.collect();
    v.sort_unstable();
    v.get(v.len().checked_sub(1)? / 2).copied()
}

fn targets(rows: &[Row], cgroup: &std::result::Result<(), String>) -> Vec<Target> {
    let med = |name: &str| find(rows, name).and_then(|r| r.median_ms);
    let why_not = |name: &str| match find(rows, name).map(|r| &r.status) {
        Some(Status::NotInstalled(w)) | Some(Status::Refused(w)) | Some(Status::Unavailable(w)) => {
            format!("{name}: {w}")
        }
        _ => format!("{name}: no figure"),
    };
    // `ratio <= limit` when `at_most`, else `ratio >= limit`.
    let check = |target: &str, a: &str, b: &str, limit: f64, at_most: bool| -> Target {
        let (verdict, figure) = match (med(a), med(b)) {
            (Some(x), Some(y)) => {
                let ratio = x / y;
                let met = if at_most {
                    ratio <= limit
                } else {
                    ratio >= limit
                };
                (
                    if met { "met" } else { "missed" }.to_string(),
                    format!("{a} {x:.2} ms / {b} {y:.2} ms = {ratio:.2}x"),
                )
            }
            (None, _) => ("not measured".into(), why_not(a)),
            (_, None) => ("not measured".into(), why_not(b)),
        };
        Target {
            target: target.into(),
            verdict,
            figure,
        }
    };
    let mut out = vec![
        check(
            "engine --net none at or below bwrap (<= 1.0x)",
            ENGINE_NONE,
            "bwrap --unshare-all",
            1.0,
            true,
        ),
        check(
            "engine --net none at most 1.5x the unshare floor",
            ENGINE_NONE,
            "unshare (floor)",
            1.5,
            true,
        ),
        check(
            "bridge address at most 2x --net none",
            ENGINE_BRIDGE,
            ENGINE_NONE,
            2.0,
            true,
        ),
        check(
            "bridge address at least 20x faster than podman (default network)",
            "podman run --rootfs",
            ENGINE_BRIDGE,
            20.0,
            false,
        ),
    ];
    match cgroup {
        Ok(()) => out.push(check(
            "limits + bridge at or below crun with no network (cgroup v2)",
            ENGINE_LIMITS,
            "crun run",
            1.0,
            true,
        )),
        Err(why) => out.push(Target {
            target: "limits + bridge at or below crun with no network (cgroup v2)".into(),
            verdict: "not measurable here".into(),
            figure: format!(
                "{why}: run compare in the cgroup v2 guest to measure it (README, Benchmarks)"
            ),
        }),
    }
    let rss = rows
        .iter()
        .filter(|r| r.name.starts_with("engine"))
        .filter_map(|r| r.vm_hwm_kb)
        .max();
    out.push(Target {
        target: "engine supervisor peak RSS at most 4 MB".into(),
        verdict: match rss {
            Some(kb) if kb <= 4096 => "met",
            Some(_) => "missed",
            None => "not measured",
        }
        .into(),
        figure: rss.map_or("no figure".into(), |kb| {
            format!("VmHWM {:.1} MB (runc: {})", kb as f64 / 1024.0, {
                find(rows, "runc run")
                    .and_then(|r| r.vm_hwm_kb)
                    .map_or("n/a".into(), |k| format!("{:.1} MB", k as f64 / 1024.0))
            })
        }),
    });
    out
}

fn machine_info(
    engine: &Path,
    rootfs_how: &str,
    quick: bool,
    runs: usize,
    rounds: usize,
) -> Vec<(String, String)> {
    let first = |cmd: &str, args: &[&str]| -> String {
        Command::new(cmd)
            .args(args)
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| first_line(&o.stdout))
            .unwrap_or_else(|| "not installed".into())
    };
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_default();
    let os = fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("PRETTY_NAME=")
                    .map(|v| v.trim_matches('"').to_string())
            })
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut v = vec![
        (
            "os".to_string(),
            format!("{os}, kernel {}", first("uname", &["-r"])),
        ),
        ("cpu".into(), format!("{cpu}, {cores} cores")),
        (
            "load average at start".into(),
            load.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" "),
        ),
        (
            "cgroups".into(),
            match cgroup_v2_limits() {
                Ok(()) => "v2 with cpu and memory".into(),
                Err(why) => why,
            },
        ),
        (
            "engine".into(),
            format!(
                "{} ({})",
                first(&s(engine), &["--version"]),
                engine.display()
            ),
        ),
        ("rootfs".into(), format!("busybox, {rootfs_how}")),
        (
            "runs".into(),
            format!(
                "{runs} per command in {rounds} round(s){}",
                if quick { " (quick)" } else { "" }
            ),
        ),
        ("hyperfine".into(), first("hyperfine", &["--version"])),
    ];
    for (name, args) in [
        ("runc", &["--version"][..]),
        ("crun", &["--version"]),
        ("bwrap", &["--version"]),
        ("systemd-nspawn", &["--version"]),
        ("podman", &["--version"]),
        ("unshare", &["--version"]),
    ] {
        v.push((name.to_string(), first(name, args)));
    }
    v
}

fn markdown(report: &Report, cgroup: &std::result::Result<(), String>) -> String {
    let ms = |x: Option<f64>| x.map_or("".into(), |v| format!("{v:.2}"));
    let mb = |x: Option<u64>| x.map_or("".into(), |kb| format!("{:.1}", kb as f64 / 1024.0));
    let mut o = String::new();
    let _ = writeln!(
        o,
        "## Container start-to-exit of /bin/true, busybox rootfs\n"
    );
    for (k, v) in &report.machine {
        let _ = writeln!(o, "- {k}: {v}");
    }
    let _ = writeln!(
        o,
        "\n| runtime | median ms | min ms | max ms | ratio to engine --net none | runs |"
    );
    let _ = writeln!(o, "|---|---:|---:|---:|---:|---:|");
    for r in &report.rows {
        let cell = match &r.status {
            Status::Measured => format!(
                "{} | {} | {} | {} | {}",
                ms(r.median_ms),
                ms(r.min_ms),
                ms(r.max_ms),
                r.ratio_to_engine.map_or("".into(), |x| format!("{x:.2}x")),
                r.times.len()
            ),
            Status::NotInstalled(w) => format!("{w} | | | | "),
            Status::Refused(w) => format!("refused: {w} | | | | "),
            Status::Unavailable(w) => format!("unavailable: {w} | | | | "),
        };
        let _ = writeln!(o, "| {} | {cell} |", r.name);
    }
    if let Err(why) = cgroup {
        let _ = writeln!(
            o,
            "\nThe cgroup v2 row (engine with --cpus 0.5 --memory 50M and a bridge address, against crun with no network) is skipped: {why}."
        );
    }
    if let (Some(b), Some(n)) = (
        find(&report.rows, ENGINE_BRIDGE).and_then(|r| r.median_ms),
        find(&report.rows, ENGINE_NONE).and_then(|r| r.median_ms),
    ) {
        let _ = writeln!(
            o,
            "\nWhat the bridge address adds: {:.2} ms per start (median {b:.2} vs {n:.2}).",
            b - n
        );
    }
    if let Some(c) = &report.concurrent {
        let _ = writeln!(
            o,
            "\n{CONCURRENT} concurrent starts, {}: median wall time {:.1} ms for the whole batch over {} rounds ({:.2} ms per container); median start-to-exit of one container within a batch {:.1} ms.",
            c.mode,
            c.median_batch_wall_ms,
            c.rounds,
            c.median_batch_wall_ms / CONCURRENT as f64,
            c.median_per_container_ms
        );
    }
    let _ = writeln!(
        o,
        "\n### Peak RSS of the supervisor, container running `sleep 0.2`\n"
    );
    let _ = writeln!(
        o,
        "| runtime | own peak RSS (VmHWM) MB | /usr/bin/time %M MB | process measured |"
    );
    let _ = writeln!(o, "|---|---:|---:|---|");
    for r in report.rows.iter().filter(|r| r.measured()) {
        let what = match r.name.split_whitespace().next().unwrap_or("") {
            "engine" | "engine," => "the engine (supervisor for the container's life)",
            "runc" | "crun" => "`run` in the foreground (its init child is reaped by it)",
            "podman" => "podman's foreground client; conmon, the real supervisor, is detached and not counted",
            "systemd-nspawn" => "nspawn (supervisor)",
            "bwrap" => "bwrap (supervisor)",
            _ => "unshare --fork (waits for the child)",
        };
        let _ = writeln!(
            o,
            "| {} | {} | {} | {what} |",
            r.name,
            mb(r.vm_hwm_kb),
            mb(r.time_max_rss_kb)
        );
    }
    let _ = writeln!(o, "\n%M is the largest of the process and the children it reaped (the container's own `sleep` included).");
    let _ = writeln!(o, "\n### Targets (issue 5)\n");
    let _ = writeln!(o, "| target | verdict | figure |");
    let _ = writeln!(o, "|---|---|---|");
    for t in &report.targets {
        let _ = writeln!(o, "| {} | {} | {} |", t.target, t.verdict, t.figure);
    }
    let _ = writeln!(o, "\n### Method\n");
    for m in &report.method {
        let _ = writeln!(o, "- {m}");
    }
    let _ = writeln!(
        o,
        "\nCommands (ROOTFS and temporary paths as on this run):\n"
    );
    for r in report.rows.iter().filter(|r| !r.argv.is_empty()) {
        let _ = writeln!(o, "- {}: `{}`", r.name, shell_join(&r.argv));
    }
    o
}

/// Removes whatever a run may have left: containers in runc's and crun's
/// private state, the engine's bridge and stale state. The namespace, with
/// anything still in it, goes when this process exits.
fn cleanup(engine: &Path, tmp: &Path) {
    for rt in ["runc", "crun"] {
        if which(rt).is_some() {
            let _ = Command::new(rt)
                .arg("--root")
                .arg(tmp.join(format!("{rt}-state")))
                .args(["delete", "-f", &format!("cmp-{rt}")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
    let _ = Command::new(engine)
        .args(["teardown", "--force"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_join_quotes_what_hyperfine_would_split() {
        let argv = ["/bin/x", "a b", "it's", "", "k=v:1"].map(String::from);
        assert_eq!(shell_join(&argv), r"/bin/x 'a b' 'it'\''s' '' k=v:1");
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[1.0, 2.0, 10.0]), 2.0);
        assert_eq!(median(&[1.0, 2.0, 4.0, 10.0]), 3.0);
        assert!(median(&[]).is_nan());
        assert_eq!(median_u64([5, 1, 9].into_iter()), Some(5));
        assert_eq!(median_u64(std::iter::empty()), None);
    }
}
