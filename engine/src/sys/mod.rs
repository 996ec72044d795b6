//! Host facilities, each a leaf: arch (ELF), caps, cgroup, state (persistence
//! only), lock, net, path (in-root resolution by path), and the confinement
//! primitives idrange (host ID ranges), idlease (their host-wide leases), idmap (detached and idmapped mounts,
//! fd passing) and openat (paths resolved inside the rootfs on fds, fd hygiene), seccomp (filters compiled to BPF),
//! devices (the cgroup v2 device filter, eBPF), hook (runs one OCI hook);
//! failpoint (the failpoints of every step, with the `failpoints` feature only).
pub mod arch;
pub mod caps;
pub mod cgroup;
pub mod console;
pub mod devices;
pub mod failpoint;
pub mod hook;
pub mod idlease;
pub mod idmap;
pub mod idrange;
pub mod lock;
pub mod net;
pub mod openat;
pub mod path;
pub mod random;
pub mod seccomp;
pub mod state;
