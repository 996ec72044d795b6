//! `--userns auto|host|N`, and which host IDs a container may be given.
//!
//! `auto` (the default): a rootfs owned by host root gets a range of 65536
//! host IDs leased from the engine's pool (`sys::idrange`) and is presented
//! through an idmapped mount, so container root is never host root; a rootfs
//! already shifted (`rootfs pull --owner BASE`) keeps the map 0 -> its owner,
//! but only when that owner is a base the engine would have chosen itself
//! (`check_base`): whoever made the rootfs must not pick host IDs.
//! `N`: container 0.. onto host N.., with no idmap (the rootfs must be owned
//! by N for container root to own it); N is at least 65536, so container
//! root is never a host user (`host` is the way to share the host's IDs).
//! `host`: no user namespace at all.

use crate::sys::idrange::IdPool;

/// A `--userns` refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("--userns base {0} is too large: the 65536 mapped IDs must fit below 2^32")]
    TooLarge(u32),
    #[error("--userns {0} would make container root host uid {0}, which belongs to the host's own users: give a base of at least 65536 (such as 131072), or --userns host to share the host's IDs on purpose")]
    HostUsers(u32),
    #[error("unknown --userns {0:?}: use auto, host, or a numeric base such as 131072")]
    Unknown(String),
}

type Result<T, E = Error> = std::result::Result<T, E>;

/// How many IDs a user namespace maps (container 0..65535).
pub const USERNS_SIZE: u32 = 65536;

/// The user namespace: none, or container IDs 0..65535 mapped onto host IDs from a base.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserNs {
    Host,
    /// A range leased from the engine's pool when the container starts; the
    /// root-owned rootfs is idmapped onto it.
    Pool,
    Map {
        uid: u32,
        gid: u32,
    },
}

/// What the user asked for; `Auto` becomes a base once the rootfs is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserNsChoice {
    /// A pool range for a root-owned rootfs, else base = owner of the rootfs.
    Auto,
    Fixed(UserNs),
}

impl UserNs {
    /// A map from `uid`/`gid`, refused when the 65536 IDs do not fit.
    pub fn map(uid: u32, gid: u32) -> Result<UserNs> {
        if uid.checked_add(USERNS_SIZE).is_none() || gid.checked_add(USERNS_SIZE).is_none() {
            return Err(Error::TooLarge(uid));
        }
        Ok(UserNs::Map { uid, gid })
    }
}

impl UserNs {
    /// Whether host uid or gid 0 is mapped into the container: its root (or
    /// another of its IDs) is then host root by another name, and the engine
    /// must run from a read-only image of itself (CVE-2019-5736). The rule
    /// is about the mapping, whatever namespace carries it.
    pub fn maps_host_root(&self) -> bool {
        match *self {
            UserNs::Host => true,
            UserNs::Pool => false,
            UserNs::Map { uid, gid } => uid == 0 || gid == 0,
        }
    }
}

/// Whether one of the `(host start, count)` ranges holds host ID 0.
pub fn ranges_hold_host_root(ranges: impl IntoIterator<Item = (u32, u32)>) -> bool {
    ranges
        .into_iter()
        .any(|(host, count)| host == 0 && count > 0)
}

/// The `(host start, count)` ranges of a `/proc/PID/uid_map` or `gid_map`
/// text (`inside outside count` a line); a malformed line is `None`.
pub fn id_map_ranges(text: &str) -> Option<Vec<(u32, u32)>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut f = l.split_whitespace().skip(1).map(str::parse::<u32>);
            match (f.next(), f.next()) {
                (Some(Ok(host)), Some(Ok(count))) => Some((host, count)),
                _ => None,
            }
        })
        .collect()
}

pub fn parse_userns(s: &str) -> Result<UserNsChoice> {
    match s {
        "host" => Ok(UserNsChoice::Fixed(UserNs::Host)),
        "auto" | "" => Ok(UserNsChoice::Auto),
        n => match n.parse::<u32>() {
            // Below 65536 live the host's own users (and root, at 0).
            Ok(b) if b < USERNS_SIZE => Err(Error::HostUsers(b)),
            Ok(b) => UserNs::map(b, b).map(UserNsChoice::Fixed),
            Err(_) => Err(Error::Unknown(n.into())),
        },
    }
}

/// IDs the host's account files hand out: one uid or gid of `/etc/passwd`
/// or `/etc/group`, or a range of `/etc/subuid` or `/etc/subgid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostIds {
    pub start: u32,
    pub count: u32,
    /// For messages: "uid 1000 (alice) in /etc/passwd".
    pub what: String,
}

impl HostIds {
    fn overlaps(&self, start: u32) -> bool {
        let (a, b) = (u64::from(start), u64::from(start) + u64::from(USERNS_SIZE));
        let (c, d) = (
            u64::from(self.start),
            u64::from(self.start) + u64::from(self.count),
        );
        a < d && c < b
    }
}

/// Why a base cannot be the first of a container's 65536 host IDs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BaseProblem {
    /// Below 65536: the host's own users (root is 0).
    #[error("it is below 65536, where the host's own users are")]
    HostUsers,
    #[error("it is not a multiple of 65536")]
    NotAligned,
    /// The 65536 IDs from it do not fit below 2^32 - 1.
    #[error("its 65536 IDs do not fit below 2^32 - 1")]
    TooHigh,
    /// It overlaps the engine's pool, whose ranges go to `--userns auto`.
    #[error("its IDs overlap the engine's pool {start}..{end} (ENGINE_USERNS_POOL), whose ranges go to other containers")]
    InPool { start: u32, end: u64 },
    /// It overlaps IDs the host's account files hand out.
    #[error("its IDs overlap {0}")]
    HostFile(String),
}

/// Whether host IDs `base..base+65536` may be a shifted rootfs's range: a
/// multiple of 65536, at least 65536, outside the pool, and overlapping
/// nothing in `host` (the account files' IDs of that kind, uids or gids).
pub fn check_base(base: u32, pool: &IdPool, host: &[HostIds]) -> Result<(), BaseProblem> {
    if base < USERNS_SIZE {
        return Err(BaseProblem::HostUsers);
    }
    if base % USERNS_SIZE != 0 {
        return Err(BaseProblem::NotAligned);
    }
    if base.checked_add(USERNS_SIZE).is_none() {
        return Err(BaseProblem::TooHigh);
    }
    let (start, end) = (pool.start(), pool.end());
    if u64::from(base) < end && u64::from(start) < u64::from(base) + u64::from(USERNS_SIZE) {
        return Err(BaseProblem::InPool { start, end });
    }
    match host.iter().find(|h| h.overlaps(base)) {
        Some(h) => Err(BaseProblem::HostFile(h.what.clone())),
        None => Ok(()),
    }
}

/// The lowest base `check_base` accepts for uids and gids alike (what
/// `--owner` could be), for messages.
pub fn suggest_base(pool: &IdPool, uids: &[HostIds], gids: &[HostIds]) -> Option<u32> {
    (1..u32::MAX / USERNS_SIZE)
        .map(|i| i * USERNS_SIZE)
        .find(|&b| check_base(b, pool, uids).is_ok() && check_base(b, pool, gids).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userns() {
        assert_eq!(parse_userns("auto").unwrap(), UserNsChoice::Auto);
        assert_eq!(
            parse_userns("100000").unwrap(),
            UserNsChoice::Fixed(UserNs::Map {
                uid: 100000,
                gid: 100000
            })
        );
        assert!(parse_userns("4294967295").is_err());
        assert!(parse_userns("x").is_err());
        for host in ["0", "1000", "65535"] {
            let e = parse_userns(host).unwrap_err().to_string();
            assert!(
                e.contains("at least 65536") && e.contains("--userns host"),
                "{e}"
            );
        }
        assert!(parse_userns("65536").is_ok());
    }

    fn ids(start: u32, count: u32) -> HostIds {
        HostIds {
            start,
            count,
            what: format!("ids {start}+{count}"),
        }
    }

    #[test]
    fn bases_must_be_aligned_and_above_the_host_users() {
        let pool = IdPool::default();
        assert_eq!(check_base(0, &pool, &[]), Err(BaseProblem::HostUsers));
        assert_eq!(check_base(1000, &pool, &[]), Err(BaseProblem::HostUsers));
        assert_eq!(
            check_base(100_000, &pool, &[]),
            Err(BaseProblem::NotAligned)
        );
        assert_eq!(
            check_base(65536 * 2 + 1, &pool, &[]),
            Err(BaseProblem::NotAligned)
        );
        assert_eq!(check_base(65536, &pool, &[]), Ok(()));
        assert_eq!(check_base(131_072, &pool, &[]), Ok(()));
        assert_eq!(
            check_base(u32::MAX - 65535, &pool, &[]),
            Err(BaseProblem::TooHigh)
        );
    }

    #[test]
    fn bases_in_the_pool_are_refused() {
        let pool = IdPool::default();
        for inside in [1 << 30, (1 << 30) + 65536, (1u32 << 31) - 65536] {
            assert!(
                matches!(
                    check_base(inside, &pool, &[]),
                    Err(BaseProblem::InPool { .. })
                ),
                "{inside}"
            );
        }
        assert_eq!(check_base((1 << 30) - 65536, &pool, &[]), Ok(()));
        assert_eq!(check_base(1 << 31, &pool, &[]), Ok(()));
        // An unaligned pool: a base straddling its start is refused.
        let odd = IdPool::new(100_000, 65536).unwrap();
        assert!(matches!(
            check_base(65536, &odd, &[]),
            Err(BaseProblem::InPool { .. })
        ));
        assert!(matches!(
            check_base(131_072, &odd, &[]),
            Err(BaseProblem::InPool { .. })
        ));
        assert_eq!(check_base(196_608, &odd, &[]), Ok(()));
    }

    #[test]
    fn bases_overlapping_the_host_files_are_refused() {
        let pool = IdPool::default();
        let host = [ids(1000, 1), ids(200_000, 1), ids(327_680, 65536)];
        let refused = |b| matches!(check_base(b, &pool, &host), Err(BaseProblem::HostFile(_)));
        assert!(refused(196_608), "uid 200000 is inside 196608..262144");
        assert!(refused(327_680), "the subuid range itself");
        assert_eq!(
            check_base(262_144, &pool, &host),
            Ok(()),
            "ends where the range starts"
        );
        assert_eq!(
            check_base(393_216, &pool, &host),
            Ok(()),
            "starts where the range ends"
        );
        assert_eq!(check_base(131_072, &pool, &host), Ok(()));
        // A range covering everything from 65536 on: nothing is left below the pool.
        let huge = [ids(65536, (1 << 30) - 65536)];
        assert!(
            matches!(check_base(65536, &pool, &huge), Err(BaseProblem::HostFile(w)) if w.contains("65536"))
        );
        assert_eq!(suggest_base(&pool, &huge, &[]), Some(1 << 31));
    }

    #[test]
    fn suggested_base_passes_for_uids_and_gids() {
        let pool = IdPool::default();
        assert_eq!(suggest_base(&pool, &[], &[]), Some(65536));
        let uids = [ids(65536, 65536)];
        let gids = [ids(131_072, 1)];
        let b = suggest_base(&pool, &uids, &gids).unwrap();
        assert_eq!(b, 196_608);
        assert!(check_base(b, &pool, &uids).is_ok() && check_base(b, &pool, &gids).is_ok());
        assert_eq!(suggest_base(&pool, &[ids(0, u32::MAX)], &[]), None);
    }

    #[test]
    fn host_root_in_a_mapping() {
        assert!(UserNs::Host.maps_host_root());
        assert!(!UserNs::Pool.maps_host_root());
        assert!(UserNs::Map {
            uid: 0,
            gid: 100000
        }
        .maps_host_root());
        assert!(!UserNs::Map {
            uid: 100000,
            gid: 100000
        }
        .maps_host_root());
        let host = id_map_ranges("         0          0 4294967295\n").unwrap();
        assert!(ranges_hold_host_root(host));
        let pool = id_map_ranges("0 1073741824 65536\n").unwrap();
        assert!(!ranges_hold_host_root(pool));
        // Container 1000 is host root: still host root by another name.
        let odd = id_map_ranges("0 100000 1000\n1000 0 1\n").unwrap();
        assert!(ranges_hold_host_root(odd));
        assert!(!ranges_hold_host_root([(0, 0)]));
        assert_eq!(id_map_ranges("0 x 1"), None);
    }
}
