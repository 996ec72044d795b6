//! The engine's own resource limits (issue 13): a 1 GiB line on a detached
//! container's stdout, 10 000 environment variables, argument lists up to
//! (and past) the kernel's limit, and `ps` over 500 records, each with the
//! engine's peak RSS measured and bounded. The figures are printed (run
//! with `--nocapture` to see them). Needs GNU time (Debian package `time`).

mod common;
use common::*;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What a finished engine command left: exit code, output, and the peak RSS
/// in KiB of the engine and every process it waited for.
struct Measured {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    peak_kib: i64,
    took: Duration,
}

/// `engine ARGS` in `env` under GNU time, which forks it from a small process
/// of its own and reports its maxrss (wait4). Measured from this test
/// process instead, the figure would include this process's own memory: a
/// child's maxrss starts with the memory of the process it was forked from.
fn measured(env: &Engine, args: &[String]) -> Measured {
    let report = tempfile::NamedTempFile::new().unwrap();
    let began = Instant::now();
    let out = Command::new(quote::require("time", "time"))
        .args(["-f", "%M", "-o"])
        .arg(report.path())
        .args(["timeout", "120"])
        .arg(env.bin())
        .args(args)
        .envs(env.envs())
        .stdin(Stdio::null())
        .output()
        .expect("cannot run time");
    let took = began.elapsed();
    let code = out.status.code();
    assert_ne!(code, Some(124), "engine {:?} timed out", &args[..1]);
    let text = std::fs::read_to_string(report.path()).unwrap();
    // The last line: time puts "Command exited with non-zero status" first.
    let peak_kib = text.lines().last().and_then(|l| l.trim().parse().ok());
    Measured {
        code,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        peak_kib: peak_kib.unwrap_or_else(|| panic!("no maxrss from time: {text:?}")),
        took,
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// `VmHWM` (peak resident set) of a live process, in KiB.
fn vm_hwm_kib(pid: i32) -> i64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The children of `pid` whose command is the engine (the monitor's: the
/// supervisor).
fn engine_children(pid: i32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
                return false;
            };
            let Some(close) = stat.rfind(')') else {
                return false;
            };
            let comm = &stat[stat.find('(').unwrap() + 1..close];
            let ppid = stat[close + 2..].split(' ').nth(1);
            comm == "engine" && ppid == Some(&pid.to_string())
        })
        .collect()
}

/// A detached container writes one line of 1 GiB (no newline until the
/// end). The monitor (parent/monitor.rs) copies it into the log in 16 KiB
/// pieces, so neither it nor the supervisor ever holds more than that, and
/// the log stays within `--log-size-max`. Takes 5-15 s here: a GiB has to
/// pass through a pipe and the monitor, and a smaller line would not show a
/// buffer that grows with it.
#[test]
fn a_gigabyte_line_on_a_detached_containers_stdout() {
    let env = engine("bigline");
    let script = "head -c 1073741824 /dev/zero; echo; echo WRITTEN; exec sleep 1000";
    let args = strings(&[
        "run",
        "-d",
        "--net",
        "none",
        "--log-size-max",
        "1M",
        "--name",
        "big",
        rootfs(),
        "--",
        "sh",
        "-c",
        script,
    ]);
    let front = measured(&env, &args);
    assert_eq!(front.code, Some(0), "{}", front.stderr);
    let log = env.data_dir().join("big.log");
    let began = Instant::now();
    wait::until(
        Duration::from_secs(120),
        "the gigabyte to be written",
        || {
            std::fs::read(&log)
                .is_ok_and(|l| l.ends_with(b"WRITTEN\n"))
                .then_some(())
        },
    );
    let took = began.elapsed();
    let monitor = container_engine_pid(&env, "big");
    let supervisors = engine_children(monitor);
    assert_eq!(
        supervisors.len(),
        1,
        "the supervisor under {monitor}: {supervisors:?}"
    );
    let (sup_kib, monitor_kib) = (vm_hwm_kib(supervisors[0]), vm_hwm_kib(monitor));
    let sizes: Vec<u64> = ["big.log", "big.log.1"]
        .iter()
        .map(|f| std::fs::metadata(env.data_dir().join(f)).unwrap().len())
        .collect();
    eprintln!(
        "1 GiB line: written in {took:?}; peak RSS: run -d {} KiB, supervisor {sup_kib} KiB, monitor {monitor_kib} KiB; log files {sizes:?} bytes",
        front.peak_kib
    );
    env.cmd().args(["stop", "-t", "1", "big"]).assert().code(0);
    // The cap: each half at most half of --log-size-max.
    for size in &sizes {
        assert!(*size <= 512 * 1024, "a log half holds {size} bytes");
    }
    for (what, kib) in [
        ("run -d", front.peak_kib),
        ("the supervisor", sup_kib),
        ("the monitor", monitor_kib),
    ] {
        assert!(kib < 16 * 1024, "{what} peaked at {kib} KiB");
    }
    env.assert_clean();
}

/// The engine process of a running container (a detached one's monitor),
/// from its record (a kept one's, in the data dir).
fn container_engine_pid(env: &Engine, name: &str) -> i32 {
    let record = env.data_dir().join(format!("{name}.json"));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(record).unwrap()).unwrap();
    v["engine_pid"].as_i64().unwrap() as i32
}

/// `-e` ten thousand times: every variable reaches the container, in a
/// bounded engine.
#[test]
fn ten_thousand_environment_variables() {
    let env = engine("env10k");
    let mut args = strings(&["run", "--net", "none"]);
    for i in 0..10_000 {
        args.push("-e".into());
        args.push(format!("VAR{i}=value-{i}"));
    }
    args.extend(strings(&[
        rootfs(),
        "--",
        "sh",
        "-c",
        "env | grep -c '^VAR'; echo $VAR0 $VAR9999",
    ]));
    let m = measured(&env, &args);
    eprintln!(
        "10 000 -e: {:?}, peak RSS {} KiB (engine and container)",
        m.took, m.peak_kib
    );
    assert_eq!(m.code, Some(0), "{}", m.stderr);
    assert_eq!(m.stdout, "10000\nvalue-0 value-9999\n");
    assert!(m.peak_kib < 64 * 1024, "peak RSS {} KiB", m.peak_kib);
    env.assert_clean();
}

/// The kernel's limits on one execve, which the engine meets first, as its
/// own command line: at most MAX_ARG_STRLEN (32 pages: 131072 bytes with
/// the NUL) per string, and all strings and pointers together at most a
/// quarter of the stack limit (`ulimit -s`; 2 MiB for the usual 8 MiB).
/// The container's own exec never carries more than the engine's did (its
/// environment is the `-e` values, one per name, and three short defaults),
/// so the largest list the kernel lets through reaches the container whole,
/// and anything larger is refused by the kernel before the engine runs.
#[test]
fn argument_lists_up_to_the_kernels_limit() {
    const MAX_ARG_STRLEN: usize = 32 * 4096;
    let env = engine("args");
    let count = "n=0; for a; do n=$((n + ${#a})); done; echo $# $n";
    let run_with = |extra: &[String]| {
        let mut args = strings(&[
            "run",
            "--net",
            "none",
            rootfs(),
            "--",
            "sh",
            "-c",
            count,
            "sh",
        ]);
        args.extend_from_slice(extra);
        args
    };

    // The longest single argument.
    let longest = "x".repeat(MAX_ARG_STRLEN - 1);
    let m = measured(&env, &run_with(std::slice::from_ref(&longest)));
    assert_eq!(m.code, Some(0), "{}", m.stderr);
    assert_eq!(m.stdout, format!("1 {}\n", MAX_ARG_STRLEN - 1));

    // One byte more is the kernel's E2BIG at the engine's own exec.
    let too_long = "x".repeat(MAX_ARG_STRLEN);
    let err = env
        .spawnable()
        .args(run_with(&[too_long]))
        .spawn()
        .expect_err("the kernel took a string of MAX_ARG_STRLEN bytes");
    assert_eq!(err.raw_os_error(), Some(libc::E2BIG), "{err}");

    // Nearly the whole quarter of the stack limit: 1.75 MiB with an 8 MiB stack.
    let stack = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_STACK)
        .unwrap()
        .0;
    let total = (stack as usize / 4).min(6 << 20) * 7 / 8;
    let many: Vec<String> = (0..total / MAX_ARG_STRLEN)
        .map(|_| "y".repeat(MAX_ARG_STRLEN - 1))
        .collect();
    let bytes: usize = many.iter().map(String::len).sum();
    let m = measured(&env, &run_with(&many));
    eprintln!(
        "{} arguments, {bytes} bytes: {:?}, peak RSS {} KiB (engine and container)",
        many.len(),
        m.took,
        m.peak_kib
    );
    assert_eq!(m.code, Some(0), "{}", m.stderr);
    assert_eq!(m.stdout, format!("{} {bytes}\n", many.len()));
    assert!(m.peak_kib < 64 * 1024, "peak RSS {} KiB", m.peak_kib);

    // A 100 MB list never reaches the engine.
    let hundred_mb: Vec<String> = (0..100_000_000 / MAX_ARG_STRLEN)
        .map(|_| "z".repeat(MAX_ARG_STRLEN - 1))
        .collect();
    let err = env
        .spawnable()
        .args(run_with(&hundred_mb))
        .spawn()
        .expect_err("the kernel took a 100 MB argument list");
    assert_eq!(err.raw_os_error(), Some(libc::E2BIG), "{err}");
    env.assert_clean();
}

/// `ps` over 500 records of running containers (records that name this
/// test process as their engine, so recovery keeps them): every row, fast,
/// in bounded memory, in both formats.
#[test]
fn ps_over_five_hundred_records() {
    let env = engine("ps500");
    let me = std::process::id() as i32;
    let start = testkit::procinfo::start_time(me);
    for i in 0..500 {
        let name = format!("c{i:03}");
        let record = serde_json::json!({
            "name": name, "engine_pid": me, "engine_start": start,
            // This process: in our own pid namespace, so never killed as a container.
            "pid": me, "rootfs": rootfs(), "command": ["sh", "-c", "sleep 1000"],
            "ip": format!("10.95.{}.{}", i / 250, i % 250 + 2),
            "veth": null, "cgroup": null, "created": 1_700_000_000u64,
            "cpus": null, "memory": null, "pids_limit": null,
        });
        std::fs::write(
            env.state_dir().join(format!("{name}.json")),
            serde_json::to_vec_pretty(&record).unwrap(),
        )
        .unwrap();
    }
    let json = measured(&env, &strings(&["ps", "--format", "json"]));
    assert_eq!(json.code, Some(0), "{}", json.stderr);
    let rows: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 500);
    let table = measured(&env, &strings(&["ps"]));
    assert_eq!(table.code, Some(0), "{}", table.stderr);
    assert_eq!(table.stdout.lines().count(), 501, "{}", table.stdout);
    eprintln!(
        "ps over 500 records: json {:?} {} KiB, table {:?} {} KiB",
        json.took, json.peak_kib, table.took, table.peak_kib
    );
    for m in [&json, &table] {
        assert!(m.peak_kib < 32 * 1024, "peak RSS {} KiB", m.peak_kib);
        assert!(m.took < Duration::from_secs(5), "took {:?}", m.took);
    }
    // Still there: they name a live engine.
    assert_eq!(env.state_files().len(), 500);
    for i in 0..500 {
        let _ = std::fs::remove_file(env.state_dir().join(format!("c{i:03}.json")));
    }
}
