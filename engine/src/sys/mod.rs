//! Host facilities, each a leaf: cgroup, state, net, caps, seccomp.
pub mod caps;
pub mod cgroup;
pub mod net;
pub mod seccomp;
pub mod state;
