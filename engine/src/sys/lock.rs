//! Exclusive file locks (flock), released on drop.

use std::fs::File;
use std::path::{Path, PathBuf};

/// Why a lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open lock {}", .path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot lock {}: {}", .path.display(), .errno.desc())]
    Lock {
        path: PathBuf,
        errno: nix::errno::Errno,
    },
}

/// An exclusive lock on a file, released on drop.
pub struct Lock {
    _held: nix::fcntl::Flock<File>,
}

/// Takes an exclusive flock on `path` (created if missing), waiting for it.
pub fn lock_file(path: &Path) -> Result<Lock, Error> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|source| Error::Open {
            path: path.to_owned(),
            source,
        })?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map(|held| Lock { _held: held })
        .map_err(|(_, errno)| Error::Lock {
            path: path.to_owned(),
            errno,
        })
}
