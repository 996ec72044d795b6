//! The validated host network (`NetConfig`): bridge name, subnet, gateway; address
//! checks and the lowest free address for a new container's lease.

use crate::sys::net::addr::BadIfname;
use crate::sys::net::addr::{check_ifname, mask};
use std::collections::HashSet;
use std::net::Ipv4Addr;

const SUBNET_EXAMPLE: &str = "write it as A.B.C.D/P, e.g. 192.168.1.0/24";

/// ENGINE_BRIDGE/ENGINE_SUBNET, or a container address, refused; or no address left.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    #[error("ENGINE_BRIDGE {bridge:?} {why}")]
    Bridge { bridge: String, why: BadIfname },
    #[error("ENGINE_SUBNET {subnet:?} has no prefix length: {SUBNET_EXAMPLE}")]
    NoPrefix { subnet: String },
    #[error("ENGINE_SUBNET {subnet:?}: {addr:?} is not an IPv4 address: {SUBNET_EXAMPLE}")]
    SubnetAddress { subnet: String, addr: String },
    #[error("ENGINE_SUBNET {subnet:?}: prefix {prefix:?} is not a number from 1 to 30: {SUBNET_EXAMPLE}")]
    SubnetPrefix { subnet: String, prefix: String },
    #[error("ENGINE_SUBNET {subnet:?} is smaller than /30: use a prefix of 30 or less")]
    TooSmall { subnet: String },
    #[error("ENGINE_SUBNET {subnet:?} covers every IPv4 address: use a prefix from 1 to 30")]
    Everything { subnet: String },
    #[error("ENGINE_SUBNET {subnet:?} has host bits set: did you mean {masked}/{prefix}?")]
    HostBits {
        subnet: String,
        masked: Ipv4Addr,
        prefix: u8,
    },
    #[error(
        "ENGINE_SUBNET {subnet:?} overlaps {range}: use a private range such as 192.168.1.0/24"
    )]
    Reserved { subnet: String, range: &'static str },
    #[error("container address {ip:?} is not an IPv4 address: write it as A.B.C.D, e.g. {first}")]
    Address { ip: String, first: Ipv4Addr },
    #[error("container address {ip:?}: the prefix must be the subnet's (/{prefix}): write {parsed} or {parsed}/{prefix}")]
    OtherPrefix {
        ip: String,
        parsed: Ipv4Addr,
        prefix: u8,
    },
    #[error("container address {ip:?}: prefix {given:?} is not a number: write {parsed} or {parsed}/{prefix}")]
    BadPrefix {
        ip: String,
        given: String,
        parsed: Ipv4Addr,
        prefix: u8,
    },
    /// The address is the subnet's network, broadcast or gateway address, or outside it.
    #[error("container address {ip} is {what} {subnet}: {hint}")]
    Unusable {
        ip: Ipv4Addr,
        what: &'static str,
        subnet: String,
        hint: String,
    },
    #[error("subnet {subnet} is full ({used} address{} in use): stop a container or choose a larger ENGINE_SUBNET", if *.used == 1 { "" } else { "es" })]
    Full { subnet: String, used: usize },
}

type Result<T, E = Error> = std::result::Result<T, E>;

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
            return Err(Error::Bridge {
                bridge: bridge.into(),
                why,
            });
        }
        let Some((addr, prefix)) = subnet.split_once('/') else {
            return Err(Error::NoPrefix {
                subnet: subnet.into(),
            });
        };
        let network: Ipv4Addr = addr.parse().map_err(|_| Error::SubnetAddress {
            subnet: subnet.into(),
            addr: addr.into(),
        })?;
        let prefix = parse_prefix(prefix).ok_or_else(|| Error::SubnetPrefix {
            subnet: subnet.into(),
            prefix: prefix.into(),
        })?;
        if prefix > 30 {
            return Err(Error::TooSmall {
                subnet: subnet.into(),
            });
        }
        if prefix == 0 {
            return Err(Error::Everything {
                subnet: subnet.into(),
            });
        }
        let masked = Ipv4Addr::from(u32::from(network) & mask(prefix));
        if masked != network {
            return Err(Error::HostBits {
                subnet: subnet.into(),
                masked,
                prefix,
            });
        }
        for (range, len, what) in RESERVED {
            let common = mask(prefix.min(len));
            if u32::from(network) & common == range & common {
                return Err(Error::Reserved {
                    subnet: subnet.into(),
                    range: what,
                });
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
        let parsed: Ipv4Addr = addr.parse().map_err(|_| Error::Address {
            ip: ip.into(),
            first: self.first_host(),
        })?;
        if let Some(p) = prefix {
            match parse_prefix(p) {
                Some(p) if p == self.prefix => {}
                Some(_) => {
                    return Err(Error::OtherPrefix {
                        ip: ip.into(),
                        parsed,
                        prefix: self.prefix,
                    })
                }
                None => {
                    return Err(Error::BadPrefix {
                        ip: ip.into(),
                        given: p.into(),
                        parsed,
                        prefix: self.prefix,
                    })
                }
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
        Err(Error::Unusable {
            ip: parsed,
            what,
            subnet: self.subnet(),
            hint: self.pick_hint(),
        })
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
            .ok_or_else(|| Error::Full {
                subnet: self.subnet(),
                used: used.len(),
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

/// A prefix length: one or two digits, at most 32 (no sign, no spaces).
fn parse_prefix(s: &str) -> Option<u8> {
    let ok = (1..=2).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
    s.parse().ok().filter(|&p| ok && p <= 32)
}
