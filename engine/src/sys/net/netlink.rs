//! rtnetlink: one small synchronous socket with a verb per kernel operation. Every
//! failure carries what was being done, and a known errno becomes a sentence.

use super::addr::mask;
use super::Error;
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NlasIterator, NLM_F_ACK, NLM_F_ACK_TLVS,
    NLM_F_CAPPED, NLM_F_CREATE, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_EXCL, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkExtentMask, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::neighbour::{NeighbourAttribute, NeighbourFlags, NeighbourMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

/// What went wrong with a netlink request: the end of a sentence that
/// [`Error::Netlink`] starts with what was being done.
#[derive(Debug, thiserror::Error)]
pub enum NlError {
    /// The kernel refused: its errno and, if it gave one, its own explanation.
    #[error("{}", kernel_text(*.errno, .detail.as_deref()))]
    Kernel { errno: i32, detail: Option<String> },
    /// The socket failed.
    #[error("netlink {op} failed: {}", io_text(.error))]
    Io {
        op: &'static str,
        error: std::io::Error,
    },
    /// The protocol failed.
    #[error("{0}")]
    Protocol(String),
}

/// Why the kernel refused, in words a user can act on.
fn kernel_text(errno: i32, detail: Option<&str>) -> String {
    match (errno, detail) {
        (libc::EPERM | libc::EACCES, _) => {
            "permission denied: need CAP_NET_ADMIN (run as root)".into()
        }
        (errno, Some(detail)) => format!("{} ({detail})", errno_text(errno)),
        (errno, None) => errno_text(errno),
    }
}

impl NlError {
    pub(super) fn errno(&self) -> Option<i32> {
        match self {
            NlError::Kernel { errno, .. } => Some(*errno),
            NlError::Io { .. } | NlError::Protocol(_) => None,
        }
    }

    /// One line: what failed, then why in words a user can act on.
    pub(super) fn explain(self, what: impl fmt::Display) -> Error {
        Error::Netlink {
            what: what.to_string(),
            why: self,
        }
    }

    fn io(op: &'static str, error: std::io::Error) -> NlError {
        NlError::Io { op, error }
    }
}

/// The C library's text for an errno ("File exists"), without Rust's " (os error 17)".
fn errno_text(errno: i32) -> String {
    io_text(&std::io::Error::from_raw_os_error(errno))
}

pub(super) fn io_text(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.rfind(" (os error ") {
        Some(end) => text[..end].to_string(),
        None => text,
    }
}

/// The link's alias (IFLA_IFALIAS), if it has one.
pub(super) fn link_alias(link: &LinkMessage) -> Option<&str> {
    link.attributes.iter().find_map(|attr| match attr {
        LinkAttribute::IfAlias(alias) => Some(alias.as_str()),
        _ => None,
    })
}

/// The link's name.
pub(super) fn link_name(link: &LinkMessage) -> Option<&str> {
    link.attributes.iter().find_map(|attr| match attr {
        LinkAttribute::IfName(name) => Some(name.as_str()),
        _ => None,
    })
}

/// The link's kind (`bridge`, `veth`...), when the kernel reports one.
pub(super) fn link_kind(link: &LinkMessage) -> Option<&InfoKind> {
    link.attributes.iter().find_map(|attr| match attr {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|info| match info {
            LinkInfo::Kind(kind) => Some(kind),
            _ => None,
        }),
        _ => None,
    })
}

pub(super) struct Socket {
    socket: netlink_sys::Socket,
    seq: u32,
    /// One datagram. A dump is sent in datagrams of at most 32 KiB; MSG_TRUNC catches more.
    buf: Vec<u8>,
}

impl Socket {
    pub(super) fn open() -> Result<Socket, Error> {
        let ctx = |op: &'static str, e| NlError::io(op, e).explain("cannot open a netlink socket");
        let mut socket = netlink_sys::Socket::new(netlink_sys::protocols::NETLINK_ROUTE)
            .map_err(|e| ctx("socket", e))?;
        socket.bind_auto().map_err(|e| ctx("bind", e))?;
        socket
            .connect(&netlink_sys::SocketAddr::new(0, 0))
            .map_err(|e| ctx("connect", e))?;
        // Short ACKs (no echo of our request) that carry the kernel's own explanation of a
        // refusal. Both are optional: older kernels simply ignore them.
        let _ = socket.set_cap_ack(true);
        let _ = socket.set_ext_ack(true);
        Ok(Socket {
            socket,
            seq: 0,
            buf: vec![0; 64 * 1024],
        })
    }

    /// The link named `name`, or None when there is none.
    pub(super) fn get_link(&mut self, name: &str) -> Result<Option<LinkMessage>, NlError> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        msg.attributes
            .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
        match self.request(RouteNetlinkMessage::GetLink(msg), 0) {
            Ok(replies) => Ok(replies.into_iter().find_map(|m| match m {
                RouteNetlinkMessage::NewLink(link) => Some(link),
                _ => None,
            })),
            Err(e) if e.errno() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every link of this network namespace.
    pub(super) fn list_links(&mut self) -> Result<Vec<LinkMessage>, NlError> {
        let mut msg = LinkMessage::default();
        msg.attributes
            .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
        let replies = self.request(RouteNetlinkMessage::GetLink(msg), NLM_F_DUMP)?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(link) => Some(link),
                _ => None,
            })
            .collect())
    }

    /// Sets the link's alias (IFLA_IFALIAS, at most 255 bytes), a note the
    /// kernel keeps for whoever made the link.
    pub(super) fn set_alias(&mut self, index: u32, alias: &str) -> Result<(), NlError> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes
            .push(LinkAttribute::IfAlias(alias.to_string()));
        self.request(RouteNetlinkMessage::SetLink(msg), 0).map(drop)
    }

    pub(super) fn create_bridge(&mut self, name: &str) -> Result<(), NlError> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        msg.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                InfoKind::Bridge,
            )]));
        self.request(RouteNetlinkMessage::NewLink(msg), NLM_F_CREATE | NLM_F_EXCL)
            .map(drop)
    }

    /// A veth pair in one request: `host` here, attached to `master` and up; `peer` created
    /// directly in the network namespace of `pid` (IFLA_NET_NS_PID in the peer's message).
    pub(super) fn create_veth(
        &mut self,
        host: &str,
        peer: &str,
        master: u32,
        pid: u32,
    ) -> Result<(), NlError> {
        let mut peer_msg = LinkMessage::default();
        peer_msg
            .attributes
            .push(LinkAttribute::IfName(peer.to_string()));
        peer_msg.attributes.push(LinkAttribute::NetNsPid(pid));
        // One queue each, asked for up front: by default veth makes one per
        // possible CPU and then shrinks to one, and every shrink waits for an
        // RCU grace period with the rtnl lock held (milliseconds per start).
        peer_msg.attributes.push(LinkAttribute::NumTxQueues(1));
        peer_msg.attributes.push(LinkAttribute::NumRxQueues(1));
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::NumTxQueues(1));
        msg.attributes.push(LinkAttribute::NumRxQueues(1));
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        msg.attributes.push(LinkAttribute::IfName(host.to_string()));
        msg.attributes.push(LinkAttribute::Controller(master));
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_msg))),
        ]));
        self.request(RouteNetlinkMessage::NewLink(msg), NLM_F_CREATE | NLM_F_EXCL)
            .map(drop)
    }

    /// Deletes the link named `name`; Ok(false) when there was none.
    pub(super) fn del_link(&mut self, name: &str) -> Result<bool, NlError> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.request(RouteNetlinkMessage::DelLink(msg), 0) {
            Ok(_) => Ok(true),
            Err(e) if e.errno() == Some(libc::ENODEV) => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub(super) fn set_up(&mut self, index: u32) -> Result<(), NlError> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        self.request(RouteNetlinkMessage::SetLink(msg), 0).map(drop)
    }

    pub(super) fn set_mac(&mut self, index: u32, mac: [u8; 6]) -> Result<(), NlError> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(LinkAttribute::Address(mac.to_vec()));
        self.request(RouteNetlinkMessage::SetLink(msg), 0).map(drop)
    }

    /// The ports of bridge `bridge` whose forwarding table places `mac`
    /// on them (`bridge fdb show br BRIDGE`).
    pub(super) fn fdb_ports_of(&mut self, bridge: u32, mac: [u8; 6]) -> Result<Vec<u32>, NlError> {
        let mut msg = NeighbourMessage::default();
        msg.header.family = AddressFamily::Bridge;
        msg.attributes.push(NeighbourAttribute::Controller(bridge));
        let replies = self.request(RouteNetlinkMessage::GetNeighbour(msg), NLM_F_DUMP)?;
        Ok(replies
            .into_iter()
            .filter_map(|m| {
                match m {
                RouteNetlinkMessage::NewNeighbour(n)
                    if n.header.ifindex != bridge
                        && n.attributes.iter().any(|a| {
                            matches!(a, NeighbourAttribute::LinkLayerAddress(l) if l[..] == mac)
                        }) =>
                {
                    Some(n.header.ifindex)
                }
                _ => None,
            }
            })
            .collect())
    }

    /// `bridge fdb del MAC dev PORT master`.
    pub(super) fn fdb_del(&mut self, port: u32, mac: [u8; 6]) -> Result<(), NlError> {
        let mut msg = NeighbourMessage::default();
        msg.header.family = AddressFamily::Bridge;
        msg.header.ifindex = port;
        msg.header.flags = NeighbourFlags::Controller;
        msg.attributes
            .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
        self.request(RouteNetlinkMessage::DelNeighbour(msg), 0)
            .map(drop)
    }

    pub(super) fn set_up_by_name(&mut self, name: &str) -> Result<(), NlError> {
        let mut msg = LinkMessage::default();
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        self.request(RouteNetlinkMessage::SetLink(msg), 0).map(drop)
    }

    /// The IPv4 addresses (with prefix lengths) of the link with this index.
    pub(super) fn ipv4_addrs(&mut self, index: u32) -> Result<Vec<(Ipv4Addr, u8)>, NlError> {
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet;
        let replies = self.request(RouteNetlinkMessage::GetAddress(msg), NLM_F_DUMP)?;
        // Older kernels ignore the index in a dump request: filter here.
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) if a.header.index == index => {
                    a.attributes.iter().find_map(|attr| match attr {
                        AddressAttribute::Local(IpAddr::V4(ip)) => Some((*ip, a.header.prefix_len)),
                        _ => None,
                    })
                }
                _ => None,
            })
            .collect())
    }

    pub(super) fn add_addr(&mut self, index: u32, ip: Ipv4Addr, prefix: u8) -> Result<(), NlError> {
        let broadcast = Ipv4Addr::from(u32::from(ip) | !mask(prefix));
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.prefix_len = prefix;
        msg.header.scope = AddressScope::Universe;
        msg.header.index = index;
        msg.attributes.push(AddressAttribute::Local(ip.into()));
        msg.attributes.push(AddressAttribute::Address(ip.into()));
        msg.attributes.push(AddressAttribute::Broadcast(broadcast));
        self.request(
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
    }

    pub(super) fn add_default_route(
        &mut self,
        index: u32,
        gateway: Ipv4Addr,
    ) -> Result<(), NlError> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet;
        msg.header.destination_prefix_length = 0;
        msg.header.table = RouteHeader::RT_TABLE_MAIN;
        msg.header.protocol = RouteProtocol::Static;
        msg.header.scope = RouteScope::Universe;
        msg.header.kind = RouteType::Unicast;
        msg.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
        msg.attributes.push(RouteAttribute::Oif(index));
        self.request(
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
    }

    /// Sends one request and collects the replies up to its ACK (or, for a dump, up to
    /// NLMSG_DONE). A dump the kernel marks as interrupted by a concurrent change is redone.
    fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, NlError> {
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut header = NetlinkHeader::default();
        // A dump ends with NLMSG_DONE and never gets an ACK; anything else asks for one,
        // so that every request has a definite end and every error is seen.
        header.flags = NLM_F_REQUEST | flags | if dump { 0 } else { NLM_F_ACK };
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        packet.finalize();
        let mut bytes = vec![0; packet.buffer_len()];
        for _ in 0..3 {
            self.seq = self.seq.wrapping_add(1);
            packet.header.sequence_number = self.seq;
            packet.serialize(&mut bytes);
            self.socket
                .send(&bytes, 0)
                .map_err(|e| NlError::io("send", e))?;
            if let Some(replies) = self.receive()? {
                return Ok(replies);
            }
        }
        Err(NlError::Protocol(
            "the dump was interrupted by concurrent changes three times: try again".into(),
        ))
    }

    /// The replies to the request numbered `self.seq`; None if a dump was interrupted.
    fn receive(&mut self) -> Result<Option<Vec<RouteNetlinkMessage>>, NlError> {
        let mut replies = Vec::new();
        let mut interrupted = false;
        loop {
            let size = loop {
                match self.socket.recv(&mut &mut self.buf[..], libc::MSG_TRUNC) {
                    Ok(size) => break size,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(NlError::io("receive", e)),
                }
            };
            if size > self.buf.len() {
                return Err(NlError::Protocol(format!(
                    "netlink reply of {size} bytes was truncated"
                )));
            }
            let mut offset = 0;
            while offset < size {
                let packet =
                    NetlinkMessage::<RouteNetlinkMessage>::deserialize(&self.buf[offset..size])
                        .map_err(|e| {
                            NlError::Protocol(format!("cannot parse a netlink reply: {e}"))
                        })?;
                offset += (packet.header.length as usize).max(16).next_multiple_of(4);
                // A late answer to an earlier request of this socket: not ours.
                if packet.header.sequence_number != self.seq {
                    continue;
                }
                interrupted |= packet.header.flags & NLM_F_DUMP_INTR != 0;
                match packet.payload {
                    NetlinkPayload::InnerMessage(m) => replies.push(m),
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(Some(replies)),
                            Some(code) => Err(NlError::Kernel {
                                errno: -code.get(),
                                detail: ext_ack_text(packet.header.flags, &e.header),
                            }),
                        };
                    }
                    NetlinkPayload::Done(done) if done.code < 0 => {
                        return Err(NlError::Kernel {
                            errno: -done.code,
                            detail: None,
                        })
                    }
                    NetlinkPayload::Done(_) => return Ok((!interrupted).then_some(replies)),
                    NetlinkPayload::Overrun(_) => {
                        return Err(NlError::Protocol(
                            "netlink overrun: the kernel dropped part of a reply".into(),
                        ))
                    }
                    _ => {}
                }
            }
        }
    }
}

/// The kernel's own explanation in an error reply (extended ACK, NLMSGERR_ATTR_MSG), if any.
/// `payload` is what follows the error code: the echoed request (only its 16-byte header
/// when NLM_F_CAPPED), then attributes when NLM_F_ACK_TLVS.
fn ext_ack_text(flags: u16, payload: &[u8]) -> Option<String> {
    const NLMSGERR_ATTR_MSG: u16 = 1;
    if flags & NLM_F_ACK_TLVS == 0 {
        return None;
    }
    let echoed = if flags & NLM_F_CAPPED != 0 {
        16
    } else {
        let len = u32::from_ne_bytes(payload.get(..4)?.try_into().ok()?) as usize;
        len.next_multiple_of(4)
    };
    NlasIterator::new(payload.get(echoed..)?)
        .map_while(|nla| nla.ok())
        .find_map(|nla| {
            (nla.kind() == NLMSGERR_ATTR_MSG).then(|| {
                let text = String::from_utf8_lossy(nla.value());
                text.trim_end_matches('\0').to_string()
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel's extended ACK text reaches the error. Runs in a network namespace of
    /// its own (this thread only), proven before anything is sent.
    #[test]
    fn kernel_explanation_is_kept() {
        std::thread::spawn(|| {
            let ino = || {
                std::os::unix::fs::MetadataExt::ino(
                    &std::fs::metadata("/proc/thread-self/ns/net").unwrap(),
                )
            };
            let before = ino();
            // SAFETY: a new network namespace leaves the fd table shared.
            unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNET) }
                .expect("needs root");
            assert_ne!(before, ino(), "still in the original network namespace");
            let mut nl = Socket::open().unwrap();
            let lo = nl.get_link("lo").ok().flatten().unwrap().header.index;
            // Prefix 33 is refused by the kernel with an explanation of its own.
            let err = nl
                .add_addr(lo, Ipv4Addr::new(10, 1, 2, 3), 33)
                .err()
                .unwrap();
            assert_eq!(err.errno(), Some(libc::EINVAL));
            let text = format!("{}", err.explain("add"));
            assert!(text.contains("prefix length"), "{text}");
        })
        .join()
        .unwrap();
    }
}
