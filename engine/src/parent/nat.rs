//! The engine's nftables table (outbound NAT, forward policy), installed
//! once for every bridged container, and the marker that says it is there.

use crate::model::ports::{PortMapping, Proto};
use crate::model::subnet::NetConfig;
use crate::sys::net::nat as sys_nat;
use crate::sys::state::StateDir;
use anyhow::{Context, Result};

/// Left in the state directory by `install`, so a bridged run knows the
/// table is there without running nft (the state directory, like the
/// ruleset, does not survive a reboot when it is on /run).
const NAT_MARKER: &str = "nftables";

/// Whether the engine's nftables table was installed (per the marker).
pub(crate) fn installed(state: &StateDir) -> bool {
    state.dir.join(NAT_MARKER).exists()
}

/// Adds the engine's nftables table (outbound NAT, forward policy) and the marker.
pub(crate) fn install(net: &NetConfig, state: &StateDir) -> Result<()> {
    sys_nat::install(&net.bridge, net.network, net.prefix)?;
    std::fs::write(state.dir.join(NAT_MARKER), "inet engine\n")
        .with_context(|| format!("cannot write {}", state.dir.join(NAT_MARKER).display()))
}

/// The first bridged run installs the table. Without nft a container still
/// gets its bridge (with a warning) unless it publishes ports (`required`).
pub(crate) fn ensure(net: &NetConfig, state: &StateDir, required: bool) -> Result<()> {
    if installed(state) {
        return Ok(());
    }
    match install(net, state) {
        Err(e) if !required => {
            eprintln!("engine: containers get no outbound NAT: {e:#}");
            Ok(())
        }
        other => other,
    }
}

/// Removes the marker (the table is gone).
pub(crate) fn forget(state: &StateDir) {
    let _ = std::fs::remove_file(state.dir.join(NAT_MARKER));
}

/// A published port of the description, as the table forwards it.
impl From<&PortMapping> for sys_nat::Forward {
    fn from(map: &PortMapping) -> Self {
        sys_nat::Forward {
            host_ip: map.host_ip,
            host_port: map.host_port,
            container_port: map.container_port,
            proto: match map.proto {
                Proto::Tcp => "tcp",
                Proto::Udp => "udp",
            },
        }
    }
}

/// The published ports of the description, as the table forwards them.
pub(crate) fn forwards(ports: &[PortMapping]) -> Vec<sys_nat::Forward> {
    ports.iter().map(sys_nat::Forward::from).collect()
}
