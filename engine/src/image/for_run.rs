//! `engine run IMAGE`: the image found in the store (pulled first when
//! missing, as `--pull` says), its layers' trees (the overlay's lowers,
//! top first), and docker's rules for its config: Entrypoint and Cmd,
//! Env, WorkingDir, User, StopSignal.

use super::config::RunConfig;
use super::store::{ImageRecord, Store};
use crate::model::spec::PullPolicy;
use anyhow::{bail, Result};
use std::path::PathBuf;

/// Most layers an image run stacks: docker's limit (its overlay2 driver
/// refuses a 128th). Their overlay's lowerdir option, /proc/self/fd paths
/// of about 25 bytes each, stays within the page mount(2) copies.
pub const MAX_LAYERS: usize = 127;

/// An image ready to run.
pub struct ForRun {
    pub record: ImageRecord,
    pub config: RunConfig,
    /// Its layers' trees, top layer first.
    pub layers: Vec<PathBuf>,
}

/// Why an image could not be had.
pub enum Missing {
    /// `--pull never` and the store lacks it.
    NeverPull(String),
    /// A lookup or a pull failed.
    Failed(anyhow::Error),
}

/// The image `text` names: a name, ID or digest the store has (unless
/// `--pull always`), else pulled from its registry (unless `--pull
/// never`); a transport (`oci:`, `oci-archive:`, `docker-archive:`) is
/// imported every time: local files, and layers the store has are not
/// unpacked again. A pull resolves an index to `platform` (the host's when
/// `None`). An image the store has is taken as it is unless `platform`
/// names another than its own: then a registry reference is pulled again
/// for `platform` (as docker and podman do), and anything else (an ID,
/// `--pull never`) is refused naming both platforms.
pub fn resolve(
    store: &Store,
    text: &str,
    policy: PullPolicy,
    platform: Option<&super::registry::Platform>,
) -> Result<ForRun, Missing> {
    let parsed = super::reference::parse(text).ok();
    let is_transport = !matches!(parsed, Some(super::reference::ImageRef::Registry(_)) | None);
    let mut found = if is_transport || policy == PullPolicy::Always {
        None
    } else {
        store.find(text).map_err(Missing::Failed)?
    };
    if let Some(record) = &found {
        let config = store.config(record).map_err(Missing::Failed)?;
        if let Err(wrong) = super::layout::check_platform(&config, platform) {
            if parsed.is_none() || policy == PullPolicy::Never {
                // An ID names no reference to pull again.
                let reference = if parsed.is_some() { text } else { "REFERENCE" };
                return Err(Missing::NeverPull(format!(
                    "image `{text}` in the store is for {}, not for {}: pull it for that platform (engine pull --platform {} {reference}), or drop --platform",
                    wrong.has, wrong.wanted, wrong.wanted
                )));
            }
            found = None;
        }
    }
    let record = match (found, parsed) {
        (Some(record), _) => record,
        (None, _) if policy == PullPolicy::Never && !is_transport => {
            return Err(Missing::NeverPull(format!(
                "image `{text}` is not in the store and --pull never forbids pulling it: pull it first with `engine pull {text}`, or drop --pull never"
            )))
        }
        (None, Some(parsed)) => super::layout::import(store, &parsed, platform).map_err(|e| {
            if super::names_the_reference(&e) {
                Missing::Failed(e)
            } else {
                Missing::Failed(e.context(format!("cannot pull `{text}`")))
            }
        })?,
        (None, None) => {
            return Err(Missing::Failed(anyhow::anyhow!(
                "`{text}` is neither a directory, nor an image in the store, nor an image reference"
            )))
        }
    };
    let config = store.config(&record).map_err(Missing::Failed)?.config;
    let mut layers = Vec::with_capacity(record.layers.len());
    for diff_id in record.layers.iter().rev() {
        let root = store.layer_root(diff_id);
        if !root.is_dir() {
            return Err(Missing::Failed(anyhow::anyhow!(
                "layer {diff_id} of image `{text}` is missing from the store: remove the image with `engine rmi {text}` and pull it again"
            )));
        }
        layers.push(root);
    }
    if layers.is_empty() {
        return Err(Missing::Failed(anyhow::anyhow!(
            "image `{text}` has no layers: there is nothing to run"
        )));
    }
    Ok(ForRun {
        record,
        config,
        layers,
    })
}

/// The command with docker's rules: COMMAND replaces Cmd; `--entrypoint`
/// replaces Entrypoint (an empty one clears it) and drops Cmd.
pub fn command(config: &RunConfig, entrypoint: Option<&str>, given: &[String]) -> Vec<String> {
    let (entry, cmd): (Vec<String>, Vec<String>) = match entrypoint {
        Some("") => (Vec::new(), given.to_vec()),
        Some(e) => (vec![e.to_string()], given.to_vec()),
        None => (
            config.entrypoint.clone().unwrap_or_default(),
            if given.is_empty() {
                config.cmd.clone().unwrap_or_default()
            } else {
                given.to_vec()
            },
        ),
    };
    entry.into_iter().chain(cmd).collect()
}

/// The image's Env as pairs (an entry without `=` is skipped, as docker's
/// own parser drops it).
pub fn env(config: &RunConfig) -> Vec<(String, String)> {
    config
        .env
        .iter()
        .flatten()
        .filter_map(|e| e.split_once('='))
        .filter(|(k, _)| !k.is_empty() && !k.contains('\0'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The image's WorkingDir (a relative one is taken from `/`, as docker does).
pub fn workdir(config: &RunConfig) -> Result<Option<PathBuf>> {
    match config.working_dir.as_deref() {
        None | Some("") => Ok(None),
        Some(w) if w.contains('\0') => bail!("the image's WorkingDir holds a NUL byte"),
        Some(w) => Ok(Some(PathBuf::from("/").join(w))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> RunConfig {
        RunConfig {
            entrypoint: Some(vec!["/bin/sh".into(), "-c".into()]),
            cmd: Some(vec!["echo hi".into()]),
            ..RunConfig::default()
        }
    }

    fn words(w: &[&str]) -> Vec<String> {
        w.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn docker_s_rules_for_entrypoint_and_cmd() {
        let c = config();
        assert_eq!(command(&c, None, &[]), words(&["/bin/sh", "-c", "echo hi"]));
        assert_eq!(
            command(&c, None, &words(&["echo yo"])),
            words(&["/bin/sh", "-c", "echo yo"])
        );
        assert_eq!(command(&c, Some("/bin/true"), &[]), words(&["/bin/true"]));
        assert_eq!(
            command(&c, Some("/bin/echo"), &words(&["a"])),
            words(&["/bin/echo", "a"])
        );
        assert_eq!(command(&c, Some(""), &words(&["ls"])), words(&["ls"]));
        assert!(command(&RunConfig::default(), None, &[]).is_empty());
    }
}
