//! The engine's scenarios on a real cgroup v2 kernel: directly on a host that
//! has one, otherwise in one QEMU guest. See `harness/README.md`.

fn main() -> std::process::ExitCode {
    harness::main()
}
