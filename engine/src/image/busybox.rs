//! The `busybox` flavour: built offline from the host's static busybox binary.

use super::busybox_skeleton as skeleton;
use super::unpack::inside_path;
use crate::sys::arch::{arch_machine, host_arch, machine_arch, read_elf};
use anyhow::{anyhow, bail, Context, Result};
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

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

pub(super) fn find(arch: &'static str) -> Result<PathBuf> {
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

pub(super) fn build(root: &Path, busybox: &Path, arch: &str) -> Result<()> {
    for (dir, mode) in skeleton::DIRS {
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
    if arch == host_arch() && add_host_ping(root)? {
        let profile = root.join(SHELL_STARTUP.trim_start_matches('/'));
        fs::write(&profile, PING_FUNCTION)
            .with_context(|| format!("cannot write {}", profile.display()))?;
    }
    for (file, text) in skeleton::etc_files(&format!("{arch}, engine catalog")) {
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

/// The shell start-up file of the catalog busybox: ash reads it as a login
/// shell, and every interactive shell reads it too, because the engine
/// sets `ENV` to it for a container of the catalog busybox.
pub const SHELL_STARTUP: &str = "/etc/profile";

/// busybox's shell runs its own applet for a bare `ping`, never PATH's
/// (it is built with FEATURE_SH_STANDALONE), and the applet needs NET_RAW;
/// a function comes before an applet. A non-interactive shell (`sh -c`)
/// reads no start-up file and runs the applet.
const PING_FUNCTION: &str = "# Bare `ping` runs iputils' /bin/ping, which needs no NET_RAW,\n\
     # instead of busybox's applet, which does.\n\
     ping() { /bin/ping \"$@\"; }\n";

/// Where the host's iputils ping is looked for (Debian's iputils-ping).
const HOST_PING: &[&str] = &["/usr/bin/ping", "/bin/ping"];

/// Puts the host's iputils ping, with the libraries it loads, in place of
/// busybox's ping applet. busybox's ping opens raw sockets only, which need
/// NET_RAW, a capability containers do not get; iputils' ping falls back to
/// an ICMP datagram socket, which the kernel allows to the groups of
/// `net.ipv4.ping_group_range` (the engine sets it in each container's
/// network namespace). The copy has no file capability (none is copied).
/// Without a host ping, or one whose libraries `ldd` cannot list, the
/// applet stays. True if the host's ping is in place.
fn add_host_ping(root: &Path) -> Result<bool> {
    let Some(ping) = HOST_PING
        .iter()
        .map(Path::new)
        .find(|p| read_elf(p, true).ok().flatten().is_some())
    else {
        return Ok(false);
    };
    let Some(libs) = shared_libraries(ping) else {
        return Ok(false);
    };
    if libs.iter().any(|lib| inside_path(lib).is_none()) {
        return Ok(false);
    }
    for lib in &libs {
        let Some(rel) = inside_path(lib) else {
            return Ok(false);
        };
        let dest = root.join(rel);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        // The file itself where the host has a link (ld.so under /lib64).
        fs::copy(lib, &dest)
            .with_context(|| format!("cannot copy {} to {}", lib.display(), dest.display()))?;
    }
    let target = root.join("bin/ping");
    if fs::symlink_metadata(&target).is_ok() {
        fs::remove_file(&target).with_context(|| format!("cannot remove {}", target.display()))?;
    }
    fs::copy(ping, &target)
        .with_context(|| format!("cannot copy {} to {}", ping.display(), target.display()))?;
    fs::set_permissions(&target, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("cannot chmod {}", target.display()))?;
    Ok(true)
}

/// The absolute paths of the shared libraries `binary` loads, its loader
/// included, from `ldd`; None if ldd fails or cannot find one.
fn shared_libraries(binary: &Path) -> Option<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(binary)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut libs = Vec::new();
    for line in text.lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)", or the
        // loader "/lib64/ld-linux-x86-64.so.2 (0x...)", or the vdso.
        let line = line.trim();
        let path = match line.split_once(" => ") {
            Some((_, rest)) => rest.split_whitespace().next()?,
            None => line.split_whitespace().next()?,
        };
        if path.starts_with('/') {
            libs.push(PathBuf::from(path));
        } else if !line.starts_with("linux-vdso") && !line.starts_with("linux-gate") {
            return None; // "not found", or a form not known
        }
    }
    Some(libs)
}
