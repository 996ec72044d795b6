//! Issue 22, items 8 and 9: what a container's mounts do to the host.
//!
//! 9. No mount of a container ever appears in the host's mount namespace,
//!    whatever the propagation of `/`, the rootfs or a volume. Every systemd
//!    host (and GitHub's runners) has `/` shared, and this project's machines
//!    do not: each case works in a mount namespace of its own made rshared
//!    (`testkit::mountns::in_shared`), with the rootfs and the volumes as
//!    plain directories and as mount points, and compares that namespace's
//!    mounts before and after `run`, `run --write-through`, `run -v`, `exec`,
//!    a container mounting into its volumes, and OCI `create`/`start`/`delete`.
//!    Each operation must also succeed: with clones left in the host's peer
//!    groups, write-through and OCI runs failed pivot_root with EINVAL.
//! 8. A directory volume is nosuid: a setuid file that container root leaves
//!    in one does not lift another process of the container.

mod common;

use common::*;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use rstest::rstest;
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use testkit::mountns::{in_shared, Mounts};

/// How a source (the rootfs, a volume) sits on the host.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Source {
    /// A directory on the file system of `/`, itself shared.
    Plain,
    /// A mount point: a bind mount of itself (rootfs), a tmpfs (volume).
    MountPoint,
}

/// The test's "host": a temporary directory holding a private busybox
/// rootfs (write-through writes into it) and two volumes, `vol` a plain
/// directory and `volmp` a tmpfs, each holding a marker file.
struct Host {
    dir: tempfile::TempDir,
    root: PathBuf,
}

impl Host {
    /// Call from the thread in the shared namespace: the mounts are made
    /// there.
    fn new(rootfs: Source) -> Host {
        let dir = tempfile::Builder::new()
            .prefix("engine-host-mounts-")
            .tempdir_in(busybox::scratch_root())
            .unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let root = dir.path().join("rootfs");
        busybox::copy_to(&root);
        if rootfs == Source::MountPoint {
            mount(
                Some(&root),
                &root,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .expect("bind-mount the rootfs onto itself");
        }
        let host = Host { dir, root };
        std::fs::create_dir(host.vol()).unwrap();
        std::fs::create_dir(host.volmp()).unwrap();
        mount(
            Some("tmpfs"),
            &host.volmp(),
            Some("tmpfs"),
            MsFlags::empty(),
            Some("size=1m,mode=755"),
        )
        .expect("mount a tmpfs volume");
        for v in [host.vol(), host.volmp()] {
            std::fs::create_dir(v.join("sub")).unwrap();
            std::fs::write(v.join("marker"), "volume-marker\n").unwrap();
        }
        host
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn root(&self) -> &str {
        self.root.to_str().unwrap()
    }

    fn vol(&self) -> PathBuf {
        self.path("vol")
    }

    fn volmp(&self) -> PathBuf {
        self.path("volmp")
    }

    /// `-v` arguments for both volumes.
    fn volume_args(&self) -> Vec<String> {
        vec![
            "-v".into(),
            format!("{}:/vol", self.vol().display()),
            "-v".into(),
            format!("{}:/volmp", self.volmp().display()),
        ]
    }
}

/// Every mount under the directory (ours, and any an engine leaked) is
/// detached first, deepest first, so that the directory can be removed.
impl Drop for Host {
    fn drop(&mut self) {
        let mut points: Vec<PathBuf> = Mounts::now()
            .0
            .iter()
            .filter_map(|l| l.split(' ').nth(4).map(PathBuf::from))
            .filter(|p| p.starts_with(self.dir.path()))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for p in points {
            let _ = umount2(&p, MntFlags::MNT_DETACH);
        }
    }
}

/// The mounts the engine left in (or took from) the test's namespace,
/// operation by operation, and the operations that failed.
struct Ledger {
    base: Mounts,
    problems: Vec<String>,
}

impl Ledger {
    fn new() -> Ledger {
        Ledger {
            base: Mounts::now(),
            problems: Vec::new(),
        }
    }

    /// Notes any change of the namespace's mounts since the start (or the
    /// last `rebase`), after `what`.
    fn check(&mut self, what: &str) {
        let changes = Mounts::now().changes_since(&self.base);
        if !changes.is_empty() {
            self.problems.push(format!(
                "after {what}, {} mount(s) changed in the host's namespace:\n    {}",
                changes.len(),
                changes.join("\n    ")
            ));
            // Later steps are judged on their own.
            self.base = Mounts::now();
        }
    }

    /// `engine ARGS` must succeed (printing `want`, if given); then `check`.
    fn engine(&mut self, env: &Engine, args: &[&str], want: Option<&str>) {
        let what = format!("engine {}", args.join(" "));
        let out = env.cmd().args(args).output().expect("run the engine");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if !out.status.success() {
            self.problems
                .push(format!("{what} failed ({}): {}", out.status, text.trim()));
        } else if let Some(want) = want.filter(|w| !text.contains(w)) {
            self.problems
                .push(format!("{what} did not print {want:?}: {}", text.trim()));
        }
        self.check(&what);
    }

    fn assert_clean(self, what: &str) {
        assert!(
            self.problems.is_empty(),
            "{what}: {} problem(s):\n{}",
            self.problems.len(),
            self.problems.join("\n")
        );
    }
}

#[rstest]
#[case::plain_rootfs(Source::Plain)]
#[case::mount_point_rootfs(Source::MountPoint)]
fn no_container_mount_reaches_a_shared_host(#[case] rootfs: Source) {
    in_shared(move || {
        let host = Host::new(rootfs);
        let env = engine("shared-host");
        let root = host.root();
        let vols = host.volume_args();
        let vols: Vec<&str> = vols.iter().map(String::as_str).collect();
        let cat = "cat /vol/marker /volmp/marker";
        let mut ledger = Ledger::new();

        for layer in [&[][..], &["--write-through"][..]] {
            fn run_args<'a>(layer: &[&'a str], rest: &[&'a str]) -> Vec<&'a str> {
                [&["run", "--net", "none"], layer, rest].concat()
            }
            ledger.engine(&env, &run_args(layer, &[root, "--", "true"]), None);
            let with_vols = [&vols[..], &[root, "--", "sh", "-c", cat]].concat();
            ledger.engine(&env, &run_args(layer, &with_vols), Some("volume-marker"));
            // Container root that may mount: onto each volume and under it.
            let mounts = "mount -t tmpfs none /vol/sub && mount -t tmpfs none /volmp/sub \
                          && mount -t tmpfs none /vol && mount -t tmpfs none /volmp && echo mounted";
            let privileged = [
                &["--privileged"][..],
                &vols[..],
                &[root, "--", "sh", "-c", mounts],
            ]
            .concat();
            ledger.engine(&env, &run_args(layer, &privileged), Some("mounted"));
        }

        // A running container, and exec into it; the volumes are slaves: a
        // mount the host makes in one later shows inside.
        let detached = [
            &["run", "-d", "--net", "none"][..],
            &vols[..],
            &["--name", "held", root, "--", "sleep", "60"],
        ]
        .concat();
        ledger.engine(&env, &detached, None);
        ledger.engine(
            &env,
            &["exec", "held", "--", "sh", "-c", cat],
            Some("volume-marker"),
        );
        let late = host.volmp().join("late");
        std::fs::create_dir(&late).unwrap();
        mount(
            Some("tmpfs"),
            &late,
            Some("tmpfs"),
            MsFlags::empty(),
            Some("size=1m"),
        )
        .unwrap();
        std::fs::write(late.join("marker"), "late-marker\n").unwrap();
        ledger.base = Mounts::now();
        ledger.engine(
            &env,
            &["exec", "held", "--", "cat", "/volmp/late/marker"],
            Some("late-marker"),
        );
        umount2(&late, MntFlags::empty()).unwrap();
        ledger.base = Mounts::now();
        ledger.engine(&env, &["stop", "held"], None);

        oci_create_start_delete(&host, &mut ledger);
        ledger.assert_clean(&format!("{rootfs:?} rootfs, / rshared"));
    });
}

/// `engine --root R create/start/delete` of runc spec's bundle on the
/// host's rootfs, with both volumes as bind mounts (one with no
/// propagation option, one `rprivate`, as podman and containerd pass).
fn oci_create_start_delete(host: &Host, ledger: &mut Ledger) {
    let bundle = host.path("bundle");
    std::fs::create_dir(&bundle).unwrap();
    let bind = |source: PathBuf, dest: &str, extra: &[&str]| {
        let mut options = vec!["rbind", "nosuid", "nodev"];
        options.extend_from_slice(extra);
        json!({"destination": dest, "type": "bind", "source": source, "options": options})
    };
    let mut config = testkit::oci::runc_spec(
        &["sh", "-c", "cat /vol/marker /volmp/marker; exec sleep 60"],
        host.root.to_str().unwrap(),
        "shared-host",
    );
    testkit::oci::add_mount(&mut config, bind(host.vol(), "/vol", &[]));
    testkit::oci::add_mount(&mut config, bind(host.volmp(), "/volmp", &["rprivate"]));
    std::fs::write(
        bundle.join("config.json"),
        serde_json::to_vec_pretty(&config).unwrap(),
    )
    .unwrap();
    let state = host.path("oci-root");
    let out = host.path("oci.out");
    let oci = |ledger: &mut Ledger, args: &[&str]| {
        let what = format!("engine {}", args.join(" "));
        // The init inherits create's stdio: a file, never a pipe to wait on.
        let mut child = Command::new(ENGINE)
            .arg("--root")
            .arg(&state)
            .args(args)
            .stdin(Stdio::null())
            .stdout(
                std::fs::File::options()
                    .create(true)
                    .append(true)
                    .open(&out)
                    .unwrap(),
            )
            .stderr(
                std::fs::File::options()
                    .create(true)
                    .append(true)
                    .open(&out)
                    .unwrap(),
            )
            .spawn()
            .expect("spawn the engine");
        let status = wait::child(&mut child, LONG).unwrap();
        if !status.success() {
            let text = std::fs::read_to_string(&out).unwrap_or_default();
            ledger
                .problems
                .push(format!("{what} failed ({status}): {}", text.trim()));
        }
        ledger.check(&what);
    };
    let id = "shared-host";
    oci(
        ledger,
        &["create", "--bundle", bundle.to_str().unwrap(), id],
    );
    oci(ledger, &["start", id]);
    if ledger.problems.is_empty() {
        let seen = wait::poll_until(SHORT, "the OCI container's output", || {
            let text = std::fs::read_to_string(&out).unwrap_or_default();
            (text.matches("volume-marker").count() == 2).then_some(())
        });
        if seen.is_err() {
            ledger.problems.push(format!(
                "the OCI container did not print both volumes' markers: {}",
                std::fs::read_to_string(&out).unwrap_or_default().trim()
            ));
        }
    }
    oci(ledger, &["delete", "--force", id]);
}

// ---------------------------------------------------------------- item 8

/// A directory holding `attack` (tests/attack/attack.c), built static once.
fn probe_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = busybox::scratch_root()
            .join(format!("engine-host-mounts-probe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        testkit::at_exit::remove_dir_at_exit(&dir);
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/attack/attack.c");
        assert_cmd::Command::new(quote::require("cc", "gcc"))
            .args(["-static", "-O2", "-o"])
            .arg(dir.join("attack"))
            .arg(&src)
            .timeout(LONG)
            .assert()
            .success();
        dir
    })
}

/// Container root copies the probe into a directory volume, makes it setuid
/// (its own uid: host root under `--userns host`, container root otherwise)
/// and runs it as uid 1000: the effective uid must stay 1000, and the
/// volume's mount must say nosuid.
#[rstest]
#[case::userns_host(&["--userns", "host"])]
#[case::default(&[])]
fn setuid_file_left_in_a_volume_lifts_nobody(#[case] extra: &[&str]) {
    let env = engine("setuid");
    let dir = tempfile::Builder::new()
        .prefix("engine-setuid-vol-")
        .tempdir_in(busybox::scratch_root())
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let vol = dir.path().join("vol");
    std::fs::create_dir(&vol).unwrap();
    // Container root under the default user namespace is an unprivileged
    // host uid: it may write here.
    std::fs::set_permissions(&vol, std::fs::Permissions::from_mode(0o777)).unwrap();
    let volume = format!("{}:/vol", vol.display());
    let probe = format!("{}:/.probe:ro", probe_dir().display());
    let script = "cp /.probe/attack /vol/p && chmod 4755 /vol/p && ls -ln /vol/p \
                  && /.probe/attack setuid-as 1000 /vol/p; grep ' /vol ' /proc/self/mountinfo";
    let mut args = vec!["-v", &volume, "-v", &probe];
    args.extend_from_slice(extra);
    args.extend([rootfs(), "--", "sh", "-c", script]);
    let out = run(&env, &args);
    let text = format!("{}{}", stdout(&out), stderr(&out));
    let mode = std::fs::metadata(vol.join("p"))
        .unwrap_or_else(|e| panic!("container root made no /vol/p ({e}):\n{text}"))
        .permissions()
        .mode();
    assert!(
        mode & 0o4000 != 0,
        "the setup failed: /vol/p is not setuid on the host ({mode:o}):\n{text}"
    );
    let euid = text
        .lines()
        .find_map(|l| l.strip_prefix("euid "))
        .unwrap_or_else(|| panic!("the probe did not run as uid 1000:\n{text}"));
    assert_eq!(
        euid.trim(),
        "1000",
        "attack succeeded: a setuid file container root left in a volume lifted uid 1000 to {euid}:\n{text}"
    );
    let vol_mount = text
        .lines()
        .find(|l| l.split(' ').nth(4) == Some("/vol"))
        .unwrap_or_else(|| panic!("no /vol in the container's mountinfo:\n{text}"));
    let options = vol_mount.split(' ').nth(5).unwrap_or("");
    assert!(
        options.split(',').any(|o| o == "nosuid") && options.split(',').any(|o| o == "nodev"),
        "the directory volume is not nosuid and nodev: {vol_mount}"
    );
}
