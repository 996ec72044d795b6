//! Host ID ranges for `--userns auto`, as podman's `--userns=auto`: every
//! running container gets 65536 host IDs (uids and gids alike) of its own,
//! taken from a pool the engine owns, so container root is an unprivileged
//! host uid that no other container and no ordinary user shares.
//!
//! The pool defaults to host IDs 2^30 .. 2^31 (16384 ranges): far above the
//! uids that distributions hand out (below 60000), above the `/etc/subuid`
//! ranges that `useradd` assigns (from 100000, 65536 per user, so they reach
//! 2^30 only after 16000 users), and below 2^31, which tools that store IDs in
//! a signed 32-bit int still handle. `ENGINE_USERNS_POOL=START:COUNT` (host
//! IDs, COUNT a multiple of 65536) chooses another pool, for instance one
//! that matches a `containers` entry in `/etc/subuid`.
//!
//! Each range taken is a lease file `userns-BASE` in a directory of the
//! engine's state, holding its owner's name; it is created under an flock on
//! `userns.lock` in that directory, so two engines starting at once never
//! take the same range. `release` gives it back at exit, and `leases` lists
//! them so stale recovery can free the range of a container that died with
//! its engine.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// IDs per container: the full 16-bit range a distribution expects.
pub const RANGE_SIZE: u32 = 65536;
/// Default first host ID of the pool: 2^30.
pub const DEFAULT_START: u32 = 1 << 30;
/// Default pool size in host IDs: 2^30, so the pool ends at 2^31.
pub const DEFAULT_COUNT: u32 = 1 << 30;
/// The environment variable that overrides the pool, `START:COUNT`.
pub const POOL_ENV: &str = "ENGINE_USERNS_POOL";

const LOCK_FILE: &str = "userns.lock";
const LEASE_PREFIX: &str = "userns-";

#[derive(Debug)]
pub enum IdRangeError {
    /// `ENGINE_USERNS_POOL` (or another source) is malformed.
    BadPool { value: String, why: String },
    /// An owner name that cannot be stored in a lease file.
    BadOwner(String),
    /// Every range of the pool is leased.
    PoolFull {
        start: u32,
        count: u32,
        dir: PathBuf,
    },
    /// The owner already holds a range (a name is leased once).
    AlreadyLeased { owner: String, base: u32 },
    Io {
        what: String,
        path: PathBuf,
        source: io::Error,
    },
}

impl fmt::Display for IdRangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdRangeError::BadPool { value, why } => write!(
                f,
                "{POOL_ENV}={value} is not a usable ID pool: {why}; give START:COUNT, host IDs, COUNT a multiple of {RANGE_SIZE}, e.g. {DEFAULT_START}:{DEFAULT_COUNT}"
            ),
            IdRangeError::BadOwner(owner) => write!(
                f,
                "{owner:?} cannot own an ID range: a container name must be non-empty, without '/' or a newline"
            ),
            IdRangeError::PoolFull { start, count, dir } => write!(
                f,
                "every one of the {} user namespace ID ranges of the pool {start}:{count} is in use (leases in {}): stop a container, or give a larger pool with {POOL_ENV}=START:COUNT",
                count / RANGE_SIZE,
                dir.display()
            ),
            IdRangeError::AlreadyLeased { owner, base } => write!(
                f,
                "container {owner} already holds the ID range starting at {base}: stop it first"
            ),
            IdRangeError::Io { what, path, source } => {
                write!(f, "cannot {what} {}: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for IdRangeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            IdRangeError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn io_err(what: &str, path: &Path) -> impl FnOnce(io::Error) -> IdRangeError {
    let (what, path) = (what.to_string(), path.to_path_buf());
    move |source| IdRangeError::Io { what, path, source }
}

/// A range held by a container: host IDs `base .. base + RANGE_SIZE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub owner: String,
    pub base: u32,
}

/// The host IDs the engine hands out, in whole ranges of `RANGE_SIZE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdPool {
    start: u32,
    count: u32,
}

impl Default for IdPool {
    fn default() -> Self {
        IdPool {
            start: DEFAULT_START,
            count: DEFAULT_COUNT,
        }
    }
}

impl IdPool {
    /// `START:COUNT` in host IDs. START must be at least 65536 (below it live
    /// the host's own users) and the pool must end below 2^32 - 1 (the
    /// invalid ID).
    pub fn new(start: u32, count: u32) -> Result<IdPool, IdRangeError> {
        let bad = |why: &str| IdRangeError::BadPool {
            value: format!("{start}:{count}"),
            why: why.into(),
        };
        if start < RANGE_SIZE {
            return Err(bad(
                "START must be at least 65536, above the host's own users",
            ));
        }
        if count == 0 || count % RANGE_SIZE != 0 {
            return Err(bad("COUNT must be a non-zero multiple of 65536"));
        }
        if start.checked_add(count).is_none() {
            return Err(bad("the pool must end below 2^32 - 1"));
        }
        Ok(IdPool { start, count })
    }

    /// The pool of `ENGINE_USERNS_POOL`, else the default 2^30:2^30.
    pub fn from_env() -> Result<IdPool, IdRangeError> {
        match std::env::var(POOL_ENV) {
            Ok(v) if !v.is_empty() => IdPool::parse(&v),
            _ => Ok(IdPool::default()),
        }
    }

    pub fn parse(value: &str) -> Result<IdPool, IdRangeError> {
        let bad = |why: &str| IdRangeError::BadPool {
            value: value.into(),
            why: why.into(),
        };
        let (start, count) = value
            .split_once(':')
            .ok_or_else(|| bad("there is no ':'"))?;
        let start = start
            .trim()
            .parse()
            .map_err(|_| bad("START is not a number below 2^32"))?;
        let count = count
            .trim()
            .parse()
            .map_err(|_| bad("COUNT is not a number below 2^32"))?;
        IdPool::new(start, count).map_err(|e| match e {
            IdRangeError::BadPool { why, .. } => bad(&why),
            other => other,
        })
    }

    pub fn start(&self) -> u32 {
        self.start
    }

    /// How many containers the pool can hold at once.
    pub fn ranges(&self) -> u32 {
        self.count / RANGE_SIZE
    }

    /// Leases the lowest free range of the pool to `owner` and returns its
    /// first host ID. `dir` is created (0700) if missing.
    pub fn reserve(&self, dir: &Path, owner: &str) -> Result<u32, IdRangeError> {
        check_owner(owner)?;
        let _lock = lock(dir)?;
        let held = read_leases(dir)?;
        if let Some(l) = held.iter().find(|l| l.owner == owner) {
            return Err(IdRangeError::AlreadyLeased {
                owner: owner.into(),
                base: l.base,
            });
        }
        let base = (0..self.ranges())
            .map(|i| self.start + i * RANGE_SIZE)
            .find(|b| !held.iter().any(|l| l.base == *b))
            .ok_or_else(|| IdRangeError::PoolFull {
                start: self.start,
                count: self.count,
                dir: dir.to_path_buf(),
            })?;
        write_lease(dir, base, owner)?;
        Ok(base)
    }
}

/// Gives back every range `owner` holds; returns whether it held one.
pub fn release(dir: &Path, owner: &str) -> Result<bool, IdRangeError> {
    let _lock = match lock_existing(dir)? {
        Some(lock) => lock,
        None => return Ok(false),
    };
    let mut found = false;
    for l in read_leases(dir)?.into_iter().filter(|l| l.owner == owner) {
        let path = lease_path(dir, l.base);
        match fs::remove_file(&path) {
            Ok(()) => found = true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("remove the ID range lease", &path)(e)),
        }
    }
    Ok(found)
}

/// Every range leased, lowest first (empty if `dir` does not exist).
pub fn leases(dir: &Path) -> Result<Vec<Lease>, IdRangeError> {
    match lock_existing(dir)? {
        Some(_lock) => read_leases(dir),
        None => Ok(Vec::new()),
    }
}

fn check_owner(owner: &str) -> Result<(), IdRangeError> {
    if owner.is_empty() || owner.contains(['/', '\n', '\0']) {
        return Err(IdRangeError::BadOwner(owner.into()));
    }
    Ok(())
}

fn lease_path(dir: &Path, base: u32) -> PathBuf {
    dir.join(format!("{LEASE_PREFIX}{base}"))
}

/// The pool's lock, held while it lives (flock on an open file description,
/// so threads of one process exclude each other as processes do).
struct PoolLock(#[allow(dead_code)] nix::fcntl::Flock<File>);

fn lock(dir: &Path) -> Result<PoolLock, IdRangeError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err("create the ID range directory", dir))?;
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(&path)
        .map_err(io_err("open the ID range lock", &path))?;
    flock(file, &path)
}

fn lock_existing(dir: &Path) -> Result<Option<PoolLock>, IdRangeError> {
    let path = dir.join(LOCK_FILE);
    match File::open(&path) {
        Ok(file) => flock(file, &path).map(Some),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("open the ID range lock", &path)(e)),
    }
}

fn flock(file: File, path: &Path) -> Result<PoolLock, IdRangeError> {
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map(PoolLock)
        .map_err(|(_, errno)| io_err("lock", path)(io::Error::from(errno)))
}

fn read_leases(dir: &Path) -> Result<Vec<Lease>, IdRangeError> {
    let mut out = Vec::new();
    let entries = fs::read_dir(dir).map_err(io_err("read the ID range directory", dir))?;
    for entry in entries {
        let entry = entry.map_err(io_err("read the ID range directory", dir))?;
        let name = entry.file_name();
        let Some(base) = name
            .to_str()
            .and_then(|n| n.strip_prefix(LEASE_PREFIX))
            .and_then(|b| b.parse::<u32>().ok())
        else {
            continue; // the lock, temporary files
        };
        let path = entry.path();
        let owner = fs::read_to_string(&path).map_err(io_err("read the ID range lease", &path))?;
        out.push(Lease {
            owner: owner.trim_end_matches('\n').to_string(),
            base,
        });
    }
    out.sort_by_key(|l| l.base);
    Ok(out)
}

/// Written whole to a temporary name, then renamed: a lease is never seen
/// half-written, even by a reader that ignores the lock.
fn write_lease(dir: &Path, base: u32, owner: &str) -> Result<(), IdRangeError> {
    let tmp = dir.join(format!(".{LEASE_PREFIX}{base}.tmp"));
    let path = lease_path(dir, base);
    let write = || -> io::Result<()> {
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&tmp)?;
        f.write_all(format!("{owner}\n").as_bytes())?;
        // No fsync: a lease only matters while its container runs, and none
        // survives a crash of the machine; the fsync cost 2 ms or more a
        // start on a busy disk.
        fs::rename(&tmp, &path)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io_err("write the ID range lease", &path)(e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::Arc;

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("engine-idrange-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn default_pool_is_far_from_users() {
        let p = IdPool::default();
        assert_eq!(p.start(), 1 << 30);
        assert_eq!(p.ranges(), 16384);
        assert_eq!(IdPool::parse("1073741824:1073741824").unwrap(), p);
    }

    #[test]
    fn bad_pools_are_refused_with_a_sentence() {
        for v in [
            "",
            "5",
            "x:65536",
            "100000:1000",
            "0:65536",
            "4294901760:65536",
            "100000:0",
        ] {
            let e = IdPool::parse(v).unwrap_err();
            assert!(
                matches!(e, IdRangeError::BadPool { .. }) && e.to_string().contains("START:COUNT"),
                "{v}: {e}"
            );
        }
        assert!(IdPool::parse("100000:131072").is_ok());
    }

    #[test]
    fn concurrent_reservations_get_distinct_ranges() {
        let dir = Arc::new(scratch("concurrent"));
        let pool = IdPool::new(200_000, 64 * RANGE_SIZE).unwrap();
        let threads: Vec<_> = (0..16)
            .map(|i| {
                let dir = dir.clone();
                std::thread::spawn(move || {
                    (0..4)
                        .map(|j| pool.reserve(&dir, &format!("c{i}-{j}")).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let bases: Vec<u32> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        let distinct: HashSet<_> = bases.iter().collect();
        assert_eq!(distinct.len(), 64, "{bases:?}");
        for b in &bases {
            assert!(
                *b >= 200_000 && (b - 200_000) % RANGE_SIZE == 0 && *b < 200_000 + 64 * RANGE_SIZE
            );
        }
        let listed = leases(&dir).unwrap();
        assert_eq!(listed.len(), 64);
        assert!(listed.iter().any(|l| l.owner == "c3-2"));
        fs::remove_dir_all(&*dir).unwrap();
    }

    #[test]
    fn release_frees_the_range_for_reuse_and_full_pool_is_an_error() {
        let dir = scratch("reuse");
        let pool = IdPool::new(300_000, 3 * RANGE_SIZE).unwrap();
        let a = pool.reserve(&dir, "a").unwrap();
        let b = pool.reserve(&dir, "b").unwrap();
        let c = pool.reserve(&dir, "c").unwrap();
        assert_eq!(
            (a, b, c),
            (300_000, 300_000 + RANGE_SIZE, 300_000 + 2 * RANGE_SIZE)
        );

        let full = pool.reserve(&dir, "d").unwrap_err();
        assert!(matches!(full, IdRangeError::PoolFull { .. }), "{full}");
        assert!(full.to_string().contains("ENGINE_USERNS_POOL"), "{full}");
        let twice = pool.reserve(&dir, "a").unwrap_err();
        assert!(
            matches!(twice, IdRangeError::AlreadyLeased { base: 300_000, .. }),
            "{twice}"
        );

        assert!(release(&dir, "b").unwrap());
        assert!(!release(&dir, "b").unwrap());
        assert_eq!(
            leases(&dir).unwrap(),
            vec![
                Lease {
                    owner: "a".into(),
                    base: a
                },
                Lease {
                    owner: "c".into(),
                    base: c
                }
            ]
        );
        assert_eq!(
            pool.reserve(&dir, "d").unwrap(),
            b,
            "the freed range is reused"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_directory_has_no_leases_and_bad_owners_are_refused() {
        let dir = scratch("missing");
        assert!(leases(&dir).unwrap().is_empty());
        assert!(!release(&dir, "x").unwrap());
        let pool = IdPool::default();
        for owner in ["", "a/b", "a\nb"] {
            assert!(matches!(
                pool.reserve(&dir, owner),
                Err(IdRangeError::BadOwner(_))
            ));
        }
        assert!(!dir.exists(), "a refused owner creates nothing");
    }
}
