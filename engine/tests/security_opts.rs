//! `--cap-add`, `--cap-drop`, `--privileged`, `--security-opt` on a real
//! container (busybox, `--net none`), and what `engine exec` inherits.

mod common;

use common::*;
use rstest::rstest;

/// The podman default set: CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID
/// SETUID SETPCAP NET_BIND_SERVICE SYS_CHROOT SETFCAP.
const DEFAULT_CAPS: &str = "00000000800405fb";

fn status_field(out: &str, field: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in:\n{out}"))
        .trim()
        .to_string()
}

/// What /proc/self/status says about the container's command.
#[rstest]
#[case::default(&[], DEFAULT_CAPS, "2", "0")]
#[case::cap_drop_all(&["--cap-drop", "ALL"], "0000000000000000", "2", "0")]
#[case::cap_drop_one(&["--cap-drop", "chown"], "00000000800405fa", "2", "0")]
#[case::cap_add_net_admin(&["--cap-add", "NET_ADMIN"], "00000000800415fb", "2", "0")]
#[case::unconfined(&["--security-opt", "seccomp=unconfined"], DEFAULT_CAPS, "0", "0")]
#[case::no_new_privileges(&["--security-opt", "no-new-privileges"], DEFAULT_CAPS, "2", "1")]
fn status_shows_the_confinement(
    #[case] opts: &[&str],
    #[case] cap_eff: &str,
    #[case] seccomp: &str,
    #[case] no_new_privs: &str,
) {
    let env = engine("secopt");
    let args = [opts, &[rootfs(), "--", "cat", "/proc/self/status"]].concat();
    let a = run(&env, &args).success();
    let out = stdout(&a);
    assert_eq!(status_field(&out, "CapEff"), cap_eff, "{out}");
    assert_eq!(status_field(&out, "CapBnd"), cap_eff, "{out}");
    assert_eq!(status_field(&out, "Seccomp"), seccomp, "{out}");
    assert_eq!(status_field(&out, "NoNewPrivs"), no_new_privs, "{out}");
    env.assert_clean();
}

/// What a capability or an option allows, and its absence forbids.
#[rstest]
#[case::net_admin_sets_lo_down(&["--cap-add", "NET_ADMIN"], "ip link set lo down", true)]
#[case::lo_stays_up_by_default(&[], "ip link set lo down", false)]
#[case::unconfined_allows_a_user_namespace(&["--security-opt", "seccomp=unconfined"], "unshare -U true", true)]
#[case::default_refuses_a_user_namespace(&[], "unshare -U true", false)]
#[case::cap_drop_all_refuses_chown(&["--cap-drop", "ALL"], "touch /tmp/f && chown 1 /tmp/f", false)]
#[case::chown_by_default(&[], "touch /tmp/f && chown 1 /tmp/f", true)]
fn option_decides(#[case] opts: &[&str], #[case] script: &str, #[case] works: bool) {
    let env = engine("secopt");
    let args = [opts, &[rootfs(), "--", "sh", "-c", script]].concat();
    let a = run(&env, &args);
    if works {
        a.success();
    } else {
        // The command's own refusal, not the engine's (125-127).
        let code = a.failure().get_output().status.code().unwrap();
        assert!((1..125).contains(&code), "exit {code}");
    }
}

/// A docker-format profile that denies mkdir makes busybox mkdir fail.
#[test]
fn custom_profile_denies_mkdir() {
    let env = engine("secopt");
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("no-mkdir.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}"#,
    )
    .unwrap();
    let opt = format!("seccomp={}", profile.display());
    let a = run(
        &env,
        &["--security-opt", &opt, rootfs(), "--", "mkdir", "/tmp/d"],
    )
    .failure()
    .code(1);
    assert!(stderr(&a).contains("mkdir"), "{}", stderr(&a));
    // Without the profile, the same command works.
    run(&env, &[rootfs(), "--", "mkdir", "/tmp/d"]).success();
}

/// --privileged: no user namespace, every capability, no filter.
#[test]
fn privileged_is_host_root_unconfined() {
    let env = engine("secopt");
    let ours = std::fs::read_link("/proc/self/ns/user").unwrap();
    let a = run(
        &env,
        &[
            "--privileged",
            rootfs(),
            "--",
            "sh",
            "-c",
            "readlink /proc/self/ns/user; cat /proc/self/status",
        ],
    )
    .success();
    let out = stdout(&a);
    assert_eq!(out.lines().next(), Some(ours.to_str().unwrap()), "{out}");
    let bnd = std::fs::read_to_string("/proc/self/status").unwrap();
    assert_eq!(status_field(&out, "CapEff"), status_field(&bnd, "CapBnd"));
    assert_eq!(status_field(&out, "Seccomp"), "0", "{out}");
}

/// `--userns host` alone keeps the cut and the filter.
#[test]
fn userns_host_keeps_caps_and_filter() {
    let env = engine("secopt");
    let a = run(
        &env,
        &[
            "--userns",
            "host",
            rootfs(),
            "--",
            "cat",
            "/proc/self/status",
        ],
    )
    .success();
    let out = stdout(&a);
    assert_eq!(status_field(&out, "CapEff"), DEFAULT_CAPS, "{out}");
    assert_eq!(status_field(&out, "Seccomp"), "2", "{out}");
}

/// Bad values: 125, a sentence naming the culprit, nothing created.
#[rstest]
#[case::unknown_cap(&["--cap-add", "NET_ADMINN"], "NET_ADMINN")]
#[case::unknown_drop(&["--cap-drop", "FOO"], "FOO")]
#[case::unknown_opt(&["--security-opt", "label=disable"], "label=disable")]
#[case::missing_profile(&["--security-opt", "seccomp=/nonexistent/p.json"], "/nonexistent/p.json")]
#[case::privileged_with_cap_drop(&["--privileged", "--cap-drop", "ALL"], "--privileged")]
#[case::privileged_with_userns_base(&["--privileged", "--userns", "100000"], "--privileged")]
#[case::log_size(&["--log-size-max", "12x"], "--log-size-max")]
fn bad_values_are_refused(#[case] opts: &[&str], #[case] culprit: &str) {
    let env = engine("secopt");
    let args = [opts, &[rootfs(), "--", "true"]].concat();
    let a = run(&env, &args).failure().code(125);
    assert!(stderr(&a).contains(culprit), "{}", stderr(&a));
    env.assert_clean();
}

/// A bad profile file (not docker's JSON) is refused before the container starts.
#[test]
fn bad_profile_is_refused() {
    let env = engine("secopt");
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("bad.json");
    std::fs::write(&profile, "{ not json").unwrap();
    let opt = format!("seccomp={}", profile.display());
    let a = run(&env, &["--security-opt", &opt, rootfs(), "--", "true"])
        .failure()
        .code(125);
    assert!(stderr(&a).contains("bad.json"), "{}", stderr(&a));
    env.assert_clean();
}

/// `engine exec` gets the container's capabilities, filter and
/// no_new_privs, and an environment of the record and -e only.
#[test]
fn exec_inherits_the_confinement() {
    let env = engine("secopt");
    let name = format!("secx-{}", std::process::id());
    env.cmd()
        .args(["run", "-d", "--net", "none", "--cap-drop", "ALL"])
        .args(["--security-opt", "no-new-privileges", "-e", "FROM_RUN=1"])
        .args(["--name", &name, rootfs(), "--", "sleep", "30"])
        .assert()
        .success();
    let a = env
        .cmd()
        .env("CALLER_SECRET", "x")
        .args(["exec", "-e", "FROM_EXEC=1", &name, "--", "sh", "-c"])
        .arg("cat /proc/self/status; env")
        .assert()
        .success();
    let out = stdout(&a);
    env.cmd()
        .args(["stop", "-t", "0", &name])
        .assert()
        .success();
    assert_eq!(status_field(&out, "CapEff"), "0000000000000000", "{out}");
    assert_eq!(status_field(&out, "Seccomp"), "2", "{out}");
    assert_eq!(status_field(&out, "NoNewPrivs"), "1", "{out}");
    assert!(
        out.contains("FROM_RUN=1") && out.contains("FROM_EXEC=1"),
        "{out}"
    );
    assert!(
        !out.contains("CALLER_SECRET"),
        "the caller's environment leaked:\n{out}"
    );
}

/// `engine logs` shows the rotated half first, and the cap holds.
#[test]
fn logs_rotate_within_the_cap() {
    let env = engine("secopt");
    let name = format!("seclog-{}", std::process::id());
    env.cmd()
        .args(["run", "-d", "--net", "none", "--log-size-max", "64k"])
        .args(["--name", &name, rootfs(), "--", "sh", "-c"])
        .arg("i=0; while [ $i -lt 10000 ]; do echo line-$i; i=$((i+1)); done")
        .assert()
        .success();
    // Kept once it has exited (until rm), with its status.
    env.cmd().args(["wait", &name]).assert().stdout("0\n");
    let log = env.data_dir().join(format!("{name}.log"));
    let older = env.data_dir().join(format!("{name}.log.1"));
    let size = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    assert!(size(&log) + size(&older) <= 64 << 10, "logs exceed 64k");
    assert!(size(&older) > 0, "no rotation happened");
    let a = env.cmd().args(["logs", &name]).assert().success();
    let out = stdout(&a);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.last(), Some(&"line-9999"));
    // In order, without a gap: the oldest lines are the ones dropped (the
    // very first may be cut by the rotation).
    let lines = &lines[1..];
    let first: usize = lines[0].trim_start_matches("line-").parse().unwrap();
    assert!(first > 0, "nothing was dropped");
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(*l, format!("line-{}", first + i), "out of order at {i}");
    }
    env.cmd().args(["rm", &name]).assert().success();
    assert!(!log.exists() && !older.exists(), "rm left the logs");
}

/// `engine exec` without `-t` never hands the caller's terminal in: a
/// terminal stdin reaches the command as a pipe the engine relays.
#[test]
fn exec_relays_a_terminal_through_a_pipe() {
    let env = engine("secopt");
    let name = format!("sectty-{}", std::process::id());
    env.cmd()
        .args(detached_args(rootfs(), &name, &["sleep", "30"]))
        .assert()
        .success();
    let pty = nix::pty::openpty(None, None).expect("openpty");
    let mut child = env
        .spawnable()
        .args([
            "exec",
            "--tty=false",
            &name,
            "--",
            "readlink",
            "/proc/self/fd/0",
        ])
        .stdin(std::process::Stdio::from(pty.slave.try_clone().unwrap()))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn engine exec");
    let status = wait::child(&mut child, SHORT).expect("engine exec");
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
    env.cmd()
        .args(["stop", "-t", "0", &name])
        .assert()
        .success();
    assert!(status.success(), "engine exec: {status}");
    assert!(out.starts_with("pipe:"), "stdin in the container: {out}");
}
