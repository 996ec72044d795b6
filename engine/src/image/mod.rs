//! Root filesystems: the catalog (`busybox`, `debian`, `centos`), downloads of
//! `.tar.xz` / `.tar.gz` / `.tar` over http(s) or `file://`, sha256 checks,
//! unpacking with an optional uid/gid shift, and the atomic hand-over to DEST.
//!
//! Every pull builds in `.NAME.partial-PID` beside DEST and renames it into
//! place only once it is complete and verified, so DEST is either absent or
//! whole. A download is streamed: network -> sha256 -> decompressor -> tar,
//! with nothing buffered on disk but the unpacked files.
//!
//! Rooms: `catalog` (names, cache, where each flavour comes from), `fetch`
//! (http(s) and file://, progress, sha256), `unpack` (format sniffing, the
//! fd-based tar unpacker), `shift` (ownership shift), `staging` (the partial
//! directory, stale partials, Ctrl-C), `busybox` and `debian` (the builders).

mod busybox;
mod busybox_skeleton;
mod catalog;
pub mod config;
mod debian;
mod fetch;
pub mod for_run;
pub mod inuse;
pub mod layout;
pub mod passwd;
pub mod reference;
pub mod registry;
mod shift;
mod staging;
pub mod store;
mod unpack;
mod whiteout;

use crate::sys::arch::host_arch;
use crate::sys::failpoint::step;
pub use busybox::SHELL_STARTUP as BUSYBOX_SHELL_STARTUP;

/// Whether a pull's error is the registry client's, whose sentence names
/// the reference already (a caller's "cannot pull `REF`" would say it twice).
pub fn names_the_reference(err: &anyhow::Error) -> bool {
    err.downcast_ref::<registry::Error>().is_some()
}
pub use catalog::{cached, is_catalog_name};
pub use staging::Interrupted;

use anyhow::{bail, Context, Result};

/// A pull's error: the variant a caller matches on (an interrupted pull,
/// which may exit 128+N), the facilities' errors it passes on, and the
/// sentence of a step that added context (anyhow inside that step).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// SIGINT, SIGTERM or SIGHUP arrived during the pull; everything it
    /// had created is removed by then.
    #[error(transparent)]
    Interrupted(#[from] Interrupted),
    /// A catalog rootfs could not be got for a run: why is the source.
    #[error("cannot get the {name} rootfs")]
    Rootfs {
        name: String,
        #[source]
        source: Box<Error>,
    },
    #[error(transparent)]
    Lock(#[from] crate::sys::lock::Error),
    /// A step that failed, as its sentence (its whole context chain).
    #[error("{0}")]
    Failed(String),
}

impl Error {
    /// The signal that interrupted the pull, if one did.
    pub fn interrupted(&self) -> Option<Interrupted> {
        match self {
            Error::Interrupted(i) => Some(*i),
            Error::Rootfs { source, .. } => source.interrupted(),
            Error::Lock(_) | Error::Failed(_) => None,
        }
    }
}

/// A failure injected at a failpoint (`failpoints` feature).
#[cfg(feature = "failpoints")]
impl From<crate::sys::failpoint::Injected> for Error {
    fn from(injected: crate::sys::failpoint::Injected) -> Error {
        Error::Failed(injected.to_string())
    }
}

/// A step that kept anyhow for its context: its whole chain, as one line.
impl From<anyhow::Error> for Error {
    fn from(err: anyhow::Error) -> Error {
        Error::Failed(format!("{err:#}"))
    }
}
use catalog::{catalog_arch, centos_url, CATALOG};
use staging::{check_interrupted, SignalGuard, Staging};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Options for `engine rootfs pull`.
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// `amd64` or `arm64`; default: the host's.
    pub arch: Option<String>,
    /// Expected sha256 of the downloaded file (hex).
    pub sha256: Option<String>,
    /// Shift every uid/gid by this base (for an unprivileged user namespace).
    pub owner: Option<u32>,
    /// Show a progress bar (on a terminal).
    pub progress: bool,
}

/// Pulls `source` (a catalog name such as `busybox`, `debian`, `centos`, or an
/// http(s)/file URL of a .tar.xz/.tar.gz/.tar) into `dest`, atomically.
///
/// Bad input (unknown source, architecture or digest, a non-empty DEST, a
/// missing tool) is refused before anything is created.
pub fn pull(source: &str, dest: &Path, opts: &PullOptions) -> Result<(), Error> {
    step!("pull.check");
    let (plan, digest) = check(source, dest, opts)?;

    let _signals = SignalGuard::install();
    step!("pull.staging");
    let staging = Staging::create(dest)?;
    let root = staging.path();
    // The debian flavour (mmdebstrap, about a minute) has no failpoint: the
    // walk cannot afford it; its steps are the download's.
    match plan {
        Plan::Download(url) => {
            step!("pull.owner");
            shift::shift_root(root, opts.owner)?;
            step!("pull.fetch");
            fetch::fetch(&url, root, digest.as_deref(), opts)?;
        }
        Plan::Debian { mmdebstrap, arch } => {
            shift::shift_root(root, opts.owner)?;
            debian::build(&mmdebstrap, root, arch, opts)?;
        }
        Plan::Busybox { busybox, arch } => {
            step!("pull.busybox");
            busybox::build(root, &busybox, arch)?;
            if let Some(base) = opts.owner {
                step!("pull.shift");
                shift::shift_tree(root, base)?;
            }
        }
    }
    // Whatever the archive or a builder made of it, the root is owned by
    // --owner (or host root): containers are mapped from that owner.
    step!("pull.root_owner");
    shift::own_root(root, opts.owner.unwrap_or(0))?;
    step!("pull.commit");
    check_interrupted()?;
    Ok(staging.commit(dest)?)
}

/// Everything `pull` checks before it creates anything: what to do, and
/// the digest to verify.
fn check(source: &str, dest: &Path, opts: &PullOptions) -> Result<(Plan, Option<String>)> {
    let source = Source::parse(source)?;
    let requested_arch = opts.arch.as_deref().map(catalog_arch).transpose()?;
    let digest = opts.sha256.as_deref().map(parse_sha256).transpose()?;
    let plan = plan(&source, requested_arch, digest.is_some())?;
    check_dest_free(dest)?;
    Ok((plan, digest))
}

// What to pull, decided (and checked) before anything is created.

enum Source {
    Busybox,
    Debian,
    Centos,
    Url(String),
}

impl Source {
    fn parse(source: &str) -> Result<Source> {
        match source {
            "busybox" => return Ok(Source::Busybox),
            "debian" => return Ok(Source::Debian),
            "centos" => return Ok(Source::Centos),
            _ => {}
        }
        if let Some(rest) = source.strip_prefix("file://") {
            if fetch::file_url_path(rest).is_none() {
                bail!("{source} is not a file:///ABSOLUTE/PATH URL");
            }
        }
        if ["http://", "https://", "file://"]
            .iter()
            .any(|s| source.starts_with(s))
        {
            return Ok(Source::Url(source.to_string()));
        }
        let hint = if Path::new(source).exists() {
            format!(
                "; for a local tarball write file://{}",
                absolute(Path::new(source)).display()
            )
        } else {
            String::new()
        };
        bail!(
            "`{source}` is neither a rootfs catalog name ({}) nor an http://, https:// or file:// URL{hint}",
            CATALOG.join(", ")
        )
    }
}

enum Plan {
    Download(String),
    Busybox {
        busybox: PathBuf,
        arch: &'static str,
    },
    Debian {
        mmdebstrap: PathBuf,
        arch: &'static str,
    },
}

fn plan(source: &Source, arch: Option<&'static str>, has_digest: bool) -> Result<Plan> {
    let catalog_arch = || arch.map_or_else(|| catalog_arch(host_arch()), Ok);
    Ok(match source {
        Source::Url(url) => Plan::Download(url.clone()),
        // No digest is pinned for centos: the Anlinux tarballs are rebuilt in
        // place upstream, so a pinned sum would break. `--sha256` still applies.
        Source::Centos => Plan::Download(centos_url(catalog_arch()?)),
        Source::Busybox | Source::Debian if has_digest => {
            bail!("--sha256 applies to downloads; the busybox and debian flavours are built here")
        }
        Source::Busybox => {
            let arch = catalog_arch()?;
            Plan::Busybox {
                busybox: busybox::find(arch)?,
                arch,
            }
        }
        Source::Debian => Plan::Debian {
            mmdebstrap: debian::find_mmdebstrap()?,
            arch: catalog_arch()?,
        },
    })
}

/// Lower-case hex of a sha256, accepting an optional `sha256:` prefix.
fn parse_sha256(text: &str) -> Result<String> {
    let hex = text.trim();
    let hex = hex
        .strip_prefix("sha256:")
        .unwrap_or(hex)
        .to_ascii_lowercase();
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("--sha256 `{text}` is not a sha256 digest (64 hex digits)");
    }
    Ok(hex)
}

fn check_dest_free(dest: &Path) -> Result<()> {
    match fs::symlink_metadata(dest) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot inspect {}", dest.display())),
        Ok(meta) if !meta.is_dir() => bail!(
            "{} already exists and is not a directory: remove it or choose another DEST",
            dest.display()
        ),
        Ok(_) => {
            let mut entries =
                fs::read_dir(dest).with_context(|| format!("cannot read {}", dest.display()))?;
            if entries.next().is_some() {
                bail!(
                    "{} already exists and is not empty: remove it or choose another DEST",
                    dest.display()
                );
            }
            Ok(())
        }
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_is_checked_for_form() {
        assert!(parse_sha256("abc").is_err());
        let hex = "A".repeat(64);
        assert_eq!(
            parse_sha256(&format!("sha256:{hex}")).unwrap(),
            "a".repeat(64)
        );
    }
}
