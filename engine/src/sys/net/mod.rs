//! Bridge, veth, addresses and routes over rtnetlink; address allocation.
//!
//! Split as netavark splits it:
//! - `netlink`: one synchronous socket with a verb per kernel operation, and its errors
//!   put into sentences;
//! - `addr`: the validated network (`NetConfig`), subnet and address checks, leases;
//! - `host`: the bridge, IPv4 forwarding, the host end of each veth (engine's namespace);
//! - `container`: `lo` and `eth0` inside the container's network namespace, run by the
//!   child before exec;
//! - `nat`: the engine's nftables table (outbound NAT, forward policy, published ports);
//! - `dns`: each bridged container's resolv.conf, hosts and hostname.
//!
//! Everything talks to the kernel over a synchronous rtnetlink socket: no `ip`, no async
//! runtime, no threads (the engine clones processes and must stay single-threaded).
//! A netlink socket, and `/proc/sys/net`, act in the network namespace of the calling
//! *thread* at the time they are opened.

pub mod addr;
mod container;
pub mod dns;
mod host;
pub mod nat;
mod netlink;

pub use container::{configure_eth0, loopback_up};
pub use host::{
    bridge_exists, create_veth, delete_link, link_exists, setup_host, teardown_host, veth_name,
    Bridge,
};
pub use netlink::NlError;

use std::net::Ipv4Addr;
use std::path::PathBuf;

/// Why the bridge, a veth, forwarding or a container's interfaces could not be set up
/// or torn down (the nftables table has [`nat::Error`], the DNS files [`dns::Error`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A netlink request failed: what was being done, and why in words.
    #[error("{what}: {why}")]
    Netlink { what: String, why: NlError },
    #[error("cannot create bridge {bridge}: this kernel has no bridge support: load it with `modprobe bridge`")]
    NoBridgeSupport { bridge: String },
    #[error("bridge {bridge} disappeared right after it was created: is another engine tearing it down?")]
    BridgeVanished { bridge: String },
    #[error("interface {name} exists but is not a bridge: remove it or set ENGINE_BRIDGE to another name")]
    NotABridge { name: String },
    #[error("interface {name} is not a bridge: not deleting it (check ENGINE_BRIDGE)")]
    NotABridgeToDelete { name: String },
    #[error("bridge {bridge} carries the containers of the engine whose state directory is {}: give this one (ENGINE_STATE_DIR={}) its own ENGINE_BRIDGE and ENGINE_SUBNET, or use ENGINE_STATE_DIR={}", .other.display(), .me.display(), .other.display())]
    BridgeClaimed {
        bridge: String,
        other: PathBuf,
        me: PathBuf,
    },
    #[error("cannot write 0 to {}: the bridge would accept IPv6 router advertisements from containers", .path.display())]
    RouterAdvertisements {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("veth name {name:?} {why}")]
    BadVethName { name: String, why: addr::BadIfname },
    #[error("cannot delete interface {name:?}: the name {why}")]
    BadLinkName { name: String, why: addr::BadIfname },
    #[error("cannot create veth {veth}: {why}")]
    Veth { veth: String, why: VethRefused },
    #[error("cannot read {}: {}", .path.display(), netlink::io_text(.error))]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot create {}: {}", .path.display(), netlink::io_text(.error))]
    CreateDir {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot write {}: {}", .path.display(), netlink::io_text(.error))]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot remove {}: {}", .path.display(), netlink::io_text(.error))]
    Remove {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(
        "cannot write {value} to {path}: permission denied (run as root, outside a container)"
    )]
    ForwardingDenied { value: String, path: &'static str },
    #[error("cannot write {value} to {path}: {}", netlink::io_text(.error))]
    WriteForwarding {
        value: String,
        path: &'static str,
        error: std::io::Error,
    },
    #[error("{} holds {value:?}, not 0 or 1: set {forward} yourself and remove the file", .record.display())]
    BadForwardingRecord {
        record: PathBuf,
        value: String,
        forward: &'static str,
    },
    #[error("cannot configure eth0 with {ip}/{prefix}: the prefix must be from 1 to 30")]
    BadPrefix { ip: Ipv4Addr, prefix: u8 },
    #[error("cannot configure eth0 with {ip}/{prefix}: gateway {gateway} must be another address of that subnet")]
    BadGateway {
        ip: Ipv4Addr,
        prefix: u8,
        gateway: Ipv4Addr,
    },
    #[error("this network namespace has no eth0: the veth was not created in it")]
    NoEth0,
    #[error(
        "cannot add the default route via {gateway}: it is not in eth0's subnet {ip}/{prefix}"
    )]
    GatewayUnreachable {
        gateway: Ipv4Addr,
        ip: Ipv4Addr,
        prefix: u8,
    },
    #[error("cannot add the default route via {gateway}: the namespace already has one")]
    DefaultRouteExists { gateway: Ipv4Addr },
}

/// Why a veth pair was not created, after "cannot create veth NAME: ".
#[derive(Debug, thiserror::Error)]
pub enum VethRefused {
    #[error("{pid} is not a process id")]
    NotAPid { pid: i32 },
    #[error("bridge {bridge} does not exist: set up the host network first")]
    NoBridge { bridge: String },
    #[error("interface {bridge} is not a bridge (check ENGINE_BRIDGE)")]
    NotABridge { bridge: String },
    #[error("interface {veth} already exists (a running container of that name, or one that crashed): remove it with `ip link del {veth}`")]
    Exists { veth: String },
    #[error("the network namespace of process {pid} already has an eth0")]
    HasEth0 { pid: u32 },
    #[error("process {pid} does not exist (did the container exit early?)")]
    NoProcess { pid: u32 },
    #[error("this kernel has no veth support: load it with `modprobe veth`")]
    NoVethSupport,
}

type Result<T, E = Error> = std::result::Result<T, E>;
