//! The guest kernel: the distribution's own kernel package, fetched with
//! `apt-get download` and unpacked with `dpkg-deb -x` (no install, no root
//! needed), or one found in a foreign-architecture root, or one given by path.

use crate::cache::{self, Lock, RemoveOnDrop};
use crate::Arch;
use anyhow::{anyhow, bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// How long one tool may run: apt-get on a slow mirror, or mmdebstrap
/// (10-60 s here), take their time, but not forever.
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(900);

/// A kernel image and its modules.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// What QEMU's `-kernel` gets.
    pub image: PathBuf,
    /// The release, e.g. `6.1.0-56-amd64`.
    pub version: String,
    /// `lib/modules/<version>`, when there is one.
    pub modules: Option<PathBuf>,
}

/// Runs a tool (within [`TOOL_TIMEOUT`]) and returns its stdout; a missing
/// tool or a failure becomes a one-line error naming the tool and the
/// package that provides it.
pub fn output(cmd: &mut Command, package: &str) -> Result<String> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let out = testkit::wait::output(cmd, TOOL_TIMEOUT).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => anyhow!("{program} not found: apt-get install {package}"),
        _ => anyhow!("run {program}: {e}"),
    })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty() && !l.starts_with("W:"))
            .unwrap_or("");
        bail!("{program} failed ({}): {}", out.status, last.trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The kernel in an unpacked tree (a package or a root): `boot/vmlinuz-*`
/// and `lib/modules/<version>` (or `usr/lib/modules`, on merged-/usr).
pub fn from_tree(dir: &Path) -> Result<Kernel> {
    let boot = dir.join("boot");
    let mut images: Vec<_> = std::fs::read_dir(&boot)
        .with_context(|| format!("read {}", boot.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            let version = name.strip_prefix("vmlinuz-")?.to_string();
            Some((version, e.path()))
        })
        .collect();
    images.sort();
    let Some((version, vmlinuz)) = images.pop() else {
        bail!("no boot/vmlinuz-* in {}", dir.display());
    };
    let modules = ["lib/modules", "usr/lib/modules"]
        .iter()
        .map(|m| dir.join(m).join(&version))
        .find(|m| m.is_dir());
    // An uncompressed copy made next to it boots faster (see `pvh`).
    let pvh = boot.join(format!("vmlinux-{version}.pvh"));
    let image = if pvh.is_file() { pvh } else { vmlinuz };
    Ok(Kernel {
        image,
        version,
        modules,
    })
}

/// A kernel given by path. Its modules are looked for where a package would
/// have put them: `../lib/modules/<version>` next to `boot/`, or the host's
/// `/lib/modules/<version>`; without them, the kernel must have virtio, 9p
/// and virtio-console built in.
pub fn from_path(path: &Path) -> Result<Kernel> {
    if !path.is_file() {
        bail!("kernel {} does not exist", path.display());
    }
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let version = name
        .strip_prefix("vmlinuz-")
        .or_else(|| name.strip_prefix("vmlinux-"))
        .unwrap_or("")
        .trim_end_matches(".pvh")
        .to_string();
    let mut candidates = Vec::new();
    if let Some(tree) = path.parent().and_then(Path::parent) {
        candidates.push(tree.join("lib/modules").join(&version));
        candidates.push(tree.join("usr/lib/modules").join(&version));
    }
    candidates.push(Path::new("/lib/modules").join(&version));
    let modules = if version.is_empty() {
        None
    } else {
        candidates.into_iter().find(|m| m.is_dir())
    };
    Ok(Kernel {
        image: path.to_path_buf(),
        version,
        modules,
    })
}

/// The kernel packages the metapackage depends on, following
/// `linux-image-*` and `linux-modules-*` dependencies; `depends` runs
/// `apt-cache depends --important` on one package.
fn resolve(meta: &str, depends: impl Fn(&str) -> Result<String>) -> Result<Vec<String>> {
    let mut found: Vec<String> = Vec::new();
    let mut todo = vec![meta.to_string()];
    while let Some(pkg) = todo.pop() {
        let out = depends(&pkg).with_context(|| {
            format!(
                "no kernel package {pkg} known to apt: run apt-get update, or pass --kernel PATH"
            )
        })?;
        for line in out.lines() {
            let line = line.trim().trim_start_matches('|');
            let Some(dep) = line.strip_prefix("Depends:").map(str::trim) else {
                continue;
            };
            let kernelish = dep.starts_with("linux-image-") || dep.starts_with("linux-modules-");
            if kernelish && !dep.starts_with('<') && !found.iter().any(|f| f == dep) {
                found.push(dep.to_string());
                todo.push(dep.to_string());
            }
        }
        if found.len() > 8 {
            bail!("kernel package {meta} has an unexpected dependency tree: {found:?}");
        }
    }
    if found.is_empty() {
        // Already a versioned package.
        found.push(meta.to_string());
    }
    Ok(found)
}

/// The kernel package `meta` (and the image and modules packages it depends
/// on) as the host's own apt knows it (`VM_KERNEL_PACKAGE`), for the host's
/// architecture, cached under `<target>/vm/kernel/<package>/`.
pub fn from_package(arch: Arch, meta: &str) -> Result<Kernel> {
    let root = cache::vm_dir()?.join("kernel");
    let resolved = resolve_cached(&root, Path::new("/var/lib/apt/lists"), meta, |pkg| {
        output(
            Command::new("apt-cache").args(["depends", "--important", pkg]),
            "apt",
        )
    });
    let packages = match resolved {
        Ok(p) => p,
        // Offline or without apt lists: any kernel fetched before will do.
        Err(e) => return newest_cached(&root, "").ok_or(e),
    };
    if root.join(&packages[0]).is_dir() {
        return from_tree(&root.join(&packages[0]));
    }
    let _lock = Lock::take("kernel")?;
    unpack_packages(&root, &packages, arch, |tmp| {
        let mut cmd = Command::new("apt-get");
        cmd.current_dir(tmp)
            .args(["download", "-q", "-o", "APT::Sandbox::User=root"]);
        cmd
    })
}

/// Where the guest kernel comes from by default: Debian's backports, whose
/// kernel (6.12) can idmap tmpfs (Linux >= 6.3), which the confinement
/// tests need; bookworm's own 6.1 cannot.
pub const BACKPORTS: &str = "bookworm-backports";

/// The key that signs Debian's archive; apt checks the backports lists with it.
const DEBIAN_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// A private apt setup for `deb MIRROR bookworm-backports main` and one
/// architecture, under `<target>/vm/apt/<arch>-backports/`: its own sources,
/// lists and cache, so the host's apt configuration is neither read nor
/// changed (the host need not be Debian, nor of that architecture).
struct PrivateApt {
    dir: PathBuf,
    arch: Arch,
    line: String,
}

impl PrivateApt {
    fn new(arch: Arch) -> Result<PrivateApt> {
        let dir = cache::vm_dir()?
            .join("apt")
            .join(format!("{}-{BACKPORTS}", arch.debian()));
        let line = format!(
            "deb [arch={} signed-by={DEBIAN_KEYRING}] {} {BACKPORTS} main",
            arch.debian(),
            crate::root::mirror()
        );
        for sub in ["lists/partial", "cache/archives/partial", "sources.list.d"] {
            let d = dir.join(sub);
            std::fs::create_dir_all(&d).with_context(|| format!("create {}", d.display()))?;
        }
        let sources = dir.join("sources.list");
        if std::fs::read_to_string(&sources).ok().as_deref() != Some(&format!("{line}\n")) {
            cache::write_atomic(&sources, format!("{line}\n").as_bytes())?;
        }
        Ok(PrivateApt { dir, arch, line })
    }

    /// An apt command that reads and writes only this setup.
    fn command(&self, program: &str) -> Command {
        let d = |sub: &str| self.dir.join(sub).display().to_string();
        let mut cmd = Command::new(program);
        for (key, value) in [
            ("Dir::Etc::SourceList", d("sources.list")),
            ("Dir::Etc::SourceParts", d("sources.list.d")),
            ("Dir::State::Lists", d("lists")),
            ("Dir::Cache", d("cache")),
            ("Dir::State::status", "/dev/null".into()),
            ("APT::Architecture", self.arch.debian().into()),
            ("APT::Architectures", self.arch.debian().into()),
            ("APT::Sandbox::User", "root".into()),
            ("Acquire::Languages", "none".into()),
        ] {
            cmd.arg("-o").arg(format!("{key}={value}"));
        }
        cmd
    }

    /// Whether `apt-get update` has filled the lists.
    fn has_lists(&self) -> bool {
        std::fs::read_dir(self.dir.join("lists")).is_ok_and(|entries| {
            entries
                .filter_map(|e| e.ok())
                // Kept compressed (`_Packages.lz4`, `.gz`) where apt.conf.d says so.
                .any(|e| e.file_name().to_string_lossy().contains("_Packages"))
        })
    }

    fn update(&self) -> Result<()> {
        if !Path::new(DEBIAN_KEYRING).is_file() {
            bail!("{DEBIAN_KEYRING} is missing: apt-get install debian-archive-keyring");
        }
        output(self.command("apt-get").args(["update", "-q"]), "apt")
            .with_context(|| format!("apt-get update for {:?}", self.line))?;
        // Offline, apt-get update only warns: no lists is the failure.
        if !self.has_lists() {
            bail!(
                "apt-get update fetched no package lists for {:?}",
                self.line
            );
        }
        Ok(())
    }
}

/// Debian's backports kernel for `arch` (amd64 or arm64, on any host),
/// cached under `<target>/vm/kernel/<package>/`. The lists are fetched once,
/// and again only when a download fails (the archive moved on). When
/// nothing can be fetched, a backports kernel fetched before will do;
/// without one, the error says what to do.
pub fn from_backports(arch: Arch) -> Result<Kernel> {
    let root = cache::vm_dir()?.join("kernel");
    fetch_backports(arch, &root).or_else(|e| {
        newest_cached(&root, &format!("+deb12-{}", arch.debian())).ok_or_else(|| {
            e.context(format!(
                "cannot fetch the guest kernel linux-image-{} from Debian's {BACKPORTS} \
                 (the guest needs Linux >= 6.3, for idmapped tmpfs): check the network \
                 or VM_DEBIAN_MIRROR, or pass --kernel PATH",
                arch.debian()
            ))
        })
    })
}

fn fetch_backports(arch: Arch, root: &Path) -> Result<Kernel> {
    let _lock = Lock::take(&format!("kernel-{}", arch.debian()))?;
    let apt = PrivateApt::new(arch)?;
    if !apt.has_lists() {
        apt.update()?;
    }
    let newest = || -> Result<Kernel> {
        let meta = format!("linux-image-{}", arch.debian());
        let packages = resolve_cached(root, &apt.dir.join("lists"), &meta, |pkg| {
            output(
                apt.command("apt-cache")
                    .args(["depends", "--important", pkg]),
                "apt",
            )
        })?;
        unpack_packages(root, &packages, arch, |tmp| {
            let mut cmd = apt.command("apt-get");
            cmd.current_dir(tmp).args(["download", "-q"]);
            cmd
        })
    };
    newest().or_else(|_| {
        // Stale lists name packages the archive no longer has.
        apt.update()?;
        newest()
    })
}

/// The kernel of `packages` (the first one names it), downloaded with
/// `download` (run in a scratch directory) and unpacked under `root`,
/// unless it is there already.
fn unpack_packages(
    root: &Path,
    packages: &[String],
    arch: Arch,
    download: impl Fn(&Path) -> Command,
) -> Result<Kernel> {
    let dir = root.join(&packages[0]);
    if dir.is_dir() {
        return from_tree(&dir);
    }
    let tmp = root.join(format!("{}.tmp{}", packages[0], std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let cleanup = RemoveOnDrop(Some(tmp.clone()));
    let tree = tmp.join("tree");
    std::fs::create_dir_all(&tree).with_context(|| format!("create {}", tree.display()))?;
    output(download(&tmp).args(packages), "apt")
        .with_context(|| format!("download the kernel packages {}", packages.join(" ")))?;
    for entry in std::fs::read_dir(&tmp)? {
        let deb = entry?.path();
        if deb.extension().is_some_and(|e| e == "deb") {
            output(
                Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tree),
                "dpkg",
            )?;
        }
    }
    if arch == Arch::Amd64 {
        let kernel = from_tree(&tree)?;
        pvh(&kernel.image, &kernel.version)?;
    }
    std::fs::rename(&tree, &dir).with_context(|| format!("rename to {}", dir.display()))?;
    drop(cleanup);
    from_tree(&dir)
}

/// `resolve`, remembered until apt's package lists change: apt-cache takes
/// most of a second, a good part of a boot under KVM.
fn resolve_cached(
    root: &Path,
    lists: &Path,
    meta: &str,
    depends: impl Fn(&str) -> Result<String>,
) -> Result<Vec<String>> {
    use std::os::unix::fs::MetadataExt;
    // Named for the apt setup too: the host's and a private one differ.
    let setup = lists
        .parent()
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let memo = root.join(format!("{meta}.{setup}.resolved"));
    let lists = std::fs::metadata(lists)
        .map(|m| format!("{}.{}", m.mtime(), m.mtime_nsec()))
        .unwrap_or_default();
    if let Ok(text) = std::fs::read_to_string(&memo) {
        let mut lines = text.lines();
        if lines.next() == Some(lists.as_str()) {
            let packages: Vec<String> = lines.map(String::from).collect();
            if !packages.is_empty() {
                return Ok(packages);
            }
        }
    }
    let packages = resolve(meta, depends)?;
    std::fs::create_dir_all(root).with_context(|| format!("create {}", root.display()))?;
    let text = format!("{lists}\n{}\n", packages.join("\n"));
    cache::write_atomic(&memo, text.as_bytes())?;
    Ok(packages)
}

/// The newest kernel unpacked under `root` whose name holds `with`.
fn newest_cached(root: &Path, with: &str) -> Option<Kernel> {
    let mut dirs: Vec<_> = std::fs::read_dir(root)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            e.path().is_dir() && !name.contains(".tmp") && name.contains(with)
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    dirs.sort();
    from_tree(&dirs.pop()?.1).ok()
}

/// Makes `boot/vmlinux-<version>.pvh`: the x86 kernel decompressed. QEMU boots
/// such an ELF kernel straight into 64-bit code through its PVH entry point,
/// which under TCG saves the 1-3 s the bzImage spends decompressing itself.
/// Kernels without a PVH entry are left as they are.
pub fn pvh(vmlinuz: &Path, version: &str) -> Result<()> {
    let data = std::fs::read(vmlinuz).with_context(|| format!("read {}", vmlinuz.display()))?;
    let Some(elf) = bzimage_payload(&data).and_then(|(tool, payload)| decompress(tool, payload))
    else {
        return Ok(());
    };
    if elf.starts_with(b"\x7fELF") && has_pvh_note(&elf) {
        let out = vmlinuz.with_file_name(format!("vmlinux-{version}.pvh"));
        cache::write_atomic(&out, &elf)?;
    }
    Ok(())
}

/// The compressed kernel inside a bzImage (setup header fields
/// `setup_sects`, `payload_offset`, `payload_length`) and the tool that
/// decompresses it.
fn bzimage_payload(data: &[u8]) -> Option<(&'static str, &[u8])> {
    if data.get(0x202..0x206) != Some(b"HdrS") {
        return None;
    }
    let setup_sects = match *data.get(0x1f1)? {
        0 => 4,
        n => usize::from(n),
    };
    let word = |at: usize| -> Option<usize> {
        let b: [u8; 4] = data.get(at..at + 4)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(b)).ok()
    };
    let start = (setup_sects + 1) * 512 + word(0x248)?;
    let payload = data.get(start..start.checked_add(word(0x24c)?)?)?;
    let tool = if payload.starts_with(b"\xfd7zXZ\0") {
        "xz"
    } else if payload.starts_with(b"\x28\xb5\x2f\xfd") {
        "zstd"
    } else if payload.starts_with(b"\x1f\x8b") {
        "gzip"
    } else {
        return None;
    };
    Some((tool, payload))
}

/// Decompresses with the tool. The kernel's build appends the size after the
/// stream, which the tools may call trailing garbage: the output is what
/// counts, and it is checked by the caller.
fn decompress(tool: &str, data: &[u8]) -> Option<Vec<u8>> {
    use std::io::Write;
    let mut args = vec!["-dc"];
    if tool == "xz" {
        args.push("--single-stream");
    }
    let mut child = Command::new(tool)
        .args(&args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let mut stdin = child.stdin.take()?;
    let data = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = testkit::wait::output_of(child, Duration::from_secs(60)).ok()?;
    let _ = writer.join();
    Some(out.stdout)
}

/// Whether the ELF has a Xen ELF note of type XEN_ELFNOTE_PHYS32_ENTRY (18),
/// the PVH entry point QEMU looks for: namesz 4, descsz, type, "Xen\0".
fn has_pvh_note(elf: &[u8]) -> bool {
    elf.windows(16)
        .any(|w| w[..4] == [4, 0, 0, 0] && w[8..12] == [18, 0, 0, 0] && &w[12..16] == b"Xen\0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_payload_of_a_bzimage() {
        let mut img = vec![0u8; 4096];
        img[0x1f1] = 2; // setup sectors: payload area starts at 3 * 512
        img[0x202..0x206].copy_from_slice(b"HdrS");
        img[0x248..0x24c].copy_from_slice(&100u32.to_le_bytes());
        img[0x24c..0x250].copy_from_slice(&8u32.to_le_bytes());
        img[1636..1644].copy_from_slice(b"\xfd7zXZ\0ab");
        let (tool, payload) = bzimage_payload(&img).unwrap();
        assert_eq!((tool, payload), ("xz", &b"\xfd7zXZ\0ab"[..]));
        img[0x24c..0x250].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(bzimage_payload(&img).is_none(), "out of bounds is refused");
        assert!(bzimage_payload(b"MZ").is_none());
    }

    #[test]
    fn recognizes_the_pvh_note() {
        let mut elf = vec![0u8; 64];
        assert!(!has_pvh_note(&elf));
        elf[20..36].copy_from_slice(b"\x04\0\0\0\x08\0\0\0\x12\0\0\0Xen\0");
        assert!(has_pvh_note(&elf));
    }

    #[test]
    fn a_kernel_path_without_modules_is_accepted() {
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path().to_path_buf();
        std::fs::create_dir_all(dir.join("boot")).unwrap();
        std::fs::create_dir_all(dir.join("lib/modules/9.9-test")).unwrap();
        let image = dir.join("boot/vmlinuz-9.9-test");
        std::fs::write(&image, b"kernel").unwrap();
        let k = from_path(&image).unwrap();
        assert_eq!(k.version, "9.9-test");
        assert_eq!(k.modules, Some(dir.join("lib/modules/9.9-test")));
        let t = from_tree(&dir).unwrap();
        assert_eq!(t.image, image);
        assert!(from_path(&dir.join("nope")).is_err());
    }
}
