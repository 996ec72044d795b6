//! Host facilities, each a leaf: arch (ELF), cgroup, state (persistence
//! only), lock, net, path (in-root resolution by path), and the confinement
//! primitives idrange (host ID ranges), idmap (detached and idmapped mounts,
//! fd passing) and openat (paths resolved inside the rootfs on fds, fd hygiene).
pub mod arch;
pub mod cgroup;
pub mod idmap;
pub mod idrange;
pub mod lock;
pub mod net;
pub mod openat;
pub mod path;
pub mod state;
