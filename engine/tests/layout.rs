//! The import rules of docs/architecture.md ("Import rules"), checked on the
//! source: every path the library names (`use crate::…`, `super::…`, and
//! inline `crate::a::b` in code, with `{…}` groups expanded) is read from
//! engine/src, resolved to the file of the module it names, and held to the
//! rules. A failure names the file, the line, the path and the rule broken.
//!
//! Test modules (`#[cfg(test)] mod … { … }`) are not read:
//! what a unit test imports is no part of the layering.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level modules from the top of the layering to its bottom. A module
/// may name its own top-level module and those after it, never one before
/// it or beside it (same rank). The facade (lib.rs, error.rs) may name
/// anything and is named by nothing below it.
const LAYERS: &[(&str, u8)] = &[
    ("oci", 1),
    ("validate", 2),
    ("image", 2),
    ("parent", 2),
    ("child", 3),
    ("model", 4),
    ("sys", 5),
];

/// The facade's files: lib.rs (the crate root, including its inline
/// modules) and error.rs.
const FACADE: &[&str] = &["", "error"];

/// Low-level helpers every `sys` facility may use (everything else in `sys`
/// is a leaf that names no other facility):
/// - `openat`: in-root resolution on fds and fd hygiene, the one place that
///   knows openat2;
/// - `failpoint`: the `step!` macro that marks an injectable failure;
/// - `lock`: the one flock helper;
/// - `caps`: the kernel's capability names and sets, the vocabulary a
///   seccomp profile is written in (docker's JSON names capabilities).
const SYS_SHARED: &[&str] = &["openat", "failpoint", "lock", "caps"];

/// What of `sys` the model may name: kernel vocabulary and pure computation
/// (capability sets, seccomp compilation, the ID pool's arithmetic,
/// interface names and netmasks) and two constants; never a facility that
/// touches the host.
const MODEL_MAY_NAME: &[&str] = &[
    "sys::caps",
    "sys::seccomp",
    "sys::idrange",
    "sys::net::addr",
    "sys::idmap::MAX_FDS",
    "sys::net::dns::FILES",
];

/// Tokens of host access that never appear in the model's code.
const MODEL_NO_IO: &[&str] = &[
    "std::fs",
    "std::process",
    "std::os",
    "TcpStream",
    "TcpListener",
    "UdpSocket",
    "File::",
    "nix::",
    "rustix::",
    "libc::",
];

/// One path a file names.
#[derive(Debug, Clone, PartialEq)]
struct Named {
    line: usize,
    /// As written, e.g. `crate::sys::net::{dns}` expanded to one path.
    text: String,
    /// Absolute segments from the crate root.
    abs: Vec<String>,
}

/// Source with comments, string and char literals blanked out (newlines
/// kept, so line numbers still hold), and test modules cut off.
fn code_of(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    let blank = |out: &mut Vec<u8>, c: u8| out.push(if c == b'\n' { b'\n' } else { b' ' });
    while i < b.len() {
        let c = b[i];
        if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                blank(&mut out, b[i]);
                i += 1;
            }
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                    depth += 1;
                    out.extend_from_slice(b"  ");
                    i += 2;
                } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    out.extend_from_slice(b"  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, b[i]);
                    i += 1;
                }
            }
        } else if c == b'r'
            && (b.get(i + 1) == Some(&b'"') || b.get(i + 1) == Some(&b'#'))
            && (i == 0 || !is_ident(b[i - 1]))
        {
            // A raw string: r"…" or r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&b'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&b'"') {
                out.push(c);
                i += 1;
                continue;
            }
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            let end = src[j + 1..]
                .find(std::str::from_utf8(&close).unwrap())
                .map_or(b.len(), |k| j + 1 + k + close.len());
            for &x in &b[i..end] {
                blank(&mut out, x);
            }
            i = end;
        } else if c == b'"' {
            blank(&mut out, c);
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    blank(&mut out, b[i]);
                    i += 1;
                }
                if i < b.len() {
                    blank(&mut out, b[i]);
                    i += 1;
                }
            }
            if i < b.len() {
                blank(&mut out, b[i]);
                i += 1;
            }
        } else if c == b'\'' {
            // A char literal ('x', '\n', '\u{..}'), or a lifetime.
            let end = if b.get(i + 1) == Some(&b'\\') {
                b[i + 2..]
                    .iter()
                    .position(|&x| x == b'\'')
                    .map(|k| i + 3 + k)
            } else {
                let ch = src[i + 1..].chars().next().map_or(1, char::len_utf8);
                (b.get(i + 1 + ch) == Some(&b'\'')).then_some(i + 2 + ch)
            };
            match end {
                Some(end) => {
                    for &x in &b[i..end] {
                        blank(&mut out, x);
                    }
                    i = end;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    let code = String::from_utf8(out).expect("blanking keeps UTF-8 boundaries");
    without_test_modules(&code)
}

/// `code` with each `#[cfg(test)] mod NAME { … }` blanked (newlines kept).
fn without_test_modules(code: &str) -> String {
    let mut b = code.as_bytes().to_vec();
    let mut from = 0;
    while let Some(at) = code[from..].find("#[cfg(test)]").map(|k| from + k) {
        from = at + 1;
        let rest = code[at + "#[cfg(test)]".len()..].trim_start();
        if !rest.starts_with("mod ") {
            continue;
        }
        let Some(open) = code[at..].find('{').map(|k| at + k) else {
            break;
        };
        let mut depth = 0;
        let mut end = b.len();
        for (i, c) in code.bytes().enumerate().skip(open) {
            match c {
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        for c in &mut b[at..end] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
        from = end;
    }
    String::from_utf8(b).expect("blanking keeps UTF-8 boundaries")
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Reads a path's tail from `code[i..]` (just after a `::`): segments
/// separated by `::`, `{a, b::c}` groups expanded, `*` and `self` kept as
/// segments. Returns each complete path's segments.
fn read_tail(code: &[u8], mut i: usize) -> Vec<Vec<String>> {
    let skip_ws = |i: &mut usize| {
        while *i < code.len() && code[*i].is_ascii_whitespace() {
            *i += 1;
        }
    };
    skip_ws(&mut i);
    if code.get(i) == Some(&b'{') {
        // A group: split on top-level commas.
        let mut depth = 0;
        let mut start = i + 1;
        let mut out = Vec::new();
        let mut j = i;
        while j < code.len() {
            match code[j] {
                b'{' => depth += 1,
                b'}' | b',' if depth == 1 => {
                    let item = &code[start..j];
                    if item.iter().any(|c| !c.is_ascii_whitespace()) {
                        out.extend(read_item(item));
                    }
                    start = j + 1;
                    if code[j] == b'}' {
                        break;
                    }
                }
                b'}' => depth -= 1,
                _ => {}
            }
            j += 1;
        }
        return out;
    }
    let start = i;
    while i < code.len() && (is_ident(code[i]) || code[i] == b'*') {
        i += 1;
    }
    if start == i {
        return Vec::new();
    }
    let seg = String::from_utf8_lossy(&code[start..i]).into_owned();
    let mut j = i;
    skip_ws(&mut j);
    if code.get(j) == Some(&b':') && code.get(j + 1) == Some(&b':') {
        let rest = read_tail(code, j + 2);
        if !rest.is_empty() {
            return rest
                .into_iter()
                .map(|r| std::iter::once(seg.clone()).chain(r).collect())
                .collect();
        }
    }
    vec![vec![seg]]
}

/// One item of a group, e.g. `b::{c, d}` or `Thing as Other`.
fn read_item(item: &[u8]) -> Vec<Vec<String>> {
    let s = String::from_utf8_lossy(item);
    let s = s.split(" as ").next().unwrap_or("").trim().to_string();
    read_tail(s.as_bytes(), 0)
}

/// Every path `code` names from the crate, absolute. `module` is the file's
/// module (`["parent", "run"]`), `children` the modules it declares.
fn named_paths(code: &str, module: &[String], children: &BTreeSet<String>) -> Vec<Named> {
    let b = code.as_bytes();
    let mut out = Vec::new();
    let line_of = |i: usize| code[..i].bytes().filter(|&c| c == b'\n').count() + 1;
    let mut i = 0;
    while i < b.len() {
        let boundary = i == 0 || !(is_ident(b[i - 1]) || b[i - 1] == b'$' || b[i - 1] == b':');
        let rest = &code[i..];
        let root: Option<(usize, Vec<String>)> = if !boundary {
            None
        } else if rest.starts_with("crate::") {
            Some((7, Vec::new()))
        } else if rest.starts_with("super::") {
            Some((7, module[..module.len().saturating_sub(1)].to_vec()))
        } else if rest.starts_with("self::") {
            Some((6, module.to_vec()))
        } else if let Some(after) = rest.strip_prefix("use ") {
            // `use child::…` in a file that declares `mod child`.
            let name: String = after
                .trim_start()
                .bytes()
                .take_while(|&c| is_ident(c))
                .map(char::from)
                .collect();
            let at = after.len() - after.trim_start().len();
            if children.contains(&name) && after[at + name.len()..].starts_with("::") {
                let mut base = module.to_vec();
                base.push(name.clone());
                Some((4 + at + name.len() + 2, base))
            } else {
                None
            }
        } else {
            None
        };
        let Some((skip, base)) = root else {
            i += 1;
            continue;
        };
        let tails = read_tail(b, i + skip);
        let line = line_of(i);
        for tail in tails {
            let tail: Vec<String> = tail.into_iter().filter(|s| s != "self").collect();
            let mut abs = base.clone();
            abs.extend(tail.iter().cloned());
            out.push(Named {
                line,
                text: format!("{}::{}", &rest[..skip - 2], tail.join("::")),
                abs,
            });
        }
        i += skip;
    }
    out
}

struct Source {
    /// Relative to engine/, e.g. `src/parent/run.rs`.
    file: String,
    module: Vec<String>,
    code: String,
}

fn module_of(rel: &Path) -> Vec<String> {
    let mut segs: Vec<String> = rel
        .iter()
        .map(|s| s.to_string_lossy().into_owned())
        .collect();
    let last = segs.pop().unwrap();
    match last.as_str() {
        "lib.rs" | "mod.rs" => {}
        _ => segs.push(last.trim_end_matches(".rs").to_string()),
    }
    segs
}

fn sources() -> Vec<Source> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    let mut dirs = vec![root.join("src")];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let rel = p.strip_prefix(root.join("src")).unwrap();
                // main.rs is the binary, its own crate above the facade.
                if rel == Path::new("main.rs") {
                    continue;
                }
                let src = std::fs::read_to_string(&p).unwrap();
                out.push(Source {
                    file: format!("src/{}", rel.display()),
                    module: module_of(rel),
                    code: code_of(&src),
                });
            }
        }
    }
    out.sort_by(|a, b| a.file.cmp(&b.file));
    out
}

/// The module a path lands in: its longest prefix that is a file's module.
fn target_of<'a>(
    abs: &[String],
    modules: &'a BTreeMap<Vec<String>, String>,
) -> (&'a [String], &'a str) {
    (0..=abs.len())
        .rev()
        .find_map(|n| modules.get_key_value(&abs[..n]))
        .map(|(m, f)| (m.as_slice(), f.as_str()))
        .expect("the crate root is a module")
}

fn top(module: &[String]) -> &str {
    module.first().map_or("", String::as_str)
}

fn rank(top: &str) -> Option<u8> {
    LAYERS.iter().find(|(t, _)| *t == top).map(|(_, r)| *r)
}

/// Why `from` may not name `abs` (landing in `to`), if it may not.
fn broken_rule(from: &[String], abs: &[String], to: &[String]) -> Option<String> {
    let (f, t) = (top(from), top(to));
    if FACADE.contains(&f) {
        return None;
    }
    if FACADE.contains(&t) {
        return Some(format!(
            "nothing below the facade names lib.rs or error.rs (`{f}` is below it; \
             exit codes are `model::exit`)"
        ));
    }
    let (Some(rf), Some(rt)) = (rank(f), rank(t)) else {
        return Some(format!("`{f}` or `{t}` is in no layer of LAYERS"));
    };
    if f != t && rt <= rf {
        return Some(format!(
            "imports point down the layers oci > validate, image, parent > child > model > sys; \
             `{f}` may not name `{t}`"
        ));
    }
    if f == "model" && t == "sys" {
        let path = abs.join("::");
        if !MODEL_MAY_NAME
            .iter()
            .any(|m| path == *m || path.starts_with(&format!("{m}::")))
        {
            return Some(format!(
                "the model names only the pure parts of sys ({}); the description's \
                 types live in model",
                MODEL_MAY_NAME.join(", ")
            ));
        }
    }
    if f == "sys" && t == "sys" {
        let (ff, tf) = (from.get(1), to.get(1));
        if let (Some(ff), Some(tf)) = (ff, tf) {
            if ff != tf && !SYS_SHARED.contains(&tf.as_str()) {
                return Some(format!(
                    "a sys facility is a leaf: `sys::{ff}` may name only itself and the shared \
                     helpers ({}), not `sys::{tf}`",
                    SYS_SHARED.join(", ")
                ));
            }
        }
    }
    None
}

/// Every rule broken, one sentence each.
fn violations(sources: &[Source]) -> Vec<String> {
    let modules: BTreeMap<Vec<String>, String> = sources
        .iter()
        .map(|s| (s.module.clone(), s.file.clone()))
        .collect();
    let mut out = Vec::new();
    // Edges between files of one folder, for the circle check.
    let mut edges: BTreeMap<String, BTreeMap<String, (usize, String)>> = BTreeMap::new();
    for s in sources {
        let children: BTreeSet<String> = modules
            .keys()
            .filter(|m| m.len() == s.module.len() + 1 && m.starts_with(&s.module))
            .map(|m| m.last().unwrap().clone())
            .collect();
        for n in named_paths(&s.code, &s.module, &children) {
            let (to, to_file) = target_of(&n.abs, &modules);
            if let Some(rule) = broken_rule(&s.module, &n.abs, to) {
                out.push(format!("{}:{}: `{}`: {rule}", s.file, n.line, n.text));
            }
            let folder = |f: &str| Path::new(f).parent().map(Path::to_path_buf);
            let root = |f: &str| f.ends_with("/mod.rs") || f == "src/lib.rs";
            if to_file != s.file
                && folder(to_file) == folder(&s.file)
                && !root(&s.file)
                && !root(to_file)
            {
                edges
                    .entry(s.file.clone())
                    .or_default()
                    .entry(to_file.to_string())
                    .or_insert((n.line, n.text.clone()));
            }
        }
        if top(&s.module) == "model" {
            for (n, l) in s.code.lines().enumerate() {
                for token in MODEL_NO_IO {
                    if l.contains(token) {
                        out.push(format!(
                            "{}:{}: `{token}`: the model does no I/O (host access belongs in \
                             validate, parent or sys)",
                            s.file,
                            n + 1
                        ));
                    }
                }
            }
        }
    }
    out.extend(circles(&edges));
    out
}

/// One sentence per circle among files of one folder. A folder's mod.rs
/// (and lib.rs) is not among them: it declares and drives its files, and
/// what it defines is the folder's shared vocabulary.
fn circles(edges: &BTreeMap<String, BTreeMap<String, (usize, String)>>) -> Vec<String> {
    let mut out = Vec::new();
    let mut seen: BTreeSet<Vec<String>> = BTreeSet::new();
    for start in edges.keys() {
        // Depth-first from each file, looking for a way back to it.
        let mut stack: Vec<(String, Vec<String>)> = vec![(start.clone(), vec![start.clone()])];
        let mut visited = BTreeSet::new();
        while let Some((at, path)) = stack.pop() {
            for next in edges.get(&at).into_iter().flat_map(|e| e.keys()) {
                if next == start {
                    let mut key = path.clone();
                    key.sort();
                    if seen.insert(key) {
                        let steps: Vec<String> = path
                            .iter()
                            .zip(path.iter().skip(1).chain(std::iter::once(start)))
                            .map(|(a, b)| {
                                let (line, text) = &edges[a][b];
                                format!("{a}:{line} names `{text}`")
                            })
                            .collect();
                        out.push(format!(
                            "{start}: files of one folder import each other in a circle \
                             (move the shared piece to the file it belongs to): {}",
                            steps.join("; ")
                        ));
                    }
                } else if visited.insert(next.clone()) {
                    let mut p = path.clone();
                    p.push(next.clone());
                    stack.push((next.clone(), p));
                }
            }
        }
    }
    out
}

#[test]
fn imports_follow_the_rules_of_docs_architecture() {
    let sources = sources();
    assert!(sources.len() > 50, "engine/src was read");
    let broken = violations(&sources);
    assert!(
        broken.is_empty(),
        "{} import(s) break the rules of docs/architecture.md (Import rules):\n{}",
        broken.len(),
        broken.join("\n")
    );
}

#[cfg(test)]
mod parser {
    use super::*;

    fn paths(code: &str, module: &[&str]) -> Vec<String> {
        let module: Vec<String> = module.iter().map(|s| s.to_string()).collect();
        let children = BTreeSet::from(["run".to_string()]);
        named_paths(&code_of(code), &module, &children)
            .into_iter()
            .map(|n| format!("{}:{}", n.line, n.abs.join("::")))
            .collect()
    }

    #[test]
    fn reads_use_groups_inline_paths_super_and_children() {
        let code = "use crate::sys::{caps::{Cap, CapSet}, lock};\nuse std::fs;\n\
                    fn f() { crate::model::exit::ENGINE_ERROR; super::pipe(); }\n\
                    pub use run::run_with as go;\n";
        assert_eq!(
            paths(code, &["parent", "host"]),
            [
                "1:sys::caps::Cap",
                "1:sys::caps::CapSet",
                "1:sys::lock",
                "3:model::exit::ENGINE_ERROR",
                "3:parent::pipe",
                "4:parent::host::run::run_with",
            ]
        );
    }

    #[test]
    fn skips_comments_strings_macros_and_tests() {
        let code = "// crate::a\n/// `crate::b`\nconst S: &str = \"crate::c\";\n\
                    const R: &str = r#\"crate::d\"#;\nconst C: char = '\"'; fn g<'a>() {}\n\
                    macro_rules! m { () => { $crate::e::f() } }\n\
                    #[cfg(test)]\nmod tests {\n    use crate::g;\n}\n\
                    fn after() { crate::h::i(); }\n";
        assert_eq!(paths(code, &["sys", "x"]), ["11:h::i"]);
    }

    #[test]
    fn finds_a_circle_and_names_each_step() {
        let mut edges: BTreeMap<String, BTreeMap<String, (usize, String)>> = BTreeMap::new();
        for (a, b) in [
            ("p/a.rs", "p/b.rs"),
            ("p/b.rs", "p/c.rs"),
            ("p/c.rs", "p/a.rs"),
        ] {
            edges
                .entry(a.into())
                .or_default()
                .insert(b.into(), (7, format!("crate::{b}")));
        }
        let found = circles(&edges);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].contains("p/c.rs:7 names `crate::p/a.rs`"),
            "{}",
            found[0]
        );
    }

    #[test]
    fn each_rule_refuses_its_import() {
        let m = |s: &str| s.split("::").map(String::from).collect::<Vec<_>>();
        let refused = |from: &str, abs: &str, to: &str| broken_rule(&m(from), &m(abs), &m(to));
        assert!(refused("sys::hook", "model::oci::Hook", "model::oci").is_some());
        assert!(refused("sys::state", "sys::net::nat::PortMapping", "sys::net::nat").is_some());
        assert!(refused("sys::hook", "sys::openat::f", "sys::openat").is_none());
        assert!(refused("model::spec", "image::is_catalog_name", "image").is_some());
        assert!(refused(
            "model::ports",
            "sys::net::nat::PortMapping",
            "sys::net::nat"
        )
        .is_some());
        assert!(refused("model::security", "sys::caps::CapSet", "sys::caps").is_none());
        assert!(refused("parent::run", "exit::ENGINE_ERROR", "").is_some());
        assert!(refused("parent::run", "error::Error", "error").is_some());
        assert!(refused("validate", "parent::run", "parent::run").is_some());
        assert!(refused("oci::exec", "parent::exec", "parent::exec").is_none());
        assert!(refused("error", "parent::Error", "parent").is_none());
    }
}
