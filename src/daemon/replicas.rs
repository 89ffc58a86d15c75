//! What pairbeatd knows of the replicated disks: every `POLL` it asks each
//! pairbeat-replicad for its status on the replica's control socket, so that
//! `pairbeat status` shows the replicas beside the group, with what needs the
//! operator (frozen I/O, a split brain pending, data not up to date, a daemon that
//! does not answer). The replicas keep serving whatever pairbeatd does; this only
//! reads.
//!
//! Each round's answers also set the promotion gate ([`gate`]): the node may start
//! the group only on data its replicas say is up to date. A round can be asked for
//! at once (`Poller::now`), e.g. after the peer had this node's replica outdated.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, Notify};

use crate::config::Config;
use crate::control::status::ReplicaView;
use crate::model::DataGate;
use crate::replicad::control::{request_within, Answer, Request};

/// How often each replica is asked.
const POLL: Duration = Duration::from_secs(2);
/// A daemon that has not answered within this (each read and write) is reported
/// as not answering.
const ASK: Duration = Duration::from_secs(1);

/// The latest views, shared with the status builder.
pub type Views = Arc<Mutex<Vec<ReplicaView>>>;

/// The promotion gate of the group's replicas (`group`: their names), by what their
/// daemons last said: the weakest decides. A daemon that does not answer closes it:
/// it may be hung, and its data cannot be promoted anyway.
pub fn gate(views: &[ReplicaView], group: &[String]) -> DataGate {
    group.iter().fold(DataGate::Open, |g, name| {
        let one = match views.iter().find(|v| &v.name == name).and_then(|v| v.status.as_ref()) {
            None => DataGate::Closed,
            Some(s) => match s.promotion_score {
                None => DataGate::Closed,
                Some(0) => DataGate::IfPeerFenced,
                Some(n) => DataGate::Score(n),
            },
        };
        g.and(one)
    })
}

/// The group's replicas whose handshake found divergent data, waiting for the
/// policy (pending, and stand-alone: not resyncing yet).
pub fn split_brains(views: &[ReplicaView], group: &[String]) -> Vec<crate::model::DataSplitBrain> {
    views
        .iter()
        .filter(|v| group.contains(&v.name))
        .filter_map(|v| {
            let s = v.status.as_ref()?;
            let b = s.split_brain.as_ref().filter(|_| s.split_brain_pending)?;
            (s.connection == "StandAlone").then(|| crate::model::DataSplitBrain {
                replica: v.name.clone(),
                local_generations: b.local_generations.clone(),
                peer_generations: b.peer_generations.clone(),
                rule: b.rule,
                local_bytes: b.local_bytes,
                peer_bytes: b.peer_bytes,
            })
        })
        .collect()
}

/// The poll's handle: its views, and a way to ask for a round now.
pub struct Poller {
    pub views: Views,
    pub now: Arc<Notify>,
}

/// Starts asking (a task on the daemon's runtime); after each round, `round` hears
/// of it.
pub fn spawn(config: &Config, initial: Vec<ReplicaView>, round: mpsc::Sender<()>) -> Poller {
    let views: Views = Arc::new(Mutex::new(initial));
    let now_ = Arc::new(Notify::new());
    let sockets: Vec<(String, PathBuf)> = config
        .replicas
        .iter()
        .map(|r| (r.name.clone(), crate::replicad::socket_path(config, &r.name)))
        .collect();
    if sockets.is_empty() {
        return Poller { views, now: now_ };
    }
    let out = Arc::clone(&views);
    let wake = Arc::clone(&now_);
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
            if round.send(()).await.is_err() {
                return;
            }
            let _ = tokio::time::timeout(POLL, wake.notified()).await;
        }
    });
    Poller { views, now: now_ }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replicad::control::ReplicaStatus;

    fn view(name: &str, score: Option<Option<u32>>) -> ReplicaView {
        ReplicaView {
            name: name.into(),
            status: score.map(|promotion_score| ReplicaStatus {
                name: name.into(),
                role: "Secondary".into(),
                disk: "UpToDate".into(),
                peer_disk: None,
                peer_role: None,
                connection: "Connecting".into(),
                generations: String::new(),
                out_of_sync_bytes: 0,
                resync_done_bytes: None,
                resync_total_bytes: None,
                io_frozen: false,
                failed: None,
                split_brain_pending: false,
                split_brain: None,
                promotion_score,
                last_handshake_rule: 0,
                device: None,
                pid: 1,
                resync_rate: 0,
                resync_sent_bytes: 0,
                resync_received_bytes: 0,
            }),
            unreachable: score.is_none().then(|| "no answer".into()),
        }
    }

    #[test]
    fn the_weakest_replica_of_the_group_decides_and_silence_closes_the_gate() {
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let views = vec![
            view("r0", Some(Some(10000))),
            view("r1", Some(Some(1000))),
            view("r2", Some(Some(0))),
            view("r3", Some(None)),
            view("r4", None),
        ];
        assert_eq!(gate(&views, &[]), DataGate::Open, "no replica in the group");
        assert_eq!(gate(&views, &names(&["r0"])), DataGate::Score(10000));
        assert_eq!(gate(&views, &names(&["r0", "r1"])), DataGate::Score(1000));
        assert_eq!(gate(&views, &names(&["r0", "r2"])), DataGate::IfPeerFenced);
        assert_eq!(gate(&views, &names(&["r2", "r3"])), DataGate::Closed);
        assert_eq!(gate(&views, &names(&["r4"])), DataGate::Closed, "a silent daemon");
        assert_eq!(gate(&views, &names(&["r9"])), DataGate::Closed, "not polled yet");
    }
}
