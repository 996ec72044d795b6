//! Whether KVM really works: `/dev/kvm` existing is not enough (on some
//! nested hosts QEMU hangs or aborts with it). A few bytes of guest code that
//! only power the machine off are booted under KVM with the CPU model a real
//! boot uses; if QEMU does not end that way within a few seconds, it does not
//! work. The answer is kept for the life of the process.

use crate::cache;
use crate::Arch;
use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(5);

/// x86 firmware of 64 KiB whose reset vector (its last 16 bytes) writes 0 to
/// the isa-debug-exit port, which ends QEMU with status (0 << 1) | 1 = 1:
/// `mov al, 0; out 0xf4, al; hlt; jmp $-1`.
fn x86_firmware() -> Vec<u8> {
    let mut rom = vec![0xf4; 65536];
    rom[0xfff0..0xfff7].copy_from_slice(&[0xb0, 0x00, 0xe6, 0xf4, 0xf4, 0xeb, 0xfd]);
    rom
}

/// An arm64 kernel image that asks PSCI for SYSTEM_OFF (0x84000008) through
/// `hvc`, which ends QEMU with status 0:
/// `movz w0, #8; movk w0, #0x8400, lsl #16; hvc #0; b .`.
const ARM64_KERNEL: [u8; 16] = [
    0x00, 0x01, 0x80, 0x52, 0x00, 0x80, 0xb0, 0x72, 0x02, 0x00, 0x00, 0xd4, 0x00, 0x00, 0x00, 0x14,
];

static RESULTS: Mutex<Option<HashMap<Arch, bool>>> = Mutex::new(None);

/// Whether KVM runs `arch` guests here (probed once per process).
pub fn kvm_works(arch: Arch) -> bool {
    if arch != Arch::host() {
        return false;
    }
    let mut results = RESULTS.lock().unwrap_or_else(|e| e.into_inner());
    *results
        .get_or_insert_with(HashMap::new)
        .entry(arch)
        .or_insert_with(|| probe(arch))
}

/// Remembers (for this process) that KVM failed a real boot of `arch`.
pub fn mark_broken(arch: Arch) {
    let mut results = RESULTS.lock().unwrap_or_else(|e| e.into_inner());
    results.get_or_insert_with(HashMap::new).insert(arch, false);
}

fn probe(arch: Arch) -> bool {
    let kvm_usable = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    if !kvm_usable {
        return false;
    }
    let Ok(dir) = cache::vm_dir() else {
        return false;
    };
    let mut cmd = Command::new(arch.qemu());
    cmd.args(["-nodefaults", "-display", "none", "-no-reboot", "-m", "64"])
        .args(["-accel", "kvm", "-cpu", "host"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // The probe images are written to the cache: the same bytes every time.
    let expected = match arch {
        Arch::Amd64 => {
            let rom = dir.join("kvm-probe-x86.rom");
            if cache::write_atomic(&rom, &x86_firmware()).is_err() {
                return false;
            }
            cmd.arg("-bios").arg(&rom);
            cmd.args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]);
            1
        }
        Arch::Arm64 => {
            let image = dir.join("kvm-probe-arm64.img");
            if cache::write_atomic(&image, &ARM64_KERNEL).is_err() {
                return false;
            }
            cmd.args(["-M", "virt,gic-version=max", "-kernel"])
                .arg(&image);
            0
        }
    };
    run_with_timeout(&mut cmd, TIMEOUT) == Some(expected)
}

/// The exit code of `cmd`, or None if it could not start, was killed, or had
/// to be killed after `timeout`.
fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Option<i32> {
    let mut child = cmd.spawn().ok()?;
    testkit::wait::child(&mut child, timeout).ok()?.code()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The probe guests are checked under TCG, where they must end QEMU
    /// with the status the KVM probe expects.
    #[test]
    fn probe_guests_power_off_under_tcg() {
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path().to_path_buf();
        let base = ["-nodefaults", "-display", "none", "-no-reboot", "-m", "64"];
        // Both probe guests are checked on every host: a missing QEMU fails.
        testkit::quote::require("qemu-system-x86_64", "qemu-system-x86");
        testkit::quote::require("qemu-system-aarch64", "qemu-system-arm");
        {
            let rom = dir.join("x86.rom");
            std::fs::write(&rom, x86_firmware()).unwrap();
            let mut cmd = Command::new("qemu-system-x86_64");
            cmd.args(base).args(["-accel", "tcg", "-bios"]).arg(&rom);
            cmd.args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]);
            assert_eq!(run_with_timeout(&mut cmd, Duration::from_secs(20)), Some(1));
        }
        {
            let img = dir.join("arm64.img");
            std::fs::write(&img, ARM64_KERNEL).unwrap();
            let mut cmd = Command::new("qemu-system-aarch64");
            cmd.args(base)
                .args(["-accel", "tcg", "-M", "virt", "-cpu", "max", "-kernel"]);
            cmd.arg(&img);
            assert_eq!(run_with_timeout(&mut cmd, Duration::from_secs(20)), Some(0));
        }
    }
}
