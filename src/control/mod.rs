//! The control socket between `pairbeat` (the CLI) and `pairbeatd`.
//!
//! Newline-delimited JSON over a unix stream socket: one [`Request`] per line in,
//! one [`Response`] per line out, any number per connection. The daemon checks the
//! peer's credentials (root, the daemon's own user, or `[daemon] socket_group`)
//! before it answers anything. The status model is in [`status`]; the text view
//! of it in [`render`]; a blocking client for the CLI in [`client`].

pub mod client;
pub mod render;
pub mod status;

use serde::{Deserialize, Serialize};

pub use status::Status;

/// Longest request line the daemon reads; anything longer is refused.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// What the CLI asks. Serialized as `{"command":"status"}`. Fields a daemon does not
/// know are ignored, so a newer CLI can add optional ones without breaking older daemons.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Request {
    /// The daemon's whole view: nodes, links, the group.
    Status,
    /// Forget failures (of one resource, or all), unblock, re-probe: `pairbeat cleanup`.
    Cleanup { resource: Option<String> },
    /// Hand the group to the peer and stay ineligible until `online`: `pairbeat standby`.
    Standby,
    /// Ask the peer to hand the group over: `pairbeat takeover`.
    Takeover,
    /// End standby (and a pending takeover request): `pairbeat online`.
    Online,
    /// After a stop-both split brain: this node runs the group, the other keeps it
    /// stopped: `pairbeat resolve --keep NODE`.
    Resolve { keep: String },
    /// Mark the recorded split brains as seen: `pairbeat acknowledge`.
    Acknowledge,
    /// From a Primary pairbeat-replicad that lost its peer: have the peer's replica
    /// outdated over the heartbeat links (or the peer fenced). Answered once the
    /// peer answered or the replica's `outdate_timeout` passed, with a message that
    /// starts with DRBD's fence-peer code (`4: …`).
    OutdatePeer { replica: String, generations: String },
    /// From an agent, through pairbeat's `crm_attribute` / `crm_master` /
    /// `attrd_updater`: set (`value`), delete, or read (neither) a node attribute of
    /// this node. A read answers with the value as `message`, or no message when the
    /// attribute is not set.
    Attribute {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value: Option<String>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        delete: bool,
    },
}

/// The daemon's answer: `{"ok":true,"status":{…}}`, `{"ok":true,"message":"…"}` or
/// `{"ok":false,"error":"…"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// What a command did, in a sentence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Response {
    pub fn status(status: Status) -> Self {
        Response {
            ok: true,
            error: None,
            status: Some(status),
            message: None,
        }
    }

    pub fn done(message: impl Into<String>) -> Self {
        Response {
            ok: true,
            error: None,
            status: None,
            message: Some(message.into()),
        }
    }

    pub fn error(message: impl Into<String>) -> Self {
        Response {
            ok: false,
            error: Some(message.into()),
            status: None,
            message: None,
        }
    }
}

/// Parses one request line, with an error an operator (or a script author) can act on.
pub fn parse_request(line: &str) -> Result<Request, String> {
    serde_json::from_str(line.trim())
        .map_err(|e| format!("bad request ({e}); send one JSON object per line, e.g. {{\"command\":\"status\"}}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_wire_form_is_stable() {
        assert_eq!(
            serde_json::to_string(&Request::Status).unwrap(),
            r#"{"command":"status"}"#
        );
        assert_eq!(parse_request("{\"command\":\"status\"}\n").unwrap(), Request::Status);
        assert_eq!(
            parse_request("{\"command\":\"status\",\"since\":1}").unwrap(),
            Request::Status
        );
    }

    #[test]
    fn bad_requests_get_a_usable_error() {
        for bad in [
            "",
            "status",
            "{\"command\":\"reboot\"}",
            "{\"cmd\":\"status\"}",
            "[1,2]",
        ] {
            let e = parse_request(bad).unwrap_err();
            assert!(e.contains("{\"command\":\"status\"}"), "{bad}: {e}");
        }
    }
}
