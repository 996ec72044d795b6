//! `--net bridge|none` and the optional container address.

use crate::model::subnet::NetConfig;
use std::net::Ipv4Addr;

/// A `--net` (or its address) refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    #[error("address {0} given with --net none: drop the address or use --net bridge")]
    AddressWithoutNetwork(String),
    #[error("unknown --net mode {0:?}: use bridge, none or container:NAME")]
    UnknownMode(String),
    #[error("address {0} given with --network container:NAME, whose network is that container's: drop the address")]
    AddressWithContainer(String),
    #[error("invalid --network {0:?}: name a running container, container:NAME")]
    ContainerName(String),
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
    /// `container:NAME`: the network namespace of that running container,
    /// joined as it is (docker's mode): its links, addresses and ports.
    Container(String),
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
        joined if joined.starts_with("container:") => {
            let name = &joined["container:".len()..];
            if let Some(ip) = ip {
                return Err(Error::AddressWithContainer(ip.into()));
            }
            crate::model::names::check_name(name)
                .map_err(|_| Error::ContainerName(joined.into()))?;
            Ok(Network::Container(name.into()))
        }
        other => Err(Error::UnknownMode(other.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(mode: &str, ip: Option<&str>) -> Result<Network, Error> {
        parse_network(mode, ip, "engine0", "192.168.1.0/24")
    }

    #[test]
    fn container_networks() {
        assert_eq!(
            net("container:web", None),
            Ok(Network::Container("web".into()))
        );
        assert_eq!(
            net("container:web", Some("192.168.1.9")),
            Err(Error::AddressWithContainer("192.168.1.9".into()))
        );
        for bad in ["container:", "container:-x", "container:a/b"] {
            assert_eq!(net(bad, None), Err(Error::ContainerName(bad.into())));
        }
        assert_eq!(net("host", None), Err(Error::UnknownMode("host".into())));
    }
}
