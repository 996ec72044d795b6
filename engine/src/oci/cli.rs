//! runc's command line: global flags before the verb (`--flag=value` and
//! `--flag value`), the verbs podman/conmon and containerd's shim call, and
//! errors as one line on stderr plus, with `--log-format json`, one JSON
//! object in the `--log` file.

use super::{CreateOptions, Root};
use crate::model::config::Config;
use clap::{Parser, Subcommand};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Global flags that only runc's command line has: one of them before the
/// verb means OCI mode (see `is_oci_invocation`).
pub const GLOBAL_FLAGS: [&str; 7] = [
    "--root",
    "--cgroup-manager",
    "--log",
    "--log-format",
    "--systemd-cgroup",
    "--debug",
    "--rootless",
];

/// Verbs only the OCI command line has.
pub const OCI_ONLY_VERBS: [&str; 9] = [
    "create", "start", "state", "delete", "pause", "resume", "features", "spec", "update",
];

/// Whether argv is runc's command line rather than the engine's own: a
/// runc global flag before the verb, a verb only OCI has, `run` with
/// `--bundle`/`-b`, or a binary named like runc (`runc`, `engine-runc`).
pub fn is_oci_invocation(args: &[String]) -> bool {
    let argv0 = args
        .first()
        .map(|a| a.rsplit('/').next().unwrap_or(a).to_string())
        .unwrap_or_default();
    // Installed as (or linked to) `runc`, `engine-runc`...: a tool that
    // knows only runc's command line. Any other name (a copy, a versioned
    // build) is told apart by its arguments.
    if argv0.ends_with("runc") {
        return true;
    }
    let Some(first) = args.get(1) else {
        return false;
    };
    let flag = first.split('=').next().unwrap_or(first);
    if GLOBAL_FLAGS.contains(&flag) {
        return true;
    }
    if OCI_ONLY_VERBS.contains(&first.as_str()) {
        return true;
    }
    if first == "run"
        && args[2..]
            .iter()
            .any(|a| a == "-b" || a == "--bundle" || a.starts_with("--bundle="))
    {
        return true;
    }
    // podman calls `kill ID 15`, `exec ... ID` with no global flag: such a
    // verb goes to OCI when it names a container of the default --root
    // (`run` never does: `engine run NAME` stays the engine's).
    matches!(first.as_str(), "kill" | "exec" | "ps")
        && args[2..].iter().any(|a| {
            !a.starts_with('-')
                && super::check_id(a).is_ok()
                && Path::new(super::DEFAULT_ROOT)
                    .join(a)
                    .join("state.json")
                    .exists()
        })
}

#[derive(Parser)]
#[command(
    name = "engine",
    version,
    about = "The engine as an OCI runtime (runc's command line)",
    disable_help_subcommand = true
)]
struct OciCli {
    /// State directory of OCI containers
    #[arg(long, default_value = super::DEFAULT_ROOT)]
    root: PathBuf,
    /// Where errors are logged (as well as stderr)
    #[arg(long)]
    log: Option<PathBuf>,
    /// text or json
    #[arg(long, default_value = "text")]
    log_format: String,
    /// Accepted; cgroupfs paths are used
    #[arg(long)]
    systemd_cgroup: bool,
    #[arg(long)]
    debug: bool,
    /// crun's flag (podman passes `disabled` with --cgroups=disabled): cgroupfs, systemd or disabled
    #[arg(long)]
    cgroup_manager: Option<String>,
    /// Accepted and ignored (the engine runs as root)
    #[arg(long, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    rootless: Option<String>,
    #[command(subcommand)]
    verb: Verb,
}

#[derive(clap::Args, Debug)]
struct CreateArgs {
    #[arg(long, short = 'b', default_value = ".")]
    bundle: PathBuf,
    #[arg(long)]
    pid_file: Option<PathBuf>,
    #[arg(long)]
    console_socket: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    preserve_fds: u32,
    #[arg(long)]
    no_pivot: bool,
    #[arg(long)]
    no_new_keyring: bool,
    id: String,
}

#[derive(Subcommand)]
enum Verb {
    /// Create a container from a bundle; its process waits for `start`
    Create(CreateArgs),
    /// Start a created container
    Start { id: String },
    /// Print a container's state as JSON
    State { id: String },
    /// Send a signal to the container's init (or to all its processes)
    Kill {
        #[arg(long, short = 'a')]
        all: bool,
        id: String,
        #[arg(default_value = "SIGTERM")]
        signal: String,
    },
    /// Delete a stopped (or, with --force, any) container
    Delete {
        #[arg(long, short = 'f')]
        force: bool,
        id: String,
    },
    /// Create and start a container, wait for it, delete it
    Run {
        #[command(flatten)]
        args: CreateArgs,
        #[arg(long, short = 'd')]
        detach: bool,
    },
    /// Run a process in a running container
    Exec(super::exec::ExecArgs),
    /// The container's processes
    Ps {
        #[arg(long, short = 'f', default_value = "table")]
        format: String,
        id: String,
    },
    /// The runtime-spec features JSON
    Features,
    /// Freeze a container (cgroup v2 freezer)
    Pause { id: String },
    /// Thaw a paused container
    Resume { id: String },
}

/// Entry point of OCI mode; returns the exit code.
pub fn main(args: Vec<String>) -> i32 {
    let cli = match OciCli::try_parse_from(&args) {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    if cli.systemd_cgroup || cli.cgroup_manager.as_deref() == Some("systemd") {
        eprintln!("engine: --systemd-cgroup: systemd is not driven; cgroupfs paths are used");
    }
    let log = Log {
        file: cli.log.clone(),
        json: cli.log_format == "json",
    };
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            let msg = format!("{e:#}");
            eprintln!("engine: {msg}");
            log.error(&msg);
            match e.downcast_ref::<crate::parent::ExitError>() {
                Some(x)
                    if x.code == crate::model::exit::NOT_FOUND
                        || x.code == crate::model::exit::NOT_EXECUTABLE =>
                {
                    x.code
                }
                _ => 1,
            }
        }
    }
}

struct Log {
    file: Option<PathBuf>,
    json: bool,
}

impl Log {
    /// One JSON object (podman reads the whole file as one) or one line.
    fn error(&self, msg: &str) {
        let Some(path) = &self.file else { return };
        let line = if self.json {
            serde_json::json!({"level": "error", "msg": msg, "time": super::now_rfc3339()})
                .to_string()
        } else {
            format!(
                "time=\"{}\" level=error msg=\"{}\"",
                super::now_rfc3339(),
                msg.replace('"', "\\\"")
            )
        };
        if let Ok(mut f) = std::fs::File::options()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{line}");
        }
    }
}

fn create_options(a: &CreateArgs) -> CreateOptions {
    CreateOptions {
        bundle: a.bundle.clone(),
        pid_file: a.pid_file.clone(),
        console_socket: a.console_socket.clone(),
        preserve_fds: a.preserve_fds,
    }
}

fn dispatch(cli: OciCli) -> anyhow::Result<i32> {
    let cfg = Config::from_env();
    let root = Root::new(&cli.root);
    match cli.verb {
        Verb::Create(a) => {
            super::create(&root, &cfg, &a.id, &create_options(&a))?;
            Ok(0)
        }
        Verb::Start { id } => super::start(&root, &id).map(|_| 0),
        Verb::State { id } => {
            let rec = root.load(&id)?;
            println!(
                "{}",
                serde_json::to_string_pretty(&super::state_json(&root, &rec))?
            );
            Ok(0)
        }
        Verb::Kill { all, id, signal } => super::kill(&root, &id, &signal, all).map(|_| 0),
        Verb::Delete { force, id } => super::delete(&root, &id, force).map(|_| 0),
        Verb::Run { args, detach } => {
            let opts = create_options(&args);
            if detach {
                super::create(&root, &cfg, &args.id, &opts)?;
                super::start(&root, &args.id)?;
                return Ok(0);
            }
            super::run(&root, &cfg, &args.id, &opts)
        }
        Verb::Exec(a) => super::exec::exec(&root, a),
        Verb::Ps { format, id } => {
            let pids = super::ps(&root, &id)?;
            match format.as_str() {
                "json" => println!("{}", serde_json::to_string(&pids)?),
                "table" => {
                    println!("PID");
                    for p in pids {
                        println!("{p}");
                    }
                }
                other => anyhow::bail!("unknown --format {other:?}: use table or json"),
            }
            Ok(0)
        }
        Verb::Features => {
            println!("{}", serde_json::to_string_pretty(&super::features())?);
            Ok(0)
        }
        Verb::Pause { id } => super::pause_resume(&root, &id, true).map(|_| 0),
        Verb::Resume { id } => super::pause_resume(&root, &id, false).map(|_| 0),
    }
}
