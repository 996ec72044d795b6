//! Lifecycle: a detached container seen from other commands: two `exec`s
//! at once, `ps` in both formats (with the cgroup's memory figures), `logs
//! -f` to the end, `stop` of a container that ignores SIGTERM, and `exec`
//! into a container that exits meanwhile.

use super::Ctx;
use crate::engine::{Env, RUN_TIMEOUT};
use crate::process::{self, Output};
use anyhow::{bail, Context, Result};
use std::time::{Duration, Instant};

fn engine(env: &Env, args: &[&str]) -> Result<Output> {
    process::run(&mut env.command(args), RUN_TIMEOUT)
}

fn detach(env: &Env, ctx: &Ctx, name: &str, extra: &[&str], script: &str) -> Result<()> {
    let rootfs = ctx.rootfs().to_str().context("rootfs path is not UTF-8")?;
    let mut args = vec!["run", "-d", "--net", "none"];
    args.extend(extra);
    args.extend(["--name", name, rootfs, "--", "sh", "-c", script]);
    let out = engine(env, &args)?;
    out.expect_success("`engine run -d`")?;
    if out.stdout.trim() != name {
        bail!("`engine run -d` should print the name {name}\n{out}");
    }
    Ok(())
}

pub fn run(ctx: &Ctx) -> Result<()> {
    let env = ctx.env("life")?;

    // Two execs at once into one detached container.
    detach(
        &env,
        ctx,
        "svc",
        &["--memory", "64M"],
        "echo started; sleep 300; true",
    )?;
    let exec = |tag: &str| {
        let mut cmd = env.command(&testkit::engine_cmd::tagged_exec_args(
            tag,
            "svc",
            "sleep 1; echo $TAG $(pwd) $(hostname); ps -e; true",
        ));
        process::Proc::spawn(&mut cmd, false)
    };
    let (a, b) = (exec("A")?, exec("B")?);
    for (proc, tag) in [(a, "A"), (b, "B")] {
        let out = proc.finish(RUN_TIMEOUT)?;
        out.expect_success("`engine exec` into a detached container")?;
        if !out.stdout.starts_with(&format!("{tag} /tmp svc\n")) {
            bail!("exec {tag}: expected its variable, working directory and the container's hostname first\n{out}");
        }
        let rows = super::processes::parse_ps(
            out.stdout
                .lines()
                .skip(1)
                .collect::<Vec<_>>()
                .join("\n")
                .as_str(),
        )?;
        let pid1 = rows
            .iter()
            .find(|r| r.pid == 1)
            .map(|r| r.program().to_string());
        if pid1.as_deref() != Some("sh") || rows.iter().filter(|r| r.program() == "sh").count() < 2
        {
            bail!("exec {tag}: `ps -e` should show PID 1 (sh) and the exec'd sh beside it\n{out}");
        }
    }

    // ps, both formats; under cgroup v2 the memory limit and usage are real.
    let out = engine(&env, &["ps", "--format", "json"])?;
    out.expect_success("`engine ps --format json`")?;
    let rows: serde_json::Value =
        serde_json::from_str(&out.stdout).with_context(|| format!("ps json\n{out}"))?;
    let row = rows
        .as_array()
        .and_then(|r| r.iter().find(|r| r["name"] == "svc"))
        .with_context(|| format!("svc missing from ps\n{out}"))?;
    if row["memory_limit"] != 64 * 1024 * 1024 || row["memory_usage"].as_u64().unwrap_or(0) == 0 {
        bail!("ps should show svc's 64M limit and its current memory use\n{out}");
    }
    let out = engine(&env, &["ps"])?;
    if !out.stdout.lines().any(|l| l.starts_with("svc ")) || !out.stdout.starts_with("NAME") {
        bail!("ps table should list svc\n{out}");
    }

    // stop: SIGTERM is ignored by sh as PID 1 (no handler), SIGKILL after 1 s.
    let start = Instant::now();
    engine(&env, &["stop", "-t", "1", "svc"])?.expect_success("`engine stop -t 1 svc`")?;
    let took = start.elapsed();
    if took < Duration::from_millis(900) {
        bail!("stop returned after {took:?}, before the 1 s grace period");
    }

    // logs -f follows a container to its end.
    detach(
        &env,
        ctx,
        "talker",
        &[],
        "for i in 1 2 3; do echo line $i; sleep 0.3; done",
    )?;
    let out = engine(&env, &["logs", "-f", "talker"])?;
    out.expect_success("`engine logs -f talker`")?;
    if out.stdout != "line 1\nline 2\nline 3\n" {
        bail!("logs -f should print the container's whole output and end with it\n{out}");
    }

    // exec into a container that exits meanwhile: the exec'd process goes too.
    // PID 1 waits for the exec'd process to be in (no race with a slow guest).
    detach(
        &env,
        ctx,
        "brief",
        &[],
        "until [ -e /tmp/joined ]; do sleep 0.1; done; sleep 0.5",
    )?;
    let out = engine(
        &env,
        &[
            "exec",
            "brief",
            "--",
            "sh",
            "-c",
            "touch /tmp/joined; sleep 60",
        ],
    )?;
    if out.code() != 137 {
        bail!("an exec'd process should be killed (137) when PID 1 exits\n{out}");
    }
    testkit::wait::poll_until(
        Duration::from_secs(20),
        "brief to leave `engine ps`",
        || {
            let out = engine(&env, &["ps", "--format", "json"]).ok()?;
            let rows: serde_json::Value = serde_json::from_str(&out.stdout).ok()?;
            let listed = rows.as_array()?.iter().any(|r| r["name"] == "brief");
            (!listed).then_some(())
        },
    )
    .context("brief is still listed after its PID 1 exited")?;
    // Its record is kept (docker's `ps -a`): exec says it is not running.
    let out = engine(&env, &["exec", "brief", "--", "true"])?;
    if out.code() != 125 || !out.stderr.contains("container brief is not running") {
        bail!("exec into an exited container should say it is not running (125)\n{out}");
    }
    env.close()
}
