//! Hostile tarballs pulled with `--owner` (issue 14, item 5): the unpack and
//! the ownership shift must never change a file outside DEST, whatever the
//! archive's symlinks and hardlinks point at. Runs as root (chown needs it).

use engine::image::{self, PullOptions};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use testkit::tarball::header;

const SENTINEL: &[u8] = b"host secret\n";
const BASE: u32 = 100_000;

/// A symlink whose target climbs far above any DEST to `host_path`.
fn climbing_target(host_path: &Path) -> String {
    let rel = host_path.strip_prefix("/").unwrap();
    format!("{}{}", "../".repeat(64), rel.display())
}

/// Writes the archive to `dir/evil.tar` and pulls it into `dir/dest` with
/// `--owner BASE`; returns the pull's result.
fn pull_archive(dir: &Path, archive: Vec<u8>) -> Result<(), image::Error> {
    let tarball = dir.join("evil.tar");
    fs::write(&tarball, archive).unwrap();
    let opts = PullOptions {
        owner: Some(BASE),
        ..PullOptions::default()
    };
    image::pull(
        &format!("file://{}", tarball.display()),
        &dir.join("dest"),
        &opts,
    )
}

/// A host file (0600, root) that no pull may touch.
fn sentinel_file(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("sentinel");
    fs::write(&path, SENTINEL).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    path
}

fn assert_untouched(path: &Path, mode: u32) {
    let meta = fs::symlink_metadata(path).unwrap();
    assert_eq!(
        meta.mode() & 0o7777,
        mode,
        "{} had its mode changed through the archive",
        path.display()
    );
    assert_eq!(
        (meta.uid(), meta.gid()),
        (0, 0),
        "{} had its owner changed through the archive",
        path.display()
    );
    if meta.is_file() {
        assert_eq!(fs::read(path).unwrap(), SENTINEL, "{}", path.display());
    }
}

/// The reported attack. A relative symlink resolves from the directory of the
/// name it is reached by. `deep/.../escape` (16 levels) points 16 levels up,
/// then down to a decoy inside DEST, so the unpacker's check that a hardlink
/// source stays inside DEST passes. The hardlink `hard` (mode 06777) to that
/// symlink sits at the top, where the same 16 levels up climb to the host's
/// `/` and the path lands on the host sentinel: the old shift chmodded `hard`
/// by path, following the symlink there.
#[test]
fn hardlink_to_escaping_symlink_cannot_chmod_a_host_file() {
    const DEPTH: usize = 16;
    let outside = tempfile::tempdir().unwrap();
    let sentinel = sentinel_file(outside.path());
    let sentinel_rel = sentinel.strip_prefix("/").unwrap();
    let work = tempfile::tempdir().unwrap();
    assert!(
        work.path().components().count() < DEPTH,
        "the test's tempdir is too deep for {DEPTH} levels to reach /"
    );

    let mut b = tar::Builder::new(Vec::new());
    let mut decoy = header(tar::EntryType::Regular, 0o644);
    decoy.set_size(5);
    b.append_data(&mut decoy, sentinel_rel, &b"decoy"[..])
        .unwrap();
    let deep = "d/".repeat(DEPTH);
    let target = format!("{}{}", "../".repeat(DEPTH), sentinel_rel.display());
    let mut link = header(tar::EntryType::Symlink, 0o777);
    b.append_link(&mut link, format!("{deep}escape"), &target)
        .unwrap();
    let mut hard = header(tar::EntryType::Link, 0o6777);
    b.append_link(&mut hard, "hard", format!("{deep}escape"))
        .unwrap();
    let result = pull_archive(work.path(), b.into_inner().unwrap());

    assert_untouched(&sentinel, 0o600);
    // Refusing the archive is fine too; if it was unpacked, `hard` is the
    // in-tree symlink, owned by BASE, and the decoy kept its own mode.
    if result.is_ok() {
        let dest = work.path().join("dest");
        let meta = fs::symlink_metadata(dest.join("hard")).unwrap();
        assert!(meta.file_type().is_symlink());
        assert_eq!((meta.uid(), meta.gid()), (BASE, BASE));
        let decoy = fs::symlink_metadata(dest.join(sentinel_rel)).unwrap();
        assert_eq!(decoy.mode() & 0o7777, 0o644);
    }
}

/// A symlink `d` to a host directory, then a directory entry `d/` (mode 0777)
/// and a file `d/f`: neither may reach through the symlink.
#[test]
fn directory_entry_over_escaping_symlink_cannot_chmod_a_host_dir() {
    let outside = tempfile::tempdir().unwrap();
    let host_dir = outside.path().join("hostdir");
    fs::create_dir(&host_dir).unwrap();
    fs::set_permissions(&host_dir, fs::Permissions::from_mode(0o700)).unwrap();
    let work = tempfile::tempdir().unwrap();

    let mut b = tar::Builder::new(Vec::new());
    let mut link = header(tar::EntryType::Symlink, 0o777);
    b.append_link(&mut link, "d", climbing_target(&host_dir))
        .unwrap();
    let mut dir = header(tar::EntryType::Directory, 0o7777);
    b.append_data(&mut dir, "d/", &[][..]).unwrap();
    let mut file = header(tar::EntryType::Regular, 0o6777);
    file.set_size(4);
    b.append_data(&mut file, "d/f", &b"evil"[..]).unwrap();
    // Refused today ("File exists"); either way nothing may leak out.
    let _ = pull_archive(work.path(), b.into_inner().unwrap());

    assert_untouched(&host_dir, 0o700);
    assert!(
        !host_dir.join("f").exists(),
        "a file was written through the symlink into the host directory"
    );
}
