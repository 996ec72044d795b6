//! Part of scenario `confinement` (issue 22, items 8 and 9): what a
//! container's mounts do to the host, on the guest's kernel.
//!
//! - No mount of a container appears in the host's namespace. The guest's
//!   `/` is shared, as on a systemd host (vm's init makes it so); the check
//!   itself works in a mount namespace of its own made rshared
//!   (`testkit::mountns::in_shared`), so that it holds the same wherever the
//!   runner runs and a leak never reaches the runner's namespace. The rootfs
//!   and the volumes are plain directories and mount points; `run`, `run
//!   --write-through`, `run -v`, a container mounting into its volumes,
//!   `exec`, and OCI `create`/`start`/`delete` each must succeed and leave
//!   that namespace's mounts as they were.
//! - A setuid file container root leaves in a directory volume does not
//!   lift another process of the container (the volume is nosuid).

use super::Ctx;
use crate::engine::{Env, RUN_TIMEOUT};
use crate::process;
use anyhow::{bail, Context, Result};
use nix::mount::{mount, MsFlags};
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use testkit::mountns::{in_shared, Mounts};

/// Where the probe (attack.c) is inside the containers, from `probe_volume`.
const PROBE: &str = "/.attack/attack";

/// Changes of the namespace's mounts and failures, step by step.
struct Ledger {
    base: Mounts,
    found: Vec<String>,
}

impl Ledger {
    fn check(&mut self, what: &str) {
        let now = Mounts::now();
        let changes = now.changes_since(&self.base);
        if !changes.is_empty() {
            self.found.push(format!(
                "9: after {what}, {} mount(s) changed in the host's namespace:\n    {}",
                changes.len(),
                changes.join("\n    ")
            ));
            self.base = now;
        }
    }

    /// `engine ARGS` must succeed, printing `want` when given; then `check`.
    fn engine(&mut self, env: &Env, args: &[&str], want: Option<&str>) -> Result<()> {
        let what = format!("engine {}", args.join(" "));
        let out = process::run(&mut env.command(args), RUN_TIMEOUT)?;
        let text = format!("{}{}", out.stdout, out.stderr);
        if !out.status.success() {
            self.found.push(format!("9: {what} failed:\n{out}"));
        } else if let Some(want) = want.filter(|w| !text.contains(w)) {
            self.found
                .push(format!("9: {what} did not print {want:?}:\n{out}"));
        }
        self.check(&what);
        Ok(())
    }
}

/// Issue 22 item 9, with the rootfs a plain directory, then a mount point.
pub(super) fn mounts_stay_in_containers(ctx: &Ctx, env: &Env) -> Result<Vec<String>> {
    let dir = ctx.settings.scratch.join("host-mounts").join(&env.tag);
    let mut found = Vec::new();
    for (kind, is_mount) in [("plain", false), ("mount-point", true)] {
        let dir = dir.join(kind);
        found.extend(in_shared(|| one_host(ctx, env, &dir, is_mount))?);
    }
    Ok(found)
}

fn mkdir(path: &Path, mode: u32) -> Result<()> {
    std::fs::create_dir_all(path).with_context(|| format!("cannot create {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot chmod {}", path.display()))
}

/// Called on the thread in the shared namespace: the sources' mounts are
/// made there, and vanish with it.
fn one_host(ctx: &Ctx, env: &Env, dir: &Path, rootfs_is_mount: bool) -> Result<Vec<String>> {
    mkdir(dir, 0o755)?;
    // A copy: write-through writes into it.
    let root = dir.join("rootfs");
    process::run(
        Command::new("cp").arg("-a").arg(ctx.rootfs()).arg(&root),
        RUN_TIMEOUT,
    )?
    .expect_success("cp -a the fixture rootfs")?;
    if rootfs_is_mount {
        mount(
            Some(&root),
            &root,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .context("cannot bind-mount the rootfs copy onto itself")?;
    }
    let (vol, volmp) = (dir.join("vol"), dir.join("volmp"));
    mkdir(&vol, 0o755)?;
    mkdir(&volmp, 0o755)?;
    mount(
        Some("tmpfs"),
        &volmp,
        Some("tmpfs"),
        MsFlags::empty(),
        Some("size=1m,mode=755"),
    )
    .context("cannot mount a tmpfs volume")?;
    for v in [&vol, &volmp] {
        mkdir(&v.join("sub"), 0o755)?;
        std::fs::write(v.join("marker"), "volume-marker\n")?;
    }
    let root_s = root.to_str().context("a UTF-8 scratch path")?;
    let vols = [
        "-v".to_string(),
        format!("{}:/vol", vol.display()),
        "-v".to_string(),
        format!("{}:/volmp", volmp.display()),
    ];
    let vols: Vec<&str> = vols.iter().map(String::as_str).collect();
    let mut ledger = Ledger {
        base: Mounts::now(),
        found: Vec::new(),
    };
    // Container root that may mount: onto each volume and under it.
    let mounts = "mount -t tmpfs none /vol/sub && mount -t tmpfs none /volmp/sub \
                  && mount -t tmpfs none /vol && mount -t tmpfs none /volmp && echo mounted";
    for layer in [&[][..], &["--write-through"][..]] {
        let args = [
            &["run", "--net", "none", "--privileged"][..],
            layer,
            &vols,
            &[root_s, "--", "sh", "-c", mounts],
        ]
        .concat();
        ledger.engine(env, &args, Some("mounted"))?;
    }
    let name = "conf-mnt";
    let detached = [
        &["run", "-d", "--net", "none", "--write-through"][..],
        &vols,
        &["--name", name, root_s, "--", "sleep", "600"],
    ]
    .concat();
    ledger.engine(env, &detached, None)?;
    let cat = ["exec", name, "--", "cat", "/vol/marker", "/volmp/marker"];
    ledger.engine(env, &cat, Some("volume-marker"))?;
    ledger.engine(env, &["rm", "-f", name], None)?;
    oci_cycle(env, dir, &root, &vol, &volmp, &mut ledger)?;
    Ok(ledger.found)
}

/// OCI `create`/`start`/`delete` of a bundle on `root` with both volumes
/// bound in (one with no propagation option, one `rprivate`).
fn oci_cycle(
    env: &Env,
    dir: &Path,
    root: &Path,
    vol: &Path,
    volmp: &Path,
    ledger: &mut Ledger,
) -> Result<()> {
    let bundle = dir.join("bundle");
    mkdir(&bundle, 0o755)?;
    let config = json!({
        "ociVersion": "1.0.2",
        "process": {
            "user": {"uid": 0, "gid": 0},
            "args": ["sh", "-c", "cat /vol/marker /volmp/marker; exec sleep 600"],
            "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
            "cwd": "/",
            "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"]},
            "noNewPrivileges": true
        },
        "root": {"path": root, "readonly": true},
        "hostname": "conf-mnt",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/vol", "type": "bind", "source": vol, "options": ["rbind", "nosuid", "nodev"]},
            {"destination": "/volmp", "type": "bind", "source": volmp, "options": ["rbind", "rprivate"]}
        ],
        "linux": {
            "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}],
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/sys/firmware"],
            "readonlyPaths": ["/proc/bus", "/proc/sys", "/proc/sysrq-trigger"]
        }
    });
    std::fs::write(bundle.join("config.json"), serde_json::to_vec(&config)?)?;
    let state = dir.join("oci-root");
    let out = dir.join("oci.out");
    let id = "conf-mnt-oci";
    let bundle_s = bundle.to_str().context("a UTF-8 scratch path")?;
    let steps: [&[&str]; 3] = [
        &["create", "--bundle", bundle_s, id],
        &["start", id],
        &["delete", "--force", id],
    ];
    for args in steps {
        let what = format!("engine {}", args.join(" "));
        let mut cmd = env.command(&[&["--root", state.to_str().unwrap()], args].concat());
        // The init inherits create's stdio: a file, not a pipe we would wait on.
        let log = || {
            std::fs::File::options()
                .create(true)
                .append(true)
                .open(&out)
        };
        cmd.stdin(Stdio::null()).stdout(log()?).stderr(log()?);
        let status = testkit::wait::child(&mut cmd.spawn()?, RUN_TIMEOUT)?;
        if !status.success() {
            let text = std::fs::read_to_string(&out).unwrap_or_default();
            ledger
                .found
                .push(format!("9: {what} failed ({status}):\n{}", text.trim()));
        }
        if args[0] == "start" && status.success() {
            let seen = testkit::wait::poll_until(RUN_TIMEOUT, "the OCI container's output", || {
                let text = std::fs::read_to_string(&out).unwrap_or_default();
                (text.matches("volume-marker").count() == 2).then_some(())
            });
            if seen.is_err() {
                ledger.found.push(format!(
                    "9: the OCI container did not print both volumes' markers:\n{}",
                    std::fs::read_to_string(&out).unwrap_or_default().trim()
                ));
            }
        }
        ledger.check(&what);
    }
    Ok(())
}

/// Issue 22 item 8: container root leaves a setuid copy of the probe in a
/// directory volume and runs it as uid 1000 (attack.c `setuid-as`); under
/// `--userns host` and the default user namespace.
pub(super) fn setuid_in_a_volume(ctx: &Ctx, env: &Env, probe_volume: &str) -> Result<Vec<String>> {
    let mut found = Vec::new();
    for (tag, extra) in [("host", &["--userns", "host"][..]), ("default", &[][..])] {
        let vol: PathBuf = ctx
            .settings
            .scratch
            .join("setuid-vol")
            .join(format!("{}-{tag}", env.tag));
        // Container root under the default user namespace is an
        // unprivileged host uid: it may write here.
        mkdir(&vol, 0o777)?;
        let volume = format!("{}:/vol", vol.display());
        let script = format!(
            "cp {PROBE} /vol/p && chmod 4755 /vol/p && {PROBE} setuid-as 1000 /vol/p; \
             grep ' /vol ' /proc/self/mountinfo"
        );
        let args = [
            &["run", "--net", "none", "-v", &volume, "-v", probe_volume][..],
            extra,
            &[ctx.rootfs().to_str().unwrap(), "--", "sh", "-c", &script],
        ]
        .concat();
        let out = process::run(&mut env.command(&args), RUN_TIMEOUT)?;
        let setuid = std::fs::metadata(vol.join("p"))
            .map(|m| m.permissions().mode() & 0o4000 != 0)
            .unwrap_or(false);
        let euid = out
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("euid "))
            .map(str::trim);
        println!("    setuid in a volume ({tag}): setuid file {setuid}, euid {euid:?}");
        if !setuid || euid.is_none() {
            bail!("the setuid attack ({tag}) could not be set up:\n{out}");
        }
        if euid != Some("1000") {
            found.push(format!(
                "8 ({tag}): a setuid file container root left in a volume lifted uid 1000 to euid {}:\n{out}",
                euid.unwrap_or("?")
            ));
        }
    }
    Ok(found)
}
