//! Linux capabilities of the container's init: which ones it keeps, and
//! cutting its five sets down to them just before exec.
//!
//! The syscalls go through `rustix` (capget/capset, `PR_CAPBSET_DROP`,
//! `PR_CAP_AMBIENT_CLEAR_ALL`): it is already in the dependency tree, needs no
//! `unsafe` here, and covers all five sets; the `caps` crate would add a crate
//! for the same prctl/capset calls.

use std::fmt;

use rustix::thread::{self as rthread, CapabilitySet, CapabilitySets};

/// Kernel capability names, indexed by capability number (capabilities(7)).
const NAMES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// Podman's default set (containers.conf): docker's 14 less NET_RAW, MKNOD
/// and AUDIT_WRITE.
const PODMAN_DEFAULT: [&str; 11] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// A capability, by its kernel number (`CAP_CHOWN` is 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cap(u8);

impl Cap {
    /// Parses `NET_ADMIN`, `cap_net_admin`, `CAP_NET_ADMIN`... (not `ALL`).
    pub fn parse(name: &str) -> Result<Cap, CapError> {
        let upper = name.trim().to_ascii_uppercase();
        let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
        NAMES
            .iter()
            .position(|known| *known == bare)
            .map(|number| Cap(number as u8))
            .ok_or_else(|| CapError::Unknown(name.to_string()))
    }

    /// The name without the `CAP_` prefix, as `--cap-add` takes it.
    pub fn name(self) -> &'static str {
        NAMES[self.0 as usize]
    }

    pub fn number(self) -> u8 {
        self.0
    }
}

impl fmt::Display for Cap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CAP_{}", self.name())
    }
}

/// A set of capabilities (bit N is capability number N).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CapSet(u64);

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CapError {
    #[error("unknown capability {0:?}: give a name from capabilities(7), such as NET_ADMIN or CAP_NET_ADMIN, or ALL")]
    Unknown(String),
    /// Dropping one capability from the bounding set failed.
    #[error("cannot drop from the bounding set {cap} in the container's init: {errno}; it must run as root of its user namespace holding CAP_SETPCAP")]
    DropBounding { cap: Cap, errno: rustix::io::Errno },
    /// A step on the process's own sets failed.
    #[error("cannot {step} in the container's init: {errno}; it must run as root of its user namespace holding the capabilities it keeps")]
    Apply {
        step: &'static str,
        errno: rustix::io::Errno,
    },
}

impl CapSet {
    pub const fn empty() -> CapSet {
        CapSet(0)
    }

    /// Every capability this engine knows (`CAP_CHOWN` ..= `CAP_CHECKPOINT_RESTORE`).
    pub const fn all() -> CapSet {
        CapSet((1u64 << NAMES.len()) - 1)
    }

    /// Podman's default 11 capabilities.
    pub fn podman_default() -> CapSet {
        PODMAN_DEFAULT
            .iter()
            .map(|name| Cap::parse(name).expect("the default names are known"))
            .collect()
    }

    /// The set a container gets from `--cap-add` and `--cap-drop` values, with
    /// docker's rules: `--cap-add ALL` gives all but the dropped ones;
    /// `--cap-drop ALL` gives only the added ones; otherwise the default set
    /// less the dropped ones plus the added ones (an add wins over a drop).
    /// Every name is checked before anything else, so a typo is always refused.
    pub fn from_options<A: AsRef<str>, D: AsRef<str>>(
        cap_add: &[A],
        cap_drop: &[D],
    ) -> Result<CapSet, CapError> {
        let (add_all, add) = parse_list(cap_add)?;
        let (drop_all, drop) = parse_list(cap_drop)?;
        Ok(if add_all {
            CapSet(CapSet::all().0 & !drop.0)
        } else if drop_all {
            add
        } else {
            CapSet((CapSet::podman_default().0 & !drop.0) | add.0)
        })
    }

    /// The set whose bit N is capability N; unknown bits are dropped.
    pub const fn from_bits(bits: u64) -> CapSet {
        CapSet(bits & CapSet::all().0)
    }

    pub fn contains(self, cap: Cap) -> bool {
        self.0 & (1 << cap.0) != 0
    }

    pub fn insert(&mut self, cap: Cap) {
        self.0 |= 1 << cap.0;
    }

    pub fn remove(&mut self, cap: Cap) {
        self.0 &= !(1 << cap.0);
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The raw mask (bit N = capability N), as `/proc/PID/status` shows it.
    pub fn bits(self) -> u64 {
        self.0
    }

    pub fn iter(self) -> impl Iterator<Item = Cap> {
        (0..NAMES.len() as u8)
            .map(Cap)
            .filter(move |cap| self.contains(*cap))
    }
}

impl FromIterator<Cap> for CapSet {
    fn from_iter<I: IntoIterator<Item = Cap>>(iter: I) -> CapSet {
        let mut set = CapSet::empty();
        iter.into_iter().for_each(|cap| set.insert(cap));
        set
    }
}

impl fmt::Debug for CapSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter().map(Cap::name)).finish()
    }
}

/// Parses one list of `--cap-add`/`--cap-drop` values; returns whether `ALL` was in it.
fn parse_list<S: AsRef<str>>(values: &[S]) -> Result<(bool, CapSet), CapError> {
    let mut all = false;
    let mut set = CapSet::empty();
    for value in values {
        let value = value.as_ref();
        if value.trim().eq_ignore_ascii_case("ALL") {
            all = true;
        } else {
            set.insert(Cap::parse(value)?);
        }
    }
    Ok((all, set))
}

/// Cuts the calling process to `keep`: drops every other capability from the
/// bounding set, clears the ambient set, sets permitted and effective to
/// `keep` and inheritable to empty. The bounding set goes first: dropping
/// needs CAP_SETPCAP, which the capset may remove.
///
/// Call it in the container's init, root of its user namespace, after its
/// mounts are made and before seccomp is applied and exec. The process must
/// stay uid 0 across exec: a root exec gets permitted = effective = the
/// bounding set, so the container's command starts with exactly `keep`. A
/// non-root exec (after a setuid to the container's user) starts with none,
/// as in docker.
///
/// Inheritable is left empty, as runc and moby do since CVE-2022-24769: a
/// non-empty one would let a non-root exec of a file with inheritable file
/// capabilities gain them.
pub fn apply(keep: &CapSet) -> Result<(), CapError> {
    drop_bounding(keep)?;
    set_process_caps(keep)
}

/// The first half of `apply`: drops every capability but `keep` from the
/// bounding set (needs CAP_SETPCAP). For a container that runs as another
/// user, runc's order: `drop_bounding`, `PR_SET_KEEPCAPS`, setgroups/setresgid/
/// setresuid, then `set_process_caps`.
pub fn drop_bounding(keep: &CapSet) -> Result<(), CapError> {
    for number in 0..64u8 {
        if keep.0 & (1 << number) != 0 {
            continue;
        }
        let one = CapabilitySet::from_bits_retain(1 << number);
        match rthread::remove_capability_from_bounding_set(one) {
            Ok(()) => {}
            // Past the kernel's last capability: nothing more to drop.
            Err(rustix::io::Errno::INVAL) if number as usize >= NAMES.len() => break,
            Err(errno) => {
                return Err(CapError::DropBounding {
                    cap: Cap(number),
                    errno,
                })
            }
        }
    }
    Ok(())
}

/// The second half of `apply`: clears the ambient set, sets permitted and
/// effective to `keep` (which must be a subset of what the process holds)
/// and inheritable to empty.
pub fn set_process_caps(keep: &CapSet) -> Result<(), CapError> {
    set_process_sets(&Sets {
        effective: *keep,
        permitted: *keep,
        inheritable: CapSet::empty(),
        ambient: CapSet::empty(),
    })
}

/// The four sets of a process beside its bounding set (an OCI config's
/// process.capabilities; the engine's own containers have inheritable and
/// ambient empty).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Sets {
    pub effective: CapSet,
    pub permitted: CapSet,
    pub inheritable: CapSet,
    pub ambient: CapSet,
}

/// runc's order: the ambient set cleared, effective, permitted and
/// inheritable set at once, then each ambient capability raised (the
/// kernel raises only one both permitted and inheritable: the caller
/// checks that first). Ambient capabilities survive the exec of a non-root
/// user, which is what they are for (podman `--cap-add X --user 1000`).
pub fn set_process_sets(sets: &Sets) -> Result<(), CapError> {
    rthread::clear_ambient_capability_set().map_err(|errno| CapError::Apply {
        step: "clear the ambient set",
        errno,
    })?;
    let raw = |s: CapSet| CapabilitySet::from_bits_retain(s.0);
    rthread::set_capabilities(
        None,
        CapabilitySets {
            effective: raw(sets.effective),
            permitted: raw(sets.permitted),
            inheritable: raw(sets.inheritable),
        },
    )
    .map_err(|errno| CapError::Apply {
        step: "set the permitted, effective and inheritable capabilities",
        errno,
    })?;
    for cap in sets.ambient.iter() {
        rthread::configure_capability_in_ambient_set(raw(CapSet(1 << cap.0)), true).map_err(
            |errno| CapError::Apply {
                step: "raise an ambient capability",
                errno,
            },
        )?;
    }
    Ok(())
}

/// `--privileged`: keeps every capability the process holds (the bounding set
/// untouched), makes them all effective and clears ambient.
pub fn apply_privileged() -> Result<(), CapError> {
    let held = rthread::capabilities(None).map_err(|errno| CapError::Apply {
        step: "read the capabilities",
        errno,
    })?;
    rthread::clear_ambient_capability_set().map_err(|errno| CapError::Apply {
        step: "clear the ambient set",
        errno,
    })?;
    rthread::set_capabilities(
        None,
        CapabilitySets {
            effective: held.permitted,
            permitted: held.permitted,
            inheritable: CapabilitySet::empty(),
        },
    )
    .map_err(|errno| CapError::Apply {
        step: "make every permitted capability effective",
        errno,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(set: CapSet) -> Vec<&'static str> {
        set.iter().map(Cap::name).collect()
    }

    #[test]
    fn names_parse_with_or_without_prefix_in_any_case() {
        for spelling in [
            "NET_ADMIN",
            "net_admin",
            "CAP_NET_ADMIN",
            "cap_Net_Admin",
            " NET_ADMIN ",
        ] {
            assert_eq!(Cap::parse(spelling).unwrap().number(), 12, "{spelling}");
        }
        assert_eq!(Cap::parse("CHECKPOINT_RESTORE").unwrap().number(), 40);
        assert_eq!(Cap::parse("chown").unwrap().to_string(), "CAP_CHOWN");
    }

    #[test]
    fn an_unknown_name_is_refused_with_its_name() {
        let err = CapSet::from_options(&["NET_ADMN"], &[] as &[&str]).unwrap_err();
        assert_eq!(err, CapError::Unknown("NET_ADMN".into()));
        assert!(err.to_string().contains("\"NET_ADMN\""), "{err}");
        assert!(CapSet::from_options(&[] as &[&str], &["CAP_"]).is_err());
    }

    #[test]
    fn the_default_is_podmans_eleven() {
        let set = CapSet::from_options(&[] as &[&str], &[] as &[&str]).unwrap();
        assert_eq!(set, CapSet::podman_default());
        // Spelled out as podman's documentation lists them, not read back
        // from the name table.
        let podmans = "CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP \
                       NET_BIND_SERVICE SYS_CHROOT SETFCAP";
        assert_eq!(names(set), podmans.split_whitespace().collect::<Vec<_>>());
        // The mask as /proc/PID/status prints it for podman's default.
        assert_eq!(set.bits(), 0x800405fb);
    }

    #[test]
    fn add_and_drop_follow_dockers_rules() {
        let set = CapSet::from_options(&["net_raw"], &["CHOWN", "cap_kill"]).unwrap();
        assert!(set.contains(Cap::parse("NET_RAW").unwrap()));
        assert!(!set.contains(Cap::parse("CHOWN").unwrap()));
        assert!(!set.contains(Cap::parse("KILL").unwrap()));
        assert_eq!(set.iter().count(), 10);

        let only_added = CapSet::from_options(&["CHOWN"], &["ALL"]).unwrap();
        assert_eq!(names(only_added), ["CHOWN"]);

        let all_but = CapSet::from_options(&["all"], &["SYS_ADMIN"]).unwrap();
        assert_eq!(all_but.iter().count(), 40);
        assert!(!all_but.contains(Cap::parse("SYS_ADMIN").unwrap()));

        // An add wins over a drop of the same capability, as in docker.
        let both = CapSet::from_options(&["NET_RAW"], &["NET_RAW"]).unwrap();
        assert!(both.contains(Cap::parse("NET_RAW").unwrap()));
    }
}
