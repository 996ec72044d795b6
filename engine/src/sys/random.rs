//! A random number, for a generated container name.

/// Four random bytes from the getrandom syscall, never blocking once the
/// pool is initialized; a clock-based number is good enough if it fails.
pub fn u32() -> u32 {
    let mut bytes = [0u8; 4];
    if rustix::rand::getrandom(&mut bytes, rustix::rand::GetRandomFlags::empty()) != Ok(4) {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        bytes = (t ^ std::process::id()).to_le_bytes();
    }
    u32::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    #[test]
    fn two_draws_differ() {
        assert_ne!(super::u32(), super::u32());
    }
}
