//! The container's mount steps as data: what is mounted where, in which
//! order, with which flags and options, from the spec (`engine run`) and an
//! OCI bundle's extras (its config's mounts, masked and read-only paths).
//! Pure, so the order and the options have table tests without root; the
//! child's `mounts` performs the steps on fds inside the root.

use crate::model::bundle::{Extras, MountEntry, TmpfsMount};
use crate::model::volumes::Volume;
use std::path::PathBuf;

/// What a masked path is: a file gets /dev/null over it, a directory an
/// empty read-only tmpfs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    File,
    Dir,
}

/// runc's masked paths. Their kinds are the kernel's (a fresh proc and
/// sysfs, nothing of the rootfs), so no stat is needed to tell them apart.
const MASKED: [(&str, Kind); 10] = [
    ("/proc/acpi", Kind::Dir),
    ("/proc/kcore", Kind::File),
    ("/proc/keys", Kind::File),
    ("/proc/latency_stats", Kind::File),
    ("/proc/timer_list", Kind::File),
    ("/proc/timer_stats", Kind::File),
    ("/proc/sched_debug", Kind::File),
    ("/proc/scsi", Kind::Dir),
    ("/sys/firmware", Kind::Dir),
    ("/sys/devices/virtual/powercap", Kind::Dir),
];

/// runc's read-only paths (recursively read-only).
const READ_ONLY: [&str; 6] = [
    "/proc/asound",
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// One mount of the container's tree, on the root that the layer (or the
/// rootfs itself) already is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum MountStep {
    /// proc on /proc, nosuid, nodev, noexec.
    Proc,
    /// sysfs on /sys, read-only, nosuid, nodev, noexec.
    Sys,
    /// The container's own cgroup2 on /sys/fs/cgroup, read-only; best
    /// effort (the host has cgroup v2).
    Cgroup2,
    /// /dev: a tmpfs with the usual nodes bound from the host, devpts, shm,
    /// mqueue and the standard links (`dev::build_dev`).
    Dev,
    /// The engine's resolv.conf, hosts and hostname (bridged containers).
    EtcFiles,
    /// The spec's volume `index` (a tree the parent sent) on `target`,
    /// then its bundle's `propagation` (MS_* flags, 0 for none).
    Volume {
        index: usize,
        target: PathBuf,
        propagation: u64,
    },
    /// A bundle's tmpfs.
    Tmpfs(TmpfsMount),
    /// A masked path; `kind` None: whatever the rootfs has there.
    Mask { path: String, kind: Option<Kind> },
    /// A path made read-only with every mount below it.
    ReadOnly(String),
}

/// The mount steps, and what comes after pivot_root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct MountPlan {
    pub steps: Vec<MountStep>,
    /// root.readonly: the root mount alone becomes read-only.
    pub readonly_root: bool,
    /// linux.rootfsPropagation (MS_* flags, 0 for none), applied to `/`
    /// after pivot_root, as runc does: `/` of the new mount namespace stays
    /// a slave of the host's until then, so even a shared root never
    /// sends the container's mounts to the host.
    pub root_propagation: u64,
}

/// What `engine run` asks beyond its volumes: `--tmpfs` (and `--mount
/// type=tmpfs`) and `--read-only`.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct RunMounts<'a> {
    pub tmpfs: &'a [TmpfsMount],
    pub readonly_root: bool,
}

/// The steps for a container with `volumes` and `run`'s mounts; `extras`
/// for an OCI bundle; `etc_files` when the engine sends its /etc files;
/// `cgroup2` when the host has cgroup v2.
pub(super) fn plan(
    volumes: &[Volume],
    run: RunMounts,
    extras: Option<&Extras>,
    etc_files: bool,
    cgroup2: bool,
) -> MountPlan {
    let mut steps = match extras {
        Some(e) if !e.mounts.is_empty() => in_config_order(e, volumes, cgroup2),
        _ => engine_order(volumes, run.tmpfs, extras, etc_files, cgroup2),
    };
    masks_and_read_only(&mut steps, extras);
    MountPlan {
        steps,
        readonly_root: run.readonly_root || extras.is_some_and(|e| e.readonly_root),
        root_propagation: extras.map_or(0, |e| e.rootfs_propagation),
    }
}

/// `engine run`'s order (and a bundle's with no mounts): the kernel's file
/// systems, /dev, the /etc files, the volumes, a bundle's tmpfs mounts.
fn engine_order(
    volumes: &[Volume],
    tmpfs: &[TmpfsMount],
    extras: Option<&Extras>,
    etc_files: bool,
    cgroup2: bool,
) -> Vec<MountStep> {
    let mut steps = vec![MountStep::Proc, MountStep::Sys];
    if cgroup2 {
        steps.push(MountStep::Cgroup2);
    }
    steps.push(MountStep::Dev);
    // Before the volumes, so a user's `-v FILE:/etc/hosts` wins.
    if etc_files {
        steps.push(MountStep::EtcFiles);
    }
    let mut users: Vec<MountStep> = volumes
        .iter()
        .enumerate()
        .map(|(index, v)| MountStep::Volume {
            index,
            target: v.container.clone(),
            propagation: bind_propagation(extras, index),
        })
        .chain(tmpfs.iter().cloned().map(MountStep::Tmpfs))
        .collect();
    // docker's order: a mount before the ones inside it (`--tmpfs /data`
    // before `-v DIR:/data/in`), else as given (a stable sort).
    users.sort_by_key(|step| match step {
        MountStep::Volume { target, .. } => target.components().count(),
        MountStep::Tmpfs(t) => t.destination.components().count(),
        _ => 0,
    });
    steps.extend(users);
    if let Some(extras) = extras {
        steps.extend(extras.tmpfs.iter().cloned().map(MountStep::Tmpfs));
    }
    steps
}

/// A bundle's mounts in the order its config lists them (the runtime-spec's
/// MUST), the engine's own /proc, /sys and /dev where they are listed. What
/// the engine always makes but the config does not list comes first:
/// later mounts may go inside it. The cgroup file system goes where it is
/// listed, else right after /sys.
fn in_config_order(extras: &Extras, volumes: &[Volume], cgroup2: bool) -> Vec<MountStep> {
    let listed = |entry: MountEntry| extras.mounts.contains(&entry);
    let mut steps = Vec::new();
    if !listed(MountEntry::Proc) {
        steps.push(MountStep::Proc);
    }
    if !listed(MountEntry::Sys) {
        steps.push(MountStep::Sys);
        if cgroup2 && !listed(MountEntry::Cgroup) {
            steps.push(MountStep::Cgroup2);
        }
    }
    if !listed(MountEntry::Dev) {
        steps.push(MountStep::Dev);
    }
    let mut dev_made = false;
    for entry in &extras.mounts {
        match *entry {
            MountEntry::Proc => steps.push(MountStep::Proc),
            MountEntry::Sys => {
                steps.push(MountStep::Sys);
                if cgroup2 && !listed(MountEntry::Cgroup) {
                    steps.push(MountStep::Cgroup2);
                }
            }
            MountEntry::Cgroup if cgroup2 => steps.push(MountStep::Cgroup2),
            MountEntry::Cgroup => {}
            MountEntry::Dev if !dev_made => {
                dev_made = true;
                steps.push(MountStep::Dev);
            }
            MountEntry::Dev => {}
            MountEntry::Volume(index) => {
                steps.extend(volumes.get(index).map(|v| MountStep::Volume {
                    index,
                    target: v.container.clone(),
                    propagation: bind_propagation(Some(extras), index),
                }))
            }
            MountEntry::Tmpfs(index) => {
                steps.extend(extras.tmpfs.get(index).cloned().map(MountStep::Tmpfs))
            }
        }
    }
    steps
}

/// The propagation a bundle asks of its volume `index`.
fn bind_propagation(extras: Option<&Extras>, index: usize) -> u64 {
    extras
        .and_then(|e| e.binds.get(index))
        .map_or(0, |b| b.propagation)
}

/// runc's masked and read-only paths, then a bundle's: last, over
/// everything else.
fn masks_and_read_only(steps: &mut Vec<MountStep>, extras: Option<&Extras>) {
    let (masked, readonly): (&[String], &[String]) = match extras {
        Some(e) => (&e.masked, &e.readonly),
        None => (&[], &[]),
    };
    steps.extend(MASKED.iter().map(|&(path, kind)| MountStep::Mask {
        path: path.to_string(),
        kind: Some(kind),
    }));
    steps.extend(masked.iter().map(|path| MountStep::Mask {
        path: path.clone(),
        kind: None,
    }));
    steps.extend(
        READ_ONLY
            .iter()
            .map(|p| p.to_string())
            .chain(readonly.iter().cloned())
            .map(MountStep::ReadOnly),
    );
}

#[cfg(test)]
mod tests {
    use super::MountStep::{Cgroup2, Dev, EtcFiles, Mask, Proc, ReadOnly, Sys, Tmpfs};
    use super::*;

    fn volume(container: &str) -> Volume {
        Volume {
            host: PathBuf::from("/srv/data"),
            container: PathBuf::from(container),
            readonly: false,
            owner: Default::default(),
        }
    }

    fn tmpfs(destination: &str, flags: u64, data: &str) -> TmpfsMount {
        TmpfsMount {
            destination: PathBuf::from(destination),
            flags,
            data: data.to_string(),
            propagation: 0,
            copy_up: false,
        }
    }

    /// The steps before the masks (the masks and read-only paths are the
    /// same 16 at the end of every plan, tested on their own).
    fn head(plan: &MountPlan) -> Vec<MountStep> {
        plan.steps[..plan.steps.len() - MASKED.len() - READ_ONLY.len()].to_vec()
    }

    fn volume_step(index: usize, target: &str) -> MountStep {
        MountStep::Volume {
            index,
            target: PathBuf::from(target),
            propagation: 0,
        }
    }

    /// `engine run`: the kernel's file systems, /dev, the engine's /etc
    /// files, then the volumes in the order given.
    #[test]
    fn native_plans() {
        let two = [volume("/data"), volume("/etc/hosts")];
        let cases: &[(&[Volume], bool, bool, &[MountStep])] = &[
            (&[], false, false, &[Proc, Sys, Dev]),
            (&[], false, true, &[Proc, Sys, Cgroup2, Dev]),
            (&[], true, false, &[Proc, Sys, Dev, EtcFiles]),
            (
                &two,
                true,
                true,
                &[
                    Proc,
                    Sys,
                    Cgroup2,
                    Dev,
                    EtcFiles,
                    volume_step(0, "/data"),
                    volume_step(1, "/etc/hosts"),
                ],
            ),
        ];
        for (volumes, etc, cgroup2, want) in cases {
            let plan = plan(volumes, RunMounts::default(), None, *etc, *cgroup2);
            assert_eq!(head(&plan), *want, "etc {etc} cgroup2 {cgroup2}");
            assert!(!plan.readonly_root);
        }
    }

    /// `--tmpfs` and `--mount` among the volumes, a mount before those
    /// inside it whatever the order given; `--read-only` on the root alone.
    #[test]
    fn run_s_tmpfs_and_read_only() {
        let vols = [volume("/data/in"), volume("/srv")];
        let data = tmpfs("/data", 0, "size=1m");
        let deep = tmpfs("/srv/a/b", 0, "");
        let run = RunMounts {
            tmpfs: &[deep.clone(), data.clone()],
            readonly_root: true,
        };
        let plan = plan(&vols, run, None, false, false);
        assert!(plan.readonly_root);
        assert_eq!(
            head(&plan),
            [
                Proc,
                Sys,
                Dev,
                volume_step(1, "/srv"),
                Tmpfs(data),
                volume_step(0, "/data/in"),
                Tmpfs(deep),
            ]
        );
    }

    /// runc's masks (kinds known), then its read-only paths, last.
    #[test]
    fn runc_s_masks_and_read_only_paths_come_last() {
        let plan = plan(
            &[volume("/proc/x")],
            RunMounts::default(),
            None,
            false,
            false,
        );
        let tail = &plan.steps[plan.steps.len() - 16..];
        assert_eq!(
            tail[0],
            Mask {
                path: "/proc/acpi".into(),
                kind: Some(Kind::Dir)
            }
        );
        assert_eq!(
            tail[1],
            Mask {
                path: "/proc/kcore".into(),
                kind: Some(Kind::File)
            }
        );
        assert_eq!(tail[10], ReadOnly("/proc/asound".into()));
        assert_eq!(tail[14], ReadOnly("/proc/sys".into()));
        assert_eq!(tail[15], ReadOnly("/proc/sysrq-trigger".into()));
    }

    /// A bundle's mounts in its config's order, the engine's own /proc,
    /// /sys and /dev included where listed; what is not listed first.
    #[test]
    fn oci_mounts_in_the_config_s_order() {
        use MountEntry as E;
        let vols = [volume("/data"), volume("/dev/shm")];
        let run = tmpfs("/run", 0, "");
        let cases: &[(&[MountEntry], bool, &[MountStep])] = &[
            // runc spec's order: /dev and its three before /sys.
            (
                &[E::Proc, E::Dev, E::Dev, E::Dev, E::Dev, E::Sys, E::Cgroup],
                true,
                &[Proc, Dev, Sys, Cgroup2],
            ),
            (
                &[E::Proc, E::Dev, E::Sys, E::Cgroup],
                false,
                &[Proc, Dev, Sys],
            ),
            // The cgroup file system right after /sys when not listed.
            (&[E::Sys, E::Dev, E::Proc], true, &[Sys, Cgroup2, Dev, Proc]),
            // Not listed: first, in the engine's order.
            (
                &[E::Tmpfs(0), E::Volume(1), E::Proc, E::Volume(0)],
                true,
                &[
                    Sys,
                    Cgroup2,
                    Dev,
                    Tmpfs(run.clone()),
                    volume_step(1, "/dev/shm"),
                    Proc,
                    volume_step(0, "/data"),
                ],
            ),
            // podman's: a bind on /dev/shm after the engine's /dev.
            (
                &[E::Proc, E::Dev, E::Dev, E::Volume(1), E::Sys, E::Volume(0)],
                false,
                &[
                    Proc,
                    Dev,
                    volume_step(1, "/dev/shm"),
                    Sys,
                    volume_step(0, "/data"),
                ],
            ),
        ];
        for (mounts, cgroup2, want) in cases {
            let extras = Extras {
                mounts: mounts.to_vec(),
                tmpfs: vec![run.clone()],
                ..Extras::default()
            };
            let plan = plan(&vols, RunMounts::default(), Some(&extras), false, *cgroup2);
            assert_eq!(head(&plan), *want, "{mounts:?}");
        }
    }

    /// A bundle's tmpfs mounts, masked and read-only paths, and
    /// root.readonly.
    #[test]
    fn oci_plans() {
        let extras = Extras {
            tmpfs: vec![tmpfs("/run", libc::MS_NOSUID, "size=1m")],
            masked: vec!["/proc/cpuinfo".into(), "/data/secret".into()],
            readonly: vec!["/data/ro".into()],
            readonly_root: true,
            ..Extras::default()
        };
        let plan = plan(
            &[volume("/data")],
            RunMounts::default(),
            Some(&extras),
            false,
            false,
        );
        assert!(plan.readonly_root);
        assert_eq!(
            head(&plan)[..5],
            [
                Proc,
                Sys,
                Dev,
                volume_step(0, "/data"),
                Tmpfs(tmpfs("/run", libc::MS_NOSUID, "size=1m")),
            ]
        );
        let masks: Vec<_> = plan
            .steps
            .iter()
            .filter_map(|s| match s {
                Mask { path, kind: None } => Some(path.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(masks, ["/proc/cpuinfo", "/data/secret"]);
        assert_eq!(plan.steps.last(), Some(&ReadOnly("/data/ro".into())));
    }
}
