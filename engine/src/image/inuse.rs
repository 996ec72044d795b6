//! Which images running containers use: one marker file per running
//! container in the store's `running/`, flocked by the engine process that
//! supervises the container for as long as it runs. `rmi` and `prune`
//! (under the records lock) count only markers whose flock is held: the
//! kernel drops a flock with its last holder, so an engine killed by
//! SIGKILL pins nothing, and its marker is removed by the next look.
//! Markers live in the store, not in a state directory: engines with
//! different `ENGINE_STATE_DIR`s sharing one store still see each other.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

/// What a marker says.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Use {
    pub container: String,
    /// The image ID.
    pub id: String,
    /// Its diff IDs.
    pub layers: Vec<String>,
}

/// A marker held for a running container; removed when dropped (its
/// flock goes with the file's close, whatever happens).
pub struct Held {
    path: PathBuf,
    file: File,
}

impl Held {
    /// For `run -d`: the supervisor forked from this process holds the
    /// flock on; this process neither closes nor removes the marker (it
    /// exits soon; the marker goes stale when the supervisor ends, and the
    /// next look removes it).
    pub fn hand_over(self) {
        std::mem::forget(self);
    }

    /// The locked file, for a process that must hold the flock on past
    /// this one (the monitor of `run -d`, which outlives its supervisor).
    pub fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.file.as_fd()
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Marks the image `id` (with `layers`) of the store at `root` as used by
/// `container` (the caller holds the records lock and has checked that
/// the layers are there).
pub(super) fn hold(root: &Path, container: &str, id: &str, layers: &[String]) -> Result<Held> {
    // Sweeps the markers of ended engines on the way.
    live(root)?;
    let dir = root.join("running");
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = (0..)
        .map(|n| dir.join(format!("{}-{n}.json", std::process::id())))
        .find(|p| !p.exists())
        .expect("a free marker name exists");
    let mut file = File::options()
        .write(true)
        .create_new(true)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    let held = Held {
        path: path.clone(),
        file: file.try_clone()?,
    };
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
        .with_context(|| format!("cannot lock {}", path.display()))?;
    let marker = Use {
        container: container.to_string(),
        id: id.to_string(),
        layers: layers.to_vec(),
    };
    file.write_all(&serde_json::to_vec(&marker)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(held)
}

/// The uses of running containers; markers no process holds any more are
/// removed. The caller holds the records lock of the store at `root`.
pub(super) fn live(root: &Path) -> Result<Vec<Use>> {
    let dir = root.join("running");
    let entries = match fs::read_dir(&dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        other => other.with_context(|| format!("cannot read {}", dir.display()))?,
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let Ok(file) = File::open(&path) else {
            continue;
        };
        let free =
            rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_ok();
        if free {
            // Its engine is gone (SIGKILL, power loss).
            let _ = fs::remove_file(&path);
            continue;
        }
        // A marker being written is held and complete once the records
        // lock is free; an unreadable one still counts, by its layers unknown.
        if let Ok(u) = serde_json::from_slice::<Use>(&fs::read(&path).unwrap_or_default()) {
            out.push(u);
        }
    }
    Ok(out)
}

/// Whether `key` (a layer or blob's hex) is used by a running container.
pub(super) fn uses_key(uses: &[Use], key: &str) -> bool {
    let hex = |d: &str| d.strip_prefix("sha256:").unwrap_or(d).to_string();
    uses.iter()
        .any(|u| hex(&u.id) == key || u.layers.iter().any(|l| hex(l) == key))
}
