//! The status model from the node's state: one pure function, [`project`], that the
//! daemon calls for each status request and that unit tests call with a node they
//! drove by hand. The renderers (`crate::control::render`) only render what this
//! builds, including the typed "Attention" items.

use crate::control::status::{
    Attention, FailureStatus, FencePeer, LinkState, NodeState, PromotionGate, ResourceState, Status,
};
use crate::membership::{LinkLiveness, PeerLiveness};
use crate::model::{Advert, DataGate, FenceState, Holding, Mode};
use crate::policy::Decision;
use crate::resources::{RscState, Target};

use super::Node;

/// `template` is `Status::initial` for this node's configuration (names, links,
/// resources and daemon facts); everything that changes is filled in from `node`.
pub fn project(node: &Node, template: &Status, now: std::time::Instant) -> Status {
    let mut s = template.clone();
    let local = s.nodes.iter().position(|n| n.local).unwrap_or(0);
    let peer = 1 - local;
    resources(node, &mut s);
    peers(node, &mut s, local, peer);
    protection(node, &mut s, now);
    s.attention = attention(&s, node.role().decision());
    s
}

/// The group runs here: every resource up, and the target is to run it.
fn runs_here(node: &Node) -> bool {
    node.engine().all_up() && node.engine().target() == Some(Target::Active)
}

/// The peer's advert, while it is up.
fn live_advert(node: &Node) -> Option<Advert> {
    let m = node.membership();
    m.peer_advert().filter(|_| m.peer() == PeerLiveness::Up)
}

/// The peer says it runs the whole group (settled and running).
fn runs_on_peer(node: &Node) -> bool {
    live_advert(node).is_some_and(|a| a.holding == Holding::Running && a.settled)
}

/// The peer's state as status shows it: liveness, and standby from its advert.
fn peer_state(node: &Node) -> NodeState {
    if live_advert(node).is_some_and(|a| matches!(a.mode, Mode::Standby | Mode::Leaving)) {
        return NodeState::Standby;
    }
    match node.membership().peer() {
        PeerLiveness::Unknown => NodeState::Unknown,
        PeerLiveness::Up => NodeState::Online,
        PeerLiveness::Dead => NodeState::Offline,
    }
}

/// Resource states, fail counts, failures; the owner when the whole group runs here.
fn resources(node: &Node, s: &mut Status) {
    let engine = node.engine();
    let here = s.local_node.clone();
    for (i, r) in s.group.resources.iter_mut().enumerate() {
        let v = engine.view(i);
        r.state = match v.state {
            RscState::Unknown => ResourceState::Unknown,
            RscState::Stopped => ResourceState::Stopped,
            RscState::Started => ResourceState::Started,
            RscState::Promoted => ResourceState::Promoted,
            RscState::Failed => ResourceState::Failed,
            RscState::Blocked => ResourceState::Blocked,
        };
        r.node = match v.state {
            RscState::Started | RscState::Promoted | RscState::Failed | RscState::Blocked => Some(here.clone()),
            _ => None,
        };
        r.fail_count = v.fail_count;
        r.last_failure = v.last_failure.map(|f| FailureStatus {
            action: f.action.to_string(),
            outcome: f.outcome.to_string(),
            reason: f.reason,
            at: node.wall_at(f.at),
        });
    }
    s.group.owner = runs_here(node).then(|| here.clone());
    s.group.blocked = engine.is_blocked();
    s.group.banned = engine.banned().map(str::to_string);
    if let Some(c) = node.last_change() {
        s.last_change = Some(crate::control::status::Change {
            at: c.at,
            what: c.what.clone(),
        });
    }
}

/// Node and link states, packet counters; the group on the peer when it says so.
fn peers(node: &Node, s: &mut Status, local: usize, peer: usize) {
    let m = node.membership();
    s.nodes[local].state = match node.role().mode(node.engine()) {
        Mode::Standby | Mode::Leaving => NodeState::Standby,
        _ => NodeState::Online,
    };
    s.nodes[peer].state = peer_state(node);
    for (i, l) in s.links.iter_mut().enumerate() {
        l.state = match m.link(i) {
            LinkLiveness::Unknown => LinkState::Unknown,
            LinkLiveness::Up => LinkState::Up,
            LinkLiveness::Late => LinkState::Late,
            LinkLiveness::Dead => LinkState::Dead,
        };
    }
    s.packets = m.counters();
    // The group runs on the peer when the peer says so (and it does not run here).
    if s.group.owner.is_none() && runs_on_peer(node) {
        let name = s.nodes[peer].name.clone();
        s.group.owner = Some(name.clone());
        // A settled peer that runs the group runs all of it: say so, as it would.
        for r in s
            .group
            .resources
            .iter_mut()
            .filter(|r| r.state == ResourceState::Stopped)
        {
            r.state = ResourceState::Started;
            r.node = Some(name.clone());
        }
    }
}

/// Split-brain protection, the fencing device, the split-brain log, the decision.
fn protection(node: &Node, s: &mut Status, now: std::time::Instant) {
    let role = node.role();
    let p = &mut s.protection;
    p.epoch = role.epoch();
    p.awaiting_operator = role.awaiting_operator();
    if let (Some(t), Some(r)) = (p.tiebreak.as_mut(), node.reach()) {
        t.reachable = r.count(now);
        for (i, target) in t.targets.iter_mut().enumerate() {
            target.reachable = r.reachable(i, now);
        }
    }
    if let Some(f) = p.fencing.as_mut() {
        f.peer = match role.fence_state() {
            FenceState::NotFenced => FencePeer::NotFenced,
            FenceState::InProgress => FencePeer::InProgress,
            FenceState::Fenced => FencePeer::Fenced,
            FenceState::Failed => FencePeer::Failed,
        };
        f.last = role.fence_last().map(str::to_string);
        if let Some(d) = node.device_check() {
            f.device_ok = Some(d.ok);
            f.device_detail = Some(d.detail.clone());
        }
    }
    p.promotion_gate = match role.data() {
        DataGate::Open => None,
        g => Some(PromotionGate {
            state: match g {
                DataGate::Score(_) => "eligible",
                DataGate::IfPeerFenced => "needs_fencing",
                _ => "not_eligible",
            }
            .to_string(),
            score: g.advert(),
            // What a dead peer said last is no score of its now.
            peer_score: node
                .membership()
                .peer_advert()
                .filter(|_| node.membership().peer() == PeerLiveness::Up)
                .and_then(|a| a.data),
        }),
    };
    s.split_brains = role.split_brains();
    let decision = role.decision();
    s.decision = decision.map(|d| d.reason.to_string());
    s.decision_reason = decision.map(|d| d.reason.code());
}

/// What needs the operator, in the order the text shows it; the decision last.
fn attention(s: &Status, decision: Option<&Decision>) -> Vec<Attention> {
    let mut items = Vec::new();
    if s.group.blocked {
        items.push(Attention::GroupBlocked);
    }
    if let Some(reason) = &s.group.banned {
        items.push(Attention::GroupBanned { reason: reason.clone() });
    }
    let p = &s.protection;
    if p.awaiting_operator {
        items.push(Attention::AwaitingOperator);
    }
    items.extend(s.split_brains.iter().map(|r| Attention::SplitBrain { id: r.id }));
    if let Some(f) = &p.fencing {
        if f.device_ok == Some(false) {
            items.push(Attention::FenceDeviceDown {
                detail: f.device_detail.clone().unwrap_or_else(|| "no detail".to_string()),
            });
        }
        if matches!(f.peer, FencePeer::Failed | FencePeer::InProgress) {
            items.push(Attention::FencingPeer {
                state: f.peer,
                detail: f.last.clone(),
            });
        }
    }
    if let Some(d) = decision.filter(|d| d.reason.needs_attention()) {
        items.push(Attention::Decision {
            reason: d.reason.code(),
        });
    }
    items
}

/// One line for systemd's STATUS= (shown by `systemctl status`), straight from the
/// node: the shell asks for it after every turn, so it builds no whole status.
pub fn summary_line(node: &Node) -> String {
    let peer_state = match peer_state(node) {
        NodeState::Online => "online",
        NodeState::Offline => "OFFLINE",
        NodeState::Standby => "standby",
        NodeState::Unknown => "not heard yet",
    };
    let group = if node.engine().is_blocked() {
        "group BLOCKED".to_string()
    } else if runs_here(node) {
        format!("group on {}", node.local_name())
    } else if runs_on_peer(node) {
        format!("group on {}", node.peer_name())
    } else {
        "group stopped".to_string()
    };
    format!("{group}; peer {} {peer_state}", node.peer_name())
}
