//! What `pairbeat replica status` and pairbeatd's status show of a replica: the
//! core's status as a stable schema (JSON and XML), and its one-line text form.
//! Plain data, so that the status of the pair (`crate::control`) and the replica's
//! daemon (`crate::replicad`) share it without depending on each other.

use serde::{Deserialize, Serialize};

use super::state;

/// A split brain as the handshake found it: what the policy decides on, and what
/// the split-brain record keeps.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SplitBrainReport {
    /// DRBD's notation, current:bitmap:history:history.
    pub local_generations: String,
    pub peer_generations: String,
    /// The decision table's rule that found it (100: both changed their data).
    pub rule: u8,
    /// Bytes in the extents each side wrote alone.
    pub local_bytes: u64,
    pub peer_bytes: u64,
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
    /// The split brain the last handshake found (while this daemon runs): both
    /// sides' generations, the rule and what each wrote alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_brain: Option<SplitBrainReport>,
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
            split_brain: s.split_brain.map(|b| SplitBrainReport {
                local_generations: b.mine.to_string(),
                peer_generations: b.peer.to_string(),
                rule: b.rule,
                local_bytes: b.my_dirty * s.extent,
                peer_bytes: b.peer_dirty * s.extent,
            }),
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
            split_brain: None,
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
