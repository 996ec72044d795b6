//! The launcher: the process `cargo test -p harness` starts. It decides
//! what runs, builds the engine and the host-side fixtures, runs the runner
//! directly or in one QEMU guest, and reports each scenario as a libtest
//! trial.
//!
//! Environment:
//!
//! | variable | meaning |
//! | --- | --- |
//! | `HARNESS_ROOTFS` | `busybox`, `debian`, `centos` or a path, comma-separated (default: busybox,debian; plus centos on GitHub Actions) |
//! | `HARNESS_MODE` | `auto` (default), `direct` or `vm` |
//! | `HARNESS_ENGINE` | an engine binary to test instead of building `engine` |
//! | `HARNESS_ARCH` | the guest's architecture, `amd64` or `arm64` (default: the host's) |
//! | `HARNESS_GUEST_EXE` | the test binary the guest runs (default: this one; for arm64 the aarch64 build) |
//! | `HARNESS_VM_ACCEL`, `HARNESS_VM_MEMORY`, `HARNESS_VM_CPUS`, `HARNESS_VM_TIMEOUT` | the guest's accelerator (auto), memory (2G), vCPUs (2), timeout in seconds, also of a run without a guest (1200) |

use crate::fixtures::{self, format_sources, Source};
use crate::plan::{self, Flavour, FIXTURE};
use crate::process;
use crate::report::{self, Outcome};
use crate::{cgroup, INNER_VAR};
use anyhow::{anyhow, bail, Context, Result};
use libtest_mimic::{Arguments, Failed, Trial};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};
use testkit::quote::which;

/// A trial's verdict as the launcher reports it.
type Verdict = std::result::Result<(), String>;

pub fn main() -> ExitCode {
    let args = Arguments::from_args();
    let flavours = match plan::flavours_from_env() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("harness: {e}");
            return ExitCode::from(2);
        }
    };
    let names = plan::trial_names(&flavours);
    let selected: Vec<String> = names
        .iter()
        .filter(|n| !args.is_filtered_out(&Trial::test(n.as_str(), || Ok(()))))
        .cloned()
        .collect();
    let verdicts = if args.list || selected.is_empty() {
        BTreeMap::new()
    } else {
        let start = Instant::now();
        let verdicts = launch(&flavours, &selected);
        println!(
            "harness: {} trial(s) finished in {:.0} s (engine build, fixtures, {}, scenarios)",
            selected.len(),
            start.elapsed().as_secs_f64(),
            if direct_mode().0 {
                "unshare"
            } else {
                "guest boot"
            }
        );
        verdicts
    };
    let trials = names
        .into_iter()
        .map(|name| {
            let verdict = verdicts.get(&name).cloned().unwrap_or_else(|| {
                Err("the launcher has no verdict for this trial (a harness bug)".into())
            });
            Trial::test(name, move || verdict.map_err(Failed::from))
        })
        .collect();
    libtest_mimic::run(&args, trials).exit_code()
}

/// Whether to run directly on this host, and why (or why not).
fn direct_mode() -> (bool, String) {
    match std::env::var("HARNESS_MODE").as_deref() {
        Ok("direct") => (true, "HARNESS_MODE=direct".into()),
        Ok("vm") => (false, "HARNESS_MODE=vm".into()),
        _ => match cgroup::direct_capable() {
            Ok(()) => (
                true,
                "this host has root and cgroup v2 with cpu, memory and pids".into(),
            ),
            Err(why) => (false, format!("this host cannot run them directly: {why}")),
        },
    }
}

/// Runs the selected trials and returns a verdict for each.
fn launch(flavours: &[Flavour], selected: &[String]) -> BTreeMap<String, Verdict> {
    let fail_all = |why: String| -> BTreeMap<String, Verdict> {
        selected
            .iter()
            .map(|n| (n.clone(), Err(why.clone())))
            .collect()
    };
    if let Err(e) = check_mode_value() {
        return fail_all(format!("{e:#}"));
    }
    let binaries = match binaries() {
        Ok(b) => b,
        Err(e) => return fail_all(format!("{e:#}")),
    };
    let arch = plan::arch();

    // Host-side fixtures, for the flavours something was selected of.
    let rootfs_dir = vm::target_dir().join("rootfs");
    let mut sources: Vec<(String, Source)> = Vec::new();
    let mut broken: BTreeMap<String, String> = BTreeMap::new();
    for flavour in flavours {
        let name = flavour.name();
        let prefix = format!("{name}::");
        if !selected.iter().any(|n| n.starts_with(&prefix)) {
            continue;
        }
        match fixtures::host_source(flavour, &binaries.host_engine, &rootfs_dir, &arch) {
            Ok(source) => sources.push((name, source)),
            Err(e) => {
                println!("harness: the {name} rootfs is not available: {e:#}");
                broken.insert(name, format!("{e:#}"));
            }
        }
    }
    let runnable: Vec<String> = selected
        .iter()
        .filter(|n| !broken.keys().any(|b| n.starts_with(&format!("{b}::"))))
        .cloned()
        .collect();

    let (end, results) = if runnable.is_empty() {
        (RunnerEnd::Exited(0), BTreeMap::new())
    } else if sources.is_empty() {
        // Only `leftovers` is left, with nothing before it to check.
        (
            RunnerEnd::Failed("no rootfs could be prepared, so no scenario ran".into()),
            BTreeMap::new(),
        )
    } else {
        run_runner(&binaries, &sources, &runnable)
    };
    let mut verdicts = BTreeMap::new();
    for name in selected {
        let flavour = name.split_once("::").map(|(f, _)| f);
        let verdict = if let Some(why) = flavour.and_then(|f| broken.get(f)) {
            if name.ends_with(&format!("::{FIXTURE}")) {
                Err(why.clone())
            } else {
                Err(format!(
                    "the {} rootfs could not be prepared on the host: see {}::{FIXTURE}",
                    flavour.unwrap_or_default(),
                    flavour.unwrap_or_default()
                ))
            }
        } else {
            judge(name, &end, &results)
        };
        verdicts.insert(name.clone(), verdict);
    }
    verdicts
}

/// How the runner ended.
#[derive(Debug, Clone, PartialEq)]
enum RunnerEnd {
    /// It exited with this status (0 all passed, 1 some failed).
    Exited(i32),
    /// It could not start, crashed, or its guest failed: why.
    Failed(String),
}

/// One trial's verdict from the runner's results and how it ended: a
/// trial passes only when it reported a pass and the runner ended well.
fn judge(name: &str, end: &RunnerEnd, results: &BTreeMap<String, Outcome>) -> Verdict {
    let any_failed = results.values().any(|o| !o.ok);
    let runner_problem = match end {
        RunnerEnd::Exited(0) if !any_failed => None,
        RunnerEnd::Exited(1) if any_failed => None,
        RunnerEnd::Exited(code @ (0 | 1)) => Some(format!(
            "the runner exited with {code}, which contradicts the results it reported"
        )),
        RunnerEnd::Exited(code) => Some(format!(
            "the runner failed (exit status {code}; its output above says why)"
        )),
        RunnerEnd::Failed(why) => Some(why.clone()),
    };
    match (results.get(name), runner_problem) {
        (Some(o), None) if o.ok => Ok(()),
        (Some(o), Some(problem)) if o.ok => Err(format!(
            "it passed in the runner, but then the run failed: {problem}"
        )),
        (Some(o), None) => Err(o.message.clone()),
        (Some(o), Some(problem)) => Err(format!(
            "{}\n(and then the run failed: {problem})",
            o.message
        )),
        (None, Some(problem)) => Err(format!("no result, because the run failed: {problem}")),
        (None, None) => Err("the runner reported no result for this trial".into()),
    }
}

fn check_mode_value() -> Result<()> {
    match std::env::var("HARNESS_MODE").as_deref() {
        Err(_) | Ok("") | Ok("auto") | Ok("direct") | Ok("vm") => Ok(()),
        Ok(other) => bail!("HARNESS_MODE={other}: use auto, direct or vm"),
    }
}

/// The binaries of a run: the engine the host runs (to build fixtures),
/// the engine the scenarios test, and the test binary that is the runner.
/// They are all the same architecture's, except for another
/// architecture's guest.
struct Binaries {
    host_engine: PathBuf,
    tested_engine: PathBuf,
    runner: PathBuf,
}

fn absolute_var(var: &str) -> Result<Option<PathBuf>> {
    let Some(value) = std::env::var_os(var).filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    let path = std::path::absolute(PathBuf::from(value))?;
    if !path.is_file() {
        bail!("{var}={} is not a file", path.display());
    }
    Ok(Some(path))
}

/// `HARNESS_ENGINE` is the engine under test, `HARNESS_GUEST_EXE` the
/// runner. Without them the workspace's engine is built now by cargo (same
/// profile as this test binary), so that a changed engine is what gets
/// tested, and this binary is the runner. For a guest of another
/// architecture (`HARNESS_ARCH=arm64` here) both are cross-built with
/// `--target`; the host then builds its own engine for the fixtures.
fn binaries() -> Result<Binaries> {
    let arch = plan::arch();
    let mut tested = absolute_var("HARNESS_ENGINE")?;
    let mut runner = absolute_var("HARNESS_GUEST_EXE")?;
    if arch != plan::host_arch() && (tested.is_none() || runner.is_none()) {
        let triple = match arch.as_str() {
            "arm64" => "aarch64-unknown-linux-gnu",
            "amd64" => "x86_64-unknown-linux-gnu",
            other => bail!("HARNESS_ARCH={other}: use amd64 or arm64"),
        };
        if tested.is_none() {
            tested = Some(cross_build_engine(triple)?);
        }
        if runner.is_none() {
            runner = Some(cross_build_runner(triple)?);
        }
    }
    let tested = match tested {
        Some(path) => path,
        None => build_engine()?,
    };
    let runs_here = match testkit::elf::read(&tested) {
        Ok(elf) => Some(elf.machine) == testkit::elf::host_machine(),
        Err(_) => true, // a script
    };
    Ok(Binaries {
        host_engine: if runs_here {
            tested.clone()
        } else {
            build_engine()?
        },
        tested_engine: tested,
        runner: match runner {
            Some(path) => path,
            None => std::env::current_exe().context("cannot find the test binary")?,
        },
    })
}

/// This test binary's profile directory (`<target>/debug`): it is
/// `<target>/<profile>/deps/scenarios-HASH`.
fn profile_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find the test binary")?;
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .ok_or_else(|| anyhow!("cannot tell the profile directory from {}", exe.display()))
}

/// `cargo SUBCOMMAND` on this workspace, with this build's target directory
/// and profile (and `--target TRIPLE` with its linker when cross-building).
fn cargo(subcommand: &str, triple: Option<&str>) -> Result<Command> {
    let profile = profile_dir()?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let mut cmd = Command::new(cargo);
    cmd.arg(subcommand).arg("--manifest-path").arg(&manifest);
    if let Some(target_dir) = profile.parent() {
        cmd.arg("--target-dir").arg(target_dir);
    }
    if profile.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    if let Some(triple) = triple {
        cmd.args(["--target", triple]);
        let var = format!(
            "CARGO_TARGET_{}_LINKER",
            triple.to_uppercase().replace('-', "_")
        );
        let gcc = format!("{}-linux-gnu-gcc", triple.split('-').next().unwrap_or(""));
        if std::env::var_os(&var).is_none() && which(&gcc).is_some() {
            cmd.env(var, gcc);
        }
    }
    Ok(cmd)
}

fn run_cargo(mut cmd: Command, what: &str) -> Result<process::Output> {
    println!("harness: {what}: {}", process::cmdline(&cmd));
    let out = process::run(&mut cmd, Duration::from_secs(30 * 60))?;
    if !out.status.success() {
        bail!("cannot {what}\n{out}");
    }
    Ok(out)
}

/// Builds the workspace's engine for this host with cargo.
fn build_engine() -> Result<PathBuf> {
    let mut cmd = cargo("build", None)?;
    cmd.args(["-p", "engine", "--bin", "engine"]);
    run_cargo(cmd, "build the engine")?;
    let engine = profile_dir()?.join("engine");
    if !engine.is_file() {
        bail!(
            "cargo built the engine but {} does not exist",
            engine.display()
        );
    }
    Ok(engine)
}

/// Cross-builds the engine for `triple`.
fn cross_build_engine(triple: &str) -> Result<PathBuf> {
    let mut cmd = cargo("build", Some(triple))?;
    cmd.args(["-p", "engine", "--bin", "engine"]);
    run_cargo(cmd, &format!("cross-build the engine for {triple}"))?;
    let profile = profile_dir()?;
    let engine = profile
        .parent()
        .unwrap_or(&profile)
        .join(triple)
        .join(profile.file_name().unwrap_or_default())
        .join("engine");
    if !engine.is_file() {
        bail!(
            "cargo built the engine but {} does not exist",
            engine.display()
        );
    }
    Ok(engine)
}

/// `ARCH-linux-gnu-gcc -static` of the confinement probe, into the target
/// directory (which the guest shares).
fn cross_build_probe(arch: &str) -> Result<PathBuf> {
    let gcc = match arch {
        "arm64" => "aarch64-linux-gnu-gcc",
        _ => "x86_64-linux-gnu-gcc",
    };
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../engine/tests/attack/attack.c");
    let profile = profile_dir()?;
    let dir = profile
        .parent()
        .unwrap_or(&profile)
        .join(format!("attack-probe-{arch}"));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let probe = dir.join("attack");
    let mut cmd = Command::new(gcc);
    cmd.args(["-static", "-O2", "-o"]).arg(&probe).arg(&src);
    let out = process::run(&mut cmd, Duration::from_secs(120)).with_context(|| {
        format!("cross-building the confinement probe needs {gcc} (apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross)")
    })?;
    if !out.status.success() {
        bail!("cannot cross-build the confinement probe\n{out}");
    }
    Ok(probe)
}

/// Cross-builds this test binary for `triple` and returns its path.
fn cross_build_runner(triple: &str) -> Result<PathBuf> {
    let mut cmd = cargo("test", Some(triple))?;
    cmd.args([
        "-p",
        "harness",
        "--test",
        "scenarios",
        "--no-run",
        "--message-format=json",
    ]);
    let out = run_cargo(cmd, &format!("cross-build the harness for {triple}"))?;
    out.stdout
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"]["name"] == "scenarios")
        .find_map(|v| v["executable"].as_str().map(PathBuf::from))
        .ok_or_else(|| anyhow!("cargo did not name the {triple} scenarios binary\n{out}"))
}

/// Runs the runner over `names`; returns how it ended and the results it
/// reported (also those reported before a crash).
fn run_runner(
    binaries: &Binaries,
    sources: &[(String, Source)],
    names: &[String],
) -> (RunnerEnd, BTreeMap<String, Outcome>) {
    let run_dir = vm::target_dir()
        .join("harness")
        .join(format!("run-{}", std::process::id()));
    let results = run_dir.join("results.jsonl");
    let prepared = std::fs::create_dir_all(&run_dir)
        .and_then(|()| match std::fs::remove_file(&results) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        })
        .with_context(|| format!("cannot prepare {}", run_dir.display()));
    if let Err(e) = prepared {
        return (RunnerEnd::Failed(format!("{e:#}")), BTreeMap::new());
    }
    let (direct, why) = direct_mode();
    let mut env: Vec<(String, String)> = vec![
        (INNER_VAR.into(), "1".into()),
        ("HARNESS_RESULTS".into(), results.display().to_string()),
        (
            "HARNESS_ENGINE".into(),
            binaries.tested_engine.display().to_string(),
        ),
        ("HARNESS_FLAVOURS".into(), format_sources(sources)),
        ("HARNESS_SELECT".into(), names.join(",")),
        ("RUST_BACKTRACE".into(), "1".into()),
    ];
    // HARNESS_TRACE for every scenario; the cri scenario's cache and critest focus.
    for var in [
        "HARNESS_TRACE",
        "HARNESS_CRI_CACHE",
        "HARNESS_CRI_FOCUS",
        "HARNESS_CRI_RUNTIME",
    ] {
        if let Ok(value) = std::env::var(var) {
            env.push((var.into(), value));
        }
    }
    // The image scenario's multi-arch index is written here, where skopeo
    // and both architectures' busybox are; a failure fails that trial only.
    if names.iter().any(|n| n.ends_with("::image")) {
        let dir = run_dir.join("image-index");
        match crate::scenarios::image::write_index(&dir) {
            Ok(()) => env.push((
                crate::scenarios::image::INDEX_VAR.into(),
                dir.display().to_string(),
            )),
            Err(e) => {
                println!("harness: cannot write the image scenario's multi-arch layout: {e:#}")
            }
        }
    }
    // A foreign guest's root has no C compiler: the confinement scenario's
    // probe is cross-built here, beside the cross-built engine.
    if plan::arch() != plan::host_arch() {
        match cross_build_probe(&plan::arch()) {
            Ok(probe) => env.push(("HARNESS_ATTACK_PROBE".into(), probe.display().to_string())),
            Err(e) => return (RunnerEnd::Failed(format!("{e:#}")), BTreeMap::new()),
        }
    }
    let ended = if direct {
        env.push((
            "HARNESS_SCRATCH".into(),
            run_dir.join("scratch").display().to_string(),
        ));
        println!(
            "harness: running {} trial(s) directly ({why}), in a network namespace of their own",
            names.len()
        );
        run_direct(&binaries.runner, &env)
    } else {
        env.push(("HARNESS_SCRATCH".into(), "/tmp/harness".into()));
        println!(
            "harness: running {} trial(s) in a QEMU guest ({why})",
            names.len()
        );
        run_guest(&binaries.runner, &env, &run_dir)
    };
    let end = match ended {
        Ok(code) => RunnerEnd::Exited(code),
        Err(e) => RunnerEnd::Failed(format!(
            "the {} failed: {e:#}",
            if direct { "runner" } else { "guest" }
        )),
    };
    match report::read(&results) {
        Ok(found) => {
            let _ = std::fs::remove_dir_all(&run_dir);
            (end, found)
        }
        Err(e) => (
            RunnerEnd::Failed(format!("cannot read the runner's results: {e:#}")),
            BTreeMap::new(),
        ),
    }
}

/// The runner inside `unshare --net`: bridges and veths go in a network
/// namespace of its own, never the host's.
fn run_direct(exe: &Path, env: &[(String, String)]) -> Result<i32> {
    let unshare = which("unshare").ok_or_else(|| {
        anyhow!("unshare (util-linux) is needed to give the scenarios their own network namespace")
    })?;
    // The same bound as a guest's run.
    let timeout = Duration::from_secs(env_parse("HARNESS_VM_TIMEOUT", 1200)?);
    let mut runner = Command::new(unshare)
        .args(["--net", "--"])
        .arg(exe)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .spawn()
        .with_context(|| format!("cannot start {}", exe.display()))?;
    let status = testkit::wait::child(&mut runner, timeout).with_context(|| {
        format!(
            "the scenarios ({}) did not end in time: raise HARNESS_VM_TIMEOUT",
            exe.display()
        )
    })?;
    Ok(process::status_code(&status))
}

fn env_parse<T: std::str::FromStr>(var: &str, default: T) -> Result<T> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => v
            .parse()
            .map_err(|_| anyhow!("{var}={v} is not a valid value")),
        _ => Ok(default),
    }
}

/// The runner in one QEMU guest (the `vm` crate): the host's / read-only,
/// `run_dir` shared writable for the results.
fn run_guest(exe: &Path, env: &[(String, String)], run_dir: &Path) -> Result<i32> {
    let defaults = vm::VmConfig::default();
    let cfg = vm::VmConfig {
        arch: plan::arch().parse()?,
        accel: env_parse("HARNESS_VM_ACCEL", defaults.accel)?,
        memory: std::env::var("HARNESS_VM_MEMORY")
            .ok()
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| "2G".into()),
        cpus: env_parse("HARNESS_VM_CPUS", 2)?,
        timeout: Duration::from_secs(env_parse("HARNESS_VM_TIMEOUT", 1200)?),
        env: env.to_vec(),
        writable: vec![run_dir.to_path_buf()],
        ..defaults
    };
    vm::run(&cfg, &[exe.display().to_string()])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(name: &str, ok: bool) -> Outcome {
        Outcome {
            name: name.into(),
            ok,
            message: if ok { String::new() } else { "it broke".into() },
            secs: 1.0,
        }
    }

    #[test]
    fn a_trial_passes_only_when_it_and_the_runner_did() {
        let ok = RunnerEnd::Exited(0);
        let some_failed = RunnerEnd::Exited(1);
        let mut results = BTreeMap::new();
        results.insert("a".to_string(), outcome("a", true));
        assert_eq!(judge("a", &ok, &results), Ok(()));
        assert!(judge("b", &ok, &results).unwrap_err().contains("no result"));
        let err = judge("a", &RunnerEnd::Exited(2), &results).unwrap_err();
        assert!(err.contains("passed in the runner, but then"), "{err}");
        assert!(err.contains("exit status 2"), "{err}");
        assert!(judge("a", &some_failed, &results)
            .unwrap_err()
            .contains("contradicts"));
        results.insert("c".to_string(), outcome("c", false));
        assert_eq!(judge("a", &some_failed, &results), Ok(()));
        assert_eq!(judge("c", &some_failed, &results), Err("it broke".into()));
        assert!(judge("a", &ok, &results)
            .unwrap_err()
            .contains("contradicts"));
        let crashed = RunnerEnd::Failed("the guest failed: timeout".into());
        let err = judge("a", &crashed, &results).unwrap_err();
        assert!(
            err.contains(
                "passed in the runner, but then the run failed: the guest failed: timeout"
            ),
            "{err}"
        );
        let err = judge("c", &crashed, &results).unwrap_err();
        assert!(
            err.starts_with("it broke\n(and then the run failed"),
            "{err}"
        );
        let err = judge("d", &crashed, &results).unwrap_err();
        assert!(
            err.starts_with("no result, because the run failed: the guest failed"),
            "{err}"
        );
    }
}
