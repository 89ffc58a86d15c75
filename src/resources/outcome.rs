//! What an agent operation came to, independent of the agent's class: the agent
//! runner maps OCF, LSB and Heartbeat v1 exit codes (and output) to these, and the
//! group engine reasons only in these terms.

use std::fmt;

/// Pacemaker's recovery classes for errors (Pacemaker Explained, "How Pacemaker
/// Interprets OCF Return Codes").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Worth retrying here (a restart may fix it).
    Soft,
    /// Cannot work on this node (not installed, no permission, bad local params).
    Hard,
    /// Cannot work anywhere (the configuration itself is wrong).
    Fatal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 0: done; for monitor, running (unpromoted).
    Success,
    /// 7: monitor found it cleanly stopped.
    NotRunning,
    /// 8: monitor found it running promoted.
    RunningPromoted,
    /// 9: promoted but failed.
    FailedPromoted,
    /// 1–6 and anything unknown, by recovery class, with the exit code.
    Error(Severity, i32),
    /// The operation's time limit passed; its process group was killed.
    TimedOut,
}

impl Outcome {
    /// OCF's 5, "not installed": the agent is missing or cannot be executed here.
    pub fn not_installed() -> Self {
        Outcome::Error(Severity::Hard, 5)
    }

    /// The OCF exit code map (OCF Resource Agent API 1.1, "Exit codes"). 190/191 (degraded) count as running.
    pub fn from_ocf(code: i32) -> Self {
        match code {
            0 | 190 => Outcome::Success,
            7 => Outcome::NotRunning,
            8 | 191 => Outcome::RunningPromoted,
            9 => Outcome::FailedPromoted,
            2..=5 => Outcome::Error(Severity::Hard, code),
            6 => Outcome::Error(Severity::Fatal, code),
            _ => Outcome::Error(Severity::Soft, code),
        }
    }

    /// LSB exit codes, as Pacemaker maps them (Pacemaker's LSB mapping): for status,
    /// 0 running, 1–3 not running, 150/151 not installed / no permission.
    pub fn from_lsb(code: i32, is_status: bool) -> Self {
        if is_status {
            match code {
                0 => Outcome::Success,
                1..=3 => Outcome::NotRunning,
                150 => Outcome::not_installed(),
                151 => Outcome::Error(Severity::Hard, 4),
                _ => Outcome::Error(Severity::Soft, code),
            }
        } else {
            match code {
                0 => Outcome::Success,
                1..=7 => Outcome::from_ocf(code),
                _ => Outcome::Error(Severity::Soft, code),
            }
        }
    }

    /// Heartbeat v1 `status`: the exit code is ignored and stdout decides, as
    /// ResourceManager's `we_own_resource` does: "not running" → stopped,
    /// "running" or "OK" → running, anything else → stopped.
    pub fn from_heartbeat_status(stdout: &str) -> Self {
        let lower = stdout.to_ascii_lowercase();
        let not_running = lower
            .split("not")
            .skip(1)
            .any(|after| after.trim_start().starts_with("running"));
        if not_running {
            Outcome::NotRunning
        } else if lower.contains("running") || stdout.contains("OK") {
            Outcome::Success
        } else {
            Outcome::NotRunning
        }
    }

    /// Heartbeat v1 start/stop: 0 is success, anything else an error.
    pub fn from_heartbeat(code: i32) -> Self {
        if code == 0 {
            Outcome::Success
        } else {
            Outcome::Error(Severity::Soft, code)
        }
    }

    pub fn is_error(&self) -> bool {
        matches!(self, Outcome::Error(..) | Outcome::TimedOut | Outcome::FailedPromoted)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Success => write!(f, "ok"),
            Outcome::NotRunning => write!(f, "not running"),
            Outcome::RunningPromoted => write!(f, "running (promoted)"),
            Outcome::FailedPromoted => write!(f, "failed (promoted)"),
            Outcome::TimedOut => write!(f, "timed out"),
            Outcome::Error(sev, code) => {
                let name = match code {
                    1 => "generic error",
                    2 => "invalid parameter",
                    3 => "unimplemented feature",
                    4 => "insufficient privileges",
                    5 => "not installed",
                    6 => "not configured",
                    _ => "error",
                };
                let class = match sev {
                    Severity::Soft => "soft",
                    Severity::Hard => "hard",
                    Severity::Fatal => "fatal",
                };
                write!(f, "{name} (exit {code}, {class})")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ocf_codes_map_to_recovery_classes() {
        assert_eq!(Outcome::from_ocf(0), Outcome::Success);
        assert_eq!(Outcome::from_ocf(1), Outcome::Error(Severity::Soft, 1));
        assert_eq!(Outcome::from_ocf(5), Outcome::Error(Severity::Hard, 5));
        assert_eq!(Outcome::from_ocf(6), Outcome::Error(Severity::Fatal, 6));
        assert_eq!(Outcome::from_ocf(7), Outcome::NotRunning);
        assert_eq!(Outcome::from_ocf(8), Outcome::RunningPromoted);
        assert_eq!(Outcome::from_ocf(9), Outcome::FailedPromoted);
        assert_eq!(Outcome::from_ocf(190), Outcome::Success);
        assert_eq!(Outcome::from_ocf(42), Outcome::Error(Severity::Soft, 42));
    }

    #[test]
    fn lsb_status_is_read_as_pacemaker_does() {
        assert_eq!(Outcome::from_lsb(3, true), Outcome::NotRunning);
        assert_eq!(Outcome::from_lsb(1, true), Outcome::NotRunning);
        assert_eq!(Outcome::from_lsb(4, true), Outcome::Error(Severity::Soft, 4));
        assert_eq!(Outcome::from_lsb(0, false), Outcome::Success);
        assert_eq!(Outcome::from_lsb(200, false), Outcome::Error(Severity::Soft, 200));
    }

    #[test]
    fn heartbeat_status_is_read_from_its_words() {
        assert_eq!(Outcome::from_heartbeat_status("INFO: Running OK"), Outcome::Success);
        assert_eq!(
            Outcome::from_heartbeat_status("INFO: Resource is stopped"),
            Outcome::NotRunning
        );
        assert_eq!(
            Outcome::from_heartbeat_status("drbd0 is NOT running"),
            Outcome::NotRunning
        );
        assert_eq!(
            Outcome::from_heartbeat_status("cannot determine status, may be running"),
            Outcome::Success
        );
        assert_eq!(Outcome::from_heartbeat_status(""), Outcome::NotRunning);
    }
}
