//! A state record that cannot be decoded: `engine ps` names it, and the
//! recovery that every verb runs releases its cgroup (and veth) and removes
//! it. Runs the binary in a private network namespace (`unshare -n`), so the
//! veth removal it attempts never reaches the host's links.

use std::path::Path;
use std::process::{Command, Output};

fn engine(state: &Path, cgroup_root: &Path, args: &[&str]) -> Output {
    let out = Command::new("timeout")
        .args(["30", "unshare", "-n", env!("CARGO_BIN_EXE_engine")])
        .args(args)
        .env("ENGINE_STATE_DIR", state)
        .env("ENGINE_DATA_DIR", state.with_extension("data"))
        .env("ENGINE_CGROUP_ROOT", cgroup_root)
        .output()
        .expect("cannot run timeout/unshare: install coreutils and util-linux");
    assert_ne!(out.status.code(), Some(124), "engine {args:?} timed out");
    out
}

#[test]
fn corrupt_record_is_reported_and_released() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let cgroup_root = tmp.path().join("cgroup");
    std::fs::create_dir_all(&state).unwrap();
    // What a container named `web` owned, left behind with a record that
    // was cut short (a full disk, a crash of the file system).
    let leaf = cgroup_root.join("web");
    std::fs::create_dir_all(&leaf).unwrap();
    let record = state.join("web.json");
    std::fs::write(&record, b"{\"name\": \"web\", \"engine_pid\": ").unwrap();

    let out = engine(&state, &cgroup_root, &["ps"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "engine ps failed: {stderr}");
    assert!(
        stderr.contains(&record.display().to_string()),
        "engine ps does not name the corrupt record {}: stderr {stderr:?}",
        record.display()
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("web ") && l.contains("unreadable record")),
        "engine ps shows no marker row for web: {stdout:?}"
    );
    assert!(!record.exists(), "the corrupt record is still there");
    assert!(
        !leaf.exists(),
        "the corrupt record's cgroup {} is still there",
        leaf.display()
    );

    // Released once: the next invocation has nothing more to say.
    let out = engine(&state, &cgroup_root, &["ps"]);
    assert!(out.status.success());
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
