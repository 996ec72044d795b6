//! The rootfs fetcher, for real: tarballs made here, served by an HTTP server
//! on 127.0.0.1 that this test starts, unpacked as root.

use engine::image::{self as rootfs, PullOptions};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use testkit::host::temp_dir;
use testkit::wait;

// ---------------------------------------------------------------------------
// Scaffolding: temp dirs, tarballs, an HTTP server.

const HELLO: &[u8] = b"hello\n";

/// A tar with a dir, a file (owned 1234:2345, 0640), a setuid file in a dir
/// that has no entry of its own, a symlink and a hardlink.
fn sample_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o750);
    dir.set_uid(1234);
    dir.set_gid(2345);
    dir.set_size(0);
    b.append_data(&mut dir, "etc/", &[][..]).unwrap();

    let mut file = tar::Header::new_gnu();
    file.set_mode(0o640);
    file.set_uid(1234);
    file.set_gid(2345);
    file.set_size(HELLO.len() as u64);
    b.append_data(&mut file, "etc/hello.txt", HELLO).unwrap();

    let tool = b"#!/bin/sh\necho tool\n";
    let mut suid = tar::Header::new_gnu();
    suid.set_mode(0o4755);
    suid.set_uid(0);
    suid.set_gid(0);
    suid.set_size(tool.len() as u64);
    b.append_data(&mut suid, "usr/bin/tool", &tool[..]).unwrap();

    let mut link = tar::Header::new_gnu();
    link.set_entry_type(tar::EntryType::Symlink);
    link.set_mode(0o777);
    link.set_uid(1234);
    link.set_gid(2345);
    link.set_size(0);
    b.append_link(&mut link, "etc/link", "hello.txt").unwrap();

    let mut hard = tar::Header::new_gnu();
    hard.set_entry_type(tar::EntryType::Link);
    hard.set_mode(0o640);
    hard.set_uid(1234);
    hard.set_gid(2345);
    hard.set_size(0);
    b.append_link(&mut hard, "etc/hard", "etc/hello.txt")
        .unwrap();
    b.into_inner().unwrap()
}

fn xz(data: &[u8]) -> Vec<u8> {
    let mut enc = xz2::write::XzEncoder::new(Vec::new(), 6);
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn gz(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn sha256(data: &[u8]) -> String {
    format!("{:x}", Sha256::digest(data))
}

/// Starts an HTTP/1.1 server on 127.0.0.1 serving `dir`, and returns its base
/// URL. Routes: `/missing` -> 404; `/truncated/F` sends half of F under a
/// Content-Length for all of it, then closes; `/slow/F` drips F 1 KiB per
/// 20 ms (stopping after 20 s); `/F` serves F. The thread lives as long as
/// the test process.
fn serve(dir: &Path) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let dir = dir.to_path_buf();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let dir = dir.clone();
            std::thread::spawn(move || {
                let _ = respond(stream, &dir);
            });
        }
    });
    format!("http://{addr}")
}

fn respond(mut stream: TcpStream, dir: &Path) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
    }
    let path = request.split_whitespace().nth(1).unwrap_or("/");
    let name = path.trim_start_matches('/');
    let (mode, name) = if let Some(name) = name.strip_prefix("truncated/") {
        ("truncated", name)
    } else if let Some(name) = name.strip_prefix("slow/") {
        ("slow", name)
    } else {
        ("whole", name)
    };
    // A directory (or the bare `/`) fails to read and is a 404 too.
    let Ok(body) = fs::read(dir.join(name)) else {
        let text = "no such file\n";
        write!(
            stream,
            "HTTP/1.1 404 Not Found\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
            text.len()
        )?;
        return Ok(());
    };
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    match mode {
        "truncated" => stream.write_all(&body[..body.len() / 2])?,
        "slow" => {
            let start = Instant::now();
            for chunk in body.chunks(1024) {
                if start.elapsed() > Duration::from_secs(20) {
                    break;
                }
                stream.write_all(chunk)?;
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        _ => stream.write_all(&body)?,
    }
    stream.flush()
}

/// A served directory with the sample in every format.
struct Fixture {
    files: tempfile::TempDir,
    url: String,
    tar: Vec<u8>,
    tar_xz: Vec<u8>,
    tar_gz: Vec<u8>,
}

fn fixture() -> Fixture {
    let files = temp_dir();
    let tar = sample_tar();
    let tar_xz = xz(&tar);
    let tar_gz = gz(&tar);
    fs::write(files.path().join("root.tar"), &tar).unwrap();
    fs::write(files.path().join("root.tar.xz"), &tar_xz).unwrap();
    fs::write(files.path().join("root.tgz"), &tar_gz).unwrap();
    let url = serve(files.path());
    Fixture {
        files,
        url,
        tar,
        tar_xz,
        tar_gz,
    }
}

fn opts() -> PullOptions {
    PullOptions::default()
}

fn with_digest(digest: &str) -> PullOptions {
    PullOptions {
        sha256: Some(digest.to_string()),
        ..opts()
    }
}

/// The sample as unpacked, with ownership shifted by `base`.
fn check_sample(dest: &Path, base: u32) {
    let hello = dest.join("etc/hello.txt");
    assert_eq!(fs::read(&hello).unwrap(), HELLO);
    let meta = fs::metadata(&hello).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o640);
    assert_eq!((meta.uid(), meta.gid()), (base + 1234, base + 2345));
    let etc = fs::metadata(dest.join("etc")).unwrap();
    assert_eq!(etc.mode() & 0o7777, 0o750);
    assert_eq!(etc.uid(), base + 1234);

    let tool = fs::metadata(dest.join("usr/bin/tool")).unwrap();
    assert_eq!(tool.mode() & 0o7777, 0o4755, "setuid bit kept");
    assert_eq!((tool.uid(), tool.gid()), (base, base));

    let link = dest.join("etc/link");
    assert_eq!(fs::read_link(&link).unwrap(), PathBuf::from("hello.txt"));
    let link_meta = fs::symlink_metadata(&link).unwrap();
    assert!(link_meta.file_type().is_symlink());
    assert_eq!(link_meta.uid(), base + 1234);
    assert_eq!(fs::read(&link).unwrap(), HELLO);

    let hard = fs::metadata(dest.join("etc/hard")).unwrap();
    assert_eq!(hard.ino(), meta.ino(), "hardlink shares the inode");
    assert_no_partial(dest);
}

/// Nothing named `.NAME.partial-*` beside `dest`.
fn assert_no_partial(dest: &Path) {
    let name = dest.file_name().unwrap().to_string_lossy().to_string();
    let prefix = format!(".{name}.partial-");
    let left: Vec<_> = fs::read_dir(dest.parent().unwrap())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with(&prefix))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// A failed pull: the error says `expect`, DEST does not exist, no partial.
fn assert_failed_cleanly(result: Result<(), rootfs::Error>, dest: &Path, expect: &str) -> String {
    // With its causes, as the engine prints it.
    let err = format!(
        "{:#}",
        anyhow::Error::from(result.expect_err("the pull should fail"))
    );
    assert!(
        err.contains(expect),
        "error {err:?} should contain {expect:?}"
    );
    assert!(!err.contains('\n'), "one-line error: {err:?}");
    assert!(!dest.exists(), "{} must not exist", dest.display());
    assert_no_partial(dest);
    err
}

// ---------------------------------------------------------------------------
// Downloads.

#[test]
fn pulls_tar_xz_with_correct_digest() {
    let f = fixture();
    let out = temp_dir();
    let dest = out.path().join("root");
    let url = format!("{}/root.tar.xz", f.url);
    rootfs::pull(&url, &dest, &with_digest(&sha256(&f.tar_xz))).unwrap();
    check_sample(&dest, 0);
    // The root itself is a plain 0755 directory.
    assert_eq!(fs::metadata(&dest).unwrap().mode() & 0o7777, 0o755);
}

#[test]
fn pulls_tar_xz_and_tgz_without_digest() {
    let f = fixture();
    let out = temp_dir();
    let dest = out.path().join("xz");
    rootfs::pull(&format!("{}/root.tar.xz", f.url), &dest, &opts()).unwrap();
    check_sample(&dest, 0);
    let dest = out.path().join("gz");
    rootfs::pull(&format!("{}/root.tgz", f.url), &dest, &opts()).unwrap();
    check_sample(&dest, 0);
}

#[test]
fn pulls_tar_gz_with_correct_digest_in_capitals() {
    let f = fixture();
    let out = temp_dir();
    let dest = out.path().join("gz");
    let digest = format!("sha256:{}", sha256(&f.tar_gz).to_uppercase());
    rootfs::pull(&format!("{}/root.tgz", f.url), &dest, &with_digest(&digest)).unwrap();
    check_sample(&dest, 0);
}

#[test]
fn pulls_plain_tar_from_file_url() {
    let f = fixture();
    let out = temp_dir();
    let dest = out.path().join("plain");
    let url = format!("file://{}", f.files.path().join("root.tar").display());
    rootfs::pull(&url, &dest, &with_digest(&sha256(&f.tar))).unwrap();
    check_sample(&dest, 0);

    // Format comes from the content: a gzip under a .tar.xz name still works.
    let renamed = f.files.path().join("really-gzip.tar.xz");
    fs::write(&renamed, &f.tar_gz).unwrap();
    let dest = out.path().join("renamed");
    rootfs::pull(&format!("file://{}", renamed.display()), &dest, &opts()).unwrap();
    check_sample(&dest, 0);
}

#[test]
fn missing_file_url_fails_cleanly() {
    let out = temp_dir();
    let dest = out.path().join("root");
    let url = format!("file://{}/nope.tar.xz", out.path().display());
    assert_failed_cleanly(rootfs::pull(&url, &dest, &opts()), &dest, "No such file");
}

#[test]
fn bad_digest_fails_and_leaves_nothing() {
    let f = fixture();
    let out = temp_dir();
    let dest = out.path().join("root");
    let url = format!("{}/root.tar.xz", f.url);
    let wrong = "0".repeat(64);
    let err = assert_failed_cleanly(
        rootfs::pull(&url, &dest, &with_digest(&wrong)),
        &dest,
        "sha256 mismatch",
    );
    assert!(
        err.contains(&url) && err.contains(&wrong) && err.contains(&sha256(&f.tar_xz)),
        "{err}"
    );
}

#[test]
fn truncated_download_fails_and_leaves_nothing() {
    let f = fixture();
    let out = temp_dir();
    for name in ["root.tar.xz", "root.tgz", "root.tar"] {
        let dest = out.path().join(name);
        let url = format!("{}/truncated/{name}", f.url);
        let err = assert_failed_cleanly(
            rootfs::pull(&url, &dest, &opts()),
            &dest,
            "was cut short after",
        );
        assert!(err.contains(&url) && err.contains("(expected "), "{err}");
    }
}

#[test]
fn http_404_fails_and_leaves_nothing() {
    let f = fixture();
    let out = temp_dir();
    let dest = out.path().join("root");
    let url = format!("{}/missing.tar.xz", f.url);
    let err = assert_failed_cleanly(
        rootfs::pull(&url, &dest, &opts()),
        &dest,
        "HTTP 404 Not Found from",
    );
    assert!(err.contains(&url), "{err}");
    // The parent directories a failed pull made for DEST go too.
    let nested = out.path().join("a/b/root");
    rootfs::pull(&url, &nested, &opts()).unwrap_err();
    assert!(!out.path().join("a").exists(), "made parents removed");
}

#[test]
fn not_a_tarball_is_refused() {
    let f = fixture();
    let out = temp_dir();
    // Random bytes (a fixed pseudo-random sequence) under a tarball's name.
    let mut x: u32 = 0x1234_5678;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    fs::write(f.files.path().join("noise.tar.xz"), &noise).unwrap();
    fs::write(
        f.files.path().join("page.tar.gz"),
        b"<!DOCTYPE html><html>rate limited</html>",
    )
    .unwrap();
    fs::write(
        f.files.path().join("broken.tar.xz"),
        [&f.tar_xz[..6], &noise[..]].concat(),
    )
    .unwrap();
    for (name, detail) in [
        ("noise.tar.xz", "it starts with bytes"),
        ("page.tar.gz", "DOCTYPE"),
        ("broken.tar.xz", "not a valid .tar.xz tarball"),
    ] {
        let dest = out.path().join(name);
        let url = format!("{}/{name}", f.url);
        let err = assert_failed_cleanly(rootfs::pull(&url, &dest, &opts()), &dest, detail);
        assert!(err.contains(&url), "{err}");
        if name != "broken.tar.xz" {
            assert!(
                err.contains("is not a .tar.xz/.tar.gz/.tar tarball"),
                "{err}"
            );
        }
    }
}

#[test]
fn archive_entry_escaping_dest_is_refused() {
    let out = temp_dir();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_old();
    let name = b"../evil.txt";
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.set_mode(0o644);
    h.set_size(4);
    h.set_cksum();
    b.append(&h, &b"evil"[..]).unwrap();
    let tarball = out.path().join("evil.tar");
    fs::write(&tarball, b.into_inner().unwrap()).unwrap();
    let inner = out.path().join("inner");
    fs::create_dir(&inner).unwrap();
    let dest = inner.join("root");
    let url = format!("file://{}", tarball.display());
    assert_failed_cleanly(
        rootfs::pull(&url, &dest, &opts()),
        &dest,
        "points outside the rootfs",
    );
    assert!(!inner.join("evil.txt").exists());
}

#[test]
fn owner_shifts_every_uid_and_gid() {
    let f = fixture();
    let out = temp_dir();
    let dest = out.path().join("shifted");
    let shifted = PullOptions {
        owner: Some(100_000),
        ..opts()
    };
    rootfs::pull(&format!("{}/root.tar.xz", f.url), &dest, &shifted).unwrap();
    check_sample(&dest, 100_000);
    let root = fs::metadata(&dest).unwrap();
    assert_eq!(
        (root.uid(), root.gid()),
        (100_000, 100_000),
        "the root is owned by BASE"
    );
}

#[test]
fn existing_dest_is_refused_but_an_empty_one_is_filled() {
    let f = fixture();
    let out = temp_dir();
    let url = format!("{}/root.tar.xz", f.url);

    let dest = out.path().join("full");
    fs::create_dir(&dest).unwrap();
    fs::write(dest.join("keep"), "mine").unwrap();
    let err = format!("{:#}", rootfs::pull(&url, &dest, &opts()).unwrap_err());
    assert!(
        err.contains(&dest.display().to_string())
            && err.contains("remove it or choose another DEST"),
        "{err}"
    );
    assert_eq!(fs::read_to_string(dest.join("keep")).unwrap(), "mine");
    assert_no_partial(&dest);

    let file = out.path().join("file");
    fs::write(&file, "x").unwrap();
    let err = format!("{:#}", rootfs::pull(&url, &file, &opts()).unwrap_err());
    assert!(err.contains("is not a directory"), "{err}");

    let empty = out.path().join("empty");
    fs::create_dir(&empty).unwrap();
    rootfs::pull(&url, &empty, &opts()).unwrap();
    check_sample(&empty, 0);
}

#[test]
fn stale_partial_of_a_dead_pull_is_removed() {
    let f = fixture();
    let out = temp_dir();
    // The pid of a process that has exited.
    let mut child = Command::new("true").spawn().unwrap();
    let dead = child.id();
    wait::child(&mut child, Duration::from_secs(20)).unwrap();
    let stale = out.path().join(format!(".root.partial-{dead}"));
    fs::create_dir_all(stale.join("etc")).unwrap();
    let other = out.path().join(".other.partial-1"); // another DEST's, and pid 1 lives
    fs::create_dir(&other).unwrap();

    let dest = out.path().join("root");
    rootfs::pull(&format!("{}/root.tar.xz", f.url), &dest, &opts()).unwrap();
    assert!(!stale.exists(), "stale partial removed");
    assert!(other.exists(), "unrelated entries kept");
    check_sample(&dest, 0);
}

#[test]
fn bad_sources_and_options_are_refused_before_anything_is_created() {
    let out = temp_dir();
    let dest = out.path().join("sub/root");
    let cases: [(&str, PullOptions, &str); 6] = [
        (
            "ubuntu",
            opts(),
            "neither a rootfs catalog name (busybox, debian, centos)",
        ),
        (
            "ftp://example.invalid/x.tar.xz",
            opts(),
            "nor an http://, https:// or file:// URL",
        ),
        ("file://relative/x.tar", opts(), "file:///ABSOLUTE/PATH"),
        (
            "busybox",
            PullOptions {
                arch: Some("riscv64".into()),
                ..opts()
            },
            "unsupported architecture `riscv64`",
        ),
        (
            "http://127.0.0.1:9/x.tar.xz",
            with_digest("12ab"),
            "is not a sha256 digest",
        ),
        (
            "busybox",
            with_digest(&"a".repeat(64)),
            "--sha256 applies to downloads",
        ),
    ];
    for (source, o, expect) in cases {
        let err = format!("{:#}", rootfs::pull(source, &dest, &o).unwrap_err());
        assert!(
            err.contains(expect),
            "{source}: {err:?} should contain {expect:?}"
        );
        assert!(
            !out.path().join("sub").exists(),
            "{source}: nothing created"
        );
    }
    // A foreign arch needs its own busybox, named by ENGINE_BUSYBOX.
    if std::env::var_os("ENGINE_BUSYBOX").is_none() {
        let foreign = if engine::sys::arch::host_arch() == "amd64" {
            "arm64"
        } else {
            "amd64"
        };
        let o = PullOptions {
            arch: Some(foreign.into()),
            ..opts()
        };
        let err = format!("{:#}", rootfs::pull("busybox", &dest, &o).unwrap_err());
        assert!(err.contains("set ENGINE_BUSYBOX"), "{err}");
        assert!(!out.path().join("sub").exists());
    }
    // A local path gets a hint at the file:// form.
    let err = format!(
        "{:#}",
        rootfs::pull(out.path().to_str().unwrap(), &dest, &opts()).unwrap_err()
    );
    assert!(err.contains("file:///"), "{err}");
    assert!(!rootfs::is_catalog_name("ubuntu"));
    assert!(rootfs::cached("https://x/y.tar.xz", out.path()).is_err());
}

// ---------------------------------------------------------------------------
// The busybox flavour, the cache, ELF helpers.

#[test]
fn busybox_catalog_builds_a_root_that_runs() {
    let out = temp_dir();
    let dest = out.path().join("busybox");
    rootfs::pull("busybox", &dest, &opts()).unwrap();
    for applet in [
        "sh", "ps", "hostname", "whoami", "ip", "ping", "ls", "id", "sleep", "cat",
    ] {
        let found = ["bin", "sbin", "usr/bin", "usr/sbin"]
            .iter()
            .any(|d| fs::symlink_metadata(dest.join(d).join(applet)).is_ok());
        assert!(found, "applet {applet} missing");
    }
    assert_eq!(
        fs::metadata(dest.join("tmp")).unwrap().mode() & 0o7777,
        0o1777
    );
    assert_eq!(
        fs::metadata(dest.join("var/tmp")).unwrap().mode() & 0o7777,
        0o1777
    );
    assert!(fs::read_to_string(dest.join("etc/os-release"))
        .unwrap()
        .contains("ID=busybox"));
    assert!(fs::read_to_string(dest.join("etc/passwd"))
        .unwrap()
        .starts_with("root:x:0:0:root:/root:/bin/sh"));

    let run = |script: &str| {
        let out = assert_cmd::Command::new("chroot")
            .arg(&dest)
            .args(["/bin/sh", "-c", script])
            .timeout(Duration::from_secs(30))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(run("echo ok"), "ok");
    assert_eq!(run("whoami"), "root");
    assert_eq!(run("id -u; ls /bin/sh"), "0\n/bin/sh");
    assert_eq!(
        run("/usr/bin/env true && echo ok"),
        "ok",
        "applets outside bin/ resolve too"
    );

    // The rootfs's own command resolves inside it, never to the host's.
    let sh = engine::sys::path::resolve_in_rootfs(&dest, Path::new("/bin/sh")).unwrap();
    assert_eq!(sh, dest.join("bin/busybox"));
    fs::create_dir_all(dest.join("opt")).unwrap();
    std::os::unix::fs::symlink("/../../bin/sh", dest.join("opt/abs")).unwrap();
    let abs = engine::sys::path::resolve_in_rootfs(&dest, Path::new("/opt/abs")).unwrap();
    assert_eq!(
        abs,
        dest.join("bin/busybox"),
        ".. stops at the rootfs's root"
    );
    let machine = engine::sys::arch::elf_machine(&sh).unwrap();
    assert_eq!(
        machine,
        engine::sys::arch::arch_machine(engine::sys::arch::host_arch())
    );
}

#[test]
fn busybox_catalog_with_owner_shift() {
    let out = temp_dir();
    let dest = out.path().join("busybox");
    let shifted = PullOptions {
        owner: Some(100_000),
        ..opts()
    };
    rootfs::pull("busybox", &dest, &shifted).unwrap();
    for path in ["", "bin/busybox", "bin/sh", "etc/passwd", "tmp"] {
        let meta = fs::symlink_metadata(dest.join(path)).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (100_000, 100_000), "{path}");
    }
    assert_eq!(
        fs::metadata(dest.join("tmp")).unwrap().mode() & 0o7777,
        0o1777
    );
}

#[test]
fn cached_pulls_once_even_when_asked_twice_at_once() {
    let cache = temp_dir();
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let cache = cache.path().to_path_buf();
            std::thread::spawn(move || rootfs::cached("busybox", &cache))
        })
        .collect();
    let paths: Vec<PathBuf> = threads
        .into_iter()
        .map(|t| t.join().unwrap().unwrap())
        .collect();
    assert_eq!(paths[0], cache.path().join("busybox"));
    assert_eq!(paths[0], paths[1]);
    assert!(paths[0].join("bin/sh").exists());
    assert_no_partial(&paths[0]);
    // A second use is the cache itself.
    let mtime = fs::metadata(&paths[0]).unwrap().modified().unwrap();
    rootfs::cached("busybox", cache.path()).unwrap();
    assert_eq!(fs::metadata(&paths[0]).unwrap().modified().unwrap(), mtime);
}

/// A cache an older engine built (no recipe stamp, or an older one; its
/// /bin/ping the applet's link, no /etc/profile) is built again, once,
/// with the host's iputils ping; a current one is left as it is.
#[test]
fn cached_busybox_built_by_an_older_engine_is_rebuilt() {
    let host_ping = ["/usr/bin/ping", "/bin/ping"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("this test needs the host's iputils ping: apt-get install iputils-ping");
    let cache = temp_dir();
    let tree = rootfs::cached("busybox", cache.path()).unwrap();
    let stamp = cache.path().join(".busybox.recipe");
    assert_eq!(fs::read_to_string(&stamp).unwrap(), "2\n");
    let is_iputils = |tree: &Path| {
        let ping = fs::symlink_metadata(tree.join("bin/ping")).unwrap();
        ping.file_type().is_file() && ping.len() == fs::metadata(host_ping).unwrap().len()
    };
    assert!(is_iputils(&tree));
    assert!(fs::read_to_string(tree.join("etc/profile"))
        .unwrap()
        .contains("ping() { /bin/ping \"$@\"; }"));

    // A current cache is used as it is.
    fs::write(tree.join("etc/kept"), "").unwrap();
    rootfs::cached("busybox", cache.path()).unwrap();
    assert!(
        tree.join("etc/kept").exists(),
        "a current cache was rebuilt"
    );

    for old_stamp in [None, Some("1\n")] {
        // What an engine before the recipe stamp left.
        fs::remove_file(tree.join("bin/ping")).unwrap();
        std::os::unix::fs::symlink("busybox", tree.join("bin/ping")).unwrap();
        fs::remove_file(tree.join("etc/profile")).unwrap();
        match old_stamp {
            None => fs::remove_file(&stamp).unwrap(),
            Some(text) => fs::write(&stamp, text).unwrap(),
        }
        assert_eq!(rootfs::cached("busybox", cache.path()).unwrap(), tree);
        assert!(is_iputils(&tree), "stamp {old_stamp:?}: not rebuilt");
        assert!(tree.join("etc/profile").exists());
        assert!(!tree.join("etc/kept").exists());
        assert_eq!(fs::read_to_string(&stamp).unwrap(), "2\n");
        let names: Vec<String> = fs::read_dir(cache.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        let mut names = names;
        names.sort();
        assert_eq!(names, [".busybox.lock", ".busybox.recipe", "busybox"]);
        fs::write(tree.join("etc/kept"), "").unwrap();
    }
}

#[test]
fn elf_helpers() {
    assert!(["amd64", "arm64"].contains(&engine::sys::arch::host_arch()));
    let host = engine::sys::arch::arch_machine(engine::sys::arch::host_arch()).unwrap();
    let exe = std::env::current_exe().unwrap();
    assert_eq!(engine::sys::arch::elf_machine(&exe).unwrap(), Some(host));
    assert_eq!(
        engine::sys::arch::machine_arch(host),
        Some(engine::sys::arch::host_arch())
    );
    assert_eq!(engine::sys::arch::machine_arch(183), Some("arm64"));
    let dir = temp_dir();
    let text = dir.path().join("script");
    fs::write(&text, "#!/bin/sh\n").unwrap();
    assert_eq!(engine::sys::arch::elf_machine(&text).unwrap(), None);
    let short = dir.path().join("short");
    fs::write(&short, b"\x7fELF\x02\x01").unwrap();
    assert!(
        engine::sys::arch::elf_machine(&short).is_err(),
        "truncated ELF is an error"
    );
    assert!(engine::sys::arch::elf_machine(&dir.path().join("missing")).is_err());
}

// ---------------------------------------------------------------------------
// Ctrl-C: run a pull in a child process (signals are process-wide), interrupt
// it, and check it removed what it had made.

const CHILD_URL: &str = "ENGINE_ROOTFS_TEST_CHILD_URL";
const CHILD_DEST: &str = "ENGINE_ROOTFS_TEST_CHILD_DEST";

#[test]
fn interrupted_pull_leaves_nothing() {
    if let (Some(url), Some(dest)) = (std::env::var_os(CHILD_URL), std::env::var_os(CHILD_DEST)) {
        // The child: a pull that the parent interrupts.
        let result = rootfs::pull(url.to_str().unwrap(), Path::new(&dest), &opts());
        let code = match result {
            Err(rootfs::Error::Interrupted(_)) => 130,
            other => {
                eprintln!("child: unexpected result {other:?}");
                1
            }
        };
        std::process::exit(code);
    }

    let files = temp_dir();
    // Incompressible content, so the download takes many drips.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let noise: Vec<u8> = (0..512 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(noise.len() as u64);
    b.append_data(&mut h, "big.bin", &noise[..]).unwrap();
    fs::write(files.path().join("big.tgz"), gz(&b.into_inner().unwrap())).unwrap();
    let url = format!("{}/slow/big.tgz", serve(files.path()));

    let out = temp_dir();
    let dest = out.path().join("root");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "interrupted_pull_leaves_nothing",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(CHILD_URL, &url)
        .env(CHILD_DEST, &dest)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let partial = out.path().join(format!(".root.partial-{}", child.id()));
    wait::file(&partial.join("big.bin"), Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("the child's pull never started: {e}"));
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let status = wait::child(&mut child, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("the child did not stop after SIGINT: {e}"));
    assert_eq!(status.code(), Some(130), "the pull returned Interrupted");
    assert!(!partial.exists(), "the partial rootfs was removed");
    assert!(!dest.exists());
}
