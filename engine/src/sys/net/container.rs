//! The container side: run by the child inside the container's network namespace,
//! before exec.

use super::addr::mask;
use super::netlink::Socket;
use super::{Error, Result};
use std::net::Ipv4Addr;

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
        return Err(Error::BadPrefix { ip, prefix });
    }
    if (u32::from(ip) ^ u32::from(gateway)) & mask(prefix) != 0 || ip == gateway {
        return Err(Error::BadGateway {
            ip,
            prefix,
            gateway,
        });
    }
    let mut nl = Socket::open()?;
    let index = nl
        .get_link("eth0")
        .map_err(|e| e.explain("cannot look up eth0"))?
        .ok_or(Error::NoEth0)?
        .header
        .index;
    match nl.add_addr(index, ip, prefix) {
        Err(e) if e.errno() == Some(libc::EEXIST) => {}
        other => other.map_err(|e| e.explain(format!("cannot add {ip}/{prefix} to eth0")))?,
    }
    nl.set_mac(index, super::addr::mac_of(ip))
        .map_err(|e| e.explain("cannot set eth0's MAC address"))?;
    // Up before the route: the kernel adds the subnet route, which makes the gateway
    // reachable, only for an interface that is up.
    nl.set_up(index)
        .map_err(|e| e.explain("cannot bring eth0 up"))?;
    nl.add_default_route(index, gateway)
        .map_err(|e| match e.errno() {
            Some(libc::ENETUNREACH) => Error::GatewayUnreachable {
                gateway,
                ip,
                prefix,
            },
            Some(libc::EEXIST) => Error::DefaultRouteExists { gateway },
            _ => e.explain(format!("cannot add the default route via {gateway}")),
        })
}
