//! A minimal writer for the cpio "newc" format, the one the kernel unpacks as
//! an initramfs. Written here so that building an initramfs needs neither
//! root (device nodes are just header fields) nor the `cpio` tool.

/// An archive being built in memory. Several finished archives may be
/// concatenated: the kernel unpacks them one after the other.
pub struct Archive {
    data: Vec<u8>,
    next_ino: u32,
}

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFCHR: u32 = 0o020000;

impl Archive {
    pub fn new() -> Self {
        Archive {
            data: Vec::new(),
            next_ino: 1,
        }
    }

    pub fn dir(&mut self, path: &str) {
        self.entry(path, S_IFDIR | 0o755, 2, (0, 0), b"");
    }

    pub fn file(&mut self, path: &str, mode: u32, content: &[u8]) {
        self.entry(path, S_IFREG | (mode & 0o7777), 1, (0, 0), content);
    }

    pub fn char_dev(&mut self, path: &str, mode: u32, major: u32, minor: u32) {
        self.entry(path, S_IFCHR | (mode & 0o7777), 1, (major, minor), b"");
    }

    /// Ends the archive with the trailer and pads it to 512 bytes, as the
    /// `cpio` tool does, so that another archive may follow.
    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, 1, (0, 0), b"");
        let padded = self.data.len().div_ceil(512) * 512;
        self.data.resize(padded, 0);
        self.data
    }

    fn entry(&mut self, path: &str, mode: u32, nlink: u32, rdev: (u32, u32), content: &[u8]) {
        // Names are stored without a leading slash, as `find . | cpio` would
        // (minus the "./"); the kernel accepts both.
        let name = path.trim_start_matches('/');
        let ino = if name == "TRAILER!!!" {
            0
        } else {
            self.next_ino += 1;
            self.next_ino
        };
        let fields = [
            ino,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime: fixed, so that equal inputs give equal archives
            content.len() as u32,
            0, // dev major
            0, // dev minor
            rdev.0,
            rdev.1,
            name.len() as u32 + 1, // with its NUL
            0,                     // check (unused by newc)
        ];
        self.data.extend_from_slice(b"070701");
        for f in fields {
            self.data.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        self.data.extend_from_slice(name.as_bytes());
        self.data.push(0);
        self.pad4();
        self.data.extend_from_slice(content);
        self.pad4();
    }

    fn pad4(&mut self) {
        while self.data.len() % 4 != 0 {
            self.data.push(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses a newc archive back: (name, mode, rdev major, content).
    fn parse(mut data: &[u8]) -> Vec<(String, u32, u32, Vec<u8>)> {
        let mut out = Vec::new();
        let field = |h: &[u8], i: usize| {
            u32::from_str_radix(std::str::from_utf8(&h[6 + 8 * i..14 + 8 * i]).unwrap(), 16)
                .unwrap()
        };
        loop {
            assert_eq!(&data[..6], b"070701");
            let mode = field(data, 1);
            let size = field(data, 6) as usize;
            let major = field(data, 9);
            let namesize = field(data, 11) as usize;
            let name = std::str::from_utf8(&data[110..110 + namesize - 1])
                .unwrap()
                .to_string();
            assert_eq!(data[110 + namesize - 1], 0, "name is NUL-terminated");
            let start = (110 + namesize).div_ceil(4) * 4;
            let content = data[start..start + size].to_vec();
            data = &data[(start + size).div_ceil(4) * 4..];
            if name == "TRAILER!!!" {
                assert!(
                    data.iter().all(|&b| b == 0),
                    "only padding after the trailer"
                );
                return out;
            }
            out.push((name, mode, major, content));
        }
    }

    #[test]
    fn round_trips_every_entry_kind() {
        let mut a = Archive::new();
        a.dir("/bin");
        a.file("/bin/busybox", 0o755, b"\x7fELF-ish");
        a.char_dev("/dev/console", 0o600, 5, 1);
        a.file("/init", 0o755, b"#!/bin/sh\n");
        let data = a.finish();
        assert_eq!(data.len() % 512, 0);
        let entries = parse(&data);
        let names: Vec<_> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(names, ["bin", "bin/busybox", "dev/console", "init"]);
        assert_eq!(entries[0].1, 0o040755);
        assert_eq!(entries[1].1, 0o100755);
        assert_eq!(entries[1].3, b"\x7fELF-ish");
        assert_eq!((entries[2].1, entries[2].2), (0o020600, 5));
    }

    #[test]
    fn is_byte_for_byte_reproducible() {
        let build = || {
            let mut a = Archive::new();
            a.file("x", 0o644, b"abc");
            a.finish()
        };
        assert_eq!(build(), build());
    }

    #[test]
    fn cpio_tool_reads_it() {
        // The system's cpio is the reference reader.
        let mut child = std::process::Command::new(testkit::quote::require("cpio", "cpio"))
            .args(["-t", "--quiet"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut a = Archive::new();
        a.dir("d");
        a.file("d/f", 0o644, b"hello");
        let data = a.finish();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&data).unwrap();
        let out = testkit::wait::output_of(child, std::time::Duration::from_secs(20)).unwrap();
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stdout), "d\nd/f\n");
    }
}
