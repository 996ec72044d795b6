//! The host side, in the engine's network namespace: the bridge and its address, IPv4
//! forwarding, and the host end of each container's veth.

use super::addr::check_ifname;
use super::netlink::{link_alias, link_kind, link_name, Socket};
use super::{Error, Result, VethRefused};
use netlink_packet_route::link::{InfoKind, LinkFlags};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// The bridge this facility sets up and plugs veths into: its name, and the
/// gateway address (with the subnet's prefix) it holds.
#[derive(Debug, Clone, Copy)]
pub struct Bridge<'a> {
    pub name: &'a str,
    pub gateway: Ipv4Addr,
    pub prefix: u8,
}

/// The host-side veth name for a container: at most 15 bytes, unique even for long names.
///
/// A name of at most 11 safe characters (`A-Z a-z 0-9 - _ .`) is used whole: `ve-web`.
/// Any other name becomes `ve-` + its first 5 characters (unsafe ones as `_`) + `-` + hex
/// digits of a 64-bit FNV-1a hash of the whole name, filling exactly 15 bytes:
/// `ve-datab-3f09a1`. The two forms never collide (<= 14 bytes against exactly 15). The hash
/// is fixed (not std's `DefaultHasher`), so the name is the same across engine builds and
/// the veth of a crashed container can be found again.
pub fn veth_name(container: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if !container.is_empty() && container.len() <= 11 && container.chars().all(safe) {
        return format!("ve-{container}");
    }
    let head: String = container
        .chars()
        .take(5)
        .map(|c| if safe(c) { c } else { '_' })
        .collect();
    let hash = format!("{:016x}", fnv1a(container.as_bytes()));
    let digits = 15 - 4 - head.len();
    format!("ve-{head}-{}", &hash[16 - digits..])
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// What the engine notes on its bridge (the link's alias, kept by the kernel in the bridge's
/// network namespace), so that engines with other state directories there see it: the value
/// `ip_forward` had before the first engine bridge of the namespace, and the state directory
/// whose leases the bridge carries: `engine fwd=0 state=/run/engine`.
struct Claim {
    forwarding: String,
    state: Option<PathBuf>,
}

const CLAIM_PREFIX: &str = "engine fwd=";

impl Claim {
    fn of(link: &netlink_packet_route::link::LinkMessage) -> Option<Claim> {
        let rest = link_alias(link)?.strip_prefix(CLAIM_PREFIX)?;
        let (forwarding, state) = match rest.split_once(" state=") {
            Some((f, s)) => (f, Some(PathBuf::from(s))),
            None => (rest, None),
        };
        matches!(forwarding, "0" | "1").then(|| Claim {
            forwarding: forwarding.to_string(),
            state,
        })
    }

    /// The alias; without the state directory when its path does not fit (255 bytes).
    fn alias(&self) -> String {
        let short = format!("{CLAIM_PREFIX}{}", self.forwarding);
        match &self.state {
            Some(state) => {
                let long = format!("{short} state={}", state.display());
                if long.len() <= 255 {
                    long
                } else {
                    short
                }
            }
            None => short,
        }
    }

    /// The state directory of another engine that still exists, if the claim names one.
    fn other_than(&self, me: &Path) -> Option<&Path> {
        self.state
            .as_deref()
            .filter(|state| *state != me && state.is_dir())
    }
}

/// A state directory as it is written in a claim.
fn state_id(state_dir: &Path) -> PathBuf {
    std::fs::canonicalize(state_dir)
        .or_else(|_| std::path::absolute(state_dir))
        .unwrap_or_else(|_| state_dir.to_path_buf())
}

/// The forwarding value noted on another engine's bridge in this namespace, if there is one.
fn other_engine_bridge(nl: &mut Socket, ours: &str) -> Result<Option<String>> {
    let links = nl
        .list_links()
        .map_err(|e| e.explain("cannot list the network interfaces"))?;
    Ok(links.iter().find_map(|link| {
        (link_name(link) != Some(ours) && link_kind(link) == Some(&InfoKind::Bridge))
            .then(|| Claim::of(link))
            .flatten()
            .map(|claim| claim.forwarding)
    }))
}

/// Creates (if missing) the bridge with the gateway address, up, and turns IPv4 forwarding on,
/// recording the previous forwarding value under `state_dir` so teardown can restore it.
///
/// Idempotent and cheap when all is in place (two netlink round trips and a sysctl read).
/// The value recorded in `state_dir/forwarding.prev` is the one found by the first call
/// only, so teardown restores the value from before the engine touched it; when another
/// engine's bridge is already in this namespace, the value it noted (its own "before").
///
/// A bridge noted as carrying the containers of another state directory that still exists
/// is refused: the two would lease the same addresses on it.
pub fn setup_host(cfg: Bridge, state_dir: &Path) -> Result<()> {
    let me = state_id(state_dir);
    let mut nl = Socket::open()?;
    let name = cfg.name;
    let bridge = match nl
        .get_link(name)
        .map_err(|e| e.explain(format!("cannot look up bridge {name}")))?
    {
        Some(link) => link,
        None => {
            match nl.create_bridge(name) {
                // Another engine created it meanwhile: fine.
                Err(e) if e.errno() == Some(libc::EEXIST) => {}
                Err(e) if e.errno() == Some(libc::EOPNOTSUPP) => {
                    return Err(Error::NoBridgeSupport {
                        bridge: name.into(),
                    })
                }
                other => other.map_err(|e| e.explain(format!("cannot create bridge {name}")))?,
            }
            nl.get_link(name)
                .map_err(|e| e.explain(format!("cannot look up bridge {name}")))?
                .ok_or_else(|| Error::BridgeVanished {
                    bridge: name.into(),
                })?
        }
    };
    if link_kind(&bridge) != Some(&InfoKind::Bridge) {
        return Err(Error::NotABridge { name: name.into() });
    }
    let claim = Claim::of(&bridge);
    if let Some(other) = claim.as_ref().and_then(|c| c.other_than(&me)) {
        return Err(Error::BridgeClaimed {
            bridge: name.into(),
            other: other.to_owned(),
            me,
        });
    }
    let index = bridge.header.index;
    let addrs = nl
        .ipv4_addrs(index)
        .map_err(|e| e.explain(format!("cannot list the addresses of bridge {name}")))?;
    if !addrs.contains(&(cfg.gateway, cfg.prefix)) {
        match nl.add_addr(index, cfg.gateway, cfg.prefix) {
            Err(e) if e.errno() == Some(libc::EEXIST) => {}
            other => other.map_err(|e| {
                e.explain(format!(
                    "cannot add {}/{} to bridge {name}",
                    cfg.gateway, cfg.prefix
                ))
            })?,
        }
    }
    refuse_router_advertisements(name)?;
    if !bridge.header.flags.contains(LinkFlags::Up) {
        nl.set_up(index)
            .map_err(|e| e.explain(format!("cannot bring bridge {name} up")))?;
    }
    let forwarding = enable_forwarding(state_dir, || other_engine_bridge(&mut nl, name))?;
    let wanted = Claim {
        forwarding,
        state: Some(me),
    }
    .alias();
    if link_alias(&bridge) != Some(wanted.as_str()) {
        nl.set_alias(index, &wanted)
            .map_err(|e| e.explain(format!("cannot note the engine's claim on bridge {name}")))?;
    }
    Ok(())
}

/// A container must not become the host's IPv6 router: the bridge takes no
/// router advertisements and configures no address from them. Nothing to do
/// where IPv6 is off (no conf directory).
fn refuse_router_advertisements(bridge: &str) -> Result<()> {
    let conf = Path::new("/proc/sys/net/ipv6/conf").join(bridge);
    if !conf.exists() {
        return Ok(());
    }
    for key in ["accept_ra", "autoconf"] {
        let path = conf.join(key);
        std::fs::write(&path, "0")
            .map_err(|source| Error::RouterAdvertisements { path, source })?;
    }
    Ok(())
}

/// Removes the bridge and restores forwarding to its value before `setup_host`. Idempotent.
///
/// Refuses to delete an interface of that name that is not a bridge, and leaves alone a
/// bridge another state directory's engine claims. Forwarding is only written when
/// `state_dir/forwarding.prev` exists and no other engine's bridge remains in this
/// namespace (it serves them all); the file is removed afterwards.
pub fn teardown_host(cfg: Bridge, state_dir: &Path) -> Result<()> {
    let mut nl = Socket::open()?;
    let name = cfg.name;
    if let Some(link) = nl
        .get_link(name)
        .map_err(|e| e.explain(format!("cannot look up bridge {name}")))?
    {
        if link_kind(&link) != Some(&InfoKind::Bridge) {
            return Err(Error::NotABridgeToDelete { name: name.into() });
        }
        if Claim::of(&link).is_some_and(|c| c.other_than(&state_id(state_dir)).is_some()) {
            return Ok(());
        }
        nl.del_link(name)
            .map_err(|e| e.explain(format!("cannot delete bridge {name}")))?;
    }
    if other_engine_bridge(&mut nl, name)?.is_some() {
        // Its engine noted the value from before the first bridge: it restores it.
        let record = state_dir.join(FORWARDING_PREV);
        return match std::fs::remove_file(&record) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(Error::Remove {
                path: record,
                error,
            }),
            _ => Ok(()),
        };
    }
    restore_forwarding(state_dir)
}

/// Creates a veth pair: `host_name` on the host, attached to the bridge and up; its peer
/// created directly inside the network namespace of `pid`, named `eth0`, down.
///
/// One netlink request creates both ends, so there is no name clash on the host and no move
/// step. A stale `host_name` (from a crashed container) is an error naming it.
///
/// A container started again on its address has the same MAC (`mac_of(ip)`), which the
/// bridge may still place on its previous veth, dying in the background: its peers'
/// frames would go there until the container sent one. That entry is dropped first, so
/// they are flooded to the new port until the bridge learns it.
pub fn create_veth(cfg: Bridge, host_name: &str, pid: i32, ip: Ipv4Addr) -> Result<()> {
    if let Err(why) = check_ifname(host_name) {
        return Err(Error::BadVethName {
            name: host_name.into(),
            why,
        });
    }
    let pid = u32::try_from(pid)
        .ok()
        .filter(|&p| p > 0)
        .ok_or_else(|| Error::Veth {
            veth: host_name.into(),
            why: VethRefused::NotAPid { pid },
        })?;
    let mut nl = Socket::open()?;
    let what = format!("cannot create veth {host_name}");
    let refused = |why| Error::Veth {
        veth: host_name.into(),
        why,
    };
    let bridge = nl
        .get_link(cfg.name)
        .map_err(|e| e.explain(format!("{what}: cannot look up bridge {}", cfg.name)))?
        .ok_or_else(|| {
            refused(VethRefused::NoBridge {
                bridge: cfg.name.into(),
            })
        })?;
    if link_kind(&bridge) != Some(&InfoKind::Bridge) {
        return Err(refused(VethRefused::NotABridge {
            bridge: cfg.name.into(),
        }));
    }
    // Best effort: without it the bridge relearns at the container's first frame.
    let mac = super::addr::mac_of(ip);
    for port in nl
        .fdb_ports_of(bridge.header.index, mac)
        .unwrap_or_default()
    {
        let _ = nl.fdb_del(port, mac);
    }
    let Err(e) = nl.create_veth(host_name, "eth0", bridge.header.index, pid) else {
        return Ok(());
    };
    Err(match e.errno() {
        Some(libc::EEXIST) if matches!(nl.get_link(host_name), Ok(Some(_))) => {
            refused(VethRefused::Exists {
                veth: host_name.into(),
            })
        }
        Some(libc::EEXIST) => refused(VethRefused::HasEth0 { pid }),
        Some(libc::ESRCH) => refused(VethRefused::NoProcess { pid }),
        Some(libc::EOPNOTSUPP) => refused(VethRefused::NoVethSupport),
        _ => e.explain(what),
    })
}

/// Deletes a link by name on the host; a link that is already gone is not an error.
/// Deleting one end of a veth pair deletes both.
pub fn delete_link(name: &str) -> Result<()> {
    if let Err(why) = check_ifname(name) {
        return Err(Error::BadLinkName {
            name: name.into(),
            why,
        });
    }
    Socket::open()?
        .del_link(name)
        .map_err(|e| e.explain(format!("cannot delete interface {name}")))?;
    Ok(())
}

/// Whether the configured bridge exists (as any kind of link).
pub fn bridge_exists(cfg: Bridge) -> Result<bool> {
    link_exists(cfg.name)
}

/// Whether a link of that name exists in the calling thread's network namespace.
pub fn link_exists(name: &str) -> Result<bool> {
    if check_ifname(name).is_err() {
        return Ok(false);
    }
    let found = Socket::open()?
        .get_link(name)
        .map_err(|e| e.explain(format!("cannot look up interface {name}")))?;
    Ok(found.is_some())
}

// ---------------------------------------------------------------------------------------
// IPv4 forwarding. /proc/sys/net resolves to the network namespace of the thread that
// opens the file, so these touch only the caller's namespace.

const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";
const FORWARDING_PREV: &str = "forwarding.prev";

fn read_forwarding() -> Result<String> {
    let value = std::fs::read_to_string(IP_FORWARD).map_err(|error| Error::Read {
        path: IP_FORWARD.into(),
        error,
    })?;
    Ok(value.trim().to_string())
}

fn write_forwarding(value: &str) -> Result<()> {
    std::fs::write(IP_FORWARD, value).map_err(|error| match error.raw_os_error() {
        Some(libc::EACCES | libc::EPERM | libc::EROFS) => Error::ForwardingDenied {
            value: value.into(),
            path: IP_FORWARD,
        },
        _ => Error::WriteForwarding {
            value: value.into(),
            path: IP_FORWARD,
            error,
        },
    })
}

/// Turns forwarding on; returns the value recorded as the one from before: the record's, or
/// else `inherited` (another engine's), or else the current value, recorded now.
fn enable_forwarding(
    state_dir: &Path,
    inherited: impl FnOnce() -> Result<Option<String>>,
) -> Result<String> {
    let current = read_forwarding()?;
    let record = state_dir.join(FORWARDING_PREV);
    let prev = match std::fs::read_to_string(&record) {
        Ok(prev) => Some(checked_record(&record, prev.trim())?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(error) => {
            return Err(Error::Read {
                path: record,
                error,
            })
        }
    };
    let prev = match prev {
        Some(prev) => prev,
        None => {
            let prev = inherited()?.unwrap_or_else(|| current.clone());
            std::fs::create_dir_all(state_dir).map_err(|error| Error::CreateDir {
                path: state_dir.to_owned(),
                error,
            })?;
            // Written whole then renamed, so a crash never leaves a half-written record.
            let tmp = state_dir.join(format!("{FORWARDING_PREV}.tmp"));
            std::fs::write(&tmp, format!("{prev}\n"))
                .and_then(|()| std::fs::rename(&tmp, &record))
                .map_err(|error| Error::Write {
                    path: record.clone(),
                    error,
                })?;
            prev
        }
    };
    if current != "1" {
        write_forwarding("1")?;
    }
    Ok(prev)
}

/// A recorded forwarding value: 0 or 1, or an error naming the file.
fn checked_record(record: &Path, prev: &str) -> Result<String> {
    if prev != "0" && prev != "1" {
        return Err(Error::BadForwardingRecord {
            record: record.to_owned(),
            value: prev.into(),
            forward: IP_FORWARD,
        });
    }
    Ok(prev.to_string())
}

fn restore_forwarding(state_dir: &Path) -> Result<()> {
    let record = state_dir.join(FORWARDING_PREV);
    let prev = match std::fs::read_to_string(&record) {
        Ok(prev) => prev.trim().to_string(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => {
            return Err(Error::Read {
                path: record,
                error,
            })
        }
    };
    let prev = checked_record(&record, &prev)?;
    if read_forwarding()? != prev {
        write_forwarding(&prev)?;
    }
    std::fs::remove_file(&record).map_err(|error| Error::Remove {
        path: record,
        error,
    })
}
