//! The `engine` command line: parse, call the facade (`engine::*`), map its
//! typed error to an exit code. No input checks here: the facade does them.

mod cli;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use engine::{exit, Config, Error, PsRow, SpecInput};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "engine",
    version,
    about = "A small, fast Linux container engine: namespaces, cgroup v2, bridge networking",
    after_help = "Environment: ENGINE_STATE_DIR (/run/engine), ENGINE_DATA_DIR (/var/lib/engine/containers), ENGINE_BRIDGE (engine0), ENGINE_SUBNET (192.168.1.0/24), ENGINE_CGROUP_ROOT (/sys/fs/cgroup/engine), ENGINE_ROOTFS_CACHE (/var/lib/engine/rootfs)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

const RUN_ABOUT: &str = "Run a command in a new container";
const EXEC_ABOUT: &str = "Run a command inside a running container";

#[derive(Subcommand)]
enum Command {
    #[command(about = RUN_ABOUT)]
    Run(Box<RunArgs>),
    /// Create the bridge, turn on forwarding and prepare the parent cgroup (idempotent)
    Setup,
    /// Remove the bridge and restore forwarding (idempotent)
    Teardown {
        /// Stop running containers first instead of refusing
        #[arg(long)]
        force: bool,
    },
    #[command(about = EXEC_ABOUT)]
    Exec(ExecArgs),
    /// List running containers (-a: and the exited ones kept until `engine rm`)
    Ps {
        /// Also list the detached containers that have exited
        #[arg(long, short = 'a')]
        all: bool,
        /// Print only the names
        #[arg(long, short = 'q')]
        quiet: bool,
        /// name=PART or status=running|exited (repeatable)
        #[arg(long, value_name = "KEY=VALUE")]
        filter: Vec<String>,
        /// Show every field in the table
        #[arg(long)]
        all_fields: bool,
        /// table, json (stable: an array of objects, see README), or a template: '{{.Names}} {{.Status}}', 'table {{.Names}}\t{{.Ports}}'
        #[arg(long, default_value = "table")]
        format: String,
    },
    /// Stop containers: SIGTERM, then SIGKILL after the grace period
    Stop {
        /// Grace period in seconds before SIGKILL
        #[arg(long, short = 't', default_value_t = 10)]
        time: u64,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Send a signal to a container's PID 1
    Kill {
        /// Signal name or number
        #[arg(long, short = 's', default_value = "KILL")]
        signal: String,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Wait for containers to end and print their exit status
    Wait {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Print what the engine keeps about containers, as JSON
    Inspect {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Start exited detached containers again, with the same settings
    Start {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove exited containers: their record and log
    Rm {
        /// Stop a running container first (SIGKILL)
        #[arg(long, short = 'f')]
        force: bool,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Print a detached container's output
    Logs {
        /// Follow the output until the container exits
        #[arg(long, short = 'f')]
        follow: bool,
        name: String,
    },
    /// Manage root filesystems
    #[command(subcommand)]
    Rootfs(RootfsCommand),
    /// Import an image into the store: oci:DIR[:NAME], oci-archive:FILE[:NAME], docker-archive:FILE
    Pull {
        reference: String,
        /// The platform to take from a multi-platform image (default: the host's)
        #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
        platform: Option<String>,
    },
    /// Check a user and password against a registry and save them for pulls
    #[command(
        after_help = "The credentials go to $REGISTRY_AUTH_FILE, else ${XDG_RUNTIME_DIR}/containers/auth.json (as podman writes them), mode 0600."
    )]
    Login {
        /// The user (asked on the terminal if not given)
        #[arg(long, short = 'u')]
        username: Option<String>,
        /// The password (seen by other users in the process list: prefer --password-stdin)
        #[arg(long, short = 'p')]
        password: Option<String>,
        /// Read the password from stdin
        #[arg(long)]
        password_stdin: bool,
        /// The registry: HOST[:PORT]
        host: String,
    },
    /// Remove a registry's saved credentials
    Logout {
        /// The registry: HOST[:PORT]
        host: String,
    },
    /// List the images in the store
    Images {
        /// table, or json
        #[arg(long, default_value = "table")]
        format: String,
    },
    /// Remove images (by name or ID) and the layers no other image uses
    Rmi {
        /// Remove an image even while a running container uses it (its layers stay until the container ends and `engine image prune` runs)
        #[arg(long, short = 'f')]
        force: bool,
        #[arg(required = true)]
        references: Vec<String>,
    },
    /// Manage images
    #[command(subcommand)]
    Image(ImageCommand),
    /// Print the engine's version, and the kernel and architecture it runs on
    Version,
    /// Print a shell completion script: engine completion bash > /etc/bash_completion.d/engine
    Completion {
        /// bash, zsh or fish
        #[arg(value_enum)]
        shell: cli::extras::Shell,
    },
    /// Write the man pages (engine-ctr.1, engine-ctr-run.1, ...) into DIR
    Man {
        /// Where to write them, e.g. /usr/local/share/man/man1
        dir: PathBuf,
    },
}

#[derive(Args)]
#[command(
    after_help = "Everything after NAME is the command: engine exec web ps -ef (a `--` before it is accepted)."
)]
struct ExecArgs {
    /// Keep stdin attached (accepted: the engine always relays it)
    #[arg(long, short = 'i')]
    interactive: bool,
    /// Allocate a pseudo-terminal (default: when stdin is a terminal)
    #[arg(long, short = 't', num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    tty: Option<bool>,
    /// Set an environment variable
    #[arg(long, short = 'e', value_name = "KEY=VAL")]
    env: Vec<String>,
    /// Working directory inside the container
    #[arg(long, short = 'w', value_name = "DIR")]
    workdir: Option<String>,
    /// Run as this user: USER[:GROUP], UID[:GID] (names from the container's /etc/passwd and /etc/group)
    #[arg(long, short = 'u', value_name = "USER[:GROUP]")]
    user: Option<String>,
    /// The running container
    name: String,
    /// The command and its arguments
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

#[derive(Args)]
#[command(
    after_help = "Everything after IMAGE|ROOTFS is the command, as in docker (a `--` before it is accepted). A foreground container is removed when it ends, with or without --rm.\n\nExit status: the command's own; 128+N when it was killed by signal N; 125 engine error; 126 command not executable; 127 command not found.\n\nExamples:\n  engine run busybox                       an interactive shell in a busybox rootfs\n  engine run busybox echo hello            one command\n  engine run --name web --ip 192.168.1.10 ./centos   a name and an address of your choice\n  engine run --cpus 0.5 --memory 50M --net none busybox sh -c 'echo hi'\n  engine run -d -p 8080:80 --name web busybox httpd -f -p 80   port 8080 of the host to port 80 of the container"
)]
struct RunArgs {
    /// Container name and default hostname (generated when omitted)
    #[arg(long)]
    name: Option<String>,
    /// The container's address on the bridge, e.g. 192.168.1.10 or 192.168.1.10/24 (default: the lowest free one)
    #[arg(long, value_name = "ADDRESS")]
    ip: Option<String>,
    /// Keep stdin attached (accepted: a foreground container always has it; a detached one never)
    #[arg(long, short = 'i')]
    interactive: bool,
    /// Remove the container when it ends (a foreground one always is; a detached one without --rm is kept, exited, until `engine rm`)
    #[arg(long)]
    rm: bool,
    /// CPU limit in CPUs, e.g. 0.5
    #[arg(long)]
    cpus: Option<String>,
    /// Memory limit, e.g. 50M, 512k, 1G (swap is disabled)
    #[arg(long, short = 'm')]
    memory: Option<String>,
    /// Maximum number of processes (default 4096 where cgroup v2 is available)
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
    /// User namespace: auto (a root-owned ROOTFS gets a leased ID range and an idmapped view; one pulled with --owner BASE maps 0 to BASE), host (none: privileged), or a numeric base of at least 65536 (no idmap)
    #[arg(long, default_value = "auto")]
    userns: String,
    /// Network: bridge (a veth on ENGINE_BRIDGE) or none (only lo)
    #[arg(long, visible_alias = "network", default_value = "bridge")]
    net: String,
    /// Publish a container port on the host: [HOSTIP:]HOSTPORT:CONTAINERPORT[/tcp|udp]
    #[arg(
        long,
        short = 'p',
        value_name = "[HOSTIP:]HOSTPORT:CONTAINERPORT[/PROTO]"
    )]
    publish: Vec<String>,
    /// A nameserver for the container's resolv.conf (replaces the host's)
    #[arg(long, value_name = "IP")]
    dns: Vec<String>,
    /// A search domain for the container's resolv.conf (replaces the host's)
    #[arg(long, value_name = "DOMAIN")]
    dns_search: Vec<String>,
    /// An entry for the container's /etc/hosts
    #[arg(long, value_name = "NAME:IP")]
    add_host: Vec<String>,
    /// Another name of the container for the containers on its bridge (their /etc/hosts)
    #[arg(long, value_name = "NAME")]
    network_alias: Vec<String>,
    /// Write straight into ROOTFS instead of a throwaway copy-on-write layer
    #[arg(long)]
    write_through: bool,
    /// Size of the tmpfs that holds the container's writes, e.g. 512M, 2G (default: a quarter of RAM)
    #[arg(long, value_name = "SIZE")]
    layer_size: Option<String>,
    /// Run in the background: print the name and return once the command has started
    #[arg(long, short = 'd')]
    detach: bool,
    /// Say what the engine does, step by step
    #[arg(long)]
    verbose: bool,
    /// Add a capability to the default 11 (a name such as NET_ADMIN, or ALL)
    #[arg(long, value_name = "CAP")]
    cap_add: Vec<String>,
    /// Drop a capability from the default 11 (a name, or ALL)
    #[arg(long, value_name = "CAP")]
    cap_drop: Vec<String>,
    /// No user namespace, every capability, no seccomp filter: container root IS host root
    #[arg(long)]
    privileged: bool,
    /// seccomp=unconfined, seccomp=PROFILE.json (docker's format), or no-new-privileges
    #[arg(long, value_name = "OPT")]
    security_opt: Vec<String>,
    /// Cap on a detached container's log (NAME.log and NAME.log.1 together), e.g. 10M (default)
    #[arg(long, value_name = "SIZE")]
    log_size_max: Option<String>,
    // docker's flags of issue 21 (dflags), kept in one block.
    /// Read environment variables from a file: KEY=VALUE lines, # comments, a bare KEY takes the caller's value (-e wins)
    #[arg(long, value_name = "FILE")]
    env_file: Vec<String>,
    /// Mount the rootfs read-only (/dev, /dev/shm, /proc, volumes and tmpfs mounts keep their own modes)
    #[arg(long)]
    read_only: bool,
    /// Mount a tmpfs: PATH[:OPTIONS], e.g. /run:size=64m,mode=1777 (default noexec,nosuid,nodev)
    #[arg(long, value_name = "PATH[:OPTIONS]")]
    tmpfs: Vec<String>,
    /// Mount: type=bind,source=HOST,target=PATH[,readonly] or type=tmpfs,target=PATH[,tmpfs-size=SIZE][,tmpfs-mode=MODE]
    #[arg(long, value_name = "type=bind|tmpfs,...")]
    mount: Vec<String>,
    /// Run a small init (the engine itself) as PID 1: it forwards signals to the command and reaps zombies
    #[arg(long)]
    init: bool,
    /// Run a detached container again when it ends: no, on-failure[:N], always, unless-stopped (`stop` ends it)
    #[arg(long, value_name = "POLICY")]
    restart: Option<String>,
    /// The image's Entrypoint replaced by this program (its Cmd dropped too; "" clears the Entrypoint)
    #[arg(long, value_name = "PROGRAM")]
    entrypoint: Option<String>,
    /// Run the command as USER[:GROUP], each a name (from the image's /etc/passwd and /etc/group) or a number (default: the image's User, else root)
    #[arg(long, short = 'u', value_name = "USER[:GROUP]")]
    user: Option<String>,
    /// When to pull IMAGE: missing (only when the store lacks it), always, or never
    #[arg(long, value_name = "WHEN")]
    pull: Option<String>,
    /// The platform to take from a multi-platform image when IMAGE is pulled (default: the host's)
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    platform: Option<String>,
    /// An image (a reference such as alpine or registry:5000/app:v1, an image ID, oci:DIR[:NAME], oci-archive:FILE[:NAME], docker-archive:FILE), a directory holding a root filesystem, or a catalog name (busybox, debian, centos)
    #[arg(value_name = "IMAGE|ROOTFS")]
    rootfs: String,
    /// The command and its arguments (default: /bin/bash if present, else /bin/sh)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

#[derive(Subcommand)]
enum ImageCommand {
    /// Print an image's record and config as JSON
    Inspect {
        #[arg(required = true)]
        references: Vec<String>,
    },
    /// Remove the layers no image references and no running container uses
    Prune,
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
        /// Shift file ownership by this base, for an unprivileged user namespace: a multiple of 65536, at least 65536, outside the engine's pool and the host's users and subuid/subgid ranges (e.g. 131072)
        #[arg(long)]
        owner: Option<u32>,
    },
}

fn main() -> ExitCode {
    // First, before anything else is touched: a detached container's
    // monitor stays small (at most 1 MiB resident, docs/containers.md).
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some(code) = engine::run_as_monitor(&argv) {
        return exit_code(code);
    }
    if let Some(code) = engine::run_as_restart(&argv) {
        return exit_code(code);
    }
    #[cfg(feature = "failpoints")]
    engine::sys::failpoint::setup();
    // Lossy: `args()` would panic on an argument that is not UTF-8.
    let args: Vec<String> = argv
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    // One binary, three command lines: the seed's when it is called by the
    // seed program's name, runc's when its global flags, its verbs or
    // `run --bundle` say so (see cli::oci::is_oci_invocation), else its own.
    if cli::seed::is_seed_invocation(&args) {
        return exit_code(cli::seed::main(&args));
    }
    if cli::oci::is_oci_invocation(&args) {
        return exit_code(cli::oci::main(args));
    }
    let mut tree = command_tree(args.get(1).map(String::as_str));
    let args = mark_command(args, &tree);
    let parsed = tree
        .try_get_matches_from_mut(&args)
        .and_then(|m| Cli::from_arg_matches(&m));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help, --version: clap's own text, on stdout.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            // `engine` alone: the list of commands, on stderr.
            let _ = e.print();
            return exit_code(exit::ENGINE_ERROR);
        }
        Err(e) => {
            eprintln!(
                "engine: {}",
                cli::errors::sentence(&e, &args, &Cli::command())
            );
            return exit_code(exit::ENGINE_ERROR);
        }
    };
    match dispatch(cli) {
        Ok(code) => exit_code(code),
        Err(err) => {
            eprintln!("engine: {err}");
            exit_code(err.exit_code())
        }
    }
}

fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(code.clamp(0, 255) as u8)
}

/// The command line's tree for `verb`: for `run` and `exec`, only that
/// verb's, as clap would build it (building every verb's arguments costs
/// a quarter of a millisecond of each start); else the whole.
fn command_tree(verb: Option<&str>) -> clap::Command {
    let top = || {
        clap::Command::new("engine")
            .subcommand_required(true)
            .arg_required_else_help(true)
    };
    match verb {
        Some("run") => top().subcommand(RunArgs::augment_args(
            clap::Command::new("run").about(RUN_ABOUT),
        )),
        Some("exec") => top().subcommand(ExecArgs::augment_args(
            clap::Command::new("exec").about(EXEC_ABOUT),
        )),
        _ => Cli::command(),
    }
}

/// docker's reading of `run` and `exec`: every word after the rootfs (the
/// name) is the command (see cli::split).
fn mark_command(args: Vec<String>, cli: &clap::Command) -> Vec<String> {
    let Some(verb) = args.get(1).cloned() else {
        return args;
    };
    match cli.find_subcommand(&verb) {
        Some(sub) if verb == "run" || verb == "exec" => cli::split::mark_command(args, 1, sub),
        _ => args,
    }
}

/// One verb of the command line: its arguments to the facade, the result to stdout.
fn dispatch(cli: Cli) -> Result<i32, Error> {
    let cfg = Config::from_env();
    match cli.command {
        Command::Run(a) => run(*a, &cfg),
        Command::Exec(a) => {
            // -i: the engine relays stdin anyway.
            let _accepted = a.interactive;
            engine::exec(
                engine::ExecInput {
                    name: a.name,
                    env: a.env,
                    workdir: a.workdir,
                    tty: a.tty.unwrap_or_else(|| std::io::stdin().is_terminal()),
                    command: a.command,
                    user: a.user,
                },
                &cfg,
            )
        }
        Command::Version => {
            print!("{}", cli::extras::version());
            Ok(0)
        }
        Command::Completion { shell } => {
            cli::extras::completion(shell, Cli::command());
            Ok(0)
        }
        Command::Man { dir } => {
            for page in cli::extras::man_pages(Cli::command(), &dir)? {
                println!("{}", page.display());
            }
            Ok(0)
        }
        Command::Ps {
            all,
            quiet,
            filter,
            all_fields,
            format,
        } => ps(
            &cfg,
            &PsArgs {
                all,
                quiet,
                filter,
                all_fields,
            },
            &format,
        ),
        Command::Wait { names } => {
            for name in &names {
                println!("{}", engine::wait(&cfg, name)?);
            }
            Ok(0)
        }
        Command::Inspect { names } => {
            let records = engine::inspect(&cfg, &names)?;
            let text = serde_json::to_string_pretty(&records)
                .map_err(|e| Error::Engine(format!("cannot encode the records: {e}")))?;
            println!("{text}");
            Ok(0)
        }
        Command::Start { names } => {
            engine::start(&cfg, &names, |name| println!("{name}"))?;
            Ok(0)
        }
        Command::Rm { force, names } => {
            engine::rm(&cfg, &names, force, |name| println!("{name}"))?;
            Ok(0)
        }
        Command::Stop { time, names } => {
            engine::stop(&cfg, &names, Duration::from_secs(time), |name| {
                println!("{name}")
            })?;
            Ok(0)
        }
        Command::Kill { signal, names } => {
            engine::kill(&cfg, &names, &signal)?;
            Ok(0)
        }
        Command::Logs { follow, name } => {
            engine::logs(&cfg, &name, follow)?;
            Ok(0)
        }
        Command::Setup => {
            engine::setup(&cfg)?;
            Ok(0)
        }
        Command::Teardown { force } => {
            engine::teardown(&cfg, force)?;
            Ok(0)
        }
        Command::Pull {
            reference,
            platform,
        } => {
            let record = engine::image_pull(&reference, platform.as_deref())?;
            println!("{}", record.id);
            Ok(0)
        }
        Command::Login {
            username,
            password,
            password_stdin,
            host,
        } => cli::login::login(cli::login::LoginArgs {
            host,
            user: username,
            password,
            password_stdin,
        }),
        Command::Logout { host } => cli::login::logout(&host),
        Command::Images { format } => cli::images::list(&format),
        Command::Rmi { force, references } => {
            for reference in references {
                for line in engine::rmi(&reference, force)? {
                    println!("{line}");
                }
            }
            Ok(0)
        }
        Command::Image(ImageCommand::Prune) => {
            for layer in engine::image_prune()? {
                println!("Deleted: {layer}");
            }
            Ok(0)
        }
        Command::Image(ImageCommand::Inspect { references }) => {
            let found = references
                .iter()
                .map(|r| engine::image_inspect(r))
                .collect::<Result<Vec<_>, _>>()?;
            let text = serde_json::to_string_pretty(&found)
                .map_err(|e| Error::Engine(format!("cannot encode the images: {e}")))?;
            println!("{text}");
            Ok(0)
        }
        Command::Rootfs(RootfsCommand::Pull {
            source,
            dest,
            arch,
            sha256,
            owner,
        }) => {
            let opts = engine::PullOptions {
                arch,
                sha256,
                owner,
                progress: std::io::stderr().is_terminal(),
            };
            engine::pull(&source, &dest, &opts)?;
            eprintln!("engine: unpacked {source} into {}", dest.display());
            Ok(0)
        }
    }
}

/// `engine run`: the description from the flags, then run it (in the
/// foreground: its exit status; detached: its name once started).
fn run(a: RunArgs, cfg: &Config) -> Result<i32, Error> {
    // What -i asks docker for is what the engine does anyway; --rm
    // matters to a detached container (docs/cli.md says where it differs).
    let _accepted = a.interactive;
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
        publish: a.publish,
        dns: a.dns,
        dns_search: a.dns_search,
        add_host: a.add_host,
        network_alias: a.network_alias,
        write_through: a.write_through,
        layer_size: a.layer_size,
        verbose: a.verbose,
        detach: a.detach,
        rm: a.rm,
        security: engine::model::security::SecurityInput {
            cap_add: a.cap_add,
            cap_drop: a.cap_drop,
            privileged: a.privileged,
            security_opt: a.security_opt,
        },
        log_size_max: a.log_size_max,
        env_file: a.env_file,
        read_only: a.read_only,
        tmpfs: a.tmpfs,
        mount: a.mount,
        init: a.init,
        restart_policy: a.restart,
        entrypoint: a.entrypoint,
        user: a.user,
        pull: a.pull,
        platform: a.platform,
    };
    let spec = engine::prepare(input, cfg)?;
    if spec.detach {
        engine::run_detached(&spec, cfg)?;
        println!("{}", spec.name);
        return Ok(0);
    }
    engine::run(&spec, cfg)
}

/// The flags of `engine ps` besides --format.
struct PsArgs {
    all: bool,
    quiet: bool,
    filter: Vec<String>,
    all_fields: bool,
}

/// `engine ps`: the containers as a table, JSON or names; the records
/// that could not be read (and were released) on stderr.
fn ps(cfg: &Config, a: &PsArgs, format: &str) -> Result<i32, Error> {
    use cli::template::{Template, PS_FIELDS};
    let template = match format {
        "json" | "table" => None,
        f if f.contains("{{") => Some(Template::parse(f, &PS_FIELDS).map_err(Error::Input)?),
        _ => None,
    };
    let json = template.is_none() && cli::images::wants_json(format)?;
    let report = engine::ps(cfg, a.all, &a.filter)?;
    for file in &report.corrupt {
        eprintln!(
            "engine: state record {} is unreadable: released its cgroup, address and veth, and removed it",
            file.display()
        );
    }
    if a.quiet {
        for r in &report.rows {
            println!("{}", r.name);
        }
    } else if let Some(template) = template {
        let rows: Vec<Vec<String>> = report
            .rows
            .iter()
            .map(|r| PS_FIELDS.iter().map(|(f, _)| ps_field(r, f)).collect())
            .collect();
        print!("{}", template.render(&PS_FIELDS, &rows));
    } else if json {
        let text = serde_json::to_string_pretty(&report.rows)
            .map_err(|e| Error::Engine(format!("cannot encode the list: {e}")))?;
        println!("{text}");
    } else {
        print_ps_table(&report.rows, &report.corrupt, a.all_fields);
    }
    Ok(0)
}

/// A field of `ps --format '{{.Field}}'` as docker prints it. The engine
/// has no container ID apart from the name: .ID is the name.
fn ps_field(r: &PsRow, field: &str) -> String {
    match field {
        "ID" | "Names" => r.name.clone(),
        "Image" => r.rootfs.clone(),
        "Command" => format!("\"{}\"", r.command.join(" ")),
        "Status" => status_text(r),
        "State" => r.status.to_string(),
        "Ports" => r.ports.join(", "),
        "CreatedAt" => cli::template::utc_time(r.created),
        _ => String::new(),
    }
}

fn human_bytes(b: u64) -> String {
    match b {
        b if b >= 1 << 30 => format!("{:.1}G", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1}M", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1}k", b as f64 / 1024.0),
        b => format!("{b}"),
    }
}

/// docker's STATUS: `Up 5 seconds`, `Exited (3) 5 seconds ago`.
fn status_text(r: &PsRow) -> String {
    match r.finished {
        Some(finished) if r.status == "restarting" => format!(
            "Restarting ({}) {}",
            r.exit_code.unwrap_or(exit::ENGINE_ERROR),
            engine::ago(Some(finished))
        ),
        Some(finished) => format!(
            "Exited ({}) {}",
            r.exit_code.unwrap_or(exit::ENGINE_ERROR),
            engine::ago(Some(finished))
        ),
        None => {
            let ago = engine::ago(Some(r.started));
            format!("Up {}", ago.trim_end_matches(" ago"))
        }
    }
}

fn print_ps_table(rows: &[PsRow], corrupt: &[PathBuf], all: bool) {
    let dash = || "-".to_string();
    let mut table: Vec<Vec<String>> = Vec::new();
    let mut header = vec![
        "NAME",
        "PID",
        "ADDRESS",
        "IMAGE|ROOTFS",
        "COMMAND",
        "STATUS",
        "CPUS",
        "MEMORY",
        "MEM USAGE",
        "PORTS",
    ];
    if all {
        header.extend(["PIDS LIMIT", "ENGINE PID", "VETH", "CGROUP", "LOG"]);
    }
    table.push(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        let mut row = vec![
            r.name.clone(),
            r.pid.to_string(),
            r.ip.clone().unwrap_or_else(dash),
            r.image.clone().unwrap_or_else(|| r.rootfs.clone()),
            r.command.join(" "),
            status_text(r),
            r.cpus.map(|c| c.to_string()).unwrap_or_else(dash),
            r.memory_limit.map(human_bytes).unwrap_or_else(dash),
            r.memory_usage.map(human_bytes).unwrap_or_else(dash),
            if r.ports.is_empty() {
                dash()
            } else {
                r.ports.join(", ")
            },
        ];
        if all {
            row.extend([
                r.pids_limit.map(|p| p.to_string()).unwrap_or_else(dash),
                r.engine_pid.to_string(),
                r.veth.clone().unwrap_or_else(dash),
                r.cgroup.clone().unwrap_or_else(dash),
                r.log.clone().unwrap_or_else(dash),
            ]);
        } else if row[4].len() > 30 {
            row[4] = format!("{}...", &row[4].chars().take(27).collect::<String>());
        }
        table.push(row);
    }
    // An unreadable record gets a marker row (its name is the file's).
    for file in corrupt {
        let name = file.file_stem().unwrap_or_default().to_string_lossy();
        let mut row = vec![dash(); table[0].len()];
        row[0] = name.into_owned();
        row[4] = "(unreadable record, released)".into();
        table.push(row);
    }
    let widths: Vec<usize> = (0..table[0].len())
        .map(|i| {
            table
                .iter()
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in table {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
}
