//! Unique markers and names for scenarios.

use std::io::Read;

/// A short random hex string (for markers and unique names).
pub fn token() -> String {
    let mut buf = [0u8; 6];
    let got = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf));
    if got.is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        buf[..4].copy_from_slice(&nanos.to_le_bytes());
        buf[4..].copy_from_slice(&(std::process::id() as u16).to_le_bytes());
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}
