//! `vm`: runs a command in a QEMU guest and exits with its exit code
//! (125 when the guest itself fails).

use clap::Parser;
use std::path::PathBuf;
use std::time::Duration;

/// Boot a QEMU guest on the host's own files and run COMMAND in it as root,
/// in the same working directory, with cgroup v2 and no network device.
#[derive(Parser)]
#[command(name = "vm", version)]
struct Cli {
    /// Guest architecture: amd64 or arm64 [default: the host's]
    #[arg(long)]
    arch: Option<String>,
    /// auto (KVM if it works here, else TCG), kvm or tcg
    #[arg(long, default_value = "auto")]
    accel: String,
    /// Guest memory, e.g. 2G or 512M
    #[arg(long, default_value = "2G")]
    memory: String,
    /// Guest CPUs
    #[arg(long, default_value_t = 2)]
    cpus: u32,
    /// Kill the guest after this many seconds (an error)
    #[arg(long, default_value_t = 600.0)]
    timeout: f64,
    /// Kernel image to boot instead of the distribution's package
    #[arg(long)]
    kernel: Option<PathBuf>,
    /// KEY=VAL exported to the command; KEY alone passes the host's value
    #[arg(short = 'e', long = "env", value_name = "KEY=VAL")]
    env: Vec<String>,
    /// Host directory shared read-write at the same path (repeatable)
    #[arg(long, value_name = "DIR")]
    writable: Vec<PathBuf>,
    /// Working directory of the command [default: the current one]
    #[arg(short = 'w', long)]
    workdir: Option<PathBuf>,
    /// The command and its arguments (after `--`)
    #[arg(required = true, last = true, value_name = "COMMAND")]
    command: Vec<String>,
}

fn config(cli: &Cli) -> anyhow::Result<vm::VmConfig> {
    let mut cfg = vm::VmConfig::default();
    if let Some(arch) = &cli.arch {
        cfg.arch = arch.parse()?;
    }
    cfg.accel = cli.accel.parse()?;
    cfg.memory = cli.memory.clone();
    cfg.cpus = cli.cpus;
    if !(cli.timeout.is_finite() && cli.timeout > 0.0) {
        anyhow::bail!(
            "timeout {} is not valid: give a number of seconds",
            cli.timeout
        );
    }
    cfg.timeout = Duration::from_secs_f64(cli.timeout);
    cfg.kernel = cli.kernel.clone();
    if let Some(w) = &cli.workdir {
        cfg.workdir = std::path::absolute(w)?;
    }
    for e in &cli.env {
        match e.split_once('=') {
            Some((k, v)) => cfg.env.push((k.into(), v.into())),
            None => {
                if let Ok(v) = std::env::var(e) {
                    cfg.env.push((e.clone(), v));
                }
            }
        }
    }
    cfg.writable = cli.writable.clone();
    Ok(cfg)
}

fn main() {
    // Usage errors are the runner's own failure: 125, as docker does.
    let cli = Cli::try_parse().unwrap_or_else(|e| {
        let code = if e.use_stderr() { 125 } else { 0 };
        let _ = e.print();
        std::process::exit(code);
    });
    let result = config(&cli).and_then(|cfg| vm::run(&cfg, &cli.command));
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("vm: {e:#}");
            std::process::exit(125);
        }
    }
}
