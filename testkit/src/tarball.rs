//! Hostile tarballs and the trees they must not touch: tar entries written
//! with raw names (the `tar` crate's own setters refuse `..` and absolute
//! paths, which is exactly what an attacker's archive holds), GNU and PAX
//! long names, and a snapshot of a file tree (modes, owners, contents, link
//! targets, mtimes and ctimes) to compare before and after.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

pub use tar::EntryType;

/// A GNU header of `kind` and `mode`, owned by root, empty.
pub fn header(kind: EntryType, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_size(0);
    h
}

/// How a name longer than the header's 100 bytes is carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LongNames {
    /// GNU `L`/`K` entries before the header.
    Gnu,
    /// A PAX `x` entry with `path=` and `linkpath=` records.
    Pax,
}

/// One archive entry, its names as raw bytes.
#[derive(Debug, Clone)]
pub struct RawEntry {
    pub kind: EntryType,
    pub path: Vec<u8>,
    /// Symlink or hardlink target.
    pub link: Vec<u8>,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub data: Vec<u8>,
}

impl RawEntry {
    /// An entry owned by root, with a fixed mtime and no link target.
    pub fn new(kind: EntryType, path: &str, mode: u32, data: &[u8]) -> RawEntry {
        RawEntry {
            kind,
            path: path.as_bytes().to_vec(),
            link: Vec::new(),
            mode,
            uid: 0,
            gid: 0,
            mtime: 1_700_000_000,
            data: data.to_vec(),
        }
    }
}

/// A tar stream of `entries` with their names exactly as given, ended by
/// the two zero blocks.
pub fn raw_archive(entries: &[RawEntry], long: LongNames) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let (path_fits, link_fits) = (e.path.len() <= 100, e.link.len() <= 100);
        match long {
            LongNames::Gnu => {
                if !path_fits {
                    append_raw(&mut b, EntryType::GNULongName, &nul_ended(&e.path));
                }
                if !link_fits {
                    append_raw(&mut b, EntryType::GNULongLink, &nul_ended(&e.link));
                }
            }
            LongNames::Pax if !path_fits || !link_fits => {
                let mut records = Vec::new();
                if !path_fits {
                    records.extend(pax_record("path", &e.path));
                }
                if !link_fits {
                    records.extend(pax_record("linkpath", &e.link));
                }
                append_raw(&mut b, EntryType::XHeader, &records);
            }
            LongNames::Pax => {}
        }
        let mut h = header(e.kind, e.mode);
        set_raw(&mut h.as_old_mut().name, &e.path);
        set_raw(&mut h.as_old_mut().linkname, &e.link);
        h.set_uid(e.uid);
        h.set_gid(e.gid);
        h.set_mtime(e.mtime);
        h.set_size(e.data.len() as u64);
        if matches!(e.kind, EntryType::Char | EntryType::Block) {
            h.set_device_major(1).unwrap();
            h.set_device_minor(3).unwrap();
        }
        h.set_cksum();
        b.append(&h, &e.data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

fn nul_ended(name: &[u8]) -> Vec<u8> {
    let mut v = name.to_vec();
    v.push(0);
    v
}

/// Copies as much of `name` as fits; the rest comes from a long-name entry.
fn set_raw(field: &mut [u8], name: &[u8]) {
    field.fill(0);
    let n = name.len().min(field.len());
    field[..n].copy_from_slice(&name[..n]);
}

fn append_raw(b: &mut tar::Builder<Vec<u8>>, kind: EntryType, data: &[u8]) {
    let mut h = header(kind, 0o644);
    set_raw(&mut h.as_old_mut().name, b"././@LongLink");
    h.set_size(data.len() as u64);
    h.set_cksum();
    b.append(&h, data).unwrap();
}

/// `LEN key=value\n`, where LEN counts the whole record, its own digits included.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + body.to_string().len();
    if len.to_string().len() != body.to_string().len() {
        len += 1;
    }
    let mut r = format!("{len} {key}=").into_bytes();
    r.extend_from_slice(value);
    r.push(b'\n');
    assert_eq!(r.len(), len);
    r
}

/// Gzip of `data`.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// Xz of `data` (preset 0: the test needs the format, not the ratio).
pub fn xz(data: &[u8]) -> Vec<u8> {
    let mut e = xz2::write::XzEncoder::new(Vec::new(), 0);
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// What a file tree looks like, path by path (atimes aside, which reading
/// changes): type and mode, owner, link count, size, mtime, ctime (so a chmod
/// or chown to the same value still shows), and the contents of files and
/// symlinks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot(pub BTreeMap<PathBuf, String>);

impl Snapshot {
    /// Everything under `root`, `root` itself included.
    pub fn take(root: &Path) -> Snapshot {
        let mut map = BTreeMap::new();
        walk(root, &mut map);
        Snapshot(map)
    }

    /// Panics naming every path that differs from `before`.
    pub fn assert_same_as(&self, before: &Snapshot, what: &str) {
        if self == before {
            return;
        }
        let mut diff = Vec::new();
        for (path, was) in &before.0 {
            match self.0.get(path) {
                None => diff.push(format!("removed {}: was {was}", path.display())),
                Some(now) if now != was => {
                    diff.push(format!("changed {}: {was} -> {now}", path.display()))
                }
                Some(_) => {}
            }
        }
        for (path, now) in &self.0 {
            if !before.0.contains_key(path) {
                diff.push(format!("added {}: {now}", path.display()));
            }
        }
        panic!("{what}:\n{}", diff.join("\n"));
    }
}

fn walk(path: &Path, map: &mut BTreeMap<PathBuf, String>) {
    let meta = fs::symlink_metadata(path).unwrap();
    let content = if meta.file_type().is_symlink() {
        format!("-> {:?}", fs::read_link(path).unwrap())
    } else if meta.is_file() {
        format!("{:?}", String::from_utf8_lossy(&fs::read(path).unwrap()))
    } else {
        String::new()
    };
    map.insert(
        path.to_path_buf(),
        format!(
            "mode {:o} owner {}:{} links {} size {} mtime {}.{} ctime {}.{} {content}",
            meta.mode(),
            meta.uid(),
            meta.gid(),
            meta.nlink(),
            meta.size(),
            meta.mtime(),
            meta.mtime_nsec(),
            meta.ctime(),
            meta.ctime_nsec()
        ),
    );
    if meta.is_dir() {
        let mut names: Vec<_> = fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for name in names {
            walk(&path.join(name), map);
        }
    }
}
