//! Host side: launch, supervise, detach, exec into, lifecycle verbs, host setup.
pub mod host;
pub mod launch;
pub mod lifecycle;
