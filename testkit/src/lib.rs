//! Test support shared by the engine's integration tests, the vm tests, the
//! harness and the benches. Each module is one small concern:
//!
//! - [`netns`]: move the calling thread into a new network namespace, and prove
//!   it; the namespace's inode and `ip_forward`;
//! - [`mountinfo`]: the mounts under a path (the `procfs` crate);
//! - [`at_exit`]: trees that statics made, removed when the test process exits;
//! - [`host`]: root required, a scratch directory;
//! - [`busybox`]: a busybox rootfs built from the host's busybox-static;
//! - [`cgroup`]: whether cgroup v2 limits are available here;
//! - [`elf`]: a program's machine and dynamic loader (the one ELF reader);
//! - [`wait`]: poll with a deadline; wait for a child, its output, a process
//!   to reap, a file or a line;
//! - [`procinfo`]: a process's start time, as the engine's records keep it;
//! - [`props`]: the property tests' case counts (`PROPTEST_CASES`);
//! - [`tarball`]: hostile tar entries with raw names, compression, a tree snapshot;
//! - [`quote`]: shell quoting and `which`, with a loud failure for a missing tool;
//! - [`oci`]: runc spec's `config.json`, for the tests' bundles;
//! - [`engine_cmd`]: the engine binary with a private state dir, cgroup root,
//!   bridge and subnet, and a timeout on every command.
//!
//! Everything here fails loudly: a missing prerequisite is an error that says
//! what to install, never a silent skip.

pub mod at_exit;
pub mod busybox;
pub mod cgroup;
pub mod dns;
pub mod elf;
pub mod engine_cmd;
pub mod host;
pub mod mountinfo;
pub mod mountns;
pub mod netns;
pub mod oci;
pub mod procinfo;
pub mod props;
pub mod quote;
pub mod tarball;
pub mod wait;
