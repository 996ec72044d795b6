//! A detached container's log: the supervisor's output into the monitor's
//! pipe, and the relay (run by the monitor) that writes NAME.log and
//! rotates it to NAME.log.1, for `engine run -d` and `engine logs`.

use anyhow::{Context, Result};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::Path;

/// Sends our stdout and stderr (and so the container's) into `pipe`, whose
/// other end the monitor (parent/monitor.rs) reads into the log; stdin
/// becomes /dev/null. The log is made new and empty here, or with
/// `append` goes on where it ended (`engine start`); the monitor only
/// appends to the file it finds.
pub(super) fn redirect_output(log: &Path, append: bool, pipe: OwnedFd) -> Result<()> {
    match append {
        true => std::fs::OpenOptions::new()
            .append(true)
            .open(log)
            .map(drop)
            .or_else(|_| create_log(log).map(drop))?,
        false => create_log(log).map(drop)?,
    };
    let null = File::open("/dev/null").context("cannot open /dev/null")?;
    let redirect = || format!("cannot redirect output to {}", log.display());
    rustix::stdio::dup2_stdin(&null)
        .map_err(std::io::Error::from)
        .with_context(redirect)?;
    rustix::stdio::dup2_stdout(&pipe)
        .map_err(std::io::Error::from)
        .with_context(redirect)?;
    rustix::stdio::dup2_stderr(&pipe)
        .map_err(std::io::Error::from)
        .with_context(redirect)?;
    Ok(())
}

/// A new, empty log readable by its owner only (it may hold secrets).
fn create_log(log: &Path) -> Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(log)
        .with_context(|| format!("cannot create log {}", log.display()))?;
    // An older log of that name kept its mode through the truncation.
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot make log {} private", log.display()))?;
    Ok(file)
}

/// The rotated half of a log.
pub fn rotated(log: &Path) -> std::path::PathBuf {
    let mut s = log.as_os_str().to_os_string();
    s.push(".1");
    s.into()
}

/// Copies the pipe to the log until every writer is gone, never letting
/// NAME.log grow past `max / 2`. The log is opened (to append) when the
/// first output comes: only a supervisor that has taken the name writes
/// into the pipe, so another container's log of that name is never touched.
pub(super) fn relay_log(mut from: File, log: &Path, max: u64) {
    let half = (max / 2).max(1);
    let mut to: Option<(File, u64)> = None;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        let mut chunk = &buf[..n];
        while !chunk.is_empty() {
            if to.as_ref().is_some_and(|(_, written)| *written >= half) {
                let _ = std::fs::rename(log, rotated(log));
                to = create_log(log).ok().map(|f| (f, 0));
            }
            if to.is_none() {
                // Gone (the run failed and removed it): the output is
                // dropped, never left to block the container.
                let Ok(f) = std::fs::OpenOptions::new().append(true).open(log) else {
                    break;
                };
                let len = f.metadata().map(|m| m.len()).unwrap_or(0);
                to = Some((f, len));
            }
            let Some((file, written)) = to.as_mut() else {
                break;
            };
            let take = chunk.len().min(half.saturating_sub(*written) as usize);
            if file.write_all(&chunk[..take]).is_err() {
                // A full disk: drop the output rather than block the container.
            }
            *written += take as u64;
            chunk = &chunk[take..];
        }
    }
}
