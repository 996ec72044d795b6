//! `--cap-add`, `--cap-drop`, `--privileged`, `--security-opt`: parsed here
//! without touching the host (`parse`), then resolved before anything is
//! created (`resolve`: compiles the seccomp profile `validate` read for this
//! architecture). The result, `Confinement`, is what the child applies
//! and what the state record keeps for `engine exec`.

use crate::sys::caps::{CapError, CapSet};
use crate::sys::seccomp::{self, sock_filter, Arch, SeccompError};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::path::PathBuf;

/// A security option refused, or a seccomp profile that does not compile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An unknown `--cap-add`/`--cap-drop` name.
    #[error(transparent)]
    Cap(#[from] CapError),
    #[error("unknown --security-opt {0:?}: use seccomp=unconfined, seccomp=PROFILE.json or no-new-privileges")]
    UnknownOpt(String),
    #[error(
        "--privileged keeps every capability: drop --cap-add/--cap-drop, or drop --privileged"
    )]
    PrivilegedWithCaps,
    #[error("--privileged runs without a seccomp filter, so --security-opt seccomp={} would be ignored: drop one of them", .0.display())]
    PrivilegedWithProfile(PathBuf),
    #[error("the seccomp profile {} was not read", .0.display())]
    ProfileNotRead(PathBuf),
    /// The profile at `path` is not one this engine can compile.
    #[error("seccomp profile {}: {why}", .path.display())]
    Profile { path: PathBuf, why: SeccompError },
    #[error("seccomp filters are supported on x86_64 and aarch64, not {0}: use --security-opt seccomp=unconfined")]
    Arch(&'static str),
    /// Compiling the default filter, or a filter too long for the kernel.
    #[error(transparent)]
    Seccomp(#[from] SeccompError),
}

type Result<T, E = Error> = std::result::Result<T, E>;

/// What the child (and a process joining by `engine exec`) applies before exec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confinement {
    /// All capabilities the process holds, no filter (no user namespace).
    pub privileged: bool,
    /// The capabilities kept (bit N is capability N); ignored when privileged.
    pub caps: u64,
    pub no_new_privs: bool,
    pub filter: Filter,
    /// An OCI process's sets as its config gives them (bits as `caps`);
    /// None: effective = permitted = `caps`, inheritable and ambient empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sets: Option<ProcessCaps>,
}

/// process.capabilities beside bounding (which is `Confinement::caps`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessCaps {
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub ambient: u64,
}

/// The filter a container runs under, in a form the state record can keep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Filter {
    Unconfined,
    /// moby's default profile for the container's capabilities (a table
    /// built into the binary for the usual sets).
    Default,
    /// A compiled user profile: each instruction packed as code<<48 | jt<<40 | jf<<32 | k.
    Custom(Vec<u64>),
}

/// The security options as the user gave them.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SecurityInput {
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub privileged: bool,
    /// `seccomp=unconfined`, `seccomp=PROFILE.json`, `no-new-privileges`.
    pub security_opt: Vec<String>,
}

/// Which seccomp filter the user asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeccompChoice {
    Default,
    Unconfined,
    /// A profile in docker's JSON format.
    Profile(PathBuf),
}

/// Checked options, before the host is looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityRequest {
    pub privileged: bool,
    pub caps: CapSet,
    pub seccomp: SeccompChoice,
    pub no_new_privs: bool,
}

impl Default for SecurityRequest {
    fn default() -> Self {
        SecurityRequest {
            privileged: false,
            caps: CapSet::podman_default(),
            seccomp: SeccompChoice::Default,
            no_new_privs: false,
        }
    }
}

impl Default for Confinement {
    /// Podman's 11 capabilities and the default filter.
    fn default() -> Self {
        Confinement {
            privileged: false,
            caps: CapSet::podman_default().bits(),
            no_new_privs: false,
            filter: Filter::Default,
            sets: None,
        }
    }
}

/// Checks the options; refuses with a sentence that names the culprit.
pub fn parse(input: &SecurityInput) -> Result<SecurityRequest> {
    let caps = CapSet::from_options(&input.cap_add, &input.cap_drop)?;
    let mut seccomp = SeccompChoice::Default;
    let mut no_new_privs = false;
    for opt in &input.security_opt {
        // docker accepts both `key=value` and the older `key:value`.
        let (key, value) = match opt.split_once(['=', ':']) {
            Some((k, v)) => (k, Some(v)),
            None => (opt.as_str(), None),
        };
        match (key, value) {
            ("no-new-privileges", None | Some("true")) => no_new_privs = true,
            ("no-new-privileges", Some("false")) => no_new_privs = false,
            ("seccomp", Some("unconfined")) => seccomp = SeccompChoice::Unconfined,
            ("seccomp", Some(path)) if !path.is_empty() => {
                seccomp = SeccompChoice::Profile(PathBuf::from(path))
            }
            _ => return Err(Error::UnknownOpt(opt.clone())),
        }
    }
    if input.privileged {
        if !input.cap_add.is_empty() || !input.cap_drop.is_empty() {
            return Err(Error::PrivilegedWithCaps);
        }
        if let SeccompChoice::Profile(p) = &seccomp {
            return Err(Error::PrivilegedWithProfile(p.clone()));
        }
        seccomp = SeccompChoice::Unconfined;
    }
    Ok(SecurityRequest {
        privileged: input.privileged,
        caps,
        seccomp,
        no_new_privs,
    })
}

/// Compiles a profile; errors name the file. `profile_json` is the
/// content of the file `SeccompChoice::Profile` names (`validate` reads it).
pub fn resolve(req: &SecurityRequest, profile_json: Option<&str>) -> Result<Confinement> {
    let filter = match &req.seccomp {
        SeccompChoice::Unconfined => Filter::Unconfined,
        SeccompChoice::Default => Filter::Default,
        SeccompChoice::Profile(path) => {
            let json = profile_json.ok_or_else(|| Error::ProfileNotRead(path.clone()))?;
            let refused = |why| Error::Profile {
                path: path.clone(),
                why,
            };
            let profile = seccomp::Profile::from_docker_json(json, &req.caps).map_err(refused)?;
            let arch = Arch::native().ok_or(Error::Arch(std::env::consts::ARCH))?;
            let program = seccomp::compile(&profile, arch).map_err(refused)?;
            if program.len() > 4096 {
                return Err(SeccompError::TooLarge(program.len()).into());
            }
            Filter::Custom(program.iter().map(pack).collect())
        }
    };
    let confinement = Confinement {
        privileged: req.privileged,
        caps: req.caps.bits(),
        no_new_privs: req.no_new_privs,
        filter,
        sets: None,
    };
    // Build the default filter now, so a failure is the parent's, not the child's.
    confinement.program()?;
    Ok(confinement)
}

impl Confinement {
    pub fn caps(&self) -> CapSet {
        CapSet::from_bits(self.caps)
    }

    /// The effective, permitted, inheritable and ambient sets to apply.
    pub fn process_sets(&self) -> crate::sys::caps::Sets {
        let keep = self.caps();
        match self.sets {
            None => crate::sys::caps::Sets {
                effective: keep,
                permitted: keep,
                ..Default::default()
            },
            Some(s) => crate::sys::caps::Sets {
                effective: CapSet::from_bits(s.effective),
                permitted: CapSet::from_bits(s.permitted),
                inheritable: CapSet::from_bits(s.inheritable),
                ambient: CapSet::from_bits(s.ambient),
            },
        }
    }

    /// The BPF program to install; None: no filter.
    pub fn program(&self) -> Result<Option<Cow<'static, [sock_filter]>>, seccomp::SeccompError> {
        match &self.filter {
            Filter::Unconfined => Ok(None),
            Filter::Default => seccomp::default_program(&self.caps()).map(Some),
            Filter::Custom(packed) => Ok(Some(Cow::Owned(
                packed.iter().map(|p| unpack(*p)).collect(),
            ))),
        }
    }
}

pub fn pack(i: &sock_filter) -> u64 {
    (i.code as u64) << 48 | (i.jt as u64) << 40 | (i.jf as u64) << 32 | i.k as u64
}

fn unpack(p: u64) -> sock_filter {
    sock_filter {
        code: (p >> 48) as u16,
        jt: (p >> 40) as u8,
        jf: (p >> 32) as u8,
        k: p as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn input(f: impl FnOnce(&mut SecurityInput)) -> SecurityInput {
        let mut i = SecurityInput::default();
        f(&mut i);
        i
    }

    #[rstest]
    #[case::unknown_cap(input(|i| i.cap_add = vec!["NET_ADMINN".into()]), "NET_ADMINN")]
    #[case::unknown_drop(input(|i| i.cap_drop = vec!["bogus".into()]), "bogus")]
    #[case::unknown_opt(input(|i| i.security_opt = vec!["apparmor=x".into()]), "apparmor=x")]
    #[case::empty_profile(input(|i| i.security_opt = vec!["seccomp=".into()]), "seccomp=")]
    #[case::privileged_with_caps(input(|i| { i.privileged = true; i.cap_drop = vec!["ALL".into()] }), "--privileged")]
    #[case::privileged_with_profile(input(|i| { i.privileged = true; i.security_opt = vec!["seccomp=/p.json".into()] }), "/p.json")]
    fn bad_options_are_refused(#[case] i: SecurityInput, #[case] culprit: &str) {
        let err = parse(&i).unwrap_err().to_string();
        assert!(err.contains(culprit), "{err}");
    }

    #[test]
    fn options_parse() {
        let r = parse(&input(|i| {
            i.cap_drop = vec!["ALL".into()];
            i.cap_add = vec!["net_admin".into()];
            i.security_opt = vec!["no-new-privileges".into(), "seccomp=unconfined".into()];
        }))
        .unwrap();
        assert_eq!(
            r.caps.iter().map(|c| c.name()).collect::<Vec<_>>(),
            ["NET_ADMIN"]
        );
        assert!(r.no_new_privs);
        assert_eq!(r.seccomp, SeccompChoice::Unconfined);
        assert_eq!(
            parse(&SecurityInput::default()).unwrap(),
            SecurityRequest::default()
        );
    }

    #[test]
    fn instructions_pack_and_unpack() {
        let i = sock_filter {
            code: 0x15,
            jt: 3,
            jf: 250,
            k: 0xdead_beef,
        };
        assert_eq!(unpack(pack(&i)), i);
    }

    #[test]
    fn an_unread_profile_is_named() {
        let r = parse(&input(|i| {
            i.security_opt = vec!["seccomp=/nonexistent/p.json".into()]
        }))
        .unwrap();
        assert!(resolve(&r, None)
            .unwrap_err()
            .to_string()
            .contains("/nonexistent/p.json"));
    }
}
