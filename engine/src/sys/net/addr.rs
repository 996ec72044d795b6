//! Address arithmetic and interface names, pure: shared by the net
//! facility's files and the model's `NetConfig`.

/// The netmask of a prefix length, as a number.
pub fn mask(prefix: u8) -> u32 {
    // Prefixes above 32 never get here unchecked; saturate rather than overflow anyway.
    u32::MAX
        .checked_shl(32u32.saturating_sub(u32::from(prefix)))
        .unwrap_or(0)
}

/// Why `name` is not a valid Linux interface name (the kernel's `dev_valid_name`, plus '%',
/// which the kernel would expand as a template), as the end of a sentence naming it.
pub fn check_ifname(name: &str) -> std::result::Result<(), String> {
    let rule =
        "interface names are 1 to 15 bytes without '/', ':', '%', spaces or control characters";
    if name.is_empty() {
        return Err(format!("is empty: {rule}"));
    }
    if name.len() > 15 {
        return Err(format!("is {} bytes long: {rule}", name.len()));
    }
    if name == "." || name == ".." {
        return Err(format!("is not a valid interface name: {rule}"));
    }
    if let Some(c) = name
        .chars()
        .find(|&c| matches!(c, '/' | ':' | '%') || c.is_whitespace() || c.is_control())
    {
        return Err(format!("contains {c:?}: {rule}"));
    }
    Ok(())
}
