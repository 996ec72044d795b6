//! The helpers on the real kernel (as root).

use std::process::{Command, Stdio};
use std::time::Duration;
use testkit::{busybox, mountinfo, netns, quote, wait};

#[test]
fn netns_enter_private_changes_the_inode() {
    let host = netns::thread_inode().unwrap();
    let (before, after) = netns::in_private(|| netns::enter_private().unwrap());
    assert_ne!(before, after);
    assert_ne!(
        before, host,
        "the second unshare started from the first private one"
    );
    assert_eq!(netns::thread_inode().unwrap(), host, "this thread stayed");
}

#[test]
fn quoting_round_trips_through_sh() {
    let words = ["plain", "two words", "it's", "$HOME", ""];
    let line = quote::join(words);
    let out = wait::output(
        Command::new("sh").args(["-c", &format!("for w in {line}; do echo \"[$w]\"; done")]),
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "[plain]\n[two words]\n[it's]\n[$HOME]\n[]\n"
    );
    assert!(quote::which("sh").is_some());
    assert!(quote::which("no-such-program-here").is_none());
}

#[test]
fn waits_have_deadlines() {
    let err = wait::poll_until(Duration::from_millis(50), "never", || None::<()>).unwrap_err();
    assert!(err.to_string().contains("waiting for never"), "{err}");
    let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
    assert!(wait::child(&mut sleeper, Duration::from_millis(100)).is_err());
    let mut child = Command::new("sh")
        .args(["-c", "echo one; echo two; sleep 30"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = wait::Lines::new(child.stdout.take().unwrap());
    assert_eq!(lines.expect_line("tw", Duration::from_secs(5)), "two");
    assert!(lines.next(Duration::from_millis(100)).is_err());
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn output_has_a_deadline_and_reads_both_streams() {
    let out = wait::output(
        Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]),
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(out.stdout, b"out\n");
    assert_eq!(out.stderr, b"err\n");
    // More than a pipe holds, read while the child runs.
    let out = wait::output(
        Command::new("head").args(["-c", "1000000", "/dev/zero"]),
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(out.stdout.len(), 1_000_000);
    let started = std::time::Instant::now();
    let err =
        wait::output(Command::new("sleep").arg("30"), Duration::from_millis(200)).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // The child ends, but a process it left keeps stdout open.
    let err = wait::output(
        Command::new("sh").args(["-c", "sleep 30 & echo left"]),
        Duration::from_millis(500),
    )
    .unwrap_err();
    assert!(err.to_string().contains("stdout"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
// The children are reaped by pid, through the helper under test.
#[allow(clippy::zombie_processes)]
fn reap_has_a_deadline() {
    let child = Command::new("sh").args(["-c", "exit 4"]).spawn().unwrap();
    let pid = child.id() as i32;
    let status = wait::reap(pid, Duration::from_secs(10)).unwrap();
    assert_eq!(
        status,
        Some(nix::sys::wait::WaitStatus::Exited(
            nix::unistd::Pid::from_raw(pid),
            4
        ))
    );
    assert_eq!(
        wait::reap(pid, Duration::from_secs(1)).unwrap(),
        None,
        "reaped already"
    );
    let sleeper = Command::new("sleep").arg("30").spawn().unwrap();
    let pid = sleeper.id() as i32;
    let err = wait::reap(pid, Duration::from_millis(200)).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "killed and reaped"
    );
}

#[test]
fn readable_has_a_deadline() {
    use std::io::Write;
    use std::os::fd::AsFd;
    let (r, w) = nix::unistd::pipe().unwrap();
    let err = wait::readable(r.as_fd(), Duration::from_millis(100)).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
    std::fs::File::from(w).write_all(b"x").unwrap();
    wait::readable(r.as_fd(), Duration::from_secs(5)).unwrap();
}

#[test]
fn lines_are_lossy_copied_and_end() {
    let mut child = Command::new("printf")
        .arg("one\\r\\n\\377two\\nlast")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let copy = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut lines = wait::Lines::with_copy(child.stdout.take().unwrap(), copy.clone());
    assert_eq!(lines.expect_next(Duration::from_secs(5)), "one");
    lines.wait_end(Duration::from_secs(5)).unwrap();
    assert_eq!(lines.seen, ["one", "\u{fffd}two", "last"]);
    assert_eq!(*copy.lock().unwrap(), "one\r\n\u{fffd}two\nlast");
    wait::child(&mut child, Duration::from_secs(5)).unwrap();
    let mut open = Command::new("sleep")
        .arg("30")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = wait::Lines::new(open.stdout.take().unwrap());
    assert!(lines.wait_end(Duration::from_millis(100)).is_err());
    open.kill().unwrap();
    open.wait().unwrap();
}

#[test]
fn busybox_fixture_runs_and_is_traversable() {
    let root = busybox::rootfs();
    busybox::check_traversable(&root.join("bin/busybox")).unwrap();
    let out = wait::output(
        Command::new("chroot")
            .arg(root)
            .args(["/bin/sh", "-c", "whoami; /usr/bin/env echo ok"]),
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "root\nok\n");
    assert!(mountinfo::mounts_under(root).is_empty());
    assert!(!mountinfo::mounts_under(std::path::Path::new("/proc")).is_empty());
}
