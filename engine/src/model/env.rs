//! `-e KEY=VAL`, `-e KEY`, `-w DIR`, and the one PATH the whole engine uses.

use std::path::{Path, PathBuf};

/// An `-e` or `-w` refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    #[error("invalid --env {0:?}: use KEY=VALUE")]
    Env(String),
    #[error("working directory {0:?} holds a NUL byte: give a path without one")]
    WorkdirNul(String),
    #[error("working directory {0:?} is not absolute: give a path starting with /")]
    WorkdirRelative(String),
}

type Result<T, E = Error> = std::result::Result<T, E>;

/// The PATH a container gets unless the user sets one (the child's exec and
/// the host-side command check search the same one).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// `KEY=VAL`; `KEY` alone passes the engine's own value through, as docker does.
pub fn parse_env(e: &str) -> Result<(String, String)> {
    let (k, v) = match e.split_once('=') {
        Some((k, v)) => (k.to_string(), v.to_string()),
        None => (e.to_string(), std::env::var(e).unwrap_or_default()),
    };
    if k.is_empty() || k.contains('\0') || v.contains('\0') {
        return Err(Error::Env(e.into()));
    }
    Ok((k, v))
}

pub fn parse_envs(envs: &[String]) -> Result<Vec<(String, String)>> {
    envs.iter().map(|e| parse_env(e)).collect()
}

/// The container's PATH: the last `PATH=` the user gave, else [`DEFAULT_PATH`].
pub fn search_path<'a>(env: impl DoubleEndedIterator<Item = (&'a str, &'a str)>) -> &'a str {
    env.rev()
        .find(|(k, _)| *k == "PATH")
        .map(|(_, v)| v)
        .unwrap_or(DEFAULT_PATH)
}

/// Where exec looks for `cmd` inside the container, in order, as execvp
/// does: `cmd` itself when it holds a '/', else `cmd` in each directory of
/// `path`. Relative candidates are relative to the working directory.
pub fn command_candidates(cmd: &str, path: &str) -> Vec<PathBuf> {
    if cmd.contains('/') {
        return vec![PathBuf::from(cmd)];
    }
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(cmd))
        .collect()
}

/// `-w DIR`: absolute, default `/`.
pub fn parse_workdir(w: Option<String>) -> Result<PathBuf> {
    match w {
        Some(w) if w.contains('\0') => Err(Error::WorkdirNul(w)),
        Some(w) if w.starts_with('/') => Ok(PathBuf::from(w)),
        Some(w) => Err(Error::WorkdirRelative(w)),
        None => Ok(PathBuf::from("/")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_and_path() {
        assert_eq!(parse_env("A=b=c").unwrap(), ("A".into(), "b=c".into()));
        assert!(parse_env("=x").is_err());
        let env = [("PATH", "/a"), ("X", "1"), ("PATH", "/b:rel:/c")];
        let path = search_path(env.iter().copied());
        assert_eq!(path, "/b:rel:/c");
        assert_eq!(
            command_candidates("sh", path),
            [
                PathBuf::from("/b/sh"),
                PathBuf::from("rel/sh"),
                PathBuf::from("/c/sh")
            ]
        );
        assert_eq!(
            command_candidates("bin/sh", path),
            [PathBuf::from("bin/sh")]
        );
        assert_eq!(search_path(std::iter::empty()), DEFAULT_PATH);
        assert!(parse_workdir(Some("rel".into())).is_err());
        // Found by tests/props.rs: a NUL byte cannot reach chdir.
        assert!(parse_workdir(Some("/\0".into())).is_err());
    }
}
