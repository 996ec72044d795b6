//! The command line as docker users type it (issue 21), through the
//! binary: `run [OPTIONS] ROOTFS [COMMAND...]` with no `--` needed,
//! `--name`/`--ip`, `-i -t -d --rm`, `exec NAME COMMAND...`, the seed's
//! `container_engine ROOTFS NAME IP`, `version`, `completion`, `man`,
//! suggestions for mistyped verbs and flags, and a run that says nothing
//! of the engine's own when nothing went wrong.

mod common;
use common::*;

/// A refused command line: exit 125, nothing on stdout, one line on stderr
/// naming `culprit`, and nothing created.
fn refused(env: &Engine, args: &[&str], culprit: &str) -> String {
    let a = env.cmd().args(args).assert().code(125).stdout("");
    let err = stderr(&a);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "not one line: {err}");
    assert!(lines[0].starts_with("engine: "), "{err}");
    assert!(
        lines[0].contains(culprit),
        "{err:?} should name {culprit:?}"
    );
    assert!(!err.contains("tip:") && !err.contains("Usage:"), "{err}");
    env.assert_clean();
    err
}

#[test]
fn everything_after_the_rootfs_is_the_command() {
    let env = engine("cmd");
    // The catalog name, as the issue typed it.
    let a = run(&env, &["busybox", "echo", "hello"]).code(0);
    assert_eq!(stdout(&a), "hello\n");
    // Words that are options of `engine run` belong to the command.
    let a = run(
        &env,
        &[
            rootfs(),
            "sh",
            "-c",
            "echo \"$0 $1 $2\"",
            "-d",
            "--help",
            "--",
        ],
    )
    .code(0);
    assert_eq!(stdout(&a), "-d --help --\n");
    // Even a first word that is one of `run`'s own flags: `-d` is the
    // command (not found: 127), not a detached run that prints a name.
    for flag in ["-d", "--name"] {
        let a = run(&env, &[rootfs(), flag, "x"]).code(127).stdout("");
        assert!(stderr(&a).contains(flag), "{}", stderr(&a));
    }
    // A `--` after the rootfs is still accepted, and only that one dropped.
    let a = run(&env, &[rootfs(), "--", "echo", "a", "--", "b"]).code(0);
    assert_eq!(stdout(&a), "a -- b\n");
    // No command: the rootfs's shell, which reads its commands from stdin.
    let a = env
        .cmd()
        .args(["run", "--net", "none", rootfs()])
        .write_stdin("echo from-stdin; exit 3\n")
        .assert()
        .code(3);
    assert_eq!(stdout(&a), "from-stdin\n");
    env.assert_clean();
}

#[test]
fn name_is_an_option_and_the_hostname() {
    let env = engine("name");
    let a = run(&env, &["--name", "web1", rootfs(), "hostname"]).code(0);
    assert_eq!(stdout(&a), "web1\n");
    let a = run(&env, &["--name=web2", rootfs(), "hostname"]).code(0);
    assert_eq!(stdout(&a), "web2\n");
    // What the seed's positional NAME swallowed before: `sh` is the command.
    let a = env
        .cmd()
        .args(["run", "--net", "none", rootfs(), "sh"])
        .write_stdin("hostname\n")
        .assert()
        .code(0);
    let host = stdout(&a);
    assert!(
        host.starts_with("ctr-"),
        "a generated name, not `sh`: {host}"
    );
    env.assert_clean();
}

#[test]
fn docker_s_i_t_rm_are_accepted() {
    let env = engine("itrm");
    let a = run(&env, &["-i", "--rm", rootfs(), "echo", "plain"]).code(0);
    assert_eq!(stdout(&a), "plain\n");
    // -t: a terminal of its own even though stdin is not one.
    let a = run(
        &env,
        &["-it", "--rm", rootfs(), "sh", "-c", "[ -t 1 ] && echo tty"],
    )
    .code(0);
    assert_eq!(stdout(&a).trim_end(), "tty");
    let a = run(
        &env,
        &["-i", rootfs(), "sh", "-c", "[ -t 1 ] || echo no-tty"],
    )
    .code(0);
    assert_eq!(stdout(&a), "no-tty\n");
    env.assert_clean();
}

#[test]
fn detached_with_rm_and_exec_without_dash_dash() {
    let env = engine("dexec");
    env.cmd()
        .args([
            "run",
            "-d",
            "--rm",
            "--net",
            "none",
            "--name",
            "svc",
            rootfs(),
        ])
        .args(["sh", "-c", "echo up; sleep 60"])
        .assert()
        .code(0)
        .stdout("svc\n");
    // `exec NAME COMMAND...`: the words after the name, flags included,
    // are the command's.
    let a = env
        .cmd()
        .args([
            "exec",
            "-e",
            "K=v",
            "svc",
            "sh",
            "-c",
            "echo \"$K $0\"",
            "-t",
        ])
        .assert()
        .code(0);
    assert_eq!(stdout(&a), "v -t\n");
    let a = env
        .cmd()
        .args(["exec", "-i", "svc", "hostname"])
        .assert()
        .code(0);
    assert_eq!(stdout(&a), "svc\n");
    let a = env
        .cmd()
        .args(["exec", "svc", "--", "sh", "-c", "exit 4"])
        .assert()
        .code(4);
    assert_eq!(stdout(&a), "");
    env.cmd().args(["stop", "-t", "1", "svc"]).assert().code(0);
    wait::until(SHORT, "svc's record to go", || {
        env.state_files().is_empty().then_some(())
    });
}

#[rstest::rstest]
#[case::bad_name(&["run", "--net", "none", "--name", "bad!", "{rootfs}", "true"], "bad!")]
#[case::bad_ip(&["run", "--net", "none", "--ip", "300.1.2.3", "{rootfs}", "true"], "300.1.2.3")]
#[case::ip_of_none(&["run", "--net", "none", "--ip", "10.1.2.3", "{rootfs}", "true"], "10.1.2.3")]
#[case::name_without_value(&["run", "--net", "none", "--name"], "--name")]
#[case::no_rootfs(&["run", "--net", "none"], "ROOTFS")]
#[case::mistyped_flag(&["run", "--nmae", "x", "{rootfs}", "true"], "did you mean '--name'?")]
#[case::unknown_short_flag(&["run", "-X", "{rootfs}", "true"], "'-X'")]
#[case::mistyped_verb(&["rnu", "{rootfs}"], "did you mean 'run'?")]
#[case::other_verb(&["stpo", "x"], "did you mean 'stop'?")]
#[case::exec_without_command(&["exec", "svc"], "COMMAND")]
#[case::exec_mistyped_flag(&["exec", "--wrokdir", "/", "svc", "true"], "did you mean '--workdir'?")]
#[case::completion_shell(&["completion", "tcsh"], "bash, zsh, fish")]
fn bad_command_lines_are_one_sentence_and_create_nothing(
    #[case] args: &[&str],
    #[case] culprit: &str,
) {
    let env = engine("bad");
    let args: Vec<&str> = args
        .iter()
        .map(|a| if *a == "{rootfs}" { rootfs() } else { a })
        .collect();
    refused(&env, &args, culprit);
}

#[test]
fn version_says_what_runs_where() {
    let env = engine("ver");
    let a = env.cmd().arg("version").assert().code(0);
    let out = stdout(&a);
    let first = out.lines().next().unwrap_or_default();
    assert_eq!(first, format!("engine {}", env!("CARGO_PKG_VERSION")));
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert!(out.contains(release.trim()), "{out}");
    assert!(out.contains(std::env::consts::ARCH), "{out}");
}

#[test]
fn completion_scripts_for_bash_zsh_and_fish() {
    let env = engine("compl");
    // fish writes a long option as `-l name`.
    for (shell, long) in [("bash", "--"), ("zsh", "--"), ("fish", "-l ")] {
        let a = env.cmd().args(["completion", shell]).assert().code(0);
        let script = stdout(&a);
        let [name, ip, rm] = ["name", "ip", "rm"].map(|o| format!("{long}{o}"));
        for word in ["engine", "run", "completion", &name, &ip, &rm] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
    }
    // The bash script parses as bash.
    let a = env.cmd().args(["completion", "bash"]).assert().code(0);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("engine.bash");
    std::fs::write(&file, stdout(&a)).unwrap();
    assert_cmd::Command::new(quote::require("bash", "bash"))
        .arg("-n")
        .arg(&file)
        .timeout(SHORT)
        .assert()
        .code(0);
}

#[test]
fn man_pages_do_not_collide_with_openssl_s_engine() {
    let env = engine("man");
    let dir = tempfile::tempdir().unwrap();
    let a = env.cmd().arg("man").arg(dir.path()).assert().code(0);
    let mut written: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    written.sort();
    assert_eq!(stdout(&a).lines().count(), written.len());
    for page in [
        "engine-ctr.1",
        "engine-ctr-run.1",
        "engine-ctr-exec.1",
        "engine-ctr-rootfs-pull.1",
    ] {
        assert!(
            written.iter().any(|w| w == page),
            "no {page} in {written:?}"
        );
    }
    assert!(!written.iter().any(|w| w == "engine.1"), "{written:?}");
    let run = std::fs::read_to_string(dir.path().join("engine-ctr-run.1")).unwrap();
    assert!(
        run.starts_with(".ie") || run.contains(".TH ENGINE-CTR-RUN 1"),
        "{run}"
    );
    assert!(
        run.contains("engine run") && run.contains("\\-\\-name"),
        "{run}"
    );
    // Into a directory that is not there: one sentence, nothing written.
    let missing = dir.path().join("missing");
    refused(&env, &["man", missing.to_str().unwrap()], "missing");
    assert!(!missing.exists());
}

/// Without cgroup v2 a run that asked for no limit says nothing of its
/// own; `--verbose` tells the steps in sentences, not Rust debug text.
#[test]
fn a_plain_run_is_quiet_and_verbose_speaks_in_sentences() {
    let env = engine("quiet");
    let a = run(&env, &[rootfs(), "echo", "out"]).code(0);
    assert_eq!(stdout(&a), "out\n");
    assert_eq!(stderr(&a), "", "a plain run printed something of its own");
    let a = run(&env, &["--verbose", "--name", "talk", rootfs(), "true"]).code(0);
    let err = stderr(&a);
    assert!(
        err.contains("reserved the name talk"),
        "--verbose should say what it reserved: {err}"
    );
    assert!(err.contains("started true in talk"), "{err}");
    for debug in ["(None)", "Some(", "Os {"] {
        assert!(!err.contains(debug), "debug text {debug:?} in {err}");
    }
    let no_cgroup_v2 = testkit::cgroup::v2_limits().is_err();
    assert_eq!(
        err.contains("without resource control"),
        no_cgroup_v2,
        "--verbose says whether the container has resource control: {err}"
    );
    env.assert_clean();
}

/// The seed's command line, `container_engine ROOTFS NAME IP`: a shell with
/// that hostname and that address on the bridge (in a private netns).
#[test]
fn the_seed_s_command_line_runs_a_shell_with_name_and_address() {
    busybox::rootfs();
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("container_engine");
    std::os::unix::fs::symlink(ENGINE, &seed).unwrap();
    testkit::netns::enter_private_or_panic();
    let env = Engine::new(&seed, "seed").with_network("br-seed", "10.93.0.0/24");
    let a = env
        .cmd()
        .args([rootfs(), "box1", "10.93.0.7"])
        .write_stdin("hostname; ip -4 -o addr show eth0; exit 5\n")
        .assert()
        .code(5);
    let out = stdout(&a);
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("box1"), "{out}");
    assert!(
        lines
            .next()
            .is_some_and(|l| l.contains("inet 10.93.0.7/24")),
        "{out}"
    );
    assert_eq!(stderr(&a), "");
    // Two or four words: the usage, one line, exit 125, nothing created.
    for args in [
        &[rootfs(), "box1"][..],
        &[rootfs(), "box1", "10.93.0.8", "sh"],
    ] {
        let a = env.cmd().args(args).assert().code(125).stdout("");
        let err = stderr(&a);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains("usage: container_engine <root_fs> <container_name> <container_ip>"),
            "{err}"
        );
    }
    // Bad input is the engine's sentence, under the seed's name.
    let a = env
        .cmd()
        .args([rootfs(), "bad!", "10.93.0.9"])
        .assert()
        .code(125);
    assert!(stderr(&a).starts_with("container_engine: invalid container name"));
    env.cmd().arg("--help").assert().code(0);
    env.assert_clean();
    assert_cmd::Command::new(ENGINE)
        .envs(env.envs())
        .arg("teardown")
        .timeout(SHORT)
        .assert()
        .code(0);
}
