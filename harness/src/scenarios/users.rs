//! Scenario 2, users: `whoami` is root; the uid map is as configured (a
//! root-owned rootfs gets a range of the engine's pool); on a rootfs
//! pulled with `--owner 131072` the host sees the container's processes as
//! uid 131072.

use super::{lines, normalize_map, Ctx};
use crate::engine::{Run, LINE_TIMEOUT, RUN_TIMEOUT};
use crate::fixtures::OWNER_BASE;
use anyhow::{bail, Context, Result};

const SHOW: &str =
    "whoami; echo uid_map:; cat /proc/self/uid_map; echo gid_map:; cat /proc/self/gid_map; echo maps-end";

/// Splits the output of [`SHOW`] into (whoami, uid_map, gid_map).
fn identity(stdout: &str) -> (String, String, String) {
    let (who, rest) = stdout.split_once("uid_map:").unwrap_or((stdout, ""));
    let (uid, gid) = rest.split_once("gid_map:").unwrap_or((rest, ""));
    let gid = gid.split_once("maps-end").map(|(g, _)| g).unwrap_or(gid);
    (lines(who).join(" "), normalize_map(uid), normalize_map(gid))
}

fn expect_identity(stdout: &str, base: u32, what: &str, out: &dyn std::fmt::Display) -> Result<()> {
    let (who, uid, gid) = identity(stdout);
    let want = format!("0 {base} 65536");
    if who != "root" || uid != want || gid != want {
        bail!(
            "{what}: expected whoami `root` and uid_map = gid_map = `{want}`; saw whoami `{who}`, \
             uid_map `{uid}`, gid_map `{gid}`\n{out}"
        );
    }
    Ok(())
}

/// The first host ID of the engine's pool (`ENGINE_USERNS_POOL` default).
const POOL_START: u64 = 1 << 30;

/// A root-owned rootfs under `--userns auto`: container root is a host ID
/// leased from the engine's pool (2^30 and up), never host root.
fn expect_pool(stdout: &str, what: &str, out: &dyn std::fmt::Display) -> Result<u64> {
    let (who, uid, gid) = identity(stdout);
    let fields: Vec<u64> = uid.split(' ').filter_map(|f| f.parse().ok()).collect();
    match fields.as_slice() {
        [0, base, 65536] if *base >= POOL_START && who == "root" && gid == uid => Ok(*base),
        _ => bail!(
            "{what}: expected whoami `root` and uid_map = gid_map = `0 BASE 65536` with BASE >= \
             {POOL_START} (the engine's pool); saw whoami `{who}`, uid_map `{uid}`, gid_map `{gid}`\n{out}"
        ),
    }
}

pub fn run(ctx: &Ctx) -> Result<()> {
    let env = ctx.env("user")?;

    // --userns auto on a root-owned rootfs: root maps to a range of the pool.
    let out = env.run(&Run::new(ctx.rootfs(), "users").sh(SHOW))?;
    out.expect_success("whoami and the id maps, --userns auto")?;
    expect_pool(&out.stdout, "--userns auto on a root-owned rootfs", &out)?;

    // An explicit base.
    let out = env.run(
        &Run::new(ctx.rootfs(), "users2")
            .opt("--userns", "200000")
            .sh(SHOW),
    )?;
    out.expect_success("whoami and the id maps, --userns 200000")?;
    expect_identity(&out.stdout, 200_000, "--userns 200000", &out)?;

    // A rootfs owned by 131072: the container's root is uid 131072 on the host.
    let rootfs = ctx
        .fixture
        .owner_rootfs()
        .context("the users scenario needs a copy of the rootfs pulled with --owner 131072")?;
    let name = "users3";
    let mut c = env.spawn(&Run::new(&rootfs, name).sh(&format!(
        "{SHOW}; sleep 1000 & echo ready; read x; kill $!; exit 0"
    )))?;
    c.wait_line("ready", LINE_TIMEOUT)?;
    let pid1 = env.pid1(name)?;
    // The shell (PID 1) and its sleep, as the host sees them.
    let children = std::fs::read_to_string(format!("/proc/{pid1}/task/{pid1}/children"))
        .with_context(|| {
            format!("cannot read the children of the container's PID 1 (host pid {pid1})")
        })?;
    let mut pids: Vec<i32> = std::iter::once(pid1)
        .chain(children.split_whitespace().filter_map(|p| p.parse().ok()))
        .collect();
    pids.sort_unstable();
    if pids.len() < 2 {
        bail!(
            "expected the container's shell (host pid {pid1}) to have a child (sleep), found none\n{}",
            c.so_far()
        );
    }
    let procs_file = env.leaf(name).join("cgroup.procs");
    // The harness runs only where cgroup v2 is (the guest, or a capable
    // host): a container without its cgroup leaf is a failure, not a skip.
    let text = std::fs::read_to_string(&procs_file).with_context(|| {
        format!(
            "cannot read {}: the container should have its own cgroup",
            procs_file.display()
        )
    })?;
    let mut in_cgroup: Vec<i32> = text
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    in_cgroup.sort_unstable();
    if in_cgroup != pids {
        bail!(
            "the container's processes (host pids {pids:?}) should be exactly those of its cgroup {}, \
             which holds {in_cgroup:?}",
            procs_file.display()
        );
    }
    for pid in &pids {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("cannot read /proc/{pid}/status of a container process"))?;
        let ids: Vec<String> = status
            .lines()
            .filter(|l| l.starts_with("Uid:") || l.starts_with("Gid:"))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        let want = [
            format!("Uid: {OWNER_BASE} {OWNER_BASE} {OWNER_BASE} {OWNER_BASE}"),
            format!("Gid: {OWNER_BASE} {OWNER_BASE} {OWNER_BASE} {OWNER_BASE}"),
        ];
        if ids != want {
            bail!(
                "on a rootfs owned by {OWNER_BASE}, the host should see container process {pid} as \
                 uid/gid {OWNER_BASE}; /proc/{pid}/status says {ids:?}\n{}",
                c.so_far()
            );
        }
    }
    let out = c.finish(RUN_TIMEOUT)?;
    out.expect_success("the container on the --owner 131072 rootfs")?;
    expect_identity(
        &out.stdout,
        OWNER_BASE,
        "--userns auto on a rootfs owned by 131072",
        &out,
    )?;
    env.close()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_parsed() {
        let (who, uid, gid) = identity(
            "root\nuid_map:\n         0     100000      65536\ngid_map:\n         0     100000      65536\nmaps-end\nready\n",
        );
        assert_eq!(who, "root");
        assert_eq!(uid, "0 100000 65536");
        assert_eq!(gid, "0 100000 65536");
        assert!(expect_identity(
            "root\nuid_map:\n0 0 65536\ngid_map:\n0 0 65536\n",
            0,
            "x",
            &""
        )
        .is_ok());
        assert!(expect_identity(
            "nobody\nuid_map:\n0 0 65536\ngid_map:\n0 0 65536\n",
            0,
            "x",
            &""
        )
        .is_err());
        assert!(expect_identity(
            "root\nuid_map:\n0 0 4294967295\ngid_map:\n0 0 4294967295\n",
            0,
            "x",
            &""
        )
        .is_err());
    }
}
