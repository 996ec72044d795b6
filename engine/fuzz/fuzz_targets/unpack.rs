//! The rootfs unpacker on arbitrary bytes (plain, gzip or xz tar, sniffed
//! as `engine rootfs pull` does), with `--owner` or without by the first
//! byte. Whatever the bytes: no panic, no file beside DEST changed, nothing
//! left beside DEST after a failure. Runs as root (the pull chowns).

#![no_main]

use engine::image::{self, PullOptions};
use libfuzzer_sys::fuzz_target;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, archive)) = data.split_first() else {
        return;
    };
    let owner = (flags & 1 == 1).then_some(100_000);
    let t = tempfile::tempdir().unwrap();
    let sentinel = t.path().join("sentinel");
    fs::write(&sentinel, "host secret\n").unwrap();
    fs::set_permissions(&sentinel, fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::lchown(&sentinel, Some(1234), Some(1234)).unwrap();
    let tarball = t.path().join("in.tar");
    fs::write(&tarball, archive).unwrap();
    let stat = |m: fs::Metadata| {
        (
            m.mode(),
            m.uid(),
            m.gid(),
            m.nlink(),
            m.ctime(),
            m.ctime_nsec(),
        )
    };
    let before = stat(fs::symlink_metadata(&sentinel).unwrap());
    let opts = PullOptions {
        owner,
        ..PullOptions::default()
    };
    let dest = t.path().join("dest");
    let result = image::pull(&format!("file://{}", tarball.display()), &dest, &opts);
    assert_eq!(
        stat(fs::symlink_metadata(&sentinel).unwrap()),
        before,
        "the file beside DEST changed"
    );
    assert_eq!(fs::read(&sentinel).unwrap(), b"host secret\n");
    let mut names: Vec<_> = fs::read_dir(t.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let expected: &[&str] = if result.is_ok() {
        &["dest", "in.tar", "sentinel"]
    } else {
        &["in.tar", "sentinel"]
    };
    assert_eq!(names, expected, "{result:?}");
});
