//! What seccomp costs a start: building and compiling a profile at run time,
//! the precompiled default, and installing a filter in the kernel (its check,
//! JIT and per-syscall cache). Run as root:
//! `cargo run --release -p engine --example seccomp_cost`.

use engine::sys::caps::{Cap, CapSet};
use engine::sys::seccomp::{self, Arch, Profile};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult};
use std::io::Read;
use std::time::{Duration, Instant};

fn median_p90(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (v[v.len() / 2], v[v.len() * 9 / 10])
}

/// Installs `program` in a forked child and returns how long it took.
fn apply_in_child(program: &[seccomp::sock_filter]) -> Duration {
    let (read_end, write_end) = nix::unistd::pipe().expect("pipe");
    // SAFETY: single-threaded; the child only installs the filter, writes
    // to a pipe and _exits.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            let start = Instant::now();
            let ok = seccomp::apply(program).is_ok();
            let took = start.elapsed().as_nanos() as u64;
            let _ = nix::unistd::write(&write_end, &took.to_ne_bytes());
            // SAFETY: ends the child without running the parent's exit path.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) }
        }
        ForkResult::Parent { child } => {
            drop(write_end);
            let status = waitpid(child, None).expect("waitpid");
            assert_eq!(
                status,
                WaitStatus::Exited(child, 0),
                "seccomp::apply failed"
            );
            let mut bytes = [0u8; 8];
            std::fs::File::from(read_end)
                .read_exact(&mut bytes)
                .expect("read");
            Duration::from_nanos(u64::from_ne_bytes(bytes))
        }
    }
}

fn main() {
    let arch = Arch::native().expect("x86_64 or aarch64");
    let default = CapSet::podman_default();
    let mut admin = default;
    admin.insert(Cap::parse("SYS_ADMIN").expect("a capability"));
    for (label, caps) in [("default caps", default), ("+SYS_ADMIN", admin)] {
        let compile: Vec<_> = (0..2000)
            .map(|_| {
                let start = Instant::now();
                std::hint::black_box(seccomp::compile(&Profile::default_for(&caps), arch).unwrap());
                start.elapsed()
            })
            .collect();
        let table: Vec<_> = (0..2000)
            .map(|_| {
                let start = Instant::now();
                std::hint::black_box(seccomp::default_program(&caps).unwrap());
                start.elapsed()
            })
            .collect();
        let (c50, c90) = median_p90(compile);
        let (t50, _) = median_p90(table);
        println!(
            "{label}: build+compile median {c50:?} (p90 {c90:?}); default_program median {t50:?}"
        );
    }
    let program = seccomp::default_program(&default).unwrap();
    let applies: Vec<_> = (0..200).map(|_| apply_in_child(&program)).collect();
    let (a50, a90) = median_p90(applies);
    println!(
        "install the default filter ({} instructions): median {a50:?} (p90 {a90:?})",
        program.len()
    );
}
