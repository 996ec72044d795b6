//! `engine run -d`: a supervisor process of its own, in a new session, with
//! the container's output going to its log.

use super::{pipe, run::run_with, ExitError};
use crate::model::config::Config;
use crate::model::exit;
use crate::model::spec::Spec;
use crate::sys::failpoint::step;
use anyhow::{bail, Context, Result};
use std::fs::File;
use std::io::{Read, Write};

/// `engine run -d`: a supervisor process of its own, in a new session, runs
/// the container; we return once PID 1 has exec'd, or with its error.
pub fn run_detached(spec: &Spec, cfg: &Config) -> Result<()> {
    step!("detach.notify_pipe");
    let (notify_read, notify_write) = pipe()?;
    step!("detach.fork");
    // SAFETY: single-threaded; the child only calls async-signal-safe code
    // until it proceeds like a fresh engine process.
    match unsafe { super::fork() }.context("cannot fork the supervisor")? {
        None => {
            drop(notify_read);
            let _ = rustix::process::setsid();
            let mut notify = Some(File::from(notify_write));
            let result = run_with(spec, cfg, |_| {
                if let Some(mut n) = notify.take() {
                    let _ = n.write_all(b"S");
                }
            });
            let code = match result {
                Ok(code) => code,
                Err(err) => {
                    let code = err
                        .downcast_ref::<ExitError>()
                        .map_or(exit::ENGINE_ERROR, |e| e.code);
                    match notify.take() {
                        Some(mut n) => {
                            let _ = write!(n, "E{code} {err:#}");
                        }
                        None => eprintln!("engine: {err:#}"),
                    }
                    code
                }
            };
            std::process::exit(code)
        }
        Some(_) => {
            drop(notify_write);
            let mut reply = String::new();
            let _ = File::from(notify_read).read_to_string(&mut reply);
            if reply == "S" {
                return Ok(());
            }
            let Some(rest) = reply.strip_prefix('E') else {
                bail!(
                    "the supervisor of {} died before the container started: run it again without -d to see why",
                    spec.name
                );
            };
            let (code, msg) = rest.split_once(' ').unwrap_or(("125", rest));
            Err(ExitError {
                code: code.parse().unwrap_or(exit::ENGINE_ERROR),
                msg: msg.to_string(),
            }
            .into())
        }
    }
}
