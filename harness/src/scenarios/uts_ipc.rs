//! Scenario 4, hostname and IPC: the hostname is the container's name (or
//! `--hostname`), the host's is untouched; a SysV message queue made in one
//! container is seen neither by a second container nor by the host.
//!
//! Busybox has no `ipcmk`, so the queue is made by the host's util-linux
//! `ipcmk`, run inside the container through the host's dynamic loader,
//! from read-only volumes of the host directories that hold them (`/usr`,
//! and `/lib` where it is not merged into `/usr`): the same for every flavour.

use super::{lines, Ctx};
use crate::engine::{Run, LINE_TIMEOUT, RUN_TIMEOUT};
use crate::process;
use anyhow::{anyhow, bail, Context, Result};
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use testkit::quote::which;

/// Where the host's directories appear in the IPC container.
const HOST_DIRS: &str = "/.harness-host";

fn host_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Rows of /proc/sysvipc/msg (after its header) as (key, msqid).
fn queues(text: &str) -> Vec<(String, String)> {
    lines(text)
        .into_iter()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let key = w.next()?;
            let id = w.next()?;
            (key.parse::<i64>().is_ok()).then(|| (key.to_string(), id.to_string()))
        })
        .collect()
}

/// How to run the host's `ipcmk -Q` inside a container: the volumes to
/// give it (`-v` values) and the command line.
fn ipcmk_inside() -> Result<(Vec<String>, String)> {
    let ipcmk = which("ipcmk").ok_or_else(|| {
        anyhow!("the host has no ipcmk (util-linux), which this scenario runs inside the container")
    })?;
    let ipcmk = std::fs::canonicalize(&ipcmk)?;
    let interpreter = testkit::elf::read(&ipcmk)?.interpreter.ok_or_else(|| {
        anyhow!(
            "{} has no program interpreter (statically linked?)",
            ipcmk.display()
        )
    })?;
    let loader =
        std::fs::canonicalize(interpreter).context("cannot resolve the dynamic loader of ipcmk")?;
    let libdir = loader.parent().unwrap_or(Path::new("/")).to_path_buf();
    let mut volumes = Vec::new();
    for path in [&ipcmk, &loader, &libdir] {
        let top = path
            .components()
            .nth(1)
            .ok_or_else(|| anyhow!("{} is not below a top-level directory", path.display()))?;
        let top = Path::new("/").join(top);
        let volume = format!("{}:{HOST_DIRS}{}:ro", top.display(), top.display());
        if !volumes.contains(&volume) {
            volumes.push(volume);
        }
    }
    let inside = |p: &Path| format!("{HOST_DIRS}{}", p.display());
    let command = format!(
        "{} --library-path {} {} -Q",
        inside(&loader),
        inside(&libdir),
        inside(&ipcmk)
    );
    Ok((volumes, command))
}

pub fn run(ctx: &Ctx) -> Result<()> {
    let env = ctx.env("uts")?;
    let before = host_hostname();

    // The hostname is the name; --hostname overrides it.
    let out =
        env.run(&Run::new(ctx.rootfs(), "uts-name").sh("uname -n; cat /proc/sys/kernel/hostname"))?;
    out.expect_success("uname -n in a container")?;
    if lines(&out.stdout) != ["uts-name", "uts-name"] {
        bail!("expected the hostname `uts-name` (the container's name) from `uname -n` and /proc\n{out}");
    }
    let out = env.run(
        &Run::new(ctx.rootfs(), "uts-name2")
            .opt("--hostname", "other-host")
            .cmd(&["uname", "-n"]),
    )?;
    out.expect_success("uname -n with --hostname")?;
    if out.stdout.trim() != "other-host" {
        bail!("expected the hostname `other-host` given by --hostname\n{out}");
    }
    let after = host_hostname();
    if after != before {
        bail!("the host's hostname changed from {before:?} to {after:?}");
    }

    // A message queue in container A.
    let (volumes, ipcmk) = ipcmk_inside()?;
    let mut a_run = Run::new(ctx.rootfs(), "ipc-a");
    for volume in &volumes {
        a_run = a_run.opt("-v", volume);
    }
    let mut a = env.spawn(&a_run.sh(&format!(
        "{ipcmk} && echo queues: && cat /proc/sysvipc/msg && echo made; read x; exit 0"
    )))?;
    a.wait_line("made", LINE_TIMEOUT)?;
    let a_out = a.stdout_so_far();
    let made = queues(
        a_out
            .split_once("queues:")
            .map(|(_, rest)| rest)
            .unwrap_or(""),
    );
    let Some((key, _)) = made.first().cloned() else {
        bail!(
            "ipcmk -Q in container A should have made a queue listed in its /proc/sysvipc/msg\n{}",
            a.so_far()
        );
    };
    if made.len() != 1 {
        bail!(
            "container A's fresh IPC namespace should hold exactly the one queue it made\n{}",
            a.so_far()
        );
    }

    // Container B sees no queue at all.
    let out = env.run(&Run::new(ctx.rootfs(), "ipc-b").sh("cat /proc/sysvipc/msg; echo listed"))?;
    out.expect_success("listing message queues in container B")?;
    if !queues(&out.stdout).is_empty() || !out.stdout.contains("listed") {
        bail!("container B must not see container A's queue (key {key}), nor any\n{out}");
    }

    // Nor does the host, in /proc or through ipcs.
    let host =
        std::fs::read_to_string("/proc/sysvipc/msg").context("cannot read /proc/sysvipc/msg")?;
    if queues(&host).iter().any(|(k, _)| *k == key) {
        bail!("the host sees container A's queue (key {key}) in /proc/sysvipc/msg:\n{host}");
    }
    let hex = format!("{:#010x}", key.parse::<i64>().unwrap_or(0) as u32);
    let ipcs = process::run(Command::new("ipcs").arg("-q"), Duration::from_secs(60))?;
    ipcs.expect_success("ipcs -q on the host")?;
    if ipcs.stdout.contains(&hex) {
        bail!("the host's `ipcs -q` shows container A's queue (key {hex})\n{ipcs}");
    }

    let out = a.finish(RUN_TIMEOUT)?;
    out.expect_success("container A after its stdin closed")?;
    env.close()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysvipc_rows() {
        let text = "       key      msqid perms      cbytes       qnum lspid lrpid   uid   gid  cuid  cgid      stime      rtime      ctime\n\
                    1295739583          0   644           0          0     0     0     0     0     0     0          0          0 1795942445\n";
        assert_eq!(
            queues(text),
            vec![("1295739583".to_string(), "0".to_string())]
        );
        assert!(queues("       key      msqid perms\n").is_empty());
    }

    #[test]
    fn the_host_ipcmk_can_be_run_from_a_volume() {
        let (volumes, cmd) = ipcmk_inside().unwrap();
        assert!(
            volumes.iter().any(|v| v == "/usr:/.harness-host/usr:ro"),
            "{volumes:?}"
        );
        assert!(cmd.starts_with(HOST_DIRS), "{cmd}");
        assert!(cmd.ends_with("/bin/ipcmk -Q"), "{cmd}");
    }
}
