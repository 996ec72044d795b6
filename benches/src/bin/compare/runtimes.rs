//! The runtimes compared: one row per runtime, with the commands that time
//! it (`/bin/true`) and measure its memory (`sleep 0.2`), and what a run
//! leaves behind.

use anyhow::{bail, Context, Result};
use benches::cgroup_v2_limits;
use serde::Serialize;
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use testkit::quote::which;

/// Name of the engine row every ratio is taken against.
pub const ENGINE_NONE: &str = "engine --net none";
pub const ENGINE_BRIDGE: &str = "engine, bridge address";
pub const ENGINE_LIMITS: &str = "engine, limits + bridge";

#[derive(Serialize, Clone)]
#[serde(rename_all = "snake_case", tag = "state", content = "why")]
pub enum Status {
    Measured,
    NotInstalled(String),
    Refused(String),
    Unavailable(String),
}

#[derive(Serialize)]
pub struct Row {
    pub name: String,
    pub status: Status,
    /// The timed command, `/bin/true` in the container.
    pub argv: Vec<String>,
    /// The same runtime running `sleep 0.2`, for the RSS table.
    #[serde(skip)]
    pub argv_sleep: Vec<String>,
    /// Every timed run, in seconds.
    pub times: Vec<f64>,
    pub median_ms: Option<f64>,
    pub min_ms: Option<f64>,
    pub max_ms: Option<f64>,
    pub ratio_to_engine: Option<f64>,
    /// Peak RSS of the foreground process itself (VmHWM), kB.
    pub vm_hwm_kb: Option<u64>,
    /// `/usr/bin/time -f %M`: the largest of it and the children it reaped, kB.
    pub time_max_rss_kb: Option<u64>,
    pub note: String,
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

    pub fn measured(&self) -> bool {
        matches!(self.status, Status::Measured)
    }
}

pub fn find<'a>(rows: &'a [Row], name: &str) -> Option<&'a Row> {
    rows.iter().find(|r| r.name == name)
}

pub fn s(x: impl AsRef<std::ffi::OsStr>) -> String {
    x.as_ref().to_string_lossy().into_owned()
}

/// Every row, each with its `/bin/true` and `sleep 0.2` commands; runtimes
/// that are not installed get a row saying so.
pub fn prepare_rows(engine: &Path, rootfs: &Path, tmp: &Path) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    let e = s(engine);
    let r = s(rootfs);
    // Options before the rootfs: every word after it is the command.
    let run = |pre: &[&str], cmd: &[&str]| -> Vec<String> {
        let mut v = vec![e.clone(), "run".into()];
        v.extend(pre.iter().map(|x| x.to_string()));
        v.push(r.clone());
        v.push("--".into());
        v.extend(cmd.iter().map(|x| x.to_string()));
        v
    };
    let t: &[&str] = &["/bin/true"];
    let z: &[&str] = &["/bin/sleep", "0.2"];
    rows.push(Row::new(
        ENGINE_NONE,
        run(&["--net", "none"], t),
        run(&["--net", "none"], z),
    ));
    let br = ["--name", "cmp-br", "--ip", "192.168.1.2"];
    rows.push(Row::new(ENGINE_BRIDGE, run(&br, t), run(&br, z)));
    if cgroup_v2_limits().is_ok() {
        let lim = [
            "--cpus",
            "0.5",
            "--memory",
            "50M",
            "--name",
            "cmp-cg",
            "--ip",
            "192.168.1.3",
        ];
        rows.push(Row::new(ENGINE_LIMITS, run(&lim, t), run(&lim, z)));
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

/// Removes whatever a run may have left: containers in runc's and crun's
/// private state, the engine's bridge and stale state. The namespace, with
/// anything still in it, goes when this process exits.
pub fn cleanup(engine: &Path, tmp: &Path) {
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
