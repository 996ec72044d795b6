//! `engine run` on the real kernel of this host: namespaces, mounts, the
//! overlay, users, exit codes, signals, stdin, the tty, bad input and crash
//! recovery. Networking here is `--net none` only; bridges are tested inside
//! network namespaces of their own (tests/bridge.rs) and in the VM harness.

mod common;
use common::*;
use nix::sys::signal::Signal;
use rstest::rstest;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

#[test]
fn command_is_pid_1_and_sees_only_its_processes() {
    let env = engine("pid1");
    // ps once the background child has exec'd sleep (until then it is an sh).
    let a = run(
        &env,
        &[
            "--name",
            "pid1",
            rootfs(),
            "--",
            "sh",
            "-c",
            "sleep 30 & until [ \"$(cat /proc/$!/comm)\" = sleep ]; do :; done; ps -e -o pid,comm; true",
        ],
    )
    .code(0);
    let lines: Vec<String> = stdout(&a)
        .lines()
        .skip(1)
        .map(|l| l.trim().to_string())
        .collect();
    assert_eq!(lines.first().map(String::as_str), Some("1 sh"), "{lines:?}");
    // sh (1), sleep, ps: nothing of the host.
    assert_eq!(lines.len(), 3, "unexpected processes: {lines:?}");
    assert!(lines[1].ends_with(" sleep"), "{lines:?}");
    env.assert_clean();
}

/// The hostname in the calling thread's UTS namespace.
fn hostname_here() -> String {
    nix::unistd::gethostname()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

fn uts_inode(proc_dir: &str) -> u64 {
    std::fs::metadata(format!("/proc/{proc_dir}/ns/uts"))
        .unwrap()
        .ino()
}

/// The container's hostname is its own: set inside, and ours stays what it
/// was while the container runs (a shared UTS namespace would show). This
/// thread first moves into a UTS namespace of its own, which the engines it
/// starts inherit, so a broken engine renames that one, never the machine.
#[test]
fn hostname_is_the_name_or_the_given_hostname() {
    let machine_uts = uts_inode("thread-self");
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUTS).expect("unshare(CLONE_NEWUTS)");
    assert_ne!(
        uts_inode("thread-self"),
        machine_uts,
        "still in the machine's UTS namespace"
    );
    let env = engine("host");
    let host_before = hostname_here();
    // Without a user namespace first: there a shared UTS namespace would let
    // the engine rename the host.
    for (args, want) in [
        (
            vec!["--userns", "host", "--name", "web-0", rootfs()],
            "web-0",
        ),
        (vec!["--name", "web-1", rootfs()], "web-1"),
        (
            vec!["--hostname", "db.local", "--name", "web-2", rootfs()],
            "db.local",
        ),
    ] {
        let script = "hostname; read x || true";
        let mut c = Running::run(&env, &[&args[..], &["--", "sh", "-c", script]].concat());
        c.expect(want);
        let name = args[args.iter().position(|a| *a == "--name").unwrap() + 1];
        let pid = container_pid(&env, name);
        assert_ne!(
            uts_inode(&pid.to_string()),
            uts_inode("thread-self"),
            "the container shares the host's UTS namespace"
        );
        assert_eq!(
            hostname_here(),
            host_before,
            "the host's hostname changed while {name} ran"
        );
        assert!(c.wait().success());
    }
    assert_eq!(hostname_here(), host_before);
    env.assert_clean();
}

#[test]
fn generated_name_is_valid_and_used_as_hostname() {
    let env = engine("gen");
    let a = run(&env, &[rootfs(), "--", "hostname"]).code(0);
    let name = stdout(&a).trim().to_string();
    assert!(name.starts_with("ctr-") && name.len() == 12, "{name:?}");
    assert!(name[4..].bytes().all(|b| b.is_ascii_hexdigit()), "{name:?}");
}

/// The shared fixture lies in the system temp dir, never under the checkout:
/// a container root mapped to uid 200000 must traverse every parent.
#[test]
fn user_namespace_maps_root() {
    let env = engine("userns");
    let a = run(
        &env,
        &[
            "--name",
            "u1",
            rootfs(),
            "--",
            "sh",
            "-c",
            "whoami; cat /proc/self/uid_map /proc/self/gid_map",
        ],
    )
    .code(0);
    // A root-owned rootfs: a range from the pool (2^30 and up), never host root.
    let words: Vec<String> = stdout(&a).split_whitespace().map(String::from).collect();
    assert_eq!(words.len(), 7, "{words:?}");
    let base: u64 = words[2].parse().unwrap();
    assert!(base >= 1 << 30, "{words:?}");
    let want = ["root", "0", &words[2], "65536", "0", &words[2], "65536"];
    assert_eq!(words, want);

    // --write-through into a copy: nothing is written, but no shared fixture
    // is ever a write-through root.
    let (copy, root) = rootfs_copy("root");
    std::fs::set_permissions(
        copy.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let a = run(
        &env,
        &[
            "--userns",
            "200000",
            "--write-through",
            "--name",
            "u2",
            root.to_str().unwrap(),
            "--",
            "cat",
            "/proc/self/uid_map",
        ],
    )
    .code(0);
    let words: Vec<String> = stdout(&a).split_whitespace().map(String::from).collect();
    assert_eq!(words, ["0", "200000", "65536"]);

    let a = run(
        &env,
        &[
            "--userns",
            "host",
            "--name",
            "u3",
            rootfs(),
            "--",
            "cat",
            "/proc/self/uid_map",
        ],
    )
    .code(0);
    let words: Vec<String> = stdout(&a).split_whitespace().map(String::from).collect();
    assert_eq!(words, ["0", "0", "4294967295"]);
    env.assert_clean();
}

/// Each attempt runs in a container that provably started (it prints
/// STARTED first) and finished its script (DONE last); the attempt's own
/// success marker must be absent.
#[rstest]
#[case::drop_caches("echo 1 > /proc/sys/vm/drop_caches && echo WROTE")]
#[case::mknod_block_device("mknod /tmp/sda b 8 0 && echo WROTE")]
fn container_root_holds_no_capability_over_the_host(#[case] attempt: &str) {
    let env = engine("caps");
    let script = format!("echo STARTED; {{ {attempt}; }} 2>/dev/null; echo DONE");
    run(
        &env,
        &["--name", "caps", rootfs(), "--", "sh", "-c", &script],
    )
    .code(0)
    .stdout("STARTED\nDONE\n");
    env.assert_clean();
}

#[test]
fn root_is_the_rootfs_and_host_paths_are_invisible() {
    let env = engine("root");
    let marker = env.state_dir().join("host-marker");
    std::fs::write(&marker, "host").unwrap();
    let script = format!(
        "ls /; test -e {} && echo HOST-VISIBLE; test -e /bin/busybox && echo OK",
        quote::quote(marker.to_str().unwrap())
    );
    let a = run(&env, &["--name", "r", rootfs(), "--", "sh", "-c", &script]).code(0);
    let text = stdout(&a);
    assert!(text.contains("OK"), "{text}");
    assert!(!text.contains("HOST-VISIBLE"));
    for dir in ["bin", "dev", "etc", "proc", "sys", "tmp"] {
        assert!(text.lines().any(|l| l == dir), "/{dir} missing from {text}");
    }
}

#[test]
fn mounts_are_set_up_and_never_reach_the_host() {
    let env = engine("mounts");
    // END, then wait on stdin while the test looks at the host's mounts.
    let script = "cat /proc/self/mounts; ls /dev; \
        echo x > /proc/sys/kernel/hostname 2>/dev/null && echo PROCSYS-WRITABLE; \
        touch /sys/x 2>/dev/null && echo SYS-WRITABLE; \
        test -s /proc/kcore && echo KCORE-READABLE; \
        cat /proc/keys 2>/dev/null | head -c1 | grep -q . && echo KEYS-READABLE; echo END; read x || true";
    let mut c = Running::run(&env, &["--name", "m", rootfs(), "--", "sh", "-c", script]);
    c.lines.expect_line("END", SHORT);
    mountinfo::assert_none_under(env.state_dir());
    mountinfo::assert_none_under(busybox::rootfs());
    assert!(c.wait().success());
    let text = c.lines.seen.join("\n") + "\n";
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
    let env = engine("overlay");
    let rootfs_marker = busybox::rootfs().join("written-by-container");
    let mut a = Running::run(
        &env,
        &[
            "--name",
            "a",
            rootfs(),
            "--",
            "sh",
            "-c",
            "echo a > /written-by-container; echo ready; read x || true; cat /written-by-container",
        ],
    );
    a.expect("ready");
    run(
        &env,
        &[
            "--name",
            "b",
            rootfs(),
            "--",
            "sh",
            "-c",
            "cat /written-by-container 2>/dev/null || echo absent",
        ],
    )
    .code(0)
    .stdout("absent\n");
    a.close_stdin();
    a.expect("a");
    assert!(a.wait().success());
    assert!(!rootfs_marker.exists(), "the container wrote into ROOTFS");
    env.assert_clean();
}

#[test]
fn write_through_writes_into_the_rootfs() {
    let env = engine("wt");
    let (_copy, root) = rootfs_copy("root");
    run_write_through(&env, &root, "echo kept > /kept");
    assert_eq!(
        std::fs::read_to_string(root.join("kept")).unwrap(),
        "kept\n"
    );
    env.assert_clean();
}

#[rstest]
#[case::success(&["--", "true"], 0)]
#[case::own_status(&["--", "sh", "-c", "exit 42"], 42)]
#[case::not_executable(&["--", "/etc/passwd"], 126)]
#[case::not_found(&["--", "no-such-command"], 127)]
#[case::no_such_path(&["--", "/no/such/path"], 127)]
fn exit_codes_follow_docker(#[case] command: &[&str], #[case] code: i32) {
    let env = engine("codes");
    let a = run(&env, &[&[rootfs()], command].concat()).code(code);
    if code == 127 {
        assert!(stderr(&a).contains(command[1]), "{}", stderr(&a));
    }
    env.assert_clean();
}

#[test]
fn killed_by_a_signal_exits_128_plus_n() {
    let env = engine("sig9");
    let mut c = Running::run(
        &env,
        &[
            "--name",
            "k9",
            rootfs(),
            "--",
            "sh",
            "-c",
            "echo ready; exec sleep 60",
        ],
    );
    c.expect("ready");
    let pid = container_pid(&env, "k9");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    assert_eq!(c.wait().code(), Some(137));
    env.assert_clean();
}

#[rstest]
#[case::term(Signal::SIGTERM, 7)]
#[case::usr1(Signal::SIGUSR1, 8)]
#[case::hup(Signal::SIGHUP, 9)]
fn signals_are_forwarded_to_pid_1(#[case] sig: Signal, #[case] code: i32) {
    let env = engine("fwd");
    let name = &sig.as_str()[3..];
    let script = format!(
        "trap 'echo got {name}; exit {code}' {name}; echo ready; while true; do sleep 0.05; done"
    );
    let mut c = Running::run(
        &env,
        &["--name", "fwd", rootfs(), "--", "sh", "-c", &script],
    );
    c.expect("ready");
    c.signal(sig);
    c.expect(&format!("got {name}"));
    assert_eq!(c.wait().code(), Some(code));
    env.assert_clean();
}

#[test]
fn stdin_and_stdout_pass_through_pipes() {
    let env = engine("pipe");
    run_with_stdin(&env, vec![b'x'; 1 << 20])
        .code(0)
        .stdout("1048576\n")
        .stderr(predicate::str::contains("done"));
}

fn run_with_stdin(env: &Engine, data: Vec<u8>) -> Assert {
    env.cmd()
        .args([
            "run",
            "--net",
            "none",
            "--name",
            "p",
            rootfs(),
            "--",
            "sh",
            "-c",
            "wc -c; echo done >&2",
        ])
        .write_stdin(data)
        .assert()
}

#[test]
fn environment_workdir_and_volumes() {
    let env = engine("opts");
    let vol = tempfile::tempdir().unwrap();
    // Container root is an unprivileged host ID: the volume must be writable.
    std::fs::set_permissions(
        vol.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    std::fs::write(vol.path().join("in"), "from host\n").unwrap();
    let ro = tempfile::tempdir().unwrap();
    run(&env, &[
        "-e", "GREETING=hi there", "-w", "/work/dir",
        "-v", &format!("{}:/data", vol.path().display()),
        "-v", &format!("{}:/ro:ro", ro.path().display()),
        "--name", "opts", rootfs(), "--", "sh", "-c",
        "echo $GREETING; pwd; cat /data/in; echo out > /data/out; touch /ro/x 2>/dev/null || echo RO",
    ])
    .code(0)
    .stdout("hi there\n/work/dir\nfrom host\nRO\n");
    assert_eq!(
        std::fs::read_to_string(vol.path().join("out")).unwrap(),
        "out\n"
    );
    assert!(!ro.path().join("x").exists());
    env.assert_clean();
}

#[test]
fn a_running_name_cannot_be_reused() {
    let env = engine("dup");
    let mut first = Running::run(
        &env,
        &[
            "--name",
            "dup",
            rootfs(),
            "--",
            "sh",
            "-c",
            "echo ready; read x || true",
        ],
    );
    first.expect("ready");
    run(&env, &["--name", "dup", rootfs(), "--", "true"])
        .code(125)
        .stderr(predicate::str::contains("dup").and(predicate::str::contains("in use")));
    assert!(first.wait().success());
    env.assert_clean();
}

/// Every bad input: 125, one line naming the culprit, nothing created.
/// `{rootfs}`, `{file}` and `{empty}` stand for the fixture, a plain file
/// and an empty directory.
#[rstest]
#[case::no_such_rootfs(&["/no/such/rootfs"], "/no/such/rootfs")]
#[case::rootfs_is_a_file(&["{file}"], "not a directory")]
#[case::rootfs_is_empty(&["{empty}"], "not a root filesystem")]
#[case::name_with_bang(&["--name", "bad!name", "{rootfs}"], "invalid container name")]
#[case::name_with_underscore_first(&["--name", "_x", "{rootfs}"], "invalid container name")]
#[case::name_with_slash(&["--name", "a/b", "{rootfs}"], "invalid container name")]
#[case::cpus_zero(&["--cpus", "0", "{rootfs}"], "--cpus")]
#[case::cpus_word(&["--cpus", "abc", "{rootfs}"], "--cpus")]
#[case::cpus_too_many(&["--cpus", "9999", "{rootfs}"], "CPUs of this host")]
#[case::memory_word(&["--memory", "lots", "{rootfs}"], "--memory")]
#[case::memory_too_small(&["--memory", "5M", "{rootfs}"], "6M")]
#[case::pids_zero(&["--pids-limit", "0", "{rootfs}"], "--pids-limit")]
#[case::volume_missing(&["-v", "/no/such/dir:/x", "{rootfs}"], "/no/such/dir")]
#[case::volume_without_target(&["-v", "/tmp", "{rootfs}"], "--volume")]
#[case::userns_word(&["--userns", "sideways", "{rootfs}"], "--userns")]
#[case::workdir_relative(&["-w", "relative", "{rootfs}"], "not absolute")]
#[case::hostname_bad(&["--hostname", "bad_host!", "{rootfs}"], "hostname")]
#[case::net_unknown(&["--net", "weird", "{rootfs}"], "--net")]
fn bad_input_is_refused_before_anything_is_created(#[case] args: &[&str], #[case] culprit: &str) {
    let env = engine("bad");
    let scratch = tempfile::tempdir().unwrap();
    let file = scratch.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let empty = scratch.path().join("empty-dir");
    std::fs::create_dir(&empty).unwrap();
    let args: Vec<String> = args
        .iter()
        .map(|a| {
            a.replace("{rootfs}", rootfs())
                .replace("{file}", file.to_str().unwrap())
                .replace("{empty}", empty.to_str().unwrap())
        })
        .collect();
    // Never the default bridge network: this is the machine's namespace.
    let net: &[&str] = if args.iter().any(|a| a == "--net") {
        &[]
    } else {
        &["--net", "none"]
    };
    let a = env
        .cmd()
        .arg("run")
        .args(net)
        .args(&args)
        .args(["--", "true"])
        .assert()
        .code(125)
        .stdout("");
    assert_one_line_naming(&stderr(&a), culprit);
    env.assert_clean();
}

/// One line (beside the note about resource control) that names `culprit`,
/// with no panic and no debug output.
fn assert_one_line_naming(err: &str, culprit: &str) {
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| !l.contains("no resource control"))
        .collect();
    assert_eq!(lines.len(), 1, "not one line: {err}");
    assert!(
        lines[0].contains(culprit),
        "{err:?} should name {culprit:?}"
    );
    assert!(!err.contains("panicked") && !err.contains("Os {"), "{err}");
}

/// A bad flag is an engine error too, not clap's 2. (clap's message is
/// several lines, so it is not in the table above.)
#[test]
fn an_unknown_flag_is_an_engine_error() {
    let env = engine("flag");
    env.cmd()
        .args([
            "run",
            "--net",
            "none",
            "--no-such-flag",
            rootfs(),
            "--",
            "true",
        ])
        .assert()
        .code(125)
        .stderr(predicate::str::contains("--no-such-flag"));
    env.assert_clean();
}

/// The overlay's options name only /proc/self/fd paths, so a rootfs path
/// holding ',' or ':' (which overlayfs options cannot carry) runs too.
#[test]
fn a_rootfs_path_with_overlayfs_separators_runs() {
    let env = engine("odd");
    let (_scratch, odd) = rootfs_copy("odd,na:me");
    run(&env, &[odd.to_str().unwrap(), "--", "true"]).code(0);
    env.assert_clean();
    run(
        &env,
        &["--write-through", odd.to_str().unwrap(), "--", "true"],
    )
    .code(0);
    env.assert_clean();
}

#[test]
fn not_root_is_refused_before_anything_is_made() {
    let env = engine("notroot");
    let a = assert_cmd::Command::new(quote::require("setpriv", "util-linux"))
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", ENGINE])
        .args(["run", "--net", "none", rootfs(), "--", "true"])
        .envs(env.envs())
        .timeout(LONG)
        .assert()
        .code(125);
    assert_one_line_naming(&stderr(&a), "needs root");
    env.assert_clean();
}

#[test]
fn limits_follow_what_the_host_offers() {
    let env = engine("limits");
    let args = [
        "--cpus",
        "0.5",
        "--memory",
        "50M",
        "--pids-limit",
        "64",
        "--name",
        "lim",
        rootfs(),
        "--",
    ];
    let script = "cat /sys/fs/cgroup/cpu.max /sys/fs/cgroup/memory.max /sys/fs/cgroup/memory.swap.max /sys/fs/cgroup/pids.max";
    let a = run(&env, &[&args[..], &["sh", "-c", script]].concat());
    match testkit::cgroup::v2_limits() {
        // cgroup v2 (a GitHub runner, the VM): the container sees its own
        // leaf, through its cgroup namespace, with the limits written.
        Ok(()) => {
            a.code(0).stdout("50000 100000\n52428800\n0\n64\n");
        }
        // v1 or hybrid (these machines): a limit is an error, and without
        // one the run is quiet (only --verbose says there is no resource
        // control: tests/cli.rs).
        Err(_) => {
            a.code(125).stderr(predicate::str::contains("cgroup v2"));
            run(&env, &[rootfs(), "--", "true"]).code(0).stderr("");
        }
    }
    env.assert_clean();
}

#[test]
fn a_sigkilled_engine_is_cleaned_up_by_the_next_invocation() {
    let env = engine("crash");
    let mut c = Running::run(
        &env,
        &[
            "--name",
            "victim",
            rootfs(),
            "--",
            "sh",
            "-c",
            "echo ready; read x || true",
        ],
    );
    c.expect("ready");
    let pid = container_pid(&env, "victim");
    c.signal(Signal::SIGKILL); // to the engine
    c.wait();
    // The container dies with its supervisor.
    wait::pid_gone(pid, SHORT).unwrap();
    assert!(
        !env.state_files().is_empty(),
        "the crash should leave state behind"
    );
    run(&env, &["--name", "next", rootfs(), "--", "true"]).code(0);
    env.assert_clean();
}

/// A process on this host whose command line is exactly `words`.
fn process_running(words: &[&str]) -> bool {
    let want = words.join("\0") + "\0";
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .any(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == want.as_bytes()))
}

/// A tmux server of the test's own running one shell command on a
/// 100x30 terminal; killed (with the engine in it) when dropped, even when
/// an assertion fails.
struct Tmux {
    bin: std::path::PathBuf,
    socket: String,
}

impl Tmux {
    fn start(env: &Engine, label: &str, engine_args: &str) -> Tmux {
        let tmux = Tmux {
            bin: quote::require("tmux", "tmux"),
            socket: format!("engine-{label}-{}", std::process::id()),
        };
        let envs: Vec<String> = env
            .envs()
            .iter()
            .map(|(k, v)| format!("{k}={}", quote::quote(v.to_str().unwrap())))
            .collect();
        let cmd = format!(
            "{} {} {engine_args}; echo ENGINE-EXIT=$?; sleep 30",
            envs.join(" "),
            quote::quote(ENGINE),
        );
        tmux.run(&[
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
        tmux
    }

    fn run(&self, args: &[&str]) -> String {
        let out = assert_cmd::Command::new(&self.bin)
            .args(["-L", &self.socket])
            .args(args)
            .timeout(Duration::from_secs(10))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &str) {
        self.run(&["send-keys", "-t", "t", keys, "Enter"]);
    }

    fn wait_screen(&self, needle: &str) {
        wait::until(SHORT, needle, || {
            self.run(&["capture-pane", "-p", "-t", "t"])
                .contains(needle)
                .then_some(())
        });
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.run(&["kill-server"]);
    }
}

#[test]
fn tty_gives_a_shell_with_job_control_and_window_size() {
    let env = engine("tty");
    let args = format!("run --net none -it --name tty {}", quote::quote(rootfs()));
    let tmux = Tmux::start(&env, "tty", &args);
    tmux.wait_screen("/ #");
    tmux.keys("stty size; tty");
    tmux.wait_screen("30 100");
    // The new size arrives with SIGWINCH: wait for it inside, boundedly.
    tmux.run(&["resize-window", "-t", "t", "-x", "90", "-y", "25"]);
    tmux.keys("until [ \"$(stty size)\" = '25 90' ]; do sleep 0.05; done; echo RESIZED-$((20+5))");
    tmux.wait_screen("RESIZED-25");
    // Ctrl-C reaches the foreground job, not the engine.
    tmux.keys("sleep 1017");
    wait::until(SHORT, "sleep 1017 in the container", || {
        process_running(&["sleep", "1017"]).then_some(())
    });
    tmux.run(&["send-keys", "-t", "t", "C-c"]);
    tmux.keys("echo still-$((40+2))");
    tmux.wait_screen("still-42");
    tmux.keys("exit 5");
    tmux.wait_screen("ENGINE-EXIT=5");
    drop(tmux);
    env.assert_clean();
}

/// docker's `exec -it NAME sh` typed on a real terminal: a pty of the
/// container's own, the terminal's size, Ctrl-C to the exec's foreground
/// job, and the shell's exit status as the engine's.
#[test]
fn exec_it_gives_a_shell_on_a_pty_of_the_container() {
    let env = engine("exec-tty");
    detach(&env, "target", "while :; do sleep 0.1; done");
    let tmux = Tmux::start(&env, "exec-tty", "exec -it target sh");
    tmux.wait_screen("/ #");
    tmux.keys("stty size; tty; echo pid1-$(cat /proc/1/comm)");
    tmux.wait_screen("30 100");
    // The container's own devpts: a host pty there is "not a tty".
    tmux.wait_screen("/dev/pts/0");
    tmux.wait_screen("pid1-sh");
    tmux.keys("sleep 1018");
    wait::until(SHORT, "sleep 1018 in the container", || {
        process_running(&["sleep", "1018"]).then_some(())
    });
    tmux.run(&["send-keys", "-t", "t", "C-c"]);
    tmux.keys("echo still-$((40+3))");
    tmux.wait_screen("still-43");
    tmux.keys("exit 3");
    tmux.wait_screen("ENGINE-EXIT=3");
    drop(tmux);
    env.cmd().args(["rm", "-f", "target"]).assert().code(0);
    env.assert_clean();
}

/// Sooner than the engine's kill of what outlives a hangup (10 s): an end
/// within it is the hangup's own.
const HANGUP: Duration = Duration::from_secs(5);

/// The first child of `pid`, once it has one.
fn first_child(pid: i32) -> i32 {
    let children = format!("/proc/{pid}/task/{pid}/children");
    wait::until(SHORT, &children, || {
        std::fs::read_to_string(&children)
            .ok()?
            .split_whitespace()
            .find_map(|p| p.parse().ok())
    })
}

/// Waits until `pid` has exited (a zombie has), at most [`HANGUP`].
fn ended_after_hangup(pid: i32, what: &str) {
    wait::until(HANGUP, what, || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat.rfind(')').and_then(|i| stat[i + 2..].chars().next());
        matches!(state, None | Some('Z')).then_some(())
    });
}

/// `run -it`'s terminal hangs up (its tmux session is killed): as with
/// ssh, the container's terminal hangs up too, so its shell ends, and the
/// engine ends and removes everything; nothing runs on orphaned.
#[test]
fn run_it_ends_when_its_terminal_hangs_up() {
    let env = engine("hangup");
    let args = format!("run --net none -it --name hup {}", quote::quote(rootfs()));
    let tmux = Tmux::start(&env, "hangup", &args);
    tmux.wait_screen("/ #");
    let pid1 = container_pid(&env, "hup");
    let record = std::fs::read(env.state_dir().join("hup.json")).unwrap();
    let record: serde_json::Value = serde_json::from_slice(&record).unwrap();
    let engine_pid = record["engine_pid"].as_i64().unwrap() as i32;
    tmux.run(&["kill-session", "-t", "t"]);
    ended_after_hangup(pid1, "the container's end after the hangup");
    ended_after_hangup(engine_pid, "the engine's end after the hangup");
    drop(tmux);
    assert_eq!(env.state_files(), Vec::<String>::new());
    env.assert_clean();
}

/// Likewise `exec -it`, with a command that ignores SIGHUP (as `nohup`
/// makes it) and reads its terminal: the end of its input ends it, then
/// its engine; the container runs on.
#[test]
fn exec_it_ends_when_its_terminal_hangs_up() {
    let env = engine("exec-hangup");
    detach(&env, "target", "while :; do sleep 0.1; done");
    let pid1 = container_pid(&env, "target");
    let tmux = Tmux::start(
        &env,
        "exec-hangup",
        "exec -it target sh -c \"trap '' HUP; echo READY; read x\"",
    );
    tmux.wait_screen("READY");
    // The pane's shell runs the engine, which runs the command.
    let pane: i32 = tmux
        .run(&["display", "-p", "-t", "t", "#{pane_pid}"])
        .trim()
        .parse()
        .unwrap();
    let engine_pid = first_child(pane);
    let shell = first_child(engine_pid);
    tmux.run(&["kill-session", "-t", "t"]);
    ended_after_hangup(shell, "the exec's end after the hangup");
    ended_after_hangup(engine_pid, "the exec's engine's end after the hangup");
    drop(tmux);
    assert!(std::path::Path::new(&format!("/proc/{pid1}")).exists());
    env.cmd().args(["rm", "-f", "target"]).assert().code(0);
    env.assert_clean();
}

#[test]
fn a_rootfs_for_another_architecture_is_refused() {
    let env = engine("arch");
    let scratch = tempfile::tempdir().unwrap();
    let dest = scratch.path().join("arm64-busybox");
    env.cmd()
        .env("ENGINE_BUSYBOX", arm64_busybox())
        .args(["rootfs", "pull", "busybox", "--arch", "arm64"])
        .arg(&dest)
        .assert()
        .success();
    let has_arm64_handler = std::fs::read_dir("/proc/sys/fs/binfmt_misc")
        .map(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().contains("aarch64"))
        })
        .unwrap_or(false);
    let a = run(
        &env,
        &[dest.to_str().unwrap(), "--", "sh", "-c", "echo ran"],
    );
    if cfg!(target_arch = "aarch64") || has_arm64_handler {
        // Native, or qemu-user runs it: the check must not refuse what the host can run.
        a.code(0).stdout("ran\n");
    } else {
        let a = a.code(125);
        let err = stderr(&a);
        assert_one_line_naming(&err, "binfmt_misc");
        assert!(err.contains("arm64") && err.contains("amd64"), "{err}");
        assert!(!err.contains("Exec format error"), "{err}");
    }
    env.assert_clean();
}

#[test]
fn fixture_lies_where_a_mapped_root_can_reach_it() {
    busybox::check_traversable(Path::new(rootfs()).join("bin/busybox").as_path())
        .unwrap_or_else(|e| panic!("{e}"));
}
