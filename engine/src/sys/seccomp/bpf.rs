//! Classic BPF for seccomp: the architecture check, a binary search on the
//! system call number, then each call's rules in order.
//!
//! Why not seccompiler's code generator: it tests the number against every
//! call in turn, 5 instructions per call. The kernel, when it installs a
//! filter, runs it once per system call number to build its allow cache and
//! JIT-compiles it: seccompiler's 1536-instruction default cost 0.94 ms per
//! container start (median of 200 installs), three times the whole
//! confinement budget. A search over runs of consecutive numbers gives 226
//! instructions for the same profile and 95 us.

use std::collections::BTreeMap;

use super::{Action, Arch, CmpOp, Condition, SeccompError, Width};

/// One instruction, with the kernel's layout (`struct sock_filter`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub struct sock_filter {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

pub type BpfProgram = Vec<sock_filter>;

const LD_W_ABS: u16 = 0x20;
const ALU_AND_K: u16 = 0x54;
const JA: u16 = 0x05;
const JEQ_K: u16 = 0x15;
const JGT_K: u16 = 0x25;
const JGE_K: u16 = 0x35;
const RET_K: u16 = 0x06;

/// `struct seccomp_data`: nr at 0, arch at 4, args from 16, 8 bytes each.
const NR: u32 = 0;
const ARCH: u32 = 4;
const ARGS: u32 = 16;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
/// The kernel's BPF_MAXINSNS.
const MAX_LEN: usize = 4096;

fn ret_value(action: Action) -> u32 {
    match action {
        Action::KillProcess => 0x8000_0000,
        Action::KillThread => 0,
        Action::Trap => 0x0003_0000,
        Action::Errno(errno) => 0x0005_0000 | u32::from(errno),
        Action::Log => 0x7ffc_0000,
        Action::Allow => 0x7fff_0000,
    }
}

#[derive(Clone, Copy)]
struct Label(usize);

enum Ins {
    Op(sock_filter),
    /// An unconditional jump forward to a label, resolved at the end.
    Ja(Label),
}

/// Conditional jumps only skip 0 or 1 instruction here; every longer jump
/// is a `JA` to a label (32-bit offset), so no offset can overflow.
#[derive(Default)]
struct Asm {
    ins: Vec<Ins>,
    at: Vec<Option<usize>>,
}

impl Asm {
    fn label(&mut self) -> Label {
        self.at.push(None);
        Label(self.at.len() - 1)
    }

    fn bind(&mut self, label: Label) {
        self.at[label.0] = Some(self.ins.len());
    }

    fn op(&mut self, code: u16, jt: u8, jf: u8, k: u32) {
        self.ins.push(Ins::Op(sock_filter { code, jt, jf, k }));
    }

    fn ja(&mut self, label: Label) {
        self.ins.push(Ins::Ja(label));
    }

    fn ret(&mut self, action: Action) {
        self.op(RET_K, 0, 0, ret_value(action));
    }

    /// Continues when `A <op> k` holds, else jumps to `fail`.
    fn require(&mut self, op: CmpOp, k: u32, fail: Label) {
        match op {
            CmpOp::Eq | CmpOp::MaskedEq(_) => self.op(JEQ_K, 1, 0, k),
            CmpOp::Ne => self.op(JEQ_K, 0, 1, k),
            CmpOp::Gt => self.op(JGT_K, 1, 0, k),
            CmpOp::Ge => self.op(JGE_K, 1, 0, k),
            CmpOp::Lt => self.op(JGE_K, 0, 1, k),
            CmpOp::Le => self.op(JGT_K, 0, 1, k),
        }
        self.ja(fail);
    }

    /// Continues when the condition holds, else jumps to `fail`.
    fn condition(&mut self, c: &Condition, fail: Label) {
        let lo = ARGS + 8 * u32::from(c.index);
        let hi = lo + 4;
        let (v_hi, v_lo) = ((c.value >> 32) as u32, c.value as u32);
        let qword = c.width == Width::Qword;
        match c.op {
            CmpOp::Eq | CmpOp::MaskedEq(_) => {
                let mask = match c.op {
                    CmpOp::MaskedEq(mask) => mask,
                    _ => u64::MAX,
                };
                let words = [(hi, v_hi, (mask >> 32) as u32), (lo, v_lo, mask as u32)];
                for (offset, value, mask) in words.into_iter().skip(usize::from(!qword)) {
                    self.op(LD_W_ABS, 0, 0, offset);
                    if mask != u32::MAX {
                        self.op(ALU_AND_K, 0, 0, mask);
                    }
                    self.require(CmpOp::Eq, value & mask, fail);
                }
            }
            CmpOp::Ne if qword => {
                // Holds when either word differs.
                let pass = self.label();
                self.op(LD_W_ABS, 0, 0, hi);
                self.op(JEQ_K, 1, 0, v_hi);
                self.ja(pass);
                self.op(LD_W_ABS, 0, 0, lo);
                self.require(CmpOp::Ne, v_lo, fail);
                self.bind(pass);
            }
            CmpOp::Gt | CmpOp::Ge | CmpOp::Lt | CmpOp::Le if qword => {
                // Unsigned 64-bit order: the high words decide unless equal.
                let pass = self.label();
                self.op(LD_W_ABS, 0, 0, hi);
                match c.op {
                    CmpOp::Gt | CmpOp::Ge => self.op(JGT_K, 0, 1, v_hi),
                    _ => self.op(JGE_K, 1, 0, v_hi),
                }
                self.ja(pass);
                self.require(CmpOp::Eq, v_hi, fail);
                self.op(LD_W_ABS, 0, 0, lo);
                self.require(c.op, v_lo, fail);
                self.bind(pass);
            }
            op => {
                self.op(LD_W_ABS, 0, 0, lo);
                self.require(op, v_lo, fail);
            }
        }
    }

    /// Binary search on the number in A over segments of consecutive
    /// numbers that share one outcome (most allowed calls come in runs).
    fn tree(&mut self, segments: &[(u32, Body)]) {
        if let [(_, body)] = segments {
            match body {
                Body::Return(action) => self.ret(*action),
                Body::Rules(label) => self.ja(*label),
            }
            return;
        }
        let mid = segments.len() / 2;
        let right = self.label();
        self.op(JGE_K, 0, 1, segments[mid].0);
        self.ja(right);
        self.tree(&segments[..mid]);
        self.bind(right);
        self.tree(&segments[mid..]);
    }

    fn finish(self) -> Result<BpfProgram, SeccompError> {
        let at = self.at;
        let program: BpfProgram = self
            .ins
            .into_iter()
            .enumerate()
            .map(|(i, ins)| match ins {
                Ins::Op(op) => op,
                Ins::Ja(label) => {
                    let target = at[label.0].expect("every label is bound");
                    sock_filter {
                        code: JA,
                        jt: 0,
                        jf: 0,
                        k: u32::try_from(target - (i + 1)).expect("jumps go forward"),
                    }
                }
            })
            .collect();
        if program.len() > MAX_LEN {
            return Err(SeccompError::TooLarge(program.len()));
        }
        Ok(program)
    }
}

#[derive(Clone, Copy)]
enum Body {
    Return(Action),
    Rules(Label),
}

/// The program for `calls` (each call's rules in the order they are tried:
/// the first whose conditions hold gives the action) and `default` for
/// every other call. Calls of another architecture, and x32 calls on
/// x86_64, kill the process.
pub(super) fn build(
    arch: Arch,
    calls: &BTreeMap<u32, Vec<(Action, &[Condition])>>,
    default: Action,
) -> Result<BpfProgram, SeccompError> {
    let mut asm = Asm::default();
    asm.op(LD_W_ABS, 0, 0, ARCH);
    asm.op(JEQ_K, 1, 0, arch.audit());
    asm.ret(Action::KillProcess);
    asm.op(LD_W_ABS, 0, 0, NR);
    if arch == Arch::X86_64 {
        asm.op(JGE_K, 0, 1, X32_SYSCALL_BIT);
        asm.ret(Action::KillProcess);
    }
    let bodies: Vec<(u32, Body)> = calls
        .iter()
        .map(|(nr, rules)| {
            let body = match rules.first() {
                Some((action, [])) => Body::Return(*action),
                _ => Body::Rules(asm.label()),
            };
            (*nr, body)
        })
        .collect();
    // Segments: (first number, outcome up to the next segment's first number).
    let mut segments: Vec<(u32, Body)> = Vec::new();
    let mut next = 0u32;
    for (nr, body) in &bodies {
        if *nr != next {
            segments.push((next, Body::Return(default)));
        }
        let joins = match (segments.last(), body) {
            (Some((_, Body::Return(last))), Body::Return(this)) => *nr == next && last == this,
            _ => false,
        };
        if !joins {
            segments.push((*nr, *body));
        }
        next = nr + 1;
    }
    segments.push((next, Body::Return(default)));
    asm.tree(&segments);
    for ((_, body), rules) in bodies.iter().zip(calls.values()) {
        let Body::Rules(label) = body else { continue };
        asm.bind(*label);
        let mut returned = false;
        for (action, conditions) in rules {
            if conditions.is_empty() {
                asm.ret(*action);
                returned = true;
                break;
            }
            let fail = asm.label();
            for c in *conditions {
                asm.condition(c, fail);
            }
            asm.ret(*action);
            asm.bind(fail);
        }
        if !returned {
            asm.ret(default);
        }
    }
    asm.finish()
}
