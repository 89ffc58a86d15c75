//! The replica's control socket: one JSON request per line, one JSON answer per
//! line, as pairbeatd's. `pairbeat replica …` and the agents speak it.

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot};

use crate::replica::state::{self, Command};

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

/// `pairbeat replica status --output-as=json`, schema 1.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReplicaStatus {
    pub name: String,
    /// "Primary" | "Secondary".
    pub role: String,
    pub disk: String,
    /// `None` while the peer is unknown (DUnknown).
    pub peer_disk: Option<String>,
    pub peer_role: Option<String>,
    pub connection: String,
    /// DRBD's notation, current:bitmap:history:history.
    pub generations: String,
    pub out_of_sync_bytes: u64,
    pub resync_done_bytes: Option<u64>,
    pub resync_total_bytes: Option<u64>,
    pub io_frozen: bool,
    pub failed: Option<String>,
    pub split_brain_pending: bool,
    pub promotion_score: Option<u32>,
    pub last_handshake_rule: u32,
    /// The loop device a Primary serves.
    #[serde(default)]
    pub device: Option<String>,
    /// The worker process (the one that serves the device).
    #[serde(default)]
    pub pid: u32,
    /// The resync rate in force on this node, bytes per second (0: unthrottled;
    /// the SyncSource's is the one that paces a resync).
    #[serde(default)]
    pub resync_rate: u64,
    /// Resync bytes this worker sent (as SyncSource) and wrote (as SyncTarget)
    /// since it started.
    #[serde(default)]
    pub resync_sent_bytes: u64,
    #[serde(default)]
    pub resync_received_bytes: u64,
}

impl ReplicaStatus {
    pub fn from_core(name: &str, s: &state::Status) -> Self {
        let role = |p: bool| if p { "Primary" } else { "Secondary" }.to_string();
        ReplicaStatus {
            name: name.into(),
            role: role(s.primary),
            disk: s.disk.name().into(),
            peer_disk: s.peer_disk.map(|d| d.name().into()),
            peer_role: s.peer_primary.map(role),
            connection: s.conn.name().into(),
            generations: s.gi.to_string(),
            out_of_sync_bytes: s.out_of_sync,
            resync_done_bytes: s.resync.map(|r| r.0),
            resync_total_bytes: s.resync.map(|r| r.1),
            io_frozen: s.frozen,
            failed: s.failed.clone(),
            split_brain_pending: s.split_brain_pending,
            promotion_score: s.promotion_score,
            last_handshake_rule: s.last_rule,
            device: None,
            pid: std::process::id(),
            resync_rate: s.resync_rate,
            resync_sent_bytes: s.resync_sent,
            resync_received_bytes: s.resync_received,
        }
    }

    /// One line, DRBD-style: `r0: Primary UpToDate/UpToDate Connected`.
    pub fn line(&self) -> String {
        format!("{}: {} {}", self.name, self.role, self.disk_words())
    }

    /// The line without name and role: `UpToDate/UpToDate Connected`, then resync
    /// progress, bytes out of sync, frozen I/O, a split brain pending, a failure
    /// (what the group's resource line adds for the replica it runs).
    pub fn disk_words(&self) -> String {
        let mut l = format!(
            "{}/{} {}",
            self.disk,
            self.peer_disk.as_deref().unwrap_or("DUnknown"),
            self.connection
        );
        if let (Some(done), Some(total)) = (self.resync_done_bytes, self.resync_total_bytes) {
            let pct = (done * 100).checked_div(total).unwrap_or(100);
            l.push_str(&format!(", resync {pct}% of {} KiB", total / 1024));
            if self.connection == "SyncSource" {
                l.push_str(&match self.resync_rate {
                    0 => ", unthrottled".to_string(),
                    r => format!(" at {} KiB/s", r / 1024),
                });
            }
        }
        if self.out_of_sync_bytes > 0 {
            l.push_str(&format!(", {} KiB out of sync", self.out_of_sync_bytes / 1024));
        }
        if self.io_frozen {
            l.push_str(", I/O frozen");
        }
        if self.split_brain_pending {
            l.push_str(", split brain pending");
        }
        if let Some(f) = &self.failed {
            l.push_str(&format!(", failed: {f}"));
        }
        l
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

#[cfg(test)]
mod tests {
    use super::*;

    fn syncing(rate: u64) -> ReplicaStatus {
        ReplicaStatus {
            name: "r0".into(),
            role: "Primary".into(),
            disk: "UpToDate".into(),
            peer_disk: Some("Inconsistent".into()),
            peer_role: Some("Secondary".into()),
            connection: "SyncSource".into(),
            generations: String::new(),
            out_of_sync_bytes: 3 << 20,
            resync_done_bytes: Some(1 << 20),
            resync_total_bytes: Some(4 << 20),
            io_frozen: false,
            failed: None,
            split_brain_pending: false,
            promotion_score: Some(10000),
            last_handshake_rule: 50,
            device: None,
            pid: 1,
            resync_rate: rate,
            resync_sent_bytes: 1 << 20,
            resync_received_bytes: 0,
        }
    }

    #[test]
    fn the_line_shows_resync_progress_and_the_rate_in_force() {
        assert_eq!(
            syncing(100 << 20).line(),
            "r0: Primary UpToDate/Inconsistent SyncSource, resync 25% of 4096 KiB at 102400 KiB/s, 3072 KiB out of sync"
        );
        assert!(syncing(0).line().contains("resync 25% of 4096 KiB, unthrottled"));
        let mut target = syncing(1 << 20);
        target.connection = "SyncTarget".into();
        assert!(!target.line().contains("KiB/s"), "the target does not pace the resync");
    }
}
