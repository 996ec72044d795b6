//! Pure types and parsing (no file system, no network, no process): the
//! container description and its parts, and the engine's settings.
pub mod bundle;
pub mod config;
pub mod env;
pub mod exit;
pub mod limits;
pub mod mounts;
pub mod names;
pub mod network;
pub mod ports;
pub mod security;
pub mod spec;
pub mod subnet;
pub mod userns;
pub mod users;
pub mod volumes;

/// Input the model refused: one variant per option family, each carrying
/// its file's own error (whose sentence names the culprit and what to do).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Spec(#[from] spec::Error),
    #[error(transparent)]
    Name(#[from] names::Error),
    #[error(transparent)]
    Env(#[from] env::Error),
    #[error(transparent)]
    Limits(#[from] limits::Error),
    #[error(transparent)]
    Security(#[from] security::Error),
    #[error(transparent)]
    Userns(#[from] userns::Error),
    #[error(transparent)]
    Network(#[from] network::Error),
    #[error(transparent)]
    Ports(#[from] ports::Error),
    #[error(transparent)]
    Volume(#[from] volumes::Error),
    #[error(transparent)]
    Subnet(#[from] subnet::Error),
    #[error(transparent)]
    Mounts(#[from] mounts::Error),
    #[error(transparent)]
    User(#[from] users::Error),
}
