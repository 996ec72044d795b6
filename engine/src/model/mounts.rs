//! `--tmpfs PATH[:OPTIONS]` and `--mount type=bind|tmpfs,...`, read as
//! docker reads them. A bind becomes a [`Volume`] (the same machinery as
//! `-v`); a tmpfs a [`TmpfsMount`] the child makes after the volumes.
//! Whether a bind's source exists is a host check (validate).

use crate::model::bundle::TmpfsMount;
use crate::model::limits::parse_size;
use crate::model::volumes::{Ownership, Volume};
use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

/// mount(2)'s MS_* flags a tmpfs option may set (the model names no
/// syscall layer; the values are the kernel's ABI).
const MS_RDONLY: u64 = 1;
const MS_NOSUID: u64 = 2;
const MS_NODEV: u64 = 4;
const MS_NOEXEC: u64 = 8;
const MS_SYNCHRONOUS: u64 = 16;
const MS_DIRSYNC: u64 = 128;
const MS_NOATIME: u64 = 1024;
const MS_NODIRATIME: u64 = 2048;
const MS_RELATIME: u64 = 1 << 21;
const MS_STRICTATIME: u64 = 1 << 24;

/// docker's defaults for `--tmpfs` and `--mount type=tmpfs`.
pub const TMPFS_DEFAULT_FLAGS: u64 = MS_NOSUID | MS_NODEV | MS_NOEXEC;

/// The keys `--mount` knows, for the sentence that refuses another.
const MOUNT_KEYS: &str = "type, source (src), target (destination, dst), readonly (ro), tmpfs-size, tmpfs-mode, consistency";

/// A `--tmpfs` or `--mount` refused: the argument as given, and what is
/// wrong with it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    #[error(
        "invalid --tmpfs {0:?}: the path must be absolute without '..', e.g. --tmpfs /run:size=64m"
    )]
    TmpfsPath(String),
    #[error("invalid --tmpfs {given:?}: unknown option {option:?} (known: ro, rw, exec, noexec, suid, nosuid, nodev, sync, async, dirsync, atime, noatime, diratime, nodiratime, relatime, strictatime, size=, mode=, uid=, gid=, nr_inodes=)")]
    TmpfsOption { given: String, option: String },
    #[error("invalid --tmpfs {given:?}: option {option:?} needs {what}")]
    TmpfsValue {
        given: String,
        option: String,
        what: &'static str,
    },
    #[error("invalid --tmpfs {0:?}: the engine always mounts a tmpfs nodev, so `dev` cannot apply: drop it")]
    TmpfsDev(String),
    #[error("invalid --mount {given:?}: unknown key {key:?} (known: {MOUNT_KEYS})")]
    MountKey { given: String, key: String },
    #[error(
        "invalid --mount {given:?}: type {typ:?} is not supported: use type=bind or type=tmpfs"
    )]
    MountType { given: String, typ: String },
    #[error("invalid --mount {given:?}: {what}")]
    Mount { given: String, what: String },
    #[error("two mounts at {0}: give each target once")]
    Duplicate(String),
}

/// What a `--mount` makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mount {
    Bind(Volume),
    Tmpfs(TmpfsMount),
}

fn target_ok(path: &str) -> bool {
    path.starts_with('/')
        && !path.contains('\0')
        && !Path::new(path)
            .components()
            .any(|c| c == Component::ParentDir)
}

/// The kernel's size syntax for tmpfs's size= and nr_inodes=: a number
/// with an optional k, m, g, t, p or e (or % of RAM for size=).
fn kernel_size(v: &str, percent: bool) -> bool {
    let digits = v.trim_end_matches(|c: char| "kKmMgGtTpPeE".contains(c) || (percent && c == '%'));
    !digits.is_empty() && v.len() - digits.len() <= 1 && digits.bytes().all(|b| b.is_ascii_digit())
}

fn octal_mode(v: &str) -> Option<u32> {
    u32::from_str_radix(v, 8).ok().filter(|m| *m <= 0o7777)
}

/// `--tmpfs PATH[:OPTIONS]`: OPTIONS are mount(8)'s, comma-separated,
/// after docker's defaults noexec, nosuid, nodev (a later `exec` or
/// `suid` undoes one).
pub fn parse_tmpfs(given: &str) -> Result<TmpfsMount, Error> {
    let (path, options) = given.split_once(':').unwrap_or((given, ""));
    if !target_ok(path) {
        return Err(Error::TmpfsPath(given.into()));
    }
    let mut flags = TMPFS_DEFAULT_FLAGS;
    let mut data = Vec::new();
    for option in options.split(',').filter(|o| !o.is_empty()) {
        let bad_value = |what| Error::TmpfsValue {
            given: given.into(),
            option: option.into(),
            what,
        };
        match option.split_once('=') {
            Some((key @ ("size" | "nr_inodes"), v)) => {
                if !kernel_size(v, key == "size") {
                    return Err(bad_value("a size such as 64m, 1g or 50%"));
                }
                data.push(option.to_string());
            }
            Some(("mode", v)) => {
                octal_mode(v).ok_or_else(|| bad_value("an octal mode such as 1777"))?;
                data.push(option.to_string());
            }
            Some(("uid" | "gid", v)) => {
                v.parse::<u32>()
                    .map_err(|_| bad_value("a number (the ID in the container)"))?;
                data.push(option.to_string());
            }
            Some(_) => {
                return Err(Error::TmpfsOption {
                    given: given.into(),
                    option: option.into(),
                })
            }
            None => {
                let (set, clear) = match option {
                    "ro" => (MS_RDONLY, 0),
                    "rw" => (0, MS_RDONLY),
                    "exec" => (0, MS_NOEXEC),
                    "noexec" => (MS_NOEXEC, 0),
                    "suid" => (0, MS_NOSUID),
                    "nosuid" => (MS_NOSUID, 0),
                    "nodev" => (MS_NODEV, 0),
                    "dev" => return Err(Error::TmpfsDev(given.into())),
                    "sync" => (MS_SYNCHRONOUS, 0),
                    "async" => (0, MS_SYNCHRONOUS),
                    "dirsync" => (MS_DIRSYNC, 0),
                    "atime" => (0, MS_NOATIME),
                    "noatime" => (MS_NOATIME, 0),
                    "diratime" => (0, MS_NODIRATIME),
                    "nodiratime" => (MS_NODIRATIME, 0),
                    "relatime" => (MS_RELATIME, MS_STRICTATIME),
                    "strictatime" => (MS_STRICTATIME, MS_RELATIME),
                    _ => {
                        return Err(Error::TmpfsOption {
                            given: given.into(),
                            option: option.into(),
                        })
                    }
                };
                flags = (flags & !clear) | set;
            }
        }
    }
    Ok(TmpfsMount {
        destination: PathBuf::from(path),
        flags,
        data: data.join(","),
        propagation: 0,
        copy_up: false,
    })
}

/// docker's reading of a boolean option value (`readonly`, `readonly=true`).
fn boolean(v: Option<&str>) -> Option<bool> {
    match v {
        None | Some("1" | "true" | "True" | "TRUE") => Some(true),
        Some("0" | "false" | "False" | "FALSE") => Some(false),
        Some(_) => None,
    }
}

/// `--mount type=bind|tmpfs,source=,target=,readonly,tmpfs-size=,tmpfs-mode=`
/// (docker's keys and their aliases; `consistency` is accepted and
/// ignored, as docker does on Linux). A bind needs a source and a target;
/// a tmpfs a target and no source.
pub fn parse_mount(given: &str) -> Result<Mount, Error> {
    let bad = |what: &str| Error::Mount {
        given: given.into(),
        what: what.into(),
    };
    let (mut typ, mut source, mut target) = (None, None, None);
    let (mut readonly, mut size, mut mode) = (false, None, None);
    for field in given.split(',') {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (field, None),
        };
        let value_of =
            |what: &str| value.ok_or_else(|| bad(&format!("{key} needs a value: {key}={what}")));
        match key {
            "type" => typ = Some(value_of("bind")?),
            "source" | "src" => source = Some(value_of("/host/path")?),
            "target" | "destination" | "dst" => target = Some(value_of("/path")?),
            "readonly" | "ro" => {
                readonly =
                    boolean(value).ok_or_else(|| bad(&format!("{key} takes true or false")))?
            }
            "tmpfs-size" => {
                let v = value_of("64m")?;
                size = Some(
                    parse_size(v)
                        .filter(|n| *n > 0)
                        .ok_or_else(|| bad("tmpfs-size needs a size such as 64m"))?,
                )
            }
            "tmpfs-mode" => {
                let v = value_of("1777")?;
                mode = Some(
                    octal_mode(v)
                        .ok_or_else(|| bad("tmpfs-mode needs an octal mode such as 1777"))?,
                )
            }
            "consistency" => {}
            "" => {
                return Err(bad(
                    "an empty field: separate KEY=VALUE pairs with one comma",
                ))
            }
            _ => {
                return Err(Error::MountKey {
                    given: given.into(),
                    key: key.into(),
                })
            }
        }
    }
    let target = target.ok_or_else(|| bad("no target: add target=/path"))?;
    if !target_ok(target) {
        return Err(bad(&format!(
            "target {target:?} must be an absolute path without '..'"
        )));
    }
    match typ.unwrap_or("volume") {
        "bind" => {
            if size.is_some() || mode.is_some() {
                return Err(bad("tmpfs-size and tmpfs-mode are for type=tmpfs"));
            }
            let source = source.ok_or_else(|| bad("a bind needs source=/host/path"))?;
            if source.is_empty() || source.contains('\0') {
                return Err(bad("source must be a host path"));
            }
            Ok(Mount::Bind(Volume {
                host: PathBuf::from(source),
                container: PathBuf::from(target),
                readonly,
                // A bind of --mount is a -v volume: idmapped the same way.
                owner: Ownership::Idmap,
            }))
        }
        "tmpfs" => {
            if source.is_some() {
                return Err(bad("a tmpfs takes no source: drop source="));
            }
            let mut data = Vec::new();
            if let Some(size) = size {
                data.push(format!("size={size}"));
            }
            if let Some(mode) = mode {
                data.push(format!("mode={mode:o}"));
            }
            Ok(Mount::Tmpfs(TmpfsMount {
                destination: PathBuf::from(target),
                flags: TMPFS_DEFAULT_FLAGS | if readonly { MS_RDONLY } else { 0 },
                data: data.join(","),
                propagation: 0,
                copy_up: false,
            }))
        }
        other => Err(Error::MountType {
            given: given.into(),
            typ: other.into(),
        }),
    }
}

/// Refuses two mounts at one target, as docker does ("Duplicate mount point").
pub fn check_targets<'a>(targets: impl Iterator<Item = &'a Path>) -> Result<(), Error> {
    let mut seen = HashSet::new();
    for t in targets {
        let normal: PathBuf = t.components().collect();
        if !seen.insert(normal) {
            return Err(Error::Duplicate(t.display().to_string()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tmpfs_options_read_as_docker_reads_them() {
        let t = parse_tmpfs("/run").unwrap();
        assert_eq!(t.destination, PathBuf::from("/run"));
        assert_eq!(t.flags, MS_NOSUID | MS_NODEV | MS_NOEXEC);
        assert_eq!(t.data, "");
        let t = parse_tmpfs("/run:exec,size=64m,mode=1777,ro,uid=5").unwrap();
        assert_eq!(t.flags, MS_NOSUID | MS_NODEV | MS_RDONLY);
        assert_eq!(t.data, "size=64m,mode=1777,uid=5");
        assert_eq!(parse_tmpfs("/x:size=50%").unwrap().data, "size=50%");
        for bad in [
            "run",
            "/a/../b",
            "",
            "/x:size=lots",
            "/x:size=1mm",
            "/x:mode=999",
            "/x:uid=root",
            "/x:dev",
            "/x:shared",
            "/x:foo=1",
        ] {
            assert!(parse_tmpfs(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_tmpfs("/x:bogus").unwrap_err().to_string(),
            "invalid --tmpfs \"/x:bogus\": unknown option \"bogus\" (known: ro, rw, exec, noexec, suid, nosuid, nodev, sync, async, dirsync, atime, noatime, diratime, nodiratime, relatime, strictatime, size=, mode=, uid=, gid=, nr_inodes=)"
        );
    }

    #[test]
    fn mounts_read_as_docker_reads_them() {
        assert_eq!(
            parse_mount("type=bind,src=/h,dst=/c,readonly").unwrap(),
            Mount::Bind(Volume {
                host: "/h".into(),
                container: "/c".into(),
                readonly: true,
                owner: Ownership::Idmap,
            })
        );
        assert_eq!(
            parse_mount("type=bind,source=/h,destination=/c,ro=false").unwrap(),
            Mount::Bind(Volume {
                host: "/h".into(),
                container: "/c".into(),
                readonly: false,
                owner: Ownership::Idmap,
            })
        );
        match parse_mount("type=tmpfs,target=/t,tmpfs-size=1m,tmpfs-mode=1770").unwrap() {
            Mount::Tmpfs(t) => {
                assert_eq!(t.data, "size=1048576,mode=1770");
                assert_eq!(t.flags, TMPFS_DEFAULT_FLAGS);
            }
            other => panic!("{other:?}"),
        }
        for (bad, says) in [
            (
                "type=volume,src=v,dst=/c",
                "type \"volume\" is not supported",
            ),
            ("src=v,dst=/c", "type \"volume\""),
            (
                "type=bind,src=/h,dst=/c,bind-propagation=shared",
                "unknown key \"bind-propagation\"",
            ),
            ("type=bind,dst=/c", "needs source"),
            ("type=bind,src=/h", "no target"),
            ("type=bind,src=/h,dst=c", "absolute"),
            ("type=tmpfs,src=/h,dst=/c", "no source"),
            ("type=tmpfs,dst=/c,tmpfs-size=big", "tmpfs-size"),
            ("type=tmpfs,dst=/c,tmpfs-mode=8", "tmpfs-mode"),
            ("type=bind,src=/h,dst=/c,tmpfs-size=1m", "for type=tmpfs"),
            ("type=bind,src=/h,dst=/c,readonly=maybe", "true or false"),
            ("type,src=/h,dst=/c", "needs a value"),
            ("type=bind,,src=/h,dst=/c", "empty field"),
        ] {
            let err = parse_mount(bad).unwrap_err().to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn one_target_per_mount() {
        let paths = [Path::new("/a"), Path::new("/b/"), Path::new("/b")];
        assert_eq!(
            check_targets(paths.into_iter()),
            Err(Error::Duplicate("/b".into()))
        );
        assert!(check_targets([Path::new("/a"), Path::new("/a/b")].into_iter()).is_ok());
    }
}
