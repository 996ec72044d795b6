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
    let out = Command::new("sh")
        .args(["-c", &format!("for w in {line}; do echo \"[$w]\"; done")])
        .output()
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
fn busybox_fixture_runs_and_is_traversable() {
    let root = busybox::rootfs();
    busybox::check_traversable(&root.join("bin/busybox")).unwrap();
    let out = Command::new("chroot")
        .arg(root)
        .args(["/bin/sh", "-c", "whoami; /usr/bin/env echo ok"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "root\nok\n");
    assert!(mountinfo::mounts_under(root).is_empty());
    assert!(!mountinfo::mounts_under(std::path::Path::new("/proc")).is_empty());
}
