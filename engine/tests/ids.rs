//! A container's host IDs are the engine's choice, never the image's, and
//! no two containers share them, whatever their state directory (issue 22,
//! items 2, 3 and 5). Each test is an attack that succeeded before the fix:
//! - a tarball whose `./` is owned by 1000 made container root host user
//!   1000 (`--userns auto` maps from the owner of the rootfs's root), and
//!   one whose `./` is owned by 2^30 - BASE, pulled with `--owner BASE`,
//!   landed on the first range of the pool;
//! - `--owner` and a rootfs's owner were taken whatever they were;
//! - `--userns 0` made container root host root;
//! - two state directories handed out the same pool range, and ranges from
//!   a rootfs's owner were leased nowhere.

mod common;
use common::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use testkit::tarball::{header, EntryType};

const POOL_START: u64 = 1 << 30;
const POOL_END: u64 = 1 << 31;
const SIZE: u64 = 65536;

/// One line of a /proc/PID/uid_map or gid_map: (inside, host, count).
type IdMap = (u64, u64, u64);

/// The one line of a /proc/PID/uid_map or gid_map.
fn id_map(text: &str) -> IdMap {
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "map {text:?}");
    let n: Vec<u64> = lines[0]
        .split_whitespace()
        .map(|w| w.parse().unwrap_or_else(|_| panic!("map {text:?}")))
        .collect();
    assert_eq!(n.len(), 3, "map {text:?}");
    (n[0], n[1], n[2])
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A tarball of the busybox fixture whose `./` entry, last in the archive
/// (so that it wins), is owned by `root_owner`.
fn tarball_with_root_owner(dir: &Path, root_owner: u64) -> String {
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    b.append_dir_all(".", busybox::rootfs()).unwrap();
    let mut h = header(EntryType::Directory, 0o755);
    h.as_old_mut().name[..2].copy_from_slice(b"./");
    h.set_uid(root_owner);
    h.set_gid(root_owner);
    h.set_cksum();
    b.append(&h, &[][..]).unwrap();
    let tarball = dir.join(format!("root-owned-by-{root_owner}.tar"));
    std::fs::write(&tarball, b.into_inner().unwrap()).unwrap();
    format!("file://{}", tarball.display())
}

/// `engine rootfs pull URL [--owner BASE] DEST`.
fn pull(env: &Engine, url: &str, owner: Option<u64>, dest: &Path) -> Assert {
    let mut cmd = env.cmd();
    cmd.args(["rootfs", "pull", url]);
    if let Some(base) = owner {
        cmd.args(["--owner", &base.to_string()]);
    }
    cmd.arg(dest).assert()
}

/// The container's uid map and the host owner of a setuid copy of its
/// shell that container root leaves in a volume: who the container's root
/// is on the host.
fn root_on_the_host(env: &Engine, rootfs: &Path, name: &str) -> ((u64, u64, u64), (u32, u32)) {
    let vol = tempfile::tempdir().unwrap();
    chmod(vol.path(), 0o777);
    let spec = format!("{}:/v", vol.path().display());
    let a = run(
        env,
        &[
            "-v",
            &spec,
            "--name",
            name,
            rootfs.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            "cat /proc/self/uid_map; cp /bin/busybox /v/sh && chmod 4755 /v/sh",
        ],
    )
    .code(0);
    let map = id_map(&stdout(&a));
    let meta = std::fs::metadata(vol.path().join("sh")).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o4755);
    (map, (meta.uid(), meta.gid()))
}

/// A tarball whose `./` belongs to host user 1000: the pulled root is host
/// root's, so the container gets a range of the pool and the setuid binary
/// it leaves in a volume belongs to that range, not to user 1000.
#[test]
fn an_archive_root_owned_by_a_host_user_does_not_choose_the_host_ids() {
    let env = engine("archroot");
    let dir = tempfile::tempdir_in(busybox::scratch_root()).unwrap();
    let url = tarball_with_root_owner(dir.path(), 1000);
    let dest = dir.path().join("rootfs");
    pull(&env, &url, None, &dest).code(0);
    let root = std::fs::metadata(&dest).unwrap();
    let (map, owner) = root_on_the_host(&env, &dest, "ar");
    assert_eq!(
        (root.uid(), root.gid()),
        (0, 0),
        "the archive's ./ chose the owner of the rootfs (container map {map:?})"
    );
    let (inside, base, count) = map;
    assert_eq!((inside, count), (0, SIZE));
    assert!(
        (POOL_START..POOL_END).contains(&base),
        "container root is host uid {base}, not a range of the pool"
    );
    assert_eq!(
        owner,
        (base as u32, base as u32),
        "the setuid binary the container left is not its pool range's"
    );
    assert_eq!(id_leases(env.state_dir()), Vec::new());
    env.assert_clean();
}

/// A `./` owned by 2^30 - BASE pulled with `--owner BASE` used to land on
/// 2^30, the first range of the pool (another container's): the root is
/// BASE's, whatever the archive says.
#[test]
fn an_archive_root_cannot_shift_itself_onto_the_pool() {
    const BASE: u64 = 2 * SIZE;
    let env = engine("archshift");
    let dir = tempfile::tempdir_in(busybox::scratch_root()).unwrap();
    let url = tarball_with_root_owner(dir.path(), POOL_START - BASE);
    let dest = dir.path().join("rootfs");
    pull(&env, &url, Some(BASE), &dest).code(0);
    let root = std::fs::metadata(&dest).unwrap();
    assert_eq!(
        (root.uid() as u64, root.gid() as u64),
        (BASE, BASE),
        "the archive's ./ chose the owner of the shifted rootfs"
    );
    let (map, owner) = root_on_the_host(&env, &dest, "as");
    assert_eq!(map, (0, BASE, SIZE));
    assert_eq!(owner, (BASE as u32, BASE as u32));
    env.assert_clean();
}

/// `rootfs pull --owner BASE` refused (125, nothing created): DEST is not
/// made and nothing is left beside it.
fn assert_owner_refused(env: &Engine, url: &str, base: u64, why: &str) {
    let dir = tempfile::tempdir_in(busybox::scratch_root()).unwrap();
    let dest = dir.path().join("rootfs");
    let a = pull(env, url, Some(base), &dest).code(125);
    let err = stderr(&a);
    assert!(
        err.contains(&format!("--owner {base}")) && err.contains(why),
        "--owner {base}: want {why:?} in: {err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
    assert!(left.is_empty(), "--owner {base} left {left:?}");
}

/// `--owner` values the engine would never choose: not a multiple of
/// 65536, below 65536, in the pool, past 2^32.
#[test]
fn owner_bases_the_engine_would_not_choose_are_refused() {
    let env = engine("ownerbad");
    let dir = tempfile::tempdir_in(busybox::scratch_root()).unwrap();
    let url = tarball_with_root_owner(dir.path(), 0);
    for (base, why) in [
        (100_000, "not a multiple of 65536"),
        (0, "below 65536"),
        (1000, "below 65536"),
        (POOL_START, "pool"),
        (POOL_START + 7 * SIZE, "pool"),
        (u32::MAX as u64 + 1 - SIZE, "2^32"),
    ] {
        assert_owner_refused(&env, &url, base, why);
    }
    let dest = dir.path().join("ok");
    pull(&env, &url, Some(3 * SIZE), &dest).code(0);
    assert_eq!(std::fs::metadata(&dest).unwrap().uid() as u64, 3 * SIZE);
}

/// A view of /etc, in a mount namespace of this thread only, whose account
/// files hand out IDs above 65536: a user with uid 200000, a group with gid
/// 262145, the subuid range 327680+65536, the subgid range 458752+65536.
fn etc_with_high_ids() -> tempfile::TempDir {
    testkit::mountns::enter_private();
    let dir = tempfile::tempdir_in(busybox::scratch_root()).unwrap();
    let (upper, work) = (dir.path().join("upper"), dir.path().join("work"));
    std::fs::create_dir(&upper).unwrap();
    std::fs::create_dir(&work).unwrap();
    let opts = format!(
        "lowerdir=/etc,upperdir={},workdir={}",
        upper.display(),
        work.display()
    );
    nix::mount::mount(
        Some("overlay"),
        "/etc",
        Some("overlay"),
        nix::mount::MsFlags::empty(),
        Some(opts.as_str()),
    )
    .expect("an overlay on /etc in a private mount namespace");
    let append = |file: &str, line: &str| {
        let mut text = std::fs::read_to_string(file).unwrap_or_default();
        text.push_str(line);
        std::fs::write(file, text).unwrap();
    };
    append(
        "/etc/passwd",
        "idstest:x:200000:200000::/nonexistent:/bin/false\n",
    );
    append("/etc/group", "idstest:x:262145:\n");
    append("/etc/subuid", "idstest:327680:65536\n");
    append("/etc/subgid", "idstest:458752:65536\n");
    dir
}

/// `--owner` ranges holding an ID the host's account files hand out are
/// refused, naming the file; a rootfs owned by one is refused by `run`.
/// (The account files are this thread's private view of /etc.)
#[test]
fn owner_bases_overlapping_the_host_users_are_refused() {
    let _etc = etc_with_high_ids();
    let env = engine("ownerhost");
    let dir = tempfile::tempdir_in(busybox::scratch_root()).unwrap();
    let url = tarball_with_root_owner(dir.path(), 0);
    for (base, why) in [
        (3 * SIZE, "uid 200000 (idstest) in /etc/passwd"),
        (4 * SIZE, "gid 262145 (idstest) in /etc/group"),
        (5 * SIZE, "/etc/subuid"),
        (7 * SIZE, "/etc/subgid"),
    ] {
        assert_owner_refused(&env, &url, base, why);
    }
    // Between them: 393216..458751 overlaps none of them.
    let dest = dir.path().join("ok");
    pull(&env, &url, Some(6 * SIZE), &dest).code(0);

    // A rootfs given to a subuid range by other means.
    let (_copy, root) = rootfs_copy("subuid-owned");
    std::os::unix::fs::chown(&root, Some(5 * SIZE as u32), Some(5 * SIZE as u32)).unwrap();
    let a = run(
        &env,
        &["--name", "so", root.to_str().unwrap(), "--", "true"],
    )
    .code(125);
    let err = stderr(&a);
    assert!(
        err.contains("owned by 327680:327680") && err.contains("/etc/subuid"),
        "{err}"
    );
    env.assert_clean();
}

/// A rootfs whose root was given to a host user (by a chown, an unpacker,
/// anything) is refused by `run` with what to do, and nothing is made; one
/// given to a base the engine would choose maps from it.
#[test]
fn a_rootfs_owned_by_a_host_user_is_refused() {
    let env = engine("ownedroot");
    let (_copy, root) = rootfs_copy("user-owned");
    std::os::unix::fs::chown(&root, Some(1000), Some(1000)).unwrap();
    let a = run(
        &env,
        &["--name", "uo", root.to_str().unwrap(), "--", "true"],
    )
    .code(125);
    let err = stderr(&a);
    for want in ["owned by 1000:1000", "chown 0:0", "--owner"] {
        assert!(err.contains(want), "want {want:?} in: {err}");
    }
    assert_eq!(id_leases(env.state_dir()), Vec::new());
    env.assert_clean();

    // Only the gid is a host group's (0, root's): refused too.
    let base = (POOL_END + 9 * SIZE) as u32;
    std::os::unix::fs::chown(&root, Some(base), Some(0)).unwrap();
    let a = run(
        &env,
        &["--name", "uo", root.to_str().unwrap(), "--", "true"],
    )
    .code(125);
    assert!(stderr(&a).contains("gid 0"), "{}", stderr(&a));

    std::os::unix::fs::chown(&root, Some(base), Some(base)).unwrap();
    let a = run(
        &env,
        &[
            "--name",
            "uo",
            root.to_str().unwrap(),
            "--",
            "cat",
            "/proc/self/uid_map",
        ],
    )
    .code(0);
    assert_eq!(id_map(&stdout(&a)), (0, base as u64, SIZE));
    env.assert_clean();
}

/// `--userns 0` made container root host root (a root-only file opened);
/// `--userns 1000` made it host user 1000. Both are refused before
/// anything is made.
#[test]
fn userns_bases_of_host_users_are_refused() {
    let env = engine("userns0");
    let vol = tempfile::tempdir().unwrap();
    chmod(vol.path(), 0o755);
    let secret = vol.path().join("secret");
    std::fs::write(&secret, "host secret\n").unwrap();
    chmod(&secret, 0o400);
    let spec = format!("{}:/v", vol.path().display());
    for base in [0u32, 1000] {
        std::os::unix::fs::chown(&secret, Some(base), Some(base)).unwrap();
        let b = base.to_string();
        let a = run(
            &env,
            &[
                "--userns",
                &b,
                "-v",
                &spec,
                "--name",
                "u0",
                rootfs(),
                "--",
                "cat",
                "/v/secret",
            ],
        )
        .code(125);
        assert!(!stdout(&a).contains("secret"), "--userns {base} read it");
        let err = stderr(&a);
        assert!(
            err.contains(&format!("--userns {base}")) && err.contains("--userns host"),
            "{err}"
        );
        env.assert_clean();
    }
}

/// The pids of a state directory's running containers, by name.
fn pids(env: &Engine) -> Vec<(String, i32)> {
    let a = env.cmd().args(["ps", "--format", "json"]).assert().code(0);
    let rows: serde_json::Value = serde_json::from_str(&stdout(&a)).unwrap();
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["pid"].as_i64().unwrap() as i32,
            )
        })
        .collect()
}

/// Stops `engine run -d` containers when dropped, so that a failed test
/// leaves none running (stopping one that is gone is harmless).
struct StopOnDrop<'a>(&'a Engine, Vec<String>);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self
            .0
            .cmd()
            .args(["stop", "-t", "0"])
            .args(&self.1)
            .output();
    }
}

/// SIGKILLs a container's init when dropped, if it still is that process
/// (a failed test leaves no orphan running).
struct KillOnDrop(i32, u64);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let same = procfs_start(self.0) == Some(self.1);
        if same {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.0),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Field 22 of /proc/PID/stat, if the process exists.
fn procfs_start(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..]
        .split(' ')
        .nth(19)?
        .parse()
        .ok()
}

fn span_overlap((a, n): (u64, u64), (b, m): (u64, u64)) -> bool {
    a < b + m && b < a + n
}

/// Two state directories side by side, 20 detached containers each (run
/// from two threads at once): every pair of the 40 uid maps, and of the 40
/// gid maps, is disjoint. Then all 40 are stopped and no lease is left.
#[test]
fn two_state_directories_never_share_a_range() {
    const EACH: usize = 20;
    let envs = [engine("twodirs-a"), engine("twodirs-b")];
    let _stop: Vec<StopOnDrop> = envs
        .iter()
        .zip(["a", "b"])
        .map(|(env, tag)| StopOnDrop(env, names(tag)))
        .collect();
    fn names(tag: &str) -> Vec<String> {
        (0..EACH).map(|i| format!("{tag}{i}")).collect()
    }
    std::thread::scope(|s| {
        for (env, tag) in envs.iter().zip(["a", "b"]) {
            s.spawn(move || {
                for name in names(tag) {
                    env.cmd()
                        .args(detached_args(rootfs(), &name, &["sleep", "600"]))
                        .assert()
                        .code(0);
                }
            });
        }
    });
    // (name, uid map, gid map)
    let mut maps: Vec<(String, IdMap, IdMap)> = Vec::new();
    for env in &envs {
        for (name, pid) in pids(env) {
            let read = |f: &str| std::fs::read_to_string(format!("/proc/{pid}/{f}")).unwrap();
            maps.push((name, id_map(&read("uid_map")), id_map(&read("gid_map"))));
        }
    }
    assert_eq!(maps.len(), 2 * EACH, "{maps:?}");
    for (name, u, g) in &maps {
        assert_eq!((u.0, u.2, g.0, g.2), (0, SIZE, 0, SIZE), "{name}");
        assert!((POOL_START..POOL_END).contains(&u.1), "{name}: {u:?}");
    }
    for (i, (n1, u1, g1)) in maps.iter().enumerate() {
        for (n2, u2, g2) in &maps[i + 1..] {
            assert!(
                !span_overlap((u1.1, u1.2), (u2.1, u2.2)),
                "{n1} and {n2} share uids: {u1:?} {u2:?}"
            );
            assert!(
                !span_overlap((g1.1, g1.2), (g2.1, g2.2)),
                "{n1} and {n2} share gids: {g1:?} {g2:?}"
            );
        }
    }
    for (env, tag) in envs.iter().zip(["a", "b"]) {
        let held: Vec<String> = id_leases(env.state_dir())
            .into_iter()
            .map(|l| l.name)
            .collect();
        assert_eq!(held.len(), EACH, "{held:?}");
        let mut stop = vec!["stop".to_string(), "-t".into(), "0".into()];
        stop.extend(names(tag));
        env.cmd().args(&stop).assert().code(0);
    }
    for env in &envs {
        assert_eq!(id_leases(env.state_dir()), Vec::new(), "leases left");
        env.assert_clean();
    }
}

/// A rootfs owned by an acceptable base, at `dir/name`.
fn shifted_copy(name: &str, base: u64) -> (tempfile::TempDir, PathBuf) {
    let (dir, root) = rootfs_copy(name);
    std::os::unix::fs::chown(&root, Some(base as u32), Some(base as u32)).unwrap();
    (dir, root)
}

/// The range of a shifted rootfs, and a `--userns BASE` range, are leased
/// too: while one container holds them, a container of another state
/// directory is refused them (naming the holder), and so is one that asks
/// for a pool range a container holds.
#[test]
fn fixed_ranges_are_leased_across_state_directories() {
    const BASE: u64 = POOL_END + 16 * SIZE;
    let (a, b) = (engine("fixed-a"), engine("fixed-b"));
    let (_copy, root) = shifted_copy("shifted", BASE);
    let root = root.to_str().unwrap();
    let _stop = StopOnDrop(&a, vec!["sa".into(), "pa".into()]);
    a.cmd()
        .args(detached_args(root, "sa", &["sleep", "600"]))
        .assert()
        .code(0);
    let refused = |args: &[&str], holder: &str| {
        let out = run(&b, args).code(125);
        let err = stderr(&out);
        assert!(
            err.contains(&format!("container {holder} (state directory "))
                && err.contains("stop it"),
            "{args:?}: {err}"
        );
        assert_eq!(id_leases(b.state_dir()), Vec::new());
        b.assert_clean();
    };
    refused(&["--name", "sb", root, "--", "true"], "sa");
    let base = BASE.to_string();
    refused(
        &["--userns", &base, "--name", "sb", rootfs(), "--", "true"],
        "sa",
    );
    let within = (BASE + SIZE / 2).to_string();
    refused(
        &["--userns", &within, "--name", "sb", rootfs(), "--", "true"],
        "sa",
    );

    // A pool range held by a container of `a`, asked for with --userns.
    a.cmd()
        .args(detached_args(rootfs(), "pa", &["sleep", "600"]))
        .assert()
        .code(0);
    let pool_base = id_leases(a.state_dir())
        .into_iter()
        .find(|l| l.name == "pa")
        .unwrap()
        .uids[0]
        .0
        .to_string();
    refused(
        &[
            "--userns",
            &pool_base,
            "--name",
            "sb",
            rootfs(),
            "--",
            "true",
        ],
        "pa",
    );

    a.cmd()
        .args(["stop", "-t", "0", "sa", "pa"])
        .assert()
        .code(0);
    assert_eq!(id_leases(a.state_dir()), Vec::new());
    let out = run(
        &b,
        &["--name", "sb", root, "--", "cat", "/proc/self/uid_map"],
    )
    .code(0);
    assert_eq!(id_map(&stdout(&out)), (0, BASE, SIZE));
    a.assert_clean();
    b.assert_clean();
}

/// The engine of a foreground container is SIGKILLed while the container
/// runs on (its PID 1 changed its uid, which clears the parent-death
/// signal): its range stays leased (to its init), so another state
/// directory gets another. The next invocation of the first state
/// directory ends the container and frees the range.
#[test]
fn a_killed_engines_range_stays_taken_while_its_container_runs() {
    const START: u64 = (3 << 30) + (32 << 16);
    let pool = format!("{START}:{}", 2 * SIZE);
    let a = engine("killed-a").with_env("ENGINE_USERNS_POOL", pool.clone());
    let b = engine("killed-b").with_env("ENGINE_USERNS_POOL", pool);
    let mut c = Running::run(
        &a,
        &[
            "--name",
            "ka",
            rootfs(),
            "--",
            "sh",
            "-c",
            "echo up; exec su -s /bin/sh nobody -c 'exec sleep 600'",
        ],
    );
    c.expect("up");
    let init = container_pid(&a, "ka");
    let _kill = KillOnDrop(init, testkit::procinfo::start_time(init));
    let proc_file =
        |f: &str| std::fs::read_to_string(format!("/proc/{init}/{f}")).unwrap_or_default();
    assert_eq!(id_map(&proc_file("uid_map")).1, START);
    let nobody = format!("Uid:\t{n}\t{n}\t{n}\t{n}", n = START + 65534);
    wait::until(SHORT, "PID 1 to become nobody", || {
        proc_file("status")
            .lines()
            .any(|l| l == nobody)
            .then_some(())
    });
    c.signal(nix::sys::signal::Signal::SIGKILL);
    let _ = c.wait();
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(
        proc_file("status").contains(&nobody),
        "the container did not outlive its engine"
    );
    let out = run(
        &b,
        &["--name", "kb", rootfs(), "--", "cat", "/proc/self/uid_map"],
    )
    .code(0);
    assert_eq!(
        id_map(&stdout(&out)).1,
        START + SIZE,
        "the range of a running container was handed out again"
    );
    assert_eq!(id_leases(a.state_dir()).len(), 1);
    a.cmd().args(["ps"]).assert().code(0);
    wait::pid_gone(init, SHORT).unwrap();
    assert_eq!(
        id_leases(a.state_dir()),
        Vec::new(),
        "the next invocation left the lease"
    );
    let out = run(
        &b,
        &["--name", "kb", rootfs(), "--", "cat", "/proc/self/uid_map"],
    )
    .code(0);
    assert_eq!(id_map(&stdout(&out)).1, START);
    a.assert_clean();
    b.assert_clean();
}
