//! The unpacker under generated hostile tarballs (issue 13): `..` and
//! absolute names, symlink chains and symlinks climbing out, hardlinks to
//! symlinks, a symlink then a file or directory of the same name, device
//! nodes and fifos, GNU and PAX long names, truncated and corrupt streams,
//! wrong compression; pulled with `--owner` and without. After each pull,
//! whether it succeeded or not: no file outside DEST changed (a sentinel tree
//! beside DEST and one beside its parent, snapshotted before and compared
//! after: modes, owners, link counts, contents, mtimes and ctimes), nothing is
//! left beside DEST, and no panic. Runs as root (chown needs it).
//!
//! 96 cases by default (about 2 s); `PROPTEST_CASES=5000 cargo test -p engine
//! --test unpack_props` runs it as a longer fuzzing session.

use engine::image::{self, PullOptions};
use proptest::prelude::*;
use std::fs;
use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use testkit::tarball::{gzip, raw_archive, xz, EntryType, LongNames, RawEntry, Snapshot};

/// Shifted base of `--owner`; the second one makes high archive ids overflow.
const OWNERS: [Option<u32>; 3] = [None, Some(100_000), Some(u32::MAX - 70_000)];

/// Path components an archive name is made of: names that recur (so links
/// chain and later entries land on earlier ones), `..`, `.`, a long one.
fn component() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => prop::sample::select(vec!["a", "b", "l", "d", "f"]).prop_map(String::from),
        1 => Just("..".to_string()),
        1 => Just(".".to_string()),
        1 => Just("x".repeat(120)),
    ]
}

/// `[/|./]COMPONENT/...[/]`.
fn name() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!["", "", "", "/", "./"]),
        prop::collection::vec(component(), 1..4),
        any::<bool>(),
    )
        .prop_map(|(lead, parts, trailing)| {
            format!(
                "{lead}{}{}",
                parts.join("/"),
                if trailing { "/" } else { "" }
            )
        })
}

/// A link target, with `@T@` standing for the test's directory (known only at
/// run time): another archive name, a climb of N levels, or a host path.
fn target() -> impl Strategy<Value = String> {
    let into_sentinels = vec![
        "work/sentinel",
        "work/sentinel/f",
        "work/sentinel/d",
        "outer",
        "work/sentinel/s",
        "work",
        "outer/f",
        "outer/d",
        "",
    ];
    prop_oneof![
        3 => name(),
        3 => (0..7usize, prop::sample::select(into_sentinels.clone()))
            .prop_map(|(up, to)| format!("{}{to}", "../".repeat(up))),
        3 => prop::sample::select(into_sentinels).prop_map(|to| format!("@T@/{to}")),
        1 => Just(String::new()),
    ]
}

fn kind() -> impl Strategy<Value = EntryType> {
    prop::sample::select(vec![
        EntryType::Regular,
        EntryType::Regular,
        EntryType::Directory,
        EntryType::Directory,
        EntryType::Symlink,
        EntryType::Symlink,
        EntryType::Link,
        EntryType::Link,
        EntryType::Char,
        EntryType::Block,
        EntryType::Fifo,
        EntryType::XGlobalHeader,
    ])
}

/// An entry and a few more at the same name (replacing it) or under it
/// (through it, when it is a symlink), each with a kind and target of its own.
fn group() -> impl Strategy<Value = Vec<RawEntry>> {
    (
        entry(),
        any::<bool>(),
        prop::collection::vec(
            (
                entry(),
                prop::option::of(prop::collection::vec(component(), 1..3)),
            ),
            0..4,
        ),
    )
        .prop_map(|(mut first, link_first, more)| {
            // Half the groups start with a symlink, so that what follows
            // goes through it.
            if link_first {
                first.kind = EntryType::Symlink;
            }
            let base = first.path.clone();
            let mut group = vec![first];
            for (mut e, under) in more {
                e.path = match under {
                    None => base.clone(),
                    Some(names) => [&base[..], b"/", names.join("/").as_bytes()].concat(),
                };
                group.push(e);
            }
            group
        })
}

/// A symlink `a` to a host path (absolute, climbing, or in the archive),
/// `c` a symlink to `a` and `e` one to `c/d` (a chain), then entries and
/// hardlinks whose names go through them: the archive's attempt to reach
/// the sentinel trees.
fn through_symlinks() -> impl Strategy<Value = Vec<RawEntry>> {
    let head = || prop::sample::select(vec!["a", "c", "e", "./a/", "/c"]);
    let below = || {
        prop::collection::vec(
            prop::sample::select(vec!["d", "d", "g", "f", "s", "x"]),
            1..4,
        )
    };
    // Directories that hold a `d`: the sentinel trees, by absolute path or
    // climbing from DEST's staging directory; or any target at all.
    let to = prop_oneof![
        3 => prop::sample::select(vec![
            "@T@/work/sentinel",
            "@T@/outer",
            "../sentinel",
            "../../outer",
            "../../work/sentinel",
        ])
        .prop_map(String::from),
        1 => target(),
    ];
    (
        to,
        prop::collection::vec((entry(), head(), below(), head(), below()), 1..4),
    )
        .prop_map(|(to, rest)| {
            let link = |path: &str, to: &str| RawEntry {
                kind: EntryType::Symlink,
                path: path.into(),
                link: to.into(),
                mode: 0o777,
                uid: 0,
                gid: 0,
                mtime: 1,
                data: Vec::new(),
            };
            let mut entries = vec![link("a", &to), link("c", "a"), link("e", "c/d")];
            for (mut e, head, below, link_head, link_below) in rest {
                e.path = format!("{head}/{}", below.join("/")).into_bytes();
                if e.kind == EntryType::Link {
                    e.link = format!("{link_head}/{}", link_below.join("/")).into_bytes();
                }
                entries.push(e);
            }
            entries
        })
}

fn entry() -> impl Strategy<Value = RawEntry> {
    (
        kind(),
        name(),
        target(),
        prop::sample::select(vec![0o644, 0o755, 0o7777, 0o4755, 0o000]),
        prop_oneof![
            8 => prop::sample::select(vec![0u64, 1, 1000, 65_535]),
            1 => prop::sample::select(vec![70_000, u64::from(u32::MAX)]),
        ],
        prop::collection::vec(any::<u8>(), 0..24),
    )
        .prop_map(|(kind, path, link, mode, id, data)| {
            let carries_data = matches!(kind, EntryType::Regular | EntryType::XGlobalHeader);
            RawEntry {
                kind,
                path: path.into_bytes(),
                link: link.into_bytes(),
                mode,
                uid: id,
                gid: id,
                mtime: 1_000_000_000,
                data: if carries_data { data } else { Vec::new() },
            }
        })
}

#[derive(Debug, Clone, Copy)]
enum Encoding {
    Plain,
    Gzip,
    Xz,
    /// xz's magic bytes in front of a gzip stream.
    XzMagicOnGzip,
    /// gzip's magic bytes in front of a plain tar.
    GzipMagicOnTar,
    /// zstd's magic: refused as unsupported.
    Zstd,
}

#[derive(Debug, Clone, Copy)]
enum Damage {
    None,
    /// Cut at this fraction of the length.
    Truncate(f64),
    /// Flip one bit at this fraction of the length.
    Flip(f64, u8),
}

fn encoding() -> impl Strategy<Value = Encoding> {
    prop_oneof![
        12 => Just(Encoding::Plain),
        3 => Just(Encoding::Gzip),
        3 => Just(Encoding::Xz),
        1 => Just(Encoding::XzMagicOnGzip),
        1 => Just(Encoding::GzipMagicOnTar),
        1 => Just(Encoding::Zstd),
    ]
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        8 => Just(Damage::None),
        1 => (0.0..1.0f64).prop_map(Damage::Truncate),
        1 => (0.0..1.0f64, 0..8u8).prop_map(|(at, bit)| Damage::Flip(at, bit)),
    ]
}

fn encode(tar: &[u8], encoding: Encoding, damage: Damage) -> Vec<u8> {
    let mut bytes = match encoding {
        Encoding::Plain => tar.to_vec(),
        Encoding::Gzip => gzip(tar),
        Encoding::Xz => xz(tar),
        Encoding::XzMagicOnGzip => [&b"\xfd7zXZ\0"[..], &gzip(tar)].concat(),
        Encoding::GzipMagicOnTar => [&b"\x1f\x8b"[..], tar].concat(),
        Encoding::Zstd => [&b"\x28\xb5\x2f\xfd"[..], tar].concat(),
    };
    let at = |f: f64| ((bytes.len() as f64 * f) as usize).min(bytes.len().saturating_sub(1));
    match damage {
        Damage::None => {}
        Damage::Truncate(f) => bytes.truncate(at(f)),
        Damage::Flip(f, bit) => {
            let i = at(f);
            bytes[i] ^= 1 << bit;
        }
    }
    bytes
}

/// The tree no pull may touch: a root-owned-but-not-by-0 file (0600), a
/// 0700 directory with a file in it, a symlink. Owned by 1234 so that a
/// chown to any id shows.
fn sentinel_tree(dir: &Path) {
    fs::create_dir(dir).unwrap();
    fs::write(dir.join("f"), "host secret\n").unwrap();
    fs::create_dir(dir.join("d")).unwrap();
    fs::write(dir.join("d/g"), "host file in a host dir\n").unwrap();
    symlink("f", dir.join("s")).unwrap();
    for (path, mode) in [("f", 0o600), ("d/g", 0o640), ("d", 0o700), ("", 0o750)] {
        fs::set_permissions(dir.join(path), fs::Permissions::from_mode(mode)).unwrap();
    }
    for path in ["f", "d/g", "d", "s", ""] {
        std::os::unix::fs::lchown(dir.join(path), Some(1234), Some(1234)).unwrap();
    }
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Every inode under `dir`, `dir` included, with its metadata.
fn each_inode(dir: &Path, f: &mut impl FnMut(&Path, &fs::Metadata)) {
    let meta = fs::symlink_metadata(dir).unwrap();
    f(dir, &meta);
    if meta.is_dir() {
        for e in fs::read_dir(dir).unwrap() {
            each_inode(&e.unwrap().path(), f);
        }
    }
}

/// Pulls the archive into T/work/dest with sentinel trees at T/work/sentinel
/// and T/outer, then checks what must hold whatever the outcome.
fn pull_and_check(
    entries: &[RawEntry],
    long: LongNames,
    encoding: Encoding,
    damage: Damage,
    owner: Option<u32>,
) -> Result<(), TestCaseError> {
    let t = tempfile::tempdir().unwrap();
    let t_path = t.path().to_str().unwrap().as_bytes().to_vec();
    let work = t.path().join("work");
    fs::create_dir(&work).unwrap();
    sentinel_tree(&work.join("sentinel"));
    sentinel_tree(&t.path().join("outer"));
    let dest = work.join("dest");
    let resolved: Vec<RawEntry> = entries
        .iter()
        .map(|e| {
            let mut e = e.clone();
            if let Some(rest) = e.link.strip_prefix(b"@T@") {
                e.link = [&t_path[..], rest].concat();
            }
            e
        })
        .collect();
    let archive = encode(&raw_archive(&resolved, long), encoding, damage);
    let src = tempfile::tempdir().unwrap();
    let tarball = src.path().join("evil.tar");
    fs::write(&tarball, archive).unwrap();

    let stat = |p: &Path| {
        fs::metadata(p)
            .map(|m| (m.mode(), m.uid(), m.gid()))
            .unwrap()
    };
    let before = (
        Snapshot::take(&work.join("sentinel")),
        Snapshot::take(&t.path().join("outer")),
        stat(t.path()),
        stat(&work),
    );
    let opts = PullOptions {
        owner,
        ..PullOptions::default()
    };
    let result = image::pull(&format!("file://{}", tarball.display()), &dest, &opts);

    Snapshot::take(&work.join("sentinel"))
        .assert_same_as(&before.0, "the tree beside DEST changed");
    Snapshot::take(&t.path().join("outer"))
        .assert_same_as(&before.1, "the tree beside DEST's parent changed");
    prop_assert_eq!(
        (stat(t.path()), stat(&work)),
        (before.2, before.3),
        "DEST's parents changed"
    );
    prop_assert_eq!(names_in(t.path()), ["outer", "work"]);
    let beside = names_in(&work);
    match &result {
        Ok(()) => prop_assert_eq!(beside, ["dest", "sentinel"]),
        Err(_) => prop_assert_eq!(beside, ["sentinel"], "a failed pull left something"),
    }
    if result.is_ok() {
        let mut bad = Vec::new();
        each_inode(&dest, &mut |path, meta| {
            let kind = meta.file_type();
            if kind.is_char_device() || kind.is_block_device() || kind.is_fifo() {
                bad.push(format!("{} is a device node or fifo", path.display()));
            }
            if let Some(base) = owner {
                if meta.uid() < base || meta.gid() < base {
                    bad.push(format!(
                        "{} is owned by {}:{}, below --owner {base}",
                        path.display(),
                        meta.uid(),
                        meta.gid()
                    ));
                }
            }
        });
        prop_assert!(bad.is_empty(), "{}", bad.join("\n"));
    }
    Ok(())
}

proptest! {
    #![proptest_config(testkit::props::config(96))]

    #[test]
    fn hostile_tarballs_never_touch_the_host(
        groups in prop::collection::vec(group(), 1..5),
        pax in any::<bool>(),
        encoding in encoding(),
        damage in damage(),
        owner in prop::sample::select(OWNERS.to_vec()),
    ) {
        let entries: Vec<RawEntry> = groups.concat();
        let long = if pax { LongNames::Pax } else { LongNames::Gnu };
        pull_and_check(&entries, long, encoding, damage, owner)?;
    }

    #[test]
    fn nothing_reaches_through_a_symlink(
        entries in through_symlinks(),
        owner in prop::sample::select(OWNERS[..2].to_vec()),
    ) {
        pull_and_check(&entries, LongNames::Gnu, Encoding::Plain, Damage::None, owner)?;
    }
}
