//! The seed's command line: the C course program the engine descends from
//! was called as `container_engine <root_fs> <container_name>
//! <container_ip>` and gave a shell in that root, with that hostname and
//! that address on the bridge. Installed or linked under that name, the
//! engine does the same: exactly three arguments, no options, the engine's
//! defaults for everything else (ENGINE_* variables included). Each of
//! the three is required, so nothing is ambiguous.

use engine::{exit, Config, SpecInput};

/// The seed program's name.
pub const SEED_NAME: &str = "container_engine";

const USAGE: &str = "usage: container_engine <root_fs> <container_name> <container_ip>";

/// Whether argv[0] is the seed program's name (any directory).
pub fn is_seed_invocation(args: &[String]) -> bool {
    args.first()
        .map(|a| a.rsplit('/').next().unwrap_or(a))
        .is_some_and(|name| name == SEED_NAME)
}

/// Runs the seed's command line; returns the exit status.
pub fn main(args: &[String]) -> i32 {
    let words = &args[1..];
    if words.len() == 1 && matches!(words[0].as_str(), "-h" | "--help") {
        println!("{USAGE}\n\nA shell in <root_fs> (a directory, or busybox, debian, centos), with hostname <container_name> and address <container_ip> on the engine's bridge (ENGINE_BRIDGE, default engine0, subnet ENGINE_SUBNET, default 192.168.1.0/24).\nThe engine's own command line has every option: engine run --help.");
        return 0;
    }
    let [rootfs, name, ip] = words else {
        eprintln!(
            "{SEED_NAME}: needs exactly three arguments, got {}: {USAGE} (`engine run --help` has the options)",
            words.len()
        );
        return exit::ENGINE_ERROR;
    };
    let input = SpecInput {
        rootfs: rootfs.clone(),
        name: Some(name.clone()),
        ip: Some(ip.clone()),
        userns: "auto".into(),
        net: "bridge".into(),
        ..SpecInput::default()
    };
    let cfg = Config::from_env();
    let result = engine::prepare(input, &cfg).and_then(|spec| engine::run(&spec, &cfg));
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("{SEED_NAME}: {err}");
            err.exit_code()
        }
    }
}
