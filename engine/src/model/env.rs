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
    #[error("--env-file {file}, line {line}: {what}")]
    EnvFile {
        file: String,
        line: usize,
        what: &'static str,
    },
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

/// The lines of an `--env-file` in docker's format, as `-e` words
/// (`KEY=VALUE`), in order: blank lines and `#` comments are skipped,
/// leading white space is dropped, the value is taken as it stands (no
/// quotes, no expansion), and a bare `KEY` takes `lookup(KEY)` (the
/// caller's value) or is left out when the caller has none, as docker does.
pub fn parse_env_file(
    file: &str,
    text: &[u8],
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Vec<String>> {
    let bad = |line: usize, what: &'static str| Error::EnvFile {
        file: file.into(),
        line,
        what,
    };
    let text = text
        .strip_prefix(b"\xEF\xBB\xBF".as_slice())
        .unwrap_or(text);
    let mut words = Vec::new();
    for (n, raw) in text.split(|b| *b == b'\n').enumerate() {
        let n = n + 1;
        let line = std::str::from_utf8(raw)
            .map_err(|_| bad(n, "not UTF-8: save the file as UTF-8"))?
            .trim_end_matches('\r')
            .trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.contains('\0') {
            return Err(bad(n, "holds a NUL byte: remove it"));
        }
        let (key, value) = match line.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (line, None),
        };
        if key.is_empty() {
            return Err(bad(n, "no variable name before '=': write KEY=VALUE"));
        }
        if key.contains(char::is_whitespace) {
            return Err(bad(
                n,
                "the variable name holds white space: write KEY=VALUE",
            ));
        }
        match value {
            Some(v) => words.push(format!("{key}={v}")),
            None => words.extend(lookup(key).map(|v| format!("{key}={v}"))),
        }
    }
    Ok(words)
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

    #[test]
    fn env_files_read_as_docker_reads_them() {
        let lookup = |k: &str| (k == "HOME").then(|| "/root".to_string());
        let text = b"\xEF\xBB\xBF# a comment\n\n  A=1\nB= spaced \"q\" \r\nHOME\nUNSET\nC=x=y\n  # indented comment\nD=";
        assert_eq!(
            parse_env_file("f", text, lookup).unwrap(),
            ["A=1", "B= spaced \"q\" ", "HOME=/root", "C=x=y", "D="]
        );
        for (text, line) in [
            (&b"A=1\n=x"[..], 2),
            (b"A B=1", 1),
            (b"ok=1\nok=2\nA=\xff", 3),
            (b"A=\0", 1),
        ] {
            match parse_env_file("f", text, lookup) {
                Err(Error::EnvFile { line: l, .. }) => assert_eq!(l, line, "{text:?}"),
                other => panic!("{text:?}: {other:?}"),
            }
        }
        let sentence = parse_env_file("/x/env", b"=v", lookup)
            .unwrap_err()
            .to_string();
        assert_eq!(
            sentence,
            "--env-file /x/env, line 1: no variable name before '=': write KEY=VALUE"
        );
    }
}
