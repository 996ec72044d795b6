//! A bridged container's `/etc/resolv.conf`, `/etc/hosts` and `/etc/hostname`:
//! written by the engine into a directory of the container's own under the
//! state directory, and bind-mounted over the rootfs's files, which stay
//! untouched.
//!
//! resolv.conf follows docker and podman: the host's nameservers, except
//! loopback ones, which a container cannot reach; when the host only has a
//! loopback stub (systemd-resolved's 127.0.0.53) the upstream servers it
//! forwards to, from `/run/systemd/resolve/resolv.conf`. `--dns` and
//! `--dns-search` replace the servers and the search list.

use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The host's resolver configuration.
pub const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";
/// What systemd-resolved's stub forwards to.
pub const RESOLVED_UPSTREAM: &str = "/run/systemd/resolve/resolv.conf";

/// The names the files get in the container's directory, and where they go in the container.
pub const FILES: [&str; 3] = ["resolv.conf", "hosts", "hostname"];

/// What the user added (`--dns`, `--dns-search`, `--add-host`), lent by
/// the caller.
#[derive(Debug, Clone, Copy, Default)]
pub struct Asked<'a> {
    pub servers: &'a [IpAddr],
    pub search: &'a [String],
    pub hosts: &'a [(String, IpAddr)],
}

/// The lines of a resolv.conf that matter here.
#[derive(Debug, Default)]
struct Resolv {
    servers: Vec<IpAddr>,
    search: Vec<String>,
    options: Vec<String>,
}

fn parse_resolv(text: &str) -> Resolv {
    let mut r = Resolv::default();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                // An IPv6 address may carry a zone ("fe80::1%eth0"): not usable in a container.
                if let Some(ip) = words.next().and_then(|w| w.parse().ok()) {
                    r.servers.push(ip);
                }
            }
            // The last of "search" and "domain" wins, as in resolv.conf(5).
            Some("search") | Some("domain") => r.search = words.map(String::from).collect(),
            Some("options") => r.options.extend(words.map(String::from)),
            _ => {}
        }
    }
    r
}

/// The container's resolv.conf, from the host's (`host`), systemd-resolved's
/// upstream file (`upstream`, when present) and the user's options.
pub fn resolv_conf(host: &str, upstream: Option<&str>, opts: Asked) -> String {
    let mut source = parse_resolv(host);
    if source.servers.iter().all(|ip| ip.is_loopback()) {
        if let Some(upstream) = upstream {
            source = parse_resolv(upstream);
        }
    }
    // A container has no IPv6 route: keep IPv6 servers only when asked for.
    let servers: Vec<IpAddr> = if opts.servers.is_empty() {
        source
            .servers
            .into_iter()
            .filter(|ip| ip.is_ipv4() && !ip.is_loopback())
            .collect()
    } else {
        opts.servers.to_vec()
    };
    let search = if opts.search.is_empty() {
        source.search
    } else {
        opts.search.to_vec()
    };
    let mut out = String::from("# written by engine for this container\n");
    if !search.is_empty() {
        out += &format!("search {}\n", search.join(" "));
    }
    if servers.is_empty() {
        out += "# the host has no nameserver a container can reach (only loopback ones): use --dns IP\n";
    }
    for ip in servers {
        out += &format!("nameserver {ip}\n");
    }
    if !source.options.is_empty() {
        out += &format!("options {}\n", source.options.join(" "));
    }
    out
}

/// The container's /etc/hosts: localhost, its own name(s) on its address, and `--add-host`.
pub fn hosts(hostname: &str, name: &str, ip: Option<Ipv4Addr>, opts: Asked) -> String {
    let mut out = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    let names = if hostname == name {
        name.to_string()
    } else {
        format!("{hostname} {name}")
    };
    match ip {
        Some(ip) => out += &format!("{ip}\t{names}\n"),
        None => out += &format!("127.0.1.1\t{names}\n"),
    }
    for (host, ip) in opts.hosts {
        out += &format!("{ip}\t{host}\n");
    }
    out
}

/// The container's own lines of /etc/hosts (as `hosts` made them), kept
/// beside the mounted file, in the engine's directory only: the peers'
/// lines are added to a copy of them.
pub const OWN_HOSTS: &str = "hosts.own";

/// The line before the peers' lines.
const PEERS_MARK: &str = "# containers on the bridge (the engine rewrites what follows)\n";

/// A container's /etc/hosts: its own lines, then a line for each running
/// peer on its bridge (address, then its name and aliases).
pub fn hosts_with_peers(own: &str, peers: &[(Ipv4Addr, Vec<String>)]) -> String {
    let mut out = own.to_string();
    if peers.is_empty() {
        return out;
    }
    out += PEERS_MARK;
    for (ip, names) in peers {
        out += &format!("{ip}\t{}\n", names.join(" "));
    }
    out
}

/// Rewrites the hosts file of the container whose files are in `dir` with
/// its own lines and `peers`, in place: the container's /etc/hosts is a
/// bind mount of that very inode, so a new file renamed over it would not
/// be seen. Only the engine's own directory is walked (0700, host root's,
/// never mounted into a container), without following a symlink, and
/// nothing is created: a container already gone is no error.
pub fn refresh_hosts(dir: &Path, peers: &[(Ipv4Addr, Vec<String>)]) -> Result<(), Error> {
    use std::io::Read;
    use std::os::unix::fs::FileExt;
    let nofollow = |path: &Path, write: bool| {
        std::fs::OpenOptions::new()
            .read(!write)
            .write(write)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
    };
    let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
    let own_path = dir.join(OWN_HOSTS);
    let mut own = String::new();
    match nofollow(&own_path, false).and_then(|mut f| f.read_to_string(&mut own)) {
        Ok(_) => {}
        Err(e) if gone(&e) => return Ok(()),
        Err(source) => {
            return Err(Error::Write {
                path: own_path,
                source,
            })
        }
    }
    let path = dir.join("hosts");
    let text = hosts_with_peers(&own, peers);
    let write = |f: std::fs::File| -> std::io::Result<()> {
        if !f.metadata()?.is_file() {
            return Err(std::io::Error::other("not a regular file"));
        }
        // Written over the old text, then cut to length: a reader sees the
        // old lines or the new ones, never an empty file.
        f.write_all_at(text.as_bytes(), 0)?;
        f.set_len(text.len() as u64)
    };
    match nofollow(&path, true).and_then(write) {
        Ok(()) => Ok(()),
        Err(e) if gone(&e) => Ok(()),
        Err(source) => Err(Error::Write { path, source }),
    }
}

/// Why the DNS files of a container could not be written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot create {}", .dir.display())]
    CreateDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {}", .path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Writes the three files into `dir` (created 0700, like the state directory
/// around it; files 0644, since the container reads them through mounts the
/// parent makes, possibly as a uid that owns nothing on the host) and returns
/// their paths in `FILES` order.
pub fn write_files(
    dir: &Path,
    hostname: &str,
    name: &str,
    ip: Option<Ipv4Addr>,
    opts: Asked,
) -> Result<[PathBuf; 3], Error> {
    let host = std::fs::read_to_string(HOST_RESOLV_CONF).unwrap_or_default();
    let upstream = std::fs::read_to_string(RESOLVED_UPSTREAM).ok();
    let contents = [
        resolv_conf(&host, upstream.as_deref(), opts),
        hosts(hostname, name, ip, opts),
        format!("{hostname}\n"),
    ];
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        // Left by a container of the same name that the engine could not clean up.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(source) => {
            return Err(Error::CreateDir {
                dir: dir.to_owned(),
                source,
            })
        }
    }
    let own = [(dir.join(OWN_HOSTS), contents[1].clone())];
    let paths = FILES.map(|f| dir.join(f));
    for (path, text) in paths.iter().cloned().zip(contents).chain(own) {
        let _ = std::fs::remove_file(&path);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()))
            .map_err(|source| Error::Write {
                path: path.clone(),
                source,
            })?;
    }
    Ok(paths)
}

/// Removes what `write_files` made; a directory already gone is fine.
pub fn remove_files(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_stub_is_replaced_by_its_upstream() {
        let host = "nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch lan\n";
        let upstream = "nameserver 192.0.2.1\nnameserver 192.0.2.2\nsearch corp\n";
        let r = resolv_conf(host, Some(upstream), Asked::default());
        assert!(
            r.contains("nameserver 192.0.2.1\nnameserver 192.0.2.2\n"),
            "{r}"
        );
        assert!(!r.contains("127.0.0.53"), "{r}");
        assert!(r.contains("search corp\n"), "{r}");
    }

    #[test]
    fn host_servers_are_kept_and_options_override() {
        let host =
            "nameserver 192.0.2.1\nnameserver 127.0.0.1\nnameserver 2001:db8::1\nsearch lan\n";
        let r = resolv_conf(host, None, Asked::default());
        assert!(r.contains("nameserver 192.0.2.1\n"), "{r}");
        assert!(
            !r.contains("127.0.0.1") && !r.contains("2001:db8::1"),
            "{r}"
        );
        let (servers, search) = (["198.51.100.1".parse().unwrap()], ["example.com".into()]);
        let opts = Asked {
            servers: &servers,
            search: &search,
            hosts: &[],
        };
        let r = resolv_conf(host, None, opts);
        assert!(
            r.contains("nameserver 198.51.100.1\n") && !r.contains("192.0.2.1"),
            "{r}"
        );
        assert!(
            r.contains("search example.com\n") && !r.contains("lan"),
            "{r}"
        );
    }

    #[test]
    fn only_loopback_and_no_upstream_says_what_to_do() {
        let r = resolv_conf("nameserver 127.0.0.53\n", None, Asked::default());
        assert!(!r.lines().any(|l| l.starts_with("nameserver")), "{r}");
        assert!(r.contains("--dns"), "{r}");
    }

    #[test]
    fn hosts_name_the_container_and_extra_hosts() {
        let extra = [("db".into(), "192.0.2.10".parse().unwrap())];
        let opts = Asked {
            hosts: &extra,
            ..Default::default()
        };
        let h = hosts("web", "web", Some(Ipv4Addr::new(192, 168, 1, 2)), opts);
        assert!(h.starts_with("127.0.0.1\tlocalhost\n"), "{h}");
        assert!(h.contains("192.168.1.2\tweb\n"), "{h}");
        assert!(h.contains("192.0.2.10\tdb\n"), "{h}");
        let h = hosts("h", "web", None, Asked::default());
        assert!(h.contains("127.0.1.1\th web\n"), "{h}");
    }

    /// The peers' lines go into the same inode (a bind mount of it is what
    /// the container sees), after the container's own lines; a hosts file
    /// that is a symlink is not followed; a directory already removed is
    /// no error.
    #[test]
    fn peers_are_written_in_place_and_no_symlink_is_followed() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let files = write_files(
            dir.path(),
            "a1",
            "a1",
            Some(Ipv4Addr::new(10, 0, 0, 2)),
            Asked::default(),
        )
        .unwrap();
        let inode = std::fs::metadata(&files[1]).unwrap().ino();
        let peers = [(
            Ipv4Addr::new(10, 0, 0, 3),
            vec!["a2".to_string(), "web".to_string()],
        )];
        refresh_hosts(dir.path(), &peers).unwrap();
        let text = std::fs::read_to_string(&files[1]).unwrap();
        assert!(text.starts_with("127.0.0.1\tlocalhost\n"), "{text}");
        assert!(
            text.contains("10.0.0.2\ta1\n") && text.ends_with("10.0.0.3\ta2 web\n"),
            "{text}"
        );
        assert_eq!(
            std::fs::metadata(&files[1]).unwrap().ino(),
            inode,
            "not in place"
        );
        refresh_hosts(dir.path(), &[]).unwrap();
        let own = std::fs::read_to_string(dir.path().join(OWN_HOSTS)).unwrap();
        assert_eq!(
            std::fs::read_to_string(&files[1]).unwrap(),
            own,
            "a peer's line stayed"
        );

        let outside = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(outside.path(), "outside\n").unwrap();
        std::fs::remove_file(&files[1]).unwrap();
        std::os::unix::fs::symlink(outside.path(), &files[1]).unwrap();
        assert!(refresh_hosts(dir.path(), &peers).is_err());
        assert_eq!(
            std::fs::read_to_string(outside.path()).unwrap(),
            "outside\n"
        );
        refresh_hosts(&dir.path().join("gone"), &peers).unwrap();
    }
}
