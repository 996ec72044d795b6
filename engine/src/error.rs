//! The one error type the facade returns; `main` maps it to an exit code.
//! Callers branch on the variant, never on the message.

use crate::model::exit;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input (or a host that cannot run it), refused before anything was created.
    #[error("{0}")]
    Input(String),
    /// Bad input, as the model refused it (exits as `Input` does).
    #[error(transparent)]
    Model(#[from] crate::model::Error),
    /// A request this host cannot run (exits as `Input` does).
    #[error(transparent)]
    Host(#[from] crate::validate::Error),
    /// The host side failed: the child's report with its exit code
    /// (`parent::Error::Child`), no such container, a facility's error.
    /// Printed with its causes, as one line.
    #[error("{}", chain(.0))]
    Parent(#[from] crate::parent::Error),
    /// A rootfs pull failed, or a signal stopped it (`image::Error::Interrupted`).
    #[error("{}", chain(.0))]
    Image(#[from] crate::image::Error),
    /// A failure of an OCI verb that callers tell apart (`oci::Error`).
    #[error(transparent)]
    Oci(#[from] crate::oci::Error),
    /// The engine failed while doing its work (the CLI's own failures,
    /// an OCI verb's untyped step).
    #[error("{0}")]
    Engine(String),
}

impl Error {
    /// Docker's exit code for this failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Parent(crate::parent::Error::Child { code, .. }) => match *code {
                exit::NOT_EXECUTABLE | exit::NOT_FOUND => *code,
                _ => exit::ENGINE_ERROR,
            },
            Error::Image(e) => e
                .interrupted()
                .map_or(exit::ENGINE_ERROR, |i| 128 + i.signal),
            Error::Input(_)
            | Error::Model(_)
            | Error::Host(_)
            | Error::Parent(_)
            | Error::Oci(_)
            | Error::Engine(_) => exit::ENGINE_ERROR,
        }
    }

    /// Bad input: the whole chain as one line.
    pub(crate) fn input(err: anyhow::Error) -> Error {
        Error::Input(format!("{err:#}"))
    }
}

/// An error and its causes as one line, as anyhow's `{:#}` prints them:
/// `main` prints the facade's error alone.
fn chain(err: &dyn std::error::Error) -> String {
    let mut line = err.to_string();
    let mut cause = err.source();
    while let Some(e) = cause {
        line.push_str(": ");
        line.push_str(&e.to_string());
        cause = e.source();
    }
    line
}

/// A failure injected at a failpoint of the facade (`failpoints` feature).
#[cfg(feature = "failpoints")]
impl From<crate::sys::failpoint::Injected> for Error {
    fn from(injected: crate::sys::failpoint::Injected) -> Error {
        Error::Engine(injected.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    use crate::model::{self, limits, volumes};
    use crate::{prepare, Config, SpecInput};

    /// A refused option reaches the caller as its own variant (no
    /// downcast, no message parsing), prints the model's sentence, and
    /// exits 125; it is refused before the host is looked at.
    #[test]
    fn refused_input_is_matched_by_variant() {
        let input = |f: fn(&mut SpecInput)| {
            let mut input = SpecInput {
                rootfs: "/nonexistent-rootfs".into(),
                command: vec!["true".into()],
                userns: "auto".into(),
                net: "none".into(),
                ..SpecInput::default()
            };
            f(&mut input);
            input
        };
        let cfg = Config::from_env();
        let err = prepare(input(|i| i.cpus = Some("lots".into())), &cfg).unwrap_err();
        assert!(
            matches!(&err, Error::Model(model::Error::Limits(limits::Error::Cpus(s))) if s == "lots"),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "invalid --cpus \"lots\": give a positive number such as 0.5 or 2"
        );
        assert_eq!(err.exit_code(), exit::ENGINE_ERROR);
        let err = prepare(input(|i| i.volumes = vec!["/tmp:rel".into()]), &cfg).unwrap_err();
        assert!(
            matches!(&err, Error::Model(model::Error::Volume(volumes::Error::Target(t))) if t == "rel"),
            "{err:?}"
        );
        // Parsed fine, refused by the host check: the rootfs does not exist.
        let err = prepare(input(|_| {}), &cfg).unwrap_err();
        assert!(
            matches!(&err, Error::Host(crate::validate::Error::RootfsMissing(_)))
                || matches!(&err, Error::Host(crate::validate::Error::NotRoot)),
            "{err:?}"
        );
        assert_eq!(err.exit_code(), exit::ENGINE_ERROR);
    }

    /// A name no container has reaches the caller as
    /// `parent::Error::NoSuchContainer` (no downcast), with the sentence
    /// naming what runs, and exits 125.
    #[test]
    fn unknown_container_is_matched_by_variant() {
        let dir = std::env::temp_dir().join(format!("engine-error-test-{}", std::process::id()));
        let cfg = Config {
            state_dir: dir.clone(),
            cgroup_root: dir.join("cgroup"),
            ..Config::from_env()
        };
        let err =
            crate::stop(&cfg, &["ghost".into()], std::time::Duration::ZERO, |_| {}).unwrap_err();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            matches!(
                &err,
                Error::Parent(crate::parent::Error::NoSuchContainer(_))
            ),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "no such container: ghost (no containers are running)"
        );
        assert_eq!(err.exit_code(), exit::ENGINE_ERROR);
    }

    /// The child's report keeps its exit code through the facade: 126 and
    /// 127 as the shell's, anything else the engine's 125; an interrupted
    /// pull is 128+N, also under the context of a run's rootfs.
    #[test]
    fn exit_codes_follow_the_variant() {
        let child = |code| {
            Error::from(crate::parent::Error::Child {
                code,
                message: "cannot run x".into(),
            })
        };
        assert_eq!(child(exit::NOT_EXECUTABLE).exit_code(), 126);
        assert_eq!(child(exit::NOT_FOUND).exit_code(), 127);
        assert_eq!(child(1).exit_code(), exit::ENGINE_ERROR);
        assert_eq!(child(exit::NOT_FOUND).to_string(), "cannot run x");
        let interrupted = crate::image::Error::from(crate::image::Interrupted {
            signal: libc::SIGINT,
        });
        let err = Error::from(crate::image::Error::Rootfs {
            name: "busybox".into(),
            source: Box::new(interrupted),
        });
        assert_eq!(err.exit_code(), 128 + libc::SIGINT);
        assert_eq!(
            err.to_string(),
            "cannot get the busybox rootfs: rootfs pull interrupted by SIGINT"
        );
        // A facility's error prints with its cause, on one line.
        let Err(lock) =
            crate::sys::lock::lock_file(std::path::Path::new("/nonexistent-dir/x.lock"))
        else {
            panic!("locked a file in a missing directory");
        };
        let err = Error::from(crate::parent::Error::from(lock));
        assert!(
            err.to_string()
                .ends_with(": No such file or directory (os error 2)"),
            "{err}"
        );
        assert_eq!(err.exit_code(), exit::ENGINE_ERROR);
    }
}
