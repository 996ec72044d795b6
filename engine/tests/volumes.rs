//! `-v` under `--userns auto` (issue 21, "Volumes writable as users
//! expect"): idmapped onto the source's owner, never onto host root; `:U`;
//! a named container's stable range.

mod common;
use common::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn owner(path: &Path) -> (u32, u32) {
    let m = std::fs::symlink_metadata(path).unwrap();
    (m.uid(), m.gid())
}

/// The host uid container root is: the second field of `cat /proc/self/uid_map`.
fn base_of(uid_map_line: &str) -> u32 {
    uid_map_line
        .split_whitespace()
        .nth(1)
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("uid_map line {uid_map_line:?}"))
}

/// A directory of host user 1000 (mode 0755, so only its owner writes):
/// container root sees it as its own, writes into it, and what it writes
/// is user 1000's on the host.
#[test]
fn a_users_directory_is_written_by_container_root_as_that_user() {
    let env = engine("volidmap");
    let vol = tempfile::tempdir().unwrap();
    chown(vol.path(), 1000, 1001);
    chmod(vol.path(), 0o755);
    let spec = format!("{}:/data", vol.path().display());
    let a = run(
        &env,
        &[
            "-v",
            &spec,
            "--name",
            "vi",
            rootfs(),
            "sh",
            "-c",
            "stat -c %u:%g /data && echo hi > /data/f && mkdir /data/d && stat -c %u:%g /data/f",
        ],
    )
    .code(0);
    assert_eq!(stdout(&a), "0:0\n0:0\n", "{}", stderr(&a));
    assert_eq!(owner(&vol.path().join("f")), (1000, 1001));
    assert_eq!(owner(&vol.path().join("d")), (1000, 1001));
    assert_eq!(
        std::fs::read_to_string(vol.path().join("f")).unwrap(),
        "hi\n"
    );
    env.assert_clean();
}

/// The attack: a hostile container leaves a setuid copy of its shell in a
/// volume, for a host user to run. In a directory whose owner or group is
/// host root (world-writable, so container root may write there at all),
/// the copy must not belong to host uid 0 or gid 0: such a volume is not
/// idmapped, and container root writes as its own unprivileged host IDs.
/// With a directory of user 1000 the copy is user 1000's, setuid to that
/// user only, which that user could make itself.
#[test]
fn a_container_cannot_leave_a_root_owned_setuid_file_in_a_volume() {
    let env = engine("volattack");
    for (uid, gid) in [(0, 0), (1000, 0), (0, 1000)] {
        let vol = tempfile::tempdir().unwrap();
        chown(vol.path(), uid, gid);
        chmod(vol.path(), 0o777);
        let spec = format!("{}:/data", vol.path().display());
        let a = run(
            &env,
            &[
                "-v",
                &spec,
                "--name",
                "va",
                rootfs(),
                "sh",
                "-c",
                "cat /proc/self/uid_map; cp /bin/busybox /data/sh && chmod 6755 /data/sh",
            ],
        )
        .code(0);
        let base = base_of(stdout(&a).trim());
        let planted = std::fs::metadata(vol.path().join("sh")).unwrap();
        assert_eq!(
            (planted.uid(), planted.gid(), planted.mode() & 0o7777),
            (base, base, 0o6755),
            "in a directory of {uid}:{gid}, the container's setuid file is not its own range's"
        );
    }
    env.assert_clean();
}

/// `:U` gives a root-owned directory to container root (its pool range),
/// without following a symlink in it to a host file; a later run of
/// another container (another range) still writes there, as the owner
/// `:U` left, through the idmap.
#[test]
fn chown_option_gives_the_volume_to_container_root_and_no_host_file() {
    let env = engine("volchown");
    let outside = tempfile::tempdir().unwrap();
    let host_file = outside.path().join("secret");
    std::fs::write(&host_file, "host\n").unwrap();
    chmod(&host_file, 0o600);
    let vol = tempfile::tempdir().unwrap();
    chmod(vol.path(), 0o755);
    std::fs::create_dir(vol.path().join("sub")).unwrap();
    std::os::unix::fs::symlink(&host_file, vol.path().join("sub/link")).unwrap();
    let spec = format!("{}:/data:U,Z", vol.path().display());
    let a = run(
        &env,
        &[
            "-v",
            &spec,
            "--name",
            "vu",
            rootfs(),
            "sh",
            "-c",
            "cat /proc/self/uid_map; echo hi > /data/f",
        ],
    )
    .code(0);
    let base = base_of(stdout(&a).trim());
    assert_eq!(owner(vol.path()), (base, base));
    assert_eq!(owner(&vol.path().join("sub")), (base, base));
    assert_eq!(owner(&vol.path().join("sub/link")), (base, base));
    assert_eq!(owner(&vol.path().join("f")), (base, base));
    assert_eq!(owner(&host_file), (0, 0), "the symlink was followed");

    // Another container, holding the first one's range meanwhile so this
    // one gets another: it writes as the owner :U left.
    detach(&env, "vu", "sleep 60");
    let spec = format!("{}:/data", vol.path().display());
    let a = run(
        &env,
        &[
            "-v",
            &spec,
            "--name",
            "vu2",
            rootfs(),
            "sh",
            "-c",
            "cat /proc/self/uid_map; echo again > /data/g",
        ],
    )
    .code(0);
    assert_ne!(
        base_of(stdout(&a).trim()),
        base,
        "the range was not another"
    );
    assert_eq!(owner(&vol.path().join("g")), (base, base));
    env.cmd().args(["rm", "-f", "vu"]).assert().code(0);
    env.assert_clean();
}

/// A named container gets the same host IDs on its next run while no
/// other container holds them, whichever containers run meanwhile (with
/// the lowest free range, it would move as others come and go).
#[test]
fn a_named_container_keeps_its_range_across_runs() {
    const START: u64 = (3 << 30) + (64 << 16);
    let env = engine("volrange").with_env("ENGINE_USERNS_POOL", format!("{START}:{}", 64 * 65536));
    let uid_map = |name: &str| {
        let a = run(
            &env,
            &["--name", name, rootfs(), "cat", "/proc/self/uid_map"],
        )
        .code(0);
        base_of(stdout(&a).trim())
    };
    let first = uid_map("keep");
    detach(&env, "holder", "sleep 60");
    let second = uid_map("keep");
    env.cmd().args(["rm", "-f", "holder"]).assert().code(0);
    assert_eq!(first, second, "the named container's range moved");
    assert!((START..START + 64 * 65536).contains(&u64::from(first)));
    env.assert_clean();
}

/// Bad volume options are refused with a sentence, before anything is
/// created.
#[test]
fn unknown_volume_options_are_refused() {
    let env = engine("volbad");
    let vol = tempfile::tempdir().unwrap();
    for opts in ["idmap", "ro,", "x"] {
        let spec = format!("{}:/data:{opts}", vol.path().display());
        let a = run(&env, &["-v", &spec, rootfs(), "true"]).code(125);
        let err = stderr(&a);
        assert!(
            err.contains("ro, rw, U, z, Z") && err.lines().count() == 1,
            "{err}"
        );
    }
    env.assert_clean();
}
