//! Who runs the group: the two-node decision, as a pure function of what this node
//! knows (its own group, its operator mode, the peer's liveness and the peer's last
//! advertised state).
//!
//! Each node advertises, in every keepalive, what it holds (`Advert`); a change is
//! sent at once. The rules:
//! - the group starts here only when the peer reports it stopped, or the peer is
//!   dead on every link — never while the peer may still hold it;
//! - a peer that died while its group was blocked (a stop that failed) is not taken
//!   over: it may still hold the data, and only fencing may settle that;
//! - when both are up and eligible: whoever holds it keeps it (`auto_failback =
//!   false`), or it returns to the preferred node once that node is back and settled
//!   (`auto_failback = true`); when neither holds it, the preferred node takes it;
//! - a node in standby (operator), leaving (SIGTERM), or banned (failures) is not
//!   eligible; `takeover` asks an eligible peer to yield.
//! - at start, before the peer was ever heard, nothing is started until initdead
//!   declares the peer dead.
//! - the promotion gate: with a replicated disk in the group, a node whose data is
//!   not provably up to date (`DataGate`) never starts the group — also alone, and
//!   also when the peer is dead; Consistent data only once the peer is fenced. Both
//!   eligible and neither running: the higher promotion score wins before
//!   `preferred_node`. A node that runs the group is not stopped by it (its
//!   replica's monitor speaks for a failed Primary).

use std::fmt;

pub use crate::model::{Advert, DataGate, FenceState, Holding, Mode, SplitBrainPolicy, Target, Verdict};

/// What this node knows of the peer besides its liveness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PeerView {
    /// Its last advert, if it sent one (a Heartbeat peer does not).
    pub advert: Option<Advert>,
    /// How long it has run the group, as it last said, aged to now.
    pub ran_ms: Option<u64>,
    /// Silent for warntime on every link (not dead yet).
    pub late: bool,
    pub fence: FenceState,
}

/// The peer as membership and its adverts show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// Not heard yet, within initdead.
    Unknown,
    Alive(PeerView),
    /// Silent on every link.
    Dead(PeerView),
}

/// This node's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Local {
    pub me: usize,
    pub preferred: usize,
    pub auto_failback: bool,
    pub advert: Advert,
    pub policy: SplitBrainPolicy,
    /// A fencing device is configured.
    pub fencing: bool,
    /// How long the group has run here.
    pub ran_ms: Option<u64>,
    /// Run times closer than this count as equal (one keepalive: what the peer's
    /// figure may lag by).
    pub tolerance_ms: u64,
    /// The split-brain verdict already chosen for the split brain in progress: it
    /// stands (the policy is not asked again), so a near-tie of run times measured
    /// a keepalive apart cannot flip it back and forth.
    pub latched: Option<Verdict>,
    /// What the replicated data here allows.
    pub data: DataGate,
    /// The group's promotable resources are promoted here (true with none): a node
    /// that runs the group on promoted data is not stopped by its gate; one whose
    /// data was demoted (it was handing the group over) is not promoted again
    /// while the gate is closed.
    pub promoted: bool,
}

impl Local {
    /// A node with the default policy, no fencing and no tie-break.
    pub fn new(me: usize, preferred: usize, auto_failback: bool, advert: Advert) -> Self {
        Local {
            me,
            preferred,
            auto_failback,
            advert,
            policy: SplitBrainPolicy::KeepPreferred,
            fencing: false,
            ran_ms: None,
            tolerance_ms: 1000,
            latched: None,
            data: DataGate::Open,
            promoted: true,
        }
    }
}

/// The decision, with the reason to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub target: Target,
    pub reason: Reason,
    /// The peer must be fenced (the shell runs the device unless it already did).
    pub fence_peer: bool,
    /// This node's split-brain verdict, while both run the group.
    pub heal: Option<Verdict>,
    /// Advertise a claim to start the group (see `Advert::claim`).
    pub claim: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    WaitingForPeer,
    NotEligible(Mode),
    PeerDead,
    PeerDeadBlocked,
    PeerHolds,
    PeerStopping,
    PreferredTakesIt,
    PeerPreferredTakesIt,
    KeepsIt,
    PeerYields,
    PeerTakesOver,
    YieldToTakeover,
    FailbackToPreferred,
    FailbackFromPeer,
    PeerNotEligible,
    PeerBlocked,
    PeerBlockedKeeps,
    HeartbeatPeer,
    SelfFence,
    NoTargets,
    ReachesMore,
    PeerReachesMore,
    Fencing,
    FenceFailed,
    FenceFailedKeeps,
    PeerFenced,
    SplitBrainKeep(SplitBrainPolicy),
    SplitBrainYield(SplitBrainPolicy),
    SplitBrainWaitForKeeper,
    SplitBrainStop,
    AwaitingOperator,
    PeerAwaitsOperator,
    Claiming,
    PeerClaims,
    DataNotUpToDate,
    DataNeedsFencing,
    BetterData,
    PeerBetterData,
    /// Back from a pause, still reading what the links hold (nothing starts).
    CatchingUp,
}

impl Reason {
    /// A stable snake_case code for status (`peer_dead`, `split_brain_keep`, ...).
    pub fn code(&self) -> String {
        let debug = format!("{self:?}");
        let name = debug.split('(').next().unwrap_or("");
        let mut code = String::new();
        for (i, c) in name.chars().enumerate() {
            if c.is_ascii_uppercase() {
                if i > 0 {
                    code.push('_');
                }
                code.push(c.to_ascii_lowercase());
            } else {
                code.push(c);
            }
        }
        code
    }

    /// A decision an operator should know of: split brain, fencing, the tie-break,
    /// or a wait for the operator.
    pub fn needs_attention(&self) -> bool {
        matches!(
            self,
            Reason::PeerDeadBlocked
                | Reason::PeerBlocked
                | Reason::PeerBlockedKeeps
                | Reason::SelfFence
                | Reason::NoTargets
                | Reason::ReachesMore
                | Reason::PeerReachesMore
                | Reason::Fencing
                | Reason::FenceFailed
                | Reason::FenceFailedKeeps
                | Reason::PeerFenced
                | Reason::SplitBrainKeep(_)
                | Reason::SplitBrainYield(_)
                | Reason::SplitBrainWaitForKeeper
                | Reason::SplitBrainStop
                | Reason::AwaitingOperator
                | Reason::PeerAwaitsOperator
                | Reason::DataNotUpToDate
                | Reason::DataNeedsFencing
        )
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Reason::WaitingForPeer => "waiting for the peer (initdead) before starting anything",
            Reason::CatchingUp => "this node was not scheduled for a while: reading what its links hold before starting anything",
            Reason::NotEligible(Mode::Standby) => "this node is in standby (pairbeat online ends it)",
            Reason::NotEligible(Mode::Leaving) => "this node is shutting down",
            Reason::NotEligible(Mode::Banned) => "failures make this node ineligible (pairbeat cleanup ends it)",
            Reason::NotEligible(Mode::Online) => "this node is not eligible",
            Reason::PeerDead => "the peer is dead on every link: taking the group over",
            Reason::PeerDeadBlocked => "the peer died with its group BLOCKED (a stop failed): not taking over, it may still hold the data; fence it or clean up",
            Reason::PeerHolds => "the peer runs the group",
            Reason::PeerStopping => "the peer is handing the group over: starting once it reports it stopped",
            Reason::PreferredTakesIt => "both nodes up, neither runs the group, this is the preferred node",
            Reason::PeerPreferredTakesIt => "both nodes up, neither runs the group, the peer is the preferred node",
            Reason::KeepsIt => "this node runs the group and keeps it (auto_failback off, or this is the preferred node)",
            Reason::PeerYields => "the peer yields the group",
            Reason::PeerTakesOver => "the peer asked to take the group (pairbeat takeover or resolve)",
            Reason::YieldToTakeover => "the peer asked to take the group over (pairbeat takeover)",
            Reason::FailbackToPreferred => "auto_failback: the preferred node is back, handing the group to it",
            Reason::FailbackFromPeer => "auto_failback: this is the preferred node, taking the group back",
            Reason::PeerNotEligible => "the peer is in standby, leaving or banned",
            Reason::PeerBlocked => "the peer's group is BLOCKED: not starting it here unless the peer is fenced",
            Reason::PeerBlockedKeeps => "the peer's group is BLOCKED (a stop failed) while this node runs it: keeping it here; only fencing or cleanup on the peer settles its copy",
            Reason::HeartbeatPeer => "the peer is a Heartbeat node (no group adverts): the preferred node runs the group",
            Reason::SelfFence => "self-fencing: the peer is silent and no tie-break target answers, so this node may be the cut-off one; stopping the group so the peer can take it safely",
            Reason::NoTargets => "the peer is silent but no tie-break target answers either: this node may be the cut-off one, not taking over",
            Reason::ReachesMore => "this node reaches more tie-break targets than the peer: the group moves here",
            Reason::PeerReachesMore => "the peer reaches more tie-break targets: handing the group to it",
            Reason::Fencing => "the peer is silent and may still hold the group: fencing it before anything starts here",
            Reason::FenceFailed => "fencing the peer FAILED: not taking over (it may still hold the data); retrying",
            Reason::FenceFailedKeeps => "fencing the peer FAILED; this node keeps running the group and retries",
            Reason::PeerFenced => "the peer is fenced: taking the group over",
            Reason::SplitBrainKeep(p) => return write!(f, "SPLIT BRAIN healed: both nodes ran the group; policy {} keeps it here", p.name()),
            Reason::SplitBrainYield(p) => return write!(f, "SPLIT BRAIN healed: both nodes ran the group; policy {} gives it to the peer, stopping it here", p.name()),
            Reason::SplitBrainWaitForKeeper => "SPLIT BRAIN: both nodes run the group; this node yields once the peer has re-asserted it",
            Reason::SplitBrainStop => "SPLIT BRAIN healed: both nodes ran the group; policy stop-both stops it on both (pairbeat resolve --keep NODE)",
            Reason::AwaitingOperator => "a split brain waits for the operator: `pairbeat resolve --keep NODE`",
            Reason::Claiming => "about to start the group: waiting for the peer to acknowledge the claim",
            Reason::PeerClaims => "both nodes claimed the group at once: the preferred peer takes it",
            Reason::PeerAwaitsOperator => "the peer waits for the operator after a split brain: `pairbeat resolve --keep NODE`",
            Reason::DataNotUpToDate => "the replicated data here is not provably up to date (Outdated, Inconsistent, a split brain pending, its daemon does not answer, or a promotable agent such as ocf:linbit:drbd withdrew its promotion score): not starting the group here (see Replicated Disks and Node Attributes)",
            Reason::DataNeedsFencing => "the replicated data here is only Consistent (not connected since it started): it may run the group only once the peer's replica answers, or the peer is fenced; `pairbeat replica primary NAME --force` asserts it",
            Reason::BetterData => "both nodes up, neither runs the group, this node's replicated data has the higher promotion score",
            Reason::PeerBetterData => "both nodes up, neither runs the group, the peer's replicated data has the higher promotion score",
        };
        f.write_str(s)
    }
}

/// The epoch to record when this node starts the group: past both nodes' epochs.
pub fn next_epoch(mine: u64, peer: Option<u64>) -> u64 {
    mine.max(peer.unwrap_or(0)) + 1
}

/// The group's target on this node.
pub fn decide(local: &Local, peer: Peer) -> Decision {
    let mine = local.advert;
    let d = |target, reason| Decision {
        target,
        reason,
        fence_peer: false,
        heal: None,
        claim: false,
    };
    let i_hold = mine.holding == Holding::Running;
    // Cut off from the peer and from every target: this may be the isolated node.
    let cut_off = mine.reach == Some(0)
        && match peer {
            Peer::Dead(_) => true,
            Peer::Alive(v) => v.late,
            Peer::Unknown => false,
        };
    if cut_off && i_hold {
        return d(Target::Passive, Reason::SelfFence);
    }
    if mine.mode != Mode::Online {
        return d(Target::Passive, Reason::NotEligible(mine.mode));
    }
    if mine.awaiting_operator {
        return d(Target::Passive, Reason::AwaitingOperator);
    }
    let preferred = local.preferred == local.me;
    // The promotion gate: data that is not provably up to date never starts here.
    // Consistent data starts only after the peer is fenced, which `peer_dead` does
    // first; with the peer alive, its replica's answer is what settles it.
    // (Found by the cluster simulation: a node yielding the group after a split
    // brain had demoted its replica when the heal ended early; holding the rest, it
    // took the group back and promoted data whose split brain was pending.)
    if !(i_hold && local.promoted) {
        match (local.data, peer) {
            (DataGate::Closed, _) => return d(Target::Passive, Reason::DataNotUpToDate),
            (DataGate::IfPeerFenced, Peer::Dead(_)) if local.fencing => {}
            (DataGate::IfPeerFenced, _) => return d(Target::Passive, Reason::DataNeedsFencing),
            _ => {}
        }
    }
    let v = match peer {
        Peer::Unknown => {
            return d(
                if i_hold { Target::Active } else { Target::Passive },
                Reason::WaitingForPeer,
            )
        }
        Peer::Dead(v) => return peer_dead(local, v),
        Peer::Alive(v) => v,
    };
    let Some(p) = v.advert else {
        return d(
            if preferred { Target::Active } else { Target::Passive },
            Reason::HeartbeatPeer,
        );
    };
    if cut_off {
        return d(Target::Passive, Reason::NoTargets);
    }
    if p.awaiting_operator {
        return d(Target::Passive, Reason::PeerAwaitsOperator);
    }
    // A peer whose data is not eligible may not start the group (it may keep it).
    let peer_eligible = p.mode == Mode::Online && (p.holding == Holding::Running || p.data != Some(0));
    let data = match (mine.data, p.data) {
        (Some(a), Some(b)) => a.cmp(&b),
        _ => std::cmp::Ordering::Equal,
    };
    let peer_holds = p.holding == Holding::Running;
    let peer_not_clear = p.holding != Holding::Stopped;
    // Unequal reachability moves the group to the better-connected node (ipfail).
    let reach = match (mine.reach, p.reach) {
        (Some(a), Some(b)) => a.cmp(&b),
        _ => std::cmp::Ordering::Equal,
    };
    if p.holding == Holding::Blocked && i_hold {
        // Both have it and the peer cannot stop its copy: stopping here too would
        // only add an outage. Fence the peer if a device is there.
        return Decision {
            fence_peer: local.fencing && v.fence != FenceState::Fenced,
            ..d(Target::Active, Reason::PeerBlockedKeeps)
        };
    }
    if p.holding == Holding::Blocked {
        // Only fencing settles a peer whose stop failed.
        return match (local.fencing, v.fence) {
            (true, FenceState::Fenced) => d(Target::Active, Reason::PeerFenced),
            (true, FenceState::Failed) => Decision {
                fence_peer: true,
                ..d(Target::Passive, Reason::FenceFailed)
            },
            (true, _) => Decision {
                fence_peer: true,
                ..d(Target::Passive, Reason::Fencing)
            },
            (false, _) => d(Target::Passive, Reason::PeerBlocked),
        };
    }
    if i_hold && peer_holds && peer_eligible {
        return heal(local, p, v);
    }
    // Whom the group belongs to, if nothing stood in the way.
    let (mine_to_run, reason) = if !peer_eligible {
        (true, Reason::PeerNotEligible)
    } else if i_hold && reach.is_lt() {
        (false, Reason::PeerReachesMore)
    } else if peer_holds && reach.is_gt() {
        (true, Reason::ReachesMore)
    } else if i_hold {
        if p.takeover && !mine.takeover {
            (false, Reason::YieldToTakeover)
        } else if local.auto_failback && !preferred && p.settled {
            (false, Reason::FailbackToPreferred)
        } else {
            (true, Reason::KeepsIt)
        }
    } else if peer_holds {
        if mine.takeover && !p.takeover {
            (true, Reason::PeerYields)
        } else if local.auto_failback && preferred && mine.settled {
            (true, Reason::FailbackFromPeer)
        } else {
            (false, Reason::PeerHolds)
        }
    } else if mine.takeover && !p.takeover {
        (true, Reason::PeerYields)
    } else if p.takeover && !mine.takeover {
        (false, Reason::PeerTakesOver)
    } else if data.is_ne() {
        // Fresher data first: a node whose replica knows its peer beats one whose
        // replica does not.
        (
            data.is_gt(),
            if data.is_gt() {
                Reason::BetterData
            } else {
                Reason::PeerBetterData
            },
        )
    } else if reach.is_ne() {
        (
            reach.is_gt(),
            if reach.is_gt() {
                Reason::ReachesMore
            } else {
                Reason::PeerReachesMore
            },
        )
    } else if preferred {
        (true, Reason::PreferredTakesIt)
    } else {
        (false, Reason::PeerPreferredTakesIt)
    };
    // Never start while the peer may still hold any of it: wait for its "stopped".
    if mine_to_run && peer_not_clear && !i_hold {
        return d(Target::Passive, Reason::PeerStopping);
    }
    if mine_to_run && !i_hold {
        // Claim first; start once the peer has seen the claim. Both claiming: the
        // preferred node goes on, the other withdraws.
        if p.claim && !preferred {
            return d(Target::Passive, Reason::PeerClaims);
        }
        // A peer that is leaving (shutting down) never starts again: no need to wait
        // for it, and it may exit before it could answer.
        if !p.claim_seen && p.mode != Mode::Leaving {
            return Decision {
                claim: true,
                ..d(Target::Passive, Reason::Claiming)
            };
        }
        return Decision {
            claim: true,
            ..d(Target::Active, reason)
        };
    }
    d(if mine_to_run { Target::Active } else { Target::Passive }, reason)
}

/// The peer is silent on every link.
fn peer_dead(local: &Local, v: PeerView) -> Decision {
    let mine = local.advert;
    let d = |target, reason, fence_peer| Decision {
        target,
        reason,
        fence_peer,
        heal: None,
        claim: false,
    };
    let i_hold = mine.holding == Holding::Running;
    if mine.reach == Some(0) {
        return d(Target::Passive, Reason::NoTargets, false);
    }
    // A peer that said it stopped and left needs no fencing; any other may hold the group.
    let left_cleanly = v
        .advert
        .is_some_and(|a| a.holding == Holding::Stopped && a.mode == Mode::Leaving);
    // Consistent data is eligible only through fencing, however the peer left.
    if local.fencing && (!left_cleanly || local.data == DataGate::IfPeerFenced) {
        return match v.fence {
            FenceState::Fenced => d(Target::Active, Reason::PeerFenced, false),
            FenceState::Failed if i_hold => d(Target::Active, Reason::FenceFailedKeeps, true),
            FenceState::Failed => d(Target::Passive, Reason::FenceFailed, true),
            _ if i_hold => d(Target::Active, Reason::Fencing, true),
            _ => d(Target::Passive, Reason::Fencing, true),
        };
    }
    if v.advert.is_some_and(|a| a.holding == Holding::Blocked) {
        return d(Target::Passive, Reason::PeerDeadBlocked, false);
    }
    d(Target::Active, Reason::PeerDead, false)
}

/// Both nodes run the group and hear each other: the policy picks one, and the two
/// agree through their advertised verdicts before anything stops. The keeper never
/// stops; the other stops only once the keeper says `Keep` (advertised after it
/// re-asserted its resources, e.g. IPaddr2's ARP refresh), so clients never lose it.
fn heal(local: &Local, p: Advert, v: PeerView) -> Decision {
    let preferred = local.preferred == local.me;
    let by_preference = if preferred { Verdict::Keep } else { Verdict::Yield };
    let chosen = match local.policy {
        SplitBrainPolicy::StopBoth => Verdict::Stop,
        SplitBrainPolicy::KeepPreferred => by_preference,
        SplitBrainPolicy::KeepRunningLongest => match (local.ran_ms, v.ran_ms) {
            (Some(a), Some(b)) if a > b + local.tolerance_ms => Verdict::Keep,
            (Some(a), Some(b)) if b > a + local.tolerance_ms => Verdict::Yield,
            _ => by_preference,
        },
        SplitBrainPolicy::KeepLastWriter => match local.advert.epoch.cmp(&p.epoch) {
            std::cmp::Ordering::Greater => Verdict::Keep,
            std::cmp::Ordering::Less => Verdict::Yield,
            std::cmp::Ordering::Equal => by_preference,
        },
    };
    let mine = local.latched.unwrap_or(chosen);
    // Both keep, or both yield (run times measured a keepalive apart, or the two
    // configs differ): the preferred node keeps it. The peer's chosen verdict comes
    // at once (`verdict`); a peer that does not send it is read by its `heal`.
    let mine = match (mine, p.verdict.or(p.heal)) {
        (Verdict::Keep, Some(Verdict::Keep)) | (Verdict::Yield, Some(Verdict::Yield)) => by_preference,
        (m, _) => m,
    };
    let d = |target, reason| Decision {
        target,
        reason,
        fence_peer: false,
        heal: Some(mine),
        claim: false,
    };
    match mine {
        Verdict::Stop => d(Target::Passive, Reason::SplitBrainStop),
        Verdict::Keep => d(Target::Active, Reason::SplitBrainKeep(local.policy)),
        Verdict::Yield if p.heal == Some(Verdict::Keep) => d(Target::Passive, Reason::SplitBrainYield(local.policy)),
        Verdict::Yield => d(Target::Active, Reason::SplitBrainWaitForKeeper),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An advert; as the peer's, it has seen any claim of ours (the claim handshake
    /// has its own test).
    fn adv(holding: Holding, mode: Mode) -> Advert {
        Advert {
            claim_seen: true,
            ..Advert::new(holding, mode)
        }
    }

    fn local(me: usize, auto_failback: bool, advert: Advert) -> Local {
        Local::new(me, 0, auto_failback, advert)
    }

    fn alive(a: Advert) -> Peer {
        Peer::Alive(PeerView {
            advert: Some(a),
            ..PeerView::default()
        })
    }

    fn dead(a: Option<Advert>) -> Peer {
        Peer::Dead(PeerView {
            advert: a,
            ..PeerView::default()
        })
    }

    use Holding::*;
    use Mode::*;

    #[test]
    fn start_up_waits_for_the_peer_then_the_preferred_node_runs_it() {
        let stopped = adv(Stopped, Online);
        assert_eq!(decide(&local(0, false, stopped), Peer::Unknown).target, Target::Passive);
        assert_eq!(
            decide(&local(0, false, stopped), alive(stopped)).reason,
            Reason::PreferredTakesIt
        );
        assert_eq!(
            decide(&local(1, false, stopped), alive(stopped)).target,
            Target::Passive
        );
        // Alone after initdead: take it.
        assert_eq!(decide(&local(1, false, stopped), dead(None)).target, Target::Active);
    }

    #[test]
    fn never_start_while_the_peer_still_holds_it() {
        let me = local(1, false, adv(Stopped, Online));
        for mode in [Standby, Leaving, Banned] {
            let d = decide(&me, alive(adv(Running, mode)));
            assert_eq!(
                (d.target, d.reason),
                (Target::Passive, Reason::PeerStopping),
                "{mode:?}"
            );
            let d = decide(&me, alive(adv(Stopped, mode)));
            assert_eq!(
                (d.target, d.reason),
                (Target::Active, Reason::PeerNotEligible),
                "{mode:?}"
            );
        }
    }

    #[test]
    fn a_dead_peer_is_taken_over_unless_its_group_was_blocked() {
        let me = local(1, false, adv(Stopped, Online));
        assert_eq!(decide(&me, dead(Some(adv(Running, Online)))).target, Target::Active);
        let d = decide(&me, dead(Some(adv(Blocked, Online))));
        assert_eq!((d.target, d.reason), (Target::Passive, Reason::PeerDeadBlocked));
        assert_eq!(decide(&me, alive(adv(Blocked, Online))).reason, Reason::PeerBlocked);
    }

    #[test]
    fn auto_failback_off_keeps_it_on_returns_it() {
        // Node 1 runs the group; preferred node 0 comes back.
        let runner = local(1, false, adv(Running, Online));
        assert_eq!(decide(&runner, alive(adv(Stopped, Online))).reason, Reason::KeepsIt);
        let back = local(0, false, adv(Stopped, Online));
        assert_eq!(decide(&back, alive(adv(Running, Online))).target, Target::Passive);
        let runner = local(1, true, adv(Running, Online));
        assert_eq!(
            decide(&runner, alive(adv(Stopped, Online))).reason,
            Reason::FailbackToPreferred
        );
        // ...but not to a preferred node that is still settling.
        let unsettled = Advert {
            settled: false,
            ..adv(Stopped, Online)
        };
        assert_eq!(decide(&runner, alive(unsettled)).reason, Reason::KeepsIt);
        let back = local(0, true, adv(Stopped, Online));
        let d = decide(&back, alive(adv(Running, Online)));
        assert_eq!(
            (d.target, d.reason),
            (Target::Passive, Reason::PeerStopping),
            "waits for the hand-over"
        );
    }

    #[test]
    fn standby_takeover_and_online() {
        // Standby here: stop, whatever the peer.
        assert_eq!(
            decide(&local(0, false, adv(Running, Standby)), alive(adv(Stopped, Online))).target,
            Target::Passive
        );
        // Takeover asked by the non-preferred node: the holder yields, the asker starts after.
        let asker = local(
            1,
            false,
            Advert {
                takeover: true,
                ..adv(Stopped, Online)
            },
        );
        let holder = local(0, false, adv(Running, Online));
        assert_eq!(decide(&holder, alive(asker.advert)).reason, Reason::YieldToTakeover);
        assert_eq!(decide(&asker, alive(holder.advert)).reason, Reason::PeerStopping);
        assert_eq!(decide(&asker, alive(adv(Stopped, Online))).reason, Reason::PeerYields);
    }

    #[test]
    fn leftovers_do_not_claim_the_group_but_are_waited_for() {
        // A restarted preferred node with a failed leftover does not take the group back.
        let restarted = local(0, false, adv(Leftovers, Online));
        assert_eq!(
            decide(&restarted, alive(adv(Running, Online))).reason,
            Reason::PeerHolds
        );
        // ...and the other node does not start while the leftovers are there.
        let other = local(1, false, adv(Stopped, Online));
        assert_eq!(
            decide(&other, alive(adv(Leftovers, Standby))).reason,
            Reason::PeerStopping
        );
        assert_eq!(decide(&other, alive(adv(Stopped, Standby))).target, Target::Active);
    }

    fn keeping(a: Advert, heal: Option<Verdict>) -> Advert {
        Advert { heal, ..a }
    }

    #[test]
    fn split_brain_keep_preferred_the_loser_waits_for_the_keepers_word() {
        let run = adv(Running, Online);
        let keeper = decide(&local(0, false, run), alive(run));
        assert_eq!((keeper.target, keeper.heal), (Target::Active, Some(Verdict::Keep)));
        // The loser keeps running until the keeper says Keep (it re-asserts first).
        let loser = decide(&local(1, false, run), alive(run));
        assert_eq!(
            (loser.target, loser.reason, loser.heal),
            (Target::Active, Reason::SplitBrainWaitForKeeper, Some(Verdict::Yield))
        );
        let loser = decide(&local(1, false, run), alive(keeping(run, Some(Verdict::Keep))));
        assert_eq!(loser.target, Target::Passive);
        // The keeper never stops, whatever the loser says.
        for h in [None, Some(Verdict::Yield), Some(Verdict::Keep)] {
            assert_eq!(
                decide(&local(0, false, run), alive(keeping(run, h))).target,
                Target::Active
            );
        }
    }

    #[test]
    fn split_brain_last_writer_and_running_longest() {
        let mut l = local(
            0,
            false,
            Advert {
                epoch: 4,
                ..adv(Running, Online)
            },
        );
        l.policy = SplitBrainPolicy::KeepLastWriter;
        let newer = Advert {
            epoch: 5,
            ..adv(Running, Online)
        };
        assert_eq!(decide(&l, alive(newer)).heal, Some(Verdict::Yield));
        let older = Advert {
            epoch: 3,
            ..adv(Running, Online)
        };
        assert_eq!(decide(&l, alive(older)).heal, Some(Verdict::Keep));
        // Equal epochs: the preferred node.
        let same = Advert {
            epoch: 4,
            ..adv(Running, Online)
        };
        assert_eq!(decide(&l, alive(same)).heal, Some(Verdict::Keep));

        let mut l = local(0, false, adv(Running, Online));
        l.policy = SplitBrainPolicy::KeepRunningLongest;
        l.ran_ms = Some(10_000);
        let view = |ran| {
            Peer::Alive(PeerView {
                advert: Some(adv(Running, Online)),
                ran_ms: Some(ran),
                ..PeerView::default()
            })
        };
        assert_eq!(decide(&l, view(60_000)).heal, Some(Verdict::Yield));
        assert_eq!(decide(&l, view(2_000)).heal, Some(Verdict::Keep));
        // Within the tolerance: the preferred node (this one) keeps it.
        assert_eq!(decide(&l, view(10_500)).heal, Some(Verdict::Keep));
    }

    #[test]
    fn split_brain_disagreement_is_settled_by_preference() {
        let run = adv(Running, Online);
        // Both say Keep (run times seen a keepalive apart): the non-preferred yields.
        let mut l = local(1, false, run);
        l.policy = SplitBrainPolicy::KeepLastWriter;
        l.advert.epoch = 9;
        let d = decide(&l, alive(keeping(run, Some(Verdict::Keep))));
        assert_eq!((d.target, d.heal), (Target::Passive, Some(Verdict::Yield)));
        // Both say Yield: the preferred keeps.
        let mut l = local(0, false, run);
        l.policy = SplitBrainPolicy::KeepLastWriter;
        let d = decide(
            &l,
            alive(Advert {
                epoch: 3,
                heal: Some(Verdict::Yield),
                ..run
            }),
        );
        assert_eq!((d.target, d.heal), (Target::Active, Some(Verdict::Keep)));
    }

    #[test]
    fn split_brain_stop_both_waits_for_the_operator() {
        let run = adv(Running, Online);
        for me in [0, 1] {
            let mut l = local(me, false, run);
            l.policy = SplitBrainPolicy::StopBoth;
            let d = decide(&l, alive(run));
            assert_eq!((d.target, d.heal), (Target::Passive, Some(Verdict::Stop)));
        }
        let mut waiting = local(0, false, adv(Stopped, Online));
        waiting.advert.awaiting_operator = true;
        assert_eq!(decide(&waiting, dead(None)).reason, Reason::AwaitingOperator);
        let other = local(1, false, adv(Stopped, Online));
        let peer = Advert {
            awaiting_operator: true,
            ..adv(Stopped, Online)
        };
        assert_eq!(decide(&other, alive(peer)).reason, Reason::PeerAwaitsOperator);
    }

    #[test]
    fn tiebreak_the_cut_off_node_stops_and_never_takes_over() {
        let reach = |holding, n| Advert {
            reach: Some(n),
            ..adv(holding, Online)
        };
        // Holding, peer silent, no target answers: self-fence, already when the peer is late.
        let l = local(0, false, reach(Running, 0));
        assert_eq!(decide(&l, dead(Some(reach(Stopped, 1)))).reason, Reason::SelfFence);
        let late = Peer::Alive(PeerView {
            advert: Some(reach(Stopped, 1)),
            late: true,
            ..PeerView::default()
        });
        assert_eq!(decide(&l, late).reason, Reason::SelfFence);
        // Not holding: no takeover without a target.
        let l = local(1, false, reach(Stopped, 0));
        assert_eq!(decide(&l, dead(Some(reach(Running, 1)))).reason, Reason::NoTargets);
        // With a target, the silent peer is taken over.
        let l = local(1, false, reach(Stopped, 1));
        assert_eq!(decide(&l, dead(Some(reach(Running, 1)))).target, Target::Active);
        // Both up: more reach wins the group, equal leaves it where it is.
        let holder = local(0, false, reach(Running, 1));
        assert_eq!(
            decide(&holder, alive(reach(Stopped, 2))).reason,
            Reason::PeerReachesMore
        );
        assert_eq!(decide(&holder, alive(reach(Stopped, 1))).reason, Reason::KeepsIt);
        let other = local(1, false, reach(Stopped, 2));
        assert_eq!(decide(&other, alive(reach(Running, 1))).reason, Reason::PeerStopping);
        assert_eq!(decide(&other, alive(reach(Stopped, 1))).reason, Reason::ReachesMore);
    }

    #[test]
    fn fencing_gates_the_takeover_of_a_peer_that_may_hold_it() {
        let mut l = local(1, false, adv(Stopped, Online));
        l.fencing = true;
        let view = |advert, fence| {
            Peer::Dead(PeerView {
                advert,
                fence,
                ..PeerView::default()
            })
        };
        let d = decide(&l, view(Some(adv(Running, Online)), FenceState::NotFenced));
        assert_eq!((d.target, d.fence_peer), (Target::Passive, true));
        let d = decide(&l, view(Some(adv(Running, Online)), FenceState::Failed));
        assert_eq!((d.target, d.reason), (Target::Passive, Reason::FenceFailed));
        let d = decide(&l, view(Some(adv(Running, Online)), FenceState::Fenced));
        assert_eq!((d.target, d.fence_peer), (Target::Active, false));
        // Never heard at all (initdead): it may hold the group, so fence it first.
        assert!(decide(&l, view(None, FenceState::NotFenced)).fence_peer);
        // It left cleanly: no fencing needed.
        let d = decide(&l, view(Some(adv(Stopped, Leaving)), FenceState::NotFenced));
        assert_eq!((d.target, d.fence_peer), (Target::Active, false));
        // The holder fences a silent peer too, and keeps running meanwhile.
        let mut h = local(0, false, adv(Running, Online));
        h.fencing = true;
        let d = decide(&h, view(Some(adv(Stopped, Online)), FenceState::InProgress));
        assert_eq!((d.target, d.fence_peer), (Target::Active, true));
        // A blocked peer: fenced, then taken over; never started on without.
        let blocked = Peer::Alive(PeerView {
            advert: Some(adv(Blocked, Online)),
            ..PeerView::default()
        });
        assert!(decide(&l, blocked).fence_peer);
        let fenced = Peer::Alive(PeerView {
            advert: Some(adv(Blocked, Online)),
            fence: FenceState::Fenced,
            ..PeerView::default()
        });
        assert_eq!(decide(&l, fenced).target, Target::Active);
    }

    #[test]
    fn a_start_beside_a_live_peer_waits_for_the_claim_to_be_seen() {
        let stopped = Advert::new(Stopped, Online);
        let d = decide(&local(0, false, stopped), alive(stopped));
        assert_eq!((d.target, d.reason, d.claim), (Target::Passive, Reason::Claiming, true));
        let seen = Advert {
            claim_seen: true,
            ..stopped
        };
        let d = decide(&local(0, false, stopped), alive(seen));
        assert_eq!((d.target, d.claim), (Target::Active, true));
        // Both made eligible at once (both peers banned, cleaned up together): both
        // claim; the non-preferred one withdraws, the preferred one goes on.
        let banned = Advert::new(Stopped, Banned);
        assert_eq!(
            decide(&local(1, false, stopped), alive(banned)).reason,
            Reason::Claiming
        );
        let claiming = Advert {
            claim: true,
            claim_seen: true,
            ..stopped
        };
        let d = decide(&local(1, false, stopped), alive(claiming));
        assert_eq!((d.target, d.claim), (Target::Passive, false));
        let d = decide(&local(0, false, stopped), alive(claiming));
        assert_eq!(d.target, Target::Active);
        // A leaving peer (it exits once stopped) needs no acknowledgement either.
        let leaving = Advert::new(Stopped, Leaving);
        assert_eq!(decide(&local(1, false, stopped), alive(leaving)).target, Target::Active);
        // A dead peer needs no claim.
        assert_eq!(
            decide(&local(1, false, stopped), dead(Some(stopped))).target,
            Target::Active
        );
    }

    #[test]
    fn a_takeover_request_wins_when_neither_holds() {
        let asker = Advert {
            takeover: true,
            ..adv(Stopped, Online)
        };
        // The preferred node does not race the asker.
        let d = decide(&local(0, false, adv(Stopped, Online)), alive(asker));
        assert_eq!((d.target, d.reason), (Target::Passive, Reason::PeerTakesOver));
        let d = decide(&local(1, false, asker), alive(adv(Stopped, Online)));
        assert_eq!(d.target, Target::Active);
    }

    fn gated(me: usize, data: DataGate, holding: Holding) -> Local {
        Local {
            data,
            ..local(
                me,
                false,
                Advert {
                    data: data.advert(),
                    ..adv(holding, Online)
                },
            )
        }
    }

    fn dead_fenced(fence: FenceState) -> Peer {
        Peer::Dead(PeerView {
            advert: Some(adv(Stopped, Online)),
            fence,
            ..PeerView::default()
        })
    }

    #[test]
    fn data_not_up_to_date_never_starts_the_group_not_even_alone() {
        for data in [DataGate::Closed, DataGate::IfPeerFenced] {
            let d = decide(&gated(0, data, Stopped), dead_fenced(FenceState::NotFenced));
            assert_eq!(d.target, Target::Passive, "{data:?}: {d:?}");
            assert!(!d.fence_peer);
            let d = decide(&gated(0, data, Stopped), alive(adv(Stopped, Online)));
            assert_eq!(d.target, Target::Passive, "{data:?} with the peer alive: {d:?}");
            assert!(d.reason.needs_attention(), "status says why");
        }
        // A node that runs the group keeps it: its replica's monitor speaks for it.
        let d = decide(&gated(0, DataGate::Closed, Running), alive(adv(Stopped, Online)));
        assert_eq!(d.target, Target::Active);
        // But not once its replica is demoted (it was handing the group over): it
        // does not promote again on data the gate refuses.
        let demoted = Local {
            promoted: false,
            ..gated(0, DataGate::Closed, Running)
        };
        let d = decide(&demoted, alive(adv(Stopped, Online)));
        assert_eq!((d.target, d.reason), (Target::Passive, Reason::DataNotUpToDate));
        // Up to date, alone: it takes over.
        let d = decide(
            &gated(0, DataGate::Score(1000), Stopped),
            dead_fenced(FenceState::NotFenced),
        );
        assert_eq!((d.target, d.reason), (Target::Active, Reason::PeerDead));
    }

    #[test]
    fn consistent_data_starts_only_once_the_peer_is_fenced() {
        let fencing = |data| Local {
            fencing: true,
            ..gated(1, data, Stopped)
        };
        let d = decide(&fencing(DataGate::IfPeerFenced), dead_fenced(FenceState::NotFenced));
        assert_eq!((d.target, d.fence_peer), (Target::Passive, true), "{d:?}");
        let d = decide(&fencing(DataGate::IfPeerFenced), dead_fenced(FenceState::Fenced));
        assert_eq!((d.target, d.reason), (Target::Active, Reason::PeerFenced));
        // A peer that left cleanly is fenced all the same: nothing proves its data older.
        let left = Peer::Dead(PeerView {
            advert: Some(adv(Stopped, Mode::Leaving)),
            ..PeerView::default()
        });
        let d = decide(&fencing(DataGate::IfPeerFenced), left);
        assert_eq!((d.target, d.fence_peer), (Target::Passive, true), "{d:?}");
        // With the peer alive, its replica settles it, not fencing.
        let d = decide(&fencing(DataGate::IfPeerFenced), alive(adv(Stopped, Online)));
        assert_eq!((d.target, d.reason), (Target::Passive, Reason::DataNeedsFencing));
    }

    #[test]
    fn the_better_data_wins_before_the_preferred_node_and_ineligible_data_yields() {
        let peer = |data: Option<u32>| {
            alive(Advert {
                data,
                ..adv(Stopped, Online)
            })
        };
        // Node 1 is not preferred, but its replica knows its peer (10000 > 1000).
        let d = decide(&gated(1, DataGate::Score(10000), Stopped), peer(Some(1000)));
        assert_eq!((d.target, d.reason), (Target::Active, Reason::BetterData));
        let d = decide(&gated(0, DataGate::Score(1000), Stopped), peer(Some(10000)));
        assert_eq!((d.target, d.reason), (Target::Passive, Reason::PeerBetterData));
        // Equal: the preferred node, as before.
        let d = decide(&gated(1, DataGate::Score(10000), Stopped), peer(Some(10000)));
        assert_eq!((d.target, d.reason), (Target::Passive, Reason::PeerPreferredTakesIt));
        // The preferred peer's data is not eligible: this node takes it.
        let d = decide(&gated(1, DataGate::Score(1000), Stopped), peer(Some(0)));
        assert_eq!((d.target, d.reason), (Target::Active, Reason::PeerNotEligible));
        // A peer that runs the group keeps it, whatever its score says.
        let holder = alive(Advert {
            data: Some(0),
            ..adv(Running, Online)
        });
        let d = decide(&gated(1, DataGate::Score(10000), Stopped), holder);
        assert_eq!((d.target, d.reason), (Target::Passive, Reason::PeerHolds));
    }

    #[test]
    fn adverts_round_trip_and_heartbeat_peers_have_none() {
        let a = Advert {
            holding: Blocked,
            mode: Leaving,
            takeover: true,
            settled: false,
            reach: Some(2),
            epoch: 17,
            heal: Some(Verdict::Yield),
            verdict: Some(Verdict::Keep),
            awaiting_operator: true,
            resolve_sender_keeps: Some(false),
            claim: true,
            claim_seen: true,
            data: Some(1000),
            data_choice: Some(crate::model::DataChoice {
                key: crate::model::data_key("r0", "A:B:C:D", "E:B:C:D"),
                sender_keeps: true,
            }),
        };
        let fields = crate::wire::advert::fields(&a);
        let get = |k: &str| fields.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string());
        assert_eq!(crate::wire::advert::parse(get), Some(a));
        assert_eq!(crate::wire::advert::parse(|_| None), None);
        // A choice that is not one reads as none; the key is the same from either side.
        for bad in [
            "",
            "12:sender",
            "zzzzzzzzzzzzzzzz:sender",
            "0123456789abcdef:both",
            "0123456789abcdef",
        ] {
            let get = |k: &str| {
                if k == "pb_datakeep" {
                    Some(bad.to_string())
                } else {
                    fields.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
                }
            };
            assert_eq!(crate::wire::advert::parse(get).unwrap().data_choice, None, "{bad:?}");
        }
        assert_eq!(
            crate::model::data_key("r0", "A:B:C:D", "E:B:C:D"),
            crate::model::data_key("r0", "E:B:C:D", "A:B:C:D")
        );
        assert_ne!(
            crate::model::data_key("r0", "A:B:C:D", "E:B:C:D"),
            crate::model::data_key("r1", "A:B:C:D", "E:B:C:D")
        );
        // A first-release advert (four fields) still parses.
        let old = |k: &str| match k {
            "pb_hold" => Some("running".to_string()),
            "pb_mode" => Some("online".to_string()),
            _ => None,
        };
        assert_eq!(
            crate::wire::advert::parse(old).map(|a| (a.epoch, a.reach)),
            Some((0, None))
        );
    }

    /// `needs_attention` replaces a search of the English text for words; this pins
    /// that it picks out exactly what the old search did.
    #[test]
    fn attention_reasons_are_the_ones_the_old_text_search_found() {
        let mut all = vec![
            Reason::WaitingForPeer,
            Reason::PeerDead,
            Reason::PeerDeadBlocked,
            Reason::PeerHolds,
            Reason::PeerStopping,
            Reason::PreferredTakesIt,
            Reason::PeerPreferredTakesIt,
            Reason::KeepsIt,
            Reason::PeerYields,
            Reason::PeerTakesOver,
            Reason::YieldToTakeover,
            Reason::FailbackToPreferred,
            Reason::FailbackFromPeer,
            Reason::PeerNotEligible,
            Reason::PeerBlocked,
            Reason::PeerBlockedKeeps,
            Reason::HeartbeatPeer,
            Reason::SelfFence,
            Reason::NoTargets,
            Reason::ReachesMore,
            Reason::PeerReachesMore,
            Reason::Fencing,
            Reason::FenceFailed,
            Reason::FenceFailedKeeps,
            Reason::PeerFenced,
            Reason::SplitBrainWaitForKeeper,
            Reason::SplitBrainStop,
            Reason::AwaitingOperator,
            Reason::PeerAwaitsOperator,
            Reason::Claiming,
            Reason::PeerClaims,
        ];
        for m in [Mode::Online, Mode::Standby, Mode::Leaving, Mode::Banned] {
            all.push(Reason::NotEligible(m));
        }
        for p in SplitBrainPolicy::ALL {
            all.push(Reason::SplitBrainKeep(p));
            all.push(Reason::SplitBrainYield(p));
        }
        for r in all {
            let d = r.to_string();
            let old =
                d.contains("SPLIT BRAIN") || d.contains("fenc") || d.contains("tie-break") || d.contains("operator");
            assert_eq!(r.needs_attention(), old, "{r:?}: {d}");
        }
        assert_eq!(Reason::PeerDeadBlocked.code(), "peer_dead_blocked");
        assert_eq!(
            Reason::SplitBrainKeep(SplitBrainPolicy::StopBoth).code(),
            "split_brain_keep"
        );
    }

    /// keep-running-longest with run times a near-tie, measured by each node a
    /// keepalive apart: both may choose to keep. Each says its choice at once, and
    /// the non-preferred node then yields (simulation seeds 12534, 56103, 64353,
    /// 74952 and 78165 of `scripts/sim-long 100000` were stuck with both keeping).
    #[test]
    fn both_choosing_to_keep_see_it_and_the_preferred_node_keeps() {
        let running = adv(Running, Online);
        let peer_keeps = Peer::Alive(PeerView {
            advert: Some(Advert {
                verdict: Some(Verdict::Keep),
                ..running
            }),
            ran_ms: Some(1_000),
            ..PeerView::default()
        });
        let longer = |me| Local {
            policy: SplitBrainPolicy::KeepRunningLongest,
            ran_ms: Some(5_000),
            tolerance_ms: 100,
            ..local(me, false, running)
        };
        // Node 1 (not preferred) ran longer by its own measure, but the peer chose to keep too.
        let d = decide(&longer(1), peer_keeps);
        assert_eq!(d.heal, Some(Verdict::Yield));
        // Node 0 (preferred) keeps in the same position.
        assert_eq!(decide(&longer(0), peer_keeps).heal, Some(Verdict::Keep));
        // Without a chosen verdict from the peer, the run times decide.
        let silent = Peer::Alive(PeerView {
            advert: Some(running),
            ran_ms: Some(1_000),
            ..PeerView::default()
        });
        assert_eq!(decide(&longer(1), silent).heal, Some(Verdict::Keep));
    }

    #[test]
    fn a_chosen_verdict_stands_while_the_split_brain_lasts() {
        let running = adv(Running, Online);
        let peer = |ran| {
            Peer::Alive(PeerView {
                advert: Some(running),
                ran_ms: Some(ran),
                ..PeerView::default()
            })
        };
        let me = |latched| Local {
            policy: SplitBrainPolicy::KeepRunningLongest,
            ran_ms: Some(1_000),
            tolerance_ms: 100,
            latched,
            ..local(1, false, running)
        };
        // The peer's figure ages across the boundary: the policy alone would flip.
        assert_eq!(decide(&me(None), peer(800)).heal, Some(Verdict::Keep));
        assert_eq!(decide(&me(None), peer(950)).heal, Some(Verdict::Yield));
        assert_eq!(
            decide(&me(Some(Verdict::Keep)), peer(950)).heal,
            Some(Verdict::Keep),
            "chosen once, it stands"
        );
    }
}
