//! The replica's control socket: one JSON request per line, one JSON answer per
//! line, as pairbeatd's. `pairbeat replica …` and the agents speak it.

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot};

pub use crate::replica::report::ReplicaStatus;
use crate::replica::state::Command;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "cmd", rename_all = "kebab-case")]
pub enum Request {
    Status,
    Primary {
        #[serde(default)]
        force: bool,
        #[serde(default)]
        new_data: bool,
    },
    Secondary,
    /// Persist Outdated. `generations`: the asking peer's tuple (pairbeatd's relay),
    /// refused when this side's data is newer; none from the operator.
    Outdate {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        generations: Option<String>,
    },
    DiscardMyData,
    ResumeIo,
    Connect,
    ResyncRate {
        bytes_per_second: u64,
    },
    /// Leave cleanly and exit (refused while Primary).
    Down,
}

impl Request {
    /// The core's command for it; `None` for a status query; an error for
    /// generations that are not a tuple.
    pub fn into_command(self) -> Result<Option<Command>, String> {
        Ok(match self {
            Request::Status | Request::Down => None,
            Request::Primary { force, new_data } => Some(Command::Promote { force, new_data }),
            Request::Secondary => Some(Command::Demote),
            Request::Outdate { generations } => Some(Command::Outdate {
                requester: generations.map(|g| g.parse()).transpose()?,
            }),
            Request::DiscardMyData => Some(Command::DiscardMyData),
            Request::ResumeIo => Some(Command::ResumeIo),
            Request::Connect => Some(Command::Connect),
            Request::ResyncRate { bytes_per_second } => Some(Command::SetResyncRate(bytes_per_second)),
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Answer {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub status: Option<ReplicaStatus>,
}

impl Answer {
    pub fn message(m: impl Into<String>) -> Self {
        Answer {
            ok: true,
            message: Some(m.into()),
            error: None,
            status: None,
        }
    }
    pub fn error(e: impl Into<String>) -> Self {
        Answer {
            ok: false,
            message: None,
            error: Some(e.into()),
            status: None,
        }
    }
    pub fn status(s: ReplicaStatus) -> Self {
        Answer {
            ok: true,
            message: None,
            error: None,
            status: Some(s),
        }
    }
}

/// Accepts connections and passes each request to the worker.
pub async fn serve(listener: UnixListener, to_worker: mpsc::UnboundedSender<(Request, oneshot::Sender<Answer>)>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let to_worker = to_worker.clone();
        tokio::spawn(async move {
            let (rd, mut wr) = stream.into_split();
            let mut lines = BufReader::new(rd).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let answer = match serde_json::from_str::<Request>(&line) {
                    Ok(req) => {
                        let (tx, rx) = oneshot::channel();
                        if to_worker.send((req, tx)).is_err() {
                            return;
                        }
                        rx.await.unwrap_or_else(|_| Answer::error("the replica is stopping"))
                    }
                    Err(e) => Answer::error(format!("not a replica request: {e}")),
                };
                let mut text = serde_json::to_string(&answer).unwrap_or_default();
                text.push('\n');
                if wr.write_all(text.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// Sends one request to a replicad's socket (the CLI's side).
pub fn request(socket: &std::path::Path, req: &Request) -> Result<Answer, String> {
    request_within(socket, req, std::time::Duration::from_secs(60))
}

/// `request`, waiting at most `limit` for each read and write (pairbeatd's status
/// poll must not hang on a stopped daemon).
pub fn request_within(socket: &std::path::Path, req: &Request, limit: std::time::Duration) -> Result<Answer, String> {
    use std::io::{BufRead, Write};
    let s = std::os::unix::net::UnixStream::connect(socket).map_err(|e| {
        format!(
            "cannot reach the replica daemon at {}: {e} (is pairbeat-replicad running? `systemctl status pairbeat-replicad@NAME`)",
            socket.display()
        )
    })?;
    s.set_read_timeout(Some(limit)).ok();
    s.set_write_timeout(Some(limit)).ok();
    let mut line = serde_json::to_string(req).map_err(|e| e.to_string())?;
    line.push('\n');
    (&s).write_all(line.as_bytes()).map_err(|e| e.to_string())?;
    let mut answer = String::new();
    std::io::BufReader::new(&s)
        .read_line(&mut answer)
        .map_err(|e| e.to_string())?;
    serde_json::from_str(&answer).map_err(|e| format!("garbled answer from {}: {e}", socket.display()))
}
