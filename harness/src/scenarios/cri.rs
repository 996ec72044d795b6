//! Scenario cri: Kubernetes' CRI on a cgroup v2 kernel. containerd (with
//! its CRI plugin and its defaults: cgroups on, a cgroupfs path and cpu
//! shares for every container) runs the engine as its runc shim's binary,
//! with CNI bridge networking, images from a local registry, and `/`
//! rshared as on a systemd node (`conformance/cri/cri-check.sh`, MODE
//! crictl). crictl drives a pod's whole life: runp, create, start, exec
//! (its output, and a command's exit status handed back), logs, stop, rm,
//! stopp, rmp. Then containerd's `ctr`: run --rm (the exit status), run -d,
//! exec, kill, delete, and no task or container left. Afterwards no cgroup
//! of a container is left under containerd's parents.
//!
//! Then critest, in the same containerd: the few specs only this guest can
//! show ([`GUEST_FOCUS`]: host namespaces, privileged, rshared propagation
//! under a shared `/`, container stats read from the cgroup containerd
//! asked for), each of which `conformance/cri/expected-pass-guest.txt` must
//! list and which must pass. `HARNESS_CRI_FOCUS=REGEX` selects other specs
//! (`.` for all): then each that the list names must pass, and one that
//! passes unlisted is printed. Not the whole suite by default: under TCG it
//! took 22 min with the engine (about 17 s a spec, most of it the pod's
//! teardown), where CI has 20 min for everything.

use super::Ctx;
use crate::process;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The whole walk with the guest's critest specs under TCG: about 70 s
/// for the walk on an idle host; on a busy one (load 10 to 14, another
/// guest running) 144 s for the walk and 119 s for the four specs (boot
/// excluded).
const TIMEOUT: Duration = Duration::from_secs(600);
/// critest's specs that need this guest (ginkgo's focus regex): what the
/// host's check (cgroups off, no devices cgroup) cannot show. Every pod here
/// has a cgroupsPath and cpu shares already; these add the host's pid
/// namespace with a cgroup (the shim's `kill --all` must take the
/// container's cgroup, not every process it can see), a privileged
/// container (every host device beside the devices cgroup), rshared
/// propagation both ways under a shared `/`, and the container's stats,
/// which containerd reads from the cgroup it asked for. HostIpc and
/// HostNetwork were left out: the host's check runs them the same way, and
/// each spec costs 25 to 40 s here under TCG on a busy host.
pub const GUEST_FOCUS: &str =
    "support HostPID$|Privileged is true|'rshared'|listing container stats";
/// With critest: the whole suite took 1341 s under TCG with the engine,
/// about 1740 s with runc (critest's own deadline is 45 min).
const CRITEST_TIMEOUT: Duration = Duration::from_secs(3000);
/// Where `conformance/cri/ci.sh` caches crictl and the test images.
const DEFAULT_CACHE: &str = "/var/cache/engine-cri";
/// The cgroup parents containerd gives its containers: the CRI's namespace
/// and the one the `ctr` steps use.
const CGROUP_PARENTS: [&str; 2] = ["k8s.io", "ctr-check"];

pub fn run(ctx: &Ctx) -> Result<()> {
    let env = ctx.env("cri")?;
    let kit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conformance/cri");
    for (program, package) in [
        ("containerd", "containerd"),
        ("ctr", "containerd"),
        ("docker-registry", "docker-registry"),
        ("skopeo", "skopeo"),
        ("catatonit", "catatonit"),
    ] {
        testkit::quote::which(program).with_context(|| {
            format!("{program} is not installed: apt-get install {package} (the cri scenario needs containerd, docker-registry, skopeo, catatonit, containernetworking-plugins)")
        })?;
    }
    let cache =
        PathBuf::from(std::env::var("HARNESS_CRI_CACHE").unwrap_or_else(|_| DEFAULT_CACHE.into()));
    let (tools, layout) = (cache.join("tools"), cache.join("img/oci"));
    if !tools.join("crictl").is_file() || !layout.join("index.json").is_file() {
        bail!(
            "crictl or the CRI test images are not built in {}: run `PREPARE_ONLY=1 conformance/cri/ci.sh` (needs Go >= 1.21, see docs/testing.md, \"CRI\")",
            cache.display()
        );
    }
    let cgroup_mount = crate::cgroup::mount_point().context("no cgroup2 mount")?;
    for parent in CGROUP_PARENTS {
        if cgroup_mount.join(parent).exists() {
            bail!(
                "{} exists before the scenario: another containerd uses it; run the cri scenario where none does",
                cgroup_mount.join(parent).display()
            );
        }
    }

    // A tmpfs scratch (overlayfs takes it as containerd's snapshot store);
    // cri-check.sh takes the image layout from WORK/img/oci.
    let work = ctx.settings.scratch.join("cri").join(&env.tag);
    let out = work.join("out");
    std::fs::create_dir_all(work.join("img"))?;
    let copied = process::run(
        Command::new("cp")
            .arg("-a")
            .arg(&layout)
            .arg(work.join("img")),
        Duration::from_secs(120),
    )?;
    copied.expect_success("copying the CRI test images")?;

    let custom = std::env::var("HARNESS_CRI_FOCUS").ok();
    let focus = custom.as_deref().unwrap_or(GUEST_FOCUS);
    // The runtime containerd's shim calls: the engine, or another (runc) for
    // the baseline of a critest run.
    let runtime = std::env::var_os("HARNESS_CRI_RUNTIME")
        .map(PathBuf::from)
        .unwrap_or_else(|| env.engine.clone());
    let mut check = Command::new(kit.join("cri-check.sh"));
    check
        .env("RUNTIME", &runtime)
        .env("WORK", &work)
        .env("TOOLS", &tools)
        .env("OUT", &out)
        .env("MODE", "both")
        .env("FOCUS", focus)
        .env("DISABLE_CGROUP", "false")
        .env("SHARED_ROOT", "1");
    let timeout = if custom.is_some() {
        CRITEST_TIMEOUT
    } else {
        TIMEOUT
    };
    let result = process::run(&mut check, timeout);
    let steps = std::fs::read_to_string(out.join("crictl-steps.txt")).unwrap_or_default();
    let checked = result.and_then(|run| {
        println!(
            "    cri-check.sh (cgroups on, / rshared, critest focus {focus:?}): {:.1} s",
            run.elapsed.as_secs_f64()
        );
        run.expect_success("cri-check.sh")?;
        check_steps(&steps)?;
        check_critest(
            &out.join("critest.json"),
            &kit.join("expected-pass-guest.txt"),
            custom.is_none(),
        )
    });
    let left = leftover_cgroups(&cgroup_mount);
    let log = std::fs::read_to_string(out.join("containerd.log")).unwrap_or_default();
    let removed =
        std::fs::remove_dir_all(&work).with_context(|| format!("cannot remove {}", work.display()));
    if let Err(e) = checked {
        bail!(
            "{e:#}\ncrictl and ctr steps:\n{steps}\ncontainerd.log (tail):\n{}",
            process::tail(&log, 3000)
        );
    }
    left?;
    removed?;
    env.close()
}

/// The step called `name` in cri-check.sh's `NAME rc=N  OUTPUT|...` lines:
/// its exit status and its output.
fn step<'a>(steps: &'a str, name: &str) -> Result<(i32, &'a str)> {
    let line = steps
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .with_context(|| format!("no step {name} in cri-check.sh's output"))?;
    let rest = line[name.len()..].trim_start();
    let (rc, output) = rest
        .strip_prefix("rc=")
        .and_then(|r| r.split_once(' '))
        .with_context(|| format!("step {name}: no rc= in {line:?}"))?;
    Ok((rc.parse()?, output.trim()))
}

/// Every step succeeded, and says what it should.
fn check_steps(steps: &str) -> Result<()> {
    let expect = |name: &str, rc: i32, needle: &str| -> Result<()> {
        let (got, output) = step(steps, name)?;
        if got != rc || !output.contains(needle) {
            bail!("step {name}: expected exit status {rc} and {needle:?} in its output, got {got}: {output}");
        }
        Ok(())
    };
    for name in ["pull", "runp", "create", "start", "stop", "rm"] {
        expect(name, 0, "")?;
    }
    expect("ps", 0, "Running")?;
    // exec runs in the pod's network namespace (CNI's 10.88.0.0/16 on eth0).
    expect("exec", 0, "exec-ok|uid=0(root)")?;
    expect("exec", 0, "inet 10.88.")?;
    // crictl 1.26 says the status it got and exits 1.
    expect("exec-rc", 1, "command terminated with exit code 3")?;
    expect("logs", 0, "hello-from-container|tick 0|")?;
    expect("inspc", 0, "CONTAINER_EXITED")?;
    expect("stopp", 0, "Stopped sandbox")?;
    expect("rmp", 0, "Removed sandbox")?;
    expect("ctr-pull", 0, "")?;
    expect("ctr-rm", 4, "ctr-rm-ok")?;
    expect("ctr-d", 0, "")?;
    expect("ctr-exec", 5, "ctr-exec-ok")?;
    expect("ctr-kill", 0, "")?;
    expect("ctr-tdel", 0, "")?;
    expect("ctr-cdel", 0, "")?;
    // The step's output lines are joined by `|`: nothing listed is a lone `|`.
    let (rc, left) = step(steps, "ctr-left")?;
    if rc != 0 || !left.trim_matches('|').trim().is_empty() {
        bail!("after ctr's delete, no task and no container should be listed: {left}");
    }
    Ok(())
}

/// Every spec that ran and that `expected` lists passed; with `all_listed`
/// (the guest's own subset) every spec that ran must be listed, so that
/// none of them runs without asserting anything.
fn check_critest(report: &Path, expected: &Path, all_listed: bool) -> Result<()> {
    let text = std::fs::read_to_string(report)
        .with_context(|| format!("critest wrote no report {}", report.display()))?;
    let suites: serde_json::Value = serde_json::from_str(&text).context("critest's JSON report")?;
    let list = expected.display().to_string();
    let expected = std::fs::read_to_string(expected)
        .with_context(|| format!("cannot read the list {list}"))?;
    let expected: Vec<&str> = expected
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let (mut ran, mut failed, mut unlisted) = (0, Vec::new(), Vec::new());
    let mut nanos = 0u64;
    for spec in suites
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["SpecReports"].as_array())
        .flatten()
        .filter(|s| s["LeafNodeType"] == "It" && s["State"] != "skipped")
    {
        let mut name: Vec<&str> = spec["ContainerHierarchyTexts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str())
            .collect();
        name.push(spec["LeafNodeText"].as_str().unwrap_or_default());
        let name = name.join(" ");
        ran += 1;
        nanos += spec["RunTime"].as_u64().unwrap_or(0);
        // Every spec's verdict, for the comparison of two runtimes' runs.
        println!(
            "    critest {} ({:.1} s): {name}",
            spec["State"].as_str().unwrap_or("?"),
            spec["RunTime"].as_u64().unwrap_or(0) as f64 / 1e9
        );
        let listed = expected.contains(&name.as_str());
        if !listed {
            if spec["State"] == "passed" {
                println!("    critest: passing now, not in the list (add it): {name}");
            }
            unlisted.push(name.clone());
        }
        if spec["State"] != "passed" && listed {
            let why = spec["Failure"]["Message"].as_str().unwrap_or_default();
            failed.push(format!(
                "{name}: {}",
                why.lines().next().unwrap_or_default()
            ));
        }
    }
    println!(
        "    critest: {ran} specs ran in {:.1} s, {} expected to pass failed",
        nanos as f64 / 1e9,
        failed.len()
    );
    if ran == 0 {
        bail!("the critest focus selected no spec");
    }
    if all_listed && !unlisted.is_empty() {
        bail!(
            "the guest's critest subset ran specs {} does not list (list them, or narrow GUEST_FOCUS):\n{}",
            list,
            unlisted.join("\n")
        );
    }
    if !failed.is_empty() {
        bail!(
            "critest specs expected to pass failed:\n{}",
            failed.join("\n")
        );
    }
    Ok(())
}

/// containerd's cgroup parents hold no container's cgroup any more; then
/// they go (the runtime makes parents and leaves them, as runc does).
fn leftover_cgroups(mount: &Path) -> Result<()> {
    for parent in CGROUP_PARENTS.map(|p| mount.join(p)) {
        if !parent.exists() {
            continue;
        }
        let children: Vec<String> = std::fs::read_dir(&parent)?
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        if !children.is_empty() {
            bail!(
                "cgroups left under {}: {}",
                parent.display(),
                children.join(", ")
            );
        }
        std::fs::remove_dir(&parent)
            .with_context(|| format!("cannot remove {}", parent.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEPS: &str = "exec-rc  rc=1  time=\"...\" level=fatal msg=\"command terminated with exit code 3\"|\n         (expected rc=3)\nctr-left rc=0  |\n";

    #[test]
    fn steps_are_read_by_name() {
        assert_eq!(
            step(STEPS, "exec-rc").unwrap(),
            (
                1,
                "time=\"...\" level=fatal msg=\"command terminated with exit code 3\"|"
            )
        );
        assert_eq!(step(STEPS, "ctr-left").unwrap(), (0, "|"));
        assert!(step(STEPS, "exec").is_err());
    }

    fn report(dir: &Path, failing: &str) -> PathBuf {
        let spec = |leaf: &str, state: &str| {
            serde_json::json!({"ContainerHierarchyTexts": ["[k8s.io] Suite", "group"],
                "LeafNodeText": leaf, "LeafNodeType": "It", "State": state,
                "Failure": {"Message": format!("{leaf} broke\nmore")}})
        };
        let json = serde_json::json!([{"SpecReports": [
            spec("a", "passed"), spec(failing, "failed"), spec("s", "skipped"),
            {"LeafNodeType": "SynchronizedBeforeSuite", "State": "passed"}
        ]}]);
        let path = dir.join("critest.json");
        std::fs::write(&path, json.to_string()).unwrap();
        path
    }

    #[test]
    fn critest_fails_on_a_listed_spec_only() {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("expected.txt");
        std::fs::write(
            &list,
            "# comment\n[k8s.io] Suite group a\n[k8s.io] Suite group b\n",
        )
        .unwrap();
        for all_listed in [false, true] {
            let err = check_critest(&report(dir.path(), "b"), &list, all_listed).unwrap_err();
            assert_eq!(
                err.to_string(),
                "critest specs expected to pass failed:\n[k8s.io] Suite group b: b broke"
            );
        }
        check_critest(&report(dir.path(), "unlisted"), &list, false).unwrap();
        let none = dir.path().join("none.json");
        std::fs::write(&none, "[{\"SpecReports\": []}]").unwrap();
        assert!(check_critest(&none, &list, false).is_err());
    }

    /// The guest's own subset asserts something of every spec it runs: one
    /// the list does not name fails the scenario, even when it passed.
    #[test]
    fn the_guest_subset_runs_listed_specs_only() {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("expected.txt");
        std::fs::write(&list, "[k8s.io] Suite group a\n").unwrap();
        let err = check_critest(&report(dir.path(), "unlisted"), &list, true).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("(list them, or narrow GUEST_FOCUS):\n[k8s.io] Suite group unlisted"),
            "{err}"
        );
    }
}
