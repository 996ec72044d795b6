//! The registry client (distribution spec v2): pulls one image of a
//! registry into an OCI image layout directory (`oci-layout`, `index.json`,
//! `blobs/sha256/…`), which the `oci:` import reads.
//!
//! - Manifests in the OCI and Docker v2 schema 2 media types; an image
//!   index or manifest list is resolved to one platform (the host's unless
//!   the caller names one).
//! - Every manifest and blob is verified against its digest and declared
//!   size while it streams to disk; a manifest larger than 4 MiB is refused.
//! - Bearer tokens (`WWW-Authenticate: Bearer realm=…,service=…,scope=…`,
//!   as Docker Hub and quay do it) and basic auth, with the credentials of
//!   the containers-auth.json files podman and docker write ([`auth`]).
//! - HTTPS with the system's CA store plus `/etc/containers/certs.d/HOST:PORT/`
//!   ([`tls`]); plain HTTP only for localhost, 127.0.0.0/8, ::1 or a registry
//!   the user marks insecure (`ENGINE_INSECURE_REGISTRIES`).
//! - Retries with backoff on 5xx answers and broken connections.
//!
//! The client is synchronous (ureq): the engine has no async runtime, and
//! one pull's requests are sequential steps on one agent; an async client
//! would bring a runtime (tokio) into a static musl binary for nothing.
//!
//! The layout is built in `.NAME.partial-PID` beside LAYOUT_DIR and renamed
//! into place when complete, so on any failure nothing is left there. A
//! caller that installed the pull's signal guard (`image::staging`) gets
//! [`Error::Interrupted`] at the next read after SIGINT/SIGTERM/SIGHUP.

mod auth;
mod layout;
mod manifest;
mod tls;
mod transport;

pub use manifest::Platform;

use super::staging::Staging;
use std::fmt;
use std::path::{Path, PathBuf};

/// Largest manifest (or index) accepted, as containers/image and
/// distribution 3 limit it.
pub const MAX_MANIFEST_SIZE: u64 = 4 << 20;

/// What to pull: the parts of a parsed reference. `registry` is the host
/// as written (`docker.io`, `localhost:5000`, `[::1]:5000`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub registry: String,
    pub repository: String,
    pub tag_or_digest: TagOrDigest,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagOrDigest {
    Tag(String),
    /// `sha256:HEX`
    Digest(String),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.tag_or_digest {
            TagOrDigest::Tag(tag) => write!(f, "{}/{}:{tag}", self.registry, self.repository),
            TagOrDigest::Digest(d) => write!(f, "{}/{}@{d}", self.registry, self.repository),
        }
    }
}

/// How to reach the registry and whom to be there.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The credentials file to read instead of the usual ones
    /// (`--authfile`); `$REGISTRY_AUTH_FILE` otherwise, then
    /// `${XDG_RUNTIME_DIR}/containers/auth.json`, then `~/.docker/config.json`.
    pub auth_file: Option<PathBuf>,
    /// User and password given on the command line, before any file.
    pub credentials: Option<(String, String)>,
    /// The per-registry certificate directories; default
    /// `/etc/containers/certs.d` (`HOST:PORT/ca.crt`, `*.crt`).
    pub certs_dir: Option<PathBuf>,
    /// Plain HTTP is allowed for this registry (besides the local ones),
    /// and its certificate is not verified; also for a registry named in
    /// `ENGINE_INSECURE_REGISTRIES`.
    pub insecure: bool,
}

/// What was pulled: the layout's one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pulled {
    /// The digest of the manifest or index the reference named (what
    /// `NAME@DIGEST` pulls again).
    pub digest: String,
    /// The digest of the platform's image manifest (equal to `digest`
    /// unless the reference named an index).
    pub manifest: String,
    pub config: String,
    pub layers: Vec<Layer>,
    /// The image's platform (its index entry's, or its config's).
    pub platform: Platform,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    pub digest: String,
    pub size: u64,
    pub media_type: String,
}

/// A pull's failure, each a sentence naming the reference and what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("platform `{given}` is not OS/ARCH[/VARIANT] (e.g. linux/arm64)")]
    BadPlatform { given: String },
    #[error("{path} already exists and is not an empty directory: remove it or choose another layout directory")]
    LayoutNotEmpty { path: PathBuf },
    #[error("cannot pull {reference}: {what} was not found in {registry} (HTTP 404): check the name and the tag")]
    NotFound {
        reference: String,
        registry: String,
        what: String,
    },
    #[error("cannot pull {reference}: {registry} refused the credentials{from} (HTTP 401): log in again or check the user and password")]
    Unauthorized {
        reference: String,
        registry: String,
        /// ` of FILE` or ` given` or empty (none were found).
        from: String,
    },
    #[error("cannot pull {reference}: {registry} asks for credentials (HTTP 401) and none were found: log in (podman login {registry}) or give an auth file")]
    NoCredentials { reference: String, registry: String },
    #[error("cannot pull {reference}: {registry} denied access (HTTP 403): check that this account may pull the repository")]
    Denied { reference: String, registry: String },
    #[error("cannot pull {reference}: HTTP {status} from {url}{hint}")]
    Http {
        reference: String,
        url: String,
        status: u16,
        hint: String,
    },
    #[error("cannot pull {reference}: cannot reach {url}: {why}{hint}")]
    Transport {
        reference: String,
        url: String,
        why: String,
        hint: String,
    },
    #[error("cannot pull {reference}: {what} {digest} does not match its digest (got {got}): the registry serves corrupt data; try again or tell its operator")]
    DigestMismatch {
        reference: String,
        what: String,
        digest: String,
        got: String,
    },
    #[error("cannot pull {reference}: {what} {digest} was cut short after {got} of {declared} bytes: try again")]
    Truncated {
        reference: String,
        what: String,
        digest: String,
        declared: u64,
        got: u64,
    },
    #[error("cannot pull {reference}: {what} {digest} is larger than its declared {declared} bytes: the registry serves corrupt data; tell its operator")]
    TooLarge {
        reference: String,
        what: String,
        digest: String,
        declared: u64,
    },
    #[error("cannot pull {reference}: its manifest is larger than 4 MiB ({size}), which is refused: check the reference")]
    ManifestTooBig { reference: String, size: String },
    #[error("cannot pull {reference}: {why}")]
    BadManifest { reference: String, why: String },
    #[error("cannot pull {reference}: the image has no {platform} variant (it has {available}): choose one of those with --platform")]
    NoPlatform {
        reference: String,
        platform: String,
        available: String,
    },
    #[error("cannot read the credentials file {path}: {why}: fix or remove it")]
    AuthFile { path: PathBuf, why: String },
    #[error("no credentials file to write: set REGISTRY_AUTH_FILE or XDG_RUNTIME_DIR")]
    NoAuthFile,
    #[error("cannot write the credentials file {path}: {why}")]
    WriteAuthFile { path: PathBuf, why: String },
    #[error("{path} holds no credentials for {registry}: nothing to log out of (engine login {registry} adds them)")]
    NotLoggedIn { path: PathBuf, registry: String },
    #[error("cannot read the certificates for {registry} in {path}: {why}: fix or remove them")]
    Certs {
        registry: String,
        path: PathBuf,
        why: String,
    },
    #[error("cannot pull {reference}: cannot write {path}: {why}")]
    Write {
        reference: String,
        path: PathBuf,
        why: String,
    },
    #[error("cannot pull {reference}: {why}")]
    Staging { reference: String, why: String },
    /// SIGINT, SIGTERM or SIGHUP arrived while the caller's
    /// `SignalGuard` was installed; the partial layout is removed.
    #[error(transparent)]
    Interrupted(#[from] super::Interrupted),
}

/// `engine login HOST`: checks `user` and `password` against the
/// registry's `/v2/` and only then stores them in the containers-auth.json
/// file podman writes ([`auth::login_file`]); returns that file. Refused
/// credentials write nothing.
pub fn login(
    registry: &str,
    user: &str,
    password: &str,
    options: &Options,
) -> Result<PathBuf, Error> {
    let target = Target {
        registry: registry.to_string(),
        repository: String::new(),
        tag_or_digest: TagOrDigest::Tag("latest".into()),
    };
    let options = Options {
        credentials: Some((user.to_string(), password.to_string())),
        ..options.clone()
    };
    let mut client = transport::Client::new(&target, &options)?;
    client.check_login()?;
    let file = auth::login_file().ok_or(Error::NoAuthFile)?;
    auth::store(&file, registry, Some((user, password)))?;
    Ok(file)
}

/// `engine logout HOST`: removes the registry's entry from the file
/// `login` writes; returns that file. No entry is an error.
pub fn logout(registry: &str) -> Result<PathBuf, Error> {
    let file = auth::login_file().ok_or(Error::NoAuthFile)?;
    auth::store(&file, registry, None)?;
    Ok(file)
}

/// Pulls `target` (resolved to `platform`, the host's when `None`; a
/// single-platform image must match a platform given) into the
/// OCI image layout `layout_dir`, which must not exist or be empty. On
/// success it holds `oci-layout`, `index.json` (one manifest, annotated
/// `org.opencontainers.image.ref.name` with the whole reference,
/// `HOST/REPO:TAG` or `HOST/REPO@DIGEST`) and the
/// manifest, config and layer blobs, all verified.
pub fn pull_to_layout(
    target: &Target,
    platform: Option<&Platform>,
    layout_dir: &Path,
    options: &Options,
) -> Result<Pulled, Error> {
    let explicit_platform = platform.is_some();
    let platform = platform.cloned().unwrap_or_else(Platform::host);
    layout::check_free(layout_dir)?;
    let reference = target.to_string();
    let mut client = transport::Client::new(target, options)?;
    let staging = Staging::create(layout_dir).map_err(|e| Error::Staging {
        reference: reference.clone(),
        why: format!("{e:#}"),
    })?;
    let pulled = layout::pull_into(
        &mut client,
        target,
        &platform,
        explicit_platform,
        staging.path(),
    )?;
    staging.commit(layout_dir).map_err(|e| Error::Staging {
        reference,
        why: format!("{e:#}"),
    })?;
    Ok(pulled)
}
