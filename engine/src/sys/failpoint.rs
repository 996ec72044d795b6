//! Failpoints at every step of the verbs (issue 13), for the failpoint walk
//! (`tests/failpoints.rs`). Compiled in only with the `failpoints` cargo
//! feature: without it `step!` and `child_step!` expand to nothing, and the
//! binary holds no failpoint name and no `fail` code.
//!
//! Configured with the `fail` crate's `FAILPOINTS` variable
//! (`NAME=ACTION;NAME=ACTION`):
//! - `NAME=return`: the step fails; the engine exits 125 with
//!   `engine: failpoint NAME: injected failure`.
//! - `NAME=return(kill)`: the engine process that runs the step SIGKILLs
//!   itself right there. At a step of the container's child (before exec),
//!   the child tells its engine over the error pipe, and the engine kills
//!   itself where it waits for that pipe (the child then dies by its
//!   PDEATHSIG, as with any killed engine).
//!
//! `ENGINE_FAILPOINTS_TRACE=FILE` appends the name of every step passed to
//! FILE (one line each, from every process of the run): the walk learns
//! from it which failpoints a command passes.
//!
//! Names are `VERB.STEP` string literals; the unit test below lists them
//! from the source and checks that every fallible statement of the ordered
//! step functions has a failpoint before it.

/// A parent-side step: `step!("run.cgroup");` in a function whose error
/// converts from `Injected` (`anyhow::Error`, `engine::Error`,
/// `parent::Error`, `image::Error`).
#[cfg(feature = "failpoints")]
macro_rules! step {
    ($name:literal) => {
        if let Some(injected) = $crate::sys::failpoint::hit($name) {
            return Err(injected.into());
        }
    };
}

#[cfg(not(feature = "failpoints"))]
macro_rules! step {
    ($name:literal) => {};
}

/// A step of the container's child before exec: `child_step!(error_fd,
/// "child.mounts");` in a function returning the child's `Step`.
#[cfg(feature = "failpoints")]
macro_rules! child_step {
    ($error_fd:expr, $name:literal) => {
        if let Some(injected) = $crate::sys::failpoint::child_hit($error_fd, $name) {
            return Err(injected.into());
        }
    };
}

#[cfg(not(feature = "failpoints"))]
macro_rules! child_step {
    ($error_fd:expr, $name:literal) => {
        let _ = $error_fd;
    };
}

pub(crate) use {child_step, step};

#[cfg(feature = "failpoints")]
pub use imp::*;

#[cfg(feature = "failpoints")]
mod imp {
    use std::fs::File;
    use std::io::Write;
    use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
    use std::sync::OnceLock;

    /// The failure a `return` failpoint injects.
    #[derive(Debug, thiserror::Error)]
    #[error("failpoint {0}: injected failure")]
    pub struct Injected(pub &'static str);

    /// What a child writes on its error pipe to have its engine killed.
    pub const KILL_MARKER: &str = "\0failpoint-kill ";

    static TRACE: OnceLock<Option<File>> = OnceLock::new();

    /// Reads `FAILPOINTS` and opens the trace file; call first thing in main.
    /// The configuration lives as long as the process (and its clones).
    pub fn setup() {
        std::mem::forget(fail::FailScenario::setup());
        TRACE.get_or_init(|| {
            let path = std::env::var_os("ENGINE_FAILPOINTS_TRACE")?;
            std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(path)
                .ok()
        });
    }

    /// The trace file's fd, for the child's fd closing to keep (it is
    /// close-on-exec: it never reaches the container's command).
    pub fn trace_fd() -> Option<RawFd> {
        TRACE.get()?.as_ref().map(|f| f.as_raw_fd())
    }

    fn trace(name: &str) {
        if let Some(Some(file)) = TRACE.get() {
            // One write per line: O_APPEND keeps lines of several processes whole.
            let _ = (&*file).write_all(format!("{name}\n").as_bytes());
        }
    }

    fn kill_self() -> ! {
        // SIGKILL ends the whole process, whichever thread it is sent to.
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
        unreachable!("SIGKILL returned")
    }

    /// A parent-side step: `Some` to fail it; never returns in kill mode.
    pub fn hit(name: &'static str) -> Option<Injected> {
        trace(name);
        match fail::eval(name, |arg| arg)? {
            Some(arg) if arg == "kill" => kill_self(),
            _ => Some(Injected(name)),
        }
    }

    /// A step of the child: `Some` to fail it (reported like any failure);
    /// in kill mode the engine is told to kill itself, and we wait for our
    /// PDEATHSIG.
    pub fn child_hit(error_fd: BorrowedFd<'_>, name: &'static str) -> Option<Injected> {
        trace(name);
        match fail::eval(name, |arg| arg)? {
            Some(arg) if arg == "kill" => {
                let _ = rustix::io::write(error_fd, format!("{KILL_MARKER}{name}").as_bytes());
                loop {
                    rustix::event::pause();
                }
            }
            _ => Some(Injected(name)),
        }
    }

    /// Called by the engine with what its child reported so far.
    pub fn on_child_report(report: &str) {
        if report.starts_with(KILL_MARKER) {
            kill_self();
        }
    }
}

#[cfg(test)]
mod tests {
    //! The list of failpoints is the source: every `step!`/`child_step!`
    //! literal. These checks run in every `cargo test` (no feature needed).

    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};

    fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    fn src() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
    }

    /// Every failpoint name with the file it is in.
    pub fn failpoints() -> BTreeMap<String, Vec<PathBuf>> {
        let mut files = Vec::new();
        sources(&src(), &mut files);
        let mut out: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
        for file in files {
            if file.ends_with("sys/failpoint.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&file).unwrap();
            for name in names_in(&text) {
                out.entry(name).or_default().push(file.clone());
            }
        }
        out
    }

    /// The literals of `step!("..")` and `child_step!(fd, "..")`.
    fn names_in(text: &str) -> Vec<String> {
        let mut names = Vec::new();
        for (i, _) in text.match_indices("step!(") {
            let rest = &text[i + "step!(".len()..];
            let Some(open) = rest.find('"') else { continue };
            let Some(close) = rest[open + 1..].find('"') else {
                continue;
            };
            // The literal must be the macro's (before its closing paren).
            if rest[..open].contains(')') {
                continue;
            }
            names.push(rest[open + 1..open + 1 + close].to_string());
        }
        names
    }

    #[test]
    fn names_are_unique_and_well_formed() {
        let fps = failpoints();
        assert!(fps.len() > 30, "too few failpoints found: {fps:?}");
        for (name, files) in &fps {
            assert_eq!(files.len(), 1, "failpoint {name} is used twice: {files:?}");
            let ok = name.split_once('.').is_some_and(|(verb, step)| {
                !verb.is_empty()
                    && !step.is_empty()
                    && name.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_'
                    })
            });
            assert!(ok, "failpoint {name:?} is not VERB.STEP in lower case");
        }
    }

    /// The functions that are ordered lists of steps; a fallible statement
    /// (one with `?`) added to one of them must get its own failpoint.
    const ORDERED_STEPS: &[(&str, &str)] = &[
        ("lib.rs", "fn exec("),
        ("lib.rs", "fn stop("),
        ("lib.rs", "fn kill("),
        ("parent/run.rs", "fn run_with("),
        ("parent/run.rs", "fn take_name_log_and_cgroup("),
        ("parent/run.rs", "fn write_etc_files("),
        ("parent/run.rs", "fn wire_up("),
        ("parent/run.rs", "fn start("),
        ("parent/run.rs", "fn prepare_files("),
        ("parent/run.rs", "fn open_channels("),
        ("parent/run.rs", "fn clone_child("),
        ("parent/run.rs", "fn write_record("),
        ("parent/run.rs", "fn supervise_child("),
        ("parent/run.rs", "fn hand_over_to_monitor("),
        ("parent/run.rs", "fn send_mount_fds("),
        ("parent/run.rs", "fn reserve("),
        ("parent/run.rs", "fn address_and_veth("),
        ("parent/detach.rs", "fn run_detached("),
        ("parent/exec.rs", "fn exec_into("),
        ("parent/exec.rs", "fn join_container("),
        ("parent/exec.rs", "fn open_target("),
        ("parent/exec.rs", "fn start_relays("),
        ("parent/exec.rs", "fn hand_over_pty("),
        ("parent/create.rs", "fn create_init("),
        ("parent/create.rs", "fn open_init_channels<"),
        ("parent/create.rs", "fn join_here_by_path("),
        ("parent/create.rs", "fn wire_up_init("),
        ("parent/create.rs", "fn let_init_go("),
        ("oci/mod.rs", "fn create_inner("),
        ("oci/mod.rs", "fn open_inputs("),
        ("oci/mod.rs", "fn make_host_side("),
        ("oci/mod.rs", "fn start("),
        ("oci/mod.rs", "fn kill("),
        ("oci/mod.rs", "fn delete("),
        ("oci/exec.rs", "fn exec("),
        ("parent/host.rs", "fn setup("),
        ("parent/host.rs", "fn teardown("),
        ("parent/lifecycle.rs", "fn stop("),
        ("parent/lifecycle.rs", "fn rm("),
        ("child/mod.rs", "fn prepare_and_exec("),
        ("child/mod.rs", "fn become_the_container_s_root("),
        ("child/mod.rs", "fn oci_state_and_sysctls("),
        ("child/mod.rs", "fn enter_the_container_s_root("),
        ("child/mod.rs", "fn hostname_and_network("),
        ("child/join.rs", "fn join_and_exec("),
        ("child/exec.rs", "fn finish_and_exec("),
        ("child/exec.rs", "fn close_inherited_fds("),
        ("child/exec.rs", "fn gate_and_start_hooks("),
        ("image/mod.rs", "fn pull("),
        ("image/layout.rs", "fn import("),
        ("image/layout.rs", "fn unpack_archive("),
        ("image/layout.rs", "fn put_image("),
        ("image/store.rs", "fn add_layer("),
    ];

    /// Steps of an ordered function split out as functions: each is in
    /// ORDERED_STEPS (its body is checked, its first fallible statement
    /// needs its own failpoint), so a call of one is guarded by it.
    const STEP_FUNCTIONS: &[&str] = &[
        "take_name_log_and_cgroup(",
        "write_etc_files(",
        "wire_up(",
        "start(",
        "prepare_files(",
        "open_channels(",
        "clone_child(",
        "write_record(",
        "supervise_child(",
        "hand_over_to_monitor(",
        "address_and_veth(",
        "open_target(",
        "start_relays(",
        "hand_over_pty(",
        "open_init_channels(",
        "join_here_by_path(",
        "wire_up_init(",
        "let_init_go(",
        "open_inputs(",
        "make_host_side(",
        "become_the_container_s_root(",
        "oci_state_and_sysctls(",
        "enter_the_container_s_root(",
        "hostname_and_network(",
        "close_inherited_fds(",
        "gate_and_start_hooks(",
    ];

    /// The body of `fn NAME(` in `text`, by brace matching.
    fn body<'a>(text: &'a str, signature: &str) -> &'a str {
        let start = text
            .find(signature)
            .unwrap_or_else(|| panic!("{signature} not found"));
        let open = start + text[start..].find('{').unwrap();
        let mut depth = 0;
        for (i, c) in text[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        return &text[open + 1..open + i];
                    }
                }
                _ => {}
            }
        }
        panic!("{signature}: unbalanced braces");
    }

    /// The top-level statements of a body (an `if`/`match` block is one)
    /// that hold a `?` with no failpoint among the statements since the
    /// previous such one. Input checks (`Error::input`, `check_name`, a
    /// call into the pure `model`) are exempt: they create nothing; so is a
    /// call of a STEP_FUNCTIONS one.
    fn unguarded(body: &str) -> Vec<String> {
        let mut out = Vec::new();
        // The function's first fallible statement needs one too.
        let mut guarded = false;
        let (mut parens, mut braces) = (0i32, 0i32);
        let (mut in_string, mut escaped) = (false, false);
        // The statement's code, comments and string contents left out (a
        // `{:?}` in a string is no `?` operator).
        let mut code = String::new();
        let chars: Vec<char> = body.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            i += 1;
            if in_string {
                match c {
                    '\\' => escaped = !escaped,
                    '"' if !escaped => in_string = false,
                    _ => escaped = false,
                }
                continue;
            }
            if c == '/' && chars.get(i) == Some(&'/') {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
                continue;
            }
            code.push(c);
            let end = match c {
                '"' => {
                    in_string = true;
                    false
                }
                '(' | '[' => {
                    parens += 1;
                    false
                }
                ')' | ']' => {
                    parens -= 1;
                    false
                }
                '{' => {
                    braces += 1;
                    false
                }
                // An `if` block ends its statement unless an `else` follows.
                '}' => {
                    braces -= 1;
                    let rest: String = chars[i..].iter().collect();
                    braces == 0 && parens == 0 && !rest.trim_start().starts_with("else")
                }
                ';' => braces == 0 && parens == 0,
                _ => false,
            };
            if !end {
                continue;
            }
            let input_check = code.contains("Error::input")
                || code.contains("check_name(")
                || code.contains("model::");
            let step_function = STEP_FUNCTIONS.iter().any(|f| {
                code.match_indices(f).any(|(at, _)| {
                    at == 0
                        || !code[..at].ends_with(|c: char| {
                            c.is_alphanumeric() || c == '_' || c == '.' || c == ':'
                        })
                })
            });
            if code.contains("step!(") {
                guarded = true;
            } else if code.contains('?') && !input_check && !step_function {
                if !guarded {
                    out.push(code.split_whitespace().collect::<Vec<_>>().join(" "));
                }
                guarded = false;
            }
            code.clear();
        }
        out
    }

    #[test]
    fn every_fallible_step_has_a_failpoint() {
        let mut missing = Vec::new();
        for (file, signature) in ORDERED_STEPS {
            let text = std::fs::read_to_string(src().join(file)).unwrap();
            for stmt in unguarded(body(&text, signature)) {
                missing.push(format!("{file} {signature}..): {stmt}"));
            }
        }
        assert!(
            missing.is_empty(),
            "fallible steps without a failpoint (add `step!(\"VERB.STEP\")` before each):\n{}",
            missing.join("\n")
        );
    }
}
