//! Detached containers outlive their run: the record of one that ended is
//! kept (status, exit code, times, log) until `engine rm`, and its name
//! with it (`--net none`: nothing of the host's network is touched).

mod common;
use common::*;

/// `ps -a --format json`, parsed.
fn ps_all(env: &Engine, extra: &[&str]) -> Vec<serde_json::Value> {
    let a = env
        .cmd()
        .args(["ps", "-a", "--format", "json"])
        .args(extra)
        .assert()
        .code(0);
    let rows: serde_json::Value = serde_json::from_slice(&a.get_output().stdout).unwrap();
    rows.as_array().unwrap().clone()
}

/// The exit status, `ps -a`, `inspect`, `logs` of an ended detached
/// container; its name held until `rm`, which removes record and log.
#[test]
fn an_exited_detached_container_is_kept_until_rm() {
    let env = engine("kept");
    detach(&env, "three", "echo out; echo err >&2; sleep 0.3; exit 3");
    // `wait` blocks while it runs, then prints its status.
    env.cmd()
        .args(["wait", "three"])
        .assert()
        .code(0)
        .stdout("3\n");
    let rows = ps_all(&env, &[]);
    assert_eq!(rows.len(), 1, "{rows:?}");
    let r = &rows[0];
    assert_eq!(r["name"], "three");
    assert_eq!(r["status"], "exited");
    assert_eq!(r["exit_code"], 3);
    let (started, finished) = (
        r["started"].as_u64().unwrap(),
        r["finished"].as_u64().unwrap(),
    );
    assert!(started > 0 && finished >= started, "{r}");
    // Released: no address, no veth, no cgroup, no process.
    assert_eq!(r["pid"], 0);
    assert!(r["ip"].is_null() && r["veth"].is_null() && r["cgroup"].is_null());
    // Plain `ps` lists running ones only; the table says docker's status.
    env.cmd().args(["ps", "-q"]).assert().code(0).stdout("");
    let table = stdout(&env.cmd().args(["ps", "-a"]).assert().code(0));
    let line = table.lines().nth(1).unwrap_or_default();
    assert!(
        line.starts_with("three ") && line.contains("Exited (3) ") && line.contains(" ago"),
        "{table}"
    );
    let a = env.cmd().args(["inspect", "three"]).assert().code(0);
    let records: serde_json::Value = serde_json::from_slice(&a.get_output().stdout).unwrap();
    assert_eq!(records[0]["name"], "three");
    assert_eq!(records[0]["exit_code"], 3);
    assert_eq!(
        records[0]["command"],
        serde_json::json!(["sh", "-c", "echo out; echo err >&2; sleep 0.3; exit 3"])
    );
    env.cmd()
        .args(["logs", "three"])
        .assert()
        .code(0)
        .stdout("out\nerr\n");
    // Signals and exec reach only running containers.
    env.cmd()
        .args(["exec", "three", "true"])
        .assert()
        .code(125)
        .stderr(predicate::str::contains(
            "container three is not running: it exited with status 3",
        ));
    // The name is held until rm.
    env.cmd()
        .args(detached_args(rootfs(), "three", &["true"]))
        .assert()
        .code(125)
        .stderr(predicate::str::contains("engine rm three"));
    env.cmd()
        .args(["rm", "three"])
        .assert()
        .code(0)
        .stdout("three\n");
    assert!(!env.state_dir().join("three.json").exists());
    assert!(!env.state_dir().join("three.log").exists());
    assert_eq!(ps_all(&env, &[]).len(), 0);
    // Then the name is free again (here for a foreground run, not kept).
    run(&env, &["--name", "three", rootfs(), "true"]).code(0);
    env.assert_clean();
}

/// `stop` and `kill` end a container whose record is kept with the status
/// they caused; `rm` of a running one is refused, `rm -f` stops it.
#[test]
fn stop_kill_and_rm_force_keep_or_remove_the_record() {
    let env = engine("stoprm");
    detach(&env, "a", "sleep 60");
    detach(&env, "b", "sleep 60");
    detach(&env, "c", "sleep 60");
    env.cmd()
        .args(["rm", "a"])
        .assert()
        .code(125)
        .stderr(predicate::str::contains(
            "container a is running: stop it first with `engine stop a`, or use `engine rm -f a`",
        ));
    env.cmd().args(["stop", "-t", "0", "a"]).assert().code(0);
    env.cmd().args(["kill", "b"]).assert().code(0);
    env.cmd().args(["wait", "a"]).assert().stdout("137\n");
    env.cmd().args(["wait", "b"]).assert().stdout("137\n");
    // Stopping an exited container succeeds, as with docker.
    env.cmd().args(["stop", "a"]).assert().code(0).stdout("a\n");
    let names = |args: &[&str]| stdout(&env.cmd().arg("ps").args(args).assert().code(0));
    assert_eq!(names(&["-q"]), "c\n");
    assert_eq!(names(&["-a", "-q"]), "a\nb\nc\n");
    assert_eq!(names(&["-q", "--filter", "status=exited"]), "a\nb\n");
    assert_eq!(names(&["-a", "-q", "--filter", "name=b"]), "b\n");
    assert_eq!(
        names(&["-q", "--filter", "status=exited", "--filter", "name=a"]),
        "a\n"
    );
    // rm -f stops a running one, then removes it with the exited ones.
    env.cmd()
        .args(["rm", "-f", "a", "b", "c"])
        .assert()
        .code(0)
        .stdout("a\nb\nc\n");
    assert_eq!(env.state_files(), Vec::<String>::new());
    let logs: Vec<String> = std::fs::read_dir(env.state_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|f| f.contains(".log"))
        .collect();
    assert!(logs.is_empty(), "logs left: {logs:?}");
    env.assert_clean();
}

/// `run -d --rm`: nothing is kept; `wait` on it says why it has no status.
#[test]
fn a_detached_rm_container_is_not_kept() {
    let env = engine("dashrm");
    env.cmd()
        .args(["run", "-d", "--rm", "--net", "none", "--name", "gone"])
        .args([rootfs(), "sh", "-c", "sleep 0.3; exit 3"])
        .assert()
        .code(0);
    env.cmd()
        .args(["wait", "gone"])
        .assert()
        .code(125)
        .stderr(predicate::str::contains(
            "container gone ended without keeping its exit status",
        ));
    assert_eq!(ps_all(&env, &[]).len(), 0);
    env.assert_clean();
}

/// Unknown names and bad filters: one sentence, exit 125, nothing changed.
#[test]
fn bad_input_of_the_new_verbs_is_one_sentence() {
    let env = engine("persistbad");
    detach(&env, "keep", "exit 0");
    env.cmd().args(["wait", "keep"]).assert().stdout("0\n");
    for (args, want) in [
        (&["wait", "ghost"][..], "no such container: ghost"),
        (&["inspect", "ghost"], "no such container: ghost"),
        (&["rm", "keep", "ghost"], "no such container: ghost"),
        (&["rm", "../x"], "../x"),
        (
            &["ps", "--filter", "colour=red"],
            "unknown filter \"colour=red\"",
        ),
        (
            &["ps", "--filter", "status=paused"],
            "use status=running or status=exited",
        ),
    ] {
        let a = env.cmd().args(args).assert().code(125);
        let err = stderr(&a);
        assert!(
            err.starts_with("engine: ") && err.contains(want) && err.lines().count() == 1,
            "{args:?}: {err}"
        );
    }
    // `rm keep ghost` checked every name first: keep is still there.
    assert!(env.state_dir().join("keep.json").exists());
    env.cmd().args(["rm", "keep"]).assert().code(0);
    env.assert_clean();
}

/// What an exited container held goes when it ends, though its record
/// stays: its address (another container takes it with `--ip`), its host
/// IDs' lease, its veth (in a private network namespace of this test).
#[test]
fn an_exited_container_holds_its_name_only_and_teardown_takes_it() {
    busybox::rootfs(); // built before leaving the host's namespace
    testkit::netns::enter_private_or_panic();
    let env = engine("held").with_network("br-held", "10.77.3.0/24");
    env.cmd()
        .args(["run", "-d", "--ip", "10.77.3.9", "--name", "first"])
        .args([rootfs(), "sh", "-c", "exit 0"])
        .assert()
        .code(0);
    env.cmd().args(["wait", "first"]).assert().stdout("0\n");
    assert_eq!(id_leases(env.state_dir()), Vec::new());
    let a = env
        .cmd()
        .args(["run", "--ip", "10.77.3.9", "--name", "second"])
        .args([rootfs(), "ip", "-o", "-4", "addr", "show", "eth0"])
        .assert()
        .code(0);
    assert!(stdout(&a).contains("10.77.3.9/24"), "{}", stdout(&a));
    // `teardown` takes an ended container's record with its log: nothing
    // of the engine's stays on the host.
    env.cmd().args(["wait", "second"]).assert().code(125);
    assert_eq!(ps_all(&env, &[]).len(), 1);
    env.cmd().args(["teardown", "--force"]).assert().code(0);
    assert_eq!(ps_all(&env, &[]).len(), 0);
    wait::until(SHORT, "the veths to vanish", || {
        let out = std::process::Command::new(quote::require("ip", "iproute2"))
            .args(["-o", "link"])
            .output()
            .unwrap();
        (!String::from_utf8_lossy(&out.stdout).contains("ve-")).then_some(())
    });
    assert_eq!(env.state_files(), Vec::<String>::new());
    env.assert_clean();
}

/// `engine start` runs an exited detached container again with the same
/// settings (name, command, environment); its log goes on. Its writable
/// layer is a new one: the layer lives in the container's tmpfs, which
/// went with it (docker keeps it; the engine does not yet).
#[test]
fn start_runs_an_exited_container_again() {
    let env = engine("restart");
    env.cmd()
        .args(["run", "-d", "--net", "none", "-e", "WHO=again", "--name", "re"])
        .args([rootfs(), "sh", "-c"])
        .arg("[ -e /layer-mark ] && echo layer-kept; touch /layer-mark; echo run $WHO $(hostname); exit 3")
        .assert()
        .code(0);
    env.cmd().args(["wait", "re"]).assert().stdout("3\n");
    env.cmd()
        .args(["start", "re"])
        .assert()
        .code(0)
        .stdout("re\n");
    env.cmd().args(["wait", "re"]).assert().stdout("3\n");
    env.cmd()
        .args(["logs", "re"])
        .assert()
        .code(0)
        .stdout("run again re\nrun again re\n");
    // Only one record, exited again; then rm, and nothing is left.
    assert_eq!(ps_all(&env, &[]).len(), 1);
    env.cmd()
        .args(["start", "ghost"])
        .assert()
        .code(125)
        .stderr(predicate::str::contains("no such container: ghost"));
    env.cmd().args(["rm", "re"]).assert().code(0);
    assert_eq!(env.state_files(), Vec::<String>::new());
    assert!(!env.state_dir().join("re.log").exists());
    env.assert_clean();
}
