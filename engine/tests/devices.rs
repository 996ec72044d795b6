//! The cgroup v2 device filter (`sys::devices`) on the real kernel: the
//! program is loaded and attached to a cgroup of the test's own in the host's
//! cgroup2 hierarchy (the hybrid host's `/sys/fs/cgroup/unified` carries BPF
//! programs though it has no limit controllers), and a child moved into it
//! opens device nodes of the host's /dev. The whole container path (OCI
//! bundle to program) is checked in the harness guest (`oci` scenario).

use engine::sys::devices::{self, Kind, Rule};
use std::path::PathBuf;

/// A cgroup of the test's own, removed at the end.
struct Cgroup(PathBuf);

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn cgroup(tag: &str) -> Cgroup {
    let base = testkit::cgroup::v2_mount_point().unwrap_or_else(|| {
        panic!("no cgroup2 hierarchy is mounted: mount one (mount -t cgroup2 none /sys/fs/cgroup/unified)")
    });
    let path = base.join(format!("engine-devices-test-{tag}-{}", std::process::id()));
    std::fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
    Cgroup(path)
}

/// Opens each of `paths` (read) from a child moved into `cg`; whether each opened.
fn opens_in(cg: &Cgroup, paths: &[&str]) -> Vec<bool> {
    let out = testkit::wait::output(
        std::process::Command::new("sh").arg("-c").arg(format!(
            "echo $$ > {}/cgroup.procs || exit 99; for p in {}; do (exec 3<$p) 2>/dev/null && echo yes || echo no; done",
            cg.0.display(),
            paths.join(" ")
        )),
        std::time::Duration::from_secs(20),
    )
    .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l == "yes")
        .collect()
}

#[test]
fn the_program_allows_what_the_rules_allow_and_nothing_else() {
    for host in ["/dev/loop0", "/dev/fuse", "/dev/null"] {
        std::fs::File::open(host)
            .unwrap_or_else(|e| panic!("cannot open {host} on the host ({e}): modprobe loop fuse"));
    }
    let cg = cgroup("rules");
    // runc's spec: deny all, then fuse for reading; the defaults after.
    let rules = devices::with_defaults(&[
        Rule {
            allow: false,
            kind: None,
            major: None,
            minor: None,
            access: devices::ALL,
        },
        Rule {
            allow: true,
            kind: Some(Kind::Char),
            major: Some(10),
            minor: Some(229),
            access: devices::READ,
        },
    ]);
    devices::confine(&cg.0, &rules).unwrap();
    assert_eq!(
        opens_in(&cg, &["/dev/loop0", "/dev/fuse", "/dev/null", "/dev/zero"]),
        [false, true, true, true]
    );
}

#[test]
fn an_empty_list_denies_all_but_the_defaults() {
    std::fs::File::open("/dev/loop0")
        .unwrap_or_else(|e| panic!("cannot open /dev/loop0 on the host ({e}): modprobe loop"));
    let cg = cgroup("empty");
    devices::confine(&cg.0, &devices::with_defaults(&[])).unwrap();
    assert_eq!(
        opens_in(&cg, &["/dev/loop0", "/dev/fuse", "/dev/urandom"]),
        [false, false, true]
    );
}
