//! Container names and hostnames: checks, and generated names.

/// A container name or hostname refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    #[error("invalid container name {0:?}: use 1-63 characters [A-Za-z0-9_.-], starting with a letter or digit")]
    Name(String),
    #[error("invalid hostname {0:?}: use letters, digits, '-' and '.', at most 64 characters")]
    Hostname(String),
}

type Result<T, E = Error> = std::result::Result<T, E>;

/// `[A-Za-z0-9][A-Za-z0-9_.-]{0,62}`, as docker accepts.
pub fn check_name(name: &str) -> Result<String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if !ok {
        return Err(Error::Name(name.into()));
    }
    Ok(name.to_string())
}

pub fn check_hostname(h: &str) -> Result<String> {
    let ok = !h.is_empty()
        && h.len() <= 64
        && h.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if !ok {
        return Err(Error::Hostname(h.into()));
    }
    Ok(h.to_string())
}

/// A short name from a random number (`sys::random`): docker's style is
/// adjective_noun; we keep it plain.
pub fn generate_name(random: u32) -> String {
    format!("ctr-{random:08x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "web-1", "A.b_c", &"x".repeat(63)] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", ".a", "a/b", "a b", &"x".repeat(64), "ünï"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert!(check_name(&generate_name(0)).is_ok());
        assert!(check_name(&generate_name(u32::MAX)).is_ok());
        assert_eq!(generate_name(0xdead_beef), "ctr-deadbeef");
        assert_ne!(generate_name(1), generate_name(2));
    }
}
