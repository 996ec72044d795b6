//! Paths inside a rootfs, resolved as the container would see them.

use std::ffi::OsString;
use std::fs;
use std::path::{Component, Path, PathBuf};

/// Why a path could not be resolved inside a rootfs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("too many levels of symlinks resolving {} in {}", .path.display(), .root.display())]
    TooManyLinks { path: PathBuf, root: PathBuf },
    #[error("cannot read the symlink {}", .link.display())]
    ReadLink {
        link: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// symlinks (absolute or relative) are followed inside `root` and `..` never
/// climbs above it. Missing components are kept as they are.
pub fn resolve_in_rootfs(root: &Path, path: &Path) -> Result<PathBuf, Error> {
    const MAX_LINKS: usize = 40; // as the kernel's ELOOP limit
    let mut resolved = PathBuf::new();
    let mut pending: Vec<OsString> = parts(path);
    let mut links = 0;
    while let Some(part) = pending.pop() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        let candidate = resolved.join(&part);
        let on_host = root.join(&candidate);
        match fs::symlink_metadata(&on_host) {
            Ok(meta) if meta.file_type().is_symlink() => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(Error::TooManyLinks {
                        path: path.to_owned(),
                        root: root.to_owned(),
                    });
                }
                let target = fs::read_link(&on_host).map_err(|source| Error::ReadLink {
                    link: on_host.clone(),
                    source,
                })?;
                if target.is_absolute() {
                    resolved = PathBuf::new();
                }
                pending.extend(parts(&target));
            }
            _ => resolved = candidate,
        }
    }
    Ok(root.join(resolved))
}

/// The components of `path` still to resolve, last one first, `.` dropped.
fn parts(path: &Path) -> Vec<OsString> {
    let mut parts: Vec<OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect();
    parts.reverse();
    parts
}
