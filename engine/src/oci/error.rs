//! The errors of the OCI verbs: a variant for each failure a caller tells
//! apart (containerd looks for "does not exist"; a client retries a
//! duplicate ID with another), and `Other` for the rest, whose chain of
//! context is the message. The facade wraps it (`crate::Error::Oci`).

use super::state::Status;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid container ID {0:?}: use characters [A-Za-z0-9_.+-]")]
    InvalidId(String),
    /// No state for this ID in the --root.
    #[error("container {0} does not exist")]
    NoSuchContainer(String),
    #[error("container {0} already exists: choose another ID, or delete it first")]
    AlreadyExists(String),
    /// The verb needs the container in another state.
    #[error("cannot {verb} container {id}: it is {}, not {}", .is.as_str(), .wanted.as_str())]
    WrongState {
        verb: &'static str,
        id: String,
        is: Status,
        wanted: Status,
    },
    /// `delete` without --force of a running container.
    #[error(
        "cannot delete container {0}: it is running: stop it first (kill), or use delete --force"
    )]
    Running(String),
    /// `kill` (without --all) of a stopped container.
    #[error("cannot kill container {0}: container not running")]
    NotRunning(String),
    /// `spec` where the bundle has a config.json (runc's sentence).
    #[error("File config.json exists. Remove it first")]
    ConfigExists,
    /// The host side's failure, passed on as it is: the init's or an exec'd
    /// process's report keeps its exit code (podman tells 126 from 127).
    #[error(transparent)]
    Parent(#[from] crate::parent::Error),
    /// Any other failure, with its context.
    #[error("{0:#}")]
    Other(#[from] anyhow::Error),
}

/// A failure injected at a failpoint (`failpoints` feature).
#[cfg(feature = "failpoints")]
impl From<crate::sys::failpoint::Injected> for Error {
    fn from(injected: crate::sys::failpoint::Injected) -> Error {
        Error::Other(injected.into())
    }
}
