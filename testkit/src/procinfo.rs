//! What /proc says of a process (the `procfs` crate).

/// The start time of process `pid` in clock ticks since boot (field 22 of
/// /proc/PID/stat), as the engine's state records keep it.
pub fn start_time(pid: i32) -> u64 {
    procfs::process::Process::new(pid)
        .and_then(|p| p.stat())
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/stat: {e}"))
        .starttime
}
