//! Detached containers seen from other commands: run -d, exec, ps, logs,
//! stop, kill, on this host's real kernel (`--net none`).

mod common;
use common::*;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A file inside a running container's root, seen from the host.
fn inside(env: &Engine, name: &str, path: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(format!("/proc/{}/root{path}", container_pid(env, name)))
}

/// Each exec writes its marker, then waits (boundedly) for the other's: both
/// succeed only if both ran at the same time.
#[test]
fn detached_container_with_two_concurrent_execs() {
    let env = engine("det");
    detach(&env, "svc", "echo started; sleep 60; true");
    let exec = |tag: &str, other: &str| {
        let script = format!(
            "touch /tmp/{tag}; i=0; until [ -e /tmp/{other} ]; do i=$((i+1)); [ $i -lt 200 ] || exit 9; sleep 0.05; done; \
             echo $TAG $(pwd) $(hostname); ps -e -o pid,comm; true"
        );
        env.spawnable()
            .args(tagged_exec_args(tag, "svc", &script))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (exec("A", "B"), exec("B", "A"));
    for (child, tag) in [(a, "A"), (b, "B")] {
        let out = finish(child);
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "exec {tag} (9: the other exec never ran beside it): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.starts_with(&format!("{tag} /tmp svc\n")), "{text}");
        // PID 1 is the container's command; the exec'd shells are beside it.
        assert!(text.lines().any(|l| l.trim() == "1 sh"), "{text}");
        assert!(
            text.lines().filter(|l| l.trim().ends_with(" sh")).count() >= 2,
            "{text}"
        );
    }
    env.cmd()
        .args(["exec", "svc", "--", "sh", "-c", "exit 3"])
        .assert()
        .code(3);
    env.cmd()
        .args(["exec", "svc", "--", "no-such-command"])
        .assert()
        .code(127);
    env.cmd().args(["stop", "-t", "5", "svc"]).assert().code(0);
    env.cmd().args(["rm", "svc"]).assert().code(0);
    env.assert_clean();
}

/// Output of a spawned child, within the default timeout.
fn finish(child: std::process::Child) -> std::process::Output {
    wait::output_of(child, LONG).unwrap()
}

#[test]
fn ps_lists_running_containers_in_both_formats() {
    let env = engine("ps");
    detach(&env, "one", "sleep 60");
    detach(&env, "two", "sleep 60");
    let a = env.cmd().args(["ps", "--format", "json"]).assert().code(0);
    let rows: serde_json::Value = serde_json::from_slice(&a.get_output().stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["name"], "one");
    assert_eq!(rows[1]["name"], "two");
    for r in rows {
        assert!(r["pid"].as_i64().unwrap() > 1);
        assert_eq!(r["command"], serde_json::json!(["sh", "-c", "sleep 60"]));
        assert_eq!(r["rootfs"], rootfs());
        for key in [
            "ip",
            "uptime_seconds",
            "cpus",
            "memory_limit",
            "memory_usage",
            "created",
            "engine_pid",
        ] {
            assert!(r.get(key).is_some(), "json lacks {key}");
        }
    }
    let a = env.cmd().args(["ps"]).assert().code(0);
    let table = stdout(&a);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("PID") && lines[0].contains("MEMORY"),
        "{table}"
    );
    assert!(
        lines[1].starts_with("one ") && lines[2].starts_with("two "),
        "{table}"
    );
    env.cmd()
        .args(["ps", "--all-fields"])
        .assert()
        .stdout(predicate::str::contains("ENGINE PID"));
    env.cmd()
        .args(["stop", "-t", "1", "one", "two"])
        .assert()
        .code(0);
    env.cmd()
        .args(["ps", "--format", "json"])
        .assert()
        .stdout("[]\n");
    // Kept, exited, until rm.
    env.cmd()
        .args(["ps", "-a", "-q"])
        .assert()
        .stdout("one\ntwo\n");
    env.cmd().args(["rm", "one", "two"]).assert().code(0);
    assert_eq!(env.state_files(), Vec::<String>::new());
    env.assert_clean();
}

#[test]
fn stop_kills_a_container_that_ignores_sigterm_after_the_grace_period() {
    let env = engine("stop");
    detach(
        &env,
        "stubborn",
        "trap '' TERM; touch /tmp/trapped; while true; do sleep 0.1; done",
    );
    // The trap is set once the marker exists.
    wait::file(&inside(&env, "stubborn", "/tmp/trapped"), SHORT).unwrap();
    let start = Instant::now();
    env.cmd()
        .args(["stop", "-t", "1", "stubborn"])
        .assert()
        .code(0);
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "stopped before the grace period: {took:?}"
    );
    assert!(took < Duration::from_secs(5), "stop took {took:?}");
    env.cmd().args(["rm", "stubborn"]).assert().code(0);
    env.assert_clean();
}

#[test]
fn logs_follow_a_container_to_its_end() {
    let env = engine("logs");
    detach(
        &env,
        "talker",
        "for i in 1 2 3 4 5; do echo line $i; sleep 0.2; done; echo bye >&2",
    );
    env.cmd()
        .args(["logs", "-f", "talker"])
        .assert()
        .code(0)
        .stdout("line 1\nline 2\nline 3\nline 4\nline 5\nbye\n");
    // After the end the log is still there to read, until rm (or teardown).
    env.cmd()
        .args(["logs", "talker"])
        .assert()
        .stdout(predicate::str::ends_with("bye\n"));
    // teardown removes the bridge: only ever in a network namespace of its own.
    assert_cmd::Command::new(quote::require("unshare", "util-linux"))
        .args(["--net", "--"])
        .arg(ENGINE)
        .arg("teardown")
        .envs(env.envs())
        .timeout(LONG)
        .assert()
        .success();
    // A kept container's record, log and layer are in the data dir.
    assert_eq!(
        std::fs::read_dir(env.data_dir()).unwrap().count(),
        0,
        "teardown left something of talker in the data dir"
    );
}

#[test]
fn exec_into_a_container_that_exits_meanwhile() {
    let env = engine("exit");
    // PID 1 ends as soon as the exec'd process has started.
    detach(&env, "brief", "until [ -e /tmp/go ]; do sleep 0.05; done");
    // PID 1's exit takes the exec'd process with it.
    env.cmd()
        .args([
            "exec",
            "brief",
            "--",
            "sh",
            "-c",
            "touch /tmp/go; exec sleep 30",
        ])
        .assert()
        .code(137);
    env.cmd().args(["wait", "brief"]).assert().stdout("0\n");
    env.cmd()
        .args(["exec", "brief", "--", "true"])
        .assert()
        .code(125)
        .stderr(predicate::str::contains("container brief is not running"));
    env.cmd().args(["rm", "brief"]).assert().code(0);
    env.assert_clean();
}

#[test]
fn a_detached_run_that_fails_to_start_leaves_no_log() {
    let env = engine("detfail");
    env.cmd()
        .args(detached_args(rootfs(), "nope", &["no-such-command"]))
        .assert()
        .code(127)
        .stderr(predicate::str::contains("no-such-command"));
    let left: Vec<_> = std::fs::read_dir(env.data_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        left.is_empty(),
        "the failed run left {left:?} in the data dir"
    );
    env.assert_clean();
}

#[test]
fn unknown_names_are_refused_with_what_is_running() {
    let env = engine("unknown");
    for cmd in [
        &["exec", "ghost", "--", "true"][..],
        &["stop", "ghost"],
        &["kill", "ghost"],
        &["logs", "ghost"],
    ] {
        env.cmd()
            .args(cmd)
            .assert()
            .code(125)
            .stderr(predicate::str::contains(
                "no such container: ghost (no containers are running)",
            ));
    }
    detach(&env, "real", "sleep 60");
    env.cmd()
        .args(["stop", "ghost"])
        .assert()
        .stderr(predicate::str::contains("(running: real)"));
    env.cmd().args(["kill", "real"]).assert().code(0);
    env.cmd().args(["wait", "real"]).assert().stdout("137\n");
    env.cmd().args(["rm", "real"]).assert().code(0);
    assert_eq!(env.state_files(), Vec::<String>::new());
    env.assert_clean();
}
