//! The split-brain log: every time both nodes ran the group while they could not
//! hear each other, what each did and which policy ended it. Kept in the state dir
//! (`split-brains.json`) and shown by `pairbeat status` until the operator
//! acknowledges it (`pairbeat acknowledge`): a split brain may have forked the data,
//! and somebody has to look.
//!
//! Pure bookkeeping; the daemon writes the file after each change.

use serde::{Deserialize, Serialize};

/// Records kept: older acknowledged ones are dropped first.
pub const KEEP: usize = 50;

/// One node's side of a split brain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Side {
    pub node: String,
    /// Ownership epoch when the split brain was found.
    pub epoch: u64,
    /// How long it had run the group then, in ms (when known).
    pub ran_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub id: u64,
    /// When this node lost the peer (seconds since the Unix epoch), if it did:
    /// the split brain began at or after it.
    pub peer_lost_at: Option<u64>,
    /// When the nodes heard each other again with both running the group.
    pub detected_at: u64,
    /// When only one node (or none) ran it again.
    pub ended_at: Option<u64>,
    pub policy: String,
    pub local: Side,
    pub peer: Side,
    /// The node that kept the group (none under stop-both until resolved).
    pub keeper: Option<String>,
    /// In words: who kept it, who stopped it, or that both stopped.
    pub outcome: String,
    /// stop-both: waiting for `pairbeat resolve --keep NODE`.
    pub awaiting_operator: bool,
    pub acknowledged: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Log {
    pub records: Vec<Record>,
}

impl Log {
    /// Reads the log's JSON; a damaged file is reported and replaced by an empty log.
    pub fn from_json(text: &str) -> Result<Log, String> {
        serde_json::from_str(text).map_err(|e| format!("split-brain log is damaged ({e})"))
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|_| "{\"records\":[]}".to_string()) + "\n"
    }

    /// The record of the split brain in progress, if one is.
    pub fn open(&mut self) -> Option<&mut Record> {
        self.records.last_mut().filter(|r| r.ended_at.is_none())
    }

    /// Starts a record (the nodes hear each other and both run the group).
    pub fn begin(&mut self, detected_at: u64, peer_lost_at: Option<u64>, policy: &str, local: Side, peer: Side) {
        let id = self.records.last().map_or(1, |r| r.id + 1);
        self.records.push(Record {
            id,
            peer_lost_at,
            detected_at,
            ended_at: None,
            policy: policy.to_string(),
            outcome: format!("both {} and {} ran the group", local.node, peer.node),
            local,
            peer,
            keeper: None,
            awaiting_operator: false,
            acknowledged: false,
        });
        while self.records.len() > KEEP {
            let drop = self.records.iter().position(|r| r.acknowledged).unwrap_or(0);
            self.records.remove(drop);
        }
    }

    /// Ends the open record: `keeper` runs the group now (None: nobody does).
    pub fn end(&mut self, at: u64, keeper: Option<&str>, stop_both: bool) {
        let Some(r) = self.open() else { return };
        r.ended_at = Some(at);
        r.keeper = keeper.map(str::to_string);
        r.awaiting_operator = stop_both && keeper.is_none();
        r.outcome = match keeper {
            Some(k) => {
                let other = if k == r.local.node { &r.peer.node } else { &r.local.node };
                format!(
                    "{k} kept the group without a restart; {other} stopped it (policy {})",
                    r.policy
                )
            }
            None if stop_both => format!(
                "both stopped the group (policy stop-both); waiting for `pairbeat resolve --keep {}|{}`",
                r.local.node, r.peer.node
            ),
            None => "both stopped the group".to_string(),
        };
    }

    /// A stop-both split brain still waits for the operator.
    pub fn awaiting_operator(&self) -> bool {
        self.records.iter().any(|r| r.awaiting_operator)
    }

    /// `pairbeat resolve --keep NODE`: the wait ends, the record says who decided.
    pub fn resolve(&mut self, keep: &str) -> bool {
        let mut any = false;
        for r in self.records.iter_mut().filter(|r| r.awaiting_operator) {
            r.awaiting_operator = false;
            r.keeper = Some(keep.to_string());
            r.outcome = format!("both stopped the group (policy stop-both); the operator chose {keep} to run it");
            any = true;
        }
        any
    }

    /// Marks every ended record as seen; returns how many were not yet.
    pub fn acknowledge(&mut self) -> usize {
        let mut n = 0;
        for r in self
            .records
            .iter_mut()
            .filter(|r| r.ended_at.is_some() && !r.awaiting_operator && !r.acknowledged)
        {
            r.acknowledged = true;
            n += 1;
        }
        n
    }

    /// What status shows: every record not acknowledged.
    pub fn unacknowledged(&self) -> Vec<Record> {
        self.records.iter().filter(|r| !r.acknowledged).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(n: &str) -> Side {
        Side {
            node: n.to_string(),
            epoch: 3,
            ran_ms: Some(1000),
        }
    }

    #[test]
    fn a_record_runs_from_detection_to_acknowledgement() {
        let mut log = Log::default();
        log.begin(100, Some(90), "keep-preferred", side("alpha"), side("bravo"));
        assert!(log.open().is_some());
        assert_eq!(log.acknowledge(), 0, "an open split brain cannot be acknowledged");
        log.end(101, Some("alpha"), false);
        assert!(log.open().is_none());
        assert!(
            log.records[0].outcome.contains("alpha kept the group"),
            "{}",
            log.records[0].outcome
        );
        assert_eq!(log.unacknowledged().len(), 1);
        assert_eq!(log.acknowledge(), 1);
        assert!(log.unacknowledged().is_empty());
        let back = Log::from_json(&log.to_json()).unwrap();
        assert_eq!(back, log);
    }

    #[test]
    fn stop_both_waits_until_resolved() {
        let mut log = Log::default();
        log.begin(100, None, "stop-both", side("alpha"), side("bravo"));
        log.end(102, None, true);
        assert!(log.awaiting_operator());
        assert_eq!(log.acknowledge(), 0, "resolve first");
        assert!(log.resolve("bravo"));
        assert!(!log.awaiting_operator());
        assert_eq!(log.records[0].keeper.as_deref(), Some("bravo"));
        assert_eq!(log.acknowledge(), 1);
    }

    #[test]
    fn the_log_is_bounded_dropping_acknowledged_first() {
        let mut log = Log::default();
        for i in 0..(KEEP as u64 + 10) {
            log.begin(i, None, "keep-preferred", side("alpha"), side("bravo"));
            log.end(i, Some("alpha"), false);
            if i == 0 {
                log.acknowledge();
            }
        }
        assert_eq!(log.records.len(), KEEP);
        assert!(log.records.iter().all(|r| r.id != 1), "the acknowledged one went first");
    }
}
