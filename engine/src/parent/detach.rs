//! `engine run -d`: a supervisor process of its own, in a new session, with
//! the container's output going to its log.

use super::{pipe, run::run_with, Error};
use crate::model::config::Config;
use crate::model::exit;
use crate::model::spec::Spec;
use crate::sys::failpoint::step;
use anyhow::{anyhow, Context};
use std::fs::File;
use std::io::{Read, Write};

/// `engine run -d`: a supervisor process of its own, in a new session, runs
/// the container; we return once PID 1 has exec'd, or with its error.
pub fn run_detached(spec: &Spec, cfg: &Config) -> Result<(), Error> {
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
                    let code = match &err {
                        Error::Child { code, .. } => *code,
                        _ => exit::ENGINE_ERROR,
                    };
                    // The whole chain, as the engine prints it.
                    let message = format!("{:#}", anyhow::Error::from(err));
                    match notify.take() {
                        Some(mut n) => {
                            let _ = write!(n, "E{code} {message}");
                        }
                        None => eprintln!("engine: {message}"),
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
                return Err(anyhow!(
                    "the supervisor of {} died before the container started: run it again without -d to see why",
                    spec.name
                )
                .into());
            };
            let (code, msg) = rest.split_once(' ').unwrap_or(("125", rest));
            Err(Error::Child {
                code: code.parse().unwrap_or(exit::ENGINE_ERROR),
                message: msg.to_string(),
            })
        }
    }
}
