//! The per-run shell files the guest's /init reads: `config.sh` (what to
//! mount) and `run.sh` (the command, its directory and environment).

use anyhow::{bail, Result};
use std::path::Path;

/// A host directory shared into the guest at the same path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    pub tag: String,
    pub path: std::path::PathBuf,
    pub writable: bool,
}

/// The environment every command starts from; the caller's entries follow
/// and so override these.
pub const BASE_ENV: &[(&str, &str)] = &[
    (
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ),
    ("HOME", "/root"),
];

pub const HOSTNAME: &str = "vm";

/// Quotes `s` for a POSIX shell: inside single quotes everything is literal
/// except the single quote itself.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

pub fn path_str(p: &Path) -> Result<&str> {
    match p.to_str() {
        Some(s) if !s.contains(['\0', '\n']) => Ok(s),
        _ => bail!(
            "path {} cannot be passed to the guest: use a UTF-8 path without newlines",
            p.display()
        ),
    }
}

/// `config.sh`: the hostname and the shared directories, parents first so
/// that a share inside another one is mounted on top of it.
pub fn config(shares: &[Share]) -> Result<String> {
    let mut shares = shares.to_vec();
    shares.sort_by_key(|s| s.path.components().count());
    let mut out = format!("VM_HOSTNAME={}\nvm_shares() {{\n\t:\n", quote(HOSTNAME));
    for s in &shares {
        let mode = if s.writable { "rw" } else { "ro" };
        out += &format!("\tshare {mode} {} {}\n", s.tag, quote(path_str(&s.path)?));
    }
    out += "}\n";
    Ok(out)
}

/// `run.sh`: run by the guest's busybox sh inside the chroot. The command
/// gets exactly the base environment plus `env`; docker's exit codes hold
/// (125 when its directory is missing, 126/127 from `env` when it cannot be
/// executed or found).
pub fn run(workdir: &Path, env: &[(String, String)], command: &[String]) -> Result<String> {
    if command.is_empty() {
        bail!("no command given to run in the guest");
    }
    for (k, v) in env {
        if k.is_empty() || k.contains(['=', '\0']) || v.contains('\0') {
            bail!("environment variable {k:?} is not valid: want KEY=VALUE with a KEY without '='");
        }
    }
    if let Some(arg) = command.iter().find(|a| a.contains('\0')) {
        bail!("command argument {arg:?} contains a NUL byte");
    }
    let dir = quote(path_str(workdir)?);
    let mut out = format!(
        "cd {dir} 2>/dev/null || {{ echo \"vm: no directory \"{dir}\" in the guest\" >&2; exit 125; }}\n"
    );
    let base = BASE_ENV.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    let env: Vec<(String, String)> = base.chain(env.iter().cloned()).collect();
    // Debian's busybox runs its own applet for a bare name ("sh", "ls")
    // instead of the root's program: look the program up in PATH here and
    // hand `env` an absolute path, which it executes as is.
    let program = quote(&command[0]);
    if command[0].contains('/') {
        out += &format!("p={program}\n");
    } else {
        let path = env
            .iter()
            .rev()
            .find(|(k, _)| k == "PATH")
            .map_or("", |(_, v)| v);
        out += &format!(
            "p=\nsearch={}\nset -f\nIFS=:\nfor d in $search; do\n\tif [ -f \"$d\"/{program} ] && [ -x \"$d\"/{program} ]; then p=\"$d\"/{program}; break; fi\ndone\nunset IFS\nset +f\n",
            quote(path)
        );
        out += &format!(
            "[ -n \"$p\" ] || {{ echo \"vm: \"{program}\": command not found\" >&2; exit 127; }}\n"
        );
    }
    out += "exec /run/vm/busybox env -i";
    for (k, v) in &env {
        out += &format!(" {}", quote(&format!("{k}={v}")));
    }
    out += " \"$p\"";
    for arg in &command[1..] {
        out += &format!(" {}", quote(arg));
    }
    out.push('\n');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn quoting_survives_a_real_shell() {
        for s in ["plain", "it's", "a b", "$HOME", "`x`", "\\n", "'", ""] {
            let out = testkit::wait::output(
                Command::new("sh").args(["-c", &format!("printf %s {}", quote(s))]),
                std::time::Duration::from_secs(20),
            )
            .unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), s);
        }
    }

    #[test]
    fn run_script_sets_env_and_keeps_arguments() {
        let s = run(
            Path::new("/work/my dir"),
            &[("A".into(), "x y".into()), ("PATH".into(), "/bin".into())],
            &["sh".into(), "-c".into(), "echo 'hi'".into()],
        )
        .unwrap();
        assert!(s.starts_with("cd '/work/my dir' "));
        // The caller's PATH comes after the default one, so it wins in env.
        let default = s.find("'PATH=/usr/local").unwrap();
        let given = s.find("'PATH=/bin'").unwrap();
        assert!(default < given);
        assert!(s.ends_with(" \"$p\" '-c' 'echo '\\''hi'\\'''\n"));
    }

    /// Runs the script with the host's sh and env in place of the guest's
    /// busybox: the lookup, quoting and exit codes for real.
    fn run_on_host(workdir: &str, env: &[(&str, &str)], command: &[&str]) -> (i32, String) {
        let env: Vec<_> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let command: Vec<_> = command.iter().map(|s| s.to_string()).collect();
        let script = run(Path::new(workdir), &env, &command)
            .unwrap()
            .replace("/run/vm/busybox env", "env");
        let out = testkit::wait::output(
            Command::new("sh").args(["-c", &script]),
            std::time::Duration::from_secs(20),
        )
        .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.code().unwrap_or(-1), text)
    }

    #[test]
    fn run_script_finds_programs_and_keeps_docker_exit_codes() {
        let echo = ["sh", "-c", "echo \"$A\" $PWD $HOME"];
        let (code, out) = run_on_host("/", &[("A", "x 'y' *")], &echo);
        assert_eq!((code, out.as_str()), (0, "x 'y' * / /root\n"));
        let (code, out) = run_on_host("/", &[], &["sh", "-c", "exit 3"]);
        assert_eq!((code, out.as_str()), (3, ""));
        let (code, out) = run_on_host("/", &[], &["no-such-program-here"]);
        assert_eq!(code, 127, "{out}");
        assert!(
            out.contains("no-such-program-here: command not found"),
            "{out}"
        );
        let scratch = tempfile::tempdir().unwrap();
        let plain = scratch.path().join("plain");
        std::fs::write(&plain, "not a program").unwrap();
        let (code, _) = run_on_host("/", &[], &[plain.to_str().unwrap()]);
        std::fs::remove_file(&plain).unwrap();
        assert_eq!(code, 126, "a file that is not executable");
        let (code, out) = run_on_host("/nonexistent-dir", &[], &["true"]);
        assert_eq!(code, 125, "{out}");
        // The caller's PATH is searched instead of the default one.
        let (code, _) = run_on_host("/", &[("PATH", "/nonexistent")], &["true"]);
        assert_eq!(code, 127);
    }

    #[test]
    fn bad_input_is_refused() {
        let dir = Path::new("/");
        assert!(run(dir, &[], &[]).is_err());
        assert!(run(dir, &[("A=B".into(), "1".into())], &["true".into()]).is_err());
        assert!(run(dir, &[("".into(), "1".into())], &["true".into()]).is_err());
        assert!(run(dir, &[], &["a\0b".into()]).is_err());
        assert!(run(Path::new("/a\nb"), &[], &["true".into()]).is_err());
    }

    #[test]
    fn config_mounts_parents_first() {
        let share = |tag: &str, path: &str, writable| Share {
            tag: tag.into(),
            path: path.into(),
            writable,
        };
        let c = config(&[
            share("rw0", "/work/main/target", true),
            share("ro0", "/work/main", false),
        ])
        .unwrap();
        let parent = c.find("share ro ro0 '/work/main'").unwrap();
        let child = c.find("share rw rw0 '/work/main/target'").unwrap();
        assert!(parent < child, "{c}");
    }
}
