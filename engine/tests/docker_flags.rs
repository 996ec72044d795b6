//! docker's run and exec flags of issue 21, through the binary on this
//! host's kernel: --env-file, --read-only, --tmpfs, --mount, --init,
//! `exec -u`, `ps --format` templates; each bad input refused with one
//! sentence and 125, nothing created. `--net none` throughout: no network
//! is touched.

mod common;
use common::*;
use rstest::rstest;
use std::time::{Duration, Instant};

/// `engine run --net none ARGS` whose stdout is returned (must exit 0).
fn output(env: &Engine, args: &[&str]) -> String {
    let a = run(env, args);
    assert_eq!(
        a.get_output().status.code(),
        Some(0),
        "engine run {args:?}: {}",
        stderr(&a)
    );
    stdout(&a)
}

/// A host directory container root can write in under `--userns auto`
/// (a leased unprivileged uid; the idmapped volumes are another piece).
fn world_writable_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    dir
}

#[test]
fn env_file_lines_come_before_dash_e_and_a_bare_key_takes_the_caller_s_value() {
    let env = engine("envfile");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("env");
    std::fs::write(
        &file,
        "# docker's format\n\nA=from file\n  B=file\nFROM_CALLER\nNOT_SET_ANYWHERE\nC=x=y\n",
    )
    .unwrap();
    let a = env
        .cmd()
        .env("FROM_CALLER", "caller's")
        .env_remove("NOT_SET_ANYWHERE")
        .args(["run", "--net", "none", "--env-file"])
        .arg(&file)
        .args(["-e", "B=dash e", rootfs(), "sh", "-c"])
        .arg("echo \"$A|$B|$FROM_CALLER|${NOT_SET_ANYWHERE-unset}|$C\"")
        .assert()
        .code(0);
    assert_eq!(stdout(&a), "from file|dash e|caller's|unset|x=y\n");
    env.assert_clean();
}

#[test]
fn read_only_leaves_dev_shm_tmpfs_and_volumes_writable() {
    let env = engine("readonly");
    let dir = world_writable_dir();
    let vol = format!("{}:/vol", dir.path().display());
    let out = output(
        &env,
        &[
            "--read-only",
            "--tmpfs",
            "/run",
            "-v",
            &vol,
            rootfs(),
            "sh",
            "-c",
            "for p in /f /tmp/f /dev/shm/f /run/f /vol/f; do touch $p 2>/dev/null && echo $p rw || echo $p ro; done",
        ],
    );
    assert_eq!(
        out,
        "/f ro\n/tmp/f ro\n/dev/shm/f rw\n/run/f rw\n/vol/f rw\n"
    );
    assert!(dir.path().join("f").exists());
    // Without it the root is writable (the layer takes the writes).
    let out = output(&env, &[rootfs(), "sh", "-c", "touch /f && echo rw"]);
    assert_eq!(out, "rw\n");
    env.assert_clean();
}

/// The mount's line of /proc/mounts inside a container run with `args`.
fn mount_line(env: &Engine, args: &[&str], target: &str) -> String {
    let script = format!("grep ' {target} ' /proc/mounts");
    let mut all = args.to_vec();
    all.extend([rootfs(), "sh", "-c", &script]);
    output(env, &all)
}

#[test]
fn tmpfs_and_mount_tmpfs_get_docker_s_options() {
    let env = engine("tmpfs");
    let line = mount_line(&env, &["--tmpfs", "/run:size=1m,mode=1770"], "/run");
    assert!(
        line.starts_with("tmpfs /run tmpfs rw,nosuid,nodev,noexec,"),
        "{line}"
    );
    assert!(line.contains("size=1024k,mode=1770"), "{line}");
    let line = mount_line(&env, &["--tmpfs", "/run:exec,ro"], "/run");
    assert!(
        line.starts_with("tmpfs /run tmpfs ro,nosuid,nodev,"),
        "{line}"
    );
    assert!(!line.contains("noexec"), "{line}");
    let line = mount_line(
        &env,
        &["--mount", "type=tmpfs,dst=/t,tmpfs-size=2m,tmpfs-mode=700"],
        "/t",
    );
    assert!(
        line.starts_with("tmpfs /t tmpfs rw,nosuid,nodev,noexec,"),
        "{line}"
    );
    assert!(line.contains("size=2048k,mode=700"), "{line}");
    env.assert_clean();
}

#[test]
fn mount_bind_is_a_volume_readonly_holds_and_parents_mount_first() {
    let env = engine("mountbind");
    let dir = world_writable_dir();
    std::fs::write(dir.path().join("in"), "host\n").unwrap();
    let ro = format!(
        "type=bind,source={},target=/h,readonly",
        dir.path().display()
    );
    let out = output(
        &env,
        &[
            "--mount",
            &ro,
            rootfs(),
            "sh",
            "-c",
            "cat /h/in; touch /h/new 2>/dev/null || echo refused",
        ],
    );
    assert_eq!(out, "host\nrefused\n");
    let rw = format!("type=bind,src={},dst=/data/in", dir.path().display());
    // docker's order: the tmpfs on /data first, whatever the order given,
    // so the bind inside it is not hidden.
    let out = output(
        &env,
        &[
            "--mount",
            &rw,
            "--tmpfs",
            "/data",
            rootfs(),
            "sh",
            "-c",
            "cat /data/in/in && touch /data/in/new",
        ],
    );
    assert_eq!(out, "host\n");
    assert!(dir.path().join("new").exists());
    env.assert_clean();
}

#[rstest]
#[case::env_file_missing(&["--env-file", "/nonexistent/env"], "cannot read --env-file /nonexistent/env")]
#[case::tmpfs_relative(&["--tmpfs", "run"], "invalid --tmpfs \"run\"")]
#[case::tmpfs_unknown_option(&["--tmpfs", "/run:bogus"], "unknown option \"bogus\"")]
#[case::tmpfs_dev(&["--tmpfs", "/run:dev"], "nodev")]
#[case::mount_volume(&["--mount", "type=volume,src=v,dst=/v"], "type \"volume\" is not supported")]
#[case::mount_unknown_key(&["--mount", "type=bind,src=/tmp,dst=/v,bind-propagation=shared"], "unknown key \"bind-propagation\" (known: type, source")]
#[case::mount_no_target(&["--mount", "type=tmpfs"], "no target")]
#[case::mount_missing_source(&["--mount", "type=bind,src=/nonexistent/src,dst=/v"], "/nonexistent/src does not exist")]
#[case::two_at_one_target(&["--tmpfs", "/v", "-v", "/tmp:/v"], "two mounts at /v")]
fn bad_input_is_one_sentence_and_125_with_nothing_created(
    #[case] args: &[&str],
    #[case] says: &str,
) {
    let env = engine("dflagsbad");
    let mut all = vec!["--name", "bad"];
    all.extend_from_slice(args);
    all.extend([rootfs(), "true"]);
    let a = run(&env, &all).code(125);
    let err = stderr(&a);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("engine: ") && err.contains(says), "{err}");
    env.assert_clean();
    assert_eq!(env.state_files(), Vec::<String>::new());
}

#[test]
fn a_bad_env_file_line_is_named() {
    let env = engine("envfilebad");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("env");
    std::fs::write(&file, "A=1\nB C=2\n").unwrap();
    let file = file.to_str().unwrap();
    let a = run(&env, &["--env-file", file, rootfs(), "true"]).code(125);
    assert_eq!(
        stderr(&a),
        format!("engine: --env-file {file}, line 2: the variable name holds white space: write KEY=VALUE\n")
    );
    env.assert_clean();
}

/// A detached busybox container on `root`, sleeping, named `name`.
fn sleeping(env: &Engine, name: &str, root: &str, extra: &[&str]) {
    let mut args = vec!["run", "-d", "--net", "none", "--name", name];
    args.extend_from_slice(extra);
    args.extend([root, "sleep", "300"]);
    env.cmd().args(&args).assert().code(0);
}

#[test]
fn exec_u_runs_as_the_container_s_user_and_group() {
    let env = engine("execu");
    let (_dir, root) = rootfs_copy("root");
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nweb:x:1000:1001:web:/home/web:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(
        root.join("etc/group"),
        "root:x:0:\nweb:x:1001:\nstaff:x:50:web\n",
    )
    .unwrap();
    let root = root.to_str().unwrap();
    sleeping(&env, "u", root, &[]);
    let id = |user: &str| {
        let a = env
            .cmd()
            .args([
                "exec",
                "-u",
                user,
                "u",
                "sh",
                "-c",
                "echo $(id -u) $(id -g) $(id -G) $HOME",
            ])
            .assert();
        let out = stdout(&a);
        let err = stderr(&a);
        (a.get_output().status.code(), out, err)
    };
    assert_eq!(
        id("web"),
        (
            Some(0),
            "1000 1001 1001 50 /home/web\n".into(),
            String::new()
        )
    );
    assert_eq!(
        id("web:staff"),
        (Some(0), "1000 50 50 /home/web\n".into(), String::new())
    );
    assert_eq!(
        id("4242:7"),
        (Some(0), "4242 7 7 /\n".into(), String::new())
    );
    let (code, _, err) = id("nobody");
    assert_eq!(code, Some(125));
    assert_eq!(err, "engine: no user \"nobody\" in the container's /etc/passwd: give a name it lists, or a numeric UID\n");
    let (code, _, err) = id("web:");
    assert_eq!(code, Some(125));
    assert_eq!(
        err,
        "engine: invalid --user \"web:\": use USER, USER:GROUP, UID or UID:GID\n"
    );
    env.cmd().args(["rm", "-f", "u"]).assert().code(0);
    env.assert_clean();
}

/// `run --user 4294967295` (-1, setresuid's "leave it unchanged") is
/// refused as `exec -u` refuses it, as a UID and as a GID, in the
/// foreground, with `-d` and with `--userns host`: one line, 125, nothing
/// created (no state, no record in `ps -a`). Break tried: users::id taking
/// u32::MAX as a number (the ID range check refused the first with
/// another sentence; with `--userns host` the run exited 0 and `id -u`
/// printed 0: the process kept the engine's root).
#[test]
fn run_user_minus_one_is_refused_and_creates_nothing() {
    let env = engine("rununeg");
    for (user, extra) in [
        ("4294967295", &[][..]),
        ("0:4294967295", &[][..]),
        ("4294967295", &["-d", "--name", "neg"][..]),
        ("4294967295", &["--userns", "host"][..]),
    ] {
        let mut args = vec!["--user", user];
        args.extend_from_slice(extra);
        args.extend([rootfs(), "id", "-u"]);
        let a = run(&env, &args).code(125);
        assert_eq!(stdout(&a), "", "{args:?}");
        assert_eq!(
            stderr(&a),
            format!("engine: invalid --user \"{user}\": use USER, USER:GROUP, UID or UID:GID\n"),
            "{args:?}"
        );
    }
    let a = env.cmd().args(["ps", "-a", "-q"]).assert().code(0);
    assert_eq!(stdout(&a), "");
    env.assert_clean();
}

/// The container's /etc/passwd is its own: a FIFO there (or a link to
/// our stdin) must not hold `exec -u` (it was opened blocking and through
/// magic links before the look-up was written this way).
#[test]
fn exec_u_is_not_held_by_a_fifo_or_a_magic_link_for_etc_passwd() {
    let env = engine("execufifo");
    let (_dir, root) = rootfs_copy("root");
    std::fs::remove_file(root.join("etc/passwd")).unwrap();
    nix::unistd::mkfifo(
        &root.join("etc/passwd"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    std::fs::remove_file(root.join("etc/group")).unwrap();
    std::os::unix::fs::symlink("/proc/self/fd/0", root.join("etc/group")).unwrap();
    let root = root.to_str().unwrap();
    sleeping(&env, "f", root, &["--write-through"]);
    let started = Instant::now();
    let a = env
        .cmd()
        .args(["exec", "-u", "web", "f", "true"])
        .assert()
        .code(125);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        stderr(&a),
        "engine: the container's /etc/passwd is not a regular file: give a numeric UID:GID to -u\n"
    );
    let a = env
        .cmd()
        .args(["exec", "-u", "web:web", "f", "true"])
        .assert()
        .code(125);
    assert!(
        stderr(&a).contains("/etc/passwd is not a regular file"),
        "{}",
        stderr(&a)
    );
    // UID:GID needs neither file: what cannot be read is skipped, not waited on.
    env.cmd()
        .args([
            "exec",
            "-u",
            "5:6",
            "f",
            "grep",
            "-E",
            "^[UG]id",
            "/proc/self/status",
        ])
        .assert()
        .code(0)
        .stdout("Uid:\t5\t5\t5\t5\nGid:\t6\t6\t6\t6\n");
    env.cmd().args(["rm", "-f", "f"]).assert().code(0);
    env.assert_clean();
}

/// `sleep` as the command ignores SIGTERM as PID 1; under --init it is
/// PID 2, and the reaper forwards stop's SIGTERM: the stop is quick and
/// the status is 143 (128+SIGTERM), as docker's with --init.
#[test]
fn init_forwards_stop_s_sigterm_to_a_command_without_a_handler() {
    let env = engine("initstop");
    sleeping(&env, "i", rootfs(), &["--init"]);
    let started = Instant::now();
    env.cmd().args(["stop", "-t", "20", "i"]).assert().code(0);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stop took {:?}: SIGTERM was not forwarded",
        started.elapsed()
    );
    env.cmd()
        .args(["wait", "i"])
        .assert()
        .code(0)
        .stdout("143\n");
    env.cmd().args(["rm", "i"]).assert().code(0);
    env.assert_clean();
}

/// An orphan ends as a zombie under a PID 1 that never waits (`sleep`);
/// under --init the reaper waits for it. The test sees the zombie without
/// --init first, so it can tell.
#[test]
fn init_reaps_orphans() {
    let env = engine("initreap");
    let script = "(sleep 0.2 &); exec sleep 300";
    for (name, init, want_zombie) in [("noinit", false, true), ("withinit", true, false)] {
        let mut args = vec!["run", "-d", "--net", "none", "--name", name];
        if init {
            args.push("--init");
        }
        args.extend([rootfs(), "sh", "-c", script]);
        env.cmd().args(&args).assert().code(0);
        std::thread::sleep(Duration::from_secs(1));
        let a = env
            .cmd()
            .args(["exec", name, "ps", "-o", "pid,stat,comm"])
            .assert()
            .code(0);
        let ps = stdout(&a);
        let zombie = ps.lines().any(|l| l.split_whitespace().nth(1) == Some("Z"));
        assert_eq!(zombie, want_zombie, "{name}: {ps}");
        if init {
            assert!(ps.contains("    1 S    engine-init"), "{ps}");
        }
        env.cmd().args(["rm", "-f", name]).assert().code(0);
    }
    env.assert_clean();
}

#[test]
fn ps_format_templates_print_docker_s_fields() {
    let env = engine("psformat");
    sleeping(&env, "tpl", rootfs(), &[]);
    let ps = |format: &str| {
        let a = env.cmd().args(["ps", "--format", format]).assert();
        (a.get_output().status.code(), stdout(&a), stderr(&a))
    };
    let (code, out, _) = ps("{{.Names}} {{.State}} {{.Command}}");
    assert_eq!(
        (code, out.as_str()),
        (Some(0), "tpl running \"sleep 300\"\n")
    );
    let (code, out, _) = ps("table {{.Names}}\\t{{.State}}");
    assert_eq!(
        (code, out.as_str()),
        (Some(0), "NAMES   STATE\ntpl     running\n")
    );
    let (_, out, _) = ps("{{.Status}}|{{.CreatedAt}}");
    assert!(
        out.starts_with("Up ") && out.trim_end().ends_with(" +0000 UTC"),
        "{out}"
    );
    let (code, out, err) = ps("{{.Nmes}}");
    assert_eq!((code, out.as_str()), (Some(125), ""));
    assert_eq!(err, "engine: --format \"{{.Nmes}}\": unknown field .Nmes: use one of .ID .Names .Image .Command .Status .State .Ports .CreatedAt\n");
    env.cmd().args(["rm", "-f", "tpl"]).assert().code(0);
    env.assert_clean();
}

/// `--network container:NAME` joins that container's network namespace:
/// the same namespace (by inode), and its loopback reaches a server of
/// the other container. The target has `--net none`: its namespace is
/// its own, nothing of the host's network is touched.
#[test]
fn network_container_joins_a_running_container_s_namespace() {
    let env = engine("netjoin");
    detach(
        &env,
        "target",
        "nc -l -p 8080 -e echo hello from target; sleep 300",
    );
    let pid = container_pid(&env, "target");
    let theirs = std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
    // The server may take a moment to listen.
    let script = "readlink /proc/self/ns/net; for i in $(seq 50); do nc 127.0.0.1 8080 </dev/null && exit; sleep 0.1; done; exit 9";
    let a = env
        .cmd()
        .args([
            "run",
            "--network",
            "container:target",
            rootfs(),
            "sh",
            "-c",
            script,
        ])
        .assert();
    assert_eq!(
        stdout(&a),
        format!("{}\nhello from target\n", theirs.display()),
        "{}",
        stderr(&a)
    );
    a.code(0);
    env.cmd().args(["rm", "-f", "target"]).assert().code(0);
    env.assert_clean();
}

#[rstest]
#[case::not_there(&["--network", "container:nosuch"], "container nosuch is not running")]
#[case::exited(&["--network", "container:ended"], "container ended is not running")]
#[case::publish(&["--network", "container:ended", "-p", "80:80"], "-p cannot be used with --network container:NAME")]
#[case::address(&["--network", "container:ended", "--ip", "192.168.1.5"], "address 192.168.1.5 given with --network container:NAME")]
#[case::hostname(&["--network", "container:ended", "--hostname", "h"], "--hostname cannot be used with --network container:NAME")]
fn network_container_is_refused_without_a_running_container_or_with_its_own_network_flags(
    #[case] args: &[&str],
    #[case] says: &str,
) {
    let env = engine("netjoinbad");
    detach(&env, "ended", "true");
    env.cmd().args(["wait", "ended"]).assert().code(0);
    let mut all = vec!["run", "--name", "joiner"];
    all.extend_from_slice(args);
    all.extend([rootfs(), "true"]);
    let a = env.cmd().args(&all).assert().code(125);
    let err = stderr(&a);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(says), "{err}");
    assert!(!env.state_dir().join("joiner.json").exists());
    env.cmd().args(["rm", "ended"]).assert().code(0);
    env.assert_clean();
}
