//! A validated container description. All input checking happens here, once,
//! before anything is created; front ends (the CLI today, OCI bundles later)
//! only fill a `SpecInput`.

use crate::model::config::Config;
use crate::sys::net::NetConfig;
use anyhow::{anyhow, bail, Context, Result};
use std::net::Ipv4Addr;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

/// The smallest memory limit we accept: below this a shell cannot even start.
pub const MIN_MEMORY: u64 = 6 * 1024 * 1024;
/// How many IDs a user namespace maps (container 0..65535).
pub const USERNS_SIZE: u32 = 65536;

/// Raw, unchecked input as a front end collected it.
#[derive(Debug, Clone, Default)]
pub struct SpecInput {
    pub rootfs: String,
    pub name: Option<String>,
    pub ip: Option<String>,
    pub command: Vec<String>,
    pub cpus: Option<String>,
    pub memory: Option<String>,
    pub pids_limit: Option<String>,
    pub hostname: Option<String>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub volumes: Vec<String>,
    /// None: decide from whether stdin is a terminal.
    pub tty: Option<bool>,
    /// `auto`, `host` or a numeric base.
    pub userns: String,
    /// `bridge` or `none`.
    pub net: String,
    pub write_through: bool,
    pub verbose: bool,
    /// Run in the background (`-d`), output to the log.
    pub detach: bool,
}

/// Resource limits, applied through cgroup v2.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Limits {
    /// CPUs, e.g. 0.5.
    pub cpus: Option<f64>,
    /// Bytes.
    pub memory: Option<u64>,
    pub pids: Option<u64>,
}

impl Limits {
    pub fn any(&self) -> bool {
        self.cpus.is_some() || self.memory.is_some() || self.pids.is_some()
    }
}

/// The user namespace: none, or container IDs 0..65535 mapped onto host IDs from a base.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserNs {
    Host,
    Map { uid: u32, gid: u32 },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Network {
    /// Only `lo`, in a network namespace of its own.
    None,
    /// A veth on the bridge; `ip` None means lease the lowest free address.
    Bridge {
        net: NetConfig,
        ip: Option<Ipv4Addr>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub host: PathBuf,
    pub container: PathBuf,
    pub readonly: bool,
}

/// A container description that has passed every check.
#[derive(Debug, Clone)]
pub struct Spec {
    pub name: String,
    /// Whether the name was generated (not chosen by the user).
    pub generated_name: bool,
    pub hostname: String,
    pub rootfs: PathBuf,
    pub command: Vec<String>,
    /// KEY=VAL, in order; later ones win.
    pub env: Vec<(String, String)>,
    pub workdir: PathBuf,
    pub volumes: Vec<Volume>,
    pub limits: Limits,
    pub userns: UserNs,
    pub network: Network,
    pub tty: bool,
    pub write_through: bool,
    pub verbose: bool,
    pub detach: bool,
}

impl Spec {
    /// Checks everything a front end gave us; refuses bad input with one line
    /// that names the culprit and what to do.
    pub fn from_input(input: SpecInput, cfg: &Config) -> Result<Spec> {
        if !nix::unistd::geteuid().is_root() {
            bail!("engine run needs root (namespaces, cgroups, networking): run it with sudo");
        }
        let rootfs = resolve_rootfs(&input.rootfs, cfg)?;
        if !input.write_through {
            // overlayfs options are comma-separated, its layers colon-separated.
            for (what, path) in [("rootfs", &rootfs), ("ENGINE_STATE_DIR", &cfg.state_dir)] {
                if path.to_string_lossy().contains([',', ':']) {
                    bail!(
                        "{what} path {} holds ',' or ':', which overlayfs cannot take: rename it, or use --write-through",
                        path.display()
                    );
                }
            }
        }
        let (name, generated_name) = match input.name {
            Some(n) => (check_name(&n)?, false),
            None => (generate_name(), true),
        };
        let hostname = match input.hostname {
            Some(h) => check_hostname(&h)?,
            None => name.clone(),
        };
        let limits = Limits {
            cpus: input.cpus.as_deref().map(parse_cpus).transpose()?,
            memory: input.memory.as_deref().map(parse_memory).transpose()?,
            pids: input.pids_limit.as_deref().map(parse_pids).transpose()?,
        };
        if limits.any() {
            crate::sys::cgroup::check_available(&cfg.cgroup_root).map_err(|why| {
                anyhow!("resource limits need cgroup v2 with the cpu, memory and pids controllers, but {why}: run without --cpus/--memory/--pids-limit, or on a cgroup v2 host")
            })?;
        }
        let userns = parse_userns(&input.userns, &rootfs)?;
        let network = match input.net.as_str() {
            "none" => {
                if let Some(ip) = &input.ip {
                    bail!(
                        "address {ip} given with --net none: drop the address or use --net bridge"
                    );
                }
                Network::None
            }
            "bridge" => {
                let net = NetConfig::new(&cfg.bridge, &cfg.subnet)?;
                let ip = input
                    .ip
                    .as_deref()
                    .map(|ip| net.parse_container_ip(ip))
                    .transpose()?;
                Network::Bridge { net, ip }
            }
            other => bail!("unknown --net mode {other:?}: use bridge or none"),
        };
        let env = input
            .env
            .iter()
            .map(|e| parse_env(e))
            .collect::<Result<Vec<_>>>()?;
        let workdir = match input.workdir {
            Some(w) if w.starts_with('/') => PathBuf::from(w),
            Some(w) => {
                bail!("working directory {w:?} is not absolute: give a path starting with /")
            }
            None => PathBuf::from("/"),
        };
        let volumes = input
            .volumes
            .iter()
            .map(|v| parse_volume(v))
            .collect::<Result<Vec<_>>>()?;
        let command = if input.command.is_empty() {
            vec![default_shell(&rootfs)]
        } else {
            input.command
        };
        if command[0].is_empty() {
            bail!("the command is empty: give a program to run after --");
        }
        check_command_arch(&rootfs, &command[0], &env)?;
        // Detached containers have no terminal unless asked for one.
        let tty = input
            .tty
            .unwrap_or_else(|| !input.detach && nix::unistd::isatty(0).unwrap_or(false));
        Ok(Spec {
            name,
            generated_name,
            hostname,
            rootfs,
            command,
            env,
            workdir,
            volumes,
            limits,
            userns,
            network,
            tty,
            write_through: input.write_through,
            verbose: input.verbose,
            detach: input.detach,
        })
    }
}

/// A directory, or a catalog name pulled into the cache on first use.
fn resolve_rootfs(arg: &str, cfg: &Config) -> Result<PathBuf> {
    if arg.is_empty() {
        bail!("no ROOTFS given: name a directory holding a root filesystem, or `busybox`");
    }
    let path = Path::new(arg);
    if !path.exists() && !arg.contains('/') && crate::image::is_catalog_name(arg) {
        return crate::image::cached(arg, &cfg.rootfs_cache)
            .with_context(|| format!("cannot get the {arg} rootfs"));
    }
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(_) => bail!(
            "rootfs {arg} does not exist: give a directory holding a root filesystem, or a catalog name (busybox, debian, centos)"
        ),
    };
    if !meta.is_dir() {
        bail!("rootfs {arg} is not a directory: unpack it first (engine rootfs pull URL DEST)");
    }
    let has_bin = ["bin", "usr/bin"].iter().any(|d| path.join(d).is_dir());
    if !has_bin {
        bail!("rootfs {arg} is not a root filesystem (no bin/ or usr/bin/): point to an unpacked distro root");
    }
    path.canonicalize()
        .with_context(|| format!("cannot resolve rootfs {arg}"))
}

/// `[A-Za-z0-9][A-Za-z0-9_.-]{0,62}`, as docker accepts.
pub fn check_name(name: &str) -> Result<String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if !ok {
        bail!("invalid container name {name:?}: use 1-63 characters [A-Za-z0-9_.-], starting with a letter or digit");
    }
    Ok(name.to_string())
}

fn check_hostname(h: &str) -> Result<String> {
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
        bail!("invalid hostname {h:?}: use letters, digits, '-' and '.', at most 64 characters");
    }
    Ok(h.to_string())
}

/// A short random name: docker's style is adjective_noun; we keep it plain.
fn generate_name() -> String {
    let mut bytes = [0u8; 4];
    if getrandom(&mut bytes).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        bytes = (t ^ std::process::id()).to_le_bytes();
    }
    format!("ctr-{:08x}", u32::from_le_bytes(bytes))
}

fn getrandom(buf: &mut [u8]) -> std::io::Result<()> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(buf)
}

/// `0.5`, `2`: a positive number of CPUs, at most the host's.
pub fn parse_cpus(s: &str) -> Result<f64> {
    let cpus: f64 = s
        .trim()
        .parse()
        .ok()
        .filter(|c: &f64| c.is_finite() && *c > 0.0)
        .ok_or_else(|| anyhow!("invalid --cpus {s:?}: give a positive number such as 0.5 or 2"))?;
    let host = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    if cpus > host as f64 {
        bail!("--cpus {s} is more than the {host} CPUs of this host: give at most {host}");
    }
    if cpus * 100_000.0 < 1000.0 {
        bail!("--cpus {s} is too small: give at least 0.01");
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
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    let value: f64 = digits.parse().ok()?;
    let bytes = value * mult as f64;
    (bytes.is_finite() && bytes >= 1.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

pub fn parse_memory(s: &str) -> Result<u64> {
    let bytes = parse_size(s).ok_or_else(|| {
        anyhow!("invalid --memory {s:?}: give a size such as 50M, 512k, 1G or plain bytes")
    })?;
    if bytes < MIN_MEMORY {
        bail!("--memory {s} is below the minimum of 6M: give at least 6M");
    }
    Ok(bytes)
}

fn parse_pids(s: &str) -> Result<u64> {
    s.trim()
        .parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| anyhow!("invalid --pids-limit {s:?}: give a positive whole number"))
}

/// `auto`: base = owner of the rootfs; `host`: no user namespace; `N`: explicit base.
fn parse_userns(s: &str, rootfs: &Path) -> Result<UserNs> {
    let base = |uid: u32, gid: u32| -> Result<UserNs> {
        if uid.checked_add(USERNS_SIZE).is_none() || gid.checked_add(USERNS_SIZE).is_none() {
            bail!("--userns base {uid} is too large: the 65536 mapped IDs must fit below 2^32");
        }
        Ok(UserNs::Map { uid, gid })
    };
    match s {
        "host" => Ok(UserNs::Host),
        "auto" | "" => {
            let meta = std::fs::metadata(rootfs)
                .with_context(|| format!("cannot stat rootfs {}", rootfs.display()))?;
            base(meta.uid(), meta.gid())
        }
        n => match n.parse::<u32>() {
            Ok(b) => base(b, b),
            Err(_) => {
                bail!("unknown --userns {n:?}: use auto, host, or a numeric base such as 100000")
            }
        },
    }
}

pub fn parse_env(e: &str) -> Result<(String, String)> {
    let (k, v) = match e.split_once('=') {
        Some((k, v)) => (k.to_string(), v.to_string()),
        // `-e KEY` passes the host's value through, as docker does.
        None => (e.to_string(), std::env::var(e).unwrap_or_default()),
    };
    if k.is_empty() || k.contains('\0') || v.contains('\0') {
        bail!("invalid --env {e:?}: use KEY=VALUE");
    }
    Ok((k, v))
}

/// `HOST:CONTAINER[:ro|rw]`.
fn parse_volume(v: &str) -> Result<Volume> {
    let parts: Vec<&str> = v.split(':').collect();
    let (host, container, readonly) = match parts.as_slice() {
        [h, c] => (*h, *c, false),
        [h, c, "ro"] => (*h, *c, true),
        [h, c, "rw"] => (*h, *c, false),
        _ => bail!("invalid --volume {v:?}: use HOST:CONTAINER or HOST:CONTAINER:ro"),
    };
    let host_path = Path::new(host);
    if !host_path.exists() {
        bail!("volume host path {host} does not exist: create it first or fix the path");
    }
    if !container.starts_with('/')
        || Path::new(container)
            .components()
            .any(|c| c == Component::ParentDir)
    {
        bail!("volume target {container:?} must be an absolute path without '..'");
    }
    Ok(Volume {
        host: host_path
            .canonicalize()
            .with_context(|| format!("cannot resolve volume host path {host}"))?,
        container: PathBuf::from(container),
        readonly,
    })
}

/// `path` as the container will see it, if it exists there.
fn existing_in_root(root: &Path, path: &Path) -> Option<PathBuf> {
    crate::image::resolve_in_rootfs(root, path)
        .ok()
        .filter(|p| p.exists())
}

fn default_shell(rootfs: &Path) -> String {
    if existing_in_root(rootfs, Path::new("/bin/bash")).is_some() {
        "/bin/bash".into()
    } else {
        "/bin/sh".into()
    }
}

/// Finds the command as the container's PATH would.
fn find_command(rootfs: &Path, cmd: &str, env: &[(String, String)]) -> Option<PathBuf> {
    if cmd.contains('/') {
        let p = if cmd.starts_with('/') {
            PathBuf::from(cmd)
        } else {
            Path::new("/").join(cmd)
        };
        return existing_in_root(rootfs, &p);
    }
    let path = env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str())
        .unwrap_or(crate::child::init::DEFAULT_PATH);
    path.split(':')
        .filter(|d| d.starts_with('/'))
        .find_map(|d| existing_in_root(rootfs, &Path::new(d).join(cmd)).filter(|p| p.is_file()))
}

/// Refuses a command built for an architecture this host cannot run (no
/// binfmt_misc handler), instead of a bare "Exec format error" later.
fn check_command_arch(rootfs: &Path, cmd: &str, env: &[(String, String)]) -> Result<()> {
    use crate::image::{arch_machine, elf_machine, host_arch, machine_arch};
    let Some(path) = find_command(rootfs, cmd, env) else {
        return Ok(()); // not found: exec reports 127 with the container's own view
    };
    let Ok(Some(machine)) = elf_machine(&path) else {
        return Ok(());
    };
    if Some(machine) == arch_machine(host_arch()) || binfmt_handles(machine) {
        return Ok(());
    }
    let theirs = machine_arch(machine)
        .map(str::to_string)
        .unwrap_or_else(|| format!("ELF machine {machine}"));
    let ours = host_arch();
    bail!(
        "{cmd} in rootfs {} is built for {theirs}, which this {ours} host cannot run (no binfmt_misc handler): use a rootfs for {ours}, or install qemu-user-static",
        rootfs.display()
    )
}

/// Whether an enabled binfmt_misc entry matches ELF files for `machine`
/// (its magic covers e_machine at byte offset 18, little endian).
fn binfmt_handles(machine: u16) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc/sys/fs/binfmt_misc") else {
        return false;
    };
    let want = [machine as u8, (machine >> 8) as u8];
    dir.flatten().any(|entry| {
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            return false;
        };
        if !text.lines().any(|l| l == "enabled") {
            return false;
        }
        let magic = text
            .lines()
            .find_map(|l| l.strip_prefix("magic "))
            .and_then(hex_bytes);
        let offset = text
            .lines()
            .find_map(|l| l.strip_prefix("offset "))
            .and_then(|o| o.trim().parse::<usize>().ok())
            .unwrap_or(0);
        match magic {
            Some(m) if offset == 0 && m.len() >= 20 && m.starts_with(b"\x7fELF") => {
                m[18..20] == want
            }
            _ => false,
        }
    })
}

fn hex_bytes(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
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
        for bad in ["", "M", "-1M", "abc", "5X", "1e9", "0"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
        assert!(parse_memory("5M").is_err());
        assert!(parse_memory("6M").is_ok());
    }

    #[test]
    fn cpus() {
        assert_eq!(parse_cpus("0.5").unwrap(), 0.5);
        for bad in ["0", "-1", "abc", "NaN", "inf", "100000"] {
            assert!(parse_cpus(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names() {
        for ok in ["a", "web-1", "A.b_c", &"x".repeat(63)] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", ".a", "a/b", "a b", &"x".repeat(64), "ünï"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert!(check_name(&generate_name()).is_ok());
    }

    #[test]
    fn volumes_and_env() {
        assert!(parse_volume("/tmp:/data:ro").unwrap().readonly);
        assert!(parse_volume("/nonexistent-engine-test:/data").is_err());
        assert!(parse_volume("/tmp:data").is_err());
        assert!(parse_volume("/tmp:/a/../b").is_err());
        assert!(parse_volume("/tmp:/data:xx").is_err());
        assert_eq!(parse_env("A=b=c").unwrap(), ("A".into(), "b=c".into()));
        assert!(parse_env("=x").is_err());
    }

    #[test]
    fn binfmt_magic_parses() {
        assert_eq!(hex_bytes("7f454c46"), Some(vec![0x7f, b'E', b'L', b'F']));
        assert_eq!(hex_bytes("zz"), None);
    }
}
