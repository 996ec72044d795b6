//! The image store (`ENGINE_IMAGE_STORE`, default `/var/lib/engine/images`):
//!
//! ```text
//! blobs/sha256/HEX        manifests and configs, verified (sha256 and size)
//! layers/HEX/root/        a layer unpacked once, keyed by its diff ID,
//! layers/HEX/size           with overlayfs whiteouts; its tar's size
//! layers/HEX/user-opaque    (empty) its opaque dirs have the user xattr
//! images/HEX.json         an image record, keyed by its config digest (the ID)
//! locks/                  flock files: one per layer, one for the records
//! tmp/PID-N/              a pull's scratch (archives unpacked), removed after
//! ```
//!
//! Nothing half-made is ever visible under its final name: a layer is
//! unpacked into `layers/.tmp-HEX-PID` and renamed into place; a blob or
//! record is written beside its name and renamed. A layer is made under its
//! own lock, so two engines pulling the same image unpack it once; what a
//! killed engine left (a `.tmp-` of a layer, a `tmp/PID-N` of a dead PID) is
//! removed by the next one that takes the lock.

use super::config::ImageConfig;
use super::reference;
use crate::sys::failpoint::step;
use crate::sys::lock::{lock_file, Lock};
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// The store's default place.
pub const DEFAULT_STORE: &str = "/var/lib/engine/images";

/// In a layer's directory: its opaque directories carry
/// `user.overlay.opaque` too (layers unpacked before lack it, and get it
/// at their next run).
const USER_OPAQUE: &str = "user-opaque";

/// Manifests and configs larger than this are refused (the registry rule).
pub const MAX_DOCUMENT: u64 = 4 << 20;

/// The largest a layer may unpack to (its tar's bytes) unless
/// `ENGINE_IMAGE_MAX_LAYER` says otherwise: the stop for a decompression
/// bomb. An absolute cap, not a ratio to the blob: deflate cannot pass
/// about 1032:1, so a ratio loose enough for honest zstd layers of sparse
/// files would never stop a gzip one; and the largest layers people pull
/// (CUDA, ML frameworks) unpack to tens of GB, well under this.
pub const DEFAULT_MAX_LAYER: u64 = 256 << 30;

/// `ENGINE_IMAGE_MAX_LAYER` (bytes, or with a K, M, G or T suffix), else
/// [`DEFAULT_MAX_LAYER`].
fn max_layer() -> Result<u64> {
    let Some(text) = std::env::var_os("ENGINE_IMAGE_MAX_LAYER").filter(|v| !v.is_empty()) else {
        return Ok(DEFAULT_MAX_LAYER);
    };
    let text = text.to_string_lossy();
    let (digits, shift) = match text.trim().char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => 64,
            };
            (&text.trim()[..i], shift)
        }
        _ => (text.trim(), 0),
    };
    digits
        .parse::<u64>()
        .ok()
        .filter(|_| shift < 64)
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| {
            anyhow!("ENGINE_IMAGE_MAX_LAYER `{text}` is not a size (bytes, or with K, M, G or T)")
        })
}

/// What the store knows of an image.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ImageRecord {
    /// The config's digest: the image ID.
    pub id: String,
    /// The manifest's digest (none for a docker-archive, which has none).
    pub digest: Option<String>,
    /// Normalised `DOMAIN/PATH:TAG` names.
    pub names: Vec<String>,
    /// Diff IDs, lowest layer first.
    pub layers: Vec<String>,
    pub created: Option<String>,
    /// The layers' tar bytes, summed.
    pub size: u64,
}

pub struct Store {
    root: PathBuf,
}

impl Store {
    /// `ENGINE_IMAGE_STORE`, or the default.
    pub fn from_env() -> Store {
        let root = std::env::var_os("ENGINE_IMAGE_STORE")
            .filter(|v| !v.is_empty())
            .map_or_else(|| PathBuf::from(DEFAULT_STORE), PathBuf::from);
        Store { root }
    }

    pub fn at(root: &Path) -> Store {
        Store {
            root: root.to_path_buf(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Makes the store's directories (the first writer does) and removes
    /// what dead engines left in tmp/.
    pub(super) fn create(&self) -> Result<()> {
        for dir in ["blobs/sha256", "layers", "images", "locks", "tmp"] {
            let path = self.root.join(dir);
            fs::create_dir_all(&path).with_context(|| {
                format!(
                    "cannot create the image store {}: set ENGINE_IMAGE_STORE to a writable directory",
                    path.display()
                )
            })?;
        }
        self.remove_dead_scratch()
    }

    /// Removes the scratch directories of engines no longer running.
    fn remove_dead_scratch(&self) -> Result<()> {
        let tmp = self.root.join("tmp");
        for entry in fs::read_dir(&tmp).with_context(|| format!("cannot read {}", tmp.display()))? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let pid = name.split('-').next().unwrap_or("");
            if !pid.is_empty() && !Path::new("/proc").join(pid).exists() {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
        Ok(())
    }

    fn lock(&self, name: &str) -> Result<Lock> {
        Ok(lock_file(&self.root.join("locks").join(name))?)
    }

    /// Marks the image `id` (with its `layers`) as used by the running
    /// `container` for as long as the marker lives (`super::inuse`), once
    /// its layers are checked to be still there (an `rmi` may have run
    /// since they were resolved).
    pub fn hold(&self, container: &str, id: &str, layers: &[String]) -> Result<super::inuse::Held> {
        self.create()?;
        let _lock = self.lock("images.lock")?;
        if let Some(missing) = layers.iter().find(|l| !self.has_layer(l)) {
            bail!(
                "layer {missing} of image {id} was removed from the store meanwhile: run the container again (its image is pulled again)"
            );
        }
        for layer in layers {
            self.add_user_opaque(layer)?;
        }
        super::inuse::hold(&self.root, container, id, layers)
    }

    /// Gives the opaque directories of a layer unpacked before the store
    /// wrote `user.overlay.opaque` (a container's `userxattr` overlay reads
    /// only that) the user xattr beside their trusted one, once: the layer's
    /// USER_OPAQUE marker says it is done. Under `images.lock`, so no `rmi`
    /// removes the layer meanwhile and no other run walks it at once.
    fn add_user_opaque(&self, diff_id: &str) -> Result<()> {
        let marker = self.layer_dir(diff_id).join(USER_OPAQUE);
        if marker.is_file() {
            return Ok(());
        }
        let root = self.layer_root(diff_id);
        let mut dirs = vec![root];
        while let Some(dir) = dirs.pop() {
            let mut value = [0u8; 4];
            let opaque = rustix::fs::lgetxattr(&dir, super::whiteout::OPAQUE_XATTR, &mut value);
            if matches!(opaque, Ok(1) if value[0] == b'y') {
                rustix::fs::lsetxattr(
                    &dir,
                    super::whiteout::USER_OPAQUE_XATTR,
                    b"y",
                    rustix::fs::XattrFlags::empty(),
                )
                .map_err(|e| anyhow!("cannot mark {} opaque: {e}", dir.display()))?;
            }
            for entry in
                fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))?
            {
                let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
                // file_type() does not follow symlinks.
                if entry.file_type()?.is_dir() {
                    dirs.push(entry.path());
                }
            }
        }
        write_atomically(&marker, b"")
    }

    // Blobs.

    fn blob_path(&self, digest: &str) -> PathBuf {
        self.root.join("blobs/sha256").join(hex(digest))
    }

    /// Stores a document (manifest or config) already read and verified;
    /// one already stored is kept only while it matches its digest (a
    /// copy corrupted on disk is replaced by the one pulled again).
    pub(super) fn put_blob(&self, digest: &str, bytes: &[u8]) -> Result<()> {
        let path = self.blob_path(digest);
        if fs::read(&path).is_ok_and(|old| sha256_digest(&old) == digest) {
            return Ok(());
        }
        write_atomically(&path, bytes)
    }

    /// A stored document, verified again against its digest.
    pub fn read_blob(&self, digest: &str) -> Result<Vec<u8>> {
        let path = self.blob_path(digest);
        let bytes = fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        if sha256_digest(&bytes) != digest {
            bail!(
                "{} does not match its digest (corrupted on disk): pull the image again, which replaces it",
                path.display()
            );
        }
        Ok(bytes)
    }

    // Layers.

    /// The unpacked tree of the layer `diff_id`.
    pub fn layer_root(&self, diff_id: &str) -> PathBuf {
        self.root.join("layers").join(hex(diff_id)).join("root")
    }

    fn layer_dir(&self, diff_id: &str) -> PathBuf {
        self.root.join("layers").join(hex(diff_id))
    }

    pub(super) fn has_layer(&self, diff_id: &str) -> bool {
        self.layer_dir(diff_id).join("size").is_file()
    }

    /// The layer's tar size, as recorded when it was unpacked.
    fn layer_size(&self, diff_id: &str) -> u64 {
        fs::read_to_string(self.layer_dir(diff_id).join("size"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Unpacks the layer `diff_id` from the blob `open()` reads (compressed
    /// or not; `blob` is its digest and size when it has its own, as in a
    /// manifest), unless it is in the store already. The blob's digest and
    /// size and the tar's digest (the diff ID) are checked on the way;
    /// any mismatch leaves nothing behind.
    pub(super) fn add_layer(
        &self,
        diff_id: &str,
        blob: Option<(&str, u64)>,
        what: &str,
        open: impl FnOnce() -> Result<Box<dyn Read>>,
    ) -> Result<()> {
        let key = hex(diff_id);
        step!("image.layer_lock");
        let _lock = self.lock(&format!("layer-{key}"))?;
        if self.has_layer(diff_id) {
            return Ok(());
        }
        let layers = self.root.join("layers");
        step!("image.layer_stale");
        remove_stale(&layers, &format!(".tmp-{key}-"))?;
        let tmp = layers.join(format!(".tmp-{key}-{}", std::process::id()));
        step!("image.layer_tmp");
        fs::create_dir(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        let made = self.unpack_into(&tmp, diff_id, blob, what, open);
        let made = made.and_then(|()| {
            // Killed here, the whole layer waits under its `.tmp-` name,
            // never taken for a layer.
            step!("image.layer_rename");
            fs::rename(&tmp, self.layer_dir(diff_id))
                .with_context(|| format!("cannot move the layer into {}", layers.display()))
        });
        if made.is_err() {
            let _ = fs::remove_dir_all(&tmp);
        }
        made
    }

    fn unpack_into(
        &self,
        tmp: &Path,
        diff_id: &str,
        blob: Option<(&str, u64)>,
        what: &str,
        open: impl FnOnce() -> Result<Box<dyn Read>>,
    ) -> Result<()> {
        let root = tmp.join("root");
        step!("image.layer_unpack");
        fs::create_dir(&root).with_context(|| format!("cannot create {}", root.display()))?;
        let limit = max_layer()?;
        let mut compressed = Hashing::new(open()?);
        let decoded = super::unpack::layer_decoder(&mut compressed, what)?;
        let mut tar = Hashing::new(Capped {
            inner: decoded,
            left: limit,
            over: false,
        });
        let unpacked = super::unpack::unpack_layer(&mut tar, &root)
            .with_context(|| format!("cannot unpack {what}"))
            // The digests cover every byte, past the tar's end blocks too.
            .and_then(|()| {
                io::copy(&mut tar, &mut io::sink()).with_context(|| format!("cannot read {what}"))
            });
        if tar.inner.over {
            bail!(
                "{what} unpacks to more than {limit} bytes (a decompression bomb?): \
                 set ENGINE_IMAGE_MAX_LAYER higher if the image is trusted"
            );
        }
        unpacked?;
        let (tar_digest, tar_size) = tar.finish();
        drop(tar);
        io::copy(&mut compressed, &mut io::sink())
            .with_context(|| format!("cannot read {what}"))?;
        let (blob_digest, blob_size) = compressed.finish();
        if let Some((want, want_size)) = blob {
            if blob_size != want_size {
                bail!("{what} is {blob_size} bytes, not the {want_size} its manifest gives: the image is corrupt");
            }
            if blob_digest != want {
                bail!("{what} has digest {blob_digest}, not {want}: the image is corrupt");
            }
        }
        if tar_digest != diff_id {
            bail!("{what} unpacks to diff ID {tar_digest}, not the {diff_id} its config gives: the image is corrupt");
        }
        write_atomically(&tmp.join(USER_OPAQUE), b"")?;
        write_atomically(&tmp.join("size"), tar_size.to_string().as_bytes())
    }

    // Records.

    fn record_path(&self, id: &str) -> PathBuf {
        self.root.join("images").join(format!("{}.json", hex(id)))
    }

    /// Every image record, by ID.
    pub fn images(&self) -> Result<Vec<ImageRecord>> {
        let dir = self.root.join("images");
        let entries = match fs::read_dir(&dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            other => other.with_context(|| format!("cannot read {}", dir.display()))?,
        };
        let mut out = Vec::new();
        for entry in entries {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "json") {
                let text = fs::read(&path)?;
                let record: ImageRecord = serde_json::from_slice(&text)
                    .with_context(|| format!("{} is not an image record", path.display()))?;
                out.push(record);
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// Records an image whose blobs and layers are in the store, giving it
    /// `names` (taken from any image that had them). A layer removed by a
    /// concurrent `rmi` since it was made is reported, so the caller makes
    /// it again.
    pub(super) fn put_image(
        &self,
        mut record: ImageRecord,
        blobs: &[(&str, &[u8])],
    ) -> Result<Vec<String>> {
        let _lock = self.lock("images.lock")?;
        let missing: Vec<String> = record
            .layers
            .iter()
            .filter(|l| !self.has_layer(l))
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Ok(missing);
        }
        for (digest, bytes) in blobs {
            self.put_blob(digest, bytes)?;
        }
        record.size = record.layers.iter().map(|l| self.layer_size(l)).sum();
        for mut other in self.images()? {
            if other.id == record.id {
                for name in other.names.drain(..) {
                    if !record.names.contains(&name) {
                        record.names.push(name);
                    }
                }
                continue;
            }
            let before = other.names.len();
            other.names.retain(|n| !record.names.contains(n));
            if other.names.len() != before {
                self.write_record(&other)?;
            }
        }
        self.write_record(&record)?;
        Ok(Vec::new())
    }

    fn write_record(&self, record: &ImageRecord) -> Result<()> {
        let text = serde_json::to_vec_pretty(record)?;
        write_atomically(&self.record_path(&record.id), &text)
    }

    /// The image `text` names: a name (normalised as docker does), a full
    /// ID or manifest digest, or an ID's unique hex prefix.
    pub fn find(&self, text: &str) -> Result<Option<ImageRecord>> {
        let images = self.images()?;
        if let Ok(named) = reference::parse_named(text) {
            let name = named.to_string();
            if let Some(found) = images.iter().find(|i| i.names.contains(&name)) {
                return Ok(Some(found.clone()));
            }
        }
        if let Some(found) = images
            .iter()
            .find(|i| i.id == text || i.digest.as_deref() == Some(text))
        {
            return Ok(Some(found.clone()));
        }
        let prefix = text.strip_prefix("sha256:").unwrap_or(text);
        if prefix.len() >= 4 && prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            let hits: Vec<_> = images
                .iter()
                .filter(|i| hex(&i.id).starts_with(prefix))
                .collect();
            match hits.as_slice() {
                [one] => return Ok(Some((*one).clone())),
                [] => {}
                _ => bail!("`{text}` is the start of several image IDs: give more of it"),
            }
        }
        Ok(None)
    }

    /// The config of a recorded image.
    pub fn config(&self, record: &ImageRecord) -> Result<ImageConfig> {
        let bytes = self.read_blob(&record.id)?;
        serde_json::from_slice(&bytes).context("the stored image config is not valid")
    }

    /// Removes the name `text` from its image, or the image `text` names
    /// by ID (with every name); an image left without names is deleted,
    /// then every layer and blob no record references. Returns what was
    /// done, as docker prints it (`Untagged: …`, `Deleted: …`). An image a
    /// running container uses is refused unless `force`; even then its
    /// layers stay until the container ends and `prune` runs.
    pub fn remove(&self, text: &str, force: bool) -> Result<Vec<String>> {
        let missing = || anyhow!("no image `{text}` in the store: `engine images` lists them");
        if !self.root.join("locks").is_dir() {
            return Err(missing());
        }
        let _lock = self.lock("images.lock")?;
        let Some(mut record) = self.find(text)? else {
            return Err(missing());
        };
        if !force {
            let uses = super::inuse::live(&self.root)?;
            if let Some(u) = uses.iter().find(|u| u.id == record.id) {
                bail!(
                    "image `{text}` is used by running container {}: stop it first, or remove the image anyway with `engine rmi -f`",
                    u.container
                );
            }
        }
        let mut done = Vec::new();
        let by_name = reference::parse_named(text)
            .ok()
            .map(|n| n.to_string())
            .filter(|n| record.names.contains(n));
        match by_name {
            Some(name) if record.names.len() > 1 => {
                record.names.retain(|n| *n != name);
                self.write_record(&record)?;
                return Ok(vec![format!("Untagged: {name}")]);
            }
            _ => done.extend(record.names.iter().map(|n| format!("Untagged: {n}"))),
        }
        let path = self.record_path(&record.id);
        fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
        done.push(format!("Deleted: {}", record.id));
        self.collect_garbage()?;
        Ok(done)
    }

    /// `engine image prune`: removes the layers and blobs no image record
    /// references and no running container uses; returns the layers' diff IDs.
    pub fn prune(&self) -> Result<Vec<String>> {
        if !self.root.join("locks").is_dir() {
            return Ok(Vec::new());
        }
        let _lock = self.lock("images.lock")?;
        self.collect_garbage()
    }

    /// Removes the layers and blobs no image record references and no
    /// running container uses (the records lock is held by the caller);
    /// returns the removed layers' diff IDs.
    fn collect_garbage(&self) -> Result<Vec<String>> {
        let images = self.images()?;
        let uses = super::inuse::live(&self.root)?;
        let used = |key: &str| {
            super::inuse::uses_key(&uses, key)
                || images.iter().any(|i| {
                    hex(&i.id) == key
                        || i.digest.as_deref().map(hex) == Some(key)
                        || i.layers.iter().any(|l| hex(l) == key)
                })
        };
        let mut removed = Vec::new();
        let layers = self.root.join("layers");
        for entry in fs::read_dir(&layers)? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || used(&name) {
                continue;
            }
            let _lock = self.lock(&format!("layer-{name}"))?;
            let dir = layers.join(&name);
            // Renamed away first: a half-removed layer is never visible.
            let doomed = layers.join(format!(".tmp-{name}-gc{}", std::process::id()));
            fs::rename(&dir, &doomed)
                .with_context(|| format!("cannot remove {}", dir.display()))?;
            fs::remove_dir_all(&doomed)
                .with_context(|| format!("cannot remove {}", doomed.display()))?;
            removed.push(format!("sha256:{name}"));
        }
        let blobs = self.root.join("blobs/sha256");
        for entry in fs::read_dir(&blobs)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !used(&name) {
                fs::remove_file(entry.path())?;
            }
        }
        Ok(removed)
    }

    /// A scratch directory for one pull, removed when dropped (those of
    /// dead engines go when the store is opened for a pull).
    pub(super) fn scratch(&self) -> Result<Scratch> {
        let tmp = self.root.join("tmp");
        for n in 0.. {
            let path = tmp.join(format!("{}-{n}", std::process::id()));
            match fs::create_dir(&path) {
                Ok(()) => return Ok(Scratch(path)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot create {}", path.display()))
                }
            }
        }
        unreachable!("a free scratch name exists")
    }
}

/// A pull's scratch directory, removed on drop.
pub(super) struct Scratch(PathBuf);

impl Scratch {
    pub(super) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Removes what a killed engine left: `PREFIX*` entries of `dir` (the
/// caller holds the lock that guards them).
fn remove_stale(dir: &Path, prefix: &str) -> Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with(prefix) {
            fs::remove_dir_all(entry.path())
                .with_context(|| format!("cannot remove {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// Whether `err` comes of a full file system (ENOSPC, or EDQUOT for a
/// quota), however deep in its chain and however the unpacker worded it.
pub fn out_of_space(err: &anyhow::Error) -> bool {
    const ENOSPC: i32 = 28;
    const EDQUOT: i32 = 122;
    err.chain().any(|cause| {
        let errno = cause
            .downcast_ref::<io::Error>()
            .and_then(io::Error::raw_os_error)
            .or_else(|| {
                cause
                    .downcast_ref::<rustix::io::Errno>()
                    .map(|e| e.raw_os_error())
            });
        matches!(errno, Some(ENOSPC | EDQUOT)) || {
            let text = cause.to_string();
            text.contains("No space left on device") || text.contains("Disk quota exceeded")
        }
    })
}

/// The hex of a `sha256:HEX` digest.
pub fn hex(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// Writes `bytes` beside `path` and renames it there, synced first.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_file_name(format!(
        ".{}.tmp-{}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let written = (|| {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(anyhow!("cannot write {}: {e}", path.display()));
    }
    Ok(())
}

/// A reader that fails once more than `left` bytes passed (`over` says
/// so, as the unpacker may word the read error its own way).
struct Capped<R> {
    inner: R,
    left: u64,
    over: bool,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n as u64 > self.left {
            self.over = true;
            return Err(io::Error::other("the layer is larger than allowed"));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// A reader that hashes and counts what passes.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> Hashing<R> {
    fn new(inner: R) -> Self {
        Hashing {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    fn finish(&mut self) -> (String, u64) {
        let hasher = std::mem::take(&mut self.hasher);
        (format!("sha256:{:x}", hasher.finalize()), self.count)
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}
