//! runc's command line, the binary's second front end beside main.rs:
//! global flags before the verb (`--flag=value` and `--flag value`), the
//! verbs podman/conmon and containerd's shim call, each a call of the
//! facade's `oci_*` verbs, and errors as one line on stderr plus, with
//! `--log-format json`, one JSON object in the `--log` file. runc's exit
//! codes: 1 for any failure, but 126/127 for a command that cannot run.

use clap::{Parser, Subcommand};
use engine::{Config, Error, OciCreateOptions, OciExecOptions};
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
pub const OCI_ONLY_VERBS: [&str; 8] = [
    "create", "state", "delete", "pause", "resume", "features", "spec", "update",
];

/// Whether argv is runc's command line rather than the engine's own: a
/// runc global flag before the verb, a verb only OCI has, `run` with
/// `--bundle`/`-b`, or a binary named like runc (`runc`, `engine-runc`).
pub fn is_oci_invocation(args: &[String]) -> bool {
    picks_oci(args, |id| {
        Path::new(engine::oci::DEFAULT_ROOT)
            .join(id)
            .join("state.json")
            .exists()
    })
}

/// Whether `run`'s options (the words before its first positional: OCI's
/// container ID, or the native rootfs, after which everything is the
/// container's command) include runc's `-b`/`--bundle`. Only OCI's
/// value-taking options are skipped with their value: a native option's
/// value ends the scan early, which keeps the word native.
fn run_has_a_bundle(words: &[String]) -> bool {
    const OCI_RUN_VALUES: [&str; 5] = [
        "-b",
        "--bundle",
        "--console-socket",
        "--pid-file",
        "--preserve-fds",
    ];
    let mut words = words.iter();
    while let Some(w) = words.next() {
        if w == "-b" || w == "--bundle" || w.starts_with("--bundle=") {
            return true;
        }
        if !w.starts_with('-') || w == "--" {
            return false;
        }
        if OCI_RUN_VALUES.contains(&w.as_str()) {
            words.next();
        }
    }
    false
}

/// The dispatch rule, with the one question it asks the host (is there a
/// container of this ID in the default --root?) passed in.
fn picks_oci(args: &[String], oci_container_exists: impl Fn(&str) -> bool) -> bool {
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
    if first == "run" && run_has_a_bundle(&args[2..]) {
        return true;
    }
    // podman calls `kill ID 15`, `exec ... ID` with no global flag: such a
    // verb goes to OCI when it names a container of the default --root
    // (`run` never does: `engine run NAME` stays the engine's). `start` is
    // also the engine's own (of an exited detached container).
    matches!(first.as_str(), "kill" | "exec" | "ps" | "start")
        && args[2..].iter().any(|a| {
            !a.starts_with('-') && engine::oci::check_id(a).is_ok() && oci_container_exists(a)
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
    #[arg(long, default_value = engine::oci::DEFAULT_ROOT)]
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

#[derive(clap::Args, Debug)]
struct ExecArgs {
    /// A runtime-spec Process JSON file
    #[arg(long, short = 'p')]
    process: Option<PathBuf>,
    /// Return once the process has started
    #[arg(long, short = 'd')]
    detach: bool,
    #[arg(long)]
    pid_file: Option<PathBuf>,
    #[arg(long, short = 't')]
    tty: bool,
    #[arg(long)]
    console_socket: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    preserve_fds: u32,
    #[arg(long)]
    cwd: Option<PathBuf>,
    #[arg(long, short = 'e')]
    env: Vec<String>,
    id: String,
    /// The command (without --process)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

impl ExecArgs {
    fn options(self) -> OciExecOptions {
        OciExecOptions {
            process: self.process,
            detach: self.detach,
            pid_file: self.pid_file,
            tty: self.tty,
            console_socket: self.console_socket,
            preserve_fds: self.preserve_fds,
            cwd: self.cwd,
            env: self.env,
            id: self.id,
            command: self.command,
        }
    }
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
    Exec(ExecArgs),
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
    /// Write runc's default config.json into the bundle
    Spec {
        #[arg(long, short = 'b', default_value = ".")]
        bundle: PathBuf,
        /// runc's config for a user without privileges (a user namespace)
        #[arg(long)]
        rootless: bool,
    },
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
            let msg = e.to_string();
            eprintln!("engine: {msg}");
            log.error(&msg);
            exit_code(&e)
        }
    }
}

/// runc's: 1 for any failure, but the shell's 126 and 127 for a command
/// that cannot be executed or was not found (podman tells them apart).
fn exit_code(e: &Error) -> i32 {
    match e.exit_code() {
        code @ (engine::exit::NOT_EXECUTABLE | engine::exit::NOT_FOUND) => code,
        _ => 1,
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
            serde_json::json!({"level": "error", "msg": msg, "time": engine::oci::now_rfc3339()})
                .to_string()
        } else {
            format!(
                "time=\"{}\" level=error msg=\"{}\"",
                engine::oci::now_rfc3339(),
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

fn create_options(a: &CreateArgs) -> OciCreateOptions {
    OciCreateOptions {
        bundle: a.bundle.clone(),
        pid_file: a.pid_file.clone(),
        console_socket: a.console_socket.clone(),
        preserve_fds: a.preserve_fds,
    }
}

fn print_json(value: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}

fn dispatch(cli: OciCli) -> Result<i32, Error> {
    let cfg = Config::from_env();
    let root = cli.root.as_path();
    match cli.verb {
        Verb::Create(a) => engine::oci_create(root, &cfg, &a.id, &create_options(&a)).map(|_| 0),
        Verb::Start { id } => engine::oci_start(root, &id).map(|_| 0),
        Verb::State { id } => {
            print_json(&engine::oci_state(root, &id)?);
            Ok(0)
        }
        Verb::Kill { all, id, signal } => engine::oci_kill(root, &id, &signal, all).map(|_| 0),
        Verb::Delete { force, id } => engine::oci_delete(root, &id, force).map(|_| 0),
        Verb::Run { args, detach } => {
            engine::oci_run(root, &cfg, &args.id, &create_options(&args), detach)
        }
        Verb::Exec(a) => engine::oci_exec(root, &a.options()),
        Verb::Ps { format, id } => {
            if format != "json" && format != "table" {
                return Err(Error::Input(format!(
                    "unknown --format {format:?}: use table or json"
                )));
            }
            let pids = engine::oci_ps(root, &id)?;
            if format == "json" {
                println!("{}", serde_json::Value::from(pids));
            } else {
                println!("PID");
                for p in pids {
                    println!("{p}");
                }
            }
            Ok(0)
        }
        Verb::Features => {
            print_json(&engine::oci_features());
            Ok(0)
        }
        Verb::Pause { id } => engine::oci_pause(root, &id).map(|_| 0),
        Verb::Resume { id } => engine::oci_resume(root, &id).map(|_| 0),
        Verb::Spec { bundle, rootless } => engine::oci_spec(&bundle, rootless).map(|_| 0),
    }
}

#[cfg(test)]
mod tests {
    use super::picks_oci;

    /// Which command line each argv gets, with `oci-ctr` the one container
    /// of the default --root.
    #[test]
    fn the_dispatch_rule() {
        let table: &[(&str, bool)] = &[
            // The binary's name.
            ("/usr/bin/runc --help", true),
            ("engine-runc state x", true),
            ("/usr/local/bin/engine run busybox", false),
            ("engine-1.2 run busybox", false),
            ("engine", false),
            // runc's global flags, both spellings.
            ("engine --root /run/x list", true),
            ("engine --root=/run/x state c", true),
            ("engine --log-format json create c", true),
            ("engine --systemd-cgroup create c", true),
            ("engine --rootless=false delete c", true),
            ("engine --debug start c", true),
            // Verbs only OCI has.
            ("engine create c", true),
            ("engine state c", true),
            ("engine delete c", true),
            ("engine pause c", true),
            ("engine resume c", true),
            ("engine features", true),
            ("engine spec", true),
            ("engine update c", true),
            // `run` is OCI's only with a bundle.
            ("engine run -b /b c", true),
            ("engine run --bundle /b c", true),
            ("engine run --bundle=/b c", true),
            ("engine run busybox oci-ctr", false),
            ("engine run -d busybox", false),
            ("engine run --pid-file /p -d --bundle /b c", true),
            ("engine run --console-socket /s -b /b c", true),
            // ... and only before the first positional: after the rootfs
            // it is the container's command.
            ("engine run busybox ls -b", false),
            ("engine run --name web busybox tar --bundle x", false),
            ("engine run busybox -- -b", false),
            // kill, exec and ps: OCI's when they name an OCI container.
            ("engine kill oci-ctr 15", true),
            ("engine exec --process p.json oci-ctr", true),
            ("engine ps --format json oci-ctr", true),
            ("engine kill web", false),
            ("engine exec web -- true", false),
            ("engine ps", false),
            ("engine kill -s TERM web", false),
            ("engine start oci-ctr", true),
            ("engine start web", false),
            // The engine's own verbs.
            ("engine stop oci-ctr", false),
            ("engine logs oci-ctr", false),
            ("engine setup", false),
            ("engine rootfs pull busybox /tmp/b", false),
        ];
        for (argv, want) in table {
            let args: Vec<String> = argv.split(' ').map(String::from).collect();
            assert_eq!(
                picks_oci(&args, |id| id == "oci-ctr"),
                *want,
                "{argv}: runc's command line should {}be chosen",
                if *want { "" } else { "not " }
            );
        }
    }
}
