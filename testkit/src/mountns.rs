//! Mount namespaces for tests. Mount namespaces are per thread: after
//! [`enter_private`] the mounts the calling thread makes (and those of the
//! processes it spawns) stay out of the machine's namespace. [`in_shared`]
//! gives a thread a namespace whose mounts are shared, as on a systemd host,
//! and [`Mounts`] what a namespace holds, to see what an engine left in it.

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

/// Runs `f` on a new thread in a mount namespace of its own where every
/// mount is shared, as `/` is on a systemd host and on GitHub's runners:
/// `unshare -m --propagation private`, then `mount --make-rshared /`. The
/// peer groups are new and local to that namespace, so nothing mounted in it
/// reaches the machine's; the processes the thread spawns live in it. A
/// panic in `f` is passed on to the caller; one setting up panics (tests).
pub fn in_shared<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
                    .expect("unshare(CLONE_NEWNS)");
                for (flag, what) in [
                    (MsFlags::MS_PRIVATE, "make / rprivate"),
                    (MsFlags::MS_SHARED, "make / rshared"),
                ] {
                    mount(
                        None::<&str>,
                        "/",
                        None::<&str>,
                        flag | MsFlags::MS_REC,
                        None::<&str>,
                    )
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                }
                assert!(
                    root_is_shared(),
                    "/ is not shared after mount --make-rshared /"
                );
                f()
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// The mounts of the calling thread's mount namespace, as the lines of
/// /proc/thread-self/mountinfo (each holds its mount ID, so a mount
/// replaced by another is a change too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mounts(pub std::collections::BTreeSet<String>);

impl Mounts {
    pub fn now() -> Mounts {
        let text = std::fs::read_to_string("/proc/thread-self/mountinfo")
            .unwrap_or_else(|e| panic!("cannot read /proc/thread-self/mountinfo: {e}"));
        Mounts(text.lines().map(str::to_string).collect())
    }

    /// The mounts that appeared (`+ LINE`) or went (`- LINE`) since `before`.
    pub fn changes_since(&self, before: &Mounts) -> Vec<String> {
        let gone = before.0.difference(&self.0).map(|l| format!("- {l}"));
        let new = self.0.difference(&before.0).map(|l| format!("+ {l}"));
        gone.chain(new).collect()
    }
}

/// Whether the calling thread's `/` is a shared mount (a `shared:N` tag in
/// mountinfo), as on a systemd host.
pub fn root_is_shared() -> bool {
    let text = std::fs::read_to_string("/proc/thread-self/mountinfo")
        .unwrap_or_else(|e| panic!("cannot read /proc/thread-self/mountinfo: {e}"));
    // ID PARENT MAJ:MIN ROOT MOUNT-POINT OPTIONS OPTIONAL... - TYPE ...; of
    // mounts stacked on `/`, the last is the one seen.
    let root = text
        .lines()
        .rfind(|l| l.split(' ').nth(4) == Some("/"))
        .unwrap_or_else(|| panic!("no mount at / in mountinfo:\n{text}"));
    root.split(' ')
        .skip(6)
        .take_while(|x| *x != "-")
        .any(|x| x.starts_with("shared:"))
}
