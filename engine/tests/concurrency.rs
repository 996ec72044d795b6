//! Two engines at once (issue 13): many `engine` processes on one state
//! directory never corrupt it, never lease one address twice, never remove
//! a live container's veth or record, and leave nothing behind; and engines
//! with different state directories in one network namespace do not undo
//! each other's bridge or `ip_forward`.
//!
//! Everything bridged runs in a network namespace this test's thread made
//! (proven by its inode); the worker threads it spawns inherit it.

mod common;
use common::*;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use testkit::netns::forwarding;

const WORKERS: usize = 8;
const OPERATIONS: usize = 100;

/// Host uptime in centiseconds: the clock containers read too (no time
/// namespace), so intervals from inside and outside compare.
fn uptime_cs() -> u64 {
    let text = std::fs::read_to_string("/proc/uptime").unwrap();
    let secs = text.split(' ').next().unwrap();
    let (s, cs) = secs.split_once('.').unwrap();
    s.parse::<u64>().unwrap() * 100 + cs.parse::<u64>().unwrap()
}

/// The container side, for `sh -c`: write `start ADDR TIME` to /sync/NAME,
/// and on the way out (`end`) `end TIME ok|lost`: `lost` when its eth0 is gone
/// or the gateway no longer answers (another engine removed its veth or the
/// bridge under it). Three tries: this shared machine stalls for seconds at
/// times, and a single ping's timer then runs out before its reply is read.
fn script(name: &str, gateway: &str, body: &str) -> String {
    let f = format!("/sync/{name}");
    format!(
        "now() {{ cut -d' ' -f1 /proc/uptime | tr -d .; }}; \
         pong() {{ ping -c1 -W3 {gateway} >/dev/null 2>&1; }}; \
         end() {{ if ip link show eth0 >/dev/null 2>&1 && (pong || pong || pong); \
           then r=ok; else r=lost; fi; echo \"end $(now) $r\" >> {f}; }}; \
         trap 'end; exit 0' TERM; \
         echo \"start $(ip -o -4 addr show eth0 | awk '{{print $4}}') $(now)\" >> {f}; {body}"
    )
}

/// What one container wrote about itself.
#[derive(Debug, Default, Clone)]
struct Life {
    addr: String,
    start: u64,
    end: Option<u64>,
    ok: Option<bool>,
}

fn read_life(sync: &Path, name: &str) -> Option<Life> {
    let text = std::fs::read_to_string(sync.join(name)).ok()?;
    let mut life = Life::default();
    for line in text.lines() {
        let words: Vec<&str> = line.split(' ').collect();
        match words.as_slice() {
            ["start", addr, t] => {
                life.addr = addr.to_string();
                life.start = t.parse().ok()?;
            }
            ["end", t, r] => {
                life.end = t.parse().ok();
                life.ok = Some(*r == "ok");
            }
            _ => return None,
        }
    }
    (life.start > 0).then_some(life)
}

/// A container an operation started.
#[derive(Debug, Clone)]
struct Started {
    name: String,
    kind: &'static str,
    /// A teardown ran during the operation.
    disturbed: bool,
    /// When its engine was SIGKILLed (host uptime, centiseconds).
    killed: Option<u64>,
}

/// The teardown counters before an operation.
#[derive(Debug, Clone, Copy)]
struct Epoch {
    begun: usize,
    running: usize,
}

/// The shared world of the workers.
struct World {
    env: Engine,
    sync: tempfile::TempDir,
    gateway: String,
    /// `teardown --force` operations begun, and running now (they overlap).
    teardowns_begun: AtomicUsize,
    teardowns_running: AtomicUsize,
    started: Mutex<Vec<Started>>,
    failures: Mutex<Vec<String>>,
    /// When each operation began and ended, for the failure message.
    events: Mutex<Vec<String>>,
}

impl World {
    fn fail(&self, what: String) {
        self.failures.lock().unwrap().push(what);
    }

    fn volume(&self) -> String {
        format!("{}:/sync", self.sync.path().display())
    }

    /// `engine ARGS` with the output captured, bounded in time.
    fn engine(&self, args: &[&str]) -> Output {
        let child = self
            .env
            .spawnable()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait::output_of(child, LONG).unwrap_or_else(|e| {
            self.fail(format!("engine {args:?}: {e}"));
            let killed = std::os::unix::process::ExitStatusExt::from_raw(libc::SIGKILL);
            Output {
                status: killed,
                stdout: Vec::new(),
                stderr: Vec::new(),
            }
        })
    }

    fn run_args(&self, name: &str, detach: bool, body: &str) -> Vec<String> {
        let mut args = vec!["run".to_string()];
        if detach {
            args.push("-d".into());
        }
        // NET_RAW for busybox ping (raw sockets only).
        for a in [
            "--cap-add",
            "NET_RAW",
            "-v",
            &self.volume(),
            "--name",
            name,
            rootfs(),
            "--",
            "sh",
            "-c",
        ] {
            args.push(a.to_string());
        }
        args.push(script(name, &self.gateway, body));
        args
    }

    /// Before an operation: what tells later whether a teardown ran meanwhile.
    fn epoch(&self) -> Epoch {
        Epoch {
            begun: self.teardowns_begun.load(Ordering::SeqCst),
            running: self.teardowns_running.load(Ordering::SeqCst),
        }
    }

    /// Whether a teardown ran at any moment between `epoch` and now.
    fn disturbed_since(&self, epoch: Epoch) -> bool {
        epoch.running > 0 || self.teardowns_begun.load(Ordering::SeqCst) != epoch.begun
    }

    fn note(&self, name: &str, kind: &'static str, disturbed: bool, killed: Option<u64>) {
        self.started.lock().unwrap().push(Started {
            name: name.to_string(),
            kind,
            disturbed,
            killed,
        });
    }

    /// A one-line error that names something, never a panic or debug output.
    fn check_error_text(&self, what: &str, out: &Output) {
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("panicked") || err.contains("Os {") || err.contains("RUST_BACKTRACE") {
            self.fail(format!("{what}: not a user's error: {err}"));
        }
    }

    fn event(&self, what: String) {
        self.events
            .lock()
            .unwrap()
            .push(format!("{} {what}", uptime_cs()));
    }

    /// One operation of the mix; `i` picks which.
    fn operation(&self, worker: usize, i: usize) {
        self.event(format!("w{worker}o{i} begins"));
        self.operation_of(worker, i);
        self.event(format!("w{worker}o{i} ends"));
    }

    fn operation_of(&self, worker: usize, i: usize) {
        let name = format!("w{worker}o{i}");
        let epoch = self.epoch();
        match i % 10 {
            _ if i % 25 == 12 => {
                self.teardowns_running.fetch_add(1, Ordering::SeqCst);
                self.teardowns_begun.fetch_add(1, Ordering::SeqCst);
                let out = self.engine(&["teardown", "--force"]);
                self.teardowns_running.fetch_sub(1, Ordering::SeqCst);
                if !out.status.success() {
                    self.fail(format!("teardown --force failed: {}", stderr_of(&out)));
                }
            }
            0 | 5 => {
                let out = self.engine(&["ps", "--format", "json"]);
                check_ps(self, &out);
            }
            1 | 4 | 7 => {
                let args = self.run_args(&name, false, "sleep 0.3; end");
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let out = self.engine(&args);
                let disturbed = self.disturbed_since(epoch);
                self.note(&name, "run", disturbed, None);
                let code = out.status.code();
                if code != Some(0) && !(disturbed && matches!(code, Some(125 | 137 | 143))) {
                    self.fail(format!(
                        "run {name} exited {code:?} (teardown meanwhile: {disturbed}): {}",
                        stderr_of(&out)
                    ));
                }
                self.check_error_text(&name, &out);
            }
            3 => self.killed_engine(&name, epoch),
            _ => {
                let args = self.run_args(&name, true, "while :; do sleep 0.1; done");
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let out = self.engine(&args);
                self.check_error_text(&name, &out);
                if !out.status.success() {
                    let disturbed = self.disturbed_since(epoch);
                    self.note(&name, "run -d", disturbed, None);
                    if !disturbed {
                        self.fail(format!("run -d {name} failed: {}", stderr_of(&out)));
                    }
                    return;
                }
                // Stop it once its TERM trap is set (it writes its start line after).
                let started = wait::poll_until(SHORT, "the start line", || {
                    read_life(self.sync.path(), &name)
                });
                let out = self.engine(&["stop", "-t", "5", &name]);
                let disturbed = self.disturbed_since(epoch);
                self.note(&name, "run -d", disturbed, None);
                if started.is_err() && !disturbed {
                    self.fail(format!("{name} never wrote its start line"));
                }
                if !out.status.success() && !disturbed {
                    self.fail(format!("stop {name} failed: {}", stderr_of(&out)));
                }
                self.check_error_text(&name, &out);
            }
        }
    }

    /// A container whose engine is SIGKILLed once the container runs: the
    /// next invocation of anyone must recover what it left.
    fn killed_engine(&self, name: &str, epoch: Epoch) {
        let args = self.run_args(name, false, "sleep 30");
        let mut child = self
            .env
            .spawnable()
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = wait::poll_until(SHORT, "the start line", || {
            read_life(self.sync.path(), name)
        });
        // Before the kill: any later lease of its address comes after it.
        let killed_at = uptime_cs();
        let _ = child.kill();
        let _ = wait::child(&mut child, LONG);
        let disturbed = self.disturbed_since(epoch);
        if started.is_err() && !disturbed {
            self.fail(format!("{name} never wrote its start line"));
        }
        self.note(name, "killed", disturbed, Some(killed_at));
    }
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).trim().to_string()
}

/// `ps --format json` succeeded, parsed, and shows no address twice.
fn check_ps(world: &World, out: &Output) {
    if !out.status.success() {
        world.fail(format!("ps failed: {}", stderr_of(out)));
        return;
    }
    let rows: serde_json::Value = match serde_json::from_slice(&out.stdout) {
        Ok(v) => v,
        Err(e) => return world.fail(format!("ps printed no JSON ({e})")),
    };
    let mut seen: HashMap<String, String> = HashMap::new();
    for row in rows.as_array().into_iter().flatten() {
        let (Some(ip), Some(name)) = (row["ip"].as_str(), row["name"].as_str()) else {
            continue;
        };
        if let Some(other) = seen.insert(ip.to_string(), name.to_string()) {
            world.fail(format!("ps shows {ip} leased to both {other} and {name}"));
        }
    }
    if !stderr_of(out).is_empty() {
        // A corrupt record is named on stderr: the state was torn somewhere.
        world.fail(format!("ps reported: {}", stderr_of(out)));
    }
}

/// Every record in the state and data directories parses (the engine
/// writes them by rename, so a reader never sees half of one).
fn check_records(world: &World) {
    let dirs = [world.env.state_dir(), world.env.data_dir()];
    for entry in dirs
        .iter()
        .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten())
    {
        let file = entry.file_name().to_string_lossy().into_owned();
        if !file.ends_with(".json") || file.starts_with('.') {
            continue;
        }
        // Removed between listing and reading: fine.
        let Ok(data) = std::fs::read(entry.path()) else {
            continue;
        };
        if serde_json::from_slice::<serde_json::Value>(&data).is_err() {
            world.fail(format!("record {file} does not parse: {data:?}"));
        }
    }
}

fn links() -> String {
    let out = wait::output(
        Command::new(quote::require("ip", "iproute2")).args(["-o", "link"]),
        SHORT,
    )
    .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// 100 operations across 8 threads, each spawning `engine` processes on one
/// state directory: short runs, `run -d` + `stop`, `ps`, `teardown --force`
/// and engines SIGKILLed mid-run, with a ninth thread reading `ps` and the
/// records all along. Takes 7-18 s on this 2-core machine: about seventy
/// bridged containers are started, and fewer would not make the races likely.
#[test]
fn a_hundred_operations_from_eight_processes_share_one_state_directory() {
    busybox::rootfs();
    let netns = testkit::netns::enter_private_or_panic().1;
    let sync = tempfile::tempdir().unwrap();
    // Container root is an unprivileged host ID: the volume must be writable.
    std::fs::set_permissions(
        sync.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    assert_eq!(forwarding(), "0");
    let world = Arc::new(World {
        env: engine("conc").with_network("br-conc", "10.90.0.0/24"),
        sync,
        gateway: "10.90.0.1".into(),
        teardowns_begun: AtomicUsize::new(0),
        teardowns_running: AtomicUsize::new(0),
        started: Mutex::new(Vec::new()),
        failures: Mutex::new(Vec::new()),
        events: Mutex::new(Vec::new()),
    });
    let began = Instant::now();
    let done = Arc::new(AtomicUsize::new(0));
    let monitor = {
        let (world, done) = (world.clone(), done.clone());
        std::thread::spawn(move || {
            let mut rounds = 0;
            while done.load(Ordering::SeqCst) < WORKERS {
                let out = world.engine(&["ps", "--format", "json"]);
                check_ps(&world, &out);
                check_records(&world);
                rounds += 1;
            }
            rounds
        })
    };
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let (world, done) = (world.clone(), done.clone());
            std::thread::spawn(move || {
                // Threads start in the namespace of the thread that made them.
                assert_eq!(testkit::netns::thread_inode().unwrap(), netns);
                for i in (w..OPERATIONS).step_by(WORKERS) {
                    world.operation(w, i);
                }
                done.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let ps_rounds = monitor.join().unwrap();
    eprintln!(
        "{OPERATIONS} operations in {:?}, {ps_rounds} monitoring ps rounds",
        began.elapsed()
    );

    // No address held by two containers at once, as the containers saw it.
    let started = world.started.lock().unwrap().clone();
    let mut lives: Vec<(String, Life)> = Vec::new();
    for Started {
        name,
        kind,
        disturbed,
        killed,
    } in &started
    {
        let Some(mut life) = read_life(world.sync.path(), name) else {
            if !disturbed {
                world.fail(format!("{kind} {name} left no start line"));
            }
            continue;
        };
        match (killed, life.ok) {
            (Some(at), _) => life.end = Some(*at),
            (None, Some(false)) => world.fail(format!(
                "{kind} {name} ({}) lost its veth or gateway while it ran",
                life.addr
            )),
            (None, None) if !disturbed => {
                world.fail(format!("{kind} {name} never reached its end"))
            }
            _ => {}
        }
        lives.push((name.clone(), life));
    }
    for (i, (a, la)) in lives.iter().enumerate() {
        for (b, lb) in &lives[i + 1..] {
            let (Some(ea), Some(eb)) = (la.end, lb.end) else {
                continue;
            };
            if la.addr == lb.addr && la.start < eb && lb.start < ea {
                world.fail(format!(
                    "{} leased to {a} ({}..{ea}) and {b} ({}..{eb}) at once",
                    la.addr, la.start, lb.start
                ));
            }
        }
    }

    // The next invocation recovers what the killed engines left; then
    // teardown leaves nothing.
    check_ps(&world, &world.engine(&["ps", "--format", "json"]));
    let out = world.engine(&["teardown", "--force"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let failures = world.failures.lock().unwrap().clone();
    if !failures.is_empty() {
        let lives: Vec<String> = lives.iter().map(|(n, l)| format!("{n} {l:?}")).collect();
        panic!(
            "{} failures:\n{}\n\nevents (uptime in 1/100 s):\n{}\n\ncontainers:\n{}",
            failures.len(),
            failures.join("\n"),
            world.events.lock().unwrap().join("\n"),
            lives.join("\n")
        );
    }
    wait::until(SHORT, "the veths to vanish", || {
        (!links().contains("ve-")).then_some(())
    });
    assert!(!links().contains("br-conc"), "{}", links());
    assert_eq!(forwarding(), "0", "teardown did not restore ip_forward");
    world.env.assert_clean();
    let kinds: Vec<&str> = started.iter().map(|s| s.kind).collect();
    for kind in ["run", "run -d", "killed"] {
        assert!(kinds.contains(&kind), "no {kind} operation ran: {kinds:?}");
    }
}

/// An engine environment of its own (state directory, bridge, subnet) in the
/// namespace this thread is in.
fn second(tag: &str, subnet: &str) -> Engine {
    engine(tag).with_network(&format!("br-{tag}"), subnet)
}

/// A detached container that a teardown stops at once: PID 1 ignores a
/// SIGTERM it has no handler for, so it says when its trap is set.
fn detached_sleeper(env: &Engine, name: &str) {
    let script = "trap 'exit 0' TERM; echo ready; while :; do sleep 0.1; done";
    env.cmd()
        .args([
            "run",
            "-d",
            "--cap-add",
            "NET_RAW",
            "--name",
            name,
            rootfs(),
        ])
        .args(["--", "sh", "-c", script])
        .assert()
        .code(0);
    let log = env.data_dir().join(format!("{name}.log"));
    wait::until(SHORT, &format!("{name} to be ready"), || {
        std::fs::read_to_string(&log)
            .is_ok_and(|l| l.contains("ready"))
            .then_some(())
    });
}

fn pings_gateway(env: &Engine, name: &str, gateway: &str) -> bool {
    env.cmd()
        .args(["exec", name, "--", "ping", "-c1", "-W3", gateway])
        .output()
        .unwrap()
        .status
        .success()
}

/// Engines with different state directories keep their own bridge (named by
/// ENGINE_BRIDGE), and `ip_forward` stays on while any engine's bridge is
/// there: the teardown of one leaves the other working, and the last one
/// restores the value from before the first.
#[test]
fn engines_with_their_own_state_directories_do_not_undo_each_other() {
    busybox::rootfs();
    testkit::netns::enter_private_or_panic();
    assert_eq!(forwarding(), "0");
    let a = second("sda", "10.93.0.0/24");
    let b = second("sdb", "10.94.0.0/24");
    detached_sleeper(&a, "a1");
    detached_sleeper(&b, "b1");
    assert_eq!(forwarding(), "1");

    // A goes first (its own container stopped by --force): B's bridge,
    // forwarding and container stay.
    a.cmd().args(["teardown", "--force"]).assert().code(0);
    assert!(!links().contains("br-sda"), "{}", links());
    assert!(links().contains("br-sdb"), "{}", links());
    assert_eq!(
        forwarding(),
        "1",
        "A's teardown turned forwarding off under B"
    );
    assert!(pings_gateway(&b, "b1", "10.94.0.1"));

    // A comes back while B runs, and B goes first this time: B's record of
    // the original value must not be lost in between.
    detached_sleeper(&a, "a2");
    b.cmd().args(["teardown", "--force"]).assert().code(0);
    assert!(!links().contains("br-sdb"), "{}", links());
    assert_eq!(
        forwarding(),
        "1",
        "B's teardown turned forwarding off under A"
    );
    assert!(pings_gateway(&a, "a2", "10.93.0.1"));
    a.cmd().args(["teardown", "--force"]).assert().code(0);
    assert_eq!(
        forwarding(),
        "0",
        "the last teardown did not restore ip_forward"
    );
    assert!(!links().contains("br-sd"), "{}", links());

    // One bridge is one state directory's: its leases live there, so a
    // second state directory on it would hand out the same addresses.
    detached_sleeper(&a, "a3");
    let intruder = engine("sdc").with_network("br-sda", "10.93.0.0/24");
    intruder
        .cmd()
        .args(["run", "--name", "c1", rootfs(), "--", "true"])
        .assert()
        .code(125)
        .stderr(
            predicate::str::contains("br-sda")
                .and(predicate::str::contains(a.state_dir().to_str().unwrap())),
        );
    intruder.assert_clean();
    assert!(pings_gateway(&a, "a3", "10.93.0.1"));
    a.cmd().args(["teardown", "--force"]).assert().code(0);
    assert_eq!(forwarding(), "0");
    a.assert_clean();
    b.assert_clean();
}

/// `stop` outlives the engine of the container it stops: it then releases
/// what that engine left, but only if the record is still that engine's.
/// Here the name has meanwhile gone to a new container (a record naming
/// this test process as its engine, written while the test holds the state
/// lock that `stop` waits for): `stop` must leave it alone.
#[test]
fn stop_never_releases_a_new_container_of_the_same_name() {
    use std::os::unix::fs::MetadataExt;
    let env = engine("reuse");
    let mut first = Running::run(
        &env,
        &[
            "--name",
            "web",
            rootfs(),
            "--",
            "sh",
            "-c",
            "trap '' TERM; echo ready; exec sleep 1000",
        ],
    );
    first.expect("ready");
    let mut stop = env
        .spawnable()
        .args(["stop", "-t", "60", "web"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let record = env.state_dir().join("web.json");
    let old = std::fs::read(&record).unwrap();
    // Give stop the time to find the container and send its SIGTERM.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let lock_file = std::fs::File::open(env.state_dir().join(".lock")).unwrap();
    let lock_ino = lock_file.metadata().unwrap().ino();
    let held = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive).unwrap();
    first.signal(nix::sys::signal::Signal::SIGKILL);
    first.wait();
    // stop sees the engine dead and waits for the lock.
    wait::until(SHORT, "stop to wait for the state lock", || {
        let locks = std::fs::read_to_string("/proc/locks").unwrap();
        locks
            .lines()
            .any(|l| l.contains("->") && l.contains(&format!(":{lock_ino} ")))
            .then_some(())
    });
    let me = std::process::id();
    let start = testkit::procinfo::start_time(me as i32);
    let mut new: serde_json::Value = serde_json::from_slice(&old).unwrap();
    // What the recovery by another engine did before the name was reused
    // (the parent-death signal has most likely done it already).
    let old_pid = new["pid"].as_i64().unwrap() as i32;
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(old_pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    wait::pid_gone(old_pid, SHORT).unwrap();
    new["engine_pid"] = me.into();
    new["engine_start"] = start.into();
    // This process: in our own pid namespace, so never killed as a container.
    new["pid"] = me.into();
    std::fs::write(&record, serde_json::to_vec(&new).unwrap()).unwrap();
    drop(held);
    let status = wait::child(&mut stop, LONG).unwrap();
    assert!(status.success(), "stop failed");
    let now: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&record).expect("stop removed the new container's record"),
    )
    .unwrap();
    assert_eq!(now["engine_pid"], me);
    std::fs::remove_file(&record).unwrap();
    env.assert_clean();
}

/// Whether `pid` has ended (gone, or a zombie nobody reaped yet).
fn ended(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
        stat.rfind(')')
            .is_some_and(|close| stat[close + 2..].starts_with('Z'))
    })
}

/// The processes whose parent is `pid`.
fn children_of(pid: u32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|stat| {
                stat.rfind(')').is_some_and(|close| {
                    stat[close + 2..].split(' ').nth(1) == Some(&pid.to_string())
                })
            })
        })
        .collect()
}

/// A SIGKILLed engine takes its container with it at once (the parent-death
/// signal, which the uid change into the user namespace had cleared), and
/// a SIGKILLed `engine exec` the process it started; nothing waits for the
/// next invocation's recovery.
#[test]
fn a_sigkilled_engine_takes_its_processes_with_it() {
    let env = engine("pdeath");
    let mut run = Running::run(
        &env,
        &[
            "--name",
            "web",
            rootfs(),
            "--",
            "sh",
            "-c",
            "echo ready; exec sleep 1000",
        ],
    );
    run.expect("ready");
    let pid1 = container_pid(&env, "web");

    let mut exec = Running::spawn(
        &env,
        &[
            "exec",
            "web",
            "--",
            "sh",
            "-c",
            "echo ready; exec sleep 1000",
        ],
    );
    exec.expect("ready");
    let joined = children_of(exec.child.id());
    assert_eq!(joined.len(), 1, "the process of engine exec: {joined:?}");
    exec.signal(nix::sys::signal::Signal::SIGKILL);
    exec.wait();
    wait::until(SHORT, "the exec'd process to die with its engine", || {
        ended(joined[0]).then_some(())
    });
    assert!(!ended(pid1), "the container died with engine exec");

    run.signal(nix::sys::signal::Signal::SIGKILL);
    run.wait();
    wait::until(SHORT, "the container to die with its engine", || {
        ended(pid1).then_some(())
    });
    env.cmd().arg("ps").assert().code(0); // removes the record
    env.assert_clean();
}
