//! `--cpus`, `--memory`, `--pids-limit`: parsed into the description's
//! `Limits` (the parent hands them to `sys::cgroup`). Whether the host has
//! that many CPUs is a host check (validate).

/// A limit refused: the value as given.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    #[error("invalid --cpus {0:?}: give a positive number such as 0.5 or 2")]
    Cpus(String),
    #[error("--cpus {0} is too small: give at least 0.01")]
    CpusTooSmall(String),
    #[error("invalid --memory {0:?}: give a size such as 50M, 512k, 1G or plain bytes")]
    Memory(String),
    #[error("--memory {0} is below the minimum of 6M: give at least 6M")]
    MemoryTooSmall(String),
    #[error("invalid --layer-size {0:?}: give a size such as 50M, 512k, 1G or plain bytes")]
    LayerSize(String),
    #[error("--layer-size {0} is below the minimum of 4M: give at least 4M")]
    LayerSizeTooSmall(String),
    #[error("invalid --pids-limit {0:?}: give a positive whole number")]
    Pids(String),
}

type Result<T, E = Error> = std::result::Result<T, E>;

/// Resource limits of a container (`sys::cgroup` applies them).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Limits {
    /// CPUs, e.g. 0.5.
    pub cpus: Option<f64>,
    /// Bytes.
    pub memory: Option<u64>,
    /// Bytes of swap on top of `memory` (memory.swap.max; u64::MAX for
    /// "max"); none: no swap, or the limit would only move pages to swap.
    pub swap: Option<u64>,
    pub pids: Option<u64>,
    /// cpu.weight, 1 to 10000 (the OCI bundle's cpu shares).
    pub cpu_weight: Option<u64>,
    /// cpuset.cpus as a mask, bit N for CPU N (the OCI bundle's cpu.cpus).
    pub cpuset: Option<u64>,
    /// cpuset.mems as a mask, bit N for memory node N (cpu.mems).
    pub cpuset_mems: Option<u64>,
}

impl Limits {
    pub fn any(&self) -> bool {
        self.cpus.is_some()
            || self.memory.is_some()
            || self.pids.is_some()
            || self.cpu_weight.is_some()
            || self.cpuset.is_some()
            || self.cpuset_mems.is_some()
    }
}

/// The smallest memory limit we accept: below this a shell cannot even start.
pub const MIN_MEMORY: u64 = 6 * 1024 * 1024;

/// All three limits, each optional.
pub fn parse(cpus: Option<&str>, memory: Option<&str>, pids: Option<&str>) -> Result<Limits> {
    Ok(Limits {
        cpus: cpus.map(parse_cpus).transpose()?,
        memory: memory.map(parse_memory).transpose()?,
        swap: None,
        pids: pids.map(parse_pids).transpose()?,
        cpu_weight: None,
        cpuset: None,
        cpuset_mems: None,
    })
}

/// `0.5`, `2`: a positive number of CPUs (at least 0.01).
pub fn parse_cpus(s: &str) -> Result<f64> {
    let cpus: f64 = s
        .trim()
        .parse()
        .ok()
        .filter(|c: &f64| c.is_finite() && *c > 0.0)
        .ok_or_else(|| Error::Cpus(s.into()))?;
    if cpus * 100_000.0 < 1000.0 {
        return Err(Error::CpusTooSmall(s.into()));
    }
    Ok(cpus)
}

/// `50M`, `512k`, `1G`, `1048576`, `64mb`: bytes.
pub fn parse_size(s: &str) -> Option<u64> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let lower = lower.strip_suffix('b').unwrap_or(&lower);
    let (digits, mult) = match lower.char_indices().last() {
        Some((i, 'k')) => (&lower[..i], 1u64 << 10),
        Some((i, 'm')) => (&lower[..i], 1 << 20),
        Some((i, 'g')) => (&lower[..i], 1 << 30),
        Some((i, 't')) => (&lower[..i], 1 << 40),
        _ => (lower, 1),
    };
    // The whole part in integers (an f64 would round sizes above 2^53);
    // only a fraction goes through floating point.
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !all_digits(whole) || !all_digits(fraction) {
        return None;
    }
    let whole = match whole {
        "" => 0,
        w => w.parse::<u64>().ok()?.checked_mul(mult)?,
    };
    let fraction = match fraction {
        "" => 0,
        f => (format!("0.{f}").parse::<f64>().ok()? * mult as f64) as u64,
    };
    whole.checked_add(fraction).filter(|&bytes| bytes >= 1)
}

pub fn parse_memory(s: &str) -> Result<u64> {
    let bytes = parse_size(s).ok_or_else(|| Error::Memory(s.into()))?;
    if bytes < MIN_MEMORY {
        return Err(Error::MemoryTooSmall(s.into()));
    }
    Ok(bytes)
}

/// The smallest copy-on-write layer we accept: below this even a package
/// manager's lock files do not fit.
pub const MIN_LAYER_SIZE: u64 = 4 * 1024 * 1024;

/// `--layer-size`: bytes of the tmpfs that holds the container's writes.
pub fn parse_layer_size(s: &str) -> Result<u64> {
    let bytes = parse_size(s).ok_or_else(|| Error::LayerSize(s.into()))?;
    if bytes < MIN_LAYER_SIZE {
        return Err(Error::LayerSizeTooSmall(s.into()));
    }
    Ok(bytes)
}

pub fn parse_pids(s: &str) -> Result<u64> {
    s.trim()
        .parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| Error::Pids(s.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("50M"), Some(50 << 20));
        assert_eq!(parse_size("512k"), Some(512 << 10));
        assert_eq!(parse_size("1G"), Some(1 << 30));
        assert_eq!(parse_size("1048576"), Some(1 << 20));
        assert_eq!(parse_size("64mb"), Some(64 << 20));
        assert_eq!(parse_size("1.5G"), Some(3 << 29));
        // Found by tests/props.rs: above 2^53 an f64 rounded plain bytes.
        assert_eq!(parse_size("9044305847164847"), Some(9044305847164847));
        assert_eq!(parse_size("18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_size("16777216T"), None);
        assert_eq!(parse_size(".5k"), Some(512));
        for bad in [
            "", "M", "-1M", "abc", "5X", "1e9", "0", ".", "1.2.3", "0.1b",
        ] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
        assert!(parse_memory("5M").is_err());
        assert!(parse_memory("6M").is_ok());
        assert_eq!(parse_layer_size("1G").unwrap(), 1 << 30);
        assert!(parse_layer_size("3M").is_err());
        assert!(parse_layer_size("big").is_err());
    }

    #[test]
    fn cpus() {
        assert_eq!(parse_cpus("0.5").unwrap(), 0.5);
        for bad in ["0", "-1", "abc", "NaN", "inf", "0.001"] {
            assert!(parse_cpus(bad).is_err(), "{bad}");
        }
    }
}
