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

/// A data split brain found this soon after the group's split brain ended belongs
/// to it (the replicas meet once the links are back, a little after the nodes).
pub const JOIN_SECS: u64 = 120;

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
    /// The replicas whose data diverged, and whose was given up.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data: Vec<DataRecord>,
}

/// A replica's data split brain: both generation tuples, the rule, the bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataRecord {
    pub replica: String,
    pub rule: u8,
    /// Generations (DRBD's notation) and bytes written alone, by node.
    pub local_generations: String,
    pub peer_generations: String,
    pub local_bytes: u64,
    pub peer_bytes: u64,
    /// The node whose data was kept; none while stop-both waits for the operator.
    pub kept: Option<String>,
    /// Bytes given up (saved aside first, `BACKING.divergent-TIME` on that node).
    pub discarded_bytes: Option<u64>,
}

/// A replica's data split brain in words, for the record's outcome.
fn describe(d: &DataRecord, local: &str, peer: &str, policy: &str) -> String {
    match &d.kept {
        Some(k) => {
            let lost = if k == local { peer } else { local };
            format!(
                "replica {}: the data diverged (rule {}); {k}'s kept, {lost}'s {} bytes discarded after being saved aside (policy {policy})",
                d.replica,
                d.rule,
                d.discarded_bytes.unwrap_or(0)
            )
        }
        None => format!(
            "replica {}: the data diverged (rule {}); waiting for `pairbeat resolve --keep {local}|{peer}` (policy {policy})",
            d.replica, d.rule
        ),
    }
}

/// Whose data a record's data split brain kept: its own choice, else the group's
/// keeper once no operator is awaited (a `resolve` fills in the group's).
fn kept(r: &Record, d: &DataRecord) -> Option<String> {
    d.kept
        .clone()
        .or_else(|| r.keeper.clone().filter(|_| !r.awaiting_operator))
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
            data: Vec::new(),
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
        for d in &r.data {
            r.outcome = format!("{}; {}", r.outcome, describe(d, &r.local.node, &r.peer.node, &r.policy));
        }
    }

    /// A replica's data split brain. It joins the group's record when that one is
    /// still open or ended within `JOIN_SECS` (both ran the group, then the
    /// replicas met); else it is a record of its own (the nodes rebooted, or one
    /// had stopped, and only the replicas found it). `keeper`: whose data stays;
    /// none under stop-both, which waits for the operator.
    pub fn data(&mut self, at: u64, policy: &str, local: Side, peer: Side, d: DataRecord) {
        let joins = self
            .records
            .last()
            .is_some_and(|r| r.ended_at.is_none_or(|e| at.saturating_sub(e) <= JOIN_SECS));
        if !joins {
            self.begin(at, None, policy, local.clone(), peer.clone());
            let r = self.records.last_mut().expect("just begun");
            r.ended_at = Some(at);
            r.outcome = String::new();
        }
        let r = self.records.last_mut().expect("a record");
        if d.kept.is_none() {
            r.awaiting_operator = true;
        }
        let words = describe(&d, &local.node, &peer.node, policy);
        r.outcome = if r.outcome.is_empty() {
            words
        } else {
            format!("{}; {words}", r.outcome)
        };
        r.data.retain(|x| x.replica != d.replica);
        r.data.push(d);
    }

    /// The node the operator (or the policy) chose for this replica's split brain
    /// with these generations (both sides': this node's alone may be the same in
    /// two split brains, when it did not write between them — found by the
    /// cluster simulation, where the old choice then stood for the new one on one
    /// side only and both kept), if it is recorded.
    pub fn data_keeper(
        &self,
        replica: &str,
        local_generations: &str,
        peer_generations: &str,
    ) -> Option<Option<String>> {
        self.records.iter().rev().find_map(|r| {
            r.data
                .iter()
                .find(|d| {
                    d.replica == replica
                        && d.local_generations == local_generations
                        && d.peer_generations == peer_generations
                })
                .map(|d| kept(r, d))
        })
    }

    /// The latest data split brain whose keeper is recorded, with that keeper: what
    /// the node says in its adverts, so that the peer adopts the same choice.
    pub fn latest_data_choice(&self) -> Option<(&DataRecord, String)> {
        self.records
            .iter()
            .rev()
            .find_map(|r| r.data.iter().rev().find_map(|d| kept(r, d).map(|k| (d, k))))
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
            for d in r.data.iter_mut().filter(|d| d.kept.is_none()) {
                d.kept = Some(keep.to_string());
                d.discarded_bytes = Some(if keep == r.local.node {
                    d.peer_bytes
                } else {
                    d.local_bytes
                });
                r.outcome = format!("{}; {}", r.outcome, describe(d, &r.local.node, &r.peer.node, &r.policy));
            }
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

    fn diverged(kept: Option<&str>) -> DataRecord {
        DataRecord {
            replica: "r0".into(),
            rule: 100,
            local_generations: "A:0:0:0".into(),
            peer_generations: "B:0:0:0".into(),
            local_bytes: 4 << 20,
            peer_bytes: 1 << 20,
            kept: kept.map(str::to_string),
            discarded_bytes: kept.map(|_| 1 << 20),
        }
    }

    #[test]
    fn a_data_split_brain_joins_the_groups_record_or_stands_alone() {
        let mut log = Log::default();
        log.begin(100, Some(90), "keep-preferred", side("alpha"), side("bravo"));
        log.end(101, Some("alpha"), false);
        log.data(
            130,
            "keep-preferred",
            side("alpha"),
            side("bravo"),
            diverged(Some("alpha")),
        );
        assert_eq!(log.records.len(), 1, "found soon after the group's: one record");
        let r = &log.records[0];
        assert!(r.outcome.contains("alpha kept the group"), "{}", r.outcome);
        assert!(
            r.outcome
                .contains("replica r0: the data diverged (rule 100); alpha's kept, bravo's 1048576 bytes discarded"),
            "{}",
            r.outcome
        );
        assert_eq!(log.data_keeper("r0", "A:0:0:0", "B:0:0:0"), Some(Some("alpha".into())));
        // Much later (both rebooted): a record of its own, ended at once.
        log.data(
            1000,
            "keep-preferred",
            side("alpha"),
            side("bravo"),
            diverged(Some("alpha")),
        );
        assert_eq!(log.records.len(), 2);
        assert_eq!(log.records[1].ended_at, Some(1000));
        assert_eq!(Log::from_json(&log.to_json()).unwrap(), log);
    }

    #[test]
    fn a_data_split_brain_under_stop_both_waits_for_resolve_and_records_the_choice() {
        let mut log = Log::default();
        log.data(500, "stop-both", side("alpha"), side("bravo"), diverged(None));
        assert!(log.awaiting_operator());
        assert_eq!(log.data_keeper("r0", "A:0:0:0", "B:0:0:0"), Some(None), "waiting");
        assert!(log.records[0].outcome.contains("waiting for `pairbeat resolve"));
        assert!(log.resolve("bravo"));
        let d = &log.records[0].data[0];
        assert_eq!(d.kept.as_deref(), Some("bravo"));
        assert_eq!(d.discarded_bytes, Some(4 << 20), "alpha's own bytes go");
        assert_eq!(log.data_keeper("r0", "A:0:0:0", "B:0:0:0"), Some(Some("bravo".into())));
        assert_eq!(log.data_keeper("r0", "C:0:0:0", "B:0:0:0"), None, "another split brain");
        assert_eq!(
            log.data_keeper("r0", "A:0:0:0", "D:0:0:0"),
            None,
            "another split brain: the peer wrote again, this node did not"
        );
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
