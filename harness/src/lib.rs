//! The engine's integration harness: scenarios that prove isolation,
//! networking and cgroup v2 limits on a real kernel.
//!
//! `cargo test -p harness` runs `tests/scenarios.rs`, whose `main` is
//! [`main`]. It has two sides:
//!
//! - the **launcher** ([`launcher`]), the process cargo starts: it works out
//!   which scenarios were asked for, builds the fixtures that must be built on
//!   the host (the `debian` tarball), then runs the **runner** either directly
//!   (a host with root and cgroup v2 controllers: inside `unshare --net`) or in
//!   one QEMU guest booted by the `vm` crate (hosts with cgroup v1, like this
//!   project's machines). It then reports each scenario as its own libtest
//!   trial, with the runner's verdict and message.
//! - the **runner** ([`runner`]), the same test binary started with
//!   `HARNESS_INNER=1`: it prepares the rootfs fixtures on a filesystem that
//!   overlayfs accepts, runs every selected scenario in order, prints each
//!   result as it goes and appends it as a JSON line to `HARNESS_RESULTS`.

pub mod cgroup;
pub mod engine;
pub mod fixtures;
pub mod launcher;
pub mod plan;
pub mod process;
pub mod report;
pub mod runner;
pub mod scenarios;
pub mod token;

use std::process::ExitCode;

/// Set in the runner's environment; the same binary then runs scenarios
/// instead of launching them.
pub const INNER_VAR: &str = "HARNESS_INNER";

/// The entry point of the `scenarios` test binary.
pub fn main() -> ExitCode {
    if std::env::var_os(INNER_VAR).is_some_and(|v| v == "1") {
        runner::main()
    } else {
        launcher::main()
    }
}
