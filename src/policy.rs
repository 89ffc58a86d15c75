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

use std::fmt;

use crate::resources::Target;

/// What a node holds, as it advertises it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holding {
    /// Nothing of the group runs there (promotables may run unpromoted).
    Stopped,
    /// Only leftovers: resources failed or not probed yet, none up. They must be
    /// stopped before the peer may start the group, but they do not claim it.
    Leftovers,
    /// Some of the group is up (starting, started or stopping).
    Running,
    /// A stop failed: the group is there and unmanaged until cleanup or fencing.
    Blocked,
}

/// A node's eligibility, as it advertises it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Online,
    /// `pairbeat standby`: hand the group to the peer.
    Standby,
    /// Shutting down (SIGTERM): hand the group over, then exit.
    Leaving,
    /// Failures make the group ineligible here until cleanup.
    Banned,
}

/// What each node tells the other in its keepalives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Advert {
    pub holding: Holding,
    pub mode: Mode,
    /// `pairbeat takeover`: asks the peer to yield the group.
    pub takeover: bool,
    /// The group is settled where the node wants it (no operation pending).
    pub settled: bool,
}

impl Advert {
    /// Encoded as pairbeat-only fields of the status packet: `pb_hold`, `pb_mode`,
    /// `pb_want`, `pb_settled` (a Heartbeat peer ignores fields it does not know).
    pub fn fields(&self) -> [(&'static str, &'static str); 4] {
        [
            (
                "pb_hold",
                match self.holding {
                    Holding::Stopped => "stopped",
                    Holding::Leftovers => "leftovers",
                    Holding::Running => "running",
                    Holding::Blocked => "blocked",
                },
            ),
            (
                "pb_mode",
                match self.mode {
                    Mode::Online => "online",
                    Mode::Standby => "standby",
                    Mode::Leaving => "leaving",
                    Mode::Banned => "banned",
                },
            ),
            ("pb_want", if self.takeover { "takeover" } else { "" }),
            ("pb_settled", if self.settled { "1" } else { "0" }),
        ]
    }

    /// Decodes the fields; `None` when the sender is not a pairbeat node (Heartbeat).
    pub fn parse(get: impl Fn(&str) -> Option<String>) -> Option<Advert> {
        let holding = match get("pb_hold")?.as_str() {
            "stopped" => Holding::Stopped,
            "leftovers" => Holding::Leftovers,
            "running" => Holding::Running,
            "blocked" => Holding::Blocked,
            _ => return None,
        };
        let mode = match get("pb_mode")?.as_str() {
            "online" => Mode::Online,
            "standby" => Mode::Standby,
            "leaving" => Mode::Leaving,
            "banned" => Mode::Banned,
            _ => return None,
        };
        Some(Advert {
            holding,
            mode,
            takeover: get("pb_want").as_deref() == Some("takeover"),
            settled: get("pb_settled").as_deref() == Some("1"),
        })
    }
}

/// The peer as membership and its adverts show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// Not heard yet, within initdead.
    Unknown,
    /// Alive; its last advert, if it sent one (a Heartbeat peer does not).
    Alive(Option<Advert>),
    /// Silent on every link; what it last advertised.
    Dead(Option<Advert>),
}

/// This node's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Local {
    pub me: usize,
    pub preferred: usize,
    pub auto_failback: bool,
    pub advert: Advert,
}

/// The decision, with the reason to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub target: Target,
    pub reason: Reason,
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
    YieldToTakeover,
    FailbackToPreferred,
    FailbackFromPeer,
    PeerNotEligible,
    PeerBlocked,
    BothHold,
    HeartbeatPeer,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Reason::WaitingForPeer => "waiting for the peer (initdead) before starting anything",
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
            Reason::YieldToTakeover => "the peer asked to take the group over (pairbeat takeover)",
            Reason::FailbackToPreferred => "auto_failback: the preferred node is back, handing the group to it",
            Reason::FailbackFromPeer => "auto_failback: this is the preferred node, taking the group back",
            Reason::PeerNotEligible => "the peer is in standby, leaving or banned",
            Reason::PeerBlocked => "the peer's group is BLOCKED: not starting it here unless the peer is fenced",
            Reason::BothHold => "both nodes hold the group: the preferred node keeps it",
            Reason::HeartbeatPeer => "the peer is a Heartbeat node (no group adverts): the preferred node runs the group",
        };
        f.write_str(s)
    }
}

/// The group's target on this node.
pub fn decide(local: &Local, peer: Peer) -> Decision {
    let mine = local.advert;
    let d = |target, reason| Decision { target, reason };
    if mine.mode != Mode::Online {
        return d(Target::Passive, Reason::NotEligible(mine.mode));
    }
    // Running claims the group; leftovers do not (but the peer still waits for them).
    let i_hold = mine.holding == Holding::Running;
    let preferred = local.preferred == local.me;
    let p = match peer {
        Peer::Unknown => {
            return d(
                if i_hold { Target::Active } else { Target::Passive },
                Reason::WaitingForPeer,
            )
        }
        Peer::Dead(Some(a)) if a.holding == Holding::Blocked => return d(Target::Passive, Reason::PeerDeadBlocked),
        Peer::Dead(_) => return d(Target::Active, Reason::PeerDead),
        Peer::Alive(None) => {
            return d(
                if preferred { Target::Active } else { Target::Passive },
                Reason::HeartbeatPeer,
            );
        }
        Peer::Alive(Some(a)) => a,
    };
    let peer_eligible = p.mode == Mode::Online;
    let peer_holds = p.holding == Holding::Running;
    let peer_not_clear = p.holding != Holding::Stopped;
    // Whom the group belongs to, if nothing stood in the way.
    let (mine_to_run, reason) = if p.holding == Holding::Blocked {
        (false, Reason::PeerBlocked)
    } else if !peer_eligible {
        (true, Reason::PeerNotEligible)
    } else if i_hold && peer_holds {
        (preferred, Reason::BothHold)
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
    } else if mine.takeover {
        (true, Reason::PeerYields)
    } else if preferred {
        (true, Reason::PreferredTakesIt)
    } else {
        (false, Reason::PeerPreferredTakesIt)
    };
    // Never start while the peer may still hold any of it: wait for its "stopped".
    if mine_to_run && peer_not_clear && !i_hold {
        return d(Target::Passive, Reason::PeerStopping);
    }
    d(if mine_to_run { Target::Active } else { Target::Passive }, reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adv(holding: Holding, mode: Mode) -> Advert {
        Advert {
            holding,
            mode,
            takeover: false,
            settled: true,
        }
    }

    fn local(me: usize, auto_failback: bool, advert: Advert) -> Local {
        Local {
            me,
            preferred: 0,
            auto_failback,
            advert,
        }
    }

    use Holding::*;
    use Mode::*;

    #[test]
    fn start_up_waits_for_the_peer_then_the_preferred_node_runs_it() {
        let stopped = adv(Stopped, Online);
        assert_eq!(decide(&local(0, false, stopped), Peer::Unknown).target, Target::Passive);
        assert_eq!(
            decide(&local(0, false, stopped), Peer::Alive(Some(stopped))).reason,
            Reason::PreferredTakesIt
        );
        assert_eq!(
            decide(&local(1, false, stopped), Peer::Alive(Some(stopped))).target,
            Target::Passive
        );
        // Alone after initdead: take it.
        assert_eq!(
            decide(&local(1, false, stopped), Peer::Dead(None)).target,
            Target::Active
        );
    }

    #[test]
    fn never_start_while_the_peer_still_holds_it() {
        let me = local(1, false, adv(Stopped, Online));
        for mode in [Standby, Leaving, Banned] {
            let d = decide(&me, Peer::Alive(Some(adv(Running, mode))));
            assert_eq!(
                (d.target, d.reason),
                (Target::Passive, Reason::PeerStopping),
                "{mode:?}"
            );
            let d = decide(&me, Peer::Alive(Some(adv(Stopped, mode))));
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
        assert_eq!(
            decide(&me, Peer::Dead(Some(adv(Running, Online)))).target,
            Target::Active
        );
        let d = decide(&me, Peer::Dead(Some(adv(Blocked, Online))));
        assert_eq!((d.target, d.reason), (Target::Passive, Reason::PeerDeadBlocked));
        assert_eq!(
            decide(&me, Peer::Alive(Some(adv(Blocked, Online)))).reason,
            Reason::PeerBlocked
        );
    }

    #[test]
    fn auto_failback_off_keeps_it_on_returns_it() {
        // Node 1 runs the group; preferred node 0 comes back.
        let runner = local(1, false, adv(Running, Online));
        assert_eq!(
            decide(&runner, Peer::Alive(Some(adv(Stopped, Online)))).reason,
            Reason::KeepsIt
        );
        let back = local(0, false, adv(Stopped, Online));
        assert_eq!(
            decide(&back, Peer::Alive(Some(adv(Running, Online)))).target,
            Target::Passive
        );
        let runner = local(1, true, adv(Running, Online));
        assert_eq!(
            decide(&runner, Peer::Alive(Some(adv(Stopped, Online)))).reason,
            Reason::FailbackToPreferred
        );
        // ...but not to a preferred node that is still settling.
        let unsettled = Advert {
            settled: false,
            ..adv(Stopped, Online)
        };
        assert_eq!(decide(&runner, Peer::Alive(Some(unsettled))).reason, Reason::KeepsIt);
        let back = local(0, true, adv(Stopped, Online));
        let d = decide(&back, Peer::Alive(Some(adv(Running, Online))));
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
            decide(
                &local(0, false, adv(Running, Standby)),
                Peer::Alive(Some(adv(Stopped, Online)))
            )
            .target,
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
        assert_eq!(
            decide(&holder, Peer::Alive(Some(asker.advert))).reason,
            Reason::YieldToTakeover
        );
        assert_eq!(
            decide(&asker, Peer::Alive(Some(holder.advert))).reason,
            Reason::PeerStopping
        );
        assert_eq!(
            decide(&asker, Peer::Alive(Some(adv(Stopped, Online)))).reason,
            Reason::PeerYields
        );
    }

    #[test]
    fn leftovers_do_not_claim_the_group_but_are_waited_for() {
        // A restarted preferred node with a failed leftover does not take the group back.
        let restarted = local(0, false, adv(Leftovers, Online));
        assert_eq!(
            decide(&restarted, Peer::Alive(Some(adv(Running, Online)))).reason,
            Reason::PeerHolds
        );
        // ...and the other node does not start while the leftovers are there.
        let other = local(1, false, adv(Stopped, Online));
        assert_eq!(
            decide(&other, Peer::Alive(Some(adv(Leftovers, Standby)))).reason,
            Reason::PeerStopping
        );
        assert_eq!(
            decide(&other, Peer::Alive(Some(adv(Stopped, Standby)))).target,
            Target::Active
        );
    }

    #[test]
    fn when_both_hold_the_preferred_keeps_it() {
        let run = adv(Running, Online);
        assert_eq!(
            decide(&local(0, false, run), Peer::Alive(Some(run))).target,
            Target::Active
        );
        assert_eq!(
            decide(&local(1, false, run), Peer::Alive(Some(run))).target,
            Target::Passive
        );
    }

    #[test]
    fn adverts_round_trip_and_heartbeat_peers_have_none() {
        let a = Advert {
            holding: Blocked,
            mode: Leaving,
            takeover: true,
            settled: false,
        };
        let fields = a.fields();
        let get = |k: &str| fields.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string());
        assert_eq!(Advert::parse(get), Some(a));
        assert_eq!(Advert::parse(|_| None), None);
    }
}
