//! The device cgroup of cgroup v2: a `BPF_PROG_TYPE_CGROUP_DEVICE` program,
//! assembled here from a list of rules, loaded and attached to a cgroup.
//! The kernel runs it on every mknod and every open of a device node by a
//! process of that cgroup; 0 means EPERM.
//!
//! Semantics are runc's (libcontainer/cgroups/devices): the rules are read
//! in order and the last one that matches decides; nothing matches, the
//! access is denied. The program tests the rules from the last to the
//! first and returns at the first match. `allows` is the same decision in
//! Rust, for checks on a host without cgroup v2 and for the tests.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// Access bits, as the kernel passes them (`BPF_DEVCG_ACC_*`).
pub const MKNOD: u8 = 1;
pub const READ: u8 = 2;
pub const WRITE: u8 = 4;
pub const ALL: u8 = MKNOD | READ | WRITE;

/// Block or character (`BPF_DEVCG_DEV_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Block = 1,
    Char = 2,
}

/// One rule: `None` is a wildcard (type `a`, major or minor `*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub allow: bool,
    pub kind: Option<Kind>,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    /// MKNOD | READ | WRITE bits.
    pub access: u8,
}

impl Rule {
    const fn allow(kind: Kind, major: Option<u32>, minor: Option<u32>, access: u8) -> Rule {
        Rule {
            allow: true,
            kind: Some(kind),
            major,
            minor,
            access,
        }
    }

    fn matches(&self, kind: Kind, major: u32, minor: u32, access: u8) -> bool {
        self.kind.is_none_or(|k| k == kind)
            && self.major.is_none_or(|m| m == major)
            && self.minor.is_none_or(|m| m == minor)
            && access & !self.access == 0
    }
}

/// Parses an access string (`rwm`, any subset, any order).
pub fn parse_access(s: &str) -> Option<u8> {
    let mut bits = 0;
    for c in s.chars() {
        bits |= match c {
            'r' => READ,
            'w' => WRITE,
            'm' => MKNOD,
            _ => return None,
        };
    }
    Some(bits)
}

/// What runc appends after a bundle's rules (so they always win): mknod
/// of anything (a node made is useless unless opening it is allowed), and
/// the devices every container gets: null, zero, full, tty, random,
/// urandom, the console, ptmx and the ptys of its devpts.
pub const DEFAULT_ALLOWED: [Rule; 11] = [
    Rule::allow(Kind::Char, None, None, MKNOD),
    Rule::allow(Kind::Block, None, None, MKNOD),
    Rule::allow(Kind::Char, Some(1), Some(3), ALL), // null
    Rule::allow(Kind::Char, Some(1), Some(5), ALL), // zero
    Rule::allow(Kind::Char, Some(1), Some(7), ALL), // full
    Rule::allow(Kind::Char, Some(5), Some(0), ALL), // tty
    Rule::allow(Kind::Char, Some(1), Some(8), ALL), // random
    Rule::allow(Kind::Char, Some(1), Some(9), ALL), // urandom
    Rule::allow(Kind::Char, Some(5), Some(1), ALL), // console
    Rule::allow(Kind::Char, Some(5), Some(2), ALL), // ptmx
    Rule::allow(Kind::Char, Some(136), None, ALL),  // pts/N
];

/// The bundle's rules followed by `DEFAULT_ALLOWED`, as runc orders them.
pub fn with_defaults(rules: &[Rule]) -> Vec<Rule> {
    rules.iter().chain(&DEFAULT_ALLOWED).copied().collect()
}

/// Whether `rules` let `access` to the device through (the last match wins).
pub fn allows(rules: &[Rule], kind: Kind, major: u32, minor: u32, access: u8) -> bool {
    rules
        .iter()
        .rev()
        .find(|r| r.matches(kind, major, minor, access))
        .is_some_and(|r| r.allow)
}

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    code: u8,
    /// dst in the low nibble, src in the high one.
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: dst | (src << 4),
        off,
        imm,
    }
}

// Opcodes (linux/bpf.h): class | operation | source.
const LDX_MEM_W: u8 = 0x61; // dst = *(u32 *)(src + off)
const ALU64_AND_K: u8 = 0x57;
const ALU64_RSH_K: u8 = 0x77;
const ALU64_MOV_K: u8 = 0xb7;
const ALU64_MOV_X: u8 = 0xbf;
const JMP_JNE_K: u8 = 0x55; // if dst != imm: pc += off
const JMP_JNE_X: u8 = 0x5d; // if dst != src: pc += off
const JMP_EXIT: u8 = 0x95;

// Registers: r1 holds the context (struct bpf_cgroup_dev_ctx { u32
// access_type; u32 major; u32 minor; }) on entry; r0 is the verdict.
const R0: u8 = 0;
const R1: u8 = 1;
const TYPE: u8 = 2;
const ACCESS: u8 = 3;
const MAJOR: u8 = 4;
const MINOR: u8 = 5;

/// The program for `rules` (give `with_defaults` for runc's list).
pub fn program(rules: &[Rule]) -> Vec<Insn> {
    let mut p = vec![
        // access_type is (access << 16) | kind.
        insn(LDX_MEM_W, TYPE, R1, 0, 0),
        insn(ALU64_AND_K, TYPE, 0, 0, 0xffff),
        insn(LDX_MEM_W, ACCESS, R1, 0, 0),
        insn(ALU64_RSH_K, ACCESS, 0, 0, 16),
        insn(LDX_MEM_W, MAJOR, R1, 4, 0),
        insn(LDX_MEM_W, MINOR, R1, 8, 0),
    ];
    for rule in rules.iter().rev() {
        // Each test jumps past the rest of this rule's block when it fails.
        let mut tests: Vec<Vec<Insn>> = Vec::new();
        if let Some(kind) = rule.kind {
            tests.push(vec![insn(JMP_JNE_K, TYPE, 0, 0, kind as i32)]);
        }
        if rule.access & ALL != ALL {
            // Matches when every asked bit is one the rule names.
            tests.push(vec![
                insn(ALU64_MOV_X, R1, ACCESS, 0, 0),
                insn(ALU64_AND_K, R1, 0, 0, i32::from(rule.access)),
                insn(JMP_JNE_X, R1, ACCESS, 0, 0),
            ]);
        }
        if let Some(major) = rule.major {
            tests.push(vec![insn(JMP_JNE_K, MAJOR, 0, 0, major as i32)]);
        }
        if let Some(minor) = rule.minor {
            tests.push(vec![insn(JMP_JNE_K, MINOR, 0, 0, minor as i32)]);
        }
        let verdict = [
            insn(ALU64_MOV_K, R0, 0, 0, i32::from(rule.allow)),
            insn(JMP_EXIT, 0, 0, 0, 0),
        ];
        if tests.is_empty() {
            // Matches everything: the rules before it are never reached
            // (and the verifier refuses unreachable code).
            p.extend(verdict);
            return p;
        }
        let block_len: usize = tests.iter().map(Vec::len).sum::<usize>() + verdict.len();
        let mut emitted = 0;
        for test in tests {
            emitted += test.len();
            let mut test = test;
            // The jump is the test's last instruction.
            test.last_mut().unwrap().off = (block_len - emitted) as i16;
            p.extend(test);
        }
        p.extend(verdict);
    }
    // No rule matched: deny.
    p.extend([insn(ALU64_MOV_K, R0, 0, 0, 0), insn(JMP_EXIT, 0, 0, 0, 0)]);
    p
}

// bpf(2) commands, program and attach types, flags (linux/bpf.h).
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// The head of `union bpf_attr` for BPF_PROG_LOAD (the kernel zero-fills
/// the fields after it).
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// `union bpf_attr` for BPF_PROG_ATTACH.
#[repr(C)]
#[derive(Default)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

/// Why the device filter could not be loaded or attached: the kernel's
/// words (the caller says what was being done).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The cgroup directory could not be opened.
    #[error("{0}")]
    Open(io::Error),
    /// bpf(BPF_PROG_LOAD) failed without a verifier log.
    #[error("{0}")]
    Load(io::Error),
    /// The verifier refused the program, and said why.
    #[error("{error} (verifier: {verifier})")]
    Rejected { error: io::Error, verifier: String },
    /// bpf(BPF_PROG_ATTACH) failed.
    #[error("{0}")]
    Attach(io::Error),
}

/// Loads the program for `rules` (the verifier's log in the error).
pub fn load(rules: &[Rule]) -> Result<OwnedFd, Error> {
    let insns = program(rules);
    let mut log = vec![0u8; 64 * 1024];
    let mut name = [0u8; 16];
    name[..14].copy_from_slice(b"engine_devices");
    let attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: c"Apache".as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        prog_name: name,
        expected_attach_type: BPF_CGROUP_DEVICE,
        ..Default::default()
    };
    // SAFETY: attr is a live, initialised prefix of union bpf_attr whose
    // size we pass; the instructions, the license and the log buffer it
    // points to outlive the call, and the log's size is its real length.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &attr as *const ProgLoadAttr,
            std::mem::size_of::<ProgLoadAttr>(),
        )
    };
    if fd < 0 {
        let error = io::Error::last_os_error();
        let text = String::from_utf8_lossy(&log);
        let text = text.trim_end_matches('\0').trim();
        return Err(if text.is_empty() {
            Error::Load(error)
        } else {
            Error::Rejected {
                error,
                verifier: text.into(),
            }
        });
    }
    // SAFETY: bpf(BPF_PROG_LOAD) returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Attaches `prog` to the cgroup `cgroup` (a directory fd). ALLOW_MULTI:
/// the programs of the ancestors still run, and every one must allow.
pub fn attach(cgroup: BorrowedFd<'_>, prog: BorrowedFd<'_>) -> Result<(), Error> {
    let attr = ProgAttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        ..Default::default()
    };
    // SAFETY: attr is a live, initialised prefix of union bpf_attr whose
    // size we pass; both fds are borrowed and open for the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_ATTACH,
            &attr as *const ProgAttachAttr,
            std::mem::size_of::<ProgAttachAttr>(),
        )
    };
    if r < 0 {
        return Err(Error::Attach(io::Error::last_os_error()));
    }
    Ok(())
}

/// Loads the program for `rules` and attaches it to the cgroup directory
/// `cgroup`. The attachment lives as long as the cgroup.
pub fn confine(cgroup: &std::path::Path, rules: &[Rule]) -> Result<(), Error> {
    let dir = std::fs::File::open(cgroup).map_err(Error::Open)?;
    let prog = load(rules)?;
    attach(dir.as_fd(), prog.as_fd())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deny_all() -> Rule {
        Rule {
            allow: false,
            kind: None,
            major: None,
            minor: None,
            access: ALL,
        }
    }

    #[test]
    fn last_match_wins_and_defaults_come_last() {
        let fuse = Rule::allow(Kind::Char, Some(10), Some(229), READ | WRITE);
        let rules = with_defaults(&[deny_all(), fuse]);
        assert!(allows(&rules, Kind::Char, 10, 229, READ));
        assert!(allows(&rules, Kind::Char, 10, 229, READ | WRITE));
        assert!(!allows(&rules, Kind::Block, 10, 229, READ));
        assert!(!allows(&rules, Kind::Char, 7, 0, READ));
        assert!(!allows(&rules, Kind::Block, 7, 0, READ));
        assert!(allows(&rules, Kind::Block, 7, 0, MKNOD));
        assert!(allows(&rules, Kind::Char, 136, 4, READ | WRITE));
        // A bundle's deny of a default device is overridden, as in runc.
        let rules = with_defaults(&[Rule {
            allow: false,
            ..Rule::allow(Kind::Char, Some(1), Some(3), ALL)
        }]);
        assert!(allows(&rules, Kind::Char, 1, 3, WRITE));
        // A later deny beats an earlier allow.
        let rules = [fuse, deny_all()];
        assert!(!allows(&rules, Kind::Char, 10, 229, READ));
        // No rule: deny.
        assert!(!allows(&[], Kind::Char, 1, 3, READ));
    }

    #[test]
    fn access_strings() {
        assert_eq!(parse_access("rwm"), Some(ALL));
        assert_eq!(parse_access("mr"), Some(MKNOD | READ));
        assert_eq!(parse_access(""), Some(0));
        assert_eq!(parse_access("rx"), None);
    }

    #[test]
    fn jumps_land_inside_the_program() {
        let rules = with_defaults(&[deny_all()]);
        let p = program(&rules);
        for (i, ins) in p.iter().enumerate() {
            if ins.code == JMP_JNE_K || ins.code == JMP_JNE_X {
                let to = i as i64 + 1 + i64::from(ins.off);
                assert!(to > i as i64 && (to as usize) < p.len(), "insn {i}");
                // Every jump lands at the start of a rule: after an exit.
                assert_eq!(p[to as usize - 1].code, JMP_EXIT, "insn {i}");
            }
        }
        assert_eq!(p.last().unwrap().code, JMP_EXIT);
    }

    #[test]
    fn a_rule_that_matches_everything_ends_the_program() {
        let mut all = deny_all();
        all.allow = true;
        let p = program(&[deny_all(), all]);
        // The loads, then allow: the deny before it is never reached.
        assert_eq!(p.len(), 6 + 2);
        assert_eq!(p[6], insn(ALU64_MOV_K, R0, 0, 0, 1));
    }
}
