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
//! This module is the pool only: which ranges exist and which is the lowest
//! free one. Which IDs are taken is `sys::idlease`'s: one host-wide lease
//! per container, whatever its state directory.

/// IDs per container: the full 16-bit range a distribution expects.
pub const RANGE_SIZE: u32 = 65536;
/// Default first host ID of the pool: 2^30.
pub const DEFAULT_START: u32 = 1 << 30;
/// Default pool size in host IDs: 2^30, so the pool ends at 2^31.
pub const DEFAULT_COUNT: u32 = 1 << 30;
/// The environment variable that overrides the pool, `START:COUNT`.
pub const POOL_ENV: &str = "ENGINE_USERNS_POOL";

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdRangeError {
    /// `ENGINE_USERNS_POOL` (or another source) is malformed.
    #[error("{POOL_ENV}={value} is not a usable ID pool: {why}; give START:COUNT, host IDs, COUNT a multiple of {RANGE_SIZE}, e.g. {DEFAULT_START}:{DEFAULT_COUNT}")]
    BadPool { value: String, why: String },
    /// Every range of the pool is used by a running container.
    #[error("every one of the {} user namespace ID ranges of the pool {start}:{count} is used by a running container: stop one (`engine ps` lists them), or give a larger pool with {POOL_ENV}=START:COUNT", .count / RANGE_SIZE)]
    PoolFull { start: u32, count: u32 },
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

    /// One past the last host ID of the pool (may be 2^32 - 1).
    pub fn end(&self) -> u64 {
        u64::from(self.start) + u64::from(self.count)
    }

    /// How many containers the pool can hold at once.
    pub fn ranges(&self) -> u32 {
        self.count / RANGE_SIZE
    }

    /// The first host ID of the lowest range of the pool that overlaps no
    /// span `used` (`(start, count)`: the IDs running containers hold, which
    /// need not be aligned with this pool, nor be whole ranges).
    pub fn lowest_free(&self, used: &[(u32, u32)]) -> Result<u32, IdRangeError> {
        (0..self.ranges())
            .map(|i| self.start + i * RANGE_SIZE)
            .find(|b| is_free(*b, used))
            .ok_or(IdRangeError::PoolFull {
                start: self.start,
                count: self.count,
            })
    }

    /// The range of the pool a container named `name` gets when it is free
    /// (a hash of the name picks it), else the lowest free one: a named
    /// container keeps its host IDs, and so the owner of what it writes,
    /// from one run to the next while no other container holds them.
    pub fn for_name(&self, name: &str, used: &[(u32, u32)]) -> Result<u32, IdRangeError> {
        use sha2::{Digest, Sha256};
        let hash = Sha256::digest(name.as_bytes());
        let index = u64::from_be_bytes(hash[..8].try_into().expect("8 bytes"));
        let base = self.start + (index % u64::from(self.ranges())) as u32 * RANGE_SIZE;
        if is_free(base, used) {
            Ok(base)
        } else {
            self.lowest_free(used)
        }
    }
}

/// Whether the range from `base` overlaps no span of `used`.
fn is_free(base: u32, used: &[(u32, u32)]) -> bool {
    let b = u64::from(base);
    !used.iter().any(|&(start, count)| {
        let start = u64::from(start);
        b < start + u64::from(count) && start < b + u64::from(RANGE_SIZE)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn a_name_keeps_its_range_while_it_is_free() {
        let pool = IdPool::new(1 << 20, 64 * RANGE_SIZE).unwrap();
        let web = pool.for_name("web", &[]).unwrap();
        assert_eq!(pool.for_name("web", &[]).unwrap(), web);
        assert_eq!((web - pool.start()) % RANGE_SIZE, 0);
        assert!(u64::from(web) + u64::from(RANGE_SIZE) <= pool.end());
        // Other names spread over the pool rather than all taking its start.
        let bases: std::collections::BTreeSet<u32> = (0..16)
            .map(|i| pool.for_name(&format!("c{i}"), &[]).unwrap())
            .collect();
        assert!(bases.len() > 8, "{bases:?}");
        // Its range held by another: the lowest free one.
        let lowest = pool.lowest_free(&[(web, RANGE_SIZE)]).unwrap();
        assert_eq!(pool.for_name("web", &[(web, RANGE_SIZE)]).unwrap(), lowest);
        assert_eq!(pool.for_name("web", &[(web + 1, 1)]).unwrap(), lowest);
    }

    #[test]
    fn lowest_free_is_the_lowest_range_not_used() {
        let pool = IdPool::new(300_000, 4 * RANGE_SIZE).unwrap();
        let mut used = Vec::new();
        for _ in 0..4 {
            let base = pool.lowest_free(&used).unwrap();
            assert!(
                !used.contains(&(base, RANGE_SIZE)),
                "{base} handed out twice: {used:?}"
            );
            used.push((base, RANGE_SIZE));
        }
        assert_eq!(
            used,
            (0..4)
                .map(|i| (300_000 + i * RANGE_SIZE, RANGE_SIZE))
                .collect::<Vec<_>>(),
            "distinct, lowest first"
        );
    }

    #[test]
    fn released_range_is_reused_and_overlaps_count_as_used() {
        let pool = IdPool::new(300_000, 3 * RANGE_SIZE).unwrap();
        let (a, b, c) = (300_000, 300_000 + RANGE_SIZE, 300_000 + 2 * RANGE_SIZE);
        let r = |base| (base, RANGE_SIZE);
        // b's container stopped: its lease is gone.
        assert_eq!(pool.lowest_free(&[r(c), r(a)]).unwrap(), b);
        assert_eq!(
            pool.lowest_free(&[r(a), r(c), r(7), r(1 << 30)]).unwrap(),
            b
        );
        // A range from another pool setting, straddling a and b.
        assert_eq!(pool.lowest_free(&[r(a + 1)]).unwrap(), c);
        // A single ID (an OCI container's map of one) inside b; one just past it.
        assert_eq!(pool.lowest_free(&[r(a), (b + 65535, 1)]).unwrap(), c);
        assert_eq!(pool.lowest_free(&[r(a), (c, 1)]).unwrap(), b);
        assert_eq!(pool.lowest_free(&[]).unwrap(), a);
    }

    #[test]
    fn full_pool_is_an_error_with_a_sentence() {
        let pool = IdPool::new(300_000, 2 * RANGE_SIZE).unwrap();
        let full = pool
            .lowest_free(&[(300_000 + RANGE_SIZE, RANGE_SIZE), (300_000, RANGE_SIZE)])
            .unwrap_err();
        assert_eq!(
            full,
            IdRangeError::PoolFull {
                start: 300_000,
                count: 2 * RANGE_SIZE
            }
        );
        let msg = full.to_string();
        assert!(
            msg.contains("2 user namespace ID ranges") && msg.contains("ENGINE_USERNS_POOL"),
            "{msg}"
        );
    }
}
