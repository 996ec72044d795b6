//! Property tests (proptest) of every input parser in `engine::model` and the
//! facilities they call: arbitrary strings never panic, accepted values obey
//! the invariants the rest of the engine relies on, and values printed back
//! parse to the same thing. Pure: no root, no host access.
//!
//! Each property runs 128 cases by default (the whole file in a few seconds);
//! `PROPTEST_CASES=100000 cargo test -p engine --test props` runs it as a
//! longer fuzzing session.

use engine::model::env::{parse_env, parse_workdir};
use engine::model::limits::{
    parse_cpus, parse_layer_size, parse_memory, parse_pids, parse_size, MIN_LAYER_SIZE, MIN_MEMORY,
};
use engine::model::names::{check_hostname, check_name};
use engine::model::network::{parse_network, Network};
use engine::model::ports::{
    parse_add_host, parse_dns, parse_publish, parse_publishes, parse_search, parse_server,
};
use engine::model::security::{self, SeccompChoice, SecurityInput};
use engine::model::spec::{Request, SpecInput};
use engine::model::subnet::NetConfig;
use engine::model::userns::{
    check_base, parse_userns, suggest_base, HostIds, UserNs, UserNsChoice, USERNS_SIZE,
};
use engine::model::volumes::parse_volume;
use engine::parent::lifecycle::{parse_signal, signal_name};
use engine::sys::caps::CapSet;
use engine::sys::idrange::IdPool;
use engine::sys::net::dns;
use engine::sys::seccomp::{self, sock_filter, Arch, Profile};
use engine::Config;
use nix::sys::signal::Signal;
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Component, Path};

/// Any string, or one made of the characters a parser of this kind cares
/// about (random strings alone seldom get past the first check).
fn text(alphabet: &'static str) -> BoxedStrategy<String> {
    prop_oneof![
        any::<String>(),
        proptest::string::string_regex(alphabet).unwrap()
    ]
    .boxed()
}

fn size_text() -> BoxedStrategy<String> {
    text("[ 0-9.kKmMgGtTbBe+-]{0,24}")
}

const SUFFIXES: [(&str, u32); 9] = [
    ("", 0),
    ("b", 0),
    ("k", 10),
    ("K", 10),
    ("kb", 10),
    ("M", 20),
    ("mb", 20),
    ("G", 30),
    ("T", 40),
];

proptest! {
    #![proptest_config(testkit::props::config(128))]

    // Sizes, CPUs, pids.

    #[test]
    fn sizes_never_panic_and_are_positive(s in size_text()) {
        if let Some(bytes) = parse_size(&s) {
            prop_assert!(bytes >= 1, "{s:?} gave {bytes}");
        }
        if let Ok(bytes) = parse_memory(&s) {
            prop_assert!(bytes >= MIN_MEMORY);
        }
        if let Ok(bytes) = parse_layer_size(&s) {
            prop_assert!(bytes >= MIN_LAYER_SIZE);
        }
    }

    /// A whole number with any suffix is exactly that many bytes times the
    /// suffix, when that fits 64 bits; otherwise it is refused, never wrapped.
    #[test]
    fn whole_sizes_round_trip(n in prop_oneof![1u64..1 << 20, any::<u64>()], suffix in 0..SUFFIXES.len()) {
        let (text, shift) = SUFFIXES[suffix];
        let expected = n.checked_mul(1u64 << shift);
        let got = parse_size(&format!("{n}{text}"));
        prop_assert_eq!(got, expected, "{}{}", n, text);
    }

    #[test]
    fn cpus_accepted_give_a_positive_quota(s in text("[ 0-9.eE+-]{0,12}|[0-9]{0,3}\\.[0-9]{0,6}")) {
        if let Ok(cpus) = parse_cpus(&s) {
            prop_assert!(cpus.is_finite() && cpus >= 0.01, "{s:?} gave {cpus}");
            // The cgroup facility writes `QUOTA 100000` to cpu.max. An
            // absurd count ("1e20") is the host check's to refuse: it
            // names the host's CPUs.
            let quota = (cpus * 100_000.0).round();
            prop_assert!(quota >= 1000.0, "{s:?} gave quota {quota}");
        }
    }

    #[test]
    fn cpus_print_and_parse_back(hundredths in 1u32..100_000) {
        let cpus = f64::from(hundredths) / 100.0;
        prop_assert_eq!(parse_cpus(&cpus.to_string()).unwrap(), cpus);
    }

    #[test]
    fn pids_limit(s in text("[ 0-9+-]{0,22}"), n in 1u64..) {
        if let Ok(p) = parse_pids(&s) {
            prop_assert!(p > 0);
        }
        prop_assert_eq!(parse_pids(&n.to_string()).unwrap(), n);
    }

    // Names.

    /// An accepted name is one safe file name (the state record, the log,
    /// the cgroup leaf and the nft chains are named after it).
    #[test]
    fn names_accepted_are_safe_file_names(s in text("[A-Za-z0-9_./ -]{0,70}")) {
        if let Ok(name) = check_name(&s) {
            prop_assert_eq!(&name, &s);
            prop_assert!(!name.is_empty() && name.len() <= 63);
            prop_assert!(name != "." && name != "..");
            prop_assert!(!name.starts_with(['.', '-']), "{name:?}");
            prop_assert!(name.bytes().all(|b| b.is_ascii_graphic() && b != b'/'), "{name:?}");
            let mut parts = Path::new(&name).components();
            prop_assert_eq!(parts.next(), Some(Component::Normal(name.as_ref())));
            prop_assert_eq!(parts.next(), None);
        }
    }

    /// An accepted hostname fits the kernel's 64 bytes and can be written on a
    /// line of /etc/hosts and /etc/hostname as it is.
    #[test]
    fn hostnames_accepted_are_one_word(s in text("[A-Za-z0-9.# \t\n-]{0,70}")) {
        if let Ok(h) = check_hostname(&s) {
            prop_assert!(!h.is_empty() && h.len() <= 64);
            prop_assert!(h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'), "{h:?}");
            prop_assert!(!h.starts_with('.') && !h.ends_with('.') && !h.contains(".."), "{h:?}");
        }
    }

    // Environment and working directory.

    #[test]
    fn env_accepted_prints_back(
        // Only KEY=VALUE: a bare KEY reads the test's own environment.
        s in (text("[A-Za-z_=\u{0}\n]{0,6}"), text("[A-Za-z_=\u{0}\n]{0,6}")).prop_map(|(k, v)| format!("{k}={v}")),
    ) {
        if let Ok((k, v)) = parse_env(&s) {
            prop_assert!(!k.is_empty() && !k.contains(['=', '\0']) && !v.contains('\0'));
            prop_assert_eq!(format!("{k}={v}"), s.clone());
            prop_assert_eq!(parse_env(&s).unwrap(), (k, v));
        } else {
            prop_assert!(s.starts_with('=') || s.contains('\0'), "{s:?} refused");
        }
    }

    #[test]
    fn workdir_accepted_is_absolute(s in text("[/a.\u{0}]{0,8}")) {
        if let Ok(dir) = parse_workdir(Some(s.clone())) {
            prop_assert!(dir.is_absolute());
            prop_assert!(!s.contains('\0'), "{s:?} accepted");
        }
    }

    // Volumes.

    /// An accepted target is absolute and never climbs; both paths are
    /// usable as C strings; `HOST:TARGET[:ro]` prints back to the same volume.
    #[test]
    fn volumes_accepted_stay_inside(s in text("[/a.:\u{0}rowx]{0,16}")) {
        if let Ok(v) = parse_volume(&s) {
            prop_assert!(v.container.is_absolute(), "{s:?}");
            prop_assert!(v.container.components().all(|c| c != Component::ParentDir), "{s:?}");
            for p in [&v.host, &v.container] {
                prop_assert!(!p.to_string_lossy().contains('\0'), "{s:?} accepted a NUL byte");
                prop_assert!(!p.as_os_str().is_empty(), "{s:?} accepted an empty path");
            }
            let printed = format!(
                "{}:{}{}",
                v.host.display(),
                v.container.display(),
                if v.readonly { ":ro" } else { "" }
            );
            prop_assert_eq!(parse_volume(&printed).unwrap(), v);
        }
    }

    // User namespaces.

    /// An accepted base maps container root to neither host root nor a
    /// host user (below 65536), and its 65536 IDs fit.
    #[test]
    fn userns_bases_fit(
        s in text("[0-9a-z]{0,11}"),
        base in prop_oneof![any::<u32>(), 0u32..70_000],
    ) {
        if let Ok(UserNsChoice::Fixed(UserNs::Map { uid, gid })) = parse_userns(&s) {
            prop_assert!(uid >= USERNS_SIZE && gid >= USERNS_SIZE, "{}", s);
            prop_assert!(uid.checked_add(USERNS_SIZE).is_some() && gid.checked_add(USERNS_SIZE).is_some());
        }
        let parsed = parse_userns(&base.to_string());
        if base >= USERNS_SIZE && base.checked_add(USERNS_SIZE).is_some() {
            prop_assert_eq!(parsed.unwrap(), UserNsChoice::Fixed(UserNs::Map { uid: base, gid: base }));
        } else {
            let err = parsed.unwrap_err().to_string();
            prop_assert!(err.contains("--userns"), "{}", err);
        }
    }

    /// A base `check_base` accepts is a multiple of 65536, at least 65536,
    /// and its range fits below 2^32 - 1 and overlaps neither the pool nor
    /// any of the host's IDs; the suggested base is one it accepts.
    #[test]
    fn shift_bases_accepted_overlap_nothing(
        base in prop_oneof![any::<u32>(), (0u32..65536).prop_map(|i| i * 65536)],
        pool_start in 1u32..32768,
        pool_ranges in 1u32..4096,
        host in prop::collection::vec((any::<u32>(), 1u32..200_000), 0..6),
    ) {
        let pool = IdPool::new(pool_start * 65536, pool_ranges * 65536);
        prop_assume!(pool.is_ok());
        let pool = pool.unwrap();
        let host: Vec<HostIds> = host
            .into_iter()
            .map(|(start, count)| HostIds { start, count: count.min(u32::MAX - start), what: format!("{start}+{count}") })
            .collect();
        let overlaps = |b: u64, s: u64, n: u64| b < s + n && s < b + 65536;
        if check_base(base, &pool, &host).is_ok() {
            let b = u64::from(base);
            prop_assert!(base >= USERNS_SIZE && base % USERNS_SIZE == 0 && b + 65536 <= u64::from(u32::MAX));
            prop_assert!(!overlaps(b, u64::from(pool.start()), pool.end() - u64::from(pool.start())));
            for h in &host {
                prop_assert!(!overlaps(b, u64::from(h.start), u64::from(h.count)), "{:?}", h);
            }
        }
        if let Some(s) = suggest_base(&pool, &host, &host) {
            prop_assert!(check_base(s, &pool, &host).is_ok());
        }
    }

    // Signals.

    #[test]
    /// nix's signal list is the oracle: the engine's own table (rustix has
    /// no names) takes the same names and numbers and names them the same.
    fn signals_by_name_and_number(s in text("[A-Za-z0-9+-]{0,10}"), i in 0..Signal::iterator().count(), n in -5i32..80) {
        prop_assert_eq!(parse_signal(&s).is_ok(), nix_parse(&s).is_some(), "{}", s);
        prop_assert_eq!(parse_signal(&n.to_string()).is_ok(), Signal::try_from(n).is_ok(), "{}", n);
        let sig = Signal::iterator().nth(i).unwrap();
        let name = sig.as_str();
        let bare = name.strip_prefix("SIG").unwrap();
        for form in [name.to_string(), bare.to_string(), bare.to_ascii_lowercase(), (sig as i32).to_string()] {
            let parsed = parse_signal(&form).unwrap();
            prop_assert_eq!(parsed.as_raw(), sig as i32, "{}", form);
            prop_assert_eq!(signal_name(parsed), name, "{}", form);
        }
    }

    // Addresses and subnets.

    /// An accepted subnet has a gateway and at least one container address,
    /// none of them the network or broadcast address, and prints back.
    #[test]
    fn subnets_accepted_have_a_usable_gateway(
        s in text("[0-9./]{0,20}"),
        addr in any::<u32>(),
        prefix in 0u8..=33,
    ) {
        let arbitrary = NetConfig::new("engine0", &s);
        let made = format!("{}/{prefix}", Ipv4Addr::from(addr));
        for net in [arbitrary, NetConfig::new("engine0", &made)].into_iter().flatten() {
            prop_assert!((1..=30).contains(&net.prefix), "{net:?}");
            prop_assert!(net.contains(net.gateway));
            prop_assert!(net.gateway != net.network && net.gateway != net.broadcast());
            let first = net.lowest_free(&[]).unwrap();
            prop_assert!(net.contains(first) && first != net.gateway && first != net.broadcast());
            prop_assert!(!net.network.is_loopback() && !net.network.is_multicast() && !net.network.is_unspecified());
            prop_assert_eq!(NetConfig::new("engine0", &net.subnet()).unwrap(), net.clone());
            prop_assert_eq!(net.parse_container_ip(&first.to_string()).unwrap(), first);
            prop_assert!(net.parse_container_ip(&net.gateway.to_string()).is_err());
        }
    }

    /// A container address accepted is a host address of the subnet other
    /// than the gateway's; the lowest free address never repeats a used one.
    #[test]
    fn container_addresses_accepted_are_usable(
        s in text("[0-9./]{0,18}"),
        host in any::<u8>(),
        used in proptest::collection::vec(any::<u8>(), 0..8),
    ) {
        let net = NetConfig::new("engine0", "10.88.7.0/24").unwrap();
        for ip in [s, format!("10.88.7.{host}"), format!("10.88.7.{host}/24")] {
            if let Ok(ip) = net.parse_container_ip(&ip) {
                prop_assert!(net.contains(ip));
                prop_assert!(![net.network, net.gateway, net.broadcast()].contains(&ip), "{ip}");
            }
        }
        let used: Vec<Ipv4Addr> = used.iter().map(|h| Ipv4Addr::new(10, 88, 7, *h)).collect();
        let free = net.lowest_free(&used).unwrap();
        prop_assert!(!used.contains(&free) && net.parse_container_ip(&free.to_string()).is_ok());
    }

    #[test]
    fn bridge_names_accepted_are_interface_names(b in text("[a-z0-9./:% -]{0,18}")) {
        if let Ok(net) = NetConfig::new(&b, "10.88.7.0/24") {
            prop_assert!((1..=15).contains(&net.bridge.len()));
            prop_assert!(net.bridge != "." && net.bridge != "..");
            prop_assert!(!net.bridge.contains(['/', ':', '%']) && !net.bridge.chars().any(char::is_whitespace));
        }
    }

    #[test]
    fn network_modes(mode in text("bridge|none|[a-z]{0,6}|container:[a-z0-9:/.-]{0,8}"), ip in proptest::option::of(text("[0-9./]{0,18}"))) {
        if let Ok(n) = parse_network(&mode, ip.as_deref(), "engine0", "10.88.7.0/24") {
            match n {
                Network::None => prop_assert!(mode == "none" && ip.is_none()),
                Network::Bridge { .. } => prop_assert_eq!(mode.as_str(), "bridge"),
                Network::Container(name) => {
                    prop_assert!(ip.is_none());
                    prop_assert_eq!(format!("container:{name}"), mode);
                    prop_assert!(check_name(&name).is_ok());
                }
            }
        }
    }

    // --tmpfs, --mount, --env-file, -u: refused with a sentence or
    // accepted with a target the child can resolve in the root.

    #[test]
    fn tmpfs_and_mount_targets_accepted_are_absolute_without_dot_dot(
        t in text("[/a-z.]{0,8}(:[a-z0-9=%,]{0,16})?"),
        m in text("((type|src|dst|target|ro|readonly|tmpfs-size|tmpfs-mode|x)(=[a-z0-9/.]{0,6})?,?){0,5}"),
    ) {
        let targets = [
            engine::model::mounts::parse_tmpfs(&t).ok().map(|t| t.destination),
            engine::model::mounts::parse_mount(&m).ok().map(|m| match m {
                engine::model::mounts::Mount::Bind(v) => v.container,
                engine::model::mounts::Mount::Tmpfs(t) => t.destination,
            }),
        ];
        for target in targets.into_iter().flatten() {
            prop_assert!(target.is_absolute(), "{}", target.display());
            prop_assert!(!target.components().any(|c| c == Component::ParentDir));
        }
    }

    #[test]
    fn env_file_words_are_what_dash_e_accepts(text in proptest::collection::vec(any::<u8>(), 0..64)) {
        if let Ok(words) = engine::model::env::parse_env_file("f", &text, |_| Some("v".into())) {
            for w in words {
                prop_assert!(w.contains('='));
                prop_assert!(parse_env(&w).is_ok(), "{w:?}");
            }
        }
    }

    // Published ports, --dns, --dns-search, --add-host.

    #[test]
    fn published_ports_print_and_parse_back(
        s in text("[0-9.:/a-z]{0,24}"),
        ip in any::<Option<u32>>(),
        host_port in any::<u16>(),
        container_port in any::<u16>(),
        udp in any::<bool>(),
    ) {
        if let Ok(m) = parse_publish(&s) {
            prop_assert!(m.host_port > 0 && m.container_port > 0);
            prop_assert!(m.host_ip.is_none_or(|ip| !ip.is_unspecified()));
        }
        let proto = if udp { "udp" } else { "tcp" };
        let ip = ip.map(|a| format!("{}:", Ipv4Addr::from(a))).unwrap_or_default();
        let text = format!("{ip}{host_port}:{container_port}/{proto}");
        match parse_publish(&text) {
            Ok(m) => {
                prop_assert!(host_port > 0 && container_port > 0);
                let printed = format!(
                    "{}:{}:{}/{}",
                    m.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED),
                    m.host_port,
                    m.container_port,
                    m.proto.as_str()
                );
                prop_assert_eq!(parse_publish(&printed).unwrap(), m);
                // `ps` shows docker's `0.0.0.0:8080->80/tcp`.
                prop_assert_eq!(m.to_string(), printed.replacen(':', "\u{0}", 1).replacen(':', "->", 1).replacen('\u{0}', ":", 1));
            }
            Err(_) => prop_assert!(host_port == 0 || container_port == 0, "{text} refused"),
        }
    }

    #[test]
    fn published_ports_accepted_never_clash(ports in proptest::collection::vec(("(127\\.0\\.0\\.1:|0\\.0\\.0\\.0:)?", 1u16..4, 1u16..4, "/tcp|/udp|"), 0..5)) {
        let args: Vec<String> = ports.iter().map(|(ip, h, c, p)| format!("{ip}{h}:{c}{p}")).collect();
        if let Ok(maps) = parse_publishes(&args) {
            for (i, a) in maps.iter().enumerate() {
                for b in &maps[i + 1..] {
                    prop_assert!(!a.clashes_with(b) && !b.clashes_with(a), "{a} and {b}");
                }
            }
        }
    }

    /// What --dns, --dns-search and --add-host accept is written into
    /// resolv.conf and hosts, one item per word, and reads back the same.
    #[test]
    fn dns_options_print_and_parse_back(
        server in text("[0-9a-f.:]{0,16}"),
        search in text("[a-z0-9.\t -]{0,20}"),
        host in text("[a-z0-9.:\t -]{0,24}"),
        ip in any::<IpAddr>(),
        name in "[a-z]([a-z0-9-]{0,8}[a-z0-9])?(\\.[a-z0-9]{1,5}){0,2}",
    ) {
        if let Ok(ip) = parse_server(&server) {
            prop_assert_eq!(parse_server(&ip.to_string()).unwrap(), ip);
        }
        if let Ok(domain) = parse_search(&search) {
            prop_assert!(!domain.is_empty() && domain.len() <= 253 && !domain.ends_with('.'));
            prop_assert!(domain.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'), "{domain:?}");
        }
        if let Ok((n, _)) = parse_add_host(&host) {
            prop_assert!(!n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'), "{n:?}");
        }
        let opts = parse_dns(&[ip.to_string()], &[format!("{name}.")], &[format!("{name}:{ip}")]).unwrap();
        prop_assert_eq!(&opts.hosts, &vec![(name.clone(), ip)]);
        let asked = dns::Asked { servers: &opts.servers, search: &opts.search, hosts: &opts.hosts };
        let resolv = dns::resolv_conf("nameserver 192.0.2.1\n", None, asked);
        prop_assert!(resolv.lines().any(|l| l.split_whitespace().eq(["search", name.as_str()])), "{resolv}");
        let server_line = format!("nameserver {ip}");
        prop_assert!(resolv.lines().any(|l| l == server_line), "{resolv}");
        let hosts = dns::hosts("h", "h", None, asked);
        let last: Vec<&str> = hosts.lines().last().unwrap().split_whitespace().collect();
        let ip_text = ip.to_string();
        prop_assert_eq!(last, [ip_text.as_str(), name.as_str()]);
    }

    // Security options.

    #[test]
    fn security_options_never_panic(
        opts in proptest::collection::vec(text("(seccomp|no-new-privileges|apparmor)?[=:]?[a-z/.]{0,10}"), 0..3),
        caps in proptest::collection::vec(text("(CAP_)?[A-Za-z_]{0,16}|ALL|all"), 0..3),
        privileged in any::<bool>(),
    ) {
        let input = SecurityInput {
            cap_add: caps.clone(),
            cap_drop: caps.iter().rev().cloned().collect(),
            privileged,
            security_opt: opts,
        };
        if let Ok(r) = security::parse(&input) {
            if let SeccompChoice::Profile(p) = &r.seccomp {
                prop_assert!(!p.as_os_str().is_empty());
            }
            if privileged {
                prop_assert_eq!(r.seccomp, SeccompChoice::Unconfined);
                prop_assert!(caps.is_empty());
            }
            prop_assert_eq!(r.caps, CapSet::from_bits(r.caps.bits()));
        }
    }

    /// A capability set printed as `--cap-drop ALL --cap-add NAME...` is the
    /// same set again, in any case and with or without `CAP_`.
    #[test]
    fn capability_sets_print_and_parse_back(bits in any::<u64>(), prefix in any::<bool>(), lower in any::<bool>()) {
        let set = CapSet::from_bits(bits);
        let names: Vec<String> = set
            .iter()
            .map(|c| {
                let n = if prefix { format!("CAP_{}", c.name()) } else { c.name().to_string() };
                if lower { n.to_ascii_lowercase() } else { n }
            })
            .collect();
        prop_assert_eq!(CapSet::from_options(&names, &["ALL"]).unwrap(), set);
    }

    // Hostile files from a rootfs or the user: a seccomp profile, an ELF
    // header, the host's resolv.conf.

    /// A profile in docker's JSON, well-formed or not, is refused or
    /// compiles to a program the kernel would take: every jump lands inside
    /// it, every load reads inside `struct seccomp_data`, and it ends in a return.
    #[test]
    fn seccomp_profiles_compile_to_valid_bpf(json in prop_oneof![any::<String>(), docker_profile()]) {
        let Ok(profile) = Profile::from_docker_json(&json, &CapSet::podman_default()) else {
            return Ok(());
        };
        for arch in [Arch::X86_64, Arch::Aarch64] {
            if let Ok(program) = seccomp::compile(&profile, arch) {
                if let Err(why) = check_bpf(&program) {
                    prop_assert!(false, "{arch:?}: {why} in the program of {json}");
                }
            }
        }
    }

    #[test]
    fn elf_headers_never_panic(bytes in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200),
        (prop::collection::vec(any::<u8>(), 0..300), any::<bool>(), any::<bool>()).prop_map(|(mut b, class64, le)| {
            // An ELF magic, class and byte order, then anything.
            let head = [0x7f, b'E', b'L', b'F', if class64 { 2 } else { 1 }, if le { 1 } else { 2 }];
            b.splice(0..0, head);
            b
        }),
    ]) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bin");
        std::fs::write(&path, &bytes).unwrap();
        for program_headers in [false, true] {
            let _ = engine::sys::arch::read_elf(&path, program_headers);
        }
        let _ = engine::sys::arch::elf_machine(&path);
    }

    #[test]
    fn resolv_conf_keeps_only_addresses(host in text("((nameserver|search|options|domain) [0-9a-z.:%]{0,12}\n){0,4}")) {
        let out = dns::resolv_conf(&host, None, dns::Asked::default());
        for line in out.lines() {
            if let Some(ip) = line.strip_prefix("nameserver ") {
                prop_assert!(ip.parse::<IpAddr>().is_ok(), "{line:?} from {host:?}");
            }
        }
    }
}

proptest! {
    // Thirty-two cases: ten arbitrary strings each, slow to generate in a debug build.
    #![proptest_config(testkit::props::config(32))]

    // The whole request: any input is refused or accepted, never a panic.

    #[test]
    fn requests_never_panic(
        fields in proptest::collection::vec(any::<String>(), 10),
        lists in proptest::collection::vec(proptest::collection::vec(any::<String>(), 0..2), 6),
    ) {
        let cfg = Config {
            state_dir: "/nonexistent/state".into(),
            data_dir: "/nonexistent/data".into(),
            bridge: "engine0".into(),
            subnet: "10.88.7.0/24".into(),
            cgroup_root: "/nonexistent/cgroup".into(),
            rootfs_cache: "/nonexistent/cache".into(),
        };
        let f = |i: usize| Some(fields[i].clone());
        let input = SpecInput {
            rootfs: fields[0].clone(),
            name: f(1),
            ip: f(2),
            cpus: f(3),
            memory: f(4),
            pids_limit: f(5),
            hostname: f(6),
            workdir: f(7),
            layer_size: f(8),
            log_size_max: f(9),
            command: lists[0].clone(),
            env: lists[1].iter().map(|e| format!("{e}=")).collect(),
            volumes: lists[2].clone(),
            publish: lists[3].clone(),
            dns: lists[4].clone(),
            add_host: lists[5].clone(),
            userns: "auto".into(),
            net: "bridge".into(),
            ..SpecInput::default()
        };
        let _ = Request::parse(input, &cfg, || 0);
    }
}

/// Docker's profile format with the fields this engine reads, values drawn
/// from the valid ones and a few that are not.
fn docker_profile() -> impl Strategy<Value = String> {
    let action = || {
        prop_oneof![
            9 => prop::sample::select(vec![
                "SCMP_ACT_ALLOW",
                "SCMP_ACT_ERRNO",
                "SCMP_ACT_KILL",
                "SCMP_ACT_KILL_PROCESS",
                "SCMP_ACT_TRAP",
                "SCMP_ACT_LOG",
            ]),
            1 => prop::sample::select(vec!["SCMP_ACT_TRACE", "SCMP_ACT_BOGUS"]),
        ]
    };
    let op = prop::sample::select(vec![
        "SCMP_CMP_EQ",
        "SCMP_CMP_NE",
        "SCMP_CMP_LT",
        "SCMP_CMP_LE",
        "SCMP_CMP_GT",
        "SCMP_CMP_GE",
        "SCMP_CMP_MASKED_EQ",
    ]);
    let arg = (
        prop_oneof![9 => 0u8..6, 1 => 6u8..=255],
        any::<u64>(),
        any::<u64>(),
        op,
    )
        .prop_map(|(index, value, two, op)| {
            format!(r#"{{"index": {index}, "value": {value}, "valueTwo": {two}, "op": "{op}"}}"#)
        });
    let names = prop::collection::vec(
        prop::sample::select(vec![
            "read",
            "write",
            "clone",
            "mount",
            "ptrace",
            "nosuchcall",
            "",
        ]),
        0..4,
    );
    let syscall = (
        names,
        action(),
        prop::option::of(0u16..200),
        prop::collection::vec(arg, 0..3),
    )
        .prop_map(|(names, action, errno, args)| {
            let errno = errno
                .map(|e| format!(r#", "errnoRet": {e}"#))
                .unwrap_or_default();
            format!(
                r#"{{"names": {names:?}, "action": "{action}"{errno}, "args": [{}]}}"#,
                args.join(", ")
            )
        });
    (action(), prop::collection::vec(syscall, 0..6)).prop_map(|(default, calls)| {
        format!(
            r#"{{"defaultAction": "{default}", "syscalls": [{}]}}"#,
            calls.join(", ")
        )
    })
}

/// Why `program` would not pass the kernel's check of a classic BPF
/// seccomp filter, as far as the engine's programs use it.
fn check_bpf(program: &[sock_filter]) -> Result<(), String> {
    const SECCOMP_DATA_LEN: u32 = 64;
    if program.is_empty() || program.len() > 4096 {
        return Err(format!("{} instructions", program.len()));
    }
    for (pc, i) in program.iter().enumerate() {
        let class = i.code & 0x07;
        let after = pc + 1;
        match class {
            // BPF_LD | BPF_W | BPF_ABS: a 32-bit word of seccomp_data.
            0x00 if i.code == 0x20 && (i.k % 4 != 0 || i.k + 4 > SECCOMP_DATA_LEN) => {
                return Err(format!("load of offset {} at {pc}", i.k));
            }
            0x05 => {
                let targets = if i.code & 0xf0 == 0x00 {
                    vec![after as u64 + u64::from(i.k)]
                } else {
                    vec![
                        (after + usize::from(i.jt)) as u64,
                        (after + usize::from(i.jf)) as u64,
                    ]
                };
                if targets.iter().any(|&t| t >= program.len() as u64) {
                    return Err(format!("jump out of the program at {pc}"));
                }
            }
            _ => {}
        }
    }
    match program.last().map(|i| i.code & 0x07) {
        Some(0x06) => Ok(()),
        _ => Err("no return at the end".into()),
    }
}

// Cases the properties found, kept as fixed regressions.

/// What nix's parsing (the engine's before rustix) accepted.
fn nix_parse(s: &str) -> Option<Signal> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).ok();
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse().ok()
}
