//! `--net bridge|none` and the optional container address.

use crate::model::subnet::NetConfig;
use std::net::Ipv4Addr;

/// A `--net` (or its address) refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    #[error("address {0} given with --net none: drop the address or use --net bridge")]
    AddressWithoutNetwork(String),
    #[error("unknown --net mode {0:?}: use bridge or none")]
    UnknownMode(String),
    #[error(transparent)]
    Subnet(#[from] crate::model::subnet::Error),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Network {
    /// Only `lo`, in a network namespace of its own.
    None,
    /// A veth on the bridge; `ip` None means lease the lowest free address.
    Bridge {
        net: NetConfig,
        ip: Option<Ipv4Addr>,
    },
}

/// `mode` with the address a user gave; `bridge`/`subnet` are the engine's settings.
pub fn parse_network(
    mode: &str,
    ip: Option<&str>,
    bridge: &str,
    subnet: &str,
) -> Result<Network, Error> {
    match mode {
        "none" => {
            if let Some(ip) = ip {
                return Err(Error::AddressWithoutNetwork(ip.into()));
            }
            Ok(Network::None)
        }
        "bridge" => {
            let net = NetConfig::new(bridge, subnet)?;
            let ip = ip.map(|ip| net.parse_container_ip(ip)).transpose()?;
            Ok(Network::Bridge { net, ip })
        }
        other => Err(Error::UnknownMode(other.into())),
    }
}
