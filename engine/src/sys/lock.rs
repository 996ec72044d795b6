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
    #[error("cannot lock {}: {}", .path.display(), crate::sys::errno_desc(*.errno))]
    Lock {
        path: PathBuf,
        errno: rustix::io::Errno,
    },
}

/// An exclusive lock on a file, released on drop.
pub struct Lock {
    /// The flock goes with the file's close.
    _held: File,
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
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
        .map(|()| Lock { _held: file })
        .map_err(|errno| Error::Lock {
            path: path.to_owned(),
            errno,
        })
}
