//! What a test needs of the host before it starts: root, and a scratch
//! directory of its own.

/// Fails the test unless it runs as root, saying what needs root.
pub fn require_root(what: &str) {
    assert!(
        nix::unistd::geteuid().is_root(),
        "{what} need root: run them as root (with sudo: sudo -E env \"PATH=$PATH\" cargo test)"
    );
}

/// A fresh scratch directory in the system temp dir, removed on drop.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("create a scratch directory")
}
