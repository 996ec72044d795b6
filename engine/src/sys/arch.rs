//! Architectures and ELF headers: the host's arch in Debian's naming, and the
//! `e_machine` (and whether a loader is needed) of a binary.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Why a binary's ELF header could not be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open {}", .path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot read {}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} has a truncated or malformed ELF header", .path.display())]
    Malformed { path: PathBuf },
}

/// The host's architecture in Debian's naming: `amd64`, `arm64`, or Rust's
/// name for any other (which the catalog then refuses).
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// `e_machine` of the ELF file at `path`, or `None` if it is not ELF.
/// (Follows symlinks on the host: see [`crate::sys::path::resolve_in_rootfs`] for paths
/// inside a rootfs.)
pub fn elf_machine(path: &Path) -> Result<Option<u16>, Error> {
    Ok(read_elf(path, false)?.map(|elf| elf.machine))
}

/// The Debian name of an ELF `e_machine`, for messages ("built for arm64").
pub fn machine_arch(machine: u16) -> Option<&'static str> {
    Some(match machine {
        EM_X86_64 => "amd64",
        EM_AARCH64 => "arm64",
        3 => "i386",
        40 => "arm",
        243 => "riscv64",
        21 => "ppc64",
        22 => "s390x",
        _ => return None,
    })
}

/// The ELF `e_machine` that binaries for a Debian architecture carry.
pub fn arch_machine(arch: &str) -> Option<u16> {
    match arch {
        "amd64" => Some(EM_X86_64),
        "arm64" => Some(EM_AARCH64),
        _ => None,
    }
}

pub const EM_X86_64: u16 = 62;
pub const EM_AARCH64: u16 = 183;
const PT_INTERP: u32 = 3;

pub struct Elf {
    /// `e_machine`.
    pub machine: u16,
    /// Has a PT_INTERP program header, i.e. needs a dynamic loader.
    pub dynamic: bool,
}

/// Reads the ELF header of `path` (and the program headers when
/// `program_headers`); `None` if the file is not ELF.
pub fn read_elf(path: &Path, program_headers: bool) -> Result<Option<Elf>, Error> {
    let mut file = File::open(path).map_err(|source| Error::Open {
        path: path.to_owned(),
        source,
    })?;
    let unreadable = |source| Error::Read {
        path: path.to_owned(),
        source,
    };
    let mut header = Vec::with_capacity(64);
    (&mut file)
        .take(64)
        .read_to_end(&mut header)
        .map_err(unreadable)?;
    if !header.starts_with(b"\x7fELF") {
        return Ok(None);
    }
    let bad = || Error::Malformed {
        path: path.to_owned(),
    };
    let class64 = match header.get(4) {
        Some(1) => false,
        Some(2) => true,
        _ => return Err(bad()),
    };
    let little = match header.get(5) {
        Some(1) => true,
        Some(2) => false,
        _ => return Err(bad()),
    };
    let field = |at: usize, len: usize| -> Result<u64, Error> {
        let bytes = header.get(at..at + len).ok_or_else(bad)?;
        Ok(read_uint(bytes, little))
    };
    let machine = field(18, 2)? as u16;
    if !program_headers {
        return Ok(Some(Elf {
            machine,
            dynamic: false,
        }));
    }
    let (phoff, phentsize, phnum) = if class64 {
        (field(32, 8)?, field(54, 2)?, field(56, 2)?)
    } else {
        (field(28, 4)?, field(42, 2)?, field(44, 2)?)
    };
    // A real table is a few KiB; refuse absurd ones rather than read them.
    if phentsize < 4 || phentsize * phnum > 1 << 20 {
        return Err(bad());
    }
    let mut table = Vec::new();
    io::Seek::seek(&mut file, io::SeekFrom::Start(phoff)).map_err(unreadable)?;
    file.take(phentsize * phnum)
        .read_to_end(&mut table)
        .map_err(unreadable)?;
    if table.len() as u64 != phentsize * phnum {
        return Err(bad());
    }
    let dynamic = table
        .chunks(phentsize as usize)
        .any(|ph| read_uint(&ph[..4], little) == u64::from(PT_INTERP));
    Ok(Some(Elf { machine, dynamic }))
}

fn read_uint(bytes: &[u8], little: bool) -> u64 {
    let fold = |acc: u64, &b: &u8| (acc << 8) | u64::from(b);
    if little {
        bytes.iter().rev().fold(0, fold)
    } else {
        bytes.iter().fold(0, fold)
    }
}
