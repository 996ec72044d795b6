//! `engine run` with bridge networking. Every test first moves its own
//! thread into a fresh network namespace (network namespaces are per
//! thread), so the engines it starts build their bridge, veths and routes
//! there, never in this machine's own namespace, and no packet leaves it.

mod common;
use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};

/// Moves this test's thread into a new network namespace and proves it.
fn private_netns() {
    let before = std::fs::metadata("/proc/thread-self/ns/net").unwrap();
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
    let after = std::fs::metadata("/proc/thread-self/ns/net").unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_ne!(
        before.ino(),
        after.ino(),
        "still in the original network namespace"
    );
}

fn rootfs() -> &'static str {
    busybox().to_str().unwrap()
}

struct Net {
    env: Env,
    bridge: String,
    subnet: String,
}

impl Net {
    /// A private netns, state dir, bridge and subnet.
    fn new(tag: &str, subnet: &str) -> Net {
        busybox(); // build the fixture before leaving the host's namespace
        private_netns();
        Net {
            env: Env::new(tag),
            bridge: format!("br-{tag}"),
            subnet: subnet.to_string(),
        }
    }

    fn cmd(&self) -> std::process::Command {
        let mut c = self.env.cmd();
        c.env("ENGINE_BRIDGE", &self.bridge)
            .env("ENGINE_SUBNET", &self.subnet);
        c
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        self.cmd().arg("run").args(args).output().unwrap()
    }

    /// A container that prints "ready" then runs `script`; returns once it is ready.
    fn start(&self, args: &[&str], script: &str) -> Child {
        let mut child = self
            .cmd()
            .arg("run")
            .args(args)
            .args(["--", "sh", "-c", &format!("echo ready; {script}")])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready");
        child
    }

    /// Veths vanish with their container's network namespace, which the
    /// kernel tears down in the background: wait for that, boundedly.
    fn assert_no_veth(&self) {
        wait_for(10, "the veths to vanish", || {
            (!self.links().contains("ve-")).then_some(())
        });
    }

    fn links(&self) -> String {
        let out = std::process::Command::new("ip")
            .args(["-o", "link"])
            .output()
            .unwrap();
        stdout(&out)
    }
}

#[test]
fn two_containers_ping_each_other_and_the_gateway() {
    let net = Net::new("ping", "10.77.0.0/24");
    let mut a = net.start(&[rootfs(), "alpha", "10.77.0.10"], "sleep 30");
    let out = net.run(&[rootfs(), "beta", "10.77.0.11/24", "--", "sh", "-c",
        "ip -o -4 addr show eth0; ip route; ping -c1 -W5 10.77.0.1 && ping -c1 -W5 10.77.0.10 && echo PINGED"]);
    let text = stdout(&out);
    assert!(
        text.contains("inet 10.77.0.11/24"),
        "{text}\n{}",
        stderr(&out)
    );
    assert!(text.contains("default via 10.77.0.1"), "{text}");
    assert!(text.contains("PINGED"), "{text}\n{}", stderr(&out));
    // And back: from alpha to beta, started again as a listener-free target.
    let mut b = net.start(&[rootfs(), "beta", "10.77.0.11"], "sleep 30");
    let out = net
        .cmd()
        .args([
            "exec",
            "alpha",
            "--",
            "sh",
            "-c",
            "ping -c1 -W5 10.77.0.11 && ping -c1 -W5 10.77.0.1 && echo PINGED",
        ])
        .output()
        .unwrap();
    assert!(
        stdout(&out).contains("PINGED"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    // On the host: a veth per container, named after it, on the bridge.
    // (beta's may carry a suffix: its previous veth can still be dying.)
    let ps = net.cmd().args(["ps", "--format", "json"]).output().unwrap();
    let rows: serde_json::Value = serde_json::from_slice(&ps.stdout).unwrap();
    let links = net.links();
    for row in rows.as_array().unwrap() {
        let veth = row["veth"].as_str().unwrap();
        assert!(veth.starts_with("ve-") && veth.len() <= 15, "{veth}");
        assert!(
            links.lines().any(|l| l.contains(&format!(" {veth}@"))
                && l.contains(&format!("master {}", net.bridge))),
            "{veth} not on the bridge: {links}"
        );
    }
    assert!(links.contains(" ve-alpha@"), "{links}");
    for c in [&mut a, &mut b] {
        c.kill().unwrap();
        c.wait().unwrap();
    }
    let out = net.cmd().args(["teardown"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    net.assert_no_veth();
    assert!(!net.links().contains(&net.bridge), "{}", net.links());
    net.env.assert_clean();
}

#[test]
fn leases_take_the_lowest_free_address_and_are_released() {
    let net = Net::new("lease", "10.78.0.0/24");
    let show = "ip -o -4 addr show eth0 | awk '{print $4}'";
    let mut first = net.start(&["--net", "bridge", rootfs(), "first"], "sleep 30");
    let out = net.run(&[rootfs(), "second", "--", "sh", "-c", show]);
    assert_eq!(stdout(&out).trim(), "10.78.0.3/24", "{}", stderr(&out));
    first.kill().unwrap();
    first.wait().unwrap();
    // first's engine was SIGKILLed: the next run recovers its lease.
    let out = net.run(&[rootfs(), "third", "--", "sh", "-c", show]);
    assert_eq!(stdout(&out).trim(), "10.78.0.2/24", "{}", stderr(&out));
    let out = net.run(&["--net", "none", rootfs(), "--", "ip", "-o", "link"]);
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 1, "--net none has only lo: {text}");
    assert!(text.contains("lo:") && text.contains("UP"), "{text}");
    net.assert_no_veth();
    net.env.assert_clean();
    net.cmd().arg("teardown").output().unwrap();
}

#[test]
fn bad_addresses_are_refused_before_anything_is_created() {
    let net = Net::new("badip", "10.79.0.0/24");
    let mut holder = net.start(&[rootfs(), "holder", "10.79.0.5"], "sleep 30");
    let cases = [
        ("10.80.0.5", "outside"),
        ("10.79.0.0", "network"),
        ("10.79.0.255", "broadcast"),
        ("10.79.0.1", "gateway"),
        ("10.79.0.5", "holder"),
        ("10.79.0", "10.79.0"),
        ("10.79.0.300", "10.79.0.300"),
        ("10.79.0.6/16", "/16"),
        ("10.79.0.6/abc", "10.79.0.6/abc"),
    ];
    for (ip, needle) in cases {
        let out = net.run(&[rootfs(), "x", ip, "--", "true"]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(125), "{ip}: {err}");
        assert!(
            err.contains(needle),
            "{ip}: {err:?} should mention {needle:?}"
        );
        assert!(!net.links().contains("ve-x"), "{ip} left a veth");
    }
    let out = net.run(&["--net", "none", rootfs(), "x", "10.79.0.6", "--", "true"]);
    assert_eq!(out.status.code(), Some(125));
    for (subnet, needle) in [
        ("10.79.0.0/31", "/30"),
        ("10.79.0/24", "ENGINE_SUBNET"),
        ("banana", "ENGINE_SUBNET"),
    ] {
        let out = net
            .cmd()
            .env("ENGINE_SUBNET", subnet)
            .args(["run", rootfs(), "--", "true"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(125), "{subnet}");
        assert!(stderr(&out).contains(needle), "{subnet}: {}", stderr(&out));
    }
    let out = net
        .cmd()
        .env("ENGINE_BRIDGE", "a-bridge-name-too-long")
        .args(["run", rootfs(), "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("ENGINE_BRIDGE"), "{}", stderr(&out));
    holder.kill().unwrap();
    holder.wait().unwrap();
    // A full subnet: a /30 has two host addresses, one of them the gateway.
    let small = Net {
        env: Env::new("full"),
        bridge: "br-full".into(),
        subnet: "10.81.0.0/30".into(),
    };
    let mut only = small.start(&[rootfs(), "only"], "sleep 30");
    let out = small.run(&[rootfs(), "more", "--", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("full"), "{}", stderr(&out));
    only.kill().unwrap();
    only.wait().unwrap();
    small.run(&["--net", "none", rootfs(), "--", "true"]); // recovers only's leftovers
    small.env.assert_clean();
    net.cmd().arg("teardown").output().unwrap();
    small.cmd().arg("teardown").output().unwrap();
}

#[test]
fn thirty_concurrent_starts_get_distinct_addresses_and_reach_the_gateway() {
    let net = Net::new("thirty", "10.82.0.0/24");
    let children: Vec<Child> = (0..30)
        .map(|i| {
            net.cmd()
                .args(["run", rootfs(), &format!("c{i}"), "--", "sh", "-c",
                    "ping -c1 -W10 10.82.0.1 >/dev/null && ip -o -4 addr show eth0 | awk '{print $4}' && sleep 4"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut addrs = Vec::new();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        addrs.push(stdout(&out).trim().to_string());
    }
    let mut unique = addrs.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 30, "duplicate addresses: {addrs:?}");
    net.assert_no_veth();
    net.env.assert_clean();
    let out = net.cmd().arg("teardown").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn setup_and_teardown_are_idempotent_and_teardown_refuses_while_running() {
    let net = Net::new("setup", "10.83.0.0/24");
    let forwarding = || std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    assert_eq!(forwarding().trim(), "0");
    for _ in 0..2 {
        let out = net.cmd().arg("setup").output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    assert_eq!(forwarding().trim(), "1");
    let addr = std::process::Command::new("ip")
        .args(["-o", "-4", "addr", "show", &net.bridge])
        .output()
        .unwrap();
    assert!(stdout(&addr).contains("10.83.0.1/24"), "{}", stdout(&addr));
    let mut running = net.start(&[rootfs(), "busy"], "sleep 30");
    let out = net.cmd().arg("teardown").output().unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("busy"), "{}", stderr(&out));
    let out = net.cmd().args(["teardown", "--force"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    running.wait().unwrap();
    for _ in 0..2 {
        let out = net.cmd().arg("teardown").output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    assert_eq!(forwarding().trim(), "0");
    assert!(!net.links().contains(&net.bridge));
    net.env.assert_clean();
}

#[test]
fn a_failure_midway_undoes_every_step() {
    let net = Net::new("midway", "10.84.0.0/24");
    // The veth, the lease and the record exist by the time the child fails
    // to make this mount point (proc refuses mkdir).
    let out = net.run(&[
        "-v",
        "/tmp:/proc/engine-test",
        rootfs(),
        "mid",
        "10.84.0.9",
        "--",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("/proc/engine-test"),
        "{}",
        stderr(&out)
    );
    net.assert_no_veth();
    net.env.assert_clean();
    // The address is free again.
    let out = net.run(&[rootfs(), "again", "10.84.0.9", "--", "true"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    net.cmd().arg("teardown").output().unwrap();
}
