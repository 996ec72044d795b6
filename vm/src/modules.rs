//! Picks the kernel modules the guest needs from a kernel's module tree and
//! orders them so that busybox `insmod` (which does not resolve dependencies)
//! can load them one by one.

use anyhow::{bail, Context, Result};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// How long modinfo or a decompressor may take for one module.
const TOOL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// What the guest needs, by module name. Their dependencies are added.
/// Any of them may be built into a given kernel, or missing: both are fine.
pub const WANTED: &[&str] = &[
    "virtio_pci",     // the PCI transport of every device below
    "virtio_console", // virtio-serial: the command's output and exit status
    "virtio_rng",     // entropy, so early getrandom() does not block
    "9pnet_virtio",   // the shared root and directories
    "9p",
    "overlay", // container root filesystems
    "bridge",  // container networking
    "veth",
    "tun",
    // the engine's nftables table: NAT chains, masquerade, DNAT, conntrack,
    // fib. libcrc32c (their dependency) asks the crypto API for crc32c, which
    // would be loaded by modprobe (a soft dependency): load it first.
    "crc32c_generic",
    "nf_tables",
    "nft_chain_nat",
    "nft_nat",
    "nft_masq",
    "nft_ct",
    "nft_fib_inet",
    // CNI's bridge (ipMasq) and portmap plugins, for the cri scenario: they
    // write iptables rules, which iptables-nft makes with nft_compat and the
    // xtables matches and targets below.
    "nft_compat",
    "xt_comment",
    "xt_MASQUERADE",
    "xt_mark",
    "xt_addrtype",
    "xt_multiport",
    "xt_conntrack",
    "xt_nat",
    "xt_tcpudp",
];

/// A module to load: its name and its file (maybe compressed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    pub name: String,
    pub path: PathBuf,
}

/// Module names use `_` and `-` interchangeably; the kernel treats them alike.
fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// The module name of a file such as `virtio-rng.ko.xz`.
fn module_name(file_name: &str) -> Option<String> {
    let stem = file_name
        .strip_suffix(".ko")
        .or_else(|| file_name.strip_suffix(".ko.xz"))
        .or_else(|| file_name.strip_suffix(".ko.zst"))
        .or_else(|| file_name.strip_suffix(".ko.gz"))?;
    Some(normalize(stem))
}

/// Every module file under `dir` (a kernel's `lib/modules/<version>`), by name.
fn index(dir: &Path) -> Result<HashMap<String, PathBuf>> {
    let mut found = HashMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).with_context(|| format!("read {}", d.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("read {}", d.display()))?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                stack.push(path);
            } else if let Some(name) = entry.file_name().to_str().and_then(module_name) {
                found.insert(name, path);
            }
        }
    }
    Ok(found)
}

/// Names of the modules built into the kernel (`modules.builtin`).
fn builtin(dir: &Path) -> HashSet<String> {
    std::fs::read_to_string(dir.join("modules.builtin"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.rsplit('/').next().and_then(module_name))
        .collect()
}

/// The direct dependencies of a module file, as `modinfo -F depends` tells.
fn depends(path: &Path) -> Result<Vec<String>> {
    let out = testkit::wait::output(
        Command::new("modinfo").args(["-F", "depends"]).arg(path),
        TOOL_TIMEOUT,
    )
    .map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            anyhow::anyhow!("modinfo not found: apt-get install kmod")
        }
        _ => anyhow::anyhow!("run modinfo: {e}"),
    })?;
    if !out.status.success() {
        bail!(
            "modinfo {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .split([',', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(normalize)
        .collect())
}

/// Orders `wanted` and their dependencies so that each module comes after
/// the ones it depends on. `lookup` says where a module is: `Some(deps)` for
/// a loadable module, `None` for one that is built in or absent (skipped).
pub fn order(
    wanted: &[&str],
    mut lookup: impl FnMut(&str) -> Result<Option<Vec<String>>>,
) -> Result<Vec<String>> {
    let mut done = Vec::new();
    let mut seen = HashSet::new();
    // Iterative depth-first post-order; `seen` also breaks (invalid) cycles.
    for &root in wanted {
        let root = normalize(root);
        if !seen.insert(root.clone()) {
            continue;
        }
        let Some(deps) = lookup(&root)? else { continue };
        let mut stack = vec![(root, deps.into_iter())];
        while let Some((name, deps)) = stack.last_mut() {
            match deps.next() {
                Some(dep) => {
                    if seen.insert(dep.clone()) {
                        if let Some(sub) = lookup(&dep)? {
                            stack.push((dep, sub.into_iter()));
                        }
                    }
                }
                None => {
                    done.push(name.clone());
                    stack.pop();
                }
            }
        }
    }
    Ok(done)
}

/// The modules to load from `dir` (a kernel's `lib/modules/<version>`), in
/// load order, and the wanted names that are neither there nor built in.
pub fn resolve(dir: &Path) -> Result<(Vec<Module>, Vec<String>)> {
    let files = index(dir)?;
    let builtin = builtin(dir);
    let mut missing = Vec::new();
    let names = order(WANTED, |name| match files.get(name) {
        Some(path) => depends(path).map(Some),
        None => {
            if !builtin.contains(name) {
                missing.push(name.to_string());
            }
            Ok(None)
        }
    })?;
    let modules = names
        .into_iter()
        .map(|name| Module {
            path: files[&name].clone(),
            name,
        })
        .collect();
    Ok((modules, missing))
}

/// The module's ELF bytes: busybox insmod cannot load compressed modules.
pub fn read_uncompressed(path: &Path) -> Result<Vec<u8>> {
    let name = path.to_string_lossy();
    let tool = if name.ends_with(".xz") {
        "xz"
    } else if name.ends_with(".zst") {
        "zstd"
    } else if name.ends_with(".gz") {
        "gzip"
    } else {
        return std::fs::read(path).with_context(|| format!("read {}", path.display()));
    };
    let out = testkit::wait::output(Command::new(tool).arg("-dc").arg(path), TOOL_TIMEOUT)
        .with_context(|| format!("run {tool} to decompress {}", path.display()))?;
    if !out.status.success() {
        bail!(
            "{tool} -dc {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(&str, &[&str])]) -> HashMap<String, Vec<String>> {
        edges
            .iter()
            .map(|(n, d)| (n.to_string(), d.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    #[test]
    fn dependencies_come_first_and_once() {
        // The real shape of Debian 12's amd64 kernel.
        let g = graph(&[
            ("virtio_ring", &[]),
            ("virtio", &[]),
            ("virtio_pci_modern_dev", &[]),
            ("virtio_pci_legacy_dev", &[]),
            (
                "virtio_pci",
                &[
                    "virtio_ring",
                    "virtio_pci_modern_dev",
                    "virtio_pci_legacy_dev",
                    "virtio",
                ],
            ),
            ("9pnet", &[]),
            ("netfs", &[]),
            ("fscache", &["netfs"]),
            ("9pnet_virtio", &["virtio", "9pnet", "virtio_ring"]),
            ("9p", &["9pnet", "fscache", "netfs"]),
            ("llc", &[]),
            ("stp", &["llc"]),
            ("bridge", &["llc", "stp"]),
        ]);
        let got = order(&["virtio_pci", "9pnet_virtio", "9p", "bridge"], |n| {
            Ok(g.get(n).cloned())
        })
        .unwrap();
        let pos = |n: &str| got.iter().position(|x| x == n).unwrap();
        for (name, deps) in &g {
            for d in deps {
                assert!(pos(d) < pos(name), "{d} before {name} in {got:?}");
            }
        }
        let unique: HashSet<_> = got.iter().collect();
        assert_eq!(unique.len(), got.len(), "no duplicates in {got:?}");
        assert_eq!(got.len(), g.len());
    }

    #[test]
    fn built_in_or_absent_modules_are_skipped() {
        // On arm64, virtio and virtio_ring are built in.
        let g = graph(&[("virtio_console", &["virtio", "virtio_ring"])]);
        let got = order(&["virtio_console", "nonexistent"], |n| {
            Ok(g.get(n).cloned())
        })
        .unwrap();
        assert_eq!(got, ["virtio_console"]);
    }

    #[test]
    fn a_cycle_does_not_loop() {
        let g = graph(&[("a", &["b"]), ("b", &["a"])]);
        let got = order(&["a"], |n| Ok(g.get(n).cloned())).unwrap();
        assert_eq!(got, ["b", "a"]);
    }

    #[test]
    fn compressed_modules_are_decompressed() {
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path().to_path_buf();
        let plain = dir.join("m.ko");
        std::fs::write(&plain, b"\x7fELF module").unwrap();
        assert_eq!(read_uncompressed(&plain).unwrap(), b"\x7fELF module");
        for (tool, ext, package) in [
            ("xz", "xz", "xz-utils"),
            ("zstd", "zst", "zstd"),
            ("gzip", "gz", "gzip"),
        ] {
            let ok = testkit::wait::output(
                Command::new(testkit::quote::require(tool, package))
                    .args(["-k", "-q"])
                    .arg(&plain),
                TOOL_TIMEOUT,
            )
            .is_ok_and(|out| out.status.success());
            assert!(ok, "{tool} -k failed");
            let packed = dir.join(format!("m.ko.{ext}"));
            assert_eq!(
                read_uncompressed(&packed).unwrap(),
                b"\x7fELF module",
                "{tool}"
            );
        }
    }

    #[test]
    fn names_from_files() {
        assert_eq!(module_name("virtio-rng.ko").as_deref(), Some("virtio_rng"));
        assert_eq!(module_name("9p.ko.xz").as_deref(), Some("9p"));
        assert_eq!(module_name("veth.ko.zst").as_deref(), Some("veth"));
        assert_eq!(module_name("modules.order"), None);
    }
}
