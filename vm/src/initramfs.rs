//! The guest's initramfs: a static busybox, the kernel modules the guest
//! needs (in load order), and the /init script. The base archive depends only
//! on the kernel and busybox, so it is cached; each run appends a small second
//! archive with its own `config.sh` and `run.sh` (the kernel unpacks
//! concatenated archives in turn).

use crate::cache::{self, Lock};
use crate::cpio::Archive;
use crate::kernel::Kernel;
use crate::{elf, modules, Arch};
use anyhow::{bail, Context, Result};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

const INIT: &str = include_str!("init.sh");

/// The cached base archive for `kernel`, built first if needed.
/// `busybox` must be a static busybox for the guest's architecture.
pub fn base(kernel: &Kernel, busybox: &Path, arch: Arch) -> Result<PathBuf> {
    let meta = std::fs::metadata(busybox).map_err(|_| {
        anyhow::anyhow!(
            "busybox not found at {}: apt-get install busybox-static",
            busybox.display()
        )
    })?;
    let modules_dir = kernel.modules.as_deref().unwrap_or(Path::new(""));
    // Whatever changes the archive changes the key; the modules themselves
    // come with the kernel version (and the tree's path and time).
    let key = cache::fnv1a(&[
        env!("CARGO_PKG_VERSION").as_bytes(),
        INIT.as_bytes(),
        modules::WANTED.join(",").as_bytes(),
        kernel.version.as_bytes(),
        modules_dir.as_os_str().as_encoded_bytes(),
        &mtime(modules_dir).to_le_bytes(),
        busybox.as_os_str().as_encoded_bytes(),
        &meta.len().to_le_bytes(),
        &meta.mtime().to_le_bytes(),
    ]);
    let dir = cache::vm_dir()?.join("initramfs");
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let version = if kernel.version.is_empty() {
        "custom"
    } else {
        &kernel.version
    };
    let path = dir.join(format!("{version}-{key:016x}.cpio"));
    if path.is_file() {
        return Ok(path);
    }
    let _lock = Lock::take("initramfs")?;
    if path.is_file() {
        return Ok(path);
    }
    let data = build(kernel, busybox, arch)?;
    cache::write_atomic(&path, &data)?;
    // Archives of this kernel built by older versions of this crate.
    let current = path.file_name().unwrap_or_default().to_os_string();
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let name = entry.file_name();
        let same_kernel = name
            .to_string_lossy()
            .strip_prefix(&format!("{version}-"))
            .and_then(|rest| rest.strip_suffix(".cpio"))
            .is_some_and(|key| key.len() == 16 && key.bytes().all(|b| b.is_ascii_hexdigit()));
        if same_kernel && name != current {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(path)
}

fn mtime(p: &Path) -> i64 {
    std::fs::metadata(p).map(|m| m.mtime()).unwrap_or(0)
}

fn build(kernel: &Kernel, busybox: &Path, arch: Arch) -> Result<Vec<u8>> {
    let bb = std::fs::read(busybox).with_context(|| format!("read {}", busybox.display()))?;
    let info = elf::info(&bb).with_context(|| format!("busybox {}", busybox.display()))?;
    if info.machine != arch.elf_machine() {
        bail!(
            "busybox {} is not for {}: it cannot run in the guest",
            busybox.display(),
            arch.debian()
        );
    }
    if !info.is_static() {
        bail!(
            "busybox {} is dynamically linked: apt-get install busybox-static",
            busybox.display()
        );
    }
    let mut a = Archive::new();
    for d in [
        "bin",
        "dev",
        "proc",
        "sys",
        "mnt",
        "tmp",
        "lib",
        "lib/modules",
    ] {
        a.dir(d);
    }
    a.char_dev("dev/console", 0o600, 5, 1);
    a.char_dev("dev/null", 0o666, 1, 3);
    a.file("bin/busybox", 0o755, &bb);
    a.file("init", 0o755, INIT.as_bytes());

    let (mods, missing) = match &kernel.modules {
        Some(dir) => modules::resolve(dir)?,
        None => (Vec::new(), Vec::new()),
    };
    let mut order = String::new();
    for m in &mods {
        a.file(
            &format!("lib/modules/{}.ko", m.name),
            0o644,
            &modules::read_uncompressed(&m.path)?,
        );
        order += &m.name;
        order.push('\n');
    }
    a.file("lib/modules/order", 0o644, order.as_bytes());
    a.file("lib/modules/missing", 0o644, missing.join(" ").as_bytes());
    Ok(a.finish())
}

/// Writes `out`: the base archive followed by one with this run's files
/// under `/vm/`.
pub fn with_run_files(base: &Path, files: &[(&str, &str)], out: &Path) -> Result<()> {
    std::fs::copy(base, out)
        .with_context(|| format!("copy {} to {}", base.display(), out.display()))?;
    let mut a = Archive::new();
    a.dir("vm");
    for (name, content) in files {
        a.file(&format!("vm/{name}"), 0o755, content.as_bytes());
    }
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(out)
        .and_then(|mut f| f.write_all(&a.finish()))
        .with_context(|| format!("write {}", out.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel_without_modules() -> Kernel {
        Kernel {
            image: PathBuf::from("/nonexistent"),
            version: "test".into(),
            modules: None,
        }
    }

    /// The host's static busybox, or a failure that says what to install.
    fn host_busybox() -> Vec<u8> {
        std::fs::read("/bin/busybox")
            .unwrap_or_else(|e| panic!("/bin/busybox: {e}: apt-get install busybox-static"))
    }

    #[test]
    fn holds_busybox_init_and_the_module_list() {
        let bb = host_busybox();
        let data = build(
            &kernel_without_modules(),
            Path::new("/bin/busybox"),
            Arch::host(),
        )
        .expect("the host's busybox-static fits");
        let has = |needle: &[u8]| data.windows(needle.len()).any(|w| w == needle);
        assert!(has(b"init\0") && has(INIT.as_bytes()));
        assert!(has(b"bin/busybox\0") && has(&bb[..4096]));
        assert!(has(b"lib/modules/order\0") && has(b"dev/console\0"));
        assert_eq!(data.len() % 512, 0);
    }

    #[test]
    fn refuses_a_busybox_that_cannot_run_in_the_guest() {
        host_busybox();
        let other = match Arch::host() {
            Arch::Amd64 => Arch::Arm64,
            Arch::Arm64 => Arch::Amd64,
        };
        let err = build(&kernel_without_modules(), Path::new("/bin/busybox"), other)
            .unwrap_err()
            .to_string();
        assert!(err.contains("is not for"), "{err}");
        // A dynamically linked program: this test binary.
        let me = std::env::current_exe().unwrap();
        assert!(
            !elf::read(&me).unwrap().is_static(),
            "this test needs a dynamically linked test binary (not a static musl build)"
        );
        let err = build(&kernel_without_modules(), &me, Arch::host())
            .unwrap_err()
            .to_string();
        assert!(err.contains("busybox-static"), "{err}");
    }
}
