//! Root filesystems: the catalog (`busybox`, `debian`, `centos`), downloads of
//! `.tar.xz` / `.tar.gz` / `.tar` over http(s) or `file://`, sha256 checks,
//! unpacking with an optional uid/gid shift, and the atomic hand-over to DEST.
//!
//! Every pull builds in `.NAME.partial-PID` beside DEST and renames it into
//! place only once it is complete and verified, so DEST is either absent or
//! whole. A download is streamed: network -> sha256 -> decompressor -> tar,
//! with nothing buffered on disk but the unpacked files.

use anyhow::{anyhow, bail, Context, Result};
use flate2::read::MultiGzDecoder;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use nix::errno::Errno;
use nix::sys::signal::{self, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::unistd::Pid;
use sha2::{Digest, Sha256};
use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, IsTerminal, Read};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{lchown, symlink, MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use xz2::read::XzDecoder;

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

/// The error a pull returns when SIGINT, SIGTERM or SIGHUP arrived during it.
/// Everything it had created is removed by then; callers may exit 128+signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interrupted {
    /// The signal number.
    pub signal: i32,
}

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match Signal::try_from(self.signal) {
            Ok(sig) => write!(f, "rootfs pull interrupted by {}", sig.as_str()),
            Err(_) => write!(f, "rootfs pull interrupted by signal {}", self.signal),
        }
    }
}

impl std::error::Error for Interrupted {}

/// Catalog names, in the order messages list them.
const CATALOG: [&str; 3] = ["busybox", "debian", "centos"];

/// Pulls `source` (a catalog name such as `busybox`, `debian`, `centos`, or an
/// http(s)/file URL of a .tar.xz/.tar.gz/.tar) into `dest`, atomically.
///
/// Bad input (unknown source, architecture or digest, a non-empty DEST, a
/// missing tool) is refused before anything is created.
pub fn pull(source: &str, dest: &Path, opts: &PullOptions) -> Result<()> {
    let source = Source::parse(source)?;
    let requested_arch = opts.arch.as_deref().map(catalog_arch).transpose()?;
    let digest = opts.sha256.as_deref().map(parse_sha256).transpose()?;
    let plan = plan(&source, requested_arch, digest.is_some())?;
    check_dest_free(dest)?;

    let _signals = SignalGuard::install();
    let staging = Staging::create(dest)?;
    let root = staging.path();
    match plan {
        Plan::Download(url) => {
            shift_root(root, opts.owner)?;
            fetch(&url, root, digest.as_deref(), opts)?;
        }
        Plan::Debian { mmdebstrap, arch } => {
            shift_root(root, opts.owner)?;
            build_debian(&mmdebstrap, root, arch, opts)?;
        }
        Plan::Busybox { busybox, arch } => {
            build_busybox(root, &busybox, arch)?;
            if let Some(base) = opts.owner {
                shift_tree(root, base)?;
            }
        }
    }
    check_interrupted()?;
    staging.commit(dest)
}

/// Whether `name` is a catalog name.
pub fn is_catalog_name(name: &str) -> bool {
    CATALOG.contains(&name)
}

/// The cached rootfs for a catalog name, pulled into `cache/NAME` on first use.
///
/// Two processes asking at once for the same name are serialized by a lock
/// file in `cache`, so the second one waits and then uses the first one's.
pub fn cached(name: &str, cache: &Path) -> Result<PathBuf> {
    if !is_catalog_name(name) {
        bail!(
            "`{name}` is not a rootfs catalog name (try {})",
            CATALOG.join(", ")
        );
    }
    let dest = cache.join(name);
    if dest.is_dir() {
        return Ok(dest);
    }
    fs::create_dir_all(cache)
        .with_context(|| format!("cannot create the rootfs cache {}", cache.display()))?;
    let _lock = crate::sys::state::lock_file(&cache.join(format!(".{name}.lock")))?;
    // Whoever held the lock before us may have pulled it meanwhile.
    if dest.is_dir() {
        return Ok(dest);
    }
    let opts = PullOptions {
        progress: true,
        ..PullOptions::default()
    };
    pull(name, &dest, &opts)?;
    Ok(dest)
}

/// The host's architecture in Debian's naming: `amd64`, `arm64`, or Rust's
/// name for any other (which the catalog then refuses).
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// `e_machine` of the ELF file at `path`, or `None` if it is not ELF.
/// (Follows symlinks on the host: see [`resolve_in_rootfs`] for paths inside a rootfs.)
pub fn elf_machine(path: &Path) -> Result<Option<u16>> {
    Ok(read_elf(path, false)?.map(|elf| elf.machine))
}

/// The Debian name of an ELF `e_machine`, for messages ("built for arm64").
pub fn machine_arch(machine: u16) -> Option<&'static str> {
    Some(match machine {
        EM_X86_64 => "amd64",
        EM_AARCH64 => "arm64",
        3 => "i386",
        40 => "arm",
        243 => "riscv64",
        21 => "ppc64",
        22 => "s390x",
        _ => return None,
    })
}

/// The ELF `e_machine` that binaries for a Debian architecture carry.
pub fn arch_machine(arch: &str) -> Option<u16> {
    match arch {
        "amd64" => Some(EM_X86_64),
        "arm64" => Some(EM_AARCH64),
        _ => None,
    }
}

/// Resolves `path` as the container would see it, with `root` as `/`:
/// symlinks (absolute or relative) are followed inside `root` and `..` never
/// climbs above it. Missing components are kept as they are.
pub fn resolve_in_rootfs(root: &Path, path: &Path) -> Result<PathBuf> {
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
                    bail!(
                        "too many levels of symlinks resolving {} in {}",
                        path.display(),
                        root.display()
                    );
                }
                let target = fs::read_link(&on_host)
                    .with_context(|| format!("cannot read the symlink {}", on_host.display()))?;
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

// ---------------------------------------------------------------------------
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
            if file_url_path(rest).is_none() {
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
                busybox: find_busybox(arch)?,
                arch,
            }
        }
        Source::Debian => Plan::Debian {
            mmdebstrap: find_mmdebstrap()?,
            arch: catalog_arch()?,
        },
    })
}

/// The catalog's architectures, accepting the kernel's names as aliases.
fn catalog_arch(arch: &str) -> Result<&'static str> {
    match arch {
        "amd64" | "x86_64" => Ok("amd64"),
        "arm64" | "aarch64" => Ok("arm64"),
        other => {
            bail!("unsupported architecture `{other}`: the rootfs catalog has amd64 and arm64")
        }
    }
}

fn centos_url(arch: &str) -> String {
    format!(
        "https://raw.githubusercontent.com/EXALAB/Anlinux-Resources/master/Rootfs/CentOS/{arch}/centos-rootfs-{arch}.tar.xz"
    )
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

// ---------------------------------------------------------------------------
// The staging directory: `.NAME.partial-PID` beside DEST.

/// A directory beside DEST that is removed unless committed (renamed to DEST).
struct Staging {
    path: PathBuf,
    /// The directories made for DEST's parent, outermost first.
    made_parents: Vec<PathBuf>,
    committed: bool,
}

impl Staging {
    fn create(dest: &Path) -> Result<Staging> {
        let name = dest
            .file_name()
            .ok_or_else(|| anyhow!("DEST {} must name a new directory", dest.display()))?;
        let parent = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut made_parents: Vec<PathBuf> = parent
            .ancestors()
            .take_while(|dir| !dir.as_os_str().is_empty() && !dir.exists())
            .map(Path::to_path_buf)
            .collect();
        made_parents.reverse();
        fs::create_dir_all(&parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
        let prefix = format!(".{}.partial-", name.to_string_lossy());
        remove_stale_partials(&parent, &prefix);
        let path = parent.join(format!("{prefix}{}", std::process::id()));
        match fs::create_dir(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                bail!(
                    "another pull into {} is in progress ({} exists)",
                    dest.display(),
                    path.display()
                )
            }
            Err(e) => return Err(e).with_context(|| format!("cannot create {}", path.display())),
        }
        let staging = Staging {
            path,
            made_parents,
            committed: false,
        };
        fs::set_permissions(&staging.path, fs::Permissions::from_mode(0o755))
            .with_context(|| format!("cannot chmod {}", staging.path.display()))?;
        Ok(staging)
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn commit(mut self, dest: &Path) -> Result<()> {
        fs::rename(&self.path, dest).map_err(|e| {
            let why = match e.raw_os_error() {
                Some(libc::ENOTEMPTY) | Some(libc::EEXIST) => {
                    "it appeared meanwhile; remove it or choose another DEST".to_string()
                }
                _ => e.to_string(),
            };
            anyhow!("cannot move the new rootfs into {}: {why}", dest.display())
        })?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.path);
            // Only while empty: another pull may have put something there.
            for dir in self.made_parents.iter().rev() {
                if fs::remove_dir(dir).is_err() {
                    break;
                }
            }
        }
    }
}

/// Removes `PREFIX<pid>[.anything]` entries left by pulls whose process died
/// (SIGKILL, power loss). Entries of live processes are another pull's.
fn remove_stale_partials(parent: &Path, prefix: &str) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(prefix)) else {
            continue;
        };
        let Ok(pid) = rest.split('.').next().unwrap_or_default().parse::<i32>() else {
            continue;
        };
        if pid > 0 && !process_alive(pid) {
            let path = entry.path();
            let _ = match entry.file_type() {
                Ok(t) if t.is_dir() => fs::remove_dir_all(&path),
                _ => fs::remove_file(&path),
            };
        }
    }
}

fn process_alive(pid: i32) -> bool {
    signal::kill(Pid::from_raw(pid), None) != Err(Errno::ESRCH)
}

// ---------------------------------------------------------------------------
// Ctrl-C: turn SIGINT/SIGTERM/SIGHUP into an error while a pull runs, so the
// staging directory is removed on the way out instead of left behind.

static CAUGHT_SIGNAL: AtomicI32 = AtomicI32::new(0);
static SIGNAL_USERS: Mutex<(usize, Vec<(Signal, SigAction)>)> = Mutex::new((0, Vec::new()));
const WATCHED_SIGNALS: [Signal; 3] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP];

extern "C" fn note_signal(sig: libc::c_int) {
    CAUGHT_SIGNAL.store(sig, Ordering::SeqCst);
}

/// Installs the handlers for as long as any pull runs (pulls may run in
/// several threads); the last one out restores what was there before.
struct SignalGuard;

impl SignalGuard {
    fn install() -> SignalGuard {
        let mut users = SIGNAL_USERS.lock().unwrap_or_else(|p| p.into_inner());
        if users.0 == 0 {
            CAUGHT_SIGNAL.store(0, Ordering::SeqCst);
            // No SA_RESTART: a blocking read returns EINTR and the pull notices.
            let action = SigAction::new(
                SigHandler::Handler(note_signal),
                SaFlags::empty(),
                SigSet::empty(),
            );
            for sig in WATCHED_SIGNALS {
                // SAFETY: the handler only stores to an atomic (async-signal-safe).
                let Ok(old) = (unsafe { signal::sigaction(sig, &action) }) else {
                    continue;
                };
                if old.handler() == SigHandler::SigIgn {
                    // Respect an ignored signal (nohup): put it back.
                    // SAFETY: restores the action the process had.
                    let _ = unsafe { signal::sigaction(sig, &old) };
                } else {
                    users.1.push((sig, old));
                }
            }
        }
        users.0 += 1;
        SignalGuard
    }
}

impl Drop for SignalGuard {
    fn drop(&mut self) {
        let mut users = SIGNAL_USERS.lock().unwrap_or_else(|p| p.into_inner());
        users.0 -= 1;
        if users.0 == 0 {
            for (sig, old) in users.1.drain(..) {
                // SAFETY: restores the action the process had before the pull.
                let _ = unsafe { signal::sigaction(sig, &old) };
            }
        }
    }
}

fn caught_signal() -> Option<Interrupted> {
    match CAUGHT_SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        signal => Some(Interrupted { signal }),
    }
}

fn check_interrupted() -> Result<()> {
    match caught_signal() {
        Some(interrupted) => Err(interrupted.into()),
        None => Ok(()),
    }
}

/// A reader that fails once a watched signal was caught, and retries reads
/// interrupted by any other signal.
struct Interruptible<R>(R);

impl<R: Read> Read for Interruptible<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(interrupted) = caught_signal() {
                // Not ErrorKind::Interrupted: std's read loops would retry that.
                return Err(io::Error::other(interrupted));
            }
            match self.0.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Downloads.

fn fetch(url: &str, root: &Path, digest: Option<&str>, opts: &PullOptions) -> Result<()> {
    let (body, length) = open_url(url)?;
    let bar = progress_bar(opts.progress, length, url);
    let mut download = Download {
        body: Interruptible(body),
        length,
        read: 0,
        ended: false,
        error: None,
        hasher: Sha256::new(),
        bar,
    };
    let unpacked = unpack_stream(&mut download, url, root, opts.owner);
    if let Some(bar) = &download.bar {
        bar.finish_and_clear();
    }
    // A signal, then a short or failed transfer explain most unpack errors.
    check_interrupted()?;
    let ended = download.ended || download.error.is_some();
    if let Some(expected) = download.length.filter(|&n| ended && download.read < n) {
        bail!(
            "download of {url} was cut short after {} bytes (expected {expected})",
            download.read
        );
    }
    if let Some(error) = &download.error {
        bail!(
            "download of {url} failed after {} bytes: {error}",
            download.read
        );
    }
    unpacked?;
    let got = format!("{:x}", download.hasher.finalize());
    match digest {
        Some(want) if want != got => bail!("sha256 mismatch for {url}: expected {want}, got {got}"),
        _ => Ok(()),
    }
}

type Body = Box<dyn Read + Send>;

/// The body of `url` and its length when known.
fn open_url(url: &str) -> Result<(Body, Option<u64>)> {
    if let Some(rest) = url.strip_prefix("file://") {
        let path = file_url_path(rest)
            .ok_or_else(|| anyhow!("{url} is not a file:///ABSOLUTE/PATH URL"))?;
        let file = File::open(&path).map_err(|e| anyhow!("cannot read {url}: {e}"))?;
        let length = file
            .metadata()
            .map_err(|e| anyhow!("cannot read {url}: {e}"))?
            .len();
        return Ok((Box::new(file), Some(length)));
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .user_agent(concat!("engine/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let response = agent
        .get(url)
        .call()
        .map_err(|e| anyhow!("cannot download {url}: {e}"))?;
    let status = response.status();
    if !status.is_success() {
        bail!(
            "HTTP {} {} from {url}",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        );
    }
    let length = response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    Ok((Box::new(response.into_body().into_reader()), length))
}

/// The path of a `file://` URL (after the scheme): `/abs/path` or
/// `localhost/abs/path`, percent-decoded.
fn file_url_path(rest: &str) -> Option<PathBuf> {
    let rest = rest.strip_prefix("localhost").unwrap_or(rest);
    if !rest.starts_with('/') {
        return None;
    }
    let bytes = rest.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(PathBuf::from(OsString::from_vec(out)))
}

fn progress_bar(enabled: bool, length: Option<u64>, url: &str) -> Option<ProgressBar> {
    if !enabled || !io::stderr().is_terminal() {
        return None;
    }
    let (bar, template) = match length {
        Some(n) => (
            ProgressBar::new(n),
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        ),
        None => (
            ProgressBar::new_spinner(),
            "{msg} {spinner} {bytes} {bytes_per_sec}",
        ),
    };
    bar.set_draw_target(ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(url.rsplit('/').next().unwrap_or(url).to_string());
    Some(bar)
}

/// The raw download: counts and hashes every byte, remembers a failure.
struct Download {
    body: Interruptible<Body>,
    length: Option<u64>,
    read: u64,
    /// The body reached its end (a read returned 0).
    ended: bool,
    error: Option<String>,
    hasher: Sha256,
    bar: Option<ProgressBar>,
}

impl Read for Download {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.body.read(buf) {
            Ok(n) => {
                self.hasher.update(&buf[..n]);
                self.read += n as u64;
                self.ended |= n == 0 && !buf.is_empty();
                if let Some(bar) = &self.bar {
                    bar.inc(n as u64);
                }
                Ok(n)
            }
            Err(e) => {
                self.error = Some(e.to_string());
                Err(e)
            }
        }
    }
}

/// Sniffs the format, decompresses and unpacks; then reads the rest of the
/// file so that the digest covers all of it.
fn unpack_stream(src: &mut Download, url: &str, root: &Path, owner: Option<u32>) -> Result<()> {
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
    Tar,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Xz => ".tar.xz",
            Format::Gzip => ".tar.gz",
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
            Format::Tar => Box::new(stream),
        }
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
    if head.starts_with(b"\x28\xb5\x2f\xfd") {
        return "it is zstd-compressed, which is not supported".into();
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

// ---------------------------------------------------------------------------
// Unpacking.

/// Unpacks a tar stream into `root`, keeping modes, owners (shifted by `owner`
/// when given), symlinks and hardlinks. Device nodes and fifos are skipped:
/// the engine gives each container its own /dev.
fn unpack_tar(reader: impl Read, root: &Path, owner: Option<u32>) -> Result<()> {
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(owner.is_none());
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(false);
    archive.set_overwrite(true);
    let mut skipped = 0;
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
        if !entry.unpack_in(root)? {
            return Err(escaping(&raw));
        }
        if let Some(base) = owner {
            shift_entry(&root.join(&rel), entry.header(), base)?;
        }
    }
    if skipped > 0 {
        eprintln!(
            "note: skipped {skipped} device node(s) or fifo(s); the engine mounts its own /dev"
        );
    }
    Ok(())
}

/// `path` made relative, as `unpack_in` places it; `None` if it climbs out.
fn inside_path(path: &Path) -> Option<PathBuf> {
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

// ---------------------------------------------------------------------------
// Ownership shift, for a rootfs used from an unprivileged user namespace.

fn shifted(id: u64, base: u32, path: &Path) -> Result<u32> {
    u32::try_from(id)
        .ok()
        .and_then(|id| id.checked_add(base))
        .filter(|&id| id != u32::MAX) // (uid_t)-1 means "unchanged" to chown
        .ok_or_else(|| {
            anyhow!(
                "id {id} of {} shifted by {base} does not fit a uid",
                path.display()
            )
        })
}

/// Chowns one unpacked entry to its archive owner + `base`. chown clears the
/// setuid/setgid bits, so they are put back after it.
fn shift_entry(path: &Path, header: &tar::Header, base: u32) -> Result<()> {
    let uid = shifted(header.uid()?, base, path)?;
    let gid = shifted(header.gid()?, base, path)?;
    let mode = if header.entry_type().is_symlink() {
        0
    } else {
        header.mode()?
    };
    chown_keeping_mode(path, uid, gid, mode)
}

fn chown_keeping_mode(path: &Path, uid: u32, gid: u32, mode: u32) -> Result<()> {
    lchown(path, Some(uid), Some(gid))
        .with_context(|| format!("cannot chown {}", path.display()))?;
    if mode & 0o6000 != 0 {
        fs::set_permissions(path, fs::Permissions::from_mode(mode & 0o7777))
            .with_context(|| format!("cannot chmod {}", path.display()))?;
    }
    Ok(())
}

/// Gives the (still empty) root to BASE before unpacking: the engine maps user
/// namespaces from the owner of the rootfs's root, and an archive need not
/// have a `./` entry (when it has one, that entry's shifted owner wins).
fn shift_root(root: &Path, owner: Option<u32>) -> Result<()> {
    match owner {
        Some(base) => lchown(root, Some(base), Some(base))
            .with_context(|| format!("cannot chown {}", root.display())),
        None => Ok(()),
    }
}

/// `chown -h` every file under `root` (and `root` itself) from id to base+id.
fn shift_tree(root: &Path, base: u32) -> Result<()> {
    let meta =
        fs::symlink_metadata(root).with_context(|| format!("cannot stat {}", root.display()))?;
    let uid = shifted(meta.uid().into(), base, root)?;
    let gid = shifted(meta.gid().into(), base, root)?;
    let mode = if meta.file_type().is_symlink() {
        0
    } else {
        meta.mode()
    };
    chown_keeping_mode(root, uid, gid, mode)?;
    if meta.is_dir() {
        for entry in
            fs::read_dir(root).with_context(|| format!("cannot read {}", root.display()))?
        {
            let entry = entry.with_context(|| format!("cannot read {}", root.display()))?;
            shift_tree(&entry.path(), base)?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The `busybox` flavour: built offline from a static busybox binary.

/// Applets linked when the busybox cannot run here to list its own.
const FALLBACK_APPLETS: &[&str] = &[
    "sh", "ash", "cat", "chmod", "chown", "cp", "date", "df", "dmesg", "du", "echo", "env",
    "false", "find", "free", "grep", "head", "hostname", "id", "ip", "kill", "ln", "ls", "mkdir",
    "mount", "mv", "nc", "ping", "printf", "ps", "pwd", "rm", "sed", "seq", "sleep", "sort",
    "tail", "tar", "test", "top", "touch", "tr", "true", "umount", "uname", "uniq", "vi", "wc",
    "which", "whoami", "xargs", "yes", "awk", "cut", "mknod", "stat", "uptime", "nslookup", "wget",
];

/// Applets the README and the harness use: a busybox without one is refused.
const REQUIRED_APPLETS: &[&str] = &[
    "sh", "ps", "hostname", "whoami", "ip", "ping", "ls", "id", "sleep", "cat",
];

fn find_busybox(arch: &'static str) -> Result<PathBuf> {
    let from_env = std::env::var_os("ENGINE_BUSYBOX").filter(|v| !v.is_empty());
    let path = match &from_env {
        Some(path) => PathBuf::from(path),
        None if arch == host_arch() => PathBuf::from("/bin/busybox"),
        None => bail!(
            "no {arch} busybox: set ENGINE_BUSYBOX to a statically linked {arch} busybox \
             (Debian's busybox-static:{arch}, unpacked with dpkg-deb -x)"
        ),
    };
    let install = "apt-get install busybox-static";
    if !path.exists() {
        match from_env {
            Some(_) => bail!("ENGINE_BUSYBOX={} does not exist", path.display()),
            None => bail!("{} not found: the busybox rootfs is built from the host's static busybox; {install}", path.display()),
        }
    }
    let elf = read_elf(&path, true)?
        .ok_or_else(|| anyhow!("{} is not an ELF executable; {install}", path.display()))?;
    if Some(elf.machine) != arch_machine(arch) {
        let built_for = machine_arch(elf.machine).unwrap_or("another architecture");
        bail!(
            "{} is built for {built_for}, not {arch}; set ENGINE_BUSYBOX to an {arch} busybox",
            path.display()
        );
    }
    if elf.dynamic {
        bail!(
            "{} is dynamically linked but a rootfs needs a static busybox; {install}",
            path.display()
        );
    }
    Ok(path)
}

fn build_busybox(root: &Path, busybox: &Path, arch: &str) -> Result<()> {
    for (dir, mode) in [
        ("bin", 0o755),
        ("dev", 0o755),
        ("etc", 0o755),
        ("proc", 0o555),
        ("root", 0o700),
        ("run", 0o755),
        ("sys", 0o555),
        ("tmp", 0o1777),
        ("var", 0o755),
        ("var/tmp", 0o1777),
    ] {
        let path = root.join(dir);
        fs::create_dir_all(&path).with_context(|| format!("cannot create {}", path.display()))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))
            .with_context(|| format!("cannot chmod {}", path.display()))?;
    }
    let target = root.join("bin/busybox");
    fs::copy(busybox, &target)
        .with_context(|| format!("cannot copy {} to {}", busybox.display(), target.display()))?;
    fs::set_permissions(&target, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("cannot chmod {}", target.display()))?;
    for applet in busybox_applets(busybox) {
        link_applet(root, &applet)?;
    }
    let missing: Vec<&str> = REQUIRED_APPLETS
        .iter()
        .copied()
        .filter(|name| {
            !["bin", "sbin", "usr/bin", "usr/sbin"]
                .iter()
                .any(|d| root.join(d).join(name).exists())
        })
        .collect();
    if !missing.is_empty() {
        bail!(
            "{} lacks the applet(s) {} that the busybox rootfs needs",
            busybox.display(),
            missing.join(", ")
        );
    }
    let os_release =
        format!("NAME=\"BusyBox\"\nID=busybox\nPRETTY_NAME=\"BusyBox ({arch}, engine catalog)\"\n");
    for (file, text) in [
        (
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        ),
        ("etc/group", "root:x:0:\nnogroup:x:65534:\n"),
        ("etc/hostname", "busybox\n"),
        ("etc/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost\n"),
        ("etc/os-release", &os_release),
    ] {
        let path = root.join(file);
        fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// The applets as paths relative to `/` (`usr/bin/wc`), from `busybox
/// --list-full`; a busybox that cannot run here (another arch without
/// binfmt_misc) gets a fixed list in bin/.
fn busybox_applets(busybox: &Path) -> Vec<PathBuf> {
    let listed = Command::new(busybox)
        .arg("--list-full")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output();
    if let Ok(out) = listed {
        if out.status.success() {
            let applets: Vec<PathBuf> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|line| inside_path(Path::new(line.trim())))
                .filter(|rel| rel.components().count() >= 2)
                .collect();
            if !applets.is_empty() {
                return applets;
            }
        }
    }
    FALLBACK_APPLETS
        .iter()
        .map(|name| Path::new("bin").join(name))
        .collect()
}

/// Links `root/rel` to bin/busybox with a relative symlink, which resolves
/// the same inside the container and from the host.
fn link_applet(root: &Path, rel: &Path) -> Result<()> {
    let link = root.join(rel);
    if fs::symlink_metadata(&link).is_ok() {
        return Ok(()); // bin/busybox itself, or listed twice
    }
    let dir = rel.parent().unwrap_or(Path::new(""));
    let target = if dir == Path::new("bin") {
        PathBuf::from("busybox")
    } else {
        let mut up = PathBuf::new();
        for _ in dir.components() {
            up.push("..");
        }
        up.join("bin/busybox")
    };
    if let Some(parent) = link.parent() {
        fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    symlink(&target, &link).with_context(|| format!("cannot create the symlink {}", link.display()))
}

// ---------------------------------------------------------------------------
// The `debian` flavour: mmdebstrap from Debian's package archive.

/// A release other than the host's (bookworm), to show a distro of its own.
const DEBIAN_SUITE: &str = "trixie";
const DEBIAN_PACKAGES: &str = "bash,procps,iproute2,iputils-ping,coreutils";
const DEFAULT_DEBIAN_MIRROR: &str = "http://deb.debian.org/debian";

fn find_mmdebstrap() -> Result<PathBuf> {
    find_in_path("mmdebstrap").ok_or_else(|| {
        anyhow!(
            "the debian rootfs is built by mmdebstrap, which is not installed: apt-get install mmdebstrap \
             (plus arch-test and qemu-user-static for a foreign architecture)"
        )
    })
}

fn find_in_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| {
            fs::metadata(candidate).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0)
        })
}

/// The Debian archive this host uses (the first `URIs:` of its deb822
/// sources), so the build works where only that mirror is reachable.
fn debian_mirror() -> String {
    fs::read_to_string("/etc/apt/sources.list.d/debian.sources")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.trim().strip_prefix("URIs:"))
                .and_then(|uris| uris.split_whitespace().next())
                .map(str::to_string)
        })
        .unwrap_or_else(|| DEFAULT_DEBIAN_MIRROR.to_string())
}

/// Runs mmdebstrap with its tarball on stdout and unpacks that stream through
/// the same path as downloads (so `--owner` applies), with no temporary tar.
fn build_debian(mmdebstrap: &Path, root: &Path, arch: &str, opts: &PullOptions) -> Result<()> {
    let mirror = debian_mirror();
    let show_output = opts.progress && io::stderr().is_terminal();
    // Its own process group: on failure mmdebstrap sends SIGHUP to its whole
    // group, which must not reach us or our caller's shell pipeline. Ctrl-C
    // then reaches only us, and we stop it (finish_child).
    let mut child = Command::new(mmdebstrap)
        .process_group(0)
        .arg("--variant=minbase")
        .arg(format!("--include={DEBIAN_PACKAGES}"))
        .arg(format!("--arch={arch}"))
        .args([DEBIAN_SUITE, "-", &mirror])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(if show_output {
            Stdio::inherit()
        } else {
            Stdio::piped()
        })
        .spawn()
        .with_context(|| format!("cannot run {}", mmdebstrap.display()))?;
    // Collect stderr in a thread so a chatty mmdebstrap never blocks on it.
    let log = child.stderr.take().map(|mut stderr| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = stderr.read_to_end(&mut text);
            text
        })
    });
    let unpacked = match child.stdout.take() {
        Some(stdout) => {
            let mut stdout = Interruptible(stdout);
            unpack_tar(&mut stdout, root, opts.owner).and_then(|()| {
                // Read the tar's padding too, or mmdebstrap blocks writing it.
                io::copy(&mut stdout, &mut io::sink())?;
                Ok(())
            })
        }
        None => Err(anyhow!("no pipe from mmdebstrap")),
    };
    let status = finish_child(&mut child, unpacked.is_err())?;
    let log = log.and_then(|t| t.join().ok()).unwrap_or_default();
    check_interrupted()?;
    if !status.success() {
        io::Write::write_all(&mut io::stderr(), &log).ok();
        bail!("mmdebstrap failed ({status}) building the {arch} debian rootfs from {mirror}; its output is above");
    }
    unpacked.context("cannot unpack the debian rootfs made by mmdebstrap")
}

/// Waits for the child, first asking its process group to stop (SIGTERM, so
/// mmdebstrap cleans its own temporary root) when we gave up reading from it.
fn finish_child(child: &mut Child, stop: bool) -> Result<std::process::ExitStatus> {
    if stop {
        if let Ok(pid) = i32::try_from(child.id()) {
            let _ = signal::killpg(Pid::from_raw(pid), Signal::SIGTERM);
        }
    }
    loop {
        match child.wait() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other.context("cannot wait for mmdebstrap"),
        }
    }
}

// ---------------------------------------------------------------------------
// ELF headers.

const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;
const PT_INTERP: u32 = 3;

struct Elf {
    machine: u16,
    /// Has a PT_INTERP program header, i.e. needs a dynamic loader.
    dynamic: bool,
}

/// Reads the ELF header of `path` (and the program headers when
/// `program_headers`); `None` if the file is not ELF.
fn read_elf(path: &Path, program_headers: bool) -> Result<Option<Elf>> {
    let mut file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut header = Vec::with_capacity(64);
    (&mut file)
        .take(64)
        .read_to_end(&mut header)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if !header.starts_with(b"\x7fELF") {
        return Ok(None);
    }
    let bad = || anyhow!("{} has a truncated or malformed ELF header", path.display());
    let class64 = match header.get(4) {
        Some(1) => false,
        Some(2) => true,
        _ => return Err(bad()),
    };
    let little = match header.get(5) {
        Some(1) => true,
        Some(2) => false,
        _ => return Err(bad()),
    };
    let field = |at: usize, len: usize| -> Result<u64> {
        let bytes = header.get(at..at + len).ok_or_else(bad)?;
        Ok(read_uint(bytes, little))
    };
    let machine = field(18, 2)? as u16;
    if !program_headers {
        return Ok(Some(Elf {
            machine,
            dynamic: false,
        }));
    }
    let (phoff, phentsize, phnum) = if class64 {
        (field(32, 8)?, field(54, 2)?, field(56, 2)?)
    } else {
        (field(28, 4)?, field(42, 2)?, field(44, 2)?)
    };
    // A real table is a few KiB; refuse absurd ones rather than read them.
    if phentsize < 4 || phentsize * phnum > 1 << 20 {
        return Err(bad());
    }
    let mut table = Vec::new();
    io::Seek::seek(&mut file, io::SeekFrom::Start(phoff))
        .with_context(|| format!("cannot read {}", path.display()))?;
    file.take(phentsize * phnum)
        .read_to_end(&mut table)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if table.len() as u64 != phentsize * phnum {
        return Err(bad());
    }
    let dynamic = table
        .chunks(phentsize as usize)
        .any(|ph| read_uint(&ph[..4], little) == u64::from(PT_INTERP));
    Ok(Some(Elf { machine, dynamic }))
}

fn read_uint(bytes: &[u8], little: bool) -> u64 {
    let fold = |acc: u64, &b: &u8| (acc << 8) | u64::from(b);
    if little {
        bytes.iter().rev().fold(0, fold)
    } else {
        bytes.iter().fold(0, fold)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn centos_url_follows_the_arch() {
        assert_eq!(
            centos_url("arm64"),
            "https://raw.githubusercontent.com/EXALAB/Anlinux-Resources/master/Rootfs/CentOS/arm64/centos-rootfs-arm64.tar.xz"
        );
        assert!(centos_url("amd64").ends_with("/CentOS/amd64/centos-rootfs-amd64.tar.xz"));
    }

    #[test]
    fn sha256_is_checked_for_form() {
        assert!(parse_sha256("abc").is_err());
        let hex = "A".repeat(64);
        assert_eq!(
            parse_sha256(&format!("sha256:{hex}")).unwrap(),
            "a".repeat(64)
        );
    }

    #[test]
    fn file_urls_are_decoded() {
        assert_eq!(
            file_url_path("/a%20b/c.tar").unwrap(),
            PathBuf::from("/a b/c.tar")
        );
        assert_eq!(file_url_path("localhost/x").unwrap(), PathBuf::from("/x"));
        assert!(file_url_path("relative/x").is_none());
        assert!(file_url_path("/bad%zz").is_none());
        assert!(file_url_path("/bad%+1").is_none());
    }

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
}
