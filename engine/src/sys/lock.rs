//! Exclusive file locks (flock), released on drop.

use anyhow::{Context, Result};
use std::fs::File;
use std::path::Path;

/// An exclusive lock on a file, released on drop.
pub struct Lock {
    _held: nix::fcntl::Flock<File>,
}

/// Takes an exclusive flock on `path` (created if missing), waiting for it.
pub fn lock_file(path: &Path) -> Result<Lock> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open lock {}", path.display()))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map(|held| Lock { _held: held })
        .map_err(|(_, errno)| anyhow::anyhow!("cannot lock {}: {}", path.display(), errno.desc()))
}
