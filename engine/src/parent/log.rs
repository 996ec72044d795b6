//! A detached container's log: the relay process that writes NAME.log and
//! rotates it to NAME.log.1, for `engine run -d` and `engine logs`.

use super::pipe;
use anyhow::{Context, Result};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::Path;

/// Sends our stdout and stderr (and so the container's) through a pipe to a
/// relay process that writes a detached container's log, capped at `max`
/// bytes: NAME.log is moved to NAME.log.1 when it reaches half of `max`, so
/// the oldest output goes first. stdin becomes /dev/null.
/// With `append`, the log goes on where it ended (`engine start`).
pub(super) fn redirect_output(log: &Path, max: u64, append: bool) -> Result<()> {
    let file = match append {
        true => std::fs::OpenOptions::new()
            .append(true)
            .open(log)
            .or_else(|_| create_log(log))?,
        false => create_log(log)?,
    };
    let already = file.metadata().map(|m| m.len()).unwrap_or(0);
    let null = File::open("/dev/null").context("cannot open /dev/null")?;
    let (relay_read, relay_write) = pipe()?;
    // SAFETY: the supervisor is single-threaded here (the container is not
    // cloned yet); the relay only reads, writes and renames.
    if unsafe { super::fork() }
        .context("cannot fork the log relay")?
        .is_none()
    {
        // Nothing of the supervisor's but the pipe and the log: the state
        // lock and the notify pipe must not live on in the relay.
        let keep = [relay_read.as_raw_fd(), file.as_raw_fd(), null.as_raw_fd()];
        let _ = crate::sys::openat::close_fds_except(&keep);
        let _ = rustix::stdio::dup2_stdin(&null);
        let _ = rustix::stdio::dup2_stdout(&null);
        let _ = rustix::stdio::dup2_stderr(&null);
        relay_log(File::from(relay_read), file, already, log, max);
        // SAFETY: _exit skips the supervisor's exit handlers and buffers, copied into us.
        unsafe { libc::_exit(0) }
    }
    drop(relay_read);
    let redirect = || format!("cannot redirect output to {}", log.display());
    rustix::stdio::dup2_stdin(&null)
        .map_err(std::io::Error::from)
        .with_context(redirect)?;
    rustix::stdio::dup2_stdout(&relay_write)
        .map_err(std::io::Error::from)
        .with_context(redirect)?;
    rustix::stdio::dup2_stderr(&relay_write)
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
/// NAME.log grow past `max / 2`.
fn relay_log(mut from: File, mut to: File, already: u64, log: &Path, max: u64) {
    let half = (max / 2).max(1);
    let mut written = already;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        let mut chunk = &buf[..n];
        while !chunk.is_empty() {
            if written >= half {
                let _ = std::fs::rename(log, rotated(log));
                match create_log(log) {
                    Ok(f) => to = f,
                    Err(_) => return,
                }
                written = 0;
            }
            let take = chunk.len().min((half - written) as usize);
            if to.write_all(&chunk[..take]).is_err() {
                // A full disk: drop the output rather than block the container.
            }
            written += take as u64;
            chunk = &chunk[take..];
        }
    }
}
