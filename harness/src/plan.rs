//! What a run covers: the rootfs flavours, the scenario names, the trials.

use std::path::PathBuf;

/// The scenarios, in the order they run for each flavour.
pub const SCENARIOS: [&str; 16] = [
    "processes",
    "users",
    "filesystem",
    "hostname_ipc",
    "network",
    "nat",
    "cpu",
    "memory",
    "pids",
    "stress",
    "lifecycle",
    "confinement",
    "oci",
    "podman",
    "cri",
    "image",
];

/// Scenarios that run for the first flavour only: what they attack or limit
/// is the engine and the kernel's cgroups, not the distribution, and under
/// emulation they are the slowest.
pub const FIRST_FLAVOUR_ONLY: [&str; 9] = [
    "cpu",
    "memory",
    "pids",
    "stress",
    "confinement",
    "oci",
    "podman",
    "cri",
    "image",
];

/// Scenarios a foreign-architecture guest (arm64 emulated on amd64) does
/// not run: its root is a minimal Debian extract without nftables' `nft`
/// and without podman or containerd (and crictl is cached for the host's
/// architecture). GitHub's arm64 runner runs them natively.
pub const NATIVE_ONLY: [&str; 3] = ["nat", "podman", "cri"];

/// The scenarios of the flavour at `index` in the run's list.
pub fn scenarios_for(index: usize) -> impl Iterator<Item = &'static str> {
    let foreign = arch() != host_arch();
    SCENARIOS.into_iter().filter(move |s| {
        (index == 0 || !FIRST_FLAVOUR_ONLY.contains(s)) && !(foreign && NATIVE_ONLY.contains(s))
    })
}

/// Each flavour's first trial: its rootfs could be built or unpacked.
pub const FIXTURE: &str = "fixture";

/// The last trial of a run: nothing the engine made is left behind.
pub const LEFTOVERS: &str = "leftovers";

/// A root filesystem the scenarios run on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flavour {
    /// Built where the scenarios run, by `engine rootfs pull busybox`.
    Busybox,
    /// Built on the host by `engine rootfs pull debian` (mmdebstrap), packed
    /// into `target/rootfs/debian-ARCH.tar`.
    Debian,
    /// Downloaded on the host by `engine rootfs pull centos`, packed like debian.
    Centos,
    /// A directory or a `.tar`, `.tar.gz`, `.tar.xz` given by the user.
    Path(PathBuf),
}

impl Flavour {
    /// The prefix of its trials' names: `busybox`, `debian`, `centos`, or
    /// the path's file name (`alpine` for `/srv/alpine.tar.xz`).
    pub fn name(&self) -> String {
        match self {
            Flavour::Busybox => "busybox".into(),
            Flavour::Debian => "debian".into(),
            Flavour::Centos => "centos".into(),
            Flavour::Path(path) => {
                let base = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "rootfs".into());
                let base = [".tar.xz", ".tar.gz", ".tgz", ".tar"]
                    .iter()
                    .find_map(|ext| base.strip_suffix(ext))
                    .unwrap_or(&base)
                    .to_string();
                let clean: String = base
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                            c
                        } else {
                            '_'
                        }
                    })
                    .collect();
                if clean.is_empty() || ["busybox", "debian", "centos"].contains(&clean.as_str()) {
                    format!("path-{clean}")
                } else {
                    clean
                }
            }
        }
    }
}

/// The flavours selected by `HARNESS_ROOTFS` (comma-separated:
/// `busybox`, `debian`, `centos`, or a path). Unset: every offline flavour
/// (busybox and debian), plus centos on GitHub Actions.
pub fn flavours_from_env() -> Result<Vec<Flavour>, String> {
    let value = std::env::var("HARNESS_ROOTFS").unwrap_or_default();
    let on_github = std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true");
    parse_flavours(&value, on_github)
}

/// See [`flavours_from_env`].
pub fn parse_flavours(value: &str, on_github: bool) -> Result<Vec<Flavour>, String> {
    let mut out = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let flavour = match item {
            "busybox" => Flavour::Busybox,
            "debian" => Flavour::Debian,
            "centos" => Flavour::Centos,
            path if path.contains('/') || path.starts_with('.') => {
                let path = PathBuf::from(path);
                let path = std::path::absolute(&path).unwrap_or(path);
                if !path.exists() {
                    return Err(format!(
                        "HARNESS_ROOTFS: {} does not exist (expected busybox, debian, centos, \
                         or the path of a rootfs directory or tarball)",
                        path.display()
                    ));
                }
                Flavour::Path(path)
            }
            other => {
                return Err(format!(
                    "HARNESS_ROOTFS: unknown flavour `{other}` (expected busybox, debian, centos, \
                     or the path of a rootfs directory or tarball, comma-separated)"
                ))
            }
        };
        if !out.contains(&flavour) {
            out.push(flavour);
        }
    }
    if out.is_empty() {
        out = vec![Flavour::Busybox, Flavour::Debian];
        if on_github {
            out.push(Flavour::Centos);
        }
    }
    let mut names: Vec<String> = out.iter().map(Flavour::name).collect();
    names.sort();
    names.dedup();
    if names.len() != out.len() {
        return Err("HARNESS_ROOTFS: two flavours would have the same name".into());
    }
    Ok(out)
}

/// `flavour::scenario`.
pub fn trial_name(flavour: &str, scenario: &str) -> String {
    format!("{flavour}::{scenario}")
}

/// Every trial of a run, in order: per flavour its fixture then its
/// scenarios, and last `leftovers`.
pub fn trial_names(flavours: &[Flavour]) -> Vec<String> {
    let mut names = Vec::new();
    for (index, flavour) in flavours.iter().enumerate() {
        let name = flavour.name();
        names.push(trial_name(&name, FIXTURE));
        for scenario in scenarios_for(index) {
            names.push(trial_name(&name, scenario));
        }
    }
    names.push(LEFTOVERS.to_string());
    names
}

/// Debian's name for an architecture: `amd64` or `arm64`; `HARNESS_ARCH`
/// overrides the host's.
pub fn arch() -> String {
    match std::env::var("HARNESS_ARCH") {
        Ok(a) if !a.is_empty() => a,
        _ => host_arch().to_string(),
    }
}

/// The architecture this binary was built for, in Debian's words.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_flavours_are_the_offline_ones() {
        assert_eq!(
            parse_flavours("", false).unwrap(),
            vec![Flavour::Busybox, Flavour::Debian]
        );
        assert_eq!(
            parse_flavours("", true).unwrap(),
            vec![Flavour::Busybox, Flavour::Debian, Flavour::Centos]
        );
        assert_eq!(
            parse_flavours("busybox", true).unwrap(),
            vec![Flavour::Busybox]
        );
        assert_eq!(
            parse_flavours("centos, busybox,centos", false).unwrap(),
            vec![Flavour::Centos, Flavour::Busybox]
        );
    }

    #[test]
    fn bad_flavours_are_refused() {
        let err = parse_flavours("alpine", false).unwrap_err();
        assert!(err.contains("unknown flavour `alpine`"), "{err}");
        let err = parse_flavours("/no/such/rootfs", false).unwrap_err();
        assert!(err.contains("/no/such/rootfs does not exist"), "{err}");
    }

    #[test]
    fn path_flavours_are_named_after_the_file() {
        assert_eq!(
            Flavour::Path("/srv/alpine-3.20.tar.xz".into()).name(),
            "alpine-3_20"
        );
        assert_eq!(Flavour::Path("/srv/debian".into()).name(), "path-debian");
    }

    #[test]
    fn trials_are_fixture_then_scenarios_then_leftovers() {
        let names = trial_names(&[Flavour::Busybox]);
        assert_eq!(names.first().unwrap(), "busybox::fixture");
        assert_eq!(names[1], "busybox::processes");
        assert_eq!(names.last().unwrap(), "leftovers");
        assert_eq!(names.len(), SCENARIOS.len() + 2);
        let two = trial_names(&[Flavour::Busybox, Flavour::Debian]);
        assert!(two.contains(&"busybox::confinement".to_string()));
        assert!(!two.contains(&"debian::confinement".to_string()));
        assert!(two.contains(&"debian::users".to_string()));
    }
}
