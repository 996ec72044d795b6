//! engine: a small Linux container engine.
//!
//! Files say where code runs: `launch` is the parent on the host, `init` is the
//! child inside the new namespaces before exec. `spec` is the only place input
//! is checked.

pub mod child;
pub mod image;
pub mod model;
pub mod parent;
pub mod sys;

/// Docker's exit codes for failures of the engine itself.
pub mod exit {
    /// The engine failed (bad input, setup error).
    pub const ENGINE_ERROR: i32 = 125;
    /// The command was found but could not be executed.
    pub const NOT_EXECUTABLE: i32 = 126;
    /// The command was not found.
    pub const NOT_FOUND: i32 = 127;
}
