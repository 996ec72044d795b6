//! Outbound NAT, the forward policy and published ports: one nftables table of
//! the engine's own (`inet engine`), made through `nft -j -f -` (the JSON API).
//!
//! Setup adds the table once: masquerade for the subnet leaving through any
//! interface but the bridge, a forward chain that lets containers out and
//! replies in but drops connections the host's other networks open towards
//! them (unless they were published), masquerade for the two published-port
//! paths whose replies would otherwise bypass the host (the host itself on
//! 127.0.0.1, and a container reaching another through the host: hairpin),
//! and a guard dropping packets from the bridge to 127.0.0.0/8 (needed once
//! `route_localnet` is on, see CVE-2020-8558). Teardown deletes that table
//! and nothing else.
//!
//! A container with `-p` gets two base chains of its own, `pre-NAME` (hook
//! prerouting: traffic from other hosts and from containers) and `out-NAME`
//! (hook output: the host itself), holding one DNAT rule per published port.
//! They are found by name alone, so exit and stale recovery remove them without
//! reading anything back. NAT chains only see the first packet of a
//! connection, so a chain per container costs nothing per packet afterwards.
//! A container without `-p` costs nothing at all: no `nft` is run.
//!
//! Why `nft` and not netlink from Rust: a transaction costs the kernel about
//! 0.4 ms; `nft` adds its process start (about 10 ms on the project's loaded
//! 2-core machine), paid once at setup and twice per container with `-p`.
//! The pure-Rust netlink crate (`rustables`) is GPL-3.0, which this MIT
//! project cannot take, and `nftnl` links libnftnl (GPL-2.0).
//!
//! Other firewalls: nftables evaluates every base chain on a hook, and a drop
//! in any of them is final. So another table's drop policy on forward (docker
//! sets the iptables FORWARD policy to DROP, with iptables-nft or
//! iptables-legacy) would drop the containers' traffic whatever this table
//! accepts. Setup therefore inserts two accept rules for the bridge, commented
//! `engine BRIDGE`, into such a FORWARD chain (as podman and libvirt do);
//! teardown deletes exactly those. Nothing else of another firewall is read or
//! changed, and its rules keep working: this table only matches the bridge and
//! the subnet.

use rustix::io::Errno;
use serde_json::{json, Value};
use std::fmt;
use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

/// Why a published port was refused, or the table or another firewall's
/// rules could not be changed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open a socket to check host port {map}: {}", crate::sys::errno_desc(*.errno))]
    PortSocket { map: Forward, errno: Errno },
    #[error("cannot check host port {map}: {step}: {}", crate::sys::errno_desc(*.errno))]
    PortCheck {
        map: Forward,
        step: &'static str,
        errno: Errno,
    },
    #[error("host port {}/{} is in use by a process on this host: publish another host port, or stop that process", .map.host_port, .map.proto)]
    PortInUse { map: Forward },
    #[error("host address {ip} of -p {map} is not an address of this host: give one of its addresses, or none")]
    NotHostAddress { ip: Ipv4Addr, map: Forward },
    #[error("cannot write 1 to {path}: {error}: does bridge {bridge} exist? run `engine setup`")]
    RouteLocalnet {
        path: String,
        bridge: String,
        error: std::io::Error,
    },
    /// `nft` failed doing `what` ("add the engine's nftables table").
    #[error("cannot {what}: {why}")]
    Nft { what: String, why: NftFailure },
    /// Publishing failed, most likely because the table is not there.
    #[error("{0} (is the table there? run `engine setup`)")]
    NoTable(Box<Error>),
    #[error("cannot run {tool}: {error}")]
    RunIptables {
        tool: &'static str,
        error: std::io::Error,
    },
    #[error("{tool} {op} {rule}: {stderr}")]
    Iptables {
        tool: &'static str,
        op: &'static str,
        rule: String,
        stderr: String,
    },
}

/// How a run of `nft` failed, after "cannot WHAT: ".
#[derive(Debug, thiserror::Error)]
pub enum NftFailure {
    #[error("the nft command is not installed: install nftables (apt-get install nftables)")]
    NotInstalled,
    #[error("cannot run nft: {0}")]
    Spawn(std::io::Error),
    #[error("waiting for nft: {0}")]
    Wait(std::io::Error),
    #[error("nft failed ({status}): {first}")]
    Failed {
        status: std::process::ExitStatus,
        /// The first line nft wrote to stderr.
        first: String,
    },
    #[error("writing to nft: {0}")]
    Write(std::io::Error),
}

type Result<T, E = Error> = std::result::Result<T, E>;

/// The nftables table holding every rule of the engine (family `inet`).
pub const TABLE: &str = "engine";

/// One published port as the table forwards it: `proto` (nftables'
/// `l4proto`, "tcp" or "udp") to `host_ip:host_port`, to the container's
/// `container_port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forward {
    /// `None`: every address of the host.
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub container_port: u16,
    pub proto: &'static str,
}

impl fmt::Display for Forward {
    /// Docker's `ps` form: `0.0.0.0:8080->80/tcp`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}->{}/{}",
            self.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED),
            self.host_port,
            self.container_port,
            self.proto
        )
    }
}

/// Refuses a mapping whose host port a process of this network namespace
/// holds (a listening TCP socket, a bound UDP one), or whose host address is
/// not one of the host's: the published port would hide it, or never work.
/// Binds a socket and closes it at once (TCP with SO_REUSEADDR, so a port in
/// TIME_WAIT is not mistaken for one in use).
pub fn check_host_port_free(map: &Forward) -> Result<()> {
    use rustix::net::{bind, socket_with, sockopt, AddressFamily, SocketFlags};
    use rustix::net::{ipproto, SocketType};
    let tcp = map.proto != "udp";
    let (ty, proto) = match tcp {
        true => (SocketType::STREAM, ipproto::TCP),
        false => (SocketType::DGRAM, ipproto::UDP),
    };
    let sock = socket_with(AddressFamily::INET, ty, SocketFlags::CLOEXEC, Some(proto))
        .map_err(|errno| Error::PortSocket { map: *map, errno })?;
    if tcp {
        sockopt::set_socket_reuseaddr(&sock, true).map_err(|errno| Error::PortCheck {
            map: *map,
            step: "SO_REUSEADDR",
            errno,
        })?;
    }
    let ip = map.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
    match bind(&sock, &std::net::SocketAddrV4::new(ip, map.host_port)) {
        Ok(()) => Ok(()),
        Err(Errno::ADDRINUSE) => Err(Error::PortInUse { map: *map }),
        Err(Errno::ADDRNOTAVAIL) => Err(Error::NotHostAddress { ip, map: *map }),
        Err(errno) => Err(Error::PortCheck {
            map: *map,
            step: "bind",
            errno,
        }),
    }
}

// ---------------------------------------------------------------------------------------
// Rule text (the JSON of `nft -j`).

fn chain(name: &str) -> Value {
    json!({"family": "inet", "table": TABLE, "name": name})
}

fn base_chain(name: &str, ty: &str, hook: &str, prio: i32) -> Value {
    json!({"family": "inet", "table": TABLE, "name": name,
           "type": ty, "hook": hook, "prio": prio, "policy": "accept"})
}

fn rule(chain: &str, expr: Vec<Value>) -> Value {
    json!({"add": {"rule": {"family": "inet", "table": TABLE, "chain": chain, "expr": expr}}})
}

fn meta_is(key: &str, op: &str, value: &str) -> Value {
    json!({"match": {"op": op, "left": {"meta": {"key": key}}, "right": value}})
}

fn ip_is(field: &str, addr: Ipv4Addr, len: u8) -> Value {
    let right = if len == 32 {
        json!(addr.to_string())
    } else {
        json!({"prefix": {"addr": addr.to_string(), "len": len}})
    };
    json!({"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": field}}, "right": right}})
}

fn ct_has(key: &str, values: &[&str]) -> Value {
    json!({"match": {"op": "in", "left": {"ct": {"key": key}}, "right": values}})
}

fn to_local_address() -> Value {
    json!({"match": {"op": "==", "left": {"fib": {"result": "type", "flags": ["daddr"]}}, "right": "local"}})
}

fn verdict(v: &str) -> Value {
    json!({ v: null })
}

// Hook priorities (nft's names): raw -300, dstnat -100, filter 0, srcnat 100.
const PRIO_RAW: i32 = -300;
const PRIO_DSTNAT: i32 = -100;
const PRIO_FILTER: i32 = 0;
const PRIO_SRCNAT: i32 = 100;

/// The fixed part of the table, as one transaction: `add` (a no-op when
/// present) then `flush` of each fixed chain, then its rules, so running it
/// again rewrites the fixed chains and leaves the containers' chains alone.
pub fn setup_ruleset(bridge: &str, network: Ipv4Addr, prefix: u8) -> Value {
    let mut cmds = fixed_chains();
    // route_localnet on the bridge lets the host's 127.0.0.1 be DNAT'd to a
    // container; without this, it would also let containers reach the host's
    // loopback-only services.
    cmds.push(rule(
        "guard",
        vec![
            meta_is("iifname", "==", bridge),
            ip_is("daddr", LOOPBACK, 8),
            verdict("drop"),
        ],
    ));
    cmds.extend(forward_rules(bridge));
    cmds.extend(postrouting_rules(bridge, network, prefix));
    json!({ "nftables": cmds })
}

/// 127.0.0.0/8.
const LOOPBACK: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 0);

/// The table, and each fixed chain added (a no-op when present) and flushed.
fn fixed_chains() -> Vec<Value> {
    let mut cmds = vec![json!({"add": {"table": {"family": "inet", "name": TABLE}}})];
    for (name, ty, hook, prio) in [
        ("guard", "filter", "prerouting", PRIO_RAW),
        ("forward", "filter", "forward", PRIO_FILTER),
        ("postrouting", "nat", "postrouting", PRIO_SRCNAT),
    ] {
        cmds.push(json!({"add": {"chain": base_chain(name, ty, hook, prio)}}));
        cmds.push(json!({"flush": {"chain": chain(name)}}));
    }
    cmds
}

/// Into the bridge: replies, published ports and container to container;
/// nothing else. Out of it: anything.
fn forward_rules(bridge: &str) -> Vec<Value> {
    vec![
        rule(
            "forward",
            vec![
                meta_is("oifname", "==", bridge),
                ct_has("state", &["established", "related"]),
                verdict("accept"),
            ],
        ),
        rule(
            "forward",
            vec![
                meta_is("oifname", "==", bridge),
                ct_has("status", &["dnat"]),
                verdict("accept"),
            ],
        ),
        // Containers reaching each other through the gateway (routed, not bridged).
        rule(
            "forward",
            vec![
                meta_is("oifname", "==", bridge),
                meta_is("iifname", "==", bridge),
                verdict("accept"),
            ],
        ),
        rule(
            "forward",
            vec![meta_is("oifname", "==", bridge), verdict("drop")],
        ),
        rule(
            "forward",
            vec![meta_is("iifname", "==", bridge), verdict("accept")],
        ),
    ]
}

/// The containers' traffic out masqueraded; DNAT'd traffic from the host's
/// loopback or from a container (hairpin) too.
fn postrouting_rules(bridge: &str, network: Ipv4Addr, prefix: u8) -> Vec<Value> {
    vec![
        rule(
            "postrouting",
            vec![
                ip_is("saddr", network, prefix),
                meta_is("oifname", "!=", bridge),
                verdict("masquerade"),
            ],
        ),
        // The host on 127.0.0.1, and containers through the host's address
        // (hairpin): without a new source the container would answer the original
        // one directly, and the reply would miss the reverse translation.
        rule(
            "postrouting",
            vec![
                meta_is("oifname", "==", bridge),
                ip_is("saddr", LOOPBACK, 8),
                ct_has("status", &["dnat"]),
                verdict("masquerade"),
            ],
        ),
        rule(
            "postrouting",
            vec![
                meta_is("oifname", "==", bridge),
                ip_is("saddr", network, prefix),
                ct_has("status", &["dnat"]),
                verdict("masquerade"),
            ],
        ),
    ]
}

/// The names of a container's two chains.
fn port_chains(container: &str) -> [(String, &'static str); 2] {
    [
        (format!("pre-{container}"), "prerouting"),
        (format!("out-{container}"), "output"),
    ]
}

/// One transaction adding a container's chains and its DNAT rules.
pub fn ports_ruleset(container: &str, ip: Ipv4Addr, ports: &[Forward]) -> Value {
    let mut cmds = Vec::new();
    for (name, hook) in port_chains(container) {
        cmds.push(json!({"add": {"chain": base_chain(&name, "nat", hook, PRIO_DSTNAT)}}));
        for p in ports {
            let mut expr = vec![to_local_address()];
            if let Some(host_ip) = p.host_ip {
                expr.push(ip_is("daddr", host_ip, 32));
            }
            expr.push(meta_is("l4proto", "==", p.proto));
            expr.push(json!({"match": {"op": "==",
                "left": {"payload": {"protocol": "th", "field": "dport"}}, "right": p.host_port}}));
            expr.push(
                json!({"dnat": {"family": "ip", "addr": ip.to_string(), "port": p.container_port}}),
            );
            cmds.push(rule(&name, expr));
        }
    }
    json!({ "nftables": cmds })
}

/// One transaction removing a container's chains, whether or not they exist
/// (`add` of an existing chain is a no-op, so `add, flush, delete` never
/// fails on a chain that is already gone).
pub fn unports_ruleset(container: &str) -> Value {
    let mut cmds = Vec::new();
    for (name, hook) in port_chains(container) {
        cmds.push(json!({"add": {"chain": base_chain(&name, "nat", hook, PRIO_DSTNAT)}}));
        cmds.push(json!({"flush": {"chain": chain(&name)}}));
        cmds.push(json!({"delete": {"chain": chain(&name)}}));
    }
    json!({ "nftables": cmds })
}

// ---------------------------------------------------------------------------------------
// Verbs.

/// Adds (or rewrites) the fixed part of the table, turns `route_localnet` on
/// for the bridge, and lets the bridge through another firewall's FORWARD
/// drop policy. Idempotent; containers' chains are kept.
pub fn install(bridge: &str, network: Ipv4Addr, prefix: u8) -> Result<()> {
    nft(
        &setup_ruleset(bridge, network, prefix),
        "add the engine's nftables table",
    )?;
    let path = format!("/proc/sys/net/ipv4/conf/{bridge}/route_localnet");
    std::fs::write(&path, "1").map_err(|error| Error::RouteLocalnet {
        path: path.clone(),
        bridge: bridge.into(),
        error,
    })?;
    for tool in IPTABLES {
        if forward_policy_is_drop(tool)? {
            for dir in ["-i", "-o"] {
                let rule = forward_accept(bridge, dir);
                if iptables(tool, "-C", &rule).is_err() {
                    iptables(tool, "-I", &rule)?;
                }
            }
        }
    }
    Ok(())
}

/// Deletes the engine's table (with every container's chains) and the accept
/// rules `install` put into other firewalls; nothing else. Idempotent.
pub fn uninstall(bridge: &str) -> Result<()> {
    for tool in IPTABLES {
        if !has_filter_table(tool) {
            continue;
        }
        for dir in ["-i", "-o"] {
            let rule = forward_accept(bridge, dir);
            while iptables(tool, "-C", &rule).is_ok() {
                iptables(tool, "-D", &rule)?;
            }
        }
    }
    let cmds = json!({"nftables": [
        {"add": {"table": {"family": "inet", "name": TABLE}}},
        {"delete": {"table": {"family": "inet", "name": TABLE}}},
    ]});
    nft(&cmds, "delete the engine's nftables table")
}

/// Publishes `ports` of the container `name` at `ip`. Nothing is run when
/// `ports` is empty.
pub fn add_ports(name: &str, ip: Ipv4Addr, ports: &[Forward]) -> Result<()> {
    if ports.is_empty() {
        return Ok(());
    }
    nft(
        &ports_ruleset(name, ip, ports),
        &format!("publish the ports of container {name}"),
    )
    .map_err(|e| Error::NoTable(Box::new(e)))
}

/// Removes the published ports of container `name`; a table already gone
/// (after `engine teardown --force`) means nothing is left to remove.
pub fn remove_ports(name: &str) -> Result<()> {
    match nft(
        &unports_ruleset(name),
        &format!("remove the published ports of container {name}"),
    ) {
        Err(Error::Nft {
            why: NftFailure::Failed { first, .. },
            ..
        }) if first.contains("No such file or directory") => Ok(()),
        other => other,
    }
}

/// Runs `nft -j -f -` with `cmds` on stdin, in the calling thread's network namespace.
fn nft(cmds: &Value, what: &str) -> Result<()> {
    let failed = |why| Error::Nft {
        what: what.into(),
        why,
    };
    let mut child = Command::new("nft")
        .args(["-j", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => failed(NftFailure::NotInstalled),
            _ => failed(NftFailure::Spawn(e)),
        })?;
    let input = cmds.to_string();
    let wrote = child
        .stdin
        .take()
        .expect("stdin piped")
        .write_all(input.as_bytes());
    let out = child
        .wait_with_output()
        .map_err(|e| failed(NftFailure::Wait(e)))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let first = err
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no message");
        return Err(failed(NftFailure::Failed {
            status: out.status,
            first: first.into(),
        }));
    }
    wrote.map_err(|e| failed(NftFailure::Write(e)))
}

// ---------------------------------------------------------------------------------------
// Other firewalls (docker's FORWARD drop policy).

const IPTABLES: [&str; 2] = ["iptables-nft", "iptables-legacy"];

fn forward_accept(bridge: &str, dir: &str) -> Vec<String> {
    [
        "FORWARD",
        dir,
        bridge,
        "-m",
        "comment",
        "--comment",
        &format!("engine {bridge}"),
        "-j",
        "ACCEPT",
    ]
    .map(String::from)
    .to_vec()
}

/// Whether `tool`'s filter table exists, without creating it: listing
/// would load iptables-legacy's modules, or add iptables-nft's table.
fn has_filter_table(tool: &str) -> bool {
    if tool == "iptables-legacy" {
        return std::fs::read_to_string("/proc/thread-self/net/ip_tables_names")
            .is_ok_and(|t| t.lines().any(|l| l == "filter"));
    }
    Command::new("nft")
        .args(["list", "table", "ip", "filter"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn forward_policy_is_drop(tool: &'static str) -> Result<bool> {
    if !has_filter_table(tool) {
        return Ok(false);
    }
    let out = match Command::new(tool).args(["-w", "-S", "FORWARD"]).output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(error) => return Err(Error::RunIptables { tool, error }),
    };
    Ok(out.status.success()
        && String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l.trim() == "-P FORWARD DROP"))
}

fn iptables(tool: &'static str, op: &'static str, rule: &[String]) -> Result<()> {
    let out = Command::new(tool)
        .arg("-w")
        .arg(op)
        .args(rule)
        .output()
        .map_err(|error| Error::RunIptables { tool, error })?;
    if !out.status.success() {
        return Err(Error::Iptables {
            tool,
            op,
            rule: rule.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_as_docker_does() {
        let f = Forward {
            host_ip: Some(Ipv4Addr::LOCALHOST),
            host_port: 53,
            container_port: 80,
            proto: "udp",
        };
        assert_eq!(f.to_string(), "127.0.0.1:53->80/udp");
    }
}
