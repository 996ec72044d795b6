//! The runner: the test binary with `HARNESS_INNER=1`, where the scenarios
//! run (in the guest, or directly inside `unshare --net`). It prepares each
//! flavour's fixture, runs the selected scenarios one after another, prints
//! each verdict as it goes and appends it to `HARNESS_RESULTS`.
//!
//! Its environment (the launcher sets it; set it by hand to run the runner
//! alone, e.g. the aarch64 build in an arm64 guest):
//!
//! | variable | meaning |
//! | --- | --- |
//! | `HARNESS_INNER=1` | be the runner |
//! | `HARNESS_RESULTS` | the JSON-lines results file (its directory must exist and be writable) |
//! | `HARNESS_ENGINE` | the engine binary to test |
//! | `HARNESS_FLAVOURS` | `busybox` and/or `NAME=TARBALL`, comma-separated (default `busybox`) |
//! | `HARNESS_SELECT` | trial names to run, comma-separated (default: the filter arguments, as libtest takes them) |
//! | `HARNESS_SCRATCH` | where fixtures and state go; must accept overlayfs lower layers (default `/tmp/harness-PID`) |

use crate::cgroup;
use crate::engine::{self, Settings};
use crate::fixtures::{parse_sources, Fixture};
use crate::plan::{self, FIXTURE, LEFTOVERS};
use crate::report::{self, Outcome};
use crate::scenarios::{self, leftovers, Ctx};
use anyhow::{anyhow, Context, Result};
use std::collections::BTreeSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

/// Exit status: 0 every selected trial passed, 1 some failed, 2 the runner
/// itself could not work.
pub fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("harness runner: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn required(var: &str) -> Result<String> {
    std::env::var(var)
        .ok()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| anyhow!("{var} is not set (the launcher sets it; see harness/README.md)"))
}

fn run() -> Result<bool> {
    let results = PathBuf::from(required("HARNESS_RESULTS")?);
    let engine = PathBuf::from(required("HARNESS_ENGINE")?);
    let sources =
        parse_sources(&std::env::var("HARNESS_FLAVOURS").unwrap_or_else(|_| "busybox".into()))?;
    let scratch = std::env::var("HARNESS_SCRATCH")
        .ok()
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join(format!("harness-{}", std::process::id())));
    if !engine.is_file() {
        return Err(anyhow!("HARNESS_ENGINE={} is not a file", engine.display()));
    }

    let mut all: Vec<String> = Vec::new();
    for (index, (name, _)) in sources.iter().enumerate() {
        all.push(plan::trial_name(name, FIXTURE));
        all.extend(plan::scenarios_for(index).map(|s| plan::trial_name(name, s)));
    }
    all.push(LEFTOVERS.to_string());
    let selected: BTreeSet<String> = match std::env::var("HARNESS_SELECT") {
        Ok(list) if !list.is_empty() => list.split(',').map(str::to_string).collect(),
        _ => {
            let args = libtest_mimic::Arguments::from_args();
            all.iter()
                .filter(|n| {
                    !args.is_filtered_out(&libtest_mimic::Trial::test(n.as_str(), || Ok(())))
                })
                .cloned()
                .collect()
        }
    };

    std::fs::create_dir_all(&scratch)
        .with_context(|| format!("cannot create the scratch directory {}", scratch.display()))?;
    let cgroup_parent = cgroup::mount_point()
        .unwrap_or_else(|| PathBuf::from("/sys/fs/cgroup"))
        .join(format!("harness-{}", std::process::id()));
    let settings = Settings {
        engine: engine.clone(),
        scratch: scratch.clone(),
        cgroup_parent,
        foreign_baseline: leftovers::foreign_processes()
            .into_iter()
            .map(|(p, _)| p)
            .collect(),
    };
    print_banner(&settings, &sources, selected.len());

    let mut all_ok = true;
    let mut record = |name: &str, f: &mut dyn FnMut() -> Result<()>| -> Result<bool> {
        let ok = run_one(&results, name, f)?;
        all_ok &= ok;
        Ok(ok)
    };
    for (index, (name, source)) in sources.iter().enumerate() {
        let wanted: Vec<&str> = plan::scenarios_for(index)
            .filter(|s| selected.contains(&plan::trial_name(name, s)))
            .collect();
        let fixture_name = plan::trial_name(name, FIXTURE);
        if wanted.is_empty() && !selected.contains(&fixture_name) {
            continue;
        }
        let fixture = Fixture::new(name, source.clone(), &engine, &scratch.join("rootfs"));
        let prepared = record(&fixture_name, &mut || fixture.prepare())?;
        for scenario in wanted {
            let trial = plan::trial_name(name, scenario);
            let f = scenarios::by_name(scenario).expect("every planned scenario exists");
            record(&trial, &mut || {
                if !prepared {
                    return Err(anyhow!(
                        "the {name} rootfs could not be prepared: see {fixture_name}"
                    ));
                }
                f(&Ctx {
                    settings: &settings,
                    fixture: &fixture,
                })
            })?;
        }
    }
    if selected.contains(LEFTOVERS) {
        record(LEFTOVERS, &mut || {
            leftovers::check(&settings, &engine::registry())
        })?;
    }
    remove_scratch(&scratch);
    Ok(all_ok)
}

fn print_banner(settings: &Settings, sources: &[(String, crate::fixtures::Source)], count: usize) {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let controllers = cgroup::mount_point()
        .and_then(|m| std::fs::read_to_string(m.join("cgroup.controllers")).ok())
        .unwrap_or_else(|| "(no cgroup2)".into());
    println!(
        "harness runner: {count} trial(s) on Linux {} ({}, {} CPUs), cgroup2 controllers: {}",
        kernel.trim(),
        std::env::consts::ARCH,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        controllers.trim()
    );
    println!(
        "harness runner: engine {}, flavours {}, scratch {}",
        settings.engine.display(),
        crate::fixtures::format_sources(sources),
        settings.scratch.display()
    );
}

/// Runs one trial (a panic is a failure), prints and records its verdict.
fn run_one(results: &Path, name: &str, f: &mut dyn FnMut() -> Result<()>) -> Result<bool> {
    println!("harness: {name} ...");
    let start = Instant::now();
    let verdict = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("{e:#}")),
        Err(panic) => Err(format!(
            "panicked: {}",
            panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)")
        )),
    };
    let secs = start.elapsed().as_secs_f64();
    match &verdict {
        Ok(()) => println!("harness: {name} ... ok ({secs:.1} s)"),
        Err(message) => {
            println!("harness: {name} ... FAILED ({secs:.1} s)");
            for line in message.lines() {
                println!("    {line}");
            }
        }
    }
    let outcome = Outcome {
        name: name.to_string(),
        ok: verdict.is_ok(),
        message: verdict.err().unwrap_or_default(),
        secs,
    };
    report::append(results, &outcome)?;
    Ok(outcome.ok)
}

/// Removes the scratch directory unless something is still mounted under
/// it (removing through a leaked mount could delete what it shows).
fn remove_scratch(scratch: &Path) {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mounted = mountinfo.lines().any(|l| {
        l.split(' ')
            .nth(4)
            .is_some_and(|p| Path::new(p).starts_with(scratch))
    });
    if mounted {
        println!(
            "harness runner: keeping {}: something is still mounted under it",
            scratch.display()
        );
    } else if let Err(e) = std::fs::remove_dir_all(scratch) {
        println!("harness runner: cannot remove {}: {e}", scratch.display());
    }
}
