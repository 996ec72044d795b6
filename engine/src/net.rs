//! Bridge, veth, addresses and routes over rtnetlink; address leasing.
//! STUB: being written by the networking helper; signatures are the contract.

use anyhow::{bail, Result};
use std::net::Ipv4Addr;

/// The validated host network: bridge name, subnet and gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConfig {
    pub bridge: String,
    pub network: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
}

impl NetConfig {
    /// Checks `bridge` (1-15 chars, a valid interface name) and `subnet` (`A.B.C.D/P`, P <= 30).
    pub fn new(bridge: &str, subnet: &str) -> Result<Self> {
        let _ = (bridge, subnet);
        bail!("networking is not implemented yet")
    }

    /// Parses a container address given as `A.B.C.D` or `A.B.C.D/P` and checks it is a usable
    /// host address of the subnet (not the network, broadcast or gateway address).
    pub fn parse_container_ip(&self, ip: &str) -> Result<Ipv4Addr> {
        let _ = ip;
        bail!("networking is not implemented yet")
    }

    /// The lowest host address of the subnet that is neither the gateway nor in `used`.
    pub fn lowest_free(&self, used: &[Ipv4Addr]) -> Result<Ipv4Addr> {
        let _ = used;
        bail!("networking is not implemented yet")
    }
}

/// The host-side veth name for a container: at most 15 bytes, unique even for long names.
pub fn veth_name(container: &str) -> String {
    format!("ve-{}", &container[..container.len().min(12)])
}

/// Creates (if missing) the bridge with the gateway address, up, and turns IPv4 forwarding on,
/// recording the previous forwarding value under `state_dir` so teardown can restore it.
pub fn setup_host(cfg: &NetConfig, state_dir: &std::path::Path) -> Result<()> {
    let _ = (cfg, state_dir);
    bail!("networking is not implemented yet")
}

/// Removes the bridge and restores forwarding to its value before `setup_host`. Idempotent.
pub fn teardown_host(cfg: &NetConfig, state_dir: &std::path::Path) -> Result<()> {
    let _ = (cfg, state_dir);
    bail!("networking is not implemented yet")
}

/// Creates a veth pair: `host_name` on the host, attached to the bridge and up; its peer
/// created directly inside the network namespace of `pid`, named `eth0`.
pub fn create_veth(cfg: &NetConfig, host_name: &str, pid: i32) -> Result<()> {
    let _ = (cfg, host_name, pid);
    bail!("networking is not implemented yet")
}

/// Deletes a link by name on the host; a link that is already gone is not an error.
pub fn delete_link(name: &str) -> Result<()> {
    let _ = name;
    Ok(())
}

/// Inside the container's network namespace: brings `lo` up.
pub fn loopback_up() -> Result<()> {
    bail!("networking is not implemented yet")
}

/// Inside the container's network namespace: `eth0` gets `ip/prefix`, goes up, and the
/// default route goes via the gateway.
pub fn configure_eth0(ip: Ipv4Addr, prefix: u8, gateway: Ipv4Addr) -> Result<()> {
    let _ = (ip, prefix, gateway);
    bail!("networking is not implemented yet")
}
