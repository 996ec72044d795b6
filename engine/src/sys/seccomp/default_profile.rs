//! The default filter: the rules of moby's `profiles/seccomp/default.json`
//! (the version with the AF_VSOCK socket rule, CAP_BPF and CAP_PERFMON),
//! written as Rust data. Names a target lacks (the 32-bit `*32`/`*64`
//! variants, `umount` on x86_64...) are skipped when compiling, as libseccomp
//! does. moby also allows the compat architectures (i386, x32, arm32); this
//! filter covers the native one only (see `compile`).
//!
//! Less than moby's file we read from: no `io_uring_setup`, `_enter` or
//! `_register` (moby dropped them in Docker 25, moby#46762). An io_uring SQE
//! opens sockets and files without the syscalls this filter checks by
//! argument: `IORING_OP_SOCKET` gave a container a vsock fd that
//! `socket(AF_VSOCK)` is refused.

use super::{Action, Arch, CmpOp, Condition, Profile, Rule, Width};
use crate::sys::caps::{Cap, CapSet};

/// Allowed whatever the capabilities.
#[rustfmt::skip]
const ALWAYS: &[&str] = &[
    "accept", "accept4", "access", "adjtimex", "alarm", "bind", "brk", "capget", "capset",
    "chdir", "chmod", "chown", "chown32", "clock_adjtime", "clock_adjtime64", "clock_getres",
    "clock_getres_time64", "clock_gettime", "clock_gettime64", "clock_nanosleep",
    "clock_nanosleep_time64", "close", "close_range", "connect", "copy_file_range", "creat",
    "dup", "dup2", "dup3", "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old",
    "epoll_pwait", "epoll_pwait2", "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2",
    "execve", "execveat", "exit", "exit_group", "faccessat", "faccessat2", "fadvise64",
    "fadvise64_64", "fallocate", "fanotify_mark", "fchdir", "fchmod", "fchmodat", "fchown",
    "fchown32", "fchownat", "fcntl", "fcntl64", "fdatasync", "fgetxattr", "flistxattr", "flock",
    "fork", "fremovexattr", "fsetxattr", "fstat", "fstat64", "fstatat64", "fstatfs", "fstatfs64",
    "fsync", "ftruncate", "ftruncate64", "futex", "futex_time64", "futex_waitv", "futimesat",
    "getcpu", "getcwd", "getdents", "getdents64", "getegid", "getegid32", "geteuid",
    "geteuid32", "getgid", "getgid32", "getgroups", "getgroups32", "getitimer", "getpeername",
    "getpgid", "getpgrp", "getpid", "getppid", "getpriority", "getrandom", "getresgid",
    "getresgid32", "getresuid", "getresuid32", "getrlimit", "get_robust_list", "getrusage",
    "getsid", "getsockname", "getsockopt", "get_thread_area", "gettid", "gettimeofday",
    "getuid", "getuid32", "getxattr", "inotify_add_watch", "inotify_init", "inotify_init1",
    "inotify_rm_watch", "io_cancel", "ioctl", "io_destroy", "io_getevents", "io_pgetevents",
    "io_pgetevents_time64", "ioprio_get", "ioprio_set", "io_setup", "io_submit",
    "ipc", "kill", "landlock_add_rule",
    "landlock_create_ruleset", "landlock_restrict_self", "lchown", "lchown32", "lgetxattr",
    "link", "linkat", "listen", "listxattr", "llistxattr", "_llseek", "lremovexattr", "lseek",
    "lsetxattr", "lstat", "lstat64", "madvise", "membarrier", "memfd_create", "memfd_secret",
    "mincore", "mkdir", "mkdirat", "mknod", "mknodat", "mlock", "mlock2", "mlockall", "mmap",
    "mmap2", "mprotect", "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive",
    "mq_timedreceive_time64", "mq_timedsend", "mq_timedsend_time64", "mq_unlink", "mremap",
    "msgctl", "msgget", "msgrcv", "msgsnd", "msync", "munlock", "munlockall", "munmap",
    "name_to_handle_at", "nanosleep", "newfstatat", "_newselect", "open", "openat", "openat2",
    "pause", "pidfd_open", "pidfd_send_signal", "pipe", "pipe2", "pkey_alloc", "pkey_free",
    "pkey_mprotect", "poll", "ppoll", "ppoll_time64", "prctl", "pread64", "preadv", "preadv2",
    "prlimit64", "process_mrelease", "pselect6", "pselect6_time64", "pwrite64", "pwritev",
    "pwritev2", "read", "readahead", "readlink", "readlinkat", "readv", "recv", "recvfrom",
    "recvmmsg", "recvmmsg_time64", "recvmsg", "remap_file_pages", "removexattr", "rename",
    "renameat", "renameat2", "restart_syscall", "rmdir", "rseq", "rt_sigaction",
    "rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend",
    "rt_sigtimedwait", "rt_sigtimedwait_time64", "rt_tgsigqueueinfo", "sched_getaffinity",
    "sched_getattr", "sched_getparam", "sched_get_priority_max", "sched_get_priority_min",
    "sched_getscheduler", "sched_rr_get_interval", "sched_rr_get_interval_time64",
    "sched_setaffinity", "sched_setattr", "sched_setparam", "sched_setscheduler", "sched_yield",
    "seccomp", "select", "semctl", "semget", "semop", "semtimedop", "semtimedop_time64", "send",
    "sendfile", "sendfile64", "sendmmsg", "sendmsg", "sendto", "setfsgid", "setfsgid32",
    "setfsuid", "setfsuid32", "setgid", "setgid32", "setgroups", "setgroups32", "setitimer",
    "setpgid", "setpriority", "setregid", "setregid32", "setresgid", "setresgid32", "setresuid",
    "setresuid32", "setreuid", "setreuid32", "setrlimit", "set_robust_list", "setsid",
    "setsockopt", "set_thread_area", "set_tid_address", "setuid", "setuid32", "setxattr",
    "shmat", "shmctl", "shmdt", "shmget", "shutdown", "sigaltstack", "signalfd", "signalfd4",
    "sigprocmask", "sigreturn", "socketcall", "socketpair", "splice", "stat", "stat64",
    "statfs", "statfs64", "statx", "symlink", "symlinkat", "sync", "sync_file_range", "syncfs",
    "sysinfo", "tee", "tgkill", "time", "timer_create", "timer_delete", "timer_getoverrun",
    "timer_gettime", "timer_gettime64", "timer_settime", "timer_settime64", "timerfd_create",
    "timerfd_gettime", "timerfd_gettime64", "timerfd_settime", "timerfd_settime64", "times",
    "tkill", "truncate", "truncate64", "ugetrlimit", "umask", "uname", "unlink", "unlinkat",
    "utime", "utimensat", "utimensat_time64", "utimes", "vfork", "vmsplice", "wait4", "waitid",
    "waitpid", "write", "writev",
    // moby allows these from kernel 4.8 on, where ptrace can no longer bypass
    // seccomp; the engine needs a newer kernel anyway. Reaching a process
    // outside the container is still refused by the kernel without
    // CAP_SYS_PTRACE in the target's user namespace.
    "process_vm_readv", "process_vm_writev", "ptrace",
];

/// Allowed only on one architecture.
const X86_64_ONLY: &[&str] = &["arch_prctl", "modify_ldt"];
const AARCH64_ONLY: &[&str] = &[
    "arm_fadvise64_64",
    "arm_sync_file_range",
    "sync_file_range2",
    "breakpoint",
    "cacheflush",
    "set_tls",
];

/// Allowed when the container holds the capability.
#[rustfmt::skip]
const BY_CAPABILITY: &[(&str, &[&str])] = &[
    ("DAC_READ_SEARCH", &["open_by_handle_at"]),
    (
        "SYS_ADMIN",
        &[
            "bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount", "fsopen", "fspick",
            "lookup_dcookie", "mount", "mount_setattr", "move_mount", "open_tree",
            "perf_event_open", "quotactl", "quotactl_fd", "setdomainname", "sethostname",
            "setns", "syslog", "umount", "umount2", "unshare",
        ],
    ),
    ("SYS_BOOT", &["reboot"]),
    ("SYS_CHROOT", &["chroot"]),
    ("SYS_MODULE", &["delete_module", "init_module", "finit_module"]),
    ("SYS_PACCT", &["acct"]),
    (
        "SYS_PTRACE",
        &[
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
            "ptrace",
        ],
    ),
    ("SYS_RAWIO", &["iopl", "ioperm"]),
    ("SYS_TIME", &["settimeofday", "stime", "clock_settime", "clock_settime64"]),
    ("SYS_TTY_CONFIG", &["vhangup"]),
    (
        "SYS_NICE",
        &["get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"],
    ),
    ("SYSLOG", &["syslog"]),
    ("BPF", &["bpf"]),
    ("PERFMON", &["perf_event_open"]),
];

/// The namespace flags `clone` may not carry without CAP_SYS_ADMIN:
/// CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET (0x7E020000).
pub(super) const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;

const AF_VSOCK: u64 = 40;

/// `personality` values moby allows: PER_LINUX, UNAME26, PER_LINUX32,
/// UNAME26|PER_LINUX32, and 0xffffffff (query).
const PERSONALITIES: [u64; 5] = [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// The capabilities that change the default filter; the filter for any set
/// is the filter for its intersection with these.
pub(super) fn relevant_caps() -> CapSet {
    BY_CAPABILITY
        .iter()
        .map(|(name, _)| Cap::parse(name).expect("known capability"))
        .collect()
}

fn names(list: &[&'static str]) -> Vec<std::borrow::Cow<'static, str>> {
    list.iter().map(|name| (*name).into()).collect()
}

pub(super) fn build(caps: &CapSet) -> Profile {
    let has = |name: &str| caps.contains(Cap::parse(name).expect("known capability"));
    let allow = |list: &[&'static str], arches: Option<Vec<Arch>>| Rule {
        names: names(list),
        action: Action::Allow,
        conditions: Vec::new(),
        arches,
    };
    let mut rules = vec![
        allow(ALWAYS, None),
        allow(X86_64_ONLY, Some(vec![Arch::X86_64])),
        allow(AARCH64_ONLY, Some(vec![Arch::Aarch64])),
    ];
    // socket() of any family but AF_VSOCK. Compared on the low 32 bits, the
    // `int` the kernel reads: a 64-bit compare (libseccomp's) lets 40 with
    // high bits set through.
    rules.push(Rule {
        names: names(&["socket"]),
        action: Action::Allow,
        conditions: vec![Condition {
            index: 0,
            width: Width::Dword,
            op: CmpOp::Ne,
            value: AF_VSOCK,
        }],
        arches: None,
    });
    for persona in PERSONALITIES {
        rules.push(Rule {
            names: names(&["personality"]),
            action: Action::Allow,
            conditions: vec![Condition {
                index: 0,
                width: Width::Dword,
                op: CmpOp::Eq,
                value: persona,
            }],
            arches: None,
        });
    }
    for (cap, list) in BY_CAPABILITY {
        if has(cap) {
            rules.push(allow(list, None));
        }
    }
    if !has("SYS_ADMIN") {
        // clone without namespace flags (fork, threads); clone3 answers ENOSYS
        // so glibc falls back to clone, whose flags the filter can read.
        rules.push(Rule {
            names: names(&["clone"]),
            action: Action::Allow,
            conditions: vec![Condition {
                index: 0,
                width: Width::Qword,
                op: CmpOp::MaskedEq(CLONE_NAMESPACE_FLAGS),
                value: 0,
            }],
            arches: None,
        });
        rules.push(Rule {
            names: names(&["clone3"]),
            action: Action::Errno(libc::ENOSYS as u16),
            conditions: Vec::new(),
            arches: None,
        });
    }
    Profile {
        default_action: Action::Errno(libc::EPERM as u16),
        rules,
    }
}
