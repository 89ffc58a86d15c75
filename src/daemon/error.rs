//! Why the daemon could not start or had to stop, typed, each with the exit code
//! systemd and init scripts act on (sysexits.h): a configuration that can never
//! work exits 78 (EX_CONFIG), so `RestartPreventExitStatus=78` stops systemd from
//! restarting it every few seconds forever; an operating-system failure (a port in
//! use, a state dir that cannot be written) exits 71 (EX_OSERR), which may pass.

use thiserror::Error;

/// sysexits.h: a configuration error.
pub const EX_CONFIG: u8 = 78;
/// sysexits.h: an operating-system error (cannot bind, cannot write).
pub const EX_OSERR: u8 = 71;
/// sysexits.h: an internal software error.
pub const EX_SOFTWARE: u8 = 70;

#[derive(Debug, Error)]
pub enum Error {
    /// The configuration is invalid (the report went to stderr already).
    #[error("{errors} error(s) in {path}; nothing was started")]
    Config { path: String, errors: usize },
    #[error("{0}")]
    StateDir(String),
    /// A link's socket cannot be opened or bound (the message names the link).
    #[error("{0}")]
    Link(String),
    #[error(transparent)]
    ControlSocket(#[from] super::BindError),
    #[error("cannot watch {name}: {source}")]
    Signal { name: &'static str, source: std::io::Error },
    #[error("logging: {0}")]
    Logging(String),
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
}

impl Error {
    /// The process's exit status for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config { .. } => EX_CONFIG,
            // A socket_group that does not exist is a configuration error too.
            Error::ControlSocket(super::BindError::NoGroup(_)) => EX_CONFIG,
            Error::StateDir(_) | Error::Link(_) | Error::ControlSocket(_) | Error::Logging(_) => EX_OSERR,
            Error::Signal { .. } | Error::Runtime(_) => EX_SOFTWARE,
        }
    }
}
