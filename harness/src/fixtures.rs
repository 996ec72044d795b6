//! Root filesystems for the scenarios.
//!
//! On the host (the launcher): the flavours that cannot be built where the
//! scenarios run are made into tarballs cached under `target/rootfs/`:
//! `debian` (by `engine rootfs pull debian`, i.e. mmdebstrap, which needs
//! Debian's package archive), `centos` (downloaded by `engine rootfs pull
//! centos`), and a user's directory (packed each run).
//!
//! Where the scenarios run (the runner): each flavour is unpacked by `engine
//! rootfs pull` onto a filesystem that overlayfs accepts as a lower layer
//! (tmpfs in the guest: 9p is refused): `busybox` is built there from the
//! static busybox, the others come from their tarball with `file://`.

use crate::plan::Flavour;
use crate::process;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;
use testkit::quote::quote as shell_quote;

/// The uid/gid base of the shifted copy used by the users scenario.
pub const OWNER_BASE: u32 = 131_072;

const BUILD_TIMEOUT: Duration = Duration::from_secs(20 * 60);
const UNPACK_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// Where the runner gets a flavour from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `engine rootfs pull busybox`, built in place.
    Busybox,
    /// `engine rootfs pull file://TARBALL`.
    Tarball(PathBuf),
}

/// The runner's flavours: `HARNESS_FLAVOURS`, comma-separated
/// `NAME[=TARBALL]` (`busybox,debian=/w/target/rootfs/debian-amd64.tar`).
/// A name without a tarball must be `busybox`.
pub fn parse_sources(value: &str) -> Result<Vec<(String, Source)>> {
    let mut out = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, source) = match item.split_once('=') {
            Some((name, path)) => (name, Source::Tarball(PathBuf::from(path))),
            None if item == "busybox" => (item, Source::Busybox),
            None => bail!(
                "HARNESS_FLAVOURS: `{item}` needs a tarball (`{item}=/path/{item}.tar`); only \
                 busybox is built where the scenarios run"
            ),
        };
        out.push((name.to_string(), source));
    }
    if out.is_empty() {
        bail!("HARNESS_FLAVOURS is empty");
    }
    Ok(out)
}

/// The runner's form of `sources`, for `HARNESS_FLAVOURS`.
pub fn format_sources(sources: &[(String, Source)]) -> String {
    sources
        .iter()
        .map(|(name, source)| match source {
            Source::Busybox => name.clone(),
            Source::Tarball(path) => format!("{name}={}", path.display()),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Host side: where the runner gets `flavour` from, building or packing
/// its tarball under `rootfs_dir` (`target/rootfs`) when needed.
pub fn host_source(
    flavour: &Flavour,
    engine: &Path,
    rootfs_dir: &Path,
    arch: &str,
) -> Result<Source> {
    match flavour {
        Flavour::Busybox => Ok(Source::Busybox),
        Flavour::Debian | Flavour::Centos => {
            let name = flavour.name();
            let tarball = rootfs_dir.join(format!("{name}-{arch}.tar"));
            if tarball.is_file() {
                println!(
                    "harness: using the cached {name} rootfs {} (delete it to rebuild)",
                    tarball.display()
                );
                return Ok(Source::Tarball(tarball));
            }
            let how = if *flavour == Flavour::Debian {
                "building it with mmdebstrap from Debian's archive, about a minute"
            } else {
                "downloading it"
            };
            println!(
                "harness: no cached {name} rootfs for {arch}: {how}, then caching it as {}",
                tarball.display()
            );
            let start = std::time::Instant::now();
            build_tarball(engine, &name, arch, rootfs_dir, &tarball)?;
            println!(
                "harness: cached the {name} rootfs in {} ({:.0} s)",
                tarball.display(),
                start.elapsed().as_secs_f64()
            );
            Ok(Source::Tarball(tarball))
        }
        Flavour::Path(path) if path.is_dir() => {
            let tarball = rootfs_dir.join(format!("path-{}.tar", flavour.name()));
            pack(path, &tarball)?;
            Ok(Source::Tarball(tarball))
        }
        Flavour::Path(path) => Ok(Source::Tarball(path.clone())),
    }
}

/// `engine rootfs pull NAME DIR --arch ARCH`, then DIR packed into `tarball`.
fn build_tarball(engine: &Path, name: &str, arch: &str, dir: &Path, tarball: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tree = dir.join(format!(".{name}-{arch}.tree"));
    if tree.exists() {
        std::fs::remove_dir_all(&tree)
            .with_context(|| format!("cannot remove the stale {}", tree.display()))?;
    }
    let mut cmd = Command::new(engine);
    cmd.args(["rootfs", "pull", name])
        .arg(&tree)
        .args(["--arch", arch]);
    let out = process::run(&mut cmd, BUILD_TIMEOUT)?;
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&tree);
        let hint = if name == "debian" && arch != crate::plan::host_arch() {
            " (for another architecture mmdebstrap needs qemu-user-static and binfmt_misc \
             handlers: apt-get install qemu-user-static binfmt-support; or run only busybox: \
             HARNESS_ROOTFS=busybox)"
        } else if name == "debian" {
            " (it needs mmdebstrap and Debian's package archive: apt-get install mmdebstrap; \
             or run only busybox: HARNESS_ROOTFS=busybox)"
        } else {
            " (it needs the internet; or run only the offline flavours: HARNESS_ROOTFS=busybox,debian)"
        };
        bail!("cannot build the {name} rootfs for {arch}{hint}\n{out}");
    }
    let packed = pack(&tree, tarball);
    let _ = std::fs::remove_dir_all(&tree);
    packed
}

/// Packs directory `tree` into `tarball` (atomically: a temporary, renamed).
fn pack(tree: &Path, tarball: &Path) -> Result<()> {
    if let Some(parent) = tarball.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let tmp = tarball.with_extension("tar.partial");
    let mut cmd = Command::new("tar");
    cmd.arg("--numeric-owner")
        .arg("-C")
        .arg(tree)
        .arg("-cf")
        .arg(&tmp)
        .arg(".");
    let out = process::run(&mut cmd, BUILD_TIMEOUT)?;
    if !out.status.success() {
        let _ = std::fs::remove_file(&tmp);
        bail!("cannot pack {} into a tarball\n{out}", tree.display());
    }
    std::fs::rename(&tmp, tarball)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), tarball.display()))
}

/// A flavour unpacked where the scenarios run.
pub struct Fixture {
    pub name: String,
    pub source: Source,
    /// The root-owned rootfs.
    pub rootfs: PathBuf,
    engine: PathBuf,
    dir: PathBuf,
    owner: Mutex<Option<std::result::Result<PathBuf, String>>>,
}

impl Fixture {
    /// A fixture that will live in `dir/NAME`.
    pub fn new(name: &str, source: Source, engine: &Path, dir: &Path) -> Fixture {
        Fixture {
            name: name.to_string(),
            source,
            rootfs: dir.join(name),
            engine: engine.to_path_buf(),
            dir: dir.to_path_buf(),
            owner: Mutex::new(None),
        }
    }

    /// Unpacks (or builds) the root-owned rootfs and checks that it holds
    /// a shell.
    pub fn prepare(&self) -> Result<()> {
        self.pull(&self.rootfs, None)?;
        let sh = self.rootfs.join("bin/sh");
        if std::fs::symlink_metadata(&sh).is_err() {
            bail!(
                "the {} rootfs at {} has no /bin/sh; the scenarios need a shell",
                self.name,
                self.rootfs.display()
            );
        }
        Ok(())
    }

    /// A second copy whose files belong to uid/gid [`OWNER_BASE`] and up
    /// (`engine rootfs pull --owner`), made on first use.
    pub fn owner_rootfs(&self) -> Result<PathBuf> {
        let mut slot = self.owner.lock().unwrap();
        if slot.is_none() {
            let dest = self.dir.join(format!("{}-owner{OWNER_BASE}", self.name));
            *slot = Some(
                self.pull(&dest, Some(OWNER_BASE))
                    .map(|()| dest)
                    .map_err(|e| format!("{e:#}")),
            );
        }
        match slot.as_ref().unwrap() {
            Ok(path) => Ok(path.clone()),
            Err(e) => bail!("{e}"),
        }
    }

    fn pull(&self, dest: &Path, owner: Option<u32>) -> Result<()> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create {}", self.dir.display()))?;
        if dest.exists() {
            std::fs::remove_dir_all(dest)
                .with_context(|| format!("cannot remove the old {}", dest.display()))?;
        }
        let source = match &self.source {
            Source::Busybox => "busybox".to_string(),
            Source::Tarball(path) => {
                if !path.is_file() {
                    bail!(
                        "the {} tarball {} does not exist",
                        self.name,
                        path.display()
                    );
                }
                format!("file://{}", path.display())
            }
        };
        let mut cmd = Command::new(&self.engine);
        cmd.args(["rootfs", "pull", &source]).arg(dest);
        if let Some(base) = owner {
            cmd.args(["--owner", &base.to_string()]);
        }
        let out = process::run(&mut cmd, UNPACK_TIMEOUT)?;
        if !out.status.success() {
            bail!(
                "cannot prepare the {} rootfs in {}{}\n{out}",
                self.name,
                dest.display(),
                owner.map(|b| format!(" owned by {b}")).unwrap_or_default()
            );
        }
        Ok(())
    }
}

impl std::fmt::Debug for Fixture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} at {}",
            self.name,
            shell_quote(&self.rootfs.to_string_lossy())
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_round_trip() {
        let sources = parse_sources("busybox,debian=/t/rootfs/debian-amd64.tar").unwrap();
        assert_eq!(
            sources,
            vec![
                ("busybox".to_string(), Source::Busybox),
                (
                    "debian".to_string(),
                    Source::Tarball("/t/rootfs/debian-amd64.tar".into())
                )
            ]
        );
        assert_eq!(
            format_sources(&sources),
            "busybox,debian=/t/rootfs/debian-amd64.tar"
        );
        let err = parse_sources("debian").unwrap_err().to_string();
        assert!(err.contains("needs a tarball"), "{err}");
        assert!(parse_sources("").is_err());
    }
}
