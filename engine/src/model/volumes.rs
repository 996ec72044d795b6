//! `-v HOST:CONTAINER[:OPTIONS]`, OPTIONS a comma-separated list of `ro`,
//! `rw`, `U` (chown the source to the container's root), and `z`/`Z`
//! (SELinux relabelling, accepted and ignored: the engine has no SELinux
//! support). Whether the host path exists is a host check (validate).

use std::path::{Component, Path, PathBuf};

/// A `-v` refused: the argument as given, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    #[error("invalid --volume {0:?}: use HOST:CONTAINER or HOST:CONTAINER:OPTIONS, OPTIONS a comma-separated list of ro, rw, U, z, Z")]
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
    pub owner: Ownership,
}

/// Whose the files of a volume are, seen from the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ownership {
    /// The host's IDs as the container's user namespace maps them (an OCI
    /// bundle's bind mounts: the bundle says what it wants).
    #[default]
    AsIs,
    /// `-v`: idmapped so container root acts as the source's owner, where
    /// the kernel can and the owner is not host root (parent::run).
    Idmap,
    /// `:U`: the source is chowned to container root's host IDs first.
    Chown,
}

pub fn parse_volume(v: &str) -> Result<Volume, Error> {
    let parts: Vec<&str> = v.split(':').collect();
    let (host, container, options) = match parts.as_slice() {
        [h, c] => (*h, *c, ""),
        [h, c, o] if !o.is_empty() => (*h, *c, *o),
        _ => return Err(Error::Form(v.into())),
    };
    let (mut readonly, mut owner) = (false, Ownership::Idmap);
    for option in options.split(',').filter(|_| !options.is_empty()) {
        match option {
            "ro" => readonly = true,
            "rw" => readonly = false,
            "U" => owner = Ownership::Chown,
            "z" | "Z" => {}
            _ => return Err(Error::Form(v.into())),
        }
    }
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
        owner,
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
        assert!(parse_volume("/tmp:/data:").is_err());
        assert!(parse_volume("/tmp:/data:ro,").is_err());
        let v = parse_volume("/tmp:/data:Z,U,ro").unwrap();
        assert_eq!((v.readonly, v.owner), (true, Ownership::Chown));
        let v = parse_volume("/tmp:/data:z").unwrap();
        assert_eq!((v.readonly, v.owner), (false, Ownership::Idmap));
        assert_eq!(parse_volume("/tmp:/d").unwrap().owner, Ownership::Idmap);
        // Found by tests/props.rs: refused here, not later by the host check.
        assert!(parse_volume(":/").is_err());
        assert!(parse_volume("/tmp:/d\0").is_err());
    }
}
