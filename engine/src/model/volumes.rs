//! `-v HOST:CONTAINER[:ro|rw]`. Whether the host path exists is a host check
//! (validate).

use std::path::{Component, Path, PathBuf};

/// A `-v` refused: the argument as given, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    #[error("invalid --volume {0:?}: use HOST:CONTAINER or HOST:CONTAINER:ro")]
    Form(String),
    #[error("invalid --volume {0:?}: the host path is empty: use HOST:CONTAINER")]
    EmptyHost(String),
    #[error("invalid --volume {0:?}: a path holds a NUL byte")]
    Nul(String),
    #[error("volume target {0:?} must be an absolute path without '..'")]
    Target(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    /// As given until validated; then canonical.
    pub host: PathBuf,
    pub container: PathBuf,
    pub readonly: bool,
}

pub fn parse_volume(v: &str) -> Result<Volume, Error> {
    let parts: Vec<&str> = v.split(':').collect();
    let (host, container, readonly) = match parts.as_slice() {
        [h, c] => (*h, *c, false),
        [h, c, "ro"] => (*h, *c, true),
        [h, c, "rw"] => (*h, *c, false),
        _ => return Err(Error::Form(v.into())),
    };
    if host.is_empty() {
        return Err(Error::EmptyHost(v.into()));
    }
    if v.contains('\0') {
        return Err(Error::Nul(v.into()));
    }
    if !container.starts_with('/')
        || Path::new(container)
            .components()
            .any(|c| c == Component::ParentDir)
    {
        return Err(Error::Target(container.into()));
    }
    Ok(Volume {
        host: PathBuf::from(host),
        container: PathBuf::from(container),
        readonly,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes() {
        assert!(parse_volume("/tmp:/data:ro").unwrap().readonly);
        assert!(parse_volume("/tmp:data").is_err());
        assert!(parse_volume("/tmp:/a/../b").is_err());
        assert!(parse_volume("/tmp:/data:xx").is_err());
        // Found by tests/props.rs: refused here, not later by the host check.
        assert!(parse_volume(":/").is_err());
        assert!(parse_volume("/tmp:/d\0").is_err());
    }
}
