//! The status model: what `pairbeat status` shows, as one serializable value.
//!
//! This is the schema of `pairbeat status --output-as=json` (documented in the
//! README). States a subsystem does not know yet are `unknown`, never guessed.
//! `schema` is bumped when a field changes meaning; new fields may be added
//! without a bump, so readers must ignore fields they do not know.

use serde::{Deserialize, Serialize};

use crate::config::Config;
pub use crate::replica::report::ReplicaStatus;

/// Version of this JSON layout.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub schema: u32,
    /// "pairbeat 0.1.0"
    pub stack: String,
    pub cluster: String,
    pub local_node: String,
    pub daemon: DaemonInfo,
    pub nodes: Vec<NodeStatus>,
    pub links: Vec<LinkStatus>,
    pub group: GroupStatus,
    /// What arrived on the heartbeat links, and what was dropped and why.
    pub packets: PacketCounters,
    /// The last time the group settled somewhere, and where.
    #[serde(default)]
    pub last_change: Option<Change>,
    /// Split-brain protection: the heal policy, the tie-break, the fencing device.
    #[serde(default)]
    pub protection: Protection,
    /// Split brains not yet acknowledged (`pairbeat acknowledge`), oldest first.
    #[serde(default)]
    pub split_brains: Vec<crate::split_brain::Record>,
    /// Why the group is where it is: this node's last decision, in words.
    #[serde(default)]
    pub decision: Option<String>,
    /// The decision's reason as a stable code (`peer_dead`, `fence_failed`, ...).
    #[serde(default)]
    pub decision_reason: Option<String>,
    /// What needs the operator's eye, typed; the text renderer's "Attention".
    #[serde(default)]
    pub attention: Vec<Attention>,
    /// The replicated disks (`[[replica]]`), as their pairbeat-replicad last
    /// answered pairbeatd.
    #[serde(default)]
    pub replicas: Vec<ReplicaView>,
    /// This node's attributes, as its agents set them with crm_attribute,
    /// crm_master or attrd_updater (promotion scores are `master-RESOURCE`).
    #[serde(default)]
    pub attributes: Vec<NodeAttribute>,
}

/// One node attribute an agent set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAttribute {
    pub name: String,
    pub value: String,
}

/// One replicated disk, as pairbeatd last heard of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaView {
    pub name: String,
    /// Its daemon's answer (`pairbeat replica status`); `None` until pairbeatd has
    /// asked, or when the daemon did not answer.
    #[serde(default)]
    pub status: Option<ReplicaStatus>,
    /// Why the daemon could not be asked.
    #[serde(default)]
    pub unreachable: Option<String>,
}

impl ReplicaView {
    /// What needs the operator, as (stable code, words).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(why) = &self.unreachable {
            out.push(("unreachable", format!("its daemon does not answer: {why}")));
        }
        let Some(st) = &self.status else {
            return out;
        };
        if let Some(f) = &st.failed {
            out.push(("failed", format!("failed Primary: {f}")));
        }
        if st.io_frozen {
            out.push((
                "io_frozen",
                "I/O frozen: the peer was lost and is not known to be outdated (`pairbeat replica resume-io` overrides)"
                    .into(),
            ));
        }
        if st.split_brain_pending {
            out.push((
                "split_brain_pending",
                format!(
                    "split brain: both sides changed the data; on the node whose changes are to go, `pairbeat replica discard-my-data {}` (they are saved aside first)",
                    self.name
                ),
            ));
        }
        let resyncing = st.connection == "SyncTarget";
        match st.disk.as_str() {
            "Outdated" => out.push((
                "data_not_up_to_date",
                "the local disk is Outdated: the replica refuses promotion here until it has resynced".into(),
            )),
            "Inconsistent" if !resyncing => out.push((
                "data_not_up_to_date",
                "the local disk is Inconsistent: the replica refuses promotion here until a resync completes".into(),
            )),
            "Diskless" => out.push(("data_not_up_to_date", "no local disk (Diskless)".into())),
            _ => {}
        }
        out
    }
}

/// One thing that needs the operator, as `pairbeat status` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Attention {
    /// A stop failed: the group is unmanaged until `pairbeat cleanup`.
    GroupBlocked,
    /// Failures keep the group off this node until `pairbeat cleanup`.
    GroupBanned { reason: String },
    /// A stop-both split brain waits for `pairbeat resolve --keep NODE`.
    AwaitingOperator,
    /// A split brain not yet acknowledged (its record is in `split_brains`).
    SplitBrain { id: u64 },
    /// The fencing device does not answer its monitor.
    FenceDeviceDown { detail: String },
    /// Fencing the peer failed or is under way.
    FencingPeer { state: FencePeer, detail: Option<String> },
    /// The last decision is one an operator should know of (split brain, fencing,
    /// tie-break, a wait for the operator); its words are in `decision`.
    Decision { reason: String },
    /// A replicated disk needs the operator: `problem` is `unreachable`, `failed`,
    /// `io_frozen`, `split_brain_pending` or `data_not_up_to_date`.
    Replica {
        name: String,
        problem: String,
        detail: String,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Protection {
    /// keep-preferred, keep-running-longest, keep-last-writer or stop-both.
    pub split_brain_policy: String,
    /// This node's ownership epoch (keep-last-writer compares them).
    pub epoch: u64,
    /// A stop-both split brain waits for `pairbeat resolve --keep NODE`.
    pub awaiting_operator: bool,
    pub tiebreak: Option<TiebreakStatus>,
    pub fencing: Option<FencingStatus>,
    /// The promotion gate, when the group runs a replicated disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion_gate: Option<PromotionGate>,
}

/// May this node start the group, by its replicated data (`DataGate`)?
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromotionGate {
    /// `eligible`, `needs_fencing` (Consistent: only once the peer is fenced) or
    /// `not_eligible`.
    pub state: String,
    /// This node's promotion score (the lowest of the group's replicas).
    pub score: Option<u32>,
    /// What the peer last advertised (0: not eligible).
    pub peer_score: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TiebreakStatus {
    pub reachable: u32,
    pub targets: Vec<TargetStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetStatus {
    /// e.g. "icmp:192.0.2.1"
    pub target: String,
    pub reachable: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FencingStatus {
    pub agent: String,
    /// The device's last `monitor`: true when it answered, None before the first.
    pub device_ok: Option<bool>,
    pub device_detail: Option<String>,
    /// Fencing of the peer in this absence.
    pub peer: FencePeer,
    /// The last fence attempt, in words.
    pub last: Option<String>,
}

/// Where fencing the peer stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FencePeer {
    #[default]
    NotFenced,
    InProgress,
    Fenced,
    Failed,
}

/// A change of where the group runs, for "Last change:".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// Seconds since the Unix epoch.
    pub at: u64,
    /// e.g. "group running on alpha"
    pub what: String,
}

/// The packet counters are the membership core's own, serialized as they are.
pub use crate::membership::Counters as PacketCounters;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DaemonInfo {
    pub pid: u32,
    /// The configuration file the daemon runs with.
    pub config: String,
    /// Seconds since the Unix epoch when the daemon started.
    pub started_at: u64,
    pub uptime_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    Unknown,
    /// Heard on at least one link (for the local node: running).
    Online,
    /// Not heard on any link for deadtime.
    Offline,
    /// Online but not allowed to run the group (operator standby).
    Standby,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub name: String,
    pub local: bool,
    pub state: NodeState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    Unknown,
    Up,
    /// A keepalive is later than warntime.
    Late,
    Dead,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkStatus {
    pub name: String,
    /// "ucast", "bcast" or "mcast".
    pub kind: String,
    pub interface: String,
    pub port: u16,
    /// The node this link's state is about (the peer).
    pub peer: String,
    pub state: LinkState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceState {
    Unknown,
    Stopped,
    Starting,
    Started,
    Promoted,
    Stopping,
    Failed,
    /// A stop failed: nothing may start it elsewhere until this node is fenced or cleaned up.
    Blocked,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceStatus {
    pub id: String,
    /// "ocf:heartbeat:IPaddr2", "lsb:nginx", "heartbeat:drbddisk"
    pub agent: String,
    pub state: ResourceState,
    /// Where it runs, when known.
    pub node: Option<String>,
    pub fail_count: u32,
    /// Failures on one node after which the group leaves it (`None`: never for a count).
    #[serde(default)]
    pub migration_threshold: Option<u32>,
    /// The most recent failed operation, until `pairbeat cleanup`.
    pub last_failure: Option<FailureStatus>,
    /// The `[[replica]]` this resource runs (`heartbeat:replicadisk NAME`,
    /// `ocf:pairbeat:replica` with `replica = NAME`), if it runs one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<String>,
    /// The promotion score its agent last set on this node (crm_master), if any:
    /// its part of the promotion gate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion_score: Option<i64>,
}

/// A failed operation, in words.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailureStatus {
    /// "start", "stop", "monitor", "probe", "promote", "demote"
    pub action: String,
    /// e.g. "not running", "timed out", "generic error (exit 1, soft)"
    pub outcome: String,
    /// The agent's exit reason (`ocf-exit-reason:`), or its last line of stderr.
    pub reason: Option<String>,
    /// Seconds since the Unix epoch.
    pub at: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupStatus {
    pub id: String,
    /// The node that runs the group, when known.
    pub owner: Option<String>,
    /// A stop failed (or on_fail = block): nothing is done with the group until
    /// `pairbeat cleanup`, and it must not start on the peer unless this node is fenced.
    pub blocked: bool,
    /// Why the group may not run on this node (until cleanup), if it may not.
    pub banned: Option<String>,
    pub resources: Vec<ResourceStatus>,
}

impl Status {
    /// The status of a daemon that knows its configuration and nothing else yet.
    pub fn initial(config: &Config, daemon: DaemonInfo) -> Self {
        let peer = config.peer_name().to_string();
        Status {
            schema: SCHEMA_VERSION,
            stack: format!("pairbeat {}", env!("CARGO_PKG_VERSION")),
            cluster: config.cluster_name.clone(),
            local_node: config.local_name().to_string(),
            daemon,
            nodes: config
                .nodes
                .iter()
                .enumerate()
                .map(|(i, name)| NodeStatus {
                    name: name.clone(),
                    local: i == config.local,
                    // The local node is running: this process is its proof.
                    state: if i == config.local {
                        NodeState::Online
                    } else {
                        NodeState::Unknown
                    },
                })
                .collect(),
            links: config
                .links
                .iter()
                .map(|l| LinkStatus {
                    name: l.name.clone(),
                    kind: l.kind.name().to_string(),
                    interface: l.interface.clone(),
                    port: l.port,
                    peer: peer.clone(),
                    state: LinkState::Unknown,
                })
                .collect(),
            group: GroupStatus {
                id: config.group.id.clone(),
                owner: None,
                resources: config
                    .group
                    .resources
                    .iter()
                    .map(|r| ResourceStatus {
                        id: r.id.clone(),
                        agent: r.agent.to_string(),
                        state: ResourceState::Unknown,
                        node: None,
                        fail_count: 0,
                        migration_threshold: r.migration_threshold,
                        last_failure: None,
                        replica: r.replica().map(str::to_string),
                        promotion_score: None,
                    })
                    .collect(),
                blocked: false,
                banned: None,
            },
            packets: PacketCounters::default(),
            last_change: None,
            protection: Protection {
                split_brain_policy: config.split_brain.name().to_string(),
                epoch: 0,
                awaiting_operator: false,
                tiebreak: config.tiebreak.as_ref().map(|t| TiebreakStatus {
                    reachable: 0,
                    targets: t
                        .targets
                        .iter()
                        .map(|t| TargetStatus {
                            target: t.to_string(),
                            reachable: false,
                        })
                        .collect(),
                }),
                fencing: config.fence.as_ref().map(|f| FencingStatus {
                    agent: f.agent.display().to_string(),
                    device_ok: None,
                    device_detail: None,
                    peer: FencePeer::NotFenced,
                    last: None,
                }),
                promotion_gate: None,
            },
            split_brains: Vec::new(),
            decision: None,
            decision_reason: None,
            attention: Vec::new(),
            replicas: config
                .replicas
                .iter()
                .map(|r| ReplicaView {
                    name: r.name.clone(),
                    status: None,
                    unreachable: None,
                })
                .collect(),
            attributes: Vec::new(),
        }
    }

    /// Fills in the attributes this node's agents set, and each resource's score.
    pub fn set_attributes(&mut self, attrs: &crate::attributes::Attributes) {
        self.attributes = attrs
            .all()
            .iter()
            .map(|(name, value)| NodeAttribute {
                name: name.clone(),
                value: value.clone(),
            })
            .collect();
        for r in &mut self.group.resources {
            r.promotion_score = attrs.score(&r.id);
        }
    }

    /// Fills in what the replicas' daemons last said, and what of it needs the operator.
    pub fn set_replicas(&mut self, views: Vec<ReplicaView>) {
        for v in &views {
            for (problem, detail) in v.problems() {
                self.attention.push(Attention::Replica {
                    name: v.name.clone(),
                    problem: problem.into(),
                    detail,
                });
            }
        }
        self.replicas = views;
    }
}
