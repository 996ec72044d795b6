//! Importing images from local files into the store: an OCI image layout
//! directory (`oci:`), a tar of one (`oci-archive:`), and `docker save` /
//! `podman save` tarballs (`docker-archive:`). A registry image is pulled
//! by the registry client into a layout directory of the store's scratch
//! and imported from there the same way.
//!
//! Everything read is hostile: every digest is checked for form before it
//! names a file, every document against its digest, size and the 4 MiB
//! limit, every layer against its blob digest and its diff ID; an archive
//! is unpacked into the pull's scratch directory with the project's
//! fd-based unpacker.

use super::config::{
    ArchiveEntry, Descriptor, ImageConfig, Index, Manifest, MEDIA_DOCKER_LIST, MEDIA_INDEX,
    REF_NAME,
};
use super::reference::{self, ImageRef};
use super::registry::Platform;
use super::store::{sha256_digest, ImageRecord, Scratch, Store, MAX_DOCUMENT};
use crate::sys::failpoint::step;
use anyhow::{anyhow, bail, Context, Result};
use std::fs;
use std::io::Read;
use std::path::Path;

/// Imports the image `what` names; returns its record. The steps (the
/// store, the scratch, the archive unpacked, each layer, the record) have
/// failpoints: at any of them a killed engine leaves nothing the next pull
/// trusts, and that pull finishes the work. An index is resolved to
/// `platform` (`--platform`), the host's when `None`.
pub fn import(store: &Store, what: &ImageRef, platform: Option<&Platform>) -> Result<ImageRecord> {
    step!("image.check");
    match what {
        ImageRef::Registry(_) => {}
        ImageRef::Oci { dir: path, .. }
        | ImageRef::OciArchive { file: path, .. }
        | ImageRef::DockerArchive { file: path } => check_exists(path, what)?,
    }
    step!("image.store");
    store.create()?;
    step!("image.import");
    match what {
        ImageRef::Registry(named) => pull_from_registry(store, named, platform),
        ImageRef::Oci { dir, name } => import_layout(store, dir, name.as_deref(), &[], platform),
        ImageRef::OciArchive { file, name } => {
            let scratch = unpack_archive(store, file, what)?;
            import_layout(store, scratch.path(), name.as_deref(), &[], platform).map_err(|e| {
                if e.is::<WrongPlatform>() {
                    e
                } else {
                    e.context(format!(
                        "{} holds no usable OCI image layout",
                        file.display()
                    ))
                }
            })
        }
        ImageRef::DockerArchive { file } => {
            let scratch = unpack_archive(store, file, what)?;
            import_docker_archive(store, scratch.path(), platform).map_err(|e| {
                if e.is::<WrongPlatform>() {
                    e
                } else {
                    e.context(format!("{} is not a usable docker-archive", file.display()))
                }
            })
        }
    }
}

/// An image of one platform where `--platform` asked for another.
#[derive(Debug, thiserror::Error)]
#[error("it holds only an image for {has}, not for {wanted}: take it without --platform, or get an image for {wanted}")]
pub struct WrongPlatform {
    pub has: String,
    pub wanted: String,
}

/// The platform an image config names, as OS/ARCH[/VARIANT].
pub fn config_platform(config: &ImageConfig) -> Platform {
    Platform {
        os: config.os.clone(),
        architecture: config.architecture.clone(),
        variant: config.variant.clone().filter(|v| !v.is_empty()),
    }
}

/// A single-platform image against `--platform`: refused when the
/// platform asked for is not the one its config names (docker and podman
/// refuse it too, rather than run another platform's binaries).
pub fn check_platform(
    config: &ImageConfig,
    wanted: Option<&Platform>,
) -> Result<(), WrongPlatform> {
    let has = config_platform(config);
    match wanted {
        Some(w) if !w.serves(&has.os, &has.architecture, has.variant.as_deref()) => {
            Err(WrongPlatform {
                has: has.to_string(),
                wanted: w.to_string(),
            })
        }
        _ => Ok(()),
    }
}

/// The registry client lands the pull, verified, in a layout of the
/// store's scratch; it is imported from there like `oci:`.
fn pull_from_registry(
    store: &Store,
    named: &reference::Named,
    platform: Option<&Platform>,
) -> Result<ImageRecord> {
    let scratch = store.scratch()?;
    let layout = scratch.path().join("layout");
    let target = super::registry::Target {
        registry: named.domain.clone(),
        repository: named.path.clone(),
        tag_or_digest: match &named.digest {
            Some(d) => super::registry::TagOrDigest::Digest(d.clone()),
            None => super::registry::TagOrDigest::Tag(
                named.tag.clone().unwrap_or_else(|| "latest".into()),
            ),
        },
    };
    let options = super::registry::Options::default();
    super::registry::pull_to_layout(&target, platform, &layout, &options)?;
    import_layout(store, &layout, None, &[], platform)
}

/// An archive (`oci-archive:`, `docker-archive:`) unpacked into a scratch
/// directory of the store, removed when the returned guard drops.
fn unpack_archive(store: &Store, file: &Path, what: &ImageRef) -> Result<Scratch> {
    step!("image.scratch");
    let scratch = store.scratch()?;
    step!("image.extract");
    extract(file, scratch.path(), what)?;
    Ok(scratch)
}

fn check_exists(path: &Path, what: &ImageRef) -> Result<()> {
    if !path.exists() {
        bail!(
            "{} does not exist: check the path in `{what}`",
            path.display()
        );
    }
    Ok(())
}

/// Unpacks an archive (a tar of a layout, a docker-archive) into `dest`.
fn extract(file: &Path, dest: &Path, what: &ImageRef) -> Result<()> {
    let reader = fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    super::unpack::unpack_tar(reader, dest, None)
        .with_context(|| format!("`{what}` is not an image archive"))
}

/// Imports the image `name` (its `org.opencontainers.image.ref.name`; none:
/// the layout's only image) of the OCI layout at `dir`, with `names` (and
/// the ref name, when it is a docker name) as its names.
pub fn import_layout(
    store: &Store,
    dir: &Path,
    name: Option<&str>,
    names: &[String],
    platform: Option<&Platform>,
) -> Result<ImageRecord> {
    if !dir.join("oci-layout").is_file() {
        bail!(
            "{} is not an OCI image layout (it has no oci-layout file)",
            dir.display()
        );
    }
    store.create()?;
    let index: Index = serde_json::from_slice(&read_document_file(&dir.join("index.json"))?)
        .with_context(|| format!("{}/index.json is not an OCI image index", dir.display()))?;
    fn named(d: &Descriptor) -> Option<&str> {
        d.annotations.get(REF_NAME).map(String::as_str)
    }
    let chosen = match name {
        Some(name) => index.manifests.iter().find(|d| named(d) == Some(name)),
        None if index.manifests.len() == 1 => index.manifests.first(),
        None => None,
    };
    let Some(desc) = chosen else {
        let listed: Vec<&str> = index.manifests.iter().filter_map(named).collect();
        bail!(
            "{} holds {} image(s) and none {}: add `:NAME` to the reference (names: {})",
            dir.display(),
            index.manifests.len(),
            name.map_or("was chosen".into(), |n| format!("named `{n}`")),
            if listed.is_empty() {
                "none".into()
            } else {
                listed.join(", ")
            }
        );
    };
    let mut names: Vec<String> = names.to_vec();
    if let Some(named) = named(desc).and_then(|n| reference::parse_named(n).ok()) {
        names.push(named.to_string());
    }
    let (manifest_digest, manifest_bytes, from_index) = resolve_manifest(dir, desc, platform)?;
    let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
        .with_context(|| format!("manifest {manifest_digest} is not an image manifest"))?;
    let config_bytes = read_blob(dir, &manifest.config)?;
    let config = parse_config(&config_bytes, manifest.layers.len())?;
    if !from_index {
        check_platform(&config, platform)?;
    }
    for layer in &manifest.layers {
        reference::check_digest(&layer.digest).map_err(|why| anyhow!("a layer's {why}"))?;
    }
    let record = ImageRecord {
        id: manifest.config.digest.clone(),
        digest: Some(manifest_digest.clone()),
        names,
        layers: config.rootfs.diff_ids.clone(),
        created: config.created.clone(),
        size: 0,
    };
    let blobs = [
        (manifest_digest.as_str(), manifest_bytes.as_slice()),
        (manifest.config.digest.as_str(), config_bytes.as_slice()),
    ];
    commit(store, record, &blobs, |store| {
        for (layer, diff_id) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
            let path = blob_path(dir, &layer.digest);
            let what = format!("layer {}", layer.digest);
            store.add_layer(diff_id, Some((&layer.digest, layer.size)), &what, || {
                let file = fs::File::open(&path)
                    .with_context(|| format!("cannot open {}", path.display()))?;
                Ok(Box::new(file))
            })?;
        }
        Ok(())
    })
}

/// The manifest `desc` names, through an index or manifest list
/// (`platform`, else the host's, chosen from it): its digest, its bytes,
/// and whether an index chose it (by `platform`).
fn resolve_manifest(
    dir: &Path,
    desc: &Descriptor,
    platform: Option<&Platform>,
) -> Result<(String, Vec<u8>, bool)> {
    let wanted = platform.cloned().unwrap_or_else(Platform::host);
    let mut desc = desc.clone();
    for depth in 0..2 {
        let bytes = read_blob(dir, &desc)?;
        let is_index = [MEDIA_INDEX, MEDIA_DOCKER_LIST].contains(&desc.media_type.as_str())
            || serde_json::from_slice::<Index>(&bytes).is_ok_and(|i| {
                i.media_type
                    .as_deref()
                    .is_none_or(|m| m == MEDIA_INDEX || m == MEDIA_DOCKER_LIST)
            }) && !bytes.windows(8).any(|w| w == b"\"layers\"");
        if !is_index {
            return Ok((desc.digest, bytes, depth > 0));
        }
        let index: Index = serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not an image index", desc.digest))?;
        let has: Vec<String> = index
            .manifests
            .iter()
            .filter_map(|d| d.platform.as_ref())
            .map(|p| match &p.variant {
                Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
                None => format!("{}/{}", p.os, p.architecture),
            })
            .collect();
        desc = index
            .manifests
            .into_iter()
            .find(|d| {
                d.platform.as_ref().is_some_and(|p| {
                    wanted.serves(&p.os, &p.architecture, p.variant.as_deref())
                })
            })
            .ok_or_else(|| {
                anyhow!(
                    "index {} has no image for {wanted} (it has {}): choose one of those with --platform",
                    desc.digest,
                    if has.is_empty() { "none".into() } else { has.join(", ") }
                )
            })?;
    }
    bail!("index {} nests indexes too deep", desc.digest)
}

/// Records the image once `add_layers` made its layers, again while a
/// concurrent `rmi` removed one of them meanwhile. On failure the layers
/// it made are removed again (those no image uses): nothing is left.
fn commit(
    store: &Store,
    record: ImageRecord,
    blobs: &[(&str, &[u8])],
    add_layers: impl Fn(&Store) -> Result<()>,
) -> Result<ImageRecord> {
    for _ in 0..3 {
        if let Err(e) = add_layers(store) {
            let _ = store.prune();
            return Err(e);
        }
        let missing = match put_image(store, &record, blobs) {
            Ok(missing) => missing,
            Err(e) => {
                // The layers made for the record that could not be written.
                let _ = store.prune();
                return Err(e);
            }
        };
        if missing.is_empty() {
            let id = record.id.clone();
            return store
                .images()?
                .into_iter()
                .find(|r| r.id == id)
                .ok_or_else(|| anyhow!("image {id} vanished from the store: pull it again"));
        }
    }
    bail!(
        "layers of image {} kept being removed by `engine rmi` meanwhile: pull again",
        record.id
    )
}

/// The record written once every layer is in: a failure here leaves
/// the layers for the next pull (or `rmi`'s collection) to take.
fn put_image(store: &Store, record: &ImageRecord, blobs: &[(&str, &[u8])]) -> Result<Vec<String>> {
    step!("image.record");
    store.put_image(record.clone(), blobs)
}

/// The image config, checked against the manifest's layer count.
fn parse_config(bytes: &[u8], layers: usize) -> Result<ImageConfig> {
    let config: ImageConfig =
        serde_json::from_slice(bytes).context("the image config is not valid JSON of an image")?;
    if config.rootfs.diff_ids.len() != layers {
        bail!(
            "the image config lists {} diff IDs for {layers} layer(s): the image is corrupt",
            config.rootfs.diff_ids.len()
        );
    }
    for diff_id in &config.rootfs.diff_ids {
        reference::check_digest(diff_id).map_err(|why| anyhow!("the config's diff ID: {why}"))?;
    }
    Ok(config)
}

fn blob_path(dir: &Path, digest: &str) -> std::path::PathBuf {
    dir.join("blobs/sha256").join(super::store::hex(digest))
}

/// A document blob of the layout, checked against its descriptor.
fn read_blob(dir: &Path, desc: &Descriptor) -> Result<Vec<u8>> {
    reference::check_digest(&desc.digest).map_err(|why| anyhow!("a descriptor's {why}"))?;
    if desc.size > MAX_DOCUMENT {
        bail!(
            "{} is {} bytes, over the {MAX_DOCUMENT} allowed for a manifest or config",
            desc.digest,
            desc.size
        );
    }
    let bytes = read_document_file(&blob_path(dir, &desc.digest))?;
    if bytes.len() as u64 != desc.size {
        bail!(
            "blob {} is {} bytes, not the {} its descriptor gives: the image is corrupt",
            desc.digest,
            bytes.len(),
            desc.size
        );
    }
    let got = sha256_digest(&bytes);
    if got != desc.digest {
        bail!(
            "blob {} has digest {got}: the image is corrupt",
            desc.digest
        );
    }
    Ok(bytes)
}

/// A JSON document, refused past the 4 MiB limit.
fn read_document_file(path: &Path) -> Result<Vec<u8>> {
    let file = fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_DOCUMENT + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.len() as u64 > MAX_DOCUMENT {
        bail!("{} is larger than {MAX_DOCUMENT} bytes", path.display());
    }
    Ok(bytes)
}

/// `docker save` / `podman save`: manifest.json names the config and the
/// layer tars (paths inside the archive); the config's digest is the ID.
fn import_docker_archive(
    store: &Store,
    dir: &Path,
    platform: Option<&Platform>,
) -> Result<ImageRecord> {
    let entries: Vec<ArchiveEntry> =
        serde_json::from_slice(&read_document_file(&dir.join("manifest.json"))?)
            .context("its manifest.json is not docker's list of images")?;
    let [entry] = entries.as_slice() else {
        bail!(
            "it holds {} images; this engine imports archives of one",
            entries.len()
        );
    };
    let inside = |name: &str| -> Result<std::path::PathBuf> {
        let rel = super::unpack::inside_path(Path::new(name))
            .ok_or_else(|| anyhow!("manifest.json names `{name}` outside the archive"))?;
        Ok(dir.join(rel))
    };
    let config_bytes = read_document_file(&inside(&entry.config)?)?;
    let config = parse_config(&config_bytes, entry.layers.len())?;
    check_platform(&config, platform)?;
    let id = sha256_digest(&config_bytes);
    let names = entry
        .repo_tags
        .iter()
        .flatten()
        .filter_map(|t| reference::parse_named(t).ok())
        .map(|n| n.to_string())
        .collect();
    let record = ImageRecord {
        id: id.clone(),
        digest: None,
        names,
        layers: config.rootfs.diff_ids.clone(),
        created: config.created.clone(),
        size: 0,
    };
    let layer_paths = entry
        .layers
        .iter()
        .map(|l| inside(l))
        .collect::<Result<Vec<_>>>()?;
    commit(store, record, &[(&id, &config_bytes)], |store| {
        for (path, diff_id) in layer_paths.iter().zip(&config.rootfs.diff_ids) {
            let what = format!("layer {}", path.strip_prefix(dir).unwrap_or(path).display());
            store.add_layer(diff_id, None, &what, || {
                let file = fs::File::open(path)
                    .with_context(|| format!("cannot open {}", path.display()))?;
                Ok(Box::new(file))
            })?;
        }
        Ok(())
    })
}
