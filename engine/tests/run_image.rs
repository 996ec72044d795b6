//! `engine run IMAGE` (issue 20): an OCI image built here from the busybox
//! rootfs (a base layer of the whole tree, a top layer that replaces the
//! account files, adds a file and deletes one by whiteout) runs with its
//! layers as the overlay's lowers and its config applied by docker's rules;
//! `stop` sends its StopSignal; `rmi` and `image prune` spare what a running
//! container uses; a hostile /etc/passwd symlink is refused; bad input is
//! one line, exit 125, nothing left. `--net none` throughout. Runs as root.

mod common;
use common::*;

use sha2::{Digest, Sha256};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use testkit::tarball::{raw_archive, EntryType, LongNames, RawEntry};

const NAME: &str = "example.com/run/app:v1";

fn digest(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

fn entry(kind: EntryType, path: &str, mode: u32, data: &[u8]) -> RawEntry {
    RawEntry::new(kind, path, mode, data)
}

fn file(path: &str, data: &str) -> RawEntry {
    entry(EntryType::Regular, path, 0o644, data.as_bytes())
}

/// The busybox rootfs as one layer tar (GNU tar, numeric owners).
fn base_layer() -> &'static [u8] {
    static BASE: OnceLock<Vec<u8>> = OnceLock::new();
    BASE.get_or_init(|| {
        let out = wait::output(
            std::process::Command::new("tar").args([
                "--numeric-owner",
                "-C",
                rootfs(),
                "-cf",
                "-",
                ".",
            ]),
            SHORT,
        )
        .expect("run tar");
        assert!(out.status.success(), "tar of the busybox rootfs failed");
        out.stdout
    })
}

/// The top layer: account files with a user `app` (1000:1000, home
/// /home/app, also in group `extra` 2000), /data/hello, and a whiteout
/// of /etc/os-release; `passwd` replaced by `hostile` when given.
fn top_layer(hostile: Option<RawEntry>) -> Vec<u8> {
    let passwd = hostile.unwrap_or_else(|| {
        file(
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
        )
    });
    raw_archive(
        &[
            entry(EntryType::Directory, "etc/", 0o755, b""),
            passwd,
            file("etc/group", "root:x:0:\napp:x:1000:\nextra:x:2000:app\n"),
            entry(EntryType::Regular, "etc/.wh.os-release", 0o644, b""),
            entry(EntryType::Directory, "data/", 0o755, b""),
            file("data/hello", "from the top layer"),
        ],
        LongNames::Gnu,
    )
}

/// An OCI layout of `layers` (lowest first; the second gzip'd) with
/// `config` as the image config's `config`, named NAME.
fn write_layout(dir: &Path, layers: &[Vec<u8>], config: serde_json::Value) {
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let d = digest(bytes);
        fs::write(blobs.join(d.trim_start_matches("sha256:")), bytes).unwrap();
        (d, bytes.len())
    };
    let mut descriptors = Vec::new();
    let mut diff_ids = Vec::new();
    for (i, tar) in layers.iter().enumerate() {
        diff_ids.push(digest(tar));
        let (blob, media) = if i == 1 {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut gz, tar).unwrap();
            (
                gz.finish().unwrap(),
                "application/vnd.oci.image.layer.v1.tar+gzip",
            )
        } else {
            (tar.clone(), "application/vnd.oci.image.layer.v1.tar")
        };
        let (d, size) = put(&blob);
        descriptors.push(serde_json::json!({"mediaType": media, "digest": d, "size": size}));
    }
    let config = serde_json::json!({
        "created": "2026-12-06T00:00:00Z",
        "architecture": engine::sys::arch::host_arch(),
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let (config_digest, config_size) = put(&serde_json::to_vec(&config).unwrap());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config_size},
        "layers": descriptors,
    });
    let (manifest_digest, manifest_size) = put(&serde_json::to_vec(&manifest).unwrap());
    fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": manifest_digest, "size": manifest_size,
        "annotations": {"org.opencontainers.image.ref.name": NAME},
    }]});
    fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

fn app_config() -> serde_json::Value {
    serde_json::json!({
        "Entrypoint": ["/bin/sh", "-c"],
        "Cmd": ["echo cmd-ran; pwd; id -u; id -G; echo env=$FROM_IMAGE home=$HOME; cat /data/hello; echo; test -e /etc/os-release || echo os-release-gone"],
        "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "FROM_IMAGE=1"],
        "WorkingDir": "/data",
        "User": "app",
        "StopSignal": "SIGUSR1"
    })
}

/// An engine environment with its own image store, and the app image
/// imported into it (`engine pull oci:DIR`).
struct Setup {
    env: Engine,
    store: PathBuf,
    _tmp: tempfile::TempDir,
}

fn setup(tag: &str, config: serde_json::Value, hostile: Option<RawEntry>) -> Setup {
    testkit::host::require_root("running images");
    let tmp = testkit::host::temp_dir();
    let (layout, store) = (tmp.path().join("layout"), tmp.path().join("store"));
    write_layout(
        &layout,
        &[base_layer().to_vec(), top_layer(hostile)],
        config,
    );
    let env = engine(tag).with_env("ENGINE_IMAGE_STORE", &store);
    env.cmd()
        .args(["pull", &format!("oci:{}", layout.display())])
        .assert()
        .code(0);
    Setup {
        env,
        store,
        _tmp: tmp,
    }
}

fn layer_dirs(store: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(store.join("layers"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// A refused run: exit 125, one line saying `says`, nothing left.
fn assert_refused(s: &Setup, args: &[&str], says: &str) {
    let a = s
        .env
        .cmd()
        .args(["run", "--net", "none"])
        .args(args)
        .assert()
        .code(125);
    let err = stderr(&a);
    assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    assert!(err.contains(says), "{args:?}: {err}");
    s.env.assert_clean();
}

/// The image's Entrypoint + Cmd, Env, WorkingDir and User (a name from
/// its own /etc/passwd, with the groups /etc/group gives it and its home)
/// apply; the two layers are stacked (the top one's files, its whiteout
/// hides the base's /etc/os-release); COMMAND replaces Cmd, --entrypoint
/// replaces Entrypoint and drops Cmd, -e, -w and --user win over the
/// image. Breaks tried: the lowers passed bottom first (the base's
/// /etc/passwd wins: `app` unknown, exit 125), Env appended after -e
/// (env=1 where -e gave 2), --entrypoint keeping Cmd (the echo prints the
/// script).
#[test]
fn an_image_runs_with_its_config_under_the_flags() {
    let s = setup("img-config", app_config(), None);
    let out = stdout(&run(&s.env, &[NAME]).code(0));
    assert_eq!(
        out,
        "cmd-ran\n/data\n1000\n1000 2000\nenv=1 home=/home/app\nfrom the top layer\nos-release-gone\n"
    );
    // COMMAND replaces Cmd (the Entrypoint `sh -c` stays).
    let out = stdout(&run(&s.env, &[NAME, "echo replaced $FROM_IMAGE"]).code(0));
    assert_eq!(out, "replaced 1\n");
    // --entrypoint replaces the Entrypoint and drops Cmd.
    let out = stdout(&run(&s.env, &["--entrypoint", "/bin/echo", NAME]).code(0));
    assert_eq!(out, "\n");
    let out = stdout(&run(&s.env, &["--entrypoint", "/bin/echo", NAME, "a", "b"]).code(0));
    assert_eq!(out, "a b\n");
    // -e over Env, -w over WorkingDir, --user over User.
    let out = stdout(
        &run(
            &s.env,
            &[
                "-e",
                "FROM_IMAGE=2",
                "-w",
                "/tmp",
                "--user",
                "0",
                NAME,
                "echo $FROM_IMAGE; pwd; id -u; id -g",
            ],
        )
        .code(0),
    );
    assert_eq!(out, "2\n/tmp\n0\n0\n");
    let out = stdout(&run(&s.env, &["-u", "app:extra", NAME, "id -u; id -g"]).code(0));
    assert_eq!(out, "1000\n2000\n");
    // By ID prefix too.
    let images: serde_json::Value = serde_json::from_slice(
        &s.env
            .cmd()
            .args(["images", "--format", "json"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let id = images[0]["id"].as_str().unwrap().to_string();
    let prefix = &id["sha256:".len().."sha256:".len() + 12];
    let out = stdout(&run(&s.env, &[prefix, "echo by-id"]).code(0));
    assert_eq!(out, "by-id\n");
    s.env.assert_clean();
}

/// A running container's image: `ps` (table and JSON) shows it, `rmi` is
/// refused with one sentence naming the container, `rmi -f` removes the
/// record but `image prune` keeps the layers while it runs; `stop` sends
/// the image's StopSignal (SIGUSR1: the trap exits 7, where SIGTERM would
/// be ignored by PID 1 and end in SIGKILL, 137); once it has ended,
/// `image prune` removes the layers. Breaks tried: stop ignoring the
/// record's signal (wait printed 137), collect_garbage without the running
/// markers (the layers went while the container ran).
#[test]
fn a_running_container_pins_its_image_and_stop_sends_its_signal() {
    let s = setup("img-pin", app_config(), None);
    let script = "trap 'exit 7' USR1; echo up; while :; do sleep 0.1; done";
    s.env
        .cmd()
        .args([
            "run", "-d", "--net", "none", "--name", "pinned", NAME, script,
        ])
        .assert()
        .code(0)
        .stdout("pinned\n");
    let rows: serde_json::Value = serde_json::from_slice(
        &s.env
            .cmd()
            .args(["ps", "--format", "json"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(rows[0]["image"], NAME, "{rows}");
    // The supervisor SIGKILLed: the container runs on under its monitor,
    // which must keep the image pinned (it holds the marker's flock).
    let pid1 = rows[0]["pid"].as_i64().unwrap();
    let stat = fs::read_to_string(format!("/proc/{pid1}/stat")).unwrap();
    let supervisor: i32 = stat[stat.rfind(')').unwrap() + 2..]
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(supervisor).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    let gone = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while fs::read_to_string(format!("/proc/{supervisor}/stat"))
        .is_ok_and(|st| !st[st.rfind(')').unwrap() + 2..].starts_with('Z'))
    {
        assert!(
            std::time::Instant::now() < gone,
            "the supervisor did not die"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let table = stdout(&s.env.cmd().args(["ps"]).assert().code(0));
    assert!(table.lines().nth(1).unwrap().contains(NAME), "{table}");
    let a = s.env.cmd().args(["rmi", NAME]).assert().code(125);
    let err = stderr(&a);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("running container pinned"), "{err}");
    let layers = layer_dirs(&s.store);
    assert_eq!(layers.len(), 2, "{layers:?}");
    s.env.cmd().args(["rmi", "-f", NAME]).assert().code(0);
    s.env
        .cmd()
        .args(["image", "prune"])
        .assert()
        .code(0)
        .stdout("");
    assert_eq!(layer_dirs(&s.store), layers, "pruned while running");
    s.env
        .cmd()
        .args(["stop", "-t", "20", "pinned"])
        .assert()
        .code(0);
    s.env
        .cmd()
        .args(["wait", "pinned"])
        .assert()
        .code(0)
        .stdout("7\n");
    s.env.cmd().args(["rm", "pinned"]).assert().code(0);
    let pruned = stdout(&s.env.cmd().args(["image", "prune"]).assert().code(0));
    assert_eq!(pruned.lines().count(), 2, "{pruned}");
    assert_eq!(layer_dirs(&s.store), Vec::<String>::new());
    s.env.assert_clean();
}

/// An image whose /etc/passwd is a symlink to a host file: the user is
/// not looked up through it (one line, exit 125, nothing left), and
/// UID:GID still runs. Break tried: reading the layer's etc/passwd with
/// std::fs::read_to_string (it follows the link: the host file's
/// `evil` became uid 4242 and the run went on).
#[test]
fn a_passwd_symlink_in_the_image_is_not_followed() {
    let tmp = testkit::host::temp_dir();
    let host_file = tmp.path().join("host-passwd");
    fs::write(&host_file, "evil:x:4242:4242::/:/bin/sh\n").unwrap();
    let link = RawEntry {
        link: host_file.to_str().unwrap().as_bytes().to_vec(),
        ..entry(EntryType::Symlink, "etc/passwd", 0o777, b"")
    };
    let s = setup("img-hostile", app_config(), Some(link));
    assert_refused(&s, &["--user", "evil", NAME, "id -u"], "symlink");
    // The image's own User goes the same way.
    assert_refused(&s, &[NAME], "symlink");
    let out = stdout(&run(&s.env, &["--user", "1000:1000", NAME, "id -u"]).code(0));
    assert_eq!(out, "1000\n");
}

/// Bad input: one line, exit 125, nothing left (no state, no new store
/// entry). Break tried: --pull never falling through to the pull (it
/// tried docker.io, a different error).
#[test]
fn bad_image_runs_are_refused_and_leave_nothing() {
    let s = setup("img-bad", app_config(), None);
    let before = layer_dirs(&s.store);
    assert_refused(
        &s,
        &["--pull", "never", "example.com/run/absent:v1", "true"],
        "--pull never",
    );
    assert_refused(&s, &["--pull", "sometimes", NAME], "invalid --pull");
    assert_refused(&s, &["--write-through", NAME], "--write-through");
    assert_refused(&s, &["--user", "nobody-here", NAME], "nobody-here");
    assert_refused(&s, &["--user", "a:b:c", NAME], "invalid --user");
    assert_refused(
        &s,
        &["--user", "4294967295", NAME],
        "invalid --user \"4294967295\"",
    );
    assert_refused(
        &s,
        &["oci:/nonexistent-layout-dir", "true"],
        "does not exist",
    );
    assert_refused(&s, &["--entrypoint", "", NAME], "gives no command");
    assert_eq!(layer_dirs(&s.store), before);
    assert!(
        fs::read_dir(s.store.join("running"))
            .map(|d| d.count())
            .unwrap_or(0)
            == 0,
        "a running marker was left"
    );
}

/// Docker's 127 layers: an image of the busybox base and 126 tiny layers
/// (layer N adds /l/N and replaces /l/top) runs with every layer stacked
/// in order (more fds than one message carries, a lowerdir of 127 paths);
/// a 128th layer is refused, one line, 125, nothing created. Breaks
/// tried: recv_fds reading one message only (`the engine sent 32 mount
/// fds, not 128`), and MAX_LAYERS 126 (the 127 were refused). With the
/// limit lifted, 160 layers were refused by the options-page check
/// (4291 bytes): about 152 is what mount(2) takes with these paths.
#[test]
fn an_image_of_127_layers_runs_and_a_128th_is_refused() {
    testkit::host::require_root("running images");
    let tmp = testkit::host::temp_dir();
    let store = tmp.path().join("store");
    let tiny = |n: usize| {
        raw_archive(
            &[
                entry(EntryType::Directory, "l/", 0o755, b""),
                file(&format!("l/{n}"), &n.to_string()),
                file("l/top", &n.to_string()),
            ],
            LongNames::Gnu,
        )
    };
    let config = serde_json::json!({
        "Cmd": ["/bin/sh", "-c", "cat /l/top; echo; ls /l | wc -l"],
        "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
    });
    let env = engine("img-many").with_env("ENGINE_IMAGE_STORE", &store);
    for (layers, ok) in [(127, true), (128, false)] {
        let layout = tmp.path().join(format!("layout-{layers}"));
        let mut tars = vec![base_layer().to_vec()];
        tars.extend((1..layers).map(tiny));
        write_layout(&layout, &tars, config.clone());
        env.cmd()
            .args(["pull", &format!("oci:{}", layout.display())])
            .assert()
            .code(0);
        let a = env
            .cmd()
            .args(["run", "--net", "none", "--rm", NAME])
            .assert();
        if ok {
            let a = a.code(0);
            assert_eq!(stdout(&a), "126\n127\n", "{}", stderr(&a));
        } else {
            let a = a.code(125);
            let err = stderr(&a);
            assert_eq!(err.trim_end().lines().count(), 1, "{err}");
            assert!(
                err.contains("has 128 layers, more than the 127 a container stacks"),
                "{err}"
            );
        }
        env.assert_clean();
    }
}

/// `LEN key=value\n` of a PAX extended header, LEN counting the whole record.
fn pax_record(key: &str, value: &str) -> Vec<u8> {
    let body = key.len() + value.len() + 3;
    let mut len = body + body.to_string().len();
    if len.to_string().len() != body.to_string().len() {
        len += 1;
    }
    format!("{len} {key}={value}\n").into_bytes()
}

/// An opaque directory (`.wh..wh..opq`) of the top layer hides what the
/// layer below held in it inside the container (the overlay is mounted in
/// the container's user namespace, where overlayfs cannot read the
/// store's `trusted.overlay.opaque`: it reads `user.overlay.opaque` with
/// `userxattr`); and overlay xattrs a layer's tar carries itself (a PAX
/// `SCHILY.xattr.user.overlay.opaque`, `.redirect`, the trusted ones) are
/// dropped, never honoured: /keep shows both layers' files. Breaks tried:
/// the overlay mounted without `userxattr` (/opq showed `lower` too); the
/// unpacker applying the tar's xattrs (/keep lost `lower`); no upgrade of
/// an old layer in `Store::hold` (/opq showed `lower` again).
#[test]
fn an_opaque_directory_hides_the_lower_layers_and_tar_overlay_xattrs_are_dropped() {
    testkit::host::require_root("running images");
    let tmp = testkit::host::temp_dir();
    let (layout, store) = (tmp.path().join("layout"), tmp.path().join("store"));
    let dir = |path: &str| entry(EntryType::Directory, path, 0o755, b"");
    let middle = raw_archive(
        &[
            dir("opq/"),
            file("opq/lower", "1"),
            dir("keep/"),
            file("keep/lower", "1"),
        ],
        LongNames::Gnu,
    );
    let mut xattrs = Vec::new();
    for (key, value) in [
        ("SCHILY.xattr.user.overlay.opaque", "y"),
        ("SCHILY.xattr.trusted.overlay.opaque", "y"),
        ("SCHILY.xattr.user.overlay.redirect", "/opq"),
    ] {
        xattrs.extend(pax_record(key, value));
    }
    let top = raw_archive(
        &[
            dir("opq/"),
            entry(EntryType::Regular, "opq/.wh..wh..opq", 0o644, b""),
            file("opq/top", "2"),
            entry(EntryType::XHeader, "PaxHeaders/keep", 0o644, &xattrs),
            dir("keep/"),
            file("keep/top", "2"),
        ],
        LongNames::Gnu,
    );
    let top_hex = digest(&top).trim_start_matches("sha256:").to_string();
    write_layout(
        &layout,
        &[base_layer().to_vec(), middle, top],
        serde_json::json!({"Cmd": ["/bin/sh", "-c", "echo opq: $(ls /opq); echo keep: $(ls /keep)"]}),
    );
    let env = engine("img-opaque").with_env("ENGINE_IMAGE_STORE", &store);
    env.cmd()
        .args(["pull", &format!("oci:{}", layout.display())])
        .assert()
        .code(0);
    let out = stdout(&run(&env, &[NAME]).code(0));
    assert_eq!(out, "opq: top\nkeep: lower top\n");
    // A layer unpacked before the store wrote the user xattr (only the
    // trusted one, no marker) gets it at its next run.
    let layer = store.join("layers").join(&top_hex);
    rustix::fs::removexattr(layer.join("root/opq"), "user.overlay.opaque").unwrap();
    fs::remove_file(layer.join("user-opaque")).unwrap();
    let out = stdout(&run(&env, &[NAME]).code(0));
    assert_eq!(out, "opq: top\nkeep: lower top\n");
    assert!(layer.join("user-opaque").is_file());
    env.assert_clean();
}
