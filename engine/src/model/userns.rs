//! `--userns auto|host|N`.
//!
//! `auto` (the default): a rootfs owned by host root gets a range of 65536
//! host IDs leased from the engine's pool (`sys::idrange`) and is presented
//! through an idmapped mount, so container root is never host root; a rootfs
//! already shifted (`rootfs pull --owner BASE`) keeps the map 0 -> its owner.
//! `N`: container 0.. onto host N.., with no idmap (the rootfs must be owned
//! by N for container root to own it). `host`: no user namespace at all.

use anyhow::{bail, Result};

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
            bail!("--userns base {uid} is too large: the 65536 mapped IDs must fit below 2^32");
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
            Ok(b) => UserNs::map(b, b).map(UserNsChoice::Fixed),
            Err(_) => {
                bail!("unknown --userns {n:?}: use auto, host, or a numeric base such as 100000")
            }
        },
    }
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
