//! Host facilities, each a leaf: cgroup, state (persistence only), lock, net,
//! and the confinement primitives idrange (host ID ranges), idmap (detached
//! and idmapped mounts, fd passing) and openat (paths resolved inside the
//! rootfs, fd hygiene).
pub mod cgroup;
pub mod idmap;
pub mod idrange;
pub mod lock;
pub mod net;
pub mod openat;
pub mod state;
