//! The one ELF reader of the workspace: enough of a 64-bit little-endian ELF
//! header to tell a program's machine and its program interpreter (the
//! dynamic loader; none for a static program). The vm crate checks the
//! busybox of an initramfs with it, the harness finds the loader that a
//! host binary needs in a guest root.

use std::io;
use std::path::{Path, PathBuf};

pub const EM_X86_64: u16 = 62;
pub const EM_AARCH64: u16 = 183;
const PT_INTERP: u32 = 3;

/// What a program's ELF header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// `e_machine`: [`EM_X86_64`], [`EM_AARCH64`], ...
    pub machine: u16,
    /// `PT_INTERP`, such as `/lib64/ld-linux-x86-64.so.2`.
    pub interpreter: Option<PathBuf>,
}

impl Info {
    pub fn is_static(&self) -> bool {
        self.interpreter.is_none()
    }
}

/// The ELF machine of this build: [`EM_X86_64`] or [`EM_AARCH64`].
pub fn host_machine() -> Option<u16> {
    match std::env::consts::ARCH {
        "x86_64" => Some(EM_X86_64),
        "aarch64" => Some(EM_AARCH64),
        _ => None,
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}
fn usize_at(b: &[u8], at: usize) -> Option<usize> {
    let v = u64::from_le_bytes(b.get(at..at.checked_add(8)?)?.try_into().ok()?);
    usize::try_from(v).ok()
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// Reads the header of the program in `bytes`.
pub fn info(b: &[u8]) -> io::Result<Info> {
    // ELFCLASS64 (2), ELFDATA2LSB (1).
    if b.get(..6) != Some(b"\x7fELF\x02\x01") {
        return Err(invalid("not a 64-bit little-endian ELF file"));
    }
    let parse = || -> Option<Info> {
        let machine = u16_at(b, 0x12)?;
        let phoff = usize_at(b, 0x20)?;
        let phentsize = usize::from(u16_at(b, 0x36)?);
        let phnum = usize::from(u16_at(b, 0x38)?);
        let mut interpreter = None;
        for i in 0..phnum {
            let ph = phoff.checked_add(i.checked_mul(phentsize)?)?;
            if u32_at(b, ph)? == PT_INTERP {
                let offset = usize_at(b, ph.checked_add(8)?)?;
                let size = usize_at(b, ph.checked_add(32)?)?;
                let raw = b.get(offset..offset.checked_add(size)?)?;
                let text = String::from_utf8_lossy(raw);
                interpreter = Some(PathBuf::from(text.trim_end_matches('\0')));
            }
        }
        Some(Info {
            machine,
            interpreter,
        })
    };
    parse().ok_or_else(|| invalid("truncated ELF header"))
}

/// [`info`] of the file at `path`; errors name the file.
pub fn read(path: &Path) -> io::Result<Info> {
    let bytes = std::fs::read(path)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot read {}: {e}", path.display())))?;
    info(&bytes).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF: header, program headers of the given types, and
    /// "/ld\0" as the PT_INTERP contents.
    fn elf(machine: u16, program_headers: &[u32]) -> Vec<u8> {
        let table_end = 64 + 56 * program_headers.len();
        let mut b = vec![0u8; table_end + 4];
        b[..6].copy_from_slice(b"\x7fELF\x02\x01");
        b[0x12..0x14].copy_from_slice(&machine.to_le_bytes());
        b[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        b[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        b[0x38..0x3a].copy_from_slice(&(program_headers.len() as u16).to_le_bytes());
        for (i, t) in program_headers.iter().enumerate() {
            let ph = 64 + 56 * i;
            b[ph..ph + 4].copy_from_slice(&t.to_le_bytes());
            b[ph + 8..ph + 16].copy_from_slice(&(table_end as u64).to_le_bytes());
            b[ph + 32..ph + 40].copy_from_slice(&4u64.to_le_bytes());
        }
        b[table_end..].copy_from_slice(b"/ld\0");
        b
    }

    #[test]
    fn tells_static_from_dynamic() {
        let stat = info(&elf(EM_X86_64, &[1, 1])).unwrap();
        assert_eq!(stat.machine, EM_X86_64);
        assert!(stat.is_static());
        let dynamic = info(&elf(EM_AARCH64, &[6, PT_INTERP, 1])).unwrap();
        assert_eq!(dynamic.machine, EM_AARCH64);
        assert_eq!(dynamic.interpreter, Some(PathBuf::from("/ld")));
    }

    #[test]
    fn rejects_garbage() {
        assert!(info(b"#!/bin/sh").is_err());
        let mut truncated = elf(EM_X86_64, &[1]);
        truncated.truncate(66); // in the middle of the program header
        assert!(info(&truncated).is_err());
        let err = read(Path::new("/etc/hostname")).unwrap_err().to_string();
        assert!(err.contains("/etc/hostname"), "{err}");
    }

    #[test]
    fn reads_this_test_binary() {
        let me = read(&std::env::current_exe().unwrap()).unwrap();
        assert_eq!(Some(me.machine), host_machine());
    }
}
