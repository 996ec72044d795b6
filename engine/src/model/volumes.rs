//! `-v HOST:CONTAINER[:ro|rw]`. Whether the host path exists is a host check
//! (validate).

use anyhow::{bail, Result};
use std::path::{Component, Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    /// As given until validated; then canonical.
    pub host: PathBuf,
    pub container: PathBuf,
    pub readonly: bool,
}

pub fn parse_volume(v: &str) -> Result<Volume> {
    let parts: Vec<&str> = v.split(':').collect();
    let (host, container, readonly) = match parts.as_slice() {
        [h, c] => (*h, *c, false),
        [h, c, "ro"] => (*h, *c, true),
        [h, c, "rw"] => (*h, *c, false),
        _ => bail!("invalid --volume {v:?}: use HOST:CONTAINER or HOST:CONTAINER:ro"),
    };
    if host.is_empty() {
        bail!("invalid --volume {v:?}: the host path is empty: use HOST:CONTAINER");
    }
    if v.contains('\0') {
        bail!("invalid --volume {v:?}: a path holds a NUL byte");
    }
    if !container.starts_with('/')
        || Path::new(container)
            .components()
            .any(|c| c == Component::ParentDir)
    {
        bail!("volume target {container:?} must be an absolute path without '..'");
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
