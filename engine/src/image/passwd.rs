//! `--user NAME[:GROUP]` (or an image's `User`) looked up in the image's
//! own /etc/passwd and /etc/group, read on fds inside the layers as the
//! overlay would show them: the top layer that has the file wins, a
//! whiteout or an opaque /etc below it hides the lower ones. The image is
//! hostile: a symlink at /etc or at the file is refused (it could point at
//! the host's files, or at another layer's), nothing but a regular file is
//! read, and at most `MAX_ACCOUNTS` bytes of it.

use crate::model::bundle::User;
use crate::model::users::{self, Id};
use anyhow::{bail, Context, Result};
use rustix::fs::{FileType, Mode, OFlags};
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Account files larger than this are refused.
const MAX_ACCOUNTS: u64 = 1 << 20;

/// The IDs `spec` (`USER` or `USER:GROUP`, each a name or a number) stands
/// for in the tree `layers` (top first) make, and the user's home when
/// /etc/passwd names one: the image's files read here, resolved by the
/// same rules as `exec -u` (`model::users`).
pub fn lookup(layers: &[PathBuf], spec: &str) -> Result<(User, Option<String>)> {
    let given = users::parse_user(spec)?;
    // UID:GID needs no account file (and works in an image whose files
    // the engine will not read).
    if let (Id::Number(uid), Some(Id::Number(gid))) = (&given.user, &given.group) {
        let user = User {
            uid: *uid,
            gid: *gid,
            additional_gids: Vec::new(),
            umask: None,
        };
        return Ok((user, None));
    }
    let passwd = read_etc(layers, "passwd")?.unwrap_or_default();
    let group = read_etc(layers, "group")?.unwrap_or_default();
    let (mut user, home) = users::resolve(&given, &passwd, &group)?;
    let gid = user.gid;
    user.additional_gids.retain(|g| *g != gid);
    user.additional_gids.dedup();
    Ok((user, Some(home).filter(|h| h.starts_with('/'))))
}

/// `/etc/NAME` as the overlay of `layers` (top first) shows it: None
/// when no layer has it (or a whiteout hides it).
pub fn read_etc(layers: &[PathBuf], name: &str) -> Result<Option<String>> {
    for layer in layers {
        match in_layer(layer, name)? {
            Found::File(text) => return Ok(Some(text)),
            Found::Hidden => return Ok(None),
            Found::Nothing => continue,
        }
    }
    Ok(None)
}

enum Found {
    File(String),
    /// A whiteout, an opaque /etc, or something not a directory at /etc.
    Hidden,
    Nothing,
}

const PATH_NOFOLLOW: OFlags = OFlags::PATH.union(OFlags::NOFOLLOW).union(OFlags::CLOEXEC);

fn in_layer(layer: &Path, name: &str) -> Result<Found> {
    let what = format!("/etc/{name}");
    let root = rustix::fs::open(
        layer,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("cannot open the image layer {}", layer.display()))?;
    let etc = match rustix::fs::openat(&root, "etc", PATH_NOFOLLOW, Mode::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(Found::Nothing),
        Err(e) => bail!(
            "cannot open /etc in the image layer {}: {e}",
            layer.display()
        ),
    };
    match kind(&etc)? {
        FileType::Directory => {}
        FileType::Symlink => bail!(
            "the image's /etc is a symlink: the engine does not follow it to read {what}; give --user as UID:GID"
        ),
        // A whiteout (0:0) or a file in /etc's place.
        _ => return Ok(Found::Hidden),
    }
    let file = match rustix::fs::openat(&etc, name, PATH_NOFOLLOW, Mode::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) if opaque(&etc) => return Ok(Found::Hidden),
        Err(rustix::io::Errno::NOENT) => return Ok(Found::Nothing),
        Err(e) => bail!(
            "cannot open {what} in the image layer {}: {e}",
            layer.display()
        ),
    };
    match kind(&file)? {
        FileType::RegularFile => {}
        FileType::Symlink => bail!(
            "the image's {what} is a symlink: the engine does not follow it; give --user as UID:GID"
        ),
        FileType::CharacterDevice => return Ok(Found::Hidden),
        _ => bail!("the image's {what} is not a regular file: give --user as UID:GID"),
    }
    // Reopened through the O_PATH fd: the same inode, never a path again.
    let readable = rustix::fs::open(
        crate::sys::openat::proc_self_fd_path(file.as_fd()),
        // Not NOFOLLOW: /proc/self/fd/N is itself a (magic) link.
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("cannot read the image's {what}"))?;
    let mut text = String::new();
    std::fs::File::from(readable)
        .take(MAX_ACCOUNTS + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read the image's {what}"))?;
    if text.len() as u64 > MAX_ACCOUNTS {
        bail!("the image's {what} is larger than 1 MiB: give --user as UID:GID");
    }
    Ok(Found::File(text))
}

fn kind(fd: &OwnedFd) -> Result<FileType> {
    let st = rustix::fs::fstat(fd).context("cannot stat a file of the image")?;
    Ok(FileType::from_raw_mode(st.st_mode))
}

/// Whether the directory is opaque (hides what the layers below hold).
fn opaque(dir: &OwnedFd) -> bool {
    let Ok(readable) = rustix::fs::open(
        crate::sys::openat::proc_self_fd_path(dir.as_fd()),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return false;
    };
    let mut value = [0u8; 4];
    matches!(
        rustix::fs::fgetxattr(&readable, super::whiteout::OPAQUE_XATTR, &mut value),
        Ok(1) if value[0] == b'y'
    )
}
