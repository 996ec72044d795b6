//! `ENGINE_STATE_DIR`: one `NAME.json` per container while it runs, and a
//! lock that serializes names and address leases (a record's address is its
//! lease); `ENGINE_DATA_DIR`: the records, logs and writable layers of kept
//! containers, which outlive a reboot. Persistence only: what a record
//! holds is its writer's (`parent::record`), recovering what a dead engine
//! left is `parent::recovery`'s work.

use crate::sys::lock::{lock_file, Lock};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// Why the state directory or a record in it could not be written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot create state directory {}", .dir.display())]
    CreateDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot make state directory {} private", .dir.display())]
    MakePrivate {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("data directory {} holds the kept containers of the engine whose state directory is {}: give this one (ENGINE_STATE_DIR={}) its own ENGINE_DATA_DIR, or remove those containers with `engine rm` under that ENGINE_STATE_DIR", .data.display(), .other.display(), .me.display())]
    DataDirTaken {
        data: PathBuf,
        other: PathBuf,
        me: PathBuf,
    },
    #[error("cannot mark data directory {} as this state directory's", .data.display())]
    MarkData {
        data: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Lock(#[from] crate::sys::lock::Error),
    #[error("cannot encode state")]
    Encode(#[source] serde_json::Error),
    #[error("cannot write state file {}", .path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The state directory, and the data directory beside it.
#[derive(Debug, Clone)]
pub struct StateDir {
    /// `ENGINE_STATE_DIR` (a tmpfs by default, emptied by a reboot): the
    /// lock, the records of containers that are not kept, `NAME.etc`,
    /// stop marks, the logs of `-d --rm` containers.
    pub dir: PathBuf,
    /// `ENGINE_DATA_DIR`, on disk: a kept container's record, log and
    /// writable layer, which outlive a reboot until `engine rm`. Made
    /// only when the first kept container is.
    pub data: PathBuf,
}

/// A record says where it lives: a kept one in the data directory.
pub trait Placed {
    fn kept(&self) -> bool;
}

/// One file of the state directory, as `list` found it.
#[derive(Debug, Clone)]
pub enum Entry<R> {
    Record(Box<R>),
    /// A `NAME.json` that cannot be read or decoded. Its name still tells
    /// what the container owned (cgroup, veth).
    Corrupt {
        name: String,
        file: PathBuf,
    },
}

impl StateDir {
    pub fn new(dir: &Path, data: &Path) -> Self {
        StateDir {
            dir: dir.to_path_buf(),
            data: data.to_path_buf(),
        }
    }

    /// Creates the directory 0700 (records hold `-e` values, logs output).
    fn ensure(&self) -> Result<(), Error> {
        make_private_dir(&self.dir)
    }

    /// Creates the data directory 0700 (for a kept container only), and
    /// marks it as this state directory's: its records are guarded by
    /// this directory's lock, so another state directory may take it only
    /// once it holds no record.
    pub fn ensure_data(&self) -> Result<(), Error> {
        make_private_dir(&self.data)?;
        let me = self.absolute();
        let mark = self.data.join(OWNER_MARK);
        match std::fs::read(&mark) {
            Ok(owner) if owner == me.as_os_str().as_bytes() => return Ok(()),
            Ok(owner) if !list_dir::<serde::de::IgnoredAny>(&self.data).is_empty() => {
                return Err(Error::DataDirTaken {
                    data: self.data.clone(),
                    other: PathBuf::from(std::ffi::OsString::from_vec(owner)),
                    me,
                })
            }
            _ => {}
        }
        let tmp = self.data.join(format!(".{OWNER_MARK}.tmp"));
        write_private(&tmp, me.as_os_str().as_bytes(), true)
            .and_then(|_| std::fs::rename(&tmp, &mark))
            .map_err(|source| Error::MarkData {
                data: self.data.clone(),
                source,
            })
    }

    /// Whether the data directory is this state directory's (or no one's
    /// yet): only then are its records this engine's to list and recover.
    pub fn data_is_ours(&self) -> bool {
        match std::fs::read(self.data.join(OWNER_MARK)) {
            Ok(owner) => owner == self.absolute().as_os_str().as_bytes(),
            Err(_) => true,
        }
    }

    /// The state directory as its mark in the data directory names it
    /// (`/var/run/engine` is `/run/engine`).
    fn absolute(&self) -> PathBuf {
        std::fs::canonicalize(&self.dir)
            .or_else(|_| std::path::absolute(&self.dir))
            .unwrap_or_else(|_| self.dir.clone())
    }

    /// Makes an existing state directory private again (for `engine setup`).
    pub fn make_private(&self) -> Result<(), Error> {
        use std::os::unix::fs::PermissionsExt;
        self.ensure()?;
        std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700)).map_err(
            |source| Error::MakePrivate {
                dir: self.dir.clone(),
                source,
            },
        )
    }

    /// An exclusive lock over the whole state directory (and its data
    /// directory).
    pub fn lock(&self) -> Result<Lock, Error> {
        self.ensure()?;
        Ok(lock_file(&self.dir.join(".lock"))?)
    }

    /// The directory a record (and its log) lives in.
    fn home(&self, kept: bool) -> &Path {
        if kept {
            &self.data
        } else {
            &self.dir
        }
    }

    /// Whether `name` has a record, in either directory.
    pub fn has_record(&self, name: &str) -> bool {
        let file = format!("{name}.json");
        self.dir.join(&file).exists() || self.data.join(file).exists()
    }

    /// The directory of a bridged container's resolv.conf, hosts and hostname.
    pub fn etc_of(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.etc"))
    }

    /// A kept container's writable layer (the overlay's upper and work
    /// directories), in the data directory: `engine start` runs it again
    /// with the same layer, after a reboot too; `engine rm` removes it.
    pub fn layer_of(&self, name: &str) -> PathBuf {
        self.data.join(format!("{name}.layer"))
    }

    /// Made by `stop` for a container with a restart policy: its
    /// supervisor does not run it again (`start` and `rm` remove it).
    pub fn stopped_mark_of(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.stopped"))
    }

    /// Where a detached container's output goes: beside its record.
    pub fn log_of(&self, name: &str, kept: bool) -> PathBuf {
        self.home(kept).join(format!("{name}.log"))
    }

    /// The log `engine logs` reads: a kept container's, else that of a
    /// `-d --rm` one.
    pub fn find_log(&self, name: &str) -> PathBuf {
        let kept = self.log_of(name, true);
        if kept.exists() && self.data_is_ours() {
            kept
        } else {
            self.log_of(name, false)
        }
    }

    /// Writes `name`'s record atomically (temp file + rename), a kept one
    /// in the data directory, flushed to disk (it is to outlive a reboot).
    pub fn write<R: Serialize + Placed>(&self, name: &str, rec: &R) -> Result<(), Error> {
        let kept = rec.kept();
        if kept {
            self.ensure_data()?;
        } else {
            self.ensure()?;
        }
        let dir = self.home(kept);
        let path = dir.join(format!("{name}.json"));
        let tmp = dir.join(format!(".{name}.json.tmp"));
        let data = serde_json::to_vec_pretty(rec).map_err(Error::Encode)?;
        write_private(&tmp, &data, kept)
            .and_then(|_| std::fs::rename(&tmp, &path))
            .map_err(|source| Error::Write { path, source })?;
        if kept {
            // One place per record: none left by an engine that kept
            // records in the state directory.
            let _ = std::fs::remove_file(self.dir.join(format!("{name}.json")));
        }
        Ok(())
    }

    pub fn read<R: DeserializeOwned>(&self, name: &str) -> Option<R> {
        let file = format!("{name}.json");
        let data = match std::fs::read(self.dir.join(&file)) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && self.data_is_ours() => {
                std::fs::read(self.data.join(&file)).ok()?
            }
            data => data.ok()?,
        };
        serde_json::from_slice(&data).ok()
    }

    /// Removes `name`'s record from whichever directory holds it; with the
    /// data directory's last record goes its mark (any state directory
    /// may take it then).
    pub fn remove(&self, name: &str) {
        let file = format!("{name}.json");
        // A record that is not kept goes with one unlink.
        if let Err(e) = std::fs::remove_file(self.dir.join(&file)) {
            if e.kind() == std::io::ErrorKind::NotFound
                && std::fs::remove_file(self.data.join(file)).is_ok()
            {
                self.unmark_data_if_unused();
            }
        }
    }

    /// Removes the data directory's mark if it is ours and no record is
    /// left (a kept run that failed before its record made it): any state
    /// directory may take the directory then. Call with the lock held.
    pub fn unmark_data_if_unused(&self) {
        let mark = self.data.join(OWNER_MARK);
        if mark.exists()
            && self.data_is_ours()
            && list_dir::<serde::de::IgnoredAny>(&self.data).is_empty()
        {
            let _ = std::fs::remove_file(mark);
        }
    }

    /// Every entry of both directories, sorted by name; a file that cannot
    /// be decoded is an `Entry::Corrupt`.
    pub fn list<R: DeserializeOwned>(&self) -> Vec<Entry<R>> {
        let mut out: Vec<(String, Entry<R>)> = list_dir(&self.dir);
        let mut kept = list_dir(&self.data);
        // Checked only when there is something (a foreground run on a
        // host without kept containers pays one failed open).
        if !kept.is_empty() && !self.data_is_ours() {
            kept.clear();
        }
        // One name, one record: a (kept) copy in the state directory is
        // an older engine's, and `write` will move it.
        kept.retain(|(name, _)| !out.iter().any(|(n, _)| n == name));
        out.append(&mut kept);
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out.into_iter().map(|(_, e)| e).collect()
    }
}

/// The data directory's mark: the state directory whose lock guards it.
const OWNER_MARK: &str = ".state-dir";

/// Creates `dir` (and its parents) 0700.
fn make_private_dir(dir: &Path) -> Result<(), Error> {
    use std::os::unix::fs::DirBuilderExt;
    let mut builder = std::fs::DirBuilder::new();
    builder.mode(0o700);
    match builder.create(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(_) => {}
    }
    builder
        .recursive(true)
        .create(dir)
        .map_err(|source| Error::CreateDir {
            dir: dir.to_path_buf(),
            source,
        })
}

/// The `NAME.json` records of one directory, by name.
fn list_dir<R: DeserializeOwned>(dir: &Path) -> Vec<(String, Entry<R>)> {
    let Ok(dir) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let file_name = e.file_name();
            let file_name = file_name.to_string_lossy();
            let name = file_name.strip_suffix(".json")?.to_string();
            if name.is_empty() || name.starts_with('.') {
                return None;
            }
            let file = e.path();
            // A supervisor removes its record without the lock: one that
            // vanished since the listing is gone, not unreadable.
            let data = match std::fs::read(&file) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
                data => data.ok(),
            };
            let decoded = data.and_then(|data| serde_json::from_slice::<R>(&data).ok());
            Some(match decoded {
                Some(rec) => (name, Entry::Record(Box::new(rec))),
                None => (name.clone(), Entry::Corrupt { name, file }),
            })
        })
        .collect()
}

/// This boot of the host (`/proc/sys/kernel/random/boot_id`): a kept
/// record stores it, so that a record of an earlier boot is known for an
/// ended container's whatever its pids now name.
pub fn boot_id() -> Option<String> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    Some(id.trim().to_string()).filter(|id| !id.is_empty())
}

/// Whether a record written in boot `recorded` is of another boot than
/// `now`. Unknown on either side (a record that is not kept, or of an
/// engine from before boot ids; no /proc): not known to be, so the pid
/// and start time decide alone.
pub fn of_another_boot(recorded: Option<&str>, now: Option<&str>) -> bool {
    matches!((recorded, now), (Some(a), Some(b)) if a != b)
}

/// Writes `data` to a new file readable by its owner only.
/// With `durable`, on disk before it is renamed into place.
fn write_private(path: &Path, data: &[u8], durable: bool) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(data)?;
    if durable {
        file.sync_all()?;
    }
    Ok(())
}

/// Field 22 of /proc/PID/stat: start time in clock ticks since boot.
pub fn process_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parens; fields follow the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_of_another_boot_is_known_only_when_both_ids_are() {
        let (a, b) = (Some("6a1c-boot-a"), Some("90fe-boot-b"));
        assert!(of_another_boot(a, b));
        assert!(!of_another_boot(a, a));
        assert!(!of_another_boot(None, b));
        assert!(!of_another_boot(a, None));
        assert!(!of_another_boot(None, None));
    }

    #[test]
    fn this_boot_has_an_id() {
        let id = boot_id().expect("/proc/sys/kernel/random/boot_id");
        assert_eq!(id.len(), 36, "{id}");
    }
}
