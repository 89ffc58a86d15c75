//! What the built-in agents share (`builtin:vip` in [`crate::vip`],
//! `builtin:filesystem` in [`crate::filesystem`]): a parameter mistake with its fix,
//! and an operation's answer in OCF's terms, which the agent runner maps as it
//! maps an agent's exit code.

/// A parameter that is wrong: which, what is wrong, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamError {
    pub param: String,
    pub message: String,
    pub help: String,
}

pub fn err(param: &str, message: impl Into<String>, help: impl Into<String>) -> ParamError {
    ParamError {
        param: param.to_string(),
        message: message.into(),
        help: help.into(),
    }
}

/// What an operation found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// start or stop done.
    Done,
    /// monitor: the resource is up.
    Running,
    /// monitor: it is not.
    NotRunning,
    /// An OCF error code (5 not installed here, 6 not configured, 1 generic) and why.
    Failed { code: i32, reason: String },
}

pub fn failed(code: i32, reason: impl Into<String>) -> Answer {
    Answer::Failed {
        code,
        reason: reason.into(),
    }
}
