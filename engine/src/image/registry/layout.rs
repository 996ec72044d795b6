//! The OCI image layout a pull writes: `oci-layout`, `blobs/sha256/HEX`
//! (each verified while it streams in) and `index.json` naming the one
//! image manifest, annotated with the tag.

use super::super::staging::check_interrupted;
use super::manifest::{self, Descriptor, Parsed, Platform, PlatformJson};
use super::transport::{check_digest, Client, Expect, Sink};
use super::{Error, Layer, Pulled, TagOrDigest, Target, MAX_MANIFEST_SIZE};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::fs::{self, File};
use std::io;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// LAYOUT_DIR is absent or an empty directory (checked before anything is
/// made).
pub fn check_free(dir: &Path) -> Result<(), Error> {
    let taken = || Error::LayoutNotEmpty {
        path: dir.to_path_buf(),
    };
    match fs::symlink_metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(_) => Err(taken()),
        Ok(meta) if !meta.is_dir() => Err(taken()),
        Ok(_) => match fs::read_dir(dir) {
            Ok(entries) => match entries.count() {
                0 => Ok(()),
                _ => Err(taken()),
            },
            Err(_) => Err(taken()),
        },
    }
}

fn blob_path(root: &Path, digest: &str) -> PathBuf {
    // check_digest has made sure of `sha256:` and 64 hex digits.
    root.join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

fn write(root: &Path, reference: &str, name: &Path, bytes: &[u8]) -> Result<(), Error> {
    let path = root.join(name);
    fs::write(&path, bytes).map_err(|e| Error::Write {
        reference: reference.to_string(),
        path,
        why: e.to_string(),
    })
}

/// A manifest (≤ 4 MiB) into memory and the layout: (media type, digest,
/// size, parsed).
fn fetch_manifest(
    client: &mut Client,
    root: &Path,
    reference_part: &str,
    digest: Option<&str>,
    size: Option<u64>,
) -> Result<(String, String, u64, Parsed), Error> {
    let reference = client.reference().to_string();
    let path = client.path("manifests", reference_part);
    let mut body = Vec::new();
    let expect = Expect {
        what: "manifest",
        digest,
        size,
        limit: Some(MAX_MANIFEST_SIZE),
    };
    let fetched = client.download(&path, Some(manifest::ACCEPT), &expect, &mut body)?;
    if digest.is_none() {
        // By tag: the registry's word on the digest, when it gives one,
        // must be what came.
        if let Some(said) = fetched.said_digest.filter(|d| d.starts_with("sha256:")) {
            if said != fetched.digest {
                return Err(Error::DigestMismatch {
                    reference,
                    what: "manifest".to_string(),
                    digest: said,
                    got: fetched.digest,
                });
            }
        }
    }
    let parsed = manifest::parse(&body, &fetched.content_type, &reference)?;
    let media_type = media_type_of(&body, &fetched.content_type);
    let name = blob_path(Path::new(""), &fetched.digest);
    write(root, &reference, &name, &body)?;
    Ok((media_type, fetched.digest, body.len() as u64, parsed))
}

fn media_type_of(body: &[u8], content_type: &str) -> String {
    #[derive(serde::Deserialize)]
    struct Typed {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
    }
    serde_json::from_slice::<Typed>(body)
        .ok()
        .and_then(|t| t.media_type)
        .unwrap_or_else(|| manifest::bare_media_type(content_type))
}

/// A blob file that moves a progress bar as it is written.
struct Counted {
    file: File,
    bar: Option<ProgressBar>,
}

impl io::Write for Counted {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        if let Some(bar) = &self.bar {
            bar.inc(n as u64);
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Sink for Counted {
    fn restart(&mut self) -> io::Result<()> {
        if let Some(bar) = &self.bar {
            bar.set_position(0);
        }
        self.file.restart()
    }
}

/// How many layers download at once: a few connections, as docker's
/// three, which fill a link without crowding the registry.
const PARALLEL_DOWNLOADS: usize = 3;

/// The layers, [`PARALLEL_DOWNLOADS`] at a time, each thread with its
/// own clone of the client; under one progress display with a bar per
/// layer when stderr is a terminal, silent otherwise. After a failure no
/// new layer is started; the error of the first failed layer (in the
/// manifest's order) is returned.
fn fetch_layers(client: &Client, root: &Path, layers: &[Descriptor]) -> Result<(), Error> {
    let mut unique: Vec<&Descriptor> = Vec::new();
    for layer in layers {
        // One download per digest: two threads never write one file.
        if !unique.iter().any(|u| u.digest == layer.digest) {
            unique.push(layer);
        }
    }
    let display = io::stderr()
        .is_terminal()
        .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
    let style =
        ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
            .map(|s| s.progress_chars("=> "))
            .ok();
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<(usize, Error)>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..PARALLEL_DOWNLOADS.min(unique.len()) {
            let mut client = client.clone();
            let (unique, display, style) = (&unique, &display, &style);
            let (next, failed, first_error) = (&next, &failed, &first_error);
            scope.spawn(move || {
                while !failed.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(layer) = unique.get(i) else { break };
                    let bar = display.as_ref().map(|d| {
                        let bar = d.add(ProgressBar::new(layer.size));
                        if let Some(style) = style {
                            bar.set_style(style.clone());
                        }
                        let hex = layer.digest.trim_start_matches("sha256:");
                        bar.set_message(hex[..hex.len().min(12)].to_string());
                        bar
                    });
                    let fetched = fetch_blob(&mut client, root, layer, bar.clone());
                    if let Some(bar) = bar {
                        bar.finish();
                    }
                    if let Err(e) = fetched {
                        failed.store(true, Ordering::Relaxed);
                        let mut first = first_error.lock().unwrap_or_else(|p| p.into_inner());
                        if first.as_ref().is_none_or(|(j, _)| i < *j) {
                            *first = Some((i, e));
                        }
                        break;
                    }
                }
            });
        }
    });
    match first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some((_, e)) => Err(e),
        None => Ok(()),
    }
}

fn fetch_blob(
    client: &mut Client,
    root: &Path,
    d: &Descriptor,
    bar: Option<ProgressBar>,
) -> Result<(), Error> {
    check_interrupted()?;
    let reference = client.reference().to_string();
    check_digest(&d.digest, &reference)?;
    let path = blob_path(root, &d.digest);
    if path.exists() {
        // Already here: a layer listed twice, or the config is a layer.
        return Ok(());
    }
    let file = File::create(&path).map_err(|e| Error::Write {
        reference: reference.clone(),
        path: path.clone(),
        why: e.to_string(),
    })?;
    let mut file = Counted { file, bar };
    let url_path = client.path("blobs", &d.digest);
    let expect = Expect {
        what: "blob",
        digest: Some(&d.digest),
        size: Some(d.size),
        limit: None,
    };
    client.download(&url_path, None, &expect, &mut file)?;
    file.file.sync_all().map_err(|e| Error::Write {
        reference,
        path,
        why: e.to_string(),
    })
}

/// The whole pull into `root` (the staging directory).
pub fn pull_into(
    client: &mut Client,
    target: &Target,
    platform: &Platform,
    explicit_platform: bool,
    root: &Path,
) -> Result<Pulled, Error> {
    let reference = client.reference().to_string();
    let blobs = root.join("blobs/sha256");
    fs::create_dir_all(&blobs).map_err(|e| Error::Write {
        reference: reference.clone(),
        path: blobs,
        why: e.to_string(),
    })?;
    write(
        root,
        &reference,
        Path::new("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    let (ref_part, ref_digest) = match &target.tag_or_digest {
        TagOrDigest::Tag(tag) => (tag.as_str(), None),
        TagOrDigest::Digest(d) => {
            check_digest(d, &reference)?;
            (d.as_str(), Some(d.as_str()))
        }
    };
    let (mut media_type, top, mut size, parsed) =
        fetch_manifest(client, root, ref_part, ref_digest, None)?;
    let mut manifest_digest = top.clone();
    let mut chosen_platform = None;
    let (config, layers) = match parsed {
        Parsed::Image { config, layers } => (config, layers),
        Parsed::Index(entries) => {
            let entry = manifest::choose(&entries, platform, &reference)?.clone();
            check_digest(&entry.digest, &reference)?;
            let (m_type, m_digest, m_size, parsed) = fetch_manifest(
                client,
                root,
                &entry.digest,
                Some(&entry.digest),
                Some(entry.size),
            )?;
            (media_type, manifest_digest, size) = (m_type, m_digest, m_size);
            chosen_platform = entry.platform;
            match parsed {
                Parsed::Image { config, layers } => (config, layers),
                Parsed::Index(_) => {
                    return Err(Error::BadManifest {
                        reference,
                        why: format!(
                            "the index entry for {platform} is itself an index, which is not read: check the reference"
                        ),
                    })
                }
            }
        }
    };
    fetch_blob(client, root, &config, None)?;
    let image_platform = match &chosen_platform {
        Some(p) => Platform {
            os: p.os.clone(),
            architecture: p.architecture.clone(),
            variant: p.variant.clone(),
        },
        None => config_platform(
            &blob_path(root, &config.digest),
            explicit_platform.then_some(platform),
            &reference,
        )?,
    };
    fetch_layers(client, root, &layers)?;
    let mut entry = serde_json::json!({
        "mediaType": media_type,
        "digest": manifest_digest,
        "size": size,
    });
    if let Some(p) = &chosen_platform {
        entry["platform"] = serde_json::to_value(p).unwrap_or_default();
    }
    // The whole reference, not just the tag: the `oci:` import records
    // the ref name as the image's name (a docker name, normalised).
    entry["annotations"] = serde_json::json!({ "org.opencontainers.image.ref.name": reference });
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": manifest::OCI_INDEX,
        "manifests": [entry],
    });
    write(
        root,
        &reference,
        Path::new("index.json"),
        index.to_string().as_bytes(),
    )?;
    Ok(Pulled {
        digest: top,
        manifest: manifest_digest,
        config: config.digest,
        layers: layers
            .into_iter()
            .map(|l| Layer {
                digest: l.digest,
                size: l.size,
                media_type: l.media_type,
            })
            .collect(),
        platform: image_platform,
    })
}

/// The platform a single-platform image's config names, which must be
/// `wanted` when the caller named one (an index was resolved by its
/// entries instead).
fn config_platform(
    config: &Path,
    wanted: Option<&Platform>,
    reference: &str,
) -> Result<Platform, Error> {
    let bad = |why: String| Error::BadManifest {
        reference: reference.to_string(),
        why,
    };
    let bytes = fs::read(config).map_err(|e| bad(format!("cannot read its config: {e}")))?;
    let image: PlatformJson = serde_json::from_slice(&bytes).map_err(|e| {
        bad(format!(
            "its config has no os and architecture ({e}): check the reference"
        ))
    })?;
    let has = Platform {
        os: image.os,
        architecture: image.architecture,
        variant: image.variant,
    };
    let Some(platform) = wanted else {
        return Ok(has);
    };
    let matches = has.os == platform.os
        && has.architecture == platform.architecture
        && (platform.variant.is_none() || platform.variant == has.variant);
    if matches {
        Ok(has)
    } else {
        Err(Error::NoPlatform {
            reference: reference.to_string(),
            platform: platform.to_string(),
            available: has.to_string(),
        })
    }
}
