//! Runs QEMU for one guest and collects what it reports.
//!
//! The guest talks back over virtio-serial ports, each backed by a pipe that
//! QEMU inherits (`path=/dev/fd/N`): the command's stdout and stderr, copied
//! live to ours, and a status port on which /init reports `started`,
//! `exit N` or `error MSG`. The kernel console goes to a log file, whose tail
//! explains a failure. QEMU is killed when the timeout passes, when this
//! process dies (PR_SET_PDEATHSIG) and when the handle is dropped.

use crate::script::Share;
use crate::Arch;
use anyhow::{anyhow, Result};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use wait_timeout::ChildExt;

/// KVM stopped the guest with an internal error before it booted: this
/// host's KVM cannot run a real kernel (run again under TCG).
#[derive(Debug)]
pub struct KvmBroken;

impl std::fmt::Display for KvmBroken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KVM stopped the guest with an internal error: KVM does not work on this host")
    }
}

impl std::error::Error for KvmBroken {}

/// Everything one boot needs.
pub struct Guest<'a> {
    pub arch: Arch,
    pub kvm: bool,
    pub memory: &'a str,
    pub cpus: u32,
    pub kernel: &'a Path,
    pub initrd: &'a Path,
    /// Shared read-only as the guest's root (tag `root`).
    pub root: &'a Path,
    pub shares: &'a [Share],
    pub timeout: Duration,
    /// Where the kernel console and QEMU's own messages are written.
    pub console_log: PathBuf,
    pub qemu_log: PathBuf,
}

/// QEMU's option syntax takes a literal comma as two.
fn escape(p: &Path) -> String {
    p.to_string_lossy().replace(',', ",,")
}

/// A pipe whose ends are closed on exec; the write end is handed to QEMU
/// explicitly in `pre_exec`, so guests started concurrently from other
/// threads never inherit it (which would keep our reader from seeing EOF).
fn pipe() -> Result<(File, OwnedFd)> {
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| anyhow!("create a pipe: {e}"))?;
    Ok((File::from(read), write))
}

fn args(g: &Guest, ports: &[(&str, RawFd)]) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    let mut push = |items: &[&str]| a.extend(items.iter().map(|s| s.to_string()));
    let console = match g.arch {
        Arch::Amd64 => {
            // q35 boots a little faster than pc (no legacy IRQ routing).
            push(&["-M", "q35"]);
            "ttyS0"
        }
        Arch::Arm64 => {
            push(&["-M", "virt,gic-version=max"]);
            "ttyAMA0"
        }
    };
    match (g.kvm, g.arch) {
        (true, _) => push(&["-accel", "kvm", "-cpu", "host"]),
        (false, Arch::Amd64) => push(&["-accel", "tcg", "-cpu", "max"]),
        // Without pauth-impdef, pointer authentication is emulated with
        // the architected QARMA cipher: about 3x slower.
        (false, Arch::Arm64) => push(&["-accel", "tcg", "-cpu", "max,pauth-impdef=on"]),
    }
    push(&[
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
    ]);
    push(&["-m", g.memory, "-smp", &g.cpus.to_string()]);
    push(&["-kernel", &g.kernel.to_string_lossy()]);
    push(&["-initrd", &g.initrd.to_string_lossy()]);
    // panic=-1: a panic reboots at once, and -no-reboot turns that into
    // QEMU's exit; oops=panic: an oops is a failure, not a hang.
    let append = format!("console={console} panic=-1 oops=panic quiet");
    push(&["-append", &append]);
    let con = format!("file,id=con,path={}", escape(&g.console_log));
    push(&["-chardev", &con, "-serial", "chardev:con"]);
    let fs = |tag: &str, path: &Path, ro: bool| {
        let ro = if ro { ",readonly=on" } else { "" };
        format!(
            "local,path={},mount_tag={tag},security_model=none,multidevs=remap{ro}",
            escape(path)
        )
    };
    push(&["-virtfs", &fs("root", g.root, true)]);
    for s in g.shares {
        push(&["-virtfs", &fs(&s.tag, &s.path, !s.writable)]);
    }
    push(&["-device", "virtio-serial-pci"]);
    for (name, fd) in ports {
        let dev = format!("virtserialport,chardev={name},name=vm.{name}");
        push(&["-chardev", &format!("file,id={name},path=/dev/fd/{fd}")]);
        push(&["-device", &dev]);
    }
    push(&["-device", "virtio-rng-pci"]);
    a
}

/// QEMU, killed and reaped when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// Copies a pipe to `out` until EOF; write errors (our stdout closed) do not
/// stop the draining, or the guest would block.
fn forward(mut from: File, mut out: impl Write + Send + 'static) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        let mut ok = true;
        loop {
            match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if ok {
                        ok = out.write_all(&buf[..n]).and_then(|_| out.flush()).is_ok();
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    })
}

/// Boots the guest and returns the command's exit code.
pub fn run(g: &Guest) -> Result<i32> {
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (status_r, status_w) = pipe()?;
    let ports = [
        ("stdout", out_w.as_raw_fd()),
        ("stderr", err_w.as_raw_fd()),
        ("status", status_w.as_raw_fd()),
    ];
    let log =
        File::create(&g.qemu_log).map_err(|e| anyhow!("create {}: {e}", g.qemu_log.display()))?;
    let mut cmd = Command::new(g.arch.qemu());
    cmd.args(args(g, &ports))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let inherit: Vec<RawFd> = ports.iter().map(|p| p.1).collect();
    // SAFETY: between fork and exec the closure makes only async-signal-safe
    // calls (fcntl, prctl), allocates nothing and takes no lock.
    unsafe {
        cmd.pre_exec(move || {
            use nix::fcntl::{fcntl, FcntlArg, FdFlag};
            for &fd in &inherit {
                fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty()))?;
            }
            // QEMU must not outlive us (we might be killed mid-run).
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
            Ok(())
        });
    }
    let start = Instant::now();
    let child = cmd.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => anyhow!(
            "{} not found: apt-get install {}",
            g.arch.qemu(),
            g.arch.qemu_package()
        ),
        _ => anyhow!("start {}: {e}", g.arch.qemu()),
    })?;
    let mut qemu = Running(child);
    // Only QEMU holds the write ends now: its exit means EOF for the readers.
    drop((out_w, err_w, status_w));
    let copy_out = forward(out_r, std::io::stdout());
    let copy_err = forward(err_r, std::io::stderr());
    let status = std::thread::spawn(move || {
        let mut s = String::new();
        let mut r = status_r;
        let _ = r.read_to_string(&mut s);
        s
    });

    // Under KVM, watch QEMU's own output: on some nested hosts KVM passes
    // the probe but stops a real kernel with an "internal error", and QEMU
    // then waits forever. That is KvmBroken, not the guest's fault.
    let mut exit = None;
    while exit.is_none() && start.elapsed() < g.timeout {
        let slice = if g.kvm {
            Duration::from_millis(250)
        } else {
            g.timeout
        };
        exit = qemu
            .0
            .wait_timeout(slice.min(g.timeout.saturating_sub(start.elapsed())))
            .map_err(|e| anyhow!("wait for {}: {e}", g.arch.qemu()))?;
        if exit.is_none()
            && g.kvm
            && std::fs::read_to_string(&g.qemu_log).is_ok_and(|l| l.contains("KVM internal error"))
        {
            drop(qemu);
            let _ = copy_out.join();
            let _ = copy_err.join();
            return Err(KvmBroken.into());
        }
    }
    drop(qemu); // kills it if it timed out
    let _ = copy_out.join();
    let _ = copy_err.join();
    let status = status.join().unwrap_or_default();

    let mut started = false;
    let mut init_error = None;
    for line in status.lines() {
        if line == "started" {
            started = true;
        } else if let Some(code) = line.strip_prefix("exit ") {
            if let Ok(code) = code.trim().parse() {
                return Ok(code);
            }
        } else if let Some(msg) = line.strip_prefix("error ") {
            init_error = Some(msg.to_string());
        }
    }
    let console = std::fs::read_to_string(&g.console_log).unwrap_or_default();
    let qemu_out = std::fs::read_to_string(&g.qemu_log).unwrap_or_default();
    let how = if g.kvm { "kvm" } else { "tcg" };
    let what = match (exit, init_error) {
        (None, _) => format!(
            "the {} guest did not finish within {}s ({}): killed it",
            g.arch.debian(),
            g.timeout.as_secs_f64(),
            if started {
                "the command was still running"
            } else {
                "it was still booting"
            }
        ),
        (_, Some(msg)) => format!("the guest's init failed: {msg}"),
        _ if console.contains("Kernel panic") => {
            let line = console
                .lines()
                .find(|l| l.contains("Kernel panic"))
                .unwrap_or("");
            format!("the guest kernel panicked: {}", strip_timestamp(line))
        }
        (Some(st), None) => {
            let qemu_said = qemu_out.lines().rev().find(|l| !l.trim().is_empty());
            format!(
                "the guest stopped without reporting the command's exit status \
                 ({} {st}{}; {})",
                g.arch.qemu(),
                qemu_said.map(|l| format!(": {l}")).unwrap_or_default(),
                if started {
                    "the command had started"
                } else {
                    "before the command started"
                }
            )
        }
    };
    Err(anyhow!(
        "{what} [{how}, after {:.1}s]\n{}",
        start.elapsed().as_secs_f64(),
        tail(&console, &qemu_out)
    ))
}

fn strip_timestamp(line: &str) -> &str {
    match line.trim_start().strip_prefix('[') {
        Some(rest) => rest.split_once(']').map_or(line, |(_, l)| l.trim()),
        None => line.trim(),
    }
}

/// The last lines of the console (and of QEMU's own output, if any).
fn tail(console: &str, qemu_out: &str) -> String {
    let lines: Vec<&str> = console.lines().collect();
    let from = lines.len().saturating_sub(25);
    let mut s = String::from("--- last lines of the guest console:\n");
    for l in &lines[from..] {
        s += &format!("  {l}\n");
    }
    if lines.is_empty() {
        s += "  (empty)\n";
    }
    if !qemu_out.trim().is_empty() {
        s += "--- QEMU said:\n";
        for l in qemu_out.lines().take(10) {
            s += &format!("  {l}\n");
        }
    }
    s.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_values_escape_commas() {
        assert_eq!(escape(Path::new("/a,b/c")), "/a,,b/c");
    }

    #[test]
    fn timestamps_are_stripped() {
        assert_eq!(
            strip_timestamp("[    2.5] Kernel panic - not syncing: x"),
            "Kernel panic - not syncing: x"
        );
        assert_eq!(strip_timestamp("plain"), "plain");
    }

    #[test]
    fn arguments_share_the_root_read_only_and_have_no_network() {
        let g = Guest {
            arch: Arch::Amd64,
            kvm: false,
            memory: "1G",
            cpus: 2,
            kernel: Path::new("/k"),
            initrd: Path::new("/i"),
            root: Path::new("/"),
            shares: &[Share {
                tag: "rw0".into(),
                path: "/w".into(),
                writable: true,
            }],
            timeout: Duration::from_secs(1),
            console_log: "/c".into(),
            qemu_log: "/q".into(),
        };
        let a = args(&g, &[("stdout", 7)]).join(" ");
        assert!(a.contains("-nodefaults"), "{a}");
        assert!(!a.contains("-nic") && !a.contains("-netdev"), "{a}");
        assert!(a.contains("path=/,mount_tag=root,security_model=none,multidevs=remap,readonly=on"));
        assert!(a.contains("path=/w,mount_tag=rw0,security_model=none,multidevs=remap "));
        assert!(a.contains("file,id=stdout,path=/dev/fd/7"));
        assert!(a.contains("-accel tcg -cpu max"));
    }
}
