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
    /// No running container of that name.
    #[error("{0}")]
    NoSuchContainer(String),
    /// A failure of an OCI verb that callers tell apart (`oci::Error`).
    #[error(transparent)]
    Oci(#[from] crate::oci::Error),
    /// The engine failed while doing its work.
    #[error("{0}")]
    Engine(String),
    /// The command was found but cannot be executed.
    #[error("{0}")]
    NotExecutable(String),
    /// The command was not found in the container.
    #[error("{0}")]
    NotFound(String),
    /// A rootfs pull stopped by a signal.
    #[error("{message}")]
    Interrupted { signal: i32, message: String },
}

impl Error {
    /// Docker's exit code for this failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Input(_)
            | Error::Model(_)
            | Error::Host(_)
            | Error::NoSuchContainer(_)
            | Error::Oci(_)
            | Error::Engine(_) => exit::ENGINE_ERROR,
            Error::NotExecutable(_) => exit::NOT_EXECUTABLE,
            Error::NotFound(_) => exit::NOT_FOUND,
            Error::Interrupted { signal, .. } => 128 + signal,
        }
    }

    /// Bad input: the whole chain as one line.
    pub(crate) fn input(err: anyhow::Error) -> Error {
        Error::Input(format!("{err:#}"))
    }

    /// A failure inside the engine, typed by what it carries.
    pub(crate) fn engine(err: anyhow::Error) -> Error {
        let message = format!("{err:#}");
        if let Some(e) = err.downcast_ref::<crate::parent::ExitError>() {
            return Error::from_exit_code(e.code, message);
        }
        if let Some(i) = err.downcast_ref::<crate::image::Interrupted>() {
            return Error::Interrupted {
                signal: i.signal,
                message,
            };
        }
        if err
            .downcast_ref::<crate::parent::lifecycle::NoSuchContainer>()
            .is_some()
        {
            return Error::NoSuchContainer(message);
        }
        Error::Engine(message)
    }

    /// The variant for a failure reported with an exit code (by the child).
    pub(crate) fn from_exit_code(code: i32, message: String) -> Error {
        match code {
            exit::NOT_EXECUTABLE => Error::NotExecutable(message),
            exit::NOT_FOUND => Error::NotFound(message),
            _ => Error::Engine(message),
        }
    }
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
}
