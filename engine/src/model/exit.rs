//! Docker's exit codes for failures of the engine itself.

/// The engine failed (bad input, setup error).
pub const ENGINE_ERROR: i32 = 125;
/// The command was found but could not be executed.
pub const NOT_EXECUTABLE: i32 = 126;
/// The command was not found.
pub const NOT_FOUND: i32 = 127;
