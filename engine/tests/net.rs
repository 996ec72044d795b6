//! Tests of `engine::sys::net`.
//!
//! NETWORK SAFETY: every test that touches netlink or /proc/sys/net runs through
//! `in_private_netns`, which moves a thread of its own into a new network namespace and
//! proves it did before running anything. Links, addresses, routes, sysctls and the pings
//! all live in namespaces made here and vanish with them; the machine's own root network
//! namespace is only ever read (its ip_forward value, its list of interfaces).

use engine::model::subnet::NetConfig;
use engine::sys::net;
use nix::sched::{setns, CloneFlags};
use std::collections::BTreeSet;
use std::fs::File;
use std::net::Ipv4Addr;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use testkit::host::temp_dir;
use testkit::netns::{forwarding, thread_inode};
use testkit::wait;

const BRIDGE: &str = "enbr0";
const SUBNET: &str = "10.89.0.0/24";

fn cfg() -> NetConfig {
    NetConfig::new(BRIDGE, SUBNET).unwrap()
}

fn err<T: std::fmt::Debug, E: Into<anyhow::Error>>(r: Result<T, E>) -> String {
    let e: anyhow::Error = r.map_err(Into::into).expect_err("expected an error");
    let msg = format!("{e:#}");
    assert!(!msg.contains('\n'), "error is not one line: {msg}");
    msg
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

// ---------------------------------------------------------------------------------------
// Pure logic: no namespace needed.

#[test]
fn config_accepts_good_input() {
    let c = NetConfig::new("engine0", "192.168.1.0/24").unwrap();
    assert_eq!(c.bridge, "engine0");
    assert_eq!(
        (c.network, c.prefix, c.gateway),
        (ip("192.168.1.0"), 24, ip("192.168.1.1"))
    );
    assert_eq!(c.broadcast(), ip("192.168.1.255"));
    assert_eq!(c.subnet(), "192.168.1.0/24");

    let c = NetConfig::new("a-15-byte-name_", "10.0.0.0/30").unwrap();
    assert_eq!((c.gateway, c.broadcast()), (ip("10.0.0.1"), ip("10.0.0.3")));
    let c = NetConfig::new("b", "10.0.0.0/8").unwrap();
    assert_eq!(c.gateway, ip("10.0.0.1"));
}

#[test]
fn config_rejects_bad_bridge_names() {
    for bad in [
        "",
        "sixteen-bytes-xx",
        "a/b",
        "a b",
        "a:b",
        ".",
        "..",
        "br%d",
        "a\tb",
        "a\nb",
    ] {
        let msg = err(NetConfig::new(bad, SUBNET));
        assert!(msg.starts_with(&format!("ENGINE_BRIDGE {bad:?} ")), "{msg}");
        assert!(msg.contains("interface names are 1 to 15 bytes"), "{msg}");
    }
    assert!(err(NetConfig::new("sixteen-bytes-xx", SUBNET)).contains("is 16 bytes long"));
}

#[test]
fn config_rejects_bad_subnets() {
    assert_eq!(
        err(NetConfig::new(BRIDGE, "10.0.0.0/31")),
        r#"ENGINE_SUBNET "10.0.0.0/31" is smaller than /30: use a prefix of 30 or less"#
    );
    let cases = [
        ("10.0.0.0/32", "smaller than /30"),
        ("10.0.0.0", "has no prefix length"),
        ("", "has no prefix length"),
        ("10.0.0/24", "\"10.0.0\" is not an IPv4 address"),
        ("300.0.0.0/8", "is not an IPv4 address"),
        ("/24", "is not an IPv4 address"),
        ("10.0.0.0/x", "prefix \"x\" is not a number"),
        ("10.0.0.0/", "prefix \"\" is not a number"),
        ("10.0.0.0/-1", "is not a number"),
        ("10.0.0.0/+24", "is not a number"),
        ("10.0.0.0/ 24", "is not a number"),
        ("10.0.0.0/33", "is not a number from 1 to 30"),
        ("10.0.0.0/024", "is not a number"),
        ("0.0.0.0/0", "covers every IPv4 address"),
        (
            "192.168.1.5/24",
            "has host bits set: did you mean 192.168.1.0/24?",
        ),
        ("127.0.0.0/8", "loopback"),
        ("64.0.0.0/2", "loopback"),
        ("0.0.0.0/8", "this network"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/8", "multicast and reserved"),
    ];
    for (subnet, want) in cases {
        let msg = err(NetConfig::new(BRIDGE, subnet));
        assert!(
            msg.starts_with(&format!("ENGINE_SUBNET {subnet:?}")),
            "{msg}"
        );
        assert!(msg.contains(want), "{subnet}: {msg}");
    }
}

#[test]
fn container_ip_is_checked() {
    let c = NetConfig::new("engine0", "192.168.1.0/24").unwrap();
    assert_eq!(
        c.parse_container_ip("192.168.1.5").unwrap(),
        ip("192.168.1.5")
    );
    assert_eq!(
        c.parse_container_ip("192.168.1.5/24").unwrap(),
        ip("192.168.1.5")
    );
    assert_eq!(
        c.parse_container_ip("192.168.1.254").unwrap(),
        ip("192.168.1.254")
    );
    assert_eq!(
        c.parse_container_ip("192.168.1.2").unwrap(),
        ip("192.168.1.2")
    );
    let cases = [
        ("10.0.0.5", "is outside the subnet 192.168.1.0/24"),
        ("192.168.2.5/24", "is outside the subnet"),
        ("192.168.1.0", "is the network address"),
        ("192.168.1.255", "is the broadcast address"),
        ("192.168.1.1", "is the gateway"),
        ("192.168.1", "is not an IPv4 address"),
        ("abc", "is not an IPv4 address"),
        ("", "is not an IPv4 address"),
        ("192.168.1.256", "is not an IPv4 address"),
        (" 192.168.1.5", "is not an IPv4 address"),
        ("192.168.1.5/x", "prefix \"x\" is not a number"),
        ("192.168.1.5/", "prefix \"\" is not a number"),
        ("192.168.1.5/16", "the prefix must be the subnet's (/24)"),
        ("192.168.1.5/33", "is not a number"),
    ];
    for (input, want) in cases {
        let msg = err(c.parse_container_ip(input));
        assert!(msg.contains(want), "{input:?}: {msg}");
    }
    assert!(err(c.parse_container_ip("192.168.1.1"))
        .contains("pick one from 192.168.1.2 to 192.168.1.254"));
    let small = NetConfig::new("engine0", "10.0.0.0/30").unwrap();
    assert_eq!(
        small.parse_container_ip("10.0.0.2").unwrap(),
        ip("10.0.0.2")
    );
    assert!(err(small.parse_container_ip("10.0.0.3"))
        .contains("the only container address is 10.0.0.2"));
}

#[test]
fn lowest_free_skips_gateway_and_used() {
    let c = NetConfig::new("engine0", "192.168.1.0/24").unwrap();
    assert_eq!(c.lowest_free(&[]).unwrap(), ip("192.168.1.2"));
    assert_eq!(
        c.lowest_free(&[ip("192.168.1.2"), ip("192.168.1.3")])
            .unwrap(),
        ip("192.168.1.4")
    );
    assert_eq!(
        c.lowest_free(&[ip("192.168.1.3")]).unwrap(),
        ip("192.168.1.2")
    );
    // Addresses outside the usable range do not count.
    assert_eq!(
        c.lowest_free(&[ip("10.0.0.2"), ip("192.168.1.1")]).unwrap(),
        ip("192.168.1.2")
    );

    let all: Vec<Ipv4Addr> = (2..=254).map(|i| Ipv4Addr::new(192, 168, 1, i)).collect();
    assert_eq!(
        err(c.lowest_free(&all)),
        "subnet 192.168.1.0/24 is full (253 addresses in use): stop a container or choose a larger ENGINE_SUBNET"
    );
    let mut most = all.clone();
    most.retain(|&a| a != ip("192.168.1.200"));
    assert_eq!(c.lowest_free(&most).unwrap(), ip("192.168.1.200"));

    let small = NetConfig::new("engine0", "10.0.0.0/30").unwrap();
    assert_eq!(small.lowest_free(&[]).unwrap(), ip("10.0.0.2"));
    assert!(err(small.lowest_free(&[ip("10.0.0.2")]))
        .contains("10.0.0.0/30 is full (1 address in use)"));
}

fn assert_valid_ifname(name: &str) {
    assert!(
        !name.is_empty() && name.len() <= 15,
        "{name:?} is {} bytes",
        name.len()
    );
    assert!(
        name.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)),
        "{name:?}"
    );
}

#[test]
fn veth_names_fit_and_differ() {
    assert_eq!(net::veth_name("web"), "ve-web");
    assert_eq!(net::veth_name("elevenchars"), "ve-elevenchars");
    // Deterministic: the owner finds a crashed container's veth by recomputing it.
    assert_eq!(
        net::veth_name("database-replica-7"),
        net::veth_name("database-replica-7")
    );
    assert!(net::veth_name("database-replica-7").starts_with("ve-datab-"));

    let mut seen = BTreeSet::new();
    let mut names: Vec<String> = (0..1000).map(|i| format!("database-replica-{i}")).collect();
    names.extend(
        [
            "",
            "twelve-chars",
            "a/b",
            "a_b",
            "ünïcødé-nämé",
            "x y",
            "%d",
            ".",
            "..",
        ]
        .map(String::from),
    );
    names.push("a-very-long-container-name-".repeat(20));
    names.push("a-very-long-container-name-".repeat(20) + "2");
    for name in &names {
        let veth = net::veth_name(name);
        assert_valid_ifname(&veth);
        assert!(
            seen.insert(veth.clone()),
            "{name:?} and another name share {veth}"
        );
    }
    // A short name never equals a hashed one: hashed names are exactly 15 bytes.
    assert_eq!(net::veth_name("twelve-chars").len(), 15);
    let hashed_ab = net::veth_name("a/b");
    assert_eq!(hashed_ab.len(), 15);
    let lookalike = hashed_ab.trim_start_matches("ve-");
    assert_ne!(net::veth_name(lookalike), hashed_ab);
}

// ---------------------------------------------------------------------------------------
// Namespace plumbing for the tests below.

fn sysctl_conf_dirs() -> BTreeSet<String> {
    std::fs::read_dir("/proc/sys/net/ipv4/conf")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// Runs `f` on a thread of its own in a network namespace of its own. Panics before running
/// `f` unless the thread provably left the namespace it started in, both for netlink (the
/// namespace inode, checked by testkit) and for /proc/sys/net (which must list only the new
/// namespace's `lo`).
fn in_private_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let host_conf = sysctl_conf_dirs();
    testkit::netns::in_private(move || {
        // The inode proof is testkit's; /proc/sys/net must show the new namespace too.
        let fresh: BTreeSet<String> = ["all", "default", "lo"].map(String::from).into();
        let conf = sysctl_conf_dirs();
        assert_eq!(
            conf, fresh,
            "/proc/sys/net does not show this thread's new namespace: refusing to go on"
        );
        if host_conf == fresh {
            eprintln!("note: the original namespace has only lo; /proc/sys/net proof rests on the inode check");
        }
        f()
    })
}

const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// Reads the value behind a /proc/sys file opened earlier (in another namespace).
fn read_at(file: &File) -> String {
    let mut buf = [0u8; 16];
    let n = file.read_at(&mut buf, 0).unwrap();
    String::from_utf8_lossy(&buf[..n]).trim().to_string()
}

/// Runs a command in the calling thread's network namespace (children inherit it), or,
/// with `netns_of`, in that process's; only ever to observe (`ip ... show`, `ping`).
fn run(netns_of: Option<u32>, args: &[&str]) -> (bool, String) {
    let mut cmd = match netns_of {
        Some(pid) => {
            let mut c = assert_cmd::Command::new("nsenter");
            c.args(["-t", &pid.to_string(), "-n", "--"]);
            c.args(args);
            c
        }
        None => {
            let mut c = assert_cmd::Command::new(args[0]);
            c.args(&args[1..]);
            c
        }
    };
    let out = cmd
        .timeout(Duration::from_secs(30))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// The `<FLAGS>` of `ip -o link show dev NAME` output.
fn link_flags(show: &str) -> Vec<String> {
    let start = show.find('<').expect("no flags in ip output") + 1;
    let end = show[start..].find('>').unwrap() + start;
    show[start..end].split(',').map(String::from).collect()
}

/// A process in a network namespace of its own (`unshare -n sleep 30`), killed on drop.
struct Helper {
    child: Child,
}

impl Helper {
    fn start() -> Helper {
        let ours = thread_inode().unwrap();
        let child = Command::new("unshare")
            .args(["-n", "sleep", "30"])
            .stdin(Stdio::null())
            .spawn()
            .expect("cannot run unshare");
        let helper = Helper { child };
        wait::until(
            Duration::from_secs(5),
            "the helper to enter a network namespace of its own",
            || {
                let theirs = testkit::netns::inode_of(&format!("/proc/{}/ns/net", helper.pid()));
                matches!(theirs, Ok(ino) if ino != ours).then_some(())
            },
        );
        helper
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------
// In namespaces of the tests' own.

#[test]
fn setup_and_teardown_are_idempotent_and_restore_forwarding() {
    // Opened here, in the original namespace, read-only: lets us check it never changes.
    let host_forwarding = File::open(IP_FORWARD).unwrap();
    let host_value = read_at(&host_forwarding);
    let (host_forwarding_fd, host_value_copy) =
        (host_forwarding.try_clone().unwrap(), host_value.clone());
    in_private_netns(move || {
        let (host_forwarding, host_value) = (host_forwarding_fd, host_value_copy);
        let cfg = cfg();
        let dir = temp_dir();
        let record = dir.path().join("forwarding.prev");
        for prev in ["0", "1"] {
            std::fs::write(IP_FORWARD, prev).unwrap();
            assert_eq!(
                forwarding(),
                prev,
                "this namespace's ip_forward did not take the write"
            );
            assert!(!net::bridge_exists((&cfg).into()).unwrap());

            for _ in 0..2 {
                net::setup_host((&cfg).into(), dir.path()).unwrap();
                assert_eq!(forwarding(), "1");
                assert_eq!(std::fs::read_to_string(&record).unwrap().trim(), prev);
                assert!(net::bridge_exists((&cfg).into()).unwrap());
                let (ok, show) = run(None, &["ip", "-o", "-d", "link", "show", "dev", BRIDGE]);
                assert!(ok && show.contains("bridge"), "{show}");
                assert!(link_flags(&show).contains(&"UP".to_string()), "{show}");
                let (ok, addrs) = run(None, &["ip", "-o", "-4", "addr", "show", "dev", BRIDGE]);
                assert!(ok, "{addrs}");
                assert_eq!(addrs.matches("inet ").count(), 1, "{addrs}");
                assert!(addrs.contains("inet 10.89.0.1/24"), "{addrs}");
                assert_eq!(
                    read_at(&host_forwarding),
                    host_value,
                    "the host's ip_forward changed"
                );
            }
            // A later setup while forwarding is already on must not overwrite the record.
            net::setup_host((&cfg).into(), dir.path()).unwrap();
            assert_eq!(std::fs::read_to_string(&record).unwrap().trim(), prev);

            for _ in 0..2 {
                net::teardown_host((&cfg).into(), dir.path()).unwrap();
                assert!(!net::bridge_exists((&cfg).into()).unwrap());
                assert_eq!(forwarding(), prev, "forwarding not restored");
                assert!(!record.exists());
                assert_eq!(
                    read_at(&host_forwarding),
                    host_value,
                    "the host's ip_forward changed"
                );
            }
        }

        // Forwarding left on by hand after a teardown stays as it is: no record, no write.
        std::fs::write(IP_FORWARD, "1").unwrap();
        net::teardown_host((&cfg).into(), dir.path()).unwrap();
        assert_eq!(forwarding(), "1");

        // A corrupt record is refused, not written to the sysctl.
        std::fs::write(&record, "yes\n").unwrap();
        let msg = err(net::teardown_host((&cfg).into(), dir.path()));
        assert!(msg.contains("holds \"yes\", not 0 or 1"), "{msg}");
    });
    assert_eq!(
        read_at(&host_forwarding),
        host_value,
        "the host's ip_forward changed"
    );
}

#[test]
fn host_side_refusals() {
    in_private_netns(|| {
        let dir = temp_dir();
        // `lo` exists in every namespace and is no bridge: never adopted, never deleted.
        let lo = NetConfig::new("lo", SUBNET).unwrap();
        let msg = err(net::setup_host((&lo).into(), dir.path()));
        assert!(
            msg.contains("interface lo exists but is not a bridge"),
            "{msg}"
        );
        let msg = err(net::teardown_host((&lo).into(), dir.path()));
        assert!(
            msg.contains("interface lo is not a bridge: not deleting it"),
            "{msg}"
        );
        assert!(net::link_exists("lo").unwrap());

        let cfg = cfg();
        let msg = err(net::create_veth(
            (&cfg).into(),
            "ve-test",
            std::process::id() as i32,
            ip("10.89.0.2"),
        ));
        assert_eq!(msg, "cannot create veth ve-test: bridge enbr0 does not exist: set up the host network first");
        let msg = err(net::create_veth(
            (&cfg).into(),
            "a-name-that-is-too-long",
            1,
            ip("10.89.0.2"),
        ));
        assert!(msg.contains("is 23 bytes long"), "{msg}");
        assert!(err(net::create_veth(
            (&cfg).into(),
            "ve-test",
            0,
            ip("10.89.0.2")
        ))
        .contains("0 is not a process id"));

        // Deleting what is not there is fine; teardown with nothing set up too.
        net::delete_link("ve-nothing").unwrap();
        assert!(!net::link_exists("ve-nothing").unwrap());
        net::teardown_host((&cfg).into(), dir.path()).unwrap();
        assert!(err(net::delete_link("a/b")).contains("cannot delete interface \"a/b\""));

        // Container side in a namespace without eth0.
        net::loopback_up().unwrap();
        let (_, show) = run(None, &["ip", "-o", "link", "show", "dev", "lo"]);
        assert!(link_flags(&show).contains(&"UP".to_string()), "{show}");
        let msg = err(net::configure_eth0(ip("10.89.0.2"), 24, ip("10.89.0.1")));
        assert!(msg.contains("this network namespace has no eth0"), "{msg}");
    });
}

#[test]
fn veth_end_to_end() {
    let host_forwarding = File::open(IP_FORWARD).unwrap();
    let host_value = read_at(&host_forwarding);
    in_private_netns(|| {
        let cfg = cfg();
        let dir = temp_dir();
        net::setup_host((&cfg).into(), dir.path()).unwrap();

        let helper = Helper::start();
        let pid = helper.pid();
        let veth = net::veth_name("e2e-container-with-a-long-name");
        assert_eq!(veth.len(), 15);
        net::create_veth((&cfg).into(), &veth, pid as i32, ip("10.89.0.2")).unwrap();

        // Host end: attached to the bridge and up.
        let (ok, show) = run(None, &["ip", "-o", "link", "show", "dev", &veth]);
        assert!(ok, "{show}");
        assert!(show.contains(&format!("master {BRIDGE}")), "{show}");
        assert!(link_flags(&show).contains(&"UP".to_string()), "{show}");
        assert!(net::link_exists(&veth).unwrap());
        // Peer: eth0 in the helper's namespace, not here.
        let (ok, show) = run(Some(pid), &["ip", "-o", "link", "show", "dev", "eth0"]);
        assert!(ok, "{show}");
        assert!(!net::link_exists("eth0").unwrap());

        // Refusals that need a live pair.
        let msg = err(net::create_veth(
            (&cfg).into(),
            &veth,
            pid as i32,
            ip("10.89.0.2"),
        ));
        assert!(
            msg.contains(&format!("interface {veth} already exists")),
            "{msg}"
        );
        assert!(msg.contains(&format!("ip link del {veth}")), "{msg}");
        let msg = err(net::create_veth(
            (&cfg).into(),
            "ve-second",
            pid as i32,
            ip("10.89.0.3"),
        ));
        assert!(
            msg.contains(&format!("process {pid} already has an eth0")),
            "{msg}"
        );
        assert!(!net::link_exists("ve-second").unwrap());
        let msg = err(net::create_veth(
            (&cfg).into(),
            "ve-nopid",
            i32::MAX,
            ip("10.89.0.4"),
        ));
        assert!(
            msg.contains(&format!("process {} does not exist", i32::MAX)),
            "{msg}"
        );
        assert!(!net::link_exists("ve-nopid").unwrap());

        // Container side, from a thread that joined the helper's namespace.
        let container_ip = cfg.lowest_free(&[]).unwrap();
        let (prefix, gateway) = (cfg.prefix, cfg.gateway);
        std::thread::spawn(move || {
            let ns = File::open(format!("/proc/{pid}/ns/net")).unwrap();
            let want = ns.metadata().unwrap().ino();
            setns(&ns, CloneFlags::CLONE_NEWNET).unwrap();
            assert_eq!(thread_inode().unwrap(), want, "setns did not take");
            net::loopback_up().unwrap();
            net::configure_eth0(container_ip, prefix, gateway).unwrap();
        })
        .join()
        .unwrap();

        let (_, show) = run(Some(pid), &["ip", "-o", "link", "show", "dev", "lo"]);
        assert!(link_flags(&show).contains(&"UP".to_string()), "{show}");
        let (_, show) = run(Some(pid), &["ip", "-o", "link", "show", "dev", "eth0"]);
        assert!(link_flags(&show).contains(&"UP".to_string()), "{show}");
        let (_, addrs) = run(
            Some(pid),
            &["ip", "-o", "-4", "addr", "show", "dev", "eth0"],
        );
        assert!(addrs.contains("inet 10.89.0.2/24"), "{addrs}");
        let (_, routes) = run(Some(pid), &["ip", "-4", "route", "show", "default"]);
        assert!(
            routes.contains("default via 10.89.0.1 dev eth0"),
            "{routes}"
        );

        // The gateway (the bridge, in this test's namespace) answers from the container's.
        let mut pinged = (false, String::new());
        for _ in 0..3 {
            pinged = run(Some(pid), &["ping", "-c1", "-W2", "10.89.0.1"]);
            if pinged.0 {
                break;
            }
        }
        assert!(pinged.0, "ping to the gateway failed: {}", pinged.1);

        // Deleting the host end removes both ends; again is fine.
        net::delete_link(&veth).unwrap();
        assert!(!net::link_exists(&veth).unwrap());
        let (ok, show) = run(Some(pid), &["ip", "-o", "link", "show", "dev", "eth0"]);
        assert!(!ok, "eth0 survived: {show}");
        net::delete_link(&veth).unwrap();

        net::teardown_host((&cfg).into(), dir.path()).unwrap();
        assert!(!net::bridge_exists((&cfg).into()).unwrap());
        drop(helper);
    });
    assert_eq!(
        read_at(&host_forwarding),
        host_value,
        "the host's ip_forward changed"
    );
}
