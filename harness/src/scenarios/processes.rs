//! Scenario 1, processes: `ps -e` inside shows COMMAND as PID 1 and nothing from the host.

use super::Ctx;
use crate::engine::Run;
use anyhow::{bail, Context, Result};

/// One row of `ps -e` (busybox's `PID USER COMMAND`, procps's
/// `PID TTY TIME CMD`).
#[derive(Debug, Clone, PartialEq)]
pub struct PsRow {
    pub pid: u32,
    pub command: String,
}

impl PsRow {
    /// The program's base name (`ps` for `/bin/ps -e`). Busybox shows
    /// `{ps} /bin/sh -c ...` for an applet its shell ran without exec: the
    /// name in braces is the program.
    pub fn program(&self) -> &str {
        if let Some(name) = self
            .command
            .strip_prefix('{')
            .and_then(|rest| rest.split_once('}'))
            .map(|(name, _)| name)
        {
            return name;
        }
        let first = self.command.split_whitespace().next().unwrap_or("");
        first.rsplit('/').next().unwrap_or(first)
    }
}

/// Parses `ps -e`: the PID is the first column, the command starts where
/// the header's COMMAND or CMD does.
pub fn parse_ps(text: &str) -> Result<Vec<PsRow>> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header = lines.next().context("ps printed nothing")?;
    let col = header
        .find("COMMAND")
        .or_else(|| header.find("CMD"))
        .with_context(|| format!("no COMMAND or CMD column in the ps header {header:?}"))?;
    let mut rows = Vec::new();
    for line in lines {
        let pid = line
            .split_whitespace()
            .next()
            .and_then(|w| w.parse().ok())
            .with_context(|| format!("ps row without a PID: {line:?}"))?;
        let command = line.get(col..).unwrap_or("").trim().to_string();
        rows.push(PsRow { pid, command });
    }
    Ok(rows)
}

fn show(rows: &[PsRow]) -> String {
    rows.iter()
        .map(|r| format!("{} {}", r.pid, r.command))
        .collect::<Vec<_>>()
        .join("; ")
}

pub fn run(ctx: &Ctx) -> Result<()> {
    let env = ctx.env("proc")?;

    // `ps -e` as the container's command: it must be PID 1 and alone.
    let out = env.run(&Run::new(ctx.rootfs(), "procs").cmd(&["ps", "-e"]))?;
    out.expect_success("`ps -e` in a container")?;
    let rows = parse_ps(&out.stdout).with_context(|| format!("reading `ps -e`\n{out}"))?;
    if rows.len() != 1 || rows[0].pid != 1 || rows[0].program() != "ps" {
        bail!(
            "expected `ps -e` to list exactly one process, itself (ps) as PID 1; it listed {} \
             process(es): {}\n{out}",
            rows.len(),
            show(&rows)
        );
    }

    // A shell as PID 1 with a child: exactly sh (PID 1), sleep and ps.
    // (It waits until the background child has become sleep, so that ps
    // cannot catch it between fork and exec.)
    let out = env.run(&Run::new(ctx.rootfs(), "procs2").sh(
        "sleep 300 & until read c </proc/$!/comm && [ \"$c\" = sleep ]; do :; done; ps -e; kill $!",
    ))?;
    out.expect_success("`sh -c 'sleep 300 & ps -e'` in a container")?;
    let rows = parse_ps(&out.stdout).with_context(|| format!("reading `ps -e`\n{out}"))?;
    let mut programs: Vec<&str> = rows.iter().map(PsRow::program).collect();
    programs.sort_unstable();
    let pid1 = rows.iter().find(|r| r.pid == 1);
    if programs != ["ps", "sh", "sleep"] || pid1.map(PsRow::program) != Some("sh") {
        bail!(
            "expected exactly sh as PID 1, sleep and ps (and no host process); `ps -e` listed: {}\n{out}",
            show(&rows)
        );
    }
    if let Some(r) = rows.iter().find(|r| r.pid > 1000) {
        bail!(
            "process {} `{}` has a host-sized PID: is the PID namespace shared?\n{out}",
            r.pid,
            r.command
        );
    }
    env.close()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busybox_ps() {
        let rows = parse_ps("PID   USER     COMMAND\n    1 root     ps -e\n").unwrap();
        assert_eq!(
            rows,
            vec![PsRow {
                pid: 1,
                command: "ps -e".into()
            }]
        );
        assert_eq!(rows[0].program(), "ps");
        let rows = parse_ps(
            "PID   USER     COMMAND\n    1 root     /bin/sh -c sleep 300 & ps -e\n    2 root     sleep 300\n    3 root     ps -e\n",
        )
        .unwrap();
        assert_eq!(rows[0].program(), "sh");
        assert_eq!(rows[2].pid, 3);
        let rows = parse_ps(
            "PID   USER     COMMAND\n    1 root     /bin/sh -c sleep 300 & ps -e\n    3 root     {ps} /bin/sh -c sleep 300 & ps -e\n",
        )
        .unwrap();
        assert_eq!(rows[1].program(), "ps");
    }

    #[test]
    fn procps_ps() {
        let rows = parse_ps(
            "    PID TTY          TIME CMD\n      1 ?        00:00:00 sh\n      2 ?        00:00:00 sleep\n      3 ?        00:00:00 ps\n",
        )
        .unwrap();
        let programs: Vec<&str> = rows.iter().map(PsRow::program).collect();
        assert_eq!(programs, ["sh", "sleep", "ps"]);
        assert_eq!(rows[0].pid, 1);
    }

    #[test]
    fn garbage_is_refused() {
        assert!(parse_ps("").is_err());
        assert!(parse_ps("PID USER\n1 root\n").is_err());
        assert!(parse_ps("PID COMMAND\nx ps\n").is_err());
    }
}
