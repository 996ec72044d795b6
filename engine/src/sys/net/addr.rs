//! Address arithmetic and interface names, pure: shared by the net
//! facility's files and the model's `NetConfig`.

/// A container's eth0 MAC, derived from its address (docker's
/// 02:42:a.b.c.d): a container that reuses an address keeps the MAC, so
/// neighbours' ARP caches stay right.
pub fn mac_of(ip: std::net::Ipv4Addr) -> [u8; 6] {
    let [a, b, c, d] = ip.octets();
    [0x02, 0x42, a, b, c, d]
}

/// The netmask of a prefix length, as a number.
pub fn mask(prefix: u8) -> u32 {
    // Prefixes above 32 never get here unchecked; saturate rather than overflow anyway.
    u32::MAX
        .checked_shl(32u32.saturating_sub(u32::from(prefix)))
        .unwrap_or(0)
}

/// Why a name is not a valid Linux interface name, as the end of a sentence naming it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BadIfname {
    #[error("is empty: {IFNAME_RULE}")]
    Empty,
    #[error("is {len} bytes long: {IFNAME_RULE}")]
    TooLong { len: usize },
    #[error("is not a valid interface name: {IFNAME_RULE}")]
    Dots,
    #[error("contains {c:?}: {IFNAME_RULE}")]
    Forbidden { c: char },
}

const IFNAME_RULE: &str =
    "interface names are 1 to 15 bytes without '/', ':', '%', spaces or control characters";

/// Why `name` is not a valid Linux interface name (the kernel's `dev_valid_name`, plus '%',
/// which the kernel would expand as a template).
pub fn check_ifname(name: &str) -> Result<(), BadIfname> {
    if name.is_empty() {
        return Err(BadIfname::Empty);
    }
    if name.len() > 15 {
        return Err(BadIfname::TooLong { len: name.len() });
    }
    if name == "." || name == ".." {
        return Err(BadIfname::Dots);
    }
    if let Some(c) = name
        .chars()
        .find(|&c| matches!(c, '/' | ':' | '%') || c.is_whitespace() || c.is_control())
    {
        return Err(BadIfname::Forbidden { c });
    }
    Ok(())
}
