//! The container description. `Request::parse` checks all input without
//! touching the host (no file system, no network, no process); then the
//! facade pulls a catalog rootfs, and `validate` checks the request against
//! the host and makes it a `Spec`. Front ends (the CLI today, OCI bundles
//! later) only fill a `SpecInput`.

use crate::model::bundle::TmpfsMount;
use crate::model::config::Config;
use crate::model::env::{parse_envs, parse_workdir};
use crate::model::limits::{self, Limits};
use crate::model::mounts::{parse_mount, parse_tmpfs, Mount};
use crate::model::names::{check_hostname, check_name, generate_name};
use crate::model::network::{parse_network, Network};
use crate::model::ports::{parse_dns, parse_publishes, DnsOptions, PortMapping};
use crate::model::security::{Confinement, SecurityInput, SecurityRequest};
use crate::model::userns::{parse_userns, UserNs, UserNsChoice};
use crate::model::volumes::{parse_volume, Volume};
use std::path::PathBuf;

/// What `Request::parse` refuses itself (each option's own refusals are
/// its file's error, gathered in [`crate::model::Error`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    #[error("--privileged runs without a user namespace, so --userns {0} cannot apply: drop one of them")]
    PrivilegedUserns(String),
    #[error("invalid --log-size-max {0:?}: give a size of at least 4k, such as 10M")]
    LogSizeMax(String),
    #[error("{0} needs a network: drop --net none, or drop {0}")]
    NeedsNetwork(&'static str),
    #[error("{0} cannot be used with --network container:NAME, whose network (and names) are that container's: drop {0}")]
    JoinedNetwork(&'static str),
    #[error("{given} volumes given: at most {most} fit, merge some under one directory")]
    TooManyVolumes { given: usize, most: usize },
    #[error(
        "invalid --network-alias {0:?}: use letters, digits, '-' and '.', at most 64 characters"
    )]
    Alias(String),
    #[error("the command is empty: give a program to run after --")]
    EmptyCommand,
    #[error("no ROOTFS given: name a directory holding a root filesystem, or `busybox`")]
    NoRootfs,
    #[error("invalid --restart {0:?}: use no, on-failure, on-failure:N (N a count above 0), always or unless-stopped")]
    Restart(String),
    #[error("--restart {0} needs -d: only a detached container is restarted")]
    RestartNeedsDetach(String),
    #[error("--restart {0} and --rm cannot go together: a container removed when it ends is not restarted")]
    RestartWithRm(String),
    #[error("invalid --pull {0:?}: use missing, always or never")]
    Pull(String),
    #[error("invalid --platform {0:?}: use OS/ARCH[/VARIANT], e.g. linux/arm64")]
    Platform(String),
}

type Result<T, E = crate::model::Error> = std::result::Result<T, E>;

/// Raw, unchecked input as a front end collected it (a kept container's
/// record holds it, for `engine start`).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
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
    /// `-p [HOSTIP:]HOSTPORT:CONTAINERPORT[/tcp|udp]`, repeatable.
    pub publish: Vec<String>,
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    /// `--add-host NAME:IP`, repeatable.
    pub add_host: Vec<String>,
    /// `--network-alias NAME`, repeatable: more names of the container
    /// in its peers' /etc/hosts.
    #[serde(default)]
    pub network_alias: Vec<String>,
    pub write_through: bool,
    /// `--layer-size`: None for the default share of RAM.
    pub layer_size: Option<String>,
    pub verbose: bool,
    /// Run in the background (`-d`), output to the log.
    pub detach: bool,
    /// `--rm`: a detached container's record goes when it ends (a
    /// foreground one's always does).
    pub rm: bool,
    /// `--cap-add`, `--cap-drop`, `--privileged`, `--security-opt`.
    pub security: SecurityInput,
    /// `--log-size-max` of a detached container (default 10 MiB).
    pub log_size_max: Option<String>,
    /// `--env-file`, read by the facade into `env` (before the `-e`
    /// words, which win) before the input is parsed.
    #[serde(default)]
    pub env_file: Vec<String>,
    /// `--read-only`: the rootfs read-only (/dev, /proc's usual, the
    /// volumes and tmpfs mounts as they are).
    #[serde(default)]
    pub read_only: bool,
    /// `--tmpfs PATH[:OPTIONS]`, repeatable.
    #[serde(default)]
    pub tmpfs: Vec<String>,
    /// `--mount type=bind|tmpfs,...`, repeatable.
    #[serde(default)]
    pub mount: Vec<String>,
    /// `--init`: the engine's reaper as PID 1, the command its child.
    #[serde(default)]
    pub init: bool,
    /// `--restart` of a detached container (docker's policies).
    #[serde(default)]
    pub restart_policy: Option<String>,
    /// `--entrypoint` (an image's Entrypoint replaced; "" clears it).
    #[serde(default)]
    pub entrypoint: Option<String>,
    /// `--user NAME|UID[:GROUP|GID]` (an image's names looked up in its
    /// /etc/passwd and /etc/group).
    #[serde(default)]
    pub user: Option<String>,
    /// `--pull missing|always|never` (default missing).
    #[serde(default)]
    pub pull: Option<String>,
    /// `--platform OS/ARCH[/VARIANT]`: the platform a pulled index is
    /// resolved to (default the host's).
    #[serde(default)]
    pub platform: Option<String>,
}

/// `--restart`: whether a detached container's supervisor runs it again
/// when it ends (docker's policies; `stop` ends any of them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RestartPolicy {
    #[default]
    No,
    /// After a non-zero exit, at most N times (without N, always).
    OnFailure(Option<u32>),
    Always,
    /// As `always` here: the engine has no daemon that restarts, so the
    /// two differ only in docker's daemon restart.
    UnlessStopped,
}

impl RestartPolicy {
    /// Whether to run again after an exit with `code`, `restarts` runs
    /// after the first.
    pub fn runs_again(self, code: i32, restarts: u32) -> bool {
        match self {
            RestartPolicy::No => false,
            RestartPolicy::OnFailure(max) => code != 0 && max.is_none_or(|m| restarts < m),
            RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
        }
    }

    /// A policy as `--restart` names it (None: not one).
    pub fn parse(s: &str) -> Option<RestartPolicy> {
        Some(match s.split_once(':') {
            None if s == "no" => RestartPolicy::No,
            None if s == "on-failure" => RestartPolicy::OnFailure(None),
            None if s == "always" => RestartPolicy::Always,
            None if s == "unless-stopped" => RestartPolicy::UnlessStopped,
            Some(("on-failure", n)) => match n.parse::<u32>() {
                Ok(n) if n > 0 => RestartPolicy::OnFailure(Some(n)),
                _ => return None,
            },
            _ => return None,
        })
    }
}

/// `--restart`, refused without -d and with --rm (as docker).
fn restart_policy(given: Option<&str>, detach: bool, rm: bool) -> Result<RestartPolicy> {
    let Some(s) = given else {
        return Ok(RestartPolicy::No);
    };
    let policy = RestartPolicy::parse(s).ok_or_else(|| Error::Restart(s.into()))?;
    if policy != RestartPolicy::No && !detach {
        return Err(Error::RestartNeedsDetach(s.into()).into());
    }
    if policy != RestartPolicy::No && rm {
        return Err(Error::RestartWithRm(s.into()).into());
    }
    Ok(policy)
}

/// When `run IMAGE` pulls (docker's `--pull`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PullPolicy {
    /// Only an image the store lacks.
    #[default]
    Missing,
    Always,
    Never,
}

/// An image a container runs on: its layers (the overlay's lowers) and
/// the image config applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageUse {
    /// The reference as given (`engine ps` shows it).
    pub reference: String,
    /// The image ID (its config's digest).
    pub id: String,
    /// The layers' unpacked trees, top layer first.
    pub layers: Vec<PathBuf>,
    /// The diff IDs of those layers, lowest first (as the store records them).
    pub diff_ids: Vec<String>,
    /// The image's StopSignal as a number, for `engine stop` (None: SIGTERM).
    pub stop_signal: Option<i32>,
}

/// A detached container's log is capped at this by default.
pub const DEFAULT_LOG_SIZE_MAX: u64 = 10 << 20;

/// Where the root file system comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootfsSource {
    /// A path to a directory.
    Dir(PathBuf),
    /// A catalog name (a directory of that name in the working directory wins).
    Catalog(String),
    /// An image transport (`oci:`, `oci-archive:`, `docker-archive:`); a
    /// registry reference arrives as `Dir` and becomes an image when no
    /// such directory exists (the facade decides).
    Image(String),
}

/// Input that passed every check that needs nothing but the input.
#[derive(Debug, Clone)]
pub struct Request {
    pub rootfs: RootfsSource,
    pub name: String,
    pub generated_name: bool,
    pub hostname: String,
    /// Empty: the rootfs's default shell.
    pub command: Vec<String>,
    pub env: Vec<(String, String)>,
    pub workdir: PathBuf,
    /// Host paths as given.
    pub volumes: Vec<Volume>,
    pub limits: Limits,
    pub userns: UserNsChoice,
    pub network: Network,
    /// Published ports (bridge only).
    pub ports: Vec<PortMapping>,
    /// resolv.conf and hosts options (bridge only).
    pub dns: DnsOptions,
    pub tty: Option<bool>,
    pub write_through: bool,
    /// Bytes; None: the default share of RAM (a host fact, see validate).
    pub layer_size: Option<u64>,
    pub verbose: bool,
    pub detach: bool,
    pub rm: bool,
    pub security: SecurityRequest,
    pub log_size_max: u64,
    /// `--read-only`.
    pub readonly_root: bool,
    /// `--tmpfs` and `--mount type=tmpfs`, in the order given.
    pub tmpfs: Vec<TmpfsMount>,
    /// `--init`.
    pub init: bool,
    pub restart_policy: RestartPolicy,
    /// Whether `-w` was given (it wins over an image's WorkingDir).
    pub workdir_given: bool,
    pub entrypoint: Option<String>,
    pub user: Option<String>,
    pub pull: PullPolicy,
    /// `--platform`, checked for its form.
    pub platform: Option<String>,
}

/// A container description that has passed every check, against the host too.
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
    /// Published ports (bridge only).
    pub ports: Vec<PortMapping>,
    /// resolv.conf and hosts options (bridge only).
    pub dns: DnsOptions,
    pub tty: bool,
    pub write_through: bool,
    /// Bytes of the tmpfs that holds the copy-on-write layer.
    pub layer_size: u64,
    pub verbose: bool,
    pub detach: bool,
    /// `--rm`: a detached container is not kept (its record and log go
    /// when it ends); without it, it is kept until `engine rm`.
    pub rm: bool,
    /// What the front end gave, for a kept container's `engine start`.
    pub origin: Option<SpecInput>,
    /// `engine start`: this run takes the name from the exited container's
    /// kept record (and appends to its log).
    pub restart: bool,
    /// Capabilities, seccomp filter, no_new_privs.
    pub confinement: Confinement,
    /// Bytes a detached container's logs may hold (NAME.log and NAME.log.1).
    pub log_size_max: u64,
    /// `--read-only`: the root mount read-only, once it is the root.
    pub readonly_root: bool,
    /// `--tmpfs` and `--mount type=tmpfs`, mounted after the volumes.
    pub tmpfs: Vec<TmpfsMount>,
    /// `--init`: the engine's reaper is PID 1 and runs the command.
    pub init: bool,
    /// `--restart` of a detached container.
    pub restart_policy: RestartPolicy,
    /// The image the container runs on (None: a rootfs directory).
    pub image: Option<ImageUse>,
    /// The process's user (`--user`, an image's User); None: root.
    pub user: Option<crate::model::bundle::User>,
}

impl Request {
    /// Checks everything a front end gave us that can be checked without
    /// the host; refuses bad input with one line that names the culprit and
    /// what to do. `random` gives the number a generated name is made of
    /// (`sys::random::u32`), called only when the input names no container.
    pub fn parse(input: SpecInput, cfg: &Config, random: impl FnOnce() -> u32) -> Result<Request> {
        let rootfs = parse_rootfs(&input.rootfs)?;
        let network = parse_network(&input.net, input.ip.as_deref(), &cfg.bridge, &cfg.subnet)?;
        let (volumes, tmpfs) = volumes_and_tmpfs(&input, &network)?;
        let pull = parse_pull(input.pull.as_deref())?;
        if let Some(platform) = &input.platform {
            check_platform(platform)?;
        }
        if let Some(user) = &input.user {
            crate::model::users::parse_user(user)?;
        }
        let workdir_given = input.workdir.is_some();
        let (name, generated_name) = match input.name {
            Some(n) => (check_name(&n)?, false),
            None => (generate_name(random()), true),
        };
        if matches!(network, Network::Container(_)) && input.hostname.is_some() {
            return Err(Error::JoinedNetwork("--hostname").into());
        }
        let hostname = match input.hostname {
            Some(h) => check_hostname(&h)?,
            None => name.clone(),
        };
        let limits = limits::parse(
            input.cpus.as_deref(),
            input.memory.as_deref(),
            input.pids_limit.as_deref(),
        )?;
        let security = crate::model::security::parse(&input.security)?;
        let userns = userns_of(input.security.privileged, &input.userns)?;
        let log_size_max = log_size_max(input.log_size_max.as_deref())?;
        let restart_policy =
            restart_policy(input.restart_policy.as_deref(), input.detach, input.rm)?;
        let ports = parse_publishes(&input.publish)?;
        let mut dns = parse_dns(&input.dns, &input.dns_search, &input.add_host)?;
        dns.aliases = input
            .network_alias
            .iter()
            .map(|a| check_hostname(a).map_err(|_| Error::Alias(a.clone())))
            .collect::<Result<_, _>>()?;
        check_needs_network(&network, &ports, &dns)?;
        let env = parse_envs(&input.env)?;
        let workdir = parse_workdir(input.workdir)?;
        let layer_size = input
            .layer_size
            .as_deref()
            .map(limits::parse_layer_size)
            .transpose()?;
        if input.command.first().is_some_and(|c| c.is_empty()) {
            return Err(Error::EmptyCommand.into());
        }
        Ok(Request {
            rootfs,
            name,
            generated_name,
            hostname,
            command: input.command,
            env,
            workdir,
            volumes,
            limits,
            userns,
            network,
            ports,
            dns,
            tty: input.tty,
            write_through: input.write_through,
            layer_size,
            verbose: input.verbose,
            detach: input.detach,
            rm: input.rm,
            security,
            log_size_max,
            readonly_root: input.read_only,
            tmpfs,
            init: input.init,
            restart_policy,
            workdir_given,
            entrypoint: input.entrypoint,
            user: input.user,
            pull,
            platform: input.platform,
        })
    }
}

/// `--pull`: missing (the default), always or never.
fn parse_pull(given: Option<&str>) -> Result<PullPolicy, Error> {
    Ok(match given {
        None | Some("missing") => PullPolicy::Missing,
        Some("always") => PullPolicy::Always,
        Some("never") => PullPolicy::Never,
        Some(other) => return Err(Error::Pull(other.into())),
    })
}

/// `--platform`: OS/ARCH or OS/ARCH/VARIANT, no part empty (the registry
/// client's `Platform::parse` takes what passes).
fn check_platform(given: &str) -> Result<(), Error> {
    let parts: Vec<&str> = given.split('/').collect();
    if (2..=3).contains(&parts.len()) && parts.iter().all(|p| !p.is_empty()) {
        Ok(())
    } else {
        Err(Error::Platform(given.into()))
    }
}

/// `--userns`, where --privileged is today's --userns host (no user
/// namespace) with every capability and no filter.
fn userns_of(privileged: bool, userns: &str) -> Result<UserNsChoice> {
    Ok(match (privileged, userns) {
        (true, "auto" | "" | "host") => parse_userns("host")?,
        (true, other) => return Err(Error::PrivilegedUserns(other.into()).into()),
        (false, other) => parse_userns(other)?,
    })
}

/// `--log-size-max`: a size of at least 4 KiB.
fn log_size_max(given: Option<&str>) -> Result<u64> {
    Ok(match given {
        None => DEFAULT_LOG_SIZE_MAX,
        Some(s) => limits::parse_size(s)
            .filter(|n| *n >= 4096)
            .ok_or_else(|| Error::LogSizeMax(s.into()))?,
    })
}

/// Without a network, -p, --dns, --dns-search, --add-host and
/// --network-alias are refused.
fn check_needs_network(network: &Network, ports: &[PortMapping], dns: &DnsOptions) -> Result<()> {
    if matches!(network, Network::None | Network::Container(_)) {
        let given = [
            (!ports.is_empty(), "-p"),
            (!dns.servers.is_empty(), "--dns"),
            (!dns.search.is_empty(), "--dns-search"),
            (!dns.hosts.is_empty(), "--add-host"),
            (!dns.aliases.is_empty(), "--network-alias"),
        ];
        if let Some((_, flag)) = given.iter().find(|(yes, _)| *yes) {
            return Err(match network {
                Network::Container(_) => Error::JoinedNetwork(flag),
                _ => Error::NeedsNetwork(flag),
            }
            .into());
        }
    }
    Ok(())
}

/// `-v` and `--mount type=bind` (volumes, in that order), `--tmpfs` and
/// `--mount type=tmpfs`, each checked, and no more volumes than fit in
/// the message to the child.
fn volumes_and_tmpfs(
    input: &SpecInput,
    network: &Network,
) -> Result<(Vec<Volume>, Vec<TmpfsMount>)> {
    let mut volumes = input
        .volumes
        .iter()
        .map(|v| parse_volume(v))
        .collect::<Result<Vec<_>, _>>()?;
    let mut tmpfs = input
        .tmpfs
        .iter()
        .map(|t| parse_tmpfs(t))
        .collect::<Result<Vec<_>, _>>()?;
    for m in &input.mount {
        match parse_mount(m)? {
            Mount::Bind(v) => volumes.push(v),
            Mount::Tmpfs(t) => tmpfs.push(t),
        }
    }
    crate::model::mounts::check_targets(
        volumes
            .iter()
            .map(|v| v.container.as_path())
            .chain(tmpfs.iter().map(|t| t.destination.as_path())),
    )?;
    // Each volume is one fd in the message that carries the rootfs and
    // the layer's directory (and a bridged container's /etc files) to
    // the container.
    let etc_files = match network {
        Network::Bridge { .. } => crate::sys::net::dns::FILES.len(),
        Network::None | Network::Container(_) => 0,
    };
    let most = crate::sys::idmap::MAX_FDS - 2 - etc_files;
    if volumes.len() > most {
        return Err(Error::TooManyVolumes {
            given: volumes.len(),
            most,
        }
        .into());
    }
    Ok((volumes, tmpfs))
}

/// The rootfs names `image` can pull (`engine run busybox ...`), in the
/// order messages list them.
pub const CATALOG: [&str; 3] = ["busybox", "debian", "centos"];

/// Whether `name` is a catalog name.
pub fn is_catalog_name(name: &str) -> bool {
    CATALOG.contains(&name)
}

fn parse_rootfs(arg: &str) -> Result<RootfsSource, Error> {
    if arg.is_empty() {
        return Err(Error::NoRootfs);
    }
    if !arg.contains('/') && is_catalog_name(arg) {
        return Ok(RootfsSource::Catalog(arg.to_string()));
    }
    if ["oci:", "oci-archive:", "docker-archive:"]
        .iter()
        .any(|t| arg.starts_with(t))
    {
        return Ok(RootfsSource::Image(arg.to_string()));
    }
    Ok(RootfsSource::Dir(PathBuf::from(arg)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(rootfs: &str) -> SpecInput {
        SpecInput {
            rootfs: rootfs.into(),
            userns: "auto".into(),
            net: "none".into(),
            ..SpecInput::default()
        }
    }

    fn cfg() -> Config {
        Config {
            state_dir: "/nonexistent/state".into(),
            data_dir: "/nonexistent/data".into(),
            bridge: "engine0".into(),
            subnet: "192.168.1.0/24".into(),
            cgroup_root: "/nonexistent/cgroup".into(),
            rootfs_cache: "/nonexistent/cache".into(),
        }
    }

    #[test]
    fn parse_touches_nothing_on_the_host() {
        // Neither the rootfs nor the volume exists: parsing does not look.
        let mut i = input("debian");
        i.volumes = vec!["/nonexistent-engine-test:/data".into()];
        let r = Request::parse(i, &cfg(), || 0).unwrap();
        assert_eq!(r.rootfs, RootfsSource::Catalog("debian".into()));
        assert_eq!(
            Request::parse(input("./debian"), &cfg(), || 0)
                .unwrap()
                .rootfs,
            RootfsSource::Dir("./debian".into())
        );
    }

    #[test]
    fn bad_input_is_refused() {
        let bad: [fn(&mut SpecInput); 12] = [
            |i| i.publish = vec!["8080:80".into()],
            |i| i.dns = vec!["192.0.2.1".into()],
            |i| i.add_host = vec!["db:192.0.2.1".into()],
            |i| i.layer_size = Some("1M".into()),
            |i| i.layer_size = Some("lots".into()),
            |i| i.cpus = Some("abc".into()),
            |i| i.memory = Some("5M".into()),
            |i| i.name = Some("-x".into()),
            |i| i.net = "nat".into(),
            |i| i.env = vec!["=x".into()],
            |i| i.workdir = Some("rel".into()),
            |i| i.command = vec![String::new()],
        ];
        for (n, change) in bad.iter().enumerate() {
            let mut i = input("debian");
            change(&mut i);
            assert!(Request::parse(i, &cfg(), || 0).is_err(), "case {n}");
        }
    }
}
