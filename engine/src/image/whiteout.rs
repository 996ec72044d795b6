//! Image whiteouts as overlayfs reads them. In a layer tar, `.wh.NAME`
//! deletes NAME of the layers below and `.wh..wh..opq` hides everything a
//! directory held below; in a layer directory used as an overlay lower,
//! the first is a character device 0:0 named NAME, the second the xattr
//! `user.overlay.opaque=y` on the directory (read by an overlay mounted
//! with `userxattr`, as a container's is, in its user namespace) and
//! `trusted.overlay.opaque=y` (read by one mounted on the host).

use anyhow::{anyhow, bail, Result};
use rustix::fs::{FileType, Mode, XattrFlags};
use std::ffi::OsStr;
use std::os::fd::OwnedFd;

/// What starts a whiteout's file name.
pub const PREFIX: &str = ".wh.";
/// The opaque marker's name after the prefix.
const OPAQUE: &str = ".wh..opq";
/// overlayfs's opaque directory xattr.
pub const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// The same, as overlayfs reads it with `userxattr`.
pub const USER_OPAQUE_XATTR: &str = "user.overlay.opaque";

/// Makes the whiteout of `hidden` (the name after `.wh.`) in `dir`.
pub(super) fn make(dir: &OwnedFd, hidden: &OsStr) -> Result<()> {
    if hidden == OPAQUE {
        for name in [USER_OPAQUE_XATTR, OPAQUE_XATTR] {
            rustix::fs::fsetxattr(dir, name, b"y", XattrFlags::empty())
                .map_err(|e| anyhow!("set {name}: {e}"))?;
        }
        return Ok(());
    }
    if hidden.is_empty()
        || hidden == "."
        || hidden == ".."
        || hidden.to_string_lossy().contains('/')
    {
        bail!("it names no file");
    }
    // NAME may be in this layer already (a tar may list it before its
    // whiteout); the whiteout replaces it, as the layer's last word.
    match rustix::fs::unlinkat(dir, hidden, rustix::fs::AtFlags::empty()) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => {}
        Err(e) => bail!("cannot replace `{}`: {e}", hidden.to_string_lossy()),
    }
    rustix::fs::mknodat(
        dir,
        hidden,
        FileType::CharacterDevice,
        Mode::empty(),
        rustix::fs::makedev(0, 0),
    )
    .map_err(|e| anyhow!("mknod: {e}"))
}
