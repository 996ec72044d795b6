//! The roots a registry's certificate is checked against: the system's CA
//! store plus the registry's own directory `CERTS_DIR/HOST[:PORT]/` (every
//! `*.crt`, `ca.crt` among them), as podman reads
//! `/etc/containers/certs.d`.

use super::Error;
use std::path::{Path, PathBuf};
use ureq::tls::{Certificate, PemItem, RootCerts};

pub const DEFAULT_CERTS_DIR: &str = "/etc/containers/certs.d";

/// The system bundles of the distributions (Debian, Fedora, openSUSE,
/// Alpine); `$SSL_CERT_FILE` first, as OpenSSL reads it.
fn system_bundles() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::env::var_os("SSL_CERT_FILE")
        .filter(|f| !f.is_empty())
        .map(PathBuf::from)
        .into_iter()
        .collect();
    files.extend(
        [
            "/etc/ssl/certs/ca-certificates.crt",
            "/etc/pki/tls/certs/ca-bundle.crt",
            "/etc/ssl/ca-bundle.pem",
            "/etc/ssl/cert.pem",
        ]
        .map(PathBuf::from),
    );
    files
}

fn certs_of(pem: &[u8]) -> Vec<Certificate<'static>> {
    ureq::tls::parse_pem(pem)
        .filter_map(|item| match item {
            Ok(PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect()
}

/// The roots for `registry`; Mozilla's (compiled in) when the host has no
/// bundle and the registry no directory.
pub fn roots(registry: &str, certs_dir: Option<&Path>) -> Result<RootCerts, Error> {
    let mut roots = Vec::new();
    if let Some(bundle) = system_bundles()
        .into_iter()
        .find_map(|f| std::fs::read(f).ok())
    {
        roots.extend(certs_of(&bundle));
    }
    let dir = certs_dir
        .unwrap_or(Path::new(DEFAULT_CERTS_DIR))
        .join(registry);
    let bad = |why: String| Error::Certs {
        registry: registry.to_string(),
        path: dir.clone(),
        why,
    };
    match std::fs::read_dir(&dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(bad(e.to_string())),
        Ok(entries) => {
            let mut files: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "crt"))
                .collect();
            files.sort();
            for file in files {
                let pem =
                    std::fs::read(&file).map_err(|e| bad(format!("{}: {e}", file.display())))?;
                let certs = certs_of(&pem);
                if certs.is_empty() {
                    return Err(bad(format!("{} holds no PEM certificate", file.display())));
                }
                roots.extend(certs);
            }
        }
    }
    Ok(if roots.is_empty() {
        RootCerts::WebPki
    } else {
        RootCerts::from(roots)
    })
}

/// Whether plain HTTP may be spoken to `registry` (HOST[:PORT]) without
/// the caller marking it insecure: localhost, 127.0.0.0/8 and ::1.
pub fn is_local(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        registry.rsplit_once(':').map_or(registry, |(h, _)| h)
    };
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => false,
    }
}

/// The registries the user marks insecure in `ENGINE_INSECURE_REGISTRIES`
/// (`HOST[:PORT]`, comma- or space-separated), as docker's
/// `insecure-registries`: plain HTTP is allowed there, and a certificate
/// is not verified.
pub const INSECURE_ENV: &str = "ENGINE_INSECURE_REGISTRIES";

/// Whether `registry` is in `list` (the value of [`INSECURE_ENV`]).
pub fn marked_insecure(registry: &str, list: &str) -> bool {
    list.split([',', ' ', '\n', '\t'])
        .map(str::trim)
        .any(|entry| !entry.is_empty() && entry.eq_ignore_ascii_case(registry))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insecure_marks_name_whole_registries() {
        let list = "10.0.0.5:5000, registry.lan  other:443";
        assert!(marked_insecure("10.0.0.5:5000", list));
        assert!(marked_insecure("Registry.LAN", list));
        assert!(marked_insecure("other:443", list));
        // The port is part of the name, as in docker's list.
        assert!(!marked_insecure("10.0.0.5", list));
        assert!(!marked_insecure("registry.lan:5000", list));
        assert!(!marked_insecure("", list));
        assert!(!marked_insecure("x", ""));
    }

    #[test]
    fn only_loopback_is_local() {
        for local in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.9.8.7",
            "[::1]:5000",
        ] {
            assert!(is_local(local), "{local}");
        }
        for remote in [
            "docker.io",
            "10.0.0.1:5000",
            "[fe80::1]:5000",
            "localhost.example.com",
            "128.0.0.1",
        ] {
            assert!(!is_local(remote), "{remote}");
        }
    }
}
