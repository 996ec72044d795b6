//! Issue 5's targets, each marked met, missed or not measured.

use crate::runtimes::{find, Row, Status, ENGINE_BRIDGE, ENGINE_LIMITS, ENGINE_NONE};
use serde::Serialize;

#[derive(Serialize)]
pub struct Target {
    pub target: String,
    pub verdict: String,
    pub figure: String,
}

pub fn targets(rows: &[Row], cgroup: &std::result::Result<(), String>) -> Vec<Target> {
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
                "{why}: run compare in the cgroup v2 guest to measure it (docs/benchmarks.md)"
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
