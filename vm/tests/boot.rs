//! Boots real QEMU guests (one per test; about 2-5 s each under TCG, plus a
//! kernel download on the first run) and checks what the harness relies on.

use std::path::PathBuf;
use std::time::{Duration, Instant};
use vm::{Arch, VmConfig};

fn config() -> VmConfig {
    VmConfig {
        workdir: PathBuf::from(env!("CARGO_MANIFEST_DIR")),
        timeout: Duration::from_secs(120),
        ..VmConfig::default()
    }
}

fn sh(script: &str) -> Vec<String> {
    vec!["sh".into(), "-c".into(), script.into()]
}

/// What the guest reports about itself, written to a shared writable
/// directory so the test can read it back.
const REPORT: &str = r#"
out="$OUT/report"
{
  echo "controllers: $(cat /sys/fs/cgroup/cgroup.subtree_control)"
  echo "links: $(ls /sys/class/net | tr '\n' ' ')"
  echo "uid: $(id -u)"
  echo "pwd: $(pwd)"
  echo "env: $GREETING"
  echo "hostname: $(hostname)"
  if touch /etc/vm-test 2>/dev/null; then echo "root: writable"; else echo "root: read-only"; fi
  if touch /tmp/x; then echo "tmp: writable"; fi
  awk '$5 == "/" { p = "private"; for (i = 7; $i != "-"; i++) if ($i ~ /^shared:/) p = "shared" }
       END { print "propagation: " p }' /proc/self/mountinfo
} > "$out"
"#;

fn report(cfg: VmConfig, expected_arch: &str) {
    let scratch = tempfile::Builder::new()
        .prefix(&format!("vm-test-report-{expected_arch}-"))
        .tempdir()
        .unwrap();
    let cfg = VmConfig {
        writable: vec![scratch.path().to_path_buf()],
        env: vec![
            ("OUT".into(), scratch.path().to_string_lossy().into()),
            ("GREETING".into(), "hello 'there'".into()),
        ],
        ..cfg
    };
    let script = format!("{REPORT}\necho \"arch: $(uname -m)\" >> \"$OUT/report\"");
    let code = vm::run(&cfg, &sh(&script)).expect("the guest boots and runs the command");
    assert_eq!(code, 0);
    let report =
        std::fs::read_to_string(scratch.path().join("report")).expect("the guest wrote it");
    let field = |name: &str| {
        report
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no {name} in the report:\n{report}"))
            .trim()
            .to_string()
    };
    let controllers = field("controllers");
    for c in ["cpu", "memory", "pids"] {
        assert!(
            controllers.split(' ').any(|x| x == c),
            "{c} not enabled: {controllers}"
        );
    }
    assert_eq!(field("links"), "lo", "no network device but lo");
    assert_eq!(field("uid"), "0");
    assert_eq!(field("pwd"), env!("CARGO_MANIFEST_DIR"));
    assert_eq!(field("env"), "hello 'there'");
    assert_eq!(field("hostname"), "vm");
    assert_eq!(field("root"), "read-only");
    assert_eq!(field("tmp"), "writable");
    // As on a systemd host: the engine's mounts must not leak through it.
    assert_eq!(
        field("propagation"),
        "shared",
        "the guest's / is not shared"
    );
    assert_eq!(field("arch"), expected_arch);
}

#[test]
fn guest_has_cgroup2_no_network_and_the_same_directory() {
    let arch = if Arch::host() == Arch::Amd64 {
        "x86_64"
    } else {
        "aarch64"
    };
    report(config(), arch);
}

#[test]
fn exit_codes_come_back() {
    assert_eq!(vm::run(&config(), &sh("exit 3")).unwrap(), 3);
}

#[test]
fn a_guest_kernel_panic_is_an_error() {
    let err = vm::run(&config(), &sh("echo c > /proc/sysrq-trigger; sleep 60"))
        .expect_err("a panic is not a pass");
    let msg = format!("{err:#}");
    assert!(msg.contains("panicked"), "{msg}");
    assert!(
        msg.contains("sysrq"),
        "the console's tail is included: {msg}"
    );
}

/// QEMU processes whose command line contains `marker`.
fn qemus_with(marker: &str) -> usize {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .filter(|c| {
            let c = String::from_utf8_lossy(c);
            c.starts_with("qemu-system") && c.contains(marker)
        })
        .count()
}

#[test]
fn a_guest_past_its_timeout_is_killed() {
    // An unusual memory size tells this test's QEMU from the others'.
    let cfg = VmConfig {
        timeout: Duration::from_secs(5),
        memory: "777M".into(),
        ..config()
    };
    let start = Instant::now();
    let err = vm::run(&cfg, &["sleep".into(), "100".into()]).expect_err("a timeout is an error");
    assert!(start.elapsed() < Duration::from_secs(15), "killed in time");
    let msg = format!("{err:#}");
    assert!(msg.contains("did not finish within 5s"), "{msg}");
    assert_eq!(qemus_with("777M"), 0, "no QEMU left behind");
}

/// The arm64 guest on an amd64 host (or the reverse): builds its Debian root
/// with mmdebstrap on the first run (network, ~10 s), then ~3 s per boot.
#[test]
#[ignore = "builds a foreign-architecture root with mmdebstrap; run with --include-ignored"]
fn foreign_architecture_guest() {
    let (arch, name) = match Arch::host() {
        Arch::Amd64 => (Arch::Arm64, "aarch64"),
        Arch::Arm64 => (Arch::Amd64, "x86_64"),
    };
    report(VmConfig { arch, ..config() }, name);
    assert_eq!(
        vm::run(&VmConfig { arch, ..config() }, &sh("exit 3")).unwrap(),
        3
    );
}
