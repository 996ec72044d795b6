//! The failpoint walk (issue 13). Built only with `--features failpoints`
//! (`cargo test -p engine --features failpoints --test failpoints`).
//!
//! The failpoints are listed from the source (every `step!`/`child_step!`
//! literal under engine/src). A traced normal run of each scenario below
//! (`ENGINE_FAILPOINTS_TRACE`) says which failpoints it passes; together
//! they must pass every listed one. Then each failpoint is walked in the
//! first scenario that passes it, in both modes:
//! - `return`: the command exits 125 naming the failpoint (as documented),
//!   and has left nothing behind, checked before any other engine runs
//!   (every invocation recovers what dead engines left, which would hide a
//!   leak of the failing one);
//! - `return(kill)`: the engine SIGKILLs itself there; the next invocation
//!   (`engine ps`; the same command for setup, teardown and pull) succeeds
//!   and leaves nothing behind, and the scenario then runs normally.
//!
//! The OCI verbs (create, start, exec, kill, delete --force) are walked
//! too, as podman and containerd call them: a failure exits 1 (runc's
//! code) naming the failpoint and leaves nothing new; after a SIGKILL,
//! `delete --force` (what those callers run next) leaves nothing at all.
//!
//! Then the case's container is stopped (that must work) and the host torn
//! down, and nothing of the case may be left at all.
//!
//! "Nothing" is: no state record (the lease of the address; a kept
//! container's, in the data directory, counts too), no OCI
//! container directory (state.json, exec.fifo) under the case's --root, no host-wide
//! lease of host IDs (under /run/engine-userns) naming the case's state
//! directory, temp file, `.etc` or `.layer` directory (a kept container's
//! writable layer) or `.stopped` mark, no mount under the state directory, no
//! process of the case, no cgroup leaf, no veth, no nftables chain of the
//! container, no partial rootfs. Logs of detached containers are kept by
//! design (docs/cli.md: until the name is reused or teardown) and not counted.
//!
//! Every case has its own state directory and a container name unique to
//! the walk process, and runs in a thread that entered a private network
//! namespace (bridges, veths and nftables rules exist only there). Two
//! threads take cases from one queue; the walk takes 35-65 s on this
//! 2-core machine (over the 10 s guideline: it is ~200 engine scenarios,
//! each a handful of engine starts; `--nocapture` shows the time per
//! scenario). Deadlines (a hung engine, what settles in the background)
//! are only waited out in failure.

mod common;
use common::*;

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const BRIDGE: &str = "fpbr0";
const SUBNET: &str = "10.231.0.0/24";
const THREADS: usize = 2;
/// Only a hung engine waits this out (a case takes about a second).
const ENGINE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long what the kernel and a supervisor remove in the background may
/// take to go once the command has returned; only waited out in failure.
const SETTLE: Duration = Duration::from_secs(3);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Scenario {
    /// Foreground, bridged, one published port, a pty.
    Run,
    RunDetached,
    Exec,
    Stop,
    Kill,
    /// `rm -f` of a running detached container (stopped, then its kept
    /// record and log removed).
    Rm,
    /// `teardown --force` with a running container.
    Teardown,
    Setup,
    PullBusybox,
    PullFile,
    /// `engine pull oci-archive:FILE` of a two-layer image into the case's
    /// own image store.
    ImagePull,
    /// The OCI verbs, as podman and containerd's shim call them (runc's
    /// command line, a --root of the case's own, a bundle on the busybox
    /// rootfs).
    OciCreate,
    /// `start` of a created container.
    OciStart,
    /// `exec` in a running one.
    OciExec,
    /// `kill ID TERM` of a running one.
    OciKill,
    /// `kill --all ID KILL` of a running one.
    OciKillAll,
    /// `delete --force` of a running one.
    OciDelete,
}

use Scenario::*;

/// In walking order: a failpoint is walked in the first that passes it.
const SCENARIOS: [Scenario; 17] = [
    Run,
    RunDetached,
    Exec,
    Stop,
    Kill,
    Rm,
    Teardown,
    Setup,
    PullBusybox,
    PullFile,
    ImagePull,
    OciCreate,
    OciStart,
    OciExec,
    OciKill,
    OciKillAll,
    OciDelete,
];

impl Scenario {
    fn is_oci(self) -> bool {
        matches!(
            self,
            OciCreate | OciStart | OciExec | OciKill | OciKillAll | OciDelete
        )
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Error,
    Kill,
}

/// One case's private world.
struct Case {
    env: Engine,
    /// The container's name: unique over the whole walk, so its processes
    /// can be told from every other case's.
    name: String,
    _tmp: tempfile::TempDir,
    dest: PathBuf,
}

type Check = Result<(), String>;

fn ensure(ok: bool, what: impl FnOnce() -> String) -> Check {
    if ok {
        Ok(())
    } else {
        Err(what())
    }
}

impl Case {
    fn new(name: String) -> Case {
        let tmp = tempfile::tempdir_in(busybox::scratch_root()).unwrap();
        write_bundle(&tmp.path().join("bundle"), &name);
        Case {
            env: engine("fp")
                .with_network(BRIDGE, SUBNET)
                .with_timeout(ENGINE_TIMEOUT)
                .with_env("ENGINE_IMAGE_STORE", tmp.path().join("images")),
            dest: tmp.path().join("root"),
            _tmp: tmp,
            name,
        }
    }

    /// `engine ARGS` with `FAILPOINTS` (empty: none) and an optional trace.
    fn engine(&self, args: &[String], failpoints: &str, trace: Option<&Path>) -> Output {
        if args.first().is_some_and(|a| a == "--root") {
            return self.oci_engine(args, failpoints, trace);
        }
        let mut cmd = self.env.cmd();
        cmd.args(args).env("FAILPOINTS", failpoints);
        if let Some(t) = trace {
            cmd.env("ENGINE_FAILPOINTS_TRACE", t);
        }
        let started = Instant::now();
        let out = cmd.output().expect("run the engine");
        use std::os::unix::process::ExitStatusExt;
        let mut stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if started.elapsed() >= ENGINE_TIMEOUT {
            // assert_cmd SIGKILLs a command that outlives its timeout: that
            // must not pass for an engine that killed itself at a failpoint.
            return Output {
                code: None,
                stderr: format!("timed out after {ENGINE_TIMEOUT:?} (hung): {stderr}"),
            };
        }
        if stderr.is_empty() {
            stderr = "(no stderr)".into();
        }
        Output {
            // Killed by signal N: 128+N, as a shell reports it.
            code: out.status.code().or(out.status.signal().map(|n| 128 + n)),
            stderr,
        }
    }

    /// runc's command line: stdout and stderr go to files, as an OCI
    /// container's init inherits them (a pipe would stay open after `create`).
    fn oci_engine(&self, args: &[String], failpoints: &str, trace: Option<&Path>) -> Output {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (out, err) = (
            self._tmp.path().join(format!("out.{n}")),
            self._tmp.path().join(format!("err.{n}")),
        );
        let mut cmd = self.env.spawnable();
        cmd.args(args)
            .env("FAILPOINTS", failpoints)
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap());
        if let Some(t) = trace {
            cmd.env("ENGINE_FAILPOINTS_TRACE", t);
        }
        let mut child = cmd.spawn().expect("run the engine");
        let status = wait::child(&mut child, ENGINE_TIMEOUT);
        let mut stderr = std::fs::read_to_string(&err).unwrap_or_default();
        let Ok(status) = status else {
            return Output {
                code: None,
                stderr: format!("timed out after {ENGINE_TIMEOUT:?} (hung): {stderr}"),
            };
        };
        if stderr.is_empty() {
            stderr = "(no stderr)".into();
        }
        use std::os::unix::process::ExitStatusExt;
        Output {
            code: status.code().or(status.signal().map(|n| 128 + n)),
            stderr,
        }
    }

    /// `--root ROOT ARGS...`: runc's command line over the case's --root.
    fn oci(&self, args: &[&str]) -> Vec<String> {
        let root = self.oci_root();
        let mut all = vec!["--root", root.to_str().unwrap()];
        all.extend(args);
        all.into_iter().map(String::from).collect()
    }

    fn oci_root(&self) -> PathBuf {
        self._tmp.path().join("oci")
    }

    fn oci_ok(&self, args: &[&str]) -> Check {
        let args = self.oci(args);
        let out = self.engine(&args, "", None);
        ensure(out.code == Some(0), || {
            format!("`engine {}`: {:?} {}", args.join(" "), out.code, out.stderr)
        })
    }

    /// `delete --force`, which may find nothing to delete: exit 0 then too.
    fn oci_delete(&self) -> Check {
        let out = self.engine(&self.oci(&["delete", "--force", &self.name]), "", None);
        ensure(out.code == Some(0), || {
            format!(
                "`engine delete --force {}`: {:?} {}",
                self.name, out.code, out.stderr
            )
        })
    }

    fn ok(&self, args: &[&str]) -> Check {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let out = self.engine(&args, "", None);
        ensure(out.code == Some(0), || {
            format!("`engine {}`: {:?} {}", args.join(" "), out.code, out.stderr)
        })
    }

    /// A detached container that ends at once on SIGTERM, or ignores it
    /// (so that `stop` always reaches its SIGKILL step).
    fn start_box(&self, on_term: &str) -> Check {
        let script = format!("trap '{on_term}' TERM; sleep 600 & wait");
        self.ok(&[
            "run",
            "-d",
            "--net",
            "none",
            "--name",
            &self.name,
            rootfs(),
            "--",
            "sh",
            "-c",
            &script,
            &self.name,
        ])
    }

    /// What the scenario's prelude makes (a running container, a set-up host).
    fn prelude(&self, s: Scenario) -> Check {
        match s {
            Exec | Kill | Rm => self.start_box("exit 0"),
            Stop => self.start_box(""),
            Teardown => self.ok(&["setup"]).and_then(|()| self.start_box("exit 0")),
            OciStart => self.oci_create(),
            OciExec | OciKill | OciKillAll | OciDelete => self
                .oci_create()
                .and_then(|()| self.oci_ok(&["start", &self.name])),
            _ => Ok(()),
        }
    }

    fn oci_create(&self) -> Check {
        let bundle = self._tmp.path().join("bundle");
        let pid_file = self._tmp.path().join("pid");
        self.oci_ok(&[
            "create",
            "--bundle",
            bundle.to_str().unwrap(),
            "--pid-file",
            pid_file.to_str().unwrap(),
            &self.name,
        ])
    }

    fn action(&self, s: Scenario) -> Vec<String> {
        let name = self.name.as_str();
        let bundle = self._tmp.path().join("bundle");
        let pid_file = self._tmp.path().join("pid");
        match s {
            OciCreate => {
                return self.oci(&[
                    "create",
                    "--bundle",
                    bundle.to_str().unwrap(),
                    "--pid-file",
                    pid_file.to_str().unwrap(),
                    name,
                ])
            }
            OciStart => return self.oci(&["start", name]),
            OciExec => return self.oci(&["exec", name, "true"]),
            OciKill => return self.oci(&["kill", name, "TERM"]),
            OciKillAll => return self.oci(&["kill", "--all", name, "KILL"]),
            OciDelete => return self.oci(&["delete", "--force", name]),
            _ => {}
        }
        let dest = self.dest.to_str().unwrap();
        let args: Vec<&str> = match s {
            Run => vec![
                "run",
                "-p",
                "8080:80",
                "--tty=true",
                "--name",
                name,
                rootfs(),
                "--",
                "true",
            ],
            RunDetached => vec![
                "run",
                "-d",
                "--net",
                "none",
                "--name",
                name,
                rootfs(),
                "--",
                "sleep",
                "600",
            ],
            // -u: the look-up in the container's account files.
            Exec => vec!["exec", "--tty=true", "-u", "0:0", name, "--", "true"],
            Stop => vec!["stop", "-t", "0", name],
            Kill => vec!["kill", name],
            Rm => vec!["rm", "-f", name],
            Teardown => vec!["teardown", "--force"],
            Setup => vec!["setup"],
            PullBusybox => vec!["rootfs", "pull", "busybox", "--owner", "131072", dest],
            PullFile => vec!["rootfs", "pull", tarball_url(), "--owner", "196608", dest],
            ImagePull => vec!["pull", image_archive()],
            OciCreate | OciStart | OciExec | OciKill | OciKillAll | OciDelete => unreachable!(),
        };
        args.into_iter().map(String::from).collect()
    }

    /// Ends whatever the scenario left running, removes the record a
    /// detached container keeps once it has ended (on purpose, until `rm`),
    /// and the host network.
    fn finish(&self) -> Check {
        self.oci_delete()?;
        let rm = ["rm", "-f", &self.name].map(String::from);
        let out = self.engine(&rm, "", None);
        // Gone already (the scenario ended it) is fine; any other failure
        // would leave the container running: say so rather than time out.
        let gone = out.code == Some(125) && out.stderr.contains("no such container");
        ensure(out.code == Some(0) || gone, || {
            format!(
                "`engine rm -f {}`: {:?} {}",
                self.name, out.code, out.stderr
            )
        })?;
        self.ok(&["teardown", "--force"])
    }

    /// What of the case exists now: state files (records, temp files,
    /// `.etc` dirs), mounts under the state dir, processes, veths,
    /// nftables chains, cgroup leaves, partial rootfs.
    fn leftovers(&self, s: Scenario) -> BTreeSet<String> {
        let state = self.env.state_dir();
        let mut left = BTreeSet::new();
        // A kept container's record and layer are in the data dir.
        let data = std::fs::read_dir(self.env.data_dir()).into_iter().flatten();
        for e in std::fs::read_dir(state)
            .unwrap()
            .flatten()
            .chain(data.flatten())
        {
            let f = e.file_name().to_string_lossy().into_owned();
            let ours = [".json", ".tmp", ".etc", ".layer", ".stopped"]
                .iter()
                .any(|suffix| f.ends_with(suffix));
            if ours {
                left.insert(format!("state file {f}"));
            }
        }
        left.extend(self.leases());
        // The OCI --root: a directory per container, its state.json and exec.fifo.
        for e in std::fs::read_dir(self.oci_root())
            .into_iter()
            .flatten()
            .flatten()
        {
            let id = e.file_name().to_string_lossy().into_owned();
            left.insert(format!("OCI state {id}"));
            for f in std::fs::read_dir(e.path()).into_iter().flatten().flatten() {
                left.insert(format!(
                    "OCI state {id}/{}",
                    f.file_name().to_string_lossy()
                ));
            }
        }
        for m in mountinfo::mounts_under(state) {
            left.insert(format!("mount {m:?}"));
        }
        for p in processes_named(&self.name) {
            if s.is_oci() {
                // An OCI init's command line changes at `start` (from the
                // engine's to the container's): the pid tells it.
                let pid = p.split(' ').next().unwrap_or_default();
                left.insert(format!("process {pid}"));
            } else {
                left.insert(format!("process {p}"));
            }
        }
        for l in links().into_iter().filter(|l| l.starts_with("ve-")) {
            left.insert(format!("veth {l}"));
        }
        if nft_ruleset().contains(&self.name) {
            left.insert("nftables chains".into());
        }
        for c in self.env.cgroup_leaves() {
            left.insert(format!("cgroup {c}"));
        }
        if matches!(s, PullBusybox | PullFile) {
            for e in std::fs::read_dir(self.dest.parent().unwrap())
                .unwrap()
                .flatten()
            {
                let f = e.file_name().to_string_lossy().into_owned();
                if f.starts_with('.') {
                    left.insert(format!("partial rootfs {f}"));
                }
            }
            if self.dest.exists() && !self.dest.join("bin/busybox").exists() {
                left.insert("an incomplete DEST".into());
            }
        }
        if s == ImagePull {
            left.extend(store_leftovers(&self._tmp.path().join("images")));
        }
        left
    }

    /// The host-wide ID leases of the case's state directory.
    fn leases(&self) -> BTreeSet<String> {
        id_leases(self.env.state_dir())
            .into_iter()
            .chain(id_leases(&self.oci_root()))
            .map(|l| format!("ID lease of {} {:?}", l.name, l.uids))
            .collect()
    }

    /// No lease that `before` did not hold, at once: an engine removes its
    /// lease before it exits, and the next invocation of the state
    /// directory removes a killed one's. (Not waited for: any engine that
    /// takes a lease also removes dead ones, which would hide a leak.)
    /// No lease `before` did not hold, once a monitor that removes one in
    /// the background had [`SETTLE`] to end.
    fn no_new_lease(&self, before: &BTreeSet<String>, by: &str) -> Check {
        let deadline = Instant::now() + SETTLE;
        loop {
            let new: Vec<String> = self.leases().difference(before).cloned().collect();
            if new.is_empty() || Instant::now() >= deadline {
                return ensure(new.is_empty(), || {
                    format!("left behind {by}: {}", new.join(", "))
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Nothing exists that `before` did not hold, once what the kernel and
    /// a supervisor remove in the background had [`SETTLE`] to go.
    fn nothing_new(&self, s: Scenario, before: &BTreeSet<String>, by: &str) -> Check {
        let deadline = Instant::now() + SETTLE;
        loop {
            let new: Vec<String> = self.leftovers(s).difference(before).cloned().collect();
            if new.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!("left behind {by}: {}", new.join(", ")));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Nothing of the case is left.
    fn clean(&self, s: Scenario) -> Check {
        self.nothing_new(s, &BTreeSet::new(), "at the end")
    }
}

struct Output {
    code: Option<i32>,
    stderr: String,
}

/// Processes (not this test) whose command line holds `name`.
fn processes_named(name: &str) -> Vec<String> {
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let pid = e.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) || pid == me {
            continue;
        }
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.split(' ').any(|a| a == name) {
            found.push(format!("{pid} {cmd}"));
        }
    }
    found
}

/// The links of this thread's network namespace.
fn links() -> Vec<String> {
    let out = wait::output(
        std::process::Command::new("ip").args(["-o", "link", "show"]),
        SHORT,
    )
    .expect("ip (apt-get install iproute2)");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap().to_string())
        .collect()
}

fn nft_ruleset() -> String {
    let out = wait::output(
        std::process::Command::new(quote::require("nft", "nftables")).args(["list", "ruleset"]),
        SHORT,
    )
    .expect("nft");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A file:// URL of a .tar.gz of the busybox rootfs, made once.
fn tarball_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let dir = tempfile::tempdir_in(busybox::scratch_root())
            .unwrap()
            .keep();
        testkit::at_exit::remove_dir_at_exit(&dir);
        let tar = dir.join("busybox.tar.gz");
        let status = wait::output(
            std::process::Command::new("tar")
                .arg("-C")
                .arg(busybox::rootfs())
                .arg("-czf")
                .arg(&tar)
                .arg("."),
            LONG,
        )
        .expect("tar")
        .status;
        assert!(status.success(), "tar of the busybox rootfs failed");
        format!("file://{}", tar.display())
    })
}

/// What of an image store is half-made or stray: a pull's scratch, a
/// `.`-named (temporary) layer, blob or record, a layer without its size
/// (never made by a complete unpack), a layer or blob no record names, a
/// record whose layer is missing. A complete image is none of these.
fn store_leftovers(store: &Path) -> BTreeSet<String> {
    let names = |dir: &str| -> Vec<String> {
        std::fs::read_dir(store.join(dir))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    };
    let mut left = BTreeSet::new();
    for f in names("tmp") {
        left.insert(format!("pull scratch tmp/{f}"));
    }
    let mut used = BTreeSet::new();
    for f in names("images") {
        let path = store.join("images").join(&f);
        let record: Option<serde_json::Value> = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let Some(record) = record.filter(|_| !f.starts_with('.')) else {
            left.insert(format!("half record images/{f}"));
            continue;
        };
        let hex = |v: &serde_json::Value| {
            let d = v.as_str().unwrap_or_default();
            d.strip_prefix("sha256:").unwrap_or(d).to_string()
        };
        used.insert(hex(&record["id"]));
        used.insert(hex(&record["digest"]));
        for layer in record["layers"].as_array().into_iter().flatten() {
            if !store.join("layers").join(hex(layer)).join("size").is_file() {
                left.insert(format!("record {f} without its layer {}", hex(layer)));
            }
            used.insert(hex(layer));
        }
    }
    for f in names("layers") {
        if f.starts_with('.') {
            left.insert(format!("half layer layers/{f}"));
        } else if !store.join("layers").join(&f).join("size").is_file() {
            left.insert(format!("layer without its size layers/{f}"));
        } else if !used.contains(&f) {
            left.insert(format!("layer no image names layers/{f}"));
        }
    }
    for f in names("blobs/sha256") {
        if f.starts_with('.') {
            left.insert(format!("half blob {f}"));
        } else if !used.contains(&f) {
            left.insert(format!("blob no image names {f}"));
        }
    }
    left
}

/// `oci-archive:FILE` of a two-layer image (a plain tar, a gzip'd one),
/// written once: a tar of an OCI image layout, as skopeo makes one.
fn image_archive() -> &'static str {
    static REF: OnceLock<String> = OnceLock::new();
    REF.get_or_init(|| {
        use sha2::Digest;
        use testkit::tarball::{raw_archive, EntryType, LongNames, RawEntry};
        let dir = tempfile::tempdir_in(busybox::scratch_root())
            .unwrap()
            .keep();
        testkit::at_exit::remove_dir_at_exit(&dir);
        let layout = dir.join("layout");
        let blobs = layout.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        let put = |bytes: &[u8]| {
            let hex = format!("{:x}", sha2::Sha256::digest(bytes));
            std::fs::write(blobs.join(&hex), bytes).unwrap();
            serde_json::json!({"digest": format!("sha256:{hex}"), "size": bytes.len()})
        };
        let entry = RawEntry::new;
        let first = raw_archive(
            &[
                entry(EntryType::Directory, "etc/", 0o755, b""),
                entry(EntryType::Regular, "etc/a", 0o644, b"one"),
            ],
            LongNames::Gnu,
        );
        let second = raw_archive(
            &[entry(EntryType::Regular, "etc/b", 0o644, b"two")],
            LongNames::Gnu,
        );
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &second).unwrap();
        let second_gz = gz.finish().unwrap();
        let diff_id = |tar: &[u8]| format!("sha256:{:x}", sha2::Sha256::digest(tar));
        let config = serde_json::json!({
            "architecture": engine::sys::arch::host_arch(),
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [diff_id(&first), diff_id(&second)]},
        });
        let mut layers = [put(&first), put(&second_gz)];
        layers[0]["mediaType"] = "application/vnd.oci.image.layer.v1.tar".into();
        layers[1]["mediaType"] = "application/vnd.oci.image.layer.v1.tar+gzip".into();
        let mut config = put(config.to_string().as_bytes());
        config["mediaType"] = "application/vnd.oci.image.config.v1+json".into();
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config,
            "layers": layers,
        });
        let mut manifest = put(manifest.to_string().as_bytes());
        manifest["mediaType"] = "application/vnd.oci.image.manifest.v1+json".into();
        manifest["annotations"] =
            serde_json::json!({"org.opencontainers.image.ref.name": "example.com/fp:v1"});
        let index = serde_json::json!({"schemaVersion": 2, "manifests": [manifest]});
        std::fs::write(layout.join("index.json"), index.to_string()).unwrap();
        std::fs::write(
            layout.join("oci-layout"),
            r#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .unwrap();
        let archive = dir.join("image.tar");
        let status = wait::output(
            std::process::Command::new("tar")
                .arg("-C")
                .arg(&layout)
                .arg("-cf")
                .arg(&archive)
                .args(["oci-layout", "index.json", "blobs"]),
            SHORT,
        )
        .expect("tar")
        .status;
        assert!(status.success(), "tar of the image layout failed");
        format!("oci-archive:{}", archive.display())
    })
}

/// An OCI bundle on the busybox rootfs whose process waits (ending on
/// SIGTERM) with the case's name in its command line; a read-only root, a
/// root propagation, a sysctl and a hook of every kind, so that every step
/// of create, start and delete is passed.
fn write_bundle(dir: &Path, name: &str) {
    let hook = serde_json::json!([{"path": "/bin/true", "args": ["true"]}]);
    let container_hook = serde_json::json!([{"path": "/bin/true", "args": ["true"]}]);
    let config = serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh", "-c", "trap 'exit 0' TERM; sleep 600 & wait", name],
            "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
            "cwd": "/",
            "noNewPrivileges": true
        },
        "root": {"path": rootfs(), "readonly": true},
        "hostname": "fp",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1777"]}
        ],
        "hooks": {
            "prestart": hook,
            "createRuntime": hook,
            "createContainer": container_hook,
            "poststart": hook,
            "poststop": hook
        },
        "linux": {
            "namespaces": [
                {"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}
            ],
            "sysctl": {"net.ipv4.ip_forward": "1"},
            "rootfsPropagation": "rprivate"
        }
    });
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
}

/// A container name unique to this walk process (`fp` + pid + `-` +
/// `what`): a process left by another run of the walk never passes for
/// one of this run's leftovers, nor the reverse.
fn case_name(what: &str) -> String {
    format!("fp{:x}-{what}", std::process::id())
}

/// Every failpoint named in engine/src.
fn failpoints_in_source() -> BTreeSet<String> {
    fn walk(dir: &Path, out: &mut BTreeSet<String>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") && !p.ends_with("sys/failpoint.rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                for (i, _) in text.match_indices("step!(") {
                    let rest = &text[i + 6..];
                    let close = rest.find(')').unwrap();
                    if let Some(lit) = rest[..close].split('"').nth(1) {
                        out.insert(lit.to_string());
                    }
                }
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut out);
    out
}

/// Failpoints this host cannot pass, and why (none may be excused silently).
fn unreachable_here() -> Vec<(&'static str, String)> {
    // The walk's OCI bundle has no terminal: a console socket would need
    // a receiver of the pty master (tests/oci.rs has one).
    let mut out = vec![(
        "child.console",
        "only an OCI create with process.terminal passes it (tests/oci.rs covers it)".to_string(),
    )];
    if let Err(why) = testkit::cgroup::v2_limits() {
        out.push(("run.cgroup", why));
    }
    out
}

/// The failpoints a normal run of `s` passes, in order (each once).
fn trace(s: Scenario, name: String) -> Result<Vec<String>, String> {
    let case = Case::new(name);
    case.prelude(s)?;
    let trace = case._tmp.path().join("trace");
    let out = case.engine(&case.action(s), "", Some(&trace));
    ensure(out.code == Some(0), || {
        format!("{s:?}: {:?} {}", out.code, out.stderr)
    })?;
    case.finish()?;
    case.clean(s)?;
    let mut seen = HashSet::new();
    Ok(std::fs::read_to_string(&trace)
        .unwrap_or_default()
        .lines()
        .filter(|l| seen.insert(l.to_string()))
        .map(String::from)
        .collect())
}

/// The traces of every scenario, made once per test binary (in a private netns).
fn traces() -> &'static Vec<(Scenario, Vec<String>)> {
    static TRACES: OnceLock<Vec<(Scenario, Vec<String>)>> = OnceLock::new();
    TRACES.get_or_init(|| {
        busybox::rootfs();
        tarball_url();
        image_archive();
        testkit::netns::in_private(|| {
            SCENARIOS
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    (
                        *s,
                        trace(*s, case_name(&format!("t{i}"))).unwrap_or_else(|e| panic!("{e}")),
                    )
                })
                .collect()
        })
    })
}

#[test]
fn the_traced_runs_pass_every_failpoint_in_the_source() {
    let listed = failpoints_in_source();
    let passed: BTreeSet<String> = traces().iter().flat_map(|(_, t)| t.clone()).collect();
    let excused = unreachable_here();
    let missing: Vec<&String> = listed
        .iter()
        .filter(|n| !passed.contains(*n) && !excused.iter().any(|(e, _)| e == n))
        .collect();
    assert!(
        missing.is_empty(),
        "failpoints no scenario passes (add a scenario, or remove the failpoint): {missing:?}"
    );
    let unknown: Vec<&String> = passed.difference(&listed).collect();
    assert!(
        unknown.is_empty(),
        "traced names not in the source: {unknown:?}"
    );
    for (name, why) in excused {
        eprintln!("not walked on this host: {name}: {why}");
    }
}

fn expected_code(s: Scenario, name: &str, mode: Mode) -> i32 {
    if s.is_oci() {
        // runc's: 1 for a failure.
        return if mode == Mode::Error { 1 } else { 137 };
    }
    // run -d: the foreground process only forks; the rest runs in the
    // supervisor, whose failure it reports (125), or whose death it reports
    // as "died before the container started" (125). After the start it has
    // already returned 0.
    let in_supervisor = s == RunDetached && !name.starts_with("detach.");
    match (mode, in_supervisor) {
        (_, true) if after_start(name) => 0,
        (_, true) | (Mode::Error, false) => 125,
        (Mode::Kill, false) => 137,
    }
}

/// A step of a detached run's supervisor once the container has started
/// (and `run -d` has returned 0).
fn after_start(name: &str) -> bool {
    matches!(name, "run.supervise" | "run.teardown")
}

fn walk_case(s: Scenario, fp: &str, mode: Mode, name: String) -> Check {
    let case = Case::new(name);
    case.prelude(s)?;
    // What the prelude made (a running container): checked below that the
    // failed command adds nothing to it, before any other engine runs (each
    // one recovers what dead engines left, which would hide a leak).
    let before = case.leftovers(s);
    let action = case.action(s);
    let config = match mode {
        Mode::Error => format!("{fp}=return"),
        Mode::Kill => format!("{fp}=return(kill)"),
    };
    let out = case.engine(&action, &config, None);
    let want = expected_code(s, fp, mode);
    ensure(out.code == Some(want), || {
        format!("exit {:?}, want {want}: {}", out.code, out.stderr.trim())
    })?;
    if (want == 125 || s.is_oci()) && mode == Mode::Error {
        let line = format!("engine: failpoint {fp}: injected failure");
        ensure(out.stderr.lines().any(|l| l == line), || {
            format!("stderr lacks `{line}`: {}", out.stderr.trim())
        })?;
    }
    if s == OciExec {
        // A failed (or killed) exec leaves the container running.
        let out = case.engine(&case.oci(&["state", &case.name]), "", None);
        ensure(out.code == Some(0), || {
            format!("the container is gone after a failed exec: {}", out.stderr)
        })?;
    }
    if mode == Mode::Error {
        // A failing engine undoes what it did itself.
        case.no_new_lease(&before, "by the failed command")?;
        case.nothing_new(s, &before, "by the failed command")?;
    }
    if mode == Mode::Kill && s.is_oci() {
        // What podman and containerd do after a runtime died: `delete
        // --force`, which removes all of it.
        case.oci_delete()?;
        case.clean(s)?;
    } else if mode == Mode::Kill {
        if s == RunDetached && after_start(fp) {
            // A detached container outlives its killed supervisor: its
            // monitor keeps it (and its record), `rm -f` ends it.
            let out = case.engine(&["ps".into(), "-a".into(), "-q".into()], "", None);
            ensure(out.code == Some(0), || format!("`ps -a`: {}", out.stderr))?;
            case.ok(&["rm", "-f", &case.name])?;
        }
        // The next invocation removes what the killed engine left.
        match s {
            Setup | Teardown | PullBusybox | PullFile | ImagePull => {
                let out = case.engine(&action, "", None);
                ensure(out.code == Some(0), || {
                    format!(
                        "the next `{}`: {:?} {}",
                        action.join(" "),
                        out.code,
                        out.stderr
                    )
                })?;
            }
            _ => case.ok(&["ps"])?,
        }
        case.no_new_lease(&before, "after the next invocation")?;
        case.nothing_new(s, &before, "after the next invocation")?;
    }
    if mode == Mode::Kill && s == ImagePull {
        // The next pull finished the work: the image is recorded.
        let records = std::fs::read_dir(case._tmp.path().join("images/images"))
            .map(|d| d.count())
            .unwrap_or(0);
        ensure(records == 1, || {
            format!("{records} image records after the next pull, not 1")
        })?;
    }
    if matches!(s, Exec) {
        // A failed exec leaves the container running.
        let out = case
            .env
            .cmd()
            .args(["ps", "--format", "json"])
            .output()
            .unwrap();
        let ps = String::from_utf8_lossy(&out.stdout);
        ensure(ps.contains(&format!("\"{}\"", case.name)), || {
            format!("the container is gone after a failed exec: {ps}")
        })?;
    }
    case.finish()?;
    case.clean(s)?;
    if mode == Mode::Kill && matches!(s, Run | RunDetached) {
        // And a container of that name then starts normally.
        let out = case.engine(&action, "", None);
        ensure(out.code == Some(0), || {
            format!("the next run: {:?} {}", out.code, out.stderr)
        })?;
        case.finish()?;
        case.clean(s)?;
    }
    Ok(())
}

#[test]
fn every_failpoint_in_both_modes_leaves_nothing() {
    let started = Instant::now();
    let mut walked = HashSet::new();
    let mut cases = Vec::new();
    for (s, names) in traces() {
        for fp in names {
            if walked.insert(fp.clone()) {
                for mode in [Mode::Error, Mode::Kill] {
                    cases.push((*s, fp.clone(), mode));
                }
            }
        }
    }
    let traced = started.elapsed();
    let total = cases.len();
    // A queue both threads take the next case from (the cases are uneven).
    let cases = std::sync::Arc::new(cases);
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let (cases, next) = (cases.clone(), next.clone());
            std::thread::spawn(move || {
                testkit::netns::enter_private_or_panic();
                let mut failures = Vec::new();
                let mut times = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some((s, fp, mode)) = cases.get(i) else {
                        break;
                    };
                    let tag = if *mode == Mode::Error { 'e' } else { 'k' };
                    let case_started = Instant::now();
                    let result = walk_case(*s, fp, *mode, case_name(&format!("{i:03}{tag}")));
                    times.push((*s, case_started.elapsed()));
                    if let Err(e) = result {
                        failures.push(format!("{fp} ({mode:?}, in {s:?}): {e}"));
                    }
                }
                (failures, times)
            })
        })
        .collect();
    let mut failures = Vec::new();
    let mut per_scenario: Vec<(Scenario, usize, Duration)> = Vec::new();
    for h in handles {
        let (f, times) = h.join().expect("a walker thread panicked");
        failures.extend(f);
        for (s, t) in times {
            match per_scenario.iter_mut().find(|(x, _, _)| *x == s) {
                Some((_, n, sum)) => {
                    *n += 1;
                    *sum += t;
                }
                None => per_scenario.push((s, 1, t)),
            }
        }
    }
    per_scenario.sort_by_key(|(s, _, _)| SCENARIOS.iter().position(|x| x == s));
    let breakdown: Vec<String> = per_scenario
        .iter()
        .map(|(s, n, sum)| format!("{s:?} {n} cases {:.1} s", sum.as_secs_f64()))
        .collect();
    eprintln!(
        "failpoint walk: {} failpoints, 2 modes, {total} cases, {:.1} s (traces {:.1} s), {THREADS} threads; {}",
        walked.len(),
        started.elapsed().as_secs_f64(),
        traced.as_secs_f64(),
        breakdown.join(", ")
    );
    assert!(
        failures.is_empty(),
        "{} of {total} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
