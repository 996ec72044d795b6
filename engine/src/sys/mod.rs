//! Host facilities, each a leaf: cgroup, state, net, arch (ELF), path (in-root resolution).
pub mod arch;
pub mod cgroup;
pub mod net;
pub mod path;
pub mod state;
