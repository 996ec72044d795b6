//! `exec`: a process described by a runtime-spec Process JSON (`--process`)
//! or by the command line, joined into a running container the way `engine
//! exec` joins (`parent::exec::join_container`): pidfd, non-dumpable until
//! exec, the container's seccomp filter, the process's capabilities and
//! user; its environment exactly as given, no relays, the pty's master
//! sent to the console socket.

use super::{Record, Root, Status};
use crate::child;
use crate::model::bundle::User;
use crate::model::security::Confinement;
use crate::parent::exec::{join_container, JoinProcess, Target, Terminal};
use crate::sys::failpoint::step;
use anyhow::{anyhow, bail, Context, Result};
use std::path::PathBuf;

/// What `exec` is asked to run (runc's flags, unchecked).
#[derive(Debug, Default, Clone)]
pub struct ExecOptions {
    /// A runtime-spec Process JSON file.
    pub process: Option<PathBuf>,
    /// Return once the process has started.
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    pub tty: bool,
    pub console_socket: Option<PathBuf>,
    pub preserve_fds: u32,
    pub cwd: Option<PathBuf>,
    pub env: Vec<String>,
    pub id: String,
    /// The command (without `process`).
    pub command: Vec<String>,
}

struct Process {
    args: Vec<String>,
    env: Vec<(String, String)>,
    cwd: PathBuf,
    user: User,
    tty: bool,
    caps: Option<(
        crate::sys::caps::CapSet,
        crate::model::security::ProcessCaps,
    )>,
    no_new_privs: Option<bool>,
    rlimits: Vec<crate::model::bundle::Rlimit>,
}

fn read_process(a: &ExecOptions) -> Result<Process> {
    let Some(path) = &a.process else {
        if a.command.is_empty() {
            bail!("exec needs a command, or --process FILE");
        }
        let mut env = vec![(
            "PATH".to_string(),
            crate::model::env::DEFAULT_PATH.to_string(),
        )];
        for e in &a.env {
            let (k, v) = e
                .split_once('=')
                .ok_or_else(|| anyhow!("--env {e:?} is not KEY=VALUE"))?;
            env.push((k.into(), v.into()));
        }
        return Ok(Process {
            args: a.command.clone(),
            env,
            cwd: a.cwd.clone().unwrap_or_else(|| PathBuf::from("/")),
            user: User::default(),
            tty: a.tty,
            caps: None,
            no_new_privs: None,
            rlimits: Vec::new(),
        });
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read --process {}", path.display()))?;
    let p: oci_spec::runtime::Process = serde_json::from_str(&text).map_err(|e| {
        anyhow!(
            "--process {} is not a runtime-spec process: {e}",
            path.display()
        )
    })?;
    let args = p.args().clone().unwrap_or_default();
    if args.first().is_none_or(|a| a.is_empty()) {
        bail!("--process {}: args is empty", path.display());
    }
    let mut env = Vec::new();
    for e in p.env().clone().unwrap_or_default() {
        if let Some((k, v)) = e.split_once('=') {
            env.push((k.to_string(), v.to_string()));
        }
    }
    let user = super::config::user_of(&p)?;
    let caps = match p.capabilities() {
        Some(_) => Some(super::config::capabilities(p.capabilities().as_ref())?),
        None => None,
    };
    let rlimits = p
        .rlimits()
        .clone()
        .unwrap_or_default()
        .iter()
        .map(super::config::rlimit)
        .collect::<Result<Vec<_>>>()?;
    Ok(Process {
        args,
        env,
        cwd: p.cwd().clone(),
        user,
        tty: p.terminal().unwrap_or(false) || a.tty,
        caps,
        no_new_privs: p.no_new_privileges(),
        rlimits,
    })
}

/// Runs the exec; with `--detach` returns 0 once the process has started
/// (pid file written), else its exit status.
pub fn exec(root: &Root, a: &ExecOptions) -> Result<i32, super::Error> {
    step!("oci_exec.process");
    let process = read_process(a)?;
    step!("oci_exec.load");
    let rec = root.load(&a.id)?;
    let is = root.status(&rec);
    if is != Status::Running {
        return Err(super::Error::WrongState {
            verb: "exec in",
            id: a.id.clone(),
            is,
            wanted: Status::Running,
        });
    }
    if process.tty && a.console_socket.is_none() {
        return Err(anyhow!(
            "exec with a terminal needs --console-socket: the pty master needs somewhere to go"
        )
        .into());
    }
    if maps_host_root(rec.pid) {
        // Re-executes us: before anything is opened or connected.
        step!("oci_exec.read_only_image");
        crate::parent::exec::rerun_from_read_only_image()?;
    }
    step!("oci_exec.console");
    let terminal = match &a.console_socket {
        Some(p) if process.tty => Terminal::ConsoleSocket(crate::parent::tty::connect_console(p)?),
        _ => Terminal::Inherited,
    };
    let confinement = confinement_of(&rec, &process);
    let target = Target {
        name: &a.id,
        pid: rec.pid,
        cgroup: rec.cgroup.as_deref(),
        // The container's own, as its namespace has it.
        hostname: "",
    };
    let joining = JoinProcess {
        env: &process.env,
        workdir: &process.cwd,
        command: &process.args,
        confinement: &confinement,
        oci: Some(child::OciProcess {
            caller_proc: None,
            user: &process.user,
            rlimits: &process.rlimits,
            gate: None,
            preserve_fds: a.preserve_fds,
            start_hooks: None,
        }),
        user: None,
    };
    step!("oci_exec.join");
    let joined = join_container(&target, &joining, terminal, false)?;
    let child_pid = joined.pid;
    step!("oci_exec.pid_file");
    if let Some(p) = &a.pid_file {
        super::write_pid_file(p, child_pid.as_raw_pid())?;
    }
    if a.detach {
        return Ok(0);
    }
    crate::parent::wait_exit_code(child_pid).map_err(|e| {
        super::Error::Other(anyhow!(
            "cannot wait for the exec in {}: {}",
            a.id,
            crate::sys::errno_desc(e)
        ))
    })
}

/// Whether host root is mapped into the init's user namespace (or its
/// maps cannot be read). The rule is about the mapping, not the
/// namespace: if so, the joining process runs from the read-only image.
fn maps_host_root(pid: i32) -> bool {
    ["uid_map", "gid_map"].iter().any(|file| {
        std::fs::read_to_string(format!("/proc/{pid}/{file}"))
            .ok()
            .and_then(|t| crate::model::userns::id_map_ranges(&t))
            .is_none_or(crate::model::userns::ranges_hold_host_root)
    })
}

/// The container's confinement, with process.json's capabilities and
/// noNewPrivileges where it gives them.
fn confinement_of(rec: &Record, process: &Process) -> Confinement {
    let mut confinement = rec.confinement.clone().unwrap_or_default();
    if let Some((bounding, sets)) = process.caps {
        confinement.caps = bounding.bits();
        confinement.sets = Some(sets);
    }
    if let Some(n) = process.no_new_privs {
        confinement.no_new_privs = n;
    }
    confinement
}
