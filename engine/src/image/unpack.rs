//! Unpacking: the format from the magic bytes (xz, gzip, plain tar), then
//! every entry made through file descriptors.
//!
//! The archive is hostile until proven otherwise: its symlinks may point
//! anywhere, its hardlinks may name its symlinks, its directories may sit on
//! its symlinks. So no path is ever resolved on the host: each entry's parent
//! directory is opened from the rootfs's own fd with `openat2(RESOLVE_IN_ROOT)`
//! (symlinks inside the archive resolve as in the container and never climb
//! out), the entry is made there with the `*at` calls, and its owner and mode
//! are set on an fd opened with `O_NOFOLLOW`, or with `AT_SYMLINK_NOFOLLOW`
//! for a symlink (which has no mode of its own). A hardlink gets no owner or
//! mode: it shares the inode its first name already set.

use super::shift::{set_owner_mode, shifted};
use anyhow::{anyhow, bail, Context, Result};
use flate2::read::MultiGzDecoder;
use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags, Timespec, Timestamps};
use rustix::io::Errno;
use std::ffi::OsStr;
use std::fmt;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};
use xz2::read::XzDecoder;

/// Sniffs the format, decompresses and unpacks; then reads the rest of the
/// file so that the digest covers all of it.
pub(super) fn unpack_stream(
    src: &mut impl Read,
    url: &str,
    root: &Path,
    owner: Option<u32>,
) -> Result<()> {
    let head = read_head(src).with_context(|| format!("cannot read {url}"))?;
    let format = Format::sniff(&head)
        .map_err(|why| anyhow!("{url} is not a .tar.xz/.tar.gz/.tar tarball: {why}"))?;
    let stream = io::Cursor::new(head).chain(&mut *src);
    let mut decoded = ReadErrors {
        inner: format.decoder(stream),
        error: None,
    };
    let unpacked = unpack_tar(&mut decoded, root, owner).and_then(|()| {
        io::copy(&mut decoded, &mut io::sink())?;
        Ok(())
    });
    if let Err(e) = unpacked {
        return Err(match decoded.error {
            Some(why) => anyhow!("{url} is not a valid {format} tarball: {why}"),
            None => e.context(format!("cannot unpack {url}")),
        });
    }
    drop(decoded);
    io::copy(src, &mut io::sink()).with_context(|| format!("cannot read {url}"))?;
    Ok(())
}

/// The decompressed stream of an image layer blob (tar, tar+gzip,
/// tar+zstd, tar+xz, told by its magic bytes); an empty tar (its end
/// blocks alone, all zeros) is a tar too.
pub(super) fn layer_decoder<'a>(src: &'a mut impl Read, what: &str) -> Result<Box<dyn Read + 'a>> {
    let head = read_head(src).with_context(|| format!("cannot read {what}"))?;
    let format = if head.len() == 512 && head.iter().all(|&b| b == 0) {
        Format::Tar
    } else {
        Format::sniff(&head).map_err(|why| anyhow!("{what} is not a layer tarball: {why}"))?
    };
    Ok(format.decoder(io::Cursor::new(head).chain(src)))
}

/// The first tar block's worth of bytes (less if the file is shorter).
fn read_head(src: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(512);
    src.by_ref().take(512).read_to_end(&mut head)?;
    Ok(head)
}

/// Remembers whether reading (decompressing) failed, to tell a corrupt archive
/// from a failure to write the unpacked files.
struct ReadErrors<R> {
    inner: R,
    error: Option<String>,
}

impl<R: Read> Read for ReadErrors<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner
            .read(buf)
            .inspect_err(|e| self.error = Some(e.to_string()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Xz,
    Gzip,
    Zstd,
    Tar,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Xz => ".tar.xz",
            Format::Gzip => ".tar.gz",
            Format::Zstd => ".tar.zst",
            Format::Tar => ".tar",
        })
    }
}

impl Format {
    /// The format from the magic bytes, which cannot lie as a file name can;
    /// otherwise a description of what the file starts with.
    fn sniff(head: &[u8]) -> std::result::Result<Format, String> {
        if head.starts_with(b"\xfd7zXZ\0") {
            return Ok(Format::Xz);
        }
        if head.starts_with(b"\x1f\x8b") {
            return Ok(Format::Gzip);
        }
        if head.starts_with(ZSTD_MAGIC) {
            return Ok(Format::Zstd);
        }
        if is_tar_header(head) {
            return Ok(Format::Tar);
        }
        Err(describe_head(head))
    }

    fn decoder<'a>(self, stream: impl Read + 'a) -> Box<dyn Read + 'a> {
        match self {
            // Multi-stream decoders: parallel compressors concatenate streams.
            Format::Xz => Box::new(XzDecoder::new_multi_decoder(stream)),
            Format::Gzip => Box::new(MultiGzDecoder::new(stream)),
            // Image layers (tar+zstd); frames are concatenated as gzip's members.
            Format::Zstd => match zstd::stream::read::Decoder::new(stream) {
                Ok(decoder) => Box::new(decoder),
                Err(e) => Box::new(FailedReader(Some(e))),
            },
            Format::Tar => Box::new(stream),
        }
    }
}

const ZSTD_MAGIC: &[u8] = b"\x28\xb5\x2f\xfd";

/// A decoder that could not start: its error at the first read.
struct FailedReader(Option<io::Error>);

impl Read for FailedReader {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Err(self
            .0
            .take()
            .unwrap_or_else(|| io::Error::other("decoder failed")))
    }
}

/// Whether `block` is a tar header: its checksum field matches its bytes.
fn is_tar_header(block: &[u8]) -> bool {
    let Some(block) = block.get(..512) else {
        return false;
    };
    let field = &block[148..156];
    let digits: String = field
        .iter()
        .map(|&b| b as char)
        .filter(|c| c.is_digit(8))
        .collect();
    let Ok(stored) = u32::from_str_radix(&digits, 8) else {
        return false;
    };
    let sum: u32 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                u32::from(b' ')
            } else {
                u32::from(b)
            }
        })
        .sum();
    stored == sum
}

fn describe_head(head: &[u8]) -> String {
    if head.is_empty() {
        return "it is empty".into();
    }
    if head.starts_with(b"BZh") {
        return "it is bzip2-compressed, which is not supported".into();
    }
    let start = &head[..head.len().min(48)];
    if start
        .iter()
        .all(|&b| b.is_ascii_graphic() || b == b' ' || b == b'\n' || b == b'\r' || b == b'\t')
    {
        return format!("it starts with text {:?}", String::from_utf8_lossy(start));
    }
    let hex: Vec<String> = head.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("it starts with bytes {}", hex.join(" "))
}

// Unpacking, entry by entry.

/// Unpacks a tar stream into `root`, keeping modes (setuid bits included),
/// owners (shifted by `owner` when given), mtimes, symlinks and hardlinks.
/// Device nodes and fifos are skipped: the engine gives each container its
/// own /dev.
pub(super) fn unpack_tar(reader: impl Read, root: &Path, owner: Option<u32>) -> Result<()> {
    unpack_entries(reader, root, owner, Names::Plain)
}

/// Unpacks one image layer into `root` (an empty directory): as
/// `unpack_tar` with the owners as the archive gives them, and its
/// whiteouts (`.wh.NAME`, `.wh..wh..opq`) made overlayfs whiteouts.
pub(super) fn unpack_layer(reader: impl Read, root: &Path) -> Result<()> {
    unpack_entries(reader, root, None, Names::Layer)
}

/// Whether `.wh.` names are an image layer's whiteouts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Names {
    Plain,
    Layer,
}

/// `Some(file name)` when `rel` is a whiteout.
fn whiteout_name(rel: &Path) -> Option<&OsStr> {
    let name = rel.file_name()?.to_str()?;
    name.strip_prefix(super::whiteout::PREFIX).map(OsStr::new)
}

fn unpack_entries(reader: impl Read, root: &Path, owner: Option<u32>, names: Names) -> Result<()> {
    let root_fd = rustix::fs::open(root, DIR_FLAGS, Mode::empty())
        .with_context(|| format!("cannot open {}", root.display()))?;
    if let Err(Errno::NOSYS) = open_in_root(&root_fd, Path::new("")) {
        bail!("unpacking needs openat2, which this kernel lacks: use Linux 5.6 or later");
    }
    let base = owner.unwrap_or(0);
    // No xattr of the archive's is applied (PAX `SCHILY.xattr.*` records
    // are read past): a layer's own `user.overlay.*` (redirect, metacopy,
    // opaque...) would be honoured by a container's `userxattr` overlay;
    // its only overlay xattrs are the whiteouts the store makes.
    let mut archive = tar::Archive::new(reader);
    let mut skipped = 0;
    // Directory mtimes are set last: every entry made inside one changes it.
    let mut dir_times = Vec::new();
    for entry in archive.entries().context("cannot read the archive")? {
        let mut entry = entry.context("cannot read the archive")?;
        let kind = entry.header().entry_type();
        if kind.is_character_special() || kind.is_block_special() || kind.is_fifo() {
            skipped += 1;
            continue;
        }
        let raw = entry
            .path()
            .context("bad path in the archive")?
            .into_owned();
        let rel = inside_path(&raw).ok_or_else(|| escaping(&raw))?;
        if let Some(hidden) = whiteout_name(&rel).filter(|_| names == Names::Layer) {
            let (parent, _) = parent_and_name(&root_fd, &rel, base)?
                .ok_or_else(|| anyhow!("a whiteout at the archive's root"))?;
            super::whiteout::make(&parent, hidden)
                .with_context(|| format!("cannot unpack the whiteout `{}`", raw.display()))?;
            continue;
        }
        let made = unpack_entry(&root_fd, &rel, &mut entry, base)
            .with_context(|| format!("cannot unpack `{}`", raw.display()))?;
        if let Some(mtime) = made {
            dir_times.push((rel, mtime));
        }
    }
    for (rel, mtime) in dir_times.iter().rev() {
        let times = timestamps(*mtime);
        let set = open_in_root(&root_fd, rel).and_then(|dir| rustix::fs::futimens(&dir, &times));
        set.map_err(|e| anyhow!("cannot set the mtime of `{}`: {e}", rel.display()))?;
    }
    if skipped > 0 {
        eprintln!(
            "note: skipped {skipped} device node(s) or fifo(s); the engine mounts its own /dev"
        );
    }
    Ok(())
}

/// Opens directories: never through a final symlink, never inherited.
const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// Symlinks resolve as if `root` were `/` (so never above it); no /proc magic.
const IN_ROOT: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

/// Makes one entry at `rel` under `root`. Returns the mtime to set at the end
/// when the entry is a directory.
fn unpack_entry<R: Read>(
    root: &OwnedFd,
    rel: &Path,
    entry: &mut tar::Entry<R>,
    base: u32,
) -> Result<Option<u64>> {
    let header = entry.header();
    let kind = header.entry_type();
    // An empty owner field (some writers leave it blank) means root, as in tar.
    let uid = shifted(header.uid().unwrap_or(0), base, rel)?;
    let gid = shifted(header.gid().unwrap_or(0), base, rel)?;
    let mode = header.mode()? & 0o7777;
    let mtime = header.mtime()?;
    let Some((parent, name)) = parent_and_name(root, rel, base)? else {
        // The archive's `./`: the rootfs's root itself. Its owner is BASE
        // (or 0), never the archive's: the engine maps a container's user
        // namespace from the owner of its root, and the host IDs a
        // container runs as are the engine's choice.
        if !kind.is_dir() {
            bail!("the archive's root entry is not a directory");
        }
        set_owner_mode(root.as_fd(), base, base, mode).map_err(|e| anyhow!("chown/chmod: {e}"))?;
        return Ok(Some(mtime));
    };
    if kind.is_dir() {
        let dir = make_dir(&parent, name)?;
        set_owner_mode(dir.as_fd(), uid, gid, mode).map_err(|e| anyhow!("chown/chmod: {e}"))?;
        Ok(Some(mtime))
    } else if kind.is_file() || kind.is_contiguous() || kind.is_gnu_sparse() {
        make_file(&parent, name, entry, (uid, gid, mode), mtime)?;
        Ok(None)
    } else if kind.is_symlink() {
        make_symlink(&parent, name, entry, (uid, gid), mtime)?;
        Ok(None)
    } else if kind.is_hard_link() {
        make_hardlink(root, rel, &parent, name, entry)?;
        Ok(None)
    } else {
        // pax global headers, volume labels and other non-files.
        Ok(None)
    }
}

/// A regular file: created new (never through what was there), its
/// contents, then owner and mode (chown clears setuid/setgid, so the mode
/// comes after the owner), then mtime.
fn make_file<R: Read>(
    parent: &OwnedFd,
    name: &OsStr,
    entry: &mut tar::Entry<R>,
    (uid, gid, mode): (u32, u32, u32),
    mtime: u64,
) -> Result<()> {
    remove_old(parent, name)?;
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(parent, name, flags, Mode::from_raw_mode(0o600))
        .map_err(|e| anyhow!("create: {e}"))?;
    let mut file = std::fs::File::from(fd);
    io::copy(entry, &mut file).context("cannot write its contents")?;
    set_owner_mode(file.as_fd(), uid, gid, mode).map_err(|e| anyhow!("chown/chmod: {e}"))?;
    rustix::fs::futimens(&file, &timestamps(mtime)).map_err(|e| anyhow!("set mtime: {e}"))?;
    Ok(())
}

/// A symlink, its target as the archive gives it (resolved in-root later,
/// never here).
fn make_symlink<R: Read>(
    parent: &OwnedFd,
    name: &OsStr,
    entry: &tar::Entry<R>,
    (uid, gid): (u32, u32),
    mtime: u64,
) -> Result<()> {
    let target = entry
        .link_name()
        .context("bad symlink target in the archive")?
        .filter(|t| !t.as_os_str().is_empty())
        .ok_or_else(|| anyhow!("symlink without a target"))?;
    remove_old(parent, name)?;
    rustix::fs::symlinkat(target.as_os_str(), parent, name).map_err(|e| anyhow!("symlink: {e}"))?;
    // The link itself: chown without following, and no chmod at all.
    rustix::fs::chownat(
        parent,
        name,
        Some(rustix::fs::Uid::from_raw(uid)),
        Some(rustix::fs::Gid::from_raw(gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(|e| anyhow!("chown: {e}"))?;
    rustix::fs::utimensat(parent, name, &timestamps(mtime), AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| anyhow!("set mtime: {e}"))?;
    Ok(())
}

/// A hardlink to an entry inside the tree (`rel` is the link's own path).
fn make_hardlink<R: Read>(
    root: &OwnedFd,
    rel: &Path,
    parent: &OwnedFd,
    name: &OsStr,
    entry: &tar::Entry<R>,
) -> Result<()> {
    let raw = entry
        .link_name()
        .context("bad hardlink target in the archive")?
        .ok_or_else(|| anyhow!("hardlink without a target"))?
        .into_owned();
    let source = inside_path(&raw).ok_or_else(|| escaping(&raw))?;
    if source == rel {
        return Ok(()); // a link to itself: already there
    }
    let (source_dir, source_name) = match source.parent().zip(source.file_name()) {
        Some((dir, name)) => (open_in_root(root, dir), name),
        None => bail!("hardlink to the rootfs's root"),
    };
    let source_dir = source_dir.map_err(|e| anyhow!("hardlink target `{}`: {e}", raw.display()))?;
    remove_old(parent, name)?;
    // No AT_SYMLINK_FOLLOW: a link to a symlink is a link to the symlink,
    // and its target stays inside the tree. No chown or chmod either.
    rustix::fs::linkat(&source_dir, source_name, parent, name, AtFlags::empty())
        .map_err(|e| anyhow!("hardlink to `{}`: {e}", raw.display()))?;
    Ok(())
}

/// The directory that will hold `rel` (made as needed, owned by `base`) and
/// the last component of `rel`; `None` for the root itself.
fn parent_and_name<'a>(
    root: &OwnedFd,
    rel: &'a Path,
    base: u32,
) -> Result<Option<(OwnedFd, &'a OsStr)>> {
    let (Some(dir), Some(name)) = (rel.parent(), rel.file_name()) else {
        return Ok(None);
    };
    match open_in_root(root, dir) {
        Ok(fd) => return Ok(Some((fd, name))),
        Err(Errno::NOENT) => {}
        Err(e) => bail!("cannot open its directory: {e}"),
    }
    // A directory the archive lists no entry for (or not yet): made 0755,
    // owned by the container's root, one level at a time.
    let mut made = PathBuf::new();
    for part in dir.components() {
        let parent = open_in_root(root, &made)
            .map_err(|e| anyhow!("cannot open `{}`: {e}", made.display()))?;
        made.push(part);
        if let Err(e) = open_in_root(root, &made) {
            if e != Errno::NOENT {
                bail!("cannot open `{}`: {e}", made.display());
            }
            let dir = make_dir(&parent, part.as_os_str())?;
            set_owner_mode(dir.as_fd(), base, base, 0o755)
                .map_err(|e| anyhow!("chown/chmod `{}`: {e}", made.display()))?;
        }
    }
    let fd = open_in_root(root, dir).map_err(|e| anyhow!("cannot open its directory: {e}"))?;
    Ok(Some((fd, name)))
}

/// Opens the directory `rel` under `root` as the container would resolve it.
fn open_in_root(root: &OwnedFd, rel: &Path) -> rustix::io::Result<OwnedFd> {
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    crate::sys::openat::openat2_retrying(root.as_fd(), rel, DIR_FLAGS, Mode::empty(), IN_ROOT)
}

/// The directory `name` in `parent`, made if missing; anything else of that
/// name (a file, a symlink) is replaced, never followed.
fn make_dir(parent: &OwnedFd, name: &OsStr) -> Result<OwnedFd> {
    match rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o700)) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(e) => bail!("mkdir: {e}"),
    }
    match rustix::fs::openat(parent, name, DIR_FLAGS, Mode::empty()) {
        Ok(fd) => Ok(fd),
        Err(Errno::LOOP | Errno::NOTDIR) => {
            remove_old(parent, name)?;
            rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o700))
                .map_err(|e| anyhow!("mkdir: {e}"))?;
            rustix::fs::openat(parent, name, DIR_FLAGS, Mode::empty())
                .map_err(|e| anyhow!("open: {e}"))
        }
        Err(e) => bail!("open: {e}"),
    }
}

/// Removes a non-directory at `name` (a later entry replaces an earlier one,
/// as tar does); a directory there is an error.
fn remove_old(parent: &OwnedFd, name: &OsStr) -> Result<()> {
    match rustix::fs::unlinkat(parent, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(Errno::ISDIR) => bail!("a directory of that name exists already"),
        Err(e) => bail!("cannot replace what is there: {e}"),
    }
}

fn timestamps(mtime: u64) -> Timestamps {
    let time = Timespec {
        tv_sec: i64::try_from(mtime).unwrap_or(i64::MAX),
        tv_nsec: 0,
    };
    Timestamps {
        last_access: time,
        last_modification: time,
    }
}

/// `path` made relative to the rootfs; `None` if it climbs out.
pub(super) fn inside_path(path: &Path) -> Option<PathBuf> {
    let mut rel = PathBuf::new();
    for part in path.components() {
        match part {
            Component::Normal(name) => rel.push(name),
            Component::ParentDir => return None,
            _ => {}
        }
    }
    Some(rel)
}

fn escaping(path: &Path) -> anyhow::Error {
    anyhow!(
        "archive entry `{}` points outside the rootfs; refusing the archive",
        path.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_sniffed() {
        assert_eq!(Format::sniff(b"\xfd7zXZ\0rest"), Ok(Format::Xz));
        assert_eq!(Format::sniff(b"\x1f\x8b\x08"), Ok(Format::Gzip));
        assert!(Format::sniff(b"<!DOCTYPE html>")
            .unwrap_err()
            .contains("DOCTYPE"));
        assert!(Format::sniff(&[0u8; 512]).is_err());
    }

    #[test]
    fn escaping_paths_are_refused() {
        assert!(inside_path(Path::new("../x")).is_none());
        assert!(inside_path(Path::new("a/../../x")).is_none());
        assert_eq!(
            inside_path(Path::new("/./a/b")).unwrap(),
            PathBuf::from("a/b")
        );
    }

    /// A `./` entry owned by a host user (or by 2^30 - BASE) gives the root
    /// to BASE (or 0), never to the archive's owner; its mode is kept, and
    /// the owners of the other entries are shifted as always.
    #[test]
    fn the_archive_root_entry_does_not_choose_the_owner() {
        use std::os::unix::fs::MetadataExt;
        let tar = |root_owner: u64| {
            let mut b = tar::Builder::new(Vec::new());
            for (name, uid) in [("./", root_owner), ("./f", 7)] {
                let mut h = tar::Header::new_gnu();
                let dir = name == "./";
                h.set_entry_type(if dir {
                    tar::EntryType::Directory
                } else {
                    tar::EntryType::Regular
                });
                h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
                h.set_mode(if dir { 0o750 } else { 0o644 });
                h.set_uid(uid);
                h.set_gid(uid);
                h.set_size(0);
                h.set_cksum();
                b.append(&h, &[][..]).unwrap();
            }
            b.into_inner().unwrap()
        };
        for (root_owner, owner, want) in [
            (1000, None, 0),
            ((1 << 30) - 131_072, Some(131_072), 131_072),
            (0, Some(196_608), 196_608),
        ] {
            let dir = tempfile::tempdir().unwrap();
            unpack_tar(&tar(root_owner)[..], dir.path(), owner).unwrap();
            let root = std::fs::metadata(dir.path()).unwrap();
            assert_eq!(
                (root.uid(), root.gid(), root.mode() & 0o7777),
                (want, want, 0o750),
                "./ owned by {root_owner}, --owner {owner:?}"
            );
            let f = std::fs::metadata(dir.path().join("f")).unwrap();
            assert_eq!(f.uid(), want + 7);
        }
    }
}
