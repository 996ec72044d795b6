//! Scenario 5, network: `ip a` shows eth0 with the container's address; it pings the
//! gateway; two containers ping each other both ways.
//!
//! Runs only where the network is the harness's own: in the guest (no NIC)
//! or, directly on a host, inside the `unshare --net` the launcher made.

use super::{tagged, Ctx};
use crate::engine::{link_exists, Run, LINE_TIMEOUT, RUN_TIMEOUT};
use anyhow::{bail, Result};

/// `ping -c 1` with a 10 s wait: busybox and iputils both take this.
/// busybox's ping opens only raw sockets, so the containers here get
/// NET_RAW back (`--cap-add NET_RAW`); the default set has none.
fn ping(addr: &str) -> String {
    format!("ping -c 1 -W 10 {addr}")
}

pub fn run(ctx: &Ctx) -> Result<()> {
    let env = ctx.env("net")?;
    let gw = env.gateway();
    let ip_a = env.ip(10);
    let ip_b = env.ip(11);

    // eth0 holds the address; the gateway answers.
    let out = env.run(
        &Run::new(ctx.rootfs(), "net-a")
            .opt("--cap-add", "NET_RAW")
            .ip(&ip_a)
            .sh(&format!("ip a; {}; echo ping-gw=$?", ping(&gw))),
    )?;
    out.expect_success("ip a and ping in a container")?;
    let want = format!("inet {ip_a}/24");
    if !out.stdout.contains("eth0") || !out.stdout.contains(&want) {
        bail!("expected `ip a` to show eth0 with `{want}`\n{out}");
    }
    if !out.stdout.contains("127.0.0.1") {
        bail!("expected `ip a` to show lo with 127.0.0.1\n{out}");
    }
    if tagged(&out.stdout, "ping-gw") != Some("0") {
        bail!("the container {ip_a} should reach the gateway {gw} (ping exit status 0)\n{out}");
    }
    if !link_exists(&env.bridge) {
        bail!(
            "the bridge {} should exist on the host while containers use it",
            env.bridge
        );
    }

    // Two containers ping each other both ways.
    let mut a = env.spawn(
        &Run::new(ctx.rootfs(), "net-a")
            .opt("--cap-add", "NET_RAW")
            .ip(&ip_a)
            .sh(&format!(
                "echo up; read go; {}; echo a-to-b=$?; read x; exit 0",
                ping(&ip_b)
            )),
    )?;
    a.wait_line("up", LINE_TIMEOUT)?;
    let mut b = env.spawn(
        &Run::new(ctx.rootfs(), "net-b")
            .opt("--cap-add", "NET_RAW")
            .ip(&ip_b)
            .sh(&format!("{}; echo b-to-a=$?; read x; exit 0", ping(&ip_a))),
    )?;
    let b_line = b.wait_line("b-to-a=", LINE_TIMEOUT)?;
    a.send("go\n")?;
    let a_line = a.wait_line("a-to-b=", LINE_TIMEOUT)?;
    let b_so_far = b.so_far();
    let a_so_far = a.so_far();
    let out_a = a.finish(RUN_TIMEOUT)?;
    let out_b = b.finish(RUN_TIMEOUT)?;
    if b_line != "b-to-a=0" || a_line != "a-to-b=0" {
        bail!(
            "containers {ip_a} and {ip_b} should ping each other both ways; \
             got `{b_line}` and `{a_line}`\ncontainer B:\n{b_so_far}container A:\n{a_so_far}"
        );
    }
    out_a.expect_success("container A after the pings")?;
    out_b.expect_success("container B after the pings")?;
    env.close()
}
