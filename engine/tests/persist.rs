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
    for dir in [env.state_dir(), env.data_dir()] {
        assert!(!dir.join("three.json").exists());
        assert!(!dir.join("three.log").exists());
    }
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
    let logs: Vec<String> = [env.state_dir(), env.data_dir()]
        .iter()
        .flat_map(|d| std::fs::read_dir(d).unwrap().flatten())
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
            "use status=running, status=exited or status=restarting",
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
    assert!(env.data_dir().join("keep.json").exists());
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
/// settings (name, command, environment) and, as docker, the same writable
/// layer (NAME.layer in the data directory); its log goes on. `rm` removes
/// the layer with the record.
#[test]
fn start_runs_an_exited_container_again() {
    let env = engine("restart");
    env.cmd()
        .args([
            "run",
            "-d",
            "--net",
            "none",
            "-e",
            "WHO=again",
            "--name",
            "re",
        ])
        .args([rootfs(), "sh", "-c"])
        .arg("echo a >> /f; echo run $WHO $(hostname) $(wc -l < /f); exit 3")
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
        .stdout("run again re 1\nrun again re 2\n");
    // Only one record, exited again; then rm, and nothing is left.
    assert_eq!(ps_all(&env, &[]).len(), 1);
    env.cmd()
        .args(["start", "ghost"])
        .assert()
        .code(125)
        .stderr(predicate::str::contains("no such container: ghost"));
    assert!(env.data_dir().join("re.layer/upper/f").exists());
    env.cmd().args(["rm", "re"]).assert().code(0);
    assert_eq!(env.state_files(), Vec::<String>::new());
    assert!(!env.data_dir().join("re.log").exists());
    assert!(!env.data_dir().join("re.layer").exists());
    env.assert_clean();
}

/// The stat fields of a process after its command: state, then ppid.
fn state_and_ppid(pid: i64) -> Option<(char, i64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut after = stat[stat.rfind(')')? + 2..].split(' ');
    let state = after.next()?.chars().next()?;
    Some((state, after.next()?.parse().ok()?))
}

/// A `-d` container outlives its supervisor: with the supervisor SIGKILLed
/// while it runs, the container goes on under its monitor (the record's
/// engine_pid, which holds little memory), its output still reaches the
/// log, `stop` ends it, `wait` gives its status, and `rm` leaves nothing.
#[test]
fn a_detached_container_outlives_its_killed_supervisor() {
    let env = engine("monitor");
    detach(
        &env,
        "orphan",
        "echo before; trap 'echo after; exit 7' TERM; while :; do sleep 0.1; done",
    );
    let row = ps_all(&env, &[])[0].clone();
    let (monitor, pid1) = (
        row["engine_pid"].as_i64().unwrap(),
        row["pid"].as_i64().unwrap(),
    );
    // PID 1's parent is the supervisor, the monitor's child.
    let supervisor = state_and_ppid(pid1).unwrap().1;
    assert_eq!(state_and_ppid(supervisor).map(|s| s.1), Some(monitor));
    let status = std::fs::read_to_string(format!("/proc/{monitor}/status")).unwrap();
    let rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap();
    eprintln!("the monitor's VmRSS: {rss_kib} KiB");
    // Untrimmed, the debug build's monitor holds about 8 MiB.
    assert!(rss_kib < 6 * 1024, "the monitor holds {rss_kib} KiB");

    rustix::process::kill_process(
        rustix::process::Pid::from_raw(supervisor as i32).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    // A zombie (the monitor reaps it once the container ends).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while state_and_ppid(supervisor).is_some_and(|s| s.0 != 'Z') {
        assert!(
            std::time::Instant::now() < deadline,
            "the supervisor did not die"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(
        state_and_ppid(pid1).is_some_and(|(state, ppid)| state != 'Z' && ppid == monitor),
        "PID 1 is not alive under the monitor: {:?}",
        state_and_ppid(pid1)
    );
    let rows = ps_all(&env, &[]);
    assert_eq!(rows[0]["status"], "running", "{rows:?}");
    env.cmd()
        .args(["logs", "orphan"])
        .assert()
        .code(0)
        .stdout("before\n");
    env.cmd()
        .args(["stop", "-t", "5", "orphan"])
        .assert()
        .code(0);
    env.cmd()
        .args(["wait", "orphan"])
        .assert()
        .code(0)
        .stdout("7\n");
    // Written after the supervisor died: the monitor holds the log pipe.
    env.cmd()
        .args(["logs", "orphan"])
        .assert()
        .code(0)
        .stdout("before\nafter\n");
    let rows = ps_all(&env, &[]);
    assert_eq!(
        (&rows[0]["status"], &rows[0]["exit_code"]),
        (&"exited".into(), &7.into())
    );
    env.cmd().args(["rm", "orphan"]).assert().code(0);
    while state_and_ppid(monitor).is_some_and(|s| s.0 != 'Z') {
        assert!(
            std::time::Instant::now() < deadline + std::time::Duration::from_secs(5),
            "the monitor did not end"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(env.state_files(), Vec::<String>::new());
    env.assert_clean();
}

/// Polls `ps -a` until `name`'s row satisfies `done` (at most 10 s).
fn poll_row(
    env: &Engine,
    name: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let row = ps_all(env, &[]).into_iter().find(|r| r["name"] == name);
        if let Some(row) = row.filter(|r| done(r)) {
            return row;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{name} never got there"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// `on-failure:2` of a command that prints `run` and fails with 3: three
/// runs, then exited with 3, and no fourth run within `quiet_ms`.
fn ran_three_times_then_exited_3(
    env: &Engine,
    name: &str,
    log: impl Fn() -> String,
    quiet_ms: u64,
) {
    poll_row(env, name, |r| {
        r["status"] == "exited" && log().lines().count() == 3
    });
    std::thread::sleep(std::time::Duration::from_millis(quiet_ms));
    assert_eq!(log(), "run\nrun\nrun\n");
    let row = poll_row(env, name, |_| true);
    assert_eq!(
        (&row["status"], &row["exit_code"]),
        (&"exited".into(), &3.into())
    );
}

/// `--restart on-failure:2` of a command that fails: run three times in
/// all (docker's back-off: 100 ms, then 200 ms), then kept as exited.
#[test]
fn on_failure_2_runs_a_failing_command_three_times() {
    let env = engine("onfail");
    let log = run_with_policy(&env, "on-failure:2", "of", "echo run; exit 3");
    ran_three_times_then_exited_3(&env, "of", log, 800);
    env.cmd().args(["rm", "of"]).assert().code(0);
    assert_eq!(env.state_files(), Vec::<String>::new());
    env.assert_clean();
}

/// `--restart always` runs a command that ends again and again, showing
/// `Restarting (0) …` between runs; `stop` ends the policy.
#[test]
fn restart_always_until_stop() {
    let env = engine("always");
    let log = run_with_policy(&env, "always", "al", "echo run; sleep 0.3");
    poll_row(&env, "al", |_| log().lines().count() >= 2);
    // Between two runs (the back-off after the third run is 400 ms).
    let seen = poll_row(&env, "al", |r| r["status"] == "restarting");
    assert_eq!(seen["exit_code"], 0);
    let table = stdout(&env.cmd().args(["ps", "-a"]).assert().code(0));
    assert!(
        table.contains("Restarting (0)") || table.contains("Up "),
        "{table}"
    );
    env.cmd().args(["stop", "-t", "1", "al"]).assert().code(0);
    let runs = log().lines().count();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(log().lines().count(), runs, "run again after stop");
    let row = poll_row(&env, "al", |_| true);
    assert_eq!(row["status"], "exited");
    env.cmd().args(["rm", "al"]).assert().code(0);
    assert_eq!(env.state_files(), Vec::<String>::new());
    assert!(!env.state_dir().join("al.stopped").exists());
    env.assert_clean();
}

/// `run -d --restart POLICY --name NAME` of `sh -c script`, and a
/// reader of its log.
fn run_with_policy<'a>(
    env: &'a Engine,
    policy: &str,
    name: &'a str,
    script: &str,
) -> impl Fn() -> String + 'a {
    env.cmd()
        .args([
            "run",
            "-d",
            "--net",
            "none",
            "--restart",
            policy,
            "--name",
            name,
        ])
        .args([rootfs(), "sh", "-c", script])
        .assert()
        .code(0);
    move || stdout(&env.cmd().args(["logs", name]).assert().code(0))
}

/// SIGKILLs the supervisor of `name`'s running PID 1 (its parent).
fn kill_supervisor_of(env: &Engine, name: &str) -> i64 {
    let pid1 = i64::from(container_pid(env, name));
    let supervisor = state_and_ppid(pid1).unwrap().1;
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(supervisor as i32).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    pid1
}

/// `--restart always` outlives a SIGKILLed supervisor: when the container
/// ends, its monitor runs it again (a new PID 1, a second run in its log,
/// one restart counted), and `stop` still ends it for good.
#[test]
fn a_restart_policy_outlives_a_killed_supervisor() {
    let env = engine("policykill");
    let log = run_with_policy(
        &env,
        "always",
        "pk",
        "echo run; trap 'exit 0' TERM; sleep 0.5",
    );
    let first = kill_supervisor_of(&env, "pk");
    let row = poll_row(&env, "pk", |r| {
        r["status"] == "running" && r["pid"].as_i64().is_some_and(|p| p > 0 && p != first)
    });
    assert!(log().lines().count() >= 2, "{row:?}");
    let record = stdout(&env.cmd().args(["inspect", "pk"]).assert().code(0));
    let record: serde_json::Value = serde_json::from_str(&record).unwrap();
    assert!(record[0]["restart_count"].as_u64() >= Some(1), "{record}");
    env.cmd().args(["stop", "-t", "1", "pk"]).assert().code(0);
    let runs = log().lines().count();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(log().lines().count(), runs, "run again after stop");
    assert_eq!(poll_row(&env, "pk", |_| true)["status"], "exited");
    env.cmd().args(["rm", "pk"]).assert().code(0);
    assert_eq!(env.state_files(), Vec::<String>::new());
    env.assert_clean();
}

/// `on-failure:2` counts the restarts its monitor made: with the
/// supervisor SIGKILLed in the first run, three runs in all (the monitor's
/// restart, then the new supervisor's), not four.
#[test]
fn on_failure_counts_the_restart_of_a_killed_supervisor() {
    let env = engine("policycount");
    let log = run_with_policy(&env, "on-failure:2", "pc", "echo run; sleep 0.5; exit 3");
    kill_supervisor_of(&env, "pc");
    ran_three_times_then_exited_3(&env, "pc", log, 1200);
    env.cmd().args(["rm", "pc"]).assert().code(0);
    assert_eq!(env.state_files(), Vec::<String>::new());
    env.assert_clean();
}

/// A kept container's record as its file says (null while it is missing).
fn kept_record(env: &Engine, name: &str) -> serde_json::Value {
    let text = std::fs::read(env.data_dir().join(format!("{name}.json"))).unwrap_or_default();
    serde_json::from_slice(&text).unwrap_or_default()
}

/// The monitor and the supervisor of a `--restart always` container whose
/// command fails at once, once it waits in its fifth back-off (1.6 s: time
/// to kill them between two runs).
fn in_its_fifth_back_off(env: &Engine, name: &str) -> (i32, i32) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let monitor = loop {
        let r = kept_record(env, name);
        if r["restarting"] == true && r["restart_count"].as_u64() >= Some(5) {
            break r["engine_pid"].as_i64().unwrap() as i32;
        }
        assert!(std::time::Instant::now() < deadline, "{r}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let children = format!("/proc/{monitor}/task/{monitor}/children");
    let supervisor = std::fs::read_to_string(children)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    (monitor, supervisor)
}

fn sigkill(pid: i32) {
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
}

/// A supervisor SIGKILLed in its back-off, between two runs: the restart
/// it had scheduled is its monitor's to make, and the policy goes on.
#[test]
fn a_restart_scheduled_by_a_killed_supervisor_still_happens() {
    let env = engine("policybackoff");
    let log = run_with_policy(&env, "always", "pb", "echo run; exit 1");
    let (_, supervisor) = in_its_fifth_back_off(&env, "pb");
    sigkill(supervisor);
    let runs = log().lines().count();
    assert_eq!(
        kept_record(&env, "pb")["restarting"],
        true,
        "killed in a run, not between"
    );
    poll_row(&env, "pb", |_| log().lines().count() > runs);
    env.cmd().args(["stop", "-t", "1", "pb"]).assert().code(0);
    env.cmd().args(["rm", "pb"]).assert().code(0);
    assert_eq!(env.state_files(), Vec::<String>::new());
    env.assert_clean();
}

/// A restart whose engine is gone (monitor and supervisor killed in the
/// back-off, as a reboot kills them) will not come: `ps -a` says exited,
/// not restarting, and `start` runs it again.
#[test]
fn a_restart_whose_engine_died_in_its_back_off_is_plainly_exited() {
    let env = engine("policydead");
    let log = run_with_policy(&env, "always", "pd", "echo run; exit 1");
    let (monitor, supervisor) = in_its_fifth_back_off(&env, "pd");
    sigkill(monitor);
    sigkill(supervisor);
    let runs = log().lines().count();
    poll_row(&env, "pd", |r| r["status"] == "exited");
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(log().lines().count(), runs, "no run after the back-off");
    assert_eq!(kept_record(&env, "pd")["restarting"], false);
    env.cmd().args(["start", "pd"]).assert().code(0);
    poll_row(&env, "pd", |_| log().lines().count() > runs);
    env.cmd().args(["stop", "-t", "1", "pd"]).assert().code(0);
    env.cmd().args(["rm", "pd"]).assert().code(0);
    assert_eq!(env.state_files(), Vec::<String>::new());
    env.assert_clean();
}

/// --restart without -d, with --rm, or with a policy docker does not have:
/// one sentence, exit 125, nothing made.
#[test]
fn bad_restart_policies_are_refused() {
    let env = engine("badrestart");
    for (args, says) in [
        (vec!["--restart", "always"], "needs -d"),
        (
            vec!["-d", "--rm", "--restart", "always"],
            "cannot go together",
        ),
        (
            vec!["-d", "--restart", "sometimes"],
            "invalid --restart \"sometimes\"",
        ),
        (vec!["-d", "--restart", "on-failure:0"], "invalid --restart"),
    ] {
        let a = env
            .cmd()
            .args(["run", "--net", "none", "--name", "br"])
            .args(&args)
            .args([rootfs(), "true"])
            .assert()
            .code(125);
        let err = stderr(&a);
        assert!(
            err.contains(says) && err.lines().count() == 1,
            "{args:?}: {err}"
        );
    }
    assert_eq!(env.state_files(), Vec::<String>::new());
    env.assert_clean();
}

/// Field 22 of /proc/PID/stat: its start time in clock ticks since boot.
fn start_time(pid: i64) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    stat[stat.rfind(')').unwrap() + 2..]
        .split(' ')
        .nth(19)
        .unwrap()
        .parse()
        .unwrap()
}

/// Removes the named containers when dropped: a failed test leaves none
/// running.
struct RemoveOnDrop<'a>(&'a Engine, &'a [&'a str]);

impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.cmd().args(["rm", "-f"]).args(self.1).output();
    }
}

/// SIGKILLs `pid` and waits until it is gone or a zombie (at most 5 s).
fn kill_and_wait(pid: i64) {
    let _ = rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid as i32).unwrap(),
        rustix::process::Signal::KILL,
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while state_and_ppid(pid).is_some_and(|s| s.0 != 'Z') {
        assert!(std::time::Instant::now() < deadline, "{pid} did not die");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A host reboot, as near as a test gets: every process of two kept
/// containers (monitor, supervisor, PID 1) SIGKILLed, the state directory
/// emptied (as a reboot empties /run), and for `boot` its record made to
/// say another boot while its engine_pid and start time name a live
/// process (pid reuse after a reboot). Both are then exited with the
/// status of a lost one (125) in `ps -a`, `wait`, `inspect`; `logs` has
/// their output; `start` runs one again on its writable layer (the file
/// written before is there, in the data directory); `rm` leaves the data
/// directory empty.
#[test]
fn kept_containers_outlive_a_reboot() {
    let env = engine("reboot");
    let _cleanup = RemoveOnDrop(&env, &["boot", "dead"]);
    let script = "[ -e /written ] && echo found; echo x > /written; echo written; exec sleep 600";
    for name in ["boot", "dead"] {
        detach(&env, name, script);
    }
    let log = |name: &str| std::fs::read_to_string(env.data_dir().join(format!("{name}.log")));
    wait::until(SHORT, "both to write their file", || {
        ["boot", "dead"]
            .iter()
            .all(|n| log(n).is_ok_and(|l| l == "written\n"))
            .then_some(())
    });
    for row in ps_all(&env, &[]) {
        let (monitor, pid1) = (
            row["engine_pid"].as_i64().unwrap(),
            row["pid"].as_i64().unwrap(),
        );
        let supervisor = state_and_ppid(pid1).unwrap().1;
        assert_eq!(state_and_ppid(supervisor).map(|s| s.1), Some(monitor));
        // The monitor first: it would write the status it saw.
        for pid in [monitor, supervisor, pid1] {
            kill_and_wait(pid);
        }
    }
    for e in std::fs::read_dir(env.state_dir()).unwrap().flatten() {
        let path = e.path();
        let _ = std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
    }
    let record = env.data_dir().join("boot.json");
    let mut rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
    let this_boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    assert_eq!(rec["boot_id"].as_str(), Some(this_boot.trim()), "{rec}");
    rec["boot_id"] = "00000000-0000-4000-8000-000000000000".into();
    rec["engine_pid"] = 1.into();
    rec["engine_start"] = start_time(1).into();
    std::fs::write(&record, serde_json::to_vec(&rec).unwrap()).unwrap();

    let rows = ps_all(&env, &[]);
    let status: Vec<_> = rows
        .iter()
        .map(|r| {
            (
                r["name"].clone(),
                r["status"].clone(),
                r["exit_code"].clone(),
            )
        })
        .collect();
    assert_eq!(
        status,
        [
            ("boot".into(), "exited".into(), 125.into()),
            ("dead".into(), "exited".into(), 125.into())
        ],
        "{rows:?}"
    );
    let table = stdout(&env.cmd().args(["ps", "-a"]).assert().code(0));
    assert_eq!(table.matches("Exited (125)").count(), 2, "{table}");
    for name in ["boot", "dead"] {
        env.cmd()
            .args(["wait", name])
            .assert()
            .code(0)
            .stdout("125\n");
        env.cmd()
            .args(["logs", name])
            .assert()
            .code(0)
            .stdout("written\n");
    }
    let inspect = stdout(&env.cmd().args(["inspect", "boot"]).assert().code(0));
    assert!(inspect.contains("\"exit_code\": 125"), "{inspect}");

    env.cmd()
        .args(["start", "boot"])
        .assert()
        .code(0)
        .stdout("boot\n");
    wait::until(SHORT, "boot to find its file", || {
        log("boot")
            .is_ok_and(|l| l == "written\nfound\nwritten\n")
            .then_some(())
    });
    assert!(env.data_dir().join("boot.layer/upper/written").exists());
    env.cmd()
        .args(["rm", "-f", "boot", "dead"])
        .assert()
        .code(0)
        .stdout("boot\ndead\n");
    let left: Vec<_> = std::fs::read_dir(env.data_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "left in the data dir: {left:?}");
    env.assert_clean();
}

/// A data directory is one state directory's (its lock guards the records):
/// another's kept run is refused with a sentence and nothing made, its
/// `ps -a` does not list the first's containers, a foreground run is not
/// concerned; once the first's containers are removed the other may take it.
#[test]
fn a_data_directory_belongs_to_one_state_directory() {
    let a = engine("owner-a");
    let b = engine("owner-b").with_env("ENGINE_DATA_DIR", a.data_dir());
    let _cleanup = (RemoveOnDrop(&a, &["mine"]), RemoveOnDrop(&b, &["theirs"]));
    detach(&a, "mine", "echo mine");
    a.cmd()
        .args(["wait", "mine"])
        .assert()
        .code(0)
        .stdout("0\n");
    let files = || {
        let mut f: Vec<String> = std::fs::read_dir(a.data_dir())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        f.sort();
        f
    };
    let before = files();
    let refused = b
        .cmd()
        .args(detached_args(rootfs(), "theirs", &["true"]))
        .assert()
        .code(125);
    let err = stderr(&refused);
    assert!(
        err.starts_with("engine: data directory ")
            && err.contains("holds the kept containers of the engine whose state directory is")
            && err.lines().count() == 1,
        "{err}"
    );
    assert_eq!(files(), before);
    assert_eq!(ps_all(&b, &[]).len(), 0);
    run(&b, &["--name", "fg", rootfs(), "true"]).code(0);
    a.cmd()
        .args(["logs", "mine"])
        .assert()
        .code(0)
        .stdout("mine\n");
    a.cmd().args(["rm", "mine"]).assert().code(0);
    detach(&b, "theirs", "exit 0");
    b.cmd()
        .args(["wait", "theirs"])
        .assert()
        .code(0)
        .stdout("0\n");
    assert_eq!(ps_all(&a, &[]).len(), 0);
    b.cmd().args(["rm", "theirs"]).assert().code(0);
    a.assert_clean();
    b.assert_clean();
}
