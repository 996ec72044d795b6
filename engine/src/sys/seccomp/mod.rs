//! Seccomp: the default filter (moby's default profile), docker's profile
//! JSON for `--security-opt seccomp=PROFILE.json`, compiled to classic BPF
//! and installed in the container's init just before exec.
//!
//! Compiled in Rust by this module (`bpf.rs`), so the static musl build
//! stays static: the `libseccomp` crate would link the C libseccomp, which a
//! static musl build would have to carry as a cross-built archive. The
//! `seccompiler` crate (rust-vmm, pure Rust) was tried first; its filter
//! tests the call number against each call in turn, which made installing
//! the filter cost 0.94 ms in the kernel (see `bpf.rs`), so the code here
//! searches a tree instead.
//!
//! Precedence: for each call, rules whose action is not "allow" are tried
//! first, in profile order, then the allow rules; the first whose conditions
//! hold decides, else the default action. So when an allow rule and a deny
//! rule match the same call, the deny wins.
//!
//! Only the native architecture is allowed: a call made through a compat ABI
//! (i386 or x32 on x86_64, arm32 on aarch64) kills the process, where moby
//! would filter it too. That keeps the filter small and closes the x32
//! bypass of a deny-list profile.

mod bpf;
mod default_profile;
mod precompiled;
mod syscall_tables;

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;

use crate::sys::caps::{Cap, CapSet};

pub use bpf::{sock_filter, BpfProgram};

/// A target the filter is compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Arch {
    X86_64,
    Aarch64,
}

impl Arch {
    /// The architecture this engine was built for, if seccomp supports it.
    pub fn native() -> Option<Arch> {
        match std::env::consts::ARCH {
            "x86_64" => Some(Arch::X86_64),
            "aarch64" => Some(Arch::Aarch64),
            _ => None,
        }
    }

    /// `AUDIT_ARCH_*` of `struct seccomp_data`.
    fn audit(self) -> u32 {
        const AUDIT_64BIT_LE: u32 = 0x8000_0000 | 0x4000_0000;
        match self {
            Arch::X86_64 => 62 | AUDIT_64BIT_LE,
            Arch::Aarch64 => 183 | AUDIT_64BIT_LE,
        }
    }

    /// The names docker's profiles use in `arches`.
    fn docker_names(self) -> &'static [&'static str] {
        match self {
            Arch::X86_64 => &["amd64", "x86_64", "SCMP_ARCH_X86_64"],
            Arch::Aarch64 => &["arm64", "aarch64", "SCMP_ARCH_AARCH64"],
        }
    }

    /// The system call number of `name` on this architecture.
    pub fn syscall_number(self, name: &str) -> Option<u32> {
        let table = match self {
            Arch::X86_64 => syscall_tables::X86_64,
            Arch::Aarch64 => syscall_tables::AARCH64,
        };
        table
            .binary_search_by(|(known, _)| (*known).cmp(name))
            .ok()
            .map(|at| table[at].1)
    }
}

/// What the filter does with a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    Allow,
    /// Fails the call with this errno.
    Errno(u16),
    KillThread,
    KillProcess,
    /// SIGSYS.
    Trap,
    /// Allowed and logged by audit.
    Log,
}

/// How much of an argument is compared: all 64 bits (libseccomp's way), or
/// the low 32 bits, what the kernel reads of an `int` argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Width {
    Dword,
    Qword,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// `(arg & mask) == value`.
    MaskedEq(u64),
}

/// `args[index] <op> value`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Condition {
    pub index: u8,
    pub width: Width,
    pub op: CmpOp,
    pub value: u64,
}

/// `action` for every call in `names` whose arguments meet all `conditions`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub names: Vec<Cow<'static, str>>,
    pub action: Action,
    pub conditions: Vec<Condition>,
    /// `None`: every architecture.
    pub arches: Option<Vec<Arch>>,
}

/// A filter, independent of the architecture, with the capability-dependent
/// rules of the source already resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    pub default_action: Action,
    pub rules: Vec<Rule>,
}

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// The profile JSON is malformed or uses a field this engine does not know.
    #[error("the seccomp profile is not valid docker profile JSON: {0}")]
    Json(serde_json::Error),
    /// The profile asks for something this engine does not do; the sentence says what.
    #[error("{0}")]
    Unsupported(String),
    /// The compiled filter is longer than the kernel takes (4096 instructions).
    #[error("the seccomp profile compiles to {0} BPF instructions, more than the kernel's 4096: give fewer rules")]
    TooLarge(usize),
    /// The architecture has no seccomp support in this engine.
    #[error("seccomp filters are supported on x86_64 and aarch64, not {0}: run with --security-opt seccomp=unconfined")]
    UnsupportedArch(&'static str),
    /// seccomp(2) failed.
    #[error("cannot install the seccomp filter in the container: {0} (seccomp needs no_new_privs or CAP_SYS_ADMIN in the process's user namespace)")]
    Apply(std::io::Error),
}

impl Profile {
    /// moby's default profile for a container holding `caps`.
    pub fn default_for(caps: &CapSet) -> Profile {
        default_profile::build(caps)
    }

    /// A profile in docker's format (`--security-opt seccomp=PROFILE.json`),
    /// its `includes`/`excludes` resolved against `caps` and the running
    /// kernel. Fields that change what the filter does but that this engine
    /// cannot honour (a notify listener, filter flags, the trace action) are
    /// refused with a sentence naming them.
    pub fn from_docker_json(json: &str, caps: &CapSet) -> Result<Profile, SeccompError> {
        let doc: docker::Profile = serde_json::from_str(json).map_err(SeccompError::Json)?;
        let kernel = kernel_version();
        docker::resolve(doc, caps, kernel)
    }
}

/// Compiles `profile` for `arch`. Names unknown on `arch` are skipped.
pub fn compile(profile: &Profile, arch: Arch) -> Result<BpfProgram, SeccompError> {
    let mut calls: BTreeMap<u32, Vec<(Action, &[Condition])>> = BTreeMap::new();
    // Deny rules first, then allow rules, each in profile order.
    let deny_first = profile
        .rules
        .iter()
        .filter(|r| r.action != Action::Allow)
        .chain(profile.rules.iter().filter(|r| r.action == Action::Allow));
    for rule in deny_first {
        if rule
            .arches
            .as_ref()
            .is_some_and(|arches| !arches.contains(&arch))
        {
            continue;
        }
        // An allow rule under an allow default changes nothing.
        if rule.action == Action::Allow && profile.default_action == Action::Allow {
            continue;
        }
        if let Some(c) = rule.conditions.iter().find(|c| c.index > 5) {
            return Err(SeccompError::Unsupported(format!(
                "the seccomp profile compares argument index {}, but system calls have \
                 arguments 0 to 5",
                c.index
            )));
        }
        for name in &rule.names {
            if let Some(nr) = arch.syscall_number(name) {
                calls
                    .entry(nr)
                    .or_default()
                    .push((rule.action, &rule.conditions[..]));
            }
        }
    }
    bpf::build(arch, &calls, profile.default_action)
}

/// The default filter for `caps` on the running architecture. For the
/// default capabilities (or any set that differs from them only in
/// capabilities the profile does not look at) this is a table built into the
/// binary, so nothing is compiled at start-up.
pub fn default_program(caps: &CapSet) -> Result<Cow<'static, [sock_filter]>, SeccompError> {
    let arch = Arch::native().ok_or(SeccompError::UnsupportedArch(std::env::consts::ARCH))?;
    if let Some(table) = precompiled::for_caps(caps, arch) {
        return Ok(Cow::Borrowed(table));
    }
    compile(&Profile::default_for(caps), arch).map(Cow::Owned)
}

/// Installs `program` on the calling thread (and, through fork and exec, on
/// everything it starts). It does not set no_new_privs: the kernel requires
/// either no_new_privs already set or CAP_SYS_ADMIN in the caller's user
/// namespace, so call it after the capabilities are cut only when
/// no_new_privs is set (`--security-opt no-new-privileges`), and otherwise
/// while the process still holds CAP_SYS_ADMIN, that is before `caps::apply`.
/// Setting no_new_privs here (as seccompiler's `apply_filter` does) would
/// break setuid programs (su, ping) that docker's containers can run.
pub fn apply(program: &[sock_filter]) -> Result<(), SeccompError> {
    let len = u16::try_from(program.len()).map_err(|_| SeccompError::TooLarge(program.len()))?;
    let fprog = libc::sock_fprog {
        len,
        // bpf::sock_filter is #[repr(C)] with the kernel's layout
        // (u16, u8, u8, u32), the same as libc's.
        filter: program.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `fprog` points at `program`, which outlives the call; the
    // kernel copies the instructions and keeps no pointer to them.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0 as libc::c_uint,
            &fprog as *const libc::sock_fprog,
        )
    };
    if rc != 0 {
        return Err(SeccompError::Apply(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// The running kernel's (major, minor), for docker's `minKernel`.
fn kernel_version() -> (u32, u32) {
    let uname = rustix::system::uname();
    let release = uname.release().to_string_lossy();
    parse_kernel_version(&release).unwrap_or((0, 0))
}

fn parse_kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(['.', '-', '+']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

// ---- docker's profile format ----

mod docker {
    use super::*;

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    pub(super) struct Profile {
        default_action: String,
        default_errno_ret: Option<u16>,
        // Which compat architectures libseccomp adds; this engine filters
        // the native one and kills the others (see the module's notes).
        #[serde(default)]
        #[allow(dead_code)]
        architectures: Option<serde_json::Value>,
        #[serde(default)]
        #[allow(dead_code)]
        arch_map: Option<serde_json::Value>,
        listener_path: Option<String>,
        #[serde(default)]
        #[allow(dead_code)]
        listener_metadata: Option<String>,
        #[serde(default)]
        flags: Vec<String>,
        #[serde(default)]
        syscalls: Vec<Syscall>,
        #[serde(default)]
        #[allow(dead_code)]
        comment: Option<String>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct Syscall {
        name: Option<String>,
        #[serde(default)]
        names: Vec<String>,
        action: String,
        errno_ret: Option<u16>,
        #[serde(default)]
        args: Vec<Arg>,
        #[serde(default)]
        includes: Filter,
        #[serde(default)]
        excludes: Filter,
        #[serde(default)]
        #[allow(dead_code)]
        comment: Option<String>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct Arg {
        index: u8,
        value: u64,
        #[serde(default)]
        value_two: u64,
        op: String,
    }

    #[derive(Deserialize, Default)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct Filter {
        #[serde(default)]
        caps: Vec<String>,
        #[serde(default)]
        arches: Vec<String>,
        min_kernel: Option<String>,
    }

    fn action(name: &str, errno: Option<u16>) -> Result<Action, SeccompError> {
        let unsupported = |why: &str| {
            Err(SeccompError::Unsupported(format!(
                "the seccomp profile uses the action {name}, which {why}"
            )))
        };
        match name {
            "SCMP_ACT_ALLOW" => Ok(Action::Allow),
            "SCMP_ACT_ERRNO" => Ok(Action::Errno(errno.unwrap_or(libc::EPERM as u16))),
            "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => Ok(Action::KillThread),
            "SCMP_ACT_KILL_PROCESS" => Ok(Action::KillProcess),
            "SCMP_ACT_TRAP" => Ok(Action::Trap),
            "SCMP_ACT_LOG" => Ok(Action::Log),
            "SCMP_ACT_TRACE" => unsupported(
                "needs a ptrace tracer that this engine does not run: use SCMP_ACT_ERRNO",
            ),
            "SCMP_ACT_NOTIFY" => unsupported(
                "needs a seccomp notify listener that this engine does not run: use SCMP_ACT_ERRNO",
            ),
            _ => Err(SeccompError::Unsupported(format!(
                "the seccomp profile uses an unknown action {name:?}: use one of SCMP_ACT_ALLOW, \
                 SCMP_ACT_ERRNO, SCMP_ACT_KILL, SCMP_ACT_KILL_THREAD, SCMP_ACT_KILL_PROCESS, \
                 SCMP_ACT_TRAP, SCMP_ACT_LOG"
            ))),
        }
    }

    fn condition(arg: &Arg) -> Result<Condition, SeccompError> {
        let (op, value) = match arg.op.as_str() {
            "SCMP_CMP_EQ" => (CmpOp::Eq, arg.value),
            "SCMP_CMP_NE" => (CmpOp::Ne, arg.value),
            "SCMP_CMP_LT" => (CmpOp::Lt, arg.value),
            "SCMP_CMP_LE" => (CmpOp::Le, arg.value),
            "SCMP_CMP_GT" => (CmpOp::Gt, arg.value),
            "SCMP_CMP_GE" => (CmpOp::Ge, arg.value),
            // docker: value is the mask, valueTwo what the masked bits must equal.
            "SCMP_CMP_MASKED_EQ" => (CmpOp::MaskedEq(arg.value), arg.value_two),
            other => {
                return Err(SeccompError::Unsupported(format!(
                    "the seccomp profile compares an argument with the unknown operator \
                     {other:?}: use SCMP_CMP_EQ, _NE, _LT, _LE, _GT, _GE or _MASKED_EQ"
                )))
            }
        };
        if arg.index > 5 {
            return Err(SeccompError::Unsupported(format!(
                "the seccomp profile compares argument index {}, but system calls have \
                 arguments 0 to 5",
                arg.index
            )));
        }
        // libseccomp compares all 64 bits on a 64-bit architecture.
        Ok(Condition {
            index: arg.index,
            width: Width::Qword,
            op,
            value,
        })
    }

    fn caps_of(names: &[String]) -> Result<CapSet, SeccompError> {
        names
            .iter()
            .map(|name| {
                Cap::parse(name).map_err(|_| {
                    SeccompError::Unsupported(format!(
                        "the seccomp profile names an unknown capability {name:?} in \
                         includes/excludes: use names such as CAP_SYS_ADMIN"
                    ))
                })
            })
            .collect()
    }

    fn version(text: &str) -> Result<(u32, u32), SeccompError> {
        parse_kernel_version(text).ok_or_else(|| {
            SeccompError::Unsupported(format!(
                "the seccomp profile has minKernel {text:?}: write it as MAJOR.MINOR, such as \"4.8\""
            ))
        })
    }

    /// Arches named by a rule, as this engine's `Arch`es; `None`: no filter.
    fn arches(names: &[String]) -> Vec<Arch> {
        [Arch::X86_64, Arch::Aarch64]
            .into_iter()
            .filter(|arch| {
                names
                    .iter()
                    .any(|n| arch.docker_names().contains(&n.as_str()))
            })
            .collect()
    }

    pub(super) fn resolve(
        doc: Profile,
        caps: &CapSet,
        kernel: (u32, u32),
    ) -> Result<super::Profile, SeccompError> {
        if let Some(path) = doc.listener_path {
            return Err(SeccompError::Unsupported(format!(
                "the seccomp profile sends calls to the notify listener {path:?}, which this \
                 engine does not support: remove listenerPath and SCMP_ACT_NOTIFY"
            )));
        }
        if !doc.flags.is_empty() {
            return Err(SeccompError::Unsupported(format!(
                "the seccomp profile sets the filter flags {:?}, which this engine does not \
                 support: remove \"flags\"",
                doc.flags
            )));
        }
        let default_action = action(&doc.default_action, doc.default_errno_ret)?;
        let mut rules = Vec::new();
        for call in doc.syscalls {
            let mut names: Vec<Cow<'static, str>> =
                call.names.into_iter().map(Into::into).collect();
            names.extend(call.name.map(Into::into));
            let act = action(&call.action, call.errno_ret)?;
            let conditions = call
                .args
                .iter()
                .map(condition)
                .collect::<Result<Vec<_>, _>>()?;
            let need = caps_of(&call.includes.caps)?;
            let refuse = caps_of(&call.excludes.caps)?;
            if need.iter().any(|cap| !caps.contains(cap)) {
                continue;
            }
            if refuse.iter().any(|cap| caps.contains(cap)) {
                continue;
            }
            if let Some(min) = &call.includes.min_kernel {
                if kernel < version(min)? {
                    continue;
                }
            }
            if let Some(min) = &call.excludes.min_kernel {
                if kernel >= version(min)? {
                    continue;
                }
            }
            let mut on: Option<Vec<Arch>> = None;
            if !call.includes.arches.is_empty() {
                on = Some(arches(&call.includes.arches));
            }
            if !call.excludes.arches.is_empty() {
                let out = arches(&call.excludes.arches);
                let base = on.unwrap_or_else(|| vec![Arch::X86_64, Arch::Aarch64]);
                on = Some(base.into_iter().filter(|a| !out.contains(a)).collect());
            }
            if on.as_ref().is_some_and(Vec::is_empty) {
                continue;
            }
            rules.push(Rule {
                names,
                action: act,
                conditions,
                arches: on,
            });
        }
        Ok(super::Profile {
            default_action,
            rules,
        })
    }
}

/// The capabilities that change the default filter.
pub fn default_relevant_caps() -> CapSet {
    default_profile::relevant_caps()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_caps() -> CapSet {
        CapSet::podman_default()
    }

    fn names_in(profile: &Profile, action: Action) -> Vec<String> {
        profile
            .rules
            .iter()
            .filter(|r| r.action == action && r.conditions.is_empty())
            .flat_map(|r| r.names.iter().map(|n| n.to_string()))
            .collect()
    }

    #[test]
    fn the_default_profile_follows_the_capabilities() {
        let plain = Profile::default_for(&default_caps());
        let allowed = names_in(&plain, Action::Allow);
        for refused in [
            "mount", "umount2", "unshare", "setns", "bpf", "reboot", "keyctl", "add_key",
        ] {
            assert!(
                !allowed.iter().any(|n| n == refused),
                "{refused} allowed by default"
            );
        }
        assert!(
            allowed.iter().any(|n| n == "chroot"),
            "SYS_CHROOT is in the default set"
        );
        assert_eq!(
            names_in(&plain, Action::Errno(libc::ENOSYS as u16)),
            ["clone3"]
        );

        let mut admin = default_caps();
        admin.insert(Cap::parse("SYS_ADMIN").unwrap());
        let with_admin = Profile::default_for(&admin);
        let allowed = names_in(&with_admin, Action::Allow);
        for name in ["mount", "unshare", "clone", "clone3", "setns"] {
            assert!(
                allowed.iter().any(|n| n == name),
                "{name} with CAP_SYS_ADMIN"
            );
        }
        assert!(names_in(&with_admin, Action::Errno(libc::ENOSYS as u16)).is_empty());
    }

    #[test]
    fn the_default_compiles_for_both_targets() {
        for arch in [Arch::X86_64, Arch::Aarch64] {
            for caps in [CapSet::empty(), default_caps(), CapSet::all()] {
                let program = compile(&Profile::default_for(&caps), arch).unwrap();
                assert!(
                    program.len() < 4096,
                    "{arch:?}: {} instructions",
                    program.len()
                );
                // Ends with the default: EPERM.
                assert_eq!(program.last().unwrap().k, 0x0005_0000 | libc::EPERM as u32);
            }
        }
        assert_eq!(Arch::X86_64.syscall_number("umount2"), Some(166));
        assert_eq!(Arch::Aarch64.syscall_number("umount2"), Some(39));
        assert_eq!(Arch::Aarch64.syscall_number("open"), None);
    }

    #[test]
    fn the_precompiled_default_matches_the_compiler() {
        let fresh = |arch| compile(&Profile::default_for(&default_caps()), arch).unwrap();
        let (x86_64, aarch64) = (fresh(Arch::X86_64), fresh(Arch::Aarch64));
        if std::env::var_os("ENGINE_BLESS_SECCOMP").is_some() {
            let path = concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/src/sys/seccomp/precompiled_tables.rs"
            );
            std::fs::write(path, precompiled::render(&x86_64, &aarch64)).unwrap();
            return;
        }
        for (arch, compiled) in [(Arch::X86_64, x86_64), (Arch::Aarch64, aarch64)] {
            // assert! rather than assert_eq!: the programs are 1500 instructions long.
            assert!(
                precompiled::for_caps(&default_caps(), arch) == Some(&compiled[..]),
                "precompiled_tables.rs is stale for {arch:?}: regenerate it (see precompiled.rs)"
            );
        }
        // A capability the profile looks at changes the filter: no table.
        let mut admin = default_caps();
        admin.insert(Cap::parse("SYS_ADMIN").unwrap());
        assert!(precompiled::for_caps(&admin, Arch::X86_64).is_none());
        assert!(precompiled::for_caps(&CapSet::empty(), Arch::X86_64).is_none());
        // One it ignores does not.
        let mut net = default_caps();
        net.insert(Cap::parse("NET_ADMIN").unwrap());
        assert!(precompiled::for_caps(&net, Arch::X86_64).is_some());
    }

    #[test]
    fn docker_json_resolves_caps_arches_and_kernel() {
        let json = r#"{
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 38,
            "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]}],
            "syscalls": [
                {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
                {"name": "mount", "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64"]}},
                {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}},
                {"names": ["kcmp"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "99.0"}},
                {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
                 "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["getcwd"], "action": "SCMP_ACT_KILL_PROCESS", "comment": "why not"}
            ]
        }"#;
        let profile = Profile::from_docker_json(json, &default_caps()).unwrap();
        assert_eq!(profile.default_action, Action::Errno(38));
        let names: Vec<_> = profile.rules.iter().flat_map(|r| r.names.clone()).collect();
        assert_eq!(
            names,
            ["read", "write", "arch_prctl", "ptrace", "clone", "getcwd"]
        );
        assert_eq!(profile.rules[1].arches, Some(vec![Arch::X86_64]));
        assert_eq!(
            profile.rules[3].conditions,
            [Condition {
                index: 0,
                width: Width::Qword,
                op: CmpOp::MaskedEq(0x7E02_0000),
                value: 0
            }]
        );
        assert_eq!(profile.rules[4].action, Action::KillProcess);
        for arch in [Arch::X86_64, Arch::Aarch64] {
            compile(&profile, arch).unwrap();
        }

        let mut admin = default_caps();
        admin.insert(Cap::parse("SYS_ADMIN").unwrap());
        let profile = Profile::from_docker_json(json, &admin).unwrap();
        let names: Vec<_> = profile.rules.iter().flat_map(|r| r.names.clone()).collect();
        assert_eq!(
            names,
            ["read", "write", "mount", "arch_prctl", "ptrace", "getcwd"]
        );
    }

    #[test]
    fn docker_json_features_this_engine_lacks_are_refused_by_name() {
        let refused = |json: &str, words: &str| {
            let err = Profile::from_docker_json(json, &default_caps())
                .unwrap_err()
                .to_string();
            assert!(err.contains(words), "{err:?} does not name {words:?}");
        };
        refused(
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_NOTIFY"}]}"#,
            "SCMP_ACT_NOTIFY",
        );
        refused(r#"{"defaultAction": "SCMP_ACT_TRACE"}"#, "SCMP_ACT_TRACE");
        refused(
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "listenerPath": "/run/l.sock"}"#,
            "/run/l.sock",
        );
        refused(
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "flags": ["SECCOMP_FILTER_FLAG_LOG"]}"#,
            "SECCOMP_FILTER_FLAG_LOG",
        );
        refused(
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",
                "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ABOUT"}]}]}"#,
            "SCMP_CMP_ABOUT",
        );
        refused(
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",
                "includes": {"caps": ["CAP_FLY"]}}]}"#,
            "CAP_FLY",
        );
        // A misspelt field is refused rather than silently ignored.
        refused(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "sycalls": []}"#,
            "sycalls",
        );
    }

    #[test]
    fn a_deny_rule_wins_over_an_allow_rule_for_the_same_call() {
        let profile = Profile {
            default_action: Action::Errno(1),
            rules: vec![
                Rule {
                    names: vec!["socket".into()],
                    action: Action::Allow,
                    conditions: Vec::new(),
                    arches: None,
                },
                Rule {
                    names: vec!["socket".into()],
                    action: Action::Errno(97),
                    conditions: vec![Condition {
                        index: 0,
                        width: Width::Dword,
                        op: CmpOp::Eq,
                        value: 40,
                    }],
                    arches: None,
                },
            ],
        };
        // socket(40) hits the deny rule first: its number appears in the
        // program before the allow return.
        let program = compile(&profile, Arch::X86_64).unwrap();
        let deny = program
            .iter()
            .position(|f| f.code == 0x06 && f.k == 0x0005_0000 | 97);
        let allow_after = program
            .iter()
            .skip(deny.unwrap())
            .any(|f| f.code == 0x06 && f.k == 0x7fff_0000);
        assert!(
            allow_after,
            "the deny return comes before the allow return of its call"
        );
    }

    #[test]
    fn kernel_versions_parse() {
        assert_eq!(parse_kernel_version("6.18.44-fc-v1045"), Some((6, 18)));
        assert_eq!(parse_kernel_version("4.8"), Some((4, 8)));
        assert_eq!(parse_kernel_version("junk"), None);
        assert!(kernel_version() >= (4, 8));
    }
}
