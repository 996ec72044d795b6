//! Private mount namespaces for tests. Mount namespaces are per thread: after
//! [`enter_private`] the mounts the calling thread makes (and those of the
//! processes it spawns) stay out of the machine's namespace.

use nix::mount::{mount, MsFlags};

/// Makes every mount of the calling thread's namespace a slave, so that
/// mounts made from now on do not propagate back to the namespace it came
/// from.
pub fn make_root_slave() -> nix::Result<()> {
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )
}

/// Moves the calling thread into a mount namespace of its own whose mounts
/// do not propagate back. Panics (tests only) when it cannot.
pub fn enter_private() {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).expect("unshare(CLONE_NEWNS)");
    make_root_slave().expect("make / a slave mount");
}
