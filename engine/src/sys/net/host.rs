//! The host side, in the engine's network namespace: the bridge and its address, IPv4
//! forwarding, and the host end of each container's veth.

use super::addr::check_ifname;
use super::netlink::{io_text, link_alias, link_kind, link_name, Socket};
use anyhow::{anyhow, bail, Result};
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
                Err(e) if e.errno() == Some(libc::EOPNOTSUPP) => bail!(
                    "cannot create bridge {name}: this kernel has no bridge support: load it with `modprobe bridge`"
                ),
                other => other.map_err(|e| e.explain(format!("cannot create bridge {name}")))?,
            }
            nl.get_link(name)
                .map_err(|e| e.explain(format!("cannot look up bridge {name}")))?
                .ok_or_else(|| anyhow!("bridge {name} disappeared right after it was created: is another engine tearing it down?"))?
        }
    };
    if link_kind(&bridge) != Some(&InfoKind::Bridge) {
        bail!("interface {name} exists but is not a bridge: remove it or set ENGINE_BRIDGE to another name");
    }
    let claim = Claim::of(&bridge);
    if let Some(other) = claim.as_ref().and_then(|c| c.other_than(&me)) {
        bail!(
            "bridge {name} carries the containers of the engine whose state directory is {}: give this one (ENGINE_STATE_DIR={}) its own ENGINE_BRIDGE and ENGINE_SUBNET, or use ENGINE_STATE_DIR={}",
            other.display(),
            me.display(),
            other.display()
        );
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
        anyhow::Context::with_context(std::fs::write(&path, "0"), || {
            format!("cannot write 0 to {}: the bridge would accept IPv6 router advertisements from containers", path.display())
        })?;
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
            bail!("interface {name} is not a bridge: not deleting it (check ENGINE_BRIDGE)");
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
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                bail!("cannot remove {}: {}", record.display(), io_text(&e))
            }
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
pub fn create_veth(cfg: Bridge, host_name: &str, pid: i32) -> Result<()> {
    if let Err(why) = check_ifname(host_name) {
        bail!("veth name {host_name:?} {why}");
    }
    let pid = u32::try_from(pid)
        .ok()
        .filter(|&p| p > 0)
        .ok_or_else(|| anyhow!("cannot create veth {host_name}: {pid} is not a process id"))?;
    let mut nl = Socket::open()?;
    let what = format!("cannot create veth {host_name}");
    let bridge = nl
        .get_link(cfg.name)
        .map_err(|e| e.explain(format!("{what}: cannot look up bridge {}", cfg.name)))?
        .ok_or_else(|| {
            anyhow!(
                "{what}: bridge {} does not exist: set up the host network first",
                cfg.name
            )
        })?;
    if link_kind(&bridge) != Some(&InfoKind::Bridge) {
        bail!(
            "{what}: interface {} is not a bridge (check ENGINE_BRIDGE)",
            cfg.name
        );
    }
    let Err(e) = nl.create_veth(host_name, "eth0", bridge.header.index, pid) else {
        return Ok(());
    };
    Err(match e.errno() {
        Some(libc::EEXIST) if matches!(nl.get_link(host_name), Ok(Some(_))) => anyhow!(
            "{what}: interface {host_name} already exists (a running container of that name, or one that crashed): remove it with `ip link del {host_name}`"
        ),
        Some(libc::EEXIST) => anyhow!("{what}: the network namespace of process {pid} already has an eth0"),
        Some(libc::ESRCH) => anyhow!("{what}: process {pid} does not exist (did the container exit early?)"),
        Some(libc::EOPNOTSUPP) => anyhow!("{what}: this kernel has no veth support: load it with `modprobe veth`"),
        _ => e.explain(what),
    })
}

/// Deletes a link by name on the host; a link that is already gone is not an error.
/// Deleting one end of a veth pair deletes both.
pub fn delete_link(name: &str) -> Result<()> {
    if let Err(why) = check_ifname(name) {
        bail!("cannot delete interface {name:?}: the name {why}");
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
    let value = std::fs::read_to_string(IP_FORWARD)
        .map_err(|e| anyhow!("cannot read {IP_FORWARD}: {}", io_text(&e)))?;
    Ok(value.trim().to_string())
}

fn write_forwarding(value: &str) -> Result<()> {
    std::fs::write(IP_FORWARD, value).map_err(|e| match e.raw_os_error() {
        Some(libc::EACCES | libc::EPERM | libc::EROFS) => {
            anyhow!("cannot write {value} to {IP_FORWARD}: permission denied (run as root, outside a container)")
        }
        _ => anyhow!("cannot write {value} to {IP_FORWARD}: {}", io_text(&e)),
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
        Err(e) => bail!("cannot read {}: {}", record.display(), io_text(&e)),
    };
    let prev = match prev {
        Some(prev) => prev,
        None => {
            let prev = inherited()?.unwrap_or_else(|| current.clone());
            std::fs::create_dir_all(state_dir)
                .map_err(|e| anyhow!("cannot create {}: {}", state_dir.display(), io_text(&e)))?;
            // Written whole then renamed, so a crash never leaves a half-written record.
            let tmp = state_dir.join(format!("{FORWARDING_PREV}.tmp"));
            std::fs::write(&tmp, format!("{prev}\n"))
                .and_then(|()| std::fs::rename(&tmp, &record))
                .map_err(|e| anyhow!("cannot write {}: {}", record.display(), io_text(&e)))?;
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
        bail!(
            "{} holds {prev:?}, not 0 or 1: set {IP_FORWARD} yourself and remove the file",
            record.display()
        );
    }
    Ok(prev.to_string())
}

fn restore_forwarding(state_dir: &Path) -> Result<()> {
    let record = state_dir.join(FORWARDING_PREV);
    let prev = match std::fs::read_to_string(&record) {
        Ok(prev) => prev.trim().to_string(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => bail!("cannot read {}: {}", record.display(), io_text(&e)),
    };
    let prev = checked_record(&record, &prev)?;
    if read_forwarding()? != prev {
        write_forwarding(&prev)?;
    }
    std::fs::remove_file(&record)
        .map_err(|e| anyhow!("cannot remove {}: {}", record.display(), io_text(&e)))
}
