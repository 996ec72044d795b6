//! The `debian` flavour: mmdebstrap from Debian's package archive, its tar
//! stream unpacked as it comes.

use super::staging::{check_interrupted, Interruptible};
use super::unpack::unpack_tar;
use super::PullOptions;
use anyhow::{anyhow, Context, Result};
use std::fs;
use std::io::{self, IsTerminal, Read};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A release other than the host's (bookworm), to show a distro of its own.
const DEBIAN_SUITE: &str = "trixie";
const DEBIAN_PACKAGES: &str = "bash,procps,iproute2,iputils-ping,coreutils";
const DEFAULT_DEBIAN_MIRROR: &str = "http://deb.debian.org/debian";

pub(super) fn find_mmdebstrap() -> Result<PathBuf> {
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
pub(super) fn build(
    mmdebstrap: &Path,
    root: &Path,
    arch: &str,
    opts: &PullOptions,
) -> Result<(), super::Error> {
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
        return Err(anyhow!("mmdebstrap failed ({status}) building the {arch} debian rootfs from {mirror}; its output is above").into());
    }
    Ok(unpacked.context("cannot unpack the debian rootfs made by mmdebstrap")?)
}

/// Waits for the child, first asking its process group to stop (SIGTERM, so
/// mmdebstrap cleans its own temporary root) when we gave up reading from it.
fn finish_child(child: &mut Child, stop: bool) -> Result<std::process::ExitStatus> {
    if stop {
        if let Some(pid) = i32::try_from(child.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::TERM);
        }
    }
    loop {
        match child.wait() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other.context("cannot wait for mmdebstrap"),
        }
    }
}
