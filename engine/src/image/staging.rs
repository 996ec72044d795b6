//! The staging directory `.NAME.partial-PID` beside DEST (renamed into place
//! only when complete), stale partials of dead pulls, and the signals that
//! turn Ctrl-C into a clean failure.

use anyhow::{anyhow, bail, Context, Result};
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Mutex;

/// A directory beside DEST that is removed unless committed (renamed to DEST).
pub(super) struct Staging {
    path: PathBuf,
    /// The directories made for DEST's parent, outermost first.
    made_parents: Vec<PathBuf>,
    committed: bool,
}

impl Staging {
    pub(super) fn create(dest: &Path) -> Result<Staging> {
        let name = dest
            .file_name()
            .ok_or_else(|| anyhow!("DEST {} must name a new directory", dest.display()))?;
        let parent = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut made_parents: Vec<PathBuf> = parent
            .ancestors()
            .take_while(|dir| !dir.as_os_str().is_empty() && !dir.exists())
            .map(Path::to_path_buf)
            .collect();
        made_parents.reverse();
        fs::create_dir_all(&parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
        let prefix = format!(".{}.partial-", name.to_string_lossy());
        remove_stale_partials(&parent, &prefix);
        let path = parent.join(format!("{prefix}{}", std::process::id()));
        match fs::create_dir(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                bail!(
                    "another pull into {} is in progress ({} exists)",
                    dest.display(),
                    path.display()
                )
            }
            Err(e) => return Err(e).with_context(|| format!("cannot create {}", path.display())),
        }
        let staging = Staging {
            path,
            made_parents,
            committed: false,
        };
        fs::set_permissions(&staging.path, fs::Permissions::from_mode(0o755))
            .with_context(|| format!("cannot chmod {}", staging.path.display()))?;
        Ok(staging)
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn commit(mut self, dest: &Path) -> Result<()> {
        fs::rename(&self.path, dest).map_err(|e| {
            let why = match e.raw_os_error() {
                Some(libc::ENOTEMPTY) | Some(libc::EEXIST) => {
                    "it appeared meanwhile; remove it or choose another DEST".to_string()
                }
                _ => e.to_string(),
            };
            anyhow!("cannot move the new rootfs into {}: {why}", dest.display())
        })?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.path);
            // Only while empty: another pull may have put something there.
            for dir in self.made_parents.iter().rev() {
                if fs::remove_dir(dir).is_err() {
                    break;
                }
            }
        }
    }
}

/// Removes `PREFIX<pid>[.anything]` entries left by pulls whose process died
/// (SIGKILL, power loss). Entries of live processes are another pull's.
pub(super) fn remove_stale_partials(parent: &Path, prefix: &str) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(prefix)) else {
            continue;
        };
        let Ok(pid) = rest.split('.').next().unwrap_or_default().parse::<i32>() else {
            continue;
        };
        if pid > 0 && !process_alive(pid) {
            let path = entry.path();
            let _ = match entry.file_type() {
                Ok(t) if t.is_dir() => fs::remove_dir_all(&path),
                _ => fs::remove_file(&path),
            };
        }
    }
}

/// `pid` is positive (the caller checks).
fn process_alive(pid: i32) -> bool {
    rustix::process::Pid::from_raw(pid)
        .is_none_or(|pid| rustix::process::test_kill_process(pid) != Err(rustix::io::Errno::SRCH))
}

// Ctrl-C: turn SIGINT/SIGTERM/SIGHUP into an error while a pull runs, so the
// staging directory is removed on the way out instead of left behind.

static CAUGHT_SIGNAL: AtomicI32 = AtomicI32::new(0);
static SIGNAL_USERS: Mutex<(usize, Vec<(libc::c_int, libc::sigaction)>)> =
    Mutex::new((0, Vec::new()));
const WATCHED_SIGNALS: [(libc::c_int, &str); 3] = [
    (libc::SIGINT, "SIGINT"),
    (libc::SIGTERM, "SIGTERM"),
    (libc::SIGHUP, "SIGHUP"),
];

/// sigaction(2), the old action returned; libc since rustix has no safe
/// API for signal dispositions.
///
/// # Safety
/// `action`'s handler must be async-signal-safe.
unsafe fn sigaction(sig: libc::c_int, action: &libc::sigaction) -> io::Result<libc::sigaction> {
    // SAFETY: zeroed is a valid sigaction (SIG_DFL, empty mask).
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are to live sigaction structs; the caller vouches
    // for the handler.
    match unsafe { libc::sigaction(sig, action, &mut old) } {
        0 => Ok(old),
        _ => Err(io::Error::last_os_error()),
    }
}

extern "C" fn note_signal(sig: libc::c_int) {
    CAUGHT_SIGNAL.store(sig, Ordering::SeqCst);
}

/// Installs the handlers for as long as any pull runs (pulls may run in
/// several threads); the last one out restores what was there before.
pub(super) struct SignalGuard;

impl SignalGuard {
    pub(super) fn install() -> SignalGuard {
        let mut users = SIGNAL_USERS.lock().unwrap_or_else(|p| p.into_inner());
        if users.0 == 0 {
            CAUGHT_SIGNAL.store(0, Ordering::SeqCst);
            // No SA_RESTART: a blocking read returns EINTR and the pull notices.
            // SAFETY: zeroed is a valid sigaction: no flags, an empty mask.
            let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
            action.sa_sigaction = note_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            for (sig, _) in WATCHED_SIGNALS {
                // SAFETY: the handler only stores to an atomic (async-signal-safe).
                let Ok(old) = (unsafe { sigaction(sig, &action) }) else {
                    continue;
                };
                if old.sa_sigaction == libc::SIG_IGN {
                    // Respect an ignored signal (nohup): put it back.
                    // SAFETY: restores the action the process had.
                    let _ = unsafe { sigaction(sig, &old) };
                } else {
                    users.1.push((sig, old));
                }
            }
        }
        users.0 += 1;
        SignalGuard
    }
}

impl Drop for SignalGuard {
    fn drop(&mut self) {
        let mut users = SIGNAL_USERS.lock().unwrap_or_else(|p| p.into_inner());
        users.0 -= 1;
        if users.0 == 0 {
            for (sig, old) in users.1.drain(..) {
                // SAFETY: restores the action the process had before the pull.
                let _ = unsafe { sigaction(sig, &old) };
            }
        }
    }
}

fn caught_signal() -> Option<Interrupted> {
    match CAUGHT_SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        signal => Some(Interrupted { signal }),
    }
}

pub(super) fn check_interrupted() -> Result<(), Interrupted> {
    match caught_signal() {
        Some(interrupted) => Err(interrupted),
        None => Ok(()),
    }
}

/// A reader that fails once a watched signal was caught, and retries reads
/// interrupted by any other signal.
pub(super) struct Interruptible<R>(pub(super) R);

impl<R: Read> Read for Interruptible<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(interrupted) = caught_signal() {
                // Not ErrorKind::Interrupted: std's read loops would retry that.
                return Err(io::Error::other(interrupted));
            }
            match self.0.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }
}

/// The error a pull returns when SIGINT, SIGTERM or SIGHUP arrived during it.
/// Everything it had created is removed by then; callers may exit 128+signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("rootfs pull interrupted by {}", signal_name(.signal))]
pub struct Interrupted {
    /// The signal number.
    pub signal: i32,
}

/// `SIGINT`; only the watched signals are caught, the number is for any other.
fn signal_name(signal: &i32) -> String {
    match WATCHED_SIGNALS.iter().find(|(sig, _)| sig == signal) {
        Some((_, name)) => (*name).to_string(),
        None => format!("signal {signal}"),
    }
}
