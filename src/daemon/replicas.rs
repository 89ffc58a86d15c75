//! What pairbeatd knows of the replicated disks: every `POLL` it asks each
//! pairbeat-replicad for its status on the replica's control socket, so that
//! `pairbeat status` shows the replicas beside the group, with what needs the
//! operator (frozen I/O, a split brain pending, data not up to date, a daemon that
//! does not answer). The replicas keep serving whatever pairbeatd does; this only
//! reads.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::Config;
use crate::control::status::ReplicaView;
use crate::replicad::control::{request_within, Answer, Request};

/// How often each replica is asked.
const POLL: Duration = Duration::from_secs(2);
/// A daemon that has not answered within this (each read and write) is reported
/// as not answering.
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
                let socket = socket.clone();
                let asked = tokio::task::spawn_blocking(move || request_within(&socket, &Request::Status, ASK)).await;
                let (status, unreachable) = match asked.map_err(|e| e.to_string()).and_then(|a| a) {
                    Ok(Answer { status: Some(s), .. }) => (Some(s), None),
                    Ok(a) => (None, Some(a.error.unwrap_or_else(|| "no status in its answer".into()))),
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
