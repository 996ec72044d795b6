//! The OCI state directory (`--root`): one directory per container, its
//! record (state.json, written by `create`) and exec.fifo (gone once
//! started). Status is read from the kernel, not stored: the init's pid
//! and start time say whether it lives; the fifo says whether it was started.

use anyhow::{anyhow, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

/// The runc state directory default.
pub const DEFAULT_ROOT: &str = "/run/engine/oci";

/// What `create` records (state.json).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub pid: i32,
    /// Field 22 of /proc/PID/stat, so a reused pid is not taken for ours.
    pub start_time: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    /// The cgroup made for it, removed by `delete`.
    pub cgroup: Option<PathBuf>,
    /// poststop hooks, run by `delete`.
    #[serde(default)]
    pub poststop: Vec<oci_spec::runtime::Hook>,
    #[serde(default)]
    pub poststart: Vec<oci_spec::runtime::Hook>,
    /// What an exec applies too (the seccomp filter, the default capabilities).
    pub confinement: Option<crate::model::security::Confinement>,
    /// The init has a pid namespace of its own (`procs::members`).
    #[serde(default)]
    pub own_pid_ns: bool,
    /// The init's mount namespace, when it is its own (`procs::members`).
    #[serde(default)]
    pub mnt_ns: Option<NsId>,
}

/// How a namespace is named in a record (`procs::members` compares them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NsId {
    /// The kernel's unique ID (None: a kernel before 6.8).
    pub id: Option<u64>,
    /// The nsfs inode number.
    pub ino: u64,
}

impl NsId {
    /// The mount namespace of `pid`, or None if it is gone.
    pub fn mount_of(pid: i32) -> Option<NsId> {
        let fd = rustix::fs::open(
            format!("/proc/{pid}/ns/mnt"),
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .ok()?;
        Some(NsId {
            id: mount_ns_id(&fd),
            ino: rustix::fs::fstat(&fd).ok()?.st_ino,
        })
    }

    /// The same namespace: by ID when both have one, else by inode.
    pub(super) fn same(&self, other: &NsId) -> bool {
        match (self.id, other.id) {
            (Some(a), Some(b)) => a == b,
            _ => self.ino == other.ino,
        }
    }
}

/// NS_GET_MNTNS_ID (linux/nsfs.h): `_IOR(0xb7, 0x5, __u64)`.
fn mount_ns_id(fd: &OwnedFd) -> Option<u64> {
    const NS_GET_MNTNS_ID: rustix::ioctl::Opcode = rustix::ioctl::opcode::read::<u64>(0xb7, 0x5);
    // SAFETY: NS_GET_MNTNS_ID writes one u64, the size Getter passes; on
    // a kernel without it the ioctl fails with ENOTTY and writes nothing.
    unsafe { rustix::ioctl::ioctl(fd, rustix::ioctl::Getter::<NS_GET_MNTNS_ID, u64>::new()) }.ok()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Created,
    Running,
    Paused,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

/// The OCI state directory.
pub struct Root {
    pub dir: PathBuf,
}

/// An OCI container ID: what runc takes, and a file name of ours.
pub fn check_id(id: &str) -> Result<(), super::Error> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.+-".contains(&b));
    if !ok {
        return Err(super::Error::InvalidId(id.to_string()));
    }
    Ok(())
}

impl Root {
    pub fn new(dir: &Path) -> Root {
        Root {
            dir: dir.to_path_buf(),
        }
    }

    /// Creates the directory 0700, or makes it so (records hold the
    /// bundle's annotations and hooks), as `engine setup` does the native one.
    pub(super) fn make_private(&self) -> Result<()> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .with_context(|| format!("cannot create the state directory {}", self.dir.display()))?;
        std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot make state directory {} private", self.dir.display()))
    }

    pub(super) fn container_dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    pub fn fifo(&self, id: &str) -> PathBuf {
        self.container_dir(id).join("exec.fifo")
    }

    /// The record of `id`, or "does not exist" (containerd looks for those words).
    pub fn load(&self, id: &str) -> Result<Record, super::Error> {
        check_id(id)?;
        let file = self.container_dir(id).join("state.json");
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(super::Error::NoSuchContainer(id.to_string()))
            }
            Err(e) => return Err(anyhow!("cannot read {}: {e}", file.display()).into()),
        };
        let rec = serde_json::from_str(&text).with_context(|| {
            format!(
                "state {} is corrupt: remove it with `delete --force {id}`",
                file.display()
            )
        })?;
        Ok(rec)
    }

    pub(super) fn save(&self, rec: &Record) -> Result<()> {
        let dir = self.container_dir(&rec.id);
        let tmp = dir.join("state.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(rec)?)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, dir.join("state.json"))
            .with_context(|| format!("cannot write the state of {}", rec.id))
    }

    pub fn status(&self, rec: &Record) -> Status {
        if !alive(rec.pid, rec.start_time) {
            return Status::Stopped;
        }
        if self.fifo(&rec.id).exists() {
            Status::Created
        } else if rec.cgroup.as_ref().is_some_and(|cg| {
            std::fs::read_to_string(cg.join("cgroup.freeze")).is_ok_and(|f| f.trim() == "1")
        }) {
            Status::Paused
        } else {
            Status::Running
        }
    }

    /// Every container of this root, in name order.
    pub fn list(&self) -> Vec<String> {
        let mut ids: Vec<String> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().join("state.json").exists())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        ids.sort();
        ids
    }
}

/// Whether `pid` is the process that started at `start_time` and has not
/// exited (a zombie waiting for its subreaper counts as exited).
pub(super) fn alive(pid: i32, start_time: u64) -> bool {
    crate::sys::idlease::Proc {
        pid,
        start: start_time,
    }
    .alive()
}

/// The OCI state JSON (runtime-spec), plus runc's rootfs and created.
pub fn state_json(root: &Root, rec: &Record) -> serde_json::Value {
    let status = root.status(rec);
    serde_json::json!({
        "ociVersion": "1.2.0",
        "id": rec.id,
        "status": status.as_str(),
        "pid": if status == Status::Stopped { 0 } else { rec.pid },
        "bundle": rec.bundle,
        "rootfs": rec.rootfs,
        "created": rec.created,
        "owner": "",
        "annotations": rec.annotations,
    })
}

/// Now, as runc writes times (state `created`, the error log).
pub fn now_rfc3339() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(now.as_secs(), now.subsec_nanos())
}

/// UTC, as Go's time.RFC3339Nano prints it.
pub fn rfc3339(secs: u64, nanos: u32) -> String {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As Go's time.RFC3339Nano prints them (what podman parses).
    #[test]
    fn rfc3339_as_go_prints_it() {
        for (secs, nanos, want) in [
            (0, 0, "1970-01-01T00:00:00.000000000Z"),
            (951_782_400, 5, "2000-02-29T00:00:00.000000005Z"),
            (1_709_164_799, 999_999_999, "2024-02-28T23:59:59.999999999Z"),
            (1_735_689_600, 0, "2025-01-01T00:00:00.000000000Z"),
            (4_107_542_400, 0, "2100-03-01T00:00:00.000000000Z"),
        ] {
            assert_eq!(rfc3339(secs, nanos), want, "{secs}");
        }
    }

    #[test]
    fn container_ids_are_file_names() {
        for ok in ["a", "web-1", "x_y.z+1", &"a".repeat(1024)] {
            assert!(check_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "a b", "é", &"a".repeat(1025)] {
            assert!(check_id(bad).is_err(), "{bad:?}");
        }
    }

    /// A record reads back as written; a missing one "does not exist"
    /// (containerd looks for those words); a stopped init reads stopped.
    #[test]
    fn records_round_trip_and_a_dead_init_is_stopped() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Root::new(tmp.path());
        root.make_private().unwrap();
        let rec = Record {
            id: "c1".into(),
            pid: i32::MAX,
            start_time: 1,
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            created: rfc3339(0, 0),
            annotations: HashMap::new(),
            cgroup: None,
            poststop: Vec::new(),
            poststart: Vec::new(),
            confinement: None,
            own_pid_ns: false,
            mnt_ns: None,
        };
        std::fs::create_dir(root.container_dir("c1")).unwrap();
        root.save(&rec).unwrap();
        let back = root.load("c1").unwrap();
        assert_eq!((back.id.as_str(), back.pid), ("c1", i32::MAX));
        assert_eq!(root.status(&back), Status::Stopped);
        assert_eq!(state_json(&root, &back)["pid"], 0);
        assert_eq!(root.list(), ["c1"]);
        let e = root.load("c2").unwrap_err();
        assert!(
            matches!(&e, super::super::Error::NoSuchContainer(id) if id == "c2"),
            "{e:?}"
        );
        assert_eq!(e.to_string(), "container c2 does not exist");
    }
}
