//! Bad input is refused before anything is created: `engine run --cpus abc
//! debian` must refuse the flag without pulling (or building) the catalog
//! rootfs first.

use std::process::Command;

#[test]
fn bad_flag_is_refused_before_the_catalog_pull() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let out = Command::new("timeout")
        .args(["60", env!("CARGO_BIN_EXE_engine")])
        .args([
            "run", "--cpus", "abc", "--net", "none", "debian", "--", "true",
        ])
        .current_dir(tmp.path())
        .env("ENGINE_ROOTFS_CACHE", &cache)
        .env("ENGINE_STATE_DIR", tmp.path().join("state"))
        .env("ENGINE_DATA_DIR", tmp.path().join("data"))
        .output()
        .expect("cannot run timeout: install coreutils");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "stderr: {stderr}");
    assert!(
        stderr.contains("invalid --cpus \"abc\""),
        "stderr: {stderr}"
    );
    assert!(
        !cache.exists(),
        "the rootfs cache {} was created before the flag was refused",
        cache.display()
    );
}
