//! `-p [HOSTIP:]HOSTPORT:CONTAINERPORT[/tcp|udp]`, `--dns`, `--dns-search`,
//! `--add-host`: what a bridged container publishes and resolves.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

const PUBLISH_EXAMPLE: &str =
    "write it as [HOSTIP:]HOSTPORT:CONTAINERPORT[/tcp|udp], e.g. -p 8080:80";
const ADD_HOST_EXAMPLE: &str = "write it as NAME:IP, e.g. --add-host db:192.0.2.10";

/// A `-p`, `--dns`, `--dns-search` or `--add-host` refused: the argument as given.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    #[error("-p {arg:?}: unknown protocol {proto:?}: use tcp or udp")]
    Protocol { arg: String, proto: String },
    #[error("-p {arg:?}: host address {ip:?} is not an IPv4 address: {PUBLISH_EXAMPLE}")]
    HostAddress { arg: String, ip: String },
    #[error("-p {arg:?}: {PUBLISH_EXAMPLE}")]
    Publish { arg: String },
    #[error("-p {arg:?}: {what} port {port:?} is not a number from 1 to 65535: {PUBLISH_EXAMPLE}")]
    Port {
        arg: String,
        what: &'static str,
        port: String,
    },
    #[error("-p {arg} and -p {earlier} publish the same host port: give each its own")]
    SameHostPort { arg: String, earlier: PortMapping },
    #[error(
        "--dns {0:?} is not an IP address: give a nameserver's address, e.g. --dns 192.0.2.53"
    )]
    Server(String),
    #[error("--dns-search {0:?} is not a domain name: give one such as example.com")]
    Search(String),
    #[error("--add-host {0:?} has no ':': {ADD_HOST_EXAMPLE}")]
    AddHostForm(String),
    #[error("--add-host {arg:?}: {name:?} is not a host name (letters, digits, '-' and '.'): {ADD_HOST_EXAMPLE}")]
    AddHostName { arg: String, name: String },
    #[error("--add-host {arg:?}: {ip:?} is not an IP address: {ADD_HOST_EXAMPLE}")]
    AddHostIp { arg: String, ip: String },
}

type Result<T, E = Error> = std::result::Result<T, E>;

/// Transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// One `-p [HOSTIP:]HOSTPORT:CONTAINERPORT[/PROTO]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    /// The host address it is published on; `None`: every address of the host.
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub container_port: u16,
    pub proto: Proto,
}

impl fmt::Display for PortMapping {
    /// Docker's `ps` form: `0.0.0.0:8080->80/tcp`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}->{}/{}",
            self.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED),
            self.host_port,
            self.container_port,
            self.proto.as_str()
        )
    }
}

impl PortMapping {
    /// Whether both would catch the same packets: same protocol and host port,
    /// and host addresses that overlap (one of them unspecified, or equal).
    pub fn clashes_with(&self, other: &PortMapping) -> bool {
        self.proto == other.proto
            && self.host_port == other.host_port
            && match (self.host_ip, other.host_ip) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

/// What the user asked for: `--dns`, `--dns-search`, `--add-host` (parsed here).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsOptions {
    pub servers: Vec<IpAddr>,
    pub search: Vec<String>,
    pub hosts: Vec<(String, IpAddr)>,
    /// `--network-alias`: names of the container for its peers on the
    /// bridge, besides its name.
    pub aliases: Vec<String>,
}

/// One `-p`.
pub fn parse_publish(s: &str) -> Result<PortMapping> {
    let (spec, proto) = match s.rsplit_once('/') {
        Some((spec, "tcp")) => (spec, Proto::Tcp),
        Some((spec, "udp")) => (spec, Proto::Udp),
        Some((_, other)) => {
            return Err(Error::Protocol {
                arg: s.into(),
                proto: other.into(),
            })
        }
        None => (s, Proto::Tcp),
    };
    let parts: Vec<&str> = spec.split(':').collect();
    let (host_ip, host_port, container_port) = match parts[..] {
        [hp, cp] => (None, hp, cp),
        [ip, hp, cp] => {
            let ip: Ipv4Addr = ip.parse().map_err(|_| Error::HostAddress {
                arg: s.into(),
                ip: ip.into(),
            })?;
            ((!ip.is_unspecified()).then_some(ip), hp, cp)
        }
        _ => return Err(Error::Publish { arg: s.into() }),
    };
    let port = |p: &str, what: &'static str| -> Result<u16> {
        match p.parse::<u16>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(Error::Port {
                arg: s.into(),
                what,
                port: p.into(),
            }),
        }
    };
    Ok(PortMapping {
        host_ip,
        host_port: port(host_port, "host")?,
        container_port: port(container_port, "container")?,
        proto,
    })
}

/// Every `-p`, with no two catching the same packets.
pub fn parse_publishes(args: &[String]) -> Result<Vec<PortMapping>> {
    let mut out: Vec<PortMapping> = Vec::new();
    for arg in args {
        let map = parse_publish(arg)?;
        if let Some(earlier) = out.iter().find(|m| m.clashes_with(&map)) {
            return Err(Error::SameHostPort {
                arg: arg.clone(),
                earlier: *earlier,
            });
        }
        out.push(map);
    }
    Ok(out)
}

/// `--dns IP`.
pub fn parse_server(s: &str) -> Result<IpAddr> {
    s.parse().map_err(|_| Error::Server(s.into()))
}

/// `--dns-search DOMAIN`: a domain name (labels of letters, digits and '-',
/// at most 63 bytes each, 253 in all), a trailing dot allowed.
pub fn parse_search(s: &str) -> Result<String> {
    let domain = s.strip_suffix('.').unwrap_or(s);
    if !is_dns_name(domain) {
        return Err(Error::Search(s.into()));
    }
    Ok(domain.to_string())
}

/// `--add-host NAME:IP` (an IPv6 address holds ':' too: the name ends at the first one).
pub fn parse_add_host(s: &str) -> Result<(String, IpAddr)> {
    let Some((name, ip)) = s.split_once(':') else {
        return Err(Error::AddHostForm(s.into()));
    };
    if !is_dns_name(name) {
        return Err(Error::AddHostName {
            arg: s.into(),
            name: name.into(),
        });
    }
    let ip: IpAddr = ip.parse().map_err(|_| Error::AddHostIp {
        arg: s.into(),
        ip: ip.into(),
    })?;
    Ok((name.to_string(), ip))
}

/// All three options.
pub fn parse_dns(servers: &[String], search: &[String], hosts: &[String]) -> Result<DnsOptions> {
    Ok(DnsOptions {
        servers: servers
            .iter()
            .map(|s| parse_server(s))
            .collect::<Result<_>>()?,
        search: search
            .iter()
            .map(|s| parse_search(s))
            .collect::<Result<_>>()?,
        hosts: hosts
            .iter()
            .map(|s| parse_add_host(s))
            .collect::<Result<_>>()?,
        aliases: Vec::new(),
    })
}

fn is_dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(ip: Option<[u8; 4]>, hp: u16, proto: Proto) -> PortMapping {
        PortMapping {
            host_ip: ip.map(Ipv4Addr::from),
            host_port: hp,
            container_port: 80,
            proto,
        }
    }

    #[test]
    fn clashes_need_same_port_protocol_and_overlapping_address() {
        let any = map(None, 8080, Proto::Tcp);
        let lo = map(Some([127, 0, 0, 1]), 8080, Proto::Tcp);
        let other = map(Some([10, 0, 0, 1]), 8080, Proto::Tcp);
        assert!(any.clashes_with(&lo));
        assert!(lo.clashes_with(&any));
        assert!(!lo.clashes_with(&other));
        assert!(!any.clashes_with(&map(None, 8080, Proto::Udp)));
        assert!(!any.clashes_with(&map(None, 8081, Proto::Tcp)));
    }

    #[test]
    fn shown_as_docker_does() {
        assert_eq!(
            map(None, 8080, Proto::Tcp).to_string(),
            "0.0.0.0:8080->80/tcp"
        );
        assert_eq!(
            map(Some([127, 0, 0, 1]), 53, Proto::Udp).to_string(),
            "127.0.0.1:53->80/udp"
        );
    }

    #[test]
    fn publish_forms() {
        let m = parse_publish("8080:80").unwrap();
        assert_eq!(
            (m.host_ip, m.host_port, m.container_port, m.proto),
            (None, 8080, 80, Proto::Tcp)
        );
        let m = parse_publish("127.0.0.1:53:5353/udp").unwrap();
        assert_eq!(m.host_ip, Some(Ipv4Addr::LOCALHOST));
        assert_eq!(
            (m.host_port, m.container_port, m.proto),
            (53, 5353, Proto::Udp)
        );
        assert_eq!(parse_publish("0.0.0.0:1:2/tcp").unwrap().host_ip, None);
        for bad in [
            "80",
            "0:80",
            "8080:0",
            "70000:80",
            "x:80",
            "8080:80/sctp",
            "1.2.3:80:80",
            "a:b:c:d",
            "::1:80:80",
            "",
        ] {
            assert!(parse_publish(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn duplicate_host_ports_are_refused() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(parse_publishes(&args(&["8080:80", "8080:81"])).is_err());
        assert!(parse_publishes(&args(&["8080:80", "127.0.0.1:8080:81"])).is_err());
        assert!(parse_publishes(&args(&["8080:80", "8080:80/udp", "8081:80"])).is_ok());
    }

    #[test]
    fn dns_options_are_validated() {
        assert!(parse_server("192.0.2.53").is_ok());
        assert!(parse_server("2001:db8::53").is_ok());
        assert!(parse_server("dns.example").is_err());
        assert_eq!(parse_search("example.com.").unwrap(), "example.com");
        assert!(parse_search("bad domain").is_err());
        assert!(parse_search("-x.com").is_err());
        assert!(parse_search("").is_err());
        assert_eq!(
            parse_add_host("db:192.0.2.10").unwrap(),
            ("db".to_string(), "192.0.2.10".parse().unwrap())
        );
        assert_eq!(
            parse_add_host("v6:2001:db8::1").unwrap().1,
            "2001:db8::1".parse::<IpAddr>().unwrap()
        );
        assert!(parse_add_host("db").is_err());
        assert!(parse_add_host("db:nowhere").is_err());
        assert!(parse_add_host("bad name:192.0.2.1").is_err());
    }
}
