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
