//! `engine run` on the real kernel of this host: namespaces, mounts, the
//! overlay, users, exit codes, signals, stdin, the tty, bad input and crash
//! recovery. Networking here is `--net none` only; bridges are tested inside
//! network namespaces of their own (tests/net.rs) and in the VM harness.

mod common;
use common::*;
use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

fn rootfs() -> &'static str {
    busybox().to_str().unwrap()
}

#[test]
fn command_is_pid_1_and_sees_only_its_processes() {
    let env = Env::new("pid1");
    let out = env.run(&[
        rootfs(),
        "pid1",
        "--",
        "sh",
        "-c",
        "sleep 30 & sleep 0.2; ps -e -o pid,comm; true",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let lines: Vec<String> = stdout(&out)
        .lines()
        .skip(1)
        .map(|l| l.trim().to_string())
        .collect();
    assert_eq!(lines.first().map(String::as_str), Some("1 sh"), "{lines:?}");
    // sh (1), sleep, ps: nothing of the host.
    assert_eq!(lines.len(), 3, "unexpected processes: {lines:?}");
    env.assert_clean();
}

#[test]
fn hostname_is_the_name_or_the_given_hostname() {
    let env = Env::new("host");
    let out = env.run(&[rootfs(), "web-1", "--", "hostname"]);
    assert_eq!(stdout(&out).trim(), "web-1", "{}", stderr(&out));
    let out = env.run(&[
        "--hostname",
        "db.local",
        rootfs(),
        "web-2",
        "--",
        "hostname",
    ]);
    assert_eq!(stdout(&out).trim(), "db.local");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_ne!(host.trim(), "web-1");
}

#[test]
fn generated_name_is_valid_and_used_as_hostname() {
    let env = Env::new("gen");
    let out = env.run(&[rootfs(), "--", "hostname"]);
    let name = stdout(&out).trim().to_string();
    assert!(name.starts_with("ctr-") && name.len() == 12, "{name:?}");
}

#[test]
fn user_namespace_maps_root() {
    let env = Env::new("userns");
    let out = env.run(&[
        rootfs(),
        "u1",
        "--",
        "sh",
        "-c",
        "whoami; cat /proc/self/uid_map /proc/self/gid_map",
    ]);
    let text = stdout(&out);
    let words: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(
        words,
        ["root", "0", "0", "65536", "0", "0", "65536"],
        "{}",
        stderr(&out)
    );

    let out = env.run(&[
        "--userns",
        "200000",
        "--write-through",
        rootfs(),
        "u2",
        "--",
        "cat",
        "/proc/self/uid_map",
    ]);
    let words: Vec<String> = stdout(&out).split_whitespace().map(String::from).collect();
    assert_eq!(words, ["0", "200000", "65536"]);

    let out = env.run(&[
        "--userns",
        "host",
        rootfs(),
        "u3",
        "--",
        "cat",
        "/proc/self/uid_map",
    ]);
    let words: Vec<String> = stdout(&out).split_whitespace().map(String::from).collect();
    assert_eq!(words, ["0", "0", "4294967295"]);
}

#[test]
fn container_root_holds_no_capability_over_the_host() {
    let env = Env::new("caps");
    // Inside a user namespace: the host's kernel refuses what needs real root.
    let out = env.run(&[
        rootfs(),
        "caps",
        "--",
        "sh",
        "-c",
        "echo 1 > /proc/sys/vm/drop_caches && echo WROTE",
    ]);
    assert!(!stdout(&out).contains("WROTE"));
    let out = env.run(&[
        rootfs(),
        "caps2",
        "--",
        "sh",
        "-c",
        "mknod /tmp/sda b 8 0 && echo MADE",
    ]);
    assert!(
        !stdout(&out).contains("MADE"),
        "mknod of a block device succeeded"
    );
}

#[test]
fn root_is_the_rootfs_and_host_paths_are_invisible() {
    let env = Env::new("root");
    let marker = env.state.path().join("host-marker");
    std::fs::write(&marker, "host").unwrap();
    let script = format!(
        "ls /; test -e {} && echo HOST-VISIBLE; test -e /bin/busybox && echo OK",
        marker.display()
    );
    let out = env.run(&[rootfs(), "r", "--", "sh", "-c", &script]);
    let text = stdout(&out);
    assert!(text.contains("OK"), "{text}");
    assert!(!text.contains("HOST-VISIBLE"));
    for dir in ["bin", "dev", "etc", "proc", "sys", "tmp"] {
        assert!(text.lines().any(|l| l == dir), "/{dir} missing from {text}");
    }
}

#[test]
fn mounts_are_set_up_and_never_reach_the_host() {
    let env = Env::new("mounts");
    let script = "cat /proc/self/mounts; ls /dev; \
        echo x > /proc/sys/kernel/hostname 2>/dev/null && echo PROCSYS-WRITABLE; \
        touch /sys/x 2>/dev/null && echo SYS-WRITABLE; \
        test -s /proc/kcore && echo KCORE-READABLE; \
        cat /proc/keys 2>/dev/null | head -c1 | grep -q . && echo KEYS-READABLE; echo END";
    let script = format!("{script}; sleep 1");
    let child = env.spawn(&[rootfs(), "m", "--", "sh", "-c", &script]);
    // While it runs, the host sees none of its mounts.
    std::thread::sleep(Duration::from_millis(300));
    assert_no_mounts_under(env.state.path());
    assert_no_mounts_under(busybox());
    let out = child.wait_with_output().unwrap();
    let text = stdout(&out);
    assert!(text.contains("END"), "{text}");
    for bad in [
        "PROCSYS-WRITABLE",
        "SYS-WRITABLE",
        "KCORE-READABLE",
        "KEYS-READABLE",
    ] {
        assert!(!text.contains(bad), "{bad}");
    }
    for m in [
        " / overlay",
        " /proc proc",
        " /sys sysfs ro",
        " /dev tmpfs",
        " /dev/pts devpts",
        " /dev/shm tmpfs",
        " /dev/mqueue mqueue",
    ] {
        assert!(text.contains(m), "missing mount {m:?} in {text}");
    }
    for node in [
        "null", "zero", "full", "random", "urandom", "tty", "ptmx", "fd", "stdin", "stdout",
        "stderr",
    ] {
        assert!(text.lines().any(|l| l == node), "/dev/{node} missing");
    }
    env.assert_clean();
}

#[test]
fn each_container_writes_to_its_own_layer() {
    let env = Env::new("overlay");
    let rootfs_marker = busybox().join("written-by-container");
    let mut a = env.spawn(&[
        rootfs(),
        "a",
        "--",
        "sh",
        "-c",
        "echo a > /written-by-container; echo ready; sleep 2; cat /written-by-container",
    ]);
    let mut lines = lines(&mut a);
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    let out = env.run(&[
        rootfs(),
        "b",
        "--",
        "sh",
        "-c",
        "cat /written-by-container 2>/dev/null || echo absent",
    ]);
    assert_eq!(stdout(&out).trim(), "absent");
    assert_eq!(lines.next().unwrap().unwrap(), "a");
    assert!(a.wait().unwrap().success());
    assert!(!rootfs_marker.exists(), "the container wrote into ROOTFS");
    env.assert_clean();
}

#[test]
fn write_through_writes_into_the_rootfs() {
    let env = Env::new("wt");
    let copy = Scratch::new("wt-rootfs");
    let status = std::process::Command::new("cp")
        .args(["-a", rootfs()])
        .arg(copy.path().join("root"))
        .status()
        .unwrap();
    assert!(status.success());
    let root = copy.path().join("root");
    let out = env.run(&[
        "--write-through",
        root.to_str().unwrap(),
        "wt",
        "--",
        "sh",
        "-c",
        "echo kept > /kept",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(root.join("kept")).unwrap(),
        "kept\n"
    );
}

#[test]
fn exit_codes_follow_docker() {
    let env = Env::new("codes");
    let code = |args: &[&str]| env.run(args).status.code();
    assert_eq!(code(&[rootfs(), "--", "true"]), Some(0));
    assert_eq!(code(&[rootfs(), "--", "sh", "-c", "exit 42"]), Some(42));
    assert_eq!(code(&[rootfs(), "--", "/etc/passwd"]), Some(126));
    assert_eq!(code(&[rootfs(), "--", "no-such-command"]), Some(127));
    assert_eq!(code(&[rootfs(), "--", "/no/such/path"]), Some(127));
    assert_eq!(code(&["/no/such/rootfs", "--", "true"]), Some(125));
    let out = env.run(&[rootfs(), "--", "no-such-command"]);
    assert!(stderr(&out).contains("no-such-command"), "{}", stderr(&out));
    env.assert_clean();
}

#[test]
fn killed_by_a_signal_exits_128_plus_n() {
    let env = Env::new("sig9");
    let child = env
        .cmd()
        .args(["run", "--net", "none", rootfs(), "k9", "--", "sleep", "60"])
        .spawn()
        .unwrap();
    let pid = container_pid(&env, "k9");
    std::thread::sleep(Duration::from_millis(200));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(137));
    env.assert_clean();
}

#[test]
fn signals_are_forwarded_to_pid_1() {
    let env = Env::new("fwd");
    for (sig, name, code) in [
        (nix::sys::signal::Signal::SIGTERM, "TERM", 7),
        (nix::sys::signal::Signal::SIGUSR1, "USR1", 8),
        (nix::sys::signal::Signal::SIGHUP, "HUP", 9),
    ] {
        let script = format!("trap 'echo got {name}; exit {code}' {name}; echo ready; while true; do sleep 0.05; done");
        let mut child = env.spawn(&[rootfs(), "fwd", "--", "sh", "-c", &script]);
        let mut lines = lines(&mut child);
        assert_eq!(lines.next().unwrap().unwrap(), "ready");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig).unwrap();
        assert_eq!(lines.next().unwrap().unwrap(), format!("got {name}"));
        assert_eq!(child.wait().unwrap().code(), Some(code));
    }
    env.assert_clean();
}

#[test]
fn stdin_and_stdout_pass_through_pipes() {
    let env = Env::new("pipe");
    let mut child = env
        .cmd()
        .args([
            "run",
            "--net",
            "none",
            rootfs(),
            "p",
            "--",
            "sh",
            "-c",
            "wc -c; echo done >&2",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let data = vec![b'x'; 1 << 20];
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert_eq!(stdout(&out).trim(), "1048576");
    assert!(stderr(&out).contains("done"));
}

#[test]
fn environment_workdir_and_volumes() {
    let env = Env::new("opts");
    let vol = Scratch::new("vol");
    std::fs::write(vol.path().join("in"), "from host\n").unwrap();
    let ro = Scratch::new("vol-ro");
    let out = env.run(&[
        "-e", "GREETING=hi there", "-w", "/work/dir",
        "-v", &format!("{}:/data", vol.path().display()),
        "-v", &format!("{}:/ro:ro", ro.path().display()),
        rootfs(), "opts", "--", "sh", "-c",
        "echo $GREETING; pwd; cat /data/in; echo out > /data/out; touch /ro/x 2>/dev/null || echo RO",
    ]);
    assert_eq!(
        stdout(&out),
        "hi there\n/work/dir\nfrom host\nRO\n",
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_to_string(vol.path().join("out")).unwrap(),
        "out\n"
    );
    env.assert_clean();
}

#[test]
fn a_running_name_cannot_be_reused() {
    let env = Env::new("dup");
    let mut first = env.spawn(&[rootfs(), "dup", "--", "sh", "-c", "echo ready; sleep 30"]);
    let mut lines = lines(&mut first);
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    let out = env.run(&[rootfs(), "dup", "--", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("dup") && stderr(&out).contains("in use"),
        "{}",
        stderr(&out)
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    first.wait().unwrap();
}

/// Every bad input: 125, one line naming the culprit, nothing created.
#[test]
fn bad_input_is_refused_before_anything_is_created() {
    let env = Env::new("bad");
    let file = env.state.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let empty = Scratch::new("empty-dir");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["/no/such/rootfs"], "/no/such/rootfs"),
        (vec![file.to_str().unwrap()], "not a directory"),
        (
            vec![empty.path().to_str().unwrap()],
            "not a root filesystem",
        ),
        (vec![rootfs(), "bad!name"], "invalid container name"),
        (vec![rootfs(), "_x"], "invalid container name"),
        (vec![rootfs(), "a/b"], "invalid container name"),
        (vec!["--cpus", "0", rootfs()], "--cpus"),
        (vec!["--cpus", "abc", rootfs()], "--cpus"),
        (vec!["--cpus", "9999", rootfs()], "CPUs of this host"),
        (vec!["--memory", "lots", rootfs()], "--memory"),
        (vec!["--memory", "5M", rootfs()], "6M"),
        (vec!["--pids-limit", "0", rootfs()], "--pids-limit"),
        (vec!["-v", "/no/such/dir:/x", rootfs()], "/no/such/dir"),
        (vec!["-v", "/tmp", rootfs()], "--volume"),
        (vec!["--userns", "sideways", rootfs()], "--userns"),
        (vec!["-w", "relative", rootfs()], "not absolute"),
        (vec!["--hostname", "bad_host!", rootfs()], "hostname"),
    ];
    for (args, needle) in cases {
        let mut full = args.clone();
        full.extend(["--", "true"]);
        let out = env.run(&full);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(125), "{args:?}: {err}");
        assert!(
            err.contains(needle),
            "{args:?}: {err:?} should mention {needle:?}"
        );
        let lines: Vec<&str> = err
            .lines()
            .filter(|l| !l.contains("no resource control"))
            .collect();
        assert_eq!(lines.len(), 1, "{args:?}: more than one line: {err}");
        assert!(!err.contains("panicked") && !err.contains("Os {"), "{err}");
        assert_eq!(
            env.state_files(),
            Vec::<String>::new(),
            "{args:?} left state"
        );
    }
    let out = env
        .cmd()
        .args(["run", "--net", "weird", rootfs(), "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("--net"), "{}", stderr(&out));
    // A path overlayfs options cannot carry.
    let odd = env.state.path().join("odd,name");
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(rootfs())
        .arg(&odd)
        .status()
        .unwrap();
    assert!(copied.success());
    let out = env.run(&[odd.to_str().unwrap(), "--", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("--write-through"), "{}", stderr(&out));
    let out = env.run(&["--write-through", odd.to_str().unwrap(), "--", "true"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    std::fs::remove_dir_all(&odd).unwrap();
    // Not root: refused before anything is made.
    let out = std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            ENGINE,
            "run",
            "--net",
            "none",
        ])
        .args([rootfs(), "--", "true"])
        .env("ENGINE_STATE_DIR", env.state.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(stderr(&out).contains("needs root"), "{}", stderr(&out));
    assert_eq!(env.state_files(), Vec::<String>::new());
    // A bad flag is an engine error too, not clap's 2.
    let out = env
        .cmd()
        .args(["run", "--no-such-flag", rootfs()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
}

#[test]
fn limits_follow_what_the_host_offers() {
    let env = Env::new("limits");
    let args = [
        "--cpus",
        "0.5",
        "--memory",
        "50M",
        "--pids-limit",
        "64",
        rootfs(),
        "lim",
        "--",
    ];
    let script = "cat /sys/fs/cgroup/cpu.max /sys/fs/cgroup/memory.max /sys/fs/cgroup/memory.swap.max /sys/fs/cgroup/pids.max";
    let out = env.run(&[&args[..], &["sh", "-c", script]].concat());
    if engine::sys::cgroup::check_available(&env.cgroup_root).is_ok() {
        // cgroup v2 (a GitHub runner, the VM): the container sees its own
        // leaf, through its cgroup namespace, with the limits written.
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert_eq!(stdout(&out), "50000 100000\n52428800\n0\n64\n");
        assert!(
            !env.cgroup_root.join("lim").exists(),
            "the leaf outlived the container"
        );
    } else {
        // v1 or hybrid (these machines): a limit is an error, and without
        // one a single line says there is no resource control.
        assert_eq!(out.status.code(), Some(125));
        assert!(stderr(&out).contains("cgroup v2"), "{}", stderr(&out));
        let out = env.run(&[rootfs(), "--", "true"]);
        assert_eq!(out.status.code(), Some(0));
        assert!(
            stderr(&out).contains("no resource control"),
            "{}",
            stderr(&out)
        );
    }
    env.assert_clean();
}

#[test]
fn a_sigkilled_engine_is_cleaned_up_by_the_next_invocation() {
    let env = Env::new("crash");
    let mut child = env.spawn(&[rootfs(), "victim", "--", "sh", "-c", "echo ready; sleep 60"]);
    let mut lines = lines(&mut child);
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    let pid = container_pid(&env, "victim");
    child.kill().unwrap(); // SIGKILL to the engine
    child.wait().unwrap();
    // The container dies with its supervisor.
    wait_for(5, "the container to die", || {
        (!std::path::Path::new(&format!("/proc/{pid}")).exists()).then_some(())
    });
    assert!(
        !env.state_files().is_empty(),
        "the crash should leave state behind"
    );
    let out = env.run(&[rootfs(), "next", "--", "true"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    env.assert_clean();
}

#[test]
fn tty_gives_a_shell_with_job_control_and_window_size() {
    if std::process::Command::new("tmux")
        .arg("-V")
        .output()
        .is_err()
    {
        panic!("tmux is needed for the tty test: apt-get install tmux");
    }
    let env = Env::new("tty");
    let session = format!("engine-tty-{}", std::process::id());
    let tmux = |args: &[&str]| {
        std::process::Command::new("tmux")
            .args(["-L", &session])
            .args(args)
            .output()
            .unwrap()
    };
    let cmd = format!(
        "ENGINE_STATE_DIR={} ENGINE_CGROUP_ROOT={} {ENGINE} run --net none {} tty; echo ENGINE-EXIT=$?; sleep 30",
        env.state.path().display(),
        env.cgroup_root.display(),
        rootfs()
    );
    tmux(&[
        "new-session",
        "-d",
        "-s",
        "t",
        "-x",
        "100",
        "-y",
        "30",
        &cmd,
    ]);
    let screen = || stdout(&tmux(&["capture-pane", "-p", "-t", "t"]));
    let wait_screen = |needle: &str| {
        wait_for(10, needle, || screen().contains(needle).then_some(()));
    };
    wait_screen("/ #");
    tmux(&["send-keys", "-t", "t", "stty size; tty", "Enter"]);
    wait_screen("30 100");
    tmux(&["resize-window", "-t", "t", "-x", "90", "-y", "25"]);
    std::thread::sleep(Duration::from_millis(300));
    tmux(&["send-keys", "-t", "t", "stty size", "Enter"]);
    wait_screen("25 90");
    // Ctrl-C reaches the foreground job, not the engine.
    tmux(&["send-keys", "-t", "t", "sleep 100", "Enter"]);
    std::thread::sleep(Duration::from_millis(500));
    tmux(&["send-keys", "-t", "t", "C-c"]);
    tmux(&["send-keys", "-t", "t", "echo still-$((40+2))", "Enter"]);
    wait_screen("still-42");
    tmux(&["send-keys", "-t", "t", "exit 5", "Enter"]);
    wait_screen("ENGINE-EXIT=5");
    tmux(&["kill-server"]);
    env.assert_clean();
}

#[test]
fn a_rootfs_for_another_architecture_is_refused() {
    let env = Env::new("arch");
    let dest = env.state.path().join("arm64-busybox");
    let out = env
        .cmd()
        .env("ENGINE_BUSYBOX", arm64_busybox())
        .args(["rootfs", "pull", "busybox", "--arch", "arm64"])
        .arg(&dest)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let has_arm64_handler = std::fs::read_dir("/proc/sys/fs/binfmt_misc")
        .map(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().contains("aarch64"))
        })
        .unwrap_or(false);
    let out = env.run(&[dest.to_str().unwrap(), "--", "sh", "-c", "echo ran"]);
    if cfg!(target_arch = "aarch64") || has_arm64_handler {
        // Native, or qemu-user runs it: the check must not refuse what the host can run.
        assert_eq!(stdout(&out).trim(), "ran", "{}", stderr(&out));
    } else {
        assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("arm64") && err.contains("amd64") && err.contains("binfmt_misc"),
            "{err}"
        );
        assert!(!err.contains("Exec format error"), "{err}");
    }
    let _ = std::fs::remove_dir_all(&dest);
    env.assert_clean();
}
