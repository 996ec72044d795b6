//! A busybox root filesystem built from the host's busybox-static, the same
//! layout as `engine rootfs pull busybox` makes, in a place a container whose
//! root is mapped to an unprivileged host uid can traverse.

use std::fs;
use std::io;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

// The engine's rootfs skeleton, by path: testkit must not depend on the
// engine (the vm crate depends on testkit).
#[path = "../../engine/src/image/busybox_skeleton.rs"]
mod skeleton;

/// Where fixtures go: `ENGINE_TEST_TMPDIR` when set (in a VM guest the
/// checkout is 9p, which overlayfs refuses as a lower layer: point it at a
/// tmpfs), else the system temp dir. Never under the checkout, whose parents
/// may be mode 0700.
pub fn scratch_root() -> PathBuf {
    std::env::var_os("ENGINE_TEST_TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
}

/// Fails naming the first directory on `path`'s way from `/` that others
/// (a container root mapped to an unprivileged uid) cannot search.
pub fn check_traversable(path: &Path) -> io::Result<()> {
    for dir in path.ancestors().skip(1) {
        let mode = fs::metadata(dir)?.permissions().mode();
        if mode & 0o001 == 0 {
            return Err(io::Error::other(format!(
                "{} is mode {:o}: a container root mapped to an unprivileged uid cannot reach {} through it; chmod o+x it or set ENGINE_TEST_TMPDIR",
                dir.display(),
                mode & 0o7777,
                path.display()
            )));
        }
    }
    Ok(())
}

/// The host's busybox, which must be static to run in any rootfs.
pub fn host_busybox() -> io::Result<PathBuf> {
    let path = Path::new("/bin/busybox");
    let bytes = fs::read(path).map_err(|e| {
        io::Error::other(format!(
            "{}: {e}: install it with `apt-get install busybox-static`",
            path.display()
        ))
    })?;
    if has_interpreter(&bytes) {
        return Err(io::Error::other(format!(
            "{} is dynamically linked: install `busybox-static` instead of `busybox`",
            path.display()
        )));
    }
    Ok(path.to_path_buf())
}

/// Whether a 64-bit little-endian ELF has a PT_INTERP program header (a
/// dynamic loader); anything else counts as static.
fn has_interpreter(elf: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    let u16_at = |o: usize| {
        elf.get(o..o + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
    };
    let u64_at = |o: usize| {
        elf.get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()) as usize)
    };
    if !elf.starts_with(b"\x7fELF\x02\x01") {
        return false;
    }
    let (Some(phoff), Some(size), Some(count)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38)) else {
        return false;
    };
    (0..count).any(|i| {
        elf.get(phoff + i * size..phoff + i * size + 4)
            .is_some_and(|t| u32::from_le_bytes(t.try_into().unwrap()) == PT_INTERP)
    })
}

/// Builds a busybox rootfs at `dest` (which must not exist, or be empty):
/// bin/busybox and every applet as a relative symlink where `busybox
/// --list-full` puts it, the usual directories, etc/passwd, group, hosts,
/// os-release.
pub fn build(dest: &Path) -> io::Result<()> {
    let busybox = host_busybox()?;
    let ctx = |what: &str, p: &Path| {
        let what = what.to_string();
        let p = p.display().to_string();
        move |e: io::Error| io::Error::new(e.kind(), format!("cannot {what} {p}: {e}"))
    };
    fs::create_dir_all(dest).map_err(ctx("create", dest))?;
    for (dir, mode) in std::iter::once(("", 0o755)).chain(skeleton::DIRS) {
        let path = dest.join(dir);
        fs::create_dir_all(&path).map_err(ctx("create", &path))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))
            .map_err(ctx("chmod", &path))?;
    }
    let target = dest.join("bin/busybox");
    fs::copy(&busybox, &target).map_err(ctx("copy busybox to", &target))?;
    fs::set_permissions(&target, fs::Permissions::from_mode(0o755))
        .map_err(ctx("chmod", &target))?;
    let list = crate::wait::output(
        Command::new(&busybox).arg("--list-full"),
        Duration::from_secs(20),
    )
    .map_err(ctx("run", &busybox))?;
    for line in String::from_utf8_lossy(&list.stdout).lines() {
        let rel = Path::new(line.trim().trim_start_matches('/'));
        let Some(dir) = rel.parent().filter(|d| !d.as_os_str().is_empty()) else {
            continue;
        };
        let link = dest.join(rel);
        if fs::symlink_metadata(&link).is_ok() {
            continue; // bin/busybox itself
        }
        fs::create_dir_all(dest.join(dir)).map_err(ctx("create", &dest.join(dir)))?;
        let up: PathBuf = dir.components().map(|_| "..").collect();
        symlink(up.join("bin/busybox"), &link).map_err(ctx("link", &link))?;
    }
    for (file, text) in skeleton::etc_files("testkit") {
        let path = dest.join(file);
        fs::write(&path, text).map_err(ctx("write", &path))?;
    }
    Ok(())
}

/// The shared busybox rootfs of this test process, built on first use under
/// [`scratch_root`] (as `testkit-busybox-PID-*`; those of dead processes are
/// removed). Containers must not write into it: run them on an overlay, or
/// copy it with [`copy_to`] first. Panics with what to install on failure.
pub fn rootfs() -> &'static Path {
    static ROOTFS: OnceLock<PathBuf> = OnceLock::new();
    ROOTFS.get_or_init(|| {
        let root = scratch_root();
        remove_stale(&root);
        let dir = tempfile::Builder::new()
            .prefix(&format!("testkit-busybox-{}-", std::process::id()))
            .tempdir_in(&root)
            .unwrap_or_else(|e| panic!("cannot make a directory in {}: {e}", root.display()))
            .keep();
        crate::at_exit::remove_dir_at_exit(&dir);
        build(&dir).unwrap_or_else(|e| panic!("busybox fixture: {e}"));
        check_traversable(&dir).unwrap_or_else(|e| panic!("busybox fixture: {e}"));
        dir
    })
}

/// `cp -a` of the shared rootfs to `dest` (for tests that write into a rootfs).
pub fn copy_to(dest: &Path) {
    let status = crate::wait::output(
        Command::new("cp").arg("-a").arg(rootfs()).arg(dest),
        Duration::from_secs(60),
    )
    .expect("run cp")
    .status;
    assert!(
        status.success(),
        "cp -a {} {}",
        rootfs().display(),
        dest.display()
    );
}

fn remove_stale(root: &Path) {
    let Ok(entries) = fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("testkit-busybox-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_dynamic_binary_has_an_interpreter_and_busybox_static_none() {
        assert!(super::has_interpreter(&std::fs::read("/bin/ls").unwrap()));
        assert!(!super::has_interpreter(
            &std::fs::read("/bin/busybox").unwrap()
        ));
    }
}
