//! `ENGINE_STATE_DIR`: one `NAME.json` per container while it runs, and a
//! lock that serializes names and address leases (a record's address is its
//! lease). Persistence only: what a record holds is its writer's
//! (`parent::record`), recovering what a dead engine left is
//! `parent::recovery`'s work.

use crate::sys::lock::{lock_file, Lock};
use serde::de::DeserializeOwned;
use serde::Serialize;
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

/// The state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    pub dir: PathBuf,
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
    pub fn new(dir: &Path) -> Self {
        StateDir {
            dir: dir.to_path_buf(),
        }
    }

    /// Creates the directory 0700 (records hold `-e` values, logs output).
    fn ensure(&self) -> Result<(), Error> {
        use std::os::unix::fs::DirBuilderExt;
        let mut builder = std::fs::DirBuilder::new();
        builder.mode(0o700);
        match builder.create(&self.dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
            Err(_) => {}
        }
        builder
            .recursive(true)
            .create(&self.dir)
            .map_err(|source| Error::CreateDir {
                dir: self.dir.clone(),
                source,
            })
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

    /// An exclusive lock over the whole state directory.
    pub fn lock(&self) -> Result<Lock, Error> {
        self.ensure()?;
        Ok(lock_file(&self.dir.join(".lock"))?)
    }

    pub fn path_of(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    /// Where a detached container's output goes.
    /// The directory of a bridged container's resolv.conf, hosts and hostname.
    pub fn etc_of(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.etc"))
    }

    /// A kept container's writable layer (the overlay's upper and work
    /// directories), on the state directory's file system: `engine start`
    /// runs it again with the same layer, `engine rm` removes it.
    pub fn layer_of(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.layer"))
    }

    /// Made by `stop` for a container with a restart policy: its
    /// supervisor does not run it again (`start` and `rm` remove it).
    pub fn stopped_mark_of(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.stopped"))
    }

    pub fn log_of(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.log"))
    }

    /// Writes `name`'s record atomically (temp file + rename).
    pub fn write<R: Serialize>(&self, name: &str, rec: &R) -> Result<(), Error> {
        self.ensure()?;
        let path = self.path_of(name);
        let tmp = self.dir.join(format!(".{name}.json.tmp"));
        let data = serde_json::to_vec_pretty(rec).map_err(Error::Encode)?;
        write_private(&tmp, &data)
            .and_then(|_| std::fs::rename(&tmp, &path))
            .map_err(|source| Error::Write { path, source })
    }

    pub fn read<R: DeserializeOwned>(&self, name: &str) -> Option<R> {
        let data = std::fs::read(self.path_of(name)).ok()?;
        serde_json::from_slice(&data).ok()
    }

    pub fn remove(&self, name: &str) {
        let _ = std::fs::remove_file(self.path_of(name));
    }

    /// Every entry, sorted by name; a file that cannot be decoded is an `Entry::Corrupt`.
    pub fn list<R: DeserializeOwned>(&self) -> Vec<Entry<R>> {
        let Ok(dir) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out: Vec<(String, Entry<R>)> = dir
            .flatten()
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
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out.into_iter().map(|(_, e)| e).collect()
    }
}

/// Writes `data` to a new file readable by its owner only.
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?
        .write_all(data)
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
