//! Scenario 3, filesystem: `ls /` shows the distro's tree; host files are invisible;
//! writes reach neither ROOTFS nor a second container.

use super::{lines, Ctx};
use crate::engine::{Run, LINE_TIMEOUT, RUN_TIMEOUT};
use crate::token::token;
use anyhow::{bail, Context, Result};
use std::collections::BTreeSet;

/// Directories the engine may add to `/` as mount points.
const MOUNT_POINTS: [&str; 5] = ["dev", "proc", "sys", "tmp", "run"];

pub fn run(ctx: &Ctx) -> Result<()> {
    let env = ctx.env("fs")?;
    let rootfs = ctx.rootfs();

    // `ls /` is the rootfs's top level.
    let on_disk: BTreeSet<String> = std::fs::read_dir(rootfs)
        .with_context(|| format!("cannot list {}", rootfs.display()))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let out = env.run(&Run::new(rootfs, "fs1").cmd(&["ls", "-a", "/"]))?;
    out.expect_success("`ls -a /` in a container")?;
    let inside: BTreeSet<String> = lines(&out.stdout)
        .into_iter()
        .flat_map(str::split_whitespace)
        .filter(|n| *n != "." && *n != "..")
        .map(str::to_string)
        .collect();
    let missing: Vec<&String> = on_disk.difference(&inside).collect();
    let extra: Vec<&String> = inside
        .difference(&on_disk)
        .filter(|n| !MOUNT_POINTS.contains(&n.as_str()))
        .collect();
    if !missing.is_empty() || !extra.is_empty() || !inside.contains("bin") {
        bail!(
            "expected `ls -a /` to show the top level of {} ({on_disk:?}); missing {missing:?}, \
             unexpected {extra:?}\n{out}",
            rootfs.display()
        );
    }

    // Host files are invisible: a marker made now, and this test binary.
    let marker = ctx
        .settings
        .scratch
        .join(format!("host-marker-{}", token()));
    std::fs::write(&marker, "host\n")
        .with_context(|| format!("cannot create {}", marker.display()))?;
    let exe = std::env::current_exe().context("cannot find the test binary")?;
    let script = [&marker, &exe]
        .iter()
        .map(|p| {
            let p = p.display();
            format!("if [ -e '{p}' ]; then echo 'VISIBLE {p}'; else echo 'absent {p}'; fi")
        })
        .collect::<Vec<_>>()
        .join("; ");
    let out = env.run(&Run::new(rootfs, "fs2").sh(&script))?;
    let _ = std::fs::remove_file(&marker);
    out.expect_success("testing host paths from a container")?;
    if out.stdout.contains("VISIBLE") || out.stdout.matches("absent").count() != 2 {
        bail!(
            "host files must be invisible in the container; checked {} and {}\n{out}",
            marker.display(),
            exe.display()
        );
    }

    // Writes stay in the container's own layer.
    let tok = token();
    let new_file = format!("/harness-write-{tok}");
    let line = format!("harness-line-{tok}");
    let passwd_before = std::fs::read(rootfs.join("etc/passwd"))
        .with_context(|| format!("cannot read {}/etc/passwd", rootfs.display()))?;
    let mut writer = env.spawn(&Run::new(rootfs, "fs-writer").sh(&format!(
        "echo data-{tok} > {new_file} && echo {line} >> /etc/passwd && cat {new_file} && \
         grep {line} /etc/passwd && echo written; read x; exit 0"
    )))?;
    writer.wait_line("written", LINE_TIMEOUT)?;
    let out = env.run(&Run::new(rootfs, "fs-reader").sh(&format!(
        "ls -a /; cat /etc/passwd; cat {new_file} 2>/dev/null; echo reader-done"
    )))?;
    out.expect_success("a second container reading what the first wrote")?;
    if out.stdout.contains(&tok) || !out.stdout.contains("reader-done") {
        bail!(
            "a second container from the same rootfs must not see the first one's writes \
             ({new_file}, a line in /etc/passwd), but it did\n{out}"
        );
    }
    let check_rootfs = |when: &str| -> Result<()> {
        let host_file = rootfs.join(new_file.trim_start_matches('/'));
        let passwd = std::fs::read(rootfs.join("etc/passwd")).unwrap_or_default();
        if host_file.exists() || passwd != passwd_before {
            bail!(
                "{when}, the rootfs {} must be unchanged; but {} exists: {}, etc/passwd changed: {}",
                rootfs.display(),
                host_file.display(),
                host_file.exists(),
                passwd != passwd_before
            );
        }
        Ok(())
    };
    check_rootfs("while the writing container runs")?;
    let out = writer.finish(RUN_TIMEOUT)?;
    out.expect_success("the writing container after its stdin closed")?;
    if !out.stdout.contains(&format!("data-{tok}")) || !out.stdout.contains(&line) {
        bail!("the writing container should have read back what it wrote\n{out}");
    }
    check_rootfs("after the writing container exited")?;
    env.close()
}
