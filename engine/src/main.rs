//! The `engine` command line: parse, call the library, map errors to exit codes.

use clap::{Args, Parser, Subcommand};
use engine::config::Config;
use engine::exit;
use engine::launch::ExitError;
use engine::spec::{Spec, SpecInput};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "engine",
    version,
    about = "A small, fast Linux container engine: namespaces, cgroup v2, bridge networking",
    after_help = "Environment: ENGINE_STATE_DIR (/run/engine), ENGINE_BRIDGE (engine0), ENGINE_SUBNET (192.168.1.0/24), ENGINE_CGROUP_ROOT (/sys/fs/cgroup/engine), ENGINE_ROOTFS_CACHE (/var/lib/engine/rootfs)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a command in a new container
    Run(RunArgs),
    /// Create the bridge, turn on forwarding and prepare the parent cgroup (idempotent)
    Setup,
    /// Remove the bridge and restore forwarding (idempotent)
    Teardown {
        /// Stop running containers first instead of refusing
        #[arg(long)]
        force: bool,
    },
    /// Manage root filesystems
    #[command(subcommand)]
    Rootfs(RootfsCommand),
}

#[derive(Args)]
#[command(
    after_help = "Exit status: the command's own; 128+N when it was killed by signal N; 125 engine error; 126 command not executable; 127 command not found.\n\nExamples:\n  engine run busybox                       an interactive shell in a busybox rootfs\n  engine run ./centos web 192.168.1.10     the old container_engine usage\n  engine run --cpus 0.5 --memory 50M --net none busybox -- sh -c 'echo hi'"
)]
struct RunArgs {
    /// A directory holding a root filesystem, or a catalog name (busybox, debian, centos)
    rootfs: String,
    /// Container name and default hostname (generated when omitted)
    name: Option<String>,
    /// The container's address on the bridge, e.g. 192.168.1.10 or 192.168.1.10/24
    ip: Option<String>,
    /// The command and its arguments (default: /bin/bash if present, else /bin/sh)
    #[arg(last = true)]
    command: Vec<String>,
    /// CPU limit in CPUs, e.g. 0.5
    #[arg(long)]
    cpus: Option<String>,
    /// Memory limit, e.g. 50M, 512k, 1G (swap is disabled)
    #[arg(long, short = 'm')]
    memory: Option<String>,
    /// Maximum number of processes
    #[arg(long)]
    pids_limit: Option<String>,
    /// Hostname (default: the name)
    #[arg(long)]
    hostname: Option<String>,
    /// Set an environment variable (KEY=VAL, or KEY to pass the host's value)
    #[arg(long, short = 'e', value_name = "KEY=VAL")]
    env: Vec<String>,
    /// Working directory inside the container
    #[arg(long, short = 'w', value_name = "DIR")]
    workdir: Option<String>,
    /// Bind mount a host path: HOST:CONTAINER[:ro]
    #[arg(long, short = 'v', value_name = "HOST:CONTAINER[:ro]")]
    volume: Vec<String>,
    /// Allocate a pseudo-terminal (default: when stdin is a terminal)
    #[arg(long, short = 't', num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    tty: Option<bool>,
    /// User namespace: auto (base = owner of ROOTFS), host (none), or a numeric base
    #[arg(long, default_value = "auto")]
    userns: String,
    /// Network: bridge (a veth on ENGINE_BRIDGE) or none (only lo)
    #[arg(long, default_value = "bridge")]
    net: String,
    /// Write straight into ROOTFS instead of a throwaway copy-on-write layer
    #[arg(long)]
    write_through: bool,
    /// Say what the engine does, step by step
    #[arg(long)]
    verbose: bool,
}

#[derive(Subcommand)]
enum RootfsCommand {
    /// Download (or build) a root filesystem, verify and unpack it into DEST
    Pull {
        /// A catalog name (busybox, debian, centos) or an http(s)/file URL of a .tar.xz/.tar.gz/.tar
        source: String,
        /// Where to unpack it (must not exist)
        dest: PathBuf,
        /// amd64 or arm64 (default: the host's)
        #[arg(long)]
        arch: Option<String>,
        /// Expected sha256 of the download, in hex
        #[arg(long)]
        sha256: Option<String>,
        /// Shift file ownership by this base, for an unprivileged user namespace (e.g. 100000)
        #[arg(long)]
        owner: Option<u32>,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::ENGINE_ERROR
            } else {
                0
            };
            let _ = e.print();
            return ExitCode::from(code as u8);
        }
    };
    match dispatch(cli) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(err) => {
            let code = match err.downcast_ref::<ExitError>() {
                Some(e) => e.code,
                None => exit::ENGINE_ERROR,
            };
            eprintln!("engine: {err:#}");
            ExitCode::from(code as u8)
        }
    }
}

fn dispatch(cli: Cli) -> anyhow::Result<i32> {
    let cfg = Config::from_env();
    match cli.command {
        Command::Run(a) => {
            let input = SpecInput {
                rootfs: a.rootfs,
                name: a.name,
                ip: a.ip,
                command: a.command,
                cpus: a.cpus,
                memory: a.memory,
                pids_limit: a.pids_limit,
                hostname: a.hostname,
                env: a.env,
                workdir: a.workdir,
                volumes: a.volume,
                tty: a.tty,
                userns: a.userns,
                net: a.net,
                write_through: a.write_through,
                verbose: a.verbose,
            };
            let spec = Spec::from_input(input, &cfg)?;
            engine::launch::run(&spec, &cfg)
        }
        Command::Setup => {
            engine::host::setup(&cfg)?;
            Ok(0)
        }
        Command::Teardown { force } => {
            engine::host::teardown(&cfg, force)?;
            Ok(0)
        }
        Command::Rootfs(RootfsCommand::Pull {
            source,
            dest,
            arch,
            sha256,
            owner,
        }) => {
            let opts = engine::rootfs::PullOptions {
                arch,
                sha256,
                owner,
                progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
            };
            engine::rootfs::pull(&source, &dest, &opts)?;
            eprintln!("engine: unpacked {source} into {}", dest.display());
            Ok(0)
        }
    }
}
