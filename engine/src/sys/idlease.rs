//! Host-wide leases of host IDs: every container that runs in a user
//! namespace the engine maps holds one lease file under [`LEASE_ROOT`],
//! whatever its state directory, so that two engines (two
//! `ENGINE_STATE_DIR`s, or `engine run` and the OCI verbs) never hand out
//! overlapping IDs.
//!
//! A lease names its holders: the engine process that supervises the
//! container (absent for an OCI container once `create` has returned) and
//! the container's init, each by pid and start time (field 22 of
//! /proc/PID/stat, so a reused pid is no holder). A lease is live while
//! either lives; a dead one frees itself: whoever takes the lock next
//! removes it. The lock (`flock` on `.lock`) is held only to read the
//! leases and write one, so taking IDs is atomic across engines; the
//! lease outlives it (an OCI `create` returns while its container runs).
//!
//! The file of a lease is named after its state directory and container
//! name, so the recovery of a state directory finds its own without reading
//! the others'.

use crate::sys::lock::{lock_file, Lock};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Why a lease could not be taken or written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot create the ID lease directory {}", .dir.display())]
    CreateDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Lock(#[from] crate::sys::lock::Error),
    #[error("cannot encode an ID lease")]
    Encode(#[source] serde_json::Error),
    #[error("cannot write the ID lease {}", .path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

type Result<T, E = Error> = std::result::Result<T, E>;

/// Where the leases of the whole host live. Fixed: a lease root per state
/// directory (or per environment) would let engines overlap again.
pub const LEASE_ROOT: &str = "/run/engine-userns";

/// A process, by pid and start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proc {
    pub pid: i32,
    pub start: u64,
}

impl Proc {
    /// `pid` as it is now; None if it does not exist.
    pub fn of(pid: i32) -> Option<Proc> {
        let (start, _) = stat(pid)?;
        Some(Proc { pid, start })
    }

    /// Whether it still runs (a zombie has ended: a pid namespace's init
    /// is one only once every other process of the namespace is gone).
    pub fn alive(&self) -> bool {
        self.pid > 0
            && stat(self.pid)
                .is_some_and(|(start, state)| start == self.start && state != 'Z' && state != 'X')
    }
}

/// Start time and state of /proc/PID/stat.
fn stat(pid: i32) -> Option<(u64, char)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parens; fields follow the last ')'.
    let rest = text.get(text.rfind(')')? + 2..)?;
    let mut fields = rest.split(' ');
    let state = fields.next()?.chars().next()?;
    let start = fields.nth(18)?.parse().ok()?;
    Some((start, state))
}

/// IDs one container holds, and who holds them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The state directory (canonical) and the container's name in it.
    pub state_dir: PathBuf,
    pub name: String,
    /// Host uid and gid spans, `(start, count)`.
    pub uids: Vec<(u32, u32)>,
    pub gids: Vec<(u32, u32)>,
    /// An OCI container's IDs are its caller's choice (a pod's containers
    /// share theirs): they may overlap other shared leases, never one that
    /// is not.
    pub shared: bool,
    pub engine: Option<Proc>,
    pub init: Option<Proc>,
}

impl Lease {
    pub fn alive(&self) -> bool {
        self.engine.is_some_and(|p| p.alive()) || self.init.is_some_and(|p| p.alive())
    }

    /// Whether it holds any of these uids or gids.
    pub fn overlaps(&self, uids: &[(u32, u32)], gids: &[(u32, u32)]) -> bool {
        let any = |held: &[(u32, u32)], asked: &[(u32, u32)]| {
            held.iter()
                .any(|h| asked.iter().any(|a| spans_overlap(*h, *a)))
        };
        any(&self.uids, uids) || any(&self.gids, gids)
    }

    /// Every span it holds, uids and gids (for the pool, which maps both
    /// from one base).
    pub fn spans(&self) -> Vec<(u32, u32)> {
        self.uids.iter().chain(&self.gids).copied().collect()
    }

    /// "container NAME of ENGINE_STATE_DIR DIR", for messages.
    pub fn holder(&self) -> String {
        format!(
            "container {} (state directory {})",
            self.name,
            self.state_dir.display()
        )
    }
}

pub fn spans_overlap((a, n): (u32, u32), (b, m): (u32, u32)) -> bool {
    let (a, b) = (u64::from(a), u64::from(b));
    a < b + u64::from(m) && b < a + u64::from(n)
}

/// The directory of the leases.
#[derive(Debug, Clone)]
pub struct Leases {
    dir: PathBuf,
}

impl Leases {
    /// The host's leases, at [`LEASE_ROOT`].
    pub fn host() -> Leases {
        Leases {
            dir: PathBuf::from(LEASE_ROOT),
        }
    }

    #[cfg(test)]
    fn at(dir: &Path) -> Leases {
        Leases {
            dir: dir.to_path_buf(),
        }
    }

    /// The lock over every lease of the host; makes the directory (0700).
    pub fn lock(&self) -> Result<Locked<'_>> {
        use std::os::unix::fs::DirBuilderExt;
        match std::fs::DirBuilder::new().mode(0o700).create(&self.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(source) => {
                return Err(Error::CreateDir {
                    dir: self.dir.clone(),
                    source,
                })
            }
        }
        Ok(Locked {
            leases: self,
            _lock: lock_file(&self.dir.join(".lock"))?,
        })
    }

    /// The file of the lease of `name` in `state_dir`: a prefix for the
    /// state directory, so its recovery lists only its own.
    fn file_of(&self, state_dir: &Path, name: &str) -> PathBuf {
        self.dir.join(format!(
            "{}-{}.json",
            prefix_of(state_dir),
            hex16(name.as_bytes())
        ))
    }

    /// The leases of `state_dir` with their files, read without the lock
    /// (for its recovery, which holds that directory's lock: no other
    /// engine writes them meanwhile).
    pub fn of_state_dir(&self, state_dir: &Path) -> Vec<(PathBuf, Option<Lease>)> {
        let prefix = format!("{}-", prefix_of(state_dir));
        let Ok(dir) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        dir.flatten()
            .filter(|e| {
                let n = e.file_name();
                let n = n.to_string_lossy();
                n.starts_with(&prefix) && n.ends_with(".json")
            })
            .map(|e| (e.path(), read(&e.path())))
            .collect()
    }

    /// Removes the lease of `name` in `state_dir` if no engine holds it any
    /// more (a dead engine's container is recovered by killing it).
    pub fn remove_if_engine_dead(&self, state_dir: &Path, name: &str) {
        let file = self.file_of(&canonical(state_dir), name);
        if read(&file).is_none_or(|l| !l.engine.is_some_and(|p| p.alive())) {
            let _ = std::fs::remove_file(file);
        }
    }

    /// Removes the lease of `name` in `state_dir`, whoever holds it.
    pub fn remove(&self, state_dir: &Path, name: &str) {
        let _ = std::fs::remove_file(self.file_of(&canonical(state_dir), name));
    }
}

/// The leases, locked.
pub struct Locked<'a> {
    leases: &'a Leases,
    _lock: Lock,
}

impl Locked<'_> {
    /// Every live lease. The files of dead ones, unreadable ones and the
    /// temp files of writers that died are removed (only lock holders write).
    pub fn live(&self) -> Vec<Lease> {
        let Ok(dir) = std::fs::read_dir(&self.leases.dir) else {
            return Vec::new();
        };
        let mut live = Vec::new();
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name == ".lock" {
                continue;
            }
            match read(&e.path()).filter(|_| name.ends_with(".json")) {
                Some(lease) if lease.alive() => live.push(lease),
                _ => {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        live
    }

    /// Writes `lease` (the caller has checked it against `live`). It is
    /// removed when the returned `Held` is dropped in this process.
    pub fn write(&self, mut lease: Lease) -> Result<Held> {
        lease.state_dir = canonical(&lease.state_dir);
        let path = self.leases.file_of(&lease.state_dir, &lease.name);
        write_atomic(&path, &lease)?;
        Ok(Held {
            leases: self.leases.clone(),
            path,
            lease,
            writer: std::process::id(),
            armed: true,
        })
    }
}

/// A lease this process wrote.
pub struct Held {
    leases: Leases,
    path: PathBuf,
    lease: Lease,
    /// Only the process that wrote it removes it on drop: not a fork of it
    /// (the log relay, the container's child before exec).
    writer: u32,
    armed: bool,
}

impl Held {
    /// The container's init holds the lease too (and alone, without
    /// `engine`): written under the lock, as a new lease is.
    pub fn set_holders(&mut self, engine: Option<Proc>, init: Option<Proc>) -> Result<()> {
        let _locked = self.leases.lock()?;
        self.lease.engine = engine;
        self.lease.init = init;
        write_atomic(&self.path, &self.lease)
    }

    /// Leaves the file in place: its holders' lives decide from now on.
    pub fn keep(mut self) {
        self.armed = false;
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.armed && std::process::id() == self.writer {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn read(path: &Path) -> Option<Lease> {
    let data = std::fs::read(path).ok()?;
    serde_json::from_slice(&data).ok()
}

/// Writes through a temp file and a rename: no reader sees half a lease.
fn write_atomic(path: &Path, lease: &Lease) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let data = serde_json::to_vec(lease).map_err(Error::Encode)?;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(&data))
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|source| Error::Write {
            path: path.to_owned(),
            source,
        })
}

/// One spelling per directory: the lease of a state directory named two
/// ways is still found.
fn canonical(dir: &Path) -> PathBuf {
    std::fs::canonicalize(dir)
        .or_else(|_| std::path::absolute(dir))
        .unwrap_or_else(|_| dir.to_path_buf())
}

fn prefix_of(state_dir: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    hex16(canonical(state_dir).as_os_str().as_bytes())
}

/// 16 hex digits of the sha256 of `data`.
fn hex16(data: &[u8]) -> String {
    Sha256::digest(data)[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(dir: &Path, name: &str, base: u32, engine: Option<Proc>) -> Lease {
        Lease {
            state_dir: dir.to_path_buf(),
            name: name.into(),
            uids: vec![(base, 65536)],
            gids: vec![(base, 65536)],
            shared: false,
            engine,
            init: None,
        }
    }

    /// A process that has exited: a child we reaped.
    fn dead() -> Proc {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let proc = Proc::of(child.id() as i32).unwrap();
        child.wait().unwrap();
        proc
    }

    #[test]
    fn spans_overlap_only_when_they_share_an_id() {
        assert!(spans_overlap((10, 5), (14, 1)));
        assert!(!spans_overlap((10, 5), (15, 1)));
        assert!(!spans_overlap((15, 1), (10, 5)));
        assert!(spans_overlap((u32::MAX - 1, 1), (0, u32::MAX)));
    }

    #[test]
    fn live_leases_are_kept_and_dead_ones_removed() {
        let root = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let leases = Leases::at(&root.path().join("leases"));
        let me = Proc::of(std::process::id() as i32).unwrap();
        assert!(me.alive());
        let locked = leases.lock().unwrap();
        let mine = locked
            .write(lease(state.path(), "a", 1 << 30, Some(me)))
            .unwrap();
        let theirs = locked
            .write(lease(state.path(), "b", 2 << 30, Some(dead())))
            .unwrap();
        theirs.keep();
        std::fs::write(root.path().join("leases/x.tmp"), "half").unwrap();
        std::fs::write(root.path().join("leases/y.json"), "not json").unwrap();
        let live = locked.live();
        assert_eq!(live.len(), 1, "{live:?}");
        assert_eq!(live[0].name, "a");
        assert!(live[0].overlaps(&[((1 << 30) + 65535, 1)], &[]));
        assert!(!live[0].overlaps(&[((1 << 30) + 65536, 1)], &[((1 << 30) - 1, 1)]));
        let left: Vec<_> = std::fs::read_dir(root.path().join("leases"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != ".lock")
            .collect();
        assert_eq!(
            left.len(),
            1,
            "dead, temp or corrupt files are left: {left:?}"
        );
        drop(locked);
        drop(mine);
        assert!(
            leases.lock().unwrap().live().is_empty(),
            "a dropped lease is left"
        );
    }

    #[test]
    fn a_lease_lives_while_its_engine_or_its_init_lives() {
        let me = Proc::of(std::process::id() as i32).unwrap();
        let state = Path::new("/s");
        let mut l = lease(state, "a", 1 << 30, Some(dead()));
        assert!(!l.alive());
        l.init = Some(me);
        assert!(l.alive(), "the init lives on after its engine");
        l.init = Some(dead());
        l.engine = Some(me);
        assert!(l.alive());
        assert!(
            !Proc {
                pid: me.pid,
                start: me.start + 1
            }
            .alive(),
            "a reused pid"
        );
    }

    #[test]
    fn a_state_directory_finds_its_own_leases_by_any_spelling() {
        let root = tempfile::tempdir().unwrap();
        let one = tempfile::tempdir().unwrap();
        let two = tempfile::tempdir().unwrap();
        let leases = Leases::at(root.path());
        let me = Proc::of(std::process::id() as i32);
        let locked = leases.lock().unwrap();
        let a = locked.write(lease(one.path(), "a", 1 << 30, me)).unwrap();
        let _b = locked.write(lease(two.path(), "a", 2 << 30, me)).unwrap();
        drop(locked);
        let spelled = one.path().join("..").join(one.path().file_name().unwrap());
        let found = leases.of_state_dir(&spelled);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].1.as_ref().unwrap().uids, vec![(1 << 30, 65536)]);
        leases.remove_if_engine_dead(one.path(), "a");
        assert_eq!(leases.of_state_dir(one.path()).len(), 1, "its engine lives");
        a.keep();
        leases.remove(&spelled, "a");
        assert!(leases.of_state_dir(one.path()).is_empty());
        assert_eq!(leases.of_state_dir(two.path()).len(), 1);
    }
}
