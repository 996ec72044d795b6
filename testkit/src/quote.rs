//! Shell quoting for messages and `sh -c` scripts, and finding programs.

use std::path::PathBuf;

/// One word, quoted for a POSIX shell when it needs it.
pub fn quote(word: &str) -> String {
    shlex::try_quote(word)
        .map(|q| q.into_owned())
        .unwrap_or_else(|_| format!("{word:?}")) // a NUL: only ever shown, never run
}

/// Words joined into one shell command line.
pub fn join<S: AsRef<str>>(words: impl IntoIterator<Item = S>) -> String {
    words
        .into_iter()
        .map(|w| quote(w.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The path of `program` on PATH.
pub fn which(program: &str) -> Option<PathBuf> {
    which::which(program).ok()
}

/// The path of `program` on PATH; panics naming the Debian package to install.
pub fn require(program: &str, package: &str) -> PathBuf {
    which(program)
        .unwrap_or_else(|| panic!("{program} is needed and not on PATH: apt-get install {package}"))
}
