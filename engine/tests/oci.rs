//! The OCI runtime verbs driven as runc's clients drive them: bundles whose
//! root.path is the busybox fixture, a private --root per test, the
//! container's stdio in files (the init inherits `create`'s, as with runc).
//! The test process is a subreaper, as conmon and containerd's shim are, so
//! the inits that `create` leaves behind become its children.

mod common;

use common::*;
use serde_json::{json, Value};
use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A bundle and a --root of the test's own.
struct Oci {
    dir: tempfile::TempDir,
}

/// A failed test leaves no init behind: every container of its --root is
/// deleted with --force.
impl Drop for Oci {
    fn drop(&mut self) {
        for entry in fs::read_dir(self.root()).into_iter().flatten().flatten() {
            let id = entry.file_name().to_string_lossy().into_owned();
            let _ = self.call(&["delete", "--force", &id]);
        }
    }
}

/// What one call of the engine left.
struct Out {
    code: i32,
    /// Where stdout went (the container's too, for create).
    stdout_file: PathBuf,
    stdout: String,
    stderr: String,
}

impl Oci {
    fn new(args: &[&str]) -> Oci {
        nix::sys::prctl::set_child_subreaper(true).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let oci = Oci { dir };
        oci.write_config(config(args));
        oci
    }

    fn bundle(&self) -> PathBuf {
        self.dir.path().join("bundle")
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write_config(&self, config: Value) {
        fs::create_dir_all(self.bundle()).unwrap();
        fs::write(
            self.bundle().join("config.json"),
            serde_json::to_vec_pretty(&config).unwrap(),
        )
        .unwrap();
    }

    fn edit_config(&self, f: impl FnOnce(&mut Value)) {
        let mut c: Value =
            serde_json::from_slice(&fs::read(self.bundle().join("config.json")).unwrap()).unwrap();
        f(&mut c);
        self.write_config(c);
    }

    /// `engine --root ROOT ARGS...`; stdout and stderr (also the
    /// container's, for create and run) go to `out`.N files.
    fn call(&self, args: &[&str]) -> Out {
        let mut all = vec!["--root".to_string(), self.root().display().to_string()];
        all.extend(args.iter().map(|s| s.to_string()));
        self.raw(&all)
    }

    fn raw(&self, args: &[String]) -> Out {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let (o, e) = (
            self.path(&format!("out.{n}")),
            self.path(&format!("err.{n}")),
        );
        let mut child = Command::new(ENGINE)
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(fs::File::create(&o).unwrap())
            .stderr(fs::File::create(&e).unwrap())
            .spawn()
            .unwrap();
        let status = wait::child(&mut child, LONG).unwrap();
        Out {
            code: status.code().unwrap_or(-1),
            stdout: fs::read_to_string(&o).unwrap(),
            stdout_file: o.clone(),
            stderr: fs::read_to_string(&e).unwrap(),
        }
    }

    fn ok(&self, args: &[&str]) -> Out {
        let out = self.call(args);
        assert_eq!(out.code, 0, "{args:?} failed: {}", out.stderr);
        out
    }

    fn state(&self, id: &str) -> Value {
        serde_json::from_str(&self.ok(&["state", id]).stdout).unwrap()
    }

    fn status(&self, id: &str) -> String {
        self.state(id)["status"].as_str().unwrap().to_string()
    }

    /// The --root holds nothing (no state directory, no fifo).
    fn assert_root_empty(&self) {
        let left: Vec<_> = fs::read_dir(self.root())
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "left in --root: {left:?}");
    }

    /// Waits until `id` is stopped, then reaps its init (we are its subreaper).
    fn wait_stopped(&self, id: &str, pid: i32) {
        wait::until(SHORT, &format!("{id} to stop"), || {
            (self.status(id) == "stopped").then_some(())
        });
        wait::reap(pid, SHORT).unwrap();
    }
}

/// runc spec's config, on the busybox fixture (read-only: it is shared),
/// with `args` as the process and a tmpfs /tmp.
fn config(args: &[&str]) -> Value {
    let mut c = testkit::oci::runc_spec(args, rootfs(), "oci-test");
    c["linux"]["maskedPaths"] = json!(["/proc/kcore", "/proc/scsi"]);
    c["linux"]["readonlyPaths"] = json!(["/proc/sys"]);
    testkit::oci::add_mount(
        &mut c,
        json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1777", "size=1m"]}),
    );
    c
}

/// The state file's pid, once `create` returned.
fn pid_of(state: &Value) -> i32 {
    state["pid"].as_i64().unwrap() as i32
}

#[test]
fn create_start_state_kill_delete() {
    let oci = Oci::new(&["sh", "-c", "echo started $(hostname) $$; exec sleep 100"]);
    let bundle = oci.bundle().display().to_string();
    let pid_file = oci.path("init.pid");
    let out = oci.ok(&[
        "create",
        "--bundle",
        &bundle,
        "--pid-file",
        pid_file.to_str().unwrap(),
        "c1",
    ]);
    // The pid file: the decimal pid, no newline; the init waits.
    let pid_text = fs::read_to_string(&pid_file).unwrap();
    assert!(!pid_text.ends_with('\n'), "pid file {pid_text:?}");
    let state = oci.state("c1");
    assert_eq!(state["status"], "created");
    assert_eq!(state["id"], "c1");
    assert_eq!(state["bundle"], bundle.as_str());
    assert_eq!(
        state["ociVersion"].as_str().unwrap().chars().next(),
        Some('1')
    );
    assert_eq!(pid_of(&state).to_string(), pid_text);
    assert!(
        out.stdout.is_empty(),
        "nothing ran before start: {}",
        out.stdout
    );

    oci.ok(&["start", "c1"]);
    // The container's stdout is create's (here the file out.N of create).
    let create_out = out.stdout_file.clone();
    let line = wait::until(SHORT, "the container's first line", || {
        fs::read_to_string(&create_out)
            .ok()
            .filter(|s| s.contains('\n'))
    });
    assert_eq!(line.trim(), "started oci-test 1");
    assert_eq!(oci.status("c1"), "running");

    let again = oci.call(&["start", "c1"]);
    assert_ne!(again.code, 0);
    assert!(
        again.stderr.contains("running, not created"),
        "{}",
        again.stderr
    );
    let refused = oci.call(&["delete", "c1"]);
    assert_ne!(refused.code, 0);
    assert!(
        refused.stderr.contains("it is running"),
        "{}",
        refused.stderr
    );
    assert_eq!(oci.status("c1"), "running");

    let ps: Vec<i32> =
        serde_json::from_str(&oci.ok(&["ps", "--format", "json", "c1"]).stdout).unwrap();
    assert_eq!(ps, vec![pid_of(&state)]);

    oci.ok(&["kill", "c1", "KILL"]);
    oci.wait_stopped("c1", pid_of(&state));
    assert_eq!(oci.state("c1")["pid"], 0);
    let dead = oci.call(&["kill", "c1", "9"]);
    assert!(dead.stderr.contains("not running"), "{}", dead.stderr);
    oci.ok(&["delete", "c1"]);
    oci.assert_root_empty();
    let gone = oci.call(&["state", "c1"]);
    assert_ne!(gone.code, 0);
    assert!(gone.stderr.contains("does not exist"), "{}", gone.stderr);
}

/// `start` returns once the init has executed the program, not when it
/// has only been let go: `state` then says running of the program, a
/// `kill` finds it (runtime-tools `killsig`: a shell that traps the signal),
/// and poststart hooks run after it (runtime-spec; runtime-tools
/// `poststart`). A container PATH of 40000 missing directories before /bin
/// keeps the init busy between the go and the exec (one failed execve each),
/// so that a `start` returning at the go sees it before its exec.
#[test]
fn start_returns_once_the_program_is_executed() {
    let oci = Oci::new(&["sleep", "100"]);
    let path = format!("PATH={}/bin", "/a:".repeat(40_000));
    let seen = oci.path("poststart.comm");
    oci.edit_config(|c| {
        c["process"]["env"] = json!([path]);
        // The hook reads the init's pid from the state on its stdin.
        c["hooks"] = json!({"poststart": [{"path": "/bin/sh", "args": ["sh", "-c", format!(
            "pid=$(sed 's/.*\"pid\": *\\([0-9]*\\).*/\\1/'); cat /proc/$pid/comm > {}", seen.display())]}]});
    });
    let bundle = oci.bundle().display().to_string();
    oci.ok(&["create", "--bundle", &bundle, "s1"]);
    let pid = pid_of(&oci.state("s1"));
    oci.ok(&["start", "s1"]);
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_eq!(comm.trim(), "sleep", "the init when start returned");
    let hook_saw = fs::read_to_string(&seen).unwrap();
    assert_eq!(hook_saw.trim(), "sleep", "the init when poststart ran");
    assert_eq!(oci.status("s1"), "running");
    oci.ok(&["kill", "s1", "KILL"]);
    oci.wait_stopped("s1", pid);
    oci.ok(&["delete", "s1"]);
    oci.assert_root_empty();
}

#[test]
fn run_returns_the_exit_code_and_leaves_nothing() {
    let oci = Oci::new(&[
        "sh",
        "-c",
        "echo $(id -u):$(ulimit -n):$(hostname); grep CapEff /proc/self/status; \
         grep ' /data ' /proc/self/mountinfo | cut -d' ' -f6; cat /data/f; \
         touch /run/x && echo run-writable; exit 7",
    ]);
    let data = oci.path("data");
    fs::create_dir(&data).unwrap();
    fs::write(data.join("f"), "from-host\n").unwrap();
    oci.edit_config(|c| {
        let mounts = c["mounts"].as_array_mut().unwrap();
        mounts.push(
            json!({"destination": "/data", "type": "bind", "source": data,
            "options": ["rbind", "rprivate", "ro", "nosuid", "nodev", "noexec"]}),
        );
        mounts.push(
            json!({"destination": "/run", "type": "tmpfs", "source": "tmpfs",
            "options": ["nosuid", "nodev", "mode=1777", "size=64k"]}),
        );
        c["process"]["user"] = json!({"uid": 1000, "gid": 1000});
        c["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "hard": 333, "soft": 333}]);
    });
    let bundle = oci.bundle().display().to_string();
    let out = oci.call(&["run", "--bundle", &bundle, "r1"]);
    assert_eq!(out.code, 7, "{}", out.stderr);
    let mut lines = out.stdout.lines();
    assert_eq!(lines.next(), Some("1000:333:oci-test"));
    // A non-root user without ambient capabilities has none after exec
    // (as with runc).
    assert_eq!(
        lines.next().map(|l| l.split_whitespace().last().unwrap()),
        Some("0000000000000000")
    );
    // The bind mount's options, and a tmpfs where the config asks.
    let opts: Vec<&str> = lines.next().unwrap().split(',').collect();
    for o in ["ro", "nosuid", "nodev", "noexec"] {
        assert!(opts.contains(&o), "{opts:?}");
    }
    assert_eq!(lines.next(), Some("from-host"));
    assert_eq!(lines.next(), Some("run-writable"));
    oci.assert_root_empty();
}

/// Mounts are made in the order config.json lists them (the runtime-spec's
/// MUST), the engine's own /proc, /dev and /sys included: here a tmpfs
/// before /proc, /sys after /dev (runc spec's order), then a bind over the
/// first tmpfs and another tmpfs. runtime-tools failed 9 tests on
/// `mounts[5] (/sys) found in order` when the engine made its own in a
/// fixed order, and a bind listed after a tmpfs at the same place was
/// covered by it. mountinfo lists mounts by creation on Linux 6.8 and
/// later: the bind shows in its place too (its tree is cloned again when
/// its turn comes; the first clone, made by `create`, listed before
/// everything). The bind carries tmpfs options (runtime-tools' `mounts`
/// gives every bind "mode=755" and "size=1k"): runc hands them to
/// mount(2), which ignores them for a bind; the engine refused them.
#[test]
fn mounts_are_made_in_the_config_s_order() {
    let oci = Oci::new(&[
        "sh",
        "-c",
        "sed 's/^[^ ]* [^ ]* [^ ]* [^ ]* \\([^ ]*\\) .* - \\([^ ]*\\) .*/\\1 \\2/' /proc/self/mountinfo; cat /a/f",
    ]);
    let data = oci.path("data");
    fs::create_dir(&data).unwrap();
    fs::write(data.join("f"), "from-the-bind\n").unwrap();
    oci.edit_config(|c| {
        let mounts = c["mounts"].as_array_mut().unwrap();
        mounts.retain(|m| m["destination"] != "/tmp");
        let tmpfs = |d: &str| json!({"destination": d, "type": "tmpfs", "source": "tmpfs", "options": ["size=64k"]});
        mounts.insert(0, tmpfs("/a"));
        mounts.push(json!({"destination": "/a", "type": "bind", "source": data, "options": ["rbind", "mode=755", "size=1k"]}));
        mounts.push(tmpfs("/b"));
    });
    // The targets are made in the rootfs: a copy of the test's own.
    let (_guard, rootfs) = rootfs_copy("rootfs");
    oci.edit_config(|c| c["root"]["path"] = json!(rootfs));
    let bundle = oci.bundle().display().to_string();
    let out = oci.call(&["run", "--bundle", &bundle, "order"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    // The bind: /a of the host's file system type.
    let fs_of_data = fs_type_of(&data);
    let bind = format!("/a {fs_of_data}");
    let wanted = [
        "/a tmpfs",
        "/proc proc",
        "/dev tmpfs",
        "/dev/pts devpts",
        "/dev/shm tmpfs",
        "/dev/mqueue mqueue",
        "/sys sysfs",
        &bind,
        "/b tmpfs",
    ];
    let seen: Vec<&str> = out.stdout.lines().filter(|l| wanted.contains(l)).collect();
    assert_eq!(seen, wanted, "mountinfo:\n{}", out.stdout);
    assert_eq!(out.stdout.lines().last(), Some("from-the-bind"));
    oci.assert_root_empty();
}

/// The file system type of the mount `path` is on, from our mountinfo
/// (the longest mount point that holds it).
fn fs_type_of(path: &Path) -> String {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mut best = (0, String::new());
    for line in info.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let mount_point = Path::new(fields[4]);
        let after = line.split(" - ").nth(1).unwrap_or_default();
        let fs_type = after.split(' ').next().unwrap_or_default();
        let depth = mount_point.components().count();
        if path.starts_with(mount_point) && depth >= best.0 {
            best = (depth, fs_type.to_string());
        }
    }
    best.1
}

/// linux.rootfsPropagation and a bind's propagation option, as runc
/// applies them, on a host whose `/` is shared (a systemd host's): the
/// container's `/` gets what the config asks once it is the root, a bind
/// asked `rshared` sends the container's mounts in it to the host (what
/// Kubernetes' Bidirectional propagation needs), and nothing else of the
/// container ever reaches the host. Both were refused at create before.
#[test]
fn root_and_bind_propagation_as_the_config_asks() {
    // (rootfsPropagation, the bind's option, the root's tag, rbind of /
    // works, the container's mount in the bind reaches the host)
    let cases = [
        ("rshared", "rshared", Some("shared:"), true, true),
        ("shared", "rslave", Some("shared:"), true, false),
        ("runbindable", "rprivate", Some("unbindable"), false, false),
        ("private", "private", None, true, false),
    ];
    testkit::mountns::in_shared(|| {
        for (root_prop, bind_prop, tag, rbind, reaches_host) in cases {
            let oci = Oci::new(&[
                "sh",
                "-c",
                "awk '$5==\"/\"' /proc/self/mountinfo; mkdir /t; mount --rbind / /t && echo rbind-ok; \
                 mount -t tmpfs inner /vol/sub && echo inner-ok",
            ]);
            // The volume: a mount point of its own (shared, as everything here).
            let vol = oci.path("vol");
            fs::create_dir_all(vol.join("sub")).unwrap();
            nix::mount::mount(
                Some("tmpfs"),
                &vol,
                Some("tmpfs"),
                nix::mount::MsFlags::empty(),
                Some("size=64k"),
            )
            .unwrap();
            fs::create_dir(vol.join("sub")).unwrap();
            let (_guard, rootfs) = rootfs_copy("rootfs");
            oci.edit_config(|c| {
                c["root"] = json!({"path": rootfs, "readonly": false});
                c["linux"]["rootfsPropagation"] = json!(root_prop);
                testkit::oci::add_mount(c, json!({"destination": "/vol", "type": "bind", "source": vol, "options": ["rbind", bind_prop]}));
                for set in ["bounding", "effective", "permitted"] {
                    c["process"]["capabilities"][set].as_array_mut().unwrap().push(json!("CAP_SYS_ADMIN"));
                }
            });
            let before = testkit::mountns::Mounts::now();
            let bundle = oci.bundle().display().to_string();
            let out = oci.call(&["run", "--bundle", &bundle, "prop"]);
            let after = testkit::mountns::Mounts::now();
            let _ = nix::mount::umount2(&vol.join("sub"), nix::mount::MntFlags::MNT_DETACH);
            let _ = nix::mount::umount2(&vol, nix::mount::MntFlags::MNT_DETACH);
            let case = format!("{root_prop}/{bind_prop}: {}{}", out.stdout, out.stderr);
            assert_eq!(out.code, 0, "{case}");
            let root_line = out.stdout.lines().next().unwrap_or_default();
            match tag {
                Some(tag) => assert!(root_line.contains(tag), "{case}"),
                None => assert!(
                    !root_line.contains("shared:") && !root_line.contains("master:"),
                    "{case}"
                ),
            }
            assert_eq!(out.stdout.contains("rbind-ok"), rbind, "{case}");
            assert!(out.stdout.contains("inner-ok"), "{case}");
            let changes = after.changes_since(&before);
            let want: Vec<bool> = changes
                .iter()
                .map(|c| c.starts_with('+') && c.contains(" inner "))
                .collect();
            assert_eq!(
                want,
                vec![true; reaches_host as usize],
                "{case}\nhost changes: {changes:#?}"
            );
        }
    });
}

/// tmpcopyup (podman's `--read-only` and `--tmpfs`), as runc does it: the
/// tmpfs starts with what the rootfs has at its destination, owners, modes
/// and node types kept, and `ro` holds once it is filled. The rootfs is
/// the attacker's and the copy runs before pivot_root, where `/` is the
/// host's: symlinks to a host file and a host directory are copied as
/// symlinks, so nothing of the host is read into the container. It was
/// refused at create before.
#[test]
fn tmpcopyup_copies_the_rootfs_s_directory_and_follows_no_symlink() {
    let oci = Oci::new(&[
        "sh",
        "-c",
        "cd /x && stat -c '%n %u:%g %a %F' . f d d/g p leak dleak; cat f d/g; \
         cat leak dleak/secret 2>/dev/null; readlink leak; \
         awk '$5==\"/x\" || $5==\"/y\" {print $5, $6}' /proc/self/mountinfo; \
         echo written > /y/w && cat /y/w /y/kept",
    ]);
    // The host's secrets, named by absolute symlinks in the rootfs; not
    // under /tmp, which the engine covers with the rootfs meanwhile.
    let secret_dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let secret = secret_dir.path().to_path_buf();
    fs::write(secret.join("secret"), "host-secret\n").unwrap();
    let (_guard, rootfs) = rootfs_copy("rootfs");
    let x = rootfs.join("x");
    fs::create_dir_all(x.join("d")).unwrap();
    fs::write(x.join("f"), "top-file\n").unwrap();
    fs::write(x.join("d/g"), "deep-file\n").unwrap();
    nix::unistd::mkfifo(
        &x.join("p"),
        nix::sys::stat::Mode::from_bits(0o620).unwrap(),
    )
    .unwrap();
    std::os::unix::fs::symlink(secret.join("secret"), x.join("leak")).unwrap();
    std::os::unix::fs::symlink(&secret, x.join("dleak")).unwrap();
    let own = |path: &str, uid: u32, gid: u32, mode: u32| {
        use std::os::unix::fs::PermissionsExt;
        let p = x.join(path);
        std::os::unix::fs::lchown(&p, Some(uid), Some(gid)).unwrap();
        if !fs::symlink_metadata(&p).unwrap().is_symlink() {
            fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        }
    };
    // The process is root without CAP_DAC_OVERRIDE: others may read.
    own("", 1234, 5678, 0o751);
    own("f", 1000, 1001, 0o2644);
    own("d", 1002, 1003, 0o711);
    own("d/g", 0, 0, 0o604);
    own("p", 7, 8, 0o620);
    own("leak", 9, 10, 0);
    fs::create_dir(rootfs.join("y")).unwrap();
    fs::write(rootfs.join("y/kept"), "kept\n").unwrap();
    oci.edit_config(|c| {
        c["root"] = json!({"path": rootfs, "readonly": true});
        let tmpfs = |d: &str, extra: &str| json!({"destination": d, "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "size=1m", "tmpcopyup", extra]});
        testkit::oci::add_mount(c, tmpfs("/x", "ro"));
        testkit::oci::add_mount(c, tmpfs("/y", "rw"));
    });
    let bundle = oci.bundle().display().to_string();
    let out = oci.call(&["run", "--bundle", &bundle, "copyup"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let leak = secret.join("secret").display().to_string();
    let want = format!(
        ". 1234:5678 751 directory\n\
         f 1000:1001 2644 regular file\n\
         d 1002:1003 711 directory\n\
         d/g 0:0 604 regular file\n\
         p 7:8 620 fifo\n\
         leak 9:10 777 symbolic link\n\
         dleak 0:0 777 symbolic link\n\
         top-file\ndeep-file\n{leak}\n/x ro,nosuid,nodev,relatime\n/y rw,nosuid,nodev,relatime\nwritten\nkept\n"
    );
    assert_eq!(out.stdout, want, "stderr: {}", out.stderr);
    assert!(!out.stdout.contains("host-secret"));
    // The writes stayed in the tmpfs.
    assert!(!rootfs.join("y/w").exists());
    oci.assert_root_empty();
}

/// `--preserve-fds 1`: the caller's fd 3 reaches the process (create and exec).
#[test]
fn preserved_fds_reach_the_process() {
    use std::os::unix::process::CommandExt;
    let oci = Oci::new(&["sh", "-c", "echo init-wrote >&3; exec sleep 100"]);
    let bundle = oci.bundle().display().to_string();
    let root = oci.root().display().to_string();
    let sink = oci.path("fd3");
    let with_fd3 = |args: &[&str]| {
        let file = fs::File::create(&sink).unwrap();
        let mut cmd = Command::new(ENGINE);
        cmd.args(["--root", &root])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        let raw = file.as_raw_fd();
        // SAFETY: dup2 between fork and exec, async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                // dup2 onto itself would keep close-on-exec.
                let ok = if raw == 3 {
                    libc::fcntl(3, libc::F_SETFD, 0)
                } else {
                    libc::dup2(raw, 3)
                };
                if ok < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let status = wait::child(&mut cmd.spawn().unwrap(), LONG).unwrap();
        assert!(status.success(), "{args:?}");
    };
    with_fd3(&["create", "--preserve-fds", "1", "--bundle", &bundle, "f1"]);
    let pid = pid_of(&oci.state("f1"));
    oci.ok(&["start", "f1"]);
    wait::until(SHORT, "the init's line on fd 3", || {
        fs::read_to_string(&sink)
            .ok()
            .filter(|s| s == "init-wrote\n")
    });
    with_fd3(&[
        "exec",
        "--preserve-fds",
        "1",
        "f1",
        "sh",
        "-c",
        "echo exec-wrote >&3",
    ]);
    assert_eq!(fs::read_to_string(&sink).unwrap(), "exec-wrote\n");
    oci.ok(&["delete", "--force", "f1"]);
    wait::reap(pid, SHORT).unwrap();
    oci.assert_root_empty();
}

/// Each bad input: non-zero exit, one line naming the culprit, nothing left.
#[test]
fn bad_input_is_refused_with_one_line_and_nothing_left() {
    type Change = fn(&Oci);
    let cases: [(&str, Change, &str); 10] = [
        (
            "cgroupsPath out of the tree",
            |o| o.edit_config(|c| c["linux"]["cgroupsPath"] = json!("/../../tmp/x")),
            "leaves the cgroup tree",
        ),
        (
            "no config",
            |o| fs::remove_file(o.bundle().join("config.json")).unwrap(),
            "config.json",
        ),
        (
            "malformed",
            |o| fs::write(o.bundle().join("config.json"), "{not json").unwrap(),
            "not a valid OCI runtime config",
        ),
        (
            "ociVersion",
            |o| o.edit_config(|c| c["ociVersion"] = json!("2.0.0")),
            "ociVersion \"2.0.0\"",
        ),
        (
            "rootfs",
            |o| o.edit_config(|c| c["root"]["path"] = json!("/nonexistent-rootfs")),
            "/nonexistent-rootfs does not exist",
        ),
        (
            "unsupported field",
            |o| o.edit_config(|c| c["linux"]["personality"] = json!({"domain": "LINUX32"})),
            "linux.personality",
        ),
        (
            "unknown mount type",
            |o| {
                o.edit_config(|c| {
                    c["mounts"]
                        .as_array_mut()
                        .unwrap()
                        .push(json!({"destination": "/x", "type": "nfs", "source": "h:/x"}))
                })
            },
            "type \"nfs\"",
        ),
        (
            "the caller's mount namespace",
            |o| {
                o.edit_config(|c| {
                    c["linux"]["namespaces"] = json!([{"type": "pid"}, {"type": "uts"}])
                })
            },
            "without a mount namespace (linux.namespaces has none)",
        ),
        (
            "missing command",
            |o| o.edit_config(|c| c["process"]["args"] = json!(["/no/such/program"])),
            "executable file not found",
        ),
        (
            "terminal without socket",
            |o| o.edit_config(|c| c["process"]["terminal"] = json!(true)),
            "--console-socket",
        ),
    ];
    for (what, change, words) in cases {
        let oci = Oci::new(&["true"]);
        change(&oci);
        let bundle = oci.bundle().display().to_string();
        let out = oci.call(&["create", "--bundle", &bundle, "bad"]);
        assert_ne!(out.code, 0, "{what}: accepted");
        assert_eq!(out.stderr.lines().count(), 1, "{what}: {}", out.stderr);
        assert!(out.stderr.contains(words), "{what}: {}", out.stderr);
        oci.assert_root_empty();
    }
}

#[test]
fn unknown_and_duplicate_ids() {
    let oci = Oci::new(&["sleep", "100"]);
    for verb in [&["state"][..], &["start"], &["kill"], &["delete"], &["ps"]] {
        let mut args = verb.to_vec();
        args.push("nope");
        let out = oci.call(&args);
        assert_ne!(out.code, 0, "{verb:?}");
        assert!(
            out.stderr.contains("container nope does not exist"),
            "{verb:?}: {}",
            out.stderr
        );
        assert_eq!(out.stderr.lines().count(), 1);
    }
    // Nothing to delete is what --force asks for: exit 0, as runc and crun
    // (containerd and podman run it after a failed create); a bad ID is
    // still refused.
    let out = oci.ok(&["delete", "--force", "nope"]);
    assert_eq!((out.stdout.as_str(), out.stderr.as_str()), ("", ""));
    let out = oci.call(&["delete", "--force", "a/b"]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("invalid container ID"),
        "{}",
        out.stderr
    );
    let bundle = oci.bundle().display().to_string();
    oci.ok(&["create", "--bundle", &bundle, "dup"]);
    let pid = pid_of(&oci.state("dup"));
    let out = oci.call(&["create", "--bundle", &bundle, "dup"]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("container dup already exists"),
        "{}",
        out.stderr
    );
    // The first one is untouched.
    assert_eq!(oci.status("dup"), "created");
    assert_eq!(pid_of(&oci.state("dup")), pid);
    // A created container is deleted without --force, as runc does.
    oci.ok(&["delete", "dup"]);
    wait::reap(pid, SHORT).unwrap();
    oci.assert_root_empty();
}

/// conmon or the shim killed after `create`: the init waits on; `state`
/// reports it and `delete` removes it. And `create` itself killed while a
/// prestart hook holds it: the half-made container is reported and removed.
#[test]
fn a_killed_caller_leaves_a_container_that_delete_removes() {
    let oci = Oci::new(&["sleep", "100"]);
    let bundle = oci.bundle().display().to_string();
    let root = oci.root().display().to_string();
    let mut caller = Command::new("sh")
        .args(["-c", &format!("{ENGINE} --root {root} create --bundle {bundle} k1 >/dev/null 2>&1 && echo created && exec sleep 100")])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = wait::Lines::new(caller.stdout.take().unwrap());
    lines.expect_line("created", SHORT);
    caller.kill().unwrap();
    caller.wait().unwrap();
    let pid = pid_of(&oci.state("k1"));
    assert_eq!(oci.status("k1"), "created");
    oci.ok(&["delete", "k1"]);
    wait::reap(pid, SHORT).unwrap();
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists()
            || fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap()
                .contains(") Z")
    );
    oci.assert_root_empty();

    let marker = oci.path("hook-ran");
    oci.edit_config(|c| {
        c["hooks"] = json!({"prestart": [{"path": "/bin/sh", "args": ["sh", "-c", format!("echo $$ > {m}.tmp; mv {m}.tmp {m}; exec sleep 100", m = marker.display())]}]});
    });
    let mut create = Command::new(ENGINE)
        .args(["--root", &root, "create", "--bundle", &bundle, "k2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait::file(&marker, SHORT).unwrap();
    create.kill().unwrap();
    create.wait().unwrap();
    // The init, waiting for create's go, saw it die and left.
    wait::until(SHORT, "k2 to stop", || {
        (oci.status("k2") == "stopped").then_some(())
    });
    oci.ok(&["delete", "k2"]);
    oci.assert_root_empty();
    // The hook's sleep, orphaned to us (the subreaper).
    let hook: i32 = fs::read_to_string(&marker).unwrap().trim().parse().unwrap();
    let hook = nix::unistd::Pid::from_raw(hook);
    let _ = nix::sys::signal::kill(hook, nix::sys::signal::Signal::SIGKILL);
    wait::reap(hook.as_raw(), SHORT).unwrap();
}

#[test]
fn hooks_run_in_the_spec_order_with_the_state_on_stdin() {
    let oci = Oci::new(&["true"]);
    // The init's hooks reach the log through a bind mount: createContainer
    // by a path relative to its working directory (the container's root,
    // before pivot_root), startContainer inside the container.
    let log_dir = oci.path("log");
    fs::create_dir(&log_dir).unwrap();
    let log = log_dir.join("hooks.log");
    let hook_to = |name: &str, log: &str| json!({"path": "/bin/sh", "args": ["sh", "-c", format!("read -r state; echo {name} ${{#state}} >> {log}; case \"$state\" in *'\"id\":\"h1\"'*) ;; *) echo bad state >> {log};; esac")]});
    let host_log = log.display().to_string();
    let hook = |name: &str| hook_to(name, &host_log);
    oci.edit_config(|c| {
        c["hooks"] = json!({
            "prestart": [hook("prestart")],
            "createRuntime": [hook("createRuntime1"), hook("createRuntime2")],
            "createContainer": [hook_to("createContainer", "log/hooks.log")],
            "startContainer": [hook_to("startContainer", "/log/hooks.log")],
            "poststart": [hook("poststart")],
            "poststop": [hook("poststop")]
        });
        c["mounts"].as_array_mut().unwrap().push(
            json!({"destination": "/log", "type": "bind", "source": log_dir, "options": ["rbind", "rw"]}),
        );
    });
    let bundle = oci.bundle().display().to_string();
    let out = oci.call(&["run", "--bundle", &bundle, "h1"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let text = fs::read_to_string(&log).unwrap();
    let names: Vec<&str> = text.lines().map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(
        names,
        [
            "prestart",
            "createRuntime1",
            "createRuntime2",
            "createContainer",
            "startContainer",
            "poststart",
            "poststop"
        ],
        "{text}"
    );
    oci.assert_root_empty();
}

/// Receives one fd sent with SCM_RIGHTS on `sock`.
fn recv_fd(sock: &std::os::unix::net::UnixStream) -> OwnedFd {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut buf = [0u8; 256];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::empty(),
    )
    .unwrap();
    for c in msg.cmsgs().unwrap() {
        if let ControlMessageOwned::ScmRights(fds) = c {
            // SAFETY: the kernel just gave us this fd.
            return unsafe { OwnedFd::from_raw_fd(fds[0]) };
        }
    }
    panic!("no fd on the console socket");
}

#[test]
fn console_socket_gets_the_pty_master() {
    let oci = Oci::new(&["sh", "-c", "tty; echo size $(stty size)"]);
    oci.edit_config(|c| {
        c["process"]["terminal"] = json!(true);
        c["process"]["consoleSize"] = json!({"height": 33, "width": 111});
    });
    let sock_path = oci.path("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock_path).unwrap();
    let bundle = oci.bundle().display().to_string();
    oci.ok(&[
        "create",
        "--bundle",
        &bundle,
        "--console-socket",
        sock_path.to_str().unwrap(),
        "t1",
    ]);
    let (conn, _) = listener.accept().unwrap();
    let master = recv_fd(&conn);
    let pid = pid_of(&oci.state("t1"));
    oci.ok(&["start", "t1"]);
    let mut text = String::new();
    let mut file = fs::File::from(master);
    let mut buf = [0u8; 512];
    while !text.contains("size") || !text.ends_with('\n') {
        use std::io::Read;
        match file.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => text.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
    // The container's own devpts, as runc does it.
    assert!(text.contains("/dev/pts/0\r\n"), "{text}");
    assert!(text.contains("size 33 111"), "{text}");
    oci.wait_stopped("t1", pid);
    oci.ok(&["delete", "t1"]);
}

#[test]
fn exec_with_a_process_file_detached_and_attached() {
    let oci = Oci::new(&["sleep", "100"]);
    let bundle = oci.bundle().display().to_string();
    oci.ok(&["create", "--bundle", &bundle, "e1"]);
    oci.ok(&["start", "e1"]);
    let pid = pid_of(&oci.state("e1"));
    let process = oci.path("process.json");
    let marker = "/tmp/exec-ran";
    fs::write(
        &process,
        json!({"args": ["sh", "-c", format!("echo $(id -u) $HOME > {marker}; exec sleep 100")], "env": ["PATH=/bin", "HOME=/h"], "cwd": "/", "user": {"uid": 7, "gid": 7}}).to_string(),
    )
    .unwrap();
    let exec_pid = oci.path("exec.pid");
    oci.ok(&[
        "exec",
        "--process",
        process.to_str().unwrap(),
        "--detach",
        "--pid-file",
        exec_pid.to_str().unwrap(),
        "e1",
    ]);
    let exec_pid: i32 = fs::read_to_string(&exec_pid).unwrap().parse().unwrap();
    let ps: Vec<i32> =
        serde_json::from_str(&oci.ok(&["ps", "--format", "json", "e1"]).stdout).unwrap();
    assert!(ps.contains(&exec_pid) && ps.contains(&pid), "{ps:?}");
    let out = oci.call(&["exec", "e1", "sh", "-c", &format!("cat {marker}; exit 3")]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "7 /h");
    oci.ok(&["kill", "--all", "e1", "KILL"]);
    // The detached exec is ours to reap (we are the subreaper, as conmon
    // is); until then its pid namespace cannot finish dying.
    wait::reap(exec_pid, SHORT).unwrap();
    oci.wait_stopped("e1", pid);
    oci.ok(&["delete", "e1"]);
    oci.assert_root_empty();
}

/// pause/resume drive the cgroup v2 freezer; on a host without cgroup v2
/// (this project's machines) they are refused with a sentence.
#[test]
fn pause_and_resume() {
    let oci = Oci::new(&["sleep", "100"]);
    let bundle = oci.bundle().display().to_string();
    oci.ok(&["create", "--bundle", &bundle, "p1"]);
    let refused = oci.call(&["pause", "p1"]);
    assert!(
        refused.stderr.contains("not created") || refused.stderr.contains("running"),
        "{}",
        refused.stderr
    );
    oci.ok(&["start", "p1"]);
    let pid = pid_of(&oci.state("p1"));
    let v2 = testkit::cgroup::v2_limits().is_ok();
    let out = oci.call(&["pause", "p1"]);
    if v2 {
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert_eq!(oci.status("p1"), "paused");
        oci.ok(&["resume", "p1"]);
        assert_eq!(oci.status("p1"), "running");
    } else {
        assert_ne!(out.code, 0);
        assert!(
            out.stderr.contains("no cgroup v2 freezer"),
            "{}",
            out.stderr
        );
        assert_eq!(oci.status("p1"), "running");
    }
    oci.ok(&["delete", "--force", "p1"]);
    wait::reap(pid, SHORT).unwrap();
    oci.assert_root_empty();
}

#[test]
fn features_and_json_error_log() {
    let oci = Oci::new(&["true"]);
    let f: Value = serde_json::from_str(&oci.ok(&["features"]).stdout).unwrap();
    assert_eq!(f["ociVersionMax"], "1.3.0");
    assert!(f["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .contains(&json!("user")));
    // The mount options listed are those the engine applies: every one
    // but bind and rbind, on one tmpfs, is accepted (the last propagation
    // one wins).
    let options: Vec<&str> = f["mountOptions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for wanted in [
        "shared",
        "rshared",
        "slave",
        "rslave",
        "private",
        "rprivate",
        "unbindable",
        "runbindable",
        "tmpcopyup",
    ] {
        assert!(options.contains(&wanted), "{wanted} not in {options:?}");
    }
    let on_tmpfs: Vec<&str> = options
        .into_iter()
        .filter(|o| !["bind", "rbind"].contains(o))
        .collect();
    oci.edit_config(|c| {
        testkit::oci::add_mount(
            c,
            json!({"destination": "/all", "type": "tmpfs", "source": "tmpfs", "options": on_tmpfs}),
        );
    });
    let (_guard, rootfs) = rootfs_copy("rootfs");
    oci.edit_config(|c| c["root"]["path"] = json!(rootfs));
    let bundle = oci.bundle().display().to_string();
    let out = oci.call(&["run", "--bundle", &bundle, "features"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    // podman's mixed form: --log-format=json --log FILE; the file holds one object.
    let log = oci.path("log.json");
    let out = oci.raw(&[
        "--log-format=json".into(),
        "--log".into(),
        log.display().to_string(),
        "--root".into(),
        oci.root().display().to_string(),
        "state".into(),
        "missing".into(),
    ]);
    assert_ne!(out.code, 0);
    let obj: Value = serde_json::from_str(&fs::read_to_string(&log).unwrap()).unwrap();
    assert_eq!(obj["level"], "error");
    assert!(
        obj["msg"].as_str().unwrap().contains("does not exist"),
        "{obj}"
    );
    assert!(obj["time"].as_str().unwrap().ends_with('Z'));
}

/// containerd's shim (go-runc) argument lists, exactly as it builds them.
#[test]
fn go_runc_argument_lists() {
    let oci = Oci::new(&["sleep", "100"]);
    let b = oci.bundle().display().to_string();
    let root = oci.root().display().to_string();
    let log = format!("{b}/log.json");
    let call = |args: &[&str]| {
        let mut all: Vec<String> = ["--root", &root, "--log", &log, "--log-format", "json"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        all.extend(args.iter().map(|s| s.to_string()));
        let out = oci.raw(&all);
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
        out
    };
    call(&[
        "create",
        "--bundle",
        &b,
        "--pid-file",
        &format!("{b}/init.pid"),
        "g1",
    ]);
    let pid: i32 = fs::read_to_string(format!("{b}/init.pid"))
        .unwrap()
        .parse()
        .unwrap();
    call(&["start", "g1"]);
    let process = format!("{b}/exec.json");
    fs::write(
        &process,
        json!({"args": ["sleep", "100"], "cwd": "/", "user": {"uid": 0, "gid": 0}}).to_string(),
    )
    .unwrap();
    call(&[
        "exec",
        "--process",
        &process,
        "--detach",
        "--pid-file",
        &format!("{b}/e1.pid"),
        "g1",
    ]);
    let ps: Vec<i32> =
        serde_json::from_str(&call(&["ps", "--format", "json", "g1"]).stdout).unwrap();
    assert_eq!(ps.len(), 2, "{ps:?}");
    call(&["kill", "g1", "15"]);
    call(&["kill", "--all", "g1", "9"]);
    let exec_pid: i32 = fs::read_to_string(format!("{b}/e1.pid"))
        .unwrap()
        .parse()
        .unwrap();
    wait::reap(exec_pid, SHORT).unwrap();
    oci.wait_stopped("g1", pid);
    call(&["delete", "g1"]);
    // The shim's own cleanup after it: nothing to delete, exit 0 (runc's).
    let again: Vec<String> = [
        "--root",
        &root,
        "--log",
        &log,
        "--log-format",
        "json",
        "delete",
        "--force",
        "g1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let out = oci.raw(&again);
    assert_eq!((out.code, out.stderr.as_str()), (0, ""));
    oci.assert_root_empty();
}

/// podman as a real client (conmon, its own config.json, seccomp profile,
/// /etc bind mounts), on isolated storage, without a network (bridges are
/// never made on this host's own network namespace) and without cgroups
/// (this host is cgroup v1 hybrid). Takes ~10 s: five podman commands.
#[test]
fn podman_runs_containers_on_the_engine() {
    let podman = Podman::new();
    let rootfs = podman.rootfs();
    let podman_cmd = |args: &[&str]| {
        let mut c = podman.command();
        c.args(args);
        let out = wait::output(&mut c, LONG).unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let opts = [
        "--cgroups=disabled",
        "--network=none",
        "--ulimit=nofile=20000:20000",
        "--ulimit=nproc=1000:1000",
        "--rootfs",
        rootfs.to_str().unwrap(),
    ];
    let run = |extra: &[&str], cmd: &[&str]| {
        let mut a = vec!["run"];
        a.extend(extra);
        a.extend(opts);
        a.extend(cmd);
        podman_cmd(&a)
    };
    let (code, out, err) = run(
        &["--rm"],
        &["/bin/sh", "-c", "echo hello $(ulimit -n); exit 5"],
    );
    assert_eq!(code, 5, "{err}");
    assert_eq!(out.trim(), "hello 20000");

    let (code, id, err) = run(
        &["-d", "--name", "p1"],
        &[
            "/bin/sh",
            "-c",
            "echo up; trap 'echo bye; exit 3' TERM; while :; do sleep 0.1; done",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = podman_cmd(&["exec", "p1", "sh", "-c", "echo in-exec $$"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("in-exec "), "{out}");
    let (code, _, err) = podman_cmd(&["stop", "-t", "10", "p1"]);
    assert_eq!(code, 0, "{err}");
    let (_, logs, _) = podman_cmd(&["logs", "p1"]);
    assert_eq!(logs, "up\nbye\n");
    let (_, exit, _) = podman_cmd(&["inspect", "p1", "--format", "{{.State.ExitCode}}"]);
    assert_eq!(exit.trim(), "3");
    let (code, _, err) = podman_cmd(&["rm", "-f", "p1"]);
    assert_eq!(code, 0, "{err}");
    // Nothing of the engine's left for that container.
    let state = Path::new(engine::oci::DEFAULT_ROOT).join(id.trim());
    assert!(!state.exists(), "{} left behind", state.display());
}

/// `podman run --read-only --tmpfs /x`: podman asks tmpcopyup for its
/// tmpfs mounts (/x, and /tmp, /var/tmp and /run of `--read-only`), which
/// the engine refused at create. The tmpfs on /x starts with the rootfs's
/// /x, takes writes that never reach the rootfs, and the root stays
/// read-only. Same isolation as `podman_runs_containers_on_the_engine`.
#[test]
fn podman_read_only_with_tmpfs_copies_up() {
    let podman = Podman::new();
    let rootfs = podman.rootfs();
    fs::create_dir(rootfs.join("x")).unwrap();
    fs::write(rootfs.join("x/f"), "from-the-rootfs\n").unwrap();
    let mut c = podman.command();
    c.args([
        "run",
        "--rm",
        "--read-only",
        "--tmpfs",
        "/x",
        "--cgroups=disabled",
        "--network=none",
        "--ulimit=nofile=20000:20000",
        "--ulimit=nproc=1000:1000",
        "--rootfs",
        rootfs.to_str().unwrap(),
        "/bin/sh",
        "-c",
        "cat /x/f; echo written > /x/w && cat /x/w; \
         touch /ro 2>/dev/null || echo root-read-only; echo t > /tmp/t && cat /tmp/t",
    ]);
    let out = wait::output(&mut c, LONG).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "from-the-rootfs\nwritten\nroot-read-only\nt\n",
        "{stderr}"
    );
    assert!(!rootfs.join("x/w").exists(), "the write reached the rootfs");
}

/// podman on storage of its own in a temporary directory, with a busybox
/// rootfs there, told the engine's features (podman passes
/// --cgroup-manager/--log only to runtimes its containers.conf names).
struct Podman {
    bin: PathBuf,
    dir: tempfile::TempDir,
}

impl Podman {
    fn new() -> Podman {
        let bin = quote::require("podman", "podman");
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("containers.conf"),
            "[engine]\nevents_logger = \"none\"\nruntime_supports_nocgroup = [\"engine\"]\nruntime_supports_json = [\"engine\"]\n",
        )
        .unwrap();
        busybox::copy_to(&dir.path().join("rootfs"));
        Podman { bin, dir }
    }

    fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    /// `podman` with the engine as its runtime and the storage flags.
    fn command(&self) -> Command {
        let d = self.dir.path();
        let mut c = Command::new(&self.bin);
        c.env("CONTAINERS_CONF", d.join("containers.conf"))
            .args(["--root", d.join("storage").to_str().unwrap()])
            .args(["--runroot", d.join("run").to_str().unwrap()])
            .args(["--tmpdir", d.join("tmp").to_str().unwrap()])
            .args(["--cgroup-manager", "cgroupfs", "--runtime", ENGINE]);
        c
    }
}

/// A copy of the engine under another name keeps the engine's command line;
/// only a runc-like name (`runc`, `*-runc`) answers runc's.
#[test]
fn the_binary_s_name_chooses_runc_s_command_line_only_when_it_is_runc() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Path::new(env!("CARGO_BIN_EXE_engine"));
    for (name, oci) in [
        ("engine-1.2", false),
        ("container-engine", false),
        ("runc", true),
        ("engine-runc", true),
    ] {
        let link = dir.path().join(name);
        std::os::unix::fs::symlink(engine, &link).unwrap();
        let out = assert_cmd::Command::new(&link)
            .arg("--help")
            .timeout(std::time::Duration::from_secs(20))
            .output()
            .unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            help.contains("OCI runtime"),
            oci,
            "{name} --help should {}be runc's:\n{help}",
            if oci { "" } else { "not " }
        );
    }
}

/// The device escape: a bundle with no user namespace (podman's and
/// containerd's rootful default) that keeps CAP_MKNOD (containerd's default
/// set has it) makes device nodes wherever it can write, the host's root
/// disk among them, and opens them. None may open: every writable mount
/// the engine makes is nodev (on this cgroup v1 host there is no device
/// cgroup to stop it), as are the bundle's directory volumes. The engine's
/// own /dev nodes keep working.
#[test]
fn device_nodes_made_in_the_container_cannot_be_opened() {
    // A disk (loop0, as good as the host's root disk and harmless to
    // open) and /dev/fuse: on no runtime's default allow list, and
    // openable by host root here (checked first, so a refusal below is the
    // engine's doing). /dev/kmsg would not do: dmesg_restrict refuses it.
    let nodes = [
        ("disk", "b 7 0", "/dev/loop0"),
        ("fuse", "c 10 229", "/dev/fuse"),
    ];
    for (_, _, host) in nodes {
        fs::File::open(host).unwrap_or_else(|e| {
            panic!("cannot open {host} on the host ({e}): load the loop and fuse modules (modprobe loop fuse)")
        });
    }
    let places = ["/dev", "/run", "/data", "/"];
    let mut script = String::from(
        "echo x >/dev/null && head -c 1 /dev/zero | wc -c && head -c 1 /dev/urandom | wc -c; ",
    );
    for place in places {
        for (name, numbers, _) in nodes {
            let node = format!("{}/node-{name}", place.trim_end_matches('/'));
            script += &format!(
                "mknod {node} {numbers} || echo mknod-failed; \
                 (exec 3<{node}) 2>/dev/null && echo {node}:opened || echo {node}:refused; \
                 rm -f {node}; "
            );
        }
    }
    let oci = Oci::new(&["sh", "-c", &script]);
    let (_copy_dir, root) = rootfs_copy("rootfs");
    let data = oci.path("data");
    fs::create_dir(&data).unwrap();
    oci.edit_config(|c| {
        let caps = ["CAP_MKNOD", "CAP_DAC_OVERRIDE", "CAP_KILL"];
        for set in ["bounding", "effective", "permitted"] {
            c["process"]["capabilities"][set] = json!(caps);
        }
        // Writable root (a private copy of the fixture), a tmpfs and a
        // directory volume that ask for nothing: runc's defaults would keep
        // `dev` on all three.
        c["root"] = json!({"path": root, "readonly": false});
        let mounts = c["mounts"].as_array_mut().unwrap();
        mounts.push(
            json!({"destination": "/run", "type": "tmpfs", "source": "tmpfs",
            "options": ["nosuid", "mode=755", "size=64k"]}),
        );
        mounts.push(
            json!({"destination": "/data", "type": "bind", "source": data,
            "options": ["rbind", "rw"]}),
        );
    });
    let bundle = oci.bundle().display().to_string();
    let out = oci.call(&["run", "--bundle", &bundle, "mk"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let mut lines = out.stdout.lines();
    assert_eq!(lines.next(), Some("1"), "/dev/zero: {}", out.stdout);
    assert_eq!(lines.next(), Some("1"), "/dev/urandom: {}", out.stdout);
    let rest: Vec<&str> = lines.collect();
    assert!(
        !rest.contains(&"mknod-failed"),
        "mknod itself should work: {rest:?}"
    );
    let opened: Vec<&&str> = rest.iter().filter(|l| l.ends_with(":opened")).collect();
    assert!(
        opened.is_empty(),
        "device nodes made in the container opened: {opened:?}"
    );
    assert_eq!(rest.len(), places.len() * nodes.len(), "{rest:?}");
    oci.assert_root_empty();
}

/// With no cgroup v2 device filter (this host), a device node the bundle
/// binds in that linux.resources.devices does not allow is refused at
/// create with a sentence; once a rule allows it, it is bound and opens.
#[test]
fn a_bound_device_the_rules_do_not_allow_is_refused_without_a_device_filter() {
    fs::File::open("/dev/loop0")
        .unwrap_or_else(|e| panic!("cannot open /dev/loop0 on the host ({e}): modprobe loop"));
    let oci = Oci::new(&["sh", "-c", "(exec 3</dev/disk) && echo disk-opened"]);
    oci.edit_config(|c| {
        c["mounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({"destination": "/dev/disk",
            "type": "bind", "source": "/dev/loop0", "options": ["bind", "rw"]}));
        // containerd's default: deny everything.
        c["linux"]["resources"] = json!({"devices": [{"allow": false, "access": "rwm"}]});
    });
    let bundle = oci.bundle().display().to_string();
    let out = oci.call(&["run", "--bundle", &bundle, "bd"]);
    assert_ne!(out.code, 0, "{}", out.stdout);
    assert!(
        out.stderr.contains("/dev/loop0 is a device (7:0)")
            && out
                .stderr
                .contains("linux.resources.devices does not allow"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
    oci.assert_root_empty();
    oci.edit_config(|c| {
        c["linux"]["resources"]["devices"]
            .as_array_mut()
            .unwrap()
            .push(json!({"allow": true, "type": "b", "major": 7, "minor": 0, "access": "rw"}));
    });
    let out = oci.call(&["run", "--bundle", &bundle, "bd"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "disk-opened");
    oci.assert_root_empty();
}

/// CVE-2019-5736 without a user namespace (container root is host root):
/// whoever holds /proc/PID/exe of a created init (a container process that
/// joined, here the test itself, as host root) and reopens it for writing
/// once the init is gone must not reach the runtime's binary. A copy of the
/// engine plays the host's binary; the attack really writes to it.
#[test]
fn the_init_s_binary_cannot_be_rewritten_through_proc_pid_exe() {
    use std::os::unix::fs::FileExt;
    let oci = Oci::new(&["true"]);
    let victim = oci.path("engine-victim");
    fs::copy(ENGINE, &victim).unwrap();
    let before = fs::read(&victim).unwrap();
    let pid_file = oci.path("init.pid");
    let args: Vec<String> = [
        "--root",
        oci.root().to_str().unwrap(),
        "create",
        "--bundle",
        oci.bundle().to_str().unwrap(),
        "--pid-file",
        pid_file.to_str().unwrap(),
        "x1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut create = Command::new(&victim)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait::child(&mut create, LONG).unwrap().success());
    let pid: i32 = fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    let held = rustix::fs::open(
        format!("/proc/{pid}/exe"),
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .unwrap();
    oci.ok(&["delete", "--force", "x1"]);
    wait::reap(pid, SHORT).unwrap();
    let reopened = fs::OpenOptions::new()
        .write(true)
        .open(format!("/proc/self/fd/{}", held.as_raw_fd()));
    if let Ok(f) = reopened {
        let _ = f.write_at(b"X", 0);
    }
    assert!(
        before == fs::read(&victim).unwrap(),
        "attack succeeded: the engine's binary was rewritten through the init's /proc/PID/exe"
    );
}

/// The readlinks of /proc/PID/ns/{mnt,pid,net,ipc,uts}, one a line.
fn namespaces_of(pid: &str) -> String {
    ["mnt", "pid", "net", "ipc", "uts"]
        .iter()
        .map(|ns| {
            let link = fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap();
            format!("{}\n", link.display())
        })
        .collect()
}

/// The lines of /proc/self/status that say what a process may do.
const POWERS: &str =
    "grep -E '^(Uid|Gid|Groups|CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status";

/// createContainer runs in the container's namespaces, its mounts made,
/// before pivot_root (its path is the host's: /bin/bash is not in the
/// busybox rootfs, and a script under /tmp is found although the init has
/// the rootfs mounted there), with the container's root as working directory and
/// the state `creating`; startContainer runs after `start`, its path
/// resolved in the container (/hookbin exists only there), with exactly
/// the powers of the container's process (uid, capabilities,
/// no_new_privs, seccomp), the state `created`.
#[test]
fn create_and_start_container_hooks_run_in_the_container() {
    assert!(
        Path::new("/bin/bash").exists()
            && !Path::new(rootfs()).join("bin/bash").exists()
            && !Path::new("/hookbin").exists(),
        "the test needs /bin/bash on the host and not in the busybox rootfs (apt-get install bash)"
    );
    let oci = Oci::new(&[
        "sh",
        "-c",
        &format!("({POWERS}) > /log/process; exec sleep 100"),
    ]);
    let log = oci.path("log");
    let hookbin = oci.path("hookbin");
    fs::create_dir(&log).unwrap();
    fs::create_dir(&hookbin).unwrap();
    // The process and the startContainer hook run as uid 1000.
    fs::set_permissions(&log, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let start_hook = hookbin.join("start");
    fs::write(
        &start_hook,
        format!("#!/bin/sh\nread -r state; echo \"$state\" > /log/start.state\n({POWERS}) > /log/start\n"),
    )
    .unwrap();
    fs::set_permissions(
        &start_hook,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    // A script under /tmp, where the init's copy of the host's tree has
    // the rootfs mounted: found all the same (resolved by `create`).
    let create_hook = oci.path("create-hook");
    fs::write(
        &create_hook,
        "#!/bin/sh\necho script ran > log/create.script\n",
    )
    .unwrap();
    fs::set_permissions(
        &create_hook,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let create_script = "read -r state; echo \"$state\" > log/create.state; \
        for ns in mnt pid net ipc uts; do readlink /proc/self/ns/$ns; done > log/create.ns; \
        pwd > log/create.cwd; test -x hookbin/start && test -d proc/self && echo mounts-made >> log/create.cwd";
    oci.edit_config(|c| {
        c["process"]["user"] = json!({"uid": 1000, "gid": 1000});
        c["hooks"] = json!({
            "createContainer": [
                {"path": "/bin/bash", "args": ["bash", "-c", create_script]},
                {"path": create_hook},
            ],
            "startContainer": [{"path": "/hookbin/start", "args": ["start"], "env": ["PATH=/bin"]}],
        });
        let mounts = c["mounts"].as_array_mut().unwrap();
        mounts.push(json!({"destination": "/log", "type": "bind", "source": log, "options": ["rbind", "rw"]}));
        mounts.push(json!({"destination": "/hookbin", "type": "bind", "source": hookbin, "options": ["rbind", "ro"]}));
    });
    let bundle = oci.bundle().display().to_string();
    oci.ok(&["create", "--bundle", &bundle, "cs"]);
    let pid = pid_of(&oci.state("cs"));
    let state: Value =
        serde_json::from_str(&fs::read_to_string(log.join("create.state")).unwrap()).unwrap();
    assert_eq!(state["status"], "creating");
    assert_eq!(state["id"], "cs");
    assert_eq!(state["pid"], pid);
    assert_eq!(
        fs::read_to_string(log.join("create.ns")).unwrap(),
        namespaces_of(&pid.to_string()),
        "createContainer ran outside the container's namespaces"
    );
    assert_eq!(
        fs::read_to_string(log.join("create.script")).unwrap(),
        "script ran\n"
    );
    let cwd = fs::read_to_string(log.join("create.cwd")).unwrap();
    assert!(cwd.ends_with("mounts-made\n"), "{cwd}");
    assert!(
        !log.join("start").exists(),
        "startContainer ran before start"
    );

    oci.ok(&["start", "cs"]);
    // The shell creates the file before grep writes to it: wait for its last line.
    wait::until(SHORT, "the process to write its powers", || {
        fs::read_to_string(log.join("process"))
            .ok()
            .filter(|p| p.contains("Seccomp:"))
            .map(drop)
    });
    let state: Value =
        serde_json::from_str(&fs::read_to_string(log.join("start.state")).unwrap()).unwrap();
    assert_eq!(state["status"], "created");
    assert_eq!(state["pid"], pid);
    let process = fs::read_to_string(log.join("process")).unwrap();
    let hook = fs::read_to_string(log.join("start")).unwrap();
    assert!(
        process.contains("NoNewPrivs:\t1") && process.contains("Uid:\t1000\t1000\t1000\t1000"),
        "{process}"
    );
    assert_eq!(
        hook, process,
        "the startContainer hook had other powers than the process"
    );
    oci.ok(&["kill", "cs", "KILL"]);
    oci.wait_stopped("cs", pid);
    oci.ok(&["delete", "cs"]);
    oci.assert_root_empty();
}

/// A failing or timed-out createContainer hook fails `create`, naming it,
/// leaving nothing; a failing startContainer hook fails `start`, the
/// process never runs, and the container is stopped.
#[test]
fn failing_create_and_start_container_hooks() {
    let oci = Oci::new(&["sh", "-c", "echo ran; exec sleep 100"]);
    let bundle = oci.bundle().display().to_string();
    let log = oci.path("log");
    fs::create_dir(&log).unwrap();
    oci.edit_config(|c| {
        c["mounts"].as_array_mut().unwrap().push(
            json!({"destination": "/log", "type": "bind", "source": log, "options": ["rbind", "rw"]}),
        )
    });
    // Each hook notes its state (the init's pid) in the container's /log.
    let note = "read -r state; echo \"$state\" > log/state;";
    for (script, timeout, words) in [
        (
            format!("{note} exit 1"),
            None,
            "hooks.createContainer: hook /bin/sh failed: exit status: 1",
        ),
        (
            format!("{note} exec sleep 30"),
            Some(1),
            "hooks.createContainer: hook /bin/sh timed out after 1s",
        ),
    ] {
        oci.edit_config(|c| {
            c["hooks"] = json!({"createContainer": [{"path": "/bin/sh", "args": ["sh", "-c", script], "timeout": timeout}]})
        });
        let started = std::time::Instant::now();
        let out = oci.call(&["create", "--bundle", &bundle, "cf"]);
        assert_ne!(out.code, 0, "accepted");
        assert!(out.stderr.contains(words), "{}", out.stderr);
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        oci.assert_root_empty();
        // The init was killed and reaped by create.
        let state: Value =
            serde_json::from_str(&fs::read_to_string(log.join("state")).unwrap()).unwrap();
        let init = pid_of(&state);
        assert!(
            init > 1 && !Path::new(&format!("/proc/{init}")).exists(),
            "the init {init} is left"
        );
        fs::remove_file(log.join("state")).unwrap();
    }

    oci.edit_config(|c| {
        c["hooks"] =
            json!({"startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "exit 3"]}]})
    });
    let out = oci.ok(&["create", "--bundle", &bundle, "sf"]);
    let pid = pid_of(&oci.state("sf"));
    let start = oci.call(&["start", "sf"]);
    assert_ne!(start.code, 0);
    assert!(
        start
            .stderr
            .contains("hooks.startContainer: hook /bin/sh failed: exit status: 3"),
        "{}",
        start.stderr
    );
    assert_eq!(start.stderr.lines().count(), 1, "{}", start.stderr);
    assert_eq!(oci.status("sf"), "stopped");
    wait::reap(pid, SHORT).unwrap();
    assert!(
        !fs::read_to_string(&out.stdout_file)
            .unwrap()
            .contains("ran"),
        "the process ran after its startContainer hook failed"
    );
    oci.ok(&["delete", "sf"]);
    oci.assert_root_empty();
}

/// Hooks of every kind with a relative path or a negative timeout, and
/// createContainer hooks that are no file (opened by `create`), are
/// refused at create, naming the field.
#[test]
fn bad_hooks_are_refused_at_create() {
    for (kind, hook, words) in [
        (
            "createContainer",
            json!({"path": "bin/true"}),
            "hooks.createContainer[0].path bin/true is not absolute",
        ),
        (
            "startContainer",
            json!({"path": "true"}),
            "hooks.startContainer[0].path true is not absolute",
        ),
        (
            "prestart",
            json!({"path": "./x"}),
            "hooks.prestart[0].path ./x is not absolute",
        ),
        (
            "createContainer",
            json!({"path": "/no/such/hook"}),
            "hooks.createContainer[0].path /no/such/hook: cannot open it",
        ),
        (
            "createContainer",
            json!({"path": "/usr"}),
            "hooks.createContainer[0].path /usr is not a regular file",
        ),
        (
            "startContainer",
            json!({"path": "/bin/true", "timeout": -1}),
            "hooks.startContainer[0].timeout is negative",
        ),
    ] {
        let oci = Oci::new(&["true"]);
        oci.edit_config(|c| c["hooks"] = json!({ kind: [hook] }));
        let bundle = oci.bundle().display().to_string();
        let out = oci.call(&["create", "--bundle", &bundle, "bh"]);
        assert_ne!(out.code, 0, "{kind}: accepted");
        assert_eq!(out.stderr.lines().count(), 1, "{kind}: {}", out.stderr);
        assert!(out.stderr.contains(words), "{kind}: {}", out.stderr);
        oci.assert_root_empty();
    }
}

/// A process the test keeps in namespaces of its own (`unshare ARGS sleep`),
/// killed and reaped when dropped.
struct Holder(std::process::Child);

impl Holder {
    /// Waits until the process is in new namespaces of each kind in `ns`.
    fn new(args: &[&str], ns: &[&str]) -> Holder {
        let child = Command::new("unshare")
            .args(args)
            .args(["sleep", "100"])
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run unshare ({e}): apt-get install util-linux"));
        let holder = Holder(child);
        wait::until(SHORT, "unshare to make its namespaces", || {
            ns.iter()
                .all(|n| holder.ns(n) != fs::read_link(format!("/proc/self/ns/{n}")).ok())
                .then_some(())
        });
        holder
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }

    fn ns(&self, kind: &str) -> Option<PathBuf> {
        fs::read_link(format!("/proc/{}/ns/{kind}", self.pid())).ok()
    }

    fn ns_path(&self, kind: &str) -> String {
        format!("/proc/{}/ns/{kind}", self.pid())
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A user namespace of the test's own mapping container 0.. onto host
/// 200000.. (written from here, as root may), and a mount namespace it owns.
fn user_and_mount_holder() -> Holder {
    let holder = Holder::new(
        &["--user", "--mount", "--propagation", "private"],
        &["user", "mnt"],
    );
    for file in ["gid_map", "uid_map"] {
        fs::write(format!("/proc/{}/{file}", holder.pid()), "0 200000 65536\n").unwrap();
    }
    holder
}

/// `run` the container with `extra` added to pid, network, ipc and uts
/// (and a new mount namespace unless `extra` has one), no id mappings
/// unless `edit` gives some.
fn run_in(oci: &Oci, extra: Value, edit: impl FnOnce(&mut Value)) -> Out {
    oci.edit_config(|c| {
        c["linux"]["namespaces"] =
            json!([{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}]);
        let linux = c["linux"].as_object_mut().unwrap();
        linux.remove("uidMappings");
        linux.remove("gidMappings");
        let list = c["linux"]["namespaces"].as_array_mut().unwrap();
        list.extend(extra.as_array().unwrap().iter().cloned());
        if !list.iter().any(|n| n["type"] == "mount") {
            list.push(json!({"type": "mount"}));
        }
        edit(c);
    });
    let bundle = oci.bundle().display().to_string();
    oci.call(&["run", "--bundle", &bundle, "ns"])
}

const SHOW_NAMESPACES: &str =
    "readlink /proc/self/ns/user; readlink /proc/self/ns/mnt; cat /proc/self/uid_map";

/// linux.namespaces user and mount with a path: the container's process
/// really is in those namespaces (their inode numbers), no maps are
/// written, the namespaces it gets anew belong to the joined user
/// namespace (it can mount /proc and /sys in them), and mappings given
/// must match the joined namespace's.
#[test]
fn user_and_mount_namespaces_joined_by_path() {
    let own = |n: &str| fs::read_link(format!("/proc/self/ns/{n}")).unwrap();
    let show = |out: &Out| -> Vec<String> {
        assert_eq!(out.code, 0, "{}", out.stderr);
        out.stdout
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect()
    };

    // A user namespace alone: a new mount namespace, owned by it.
    let holder = user_and_mount_holder();
    let oci = Oci::new(&["sh", "-c", SHOW_NAMESPACES]);
    let out = run_in(
        &oci,
        json!([{"type": "user", "path": holder.ns_path("user")}]),
        |_| {},
    );
    let lines = show(&out);
    assert_eq!(
        Path::new(&lines[0]),
        holder.ns("user").unwrap(),
        "{lines:?}"
    );
    assert_ne!(Path::new(&lines[1]), holder.ns("mnt").unwrap());
    assert_ne!(Path::new(&lines[1]), own("mnt"));
    assert_eq!(lines[2], "0 200000 65536", "{lines:?}");
    oci.assert_root_empty();

    // Mappings given must be the namespace's own.
    let out = run_in(
        &oci,
        json!([{"type": "user", "path": holder.ns_path("user")}]),
        |c| {
            c["linux"]["uidMappings"] =
                json!([{"containerID": 0, "hostID": 300000, "size": 65536}]);
        },
    );
    assert_ne!(out.code, 0, "{}", out.stdout);
    assert!(
        out.stderr.contains("linux.uidMappings (0:300000:65536) differ from the maps of the user namespace joined by path (0:200000:65536)"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    oci.assert_root_empty();
    let out = run_in(
        &oci,
        json!([{"type": "user", "path": holder.ns_path("user")}]),
        |c| {
            c["linux"]["uidMappings"] =
                json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
            c["linux"]["gidMappings"] =
                json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
        },
    );
    assert_eq!(show(&out)[0], lines[0]);
    oci.assert_root_empty();

    // The user namespace and the mount namespace it owns.
    let holder = user_and_mount_holder();
    let oci = Oci::new(&["sh", "-c", SHOW_NAMESPACES]);
    let out = run_in(
        &oci,
        json!([{"type": "user", "path": holder.ns_path("user")}, {"type": "mount", "path": holder.ns_path("mnt")}]),
        |_| {},
    );
    let lines = show(&out);
    assert_eq!(
        Path::new(&lines[0]),
        holder.ns("user").unwrap(),
        "{lines:?}"
    );
    assert_eq!(Path::new(&lines[1]), holder.ns("mnt").unwrap(), "{lines:?}");
    oci.assert_root_empty();

    // A mount namespace alone (one the host's user namespace owns).
    let holder = Holder::new(&["--mount", "--propagation", "private"], &["mnt"]);
    let oci = Oci::new(&["sh", "-c", SHOW_NAMESPACES]);
    let out = run_in(
        &oci,
        json!([{"type": "mount", "path": holder.ns_path("mnt")}]),
        |_| {},
    );
    let lines = show(&out);
    assert_eq!(Path::new(&lines[0]), own("user"), "{lines:?}");
    assert_eq!(Path::new(&lines[1]), holder.ns("mnt").unwrap(), "{lines:?}");
    oci.assert_root_empty();
}

/// Namespace paths that cannot be joined are refused at create with one
/// line naming the field, nothing left.
#[test]
fn bad_namespace_paths_are_refused_at_create() {
    let holder = user_and_mount_holder();
    let user = holder.ns_path("user");
    let mnt = holder.ns_path("mnt");
    let cases = [
        (
            json!([{"type": "user", "path": mnt}]),
            format!("user path {mnt} is not a user namespace"),
        ),
        (
            json!([{"type": "mount", "path": "/etc/hostname"}]),
            "mount path /etc/hostname is not a namespace".to_string(),
        ),
        (
            json!([{"type": "mount", "path": format!("/proc/{}/ns/mnt", std::process::id())}]),
            "the host's own mount namespace".to_string(),
        ),
        (
            json!([{"type": "mount", "path": "/proc/self/ns/mnt"}]),
            "the host's own mount namespace".to_string(),
        ),
        (
            json!([{"type": "user", "path": "/proc/self/ns/user"}]),
            "the host's own user namespace".to_string(),
        ),
        (
            json!([{"type": "user", "path": "proc/1/ns/user"}]),
            "user path proc/1/ns/user is not absolute".to_string(),
        ),
        (
            json!([{"type": "user"}, {"type": "mount", "path": mnt}]),
            "makes a new user namespace".to_string(),
        ),
        (
            json!([{"type": "user", "path": user}, {"type": "network", "path": "/proc/self/ns/user"}]),
            "network path /proc/self/ns/user is not a network namespace".to_string(),
        ),
    ];
    for (extra, words) in cases {
        let oci = Oci::new(&["true"]);
        let out = run_in(&oci, extra, |c| {
            if c["linux"]["namespaces"]
                .as_array()
                .unwrap()
                .iter()
                .any(|n| n["type"] == "user" && n["path"].is_null())
            {
                c["linux"]["uidMappings"] =
                    json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
                c["linux"]["gidMappings"] =
                    json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
            }
            let list = c["linux"]["namespaces"].as_array_mut().unwrap();
            // A joined network namespace replaces the config's own entry.
            if list.iter().filter(|n| n["type"] == "network").count() > 1 {
                list.retain(|n| n["type"] != "network" || !n["path"].is_null());
            }
        });
        assert_ne!(out.code, 0, "{words}: accepted");
        assert_eq!(out.stderr.lines().count(), 1, "{words}: {}", out.stderr);
        assert!(out.stderr.contains(&words), "{words}: {}", out.stderr);
        oci.assert_root_empty();
    }
}

/// Takes every fd of process argv[1] with pidfd_getfd (what ptrace
/// rights give) and prints what it got.
const STEAL_FDS: &str = r#"
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
target = os.pidfd_open(int(sys.argv[1]))
stolen = []
for fd in range(64):
    got = libc.syscall(438, target, fd, 0)  # pidfd_getfd
    if got >= 0:
        stolen.append(os.readlink(f"/proc/self/fd/{got}"))
print("stolen", stolen)
"#;

/// An init that joined a user namespace by path shares it with whoever
/// made it (another container's root, say): until it execs it holds the
/// engine's fds (the mount socket, the state directory's fifo, the hooks'
/// files), so it stays out of that root's reach (non-dumpable: no ptrace,
/// no pidfd_getfd). Tried by the namespace's root from a prestart hook,
/// while the init waits for create's go (before it drops to the
/// namespace's root, which alone would make it non-dumpable), and once
/// it is created.
#[test]
fn an_init_in_a_joined_user_namespace_is_out_of_its_root_s_reach() {
    let python = Path::new("/usr/bin/python3");
    assert!(
        python.exists(),
        "the test needs /usr/bin/python3 (apt-get install python3)"
    );
    let holder = user_and_mount_holder();
    let oci = Oci::new(&["sleep", "100"]);
    let log = oci.path("steal");
    let steal = format!(
        "nsenter --target {} --user -- /usr/bin/python3 -c \"$STEAL\"",
        holder.pid()
    );
    let script = format!(
        "read -r state; pid=$(echo \"$state\" | sed 's/.*\"pid\":\\([0-9]*\\).*/\\1/'); \
         {steal} $pid > {log} 2>&1",
        log = log.display()
    );
    oci.edit_config(|c| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "user", "path": holder.ns_path("user")}));
        c["hooks"] = json!({"prestart": [{
            "path": "/bin/sh",
            "args": ["sh", "-c", script],
            "env": ["PATH=/usr/bin:/bin", format!("STEAL={STEAL_FDS}")]
        }]});
    });
    let bundle = oci.bundle().display().to_string();
    oci.ok(&["create", "--bundle", &bundle, "nd"]);
    let pid = pid_of(&oci.state("nd"));
    let before_go = fs::read_to_string(&log).unwrap();
    assert_eq!(
        before_go, "stolen []\n",
        "the namespace's root took fds of the init waiting for its go"
    );
    let created = wait::output(
        Command::new("sh")
            .args(["-c", &format!("{steal} {pid}")])
            .env("STEAL", STEAL_FDS),
        SHORT,
    )
    .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&created.stdout),
        "stolen []\n",
        "the namespace's root took fds of the created init: {created:?}"
    );
    oci.ok(&["delete", "nd"]);
    wait::reap(pid, SHORT).unwrap();
    oci.assert_root_empty();
}

/// With a user namespace of the container's own, createContainer runs as
/// its root (not host root) from the file `create` opened, even one under
/// a directory the namespace's root cannot enter; startContainer too.
#[test]
fn container_hooks_with_a_user_namespace_of_its_own() {
    let oci = Oci::new(&["true"]);
    // Bound on a directory the rootfs has: its root cannot make one.
    let log = oci.path("log");
    fs::create_dir(&log).unwrap();
    fs::set_permissions(&log, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    // The test's temporary directory is 0700: host root's alone.
    let create_hook = oci.path("create-hook");
    fs::write(
        &create_hook,
        "#!/bin/sh\ncat /proc/self/uid_map > var/tmp/create.uid_map\n",
    )
    .unwrap();
    fs::set_permissions(
        &create_hook,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    oci.edit_config(|c| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "user"}));
        c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 300000, "size": 65536}]);
        c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 300000, "size": 65536}]);
        c["hooks"] = json!({
            "createContainer": [{"path": create_hook}],
            "startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "cat /proc/self/uid_map > /var/tmp/start.uid_map"]}],
        });
        c["mounts"].as_array_mut().unwrap().push(
            json!({"destination": "/var/tmp", "type": "bind", "source": log, "options": ["rbind", "rw"]}),
        );
    });
    let bundle = oci.bundle().display().to_string();
    let out = oci.call(&["run", "--bundle", &bundle, "hu"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    for file in ["create.uid_map", "start.uid_map"] {
        let map = fs::read_to_string(log.join(file)).unwrap();
        assert_eq!(
            map.split_whitespace().collect::<Vec<_>>(),
            ["0", "300000", "65536"],
            "{file}"
        );
    }
    oci.assert_root_empty();
}

/// `podman run -it` with a real terminal: podman (its stdio a pty of ours,
/// its controlling terminal) puts that terminal in raw mode, conmon gets
/// the pty master the engine sends over the console socket, and what we
/// type reaches the container's shell, whose stdio is a /dev/pts device.
/// A resize of our terminal reaches the container (podman: SIGWINCH ->
/// conmon -> TIOCSWINSZ on the master). On this cgroup v1 host without
/// cgroups, as `podman_runs_containers_on_the_engine`. Takes ~3 s.
#[test]
fn podman_run_it_gets_a_terminal_through_the_console_socket() {
    use std::io::{Read, Write};
    use std::os::unix::process::CommandExt;
    use std::sync::{Arc, Mutex};

    let podman = Podman::new();
    let rootfs = podman.rootfs();

    let size = |rows, cols| nix::pty::Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = nix::pty::openpty(Some(&size(24, 80)), None).unwrap();
    let mut cmd = podman.command();
    cmd.args(["run", "-it", "--rm", "--cgroups=disabled", "--network=none"])
        .args(["--ulimit=nofile=20000:20000", "--ulimit=nproc=1000:1000"])
        .args(["--rootfs", rootfs.to_str().unwrap(), "/bin/sh"])
        .stdin(pty.slave.try_clone().unwrap())
        .stdout(pty.slave.try_clone().unwrap())
        .stderr(pty.slave.try_clone().unwrap());
    // SAFETY: between fork and exec only async-signal-safe calls (setsid,
    // ioctl) on the child's own stdin: the pty becomes podman's
    // controlling terminal, so a resize sends podman SIGWINCH.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid()?;
            rustix::process::ioctl_tiocsctty(std::io::stdin())?;
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    drop(pty.slave);

    // Everything podman writes to the terminal; the read ends with EIO
    // once podman, the last holder of the slave, is gone.
    let screen = Arc::new(Mutex::new(String::new()));
    let mut master = fs::File::from(pty.master);
    let mut reader = master.try_clone().unwrap();
    let sink = screen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1024];
        while let Ok(n @ 1..) = reader.read(&mut buf) {
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    // Until `needle` shows, or podman ends (a failed create) or LONG passes.
    let wait_for = |child: &mut std::process::Child, what: &str, needle: &str| {
        let found = wait::poll_until(LONG, what, || {
            if screen.lock().unwrap().contains(needle) {
                Some(Ok(()))
            } else {
                child.try_wait().unwrap().map(Err)
            }
        });
        match found {
            Ok(Ok(())) => {}
            Ok(Err(status)) => panic!(
                "podman ended ({status}) before {what}; the terminal showed:\n{}",
                screen.lock().unwrap()
            ),
            Err(e) => {
                let _ = child.kill();
                panic!("{e}; the terminal showed:\n{}", screen.lock().unwrap());
            }
        }
    };
    wait_for(&mut child, "the shell's prompt", "# ");
    master
        .write_all(b"tty; stty size; echo $((6*7))\n")
        .unwrap();
    wait_for(&mut child, "the shell's answer 42", "\n42\r\n");

    // A resize, as a terminal window does it; the container sees it once
    // podman and conmon have passed it on.
    rustix::termios::tcsetwinsize(
        &master,
        rustix::termios::Winsize {
            ws_row: 30,
            ws_col: 100,
            ws_xpixel: 0,
            ws_ypixel: 0,
        },
    )
    .unwrap();
    let resized = wait::poll_until(LONG, "the container to see 30 rows, 100 columns", || {
        master.write_all(b"stty size\n").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300));
        screen
            .lock()
            .unwrap()
            .contains("\n30 100\r\n")
            .then_some(())
    });
    master.write_all(b"exit 3\n").unwrap();
    let status = wait::child(&mut child, LONG).unwrap();
    let text = screen.lock().unwrap().clone();
    assert!(resized.is_ok(), "{resized:?}; the terminal showed:\n{text}");
    assert_eq!(status.code(), Some(3), "{text}");
    let answers: Vec<&str> = text.lines().map(str::trim_end).collect();
    // A pty of the container's own devpts, as with runc and crun (one of
    // the host's devpts would show as /dev/console, its bind mount).
    let tty = answers
        .iter()
        .position(|l| l.starts_with("/dev/pts/"))
        .unwrap_or_else(|| panic!("tty should name a /dev/pts device:\n{text}"));
    assert_eq!(
        &answers[tty + 1..tty + 3],
        ["24 80", "42"],
        "stty size should be our terminal's:\n{text}"
    );
}

/// process.terminal with a user namespace: the init opens the pty in its
/// own devpts as root of that namespace, and `tty` names it there.
#[test]
fn console_socket_in_a_user_namespace() {
    // No fd but 0-2 reaches the process: not the master, not the socket
    // (3 is ls's own directory).
    let oci = Oci::new(&[
        "sh",
        "-c",
        "tty; echo size $(stty size); id -u; echo fds $(ls /proc/self/fd)",
    ]);
    oci.edit_config(|c| {
        c["process"]["terminal"] = json!(true);
        c["process"]["consoleSize"] = json!({"height": 20, "width": 70});
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "user"}));
        c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    });
    let sock_path = oci.path("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock_path).unwrap();
    let bundle = oci.bundle().display().to_string();
    let sock = sock_path.to_str().unwrap();
    oci.ok(&[
        "create",
        "--bundle",
        &bundle,
        "--console-socket",
        sock,
        "u1",
    ]);
    let (conn, _) = listener.accept().unwrap();
    let mut master = fs::File::from(recv_fd(&conn));
    let pid = pid_of(&oci.state("u1"));
    oci.ok(&["start", "u1"]);
    let mut text = String::new();
    let mut buf = [0u8; 512];
    while text.lines().count() < 4 || !text.ends_with('\n') {
        use std::io::Read;
        match master.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => text.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
    assert_eq!(
        text.lines().map(str::trim_end).collect::<Vec<_>>(),
        ["/dev/pts/0", "size 20 70", "0", "fds 0 1 2 3"],
        "{text}"
    );
    oci.wait_stopped("u1", pid);
    oci.ok(&["delete", "u1"]);
}

/// `exec --tty`: the pty comes from the container's own devpts, as runc
/// makes it (`tty` names /dev/pts/N inside), sized like the caller's
/// terminal, and its master reaches the console socket. A container that
/// put a fifo where /dev/pts/ptmx was gets a refusal, not an exec hung on
/// opening it.
#[test]
fn exec_tty_gets_a_pty_of_the_container_s_devpts() {
    let oci = Oci::new(&["sleep", "100"]);
    oci.edit_config(|c| {
        for set in ["bounding", "effective", "permitted"] {
            c["process"]["capabilities"][set]
                .as_array_mut()
                .unwrap()
                .push(json!("CAP_SYS_ADMIN"));
        }
    });
    let bundle = oci.bundle().display().to_string();
    oci.ok(&["create", "--bundle", &bundle, "x1"]);
    oci.ok(&["start", "x1"]);
    let pid = pid_of(&oci.state("x1"));
    let sock_path = oci.path("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock_path).unwrap();
    let sock = sock_path.to_str().unwrap();
    let exec_pid = oci.path("exec.pid");
    let exec_tty = |cmd: &str| {
        oci.call(&[
            "exec",
            "--tty",
            "--detach",
            "--pid-file",
            exec_pid.to_str().unwrap(),
            "--console-socket",
            sock,
            "x1",
            "sh",
            "-c",
            cmd,
        ])
    };
    let out = exec_tty("tty; ls -1 /dev/pts; echo done");
    assert_eq!(out.code, 0, "{}", out.stderr);
    // Ours to reap (we are the subreaper), before the init can be.
    let exec_pid: i32 = fs::read_to_string(&exec_pid).unwrap().parse().unwrap();
    let (conn, _) = listener.accept().unwrap();
    let mut file = fs::File::from(recv_fd(&conn));
    let mut text = String::new();
    let mut buf = [0u8; 512];
    while !text.contains("done") {
        use std::io::Read;
        match file.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => text.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
    assert!(text.contains("/dev/pts/0\r\n"), "{text}");
    assert!(text.contains("0\r\nptmx\r\n"), "{text}");
    wait::reap(exec_pid, SHORT).unwrap();

    let out = oci.call(&[
        "exec",
        "x1",
        "sh",
        "-c",
        "mount -t tmpfs none /dev/pts && mkfifo /dev/pts/ptmx",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = exec_tty("echo should-not-run");
    assert_ne!(out.code, 0, "exec --tty accepted a fifo as the ptmx");
    assert!(
        out.stderr
            .contains("/dev/pts/ptmx is not the ptmx of a devpts"),
        "{}",
        out.stderr
    );
    oci.ok(&["delete", "--force", "x1"]);
    wait::reap(pid, SHORT).unwrap();
}

/// `net.ipv4.ping_group_range` of the network namespace of process `pid`,
/// read from inside it.
fn ping_range_of(pid: u32) -> String {
    let mut child = Command::new("nsenter")
        .arg(format!("--net=/proc/{pid}/ns/net"))
        .args(["cat", "/proc/sys/net/ipv4/ping_group_range"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run nsenter ({e}): apt-get install util-linux"));
    let status = wait::child(&mut child, SHORT).unwrap();
    assert!(status.success(), "nsenter failed");
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Issue 22, item 4: a network namespace a bundle joins by path is someone
/// else's (a pod's, another container's): the engine writes nothing into it.
/// Before the fix the init opened its ping_group_range to every group.
#[test]
fn nothing_is_written_into_a_joined_network_namespace() {
    let holder = Holder::new(&["--net"], &["net"]);
    let before = ping_range_of(holder.pid());
    let oci = Oci::new(&["true"]);
    let out = run_in(
        &oci,
        json!([{"type": "network", "path": holder.ns_path("net")}]),
        |c| {
            let list = c["linux"]["namespaces"].as_array_mut().unwrap();
            list.retain(|n| n["type"] != "network" || !n["path"].is_null());
        },
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        ping_range_of(holder.pid()),
        before,
        "the engine rewrote net.ipv4.ping_group_range in a namespace it joined"
    );
    oci.assert_root_empty();
}

/// Issue 22, item 4: a container must not write into the runtime's own
/// namespaces. Joining its own network, IPC, UTS or PID namespace by path
/// is the same as sharing it (what containerd asks for a pod on the host's
/// namespaces), and nothing is written there: that half is
/// `the_caller_s_own_namespaces_by_path_are_shared_and_stay_untouched`,
/// which runs in namespaces of its own and sees the ping range and lo left
/// as they were (before the issue-22 fix the engine rewrote the ping
/// range). Its own mount and user namespaces are refused by path: the init
/// would pivot_root in the caller's mount namespace, or run as the
/// caller's root. In a network namespace of the test's own.
#[test]
fn the_host_s_own_mount_and_user_namespaces_are_not_joined_by_path() {
    testkit::netns::enter_private_or_panic();
    // /proc/sys/net shows the namespace of the thread that reads it.
    let ping_range = || fs::read_to_string("/proc/sys/net/ipv4/ping_group_range").unwrap();
    let before = ping_range();
    for (kind, file, name) in [("mount", "mnt", "mount"), ("user", "user", "user")] {
        let oci = Oci::new(&["true"]);
        let path = format!("/proc/self/ns/{file}");
        let out = run_in(&oci, json!([{"type": kind, "path": path}]), |c| {
            let list = c["linux"]["namespaces"].as_array_mut().unwrap();
            list.retain(|n| n["type"] != kind || !n["path"].is_null());
        });
        assert_ne!(out.code, 0, "joining {path} was accepted");
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
        assert!(
            out.stderr
                .contains(&format!("the host's own {name} namespace")),
            "{path}: {}",
            out.stderr
        );
        oci.assert_root_empty();
        assert_eq!(ping_range(), before, "{path}: the ping range was rewritten");
    }
}

/// Holds `/proc/PID/exe` of `pid` and, once that process is gone, reopens
/// it for writing and writes a byte: what a container process that caught
/// the runtime's binary does (CVE-2019-5736).
fn rewrite_exe_once_gone(pid: i32, gone: impl FnOnce()) {
    use std::os::unix::fs::FileExt;
    let held = rustix::fs::open(
        format!("/proc/{pid}/exe"),
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .unwrap();
    gone();
    if let Ok(f) = fs::OpenOptions::new()
        .write(true)
        .open(format!("/proc/self/fd/{}", held.as_raw_fd()))
    {
        let _ = f.write_at(b"X", 0);
    }
}

/// Issue 22, item 6: the read-only image rule is about the mapping, not the
/// namespace. A bundle with a user namespace of its own that maps container
/// root onto host uid 0 is host root by another name: `create` and `exec`
/// run from the read-only image there too. As in the CVE-2019-5736 test
/// above, a copy of the engine plays the host's binary, and the exe of the
/// created init and of a running `exec` is held and reopened for writing.
#[test]
fn a_user_namespace_mapping_host_root_runs_from_the_read_only_image() {
    let oci = Oci::new(&["sleep", "100"]);
    oci.edit_config(|c| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "user"}));
        let map = json!([{"containerID": 0, "hostID": 0, "size": 65536}]);
        c["linux"]["uidMappings"] = map.clone();
        c["linux"]["gidMappings"] = map;
    });
    let victim = oci.path("engine-victim");
    fs::copy(ENGINE, &victim).unwrap();
    let before = fs::read(&victim).unwrap();
    let as_victim = |args: &[&str]| {
        let mut all = vec!["--root".to_string(), oci.root().display().to_string()];
        all.extend(args.iter().map(|s| s.to_string()));
        Command::new(&victim)
            .args(&all)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap()
    };
    let bundle = oci.bundle().display().to_string();

    // create: the created init's exe, held until the container is deleted.
    let mut create = as_victim(&["create", "--bundle", &bundle, "x1"]);
    assert!(wait::child(&mut create, LONG).unwrap().success());
    let pid = pid_of(&oci.state("x1"));
    rewrite_exe_once_gone(pid, || {
        oci.ok(&["delete", "--force", "x1"]);
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
    });
    assert!(
        before == fs::read(&victim).unwrap(),
        "attack succeeded: create ran the engine's own binary for a container whose root is host uid 0"
    );

    // exec: the exe of the exec verb (the joining process's image) while
    // its process runs, held until it ends.
    oci.ok(&["create", "--bundle", &bundle, "x2"]);
    oci.ok(&["start", "x2"]);
    let init = pid_of(&oci.state("x2"));
    let marker = format!("/proc/{init}/root/tmp/exec-started");
    let mut exec = as_victim(&["exec", "x2", "sh", "-c", "touch /tmp/exec-started; sleep 2"]);
    wait::until(SHORT, "the exec'd process to start", || {
        Path::new(&marker).exists().then_some(())
    });
    rewrite_exe_once_gone(exec.id() as i32, || {
        assert!(wait::child(&mut exec, LONG).unwrap().success());
    });
    oci.ok(&["delete", "--force", "x2"]);
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(init), None);
    assert!(
        before == fs::read(&victim).unwrap(),
        "attack succeeded: exec ran the engine's own binary in a container whose root is host uid 0"
    );
    oci.assert_root_empty();
}

/// Issue 22, item 7: a hostile bundle rootfs (`/proc -> /x`, `/sys ->
/// /proc`) whose init cannot be set up. Nothing escapes (targets resolve in
/// the root), but the init died between `create` and `start` and nobody
/// was told: `create` (or `start`) must fail with the init's own sentence,
/// and leave nothing.
#[test]
fn an_init_that_dies_before_start_fails_create_with_its_sentence() {
    for (link, target) in [("proc", "/x"), ("sys", "/proc")] {
        let (_guard, root) = rootfs_copy("rootfs");
        let path = root.join(link);
        fs::remove_dir_all(&path)
            .or_else(|_| fs::remove_file(&path))
            .ok();
        std::os::unix::fs::symlink(target, &path).unwrap();
        let oci = Oci::new(&["true"]);
        oci.edit_config(|c| c["root"]["path"] = json!(root));
        let bundle = oci.bundle().display().to_string();
        let created = oci.call(&["create", "--bundle", &bundle, "h"]);
        let failed = if created.code == 0 {
            let started = oci.call(&["start", "h"]);
            let _ = oci.call(&["delete", "--force", "h"]);
            started
        } else {
            created
        };
        assert_ne!(
            failed.code, 0,
            "/{link} -> {target}: create and start both said the container was fine"
        );
        assert_eq!(failed.stderr.lines().count(), 1, "{}", failed.stderr);
        assert!(
            failed.stderr.contains(&format!("/{link}")),
            "/{link} -> {target}: the sentence does not name the path: {}",
            failed.stderr
        );
        oci.assert_root_empty();
    }
}

/// An OCI container's linux.uidMappings/gidMappings are leased host-wide
/// (issue 22): while it lives, `engine run` hands out none of its IDs; an
/// OCI container may not map IDs an `engine run` container holds, but may
/// share another OCI container's (a pod's containers do); `delete` frees
/// them. (A pool of the test's own: the leases are the host's.)
#[test]
fn mapped_ids_are_leased_host_wide() {
    const BASE: u64 = (3 << 30) + (48 << 16);
    const SIZE: u64 = 65536;
    let mapped = |host: u64| {
        move |c: &mut Value| {
            let namespaces = c["linux"]["namespaces"].as_array_mut().unwrap();
            namespaces.retain(|n| n["type"] != "user");
            namespaces.push(json!({"type": "user"}));
            c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": host, "size": SIZE}]);
            c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": host, "size": SIZE}]);
        }
    };
    let oci = Oci::new(&["sleep", "100"]);
    oci.edit_config(mapped(BASE));
    let bundle = oci.bundle().display().to_string();
    oci.ok(&["create", "--bundle", &bundle, "o1"]);

    let env = engine("ocilease").with_env("ENGINE_USERNS_POOL", format!("{BASE}:{}", 2 * SIZE));
    let uid_base = |a: &Assert| -> u64 {
        stdout(a)
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap()
    };
    let a = run(
        &env,
        &["--name", "r1", rootfs(), "--", "cat", "/proc/self/uid_map"],
    )
    .code(0);
    assert_eq!(
        uid_base(&a),
        BASE + SIZE,
        "engine run got the OCI container's IDs"
    );

    // An engine container holds BASE+SIZE: no OCI container may map them.
    env.cmd()
        .args(detached_args(rootfs(), "r2", &["sleep", "100"]))
        .assert()
        .code(0);
    let _stop = StopOnDrop(&env, "r2");
    let other = Oci::new(&["sleep", "100"]);
    other.edit_config(mapped(BASE + SIZE + 10));
    let bundle2 = other.bundle().display().to_string();
    let out = other.call(&["create", "--bundle", &bundle2, "o2"]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("uidMappings") && out.stderr.contains("container r2"),
        "{}",
        out.stderr
    );
    other.assert_root_empty();

    // Another OCI container may share o1's.
    other.edit_config(mapped(BASE));
    other.ok(&["create", "--bundle", &bundle2, "o3"]);
    other.ok(&["delete", "o3"]);

    env.cmd().args(["stop", "-t", "0", "r2"]).assert().code(0);
    oci.ok(&["delete", "o1"]);
    oci.assert_root_empty();
    let a = run(
        &env,
        &["--name", "r3", rootfs(), "--", "cat", "/proc/self/uid_map"],
    )
    .code(0);
    assert_eq!(uid_base(&a), BASE, "delete left the OCI container's lease");
    assert_eq!(id_leases(&oci.root()), Vec::new());
    env.assert_clean();
}

/// Stops an `engine run -d` container when dropped (a failed test leaves
/// none running).
struct StopOnDrop<'a>(&'a Engine, &'static str);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.cmd().args(["stop", "-t", "0", self.1]).output();
    }
}

/// An OCI user of 4294967295 (-1) reached setresuid/setresgid as "leave it
/// unchanged": the process stayed root. It is refused at `create` (and at
/// `exec`), where runc refuses what it cannot set.
#[test]
fn a_user_id_of_minus_one_is_refused() {
    for (field, edit) in [
        ("uid", json!({"uid": 4294967295u32, "gid": 0})),
        ("gid", json!({"uid": 1000, "gid": 4294967295u32})),
        (
            "additionalGids",
            json!({"uid": 1000, "gid": 1000, "additionalGids": [4294967295u32]}),
        ),
    ] {
        let oci = Oci::new(&["sh", "-c", "id -u; id -g"]);
        oci.edit_config(|c| c["process"]["user"] = edit.clone());
        let bundle = oci.bundle().display().to_string();
        let out = oci.call(&["run", "--bundle", &bundle, "u1"]);
        assert_ne!(
            out.code, 0,
            "user {edit}: the process ran as uid/gid {:?}",
            out.stdout
        );
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
        assert!(out.stderr.contains(field), "{field}: {}", out.stderr);
        oci.assert_root_empty();
    }
    // exec: the same refusal for a process.json.
    let oci = Oci::new(&["sleep", "100"]);
    let bundle = oci.bundle().display().to_string();
    oci.ok(&["create", "--bundle", &bundle, "u2"]);
    let pid = pid_of(&oci.state("u2"));
    oci.ok(&["start", "u2"]);
    let process = oci.path("process.json");
    fs::write(
        &process,
        json!({"args": ["id", "-u"], "env": ["PATH=/bin"], "cwd": "/", "user": {"uid": 4294967295u32, "gid": 0}}).to_string(),
    )
    .unwrap();
    let out = oci.call(&["exec", "--process", process.to_str().unwrap(), "u2"]);
    assert_ne!(out.code, 0, "exec ran as {:?}", out.stdout);
    assert!(out.stderr.contains("uid"), "{}", out.stderr);
    oci.ok(&["kill", "u2", "KILL"]);
    oci.wait_stopped("u2", pid);
    oci.ok(&["delete", "u2"]);
    oci.assert_root_empty();
}

/// Host pids of live (not zombie) processes whose command line is `argv`.
fn live_with_args(argv: &[&str]) -> Vec<i32> {
    let want: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| c == want))
        .filter(|p| {
            fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|s| {
                s.rsplit_once(") ")
                    .is_some_and(|(_, rest)| !rest.starts_with('Z'))
            })
        })
        .collect()
}

/// The /proc/self/status capability lines of a container's process, by name.
fn cap_masks(status: &str) -> std::collections::BTreeMap<String, u64> {
    status
        .lines()
        .filter_map(|l| {
            let (name, mask) = l.split_once(':')?;
            Some((name.to_string(), u64::from_str_radix(mask.trim(), 16).ok()?))
        })
        .collect()
}

/// A container of a pod: it joins `pause_pid`'s pid namespace by path,
/// with namespaces of its own for the rest and no cgroup; created and started.
fn pod_member(id: &str, pause_pid: i32, args: &[&str]) -> Oci {
    let oci = Oci::new(args);
    oci.edit_config(|c| {
        c["linux"]["namespaces"] = json!([
            {"type": "pid", "path": format!("/proc/{pause_pid}/ns/pid")},
            {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}
        ]);
    });
    let bundle = oci.bundle().display().to_string();
    oci.ok(&["create", "--bundle", &bundle, id]);
    oci.ok(&["start", id]);
    oci
}

/// A pod as containerd's CRI makes one without cgroups: a pause container
/// owning a pid namespace, containers joining it by path. `kill --all A`
/// kills A's processes, its exec's orphan (adopted by the pause) too, and
/// nothing of B or the pause; on a stopped container it kills the leftover
/// of `sh -c 'sleep & exit 0'` and succeeds, as runc does (the shim sends
/// it after every exit in such a pod). `delete` of a stopped container
/// kills its leftovers as runc's does.
#[test]
fn kill_all_in_a_shared_pid_namespace_kills_that_container_only() {
    let pause = Oci::new(&["sleep", "30010"]);
    let bundle = pause.bundle().display().to_string();
    pause.ok(&["create", "--bundle", &bundle, "pause"]);
    pause.ok(&["start", "pause"]);
    let pause_pid = pid_of(&pause.state("pause"));

    let a = pod_member("a", pause_pid, &["sleep", "30011"]);
    a.ok(&["exec", "--detach", "a", "sh", "-c", "sleep 30012 & exit 0"]);
    let b = pod_member("b", pause_pid, &["sleep", "30013"]);
    let c = pod_member("c", pause_pid, &["sh", "-c", "sleep 30014 & exit 0"]);
    let d = pod_member("d", pause_pid, &["sh", "-c", "sleep 30015 & exit 0"]);
    for arg in ["30010", "30011", "30012", "30013", "30014", "30015"] {
        wait::until(SHORT, &format!("sleep {arg} to run"), || {
            (live_with_args(&["sleep", arg]).len() == 1).then_some(())
        });
    }
    let survivors = || {
        assert_eq!(
            live_with_args(&["sleep", "30010"]),
            [pause_pid],
            "the pause"
        );
        assert_eq!(live_with_args(&["sleep", "30013"]).len(), 1, "B's init");
        assert_eq!(b.status("b"), "running");
        assert_eq!(pause.status("pause"), "running");
    };
    let gone = |arg: &str| {
        wait::until(SHORT, &format!("sleep {arg} to be killed"), || {
            live_with_args(&["sleep", arg]).is_empty().then_some(())
        })
    };

    // A running container: its init and its exec's orphan.
    let a_pid = pid_of(&a.state("a"));
    a.ok(&["kill", "--all", "a", "KILL"]);
    a.wait_stopped("a", a_pid);
    gone("30011");
    gone("30012");
    survivors();

    // A stopped container with a leftover.
    let c_pid = pid_of(&c.state("c"));
    c.wait_stopped("c", c_pid);
    c.ok(&["kill", "--all", "c", "KILL"]);
    gone("30014");
    survivors();
    let refused = c.call(&["kill", "c", "KILL"]);
    assert!(refused.stderr.contains("not running"), "{}", refused.stderr);

    // delete of a stopped one takes its leftover with it.
    let d_pid = pid_of(&d.state("d"));
    d.wait_stopped("d", d_pid);
    d.ok(&["delete", "d"]);
    gone("30015");
    survivors();
}

/// `spec` writes the config.json `runc spec` writes, byte for byte (and
/// with `--rootless`), into `--bundle` or the working directory; it keeps
/// an existing one and says so in runc's words. The engine runs what it
/// wrote (with a rootfs and no terminal).
#[test]
fn spec_writes_runc_s_default_config() {
    let dir = tempfile::tempdir().unwrap();
    let runc_spec = |args: &[&str], sub: &str| -> Vec<u8> {
        let d = dir.path().join(format!("runc{sub}"));
        fs::create_dir(&d).unwrap();
        let mut child = Command::new("runc")
            .arg("spec")
            .args(args)
            .current_dir(&d)
            .spawn()
            .expect("runc (Debian's runc package, which .ci/run installs)");
        assert!(wait::child(&mut child, SHORT).unwrap().success());
        fs::read(d.join("config.json")).unwrap()
    };
    let engine_spec = |args: &[&str], cwd: &Path| -> (i32, String) {
        let mut child = Command::new(ENGINE)
            .arg("spec")
            .args(args)
            .current_dir(cwd)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let status = wait::child(&mut child, SHORT).unwrap();
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        (status.code().unwrap_or(-1), err)
    };

    let here = dir.path().join("here");
    fs::create_dir(&here).unwrap();
    assert_eq!(engine_spec(&[], &here), (0, String::new()));
    let written = fs::read(here.join("config.json")).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&written),
        String::from_utf8_lossy(&runc_spec(&[], "1"))
    );
    let rootless = dir.path().join("rootless");
    fs::create_dir(&rootless).unwrap();
    let (code, err) = engine_spec(
        &["--rootless", "--bundle", rootless.to_str().unwrap()],
        dir.path(),
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        String::from_utf8_lossy(&fs::read(rootless.join("config.json")).unwrap()),
        String::from_utf8_lossy(&runc_spec(&["--rootless"], "2"))
    );

    // An existing config.json is kept.
    fs::write(here.join("config.json"), "mine").unwrap();
    let (code, err) = engine_spec(&["-b", here.to_str().unwrap()], dir.path());
    assert_eq!(code, 1);
    assert_eq!(err, "engine: File config.json exists. Remove it first\n");
    assert_eq!(
        fs::read_to_string(here.join("config.json")).unwrap(),
        "mine"
    );
    let (code, err) = engine_spec(&["-b", "/nonexistent-bundle"], dir.path());
    assert_eq!(code, 1);
    assert!(
        err.contains("/nonexistent-bundle is not a directory"),
        "{err}"
    );

    // What it wrote runs.
    let oci = Oci::new(&["true"]);
    fs::remove_file(oci.bundle().join("config.json")).unwrap();
    let bundle = oci.bundle().display().to_string();
    oci.ok(&["spec", "--bundle", &bundle]);
    oci.edit_config(|c| {
        c["root"]["path"] = json!(rootfs());
        c["process"]["terminal"] = json!(false);
        c["process"]["args"] = json!(["sh", "-c", "exit 7"]);
    });
    let out = oci.call(&["run", "--bundle", &bundle, "from-spec"]);
    assert_eq!(out.code, 7, "{}", out.stderr);
    oci.assert_root_empty();
}

/// process.capabilities set by set as runc applies them: the inheritable
/// and ambient sets as given (they were emptied), for root and for a
/// non-root user, whom the ambient set keeps capable across exec (podman
/// `--cap-add X --user 1000`); an ambient capability the kernel cannot
/// raise (not inheritable) is left out, as runc leaves it.
#[test]
fn inheritable_and_ambient_capabilities_are_applied_as_given() {
    const CHOWN: u64 = 1 << 0;
    const KILL: u64 = 1 << 5;
    const NET_ADMIN: u64 = 1 << 12;
    let oci = Oci::new(&["grep", "^Cap", "/proc/self/status"]);
    let bundle = oci.bundle().display().to_string();
    for (user, ambient, want_amb, want_prm) in [
        (
            0,
            json!(["CAP_NET_ADMIN"]),
            NET_ADMIN,
            CHOWN | KILL | NET_ADMIN,
        ),
        (
            1000,
            json!(["CAP_NET_ADMIN", "CAP_KILL"]),
            NET_ADMIN | KILL,
            NET_ADMIN | KILL,
        ),
        // KILL is not inheritable: the kernel would refuse to raise it.
        (
            1000,
            json!(["CAP_NET_ADMIN", "CAP_KILL", "CAP_CHOWN"]),
            NET_ADMIN | KILL,
            NET_ADMIN | KILL,
        ),
    ] {
        oci.edit_config(|c| {
            c["process"]["user"] = json!({"uid": user, "gid": user});
            c["process"]["capabilities"] = json!({
                "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_ADMIN"],
                "effective": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_ADMIN"],
                "permitted": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_ADMIN"],
                "inheritable": ["CAP_KILL", "CAP_NET_ADMIN"],
                "ambient": ambient,
            });
        });
        let out = oci.call(&["run", "--bundle", &bundle, "caps"]);
        assert_eq!(out.code, 0, "user {user}: {}", out.stderr);
        let masks = cap_masks(&out.stdout);
        let got = |set: &str| masks.get(set).copied();
        assert_eq!(
            got("CapInh"),
            Some(KILL | NET_ADMIN),
            "user {user}: {}",
            out.stdout
        );
        assert_eq!(got("CapAmb"), Some(want_amb), "user {user}: {}", out.stdout);
        assert_eq!(got("CapPrm"), Some(want_prm), "user {user}: {}", out.stdout);
        assert_eq!(got("CapEff"), Some(want_prm), "user {user}: {}", out.stdout);
        assert_eq!(
            got("CapBnd"),
            Some(CHOWN | KILL | NET_ADMIN),
            "user {user}: {}",
            out.stdout
        );
        oci.assert_root_empty();
    }
    // An inheritable capability outside bounding is refused (capset would).
    oci.edit_config(|c| c["process"]["capabilities"]["inheritable"] = json!(["CAP_SYS_ADMIN"]));
    let out = oci.call(&["run", "--bundle", &bundle, "caps"]);
    assert_ne!(out.code, 0, "{}", out.stdout);
    assert!(out.stderr.contains("inheritable"), "{}", out.stderr);
    oci.assert_root_empty();
}

/// A config without a pid, network, IPC or UTS namespace shares the
/// caller's, as with runc (podman `--pid=host` and friends), and the engine
/// writes nothing into them: no hostname, no loopback up, no ping range.
/// `kill --all` of such a container takes only its init and what descends
/// from it, not every process of the (host's) pid namespace. All of it runs
/// in namespaces of the test's own (`unshare`), which play the host: a
/// wrong kill there ends only the test's processes.
#[test]
fn namespaces_left_out_are_the_caller_s_and_stay_untouched() {
    callers_namespaces_stay_untouched(json!([{"type": "mount"}]));
}

/// The same with the caller's own namespaces given by path, as containerd
/// gives a pod's container the namespaces of a sandbox that shares the
/// host's (critest's HostPID, HostIpc, HostNetwork): not joined (there is
/// nothing to join), and nothing written into them.
#[test]
fn the_caller_s_own_namespaces_by_path_are_shared_and_stay_untouched() {
    callers_namespaces_stay_untouched(json!([
        {"type": "mount"},
        {"type": "pid", "path": "/proc/self/ns/pid"},
        {"type": "network", "path": "/proc/self/ns/net"},
        {"type": "ipc", "path": "/proc/self/ns/ipc"},
        {"type": "uts", "path": "/proc/self/ns/uts"}
    ]));
}

fn callers_namespaces_stay_untouched(namespaces: Value) {
    let oci = Oci::new(&[
        "sh",
        "-c",
        "for n in pid net ipc uts; do readlink /proc/self/ns/$n; done; hostname; \
         cat /sys/class/net/lo/operstate /proc/sys/net/ipv4/ping_group_range; \
         sleep 300 & sleep 300",
    ]);
    oci.edit_config(|c| {
        c["linux"]["namespaces"] = namespaces;
        c.as_object_mut().unwrap().remove("hostname");
    });
    // The "host": its own pid, network, IPC and UTS namespaces, a bystander
    // process in them, the container created and started there.
    let script = r#"
        set -e
        hostname caller-host
        sleep 300 & bystander=$!
        for n in pid net ipc uts; do readlink /proc/self/ns/$n; done
        hostname
        "$ENGINE" --root "$ROOT" create --bundle "$BUNDLE" shared >"$OUT" 2>&1
        "$ENGINE" --root "$ROOT" start shared
        i=0; until [ "$(wc -l <"$OUT")" -ge 7 ] || [ $i -ge 100 ]; do sleep 0.1; i=$((i+1)); done
        "$ENGINE" --root "$ROOT" kill --all shared KILL
        sleep 0.5
        kill -0 $bystander && echo bystander-alive
        "$ENGINE" --root "$ROOT" delete --force shared
        kill $bystander
    "#;
    let out_file = oci.path("container.out");
    let mut cmd = Command::new("unshare");
    cmd.args(["--pid", "--fork", "--mount-proc", "--net", "--uts", "--ipc"])
        .args(["sh", "-c", script])
        .env("ENGINE", ENGINE)
        .env("ROOT", oci.root())
        .env("BUNDLE", oci.bundle())
        .env("OUT", &out_file);
    let out = wait::output(&mut cmd, LONG).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let caller: Vec<&str> = stdout.lines().collect();
    let container = fs::read_to_string(&out_file).unwrap();
    let container: Vec<&str> = container.lines().collect();
    assert_eq!(
        container.get(..5),
        Some(&caller[..5]),
        "container: {container:?}"
    );
    assert_eq!(caller[4], "caller-host");
    // lo left down and the ping range at the kernel's default "1 0".
    assert_eq!(container.get(5), Some(&"down"), "{container:?}");
    assert_eq!(
        container
            .get(6)
            .map(|l| l.split_whitespace().collect::<Vec<_>>()),
        Some(vec!["1", "0"]),
        "{container:?}"
    );
    assert_eq!(caller.get(5), Some(&"bystander-alive"), "{stdout}");
    oci.assert_root_empty();
}

/// `config`'s without namespaces, masks, read-only paths or the /tmp
/// tmpfs: what the engine takes without a mount namespace.
fn no_mount_namespace(c: &mut Value) {
    c["linux"]["namespaces"] = json!([]);
    c.as_object_mut().unwrap().remove("hostname");
    let linux = c["linux"].as_object_mut().unwrap();
    linux.remove("maskedPaths");
    linux.remove("readonlyPaths");
    c["root"]["readonly"] = json!(false);
    c["mounts"]
        .as_array_mut()
        .unwrap()
        .retain(|m| m["destination"] != "/tmp");
}

/// A config without any namespace (runtime-tools' linux_ns_itype): the
/// init is in the caller's namespaces, the cgroup namespace included, and
/// in the caller's mount namespace nothing is mounted (the config's /proc,
/// /sys and /dev are left out) and nothing changes propagation; the root is
/// the rootfs by chroot, as with runc. It runs in a mount namespace of the
/// test's own whose `/` is shared, so that a bug cannot touch the host's
/// mounts and a mount made anywhere below `/` would show.
#[test]
fn without_a_mount_namespace_nothing_is_mounted_and_the_root_is_the_rootfs() {
    let oci = Oci::new(&["sleep", "300"]);
    oci.edit_config(no_mount_namespace);
    let script = r#"
        set -e
        mount --make-rshared /
        cat /proc/self/mountinfo >"$DIR/before"
        "$ENGINE" --root "$ROOT" create --bundle "$BUNDLE" nons </dev/null >"$DIR/init.out" 2>&1
        "$ENGINE" --root "$ROOT" start nons
        pid=$("$ENGINE" --root "$ROOT" state nons | sed -n 's/.*"pid": *\([0-9]*\).*/\1/p')
        cat /proc/self/mountinfo >"$DIR/after"
        for n in mnt cgroup pid net ipc uts user; do
            [ "$(readlink /proc/$pid/ns/$n)" = "$(readlink /proc/self/ns/$n)" ] && echo "$n shared"
        done
        readlink /proc/$pid/root
        "$ENGINE" --root "$ROOT" delete --force nons
    "#;
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c", script])
        .env("ENGINE", ENGINE)
        .env("ROOT", oci.root())
        .env("BUNDLE", oci.bundle())
        .env("DIR", oci.dir.path());
    let out = wait::output(&mut cmd, LONG).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{:?} {stdout}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        fs::read_to_string(oci.path("init.out")).unwrap_or_default()
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.get(..7),
        Some(
            &[
                "mnt shared",
                "cgroup shared",
                "pid shared",
                "net shared",
                "ipc shared",
                "uts shared",
                "user shared"
            ][..]
        ),
        "{stdout}"
    );
    let rootfs = fs::canonicalize(rootfs()).unwrap();
    assert_eq!(
        lines.get(7).copied(),
        Some(rootfs.to_str().unwrap()),
        "{stdout}"
    );
    assert_eq!(
        fs::read_to_string(oci.path("before")).unwrap(),
        fs::read_to_string(oci.path("after")).unwrap(),
        "mounts changed in the caller's mount namespace"
    );
    oci.assert_root_empty();
}

/// What cannot be shared is refused at create, with its sentence: a
/// hostname without a UTS namespace, sysctls of a shared namespace, a
/// config without a mount namespace that asks for mounts, masks, a read-only
/// root, devices or a root propagation, a new user namespace with the
/// caller's pid namespace (its root could not mount /proc).
#[test]
fn what_a_shared_namespace_cannot_take_is_refused() {
    type Edit = fn(&mut Value);
    let cases: &[(Edit, &str)] = &[
        (
            |c| c["linux"]["namespaces"] = json!([{"type": "mount"}, {"type": "pid"}]),
            "hostname but no uts namespace",
        ),
        (
            |c| {
                c["linux"]["namespaces"] = json!([{"type": "mount"}, {"type": "uts"}]);
                c["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
            },
            "linux.sysctl \"net.ipv4.ip_forward\"",
        ),
        (
            |c| {
                c["linux"]["namespaces"] = json!([{"type": "mount"}, {"type": "uts"}]);
                c["linux"]["sysctl"] = json!({"kernel.shm_rmid_forced": "1"});
            },
            "linux.sysctl \"kernel.shm_rmid_forced\"",
        ),
        // The caller's own IPC namespace given by path is the same as
        // leaving it out: its sysctls are not written there either.
        (
            |c| {
                c["linux"]["namespaces"] = json!([
                    {"type": "mount"}, {"type": "uts"},
                    {"type": "ipc", "path": "/proc/self/ns/ipc"}
                ]);
                c["linux"]["sysctl"] = json!({"kernel.shm_rmid_forced": "1"});
            },
            "is the caller's own IPC namespace, where linux.sysctl's IPC keys would be written",
        ),
        // Without a mount namespace, what would be mounted, made or
        // changed in the caller's: the config's other mounts, masks,
        // read-only paths and root, devices, rootfsPropagation.
        (
            |c| c["linux"]["namespaces"] = json!([{"type": "uts"}]),
            "config.json mounts /tmp: without a mount namespace",
        ),
        (
            |c| {
                no_mount_namespace(c);
                c["linux"]["maskedPaths"] = json!(["/proc/kcore"]);
            },
            "config.json linux.maskedPaths: without a mount namespace",
        ),
        (
            |c| {
                no_mount_namespace(c);
                c["linux"]["readonlyPaths"] = json!(["/proc/sys"]);
            },
            "config.json linux.readonlyPaths: without a mount namespace",
        ),
        (
            |c| {
                no_mount_namespace(c);
                c["root"]["readonly"] = json!(true);
            },
            "config.json root.readonly: without a mount namespace",
        ),
        (
            |c| {
                no_mount_namespace(c);
                c["linux"]["devices"] =
                    json!([{"path": "/dev/null2", "type": "c", "major": 1, "minor": 3}]);
            },
            "config.json linux.devices: without a mount namespace",
        ),
        (
            |c| {
                no_mount_namespace(c);
                c["linux"]["rootfsPropagation"] = json!("shared");
            },
            "config.json linux.rootfsPropagation: without a mount namespace",
        ),
        (
            |c| {
                c["linux"]["namespaces"] = json!([{"type": "mount"}, {"type": "uts"}, {"type": "user"}, {"type": "network"}, {"type": "ipc"}]);
                c["linux"]["uidMappings"] =
                    json!([{"containerID": 0, "hostID": 300000, "size": 65536}]);
                c["linux"]["gidMappings"] =
                    json!([{"containerID": 0, "hostID": 300000, "size": 65536}]);
            },
            "shares the caller's pid namespace",
        ),
    ];
    for (edit, words) in cases {
        let oci = Oci::new(&["true"]);
        oci.edit_config(edit);
        let bundle = oci.bundle().display().to_string();
        let out = oci.call(&["run", "--bundle", &bundle, "sh1"]);
        assert_ne!(out.code, 0, "{words}: {}", out.stderr);
        assert!(
            out.stderr.contains(words),
            "{words:?} not in {}",
            out.stderr
        );
        assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
        oci.assert_root_empty();
    }
}

/// linux.devices: each node made as runc makes it (mknod, the config's
/// mode and owner, parents made) and openable although /dev is nodev; in a
/// user namespace, where mknod is refused, the host's node is bound.
#[test]
fn linux_devices_are_made_and_open() {
    fs::File::open("/dev/fuse")
        .unwrap_or_else(|e| panic!("cannot open /dev/fuse on the host ({e}): modprobe fuse"));
    let script = "for d in /dev/test-fuse /dev/sub/dir/null2 /dev/fifo1; do stat -c '%n %F %t:%T %a %u:%g' $d; done; \
                  (exec 3</dev/test-fuse) && echo fuse-opened; echo x >/dev/sub/dir/null2 && echo null-written";
    let oci = Oci::new(&["sh", "-c", script]);
    let devices = json!([
        {"path": "/dev/test-fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o640, "uid": 0, "gid": 2},
        {"path": "/dev/sub/dir/null2", "type": "c", "major": 1, "minor": 3},
        {"path": "/dev/fifo1", "type": "p", "fileMode": 0o600},
    ]);
    oci.edit_config(|c| c["linux"]["devices"] = devices.clone());
    let bundle = oci.bundle().display().to_string();
    let out = oci.call(&["run", "--bundle", &bundle, "dv"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout.lines().collect::<Vec<_>>(),
        [
            "/dev/test-fuse character special file a:e5 640 0:2",
            "/dev/sub/dir/null2 character special file 1:3 666 0:0",
            "/dev/fifo1 fifo 0:0 600 0:0",
            "fuse-opened",
            "null-written",
        ],
        "{}",
        out.stderr
    );
    oci.assert_root_empty();

    // A user namespace: /dev/fuse bound from the host (mode 0600 there:
    // host root is mapped, so that the container's root owns it).
    oci.edit_config(|c| {
        c["linux"]["devices"] =
            json!([{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}]);
        c["process"]["args"] = json!([
            "sh",
            "-c",
            "stat -c '%t:%T' /dev/fuse; (exec 3</dev/fuse) && echo opened"
        ]);
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "user"}));
        c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 0, "size": 65536}]);
        c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 0, "size": 65536}]);
    });
    let out = oci.call(&["run", "--bundle", &bundle, "dv"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "a:e5\nopened\n", "{}", out.stderr);
    // ... and one the host does not have is refused with its sentence.
    oci.edit_config(|c| {
        c["linux"]["devices"] =
            json!([{"path": "/dev/no-such-node", "type": "c", "major": 10, "minor": 229}]);
    });
    let out = oci.call(&["run", "--bundle", &bundle, "dv"]);
    assert_ne!(out.code, 0, "{}", out.stdout);
    assert!(
        out.stderr.contains("mknod is refused in a user namespace"),
        "{}",
        out.stderr
    );
    oci.assert_root_empty();
}

/// Hostile linux.devices: a path that climbs out with `..` is refused
/// before anything is made; symlinks of the rootfs (absolute, relative,
/// to the host's directory) are resolved inside the root, so nothing is
/// created outside it; bad types and numbers are refused with a sentence.
#[test]
fn linux_devices_cannot_reach_out_of_the_root() {
    // Not under /tmp: the init's copy of the host's tree has the rootfs
    // mounted over /tmp.
    let outside = tempfile::tempdir_in("/var/tmp").unwrap();
    let (_copy, root) = rootfs_copy("rootfs");
    std::os::unix::fs::symlink(outside.path(), root.join("abs")).unwrap();
    std::os::unix::fs::symlink("../../../../../../..", root.join("up")).unwrap();
    let host_path = format!("/up{}/node", outside.path().display());
    let oci = Oci::new(&["true"]);
    let bundle = oci.bundle().display().to_string();
    for path in ["/abs/node", &host_path, "/abs/sub/node"] {
        oci.edit_config(|c| {
            c["root"] = json!({"path": root, "readonly": false});
            c["linux"]["devices"] = json!([{"path": path, "type": "c", "major": 1, "minor": 3}]);
        });
        // Refused or made inside the root: either way nothing outside.
        let _ = oci.call(&["run", "--bundle", &bundle, "esc"]);
        let left: Vec<_> = fs::read_dir(outside.path()).unwrap().flatten().collect();
        assert!(left.is_empty(), "{path} made {left:?} outside the root");
        oci.assert_root_empty();
    }
    type Edit = fn(&mut Value);
    let cases: &[(Edit, &str)] = &[
        (
            |c| {
                c["linux"]["devices"] =
                    json!([{"path": "/dev/../../etc/x", "type": "c", "major": 1, "minor": 3}])
            },
            "no '..'",
        ),
        (
            |c| {
                c["linux"]["devices"] =
                    json!([{"path": "dev/x", "type": "c", "major": 1, "minor": 3}])
            },
            "must be absolute",
        ),
        (
            |c| {
                c["linux"]["devices"] =
                    json!([{"path": "/proc/x", "type": "c", "major": 1, "minor": 3}])
            },
            "kernel's file system",
        ),
        (
            |c| {
                c["linux"]["devices"] =
                    json!([{"path": "/dev/x", "type": "a", "major": 1, "minor": 3}])
            },
            "type a is a cgroup rule",
        ),
        (
            |c| {
                c["linux"]["devices"] =
                    json!([{"path": "/dev/x", "type": "c", "major": -2, "minor": 3}])
            },
            "major -2 is not a device number",
        ),
    ];
    for (edit, words) in cases {
        oci.edit_config(edit);
        let out = oci.call(&["run", "--bundle", &bundle, "esc"]);
        assert_ne!(out.code, 0, "{words}");
        assert!(
            out.stderr.contains(words),
            "{words:?} not in {}",
            out.stderr
        );
        assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
        oci.assert_root_empty();
    }
}

/// podman with what its users type every day, on the engine:
/// `--cap-add X --user 1000` (the ambient set), `--device`, `--privileged`,
/// and `--network/--ipc/--uts=host`, run from namespaces of the test's own
/// (`unshare`), which play the host. (`--pid=host` podman refuses without
/// cgroups, which this host cannot give the engine.)
#[test]
fn podman_ambient_caps_devices_privileged_and_host_namespaces() {
    fs::File::open("/dev/fuse")
        .unwrap_or_else(|e| panic!("cannot open /dev/fuse on the host ({e}): modprobe fuse"));
    let podman = Podman::new();
    let rootfs = podman.rootfs();
    let opts = [
        "run",
        "--rm",
        "--cgroups=disabled",
        "--ulimit=nofile=20000:20000",
        "--ulimit=nproc=1000:1000",
    ];
    let run = |prefix: &[&str], extra: &[&str], script: &str| {
        let inner = {
            let mut c = podman.command();
            c.args(opts).args(extra).args([
                "--rootfs",
                rootfs.to_str().unwrap(),
                "/bin/sh",
                "-c",
                script,
            ]);
            c
        };
        let mut c = Command::new(prefix.first().copied().unwrap_or("env"));
        c.args(prefix.iter().skip(1))
            .arg(inner.get_program())
            .args(inner.get_args());
        for (k, v) in inner.get_envs() {
            if let Some(v) = v {
                c.env(k, v);
            }
        }
        let out = wait::output(&mut c, LONG).unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        assert!(out.status.success(), "{extra:?}: {stdout}\n{stderr}");
        stdout
    };
    let caps = run(
        &[],
        &["--network=none", "--cap-add", "NET_ADMIN", "--user", "1000"],
        "id -u; grep -E '^Cap(Amb|Eff)' /proc/self/status",
    );
    assert_eq!(
        caps.split_whitespace().collect::<Vec<_>>(),
        [
            "1000",
            "CapEff:",
            "0000000000001000",
            "CapAmb:",
            "0000000000001000"
        ],
        "{caps}"
    );
    let device = run(
        &[],
        &["--network=none", "--device", "/dev/fuse"],
        "stat -c '%t:%T' /dev/fuse; (exec 3</dev/fuse) && echo opened",
    );
    assert_eq!(device, "a:e5\nopened\n");
    let privileged = run(
        &[],
        &["--network=none", "--privileged"],
        "grep CapEff /proc/self/status; (exec 3</dev/fuse) && echo opened",
    );
    // Every capability of the caller's bounding set (this host's lacks
    // CAP_SYS_RESOURCE).
    let own = fs::read_to_string("/proc/self/status").unwrap();
    let bounding = own
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .unwrap()
        .trim();
    assert_eq!(privileged, format!("CapEff:\t{bounding}\nopened\n"));
    // The caller's network, IPC and UTS namespaces, left as they were (lo
    // down: the container's sysfs shows the caller's network namespace).
    let show = "for n in net ipc uts; do readlink /proc/$$/ns/$n; done; hostname";
    let caller_script = format!("hostname caller-host; {show}; echo ---; exec \"$@\"");
    let out = run(
        &[
            "unshare",
            "--net",
            "--ipc",
            "--uts",
            "sh",
            "-c",
            &caller_script,
            "sh",
        ],
        &["--network=host", "--ipc=host", "--uts=host"],
        &format!("{show}; cat /sys/class/net/lo/operstate"),
    );
    let (caller, container) = out.split_once("---\n").unwrap();
    assert_eq!(
        format!("{caller}down\n"),
        container,
        "caller and container differ"
    );
    assert!(caller.ends_with("caller-host\n"), "{caller}");
}

/// A capability outside the engine's own bounding set (run here under
/// `setpriv --bounding-set -net_admin`) is refused at create with a
/// sentence naming it: capset failed in the init with a bare EPERM
/// (runtime-tools `process_capabilities` asks for all of them, and this
/// host's bounding set lacks CAP_SYS_RESOURCE).
#[test]
fn a_capability_outside_the_engine_s_bounding_set_is_refused_by_name() {
    let oci = Oci::new(&["true"]);
    oci.edit_config(|c| {
        let caps = json!(["CAP_KILL", "CAP_NET_ADMIN"]);
        for set in ["bounding", "effective", "permitted"] {
            c["process"]["capabilities"][set] = caps.clone();
        }
    });
    let setpriv = quote::require("setpriv", "util-linux");
    let bundle = oci.bundle().display().to_string();
    let root = oci.root().display().to_string();
    let mut cmd = Command::new(setpriv);
    cmd.args([
        "--bounding-set",
        "-net_admin",
        "--",
        ENGINE,
        "--root",
        &root,
    ])
    .args(["run", "--bundle", &bundle, "bnd"]);
    let out = wait::output(&mut cmd, LONG).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("asks for CAP_NET_ADMIN, which this host's bounding set does not hold"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    oci.assert_root_empty();
}
