//! Bridge, veth, addresses and routes over rtnetlink; address allocation.
//!
//! Host side (`setup_host`, `teardown_host`, `create_veth`, `delete_link`) runs in the
//! engine's network namespace; container side (`loopback_up`, `configure_eth0`) runs in
//! the child, inside the container's network namespace, before exec. Everything talks
//! to the kernel over a synchronous rtnetlink socket: no `ip`, no async runtime, no
//! threads (the engine clones processes and must stay single-threaded).
//!
//! A netlink socket, and `/proc/sys/net`, act in the network namespace of the calling
//! *thread* at the time they are opened.

pub mod dns;
pub mod nat;

use anyhow::{anyhow, bail, Result};
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NlasIterator, NLM_F_ACK, NLM_F_ACK_TLVS,
    NLM_F_CAPPED, NLM_F_CREATE, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_EXCL, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkExtentMask, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

/// Ranges a bridge must never own: it would hijack "this network", loopback or multicast.
const RESERVED: [(u32, u8, &str); 3] = [
    (0x0000_0000, 8, "the \"this network\" range 0.0.0.0/8"),
    (0x7f00_0000, 8, "the loopback range 127.0.0.0/8"),
    (
        0xe000_0000,
        3,
        "the multicast and reserved range 224.0.0.0/3",
    ),
];

/// The validated host network: bridge name, subnet and gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConfig {
    pub bridge: String,
    pub network: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
}

impl NetConfig {
    /// Checks `bridge` (1-15 bytes, a valid interface name) and `subnet` (`A.B.C.D/P`,
    /// 1 <= P <= 30). A subnet with host bits set (`192.168.1.5/24`) is refused, not
    /// masked: it is more likely a typo than a wish. The gateway is the first host address.
    pub fn new(bridge: &str, subnet: &str) -> Result<Self> {
        if let Err(why) = check_ifname(bridge) {
            bail!("ENGINE_BRIDGE {bridge:?} {why}");
        }
        let example = "write it as A.B.C.D/P, e.g. 192.168.1.0/24";
        let Some((addr, prefix)) = subnet.split_once('/') else {
            bail!("ENGINE_SUBNET {subnet:?} has no prefix length: {example}");
        };
        let network: Ipv4Addr = addr.parse().map_err(|_| {
            anyhow!("ENGINE_SUBNET {subnet:?}: {addr:?} is not an IPv4 address: {example}")
        })?;
        let prefix = parse_prefix(prefix).ok_or_else(|| {
            anyhow!("ENGINE_SUBNET {subnet:?}: prefix {prefix:?} is not a number from 1 to 30: {example}")
        })?;
        if prefix > 30 {
            bail!("ENGINE_SUBNET {subnet:?} is smaller than /30: use a prefix of 30 or less");
        }
        if prefix == 0 {
            bail!("ENGINE_SUBNET {subnet:?} covers every IPv4 address: use a prefix from 1 to 30");
        }
        let masked = Ipv4Addr::from(u32::from(network) & mask(prefix));
        if masked != network {
            bail!("ENGINE_SUBNET {subnet:?} has host bits set: did you mean {masked}/{prefix}?");
        }
        for (range, len, what) in RESERVED {
            let common = mask(prefix.min(len));
            if u32::from(network) & common == range & common {
                bail!("ENGINE_SUBNET {subnet:?} overlaps {what}: use a private range such as 192.168.1.0/24");
            }
        }
        let gateway = Ipv4Addr::from(u32::from(network) + 1);
        Ok(NetConfig {
            bridge: bridge.to_string(),
            network,
            prefix,
            gateway,
        })
    }

    /// The subnet as `A.B.C.D/P`.
    pub fn subnet(&self) -> String {
        format!("{}/{}", self.network, self.prefix)
    }

    /// The broadcast address of the subnet.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) | !mask(self.prefix))
    }

    /// Whether `ip` lies in the subnet (network and broadcast addresses included).
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == u32::from(self.network)
    }

    /// Parses a container address given as `A.B.C.D` or `A.B.C.D/P` and checks it is a usable
    /// host address of the subnet (not the network, broadcast or gateway address).
    pub fn parse_container_ip(&self, ip: &str) -> Result<Ipv4Addr> {
        let (addr, prefix) = match ip.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (ip, None),
        };
        let parsed: Ipv4Addr = addr.parse().map_err(|_| {
            anyhow!(
                "container address {ip:?} is not an IPv4 address: write it as A.B.C.D, e.g. {}",
                self.first_host()
            )
        })?;
        if let Some(p) = prefix {
            match parse_prefix(p) {
                Some(p) if p == self.prefix => {}
                Some(_) => bail!(
                    "container address {ip:?}: the prefix must be the subnet's (/{}): write {parsed} or {parsed}/{}",
                    self.prefix,
                    self.prefix
                ),
                None => bail!(
                    "container address {ip:?}: prefix {p:?} is not a number: write {parsed} or {parsed}/{}",
                    self.prefix
                ),
            }
        }
        let what = if !self.contains(parsed) {
            "outside the subnet"
        } else if parsed == self.network {
            "the network address of the subnet"
        } else if parsed == self.broadcast() {
            "the broadcast address of the subnet"
        } else if parsed == self.gateway {
            "the gateway (the bridge's own address) of the subnet"
        } else {
            return Ok(parsed);
        };
        bail!(
            "container address {parsed} is {what} {}: {}",
            self.subnet(),
            self.pick_hint()
        )
    }

    /// The lowest host address of the subnet that is neither the gateway nor in `used`.
    pub fn lowest_free(&self, used: &[Ipv4Addr]) -> Result<Ipv4Addr> {
        let used: HashSet<u32> = used
            .iter()
            .map(|&ip| u32::from(ip))
            .filter(|&ip| ip > u32::from(self.gateway) && ip < u32::from(self.broadcast()))
            .collect();
        (u32::from(self.first_host())..u32::from(self.broadcast()))
            .find(|ip| !used.contains(ip))
            .map(Ipv4Addr::from)
            .ok_or_else(|| {
                let n = used.len();
                let plural = if n == 1 { "" } else { "es" };
                anyhow!(
                    "subnet {} is full ({n} address{plural} in use): stop a container or choose a larger ENGINE_SUBNET",
                    self.subnet()
                )
            })
    }

    /// The first address a container can have (the one after the gateway).
    fn first_host(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.gateway) + 1)
    }

    fn pick_hint(&self) -> String {
        let (first, last) = (
            self.first_host(),
            Ipv4Addr::from(u32::from(self.broadcast()) - 1),
        );
        if first == last {
            format!("the only container address is {first}")
        } else {
            format!("pick one from {first} to {last}")
        }
    }
}

fn mask(prefix: u8) -> u32 {
    // Prefixes above 32 never get here unchecked; saturate rather than overflow anyway.
    u32::MAX
        .checked_shl(32u32.saturating_sub(u32::from(prefix)))
        .unwrap_or(0)
}

/// A prefix length: one or two digits, at most 32 (no sign, no spaces).
fn parse_prefix(s: &str) -> Option<u8> {
    let ok = (1..=2).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
    s.parse().ok().filter(|&p| ok && p <= 32)
}

/// Why `name` is not a valid Linux interface name (the kernel's `dev_valid_name`, plus '%',
/// which the kernel would expand as a template), as the end of a sentence naming it.
fn check_ifname(name: &str) -> std::result::Result<(), String> {
    let rule =
        "interface names are 1 to 15 bytes without '/', ':', '%', spaces or control characters";
    if name.is_empty() {
        return Err(format!("is empty: {rule}"));
    }
    if name.len() > 15 {
        return Err(format!("is {} bytes long: {rule}", name.len()));
    }
    if name == "." || name == ".." {
        return Err(format!("is not a valid interface name: {rule}"));
    }
    if let Some(c) = name
        .chars()
        .find(|&c| matches!(c, '/' | ':' | '%') || c.is_whitespace() || c.is_control())
    {
        return Err(format!("contains {c:?}: {rule}"));
    }
    Ok(())
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

/// Creates (if missing) the bridge with the gateway address, up, and turns IPv4 forwarding on,
/// recording the previous forwarding value under `state_dir` so teardown can restore it.
///
/// Idempotent and cheap when all is in place (two netlink round trips and a sysctl read).
/// The value recorded in `state_dir/forwarding.prev` is the one found by the first call
/// only, so teardown restores the value from before the engine touched it.
pub fn setup_host(cfg: &NetConfig, state_dir: &Path) -> Result<()> {
    let mut nl = Socket::open()?;
    let name = &cfg.bridge;
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
    if !bridge.header.flags.contains(LinkFlags::Up) {
        nl.set_up(index)
            .map_err(|e| e.explain(format!("cannot bring bridge {name} up")))?;
    }
    enable_forwarding(state_dir)
}

/// Removes the bridge and restores forwarding to its value before `setup_host`. Idempotent.
///
/// Refuses to delete an interface of that name that is not a bridge. Forwarding is only
/// written when `state_dir/forwarding.prev` exists; the file is removed afterwards.
pub fn teardown_host(cfg: &NetConfig, state_dir: &Path) -> Result<()> {
    let mut nl = Socket::open()?;
    let name = &cfg.bridge;
    if let Some(link) = nl
        .get_link(name)
        .map_err(|e| e.explain(format!("cannot look up bridge {name}")))?
    {
        if link_kind(&link) != Some(&InfoKind::Bridge) {
            bail!("interface {name} is not a bridge: not deleting it (check ENGINE_BRIDGE)");
        }
        nl.del_link(name)
            .map_err(|e| e.explain(format!("cannot delete bridge {name}")))?;
    }
    restore_forwarding(state_dir)
}

/// Creates a veth pair: `host_name` on the host, attached to the bridge and up; its peer
/// created directly inside the network namespace of `pid`, named `eth0`, down.
///
/// One netlink request creates both ends, so there is no name clash on the host and no move
/// step. A stale `host_name` (from a crashed container) is an error naming it.
pub fn create_veth(cfg: &NetConfig, host_name: &str, pid: i32) -> Result<()> {
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
        .get_link(&cfg.bridge)
        .map_err(|e| e.explain(format!("{what}: cannot look up bridge {}", cfg.bridge)))?
        .ok_or_else(|| {
            anyhow!(
                "{what}: bridge {} does not exist: set up the host network first",
                cfg.bridge
            )
        })?;
    if link_kind(&bridge) != Some(&InfoKind::Bridge) {
        bail!(
            "{what}: interface {} is not a bridge (check ENGINE_BRIDGE)",
            cfg.bridge
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
pub fn bridge_exists(cfg: &NetConfig) -> Result<bool> {
    link_exists(&cfg.bridge)
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

/// Inside the container's network namespace: brings `lo` up.
pub fn loopback_up() -> Result<()> {
    Socket::open()?
        .set_up_by_name("lo")
        .map_err(|e| e.explain("cannot bring lo up"))
}

/// Inside the container's network namespace: `eth0` gets `ip/prefix`, goes up, and the
/// default route goes via the gateway.
pub fn configure_eth0(ip: Ipv4Addr, prefix: u8, gateway: Ipv4Addr) -> Result<()> {
    if !(1..=30).contains(&prefix) {
        bail!("cannot configure eth0 with {ip}/{prefix}: the prefix must be from 1 to 30");
    }
    if (u32::from(ip) ^ u32::from(gateway)) & mask(prefix) != 0 || ip == gateway {
        bail!("cannot configure eth0 with {ip}/{prefix}: gateway {gateway} must be another address of that subnet");
    }
    let mut nl = Socket::open()?;
    let index = nl
        .get_link("eth0")
        .map_err(|e| e.explain("cannot look up eth0"))?
        .ok_or_else(|| {
            anyhow!("this network namespace has no eth0: the veth was not created in it")
        })?
        .header
        .index;
    match nl.add_addr(index, ip, prefix) {
        Err(e) if e.errno() == Some(libc::EEXIST) => {}
        other => other.map_err(|e| e.explain(format!("cannot add {ip}/{prefix} to eth0")))?,
    }
    // A MAC derived from the address (docker's 02:42:a.b.c.d): a container that
    // reuses an address keeps the MAC, so neighbours' ARP caches stay right.
    let [a, b, c, d] = ip.octets();
    nl.set_mac(index, [0x02, 0x42, a, b, c, d])
        .map_err(|e| e.explain("cannot set eth0's MAC address"))?;
    // Up before the route: the kernel adds the subnet route, which makes the gateway
    // reachable, only for an interface that is up.
    nl.set_up(index)
        .map_err(|e| e.explain("cannot bring eth0 up"))?;
    nl.add_default_route(index, gateway).map_err(|e| match e.errno() {
        Some(libc::ENETUNREACH) => {
            anyhow!("cannot add the default route via {gateway}: it is not in eth0's subnet {ip}/{prefix}")
        }
        Some(libc::EEXIST) => anyhow!("cannot add the default route via {gateway}: the namespace already has one"),
        _ => e.explain(format!("cannot add the default route via {gateway}")),
    })
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

fn enable_forwarding(state_dir: &Path) -> Result<()> {
    let current = read_forwarding()?;
    let record = state_dir.join(FORWARDING_PREV);
    if !record.exists() {
        std::fs::create_dir_all(state_dir)
            .map_err(|e| anyhow!("cannot create {}: {}", state_dir.display(), io_text(&e)))?;
        // Written whole then renamed, so a crash never leaves a half-written record.
        let tmp = state_dir.join(format!("{FORWARDING_PREV}.tmp"));
        std::fs::write(&tmp, format!("{current}\n"))
            .and_then(|()| std::fs::rename(&tmp, &record))
            .map_err(|e| anyhow!("cannot write {}: {}", record.display(), io_text(&e)))?;
    }
    if current != "1" {
        write_forwarding("1")?;
    }
    Ok(())
}

fn restore_forwarding(state_dir: &Path) -> Result<()> {
    let record = state_dir.join(FORWARDING_PREV);
    let prev = match std::fs::read_to_string(&record) {
        Ok(prev) => prev.trim().to_string(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => bail!("cannot read {}: {}", record.display(), io_text(&e)),
    };
    if prev != "0" && prev != "1" {
        bail!(
            "{} holds {prev:?}, not 0 or 1: set {IP_FORWARD} yourself and remove the file",
            record.display()
        );
    }
    if read_forwarding()? != prev {
        write_forwarding(&prev)?;
    }
    std::fs::remove_file(&record)
        .map_err(|e| anyhow!("cannot remove {}: {}", record.display(), io_text(&e)))
}

// ---------------------------------------------------------------------------------------
// rtnetlink: one small synchronous socket with a verb per kernel operation.

/// What went wrong with a netlink request, before it is put into words.
enum NlError {
    /// The kernel refused: its errno and, if it gave one, its own explanation.
    Kernel { errno: i32, detail: Option<String> },
    /// The socket or the protocol failed.
    Other(String),
}

impl NlError {
    fn errno(&self) -> Option<i32> {
        match self {
            NlError::Kernel { errno, .. } => Some(*errno),
            NlError::Other(_) => None,
        }
    }

    /// One line: what failed, then why in words a user can act on.
    fn explain(self, what: impl fmt::Display) -> anyhow::Error {
        match self {
            NlError::Kernel {
                errno: libc::EPERM | libc::EACCES,
                ..
            } => {
                anyhow!("{what}: permission denied: need CAP_NET_ADMIN (run as root)")
            }
            NlError::Kernel {
                errno,
                detail: Some(detail),
            } => anyhow!("{what}: {} ({detail})", errno_text(errno)),
            NlError::Kernel {
                errno,
                detail: None,
            } => anyhow!("{what}: {}", errno_text(errno)),
            NlError::Other(why) => anyhow!("{what}: {why}"),
        }
    }

    fn io(op: &str, e: std::io::Error) -> NlError {
        NlError::Other(format!("netlink {op} failed: {}", io_text(&e)))
    }
}

/// The C library's text for an errno ("File exists"), without Rust's " (os error 17)".
fn errno_text(errno: i32) -> String {
    io_text(&std::io::Error::from_raw_os_error(errno))
}

fn io_text(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.rfind(" (os error ") {
        Some(end) => text[..end].to_string(),
        None => text,
    }
}

/// The link's kind (`bridge`, `veth`...), when the kernel reports one.
fn link_kind(link: &LinkMessage) -> Option<&InfoKind> {
    link.attributes.iter().find_map(|attr| match attr {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|info| match info {
            LinkInfo::Kind(kind) => Some(kind),
            _ => None,
        }),
        _ => None,
    })
}

struct Socket {
    socket: netlink_sys::Socket,
    seq: u32,
    /// One datagram. A dump is sent in datagrams of at most 32 KiB; MSG_TRUNC catches more.
    buf: Vec<u8>,
}

impl Socket {
    fn open() -> Result<Socket> {
        let ctx = |op: &str, e| NlError::io(op, e).explain("cannot open a netlink socket");
        let mut socket = netlink_sys::Socket::new(netlink_sys::protocols::NETLINK_ROUTE)
            .map_err(|e| ctx("socket", e))?;
        socket.bind_auto().map_err(|e| ctx("bind", e))?;
        socket
            .connect(&netlink_sys::SocketAddr::new(0, 0))
            .map_err(|e| ctx("connect", e))?;
        // Short ACKs (no echo of our request) that carry the kernel's own explanation of a
        // refusal. Both are optional: older kernels simply ignore them.
        let _ = socket.set_cap_ack(true);
        let _ = socket.set_ext_ack(true);
        Ok(Socket {
            socket,
            seq: 0,
            buf: vec![0; 64 * 1024],
        })
    }

    /// The link named `name`, or None when there is none.
    fn get_link(&mut self, name: &str) -> Result<Option<LinkMessage>, NlError> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        msg.attributes
            .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
        match self.request(RouteNetlinkMessage::GetLink(msg), 0) {
            Ok(replies) => Ok(replies.into_iter().find_map(|m| match m {
                RouteNetlinkMessage::NewLink(link) => Some(link),
                _ => None,
            })),
            Err(e) if e.errno() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn create_bridge(&mut self, name: &str) -> Result<(), NlError> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        msg.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                InfoKind::Bridge,
            )]));
        self.request(RouteNetlinkMessage::NewLink(msg), NLM_F_CREATE | NLM_F_EXCL)
            .map(drop)
    }

    /// A veth pair in one request: `host` here, attached to `master` and up; `peer` created
    /// directly in the network namespace of `pid` (IFLA_NET_NS_PID in the peer's message).
    fn create_veth(
        &mut self,
        host: &str,
        peer: &str,
        master: u32,
        pid: u32,
    ) -> Result<(), NlError> {
        let mut peer_msg = LinkMessage::default();
        peer_msg
            .attributes
            .push(LinkAttribute::IfName(peer.to_string()));
        peer_msg.attributes.push(LinkAttribute::NetNsPid(pid));
        // One queue each, asked for up front: by default veth makes one per
        // possible CPU and then shrinks to one, and every shrink waits for an
        // RCU grace period with the rtnl lock held (milliseconds per start).
        peer_msg.attributes.push(LinkAttribute::NumTxQueues(1));
        peer_msg.attributes.push(LinkAttribute::NumRxQueues(1));
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::NumTxQueues(1));
        msg.attributes.push(LinkAttribute::NumRxQueues(1));
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        msg.attributes.push(LinkAttribute::IfName(host.to_string()));
        msg.attributes.push(LinkAttribute::Controller(master));
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_msg))),
        ]));
        self.request(RouteNetlinkMessage::NewLink(msg), NLM_F_CREATE | NLM_F_EXCL)
            .map(drop)
    }

    /// Deletes the link named `name`; Ok(false) when there was none.
    fn del_link(&mut self, name: &str) -> Result<bool, NlError> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.request(RouteNetlinkMessage::DelLink(msg), 0) {
            Ok(_) => Ok(true),
            Err(e) if e.errno() == Some(libc::ENODEV) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn set_up(&mut self, index: u32) -> Result<(), NlError> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        self.request(RouteNetlinkMessage::SetLink(msg), 0).map(drop)
    }

    fn set_mac(&mut self, index: u32, mac: [u8; 6]) -> Result<(), NlError> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(LinkAttribute::Address(mac.to_vec()));
        self.request(RouteNetlinkMessage::SetLink(msg), 0).map(drop)
    }

    fn set_up_by_name(&mut self, name: &str) -> Result<(), NlError> {
        let mut msg = LinkMessage::default();
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        self.request(RouteNetlinkMessage::SetLink(msg), 0).map(drop)
    }

    /// The IPv4 addresses (with prefix lengths) of the link with this index.
    fn ipv4_addrs(&mut self, index: u32) -> Result<Vec<(Ipv4Addr, u8)>, NlError> {
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet;
        let replies = self.request(RouteNetlinkMessage::GetAddress(msg), NLM_F_DUMP)?;
        // Older kernels ignore the index in a dump request: filter here.
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) if a.header.index == index => {
                    a.attributes.iter().find_map(|attr| match attr {
                        AddressAttribute::Local(IpAddr::V4(ip)) => Some((*ip, a.header.prefix_len)),
                        _ => None,
                    })
                }
                _ => None,
            })
            .collect())
    }

    fn add_addr(&mut self, index: u32, ip: Ipv4Addr, prefix: u8) -> Result<(), NlError> {
        let broadcast = Ipv4Addr::from(u32::from(ip) | !mask(prefix));
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.prefix_len = prefix;
        msg.header.scope = AddressScope::Universe;
        msg.header.index = index;
        msg.attributes.push(AddressAttribute::Local(ip.into()));
        msg.attributes.push(AddressAttribute::Address(ip.into()));
        msg.attributes.push(AddressAttribute::Broadcast(broadcast));
        self.request(
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
    }

    fn add_default_route(&mut self, index: u32, gateway: Ipv4Addr) -> Result<(), NlError> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet;
        msg.header.destination_prefix_length = 0;
        msg.header.table = RouteHeader::RT_TABLE_MAIN;
        msg.header.protocol = RouteProtocol::Static;
        msg.header.scope = RouteScope::Universe;
        msg.header.kind = RouteType::Unicast;
        msg.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
        msg.attributes.push(RouteAttribute::Oif(index));
        self.request(
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
    }

    /// Sends one request and collects the replies up to its ACK (or, for a dump, up to
    /// NLMSG_DONE). A dump the kernel marks as interrupted by a concurrent change is redone.
    fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, NlError> {
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut header = NetlinkHeader::default();
        // A dump ends with NLMSG_DONE and never gets an ACK; anything else asks for one,
        // so that every request has a definite end and every error is seen.
        header.flags = NLM_F_REQUEST | flags | if dump { 0 } else { NLM_F_ACK };
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        packet.finalize();
        let mut bytes = vec![0; packet.buffer_len()];
        for _ in 0..3 {
            self.seq = self.seq.wrapping_add(1);
            packet.header.sequence_number = self.seq;
            packet.serialize(&mut bytes);
            self.socket
                .send(&bytes, 0)
                .map_err(|e| NlError::io("send", e))?;
            if let Some(replies) = self.receive()? {
                return Ok(replies);
            }
        }
        Err(NlError::Other(
            "the dump was interrupted by concurrent changes three times: try again".into(),
        ))
    }

    /// The replies to the request numbered `self.seq`; None if a dump was interrupted.
    fn receive(&mut self) -> Result<Option<Vec<RouteNetlinkMessage>>, NlError> {
        let mut replies = Vec::new();
        let mut interrupted = false;
        loop {
            let size = loop {
                match self.socket.recv(&mut &mut self.buf[..], libc::MSG_TRUNC) {
                    Ok(size) => break size,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(NlError::io("receive", e)),
                }
            };
            if size > self.buf.len() {
                return Err(NlError::Other(format!(
                    "netlink reply of {size} bytes was truncated"
                )));
            }
            let mut offset = 0;
            while offset < size {
                let packet =
                    NetlinkMessage::<RouteNetlinkMessage>::deserialize(&self.buf[offset..size])
                        .map_err(|e| {
                            NlError::Other(format!("cannot parse a netlink reply: {e}"))
                        })?;
                offset += (packet.header.length as usize).max(16).next_multiple_of(4);
                // A late answer to an earlier request of this socket: not ours.
                if packet.header.sequence_number != self.seq {
                    continue;
                }
                interrupted |= packet.header.flags & NLM_F_DUMP_INTR != 0;
                match packet.payload {
                    NetlinkPayload::InnerMessage(m) => replies.push(m),
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(Some(replies)),
                            Some(code) => Err(NlError::Kernel {
                                errno: -code.get(),
                                detail: ext_ack_text(packet.header.flags, &e.header),
                            }),
                        };
                    }
                    NetlinkPayload::Done(done) if done.code < 0 => {
                        return Err(NlError::Kernel {
                            errno: -done.code,
                            detail: None,
                        })
                    }
                    NetlinkPayload::Done(_) => return Ok((!interrupted).then_some(replies)),
                    NetlinkPayload::Overrun(_) => {
                        return Err(NlError::Other(
                            "netlink overrun: the kernel dropped part of a reply".into(),
                        ))
                    }
                    _ => {}
                }
            }
        }
    }
}

/// The kernel's own explanation in an error reply (extended ACK, NLMSGERR_ATTR_MSG), if any.
/// `payload` is what follows the error code: the echoed request (only its 16-byte header
/// when NLM_F_CAPPED), then attributes when NLM_F_ACK_TLVS.
fn ext_ack_text(flags: u16, payload: &[u8]) -> Option<String> {
    const NLMSGERR_ATTR_MSG: u16 = 1;
    if flags & NLM_F_ACK_TLVS == 0 {
        return None;
    }
    let echoed = if flags & NLM_F_CAPPED != 0 {
        16
    } else {
        let len = u32::from_ne_bytes(payload.get(..4)?.try_into().ok()?) as usize;
        len.next_multiple_of(4)
    };
    NlasIterator::new(payload.get(echoed..)?)
        .map_while(|nla| nla.ok())
        .find_map(|nla| {
            (nla.kind() == NLMSGERR_ATTR_MSG).then(|| {
                let text = String::from_utf8_lossy(nla.value());
                text.trim_end_matches('\0').to_string()
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel's extended ACK text reaches the error. Runs in a network namespace of
    /// its own (this thread only), proven before anything is sent.
    #[test]
    fn kernel_explanation_is_kept() {
        std::thread::spawn(|| {
            let ino = || {
                std::os::unix::fs::MetadataExt::ino(
                    &std::fs::metadata("/proc/thread-self/ns/net").unwrap(),
                )
            };
            let before = ino();
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("needs root");
            assert_ne!(before, ino(), "still in the original network namespace");
            let mut nl = Socket::open().unwrap();
            let lo = nl.get_link("lo").ok().flatten().unwrap().header.index;
            // Prefix 33 is refused by the kernel with an explanation of its own.
            let err = nl
                .add_addr(lo, Ipv4Addr::new(10, 1, 2, 3), 33)
                .err()
                .unwrap();
            assert_eq!(err.errno(), Some(libc::EINVAL));
            let text = format!("{}", err.explain("add"));
            assert!(text.contains("prefix length"), "{text}");
        })
        .join()
        .unwrap();
    }
}
