//! The report: the machine it ran on, the method, and the tables (markdown
//! on stdout, everything as JSON with `--json`).

use crate::measure::{Concurrent, CONCURRENT};
use crate::runtimes::{find, s, Row, Status, ENGINE_BRIDGE, ENGINE_NONE};
use crate::targets::Target;
use benches::{cgroup_v2_limits, first_line};
use serde::Serialize;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use testkit::quote::join as shell_join;

#[derive(Serialize)]
pub struct Report {
    pub machine: Vec<(String, String)>,
    pub method: Vec<String>,
    pub rows: Vec<Row>,
    pub concurrent: Option<Concurrent>,
    pub targets: Vec<Target>,
}

pub fn machine_info(
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

pub fn markdown(report: &Report, cgroup: &std::result::Result<(), String>) -> String {
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
