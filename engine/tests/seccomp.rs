//! The default seccomp filter and the capability cut, on the real kernel.
//!
//! Each test forks: the child installs the filter (which cannot be removed)
//! and reports through its exit status, 0 for success or the number of the
//! first check that failed (also printed on stderr). Every argument is one
//! the kernel would reject by itself, so a broken filter makes a check fail
//! instead of mounting, rebooting or loading anything.

use std::ffi::CString;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};

use engine::sys::caps::{self, Cap, CapSet};
use engine::sys::seccomp::{self, Profile};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult};
use std::time::Duration;
use testkit::host::require_root;

/// What needs root here.
const AS_ROOT: &str = "these tests (they install seccomp filters and make user namespaces)";

/// Runs `child` in a forked process and returns its exit status, or 128+N
/// when signal N killed it.
fn in_child(child: impl FnOnce() -> i32) -> i32 {
    // SAFETY: the child only makes system calls and exits with _exit; the
    // filters it needs were compiled before the fork.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(child)).unwrap_or(99);
            // SAFETY: ends the forked child without running the test harness's exit path.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            match testkit::wait::reap(child.as_raw(), Duration::from_secs(60)).expect("waitpid") {
                Some(WaitStatus::Exited(_, code)) => code,
                Some(WaitStatus::Signaled(_, signal, _)) => 128 + signal as i32,
                other => panic!("the test child did not exit normally: {other:?}"),
            }
        }
    }
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Each check: a name, the call, the errno it must fail with.
type Check = (&'static str, fn() -> libc::c_long, i32);

/// A raw system call with integer (or static string) arguments.
fn sys(nr: libc::c_long, args: [u64; 5]) -> libc::c_long {
    // SAFETY: every caller passes integers, null pointers or pointers to
    // static NUL-terminated literals; the kernel validates them.
    unsafe { libc::syscall(nr, args[0], args[1], args[2], args[3], args[4]) }
}

fn lit(text: &'static std::ffi::CStr) -> u64 {
    text.as_ptr() as u64
}

const NOWHERE: &std::ffi::CStr = c"/nonexistent-seccomp-test";

fn refused_calls() -> Vec<Check> {
    let mut checks: Vec<Check> = vec![
        (
            "mount",
            || {
                sys(
                    libc::SYS_mount,
                    [lit(c"none"), lit(NOWHERE), lit(c"tmpfs"), 0, 0],
                )
            },
            libc::EPERM,
        ),
        (
            "umount2",
            || sys(libc::SYS_umount2, [lit(NOWHERE), 0, 0, 0, 0]),
            libc::EPERM,
        ),
        // A wrong magic: the kernel itself would answer EINVAL.
        ("reboot", || sys(libc::SYS_reboot, [0; 5]), libc::EPERM),
        (
            "kexec_load",
            || sys(libc::SYS_kexec_load, [0, 0, 0, 0xffff_ffff, 0]),
            libc::EPERM,
        ),
        (
            "init_module",
            || sys(libc::SYS_init_module, [0, 0, lit(c""), 0, 0]),
            libc::EPERM,
        ),
        (
            "finit_module",
            || sys(libc::SYS_finit_module, [u64::MAX, lit(c""), 0, 0, 0]),
            libc::EPERM,
        ),
        (
            "delete_module",
            || {
                sys(
                    libc::SYS_delete_module,
                    [lit(c"nonexistent_seccomp_test"), 0, 0, 0, 0],
                )
            },
            libc::EPERM,
        ),
        (
            "swapon",
            || sys(libc::SYS_swapon, [lit(NOWHERE), 0, 0, 0, 0]),
            libc::EPERM,
        ),
        (
            "keyctl",
            || sys(libc::SYS_keyctl, [9999, 0, 0, 0, 0]),
            libc::EPERM,
        ),
        ("add_key", || sys(libc::SYS_add_key, [0; 5]), libc::EPERM),
        (
            "request_key",
            || sys(libc::SYS_request_key, [0; 5]),
            libc::EPERM,
        ),
        (
            "bpf",
            || sys(libc::SYS_bpf, [9999, 0, 0, 0, 0]),
            libc::EPERM,
        ),
        (
            "perf_event_open",
            || sys(libc::SYS_perf_event_open, [0, 0, u64::MAX, u64::MAX, 0]),
            libc::EPERM,
        ),
        (
            "userfaultfd",
            || sys(libc::SYS_userfaultfd, [0xffff, 0, 0, 0, 0]),
            libc::EPERM,
        ),
        (
            "open_by_handle_at",
            || sys(libc::SYS_open_by_handle_at, [u64::MAX, 0, 0, 0, 0]),
            libc::EPERM,
        ),
        (
            "clock_settime",
            || {
                sys(
                    libc::SYS_clock_settime,
                    [libc::CLOCK_REALTIME as u64, 0, 0, 0, 0],
                )
            },
            libc::EPERM,
        ),
        (
            "settimeofday",
            || sys(libc::SYS_settimeofday, [0; 5]),
            libc::EPERM,
        ),
        (
            "unshare(CLONE_NEWUSER)",
            || sys(libc::SYS_unshare, [libc::CLONE_NEWUSER as u64, 0, 0, 0, 0]),
            libc::EPERM,
        ),
        (
            "unshare(CLONE_NEWNS)",
            || sys(libc::SYS_unshare, [libc::CLONE_NEWNS as u64, 0, 0, 0, 0]),
            libc::EPERM,
        ),
        (
            "setns",
            || sys(libc::SYS_setns, [u64::MAX, 0, 0, 0, 0]),
            libc::EPERM,
        ),
        (
            "clone(CLONE_NEWUSER)",
            || {
                // A fork-like clone; a child that appears (the filter failed) leaves at once.
                let rc = sys(
                    libc::SYS_clone,
                    [(libc::CLONE_NEWUSER | libc::SIGCHLD) as u64, 0, 0, 0, 0],
                );
                if rc == 0 {
                    // SAFETY: ends the unexpected child without unwinding.
                    unsafe { libc::_exit(0) }
                }
                rc
            },
            libc::EPERM,
        ),
        // moby: ENOSYS, so glibc falls back to clone, whose flags are checked.
        ("clone3", || sys(libc::SYS_clone3, [0; 5]), libc::ENOSYS),
        (
            "socket(AF_VSOCK)",
            || {
                sys(
                    libc::SYS_socket,
                    [libc::AF_VSOCK as u64, libc::SOCK_STREAM as u64, 0, 0, 0],
                )
            },
            libc::EPERM,
        ),
        // AF_VSOCK with high bits set: the kernel reads an int.
        (
            "socket(AF_VSOCK | 1<<32)",
            || {
                sys(
                    libc::SYS_socket,
                    [
                        (1 << 32) | libc::AF_VSOCK as u64,
                        libc::SOCK_STREAM as u64,
                        0,
                        0,
                        0,
                    ],
                )
            },
            libc::EPERM,
        ),
        // PER_BSD is not among the allowed personalities.
        (
            "personality(PER_BSD)",
            || sys(libc::SYS_personality, [6, 0, 0, 0, 0]),
            libc::EPERM,
        ),
    ];
    #[cfg(target_arch = "x86_64")]
    {
        checks.push((
            "iopl",
            || sys(libc::SYS_iopl, [99, 0, 0, 0, 0]),
            libc::EPERM,
        ));
        checks.push((
            "ioperm",
            || sys(libc::SYS_ioperm, [u64::MAX, 1, 0, 0, 0]),
            libc::EPERM,
        ));
    }
    checks
}

/// Runs the refused calls and the ordinary ones; 0 when all behave.
fn check_default_filter() -> i32 {
    for (at, (name, call, want)) in refused_calls().into_iter().enumerate() {
        let rc = call();
        let got = errno();
        if rc != -1 || got != want {
            eprintln!("{name}: returned {rc} errno {got}, expected -1 errno {want}");
            return at as i32 + 1;
        }
    }
    // Ordinary calls still work.
    if nix::unistd::getpid().as_raw() <= 0 {
        return 50;
    }
    let Ok(mut status) = std::fs::File::open("/proc/self/status") else {
        eprintln!(
            "open(/proc/self/status) failed: {}",
            std::io::Error::last_os_error()
        );
        return 51;
    };
    let mut text = String::new();
    if status.read_to_string(&mut text).is_err() {
        return 52;
    }
    if !text.contains("Seccomp:\t2") {
        eprintln!("/proc/self/status does not show a seccomp filter");
        return 53;
    }
    let (read_end, write_end): (OwnedFd, OwnedFd) = nix::unistd::pipe().expect("pipe");
    if nix::unistd::write(&write_end, b"x") != Ok(1) {
        return 54;
    }
    // fork, that is clone without namespace flags.
    // SAFETY: the grandchild only calls _exit.
    match unsafe { fork() } {
        // SAFETY: _exit ends the forked grandchild without running anything of ours.
        Ok(ForkResult::Child) => unsafe { libc::_exit(7) },
        Ok(ForkResult::Parent { child }) => {
            if waitpid(child, None) != Ok(WaitStatus::Exited(child, 7)) {
                return 55;
            }
        }
        Err(err) => {
            eprintln!("fork under the filter failed: {err}");
            return 56;
        }
    }
    // A thread: glibc tries clone3 (ENOSYS), then clone with thread flags.
    match std::thread::Builder::new().spawn(|| 42).map(|t| t.join()) {
        Ok(Ok(42)) => {}
        other => {
            eprintln!("a thread under the filter failed: {other:?}");
            return 57;
        }
    }
    // socket of an allowed family, and the personality query.
    // SAFETY: plain integer arguments.
    let unix = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0) };
    if unix < 0 {
        return 58;
    }
    // SAFETY: 0xffffffff only queries the personality.
    if unsafe { libc::personality(0xffff_ffff) } < 0 {
        return 59;
    }
    let mut byte = [0u8; 1];
    if nix::unistd::read(read_end.as_raw_fd(), &mut byte) != Ok(1) {
        return 60;
    }
    0
}

#[test]
fn the_default_filter_refuses_what_moby_refuses_and_allows_ordinary_calls() {
    require_root(AS_ROOT);
    let program = seccomp::default_program(&CapSet::podman_default()).expect("default filter");
    let status = in_child(|| {
        if let Err(err) = seccomp::apply(&program) {
            eprintln!("{err}");
            return 100;
        }
        check_default_filter()
    });
    assert_eq!(status, 0, "check {status} failed (see stderr)");
}

#[test]
fn cap_sys_admin_opens_the_namespace_calls_again() {
    require_root(AS_ROOT);
    // With CAP_SYS_ADMIN in the set, moby's profile allows unshare; the
    // child unshares a user namespace, which needs no privilege.
    let mut with_admin = CapSet::podman_default();
    with_admin.insert(Cap::parse("SYS_ADMIN").unwrap());
    let program = seccomp::compile(
        &Profile::default_for(&with_admin),
        seccomp::Arch::native().unwrap(),
    )
    .unwrap();
    let status = in_child(|| {
        if seccomp::apply(&program).is_err() {
            return 100;
        }
        // SAFETY: an integer argument.
        if unsafe { libc::unshare(libc::CLONE_NEWUSER) } != 0 {
            eprintln!(
                "unshare(CLONE_NEWUSER) with CAP_SYS_ADMIN: {}",
                std::io::Error::last_os_error()
            );
            return 1;
        }
        0
    });
    assert_eq!(status, 0);
}

/// Reads the five capability masks of `/proc/PID/status` text.
fn cap_masks(status: &str) -> Vec<(String, u64)> {
    status
        .lines()
        .filter_map(|line| {
            let (key, value) = line.split_once(":\t")?;
            key.starts_with("Cap").then(|| {
                (
                    key.to_string(),
                    u64::from_str_radix(value.trim(), 16).unwrap(),
                )
            })
        })
        .collect()
}

fn write_file(path: &str, text: &str) -> bool {
    std::fs::write(path, text).is_ok()
}

#[test]
fn the_default_capabilities_survive_exec_and_nothing_else_does() {
    require_root(AS_ROOT);
    let caps_kept = CapSet::podman_default();
    let program = seccomp::default_program(&caps_kept).unwrap();
    let (read_end, write_end) = nix::unistd::pipe().expect("pipe");
    let cat = CString::new("/bin/cat").unwrap();
    let args = [cat.clone(), CString::new("/proc/self/status").unwrap()];
    let status = in_child(|| {
        // Root of a fresh user namespace, as the container's init is.
        // SAFETY: an integer argument.
        if unsafe { libc::unshare(libc::CLONE_NEWUSER) } != 0 {
            return 1;
        }
        if !(write_file("/proc/self/uid_map", "0 0 1")
            && write_file("/proc/self/setgroups", "deny")
            && write_file("/proc/self/gid_map", "0 0 1"))
        {
            eprintln!("id maps: {}", std::io::Error::last_os_error());
            return 2;
        }
        // The order the engine uses: seccomp while CAP_SYS_ADMIN is held,
        // then the capability cut, then exec.
        if let Err(err) = seccomp::apply(&program) {
            eprintln!("{err}");
            return 3;
        }
        if let Err(err) = caps::apply(&caps_kept) {
            eprintln!("{err}");
            return 4;
        }
        // A process outside the container cannot be traced.
        // SAFETY: integer arguments.
        let rc =
            unsafe { libc::ptrace(libc::PTRACE_ATTACH, nix::unistd::getppid().as_raw(), 0, 0) };
        if rc != -1 || errno() != libc::EPERM {
            eprintln!("ptrace(PTRACE_ATTACH, parent): {rc} errno {}", errno());
            return 5;
        }
        if nix::unistd::dup2(write_end.as_raw_fd(), 1).is_err() {
            return 6;
        }
        let _ = nix::unistd::execv(&args[0], &args);
        eprintln!("exec /bin/cat: {}", std::io::Error::last_os_error());
        7
    });
    assert_eq!(status, 0, "child check {status} failed (see stderr)");
    drop(write_end);
    let mut text = String::new();
    std::fs::File::from(read_end)
        .read_to_string(&mut text)
        .unwrap();
    let masks = cap_masks(&text);
    assert_eq!(masks.len(), 5, "no five Cap lines in:\n{text}");
    let forbidden = ["SYS_ADMIN", "NET_ADMIN", "NET_RAW", "MKNOD"];
    for (set, mask) in &masks {
        for name in forbidden {
            let cap = Cap::parse(name).unwrap();
            assert_eq!(
                mask & (1 << cap.number()),
                0,
                "{set} holds {cap}: {mask:#x}"
            );
        }
        let chown = 1u64 << Cap::parse("CHOWN").unwrap().number();
        match set.as_str() {
            "CapBnd" | "CapPrm" | "CapEff" => {
                assert_eq!(
                    *mask,
                    caps_kept.bits(),
                    "{set} after exec as root: {mask:#x}"
                );
                assert_ne!(mask & chown, 0);
            }
            "CapInh" | "CapAmb" => assert_eq!(*mask, 0, "{set}: {mask:#x}"),
            other => panic!("unexpected {other}"),
        }
    }
    assert!(
        text.contains("Seccomp:\t2"),
        "no filter after exec:\n{text}"
    );
}

#[test]
fn a_docker_profile_that_denies_getcwd() {
    require_root(AS_ROOT);
    let profile = Profile::from_docker_json(
        r#"{
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {"names": ["getcwd"], "action": "SCMP_ACT_ERRNO"},
                {"names": ["uname"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}
            ]
        }"#,
        &CapSet::podman_default(),
    )
    .unwrap();
    let program = seccomp::compile(&profile, seccomp::Arch::native().unwrap()).unwrap();
    let status = in_child(|| {
        if seccomp::apply(&program).is_err() {
            return 100;
        }
        let mut buf = [0u8; 256];
        // SAFETY: buf is writable for its length.
        let rc = unsafe { libc::syscall(libc::SYS_getcwd, buf.as_mut_ptr(), buf.len()) };
        if rc != -1 || errno() != libc::EPERM {
            eprintln!("getcwd: {rc} errno {}", errno());
            return 1;
        }
        // SAFETY: utsname is plain data, written by the kernel.
        let mut uts = unsafe { std::mem::zeroed::<libc::utsname>() };
        // SAFETY: uts is a valid utsname.
        if unsafe { libc::uname(&mut uts) } != -1 || errno() != libc::EACCES {
            return 2;
        }
        // Everything else is allowed.
        if nix::unistd::getpid().as_raw() <= 0 || std::fs::metadata("/").is_err() {
            return 3;
        }
        0
    });
    assert_eq!(status, 0, "check {status} failed");
}

#[test]
fn a_docker_profile_with_an_unknown_action_is_refused() {
    let err = Profile::from_docker_json(
        r#"{"defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{"names": ["read"], "action": "SCMP_ACT_PERMIT"}]}"#,
        &CapSet::podman_default(),
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("\"SCMP_ACT_PERMIT\""), "{text}");
}

#[cfg(target_arch = "x86_64")]
#[test]
fn an_x32_call_cannot_slip_past_a_deny_list() {
    require_root(AS_ROOT);
    // A deny list: everything allowed but getpid. The x32 number of getpid
    // (bit 30 set) is the classic way around such a list.
    let profile = Profile::from_docker_json(
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ERRNO"}]}"#,
        &CapSet::podman_default(),
    )
    .unwrap();
    let program = seccomp::compile(&profile, seccomp::Arch::X86_64).unwrap();
    let status = in_child(|| {
        if seccomp::apply(&program).is_err() {
            return 100;
        }
        if sys(libc::SYS_getpid, [0; 5]) != -1 || errno() != libc::EPERM {
            return 1;
        }
        sys(libc::SYS_getpid | 0x4000_0000, [0; 5]);
        2
    });
    assert_eq!(status, 128 + libc::SIGSYS, "the x32 call was not killed");
}

#[test]
fn argument_comparisons_of_a_docker_profile_hold_across_64_bits() {
    require_root(AS_ROOT);
    // getppid ignores its arguments, so the filter alone decides.
    const VALUE: u64 = 0x1_0000_0005;
    let probes: [u64; 6] = [
        5,
        0x1_0000_0004,
        VALUE,
        0x1_0000_0006,
        0x2_0000_0000,
        0x2_0000_0005,
    ];
    type Holds = fn(u64) -> bool;
    let ops: [(&str, Holds); 7] = [
        ("SCMP_CMP_EQ", |a| a == VALUE),
        ("SCMP_CMP_NE", |a| a != VALUE),
        ("SCMP_CMP_GT", |a| a > VALUE),
        ("SCMP_CMP_GE", |a| a >= VALUE),
        ("SCMP_CMP_LT", |a| a < VALUE),
        ("SCMP_CMP_LE", |a| a <= VALUE),
        // mask 0x1_0000_000F: the bits must equal those of VALUE.
        ("SCMP_CMP_MASKED_EQ", |a| a & 0x1_0000_000F == VALUE),
    ];
    for (op, holds) in ops {
        let (value, value_two) = match op {
            "SCMP_CMP_MASKED_EQ" => (0x1_0000_000F, VALUE),
            _ => (VALUE, 0),
        };
        let json = format!(
            r#"{{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{{"names": ["getppid"],
                "action": "SCMP_ACT_ERRNO", "errnoRet": 42,
                "args": [{{"index": 1, "value": {value}, "valueTwo": {value_two}, "op": "{op}"}}]}}]}}"#
        );
        let profile = Profile::from_docker_json(&json, &CapSet::podman_default()).unwrap();
        let program = seccomp::compile(&profile, seccomp::Arch::native().unwrap()).unwrap();
        let status = in_child(|| {
            if seccomp::apply(&program).is_err() {
                return 100;
            }
            for (at, probe) in probes.iter().enumerate() {
                let rc = sys(libc::SYS_getppid, [0, *probe, 0, 0, 0]);
                let denied = rc == -1 && errno() == 42;
                if denied != holds(*probe) {
                    eprintln!("{op} {VALUE:#x}: arg {probe:#x} denied={denied}");
                    return at as i32 + 1;
                }
            }
            0
        });
        assert_eq!(status, 0, "{op}: probe {status} wrong");
    }
}
