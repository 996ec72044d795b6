//! Just enough ELF reading to check the busybox that goes into an
//! initramfs: it must be for the guest's machine and statically linked (the
//! initramfs has no libc).

use anyhow::{bail, Result};

pub const EM_X86_64: u16 = 62;
pub const EM_AARCH64: u16 = 183;
const PT_INTERP: u32 = 3;

/// A 64-bit little-endian ELF file's machine and whether it is static.
#[derive(Debug, PartialEq, Eq)]
pub struct Info {
    pub machine: u16,
    pub is_static: bool,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

pub fn info(b: &[u8]) -> Result<Info> {
    // ELFCLASS64 (2), ELFDATA2LSB (1).
    if b.get(..6) != Some(b"\x7fELF\x02\x01") {
        bail!("not a 64-bit little-endian ELF file");
    }
    let parse = || -> Option<Info> {
        let machine = u16_at(b, 0x12)?;
        let phoff = usize::try_from(u64_at(b, 0x20)?).ok()?;
        let phentsize = usize::from(u16_at(b, 0x36)?);
        let phnum = usize::from(u16_at(b, 0x38)?);
        let mut is_static = true;
        for i in 0..phnum {
            if u32_at(b, phoff.checked_add(i.checked_mul(phentsize)?)?)? == PT_INTERP {
                is_static = false;
            }
        }
        Some(Info { machine, is_static })
    };
    match parse() {
        Some(info) => Ok(info),
        None => bail!("truncated ELF header"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elf(machine: u16, program_headers: &[u32]) -> Vec<u8> {
        let mut b = vec![0u8; 64 + 56 * program_headers.len()];
        b[..6].copy_from_slice(b"\x7fELF\x02\x01");
        b[0x12..0x14].copy_from_slice(&machine.to_le_bytes());
        b[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        b[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        b[0x38..0x3a].copy_from_slice(&(program_headers.len() as u16).to_le_bytes());
        for (i, t) in program_headers.iter().enumerate() {
            b[64 + 56 * i..68 + 56 * i].copy_from_slice(&t.to_le_bytes());
        }
        b
    }

    #[test]
    fn tells_static_from_dynamic() {
        let info_of = |b: Vec<u8>| info(&b).unwrap();
        assert_eq!(
            info_of(elf(EM_X86_64, &[1, 1])),
            Info {
                machine: EM_X86_64,
                is_static: true
            }
        );
        assert!(!info_of(elf(EM_AARCH64, &[6, PT_INTERP, 1])).is_static);
    }

    #[test]
    fn rejects_garbage() {
        assert!(info(b"#!/bin/sh").is_err());
        let mut truncated = elf(EM_X86_64, &[1]);
        truncated.truncate(66); // in the middle of the program header
        assert!(info(&truncated).is_err());
    }

    #[test]
    fn reads_the_host_busybox() {
        if let Ok(b) = std::fs::read("/bin/busybox") {
            assert!(info(&b).is_ok());
        }
    }
}
