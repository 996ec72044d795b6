//! Scenario nat: containers reach a "world" through the engine's NAT, resolve
//! a name through its DNS server, and publish a port that the world, the
//! host (127.0.0.1 and its own address) and another container (hairpin)
//! reach; a host port already published is refused; after teardown the
//! nftables ruleset is as before.
//!
//! The world is a network namespace of this scenario's own (held by an
//! `unshare -n sleep`), joined by a veth, with busybox httpd and a small DNS
//! responder on 198.51.100.1 (a documentation address). Runs only where the
//! network is the harness's own: in the guest, or in the launcher's
//! `unshare --net` on a host.

use super::Ctx;
use crate::engine::{Run, LINE_TIMEOUT, RUN_TIMEOUT};
use crate::process::{self as util, Proc};
use anyhow::{bail, Context, Result};
use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const WORLD_IP: &str = "198.51.100.1";
const HOST_IP: &str = "198.51.100.2";
const GREETING: &str = "hello from the world";
/// The host's busybox (static), bound into containers so every flavour has nc, httpd,
/// nslookup (named busybox: it picks the applet from argv[0] otherwise).
const BB: &str = "/engine-bin/busybox";

fn sh(cmd: &mut Command) -> Result<String> {
    let out = util::run(cmd, RUN_TIMEOUT)?;
    out.expect_success("a setup command")?;
    Ok(out.stdout)
}

/// The world namespace and its servers; all gone on drop.
struct World {
    holder: Proc,
    ns: String,
    httpd: Option<Proc>,
    stop: Arc<AtomicBool>,
    dns: Option<std::thread::JoinHandle<()>>,
}

impl World {
    fn new(tag: &str, scratch: &std::path::Path, busybox: &str) -> Result<World> {
        let holder = Proc::spawn(Command::new("unshare").args(["-n", "sleep", "600"]), false)?;
        let ns = format!("/proc/{}/ns/net", holder.pid());
        let mine = std::fs::metadata("/proc/thread-self/ns/net")?.ino();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::metadata(&ns).map(|m| m.ino()).unwrap_or(mine) == mine {
            if Instant::now() > deadline {
                bail!("the world namespace ({ns}) did not appear");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut world = World {
            holder,
            ns,
            httpd: None,
            stop: Arc::new(AtomicBool::new(false)),
            dns: None,
        };
        let (here, there) = (format!("wh-{tag}"), format!("ww-{tag}"));
        sh(Command::new("ip")
            .args([
                "link", "add", &here, "type", "veth", "peer", "name", &there, "netns",
            ])
            .arg(world.holder.pid().to_string()))?;
        sh(Command::new("ip").args(["addr", "add", &format!("{HOST_IP}/24"), "dev", &here]))?;
        sh(Command::new("ip").args(["link", "set", &here, "up"]))?;
        sh(Command::new("ip").args(["link", "set", "lo", "up"]))?;
        for args in [
            vec!["addr", "add", &format!("{WORLD_IP}/24"), "dev", &there],
            vec!["link", "set", &there, "up"],
            vec!["link", "set", "lo", "up"],
        ] {
            sh(world.run("ip").args(args))?;
        }
        let www = scratch.join(format!("www-{tag}"));
        std::fs::create_dir_all(&www)?;
        std::fs::write(www.join("index.html"), format!("{GREETING}\n"))?;
        let mut httpd = world.run(busybox);
        httpd
            .args(["httpd", "-f", "-p", &format!("{WORLD_IP}:80"), "-h"])
            .arg(&www);
        world.httpd = Some(Proc::spawn(&mut httpd, false)?);
        // The DNS responder: a thread of ours inside the world namespace.
        let ns_file = std::fs::File::open(&world.ns)?;
        let stop = world.stop.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        world.dns = Some(std::thread::spawn(move || {
            let bound = (|| -> std::io::Result<UdpSocket> {
                nix::sched::setns(ns_file, nix::sched::CloneFlags::CLONE_NEWNET)?;
                let s = UdpSocket::bind((WORLD_IP, 53))?;
                s.set_read_timeout(Some(Duration::from_millis(200)))?;
                Ok(s)
            })();
            let s = match bound {
                Ok(s) => {
                    let _ = tx.send(Ok(()));
                    s
                }
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                    return;
                }
            };
            let mut buf = [0u8; 512];
            while !stop.load(Ordering::Relaxed) {
                if let Ok((n, from)) = s.recv_from(&mut buf) {
                    if let Some(answer) = testkit::dns::answer(&buf[..n], WORLD_IP.parse().unwrap())
                    {
                        let _ = s.send_to(&answer, from);
                    }
                }
            }
        }));
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => bail!("the world's DNS responder: {e}"),
            Err(_) => bail!("the world's DNS responder did not start"),
        }
        // httpd is up once it answers.
        world.wait_http_here(&format!("{WORLD_IP}:80"))?;
        Ok(world)
    }

    /// A command run in the world namespace.
    fn run(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.ns)).arg(program);
        c
    }

    /// GET / from this (the host's) namespace, retried for 30 s.
    fn wait_http_here(&self, addr: &str) -> Result<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match http_get(addr) {
                Ok(text) => return Ok(text),
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                Err(e) => bail!("GET http://{addr}/ from the host: {e}"),
            }
        }
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.dns.take() {
            let _ = t.join();
        }
        for p in [
            self.httpd.take(),
            Some(std::mem::replace(&mut self.holder, placeholder())),
        ]
        .into_iter()
        .flatten()
        {
            // Our own child, not yet reaped: its pid is still its own.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p.pid() as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            drop(p);
        }
    }
}

/// A finished process standing in for the holder while it is dropped.
fn placeholder() -> Proc {
    Proc::spawn(&mut Command::new("true"), false).expect("run true")
}

fn http_get(addr: &str) -> std::io::Result<String> {
    let addr = addr.parse().expect("a socket address");
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET / HTTP/1.0\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    Ok(text)
}

/// A shell command fetching `/` over HTTP with busybox nc.
fn fetch(host: &str, port: u16) -> String {
    format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | {BB} nc -w 10 {host} {port}")
}

fn ruleset() -> Result<String> {
    sh(Command::new("nft").args(["list", "ruleset"]))
}

pub fn run(ctx: &Ctx) -> Result<()> {
    let busybox = testkit::quote::which("busybox")
        .context("busybox is needed for the world's httpd: apt-get install busybox-static")?;
    let busybox = busybox.to_string_lossy().into_owned();
    let env = ctx.env("nat")?;
    let before = ruleset()?;
    let world = World::new(&env.net.to_string(), &ctx.settings.scratch, &busybox)?;
    let bb = format!("{busybox}:{BB}:ro");

    // Out through NAT, and a name through resolv.conf (--dns) and NAT.
    let out = env.run(
        &Run::new(ctx.rootfs(), "nat-out")
            .ip(&env.ip(10))
            .opt("-v", &bb)
            .opt("--dns", WORLD_IP)
            .sh(&format!(
                "{}; {BB} nslookup world.test",
                fetch(WORLD_IP, 80)
            )),
    )?;
    out.expect_success("a container fetching from the world")?;
    if !out.stdout.contains(GREETING) {
        bail!("the container should fetch {GREETING:?} from {WORLD_IP} through NAT\n{out}");
    }
    if !out.stdout.contains(&format!("Address: {WORLD_IP}")) {
        bail!(
            "the container should resolve world.test to {WORLD_IP} through its resolv.conf\n{out}"
        );
    }

    // A published port.
    let mut web = env.spawn(
        &Run::new(ctx.rootfs(), "nat-web")
            .ip(&env.ip(11))
            .opt("-v", &bb)
            .opt("-p", "8080:80")
            .sh(&format!(
                "mkdir -p /tmp/www && echo web here > /tmp/www/index.html && {BB} httpd -p 80 -h /tmp/www && echo up; read x"
            )),
    )?;
    web.wait_line("up", LINE_TIMEOUT)?;
    let mut from_world = world.run(&busybox);
    from_world.args(["sh", "-c", &fetch(HOST_IP, 8080).replace(BB, &busybox)]);
    let out = util::run(&mut from_world, RUN_TIMEOUT)?;
    if !out.stdout.contains("web here") {
        bail!(
            "the world should reach the published port {HOST_IP}:8080\n{out}\ncontainer:\n{}",
            web.so_far()
        );
    }
    for addr in ["127.0.0.1:8080".to_string(), format!("{HOST_IP}:8080")] {
        let text = world.wait_http_here(&addr)?;
        if !text.contains("web here") {
            bail!("the host should reach the published port on {addr}, got:\n{text}");
        }
    }
    let out = env.run(
        &Run::new(ctx.rootfs(), "nat-client")
            .ip(&env.ip(12))
            .opt("-v", &bb)
            .sh(&fetch(HOST_IP, 8080)),
    )?;
    if !out.stdout.contains("web here") {
        bail!(
            "another container should reach the published port through {HOST_IP} (hairpin)\n{out}"
        );
    }
    let out = env.run(
        &Run::new(ctx.rootfs(), "nat-dup")
            .ip(&env.ip(13))
            .opt("-p", "8080:81")
            .cmd(&["true"]),
    )?;
    out.expect_code(125, "a second container publishing host port 8080")?;
    if !out
        .stderr
        .contains("already published by container nat-web")
    {
        bail!("the refusal should name the container holding the port\n{out}");
    }
    web.send("bye\n")?;
    web.finish(RUN_TIMEOUT)?
        .expect_success("the published container")?;
    let during = ruleset()?;
    if during.contains("nat-web") {
        bail!("the published container's rules should go when it ends:\n{during}");
    }
    drop(world);
    env.close()?;
    let after = ruleset()?;
    if after != before {
        bail!(
            "after teardown the ruleset should be as before.\nbefore:\n{before}\nafter:\n{after}"
        );
    }
    Ok(())
}
