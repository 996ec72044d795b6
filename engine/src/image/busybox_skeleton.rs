//! The skeleton of a busybox rootfs: its directories and their modes, and
//! its files under etc/. Plain data and std only, because testkit's busybox
//! fixture includes this file by path: the fixture then has the layout
//! `engine rootfs pull busybox` makes, without testkit (a dependency of the
//! vm crate) depending on the engine.

/// The directories below the root, with their modes.
pub const DIRS: [(&str, u32); 10] = [
    ("bin", 0o755),
    ("dev", 0o755),
    ("etc", 0o755),
    ("proc", 0o555),
    ("root", 0o700),
    ("run", 0o755),
    ("sys", 0o555),
    ("tmp", 0o1777),
    ("var", 0o755),
    ("var/tmp", 0o1777),
];

/// The files under etc/ and their text; `label` is what os-release's
/// PRETTY_NAME says in brackets after "BusyBox".
pub fn etc_files(label: &str) -> [(&'static str, String); 5] {
    [
        (
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
                .into(),
        ),
        ("etc/group", "root:x:0:\nnogroup:x:65534:\n".into()),
        ("etc/hostname", "busybox\n".into()),
        ("etc/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost\n".into()),
        (
            "etc/os-release",
            format!("NAME=\"BusyBox\"\nID=busybox\nPRETTY_NAME=\"BusyBox ({label})\"\n"),
        ),
    ]
}
