//! What pairbeatd knows of the replicated disks: every `POLL` it asks each
//! pairbeat-replicad for its status on the replica's control socket, so that
//! `pairbeat status` shows the replicas beside the group, with what needs the
//! operator (frozen I/O, a split brain pending, data not up to date, a daemon that
//! does not answer). The replicas keep serving whatever pairbeatd does; this only
//! reads.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use crate::config::Config;
use crate::control::status::{ReplicaStatus, ReplicaView};
use crate::replicad::control::{Answer, Request};

/// How often each replica is asked.
const POLL: Duration = Duration::from_secs(2);
/// A daemon that has not answered within this is reported as not answering.
const ASK: Duration = Duration::from_secs(1);

/// The latest views, shared with the status builder.
pub type Views = Arc<Mutex<Vec<ReplicaView>>>;

/// Starts asking (a task on the daemon's runtime) and returns where the answers go.
pub fn spawn(config: &Config, initial: Vec<ReplicaView>) -> Views {
    let views: Views = Arc::new(Mutex::new(initial));
    let sockets: Vec<(String, PathBuf)> = config
        .replicas
        .iter()
        .map(|r| (r.name.clone(), crate::replicad::socket_path(config, &r.name)))
        .collect();
    if sockets.is_empty() {
        return views;
    }
    let out = Arc::clone(&views);
    tokio::spawn(async move {
        loop {
            let mut now = Vec::with_capacity(sockets.len());
            for (name, socket) in &sockets {
                let (status, unreachable) = match ask(socket).await {
                    Ok(s) => (Some(s), None),
                    Err(e) => (None, Some(e)),
                };
                now.push(ReplicaView {
                    name: name.clone(),
                    status,
                    unreachable,
                });
            }
            *out.lock().unwrap_or_else(|p| p.into_inner()) = now;
            tokio::time::sleep(POLL).await;
        }
    });
    views
}

/// One status request on a replica's control socket.
async fn ask(socket: &std::path::Path) -> Result<ReplicaStatus, String> {
    let talk = async {
        let mut s = UnixStream::connect(socket)
            .await
            .map_err(|e| format!("{}: {e}", socket.display()))?;
        let mut line = serde_json::to_string(&Request::Status).map_err(|e| e.to_string())?;
        line.push('\n');
        s.write_all(line.as_bytes()).await.map_err(|e| e.to_string())?;
        let mut answer = String::new();
        BufReader::new(s)
            .read_line(&mut answer)
            .await
            .map_err(|e| e.to_string())?;
        let a: Answer = serde_json::from_str(&answer).map_err(|e| format!("garbled answer: {e}"))?;
        a.status
            .ok_or_else(|| a.error.unwrap_or_else(|| "no status in its answer".into()))
    };
    tokio::time::timeout(ASK, talk)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {} s", ASK.as_secs())))
}
