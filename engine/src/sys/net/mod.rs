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
