//! Host facilities, each a leaf: cgroup, state, net.
pub mod cgroup;
pub mod net;
pub mod state;
