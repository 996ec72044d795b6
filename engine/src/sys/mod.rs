//! Host facilities, each a leaf: cgroup, state (persistence only), lock, net.
pub mod cgroup;
pub mod lock;
pub mod net;
pub mod state;
