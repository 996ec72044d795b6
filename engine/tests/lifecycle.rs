//! Detached containers seen from other commands: run -d, exec, ps, logs,
//! stop, kill, on this host's real kernel (`--net none`).

mod common;
use common::*;
use std::time::{Duration, Instant};

fn rootfs() -> &'static str {
    busybox().to_str().unwrap()
}

fn detach(env: &Env, name: &str, script: &str) {
    let out = env
        .cmd()
        .args([
            "run",
            "-d",
            "--net",
            "none",
            rootfs(),
            name,
            "--",
            "sh",
            "-c",
            script,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), name);
}

#[test]
fn detached_container_with_two_concurrent_execs() {
    let env = Env::new("det");
    detach(&env, "svc", "echo started; sleep 60; true");
    let exec = |tag: &'static str| {
        let mut c = env.cmd();
        c.args([
            "exec",
            "-e",
            &format!("TAG={tag}"),
            "-w",
            "/tmp",
            "svc",
            "--",
            "sh",
            "-c",
            "sleep 0.3; echo $TAG $(pwd) $(hostname); ps -e -o pid,comm; true",
        ]);
        c
    };
    let (mut a, mut b) = (exec("A"), exec("B"));
    let (a, b) = (a.output().unwrap(), b.output().unwrap());
    for (out, tag) in [(&a, "A"), (&b, "B")] {
        assert_eq!(out.status.code(), Some(0), "{}", stderr(out));
        let text = stdout(out);
        assert!(text.starts_with(&format!("{tag} /tmp svc\n")), "{text}");
        // PID 1 is the container's command; the exec'd shell is beside it.
        assert!(text.lines().any(|l| l.trim() == "1 sh"), "{text}");
        assert!(
            text.lines().filter(|l| l.trim().ends_with(" sh")).count() >= 2,
            "{text}"
        );
    }
    let out = env
        .cmd()
        .args(["exec", "svc", "--", "sh", "-c", "exit 3"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let out = env
        .cmd()
        .args(["exec", "svc", "--", "no-such-command"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(127));
    let out = env.cmd().args(["stop", "-t", "5", "svc"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    env.assert_clean();
}

#[test]
fn ps_lists_running_containers_in_both_formats() {
    let env = Env::new("ps");
    detach(&env, "one", "sleep 60");
    detach(&env, "two", "sleep 60");
    let out = env.cmd().args(["ps", "--format", "json"]).output().unwrap();
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
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
    let out = env.cmd().args(["ps"]).output().unwrap();
    let table = stdout(&out);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("PID") && lines[0].contains("MEMORY"),
        "{table}"
    );
    assert!(
        lines[1].starts_with("one ") && lines[2].starts_with("two "),
        "{table}"
    );
    let out = env.cmd().args(["ps", "--all-fields"]).output().unwrap();
    assert!(stdout(&out).contains("ENGINE PID"));
    let out = env
        .cmd()
        .args(["stop", "-t", "1", "one", "two"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = env.cmd().args(["ps", "--format", "json"]).output().unwrap();
    assert_eq!(stdout(&out).trim(), "[]");
    env.assert_clean();
}

#[test]
fn stop_kills_a_container_that_ignores_sigterm_after_the_grace_period() {
    let env = Env::new("stop");
    detach(
        &env,
        "stubborn",
        "trap '' TERM; while true; do sleep 0.1; done",
    );
    std::thread::sleep(Duration::from_millis(200));
    let start = Instant::now();
    let out = env
        .cmd()
        .args(["stop", "-t", "1", "stubborn"])
        .output()
        .unwrap();
    let took = start.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        took >= Duration::from_millis(900),
        "stopped before the grace period: {took:?}"
    );
    assert!(took < Duration::from_secs(5), "stop took {took:?}");
    env.assert_clean();
}

#[test]
fn logs_follow_a_container_to_its_end() {
    let env = Env::new("logs");
    detach(
        &env,
        "talker",
        "for i in 1 2 3 4 5; do echo line $i; sleep 0.2; done; echo bye >&2",
    );
    let out = env.cmd().args(["logs", "-f", "talker"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "line 1\nline 2\nline 3\nline 4\nline 5\nbye\n"
    );
    // After the end the log is still there to read, until teardown.
    let out = env.cmd().args(["logs", "talker"]).output().unwrap();
    assert!(stdout(&out).ends_with("bye\n"));
    let teardown = unshare_net_teardown(&env);
    assert!(teardown.status.success(), "{}", stderr(&teardown));
    assert!(!env.state.path().join("talker.log").exists());
}

/// `engine teardown` in a network namespace of its own (it removes the
/// bridge, so never in the machine's own).
fn unshare_net_teardown(env: &Env) -> std::process::Output {
    let c = env.cmd();
    let engine = std::path::Path::new(ENGINE);
    std::process::Command::new("unshare")
        .args(["--net", "--"])
        .arg(engine)
        .arg("teardown")
        .envs(c.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .output()
        .unwrap()
}

#[test]
fn exec_into_a_container_that_exits_meanwhile() {
    let env = Env::new("exit");
    detach(&env, "brief", "sleep 1");
    let out = env
        .cmd()
        .args(["exec", "brief", "--", "sleep", "30"])
        .output()
        .unwrap();
    // PID 1's exit takes the exec'd process with it.
    assert_eq!(out.status.code(), Some(137), "{}", stderr(&out));
    wait_for(10, "the container to be cleaned up", || {
        env.state_files().is_empty().then_some(())
    });
    let out = env
        .cmd()
        .args(["exec", "brief", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("no such container: brief"),
        "{}",
        stderr(&out)
    );
    env.assert_clean();
}

#[test]
fn a_detached_run_that_fails_to_start_leaves_no_log() {
    let env = Env::new("detfail");
    let out = env
        .cmd()
        .args([
            "run",
            "-d",
            "--net",
            "none",
            rootfs(),
            "nope",
            "--",
            "no-such-command",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
    assert!(stderr(&out).contains("no-such-command"), "{}", stderr(&out));
    assert!(
        !env.state.path().join("nope.log").exists(),
        "the failed run left its log"
    );
    env.assert_clean();
}

#[test]
fn unknown_names_are_refused_with_what_is_running() {
    let env = Env::new("unknown");
    for cmd in [
        &["exec", "ghost", "--", "true"][..],
        &["stop", "ghost"],
        &["kill", "ghost"],
        &["logs", "ghost"],
    ] {
        let out = env.cmd().args(cmd).output().unwrap();
        assert_eq!(out.status.code(), Some(125), "{cmd:?}");
        assert!(
            stderr(&out).contains("no such container: ghost (no containers are running)"),
            "{cmd:?}: {}",
            stderr(&out)
        );
    }
    detach(&env, "real", "sleep 60");
    let out = env.cmd().args(["stop", "ghost"]).output().unwrap();
    assert!(stderr(&out).contains("(running: real)"), "{}", stderr(&out));
    let out = env.cmd().args(["kill", "real"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    wait_for(10, "the container to exit on KILL", || {
        env.state_files()
            .iter()
            .all(|f| !f.ends_with(".json"))
            .then_some(())
    });
    env.assert_clean();
}
