//! `--userns auto` on a root-owned rootfs: a host ID range from the pool, an
//! idmapped lower layer, fds for every mount (issue 14, "Container root is
//! never host root", "Mounts", "Paths inside the rootfs").

mod common;
use common::*;
use nix::sys::signal::Signal;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

const POOL_START: u64 = 1 << 30;

/// The numbers of a `cat /proc/self/uid_map` line.
fn uid_map(line: &str) -> (u64, u64, u64) {
    let n: Vec<u64> = line
        .split_whitespace()
        .map(|w| {
            w.parse()
                .unwrap_or_else(|_| panic!("uid_map line {line:?}"))
        })
        .collect();
    assert_eq!(n.len(), 3, "uid_map line {line:?}");
    (n[0], n[1], n[2])
}

/// The ID ranges held by the containers of `env`, read from the host-wide
/// leases: (container, uid base), by name. Each lease is one range of
/// 65536 uids and gids from one base.
fn held_ranges(env: &Engine) -> Vec<(String, u64)> {
    id_leases(env.state_dir())
        .into_iter()
        .map(|l| {
            assert_eq!(l.uids.len(), 1, "{l:?}");
            assert_eq!(l.uids, l.gids, "{l:?}");
            assert_eq!(l.uids[0].1, 65536, "{l:?}");
            (l.name, l.uids[0].0)
        })
        .collect()
}

/// No lease of `env` is left, nor a lease directory in the state dir.
fn assert_no_lease_files(env: &Engine) {
    assert_eq!(id_leases(env.state_dir()), Vec::new(), "leases left");
    let dir = env.state_dir().join("userns");
    assert!(!dir.exists(), "{} exists", dir.display());
}

/// An environment with a pool of `ranges` ranges of its own, at a start no
/// other test uses (the leases are host-wide: in the default pool, the
/// lowest free range depends on the other tests running).
fn engine_with_pool(tag: &str, start: u64, ranges: u64) -> Engine {
    engine(tag).with_env("ENGINE_USERNS_POOL", format!("{start}:{}", ranges * 65536))
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Root-owned rootfs, default options: container root is host BASE from the
/// pool, never host root; the rootfs's files still read as root's; two
/// containers at once get different ranges; the lease goes with the container.
#[test]
fn root_owned_rootfs_gets_a_pool_range_and_an_idmapped_view() {
    const POOL_START: u64 = 3 << 30;
    let env = engine_with_pool("pool", POOL_START, 4);
    let mut first = Running::run(
        &env,
        &[
            "--name",
            "pool1",
            rootfs(),
            "--",
            "sh",
            "-c",
            "cat /proc/self/uid_map; stat -c %u:%g /bin/busybox /etc; read x; true",
        ],
    );
    let (inside, base1, size) = uid_map(&first.line());
    assert_eq!((inside, size), (0, 65536));
    assert!(base1 >= POOL_START, "base {base1} is not from the pool");
    first.expect("0:0");
    first.expect("0:0");
    // A named container's range is the one its name picks in a free pool.
    assert_eq!(
        (base1 - POOL_START) % 65536,
        0,
        "base {base1} is not a range's"
    );
    assert!(
        base1 < POOL_START + 4 * 65536,
        "base {base1} is past the pool"
    );
    assert_eq!(held_ranges(&env), [("pool1".to_string(), base1)]);

    let a = run(
        &env,
        &[
            "--name",
            "pool2",
            rootfs(),
            "--",
            "cat",
            "/proc/self/uid_map",
        ],
    )
    .code(0);
    let (_, base2, _) = uid_map(stdout(&a).trim());
    assert!(base2 >= POOL_START, "base {base2} is not from the pool");
    assert_ne!(base1, base2, "two running containers share a range");
    assert_eq!(
        (base2 - POOL_START) % 65536,
        0,
        "base {base2} is not a range's"
    );
    assert!(
        base2 < POOL_START + 4 * 65536,
        "base {base2} is past the pool"
    );

    assert!(first.wait().success());
    assert_eq!(
        held_ranges(&env),
        Vec::<(String, u64)>::new(),
        "ranges held after exit"
    );
    assert_no_lease_files(&env);
    env.assert_clean();
}

/// A file the container writes into a volume is owned on the host by the
/// container's base, not by root.
#[test]
fn volume_writes_land_as_the_base() {
    let env = engine("volbase");
    let vol = tempfile::tempdir().unwrap();
    chmod(vol.path(), 0o777);
    let spec = format!("{}:/data", vol.path().display());
    let a = run(
        &env,
        &[
            "-v",
            &spec,
            "--name",
            "vb",
            rootfs(),
            "--",
            "sh",
            "-c",
            "cat /proc/self/uid_map; echo hi > /data/f",
        ],
    )
    .code(0);
    let (_, base, _) = uid_map(stdout(&a).trim());
    let meta = std::fs::metadata(vol.path().join("f")).unwrap();
    assert_eq!(
        (meta.uid() as u64, meta.gid() as u64),
        (base, base),
        "the file the container wrote is not owned by its base"
    );
    assert!(base >= POOL_START);
    env.assert_clean();
}

/// SIGKILL of the engine leaves its record and its lease of the range; the
/// next invocation frees it: the stale lease is gone and a new container
/// gets the same range.
#[test]
fn range_of_a_killed_engine_is_freed_by_the_next_invocation() {
    let env = engine_with_pool("leasekill", (3 << 30) + (16 << 16), 4);
    let mut c = Running::run(
        &env,
        &[
            "--name",
            "lk",
            rootfs(),
            "--",
            "sh",
            "-c",
            "echo up; sleep 60",
        ],
    );
    c.expect("up");
    let held = held_ranges(&env);
    assert_eq!(held.len(), 1, "{held:?}");
    let killed_base = held[0].1;
    c.signal(Signal::SIGKILL);
    let _ = c.wait();
    assert_eq!(
        held_ranges(&env),
        held,
        "the killed engine's lease should remain until the next invocation"
    );
    // The next invocation is the next run: it recovers the stale record
    // under the state lock before it picks a range (the one its name
    // picks, free again).
    let a = run(
        &env,
        &["--name", "lk", rootfs(), "--", "cat", "/proc/self/uid_map"],
    )
    .code(0);
    let (_, base, _) = uid_map(stdout(&a).trim());
    assert_eq!(base, killed_base, "the freed range is not reused");
    assert_eq!(
        held_ranges(&env),
        Vec::<(String, u64)>::new(),
        "the stale lease is left"
    );
    assert_no_lease_files(&env);
    env.assert_clean();
}

/// A rootfs under a directory only host root may search (0700) runs: the
/// parent opens it, the container never walks the host path.
#[test]
fn rootfs_under_a_private_directory_runs() {
    let env = engine("private");
    let dir = tempfile::tempdir().unwrap();
    chmod(dir.path(), 0o700);
    let root = dir.path().join("root");
    busybox::copy_to(&root);
    let a = run(
        &env,
        &[
            "--name",
            "priv",
            root.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            "id -u; cat /proc/self/uid_map",
        ],
    )
    .code(0);
    let out = stdout(&a);
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("0"), "{out}");
    let (_, base, _) = uid_map(lines.next().unwrap_or(""));
    assert!(base >= POOL_START, "{out}");
    env.assert_clean();
}

/// `:ro` is recursive: a mount below the volume's source is read-only in the
/// container too, and neither can be remounted read-write from inside. The
/// submount exists only in a mount namespace of this test's thread.
#[test]
fn read_only_volume_is_read_only_with_its_submounts() {
    use nix::mount::{mount, MsFlags};
    testkit::mountns::enter_private();
    let env = engine("rovol");
    let vol = tempfile::tempdir().unwrap();
    chmod(vol.path(), 0o777);
    let sub = vol.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    mount(
        Some("tmpfs"),
        &sub,
        Some("tmpfs"),
        MsFlags::empty(),
        Some("mode=777"),
    )
    .unwrap();
    let spec = format!("{}:/ro:ro", vol.path().display());
    let a = run(
        &env,
        &[
            "-v",
            &spec,
            "--name",
            "rv",
            rootfs(),
            "--",
            "sh",
            "-c",
            "echo STARTED; touch /ro/a && echo WROTE-TOP; touch /ro/sub/a && echo WROTE-SUB; \
             mount -o remount,rw /ro && echo REMOUNTED-TOP; mount -o remount,rw /ro/sub && echo REMOUNTED-SUB; \
             touch /ro/b /ro/sub/b 2>/dev/null && echo WROTE-AFTER; echo DONE",
        ],
    );
    let out = stdout(&a);
    assert!(
        out.starts_with("STARTED") && out.trim_end().ends_with("DONE"),
        "{out}"
    );
    for bad in [
        "WROTE-TOP",
        "WROTE-SUB",
        "REMOUNTED-TOP",
        "REMOUNTED-SUB",
        "WROTE-AFTER",
    ] {
        assert!(!out.contains(bad), "{bad}: {out}");
    }
    assert_eq!(std::fs::read_dir(vol.path()).unwrap().count(), 1);
    assert_eq!(std::fs::read_dir(&sub).unwrap().count(), 0);
    nix::mount::umount(&sub).unwrap();
    env.assert_clean();
}

/// `--layer-size` sizes the tmpfs of the copy-on-write layer.
#[test]
fn layer_size_is_honoured() {
    let env = engine("layersize");
    let a = run(
        &env,
        &[
            "--layer-size",
            "50M",
            "--name",
            "ls1",
            rootfs(),
            "--",
            "df",
            "-k",
            "/",
        ],
    )
    .code(0);
    let out = stdout(&a);
    let total: u64 = out
        .lines()
        .find(|l| l.starts_with("overlay"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or_else(|| panic!("no df line for /: {out}"));
    assert_eq!(total, 50 * 1024, "{out}");
    run(
        &env,
        &[
            "--layer-size",
            "1M",
            "--name",
            "ls2",
            rootfs(),
            "--",
            "true",
        ],
    )
    .code(125)
    .stderr(predicate::str::contains("--layer-size"));
    env.assert_clean();
}

/// A volume target whose path goes through a rootfs symlink to a magic link
/// (`/proc/self/root`, the host's root while the mounts are made) is refused,
/// and nothing is made or mounted on the host.
#[test]
fn symlinked_volume_target_stays_inside_the_root() {
    let env = engine("symtarget");
    let dir = tempfile::tempdir().unwrap();
    chmod(dir.path(), 0o755);
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let root = dir.path().join("root");
    busybox::copy_to(&root);
    std::os::unix::fs::symlink(
        Path::new("/proc/self/root").join(outside.strip_prefix("/").unwrap()),
        root.join("link"),
    )
    .unwrap();
    let vol = tempfile::tempdir().unwrap();
    chmod(vol.path(), 0o777);
    let spec = format!("{}:/link/data", vol.path().display());
    run(
        &env,
        &[
            "-v",
            &spec,
            "--name",
            "st",
            root.to_str().unwrap(),
            "--",
            "true",
        ],
    )
    .code(125)
    .stderr(predicate::str::contains("/link/data"));
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        0,
        "the volume target was made on the host, outside the rootfs"
    );
    env.assert_clean();
}

/// Where the rootfs's file system cannot be idmapped (ramfs), the run is
/// refused with the sentence that says what to use instead, and nothing is
/// left: no record, no lease, no cgroup, no mount. The ramfs exists only in
/// a mount namespace of this test's thread.
#[test]
fn rootfs_that_cannot_be_idmapped_is_refused_and_undone() {
    use nix::mount::{mount, MsFlags};
    testkit::mountns::enter_private();
    let env = engine("noidmap");
    let dir = tempfile::tempdir().unwrap();
    mount(
        Some("ramfs"),
        dir.path(),
        Some("ramfs"),
        MsFlags::empty(),
        None::<&str>,
    )
    .unwrap();
    let root = dir.path().join("root");
    busybox::copy_to(&root);
    run(
        &env,
        &["--name", "ni", root.to_str().unwrap(), "--", "true"],
    )
    .code(125)
    .stderr(
        predicate::str::contains("cannot be idmapped").and(predicate::str::contains("--userns")),
    );
    assert_eq!(held_ranges(&env), Vec::<(String, u64)>::new());
    assert_no_lease_files(&env);
    env.assert_clean();
    nix::mount::umount(dir.path()).unwrap();
}

/// `--write-through` on a root-owned rootfs: the idmapped tree is the root
/// itself, so container root edits root's files and what it creates is owned
/// by host root on disk, as the rest of the rootfs.
#[test]
fn write_through_writes_land_mapped_back() {
    let env = engine("wt");
    let (_dir, root) = rootfs_copy("root");
    let a = run_write_through(&env, &root, "cat /proc/self/uid_map; echo new > /etc/new");
    let (_, base, _) = uid_map(stdout(&a).trim());
    assert!(base >= POOL_START);
    let meta = std::fs::metadata(root.join("etc/new")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (0, 0));
    env.assert_clean();
}
