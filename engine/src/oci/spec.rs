//! `spec`: the default config.json that `runc spec` writes (runc 1.1's
//! `specconv.Example`, and `ToRootless` with `--rootless`), byte for byte,
//! so tools and people that start from runc's get the same file.

use anyhow::{anyhow, Context};
use serde::ser::{Serialize, SerializeMap, Serializer};
use std::path::Path;

/// JSON whose objects keep their keys in the order given, as Go's encoder
/// writes a struct's fields (serde_json's own map sorts them).
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Obj(Vec<(&'static str, Json)>),
    Arr(Vec<Json>),
    Str(String),
    Num(u64),
    Bool(bool),
}

impl Serialize for Json {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Json::Obj(fields) => {
                let mut map = s.serialize_map(Some(fields.len()))?;
                for (k, v) in fields {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
            Json::Arr(items) => items.serialize(s),
            Json::Str(t) => s.serialize_str(t),
            Json::Num(n) => s.serialize_u64(*n),
            Json::Bool(b) => s.serialize_bool(*b),
        }
    }
}

fn obj(fields: Vec<(&'static str, Json)>) -> Json {
    Json::Obj(fields)
}

fn st(text: &str) -> Json {
    Json::Str(text.to_string())
}

fn strs(items: &[&str]) -> Json {
    Json::Arr(items.iter().map(|t| st(t)).collect())
}

fn mount(destination: &str, kind: &str, source: &str, options: &[&str]) -> Json {
    let mut fields = vec![
        ("destination", st(destination)),
        ("type", st(kind)),
        ("source", st(source)),
    ];
    if !options.is_empty() {
        fields.push(("options", strs(options)));
    }
    obj(fields)
}

/// runc's example config; with `rootless`, runc's changes for a user
/// without privileges (a user namespace mapping the caller, no network
/// namespace, /sys bound from the host, no cgroup device rules).
pub fn default_config(rootless: bool) -> Json {
    let caps = || strs(&["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    let mut devpts = vec![
        "nosuid",
        "noexec",
        "newinstance",
        "ptmxmode=0666",
        "mode=0620",
    ];
    let mut namespaces = vec!["pid", "network", "ipc", "uts", "mount"];
    if cgroup2_unified() {
        namespaces.push("cgroup");
    }
    let sys = if rootless {
        namespaces.retain(|n| *n != "network");
        namespaces.push("user");
        mount(
            "/sys",
            "none",
            "/sys",
            &["rbind", "nosuid", "noexec", "nodev", "ro"],
        )
    } else {
        devpts.push("gid=5");
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        )
    };
    let mut linux = Vec::new();
    if rootless {
        let me = |id: u32| {
            Json::Arr(vec![obj(vec![
                ("containerID", Json::Num(0)),
                ("hostID", Json::Num(id.into())),
                ("size", Json::Num(1)),
            ])])
        };
        linux.push(("uidMappings", me(rustix::process::geteuid().as_raw())));
        linux.push(("gidMappings", me(rustix::process::getegid().as_raw())));
    } else {
        let deny_all = obj(vec![("allow", Json::Bool(false)), ("access", st("rwm"))]);
        linux.push((
            "resources",
            obj(vec![("devices", Json::Arr(vec![deny_all]))]),
        ));
    }
    let namespaces = namespaces.iter().map(|t| obj(vec![("type", st(t))]));
    linux.push(("namespaces", Json::Arr(namespaces.collect())));
    linux.push((
        "maskedPaths",
        strs(&[
            "/proc/acpi",
            "/proc/asound",
            "/proc/kcore",
            "/proc/keys",
            "/proc/latency_stats",
            "/proc/timer_list",
            "/proc/timer_stats",
            "/proc/sched_debug",
            "/sys/firmware",
            "/proc/scsi",
        ]),
    ));
    linux.push((
        "readonlyPaths",
        strs(&[
            "/proc/bus",
            "/proc/fs",
            "/proc/irq",
            "/proc/sys",
            "/proc/sysrq-trigger",
        ]),
    ));
    let process = obj(vec![
        ("terminal", Json::Bool(true)),
        (
            "user",
            obj(vec![("uid", Json::Num(0)), ("gid", Json::Num(0))]),
        ),
        ("args", strs(&["sh"])),
        (
            "env",
            strs(&[
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm",
            ]),
        ),
        ("cwd", st("/")),
        (
            "capabilities",
            obj(vec![
                ("bounding", caps()),
                ("effective", caps()),
                ("permitted", caps()),
                ("ambient", caps()),
            ]),
        ),
        (
            "rlimits",
            Json::Arr(vec![obj(vec![
                ("type", st("RLIMIT_NOFILE")),
                ("hard", Json::Num(1024)),
                ("soft", Json::Num(1024)),
            ])]),
        ),
        ("noNewPrivileges", Json::Bool(true)),
    ]);
    let mounts = vec![
        mount("/proc", "proc", "proc", &[]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount("/dev/pts", "devpts", "devpts", &devpts),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        sys,
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", "ro"],
        ),
    ];
    obj(vec![
        ("ociVersion", st("1.0.2-dev")),
        ("process", process),
        (
            "root",
            obj(vec![("path", st("rootfs")), ("readonly", Json::Bool(true))]),
        ),
        ("hostname", st("runc")),
        ("mounts", Json::Arr(mounts)),
        ("linux", obj(linux)),
    ])
}

/// runc adds a cgroup namespace where /sys/fs/cgroup is cgroup v2 alone.
fn cgroup2_unified() -> bool {
    const CGROUP2_SUPER_MAGIC: u64 = 0x6367_7270;
    rustix::fs::statfs("/sys/fs/cgroup").is_ok_and(|s| s.f_type as u64 == CGROUP2_SUPER_MAGIC)
}

/// Writes BUNDLE/config.json as runc does (tab-indented, no final
/// newline); an existing one is kept and refused with runc's sentence.
pub fn write(bundle: &Path, rootless: bool) -> Result<(), super::Error> {
    if !bundle.is_dir() {
        return Err(anyhow!(
            "bundle {} is not a directory: give --bundle a directory that exists",
            bundle.display()
        )
        .into());
    }
    let file = bundle.join("config.json");
    if file.symlink_metadata().is_ok() {
        return Err(super::Error::ConfigExists);
    }
    let mut text = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(
        &mut text,
        serde_json::ser::PrettyFormatter::with_indent(b"\t"),
    );
    default_config(rootless)
        .serialize(&mut ser)
        .context("cannot serialize the default config")?;
    // create_new: a file made since the check above is not overwritten.
    std::fs::File::options()
        .write(true)
        .create_new(true)
        .open(&file)
        .and_then(|mut f| std::io::Write::write_all(&mut f, &text))
        .with_context(|| format!("cannot write {}", file.display()))?;
    Ok(())
}
