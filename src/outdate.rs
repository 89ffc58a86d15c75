//! The outdate relay: Heartbeat's dopd, done by pairbeatd.
//!
//! A Primary replica that lost its replication link freezes I/O and asks, through
//! its pairbeatd, that the peer's replica persist Outdated before it resumes: then
//! a stale Secondary can never be promoted later. The ask goes over the
//! authenticated heartbeat links (`t=pb-outdate`), signed and sequenced like the
//! keepalives, so a recorded ask cannot be replayed; it is repeated every keepalive
//! (datagrams get lost) until the peer answers (`t=pb-outdate-rc`, DRBD's fence-peer
//! codes). It ends early when membership already knows the peer is dead, and after
//! the replica's `outdate_timeout` otherwise:
//! - without a fencing device, as "unreachable" (5), as `drbd-peer-outdater -t`;
//! - with one, the peer is fenced and the answer is "fenced" (7), or "failed" if the
//!   device failed: with `resource-and-stonith` the replica's I/O then stays frozen.
//!
//! The peer's side runs each ask once (an ask is known by the asker's generation
//! and id; a repeated ask gets the same answer again) and answers after its replica
//! did. Pure, like the node: time comes in, messages and answers go out.

use std::time::{Duration, Instant};

use crate::replica::state::OutdateRc;

/// An ask, as the wire names it: the asking node's generation and its id there.
pub type AskId = (u64, u64);

/// A relayed message that passed authentication and the replay check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relayed {
    /// The peer asks that our replica `replica` be outdated; `gi` is the peer's
    /// generation tuple (our replica refuses if its own data is newer).
    Ask { replica: String, ask: AskId, gi: String },
    /// The peer's answer to our ask `id`.
    Answer {
        replica: String,
        id: u64,
        rc: OutdateRc,
        detail: String,
    },
}

/// What the fencing device has done about the peer in this absence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fence {
    /// No `[fence]` in the configuration.
    None,
    Idle,
    InProgress,
    Fenced,
    Failed,
}

/// What the relay asks of the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Out {
    /// Send (and repeat) this ask to the peer.
    SendAsk { replica: String, id: u64, gi: String },
    /// Answer the peer's ask.
    SendAnswer {
        replica: String,
        id: u64,
        rc: OutdateRc,
        detail: String,
    },
    /// Outdate our own replica for the peer's ask.
    OutdateLocal { replica: String, ask: AskId, gi: String },
    /// Fence the peer (the timeout passed, and a device is configured).
    FencePeer,
    /// Our local replica's ask is answered.
    Answered { id: u64, rc: OutdateRc, detail: String },
}

struct Ask {
    id: u64,
    replica: String,
    gi: String,
    deadline: Instant,
    next_send: Instant,
    /// Past the deadline, waiting for the fencing device.
    fencing: bool,
    /// Fences done before this ask: only a later one settles it.
    fences_before: Option<u64>,
}

/// One of the peer's asks, run here or answered already.
struct Served {
    replica: String,
    ask: AskId,
    answer: Option<(OutdateRc, String)>,
}

/// The asks of each side, bounded: at most one outstanding per replica each way.
pub struct Relay {
    /// Each replica's name and `outdate_timeout`.
    replicas: Vec<(String, Duration)>,
    resend: Duration,
    next_id: u64,
    asks: Vec<Ask>,
    served: Vec<Served>,
}

impl Relay {
    /// `resend`: how often an unanswered ask is sent again (the keepalive).
    pub fn new(replicas: Vec<(String, Duration)>, resend: Duration) -> Self {
        Relay {
            replicas,
            resend,
            next_id: 1,
            asks: Vec::new(),
            served: Vec::new(),
        }
    }

    /// Our replica `replica` asks that the peer be outdated. Its earlier ask, if
    /// any, is answered "failed": the replica asks again only when it lost the
    /// peer again, and then only the new ask counts.
    pub fn ask(
        &mut self,
        now: Instant,
        replica: &str,
        gi: &str,
        peer_dead: bool,
        out: &mut Vec<Out>,
    ) -> Result<u64, String> {
        let Some(timeout) = self.timeout(replica) else {
            return Err(format!("no [[replica]] named `{replica}` in this node's configuration"));
        };
        gi.parse::<crate::replica::gi::Gi>()?;
        if let Some(i) = self.asks.iter().position(|a| a.replica == replica) {
            let old = self.asks.remove(i);
            out.push(Out::Answered {
                id: old.id,
                rc: OutdateRc::Failed,
                detail: "superseded by a newer ask".into(),
            });
        }
        let id = self.next_id;
        self.next_id += 1;
        self.asks.push(Ask {
            id,
            replica: replica.to_string(),
            gi: gi.to_string(),
            deadline: now + timeout,
            next_send: now + self.resend,
            fencing: false,
            fences_before: None,
        });
        if !peer_dead {
            out.push(Out::SendAsk {
                replica: replica.to_string(),
                id,
                gi: gi.to_string(),
            });
        }
        Ok(id)
    }

    /// A relayed message from the peer.
    pub fn on_message(&mut self, msg: Relayed, fence: Fence, out: &mut Vec<Out>) {
        match msg {
            Relayed::Ask { replica, ask, gi } => {
                if let Some(s) = self.served.iter().find(|s| s.replica == replica && s.ask == ask) {
                    // A repeat: answer again if done; the first is still running otherwise.
                    if let Some((rc, detail)) = &s.answer {
                        out.push(Out::SendAnswer {
                            replica,
                            id: ask.1,
                            rc: *rc,
                            detail: detail.clone(),
                        });
                    }
                    return;
                }
                if self.timeout(&replica).is_none() {
                    out.push(Out::SendAnswer {
                        replica: replica.clone(),
                        id: ask.1,
                        rc: OutdateRc::Failed,
                        detail: format!("no [[replica]] named `{replica}` on this node"),
                    });
                    return;
                }
                // One remembered per replica: a newer ask replaces the older.
                self.served.retain(|s| s.replica != replica);
                self.served.push(Served {
                    replica: replica.clone(),
                    ask,
                    answer: None,
                });
                out.push(Out::OutdateLocal { replica, ask, gi });
            }
            Relayed::Answer {
                replica,
                id,
                rc,
                detail,
            } => {
                let Some(i) = self.asks.iter().position(|a| a.id == id && a.replica == replica) else {
                    return; // a repeat, or an ask already given up
                };
                let fences = fence != Fence::None
                    && !matches!(
                        rc,
                        OutdateRc::Inconsistent | OutdateRc::Outdated | OutdateRc::PeerPrimary | OutdateRc::PeerNewer
                    );
                if fences {
                    // The peer could not outdate its replica: the device settles it.
                    let a = &mut self.asks[i];
                    if !a.fencing {
                        a.fencing = true;
                        out.push(Out::FencePeer);
                    }
                    return;
                }
                let a = self.asks.remove(i);
                out.push(Out::Answered { id: a.id, rc, detail });
            }
        }
    }

    /// Our replica answered the peer's ask.
    pub fn local_done(&mut self, replica: &str, ask: AskId, rc: OutdateRc, detail: String, out: &mut Vec<Out>) {
        if let Some(s) = self.served.iter_mut().find(|s| s.replica == replica && s.ask == ask) {
            s.answer = Some((rc, detail.clone()));
            out.push(Out::SendAnswer {
                replica: replica.to_string(),
                id: ask.1,
                rc,
                detail,
            });
        }
    }

    /// Time passed, or the peer's liveness or the fencing changed: repeats, the
    /// deadline, the fencing device's result. `fences` counts the fences of the peer
    /// that succeeded: an ask is settled "fenced" only by one done after it was
    /// asked — a fence from earlier in the peer's absence says nothing of what the
    /// peer did since (found by the cluster simulation: the peer had rebooted and
    /// its replica connected again while its heartbeats were lost; answered from the
    /// old fence, the Primary went on alone and the peer later promoted without its
    /// writes).
    pub fn poll(&mut self, now: Instant, peer_dead: bool, fence: Fence, fences: u64, out: &mut Vec<Out>) {
        let mut i = 0;
        while i < self.asks.len() {
            let timeout = self.timeout(&self.asks[i].replica).unwrap_or(self.resend);
            let a = &mut self.asks[i];
            if a.fencing && fence == Fence::Idle {
                // The fence this ask waited for is off: the peer was heard again
                // (the role then resets its fencing and ignores a late result).
                // Found by the cluster simulation (seed 12579): the ask waited
                // for ever, and the promotion behind it. A live peer is asked
                // again, with a new deadline; a dead one is fenced again below.
                a.fencing = false;
                if !peer_dead {
                    a.deadline = now + timeout;
                    a.next_send = now;
                }
            }
            let before = *a.fences_before.get_or_insert(fences);
            let fresh = fences > before;
            let expired = peer_dead || now >= a.deadline;
            let settled = match fence {
                Fence::None if expired => Some((OutdateRc::Unreachable, "no answer from the peer".to_string())),
                Fence::None => None,
                Fence::Fenced if fresh => Some((OutdateRc::Fenced, "the peer was fenced".to_string())),
                Fence::Failed if a.fencing || peer_dead => {
                    Some((OutdateRc::Failed, "fencing the peer failed".to_string()))
                }
                _ if expired && !a.fencing => {
                    a.fencing = true;
                    // A fence the role runs (it fences a dead peer that may hold the
                    // group before any takeover) is in progress by now: the relay
                    // polls after the role. Otherwise — alive but silent, fenced
                    // before this ask, or dead without the role fencing it (it left
                    // cleanly: found by the cluster simulation, seed 6481, where the
                    // ask then waited for ever and the promotion with it) — the
                    // relay asks for a fence of its own.
                    if matches!(fence, Fence::Fenced | Fence::Idle) {
                        out.push(Out::FencePeer);
                    }
                    None
                }
                _ => None,
            };
            if let Some((rc, detail)) = settled {
                let a = self.asks.remove(i);
                out.push(Out::Answered { id: a.id, rc, detail });
                continue;
            }
            if !a.fencing && !peer_dead && now >= a.next_send {
                a.next_send = now + self.resend;
                out.push(Out::SendAsk {
                    replica: a.replica.clone(),
                    id: a.id,
                    gi: a.gi.clone(),
                });
            }
            i += 1;
        }
    }

    /// When an ask is next repeated or expires.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.asks
            .iter()
            .filter(|a| !a.fencing)
            .map(|a| a.next_send.min(a.deadline))
            .min()
    }

    /// Asks of ours still waiting, for status: (replica, waiting for fencing).
    pub fn waiting(&self) -> Vec<(&str, bool)> {
        self.asks.iter().map(|a| (a.replica.as_str(), a.fencing)).collect()
    }

    fn timeout(&self, replica: &str) -> Option<Duration> {
        self.replicas.iter().find(|(n, _)| n == replica).map(|(_, t)| *t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GI: &str = "0000000000000005:0000000000000000:0000000000000000:0000000000000000";

    fn relay() -> Relay {
        Relay::new(vec![("r0".into(), Duration::from_secs(5))], Duration::from_millis(100))
    }

    fn answered(out: &[Out]) -> Vec<(u64, OutdateRc)> {
        out.iter()
            .filter_map(|o| match o {
                Out::Answered { id, rc, .. } => Some((*id, *rc)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn an_ask_is_repeated_every_keepalive_until_the_peer_answers() {
        let t0 = Instant::now();
        let mut r = relay();
        let mut out = Vec::new();
        let id = r.ask(t0, "r0", GI, false, &mut out).unwrap();
        assert!(matches!(&out[..], [Out::SendAsk { id: i, .. }] if *i == id));
        out.clear();
        r.poll(t0 + Duration::from_millis(50), false, Fence::None, 0, &mut out);
        assert!(out.is_empty(), "{out:?}");
        r.poll(t0 + Duration::from_millis(100), false, Fence::None, 0, &mut out);
        assert!(matches!(&out[..], [Out::SendAsk { .. }]), "{out:?}");
        out.clear();
        let answer = Relayed::Answer {
            replica: "r0".into(),
            id,
            rc: OutdateRc::Outdated,
            detail: "4: Outdated".into(),
        };
        r.on_message(answer.clone(), Fence::None, &mut out);
        assert_eq!(answered(&out), vec![(id, OutdateRc::Outdated)]);
        // The answer's second copy (the other link) is nothing new.
        out.clear();
        r.on_message(answer, Fence::None, &mut out);
        assert!(out.is_empty());
        assert_eq!(r.next_deadline(), None);
    }

    #[test]
    fn silence_ends_as_unreachable_at_the_timeout_or_at_once_when_the_peer_is_dead() {
        let t0 = Instant::now();
        let mut r = relay();
        let mut out = Vec::new();
        let id = r.ask(t0, "r0", GI, false, &mut out).unwrap();
        out.clear();
        r.poll(t0 + Duration::from_millis(4900), false, Fence::None, 0, &mut out);
        assert!(answered(&out).is_empty());
        r.poll(t0 + Duration::from_secs(5), false, Fence::None, 0, &mut out);
        assert_eq!(answered(&out), vec![(id, OutdateRc::Unreachable)]);
        let mut out = Vec::new();
        let id = r.ask(t0, "r0", GI, true, &mut out).unwrap();
        assert!(out.is_empty(), "nothing is sent to a dead peer: {out:?}");
        r.poll(t0, true, Fence::None, 0, &mut out);
        assert_eq!(answered(&out), vec![(id, OutdateRc::Unreachable)]);
    }

    #[test]
    fn with_a_device_silence_fences_the_peer_and_only_its_result_answers() {
        let t0 = Instant::now();
        let mut r = relay();
        let mut out = Vec::new();
        let id = r.ask(t0, "r0", GI, false, &mut out).unwrap();
        out.clear();
        r.poll(t0 + Duration::from_secs(5), false, Fence::Idle, 0, &mut out);
        assert_eq!(out, vec![Out::FencePeer]);
        out.clear();
        r.poll(t0 + Duration::from_secs(6), false, Fence::InProgress, 0, &mut out);
        assert!(
            out.is_empty(),
            "no repeats and no answer while the device works: {out:?}"
        );
        r.poll(t0 + Duration::from_secs(7), false, Fence::Fenced, 1, &mut out);
        assert_eq!(answered(&out), vec![(id, OutdateRc::Fenced)]);
        // A dead peer is fenced by the role: the relay waits for the result.
        let mut out = Vec::new();
        let id = r.ask(t0, "r0", GI, true, &mut out).unwrap();
        r.poll(t0, true, Fence::InProgress, 1, &mut out);
        assert!(out.is_empty(), "{out:?}");
        r.poll(t0, true, Fence::Failed, 1, &mut out);
        assert_eq!(answered(&out), vec![(id, OutdateRc::Failed)]);
        // The peer answers that it could not: the device settles it.
        let mut out = Vec::new();
        let id = r.ask(t0, "r0", GI, false, &mut out).unwrap();
        let failed = Relayed::Answer {
            replica: "r0".into(),
            id,
            rc: OutdateRc::Failed,
            detail: "replica down".into(),
        };
        out.clear();
        r.on_message(failed, Fence::Idle, &mut out);
        assert_eq!(out, vec![Out::FencePeer]);
    }

    /// Found by the cluster simulation: the peer was fenced earlier in its
    /// absence, rebooted, its replica connected again while its heartbeats stayed
    /// lost; a new ask answered from the old fence let the Primary go on alone. Only
    /// a fence done after the ask settles it; an old one asks for a fresh one.
    #[test]
    fn a_fence_from_before_the_ask_does_not_answer_it() {
        let t0 = Instant::now();
        let mut r = relay();
        let mut out = Vec::new();
        let id = r.ask(t0, "r0", GI, true, &mut out).unwrap();
        r.poll(t0, true, Fence::Fenced, 1, &mut out);
        assert_eq!(out, vec![Out::FencePeer], "a fresh fence, not the old one's answer");
        out.clear();
        r.poll(t0 + Duration::from_millis(10), true, Fence::InProgress, 1, &mut out);
        assert!(out.is_empty(), "{out:?}");
        r.poll(t0 + Duration::from_millis(20), true, Fence::Fenced, 2, &mut out);
        assert_eq!(answered(&out), vec![(id, OutdateRc::Fenced)]);
    }

    #[test]
    fn the_peers_ask_runs_once_and_a_repeat_gets_the_same_answer() {
        let mut r = relay();
        let mut out = Vec::new();
        let ask = Relayed::Ask {
            replica: "r0".into(),
            ask: (7, 1),
            gi: GI.into(),
        };
        r.on_message(ask.clone(), Fence::None, &mut out);
        assert!(matches!(&out[..], [Out::OutdateLocal { ask: (7, 1), .. }]), "{out:?}");
        out.clear();
        r.on_message(ask.clone(), Fence::None, &mut out);
        assert!(out.is_empty(), "still running: not run twice");
        r.local_done("r0", (7, 1), OutdateRc::Outdated, "4: Outdated".into(), &mut out);
        assert!(matches!(
            &out[..],
            [Out::SendAnswer {
                id: 1,
                rc: OutdateRc::Outdated,
                ..
            }]
        ));
        out.clear();
        r.on_message(ask, Fence::None, &mut out);
        assert!(matches!(
            &out[..],
            [Out::SendAnswer {
                id: 1,
                rc: OutdateRc::Outdated,
                ..
            }]
        ));
        // The same id from a restarted peer (another generation) is a new ask.
        out.clear();
        let again = Relayed::Ask {
            replica: "r0".into(),
            ask: (8, 1),
            gi: GI.into(),
        };
        r.on_message(again, Fence::None, &mut out);
        assert!(matches!(&out[..], [Out::OutdateLocal { ask: (8, 1), .. }]));
        // An unknown replica is answered at once, as failed.
        out.clear();
        let unknown = Relayed::Ask {
            replica: "nope".into(),
            ask: (8, 2),
            gi: GI.into(),
        };
        r.on_message(unknown, Fence::None, &mut out);
        assert!(matches!(&out[..], [Out::SendAnswer { rc: OutdateRc::Failed, detail, .. }] if detail.contains("nope")));
    }

    #[test]
    fn bad_asks_from_the_local_replica_are_refused_with_the_fix() {
        let mut r = relay();
        let mut out = Vec::new();
        let e = r.ask(Instant::now(), "r9", GI, false, &mut out).unwrap_err();
        assert!(e.contains("r9"), "{e}");
        let e = r.ask(Instant::now(), "r0", "zz", false, &mut out).unwrap_err();
        assert!(e.contains("four hex"), "{e}");
        assert!(out.is_empty());
    }
}
