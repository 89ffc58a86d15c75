//! Node attributes that resource agents set through Pacemaker's tools, as
//! pairbeat provides them (`crm_attribute`, `crm_master`, `attrd_updater`; see
//! [`crate::crm`]): a name → value map of this node, kept for pairbeatd's life
//! (Pacemaker's `reboot` lifetime), shown under Node Attributes in status.
//!
//! One kind of attribute decides something: a promotable resource's promotion
//! score, `master-RESOURCE`, which agents such as DRBD's `ocf:linbit:drbd` set
//! from their data's state (10000 UpToDate with the peer known, 1000 UpToDate
//! alone, 5/10 Consistent, deleted when Outdated or Inconsistent). As under
//! Pacemaker, a resource with no positive score is not promoted here: once its
//! agent has set a score, that score is the resource's part of the promotion gate
//! ([`Attributes::gate`]). A promotable resource whose agent never sets one (an
//! agent written for Heartbeat) is not gated by it. Pure: no I/O.

use std::collections::{BTreeMap, BTreeSet};

use crate::config::Group;
use crate::model::DataGate;

/// Pacemaker's INFINITY: scores are clamped to ±this.
pub const INFINITY: i64 = 1_000_000;
/// Longest attribute name and value accepted (an agent's bug must not grow the daemon).
const MAX_NAME: usize = 256;
const MAX_VALUE: usize = 4096;
/// Most attributes kept at once.
const MAX_ATTRIBUTES: usize = 1024;

/// The attribute that holds a resource's promotion score (Pacemaker's name).
pub fn promotion_name(resource: &str) -> String {
    format!("master-{resource}")
}

/// A score as Pacemaker writes them: an integer, `INFINITY`, `+INFINITY` or
/// `-INFINITY`; clamped to ±INFINITY.
pub fn parse_score(v: &str) -> Result<i64, String> {
    let v = v.trim();
    let n = match v {
        "INFINITY" | "+INFINITY" => INFINITY,
        "-INFINITY" => -INFINITY,
        _ => v
            .parse::<i64>()
            .map_err(|_| format!("`{v}` is not a score: write an integer, INFINITY or -INFINITY"))?,
    };
    Ok(n.clamp(-INFINITY, INFINITY))
}

/// This node's attributes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attributes {
    values: BTreeMap<String, String>,
    /// Promotion-score names an agent has set at least once: from then on they gate.
    scored: BTreeSet<String>,
}

impl Attributes {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    pub fn all(&self) -> &BTreeMap<String, String> {
        &self.values
    }

    /// Sets `name` to `value`; whether it changed. A promotion score must be a score.
    pub fn set(&mut self, name: &str, value: &str) -> Result<bool, String> {
        check_name(name)?;
        if value.len() > MAX_VALUE || value.chars().any(char::is_control) {
            return Err(format!(
                "the value of attribute {name} is longer than {MAX_VALUE} bytes or holds control characters"
            ));
        }
        let value = if name.starts_with("master-") {
            parse_score(value)
                .map_err(|e| format!("promotion score {name}: {e}"))?
                .to_string()
        } else {
            value.to_string()
        };
        if !self.values.contains_key(name) && self.values.len() >= MAX_ATTRIBUTES {
            return Err(format!(
                "this node already has {MAX_ATTRIBUTES} attributes; delete some first"
            ));
        }
        if name.starts_with("master-") {
            self.scored.insert(name.to_string());
        }
        Ok(self.values.insert(name.to_string(), value.clone()).as_deref() != Some(value.as_str()))
    }

    /// Deletes `name`; whether it was set. Deleting a promotion score closes the gate
    /// for its resource (the agent said its data may not be promoted).
    pub fn delete(&mut self, name: &str) -> Result<bool, String> {
        check_name(name)?;
        if name.starts_with("master-") {
            self.scored.insert(name.to_string());
        }
        Ok(self.values.remove(name).is_some())
    }

    /// The promotion score of a resource, if its agent set one.
    pub fn score(&self, resource: &str) -> Option<i64> {
        self.get(&promotion_name(resource)).and_then(|v| parse_score(v).ok())
    }

    /// The part of the promotion gate that the group's promotable resources' scores
    /// make (pairbeat's own replicas are gated by their daemons instead): the weakest
    /// decides; a score not above 0, or deleted, closes the gate.
    pub fn gate(&self, group: &Group) -> DataGate {
        group
            .resources
            .iter()
            .filter(|r| r.promotable && r.replica().is_none())
            .filter(|r| self.scored.contains(&promotion_name(&r.id)))
            .fold(DataGate::Open, |g, r| {
                let one = match self.score(&r.id) {
                    Some(n) if n > 0 => DataGate::Score(n as u32),
                    _ => DataGate::Closed,
                };
                g.and(one)
            })
    }
}

fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME || !name.chars().all(|c| c.is_ascii_graphic()) {
        return Err(format!(
            "`{name}` is not an attribute name: 1 to {MAX_NAME} printable characters, no spaces"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AgentSpec, Resource};

    fn rsc(id: &str, kind: &str, promotable: bool) -> Resource {
        Resource {
            id: id.into(),
            agent: AgentSpec::Ocf {
                provider: "linbit".into(),
                kind: kind.into(),
            },
            params: Default::default(),
            args: Vec::new(),
            promotable,
            migration_threshold: None,
            failure_timeout: None,
            ops: Vec::new(),
        }
    }

    fn group() -> Group {
        Group {
            id: "g".into(),
            resources: vec![rsc("drbd0", "drbd", true), rsc("fs", "Filesystem", false)],
        }
    }

    #[test]
    fn scores_parse_as_pacemaker_writes_them() {
        assert_eq!(parse_score("10000"), Ok(10000));
        assert_eq!(parse_score("INFINITY"), Ok(INFINITY));
        assert_eq!(parse_score("+INFINITY"), Ok(INFINITY));
        assert_eq!(parse_score("-INFINITY"), Ok(-INFINITY));
        assert_eq!(parse_score("99999999"), Ok(INFINITY));
        let e = parse_score("high").unwrap_err();
        assert!(e.contains("`high` is not a score"), "{e}");
    }

    #[test]
    fn a_resource_that_never_set_a_score_is_not_gated() {
        let a = Attributes::default();
        assert_eq!(a.gate(&group()), DataGate::Open);
    }

    #[test]
    fn the_score_gates_once_set_and_a_deleted_score_closes() {
        let mut a = Attributes::default();
        assert_eq!(a.set("master-drbd0", "1000"), Ok(true));
        assert_eq!(a.set("master-drbd0", "1000"), Ok(false), "same value: no change");
        assert_eq!(a.gate(&group()), DataGate::Score(1000));
        assert_eq!(a.set("master-drbd0", "10000"), Ok(true));
        assert_eq!(a.gate(&group()), DataGate::Score(10000));
        assert_eq!(a.delete("master-drbd0"), Ok(true));
        assert_eq!(
            a.gate(&group()),
            DataGate::Closed,
            "Outdated data: its agent deleted the score"
        );
        a.set("master-drbd0", "-INFINITY").unwrap();
        assert_eq!(a.gate(&group()), DataGate::Closed);
        a.set("master-drbd0", "0").unwrap();
        assert_eq!(a.gate(&group()), DataGate::Closed, "0 is not a score to promote on");
        // A delete before any set also gates: the agent has spoken.
        let mut b = Attributes::default();
        b.delete("master-drbd0").unwrap();
        assert_eq!(b.gate(&group()), DataGate::Closed);
    }

    #[test]
    fn only_promotable_resources_of_the_group_are_gated() {
        let mut a = Attributes::default();
        a.set("master-fs", "0").unwrap();
        a.set("master-elsewhere", "0").unwrap();
        assert_eq!(a.gate(&group()), DataGate::Open);
    }

    #[test]
    fn bad_attributes_are_refused_with_the_rule() {
        let mut a = Attributes::default();
        assert!(a.set("", "1").unwrap_err().contains("not an attribute name"));
        assert!(a.set("has space", "1").unwrap_err().contains("no spaces"));
        assert!(a
            .set("x", &"v".repeat(MAX_VALUE + 1))
            .unwrap_err()
            .contains("longer than"));
        assert!(a.set("x", "a\nb").unwrap_err().contains("control characters"));
        let e = a.set("master-drbd0", "lots").unwrap_err();
        assert!(
            e.contains("promotion score master-drbd0") && e.contains("INFINITY"),
            "{e}"
        );
        assert_eq!(a.gate(&group()), DataGate::Open, "a refused score is not a score");
        for i in 0..MAX_ATTRIBUTES {
            a.set(&format!("a{i}"), "1").unwrap();
        }
        assert!(a.set("one-more", "1").unwrap_err().contains("delete some first"));
        assert_eq!(a.set("a0", "2"), Ok(true), "an existing one can still change");
    }
}
