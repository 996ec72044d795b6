//! Removal, when the test process exits, of what its statics made: a
//! `static` is never dropped, so a fixture shared by a binary's tests (a
//! rootfs, a tarball) would outlive the suite. Forked test children leave
//! with `_exit` and run none of this.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

static PATHS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Removes the directory tree `path` when the process exits normally (the
/// test harness's end). A killed run's trees are for the next run's stale
/// sweep.
pub fn remove_dir_at_exit(path: &Path) {
    let mut paths = PATHS.lock().unwrap_or_else(|e| e.into_inner());
    if paths.is_empty() {
        // SAFETY: registers a plain extern "C" function with no arguments.
        let registered = unsafe { libc::atexit(remove_all) };
        assert_eq!(registered, 0, "atexit failed");
    }
    paths.push(path.to_path_buf());
}

extern "C" fn remove_all() {
    let paths = std::mem::take(&mut *PATHS.lock().unwrap_or_else(|e| e.into_inner()));
    for path in paths {
        let _ = std::fs::remove_dir_all(path);
    }
}
